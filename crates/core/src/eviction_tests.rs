#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::*;
use crate::clock::FakeClock;
use crate::stats::{ContainerStats, FsStats, MemoryStats, NodeStats, PodReference, RlimitStats, RuntimeStats};

const MI: u64 = 1 << 20;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn pod(name: &str, memory_request: Option<&str>, priority: i32) -> Arc<Pod> {
    let requests = memory_request.map(|r| BTreeMap::from([("memory".to_string(), Quantity(r.into()))]));
    Arc::new(Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            priority: Some(priority),
            containers: vec![Container {
                name: "app".into(),
                resources: Some(ResourceRequirements { requests, ..Default::default() }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn pod_stats(name: &str, working_set: u64, disk: u64) -> PodStats {
    PodStats {
        pod_ref: PodReference { name: name.into(), namespace: "default".into(), uid: format!("uid-{name}") },
        memory: Some(MemoryStats { working_set_bytes: Some(working_set), ..Default::default() }),
        ephemeral_storage: Some(FsStats {
            used_bytes: Some(disk),
            inodes_used: Some(disk / 1000),
            ..Default::default()
        }),
        containers: vec![ContainerStats {
            name: "app".into(),
            memory: Some(MemoryStats { working_set_bytes: Some(working_set), ..Default::default() }),
            rootfs: Some(FsStats { used_bytes: Some(disk / 2), ..Default::default() }),
            logs: Some(FsStats { used_bytes: Some(disk / 2), ..Default::default() }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A node with `mem_available` of 1 GiB memory, `disk_available` of 100 GiB disk, 1000 pids.
fn summary(mem_available: u64, disk_available: u64, pids_used: i64, pods: Vec<PodStats>) -> Summary {
    let fs = FsStats {
        available_bytes: Some(disk_available),
        capacity_bytes: Some(100 * 1024 * MI),
        inodes_free: Some(1_000_000),
        inodes: Some(2_000_000),
        ..Default::default()
    };
    Summary {
        node: NodeStats {
            memory: Some(MemoryStats {
                available_bytes: Some(mem_available),
                working_set_bytes: Some(1024 * MI - mem_available),
                ..Default::default()
            }),
            fs: Some(fs.clone()),
            runtime: Some(RuntimeStats { image_fs: Some(fs.clone()), container_fs: Some(fs) }),
            rlimit: Some(RlimitStats { maxpid: Some(1000), curproc: Some(pids_used), ..Default::default() }),
            ..Default::default()
        },
        pods,
    }
}

struct FakeSummary(Mutex<Vec<Summary>>);

#[async_trait]
impl SummaryProvider for FakeSummary {
    /// The next prepared summary (the last one repeats).
    async fn summary(&self) -> Result<Summary, String> {
        let mut v = self.0.lock().unwrap();
        if v.len() > 1 { Ok(v.remove(0)) } else { v.first().cloned().ok_or_else(|| "no stats".to_string()) }
    }
}

#[derive(Default)]
struct FakeReclaimer(Mutex<u32>);

#[async_trait]
impl NodeReclaimer for FakeReclaimer {
    async fn reclaim_disk(&self) {
        *self.0.lock().unwrap() += 1;
    }
}

#[derive(Default)]
struct FakePods {
    pods: Vec<Arc<Pod>>,
    evicted: Mutex<Vec<(String, i64, String)>>,
    disruption: Mutex<Vec<bool>>,
}

impl PodEvictor for FakePods {
    fn active_pods(&self) -> Vec<Arc<Pod>> {
        self.pods.clone()
    }
    fn evict(&self, pod: &Arc<Pod>, grace: i64, message: String, disruption: bool) {
        self.evicted.lock().unwrap().push((pod.metadata.name.clone().unwrap(), grace, message));
        self.disruption.lock().unwrap().push(disruption);
    }
}

struct Harness {
    summaries: Arc<FakeSummary>,
    reclaimer: Arc<FakeReclaimer>,
    pods: Arc<FakePods>,
    clock: Arc<FakeClock>,
    pressure: Pressure,
    manager: EvictionManager,
}

fn harness(thresholds: Vec<Threshold>, pods: Vec<Arc<Pod>>, summaries: Vec<Summary>) -> Harness {
    let summaries = Arc::new(FakeSummary(Mutex::new(summaries)));
    let reclaimer = Arc::new(FakeReclaimer::default());
    let pods = Arc::new(FakePods { pods, ..Default::default() });
    let clock = Arc::new(FakeClock::new(Duration::from_secs(1_000)));
    let pressure = Pressure::default();
    let config =
        EvictionConfig { thresholds, pressure_transition_period: Duration::from_secs(300), max_pod_grace_period: 30 };
    let manager = EvictionManager::new(
        config,
        summaries.clone(),
        reclaimer.clone(),
        pods.clone(),
        clock.clone(),
        pressure.clone(),
    );
    Harness { summaries, reclaimer, pods, clock, pressure, manager }
}

fn hard(pairs: &[(&str, &str)]) -> Vec<Threshold> {
    parse_config(&map(pairs), &BTreeMap::new(), &BTreeMap::new(), &BTreeMap::new()).unwrap()
}

#[test]
fn config_is_parsed_with_upstreams_rules() {
    let t = parse_config(
        &map(&[("memory.available", "100Mi"), ("nodefs.available", "10%")]),
        &map(&[("memory.available", "300Mi")]),
        &map(&[("memory.available", "1m30s")]),
        &map(&[("memory.available", "50Mi"), ("nodefs.available", "5%")]),
    )
    .unwrap();
    assert_eq!(t.len(), 3);
    let soft = t.iter().find(|t| !t.hard).unwrap();
    assert_eq!((soft.signal, soft.grace), (Signal::MemoryAvailable, Duration::from_secs(90)));
    assert_eq!(soft.min_reclaim, Some(ThresholdValue::Quantity(50 * MI)));
    let nodefs = t.iter().find(|t| t.signal == Signal::NodeFsAvailable).unwrap();
    assert_eq!((nodefs.value, nodefs.quantity.as_deref()), (ThresholdValue::Fraction(0.1), None));
    let err = |soft: &[(&str, &str)], grace: &[(&str, &str)], reclaim: &[(&str, &str)]| {
        parse_config(&BTreeMap::new(), &map(soft), &map(grace), &map(reclaim)).unwrap_err()
    };
    assert_eq!(
        err(&[("memory.available", "1Gi")], &[], &[]),
        "grace period must be specified for the soft eviction threshold memory.available"
    );
    assert_eq!(err(&[], &[("disk.available", "1m")], &[]), "unsupported eviction signal disk.available");
    assert_eq!(err(&[], &[], &[("memory.available", "-1Mi")]), "negative reclaim defined for signal memory.available");
}

#[test]
fn observations_come_from_the_summary() {
    let obs = observe(&summary(300 * MI, 5 * 1024 * MI, 900, vec![]));
    assert_eq!(obs[&Signal::MemoryAvailable], Observation { available: (300 * MI).into(), capacity: 1024 * MI });
    assert_eq!(obs[&Signal::NodeFsAvailable].available, (5 * 1024 * MI).into());
    assert_eq!(obs[&Signal::NodeFsInodesFree], Observation { available: 1_000_000, capacity: 2_000_000 });
    assert_eq!(obs[&Signal::PidAvailable], Observation { available: 100, capacity: 1000 });
    assert!(obs.contains_key(&Signal::ImageFsAvailable));
}

#[test]
fn binary_quantities_print_as_go_does() {
    assert_eq!(format_binary_si(100), "100");
    assert_eq!(format_binary_si(2048), "2Ki");
    assert_eq!(format_binary_si(1536), "1536");
    assert_eq!(format_binary_si(100 * 1024 * 1024), "100Mi");
    assert_eq!(format_binary_si(3 * 1024 * 1024 * 1024 + 1024), "3145729Ki");
}

#[tokio::test]
async fn a_hard_memory_threshold_evicts_the_pod_most_over_its_request() {
    let guaranteed = pod("guaranteed", Some("512Mi"), 0);
    let besteffort = pod("hog", None, 0);
    let burstable = pod("burst", Some("64Mi"), 0);
    let stats =
        vec![pod_stats("guaranteed", 200 * MI, 0), pod_stats("hog", 600 * MI, 0), pod_stats("burst", 100 * MI, 0)];
    let mut h = harness(
        hard(&[("memory.available", "100Mi")]),
        vec![guaranteed, besteffort, burstable],
        vec![summary(50 * MI, 50 * 1024 * MI, 10, stats)],
    );

    let evicted = h.manager.synchronize().await.unwrap();
    assert_eq!(evicted.as_deref(), Some("uid-hog"));
    let (name, grace, message) = h.pods.evicted.lock().unwrap()[0].clone();
    assert_eq!((name.as_str(), grace), ("hog", 1), "one second for a hard threshold");
    assert_eq!(
        message,
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. \
         Container app was using 600Mi, request is 0, has larger consumption of memory. "
    );
    assert_eq!(h.pressure.conditions(), vec![MEMORY_PRESSURE]);
    assert_eq!(*h.reclaimer.0.lock().unwrap(), 0, "no node-level reclaim for memory");
}

#[tokio::test]
async fn pods_under_their_request_go_after_those_over_it_and_critical_pods_never() {
    let mut static_pod = (*pod("static", None, 0)).clone();
    static_pod.metadata.annotations =
        Some(BTreeMap::from([("kubernetes.io/config.source".to_string(), "file".to_string())]));
    let guaranteed = pod("guaranteed", Some("512Mi"), 0);
    let stats = vec![pod_stats("static", 900 * MI, 0), pod_stats("guaranteed", 200 * MI, 0)];
    let mut h = harness(
        hard(&[("memory.available", "100Mi")]),
        vec![Arc::new(static_pod), guaranteed],
        vec![summary(50 * MI, 50 * 1024 * MI, 10, stats)],
    );
    assert_eq!(h.manager.synchronize().await.unwrap().as_deref(), Some("uid-guaranteed"), "the static pod is critical");
    let (_, _, message) = h.pods.evicted.lock().unwrap()[0].clone();
    assert!(!message.contains("Container"), "under its request, no container named: {message}");
}

#[tokio::test]
async fn lower_priority_goes_first_among_pods_over_their_requests() {
    let low = pod("low", None, -10);
    let high = pod("high", None, 1000);
    let stats = vec![pod_stats("high", 900 * MI, 0), pod_stats("low", 10 * MI, 0)];
    let mut h = harness(
        hard(&[("memory.available", "100Mi")]),
        vec![high, low],
        vec![summary(50 * MI, 50 * 1024 * MI, 10, stats)],
    );
    assert_eq!(h.manager.synchronize().await.unwrap().as_deref(), Some("uid-low"));
}

#[tokio::test]
async fn soft_thresholds_wait_for_their_grace_period_and_use_the_max_pod_grace() {
    let thresholds = parse_config(
        &BTreeMap::new(),
        &map(&[("memory.available", "200Mi")]),
        &map(&[("memory.available", "30s")]),
        &BTreeMap::new(),
    )
    .unwrap();
    let stats = vec![pod_stats("hog", 600 * MI, 0)];
    let mut h = harness(thresholds, vec![pod("hog", None, 0)], vec![summary(150 * MI, 50 * 1024 * MI, 10, stats)]);
    assert_eq!(h.manager.synchronize().await.unwrap(), None);
    assert_eq!(h.pressure.conditions(), vec![MEMORY_PRESSURE], "the condition does not wait for the grace period");
    h.clock.advance(Duration::from_secs(29));
    assert_eq!(h.manager.synchronize().await.unwrap(), None);
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(h.manager.synchronize().await.unwrap().as_deref(), Some("uid-hog"));
    assert_eq!(h.pods.evicted.lock().unwrap()[0].1, 30, "evictionMaxPodGracePeriod");
}

#[test]
fn a_soft_eviction_gives_the_shorter_of_the_maximum_and_the_pods_own_grace_period() {
    let soft = parse_config(
        &BTreeMap::new(),
        &map(&[("memory.available", "200Mi")]),
        &map(&[("memory.available", "30s")]),
        &BTreeMap::new(),
    )
    .unwrap();
    let hard = hard(&[("memory.available", "100Mi")]);
    let config =
        EvictionConfig { thresholds: vec![], pressure_transition_period: Duration::ZERO, max_pod_grace_period: 30 };
    let mut quick = (*pod("quick", None, 0)).clone();
    quick.spec.as_mut().unwrap().termination_grace_period_seconds = Some(5);
    assert_eq!(config.grace_period(&soft[0], &quick), 5);
    assert_eq!(config.grace_period(&soft[0], &pod("plain", None, 0)), 30);
    assert_eq!(config.grace_period(&hard[0], &quick), 1, "hard: one second whatever the pod says");
}

#[tokio::test]
async fn a_pod_being_evicted_is_not_evicted_again_while_it_is_killed() {
    // The pod stays active (its kill is slow) over several passes: one eviction, one event.
    let stats = vec![pod_stats("hog", 600 * MI, 0), pod_stats("next", 300 * MI, 0)];
    let mut h = harness(
        hard(&[("memory.available", "100Mi")]),
        vec![pod("hog", None, 0), pod("next", None, 0)],
        vec![summary(50 * MI, 50 * 1024 * MI, 10, stats)],
    );
    assert_eq!(h.manager.synchronize().await.unwrap().as_deref(), Some("uid-hog"));
    h.clock.advance(Duration::from_secs(10));
    assert_eq!(h.manager.synchronize().await.unwrap().as_deref(), Some("uid-next"), "the next one, not the hog again");
    h.clock.advance(Duration::from_secs(10));
    assert_eq!(h.manager.synchronize().await.unwrap(), None, "both are being killed");
    let names: Vec<String> = h.pods.evicted.lock().unwrap().iter().map(|e| e.0.clone()).collect();
    assert_eq!(names, ["hog", "next"]);
}

#[tokio::test]
async fn the_condition_stays_for_the_transition_period_and_minimum_reclaim_holds_the_threshold() {
    let thresholds = parse_config(
        &map(&[("memory.available", "100Mi")]),
        &BTreeMap::new(),
        &BTreeMap::new(),
        &map(&[("memory.available", "100Mi")]),
    )
    .unwrap();
    let under = summary(50 * MI, 50 * 1024 * MI, 10, vec![]);
    // 150Mi free: above the threshold, but not above threshold + minimum reclaim.
    let partly = summary(150 * MI, 50 * 1024 * MI, 10, vec![]);
    let freed = summary(250 * MI, 50 * 1024 * MI, 10, vec![]);
    let mut h = harness(thresholds, vec![], vec![under, partly.clone(), partly, freed]);
    h.manager.synchronize().await.unwrap();
    h.clock.advance(Duration::from_secs(10));
    h.manager.synchronize().await.unwrap();
    assert_eq!(h.manager.last_met.len(), 1, "still met: not reclaimed past the minimum");
    h.clock.advance(Duration::from_secs(10));
    h.manager.synchronize().await.unwrap();
    h.clock.advance(Duration::from_secs(10));
    h.manager.synchronize().await.unwrap();
    assert!(h.manager.last_met.is_empty());
    assert_eq!(h.pressure.conditions(), vec![MEMORY_PRESSURE], "kept for the transition period");
    h.clock.advance(Duration::from_secs(300));
    h.manager.synchronize().await.unwrap();
    assert!(h.pressure.conditions().is_empty());
    let _ = &h.summaries;
}

#[tokio::test]
async fn disk_pressure_reclaims_node_level_resources_before_evicting() {
    let stats = vec![pod_stats("writer", 10 * MI, 5 * 1024 * MI)];
    let low = summary(900 * MI, 5 * 1024 * MI, 10, stats.clone());
    let after_gc = summary(900 * MI, 20 * 1024 * MI, 10, stats.clone());
    let mut h =
        harness(hard(&[("nodefs.available", "10%")]), vec![pod("writer", None, 0)], vec![low.clone(), after_gc]);
    assert_eq!(h.manager.synchronize().await.unwrap(), None, "dead containers and images were enough");
    assert_eq!(*h.reclaimer.0.lock().unwrap(), 1);
    assert_eq!(h.pressure.conditions(), vec![DISK_PRESSURE]);

    // Not enough: the pod using the most disk goes.
    *h.summaries.0.lock().unwrap() = vec![low];
    assert_eq!(h.manager.synchronize().await.unwrap().as_deref(), Some("uid-writer"));
    let (_, _, message) = h.pods.evicted.lock().unwrap()[0].clone();
    assert_eq!(
        message,
        "The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, available: 5Gi. \
         Container app was using 5Gi, request is 0, has larger consumption of ephemeral-storage. "
    );
}

#[tokio::test]
async fn pid_pressure_ranks_by_priority_then_processes() {
    let mut few = pod_stats("few", 0, 0);
    few.process_stats = Some(crate::stats::ProcessStats { process_count: Some(3) });
    let mut many = pod_stats("many", 0, 0);
    many.process_stats = Some(crate::stats::ProcessStats { process_count: Some(300) });
    let mut low = pod_stats("low", 0, 0);
    low.process_stats = Some(crate::stats::ProcessStats { process_count: Some(1) });
    let summaries = vec![summary(900 * MI, 50 * 1024 * MI, 950, vec![few, many, low])];
    let pods = vec![pod("few", None, 0), pod("many", None, 0), pod("low", None, -5)];
    let mut h = harness(hard(&[("pid.available", "10%")]), pods.clone(), summaries.clone());
    assert_eq!(h.manager.synchronize().await.unwrap().as_deref(), Some("uid-low"), "lower priority first");
    let mut h = harness(hard(&[("pid.available", "10%")]), pods[..2].to_vec(), summaries);
    assert_eq!(h.manager.synchronize().await.unwrap().as_deref(), Some("uid-many"), "then more processes");
}

#[tokio::test]
async fn pid_pressure_sets_its_condition() {
    let mut h = harness(
        hard(&[("pid.available", "10%")]),
        vec![pod("p", None, 0)],
        vec![summary(900 * MI, 50 * 1024 * MI, 950, vec![])],
    );
    assert_eq!(h.manager.synchronize().await.unwrap().as_deref(), Some("uid-p"));
    assert_eq!(h.pressure.conditions(), vec![PID_PRESSURE]);
    let (_, _, message) = h.pods.evicted.lock().unwrap()[0].clone();
    assert_eq!(message, "The node was low on resource: pids. ");
}

#[test]
fn admission_under_pressure_follows_upstream() {
    let p = Pressure::default();
    let besteffort = pod("be", None, 0);
    let burstable = pod("bu", Some("1Mi"), 0);
    assert!(p.admit(&besteffort).is_ok());
    p.set(vec![MEMORY_PRESSURE]);
    assert_eq!(p.admit(&besteffort).unwrap_err(), "The node had condition: [MemoryPressure]. ");
    assert!(p.admit(&burstable).is_ok(), "only BestEffort pods are refused under memory pressure");
    let mut tolerating = (*besteffort).clone();
    tolerating.spec.as_mut().unwrap().tolerations = Some(vec![k8s_openapi::api::core::v1::Toleration {
        key: Some("node.kubernetes.io/memory-pressure".into()),
        operator: Some("Exists".into()),
        effect: Some("NoSchedule".into()),
        ..Default::default()
    }]);
    assert!(p.admit(&tolerating).is_ok());
    p.set(vec![DISK_PRESSURE, MEMORY_PRESSURE]);
    assert_eq!(
        p.admit(&burstable).unwrap_err(),
        "The node had condition: [MemoryPressure DiskPressure]. ",
        "Go's %v of the condition list"
    );
}

fn with_storage(mut p: Pod, volume_limit: Option<&str>, container_limit: Option<&str>) -> Arc<Pod> {
    let spec = p.spec.as_mut().unwrap();
    if let Some(l) = volume_limit {
        spec.volumes = Some(vec![k8s_openapi::api::core::v1::Volume {
            name: "scratch".into(),
            empty_dir: Some(k8s_openapi::api::core::v1::EmptyDirVolumeSource {
                size_limit: Some(Quantity(l.into())),
                ..Default::default()
            }),
            ..Default::default()
        }]);
    }
    if let Some(l) = container_limit {
        spec.containers[0].resources.get_or_insert_with(Default::default).limits =
            Some(BTreeMap::from([("ephemeral-storage".to_string(), Quantity(l.into()))]));
    }
    Arc::new(p)
}

#[test]
fn local_storage_limits_as_upstream() {
    let mut stats = pod_stats("p", 0, 6 * MI);
    stats.volume_stats = vec![crate::stats::VolumeStats {
        name: "scratch".into(),
        fs: FsStats { used_bytes: Some(5 * MI), ..Default::default() },
    }];
    let base = (*pod("p", None, 0)).clone();
    let (m, s) = local_storage_violation(&with_storage(base.clone(), Some("1Mi"), None), &stats).unwrap();
    assert_eq!(
        (m.as_str(), s),
        ("Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ", SIGNAL_EMPTY_DIR_LIMIT)
    );
    assert_eq!(local_storage_violation(&with_storage(base.clone(), Some("8Mi"), None), &stats), None);
    // Container: its writable layer (3Mi) and logs (3Mi) against its limit; the pod's total
    // (6Mi) against the sum of the limits comes first.
    let (m, s) = local_storage_violation(&with_storage(base.clone(), None, Some("4Mi")), &stats).unwrap();
    assert_eq!(
        (m.as_str(), s),
        ("Pod ephemeral local storage usage exceeds the total limit of containers 4Mi. ", SIGNAL_POD_LIMIT)
    );
    stats.ephemeral_storage = Some(FsStats { used_bytes: Some(3 * MI), ..Default::default() });
    let (m, s) = local_storage_violation(&with_storage(base.clone(), None, Some("4Mi")), &stats).unwrap();
    assert_eq!(
        (m.as_str(), s),
        ("Container app exceeded its local ephemeral storage limit \"4Mi\". ", SIGNAL_CONTAINER_LIMIT)
    );
    assert_eq!(local_storage_violation(&with_storage(base, None, Some("7Mi")), &stats), None);
}

#[tokio::test]
async fn local_storage_evictions_need_no_threshold_and_spare_critical_pods() {
    let mut stats = pod_stats("p", 0, 6 * MI);
    stats.volume_stats = vec![crate::stats::VolumeStats {
        name: "scratch".into(),
        fs: FsStats { used_bytes: Some(5 * MI), ..Default::default() },
    }];
    let mut critical = (*pod("c", None, 0)).clone();
    critical.spec.as_mut().unwrap().priority = Some(2_000_000_000);
    let mut critical_stats = stats.clone();
    critical_stats.pod_ref = PodReference { name: "c".into(), namespace: "default".into(), uid: "uid-c".into() };
    let p = with_storage((*pod("p", None, 0)).clone(), Some("1Mi"), None);
    let c = with_storage(critical, Some("1Mi"), None);
    let mut h = harness(vec![], vec![c, p], vec![summary(900 * MI, 50 * 1024 * MI, 10, vec![critical_stats, stats])]);
    assert_eq!(h.manager.synchronize().await.unwrap().as_deref(), Some("uid-p"));
    let evicted = h.pods.evicted.lock().unwrap().clone();
    assert_eq!(evicted.len(), 1, "{evicted:?}");
    assert_eq!(evicted[0].1, 0, "no grace period");
    assert_eq!(*h.pods.disruption.lock().unwrap(), vec![false], "no DisruptionTarget condition");
}
