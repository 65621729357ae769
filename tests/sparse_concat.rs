//! Stacking sparse and dense weights by rows (`SparseWeights::concat_rows`,
//! `LayerWeights::concat_rows`), as the decoder does for pruned Q/K/V and gate/up: the stack
//! decodes to the parts' rows exactly and computes what the parts compute, at awkward shapes
//! (odd row counts, so int4 scale pairs and f16 or u16 index pairs straddle two parts); and
//! the stacks that cannot be built are refused.

mod common;

use common::{random, rng};
use sparq::formats::{PackedWeights, WeightFormat};
use sparq::prune::{magnitude, n_of_m};
use sparq::sparse::{Bsr, Csr, SparseWeights, TwoFour, ValueType};
use sparq::weights::LayerWeights;

fn parts(
    r: &mut rand::rngs::StdRng,
    k: usize,
    rows: &[usize],
    make: &dyn Fn(&[f32], usize) -> SparseWeights,
) -> Vec<SparseWeights> {
    rows.iter().map(|&n| make(&random(r, n * k), n)).collect()
}

fn check_stack(ps: &[SparseWeights], what: &str) {
    let stacked = SparseWeights::concat_rows(&ps.iter().collect::<Vec<_>>()).unwrap();
    let want: Vec<f32> = ps.iter().flat_map(|p| p.to_dense()).collect();
    assert_eq!(
        stacked.n(),
        ps.iter().map(|p| p.n()).sum::<usize>(),
        "{what}"
    );
    assert_eq!(stacked.to_dense(), want, "{what}: decoded rows");
    // The stored arrays are well formed: the reference product runs on them.
    let x = vec![0.5f32; 2 * stacked.k()];
    let y = stacked.matmul_ref(&x, 2).unwrap();
    assert_eq!(y.len(), 2 * stacked.n(), "{what}");
}

#[test]
fn sparse_stacks_decode_to_their_parts() {
    let mut r = rng("sparse concat");
    for k in [4, 37, 130] {
        for rows in [&[1usize, 3, 2][..], &[5, 1], &[7]] {
            for vt in [
                ValueType::F32,
                ValueType::F16,
                ValueType::Int8,
                ValueType::Int4,
            ] {
                let tf = |w: &[f32], n: usize| -> SparseWeights {
                    let p = n_of_m(w, n, k, 2, 4).unwrap();
                    TwoFour::from_dense(&p.w, n, k, vt).unwrap().into()
                };
                check_stack(
                    &parts(&mut r, k, rows, &tf),
                    &format!("2:4 {vt:?} k {k} {rows:?}"),
                );
            }
            for vt in [ValueType::F32, ValueType::F16] {
                let csr = |w: &[f32], n: usize| -> SparseWeights {
                    let p = magnitude(w, n, k, 0.6).unwrap();
                    Csr::from_dense(&p.w, n, k, vt).unwrap().into()
                };
                check_stack(
                    &parts(&mut r, k, rows, &csr),
                    &format!("CSR {vt:?} k {k} {rows:?}"),
                );
            }
        }
    }
}

#[test]
fn stacks_that_cannot_be_built_are_refused() {
    let mut r = rng("sparse concat errors");
    let csr = |k: usize, vt| -> SparseWeights {
        Csr::from_dense(&random(&mut r.clone(), 3 * k), 3, k, vt)
            .unwrap()
            .into()
    };
    let a = csr(8, ValueType::F32);
    for b in [csr(12, ValueType::F32), csr(8, ValueType::F16)] {
        assert!(
            SparseWeights::concat_rows(&[&a, &b]).is_err(),
            "{}",
            b.name()
        );
    }
    let w = n_of_m(&random(&mut r, 24), 3, 8, 2, 4).unwrap().w;
    let tf: SparseWeights = TwoFour::from_dense(&w, 3, 8, ValueType::F32)
        .unwrap()
        .into();
    assert!(
        SparseWeights::concat_rows(&[&a, &tf]).is_err(),
        "CSR on 2:4"
    );
    let bsr: SparseWeights = Bsr::from_dense(&w, 3, 8, 1, 4, ValueType::F32)
        .unwrap()
        .into();
    assert!(SparseWeights::concat_rows(&[&bsr, &bsr]).is_err(), "BSR");
    assert!(SparseWeights::concat_rows(&[]).is_err(), "nothing");
    let dense: LayerWeights = PackedWeights::quantize(&w, 3, 8, WeightFormat::F32)
        .unwrap()
        .into();
    assert!(
        LayerWeights::concat_rows(vec![dense.clone(), a.into()]).is_err(),
        "mixed"
    );
    let two = LayerWeights::concat_rows(vec![dense.clone(), dense]).unwrap();
    assert_eq!(two.dequantize(), [w.clone(), w].concat(), "dense stack");
}
