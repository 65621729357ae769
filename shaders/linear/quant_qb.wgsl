// Quantizes activation rows to int8 in blocks of QB = 16 · QV4 values for the binary and
// ternary dot4I8Packed GEMV (gemv_low_bit_q8.wgsl): one invocation per block, symmetric, step
// d = max|x| / 127, rounded to nearest even as quant_q8.wgsl does.
//
// Unlike quant_q8's interleaved 48-byte blocks, a row keeps its values contiguous (four
// consecutive values a word, QV4 vec4s a block, so consecutive GEMV lanes read consecutive
// bytes and a block costs one byte of x per weight), followed by the blocks' (d, sum) pairs,
// two to a vec4. A row is `blocks · QV4 + ceil(blocks / 2)` vec4s.
struct QParams {
    k4: u32,        // vec4s of x that hold data
    x_stride4: u32, // x row stride in vec4s
    blocks: u32,    // blocks per row
    rows: u32,      // activation rows
}

const QV4: u32 = {{QV4}}u;

@group(0) @binding(0) var<uniform> q: QParams;
@group(0) @binding(1) var<storage, read> x: array<act4>;
@group(0) @binding(2) var<storage, read_write> xq: array<vec4<u32>>;

fn x_at(row: u32, kv: u32) -> vec4<f32> {
    if (kv < q.k4) {
        return load_x4(row * q.x_stride4 + kv);
    }
    return vec4<f32>(0.0);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= q.blocks * q.rows) {
        return;
    }
    let row = i / q.blocks;
    let blk = i % q.blocks;
    // x vec4s of this block: four vec4s of x per output vec4 of sixteen values, all loaded
    // before the first is used (a loop would wait for each load in turn).
    let kv0 = blk * QV4 * 4u;
#unroll o QV4
#unroll c 4
    let v{o}_{c} = x_at(row, kv0 + 4u * {o}u + {c}u);
#end
#end
    var amax = 0.0;
#unroll o QV4
#unroll c 4
    let a{o}_{c} = abs(v{o}_{c});
    amax = max(amax, max(max(a{o}_{c}.x, a{o}_{c}.y), max(a{o}_{c}.z, a{o}_{c}.w)));
#end
#end
    var inv = 0.0;
    if (amax > 0.0) {
        inv = 127.0 / amax;
    }
    var sum = 0;
#unroll o QV4
#unroll c 4
    let t{o}_{c} = vec4<i32>(clamp(round(v{o}_{c} * inv), vec4(-127.0), vec4(127.0)));
    sum += t{o}_{c}.x + t{o}_{c}.y + t{o}_{c}.z + t{o}_{c}.w;
#end
#end
    let stride = q.blocks * QV4 + (q.blocks + 1u) / 2u;
    let out0 = row * stride + blk * QV4;
#unroll o QV4
    xq[out0 + {o}u] = vec4<u32>(pack4xI8(t{o}_0), pack4xI8(t{o}_1), pack4xI8(t{o}_2), pack4xI8(t{o}_3));
#end
    // The (d, sum) pair of this block, in its half of the row's meta vec4.
    let pairs = row * stride + q.blocks * QV4 + blk / 2u;
    let pair = vec2<u32>(bitcast<u32>(amax / 127.0), bitcast<u32>(sum));
    // Two blocks share a meta vec4: each stores only its own two words.
    let half = 2u * (blk & 1u);
    xq[pairs][half] = pair.x;
    xq[pairs][half + 1u] = pair.y;
}
