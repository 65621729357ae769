//! Large and mixed batches through `Model::forward` (issue 19): a batch over `max_batch` (or
//! over the device's limits) runs as several passes, its sequences sorted by length first,
//! and its results come back in the caller's order; 2000 short texts embed in one call.
//! A tiny random encoder with MiniLM's real tokenizer (its vocabulary, 8 wide), so that the
//! texts go through the same tokenisation as the real model's.

mod common;

use common::bert::{config, random_bert, tmp, write_model};
use common::{all_gpus, rng};
use sparq::model::config::BertConfig;
use sparq::model::{Batch, LoadOptions, Model, Output};
use std::path::PathBuf;

/// A folder holding a tiny encoder over MiniLM's vocabulary and its tokenizer.json.
fn tiny_text_model(name: &str) -> PathBuf {
    let minilm = common::minilm::model_dir();
    let c = BertConfig {
        vocab_size: 30522,
        hidden_size: 8,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 16,
        max_position_embeddings: 64,
        ..config()
    };
    let dir = tmp(name);
    write_model(
        &dir.join("model.safetensors"),
        &c,
        &random_bert(&mut rng(name), &c, ""),
    );
    std::fs::copy(minilm.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    dir
}

/// Texts of mixed lengths: long and short ones interleaved.
fn mixed(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 3 {
            0 => format!("text {i}"),
            1 => format!(
                "a much longer text {i} {}",
                "with many more words ".repeat(4)
            ),
            _ => format!("medium text number {i} here"),
        })
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn assert_rows_match_one_by_one(model: &Model<'_>, texts: &[String], out: &Output, what: &str) {
    assert_eq!(out.len(), texts.len());
    for (i, (row, text)) in out.rows().zip(texts).enumerate() {
        let alone = model.forward(&Batch::text([text])).unwrap();
        let d = max_diff(row, alone.row(0));
        assert!(d < 1e-5, "{what}: row {i} ({text:?}) differs by {d:e}");
    }
}

#[test]
fn cut_batches_are_sorted_by_length_and_come_back_in_order() {
    let dir = tiny_text_model("sorted");
    for gpu in all_gpus() {
        let options = LoadOptions::default().max_batch(4);
        let model = Model::load_with(&dir, &gpu, options).unwrap();
        assert_eq!(model.max_batch().map(|m| m.get()), Some(4));
        let texts = mixed(8);
        let before = model.stats();
        let out = model.forward(&Batch::text(&texts)).unwrap();
        let after = model.stats();
        // Two passes of four. Sorted, the four short texts pad to one sequence length and
        // the four long ones to another: two plans. Unsorted, each pass would hold long
        // texts and both would share one plan.
        assert_eq!(after.forwards - before.forwards, 2, "passes");
        assert_eq!(after.plans_built - before.plans_built, 2, "plans");
        assert_rows_match_one_by_one(&model, &texts, &out, &gpu.caps.name);
    }
}

#[test]
fn token_batches_with_types_are_reordered_and_restored_too() {
    let dir = tiny_text_model("tokens");
    let gpu = all_gpus().remove(0);
    let model = Model::load_with(&dir, &gpu, LoadOptions::default().max_batch(2)).unwrap();
    let lens = [9usize, 1, 30, 4, 17];
    let ids: Vec<Vec<u32>> = lens
        .iter()
        .map(|&n| (0..n as u32).map(|t| 1000 + t * 7).collect())
        .collect();
    let types: Vec<Vec<u32>> = lens.iter().map(|&n| vec![1; n]).collect();
    let out = model
        .forward(&Batch::Tokens {
            ids: ids.clone(),
            types: Some(types.clone()),
        })
        .unwrap();
    for (i, row) in out.rows().enumerate() {
        let alone = model
            .forward(&Batch::Tokens {
                ids: vec![ids[i].clone()],
                types: Some(vec![types[i].clone()]),
            })
            .unwrap();
        let d = max_diff(row, alone.row(0));
        assert!(d < 1e-5, "sequence {i} (len {}) differs by {d:e}", lens[i]);
    }
    // Types that do not match the ids are still refused, cut or not.
    let e = model
        .forward(&Batch::Tokens {
            ids: ids.clone(),
            types: Some(types[..2].to_vec()),
        })
        .unwrap_err();
    assert_eq!(e.kind(), sparq::ErrorKind::Input, "{e}");
}

#[test]
fn two_thousand_short_texts_embed_in_one_call() {
    let dir = tiny_text_model("many");
    for gpu in all_gpus() {
        let model = Model::load(&dir, &gpu).unwrap();
        let texts = mixed(2000);
        let out = model.forward(&Batch::text(&texts)).unwrap();
        assert_eq!((out.rows, out.cols), (2000, 8));
        // A sample, against the texts embedded alone.
        let sample: Vec<String> = texts.iter().step_by(397).cloned().collect();
        let picked = Output::from_rows(
            &out.rows()
                .step_by(397)
                .map(<[f32]>::to_vec)
                .collect::<Vec<_>>(),
        );
        assert_rows_match_one_by_one(&model, &sample, &picked, &gpu.caps.name);
    }
}
