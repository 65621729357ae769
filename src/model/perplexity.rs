//! Perplexity of a token stream under any [`CausalLm`]: the stream is cut into windows of
//! `context` tokens, each scored from an empty cache (every token of a window but its first
//! is predicted from those before it in the window), and the perplexity is `exp` of the mean
//! negative log-likelihood over all predicted tokens. Log-softmax is taken in f64 on the host.

use super::decode::{CausalLm, Chunk, LogitRows};
use crate::error::{Error, Result};

/// Rows a window is scored in per step at most.
const SCORE_CHUNK: usize = 256;

/// A perplexity measurement.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Perplexity {
    /// `exp(nll / predicted)`.
    pub perplexity: f64,
    /// Sum of the negative log-likelihoods (natural log).
    pub nll: f64,
    /// Tokens predicted.
    pub predicted: usize,
    /// Windows scored.
    pub windows: usize,
    /// GPU time of the steps, where the device has timestamps.
    pub gpu_seconds: f64,
}

/// `-log softmax(logits)[target]` in f64.
pub fn nll(logits: &[f32], target: u32) -> Result<f64> {
    let t = target as usize;
    if t >= logits.len() {
        return Err(Error::invalid(format!(
            "token {target} is outside the {} logits",
            logits.len()
        )));
    }
    let m = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    if !m.is_finite() {
        return Err(Error::invalid("a logit row is not finite"));
    }
    let sum: f64 = logits.iter().map(|&v| (v as f64 - m).exp()).sum();
    let nll = m + sum.ln() - logits[t] as f64;
    if !nll.is_finite() {
        return Err(Error::invalid("a logit row is not finite"));
    }
    Ok(nll)
}

/// The perplexity of `tokens` under `lm` in windows of `context` tokens (a last window of a
/// single token predicts nothing and is skipped); `progress` hears (tokens done, total).
pub fn perplexity(
    lm: &dyn CausalLm,
    tokens: &[u32],
    context: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<Perplexity> {
    if context < 2 || context > lm.max_context() {
        return Err(Error::invalid(format!(
            "perplexity context {context} must be in 2..={}",
            lm.max_context()
        )));
    }
    if tokens.len() < 2 {
        return Err(Error::invalid(
            "perplexity needs at least two tokens (one to predict)",
        ));
    }
    let mut out = Perplexity {
        perplexity: 0.0,
        nll: 0.0,
        predicted: 0,
        windows: 0,
        gpu_seconds: 0.0,
    };
    for (w, window) in tokens.chunks(context).enumerate() {
        if window.len() < 2 {
            continue;
        }
        let seq = lm.open();
        let scored = score_window(lm, seq, window, &mut out);
        lm.close(seq);
        scored?;
        out.windows += 1;
        progress((w * context + window.len()).min(tokens.len()), tokens.len());
    }
    out.perplexity = (out.nll / out.predicted as f64).exp();
    Ok(out)
}

fn score_window(
    lm: &dyn CausalLm,
    seq: super::kv::SeqId,
    window: &[u32],
    out: &mut Perplexity,
) -> Result<()> {
    for (c, part) in window.chunks(SCORE_CHUNK).enumerate() {
        let step = lm.step(&[Chunk {
            seq,
            tokens: part,
            logits: LogitRows::All,
        }])?;
        out.gpu_seconds += step.gpu_seconds.unwrap_or(0.0);
        let start = c * SCORE_CHUNK;
        for (i, row) in step.logits.iter().enumerate() {
            // Row i predicts the token after position start + i.
            if let Some(&next) = window.get(start + i + 1) {
                out.nll += nll(row, next)?;
                out.predicted += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn nll_is_the_negative_log_softmax() {
        let l = [1.0f32, 2.0, 3.0];
        let z: f64 = l.iter().map(|&v| (v as f64).exp()).sum();
        let want = -(2.0f64.exp() / z).ln();
        assert!((super::nll(&l, 1).unwrap() - want).abs() < 1e-12);
        assert!(super::nll(&l, 3).is_err());
        assert!(super::nll(&[f32::NAN], 0).is_err());
        assert!(super::nll(&[1.0, f32::NAN], 0).is_err());
    }
}
