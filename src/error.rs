//! The one error type of the library, split by what a caller should do about it.
//!
//! Every failure is one of three groups; [`Error::kind`] names the group and
//! [`Error::http_status`] the answer a server gives for it:
//!
//! - [`Error::Input`] ([`InputError`]): the request or its files are wrong (a shape, a dtype,
//!   a setting, a weights file, a size over a device limit, an adapter selector that matches
//!   nothing). Report it to the caller; never retry, every device would fail the same way.
//!   HTTP 400, or 413 for [`InputError::TooLarge`].
//! - [`Error::Device`] ([`DeviceError`]): the device failed (lost, out of memory, a missing
//!   feature, it could not be opened, none is left). Take the device out and retry the work
//!   on another one. HTTP 503.
//! - [`Error::Internal`] ([`InternalError`]): sparq did something wrong (a kernel or binding
//!   the driver rejected as invalid, a broken invariant, a panic caught in a replica).
//!   Retrying elsewhere is allowed, but it is a bug to report. HTTP 500.
//! - [`Error::Service`] ([`ServiceError`]): a service (the schedulers in
//!   [`crate::schedule`] that queue requests) will not take or finish the work now: its queue
//!   is full (HTTP 429, retry later), it is shutting down (503), the caller cancelled it or
//!   its deadline passed. Nothing is wrong with the input or the device.
//!
//! `Error` is `Clone` (file errors are shared behind an [`Arc`]), so the scheduler can hand
//! the same error to every caller waiting on a failed batch.

use std::sync::Arc;

/// Result alias used across sparq.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in sparq, from bad input to a lost GPU.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller's input is at fault: report it, do not retry.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The device failed: take it out and retry elsewhere.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// A bug in sparq: retrying elsewhere is allowed, but report it.
    #[error(transparent)]
    Internal(#[from] InternalError),
    /// A service will not take or finish the work now ([`ServiceError`]).
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// Errors caused by what the caller asked for or gave (see the [module docs](self)).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// No adapter matched the selection (index, name or backend).
    #[error("no adapter matches {selector}; available: {available}")]
    NoAdapter {
        /// What the caller asked for.
        selector: String,
        /// One-line list of the adapters that exist.
        available: String,
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
    /// A buffer would exceed one of the device's limits (a 413 for a server).
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
    /// A size computed from a request or a file (a product of its dimensions) does not fit
    /// in 64 bits (a 413 for a server).
    #[error("{what}: its size in bytes overflows 64 bits")]
    Overflow {
        /// What was being sized, with its dimensions.
        what: String,
    },
    /// A host buffer would exceed the memory sparq lets one request take (see
    /// [`crate::gpu::limits::host_memory_bound`]; a 413 for a server).
    #[error(
        "{what} needs {bytes} bytes of host memory, over the bound of {limit} bytes ({source_of_limit})"
    )]
    HostMemory {
        /// Which buffer, with its dimensions.
        what: String,
        /// Bytes needed.
        bytes: u64,
        /// The bound.
        limit: u64,
        /// Where the bound comes from (`MemAvailable of /proc/meminfo`, or a fixed cap).
        source_of_limit: &'static str,
    },
    /// A safetensors file could not be read or is inconsistent.
    #[error("safetensors: {0}")]
    SafeTensors(String),
    /// A GGUF file could not be read, is malformed (the message names the field and its byte
    /// offset) or holds a tensor type sparq does not support.
    #[error("gguf: {0}")]
    Gguf(String),
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
    /// A tensor of the weights file looks like one of the model's own (a part of a tensor the
    /// model read, another layer of it, an entry of the packed table) but the model does not
    /// use it: the file and the configuration disagree, and running would answer wrongly.
    #[error("model: tensor '{tensor}' is not used by the model, but {reason}")]
    UnusedTensor {
        /// Tensor name.
        tensor: String,
        /// Why it looks like the model's own.
        reason: String,
    },
    /// A forward pass produced a NaN or an infinity: the arithmetic overflowed f32 (weights
    /// or inputs too large for it). Returned instead of the poisoned results.
    #[error(
        "{what} of row {row} is not finite: the arithmetic overflowed f32 (weights or inputs \
         too large for it)"
    )]
    NonFinite {
        /// Which result (`output`, `probabilities`, ...).
        what: String,
        /// The first input row affected.
        row: usize,
    },
    /// A model's tokenizer or chat template is missing, malformed or inconsistent, or text
    /// and token ids do not fit it.
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] TokenizerError),
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
    Io(Arc<std::io::Error>),
    /// A file that could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        source: Arc<std::io::Error>,
    },
    /// An output path names a file the command reads (its input model, or a file of the
    /// model's directory), which writing would destroy.
    #[error("the output {output} is the input {input}: write to another file")]
    OutputIsInput {
        /// The output path as given.
        output: String,
        /// The input file it is.
        input: String,
    },
    /// A sparse block shape that no kernel of its value type runs.
    #[error("BSR blocks of {rows}×{cols} {values} have no GPU kernel: {values} runs {supported}")]
    BlockShape {
        /// Block rows.
        rows: usize,
        /// Block columns.
        cols: usize,
        /// The value type (`f16`, `int8`, ...).
        values: String,
        /// The block shapes its kernels run.
        supported: String,
    },
}

/// What is wrong with a tokenizer (its metadata, its chat template, or the ids given to it):
/// one variant per kind of fault, so that tests and callers can tell them apart.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// A metadata key the tokenizer needs is absent.
    #[error("metadata key '{key}' is missing")]
    Missing {
        /// The key.
        key: String,
    },
    /// A metadata key holds the wrong type.
    #[error("metadata key '{key}' is {found}, expected {expected}")]
    WrongType {
        /// The key.
        key: String,
        /// The type found.
        found: String,
        /// The type expected.
        expected: String,
    },
    /// A per-token array does not have one entry per token.
    #[error("'{key}' has {len} entries for {tokens} tokens")]
    LengthMismatch {
        /// The key of the array.
        key: String,
        /// Its length.
        len: usize,
        /// The number of tokens.
        tokens: usize,
    },
    /// A token appears twice in the vocabulary.
    #[error("token {id} '{token}' repeats an earlier token")]
    DuplicateToken {
        /// The later id.
        id: usize,
        /// The token text.
        token: String,
    },
    /// A merge rule is not two vocabulary tokens whose concatenation is one.
    #[error("merge '{merge}': {reason}")]
    BadMerge {
        /// The rule as written.
        merge: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A token id (of the metadata, or given to decode) is outside the vocabulary.
    #[error("{what} {id} is outside the vocabulary of {vocab} tokens")]
    BadTokenId {
        /// Where the id came from.
        what: String,
        /// The id.
        id: u64,
        /// The vocabulary size.
        vocab: usize,
    },
    /// The tokenizer kind (`tokenizer.ggml.model`, `tokenizer.ggml.pre`) is not one sparq
    /// implements.
    #[error("'{key}' = '{value}' is not supported ({supported})")]
    Unsupported {
        /// The key.
        key: String,
        /// Its value.
        value: String,
        /// What is supported.
        supported: String,
    },
    /// The chat template does not parse, or fails while rendering (including a template's
    /// own `raise_exception`).
    #[error("chat template: {0}")]
    Template(String),
    /// Text input reached a model that has no tokenizer: `looked` lists every place tried,
    /// in the order of preference.
    #[error(
        "no tokenizer for text input (looked at: {}): pass one with --tokenizer PATH \
         (`LoadOptions::tokenizer` in the library), or pass token ids",
        looked.join("; ")
    )]
    NotFound {
        /// The places tried.
        looked: Vec<String>,
    },
    /// A tokenizer file (or the one a packed model carries) does not parse.
    #[error("{file} does not hold a valid tokenizer: {reason}")]
    Unreadable {
        /// The file, and where in it for a tokenizer inside a model file.
        file: String,
        /// The parser's message.
        reason: String,
    },
    /// A decoder has no tokenizer for text: not given, none carried by its file, and the file
    /// is not a GGUF file (which has its own). `looked` lists every place tried, in order.
    #[error(
        "no tokenizer for this decoder's text (looked at: {}): pass a GGUF file whose \
         tokenizer to use with --tokenizer FILE.gguf (`sparq serve`: --tokenizer \
         NAME=FILE.gguf), or pack the model from a GGUF file, or with `sparq pack --tokenizer \
         FILE.gguf`, so that its file carries one",
        looked.join("; ")
    )]
    NoDecoderTokenizer {
        /// The places tried.
        looked: Vec<String>,
    },
    /// An input is longer than the model reads and truncation was refused
    /// (`--no-truncate`, [`crate::model::Model::encode_text`] with `truncate: false`).
    #[error(
        "input {row} has {tokens} tokens, over the model's {limit}: shorten it, or allow \
         truncation (drop --no-truncate)"
    )]
    TooLong {
        /// The input's index in its batch.
        row: usize,
        /// Its length in tokens.
        tokens: usize,
        /// The most tokens the model reads.
        limit: usize,
    },
}

/// Errors of a device rather than of the input (see the [module docs](self)).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The device was lost (driver reset, removal, destroy).
    #[error("GPU device lost: {0}")]
    Lost(String),
    /// The device ran out of memory.
    #[error("GPU error: {0}")]
    OutOfMemory(String),
    /// The device failed an operation (a buffer mapping, a wait) without being lost.
    #[error("GPU error: {0}")]
    Failed(String),
    /// The adapter lacks a feature the request needs.
    #[error("the adapter '{adapter}' does not support {feature}")]
    MissingFeature {
        /// Adapter name.
        adapter: String,
        /// Missing feature.
        feature: String,
    },
    /// The driver refused to create a device.
    #[error("could not open a device on '{adapter}': {reason}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// Driver's reason.
        reason: String,
    },
    /// Every device of a multi-device run failed, so the work could not be finished.
    #[error("no device left to run on: {0}")]
    NoDeviceLeft(String),
    /// A decoder's KV cache has no free blocks for the request now; it may fit once other
    /// sequences finish (a server queues it or answers 503, never drops what it accepted).
    #[error("KV cache full: {needed} blocks needed, {free} free of {total}")]
    CacheFull {
        /// Blocks the request needs.
        needed: usize,
        /// Blocks free now.
        free: usize,
        /// Blocks in the pool.
        total: usize,
    },
}

/// A service declined or ended work for a reason that is neither the input's nor the
/// device's (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The queue is full; the caller may retry after about `retry_after_s` seconds.
    #[error("overloaded: {waiting} requests are waiting (the limit is {limit}); retry later")]
    Overloaded {
        /// Requests (or rows) waiting now.
        waiting: usize,
        /// The queue's bound.
        limit: usize,
        /// A hint for the client's retry, seconds.
        retry_after_s: u32,
    },
    /// The service is shutting down and takes no new work (or ended this work at its
    /// shutdown deadline).
    #[error("the service is shutting down")]
    ShuttingDown,
    /// The caller cancelled the request (it disconnected).
    #[error("the request was cancelled")]
    Cancelled,
    /// The request's deadline passed before it finished.
    #[error("the request timed out after {seconds:.1} s")]
    Timeout {
        /// The deadline, seconds after submission.
        seconds: f64,
    },
}

/// Bugs in sparq (see the [module docs](self)).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum InternalError {
    /// The driver rejected a kernel, pipeline or binding as invalid.
    #[error("GPU error: {0}")]
    Validation(String),
    /// An invariant of sparq's own code does not hold (an output that should exist is absent).
    #[error("internal error: {0}")]
    Invariant(String),
    /// A panic caught at a replica or model boundary.
    #[error("internal error: {0}")]
    Panic(String),
}

/// The group of an [`Error`], which says what a caller does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Report to the caller, never retry (HTTP 400, or 413 for a size over a device limit).
    Input,
    /// Take the device out and retry elsewhere (HTTP 503).
    Device,
    /// Retrying elsewhere is allowed, but it is a bug in sparq (HTTP 500).
    Internal,
    /// The service declined or ended the work (HTTP 429, 503 or 504); the device is fine.
    Service,
}

impl Error {
    /// Which group the error belongs to: the caller's decision (report, retry elsewhere,
    /// report a bug) follows from it alone.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Input(_) => ErrorKind::Input,
            Error::Device(_) => ErrorKind::Device,
            Error::Internal(_) => ErrorKind::Internal,
            Error::Service(_) => ErrorKind::Service,
        }
    }

    /// The HTTP status a server answers with: 400 for input (413 when a size is over a device
    /// limit), 503 for a device failure, 500 for a bug; for a service: 429 overloaded, 503
    /// shutting down, 504 timed out, 499 cancelled.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::Input(
                InputError::TooLarge { .. }
                | InputError::Overflow { .. }
                | InputError::HostMemory { .. },
            ) => 413,
            Error::Input(_) => 400,
            Error::Device(_) => 503,
            Error::Internal(_) => 500,
            Error::Service(ServiceError::Overloaded { .. }) => 429,
            Error::Service(ServiceError::ShuttingDown) => 503,
            // What nginx answers for a client that went away; nobody reads it.
            Error::Service(ServiceError::Cancelled) => 499,
            Error::Service(ServiceError::Timeout { .. }) => 504,
        }
    }

    /// [`InputError::Shape`].
    pub fn shape(msg: impl Into<String>) -> Self {
        InputError::Shape(msg.into()).into()
    }

    /// [`InputError::Invalid`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        InputError::Invalid(msg.into()).into()
    }

    /// [`InputError::DType`].
    pub fn dtype(msg: impl Into<String>) -> Self {
        InputError::DType(msg.into()).into()
    }

    /// [`InputError::Config`].
    pub fn config(msg: impl Into<String>) -> Self {
        InputError::Config(msg.into()).into()
    }

    /// [`InputError::SafeTensors`].
    pub fn safetensors(msg: impl Into<String>) -> Self {
        InputError::SafeTensors(msg.into()).into()
    }

    /// [`InputError::Gguf`].
    pub fn gguf(msg: impl Into<String>) -> Self {
        InputError::Gguf(msg.into()).into()
    }

    /// [`DeviceError::Lost`].
    pub fn device_lost(msg: impl Into<String>) -> Self {
        DeviceError::Lost(msg.into()).into()
    }

    /// [`DeviceError::OutOfMemory`].
    pub fn out_of_memory(msg: impl Into<String>) -> Self {
        DeviceError::OutOfMemory(msg.into()).into()
    }

    /// [`DeviceError::Failed`].
    pub fn device_failed(msg: impl Into<String>) -> Self {
        DeviceError::Failed(msg.into()).into()
    }

    /// [`DeviceError::NoDeviceLeft`].
    pub fn no_device_left(msg: impl Into<String>) -> Self {
        DeviceError::NoDeviceLeft(msg.into()).into()
    }

    /// [`InternalError::Validation`].
    pub fn validation(msg: impl Into<String>) -> Self {
        InternalError::Validation(msg.into()).into()
    }

    /// [`InternalError::Invariant`].
    pub fn invariant(msg: impl Into<String>) -> Self {
        InternalError::Invariant(msg.into()).into()
    }

    /// [`InternalError::Panic`].
    pub fn panicked(msg: impl Into<String>) -> Self {
        InternalError::Panic(msg.into()).into()
    }

    /// `self` with `prefix` (e.g. the device it happened on) before its message, in the same
    /// group and variant: a lost device stays a lost device.
    pub fn prefixed(self, prefix: &str) -> Self {
        self.map_message(|m| format!("{prefix}: {m}"))
    }

    /// `self` with its message passed through `f`, in the same group and variant. Struct
    /// payloads name their subject in their fields and stay as they are, except the driver's
    /// reason of [`DeviceError::RequestDevice`].
    pub(crate) fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            Error::Device(DeviceError::Lost(m)) => Error::device_lost(f(m)),
            Error::Device(DeviceError::OutOfMemory(m)) => Error::out_of_memory(f(m)),
            Error::Device(DeviceError::Failed(m)) => Error::device_failed(f(m)),
            Error::Device(DeviceError::NoDeviceLeft(m)) => Error::no_device_left(f(m)),
            Error::Device(DeviceError::RequestDevice { adapter, reason }) => {
                DeviceError::RequestDevice {
                    adapter,
                    reason: f(reason),
                }
                .into()
            }
            Error::Internal(InternalError::Validation(m)) => Error::validation(f(m)),
            Error::Internal(InternalError::Invariant(m)) => Error::invariant(f(m)),
            Error::Internal(InternalError::Panic(m)) => Error::panicked(f(m)),
            Error::Input(InputError::Shape(m)) => Error::shape(f(m)),
            Error::Input(InputError::Invalid(m)) => Error::invalid(f(m)),
            Error::Input(InputError::DType(m)) => Error::dtype(f(m)),
            Error::Input(InputError::Config(m)) => Error::config(f(m)),
            Error::Input(InputError::SafeTensors(m)) => Error::safetensors(f(m)),
            Error::Input(InputError::Gguf(m)) => Error::gguf(f(m)),
            other => other,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        InputError::Io(Arc::new(e)).into()
    }
}

/// The text of the file at `path`, or an error naming it.
pub fn read_text(path: impl AsRef<std::path::Path>) -> Result<String> {
    let path = path.as_ref();
    std::fs::read_to_string(path).map_err(|source| file_error(path, source))
}

/// Writes `contents` to the file at `path` atomically ([`crate::files::write_atomic`]: the
/// old file or the whole new one, never a part), or returns an error naming `path`.
pub fn write_file(path: impl AsRef<std::path::Path>, contents: impl AsRef<[u8]>) -> Result<()> {
    let path = path.as_ref();
    crate::files::write_atomic(path, |w| w.write_all(contents.as_ref()))
        .map_err(|source| file_error(path, source))
}

/// An error naming the file at `path`.
pub(crate) fn file_error(path: &std::path::Path, source: std::io::Error) -> Error {
    InputError::File {
        path: path.display().to_string(),
        source: Arc::new(source),
    }
    .into()
}

impl From<TokenizerError> for Error {
    fn from(e: TokenizerError) -> Self {
        InputError::Tokenizer(e).into()
    }
}

impl From<safetensors::SafeTensorError> for Error {
    fn from(e: safetensors::SafeTensorError) -> Self {
        Error::safetensors(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn too_large() -> Error {
        InputError::TooLarge {
            what: "x".into(),
            bytes: 2,
            limit_name: "max_buffer_size",
            limit: 1,
        }
        .into()
    }

    #[test]
    fn kinds_and_statuses_follow_the_table() {
        let cases: Vec<(Error, ErrorKind, u16)> = vec![
            (Error::shape("a"), ErrorKind::Input, 400),
            (Error::invalid("a"), ErrorKind::Input, 400),
            (Error::dtype("a"), ErrorKind::Input, 400),
            (Error::config("a"), ErrorKind::Input, 400),
            (Error::safetensors("a"), ErrorKind::Input, 400),
            (Error::gguf("a"), ErrorKind::Input, 400),
            (too_large(), ErrorKind::Input, 413),
            (
                InputError::Overflow { what: "x".into() }.into(),
                ErrorKind::Input,
                413,
            ),
            (std::io::Error::other("disk").into(), ErrorKind::Input, 400),
            (Error::device_lost("a"), ErrorKind::Device, 503),
            (Error::out_of_memory("a"), ErrorKind::Device, 503),
            (Error::device_failed("a"), ErrorKind::Device, 503),
            (Error::no_device_left("a"), ErrorKind::Device, 503),
            (
                DeviceError::MissingFeature {
                    adapter: "a".into(),
                    feature: "f".into(),
                }
                .into(),
                ErrorKind::Device,
                503,
            ),
            (Error::validation("a"), ErrorKind::Internal, 500),
            (Error::invariant("a"), ErrorKind::Internal, 500),
            (Error::panicked("a"), ErrorKind::Internal, 500),
        ];
        for (e, kind, status) in cases {
            assert_eq!(e.kind(), kind, "{e:?}");
            assert_eq!(e.http_status(), status, "{e:?}");
        }
    }

    #[test]
    fn messages_keep_their_text() {
        assert_eq!(Error::shape("2 vs 3").to_string(), "shape mismatch: 2 vs 3");
        assert_eq!(Error::invalid("empty").to_string(), "invalid input: empty");
        assert_eq!(
            Error::device_lost("gone").to_string(),
            "GPU device lost: gone"
        );
        assert_eq!(
            too_large().to_string(),
            "x needs 2 bytes, over the device limit max_buffer_size = 1 bytes"
        );
    }

    #[test]
    fn clones_and_prefixes_keep_the_variant() {
        let e: Error = std::io::Error::other("disk").into();
        assert_eq!(e.clone().to_string(), e.to_string());
        let lost = Error::device_lost("destroyed").prefixed("gpu0");
        assert!(matches!(&lost, Error::Device(DeviceError::Lost(m)) if m == "gpu0: destroyed"));
        let bad = Error::invalid("x").prefixed("gpu0");
        assert_eq!(bad.kind(), ErrorKind::Input);
        assert_eq!(too_large().prefixed("gpu0").http_status(), 413);
    }
}
