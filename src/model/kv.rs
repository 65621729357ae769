//! The host's side of a paged KV cache, shared by every decoder: which fixed-size blocks of
//! the device pool each sequence owns (its block table) and how many of its positions are
//! filled. Many sequences of different lengths share one pool without fragmentation, since a
//! sequence grows one whole block at a time and gives all of them back when it ends: this is
//! what continuous batching needs (a server admits a request when its blocks are free, not
//! when one contiguous region is).
//!
//! Block 0 is never handed out: a step's padding rows write their keys and values there and
//! the tables of padding sequences point at it, so a padded plan needs no special case.

use crate::error::{DeviceError, Error, Result};
use std::collections::HashMap;

/// A sequence in a [`PagedCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(pub u64);

/// The block the padding of a step writes to (never owned by a sequence).
pub const TRASH_BLOCK: u32 = 0;

#[derive(Clone, Debug, Default)]
struct Sequence {
    blocks: Vec<u32>,
    len: usize,
}

/// Block tables of the sequences sharing one pool of `blocks` blocks of `block_size` tokens.
#[derive(Clone, Debug)]
pub struct PagedCache {
    block_size: usize,
    total: usize,
    free: Vec<u32>,
    seqs: HashMap<SeqId, Sequence>,
    next: u64,
}

impl PagedCache {
    /// A pool of `blocks` blocks (block 0 included, which is kept back) of `block_size` tokens.
    pub fn new(block_size: usize, blocks: usize) -> Result<Self> {
        if block_size == 0 || blocks < 2 || blocks > u32::MAX as usize {
            return Err(Error::invalid(format!(
                "a paged KV cache needs a block size ≥ 1 and 2..=2^32-1 blocks, got {block_size} \
                 and {blocks}"
            )));
        }
        Ok(PagedCache {
            block_size,
            total: blocks,
            // Popped from the back: low block ids are handed out first.
            free: (1..blocks as u32).rev().collect(),
            seqs: HashMap::new(),
            next: 0,
        })
    }

    /// Tokens per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks a sequence can own (the pool less the trash block).
    pub fn capacity_blocks(&self) -> usize {
        self.total - 1
    }

    /// Blocks free now.
    pub fn free_blocks(&self) -> usize {
        self.free.len()
    }

    /// Sequences open now.
    pub fn sequences(&self) -> usize {
        self.seqs.len()
    }

    /// Opens an empty sequence (it owns no block until [`Self::reserve`]).
    pub fn open(&mut self) -> SeqId {
        let id = SeqId(self.next);
        self.next += 1;
        self.seqs.insert(id, Sequence::default());
        id
    }

    /// Closes `seq`, giving its blocks back; closing an unknown sequence does nothing.
    pub fn close(&mut self, seq: SeqId) {
        if let Some(s) = self.seqs.remove(&seq) {
            self.free.extend(s.blocks.into_iter().rev());
        }
    }

    fn get(&self, seq: SeqId) -> Result<&Sequence> {
        self.seqs
            .get(&seq)
            .ok_or_else(|| Error::invalid(format!("sequence {} is not open", seq.0)))
    }

    fn get_mut(&mut self, seq: SeqId) -> Result<&mut Sequence> {
        self.seqs
            .get_mut(&seq)
            .ok_or_else(|| Error::invalid(format!("sequence {} is not open", seq.0)))
    }

    /// Positions of `seq` that hold keys and values.
    pub fn len(&self, seq: SeqId) -> Result<usize> {
        Ok(self.get(seq)?.len)
    }

    /// The block table of `seq`: block `i` holds its positions `i·block_size ..`.
    pub fn table(&self, seq: SeqId) -> Result<&[u32]> {
        Ok(&self.get(seq)?.blocks)
    }

    /// Blocks needed to hold `tokens` positions.
    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }

    /// Blocks `seq` would need to take to grow by `extra` positions.
    pub fn blocks_needed(&self, seq: SeqId, extra: usize) -> Result<usize> {
        let s = self.get(seq)?;
        Ok(self
            .blocks_for(s.len + extra)
            .saturating_sub(s.blocks.len()))
    }

    /// Gives `seq` the blocks for `extra` more positions, or none at all when the pool has too
    /// few free (a [`DeviceError::CacheFull`]: retry once others close).
    pub fn reserve(&mut self, seq: SeqId, extra: usize) -> Result<()> {
        self.reserve_all(&[(seq, extra)])
    }

    /// [`Self::reserve`] for several sequences at once (a step's chunks), all or none.
    pub fn reserve_all(&mut self, wants: &[(SeqId, usize)]) -> Result<()> {
        let mut needed = 0;
        for &(seq, extra) in wants {
            needed += self.blocks_needed(seq, extra)?;
        }
        if needed > self.free.len() {
            return Err(DeviceError::CacheFull {
                needed,
                free: self.free.len(),
                total: self.capacity_blocks(),
            }
            .into());
        }
        for &(seq, extra) in wants {
            let n = self.blocks_needed(seq, extra)?;
            let at = self.free.len() - n;
            let taken: Vec<u32> = self.free.drain(at..).rev().collect();
            self.get_mut(seq)?.blocks.extend(taken);
        }
        Ok(())
    }

    /// Marks `n` more positions of `seq` as filled (after a step wrote them); they must have
    /// been reserved.
    pub fn advance(&mut self, seq: SeqId, n: usize) -> Result<()> {
        let bs = self.block_size;
        let s = self.get_mut(seq)?;
        if s.len + n > s.blocks.len() * bs {
            return Err(Error::invariant(format!(
                "sequence {} advanced to {} positions with blocks for {}",
                seq.0,
                s.len + n,
                s.blocks.len() * bs
            )));
        }
        s.len += n;
        Ok(())
    }

    /// Forgets the positions of `seq` from `len` on (keeping its blocks), e.g. to rewrite them.
    pub fn truncate(&mut self, seq: SeqId, len: usize) -> Result<()> {
        let s = self.get_mut(seq)?;
        s.len = s.len.min(len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_share_the_pool_and_give_blocks_back() {
        let mut c = PagedCache::new(16, 5).unwrap();
        assert_eq!(c.capacity_blocks(), 4);
        let a = c.open();
        let b = c.open();
        c.reserve(a, 17).unwrap();
        assert_eq!(c.table(a).unwrap(), &[1, 2]);
        c.advance(a, 17).unwrap();
        c.reserve(b, 1).unwrap();
        assert_eq!(c.table(b).unwrap(), &[3]);
        // 15 more positions fit in a's second block; 16 need a third.
        assert_eq!(c.blocks_needed(a, 15).unwrap(), 0);
        assert_eq!(c.blocks_needed(a, 16).unwrap(), 1);
        // Two more blocks than are free: nothing is taken.
        let full = c.reserve(b, 16 * 3).unwrap_err();
        assert!(matches!(
            full,
            Error::Device(DeviceError::CacheFull {
                needed: 2,
                free: 1,
                total: 4
            })
        ));
        assert_eq!(c.free_blocks(), 1);
        c.close(a);
        assert_eq!(c.free_blocks(), 3);
        c.reserve(b, 16 * 3).unwrap();
        assert_eq!(c.table(b).unwrap().len(), 3);
        assert!(!c.table(b).unwrap().contains(&TRASH_BLOCK));
        // Advancing past the reserved blocks is a bug, and an unknown sequence an input error.
        assert!(c.advance(b, 16 * 3 + 1).is_err());
        assert!(c.len(a).is_err());
        assert!(PagedCache::new(0, 4).is_err() && PagedCache::new(16, 1).is_err());
    }
}
