//! The simulated follower side and the leader's answers to it (fetcher.rs and the fetch path):
//! fetch rounds, parked fetches, responses, and the jobs a follower runs on blocking threads.

use super::*;

impl World {
    pub(super) fn fetcher_step(&mut self) {
        let ready: Vec<usize> = (0..self.brokers.len())
            .filter(|i| self.brokers[*i].up && self.brokers[*i].fetcher.as_ref().is_some_and(|f| !f.busy))
            .collect();
        if ready.is_empty() {
            return;
        }
        let b = ready[self.rng.gen_range(0..ready.len())];
        self.fetch_next(b);
    }

    /// Broker `b`'s fetcher sends its next request (its log cut first, for a new epoch).
    pub(super) fn fetch_next(&mut self, b: usize) {
        let br = &mut self.brokers[b];
        let Some(f) = br.fetcher.clone().filter(|f| !f.busy) else { return };
        let me = br.id;
        if !f.truncated {
            match br.epochs.latest_epoch() {
                None => {
                    // No leader epochs known: cut back to the high watermark.
                    let hw = br.hw();
                    let end = br.truncate_to(hw);
                    br.fetcher.as_mut().expect("ready").truncated = true;
                    self.log(format!("{me} follows {} in epoch {}: no epochs, truncated to hw {end}", f.leader, f.epoch));
                }
                Some(requested) => {
                    br.fetcher.as_mut().expect("ready").busy = true;
                    self.send(me, f.leader, Body::EpochReq { gen: f.gen, current_epoch: f.epoch, requested });
                }
            }
        } else {
            br.fetcher.as_mut().expect("ready").busy = true;
            let fetch_offset = br.leo();
            self.send(me, f.leader, Body::FetchReq { gen: f.gen, current_epoch: f.epoch, fetch_offset });
        }
    }

    /// The fetcher whose request or answer was lost reconnects and tries again.
    pub(super) fn lost(&mut self, m: Msg) {
        match m.body {
            Body::EpochReq { gen, .. } | Body::FetchReq { gen, .. } => self.fetch_failed(m.from, m.from_inc, gen),
            Body::EpochResp { gen, .. } | Body::FetchResp { gen, .. } => self.fetch_failed(m.to, m.to_inc, gen),
            Body::Propose { record } => {
                let register = matches!(record, ControllerRecord::RegisterBroker(_));
                self.proposal_failed(m.from, m.from_inc, register);
            }
            Body::ProposeResp { register, .. } => self.proposal_failed(m.to, m.to_inc, register),
        }
    }

    pub(super) fn fetch_failed(&mut self, id: i32, inc: u64, gen: u64) {
        let b = self.idx(id);
        if self.brokers[b].incarnation != inc {
            return;
        }
        if let Some(f) = self.brokers[b].fetcher.as_mut().filter(|f| f.gen == gen) {
            f.busy = false;
        }
    }

    /// A proposal that failed (or whose answer was lost): `replication::propose_isr` calls
    /// `isr_change_done`; `Controller::run_broker` registers again.
    pub(super) fn proposal_failed(&mut self, id: i32, inc: u64, register: bool) {
        let b = self.idx(id);
        let br = &mut self.brokers[b];
        if br.incarnation != inc || !br.up {
            return;
        }
        if register {
            br.registering = false;
        } else {
            br.state.isr_change_in_flight = false;
        }
    }

    pub(super) fn deliver(&mut self, m: Msg) {
        let to_ok = m.to == CONTROLLER || {
            let t = &self.brokers[self.idx(m.to)];
            t.up && t.incarnation == m.to_inc
        };
        if !to_ok || !self.linked(m.from, m.to) {
            self.log(format!("dropped {} -> {}: {:?}", m.from, m.to, m.body));
            self.lost(m);
            return;
        }
        match m.body {
            Body::EpochReq { gen, current_epoch, requested } => {
                // handlers/offset_for_leader_epoch.rs
                let l = &self.brokers[self.idx(m.to)];
                let answer = l.state.check_leader(current_epoch).map(|_| l.epoch_end(requested));
                self.send(m.to, m.from, Body::EpochResp { gen, requested, answer });
            }
            Body::EpochResp { gen, requested, answer } => {
                let b = self.idx(m.to);
                let br = &mut self.brokers[b];
                let Some(f) = br.fetcher.clone().filter(|f| f.gen == gen) else { return };
                br.fetcher.as_mut().expect("checked").busy = false;
                match answer {
                    Err(e) => self.log(format!("{} asked {} where epoch {requested} ends: {e:?}", m.to, m.from)),
                    Ok(answer) => {
                        // fetcher::truncate
                        let to = replica::truncation_offset(requested, answer, br.hw(), |e| br.epoch_end(e).1);
                        br.fetcher.as_mut().expect("checked").busy = true;
                        let why = format!("{} follows {} in epoch {}: epoch {requested} ends at {answer:?} there", m.to, f.leader, f.epoch);
                        br.jobs.push(Job::Cut { gen, to, why });
                    }
                }
            }
            Body::FetchReq { gen, current_epoch, fetch_offset } => {
                self.on_fetch(m.to, m.from, m.from_inc, gen, current_epoch, fetch_offset)
            }
            Body::FetchResp { gen, fetch_offset, result } => self.on_fetch_response(m.to, gen, fetch_offset, result),
            Body::Propose { record } => self.on_propose(m.from, record),
            Body::ProposeResp { register, committed } => {
                let b = self.idx(m.to);
                match (register, committed) {
                    (true, Some(index)) => {
                        self.brokers[b].registering = false;
                        self.brokers[b].registered_at = Some(index);
                        self.maybe_publish(b);
                    }
                    (_, None) => self.proposal_failed(m.to, m.to_inc, register),
                    // A committed ISR change takes effect when the broker applies it.
                    (false, Some(_)) => {}
                }
            }
        }
    }

    /// handlers/fetch.rs on the leader: the leader check, the follower's log end noted
    /// (`Partition::follower_fetched`, maybe an ISR expansion), then a read up to the log end,
    /// or a wait for an append when there is nothing to read.
    pub(super) fn on_fetch(&mut self, leader: i32, follower: i32, follower_inc: u64, gen: u64, current_epoch: i32, fetch_offset: i64) {
        let l = self.idx(leader);
        let now = self.instant();
        let lb = &mut self.brokers[l];
        if let Err(e) = lb.state.check_leader(current_epoch) {
            self.send(leader, follower, Body::FetchResp { gen, fetch_offset, result: FetchResult::Refused(e) });
            return;
        }
        let leo = lb.leo();
        let (_, proposal) = lb.state.on_follower_fetch(follower, fetch_offset, leo, now);
        if let Some(p) = proposal {
            self.propose_isr(leader, p);
        }
        let p = Parked { current_epoch, follower, follower_inc, gen, fetch_offset };
        if fetch_offset == self.brokers[l].leo() {
            self.brokers[l].parked.push(p);
        } else {
            self.answer_parked(l, p);
        }
    }

    /// The read of a follower's fetch (handlers/fetch.rs `read_all`), now: leadership in
    /// the fetch's epoch checked again, then the log read up to its end.
    pub(super) fn answer_parked(&mut self, l: usize, p: Parked) {
        let lb = &self.brokers[l];
        let (leo, hw) = (lb.leo(), lb.hw());
        let result = if let Err(e) = lb.state.check_leader(p.current_epoch) {
            // Leadership checked again at the read (the fix of the scripted test
            // `a_fetch_parked_on_a_deposed_leader_reads_nothing`).
            FetchResult::Refused(e)
        } else if p.fetch_offset < 0 || p.fetch_offset > leo {
            FetchResult::OutOfRange { log_start: 0, hw }
        } else {
            let n = self.rng.gen_range(1..=self.opts.max_fetch_records);
            let end = (p.fetch_offset + n).min(leo);
            FetchResult::Data { entries: lb.log[p.fetch_offset as usize..end as usize].to_vec(), hw }
        };
        let from = lb.id;
        self.net.push(Msg { from, from_inc: lb.incarnation, to: p.follower, to_inc: p.follower_inc, body: Body::FetchResp {
            gen: p.gen,
            fetch_offset: p.fetch_offset,
            result,
        } });
    }

    /// fetcher::fetch_once after the answer: append at the leader's offsets, note the
    /// epochs (`Partition::record_epochs`), follow the high watermark.
    pub(super) fn on_fetch_response(&mut self, id: i32, gen: u64, fetch_offset: i64, result: FetchResult) {
        let b = self.idx(id);
        let br = &mut self.brokers[b];
        let Some(f) = br.fetcher.clone().filter(|f| f.gen == gen) else { return };
        br.fetcher.as_mut().expect("checked").busy = false;
        match result {
            FetchResult::Refused(e) => self.log(format!("{id} fetch from {} in epoch {}: {e:?}", f.leader, f.epoch)),
            FetchResult::OutOfRange { log_start, hw } => {
                let to = replica::out_of_range_offset(fetch_offset, log_start, hw);
                br.fetcher.as_mut().expect("checked").busy = true;
                let why = format!("{id} fetch at {fetch_offset} out of {}'s range", f.leader);
                br.jobs.push(Job::Cut { gen, to, why });
            }
            FetchResult::Data { entries, hw } => {
                // Handed to a blocking thread; the fetcher waits for it (still busy).
                br.fetcher.as_mut().expect("checked").busy = true;
                br.jobs.push(Job::Append { gen, fetch_offset, entries, hw });
            }
        }
    }

    /// A follower's blocking job runs: `Partition::append_as_follower` or
    /// `truncate_as_follower`, which do nothing once the fetcher is cancelled; then, if it was
    /// not, the rest of the fetcher's step (the high watermark followed, the log cut noted).
    pub(super) fn run_job(&mut self, b: usize, job: Job) {
        let br = &mut self.brokers[b];
        let id = br.id;
        let gen = match &job {
            Job::Append { gen, .. } | Job::Cut { gen, .. } => *gen,
            Job::Produce { epoch, id } => return self.append_as_leader(b, *epoch, *id),
        };
        let current = br.fetcher.as_ref().is_some_and(|f| f.gen == gen);
        if !current && !self.opts.stale_jobs {
            self.log(format!("{id}: a job of a cancelled fetch does nothing: {job:?}"));
            return;
        }
        let done = |br: &mut Broker| {
            if let Some(f) = br.fetcher.as_mut().filter(|f| f.gen == gen) {
                f.busy = false;
            }
        };
        match job {
            Job::Cut { to, why, .. } => {
                let before = br.leo();
                let end = br.truncate_to(to);
                done(br);
                if let Some(f) = br.fetcher.as_mut().filter(|f| f.gen == gen) {
                    f.truncated = true;
                }
                self.log(format!("{why}; log {before} -> {end}{}", if current { "" } else { " (cancelled fetch)" }));
            }
            Job::Produce { .. } => unreachable!("handled above"),
            Job::Append { fetch_offset, entries, hw, .. } => {
                if br.leo() != fetch_offset {
                    done(br);
                    self.log(format!("{id}: the log moved during the fetch"));
                    return;
                }
                let n = entries.len();
                for (i, e) in entries.into_iter().enumerate() {
                    br.log.push(e);
                    br.epochs.assign(e.epoch, fetch_offset + i as i64);
                }
                let leo = br.leo();
                if !current {
                    self.log(format!("{id} appended {n} at {fetch_offset} from a cancelled fetch: leo {leo}"));
                    return;
                }
                done(br);
                br.state.follow_hw(hw, leo);
                let line = format!("{id} fetched {n} at {fetch_offset}: leo {leo}, leader hw {hw}, hw {}", br.hw());
                self.log(line);
            }
        }
    }
}
