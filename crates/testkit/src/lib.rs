//! Test environment for rkubelet's integration tests and benches: the private node environment
//! (`scripts/node-env`), an agent process with its own root/manifest/log dirs, and waiting
//! helpers. Never used by the product.

// Test-only crate: a failed expectation is a test failure.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod agent;
pub mod apiserver;
pub mod cluster;
pub mod env;
pub mod https;
pub mod wait;

pub use agent::{Agent, AgentOptions};
pub use env::NodeEnv;
pub use wait::wait_for;
