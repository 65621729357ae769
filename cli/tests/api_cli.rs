//! `embed --similarity`, `--batch-size`, `--adapter` only where a device is used, and help
//! texts that say what an option does (issue 19).

use std::process::Command;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn sparq(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sparq"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn embed_similarity_prints_an_aligned_cosine_table() {
    let model = format!("{ROOT}/models/all-MiniLM-L6-v2");
    let sentences = [
        "A man is eating food.",
        "Someone is having a meal, a rather long sentence to be shortened.",
        "The stock market fell sharply today.",
    ];
    let mut args = vec!["embed", &model, "--similarity", "--batch-size", "2"];
    args.extend(sentences);
    let (ok, out, err) = sparq(&args);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let widths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
    assert!(
        widths.iter().all(|&w| w == widths[0]),
        "not aligned:\n{out}"
    );
    assert!(
        lines[2].starts_with("2 Someone is having a meal, a rat…"),
        "{out}"
    );
    // The last three fields of a line (labels hold spaces).
    let cos = |line: &str| -> Vec<f64> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields[fields.len() - 3..]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect()
    };
    let m: Vec<Vec<f64>> = lines[1..].iter().map(|l| cos(l)).collect();
    for (i, row) in m.iter().enumerate() {
        assert_eq!(row[i], 1.0, "{out}");
        for (j, c) in row.iter().enumerate() {
            assert_eq!(*c, m[j][i], "symmetric: {out}");
        }
    }
    assert!(
        m[0][1] > m[0][2] + 0.2,
        "the meal sentences are the close pair: {out}"
    );
}

#[test]
fn batch_size_splits_a_run_without_changing_its_results() {
    let model = format!("{ROOT}/tests/fixtures/digits_mlp.safetensors");
    let input = std::env::temp_dir().join(format!("sparq-batch-size-{}.json", std::process::id()));
    let rows: Vec<Vec<f32>> = (0..7)
        .map(|r| (0..64).map(|c| ((r * 64 + c) % 17) as f32 / 17.0).collect())
        .collect();
    std::fs::write(&input, serde_json::json!({ "features": rows }).to_string()).unwrap();
    let input = input.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", &model, "--input", input];
        args.extend(extra);
        let (ok, out, err) = sparq(&args);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let whole = run(&[]);
    let cut = run(&["--batch-size", "3"]);
    // `run`'s result is the envelope of docs/output.md: one object per input row.
    let predictions = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        let rows = v["rows"].as_array().expect("rows");
        rows.iter().map(|r| r["predictions"].clone()).collect()
    };
    assert_eq!(predictions(&cut).len(), 7);
    assert_eq!(predictions(&cut), predictions(&whole));
    let (ok, _, err) = sparq(&["run", &model, "--input", input, "--batch-size", "0"]);
    assert!(!ok && err.contains("--batch-size"), "{err}");
}

#[test]
fn adapter_is_offered_only_where_a_device_is_used() {
    for args in [
        &["devices", "--adapter", "0"][..],
        &["pack", "m", "--format", "f16", "-o", "x", "--adapter", "0"],
        &["--adapter", "0", "devices"],
    ] {
        let (ok, _, err) = sparq(args);
        assert!(!ok, "{args:?} accepted");
        assert!(
            err.contains("unexpected argument '--adapter'"),
            "{args:?}: {err}"
        );
    }
    let model = format!("{ROOT}/models/all-MiniLM-L6-v2");
    let (ok, _, err) = sparq(&["embed", &model, "hi", "--adapter", "no-such-adapter"]);
    assert!(!ok);
    assert!(err.contains("no adapter matches"), "{err}");
    for cmd in [
        "bench",
        "gemm",
        "run",
        "embed",
        "model-bench",
        "generate",
        "serve",
    ] {
        let (ok, out, err) = sparq(&[cmd, "--help"]);
        assert!(ok, "{cmd}: {err}");
        assert!(
            out.contains("--adapter"),
            "{cmd} --help offers no --adapter"
        );
    }
}

#[test]
fn help_texts_do_not_point_at_source_files() {
    for cmd in [
        "bench",
        "gemm",
        "run",
        "embed",
        "pack",
        "model-bench",
        "serve",
    ] {
        let (ok, out, err) = sparq(&[cmd, "--help"]);
        assert!(ok, "{cmd}: {err}");
        assert!(
            !out.contains(".rs"),
            "{cmd} --help names a source file:\n{out}"
        );
    }
}
