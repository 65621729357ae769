//! Packed decoders are one self-describing file from the command line: `sparq pack` of a GGUF
//! file carries its tokenizer, so `generate` runs the packed file alone, moved to another
//! folder, and writes what the GGUF writes; binary and ternary files run like the GGUF
//! quantized at load; a file with none says where it looked and names `--tokenizer`, which
//! `generate` and `pack` both take.

#[path = "../../tests/common/tiny_gguf.rs"]
mod tiny_gguf;

use std::path::Path;
use std::process::Command;

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

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `sparq generate MODEL "hello world"` (greedy, 8 tokens) with `extra` flags: its text.
fn generate(model: &Path, extra: &[&str]) -> String {
    let mut args = vec!["generate", path(model), "hello world", "--max-tokens", "8"];
    args.extend_from_slice(extra);
    let (ok, out, err) = sparq(&args);
    assert!(ok, "generate {}: {err}", model.display());
    out
}

fn pack(source: &Path, extra: &[&str], out: &Path) -> String {
    let mut args = vec!["pack", path(source), "--format", "f32", "-o", path(out)];
    args.extend_from_slice(extra);
    let (ok, _, err) = sparq(&args);
    assert!(ok, "pack {}: {err}", source.display());
    err
}

#[test]
fn a_packed_gguf_decoder_alone_generates_what_the_gguf_generates() {
    let (work, alone) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let gguf = work.path().join("tiny.gguf");
    std::fs::write(&gguf, tiny_gguf::gguf_bytes(true)).unwrap();
    let first = work.path().join("p.safetensors");
    let err = pack(&gguf, &[], &first);
    assert!(!err.contains("carries no tokenizer"), "{err}");
    let packed = alone.path().join("p.safetensors");
    std::fs::rename(&first, &packed).unwrap();
    let want = generate(&gguf, &[]);
    assert!(!want.trim().is_empty(), "the tiny model wrote nothing");
    assert_eq!(generate(&packed, &[]), want);
}

/// `sparq pack --format` with the binary and ternary formats: the packed file alone writes
/// what the GGUF writes quantized to the same format at load (the same quantizer, so the
/// same weights), and its perplexity is finite; pruning them is one clear line.
#[test]
fn low_bit_packed_decoders_run_like_the_gguf_quantized_at_load() {
    let work = tempfile::tempdir().unwrap();
    let gguf = work.path().join("tiny.gguf");
    std::fs::write(&gguf, tiny_gguf::gguf_bytes(true)).unwrap();
    let text = work.path().join("text.txt");
    std::fs::write(&text, "hello world hello world hello world").unwrap();
    for (format, stored) in [
        ("ternary", "ternaryg128"),
        ("ternary16", "ternary16g160"),
        ("binarym", "binaryg128m"),
    ] {
        let packed = work.path().join(format!("{format}.safetensors"));
        let mut args = vec!["pack", path(&gguf), "--format", format, "-o", path(&packed)];
        let (ok, _, err) = sparq(&args);
        assert!(ok && err.contains(stored), "pack {format}: {err}");
        assert_eq!(
            generate(&packed, &[]),
            generate(&gguf, &["--format", format]),
            "{format}"
        );
        let (ok, out, err) = sparq(&[
            "perplexity",
            path(&packed),
            path(&text),
            "--context",
            "4",
            "--output",
            "json",
        ]);
        assert!(ok, "perplexity {format}: {err}");
        let env: serde_json::Value = serde_json::from_str(&out).unwrap();
        let ppl = env["rows"][0]["perplexity"].as_f64().unwrap();
        assert!(ppl.is_finite() && ppl >= 1.0, "{format}: {out}");
        args.extend(["--prune", "2:4"]);
        let (ok, _, err) = sparq(&args);
        assert!(
            !ok && err.contains("stored dense") && err.lines().count() == 1,
            "pack {format} --prune 2:4: {err}"
        );
    }
}

#[test]
fn a_decoder_without_a_tokenizer_names_the_places_and_the_flag() {
    let work = tempfile::tempdir().unwrap();
    let (gguf, bare) = (work.path().join("tiny.gguf"), work.path().join("bare.gguf"));
    std::fs::write(&gguf, tiny_gguf::gguf_bytes(true)).unwrap();
    std::fs::write(&bare, tiny_gguf::gguf_bytes(false)).unwrap();
    let packed = work.path().join("bare.safetensors");
    let err = pack(&bare, &[], &packed);
    assert!(
        err.contains("carries no tokenizer") && err.contains("--tokenizer"),
        "{err}"
    );
    let (ok, _, err) = sparq(&["generate", path(&packed), "hello", "--max-tokens", "2"]);
    assert!(!ok);
    assert!(
        err.starts_with("sparq: ")
            && err.contains("looked at")
            && err.contains("sparq.tokenizer.gguf")
            && err.contains("--tokenizer FILE.gguf"),
        "{err}"
    );
    // The same weights as tiny.gguf: with its tokenizer named, the same text.
    let want = generate(&gguf, &[]);
    assert_eq!(generate(&packed, &["--tokenizer", path(&gguf)]), want);
    // pack --tokenizer stores it.
    let named = work.path().join("named.safetensors");
    pack(&bare, &["--tokenizer", path(&gguf)], &named);
    assert_eq!(generate(&named, &[]), want);
    // A --tokenizer that is no GGUF file is refused by pack before it packs.
    let json = work.path().join("tokenizer.json");
    std::fs::write(&json, "{}").unwrap();
    let out = work.path().join("never.safetensors");
    let (ok, _, err) = sparq(&[
        "pack",
        path(&bare),
        "--format",
        "f32",
        "--tokenizer",
        path(&json),
        "-o",
        path(&out),
    ]);
    assert!(!ok && err.contains("tokenizer.json"), "{err}");
    assert!(!out.exists());
}

/// `perplexity` reports through the envelope of docs/output.md like every result command:
/// `--output json` on standard output, `--json PATH` in a file, a line of text by default.
#[test]
fn perplexity_writes_the_envelope() {
    let work = tempfile::tempdir().unwrap();
    let gguf = work.path().join("tiny.gguf");
    std::fs::write(&gguf, tiny_gguf::gguf_bytes(true)).unwrap();
    let text = work.path().join("text.txt");
    std::fs::write(&text, "hello world hello world hello world").unwrap();
    let args = ["perplexity", path(&gguf), path(&text), "--context", "4"];
    let (ok, out, err) = sparq(&[&args[..], &["--output", "json"]].concat());
    assert!(ok, "{err}");
    let env: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(env["command"], "perplexity");
    for key in ["sparq", "schema", "commit", "date", "adapter", "settings"] {
        assert!(!env[key].is_null(), "{key}: {out}");
    }
    let ppl = env["rows"][0]["perplexity"].as_f64().unwrap();
    assert!(ppl.is_finite() && ppl >= 1.0, "{out}");
    assert_eq!(env["settings"]["context"], 4);
    let file = work.path().join("ppl.json");
    let (ok, out, err) = sparq(&[&args[..], &["--json", path(&file)]].concat());
    assert!(ok, "{err}");
    assert!(out.starts_with("perplexity "), "{out}");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        written["rows"][0]["perplexity"],
        env["rows"][0]["perplexity"]
    );
}
