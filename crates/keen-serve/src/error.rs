//! Errors: [`ServeError`] for what stops a server from starting or running, and [`InputError`]
//! for what is wrong with one request's body (answered with a 4xx, never a panic).

use std::net::SocketAddr;

/// Why a server could not be set up, started or run to a clean stop.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The model cannot be served (no single 4-D or flat input, no single output...).
    #[error("the model cannot be served: {0}")]
    UnsupportedModel(String),
    /// keen-runtime rejected the model or failed on the warm-up batch.
    #[error(transparent)]
    Runtime(#[from] keen_runtime::RuntimeError),
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Config(String),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Any other I/O failure (accepting connections, the async runtime, signals).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The batching worker thread panicked.
    #[error("the batching worker stopped abnormally")]
    Worker,
}

/// What is wrong with a request body; each becomes a 400 with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The body is empty.
    #[error("the request body is empty")]
    Empty,
    /// The bytes are not a decodable PNG or JPEG.
    #[error("cannot decode the image: {0}")]
    BadImage(String),
    /// The image decodes to something larger than the server accepts.
    #[error("image of {width}x{height} pixels is larger than the {limit}x{limit} accepted")]
    ImageTooLarge {
        /// Width of the image.
        width: u32,
        /// Height of the image.
        height: u32,
        /// The largest side accepted.
        limit: u32,
    },
    /// The model's input is not an image (rank 4 with 1 or 3 channels).
    #[error(
        "this model takes a tensor of shape {0:?}, not an image: send application/octet-stream"
    )]
    NotAnImageModel(Vec<usize>),
    /// A raw tensor has the wrong number of bytes.
    #[error(
        "a raw tensor must be {expected} bytes ({values} little-endian f32 of shape {shape:?}), got {found}"
    )]
    TensorSize {
        /// Bytes expected.
        expected: usize,
        /// Values expected.
        values: usize,
        /// The per-image input shape.
        shape: Vec<usize>,
        /// Bytes received.
        found: usize,
    },
    /// A raw tensor holds NaN or an infinity.
    #[error("the tensor holds a non-finite value at index {0}")]
    NonFinite(usize),
}
