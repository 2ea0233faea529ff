//! arrakis-worker: consumes JetStream with ack / nak / term, runs handlers (built in, or bridged
//! over HTTP to legacy services), answers Discord interactions, and keeps state in NATS KV.

pub mod config;
pub mod consumer;
pub mod dead_letters;
pub mod discord;
pub mod event;
pub mod handlers;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod outcome;
pub mod state;
