//! Writes pod statuses to the API server (upstream `status_manager.go` `syncBatch`/`syncPod`):
//! woken by every status store and resynced every 10 s; each pod's latest status is diffed against
//! the API's copy (from the pod watch) and patched when they differ, so a write is never older than
//! the last one and a failed write is retried at the next resync. Static pods' statuses go to
//! their mirror pods. A terminated pod that carries a deletionTimestamp is deleted for good.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use api::mirror::is_mirror_pod_of;
use api::pods::ApiPods;
use api::status::PodStatusWriter;
use k8s_openapi::api::core::v1::Pod;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::events::pod_key;
use crate::source::is_static_pod;
use crate::status::merge_with_api_status;
use crate::status_manager::{Entry, StatusManager};

/// Upstream `syncPeriod` of the status manager.
pub const STATUS_RESYNC: Duration = Duration::from_secs(10);

pub struct StatusSyncer {
    pub statuses: StatusManager,
    pub pods: ApiPods,
    pub writer: Arc<dyn PodStatusWriter>,
}

impl StatusSyncer {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut written: HashMap<String, u64> = HashMap::new();
        let mut resync = tokio::time::interval(STATUS_RESYNC);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let full = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.statuses.changed() => false,
                _ = resync.tick() => true,
            };
            self.sync(&mut written, full).await;
        }
    }

    /// The API object a pod's status belongs to: the pod itself, or a static pod's mirror pod.
    fn api_pod(&self, uid: &str, pod: &Pod) -> Option<Pod> {
        if is_static_pod(pod) {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            self.pods.mirror_pod(ns, name).filter(|m| is_mirror_pod_of(m, pod))
        } else {
            self.pods.pod(uid)
        }
    }

    async fn sync(&self, written: &mut HashMap<String, u64>, full: bool) {
        let entries = self.statuses.entries();
        written.retain(|uid, _| entries.iter().any(|(u, _)| u == uid));
        for (uid, e) in entries {
            let fresh = written.get(&uid) != Some(&e.version);
            if !fresh && !full && !e.terminated {
                continue;
            }
            // No API object (yet): a mirror pod not created yet, or a pod already deleted.
            let Some(api_pod) = self.api_pod(&uid, &e.pod) else { continue };
            if self.write(&uid, &e, &api_pod).await {
                written.insert(uid.clone(), e.version);
            }
        }
    }

    async fn write(&self, uid: &str, e: &Entry, api_pod: &Pod) -> bool {
        let old = api_pod.status.clone().unwrap_or_default();
        let new = merge_with_api_status(&e.status, &old);
        let ok = match self.writer.patch_status(api_pod, &old, &new).await {
            Ok(sent) => {
                if sent {
                    tracing::debug!(pod = %pod_key(&e.pod), pod_uid = %uid, "status patched");
                }
                true
            }
            Err(err) => {
                tracing::warn!(pod = %pod_key(&e.pod), "Failed to update status for pod: {err}");
                false
            }
        };
        let deleting = api_pod.metadata.deletion_timestamp.is_some();
        if ok && e.terminated && deleting && !is_static_pod(&e.pod) {
            let ns = api_pod.metadata.namespace.as_deref().unwrap_or("default");
            let name = api_pod.metadata.name.as_deref().unwrap_or_default();
            match self.writer.delete_pod(ns, name, uid).await {
                Ok(()) => {
                    tracing::info!(pod = %pod_key(&e.pod), pod_uid = %uid, "Pod fully terminated and removed from the API")
                }
                Err(err) => tracing::warn!(pod = %pod_key(&e.pod), "deleting terminated pod: {err}"),
            }
        }
        ok
    }
}
