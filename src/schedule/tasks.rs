//! Task parallelism: several models over a set of devices, one queue (and thread) per device.
//!
//! A model is placed when it is added: on the device it is pinned to, or else on the device
//! where it fits in the remaining memory budget and where the work already placed plus its
//! own, divided by the device's measured speed, is smallest. Requests to one model run in
//! submission order on its device; devices run concurrently. A device that reports a device
//! fault is marked failed and later placements avoid it. A request whose device fails is not
//! lost: its model is rebuilt on another live device (placed as above) and the request runs
//! there, so every accepted request is answered once. A model pinned to the failed device has
//! nowhere else to go: its requests return the error naming the device.

use super::{ChainLayer, LinearChain, Replica, device_name, is_device_fault, run_single};
use crate::Gpu;
use crate::error::InputError;
use crate::error::{Error, Result};
use crate::formats::{PackedWeights, WeightFormat};
use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// What the placement needs to know about a model.
#[derive(Clone, Debug)]
pub struct ModelSpec {
    /// Name, for errors and reports.
    pub name: String,
    /// Device memory it needs (weights and working buffers), bytes.
    pub bytes: u64,
    /// Relative work per request (any unit, the same for all models of a pool).
    pub cost: f64,
    /// Device it must run on (index into the pool).
    pub pin: Option<usize>,
}

/// The models living on one device thread.
type Models = HashMap<usize, Box<dyn Any + Send>>;
type Job = Box<dyn FnOnce(&mut Models) + Send>;
/// Builds a model on a device (type-erased replica), again after a failover.
type Factory = Arc<dyn Fn(&Arc<Gpu>) -> Result<Box<dyn Any + Send>> + Send + Sync>;

/// Where a model lives now, and how to build it elsewhere.
struct Placed {
    spec: ModelSpec,
    device: usize,
    factory: Factory,
}

struct DeviceQueue {
    name: String,
    gpu: Arc<Gpu>,
    speed: f64,
    budget: u64,
    used: u64,
    load: f64,
    failed: Arc<Mutex<Option<String>>>,
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

/// A model added to a [`TaskPool`], typed by its replica.
#[derive(Debug)]
pub struct ModelHandle<R> {
    id: usize,
    pin: Option<usize>,
    /// Device it was first placed on (see [`TaskPool::device_of`] after a failover).
    pub device: usize,
    /// The model's name.
    pub name: String,
    _replica: PhantomData<fn() -> R>,
}

/// The pending result of one request.
pub struct Ticket<'p, R: Replica> {
    pool: &'p TaskPool,
    model: &'p ModelHandle<R>,
    inputs: Vec<R::In>,
    device: usize,
    rx: mpsc::Receiver<Result<Vec<R::Out>>>,
}

impl<R> Ticket<'_, R>
where
    R: Replica + 'static,
    R::In: Clone + Send + 'static,
    R::Out: 'static,
{
    /// Waits for the outputs (one per input row, in order). If the device fails meanwhile,
    /// the model moves to another live device and the request runs again there.
    pub fn wait(self) -> Result<Vec<R::Out>> {
        let Ticket {
            pool,
            model,
            inputs,
            mut device,
            mut rx,
        } = self;
        loop {
            let result = rx.recv().unwrap_or_else(|_| {
                Err(Error::device_lost(format!(
                    "the queue of {} stopped before answering",
                    pool.queues[device].name
                )))
            });
            match result {
                Err(e) if is_device_fault(&e) && model.pin.is_none() => {
                    device = pool.failover(model.id, device).map_err(|f| {
                        Error::no_device_left(format!("{e}; no other device for it: {f}"))
                    })?;
                    rx = pool.send_request(model, device, inputs.clone())?;
                }
                other => return other,
            }
        }
    }
}

/// Devices with one work queue each, and the models placed on them.
pub struct TaskPool {
    queues: Vec<DeviceQueue>,
    next_id: usize,
    placed: Mutex<HashMap<usize, Placed>>,
}

/// Rows per second of a small f32 layer on `gpu`: the speed placement divides by.
pub fn probe_speed(gpu: &Arc<Gpu>) -> Result<f64> {
    let (n, k, rows) = (256, 256, 64);
    let w: Vec<f32> = (0..n * k)
        .map(|i| ((i * 7919) % 1000) as f32 * 1e-3)
        .collect();
    let layer = ChainLayer {
        weights: PackedWeights::quantize(&w, n, k, WeightFormat::F32)?,
        bias: None,
    };
    let mut chain = LinearChain::new(gpu, &[layer], rows)?;
    let x = vec![vec![0.5f32; k]; rows];
    run_single(&mut chain, &x)?;
    let t = Instant::now();
    for _ in 0..3 {
        run_single(&mut chain, &x)?;
    }
    Ok(3.0 * rows as f64 / t.elapsed().as_secs_f64().max(1e-9))
}

impl TaskPool {
    /// A pool over `gpus`, each device's speed measured with [`probe_speed`].
    pub fn new(gpus: Vec<Arc<Gpu>>) -> Result<Self> {
        let speeds = gpus.iter().map(probe_speed).collect::<Result<Vec<_>>>()?;
        Self::with_speeds(gpus, &speeds)
    }

    /// A pool over `gpus` with given relative speeds (e.g. from [`super::Cluster::rates`]).
    pub fn with_speeds(gpus: Vec<Arc<Gpu>>, speeds: &[f64]) -> Result<Self> {
        if gpus.is_empty() || speeds.len() != gpus.len() {
            return Err(Error::invalid(format!(
                "{} devices and {} speeds; need one speed per device, at least one device",
                gpus.len(),
                speeds.len()
            )));
        }
        let queues = gpus
            .into_iter()
            .zip(speeds)
            .enumerate()
            .map(|(i, (gpu, &speed))| {
                let (tx, rx) = mpsc::channel::<Job>();
                let thread = std::thread::Builder::new()
                    .name(format!("sparq-queue-{i}"))
                    .spawn(move || {
                        let mut models = Models::new();
                        for job in rx {
                            job(&mut models);
                        }
                    })?;
                Ok(DeviceQueue {
                    name: device_name(i, &gpu),
                    gpu,
                    speed: speed.max(1e-9),
                    budget: u64::MAX,
                    used: 0,
                    load: 0.0,
                    failed: Arc::new(Mutex::new(None)),
                    tx: Some(tx),
                    thread: Some(thread),
                })
            })
            .collect::<Result<_>>()?;
        Ok(TaskPool {
            queues,
            next_id: 0,
            placed: Mutex::new(HashMap::new()),
        })
    }

    /// Limits the device memory placement may give away on device `i` (unlimited by default:
    /// wgpu does not report a device's memory size).
    pub fn set_budget(&mut self, i: usize, bytes: u64) -> Result<()> {
        let n = self.queues.len();
        let q = self
            .queues
            .get_mut(i)
            .ok_or_else(|| Error::invalid(format!("device {i} is not in the pool of {n}")))?;
        q.budget = bytes;
        Ok(())
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    /// Whether the pool has no device (never true for a built pool).
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Measured speeds (rows per second of the probe, or as given).
    pub fn speeds(&self) -> Vec<f64> {
        self.queues.iter().map(|q| q.speed).collect()
    }

    /// The devices.
    pub fn gpu(&self, i: usize) -> &Arc<Gpu> {
        &self.queues[i].gpu
    }

    /// Why device `i` was marked failed, if it was.
    pub fn failure(&self, i: usize) -> Option<String> {
        self.queues[i].failed.lock().unwrap().clone()
    }

    fn alive(&self, i: usize) -> bool {
        self.queues[i].failed.lock().unwrap().is_none()
    }

    /// The device `spec` goes to.
    pub fn place(&self, spec: &ModelSpec) -> Result<usize> {
        let fits = |q: &DeviceQueue| spec.bytes <= q.budget.saturating_sub(q.used);
        if let Some(p) = spec.pin {
            let q = self.queues.get(p).ok_or_else(|| {
                Error::invalid(format!(
                    "model '{}' is pinned to device {p}; the pool has {}",
                    spec.name,
                    self.queues.len()
                ))
            })?;
            if let Some(f) = self.failure(p) {
                return Err(Error::device_lost(format!("{}: {f}", q.name)));
            }
            if !fits(q) {
                return Err(self.too_large(spec, &[p]));
            }
            return Ok(p);
        }
        let alive: Vec<usize> = (0..self.queues.len()).filter(|&i| self.alive(i)).collect();
        if alive.is_empty() {
            return Err(Error::no_device_left(
                (0..self.queues.len())
                    .map(|i| {
                        format!(
                            "{}: {}",
                            self.queues[i].name,
                            self.failure(i).unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        }
        alive
            .iter()
            .copied()
            .filter(|&i| fits(&self.queues[i]))
            .min_by(|&a, &b| {
                let finish = |i: usize| {
                    let q = &self.queues[i];
                    (q.load + spec.cost.max(0.0)) / q.speed
                };
                finish(a).total_cmp(&finish(b))
            })
            .ok_or_else(|| self.too_large(spec, &alive))
    }

    fn too_large(&self, spec: &ModelSpec, devices: &[usize]) -> Error {
        let free = devices
            .iter()
            .map(|&i| self.queues[i].budget.saturating_sub(self.queues[i].used))
            .max()
            .unwrap_or(0);
        Error::Input(InputError::TooLarge {
            what: format!("model '{}'", spec.name),
            bytes: spec.bytes,
            limit_name: "free device memory budget",
            limit: free,
        })
    }

    /// Places `spec`, builds the model there with `factory` (on the device's thread) and
    /// returns its handle. The factory is kept to rebuild the model on another device if
    /// this one fails.
    pub fn add<R, F>(&mut self, spec: ModelSpec, factory: F) -> Result<ModelHandle<R>>
    where
        R: Replica + 'static,
        F: Fn(&Arc<Gpu>) -> Result<R> + Send + Sync + 'static,
    {
        let device = self.place(&spec)?;
        let id = self.next_id;
        self.next_id += 1;
        let factory: Factory =
            Arc::new(move |g| factory(g).map(|r| Box::new(r) as Box<dyn Any + Send>));
        self.build(id, device, &factory)?;
        let q = &mut self.queues[device];
        q.used = q.used.saturating_add(spec.bytes);
        q.load += spec.cost.max(0.0);
        let handle = ModelHandle {
            id,
            pin: spec.pin,
            device,
            name: spec.name.clone(),
            _replica: PhantomData,
        };
        self.placed.lock().unwrap().insert(
            id,
            Placed {
                spec,
                device,
                factory,
            },
        );
        Ok(handle)
    }

    /// Builds model `id` with `factory` on `device`'s thread and waits for it.
    fn build(&self, id: usize, device: usize, factory: &Factory) -> Result<()> {
        let q = &self.queues[device];
        let (gpu, factory) = (q.gpu.clone(), factory.clone());
        let (tx, rx) = mpsc::channel();
        Self::send(
            q,
            Box::new(move |models: &mut Models| {
                let built = factory(&gpu).map(|r| {
                    models.insert(id, r);
                });
                let _ = tx.send(built);
            }),
        )?;
        rx.recv()
            .map_err(|_| Error::device_lost(format!("the queue of {} stopped", q.name)))?
    }

    /// The device model `model` lives on now.
    pub fn device_of<R>(&self, model: &ModelHandle<R>) -> usize {
        self.placed
            .lock()
            .unwrap()
            .get(&model.id)
            .map_or(model.device, |p| p.device)
    }

    /// Moves model `id` off `failed` (unless another request already did) to the device
    /// placement picks among the live ones, building it there; returns its device.
    fn failover(&self, id: usize, failed: usize) -> Result<usize> {
        let mut placed = self.placed.lock().unwrap();
        let p = placed
            .get_mut(&id)
            .ok_or_else(|| Error::invalid(format!("model {id} is not in this pool")))?;
        if p.device != failed {
            return Ok(p.device);
        }
        loop {
            let device = self.place(&p.spec)?;
            match self.build(id, device, &p.factory) {
                Ok(()) => {
                    p.device = device;
                    return Ok(device);
                }
                // That device failed too while building: mark it and try the next.
                Err(e) if is_device_fault(&e) => {
                    *self.queues[device].failed.lock().unwrap() = Some(e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn send(q: &DeviceQueue, job: Job) -> Result<()> {
        q.tx.as_ref()
            .and_then(|tx| tx.send(job).ok())
            .ok_or_else(|| Error::device_lost(format!("the queue of {} stopped", q.name)))
    }

    /// Queues `inputs` for `model` on its device; the ticket yields the outputs in order.
    pub fn submit<'p, R>(
        &'p self,
        model: &'p ModelHandle<R>,
        inputs: Vec<R::In>,
    ) -> Result<Ticket<'p, R>>
    where
        R: Replica + 'static,
        R::In: Clone + Send + 'static,
        R::Out: 'static,
    {
        if self.placed.lock().unwrap().get(&model.id).is_none() {
            return Err(Error::invalid(format!(
                "model '{}' is not from this pool",
                model.name
            )));
        }
        let device = self.device_of(model);
        let rx = self.send_request(model, device, inputs.clone())?;
        Ok(Ticket {
            pool: self,
            model,
            inputs,
            device,
            rx,
        })
    }

    /// Queues one request for `model` on `device`'s thread.
    fn send_request<R>(
        &self,
        model: &ModelHandle<R>,
        device: usize,
        inputs: Vec<R::In>,
    ) -> Result<mpsc::Receiver<Result<Vec<R::Out>>>>
    where
        R: Replica + 'static,
        R::In: Send + 'static,
        R::Out: 'static,
    {
        let q = &self.queues[device];
        let (tx, rx) = mpsc::channel();
        let (id, name, device) = (model.id, model.name.clone(), q.name.clone());
        let failed = q.failed.clone();
        Self::send(
            q,
            Box::new(move |models: &mut Models| {
                let result = (|| {
                    if let Some(f) = failed.lock().unwrap().clone() {
                        return Err(Error::device_lost(format!("{device}: {f}")));
                    }
                    let r = models
                        .get_mut(&id)
                        .and_then(|m| m.downcast_mut::<R>())
                        .ok_or_else(|| {
                            Error::invalid(format!("model '{name}' is not on {device}"))
                        })?;
                    R::check_batch(&inputs)?;
                    if inputs.is_empty() {
                        return Ok(Vec::new());
                    }
                    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_single(r, &inputs)
                    }))
                    .unwrap_or_else(|_| Err(Error::panicked(format!("model '{name}' panicked"))));
                    match out {
                        Err(e) if is_device_fault(&e) => {
                            *failed.lock().unwrap() = Some(e.to_string());
                            Err(e.prefixed(&device))
                        }
                        other => other,
                    }
                })();
                let _ = tx.send(result);
            }),
        )?;
        Ok(rx)
    }
}

impl Drop for TaskPool {
    fn drop(&mut self) {
        for q in &mut self.queues {
            q.tx.take();
        }
        for q in &mut self.queues {
            if let Some(t) = q.thread.take() {
                let _ = t.join();
            }
        }
    }
}
