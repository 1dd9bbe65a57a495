//! Errors from decoding a request frame. Each one means: close that connection.

/// Why a request frame could not be turned into a request.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("request frame of {0} bytes is too short for a request header")]
    ShortFrame(usize),
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("api key {key} version {version} is not supported")]
    UnsupportedVersion { key: i16, version: i16 },
    #[error("malformed request (api key {key} v{version}): {reason}")]
    Malformed { key: i16, version: i16, reason: String },
    #[error("could not encode response: {0}")]
    Encode(String),
}
