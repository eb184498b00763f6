//! The status manager: the last computed status of every pod the kubelet knows, for readers (the
//! debug pod list, and the API status syncer in `status_sync`). Each pod's status is written only
//! by that pod's worker, so stores for one pod are already in order; every store bumps the entry's
//! version and wakes the syncer, which writes only versions newer than the last it wrote.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use tokio::sync::Notify;

/// One pod's latest status as the syncer sees it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub pod: Arc<Pod>,
    pub status: PodStatus,
    /// Bumped on every store; the syncer remembers the last version it wrote.
    pub version: u64,
    /// The pod's containers are gone and its volumes torn down (upstream: the pod worker's
    /// `SyncTerminatedPod` finished), so its API object may be deleted.
    pub terminated: bool,
}

#[derive(Debug, Clone, Default)]
pub struct StatusManager {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
    changed: Arc<Notify>,
    next_version: Arc<std::sync::atomic::AtomicU64>,
}

impl StatusManager {
    /// Stores a pod's new status (and the spec it was computed for).
    pub fn set(&self, pod: Arc<Pod>, status: PodStatus) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let version = self.next_version.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if let Ok(mut m) = self.inner.lock() {
            let terminated = m.get(&uid).is_some_and(|e| e.terminated);
            m.insert(uid, Entry { pod, status, version, terminated });
        }
        self.changed.notify_one();
    }

    /// Records that a pod finished terminating (containers stopped, volumes torn down).
    pub fn mark_terminated(&self, uid: &str) {
        if let Ok(mut m) = self.inner.lock()
            && let Some(e) = m.get_mut(uid)
        {
            e.terminated = true;
        }
        self.changed.notify_one();
    }

    /// Every entry (for the syncer).
    pub fn entries(&self) -> Vec<(String, Entry)> {
        self.inner.lock().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
    }

    /// Resolves when a status was stored since the last call (coalescing many stores into one wake-up).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The pod named `namespace/name` (upstream `GetPodByName`); a terminated entry only when
    /// no live pod has the name.
    pub fn find(&self, namespace: &str, name: &str) -> Option<Entry> {
        let m = self.inner.lock().ok()?;
        let mut hits: Vec<&Entry> = m
            .values()
            .filter(|e| {
                e.pod.metadata.namespace.as_deref().unwrap_or("default") == namespace
                    && e.pod.metadata.name.as_deref() == Some(name)
            })
            .collect();
        hits.sort_by_key(|e| (e.terminated, std::cmp::Reverse(e.version)));
        hits.first().map(|e| (*e).clone())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, ns: Option<&str>, name: &str) -> Arc<Pod> {
        let mut p = Pod::default();
        p.metadata.uid = Some(uid.into());
        p.metadata.namespace = ns.map(str::to_string);
        p.metadata.name = Some(name.into());
        Arc::new(p)
    }

    #[test]
    fn find_prefers_the_live_pod_of_a_reused_name() {
        let m = StatusManager::default();
        m.set(pod("old", Some("ns"), "web"), PodStatus { phase: Some("Succeeded".into()), ..Default::default() });
        m.mark_terminated("old");
        m.set(pod("new", Some("ns"), "web"), PodStatus { phase: Some("Running".into()), ..Default::default() });
        m.set(pod("other", None, "web"), PodStatus::default());
        assert_eq!(m.find("ns", "web").and_then(|e| e.pod.metadata.uid.clone()).as_deref(), Some("new"));
        assert_eq!(m.find("default", "web").and_then(|e| e.pod.metadata.uid.clone()).as_deref(), Some("other"));
        assert!(m.find("ns", "api").is_none());
    }
}
