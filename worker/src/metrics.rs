//! Prometheus metrics, with the seed's names (S-5.4) plus deliveries, dead letters and defer latency.

use arrakis_support::registered;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

pub struct Metrics {
    registry: Registry,
    /// status: ack, nak, term, duplicate.
    pub processed: IntCounterVec,
    pub duration: HistogramVec,
    pub lag: IntGaugeVec,
    /// Messages seen on a delivery after their first.
    pub redeliveries: IntCounterVec,
    pub dead_letters: IntCounterVec,
    /// From the interaction's event timestamp to Discord accepting the deferral.
    pub defer_latency: HistogramVec,
    /// outcome: deferred, already, expired, failed.
    pub defers: IntCounterVec,
    pub unrouted: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            registered(&registry, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            registered(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(buckets),
                    &["consumer"],
                ),
            )
        };
        Metrics {
            processed: counter(
                "nats_consumer_messages_processed_total",
                "Messages finished, by how: ack, nak, term, duplicate",
                &["consumer", "status"],
            ),
            duration: histogram(
                "nats_consumer_message_processing_duration_seconds",
                "From a message's arrival to its ack, nak or term",
                vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ],
            ),
            lag: registered(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "nats_consumer_lag",
                        "Messages in the stream the consumer has not been given yet",
                    ),
                    &["consumer"],
                ),
            ),
            redeliveries: counter(
                "nats_consumer_redeliveries_total",
                "Deliveries after a message's first",
                &["consumer"],
            ),
            dead_letters: counter(
                "nats_consumer_dead_letters_total",
                "Messages sent to the dead-letter stream",
                &["consumer", "reason"],
            ),
            defer_latency: histogram(
                "worker_interaction_defer_seconds",
                "From the interaction event's timestamp to Discord accepting the deferral (limit: 3 s)",
                vec![0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0],
            ),
            defers: counter(
                "worker_interaction_defers_total",
                "Deferrals, by result: deferred, already, expired, failed",
                &["consumer", "result"],
            ),
            unrouted: counter(
                "worker_unrouted_total",
                "Messages no route matched",
                &["consumer", "route"],
            ),
            registry,
        }
    }

    pub fn render(&self) -> String {
        arrakis_support::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
