//! Garbage collection: the container collector (every minute) and the image collector (every
//! five minutes), and the loops that run them.

pub mod containers;
pub mod images;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

pub use containers::{ContainerGc, ContainerGcPolicy, PodStateProvider};
pub use images::{ImageFsCapacity, ImageGc, ImageGcPolicy};

use crate::events::{EventRecorder, EventType, node_event};

/// How often dead containers are collected (upstream `ContainerGCPeriod`).
pub const CONTAINER_GC_PERIOD: Duration = Duration::from_secs(60);

/// The event reason of a failed container collection (upstream `events.ContainerGCFailed`).
pub const CONTAINER_GC_FAILED: &str = "ContainerGCFailed";

/// How often unused images are collected (upstream `ImageGCPeriod`).
pub const IMAGE_GC_PERIOD: Duration = Duration::from_secs(300);

/// The event reason of image collections failing twice in a row (upstream `events.ImageGCFailed`).
pub const IMAGE_GC_FAILED: &str = "ImageGCFailed";

/// Go's `errors.NewAggregate` text: one error alone, several in brackets.
pub(crate) fn join_errors(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

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

/// Runs the image collector: a first detection at once in which the images already there count
/// as seen long ago (retried until it succeeds), then a collection at once and every
/// [`IMAGE_GC_PERIOD`]. A failure is logged; a second one in a row is also an `ImageGCFailed`
/// warning on the node, as upstream. Nothing runs when the policy turns collection off.
pub async fn run_image_gc(
    gc: Arc<ImageGc>,
    clock: Arc<dyn crate::clock::Clock>,
    recorder: Arc<dyn EventRecorder>,
    node: String,
    shutdown: CancellationToken,
) {
    if gc.policy().is_off() {
        tracing::info!("image garbage collection is off (imageGCHighThresholdPercent 100, no imageMaximumGCAge)");
        return;
    }
    let began = clock.now();
    let mut initialized = false;
    let mut failed_before = false;
    let mut tick = tokio::time::interval(IMAGE_GC_PERIOD);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !initialized {
            match gc.detect_images(Duration::ZERO).await {
                Ok(_) => initialized = true,
                Err(e) => tracing::info!("Failed to monitor images: {e}"),
            }
        }
        match gc.garbage_collect(began).await {
            Ok(()) => failed_before = false,
            Err(e) if failed_before => {
                tracing::error!("Image garbage collection failed multiple times in a row: {e}");
                recorder.record(node_event(&node, EventType::Warning, IMAGE_GC_FAILED, e));
            }
            Err(e) => {
                tracing::error!(
                    "Image garbage collection failed once. Stats initialization may not have completed yet: {e}"
                );
                failed_before = true;
            }
        }
    }
}

/// The node-level reclaim the eviction manager asks for under disk pressure (upstream
/// `DeleteAllUnusedContainers` and `DeleteUnusedImages`).
pub struct DiskReclaimer {
    pub containers: Arc<ContainerGc>,
    pub images: Arc<ImageGc>,
    pub pods: Arc<dyn PodStateProvider>,
    pub sources_ready: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl crate::eviction::NodeReclaimer for DiskReclaimer {
    async fn reclaim_disk(&self) {
        let ready = self.sources_ready.load(Ordering::Acquire);
        if let Err(e) = self.containers.garbage_collect(self.pods.as_ref(), ready).await {
            tracing::warn!("eviction manager: failed to delete dead containers: {e}");
        }
        match self.images.delete_unused_images().await {
            Ok(freed) => tracing::info!(bytes = freed, "eviction manager: unused images deleted"),
            Err(e) => tracing::warn!("eviction manager: failed to delete unused images: {e}"),
        }
    }
}
