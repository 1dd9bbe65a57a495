//! Errors of the metadata log.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata log I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("metadata record could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    /// A damaged frame with intact frames after it: not a torn tail, so nothing is cut.
    #[error(
        "metadata log {} is corrupt at byte {position} ({reason}) and intact records follow it; \
         refusing to start rather than forget them: restore the file from a backup, or cut it \
         at byte {position} by hand to accept losing every later metadata change",
        path.display()
    )]
    Corrupt { path: PathBuf, position: u64, reason: String },
    /// An earlier failed append could not be rolled back.
    #[error("metadata log {} could not be rolled back after a failed append; restart the broker", .0.display())]
    Broken(PathBuf),
}
