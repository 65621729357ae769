//! The multi-device schedulers on CPU adapters: results equal single-device runs bit for bit,
//! uneven devices get uneven shares, failed devices lose nothing, tasks are placed by fit,
//! speed and pin.

mod common;

use common::{all_gpus, random, rng};
use rand::rngs::StdRng;
use sparq::DeviceError;
use sparq::InputError;
use sparq::formats::{PackedWeights, WeightFormat};
use sparq::gpu::instance;
use sparq::schedule::{
    ChainLayer, Cluster, ClusterConfig, FaultKind, Injection, LinearChain, ModelSpec, TaskPool,
    run_single,
};
use sparq::{Error, Gpu, reference};
use std::sync::Arc;
use std::time::Duration;

/// Every adapter (lavapipe and llvmpipe in CI), plus `extra` more devices on the first one.
fn devices(extra: usize) -> Vec<Arc<Gpu>> {
    let gpus: Vec<Arc<Gpu>> = all_gpus().into_iter().map(Arc::new).collect();
    let inst = instance();
    let more: Vec<Arc<Gpu>> = (0..extra)
        .map(|_| Arc::new(Gpu::from_adapter(gpus[0].adapter.clone(), &inst).unwrap()))
        .collect();
    gpus.into_iter().chain(more).collect()
}

/// `count` devices on the first adapter.
fn same_adapter(count: usize) -> Vec<Arc<Gpu>> {
    let first = all_gpus().into_iter().next().unwrap();
    let inst = instance();
    let adapter = first.adapter.clone();
    std::iter::once(Arc::new(first))
        .chain((1..count).map(|_| Arc::new(Gpu::from_adapter(adapter.clone(), &inst).unwrap())))
        .collect()
}

/// Three layers at awkward widths: int4 (partial last group), f16, asymmetric int4; biases.
fn layers(rng: &mut StdRng) -> Vec<ChainLayer> {
    let dims = [(40, 70), (36, 40), (21, 36)];
    let formats = [
        WeightFormat::Int4 {
            group: 32,
            asymmetric: false,
        },
        WeightFormat::F16,
        WeightFormat::Int4 {
            group: 32,
            asymmetric: true,
        },
    ];
    dims.iter()
        .zip(formats)
        .map(|(&(n, k), f)| ChainLayer {
            weights: PackedWeights::quantize(&random(rng, n * k), n, k, f).unwrap(),
            bias: Some(random(rng, n)),
        })
        .collect()
}

fn rows(rng: &mut StdRng, m: usize, k: usize) -> Vec<Vec<f32>> {
    (0..m).map(|_| random(rng, k)).collect()
}

/// The chain on the CPU: f64 per layer, rounded to f32 between layers like the GPU.
fn cpu_chain(layers: &[ChainLayer], x: &[Vec<f32>]) -> Vec<Vec<f64>> {
    x.iter()
        .map(|row| {
            let mut a = row.clone();
            let mut out = Vec::new();
            for l in layers {
                let w = l.weights.dequantize();
                out = reference::linear(&a, &w, l.bias.as_deref(), 1, l.weights.n, l.weights.k);
                a = out.iter().map(|&v| v as f32).collect();
            }
            out
        })
        .collect()
}

fn build(gpus: Vec<Arc<Gpu>>, layers: &[ChainLayer], max_rows: usize) -> Cluster<LinearChain> {
    Cluster::new(
        gpus,
        |g| {
            let c = LinearChain::new(g, layers, max_rows)?;
            c.poison();
            Ok(c)
        },
        ClusterConfig::default(),
    )
    .unwrap()
}

/// Single-device outputs of every device of `cluster` (each one is its own reference).
fn per_device(cluster: &mut Cluster<LinearChain>, x: &[Vec<f32>]) -> Vec<Vec<Vec<f32>>> {
    (0..cluster.len())
        .map(|i| run_single(cluster.replica_mut(i), x).unwrap())
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every row came back once, from the device the report names, equal in every bit to that
/// device's single-device run, and close to the CPU.
fn check_batch(
    out: &sparq::schedule::BatchOutput<Vec<f32>>,
    refs: &[Vec<Vec<f32>>],
    cpu: &[Vec<f64>],
    what: &str,
) {
    assert_eq!(out.outputs.len(), cpu.len(), "{what}: row count");
    let mut seen = vec![0u32; cpu.len()];
    for mb in &out.report.micro_batches {
        for r in mb.start..mb.start + mb.rows {
            seen[r] += 1;
            assert_eq!(
                bits(&out.outputs[r]),
                bits(&refs[mb.device][r]),
                "{what}: row {r} from device {} differs from its single-device run",
                mb.device
            );
        }
    }
    assert!(
        seen.iter().all(|&c| c == 1),
        "{what}: rows delivered {seen:?}"
    );
    let rows: usize = out.report.devices.iter().map(|d| d.rows).sum();
    assert_eq!(rows, cpu.len(), "{what}: per-device rows");
    for (r, (got, want)) in out.outputs.iter().zip(cpu).enumerate() {
        for (g, w) in got.iter().zip(want) {
            assert!(
                g.is_finite() && (*g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{what}: row {r}: got {g}, CPU {w}"
            );
        }
    }
}

#[test]
fn split_runs_equal_single_device_runs() {
    let mut rng = rng("split_runs_equal_single_device_runs");
    let layers = layers(&mut rng);
    // Every adapter plus a second device on the first: real mixed backends and a shared adapter.
    let mut cluster = build(devices(1), &layers, 16);
    let x = rows(&mut rng, 61, 70);
    let refs = per_device(&mut cluster, &x);
    let cpu = cpu_chain(&layers, &x);
    // Uncalibrated first (equal shares), then calibrated; sizes 0, 1, prime, larger.
    for (i, m) in [0usize, 1, 7, 61, 2].into_iter().enumerate() {
        if i == 3 {
            cluster.calibrate(&x[..8]).unwrap();
        }
        let out = cluster.run(&x[..m]).unwrap();
        check_batch(&out, &refs, &cpu[..m], &format!("batch of {m}"));
        if m == 0 {
            assert!(out.report.micro_batches.is_empty());
        }
    }
    // A subset of the devices.
    let out = cluster.run_on(&[cluster.len() - 1], &x).unwrap();
    assert_eq!(out.report.devices[0].rows, 0);
    check_batch(&out, &refs, &cpu, "last device alone");
}

#[test]
fn uneven_devices_get_uneven_shares() {
    let mut rng = rng("uneven_devices_get_uneven_shares");
    let layers = layers(&mut rng);
    let mut cluster = build(same_adapter(2), &layers, 16);
    let x = rows(&mut rng, 400, 70);
    let refs = per_device(&mut cluster, &x);
    // Device 1 spends 10 ms per row more than device 0: it must get far fewer rows.
    cluster.inject(1, Injection::Delay(Duration::from_millis(10)));
    cluster.calibrate(&x[..8]).unwrap();
    let rates = cluster.rates();
    assert!(rates[0] > 2.0 * rates[1], "calibrated rates {rates:?}");
    let out = cluster.run(&x).unwrap();
    check_batch(&out, &refs, &cpu_chain(&layers, &x), "uneven");
    let r = &out.report;
    eprintln!("{}", r.markdown());
    assert!(
        r.devices[0].rows > 2 * r.devices[1].rows,
        "split {} / {}",
        r.devices[0].rows,
        r.devices[1].rows
    );
    // The report accounts for the time: busy + upload + idle cannot exceed much the wall.
    for d in &r.devices {
        assert!(d.idle_s >= 0.0 && d.upload_s >= 0.0 && d.busy_s >= 0.0);
        assert!(d.idle_s <= r.wall_s + 1e-9, "{d:?}");
    }
}

#[test]
fn failed_device_loses_nothing() {
    let mut rng = rng("failed_device_loses_nothing");
    let layers = layers(&mut rng);
    let x = rows(&mut rng, 90, 70);
    let cpu = cpu_chain(&layers, &x);
    for (kind, text) in [
        (FaultKind::DeviceLost, "lost"),
        (FaultKind::OutOfMemory, "Out of Memory"),
        (FaultKind::Validation, "GPU error"),
    ] {
        let mut cluster = build(devices(0), &layers, 8);
        if cluster.len() < 2 {
            let mut more = same_adapter(2);
            more.truncate(2);
            cluster = build(more, &layers, 8);
        }
        let refs = per_device(&mut cluster, &x);
        // Device 0 fails with its second micro-batch in flight (both of its slots are full).
        cluster.inject(0, Injection::Fail { after: 2, kind });
        let out = cluster.run(&x).unwrap();
        let what = format!("{kind:?}");
        check_batch(&out, &refs, &cpu, &what);
        let r = &out.report;
        let failed = r.devices[0].failed.as_deref().unwrap_or("");
        assert!(
            failed.contains(text),
            "{what}: device 0 report says '{failed}'"
        );
        assert!(
            r.requeued.iter().any(|m| m.device == 0),
            "{what}: its in-flight work was not re-run: {:?}",
            r.requeued
        );
        assert!(r.devices[1..].iter().all(|d| d.failed.is_none()));
        // The next batch runs without the failed device.
        let again = cluster.run(&x[..5]).unwrap();
        assert_eq!(again.report.devices[0].rows, 0, "{what}");
        check_batch(&again, &refs, &cpu[..5], &format!("{what}, next batch"));
    }
}

#[test]
fn no_device_left_is_a_clear_error() {
    let mut rng = rng("no_device_left_is_a_clear_error");
    let layers = layers(&mut rng);
    let x = rows(&mut rng, 40, 70);
    let mut cluster = build(same_adapter(2), &layers, 8);
    cluster.inject(
        0,
        Injection::Fail {
            after: 1,
            kind: FaultKind::DeviceLost,
        },
    );
    cluster.inject(
        1,
        Injection::Fail {
            after: 1,
            kind: FaultKind::OutOfMemory,
        },
    );
    match cluster.run(&x) {
        Err(Error::Device(DeviceError::NoDeviceLeft(msg))) => {
            assert!(msg.contains("[0]") && msg.contains("[1]"), "{msg}");
            assert!(
                msg.contains("lost") && msg.contains("Out of Memory"),
                "{msg}"
            );
        }
        other => panic!("expected NoDeviceLeft, got {:?}", other.map(|o| o.report)),
    }
    assert!(matches!(
        cluster.run(&x),
        Err(Error::Device(DeviceError::NoDeviceLeft(_)))
    ));
}

#[test]
fn bad_input_aborts_without_blaming_devices() {
    let mut rng = rng("bad_input_aborts_without_blaming_devices");
    let layers = layers(&mut rng);
    let mut cluster = build(same_adapter(2), &layers, 8);
    let mut x = rows(&mut rng, 30, 70);
    x[17].pop();
    assert!(matches!(
        cluster.run(&x),
        Err(Error::Input(InputError::Shape(_)))
    ));
    assert!(cluster.failures().iter().all(Option::is_none));
    x[17].push(0.5);
    let refs = per_device(&mut cluster, &x);
    let out = cluster.run(&x).unwrap();
    check_batch(&out, &refs, &cpu_chain(&layers, &x), "after bad input");
    assert!(matches!(
        cluster.run_on(&[5], &x),
        Err(Error::Input(InputError::Invalid(_)))
    ));
}

#[test]
fn tasks_are_placed_by_fit_speed_and_pin() {
    let mut rng = rng("tasks_are_placed_by_fit_speed_and_pin");
    let gpus = devices(1);
    let n = gpus.len();
    let fast = 0;
    let mut speeds = vec![1.0; n];
    speeds[fast] = 10.0;
    let mut pool = TaskPool::with_speeds(gpus, &speeds).unwrap();
    pool.set_budget(fast, 2_000).unwrap();
    let spec = |name: &str, bytes, pin| ModelSpec {
        name: name.into(),
        bytes,
        cost: 1.0,
        pin,
    };
    let a_layers = layers(&mut rng);
    let b_layers = layers(&mut rng);
    let make = |l: &Vec<ChainLayer>| {
        let l = l.clone();
        move |g: &Arc<Gpu>| LinearChain::new(g, &l, 8)
    };
    // The fast device takes models while they fit its budget, then the others.
    let a = pool.add(spec("a", 1_000, None), make(&a_layers)).unwrap();
    let b = pool.add(spec("b", 1_000, None), make(&b_layers)).unwrap();
    let c = pool.add(spec("c", 1_000, None), make(&a_layers)).unwrap();
    assert_eq!((a.device, b.device), (fast, fast));
    assert_ne!(c.device, fast);
    let pinned = pool
        .add(spec("pinned", 1_000, Some(n - 1)), make(&b_layers))
        .unwrap();
    assert_eq!(pinned.device, n - 1);
    assert!(matches!(
        pool.add(spec("huge", 3_000, Some(fast)), make(&a_layers)),
        Err(Error::Input(InputError::TooLarge { .. }))
    ));
    assert!(matches!(
        pool.add(spec("nowhere", 1_000, Some(n)), make(&a_layers)),
        Err(Error::Input(InputError::Invalid(_)))
    ));
    // All requests in flight at once; each equals the model run alone on its device.
    let x = rows(&mut rng, 13, 70);
    let tickets = [
        pool.submit(&a, x.clone()).unwrap(),
        pool.submit(&b, x.clone()).unwrap(),
        pool.submit(&c, x.clone()).unwrap(),
        pool.submit(&pinned, x.clone()).unwrap(),
    ];
    let empty = pool.submit(&a, Vec::new()).unwrap();
    let got: Vec<Vec<Vec<f32>>> = tickets.into_iter().map(|t| t.wait().unwrap()).collect();
    assert!(empty.wait().unwrap().is_empty());
    for ((out, dev), l) in got
        .iter()
        .zip([a.device, b.device, c.device, pinned.device])
        .zip([&a_layers, &b_layers, &a_layers, &b_layers])
    {
        let mut alone = LinearChain::new(pool.gpu(dev), l, 8).unwrap();
        let want = run_single(&mut alone, &x).unwrap();
        for (g, w) in out.iter().zip(&want) {
            assert_eq!(bits(g), bits(w), "model on device {dev}");
        }
    }
    // A lost device: its requests fail naming it, and new models go elsewhere.
    let lost = pool.gpu(pinned.device);
    lost.device.destroy();
    let _ = lost.device.poll(wgpu::PollType::wait_indefinitely());
    match pool.submit(&pinned, x.clone()).unwrap().wait() {
        Err(e @ Error::Device(DeviceError::Lost(_))) => {
            let msg = e.to_string();
            assert!(
                msg.contains("lost") && msg.contains(&format!("[{}]", pinned.device)),
                "{msg}"
            );
        }
        other => panic!("expected DeviceLost, got {:?}", other.map(|o| o.len())),
    }
    assert!(pool.failure(pinned.device).is_some());
    assert!(pool.submit(&pinned, x.clone()).unwrap().wait().is_err());
    let d = pool.add(spec("d", 0, None), make(&a_layers)).unwrap();
    assert_ne!(d.device, pinned.device);
    assert_eq!(
        pool.submit(&d, x.clone()).unwrap().wait().unwrap().len(),
        13
    );
}

#[test]
fn tasks_move_off_a_failed_device() {
    let mut rng = rng("tasks_move_off_a_failed_device");
    let l = layers(&mut rng);
    let mut pool = TaskPool::with_speeds(same_adapter(2), &[1.0, 1.0]).unwrap();
    let spec = ModelSpec {
        name: "m".into(),
        bytes: 0,
        cost: 1.0,
        pin: None,
    };
    let lc = l.clone();
    let m = pool
        .add(spec, move |g: &Arc<Gpu>| LinearChain::new(g, &lc, 8))
        .unwrap();
    let first = m.device;
    let x = rows(&mut rng, 11, 70);
    // Accepted, then the device is lost before the request runs: it is answered from the other.
    let lost = pool.gpu(first).clone();
    lost.device.destroy();
    let _ = lost.device.poll(wgpu::PollType::wait_indefinitely());
    let got = pool.submit(&m, x.clone()).unwrap().wait().unwrap();
    let now = pool.device_of(&m);
    assert_ne!(now, first, "the model stayed on the failed device");
    assert!(pool.failure(first).is_some());
    let mut alone = LinearChain::new(pool.gpu(now), &l, 8).unwrap();
    let want = run_single(&mut alone, &x).unwrap();
    assert_eq!(got.len(), x.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(bits(g), bits(w));
    }
    // Later requests go straight to the new device.
    assert_eq!(
        pool.submit(&m, x.clone()).unwrap().wait().unwrap().len(),
        11
    );
    // With no live device left the request fails with an error naming the devices.
    let last = pool.gpu(now).clone();
    last.device.destroy();
    let _ = last.device.poll(wgpu::PollType::wait_indefinitely());
    match pool.submit(&m, x).unwrap().wait() {
        Err(e @ Error::Device(DeviceError::NoDeviceLeft(_))) => {
            assert!(e.to_string().contains("[1]"), "{e}")
        }
        other => panic!("expected NoDeviceLeft, got {:?}", other.map(|o| o.len())),
    }
}
