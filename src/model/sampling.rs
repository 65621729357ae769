//! Choosing the next token from a logits row: greedy, temperature, top-k, top-p (nucleus) and
//! a repetition penalty, with a seeded generator so that the same seed gives the same tokens
//! on every machine. Shared by the decoder and anything serving it.
//!
//! The filters apply in Hugging Face's order: repetition penalty, temperature, top-k, then
//! top-p on the distribution top-k left (renormalised). All arithmetic after reading the f32
//! logits is f64.

use crate::error::{Error, Result};

/// How to choose tokens. The default is greedy decoding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; `0` chooses the most likely token (greedy).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; `0` keeps all.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p`, in
    /// `(0, 1]`; `1` keeps all.
    pub top_p: f32,
    /// Divides positive (multiplies negative) logits of tokens already in the history
    /// (CTRL's penalty, as Hugging Face applies it); `1` is off.
    pub repetition_penalty: f32,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding (the default).
    pub fn greedy() -> Self {
        Self::default()
    }

    /// Refuses settings that have no meaning (a negative temperature, `top_p` outside
    /// `(0, 1]`, a penalty that is not positive).
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::invalid(format!(
                "temperature {} must be a finite number >= 0",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::invalid(format!(
                "top_p {} must be in (0, 1]",
                self.top_p
            )));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(Error::invalid(format!(
                "repetition_penalty {} must be a finite number > 0",
                self.repetition_penalty
            )));
        }
        Ok(())
    }

    /// Whether these settings always choose the most likely token.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

/// A small seeded generator (xoshiro256**, seeded through SplitMix64): its sequence is fixed
/// by this code, unlike `rand`'s `StdRng`, whose algorithm may change between releases.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// The generator for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// A uniform number in `[0, 1)` (53 random bits).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Refuses a logits row nothing can be chosen from: empty, NaN or `+inf` anywhere, or every
/// entry `-inf` (which masks a token out).
fn check_logits(logits: &[f32]) -> Result<()> {
    if logits.is_empty() {
        return Err(Error::invalid("empty logits"));
    }
    if let Some(i) = logits
        .iter()
        .position(|v| v.is_nan() || *v == f32::INFINITY)
    {
        return Err(Error::invalid(format!(
            "logit {i} is {}: the model produced a non-finite value",
            logits[i]
        )));
    }
    if logits.iter().all(|v| *v == f32::NEG_INFINITY) {
        return Err(Error::invalid(
            "every logit is -inf: no token can be chosen",
        ));
    }
    Ok(())
}

/// The index of the largest logit (the lowest index among equals).
pub fn argmax(logits: &[f32]) -> Result<u32> {
    check_logits(logits)?;
    Ok(argmax_f64(
        &logits.iter().map(|&v| v as f64).collect::<Vec<_>>(),
    ))
}

fn argmax_f64(x: &[f64]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

/// The logits after the repetition penalty over the distinct tokens of `history`.
fn penalised(logits: &[f32], history: &[u32], penalty: f32) -> Result<Vec<f64>> {
    let mut x: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
    if let Some(&t) = history.iter().find(|&&t| t as usize >= logits.len()) {
        return Err(Error::invalid(format!(
            "history token {t} is outside the {} logits",
            logits.len()
        )));
    }
    if penalty != 1.0 {
        let p = penalty as f64;
        let mut seen = vec![false; x.len()];
        for &t in history {
            let t = t as usize;
            if !std::mem::replace(&mut seen[t], true) {
                x[t] = if x[t] > 0.0 { x[t] / p } else { x[t] * p };
            }
        }
    }
    Ok(x)
}

/// The tokens `params` may choose from `logits` after `history`, with their probabilities
/// (summing to 1), most likely first (lower id first among equals). Greedy settings give the
/// one most likely token.
pub fn candidates(
    logits: &[f32],
    history: &[u32],
    params: &SamplingParams,
) -> Result<Vec<(u32, f64)>> {
    params.validate()?;
    check_logits(logits)?;
    let x = penalised(logits, history, params.repetition_penalty)?;
    if params.is_greedy() {
        return Ok(vec![(argmax_f64(&x), 1.0)]);
    }
    let t = params.temperature as f64;
    let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut p: Vec<(u32, f64)> = x
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(i, v)| (i as u32, ((v - m) / t).exp()))
        .filter(|(_, e)| *e > 0.0)
        .collect();
    p.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if params.top_k > 0 {
        p.truncate(params.top_k);
    }
    let sum: f64 = p.iter().map(|e| e.1).sum();
    p.iter_mut().for_each(|e| e.1 /= sum);
    if params.top_p < 1.0 {
        let (target, mut cum) = (params.top_p as f64, 0.0);
        let keep = p
            .iter()
            .position(|e| {
                cum += e.1;
                cum >= target
            })
            .map_or(p.len(), |i| i + 1);
        p.truncate(keep);
        let sum: f64 = p.iter().map(|e| e.1).sum();
        p.iter_mut().for_each(|e| e.1 /= sum);
    }
    Ok(p)
}

/// Chooses tokens with fixed settings and its own seeded generator: the same seed and the
/// same logits give the same tokens.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
}

impl Sampler {
    /// A sampler for `params` (checked), seeded with `params.seed`.
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        Ok(Sampler {
            params,
            rng: Rng::new(params.seed),
        })
    }

    /// The settings.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// The next token from `logits`, given the tokens so far (`history`, for the repetition
    /// penalty). Greedy settings draw no random number.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> Result<u32> {
        let c = candidates(logits, history, &self.params)?;
        if self.params.is_greedy() {
            return Ok(c[0].0);
        }
        let u = self.rng.next_f64();
        let mut cum = 0.0;
        for &(t, p) in &c {
            cum += p;
            if u < cum {
                return Ok(t);
            }
        }
        // Rounding can leave the sum a hair under 1.
        c.last()
            .map(|e| e.0)
            .ok_or_else(|| Error::invariant("sampling had no candidate"))
    }
}
