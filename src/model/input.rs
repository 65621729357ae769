//! The JSON input of `sparq run` (and of any program that takes a batch as JSON): one object
//! with `"texts"`, `"ids"` (and optional `"types"`) or `"features"`.

use crate::error::{Error, Result};
use crate::model::Batch;

impl Batch {
    /// Parses a batch from JSON: `{"texts": [...]}`, `{"ids": [[...]], "types": [[...]]}` or
    /// `{"features": [[...]]}`. A leading UTF-8 byte-order mark is skipped, as editors on some
    /// systems write one. A text over [`crate::model::prefix::MAX_INPUT_BYTES`] is refused
    /// before it is parsed.
    pub fn from_json(text: &str) -> Result<Batch> {
        crate::model::prefix::check_input_bytes("the input JSON", text.len())?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::invalid(format!("input JSON: {e}")))?;
        let bad = |m: &str| Error::invalid(format!("input JSON: {m}"));
        if let Some(t) = v.get("texts") {
            let texts: Vec<String> = serde_json::from_value(t.clone())
                .map_err(|_| bad("\"texts\" must be an array of strings"))?;
            return Ok(Batch::Text(texts));
        }
        if let Some(ids) = v.get("ids") {
            let ids: Vec<Vec<u32>> = serde_json::from_value(ids.clone())
                .map_err(|_| bad("\"ids\" must be arrays of token ids"))?;
            let types: Option<Vec<Vec<u32>>> = match v.get("types") {
                Some(t) => Some(
                    serde_json::from_value(t.clone())
                        .map_err(|_| bad("\"types\" must be arrays of integers"))?,
                ),
                None => None,
            };
            return Ok(Batch::Tokens { ids, types });
        }
        if let Some(f) = v.get("features") {
            let rows: Vec<Vec<f32>> = serde_json::from_value(f.clone())
                .map_err(|_| bad("\"features\" must be arrays of numbers"))?;
            let cols = rows.first().map_or(0, Vec::len);
            if rows.iter().any(|r| r.len() != cols) {
                return Err(bad("feature rows differ in length"));
            }
            // JSON numbers beyond f32's range parse to infinity.
            if rows.iter().flatten().any(|x| !x.is_finite()) {
                return Err(bad("a feature is beyond the range of f32"));
            }
            return Ok(Batch::Features {
                rows: rows.len(),
                cols,
                data: rows.concat(),
            });
        }
        Err(bad("expected a \"texts\", \"ids\" or \"features\" field"))
    }
}
