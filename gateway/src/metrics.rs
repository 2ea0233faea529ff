//! Prometheus metrics, with the seed's names (S-4.5) plus what operators need.

use arrakis_support::registered;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

pub struct Metrics {
    registry: Registry,
    pub events_received: IntCounterVec,
    pub events_routed: IntCounterVec,
    pub route_failures: IntCounterVec,
    pub route_duration: HistogramVec,
    pub shards_ready: IntGaugeVec,
    pub guilds: IntGaugeVec,
    pub nats_connected: IntGauge,
    pub publish_inflight: IntGauge,
    pub publish_ack_latency: Histogram,
    pub sessions: IntCounterVec,
    pub buffer_full_closes: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            registered(&registry, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            registered(&registry, IntGaugeVec::new(Opts::new(name, help), labels))
        };
        let gauge = |name: &str, help: &str| registered(&registry, IntGauge::new(name, help));
        let latency_buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ];
        let route_duration = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "gateway_event_route_duration_seconds",
                    "From receiving an event to its JetStream ack",
                )
                .buckets(latency_buckets.clone()),
                &["shard_id"],
            ),
        );
        let publish_ack_latency = registered(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "gateway_publish_ack_seconds",
                    "From publishing to the JetStream ack",
                )
                .buckets(latency_buckets),
            ),
        );
        Metrics {
            events_received: counter(
                "gateway_events_received_total",
                "Dispatches received from Discord",
                &["shard_id", "event_type"],
            ),
            events_routed: counter(
                "gateway_events_routed_total",
                "Events acked by JetStream",
                &["shard_id"],
            ),
            route_failures: counter(
                "gateway_route_failures_total",
                "Publish attempts that failed and were retried",
                &["shard_id"],
            ),
            route_duration,
            shards_ready: gauge_vec(
                "gateway_shards_ready",
                "Shards past READY or RESUMED",
                &["pool_id"],
            ),
            guilds: gauge_vec("gateway_guilds_total", "Guilds per shard", &["shard_id"]),
            nats_connected: gauge("gateway_nats_connected", "1 while connected to NATS"),
            publish_inflight: gauge(
                "gateway_publish_inflight",
                "Events published and not yet acked (the buffer)",
            ),
            publish_ack_latency,
            sessions: counter(
                "gateway_sessions_total",
                "Sessions started (identify) and resumed, per shard",
                &["shard_id", "kind"],
            ),
            buffer_full_closes: counter(
                "gateway_buffer_full_closes_total",
                "Sessions closed resumably because the publish buffer was full",
                &["shard_id"],
            ),
            registry,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        arrakis_support::render(&self.registry)
    }
}

/// The per-shard series of the publish path, resolved once instead of per event.
#[derive(Clone)]
pub struct ShardMetrics {
    pub routed: IntCounter,
    pub failures: IntCounter,
    pub route_duration: Histogram,
}

impl Metrics {
    pub fn for_shard(&self, shard: &str) -> ShardMetrics {
        ShardMetrics {
            routed: self.events_routed.with_label_values(&[shard]),
            failures: self.route_failures.with_label_values(&[shard]),
            route_duration: self.route_duration.with_label_values(&[shard]),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
