//! The GGUF reader: round trips of every supported tensor type and metadata value type
//! through the test writer, against values computed here independently of the reader;
//! hostile files (truncated, mutated, huge counts, bad offsets) as typed errors, never a
//! panic; and, when set-up has fetched it, the real SmolLM2-135M file.

mod common;

use rand::{Rng, rngs::StdRng};
use sparq::gguf::writer::Writer;
use sparq::gguf::{
    Array, BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockTQ1_0, BlockTQ2_0, GgmlType, Gguf, Value,
};
use sparq::{Error, InputError};

const SUPPORTED: [GgmlType; 8] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::TQ1_0,
    GgmlType::TQ2_0,
];

/// IEEE half to f32 from its fields, written out here so the test does not share the
/// reader's conversion.
fn half_to_f32(bits: u16) -> f32 {
    let sign = if bits >> 15 == 1 { -1.0f64 } else { 1.0 };
    let exp = ((bits >> 10) & 0x1F) as i32;
    let man = (bits & 0x3FF) as f64;
    let mag = match exp {
        0 => man * 2f64.powi(-24),
        31 if man == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + man / 1024.0) * 2f64.powi(e - 15),
    };
    (sign * mag) as f32
}

/// A finite half of moderate size (exponent 5..=20, so products stay normal).
fn random_half(rng: &mut StdRng) -> u16 {
    let sign: u16 = rng.random_range(0..2);
    let exp: u16 = rng.random_range(5..=20);
    let man: u16 = rng.random_range(0..1024);
    (sign << 15) | (exp << 10) | man
}

/// Raw bytes of a `rows × row_len` tensor of `ty` and the values they stand for.
fn random_tensor(
    rng: &mut StdRng,
    ty: GgmlType,
    row_len: usize,
    rows: usize,
) -> (Vec<u8>, Vec<f32>) {
    let n = row_len * rows;
    let mut bytes = Vec::new();
    let mut values = Vec::with_capacity(n);
    match ty {
        GgmlType::F32 => {
            for _ in 0..n {
                let v: f32 = rng.random_range(-100.0..100.0);
                bytes.extend_from_slice(&v.to_le_bytes());
                values.push(v);
            }
        }
        GgmlType::F16 => {
            for _ in 0..n {
                let h = random_half(rng);
                bytes.extend_from_slice(&h.to_le_bytes());
                values.push(half_to_f32(h));
            }
        }
        GgmlType::BF16 => {
            for _ in 0..n {
                let v: f32 = rng.random_range(-100.0..100.0);
                let b = (v.to_bits() >> 16) as u16;
                bytes.extend_from_slice(&b.to_le_bytes());
                values.push(f32::from_bits((b as u32) << 16));
            }
        }
        GgmlType::Q8_0 => {
            for _ in 0..n / 32 {
                let d = random_half(rng);
                bytes.extend_from_slice(&d.to_le_bytes());
                for _ in 0..32 {
                    let q: i8 = rng.random();
                    bytes.push(q as u8);
                    values.push(q as f32 * half_to_f32(d));
                }
            }
        }
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            for _ in 0..n / 32 {
                let d = random_half(rng);
                let m = random_half(rng);
                bytes.extend_from_slice(&d.to_le_bytes());
                if ty == GgmlType::Q4_1 {
                    bytes.extend_from_slice(&m.to_le_bytes());
                }
                let q: Vec<u8> = (0..32).map(|_| rng.random_range(0..16)).collect();
                // Byte j: element j in the low nibble, element j + 16 in the high one.
                bytes.extend((0..16).map(|j| q[j] | (q[j + 16] << 4)));
                let (d, m) = (half_to_f32(d), half_to_f32(m));
                for &q in &q {
                    values.push(if ty == GgmlType::Q4_0 {
                        (q as f32 - 8.0) * d
                    } else {
                        q as f32 * d + m
                    });
                }
            }
        }
        GgmlType::TQ1_0 | GgmlType::TQ2_0 => {
            for _ in 0..n / 256 {
                let trits: Vec<u8> = (0..256).map(|_| rng.random_range(0..3)).collect();
                let d = random_half(rng);
                if ty == GgmlType::TQ2_0 {
                    bytes.extend(tq2_codes(&trits));
                } else {
                    bytes.extend(tq1_codes(&trits));
                }
                bytes.extend_from_slice(&d.to_le_bytes());
                let d = half_to_f32(d);
                values.extend(trits.iter().map(|&t| (t as f32 - 1.0) * d));
            }
        }
        t => panic!("no generator for {t}"),
    }
    (bytes, values)
}

/// TQ2_0's 64 code bytes for 256 trits (0, 1, 2): element `e` at bits `2 · ((e % 128) / 32)`
/// of byte `32 · (e / 128) + e % 32`, as ggml's `block_tq2_0` lays them out.
fn tq2_codes(trits: &[u8]) -> Vec<u8> {
    let mut qs = vec![0u8; 64];
    for (e, &t) in trits.iter().enumerate() {
        qs[32 * (e / 128) + e % 32] |= t << (2 * ((e % 128) / 32));
    }
    qs
}

/// TQ1_0's 48 `qs` and 4 `qh` bytes for 256 trits: bytes of five base-3 digits (most
/// significant first; `qh`'s fifth digit 0) stored as `⌈v · 256 / 243⌉`; elements 0..160 are
/// digit `e / 32` of byte `e % 32`, 160..240 digit `(e − 160) / 16` of byte
/// `32 + (e − 160) % 16`, 240..256 digit `(e − 240) / 4` of `qh[(e − 240) % 4]`.
fn tq1_codes(trits: &[u8]) -> Vec<u8> {
    let byte = |digits: &mut dyn Iterator<Item = u8>| -> u8 {
        let mut v = 0u32;
        for _ in 0..5 {
            v = 3 * v + digits.next().map_or(0, |t| t as u32);
        }
        (v * 256).div_ceil(243) as u8
    };
    let mut out = Vec::with_capacity(52);
    out.extend((0..32).map(|m| byte(&mut (0..5).map(|j| trits[32 * j + m]))));
    out.extend((0..16).map(|m| byte(&mut (0..5).map(|j| trits[160 + 16 * j + m]))));
    out.extend((0..4).map(|m| byte(&mut (0..4).map(|j| trits[240 + 4 * j + m]))));
    out
}

fn assert_same(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "{what}: element {i}: {g} vs {w}");
    }
}

fn parse(bytes: Vec<u8>) -> sparq::Result<Gguf> {
    Gguf::from_bytes(bytes, "test.gguf")
}

/// The message of an input error from the GGUF reader (anything else fails the test).
fn gguf_err(r: sparq::Result<Gguf>) -> String {
    match r {
        Err(Error::Input(InputError::Gguf(m))) => m,
        Err(e) => panic!("expected a GGUF input error, got {e:?}"),
        Ok(_) => panic!("expected an error, the file was accepted"),
    }
}

fn expect_err(r: sparq::Result<Gguf>, needle: &str) {
    let m = gguf_err(r);
    assert!(m.contains(needle), "error {m:?} does not say {needle:?}");
}

#[test]
fn every_type_round_trips_through_writer_and_reader() {
    let mut rng = common::rng("gguf_round_trip");
    // (row length, rows): single rows, several rows, lengths of one and of several blocks.
    let shapes = [(32, 1), (64, 3), (96, 5), (256, 2)];
    let odd = [(1, 1), (7, 1), (13, 3), (33, 2)];
    let tq_shapes = [(256, 1), (512, 3), (768, 2)];
    for version in [2, 3] {
        for align in [32, 1, 64] {
            let mut w = Writer::new();
            w.version = version;
            w.alignment = align;
            let mut expected = Vec::new();
            for ty in SUPPORTED {
                let plain = ty.block_len() == 1;
                let shapes = if ty.block_len() == 256 {
                    &tq_shapes[..]
                } else {
                    &shapes[..]
                };
                for &(row_len, rows) in shapes.iter().chain(if plain { &odd[..] } else { &[] }) {
                    let (bytes, values) = random_tensor(&mut rng, ty, row_len, rows);
                    let name = format!("{ty}.{row_len}x{rows}");
                    let dims: Vec<u64> = if rows == 1 {
                        vec![row_len as u64]
                    } else {
                        vec![row_len as u64, rows as u64]
                    };
                    w.tensor(&name, &dims, ty, bytes.clone());
                    expected.push((name, ty, row_len, rows, bytes, values));
                }
            }
            let file = parse(w.to_bytes()).unwrap();
            assert_eq!(file.version(), version);
            assert_eq!(file.alignment(), align);
            assert_eq!(file.tensors().len(), expected.len());
            for (name, ty, row_len, rows, bytes, values) in &expected {
                let what = format!("v{version} align {align} {name}");
                let t = file.tensor(name).unwrap();
                assert_eq!(t.ty, *ty, "{what}");
                assert_eq!(t.row_len(), *row_len, "{what}");
                assert_eq!(t.rows(), *rows, "{what}");
                let shape = if *rows == 1 {
                    vec![*row_len]
                } else {
                    vec![*rows, *row_len]
                };
                assert_eq!(t.shape(), shape, "{what}");
                assert_eq!(t.offset % align as u64, 0, "{what}");
                assert_eq!(file.tensor_bytes(name).unwrap(), &bytes[..], "{what}");
                assert_same(&file.dequantize(name).unwrap(), values, &what);
            }
        }
    }
}

#[test]
fn raw_blocks_are_the_file_bytes_and_give_the_same_values() {
    let mut rng = common::rng("gguf_raw_blocks");
    let mut w = Writer::new();
    let mut want = Vec::new();
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1] {
        let (bytes, values) = random_tensor(&mut rng, ty, 64, 3);
        w.tensor(ty.name(), &[64, 3], ty, bytes.clone());
        want.push((ty, bytes, values));
    }
    let file = parse(w.to_bytes()).unwrap();
    for (ty, bytes, values) in &want {
        let name = ty.name();
        let (raw, vals): (&[u8], Vec<f32>) = match ty {
            GgmlType::Q8_0 => {
                let b = file.blocks::<BlockQ8_0>(name).unwrap();
                (
                    bytemuck::cast_slice(b),
                    b.iter().flat_map(|b| b.values()).collect(),
                )
            }
            GgmlType::Q4_0 => {
                let b = file.blocks::<BlockQ4_0>(name).unwrap();
                (
                    bytemuck::cast_slice(b),
                    b.iter().flat_map(|b| b.values()).collect(),
                )
            }
            _ => {
                let b = file.blocks::<BlockQ4_1>(name).unwrap();
                (
                    bytemuck::cast_slice(b),
                    b.iter().flat_map(|b| b.values()).collect(),
                )
            }
        };
        assert_eq!(
            raw.len() / ty.block_bytes() as usize,
            6,
            "{name}: 2 blocks per row × 3 rows"
        );
        assert_eq!(raw, &bytes[..], "{name}");
        assert_same(&vals, values, name);
    }
    let m = file.blocks::<BlockQ4_1>("Q8_0").unwrap_err().to_string();
    assert!(m.contains("'Q8_0' is Q8_0, not Q4_1"), "{m}");
}

#[test]
fn many_tensors_in_one_file() {
    let mut rng = common::rng("gguf_many_tensors");
    let mut w = Writer::new();
    let mut want = Vec::new();
    let types: Vec<GgmlType> = SUPPORTED
        .into_iter()
        .filter(|t| t.block_len() <= 32)
        .collect();
    for i in 0..300 {
        let ty = types[i % types.len()];
        let rows = 1 + i % 4;
        let (bytes, values) = random_tensor(&mut rng, ty, 32, rows);
        let name = format!("blk.{i}.weight");
        w.tensor(&name, &[32, rows as u64], ty, bytes);
        want.push((name, values));
    }
    let file = parse(w.to_bytes()).unwrap();
    assert_eq!(file.tensors().len(), 300);
    for (name, values) in &want {
        assert_same(&file.dequantize(name).unwrap(), values, name);
    }
}

/// Ternary blocks seen raw give the trits they were written from; a TQ2_0 code 3 (no trit)
/// is refused by the reader, naming the element.
#[test]
fn ternary_blocks_give_their_trits() {
    let mut rng = common::rng("gguf_ternary_blocks");
    let trits: Vec<u8> = (0..512).map(|_| rng.random_range(0..3)).collect();
    let d = random_half(&mut rng);
    let block = |ty: GgmlType, t: &[u8]| -> Vec<u8> {
        let mut b = if ty == GgmlType::TQ1_0 {
            tq1_codes(t)
        } else {
            tq2_codes(t)
        };
        b.extend_from_slice(&d.to_le_bytes());
        b
    };
    let mut w = Writer::new();
    for ty in [GgmlType::TQ1_0, GgmlType::TQ2_0] {
        let bytes = [block(ty, &trits[..256]), block(ty, &trits[256..])].concat();
        w.tensor(ty.name(), &[512], ty, bytes);
    }
    // Element 300 (second block, element 44) holds code 3.
    let mut bad = [
        block(GgmlType::TQ2_0, &trits[..256]),
        block(GgmlType::TQ2_0, &trits[256..]),
    ]
    .concat();
    bad[66 + 12] |= 3 << 2;
    w.tensor("bad", &[512], GgmlType::TQ2_0, bad);
    let file = parse(w.to_bytes()).unwrap();
    let tq1 = file.blocks::<BlockTQ1_0>("TQ1_0").unwrap();
    let tq2 = file.blocks::<BlockTQ2_0>("TQ2_0").unwrap();
    let got1: Vec<u8> = tq1.iter().flat_map(|b| b.codes()).collect();
    let got2: Vec<u8> = tq2.iter().flat_map(|b| b.codes().unwrap()).collect();
    assert_eq!(got1, trits, "TQ1_0");
    assert_eq!(got2, trits, "TQ2_0");
    assert_eq!(tq1[1].scale().to_bits(), half_to_f32(d).to_bits());
    assert_eq!(
        file.blocks::<BlockTQ2_0>("bad").unwrap()[1].codes(),
        Err(44)
    );
    let e = file.dequantize("bad").unwrap_err();
    assert!(matches!(e, Error::Input(InputError::Gguf(_))), "{e:?}");
    assert!(e.to_string().contains("element 300 has code 3"), "{e}");
}

#[test]
fn block_types_refuse_rows_that_are_not_whole_blocks() {
    let cases = [
        (GgmlType::TQ1_0, &[32u64, 128, 320][..], 256),
        (GgmlType::TQ2_0, &[32, 128, 320], 256),
        (GgmlType::Q8_0, &[1, 16, 33, 48], 32),
        (GgmlType::Q4_0, &[1, 16, 33, 48], 32),
        (GgmlType::Q4_1, &[1, 16, 33, 48], 32),
    ];
    for (ty, row_lens, block) in cases {
        for &row_len in row_lens {
            let mut w = Writer::new();
            w.tensor(
                "w",
                &[row_len, 2],
                ty,
                vec![0; ty.block_bytes() as usize * 4],
            );
            expect_err(
                parse(w.to_bytes()),
                &format!(
                    "'w': its row length {row_len} is not a multiple of {ty}'s block of {block}"
                ),
            );
        }
    }
}

#[test]
fn other_ggml_types_are_read_as_infos_but_not_as_values() {
    let mut w = Writer::new();
    w.tensor(
        "blk.0.ffn_down.weight",
        &[256, 2],
        GgmlType::Q4_K,
        vec![0; 2 * 144],
    );
    w.tensor("ok", &[4], GgmlType::F32, vec![0; 16]);
    let file = parse(w.to_bytes()).unwrap();
    let t = file.tensor("blk.0.ffn_down.weight").unwrap();
    assert_eq!((t.ty, t.size), (GgmlType::Q4_K, 288));
    let e = file.dequantize("blk.0.ffn_down.weight").unwrap_err();
    assert!(matches!(e, Error::Input(InputError::Gguf(_))), "{e:?}");
    assert!(
        e.to_string()
            .contains("unsupported type Q4_K in tensor 'blk.0.ffn_down.weight'"),
        "{e}"
    );
    assert_eq!(file.dequantize("ok").unwrap(), vec![0.0; 4]);
    assert!(
        file.tensor("nope")
            .unwrap_err()
            .to_string()
            .contains("no tensor named 'nope'")
    );
}

fn every_value() -> Vec<(&'static str, Value)> {
    vec![
        ("t.u8", Value::U8(200)),
        ("t.i8", Value::I8(-100)),
        ("t.u16", Value::U16(60000)),
        ("t.i16", Value::I16(-30000)),
        ("t.u32", Value::U32(4_000_000_000)),
        ("t.i32", Value::I32(-2_000_000_000)),
        ("t.f32", Value::F32(1e5)),
        ("t.bool", Value::Bool(true)),
        ("t.bool_false", Value::Bool(false)),
        ("t.str", Value::Str("llama ✓".into())),
        ("t.empty_str", Value::Str(String::new())),
        ("t.u64", Value::U64(u64::MAX)),
        ("t.i64", Value::I64(i64::MIN)),
        ("t.f64", Value::F64(-2.5e-300)),
        ("a.u8", Value::Array(Array::U8(vec![0, 1, 255]))),
        ("a.i8", Value::Array(Array::I8(vec![-128, 127]))),
        ("a.u16", Value::Array(Array::U16(vec![1, 65535]))),
        ("a.i16", Value::Array(Array::I16(vec![-1, 2]))),
        ("a.u32", Value::Array(Array::U32(vec![7; 5]))),
        ("a.i32", Value::Array(Array::I32(vec![-7, 1, 3]))),
        ("a.f32", Value::Array(Array::F32(vec![0.5, -1.25]))),
        ("a.bool", Value::Array(Array::Bool(vec![true, false, true]))),
        (
            "a.str",
            Value::Array(Array::Str(vec![
                "Ġthe".into(),
                "".into(),
                "<|im_end|>".into(),
            ])),
        ),
        ("a.u64", Value::Array(Array::U64(vec![u64::MAX, 0]))),
        ("a.i64", Value::Array(Array::I64(vec![i64::MAX]))),
        ("a.f64", Value::Array(Array::F64(vec![1e300]))),
        ("a.empty", Value::Array(Array::F32(vec![]))),
        (
            "a.nested",
            Value::Array(Array::Array(vec![
                Array::Str(vec!["a".into()]),
                Array::U8(vec![]),
                Array::Array(vec![Array::I32(vec![1, 2])]),
            ])),
        ),
    ]
}

#[test]
fn metadata_of_every_value_type_round_trips() {
    let mut w = Writer::new();
    for (k, v) in every_value() {
        w.kv(k, v);
    }
    let file = parse(w.to_bytes()).unwrap();
    assert_eq!(file.metadata().len(), every_value().len());
    for (k, v) in every_value() {
        assert_eq!(file.get(k), Some(&v), "{k}");
    }
    assert_eq!(file.get_u8("t.u8").unwrap(), 200);
    assert_eq!(file.get_i8("t.i8").unwrap(), -100);
    assert_eq!(file.get_u16("t.u16").unwrap(), 60000);
    assert_eq!(file.get_i16("t.i16").unwrap(), -30000);
    assert_eq!(file.get_u32("t.u32").unwrap(), 4_000_000_000);
    assert_eq!(file.get_i32("t.i32").unwrap(), -2_000_000_000);
    assert_eq!(file.get_f32("t.f32").unwrap(), 1e5);
    assert!(file.get_bool("t.bool").unwrap());
    assert_eq!(file.get_str("t.str").unwrap(), "llama ✓");
    assert_eq!(file.get_u64("t.u64").unwrap(), u64::MAX);
    assert_eq!(file.get_i64("t.i64").unwrap(), i64::MIN);
    assert_eq!(file.get_f64("t.f64").unwrap(), -2.5e-300);
    assert_eq!(file.get_uint("t.u16").unwrap(), 60000);
    assert_eq!(file.get_array_str("a.str").unwrap()[0], "Ġthe");
    assert_eq!(file.get_array_f32("a.f32").unwrap(), &[0.5, -1.25]);
    assert_eq!(file.get_array_i32("a.i32").unwrap(), &[-7, 1, 3]);
    assert_eq!(file.get_array_bool("a.bool").unwrap(), &[true, false, true]);
    assert_eq!(file.get_array("a.nested").unwrap().len(), 3);
    assert!(file.get_array_f32("a.empty").unwrap().is_empty());

    // Errors name the key and the type found.
    let e = file.get_u32("t.f32").unwrap_err();
    assert!(matches!(e, Error::Input(InputError::Gguf(_))), "{e:?}");
    let m = e.to_string();
    assert!(m.contains("'t.f32' is f32, expected u32"), "{m}");
    let m = file.get_array_str("a.u8").unwrap_err().to_string();
    assert!(
        m.contains("'a.u8' is array of u8, expected array of str"),
        "{m}"
    );
    let m = file.get_str("a.nested").unwrap_err().to_string();
    assert!(
        m.contains("'a.nested' is array of array of str, expected str"),
        "{m}"
    );
    let m = file.get_uint("t.i64").unwrap_err().to_string();
    assert!(
        m.contains("'t.i64' is i64, expected a non-negative integer"),
        "{m}"
    );
    let m = file.get_u32("llama.block_count").unwrap_err().to_string();
    assert!(
        m.contains("metadata key 'llama.block_count' is missing"),
        "{m}"
    );
}

/// A small valid file: metadata of several kinds and tensors of every supported type.
fn small_file() -> Vec<u8> {
    let mut rng = common::rng("gguf_small_file");
    let mut w = Writer::new();
    w.kv("general.architecture", Value::Str("llama".into()));
    w.kv("llama.block_count", Value::U32(2));
    w.kv(
        "tokenizer.ggml.tokens",
        Value::Array(Array::Str(vec!["a".into(), "bc".into()])),
    );
    w.kv(
        "tokenizer.ggml.scores",
        Value::Array(Array::F32(vec![0.0, -1.0])),
    );
    w.kv(
        "t.nested",
        Value::Array(Array::Array(vec![
            Array::U16(vec![1]),
            Array::Bool(vec![true]),
        ])),
    );
    for ty in SUPPORTED {
        let k = ty.block_len().max(32);
        let (bytes, _) = random_tensor(&mut rng, ty, k as usize, 2);
        w.tensor(&format!("{ty}.weight"), &[k, 2], ty, bytes);
    }
    w.to_bytes()
}

/// Byte offset just past tensor `name`'s name in its info (at its dimension count).
fn info_pos(bytes: &[u8], name: &str) -> usize {
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("tensor name in the file");
    at + needle.len()
}

fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn bad_headers_are_refused() {
    let good = small_file();
    let mut b = good.clone();
    b[0] = b'X';
    expect_err(parse(b), "not a GGUF file");
    for (v, needle) in [
        (1, "version 1 is not supported"),
        (0, "unknown GGUF version 0"),
        (4, "unknown GGUF version 4"),
        (0x0300_0000, "big-endian"),
    ] {
        let mut b = good.clone();
        put_u32(&mut b, 4, v);
        expect_err(parse(b), needle);
    }
    expect_err(parse(vec![]), "truncated: the magic");
}

#[test]
fn huge_counts_and_lengths_are_refused_before_allocating() {
    let good = small_file();
    // Tensor count (byte 8) and metadata count (byte 16).
    for count in [1u64 << 40, u64::MAX] {
        let mut b = good.clone();
        put_u64(&mut b, 8, count);
        expect_err(parse(b), &format!("the tensor count is {count}"));
        let mut b = good.clone();
        put_u64(&mut b, 16, count);
        expect_err(parse(b), &format!("the metadata count is {count}"));
    }
    // The first key's length (byte 24).
    let mut b = good.clone();
    put_u64(&mut b, 24, 1 << 60);
    expect_err(
        parse(b),
        "metadata key #0 at byte 24 is 1152921504606846976 bytes long",
    );
    let mut b = good.clone();
    put_u64(&mut b, 24, 65000);
    expect_err(parse(b), "truncated: metadata key #0 needs 65000 bytes");

    // A string value's length and an array's length.
    let mut w = Writer::new();
    w.kv("k", Value::Str("v".into()));
    w.kv("a", Value::Array(Array::U32(vec![1, 2])));
    let base = w.to_bytes();
    let str_len_at = 24 + 8 + 1 + 4;
    let mut b = base.clone();
    put_u64(&mut b, str_len_at, 1 << 60);
    expect_err(
        parse(b),
        "metadata 'k' at byte 37 is 1152921504606846976 bytes long",
    );
    let arr_len_at = str_len_at + 8 + 1 + 8 + 1 + 4 + 4;
    let mut b = base.clone();
    put_u64(&mut b, arr_len_at, 1 << 62);
    expect_err(
        parse(b),
        "the length of metadata 'a' (array of u32) is 4611686018427387904",
    );
    let mut b = base;
    put_u32(&mut b, arr_len_at - 4, 99);
    expect_err(
        parse(b),
        "unknown value type 99 for the elements of metadata 'a'",
    );

    // Tensor dims: zero, too many, overflowing.
    let name = "Q8_0.weight";
    let p = info_pos(&good, name);
    let mut b = good.clone();
    put_u32(&mut b, p, 5);
    expect_err(parse(b), "'Q8_0.weight' has 5 dimensions");
    let mut b = good.clone();
    put_u32(&mut b, p, 0);
    expect_err(parse(b), "'Q8_0.weight' has 0 dimensions");
    let mut b = good.clone();
    put_u64(&mut b, p + 4 + 8, 0);
    expect_err(parse(b), "'Q8_0.weight': dimension 1 is 0");
    let mut b = good.clone();
    put_u64(&mut b, p + 4 + 8, 1 << 62);
    expect_err(
        parse(b),
        "'Q8_0.weight': dimensions [32, 4611686018427387904] overflow",
    );
    // 2^62 elements fit i64, but not their 2^65 bytes as F64.
    let mut b = good.clone();
    put_u64(&mut b, p + 4, 1 << 31);
    put_u64(&mut b, p + 4 + 8, 1 << 31);
    put_u32(&mut b, p + 4 + 16, GgmlType::F64.id());
    expect_err(
        parse(b),
        "'Q8_0.weight': dimensions [2147483648, 2147483648] overflow the byte size",
    );
    let mut b = good.clone();
    put_u64(&mut b, p + 4 + 8, 1 << 50);
    expect_err(parse(b), "'Q8_0.weight': data at offset");
}

#[test]
fn bad_tensor_infos_are_refused() {
    let good = small_file();
    let name = "Q4_1.weight";
    let p = info_pos(&good, name);
    let (ty_at, off_at) = (p + 4 + 16, p + 4 + 16 + 4);
    let mut b = good.clone();
    put_u32(&mut b, ty_at, 100);
    expect_err(parse(b), "unknown tensor type 100 in tensor 'Q4_1.weight'");
    let mut b = good.clone();
    put_u32(&mut b, ty_at, 4); // Q4_2, removed from ggml
    expect_err(parse(b), "unknown tensor type 4 in tensor 'Q4_1.weight'");
    let mut b = good.clone();
    put_u64(&mut b, off_at, 1 << 40);
    expect_err(parse(b), "'Q4_1.weight': data at offset 1099511627776");
    let mut b = good.clone();
    put_u64(&mut b, off_at, u64::MAX - 31);
    expect_err(parse(b), "runs past the end of the file");
    let mut b = good.clone();
    put_u64(&mut b, off_at, 8);
    expect_err(
        parse(b),
        "'Q4_1.weight': offset 8 is not a multiple of the alignment 32",
    );
    // Point it at the first tensor's data: the two overlap.
    let mut b = good.clone();
    put_u64(&mut b, off_at, 0);
    expect_err(parse(b), "overlap");

    let mut w = Writer::new();
    w.tensor("same", &[4], GgmlType::F32, vec![0; 16]);
    w.tensor("same", &[4], GgmlType::F32, vec![0; 16]);
    expect_err(parse(w.to_bytes()), "tensor 'same' at byte");
    let mut w = Writer::new();
    w.kv("k", Value::U8(1)).kv("k", Value::U8(2));
    expect_err(
        parse(w.to_bytes()),
        "metadata key 'k' at byte 38 appears twice",
    );
    let mut w = Writer::new();
    w.tensor(&"x".repeat(65), &[4], GgmlType::F32, vec![0; 16]);
    expect_err(
        parse(w.to_bytes()),
        "is 65 bytes long, over the limit of 64",
    );
}

#[test]
fn bad_values_are_refused() {
    let mut w = Writer::new();
    w.kv("general.alignment", Value::U32(48));
    expect_err(
        parse(w.to_bytes()),
        "'general.alignment' is 48, not a power of two",
    );
    let mut w = Writer::new();
    w.kv("general.alignment", Value::U64(32));
    expect_err(
        parse(w.to_bytes()),
        "'general.alignment' is u64, expected u32",
    );
    let mut w = Writer::new();
    w.kv("b", Value::Bool(true));
    let mut b = w.to_bytes();
    b[37] = 2;
    expect_err(parse(b), "metadata 'b' at byte 37 is the bool 2");
    let mut w = Writer::new();
    w.kv("s", Value::Str("ok".into()));
    let mut b = w.to_bytes();
    b[37 + 8 + 1] = 0xFF; // the second byte of "ok"
    expect_err(parse(b), "metadata 's' at byte 37 is not valid UTF-8");
    let mut w = Writer::new();
    w.kv("v", Value::U8(1));
    let mut b = w.to_bytes();
    put_u32(&mut b, 24 + 8 + 1, 13);
    expect_err(
        parse(b),
        "unknown value type 13 for metadata 'v' at byte 33",
    );
    // Arrays nested deeper than the limit.
    let mut a = Array::U8(vec![1]);
    for _ in 0..12 {
        a = Array::Array(vec![a]);
    }
    let mut w = Writer::new();
    w.kv("deep", Value::Array(a));
    expect_err(parse(w.to_bytes()), "nests arrays deeper than 8");
}

/// Bytes up to the end of the last tensor's data: every shorter prefix must be refused.
fn required_len(file: &Gguf) -> usize {
    let end = file
        .tensors()
        .iter()
        .map(|t| t.offset + t.size)
        .max()
        .unwrap_or(0);
    (file.data_start() + end) as usize
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let good = small_file();
    let required = required_len(&parse(good.clone()).unwrap());
    for cut in 0..good.len() {
        let r = std::panic::catch_unwind(|| parse(good[..cut].to_vec()));
        let r = r.unwrap_or_else(|_| panic!("panic on the file cut at {cut} bytes"));
        if cut < required {
            gguf_err(r);
        } else {
            r.unwrap();
        }
    }
}

#[test]
fn seeded_byte_mutations_never_panic() {
    let good = small_file();
    let mut rng = common::rng("gguf_mutations");
    let (mut ok, mut err) = (0, 0);
    for round in 0..4000 {
        let mut b = good.clone();
        for _ in 0..rng.random_range(1..=4) {
            let at = rng.random_range(0..b.len());
            b[at] = match rng.random_range(0..4) {
                0 => 0,
                1 => 0xFF,
                2 => b[at] ^ (1 << rng.random_range(0..8)),
                _ => rng.random(),
            };
        }
        let r = std::panic::catch_unwind(|| match parse(b) {
            Ok(file) => {
                // Whatever was accepted must also be readable without a panic.
                for t in file.tensors() {
                    let _ = file.dequantize(&t.name);
                }
                for (k, _) in file.metadata() {
                    let _ = file.get_u32(k);
                    let _ = file.get_array_str(k);
                }
                true
            }
            Err(e) => {
                assert!(matches!(e, Error::Input(InputError::Gguf(_))), "{e:?}");
                false
            }
        });
        match r {
            Ok(true) => ok += 1,
            Ok(false) => err += 1,
            Err(_) => panic!("mutation round {round} panicked (replay with the SPARQ_SEED above)"),
        }
    }
    eprintln!("mutations: {ok} accepted, {err} refused");
    assert!(err > 0);
}

#[test]
fn files_on_disk_are_mapped_and_missing_ones_are_typed_errors() {
    let dir = std::env::temp_dir().join(format!("sparq-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("small.gguf");
    std::fs::write(&path, small_file()).unwrap();
    let file = Gguf::open(&path).unwrap();
    assert_eq!(file.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(file.dequantize("F32.weight").unwrap().len(), 64);
    // An empty file: mapped or not, a typed error.
    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let e = Gguf::open(&empty).unwrap_err();
    assert!(matches!(e, Error::Input(InputError::Gguf(_))), "{e:?}");
    std::fs::remove_dir_all(&dir).unwrap();
    let e = Gguf::open(dir.join("absent.gguf")).unwrap_err();
    assert!(matches!(e, Error::Input(InputError::Gguf(_))), "{e:?}");
    assert!(e.to_string().contains("absent.gguf: cannot open"), "{e}");
}

const SMOLLM2: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/SmolLM2-135M-Instruct/model.gguf"
);

#[test]
fn smollm2_metadata_and_tensors() {
    if !std::path::Path::new(SMOLLM2).exists() {
        eprintln!("skipping: {SMOLLM2} is absent (bash scripts/setup.sh fetches it)");
        return;
    }
    let file = Gguf::open(SMOLLM2).unwrap();
    assert_eq!(file.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(file.get_uint("llama.block_count").unwrap(), 30);
    assert_eq!(file.get_uint("llama.embedding_length").unwrap(), 576);
    assert_eq!(file.get_uint("llama.feed_forward_length").unwrap(), 1536);
    assert_eq!(file.get_uint("llama.attention.head_count").unwrap(), 9);
    assert_eq!(file.get_uint("llama.attention.head_count_kv").unwrap(), 3);
    assert_eq!(file.get_uint("llama.context_length").unwrap(), 8192);
    assert_eq!(file.get_f32("llama.rope.freq_base").unwrap(), 1e5);
    assert_eq!(
        file.get_array_str("tokenizer.ggml.tokens").unwrap().len(),
        49152
    );
    assert_eq!(
        file.get_array_str("tokenizer.ggml.merges").unwrap().len(),
        48900
    );

    let tensors = file.tensors();
    assert_eq!(tensors.len(), 272);
    let count = |ty| tensors.iter().filter(|t| t.ty == ty).count();
    assert_eq!(count(GgmlType::Q4_1), 210);
    for i in 0..30 {
        for l in [
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
        ] {
            let name = format!("blk.{i}.{l}.weight");
            assert_eq!(file.tensor(&name).unwrap().ty, GgmlType::Q4_1, "{name}");
        }
    }
    assert_eq!(
        count(GgmlType::F32),
        61,
        "two norms per block and the output norm"
    );
    assert_eq!(file.tensor("token_embd.weight").unwrap().ty, GgmlType::Q8_0);
    assert_eq!(
        file.tensor("token_embd.weight").unwrap().shape(),
        [49152, 576]
    );
    for t in tensors.iter().filter(|t| t.name.ends_with("_norm.weight")) {
        assert_eq!(t.ty, GgmlType::F32, "{}", t.name);
    }

    let q = file.tensor("blk.0.ffn_gate.weight").unwrap();
    assert_eq!((q.ty, q.shape()), (GgmlType::Q4_1, vec![1536, 576]));
    let w = file.dequantize("blk.0.ffn_gate.weight").unwrap();
    assert_eq!(w.len(), 1536 * 576);
    assert!(w.iter().all(|v| v.is_finite()));
    assert!(w.iter().any(|&v| v != 0.0));

    // Values and sums printed by the `gguf` Python package (gguf-py's GGUFReader and
    // `quants.dequantize`, f32 arithmetic like ggml's) for the same file.
    // The values are those f32s written exactly, hence compared as f64.
    let cases: [(&str, [f64; 6], f64); 3] = [
        (
            "blk.0.ffn_gate.weight",
            [
                0.00726318359375,
                0.19891357421875,
                0.00726318359375,
                0.19891357421875,
                0.2186279296875,
                0.0560302734375,
            ],
            330.11053466796875,
        ),
        (
            "token_embd.weight",
            [
                -0.10654449462890625,
                0.032978057861328125,
                0.08371353149414062,
                -0.20040512084960938,
                0.007411956787109375,
                -0.0417022705078125,
            ],
            -15353.04449415207,
        ),
        (
            "blk.29.attn_k.weight",
            [
                0.062408447265625,
                0.00433349609375,
                0.04788970947265625,
                -0.0247039794921875,
                0.01776123046875,
                0.081939697265625,
            ],
            87.89241790771484,
        ),
    ];
    for (name, want, want_sum) in cases {
        let w = file.dequantize(name).unwrap();
        let got = [w[0], w[1], w[17], w[31], w[1000], w[w.len() - 1]].map(f64::from);
        assert_eq!(got, want, "{name}");
        let sum: f64 = w.iter().map(|&v| v as f64).sum();
        assert!(
            (sum - want_sum).abs() <= 1e-9 * want_sum.abs(),
            "{name}: sum {sum} vs {want_sum}"
        );
    }
}
