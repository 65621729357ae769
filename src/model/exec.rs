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
/// A batch over the device's binding limits is several passes, read back in order.
pub struct Pending {
    parts: Vec<(Submitted, usize)>,
    /// The caller's index of each result row, when the passes ran the rows reordered.
    order: Option<Vec<usize>>,
}

impl Pending {
    /// A pending pass of one request.
    pub(super) fn one(submitted: Submitted, rows: usize) -> Self {
        Pending {
            parts: vec![(submitted, rows)],
            order: None,
        }
    }
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
        Ok(Pending::one(submitted, request.rows))
    }

    /// Submits each of `requests` (the passes of one batch, in order); `order`: the caller's
    /// index of each row they yield, when they run the batch reordered.
    pub(super) fn submit_all(
        &self,
        requests: Vec<Request>,
        order: Option<Vec<usize>>,
    ) -> Result<Pending> {
        let mut parts = Vec::with_capacity(requests.len());
        for r in requests {
            parts.extend(self.submit_request(r)?.parts);
        }
        Ok(Pending { parts, order })
    }

    /// Waits for a pass from [`Model::submit`] and returns its results (those of every pass
    /// of a split batch, concatenated in order). Passes may be waited for in any order.
    pub fn wait(&self, pending: Pending) -> Result<Output> {
        let mut whole: Option<Output> = None;
        for (submitted, rows) in pending.parts {
            let (readout, reader) = submitted.read(&self.gpu)?;
            self.state.lock().unwrap().exec.recycle(reader);
            let out = self.net.output(rows, readout)?;
            whole = Some(match whole {
                None => out,
                Some(w) => concat(w, out),
            });
        }
        let mut whole =
            whole.ok_or_else(|| crate::Error::invariant("a pending pass with no parts"))?;
        if let Some(order) = &pending.order {
            whole = super::batching::unpermute(whole, order)?;
        }
        check_finite(&whole)?;
        Ok(whole)
    }
}

/// The results of two consecutive passes as those of one.
fn concat(mut a: Output, b: Output) -> Output {
    a.rows += b.rows;
    a.values.extend(b.values);
    a.probabilities = match (a.probabilities, b.probabilities) {
        (Some(mut p), Some(q)) => {
            p.extend(q);
            Some(p)
        }
        _ => None,
    };
    a.gpu_seconds = match (a.gpu_seconds, b.gpu_seconds) {
        (Some(x), Some(y)) => Some(x + y),
        _ => None,
    };
    a
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
