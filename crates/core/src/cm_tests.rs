use std::path::Path;

use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

fn list(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
    (!pairs.is_empty()).then(|| pairs.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect())
}

fn container(name: &str, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
    Container {
        name: name.into(),
        resources: Some(ResourceRequirements { requests: list(requests), limits: list(limits), ..Default::default() }),
        ..Default::default()
    }
}

fn pod(uid: &str, containers: Vec<Container>) -> Pod {
    Pod {
        metadata: ObjectMeta { name: Some(uid.into()), uid: Some(uid.into()), ..Default::default() },
        spec: Some(PodSpec { containers, ..Default::default() }),
        ..Default::default()
    }
}

fn guaranteed() -> Pod {
    let limits = [("cpu", "500m"), ("memory", "128Mi")];
    pod("g-1", vec![container("a", &limits, &limits)])
}

fn burstable() -> Pod {
    pod("b-1", vec![container("a", &[("cpu", "250m"), ("memory", "64Mi")], &[("memory", "256Mi")])])
}

fn best_effort() -> Pod {
    pod("e-1", vec![container("a", &[], &[])])
}

#[test]
fn names_follow_the_driver() {
    let layout = CgroupLayout::new(Driver::Cgroupfs, "/");
    assert_eq!(layout.name(&layout.pod_cgroup(&guaranteed())), "/kubepods/podg-1");
    assert_eq!(layout.name(&layout.pod_cgroup(&burstable())), "/kubepods/burstable/podb-1");
    assert_eq!(layout.name(&layout.pod_cgroup(&best_effort())), "/kubepods/besteffort/pode-1");
    let systemd = CgroupLayout::new(Driver::Systemd, "");
    assert_eq!(
        systemd.name(&systemd.pod_cgroup(&burstable())),
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podb_1.slice"
    );
    let rooted = CgroupLayout::new(Driver::Cgroupfs, "/edge/node-a");
    assert_eq!(rooted.name(&rooted.pod_cgroup(&best_effort())), "/edge/node-a/kubepods/besteffort/pode-1");
    assert_eq!(CgroupName(vec![]).to_systemd(), "/");
    assert!(Driver::parse("openrc").is_err());
}

#[test]
fn pod_resources_follow_the_qos_class() {
    let g = resource_config_for_pod(&guaranteed(), true, 100_000);
    assert_eq!(
        g,
        CgroupResources {
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory_limit: Some(128 << 20),
            ..Default::default()
        }
    );
    let no_quota = resource_config_for_pod(&guaranteed(), false, 100_000);
    assert_eq!(no_quota.cpu_quota, Some(-1), "cpuCFSQuota: false");

    // Burstable: memory limited by every container, cpu by none → shares and memory only.
    let b = resource_config_for_pod(&burstable(), true, 100_000);
    assert_eq!(b, CgroupResources { cpu_shares: Some(256), memory_limit: Some(256 << 20), ..Default::default() });
    // One container without a memory limit: no pod memory limit.
    let mut two = burstable();
    two.spec.as_mut().expect("spec").containers.push(container("b", &[("cpu", "100m")], &[("cpu", "200m")]));
    let b2 = resource_config_for_pod(&two, true, 50_000);
    assert_eq!((b2.cpu_shares, b2.memory_limit, b2.cpu_quota), (Some(358), None, None));

    let e = resource_config_for_pod(&best_effort(), true, 100_000);
    assert_eq!(e, CgroupResources { cpu_shares: Some(2), ..Default::default() });

    // Overhead counts in requests and in the limits that are set; hugepages from requests.
    let mut o = guaranteed();
    let spec = o.spec.as_mut().expect("spec");
    spec.overhead = list(&[("cpu", "100m"), ("memory", "32Mi")]);
    spec.containers[0] = container(
        "a",
        &[("cpu", "500m"), ("memory", "128Mi"), ("hugepages-2Mi", "4Mi")],
        &[("cpu", "500m"), ("memory", "128Mi"), ("hugepages-2Mi", "4Mi")],
    );
    let r = resource_config_for_pod(&o, true, 100_000);
    assert_eq!((r.cpu_shares, r.cpu_quota, r.memory_limit), (Some(614), Some(60_000), Some(160 << 20)));
    assert_eq!(r.hugepage_limits, vec![("2MB".to_string(), 4 << 20)]);
}

#[test]
fn oom_score_adjust_as_upstream() {
    const GI: u64 = 1 << 30;
    let g = guaranteed();
    assert_eq!(oom_score_adj(&g, &g.spec.as_ref().expect("spec").containers[0], GI), -997);
    let e = best_effort();
    assert_eq!(oom_score_adj(&e, &e.spec.as_ref().expect("spec").containers[0], GI), 1000);
    // 64Mi of 1Gi: 1000 - 62 = 938.
    let b = burstable();
    assert_eq!(oom_score_adj(&b, &b.spec.as_ref().expect("spec").containers[0], GI), 938);
    // No memory request → 1000 → 999; the whole node → at least 3.
    let c = container("x", &[("cpu", "1")], &[]);
    assert_eq!(oom_score_adj(&pod("x", vec![c.clone()]), &c, GI), 999);
    let big = container("y", &[("memory", "2Gi")], &[]);
    assert_eq!(oom_score_adj(&pod("y", vec![big.clone()]), &big, GI), 3);
    // A node-critical static pod is protected whatever its class.
    let mut critical = best_effort();
    critical.metadata.annotations = Some([("kubernetes.io/config.source".to_string(), "file".to_string())].into());
    critical.spec.as_mut().expect("spec").priority_class_name = Some("system-node-critical".into());
    assert_eq!(oom_score_adj(&critical, &critical.spec.as_ref().expect("spec").containers[0], GI), -997);
    // A sidecar is no likelier to be killed than the smallest regular container.
    let mut with_sidecar = burstable();
    let mut sidecar = container("side", &[], &[]);
    sidecar.restart_policy = Some("Always".into());
    with_sidecar.spec.as_mut().expect("spec").init_containers = Some(vec![sidecar.clone()]);
    assert_eq!(oom_score_adj(&with_sidecar, &sidecar, GI), 938);
}

#[test]
fn hugepage_sizes_are_named_as_the_kernel() {
    assert_eq!(hugepage_unit_size(2 << 20).as_deref(), Some("2MB"));
    assert_eq!(hugepage_unit_size(1 << 30).as_deref(), Some("1GB"));
    assert_eq!(hugepage_unit_size(64 << 10).as_deref(), Some("64KB"));
}

/// A fake v1 cgroup filesystem: cpu, cpuacct, cpuset, memory and pids hierarchies.
fn v1_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for h in ["cpu", "cpuacct", "cpuset", "memory", "pids"] {
        std::fs::create_dir(dir.path().join(h)).expect("mkdir");
    }
    std::fs::write(dir.path().join("cpuset/cpuset.cpus"), "0-1").expect("write");
    std::fs::write(dir.path().join("cpuset/cpuset.mems"), "0").expect("write");
    dir
}

fn manager(root: &Path) -> ContainerManager {
    let fs = CgroupFs::open(root).expect("open");
    ContainerManager::new(
        fs,
        PodCgroupSettings {
            layout: CgroupLayout::new(Driver::Cgroupfs, "/"),
            enforce_cpu_limits: true,
            cpu_period_us: 100_000,
            pod_pids_limit: 1024,
        },
    )
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn start_ensure_update_and_list_on_a_v1_tree() {
    let root = v1_root();
    let m = manager(root.path());
    let node = CgroupResources { cpu_shares: Some(2048), memory_limit: Some(8 << 30), ..Default::default() };
    m.start("/", &node).expect("start");
    assert_eq!(read(root.path(), "cpu/kubepods/cpu.shares"), "2048");
    assert_eq!(read(root.path(), "memory/kubepods/memory.limit_in_bytes"), (8u64 << 30).to_string());
    assert_eq!(read(root.path(), "cpu/kubepods/besteffort/cpu.shares"), "2");
    assert_eq!(read(root.path(), "cpuset/kubepods/burstable/cpuset.cpus"), "0-1");
    assert!(m.start("/missing", &node).expect_err("no such root").contains("\"/missing\" doesn't exist"));

    let (g, b) = (guaranteed(), burstable());
    assert!(!m.pod_cgroup_exists(&g));
    m.ensure_pod_cgroup(&g).expect("guaranteed");
    m.ensure_pod_cgroup(&b).expect("burstable");
    assert!(m.pod_cgroup_exists(&g));
    assert_eq!(read(root.path(), "cpu/kubepods/podg-1/cpu.cfs_quota_us"), "50000");
    assert_eq!(read(root.path(), "memory/kubepods/podg-1/memory.limit_in_bytes"), (128u64 << 20).to_string());
    assert_eq!(read(root.path(), "pids/kubepods/podg-1/pids.max"), "1024");
    assert_eq!(read(root.path(), "cpu/kubepods/burstable/podb-1/cpu.shares"), "256");
    assert!(!root.path().join("cpu/kubepods/burstable/podb-1/cpu.cfs_quota_us").exists(), "no cpu limit");

    // An existing pod cgroup is never changed.
    std::fs::write(root.path().join("cpu/kubepods/podg-1/cpu.shares"), "7").expect("write");
    m.ensure_pod_cgroup(&g).expect("again");
    assert_eq!(read(root.path(), "cpu/kubepods/podg-1/cpu.shares"), "7");

    m.update_qos_cgroups(&[&g, &b, &best_effort()]).expect("qos");
    assert_eq!(read(root.path(), "cpu/kubepods/burstable/cpu.shares"), "256", "the burstable pods' requests");
    m.update_qos_cgroups(&[&g]).expect("qos");
    assert_eq!(read(root.path(), "cpu/kubepods/burstable/cpu.shares"), "2", "none left");

    let found = m.pods_in_cgroups().expect("list");
    assert_eq!(found.keys().collect::<Vec<_>>(), ["b-1", "g-1"]);
    assert_eq!(m.find_pod_cgroup("b-1"), Some(found["b-1"].clone()));
    assert_eq!(m.find_pod_cgroup("nope"), None);
}

#[test]
fn systemd_pod_cgroups_are_found_by_their_slice_names() {
    let root = v1_root();
    let fs = CgroupFs::open(root.path()).expect("open");
    let m = ContainerManager::new(
        fs,
        PodCgroupSettings {
            layout: CgroupLayout::new(Driver::Systemd, "/"),
            enforce_cpu_limits: true,
            cpu_period_us: 100_000,
            pod_pids_limit: -1,
        },
    );
    m.start("/", &CgroupResources::default()).expect("start");
    m.ensure_pod_cgroup(&burstable()).expect("burstable");
    assert!(
        root.path().join("memory/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podb_1.slice").is_dir()
    );
    let found = m.pods_in_cgroups().expect("list");
    assert_eq!(found.keys().collect::<Vec<_>>(), ["b-1"]);
}
