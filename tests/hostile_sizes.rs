//! Sizes from a command line or a request, checked before anything is allocated (issue 18,
//! findings 2, 3 and 11): a benchmark shape or batch too large for the host or the device is
//! a typed error naming it, and a batch over one storage binding runs as several passes whose
//! results equal the one-pass results.

mod common;

use common::bert::{config, ragged, random_bert, tmp, write_model};
use common::{all_gpus, rng};
use sparq::bench::BenchConfig;
use sparq::bench::gemm::GemmBenchConfig;
use sparq::model::{Batch, LoadOptions, Model};
use sparq::{Error, InputError};
use std::path::PathBuf;

fn digits_mlp() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/digits_mlp.safetensors")
}

fn exact() -> LoadOptions {
    LoadOptions::default().batch_invariant(true)
}

#[test]
fn bench_shapes_are_refused_before_allocating() {
    for mut gpu in all_gpus() {
        // A product that overflows 64 bits, then one no host has the memory for.
        let e = gpu
            .check_layer_shape((usize::MAX / 2, 3), 1, 3)
            .unwrap_err();
        assert!(
            matches!(&e, Error::Input(InputError::Overflow { what }) if what.contains("x3")),
            "{e}"
        );
        let mut cfg = BenchConfig::quick();
        cfg.shapes = vec![(999_999_999, 999_999_999)];
        let e = sparq::bench::run(&gpu, &cfg, |_, _, _| {}).unwrap_err();
        assert!(
            matches!(&e, Error::Input(InputError::HostMemory { what, .. })
                if what.contains("999999999x999999999")),
            "{e}"
        );
        assert_eq!(e.http_status(), 413);
        let mut sparse = sparq::bench::sparse::SparseBenchConfig::quick();
        sparse.shapes = cfg.shapes.clone();
        // Its many copies overflow 64 bits: refused all the same, naming the shape.
        let e = sparq::bench::sparse::run(&gpu, &sparse, |_, _, _| {}).unwrap_err();
        assert!(
            matches!(&e, Error::Input(InputError::HostMemory { what, .. } | InputError::Overflow { what })
                if what.contains("999999999x999999999")),
            "{e}"
        );
        // A row over one binding (weights are split over bindings by rows, so a row is the
        // unit that must fit), and activations over one.
        gpu.caps.max_storage_binding = 1024;
        let e = gpu.check_layer_shape((4, 512), 1, 3).unwrap_err();
        assert!(
            matches!(&e, Error::Input(InputError::TooLarge { what, limit: 1024, .. })
                if what.contains("one row of weight shape 4x512")),
            "{e}"
        );
        let e = gpu.check_layer_shape((4, 128), 8, 3).unwrap_err();
        assert!(
            matches!(&e, Error::Input(InputError::TooLarge { what, .. })
                if what.contains("activations 8x128")),
            "{e}"
        );
        gpu.check_layer_shape((4, 128), 2, 3).unwrap();
    }
}

#[test]
fn gemm_sections_must_exist() {
    let mut cfg = GemmBenchConfig::new(true);
    cfg.check_sections().unwrap();
    cfg.sections = vec!["square".into(), "bogus".into()];
    let e = cfg.check_sections().unwrap_err().to_string();
    assert!(
        e.contains("'bogus'") && e.contains("square, weights, crossover, dp4a"),
        "{e}"
    );
}

#[test]
fn model_bench_shapes_are_refused_up_front() {
    let c = config();
    let dir = tmp("hostile-sizes-bench");
    let path = dir.join("bert.safetensors");
    write_model(&path, &c, &random_bert(&mut rng("bench-sizes"), &c, ""));
    for gpu in all_gpus() {
        let model = Model::load(&path, &gpu).unwrap();
        let e = model.check_plan(100_000_000, 8).unwrap_err();
        assert!(
            matches!(&e, Error::Input(InputError::TooLarge { what, .. })
                if what.contains("100000000 sequences × 8 tokens")),
            "{e}"
        );
        let e = model.with_plan(100_000_000, 8, |_| Ok(())).unwrap_err();
        assert!(
            matches!(e, Error::Input(InputError::TooLarge { .. })),
            "{e}"
        );
        let e = model.check_plan(usize::MAX, 8).unwrap_err();
        assert!(
            matches!(e, Error::Input(InputError::Overflow { .. })),
            "{e}"
        );
        let e = model
            .check_plan(1, c.max_position_embeddings + 1)
            .unwrap_err();
        assert!(e.to_string().contains("at most 40"), "{e}");
        model.check_plan(2, 8).unwrap();
        // The classifier has no sequences: said in the user's words.
        let mlp = Model::load(digits_mlp(), &gpu).unwrap();
        let e = mlp.with_plan(1, 8, |_| Ok(())).unwrap_err().to_string();
        assert!(e.contains("model-bench times encoders"), "{e}");
        assert!(!e.contains("with_plan"), "{e}");
    }
}

#[test]
fn encoder_batches_over_one_binding_run_as_several_passes() {
    let c = config();
    let dir = tmp("hostile-sizes-split");
    let path = dir.join("bert.safetensors");
    let mut r = rng("encoder-split");
    write_model(&path, &c, &random_bert(&mut r, &c, ""));
    let lens: Vec<usize> = (0..20).map(|i| 3 + (i * 7) % 10).collect();
    let (ids, types) = ragged(&mut r, &c, &lens);
    let batch = Batch::Tokens {
        ids,
        types: Some(types),
    };
    for (one, mut small) in all_gpus().into_iter().zip(all_gpus()) {
        let whole = Model::load_with(&path, &one, exact()).unwrap();
        let want = whole.forward(&batch).unwrap();
        assert_eq!(whole.stats().forwards, 1);
        // Room for 4 sequences of the batch's padded length (16) per pass: 5 passes.
        let seq = 16u64;
        let token_bytes = (4 * (3 * c.hidden_size).next_multiple_of(4)) as u64;
        small.caps.max_storage_binding = 4 * seq * token_bytes;
        let split = Model::load_with(&path, &small, exact()).unwrap();
        let got = split.forward(&batch).unwrap();
        assert_eq!(split.stats().forwards, 5, "{}", small.caps.name);
        assert_eq!((got.rows, got.cols), (want.rows, want.cols));
        assert_eq!(got.values, want.values, "{}", small.caps.name);
        // One sequence that no pass can hold is refused, naming the buffer and the limit.
        small.caps.max_storage_binding = 40 * token_bytes - 16;
        let tight = Model::load_with(&path, &small, exact()).unwrap();
        let long = Batch::Tokens {
            ids: vec![vec![1; 40]],
            types: None,
        };
        let e = tight.forward(&long).unwrap_err();
        assert!(
            matches!(&e, Error::Input(InputError::TooLarge { what, .. })
                if what.contains("1 sequences × 40 tokens")),
            "{e}"
        );
    }
}

#[test]
fn classifier_batches_over_one_binding_run_as_several_passes() {
    let (rows, cols) = (20, 64);
    let data: Vec<f32> = (0..rows * cols).map(|i| (i % 17) as f32 / 16.0).collect();
    let batch = Batch::Features { rows, cols, data };
    for (one, mut small) in all_gpus().into_iter().zip(all_gpus()) {
        let whole = Model::load_with(digits_mlp(), &one, exact()).unwrap();
        let want = whole.forward(&batch).unwrap();
        // The widest layer is 64 wide: 3 rows per pass, 7 passes.
        small.caps.max_storage_binding = 3 * 64 * 4;
        let split = Model::load_with(digits_mlp(), &small, exact()).unwrap();
        let got = split.forward(&batch).unwrap();
        assert_eq!(split.stats().forwards, 7, "{}", small.caps.name);
        assert_eq!(got.values, want.values, "{}", small.caps.name);
        assert_eq!(got.probabilities, want.probabilities);
        assert_eq!(got.rows, rows);
    }
}

#[test]
fn an_empty_batch_is_the_same_error_alone_and_over_devices() {
    use sparq::schedule::{Cluster, ClusterConfig, ModelReplica};
    let c = config();
    let dir = tmp("hostile-sizes-empty");
    let path = dir.join("bert.safetensors");
    write_model(&path, &c, &random_bert(&mut rng("empty"), &c, ""));
    let gpu = std::sync::Arc::new(all_gpus().remove(0));
    let model = Model::load(&path, &gpu).unwrap();
    let alone = model
        .forward(&Batch::Text(Vec::new()))
        .unwrap_err()
        .to_string();
    let mut cluster = Cluster::new(
        vec![gpu.clone()],
        |g| ModelReplica::load(&path, g, LoadOptions::default(), 4),
        ClusterConfig::default(),
    )
    .unwrap();
    let over = cluster.run(&[]).unwrap_err().to_string();
    assert_eq!(alone, "invalid input: empty batch");
    assert_eq!(over, alone);
}

/// Long texts of every awkward kind: prose, long runs of spaces, one giant word, a giant
/// word before prose, leading spaces, control characters before spaces, text without
/// spaces, accents.
fn long_texts() -> Vec<String> {
    let words = [
        "the", "cat", "sat,", "on", "a", "mat.", "Naïve", "café", "don't", "42",
    ];
    let prose: String = (0..20_000)
        .map(|i| words[(i * 7 + i / 3) % words.len()])
        .collect::<Vec<_>>()
        .join(" ");
    vec![
        prose.clone(),
        format!("hello{}world {prose}", " ".repeat(100_000)),
        "a".repeat(300_000),
        format!("{} {prose}", "x".repeat(50_000)),
        format!("{}{prose}", " ".repeat(50_000)),
        "ab\u{b} cd\u{0} ".repeat(20_000),
        "中文".repeat(50_000),
        "short text".into(),
    ]
}

#[test]
fn long_texts_tokenise_from_a_prefix_to_the_same_ids() {
    let dir = common::minilm::model_dir();
    let gpu = all_gpus().remove(0);
    let model = Model::load(&dir, &gpu).unwrap();
    let sparq::model::config::Architecture::Bert(c) = &model.arch else {
        panic!("MiniLM is a BERT encoder")
    };
    let max = c.max_seq_length.unwrap_or(c.max_position_embeddings);
    let mut full = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    full.with_padding(None);
    full.with_truncation(Some(tokenizers::TruncationParams {
        max_length: max.min(c.max_position_embeddings),
        ..Default::default()
    }))
    .unwrap();
    let mut texts = long_texts();
    // The last kept token's word across each prefix length tried (the prefix starts at 32
    // bytes per token and grows fourfold): a prefix cut inside it would give other pieces.
    for budget in [32 * max, 128 * max] {
        let words = "a ".repeat(max - 3);
        for d in 0..12 {
            let pad = " ".repeat(budget - words.len() - d);
            texts.push(format!("{words}{pad}unbelievable {}", "more ".repeat(100)));
        }
    }
    let (ids, types) = model.tokenize(&texts).unwrap();
    for (i, t) in texts.iter().enumerate() {
        let want = full.encode(t.as_str(), true).unwrap();
        assert_eq!(ids[i], want.get_ids(), "text {i}");
        assert_eq!(types[i], want.get_type_ids(), "text {i}");
    }
    // The prose filled the length: the prefix was enough.
    assert_eq!(ids[0].len(), max);
    // A whole input over the limit is refused before tokenising, saying how to split it.
    let huge = vec!["w ".repeat(sparq::model::prefix::MAX_INPUT_BYTES / 2 + 1)];
    let e = model.tokenize(&huge).unwrap_err().to_string();
    assert!(e.contains("64 MiB") && e.contains("split it"), "{e}");
}

#[test]
fn a_word_table_over_one_binding_is_split_over_several() {
    // A vocabulary of 200 words 24 wide (19 200 bytes) over a 6 000-byte binding: 4 buffers
    // of 62 rows; passes of 2 sequences of 8 tokens.
    let mut c = config();
    c.vocab_size = 200;
    c.max_position_embeddings = 16;
    let dir = tmp("hostile-sizes-table");
    let path = dir.join("bert.safetensors");
    let mut r = rng("split-table");
    write_model(&path, &c, &random_bert(&mut r, &c, ""));
    // Every id, from the first row of the first buffer to the last of the last.
    let ids: Vec<Vec<u32>> = (0..25).map(|s| (s * 8..s * 8 + 8).collect()).collect();
    let batch = Batch::Tokens { ids, types: None };
    for (one, mut small) in all_gpus().into_iter().zip(all_gpus()) {
        let want = Model::load_with(&path, &one, exact())
            .unwrap()
            .forward(&batch)
            .unwrap();
        small.caps.max_storage_binding = 6000;
        let table = sparq::model::ops::Table::new(&small, "w", &vec![0.0; 200 * 24], 200, 24);
        assert_eq!(table.unwrap().chunks(), 4);
        let split = Model::load_with(&path, &small, exact()).unwrap();
        let got = split.forward(&batch).unwrap();
        assert_eq!(got.values, want.values, "{}", small.caps.name);
        // A row wider than one binding is refused, naming it.
        small.caps.max_storage_binding = 64;
        let Err(e) = sparq::model::ops::Table::new(&small, "w", &[0.0; 48], 2, 24) else {
            panic!("a row over the binding was taken")
        };
        assert!(
            matches!(&e, Error::Input(InputError::TooLarge { what, .. }) if what.contains("one row of w")),
            "{e}"
        );
    }
}
