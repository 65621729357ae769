//! The library's long runs report progress through `FnMut(done, total, label)`: `done` counts
//! up by one from 0 to `total` (which stays the same and is known up front), the last call
//! being `(total, total, "done")`. Tiny runs on every test adapter.

mod common;

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
