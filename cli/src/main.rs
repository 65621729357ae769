//! The `sparq` command: list adapters, benchmark the kernels.

mod gl_env;
mod llm_cli;
mod model_cli;
mod model_formats;
mod model_text;
mod out;
mod serve_bench_cli;
mod serve_cli;

use crate::out::outln;
use clap::{Parser, Subcommand};
use sparq::InputError;
use sparq::bench::{BenchConfig, TorchBaseline};
use sparq::formats::WeightFormat;
use sparq::gpu::{AdapterSelector, Caps, enumerate_adapters, instance};
use sparq::tensor::ActDType;
use sparq::{Error, Gpu, Result};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "sparq",
    version,
    about = "Compressed neural-network kernels on any GPU (wgpu)"
)]
struct Cli {
    /// Adapter: index, name substring, backend (vulkan|metal|dx12|gl) or `best` [env: SPARQ_ADAPTER].
    #[arg(long, global = true)]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every adapter on every backend with the features sparq uses.
    Devices,
    /// Measure the bandwidth ceiling and every weight format at LLM-like shapes.
    Bench(BenchArgs),
    /// GEMM shapes: tensor-core and DP4A paths against the portable kernels (src/bench/gemm.rs).
    Gemm(GemmArgs),
    #[command(flatten)]
    Model(model_cli::ModelCommand),
    #[command(flatten)]
    Llm(llm_cli::LlmCommand),
    /// Load an OpenAI-compatible server at several concurrency levels (throughput, latency,
    /// time to first token, inter-token latency).
    ServeBench(serve_bench_cli::ServeBenchArgs),
    /// Serve models over an OpenAI-compatible HTTP API (docs/serving.md).
    Serve(serve_cli::ServeArgs),
}

#[derive(clap::Args)]
struct GemmArgs {
    /// Tiny shapes that finish in seconds.
    #[arg(long)]
    quick: bool,
    /// Only the tuned tiling (not every candidate).
    #[arg(long)]
    tuned_only: bool,
    /// Sections to run, comma-separated: square, weights, crossover, dp4a (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// PyTorch fp16 linear timings (JSON from benches/torch_linear.py) to compare with.
    #[arg(long)]
    torch: Option<PathBuf>,
    /// Also write the rows as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// A reduced set that finishes in seconds.
    #[arg(long)]
    quick: bool,
    /// Also write the rows as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Weight formats, comma-separated (f32, f16, int8, int8g32, int4g32, int4g64, int4g128,
    /// int4g32a, int4g32m).
    #[arg(long, value_delimiter = ',', value_parser = WeightFormat::parse)]
    formats: Option<Vec<WeightFormat>>,
    /// Activation rows, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = rows_arg)]
    m: Option<Vec<usize>>,
    /// Weight shapes NxK, comma-separated (e.g. 4096x4096,8192x8192).
    #[arg(long, value_delimiter = ',', value_parser = shape_arg)]
    shapes: Option<Vec<(usize, usize)>>,
    /// Timed runs per case.
    #[arg(long)]
    iters: Option<usize>,
    /// f16 activations (adapters with SHADER_F16).
    #[arg(long)]
    f16_act: bool,
    /// Sparse sweep instead: CSR, BSR and 2:4 against dense over sparsities (see
    /// src/bench/sparse.rs); honours --quick, --m, --shapes, --iters and --json.
    #[arg(long)]
    sparse: bool,
    /// Sparsities of the sparse sweep, comma-separated fractions (e.g. 0.5,0.9).
    #[arg(long, value_delimiter = ',', value_parser = fraction_arg)]
    sparsities: Option<Vec<f64>>,
    /// Sweep the sparse kernels' tuning knobs on one shape (the first of --shapes, 8192x8192
    /// by default) at --m rows (1) instead: src/bench/sparse_tune.rs.
    #[arg(long)]
    sparse_tune: bool,
    /// BSR block shapes of the sparse sweep, comma-separated RxC (e.g. 1x32,4x32,16x16).
    #[arg(long, value_delimiter = ',', value_parser = shape_arg)]
    bsr_blocks: Option<Vec<(usize, usize)>>,
    /// PyTorch timings of the same shapes (JSON from benches/torch_linear.py) to compare with.
    #[arg(long)]
    torch: Option<PathBuf>,
    /// Data-parallel run over these devices instead: `all` or a comma-separated list of
    /// adapter selectors (a selector named twice opens two devices on it).
    #[arg(long)]
    adapters: Option<String>,
    /// With --adapters: a text model (directory or .safetensors) to run data-parallel instead
    /// of the chained layers, one report per batch size of --m (default 64,256,1024 sentences;
    /// --formats takes the weight format, --quick runs 8 and 24 short sentences).
    #[arg(long, requires = "adapters")]
    model: Option<PathBuf>,
}

fn main() {
    gl_env::prepare();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("sparq: {e}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let selector = cli
        .adapter
        .as_deref()
        .map(AdapterSelector::parse)
        .unwrap_or_else(AdapterSelector::from_env);
    match cli.command {
        Command::Devices => devices(),
        Command::Bench(args) => bench(&selector, args),
        Command::Gemm(args) => gemm(&selector, args),
        Command::Model(cmd) => model_cli::run(&selector, cmd),
        Command::Llm(cmd) => llm_cli::run(&selector, cmd),
        Command::ServeBench(args) => serve_bench_cli::run(args),
        Command::Serve(args) => serve_cli::run(&selector, args),
    }
}

fn devices() -> Result<()> {
    let inst = instance();
    let adapters = enumerate_adapters(&inst);
    if adapters.is_empty() {
        return Err(Error::Input(InputError::NoAdapter {
            selector: "any".into(),
            available: "none (install a Vulkan driver, e.g. mesa-vulkan-drivers)".into(),
        }));
    }
    for (i, a) in adapters.iter().enumerate() {
        let c = Caps::of_adapter(a, &inst);
        outln!("[{i}] {}\n{}", c.name, c.describe());
    }
    Ok(())
}

/// `--shapes` and `--bsr-blocks`: `NxK`, both at least 1.
fn shape_arg(s: &str) -> std::result::Result<(usize, usize), String> {
    let bad = || format!("'{s}' is not NxK with N, K ≥ 1");
    let (n, k) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let n: usize = n.trim().parse().map_err(|_| bad())?;
    let k: usize = k.trim().parse().map_err(|_| bad())?;
    if n == 0 || k == 0 {
        return Err(bad());
    }
    Ok((n, k))
}

/// `--m`: a number of activation rows, at least 1.
fn rows_arg(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(m) if m >= 1 => Ok(m),
        _ => Err(format!("'{s}' is not a whole number ≥ 1")),
    }
}

/// `--sparsities`: a fraction in [0, 1].
fn fraction_arg(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' is not a fraction in [0, 1]")),
    }
}

fn bench(selector: &AdapterSelector, args: BenchArgs) -> Result<()> {
    if let (Some(adapters), Some(model)) = (&args.adapters, &args.model) {
        return bench_model(adapters, model, &args);
    }
    if let Some(adapters) = &args.adapters {
        return sparq::schedule::bench::cli(
            adapters,
            args.quick,
            args.formats.as_deref(),
            args.shapes.as_deref(),
            args.m.as_deref(),
            args.json.as_deref(),
        );
    }
    let gpu = Gpu::new(selector)?;
    if args.sparse_tune {
        return bench_sparse_tune(&gpu, args);
    }
    if args.sparse {
        return bench_sparse(&gpu, args);
    }
    let mut cfg = if args.quick {
        BenchConfig::quick()
    } else {
        BenchConfig::default_for(&gpu)
    };
    if let Some(f) = args.formats {
        cfg.formats = f;
    }
    if let Some(m) = args.m {
        cfg.ms = m;
    }
    if let Some(s) = args.shapes {
        cfg.shapes = s;
    }
    if let Some(i) = args.iters {
        cfg.iters = i.clamp(1, 1000);
    }
    if args.f16_act {
        cfg.act = ActDType::F16;
    }
    let torch = args.torch.as_deref().map(TorchBaseline::load).transpose()?;
    eprintln!("benchmarking on {} ({})", gpu.caps.name, gpu.caps.backend);
    let bar = indicatif::ProgressBar::new(1);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
            .expect("valid template"),
    );
    let mut report = sparq::bench::run(&gpu, &cfg, |done, total, label| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(label.to_string());
    })?;
    bar.finish_and_clear();
    if let Some(t) = &torch {
        report.attach_torch(t);
    }
    outln!("{}", report.markdown());
    if let Some(path) = args.json {
        sparq::error::write_file(&path, report.json())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn gemm(selector: &AdapterSelector, args: GemmArgs) -> Result<()> {
    use sparq::bench::gemm;
    let mut cfg = gemm::GemmBenchConfig::new(args.quick);
    cfg.all_tilings &= !args.tuned_only;
    cfg.sections = args.only.unwrap_or_default();
    cfg.check_sections()?;
    let gpu = Gpu::new(selector)?;
    eprintln!("GEMM benchmark on {} ({})", gpu.caps.name, gpu.caps.backend);
    let mut rows = gemm::run(&gpu, &cfg, |label| eprintln!("  {label}"))?;
    if let Some(path) = &args.torch {
        gemm::attach_torch(&mut rows, &TorchBaseline::load(path)?);
    }
    outln!("{}", gemm::markdown(&gpu, &rows));
    if let Some(path) = args.json {
        let text =
            serde_json::to_string_pretty(&rows).map_err(|e| Error::invalid(e.to_string()))?;
        sparq::error::write_file(&path, text)?;
    }
    Ok(())
}

fn bench_model(adapters: &str, model: &std::path::Path, args: &BenchArgs) -> Result<()> {
    let format = match args.formats.as_deref() {
        Some(&[f]) => f,
        Some(_) => return Err(Error::invalid("--model takes one --formats value")),
        None => WeightFormat::F16,
    };
    let options = sparq::model::LoadOptions {
        format,
        ..Default::default()
    };
    let (batches, words, max_rows) = match (&args.m, args.quick) {
        (Some(m), q) => (m.clone(), if q { 12 } else { 100 }, 64),
        (None, true) => (vec![8, 24], 12, 4),
        (None, false) => (vec![64, 256, 1024], 100, 64),
    };
    let reports =
        sparq::schedule::bench::run_model(adapters, model, options, &batches, words, max_rows)?;
    for r in &reports {
        outln!("{}", r.markdown());
    }
    if let Some(path) = &args.json {
        let text =
            serde_json::to_string_pretty(&reports).map_err(|e| Error::invalid(e.to_string()))?;
        sparq::error::write_file(path, text)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn bench_sparse_tune(gpu: &Gpu, args: BenchArgs) -> Result<()> {
    use sparq::bench::sparse_tune::{markdown, run};
    let shape = match args.shapes.as_deref() {
        Some(&[s, ..]) => s,
        _ if args.quick || gpu.caps.is_cpu() => (256, 512),
        _ => (8192, 8192),
    };
    let ms = args.m.unwrap_or_else(|| vec![1]);
    eprintln!(
        "sparse tuning sweep on {} ({}), {}×{}",
        gpu.caps.name, gpu.caps.backend, shape.0, shape.1
    );
    let rows = run(gpu, shape, &ms, args.iters.unwrap_or(50).clamp(1, 1000))?;
    outln!("{}", markdown(&rows));
    if let Some(path) = args.json {
        let text =
            serde_json::to_string_pretty(&rows).map_err(|e| Error::invalid(e.to_string()))?;
        sparq::error::write_file(&path, text)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn bench_sparse(gpu: &Gpu, args: BenchArgs) -> Result<()> {
    use sparq::bench::sparse::{SparseBenchConfig, run};
    let mut cfg = if args.quick {
        SparseBenchConfig::quick()
    } else {
        SparseBenchConfig::default_for(gpu)
    };
    if let Some(m) = args.m {
        cfg.ms = m;
    }
    if let Some(s) = args.shapes {
        cfg.shapes = s;
    }
    if let Some(i) = args.iters {
        cfg.iters = i.clamp(1, 1000);
    }
    if let Some(s) = args.sparsities {
        cfg.sparsities = s;
    }
    if let Some(b) = args.bsr_blocks {
        cfg.block_shapes = b;
    }
    eprintln!("sparse sweep on {} ({})", gpu.caps.name, gpu.caps.backend);
    let report = run(gpu, &cfg, |label| log::info!("{label}"))?;
    outln!("{}", report.markdown());
    if let Some(path) = args.json {
        sparq::error::write_file(&path, report.json())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
