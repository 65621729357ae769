// Activations stored as f16 (needs SHADER_F16); arithmetic stays f32.
enable f16;
alias act = f16;
alias act4 = vec4<f16>;

fn load_x4(i: u32) -> vec4<f32> {
    return vec4<f32>(x[i]);
}

fn to_act(v: f32) -> act {
    return f16(v);
}
