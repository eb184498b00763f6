//! Garbage collection (upstream `kubelet/container` GC): the container collector and the loop
//! that runs it every minute.

pub mod containers;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

pub use containers::{ContainerGc, ContainerGcPolicy, PodStateProvider};

use crate::events::{EventRecorder, EventType, node_event};

/// How often dead containers are collected (upstream `ContainerGCPeriod`).
pub const CONTAINER_GC_PERIOD: Duration = Duration::from_secs(60);

/// The event reason of a failed container collection (upstream `events.ContainerGCFailed`).
pub const CONTAINER_GC_FAILED: &str = "ContainerGCFailed";

/// Runs `gc` at once and then every [`CONTAINER_GC_PERIOD`] until shutdown; a failed pass is a
/// `ContainerGCFailed` warning on the node. `sources_ready` tells whether every pod source has
/// reported (the sync loop sets it).
pub async fn run_container_gc(
    gc: Arc<ContainerGc>,
    pods: Arc<dyn PodStateProvider>,
    sources_ready: Arc<AtomicBool>,
    recorder: Arc<dyn EventRecorder>,
    node: String,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(CONTAINER_GC_PERIOD);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ready = sources_ready.load(Ordering::Acquire);
        if let Err(e) = gc.garbage_collect(pods.as_ref(), ready).await {
            tracing::error!("Container garbage collection failed: {e}");
            recorder.record(node_event(&node, EventType::Warning, CONTAINER_GC_FAILED, e));
        }
    }
}
