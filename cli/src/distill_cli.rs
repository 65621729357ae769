//! `sparq distill`: train a smaller student from a teacher on the device (MLP classifiers
//! here, BERT sentence encoders in `distill_encoder`), with a progress bar, held-out
//! evaluations as a table and a final report line.

use crate::device_args::DeviceArgs;
use crate::out::outln;
use crate::progress::Bar;
use sparq::model::loader::WeightFile;
use sparq::train::mlp::{Dataset, DistillSettings, distill};
use sparq::train::student::{StudentSpec, mlp_student, mlp_teacher, save_mlp};
use sparq::train::{AdamW, Decay, Loss};
use sparq::{Error, Gpu, Result};
use std::path::PathBuf;

/// Arguments of `sparq distill`.
#[derive(clap::Args)]
pub struct DistillArgs {
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
    /// The teacher: an MLP classifier file (.safetensors with sparq's architecture) or a BERT
    /// sentence encoder (a model directory or its float .safetensors file).
    pub(crate) teacher: PathBuf,
    /// The student: `layers:N` (encoders), N of the teacher's layers evenly spaced from the
    /// first; `neurons:S`, the teacher with the fraction S of every hidden (FFN) layer's
    /// neurons cut (by the L2 norm of their weights); `prune:2:4` or `prune:magnitude:S`, the
    /// teacher with its weights pruned, the pruned ones kept at zero while the rest train
    /// (then `sparq pack --prune` with the same spec stores it sparse).
    #[arg(long)]
    pub(crate) student: String,
    /// Training data. MLP: JSON `{"features": [[...], ...], "labels": [...]}`. Encoder:
    /// sentences, from a directory of .txt documents (`data/sotu`), a JSON object of articles
    /// with an "extract" each (`data/wiki/summaries_en-us.json`) or a .txt file of one
    /// sentence a line; documents (lines) are held out by a hash of their names.
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// The fraction of the rows held out for evaluation (MLP; never trained on).
    #[arg(long, default_value_t = 0.2)]
    held_out: f64,
    /// Encoder: tokens a sentence is truncated to.
    #[arg(long, default_value_t = 128)]
    pub(crate) max_seq: usize,
    /// Encoder: training sentences used, spread over the training side (default: as many as
    /// the steps visit, steps × batch, at most all).
    #[arg(long)]
    pub(crate) sentences: Option<usize>,
    /// Encoder: held-out sentences evaluated, spread over the held-out side.
    #[arg(long, default_value_t = 512)]
    pub(crate) held_out_sentences: usize,
    /// Encoder: the loss between student and teacher vectors: cosine or mse.
    #[arg(long, default_value = "cosine")]
    pub(crate) loss: String,
    /// Encoder: the tokenizer.json to use (default: the teacher's own).
    #[arg(long)]
    pub(crate) tokenizer: Option<PathBuf>,
    /// Training steps.
    #[arg(long, default_value_t = 300)]
    pub(crate) steps: usize,
    /// Rows (sentences) per step.
    #[arg(long, default_value_t = 32)]
    pub(crate) batch: usize,
    /// Peak learning rate (AdamW; linear warm-up over the first 5 % of steps, then linear
    /// decay to 0); default 3e-3 for an MLP, 2e-4 for an encoder.
    #[arg(long)]
    pub(crate) lr: Option<f32>,
    /// AdamW's decoupled weight decay of weight matrices.
    #[arg(long, default_value_t = 0.01)]
    pub(crate) weight_decay: f32,
    /// Softening temperature of the teacher's and student's logits.
    #[arg(long, default_value_t = 2.0)]
    temperature: f32,
    /// Weight of the teacher's soft targets; the rest goes to the labels' cross-entropy.
    #[arg(long, default_value_t = 0.5)]
    alpha: f32,
    /// Seed of the held-out split and of the order of the training rows.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Steps between held-out evaluations.
    #[arg(long)]
    pub(crate) eval_every: Option<usize>,
    /// The student's .safetensors file (written atomically at the end).
    #[arg(short, long)]
    pub(crate) output: PathBuf,
}

/// Runs `sparq distill`.
pub fn run(a: DistillArgs) -> Result<()> {
    let spec = StudentSpec::parse(&a.student)?;
    if a.steps == 0 || a.batch == 0 {
        return Err(Error::config("--steps and --batch must be at least 1"));
    }
    if crate::distill_encoder::is_encoder(&a.teacher)? {
        return crate::distill_encoder::run(a, spec);
    }
    let file = WeightFile::open(&a.teacher)?;
    let (arch, teacher, teacher_layers) = mlp_teacher(&file)?;
    let student = mlp_student(&file, &arch, spec)?;
    let classes = *teacher.sizes.last().expect("validated");
    let text = std::fs::read_to_string(&a.data)
        .map_err(|e| Error::config(format!("cannot read {}: {e}", a.data.display())))?;
    let data = Dataset::from_json(
        &text,
        teacher.sizes[0],
        classes,
        &a.data.display().to_string(),
    )?;
    let (train, held_out) = data.split(a.held_out, a.seed)?;
    let settings = DistillSettings {
        loss: Loss::Distill {
            temperature: a.temperature,
            alpha: a.alpha,
        },
        opt: AdamW {
            lr: a.lr.unwrap_or(3e-3),
            weight_decay: a.weight_decay,
            warmup: a.steps / 20,
            steps: a.steps,
            decay: Decay::Linear,
            ..AdamW::default()
        },
        batch: a.batch,
        seed: a.seed,
        eval_every: a.eval_every.unwrap_or((a.steps / 10).max(1)),
    };
    settings.loss.validate()?;
    settings.opt.validate()?;
    let gpu = Gpu::new(&a.device.selector())?;
    eprintln!(
        "distilling {:?} into {:?} on {} ({} training rows, {} held out)",
        teacher.sizes,
        student.config.sizes,
        gpu.caps.name,
        train.rows(),
        held_out.rows()
    );
    let bar = Bar::new("distilling", a.steps);
    let (layers, report) = distill(
        &gpu,
        (&teacher, &teacher_layers),
        &student,
        &train,
        &held_out,
        &settings,
        |step, steps, loss| bar.update(step, steps, &format!("loss {loss:.4}")),
    )?;
    bar.finish();
    save_mlp(&a.output, &student.config, &layers)?;
    outln!("| step | held-out loss | accuracy | agreement with the teacher |");
    outln!("| ---: | ------------: | -------: | -------------------------: |");
    for e in &report.evaluations {
        outln!(
            "| {} | {:.4} | {:.4} | {:.4} |",
            e.step,
            e.loss,
            e.accuracy,
            e.agreement
        );
    }
    let params = |sizes: &[usize]| -> usize { sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum() };
    let (first, last) = (
        report.evaluations[0],
        *report
            .evaluations
            .last()
            .expect("evaluated after the last step"),
    );
    outln!(
        "\nstudent {:?} ({} parameters, {:.2}× the teacher's) → {}: held-out accuracy {:.4} \
         (teacher {:.4}), loss {:.4} → {:.4}, {} steps in {:.1} s ({:.0} rows/s)",
        student.config.sizes,
        params(&student.config.sizes),
        params(&student.config.sizes) as f64 / params(&teacher.sizes) as f64,
        a.output.display(),
        last.accuracy,
        report.teacher_accuracy,
        first.loss,
        last.loss,
        report.steps,
        report.seconds,
        (report.steps * a.batch) as f64 / report.seconds.max(1e-9)
    );
    Ok(())
}
