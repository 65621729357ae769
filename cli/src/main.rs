//! The `sparq` command: list adapters, benchmark the kernels.

mod device_args;
mod distill_cli;
mod distill_encoder;
mod gl_env;
mod llm_cli;
mod model_cli;
mod model_formats;
mod model_text;
mod out;
mod plot;
mod progress;
mod report_cli;
mod serve_bench_cli;
mod serve_cli;
mod similarity;

use crate::out::outln;
use crate::report_cli::OutputArgs;
use clap::{Parser, Subcommand};
use sparq::InputError;
use sparq::bench::{BenchConfig, TorchBaseline};
use sparq::formats::WeightFormat;
use sparq::gpu::{AdapterSelector, Caps, enumerate_adapters, instance};
use sparq::report::Envelope;
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every adapter on every backend with the features sparq uses.
    Devices,
    /// Measure the bandwidth ceiling and every weight format at LLM-like shapes.
    Bench(BenchArgs),
    /// Time matrix products with many activation rows (GEMM): the tensor-core and DP4A paths
    /// against the portable kernels, and the rows at which tensor cores start to win.
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
    /// Train a smaller student from a teacher on the device (knowledge distillation of MLP
    /// classifiers and BERT sentence encoders) and write it as a model file.
    Distill(distill_cli::DistillArgs),
}

#[derive(clap::Args)]
struct GemmArgs {
    #[command(flatten)]
    device: device_args::DeviceArgs,
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
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(clap::Args)]
struct BenchArgs {
    #[command(flatten)]
    device: device_args::DeviceArgs,
    /// A reduced set that finishes in seconds.
    #[arg(long)]
    quick: bool,
    #[command(flatten)]
    out: OutputArgs,
    /// Weight formats, comma-separated (f32, f16, int8, int8g32, int4g32, int4g64, int4g128,
    /// int4g32a, int4g32m, binary, binarym, ternary, ternary16, any group: binaryg32, ...).
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
    /// Sparse sweep instead: CSR, BSR and 2:4 kernels against the dense kernel of the same
    /// precision over sparsities, with the sparsity where each breaks even; honours --quick,
    /// --m, --shapes, --iters, --output, --json and --plot.
    #[arg(long)]
    sparse: bool,
    /// Sparsities of the sparse sweep, comma-separated fractions (e.g. 0.5,0.9).
    #[arg(long, value_delimiter = ',', value_parser = fraction_arg)]
    sparsities: Option<Vec<f64>>,
    /// Sweep the sparse kernels' tuning knobs (rows per 2:4 item, items per bin, units in
    /// flight per lane) on one shape (the first of --shapes, 8192x8192 by default) at --m
    /// rows (1) instead, to pick their defaults on this GPU.
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
    /// Also draw the results as SVG here: weight GB/s per format against the ceiling (and the
    /// PyTorch anchor), or with --sparse the speed-up over dense against sparsity.
    #[arg(long, value_name = "FILE.svg", conflicts_with_all = ["adapters", "sparse_tune"])]
    plot: Option<PathBuf>,
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
    match cli.command {
        Command::Devices => devices(),
        Command::Bench(args) => bench(&args.device.selector(), args),
        Command::Gemm(args) => gemm(&args.device.selector(), args),
        Command::Model(cmd) => model_cli::run(cmd),
        Command::Llm(cmd) => llm_cli::run(cmd),
        Command::ServeBench(args) => serve_bench_cli::run(args),
        Command::Serve(args) => serve_cli::run(&args.device.selector(), args),
        Command::Distill(args) => distill_cli::run(args),
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
        return bench_data_parallel(adapters, &args);
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
    let bar = progress::Bar::new("bench", 0);
    let mut report = sparq::bench::run(&gpu, &cfg, |d, t, l| bar.update(d, t, l))?;
    bar.finish();
    if let Some(t) = &torch {
        report.attach_torch(t);
    }
    let settings = serde_json::json!({
        "quick": args.quick,
        "formats": names(&cfg.formats),
        "m": cfg.ms,
        "shapes": cfg.shapes,
        "iters": cfg.iters,
        "f16_act": args.f16_act,
        "ceiling_bytes": cfg.ceiling_bytes,
        "torch": args.torch,
    });
    let env = Envelope::new("bench", &report.adapter, settings, &report.rows)?.with_summary(
        serde_json::json!({ "timing": report.timing, "ceiling_gbps": report.ceiling_gbps }),
    )?;
    if let Some(path) = &args.plot {
        plot::write(path, &plot::bench::svg(&report)?)?;
    }
    args.out.emit(&env, || report.markdown())
}

/// Weight format names, for the settings of an envelope.
fn names(formats: &[WeightFormat]) -> Vec<String> {
    formats.iter().map(|f| f.name()).collect()
}

/// `sparq bench --adapters`: the chained layers data-parallel over several devices.
fn bench_data_parallel(adapters: &str, args: &BenchArgs) -> Result<()> {
    use sparq::schedule::bench;
    let cfg = bench::cli_config(
        adapters,
        args.quick,
        args.formats.as_deref(),
        args.shapes.as_deref(),
        args.m.as_deref(),
    );
    let bar = progress::Bar::new("data-parallel bench", 0);
    // The last call comes before the report is printed: the bar goes for it.
    let report = bench::run(&cfg, |d, t, l| {
        if d < t {
            bar.update(d, t, l)
        } else {
            bar.clear()
        }
    })?;
    let settings = serde_json::json!({
        "adapters": adapters,
        "quick": args.quick,
        "formats": names(&cfg.formats),
        "n": cfg.n,
        "k": cfg.k,
        "batch": cfg.batch,
        "max_rows": cfg.max_rows,
        "repeats": cfg.repeats,
        "calibration_rows": cfg.calibration_rows,
    });
    let devices: Vec<&str> = report.alone.iter().map(|a| a.device.as_str()).collect();
    let env = Envelope::new("bench --adapters", devices, settings, [&report])?;
    args.out.emit(&env, || report.markdown())
}

fn gemm(selector: &AdapterSelector, args: GemmArgs) -> Result<()> {
    use sparq::bench::gemm;
    let mut cfg = gemm::GemmBenchConfig::new(args.quick);
    cfg.all_tilings &= !args.tuned_only;
    cfg.sections = args.only.unwrap_or_default();
    cfg.check_sections()?;
    let gpu = Gpu::new(selector)?;
    eprintln!("GEMM benchmark on {} ({})", gpu.caps.name, gpu.caps.backend);
    let bar = progress::Bar::new("gemm", gemm::steps(&gpu, &cfg));
    let mut rows = gemm::run(&gpu, &cfg, |d, t, l| bar.update(d, t, l))?;
    bar.finish();
    if let Some(path) = &args.torch {
        gemm::attach_torch(&mut rows, &TorchBaseline::load(path)?);
    }
    let settings = serde_json::json!({
        "quick": args.quick,
        "tuned_only": args.tuned_only,
        "sections": cfg.sections,
        "iters": cfg.iters,
        "torch": args.torch,
    });
    let env = Envelope::new("gemm", &gpu.caps, settings, &rows)?;
    args.out.emit(&env, || gemm::markdown(&gpu, &rows))
}

fn bench_model(adapters: &str, model: &std::path::Path, args: &BenchArgs) -> Result<()> {
    let format = match args.formats.as_deref() {
        Some(&[f]) => f,
        Some(_) => return Err(Error::invalid("--model takes one --formats value")),
        None => WeightFormat::F16,
    };
    let options = sparq::model::LoadOptions::default().format(format);
    let (batches, words, max_rows) = match (&args.m, args.quick) {
        (Some(m), q) => (m.clone(), if q { 12 } else { 100 }, 64),
        (None, true) => (vec![8, 24], 12, 4),
        (None, false) => (vec![64, 256, 1024], 100, 64),
    };
    let bar = progress::Bar::new("data-parallel model bench", 0);
    let reports = sparq::schedule::bench::run_model(
        adapters,
        model,
        options,
        &batches,
        words,
        max_rows,
        |d, t, l| bar.update(d, t, l),
    )?;
    bar.finish();
    let settings = serde_json::json!({
        "adapters": adapters,
        "model": model,
        "format": format.name(),
        "quick": args.quick,
        "batches": batches,
        "words": words,
        "max_rows": max_rows,
    });
    let devices: Vec<&str> = reports.first().map_or(Vec::new(), |r| {
        r.alone.iter().map(|a| a.device.as_str()).collect()
    });
    let env = Envelope::new("bench --adapters --model", devices, settings, &reports)?;
    args.out.emit(&env, || {
        reports
            .iter()
            .map(|r| r.markdown())
            .collect::<Vec<_>>()
            .join("\n")
    })
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
    let bar = progress::Bar::new("sparse tuning", 0);
    let iters = args.iters.unwrap_or(50).clamp(1, 1000);
    let rows = run(gpu, shape, &ms, iters, |d, t, l| bar.update(d, t, l))?;
    bar.finish();
    let settings = serde_json::json!({
        "quick": args.quick,
        "shape": shape,
        "m": ms,
        "iters": iters,
    });
    let env = Envelope::new("bench --sparse-tune", &gpu.caps, settings, &rows)?;
    args.out.emit(&env, || markdown(&rows))
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
    let bar = progress::Bar::new("sparse sweep", 0);
    let report = run(gpu, &cfg, |d, t, l| {
        log::info!("{l}");
        bar.update(d, t, l)
    })?;
    bar.finish();
    let settings = serde_json::json!({
        "quick": args.quick,
        "shapes": cfg.shapes,
        "m": cfg.ms,
        "sparsities": cfg.sparsities,
        "bsr_blocks": cfg.block_shapes,
        "iters": cfg.iters,
    });
    let break_even: Vec<serde_json::Value> = report
        .break_even()
        .into_iter()
        .map(|(n, k, m, format, at)| serde_json::json!({"n": n, "k": k, "m": m, "format": format, "sparsity": at}))
        .collect();
    let env = Envelope::new("bench --sparse", &report.adapter, settings, &report.rows)?
        .with_summary(serde_json::json!({ "model": report.model, "break_even": break_even }))?;
    if let Some(path) = &args.plot {
        plot::write(path, &plot::sparse::svg(&report)?)?;
    }
    args.out.emit(&env, || report.markdown())
}
