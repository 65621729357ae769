// Embedding lookup: a row is word[id] (+ position[pos]) (+ type[segment]). Tables are dense
// rows of `cols` floats; the output row is padded to `stride` with zeros. Indices were checked
// on the host and are clamped here too, so no input reads outside a table. A word table split
// over several buffers runs one dispatch per buffer, holding rows first .. first + vocab: it
// writes only the rows whose ids it holds (the last buffer also the ids past its end, clamped).
struct Params {
    rows: u32,
    cols: u32,
    stride: u32,
    vocab: u32,
    positions: u32,
    types: u32,
    first: u32,
    last: u32,
}

override HAS_POS: bool = false;
override HAS_TYPE: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tokens: array<vec4<u32>>; // id, position, type, mask
@group(0) @binding(2) var<storage, read> word: array<f32>;
@group(0) @binding(3) var<storage, read> pos: array<f32>;
@group(0) @binding(4) var<storage, read> typ: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let row = wg.x + wg.y * nwg.x;
    if (row >= p.rows) {
        return;
    }
    let tok = tokens[row];
    if (tok.x < p.first || (tok.x - p.first >= p.vocab && p.last == 0u)) {
        return;
    }
    let wbase = min(tok.x - p.first, p.vocab - 1u) * p.cols;
    let pbase = min(tok.y, p.positions - 1u) * p.cols;
    let tbase = min(tok.z, p.types - 1u) * p.cols;
    for (var c = t; c < p.stride; c += {{WG}}u) {
        var v = 0.0;
        if (c < p.cols) {
            v = word[wbase + c];
            if (HAS_POS) {
                v += pos[pbase + c];
            }
            if (HAS_TYPE) {
                v += typ[tbase + c];
            }
        }
        y[row * p.stride + c] = v;
    }
}
