//! `sparq pack --calibrate` for decoders (`llama::calibrate`, `llama::pack::pack` with
//! tokens): the inputs of each linear layer come from the f64 reference decoder; GPTQ (dense
//! int4 and ternary) and SparseGPT (2:4) then keep each layer's outputs on those inputs closer to the
//! original than rounding to nearest and magnitude pruning do, the calibrated file loads
//! and runs (against the reference on its stored weights), and formats calibration does
//! not apply to are refused.

mod common;
#[path = "common/llama.rs"]
mod llama;

use common::rng;
use llama::{check_prefill, config_json, exact_gpus, random_weights, tmp, tokens, write_hf};
use safetensors::Dtype;
use sparq::formats::WeightFormat;
use sparq::model::compress::{Compression, SparseStorage};
use sparq::model::llama::{
    LlamaConfig, LlamaDecoder, LlamaLinear, LlamaNames, LlamaWeights, Reference, calibrate, pack,
};
use sparq::{Error, InputError};

/// `Σ ‖x (W − Ŵ)ᵀ‖²` over the rows `xs`: the layer-output error GPTQ and SparseGPT minimise.
fn output_error(xs: &[Vec<f64>], w: &[f32], q: &[f32], k: usize) -> f64 {
    let n = w.len() / k;
    let mut e = 0.0;
    for x in xs {
        for r in 0..n {
            let d: f64 = (0..k)
                .map(|c| x[c] * (w[r * k + c] as f64 - q[r * k + c] as f64))
                .sum();
            e += d * d;
        }
    }
    e
}

#[test]
fn calibrated_decoders_keep_layer_outputs_closer_and_run() {
    let mut r = rng("llama calibrate");
    let json = config_json("LlamaForCausalLM", false);
    let config = LlamaConfig::from_hf_config(&json).unwrap();
    let weights: LlamaWeights = random_weights(&config, &mut r, Dtype::F32);
    let dir = tmp("calibrate");
    write_hf(&dir, &json, &weights, Dtype::F32, 1);
    let seqs: Vec<Vec<u32>> = (0..4)
        .map(|_| tokens(&mut r, 48, config.vocab_size))
        .collect();
    let original = Reference::new(config.clone(), weights.clone()).unwrap();

    // Q, K and V share one sum of their inputs, as do gate and up; every token counts.
    let (h, seen) = calibrate::hessians(&original, &seqs, |_, _, _| {}).unwrap();
    assert_eq!(seen, 4 * 48);
    let names = LlamaNames::default();
    assert_eq!(h.len(), config.num_layers * LlamaLinear::ALL.len());
    let q0 = &h[&names.linear(0, LlamaLinear::Q).weight()];
    assert_eq!((q0.k(), q0.rows()), (config.hidden_size, 4 * 48));
    assert_eq!(
        h[&names.linear(1, LlamaLinear::Down).weight()].k(),
        config.intermediate_size
    );

    // The inputs of layer 0's Q and layer 1's down projection on the calibration tokens.
    let (mut xq, mut xd) = (Vec::new(), Vec::new());
    for s in &seqs {
        original
            .observe(s, &mut |l, site, x| match (l, site) {
                (0, LlamaLinear::Q) => xq.extend_from_slice(x),
                (1, LlamaLinear::Down) => xd.extend_from_slice(x),
                _ => {}
            })
            .unwrap();
    }
    let probes = [
        (
            names.linear(0, LlamaLinear::Q).weight(),
            &xq,
            config.hidden_size,
        ),
        (
            names.linear(1, LlamaLinear::Down).weight(),
            &xd,
            config.intermediate_size,
        ),
    ];
    for (format, prune) in [("int4", None), ("ternary", None), ("f16", Some("2:4"))] {
        let c = Compression {
            format: WeightFormat::parse(format).unwrap(),
            sparse: prune.map(|p| SparseStorage::parse(p).unwrap()),
        };
        let (_, _, plain, _) = pack::pack(&dir, &c, None, |_, _, _| {}).unwrap();
        let (cfg, floats, tuned, _) = pack::pack(&dir, &c, Some(&seqs), |_, _, _| {}).unwrap();
        for (name, xs, k) in &probes {
            let w = &weights[name].1;
            let get = |ls: &sparq::model::compress::Linears| {
                ls.iter().find(|(n, _)| n == name).unwrap().1.dequantize()
            };
            let (e_plain, e_tuned) = (
                output_error(xs, w, &get(&plain), *k),
                output_error(xs, w, &get(&tuned), *k),
            );
            assert!(
                e_tuned < e_plain,
                "{format} {prune:?} {name}: calibrated output error {e_tuned:.4e} is not below \
                 {e_plain:.4e}"
            );
        }
        let out = dir.join(format!("calibrated-{format}.safetensors"));
        pack::write(&out, &cfg, &floats, &tuned).unwrap();
        let file = sparq::model::loader::WeightFile::open(&out).unwrap();
        let stored: LlamaWeights = names
            .tensors(&cfg)
            .into_iter()
            .map(|(name, shape)| {
                let v = match shape[..] {
                    [n, k] => file
                        .matrix(&name, n, k, WeightFormat::F32)
                        .unwrap()
                        .dequantize(),
                    _ => file.floats(&name, &shape).unwrap(),
                };
                (name, (shape, v))
            })
            .collect();
        let reference = Reference::new(cfg.clone(), stored).unwrap();
        let gpu = &exact_gpus()[0];
        let lm = LlamaDecoder::from_sparq(&out, gpu, Default::default()).unwrap();
        check_prefill(
            &lm,
            &reference,
            &seqs[0][..20],
            &format!("calibrated {format}"),
        );
    }
    // Calibration rounds int4, binary and ternary and prunes 2:4 / magnitude:S; int8 is refused.
    let int8 = Compression::dense(WeightFormat::Int8);
    match pack::pack(&dir, &int8, Some(&seqs), |_, _, _| {}) {
        Err(Error::Input(InputError::Invalid(_))) => {}
        Err(e) => panic!("int8 calibration: {e}"),
        Ok(_) => panic!("int8 calibration packed"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
