// Quantizes activation rows to int8 in blocks of 32 values for the dot4I8Packed GEMV: one
// invocation per block, symmetric, step d = max|x| / 127. Each block is three vec4<u32>:
// eight words of four i8, then (d, sum of the quantized values, 0, 0); the GEMV uses the sum
// to subtract the weights' zero point in integer arithmetic.
//
// PAIRED packs the values for int4 weights, whose words hold eight nibbles in k order: word
// 2g holds x[8g], x[8g+2], x[8g+4], x[8g+6] and word 2g+1 the odd ones, matching the even and
// odd nibbles of weight word g once masked into bytes. Otherwise four consecutive values.
struct QParams {
    k4: u32,        // vec4s of x that hold data
    x_stride4: u32, // x row stride in vec4s
    blocks: u32,    // blocks of 32 per row
    rows: u32,      // activation rows
}

@group(0) @binding(0) var<uniform> q: QParams;
@group(0) @binding(1) var<storage, read> x: array<act4>;
@group(0) @binding(2) var<storage, read_write> xq: array<vec4<u32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= q.blocks * q.rows) {
        return;
    }
    let row = i / q.blocks;
    let kv0 = (i % q.blocks) * 8u;
    var v: array<vec4<f32>, 8>;
    var amax = 0.0;
    for (var j = 0u; j < 8u; j++) {
        var t = vec4<f32>(0.0);
        if (kv0 + j < q.k4) {
            t = load_x4(row * q.x_stride4 + kv0 + j);
        }
        v[j] = t;
        let a = abs(t);
        amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
    }
    var inv = 0.0;
    if (amax > 0.0) {
        inv = 127.0 / amax;
    }
    var words: array<u32, 8>;
    var sum = 0;
    for (var g = 0u; g < 4u; g++) {
        let lo = vec4<i32>(clamp(round(v[2u * g] * inv), vec4(-127.0), vec4(127.0)));
        let hi = vec4<i32>(clamp(round(v[2u * g + 1u] * inv), vec4(-127.0), vec4(127.0)));
        sum += lo.x + lo.y + lo.z + lo.w + hi.x + hi.y + hi.z + hi.w;
#if PAIRED
        words[2u * g] = pack4xI8(vec4<i32>(lo.x, lo.z, hi.x, hi.z));
        words[2u * g + 1u] = pack4xI8(vec4<i32>(lo.y, lo.w, hi.y, hi.w));
#else
        words[2u * g] = pack4xI8(lo);
        words[2u * g + 1u] = pack4xI8(hi);
#end
    }
    xq[i * 3u] = vec4<u32>(words[0], words[1], words[2], words[3]);
    xq[i * 3u + 1u] = vec4<u32>(words[4], words[5], words[6], words[7]);
    xq[i * 3u + 2u] = vec4<u32>(bitcast<u32>(amax / 127.0), bitcast<u32>(sum), 0u, 0u);
}
