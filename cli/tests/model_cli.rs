//! The model subcommands of the `sparq` binary: JSON in, JSON out, errors as one line.

use std::io::Write;
use std::process::{Command, Stdio};

/// The workspace root, where the fixtures and models of the library's tests live.
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn sparq(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sparq"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn run_classifier_json_in_json_out() {
    let root = ROOT;
    let model = format!("{root}/tests/fixtures/digits_mlp.safetensors");
    let fx: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/tests/fixtures/digits_mlp.json")).unwrap(),
    )
    .unwrap();
    let x: Vec<Vec<f64>> = fx["x"].as_array().unwrap()[..5]
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() / 16.0)
                .collect()
        })
        .collect();
    let input = serde_json::json!({ "features": x }).to_string();
    for format in ["f32", "int8"] {
        let (ok, out, err) = sparq(&["run", &model, "--format", format, "--input", "-"], &input);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        // The envelope of docs/output.md, one row object per input row.
        for k in ["sparq", "schema", "commit", "date", "adapter", "settings"] {
            assert!(v.get(k).is_some(), "{k} missing: {out}");
        }
        assert_eq!((&v["schema"], &v["command"]), (&1.into(), &"run".into()));
        assert_eq!(v["settings"]["format"], format);
        assert!(v["adapter"]["name"].is_string(), "{out}");
        let rows = v["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 5);
        let predictions: Vec<serde_json::Value> =
            rows.iter().map(|r| r["predictions"].clone()).collect();
        assert_eq!(predictions[..], fx["predictions"].as_array().unwrap()[..5]);
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(
                (&r["row"], &r["format"], &r["cols"]),
                (&i.into(), &format.into(), &10.into())
            );
            assert_eq!(r["probabilities"].as_array().unwrap().len(), 10);
            // f32s at f32's shortest round-trip precision, not widened to 17 digits.
            for x in r["logits"].as_array().unwrap() {
                let x = x.as_f64().unwrap();
                assert_eq!(x.to_string(), (x as f32).to_string(), "{out}");
            }
        }
    }
    // Bad input: one error line, non-zero exit.
    for bad in [
        "{",
        r#"{"pixels": []}"#,
        r#"{"features": [[1, 2], [3]]}"#,
        r#"{"features": [[1, 2]]}"#,
    ] {
        let (ok, _, err) = sparq(&["run", &model, "--input", "-"], bad);
        assert!(
            !ok && err.starts_with("sparq: ") && err.trim().lines().count() == 1,
            "{bad}: {err}"
        );
    }
    let (ok, _, err) = sparq(&["run", &model, "--format", "int3", "--input", "-"], &input);
    assert!(!ok && err.contains("int3"), "{err}");
    // A missing input file is named.
    let (ok, _, err) = sparq(&["run", &model, "--input", "/no/such/input.json"], "");
    assert!(!ok && err.contains("/no/such/input.json"), "{err}");
}

/// `sparq pack --prune` on the classifier writes a sparse file that `sparq run` serves with
/// nearly the same predictions; a bad pruning spec is one error line.
#[test]
fn pack_prunes_a_classifier_into_a_sparse_file() {
    let root = ROOT;
    let model = format!("{root}/tests/fixtures/digits_mlp.safetensors");
    let fx: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/tests/fixtures/digits_mlp.json")).unwrap(),
    )
    .unwrap();
    let scale = fx["x_scale"].as_f64().unwrap();
    let x: Vec<Vec<f64>> = fx["x"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let r = r.as_array().unwrap();
            r.iter().map(|v| v.as_f64().unwrap() * scale).collect()
        })
        .collect();
    let input = serde_json::json!({ "features": x }).to_string();
    let out = std::env::temp_dir().join(format!("sparq-pack-{}.safetensors", std::process::id()));
    let out = out.to_str().unwrap();
    let (ok, _, err) = sparq(
        &[
            "pack", &model, "--format", "f16", "--prune", "2:4", "-o", out,
        ],
        "",
    );
    assert!(ok, "{err}");
    assert!(err.contains("2:4-f16") && err.contains("50.0 %"), "{err}");
    let (ok, json, err) = sparq(&["run", out, "--input", "-"], &input);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(
        rows[0]["format"], "2:4-f16",
        "the stored format, not the default request"
    );
    let same = rows
        .iter()
        .map(|r| &r["predictions"])
        .zip(fx["predictions"].as_array().unwrap())
        .filter(|(a, b)| a == b)
        .count();
    // 2:4 without fine-tuning keeps 95.8 % test accuracy (BENCHMARKS.md); most predictions stay.
    assert!(
        same * 100 >= 90 * x.len(),
        "{same} of {} predictions kept",
        x.len()
    );
    let (ok, _, err) = sparq(
        &[
            "pack", &model, "--format", "f16", "--prune", "3:4", "-o", out,
        ],
        "",
    );
    assert!(
        !ok && err.contains("3:4") && err.trim().lines().count() == 1,
        "{err}"
    );
    let _ = std::fs::remove_file(out);
}

/// `sparq pack --calibrate FILE` on the real MiniLM writes an int4 file that `sparq embed`
/// runs close to PyTorch; calibration of a format, pruning or model it cannot serve is one
/// error line.
#[test]
fn pack_calibrates_int4_on_sentences() {
    let root = ROOT;
    let model = format!("{root}/models/all-MiniLM-L6-v2");
    assert!(
        std::path::Path::new(&model)
            .join("model.safetensors")
            .is_file(),
        "{model} is missing: run `bash scripts/setup.sh`"
    );
    let dir = std::env::temp_dir().join(format!("sparq-calibrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A few sentences keep the test short; `--calibrate` alone takes the built-in 64.
    let text = dir.join("calibration.txt");
    std::fs::write(
        &text,
        "The weather turned cold overnight.\n\nA cat sat by the warm stove.\n\
         Markets rallied after the central bank's decision.\nHow do I renew a library card?\n",
    )
    .unwrap();
    std::fs::copy(
        format!("{model}/tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    let out = dir.join("m.safetensors");
    let (text, out) = (text.to_str().unwrap(), out.to_str().unwrap());
    let (ok, _, err) = sparq(
        &[
            "pack",
            &model,
            "--format",
            "int4",
            "--calibrate",
            text,
            "-o",
            out,
        ],
        "",
    );
    assert!(ok, "{err}");
    assert!(err.contains("calibrated on 4 sentences"), "{err}");
    let fx: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/tests/fixtures/minilm.json")).unwrap(),
    )
    .unwrap();
    let (sentence, want) = (&fx["sentences"][3], &fx["embeddings"][3]);
    let (ok, json, err) = sparq(&["embed", out, sentence.as_str().unwrap()], "");
    assert!(ok, "{err}");
    let got: Vec<f64> = serde_json::from_str(json.trim()).unwrap();
    let want: Vec<f64> = serde_json::from_value(want.clone()).unwrap();
    let dot: f64 = got.iter().zip(&want).map(|(a, b)| a * b).sum();
    let norms = got.iter().map(|a| a * a).sum::<f64>() * want.iter().map(|b| b * b).sum::<f64>();
    let cosine = dot / norms.sqrt();
    assert!(cosine > 0.95, "int4 calibrated: cosine to PyTorch {cosine}");
    for bad in [
        vec!["pack", &model, "--format", "f16", "--calibrate", "-o", out],
        vec![
            "pack",
            &model,
            "--format",
            "f16",
            "--prune",
            "random:0.5",
            "--calibrate",
            "-o",
            out,
        ],
        vec![
            "pack",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/fixtures/digits_mlp.safetensors"
            ),
            "--format",
            "int4",
            "--calibrate",
            "-o",
            out,
        ],
    ] {
        let (ok, _, err) = sparq(&bad, "");
        assert!(
            !ok && err.contains("calibrat") && err.trim().lines().count() == 1,
            "{bad:?}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
