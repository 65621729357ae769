//! The precision the linear layers read activations in, as a loaded model reports it
//! (`Model::activation_precisions`): from the kernels its layers' plans chose, so int4 weights
//! on one device say int8 where the adapter's int8 GEMVs ran (`GemmConfig::q8`), and f32 with
//! those turned off or in the batch-invariant mode of the data-parallel scheduler.

mod common;

use common::bert;
use sparq::Gpu;
use sparq::config::Config;
use sparq::formats::WeightFormat;
use sparq::gpu::{enumerate_adapters, instance};
use sparq::matmul::ActivationPrecision::{F32, Int8};
use sparq::model::{Batch, LoadOptions, Model};

#[test]
fn int4_layers_report_the_activations_their_kernels_read() {
    let c = bert::config();
    let dir = bert::tmp("activation-precision");
    let path = dir.join("model.safetensors");
    let mut r = common::rng("activation precision");
    bert::write_model(&path, &c, &bert::random_bert(&mut r, &c, ""));
    let (ids, types) = bert::ragged(&mut r, &c, &[3]);
    let batch = Batch::Tokens {
        ids,
        types: Some(types),
    };
    let filter = std::env::var("SPARQ_TEST_ADAPTERS").ok();
    let inst = instance();
    let mut tested = 0;
    for adapter in enumerate_adapters(&inst) {
        let name = adapter.get_info().name;
        if filter
            .as_ref()
            .is_some_and(|f| !name.to_lowercase().contains(&f.to_lowercase()))
        {
            continue;
        }
        for q8 in [true, false] {
            let mut config = Config::default();
            config.gemm.q8 = q8;
            let Ok(gpu) = Gpu::from_adapter_with(adapter.clone(), &inst, config) else {
                continue;
            };
            for batch_invariant in [false, true] {
                let options = LoadOptions::default()
                    .format(WeightFormat::parse("int4").unwrap())
                    .batch_invariant(batch_invariant);
                let m = Model::load_with(&path, &gpu, options).unwrap();
                assert!(m.activation_precisions().is_empty(), "before a pass");
                m.forward(&batch).unwrap();
                let quantized = q8 && gpu.caps.dot4_i8 && !batch_invariant;
                eprintln!(
                    "{name}: q8 {q8}, batch-invariant {batch_invariant}: {:?}",
                    m.activation_precisions()
                );
                let want = if quantized { vec![Int8] } else { vec![F32] };
                assert_eq!(
                    m.activation_precisions(),
                    want,
                    "{name}: q8 {q8}, batch-invariant {batch_invariant}"
                );
                tested += 1;
            }
        }
    }
    assert!(tested > 0, "no adapter");
}
