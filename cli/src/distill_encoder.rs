//! `sparq distill` of a BERT sentence encoder: the student made from the teacher, sentences
//! from a corpus split by document, the teacher's vectors of them, training with a progress
//! bar (loss, tokens/s, time left), held-out evaluations as a table and a report line.

use crate::distill_cli::DistillArgs;
use crate::out::outln;
use crate::progress::Bar;
use sparq::model::config::Architecture;
use sparq::model::loader::{self, WeightFile};
use sparq::train::bert::distill::{EncoderSettings, distill_encoder, sentence_vectors};
use sparq::train::bert::student::{bert_student, bert_teacher, save_bert};
use sparq::train::data::{HELD_OUT_PERCENT, Sentences, corpus};
use sparq::train::student::StudentSpec;
use sparq::train::{AdamW, Decay, Loss};
use sparq::{Error, Gpu, Result};
use std::path::Path;

/// Whether the teacher at `path` is a BERT encoder (a model directory, or a file whose
/// architecture says so).
pub fn is_encoder(path: &Path) -> Result<bool> {
    let (weights, dir) = sparq::model::locate(path)?;
    let file = WeightFile::open(&weights)?;
    Ok(match file.metadata(loader::CONFIG_KEY) {
        Some(json) => matches!(Architecture::from_sparq_json(json)?, Architecture::Bert(_)),
        None => matches!(Architecture::from_hf_dir(&dir), Ok(Architecture::Bert(_))),
    })
}

/// `n` items of `v` spread evenly over it (all when there are fewer).
fn spread(v: &[String], n: usize) -> Vec<String> {
    if n >= v.len() {
        return v.to_vec();
    }
    (0..n).map(|j| v[j * v.len() / n].clone()).collect()
}

fn parameters(c: &sparq::model::config::BertConfig) -> usize {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    c.num_hidden_layers * (4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h)
}

/// Runs `sparq distill` for an encoder teacher.
pub fn run(a: DistillArgs, spec: StudentSpec) -> Result<()> {
    let loss = match a.loss.as_str() {
        "cosine" => Loss::Cosine,
        "mse" => Loss::Mse,
        other => {
            return Err(Error::config(format!(
                "--loss {other}: an encoder student takes cosine or mse"
            )));
        }
    };
    if a.held_out_sentences == 0 || a.max_seq < 2 {
        return Err(Error::config(
            "--held-out-sentences must be at least 1 and --max-seq at least 2",
        ));
    }
    sparq::model::loader::check_output(&a.teacher, &a.output)?;
    let teacher = bert_teacher(&a.teacher, a.tokenizer.as_deref())?;
    let student = bert_student(&teacher, spec)?;
    let split = Sentences::split(&corpus(&a.data)?, HELD_OUT_PERCENT);
    if split.train.is_empty() || split.held_out.is_empty() {
        return Err(Error::config(format!(
            "{}: {} training and {} held-out sentences; both sides need some (more documents)",
            a.data.display(),
            split.train.len(),
            split.held_out.len()
        )));
    }
    let wanted = a.sentences.unwrap_or(a.steps.saturating_mul(a.batch));
    let train = teacher.sequences(&spread(&split.train, wanted.max(1)), a.max_seq)?;
    let held = teacher.sequences(&spread(&split.held_out, a.held_out_sentences), a.max_seq)?;
    let settings = EncoderSettings {
        loss,
        opt: AdamW {
            lr: a.lr.unwrap_or(2e-4),
            weight_decay: a.weight_decay,
            warmup: a.steps / 20,
            steps: a.steps,
            decay: Decay::Linear,
            ..AdamW::default()
        },
        batch: a.batch,
        max_seq: a.max_seq,
        seed: a.seed,
        eval_every: a.eval_every.unwrap_or((a.steps / 10).max(1)),
    };
    settings.opt.validate()?;
    let gpu = Gpu::new(&a.device.selector())?;
    let (tc, sc) = (&teacher.config, &student.config);
    eprintln!(
        "distilling {} layers × {} (FFN {}) into {} layers × {} (FFN {}) on {} ({} training \
         sentences, {} held out, up to {} tokens)",
        tc.num_hidden_layers,
        tc.hidden_size,
        tc.intermediate_size,
        sc.num_hidden_layers,
        sc.hidden_size,
        sc.intermediate_size,
        gpu.caps.name,
        train.len(),
        held.len(),
        a.max_seq
    );
    let start = std::time::Instant::now();
    let mut both = train.clone();
    both.extend_from_slice(&held);
    let bar = Bar::new("teacher vectors", both.len());
    let vectors = sentence_vectors(
        &gpu,
        &teacher.as_student(),
        &both,
        a.batch,
        a.max_seq,
        &mut |d, t| bar.update(d, t, ""),
    )?;
    bar.finish();
    let h = tc.hidden_size;
    let (t_train, t_held) = vectors.split_at(train.len() * h);
    eprintln!(
        "teacher vectors of {} sentences in {:.1} s",
        both.len(),
        start.elapsed().as_secs_f64()
    );
    let bar = Bar::new("distilling", a.steps);
    let started = std::time::Instant::now();
    let mut tokens = 0usize;
    let per_step: f64 = train.iter().map(|s| s.0.len()).sum::<usize>() as f64 / train.len() as f64;
    let (weights, report) = distill_encoder(
        &gpu,
        &student,
        (&train, t_train),
        (&held, t_held),
        &settings,
        |step, steps, loss| {
            tokens = (step as f64 * a.batch.min(train.len()) as f64 * per_step) as usize;
            let rate = tokens as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.update(step, steps, &format!("loss {loss:.4}, {rate:.0} tokens/s"));
        },
    )?;
    bar.finish();
    save_bert(&a.output, sc, &weights, &teacher.tokenizer_text)?;
    outln!("| step | held-out loss | mean cosine to the teacher | lowest cosine |");
    outln!("| ---: | ------------: | -------------------------: | ------------: |");
    for e in &report.evaluations {
        outln!(
            "| {} | {:.4} | {:.4} | {:.4} |",
            e.step,
            e.loss,
            e.mean_cosine,
            e.min_cosine
        );
    }
    let (first, last) = (
        report.evaluations[0],
        *report
            .evaluations
            .last()
            .expect("evaluated after the last step"),
    );
    outln!(
        "\nstudent of {} layers, FFN {} ({} parameters outside the embeddings, {:.2}× the \
         teacher's) → {}: held-out mean cosine {:.4} (lowest {:.4}), loss {:.4} → {:.4}, {} \
         steps in {:.1} s ({:.0} tokens/s)",
        sc.num_hidden_layers,
        sc.intermediate_size,
        parameters(sc),
        parameters(sc) as f64 / parameters(tc) as f64,
        a.output.display(),
        last.mean_cosine,
        last.min_cosine,
        first.loss,
        last.loss,
        report.steps,
        report.seconds,
        report.tokens as f64 / report.seconds.max(1e-9)
    );
    Ok(())
}
