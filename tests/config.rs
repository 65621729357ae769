//! The typed configuration: parsing (without touching the process environment), errors that
//! name the variable, and that a device opened with a config really launches what it says.
mod common;

use common::all_gpus;
use sparq::InputError;
use sparq::config::Config;
use sparq::formats::{PackedWeights, WeightFormat};
use sparq::gpu::instance;
use sparq::matmul::{CoopTiling, KernelChoice, Linear, coop};
use sparq::tensor::ActDType;
use sparq::{Error, Gpu, Tensor};

fn parse(vars: &[(&str, &str)]) -> sparq::Result<Config> {
    Config::from_vars(vars.iter().copied())
}

#[test]
fn no_variables_give_the_defaults() {
    let c = parse(&[]).unwrap();
    assert_eq!(c, Config::default());
    assert!(c.gemm.q8, "int8 activations are on by default");
    assert!(!c.checked);
    assert_eq!(c.bench.replace, 0);
    assert_eq!(c.gemv.workgroup, None);
    // Names outside SPARQ_, names read elsewhere and empty values change nothing.
    let c = parse(&[
        ("PATH", "/bin"),
        ("SPARQ_ADAPTER", "vulkan"),
        ("SPARQ_SEED", "12"),
        ("SPARQ_COOP", ""),
        ("SPARQ_GEMV_WG", "  "),
    ])
    .unwrap();
    assert_eq!(c, Config::default());
}

#[test]
fn each_kind_of_value_parses() {
    let c = parse(&[
        ("SPARQ_GEMV_WG", "64"),
        ("SPARQ_GEMV_R", "2"),
        ("SPARQ_GEMV_U", " 4 "),
        ("SPARQ_GEMV_XSTAGE", "1"),
        ("SPARQ_GEMM_TILE", "128"),
        ("SPARQ_COOP", "2,4,4,2,32"),
        ("SPARQ_TUNE_CACHE", "/tmp/tune.json"),
        ("SPARQ_Q8", "0"),
        ("SPARQ_SPARSE_LONG", "512"),
        ("SPARQ_SPARSE_BIN", "16"),
        ("SPARQ_SPARSE_24_ROWS", "8"),
        ("SPARQ_SPARSE_XT_FROM", "off"),
        ("SPARQ_SPARSE_DENSE_FROM", "32"),
        ("SPARQ_SPARSE_U", "1"),
        ("SPARQ_SPARSE_XSM", "on"),
        ("SPARQ_SPARSE_XPICK", "dyn"),
        ("SPARQ_ATTENTION_SPLIT", "4"),
        ("SPARQ_ATTENTION_QPI", "2"),
        ("SPARQ_CHECKED", "true"),
        ("SPARQ_WARMUP_MS", "100"),
        ("SPARQ_BENCH_REPLACE", "3"),
    ])
    .unwrap();
    assert_eq!(c.gemv.workgroup, Some(64));
    assert_eq!(c.gemv.rows_per_team, Some(2));
    assert_eq!(c.gemv.unroll, Some(4));
    assert_eq!(c.gemv.x_staged, Some(true));
    assert_eq!(c.gemm.tile, Some(128));
    assert_eq!(
        c.gemm.coop,
        Some(CoopTiling {
            sgm: 2,
            sgn: 4,
            fm: 4,
            fn_: 2,
            bk: 32,
            buffers: 2
        })
    );
    assert_eq!(
        c.gemm.tune_cache.as_deref(),
        Some(std::path::Path::new("/tmp/tune.json"))
    );
    assert!(!c.gemm.q8);
    assert_eq!(c.sparse.long_units, Some(512));
    assert_eq!(c.sparse.bin_items, Some(16));
    assert_eq!(c.sparse.two_four_rows, Some(8));
    assert_eq!(c.sparse.transpose_x_from, Some(usize::MAX));
    assert_eq!(c.sparse.dense_from, Some(32));
    assert_eq!(c.sparse.unroll, Some(1));
    assert_eq!(c.sparse.stage_x, Some(true));
    assert_eq!(c.sparse.x_select, Some(false));
    assert_eq!(c.attention.split, Some(4));
    assert_eq!(c.attention.qpi, Some(2));
    assert!(c.checked);
    assert_eq!(c.bench.warmup_ms, Some(100));
    assert_eq!(c.bench.replace, 3);
    // Flags take several spellings (the bench scripts write `off`); the last value wins.
    let c = parse(&[("SPARQ_SPARSE_XSM", "on"), ("SPARQ_SPARSE_XSM", "off")]).unwrap();
    assert_eq!(c.sparse.stage_x, Some(false));
    let c = parse(&[("SPARQ_COOP", "1,1,2,2,64,1"), ("SPARQ_Q8", "YES")]).unwrap();
    assert_eq!(c.gemm.coop.map(|t| (t.bk, t.buffers)), Some((64, 1)));
    assert!(c.gemm.q8);
}

#[test]
fn bad_values_are_errors_naming_the_variable() {
    for (var, value) in [
        ("SPARQ_GEMV_WG", "abc"),
        ("SPARQ_GEMV_WG", "48"),
        ("SPARQ_GEMV_WG", "0"),
        ("SPARQ_GEMV_R", "9"),
        ("SPARQ_GEMV_U", "-1"),
        ("SPARQ_GEMV_XSTAGE", "maybe"),
        ("SPARQ_GEMM_TILE", "96"),
        ("SPARQ_COOP", "2,4,4,2"),
        ("SPARQ_COOP", "2,4,4,2,24"),
        ("SPARQ_Q8", "2"),
        ("SPARQ_SPARSE_LONG", "0"),
        ("SPARQ_SPARSE_BIN", "9999999"),
        ("SPARQ_SPARSE_XT_FROM", "never"),
        ("SPARQ_SPARSE_DENSE_FROM", "1.5"),
        ("SPARQ_SPARSE_XPICK", "fast"),
        ("SPARQ_ATTENTION_SPLIT", "3"),
        ("SPARQ_ATTENTION_QPI", "8"),
        ("SPARQ_CHECKED", "checked"),
        ("SPARQ_WARMUP_MS", "1s"),
        ("SPARQ_BENCH_REPLACE", "many"),
    ] {
        let e = parse(&[("SPARQ_Q8", "1"), (var, value)]).unwrap_err();
        match &e {
            Error::Input(InputError::Setting {
                var: v, value: got, ..
            }) => {
                assert_eq!((v.as_str(), got.as_str()), (var, value));
            }
            other => panic!("{var}={value}: {other:?}"),
        }
        let text = e.to_string();
        assert!(text.contains(var) && text.contains(value), "{text}");
    }
}

#[test]
fn unknown_sparq_names_are_reported_not_refused() {
    let names = [
        "SPARQ_GEMV_WG",
        "SPARQ_GEMV_WGG",
        "SPARQ_ADAPTER",
        "SPARQ_TEST_ADAPTERS",
        "HOME",
        "SPARQ_SPARSE_XSTAGE",
    ];
    assert_eq!(
        Config::unknown_vars(names),
        ["SPARQ_GEMV_WGG", "SPARQ_SPARSE_XSTAGE"]
    );
    // A typo is only warned about: the rest of the configuration still applies.
    let c = parse(&[("SPARQ_GEMV_WGG", "64"), ("SPARQ_GEMV_R", "1")]).unwrap();
    assert_eq!(c.gemv.workgroup, None);
    assert_eq!(c.gemv.rows_per_team, Some(1));
}

fn reopen(gpu: &Gpu, config: Config) -> Gpu {
    Gpu::from_adapter_with(gpu.adapter.clone(), &instance(), config).unwrap()
}

/// A forced GEMV workgroup size is what the plan launches: with one row per team, 64
/// invocations cover a quarter of the rows 256 do, so the grid is four times larger.
#[test]
fn explicit_gemv_workgroup_changes_the_plan() {
    for gpu in all_gpus() {
        let (n, k) = (4096, 64);
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let packed = PackedWeights::quantize(&w, n, k, WeightFormat::F32).unwrap();
        let grid = |wg: u32| {
            let mut config = parse(&[("SPARQ_GEMV_R", "1")]).unwrap();
            config.gemv.workgroup = Some(wg);
            let g = reopen(&gpu, config);
            assert_eq!(g.config().gemv.workgroup, Some(wg));
            let layer = Linear::new(&g, &packed, None).unwrap();
            let x = Tensor::from_f32(&g, &vec![1.0; k], 1, k).unwrap();
            let y = Tensor::empty(&g, 1, n, ActDType::F32).unwrap();
            let plan = layer.plan(&g, &x, &y, KernelChoice::Auto).unwrap();
            assert_eq!(plan.len(), 1, "one GEMV dispatch");
            let (gx, gy) = plan[0].grid;
            // The result is the same whatever the shape.
            let got = layer.forward(&g, &x).unwrap().to_f32(&g).unwrap();
            (gx * gy, got)
        };
        let (wide, y_wide) = grid(256);
        let (narrow, y_narrow) = grid(64);
        assert_eq!(narrow, 4 * wide, "{}", gpu.caps.name);
        assert_eq!(y_wide, y_narrow);
    }
}

#[test]
fn each_device_has_its_own_autotune_cache() {
    let gpu = &all_gpus()[0];
    let (a, b) = (
        reopen(gpu, Config::default()),
        reopen(gpu, Config::default()),
    );
    let (format, act, m, n) = (WeightFormat::F16, ActDType::F16, 256, 512);
    let default = CoopTiling::default_for(format, m, n);
    let tuned = CoopTiling::parse("1,1,1,1,16").unwrap();
    assert_ne!(tuned, default);
    assert!(
        tuned.fits(&a, format),
        "the test tiling must fit any adapter"
    );
    coop::remember(&a, format, act, m, tuned).unwrap();
    assert_eq!(coop::tiling_for(&a, format, act, m, n), tuned);
    assert_eq!(coop::tiling_for(&b, format, act, m, n), default);
    // The same row bucket (129 ..= 256) shares the choice; another does not.
    assert_eq!(coop::tiling_for(&a, format, act, 200, n), tuned);
    assert_eq!(
        coop::tiling_for(&a, format, act, 257, n),
        default_at(257, n)
    );

    // With a cache file, a later device on the same file starts from the tuned choice.
    let dir = std::env::temp_dir().join(format!("sparq-tune-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tune.json");
    let _ = std::fs::remove_file(&file);
    let mut config = Config::default();
    config.gemm.tune_cache = Some(file.clone());
    let writer = reopen(gpu, config.clone());
    assert_eq!(coop::tiling_for(&writer, format, act, m, n), default);
    coop::remember(&writer, format, act, m, tuned).unwrap();
    let reader = reopen(gpu, config);
    assert_eq!(coop::tiling_for(&reader, format, act, m, n), tuned);
    // A forced tiling wins over the tuned one.
    let mut forced = Config::default();
    forced.gemm.tune_cache = Some(file);
    forced.gemm.coop = Some(CoopTiling::from_spec("2,2,2,2,32").unwrap());
    let forced = reopen(gpu, forced);
    assert_eq!(
        coop::tiling_for(&forced, format, act, m, n),
        CoopTiling::parse("2,2,2,2,32").unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();

    fn default_at(m: usize, n: usize) -> CoopTiling {
        CoopTiling::default_for(WeightFormat::F16, m, n)
    }
}
