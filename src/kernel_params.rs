//! Every kernel's Rust params struct against the WGSL struct it mirrors: the WGSL struct is
//! parsed with naga and laid out with `naga::proc::Layouter`, so a field added on one side
//! only fails here instead of shifting every later field on the GPU.

use crate::gpu::ParamsLayout;

/// Size and member offsets of WGSL struct `name` declared in `src`.
fn wgsl_layout(src: &str, name: &str) -> (u32, Vec<u32>) {
    let start = src
        .find(&format!("struct {name} {{"))
        .unwrap_or_else(|| panic!("no struct {name}"));
    let end = start + src[start..].find("\n}").expect("struct end") + 2;
    // The struct alone, so template lines elsewhere in the file need no values.
    let text = format!(
        "{}\n@group(0) @binding(0) var<uniform> p: {name};\n",
        &src[start..end]
    );
    let module = naga::front::wgsl::parse_str(&text)
        .unwrap_or_else(|e| panic!("{}", e.emit_to_string(&text)));
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).unwrap();
    let (handle, ty) = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some(name))
        .unwrap();
    let naga::TypeInner::Struct { members, .. } = &ty.inner else {
        panic!("{name} is not a struct");
    };
    (
        layouter[handle].size,
        members.iter().map(|m| m.offset).collect(),
    )
}

fn all() -> Vec<ParamsLayout> {
    let mut v = crate::matmul::params_layouts();
    v.extend(crate::sparse::gpu::params_layouts());
    v.extend(crate::model::ops::params_layouts());
    v.extend(crate::train::ops::params_layouts());
    v
}

#[test]
fn rust_params_match_wgsl_structs() {
    let layouts = all();
    assert!(layouts.len() >= 12, "{} kernels listed", layouts.len());
    for p in layouts {
        let (size, offsets) = wgsl_layout(p.wgsl, p.wgsl_struct);
        let size = size as usize;
        // The Rust struct may pad the WGSL one up to the next 16 bytes, never more.
        assert!(
            p.size >= size && p.size <= size.next_multiple_of(16),
            "{}: Rust params are {} bytes, WGSL {} {size}",
            p.kernel,
            p.size,
            p.wgsl_struct
        );
        let wgsl: Vec<usize> = offsets.iter().map(|&o| o as usize).collect();
        assert!(
            p.offsets.len() >= wgsl.len() && p.offsets[..wgsl.len()] == wgsl[..],
            "{}: Rust field offsets {:?}, WGSL {:?}",
            p.kernel,
            p.offsets,
            wgsl
        );
        assert!(
            p.offsets[wgsl.len()..].iter().all(|&o| o >= size),
            "{}: Rust fields past the WGSL ones overlap it",
            p.kernel
        );
    }
}
