//! What handlers ask the authorizer, in Kafka's words: may this request's principal, from
//! its host, do an operation on a topic, a group, a transactional id or the cluster. With
//! no authorizer configured every answer is yes, without looking at the image.

use std::collections::HashSet;

use runnel_metadata::acl::{AclOperation, ResourceType, CLUSTER_NAME};

use super::Ctx;
use crate::authorizer::Requester;

impl Ctx {
    /// The principal the request is checked as (`User:alice`; `User:ANONYMOUS` when the
    /// connection did not authenticate).
    pub fn principal(&self) -> String {
        self.session.principal.to_string()
    }

    fn enabled(&self) -> bool {
        self.broker.authorizer().enabled()
    }

    /// May the requester do `op` on `(rtype, name)`?
    pub fn may(&self, op: AclOperation, rtype: ResourceType, name: &str) -> bool {
        if !self.enabled() {
            return true;
        }
        let principal = self.principal();
        let who = Requester { principal: &principal, host: self.session.peer.ip() };
        self.broker.with_acls(|a, image| a.authorize(image, who, op, rtype, name))
    }

    pub fn may_topic(&self, op: AclOperation, topic: &str) -> bool {
        self.may(op, ResourceType::Topic, topic)
    }

    pub fn may_group(&self, op: AclOperation, group: &str) -> bool {
        self.may(op, ResourceType::Group, group)
    }

    pub fn may_txn(&self, op: AclOperation, transactional_id: &str) -> bool {
        self.may(op, ResourceType::TransactionalId, transactional_id)
    }

    pub fn may_cluster(&self, op: AclOperation) -> bool {
        self.may(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// Kafka's `authorized_operations` bit field for `(rtype, name)`: bit `code` set for each
    /// operation the resource supports that the requester may do (all of them with no
    /// authorizer, as Kafka answers).
    pub fn authorized_operations(&self, rtype: ResourceType, name: &str) -> i32 {
        let bits = |ops: &mut dyn Iterator<Item = &AclOperation>| ops.fold(0, |bits, op| bits | 1 << op.code());
        let supported = rtype.supported_operations();
        if !self.enabled() {
            return bits(&mut supported.iter());
        }
        // One principal and one look at the ACLs for all the operations.
        let principal = self.principal();
        let who = Requester { principal: &principal, host: self.session.peer.ip() };
        self.broker.with_acls(|a, image| bits(&mut supported.iter().filter(|op| a.authorize(image, who, **op, rtype, name))))
    }

    /// May the requester do `op` on at least one resource of `rtype` (Kafka's
    /// `authorizeByResourceType`)?
    pub fn may_any(&self, op: AclOperation, rtype: ResourceType) -> bool {
        if !self.enabled() {
            return true;
        }
        let principal = self.principal();
        let who = Requester { principal: &principal, host: self.session.peer.ip() };
        self.broker.with_acls(|a, image| a.authorize_any(image, who, op, rtype))
    }

    /// The topics of `names` the requester may do `op` on (one look at the image).
    pub fn topics_allowed<'a>(&self, op: AclOperation, names: impl IntoIterator<Item = &'a str>) -> HashSet<String> {
        self.allowed(op, ResourceType::Topic, names)
    }

    /// The resources of `rtype` among `names` the requester may do `op` on.
    pub fn allowed<'a>(&self, op: AclOperation, rtype: ResourceType, names: impl IntoIterator<Item = &'a str>) -> HashSet<String> {
        let names = names.into_iter();
        if !self.enabled() {
            return names.map(str::to_string).collect();
        }
        let principal = self.principal();
        let who = Requester { principal: &principal, host: self.session.peer.ip() };
        self.broker.with_acls(|a, image| {
            names.filter(|n| a.authorize(image, who, op, rtype, n)).map(str::to_string).collect()
        })
    }
}
