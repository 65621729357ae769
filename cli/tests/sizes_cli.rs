//! Sizes on the command line (issue 18, findings 2, 3 and 11): a shape, batch or input too
//! large is one `sparq: ...` line and exit 1 before anything is allocated, never an abort or
//! a process killed for memory; an unknown name is an error listing the valid ones.

use std::process::{Command, Stdio};

/// The workspace root, where the fixtures and models of the library's tests live.
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Runs `sparq args`: (exit code, stderr).
fn sparq(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sparq"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The one `sparq: ...` line of a refusal (adapter logs may come before it).
fn refusal(args: &[&str]) -> String {
    let (code, err) = sparq(args);
    assert_eq!(code, Some(1), "{args:?}: {err}");
    let line = err.lines().rfind(|l| l.starts_with("sparq: "));
    line.unwrap_or_else(|| panic!("{args:?}: no error line in {err}"))
        .to_string()
}

#[test]
fn bench_refuses_huge_shapes_up_front() {
    for extra in [&[][..], &["--sparse"], &["--sparse-tune"]] {
        let mut args = vec!["bench", "--quick", "--shapes", "999999999x999999999"];
        args.extend(extra);
        let e = refusal(&args);
        assert!(e.contains("999999999x999999999"), "{e}");
    }
}

#[test]
fn gemm_refuses_an_unknown_section() {
    let e = refusal(&["gemm", "--quick", "--only", "bogus"]);
    assert!(
        e.contains("'bogus'") && e.contains("square, weights, crossover, dp4a"),
        "{e}"
    );
}

#[test]
fn model_bench_refuses_what_it_cannot_time() {
    let minilm = format!("{ROOT}/models/all-MiniLM-L6-v2");
    let args = ["model-bench", &minilm, "--formats", "f32", "--iters", "1"];
    let e = refusal(&[&args[..], &["--batch", "100000000", "--seq", "8"]].concat());
    assert!(
        e.contains("--batch/--seq") && e.contains("100000000 sequences"),
        "{e}"
    );
    let e = refusal(&[&args[..], &["--batch", "1", "--seq", "100000"]].concat());
    assert!(
        e.contains("--batch/--seq") && e.contains("at most 512"),
        "{e}"
    );
    let mlp = format!("{ROOT}/tests/fixtures/digits_mlp.safetensors");
    let e = refusal(&["model-bench", &mlp, "--formats", "f32", "--batch", "1"]);
    assert!(
        e.contains("model-bench times encoders") && !e.contains("with_plan"),
        "{e}"
    );
}

#[test]
fn run_refuses_an_input_over_the_limit_before_reading_it_whole() {
    let path = std::env::temp_dir().join(format!("sparq-sizes-{}.json", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    // A sparse file: 65 MiB long, no disk written.
    file.set_len(65 << 20).unwrap();
    let model = format!("{ROOT}/tests/fixtures/digits_mlp.safetensors");
    let e = refusal(&["run", &model, "--input", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert!(e.contains("64 MiB") && e.contains("split it"), "{e}");
}
