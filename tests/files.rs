//! Files the library writes: whole or not at all, errors naming the requested path, typed
//! refusals of an output over its input and of block shapes no kernel runs.

use sparq::InputError;
use sparq::formats::WeightFormat;
use sparq::model::compress::{Compression, SparseStorage};
use sparq::model::loader;
use sparq::sparse::{ValueType, check_kernel_block};
use std::collections::HashMap;

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn save_replaces_the_file_whole_and_names_the_path_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    std::fs::write(&path, b"old").unwrap();
    let floats = vec![("w".to_string(), vec![2, 3], vec![1.0f32; 6])];
    loader::save(&path, &floats, &[], HashMap::new()).unwrap();
    let file = loader::WeightFile::open(&path).unwrap();
    assert_eq!(file.floats("w", &[2, 3]).unwrap(), vec![1.0; 6]);
    assert_eq!(names(dir.path()), ["m.safetensors"]);
    // The same tensors and metadata give the same bytes.
    let again = dir.path().join("again.safetensors");
    let meta = HashMap::from([("a".into(), "1".into()), ("b".into(), "2".into())]);
    loader::save(&path, &floats, &[], meta.clone()).unwrap();
    loader::save(&again, &floats, &[], meta).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&again).unwrap()
    );

    let missing = dir.path().join("no/such/m.safetensors");
    let e = loader::save(&missing, &floats, &[], HashMap::new()).unwrap_err();
    match &e {
        sparq::Error::Input(InputError::File { path, .. }) => {
            assert_eq!(path, &missing.display().to_string())
        }
        other => panic!("{other:?}"),
    }
    assert!(!e.to_string().contains("partial"), "{e}");
    let e = sparq::error::write_file(&missing, "x").unwrap_err();
    assert!(
        matches!(e, sparq::Error::Input(InputError::File { .. })),
        "{e}"
    );
}

#[test]
fn an_output_over_the_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.safetensors");
    std::fs::write(&model, b"x").unwrap();
    std::fs::write(dir.path().join("config.json"), b"{}").unwrap();
    let other = dir.path().join("other.safetensors");
    for (input, output) in [
        (model.clone(), model.clone()),
        (dir.path().to_path_buf(), model.clone()),
        (model.clone(), dir.path().join("config.json")),
    ] {
        let e = loader::check_output(&input, &output).unwrap_err();
        assert!(
            matches!(&e, sparq::Error::Input(InputError::OutputIsInput { output: o, .. })
                if o == &output.display().to_string()),
            "{e:?}"
        );
    }
    loader::check_output(&model, &other).unwrap();
    std::fs::write(&other, b"y").unwrap();
    loader::check_output(&model, &other).unwrap();
    loader::check_output(dir.path(), &other).unwrap();
}

#[test]
fn block_shapes_without_a_kernel_are_refused_in_one_place() {
    for (r, c, vt) in [
        (1, 4, ValueType::F32),
        (16, 128, ValueType::F16),
        (4, 16, ValueType::Int8),
        (2, 32, ValueType::Int4),
    ] {
        check_kernel_block(r, c, vt).unwrap();
    }
    for (r, c, vt) in [
        (1, 1, ValueType::F16),
        (4, 8, ValueType::Int8),
        (17, 32, ValueType::F32),
        (1, 132, ValueType::F32),
        (0, 32, ValueType::F32),
        (65536, 65536, ValueType::F32),
    ] {
        let e = check_kernel_block(r, c, vt).unwrap_err();
        assert!(
            matches!(&e, sparq::Error::Input(InputError::BlockShape { rows, cols, .. })
                if (*rows, *cols) == (r, c)),
            "{e:?}"
        );
    }
    let c = Compression {
        format: WeightFormat::F16,
        sparse: Some(SparseStorage::parse("blocks:1x1:0.5").unwrap()),
    };
    let e = c.check().unwrap_err();
    assert!(e.to_string().contains("C in 8, 16, 24"), "{e}");
    // The same refusal when storing a layer, and for one block over the whole matrix.
    let w = vec![1.0f32; 8 * 16];
    assert!(matches!(
        c.store(&w, 8, 16),
        Err(sparq::Error::Input(InputError::BlockShape { .. }))
    ));
    let big = Compression {
        format: WeightFormat::F16,
        sparse: Some(SparseStorage::parse("blocks:16x16:0.5").unwrap()),
    };
    big.check().unwrap();
    let e = big.store(&w, 8, 16).unwrap_err();
    assert!(e.to_string().contains("cover the whole 8×16"), "{e}");
    // A block wider than the matrix but not taller is padded, and fine.
    let wide = Compression {
        format: WeightFormat::F16,
        sparse: Some(SparseStorage::parse("blocks:1x32:0.5").unwrap()),
    };
    wide.store(&w, 8, 16).unwrap();
}
