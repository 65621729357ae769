//! `--plot FILE.svg` on `bench`, `bench --sparse` and `model-bench` writes an SVG that parses
//! and names its series (tiny, quick runs on the test adapter); with stderr piped, as here, no
//! progress bar is drawn.

use std::process::{Command, Stdio};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Runs `sparq args` with stdout and stderr piped; panics unless it succeeds; stderr.
fn sparq(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sparq"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?}: {err}");
    // No bar, spinner or cursor movement when stderr is not a terminal.
    for c in ['\r', '\x1b', '█', '░', '⠁', '⠂'] {
        assert!(
            !err.contains(c),
            "{args:?}: {c:?} on a piped stderr: {err:?}"
        );
    }
    err
}

/// The text of the SVG at `path` (it must parse as XML with an `<svg>` root).
fn svg_text(path: &std::path::Path) -> String {
    let svg = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.tag_name().name() == "text")
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn bench_plots_bandwidth_against_the_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("bench.svg");
    let err = sparq(&[
        "bench",
        "--quick",
        "--formats",
        "f16,int4g32",
        "--m",
        "1",
        "--shapes",
        "64x128",
        "--iters",
        "2",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(err.contains("wrote"), "{err}");
    let text = svg_text(&plot);
    for want in [
        "f16",
        "int4g32",
        "streaming-read ceiling",
        "m=1 64×128",
        "GB/s",
    ] {
        assert!(text.contains(want), "{want} missing from {text}");
    }
}

#[test]
fn sparse_bench_plots_speed_up_with_the_break_even() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("sparse.svg");
    sparq(&[
        "bench",
        "--sparse",
        "--quick",
        "--m",
        "1",
        "--shapes",
        "32x64",
        "--sparsities",
        "0.5,0.9",
        "--bsr-blocks",
        "1x32",
        "--iters",
        "2",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let text = svg_text(&plot);
    for want in ["csr-f16", "bsr1x32", "2:4", "break-even", "sparsity"] {
        assert!(text.contains(want), "{want} missing from {text}");
    }
}

#[test]
fn model_bench_plots_throughput_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("model.svg");
    let model = format!("{ROOT}/models/all-MiniLM-L6-v2");
    sparq(&[
        "model-bench",
        &model,
        "--formats",
        "f32,int8",
        "--batch",
        "1,2",
        "--seq",
        "8",
        "--iters",
        "1",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let text = svg_text(&plot);
    for want in [
        "f32",
        "int8",
        "sequences/s",
        "batch size",
        "8 tokens per sequence",
    ] {
        assert!(text.contains(want), "{want} missing from {text}");
    }
}

#[test]
fn plot_is_refused_where_there_is_nothing_to_draw() {
    let out = Command::new(env!("CARGO_BIN_EXE_sparq"))
        .args(["bench", "--sparse-tune", "--plot", "x.svg"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--plot") && err.contains("--sparse-tune"),
        "{err}"
    );
}

#[test]
fn model_bench_iters_must_be_at_least_one() {
    let out = Command::new(env!("CARGO_BIN_EXE_sparq"))
        .args(["model-bench", "no-model", "--iters", "0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--iters") && err.contains("'0'"), "{err}");
}
