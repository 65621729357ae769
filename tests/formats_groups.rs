//! The group formats GGUF maps onto (int8 g32 = Q8_0, int4 g32 m = Q4_1): rounding against
//! their stored f16 parameters, f16 range errors, and row concatenation for every format.
//! No GPU needed.

mod common;

use common::{random, rng};
use half::f16;
use rand::Rng;
use sparq::formats::{PackedWeights, WeightFormat};
use sparq::{Error, InputError};

/// k = 1, below one block, between blocks, partial last groups, one and many groups.
const SHAPES: [(usize, usize); 7] = [
    (1, 1),
    (3, 7),
    (5, 33),
    (4, 100),
    (7, 259),
    (2, 64),
    (9, 31),
];

fn half_at(words: &[u32], i: usize) -> f32 {
    f16::from_bits((words[i / 2] >> (16 * (i % 2))) as u16).to_f32()
}

/// Weights over many binades, with an all-zero row and a constant row.
fn weights(rng: &mut rand::rngs::StdRng, n: usize, k: usize) -> Vec<f32> {
    let mut w: Vec<f32> = random(rng, n * k)
        .into_iter()
        .map(|v| v * 2f32.powi(rng.random_range(-6..6)))
        .collect();
    if n > 1 {
        w[k..2 * k].fill(0.0);
    }
    if n > 2 {
        w[2 * k..3 * k].fill(-0.3);
    }
    w
}

#[test]
fn int8_g32_is_q8_0_rounding() {
    let mut rng = rng("int8_g32_is_q8_0_rounding");
    for (n, k) in SHAPES {
        let w = weights(&mut rng, n, k);
        let p = PackedWeights::quantize(&w, n, k, WeightFormat::Int8G32).unwrap();
        let groups = k.div_ceil(32);
        assert_eq!(p.groups(), groups);
        assert!(p.zeros.is_empty());
        let d = p.dequantize();
        for r in 0..n {
            for gi in 0..groups {
                let (c0, c1) = (gi * 32, (gi * 32 + 32).min(k));
                let vals = &w[r * k + c0..r * k + c1];
                let amax = vals.iter().fold(0f32, |m, v| m.max(v.abs()));
                let s = half_at(&p.scales, r * groups + gi);
                assert_eq!(
                    s,
                    f16::from_f32(amax / 127.0).to_f32(),
                    "{n}×{k} [{r}, g{gi}]"
                );
                for (j, &a) in vals.iter().enumerate() {
                    // An integer code: a small negative weight rounds to +0, not −0.
                    let q = if s == 0.0 {
                        0.0
                    } else {
                        (a / s).round().clamp(-127.0, 127.0) as i32 as f32
                    };
                    let b = d[r * k + c0 + j];
                    assert_eq!(b.to_bits(), (q * s).to_bits(), "{n}×{k} [{r}, {}]", c0 + j);
                    // Half a step, plus the f16 rounding of the scale at the clamped end.
                    assert!((a - b).abs() <= s * 0.5 + amax * 2e-3 + 1e-30, "{a} → {b}");
                    if a == 0.0 {
                        assert_eq!(b, 0.0);
                    }
                }
            }
        }
    }
}

#[test]
fn int4_min_is_q4_1_rounding() {
    let mut rng = rng("int4_min_is_q4_1_rounding");
    for group in [32u32, 64, 128] {
        let format = WeightFormat::Int4Min { group };
        for (n, k) in SHAPES {
            let w = weights(&mut rng, n, k);
            let p = PackedWeights::quantize(&w, n, k, format).unwrap();
            let g = group as usize;
            let groups = k.div_ceil(g);
            let d = p.dequantize();
            for r in 0..n {
                for gi in 0..groups {
                    let (c0, c1) = (gi * g, (gi * g + g).min(k));
                    let vals = &w[r * k + c0..r * k + c1];
                    let lo = vals.iter().fold(f32::INFINITY, |m, &v| m.min(v));
                    let hi = vals.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    let (s, m) = (
                        half_at(&p.scales, r * groups + gi),
                        half_at(&p.zeros, r * groups + gi),
                    );
                    let what = format!("{} {n}×{k} [{r}, g{gi}]", format.name());
                    assert_eq!(s, f16::from_f32((hi - lo) / 15.0).to_f32(), "{what}");
                    assert_eq!(m, f16::from_f32(lo).to_f32(), "{what}");
                    for (j, &a) in vals.iter().enumerate() {
                        let q = if s == 0.0 {
                            0.0
                        } else {
                            ((a - m) / s).round().clamp(0.0, 15.0)
                        };
                        let b = d[r * k + c0 + j];
                        assert_eq!(b.to_bits(), (q * s + m).to_bits(), "{what}: {}", c0 + j);
                        // Half a step, plus the f16 roundings of d and m.
                        let bound = s * 0.5 + (hi - lo).abs() * 2e-3 + lo.abs() * 1e-3 + 1e-30;
                        assert!((a - b).abs() <= bound, "{what}: {a} → {b} > {bound}");
                    }
                    // A constant group (d = 0) decodes to its value rounded to f16.
                    if hi == lo {
                        assert_eq!(s, 0.0, "{what}");
                    }
                }
            }
            if k >= 100 {
                // Uniform data: step about 2/15, RMS error step/√12 against RMS 1/√3: 7 %.
                let w = random(&mut rng, n * k);
                let p = PackedWeights::quantize(&w, n, k, format).unwrap();
                let rel = p.error(&w).relative;
                assert!(
                    rel < 0.09,
                    "{} {n}×{k}: relative error {rel}",
                    format.name()
                );
            }
        }
    }
}

#[test]
fn weights_past_f16_range_are_refused() {
    // 1e7 / 127 fits f16 (int8 g32 scale), 1e7 as a minimum does not; 1e7 · 127 overflows.
    for (format, v) in [
        (WeightFormat::Int8G32, 1.0e8f32),
        (WeightFormat::Int4Min { group: 32 }, -1.0e5),
    ] {
        let mut w = vec![0.5f32; 2 * 40];
        w[45] = v;
        let r = PackedWeights::quantize(&w, 2, 40, format);
        assert!(
            matches!(r, Err(Error::Input(InputError::Invalid(ref m))) if m.contains("row 1")),
            "{}: {r:?}",
            format.name()
        );
        w[45] = v / 1e4;
        PackedWeights::quantize(&w, 2, 40, format).unwrap();
    }
}

#[test]
fn concat_rows_stacks_decoded_rows() {
    let mut rng = rng("concat_rows_stacks_decoded_rows");
    let mut formats = WeightFormat::all();
    formats.push(WeightFormat::Int4 {
        group: 128,
        asymmetric: true,
    });
    formats.push(WeightFormat::Int4Min { group: 64 });
    for format in formats {
        for k in [1, 33, 100, 259] {
            // Odd row counts so parts end mid-word in packed scales and zero points.
            let ns = [3usize, 1, 5, 2];
            let ws: Vec<Vec<f32>> = ns.iter().map(|&n| random(&mut rng, n * k)).collect();
            let parts: Vec<PackedWeights> = ns
                .iter()
                .zip(&ws)
                .map(|(&n, w)| PackedWeights::quantize(w, n, k, format).unwrap())
                .collect();
            let refs: Vec<&PackedWeights> = parts.iter().collect();
            let c = PackedWeights::concat_rows(&refs).unwrap();
            let what = format!("{} k={k}", format.name());
            assert_eq!((c.format, c.n, c.k), (format, 11, k), "{what}");
            let want: Vec<u32> = parts
                .iter()
                .flat_map(|p| p.dequantize())
                .map(f32::to_bits)
                .collect();
            let got: Vec<u32> = c.dequantize().into_iter().map(f32::to_bits).collect();
            assert_eq!(got, want, "{what}");
            // Same layout as if packed in one piece: row slices give the parts back.
            assert_eq!(c.data.len(), 11 * c.row_words(), "{what}");
            let mut r0 = 0;
            for p in &parts {
                let s = c.rows(r0, r0 + p.n);
                assert_eq!(
                    (&s.data, &s.scales, &s.zeros),
                    (&p.data, &p.scales, &p.zeros)
                );
                r0 += p.n;
            }
            // One part is a copy.
            let one = PackedWeights::concat_rows(&refs[..1]).unwrap();
            assert_eq!(
                (&one.data, &one.scales, &one.zeros),
                (&parts[0].data, &parts[0].scales, &parts[0].zeros)
            );
        }
    }
}

#[test]
fn concat_rows_refuses_mismatches() {
    let w = vec![0.25f32; 4 * 64];
    let a = PackedWeights::quantize(&w, 4, 64, WeightFormat::Int8G32).unwrap();
    let b = PackedWeights::quantize(&w, 4, 64, WeightFormat::Int8).unwrap();
    let c = PackedWeights::quantize(&w[..4 * 32], 4, 32, WeightFormat::Int8G32).unwrap();
    let r = PackedWeights::concat_rows(&[&a, &b]);
    assert!(
        matches!(r, Err(Error::Input(InputError::Invalid(ref m))) if m.contains("int8")),
        "{r:?}"
    );
    let r = PackedWeights::concat_rows(&[&a, &c]);
    assert!(
        matches!(r, Err(Error::Input(InputError::Shape(_)))),
        "{r:?}"
    );
    let r = PackedWeights::concat_rows(&[]);
    assert!(
        matches!(r, Err(Error::Input(InputError::Invalid(_)))),
        "{r:?}"
    );
}

#[test]
fn packed_files_keep_every_format() {
    use sparq::model::loader::{self, WeightFile};
    use sparq::weights::LayerWeights;
    let mut rng = rng("packed_files_keep_every_format");
    let dir = common::bert::tmp("formats_groups");
    let path = dir.join("packed.safetensors");
    // An odd number of scale groups, so packed halves end mid-word.
    let (n, k) = (5, 70);
    let mut formats = WeightFormat::all();
    formats.push(WeightFormat::Int4Min { group: 128 });
    let packed: Vec<(String, LayerWeights)> = formats
        .iter()
        .map(|&f| {
            let p = PackedWeights::quantize(&random(&mut rng, n * k), n, k, f).unwrap();
            (f.name(), LayerWeights::Dense(p))
        })
        .collect();
    loader::save(&path, &[], &packed, Default::default()).unwrap();
    let file = WeightFile::open(&path).unwrap();
    for (name, w) in &packed {
        let LayerWeights::Dense(want) = w else {
            unreachable!()
        };
        let got = file.matrix(name, n, k, WeightFormat::F32).unwrap();
        let LayerWeights::Dense(got) = got else {
            panic!("{name}: read back as sparse")
        };
        assert_eq!(got.format, want.format, "{name}");
        assert_eq!(
            (&got.data, &got.scales, &got.zeros),
            (&want.data, &want.scales, &want.zeros),
            "{name}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
