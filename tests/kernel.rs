//! The kernel launch builder: declaration mismatches and over-limit grids are errors, and
//! params at offsets of a shared `ParamBuffer` select what each dispatch computes, also
//! after a rewrite without rebuilding the dispatches, also when the executor rewrites them
//! per call as one of a pass's inputs.

mod common;

use sparq::Error;
use sparq::InputError;
use sparq::gpu::Slot::{Read, ReadWrite};
use sparq::gpu::{Kernel, ParamBuffer, read_buffer, record_pass};

/// `y[i] = a · x[i] + b` for `i < len`.
const AXPB: &str = "
struct Params {
    a: f32,
    b: f32,
    len: u32,
    _p: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if id.x < p.len {
        y[id.x] = p.a * x[id.x] + p.b;
    }
}
";

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    a: f32,
    b: f32,
    len: u32,
    _p: u32,
}

const K: Kernel<Params> = Kernel::new("test_axpb", &[Read("x"), ReadWrite("y")]);

const LEN: usize = 100;

fn params(a: f32, b: f32) -> Params {
    Params {
        a,
        b,
        len: LEN as u32,
        _p: 0,
    }
}

fn read(gpu: &sparq::Gpu, b: &wgpu::Buffer) -> Vec<f32> {
    bytemuck::cast_slice(&read_buffer(gpu, b, (LEN * 4) as u64).unwrap()).to_vec()
}

fn expect(x: &[f32], a: f32, b: f32) -> Vec<f32> {
    x.iter().map(|v| a * v + b).collect()
}

#[test]
fn own_params_compute() {
    for gpu in common::all_gpus() {
        let x: Vec<f32> = (0..LEN).map(|i| i as f32).collect();
        let xb = gpu.upload("x", &x).unwrap();
        let y = gpu.storage("y", (LEN * 4) as u64).unwrap();
        let d = K
            .launch(&gpu)
            .template(&[AXPB], &[("WG", 64)])
            .params(&params(2.0, 1.0))
            .buffers(&[Some(&xb), Some(&y)])
            .workgroups(LEN.div_ceil(64) as u64)
            .build()
            .unwrap();
        assert_eq!(d.offsets, vec![0]);
        let mut enc = gpu.encoder("t");
        record_pass(&mut enc, &[d], None);
        gpu.submit_and_wait(enc).unwrap();
        assert_eq!(read(&gpu, &y), expect(&x, 2.0, 1.0));
    }
}

#[test]
fn shared_params_select_and_rewrite() {
    for gpu in common::all_gpus() {
        let x: Vec<f32> = (0..LEN).map(|i| i as f32 * 0.5).collect();
        let xb = gpu.upload("x", &x).unwrap();
        let y0 = gpu.storage("y0", (LEN * 4) as u64).unwrap();
        let y1 = gpu.storage("y1", (LEN * 4) as u64).unwrap();
        let mut pb = ParamBuffer::new(&gpu, 4096).unwrap();
        let o0 = pb.push(&params(2.0, 1.0)).unwrap();
        let o1 = pb.push(&params(-1.0, 3.0)).unwrap();
        assert_ne!(o0, o1);
        assert_eq!(o1 % pb.alignment(), 0);
        let build = |out: &wgpu::Buffer, offset: u32| {
            K.launch(&gpu)
                .template(&[AXPB], &[("WG", 64)])
                .params_at(&pb, offset)
                .unwrap()
                .buffers(&[Some(&xb), Some(out)])
                .workgroups(LEN.div_ceil(64) as u64)
                .build()
                .unwrap()
        };
        let plan = vec![build(&y0, o0), build(&y1, o1)];
        assert_eq!(plan[1].offsets, vec![o1]);
        let run = |plan: &[sparq::gpu::Dispatch]| {
            let mut enc = gpu.encoder("t");
            record_pass(&mut enc, plan, None);
            gpu.submit_and_wait(enc).unwrap();
        };
        run(&plan);
        assert_eq!(read(&gpu, &y0), expect(&x, 2.0, 1.0));
        assert_eq!(read(&gpu, &y1), expect(&x, -1.0, 3.0));
        // Rewrite both params and replay the same dispatches: no bind group is rebuilt.
        pb.write(o0, &params(4.0, 0.0)).unwrap();
        pb.write(o1, &params(0.5, -2.0)).unwrap();
        run(&plan);
        assert_eq!(read(&gpu, &y0), expect(&x, 4.0, 0.0));
        assert_eq!(read(&gpu, &y1), expect(&x, 0.5, -2.0));
        // params_in pushes and binds in one call.
        let y2 = gpu.storage("y2", (LEN * 4) as u64).unwrap();
        let d = K
            .launch(&gpu)
            .template(&[AXPB], &[("WG", 64)])
            .params_in(&mut pb, &params(3.0, 3.0))
            .unwrap()
            .buffers(&[Some(&xb), Some(&y2)])
            .workgroups(LEN.div_ceil(64) as u64)
            .build()
            .unwrap();
        assert!(d.offsets[0] > o1);
        run(&[d]);
        assert_eq!(read(&gpu, &y2), expect(&x, 3.0, 3.0));
        // A misaligned or out-of-range offset is refused.
        assert!(matches!(
            pb.write(o0 + 4, &params(0.0, 0.0)),
            Err(Error::Input(InputError::Invalid(_)))
        ));
        assert!(matches!(
            pb.write(1 << 20, &params(0.0, 0.0)),
            Err(Error::Input(InputError::Invalid(_)))
        ));
        gpu.check().unwrap();
    }
}

/// Per-call scalars through the executor: the pass's second input is the param buffer, so
/// each call's bytes choose what the one recorded dispatch computes; the plan is built once.
#[test]
fn executor_rewrites_params_per_call_without_a_new_plan() {
    use sparq::graph::{Executor, Pass, Step};
    for gpu in common::all_gpus() {
        let mut exec: Executor<usize> = Executor::new(2);
        exec.prepare(&gpu, &LEN, |g, slots| {
            let x = slots.tensor(g, "x", 1, LEN)?;
            let y = slots.tensor(g, "y", 1, LEN)?;
            let mut pb = ParamBuffer::new(g, 256)?;
            let at = pb.push(&params(0.0, 0.0))?;
            let d = K
                .launch(g)
                .template(&[AXPB], &[("WG", 64)])
                .params_at(&pb, at)?
                .buffers(&[Some(&x.buffer), Some(&y.buffer)])
                .workgroups(LEN.div_ceil(64) as u64)
                .build()?;
            Ok(Pass {
                steps: vec![Step::Compute(vec![d])],
                inputs: vec![x.buffer.clone(), pb.buffer().clone()],
                outputs: vec![y],
            })
        })
        .unwrap();
        let x: Vec<f32> = (0..LEN).map(|i| i as f32 - 40.0).collect();
        for (a, b) in [(2.0, 1.0), (-0.5, 7.0), (0.0, -3.0)] {
            let p = params(a, b);
            let inputs: [&[u8]; 2] = [bytemuck::cast_slice(&x), bytemuck::bytes_of(&p)];
            let (out, reader) = exec
                .submit(&gpu, &LEN, &inputs)
                .unwrap()
                .read(&gpu)
                .unwrap();
            exec.recycle(reader);
            assert_eq!(out.tensors[0], expect(&x, a, b), "a = {a}, b = {b}");
        }
        assert_eq!(exec.stats().plans_built, 1);
        gpu.check().unwrap();
    }
}

#[test]
fn mismatches_and_over_limit_grids_are_errors() {
    for gpu in common::all_gpus() {
        let xb = gpu.upload("x", &[0f32; 4]).unwrap();
        let y = gpu.storage("y", 16).unwrap();
        let base = || {
            K.launch(&gpu)
                .template(&[AXPB], &[("WG", 64)])
                .params(&params(1.0, 0.0))
        };
        // Too few and too many buffers.
        let e = base().buffers(&[Some(&xb)]).build().err().unwrap();
        assert!(
            matches!(e, Error::Input(InputError::Invalid(ref m)) if m.contains("1 buffers for 2")),
            "{e}"
        );
        let e = base()
            .buffers(&[Some(&xb), Some(&y), Some(&y)])
            .build()
            .err()
            .unwrap();
        assert!(matches!(e, Error::Input(InputError::Invalid(_))), "{e}");
        // An unbound output.
        let e = base().buffers(&[Some(&xb), None]).build().err().unwrap();
        assert!(
            matches!(e, Error::Input(InputError::Invalid(ref m)) if m.contains("y")),
            "{e}"
        );
        // Missing params.
        let e = K
            .launch(&gpu)
            .template(&[AXPB], &[("WG", 64)])
            .buffers(&[Some(&xb), Some(&y)])
            .build()
            .err()
            .unwrap();
        assert!(matches!(e, Error::Input(InputError::Invalid(_))), "{e}");
        // Grids past the device limit, folded or explicit.
        let max = gpu.caps.max_workgroups_per_dim;
        let e = base()
            .buffers(&[Some(&xb), Some(&y)])
            .workgroups(max as u64 * max as u64 + 1)
            .build()
            .err()
            .unwrap();
        assert!(
            matches!(e, Error::Input(InputError::TooLarge { .. })),
            "{e}"
        );
        let e = base()
            .buffers(&[Some(&xb), Some(&y)])
            .grid((max + 1, 1))
            .build()
            .err()
            .unwrap();
        assert!(
            matches!(e, Error::Input(InputError::TooLarge { .. })),
            "{e}"
        );
        // A template variable without a value is an error, not a panic.
        let e = K
            .launch(&gpu)
            .template(&[AXPB], &[])
            .params(&params(1.0, 0.0))
            .buffers(&[Some(&xb), Some(&y)])
            .build()
            .err()
            .unwrap();
        assert!(
            matches!(e, Error::Input(InputError::Invalid(ref m)) if m.contains("WG")),
            "{e}"
        );
        // Nothing of the refused launches reached the device.
        gpu.check().unwrap();
    }
}

/// The one kernel without params (the streaming-read ceiling) still launches.
#[test]
fn paramless_kernel_runs() {
    for gpu in common::all_gpus() {
        if !gpu.caps.timestamps {
            continue;
        }
        let gbps = sparq::bench::stream_read_gbps(&gpu, 1 << 20, 2).unwrap();
        assert!(gbps > 0.0, "{gbps}");
    }
}
