// Addressing of the paged KV cache, shared by kv_append, paged_attention and paged_combine.
// Token row r is (sequence, position) = (rows[2r], rows[2r + 1]); the block ids of sequence s
// are tables[s · table_stride ..]; position p lives in block table[p / block_size] at offset
// p % block_size. A pool is blocks × kv_heads × block_size × head_dim f16, packed in pairs.

// Keys row (seq, pos) attends to: none for a sequence past the tables, else pos + 1 clamped
// to the plan's max_context and to what a table row can address, so that no per-call
// metadata can make a kernel read outside the tables (cap ≥ 1 is the host's to ensure).
fn paged_keys(seq: u32, pos: u32, seqs: u32, max_context: u32, table_stride: u32,
              block_size: u32) -> u32 {
    if (seq >= seqs) {
        return 0u;
    }
    return min(pos, min(max_context, table_stride * block_size) - 1u) + 1u;
}

// The u32 word of the first pair of the head-kvh row at offset `off` of `block`.
fn paged_slot(block: u32, kvh: u32, kv_heads: u32, off: u32, block_size: u32, half: u32) -> u32 {
    return ((block * kv_heads + kvh) * block_size + off) * half;
}
