//! Output conventions of the result commands (issue 19, docs/output.md): `--output
//! md|json|csv` on standard output, `--json PATH` the envelope in a file, `--json -` the
//! envelope on standard output (never a file named `-`).

use std::path::Path;
use std::process::{Command, Stdio};

/// A tiny dense benchmark: one format, one shape, one row count, one timed run.
const TINY_BENCH: &[&str] = &[
    "bench",
    "--quick",
    "--formats",
    "f32,int8",
    "--m",
    "1",
    "--iters",
    "1",
];

/// Runs `sparq args` in `dir`: (stdout, stderr), asserting success.
fn sparq_in(dir: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sparq"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{args:?}: {stderr}");
    (stdout, stderr)
}

/// Checks the envelope's fields and returns its rows.
fn envelope(text: &str, command: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: not JSON: {text}"));
    for k in [
        "sparq", "schema", "commit", "date", "command", "adapter", "settings", "rows",
    ] {
        assert!(v.get(k).is_some(), "{k} missing: {v}");
    }
    assert_eq!(v["schema"], 1);
    assert_eq!(v["command"], command);
    assert_eq!(v["sparq"], env!("CARGO_PKG_VERSION"));
    assert!(v["commit"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(v["date"].as_str().is_some_and(|d| d.ends_with('Z')), "{v}");
    assert!(v["adapter"]["name"].is_string() && v["adapter"]["backend"].is_string());
    v["rows"].as_array().unwrap().clone()
}

/// Fields of one CSV record after RFC 4180 (quoted fields with doubled quotes).
fn csv_fields(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[test]
fn bench_writes_csv_to_stdout_and_the_envelope_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let args = [TINY_BENCH, &["--output", "csv", "--json", "out.json"]].concat();
    let (csv, _) = sparq_in(dir.path(), &args);
    assert!(csv.ends_with("\r\n"), "{csv:?}");
    let lines: Vec<&str> = csv.trim_end().split("\r\n").collect();
    let header = csv_fields(lines[0]);
    for h in ["format", "gpu_us", "gpu_us_stddev", "weight_gbps", "tflops"] {
        assert!(header.iter().any(|x| x == h), "{h} not in {header:?}");
    }
    assert_eq!(lines.len(), 3, "{csv}");
    for l in &lines[1..] {
        let f = csv_fields(l);
        assert_eq!(f.len(), header.len(), "{l}");
        let us = &f[header.iter().position(|h| h == "gpu_us").unwrap()];
        assert!(us.parse::<f64>().is_ok_and(|v| v > 0.0), "{us}");
    }
    let rows = envelope(
        &std::fs::read_to_string(dir.path().join("out.json")).unwrap(),
        "bench",
    );
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["gpu_us_stddev"].is_number()));
}

#[test]
fn bench_json_goes_to_stdout_with_output_json_or_json_dash() {
    let dir = tempfile::tempdir().unwrap();
    for extra in [&["--output", "json"][..], &["--json", "-"]] {
        let (out, _) = sparq_in(dir.path(), &[TINY_BENCH, extra].concat());
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["settings"]["iters"], 1);
        assert_eq!(v["settings"]["formats"], serde_json::json!(["f32", "int8"]));
        assert!(
            v["summary"]["ceiling_gbps"]
                .as_f64()
                .is_some_and(|c| c > 0.0)
        );
        assert_eq!(envelope(&out, "bench").len(), 2);
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "--json - wrote a file: {left:?}");
}

#[test]
fn bench_markdown_lines_up() {
    let dir = tempfile::tempdir().unwrap();
    let (md, _) = sparq_in(dir.path(), TINY_BENCH);
    let table: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(table.len(), 4, "{md}");
    let width = table[0].chars().count();
    assert!(table.iter().all(|l| l.chars().count() == width), "{md}");
    // Rates carry their unit and prefix; none reads a bare 0.
    assert!(
        table[2].contains("B/s") && table[2].contains("FLOP/s"),
        "{md}"
    );
    assert!(!table[2].contains("| 0 |"), "{md}");
}

#[test]
fn gemm_json_is_an_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "gemm",
        "--quick",
        "--tuned-only",
        "--only",
        "weights",
        "--json",
        "g.json",
    ];
    let (md, _) = sparq_in(dir.path(), &args);
    assert!(md.contains("| section"), "{md}");
    let rows = envelope(
        &std::fs::read_to_string(dir.path().join("g.json")).unwrap(),
        "gemm",
    );
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|r| r["us"].is_number() && r["us_stddev"].is_number())
    );
}
