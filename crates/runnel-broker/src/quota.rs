//! Client quotas, enforced as Kafka's ClientQuotaManager does: produce bytes (request
//! size) and fetch bytes (response size) per second, and request time as a percentage of
//! one thread (`request_percentage`, Kafka's ClientRequestQuotaManager: 100 = one thread
//! busy all the time with this client's requests), per user and client id.
//!
//! Request time is the time a request's handler spends running on a thread (the sum of
//! its polls, see [`busy`]) plus the encoding of its response; a request waiting (acks=all
//! for the ISR, a fetch for data) costs nothing while it waits, as in Kafka, where the wait
//! is in purgatory and not on a request thread. Replication (followers' fetches),
//! transaction markers and the requests before authentication (ApiVersions, the SASL
//! handshake) are exempt, as Kafka exempts cluster actions.
//!
//! The quota that applies to a request is found in Kafka's order, each key on its own:
//! (user, client id), (user, default client), (user), (default user, client id), (default
//! user, default client), (default user), (client id), (default client). The entity found
//! decides who shares the budget: a quota set for a user is shared by all its clients.
//! Each shared budget is a rate over `quota.window.num` windows of
//! `quota.window.size.seconds` (at least the span of all windows but the current one, so
//! a new client cannot burst past it). A request that takes the rate above the quota is
//! served, and answered with `throttle_time_ms = (rate - quota) / quota × window span`;
//! the connection then handles nothing more for that long (Kafka mutes the channel), which
//! brings the rate back to the quota.
//!
//! Sensors are kept per budget in use and dropped after an hour idle; the number of budgets
//! is bounded by the connections' users and client ids.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use runnel_metadata::quota::{QuotaEntity, CLIENT_ID, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE, REQUEST_PERCENTAGE, USER};

use crate::state::SecurityView;
use crate::BrokerConfig;

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    Produce,
    Fetch,
    /// Request time, recorded in percent-seconds (see [`request_share`]).
    Request,
}

impl QuotaKind {
    fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => PRODUCER_BYTE_RATE,
            QuotaKind::Fetch => CONSUMER_BYTE_RATE,
            QuotaKind::Request => REQUEST_PERCENTAGE,
        }
    }
}

/// Thread time as what a `request_percentage` budget counts: percent of one thread for one
/// second (Kafka's `nanosToPercentage`), so that its rate per second is the percentage.
pub fn request_share(spent: Duration) -> f64 {
    spent.as_secs_f64() * 100.0
}

/// Runs `f` and returns its output with the time it spent running: the sum of its polls,
/// not the time it waited between them.
pub async fn busy<F: Future>(f: F) -> (F::Output, Duration) {
    let mut f = std::pin::pin!(f);
    let mut spent = Duration::ZERO;
    let out = std::future::poll_fn(|cx| {
        let start = Instant::now();
        let r = f.as_mut().poll(cx);
        spent += start.elapsed();
        r
    })
    .await;
    (out, spent)
}

/// Sensors idle this long are forgotten.
const SENSOR_IDLE: Duration = Duration::from_secs(3600);
/// Most sensors kept; past it the idle ones are swept.
const MAX_SENSORS: usize = 100_000;

pub struct Quotas {
    window: Duration,
    samples: usize,
    sensors: Mutex<HashMap<(QuotaKind, String, String), Sensor>>,
}

/// A rate over sampled windows (Kafka's `Rate` over a `SampledStat`).
struct Sensor {
    /// (window start, total recorded in it), oldest first.
    windows: VecDeque<(Instant, f64)>,
    last_used: Instant,
}

impl Quotas {
    pub fn new(config: &BrokerConfig) -> Self {
        let samples = config.setting_value("quota.window.num").parse::<usize>().unwrap_or(11).max(2);
        let secs = config.setting_value("quota.window.size.seconds").parse::<u64>().unwrap_or(1).max(1);
        Self { window: Duration::from_secs(secs), samples, sensors: Mutex::new(HashMap::new()) }
    }

    /// Records `bytes` (or, for [`QuotaKind::Request`], percent-seconds) for
    /// `(user, client_id)` and returns how long to throttle it (zero when no quota applies
    /// or the rate is within it).
    pub fn record(&self, view: &SecurityView, kind: QuotaKind, user: &str, client_id: &str, bytes: f64) -> Duration {
        if view.quotas.is_empty() {
            return Duration::ZERO;
        }
        let Some((quota, budget_user, budget_client)) = resolve(view, kind.key(), user, client_id) else {
            return Duration::ZERO;
        };
        if quota <= 0.0 {
            return Duration::from_millis((self.window * self.samples as u32).as_millis() as u64);
        }
        let now = Instant::now();
        let mut sensors = self.sensors.lock().unwrap_or_else(|p| p.into_inner());
        if sensors.len() >= MAX_SENSORS {
            sensors.retain(|_, s| now.duration_since(s.last_used) < SENSOR_IDLE);
        }
        let sensor = sensors
            .entry((kind, budget_user, budget_client))
            .or_insert_with(|| Sensor { windows: VecDeque::new(), last_used: now });
        sensor.last_used = now;
        let (rate, span) = sensor.record(now, bytes, self.window, self.samples);
        if rate <= quota {
            return Duration::ZERO;
        }
        let throttle = span.mul_f64((rate - quota) / quota);
        throttle.min(self.window * self.samples as u32)
    }
}

impl Sensor {
    /// Adds `value` at `now`; returns the rate (per second) and the span it is measured over.
    fn record(&mut self, now: Instant, value: f64, window: Duration, samples: usize) -> (f64, Duration) {
        // Windows older than all the samples are obsolete.
        while self.windows.front().is_some_and(|(start, _)| now.duration_since(*start) >= window * samples as u32) {
            self.windows.pop_front();
        }
        match self.windows.back_mut() {
            Some((start, total)) if now.duration_since(*start) < window => *total += value,
            _ => {
                self.windows.push_back((now, value));
                if self.windows.len() > samples {
                    self.windows.pop_front();
                }
            }
        }
        let total: f64 = self.windows.iter().map(|(_, v)| v).sum();
        let oldest = self.windows.front().map_or(now, |(s, _)| *s);
        // At least the span of all windows but the current one, as Kafka's Rate.
        let span = now.duration_since(oldest).max(window * (samples as u32 - 1));
        (total / span.as_secs_f64(), span)
    }
}

/// The quota for `key` that applies to `(user, client_id)`, in Kafka's order, with the
/// budget it is counted in: (quota, budget user, budget client id).
fn resolve(view: &SecurityView, key: &str, user: &str, client_id: &str) -> Option<(f64, String, String)> {
    let entity = |u: Option<Option<&str>>, c: Option<Option<&str>>| {
        let mut e = QuotaEntity::new();
        if let Some(u) = u {
            e.insert(USER.to_string(), u.map(str::to_string));
        }
        if let Some(c) = c {
            e.insert(CLIENT_ID.to_string(), c.map(str::to_string));
        }
        e
    };
    let (u, c) = (Some(user), Some(client_id));
    let order = [
        (entity(Some(u), Some(c)), true, true),
        (entity(Some(u), Some(None)), true, true),
        (entity(Some(u), None), true, false),
        (entity(Some(None), Some(c)), true, true),
        (entity(Some(None), Some(None)), true, true),
        (entity(Some(None), None), true, false),
        (entity(None, Some(c)), false, true),
        (entity(None, Some(None)), false, true),
    ];
    order.into_iter().find_map(|(e, by_user, by_client)| {
        let v = view.quotas.get(&e)?.get(key)?;
        let budget = |yes: bool, name: &str| if yes { name.to_string() } else { String::new() };
        Some((*v, budget(by_user, user), budget(by_client, client_id)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(entries: &[(Option<Option<&str>>, Option<Option<&str>>, f64)]) -> SecurityView {
        let mut v = SecurityView::default();
        for (u, c, q) in entries {
            let mut e = QuotaEntity::new();
            if let Some(u) = u {
                e.insert(USER.into(), u.map(str::to_string));
            }
            if let Some(c) = c {
                e.insert(CLIENT_ID.into(), c.map(str::to_string));
            }
            v.quotas.entry(e).or_default().insert(PRODUCER_BYTE_RATE.into(), *q);
        }
        v
    }

    #[test]
    fn resolution_follows_kafkas_order() {
        let v = view(&[(None, Some(Some("app")), 10.0), (Some(None), None, 20.0), (Some(Some("alice")), None, 30.0)]);
        assert_eq!(resolve(&v, PRODUCER_BYTE_RATE, "alice", "app"), Some((30.0, "alice".into(), String::new())));
        assert_eq!(resolve(&v, PRODUCER_BYTE_RATE, "bob", "app"), Some((20.0, "bob".into(), String::new())));
        let v = view(&[(None, Some(Some("app")), 10.0), (None, Some(None), 5.0)]);
        assert_eq!(resolve(&v, PRODUCER_BYTE_RATE, "bob", "app"), Some((10.0, String::new(), "app".into())));
        assert_eq!(resolve(&v, PRODUCER_BYTE_RATE, "bob", "other"), Some((5.0, String::new(), "other".into())));
        assert_eq!(resolve(&v, CONSUMER_BYTE_RATE, "bob", "app"), None);
    }

    #[test]
    fn a_rate_over_the_quota_is_throttled_back_to_it() {
        let q = Quotas { window: Duration::from_secs(1), samples: 11, sensors: Mutex::new(HashMap::new()) };
        let v = view(&[(None, Some(Some("app")), 1000.0)]);
        // 10 s × 1000 B/s is the first span's allowance.
        assert_eq!(q.record(&v, QuotaKind::Produce, "u", "app", 9_000.0), Duration::ZERO);
        let t = q.record(&v, QuotaKind::Produce, "u", "app", 11_000.0);
        // 20000 B over 10 s = 2000 B/s: twice the quota, throttled for one span (10 s).
        assert!(t >= Duration::from_millis(9_900) && t <= Duration::from_millis(10_100), "{t:?}");
        assert_eq!(q.record(&v, QuotaKind::Produce, "u", "other", 1e9), Duration::ZERO, "no quota for that client");
    }

    #[test]
    fn request_time_is_counted_as_a_share_of_one_thread() {
        let q = Quotas { window: Duration::from_secs(1), samples: 11, sensors: Mutex::new(HashMap::new()) };
        let mut v = SecurityView::default();
        let mut e = QuotaEntity::new();
        e.insert(CLIENT_ID.into(), Some("busy".into()));
        v.quotas.entry(e).or_default().insert(REQUEST_PERCENTAGE.into(), 10.0);
        // 10 % of a thread over the first span (10 s) is 1 s of thread time.
        assert_eq!(q.record(&v, QuotaKind::Request, "u", "busy", request_share(Duration::from_millis(900))), Duration::ZERO);
        let t = q.record(&v, QuotaKind::Request, "u", "busy", request_share(Duration::from_millis(1100)));
        assert!(t >= Duration::from_millis(9_900) && t <= Duration::from_millis(10_100), "{t:?}");
        assert_eq!(q.record(&v, QuotaKind::Produce, "u", "busy", 1e9), Duration::ZERO, "a request quota is not a byte quota");
    }

    #[test]
    fn busy_counts_the_polls_and_not_the_waits() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let ((), spent) = rt.block_on(busy(async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(30) {
                std::hint::spin_loop();
            }
        }));
        assert!(spent >= Duration::from_millis(30) && spent < Duration::from_millis(150), "{spent:?}");
    }
}
