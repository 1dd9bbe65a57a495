//! Errors of the metadata log.

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata log I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("metadata record could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}
