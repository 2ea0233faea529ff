//! The Arrakis operator: API types for `arrakis.dev/v1alpha1` and their reconcilers (today: NatsStream and NatsConsumer's JetStream side).

pub mod api;
pub mod claims;
pub mod conditions;
pub mod consumer;
pub mod context;
pub mod crd;
pub mod gateway_workload;
pub mod jetstream_controller;
pub mod metrics;
pub mod nats;
pub mod rebalance;
pub mod stream;
