//! A real `sparq serve` process for the integration tests: found next to the test binary,
//! started on a free loopback port, waited for until `/health` answers 200, killed on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The API key the tests start the server with.
pub const KEY: &str = "test-key";

/// The workspace root (the server runs there, so `models/...` paths resolve).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ has a parent")
        .to_path_buf()
}

/// The test models, or `None` (with a note) when the set-up has not fetched them.
pub fn models() -> Option<[&'static str; 2]> {
    let m = [
        "minilm=models/all-MiniLM-L6-v2",
        "smollm2=models/SmolLM2-135M-Instruct/model.gguf",
    ];
    for path in [
        "models/all-MiniLM-L6-v2/model.safetensors",
        "models/SmolLM2-135M-Instruct/model.gguf",
    ] {
        if !root().join(path).exists() {
            eprintln!("skipping: {path} is missing (bash scripts/setup.sh fetches it)");
            return None;
        }
    }
    Some(m)
}

/// The `sparq` binary of this build: `$SPARQ_BIN`, else `sparq` in the target directory that
/// holds this test (target/debug/deps/TEST → target/debug/sparq). `cargo test --workspace`
/// builds it; `cargo build -p sparq-cli` does too.
pub fn sparq_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SPARQ_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/PROFILE/deps/TEST");
    let bin = dir.join(format!("sparq{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p sparq-cli) or set SPARQ_BIN",
        bin.display()
    );
    bin
}

/// A port nothing listens on right now (the server binds it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// An HTTP agent that returns every status instead of turning 4xx/5xx into errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A running `sparq serve`.
pub struct Served {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: PathBuf,
}

impl Served {
    /// Starts `sparq serve ARGS --host 127.0.0.1 --port P --api-key KEY` and waits up to
    /// `ready` for `/health` to answer 200; panics (with the server's log) otherwise.
    pub fn start(args: &[&str], ready: Duration) -> Self {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("sparq-serve-{port}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(sparq_bin())
            .arg("serve")
            .args(args)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--api-key",
                KEY,
            ])
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("sparq serve starts");
        let mut s = Served {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!(
                    "sparq serve exited with {status} before it was ready:\n{}",
                    s.log()
                );
            }
            if s.get("/health").0 == 200 {
                return s;
            }
            assert!(
                start.elapsed() < ready,
                "sparq serve not ready after {ready:?}:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// GET `path`: the status (0 when there was no answer) and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        match agent().get(format!("{}{path}", self.url)).call() {
            Ok(mut r) => (
                r.status().as_u16(),
                r.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(_) => (0, String::new()),
        }
    }

    /// The server's resident memory, KiB (Linux: VmRSS in /proc/PID/status).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The sum of every sample of the Prometheus metric `name` (all label sets) in `text`.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let metric = key.split('{').next()?;
            (metric == name)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}
