// Streaming-read ceiling: every invocation reads READS vec4s spaced one grid apart (so each
// wave of loads is contiguous across the grid) and writes one word, which keeps the reads
// from being optimised away.
override WG: u32 = 256u;
override READS: u32 = 8u;

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> sink: array<u32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let threads = nwg.x * nwg.y * WG;
    let t = (wg.x + wg.y * nwg.x) * WG + li;
    var acc = vec4<u32>(0u);
    for (var i = 0u; i < READS; i++) {
        acc ^= src[t + i * threads];
    }
    sink[t] = acc.x ^ acc.y ^ acc.z ^ acc.w;
}
