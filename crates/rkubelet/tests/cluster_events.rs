//! End-to-end Events in cluster mode: what `kubectl describe pod` and `kubectl get events` show
//! an operator asking why a pod is (not) running — reasons, messages, the container sub-object
//! and the source — as the upstream kubelet writes them. In-memory test API server, or a real
//! cluster named by `RKUBELET_TEST_KUBECONFIG`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use testkit::cluster::TestCluster;
use testkit::{Agent, AgentOptions, NodeEnv, wait_for};

/// `(reason, message, fieldPath)` of the events about `kind/name`, oldest first.
async fn events_of(api: &Api<Event>, kind: &str, name: &str) -> Vec<(String, String, String)> {
    let mut evs: Vec<Event> = api
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some(kind) && e.involved_object.name.as_deref() == Some(name))
        .collect();
    evs.sort_by_key(|e| e.first_timestamp.clone().map(|t| t.0));
    evs.into_iter()
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
                e.involved_object.field_path.unwrap_or_default(),
            )
        })
        .collect()
}

fn has(evs: &[(String, String, String)], reason: &str, message: impl Fn(&str) -> bool) -> bool {
    evs.iter().any(|(r, m, _)| r == reason && message(m))
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_and_failure_events_reach_the_api() {
    let Some(env) = NodeEnv::require() else { return };
    let cluster = TestCluster::start().await.unwrap();
    let a = Agent::start(
        Path::new(common::BIN),
        &env,
        "events",
        AgentOptions {
            args: vec![format!("--kubeconfig={}", cluster.kubeconfig.display())],
            config_yaml: Some("nodeStatusUpdateFrequency: 2s\n".into()),
            ..Default::default()
        },
    );
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let missing = format!("{}/rkubelet/does-not-exist:1", env.registry);
    pods.create(&PostParams::default(), &common::sleeping_pod("web", &a.node, &env.test_image)).await.unwrap();
    pods.create(&PostParams::default(), &common::sleeping_pod("broken", &a.node, &missing)).await.unwrap();

    // A running pod: the image, then the container created and started, each about its container.
    let evs = wait_for("Created and Started events for web", Duration::from_secs(60), || async {
        let evs = events_of(&events, "Pod", "web").await;
        if has(&evs, "Started", |_| true) { Ok(evs) } else { Err(format!("{evs:?}")) }
    })
    .await;
    let image = &env.test_image;
    assert!(
        has(&evs, "Pulled", |m| m == format!("Container image {image:?} already present on machine")
            || m.starts_with(&format!("Successfully pulled image {image:?} in "))),
        "{evs:?}"
    );
    assert!(has(&evs, "Created", |m| m == "Created container: app"), "{evs:?}");
    assert!(has(&evs, "Started", |m| m == "Started container app"), "{evs:?}");
    let container_level = ["Pulling", "Pulled", "Created", "Started"];
    assert!(
        evs.iter()
            .filter(|(r, _, _)| container_level.contains(&r.as_str()))
            .all(|(_, _, f)| f == "spec.containers{app}"),
        "container sub-object: {evs:?}"
    );
    // Pod-level events name no container (here: no clusterDNS configured, as upstream warns).
    assert!(evs.iter().filter(|(r, _, _)| r == "MissingClusterDNS").all(|(_, _, f)| f.is_empty()), "{evs:?}");
    let raw = events.list(&ListParams::default()).await.unwrap().items;
    let started = raw.iter().find(|e| e.reason.as_deref() == Some("Started")).unwrap();
    let source = started.source.clone().unwrap_or_default();
    assert_eq!((source.component.as_deref(), source.host.as_deref()), (Some("kubelet"), Some(a.node.as_str())));
    assert_eq!(started.type_.as_deref(), Some("Normal"));
    assert!(started.involved_object.uid.is_some(), "the reference carries the pod's UID");

    // A missing image: the pull failure, then the back-off, as warnings an operator can read.
    let evs = wait_for("pull failure and back-off events for broken", Duration::from_secs(60), || async {
        let evs = events_of(&events, "Pod", "broken").await;
        if has(&evs, "BackOff", |_| true) { Ok(evs) } else { Err(format!("{evs:?}")) }
    })
    .await;
    assert!(has(&evs, "Pulling", |m| m == format!("Pulling image {missing:?}")), "{evs:?}");
    assert!(has(&evs, "Failed", |m| m.starts_with(&format!("Failed to pull image {missing:?}: "))), "{evs:?}");
    assert!(has(&evs, "Failed", |m| m == "Error: ErrImagePull"), "{evs:?}");
    assert!(has(&evs, "BackOff", |m| m == format!("Back-off pulling image {missing:?}")), "{evs:?}");
    let warnings = raw_types(&events, "broken", "Failed").await;
    assert!(!warnings.is_empty() && warnings.iter().all(|t| t == "Warning"), "{warnings:?}");
    let waiting = pods
        .get("broken")
        .await
        .unwrap()
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.state)
        .and_then(|s| s.waiting)
        .and_then(|w| w.reason);
    assert!(matches!(waiting.as_deref(), Some("ErrImagePull" | "ImagePullBackOff")), "{waiting:?}");

    // Deletion: the kubelet says it stops the container.
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    wait_for("Killing event for web", Duration::from_secs(30), || async {
        let evs = events_of(&events, "Pod", "web").await;
        if has(&evs, "Killing", |m| m == "Stopping container app") { Ok(()) } else { Err(format!("{evs:?}")) }
    })
    .await;

    // The node's own events (namespace default): Starting at registration, and the container
    // manager's node allocatable enforcement.
    let node_events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    wait_for("Starting and NodeAllocatableEnforced events for the node", Duration::from_secs(30), || async {
        let evs = events_of(&node_events, "Node", &a.node).await;
        let enforced = has(&evs, "NodeAllocatableEnforced", |m| m == "Updated Node Allocatable limit across pods");
        if has(&evs, "Starting", |m| m == "Starting kubelet.") && enforced { Ok(()) } else { Err(format!("{evs:?}")) }
    })
    .await;

    drop(a);
    cluster.cleanup().await.unwrap();
}

async fn raw_types(api: &Api<Event>, pod: &str, reason: &str) -> Vec<String> {
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod) && e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.type_)
        .collect()
}
