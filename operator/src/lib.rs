//! The Arrakis operator: API types for `arrakis.dev/v1alpha1` and their reconcilers (today: NatsStream).

pub mod api;
pub mod conditions;
pub mod context;
pub mod crd;
pub mod nats;
pub mod rebalance;
pub mod stream;
