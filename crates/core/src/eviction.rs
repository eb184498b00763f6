//! The eviction manager (upstream `pkg/kubelet/eviction`): every 10 s the node's signals are
//! read from the stats summary and compared with the hard and soft thresholds; a met threshold
//! sets the node's pressure condition (kept for `evictionPressureTransitionPeriod` after it
//! was last seen) and, once its grace period has passed, the kubelet first reclaims what the
//! node itself holds (dead containers and unused images, for disk signals) and then evicts one
//! pod per pass, ranked as upstream: pods using more than they requested first, then lower
//! priority, then larger usage. An evicted pod is Failed with reason `Evicted` and upstream's
//! message, and killed with a 1 s grace period (hard) or `evictionMaxPodGracePeriod` (soft).
//! Critical pods (static, mirror, system-critical priority) are never evicted.
//!
//! Local storage isolation runs at every pass too: a pod whose emptyDir exceeds its `sizeLimit`,
//! or that (or one of whose containers) exceeds its ephemeral-storage limit, is evicted at once.
//!
//! Not here: the memcg notifier (`kernelMemcgNotification`), `allocatableMemory.available`
//! (never met), and a separate container filesystem.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use tokio_util::sync::CancellationToken;

use crate::admission::{is_critical_pod, pod_requests};
use crate::clock::Clock;
use crate::events::pod_key;
use crate::node_allocatable::ThresholdValue;
use crate::quantity::ParsedQuantity;
use crate::stats::{PodStats, Summary};

/// How often the signals are compared with the thresholds (upstream `evictionMonitoringPeriod`).
pub const MONITORING_INTERVAL: Duration = Duration::from_secs(10);
/// The pod status reason and event reason of an eviction (upstream `eviction.Reason`).
pub const REASON: &str = "Evicted";
/// The grace period of a pod evicted for a hard threshold.
const IMMEDIATE_GRACE_PERIOD_SECONDS: i64 = 1;

pub const MEMORY_PRESSURE: &str = "MemoryPressure";
pub const DISK_PRESSURE: &str = "DiskPressure";
pub const PID_PRESSURE: &str = "PIDPressure";

/// A signal the manager observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    MemoryAvailable,
    AllocatableMemoryAvailable,
    NodeFsAvailable,
    NodeFsInodesFree,
    ImageFsAvailable,
    ImageFsInodesFree,
    PidAvailable,
}

impl Signal {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "memory.available" => Self::MemoryAvailable,
            "allocatableMemory.available" => Self::AllocatableMemoryAvailable,
            "nodefs.available" => Self::NodeFsAvailable,
            "nodefs.inodesFree" => Self::NodeFsInodesFree,
            // Without a separate container filesystem, containerfs is the image filesystem.
            "imagefs.available" | "containerfs.available" => Self::ImageFsAvailable,
            "imagefs.inodesFree" | "containerfs.inodesFree" => Self::ImageFsInodesFree,
            "pid.available" => Self::PidAvailable,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MemoryAvailable => "memory.available",
            Self::AllocatableMemoryAvailable => "allocatableMemory.available",
            Self::NodeFsAvailable => "nodefs.available",
            Self::NodeFsInodesFree => "nodefs.inodesFree",
            Self::ImageFsAvailable => "imagefs.available",
            Self::ImageFsInodesFree => "imagefs.inodesFree",
            Self::PidAvailable => "pid.available",
        }
    }

    /// The node condition the signal drives (upstream `signalToNodeCondition`).
    pub fn condition(self) -> &'static str {
        match self {
            Self::MemoryAvailable | Self::AllocatableMemoryAvailable => MEMORY_PRESSURE,
            Self::PidAvailable => PID_PRESSURE,
            _ => DISK_PRESSURE,
        }
    }

    /// The resource an eviction for the signal reclaims (upstream `signalToResource`).
    pub fn resource(self) -> &'static str {
        match self {
            Self::MemoryAvailable | Self::AllocatableMemoryAvailable => "memory",
            Self::NodeFsAvailable | Self::ImageFsAvailable => "ephemeral-storage",
            Self::NodeFsInodesFree | Self::ImageFsInodesFree => "inodes",
            Self::PidAvailable => "pids",
        }
    }

    fn is_memory(self) -> bool {
        matches!(self, Self::MemoryAvailable | Self::AllocatableMemoryAvailable)
    }
}

/// One threshold: the signal, the value (as written, for messages), its grace period (zero for
/// hard thresholds) and the minimum reclaim.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: ThresholdValue,
    /// The quantity as configured (`100Mi`), `None` for a percentage.
    pub quantity: Option<String>,
    pub grace: Duration,
    pub hard: bool,
    pub min_reclaim: Option<ThresholdValue>,
}

impl Threshold {
    /// The threshold quantity against a capacity, as upstream prints it.
    fn quantity_text(&self, capacity: u64) -> String {
        match &self.quantity {
            Some(q) => q.clone(),
            None => format_binary_si(i128::from(self.value.of(capacity))),
        }
    }
}

/// Upstream `ParseThresholdConfig`: the hard and soft thresholds with their grace periods and
/// minimum reclaims, with upstream's messages for what is wrong.
pub fn parse_config(
    hard: &BTreeMap<String, String>,
    soft: &BTreeMap<String, String>,
    soft_grace: &BTreeMap<String, String>,
    min_reclaim: &BTreeMap<String, String>,
) -> Result<Vec<Threshold>, String> {
    let mut graces = HashMap::new();
    for (signal, v) in soft_grace {
        let s = Signal::parse(signal).ok_or_else(|| format!("unsupported eviction signal {signal}"))?;
        let d = crate::config::parse_duration(v).map_err(|e| e.to_string())?;
        graces.insert(s, d);
    }
    let mut reclaims = HashMap::new();
    for (signal, v) in min_reclaim {
        let s = Signal::parse(signal).ok_or_else(|| format!("unsupported eviction signal {signal}"))?;
        let value = if let Some(p) = v.strip_suffix('%') {
            let pct: f64 = p.parse().map_err(|e| format!("strconv.ParseFloat: parsing {p:?}: {e}"))?;
            if !(0.0..=100.0).contains(&pct) {
                return Err(format!("invalid percentage {v} for signal {signal}"));
            }
            ThresholdValue::Fraction(pct / 100.0)
        } else {
            let q = ParsedQuantity::parse(v).map_err(|e| e.to_string())?;
            if q.nanos() < 0 {
                return Err(format!("negative reclaim defined for signal {signal}"));
            }
            ThresholdValue::Quantity(u64::try_from(q.value()).unwrap_or(u64::MAX))
        };
        reclaims.insert(s, value);
    }
    let mut out = Vec::new();
    for (map, is_hard) in [(hard, true), (soft, false)] {
        let parsed = crate::node_allocatable::parse_thresholds(map)?;
        for (name, value) in parsed {
            let Some(signal) = Signal::parse(&name) else { continue };
            let grace = if is_hard {
                Duration::ZERO
            } else {
                *graces
                    .get(&signal)
                    .ok_or_else(|| format!("grace period must be specified for the soft eviction threshold {name}"))?
            };
            let quantity = map.get(&name).filter(|v| !v.ends_with('%')).cloned();
            out.push(Threshold {
                signal,
                value,
                quantity,
                grace,
                hard: is_hard,
                min_reclaim: reclaims.get(&signal).copied(),
            });
        }
    }
    Ok(out)
}

/// The manager's settings from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct EvictionConfig {
    pub thresholds: Vec<Threshold>,
    /// `evictionPressureTransitionPeriod`.
    pub pressure_transition_period: Duration,
    /// `evictionMaxPodGracePeriod`.
    pub max_pod_grace_period: i64,
}

impl EvictionConfig {
    /// From `evictionHard`, `evictionSoft`, `evictionSoftGracePeriod`, `evictionMinimumReclaim`,
    /// `evictionPressureTransitionPeriod` and `evictionMaxPodGracePeriod`.
    pub fn from_config(c: &crate::config::KubeletConfiguration) -> Result<Self, String> {
        Ok(Self {
            thresholds: parse_config(
                &c.eviction_hard,
                &c.eviction_soft,
                &c.eviction_soft_grace_period,
                &c.eviction_minimum_reclaim,
            )?,
            pressure_transition_period: c.eviction_pressure_transition_period,
            max_pod_grace_period: i64::from(c.eviction_max_pod_grace_period),
        })
    }

    /// The grace period a pod evicted for `threshold` gets (upstream): 1 s for a hard
    /// threshold; for a soft one `evictionMaxPodGracePeriod`, or the pod's own
    /// `terminationGracePeriodSeconds` when that is shorter.
    pub fn grace_period(&self, threshold: &Threshold, pod: &Pod) -> i64 {
        if threshold.hard {
            return IMMEDIATE_GRACE_PERIOD_SECONDS;
        }
        match pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds) {
            Some(own) => self.max_pod_grace_period.min(own),
            None => self.max_pod_grace_period,
        }
    }
}

/// What was observed of a signal: available and capacity (bytes, inodes or pids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub available: i128,
    pub capacity: u64,
}

/// Upstream `makeSignalObservations` from the summary.
pub fn observe(summary: &Summary) -> BTreeMap<Signal, Observation> {
    let mut out = BTreeMap::new();
    let node = &summary.node;
    if let Some(m) = &node.memory
        && let (Some(avail), Some(ws)) = (m.available_bytes, m.working_set_bytes)
    {
        out.insert(
            Signal::MemoryAvailable,
            Observation { available: avail.into(), capacity: avail.saturating_add(ws) },
        );
    }
    let fs_pair = |fs: &crate::stats::FsStats, signals: (Signal, Signal), out: &mut BTreeMap<Signal, Observation>| {
        if let (Some(a), Some(c)) = (fs.available_bytes, fs.capacity_bytes) {
            out.insert(signals.0, Observation { available: a.into(), capacity: c });
        }
        if let (Some(f), Some(i)) = (fs.inodes_free, fs.inodes) {
            out.insert(signals.1, Observation { available: f.into(), capacity: i });
        }
    };
    if let Some(fs) = &node.fs {
        fs_pair(fs, (Signal::NodeFsAvailable, Signal::NodeFsInodesFree), &mut out);
    }
    if let Some(fs) = node.runtime.as_ref().and_then(|r| r.image_fs.as_ref()) {
        fs_pair(fs, (Signal::ImageFsAvailable, Signal::ImageFsInodesFree), &mut out);
    }
    if let Some(r) = &node.rlimit
        && let (Some(max), Some(cur)) = (r.maxpid, r.curproc)
    {
        out.insert(
            Signal::PidAvailable,
            Observation { available: i128::from(max) - i128::from(cur), capacity: u64::try_from(max).unwrap_or(0) },
        );
    }
    out
}

/// Upstream `thresholdsMet`: the thresholds whose signal is below their quantity (plus the
/// minimum reclaim when `with_min_reclaim`: a threshold stays met until that much more is free).
pub fn thresholds_met<'a>(
    thresholds: impl IntoIterator<Item = &'a Threshold>,
    obs: &BTreeMap<Signal, Observation>,
    with_min_reclaim: bool,
) -> Vec<Threshold> {
    thresholds
        .into_iter()
        .filter(|t| {
            let Some(o) = obs.get(&t.signal) else { return false };
            let mut quantity = i128::from(t.value.of(o.capacity));
            if with_min_reclaim && let Some(r) = t.min_reclaim {
                quantity += i128::from(r.of(o.capacity));
            }
            quantity > 0 && o.available < quantity
        })
        .cloned()
        .collect()
}

/// The node conditions the manager reports (shared with node status and admission).
#[derive(Debug, Clone, Default)]
pub struct Pressure(Arc<RwLock<Vec<&'static str>>>);

impl Pressure {
    /// The conditions now, in upstream's order (memory, disk, pid).
    pub fn conditions(&self) -> Vec<&'static str> {
        self.0.read().map(|v| v.clone()).unwrap_or_default()
    }

    fn set(&self, mut conditions: Vec<&'static str>) {
        let order = |c: &&str| [MEMORY_PRESSURE, DISK_PRESSURE, PID_PRESSURE].iter().position(|x| x == c);
        conditions.sort_by_key(order);
        conditions.dedup();
        if let Ok(mut v) = self.0.write() {
            *v = conditions;
        }
    }

    /// Upstream eviction `Admit`: under memory pressure only BestEffort pods are refused
    /// (unless they tolerate the memory-pressure taint); under any other pressure every pod;
    /// critical pods always pass. The refusal's message.
    pub fn admit(&self, pod: &Pod) -> Result<(), String> {
        let conditions = self.conditions();
        if conditions.is_empty() || is_critical_pod(pod) {
            return Ok(());
        }
        if conditions == [MEMORY_PRESSURE]
            && (crate::status::qos::get_pod_qos(pod) != crate::status::qos::BEST_EFFORT
                || tolerates_memory_pressure(pod))
        {
            return Ok(());
        }
        // Go's `%v` of the condition list: `[MemoryPressure DiskPressure]`.
        Err(format!("The node had condition: [{}]. ", conditions.join(" ")))
    }
}

/// Whether the pod tolerates `node.kubernetes.io/memory-pressure:NoSchedule`.
fn tolerates_memory_pressure(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.tolerations.as_ref()).into_iter().flatten().any(|t| {
        let key_ok = match t.key.as_deref() {
            None | Some("") => t.operator.as_deref() == Some("Exists"),
            Some(k) => k == "node.kubernetes.io/memory-pressure",
        };
        let effect_ok = matches!(t.effect.as_deref(), None | Some("") | Some("NoSchedule"));
        let value_ok = t.operator.as_deref() == Some("Exists") || t.value.as_deref().unwrap_or("").is_empty();
        key_ok && effect_ok && value_ok
    })
}

/// Go's `resource.NewQuantity(n, BinarySI).String()`: the largest binary suffix that divides
/// the value exactly (`2Ki`, `1536`, `100Mi`).
pub fn format_binary_si(n: i128) -> String {
    const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    if n.abs() < 1024 {
        return n.to_string();
    }
    let (mut v, mut i) = (n, 0);
    while i < SUFFIXES.len() - 1 && v % 1024 == 0 && v != 0 {
        v /= 1024;
        i += 1;
    }
    format!("{v}{}", SUFFIXES[i])
}

/// The usage and request of one pod (or container) for the resource being reclaimed.
fn usage_of(stats: &PodStats, resource: &str) -> Option<u64> {
    match resource {
        "memory" => stats.memory.as_ref().and_then(|m| m.working_set_bytes),
        "ephemeral-storage" => stats.ephemeral_storage.as_ref().and_then(|f| f.used_bytes),
        "inodes" => stats.ephemeral_storage.as_ref().and_then(|f| f.inodes_used),
        _ => None,
    }
}

fn request_of(pod: &Pod, resource: &str) -> i128 {
    // Requests are in nano-units; bytes are whole units.
    pod_requests(pod, &|n| n == resource).get(resource).copied().unwrap_or(0) / 1_000_000_000
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Upstream's rankings: memory and disk by (usage over request, priority, usage − request);
/// pids by priority, then process count. Pods without stats go last.
pub fn rank<P: std::ops::Deref<Target = Pod>>(pods: &mut [(P, Option<&PodStats>)], resource: &str) {
    pods.sort_by(|(a, sa), (b, sb)| {
        let key = |p: &Pod, s: &Option<&PodStats>| {
            let usage = s.and_then(|s| usage_of(s, resource)).map(i128::from);
            let request = if resource == "inodes" { 0 } else { request_of(p, resource) };
            let exceeds = usage.is_some_and(|u| u > request);
            let over = usage.map_or(i128::MIN, |u| u - request);
            (usage.is_none(), !exceeds, priority(p), std::cmp::Reverse(over))
        };
        if resource == "pids" {
            // Upstream `rankPIDPressure`: priority, then more processes first.
            let processes = |s: &Option<&PodStats>| {
                s.and_then(|s| s.process_stats.as_ref()).and_then(|p| p.process_count).unwrap_or(0)
            };
            return (priority(a), std::cmp::Reverse(processes(sa)))
                .cmp(&(priority(b), std::cmp::Reverse(processes(sb))));
        }
        key(a, sa).cmp(&key(b, sb))
    });
}

/// Upstream `evictionMessage`.
pub fn eviction_message(
    resource: &str,
    pod: &Pod,
    stats: Option<&PodStats>,
    threshold: &Threshold,
    obs: Option<&Observation>,
) -> String {
    let mut m = format!("The node was low on resource: {resource}. ");
    if let Some(o) = obs
        && matches!(resource, "memory" | "ephemeral-storage")
    {
        m += &format!(
            "Threshold quantity: {}, available: {}. ",
            threshold.quantity_text(o.capacity),
            format_binary_si(o.available)
        );
    }
    let Some(stats) = stats else { return m };
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    for cs in &stats.containers {
        let Some(c) = containers.iter().find(|c| c.name == cs.name) else { continue };
        let usage = match resource {
            "memory" => cs.memory.as_ref().and_then(|m| m.working_set_bytes),
            "ephemeral-storage" => {
                match (cs.rootfs.as_ref().and_then(|f| f.used_bytes), cs.logs.as_ref().and_then(|f| f.used_bytes)) {
                    (Some(r), Some(l)) => Some(r + l),
                    _ => None,
                }
            }
            _ => None,
        };
        let request = c.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get(resource));
        let request_value = request.and_then(|q| ParsedQuantity::parse_saturating(&q.0).ok()).map_or(0, |q| q.value());
        if let Some(u) = usage
            && i128::from(u) > request_value
        {
            let request_text = request.map_or_else(|| "0".to_owned(), |q| q.0.clone());
            m += &format!(
                "Container {} was using {}, request is {}, has larger consumption of {resource}. ",
                c.name,
                format_binary_si(i128::from(u)),
                request_text
            );
        }
    }
    m
}

/// The `kubelet_evictions` signal of an eviction for an emptyDir over its `sizeLimit`.
pub const SIGNAL_EMPTY_DIR_LIMIT: &str = "emptydirfs.limit";
/// ... for a pod over the sum of its containers' ephemeral-storage limits.
pub const SIGNAL_POD_LIMIT: &str = "ephemeralpodfs.limit";
/// ... for a container over its ephemeral-storage limit.
pub const SIGNAL_CONTAINER_LIMIT: &str = "ephemeralcontainerfs.limit";

/// Upstream's local storage isolation (`localStorageEviction`), checked for every pod at every
/// pass: an emptyDir over its `sizeLimit`, the pod over its ephemeral-storage limit (the sum of
/// its containers'), or a container whose writable layer and logs exceed its own. The message
/// and the `kubelet_evictions` signal.
pub fn local_storage_violation(pod: &Pod, stats: &PodStats) -> Option<(String, &'static str)> {
    let spec = pod.spec.as_ref()?;
    for v in spec.volumes.iter().flatten() {
        let Some(limit) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) else { continue };
        let Ok(size) = ParsedQuantity::parse_saturating(&limit.0).map(|q| q.value()) else { continue };
        let used = stats.volume_stats.iter().find(|s| s.name == v.name).and_then(|s| s.fs.used_bytes);
        if let Some(used) = used
            && size > 0
            && i128::from(used) > size
        {
            let message = format!("Usage of EmptyDir volume {:?} exceeds the limit {:?}. ", v.name, limit.0);
            return Some((message, SIGNAL_EMPTY_DIR_LIMIT));
        }
    }
    let (limits, _, _) = crate::admission::pod_limits(pod);
    if let Some(limit) = limits.get("ephemeral-storage").map(|n| n / 1_000_000_000) {
        let used = stats.ephemeral_storage.as_ref().and_then(|f| f.used_bytes).unwrap_or(0);
        if i128::from(used) > limit {
            let message = format!(
                "Pod ephemeral local storage usage exceeds the total limit of containers {}. ",
                format_binary_si(limit)
            );
            return Some((message, SIGNAL_POD_LIMIT));
        }
    }
    for cs in &stats.containers {
        let Some(c) = spec.containers.iter().find(|c| c.name == cs.name) else { continue };
        let Some(limit) = c.resources.as_ref().and_then(|r| r.limits.as_ref()).and_then(|l| l.get("ephemeral-storage"))
        else {
            continue;
        };
        let Ok(value) = ParsedQuantity::parse_saturating(&limit.0).map(|q| q.value()) else { continue };
        let used = cs.logs.as_ref().and_then(|f| f.used_bytes).unwrap_or(0)
            + cs.rootfs.as_ref().and_then(|f| f.used_bytes).unwrap_or(0);
        if value != 0 && i128::from(used) > value {
            let message = format!("Container {} exceeded its local ephemeral storage limit {:?}. ", c.name, limit.0);
            return Some((message, SIGNAL_CONTAINER_LIMIT));
        }
    }
    None
}

/// The summary the manager reads (the stats provider; faked in tests).
#[async_trait]
pub trait SummaryProvider: Send + Sync {
    async fn summary(&self) -> Result<Summary, String>;
}

#[async_trait]
impl SummaryProvider for crate::stats::StatsProvider {
    async fn summary(&self) -> Result<Summary, String> {
        crate::stats::StatsProvider::summary(self, false).await
    }
}

/// Frees what the node holds for disk signals: dead containers and unused images.
#[async_trait]
pub trait NodeReclaimer: Send + Sync {
    async fn reclaim_disk(&self);
}

/// The pods the manager may evict, and how.
pub trait PodEvictor: Send + Sync {
    fn active_pods(&self) -> Vec<Arc<Pod>>;
    /// Fails the pod with `message` (and a `DisruptionTarget` condition when `disruption`: the
    /// pressure evictions, not the local storage ones) and kills it with `grace` seconds.
    fn evict(&self, pod: &Arc<Pod>, grace: i64, message: String, disruption: bool);
}

/// The manager's state between passes.
pub struct EvictionManager {
    config: EvictionConfig,
    summary: Arc<dyn SummaryProvider>,
    reclaimer: Arc<dyn NodeReclaimer>,
    pods: Arc<dyn PodEvictor>,
    clock: Arc<dyn Clock>,
    pressure: Pressure,
    metrics: Option<Arc<crate::metrics::KubeletMetrics>>,
    /// Thresholds met at the last pass (kept until reclaimed past the minimum).
    last_met: Vec<Threshold>,
    /// When each (signal, hard) was first seen met.
    first_observed: HashMap<(Signal, bool), Duration>,
    /// When each condition was last seen.
    last_observed: HashMap<&'static str, Duration>,
    /// Pods this manager evicted that are still active (being killed): not evicted again.
    /// (Upstream's pass blocks until the evicted pod is cleaned up.)
    evicting: std::collections::HashSet<String>,
}

impl EvictionManager {
    pub fn new(
        config: EvictionConfig,
        summary: Arc<dyn SummaryProvider>,
        reclaimer: Arc<dyn NodeReclaimer>,
        pods: Arc<dyn PodEvictor>,
        clock: Arc<dyn Clock>,
        pressure: Pressure,
    ) -> Self {
        Self {
            config,
            summary,
            reclaimer,
            pods,
            clock,
            pressure,
            metrics: None,
            last_met: Vec::new(),
            first_observed: HashMap::new(),
            last_observed: HashMap::new(),
            evicting: std::collections::HashSet::new(),
        }
    }

    /// Counts evictions in `kubelet_evictions{eviction_signal}`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::KubeletMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Runs a pass every [`MONITORING_INTERVAL`] until shutdown.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(MONITORING_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.synchronize().await {
                tracing::error!("Eviction manager: failed to get summary stats: {e}");
            }
        }
    }

    /// The active pods not already being evicted (forgetting evicted pods once they are gone).
    fn candidates(&mut self) -> Vec<Arc<Pod>> {
        let active = self.pods.active_pods();
        self.evicting.retain(|uid| active.iter().any(|p| crate::runtime::labels::uid_of(p) == uid));
        active.into_iter().filter(|p| !self.evicting.contains(crate::runtime::labels::uid_of(p))).collect()
    }

    fn evict(&mut self, pod: &Arc<Pod>, grace: i64, message: String, disruption: bool, signal: &str) {
        self.pods.evict(pod, grace, message, disruption);
        self.evicting.insert(crate::runtime::labels::uid_of(pod).to_owned());
        if let Some(m) = &self.metrics {
            m.evictions.inc(&[signal]);
        }
    }

    /// Evicts (with no grace period) every pod over a local storage limit; the first one's UID.
    fn local_storage_eviction(&mut self, pods: &[Arc<Pod>], summary: &Summary) -> Option<String> {
        let by_uid: HashMap<&str, &PodStats> = summary.pods.iter().map(|p| (p.pod_ref.uid.as_str(), p)).collect();
        let mut first = None;
        for pod in pods {
            let uid = crate::runtime::labels::uid_of(pod).to_owned();
            let Some(stats) = by_uid.get(uid.as_str()) else { continue };
            let Some((message, signal)) = local_storage_violation(pod, stats) else { continue };
            if is_critical_pod(pod) {
                tracing::error!(pod = %pod_key(pod), "Eviction manager: cannot evict a critical pod: {message}");
                continue;
            }
            tracing::warn!(pod = %pod_key(pod), "eviction manager: evicting pod over its local storage limit: {message}");
            self.evict(pod, 0, message, false, signal);
            first.get_or_insert(uid);
        }
        first
    }

    /// One pass (upstream `synchronize`). Returns the UID of the pod evicted, if one was.
    pub async fn synchronize(&mut self) -> Result<Option<String>, String> {
        let summary = self.summary.summary().await?;
        let obs = observe(&summary);
        let now = self.clock.now();
        let mut met = thresholds_met(&self.config.thresholds, &obs, false);
        for t in thresholds_met(&self.last_met, &obs, true) {
            if !met.iter().any(|m| m.signal == t.signal && m.hard == t.hard) {
                met.push(t);
            }
        }
        self.first_observed.retain(|k, _| met.iter().any(|t| (t.signal, t.hard) == *k));
        for t in &met {
            self.first_observed.entry((t.signal, t.hard)).or_insert(now);
            self.last_observed.insert(t.signal.condition(), now);
        }
        let transition = self.config.pressure_transition_period;
        self.last_observed.retain(|_, seen| now.saturating_sub(*seen) < transition);
        let conditions: Vec<&'static str> = self.last_observed.keys().copied().collect();
        let was = self.pressure.conditions();
        self.pressure.set(conditions);
        let is = self.pressure.conditions();
        if was != is {
            tracing::info!(conditions = ?is, "eviction manager: node conditions changed");
        }
        self.last_met = met.clone();
        let candidates = self.candidates();
        if let Some(uid) = self.local_storage_eviction(&candidates, &summary) {
            return Ok(Some(uid));
        }
        let mut due: Vec<Threshold> = met
            .into_iter()
            .filter(|t| self.first_observed.get(&(t.signal, t.hard)).is_some_and(|f| now.saturating_sub(*f) >= t.grace))
            .collect();
        if due.is_empty() {
            return Ok(None);
        }
        // Memory first (upstream `byEvictionPriority`), then as configured.
        due.sort_by_key(|t| !t.signal.is_memory());
        let threshold = due.remove(0);
        tracing::warn!(signal = threshold.signal.as_str(), "eviction manager: attempting to reclaim");
        let mut obs = obs;
        let mut stats = summary;
        if matches!(threshold.signal.resource(), "ephemeral-storage" | "inodes") {
            self.reclaimer.reclaim_disk().await;
            stats = self.summary.summary().await?;
            obs = observe(&stats);
            if thresholds_met(std::slice::from_ref(&threshold), &obs, true).is_empty() {
                tracing::info!(signal = threshold.signal.as_str(), "eviction manager: node-level reclaim was enough");
                return Ok(None);
            }
        }
        let resource = threshold.signal.resource();
        let by_uid: HashMap<&str, &PodStats> = stats.pods.iter().map(|p| (p.pod_ref.uid.as_str(), p)).collect();
        let mut ranked: Vec<(Arc<Pod>, Option<&PodStats>)> =
            candidates.iter().map(|p| (p.clone(), by_uid.get(crate::runtime::labels::uid_of(p)).copied())).collect();
        rank(&mut ranked, resource);
        let Some((pod, pod_stats)) = ranked.into_iter().find(|(p, _)| !is_critical_pod(p)) else {
            tracing::info!("eviction manager: unable to evict any pods from the node");
            return Ok(None);
        };
        let message = eviction_message(resource, &pod, pod_stats, &threshold, obs.get(&threshold.signal));
        let grace = self.config.grace_period(&threshold, &pod);
        let uid = crate::runtime::labels::uid_of(&pod).to_owned();
        tracing::warn!(pod = %pod_key(&pod), signal = threshold.signal.as_str(), "eviction manager: evicting pod: {message}");
        self.evict(&pod, grace, message, true, threshold.signal.as_str());
        Ok(Some(uid))
    }
}

#[cfg(test)]
#[path = "eviction_tests.rs"]
mod tests;
