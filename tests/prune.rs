//! Pruning: exact sparsity, determinism, pattern validity, shape bookkeeping, reports.

mod common;

use common::{random, rng};
use rand::Rng;
use rand::rngs::StdRng;
use sparq::Error;
use sparq::InputError;
use sparq::prune::{self, PruneMethod, PruneReport};
use sparq::reference::linear;

const SPARSITIES: [f64; 5] = [0.0, 0.5, 0.9, 0.99, 1.0];

/// Roughly Gaussian values (sum of four uniforms), never exactly zero in practice.
fn gaussian(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len)
        .map(|_| (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum::<f32>())
        .collect()
}

fn zeros(w: &[f32]) -> usize {
    w.iter().filter(|&&v| v == 0.0).count()
}

/// Relative Frobenius error computed directly, for comparison with the reports (0 for an
/// all-zero original, as the reports define it).
fn rel_error(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
    if den == 0.0 { 0.0 } else { (num / den).sqrt() }
}

fn assert_report(r: &PruneReport, original: &[f32], pruned: &[f32]) {
    assert_eq!(r.len, original.len());
    assert_eq!(r.zeros, zeros(pruned));
    assert!((r.sparsity - zeros(pruned) as f64 / original.len() as f64).abs() < 1e-15);
    let e = rel_error(original, pruned);
    assert!(
        (r.relative_error - e).abs() <= 1e-12 * e.max(1.0),
        "{} vs {e}",
        r.relative_error
    );
}

#[test]
fn magnitude_and_random_hit_the_exact_count() {
    let mut rng = rng("magnitude_and_random_hit_the_exact_count");
    let (n, k) = (37, 53);
    let w = gaussian(&mut rng, n * k);
    for s in SPARSITIES {
        let want = (s * (n * k) as f64).round() as usize;
        let m = prune::magnitude(&w, n, k, s).unwrap();
        assert_eq!(zeros(&m.w), want, "magnitude at {s}");
        assert_report(&m.report, &w, &m.w);
        // Kept weights are untouched and never smaller than a pruned one.
        let max_pruned = w
            .iter()
            .zip(&m.w)
            .filter(|p| *p.1 == 0.0)
            .map(|p| p.0.abs())
            .fold(0f32, f32::max);
        for (a, b) in w.iter().zip(&m.w) {
            assert!(*b == 0.0 || (a == b && a.abs() >= max_pruned));
        }
        let r = prune::random(&w, n, k, s, 7).unwrap();
        assert_eq!(zeros(&r.w), want, "random at {s}");
        assert_report(&r.report, &w, &r.w);
        assert!(w.iter().zip(&r.w).all(|(a, b)| *b == 0.0 || a == b));
    }
}

#[test]
fn magnitude_breaks_ties_by_index() {
    let w = [1.0, -1.0, 1.0, 2.0, 1.0, -1.0];
    let p = prune::magnitude(&w, 2, 3, 0.5).unwrap();
    assert_eq!(p.w, [0.0, 0.0, 0.0, 2.0, 1.0, -1.0]);
}

#[test]
fn global_magnitude_keeps_the_globally_largest() {
    let mut rng = rng("global_magnitude_keeps_the_globally_largest");
    let shapes = [(16, 24), (9, 31), (40, 8)];
    let scales = [1.0f32, 0.1, 3.0];
    let ws: Vec<Vec<f32>> = shapes
        .iter()
        .zip(scales)
        .map(|(&(n, k), s)| gaussian(&mut rng, n * k).iter().map(|v| v * s).collect())
        .collect();
    let layers: Vec<(&[f32], usize, usize)> = ws
        .iter()
        .zip(shapes)
        .map(|(w, (n, k))| (w.as_slice(), n, k))
        .collect();
    let total: usize = ws.iter().map(Vec::len).sum();
    for s in SPARSITIES {
        let g = prune::magnitude_global(&layers, s).unwrap();
        let all: Vec<(f32, f32)> = ws
            .iter()
            .zip(&g.layers)
            .flat_map(|(w, p)| w.iter().copied().zip(p.w.iter().copied()))
            .collect();
        assert_eq!(
            all.iter().filter(|p| p.1 == 0.0).count(),
            (s * total as f64).round() as usize
        );
        let max_pruned = all
            .iter()
            .filter(|p| p.1 == 0.0)
            .map(|p| p.0.abs())
            .fold(0f32, f32::max);
        let min_kept = all
            .iter()
            .filter(|p| p.1 != 0.0)
            .map(|p| p.0.abs())
            .fold(f32::INFINITY, f32::min);
        assert!(
            max_pruned <= min_kept,
            "at {s}: pruned {max_pruned} > kept {min_kept}"
        );
        // The small-scale layer loses more than the large-scale one.
        if s == 0.5 {
            assert!(g.layers[1].report.sparsity > g.layers[2].report.sparsity);
        }
        let (orig, pruned): (Vec<f32>, Vec<f32>) = all.into_iter().unzip();
        assert_report(&g.report, &orig, &pruned);
        for (w, p) in ws.iter().zip(&g.layers) {
            assert_report(&p.report, w, &p.w);
        }
    }
}

#[test]
fn random_is_seeded() {
    let mut rng = rng("random_is_seeded");
    let w = random(&mut rng, 20 * 30);
    let a = prune::random(&w, 20, 30, 0.5, 1).unwrap();
    let b = prune::random(&w, 20, 30, 0.5, 1).unwrap();
    let c = prune::random(&w, 20, 30, 0.5, 2).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.w, c.w);
}

#[test]
fn n_of_m_patterns_are_valid_and_keep_the_largest() {
    let mut rng = rng("n_of_m_patterns_are_valid_and_keep_the_largest");
    for (keep, group) in [(2, 4), (4, 8), (1, 3), (3, 16)] {
        for (n, k) in [(5, 16), (7, 13), (3, 1), (4, 29)] {
            let mut w = gaussian(&mut rng, n * k);
            // Some pre-existing zeros so that some groups start below N non-zeros.
            for v in w.iter_mut() {
                if rng.random_bool(0.3) {
                    *v = 0.0;
                }
            }
            let p = prune::n_of_m(&w, n, k, keep, group).unwrap();
            assert_report(&p.report, &w, &p.w);
            for r in 0..n {
                for g0 in (0..k).step_by(group) {
                    let g1 = (g0 + group).min(k);
                    let (orig, got) = (&w[r * k + g0..r * k + g1], &p.w[r * k + g0..r * k + g1]);
                    let had = orig.iter().filter(|v| **v != 0.0).count();
                    assert_eq!(
                        zeros(got),
                        got.len() - had.min(keep),
                        "{keep}:{group} {n}×{k}"
                    );
                    let min_kept = got
                        .iter()
                        .filter(|v| **v != 0.0)
                        .map(|v| v.abs())
                        .fold(f32::INFINITY, f32::min);
                    for (a, b) in orig.iter().zip(got) {
                        assert!(*b == 0.0 || a == b);
                        assert!(*b != 0.0 || a.abs() <= min_kept);
                    }
                }
            }
        }
    }
    assert!(matches!(
        prune::n_of_m(&[1.0; 8], 2, 4, 4, 4),
        Err(Error::Input(InputError::Invalid(_)))
    ));
    assert!(matches!(
        prune::n_of_m(&[1.0; 8], 2, 4, 0, 4),
        Err(Error::Input(InputError::Invalid(_)))
    ));
}

#[test]
fn structured_pruning_shrinks_and_maps_indices() {
    let mut rng = rng("structured_pruning_shrinks_and_maps_indices");
    let (n, k) = (12, 10);
    let w = gaussian(&mut rng, n * k);
    let row_norm = |r: usize| {
        w[r * k..(r + 1) * k]
            .iter()
            .map(|v| (*v as f64).powi(2))
            .sum::<f64>()
    };
    let col_norm = |c: usize| (0..n).map(|r| (w[r * k + c] as f64).powi(2)).sum::<f64>();
    for s in SPARSITIES {
        let p = prune::rows_l2(&w, n, k, s).unwrap();
        let keep = n - (s * n as f64).round() as usize;
        assert_eq!(
            (p.n, p.k, p.w.len(), p.rows.len()),
            (keep, k, keep * k, keep)
        );
        assert!(p.rows.windows(2).all(|x| x[0] < x[1]));
        for (i, &r) in p.rows.iter().enumerate() {
            assert_eq!(&p.w[i * k..(i + 1) * k], &w[r * k..(r + 1) * k]);
        }
        let min_kept = p
            .rows
            .iter()
            .map(|&r| row_norm(r))
            .fold(f64::INFINITY, f64::min);
        assert!(
            (0..n)
                .filter(|r| !p.rows.contains(r))
                .all(|r| row_norm(r) <= min_kept)
        );
        assert_report(&p.report, &w, &p.expand(n, k));

        let p = prune::columns_l2(&w, n, k, s).unwrap();
        let keep = k - (s * k as f64).round() as usize;
        assert_eq!((p.n, p.k, p.cols.len()), (n, keep, keep));
        for r in 0..n {
            for (j, &c) in p.cols.iter().enumerate() {
                assert_eq!(p.w[r * keep + j], w[r * k + c]);
            }
        }
        let min_kept = p
            .cols
            .iter()
            .map(|&c| col_norm(c))
            .fold(f64::INFINITY, f64::min);
        assert!(
            (0..k)
                .filter(|c| !p.cols.contains(c))
                .all(|c| col_norm(c) <= min_kept)
        );
        assert_report(&p.report, &w, &p.expand(n, k));
    }
}

#[test]
fn structured_row_pruning_keeps_the_next_layer_consistent() {
    let mut rng = rng("structured_row_pruning_keeps_the_next_layer_consistent");
    let (m, k, n1, n2) = (3, 9, 14, 5);
    let x = random(&mut rng, m * k);
    let w1 = gaussian(&mut rng, n1 * k);
    let b1 = random(&mut rng, n1);
    let w2 = gaussian(&mut rng, n2 * n1);
    let p = prune::rows_l2(&w1, n1, k, 0.4).unwrap();
    let b1p = prune::select_rows(&b1, n1, 1, &p.rows).unwrap();
    let w2p = prune::select_columns(&w2, n2, n1, &p.rows).unwrap();
    // Small network with the pruned layers vs the full one with the dropped rows zeroed.
    let hidden = |w: &[f32], b: &[f32], n: usize| -> Vec<f32> {
        linear(&x, w, Some(b), m, n, k)
            .iter()
            .map(|v| *v as f32)
            .collect()
    };
    let small = linear(&hidden(&p.w, &b1p, p.n), &w2p, None, m, n2, p.n);
    let mut b1z = vec![0f32; n1];
    p.rows.iter().for_each(|&r| b1z[r] = b1[r]);
    let full = linear(&hidden(&p.expand(n1, k), &b1z, n1), &w2, None, m, n2, n1);
    for (a, b) in small.iter().zip(&full) {
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }
    assert!(matches!(
        prune::select_rows(&b1, n1, 1, &[n1]),
        Err(Error::Input(InputError::Invalid(_)))
    ));
    assert!(matches!(
        prune::select_columns(&w2, n2, n1 + 1, &[0]),
        Err(Error::Input(InputError::Shape(_)))
    ));
}

#[test]
fn magnitude_beats_random() {
    let mut rng = rng("magnitude_beats_random");
    let (n, k) = (64, 96);
    let w = gaussian(&mut rng, n * k);
    for s in [0.3, 0.5, 0.9] {
        let m = prune::magnitude(&w, n, k, s).unwrap().report.relative_error;
        let r = prune::random(&w, n, k, s, 3).unwrap().report.relative_error;
        assert!(m < r, "at {s}: magnitude {m} ≥ random {r}");
    }
}

#[test]
fn method_enum_matches_the_functions() {
    let mut rng = rng("method_enum_matches_the_functions");
    let (n, k) = (8, 12);
    let w = gaussian(&mut rng, n * k);
    let cases = [
        (
            PruneMethod::Magnitude { sparsity: 0.6 },
            prune::magnitude(&w, n, k, 0.6),
        ),
        (
            PruneMethod::Random {
                sparsity: 0.6,
                seed: 9,
            },
            prune::random(&w, n, k, 0.6, 9),
        ),
        (
            PruneMethod::NOfM { n: 2, m: 4 },
            prune::n_of_m(&w, n, k, 2, 4),
        ),
        (
            PruneMethod::Rows { sparsity: 0.25 },
            prune::rows_l2(&w, n, k, 0.25),
        ),
        (
            PruneMethod::Columns { sparsity: 0.25 },
            prune::columns_l2(&w, n, k, 0.25),
        ),
    ];
    for (method, direct) in cases {
        assert_eq!(
            prune::prune(&w, n, k, method).unwrap(),
            direct.unwrap(),
            "{method:?}"
        );
    }
}

#[test]
fn bad_inputs_are_refused() {
    let w = [1.0f32; 6];
    for s in [-0.1, 1.1, f64::NAN] {
        assert!(
            matches!(
                prune::magnitude(&w, 2, 3, s),
                Err(Error::Input(InputError::Invalid(_)))
            ),
            "{s}"
        );
        assert!(
            matches!(
                prune::rows_l2(&w, 2, 3, s),
                Err(Error::Input(InputError::Invalid(_)))
            ),
            "{s}"
        );
    }
    assert!(matches!(
        prune::magnitude(&w, 2, 4, 0.5),
        Err(Error::Input(InputError::Shape(_)))
    ));
    assert!(matches!(
        prune::random(&w, 0, 3, 0.5, 1),
        Err(Error::Input(InputError::Invalid(_)))
    ));
    assert!(matches!(
        prune::magnitude(&[f32::NAN, 1.0], 1, 2, 0.5),
        Err(Error::Input(InputError::Invalid(_)))
    ));
    assert!(matches!(
        prune::magnitude_global(&[(&w, 3, 3)], 0.5),
        Err(Error::Input(InputError::Shape(_)))
    ));
}
