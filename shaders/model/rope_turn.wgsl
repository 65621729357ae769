// The cosine and sine of a RoPE angle, after reducing it to about [-π, π] where sin and cos
// are accurate (shared by rope.wgsl and kv_append.wgsl, so both rotate bit-identically).
// 2π split for range reduction: C1 has 8 significant bits, so k · C1 is exact for |k| < 2^16.
const C1: f32 = 6.28125;
const C2: f32 = 0.0019353071795864769;
const INV_2PI: f32 = 0.15915494309189535;

fn rope_turn(angle: f32) -> vec2<f32> {
    let n = round(angle * INV_2PI);
    let r = (angle - n * C1) - n * C2;
    return vec2<f32>(cos(r), sin(r));
}
