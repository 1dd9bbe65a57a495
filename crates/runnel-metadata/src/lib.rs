//! Cluster metadata as a log of records applied to an in-memory image (Kafka's KRaft
//! idea). On one node the log is a local file ([`LocalMetadataLog`]); in a cluster the
//! same records will be replicated by Raft behind the same seam ([`MetadataLog`]).
//!
//! This crate never touches partition data: deleting a topic here only records the
//! fact; the broker removes the partition directories when it applies the record.

pub mod acl;
mod error;
mod image;
mod log;
pub mod quota;
mod records;

pub use error::MetadataError;
pub use image::{MetadataImage, ScramCredentialImage, TopicImage};
pub use log::{LocalMetadataLog, MetadataLog};
pub use records::{ConfigResource, MetadataRecord};
pub use uuid::Uuid;

/// The metadata log and the image it produces, kept in step: a record is applied to the
/// image only after the log has accepted it durably.
pub struct MetadataStore<L: MetadataLog = LocalMetadataLog> {
    log: L,
    image: MetadataImage,
}

impl MetadataStore<LocalMetadataLog> {
    /// Opens (or creates) the local metadata log in `dir` and replays it into an image.
    pub fn open_local(dir: &std::path::Path) -> Result<Self, MetadataError> {
        let (log, records) = LocalMetadataLog::open(dir)?;
        let mut image = MetadataImage::default();
        for record in records {
            image.apply(&record);
        }
        Ok(Self { log, image })
    }
}

impl<L: MetadataLog> MetadataStore<L> {
    /// The current image.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// Makes `record` durable, then applies it. The caller validates first: a record that
    /// reaches here is a fact.
    pub fn commit(&mut self, record: MetadataRecord) -> Result<(), MetadataError> {
        self.log.append(&record)?;
        self.image.apply(&record);
        Ok(())
    }
}
