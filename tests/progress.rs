//! The library's long runs report progress through `FnMut(done, total, label)`: `done` counts
//! up by one from 0 to `total` (which stays the same and is known up front), the last call
//! being `(total, total, "done")`. Tiny runs on every test adapter.

mod common;
#[path = "common/llama.rs"]
mod llama;

use common::all_gpus;
use common::bert::{config, random_bert, tmp, write_model};
use sparq::model::Model;

/// Every call of a run: (done, total, label).
type Calls = Vec<(usize, usize, String)>;

fn check(calls: &Calls, total: usize, what: &str) {
    assert!(total > 0, "{what}: no steps");
    assert_eq!(calls.len(), total + 1, "{what}: {calls:?}");
    for (i, (done, t, _)) in calls.iter().enumerate() {
        assert_eq!((*done, *t), (i, total), "{what}: call {i} of {calls:?}");
    }
    assert_eq!(calls.last().unwrap().2, "done", "{what}");
    assert!(
        calls[..total].iter().all(|c| !c.2.is_empty()),
        "{what}: a step without a label"
    );
}

#[test]
fn sparse_sweep_counts_every_step() {
    use sparq::bench::sparse::{SparseBenchConfig, run, steps};
    let cfg = SparseBenchConfig {
        shapes: vec![(32, 64)],
        sparsities: vec![0.5],
        ms: vec![1, 8],
        iters: 1,
        block_shapes: vec![(1, 32), (4, 16)],
    };
    for gpu in all_gpus() {
        let mut calls = Calls::new();
        let report = run(&gpu, &cfg, |d, t, l| calls.push((d, t, l.to_string()))).unwrap();
        check(&calls, steps(&cfg), "sparse sweep");
        assert!(!report.rows.is_empty());
    }
}

#[test]
fn model_bench_counts_batches_and_iters_bound_the_run() {
    let mut r = common::rng("progress-model-bench");
    let c = config();
    let path = tmp("progress").join("model.safetensors");
    write_model(&path, &c, &random_bert(&mut r, &c, ""));
    for gpu in all_gpus() {
        let model = Model::load(&path, &gpu).unwrap();
        let mut calls = Calls::new();
        let start = std::time::Instant::now();
        let rows = sparq::model::bench::run(&model, &gpu, &[1, 2, 3], 4, 1, |d, t, l| {
            calls.push((d, t, l.to_string()))
        })
        .unwrap();
        check(&calls, 6, "model bench");
        assert_eq!(rows.len(), 3);
        assert!(calls[0].2.contains("1 forward passes"), "{calls:?}");
        assert!(
            calls[1].2.ends_with("×1"),
            "iters bounds the repeats: {calls:?}"
        );
        // One pass each at --iters 1: well under the minutes the fixed repeats took.
        assert!(start.elapsed().as_secs() < 60, "{:?}", start.elapsed());
    }
}

#[test]
fn sparse_tuning_counts_its_settings() {
    use sparq::bench::sparse_tune::{SETTINGS, run};
    for gpu in all_gpus() {
        let mut calls = Calls::new();
        let rows = run(&gpu, (32, 64), &[1], 1, |d, t, l| {
            calls.push((d, t, l.to_string()))
        })
        .unwrap();
        check(&calls, SETTINGS, "sparse tuning");
        assert_eq!(rows.len(), SETTINGS);
    }
}

#[test]
fn gemm_counts_its_cases() {
    use sparq::bench::gemm::{GemmBenchConfig, run, steps};
    use sparq::formats::WeightFormat;
    let cfg = GemmBenchConfig {
        square: vec![32],
        ms: vec![4, 8],
        shapes: vec![(32, 32)],
        formats: vec![WeightFormat::F16, WeightFormat::Int8],
        crossover: vec![8],
        all_tilings: false,
        iters: 1,
        sections: Vec::new(),
    };
    // Sections whose count does not depend on the device: 1 shape × 2 formats × 2 m, and
    // 2 formats × 1 crossover m.
    let weights = GemmBenchConfig {
        sections: vec!["weights".into(), "crossover".into()],
        ..cfg.clone()
    };
    for gpu in all_gpus() {
        assert_eq!(steps(&gpu, &weights), 2 * 2 + 2);
        if !gpu.caps.f16 {
            // The GEMM cases run on f16 activations (refused with MissingFeature here).
            eprintln!("skipping {}: no f16 shaders", gpu.caps.name);
            continue;
        }
        for cfg in [&cfg, &weights] {
            let mut calls = Calls::new();
            let rows = run(&gpu, cfg, |d, t, l| calls.push((d, t, l.to_string()))).unwrap();
            check(&calls, steps(&gpu, cfg), "gemm");
            assert!(!rows.is_empty());
        }
    }
}

#[test]
fn llm_bench_counts_prefill_and_the_decodes_that_fit() {
    use sparq::bench::llm::{LlmBenchConfig, RandomSource, run, steps};
    use sparq::formats::WeightFormat;
    use sparq::model::llama::{DecoderOptions, LlamaConfig, LlamaDecoder};
    let config =
        LlamaConfig::from_hf_config(&llama::config_json("LlamaForCausalLM", true)).unwrap();
    // The second context leaves no room for the warm-up and timed steps: skipped, not counted.
    let cfg = LlmBenchConfig {
        prompt: 4,
        batches: vec![1, 2],
        contexts: vec![8, config.max_context - 2],
        iters: 1,
    };
    assert_eq!(steps(&cfg, config.max_context), 1 + 2);
    for gpu in all_gpus() {
        let src = RandomSource::new(WeightFormat::F16, 1);
        let lm = LlamaDecoder::from_source(&gpu, config.clone(), &src, DecoderOptions::default())
            .unwrap();
        let mut calls = Calls::new();
        let rows = run(&lm, "tiny", &cfg, 1.0, |d, t, l| {
            calls.push((d, t, l.to_string()))
        })
        .unwrap();
        check(&calls, 3, "llm bench");
        assert_eq!(rows.len(), 3);
    }
}

#[test]
fn encoder_calibration_counts_layers_of_each_sentence() {
    use sparq::model::calibrate::{bert_hessians, steps};
    use sparq::model::loader::WeightFile;
    let mut r = common::rng("progress-calibrate");
    let c = config();
    let path = tmp("progress-calibrate").join("model.safetensors");
    write_model(&path, &c, &random_bert(&mut r, &c, ""));
    let file = WeightFile::open(&path).unwrap();
    let (ids, types) = common::bert::ragged(&mut r, &c, &[5, 9, 3]);
    let mut sequences: Vec<_> = ids.into_iter().zip(types).collect();
    // An empty sentence has no layers to calibrate.
    sequences.insert(1, (Vec::new(), Vec::new()));
    assert_eq!(steps(&c, &sequences), 3 * c.num_hidden_layers);
    let mut calls = Calls::new();
    bert_hessians(&file, &c, &sequences, |d, t, l| {
        calls.push((d, t, l.to_string()))
    })
    .unwrap();
    check(&calls, 3 * c.num_hidden_layers, "encoder calibration");
    assert!(
        calls.iter().any(|c| c.2 == "sentence 4 of 4, layer 1"),
        "{calls:?}"
    );
}

#[test]
fn decoder_calibration_and_pack_count_layers_of_each_text() {
    use sparq::formats::WeightFormat;
    use sparq::model::compress::Compression;
    use sparq::model::llama::{LlamaConfig, Reference, calibrate, pack};
    let mut r = common::rng("progress-llama-calibrate");
    let json = llama::config_json("LlamaForCausalLM", false);
    let config = LlamaConfig::from_hf_config(&json).unwrap();
    let weights = llama::random_weights(&config, &mut r, safetensors::Dtype::F32);
    let dir = llama::tmp("progress-llama-calibrate");
    llama::write_hf(&dir, &json, &weights, safetensors::Dtype::F32, 1);
    let seqs = vec![
        llama::tokens(&mut r, 6, config.vocab_size),
        Vec::new(),
        llama::tokens(&mut r, 4, config.vocab_size),
    ];
    let total = 2 * config.num_layers;
    assert_eq!(calibrate::steps(config.num_layers, &seqs), total);
    let reference = Reference::new(config.clone(), weights).unwrap();
    let mut calls = Calls::new();
    calibrate::hessians(&reference, &seqs, |d, t, l| {
        calls.push((d, t, l.to_string()))
    })
    .unwrap();
    check(&calls, total, "decoder calibration");
    assert_eq!(calls[0].2, "text 1 of 3, layer 0");

    let int4 = Compression {
        format: WeightFormat::parse("int4").unwrap(),
        sparse: None,
    };
    let mut calls = Calls::new();
    pack::pack(&dir, &int4, Some(&seqs), |d, t, l| {
        calls.push((d, t, l.to_string()))
    })
    .unwrap();
    check(&calls, total, "pack --calibrate");
    let mut uncalibrated = 0;
    pack::pack(&dir, &int4, None, |_, _, _| uncalibrated += 1).unwrap();
    assert_eq!(uncalibrated, 0, "only calibration has steps");
}

#[test]
fn chained_layer_bench_counts_each_device() {
    use sparq::schedule::bench::{DataParallelConfig, run, steps};
    let adapters = std::env::var("SPARQ_TEST_ADAPTERS").unwrap_or_else(|_| "all".into());
    let cfg = DataParallelConfig {
        k: 32,
        n: 32,
        batch: 64,
        max_rows: 16,
        repeats: 1,
        calibration_rows: 8,
        alone_seconds: 0.05,
        ..DataParallelConfig::quick(&adapters)
    };
    let mut calls = Calls::new();
    let report = run(&cfg, |d, t, l| calls.push((d, t, l.to_string()))).unwrap();
    assert!(!report.alone.is_empty());
    assert_eq!(steps(report.alone.len()), 3 + report.alone.len());
    check(&calls, steps(report.alone.len()), "data-parallel bench");
    assert!(calls.iter().any(|c| c.2.ends_with(" alone")), "{calls:?}");
}
