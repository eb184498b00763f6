//! The prober (upstream `pkg/kubelet/prober`): one worker task per (pod, container, probe type)
//! for liveness, readiness and startup probes, their results per container instance, and the
//! counters behind `prober_probe_total`.
//!
//! Workers are made when a pod is added and live as long as the pod: each follows its
//! container's instances through the status manager (a new container ID resets the result to
//! the probe type's initial value), idles while the container is not running, and stops when
//! the pod is removed, terminates (liveness and startup first, as upstream's
//! `StopLivenessAndStartup`) or reaches a terminal phase. Results that change are sent on one
//! channel; the sync loop wakes the pod's worker for each, which then kills containers that
//! failed liveness/startup and recomputes `ready`/`started`.

mod grpc;
mod probe;
mod worker;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::events::EventRecorder;
use crate::status_manager::StatusManager;

pub use probe::{Handlers, Outcome, RuntimeHandlers};

/// The three probe types; `Display` is upstream's `probeType.String()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeType {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeType::Liveness => "Liveness",
            ProbeType::Readiness => "Readiness",
            ProbeType::Startup => "Startup",
        }
    }

    /// The probe of this type in a container's spec.
    pub fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            ProbeType::Liveness => c.liveness_probe.as_ref(),
            ProbeType::Readiness => c.readiness_probe.as_ref(),
            ProbeType::Startup => c.startup_probe.as_ref(),
        }
    }

    /// Upstream's worker `initialValue`: readiness starts failed, liveness succeeded, startup
    /// unknown.
    fn initial(self) -> ProbeResult {
        match self {
            ProbeType::Liveness => ProbeResult::Success,
            ProbeType::Readiness => ProbeResult::Failure,
            ProbeType::Startup => ProbeResult::Unknown,
        }
    }
}

impl std::fmt::Display for ProbeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A probe result as the results managers keep it (upstream `results.Result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    Unknown,
    Success,
    Failure,
}

/// A changed result of one container instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub probe: ProbeType,
    /// Bare CRI container id.
    pub container_id: String,
    pub result: ProbeResult,
    pub pod_uid: String,
}

/// Results of one probe type per container instance (upstream `results.Manager`).
#[derive(Debug)]
pub struct ResultsManager {
    probe: ProbeType,
    cache: Mutex<HashMap<String, ProbeResult>>,
    updates: mpsc::UnboundedSender<Update>,
}

impl ResultsManager {
    fn new(probe: ProbeType, updates: mpsc::UnboundedSender<Update>) -> Self {
        Self { probe, cache: Mutex::default(), updates }
    }

    pub fn get(&self, container_id: &str) -> Option<ProbeResult> {
        self.cache.lock().ok()?.get(container_id).copied()
    }

    /// Stores a result; a change is sent as an [`Update`].
    pub fn set(&self, container_id: &str, result: ProbeResult, pod_uid: &str) {
        let changed = match self.cache.lock() {
            Ok(mut c) => c.insert(container_id.to_string(), result) != Some(result),
            Err(_) => false,
        };
        if changed {
            // Nobody listening (tests, shutdown) is fine: the cache is what readers use.
            let _ = self.updates.send(Update {
                probe: self.probe,
                container_id: container_id.to_string(),
                result,
                pod_uid: pod_uid.to_string(),
            });
        }
    }

    pub fn remove(&self, container_id: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove(container_id);
        }
    }
}

/// The three results managers, shared by the prober (writer), the runtime manager (kills on
/// liveness/startup failure) and the status computation (`ready`, `started`).
#[derive(Debug, Clone)]
pub struct ProbeResults {
    pub liveness: Arc<ResultsManager>,
    pub readiness: Arc<ResultsManager>,
    pub startup: Arc<ResultsManager>,
}

impl ProbeResults {
    /// New managers and the receiving end of their updates.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Update>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let results = Self {
            liveness: Arc::new(ResultsManager::new(ProbeType::Liveness, tx.clone())),
            readiness: Arc::new(ResultsManager::new(ProbeType::Readiness, tx.clone())),
            startup: Arc::new(ResultsManager::new(ProbeType::Startup, tx)),
        };
        (results, rx)
    }

    /// Managers whose updates nobody reads (tests, components without probes).
    pub fn detached() -> Self {
        Self::new().0
    }

    pub fn of(&self, probe: ProbeType) -> &Arc<ResultsManager> {
        match probe {
            ProbeType::Liveness => &self.liveness,
            ProbeType::Readiness => &self.readiness,
            ProbeType::Startup => &self.startup,
        }
    }

    /// The probe a running container instance failed and must be killed for (liveness first,
    /// then startup, as upstream's `computePodActions`).
    pub fn failed_probe(&self, container_id: &str) -> Option<ProbeType> {
        [ProbeType::Liveness, ProbeType::Startup]
            .into_iter()
            .find(|p| self.of(*p).get(container_id) == Some(ProbeResult::Failure))
    }
}

/// Labels of one `prober_probe_total` series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CounterKey {
    pub probe_type: &'static str,
    /// `successful`, `failed` or `unknown`.
    pub result: &'static str,
    pub container: String,
    pub pod: String,
    pub namespace: String,
    pub pod_uid: String,
}

/// Probe result counters (upstream `ProberResults`); a worker's series go away with it.
#[derive(Debug, Default)]
pub struct ProbeCounters(Mutex<BTreeMap<CounterKey, u64>>);

impl ProbeCounters {
    fn inc(&self, key: CounterKey) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(key).or_insert(0) += 1;
        }
    }
    fn forget(&self, probe_type: &str, pod_uid: &str, container: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|k, _| !(k.probe_type == probe_type && k.pod_uid == pod_uid && k.container == container));
        }
    }
    /// Every series with its count.
    pub fn snapshot(&self) -> Vec<(CounterKey, u64)> {
        self.0.lock().map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect()).unwrap_or_default()
    }
}

type WorkerKey = (String, String, ProbeType);

struct WorkerHandle {
    /// Tells this worker from a later one for the same key.
    id: u64,
    stop: CancellationToken,
    trigger: Arc<Notify>,
}

/// What workers share.
pub(crate) struct Shared {
    results: ProbeResults,
    statuses: StatusManager,
    handlers: Arc<dyn Handlers>,
    recorder: Arc<dyn EventRecorder>,
    clock: Arc<dyn Clock>,
    counters: Arc<ProbeCounters>,
    workers: Mutex<HashMap<WorkerKey, WorkerHandle>>,
    next_id: std::sync::atomic::AtomicU64,
    /// When the prober started: workers started within one period of it wait a random part of
    /// their period first, so probes after a kubelet restart do not all fire at once.
    started: Instant,
    /// The same start as wall-clock time since the epoch, less upstream's 10 s
    /// `kubeletRestartGracePeriod`: a container running since before this was adopted from
    /// before the kubelet started, and keeps its readiness until probed.
    restart_cutoff: Duration,
}

/// Upstream's `kubeletRestartGracePeriod`.
const RESTART_GRACE: Duration = Duration::from_secs(10);

/// The prober manager (upstream `prober.Manager`).
#[derive(Clone)]
pub struct ProbeManager(Arc<Shared>);

impl ProbeManager {
    pub fn new(
        results: ProbeResults,
        statuses: StatusManager,
        handlers: Arc<dyn Handlers>,
        recorder: Arc<dyn EventRecorder>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self(Arc::new(Shared {
            results,
            statuses,
            handlers,
            recorder,
            counters: Arc::default(),
            workers: Mutex::default(),
            next_id: std::sync::atomic::AtomicU64::new(0),
            started: Instant::now(),
            restart_cutoff: clock.now().saturating_sub(RESTART_GRACE),
            clock,
        }))
    }

    pub fn results(&self) -> &ProbeResults {
        &self.0.results
    }

    pub fn counters(&self) -> Arc<ProbeCounters> {
        self.0.counters.clone()
    }

    /// Starts the workers of a new pod: one per probe of each regular container and each
    /// restartable init container (sidecar). A worker that already exists is kept.
    pub fn add_pod(&self, pod: &Arc<Pod>) {
        let Some(spec) = pod.spec.as_ref() else { return };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let sidecars = spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
        for c in spec.containers.iter().chain(sidecars) {
            for probe in [ProbeType::Startup, ProbeType::Readiness, ProbeType::Liveness] {
                let Some(p) = probe.of(c) else { continue };
                let key = (uid.clone(), c.name.clone(), probe);
                let Ok(mut workers) = self.0.workers.lock() else { return };
                if workers.contains_key(&key) {
                    continue;
                }
                let id = self.0.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let handle = WorkerHandle { id, stop: CancellationToken::new(), trigger: Arc::new(Notify::new()) };
                let w = worker::Worker::new(pod.clone(), c.clone(), p.clone(), probe);
                tokio::spawn(w.run(self.0.clone(), handle.stop.clone(), handle.trigger.clone(), id));
                workers.insert(key, handle);
            }
        }
    }

    /// Stops every worker of a pod (removed from its source).
    pub fn remove_pod(&self, uid: &str) {
        self.stop(|(u, _, _)| u == uid);
    }

    /// Stops the liveness and startup workers of a terminating pod (its containers are being
    /// stopped on purpose).
    pub fn stop_liveness_and_startup(&self, uid: &str) {
        self.stop(|(u, _, p)| u == uid && *p != ProbeType::Readiness);
    }

    /// Stops the workers of pods not in `desired` (housekeeping).
    pub fn cleanup_pods(&self, desired: &dyn Fn(&str) -> bool) {
        self.stop(|(u, _, _)| !desired(u));
    }

    /// Stops the chosen workers. They leave the map at once, so a pod added again right after
    /// gets new workers; each stopped one clears its result as it exits.
    fn stop(&self, which: impl Fn(&WorkerKey) -> bool) {
        if let Ok(mut workers) = self.0.workers.lock() {
            workers.retain(|k, h| {
                let stop = which(k);
                if stop {
                    h.stop.cancel();
                }
                !stop
            });
        }
    }

    /// Runs at once the readiness probes of a pod's running containers that are not ready —
    /// no result yet, or a failure (upstream triggers them from `UpdatePodStatus` on every
    /// status it computes) — so a container becomes ready without waiting a full period.
    pub fn trigger_pending_readiness(&self, uid: &str, running: &[(String, String)]) {
        let Ok(workers) = self.0.workers.lock() else { return };
        for (name, id) in running {
            if self.0.results.readiness.get(id) == Some(ProbeResult::Success) {
                continue;
            }
            if let Some(h) = workers.get(&(uid.to_string(), name.clone(), ProbeType::Readiness)) {
                h.trigger.notify_one();
            }
        }
    }

    /// Wall-clock time since the epoch before which a running container predates the kubelet's
    /// start (the start less 10 s, upstream's `kubeletRestartGracePeriod`).
    pub fn restart_cutoff(&self) -> Duration {
        self.0.restart_cutoff
    }

    /// Whether a worker of this kind runs for the container (upstream `getWorker`).
    pub fn has_worker(&self, uid: &str, container: &str, probe: ProbeType) -> bool {
        self.0.workers.lock().is_ok_and(|w| w.contains_key(&(uid.to_string(), container.to_string(), probe)))
    }

    /// Number of running workers (tests, metrics).
    pub fn worker_count(&self) -> usize {
        self.0.workers.lock().map(|w| w.len()).unwrap_or(0)
    }
}
