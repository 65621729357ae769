// C = op(A)·op(B) (+ bias[j]) (+ C where ACCUM) on f32 operands addressed by strides: element
// (i, p) of op(A) is a[i * a_rs + p * a_cs] and (p, j) of op(B) is b[p * b_rs + j * b_cs], so
// one kernel computes a training step's forward x·Wᵀ, dX = dY·W and dW = dYᵀ·X without
// transposed copies of weights or activations. A workgroup owns a 64 × 64 tile of C, each
// invocation 4 × 4 of it (rows ty + 16r, columns tx + 16c), over 16-deep slices of k staged
// in workgroup memory; k is summed in ascending order, one f32 accumulator per output.
struct Params {
    m: u32,
    n: u32,
    k: u32,
    c_rs: u32,
    a_rs: u32,
    a_cs: u32,
    b_rs: u32,
    b_cs: u32,
    // Columns written per row of C: n, then zeros up to n_out (a tensor's row padding).
    n_out: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

override BIAS: u32 = 0u;
override ACCUM: u32 = 0u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

// sa[kk * 64 + i] = op(A)[row0 + i, k0 + kk]; sb[kk * 64 + j] = op(B)[k0 + kk, col0 + j].
var<workgroup> sa: array<f32, 1024>;
var<workgroup> sb: array<f32, 1024>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let tx = t % 16u;
    let ty = t / 16u;
    let row0 = wg.y * 64u;
    let col0 = wg.x * 64u;
    // acc{r}[q] is C[row ty + 16r, column tx + 16q]: a vec4 a row, so that every register
    // is named and the inner loop is four vector multiply-adds (an array indexed in a loop
    // may live in local memory, and every multiply-add then loads and stores it).
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += 16u) {
        for (var e = 0u; e < 4u; e++) {
            let idx = t + e * 256u;
            // A: consecutive invocations walk k (contiguous when a_cs = 1).
            let i = idx / 16u;
            let ka = idx % 16u;
            var va = 0.0;
            if (row0 + i < p.m && k0 + ka < p.k) {
                va = a[(row0 + i) * p.a_rs + (k0 + ka) * p.a_cs];
            }
            sa[ka * 64u + i] = va;
            // B: consecutive invocations walk j (contiguous when b_cs = 1).
            let j = idx % 64u;
            let kb = idx / 64u;
            var vb = 0.0;
            if (col0 + j < p.n && k0 + kb < p.k) {
                vb = b[(k0 + kb) * p.b_rs + (col0 + j) * p.b_cs];
            }
            sb[kb * 64u + j] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            let sr = kk * 64u;
            let av = vec4<f32>(sa[sr + ty], sa[sr + ty + 16u], sa[sr + ty + 32u], sa[sr + ty + 48u]);
            let bv = vec4<f32>(sb[sr + tx], sb[sr + tx + 16u], sb[sr + tx + 32u], sb[sr + tx + 48u]);
            acc0 += av.x * bv;
            acc1 += av.y * bv;
            acc2 += av.z * bv;
            acc3 += av.w * bv;
        }
        workgroupBarrier();
    }
    var acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var r = 0u; r < 4u; r++) {
        let row = row0 + ty + 16u * r;
        for (var q = 0u; q < 4u; q++) {
            let col = col0 + tx + 16u * q;
            if (row < p.m && col >= p.n && col < p.n_out) {
                c[row * p.c_rs + col] = 0.0;
            }
            if (row < p.m && col < p.n) {
                var v = acc[r][q];
                if (BIAS != 0u) {
                    v += bias[col];
                }
                let at = row * p.c_rs + col;
                if (ACCUM != 0u) {
                    v += c[at];
                }
                c[at] = v;
            }
        }
    }
}
