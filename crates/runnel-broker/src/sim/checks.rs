//! The invariants checked after every step of the simulation.

use super::*;

impl World {
    pub(super) fn check(&mut self) -> Result<(), String> {
        if let Some(what) = self.broken.take() {
            return Err(what);
        }
        // At most one leader per epoch; the served high watermark never goes back in an epoch.
        for b in 0..self.brokers.len() {
            let br = &self.brokers[b];
            if !br.up || !br.state.is_leader() {
                continue;
            }
            let (id, epoch, hw) = (br.id, br.state.leader_epoch, br.hw());
            if let Some(other) = self.leaders.insert(epoch, id).filter(|o| *o != id) {
                return Err(format!("brokers {other} and {id} both led epoch {epoch}"));
            }
            let served = self.brokers[b].served_hw.entry(epoch).or_insert(hw);
            if hw < *served {
                return Err(format!("leader {id} served high watermark {} in epoch {epoch}, now {hw}", *served));
            }
            *served = hw;
            // Two leaders never serve different records below their high watermarks.
            let log = &self.brokers[b].log;
            for (offset, e) in log.iter().enumerate().take(hw as usize) {
                match self.visible.get(offset) {
                    Some(v) if v != e => return Err(format!("leader {id} (epoch {epoch}) serves {e:?} at {offset} < hw {hw}, not {v:?}")),
                    Some(_) => {}
                    None => self.visible.push(*e),
                }
            }
        }
        // The current leader holds everything served, and every replica agrees with it below
        // its own high watermark.
        let Some(a) = self.controller.image.partition(&TOPIC, 0).cloned() else { return Err("the topic is gone".into()) };
        let current = |b: &&Broker| b.id == a.leader && b.up && b.state.is_leader() && b.state.leader_epoch == a.leader_epoch;
        let Some(leader) = self.brokers.iter().find(current) else {
            return Ok(());
        };
        for (offset, v) in self.visible.iter().enumerate() {
            let have = leader.log.get(offset);
            if have != Some(v) {
                return Err(format!(
                    "record {v:?} at offset {offset} (below a served high watermark) is missing from leader {} of epoch {}: \
                     it has {have:?}",
                    leader.id, a.leader_epoch
                ));
            }
        }
        for r in self.brokers.iter().filter(|b| b.up && b.id != leader.id) {
            let hw = r.hw() as usize;
            if let Some(offset) = (0..hw).find(|o| leader.log.get(*o) != r.log.get(*o)) {
                return Err(format!(
                    "replica {} disagrees with leader {} at offset {offset} below its hw {hw}: {:?} vs {:?}",
                    r.id,
                    leader.id,
                    r.log.get(offset),
                    leader.log.get(offset)
                ));
            }
        }
        Ok(())
    }
}
