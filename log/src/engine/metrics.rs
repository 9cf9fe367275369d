//! Prometheus metrics of the log, registered under `cairn_log_*`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone)]
pub struct Metrics {
    pub appended_records: Counter,
    pub appended_bytes: Counter,
    pub group_commits: Counter,
    pub flush_seconds: Histogram,
    pub commit_seconds: Histogram,
    pub group_records: Histogram,
    pub subscribers: Gauge,
    pub lagged_subscribers: Counter,
    pub head_offset: Gauge,
    pub commit_index: Gauge,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Metrics {
            appended_records: Counter::default(),
            appended_bytes: Counter::default(),
            group_commits: Counter::default(),
            // 25 µs .. ~0.8 s: an fsync on this machine kind is ~0.1 ms, a stalled disk seconds.
            flush_seconds: Histogram::new(exponential_buckets(25e-6, 2.0, 16)),
            commit_seconds: Histogram::new(exponential_buckets(25e-6, 2.0, 16)),
            // 1 .. 32768 records per group commit.
            group_records: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            subscribers: Gauge::default(),
            lagged_subscribers: Counter::default(),
            head_offset: Gauge::default(),
            commit_index: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("cairn_log");
        r.register(
            "appended_records",
            "Records appended durably",
            m.appended_records.clone(),
        );
        r.register(
            "appended_bytes",
            "Bytes of frames appended durably",
            m.appended_bytes.clone(),
        );
        r.register(
            "group_commits",
            "Groups proposed (one raft entry each)",
            m.group_commits.clone(),
        );
        r.register(
            "flush_seconds",
            "Time to make one raft log append durable (fsync)",
            m.flush_seconds.clone(),
        );
        r.register(
            "commit_seconds",
            "Time from proposing a group to its commit and apply",
            m.commit_seconds.clone(),
        );
        r.register(
            "group_records",
            "Records per group commit",
            m.group_records.clone(),
        );
        r.register("subscribers", "Live subscriptions", m.subscribers.clone());
        r.register(
            "lagged_subscribers",
            "Subscriptions dropped for lagging",
            m.lagged_subscribers.clone(),
        );
        r.register(
            "head_offset",
            "Offset of the last applied record",
            m.head_offset.clone(),
        );
        r.register(
            "commit_index",
            "Raft index of the last committed entry",
            m.commit_index.clone(),
        );
        m
    }
}
