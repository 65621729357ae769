//! The graph executor on every adapter: plans cached by signature and evicted least recently
//! used first; scratch growth rebuilds plans but leaves persistent slots (contents and
//! identity) alone; write steps replayed every call; several passes in flight read back the
//! right results in any order.

mod common;

use common::all_gpus;
use sparq::Gpu;
use sparq::gpu::read_buffer;
use sparq::graph::{Executor, Pass, Signature, Slots, Step};
use sparq::model::config::Activation;
use sparq::model::ops;

/// A pass of `rows × 4` floats: input → ReLU → output, in scratch slots sized for the rows.
fn relu_pass(gpu: &Gpu, slots: &mut Slots, rows: usize) -> sparq::Result<Pass> {
    let x = slots.tensor(gpu, "x", rows, 4)?;
    let y = slots.tensor(gpu, "y", rows, 4)?;
    let d = ops::elementwise(gpu, Some(Activation::Relu), &x, None, &y)?;
    Ok(Pass::compute(vec![d], x.buffer.clone(), vec![y]))
}

fn floats(v: &[f32]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

#[test]
fn plans_are_cached_by_signature_and_evicted_least_recently_used() {
    for gpu in all_gpus() {
        let mut exec: Executor<Signature> = Executor::new(2);
        // Scratch at its largest first, so that no build below grows it.
        exec.slots_mut().reserve(&gpu, "x", 8 * 16).unwrap();
        exec.slots_mut().reserve(&gpu, "y", 8 * 16).unwrap();
        let (a, b, c) = (
            Signature::new(1, 0),
            Signature::new(2, 0),
            Signature::new(3, 0),
        );
        let prepare = |exec: &mut Executor<Signature>, s: Signature| {
            exec.prepare(&gpu, &s, |g, slots| relu_pass(g, slots, s.batch))
                .unwrap()
        };
        assert!(prepare(&mut exec, a), "first use builds");
        assert!(!prepare(&mut exec, a), "second use hits");
        assert!(prepare(&mut exec, b));
        // `a` is used again, so `b` is now the least recently used and goes for `c`.
        assert!(!prepare(&mut exec, a));
        assert!(prepare(&mut exec, c));
        assert!(exec.contains(&a) && exec.contains(&c) && !exec.contains(&b));
        let s = exec.stats();
        assert_eq!((s.plans_built, s.plans_evicted), (3, 1));
        assert!(prepare(&mut exec, b), "an evicted plan is rebuilt");
        // Each plan still runs its own shape.
        let x = [-1.0f32, 2.0, -3.0, 4.0, 5.0, -6.0, 7.0, -8.0];
        let sub = exec.submit(&gpu, &b, &[&floats(&x)]).unwrap();
        let (out, reader) = sub.read(&gpu).unwrap();
        exec.recycle(reader);
        assert_eq!(out.tensors[0], [0.0, 2.0, 0.0, 4.0, 5.0, 0.0, 7.0, 0.0]);
        // Bad input is a typed error, not a device error.
        let e = exec.submit(&gpu, &b, &[&floats(&[0.0; 64])]).err();
        assert!(
            matches!(e, Some(sparq::Error::Input(sparq::InputError::Shape(_)))),
            "{e:?}"
        );
        let e = exec.submit(&gpu, &Signature::new(9, 9), &[]).err();
        assert!(
            matches!(e, Some(sparq::Error::Input(sparq::InputError::Invalid(_)))),
            "{e:?}"
        );
    }
}

#[test]
fn scratch_growth_rebuilds_plans_but_keeps_persistent_slots() {
    for gpu in all_gpus() {
        let mut exec: Executor<usize> = Executor::new(8);
        let state: Vec<f32> = (0..8).map(|i| i as f32 * 0.5).collect();
        let kept = exec.slots_mut().persistent(&gpu, "state", 32).unwrap();
        gpu.queue.write_buffer(&kept, 0, &floats(&state));
        // A pass that reads the persistent slot: copies it to its output after the ReLU.
        let build = |rows: usize| {
            move |g: &Gpu, slots: &mut Slots| -> sparq::Result<Pass> {
                let mut p = relu_pass(g, slots, rows)?;
                let st = slots.persistent(g, "state", 32)?;
                let out = slots.tensor(g, "state_out", 2, 4)?;
                p.steps.push(Step::Copy {
                    src: st,
                    src_offset: 0,
                    dst: out.buffer.clone(),
                    dst_offset: 0,
                    bytes: 32,
                });
                p.outputs.push(out);
                Ok(p)
            }
        };
        exec.prepare(&gpu, &1, build(1)).unwrap();
        exec.prepare(&gpu, &2, build(1)).unwrap();
        let generation = exec.slots().generation();
        // Ten times the rows: the scratch slots grow, the plans binding the old ones go.
        exec.prepare(&gpu, &10, build(10)).unwrap();
        assert_ne!(exec.slots().generation(), generation);
        assert!(!exec.contains(&1) && !exec.contains(&2) && exec.contains(&10));
        // The persistent slot is the same buffer with the same contents.
        let again = exec.slots_mut().persistent(&gpu, "state", 32).unwrap();
        assert!(again == kept, "a persistent slot was reallocated");
        let bytes = read_buffer(&gpu, &again, 32).unwrap();
        assert_eq!(bytemuck::cast_slice::<u8, f32>(&bytes), state.as_slice());
        assert_eq!(exec.slots().persistent_bytes(), 32);
        // And the new plan reads it.
        let x: Vec<f32> = (0..40).map(|i| i as f32 - 20.0).collect();
        let (out, reader) = exec
            .submit(&gpu, &10, &[&floats(&x)])
            .unwrap()
            .read(&gpu)
            .unwrap();
        exec.recycle(reader);
        let want: Vec<f32> = x.iter().map(|v| v.max(0.0)).collect();
        assert_eq!(out.tensors[0], want);
        assert_eq!(out.tensors[1], state);
        // A persistent slot never grows: asking for more is an error.
        let e = exec.slots_mut().persistent(&gpu, "state", 64).err();
        assert!(
            matches!(e, Some(sparq::Error::Input(sparq::InputError::Shape(_)))),
            "{e:?}"
        );
    }
}

#[test]
fn write_steps_are_replayed_every_call() {
    for gpu in all_gpus() {
        let mut exec: Executor<Signature> = Executor::new(4);
        let key = Signature::new(1, 0);
        let params = [7.0f32, 8.0, 9.0, 10.0];
        exec.prepare(&gpu, &key, |g, slots| {
            let mut p = relu_pass(g, slots, 1)?;
            let block = slots.tensor(g, "params", 1, 4)?;
            p.steps.insert(
                0,
                Step::Write {
                    dst: block.buffer.clone(),
                    offset: 0,
                    bytes: floats(&params),
                },
            );
            p.outputs.push(block);
            Ok(p)
        })
        .unwrap();
        for call in 0..2 {
            let (out, reader) = exec
                .submit(&gpu, &key, &[&floats(&[1.0, -1.0, 2.0, -2.0])])
                .unwrap()
                .read(&gpu)
                .unwrap();
            exec.recycle(reader);
            assert_eq!(out.tensors[0], [1.0, 0.0, 2.0, 0.0]);
            assert_eq!(out.tensors[1], params, "call {call}");
            // Clobber the block: the next call writes it again.
            let Step::Write { dst, .. } = &exec.plan(&key).unwrap().steps[0] else {
                panic!("the write step moved");
            };
            gpu.queue.write_buffer(dst, 0, &floats(&[0.0; 4]));
        }
    }
}

#[test]
fn passes_in_flight_read_back_in_any_order() {
    for gpu in all_gpus() {
        let mut exec: Executor<Signature> = Executor::new(4);
        let key = Signature::new(3, 0);
        exec.prepare(&gpu, &key, |g, slots| relu_pass(g, slots, 3))
            .unwrap();
        let inputs: Vec<Vec<f32>> = (0..4)
            .map(|p| (0..12).map(|i| (i as f32 - 6.0) * (p + 1) as f32).collect())
            .collect();
        let mut pending: Vec<_> = inputs
            .iter()
            .map(|x| Some(exec.submit(&gpu, &key, &[&floats(x)]).unwrap()))
            .collect();
        assert_eq!(exec.stats().submits, 4);
        for p in [2, 0, 3, 1] {
            let (out, reader) = pending[p].take().unwrap().read(&gpu).unwrap();
            exec.recycle(reader);
            let want: Vec<f32> = inputs[p].iter().map(|v| v.max(0.0)).collect();
            assert_eq!(out.tensors[0], want, "pass {p}");
        }
        // Readers come back for reuse: the next passes allocate none.
        let again = exec.submit(&gpu, &key, &[&floats(&inputs[0])]).unwrap();
        let (out, _) = again.read(&gpu).unwrap();
        assert_eq!(out.tensors[0].len(), 12);
    }
}
