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
    var acc: array<array<f32, 4>, 4>;
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
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var r = 0u; r < 4u; r++) {
                av[r] = sa[kk * 64u + ty + 16u * r];
                bv[r] = sb[kk * 64u + tx + 16u * r];
            }
            for (var r = 0u; r < 4u; r++) {
                for (var q = 0u; q < 4u; q++) {
                    acc[r][q] += av[r] * bv[q];
                }
            }
        }
        workgroupBarrier();
    }
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
