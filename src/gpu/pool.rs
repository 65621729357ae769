//! Compiled pipelines, created once per (shader text, entry point, override constants) and
//! shared afterwards.
//!
//! Sound because a compute pipeline is immutable once created: the same key always denotes
//! the same program, so handing out one `Arc` to every caller cannot change any result.
//! Shader compilation runs inside a validation error scope, so a shader the device rejects
//! becomes an [`InternalError::Validation`](crate::InternalError::Validation) (a bug in
//! sparq) naming the shader instead of a panic in the error handler.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Identifies one pipeline: which generated shader, and the values of its override constants.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    /// Name of the shader variant (unique per distinct source text).
    pub shader: String,
    /// Override constants as (name, value bits) so the key can be hashed.
    pub constants: Vec<(String, u64)>,
    /// Compile without bounds checks and loop bounding (see [`PipelineKey::trusted`]).
    pub trusted: bool,
}

impl PipelineKey {
    /// A key for shader `shader` with `constants`.
    pub fn new(shader: impl Into<String>, constants: &[(&str, f64)]) -> Self {
        PipelineKey {
            shader: shader.into(),
            constants: constants
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_bits()))
                .collect(),
            trusted: false,
        }
    }

    /// Marks the shader as trusted: compiled without runtime bounds checks and loop bounding,
    /// which cost kernels up to 100× (wgpu issue 7698). Only for kernels whose indexing the
    /// test suite covers at awkward shapes; a pool made with `checked` (`SPARQ_CHECKED=1`,
    /// see [`crate::config::Config::checked`]) compiles them with the checks all the same.
    pub fn trusted(mut self) -> Self {
        self.trusted = true;
        self
    }
}

/// The pool: `get_or_create` compiles on first use and returns the cached pipeline after.
#[derive(Default)]
pub struct PipelinePool {
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    checked: bool,
}

impl PipelinePool {
    /// An empty pool; `checked` compiles even trusted keys with runtime bounds checks.
    pub fn new(checked: bool) -> Self {
        PipelinePool {
            pipelines: Mutex::default(),
            checked,
        }
    }

    /// Returns the pipeline for `key`, compiling `source()` (entry point `main`) the first time;
    /// an error from `source` is returned as it is.
    pub fn get_or_create(
        &self,
        device: &wgpu::Device,
        key: &PipelineKey,
        layout: Option<&wgpu::PipelineLayout>,
        source: impl FnOnce() -> Result<String>,
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        if let Some(p) = self.pipelines.lock().unwrap().get(key) {
            return Ok(p.clone());
        }
        let src = source()?;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(&key.shader),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        };
        let module = if key.trusted && !self.checked {
            // SAFETY: trusted keys are only made for kernels whose every index is in bounds
            // for the shapes their launchers accept, which the reference tests check.
            unsafe {
                device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        } else {
            device.create_shader_module(desc)
        };
        let constants: Vec<(&str, f64)> = key
            .constants
            .iter()
            .map(|(n, v)| (n.as_str(), f64::from_bits(*v)))
            .collect();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&key.shader),
            layout,
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::validation(format!("compiling {}: {e}", key.shader)));
        }
        let p = Arc::new(pipeline);
        self.pipelines
            .lock()
            .unwrap()
            .insert(key.clone(), p.clone());
        Ok(p)
    }

    /// Number of pipelines compiled so far.
    pub fn len(&self) -> usize {
        self.pipelines.lock().unwrap().len()
    }
}

/// A bind-group layout and the pipeline layout made of it alone.
pub struct Layout {
    /// Layout of bind group 0.
    pub bind_group: wgpu::BindGroupLayout,
    /// Pipeline layout with that one group.
    pub pipeline: wgpu::PipelineLayout,
}

/// Layouts by name: each kernel family declares its bindings once per device.
///
/// Sound because a name always maps to the same entries (they are written next to the kernel
/// family that uses them), so the first creation is the only one that can happen.
#[derive(Default)]
pub struct LayoutPool {
    layouts: Mutex<HashMap<&'static str, Arc<Layout>>>,
}

impl LayoutPool {
    /// Returns the layout named `name`, creating it from `entries` the first time.
    pub fn get_or_create(
        &self,
        device: &wgpu::Device,
        name: &'static str,
        entries: impl FnOnce() -> Vec<wgpu::BindGroupLayoutEntry>,
    ) -> Arc<Layout> {
        let mut map = self.layouts.lock().unwrap();
        map.entry(name)
            .or_insert_with(|| {
                let bind_group =
                    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                        label: Some(name),
                        entries: &entries(),
                    });
                let pipeline = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(name),
                    bind_group_layouts: &[Some(&bind_group)],
                    immediate_size: 0,
                });
                Arc::new(Layout {
                    bind_group,
                    pipeline,
                })
            })
            .clone()
    }
}
