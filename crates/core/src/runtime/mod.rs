//! The runtime manager and its parts: pod spec → CRI calls (upstream `kuberuntime`).

pub mod actions;
pub mod backoff;
pub mod container_config;
pub mod dns;
pub mod env;
pub mod hooks;
pub mod images;
pub mod labels;
pub mod manager;
pub mod ordering;
pub mod resources;
pub mod sandbox;
pub mod termination;

#[cfg(test)]
mod manager_tests;
