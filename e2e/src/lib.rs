//! Test support for Arrakis's end-to-end suites: real servers, started and stopped by the tests.
//!
//! - [`nats::NatsServer`]: a nats-server with JetStream on a free port and a temporary store;
//! - [`cluster`]: a client for the local control plane, the CRDs, a temporary namespace per test;
//! - [`wait`]: bounded waits that print the objects' state when they give up.

pub mod cluster;
pub mod http;
pub mod nats;
pub mod net;
pub mod objects;
pub mod wait;
