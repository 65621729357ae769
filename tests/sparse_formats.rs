//! Sparse formats: round trips through every value type, the documented layouts, the CPU
//! matmul against the dense reference, and refusals.

mod common;

use common::{random, rng};
use half::f16;
use rand::rngs::StdRng;
use sparq::Error;
use sparq::InputError;
use sparq::formats::{PackedWeights, WeightFormat};
use sparq::prune;
use sparq::reference::{linear, linear_abs};
use sparq::sparse::{Bsr, Csr, TwoFour, ValueType};

const SPARSITIES: [f64; 5] = [0.0, 0.5, 0.9, 0.99, 1.0];
const SHAPES: [(usize, usize); 5] = [(1, 1), (5, 7), (17, 33), (40, 70), (64, 128)];
const ALL: [ValueType; 4] = [
    ValueType::F32,
    ValueType::F16,
    ValueType::Int8,
    ValueType::Int4,
];

/// Random `n × k` matrix with round(s · n · k) zeros; a few rows zeroed entirely as well.
fn sparse(rng: &mut StdRng, n: usize, k: usize, s: f64) -> Vec<f32> {
    let mut w = prune::magnitude(&random(rng, n * k), n, k, s).unwrap().w;
    if n > 3 {
        w[2 * k..3 * k].fill(0.0);
    }
    w
}

/// Random 2:4-sparse matrix, further pruned to sparsity `s`.
fn two_four(rng: &mut StdRng, n: usize, k: usize, s: f64) -> Vec<f32> {
    let w = sparse(rng, n, k, 0.0);
    let w = prune::n_of_m(&w, n, k, 2, 4).unwrap().w;
    prune::magnitude(&w, n, k, s).unwrap().w
}

fn f16_round(w: &[f32]) -> Vec<f32> {
    w.iter().map(|&v| f16::from_f32(v).to_f32()).collect()
}

fn int8_rows(w: &[f32], n: usize, k: usize) -> Vec<f32> {
    PackedWeights::quantize(w, n, k, WeightFormat::Int8)
        .unwrap()
        .dequantize()
}

/// Symmetric int4 of a list of values sharing one f16 scale: the dense formats' scale
/// (tested in tests/formats.rs), each value rounded to the nearest code.
fn int4_group(vals: &[f32]) -> Vec<f32> {
    let s = sparq::formats::int4::symmetric_scale(vals).to_f32();
    vals.iter()
        .map(|v| (v / s).round().clamp(-8.0, 7.0) * s)
        .collect()
}

/// int4 with groups of `g` consecutive weights along k.
fn int4_rows(w: &[f32], k: usize, g: usize) -> Vec<f32> {
    w.chunks(k)
        .flat_map(|row| row.chunks(g).flat_map(int4_group))
        .collect()
}

/// 2:4 int4: groups of 32 slots, slots filled with zeros at the lowest free positions.
fn int4_two_four(w: &[f32], k: usize) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    for (r, row) in w.chunks(k).enumerate() {
        let mut slots = Vec::new(); // (column, value)
        for g0 in (0..k).step_by(4) {
            let mut pos: Vec<usize> = (0..4)
                .filter(|&p| g0 + p < k && row[g0 + p] != 0.0)
                .collect();
            for p in 0..4 {
                if pos.len() < 2 && !pos.contains(&p) {
                    pos.push(p);
                }
            }
            pos.sort();
            slots.extend(
                pos.iter()
                    .map(|&p| (g0 + p, if g0 + p < k { row[g0 + p] } else { 0.0 })),
            );
        }
        for chunk in slots.chunks(32) {
            let vals: Vec<f32> = chunk.iter().map(|s| s.1).collect();
            for ((c, _), q) in chunk.iter().zip(int4_group(&vals)) {
                if *c < k {
                    out[r * k + c] = q;
                }
            }
        }
    }
    out
}

/// `matmul_ref` against the f64 reference on `dense`, for M ∈ {1, 3, 17}.
fn check_matmul(
    rng: &mut StdRng,
    what: &str,
    dense: &[f32],
    n: usize,
    k: usize,
    mm: impl Fn(&[f32], usize) -> sparq::Result<Vec<f64>>,
) {
    for m in [1, 3, 17] {
        let x = random(rng, m * k);
        let got = mm(&x, m).unwrap();
        let want = linear(&x, dense, None, m, n, k);
        let scale = linear_abs(&x, dense, None, m, n, k);
        assert_eq!(got.len(), m * n);
        for (i, ((g, w), s)) in got.iter().zip(&want).zip(&scale).enumerate() {
            assert!((g - w).abs() <= 1e-12 * s, "{what} m={m}: [{i}] {g} vs {w}");
        }
    }
}

#[test]
fn csr_round_trips() {
    let mut rng = rng("csr_round_trips");
    for (n, k) in SHAPES {
        for s in SPARSITIES {
            let w = sparse(&mut rng, n, k, s);
            let nz = w.iter().filter(|v| **v != 0.0).count();
            for (vt, want) in [(ValueType::F32, w.clone()), (ValueType::F16, f16_round(&w))] {
                let what = format!("csr {} {n}×{k} s={s}", vt.name());
                let c = Csr::from_dense(&w, n, k, vt).unwrap();
                assert_eq!(c.to_dense(), want, "{what}");
                assert_eq!((c.nnz(), c.index_bits()), (nz, 16), "{what}");
                let vw = if vt == ValueType::F32 {
                    nz
                } else {
                    nz.div_ceil(2)
                };
                assert_eq!(
                    c.bytes(),
                    4 * (n + 1 + nz.div_ceil(2) + vw) as u64,
                    "{what}"
                );
                check_matmul(&mut rng, &what, &want, n, k, |x, m| c.matmul_ref(x, m));
            }
        }
    }
}

#[test]
fn csr_uses_32_bit_indices_past_65536_columns() {
    let mut rng = rng("csr_uses_32_bit_indices_past_65536_columns");
    for (k, bits) in [(65536, 16), (65537, 32), (70_000, 32)] {
        let mut w = sparse(&mut rng, 2, k, 0.999);
        w[k - 1] = 0.5; // the last column must survive the index packing
        let c = Csr::from_dense(&w, 2, k, ValueType::F32).unwrap();
        assert_eq!(c.index_bits(), bits);
        assert_eq!(c.to_dense(), w);
        check_matmul(&mut rng, "csr wide", &w, 2, k, |x, m| c.matmul_ref(x, m));
    }
}

#[test]
fn csr_layout_is_as_documented() {
    let w = [
        0.0, 1.5, 0.0, 0.0, -2.0, /**/ 0.0, 0.0, 0.0, 0.0, 0.0, /**/ 3.0, 0.0, 0.0, 0.0,
        0.0,
    ];
    let c = Csr::from_dense(&w, 3, 5, ValueType::F32).unwrap();
    assert_eq!(c.row_ptr, [0, 2, 2, 3]);
    assert_eq!(c.col_idx, [1 | 4 << 16, 0]);
    assert_eq!(
        c.values,
        [1.5f32.to_bits(), (-2.0f32).to_bits(), 3.0f32.to_bits()]
    );
    let c = Csr::from_dense(&w, 3, 5, ValueType::F16).unwrap();
    let h = |v: f32| f16::from_f32(v).to_bits() as u32;
    assert_eq!(c.values, [h(1.5) | h(-2.0) << 16, h(3.0)]);
}

/// What a BSR or 2:4 matrix of `vt` must decode to (`int4_group` = the int4 group along k).
fn dequantized(w: &[f32], n: usize, k: usize, vt: ValueType, int4_group: usize) -> Vec<f32> {
    match vt {
        ValueType::F32 => w.to_vec(),
        ValueType::F16 => f16_round(w),
        ValueType::Int8 => int8_rows(w, n, k),
        ValueType::Int4 => int4_rows(w, k, int4_group),
        // A value type this test has no reference for yet: it must learn it.
        other => panic!("no reference decoding of {other:?}"),
    }
}

#[test]
fn bsr_round_trips() {
    let mut rng = rng("bsr_round_trips");
    for (n, k) in SHAPES {
        for s in SPARSITIES {
            let w = sparse(&mut rng, n, k, s);
            for (br, bc) in [(1, 32), (16, 16), (4, 8), (3, 5), (1, 1)] {
                let blocks = (0..n.div_ceil(br))
                    .flat_map(|rb| (0..k.div_ceil(bc)).map(move |cb| (rb, cb)))
                    .filter(|&(rb, cb)| {
                        (rb * br..((rb + 1) * br).min(n))
                            .any(|r| (cb * bc..((cb + 1) * bc).min(k)).any(|c| w[r * k + c] != 0.0))
                    })
                    .count();
                for vt in ALL {
                    let what = format!("bsr {br}×{bc} {} {n}×{k} s={s}", vt.name());
                    let b = Bsr::from_dense(&w, n, k, br, bc, vt).unwrap();
                    let want = dequantized(&w, n, k, vt, bc);
                    assert_eq!(b.to_dense(), want, "{what}");
                    assert_eq!((b.blocks(), b.nnz()), (blocks, blocks * br * bc), "{what}");
                    assert_eq!(b.block_words() % 4, 0);
                    assert_eq!(b.values.len(), blocks * b.block_words(), "{what}");
                    check_matmul(&mut rng, &what, &want, n, k, |x, m| b.matmul_ref(x, m));
                }
            }
        }
    }
}

#[test]
fn bsr_int4_matches_the_dense_int4_format() {
    let mut rng = rng("bsr_int4_matches_the_dense_int4_format");
    let (n, k) = (24, 200);
    let w = sparse(&mut rng, n, k, 0.5);
    for g in [32, 64, 128] {
        let dense = PackedWeights::quantize(
            &w,
            n,
            k,
            WeightFormat::Int4 {
                group: g as u32,
                asymmetric: false,
            },
        )
        .unwrap()
        .dequantize();
        for br in [1, 8] {
            let b = Bsr::from_dense(&w, n, k, br, g, ValueType::Int4).unwrap();
            assert_eq!(b.to_dense(), dense, "g{g} br{br}");
        }
    }
}

#[test]
fn bsr_layout_is_as_documented() {
    // 3 × 5 with 2 × 4 blocks: a 2 × 2 grid; block (0, 1) and block (1, 0) hold non-zeros.
    let w = [
        0.0, 0.0, 0.0, 0.0, 1.0, /**/ 0.0, 0.0, 0.0, 0.0, 2.0, /**/ 0.0, 3.0, 0.0, 0.0,
        0.0,
    ];
    let b = Bsr::from_dense(&w, 3, 5, 2, 4, ValueType::F32).unwrap();
    assert_eq!(
        (b.row_ptr.clone(), b.block_col.clone(), b.block_words()),
        (vec![0, 1, 2], vec![1, 0], 8)
    );
    let f: Vec<f32> = b.values.iter().map(|&v| f32::from_bits(v)).collect();
    assert_eq!(
        f,
        [
            1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, /**/ 0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0,
            0.0
        ]
    );
    // int4: one f16 scale per (block, block row) and offset-8 nibbles, padding included.
    let b = Bsr::from_dense(&w, 3, 5, 2, 4, ValueType::Int4).unwrap();
    assert_eq!(b.block_words(), 4);
    let pad = 0x8888_8888;
    assert_eq!(
        b.values,
        [0x888F_888F, pad, pad, pad, 0x8888_88F8, pad, pad, pad]
    );
    let h = |v: f32| f16::from_f32(v / 7.0).to_bits() as u32;
    assert_eq!(
        b.scales,
        [
            h(1.0) | h(2.0) << 16,
            h(3.0) | (f16::ONE.to_bits() as u32) << 16
        ]
    );
    // int8: one f32 scale per output row.
    let b = Bsr::from_dense(&w, 3, 5, 2, 4, ValueType::Int8).unwrap();
    assert_eq!(
        b.scales,
        [1.0f32 / 127.0, 2.0 / 127.0, 3.0 / 127.0].map(f32::to_bits)
    );
}

#[test]
fn two_four_round_trips() {
    let mut rng = rng("two_four_round_trips");
    for (n, k) in SHAPES.into_iter().chain([(3, 2), (9, 66)]) {
        for s in SPARSITIES {
            let w = two_four(&mut rng, n, k, s);
            for vt in ALL {
                let what = format!("2:4 {} {n}×{k} s={s}", vt.name());
                let t = TwoFour::from_dense(&w, n, k, vt).unwrap();
                let want = match vt {
                    ValueType::Int4 => int4_two_four(&w, k),
                    _ => dequantized(&w, n, k, vt, 0),
                };
                assert_eq!(t.to_dense(), want, "{what}");
                assert_eq!(t.nnz(), 2 * n * k.div_ceil(4), "{what}");
                assert_eq!(t.values.len(), n * t.row_value_words());
                assert_eq!(t.row_value_words() % 4 + t.row_meta_words() % 4, 0);
                check_matmul(&mut rng, &what, &want, n, k, |x, m| t.matmul_ref(x, m));
            }
        }
    }
}

#[test]
fn two_four_layout_is_as_documented() {
    let w = [
        0.0, 5.0, 0.0, 7.0, /**/ 1.0, 0.0, 0.0, 0.0, /**/ 0.0, 2.0, //
        0.0, 0.0, 0.0, 9.0, /**/ 0.0, 0.0, 0.0, 0.0, /**/ 0.0, 0.0,
    ];
    let t = TwoFour::from_dense(&w, 2, 10, ValueType::F32).unwrap();
    assert_eq!(
        (t.groups(), t.row_value_words(), t.row_meta_words()),
        (3, 8, 4)
    );
    assert_eq!(t.meta, [0x44D, 0, 0, 0, 0x44C, 0, 0, 0]);
    assert_eq!(t.positions(0, 0), [1, 3]);
    let f: Vec<f32> = t.values.iter().map(|&v| f32::from_bits(v)).collect();
    assert_eq!(f[..8], [5.0, 7.0, 1.0, 0.0, 0.0, 2.0, 0.0, 0.0]);
    assert_eq!(f[8..14], [0.0, 9.0, 0.0, 0.0, 0.0, 0.0]);
    let t = TwoFour::from_dense(&w, 2, 10, ValueType::Int8).unwrap();
    assert_eq!(t.row_value_words(), 4);
    assert_eq!(
        t.values[0],
        91 | 127 << 8 | 18 << 16,
        "5/7·127 = 90.7, 1/7·127 = 18.1"
    );
    assert_eq!(t.scales, [7.0f32 / 127.0, 9.0 / 127.0].map(f32::to_bits));
}

#[test]
fn empty_matrices_store_nothing() {
    let (n, k) = (6, 9);
    let w = vec![0f32; n * k];
    let x = vec![1f32; 2 * k];
    for vt in [ValueType::F32, ValueType::F16] {
        let c = Csr::from_dense(&w, n, k, vt).unwrap();
        assert_eq!((c.nnz(), c.col_idx.len(), c.values.len()), (0, 0, 0));
        assert_eq!(c.to_dense(), w);
        assert_eq!(c.matmul_ref(&x, 2).unwrap(), vec![0.0; 2 * n]);
    }
    for vt in ALL {
        let b = Bsr::from_dense(&w, n, k, 4, 4, vt).unwrap();
        assert_eq!((b.blocks(), b.values.len()), (0, 0));
        assert_eq!(b.row_ptr, [0, 0, 0]);
        assert_eq!(b.to_dense(), w);
        assert_eq!(b.matmul_ref(&x, 2).unwrap(), vec![0.0; 2 * n]);
        let t = TwoFour::from_dense(&w, n, k, vt).unwrap();
        assert_eq!(t.to_dense(), w);
        assert_eq!(t.matmul_ref(&x, 2).unwrap(), vec![0.0; 2 * n]);
    }
}

#[test]
fn refusals_use_the_right_variant() {
    // Row 1, group 2 (columns 8..11) has three non-zeros.
    let mut w3 = vec![0f32; 2 * 11];
    w3[11 + 8..11 + 11].fill(1.0);
    match TwoFour::from_dense(&w3, 2, 11, ValueType::F16) {
        Err(Error::Input(InputError::Invalid(msg))) => {
            assert!(msg.contains("row 1, group 2"), "{msg}")
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    let ok = [1.0f32; 6];
    assert!(matches!(
        Csr::from_dense(&ok, 2, 4, ValueType::F32),
        Err(Error::Input(InputError::Shape(_)))
    ));
    assert!(matches!(
        Bsr::from_dense(&ok, 3, 3, 1, 4, ValueType::F32),
        Err(Error::Input(InputError::Shape(_)))
    ));
    assert!(matches!(
        TwoFour::from_dense(&ok, 1, 5, ValueType::F32),
        Err(Error::Input(InputError::Shape(_)))
    ));
    assert!(matches!(
        Csr::from_dense(&[], 0, 4, ValueType::F32),
        Err(Error::Input(InputError::Invalid(_)))
    ));
    assert!(matches!(
        Bsr::from_dense(&[], 4, 0, 1, 4, ValueType::F32),
        Err(Error::Input(InputError::Invalid(_)))
    ));
    assert!(matches!(
        TwoFour::from_dense(&[], 0, 0, ValueType::F32),
        Err(Error::Input(InputError::Invalid(_)))
    ));
    assert!(matches!(
        Csr::from_dense(&ok, 2, 3, ValueType::Int8),
        Err(Error::Input(InputError::Invalid(_)))
    ));
    assert!(matches!(
        Csr::from_dense(&ok, 2, 3, ValueType::Int4),
        Err(Error::Input(InputError::Invalid(_)))
    ));
    assert!(matches!(
        Bsr::from_dense(&ok, 2, 3, 0, 4, ValueType::F32),
        Err(Error::Input(InputError::Invalid(_)))
    ));
    let nan = [1.0, f32::NAN];
    assert!(matches!(
        Csr::from_dense(&nan, 1, 2, ValueType::F32),
        Err(Error::Input(InputError::Invalid(_)))
    ));
    let big = [1.0e6f32, 0.0];
    for vt in [ValueType::F16, ValueType::Int4] {
        assert!(matches!(
            Bsr::from_dense(&big, 1, 2, 1, 2, vt),
            Err(Error::Input(InputError::Invalid(_)))
        ));
        assert!(matches!(
            TwoFour::from_dense(&big, 1, 2, vt),
            Err(Error::Input(InputError::Invalid(_)))
        ));
    }
    assert!(Bsr::from_dense(&big, 1, 2, 1, 2, ValueType::Int8).is_ok());
    assert!(matches!(
        Csr::from_dense(&big, 1, 2, ValueType::F16),
        Err(Error::Input(InputError::Invalid(_)))
    ));
    let c = Csr::from_dense(&ok, 2, 3, ValueType::F32).unwrap();
    assert!(matches!(
        c.matmul_ref(&ok, 3),
        Err(Error::Input(InputError::Shape(_)))
    ));
}

/// Matrices built from dense ones validate; each kind of damage a file could carry is refused
/// with an error naming the array.
#[test]
fn validation_refuses_damaged_arrays() {
    use sparq::sparse::SparseWeights;
    let mut rng = rng("validation");
    let (n, k) = (9, 70);
    let w = two_four(&mut rng, n, k, 0.5);
    let csr = Csr::from_dense(&w, n, k, ValueType::F16).unwrap();
    let bsr = Bsr::from_dense(&w, n, k, 2, 32, ValueType::Int4).unwrap();
    let bsr8 = Bsr::from_dense(&w, n, k, 1, 16, ValueType::Int8).unwrap();
    let tf = TwoFour::from_dense(&w, n, k, ValueType::Int4).unwrap();
    for ok in [
        SparseWeights::from(csr.clone()),
        bsr.clone().into(),
        bsr8.clone().into(),
        tf.clone().into(),
    ] {
        ok.validate().unwrap();
    }
    let refused = |w: SparseWeights, what: &str| {
        let e = w.validate().expect_err(what).to_string();
        assert!(e.contains(what), "'{e}' does not name {what}");
    };
    let mut c = csr.clone();
    c.row_ptr[3] = c.row_ptr[2] - 1;
    refused(c.into(), "CSR row pointers");
    let mut c = csr.clone();
    c.row_ptr.pop();
    refused(c.into(), "CSR row pointers");
    let mut c = csr.clone();
    c.col_idx[0] = (c.col_idx[0] & 0xFFFF_0000) | k as u32;
    refused(c.into(), "CSR column indices");
    let mut c = csr.clone();
    c.values.truncate(c.values.len() - 1);
    refused(c.into(), "CSR values");
    let mut c = csr.clone();
    c.values[0] = 0x7C00; // +inf in the low half
    refused(c.into(), "CSR values");
    let mut c = csr;
    c.value_type = ValueType::Int8;
    refused(c.into(), "CSR");
    let mut b = bsr.clone();
    b.block_col[0] = 3; // k = 70 has 3 block columns of 32
    refused(b.into(), "BSR block columns");
    let mut b = bsr.clone();
    b.values.push(0);
    refused(b.into(), "BSR values");
    let mut b = bsr.clone();
    b.scales[0] = 0x7E00; // NaN in the low half
    refused(b.into(), "BSR scales");
    let mut b = bsr;
    let last = b.row_ptr.len() - 1;
    b.row_ptr[last] += 1;
    refused(b.into(), "BSR block columns");
    let mut b = bsr8.clone();
    b.scales.pop();
    refused(b.into(), "BSR scales");
    let mut b = bsr8;
    b.block_rows = usize::MAX / 2;
    refused(b.into(), "BSR");
    let mut t = tf.clone();
    t.meta[0] = (t.meta[0] & !0xF) | 0b0101; // both slots at position 1
    refused(t.into(), "2:4 positions");
    let mut t = tf.clone();
    t.meta.pop();
    refused(t.into(), "2:4 positions");
    let mut t = tf.clone();
    t.scales.push(0);
    refused(t.into(), "2:4 scales");
    let mut t = tf;
    t.n = 0;
    refused(t.into(), "matrix");
}
