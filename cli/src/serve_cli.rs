//! `sparq serve`: the OpenAI-compatible server (crate `sparq-server`) over the models named
//! on the command line, each on its own devices.

use crate::out::outln;
use sparq::formats::WeightFormat;
use sparq::gguf::Gguf;
use sparq::gpu::AdapterSelector;
use sparq::model::LoadOptions;
use sparq::model::llama::hf::{CheckpointKind, detect};
use sparq::model::llama::{DecoderOptions, LlamaDecoder};
use sparq::model::text::TextCodec;
use sparq::schedule::embedding::{EmbeddingConfig, EmbeddingService};
use sparq::schedule::generation::{GenerationConfig, GenerationEngine, GenerationReplica};
use sparq::schedule::{device_name, open_devices};
use sparq::{Error, Gpu, Result};
use sparq_server::{EngineGenerator, Server, ServerConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub device: crate::device_args::DeviceArgs,
    /// A model to serve, as NAME=PATH or NAME=PATH@ADAPTERS (repeatable). A decoder is a GGUF
    /// file, a Hugging Face Llama checkpoint or a `sparq pack` file; an encoder is a
    /// MiniLM-style model directory or packed safetensors; `random:SHAPE[:FORMAT]` (e.g.
    /// `random:llama-1b:int4g32m`) is a decoder of that shape with random weights, for
    /// benchmarks (prompts tokenised with its --tokenizer; its tokens have no text).
    /// ADAPTERS: `all` or adapter selectors, comma-separated; a model on several runs one
    /// replica per device.
    #[arg(long = "model", value_name = "NAME=PATH[@ADAPTERS]", required = true)]
    models: Vec<String>,
    /// Devices of the models that name none (default: the global --adapter, else
    /// SPARQ_ADAPTER, else `best`).
    #[arg(long)]
    adapters: Option<String>,
    /// The GGUF file whose tokenizer a decoder uses, as NAME=FILE (repeatable); by default the
    /// one a packed file carries, else a GGUF model's own.
    #[arg(long = "tokenizer", value_name = "NAME=FILE.gguf")]
    tokenizers: Vec<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// An API key clients must send as `Authorization: Bearer KEY` (repeatable).
    #[arg(long = "api-key", value_name = "KEY")]
    api_keys: Vec<String>,
    /// A file of API keys, one per line.
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// Largest request body in bytes (beyond it: 413).
    #[arg(long, default_value_t = 8 << 20)]
    max_body_bytes: usize,
    /// A request's deadline in seconds (a plain answer gets 504; a stream ends with an error).
    #[arg(long, default_value_t = 600.0)]
    request_timeout_s: f64,
    /// Requests waiting per model, at most (beyond it: 429).
    #[arg(long)]
    max_waiting: Option<usize>,
    /// Sequences a decoder replica runs at once, at most.
    #[arg(long)]
    max_running: Option<usize>,
    /// Milliseconds an embedding request waits for others to share its pass when the device
    /// is idle (requests arriving during a pass share the next one anyway).
    #[arg(long, default_value_t = 0.0)]
    embed_window_ms: f64,
    /// Format of an encoder's float weights (f32 as `sparq embed`; f16 for speed); packed
    /// files keep theirs.
    #[arg(long, default_value = "f32")]
    embed_format: String,
    /// Embed with kernels whose rows do not depend on the rows sharing a pass (bit-equal to
    /// the input alone; slower: no per-shape kernel choice, no tensor cores).
    #[arg(long)]
    batch_invariant: bool,
    /// Token rows of one decoder step (decode tokens plus prefill chunks), at most.
    #[arg(long)]
    step_tokens: Option<usize>,
    /// Tokens each decoder replica's KV cache holds (the model's context by default).
    #[arg(long)]
    kv_tokens: Option<usize>,
    /// Seconds the shutdown waits for accepted requests before it ends them.
    #[arg(long, default_value_t = 30.0)]
    shutdown_grace_s: f64,
}

struct ModelSpec {
    name: String,
    path: PathBuf,
    adapters: String,
    tokenizer: Option<PathBuf>,
}

fn pairs(items: &[String], what: &str) -> Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((n, v)) if !n.is_empty() && !v.is_empty() => Ok((n.to_string(), v.to_string())),
            _ => Err(Error::config(format!(
                "--{what} '{s}': expected NAME=VALUE"
            ))),
        })
        .collect()
}

fn specs(args: &ServeArgs, selector: &AdapterSelector) -> Result<Vec<ModelSpec>> {
    let default = args.adapters.clone().unwrap_or_else(|| selector.spec());
    let tokenizers = pairs(&args.tokenizers, "tokenizer")?;
    let mut out: Vec<ModelSpec> = Vec::new();
    for (name, rest) in pairs(&args.models, "model")? {
        if out.iter().any(|m| m.name == name) {
            return Err(Error::config(format!("--model {name} is named twice")));
        }
        let (path, adapters) = match rest.rsplit_once('@') {
            Some((p, a)) => (p.to_string(), a.to_string()),
            None => (rest, default.clone()),
        };
        let tokenizer = tokenizers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| PathBuf::from(f));
        out.push(ModelSpec {
            name,
            path: PathBuf::from(path),
            adapters,
            tokenizer,
        });
    }
    if let Some((n, _)) = tokenizers
        .iter()
        .find(|(n, _)| !out.iter().any(|m| m.name == *n))
    {
        return Err(Error::config(format!(
            "--tokenizer {n}: no --model of that name"
        )));
    }
    Ok(out)
}

/// The text codec of a decoder: the GGUF file its `--tokenizer NAME=FILE` names, else the one
/// its packed file carries, else a GGUF model's own.
fn decoder_codec(spec: &ModelSpec) -> Result<TextCodec> {
    sparq::model::llama::tokenizer_file::decoder_codec(&spec.path, spec.tokenizer.as_deref())
}

/// Serves decoder `replicas` as `spec.name`; `text` says whether `codec` is the model's own
/// (else it only tokenises prompts). Returns the ready line.
fn serve_decoder(
    server: &Server,
    spec: &ModelSpec,
    args: &ServeArgs,
    replicas: Vec<GenerationReplica>,
    codec: Arc<TextCodec>,
    text: bool,
    formats: &str,
) -> Result<String> {
    let names: Vec<&str> = replicas.iter().map(|r| r.name.as_str()).collect();
    let on = names.join(", ");
    let defaults = GenerationConfig::default();
    let config = GenerationConfig {
        max_running: args.max_running.unwrap_or(defaults.max_running),
        max_waiting: args.max_waiting.unwrap_or(defaults.max_waiting),
        step_tokens: args.step_tokens.unwrap_or(defaults.step_tokens),
    };
    let engine = GenerationEngine::new(replicas, text.then(|| codec.clone()), config)?;
    let context = engine.max_context();
    let generator = match text {
        true => EngineGenerator::new(engine, codec),
        false => EngineGenerator::tokens_only(engine, codec),
    };
    server.add_generator(spec.name.clone(), Arc::new(generator));
    Ok(format!(
        "model {}: generation (context {context}) on {on}; formats: {formats}",
        spec.name
    ))
}

/// A random-weight decoder of `shape[:format]` on every device of `spec`.
fn load_random(server: &Server, spec: &ModelSpec, what: &str, args: &ServeArgs) -> Result<String> {
    let (shape, format) = match what.split_once(':') {
        Some((s, f)) => (s, WeightFormat::parse(f)?),
        None => (what, WeightFormat::F16),
    };
    let Some(tokenizer) = &spec.tokenizer else {
        return Err(Error::config(format!(
            "--model {}: a random model needs --tokenizer {}=FILE.gguf for its prompts",
            spec.name, spec.name
        )));
    };
    let codec = Arc::new(sparq::model::llama::gguf::text_codec(&Gguf::open(
        tokenizer,
    )?)?);
    let options = DecoderOptions {
        kv_tokens: args.kv_tokens,
        ..DecoderOptions::default()
    };
    let mut replicas = Vec::new();
    for (i, gpu) in open_devices(&spec.adapters)?.into_iter().enumerate() {
        let name = device_name(i, &gpu);
        let lm = sparq::bench::llm::random_decoder(shape, format, gpu, options)?;
        if codec.vocab_size() > lm.config().vocab_size {
            return Err(Error::config(format!(
                "--tokenizer {}: its {} tokens are more than the {} of shape {shape}",
                spec.name,
                codec.vocab_size(),
                lm.config().vocab_size
            )));
        }
        replicas.push(GenerationReplica {
            name,
            lm: Arc::new(lm),
        });
    }
    serve_decoder(server, spec, args, replicas, codec, false, &format.name())
}

/// Loads one model on its devices and adds it to the server; returns its ready line.
fn load(server: &Server, spec: &ModelSpec, args: &ServeArgs) -> Result<String> {
    if let Some(what) = spec.path.to_str().and_then(|p| p.strip_prefix("random:")) {
        return load_random(server, spec, what, args);
    }
    if !spec.path.exists() {
        return Err(Error::config(format!(
            "--model {}: {} does not exist",
            spec.name,
            spec.path.display()
        )));
    }
    let gpus: Vec<Arc<Gpu>> = open_devices(&spec.adapters)?;
    let names: Vec<String> = gpus
        .iter()
        .enumerate()
        .map(|(i, g)| device_name(i, g))
        .collect();
    let options = DecoderOptions {
        kv_tokens: args.kv_tokens,
        ..DecoderOptions::default()
    };
    // A GGUF file is a decoder; anything else is tried as one, then as an encoder.
    let first = LlamaDecoder::open_shared(&spec.path, gpus[0].clone(), options);
    let first = match first {
        Ok(d) => d,
        Err(dec_err) => {
            if matches!(detect(&spec.path), Ok(CheckpointKind::Gguf)) {
                return Err(dec_err);
            }
            let defaults = EmbeddingConfig::default();
            let window = Duration::try_from_secs_f64(args.embed_window_ms / 1e3)
                .ok()
                .filter(|w| *w <= Duration::from_secs(1))
                .ok_or_else(|| Error::config("--embed-window-ms must be within 0..=1000"))?;
            let config = EmbeddingConfig {
                max_waiting: args.max_waiting.unwrap_or(defaults.max_waiting),
                window,
                ..defaults
            };
            let options = LoadOptions::default()
                .format(WeightFormat::parse(&args.embed_format)?)
                .batch_invariant(args.batch_invariant);
            let service =
                EmbeddingService::open(&spec.path, gpus, options, config).map_err(|enc_err| {
                    Error::config(format!(
                        "cannot load {} from {}: as a decoder: {dec_err}; as an encoder: {enc_err}",
                        spec.name,
                        spec.path.display()
                    ))
                })?;
            let dim = service.dimension();
            server.add_embedder(spec.name.clone(), Arc::new(service));
            return Ok(format!(
                "model {}: embedding (dimension {dim}) on {}",
                spec.name,
                names.join(", ")
            ));
        }
    };
    let formats = first.formats().join(", ");
    let codec = Arc::new(decoder_codec(spec)?);
    let mut replicas = vec![GenerationReplica {
        name: names[0].clone(),
        lm: Arc::new(first),
    }];
    for (gpu, name) in gpus.iter().zip(&names).skip(1) {
        let lm = LlamaDecoder::open_shared(&spec.path, gpu.clone(), options)?;
        replicas.push(GenerationReplica {
            name: name.clone(),
            lm: Arc::new(lm),
        });
    }
    serve_decoder(server, spec, args, replicas, codec, true, &formats)
}

fn server_config(args: &ServeArgs) -> Result<ServerConfig> {
    let mut api_keys = args.api_keys.clone();
    if let Some(f) = &args.api_key_file {
        let keys = sparq_server::auth::read_key_file(f)
            .map_err(|e| Error::config(format!("--api-key-file {}: {e}", f.display())))?;
        api_keys.extend(keys);
    }
    let secs = |s: f64, what: &str| {
        Duration::try_from_secs_f64(s)
            .map_err(|_| Error::config(format!("--{what} {s}: not a number of seconds")))
    };
    Ok(ServerConfig {
        api_keys,
        max_body_bytes: args.max_body_bytes,
        request_timeout: secs(args.request_timeout_s, "request-timeout-s")?,
        shutdown_grace: secs(args.shutdown_grace_s, "shutdown-grace-s")?,
    })
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Binds, then loads the models in the background (`/health` answers 503 `loading` until
/// they are in), serves until SIGTERM / Ctrl-C and drains.
pub fn run(selector: &AdapterSelector, args: ServeArgs) -> Result<()> {
    let specs = specs(&args, selector)?;
    let server = Server::new(server_config(&args)?);
    let rt = tokio::runtime::Runtime::new()
        .map_err(|e| Error::config(format!("cannot start the runtime: {e}")))?;
    let addr = format!("{}:{}", args.host, args.port);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(&addr))
        .map_err(|e| Error::config(format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
    outln!(
        "listening on http://{local} (loading {} models)",
        specs.len()
    );
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<Error>();
    let loader = server.clone();
    std::thread::spawn(move || {
        for spec in &specs {
            // A panic would leave the server loading for ever: it fails the start instead.
            let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                load(&loader, spec, &args)
            }))
            .unwrap_or_else(|_| Err(Error::config(format!("loading {} panicked", spec.name))));
            match loaded {
                Ok(line) => outln!("{line}"),
                Err(e) => {
                    let _ = failed_tx.send(e);
                    return;
                }
            }
        }
        loader.set_ready();
        outln!("ready");
    });
    let (err_tx, err_rx) = std::sync::mpsc::channel();
    let shutdown = async move {
        tokio::select! {
            _ = signal() => eprintln!("sparq: shutting down"),
            Ok(e) = failed_rx => { let _ = err_tx.send(e); }
        }
    };
    rt.block_on(server.run(listener, shutdown))
        .map_err(|e| Error::config(format!("the server failed: {e}")))?;
    match err_rx.try_recv() {
        Ok(e) => Err(e),
        Err(_) => Ok(()),
    }
}
