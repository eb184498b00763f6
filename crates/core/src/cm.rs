//! The container manager's cgroups (upstream `pkg/kubelet/cm`): with `cgroupsPerQOS` the node
//! allocatable cgroup `<cgroupRoot>/kubepods`, the QoS cgroups `kubepods/burstable` and
//! `kubepods/besteffort` (Guaranteed pods sit in `kubepods` itself), and one cgroup per pod,
//! `pod<uid>`, which the runtime gets as the sandbox's cgroup parent.
//!
//! - A pod's cgroup is created before its first sandbox with the limits of
//!   `ResourceConfigForPod` and never changed afterwards (as upstream without in-place resize);
//!   it is removed when the pod is terminated, and housekeeping removes those of pods nobody
//!   knows (processes killed first).
//! - The burstable cgroup's cpu shares follow the burstable pods' cpu requests; they are
//!   recomputed when a pod cgroup is created, after a pod is killed and every minute.
//! - Names follow the driver: cgroupfs `/kubepods/burstable/pod<uid>`, systemd
//!   `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice`. Both are
//!   written directly to the cgroup filesystem; with the systemd driver upstream goes through
//!   systemd's D-Bus API instead, which rkubelet does not speak.

use std::collections::BTreeMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Container, Pod};
use sys::cgroup::{CgroupFs, CgroupResources};

use crate::admission::{pod_limits, pod_requests};
use crate::runtime::labels::uid_of;
use crate::runtime::resources::{milli_cpu_to_quota, milli_cpu_to_shares};
use crate::status::qos::{BEST_EFFORT, BURSTABLE, GUARANTEED, get_pod_qos};

/// Upstream `MinShares`: what BestEffort pods (and their QoS cgroup) get.
const MIN_SHARES: u64 = 2;
/// Upstream `guaranteedOOMScoreAdj` and `besteffortOOMScoreAdj`.
const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;
/// Upstream's priority class of pods the node cannot run without.
const NODE_CRITICAL_PRIORITY_CLASS: &str = "system-node-critical";

/// How cgroups are named for the runtime (`cgroupDriver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Cgroupfs,
    Systemd,
}

impl Driver {
    /// The pod UID a pod cgroup's directory is named after: `pod<uid>`, or with systemd
    /// `kubepods-burstable-pod<uid_>.slice`.
    pub fn pod_uid_of(self, dir: &str) -> Option<String> {
        let leaf = match self {
            Driver::Cgroupfs => dir.to_owned(),
            Driver::Systemd => dir.strip_suffix(".slice")?.rsplit('-').next()?.replace('_', "-"),
        };
        leaf.strip_prefix("pod").filter(|u| !u.is_empty() && !u.contains("pod")).map(str::to_owned)
    }

    /// The container ID a runtime's container cgroup is named after: `<id>` with cgroupfs,
    /// `cri-containerd-<id>.scope` (or another runtime's prefix) with systemd.
    pub fn container_id_of(self, dir: &str) -> &str {
        match self {
            Driver::Cgroupfs => dir,
            Driver::Systemd => dir.strip_suffix(".scope").and_then(|l| l.rsplit('-').next()).unwrap_or(dir),
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "cgroupfs" => Ok(Self::Cgroupfs),
            "systemd" => Ok(Self::Systemd),
            other => Err(format!("invalid configuration: cgroupDriver {other:?} must be \"cgroupfs\" or \"systemd\"")),
        }
    }
}

/// A cgroup as its components (upstream `CgroupName`): `["kubepods", "burstable", "pod<uid>"]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CgroupName(pub Vec<String>);

impl CgroupName {
    /// Upstream `ParseCgroupfsToCgroupName`: `/a/b` → `[a, b]`; `/` and "" are the root.
    pub fn parse_cgroupfs(s: &str) -> Self {
        Self(s.split('/').filter(|p| !p.is_empty()).map(str::to_owned).collect())
    }

    pub fn child(&self, component: &str) -> Self {
        let mut parts = self.0.clone();
        parts.push(component.to_owned());
        Self(parts)
    }

    /// `/a/b/c`.
    pub fn to_cgroupfs(&self) -> String {
        format!("/{}", self.0.join("/"))
    }

    /// Upstream `ToSystemd` with the slice expanded: `-` in a component becomes `_`, each
    /// ancestor is a slice named by the components so far: `/a.slice/a-b.slice/a-b-c.slice`.
    pub fn to_systemd(&self) -> String {
        if self.0.iter().all(String::is_empty) {
            return "/".into();
        }
        let escaped: Vec<String> = self.0.iter().map(|p| p.replace('-', "_")).collect();
        let mut path = String::new();
        for i in 1..=escaped.len() {
            path.push('/');
            path.push_str(&escaped[..i].join("-"));
            path.push_str(".slice");
        }
        path
    }
}

/// Where the kubelet's cgroups are: the driver and the node allocatable cgroup
/// (`<cgroupRoot>/kubepods`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLayout {
    pub driver: Driver,
    pub node: CgroupName,
}

impl CgroupLayout {
    /// The layout under `cgroup_root` (upstream defaults an empty root to `/`).
    pub fn new(driver: Driver, cgroup_root: &str) -> Self {
        Self { driver, node: CgroupName::parse_cgroupfs(cgroup_root).child("kubepods") }
    }

    /// The cgroup's path on the cgroup filesystem as the driver names it (upstream
    /// `CgroupManager.Name`), also what the runtime gets as a cgroup parent.
    pub fn name(&self, cgroup: &CgroupName) -> String {
        match self.driver {
            Driver::Cgroupfs => cgroup.to_cgroupfs(),
            Driver::Systemd => cgroup.to_systemd(),
        }
    }

    /// The QoS cgroup of a class: `kubepods` itself for Guaranteed.
    pub fn qos_cgroup(&self, qos: &str) -> CgroupName {
        match qos {
            BURSTABLE => self.node.child("burstable"),
            BEST_EFFORT => self.node.child("besteffort"),
            _ => self.node.clone(),
        }
    }

    /// Upstream `GetPodContainerName`: `pod<uid>` under the pod's QoS cgroup.
    pub fn pod_cgroup(&self, pod: &Pod) -> CgroupName {
        self.qos_cgroup(&get_pod_qos(pod)).child(&format!("pod{}", uid_of(pod)))
    }

    /// Where a pod's cgroup may be, whatever its class (for readers without the spec).
    pub fn pod_cgroup_candidates(&self, uid: &str) -> Vec<CgroupName> {
        [GUARANTEED, BURSTABLE, BEST_EFFORT].iter().map(|q| self.qos_cgroup(q).child(&format!("pod{uid}"))).collect()
    }
}

fn to_i64(v: i128) -> i64 {
    i64::try_from(v.max(0)).unwrap_or(i64::MAX)
}

/// Upstream `HugePageUnitSizeFromByteSize`: 2097152 → `2MB`, 1073741824 → `1GB`.
pub fn hugepage_unit_size(mut bytes: u64) -> Option<String> {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut i = 0;
    while bytes >= 1024 && bytes.is_multiple_of(1024) && i < UNITS.len() - 1 {
        bytes /= 1024;
        i += 1;
    }
    (bytes > 0).then(|| format!("{bytes}{}", UNITS[i]))
}

/// `hugepages-<size>` entries of a resource list (nano-units) as (kernel page size, bytes).
fn hugepages(list: &BTreeMap<String, i128>) -> Vec<(String, u64)> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for (name, nanos) in list {
        let Some(size) = name.strip_prefix("hugepages-") else { continue };
        let Some(size) = crate::quantity::ParsedQuantity::parse_saturating(size).ok().map(|q| to_i64(q.value())) else {
            continue;
        };
        if let Some(unit) = hugepage_unit_size(u64::try_from(size).unwrap_or(0)) {
            let bytes = u64::try_from(to_i64(nanos / 1_000_000_000)).unwrap_or(0);
            *out.entry(unit).or_insert(0) += bytes;
        }
    }
    out.into_iter().collect()
}

/// Upstream `ResourceConfigForPod`: cpu shares from the pod's cpu requests (overhead and init
/// containers included); a CFS quota over `period_us` from its cpu limits when every container
/// limits cpu (always for Guaranteed) and `enforce_cpu_limits`; a memory limit when every
/// container limits memory; BestEffort pods get the minimum shares only. Hugepages from the
/// requests, for every class.
pub fn resource_config_for_pod(pod: &Pod, enforce_cpu_limits: bool, period_us: u64) -> CgroupResources {
    let requests = pod_requests(pod, &|_| true);
    let (limits, cpu_declared, memory_declared) = pod_limits(pod);
    let milli = |l: &BTreeMap<String, i128>, k: &str| l.get(k).map_or(0, |n| to_i64(n / 1_000_000));
    let cpu_shares = u64::try_from(milli_cpu_to_shares(milli(&requests, "cpu"))).unwrap_or(MIN_SHARES);
    let mut cpu_quota = milli_cpu_to_quota(milli(&limits, "cpu"), i64::try_from(period_us).unwrap_or(100_000));
    if !enforce_cpu_limits {
        cpu_quota = -1;
    }
    let memory = limits.get("memory").map_or(0, |n| to_i64(n / 1_000_000_000));
    let hugepage_limits = hugepages(&requests);
    match get_pod_qos(pod).as_str() {
        GUARANTEED => CgroupResources {
            cpu_shares: Some(cpu_shares),
            cpu_quota: Some(cpu_quota),
            cpu_period: Some(period_us),
            memory_limit: Some(memory),
            hugepage_limits,
            ..Default::default()
        },
        BURSTABLE => CgroupResources {
            cpu_shares: Some(cpu_shares),
            cpu_quota: cpu_declared.then_some(cpu_quota),
            cpu_period: cpu_declared.then_some(period_us),
            memory_limit: memory_declared.then_some(memory),
            hugepage_limits,
            ..Default::default()
        },
        _ => CgroupResources { cpu_shares: Some(MIN_SHARES), hugepage_limits, ..Default::default() },
    }
}

/// Upstream `IsNodeCriticalPod`: a critical pod of the `system-node-critical` class.
fn is_node_critical_pod(pod: &Pod) -> bool {
    crate::admission::is_critical_pod(pod)
        && pod.spec.as_ref().and_then(|s| s.priority_class_name.as_deref()) == Some(NODE_CRITICAL_PRIORITY_CLASS)
}

/// A container's memory request in bytes.
fn memory_request(c: &Container) -> i64 {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("memory"))
        .and_then(|q| crate::quantity::ParsedQuantity::parse_saturating(&q.0).ok())
        .map_or(0, |q| to_i64(q.value()))
}

/// Upstream `GetContainerOOMScoreAdjust`: -997 for node-critical and Guaranteed pods, 1000 for
/// BestEffort; Burstable containers `1000 - 1000*request/capacity`, a sidecar no higher than
/// the pod's smallest regular container, kept within [3, 999].
pub fn oom_score_adj(pod: &Pod, container: &Container, memory_capacity: u64) -> i64 {
    if is_node_critical_pod(pod) {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match get_pod_qos(pod).as_str() {
        GUARANTEED => return GUARANTEED_OOM_SCORE_ADJ,
        BEST_EFFORT => return BEST_EFFORT_OOM_SCORE_ADJ,
        _ => {}
    }
    let capacity = i64::try_from(memory_capacity).unwrap_or(i64::MAX).max(1);
    let adj = |request: i64| 1000 - (1000i128 * i128::from(request) / i128::from(capacity)) as i64;
    let mut score = adj(memory_request(container));
    let spec = pod.spec.as_ref();
    let sidecar = container.restart_policy.as_deref() == Some("Always")
        && spec.is_some_and(|s| s.init_containers.iter().flatten().any(|c| c.name == container.name));
    if sidecar && let Some(min) = spec.and_then(|s| s.containers.iter().map(memory_request).min()) {
        score = score.min(adj(min));
    }
    if score < 1000 + GUARANTEED_OOM_SCORE_ADJ {
        return 1000 + GUARANTEED_OOM_SCORE_ADJ;
    }
    if score == BEST_EFFORT_OOM_SCORE_ADJ {
        return score - 1;
    }
    score
}

/// The settings of the pods' cgroups.
#[derive(Debug, Clone)]
pub struct PodCgroupSettings {
    pub layout: CgroupLayout,
    /// `cpuCFSQuota`.
    pub enforce_cpu_limits: bool,
    /// `cpuCFSQuotaPeriod` in µs.
    pub cpu_period_us: u64,
    /// `podPidsLimit` (> 0 sets `pids.max`).
    pub pod_pids_limit: i64,
}

/// The kubelet's cgroups on one cgroup filesystem.
pub struct ContainerManager {
    fs: CgroupFs,
    settings: PodCgroupSettings,
    /// One QoS update at a time.
    qos: Mutex<()>,
}

impl ContainerManager {
    pub fn new(fs: CgroupFs, settings: PodCgroupSettings) -> Self {
        Self { fs, settings, qos: Mutex::new(()) }
    }

    pub fn layout(&self) -> &CgroupLayout {
        &self.settings.layout
    }

    fn path(&self, cgroup: &CgroupName) -> String {
        self.settings.layout.name(cgroup)
    }

    /// Upstream `setupNode` for `cgroupsPerQOS`: `cgroup_root` must exist; `kubepods` is
    /// created (or updated) with the node allocatable limits, then the QoS cgroups.
    pub fn start(&self, cgroup_root: &str, node_allocatable: &CgroupResources) -> Result<(), String> {
        let root = CgroupName::parse_cgroupfs(cgroup_root);
        if !self.fs.exists(&self.path(&root)) {
            return Err(format!("invalid configuration: cgroup-root {cgroup_root:?} doesn't exist"));
        }
        let node = self.settings.layout.node.clone();
        self.ensure(&node, node_allocatable).map_err(|e| format!("failed to create node allocatable cgroup: {e}"))?;
        let unbounded = CgroupResources::default();
        let best_effort = CgroupResources { cpu_shares: Some(MIN_SHARES), ..Default::default() };
        for (qos, res) in [(BURSTABLE, &unbounded), (BEST_EFFORT, &best_effort)] {
            let name = self.settings.layout.qos_cgroup(qos);
            self.ensure(&name, res)
                .map_err(|e| format!("failed to initialize top level QOS containers: {}: {e}", self.path(&name)))?;
        }
        Ok(())
    }

    /// Creates `cgroup` with `res`, or applies `res` to it when it exists.
    fn ensure(&self, cgroup: &CgroupName, res: &CgroupResources) -> Result<(), sys::Error> {
        let path = self.path(cgroup);
        if self.fs.exists(&path) { self.fs.set(&path, res) } else { self.fs.create(&path, res) }
    }

    pub fn pod_cgroup_exists(&self, pod: &Pod) -> bool {
        self.fs.exists(&self.path(&self.settings.layout.pod_cgroup(pod)))
    }

    /// Upstream `EnsureExists`: creates the pod's cgroup with its limits unless it exists.
    pub fn ensure_pod_cgroup(&self, pod: &Pod) -> Result<(), String> {
        let name = self.settings.layout.pod_cgroup(pod);
        let path = self.path(&name);
        if self.fs.exists(&path) {
            return Ok(());
        }
        let mut res = resource_config_for_pod(pod, self.settings.enforce_cpu_limits, self.settings.cpu_period_us);
        if self.settings.pod_pids_limit > 0 {
            res.pids_limit = Some(self.settings.pod_pids_limit);
        }
        if !self.fs.has_hugetlb() {
            res.hugepage_limits.clear();
        }
        self.fs.create(&path, &res).map_err(|e| format!("failed to create container for {name:?} : {e}"))
    }

    /// Upstream `UpdateQOSCgroups`: burstable shares from the active burstable pods' cpu
    /// requests, besteffort at the minimum.
    pub fn update_qos_cgroups(&self, active: &[&Pod]) -> Result<(), String> {
        let _one = self.qos.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let burstable_milli: i128 = active
            .iter()
            .filter(|p| get_pod_qos(p) == BURSTABLE)
            .map(|p| pod_requests(p, &|_| true).get("cpu").copied().unwrap_or(0) / 1_000_000)
            .sum();
        let updates = [
            (BURSTABLE, u64::try_from(milli_cpu_to_shares(to_i64(burstable_milli))).unwrap_or(MIN_SHARES)),
            (BEST_EFFORT, MIN_SHARES),
        ];
        for (qos, shares) in updates {
            let name = self.settings.layout.qos_cgroup(qos);
            let res = CgroupResources { cpu_shares: Some(shares), ..Default::default() };
            self.ensure(&name, &res).map_err(|e| format!("failed to update QoS cgroup {}: {e}", self.path(&name)))?;
        }
        Ok(())
    }

    /// Upstream `PodContainerManager.Destroy`: kills what still runs in the cgroup, then removes
    /// it.
    pub fn destroy(&self, cgroup: &CgroupName) -> Result<(), String> {
        let path = self.path(cgroup);
        self.fs
            .kill_all(&path)
            .map_err(|e| format!("failed to kill all the processes attached to the {path} cgroups : {e}"))?;
        self.fs.remove(&path).map_err(|e| format!("failed to delete cgroup paths for {path} : {e}"))
    }

    /// Upstream `enforceExistingCgroup`: limits an existing cgroup the kubelet does not own
    /// (`systemReservedCgroup`, `kubeReservedCgroup`); a missing one is an error naming its
    /// missing directories.
    pub fn enforce_existing(&self, cgroup: &str, res: &CgroupResources) -> Result<(), String> {
        let missing = self.fs.missing_paths(cgroup);
        if !missing.is_empty() {
            let list: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
            return Err(format!("cgroup {cgroup:?} has some missing paths: {}", list.join(", ")));
        }
        self.fs.set(cgroup, res).map_err(|e| e.to_string())
    }

    /// The pod's cgroup, wherever its class put it, when it exists.
    pub fn find_pod_cgroup(&self, uid: &str) -> Option<CgroupName> {
        self.settings.layout.pod_cgroup_candidates(uid).into_iter().find(|c| self.fs.exists(&self.path(c)))
    }

    /// Upstream `ReduceCPULimits`: the minimum shares for a pod cgroup that cannot go yet.
    pub fn reduce_cpu_limits(&self, cgroup: &CgroupName) -> Result<(), String> {
        let res = CgroupResources { cpu_shares: Some(MIN_SHARES), ..Default::default() };
        self.fs.set(&self.path(cgroup), &res).map_err(|e| e.to_string())
    }

    /// Upstream `GetAllPodsFromCgroups`: pod UID → its cgroup, from the QoS cgroups' children.
    pub fn pods_in_cgroups(&self) -> Result<BTreeMap<String, CgroupName>, String> {
        let mut out = BTreeMap::new();
        for qos in [GUARANTEED, BURSTABLE, BEST_EFFORT] {
            let parent = self.settings.layout.qos_cgroup(qos);
            let children = self
                .fs
                .children(&self.path(&parent))
                .map_err(|e| format!("failed to read the cgroup directory {}: {e}", self.path(&parent)))?;
            for child in children {
                if let Some(uid) = self.settings.layout.driver.pod_uid_of(&child) {
                    let cgroup = parent.child(&format!("pod{uid}"));
                    out.insert(uid, cgroup);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "cm_tests.rs"]
mod tests;
