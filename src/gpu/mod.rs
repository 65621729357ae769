//! Device plumbing, all in one place: adapter choice, the device with its real limits and
//! optional features, error capture, the pipeline pool, buffers, read-back and GPU timing,
//! and the one way to launch a kernel ([`Kernel`], [`Launch`], [`ParamBuffer`]).

mod adapter;
mod caps;
mod dispatch;
mod kernel;
pub mod limits;
mod pool;
mod readback;
mod timer;
mod timing;
mod tune;
pub mod wgsl;

pub use adapter::{AdapterSelector, enumerate_adapters, instance, select};
pub use caps::{Caps, CoopMatrixConfig};
pub use dispatch::{Dispatch, record_pass};
pub use kernel::{Kernel, Launch, ParamBuffer, ParamsLayout, Slot};
pub(crate) use pool::{Layout, LayoutPool, PipelineKey, PipelinePool};
pub use readback::{map_read, read_buffer};
pub use timer::{GpuTimer, PassStamps};
pub use timing::{keep_busy, median, time_dispatches};
pub use tune::TuneCache;

use crate::config::Config;
use crate::error::DeviceError;
use crate::error::InputError;
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// Errors the driver reported outside an error scope, kept until [`Gpu::check`] returns them.
#[derive(Default)]
struct ErrorSink {
    /// Each already in its group, by what wgpu said it was.
    errors: Vec<Error>,
    lost: Option<String>,
}

/// The driver's error as a sparq error: running out of memory is the device's fault, an
/// invalid kernel or binding (or wgpu's own internal failure) is a bug in sparq.
fn classify(e: &wgpu::Error) -> Error {
    match e {
        wgpu::Error::OutOfMemory { .. } => Error::out_of_memory(e.to_string()),
        wgpu::Error::Validation { .. } | wgpu::Error::Internal { .. } => {
            Error::validation(e.to_string())
        }
    }
}

/// An opened device: the handle every sparq operation takes.
pub struct Gpu {
    /// The adapter the device was opened on.
    pub adapter: wgpu::Adapter,
    /// The logical device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// What the device can do (features it was opened with, its real limits).
    pub caps: Caps,
    /// Cache of compiled compute pipelines.
    pub(crate) pipelines: PipelinePool,
    /// Cache of bind-group and pipeline layouts.
    pub(crate) layouts: LayoutPool,
    /// The tuning knobs this device was opened with (see [`Gpu::config`]).
    pub(crate) config: Config,
    tuned: TuneCache,
    sink: Arc<Mutex<ErrorSink>>,
    dummy: wgpu::Buffer,
}

impl Gpu {
    /// Opens the adapter chosen by `selector` (see [`AdapterSelector`]) with the tuning of
    /// [`Config::from_env`].
    pub fn new(selector: &AdapterSelector) -> Result<Self> {
        Self::with_config(selector, Config::from_env()?)
    }

    /// Opens the adapter chosen by `selector` with an explicit `config` (the environment's
    /// `SPARQ_*` tuning variables are not read).
    pub fn with_config(selector: &AdapterSelector, config: Config) -> Result<Self> {
        let inst = instance();
        let adapter = select(enumerate_adapters(&inst), selector)?;
        Self::from_adapter_with(adapter, &inst, config)
    }

    /// Opens the adapter named by `SPARQ_ADAPTER`, or the best one.
    pub fn from_env() -> Result<Self> {
        Self::new(&AdapterSelector::from_env())
    }

    /// Opens a device on `adapter` with its real limits and every optional feature sparq
    /// uses, with the tuning of [`Config::from_env`].
    pub fn from_adapter(adapter: wgpu::Adapter, instance: &wgpu::Instance) -> Result<Self> {
        Self::from_adapter_with(adapter, instance, Config::from_env()?)
    }

    /// Like [`Gpu::from_adapter`] with an explicit `config`.
    pub fn from_adapter_with(
        adapter: wgpu::Adapter,
        instance: &wgpu::Instance,
        config: Config,
    ) -> Result<Self> {
        let info = adapter.get_info();
        let features = Caps::wanted_features(adapter.features());
        let experimental = if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            // SAFETY: only the cooperative-matrix kernels use experimental features, and they
            // run only after their own correctness test passed on the adapter.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("sparq"),
            required_features: features,
            required_limits: adapter.limits(),
            experimental_features: experimental,
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| {
            Error::Device(DeviceError::RequestDevice {
                adapter: info.name.clone(),
                reason: e.to_string(),
            })
        })?;
        let mut caps = Caps::of_adapter(&adapter, instance);
        caps.f16 = device.features().contains(wgpu::Features::SHADER_F16);
        caps.subgroups = device.features().contains(wgpu::Features::SUBGROUP);
        caps.timestamps = device.features().contains(wgpu::Features::TIMESTAMP_QUERY);

        // The default handler panics; a library must turn device errors into values instead.
        let sink = Arc::new(Mutex::new(ErrorSink::default()));
        let s = sink.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            s.lock().unwrap().errors.push(classify(&e));
        }));
        let s = sink.clone();
        device.set_device_lost_callback(move |reason, msg| {
            s.lock().unwrap().lost = Some(format!("{reason:?}: {msg}"));
        });
        let dummy = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("sparq dummy"),
            contents: &[0u8; 16],
            usage: wgpu::BufferUsages::STORAGE,
        });
        log::info!("opened {} ({:?})", info.name, info.backend);
        Ok(Gpu {
            adapter,
            device,
            queue,
            caps,
            pipelines: PipelinePool::new(config.checked),
            layouts: LayoutPool::default(),
            tuned: TuneCache::new(config.gemm.tune_cache.clone()),
            config,
            sink,
            dummy,
        })
    }

    /// The tuning knobs the device was opened with, fixed for its lifetime (compiled
    /// pipelines and tuned choices depend on them).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Compute pipelines compiled on this device so far (each shader and set of constants
    /// once, then reused): what a test of the pipeline cache counts.
    pub fn pipelines_compiled(&self) -> usize {
        self.pipelines.len()
    }

    /// This device's tuned launch choices (the tensor-core GEMM's autotuner keeps its
    /// winners here), independent of every other device.
    pub fn tune_cache(&self) -> &TuneCache {
        &self.tuned
    }

    /// Returns the first error the device reported since the last check, or a lost device.
    pub fn check(&self) -> Result<()> {
        let mut s = self.sink.lock().unwrap();
        if let Some(l) = &s.lost {
            return Err(Error::device_lost(l.clone()));
        }
        if !s.errors.is_empty() {
            let first = s.errors.remove(0);
            let more = s.errors.len();
            s.errors.clear();
            return Err(if more > 0 {
                first.map_message(|m| format!("{m} (and {more} more)"))
            } else {
                first
            });
        }
        Ok(())
    }

    /// A 16-byte zeroed storage buffer bound where a kernel's optional input is absent.
    pub fn dummy(&self) -> &wgpu::Buffer {
        &self.dummy
    }

    /// Creates a storage buffer holding `data`, checking the device limits first.
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> Result<wgpu::Buffer> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        self.check_binding(label, bytes.len() as u64)?;
        let padded;
        // Zero-length buffers cannot be bound; keep 16 bytes so every binding is valid.
        let contents = if bytes.len() < 16 {
            padded = {
                let mut v = bytes.to_vec();
                v.resize(16, 0);
                v
            };
            &padded[..]
        } else {
            bytes
        };
        Ok(self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            }))
    }

    /// Creates an uninitialised storage buffer of `bytes` bytes (at least 16).
    pub fn storage(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        self.check_binding(label, bytes)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(16).next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// Refuses a buffer that one storage binding of this device cannot hold.
    pub fn check_binding(&self, what: &str, bytes: u64) -> Result<()> {
        if bytes > self.caps.max_storage_binding {
            return Err(Error::Input(InputError::TooLarge {
                what: what.to_string(),
                bytes,
                limit_name: "max_storage_buffer_binding_size",
                limit: self.caps.max_storage_binding,
            }));
        }
        if bytes > self.caps.max_buffer {
            return Err(Error::Input(InputError::TooLarge {
                what: what.to_string(),
                bytes,
                limit_name: "max_buffer_size",
                limit: self.caps.max_buffer,
            }));
        }
        Ok(())
    }

    /// Submits `encoder`, waits for the GPU, and reports any device error.
    pub fn submit_and_wait(&self, encoder: wgpu::CommandEncoder) -> Result<()> {
        let idx = self.queue.submit([encoder.finish()]);
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(idx),
                timeout: None,
            })
            .map_err(|e| Error::device_failed(e.to_string()))?;
        self.check()
    }

    /// A fresh command encoder.
    pub fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }

    /// Splits `workgroups` into a 2-D grid that respects the per-dimension limit.
    pub fn grid(&self, workgroups: u32) -> (u32, u32) {
        let max = self.caps.max_workgroups_per_dim.max(1);
        if workgroups <= max {
            (workgroups.max(1), 1)
        } else {
            let y = workgroups.div_ceil(max);
            (workgroups.div_ceil(y), y)
        }
    }
}
