//! A client of sparq's OpenAI-compatible server: starts the server in this process on a free
//! loopback port with all-MiniLM-L6-v2 (and SmolLM2-135M-Instruct when present; both fetched
//! into models/ by scripts/setup.sh), then calls it over HTTP as any OpenAI client would:
//! `GET /v1/models`, `POST /v1/embeddings`, `POST /v1/chat/completions`.
//!
//!     cargo run --release -p sparq-server --example server_client -- [MINILM_DIR] [GGUF]

use sparq::model::{LoadOptions, cosine};
use sparq::schedule::embedding::{EmbeddingConfig, EmbeddingService};
use sparq::schedule::generation::{GenerationConfig, GenerationEngine, GenerationReplica};
use sparq::{Error, Gpu, Result};
use sparq_server::{EngineGenerator, Server, ServerConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

fn main() -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut args = std::env::args().skip(1);
    let minilm = args
        .next()
        .map_or_else(|| root.join("models/all-MiniLM-L6-v2"), PathBuf::from);
    let gguf = args.next().map_or_else(
        || root.join("models/SmolLM2-135M-Instruct/model.gguf"),
        PathBuf::from,
    );

    // The server, as `sparq serve --model minilm=... --model smollm2=...` builds it.
    let gpu = Arc::new(Gpu::from_env()?);
    let server = Server::new(ServerConfig::default());
    let embedder = EmbeddingService::open(
        &minilm,
        vec![gpu.clone()],
        LoadOptions::default(),
        EmbeddingConfig::default(),
    )?;
    server.add_embedder("minilm", Arc::new(embedder));
    if gguf.is_file() {
        server.add_generator("smollm2", Arc::new(generator(&gguf, &gpu)?));
    }
    server.set_ready();
    let rt = tokio::runtime::Runtime::new()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = rt.spawn(server.run(listener, async {
        let _ = stopped.await;
    }));
    println!("serving on {base}");

    // The client: plain HTTP and JSON.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into();
    let models = get(&agent, &format!("{base}/v1/models"))?;
    let names: Vec<&str> = models["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str())
        .collect();
    println!("GET /v1/models: {names:?}");

    let sentences = [
        "A man is eating food.",
        "Someone is having a meal.",
        "It is raining.",
    ];
    let answer = post(
        &agent,
        &format!("{base}/v1/embeddings"),
        serde_json::json!({ "model": "minilm", "input": sentences }),
    )?;
    let vectors: Vec<Vec<f32>> = answer["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| serde_json::from_value(d["embedding"].clone()).unwrap_or_default())
        .collect();
    println!(
        "POST /v1/embeddings: {} vectors of {}",
        vectors.len(),
        vectors.first().map_or(0, Vec::len)
    );
    if vectors.len() == 3 {
        println!("  cosine(0, 1) = {:+.3}", cosine(&vectors[0], &vectors[1]));
        println!("  cosine(0, 2) = {:+.3}", cosine(&vectors[0], &vectors[2]));
    }

    if gguf.is_file() {
        let answer = post(
            &agent,
            &format!("{base}/v1/chat/completions"),
            serde_json::json!({
                "model": "smollm2",
                "messages": [{ "role": "user", "content": "What is the capital of France?" }],
                "max_tokens": 12,
                "temperature": 0,
            }),
        )?;
        println!(
            "POST /v1/chat/completions: {:?} ({} tokens)",
            answer["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or(""),
            answer["usage"]["completion_tokens"]
        );
    }

    let _ = stop.send(());
    rt.block_on(running)
        .map_err(|e| Error::invalid(format!("server task: {e}")))??;
    Ok(())
}

/// SmolLM2 in a generation engine of one replica, as `sparq serve` builds it.
fn generator(gguf: &std::path::Path, gpu: &Arc<Gpu>) -> Result<EngineGenerator> {
    use sparq::model::llama::{DecoderOptions, LlamaDecoder};
    let options = DecoderOptions {
        kv_tokens: Some(1024),
        ..DecoderOptions::default()
    };
    let lm = LlamaDecoder::open_shared(gguf, gpu.clone(), options)?;
    let codec = Arc::new(sparq::model::llama::gguf::text_codec(
        &sparq::gguf::Gguf::open(gguf)?,
    )?);
    let replicas = vec![GenerationReplica {
        name: sparq::schedule::device_name(0, gpu),
        lm: Arc::new(lm),
    }];
    let engine = GenerationEngine::new(replicas, Some(codec.clone()), GenerationConfig::default())?;
    Ok(EngineGenerator::new(engine, codec))
}

fn get(agent: &ureq::Agent, url: &str) -> Result<serde_json::Value> {
    let mut r = agent
        .get(url)
        .call()
        .map_err(|e| Error::invalid(format!("GET {url}: {e}")))?;
    json(r.body_mut().read_to_string(), url)
}

fn post(agent: &ureq::Agent, url: &str, body: serde_json::Value) -> Result<serde_json::Value> {
    let mut r = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .map_err(|e| Error::invalid(format!("POST {url}: {e}")))?;
    json(r.body_mut().read_to_string(), url)
}

fn json(body: std::result::Result<String, ureq::Error>, url: &str) -> Result<serde_json::Value> {
    let text = body.map_err(|e| Error::invalid(format!("{url}: {e}")))?;
    serde_json::from_str(&text).map_err(|e| Error::invalid(format!("{url}: {e}: {text}")))
}
