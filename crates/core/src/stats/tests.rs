use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cri::RuntimeService;
use cri::api;
use cri::fake::FakeRuntime;

use super::*;
use crate::clock::FakeClock;

/// Host figures from a table; disk usage is the real walk of the test's temporary files.
struct FakeHost {
    cpu: Mutex<u64>,
    /// Cgroup → its children, for the cAdvisor walk.
    tree: Mutex<HashMap<String, Vec<String>>>,
}

impl HostStats for FakeHost {
    fn cgroup(&self, name: &str) -> Result<sys::stats::CgroupStats, String> {
        // The pod cgroup of pod u2 (Burstable); every other pod has none.
        if name == "/kubepods/burstable/podu2" {
            return Ok(sys::stats::CgroupStats {
                cpu_usage_nanoseconds: Some(9_000_000_000),
                memory: Some(sys::stats::MemoryStats {
                    usage_bytes: 900,
                    working_set_bytes: 800,
                    rss_bytes: 700,
                    page_faults: 3,
                    major_page_faults: 0,
                }),
            });
        }
        if name.starts_with("/kubepods/") {
            return Ok(sys::stats::CgroupStats { cpu_usage_nanoseconds: None, memory: None });
        }
        assert_eq!(name, "/");
        Ok(sys::stats::CgroupStats {
            cpu_usage_nanoseconds: Some(*self.cpu.lock().unwrap_or_else(PoisonError::into_inner)),
            memory: Some(sys::stats::MemoryStats {
                usage_bytes: 3000,
                working_set_bytes: 2000,
                rss_bytes: 1000,
                page_faults: 7,
                major_page_faults: 1,
            }),
        })
    }
    fn cgroup_metrics(&self, name: &str) -> Result<sys::cgroup_metrics::CgroupMetrics, String> {
        let tree = self.tree.lock().unwrap_or_else(PoisonError::into_inner);
        let known =
            name == "/" || tree.contains_key(name) || tree.values().flatten().any(|c| name.ends_with(&format!("/{c}")));
        if !known {
            return Err(format!("no cgroup {name}"));
        }
        // Each cgroup's CPU usage is its path's length, to tell them apart.
        let cpu = sys::cgroup_metrics::CpuMetrics { usage_ns: name.len() as u64, ..Default::default() };
        Ok(sys::cgroup_metrics::CgroupMetrics { cpu: Some(cpu), ..Default::default() })
    }
    fn cgroup_children(&self, name: &str) -> Vec<String> {
        self.tree.lock().unwrap_or_else(PoisonError::into_inner).get(name).cloned().unwrap_or_default()
    }
    fn cgroup_created(&self, _name: &str) -> Option<f64> {
        Some(1_750_000_000.0)
    }
    fn cgroup_processes(&self, name: &str) -> Option<u64> {
        (name == "/kubepods/burstable/podu2").then_some(4)
    }
    fn interfaces(&self) -> Result<Vec<sys::stats::InterfaceStats>, String> {
        Ok(vec![
            sys::stats::InterfaceStats { name: "ens3".into(), rx_bytes: 1, tx_bytes: 2, ..Default::default() },
            sys::stats::InterfaceStats {
                name: "eth0".into(),
                rx_bytes: 10,
                rx_errors: 1,
                tx_bytes: 20,
                tx_errors: 2,
                ..Default::default()
            },
        ])
    }
    fn process_interfaces(&self, pid: u32) -> Result<Vec<sys::stats::InterfaceStats>, String> {
        // The fake runtime's first sandbox has pid 1000.
        if pid != 1000 {
            return Err(format!("no process {pid}"));
        }
        Ok(vec![sys::stats::InterfaceStats { name: "eth0".into(), rx_bytes: 77, tx_bytes: 88, ..Default::default() }])
    }
    fn fs(&self, path: &Path) -> Result<sys::stats::FsInfo, String> {
        if path.starts_with("/fake/images") {
            return Err("no such mount".into());
        }
        Ok(sys::stats::FsInfo {
            capacity_bytes: 100_000,
            available_bytes: 60_000,
            used_bytes: 40_000,
            inodes: 1000,
            inodes_free: 900,
        })
    }
    fn disk_usage(&self, path: &Path) -> Result<sys::stats::DiskUsage, String> {
        sys::stats::disk_usage(path).map_err(|e| e.to_string())
    }
    fn rlimit(&self) -> Result<sys::stats::Rlimit, String> {
        Ok(sys::stats::Rlimit { max_pid: 4_194_304, cur_proc: 321 })
    }
    fn boot_time(&self) -> Option<u64> {
        Some(1_700_000_000)
    }
    fn memory_capacity(&self) -> u64 {
        10_000
    }
}

struct Setup {
    cri: Arc<FakeRuntime>,
    host: Arc<FakeHost>,
    clock: Arc<FakeClock>,
    provider: StatsProvider,
    dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let cri = Arc::new(FakeRuntime::new());
    let host = Arc::new(FakeHost { cpu: Mutex::new(5_000_000_000), tree: Mutex::default() });
    let clock = Arc::new(FakeClock::new(Duration::from_secs(1_800_000_000)));
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = StatsSettings {
        node_name: "n1".into(),
        root_dir: dir.path().join("root"),
        pod_logs_dir: dir.path().join("logs"),
        volume_stats_agg_period: Duration::from_secs(60),
        pod_cgroups: Some(crate::cm::CgroupLayout::new(crate::cm::Driver::Cgroupfs, "/")),
    };
    let provider = StatsProvider::new(cri.clone(), cri.clone(), host.clone(), clock.clone(), settings);
    Setup { cri, host, clock, provider, dir }
}

fn sandbox_config(name: &str, uid: &str) -> api::PodSandboxConfig {
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: "ns".into(),
            attempt: 0,
        }),
        ..Default::default()
    }
}

async fn running_container(cri: &FakeRuntime, sandbox: &str, name: &str) -> String {
    cri.add_image("img");
    let config = api::ContainerConfig {
        metadata: Some(api::ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(api::ImageSpec { image: "img".into(), ..Default::default() }),
        labels: HashMap::new(),
        ..Default::default()
    };
    let id = cri.create_container(sandbox, config, sandbox_config("p", "u1")).await.expect("create");
    cri.start_container(&id).await.expect("start");
    id
}

#[tokio::test]
async fn node_figures_come_from_the_root_cgroup_and_the_host() {
    let s = setup();
    let summary = s.provider.summary(false).await.expect("summary");
    let node = &summary.node;
    assert_eq!(node.node_name, "n1");
    assert_eq!(node.start_time.to_string(), "2023-11-14T22:13:20Z");
    let cpu = node.cpu.as_ref().expect("cpu");
    assert_eq!((cpu.usage_core_nano_seconds, cpu.usage_nano_cores), (Some(5_000_000_000), Some(0)));
    let mem = node.memory.as_ref().expect("memory");
    assert_eq!(mem.working_set_bytes, Some(2000));
    assert_eq!(mem.available_bytes, Some(8000), "capacity − working set");
    assert_eq!((mem.rss_bytes, mem.page_faults, mem.major_page_faults), (Some(1000), Some(7), Some(1)));
    let fs = node.fs.as_ref().expect("fs");
    assert_eq!((fs.capacity_bytes, fs.used_bytes, fs.inodes_used), (Some(100_000), Some(40_000), Some(100)));
    let image_fs = node.runtime.as_ref().and_then(|r| r.image_fs.clone()).expect("imageFs");
    assert_eq!(image_fs.capacity_bytes, None, "the mount point could not be read");
    assert_eq!(node.runtime.as_ref().and_then(|r| r.container_fs.clone()), Some(image_fs));
    let net = node.network.as_ref().expect("network");
    assert_eq!((net.default.name.as_str(), net.default.rx_bytes), ("eth0", Some(10)));
    assert_eq!(net.interfaces.len(), 2);
    assert_eq!(node.rlimit.as_ref().and_then(|r| r.curproc), Some(321));

    // One second later with two more core-seconds used: two cores.
    *s.host.cpu.lock().expect("lock") += 2_000_000_000;
    s.clock.advance(Duration::from_secs(1));
    let again = s.provider.summary(true).await.expect("summary");
    assert_eq!(again.node.cpu.and_then(|c| c.usage_nano_cores), Some(2_000_000_000));
    // A read 10 ms later keeps that rate rather than one over 10 ms.
    *s.host.cpu.lock().expect("lock") += 1_000_000_000;
    s.clock.advance(Duration::from_millis(10));
    let soon = s.provider.summary(true).await.expect("summary");
    assert_eq!(soon.node.cpu.and_then(|c| c.usage_nano_cores), Some(2_000_000_000));
    assert!(again.node.fs.is_none() && again.node.runtime.is_none(), "only CPU and memory");
}

#[tokio::test]
async fn pods_carry_their_running_containers_usage_logs_and_ephemeral_storage() {
    let s = setup();
    let sandbox = s.cri.run_pod_sandbox(sandbox_config("web", "u1"), "").await.expect("sandbox");
    let app = running_container(&s.cri, &sandbox, "app").await;
    let side = running_container(&s.cri, &sandbox, "side").await;
    let done = running_container(&s.cri, &sandbox, "done").await;
    assert!(s.cri.exit_container(&done, 0));
    s.cri.set_usage(&app, 1_000_000_000, 4096, 8192);
    s.cri.set_usage(&side, 500_000_000, 1024, 0);
    let logs = s.dir.path().join("logs/ns_web_u1/app");
    std::fs::create_dir_all(&logs).expect("mkdir");
    std::fs::write(logs.join("0.log"), vec![b'x'; 10_000]).expect("write");
    let remote = s.dir.path().join("root/pods/u1/volumes/kubernetes.io~nfs/share");
    std::fs::create_dir_all(&remote).expect("mkdir");
    std::fs::write(remote.join("big"), vec![b'z'; 50_000]).expect("write");
    let empty_dir = s.dir.path().join("root/pods/u1/volumes/kubernetes.io~empty-dir/cache");
    std::fs::create_dir_all(&empty_dir).expect("mkdir");
    std::fs::write(empty_dir.join("blob"), vec![b'y'; 20_000]).expect("write");

    let first = s.provider.summary(false).await.expect("summary");
    assert_eq!(first.pods.len(), 1);
    let pod = &first.pods[0];
    assert_eq!(pod.pod_ref, PodReference { name: "web".into(), namespace: "ns".into(), uid: "u1".into() });
    let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["app", "side"], "only running containers");
    let app_stats = &pod.containers[0];
    assert_eq!(app_stats.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds), Some(1_000_000_000));
    assert_eq!(app_stats.cpu.as_ref().and_then(|c| c.usage_nano_cores), None, "one sample: no rate yet");
    assert_eq!(app_stats.memory.as_ref().and_then(|m| m.working_set_bytes), Some(4096));
    assert_eq!(app_stats.rootfs.as_ref().and_then(|r| r.used_bytes), Some(8192));
    let log_bytes = app_stats.logs.as_ref().and_then(|l| l.used_bytes).expect("log usage");
    assert!(log_bytes >= 10_000, "{log_bytes}");
    assert_eq!(app_stats.logs.as_ref().and_then(|l| l.capacity_bytes), Some(100_000), "the root fs");
    assert_eq!(pod.containers[1].logs, None, "no log directory");
    assert_eq!(pod.memory.as_ref().and_then(|m| m.working_set_bytes), Some(5120), "sum of containers");
    assert_eq!(pod.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds), Some(1_500_000_000));
    let net = pod.network.as_ref().expect("the sandbox's network");
    assert_eq!((net.default.name.as_str(), net.default.rx_bytes, net.default.tx_bytes), ("eth0", Some(77), Some(88)));
    assert_eq!(pod.volume_stats.len(), 1, "a network volume is not walked");
    assert_eq!(pod.volume_stats[0].name, "cache");
    let volume_bytes = pod.volume_stats[0].fs.used_bytes.expect("volume usage");
    assert!(volume_bytes >= 20_000, "{volume_bytes}");
    let ephemeral = pod.ephemeral_storage.as_ref().and_then(|e| e.used_bytes).expect("ephemeral");
    assert_eq!(ephemeral, 8192 + log_bytes + volume_bytes, "rootfs + logs + local volumes");

    // A second sample from the runtime: the rate between the two.
    s.cri.advance(Duration::from_secs(2));
    s.cri.set_usage(&app, 2_000_000_000, 4096, 8192);
    let second = s.provider.summary(true).await.expect("summary");
    let app_cpu = second.pods[0].containers[0].cpu.clone().expect("cpu");
    assert_eq!(app_cpu.usage_nano_cores, Some(500_000_000), "half a core");
    assert!(second.pods[0].containers[0].rootfs.is_none(), "only CPU and memory");
    assert!(second.pods[0].network.is_none(), "only CPU and memory");
    // The sandbox's process was asked for once.
    let asked = s.cri.calls().iter().filter(|c| c.starts_with("PodSandboxStatus")).count();
    assert!(asked >= 1, "the first full summary asked for the sandbox's process");
    s.provider.summary(false).await.expect("summary");
    assert_eq!(s.cri.calls().iter().filter(|c| c.starts_with("PodSandboxStatus")).count(), asked, "pid cached");
}

#[tokio::test]
async fn a_pod_with_its_own_cgroup_is_measured_there() {
    let s = setup();
    let sandbox = s.cri.run_pod_sandbox(sandbox_config("db", "u2"), "").await.expect("sandbox");
    let app = running_container(&s.cri, &sandbox, "app").await;
    s.cri.set_usage(&app, 1_000_000_000, 4096, 0);
    let summary = s.provider.summary(true).await.expect("summary");
    let pod = &summary.pods[0];
    assert_eq!(pod.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds), Some(9_000_000_000), "the pod cgroup's");
    let memory = pod.memory.as_ref().expect("memory");
    assert_eq!((memory.working_set_bytes, memory.usage_bytes, memory.rss_bytes), (Some(800), Some(900), Some(700)));
    assert_eq!(memory.page_faults, Some(3));
    assert_eq!(pod.containers[0].memory.as_ref().and_then(|m| m.working_set_bytes), Some(4096), "containers as before");
    assert_eq!(pod.process_stats, Some(ProcessStats { process_count: Some(4) }), "its cgroup tree's processes");
    let json = serde_json::to_value(pod).expect("json");
    assert_eq!(json["process_stats"]["process_count"], 4, "upstream's snake_case keys");
}

#[tokio::test]
async fn volume_usage_is_measured_once_per_volume_stats_agg_period() {
    let s = setup();
    let sandbox = s.cri.run_pod_sandbox(sandbox_config("web", "u1"), "").await.expect("sandbox");
    running_container(&s.cri, &sandbox, "app").await;
    let empty_dir = s.dir.path().join("root/pods/u1/volumes/kubernetes.io~empty-dir/cache");
    std::fs::create_dir_all(&empty_dir).expect("mkdir");
    std::fs::write(empty_dir.join("a"), vec![b'y'; 20_000]).expect("write");
    let used = |sum: &Summary| sum.pods[0].volume_stats[0].fs.used_bytes.expect("volume usage");
    let ephemeral = |sum: &Summary| sum.pods[0].ephemeral_storage.as_ref().and_then(|e| e.used_bytes);

    let first = s.provider.summary(false).await.expect("summary");
    let before = used(&first);
    std::fs::write(empty_dir.join("b"), vec![b'y'; 40_000]).expect("write");
    s.clock.advance(Duration::from_secs(59));
    let cached = s.provider.summary(false).await.expect("summary");
    assert_eq!(used(&cached), before, "within the period: the last measurement");
    assert_eq!(cached.pods[0].volume_stats[0].fs.time, first.pods[0].volume_stats[0].fs.time, "and its time");
    assert_eq!(ephemeral(&cached), ephemeral(&first), "ephemeral storage counts the same measurement");
    s.clock.advance(Duration::from_secs(1));
    let fresh = s.provider.summary(false).await.expect("summary");
    assert!(used(&fresh) >= before + 40_000, "measured again: {} after {before}", used(&fresh));

    // Zero turns volume measurement off, as upstream.
    let mut settings = s.provider.settings.clone();
    settings.volume_stats_agg_period = Duration::ZERO;
    let off = StatsProvider::new(s.cri.clone(), s.cri.clone(), s.host.clone(), s.clock.clone(), settings);
    let summary = off.summary(false).await.expect("summary");
    assert!(summary.pods[0].volume_stats.is_empty());
}

#[test]
fn a_pods_older_sandboxes_are_left_out() {
    let sb = |id: &str, name: &str, ready: bool, created: i64| api::PodSandbox {
        id: id.into(),
        metadata: Some(api::PodSandboxMetadata { name: name.into(), namespace: "ns".into(), ..Default::default() }),
        state: if ready { 0 } else { 1 },
        created_at: created,
        ..Default::default()
    };
    let kept = kept_sandboxes(vec![
        sb("a1", "a", false, 1),
        sb("a2", "a", true, 2),
        sb("b1", "b", false, 1),
        sb("b2", "b", false, 3),
    ]);
    let ids: Vec<&str> = kept.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["a2", "b2"]);
}

#[test]
fn summary_json_uses_upstreams_names() {
    let pod = PodStats {
        pod_ref: PodReference { name: "p".into(), namespace: "ns".into(), uid: "u".into() },
        start_time: Time(1_767_225_600_000_000_000),
        volume_stats: vec![VolumeStats {
            fs: FsStats { time: Time(0), used_bytes: Some(1), ..Default::default() },
            name: "v".into(),
        }],
        ephemeral_storage: Some(FsStats { time: Time(0), ..Default::default() }),
        ..Default::default()
    };
    let summary = Summary {
        node: NodeStats {
            node_name: "n".into(),
            network: Some(NetworkStats {
                time: Time(0),
                default: InterfaceStats { name: "eth0".into(), rx_bytes: Some(5), ..Default::default() },
                interfaces: vec![],
            }),
            ..Default::default()
        },
        pods: vec![pod],
    };
    let json = serde_json::to_value(&summary).expect("json");
    assert_eq!(json["node"]["nodeName"], "n");
    assert_eq!(json["node"]["network"]["name"], "eth0", "the default interface is inlined");
    assert_eq!(json["node"]["network"]["rxBytes"], 5);
    assert!(json["node"].get("cpu").is_none(), "unset pointers are omitted");
    assert_eq!(json["pods"][0]["podRef"]["uid"], "u");
    assert_eq!(json["pods"][0]["containers"], serde_json::json!([]), "containers is never omitted");
    assert_eq!(json["pods"][0]["volume"][0]["usedBytes"], 1, "FsStats inlined in VolumeStats");
    assert_eq!(json["pods"][0]["volume"][0]["name"], "v");
    assert!(json["pods"][0].get("ephemeral-storage").is_some());
    assert_eq!(json["pods"][0]["startTime"], "2026-01-01T00:00:00Z", "metav1.Time at second precision");
    assert_eq!(json["pods"][0]["volume"][0]["time"], serde_json::Value::Null, "the zero time is null, as Go's");
}

#[tokio::test]
async fn cadvisor_walks_the_root_and_kubepods_and_labels_pods_and_containers() {
    let s = setup();
    let sandbox = s.cri.run_pod_sandbox(sandbox_config("web", "u1"), "").await.expect("sandbox");
    // The kubelet creates containers from the image's ID; the label shows its name.
    let image_id = s.cri.add_image("busybox:1.36");
    let config = api::ContainerConfig {
        metadata: Some(api::ContainerMetadata { name: "app".into(), attempt: 0 }),
        image: Some(api::ImageSpec { image: image_id, ..Default::default() }),
        ..Default::default()
    };
    let app = s.cri.create_container(&sandbox, config, sandbox_config("web", "u1")).await.expect("create");
    s.cri.start_container(&app).await.expect("start");
    let tree = HashMap::from([
        ("/kubepods".to_string(), vec!["burstable".to_string(), "besteffort".to_string()]),
        ("/kubepods/burstable".to_string(), vec!["podu1".to_string(), "podgone".to_string()]),
        ("/kubepods/burstable/podu1".to_string(), vec![sandbox.clone(), app.clone(), "stranger".to_string()]),
    ]);
    *s.host.tree.lock().expect("lock") = tree;

    let series = s.provider.cgroup_series().await.expect("series");
    let ids: Vec<&str> = series.iter().map(|c| c.id.as_str()).collect();
    let pod = "/kubepods/burstable/podu1";
    let (sb_id, app_id) = (format!("{pod}/{sandbox}"), format!("{pod}/{app}"));
    let mut in_pod = vec![sb_id.clone(), app_id.clone()];
    in_pod.sort();
    let mut want: Vec<String> =
        ["/", "/kubepods", "/kubepods/besteffort", "/kubepods/burstable", "/kubepods/burstable/podgone", pod]
            .into_iter()
            .map(String::from)
            .collect();
    want.extend(in_pod);
    want.push(format!("{pod}/stranger"));
    // Depth first, parents before children, children in name order.
    assert_eq!(ids, want);

    let by_id = |id: &str| series.iter().find(|c| c.id == id).expect("series").clone();
    let root = by_id("/");
    assert_eq!((root.pod.as_str(), root.container.as_str(), root.network.len()), ("", "", 2), "the host's interfaces");
    assert_eq!(root.metrics.cpu.map(|c| c.usage_ns), Some(1));
    let p = by_id(pod);
    assert_eq!((p.pod.as_str(), p.namespace.as_str(), p.container.as_str(), p.name.as_str()), ("web", "ns", "", ""));
    assert_eq!(p.start_time, Some(1_750_000_000.0), "a plain cgroup's creation time");
    let gone = by_id("/kubepods/burstable/podgone");
    assert_eq!(gone.pod, "", "no pod with that UID");
    let sb = by_id(&sb_id);
    assert_eq!(
        (sb.container.as_str(), sb.pod.as_str(), sb.name.as_str()),
        ("", "web", sandbox.as_str()),
        "containerd names no container for a sandbox"
    );
    assert_eq!(sb.image, "pause:fake", "from the runtime's sandbox info");
    assert_eq!(sb.network.first().map(|i| i.rx_bytes), Some(77), "the sandbox carries the pod's network");
    let c = by_id(&app_id);
    assert_eq!(
        (c.container.as_str(), c.pod.as_str(), c.namespace.as_str(), c.image.as_str()),
        ("app", "web", "ns", "docker.io/library/busybox:1.36")
    );
    assert_eq!(c.name, app);
    assert!(c.network.is_empty(), "containers share the sandbox's network");
    assert_eq!(c.metrics.cpu.map(|m| m.usage_ns), Some(app_id.len() as u64));
    let stranger = by_id(&format!("{pod}/stranger"));
    assert_eq!((stranger.container.as_str(), stranger.pod.as_str()), ("", ""), "not the runtime's");

    // The sandbox's verbose status is asked once, for the summary's pod network as well.
    s.cri.clear_calls();
    s.provider.cgroup_series().await.expect("series");
    let summary = s.provider.summary(false).await.expect("summary");
    let network = summary.pods.first().and_then(|p| p.network.clone()).expect("the pod's network");
    assert_eq!(network.default.rx_bytes, Some(77));
    let asked: Vec<String> = s.cri.calls().into_iter().filter(|c| c.starts_with("PodSandboxStatus")).collect();
    assert!(asked.is_empty(), "cached: {asked:?}");

    // Without pod cgroups only the root is reported.
    let mut settings = s.provider.settings.clone();
    settings.pod_cgroups = None;
    let flat = StatsProvider::new(s.cri.clone(), s.cri.clone(), s.host.clone(), s.clock.clone(), settings);
    let only: Vec<String> = flat.cgroup_series().await.expect("series").into_iter().map(|c| c.id).collect();
    assert_eq!(only, vec!["/"]);
}
