//! GGUF tensors mapped onto sparq formats (`gguf::packed_weights`) decode to exactly what
//! the reader's `dequantize` gives: synthetic tensors of every supported type with awkward
//! scales (zero, negative zero, subnormal, a zero scale under a non-zero minimum), ternary
//! blocks of every byte value, and every 2-D tensor of the SmolLM2 model when it is present.
//! No GPU needed.

mod common;

use common::rng;
use rand::Rng;
use rand::rngs::StdRng;
use sparq::formats::WeightFormat;
use sparq::gguf::writer::Writer;
use sparq::gguf::{GgmlType, Gguf, packed_weights};
use sparq::{Error, InputError};

/// A finite half: mostly moderate, sometimes ±0 or subnormal.
fn half(rng: &mut StdRng) -> u16 {
    let sign: u16 = rng.random_range(0..2) << 15;
    match rng.random_range(0..10) {
        0 => sign,
        1 => sign | rng.random_range(1..1024),
        _ => sign | (rng.random_range(1..=29) << 10) | rng.random_range(0..1024),
    }
}

/// Random bytes of a `rows × k` tensor of `ty`.
fn tensor_bytes(rng: &mut StdRng, ty: GgmlType, k: usize, rows: usize) -> Vec<u8> {
    let n = k * rows;
    let mut b = Vec::new();
    match ty {
        GgmlType::F32 => (0..n).for_each(|_| {
            let v: f32 = rng.random_range(-3.0..3.0) * 2f32.powi(rng.random_range(-30..30));
            b.extend_from_slice(&v.to_le_bytes());
        }),
        GgmlType::F16 | GgmlType::BF16 => (0..n).for_each(|_| {
            let h = if ty == GgmlType::F16 {
                half(rng)
            } else {
                (rng.random_range(-3.0f32..3.0).to_bits() >> 16) as u16
            };
            b.extend_from_slice(&h.to_le_bytes());
        }),
        GgmlType::Q8_0 => (0..n / 32).for_each(|_| {
            b.extend_from_slice(&half(rng).to_le_bytes());
            b.extend((0..32).map(|_| rng.random::<u8>()));
        }),
        GgmlType::Q4_0 | GgmlType::Q4_1 => (0..n / 32).for_each(|i| {
            let d = if i % 7 == 3 { 0 } else { half(rng) };
            b.extend_from_slice(&d.to_le_bytes());
            if ty == GgmlType::Q4_1 {
                b.extend_from_slice(&half(rng).to_le_bytes());
            }
            b.extend((0..16).map(|_| rng.random::<u8>()));
        }),
        // Random trits (codes 0..3) in ggml's layouts, a random scale per block.
        GgmlType::TQ2_0 => (0..n / 256).for_each(|_| {
            let trits: Vec<u8> = (0..256).map(|_| rng.random_range(0..3)).collect();
            let mut qs = [0u8; 64];
            for (e, &t) in trits.iter().enumerate() {
                qs[32 * (e / 128) + e % 32] |= t << (2 * ((e % 128) / 32));
            }
            b.extend_from_slice(&qs);
            b.extend_from_slice(&half(rng).to_le_bytes());
        }),
        // Any byte is five (or, in `qh`, four) valid trits: random bytes test every one.
        GgmlType::TQ1_0 => (0..n / 256).for_each(|_| {
            b.extend((0..52).map(|_| rng.random::<u8>()));
            b.extend_from_slice(&half(rng).to_le_bytes());
        }),
        t => panic!("no generator for {t}"),
    }
    b
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn every_supported_type_maps_bit_for_bit() {
    let mut rng = rng("every_supported_type_maps_bit_for_bit");
    let cases = [
        (GgmlType::F32, WeightFormat::F32, &[1usize, 3, 7, 33][..]),
        (GgmlType::F16, WeightFormat::F16, &[1, 3, 7, 33]),
        (GgmlType::BF16, WeightFormat::F32, &[1, 3, 7, 33]),
        (GgmlType::Q8_0, WeightFormat::Int8G32, &[32, 64, 96, 320]),
        (
            GgmlType::Q4_0,
            WeightFormat::Int4 {
                group: 32,
                asymmetric: false,
            },
            &[32, 64, 96, 320],
        ),
        (
            GgmlType::Q4_1,
            WeightFormat::Int4Min { group: 32 },
            &[32, 64, 96, 320],
        ),
        (
            GgmlType::TQ1_0,
            WeightFormat::Ternary { group: 256 },
            &[256, 512, 768],
        ),
        (
            GgmlType::TQ2_0,
            WeightFormat::Ternary { group: 256 },
            &[256, 512, 768],
        ),
    ];
    let mut w = Writer::new();
    let mut names = Vec::new();
    for (ty, format, ks) in cases {
        for &k in ks {
            for rows in [1usize, 3, 8] {
                let name = format!("{ty}.{k}.{rows}");
                w.tensor(
                    &name,
                    &[k as u64, rows as u64],
                    ty,
                    tensor_bytes(&mut rng, ty, k, rows),
                );
                names.push((name, format, rows, k));
            }
        }
        // A vector is one row.
        let name = format!("{ty}.vector");
        w.tensor(
            &name,
            &[ks[1] as u64],
            ty,
            tensor_bytes(&mut rng, ty, ks[1], 1),
        );
        names.push((name, format, 1, ks[1]));
    }
    let file = Gguf::from_bytes(w.to_bytes(), "test.gguf").unwrap();
    for (name, format, n, k) in names {
        let p = packed_weights(&file, &name).unwrap();
        assert_eq!((p.format, p.n, p.k), (format, n, k), "{name}");
        assert_eq!(p.data.len(), n * p.row_words(), "{name}");
        let want = file.dequantize(&name).unwrap();
        assert_eq!(bits(&p.dequantize()), bits(&want), "{name}");
        // Row slices (what Linear splits across bindings) keep the values too.
        if n > 1 {
            let s = p.rows(1, n);
            assert_eq!(bits(&s.dequantize()), bits(&want[k..]), "{name} rows 1..");
        }
    }
}

#[test]
fn other_types_and_shapes_are_refused() {
    let mut w = Writer::new();
    w.tensor(
        "blk.0.ffn_down.weight",
        &[256, 2],
        GgmlType::Q4_K,
        vec![0; 2 * 144],
    );
    w.tensor("cube", &[4, 2, 2], GgmlType::F32, vec![0; 64]);
    let file = Gguf::from_bytes(w.to_bytes(), "test.gguf").unwrap();
    let e = packed_weights(&file, "blk.0.ffn_down.weight").unwrap_err();
    assert!(
        matches!(&e, Error::Input(InputError::Gguf(m))
            if m.contains("unsupported type Q4_K in tensor 'blk.0.ffn_down.weight'")),
        "{e:?}"
    );
    let e = packed_weights(&file, "cube").unwrap_err();
    assert!(
        matches!(&e, Error::Input(InputError::Gguf(m)) if m.contains("3 dimensions")),
        "{e:?}"
    );
    let e = packed_weights(&file, "missing").unwrap_err();
    assert!(matches!(&e, Error::Input(InputError::Gguf(_))), "{e:?}");
    // A TQ2_0 code 3 is no trit: refused, naming the element (row 1, element 5 of its row).
    let mut w = Writer::new();
    let mut bytes = vec![0x55u8; 2 * 66];
    bytes[66 + 5] = 0x57;
    w.tensor("tq2", &[256, 2], GgmlType::TQ2_0, bytes);
    let file = Gguf::from_bytes(w.to_bytes(), "test.gguf").unwrap();
    let e = packed_weights(&file, "tq2").unwrap_err();
    assert!(
        matches!(&e, Error::Input(InputError::Gguf(m)) if m.contains("element 261 has code 3")),
        "{e:?}"
    );
    // Ternary tensors whose data stops short of their two blocks: the file is refused.
    for ty in [GgmlType::TQ1_0, GgmlType::TQ2_0] {
        let mut w = Writer::new();
        let one_block = vec![0x55u8; ty.block_bytes() as usize];
        w.tensor("short", &[256, 2], ty, one_block);
        match Gguf::from_bytes(w.to_bytes(), "test.gguf") {
            Err(Error::Input(InputError::Gguf(_))) => {}
            Err(e) => panic!("{ty}: {e:?}"),
            Ok(_) => panic!("{ty}: a truncated tensor was accepted"),
        }
    }
    assert!(matches!(&e, Error::Input(InputError::Gguf(_))), "{e:?}");
}

#[test]
fn smollm2_tensors_map_bit_for_bit() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models/SmolLM2-135M-Instruct/model.gguf");
    if !path.exists() {
        eprintln!("skipped: {} is absent", path.display());
        return;
    }
    let file = Gguf::open(&path).unwrap();
    let mut checked = 0;
    for t in file.tensors().iter().filter(|t| t.dims.len() == 2) {
        let p = packed_weights(&file, &t.name).unwrap();
        let want = file.dequantize(&t.name).unwrap();
        assert_eq!((p.n, p.k), (t.rows(), t.row_len()), "{}", t.name);
        assert!(
            bits(&p.dequantize()) == bits(&want),
            "{}: values differ",
            t.name
        );
        checked += 1;
    }
    assert!(checked >= 2, "only {checked} 2-D tensors");
    eprintln!("{checked} tensors of {} match", path.display());
    // The formats the decoder gets: Q4_1 linears, the Q8_0 token embedding.
    let embd = packed_weights(&file, "token_embd.weight").unwrap();
    assert_eq!(embd.format, WeightFormat::Int8G32);
}
