//! The broker's view of the SCRAM credentials in the metadata image.

use std::collections::BTreeMap;

use super::scram::{ScramCredential, ScramMechanism};
use crate::state::Broker;

impl Broker {
    /// `user`'s credential for `mech`, if one is stored.
    pub fn scram_credential(&self, user: &str, mech: ScramMechanism) -> Option<ScramCredential> {
        self.with_image(|i| {
            i.scram_credential(user, mech.name()).map(|c| ScramCredential {
                salt: c.salt.clone(),
                stored_key: c.stored_key.clone(),
                server_key: c.server_key.clone(),
                iterations: c.iterations,
            })
        })
    }

    /// Every user with SCRAM credentials: its mechanisms and their iteration counts.
    pub fn scram_users(&self) -> BTreeMap<String, Vec<(ScramMechanism, i32)>> {
        self.with_image(|i| {
            let mut users: BTreeMap<String, Vec<(ScramMechanism, i32)>> = BTreeMap::new();
            for ((user, mech), c) in i.scram_credentials() {
                if let Some(m) = ScramMechanism::from_name(mech) {
                    users.entry(user.clone()).or_default().push((m, c.iterations));
                }
            }
            users
        })
    }
}
