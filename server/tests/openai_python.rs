//! The official `openai` Python client (installed by scripts/setup.sh into .venv-openai)
//! against a real `sparq serve` with MiniLM and SmolLM2: server/tests/openai_client.py does
//! the checks (embeddings equal to `sparq embed`'s, completions, chat streamed and not,
//! models.list, 400/401/404 errors); this test starts the server and runs it.
//!
//! Without the venv this test fails (the set-up warned why); SPARQ_SKIP_OPENAI=1 skips it.

mod served;

use served::{KEY, Served, root, sparq_bin};
use std::process::Command;
use std::time::Duration;

const TEXTS: [&str; 2] = [
    "A sentence to embed.",
    "Another, somewhat longer, sentence to embed.",
];

#[test]
fn openai_python_client() {
    if std::env::var("SPARQ_SKIP_OPENAI").as_deref() == Ok("1") {
        eprintln!("skipping: SPARQ_SKIP_OPENAI=1");
        return;
    }
    let python = root().join(".venv-openai/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/setup.sh` (it installs the openai client; see its \
         warning), or set SPARQ_SKIP_OPENAI=1 to skip this test",
        python.display()
    );
    let Some(models) = served::models() else {
        return;
    };

    // The expected vectors: `sparq embed` on the same texts, one JSON array per line.
    let out = Command::new(sparq_bin())
        .args(["embed", "models/all-MiniLM-L6-v2"])
        .args(TEXTS)
        .current_dir(root())
        .output()
        .expect("sparq embed runs");
    assert!(
        out.status.success(),
        "sparq embed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vectors: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON array per line"))
        .collect();
    assert_eq!(vectors.len(), TEXTS.len());
    let expected =
        std::env::temp_dir().join(format!("sparq-openai-expected-{}.json", std::process::id()));
    let body = serde_json::json!({"input": TEXTS, "embeddings": vectors, "atol": 1e-4});
    std::fs::write(&expected, body.to_string()).expect("write the expected embeddings");

    let server = Served::start(
        &["--model", models[0], "--model", models[1]],
        Duration::from_secs(300),
    );
    let out = Command::new(&python)
        .arg(root().join("server/tests/openai_client.py"))
        .args(["--url", &server.url, "--api-key", KEY])
        .args(["--embed-model", "minilm", "--gen-model", "smollm2"])
        .arg("--expected")
        .arg(&expected)
        .output()
        .expect("the venv's python runs");
    let _ = std::fs::remove_file(&expected);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "openai_client.py failed ({}):\n{stdout}\n{}\nserver log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}
