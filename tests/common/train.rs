//! Helpers of the training tests: running dispatches, poisoned outputs, reading a tensor
//! back with its padding checked, and the digits fixture as training data.

use sparq::Gpu;
use sparq::gpu::{Dispatch, record_pass};
use sparq::tensor::{ActDType, Tensor};
use sparq::train::mlp::Dataset;

/// Records `d` into one pass, submits it and waits.
pub fn run(gpu: &Gpu, d: Vec<Dispatch>) {
    let mut enc = gpu.encoder("test");
    record_pass(&mut enc, &d, None);
    gpu.submit_and_wait(enc).unwrap();
}

/// An f32 tensor filled with NaN, padding included.
pub fn poisoned(gpu: &Gpu, rows: usize, cols: usize) -> Tensor {
    let t = Tensor::empty(gpu, rows, cols, ActDType::F32).unwrap();
    t.poison(gpu);
    t
}

/// Reads `t` back, checking that its row padding is zero.
pub fn values(gpu: &Gpu, t: &Tensor, what: &str) -> Vec<f32> {
    let padded = t.to_f32_padded(gpu).unwrap();
    let s = t.stride();
    for r in 0..t.rows {
        for c in t.cols..s {
            assert_eq!(padded[r * s + c], 0.0, "{what}: padding [{r}, {c}]");
        }
    }
    t.to_f32(gpu).unwrap()
}

/// `v` in f64.
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// The digits classifier's 360 test images (features scaled as it was trained) and labels.
pub fn digits() -> Dataset {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/digits_mlp.json"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let scale = v["x_scale"].as_f64().unwrap() as f32;
    let x = v["x"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            let r = r.as_array().unwrap();
            r.iter()
                .map(|p| p.as_f64().unwrap() as f32 * scale)
                .collect::<Vec<_>>()
        })
        .collect();
    let labels = v["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_u64().unwrap() as u32)
        .collect();
    Dataset { x, labels }
}

/// [`digits`] split: the first 240 images to train on, the other 120 held out.
pub fn digits_split() -> (Dataset, Dataset) {
    let all = digits();
    let part = |range: std::ops::Range<usize>| Dataset {
        x: all.x[range.start * 64..range.end * 64].to_vec(),
        labels: all.labels[range].to_vec(),
    };
    (part(0..240), part(240..360))
}
