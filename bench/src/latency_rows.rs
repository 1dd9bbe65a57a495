//! The latency group's rows: each row's runs (on new topics, after a bulk load where the
//! row asks for one) and the worst of them as the row (see `latency` for one run).

use anyhow::{Context, Result};

use crate::broker::Kind;
use crate::report::{self, Group, Row, Target};
use crate::throughput::{self, ProduceRun};
use crate::{clients, latency, procstat, Bench};

impl Bench {
    /// The latency rows' labels: 10,000 and 100,000 rec/s, after a bulk load, while cleaning.
    pub(crate) fn latency_labels(&self) -> [String; 4] {
        let at = |rate: u64| format!("100 B at {} rec/s, acks=all, linger.ms=0, p=1", report::thousands(rate));
        [
            at(10_000),
            at(100_000),
            format!("{}, right after a bulk load of {} × 100 B", at(10_000), report::thousands(self.bulk_records())),
            "100 B at 10,000 rec/s, acks=all, p=1, keyed, while compaction, retention and fsyncs run".into(),
        ]
    }

    /// Records of the bulk load before each run of the "right after a bulk load" row.
    fn bulk_records(&self) -> u64 {
        self.plan.records_small / 5
    }

    pub(crate) fn latency(&mut self) -> Result<()> {
        let target = |l: &latency::Latency, ms: f64| Target { text: format!("p99 ≤ {ms} ms"), met: Some(l.p99 <= ms) };
        let [at_10k, at_100k, after_bulk, cleaning] = self.latency_labels();
        self.latency_row(&at_10k, 10_000, &[], 0, None, |l| target(l, 1.0))?;
        self.latency_row(&at_100k, 100_000, &[], 0, None, |l| target(l, 3.0))?;
        // Right after a bulk load: the page cache full of dirty data being written back.
        self.latency_row(&after_bulk, 10_000, &[], 0, Some(self.bulk_records()), |l| target(l, 1.0))?;
        self.latency_while_cleaning(&cleaning)
    }

    /// One latency row: `latency_runs` runs at `rate` on a new topic each (with `configs`,
    /// keyed when `keys` > 0), each run after a bulk load of `bulk` records to another
    /// topic if given. The row shows the worst of the runs (each percentile's highest), the
    /// lowest rate achieved, and the CPU and requests of all runs together.
    fn latency_row(
        &mut self,
        label: &str,
        rate: u64,
        configs: &[(&str, &str)],
        keys: u64,
        bulk: Option<u64>,
        target: impl Fn(&latency::Latency) -> Target,
    ) -> Result<()> {
        if !self.selected(label) {
            return Ok(());
        }
        let runs = self.plan.latency_runs;
        let mut all: Vec<latency::Latency> = Vec::new();
        let mut usage = procstat::RunUsage::default();
        let mut extra = String::new();
        for run in 1..=runs {
            self.progress.begin(&format!("latency {label}, run {run} of {runs}"));
            if let Some(records) = bulk {
                let topic = "bench-bulk-load";
                clients::create_topic(self.broker.addr(), topic, 1, &[])?;
                let config = clients::producer_config(self.broker.addr(), "1", "none", &[]);
                let load = ProduceRun { config, topic, partitions: 1, size: 100, records, max_time: self.plan.max_time };
                throughput::produce(&load, &self.payloads).context("bulk load")?;
                clients::delete_topic(self.broker.addr(), topic)?;
            }
            let topic = format!("bench-latency-{rate}-run{run}");
            clients::create_topic(self.broker.addr(), &topic, 1, configs)?;
            let meter = self.meter();
            let l = latency::run(self.broker.addr(), &topic, rate, self.plan.latency_time, keys)?;
            usage = usage.plus(&meter.stop());
            if keys > 0 {
                // Retention moved the low watermark: the cleaner really worked during the run.
                let (low, high) = clients::watermarks(self.broker.addr(), &topic)?;
                extra = format!("; low/high watermark {low}/{high} (last run)");
            }
            clients::delete_topic(self.broker.addr(), &topic)?;
            all.push(l);
        }
        let worst = latency::worst(&all);
        let mut row = Row::new(Group::Latency, label);
        row.rec_s = Some(worst.sent_rate);
        row.latency = Some(worst);
        row.requests = Some(worst.requests);
        let p99s: Vec<String> = all.iter().map(|l| report::ms(l.p99)).collect();
        row.result = Some(if runs == 1 {
            format!("{} samples{extra}", worst.samples)
        } else {
            format!("worst of {runs} runs, p99 per run {} ms; {} samples{extra}", p99s.join(" / "), worst.samples)
        });
        row.usage = Some(usage);
        row.target = Some(target(&worst));
        self.push(row)
    }

    /// The 10,000 rec/s latency run on a partition that is compacted, trimmed by retention
    /// and fsynced all the while: 1,000 keys, 256 KiB segments (a roll every ~0.2 s),
    /// compaction due at 1 % dirty, `retention.bytes` 4 MB, `flush.messages=1000` (an
    /// fsync every ~0.1 s on the produce path), with the broker's cleaner and retention
    /// checks every 200 ms. None of that work may hold the lock produce and fetch wait on.
    fn latency_while_cleaning(&mut self, label: &str) -> Result<()> {
        // Kafka 4 refuses segment.bytes below 1 MiB (KIP-1030): there segments are 1 MiB.
        let segment_bytes = if self.kind == Kind::ApacheKafka { "1048576" } else { "262144" };
        let configs = [
            ("cleanup.policy", "compact,delete"),
            ("segment.bytes", segment_bytes),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("retention.bytes", "4000000"),
            ("flush.messages", "1000"),
        ];
        self.latency_row(label, 10_000, &configs, 1_000, None, |l| Target { text: "p99 ≤ 3 ms".into(), met: Some(l.p99 <= 3.0) })
    }
}
