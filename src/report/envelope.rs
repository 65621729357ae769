//! The one envelope of every machine-readable output of `sparq` (docs/output.md): who wrote
//! it, when, on what, with which settings, and the rows.

use crate::error::{Error, Result};
use serde::Serialize;
use serde_json::Value;

/// Version of the envelope's layout; raised when a field changes meaning or goes away (new
/// fields and new row fields do not raise it).
pub const SCHEMA: u32 = 1;

/// The crate's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit the crate was built from (`unknown` outside a git checkout).
pub const COMMIT: &str = env!("SPARQ_GIT_COMMIT");

/// `{"sparq", "schema", "commit", "date", "command", "adapter", "settings", "rows"}` and,
/// where a command measured something that belongs to no row, `summary`.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Envelope {
    /// [`VERSION`] of the writer.
    pub sparq: String,
    /// [`SCHEMA`].
    pub schema: u32,
    /// [`COMMIT`] of the writer.
    pub commit: String,
    /// When it was written, RFC 3339 in UTC to the second (`2026-12-02T01:44:10Z`).
    pub date: String,
    /// The command that wrote it (`bench`, `bench --sparse`, `gemm`, `run`, ...): says what
    /// its rows are.
    pub command: String,
    /// The adapter (an object with at least `name` and `backend`), a list of them for
    /// several devices, or `null` where none was used.
    pub adapter: Value,
    /// Every option that changes the result.
    pub settings: Value,
    /// The results, one object per row.
    pub rows: Vec<Value>,
    /// Measurements of the run as a whole (a bandwidth ceiling, a calibrated model), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Value>,
}

fn value(what: &str, v: impl Serialize) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::invalid(format!("{what} as JSON: {e}")))
}

/// Now, RFC 3339 in UTC to the second.
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    let secs = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
    secs.to_string()
}

impl Envelope {
    /// The envelope of `rows` (a list: each item becomes one row object) written now by
    /// `command` on `adapter` with `settings`.
    pub fn new(
        command: &str,
        adapter: impl Serialize,
        settings: impl Serialize,
        rows: impl Serialize,
    ) -> Result<Self> {
        let rows = match value("rows", rows)? {
            Value::Array(a) => a,
            other => vec![other],
        };
        Ok(Envelope {
            sparq: VERSION.into(),
            schema: SCHEMA,
            commit: COMMIT.into(),
            date: now_rfc3339(),
            command: command.into(),
            adapter: value("adapter", adapter)?,
            settings: value("settings", settings)?,
            rows,
            summary: None,
        })
    }

    /// With a `summary`.
    pub fn with_summary(mut self, summary: impl Serialize) -> Result<Self> {
        self.summary = Some(value("summary", summary)?);
        Ok(self)
    }

    /// Pretty JSON, ending in a newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("JSON values serialize") + "\n"
    }

    /// The rows as a [`super::Table`] of their raw values (CSV of a command's results).
    pub fn table(&self) -> super::Table {
        super::Table::from_json_rows(&self.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_present() {
        #[derive(Serialize)]
        struct Row {
            us: f64,
        }
        let e = Envelope::new(
            "bench",
            serde_json::json!({"name": "llvmpipe", "backend": "Vulkan"}),
            serde_json::json!({"iters": 3}),
            vec![Row { us: 1.5 }],
        )
        .unwrap();
        let v: Value = serde_json::from_str(&e.to_json()).unwrap();
        for k in [
            "sparq", "schema", "commit", "date", "command", "adapter", "settings", "rows",
        ] {
            assert!(v.get(k).is_some(), "{k} missing: {v}");
        }
        assert!(v.get("summary").is_none());
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["sparq"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["rows"][0]["us"], 1.5);
        // Built in a git checkout (as the tests are), the commit is a full hash.
        if std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.git")).exists() {
            let hex = e.commit.len() == 40 && e.commit.bytes().all(|b| b.is_ascii_hexdigit());
            assert!(hex, "{}", e.commit);
        } else {
            assert_eq!(e.commit, "unknown");
        }
        // RFC 3339, UTC, whole seconds: parsed back by the same crate.
        assert!(e.date.ends_with('Z') && !e.date.contains('.'), "{}", e.date);
        e.date.parse::<jiff::Timestamp>().unwrap();
        let back: Envelope = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        let s = e
            .with_summary(serde_json::json!({"ceiling_gbps": 1.0}))
            .unwrap();
        assert_eq!(s.summary.unwrap()["ceiling_gbps"], 1.0);
    }

    #[test]
    fn a_single_row_is_a_list_of_one() {
        let e =
            Envelope::new("run", Value::Null, Value::Null, serde_json::json!({"a": 1})).unwrap();
        assert_eq!(e.rows, vec![serde_json::json!({"a": 1})]);
        assert_eq!(e.table().csv(), "a\r\n1\r\n");
    }
}
