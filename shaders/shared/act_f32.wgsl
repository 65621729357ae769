// Activations stored as f32.
alias act = f32;
alias act4 = vec4<f32>;

fn load_x4(i: u32) -> vec4<f32> {
    return x[i];
}

fn to_act(v: f32) -> act {
    return v;
}
