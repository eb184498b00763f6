//! The API server side of rkubelet over kube-rs: the client (kubeconfig, QPS/burst, user agent),
//! and the loops that talk to the API server. Nothing here runs a pod; `core` decides, this crate
//! reads and writes API objects.

pub mod bootstrap;
pub mod client;
pub mod events;
pub mod lease;
pub mod mirror;
pub mod node;
pub mod objects;
pub mod pods;
pub mod status;
