//! `Batch::from_json`, the `sparq run` input: a byte-order mark, numbers beyond f32, and
//! shapes that do not fit are typed errors or the batch they mean.

use sparq::Error;
use sparq::model::Batch;

#[test]
fn a_byte_order_mark_is_skipped() {
    let plain = Batch::from_json(r#"{"texts": ["a b", "c"]}"#).unwrap();
    let marked = Batch::from_json("\u{feff}{\"texts\": [\"a b\", \"c\"]}").unwrap();
    match (plain, marked) {
        (Batch::Text(a), Batch::Text(b)) => assert_eq!(a, b),
        _ => panic!("texts expected"),
    }
    // Only one mark, and only at the start: a second one is text, not JSON.
    assert!(Batch::from_json("\u{feff}\u{feff}{\"texts\": []}").is_err());
}

#[test]
fn features_beyond_f32_are_refused() {
    let e = Batch::from_json(r#"{"features": [[1.0, 1e39]]}"#).unwrap_err();
    assert!(matches!(e, Error::Input(_)), "{e:?}");
    assert!(e.to_string().contains("range of f32"), "{e}");
    let e = Batch::from_json(r#"{"features": [[1.0, 2.0], [3.0]]}"#).unwrap_err();
    assert!(e.to_string().contains("differ in length"), "{e}");
    match Batch::from_json(r#"{"features": [[1.5, -2.0], [3.0, 4.0]]}"#).unwrap() {
        Batch::Features { rows, cols, data } => {
            assert_eq!((rows, cols), (2, 2));
            assert_eq!(data, [1.5, -2.0, 3.0, 4.0]);
        }
        _ => panic!("features expected"),
    }
}

#[test]
fn wrong_shapes_name_the_field() {
    for (json, field) in [
        (r#"{"texts": "one"}"#, "\"texts\""),
        (r#"{"ids": [[1, -2]]}"#, "\"ids\""),
        (r#"{"ids": [[1]], "types": [["a"]]}"#, "\"types\""),
        (r#"{"features": [["x"]]}"#, "\"features\""),
        (r#"{"other": 1}"#, "expected a"),
        ("[1, 2]", "expected a"),
        ("", "input JSON"),
    ] {
        let e = Batch::from_json(json).unwrap_err();
        assert!(e.to_string().contains(field), "{json}: {e}");
    }
}
