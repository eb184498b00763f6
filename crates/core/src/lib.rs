//! rkubelet's control loops: configuration, pod sources, pod workers, the runtime manager
//! (pod spec → CRI), PLEG and pod status.

pub mod admission;
pub mod clock;
pub mod cm;
pub mod config;
pub mod container;
pub mod events;
pub mod eviction;
pub mod gc;
pub mod httpget;
pub mod kubelet;
pub mod logs;
pub mod metrics;
pub mod mirror;
pub mod node_allocatable;
pub mod pleg;
pub mod pod_dirs;
pub mod pod_workers;
pub mod prober;
pub mod quantity;
pub mod runtime;
pub mod source;
pub mod stats;
pub mod status;
pub mod status_manager;
pub mod status_sync;
pub mod volume;
