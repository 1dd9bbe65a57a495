//! Client quotas (Kafka's client-quota entities and keys): a value per key
//! (`producer_byte_rate`, `consumer_byte_rate`, `request_percentage`) for an entity made
//! of a user and/or a client id, each a name or the default. Stored as metadata records so
//! every broker enforces the same ones; enforcing them is the broker's business.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The entity types Runnel knows (Kafka's `user` and `client-id`).
pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";

/// The quota keys Runnel enforces.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const KEYS: [&str; 3] = [PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE];

/// An entity: entity type (`user`, `client-id`) → its name, or `None` for that type's
/// default entity. One or two entries.
pub type QuotaEntity = BTreeMap<String, Option<String>>;

/// A quota value (a float, compared by its bits so records stay `Eq`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QuotaValue(pub f64);

impl PartialEq for QuotaValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for QuotaValue {}
