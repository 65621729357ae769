//! `sparq distill` from the command line: the digits classifier distilled into half its
//! hidden width writes a student that `sparq run` loads and `sparq pack` packs; bad students,
//! data and teachers are one-line errors with nothing written.

use std::path::Path;
use std::process::Command;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn sparq(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sparq"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The fixture's 360 digits as `{"features", "labels"}`, and one row as `sparq run` input.
fn write_data(dir: &Path) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/tests/fixtures/digits_mlp.json")).unwrap(),
    )
    .unwrap();
    let scale = v["x_scale"].as_f64().unwrap();
    let features: Vec<Vec<f64>> = v["x"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_f64().unwrap() * scale)
                .collect()
        })
        .collect();
    let data = dir.join("digits.json");
    let json = serde_json::json!({"features": features, "labels": v["labels"]});
    std::fs::write(&data, json.to_string()).unwrap();
    let one = dir.join("one.json");
    let json = serde_json::json!({"features": [features[0]]});
    std::fs::write(&one, json.to_string()).unwrap();
    (data.display().to_string(), one.display().to_string())
}

const TEACHER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/digits_mlp.safetensors"
);

#[test]
fn a_distilled_student_runs_and_packs() {
    let dir = tempfile::tempdir().unwrap();
    let (data, one) = write_data(dir.path());
    let student = dir.path().join("student.safetensors");
    let student = student.to_str().unwrap();
    let (ok, out, err) = sparq(&[
        "distill",
        TEACHER,
        "--student",
        "neurons:0.5",
        "--data",
        &data,
        "--steps",
        "120",
        "--adapter",
        "vulkan",
        "-o",
        student,
    ]);
    assert!(ok, "{err}");
    println!("{out}");
    assert!(
        out.contains("student [64, 32, 10] (2410 parameters"),
        "{out}"
    );
    // The last evaluation's held-out loss is below the first's.
    let losses: Vec<f64> = out
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| step") && !l.starts_with("| -"))
        .map(|l| l.split('|').nth(2).unwrap().trim().parse().unwrap())
        .collect();
    assert_eq!(losses.len(), 11, "{out}");
    assert!(losses[10] < 0.5 * losses[0], "{losses:?}");
    let (ok, out, err) = sparq(&["run", student, "--input", &one]);
    assert!(ok, "{err}");
    assert!(out.contains("\"logits\""), "{out}");
    let packed = dir.path().join("int8.safetensors");
    let (ok, _, err) = sparq(&[
        "pack",
        student,
        "--format",
        "int8",
        "-o",
        packed.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
}

#[test]
fn bad_students_data_and_teachers_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = write_data(dir.path());
    let bad_rows = dir.path().join("bad.json");
    std::fs::write(&bad_rows, r#"{"features": [[1, 2]], "labels": [0]}"#).unwrap();
    let bad_label = dir.path().join("label.json");
    let row = vec![0.0; 64];
    let json = serde_json::json!({"features": [row, row], "labels": [0, 10]});
    std::fs::write(&bad_label, json.to_string()).unwrap();
    let out = dir.path().join("never.safetensors");
    let o = out.to_str().unwrap();
    let minilm = format!("{ROOT}/tests/fixtures/minilm.json");
    for (args, says) in [
        (
            vec![TEACHER, "--student", "neurons:1.5", "--data", &data],
            "neurons:S",
        ),
        (
            vec![TEACHER, "--student", "layers:3", "--data", &data],
            "neurons:S",
        ),
        (
            vec![
                TEACHER,
                "--student",
                "neurons:0.5",
                "--data",
                bad_rows.to_str().unwrap(),
            ],
            "has 2 features",
        ),
        (
            vec![
                TEACHER,
                "--student",
                "neurons:0.5",
                "--data",
                bad_label.to_str().unwrap(),
            ],
            "label 10",
        ),
        (
            vec![
                TEACHER,
                "--student",
                "neurons:0.5",
                "--data",
                "/nonexistent.json",
            ],
            "cannot read",
        ),
        (
            vec![
                TEACHER,
                "--student",
                "neurons:0.5",
                "--data",
                &data,
                "--steps",
                "0",
            ],
            "--steps",
        ),
        (
            vec![
                TEACHER,
                "--student",
                "neurons:0.5",
                "--data",
                &data,
                "--held-out",
                "1",
            ],
            "held",
        ),
        (
            vec![
                TEACHER,
                "--student",
                "neurons:0.5",
                "--data",
                &data,
                "--temperature",
                "0",
            ],
            "temperature",
        ),
        (
            vec![&minilm, "--student", "neurons:0.5", "--data", &data],
            "safetensors",
        ),
    ] {
        let mut all = vec!["distill"];
        all.extend(args.iter().copied());
        all.extend(["-o", o]);
        let (ok, _, err) = sparq(&all);
        assert!(!ok, "{all:?} succeeded");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("sparq:")).collect();
        assert_eq!(lines.len(), 1, "{all:?}: {err}");
        assert!(err.contains(says), "{all:?}: {err}");
        assert!(!out.exists(), "{all:?} wrote the output");
    }
}

/// Sentences as a one-a-line corpus: enough lines that the hash split holds some out.
fn write_sentences(dir: &Path) -> String {
    let subjects = [
        "The council",
        "A farmer",
        "The river",
        "Our army",
        "The new law",
    ];
    let verbs = ["crossed", "protected", "changed", "divided", "welcomed"];
    let objects = [
        "the old bridge",
        "every harbor",
        "the northern states",
        "its people",
    ];
    let mut lines = Vec::new();
    for s in subjects {
        for v in verbs {
            for o in objects {
                lines.push(format!("{s} {v} {o} last year."));
            }
        }
    }
    let path = dir.join("sentences.txt");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path.display().to_string()
}

#[test]
fn a_distilled_encoder_student_embeds_and_packs() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_sentences(dir.path());
    let minilm = format!("{ROOT}/models/all-MiniLM-L6-v2");
    let student = dir.path().join("student.safetensors");
    let student = student.to_str().unwrap();
    let (ok, out, err) = sparq(&[
        "distill",
        &minilm,
        "--student",
        "layers:1",
        "--data",
        &data,
        "--steps",
        "3",
        "--batch",
        "4",
        "--max-seq",
        "12",
        "--held-out-sentences",
        "4",
        "--adapter",
        "vulkan",
        "-o",
        student,
    ]);
    assert!(ok, "{err}");
    println!("{out}");
    assert!(out.contains("student of 1 layers, FFN 1536"), "{out}");
    assert!(out.contains("mean cosine to the teacher"), "{out}");
    let (ok, json, err) = sparq(&["embed", student, "The river crossed the old bridge."]);
    assert!(ok, "{err}");
    assert!(json.contains("384"), "{json}");
    let packed = dir.path().join("int8.safetensors");
    let packed = packed.to_str().unwrap();
    let (ok, _, err) = sparq(&["pack", student, "--format", "int8", "-o", packed]);
    assert!(ok, "{err}");
    let (ok, _, err) = sparq(&["embed", packed, "A farmer welcomed its people."]);
    assert!(ok, "{err}");
    // An encoder student that cannot be: as many layers as the teacher, or a bad loss.
    let never = dir.path().join("never.safetensors");
    let never = never.to_str().unwrap();
    for (args, says) in [
        (vec!["--student", "layers:6"], "1 to 5"),
        (
            vec!["--student", "layers:2", "--loss", "kl"],
            "cosine or mse",
        ),
    ] {
        let mut all = vec!["distill", minilm.as_str(), "--data", &data, "-o", never];
        all.extend(args);
        let (ok, _, err) = sparq(&all);
        assert!(!ok && err.contains(says), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!Path::new(never).exists());
    }
}
