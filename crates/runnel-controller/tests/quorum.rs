//! Three controller nodes in one process on 127.0.0.1:0 form the metadata quorum in any
//! start order, commit records from any node, agree on the image, survive a follower's
//! and the leader's loss (a restarted node catches up from a snapshot plus the tail), and
//! a minority cannot commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use runnel_controller::{
    BrokerRegistration, Controller, ControllerOptions, ControllerRecord, ImageSnapshot, ProposeError, Published, Rejection,
};
use runnel_metadata::{MetadataRecord, Uuid};
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;

struct Cluster {
    dir: tempfile::TempDir,
    voters: BTreeMap<u64, String>,
    nodes: BTreeMap<u64, Arc<Controller>>,
    events: BTreeMap<u64, UnboundedReceiver<Published>>,
}

impl Cluster {
    async fn new() -> Self {
        let mut voters = BTreeMap::new();
        for id in 1..=3u64 {
            // Reserve a port, then free it for the node to bind.
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            voters.insert(id, l.local_addr().unwrap().to_string());
        }
        Self { dir: tempfile::tempdir().unwrap(), voters, nodes: BTreeMap::new(), events: BTreeMap::new() }
    }

    fn options(&self, id: u64) -> ControllerOptions {
        let mut o = ControllerOptions::new(id, self.dir.path().join(format!("node-{id}")), self.voters.clone());
        o.snapshot_every = 10;
        o.keep_after_snapshot = 2;
        o.propose_timeout = Duration::from_secs(5);
        o.broker_session_timeout = Duration::from_millis(1500);
        o.broker_heartbeat_interval = Duration::from_millis(200);
        o
    }

    async fn start(&mut self, id: u64) {
        let mut listener = None;
        for _ in 0..50 {
            match TcpListener::bind(&self.voters[&id]).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let (node, events) = Controller::start(self.options(id), listener.expect("controller port free again")).await.unwrap();
        self.nodes.insert(id, node);
        self.events.insert(id, events);
    }

    async fn stop(&mut self, id: u64) {
        let node = self.nodes.remove(&id).unwrap();
        node.shutdown().await;
        self.events.remove(&id);
    }

    fn node(&self, id: u64) -> &Arc<Controller> {
        &self.nodes[&id]
    }

    async fn leader(&self) -> u64 {
        for _ in 0..100 {
            let leaders: Vec<u64> = self.nodes.values().filter(|n| n.is_leader()).map(|n| n.id()).collect();
            if leaders.len() == 1 {
                return leaders[0];
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no single leader among {:?}", self.nodes.keys().collect::<Vec<_>>());
    }

    /// Waits until every running node has applied `offset`, then returns their images.
    async fn images_at(&self, offset: u64) -> Vec<(u64, ImageSnapshot)> {
        let mut out = Vec::new();
        for (id, n) in &self.nodes {
            assert!(n.wait_applied(offset, Duration::from_secs(10)).await, "node {id} never applied {offset} (at {})", n.applied_offset());
            out.push((*id, n.image().to_snapshot()));
        }
        out
    }

    async fn assert_agree(&self, offset: u64) -> ImageSnapshot {
        let images = self.images_at(offset).await;
        for (id, image) in &images[1..] {
            assert_eq!(image, &images[0].1, "node {id} and node {} disagree", images[0].0);
        }
        images[0].1.clone()
    }
}

fn create(name: &str) -> ControllerRecord {
    let id = Uuid::new_v4();
    ControllerRecord::Topic {
        topic_id: id,
        change: MetadataRecord::CreateTopic { name: name.into(), topic_id: id, partitions: 1, configs: Default::default() },
        assignments: vec![],
    }
}

fn names(image: &ImageSnapshot) -> Vec<String> {
    image
        .topics
        .iter()
        .map(|r| match r {
            MetadataRecord::CreateTopic { name, .. } => name.clone(),
            other => panic!("snapshot holds {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_forms_commits_and_survives_restarts_and_leader_loss() {
    let mut c = Cluster::new().await;
    // Start order 3, then 1, then 2. Node 3 alone is a minority: no leader, no commit.
    c.start(3).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(c.node(3).leader(), None, "a single voter of three elected itself");
    let lonely = tokio::time::timeout(Duration::from_secs(8), c.node(3).propose(create("lonely"))).await;
    assert!(matches!(lonely, Ok(Err(ProposeError::Unavailable(_)))), "a minority committed: {lonely:?}");

    c.start(1).await;
    let first_leader = c.leader().await;
    c.start(2).await;

    // Commit from every node (followers forward to the leader).
    let mut last = 0;
    for (i, id) in [1u64, 2, 3, 1, 2].iter().enumerate() {
        let (offset, epoch) = c.node(*id).propose(create(&format!("t{i}"))).await.unwrap();
        assert!(offset > last && epoch >= 1);
        last = offset;
        // Answered only once applied on the node that asked.
        assert!(c.node(*id).image().topics.topic(&format!("t{i}")).is_some());
    }
    // The image decides: a second create of a name is refused on every path.
    assert_eq!(c.node(3).propose(create("t0")).await, Err(ProposeError::Rejected(Rejection::TopicExists)));
    let image = c.assert_agree(last).await;
    assert_eq!(names(&image), ["t0", "t1", "t2", "t3", "t4"]);

    // A follower goes away; the others commit past several snapshots and purge the log.
    let current = c.leader().await;
    let follower = [1u64, 2, 3].into_iter().find(|id| *id != current).unwrap();
    c.stop(follower).await;
    for i in 5..40 {
        let leader = c.leader().await;
        last = c.node(leader).propose(create(&format!("t{i}"))).await.unwrap().0;
    }
    let leader = c.leader().await;
    assert!(c.node(leader).snapshot_offset().is_some_and(|s| s > 10), "the leader took no snapshot");
    // It comes back and catches up from the leader's snapshot plus the tail.
    c.start(follower).await;
    let image = c.assert_agree(last).await;
    assert_eq!(image.topics.len(), 40);
    let mut got_snapshot = false;
    while let Ok(e) = c.events.get_mut(&follower).unwrap().try_recv() {
        got_snapshot |= matches!(e, Published::Snapshot { .. });
    }
    assert!(got_snapshot, "the lagging node did not catch up from a snapshot");

    // The leader is lost: another is elected, nothing committed is lost, commits go on.
    let old = c.leader().await;
    c.stop(old).await;
    let new = c.leader().await;
    assert_ne!(new, old);
    let other = *c.nodes.keys().find(|id| **id != new).unwrap();
    last = c.node(other).propose(create("after-failover")).await.unwrap().0;
    let image = c.assert_agree(last).await;
    assert_eq!(image.topics.len(), 41);
    // The old leader restarts from its own disk and catches up.
    c.start(old).await;
    let image = c.assert_agree(last).await;
    assert_eq!(image.topics.len(), 41);
    assert!(names(&image).contains(&"after-failover".to_string()));
    assert!(!names(&image).contains(&"lonely".to_string()), "the minority's proposal was committed");

    // Two of three down: the survivor cannot commit.
    let survivor = c.leader().await;
    for id in [1u64, 2, 3] {
        if id != survivor {
            c.stop(id).await;
        }
    }
    let minority = tokio::time::timeout(Duration::from_secs(10), c.node(survivor).propose(create("minority"))).await;
    assert!(!matches!(minority, Ok(Ok(_))), "a minority committed: {minority:?}");
    let _ = first_leader;
    for id in c.nodes.keys().copied().collect::<Vec<_>>() {
        c.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_register_heartbeat_and_are_fenced() {
    let mut c = Cluster::new().await;
    for id in [2u64, 1, 3] {
        c.start(id).await;
    }
    for id in [1u64, 2, 3] {
        c.node(id).run_broker(BrokerRegistration { broker_id: id as i32, host: "127.0.0.1".into(), port: 9000 + id as i32, rack: None, fenced: false, listeners: vec![] });
    }
    let live = |c: &Cluster, at: u64| -> Vec<i32> { c.node(at).image().live_brokers().map(|b| b.broker_id).collect() };
    wait(|| [1u64, 2, 3].iter().all(|n| live(&c, *n) == [1, 2, 3]), "all three brokers registered").await;

    // A broker that stops heartbeating is fenced (its node is gone).
    let leader = c.leader().await;
    let gone = [1u64, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    c.stop(gone).await;
    let expected: Vec<i32> = [1, 2, 3].into_iter().filter(|b| *b != gone as i32).collect();
    wait(|| c.nodes.keys().all(|n| live(&c, *n) == expected), "the silent broker fenced").await;
    assert!(c.node(leader).image().brokers[&(gone as i32)].fenced);

    // It returns: registered again, unfenced.
    c.start(gone).await;
    c.node(gone).run_broker(BrokerRegistration { broker_id: gone as i32, host: "127.0.0.1".into(), port: 9000 + gone as i32, rack: None, fenced: false, listeners: vec![] });
    wait(|| c.nodes.keys().all(|n| live(&c, *n) == [1, 2, 3]), "the returning broker unfenced").await;
    for id in [1u64, 2, 3] {
        c.stop(id).await;
    }
}

async fn wait(mut cond: impl FnMut() -> bool, what: &str) {
    for _ in 0..150 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}
