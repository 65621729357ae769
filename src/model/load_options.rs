//! Builder methods of [`LoadOptions`], which is `#[non_exhaustive]` (it gains settings) and so
//! is built from its default outside the crate:
//!
//! ```
//! use sparq::formats::WeightFormat;
//! use sparq::model::LoadOptions;
//! let options = LoadOptions::default().format(WeightFormat::F16).max_batch(64);
//! assert_eq!(options.format, WeightFormat::F16);
//! assert_eq!(options.max_batch.map(|m| m.get()), Some(64));
//! assert_eq!(LoadOptions::default().max_batch(0).max_batch, None);
//! ```

use super::LoadOptions;
use crate::formats::WeightFormat;

impl LoadOptions {
    /// With linear weights stored as floats converted to `format`.
    pub fn format(mut self, format: WeightFormat) -> Self {
        self.format = format;
        self
    }

    /// With the `batch_invariant` field set to `on`.
    pub fn batch_invariant(mut self, on: bool) -> Self {
        self.batch_invariant = on;
        self
    }

    /// With at most `rows` inputs per forward pass (the `max_batch` field); 0 for no
    /// limit but the device's.
    pub fn max_batch(mut self, rows: usize) -> Self {
        self.max_batch = std::num::NonZeroUsize::new(rows);
        self
    }

    /// With text tokenised by the `tokenizer.json` at `path` (the `tokenizer` field), in
    /// place of the one a packed file carries or one beside the weights.
    pub fn tokenizer(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tokenizer = Some(path.into());
        self
    }
}
