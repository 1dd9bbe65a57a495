//! Dynamic broker and group configs in a cluster: they are metadata records the quorum
//! replicates, so the cluster-wide default altered through one broker is described by
//! every other broker (and applies to their topics), a group config set through one broker
//! is described by another, a broker's own config set through itself stays its own, a
//! node killed and restarted describes them all again, and alters sent at once, through
//! one broker or through two, lose none of each other's changes.

use super::{start_cluster, wait_until};
use crate::common::configs::*;

#[test]
fn dynamic_configs_altered_on_one_node_are_described_on_the_others() {
    let c = start_cluster([0, 1, 2]);
    let addrs: Vec<String> = c.nodes.iter().map(|n| n.addr.clone()).collect();
    // The cluster-wide default through node 1.
    assert_eq!(incremental(&addrs[0], BROKER, "", &[("log.retention.ms", SET, Some("3600000"))], false), (0, String::new()));
    // Broker 2's own value, through broker 2 (a broker's resource goes to that broker).
    assert_eq!(incremental(&addrs[1], BROKER, "2", &[("background.threads", SET, Some("9"))], false).0, 0);
    // A group config through node 3.
    assert_eq!(incremental(&addrs[2], GROUP, "g", &[("consumer.session.timeout.ms", SET, Some("50000"))], false).0, 0);

    for (i, addr) in addrs.iter().enumerate() {
        let id = (i + 1).to_string();
        wait_until("the default reaches every broker", || {
            entry(&describe(addr, BROKER, &id), "log.retention.ms").is_some_and(|e| (e.0.as_str(), e.1) == ("3600000", DYNAMIC_DEFAULT_BROKER))
        });
        let threads = entry(&describe(addr, BROKER, &id), "background.threads").unwrap();
        let want = if i == 1 { ("9", DYNAMIC_BROKER) } else { ("10", DEFAULT) };
        assert_eq!((threads.0.as_str(), threads.1), want, "background.threads on broker {id}");
        wait_until("the group config reaches every broker", || {
            entry(&describe(addr, GROUP, "g"), "consumer.session.timeout.ms").is_some_and(|e| (e.0.as_str(), e.1) == ("50000", GROUP_CONFIG))
        });
        let r = describe(addr, BROKER, "");
        assert_eq!(r.configs.len(), 1, "broker {id} describes the default level");
    }
    // Kept by the quorum: a node killed and restarted describes them again.
    let mut c = c;
    c.nodes[1].kill9();
    c.nodes[1].restart();
    let addr = c.nodes[1].addr.clone();
    wait_until("broker 2 describes its configs after a restart", || {
        let r = describe(&addr, BROKER, "2");
        r.error_code == 0
            && entry(&r, "log.retention.ms").is_some_and(|e| (e.0.as_str(), e.1) == ("3600000", DYNAMIC_DEFAULT_BROKER))
            && entry(&r, "background.threads").is_some_and(|e| (e.0.as_str(), e.1) == ("9", DYNAMIC_BROKER))
    });
    assert_eq!(entry(&describe(&addr, GROUP, "g"), "consumer.session.timeout.ms").unwrap().0, "50000");
    // Alters sent at once through one broker keep each other's changes: each reads what
    // the one before it committed (they replace the resource's whole set of values).
    let first = c.nodes[0].addr.clone();
    let keys = [("log.retention.bytes", "100000"), ("log.roll.ms", "3600000"), ("log.flush.interval.messages", "1000"), ("background.threads", "1")];
    std::thread::scope(|s| {
        for (key, base) in keys {
            let first = &first;
            s.spawn(move || {
                for round in 0..3 {
                    let value = format!("{base}{round}");
                    assert_eq!(incremental(first, BROKER, "", &[(key, SET, Some(&value))], false), (0, String::new()), "{key}");
                }
            });
        }
    });
    let r = describe(&first, BROKER, "");
    for (key, base) in keys {
        assert_eq!(entry(&r, key).map(|e| e.0.clone()), Some(format!("{base}2")), "{key}: the last value set, lost by no other alter");
    }
    // The same through two brokers at once, for the cluster-wide default and for a topic:
    // the controller refuses a record written from values another alter has changed since,
    // and the alter reads them again.
    let second = c.nodes[2].addr.clone();
    let admin: rdkafka::admin::AdminClient<_> = super::client(&first).create().expect("admin client");
    super::create(&admin, "cfg", 1, 3).expect("topic cfg");
    let topic_keys = [("retention.ms", "3600000"), ("segment.bytes", "10485760"), ("max.message.bytes", "100000"), ("segment.ms", "3600000")];
    std::thread::scope(|s| {
        for (i, ((key, base), (topic_key, topic_base))) in keys.into_iter().zip(topic_keys).enumerate() {
            let via = if i % 2 == 0 { &first } else { &second };
            s.spawn(move || {
                for round in 5..8 {
                    let value = format!("{base}{round}");
                    assert_eq!(incremental(via, BROKER, "", &[(key, SET, Some(&value))], false), (0, String::new()), "{key}");
                    let value = format!("{topic_base}{round}");
                    assert_eq!(incremental(via, TOPIC, "cfg", &[(topic_key, SET, Some(&value))], false), (0, String::new()), "{topic_key}");
                }
            });
        }
    });
    wait_until("each alter's last value, through either broker, is kept", || {
        let (defaults, topic) = (describe(&first, BROKER, ""), describe(&first, TOPIC, "cfg"));
        keys.iter().all(|(k, base)| entry(&defaults, k).is_some_and(|e| e.0 == format!("{base}7")))
            && topic_keys.iter().all(|(k, base)| entry(&topic, k).is_some_and(|e| e.0 == format!("{base}7")))
    });
    // Brokers name only themselves: another's id is refused (Kafka's admin client sends a
    // broker's resource to that broker).
    assert_eq!(incremental(&c.nodes[0].addr, BROKER, "2", &[("background.threads", SET, Some("8"))], false).0, 42);
}
