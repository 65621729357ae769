//! What every decoder on the device offers the layers above it (the [`Generator`], the
//! server's continuous batching): sequences in a paged KV cache ([`super::kv`]) and a *step*
//! that appends tokens to several of them at once and returns the logits asked for
//! ([`CausalLm`]). A step of prompt chunks is a prefill, a step of one token per sequence a
//! batched decode; both are one submit of a recorded pass.
//!
//! [`StepLayout`] turns a step into the per-call bytes such a pass reads, padded to a few
//! bucketed shapes so that few plans are ever built: one token id and one `(sequence,
//! position)` pair per row, one block table per sequence, and the rows whose logits are read
//! back. Padding rows belong to a padding sequence whose table names only
//! [`super::kv::TRASH_BLOCK`].
//!
//! [`Generator`]: super::generate::Generator

use super::kv::{PagedCache, SeqId, TRASH_BLOCK};
use crate::error::{Error, Result};

/// Which logits a chunk wants back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitRows {
    /// None (a prompt chunk that is not the last).
    None,
    /// The last token's (what generation samples from).
    Last,
    /// Every token's (perplexity, scoring).
    All,
    /// Only the index of the last token's largest logit (greedy decoding): one word read back
    /// instead of a row of logits when every chunk of the step asks for this.
    LastArgmax,
}

/// One sequence's part of a step: tokens appended after its cached positions.
#[derive(Clone, Copy, Debug)]
pub struct Chunk<'a> {
    /// The sequence.
    pub seq: SeqId,
    /// Its new tokens (at least one).
    pub tokens: &'a [u32],
    /// The logits it wants.
    pub logits: LogitRows,
}

/// What a step returns.
#[derive(Clone, Debug, Default)]
pub struct StepOutput {
    /// Logit rows, chunk by chunk in order, of the chunks that asked for [`LogitRows::Last`]
    /// or [`LogitRows::All`].
    pub logits: Vec<Vec<f32>>,
    /// The argmax of the last logits of each chunk that asked for [`LogitRows::LastArgmax`],
    /// in chunk order.
    pub argmax: Vec<u32>,
    /// GPU time of the pass, where the device has timestamp queries.
    pub gpu_seconds: Option<f64>,
    /// Host time of the step on its critical path: building the inputs, recording (unless
    /// recorded ahead) and submitting the pass, copying the results out once it is done.
    pub host_seconds: f64,
}

/// How full a decoder's KV cache is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CacheUsage {
    /// Tokens per block.
    pub block_size: usize,
    /// Blocks free now.
    pub free_blocks: usize,
    /// Blocks a sequence can own in all.
    pub total_blocks: usize,
}

/// A causal language model on a device with a paged KV cache.
pub trait CausalLm: Send + Sync {
    /// Tokens of the vocabulary (the width of a logit row).
    fn vocab_size(&self) -> usize;
    /// Longest sequence (prompt and generated tokens).
    fn max_context(&self) -> usize;
    /// Opens an empty sequence.
    fn open(&self) -> SeqId;
    /// Closes a sequence, freeing its cache blocks.
    fn close(&self, seq: SeqId);
    /// Positions `seq` holds.
    fn len(&self, seq: SeqId) -> Result<usize>;
    /// Forgets the positions of `seq` from `len` on.
    fn truncate(&self, seq: SeqId, len: usize) -> Result<()>;
    /// The KV cache's blocks now.
    fn cache_usage(&self) -> CacheUsage;
    /// Blocks `seq` would have to take to grow by `extra` positions (what a scheduler checks
    /// against [`CacheUsage::free_blocks`] before a step).
    fn blocks_needed(&self, seq: SeqId, extra: usize) -> Result<usize>;
    /// Appends each chunk's tokens to its sequence (all or none: on an error no sequence
    /// moves) and returns the logits asked for.
    fn step(&self, chunks: &[Chunk<'_>]) -> Result<StepOutput>;
}

/// Rows of a step are padded up to this shape: powers of two to 64, then multiples of 64.
pub fn bucket_rows(n: usize) -> usize {
    if n <= 64 {
        n.max(1).next_power_of_two()
    } else {
        n.next_multiple_of(64)
    }
}

/// A step's context bound (the longest sequence after it) padded to a power of two of at
/// least 64 positions and at most `max_context` rounded up to whole blocks.
pub fn bucket_context(n: usize, max_context: usize, block_size: usize) -> usize {
    let cap = max_context.next_multiple_of(block_size);
    n.max(64).next_power_of_two().min(cap).max(block_size)
}

/// Checks `chunks` against `cache` and the model (`vocab` tokens, `max_context` positions):
/// at least one chunk, each with tokens, no sequence twice, every token in the vocabulary, no
/// sequence past the context. Returns the longest sequence after the step.
pub fn check(
    chunks: &[Chunk<'_>],
    cache: &PagedCache,
    vocab: usize,
    max_context: usize,
) -> Result<usize> {
    if chunks.is_empty() {
        return Err(Error::invalid("a decoder step needs at least one sequence"));
    }
    let mut longest = 0;
    for (i, c) in chunks.iter().enumerate() {
        if c.tokens.is_empty() {
            return Err(Error::invalid(format!(
                "sequence {} has no new tokens",
                c.seq.0
            )));
        }
        if chunks[..i].iter().any(|o| o.seq == c.seq) {
            return Err(Error::invalid(format!(
                "sequence {} appears twice in one step",
                c.seq.0
            )));
        }
        if let Some(&t) = c.tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::invalid(format!(
                "token {t} is outside the vocabulary of {vocab}"
            )));
        }
        let len = cache.len(c.seq)? + c.tokens.len();
        if len > max_context {
            return Err(Error::invalid(format!(
                "sequence {} would hold {len} positions, over the model's context of \
                 {max_context}",
                c.seq.0
            )));
        }
        longest = longest.max(len);
    }
    Ok(longest)
}

/// The shape a step's plan is recorded for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StepShape {
    /// Token rows (padded).
    pub rows: usize,
    /// Block tables, the padding sequence's last.
    pub seqs: usize,
    /// Logit rows read back (padded).
    pub logit_rows: usize,
    /// Positions a row may attend to, at most (a multiple of the block size).
    pub context: usize,
    /// Whether the pass reads back each logit row's argmax instead of the row.
    pub argmax: bool,
    /// Block ids per table (`context / block_size`).
    pub table_stride: usize,
}

/// A step's per-call inputs, in the order a decoder plan takes them.
#[derive(Clone, Debug)]
pub struct StepLayout {
    /// The plan's shape.
    pub shape: StepShape,
    /// One token id per row (`u32`).
    pub tokens: Vec<u32>,
    /// `(sequence, position)` per row.
    pub rows: Vec<u32>,
    /// `seqs × table_stride` block ids.
    pub tables: Vec<u32>,
    /// Row of each logit row read back.
    pub logit_ids: Vec<u32>,
    /// Logit rows each chunk gets (the real ones come first in `logit_ids`).
    pub logits_per_chunk: Vec<usize>,
}

impl StepLayout {
    /// Checks `chunks` against `cache` and the model (`vocab` tokens, `max_context`
    /// positions) and lays them out; the blocks they need must have been reserved.
    pub fn new(
        chunks: &[Chunk<'_>],
        cache: &PagedCache,
        vocab: usize,
        max_context: usize,
    ) -> Result<StepLayout> {
        let longest = check(chunks, cache, vocab, max_context)?;
        let bs = cache.block_size();
        for c in chunks {
            let len = cache.len(c.seq)? + c.tokens.len();
            if cache.table(c.seq)?.len() * bs < len {
                return Err(Error::invariant(format!(
                    "sequence {} has no blocks reserved for {len} positions",
                    c.seq.0
                )));
            }
        }
        let real_rows: usize = chunks.iter().map(|c| c.tokens.len()).sum();
        let context = bucket_context(longest, max_context, bs);
        let table_stride = context / bs;
        let pad_seq = chunks.len();
        let rows = bucket_rows(real_rows);
        let seqs = bucket_rows(chunks.len()) + 1;
        let mut layout = StepLayout {
            shape: StepShape {
                rows,
                seqs,
                logit_rows: 0,
                context,
                argmax: chunks
                    .iter()
                    .all(|c| matches!(c.logits, LogitRows::LastArgmax | LogitRows::None)),
                table_stride,
            },
            tokens: Vec::with_capacity(rows),
            rows: Vec::with_capacity(2 * rows),
            tables: vec![TRASH_BLOCK; seqs * table_stride],
            logit_ids: Vec::new(),
            logits_per_chunk: Vec::with_capacity(chunks.len()),
        };
        for (s, c) in chunks.iter().enumerate() {
            let base = cache.len(c.seq)?;
            let table = cache.table(c.seq)?;
            let used = table.len().min(table_stride);
            layout.tables[s * table_stride..s * table_stride + used]
                .copy_from_slice(&table[..used]);
            let row0 = layout.tokens.len() as u32;
            for (i, &t) in c.tokens.iter().enumerate() {
                layout.tokens.push(t);
                layout.rows.extend([s as u32, (base + i) as u32]);
            }
            let n = c.tokens.len() as u32;
            let picked: Vec<u32> = match c.logits {
                LogitRows::None => Vec::new(),
                LogitRows::Last | LogitRows::LastArgmax => vec![row0 + n - 1],
                LogitRows::All => (row0..row0 + n).collect(),
            };
            layout.logits_per_chunk.push(picked.len());
            layout.logit_ids.extend(picked);
        }
        while layout.tokens.len() < rows {
            layout.tokens.push(0);
            layout.rows.extend([pad_seq as u32, 0]);
        }
        let real_logits = layout.logit_ids.len();
        // A step without logits still reads one row back (a pass has at least one output).
        let logit_rows = bucket_rows(real_logits.max(1));
        layout.logit_ids.resize(logit_rows, 0);
        layout.shape.logit_rows = logit_rows;
        Ok(layout)
    }

    /// Logit rows that are real (the rest is padding).
    pub fn real_logits(&self) -> usize {
        self.logits_per_chunk.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_padded_to_its_bucket_with_the_padding_on_the_trash_block() {
        let mut cache = PagedCache::new(4, 16).unwrap();
        let (a, b) = (cache.open(), cache.open());
        cache.reserve(a, 6).unwrap();
        cache.advance(a, 5).unwrap();
        cache.reserve(b, 3).unwrap();
        let chunks = [
            Chunk {
                seq: a,
                tokens: &[7],
                logits: LogitRows::Last,
            },
            Chunk {
                seq: b,
                tokens: &[1, 2, 3],
                logits: LogitRows::All,
            },
        ];
        let l = StepLayout::new(&chunks, &cache, 10, 100).unwrap();
        assert_eq!(l.shape.rows, 4);
        assert_eq!(l.shape.seqs, 3);
        assert_eq!(l.shape.context, 64);
        assert_eq!(l.shape.table_stride, 16);
        assert_eq!(l.tokens, [7, 1, 2, 3]);
        assert_eq!(l.rows, [0, 5, 1, 0, 1, 1, 1, 2]);
        assert_eq!(&l.tables[..3], &[1, 2, 0]);
        assert_eq!(l.tables[16], 3);
        assert!(l.tables[32..].iter().all(|&b| b == TRASH_BLOCK));
        assert_eq!(l.logit_ids, [0, 1, 2, 3]);
        assert_eq!(l.logits_per_chunk, [1, 3]);
        // A token outside the vocabulary, a context overrun, a repeated sequence.
        let bad = [Chunk {
            seq: a,
            tokens: &[10],
            logits: LogitRows::Last,
        }];
        assert!(StepLayout::new(&bad, &cache, 10, 100).is_err());
        assert!(StepLayout::new(&chunks[..1], &cache, 10, 5).is_err());
        assert!(StepLayout::new(&[chunks[0], chunks[0]], &cache, 10, 100).is_err());
        assert_eq!(bucket_rows(65), 128);
        assert_eq!(bucket_rows(3), 4);
        assert_eq!(bucket_context(5000, 8192, 16), 8192);
        assert_eq!(bucket_context(100, 90, 16), 96);
    }
}
