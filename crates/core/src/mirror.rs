//! Mirror pod sync (upstream `syncPod`'s mirror section and `deleteOrphanedMirrorPods`): every
//! static pod the kubelet runs has a mirror pod in the API once the node is registered; a mirror
//! that is being deleted or mirrors an older version is replaced, one deleted by a user is
//! recreated, and mirrors of static pods that are gone are deleted. Runs on its own task so an
//! unreachable API server never blocks the sync loop.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use api::mirror::{MirrorClient, is_mirror_pod_of};
use api::node::Registered;
use api::pods::ApiPods;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::events::pod_key;

const PERIOD: Duration = Duration::from_secs(2);

pub struct MirrorSync {
    pub client: Arc<dyn MirrorClient>,
    pub pods: ApiPods,
    pub node: Registered,
}

impl MirrorSync {
    /// `static_pods` holds the static pods the kubelet currently wants.
    pub async fn run(self, mut static_pods: watch::Receiver<Vec<Arc<Pod>>>, shutdown: CancellationToken) {
        loop {
            let wanted = static_pods.borrow_and_update().clone();
            self.sync(&wanted).await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = static_pods.changed() => {}
                _ = tokio::time::sleep(PERIOD) => {}
            }
        }
    }

    async fn sync(&self, wanted: &[Arc<Pod>]) {
        // Mirror pods are only made once the API has answered a full list (otherwise every
        // mirror looks missing) and the node exists (they are owned by it).
        if !self.pods.synced() {
            return;
        }
        let node_uid = self.node.borrow().as_ref().and_then(|n| n.metadata.uid.clone());
        let mut names = HashSet::new();
        for pod in wanted {
            let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let name = pod.metadata.name.clone().unwrap_or_default();
            names.insert((ns.clone(), name.clone()));
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if let Some(m) = self.pods.mirror_pod(&ns, &name) {
                if m.metadata.deletion_timestamp.is_none() && is_mirror_pod_of(&m, pod) {
                    continue;
                }
                tracing::info!(pod = %pod_key(pod), "Deleting mirror pod because it is outdated");
                if let Err(e) = self.client.delete_mirror_pod(&ns, &name, m.metadata.uid.as_deref()).await {
                    tracing::warn!(pod = %pod_key(pod), "Failed deleting mirror pod: {e}");
                    continue;
                }
            }
            let Some(uid) = node_uid.as_deref() else { continue };
            tracing::info!(pod = %pod_key(pod), "Creating a mirror pod for static pod");
            if let Err(e) = self.client.create_mirror_pod(pod, uid).await {
                tracing::warn!(pod = %pod_key(pod), "Failed creating a mirror pod: {e}");
            }
        }
        for m in self.pods.mirror_pods() {
            let ns = m.metadata.namespace.clone().unwrap_or_default();
            let name = m.metadata.name.clone().unwrap_or_default();
            if !names.contains(&(ns.clone(), name.clone())) {
                tracing::info!(pod = %format!("{ns}/{name}"), "Deleting orphaned mirror pod");
                if let Err(e) = self.client.delete_mirror_pod(&ns, &name, m.metadata.uid.as_deref()).await {
                    tracing::warn!(pod = %format!("{ns}/{name}"), "Failed deleting orphaned mirror pod: {e}");
                }
            }
        }
    }
}
