//! The API server pod source (upstream `config/apiserver.go`): list+watch of the pods bound to
//! this node (`fieldSelector=spec.nodeName=<node>`) through kube-runtime's watcher, which resumes
//! from the last resourceVersion, re-lists on 410 Gone and backs off on errors. Every change
//! sends the complete set of regular pods (upstream's undelta store); mirror pods are kept apart
//! in [`ApiPods`] for the status writer and the mirror pod manager. While the API server is
//! unreachable nothing is sent, so the kubelet keeps running what it has.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Annotation marking a mirror pod (its value is the static pod's config hash).
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

pub fn is_mirror_pod(pod: &Pod) -> bool {
    pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
}

fn full_name(pod: &Pod) -> (String, String) {
    (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default())
}

#[derive(Debug, Default)]
struct Inner {
    synced: bool,
    pods: HashMap<String, Pod>,
    /// (namespace, name) → mirror pod.
    mirrors: HashMap<(String, String), Pod>,
}

/// The API server's latest view of this node's pods, shared by the source, the status writer and
/// the mirror pod manager.
#[derive(Debug, Clone, Default)]
pub struct ApiPods {
    inner: Arc<RwLock<Inner>>,
}

impl ApiPods {
    /// True once the first complete list has arrived.
    pub fn synced(&self) -> bool {
        self.inner.read().is_ok_and(|i| i.synced)
    }
    /// The API's copy of a regular pod.
    pub fn pod(&self, uid: &str) -> Option<Pod> {
        self.inner.read().ok()?.pods.get(uid).cloned()
    }
    /// The mirror pod named `namespace/name`, if the API has one.
    pub fn mirror_pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.inner.read().ok()?.mirrors.get(&(namespace.to_string(), name.to_string())).cloned()
    }
    pub fn mirror_pods(&self) -> Vec<Pod> {
        self.inner.read().map(|i| i.mirrors.values().cloned().collect()).unwrap_or_default()
    }

    fn apply(&self, pod: Pod) {
        let Ok(mut i) = self.inner.write() else { return };
        if is_mirror_pod(&pod) {
            i.mirrors.insert(full_name(&pod), pod);
        } else if let Some(uid) = pod.metadata.uid.clone() {
            i.pods.insert(uid, pod);
        }
    }

    fn delete(&self, pod: &Pod) {
        let Ok(mut i) = self.inner.write() else { return };
        if is_mirror_pod(pod) {
            let key = full_name(pod);
            // Only forget the mirror pod that was deleted, not a newer one of the same name.
            if i.mirrors.get(&key).and_then(|m| m.metadata.uid.as_ref()) == pod.metadata.uid.as_ref() {
                i.mirrors.remove(&key);
            }
        } else if let Some(uid) = &pod.metadata.uid {
            i.pods.remove(uid);
        }
    }

    fn replace(&self, pods: Vec<Pod>) {
        let Ok(mut i) = self.inner.write() else { return };
        i.pods.clear();
        i.mirrors.clear();
        i.synced = true;
        drop(i);
        for p in pods {
            self.apply(p);
        }
    }

    /// The regular pods, for the source's snapshot.
    fn regular(&self) -> Vec<Pod> {
        self.inner.read().map(|i| i.pods.values().cloned().collect()).unwrap_or_default()
    }
}

/// Watches this node's pods and sends the full set of regular pods after every change.
pub struct PodSource {
    pub client: kube::Client,
    pub node: String,
    pub store: ApiPods,
}

impl PodSource {
    pub async fn run(self, tx: mpsc::Sender<Vec<Pod>>, shutdown: CancellationToken) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let config = watcher::Config::default().fields(&format!("spec.nodeName={}", self.node));
        let mut stream = watcher::watcher(api, config).default_backoff().boxed();
        let mut initial: Vec<Pod> = Vec::new();
        loop {
            let item = tokio::select! {
                _ = shutdown.cancelled() => return,
                item = stream.next() => match item { Some(i) => i, None => return },
            };
            let changed = match item {
                Ok(Event::Init) => {
                    initial.clear();
                    false
                }
                Ok(Event::InitApply(p)) => {
                    initial.push(p);
                    false
                }
                Ok(Event::InitDone) => {
                    tracing::info!(node = %self.node, pods = initial.len(), "listed pods from the API server");
                    self.store.replace(std::mem::take(&mut initial));
                    true
                }
                Ok(Event::Apply(p)) => {
                    self.store.apply(p);
                    true
                }
                Ok(Event::Delete(p)) => {
                    self.store.delete(&p);
                    true
                }
                Err(e) => {
                    tracing::warn!(node = %self.node, "watching pods from the API server: {e}");
                    false
                }
            };
            if changed && tx.send(self.store.regular()).await.is_err() {
                return;
            }
        }
    }
}
