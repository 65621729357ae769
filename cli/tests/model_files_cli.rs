//! Self-describing model files from the command line: `sparq pack` carries the tokenizer, so
//! the packed file embeds text alone (int4 and binary); `--tokenizer`; formats reported as requested, stored
//! and used (and a `--format` a packed file cannot take refused); files that are not models;
//! the `--prune` specs; truncation notes and `--no-truncate`.

use std::path::Path;
use std::process::Command;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn sparq(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sparq"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn minilm() -> String {
    let model = format!("{ROOT}/models/all-MiniLM-L6-v2");
    assert!(
        Path::new(&model).join("model.safetensors").is_file(),
        "{model} is missing: run `bash scripts/setup.sh`"
    );
    model
}

fn floats(line: &str) -> Vec<f64> {
    serde_json::from_str(line.trim()).unwrap()
}

/// Packed int4 MiniLM, moved alone to another folder, embeds text; formats are reported the
/// same by the single-device and the `--adapters` paths, which agree to float rounding.
#[test]
fn a_packed_file_alone_embeds_text_and_reports_its_formats() {
    let model = minilm();
    let (work, alone) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = work.path().join("m.safetensors");
    let (ok, _, err) = sparq(
        &[
            "pack",
            &model,
            "--format",
            "int4",
            "-o",
            first.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{err}");
    let packed = alone.path().join("m.safetensors");
    std::fs::rename(&first, &packed).unwrap();
    let packed = packed.to_str().unwrap();
    let (ok, out, err) = sparq(&["embed", packed, "A cat sat by the warm stove."], &[]);
    assert!(ok, "{err}");
    assert_eq!(floats(&out).len(), 384);
    assert!(
        err.contains("weights: int4g32 (stored int4g32, requested default f32)"),
        "{err}"
    );
    // --format: the stored one is fine, another is refused, naming both.
    let (ok, _, err) = sparq(&["embed", packed, "x", "--format", "int4g32"], &[]);
    assert!(ok, "{err}");
    let (ok, _, err) = sparq(&["embed", packed, "x", "--format", "f16"], &[]);
    assert!(
        !ok && err.contains("--format f16") && err.contains("int4g32") && err.lines().count() == 1,
        "{err}"
    );
    // run: one device and --adapters 0 run the same weights, report the same formats, and
    // (exact f32 activations on both: SPARQ_Q8=0) agree to float rounding.
    let input = work.path().join("in.json");
    std::fs::write(
        &input,
        r#"{"texts": ["The weather turned cold.", "A cat."]}"#,
    )
    .unwrap();
    let input = input.to_str().unwrap();
    let exact = [("SPARQ_Q8", "0")];
    let run_in = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["run", packed, "--input", input];
        args.extend(extra);
        let (ok, out, err) = sparq(&args, env);
        assert!(ok, "{err}");
        (
            serde_json::from_str::<serde_json::Value>(&out).unwrap(),
            err,
        )
    };
    let run = |extra: &[&str]| run_in(extra, &exact).0;
    let (one, many) = (run(&[]), run(&["--adapters", "0"]));
    // `run` prints the envelope of docs/output.md: the formats are in every row object.
    let first = |v: &serde_json::Value| v["rows"][0].clone();
    for key in ["format", "format_stored", "format_requested", "activations"] {
        assert_eq!(first(&one)[key], first(&many)[key], "{key}");
    }
    assert_eq!(first(&one)["activations"], "f32");
    assert_eq!(first(&one)["format"], "int4g32");
    assert_eq!(first(&one)["format_requested"], serde_json::Value::Null);
    let flat = |v: &serde_json::Value| -> Vec<f64> {
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                let e = r["embeddings"].as_array().unwrap();
                e.iter().map(|x| x.as_f64().unwrap()).collect::<Vec<_>>()
            })
            .collect()
    };
    let (a, b) = (flat(&one), flat(&many));
    assert_eq!(a.len(), b.len());
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-5, "single device vs --adapters 0: {worst}");
    // With int8 activations allowed (the default), the paths differ exactly where the one
    // device's GEMVs quantized them, and both say so; the batch-invariant path keeps f32.
    let ((one, one_err), (many, many_err)) = (run_in(&[], &[]), run_in(&["--adapters", "0"], &[]));
    assert_eq!(first(&many)["activations"], "f32");
    assert!(many_err.contains("activations f32"), "{many_err}");
    let (a, b) = (flat(&one), flat(&many));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let activations = first(&one)["activations"].clone();
    let int8 = activations.as_str().unwrap().contains("int8");
    eprintln!("default activations {activations}: differ by {worst}");
    assert_eq!(int8, worst > 1e-5, "{activations} vs f32: {worst}");
    if int8 {
        assert!(
            one_err.contains("activations int8") && one_err.contains("SPARQ_Q8=0"),
            "{one_err}"
        );
    }
}

/// A binary MiniLM file embeds text alone and reports its stored format.
#[test]
fn a_binary_packed_encoder_embeds_text() {
    let model = minilm();
    let work = tempfile::tempdir().unwrap();
    let packed = work.path().join("b.safetensors");
    let packed = packed.to_str().unwrap();
    let (ok, _, err) = sparq(&["pack", &model, "--format", "binarym", "-o", packed], &[]);
    assert!(ok && err.contains("binaryg128m"), "{err}");
    let (ok, out, err) = sparq(&["embed", packed, "A cat sat by the warm stove."], &[]);
    assert!(ok, "{err}");
    let v = floats(&out);
    assert_eq!(v.len(), 384);
    assert!(v.iter().all(|x| x.is_finite()), "{out}");
    assert!(
        err.contains("weights: binaryg128m (stored binaryg128m, requested default f32)"),
        "{err}"
    );
}

/// Without a tokenizer the error names every place looked at and `--tokenizer`, which then
/// makes the same call work; a long text is truncated with a note, or refused.
#[test]
fn tokenizer_flag_missing_tokenizer_and_truncation() {
    let model = minilm();
    let dir = tempfile::tempdir().unwrap();
    // The model's folder without its tokenizer (pooling and normalisation files kept).
    for e in std::fs::read_dir(&model).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "tokenizer.json" {
            std::os::unix::fs::symlink(e.path(), dir.path().join(e.file_name())).unwrap();
        }
    }
    let bare = dir.path().to_str().unwrap();
    let (ok, _, err) = sparq(&["embed", bare, "A sentence."], &[]);
    assert!(!ok && err.lines().count() == 1, "{err}");
    for part in [
        "--tokenizer",
        "metadata 'sparq.tokenizer'",
        &dir.path().join("tokenizer.json").display().to_string(),
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    let tok = format!("{model}/tokenizer.json");
    let (ok, out, err) = sparq(&["embed", bare, "A sentence.", "--tokenizer", &tok], &[]);
    assert!(ok, "{err}");
    let (ok, want, _) = sparq(&["embed", &model, "A sentence."], &[]);
    assert!(ok);
    assert_eq!(floats(&out), floats(&want));
    // 600 words is more than the model's 256 tokens.
    let long = "word ".repeat(600);
    let (ok, _, err) = sparq(&["embed", &model, "short", &long], &[]);
    assert!(ok, "{err}");
    assert!(
        err.contains("note: 1 of 2 inputs truncated to 256 tokens") && err.contains("inputs 1"),
        "{err}"
    );
    let (ok, _, err) = sparq(&["embed", &model, "short", "fine"], &[]);
    assert!(ok && !err.contains("truncated"), "{err}");
    let (ok, _, err) = sparq(&["embed", &model, "short", &long, "--no-truncate"], &[]);
    assert!(
        !ok && err.contains("input 1 has 602 tokens, over the model's 256"),
        "{err}"
    );
}

/// A file that is not a model says what it is and what to pass; every `--prune` spec is
/// listed when one is wrong.
#[test]
fn wrong_files_and_prune_specs_are_one_clear_line() {
    let model = minilm();
    let gguf = format!("{ROOT}/models/SmolLM2-135M-Instruct/model.gguf");
    let empty = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 4] = [
        (&format!("{model}/config.json"), "is a JSON file"),
        (
            &format!("{model}/tokenizer.json"),
            "is a tokenizer, not a model",
        ),
        (&gguf, "is a GGUF file"),
        (empty.path().to_str().unwrap(), "has no model.safetensors"),
    ];
    for (path, says) in cases {
        for cmd in ["embed", "run"] {
            let args: Vec<&str> = match cmd {
                "embed" => vec!["embed", path, "text"],
                _ => vec!["run", path, "--input", "-"],
            };
            let (ok, _, err) = sparq(&args, &[]);
            assert!(
                !ok && err.contains(says)
                    && err.lines().count() == 1
                    && !err.contains("header too large"),
                "{cmd} {path}: {err}"
            );
        }
    }
    let out = empty.path().join("o.safetensors");
    for spec in ["neuron:0.5", "neurons:half"] {
        let (ok, _, err) = sparq(
            &[
                "pack",
                &model,
                "--format",
                "f16",
                "--prune",
                spec,
                "-o",
                out.to_str().unwrap(),
            ],
            &[],
        );
        assert!(!ok, "{spec}");
        for listed in [
            "2:4",
            "magnitude:S",
            "random:S",
            "global:S",
            "blocks:RxC:S",
            "neurons:S",
        ] {
            assert!(err.contains(listed), "{spec}: {listed} missing from {err}");
        }
    }
}
