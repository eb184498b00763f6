//! Wiring: builds the kubelet from its configuration, starts every loop, and shuts down on
//! SIGTERM/SIGINT without touching running pods (a kubelet restart must not kill pods).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use core_kubelet::clock::RealClock;
use core_kubelet::config::KubeletConfiguration;
use core_kubelet::events::{ApiRecorder, EventRecorder, LogRecorder};
use core_kubelet::kubelet::{Kubelet, SyncLoop, SyncLoopHealth};
use core_kubelet::pleg::Pleg;
use core_kubelet::pod_dirs::PodDirs;
use core_kubelet::pod_workers::PodWorkers;
use core_kubelet::runtime::dns::{DnsSettings, HostResolver};
use core_kubelet::runtime::manager::RuntimeManager;
use core_kubelet::runtime::sandbox::RuntimeSettings;
use core_kubelet::source::file::FileSource;
use core_kubelet::source::{API_SOURCE, FILE_SOURCE};
use core_kubelet::status_manager::StatusManager;
use core_kubelet::volume::VolumeManager;
use cri::{RemoteRuntime, RuntimeService};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub fn init_logging(verbosity: u8) {
    let default = match verbosity {
        0..=1 => "info",
        2..=3 => "info,rkubelet=debug,core_kubelet=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RKUBELET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn node_name(cfg: &KubeletConfiguration) -> anyhow::Result<String> {
    let name = match cfg.hostname_override.as_deref().filter(|h| !h.is_empty()) {
        Some(h) => h.to_string(),
        None => sys::hostname().context("reading the hostname (set --hostname-override)")?,
    };
    Ok(name.trim().to_lowercase())
}

/// The node's IPs: `--node-ip`, else the IPv4 address of the default route's interface
/// (upstream also tries resolving the hostname first; on nodes without DNS for themselves the
/// default route is what it ends up with).
/// The addresses `--node-ip` names (`0.0.0.0` and `::` mean "detect", as upstream).
pub(crate) fn given_node_ips(cfg: &KubeletConfiguration) -> Vec<String> {
    cfg.node_ip
        .iter()
        .flat_map(|ips| ips.split(','))
        .map(|ip| ip.trim().to_string())
        .filter(|ip| !ip.is_empty() && ip != "0.0.0.0" && ip != "::")
        .collect()
}

/// `--node-ip`, else upstream's choice from the node name (an IP itself, its DNS answer, the
/// default route: [`sys::node_info::choose_node_ip`]). The lookup is bounded to 10 s.
async fn node_ips(cfg: &KubeletConfiguration, node: &str) -> Vec<String> {
    let given = given_node_ips(cfg);
    if !given.is_empty() {
        return given;
    }
    let lookup = tokio::net::lookup_host((node, 0));
    let resolved: Vec<std::net::IpAddr> = match tokio::time::timeout(Duration::from_secs(10), lookup).await {
        Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
        Ok(Err(e)) => {
            tracing::debug!(node, "node name does not resolve: {e}");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!(node, "looking up the node name timed out; using the default route's address");
            Vec::new()
        }
    };
    let local = sys::node_info::local_addresses();
    let chosen = sys::node_info::choose_node_ip(node, &resolved, &local, sys::node_info::default_route_ipv4());
    chosen.map(|ip| vec![ip.to_string()]).unwrap_or_default()
}

fn host_resolver(path: &str) -> anyhow::Result<Option<HostResolver>> {
    if path.is_empty() {
        return Ok(None);
    }
    let r = sys::read_resolv_conf(std::path::Path::new(path)).with_context(|| format!("reading resolvConf {path}"))?;
    Ok(Some(HostResolver { nameservers: r.nameservers, searches: r.searches, options: r.options }))
}

/// Waits until the runtime answers `Version`, logging each failure (a runtime that is down at
/// start is retried, never fatal).
async fn wait_for_runtime(rt: &RemoteRuntime, shutdown: &CancellationToken) -> bool {
    let mut delay = Duration::from_secs(1);
    loop {
        match rt.version().await {
            Ok(v) => {
                tracing::info!(
                    runtime = %v.runtime_name,
                    version = %v.runtime_version,
                    api = %v.runtime_api_version,
                    "container runtime is up"
                );
                return true;
            }
            Err(e) => tracing::error!("{e}; retrying in {delay:?}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

fn shutdown_on_signals(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down, pods keep running"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down, pods keep running"),
        }
        shutdown.cancel();
    });
    Ok(())
}

pub async fn run(cfg: KubeletConfiguration) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    shutdown_on_signals(shutdown.clone())?;
    let node = node_name(&cfg)?;
    let root_dir = PathBuf::from(&cfg.root_dir);
    std::fs::create_dir_all(&root_dir).with_context(|| format!("creating root dir {}", root_dir.display()))?;
    tracing::info!(node = %node, root_dir = %root_dir.display(), "starting rkubelet {}", env!("CARGO_PKG_VERSION"));

    let metrics = core_kubelet::metrics::KubeletMetrics::new();
    let remote = Arc::new(
        RemoteRuntime::connect(&cfg.container_runtime_endpoint, cfg.runtime_request_timeout)
            .with_context(|| format!("container runtime endpoint {}", cfg.container_runtime_endpoint))?
            .with_observer(metrics.clone()),
    );
    let cri: Arc<dyn RuntimeService> = remote.clone();

    let statuses = StatusManager::default();
    let sync_health = SyncLoopHealth::new(cfg.sync_frequency);
    let pleg = Pleg::new(cri.clone(), Duration::from_secs(1)).with_metrics(metrics.clone());
    let statuses_for_api = statuses.clone();
    let machine = sys::node_info::machine_info().unwrap_or_else(|e| {
        tracing::warn!("reading the machine's capacity: {e}; memory-based OOM scores and limits are off");
        Default::default()
    });
    let memory_capacity = machine.memory_bytes;
    let allocatable = node_allocatable(&cfg, &machine, &root_dir)?;
    let (cm, allocatable_events) = start_container_manager(&cfg, &machine, &allocatable)?;
    let stats = Arc::new(core_kubelet::stats::StatsProvider::new(
        cri.clone(),
        remote.clone(),
        Arc::new(core_kubelet::stats::RealHostStats::new(PathBuf::from("/sys/fs/cgroup"), memory_capacity)),
        Arc::new(RealClock),
        core_kubelet::stats::StatsSettings {
            node_name: node.clone(),
            root_dir: root_dir.clone(),
            pod_logs_dir: PathBuf::from(&cfg.pod_logs_dir),
            volume_stats_agg_period: cfg.volume_stats_agg_period,
            pod_cgroups: cm.as_ref().map(|c| c.layout().clone()),
        },
    ));
    let host = Arc::new(crate::host::NodeHost {
        node: node.clone(),
        probe_counters: std::sync::OnceLock::new(),
        sync_loop: sync_health.clone(),
        pleg: pleg.health(),
        statuses: statuses.clone(),
        cri: cri.clone(),
        stats,
        metrics: metrics.clone(),
        machine: machine.clone(),
    });
    if cfg.healthz_port > 0 {
        let addr: SocketAddr = format!("{}:{}", cfg.healthz_bind_address, cfg.healthz_port)
            .parse()
            .with_context(|| format!("healthz address {}:{}", cfg.healthz_bind_address, cfg.healthz_port))?;
        server::serve_healthz(addr, host.clone(), shutdown.clone());
    }

    if !wait_for_runtime(&remote, &shutdown).await {
        return Ok(());
    }

    let clock = Arc::new(RealClock);
    let node_ips = node_ips(&cfg, &node).await;
    // Cluster mode: the API side starts before pods are synced so that events and statuses of
    // the first syncs reach the API server.
    if cfg.bootstrap_kubeconfig.is_some() && cfg.kubeconfig.is_none() {
        anyhow::bail!("--bootstrap-kubeconfig needs --kubeconfig: the bootstrapped credentials are written there");
    }
    let pressure = core_kubelet::eviction::Pressure::default();
    let cluster = match &cfg.kubeconfig {
        Some(kubeconfig) => {
            let mut settings = crate::cluster::node_settings(&cfg, &node, &node_ips);
            settings.reservation = allocatable.reservation;
            settings.startup_events = allocatable_events.clone();
            Some(
                crate::cluster::start(
                    &cfg,
                    kubeconfig,
                    settings,
                    cri.clone(),
                    remote.clone(),
                    pleg.health(),
                    pressure.clone(),
                    metrics.clone(),
                    &shutdown,
                )
                .await?,
            )
        }
        None => None,
    };
    crate::kubelet_api::start(
        &cfg,
        &node,
        &node_ips,
        cluster.as_ref().map(|c| c.client.clone()),
        host.clone(),
        metrics.clone(),
        &shutdown,
    )?;
    let recorder: Arc<dyn EventRecorder> = match &cluster {
        Some(c) => Arc::new(ApiRecorder(c.events.clone())),
        None => Arc::new(LogRecorder),
    };
    let dirs = PodDirs::new(root_dir.clone());
    let mounter: Arc<dyn sys::Mounter> = Arc::new(sys::RealMounter::new());
    let mut volumes = VolumeManager::new(dirs.clone(), mounter);
    if let Some(c) = &cluster {
        // The value was validated with the rest of the configuration.
        let strategy = api::objects::ChangeDetection::from_config(&cfg.config_map_and_secret_change_detection_strategy)
            .unwrap_or(api::objects::ChangeDetection::Watch);
        volumes = volumes.with_objects(Arc::new(api::objects::ApiObjects::new(c.client.clone(), strategy)));
    }
    let volumes = Arc::new(volumes);
    let settings = RuntimeSettings {
        node_name: node.clone(),
        host_ips: node_ips.clone(),
        pod_logs_dir: PathBuf::from(&cfg.pod_logs_dir),
        legacy_logs_dir: Some(PathBuf::from(core_kubelet::gc::containers::LEGACY_CONTAINER_LOGS_DIR)),
        dns: DnsSettings {
            cluster_dns: cfg.cluster_dns.clone(),
            cluster_domain: cfg.cluster_domain.clone(),
            host: host_resolver(&cfg.resolv_conf)?,
        },
        resources: core_kubelet::runtime::resources::ResourceSettings {
            memory_capacity,
            cpu_cfs_quota: cfg.cpu_cfs_quota,
            cpu_period_us: i64::try_from(cfg.cpu_cfs_quota_period.as_micros()).unwrap_or(100_000),
            hugepage_sizes: hugepage_sizes(
                sys::cgroup::CgroupFs::open(std::path::Path::new("/sys/fs/cgroup")).is_ok_and(|fs| fs.has_hugetlb()),
                &machine,
            ),
            cgroups: cm.as_ref().map(|c| c.layout().clone()),
        },
    };
    let (probe_results, probe_updates) = core_kubelet::prober::ProbeResults::new();
    let runtime = Arc::new(
        RuntimeManager::new(
            cri.clone(),
            remote.clone(),
            volumes.clone(),
            dirs.clone(),
            settings,
            recorder.clone(),
            clock.clone(),
        )
        .with_probe_results(probe_results)
        .with_metrics(metrics.clone()),
    );
    let mut kubelet =
        Kubelet::new(runtime, cri.clone(), volumes, dirs, statuses, recorder, clock, node_ips.first().cloned())
            .with_metrics(metrics.clone());
    if let Some(cm) = cm {
        kubelet = kubelet.with_container_manager(cm);
    }
    let kubelet = Arc::new(kubelet);
    let _ = host.probe_counters.set(kubelet.probe_counters());
    let workers = PodWorkers::new(kubelet.clone(), cfg.sync_frequency, shutdown.clone());

    let (snap_tx, snap_rx) = mpsc::channel(16);
    let mut sources = Vec::new();
    if let Some(path) = Some(cfg.static_pod_path.as_str()).filter(|p| !p.is_empty()) {
        let source = FileSource::new(PathBuf::from(path), node.clone(), cfg.file_check_frequency);
        tokio::spawn(source.run(snap_tx.clone(), shutdown.clone()));
        sources.push(FILE_SOURCE);
        tracing::info!(path, "watching static pod manifests");
    }
    let (mut admission, mut static_pods) = (None, None);
    if let Some(c) = &cluster {
        c.start_pod_source(snap_tx.clone(), &shutdown);
        sources.push(API_SOURCE);
        static_pods = Some(c.start_status(statuses_for_api.clone(), &shutdown));
        admission = Some(c.admission());
    }
    if sources.is_empty() {
        tracing::warn!("no staticPodPath / --pod-manifest-path and no --kubeconfig: no pod source configured");
    }
    drop(snap_tx);
    let (pleg_tx, pleg_rx) = mpsc::channel(1024);
    tokio::spawn(pleg.run(pleg_tx, shutdown.clone()));

    let sources_ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc_policy = core_kubelet::gc::ContainerGcPolicy {
        min_age: cfg.minimum_container_ttl_duration,
        max_per_pod_container: cfg.maximum_dead_containers_per_container,
        max_containers: cfg.maximum_dead_containers,
    };
    let container_gc = core_kubelet::gc::ContainerGc::new(
        cri.clone(),
        gc_policy,
        PathBuf::from(&cfg.pod_logs_dir),
        kubelet.clock.clone(),
    );
    let container_gc = Arc::new(container_gc);
    let gc_pods: Arc<dyn core_kubelet::gc::PodStateProvider> = Arc::new(workers.clone());
    tokio::spawn(core_kubelet::gc::run_container_gc(
        container_gc.clone(),
        gc_pods.clone(),
        sources_ready.clone(),
        kubelet.recorder.clone(),
        node.clone(),
        shutdown.clone(),
    ));

    let image_policy = core_kubelet::gc::ImageGcPolicy {
        high_threshold_percent: cfg.image_gc_high_threshold_percent,
        low_threshold_percent: cfg.image_gc_low_threshold_percent,
        min_age: cfg.image_minimum_gc_age,
        max_age: cfg.image_maximum_gc_age,
    };
    let image_gc = core_kubelet::gc::ImageGc::new(
        cri.clone(),
        remote.clone(),
        host.stats.clone(),
        image_policy,
        kubelet.clock.clone(),
        kubelet.recorder.clone(),
        node.clone(),
    )
    .with_metrics(metrics.clone());
    let image_gc = Arc::new(image_gc);
    tokio::spawn(core_kubelet::gc::run_image_gc(
        image_gc.clone(),
        kubelet.clock.clone(),
        kubelet.recorder.clone(),
        node.clone(),
        shutdown.clone(),
    ));

    match core_kubelet::logs::rotation::LogRotationPolicy::from_config(&cfg).map_err(anyhow::Error::msg)? {
        Some(policy) => {
            let logs =
                core_kubelet::logs::rotation::ContainerLogManager::new(cri.clone(), policy, kubelet.clock.clone());
            tokio::spawn(Arc::new(logs).run(shutdown.clone()));
        }
        None => tracing::info!("container log rotation is off (negative containerLogMaxSize)"),
    }

    let reclaimer = core_kubelet::gc::DiskReclaimer {
        containers: container_gc,
        images: image_gc,
        pods: gc_pods,
        sources_ready: sources_ready.clone(),
    };
    let eviction = core_kubelet::eviction::EvictionManager::new(
        core_kubelet::eviction::EvictionConfig::from_config(&cfg).map_err(anyhow::Error::msg)?,
        host.stats.clone(),
        Arc::new(reclaimer),
        Arc::new(core_kubelet::kubelet::KubeletEvictor { kubelet: kubelet.clone(), workers: workers.clone() }),
        kubelet.clock.clone(),
        pressure.clone(),
    )
    .with_metrics(metrics.clone());
    tokio::spawn(eviction.run(shutdown.clone()));

    SyncLoop {
        kubelet,
        workers,
        health: sync_health,
        sources,
        admission,
        static_pods,
        probe_updates: Some(probe_updates),
        sources_ready,
        pressure,
    }
    .run(snap_rx, pleg_rx, shutdown.clone())
    .await;
    shutdown.cancel();
    tracing::info!("rkubelet stopped");
    Ok(())
}

/// The page sizes containers get hugepage limits for: the host's, only when the hugetlb
/// controller is there — runc fails a container whose hugetlb limit it has no cgroup for —,
/// with or without pod cgroups.
fn hugepage_sizes(has_hugetlb: bool, machine: &sys::node_info::MachineInfo) -> Vec<String> {
    if !has_hugetlb {
        return Vec::new();
    }
    machine
        .hugepages
        .iter()
        .filter_map(|(kib, _)| core_kubelet::cm::hugepage_unit_size(kib.saturating_mul(1024)))
        .collect()
}

/// Node allocatable as configured: the system + kube reservation, the capacity it is checked
/// against, and what `status.allocatable` holds back.
struct NodeAllocatable {
    reserved: core_kubelet::node_allocatable::Reserved,
    capacity: core_kubelet::node_allocatable::Capacity,
    reservation: api::node_status::AllocatableReservation,
}

/// Upstream `validateNodeAllocatable` at the container manager's start: a reservation (with the
/// hard eviction thresholds) beyond capacity stops the kubelet.
fn node_allocatable(
    cfg: &KubeletConfiguration,
    machine: &sys::node_info::MachineInfo,
    root_dir: &std::path::Path,
) -> anyhow::Result<NodeAllocatable> {
    use core_kubelet::node_allocatable::{
        Capacity, ThresholdValue, allocatable_reservation, check_reservation, parse_reserved, parse_thresholds,
    };
    // The configuration was validated: these parse.
    let reserved = parse_reserved(&cfg.system_reserved)
        .map_err(anyhow::Error::msg)?
        .plus(parse_reserved(&cfg.kube_reserved).map_err(anyhow::Error::msg)?);
    let hard = parse_thresholds(&cfg.eviction_hard).map_err(anyhow::Error::msg)?;
    let capacity = Capacity {
        cpu_millis: machine.num_cpus.saturating_mul(1000),
        memory: machine.memory_bytes,
        ephemeral_storage: sys::node_info::filesystem_capacity(root_dir).ok(),
    };
    check_reservation(allocatable_reservation(reserved, &hard, capacity), capacity)
        .map_err(|e| anyhow::anyhow!("failed to start the container manager: {e}"))?;
    let memory_eviction = hard.get("memory.available").map_or(0, |t| t.of(machine.memory_bytes));
    let (nodefs_bytes, nodefs_fraction) = match hard.get("nodefs.available") {
        Some(ThresholdValue::Quantity(q)) => (*q, 0.0),
        Some(ThresholdValue::Fraction(f)) => (0, *f),
        None => (0, 0.0),
    };
    let reservation = api::node_status::AllocatableReservation {
        cpu_millis: reserved.cpu_millis,
        memory: reserved.memory.saturating_add(memory_eviction),
        ephemeral_storage: reserved.ephemeral_storage.saturating_add(nodefs_bytes),
        ephemeral_fraction: nodefs_fraction,
    };
    Ok(NodeAllocatable { reserved, capacity, reservation })
}

/// Events the container manager's start leaves for the node: (warning, reason, message).
type StartupEvents = Vec<(bool, String, String)>;

/// With `cgroupsPerQOS`: the container manager, after `setupNode` made `<cgroupRoot>/kubepods`
/// (capacity − system − kube reserved when `pods` is enforced, else capacity) and the QoS
/// cgroups, and limited the existing system-reserved / kube-reserved cgroups when asked. A
/// missing cgroup root or a cgroup that cannot be written stops the kubelet, as upstream's
/// does.
fn start_container_manager(
    cfg: &KubeletConfiguration,
    machine: &sys::node_info::MachineInfo,
    allocatable: &NodeAllocatable,
) -> anyhow::Result<(Option<Arc<core_kubelet::cm::ContainerManager>>, StartupEvents)> {
    use core_kubelet::cm::{CgroupLayout, ContainerManager, Driver, PodCgroupSettings};
    use core_kubelet::node_allocatable as na;
    if !cfg.cgroups_per_qos {
        return Ok((None, Vec::new()));
    }
    let root = if cfg.cgroup_root.is_empty() { "/" } else { cfg.cgroup_root.as_str() };
    let driver = Driver::parse(&cfg.cgroup_driver).map_err(anyhow::Error::msg)?;
    let fs =
        sys::cgroup::CgroupFs::open(std::path::Path::new("/sys/fs/cgroup")).context("reading the cgroup filesystem")?;
    let cm = ContainerManager::new(
        fs,
        PodCgroupSettings {
            layout: CgroupLayout::new(driver, root),
            enforce_cpu_limits: cfg.cpu_cfs_quota,
            cpu_period_us: u64::try_from(cfg.cpu_cfs_quota_period.as_micros()).unwrap_or(100_000),
            pod_pids_limit: cfg.pod_pids_limit,
        },
    );
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|p| p.trim().parse::<u64>().ok());
    let enforce = |level: &str| cfg.enforce_node_allocatable.iter().any(|l| l == level);
    let mut node =
        na::kubepods_resources(allocatable.capacity, pid_max, allocatable.reserved, enforce(na::ENFORCE_PODS));
    if machine.memory_bytes == 0 {
        // The machine's memory could not be read: no memory limit rather than a zero one.
        node.memory_limit = None;
    }
    cm.start(root, &node).map_err(|e| anyhow::anyhow!("failed to start the container manager: {e}"))?;
    tracing::info!(cgroup = %cm.layout().name(&cm.layout().node), driver = %cfg.cgroup_driver, "pod cgroups enabled");
    let mut events =
        vec![(false, "NodeAllocatableEnforced".to_owned(), "Updated Node Allocatable limit across pods".to_owned())];
    for (level, compressible, cgroup, list, what) in [
        (na::ENFORCE_SYSTEM, false, &cfg.system_reserved_cgroup, &cfg.system_reserved, "System Reserved"),
        (
            na::ENFORCE_SYSTEM_COMPRESSIBLE,
            true,
            &cfg.system_reserved_cgroup,
            &cfg.system_reserved,
            "System Reserved Compressible",
        ),
        (na::ENFORCE_KUBE, false, &cfg.kube_reserved_cgroup, &cfg.kube_reserved, "Kube Reserved"),
        (
            na::ENFORCE_KUBE_COMPRESSIBLE,
            true,
            &cfg.kube_reserved_cgroup,
            &cfg.kube_reserved,
            "Kube Reserved Compressible",
        ),
    ] {
        if !enforce(level) {
            continue;
        }
        let applied = match na::reserved_cgroup_resources(list, compressible) {
            Some(res) => cm.enforce_existing(cgroup, &res),
            None => Err(format!("{cgroup:?} cgroup is not configured properly")),
        };
        if let Err(e) = applied {
            anyhow::bail!(
                "failed to start the container manager: Failed to enforce {what} Cgroup Limits on {cgroup:?}: {e}"
            );
        }
        let which = if level.starts_with("system") { "system" } else { "kube" };
        events.push((
            false,
            "NodeAllocatableEnforced".to_owned(),
            format!("Updated limits on {which} reserved cgroup {cgroup}"),
        ));
    }
    Ok((Some(Arc::new(cm)), events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hugepage_limits_only_with_the_hugetlb_controller() {
        let machine = sys::node_info::MachineInfo { hugepages: vec![(2048, 0), (1_048_576, 0)], ..Default::default() };
        assert_eq!(hugepage_sizes(true, &machine), ["2MB", "1GB"]);
        assert!(hugepage_sizes(false, &machine).is_empty(), "no hugetlb cgroup: no limits, whatever cgroupsPerQOS");
    }
}
