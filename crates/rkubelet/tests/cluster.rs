//! End-to-end in cluster mode: the real rkubelet binary with `--kubeconfig`, on the private
//! containerd, against the in-memory test API server — or a real cluster when
//! `RKUBELET_TEST_KUBECONFIG` names one (each test then uses its own namespace and node name).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use cri::RuntimeService;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use testkit::cluster::TestCluster;
use testkit::{Agent, NodeEnv, wait_for};

/// A short lease (renewed every second) so the test sees renewals quickly.
const CONFIG: &str = "nodeLeaseDurationSeconds: 4\nnodeStatusUpdateFrequency: 2s\n";

fn condition(pod: &Pod, t: &str) -> Option<String> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == t).map(|c| c.status.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn node_registers_leases_runs_api_pods_and_deletes_them() {
    let Some(env) = NodeEnv::require() else { return };
    let cluster = TestCluster::start().await.unwrap();
    let a = common::cluster_agent(&env, &cluster, "api", CONFIG);
    let nodes: Api<Node> = Api::all(cluster.client.clone());

    // Registration: Ready, with capacity, addresses and nodeInfo.
    let node = wait_for("node registered and Ready", Duration::from_secs(30), || async {
        let n = nodes.get(&a.node).await.map_err(|e| format!("{e}\n{}", common::tail(&a.log())))?;
        let ready = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| (c.status.clone(), c.reason.clone()));
        if ready == Some(("True".into(), Some("KubeletReady".into()))) {
            Ok(n)
        } else {
            Err(format!("Ready = {ready:?}\n{}", common::tail(&a.log())))
        }
    })
    .await;
    let st = node.status.clone().unwrap();
    let cap = st.capacity.unwrap();
    assert!(cap["cpu"].0.parse::<u32>().unwrap() >= 1, "{cap:?}");
    assert_eq!(cap["pods"].0, "110");
    assert!(cap.contains_key("memory") && cap.contains_key("ephemeral-storage"), "{cap:?}");
    let info = st.node_info.unwrap();
    assert!(info.container_runtime_version.starts_with("containerd://"), "{info:?}");
    assert_eq!(info.operating_system, "linux");
    let labels = node.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], a.node);
    assert!(st.addresses.unwrap().iter().any(|ad| ad.type_ == "Hostname" && ad.address == a.node));
    assert_eq!(st.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port, i32::from(a.port));

    // The lease is owned by the node and renewed.
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), "kube-node-lease");
    let first = wait_for("lease with owner", Duration::from_secs(20), || async {
        let l = leases.get(&a.node).await.map_err(|e| e.to_string())?;
        let owned = l
            .metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o.iter().any(|o| o.kind == "Node" && Some(&o.uid) == node.metadata.uid.as_ref()));
        if owned { Ok(l) } else { Err(format!("{:?}", l.metadata.owner_references)) }
    })
    .await;
    assert_eq!(first.spec.as_ref().unwrap().holder_identity.as_deref(), Some(a.node.as_str()));
    assert_eq!(first.spec.as_ref().unwrap().lease_duration_seconds, Some(4));
    let renewed = |l: &Lease| l.spec.as_ref().and_then(|s| s.renew_time.clone());
    let t0 = renewed(&first);
    wait_for("lease renewed", Duration::from_secs(10), || async {
        let l = leases.get(&a.node).await.map_err(|e| e.to_string())?;
        if renewed(&l) != t0 { Ok(()) } else { Err("renewTime unchanged".into()) }
    })
    .await;

    // A pod bound to the node runs, and its status reaches the API.
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    pods.create(&PostParams::default(), &common::sleeping_pod("web", &a.node, &env.test_image)).await.unwrap();
    let running = wait_for("pod Running in the API", Duration::from_secs(60), || async {
        let p = pods.get("web").await.map_err(|e| e.to_string())?;
        let st = p.status.clone().unwrap_or_default();
        let ready = st.container_statuses.iter().flatten().any(|c| c.name == "app" && c.ready);
        if st.phase.as_deref() == Some("Running") && ready && condition(&p, "Ready").as_deref() == Some("True") {
            Ok(p)
        } else {
            Err(format!("{st:?}\n{}", common::tail(&a.log())))
        }
    })
    .await;
    let st = running.status.clone().unwrap();
    assert!(st.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty()), "podIP: {st:?}");
    assert!(st.start_time.is_some());
    assert_eq!(st.qos_class.as_deref(), Some("BestEffort"));
    let cs = &st.container_statuses.unwrap()[0];
    assert!(cs.container_id.as_deref().unwrap().starts_with("containerd://"));
    assert!(cs.state.as_ref().unwrap().running.is_some());

    // A condition written by someone else survives the kubelet's patches.
    let custom = serde_json::json!({"status": {"conditions": [{"type": "example.com/Gate", "status": "True"}]}});
    pods.patch_status("web", &PatchParams::default(), &Patch::Strategic(&custom)).await.unwrap();
    // Make the kubelet write again: restart the container by killing it from the runtime.
    let cid = cs.container_id.clone().unwrap().trim_start_matches("containerd://").to_string();
    a.cri().stop_container(&cid, 0).await.unwrap();
    wait_for("restart reported with the custom condition kept", Duration::from_secs(60), || async {
        let p = pods.get("web").await.map_err(|e| e.to_string())?;
        let restarts =
            p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).map(|c| c[0].restart_count).unwrap_or(0);
        match (restarts, condition(&p, "example.com/Gate")) {
            (r, Some(s)) if r >= 1 && s == "True" => Ok(()),
            (r, c) => Err(format!("restarts {r}, custom condition {c:?}")),
        }
    })
    .await;

    // Graceful delete: containers stop, then the kubelet removes the object.
    let uid = running.metadata.uid.clone().unwrap();
    pods.delete("web", &DeleteParams { grace_period_seconds: Some(5), ..Default::default() }).await.unwrap();
    wait_for("pod object removed", Duration::from_secs(40), || async {
        match pods.get_opt("web").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(p) if p.metadata.uid.as_deref() != Some(uid.as_str()) => Ok(()),
            Some(p) => Err(format!(
                "still there: deletionTimestamp {:?} phase {:?}\n{}",
                p.metadata.deletion_timestamp,
                p.status.and_then(|s| s.phase),
                common::tail(&a.log())
            )),
        }
    })
    .await;
    wait_for("containers gone from the runtime", Duration::from_secs(20), || async {
        let running: Vec<_> = a.containers_of_pod("web").await.into_iter().filter(|c| c.state == 1).collect();
        if running.is_empty() { Ok(()) } else { Err(format!("{} still running", running.len())) }
    })
    .await;
    a.cleanup().await;
    cluster.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_pod_follows_the_static_pod() {
    let Some(env) = NodeEnv::require() else { return };
    let cluster = TestCluster::start().await.unwrap();
    let a = common::cluster_agent(&env, &cluster, "mirror", CONFIG);
    // Static pods live in a namespace of the test's (a real cluster must not see our pods in default).
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: st\n  namespace: {}\nspec:\n  containers:\n  - name: app\n    image: {}\n    command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 1; done']\n",
        cluster.namespace, env.test_image
    );
    a.write_manifest("st.yaml", &manifest);
    let name = a.pod_name("st");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mirror = wait_for("mirror pod Running", Duration::from_secs(60), || async {
        let p = pods.get(&name).await.map_err(|e| format!("{e}\n{}", common::tail(&a.log())))?;
        if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
            Ok(p)
        } else {
            Err(format!("{:?}", p.status))
        }
    })
    .await;
    let ann = mirror.metadata.annotations.clone().unwrap();
    assert!(ann.contains_key("kubernetes.io/config.mirror"), "{ann:?}");
    assert_eq!(ann["kubernetes.io/config.mirror"], ann["kubernetes.io/config.hash"]);
    let owner = &mirror.metadata.owner_references.clone().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Node", a.node.as_str()));

    // Deleted by a user: recreated (a new object).
    let old_uid = mirror.metadata.uid.clone().unwrap();
    pods.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    wait_for("mirror pod recreated", Duration::from_secs(30), || async {
        let p = pods.get(&name).await.map_err(|e| e.to_string())?;
        if p.metadata.uid.as_deref() != Some(old_uid.as_str()) { Ok(()) } else { Err("same object".into()) }
    })
    .await;

    // Static pod removed: the mirror pod goes too.
    a.remove_manifest("st.yaml");
    wait_for("mirror pod deleted", Duration::from_secs(40), || async {
        match pods.get_opt(&name).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err(format!("still there\n{}", common::tail(&a.log()))),
        }
    })
    .await;
    a.cleanup().await;
    cluster.cleanup().await.unwrap();
}

/// Waits until admission has failed pod `name`.
async fn wait_failed(pods: &Api<Pod>, name: &str, a: &Agent) -> Pod {
    wait_for(&format!("pod {name} Failed by admission"), Duration::from_secs(30), || async {
        let p = pods.get(name).await.map_err(|e| e.to_string())?;
        if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed") {
            Ok(p)
        } else {
            Err(format!("{:?}\n{}", p.status, common::tail(&a.log())))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_not_matching_the_node_is_rejected() {
    let Some(env) = NodeEnv::require() else { return };
    let cluster = TestCluster::start().await.unwrap();
    let a = common::cluster_agent(&env, &cluster, "admit", CONFIG);
    let mut pod = common::sleeping_pod("picky", &a.node, &env.test_image);
    pod.spec.as_mut().unwrap().node_selector = Some([("disktype".to_string(), "ssd".to_string())].into());
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let p = wait_failed(&pods, "picky", &a).await;
    let st = p.status.unwrap();
    assert_eq!(st.reason.as_deref(), Some("NodeAffinity"));
    assert_eq!(
        st.message.as_deref(),
        Some("Pod was rejected: Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector")
    );
    assert!(a.containers_of_pod("picky").await.is_empty(), "a rejected pod never runs");
    pods.delete("picky", &DeleteParams::default()).await.unwrap();

    // A pod asking for more cpu than the node's allocatable: OutOfcpu. The kubelet knows its Node
    // once the lease carries the Node as owner; the request is derived from what the node reports.
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), "kube-node-lease");
    wait_for("lease owned by the node", Duration::from_secs(30), || async {
        let l = leases.get(&a.node).await.map_err(|e| e.to_string())?;
        if l.metadata.owner_references.is_some_and(|o| o.iter().any(|o| o.kind == "Node")) {
            Ok(())
        } else {
            Err(format!("no owner yet\n{}", common::tail(&a.log())))
        }
    })
    .await;
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let alloc = nodes.get(&a.node).await.unwrap().status.unwrap().allocatable.unwrap();
    let cpu = core_kubelet::quantity::ParsedQuantity::parse(&alloc["cpu"].0).unwrap().milli_value();
    let mut pod = common::sleeping_pod("greedy", &a.node, &env.test_image);
    pod.spec.as_mut().unwrap().containers[0].resources =
        Some(serde_json::from_value(serde_json::json!({"requests": {"cpu": format!("{}m", cpu + 1000)}})).unwrap());
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let p = wait_failed(&pods, "greedy", &a).await;
    let st = p.status.unwrap();
    assert_eq!(st.reason.as_deref(), Some("OutOfcpu"));
    // `used` is 0 here, but on a real cluster daemon set pods may already hold cpu on the node.
    let msg = st.message.unwrap();
    let used = msg
        .strip_prefix(&format!(
            "Pod was rejected: Node didn't have enough resource: cpu, requested: {}, used: ",
            cpu + 1000
        ))
        .and_then(|rest| rest.strip_suffix(&format!(", capacity: {cpu}")))
        .unwrap_or_else(|| panic!("unexpected message {msg:?}"));
    assert!(used.parse::<u64>().is_ok(), "{msg}");
    if !cluster.is_real() {
        assert_eq!(used, "0", "{msg}");
    }
    assert!(a.containers_of_pod("greedy").await.is_empty(), "a rejected pod never runs");
    pods.delete("greedy", &DeleteParams::default()).await.unwrap();
    a.cleanup().await;
    cluster.cleanup().await.unwrap();
}

/// The API server goes away while a pod runs: nothing is killed, the kubelet keeps restarting the
/// container locally, and the status catches up when the server is back. Needs control over the
/// server, so it runs against the in-memory one only.
#[tokio::test(flavor = "multi_thread")]
async fn api_server_outage_keeps_pods_running_and_status_catches_up() {
    let Some(env) = NodeEnv::require() else { return };
    let cluster = TestCluster::start().await.unwrap();
    let Some(server) = cluster.server.as_ref() else {
        eprintln!("skipped on a real cluster: the test must stop the API server");
        return cluster.cleanup().await.unwrap();
    };
    let a = common::cluster_agent(&env, &cluster, "outage", CONFIG);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    pods.create(&PostParams::default(), &common::sleeping_pod("steady", &a.node, &env.test_image)).await.unwrap();
    let cid = wait_for("pod Running in the API", Duration::from_secs(60), || async {
        let p = pods.get("steady").await.map_err(|e| e.to_string())?;
        let cs = p.status.and_then(|s| s.container_statuses).and_then(|c| c.into_iter().next());
        match cs.and_then(|c| c.container_id.filter(|_| c.ready)) {
            Some(id) => Ok(id.trim_start_matches("containerd://").to_string()),
            None => Err(common::tail(&a.log())),
        }
    })
    .await;

    // Status writes are strategic-merge patches of the status subresource, as rkubelet.
    let writes: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/pods/steady/status"))
        .collect();
    assert!(!writes.is_empty());
    for w in &writes {
        assert_eq!(w.content_type.as_deref(), Some("application/strategic-merge-patch+json"), "{w:?}");
        assert!(w.user_agent.as_deref().is_some_and(|u| u.starts_with("rkubelet/")), "{w:?}");
    }

    server.stop().await;
    // While the server is away the kubelet keeps the pod: the container is not touched...
    let running = |id: String| {
        let a = &a;
        async move {
            let cs = a.containers_of_pod("steady").await;
            cs.iter().any(|c| c.id == id && c.state == 1)
        }
    };
    // Until the kubelet has met the outage: its pod watch and its node status writes failed.
    wait_for("the outage seen by the API loops", Duration::from_secs(30), || async {
        let log = a.log();
        let seen = ["watching pods from the API server", "Error updating node status"];
        match seen.iter().find(|s| !log.contains(**s)) {
            None => Ok(()),
            Some(missing) => Err(format!("not yet: {missing}")),
        }
    })
    .await;
    assert!(running(cid.clone()).await, "container killed during the outage\n{}", common::tail(&a.log()));
    assert_eq!(a.healthz().await.map(|(code, _)| code), Ok(200), "healthz does not depend on the API server");
    // ...and still restarted when it dies.
    a.cri().stop_container(&cid, 0).await.unwrap();
    wait_for("container restarted locally", Duration::from_secs(30), || async {
        let cs = a.containers_of_pod("steady").await;
        if cs.iter().any(|c| c.id != cid && c.state == 1) { Ok(()) } else { Err(format!("{} containers", cs.len())) }
    })
    .await;

    server.resume().await.unwrap();
    wait_for("restart count caught up in the API", Duration::from_secs(60), || async {
        let p = pods.get("steady").await.map_err(|e| e.to_string())?;
        let cs = p.status.and_then(|s| s.container_statuses).and_then(|c| c.into_iter().next());
        match cs {
            Some(c) if c.restart_count >= 1 && c.ready => Ok(()),
            other => Err(format!("{other:?}\n{}", common::tail(&a.log()))),
        }
    })
    .await;
    pods.delete("steady", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    a.cleanup().await;
    cluster.cleanup().await.unwrap();
}

/// A kubelet restart does not flap readiness: a container that was ready and running since
/// before the restart is reported ready by the new kubelet before its readiness probe runs again
/// (upstream's kubelet-restart grace: containers started more than 10 s before the kubelet).
#[tokio::test(flavor = "multi_thread")]
async fn a_ready_container_stays_ready_across_a_kubelet_restart() {
    let Some(env) = NodeEnv::require() else { return };
    let cluster = TestCluster::start().await.unwrap();
    let mut a = common::cluster_agent(&env, &cluster, "ready-restart", CONFIG);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut pod = common::sleeping_pod("steady", &a.node, &env.test_image);
    // After a kubelet start the first probe waits a random part of the period (upstream's
    // jitter), also for this pod's first readiness: 20 s keeps that short, and long enough that
    // the restarted kubelet reports the pod (in about a second) before probing it, most times.
    pod.spec.as_mut().unwrap().containers[0].readiness_probe =
        Some(serde_json::from_value(serde_json::json!({"exec": {"command": ["true"]}, "periodSeconds": 20})).unwrap());
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let started = wait_for("pod Ready in the API for over 10 s", Duration::from_secs(90), || async {
        let p = pods.get("steady").await.map_err(|e| e.to_string())?;
        let cs = p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.first().cloned());
        let started = cs.as_ref().and_then(|c| c.state.as_ref()?.running.as_ref()?.started_at.clone());
        match (condition(&p, "Ready").as_deref(), started) {
            (Some("True"), Some(t)) if t.0.as_second() + 11 < unix_now() => Ok(t),
            other => Err(format!("{other:?}\n{}", common::tail(&a.log()))),
        }
    })
    .await;

    a.kill9();
    a.spawn();
    let p = wait_for("the restarted kubelet reports the pod", Duration::from_secs(60), || async {
        let all = a.pods().await?;
        all.into_iter()
            .find(|p| p.metadata.name.as_deref() == Some("steady"))
            .ok_or_else(|| format!("not yet\n{}", common::tail(&a.log())))
    })
    .await;
    let cs = p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.first().cloned()).unwrap();
    let running_since = cs.state.as_ref().and_then(|s| s.running.as_ref()).and_then(|r| r.started_at.clone());
    assert_eq!(running_since, Some(started), "the same instance, adopted");
    assert_eq!((cs.started, cs.ready), (Some(true), true), "kept ready until probed\n{}", common::tail(&a.log()));
    assert_eq!(condition(&p, "Ready").as_deref(), Some("True"));

    pods.delete("steady", &DeleteParams::default()).await.unwrap();
    a.cleanup().await;
    cluster.cleanup().await.unwrap();
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}
