//! Bad input gives the right typed `sparq::Error` (never a panic or a device error), and
//! weights split across several bindings give the same results as in one.

mod common;

use common::{all_gpus, assert_tensor, random, rng, run_forced};
use sparq::DeviceError;
use sparq::InputError;
use sparq::formats::{PackedWeights, WeightFormat};
use sparq::matmul::{KernelChoice, Linear, Strategy};
use sparq::tensor::{ActDType, Tensor};
use sparq::{AdapterSelector, Error, Gpu, reference};

/// The error of `r`, which must be one.
#[track_caller]
fn err<T>(r: sparq::Result<T>, what: &str) -> Error {
    match r {
        Ok(_) => panic!("{what}: succeeded, expected an error"),
        Err(e) => e,
    }
}

fn int4(group: u32, asymmetric: bool) -> WeightFormat {
    WeightFormat::Int4 { group, asymmetric }
}

#[test]
fn bad_weights() {
    for format in WeightFormat::all() {
        let name = format.name();
        for (n, k) in [(0, 8), (8, 0), (0, 0)] {
            let e = err(PackedWeights::quantize(&[], n, k, format), &name);
            assert!(
                matches!(e, Error::Input(InputError::Invalid(_))),
                "{name} {n}×{k}: {e:?}"
            );
            let e = err(PackedWeights::quantize_bf16(&[], n, k, format), &name);
            assert!(
                matches!(e, Error::Input(InputError::Invalid(_))),
                "{name} bf16 {n}×{k}: {e:?}"
            );
        }
        for len in [0, 11, 13, 24] {
            let e = err(
                PackedWeights::quantize(&vec![0.5; len], 3, 4, format),
                &name,
            );
            assert!(
                matches!(e, Error::Input(InputError::Shape(ref m)) if m.contains(&len.to_string())),
                "{name} {len} values for 3×4: {e:?}"
            );
        }
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut w = vec![0.25f32; 3 * 4];
            w[4 + 2] = bad;
            let e = err(PackedWeights::quantize(&w, 3, 4, format), &name);
            assert!(
                matches!(e, Error::Input(InputError::Invalid(ref m)) if m.contains("[1, 2]")),
                "{name} {bad} at [1, 2]: {e:?}"
            );
        }
    }
}

#[test]
fn bad_layer_and_plan_inputs() {
    let mut rng = rng("bad_layer_and_plan_inputs");
    let (n, k) = (5, 12);
    for gpu in all_gpus() {
        let on = &gpu.caps.name;
        let w = random(&mut rng, n * k);
        let p = PackedWeights::quantize(&w, n, k, WeightFormat::Int8).unwrap();
        for len in [0, n - 1, n + 1] {
            let e = err(Linear::new(&gpu, &p, Some(&vec![0.0; len])), on);
            assert!(
                matches!(e, Error::Input(InputError::Shape(_))),
                "bias of {len} on {on}: {e:?}"
            );
        }
        let layer = Linear::new(&gpu, &p, Some(&random(&mut rng, n))).unwrap();
        let x = Tensor::from_f32(&gpu, &random(&mut rng, 2 * k), 2, k).unwrap();
        let y = Tensor::empty(&gpu, 2, n, ActDType::F32).unwrap();
        let auto = KernelChoice::Auto;
        // The well-formed plan works, so each error below comes from the one bad argument.
        assert!(layer.plan(&gpu, &x, &y, auto).is_ok(), "{on}");

        let x13 = Tensor::from_f32(&gpu, &random(&mut rng, 2 * 13), 2, 13).unwrap();
        let e = err(layer.plan(&gpu, &x13, &y, auto), on);
        assert!(
            matches!(e, Error::Input(InputError::Shape(_))),
            "x.cols 13 != k on {on}: {e:?}"
        );
        for (rows, cols) in [(2, 4), (2, 6), (3, n), (1, n)] {
            let yb = Tensor::empty(&gpu, rows, cols, ActDType::F32).unwrap();
            let e = err(layer.plan(&gpu, &x, &yb, auto), on);
            assert!(
                matches!(e, Error::Input(InputError::Shape(_))),
                "y {rows}×{cols} on {on}: {e:?}"
            );
        }

        let x0 = Tensor::from_f32(&gpu, &[], 0, k).unwrap();
        let y0 = Tensor::empty(&gpu, 0, n, ActDType::F32).unwrap();
        for choice in [
            auto,
            KernelChoice::Force(Strategy::GemvWorkgroup),
            KernelChoice::Force(Strategy::GemmTiled),
        ] {
            let e = err(layer.plan(&gpu, &x0, &y0, choice), on);
            assert!(
                matches!(e, Error::Input(InputError::Invalid(_))),
                "0 rows {choice:?} on {on}: {e:?}"
            );
        }

        if gpu.caps.f16 {
            let y16 = Tensor::empty(&gpu, 2, n, ActDType::F16).unwrap();
            let e = err(layer.plan(&gpu, &x, &y16, auto), on);
            assert!(
                matches!(e, Error::Input(InputError::DType(_))),
                "x f32, y f16 on {on}: {e:?}"
            );
            let x16 =
                Tensor::from_f32_as(&gpu, &random(&mut rng, 2 * k), 2, k, ActDType::F16).unwrap();
            let e = err(layer.plan(&gpu, &x16, &y, auto), on);
            assert!(
                matches!(e, Error::Input(InputError::DType(_))),
                "x f16, y f32 on {on}: {e:?}"
            );
            assert!(
                layer.plan(&gpu, &x16, &y16, auto).is_ok(),
                "f16 plan on {on}"
            );
        }

        let sg = KernelChoice::Force(Strategy::GemvSubgroup);
        if gpu.caps.subgroups {
            assert!(
                layer.plan(&gpu, &x, &y, sg).is_ok(),
                "subgroup plan on {on}"
            );
        } else {
            let e = err(layer.plan(&gpu, &x, &y, sg), on);
            assert!(
                matches!(e, Error::Device(DeviceError::MissingFeature { ref feature, .. }) if feature.contains("SUBGROUP")),
                "forced subgroups on {on}: {e:?}"
            );
        }
        // Int8 activations exist for integer weights only.
        let q8 = KernelChoice::Force(Strategy::GemvWorkgroupQ8);
        if gpu.caps.dot4_i8 {
            assert!(layer.plan(&gpu, &x, &y, q8).is_ok(), "q8 plan on {on}");
        }
        let pf = PackedWeights::quantize(&w, n, k, WeightFormat::F16).unwrap();
        let f16_layer = Linear::new(&gpu, &pf, None).unwrap();
        let e = err(f16_layer.plan(&gpu, &x, &y, q8), on);
        assert!(
            matches!(e, Error::Input(InputError::Invalid(_))),
            "q8 on f16 weights, {on}: {e:?}"
        );
        gpu.check().unwrap();
    }
}

#[test]
fn bad_tensors() {
    for gpu in all_gpus() {
        let on = &gpu.caps.name;
        for (len, rows, cols) in [(5, 2, 3), (7, 2, 3), (1, 0, 3), (0, 1, 1)] {
            let e = err(Tensor::from_f32(&gpu, &vec![1.0; len], rows, cols), on);
            assert!(
                matches!(e, Error::Input(InputError::Shape(_))),
                "{len} values as {rows}×{cols} on {on}: {e:?}"
            );
        }
        let data = [1.0f32; 6];
        if gpu.caps.f16 {
            let t = Tensor::from_f32_as(&gpu, &data, 2, 3, ActDType::F16).unwrap();
            assert_eq!(t.to_f32(&gpu).unwrap(), data, "f16 tensor on {on}");
        } else {
            let e = err(Tensor::from_f32_as(&gpu, &data, 2, 3, ActDType::F16), on);
            assert!(
                matches!(e, Error::Device(DeviceError::MissingFeature { .. })),
                "f16 tensor on {on}: {e:?}"
            );
            let e = err(Tensor::empty(&gpu, 2, 3, ActDType::F16), on);
            assert!(
                matches!(e, Error::Device(DeviceError::MissingFeature { .. })),
                "empty f16 tensor on {on}: {e:?}"
            );
        }

        // Refused before anything is allocated: one row of max_storage_binding + 4 bytes
        // (rounded up to whole vec4s).
        let limit = gpu.caps.max_storage_binding;
        let cols = (limit / 4 + 1) as usize;
        let e = err(Tensor::empty(&gpu, 1, cols, ActDType::F32), on);
        match e {
            Error::Input(InputError::TooLarge {
                bytes,
                limit_name,
                limit: l,
                ..
            }) => {
                assert_eq!(limit_name, "max_storage_buffer_binding_size", "{on}");
                assert_eq!(l, limit, "{on}");
                assert_eq!(bytes, 4 * cols.next_multiple_of(4) as u64, "{on}");
                assert!(bytes > limit && bytes <= limit + 16, "{on}: {bytes} bytes");
            }
            e => panic!("oversized tensor on {on}: {e:?}"),
        }
        let e = err(
            Tensor::empty(&gpu, (limit / 16 + 1) as usize, 4, ActDType::F32),
            on,
        );
        assert!(
            matches!(e, Error::Input(InputError::TooLarge { .. })),
            "many rows on {on}: {e:?}"
        );
        gpu.check().unwrap();
    }
}

#[test]
fn row_over_binding_limit() {
    let mut rng = rng("row_over_binding_limit");
    let (n, k) = (3, 200);
    for gpu in all_gpus() {
        for format in WeightFormat::all() {
            let p = PackedWeights::quantize(&random(&mut rng, n * k), n, k, format).unwrap();
            let what = format!("{} on {}", format.name(), gpu.caps.name);
            let e = err(Linear::with_binding_limit(&gpu, &p, None, 16), &what);
            let msg = e.to_string();
            match e {
                Error::Input(InputError::TooLarge {
                    bytes,
                    limit_name,
                    limit,
                    ..
                }) => {
                    assert_eq!(limit_name, "max_storage_buffer_binding_size", "{what}");
                    assert_eq!((bytes, limit), ((p.row_words() * 4) as u64, 16), "{what}");
                    assert!(msg.contains("max_storage_buffer_binding_size"), "{msg}");
                }
                e => panic!("{what}: {e:?}"),
            }
            // One row per binding is enough.
            let row = (p.row_words() * 4) as u64;
            let layer = Linear::with_binding_limit(&gpu, &p, None, row).unwrap();
            assert_eq!(layer.chunks(), n, "{what}: one row per chunk");
        }
        gpu.check().unwrap();
    }
}

/// Runs `layer` on poisoned output and compares with the f64 reference (as tests/linear.rs).
#[allow(clippy::too_many_arguments)]
fn check_split(
    gpu: &Gpu,
    layer: &Linear,
    packed: &PackedWeights,
    bias: Option<&[f32]>,
    x: &[f32],
    m: usize,
    strategy: Strategy,
    what: &str,
) {
    let (n, k) = (packed.n, packed.k);
    let xt = Tensor::from_f32(gpu, x, m, k).unwrap();
    let yt = Tensor::empty(gpu, m, n, ActDType::F32).unwrap();
    run_forced(gpu, layer, &xt, &yt, strategy);
    let wq = packed.dequantize();
    let want = reference::linear(x, &wq, bias, m, n, k);
    let scale = reference::linear_abs(x, &wq, bias, m, n, k);
    let what = format!("{what} {} m={m}", strategy.name());
    assert_tensor(gpu, &yt, &want, &scale, 2e-5, &what);
}

#[test]
fn weights_split_across_bindings() {
    let mut rng = rng("weights_split_across_bindings");
    // 101 rows (y has padding; the last chunk is short), 300 columns: int4 g64 has 5 and
    // g128 3 groups per row, so chunks of an odd number of rows start mid-word in the
    // packed scales, and g32 asymmetric (10 groups) starts mid-word in the zero points.
    let (n, k, limit) = (101, 300, 4096u64);
    let formats = [
        WeightFormat::F32,
        WeightFormat::F16,
        WeightFormat::Int8,
        int4(64, false),
        int4(128, true),
        int4(32, true),
    ];
    for gpu in all_gpus() {
        for (fi, &format) in formats.iter().enumerate() {
            let w = random(&mut rng, n * k);
            let packed = PackedWeights::quantize(&w, n, k, format).unwrap();
            let bias = (fi % 2 == 0).then(|| random(&mut rng, n));
            let layer = Linear::with_binding_limit(&gpu, &packed, bias.as_deref(), limit).unwrap();
            let what = format!(
                "{} {n}×{k} split at {limit} B on {}",
                format.name(),
                gpu.caps.name
            );
            let row = (packed.row_words() * 4) as u64;
            let per_chunk = (limit / row) as usize;
            assert!(layer.chunks() >= 3, "{what}: {} chunks", layer.chunks());
            // Every chunk respects the limit: at most `per_chunk` rows each.
            assert!(
                layer.chunks() >= n.div_ceil(per_chunk),
                "{what}: {} chunks cannot hold {n} rows of {row} B within {limit} B each",
                layer.chunks()
            );
            for m in [1, 3, 17] {
                let x = random(&mut rng, m * k);
                let mut strategies = vec![];
                if m <= 8 {
                    strategies.push(Strategy::GemvWorkgroup);
                    if gpu.caps.subgroups {
                        strategies.push(Strategy::GemvSubgroup);
                    }
                } else {
                    strategies.push(Strategy::GemmTiled);
                }
                for s in strategies {
                    check_split(&gpu, &layer, &packed, bias.as_deref(), &x, m, s, &what);
                }
            }
        }
        gpu.check().unwrap();
    }
}

#[test]
fn adapter_selectors() {
    use wgpu::Backend;
    let cases = [
        ("best", AdapterSelector::Best),
        ("BEST", AdapterSelector::Best),
        ("", AdapterSelector::Best),
        ("  ", AdapterSelector::Best),
        ("1", AdapterSelector::Index(1)),
        (" 0 ", AdapterSelector::Index(0)),
        ("vulkan", AdapterSelector::Backend(Backend::Vulkan)),
        ("vk", AdapterSelector::Backend(Backend::Vulkan)),
        ("GL", AdapterSelector::Backend(Backend::Gl)),
        ("gles", AdapterSelector::Backend(Backend::Gl)),
        ("metal", AdapterSelector::Backend(Backend::Metal)),
        ("dx12", AdapterSelector::Backend(Backend::Dx12)),
        ("llvm", AdapterSelector::Name("llvm".into())),
        (
            "NVIDIA GeForce",
            AdapterSelector::Name("NVIDIA GeForce".into()),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(AdapterSelector::parse(text), want, "'{text}'");
    }
}

#[test]
fn missing_adapter() {
    let names: Vec<String> = sparq::gpu::enumerate_adapters(&sparq::gpu::instance())
        .iter()
        .map(|a| a.get_info().name)
        .collect();
    let e = err(
        Gpu::new(&AdapterSelector::Name("no-such-gpu".into())),
        "no-such-gpu",
    );
    let msg = e.to_string();
    match e {
        Error::Input(InputError::NoAdapter {
            selector,
            available,
        }) => {
            assert!(selector.contains("no-such-gpu"), "{msg}");
            assert!(!available.is_empty(), "{msg}");
            for name in &names {
                assert!(available.contains(name.as_str()), "{name} not in: {msg}");
            }
            assert!(msg.contains(&available), "{msg}");
        }
        e => panic!("name 'no-such-gpu': {e:?}"),
    }
    let e = err(Gpu::new(&AdapterSelector::Index(99)), "index 99");
    assert!(
        matches!(e, Error::Input(InputError::NoAdapter { ref selector, .. }) if selector.contains("99")),
        "index 99: {e:?}"
    );
}

/// A buffer the driver rejects as invalid is a bug in sparq, not the device's fault: the
/// device's error sink reports it as `InternalError::Validation` (HTTP 500), and only once.
#[test]
fn validation_error_is_internal() {
    for gpu in all_gpus() {
        let name = gpu.adapter.get_info().name;
        gpu.check().unwrap();
        // MAP_READ may only be combined with COPY_DST, as in the scheduler's injected fault.
        let _ = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("invalid on purpose"),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let _ = gpu.device.poll(wgpu::PollType::wait_indefinitely());
        let e = err(gpu.check(), &name);
        assert!(
            matches!(e, Error::Internal(sparq::InternalError::Validation(_))),
            "{name}: {e:?}"
        );
        assert_eq!(e.kind(), sparq::ErrorKind::Internal, "{name}");
        assert_eq!(e.http_status(), 500, "{name}");
        assert!(e.to_string().starts_with("GPU error: "), "{name}: {e}");
        gpu.check().unwrap();
    }
}
