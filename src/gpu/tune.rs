//! Tuned launch choices of one device: measured once (e.g. by `matmul::coop::autotune`) and
//! looked up by every later plan, optionally kept in a JSON file between runs.
//!
//! The cache belongs to a [`super::Gpu`] rather than the process: two devices (or two
//! configurations of one adapter) tune independently. Entries are JSON values under text keys,
//! so this module needs no knowledge of the kernels that store them.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// Tuned choices by key, loaded lazily from [`TuneCache::path`] on first use.
#[derive(Debug, Default)]
pub struct TuneCache {
    path: Option<PathBuf>,
    entries: Mutex<Option<HashMap<String, serde_json::Value>>>,
}

impl TuneCache {
    /// An empty cache, backed by the JSON file at `path` when given (the config's
    /// [`crate::config::GemmConfig::tune_cache`]).
    pub fn new(path: Option<PathBuf>) -> Self {
        TuneCache {
            path,
            entries: Mutex::new(None),
        }
    }

    /// The file that backs the cache, if any.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// The entry under `key`, if there is one of type `T`.
    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        let mut guard = self.entries.lock().unwrap();
        let map = guard.get_or_insert_with(|| self.load());
        serde_json::from_value(map.get(key)?.clone()).ok()
    }

    /// Stores `value` under `key` and, when the cache has a file, writes it there too (merged
    /// with what the file holds now, so devices sharing one file keep each other's entries).
    pub fn insert<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let value = serde_json::to_value(value).map_err(|e| Error::invalid(e.to_string()))?;
        let mut guard = self.entries.lock().unwrap();
        let map = guard.get_or_insert_with(|| self.load());
        map.insert(key.to_string(), value.clone());
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut on_disk = self.load();
        on_disk.insert(key.to_string(), value);
        let text =
            serde_json::to_string_pretty(&on_disk).map_err(|e| Error::invalid(e.to_string()))?;
        crate::error::write_file(path, text)
    }

    /// The file's entries; a missing or unreadable file is an empty cache, as a cache only
    /// saves time.
    fn load(&self) -> HashMap<String, serde_json::Value> {
        let Some(path) = &self.path else {
            return HashMap::new();
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return HashMap::new();
        };
        serde_json::from_str(&text).unwrap_or_else(|e| {
            log::warn!("tuning cache {} ignored: {e}", path.display());
            HashMap::new()
        })
    }
}
