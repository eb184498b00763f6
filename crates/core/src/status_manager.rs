//! The status manager: the last computed status of every pod the kubelet knows, for readers (the
//! debug pod list now; the API status writer later). Each pod's status is written only by that
//! pod's worker, so stores for one pod are already in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, PodStatus};

#[derive(Debug, Clone)]
struct Entry {
    pod: Arc<Pod>,
    status: PodStatus,
}

#[derive(Debug, Clone, Default)]
pub struct StatusManager {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
}

impl StatusManager {
    /// Stores a pod's new status (and the spec it was computed for).
    pub fn set(&self, pod: Arc<Pod>, status: PodStatus) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Ok(mut m) = self.inner.lock() {
            m.insert(uid, Entry { pod, status });
        }
    }

    pub fn get(&self, uid: &str) -> Option<PodStatus> {
        self.inner.lock().ok()?.get(uid).map(|e| e.status.clone())
    }

    pub fn remove(&self, uid: &str) {
        if let Ok(mut m) = self.inner.lock() {
            m.remove(uid);
        }
    }

    /// Every pod with its status, sorted by namespace/name, as a `v1.PodList`.
    pub fn pod_list(&self) -> serde_json::Value {
        let mut items: Vec<Pod> = self
            .inner
            .lock()
            .map(|m| {
                m.values()
                    .map(|e| {
                        let mut p = (*e.pod).clone();
                        p.status = Some(e.status.clone());
                        p
                    })
                    .collect()
            })
            .unwrap_or_default();
        items.sort_by(|a, b| (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name)));
        serde_json::json!({
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {},
            "items": items,
        })
    }
}
