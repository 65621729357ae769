//! Running a request on the graph executor, split into [`Model::submit`] and [`Model::wait`]
//! so that one device can have several passes in flight: while the GPU computes one batch, the
//! host tokenises and uploads the next and reads back the one before (the scheduler's double
//! buffering). Why that is sound, and the read-back buffer each pass owns, is
//! [`crate::graph::Executor`]'s to say.

use super::network::Request;
use super::{Model, Output};
use crate::error::{InputError, Result};
use crate::gpu::Gpu;
use crate::graph::Submitted;

/// A forward pass submitted to the device and not yet read back: hand it to [`Model::wait`].
pub struct Pending {
    submitted: Submitted,
    rows: usize,
}

impl Model<'_> {
    /// Plans (or reuses the plan of) `request`'s signature, writes its inputs, and submits the
    /// pass with the copies of its outputs, without waiting.
    pub(super) fn submit_request(&self, request: Request) -> Result<Pending> {
        let gpu: &Gpu = &self.gpu;
        // A lost device makes wgpu panic on buffer creation: report it before planning.
        gpu.check()?;
        let mut st = self.state.lock().unwrap();
        let key = request.signature;
        st.exec
            .prepare(gpu, &key, |gpu, slots| self.net.plan(gpu, slots, key))?;
        let inputs: Vec<&[u8]> = request.inputs.iter().map(Vec::as_slice).collect();
        let submitted = st.exec.submit(gpu, &key, &inputs)?;
        st.forwards += 1;
        Ok(Pending {
            submitted,
            rows: request.rows,
        })
    }

    /// Waits for a pass from [`Model::submit`] and returns its results. Passes may be waited
    /// for in any order.
    pub fn wait(&self, pending: Pending) -> Result<Output> {
        let (readout, reader) = pending.submitted.read(&self.gpu)?;
        self.state.lock().unwrap().exec.recycle(reader);
        let out = self.net.output(pending.rows, readout)?;
        check_finite(&out)?;
        Ok(out)
    }
}

/// Refuses results holding a NaN or an infinity: weights and inputs are checked finite when
/// they come in, so one here means the arithmetic overflowed f32, and an answer of `null`s (or
/// a class picked from them) would be wrong, not a result.
fn check_finite(out: &Output) -> Result<()> {
    let first_bad = |v: &[f32]| v.iter().position(|x| !x.is_finite());
    let per_row = out.cols.max(1);
    for (what, v) in [
        ("output", Some(&out.values)),
        ("probabilities", out.probabilities.as_ref()),
    ] {
        if let Some(i) = v.and_then(|v| first_bad(v)) {
            return Err(InputError::NonFinite {
                what: what.into(),
                row: i / per_row,
            }
            .into());
        }
    }
    Ok(())
}
