//! Finding adapters on every backend and choosing one: by index, name substring or backend,
//! or the best by device type (discrete > integrated > virtual > CPU).

use crate::error::InputError;
use crate::error::{Error, Result};

/// How the caller names the adapter to use.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum AdapterSelector {
    /// The best adapter by device type (the default).
    #[default]
    Best,
    /// Position in [`enumerate_adapters`]'s list.
    Index(usize),
    /// A backend name: `vulkan`, `metal`, `dx12`, `gl`; the best adapter of that backend.
    Backend(wgpu::Backend),
    /// A case-insensitive substring of the adapter name.
    Name(String),
}

impl AdapterSelector {
    /// Name of the environment variable read by [`AdapterSelector::from_env`].
    pub const ENV: &'static str = "SPARQ_ADAPTER";

    /// Parses `best`, an index, a backend name, or else a name substring.
    pub fn parse(text: &str) -> Self {
        let t = text.trim();
        if t.is_empty() || t.eq_ignore_ascii_case("best") {
            return Self::Best;
        }
        if let Ok(i) = t.parse::<usize>() {
            return Self::Index(i);
        }
        match t.to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => Self::Backend(wgpu::Backend::Vulkan),
            "metal" => Self::Backend(wgpu::Backend::Metal),
            "dx12" | "d3d12" => Self::Backend(wgpu::Backend::Dx12),
            "gl" | "gles" | "opengl" => Self::Backend(wgpu::Backend::Gl),
            _ => Self::Name(t.to_string()),
        }
    }

    /// The text [`AdapterSelector::parse`] reads back as this selector (`Display` is for
    /// people: `backend Vulkan`).
    pub fn spec(&self) -> String {
        match self {
            Self::Best => "best".into(),
            Self::Index(i) => i.to_string(),
            Self::Backend(wgpu::Backend::Vulkan) => "vulkan".into(),
            Self::Backend(wgpu::Backend::Metal) => "metal".into(),
            Self::Backend(wgpu::Backend::Dx12) => "dx12".into(),
            Self::Backend(wgpu::Backend::Gl) => "gl".into(),
            // No other backend has a name `parse` knows; the best adapter is the nearest.
            Self::Backend(_) => "best".into(),
            Self::Name(n) => n.clone(),
        }
    }

    /// The selector from `SPARQ_ADAPTER`, or [`AdapterSelector::Best`] when unset.
    pub fn from_env() -> Self {
        std::env::var(Self::ENV)
            .map(|s| Self::parse(&s))
            .unwrap_or_default()
    }
}

impl std::fmt::Display for AdapterSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Best => write!(f, "best"),
            Self::Index(i) => write!(f, "index {i}"),
            Self::Backend(b) => write!(f, "backend {b:?}"),
            Self::Name(n) => write!(f, "name '{n}'"),
        }
    }
}

/// A wgpu instance over all backends, honouring `WGPU_BACKEND` and friends.
pub fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if std::env::var_os("WGPU_BACKEND").is_none() {
        desc.backends = wgpu::Backends::all();
    }
    wgpu::Instance::new(desc)
}

/// Every adapter on every backend, in a stable order (by backend, then name).
pub fn enumerate_adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let mut adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    adapters.sort_by_key(|a| {
        let i = a.get_info();
        (backend_order(i.backend), i.name.clone())
    });
    adapters
}

fn backend_order(b: wgpu::Backend) -> u8 {
    match b {
        wgpu::Backend::Vulkan => 0,
        wgpu::Backend::Metal => 1,
        wgpu::Backend::Dx12 => 2,
        wgpu::Backend::Gl => 3,
        _ => 4,
    }
}

/// Higher is better: what "best adapter" means.
fn rank(info: &wgpu::AdapterInfo) -> u32 {
    let ty = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 40,
        wgpu::DeviceType::IntegratedGpu => 30,
        wgpu::DeviceType::VirtualGpu => 20,
        wgpu::DeviceType::Cpu => 10,
        wgpu::DeviceType::Other => 0,
    };
    // Among equals, prefer the native compute APIs over GL, which lacks f16 and subgroups.
    ty + 4 - backend_order(info.backend).min(4) as u32
}

/// Picks one adapter from `adapters` as `selector` says.
pub fn select(adapters: Vec<wgpu::Adapter>, selector: &AdapterSelector) -> Result<wgpu::Adapter> {
    let available = adapters
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let info = a.get_info();
            format!("{i}: {} ({:?})", info.name, info.backend)
        })
        .collect::<Vec<_>>()
        .join(", ");
    let not_found = || {
        Error::Input(InputError::NoAdapter {
            selector: selector.to_string(),
            available: if available.is_empty() {
                "none (install a Vulkan driver, e.g. mesa-vulkan-drivers)".into()
            } else {
                available.clone()
            },
        })
    };
    let best = |cands: Vec<wgpu::Adapter>| cands.into_iter().max_by_key(|a| rank(&a.get_info()));
    match selector {
        AdapterSelector::Best => best(adapters),
        AdapterSelector::Index(i) => adapters.into_iter().nth(*i),
        AdapterSelector::Backend(b) => best(
            adapters
                .into_iter()
                .filter(|a| a.get_info().backend == *b)
                .collect(),
        ),
        AdapterSelector::Name(n) => {
            let n = n.to_ascii_lowercase();
            best(
                adapters
                    .into_iter()
                    .filter(|a| a.get_info().name.to_ascii_lowercase().contains(&n))
                    .collect(),
            )
        }
    }
    .ok_or_else(not_found)
}

#[cfg(test)]
mod tests {
    use super::AdapterSelector;

    #[test]
    fn spec_parses_back_to_the_selector() {
        for text in ["best", "3", "vulkan", "metal", "dx12", "gl", "llvmpipe"] {
            let s = AdapterSelector::parse(text);
            assert_eq!(AdapterSelector::parse(&s.spec()), s, "{text}");
        }
    }
}
