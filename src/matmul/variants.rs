//! Every shader variant the linear kernels can ask for, listed for the offline validation in
//! `tests/shader_variants.rs`. It sits beside the generators rather than inside one, since
//! the listing needs them all (assembly, tunings, tensor-core tilings, DP4A, quantization).

use super::shader::{STRATEGIES, Strategy, gemv_vars, quant_rows_source, source, variant_name};
use crate::error::Result;
use crate::formats::WeightFormat;
use crate::tensor::ActDType;

/// The template variables `Linear` can ask for with `strategy` and `format` under the default
/// tuning: every row count a GEMV takes, x staged for a short and a long row on 16 and 32 KiB
/// of workgroup memory, both GEMM tiles, every tensor-core tiling the autotuner or the
/// defaults pick, on subgroups of 32 and 64. Empty where the pair has no kernel.
fn variant_vars(strategy: Strategy, format: WeightFormat) -> Vec<Vec<(&'static str, i64)>> {
    use super::tuning::{GemmTiling, GemvTuning, x_chunk4};
    // The int8-activation kernels take int8, int4, binary and ternary weights (none for the
    // group formats: `Linear` falls back to float activations for them).
    let int = matches!(format, WeightFormat::Int8 | WeightFormat::Int4 { .. })
        || super::low_bit_q8::Shape::of(format).is_some();
    let mut out: Vec<Vec<(&'static str, i64)>> = Vec::new();
    match strategy {
        Strategy::GemvSubgroup
        | Strategy::GemvWorkgroup
        | Strategy::GemvSubgroupQ8
        | Strategy::GemvWorkgroupQ8 => {
            if strategy.quantizes_activations() && !int {
                return out;
            }
            let sg = strategy.needs_subgroups();
            // The defaults; a forced `SPARQ_GEMV_*` setting asks for variants of its own.
            let config = crate::config::Config::default();
            for m in 1..=strategy.max_rows() {
                let t = if strategy.quantizes_activations() {
                    GemvTuning::for_q8(&config, format, m, sg)
                } else {
                    GemvTuning::for_rows(&config, format, m, sg)
                };
                // What the workgroup path reserves for its partial sums beside staged x.
                let other = if sg {
                    0
                } else {
                    (t.workgroup * m as u32 * t.rows_per_team * 4) as u64
                };
                for storage in [16 * 1024, 32 * 1024] {
                    for k in [384usize, 8192] {
                        let block4 = format.block_k() / 4;
                        let row4 = k.div_ceil(format.block_k()) * block4;
                        let chunk4 = x_chunk4(row4, block4, storage, m, other, t.x_staged);
                        out.push(gemv_vars(strategy, m, &t, chunk4));
                    }
                }
            }
        }
        Strategy::GemmTiled => {
            for tile in [64, 128] {
                out.push(GemmTiling::with_tile(format, tile).vars());
            }
        }
        Strategy::GemmCoop => {
            if format == WeightFormat::F32 {
                return out;
            }
            let mut tilings = super::CoopTiling::candidates();
            for m in [1, 128, 256, 512, 1024, 8192] {
                for n in [64, 384, 1536, 8192] {
                    tilings.push(super::CoopTiling::default_for(format, m, n));
                }
            }
            for t in tilings {
                if !t.slices(format) {
                    continue;
                }
                for sg in [32, 64] {
                    out.push(t.vars(sg, format));
                }
            }
        }
        Strategy::GemmDp4a => {
            if format == WeightFormat::Int8 {
                let mut vars = Vec::new();
                super::dp4a::prepare(1, 1, &mut vars);
                out.push(vars);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Every module the linear kernels can ask for, as (pipeline name, WGSL or the template
/// error): [`source`] over every strategy, weight format and activation type with the
/// variables of `variant_vars`, the two quantization kernels, for tests that validate
/// them offline. One int4 format stands for all: group size and zero points are override
/// constants; likewise one min, one binary and one ternary format of each layout (their
/// int8-activation GEMVs come with the other int8-activation strategies).
pub fn variants() -> Vec<(String, Result<String>)> {
    let formats = [
        WeightFormat::F32,
        WeightFormat::F16,
        WeightFormat::Int8,
        WeightFormat::Int4 {
            group: 32,
            asymmetric: false,
        },
        WeightFormat::Int8G32,
        WeightFormat::Int4Min { group: 32 },
        WeightFormat::Binary {
            group: 128,
            mean: false,
        },
        WeightFormat::Ternary { group: 128 },
        WeightFormat::Ternary16 { group: 160 },
    ];
    let mut out = Vec::new();
    for act in [ActDType::F32, ActDType::F16] {
        for format in formats {
            for strategy in STRATEGIES {
                for vars in variant_vars(strategy, format) {
                    let name = variant_name(strategy, format, act, &vars);
                    out.push((name, source(strategy, format, act, &vars)));
                }
            }
        }
        out.push((format!("quant_rows_{act:?}"), Ok(quant_rows_source(act))));
        for paired in [false, true] {
            out.push((
                super::quant_x::variant_name(act, paired),
                super::quant_x::source(act, paired),
            ));
        }
    }
    out.extend(super::low_bit_q8::quant_variants());
    out
}
