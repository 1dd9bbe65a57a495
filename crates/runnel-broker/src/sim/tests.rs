//! The simulation's entry points: `RUNNEL_SIM_SEEDS` seeds (default 300) of
//! `RUNNEL_SIM_STEPS` steps (default 1000) each, or the one seed `RUNNEL_SIM_SEED` (to
//! replay a failure); the seeds that found bugs; and the proof that the checks can fail.

use super::{Options, World};

fn env(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(v.trim().parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

#[test]
fn sim_seeds_keep_every_invariant() {
    let seeds: Vec<u64> = match env("RUNNEL_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..env("RUNNEL_SIM_SEEDS").unwrap_or(300)).collect(),
    };
    let steps = env("RUNNEL_SIM_STEPS").map_or(Options::default().steps, |s| s as usize);
    let (mut acked, mut epochs) = (0, 0);
    for &seed in &seeds {
        match World::new(seed, Options { steps, ..Options::default() }).run() {
            Ok(stats) => {
                acked += stats.acked;
                epochs += stats.epochs;
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    println!("simulation: {} seeds of {steps} steps: {acked} records acknowledged, {epochs} leader epochs", seeds.len());
    // The runs exercise what they check: records are acknowledged and leaders change.
    assert!(acked > 10 * seeds.len() as u64, "only {acked} records acknowledged in {} seeds", seeds.len());
    assert!(epochs > seeds.len() as u64, "only {epochs} leader epochs in {} seeds", seeds.len());
}

/// Seeds that lost acknowledged records before a fix (1000 steps each; a seed's run
/// depends on the simulation's version: these are the seeds of 0..300 that fail with the fix
/// undone as of the simulation that landed with it, re-derived when the scheduler changed).
/// 1, 9, 31, 35, 63, 93: the controller committed a follower's ISR join while the leader
/// still computed its high watermark without it, acknowledged records the follower lacked,
/// and the follower was elected (fixed by the maximal ISR in `ReplicaState`).
#[test]
fn sim_regression_seeds() {
    for seed in [1, 9, 31, 35, 63, 93] {
        if let Err(failure) = World::new(seed, Options::default()).run() {
            panic!("{failure}");
        }
    }
}

/// Before the fix: a follower's append (or cut) handed to a blocking thread ran even after
/// its fetcher was cancelled for a new epoch, after the next fetcher had cut the log, and
/// left records of the old leader below the follower's high watermark, or cut the log of a
/// broker that had become leader below its high watermark. With the old rule switched back
/// on, the simulation finds it (9 seeds of 0..3000 break, 483 first; the range starts near it
/// to keep the test short).
#[test]
fn sim_finds_what_appends_after_a_cancelled_fetch_break() {
    let failure = (480..490)
        .find_map(|seed| World::new(seed, Options { stale_jobs: true, ..Options::default() }).run().err())
        .expect("a stale append breaks an invariant in some seed");
    println!("{failure}");
    let broken = ["disagrees", "missing from leader", "served high watermark"];
    assert!(broken.iter().any(|b| failure.what.contains(b)), "{failure}");
}

/// With unclean leader election forced on (an out-of-sync replica elected when the ISR is
/// gone), the checks find a lost record within a few hundred seeds.
#[test]
fn sim_finds_the_records_an_unclean_election_loses() {
    let failure = (0..300)
        .find_map(|seed| World::new(seed, Options { unclean_election: true, ..Options::default() }).run().err())
        .expect("an unclean election loses a record in some seed");
    println!("{failure}");
    assert!(failure.what.contains("missing from leader") || failure.what.contains("disagrees"), "{failure}");
}


/// A scripted run: a follower's fetch parked on the leader (nothing to read yet) outlives
/// that broker's leadership; meanwhile it has followed the new leader, cut its log and
/// fetched the new leader's records. When the parked fetch wakes, the follower that has not
/// heard of the new epoch must not get those records on top of its own old ones (it would
/// then keep records the new leader cut, below its high watermark).
#[test]
fn a_fetch_parked_on_a_deposed_leader_reads_nothing() {
    use super::{link, CONTROLLER, TOPIC};
    let mut w = World::new(0, Options { max_fetch_records: 1, ..Options::default() });
    let a = w.controller.image.partition(&TOPIC, 0).unwrap().clone();
    let (l, n, f) = (a.replicas[0], a.replicas[1], a.replicas[2]);
    let (li, ni, fi) = (w.idx(l), w.idx(n), w.idx(f));
    fn deliver(w: &mut World, from: i32, to: i32) {
        let i = w.net.iter().position(|m| m.from == from && m.to == to).unwrap_or_else(|| panic!("no message {from} -> {to}"));
        let m = w.net.remove(i);
        w.deliver(m);
        w.resolve_acks();
        w.check().unwrap_or_else(|e| panic!("{e}\n{}", w.trace.iter().cloned().collect::<Vec<_>>().join("\n")));
    }
    fn fetch_until(w: &mut World, b: usize, leo: i64) {
        let (me, leader) = (w.brokers[b].id, w.brokers[b].fetcher.as_ref().unwrap().leader);
        while w.brokers[b].leo() < leo || !w.brokers[b].fetcher.as_ref().unwrap().truncated {
            w.fetch_next(b);
            if w.brokers[b].fetcher.as_ref().unwrap().busy {
                deliver(w, me, leader);
                deliver(w, leader, me);
                while !w.brokers[b].jobs.is_empty() {
                    let job = w.brokers[b].jobs.remove(0);
                    w.run_job(b, job);
                }
            }
        }
    }
    for _ in 0..5 {
        w.produce_to(li);
        let job = w.brokers[li].jobs.remove(0);
        w.run_job(li, job);
    }
    fetch_until(&mut w, fi, 5);
    fetch_until(&mut w, ni, 3);
    // The follower waits on the leader at its log end.
    w.fetch_next(fi);
    deliver(&mut w, f, l);
    assert_eq!(w.brokers[li].parked.len(), 1);
    // The leader loses the controller, is fenced, and the next in the ISR leads.
    w.cut.insert(link(l, CONTROLLER));
    for _ in 0..5 {
        w.pass(450);
    }
    assert_eq!(w.controller.image.partition(&TOPIC, 0).unwrap().leader, n, "{:?}", w.trace);
    while w.brokers[ni].applied < w.controller.log.len() {
        w.apply_next(ni);
    }
    for _ in 0..5 {
        w.produce_to(ni);
        let job = w.brokers[ni].jobs.remove(0);
        w.run_job(ni, job);
    }
    // The old leader hears of it, follows, cuts its log and takes the new leader's records.
    w.cut.clear();
    while w.brokers[li].applied < w.controller.log.len() {
        w.apply_next(li);
    }
    fetch_until(&mut w, li, 8);
    // The parked fetch wakes; the follower (still in the old epoch) gets the answer.
    let p = w.brokers[li].parked.remove(0);
    w.answer_parked(li, p);
    deliver(&mut w, l, f);
    // It learns of the new epoch, follows the new leader and catches up.
    while w.brokers[fi].applied < w.controller.log.len() {
        w.apply_next(fi);
    }
    fetch_until(&mut w, fi, 8);
    assert_eq!(w.brokers[fi].log, w.brokers[ni].log, "{:?}", w.trace);
}
