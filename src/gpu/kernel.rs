//! The one way to launch a kernel: a [`Kernel`] declares its bindings and its params struct
//! once, and a [`Launch`] turns one variant of it (template variables, override constants,
//! buffers, grid) into a validated [`Dispatch`].
//!
//! Every kernel's bind group 0 has the same shape: the params uniform at binding 0 (absent
//! when the params type is `()`), then the kernel's [`Slot`]s at 1, 2, ... in declaration
//! order. The uniform has a dynamic offset, so params may live in a dispatch's own small
//! buffer ([`Launch::params`]) or at an offset of a shared [`ParamBuffer`]
//! ([`Launch::params_in`]) that an executor rewrites per call without rebuilding bind groups.

use super::{Dispatch, Gpu, PipelineKey};
use crate::error::InputError;
use crate::error::{Error, Result};
use std::marker::PhantomData;
use wgpu::util::DeviceExt;

/// One storage binding of a kernel, named for error messages and the layout tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// `var<storage, read>`; absent inputs bind [`Gpu::dummy`].
    Read(&'static str),
    /// `var<storage, read_write>`; always bound.
    ReadWrite(&'static str),
}

impl Slot {
    /// The binding's name (as in the WGSL).
    pub fn name(self) -> &'static str {
        match self {
            Slot::Read(n) | Slot::ReadWrite(n) => n,
        }
    }

    /// Whether the kernel only reads the binding.
    pub fn read_only(self) -> bool {
        matches!(self, Slot::Read(_))
    }
}

/// A kernel family's declaration: its name (also the name of its layout), its storage slots
/// and, as `P`, the `#[repr(C)]` struct that mirrors its WGSL params (`()`: no uniform).
///
/// The name must be unique among kernels: the layout pool keys layouts by it, so a second
/// declaration under one name with other slots would get the first one's layout.
pub struct Kernel<P> {
    /// Family name: the layout's name and the default prefix of its pipelines' names.
    pub name: &'static str,
    /// Storage bindings 1, 2, ... in order.
    pub slots: &'static [Slot],
    params: PhantomData<fn() -> P>,
}

impl<P: bytemuck::Pod> Kernel<P> {
    /// Declares kernel `name` with storage `slots`.
    pub const fn new(name: &'static str, slots: &'static [Slot]) -> Self {
        Kernel {
            name,
            slots,
            params: PhantomData,
        }
    }

    /// Whether the kernel has a params uniform at binding 0.
    pub fn has_params(&self) -> bool {
        std::mem::size_of::<P>() > 0
    }

    /// Bindings of the params uniform (0 or 1) before the first slot.
    fn first_slot(&self) -> u32 {
        self.has_params() as u32
    }

    fn layout(&self, gpu: &Gpu) -> std::sync::Arc<super::Layout> {
        gpu.layouts.get_or_create(&gpu.device, self.name, || {
            let entry =
                |binding, ty, has_dynamic_offset, min_binding_size| wgpu::BindGroupLayoutEntry {
                    binding,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty,
                        has_dynamic_offset,
                        min_binding_size,
                    },
                    count: None,
                };
            let first = self.first_slot();
            let uniform = self.has_params().then(|| {
                let size = wgpu::BufferSize::new(std::mem::size_of::<P>() as u64);
                entry(0, wgpu::BufferBindingType::Uniform, true, size)
            });
            uniform
                .into_iter()
                .chain(self.slots.iter().enumerate().map(|(i, s)| {
                    let ty = wgpu::BufferBindingType::Storage {
                        read_only: s.read_only(),
                    };
                    entry(first + i as u32, ty, false, None)
                }))
                .collect()
        })
    }

    /// Starts a launch of this kernel on `gpu`.
    pub fn launch<'a>(&'a self, gpu: &'a Gpu) -> Launch<'a, P> {
        Launch {
            gpu,
            kernel: self,
            label: None,
            shader: None,
            constants: Vec::new(),
            trusted: false,
            params: None,
            buffers: Vec::new(),
            grid: Grid::Linear(1),
        }
    }
}

/// Where a launch's params live.
enum ParamsAt<'a> {
    Own(Vec<u8>),
    Shared(&'a wgpu::Buffer, u32),
}

enum Grid {
    Linear(u64),
    Fixed(u32, u32),
}

type Source<'a> = Box<dyn FnOnce() -> Result<String> + 'a>;

/// A launch being put together; [`Launch::build`] validates it into a [`Dispatch`].
pub struct Launch<'a, P> {
    gpu: &'a Gpu,
    kernel: &'a Kernel<P>,
    label: Option<String>,
    shader: Option<(String, Source<'a>)>,
    constants: Vec<(&'a str, f64)>,
    trusted: bool,
    params: Option<ParamsAt<'a>>,
    buffers: Vec<Option<&'a wgpu::Buffer>>,
    grid: Grid,
}

impl<'a, P: bytemuck::Pod> Launch<'a, P> {
    /// The dispatch's label (default: the variant's name).
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// The shader variant: `name` identifies its text among the pipelines (it must change
    /// whenever `source` would produce other text), `source` makes it on first use.
    pub fn shader(
        mut self,
        name: impl Into<String>,
        source: impl FnOnce() -> Result<String> + 'a,
    ) -> Self {
        self.shader = Some((name.into(), Box::new(source)));
        self
    }

    /// The variant of the template made of `parts` (joined by newlines) expanded with `vars`
    /// (see [`super::wgsl::expand`]), named after the kernel and the variables.
    pub fn template(self, parts: &[&'a str], vars: &[(&'static str, i64)]) -> Self {
        let name: String = vars.iter().map(|(n, v)| format!("_{n}{v}")).collect();
        let name = format!("{}{name}", self.kernel.name);
        let (parts, vars) = (parts.to_vec(), vars.to_vec());
        self.shader(name, move || super::wgsl::expand(&parts.join("\n"), &vars))
    }

    /// Override constants of the pipeline.
    pub fn constants(mut self, constants: &[(&'a str, f64)]) -> Self {
        self.constants = constants.to_vec();
        self
    }

    /// Compiles the shader without runtime bounds checks (see `PipelineKey::trusted`).
    pub fn trusted(mut self) -> Self {
        self.trusted = true;
        self
    }

    /// The params, in a small uniform buffer of the dispatch's own (dynamic offset 0).
    pub fn params(mut self, params: &P) -> Self {
        self.params = Some(ParamsAt::Own(bytemuck::bytes_of(params).to_vec()));
        self
    }

    /// The params, written at a new offset of the shared `buffer`: rewriting them there
    /// ([`ParamBuffer::write`]) changes what a replay of the dispatch computes.
    pub fn params_in(mut self, buffer: &'a mut ParamBuffer, params: &P) -> Result<Self> {
        let offset = buffer.push(params)?;
        self.params = Some(ParamsAt::Shared(&buffer.buffer, offset));
        Ok(self)
    }

    /// The params already at `offset` of `buffer` (from [`ParamBuffer::push`]).
    pub fn params_at(mut self, buffer: &'a ParamBuffer, offset: u32) -> Result<Self> {
        buffer.check::<P>(offset)?;
        self.params = Some(ParamsAt::Shared(&buffer.buffer, offset));
        Ok(self)
    }

    /// The storage buffers of the kernel's slots, in order; `None` binds [`Gpu::dummy`]
    /// (read-only slots only).
    pub fn buffers(mut self, buffers: &[Option<&'a wgpu::Buffer>]) -> Self {
        self.buffers = buffers.to_vec();
        self
    }

    /// `workgroups` in a row, folded into a 2-D grid by [`Gpu::grid`].
    pub fn workgroups(mut self, workgroups: u64) -> Self {
        self.grid = Grid::Linear(workgroups);
        self
    }

    /// An explicit `x × y` grid.
    pub fn grid(mut self, grid: (u32, u32)) -> Self {
        self.grid = Grid::Fixed(grid.0, grid.1);
        self
    }

    /// Checks the launch against the declaration and the device, and makes the dispatch.
    pub fn build(self) -> Result<Dispatch> {
        let gpu = self.gpu;
        let k = self.kernel;
        let what = |msg: String| Error::invalid(format!("kernel {}: {msg}", k.name));
        if self.buffers.len() != k.slots.len() {
            return Err(what(format!(
                "{} buffers for {} bindings ({})",
                self.buffers.len(),
                k.slots.len(),
                k.slots
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        for (s, b) in k.slots.iter().zip(&self.buffers) {
            if b.is_none() && !s.read_only() {
                return Err(what(format!("output {} is not bound", s.name())));
            }
        }
        if k.has_params() != self.params.is_some() {
            return Err(what(if k.has_params() {
                "params are not given".into()
            } else {
                "takes no params".into()
            }));
        }
        let grid = self.checked_grid()?;
        let (name, source) = self.shader.ok_or_else(|| what("no shader".into()))?;
        let mut key = PipelineKey::new(name, &self.constants);
        if self.trusted {
            key = key.trusted();
        }
        let layout = k.layout(gpu);
        let pipeline =
            gpu.pipelines
                .get_or_create(&gpu.device, &key, Some(&layout.pipeline), || {
                    source()
                        .map_err(|e| Error::invalid(format!("WGSL template {}: {e}", key.shader)))
                })?;
        let own;
        let mut entries = Vec::with_capacity(k.slots.len() + 1);
        let mut offsets = Vec::new();
        if let Some(at) = &self.params {
            let size = wgpu::BufferSize::new(std::mem::size_of::<P>() as u64);
            let (buffer, offset) = match at {
                ParamsAt::Own(bytes) => {
                    own = gpu
                        .device
                        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                            label: Some(k.name),
                            contents: bytes,
                            usage: wgpu::BufferUsages::UNIFORM,
                        });
                    (&own, 0)
                }
                ParamsAt::Shared(b, o) => (*b, *o),
            };
            entries.push(wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer,
                    offset: 0,
                    size,
                }),
            });
            offsets.push(offset);
        }
        let first = k.first_slot();
        for (i, b) in self.buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: first + i as u32,
                resource: b.unwrap_or(gpu.dummy()).as_entire_binding(),
            });
        }
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(k.name),
            layout: &layout.bind_group,
            entries: &entries,
        });
        Ok(Dispatch {
            label: self.label.unwrap_or(key.shader),
            pipeline,
            bind_group,
            offsets,
            grid,
        })
    }

    fn checked_grid(&self) -> Result<(u32, u32)> {
        let max = self.gpu.caps.max_workgroups_per_dim.max(1);
        let too_large = |n: u64| {
            Error::Input(InputError::TooLarge {
                what: format!("kernel {}: grid of {n} workgroups", self.kernel.name),
                bytes: n,
                limit_name: "max_compute_workgroups_per_dimension",
                limit: max as u64,
            })
        };
        match self.grid {
            Grid::Linear(n) => {
                if n > (max as u64 * max as u64).min(u32::MAX as u64) {
                    return Err(too_large(n));
                }
                Ok(self.gpu.grid(n as u32))
            }
            Grid::Fixed(x, y) => {
                if x > max || y > max {
                    return Err(too_large(x.max(y) as u64));
                }
                Ok((x.max(1), y.max(1)))
            }
        }
    }
}

/// One uniform buffer holding the params of many dispatches at aligned offsets, so that an
/// executor can rewrite per-call scalars with one `queue.write_buffer` each and replay its
/// recorded dispatches without rebuilding their bind groups.
pub struct ParamBuffer {
    buffer: wgpu::Buffer,
    queue: wgpu::Queue,
    align: u32,
    used: u64,
}

impl ParamBuffer {
    /// A buffer of `capacity` bytes on `gpu`.
    pub fn new(gpu: &Gpu, capacity: u64) -> Result<Self> {
        let max = gpu.device.limits().max_buffer_size;
        if capacity > max {
            return Err(Error::Input(InputError::TooLarge {
                what: "param buffer".into(),
                bytes: capacity,
                limit_name: "max_buffer_size",
                limit: max,
            }));
        }
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sparq params"),
            size: capacity.max(16).next_multiple_of(16),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(ParamBuffer {
            buffer,
            queue: gpu.queue.clone(),
            align: gpu
                .device
                .limits()
                .min_uniform_buffer_offset_alignment
                .max(4),
            used: 0,
        })
    }

    /// Writes `params` at the next aligned offset and returns it.
    pub fn push<P: bytemuck::Pod>(&mut self, params: &P) -> Result<u32> {
        let offset = self.used.next_multiple_of(self.align as u64);
        let size = std::mem::size_of::<P>() as u64;
        if offset + size > self.buffer.size() {
            return Err(Error::Input(InputError::TooLarge {
                what: "params in the param buffer".into(),
                bytes: offset + size,
                limit_name: "param buffer capacity",
                limit: self.buffer.size(),
            }));
        }
        let offset = offset as u32;
        self.used = offset as u64 + size;
        self.write(offset, params)?;
        Ok(offset)
    }

    /// Rewrites the params at `offset` (from [`ParamBuffer::push`]); the next submission sees them.
    pub fn write<P: bytemuck::Pod>(&self, offset: u32, params: &P) -> Result<()> {
        self.check::<P>(offset)?;
        self.queue
            .write_buffer(&self.buffer, offset as u64, bytemuck::bytes_of(params));
        Ok(())
    }

    fn check<P>(&self, offset: u32) -> Result<()> {
        let size = std::mem::size_of::<P>() as u64;
        if !offset.is_multiple_of(self.align) || offset as u64 + size > self.buffer.size() {
            return Err(Error::invalid(format!(
                "param offset {offset} ({size} bytes) is not an aligned place in a buffer of {}",
                self.buffer.size()
            )));
        }
        Ok(())
    }

    /// The uniform buffer itself: a pass that takes it as one of its inputs has its params
    /// rewritten by every call's input bytes (`graph::Executor::submit`).
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The offset alignment (the device's `min_uniform_buffer_offset_alignment`).
    pub fn alignment(&self) -> u32 {
        self.align
    }

    /// Bytes in use.
    pub fn used(&self) -> u64 {
        self.used
    }
}

/// A Rust params struct's layout next to the WGSL struct it mirrors, for the layout test.
pub struct ParamsLayout {
    /// The kernel family.
    pub kernel: &'static str,
    /// WGSL text that declares the struct (a shader file; the struct is taken out of it).
    pub wgsl: &'static str,
    /// Name of the WGSL struct.
    pub wgsl_struct: &'static str,
    /// `size_of` of the Rust struct.
    pub size: usize,
    /// Byte offsets of the Rust fields, in order.
    pub offsets: Vec<usize>,
}

/// A [`ParamsLayout`] of Rust type `$ty` (fields `$field`, in order) for WGSL struct
/// `$name` declared in `$wgsl`.
#[macro_export]
#[doc(hidden)]
macro_rules! params_layout {
    ($kernel:expr, $wgsl:expr, $name:expr, $ty:ty; $($field:ident),+ $(,)?) => {
        $crate::gpu::ParamsLayout {
            kernel: $kernel,
            wgsl: $wgsl,
            wgsl_struct: $name,
            size: ::std::mem::size_of::<$ty>(),
            offsets: vec![$(::std::mem::offset_of!($ty, $field)),+],
        }
    };
}
