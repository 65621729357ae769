//! Binary and ternary weight formats on the host: the bit layouts of `formats::low_bit`
//! decoded independently, least-squares scales against brute force, error bounds, padding,
//! row slicing and stacking, names. No GPU needed.

mod common;

use common::{random, rng};
use half::f16;
use rand::Rng;
use sparq::formats::low_bit::{binary_params, ternary_scale};
use sparq::formats::{PackedWeights, WeightFormat, row_words};

/// k = 1, below one block, between blocks of every format, several groups with a partial
/// last one, and odd row counts.
const SHAPES: [(usize, usize); 8] = [
    (1, 1),
    (3, 5),
    (2, 63),
    (5, 81),
    (3, 129),
    (4, 200),
    (7, 321),
    (2, 640),
];

fn formats() -> Vec<WeightFormat> {
    let mut v = Vec::new();
    for group in [32, 64, 128] {
        for mean in [false, true] {
            v.push(WeightFormat::Binary { group, mean });
        }
    }
    for group in [64, 128, 256] {
        v.push(WeightFormat::Ternary { group });
    }
    for group in [80, 160, 320] {
        v.push(WeightFormat::Ternary16 { group });
    }
    v
}

fn half_at(words: &[u32], i: usize) -> f32 {
    f16::from_bits((words[i / 2] >> (16 * (i % 2))) as u16).to_f32()
}

/// The code of weight `c` of a packed row, straight from the layout table of the module
/// documentation (ternary16 by dividing by powers of three, not the kernels' trick).
fn code(format: WeightFormat, row: &[u32], c: usize) -> u32 {
    match format {
        WeightFormat::Binary { .. } => {
            let i = c % 32;
            (row[c / 32] >> (8 * (i % 4) + i / 4)) & 1
        }
        WeightFormat::Ternary { .. } => {
            let i = c % 16;
            (row[c / 16] >> (8 * (i % 4) + 2 * (i / 4))) & 3
        }
        WeightFormat::Ternary16 { .. } => {
            let i = c % 20;
            let stored = (row[c / 20] >> (8 * (i % 4))) & 0xFF;
            // Invert ⌈v · 256 / 243⌉: the v whose image is `stored`.
            let v = (0..243)
                .find(|v| (v * 256u32).div_ceil(243) == stored)
                .unwrap();
            (v / 3u32.pow(4 - (i / 4) as u32)) % 3
        }
        _ => unreachable!(),
    }
}

/// Every weight of row `r`, padding included, decoded from the layout table.
fn decode_padded_row(p: &PackedWeights, r: usize) -> Vec<f32> {
    let rw = row_words(p.format, p.k);
    let row = &p.data[r * rw..(r + 1) * rw];
    let g = p.format.group().unwrap();
    let groups = p.format.groups(p.k);
    let kp = p.k.next_multiple_of(p.format.block_k());
    (0..kp)
        .map(|c| {
            let gi = (r * groups + c / g).min(r * groups + groups - 1);
            let s = half_at(&p.scales, gi);
            let q = code(p.format, row, c) as f32;
            match p.format {
                WeightFormat::Binary { mean, .. } => {
                    let m = if mean { half_at(&p.zeros, gi) } else { 0.0 };
                    (2.0 * q - 1.0) * s + m
                }
                _ => (q - 1.0) * s,
            }
        })
        .collect()
}

#[test]
fn the_layout_table_decodes_what_the_crate_unpacks() {
    let mut rng = rng("the_layout_table_decodes_what_the_crate_unpacks");
    for format in formats() {
        for (n, k) in SHAPES {
            let w = random(&mut rng, n * k);
            let p = PackedWeights::quantize(&w, n, k, format).unwrap();
            assert_eq!(p.data.len(), n * row_words(format, k), "{format:?} {n}×{k}");
            assert_eq!(row_words(format, k) % 4, 0);
            let groups = format.groups(k);
            assert_eq!(
                p.scales.len(),
                (n * groups).div_ceil(2),
                "{format:?} {n}×{k}"
            );
            let d = p.dequantize();
            for r in 0..n {
                let row = decode_padded_row(&p, r);
                assert_eq!(
                    &row[..k],
                    &d[r * k..(r + 1) * k],
                    "{format:?} {n}×{k} row {r}"
                );
                if !matches!(format, WeightFormat::Binary { .. }) {
                    // Ternary padding is code 1: exactly zero.
                    assert!(row[k..].iter().all(|&v| v == 0.0), "{format:?} {n}×{k}");
                }
            }
        }
    }
}

#[test]
fn ternary_weights_are_the_rounded_multiples_of_a_least_squares_scale() {
    let mut rng = rng("ternary_weights_are_the_rounded_multiples_of_a_least_squares_scale");
    for format in formats()
        .into_iter()
        .filter(|f| !matches!(f, WeightFormat::Binary { .. }))
    {
        let (n, k) = (5, 333);
        let w = random(&mut rng, n * k)
            .iter()
            .map(|v| 2.0 * v)
            .collect::<Vec<f32>>();
        let p = PackedWeights::quantize(&w, n, k, format).unwrap();
        let d = p.dequantize();
        let g = format.group().unwrap();
        for r in 0..n {
            for (gi, (vals, dq)) in w[r * k..(r + 1) * k]
                .chunks(g)
                .zip(d[r * k..(r + 1) * k].chunks(g))
                .enumerate()
            {
                let s = half_at(&p.scales, r * p.groups() + gi);
                // Brute force over every threshold: the best scale for keeping the j largest.
                let mut mags: Vec<f64> = vals.iter().map(|v| v.abs() as f64).collect();
                mags.sort_by(|a, b| b.total_cmp(a));
                let best = (1..=mags.len())
                    .map(|j| {
                        let top: f64 = mags[..j].iter().sum();
                        (top * top / j as f64, top / j as f64)
                    })
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .unwrap()
                    .1;
                assert_eq!(
                    s,
                    f16::from_f32(best as f32).to_f32(),
                    "{format:?} r{r} g{gi}"
                );
                for (&v, &q) in vals.iter().zip(dq) {
                    assert!(
                        q == 0.0 || q == s || q == -s,
                        "{format:?}: {q} not in {{0, ±{s}}}"
                    );
                    let bound = (s / 2.0).max(v.abs() - s) * (1.0 + 1e-6);
                    assert!((v - q).abs() <= bound, "{format:?}: {v} → {q} (s = {s})");
                }
            }
        }
    }
}

#[test]
fn binary_weights_are_the_sign_around_the_mean_times_the_mean_magnitude() {
    let mut rng = rng("binary_weights_are_the_sign_around_the_mean_times_the_mean_magnitude");
    for format in formats()
        .into_iter()
        .filter(|f| matches!(f, WeightFormat::Binary { .. }))
    {
        let WeightFormat::Binary { group, mean } = format else {
            unreachable!()
        };
        let (n, k) = (3, 300);
        let w: Vec<f32> = random(&mut rng, n * k).iter().map(|v| v + 0.3).collect();
        let p = PackedWeights::quantize(&w, n, k, format).unwrap();
        let d = p.dequantize();
        for r in 0..n {
            for (vals, dq) in w[r * k..(r + 1) * k]
                .chunks(group as usize)
                .zip(d[r * k..(r + 1) * k].chunks(group as usize))
            {
                let (s, m) = binary_params(vals, mean);
                let (s, m) = (s.to_f32(), m.to_f32());
                let avg = vals.iter().map(|&v| v as f64).sum::<f64>() / vals.len() as f64;
                if mean {
                    assert!((m as f64 - avg).abs() <= avg.abs() / 1024.0 + 1e-7);
                } else {
                    assert_eq!(m, 0.0);
                }
                let mag =
                    vals.iter().map(|&v| (v - m).abs() as f64).sum::<f64>() / vals.len() as f64;
                assert!(
                    (s as f64 - mag).abs() <= mag / 1024.0,
                    "{format:?}: {s} vs {mag}"
                );
                for (&v, &q) in vals.iter().zip(dq) {
                    let want = if v - m >= 0.0 { s + m } else { -s + m };
                    assert_eq!(q, want, "{format:?}: {v}");
                }
            }
            // Groups of the padded row past k: zero scale (and mean).
            let groups = format.groups(k);
            for gi in k.div_ceil(group as usize)..groups {
                assert_eq!(half_at(&p.scales, r * groups + gi), 0.0);
            }
        }
    }
}

#[test]
fn exactly_representable_weights_survive_a_round_trip() {
    let mut rng = rng("exactly_representable_weights_survive_a_round_trip");
    for format in formats() {
        let mean = matches!(format, WeightFormat::Binary { mean: true, .. });
        let (n, k) = (4, 259);
        let g = format.group().unwrap();
        // Per group a power-of-two scale and random codes: the quantizer finds them again.
        let mut w = vec![0f32; n * k];
        for r in 0..n {
            for c0 in (0..k).step_by(g) {
                let s = 2f32.powi(rng.random_range(-6..3));
                let c1 = (c0 + g).min(k);
                for c in c0..c1 {
                    w[r * k + c] = match format {
                        WeightFormat::Binary { .. } => {
                            if rng.random_bool(0.5) {
                                s
                            } else {
                                -s
                            }
                        }
                        _ => s * (rng.random_range(0..3) as f32 - 1.0),
                    };
                }
                // A ternary group needs one nonzero weight to fix its scale.
                w[r * k + c0] = s;
            }
        }
        if mean {
            continue; // the mean of random signs is not zero: checked above instead
        }
        let p = PackedWeights::quantize(&w, n, k, format).unwrap();
        assert_eq!(p.dequantize(), w, "{format:?}");
        let again = PackedWeights::quantize(&p.dequantize(), n, k, format).unwrap();
        assert_eq!(again.data, p.data, "{format:?}");
        assert_eq!(again.scales, p.scales, "{format:?}");
    }
}

#[test]
fn ternary16_bytes_follow_the_documented_encoding() {
    // Weights 0..20 of one word: byte b holds weights b, b+4, ..., b+16 as base-3 digits,
    // most significant first, stored as ⌈v · 256 / 243⌉.
    let codes: Vec<u32> = (0..20).map(|i| (i * 7 + 1) % 3).collect();
    let w: Vec<f32> = codes.iter().map(|&c| c as f32 - 1.0).collect();
    let p = PackedWeights::quantize(&w, 1, 20, WeightFormat::Ternary16 { group: 80 }).unwrap();
    assert_eq!(half_at(&p.scales, 0), 1.0);
    for b in 0..4 {
        let v = (0..5).fold(0u32, |v, d| 3 * v + codes[4 * d + b]);
        assert_eq!(
            (p.data[0] >> (8 * b)) & 0xFF,
            (v * 256).div_ceil(243),
            "byte {b}"
        );
    }
    // The other three words of the block are padding: five codes of 1 each byte.
    let pad = (0..5).fold(0u32, |v, _| 3 * v + 1);
    let pad = (pad * 256).div_ceil(243);
    assert_eq!(&p.data[1..4], &[pad * 0x0101_0101; 3]);
}

#[test]
fn rows_and_concat_keep_every_weight() {
    let mut rng = rng("rows_and_concat_keep_every_weight");
    for format in formats() {
        let (n, k) = (7, 201);
        let w = random(&mut rng, n * k);
        let p = PackedWeights::quantize(&w, n, k, format).unwrap();
        let (a, b) = (p.rows(0, 3), p.rows(3, 7));
        let d = p.dequantize();
        assert_eq!(a.dequantize(), d[..3 * k], "{format:?}");
        assert_eq!(b.dequantize(), d[3 * k..], "{format:?}");
        let joined = PackedWeights::concat_rows(&[&a, &b]).unwrap();
        assert_eq!(joined.dequantize(), d, "{format:?}");
        assert_eq!(joined.scales, p.scales, "{format:?}");
        assert_eq!(joined.zeros, p.zeros, "{format:?}");
        assert_eq!(
            p.bytes(),
            4 * (p.data.len() + p.scales.len() + p.zeros.len()) as u64
        );
    }
}

#[test]
fn names_parse_back_and_bad_groups_are_refused() {
    for format in formats() {
        assert_eq!(WeightFormat::parse(&format.name()).unwrap(), format);
    }
    for (alias, format) in [
        (
            "binary",
            WeightFormat::Binary {
                group: 128,
                mean: false,
            },
        ),
        (
            "binarym",
            WeightFormat::Binary {
                group: 128,
                mean: true,
            },
        ),
        ("ternary", WeightFormat::Ternary { group: 128 }),
        ("TERNARY16", WeightFormat::Ternary16 { group: 160 }),
    ] {
        assert_eq!(WeightFormat::parse(alias).unwrap(), format, "{alias}");
    }
    for bad in [
        "binaryg256",
        "binaryg16m",
        "ternaryg32",
        "ternary16g64",
        "ternaryx",
        "binaryg",
    ] {
        assert!(WeightFormat::parse(bad).is_err(), "{bad} was accepted");
    }
    let err = PackedWeights::quantize(&[1.0; 64], 1, 64, WeightFormat::Ternary { group: 32 })
        .unwrap_err()
        .to_string();
    assert!(err.contains("64, 128, 256"), "{err}");
    assert_eq!(WeightFormat::Ternary16 { group: 160 }.bits(), 1.6);
    assert_eq!(
        WeightFormat::Binary {
            group: 32,
            mean: false
        }
        .bits(),
        1.0
    );
}

#[test]
fn weights_past_f16_range_are_refused_and_zero_groups_stay_zero() {
    for format in formats() {
        let mut w = vec![0.5f32; 2 * 130];
        w[131] = 1e8;
        let err = PackedWeights::quantize(&w, 2, 130, format)
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 1"), "{format:?}: {err}");
        let z = PackedWeights::quantize(&[0.0; 3 * 90], 3, 90, format).unwrap();
        assert!(z.dequantize().iter().all(|&v| v == 0.0), "{format:?}");
        assert_eq!(ternary_scale(&[0.0; 4]).to_f32(), 1.0);
    }
}
