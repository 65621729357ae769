// Activation applied to one f32 (each maps 0 to 0, so zero padding stays zero). ACT: 0
// identity, 1 ReLU, 2 GELU (erf), 3 GELU (tanh), 4 SiLU (codes of src/activation.rs). An
// override constant: every kernel that includes this file takes it from the pipeline.
override ACT: u32 = 0u;

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below f32 resolution of GELU's output).
fn erf_approx(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * z);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return sign(x) * (1.0 - poly * exp(-z * z));
}

fn activate(x: f32) -> f32 {
    switch ACT {
        case 1u: {
            return max(x, 0.0);
        }
        case 2u: {
            return 0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752));
        }
        case 3u: {
            // tanh of a large argument can be inf / inf on some drivers: clamp it.
            let u = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -15.0, 15.0);
            return 0.5 * x * (1.0 + tanh(u));
        }
        case 4u: {
            return x / (1.0 + exp(-x));
        }
        default: {
            return x;
        }
    }
}
