//! A watch per referenced object (upstream's `Watch` change detection strategy, the default):
//! while at least one pod refers to a configMap or secret, a list+watch narrowed to it by
//! `metadata.name` keeps its latest version in memory, so a change reaches the kubelet as soon as
//! the API server sends it and reading it costs no request. The watch stops when the last pod
//! referring to the object goes away, or once the object is seen `immutable` (it cannot change).
//!
//! Reads of an object no pod registered fall through to a direct GET.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{ObjectError, kube_message};

/// How long a read waits for a new watch's first list before giving up (upstream waits 1 s;
/// longer here so a slow API server does not fail a pod's first start).
pub(crate) const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// What a watch knows of its object.
#[derive(Clone, Debug)]
enum State<K> {
    /// The first list has not completed; `error` is why the last attempt failed, if it did.
    Syncing { error: Option<String> },
    /// The object as last listed or watched (`None`: it does not exist).
    Synced(Option<K>),
}

struct Entry<K> {
    /// Pods referring to the object.
    refs: usize,
    state: watch::Receiver<State<K>>,
    task: JoinHandle<()>,
}

impl<K> Drop for Entry<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) struct WatchCache<K> {
    client: kube::Client,
    /// `configmap` / `secret`, for messages.
    kind: &'static str,
    is_immutable: fn(&K) -> bool,
    sync_timeout: Duration,
    entries: Mutex<HashMap<(String, String), Entry<K>>>,
}

impl<K> WatchCache<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    pub(crate) fn new(client: kube::Client, kind: &'static str, is_immutable: fn(&K) -> bool) -> Self {
        Self { client, kind, is_immutable, sync_timeout: SYNC_TIMEOUT, entries: Mutex::default() }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Entry<K>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One more pod refers to `namespace/name`: the first starts its watch.
    pub(crate) fn add_ref(&self, namespace: &str, name: &str) {
        let mut entries = self.lock();
        let entry = entries.entry((namespace.to_owned(), name.to_owned())).or_insert_with(|| {
            let (tx, rx) = watch::channel(State::Syncing { error: None });
            let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
            let task = tokio::spawn(follow(api, name.to_owned(), self.is_immutable, tx));
            Entry { refs: 0, state: rx, task }
        });
        entry.refs += 1;
    }

    /// One pod fewer refers to `namespace/name`: the last stops its watch.
    pub(crate) fn release(&self, namespace: &str, name: &str) {
        let mut entries = self.lock();
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(entry) = entries.get_mut(&key) {
            entry.refs = entry.refs.saturating_sub(1);
            if entry.refs == 0 {
                entries.remove(&key);
            }
        }
    }

    /// How many objects are watched (or were, until seen immutable).
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The watched object, waiting up to the sync timeout for a new watch's first list; `fetch`'s
    /// answer when no pod registered the object.
    pub(crate) async fn get<F, Fut>(&self, namespace: &str, name: &str, fetch: F) -> Result<Option<K>, ObjectError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<K>, ObjectError>>,
    {
        let rx = self.lock().get(&(namespace.to_owned(), name.to_owned())).map(|e| e.state.clone());
        let Some(mut rx) = rx else { return fetch().await };
        let what = || format!("{} {namespace}/{name}", self.kind);
        let failed = |message: String| ObjectError::Api {
            what: what(),
            message: format!("failed to sync {} cache: {message}", self.kind),
            source: None,
        };
        let synced_or_failed = rx.wait_for(|s| matches!(s, State::Synced(_) | State::Syncing { error: Some(_) }));
        let waited = tokio::time::timeout(self.sync_timeout, synced_or_failed).await.map(|r| r.map(|g| g.clone()));
        let state = match waited {
            Ok(Ok(state)) => state,
            // The watch ended without a first list: only when its entry is being dropped.
            Ok(Err(_)) => return fetch().await,
            Err(_) => return Err(failed("timed out waiting for the first list".into())),
        };
        match state {
            State::Synced(object) => Ok(object),
            State::Syncing { error } => Err(failed(error.unwrap_or_default())),
        }
    }
}

/// Lists and watches `name` through `api` until aborted, or until the object is immutable,
/// publishing what it learns on `tx`. Errors are retried with kube-rs's default backoff; once
/// synced, an error keeps the last known object (the API server being away changes nothing).
async fn follow<K>(api: Api<K>, name: String, is_immutable: fn(&K) -> bool, tx: watch::Sender<State<K>>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
    // Objects of a relist in progress, swapped in at its end.
    let mut listing: Option<K> = None;
    while let Some(event) = events.next().await {
        let next = match event {
            Ok(Event::Init) => {
                listing = None;
                continue;
            }
            Ok(Event::InitApply(obj)) => {
                listing = Some(obj);
                continue;
            }
            Ok(Event::InitDone) => State::Synced(listing.take()),
            Ok(Event::Apply(obj)) => State::Synced(Some(obj)),
            Ok(Event::Delete(_)) => State::Synced(None),
            Err(e) => {
                tracing::debug!(object = %name, "watch failed: {e}");
                tx.send_if_modified(|s| match s {
                    State::Syncing { error } => {
                        *error = Some(watch_error_message(&e));
                        true
                    }
                    State::Synced(_) => false,
                });
                continue;
            }
        };
        let immutable = matches!(&next, State::Synced(Some(obj)) if is_immutable(obj));
        tx.send_replace(next);
        if immutable {
            // It cannot change any more: keep this copy and stop watching, as upstream does.
            return;
        }
    }
}

fn watch_error_message(e: &watcher::Error) -> String {
    match e {
        watcher::Error::InitialListFailed(k) | watcher::Error::WatchStartFailed(k) | watcher::Error::WatchFailed(k) => {
            kube_message(k)
        }
        watcher::Error::WatchError(status) => status.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;

    /// A client whose every request fails with "connection refused" (nothing listens on port 1).
    fn unreachable_client() -> kube::Client {
        let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    fn cache() -> WatchCache<ConfigMap> {
        WatchCache::new(unreachable_client(), "configmap", |c: &ConfigMap| c.immutable == Some(true))
    }

    #[tokio::test]
    async fn watches_are_counted_per_object_and_stop_with_the_last_reference() {
        let c = cache();
        c.add_ref("ns", "a");
        c.add_ref("ns", "a");
        c.add_ref("ns", "b");
        c.add_ref("other", "a");
        assert_eq!(c.len(), 3, "one watch per namespace/name");
        c.release("ns", "a");
        assert_eq!(c.len(), 3, "still referenced once");
        c.release("ns", "a");
        assert_eq!(c.len(), 2);
        c.release("ns", "a");
        c.release("never", "seen");
        assert_eq!(c.len(), 2, "releasing what is not watched changes nothing");
    }

    #[tokio::test]
    async fn a_watch_that_cannot_list_fails_reads_with_the_cause() {
        let c = cache();
        c.add_ref("ns", "a");
        let err = c.get("ns", "a", || async { panic!("a registered object is not fetched") }).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("failed to get configmap ns/a: failed to sync configmap cache: "), "{msg}");
        assert!(msg.len() > "failed to get configmap ns/a: failed to sync configmap cache: ".len(), "a cause: {msg}");
    }

    #[tokio::test]
    async fn unregistered_objects_are_fetched() {
        let c = cache();
        let got = c.get("ns", "a", || async { Ok(Some(ConfigMap::default())) }).await.unwrap();
        assert!(got.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_list_that_never_answers_times_out() {
        let c = cache();
        // An entry whose watch never reports (no task publishes on it).
        let (tx, rx) = watch::channel(State::Syncing { error: None });
        let task = tokio::spawn(async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        c.lock().insert(("ns".into(), "a".into()), Entry { refs: 1, state: rx, task });
        let err = c.get("ns", "a", || async { Ok(None) }).await.unwrap_err();
        assert!(
            err.to_string().ends_with("failed to sync configmap cache: timed out waiting for the first list"),
            "{err}"
        );
    }
}
