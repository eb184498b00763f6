//! End-to-end eviction on the private containerd, through the test API server (or a real
//! cluster named by `RKUBELET_TEST_KUBECONFIG`): a pod filling a memory-backed emptyDir is
//! evicted under a hard `memory.available` threshold set just below what the node has free,
//! while a Guaranteed pod using less than its request keeps running; the node reports
//! MemoryPressure meanwhile. Alone in its binary: it makes the node short of memory on purpose.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod, PodStatus};
use kube::api::{Api, ListParams, PostParams};
use testkit::cluster::TestCluster;
use testkit::{Agent, AgentOptions, NodeEnv, wait_for};

const MI: u64 = 1 << 20;

/// What the kubelet computes as memory.available: capacity minus the root cgroup's working set.
fn memory_available() -> u64 {
    let capacity = sys::node_info::machine_info().expect("machine info").memory_bytes;
    let root = sys::stats::cgroup_stats(Path::new("/sys/fs/cgroup"), "/").expect("root cgroup");
    capacity.saturating_sub(root.memory.expect("root memory").working_set_bytes)
}

/// A pod bound to `node` with a 2 s grace period; `spec` gives its volumes and containers.
fn bound_pod(name: &str, node: &str, mut spec: serde_json::Value) -> Pod {
    spec["nodeName"] = node.into();
    spec["terminationGracePeriodSeconds"] = 2.into();
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec});
    serde_json::from_value(pod).unwrap()
}

/// Waits for the pod to be Failed with reason Evicted; its status.
async fn wait_evicted(pods: &Api<Pod>, name: &str, a: &Agent) -> PodStatus {
    wait_for(&format!("{name} evicted"), Duration::from_secs(90), || async {
        let p = pods.get(name).await.map_err(|e| e.to_string())?;
        let st = p.status.clone().unwrap_or_default();
        if phase(&p) == "Failed" && st.reason.as_deref() == Some("Evicted") {
            Ok(st)
        } else {
            Err(format!("{st:?}\n{}", common::tail(&a.log())))
        }
    })
    .await
}

fn phase(p: &Pod) -> String {
    p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default()
}

fn memory_pressure(n: &Node) -> Option<String> {
    n.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "MemoryPressure").map(|c| c.status.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_hog_is_evicted_under_a_hard_threshold_and_a_guaranteed_pod_is_not() {
    let Some(env) = NodeEnv::require() else { return };
    let cluster = TestCluster::start().await.unwrap();
    let args = vec![format!("--kubeconfig={}", cluster.kubeconfig.display())];
    let mut a = Agent::start(
        Path::new(common::BIN),
        &env,
        "evict",
        AgentOptions {
            args: args.clone(),
            config_yaml: Some("nodeStatusUpdateFrequency: 2s\n".into()),
            ..Default::default()
        },
    );
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let guaranteed = bound_pod(
        "steady",
        &a.node,
        serde_json::json!({"containers": [{"name": "app", "image": env.test_image,
                "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}}]}),
    );
    pods.create(&PostParams::default(), &guaranteed).await.unwrap();
    wait_for("steady running", Duration::from_secs(60), || async {
        let p = pods.get("steady").await.map_err(|e| e.to_string())?;
        if phase(&p) == "Running" { Ok(()) } else { Err(format!("{:?}\n{}", p.status, common::tail(&a.log()))) }
    })
    .await;

    // Everything but the hog runs now: a threshold 400Mi below what is free is crossed by its
    // 700Mi and not before.
    let threshold = memory_available() / MI - 400;
    a.restart_with(AgentOptions {
        args,
        config_yaml: Some(format!(
            "nodeStatusUpdateFrequency: 2s\nevictionPressureTransitionPeriod: 10s\nevictionHard:\n  memory.available: {threshold}Mi\n"
        )),
        ..Default::default()
    });
    let hog = bound_pod(
        "hog",
        &a.node,
        serde_json::json!({
                "volumes": [{"name": "ram", "emptyDir": {"medium": "Memory"}}],
                "containers": [{"name": "hog", "image": env.test_image,
                    "command": ["sh", "-c", "dd if=/dev/zero of=/ram/fill bs=1M count=700; trap 'exit 0' TERM; while true; do sleep 1; done"],
                    "volumeMounts": [{"name": "ram", "mountPath": "/ram"}]}]
        }),
    );
    pods.create(&PostParams::default(), &hog).await.unwrap();

    let seen_pressure = std::sync::atomic::AtomicBool::new(false);
    let evicted = wait_for("the hog evicted", Duration::from_secs(90), || async {
        if nodes.get(&a.node).await.ok().as_ref().and_then(memory_pressure).as_deref() == Some("True") {
            seen_pressure.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let p = pods.get("hog").await.map_err(|e| e.to_string())?;
        let st = p.status.clone().unwrap_or_default();
        if phase(&p) == "Failed" && st.reason.as_deref() == Some("Evicted") {
            Ok(st)
        } else {
            Err(format!("{st:?}\n{}", common::tail(&a.log())))
        }
    })
    .await;
    let message = evicted.message.unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "The node was low on resource: memory. Threshold quantity: {threshold}Mi, available: "
        )),
        "{message}"
    );
    assert!(
        message.contains("Container hog was using ")
            && message.ends_with(", request is 0, has larger consumption of memory. "),
        "{message}"
    );
    let disruption = evicted.conditions.unwrap_or_default().into_iter().find(|c| c.type_ == "DisruptionTarget");
    assert_eq!(disruption.and_then(|c| c.reason).as_deref(), Some("TerminationByKubelet"));
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    wait_for("an Evicted event for the hog", Duration::from_secs(30), || async {
        let evs = events.list(&ListParams::default()).await.map_err(|e| e.to_string())?.items;
        evs.iter()
            .find(|e| {
                e.involved_object.name.as_deref() == Some("hog")
                    && e.reason.as_deref() == Some("Evicted")
                    && e.type_.as_deref() == Some("Warning")
            })
            .map(|_| ())
            .ok_or_else(|| "no Evicted event yet".to_string())
    })
    .await;

    // The hog's memory went with its emptyDir; the Guaranteed pod was never touched; the
    // condition clears after the transition period.
    wait_for("MemoryPressure back to False", Duration::from_secs(60), || async {
        let n = nodes.get(&a.node).await.map_err(|e| e.to_string())?;
        match memory_pressure(&n).as_deref() {
            Some("True") => {
                seen_pressure.store(true, std::sync::atomic::Ordering::SeqCst);
                Err("MemoryPressure True".to_string())
            }
            Some("False") => Ok(()),
            other => Err(format!("MemoryPressure {other:?}")),
        }
    })
    .await;
    assert!(seen_pressure.load(std::sync::atomic::Ordering::SeqCst), "the node reported MemoryPressure True meanwhile");
    let steady = pods.get("steady").await.unwrap();
    assert_eq!(phase(&steady), "Running", "the Guaranteed pod under its request stays");
    assert_eq!(
        steady.status.and_then(|s| s.container_statuses).map(|c| c[0].restart_count),
        Some(0),
        "and was not restarted"
    );
    a.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn local_storage_limits_evict_at_once() {
    let Some(env) = NodeEnv::require() else { return };
    let cluster = TestCluster::start().await.unwrap();
    let a = Agent::start(
        Path::new(common::BIN),
        &env,
        "evict-storage",
        AgentOptions {
            args: vec![format!("--kubeconfig={}", cluster.kubeconfig.display())],
            config_yaml: Some("volumeStatsAggPeriod: 2s\n".into()),
            ..Default::default()
        },
    );
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let sleep = "trap 'exit 0' TERM; while true; do sleep 1; done";
    let scratch = bound_pod(
        "scratch",
        &a.node,
        serde_json::json!({
                "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}],
                "containers": [{"name": "app", "image": env.test_image,
                    "command": ["sh", "-c", format!("dd if=/dev/zero of=/scratch/f bs=1M count=4; {sleep}")],
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}]
        }),
    );
    // Two containers: the pod stays under the sum of their limits, "big" goes over its own.
    let writer = bound_pod(
        "writer",
        &a.node,
        serde_json::json!({
                "containers": [
                    {"name": "big", "image": env.test_image,
                     "command": ["sh", "-c", format!("dd if=/dev/zero of=/tmp/f bs=1M count=4; {sleep}")],
                     "resources": {"limits": {"ephemeral-storage": "2Mi"}}},
                    {"name": "small", "image": env.test_image, "command": ["sh", "-c", sleep],
                     "resources": {"limits": {"ephemeral-storage": "20Mi"}}}
                ]
        }),
    );
    let steady = common::sleeping_pod("steady", &a.node, &env.test_image);
    for p in [&scratch, &writer, &steady] {
        pods.create(&PostParams::default(), p).await.unwrap();
    }
    for (name, want) in [
        ("scratch", "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". "),
        ("writer", "Container big exceeded its local ephemeral storage limit \"2Mi\". "),
    ] {
        let st = wait_evicted(&pods, name, &a).await;
        assert_eq!(st.message.as_deref(), Some(want));
        assert!(
            !st.conditions.unwrap_or_default().iter().any(|c| c.type_ == "DisruptionTarget"),
            "local storage evictions add no DisruptionTarget condition, as upstream"
        );
    }
    assert_eq!(phase(&pods.get("steady").await.unwrap()), "Running", "a pod within its limits stays");
    a.cleanup().await;
}
