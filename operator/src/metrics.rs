//! The operator's Prometheus metrics: reconciles per kind and result, and how long they take.

use arrakis_support::registered;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

pub struct Metrics {
    registry: Registry,
    /// result: ok or error.
    pub reconciles: IntCounterVec,
    pub duration: HistogramVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        Metrics {
            reconciles: registered(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "arrakis_operator_reconciles_total",
                        "Reconcile passes, by kind and result",
                    ),
                    &["kind", "result"],
                ),
            ),
            duration: registered(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "arrakis_operator_reconcile_duration_seconds",
                        "How long a reconcile pass takes",
                    )
                    .buckets(vec![
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ]),
                    &["kind"],
                ),
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
