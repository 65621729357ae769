//! Metadata-only GGUF files: the entries of a file whose keys share a prefix, written as a GGUF
//! file of their own (no tensors). `sparq pack` stores a decoder's `tokenizer.*` entries so in
//! the packed file, and reads them back with [`Gguf::from_bytes`], so that the packed file
//! tokenizes text exactly as its source did.

use super::writer::Writer;
use super::{Gguf, Value};

/// A GGUF file (version 3, no tensors) holding `entries` in order; [`Gguf::from_bytes`] reads
/// them back equal.
pub fn metadata_only<'a>(entries: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Vec<u8> {
    let mut w = Writer::new();
    for (k, v) in entries {
        w.kv(k, v.clone());
    }
    w.to_bytes()
}

impl Gguf {
    /// The entries whose key starts with `prefix`, in file order, as a metadata-only GGUF
    /// file ([`metadata_only`]); `None` when there are none.
    pub fn metadata_subset(&self, prefix: &str) -> Option<Vec<u8>> {
        let mut entries = self
            .metadata()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v))
            .peekable();
        entries.peek()?;
        Some(metadata_only(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Array;
    use super::*;

    /// One value of every type the reader knows, nested and empty arrays included.
    fn every_type() -> Vec<(String, Value)> {
        let values = [
            Value::U8(7),
            Value::I8(-7),
            Value::U16(65535),
            Value::I16(-300),
            Value::U32(4_000_000_000),
            Value::I32(-2_000_000_000),
            Value::F32(-1.5e-7),
            Value::Bool(true),
            Value::Str("Ġhello <|im_start|> é\n".into()),
            Value::U64(u64::MAX),
            Value::I64(i64::MIN),
            Value::F64(std::f64::consts::PI),
            Value::Array(Array::Str(vec!["a b".into(), String::new(), "Ã©".into()])),
            Value::Array(Array::I32(vec![1, 3, -4])),
            Value::Array(Array::F32(vec![0.0, -0.25, 1e30])),
            Value::Array(Array::U8(vec![])),
            Value::Array(Array::Bool(vec![false, true])),
            Value::Array(Array::U64(vec![1 << 40])),
            Value::Array(Array::Array(vec![
                Array::Str(vec!["x".into()]),
                Array::U32(vec![]),
            ])),
        ];
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("tokenizer.k{i}"), v))
            .collect()
    }

    #[test]
    fn every_value_type_round_trips_through_the_reader() {
        let entries = every_type();
        let bytes = metadata_only(entries.iter().map(|(k, v)| (k.as_str(), v)));
        let back = Gguf::from_bytes(bytes, "subset.gguf").unwrap();
        assert_eq!(back.metadata(), &entries[..]);
        assert_eq!(back.version(), 3);
        assert!(back.tensors().is_empty());
    }

    #[test]
    fn a_subset_keeps_only_its_prefix_in_order() {
        let mut entries = every_type();
        entries.insert(
            1,
            ("general.architecture".into(), Value::Str("llama".into())),
        );
        entries.push(("tokenizerx".into(), Value::U8(1)));
        let file = Gguf::from_bytes(
            metadata_only(entries.iter().map(|(k, v)| (k.as_str(), v))),
            "all.gguf",
        )
        .unwrap();
        let subset = file.metadata_subset("tokenizer.").unwrap();
        let back = Gguf::from_bytes(subset, "subset.gguf").unwrap();
        assert_eq!(back.metadata(), &every_type()[..]);
        assert!(file.metadata_subset("nothing.").is_none());
    }
}
