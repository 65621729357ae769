// Portable GEMM for many activation rows: a workgroup computes a BM × BN tile of y, staging
// BK-deep slices of x and of the dequantized weights in workgroup memory; each invocation
// accumulates a 4 × 4 block in registers.
const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 32u;
const BLOCK_K: u32 = BLOCK_VEC4 * 4u;

var<workgroup> xs: array<vec4<f32>, BK * BM / 4u>; // [k][m / 4]
var<workgroup> ws: array<vec4<f32>, BK * BN / 4u>; // [k][n / 4]

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let n0 = wg.x * BN;
    let m0 = wg.y * BM;
    let tx = li % 16u; // which 4 columns
    let ty = li / 16u; // which 4 rows
    var acc: array<vec4<f32>, 4>;
    let k_end = p.row_blocks * BLOCK_K;
    for (var k0 = 0u; k0 < k_end; k0 += BK) {
        // x tile: BM rows × BK/4 vec4s, two per invocation, stored transposed.
        for (var i = 0u; i < 2u; i++) {
            let idx = li + i * 256u;
            let r = idx / (BK / 4u);
            let kv = idx % (BK / 4u);
            let gm = m0 + r;
            let gk4 = k0 / 4u + kv;
            var v = vec4<f32>(0.0);
            if (gm < p.m && gk4 < p.k4) {
                v = load_x4(gm * p.x_stride4 + gk4);
            }
            for (var c = 0u; c < 4u; c++) {
                xs[(kv * 4u + c) * (BM / 4u) + r / 4u][r % 4u] = v[c];
            }
        }
        // Weight tile: BN rows × BK/BLOCK_K blocks, decoded to f32 with their scales.
        for (var idx = li; idx < BN * (BK / BLOCK_K); idx += 256u) {
            let r = idx / (BK / BLOCK_K);
            let bb = idx % (BK / BLOCK_K);
            let gn = n0 + r;
            let blk = k0 / BLOCK_K + bb;
            var wv = vec4<u32>(0u);
            var sz = vec2<f32>(0.0, 0.0);
            if (gn < p.n && blk < p.row_blocks) {
                wv = w[gn * p.row_blocks + blk];
                sz = block_scale_zero(gn, blk);
            }
            for (var j = 0u; j < BLOCK_VEC4; j++) {
                let d = decode(wv, j, sz.y) * sz.x;
                for (var c = 0u; c < 4u; c++) {
                    ws[(bb * BLOCK_K + j * 4u + c) * (BN / 4u) + r / 4u][r % 4u] = d[c];
                }
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a = xs[kk * (BM / 4u) + ty];
            let b = ws[kk * (BN / 4u) + tx];
            acc[0] += a.x * b;
            acc[1] += a.y * b;
            acc[2] += a.z * b;
            acc[3] += a.w * b;
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let gm = m0 + ty * 4u + i;
        if (gm < p.m) {
            for (var c = 0u; c < 4u; c++) {
                let col = n0 + tx * 4u + c;
                if (col < p.n_out) {
                    write_y(gm, col, acc[i][c]);
                }
            }
        }
    }
}
