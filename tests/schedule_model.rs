//! all-MiniLM-L6-v2 (unpacked into models/ by scripts/setup.sh) over several devices: every
//! sentence comes back once, in order, equal in every bit to the single-device run of the
//! device that computed it, and close to the original PyTorch model.

mod common;

use common::minilm::{fixture, model_dir};
use common::{all_gpus, cosine};
use sparq::Gpu;
use sparq::gpu::instance;
use sparq::model::LoadOptions;
use sparq::schedule::{Cluster, ClusterConfig, ModelReplica, run_single};
use std::sync::Arc;

#[test]
fn minilm_split_over_devices_equals_single_device_runs() {
    let common::minilm::Fixture {
        sentences,
        embeddings: want,
        ..
    } = fixture();
    // Two rounds of the fixture, so every device gets several micro-batches of mixed lengths.
    let inputs: Vec<String> = sentences.iter().chain(&sentences).cloned().collect();
    // Every adapter, plus a second device on the first one.
    let mut gpus: Vec<Arc<Gpu>> = all_gpus().into_iter().map(Arc::new).collect();
    let extra = Gpu::from_adapter(gpus[0].adapter.clone(), &instance()).unwrap();
    gpus.push(Arc::new(extra));
    let dir = model_dir();
    let mut cluster = Cluster::new(
        gpus,
        |g| ModelReplica::load(&dir, g, LoadOptions::default(), 3),
        ClusterConfig::default(),
    )
    .unwrap();
    // Each device alone, one sentence per pass: its own reference. A sentence alone is padded
    // differently than inside the micro-batches below, which must not change a bit.
    let refs: Vec<Vec<Vec<f32>>> = (0..cluster.len())
        .map(|i| {
            (0..sentences.len())
                .map(|r| run_single(cluster.replica_mut(i), &inputs[r..r + 1]).unwrap()[0].clone())
                .collect()
        })
        .collect();
    cluster.calibrate(&inputs[..4]).unwrap();
    let out = cluster.run(&inputs).unwrap();
    assert_eq!(out.outputs.len(), inputs.len());
    let mut seen = vec![0; inputs.len()];
    for mb in &out.report.micro_batches {
        for r in mb.start..mb.start + mb.rows {
            seen[r] += 1;
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&out.outputs[r]),
                bits(&refs[mb.device][r % sentences.len()]),
                "row {r} from device {} ({}) differs from its single-device run",
                mb.device,
                cluster.names()[mb.device]
            );
            let c = cosine(&out.outputs[r], &want[r % sentences.len()]);
            assert!(c >= 0.9999, "row {r}: cosine {c} to PyTorch");
        }
    }
    assert!(seen.iter().all(|&n| n == 1), "rows delivered: {seen:?}");
    assert!(cluster.failures().iter().all(Option::is_none));
}

/// A device lost while double-buffered model passes are in flight: its micro-batches re-run on
/// the other device and every sentence still comes back once, matching PyTorch.
#[test]
fn minilm_survives_a_lost_device() {
    use sparq::schedule::{FaultKind, Injection};
    let common::minilm::Fixture {
        sentences,
        embeddings: want,
        ..
    } = fixture();
    let inputs: Vec<String> = (0..4).flat_map(|_| sentences.iter().cloned()).collect();
    let first = Arc::new(all_gpus().into_iter().next().unwrap());
    let second = Arc::new(Gpu::from_adapter(first.adapter.clone(), &instance()).unwrap());
    let dir = model_dir();
    let mut cluster = Cluster::new(
        vec![first, second],
        |g| ModelReplica::load(&dir, g, LoadOptions::default(), 2),
        ClusterConfig::default(),
    )
    .unwrap();
    cluster.inject(
        1,
        Injection::Fail {
            after: 2,
            kind: FaultKind::DeviceLost,
        },
    );
    let out = cluster.run(&inputs).unwrap();
    assert_eq!(out.outputs.len(), inputs.len());
    for (r, row) in out.outputs.iter().enumerate() {
        let c = cosine(row, &want[r % sentences.len()]);
        assert!(c >= 0.9999, "row {r}: cosine {c} to PyTorch");
    }
    let failures = cluster.failures();
    assert!(
        failures[0].is_none() && failures[1].is_some(),
        "{failures:?}"
    );
    assert!(
        !out.report.requeued.is_empty(),
        "the lost device's micro-batches were not re-run"
    );
}
