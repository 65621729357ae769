//! The real models (MiniLM, SmolLM2) behind an in-process server: the adapters, the services,
//! the server on a loopback port, and the HTTP and metrics helpers the tests share.
#![allow(dead_code)]

use sparq::Gpu;
use sparq::gguf::Gguf;
use sparq::gpu::{enumerate_adapters, instance};
use sparq::model::LoadOptions;
use sparq::model::llama::{DecoderOptions, LlamaDecoder};
use sparq::model::text::TextCodec;
use sparq::schedule::embedding::{EmbeddingConfig, EmbeddingService};
use sparq::schedule::generation::{GenerationConfig, GenerationEngine, GenerationReplica};
use sparq_server::{EngineGenerator, Server, ServerConfig};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The workspace root (`models/` lives there).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ has a parent")
        .to_path_buf()
}

/// all-MiniLM-L6-v2's folder, or `None` (with a note) when the set-up has not fetched it.
pub fn minilm() -> Option<PathBuf> {
    let dir = root().join("models/all-MiniLM-L6-v2");
    present(dir.join("model.safetensors")).then_some(dir)
}

/// SmolLM2-135M-Instruct's GGUF file, or `None` (with a note).
pub fn smollm2() -> Option<PathBuf> {
    let file = root().join("models/SmolLM2-135M-Instruct/model.gguf");
    present(file.clone()).then_some(file)
}

fn present(path: PathBuf) -> bool {
    let ok = path.is_file();
    if !ok {
        eprintln!(
            "skipping: {} is missing (bash scripts/setup.sh fetches it)",
            path.display()
        );
    }
    ok
}

/// One device per adapter of the machine (lavapipe and llvmpipe in CI), restricted by
/// `SPARQ_TEST_ADAPTERS` (a backend or name substring) as the library's tests are.
pub fn gpus() -> Vec<Arc<Gpu>> {
    let inst = instance();
    let filter = std::env::var("SPARQ_TEST_ADAPTERS").ok();
    let gpus: Vec<Arc<Gpu>> = enumerate_adapters(&inst)
        .into_iter()
        .filter(|a| {
            let info = a.get_info();
            filter.as_ref().is_none_or(|f| {
                let f = f.to_ascii_lowercase();
                info.name.to_ascii_lowercase().contains(&f)
                    || format!("{:?}", info.backend).to_ascii_lowercase() == f
            })
        })
        .filter_map(|a| match Gpu::from_adapter(a, &inst) {
            Ok(g) => Some(Arc::new(g)),
            Err(e) => {
                eprintln!("skipping adapter: {e}");
                None
            }
        })
        .collect();
    assert!(
        !gpus.is_empty(),
        "no adapter to test on (install mesa-vulkan-drivers)"
    );
    gpus
}

/// The Vulkan adapter (lavapipe in CI), where SmolLM2 runs in test time; `None` (with a note)
/// when the filter or the machine leaves none.
pub fn vulkan() -> Option<Arc<Gpu>> {
    let g = gpus()
        .into_iter()
        .find(|g| g.caps.backend.eq_ignore_ascii_case("vulkan"));
    if g.is_none() {
        eprintln!("skipping: no Vulkan adapter for SmolLM2");
    }
    g
}

/// A second device on `gpu`'s adapter (two devices of one adapter make a two-device cluster).
pub fn twin(gpu: &Gpu) -> Arc<Gpu> {
    Arc::new(Gpu::from_adapter(gpu.adapter.clone(), &instance()).unwrap())
}

/// The embedding service on `gpus`: what `sparq serve --batch-invariant` runs, so that the
/// tests can compare vectors bit for bit with the input alone (the default, per-shape
/// kernels, is checked within rounding by `openai_python.rs`).
pub fn embedding_service(dir: &std::path::Path, gpus: Vec<Arc<Gpu>>) -> EmbeddingService {
    let options = LoadOptions::default().batch_invariant(true);
    EmbeddingService::open(dir, gpus, options, EmbeddingConfig::default()).unwrap()
}

/// The KV cache the decoders get: room for the tests' few sequences, small enough to allocate
/// quickly.
pub fn decoder_options() -> DecoderOptions {
    DecoderOptions {
        kv_tokens: Some(1024),
        ..DecoderOptions::default()
    }
}

/// SmolLM2's text codec.
pub fn codec(file: &std::path::Path) -> Arc<TextCodec> {
    Arc::new(sparq::model::llama::gguf::text_codec(&Gguf::open(file).unwrap()).unwrap())
}

/// SmolLM2 on `gpu` in a generation engine (one replica, defaults), as `sparq serve` builds it.
pub fn generator(file: &std::path::Path, gpu: &Arc<Gpu>) -> EngineGenerator {
    let lm = LlamaDecoder::open_shared(file, gpu.clone(), decoder_options()).unwrap();
    let codec = codec(file);
    let replicas = vec![GenerationReplica {
        name: sparq::schedule::device_name(0, gpu),
        lm: Arc::new(lm),
    }];
    let engine =
        GenerationEngine::new(replicas, Some(codec.clone()), GenerationConfig::default()).unwrap();
    EngineGenerator::new(engine, codec)
}

/// A server on 127.0.0.1 (port 0) run by [`Server::run`] on a runtime of its own, and a side
/// listener serving the same routes without the shutdown (what the server answers while it
/// shuts down, after the main listener has closed).
pub struct Served {
    pub base: String,
    pub side: String,
    pub server: Server,
    pub rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Serves `server` (its models already added), ready.
pub fn serve(server: Server) -> Served {
    server.set_ready();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (base, side, done) = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let side = format!("http://{}", l2.local_addr().unwrap());
        let router = server.router();
        tokio::spawn(async move { axum::serve(l2, router).await });
        let run = server.clone().run(l, async move {
            let _ = stopped.await;
        });
        (base, side, tokio::spawn(run))
    });
    Served {
        base,
        side,
        server,
        rt,
        stop: Some(stop),
        done: Some(done),
    }
}

/// A new server with the default limits.
pub fn server() -> Server {
    Server::new(ServerConfig::default())
}

impl Served {
    /// Completes the shutdown future given to [`Server::run`].
    pub fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// What [`Server::run`] returned (at most `limit` after the shutdown).
    pub fn join(&mut self, limit: Duration) -> std::io::Result<()> {
        let done = self.done.take().expect("joined once");
        self.rt
            .block_on(async { tokio::time::timeout(limit, done).await })
            .expect("run returns within the limit")
            .expect("run does not panic")
    }

    /// `GET /metrics` of the main listener.
    pub fn metrics(&self) -> String {
        let (status, body) = get(&format!("{}/metrics", self.base));
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// An HTTP agent that returns every status instead of turning 4xx/5xx into errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// POSTs JSON: the status and the body.
pub fn post(url: &str, body: &serde_json::Value) -> (u16, String) {
    let mut r = try_post(url, body).unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let body = r.body_mut().read_to_string().unwrap();
    (r.status().as_u16(), body)
}

/// POSTs JSON; the response unread (a stream), or the transport's error.
pub fn try_post(
    url: &str,
    body: &serde_json::Value,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    agent()
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
}

/// POSTs JSON and parses a 200 answer.
pub fn post_ok(url: &str, body: &serde_json::Value) -> serde_json::Value {
    let (status, text) = post(url, body);
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// GETs `url`: the status and the body.
pub fn get(url: &str) -> (u16, String) {
    let mut r = agent()
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let body = r.body_mut().read_to_string().unwrap();
    (r.status().as_u16(), body)
}

/// A streamed answer read event by event.
pub struct Events {
    lines: std::io::Lines<BufReader<ureq::BodyReader<'static>>>,
}

impl Events {
    /// Opens the stream of a 200 answer.
    pub fn open(url: &str, body: &serde_json::Value) -> Self {
        let r = try_post(url, body).unwrap_or_else(|e| panic!("POST {url}: {e}"));
        assert_eq!(r.status().as_u16(), 200);
        let ct = r.headers().get("content-type").unwrap().to_str().unwrap();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Events {
            lines: BufReader::new(r.into_body().into_reader()).lines(),
        }
    }

    /// The next `data:` payload (`None` at the end of the body).
    pub fn next(&mut self) -> Option<String> {
        for line in self.lines.by_ref() {
            let line = line.expect("the stream reads");
            if let Some(d) = line.strip_prefix("data: ") {
                return Some(d.to_string());
            }
            assert!(line.is_empty(), "not an SSE line: {line:?}");
        }
        None
    }

    /// Every payload to the end; the last must be `[DONE]` (left out of the result).
    pub fn rest(mut self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        while let Some(d) = self.next() {
            if d == "[DONE]" {
                assert!(self.next().is_none(), "events after [DONE]");
                return out;
            }
            out.push(serde_json::from_str(&d).unwrap_or_else(|e| panic!("{e}: {d}")));
        }
        panic!("the stream ended without [DONE] after {out:?}");
    }
}

/// The value of Prometheus sample `name` with label `model="MODEL"` (the first such line: one
/// device per model here), or `None`.
pub fn sample(text: &str, name: &str, model: &str) -> Option<f64> {
    let want = format!("model=\"{model}\"");
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        let (metric, labels) = key.split_once('{')?;
        (metric == name && labels.split(',').any(|kv| kv.trim_end_matches('}') == want))
            .then(|| value.parse().ok())
            .flatten()
    })
}

/// The bits of a vector (exact comparison, NaN included).
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
