//! The model subcommands of the `sparq` binary: JSON in, JSON out, errors as one line.

use std::io::Write;
use std::process::{Command, Stdio};

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
    let root = env!("CARGO_MANIFEST_DIR");
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
        assert_eq!(v["rows"], 5);
        assert_eq!(v["format"], format);
        assert_eq!(
            v["predictions"].as_array().unwrap()[..],
            fx["predictions"].as_array().unwrap()[..5]
        );
        assert_eq!(v["probabilities"].as_array().unwrap().len(), 5);
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
}
