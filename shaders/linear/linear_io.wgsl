// Bindings shared by every y = x · Wᵀ (+ bias) kernel. Weights are rows of 16-byte blocks
// (see src/formats/mod.rs); activations are rows padded to a multiple of 4 with zeros.
struct Params {
    n: u32,          // weight rows in this dispatch
    k: u32,          // input features
    row_blocks: u32, // 16-byte blocks per weight row
    groups: u32,     // int4 scale groups per row
    m: u32,          // activation rows
    x_stride4: u32,  // x row stride in vec4s
    y_stride: u32,   // y row stride in elements
    n_out: u32,      // columns this dispatch writes: n, then zeros up to the padding
    y_offset: u32,   // first y column of this dispatch
    k4: u32,         // vec4s of x that hold data: ceil(k / 4)
    row0: u32,       // first activation row of this dispatch
    _pad1: u32,
}

override HAS_BIAS: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<act4>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> scales: array<u32>;
@group(0) @binding(4) var<storage, read> zeros: array<u32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<act>;

// Writes one output (scaled, biased, activated: the epilogue every strategy shares); rows
// past n are the zero padding of y.
fn write_y(m: u32, row: u32, total: f32) {
    let col = p.y_offset + row;
    var v = 0.0;
    if (row < p.n) {
        v = total * row_scale(row);
        if (HAS_BIAS) {
            v += bias[col];
        }
        v = activate(v);
    }
    y[(p.row0 + m) * p.y_stride + col] = to_act(v);
}
