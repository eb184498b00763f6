//! Pod workers (upstream `podWorkers`): one task per pod UID that keeps only the latest desired
//! state and walks it through `SyncPod` → `SyncTerminatingPod` → `SyncTerminatedPod`, each
//! worker with its own cancellation token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// What the last `sync_pod` asks of the worker.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Sync again after this long even without an event.
    pub requeue_after: Option<Duration>,
    /// The pod reached a terminal phase (Succeeded/Failed): terminate it, never run it again.
    pub terminal: bool,
}

/// The kubelet side of a worker. Contract: each method is called by exactly one worker at a
/// time for a given UID; `sync_pod` must return promptly when `cancel` fires; errors are retried
/// by the worker with a delay.
#[async_trait]
pub trait PodSyncer: Send + Sync + 'static {
    async fn sync_pod(&self, pod: &Pod, cancel: &CancellationToken) -> SyncOutcome;
    /// Stops every container and the sandbox within `grace` seconds (None: the pod's own).
    async fn sync_terminating_pod(&self, uid: &str, pod: Option<&Pod>, grace: Option<i64>) -> Result<(), String>;
    /// Removes what is left of a stopped pod: runtime objects, volumes, directories. `removed`
    /// tells whether the pod is gone from its source (then its status is forgotten too).
    async fn sync_terminated_pod(&self, uid: &str, pod: Option<&Pod>, removed: bool) -> Result<(), String>;
}

/// The latest desired state of a pod, as handed to its worker.
#[derive(Debug, Clone)]
enum Desired {
    Run(Arc<Pod>),
    /// Kill with an optional grace override; `removed` when the pod left its source.
    Kill {
        pod: Option<Arc<Pod>>,
        grace: Option<i64>,
        removed: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkState {
    Syncing,
    Terminating,
    Terminated,
    /// Terminated but still desired (a completed pod): nothing left to do until removal.
    Completed,
    Done,
}

struct Slot {
    desired: Mutex<Desired>,
    notify: Notify,
    cancel: CancellationToken,
}

impl Slot {
    fn desired(&self) -> Option<Desired> {
        self.desired.lock().ok().map(|d| d.clone())
    }
}

/// Retry delay of a failed terminating/terminated step.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct PodWorkers {
    syncer: Arc<dyn PodSyncer>,
    workers: Arc<Mutex<HashMap<String, Arc<Slot>>>>,
    resync: Duration,
    shutdown: CancellationToken,
}

impl PodWorkers {
    pub fn new(syncer: Arc<dyn PodSyncer>, resync: Duration, shutdown: CancellationToken) -> Self {
        Self { syncer, workers: Arc::default(), resync, shutdown }
    }

    /// Hands a pod's latest spec to its worker, starting one if needed.
    pub fn update_pod(&self, pod: Arc<Pod>) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.deliver(&uid, Desired::Run(pod));
    }

    /// Asks a pod's worker to terminate it (pod removed from its source: `removed = true`).
    pub fn kill_pod(&self, uid: &str, pod: Option<Arc<Pod>>, grace: Option<i64>, removed: bool) {
        self.deliver(uid, Desired::Kill { pod, grace, removed });
    }

    /// Wakes a pod's worker (a PLEG event); no-op for unknown pods.
    pub fn wake(&self, uid: &str) {
        if let Some(slot) = self.workers.lock().ok().and_then(|w| w.get(uid).cloned()) {
            slot.notify.notify_one();
        }
    }

    /// Wakes every worker (periodic resync).
    pub fn wake_all(&self) {
        if let Ok(w) = self.workers.lock() {
            for slot in w.values() {
                slot.notify.notify_one();
            }
        }
    }

    pub fn is_known(&self, uid: &str) -> bool {
        self.workers.lock().is_ok_and(|w| w.contains_key(uid))
    }

    pub fn len(&self) -> usize {
        self.workers.lock().map(|w| w.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn deliver(&self, uid: &str, desired: Desired) {
        let Ok(mut workers) = self.workers.lock() else { return };
        if let Some(slot) = workers.get(uid) {
            let kill = matches!(desired, Desired::Kill { .. });
            if let Ok(mut d) = slot.desired.lock() {
                // A pod being killed is never revived by a late update (UIDs do not come back).
                if matches!(*d, Desired::Kill { .. }) && !kill {
                    return;
                }
                *d = desired;
            }
            if kill {
                // Abandon a sync in flight: termination must not wait behind it.
                slot.cancel.cancel();
            }
            slot.notify.notify_one();
            return;
        }
        let slot =
            Arc::new(Slot { desired: Mutex::new(desired), notify: Notify::new(), cancel: self.shutdown.child_token() });
        workers.insert(uid.to_string(), slot.clone());
        let worker = Worker { uid: uid.to_string(), slot, syncer: self.syncer.clone(), resync: self.resync };
        let workers_map = self.workers.clone();
        let shutdown = self.shutdown.clone();
        let uid = uid.to_string();
        let span = tracing::info_span!("pod_worker", pod_uid = %uid);
        tokio::spawn(
            async move {
                let finished = worker.run(shutdown).await;
                if finished && let Ok(mut w) = workers_map.lock() {
                    w.remove(&uid);
                }
            }
            .instrument(span),
        );
    }
}

struct Worker {
    uid: String,
    slot: Arc<Slot>,
    syncer: Arc<dyn PodSyncer>,
    resync: Duration,
}

impl Worker {
    /// Runs until the pod is fully terminated and removed (true) or shutdown (false).
    async fn run(self, shutdown: CancellationToken) -> bool {
        let mut state = WorkState::Syncing;
        loop {
            if shutdown.is_cancelled() {
                return false;
            }
            let (next, wait) = self.step(state).await;
            state = next;
            if state == WorkState::Done {
                return true;
            }
            if let Some(wait) = wait {
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = self.slot.notify.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }

    /// One transition; returns the next state and how long to wait for a wake-up first (None:
    /// go on at once).
    async fn step(&self, state: WorkState) -> (WorkState, Option<Duration>) {
        let Some(desired) = self.slot.desired() else { return (WorkState::Done, None) };
        match (state, desired) {
            (WorkState::Syncing, Desired::Run(pod)) => {
                let cancel = self.slot.cancel.child_token();
                let out = self.syncer.sync_pod(&pod, &cancel).await;
                if out.terminal {
                    return (WorkState::Terminating, None);
                }
                let wait = out.requeue_after.map_or(self.resync, |r| r.min(self.resync));
                (WorkState::Syncing, Some(wait))
            }
            (WorkState::Syncing | WorkState::Completed, Desired::Kill { .. }) => (WorkState::Terminating, None),
            (WorkState::Terminating, d) => {
                let (pod, grace) = match &d {
                    Desired::Run(p) => (Some(p.clone()), None),
                    Desired::Kill { pod, grace, .. } => (pod.clone(), *grace),
                };
                match self.syncer.sync_terminating_pod(&self.uid, pod.as_deref(), grace).await {
                    Ok(()) => (WorkState::Terminated, None),
                    Err(e) => {
                        tracing::warn!(pod_uid = %self.uid, "terminating pod: {e}");
                        (WorkState::Terminating, Some(RETRY))
                    }
                }
            }
            (WorkState::Terminated, d) => {
                let (pod, removed) = match &d {
                    Desired::Run(p) => (Some(p.clone()), false),
                    Desired::Kill { pod, removed, .. } => (pod.clone(), *removed),
                };
                match self.syncer.sync_terminated_pod(&self.uid, pod.as_deref(), removed).await {
                    Ok(()) if removed => (WorkState::Done, None),
                    Ok(()) => (WorkState::Completed, Some(self.resync)),
                    Err(e) => {
                        tracing::warn!(pod_uid = %self.uid, "cleaning up terminated pod: {e}");
                        (WorkState::Terminated, Some(RETRY))
                    }
                }
            }
            (WorkState::Completed, Desired::Run(_)) => (WorkState::Completed, Some(self.resync)),
            (WorkState::Done, _) => (WorkState::Done, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[derive(Default)]
    struct Recording {
        log: Mutex<Vec<String>>,
        terminal_after: Mutex<Option<usize>>,
    }

    #[async_trait]
    impl PodSyncer for Recording {
        async fn sync_pod(&self, pod: &Pod, _cancel: &CancellationToken) -> SyncOutcome {
            let mut log = self.log.lock().expect("lock");
            log.push(format!("sync {}", pod.metadata.name.clone().unwrap_or_default()));
            let syncs = log.iter().filter(|l| l.starts_with("sync ")).count();
            let terminal = self.terminal_after.lock().expect("lock").is_some_and(|n| syncs >= n);
            SyncOutcome { requeue_after: None, terminal }
        }
        async fn sync_terminating_pod(&self, uid: &str, _pod: Option<&Pod>, grace: Option<i64>) -> Result<(), String> {
            self.log.lock().expect("lock").push(format!("terminating {uid} {grace:?}"));
            Ok(())
        }
        async fn sync_terminated_pod(&self, uid: &str, _pod: Option<&Pod>, removed: bool) -> Result<(), String> {
            self.log.lock().expect("lock").push(format!("terminated {uid} {removed}"));
            Ok(())
        }
    }

    fn pod(uid: &str, name: &str) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta { uid: Some(uid.into()), name: Some(name.into()), ..Default::default() },
            ..Default::default()
        })
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn latest_spec_wins_and_kill_walks_to_done() {
        let rec = Arc::new(Recording::default());
        let w = PodWorkers::new(rec.clone(), Duration::from_secs(60), CancellationToken::new());
        w.update_pod(pod("u1", "v1"));
        w.update_pod(pod("u1", "v2"));
        w.update_pod(pod("u1", "v3"));
        settle().await;
        let log = rec.log.lock().expect("lock").clone();
        assert_eq!(log.last().map(String::as_str), Some("sync v3"), "{log:?}");
        assert!(!log.contains(&"sync v2".to_string()), "intermediate specs are skipped: {log:?}");
        w.kill_pod("u1", None, Some(5), true);
        settle().await;
        let log = rec.log.lock().expect("lock").clone();
        assert!(log.ends_with(&["terminating u1 Some(5)".to_string(), "terminated u1 true".to_string()]), "{log:?}");
        assert!(!w.is_known("u1"), "worker gone after removal");
        w.update_pod(pod("u2", "x"));
        settle().await;
        assert!(w.is_known("u2"));
    }

    #[tokio::test(start_paused = true)]
    async fn terminal_pod_is_terminated_but_kept_until_removed() {
        let rec = Arc::new(Recording::default());
        *rec.terminal_after.lock().expect("lock") = Some(1);
        let w = PodWorkers::new(rec.clone(), Duration::from_secs(60), CancellationToken::new());
        w.update_pod(pod("u1", "done"));
        settle().await;
        assert_eq!(
            rec.log.lock().expect("lock").clone(),
            vec!["sync done", "terminating u1 None", "terminated u1 false"]
        );
        assert!(w.is_known("u1"));
        w.update_pod(pod("u1", "again"));
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(
            !rec.log.lock().expect("lock").contains(&"sync again".to_string()),
            "a terminated UID never runs again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn resync_after_requeue_interval() {
        let rec = Arc::new(Recording::default());
        let w = PodWorkers::new(rec.clone(), Duration::from_secs(60), CancellationToken::new());
        w.update_pod(pod("u1", "p"));
        settle().await;
        assert_eq!(rec.log.lock().expect("lock").len(), 1);
        tokio::time::sleep(Duration::from_secs(61)).await;
        settle().await;
        assert_eq!(rec.log.lock().expect("lock").len(), 2, "periodic resync");
        w.wake("u1");
        settle().await;
        assert_eq!(rec.log.lock().expect("lock").len(), 3, "woken by an event");
    }
}
