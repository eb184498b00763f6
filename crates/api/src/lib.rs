//! The API server side of rkubelet over kube-rs: the client (kubeconfig, QPS/burst, user agent),
//! and the loops that talk to the API server. Nothing here runs a pod; `core` decides, this crate
//! reads and writes API objects.

pub mod bootstrap;
pub mod client;
pub mod events;
pub mod lease;
pub mod mirror;
pub mod node;
pub mod node_status;
pub mod objects;
pub mod patch;
pub mod pods;
pub mod status;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The wall-clock time as an API timestamp (lease renewals, condition and event times).
pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}
