//! The kubelet: wires pod sources, pod workers, the runtime manager, PLEG and the status manager,
//! and runs the sync loop (upstream `syncLoop`/`syncLoopIteration`): source updates, PLEG events
//! and housekeeping, each handled without blocking on pod work.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cri::RuntimeService;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::admission::{self, Rejection};
use crate::clock::Clock;
use crate::container::{PodRuntimeStatus, SyncReasons};
use crate::events::{EventRecorder, EventType};
use crate::metrics::KubeletMetrics;
use crate::pleg::PlegEvent;
use crate::pod_dirs::PodDirs;
use crate::pod_workers::{PodSyncer, PodWorkers, SyncOutcome};
use crate::prober::{ProbeManager, ProbeResult, ProbeType, ResultsManager, RuntimeHandlers, Update};
use crate::runtime::labels;
use crate::runtime::manager::RuntimeManager;
use crate::runtime::sandbox::pod_logs_dir;
use crate::source::{FILE_SOURCE, PodConfig, PodOp, PodUpdate, SourceSnapshot, is_static_pod};
use crate::status::{ProbeView, StatusInput, compute_pod_status, is_terminal};
use crate::status_manager::StatusManager;
use crate::volume::VolumeManager;

/// Housekeeping period (upstream `housekeepingPeriod`).
const HOUSEKEEPING: Duration = Duration::from_secs(2);
/// Retry delay when the runtime could not be read.
const RUNTIME_RETRY: Duration = Duration::from_secs(5);
/// How often the QoS cgroups follow the pods (upstream `periodicQOSCgroupUpdateInterval`).
const QOS_UPDATE_PERIOD: Duration = Duration::from_secs(60);
/// The Event when a pod's cgroup cannot be made (upstream `events.FailedToCreatePodContainer`).
pub const FAILED_TO_CREATE_POD_CONTAINER: &str = "FailedToCreatePodContainer";

/// Shared liveness of the sync loop for `/healthz` (upstream `syncLoopMonitor`).
#[derive(Debug, Clone)]
pub struct SyncLoopHealth {
    last: Arc<Mutex<Option<Instant>>>,
    threshold: Duration,
}

impl SyncLoopHealth {
    /// `resync`×2, at least 5 minutes, as upstream's `SyncLoopHealthCheck`.
    pub fn new(resync: Duration) -> Self {
        Self { last: Arc::default(), threshold: (resync * 2).max(Duration::from_secs(300)) }
    }
    fn beat(&self) {
        if let Ok(mut t) = self.last.lock() {
            *t = Some(Instant::now());
        }
    }
    pub fn check(&self) -> Result<(), String> {
        match self.last.lock().ok().and_then(|t| *t) {
            Some(t) if t.elapsed() > self.threshold => Err("sync Loop took longer than expected".into()),
            _ => Ok(()),
        }
    }
    /// Testing aid: pretend the last iteration happened `ago`.
    #[cfg(test)]
    fn set_last_for_test(&self, ago: Duration) {
        if let Ok(mut t) = self.last.lock() {
            *t = Instant::now().checked_sub(ago);
        }
    }
}

/// The kubelet's pod syncing core.
pub struct Kubelet {
    pub runtime: Arc<RuntimeManager>,
    pub cri: Arc<dyn RuntimeService>,
    pub volumes: Arc<VolumeManager>,
    pub dirs: PodDirs,
    pub statuses: StatusManager,
    pub recorder: Arc<dyn EventRecorder>,
    pub clock: Arc<dyn Clock>,
    pub host_ip: Option<String>,
    /// Liveness/readiness/startup workers; their results live in `runtime.probe_results()`.
    pub probes: ProbeManager,
    reasons: Mutex<HashMap<String, SyncReasons>>,
    metrics: Option<Arc<KubeletMetrics>>,
    /// When each pod was first synced (for `kubelet_pod_start_duration_seconds`).
    first_seen: Mutex<HashMap<String, Duration>>,
    /// With `cgroupsPerQOS`: the pod and QoS cgroups.
    cm: Option<Arc<crate::cm::ContainerManager>>,
    /// Pods the eviction manager evicted: UID → the status message, and whether the status
    /// gets a `DisruptionTarget` condition.
    evictions: Mutex<HashMap<String, (String, bool)>>,
}

impl Kubelet {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        runtime: Arc<RuntimeManager>,
        cri: Arc<dyn RuntimeService>,
        volumes: Arc<VolumeManager>,
        dirs: PodDirs,
        statuses: StatusManager,
        recorder: Arc<dyn EventRecorder>,
        clock: Arc<dyn Clock>,
        host_ip: Option<String>,
    ) -> Self {
        let probes = ProbeManager::new(
            runtime.probe_results().clone(),
            statuses.clone(),
            Arc::new(RuntimeHandlers::new(cri.clone())),
            recorder.clone(),
            clock.clone(),
        );
        Self {
            runtime,
            cri,
            volumes,
            dirs,
            statuses,
            recorder,
            clock,
            host_ip,
            probes,
            reasons: Mutex::default(),
            evictions: Mutex::default(),
            metrics: None,
            first_seen: Mutex::default(),
            cm: None,
        }
    }

    /// Gives each pod a cgroup of its own before its sandbox (`cgroupsPerQOS`).
    pub fn with_container_manager(mut self, cm: Arc<crate::cm::ContainerManager>) -> Self {
        self.cm = Some(cm);
        self
    }

    /// The pods that may still run: known, not terminated and not in a terminal phase.
    pub fn active_pods(&self) -> Vec<Arc<Pod>> {
        self.statuses
            .entries()
            .into_iter()
            .filter(|(_, e)| !e.terminated && !is_terminal(e.status.phase.as_deref()))
            .map(|(_, e)| e.pod)
            .collect()
    }

    /// Upstream `UpdateQOSCgroups` over the active pods (and `extra`, not yet among them).
    pub fn update_qos_cgroups(&self, extra: Option<&Pod>) {
        let Some(cm) = &self.cm else { return };
        let active = self.active_pods();
        let uid = extra.map(labels::uid_of);
        let mut pods: Vec<&Pod> =
            active.iter().map(|p| p.as_ref()).filter(|p| Some(labels::uid_of(p)) != uid).collect();
        pods.extend(extra);
        if let Err(e) = cm.update_qos_cgroups(&pods) {
            tracing::warn!("Failed to update QoS cgroups: {e}");
        }
    }

    /// Upstream syncPod's cgroup step: the pod's cgroup exists (with its limits) before its
    /// sandbox; the QoS cgroups are updated first when it is new.
    fn ensure_pod_cgroup(&self, pod: &Pod) -> Result<(), String> {
        let Some(cm) = &self.cm else { return Ok(()) };
        if cm.pod_cgroup_exists(pod) {
            return Ok(());
        }
        self.update_qos_cgroups(Some(pod));
        cm.ensure_pod_cgroup(pod).map_err(|e| {
            self.recorder.record(crate::events::pod_event(
                pod,
                EventType::Warning,
                FAILED_TO_CREATE_POD_CONTAINER,
                format!("unable to ensure pod container exists: {e}"),
            ));
            format!(
                "failed to ensure that the pod: {} cgroups exist and are correctly applied: {e}",
                labels::uid_of(pod)
            )
        })
    }

    /// Records pod start and pod sync durations in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<KubeletMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Upstream's `kubelet_pod_start_duration_seconds`: from the first sync to the first time
    /// the pod is seen running (only for pods this kubelet saw pending).
    fn observe_pod_start(&self, uid: &str) {
        let seen = self.first_seen.lock().ok().and_then(|m| m.get(uid).copied());
        if let (Some(m), Some(seen)) = (&self.metrics, seen) {
            m.pod_start_duration.observe(&[], self.clock.now().saturating_sub(seen).as_secs_f64());
        }
    }

    fn observe_sync(&self, operation: &str, started: std::time::Instant) {
        if let Some(m) = &self.metrics {
            m.pod_worker_duration.observe(&[operation], started.elapsed().as_secs_f64());
        }
    }

    /// One sync of a pod (the body of `sync_pod`).
    async fn sync_pod_once(&self, pod: &Pod, cancel: &CancellationToken) -> SyncOutcome {
        let pod = Arc::new(pod.clone());
        let uid = labels::uid_of(&pod).to_string();
        let Some(rt) = self.runtime_status(&pod).await else {
            return SyncOutcome { requeue_after: Some(RUNTIME_RETRY), terminal: false };
        };
        if is_terminal(self.update_status(&pod, &rt, false).as_deref()) {
            return SyncOutcome { requeue_after: None, terminal: true };
        }
        if let Err(e) = self.ensure_pod_cgroup(&pod) {
            tracing::warn!(pod = %crate::events::pod_key(&pod), "{e}");
            return SyncOutcome { requeue_after: Some(RUNTIME_RETRY), terminal: false };
        }
        let result = tokio::select! {
            r = self.runtime.sync_pod(&pod, &rt) => r,
            _ = cancel.cancelled() => return SyncOutcome::default(),
        };
        if let Ok(mut r) = self.reasons.lock() {
            r.insert(uid.clone(), result.reasons.clone());
        }
        // Come back when the pod's activeDeadlineSeconds runs out.
        let deadline = self.statuses.get(&uid).and_then(|s| active_deadline(&pod, &s, self.clock.now()));
        let requeue_after = match (result.requeue_after, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Learn what this sync did right away rather than at the next PLEG relist.
        let phase = match self.runtime_status(&pod).await {
            Some(rt) => self.update_status(&pod, &rt, result.init_failed),
            None => None,
        };
        SyncOutcome { requeue_after, terminal: result.init_failed || is_terminal(phase.as_deref()) }
    }

    /// Kills the pod's containers and sandbox (the body of `sync_terminating_pod`).
    async fn kill(&self, uid: &str, pod: Option<&Pod>, grace: Option<i64>) -> Result<(), String> {
        // Containers stopped on purpose must not look like liveness failures.
        self.probes.stop_liveness_and_startup(uid);
        let rt = self.runtime.get_pod_status(uid).await.map_err(|e| e.to_string())?;
        self.runtime.kill_pod(pod, &rt, grace).await;
        self.update_qos_cgroups(None);
        let after = self.runtime.get_pod_status(uid).await.map_err(|e| e.to_string())?;
        let still: Vec<&str> = after
            .containers
            .iter()
            .filter(|c| c.state == crate::container::ContainerState::Running)
            .map(|c| c.name.as_str())
            .collect();
        if !still.is_empty() {
            return Err(format!("containers still running after kill: {still:?}"));
        }
        if let Some(pod) = pod {
            self.update_status(&Arc::new(pod.clone()), &after, true);
        }
        Ok(())
    }

    /// Upstream SyncTerminatedPod's last step: the pod's cgroup goes once its volumes are down.
    fn destroy_pod_cgroup(&self, uid: &str) -> Result<(), String> {
        let Some(cm) = &self.cm else { return Ok(()) };
        if let Some(cgroup) = cm.find_pod_cgroup(uid) {
            cm.destroy(&cgroup)?;
            tracing::debug!(pod_uid = %uid, "Pod termination removed cgroups");
        }
        Ok(())
    }

    /// Upstream `cleanupOrphanedPodCgroups`: the cgroups of pods no worker knows go — at once
    /// when their volumes are gone, else they are left at minimum cpu shares until then.
    fn cleanup_orphaned_pod_cgroups(&self, possibly_running: &dyn Fn(&str) -> bool) {
        let Some(cm) = &self.cm else { return };
        let pods = match cm.pods_in_cgroups() {
            Ok(p) => p,
            Err(e) => return tracing::warn!("failed to get list of pods that still exist on cgroup mounts: {e}"),
        };
        for (uid, cgroup) in pods {
            if possibly_running(&uid) {
                continue;
            }
            let volumes = std::fs::read_dir(self.dirs.volumes_dir(&uid)).is_ok_and(|mut d| d.next().is_some());
            if volumes {
                tracing::info!(pod_uid = %uid, "Orphaned pod found, but volumes not yet removed. Reducing cpu to minimum");
                if let Err(e) = cm.reduce_cpu_limits(&cgroup) {
                    tracing::warn!(pod_uid = %uid, "reducing cpu of an orphaned pod cgroup: {e}");
                }
                continue;
            }
            tracing::info!(pod_uid = %uid, "removing the cgroup of an orphaned pod");
            if let Err(e) = cm.destroy(&cgroup) {
                tracing::warn!(pod_uid = %uid, "{e}");
            }
        }
    }

    /// The probe result counters behind `prober_probe_total`.
    pub fn probe_counters(&self) -> Arc<crate::prober::ProbeCounters> {
        self.probes.counters()
    }

    fn now(&self) -> Time {
        let d = self.clock.now();
        let ts = k8s_openapi::jiff::Timestamp::new(
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            i32::try_from(d.subsec_nanos()).unwrap_or(0),
        )
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        Time(ts)
    }

    /// Reads the pod's state from the runtime (logging a failure with the pod's name).
    async fn runtime_status(&self, pod: &Pod) -> Option<PodRuntimeStatus> {
        match self.runtime.get_pod_status(labels::uid_of(pod)).await {
            Ok(rt) => Some(rt),
            Err(e) => {
                tracing::warn!(pod = %crate::events::pod_key(pod), "reading pod state from the runtime: {e}");
                None
            }
        }
    }

    /// Upstream eviction's `evictPod`: a Warning `Evicted` event, and from now on the pod's
    /// status is Failed with reason `Evicted`, `message` and (with `disruption`) a
    /// `DisruptionTarget` condition (the caller then kills it).
    pub fn mark_evicted(&self, pod: &Pod, message: String, disruption: bool) {
        self.recorder.record(crate::events::pod_event(
            pod,
            EventType::Warning,
            crate::eviction::REASON,
            message.clone(),
        ));
        if let Ok(mut e) = self.evictions.lock() {
            e.insert(labels::uid_of(pod).to_owned(), (message, disruption));
        }
    }

    /// Upstream `rejectPod`: the pod is Failed with the admission reason and never started.
    pub fn reject_pod(&self, pod: &Arc<Pod>, r: &Rejection) {
        self.recorder.record(crate::events::pod_event(
            pod,
            EventType::Warning,
            leak_reason(&r.reason),
            r.message.clone(),
        ));
        let status = k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Failed".into()),
            reason: Some(r.reason.clone()),
            message: Some(format!("Pod was rejected: {}", r.message)),
            qos_class: pod.status.as_ref().and_then(|s| s.qos_class.clone()),
            ..Default::default()
        };
        self.statuses.set(pod.clone(), status);
        self.statuses.mark_terminated(labels::uid_of(pod));
    }

    /// Computes and stores a pod's status from its runtime state; returns the phase.
    fn update_status(&self, pod: &Arc<Pod>, rt: &PodRuntimeStatus, terminal: bool) -> Option<String> {
        let uid = labels::uid_of(pod);
        let reasons = self.reasons.lock().ok().and_then(|r| r.get(uid).cloned()).unwrap_or_default();
        let old = self.statuses.get(uid);
        let results = self.runtime.probe_results();
        let passed = |r: &ResultsManager, id: &str| r.get(id).map(|r| r == ProbeResult::Success);
        let status = compute_pod_status(&StatusInput {
            pod,
            runtime: rt,
            reasons: &reasons,
            old: old.as_ref(),
            probes: ProbeView {
                readiness: &|id| passed(&results.readiness, id),
                startup: &|id| passed(&results.startup, id),
                readiness_worker: &|name| self.probes.has_worker(uid, name, ProbeType::Readiness),
                startup_worker: &|name| self.probes.has_worker(uid, name, ProbeType::Startup),
                restart_cutoff: Some(self.probes.restart_cutoff()),
            },
            host_ip: self.host_ip.as_deref(),
            pod_is_terminal: terminal,
            now: self.now(),
        });
        let mut status = status;
        if !is_terminal(status.phase.as_deref())
            && active_deadline(pod, &status, self.clock.now()) == Some(Duration::ZERO)
        {
            // Upstream's activeDeadlineHandler: the pod fails; the worker then terminates it.
            self.recorder.record(crate::events::pod_event(
                pod,
                EventType::Normal,
                DEADLINE_EXCEEDED,
                DEADLINE_EXCEEDED_MESSAGE,
            ));
            status.phase = Some(crate::status::phases::FAILED.into());
            status.reason = Some(DEADLINE_EXCEEDED.into());
            status.message = Some(DEADLINE_EXCEEDED_MESSAGE.into());
        }
        if let Some((message, disruption)) = self.evictions.lock().ok().and_then(|e| e.get(uid).cloned()) {
            apply_eviction(&mut status, message, disruption, self.now());
        }
        let phase = status.phase.clone();
        let was = old.as_ref().and_then(|o| o.phase.as_deref());
        if was == Some(crate::status::phases::PENDING) && phase.as_deref() == Some(crate::status::phases::RUNNING) {
            self.observe_pod_start(uid);
        }
        self.statuses.set(pod.clone(), status);
        // Readiness probes of containers that just started run now rather than a period later.
        let running: Vec<(String, String)> = rt
            .containers
            .iter()
            .filter(|c| c.state == crate::container::ContainerState::Running)
            .map(|c| (c.name.clone(), c.id.clone()))
            .collect();
        self.probes.trigger_pending_readiness(uid, &running);
        phase
    }
}

#[async_trait]
impl PodSyncer for Kubelet {
    async fn sync_pod(&self, pod: &Pod, cancel: &CancellationToken) -> SyncOutcome {
        let started = std::time::Instant::now();
        let uid = labels::uid_of(pod).to_string();
        // The first sync of a pod creates it; later ones sync it.
        let first = match self.first_seen.lock() {
            Ok(mut m) => {
                let absent = !m.contains_key(&uid);
                m.entry(uid.clone()).or_insert_with(|| self.clock.now());
                absent
            }
            Err(_) => false,
        };
        let outcome = self.sync_pod_once(pod, cancel).await;
        self.observe_sync(if first { "create" } else { "sync" }, started);
        outcome
    }

    async fn sync_terminating_pod(&self, uid: &str, pod: Option<&Pod>, grace: Option<i64>) -> Result<(), String> {
        let started = std::time::Instant::now();
        let result = self.kill(uid, pod, grace).await;
        self.observe_sync("kill", started);
        result
    }
    async fn sync_terminated_pod(&self, uid: &str, pod: Option<&Pod>, removed: bool) -> Result<(), String> {
        if removed {
            if let Ok(mut m) = self.first_seen.lock() {
                m.remove(uid);
            }
            self.probes.remove_pod(uid);
        }
        if !removed {
            // A completed pod keeps its containers (logs, status) until it is removed.
            self.volumes.teardown_pod_volumes(uid).await.map_err(|e| e.to_string())?;
            self.destroy_pod_cgroup(uid)?;
            self.statuses.mark_terminated(uid);
            // Not waiting for the periodic update: the QoS shares stop counting this pod now.
            self.update_qos_cgroups(None);
            return Ok(());
        }
        let rt = self.runtime.get_pod_status(uid).await.map_err(|e| e.to_string())?;
        self.runtime.remove_pod(&rt).await.map_err(|e| e.to_string())?;
        self.volumes.teardown_pod_volumes(uid).await.map_err(|e| e.to_string())?;
        self.destroy_pod_cgroup(uid)?;
        self.volumes.cleanup_pod_dir(uid).map_err(|e| e.to_string())?;
        // containerd leaves log files behind: the pod's log directory is ours to remove.
        let log_dir = match pod {
            Some(p) => Some(pod_logs_dir(&self.runtime.settings().pod_logs_dir, p)),
            None if !rt.name.is_empty() => {
                Some(self.runtime.settings().pod_logs_dir.join(format!("{}_{}_{}", rt.namespace, rt.name, uid)))
            }
            None => None,
        };
        if let Some(dir) = log_dir
            && let Err(e) = tokio::fs::remove_dir_all(&dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(format!("removing pod log directory {}: {e}", dir.display()));
        }
        self.statuses.remove(uid);
        if let Ok(mut r) = self.reasons.lock() {
            r.remove(uid);
        }
        if let Ok(mut e) = self.evictions.lock() {
            e.remove(uid);
        }
        self.update_qos_cgroups(None);
        Ok(())
    }
}

/// An evicted pod's status: Failed, `Evicted`, the message, and the `DisruptionTarget`
/// condition upstream adds (reason `TerminationByKubelet`).
fn apply_eviction(status: &mut k8s_openapi::api::core::v1::PodStatus, message: String, disruption: bool, now: Time) {
    status.phase = Some(crate::status::phases::FAILED.into());
    status.reason = Some(crate::eviction::REASON.into());
    status.message = Some(message.clone());
    if !disruption {
        return;
    }
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == "DisruptionTarget") {
        if c.status != "True" {
            c.last_transition_time = Some(now);
        }
        c.status = "True".into();
        c.reason = Some("TerminationByKubelet".into());
        c.message = Some(message);
    } else {
        conditions.push(k8s_openapi::api::core::v1::PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("TerminationByKubelet".into()),
            message: Some(message),
            last_transition_time: Some(now),
            ..Default::default()
        });
    }
}

/// The eviction manager's view of the kubelet's pods: the active ones, and eviction as a
/// status plus a kill through the pod's worker.
pub struct KubeletEvictor {
    pub kubelet: Arc<Kubelet>,
    pub workers: PodWorkers,
}

impl crate::eviction::PodEvictor for KubeletEvictor {
    fn active_pods(&self) -> Vec<Arc<Pod>> {
        self.kubelet.active_pods()
    }

    fn evict(&self, pod: &Arc<Pod>, grace: i64, message: String, disruption: bool) {
        self.kubelet.mark_evicted(pod, message, disruption);
        self.workers.kill_pod(labels::uid_of(pod), Some(pod.clone()), Some(grace), false);
    }
}

/// The pod phase reason and message when `activeDeadlineSeconds` ran out (upstream's
/// `activeDeadlineHandler`).
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
pub const DEADLINE_EXCEEDED_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";

/// How long the pod may still be active under its `activeDeadlineSeconds`, counted from its
/// `status.startTime`: `Some(ZERO)` once it ran out, `None` without a deadline or start time.
pub fn active_deadline(pod: &Pod, status: &k8s_openapi::api::core::v1::PodStatus, now: Duration) -> Option<Duration> {
    let secs = pod.spec.as_ref()?.active_deadline_seconds?;
    let start = status.start_time.as_ref()?.0.as_second();
    let start = Duration::from_secs(u64::try_from(start).ok()?);
    let allowed = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    Some((start + allowed).saturating_sub(now))
}

/// What admission needs to know about the node (only for pods from the API server).
pub struct AdmissionContext {
    pub node_name: String,
    /// The node as last read from the API (its labels and `status.allocatable`), once registered.
    pub node: api::node::Registered,
    /// The labels the kubelet registers the node with, used until the API node is known.
    pub labels: BTreeMap<String, String>,
    pub max_pods: u32,
}

/// Event reasons are `&'static str`. Admission reasons are a small fixed set plus
/// `OutOf<resource>` for hugepages and extended resources, interned once each (bounded: resource
/// names the API accepts in requests and the node advertises).
fn leak_reason(reason: &str) -> &'static str {
    const MAX_INTERNED: usize = 64;
    static INTERNED: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    match reason {
        "NodeAffinity" => "NodeAffinity",
        "Evicted" => "Evicted",
        "OutOfpods" => "OutOfpods",
        "OutOfcpu" => "OutOfcpu",
        "OutOfmemory" => "OutOfmemory",
        "OutOfephemeral-storage" => "OutOfephemeral-storage",
        r if r.starts_with("OutOf") => {
            let Ok(mut set) = INTERNED.lock() else { return "UnexpectedAdmissionError" };
            if let Some(s) = set.get(r) {
                return s;
            }
            if set.len() >= MAX_INTERNED {
                return "UnexpectedAdmissionError";
            }
            let s: &'static str = Box::leak(r.to_owned().into_boxed_str());
            set.insert(s);
            s
        }
        _ => "UnexpectedAdmissionError",
    }
}

/// The sync loop: feeds pod workers from the merged source stream and PLEG, and does
/// housekeeping (orphaned runtime pods and pod directories).
pub struct SyncLoop {
    pub kubelet: Arc<Kubelet>,
    pub workers: PodWorkers,
    pub health: SyncLoopHealth,
    /// The sources that must report before orphans are judged (e.g. `[FILE_SOURCE, API_SOURCE]`).
    pub sources: Vec<&'static str>,
    pub admission: Option<AdmissionContext>,
    /// Receives the static pods the kubelet wants, for the mirror pod sync.
    pub static_pods: Option<tokio::sync::watch::Sender<Vec<Arc<Pod>>>>,
    /// Changed probe results (`ProbeResults::new`): each wakes its pod's worker.
    pub probe_updates: Option<mpsc::UnboundedReceiver<Update>>,
    /// Set once every pod source has reported (or the sources ended): what the garbage
    /// collector waits for before removing what belongs to pods it does not know.
    pub sources_ready: Arc<std::sync::atomic::AtomicBool>,
    /// The eviction manager's node conditions: pods are refused under pressure.
    pub pressure: crate::eviction::Pressure,
}

/// The next probe update, or never without a channel.
async fn next_probe_update(rx: &mut Option<mpsc::UnboundedReceiver<Update>>) -> Option<Update> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl SyncLoop {
    pub async fn run(
        mut self,
        mut sources: mpsc::Receiver<SourceSnapshot>,
        mut pleg: mpsc::Receiver<PlegEvent>,
        shutdown: CancellationToken,
    ) {
        let mut config = PodConfig::new(if self.sources.is_empty() { vec![FILE_SOURCE] } else { self.sources.clone() });
        let mut desired: BTreeMap<String, Arc<Pod>> = BTreeMap::new();
        let mut rejected: HashSet<String> = HashSet::new();
        let mut sources_open = true;
        let mut probe_updates = self.probe_updates.take();
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut qos_update = tokio::time::interval(QOS_UPDATE_PERIOD);
        qos_update.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            self.health.beat();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                snap = sources.recv(), if sources_open => match snap {
                    Some(snap) => {
                        for u in config.merge(snap) {
                            self.handle_update(u, &mut desired, &mut rejected);
                        }
                        if let Some(tx) = &self.static_pods {
                            let statics: Vec<Arc<Pod>> = desired.values().filter(|p| is_static_pod(p)).cloned().collect();
                            tx.send_if_modified(|cur| {
                                let same = cur.len() == statics.len() && cur.iter().zip(&statics).all(|(a, b)| Arc::ptr_eq(a, b));
                                if !same {
                                    *cur = statics;
                                }
                                !same
                            });
                        }
                    }
                    None => sources_open = false,
                },
                Some(ev) = pleg.recv() => self.workers.wake(&ev.pod_uid),
                Some(u) = next_probe_update(&mut probe_updates) => {
                    tracing::debug!(pod_uid = %u.pod_uid, container_id = %u.container_id, probe = %u.probe, result = ?u.result, "probe result changed");
                    self.workers.wake(&u.pod_uid);
                }
                _ = qos_update.tick() => self.kubelet.update_qos_cgroups(None),
                _ = housekeeping.tick() => {
                    // Orphans are only judged once every source said what it wants.
                    if config.seen_all_sources() || !sources_open {
                        self.sources_ready.store(true, std::sync::atomic::Ordering::Release);
                        self.housekeeping(&desired).await;
                    }
                }
            }
        }
    }

    fn handle_update(&self, u: PodUpdate, desired: &mut BTreeMap<String, Arc<Pod>>, rejected: &mut HashSet<String>) {
        for pod in u.pods {
            let uid = labels::uid_of(&pod).to_string();
            let pod = Arc::new(pod);
            match u.op {
                PodOp::Add | PodOp::Update | PodOp::Reconcile => {
                    if rejected.contains(&uid) {
                        continue;
                    }
                    if u.op == PodOp::Add {
                        if let Err(r) = self.admit(&pod, desired) {
                            tracing::warn!(pod = %crate::events::pod_key(&pod), reason = %r.reason, "Pod rejected: {}", r.message);
                            self.kubelet.reject_pod(&pod, &r);
                            rejected.insert(uid);
                            continue;
                        }
                        self.kubelet.probes.add_pod(&pod);
                    }
                    if u.op != PodOp::Reconcile {
                        tracing::info!(pod = %crate::events::pod_key(&pod), pod_uid = %uid, op = ?u.op, "pod update");
                        if let Some(objects) = self.kubelet.volumes.objects() {
                            objects.pod_registered(&pod);
                        }
                    }
                    desired.insert(uid.clone(), pod.clone());
                    if pod.metadata.deletion_timestamp.is_some() {
                        let grace = pod.metadata.deletion_grace_period_seconds;
                        self.workers.kill_pod(&uid, Some(pod), grace, false);
                    } else {
                        self.workers.update_pod(pod);
                    }
                }
                PodOp::Remove => {
                    tracing::info!(pod = %crate::events::pod_key(&pod), pod_uid = %uid, "pod removed");
                    if let Some(objects) = self.kubelet.volumes.objects() {
                        objects.pod_unregistered(&pod);
                    }
                    desired.remove(&uid);
                    rejected.remove(&uid);
                    self.kubelet.probes.remove_pod(&uid);
                    self.workers.kill_pod(&uid, Some(pod), None, true);
                }
            }
        }
    }

    /// Admission for pods from the API server. Static pods are always admitted: upstream treats
    /// them as critical (admitted over resources by preempting others, see `admission`).
    fn admit(&self, pod: &Pod, desired: &BTreeMap<String, Arc<Pod>>) -> Result<(), Rejection> {
        // Upstream's first admit handler: the eviction manager's (critical pods pass).
        self.pressure.admit(pod).map_err(|message| Rejection { reason: crate::eviction::REASON.into(), message })?;
        let Some(ctx) = &self.admission else { return Ok(()) };
        if is_static_pod(pod) {
            return Ok(());
        }
        let node = ctx.node.borrow().clone();
        let labels = node.as_ref().and_then(|n| n.metadata.labels.as_ref()).unwrap_or(&ctx.labels);
        let allocatable = node.as_ref().and_then(|n| n.status.as_ref()).and_then(|s| s.allocatable.as_ref());
        let uid = labels::uid_of(pod);
        let others =
            admission::active_pods(desired.iter().filter(|(u, _)| u.as_str() != uid).map(|(_, p)| p.as_ref()), |p| {
                is_terminal(self.kubelet.statuses.get(labels::uid_of(p)).and_then(|s| s.phase).as_deref())
            });
        let view = admission::NodeView { name: &ctx.node_name, labels, allocatable, max_pods: ctx.max_pods };
        admission::admit(pod, &view, &others)
    }

    /// Kills runtime pods nobody wants (e.g. a manifest removed while the kubelet was down) and
    /// removes pod directories with nothing behind them.
    async fn housekeeping(&self, desired: &BTreeMap<String, Arc<Pod>>) {
        self.kubelet.probes.cleanup_pods(&|uid| desired.contains_key(uid));
        let sandboxes = match self.kubelet.cri.list_pod_sandbox(None).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("housekeeping: listing sandboxes: {e}");
                return;
            }
        };
        let mut runtime_uids: HashSet<String> = HashSet::new();
        for s in sandboxes {
            if let Some(uid) = s.labels.get(labels::POD_UID) {
                runtime_uids.insert(uid.clone());
            }
        }
        for uid in &runtime_uids {
            if !desired.contains_key(uid) && !self.workers.is_known(uid) {
                tracing::info!(pod_uid = %uid, "killing orphaned pod found in the runtime");
                self.workers.kill_pod(uid, None, None, true);
            }
        }
        match self.kubelet.dirs.pod_uids_on_disk() {
            Ok(on_disk) => {
                for uid in on_disk {
                    if !desired.contains_key(&uid) && !self.workers.is_known(&uid) && !runtime_uids.contains(&uid) {
                        tracing::info!(pod_uid = %uid, "cleaning up orphaned pod directory");
                        self.workers.kill_pod(&uid, None, Some(0), true);
                    }
                }
            }
            Err(e) => tracing::warn!("housekeeping: reading pod directories: {e}"),
        }
        self.kubelet.cleanup_orphaned_pod_cgroups(&|uid| desired.contains_key(uid) || self.workers.is_known(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_reasons_become_event_reasons() {
        assert_eq!(leak_reason("OutOfcpu"), "OutOfcpu");
        assert_eq!(leak_reason("OutOfephemeral-storage"), "OutOfephemeral-storage");
        let first = leak_reason("OutOfhugepages-2Mi");
        assert_eq!(first, "OutOfhugepages-2Mi");
        assert!(std::ptr::eq(first, leak_reason("OutOfhugepages-2Mi")), "interned once");
        assert_eq!(leak_reason("Whatever"), "UnexpectedAdmissionError");
    }

    #[test]
    fn active_deadline_counts_from_the_start_time() {
        let pod: Pod =
            serde_json::from_value(serde_json::json!({"spec": {"containers": [], "activeDeadlineSeconds": 30}}))
                .unwrap_or_default();
        let started = |secs: i64| k8s_openapi::api::core::v1::PodStatus {
            start_time: Some(Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap_or_default())),
            ..Default::default()
        };
        let now = Duration::from_secs(1_000);
        assert_eq!(active_deadline(&pod, &started(990), now), Some(Duration::from_secs(20)));
        assert_eq!(active_deadline(&pod, &started(970), now), Some(Duration::ZERO), "exactly 30 s");
        assert_eq!(active_deadline(&pod, &started(900), now), Some(Duration::ZERO));
        assert_eq!(active_deadline(&pod, &Default::default(), now), None, "not started");
        assert_eq!(active_deadline(&Pod::default(), &started(900), now), None, "no deadline");
    }

    #[tokio::test]
    async fn sync_loop_health_fails_when_the_loop_stalls() {
        let h = SyncLoopHealth::new(Duration::from_secs(60));
        assert!(h.check().is_ok(), "healthy before the first iteration");
        h.beat();
        assert!(h.check().is_ok());
        // resync 1m → threshold max(2m, 5m) = 5m.
        h.set_last_for_test(Duration::from_secs(299));
        assert!(h.check().is_ok());
        h.set_last_for_test(Duration::from_secs(301));
        assert_eq!(h.check(), Err("sync Loop took longer than expected".to_string()));
    }
}
