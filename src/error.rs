//! The one error type of the library: every failure a caller can meet is a variant here,
//! so the binary can print one clear line and a server can decide what to retry.

/// Result alias used across sparq.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in sparq, from bad input to a lost GPU.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No adapter matched the selection (index, name or backend).
    #[error("no adapter matches '{selector}'; available: {available}")]
    NoAdapter {
        /// What the caller asked for.
        selector: String,
        /// One-line list of the adapters that exist.
        available: String,
    },
    /// The driver refused to create a device.
    #[error("could not open a device on '{adapter}': {reason}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// Driver's reason.
        reason: String,
    },
    /// Shapes of inputs do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// An argument is outside what the operation accepts (empty tensor, bad group size, ...).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// Wrong element type for the operation.
    #[error("wrong dtype: {0}")]
    DType(String),
    /// The adapter lacks a feature the request needs.
    #[error("the adapter '{adapter}' does not support {feature}")]
    MissingFeature {
        /// Adapter name.
        adapter: String,
        /// Missing feature.
        feature: String,
    },
    /// A buffer would exceed one of the device's limits.
    #[error("{what} needs {bytes} bytes, over the device limit {limit_name} = {limit} bytes")]
    TooLarge {
        /// Which buffer.
        what: String,
        /// Bytes needed.
        bytes: u64,
        /// Name of the wgpu limit.
        limit_name: &'static str,
        /// Value of the limit on this device.
        limit: u64,
    },
    /// Validation or out-of-memory error reported by wgpu.
    #[error("GPU error: {0}")]
    Gpu(String),
    /// The device was lost (driver reset, removal, destroy).
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// Every device of a multi-device run failed, so the work could not be finished.
    #[error("no device left to run on: {0}")]
    NoDeviceLeft(String),
    /// A safetensors file could not be read or is inconsistent.
    #[error("safetensors: {0}")]
    SafeTensors(String),
    /// A tensor the model needs is absent from its weights file.
    #[error("model: tensor '{tensor}' is missing (expected {expected})")]
    MissingTensor {
        /// Tensor name.
        tensor: String,
        /// What the architecture expects there (dtype and shape).
        expected: String,
    },
    /// A tensor of the weights file has the wrong shape, dtype or contents.
    #[error("model: tensor '{tensor}' is {found}, expected {expected}")]
    BadTensor {
        /// Tensor name.
        tensor: String,
        /// What the architecture expects.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// The model configuration is missing, unreadable or inconsistent.
    #[error("model config: {0}")]
    Config(String),
    /// A tuning variable (see [`crate::config`]) has a value sparq cannot use.
    #[error("{var}={value:?} is not valid: expected {expected}")]
    Setting {
        /// The variable, e.g. `SPARQ_GEMV_WG`.
        var: String,
        /// Its value.
        value: String,
        /// What it takes.
        expected: String,
    },
    /// File system errors.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A file that could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// The text of the file at `path`, or an error naming it.
pub fn read_text(path: impl AsRef<std::path::Path>) -> Result<String> {
    let path = path.as_ref();
    std::fs::read_to_string(path).map_err(|source| Error::File {
        path: path.display().to_string(),
        source,
    })
}

/// Writes `contents` to the file at `path`, or returns an error naming it.
pub fn write_file(path: impl AsRef<std::path::Path>, contents: impl AsRef<[u8]>) -> Result<()> {
    let path = path.as_ref();
    std::fs::write(path, contents).map_err(|source| Error::File {
        path: path.display().to_string(),
        source,
    })
}

impl From<safetensors::SafeTensorError> for Error {
    fn from(e: safetensors::SafeTensorError) -> Self {
        Error::SafeTensors(e.to_string())
    }
}
