//! Files `sparq` writes and its standard output: a closed pipe ends a command quietly, a
//! packed file appears whole or not at all (kill -9 included), with the user's umask, never
//! over its own input, never in a shape the runtime refuses, and no temporary file is left.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const BIN: &str = env!("CARGO_BIN_EXE_sparq");

fn digits() -> String {
    format!("{ROOT}/tests/fixtures/digits_mlp.safetensors")
}

fn sparq(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `rows` of the MLP's input features, as `sparq run` reads them.
fn features(rows: usize) -> String {
    let x = vec![vec![0.5f32; 64]; rows];
    serde_json::json!({ "features": x }).to_string()
}

/// Runs `sparq args` with `stdin`, its standard output a pipe whose read end is closed at
/// once (nothing reads it).
fn with_closed_stdout(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut input = child.stdin.take().unwrap();
    // The child may have stopped reading: a failed write here is fine.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    child.wait_with_output().unwrap()
}

fn assert_quiet_success(what: &str, o: &Output) {
    let err = stderr(o);
    assert!(
        o.status.success() && !err.contains("panic") && !err.contains("Broken pipe"),
        "{what}: {:?} {err}",
        o.status
    );
}

#[test]
fn a_closed_stdout_ends_run_and_embed_quietly() {
    let model = digits();
    let o = with_closed_stdout(&["run", &model, "--input", "-"], &features(3));
    assert_quiet_success("run", &o);
    let minilm = format!("{ROOT}/models/all-MiniLM-L6-v2");
    assert!(Path::new(&minilm).is_dir(), "{minilm} is missing");
    let o = with_closed_stdout(&["embed", &minilm, "a", "b"], "");
    assert_quiet_success("embed, pipe closed at once", &o);
    // `| head -1`: the reader takes one line (of ~8 kB) and goes; the other 39 fill the pipe.
    let sentences: Vec<String> = (0..40).map(|i| format!("sentence number {i}")).collect();
    let mut child = Command::new(BIN)
        .arg("embed")
        .arg(&minilm)
        .args(&sentences)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with('['), "{line}");
    let o = child.wait_with_output().unwrap();
    assert_quiet_success("embed | head -1", &o);
}

/// Any other failure to write standard output is an error line, not a panic.
#[cfg(target_os = "linux")]
#[test]
fn a_full_stdout_is_one_error_line() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = Command::new(BIN)
        .args(["run", &digits(), "--input", "-"])
        .stdin(Stdio::piped())
        .stdout(full)
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(features(2).as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    // (The GL backend may log its own lines first.)
    let ours: Vec<&str> = err.lines().filter(|l| l.starts_with("sparq:")).collect();
    assert!(
        ours.len() == 1 && ours[0].starts_with("sparq: standard output: No space"),
        "{err}"
    );
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[cfg(unix)]
#[test]
fn packed_and_json_files_get_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.json");
    std::fs::write(&input, features(1)).unwrap();
    for (umask, mode) in [("027", 0o640), ("002", 0o664)] {
        let out = dir.path().join(format!("m{umask}.safetensors"));
        let json = dir.path().join(format!("r{umask}.json"));
        let script = format!(
            "umask {umask} && \"$0\" pack \"$1\" --format int8 -o \"$2\" && \
             \"$0\" run \"$2\" --input \"$3\" --output \"$4\""
        );
        let o = Command::new("sh")
            .args(["-c", &script, BIN, &digits()])
            .args([&out, &input, &json])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        for f in [&out, &json] {
            let got = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(got, mode, "{} under umask {umask}", f.display());
        }
    }
    // Nothing but the outputs (no temporary file) is left beside them.
    assert!(
        entries(dir.path())
            .iter()
            .all(|n| !n.starts_with('.') && !n.contains("partial")),
        "{:?}",
        entries(dir.path())
    );
}

#[test]
fn pack_refuses_to_write_over_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("mlp");
    std::fs::create_dir(&model_dir).unwrap();
    let file = model_dir.join("model.safetensors");
    std::fs::copy(digits(), &file).unwrap();
    let original = std::fs::read(&file).unwrap();
    let hard = dir.path().join("hard.safetensors");
    std::fs::hard_link(&file, &hard).unwrap();
    let mut cases: Vec<(PathBuf, PathBuf)> = vec![
        (file.clone(), file.clone()),
        (file.clone(), hard.clone()),
        (hard.clone(), file.clone()),
        (model_dir.clone(), file.clone()),
        (
            model_dir.clone(),
            model_dir.join(".").join("model.safetensors"),
        ),
    ];
    #[cfg(unix)]
    {
        let soft = dir.path().join("soft.safetensors");
        std::os::unix::fs::symlink(&file, &soft).unwrap();
        cases.push((file.clone(), soft.clone()));
        cases.push((model_dir.clone(), soft));
    }
    for (input, output) in &cases {
        let (i, o) = (input.to_str().unwrap(), output.to_str().unwrap());
        let r = sparq(&["pack", i, "--format", "int8", "-o", o]);
        let err = stderr(&r);
        assert!(
            !r.status.success()
                && err.contains("is the input")
                && err.contains(o)
                && err.trim().lines().count() == 1,
            "{i} -> {o}: {err}"
        );
        assert_eq!(std::fs::read(&file).unwrap(), original, "{i} -> {o}");
    }
    // `run --output` over the model is refused too, before it runs.
    let json = dir.path().join("in.json");
    std::fs::write(&json, features(1)).unwrap();
    let r = sparq(&[
        "run",
        model_dir.to_str().unwrap(),
        "--input",
        json.to_str().unwrap(),
        "--output",
        file.to_str().unwrap(),
    ]);
    assert!(
        !r.status.success() && stderr(&r).contains("is the input"),
        "{}",
        stderr(&r)
    );
    assert_eq!(std::fs::read(&file).unwrap(), original);
    // A new file beside the input is fine.
    let beside = model_dir.join("int8.safetensors");
    let r = sparq(&[
        "pack",
        model_dir.to_str().unwrap(),
        "--format",
        "int8",
        "-o",
        beside.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
}

/// A pack that fails after the `neurons:S` shrink leaves nothing in the temporary directory,
/// and neither does one that succeeds.
#[test]
fn pack_leaves_no_temporary_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    // Without XDG_RUNTIME_DIR the binary makes a private one in TMPDIR (gl_env.rs), which
    // is not a temporary file of `pack`: give it one elsewhere (a tempdir is mode 0700).
    let runtime = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("m.safetensors");
    let out = out.to_str().unwrap();
    let model = digits();
    let pack = |extra: &[&str]| {
        Command::new(BIN)
            .args(["pack", &model, "--format", "int4", "--prune", "neurons:0.5"])
            .args(extra)
            .args(["-o", out])
            .env("TMPDIR", tmp.path())
            .env("XDG_RUNTIME_DIR", runtime.path())
            .output()
            .unwrap()
    };
    let r = pack(&["--calibrate", "/no/such/calibration.txt"]);
    assert!(!r.status.success(), "{}", stderr(&r));
    assert!(
        stderr(&r).contains("/no/such/calibration.txt"),
        "{}",
        stderr(&r)
    );
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
    assert_eq!(entries(out_dir.path()), Vec::<String>::new());
    let r = pack(&[]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
    assert_eq!(entries(out_dir.path()), ["m.safetensors"]);
}

/// Pack errors name the path asked for, not a temporary file.
#[test]
fn pack_errors_name_the_requested_path() {
    let out = "/no/such/dir/out.safetensors";
    let r = sparq(&["pack", &digits(), "--format", "int8", "-o", out]);
    let err = stderr(&r);
    assert!(
        !r.status.success() && err.contains(out) && !err.contains("partial"),
        "{err}"
    );
}

/// Block shapes and prunes the runtime cannot serve are refused at pack time, before any
/// work (no file written), with the shapes that are supported.
#[test]
fn pack_refuses_what_the_runtime_cannot_load() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors");
    let out = out.to_str().unwrap();
    let model = digits();
    for (format, prune, want) in [
        ("f16", "blocks:1x1:0.5", "C in 8, 16, 24"),
        ("int8", "blocks:4x8:0.5", "C in 16, 32, 48"),
        ("f32", "blocks:65536x65536:0.5", "R in 1..=16"),
        ("int4", "blocks:17x32:0.5", "R in 1..=16"),
        // The digits MLP's last layer is 10 × 64: one 16 × 64 block covers all of it.
        ("f32", "blocks:16x64:0.5", "cover the whole 10×64"),
        ("f16", "blocks:1x8:1", "removes every weight"),
        ("f16", "magnitude:1", "removes every weight"),
        ("f16", "global:1", "removes every weight"),
    ] {
        let r = sparq(&[
            "pack", &model, "--format", format, "--prune", prune, "-o", out,
        ]);
        let err = stderr(&r);
        assert!(
            !r.status.success() && err.contains(want) && err.trim().lines().count() == 1,
            "{format} {prune}: {err}"
        );
        assert!(!Path::new(out).exists(), "{format} {prune} wrote a file");
    }
    for (format, prune) in [("f16", "blocks:1x8:0.5"), ("int8", "blocks:2x16:0.5")] {
        let r = sparq(&[
            "pack", &model, "--format", format, "--prune", prune, "-o", out,
        ]);
        assert!(r.status.success(), "{format} {prune}: {}", stderr(&r));
        let r = Command::new(BIN)
            .args(["run", out, "--input", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(features(2).as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(r.status.success(), "run {format} {prune}: {}", stderr(&r));
    }
}

/// A float MLP of `width` × `width` layers, written as a safetensors file by hand.
fn write_mlp(path: &Path, width: usize) {
    let sizes = [width, width, width, 10];
    let config = serde_json::json!({"architecture": "mlp", "sizes": sizes, "activation": "relu"});
    let mut header = serde_json::json!({"__metadata__": {"sparq.config": config.to_string()}});
    let mut data: Vec<u8> = Vec::new();
    let mut seed = 1u32;
    for i in 0..sizes.len() - 1 {
        let (k, n) = (sizes[i], sizes[i + 1]);
        for (name, shape) in [("weight", vec![n, k]), ("bias", vec![n])] {
            let start = data.len();
            for _ in 0..shape.iter().product::<usize>() {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let v = (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                data.extend((v * 0.1).to_le_bytes());
            }
            header[format!("layers.{i}.{name}")] = serde_json::json!({
                "dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]
            });
        }
    }
    let mut h = header.to_string().into_bytes();
    h.resize(h.len().next_multiple_of(8), b' ');
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend(h);
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

/// `sparq pack` killed (SIGKILL) at delays spread over its run leaves at its `-o` path the
/// old file byte for byte or the whole new one, never a part.
#[test]
fn a_killed_pack_leaves_the_old_file_or_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("float.safetensors");
    write_mlp(&model, 1536);
    let out = dir.path().join("out.safetensors");
    let (model, out_s) = (model.to_str().unwrap(), out.to_str().unwrap());
    let args = ["pack", model, "--format", "f32", "-o", out_s];
    let start = Instant::now();
    let r = sparq(&args);
    let full = start.elapsed();
    assert!(r.status.success(), "{}", stderr(&r));
    let new = std::fs::read(&out).unwrap();
    assert!(new.len() > 9_000_000, "{} bytes", new.len());
    sparq::model::loader::WeightFile::open(&out).expect("the complete file loads");
    let old = b"the old file, which a kill must not damage".to_vec();
    let (mut olds, mut news) = (0, 0);
    let steps = 16;
    for i in 0..=steps {
        std::fs::write(&out, &old).unwrap();
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // From before it opens anything to after it should have finished.
        std::thread::sleep(full.mul_f64(1.2 * i as f64 / steps as f64));
        let _ = child.kill();
        child.wait().unwrap();
        let got = std::fs::read(&out).unwrap();
        if got == old {
            olds += 1;
        } else {
            assert!(
                got == new,
                "kill {i}: {} bytes, neither old nor new",
                got.len()
            );
            news += 1;
        }
        for name in entries(dir.path()) {
            if name.starts_with(".out.safetensors.partial-") {
                std::fs::remove_file(dir.path().join(name)).unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("{olds} kills left the old file, {news} the new one (a full pack: {full:?})");
    assert!(olds > 0, "no kill landed before the rename");
}
