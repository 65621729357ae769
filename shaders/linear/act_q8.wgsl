// GEMV with int8-quantized activations: x is read as the blocks `quant_q8.wgsl` wrote
// (three vec4<u32> per 32 values: 8 packed-i8 words, then the f32 step d and the i32 sum of
// the quantized values), y keeps the activation dtype.
#if ACT_F16
enable f16;
alias act = f16;
#else
alias act = f32;
#end
alias act4 = vec4<u32>;

fn to_act(v: f32) -> act {
    return act(v);
}
