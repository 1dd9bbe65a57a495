//! The simulated controller and metadata path: ISR proposals, the ordered commit of the records
//! `ClusterImage::check` accepts, and each broker applying, publishing and reconciling them.

use super::*;

impl World {
    /// `replication::propose_isr`.
    pub(super) fn propose_isr(&mut self, leader: i32, p: IsrProposal) {
        self.log(format!("{leader} proposes ISR {:?} (leader epoch {}, partition epoch {})", p.isr, p.leader_epoch, p.partition_epoch));
        let record = ControllerRecord::AlterPartition {
            topic_id: TOPIC,
            partition: 0,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: p.isr,
        };
        self.send(leader, CONTROLLER, Body::Propose { record });
    }

    /// The quorum commits a record in its total order; every node applies it the same way.
    pub(super) fn commit(&mut self, record: ControllerRecord) -> usize {
        self.controller.log.push(record.clone());
        let index = self.controller.log.len();
        apply(&mut self.controller.image, index, &record, self.opts.unclean_election);
        let p = self.controller.image.partition(&TOPIC, 0).expect("the topic").clone();
        self.log(format!(
            "controller commits #{index} {}: leader {} epoch {} isr {:?} partition epoch {}",
            describe(&record),
            p.leader,
            p.leader_epoch,
            p.isr,
            p.partition_epoch
        ));
        index
    }

    pub(super) fn on_propose(&mut self, from: i32, record: ControllerRecord) {
        let register = matches!(record, ControllerRecord::RegisterBroker(_));
        if register {
            // `Controller::handle`: a registering broker's session starts afresh.
            self.controller.last_seen.insert(from, self.now);
        }
        // A refused record is committed too and changes nothing (`ClusterImage::apply`).
        let refused = self.controller.image.check(&record).err();
        let index = self.commit(record);
        if let Some(r) = refused {
            self.log(format!("  refused: {r}"));
        }
        self.send(CONTROLLER, from, Body::ProposeResp { register, committed: refused.is_none().then_some(index) });
    }

    // ---- brokers applying metadata (the publisher, replication::reconcile)

    pub(super) fn metadata_step(&mut self) {
        let behind: Vec<usize> = (0..self.brokers.len())
            .filter(|i| {
                let b = &self.brokers[*i];
                b.up && b.applied < self.controller.log.len() && self.linked(b.id, CONTROLLER)
            })
            .collect();
        if behind.is_empty() {
            return;
        }
        let b = behind[self.rng.gen_range(0..behind.len())];
        self.apply_next(b);
    }

    /// Broker `b` applies the next committed metadata record.
    pub(super) fn apply_next(&mut self, b: usize) {
        if self.brokers[b].applied == self.controller.log.len() {
            return;
        }
        let index = self.brokers[b].applied + 1;
        let record = self.controller.log[index - 1].clone();
        apply(&mut self.brokers[b].image, index, &record, self.opts.unclean_election);
        self.brokers[b].applied = index;
        if self.brokers[b].publishing {
            self.reconcile(b);
        } else {
            self.maybe_publish(b);
        }
    }

    /// `Cluster::wait_registered`: the publisher starts once this run's registration is
    /// applied here and the broker is live.
    pub(super) fn maybe_publish(&mut self, b: usize) {
        let br = &self.brokers[b];
        let live = br.image.live_brokers().any(|r| r.broker_id == br.id);
        if !br.publishing && live && br.registered_at.is_some_and(|k| br.applied >= k) {
            let line = format!("{} is registered: publishing from #{}", br.id, br.applied);
            self.brokers[b].publishing = true;
            self.log(line);
            self.reconcile(b);
        }
    }

    /// `replication::reconcile` with `Partition::assign` for the partition.
    pub(super) fn reconcile(&mut self, b: usize) {
        let now = self.instant();
        let br = &mut self.brokers[b];
        let Some(a) = br.image.partition(&TOPIC, 0).cloned() else { return };
        if !a.replicas.contains(&br.id) {
            return;
        }
        let leo = br.leo();
        let change = br.state.assign(&a, leo, now);
        let id = br.id;
        match change {
            RoleChange::None => {}
            RoleChange::BecameLeader => {
                br.fetcher = None;
                br.epochs.assign(a.leader_epoch, leo);
                let hw = br.hw();
                self.log(format!("{id} leads epoch {} from {leo} (hw {hw}), isr {:?}", a.leader_epoch, a.isr));
            }
            RoleChange::BecameFollower { leader } => {
                if leader < 0 {
                    br.fetcher = None;
                } else {
                    self.gen += 1;
                    br.fetcher = Some(Fetcher { leader, epoch: a.leader_epoch, gen: self.gen, truncated: false, busy: false });
                }
                self.log(format!("{id} follows {leader} in epoch {}", a.leader_epoch));
            }
        }
        // Parked follower fetches are not answered early: they read when they wake.
    }
}
