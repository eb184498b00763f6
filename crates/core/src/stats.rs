//! The node's and pods' resource usage for `/stats/summary` and `/metrics/resource`, as
//! upstream's CRI stats provider builds it (and, in [`cadvisor`], the cgroups
//! `/metrics/cadvisor` reports):
//!
//! - the node's CPU and memory from the root cgroup (cAdvisor's figures: working set = usage −
//!   inactive file), its network from the host's interfaces (`eth0` inlined), `fs` from the
//!   filesystem of the root directory, `runtime.imageFs` (= `containerFs`) from CRI
//!   `ImageFsInfo` with the capacity of its mount point, `rlimit` from /proc;
//! - pods from the runtime: sandboxes (of a pod's several, the ready ones or else the newest),
//!   their running containers, and CRI `ListContainerStats` for each container's CPU, working
//!   set and writable layer; logs are the disk usage of the container's log directory on the
//!   root filesystem; the pod's CPU and memory are its own cgroup's when it has one (with
//!   `cgroupsPerQOS`), else the sum of its containers' (upstream's fallback);
//!   `ephemeral-storage` adds up the containers' writable layers and logs, the pod's local
//!   volumes and its etc-hosts file;
//! - `usageNanoCores` is the rate between this read and the previous sample of the same
//!   counter (upstream keeps the same two-sample cache, refreshed by its eviction manager).
//!
//! Host figures come through [`HostStats`], so the assembly is tested over fakes.

mod cadvisor;
mod types;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cri::api;
use cri::{ImageService, RuntimeService};

use crate::clock::Clock;
pub use cadvisor::CgroupSeries;
pub use types::*;

/// The host's figures, as cAdvisor and upstream's fs helpers read them. Errors name the path
/// and the cause.
pub trait HostStats: Send + Sync + 'static {
    /// CPU and memory of the cgroup (`/` for the node).
    fn cgroup(&self, name: &str) -> Result<sys::stats::CgroupStats, String>;
    /// Everything cAdvisor reports of the cgroup (`/metrics/cadvisor`).
    fn cgroup_metrics(&self, name: &str) -> Result<sys::cgroup_metrics::CgroupMetrics, String>;
    /// The names of the cgroup's children (none when it is gone).
    fn cgroup_children(&self, name: &str) -> Vec<String>;
    /// When the cgroup was made, in seconds since the epoch.
    fn cgroup_created(&self, name: &str) -> Option<f64>;
    /// The processes in the cgroup and its descendants; None when it is not there.
    fn cgroup_processes(&self, name: &str) -> Option<u64>;
    /// The host's network interfaces.
    fn interfaces(&self) -> Result<Vec<sys::stats::InterfaceStats>, String>;
    /// The interfaces of the network namespace process `pid` is in (a pod's sandbox).
    fn process_interfaces(&self, pid: u32) -> Result<Vec<sys::stats::InterfaceStats>, String>;
    /// The filesystem holding `path`.
    fn fs(&self, path: &Path) -> Result<sys::stats::FsInfo, String>;
    /// Bytes and inodes used under `path` (upstream's `du`).
    fn disk_usage(&self, path: &Path) -> Result<sys::stats::DiskUsage, String>;
    fn rlimit(&self) -> Result<sys::stats::Rlimit, String>;
    /// Seconds since the epoch at boot.
    fn boot_time(&self) -> Option<u64>;
    /// The machine's memory in bytes.
    fn memory_capacity(&self) -> u64;
}

/// [`HostStats`] from /sys/fs/cgroup, /proc and statfs.
pub struct RealHostStats {
    pub cgroup_root: PathBuf,
    pub memory_capacity: u64,
    /// The cgroup filesystem's hierarchies, found on first use.
    cgroups: std::sync::OnceLock<Option<sys::cgroup::CgroupFs>>,
}

impl RealHostStats {
    pub fn new(cgroup_root: PathBuf, memory_capacity: u64) -> Self {
        Self { cgroup_root, memory_capacity, cgroups: std::sync::OnceLock::new() }
    }

    fn cgroupfs(&self) -> Result<&sys::cgroup::CgroupFs, String> {
        self.cgroups
            .get_or_init(|| sys::cgroup::CgroupFs::open(&self.cgroup_root).ok())
            .as_ref()
            .ok_or_else(|| format!("cannot read the cgroup filesystem at {}", self.cgroup_root.display()))
    }
}

impl HostStats for RealHostStats {
    fn cgroup(&self, name: &str) -> Result<sys::stats::CgroupStats, String> {
        sys::stats::cgroup_stats(&self.cgroup_root, name).map_err(|e| e.to_string())
    }
    fn cgroup_metrics(&self, name: &str) -> Result<sys::cgroup_metrics::CgroupMetrics, String> {
        self.cgroupfs()?.metrics(name).map_err(|e| e.to_string())
    }
    fn cgroup_children(&self, name: &str) -> Vec<String> {
        self.cgroupfs().ok().and_then(|fs| fs.children(name).ok()).unwrap_or_default()
    }
    fn cgroup_processes(&self, name: &str) -> Option<u64> {
        self.cgroupfs().ok()?.process_count(name)
    }
    fn cgroup_created(&self, name: &str) -> Option<f64> {
        let at = self.cgroupfs().ok()?.created(name)?;
        Some(at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64())
    }
    fn interfaces(&self) -> Result<Vec<sys::stats::InterfaceStats>, String> {
        sys::stats::net_dev(Path::new("/proc/net/dev")).map_err(|e| e.to_string())
    }
    fn process_interfaces(&self, pid: u32) -> Result<Vec<sys::stats::InterfaceStats>, String> {
        sys::stats::net_dev(&Path::new("/proc").join(pid.to_string()).join("net/dev")).map_err(|e| e.to_string())
    }
    fn fs(&self, path: &Path) -> Result<sys::stats::FsInfo, String> {
        sys::stats::fs_info(path).map_err(|e| e.to_string())
    }
    fn disk_usage(&self, path: &Path) -> Result<sys::stats::DiskUsage, String> {
        sys::stats::disk_usage(path).map_err(|e| e.to_string())
    }
    fn rlimit(&self) -> Result<sys::stats::Rlimit, String> {
        sys::stats::rlimit().map_err(|e| e.to_string())
    }
    fn boot_time(&self) -> Option<u64> {
        sys::stats::boot_time()
    }
    fn memory_capacity(&self) -> u64 {
        self.memory_capacity
    }
}

/// Where the provider looks.
#[derive(Debug, Clone)]
pub struct StatsSettings {
    pub node_name: String,
    /// The kubelet's root directory (`node.fs`, pod volumes and etc-hosts).
    pub root_dir: PathBuf,
    /// `podLogsDir`.
    pub pod_logs_dir: PathBuf,
    /// How long a pod's measured volume usage is reused (`volumeStatsAggPeriod`); zero turns
    /// volume measurement off, as upstream.
    pub volume_stats_agg_period: Duration,
    /// With `cgroupsPerQOS`, where the pods' own cgroups are: their CPU and memory are read
    /// there (sandbox and containers together, as upstream's cAdvisor-backed pod stats).
    pub pod_cgroups: Option<crate::cm::CgroupLayout>,
}

/// The upstream interface name inlined in `NetworkStats`.
const DEFAULT_INTERFACE: &str = "eth0";
/// Samples older than this leave the CPU cache (upstream `defaultCachePeriod`).
const CACHE_PERIOD: Duration = Duration::from_secs(600);
/// Samples closer together than this do not replace the cached one (a rate over a few
/// milliseconds is noise).
const MIN_SAMPLE_GAP: Duration = Duration::from_secs(1);
/// The CPU cache key of the node.
const NODE_KEY: &str = "/";

/// One CPU counter reading (at the source's time), the rate computed when it was taken, and
/// when this kubelet read it (for expiry).
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    at_ns: i64,
    usage: u64,
    rate: Option<u64>,
    read_ns: i64,
}

pub struct StatsProvider {
    runtime: Arc<dyn RuntimeService>,
    images: Arc<dyn ImageService>,
    host: Arc<dyn HostStats>,
    clock: Arc<dyn Clock>,
    settings: StatsSettings,
    cpu: Mutex<HashMap<String, CpuSample>>,
    /// Sandbox id → its process (the pod's network namespace) and image, asked of the runtime
    /// once; pruned to the sandboxes each read finds.
    sandboxes: Mutex<HashMap<String, SandboxInfo>>,
    /// One storage walk at a time: concurrent reads wait instead of walking the same trees.
    walking: tokio::sync::Mutex<()>,
    /// Pod UID → its volumes as last measured (upstream's `fsResourceAnalyzer` cache).
    volumes: Arc<Mutex<HashMap<String, MeasuredVolumes>>>,
}

/// A pod's volumes as measured at `at_ns`, and what of them is on the root filesystem (counted
/// in its ephemeral storage).
#[derive(Debug, Clone)]
struct MeasuredVolumes {
    at_ns: i64,
    stats: Vec<VolumeStats>,
    ephemeral: (Option<u64>, Option<u64>),
}

fn value(v: &Option<api::UInt64Value>) -> Option<u64> {
    v.as_ref().map(|v| v.value)
}

/// `FsStats` of a filesystem: capacity, free space and inodes (`used` as given).
fn fs_stats(time: Time, fs: &sys::stats::FsInfo, used: Option<u64>, inodes_used: Option<u64>) -> FsStats {
    FsStats {
        time,
        available_bytes: Some(fs.available_bytes),
        capacity_bytes: Some(fs.capacity_bytes),
        used_bytes: used,
        inodes_free: Some(fs.inodes_free),
        inodes: Some(fs.inodes),
        inodes_used,
    }
}

/// `a + b` where an unset side contributes nothing (upstream `addUsage`).
fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.saturating_add(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl StatsProvider {
    pub fn new(
        runtime: Arc<dyn RuntimeService>,
        images: Arc<dyn ImageService>,
        host: Arc<dyn HostStats>,
        clock: Arc<dyn Clock>,
        settings: StatsSettings,
    ) -> Self {
        Self {
            runtime,
            images,
            host,
            clock,
            settings,
            cpu: Mutex::new(HashMap::new()),
            sandboxes: Mutex::new(HashMap::new()),
            walking: tokio::sync::Mutex::new(()),
            volumes: Arc::default(),
        }
    }

    fn now_ns(&self) -> i64 {
        i64::try_from(self.clock.now().as_nanos()).unwrap_or(i64::MAX)
    }

    /// Records a CPU counter reading and answers the rate in nanocores since the previous one
    /// (the previous rate when the runtime gave the same sample again; none after a reset).
    fn usage_nano_cores(&self, key: &str, at_ns: i64, usage: u64) -> Option<u64> {
        let mut cache = self.cpu.lock().unwrap_or_else(PoisonError::into_inner);
        let rate = match cache.get(key) {
            // Too close to the previous sample for a steady rate: keep the previous one.
            Some(prev) if at_ns >= prev.at_ns && at_ns - prev.at_ns < MIN_SAMPLE_GAP.as_nanos() as i64 => {
                return prev.rate;
            }
            Some(prev) if usage >= prev.usage => {
                let dt = (at_ns - prev.at_ns) as f64;
                Some(((usage - prev.usage) as f64 / dt * 1e9) as u64)
            }
            _ => None,
        };
        let read_ns = self.now_ns();
        cache.insert(key.to_owned(), CpuSample { at_ns, usage, rate, read_ns });
        let oldest = read_ns.saturating_sub(CACHE_PERIOD.as_nanos() as i64);
        cache.retain(|_, s| s.read_ns >= oldest);
        rate
    }

    /// The pod's CPU and memory from its own cgroup; false when it has none (or it cannot be
    /// read), and the containers' sum stands in.
    fn pod_cgroup_cpu_and_memory(&self, time: Time, pod: &mut PodStats) -> bool {
        let Some(layout) = &self.settings.pod_cgroups else { return false };
        let uid = pod.pod_ref.uid.clone();
        for cgroup in layout.pod_cgroup_candidates(&uid) {
            let Ok(cg) = self.host.cgroup(&layout.name(&cgroup)) else { continue };
            let (Some(cpu), Some(m)) = (cg.cpu_usage_nanoseconds, cg.memory) else { continue };
            pod.cpu = Some(CpuStats {
                time,
                usage_nano_cores: self.usage_nano_cores(&format!("pod/{uid}"), time.0, cpu),
                usage_core_nano_seconds: Some(cpu),
            });
            pod.memory = Some(MemoryStats {
                time,
                available_bytes: None,
                usage_bytes: Some(m.usage_bytes),
                working_set_bytes: Some(m.working_set_bytes),
                rss_bytes: Some(m.rss_bytes),
                page_faults: Some(m.page_faults),
                major_page_faults: Some(m.major_page_faults),
            });
            pod.process_stats =
                self.host.cgroup_processes(&layout.name(&cgroup)).map(|n| ProcessStats { process_count: Some(n) });
            return true;
        }
        false
    }

    /// The whole summary, or (`only_cpu_and_memory`) the node's and pods' CPU and memory only.
    /// Fails when the runtime or the root cgroup cannot be read, as upstream's does.
    pub async fn summary(&self, only_cpu_and_memory: bool) -> Result<Summary, String> {
        let now = self.now_ns();
        let time = Time(now);
        let node_cgroup = self.host.cgroup(NODE_KEY).map_err(|e| format!("failed to get root cgroup stats: {e}"))?;
        let cpu = CpuStats {
            time,
            usage_nano_cores: Some(
                node_cgroup.cpu_usage_nanoseconds.and_then(|u| self.usage_nano_cores(NODE_KEY, now, u)).unwrap_or(0),
            ),
            usage_core_nano_seconds: Some(node_cgroup.cpu_usage_nanoseconds.unwrap_or(0)),
        };
        let memory = match &node_cgroup.memory {
            Some(m) => MemoryStats {
                time,
                available_bytes: Some(self.host.memory_capacity().saturating_sub(m.working_set_bytes)),
                usage_bytes: Some(m.usage_bytes),
                working_set_bytes: Some(m.working_set_bytes),
                rss_bytes: Some(m.rss_bytes),
                page_faults: Some(m.page_faults),
                major_page_faults: Some(m.major_page_faults),
            },
            None => MemoryStats { time, working_set_bytes: Some(0), ..Default::default() },
        };
        let boot = self.host.boot_time().map_or_else(|| time, |b| Time((b as i64).saturating_mul(1_000_000_000)));
        let mut node = NodeStats {
            node_name: self.settings.node_name.clone(),
            start_time: boot,
            cpu: Some(cpu),
            memory: Some(memory),
            ..Default::default()
        };
        let root_fs = if only_cpu_and_memory {
            None
        } else {
            let root = self.host.fs(&self.settings.root_dir).map_err(|e| format!("failed to get rootFs stats: {e}"))?;
            node.fs =
                Some(fs_stats(time, &root, Some(root.used_bytes), Some(root.inodes.saturating_sub(root.inodes_free))));
            node.runtime = Some(self.image_fs().await?);
            node.network = self.host.interfaces().ok().map(|ifs| network_stats(time, &ifs));
            node.rlimit = self.host.rlimit().ok().map(|r| RlimitStats {
                time,
                maxpid: Some(r.max_pid),
                curproc: Some(r.cur_proc),
            });
            Some(root)
        };
        let pods = self.pods(time, root_fs.as_ref()).await?;
        Ok(Summary { node, pods })
    }

    /// The image filesystem as the summary reports it (`runtime.imageFs`); image garbage
    /// collection sizes its work from it.
    pub async fn image_fs_stats(&self) -> Result<FsStats, String> {
        let stats = self.image_fs().await?;
        stats.image_fs.ok_or_else(|| "failed to get imageFs stats: imageFs information is unavailable".to_owned())
    }

    /// `runtime.imageFs` (= `containerFs`): the runtime's first image filesystem, with the
    /// capacity of its mount point when it can be read.
    async fn image_fs(&self) -> Result<RuntimeStats, String> {
        let filesystems = self.images.image_fs_info().await.map_err(|e| format!("failed to get imageFs stats: {e}"))?;
        let fs = filesystems.first().ok_or("failed to get imageFs stats: imageFs information is unavailable")?;
        let time = Time(fs.timestamp);
        let mount = fs.fs_id.as_ref().map(|id| id.mountpoint.clone()).unwrap_or_default();
        let stats = match self.host.fs(Path::new(&mount)) {
            Ok(info) => fs_stats(time, &info, value(&fs.used_bytes), value(&fs.inodes_used)),
            Err(_) => FsStats {
                time,
                used_bytes: value(&fs.used_bytes),
                inodes_used: value(&fs.inodes_used),
                ..Default::default()
            },
        };
        Ok(RuntimeStats { image_fs: Some(stats.clone()), container_fs: Some(stats) })
    }

    /// The pods with a running sandbox and their running containers; storage figures only
    /// when `root_fs` is given (the full summary).
    async fn pods(&self, time: Time, root_fs: Option<&sys::stats::FsInfo>) -> Result<Vec<PodStats>, String> {
        let list_err = |e: cri::Error| format!("failed to list pod stats: {e}");
        let sandboxes = kept_sandboxes(self.runtime.list_pod_sandbox(None).await.map_err(list_err)?);
        let running = api::ContainerStateValue { state: api::ContainerState::ContainerRunning as i32 };
        let containers = self
            .runtime
            .list_containers(Some(api::ContainerFilter { state: Some(running), ..Default::default() }))
            .await
            .map_err(list_err)?;
        let stats = self.runtime.list_container_stats(None).await.map_err(list_err)?;
        let containers: HashMap<&str, &api::Container> = containers.iter().map(|c| (c.id.as_str(), c)).collect();
        let mut pods: Vec<PodStats> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for s in &stats {
            let Some(id) = s.attributes.as_ref().map(|a| a.id.as_str()) else { continue };
            let Some(container) = containers.get(id) else { continue };
            let Some(sandbox) = sandboxes.iter().find(|sb| sb.id == container.pod_sandbox_id) else { continue };
            let i = *index.entry(sandbox.id.as_str()).or_insert_with(|| {
                pods.push(pod_stats(sandbox));
                pods.len() - 1
            });
            let cs = self.container_stats(time, container, s, root_fs);
            pods[i].containers.push(cs);
        }
        let ids: HashMap<String, String> =
            index.iter().map(|(id, i)| (pods[*i].pod_ref.uid.clone(), (*id).to_owned())).collect();
        for pod in &mut pods {
            pod.containers.sort_by(|a, b| a.name.cmp(&b.name));
            if !self.pod_cgroup_cpu_and_memory(time, pod) {
                sum_cpu_and_memory(pod);
            }
            if root_fs.is_some()
                && let Some(id) = ids.get(&pod.pod_ref.uid)
            {
                pod.network = self.pod_network(time, id).await;
            }
        }
        if let Some(root) = root_fs.copied() {
            // Walking log directories and volumes may take a while: off the async workers.
            let storage =
                Storage { host: self.host.clone(), settings: self.settings.clone(), volumes: self.volumes.clone() };
            let _one_at_a_time = self.walking.lock().await;
            pods = tokio::task::spawn_blocking(move || {
                for pod in &mut pods {
                    storage.pod_storage(time, pod, &root);
                }
                let live: std::collections::HashSet<&str> = pods.iter().map(|p| p.pod_ref.uid.as_str()).collect();
                storage.volumes.lock().unwrap_or_else(PoisonError::into_inner).retain(|uid, _| live.contains(&**uid));
                pods
            })
            .await
            .map_err(|e| format!("measuring the pods' storage: {e}"))?;
        }
        let live: std::collections::HashSet<&String> = ids.values().collect();
        self.sandboxes.lock().unwrap_or_else(PoisonError::into_inner).retain(|id, _| live.contains(id));
        pods.sort_by(|a, b| (&a.pod_ref.namespace, &a.pod_ref.name).cmp(&(&b.pod_ref.namespace, &b.pod_ref.name)));
        Ok(pods)
    }

    fn container_stats(
        &self,
        time: Time,
        container: &api::Container,
        s: &api::ContainerStats,
        root_fs: Option<&sys::stats::FsInfo>,
    ) -> ContainerStats {
        let name = container.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let cpu = match &s.cpu {
            Some(c) => {
                let usage = value(&c.usage_core_nano_seconds);
                let nano_cores = value(&c.usage_nano_cores)
                    .or_else(|| usage.and_then(|u| self.usage_nano_cores(&container.id, c.timestamp, u)));
                CpuStats { time: Time(c.timestamp), usage_nano_cores: nano_cores, usage_core_nano_seconds: usage }
            }
            None => CpuStats { time, usage_nano_cores: Some(0), usage_core_nano_seconds: Some(0) },
        };
        let memory = match &s.memory {
            Some(m) => MemoryStats {
                time: Time(m.timestamp),
                // containerd answers 0 for a container without a memory limit, where upstream
                // (from the cgroup) leaves the field out.
                available_bytes: value(&m.available_bytes).filter(|v| *v > 0),
                usage_bytes: value(&m.usage_bytes),
                working_set_bytes: Some(value(&m.working_set_bytes).unwrap_or(0)),
                rss_bytes: value(&m.rss_bytes),
                page_faults: value(&m.page_faults),
                major_page_faults: value(&m.major_page_faults),
            },
            None => MemoryStats { time, working_set_bytes: Some(0), ..Default::default() },
        };
        let mut cs = ContainerStats {
            name: name.clone(),
            start_time: Time(container.created_at),
            cpu: Some(cpu),
            memory: Some(memory),
            ..Default::default()
        };
        if root_fs.is_none() {
            return cs;
        }
        if let Some(layer) = &s.writable_layer {
            let layer_time = Time(layer.timestamp);
            let mount = layer.fs_id.as_ref().map(|id| id.mountpoint.clone()).unwrap_or_default();
            cs.rootfs = Some(match self.host.fs(Path::new(&mount)) {
                Ok(info) => fs_stats(layer_time, &info, value(&layer.used_bytes), value(&layer.inodes_used)),
                Err(_) => FsStats {
                    time: layer_time,
                    used_bytes: value(&layer.used_bytes),
                    inodes_used: value(&layer.inodes_used),
                    ..Default::default()
                },
            });
        }
        cs
    }

    /// The interfaces of the sandbox's network namespace, `eth0` inlined (upstream reads them
    /// through cAdvisor from the sandbox's cgroup); None when the runtime gives no process.
    async fn pod_network(&self, time: Time, sandbox_id: &str) -> Option<NetworkStats> {
        let info = self.sandbox_info(sandbox_id).await?;
        self.host.process_interfaces(info.pid).ok().map(|ifs| network_stats(time, &ifs))
    }

    /// The sandbox's process and image from the runtime's verbose status (cached); None while
    /// it has no process.
    async fn sandbox_info(&self, sandbox_id: &str) -> Option<SandboxInfo> {
        if let Some(info) = self.sandboxes.lock().unwrap_or_else(PoisonError::into_inner).get(sandbox_id) {
            return Some(info.clone());
        }
        let info = self.runtime.pod_sandbox_info(sandbox_id).await.ok()?;
        let doc: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
        let pid = u32::try_from(doc.get("pid")?.as_u64()?).ok().filter(|p| *p > 0)?;
        let image = doc.get("image").and_then(|i| i.as_str()).unwrap_or_default().to_owned();
        let info = SandboxInfo { pid, image };
        self.sandboxes.lock().unwrap_or_else(PoisonError::into_inner).insert(sandbox_id.to_owned(), info.clone());
        Some(info)
    }
}

/// What the runtime's verbose status says of a sandbox.
#[derive(Debug, Clone)]
struct SandboxInfo {
    pid: u32,
    image: String,
}

/// The disk-usage side of the summary (logs, volumes, ephemeral storage): plain blocking
/// filesystem walks, run on a blocking thread.
struct Storage {
    host: Arc<dyn HostStats>,
    settings: StatsSettings,
    volumes: Arc<Mutex<HashMap<String, MeasuredVolumes>>>,
}

impl Storage {
    /// `<podLogsDir>/<namespace>_<name>_<uid>`.
    fn pod_log_dir(&self, pod: &PodReference) -> PathBuf {
        self.settings.pod_logs_dir.join(format!("{}_{}_{}", pod.namespace, pod.name, pod.uid))
    }

    /// The summed disk usage of the regular files directly in `dir` (upstream
    /// `fileMetricsByDir`); None when the directory cannot be read.
    fn files_usage(&self, dir: &Path) -> Option<(u64, u64)> {
        let entries = std::fs::read_dir(dir).ok()?;
        let mut total = (0u64, 0u64);
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if let Ok(u) = self.host.disk_usage(&e.path()) {
                total = (total.0.saturating_add(u.bytes), total.1.saturating_add(u.inodes));
            }
        }
        Some(total)
    }

    /// The pod's volumes as measured within the last `volumeStatsAggPeriod`, measuring them
    /// again when that is older; None when volume measurement is off.
    fn pod_volumes(&self, time: Time, uid: &str) -> Option<MeasuredVolumes> {
        let period = self.settings.volume_stats_agg_period;
        if period.is_zero() {
            return None;
        }
        let fresh = |m: &&MeasuredVolumes| time.0.saturating_sub(m.at_ns) < period.as_nanos() as i64;
        if let Some(m) = self.volumes.lock().unwrap_or_else(PoisonError::into_inner).get(uid).filter(fresh) {
            return Some(m.clone());
        }
        let measured = self.measure_volumes(time, uid);
        self.volumes.lock().unwrap_or_else(PoisonError::into_inner).insert(uid.to_owned(), measured.clone());
        Some(measured)
    }

    /// Walks the pod's local volumes under `pods/<uid>/volumes`.
    fn measure_volumes(&self, time: Time, uid: &str) -> MeasuredVolumes {
        let volumes_dir = self.settings.root_dir.join("pods").join(uid).join("volumes");
        let mut m = MeasuredVolumes { at_ns: time.0, stats: Vec::new(), ephemeral: (None, None) };
        for (plugin, name, path) in volume_dirs(&volumes_dir) {
            // Only the node's own volume kinds are measured: walking a network volume would
            // walk the remote share on every read.
            if !LOCAL_PLUGINS.contains(&plugin.as_str()) {
                continue;
            }
            let (Ok(usage), Ok(fs)) = (self.host.disk_usage(&path), self.host.fs(&path)) else { continue };
            // A volume mounted on its own (tmpfs: memory emptyDir, secrets, projected) is not
            // on the root filesystem.
            if LOCAL_EPHEMERAL_PLUGINS.contains(&plugin.as_str()) && !is_mount_point(&path) {
                m.ephemeral = (add(m.ephemeral.0, Some(usage.bytes)), add(m.ephemeral.1, Some(usage.inodes)));
            }
            m.stats.push(VolumeStats { fs: fs_stats(time, &fs, Some(usage.bytes), Some(usage.inodes)), name });
        }
        m.stats.sort_by(|a, b| a.name.cmp(&b.name));
        m
    }

    /// The containers' logs, the pod's local volumes (`volume`) and `ephemeral-storage` (upstream
    /// `makePodStorageStats` and `calcEphemeralStorage`).
    fn pod_storage(&self, time: Time, pod: &mut PodStats, root: &sys::stats::FsInfo) {
        for c in &mut pod.containers {
            let dir = self.pod_log_dir(&pod.pod_ref).join(&c.name);
            c.logs = self.files_usage(&dir).map(|(bytes, inodes)| fs_stats(time, root, Some(bytes), Some(inodes)));
        }
        let mut total = fs_stats(time, root, None, None);
        let mut count = |bytes: Option<u64>, inodes: Option<u64>| {
            total.used_bytes = add(total.used_bytes, bytes);
            total.inodes_used = add(total.inodes_used, inodes);
        };
        for c in &pod.containers {
            if let Some(r) = &c.rootfs {
                count(r.used_bytes, r.inodes_used);
                if let Some(l) = &c.logs {
                    count(l.used_bytes, l.inodes_used);
                }
            }
        }
        if let Some(v) = self.pod_volumes(time, &pod.pod_ref.uid) {
            count(v.ephemeral.0, v.ephemeral.1);
            pod.volume_stats = v.stats;
        }
        if let Some((bytes, inodes)) = self.files_usage(&self.pod_log_dir(&pod.pod_ref)) {
            count(Some(bytes), Some(inodes));
        }
        let hosts = self.settings.root_dir.join("pods").join(&pod.pod_ref.uid).join("etc-hosts");
        if let Ok(u) = self.host.disk_usage(&hosts) {
            count(Some(u.bytes), Some(u.inodes));
        }
        pod.ephemeral_storage = Some(total);
    }
}

/// The volume plugins whose data lives on the node's root filesystem (upstream
/// `IsLocalEphemeralVolume`: gitRepo, disk-backed emptyDir, configMap).
const LOCAL_EPHEMERAL_PLUGINS: [&str; 3] =
    ["kubernetes.io~empty-dir", "kubernetes.io~configmap", "kubernetes.io~git-repo"];

/// The volume plugins whose directories are on the node (measured with `du`).
const LOCAL_PLUGINS: [&str; 6] = [
    "kubernetes.io~empty-dir",
    "kubernetes.io~configmap",
    "kubernetes.io~git-repo",
    "kubernetes.io~secret",
    "kubernetes.io~projected",
    "kubernetes.io~downward-api",
];

/// Whether `path` is on another device than its parent directory (a mount of its own).
fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    match (dev(path), path.parent().and_then(dev)) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    }
}

/// `(plugin, volume name, path)` under `pods/<uid>/volumes/<plugin>/<name>`.
fn volume_dirs(volumes: &Path) -> Vec<(String, String, PathBuf)> {
    let mut out = Vec::new();
    for plugin in std::fs::read_dir(volumes).into_iter().flatten().flatten() {
        let plugin_name = plugin.file_name().to_string_lossy().into_owned();
        for volume in std::fs::read_dir(plugin.path()).into_iter().flatten().flatten() {
            out.push((plugin_name.clone(), volume.file_name().to_string_lossy().into_owned(), volume.path()));
        }
    }
    out
}

/// Of the sandboxes of one pod (by namespace and name), the ready ones, or else the newest
/// (upstream `removeTerminatedPods`).
fn kept_sandboxes(sandboxes: Vec<api::PodSandbox>) -> Vec<api::PodSandbox> {
    let key =
        |s: &api::PodSandbox| s.metadata.as_ref().map(|m| (m.namespace.clone(), m.name.clone())).unwrap_or_default();
    let ready = |s: &api::PodSandbox| s.state == api::PodSandboxState::SandboxReady as i32;
    let with_ready: HashSet<(String, String)> = sandboxes.iter().filter(|s| ready(s)).map(key).collect();
    let mut newest: HashMap<(String, String), usize> = HashMap::new();
    for (i, s) in sandboxes.iter().enumerate() {
        let k = key(s);
        if with_ready.contains(&k) {
            continue;
        }
        match newest.get(&k) {
            Some(&j) if sandboxes[j].created_at >= s.created_at => {}
            _ => {
                newest.insert(k, i);
            }
        }
    }
    let keep: HashSet<usize> = newest.into_values().collect();
    sandboxes.into_iter().enumerate().filter(|(i, s)| ready(s) || keep.contains(i)).map(|(_, s)| s).collect()
}

fn pod_stats(sandbox: &api::PodSandbox) -> PodStats {
    let m = sandbox.metadata.clone().unwrap_or_default();
    PodStats {
        pod_ref: PodReference { name: m.name, namespace: m.namespace, uid: m.uid },
        start_time: Time(sandbox.created_at),
        ..Default::default()
    }
}

/// The pod's CPU and memory as the sum of its containers', stamped with the last container's
/// time (upstream's fallback without a pod cgroup).
fn sum_cpu_and_memory(pod: &mut PodStats) {
    let Some(last) = pod.containers.last() else { return };
    let mut cpu = CpuStats { time: last.cpu.as_ref().map(|c| c.time).unwrap_or_default(), ..Default::default() };
    let mut memory =
        MemoryStats { time: last.memory.as_ref().map(|m| m.time).unwrap_or_default(), ..Default::default() };
    for c in &pod.containers {
        if let Some(x) = &c.cpu {
            cpu.usage_core_nano_seconds = add(cpu.usage_core_nano_seconds, x.usage_core_nano_seconds);
            cpu.usage_nano_cores = add(cpu.usage_nano_cores, x.usage_nano_cores);
        }
        if let Some(x) = &c.memory {
            memory.working_set_bytes = add(memory.working_set_bytes, x.working_set_bytes);
            memory.usage_bytes = add(memory.usage_bytes, x.usage_bytes);
            memory.rss_bytes = add(memory.rss_bytes, x.rss_bytes);
        }
    }
    pod.cpu = Some(cpu);
    pod.memory = Some(memory);
}

/// The interfaces, `eth0` (if present) inlined as the default.
fn network_stats(time: Time, interfaces: &[sys::stats::InterfaceStats]) -> NetworkStats {
    let all: Vec<InterfaceStats> = interfaces
        .iter()
        .map(|i| InterfaceStats {
            name: i.name.clone(),
            rx_bytes: Some(i.rx_bytes),
            rx_errors: Some(i.rx_errors),
            tx_bytes: Some(i.tx_bytes),
            tx_errors: Some(i.tx_errors),
        })
        .collect();
    let default = all.iter().find(|i| i.name == DEFAULT_INTERFACE).cloned().unwrap_or_default();
    NetworkStats { time, default, interfaces: all }
}
