//! Tensor-core GEMM (`shaders/linear/gemm_coop.wgsl`): tile shapes, the adapter check, and a
//! small autotuner whose choices are cached per device (in [`Gpu::tune_cache`], and on disk when
//! `SPARQ_TUNE_CACHE` names a JSON file).

use super::{Linear, Strategy};
use crate::error::DeviceError;
use crate::error::InputError;
use crate::error::{Error, Result};
use crate::formats::WeightFormat;
use crate::gpu::{Dispatch, Gpu};
use crate::tensor::{ActDType, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Workgroups below which the tensor-core GEMM's default tile is too large for the shape: a
/// few workgroups then walk all of k one slice after another (measured, see
/// [`CoopTiling::default_for`]).
pub const COOP_TINY_GRID: usize = 32;

pub use crate::config::CoopTiling;

impl CoopTiling {
    /// Rows of y per workgroup.
    pub fn bm(&self) -> u32 {
        self.sgm * self.fm * 16
    }

    /// Columns of y per workgroup.
    pub fn bn(&self) -> u32 {
        self.sgn * self.fn_ * 16
    }

    /// Workgroup memory: the staged slices of x and W (f16, rows padded by 8) and one f32
    /// fragment per subgroup.
    pub fn workgroup_bytes(&self) -> u32 {
        self.buffers * (self.bm() + self.bn()) * (self.bk + 8) * 2 + self.sgm * self.sgn * 1024
    }

    /// Short label, e.g. `2x4sg 4x2f bk32` (128 × 128 tile).
    pub fn label(&self) -> String {
        format!(
            "{}x{}sg {}x{}f bk{}{}",
            self.sgm,
            self.sgn,
            self.fm,
            self.fn_,
            self.bk,
            if self.buffers == 1 { " 1buf" } else { "" }
        )
    }

    /// Parses `SGM,SGN,FM,FN,BK[,BUFFERS]` (as `SPARQ_COOP` takes it; 2 buffers by default).
    pub fn parse(s: &str) -> Result<Self> {
        Self::from_spec(s).map_err(|want| Error::invalid(format!("bad tiling '{s}' (want {want})")))
    }

    /// The tiling used when none was tuned for `m × n` outputs: the fastest of the H100
    /// sweeps for `m` rows (docs/notes/tensor_cores.md); where that leaves fewer than
    /// [`COOP_TINY_GRID`] workgroups, the largest smaller tile (64 × 64, 32 × 64, 16 × 64)
    /// whose grid reaches three times that, else the smallest. H200, MiniLM
    /// layers: at 128 rows 6 to 24 workgroups of 64 × 128 took 22-54 µs, 16 × 64 tiles 9-17
    /// µs; at 1024 rows 64 × 64 tiles lost to 72-96 workgroups of 128 × 128 (35-43 µs vs
    /// 25 µs), and int8 at 8192 rows to 96 of 256 × 128.
    pub fn default_for(format: WeightFormat, m: usize, n: usize) -> Self {
        let t = |sgm, sgn, fm, fn_, bk, buffers| CoopTiling {
            sgm,
            sgn,
            fm,
            fn_,
            bk,
            buffers,
        };
        // H100 sweeps (docs/notes/tensor_cores.md): small 64-row tiles while rows are few,
        // then 128 × 128 tiles of 8 subgroups; int8 prefers 256 × 128 with 16-deep slices,
        // int4 64-deep single-buffered slices (two 32-weight blocks per row, so every
        // invocation decodes one).
        // The group formats take their relatives' tiles (unmeasured).
        let family = match format {
            WeightFormat::Int8G32 => WeightFormat::Int8,
            WeightFormat::Int4Min { group } => WeightFormat::Int4 {
                group,
                asymmetric: false,
            },
            f => f,
        };
        let large = match (family, m) {
            (_, ..=128) | (WeightFormat::Int8, ..=256) => t(1, 4, 4, 2, 32, 2),
            (WeightFormat::Int4 { .. }, _) => t(4, 2, 2, 4, 64, 1),
            (_, ..=256) => t(2, 2, 2, 2, 32, 2),
            (WeightFormat::Int8, ..=512) => t(2, 4, 2, 4, 16, 2),
            (WeightFormat::Int8, _) => t(4, 2, 4, 4, 16, 2),
            _ => t(4, 2, 2, 4, 32, 2),
        };
        let grid = |t: &CoopTiling| m.div_ceil(t.bm() as usize) * n.div_ceil(t.bn() as usize);
        let smaller = [
            t(2, 2, 2, 2, 32, 2), // 64 × 64
            t(1, 4, 2, 1, 32, 2), // 32 × 64
            t(1, 4, 1, 1, 32, 2), // 16 × 64
        ];
        let tiles: Vec<CoopTiling> = std::iter::once(large)
            .chain(
                smaller
                    .into_iter()
                    .filter(|s| s.bm() * s.bn() < large.bm() * large.bn() && s.slices(format)),
            )
            .collect();
        // The first (largest) tile with grid enough, else the smallest.
        if grid(&large) >= COOP_TINY_GRID {
            return large;
        }
        // Three times the trigger: 1024 × 384 then takes 96 tiles of 64 × 64 (42 µs measured)
        // rather than 192 of 32 × 64.
        tiles
            .iter()
            .copied()
            .find(|t| grid(t) >= 3 * COOP_TINY_GRID)
            .unwrap_or(tiles[tiles.len() - 1])
    }

    /// Every shape the autotuner tries (those the adapter cannot run are skipped).
    pub fn candidates() -> Vec<Self> {
        let shapes = [
            (2, 4, 4, 2, 32), // 128 × 128, 8 subgroups
            (4, 2, 2, 4, 32), // 128 × 128, 8 subgroups
            (2, 2, 4, 4, 32), // 128 × 128, 4 subgroups with 16 fragments
            (2, 4, 4, 4, 16), // 128 × 256
            (4, 2, 4, 4, 16), // 256 × 128
            (4, 4, 2, 2, 16), // 128 × 128, 16 subgroups
            (2, 4, 2, 4, 16), // 64 × 256
            (1, 4, 4, 2, 32), // 64 × 128
            (2, 2, 2, 2, 32), // 64 × 64
            (1, 4, 2, 1, 32), // 32 × 64: few rows, more workgroups along n
            (1, 4, 1, 1, 32), // 16 × 64
        ];
        // Single-buffered, twice as deep: half the barriers per multiply-add.
        let single = [
            (4, 2, 2, 4, 64), // 128 × 128
            (2, 4, 4, 2, 64), // 128 × 128
            (2, 4, 4, 4, 32), // 128 × 256
        ];
        let make = |buffers| {
            move |(sgm, sgn, fm, fn_, bk)| CoopTiling {
                sgm,
                sgn,
                fm,
                fn_,
                bk,
                buffers,
            }
        };
        shapes
            .into_iter()
            .map(make(2))
            .chain(single.into_iter().map(make(1)))
            .collect()
    }

    /// Whether the slice depth suits `format`: slices of whole blocks, or for the binary and
    /// ternary formats (blocks of 64-128 weights) of whole parts of a block.
    pub fn slices(&self, format: WeightFormat) -> bool {
        super::tuning::stage_unit4(format, self.bk).is_some()
    }

    /// Whether `gpu` can run this tiling for `format`.
    pub fn fits(&self, gpu: &Gpu, format: WeightFormat) -> bool {
        let sg = gpu.caps.subgroup_max;
        self.slices(format)
            && self.sgm * self.sgn * sg <= gpu.caps.max_invocations
            && self.workgroup_bytes() <= gpu.caps.workgroup_storage
    }

    /// Template variables of the kernel.
    pub(super) fn vars(&self, sg: u32, format: WeightFormat) -> Vec<(&'static str, i64)> {
        let wg = self.sgm * self.sgn * sg;
        let (bm, bn, bk) = (self.bm(), self.bn(), self.bk);
        // `fits` (or the variant listing) has checked the slice depth.
        let unit4 = super::tuning::stage_unit4(format, bk).unwrap_or(format.block_k() as u32 / 4);
        let wunits = bk / (4 * unit4);
        let raw = format == WeightFormat::F16;
        vec![
            ("SG", sg as i64),
            ("SGM", self.sgm as i64),
            ("SGN", self.sgn as i64),
            ("FM", self.fm as i64),
            ("FN", self.fn_ as i64),
            ("BK", bk as i64),
            ("NBUF", self.buffers as i64),
            ("SINGLE", (self.buffers == 1) as i64),
            ("KSTEPS", (bk / 16) as i64),
            ("XLOADS", (bm * bk / 4).div_ceil(wg) as i64),
            ("WLOADS", (bn * wunits).div_ceil(wg) as i64),
            ("WRAW", raw as i64),
            ("SUB4", unit4 as i64),
            ("PARTIAL", (4 * unit4 < format.block_k() as u32) as i64),
        ]
    }
}

/// The WGSL text of one kernel variant for subgroup size `sg` (for offline validation).
pub fn wgsl(format: WeightFormat, act: ActDType, tiling: &CoopTiling, sg: u32) -> Result<String> {
    super::shader::source(Strategy::GemmCoop, format, act, &tiling.vars(sg, format))
}

/// Whether `gpu` can run the cooperative-matrix GEMM: f16 16×16×16 matrices with f32
/// accumulators, f16 shaders, and one known subgroup size.
pub fn available(gpu: &Gpu) -> bool {
    let c = &gpu.caps;
    c.f16
        && c.subgroup_min == c.subgroup_max
        && c.subgroup_max > 0
        && c.coop_matrix
            .iter()
            .any(|m| m.m == 16 && m.n == 16 && m.k == 16 && m.ab == "F16" && m.cr == "F32")
}

/// Checks that the adapter and format allow the kernel; fills the template variables and
/// returns the grid.
pub(super) fn prepare(
    gpu: &Gpu,
    format: WeightFormat,
    tiling: &CoopTiling,
    m: usize,
    n_out: usize,
    vars: &mut Vec<(&'static str, i64)>,
) -> Result<(u32, u32)> {
    if !available(gpu) {
        return Err(Error::Device(DeviceError::MissingFeature {
            adapter: gpu.caps.name.clone(),
            feature: "EXPERIMENTAL_COOPERATIVE_MATRIX (f16 16x16x16, f32 accumulator)".into(),
        }));
    }
    if format == WeightFormat::F32 {
        return Err(Error::invalid(
            "the cooperative-matrix GEMM takes every weight format but f32",
        ));
    }
    if !tiling.fits(gpu, format) {
        return Err(Error::invalid(format!(
            "tiling {} does not fit {} for {}",
            tiling.label(),
            gpu.caps.name,
            format.name()
        )));
    }
    vars.extend(tiling.vars(gpu.caps.subgroup_max, format));
    let gx = (n_out as u32).div_ceil(tiling.bn());
    let gy = (m as u32).div_ceil(tiling.bm());
    let max = gpu.caps.max_workgroups_per_dim;
    if gx > max || gy > max {
        return Err(Error::Input(InputError::TooLarge {
            what: format!("GEMM grid {gx} × {gy} workgroups"),
            bytes: gx.max(gy) as u64,
            limit_name: "max_compute_workgroups_per_dimension",
            limit: max as u64,
        }));
    }
    Ok((gx, gy))
}

/// What a tuned choice is keyed by: the adapter, the weight format, the activation type and
/// the power-of-two bucket of activation rows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct TuneKey {
    adapter: String,
    format: String,
    act: ActDType,
    m_bucket: usize,
}

impl TuneKey {
    fn new(gpu: &Gpu, format: WeightFormat, act: ActDType, m: usize) -> Self {
        TuneKey {
            adapter: format!("{} {} {}", gpu.caps.name, gpu.caps.backend, gpu.caps.driver),
            format: format.name(),
            act,
            m_bucket: m.next_power_of_two().clamp(16, 4096),
        }
    }

    fn text(&self) -> String {
        format!(
            "{}|{}|{:?}|{}",
            self.adapter, self.format, self.act, self.m_bucket
        )
    }
}

/// The tiling for this case: the config's `SPARQ_COOP` tiling if set, else the device's tuned
/// choice (see [`Gpu::tune_cache`]) where it still fits, else [`CoopTiling::default_for`].
pub fn tiling_for(
    gpu: &Gpu,
    format: WeightFormat,
    act: ActDType,
    m: usize,
    n: usize,
) -> CoopTiling {
    if let Some(t) = gpu.config.gemm.coop {
        return t;
    }
    gpu.tune_cache()
        .get::<CoopTiling>(&TuneKey::new(gpu, format, act, m).text())
        .filter(|t| t.fits(gpu, format))
        .unwrap_or_else(|| CoopTiling::default_for(format, m, n))
}

/// Makes `tiling` this device's choice for `format`, `act` and the row bucket of `m`, as
/// [`autotune`] does with its winner (and writes it to the cache file, if the device has one).
pub fn remember(
    gpu: &Gpu,
    format: WeightFormat,
    act: ActDType,
    m: usize,
    tiling: CoopTiling,
) -> Result<()> {
    gpu.tune_cache()
        .insert(&TuneKey::new(gpu, format, act, m).text(), &tiling)
}

/// One measured candidate of [`autotune`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct TuneResult {
    /// The tiling.
    pub tiling: CoopTiling,
    /// Median GPU time in µs.
    pub us: f64,
}

/// Times every candidate tiling that fits on `layer` with `m` rows of `act` activations,
/// remembers the fastest for this adapter, format and row bucket (and writes the disk cache
/// when `SPARQ_TUNE_CACHE` is set), and returns all timings, fastest first.
pub fn autotune(
    gpu: &Gpu,
    layer: &Linear,
    m: usize,
    act: ActDType,
    iters: usize,
) -> Result<Vec<TuneResult>> {
    // Random activations: constant data can make some GPUs run faster than real data.
    let mut rng = StdRng::seed_from_u64(m as u64);
    let xs: Vec<f32> = (0..m * layer.k)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let x = Tensor::from_f32_as(gpu, &xs, m, layer.k, act)?;
    let y = Tensor::empty(gpu, m, layer.n, act)?;
    let mut out = Vec::new();
    for t in CoopTiling::candidates() {
        if !t.fits(gpu, layer.format) {
            continue;
        }
        let plan = layer.plan_coop(gpu, &x, &y, t)?;
        let times = crate::gpu::time_dispatches(gpu, &[plan], 2, iters)?;
        out.push(TuneResult {
            tiling: t,
            us: crate::gpu::median(&times),
        });
    }
    out.sort_by(|a, b| a.us.total_cmp(&b.us));
    let best = out
        .first()
        .ok_or_else(|| Error::invalid(format!("no tiling fits {}", gpu.caps.name)))?;
    remember(gpu, layer.format, act, m, best.tiling)?;
    Ok(out)
}

impl Linear {
    /// Like [`Linear::plan`] with the cooperative-matrix GEMM forced to `tiling`.
    pub fn plan_coop(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        y: &Tensor,
        tiling: CoopTiling,
    ) -> Result<Vec<Dispatch>> {
        self.validate(x, y)?;
        self.plan_with(gpu, x, y, Strategy::GemmCoop, Some(tiling))
    }
}

#[cfg(test)]
mod tests {
    use super::CoopTiling;
    use crate::formats::WeightFormat;

    fn tile(format: WeightFormat, m: usize, n: usize) -> (u32, u32) {
        let t = CoopTiling::default_for(format, m, n);
        (t.bm(), t.bn())
    }

    #[test]
    fn small_grids_take_smaller_tiles() {
        let int4 = WeightFormat::Int4 {
            group: 32,
            asymmetric: false,
        };
        // Large grids keep the swept tiles.
        assert_eq!(tile(WeightFormat::F16, 8192, 384), (128, 128));
        assert_eq!(tile(int4, 8192, 1536), (128, 128));
        assert_eq!(tile(WeightFormat::Int8, 4096, 4096), (256, 128));
        // 1024 × 1536: 96 workgroups of 128 × 128 are enough; 1024 × 384 has 24, 96 of 64 × 64.
        assert_eq!(tile(WeightFormat::F16, 1024, 1536), (128, 128));
        assert_eq!(tile(WeightFormat::F16, 1024, 384), (64, 64));
        // int8 at 8192 rows: 96 workgroups of 256 × 128.
        assert_eq!(tile(WeightFormat::Int8, 8192, 384), (256, 128));
        // 128 × 1536: 24 of 64 × 128, 48 of 64 × 64, 96 of 32 × 64.
        assert_eq!(tile(WeightFormat::F16, 128, 1536), (32, 64));
        assert_eq!(tile(WeightFormat::F16, 128, 1152), (16, 64));
        // Nothing reaches the threshold: the smallest.
        assert_eq!(tile(int4, 128, 384), (16, 64));
        assert_eq!(tile(WeightFormat::F16, 1, 64), (16, 64));
        for f in WeightFormat::all() {
            for (m, n) in [(1, 1), (128, 384), (1024, 1536), (8192, 8192)] {
                let t = CoopTiling::default_for(f, m, n);
                assert!(t.slices(f), "{f:?} {m}×{n}");
            }
        }
    }

    #[test]
    fn parse_and_budget() {
        let t = CoopTiling::parse("2,4,4,2,32").unwrap();
        assert_eq!((t.bm(), t.bn()), (128, 128));
        // Two slices of 128 × 40 halves for x and W, 8 fragments of 1 KiB.
        assert_eq!(t.workgroup_bytes(), 2 * 256 * 40 * 2 + 8 * 1024);
        assert!(CoopTiling::parse("2,4,4,2").is_err());
        assert!(CoopTiling::parse("2,4,4,2,24").is_err());
        assert!(CoopTiling::parse("0,4,4,2,32").is_err());
        for c in CoopTiling::candidates() {
            assert!(c.workgroup_bytes() <= 48 * 1024, "{}", c.label());
        }
    }
}
