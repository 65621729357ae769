//! What an adapter can do, reduced to the facts sparq's kernels choose by.

/// A cooperative-matrix shape the adapter offers (M×N×K, input and accumulator types).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CoopMatrixConfig {
    /// Rows of A and C.
    pub m: u32,
    /// Columns of B and C.
    pub n: u32,
    /// Inner dimension.
    pub k: u32,
    /// Element type of A and B.
    pub ab: String,
    /// Element type of C and the result.
    pub cr: String,
}

/// Features and limits that decide which kernels sparq can run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Caps {
    /// Adapter name.
    pub name: String,
    /// Backend (Vulkan, Metal, Dx12, Gl).
    pub backend: String,
    /// Discrete, integrated, CPU, ...
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// `SHADER_F16`: f16 arithmetic and storage in shaders.
    pub f16: bool,
    /// `SUBGROUP`: subgroup builtins in compute shaders.
    pub subgroups: bool,
    /// Smallest subgroup size the adapter may use.
    pub subgroup_min: u32,
    /// Largest subgroup size the adapter may use.
    pub subgroup_max: u32,
    /// `TIMESTAMP_QUERY`: GPU timing of passes.
    pub timestamps: bool,
    /// `dot4I8Packed` available as a WGSL language feature.
    pub dot4_i8: bool,
    /// Cooperative-matrix configurations (empty when unsupported).
    pub coop_matrix: Vec<CoopMatrixConfig>,
    /// `max_buffer_size`.
    pub max_buffer: u64,
    /// `max_storage_buffer_binding_size`.
    pub max_storage_binding: u64,
    /// `max_compute_workgroup_storage_size`.
    pub workgroup_storage: u32,
    /// `max_compute_invocations_per_workgroup`.
    pub max_invocations: u32,
    /// `max_compute_workgroups_per_dimension`.
    pub max_workgroups_per_dim: u32,
}

impl Caps {
    /// Reads the capabilities of `adapter` (what it offers, before any device is requested).
    pub fn of_adapter(adapter: &wgpu::Adapter, instance: &wgpu::Instance) -> Self {
        let info = adapter.get_info();
        let f = adapter.features();
        let l = adapter.limits();
        let coop_matrix = if f.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            adapter
                .cooperative_matrix_properties()
                .into_iter()
                .map(|p| CoopMatrixConfig {
                    m: p.m_size,
                    n: p.n_size,
                    k: p.k_size,
                    ab: format!("{:?}", p.ab_type),
                    cr: format!("{:?}", p.cr_type),
                })
                .collect()
        } else {
            Vec::new()
        };
        let subgroups = f.contains(wgpu::Features::SUBGROUP);
        Caps {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            f16: f.contains(wgpu::Features::SHADER_F16),
            subgroups,
            subgroup_min: if subgroups { info.subgroup_min_size } else { 0 },
            subgroup_max: if subgroups { info.subgroup_max_size } else { 0 },
            timestamps: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            dot4_i8: instance
                .wgsl_language_features()
                .contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct),
            coop_matrix,
            max_buffer: l.max_buffer_size,
            max_storage_binding: l.max_storage_buffer_binding_size,
            workgroup_storage: l.max_compute_workgroup_storage_size,
            max_invocations: l.max_compute_invocations_per_workgroup,
            max_workgroups_per_dim: l.max_compute_workgroups_per_dimension,
        }
    }

    /// Whether the device is a CPU implementation (lavapipe, llvmpipe, WARP).
    pub fn is_cpu(&self) -> bool {
        self.device_type == "Cpu"
    }

    /// The optional features sparq asks for, among those `available`.
    pub fn wanted_features(available: wgpu::Features) -> wgpu::Features {
        let wanted = wgpu::Features::SHADER_F16
            | wgpu::Features::SUBGROUP
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
            | wgpu::Features::SHADER_INT64
            | wgpu::Features::PIPELINE_CACHE;
        available & wanted
    }

    /// A multi-line human description, as `sparq devices` prints it.
    pub fn describe(&self) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let coop = if self.coop_matrix.is_empty() {
            "none".to_string()
        } else {
            self.coop_matrix
                .iter()
                .map(|c| format!("{}x{}x{} {}->{}", c.m, c.n, c.k, c.ab, c.cr))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sg = if self.subgroups {
            format!("yes (size {}..{})", self.subgroup_min, self.subgroup_max)
        } else {
            "no".into()
        };
        format!(
            "  backend {} | type {} | driver {}\n  f16 {} | subgroups {} | timestamps {} | dot4I8Packed {}\n  cooperative matrix: {}\n  max buffer {:.0} MiB | max storage binding {:.0} MiB | workgroup storage {} KiB | invocations {}",
            self.backend,
            self.device_type,
            if self.driver.is_empty() {
                "?"
            } else {
                &self.driver
            },
            yes(self.f16),
            sg,
            yes(self.timestamps),
            yes(self.dot4_i8),
            coop,
            mib(self.max_buffer),
            mib(self.max_storage_binding),
            self.workgroup_storage / 1024,
            self.max_invocations,
        )
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
