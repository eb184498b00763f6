//! End-to-end: pod and QoS cgroups on this cgroup v1 machine over the real containerd. Three
//! static pods — Guaranteed, Burstable, BestEffort — get `pod<uid>` cgroups under
//! `/kubepods`, `/kubepods/burstable` and `/kubepods/besteffort` with upstream's limits; their
//! containers run inside them with the OOM score of their class; the burstable QoS cgroup's
//! cpu shares follow the burstable pods' requests; a removed pod's cgroup goes. With
//! `systemReserved`/`kubeReserved`, `kubepods` gets capacity minus the reservation and an
//! existing `systemReservedCgroup` gets the system reservation; a missing one stops the agent.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::{Agent, AgentOptions, NodeEnv, wait_for};

mod common;

use common::BIN;

fn manifest(name: &str, image: &str, resources: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {image}
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    resources:
{resources}
"#
    )
}

const GUARANTEED: &str = "      limits:\n        cpu: 500m\n        memory: 64Mi";
const BURSTABLE: &str =
    "      requests:\n        cpu: 250m\n        memory: 32Mi\n      limits:\n        memory: 128Mi";
const BEST_EFFORT: &str = "      {}";

fn cgroup(hierarchy: &str, rel: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup").join(hierarchy).join(rel.trim_start_matches('/'))
}

fn read(hierarchy: &str, rel: &str, file: &str) -> String {
    let p = cgroup(hierarchy, rel).join(file);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).trim().to_string()
}

/// The pod's UID once the agent reports it running.
async fn running_uid(a: &Agent, name: &str) -> String {
    wait_for(&format!("{name} running"), Duration::from_secs(90), || async {
        let pod = a.pod(name).await?;
        match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Running") => Ok(pod.metadata.uid.clone().unwrap_or_default()),
            p => Err(format!("{name}: phase {p:?}\n{}", common::tail(&a.log()))),
        }
    })
    .await
}

/// The OOM score adjustment of the pod's `app` container's process, found through its cgroup.
async fn app_oom_score_adj(a: &Agent, name: &str, pod_cgroup: &str) -> i64 {
    let id = a.containers(name).await.into_iter().find(|c| c.state == 1).expect("running app container").id;
    let procs = read("memory", &format!("{pod_cgroup}/{id}"), "cgroup.procs");
    let pid = procs.lines().next().expect("a process in the container's cgroup");
    std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap().trim().parse().unwrap()
}

/// The OOM score adjustment of node-env's containerd (its pid file beside its socket), the
/// lowest it lets a container have; -1000 (no floor) when it cannot be read.
fn runtime_oom_floor(env: &NodeEnv) -> i64 {
    let pid_file = env.socket().with_file_name("containerd.pid");
    std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{}/oom_score_adj", pid.trim())).ok())
        .and_then(|adj| adj.trim().parse().ok())
        .unwrap_or(-1000)
}

/// The tests of this binary write the one `/kubepods`: one at a time.
static KUBEPODS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn pods_get_cgroups_of_their_qos_class_with_upstreams_limits() {
    let Some(env) = NodeEnv::require() else { return };
    let _one = KUBEPODS.lock().await;
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        eprintln!("cgroup v2 host: this test reads v1 files; the v2 paths are unit-tested over a fake tree");
        return;
    }
    let a = Agent::start(Path::new(BIN), &env, "cgroups", AgentOptions::default());
    a.write_manifest("g.yaml", &manifest("g", &env.test_image, GUARANTEED));
    a.write_manifest("b.yaml", &manifest("b", &env.test_image, BURSTABLE));
    a.write_manifest("e.yaml", &manifest("e", &env.test_image, BEST_EFFORT));
    let (g, b, e) = (running_uid(&a, "g").await, running_uid(&a, "b").await, running_uid(&a, "e").await);
    assert_eq!(a.pod("g").await.unwrap().status.unwrap().qos_class.as_deref(), Some("Guaranteed"));

    // Guaranteed: directly under kubepods, cpu shares and quota, memory limit.
    let gc = format!("/kubepods/pod{g}");
    assert_eq!(read("cpu", &gc, "cpu.shares"), "512");
    assert_eq!(read("cpu", &gc, "cpu.cfs_period_us"), "100000");
    assert_eq!(read("cpu", &gc, "cpu.cfs_quota_us"), "50000");
    assert_eq!(read("memory", &gc, "memory.limit_in_bytes"), (64u64 << 20).to_string());
    // Burstable: shares from the request, the memory limit, no quota (no cpu limit).
    let bc = format!("/kubepods/burstable/pod{b}");
    assert_eq!(read("cpu", &bc, "cpu.shares"), "256");
    assert_eq!(read("cpu", &bc, "cpu.cfs_quota_us"), "-1");
    assert_eq!(read("memory", &bc, "memory.limit_in_bytes"), (128u64 << 20).to_string());
    // BestEffort: the minimum shares.
    let ec = format!("/kubepods/besteffort/pod{e}");
    assert_eq!(read("cpu", &ec, "cpu.shares"), "2");
    // The QoS cgroups: burstable follows the burstable pods' requests (at least this one's:
    // only this agent's pods run), besteffort the minimum.
    wait_for("burstable QoS shares", Duration::from_secs(30), || async {
        let shares = read("cpu", "/kubepods/burstable", "cpu.shares");
        if shares == "256" { Ok(()) } else { Err(format!("burstable cpu.shares {shares}")) }
    })
    .await;
    assert_eq!(read("cpu", "/kubepods/besteffort", "cpu.shares"), "2");

    // Containers run inside their pod's cgroup, with their class's OOM score. node-env's
    // containerd restricts scores to no lower than its own (`restrict_oom_score_adj`: these VMs
    // lack CAP_SYS_RESOURCE), so Guaranteed's -997 shows as that floor.
    let floor = runtime_oom_floor(&env);
    assert_eq!(app_oom_score_adj(&a, "g", &gc).await, (-997).max(floor));
    assert_eq!(app_oom_score_adj(&a, "e", &ec).await, 1000);
    let total = sys::node_info::machine_info().unwrap().memory_bytes as i64;
    let expected = (1000 - 1000 * (32i64 << 20) / total).clamp(3, 999);
    assert_eq!(app_oom_score_adj(&a, "b", &bc).await, expected);

    // A removed pod's cgroup goes with it.
    a.remove_manifest("b.yaml");
    wait_for("the burstable pod's cgroup removed", Duration::from_secs(60), || async {
        if cgroup("memory", &bc).exists() {
            Err(format!("{bc} still there\n{}", common::tail(&a.log())))
        } else {
            Ok(())
        }
    })
    .await;
    wait_for("burstable QoS shares back to the minimum", Duration::from_secs(30), || async {
        let shares = read("cpu", "/kubepods/burstable", "cpu.shares");
        if shares == "2" { Ok(()) } else { Err(format!("burstable cpu.shares {shares}")) }
    })
    .await;
    a.cleanup().await;
}

/// The v1 hierarchies the kubelet checks a cgroup it does not own in.
const RESERVED_HIERARCHIES: [&str; 5] = ["cpu", "cpuacct", "cpuset", "memory", "pids"];

fn mem_total() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    sys::node_info::parse_meminfo_total(&meminfo).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn reservations_come_off_kubepods_and_limit_the_system_reserved_cgroup() {
    let Some(env) = NodeEnv::require() else { return };
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        eprintln!("cgroup v2 host: this test reads v1 files");
        return;
    }
    let _one = KUBEPODS.lock().await;
    let reserved = format!("/rkt-system-reserved-{}", std::process::id());
    for h in RESERVED_HIERARCHIES {
        std::fs::create_dir_all(cgroup(h, &reserved)).unwrap();
    }
    let config = format!(
        "systemReserved:\n  cpu: 500m\n  memory: 256Mi\n  pid: \"1000\"\nkubeReserved:\n  memory: 128Mi\n\
         systemReservedCgroup: {reserved}\nenforceNodeAllocatable: [pods, system-reserved]\n"
    );
    let a = Agent::start(
        Path::new(BIN),
        &env,
        "reserved",
        AgentOptions { config_yaml: Some(config), ..Default::default() },
    );
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    // The kernel keeps memory limits in whole pages.
    let want_memory = (mem_total() - (384 << 20)) / 4096 * 4096;
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
    wait_for("kubepods limited to capacity minus the reservation", Duration::from_secs(30), || async {
        let got = (
            read("memory", "/kubepods", "memory.limit_in_bytes"),
            read("cpu", "/kubepods", "cpu.shares"),
            read("pids", "/kubepods", "pids.max"),
        );
        let want =
            (want_memory.to_string(), ((cores * 1000 - 500) * 1024 / 1000).to_string(), (pid_max - 1000).to_string());
        if got == want { Ok(()) } else { Err(format!("kubepods {got:?}, want {want:?}\n{}", a.log())) }
    })
    .await;
    assert_eq!(read("memory", &reserved, "memory.limit_in_bytes"), (256u64 << 20).to_string());
    assert_eq!(read("cpu", &reserved, "cpu.shares"), "512");
    assert_eq!(read("pids", &reserved, "pids.max"), "1000");
    a.cleanup().await;

    // A reserved cgroup that does not exist stops the kubelet, naming it.
    let missing = format!("{reserved}-missing");
    let config = format!(
        "systemReserved:\n  memory: 256Mi\nsystemReservedCgroup: {missing}\nenforceNodeAllocatable: [pods, system-reserved]\n"
    );
    let mut b = Agent::start(
        Path::new(BIN),
        &env,
        "reserved-missing",
        AgentOptions { config_yaml: Some(config), ..Default::default() },
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while b.is_running() {
        assert!(std::time::Instant::now() < deadline, "the agent still runs:\n{}", b.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = b.log();
    assert!(
        log.contains(&format!(
            "Failed to enforce System Reserved Cgroup Limits on {missing:?}: cgroup {missing:?} has some missing paths"
        )),
        "{log}"
    );
    b.cleanup().await;
    for h in RESERVED_HIERARCHIES {
        let _ = std::fs::remove_dir(cgroup(h, &reserved));
    }
}
