//! The test API server driven with the kube client: CRUD and optimistic concurrency, status
//! subresources, the three patch types, graceful deletion, garbage collection, outages, kubectl.
//! Tests that use only `cluster.client` also run against a real cluster
//! (`RKUBELET_TEST_KUBECONFIG`).

// Test code: a failed expectation is a test failure.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{api_error, create_node, eventually, pod};
use either::Either;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Node, Pod};
use k8s_openapi::api::events::v1::Event as NewEvent;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;
use testkit::cluster::TestCluster;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v1"}})).unwrap()
}

#[tokio::test]
async fn crud_with_optimistic_concurrency() {
    let cluster = TestCluster::start().await.unwrap();
    let api = Api::<ConfigMap>::namespaced(cluster.client.clone(), &cluster.namespace);
    let pp = PostParams::default();

    let created = api.create(&pp, &cm("a")).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    let rv1 = created.metadata.resource_version.clone().unwrap();

    let err = api_error(api.create(&pp, &cm("a")).await);
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(err.message, "configmaps \"a\" already exists");

    let mut fresh = created.clone();
    fresh.data = Some([("k".to_owned(), "v2".to_owned())].into());
    let updated = api.replace("a", &pp, &fresh).await.unwrap();
    assert_ne!(updated.metadata.resource_version.as_deref(), Some(rv1.as_str()));

    // The same stale resourceVersion again: 409 with upstream's message.
    let err = api_error(api.replace("a", &pp, &fresh).await);
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        err.message,
        "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // Without a resourceVersion the update is unconditional.
    fresh.metadata.resource_version = None;
    api.replace("a", &pp, &fresh).await.unwrap();

    // A list carries the current resourceVersion, at or after every item's.
    let list = api.list(&ListParams::default()).await.unwrap();
    let list_rv: u64 = list.metadata.resource_version.unwrap().parse().unwrap();
    assert!(
        list.items.iter().all(|i| i.metadata.resource_version.as_ref().unwrap().parse::<u64>().unwrap() <= list_rv)
    );
    assert!(list.items.iter().any(|i| i.metadata.name.as_deref() == Some("a")));

    let err = api_error(api.get("missing").await);
    assert_eq!((err.code, err.message.as_str()), (404, "configmaps \"missing\" not found"));

    // Namespaced objects need their namespace.
    let nowhere = Api::<ConfigMap>::namespaced(cluster.client.clone(), "no-such-namespace");
    let err = api_error(nowhere.create(&pp, &cm("x")).await);
    assert_eq!((err.code, err.message.as_str()), (404, "namespaces \"no-such-namespace\" not found"));

    // generateName, and dry runs store nothing.
    let generated: ConfigMap = serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let g = api.create(&pp, &generated).await.unwrap();
    assert!(g.metadata.name.unwrap().starts_with("gen-"));
    let dry = PostParams { dry_run: true, ..Default::default() };
    api.create(&dry, &cm("dry")).await.unwrap();
    assert!(api.get_opt("dry").await.unwrap().is_none());
    cluster.cleanup().await.unwrap();
}

#[tokio::test]
async fn pods_are_defaulted_and_status_is_a_separate_subresource() {
    let cluster = TestCluster::start().await.unwrap();
    create_node(&cluster).await;
    let api = Api::<Pod>::namespaced(cluster.client.clone(), &cluster.namespace);
    let pp = PostParams::default();
    let created = api.create(&pp, &pod("p", Some(&cluster.node_name))).await.unwrap();
    let status = created.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    let spec = created.spec.clone().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    assert_eq!(created.metadata.generation, Some(1));

    // A main-resource write cannot change status.
    let mut changed = created.clone();
    changed.status.as_mut().unwrap().phase = Some("Running".into());
    changed.metadata.labels.get_or_insert_with(Default::default).insert("x".into(), "1".into());
    let after = api.replace("p", &pp, &changed).await.unwrap();
    assert_eq!(after.status.unwrap().phase.as_deref(), Some("Pending"));
    assert_eq!(after.metadata.labels.unwrap().get("x").map(String::as_str), Some("1"));

    // A status write cannot change spec.
    let mut changed = api.get("p").await.unwrap();
    changed.status.as_mut().unwrap().phase = Some("Running".into());
    changed.spec.as_mut().unwrap().containers[0].image = Some("other".into());
    let after = api.replace_status("p", &pp, &changed).await.unwrap();
    assert_eq!(after.status.unwrap().phase.as_deref(), Some("Running"));
    assert_eq!(after.spec.unwrap().containers[0].image.as_deref(), Some("busybox"));

    // Pod specs are immutable apart from images and a few fields.
    let mut moved = api.get("p").await.unwrap();
    moved.spec.as_mut().unwrap().node_name = Some("elsewhere".into());
    let err = api_error(api.replace("p", &pp, &moved).await);
    assert_eq!(err.code, 422);
    cluster.cleanup().await.unwrap();
}

#[tokio::test]
async fn strategic_merge_patch_of_status_keeps_foreign_conditions() {
    let cluster = TestCluster::start().await.unwrap();
    create_node(&cluster).await;
    let api = Api::<Pod>::namespaced(cluster.client.clone(), &cluster.namespace);
    api.create(&PostParams::default(), &pod("p", Some(&cluster.node_name))).await.unwrap();
    let t = "2024-01-01T00:00:00Z";
    // Someone else (a controller) owns a custom condition.
    let foreign = json!({"status": {"conditions": [
        {"type": "example.com/Gate", "status": "True", "lastTransitionTime": t},
        {"type": "Ready", "status": "False", "lastTransitionTime": t}
    ]}});
    api.patch_status("p", &PatchParams::default(), &Patch::Merge(&foreign)).await.unwrap();
    // The kubelet's status patch: its own conditions with $setElementOrder.
    let kubelet = json!({"status": {
        "$setElementOrder/conditions": [{"type": "Ready"}, {"type": "PodScheduled"}],
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": t},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": t}
        ],
        "phase": "Running"
    }});
    let after = api.patch_status("p", &PatchParams::default(), &Patch::Strategic(&kubelet)).await.unwrap();
    let status = after.status.unwrap();
    let conditions: Vec<(String, String)> =
        status.conditions.unwrap().into_iter().map(|c| (c.type_, c.status)).collect();
    assert_eq!(
        conditions,
        vec![
            ("example.com/Gate".to_owned(), "True".to_owned()),
            ("Ready".to_owned(), "True".to_owned()),
            ("PodScheduled".to_owned(), "True".to_owned()),
        ]
    );
    assert_eq!(status.phase.as_deref(), Some("Running"));

    if let Some(server) = &cluster.server {
        let last = server.requests().into_iter().rev().find(|r| r.method == "PATCH").unwrap();
        assert_eq!(last.path, format!("/api/v1/namespaces/{}/pods/p/status", cluster.namespace));
        assert_eq!(last.content_type.as_deref(), Some("application/strategic-merge-patch+json"));
        assert_eq!(last.user.as_deref(), Some("kubernetes-admin"));
    }
    cluster.cleanup().await.unwrap();
}

#[tokio::test]
async fn merge_patch_null_deletes_and_patch_resource_version_is_a_precondition() {
    let cluster = TestCluster::start().await.unwrap();
    let api = Api::<ConfigMap>::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut c = cm("m");
    c.metadata.labels = Some([("a".to_owned(), "1".to_owned()), ("b".to_owned(), "2".to_owned())].into());
    let created = api.create(&PostParams::default(), &c).await.unwrap();
    let pp = PatchParams::default();
    let out = api
        .patch("m", &pp, &Patch::Merge(json!({"metadata": {"labels": {"a": null}}, "data": {"k": null}})))
        .await
        .unwrap();
    assert_eq!(out.metadata.labels.unwrap().keys().collect::<Vec<_>>(), vec!["b"]);
    assert!(out.data.unwrap_or_default().is_empty());

    let stale = json!({"metadata": {"resourceVersion": created.metadata.resource_version}, "data": {"k": "x"}});
    let err = api_error(api.patch("m", &pp, &Patch::Merge(&stale)).await);
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));

    let json_patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/data", "value": {"j": "1"}}
    ]))
    .unwrap();
    let out = api.patch("m", &pp, &Patch::<()>::Json(json_patch)).await.unwrap();
    assert_eq!(out.data.unwrap().get("j").map(String::as_str), Some("1"));
    cluster.cleanup().await.unwrap();
}

#[tokio::test]
async fn pod_graceful_deletion_then_forced_deletion_with_uid_precondition() {
    let cluster = TestCluster::start().await.unwrap();
    create_node(&cluster).await;
    let api = Api::<Pod>::namespaced(cluster.client.clone(), &cluster.namespace);
    let created = api.create(&PostParams::default(), &pod("p", Some(&cluster.node_name))).await.unwrap();
    let uid = created.metadata.uid.clone().unwrap();

    let Either::Left(deleting) = api.delete("p", &DeleteParams::default()).await.unwrap() else {
        panic!("a scheduled pod must be deleted gracefully");
    };
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert_eq!(deleting.metadata.deletion_grace_period_seconds, Some(30));
    assert!(api.get_opt("p").await.unwrap().is_some(), "still there during its grace period");

    let wrong = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: Some("not-the-uid".into()), resource_version: None }),
        ..Default::default()
    };
    let err = api_error(api.delete("p", &wrong).await);
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(err.message.contains("Precondition failed: UID in precondition: not-the-uid"), "{}", err.message);

    let right = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
        ..Default::default()
    };
    api.delete("p", &right).await.unwrap();
    assert!(api.get_opt("p").await.unwrap().is_none());

    // An unscheduled pod goes at once.
    api.create(&PostParams::default(), &pod("q", None)).await.unwrap();
    api.delete("q", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("q").await.unwrap().is_none());
    cluster.cleanup().await.unwrap();
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let cluster = TestCluster::start().await.unwrap();
    let api = Api::<ConfigMap>::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut c = cm("f");
    c.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &c).await.unwrap();
    api.delete("f", &DeleteParams::default()).await.unwrap();
    let held = api.get("f").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    api.patch("f", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert!(api.get_opt("f").await.unwrap().is_none());
    cluster.cleanup().await.unwrap();
}

#[tokio::test]
async fn deleting_a_node_removes_its_mirror_pods_and_lease() {
    let cluster = TestCluster::start().await.unwrap();
    let node = create_node(&cluster).await;
    let owner = json!([{"apiVersion": "v1", "kind": "Node", "name": cluster.node_name, "uid": node.metadata.uid,
                        "controller": true}]);
    let mirror: Pod = serde_json::from_value(json!({
        "metadata": {"name": "static-web", "ownerReferences": owner,
                     "annotations": {"kubernetes.io/config.mirror": "hash", "kubernetes.io/config.source": "file"}},
        "spec": {"nodeName": cluster.node_name, "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    let pods = Api::<Pod>::namespaced(cluster.client.clone(), &cluster.namespace);
    pods.create(&PostParams::default(), &mirror).await.unwrap();
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": cluster.node_name, "ownerReferences": owner},
        "spec": {"holderIdentity": cluster.node_name, "leaseDurationSeconds": 40},
    }))
    .unwrap();
    let leases = Api::<Lease>::namespaced(cluster.client.clone(), &cluster.namespace);
    leases.create(&PostParams::default(), &lease).await.unwrap();

    Api::<Node>::all(cluster.client.clone()).delete(&cluster.node_name, &DeleteParams::default()).await.unwrap();
    eventually("mirror pod and lease collected", 120, || async {
        let gone = pods.get_opt("static-web").await.unwrap().is_none()
            && leases.get_opt(&cluster.node_name).await.unwrap().is_none();
        gone.then_some(())
    })
    .await;
    cluster.cleanup().await.unwrap();
}

#[tokio::test]
async fn both_event_apis_share_one_storage() {
    let cluster = TestCluster::start().await.unwrap();
    let new_api = Api::<NewEvent>::namespaced(cluster.client.clone(), &cluster.namespace);
    let ev: NewEvent = serde_json::from_value(json!({
        "metadata": {"name": "e1"},
        "eventTime": "2024-01-01T00:00:00.000000Z",
        "reportingController": "kubelet", "reportingInstance": "node-1",
        "action": "Pulling", "reason": "Pulling", "type": "Normal", "note": "pulling image",
        "regarding": {"kind": "Pod", "name": "p", "namespace": cluster.namespace},
    }))
    .unwrap();
    new_api.create(&PostParams::default(), &ev).await.unwrap();
    let core = Api::<CoreEvent>::namespaced(cluster.client.clone(), &cluster.namespace);
    let seen = core.get("e1").await.unwrap();
    assert_eq!(seen.message.as_deref(), Some("pulling image"));
    assert_eq!(seen.involved_object.name.as_deref(), Some("p"));
    let by_field = core.list(&ListParams::default().fields("involvedObject.name=p")).await.unwrap();
    assert_eq!(by_field.items.len(), 1);
    // Missing required fields of events.k8s.io/v1 are rejected.
    let bad: NewEvent = serde_json::from_value(json!({"metadata": {"name": "e2"}})).unwrap();
    assert_eq!(api_error(new_api.create(&PostParams::default(), &bad).await).code, 422);
    cluster.cleanup().await.unwrap();
}

#[tokio::test]
async fn stop_and_resume_keep_state_and_port() {
    let cluster = TestCluster::start().await.unwrap();
    let Some(server) = &cluster.server else {
        return; // an outage cannot be simulated on a real cluster
    };
    let api = Api::<ConfigMap>::namespaced(cluster.client.clone(), &cluster.namespace);
    api.create(&PostParams::default(), &cm("kept")).await.unwrap();
    let url = server.url().to_owned();
    server.stop().await;
    assert!(!server.is_serving());
    let down =
        tokio::time::timeout(Duration::from_secs(10), api.get("kept")).await.expect("a stopped server answers at once");
    assert!(matches!(down, Err(kube::Error::HyperError(_) | kube::Error::Service(_))), "{down:?}");
    server.resume().await.unwrap();
    assert_eq!(server.url(), url);
    let back = api.get("kept").await.unwrap();
    assert_eq!(back.data.unwrap().get("k").map(String::as_str), Some("v1"));
}

#[tokio::test]
async fn kubectl_works_against_the_server() {
    // client-go does not send bearer tokens over plain HTTP, so kubectl needs the TLS server.
    let cluster = TestCluster::start_tls().await.unwrap();
    if std::process::Command::new("kubectl").arg("version").arg("--client").output().is_err() {
        eprintln!("kubectl not installed; skipping");
        return;
    }
    create_node(&cluster).await;
    Api::<Pod>::namespaced(cluster.client.clone(), &cluster.namespace)
        .create(&PostParams::default(), &pod("from-kube-rs", Some(&cluster.node_name)))
        .await
        .unwrap();
    let kubeconfig = cluster.kubeconfig.clone();
    let run = |args: Vec<String>| {
        let kubeconfig = kubeconfig.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).args(args).output().unwrap()
        })
    };
    let out = run(vec!["get".into(), "pods".into(), "-A".into()]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kubectl failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("from-kube-rs"), "{stdout}");
    let out = run(vec!["get".into(), "pods,nodes".into(), "-n".into(), cluster.namespace.clone()]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kubectl failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&cluster.node_name), "{stdout}");
    let out = run(vec!["auth".into(), "whoami".into(), "-o".into(), "jsonpath={.status.userInfo.username}".into()])
        .await
        .unwrap();
    assert!(out.status.success(), "kubectl auth whoami failed: {}", String::from_utf8_lossy(&out.stderr));
    if cluster.server.is_some() {
        assert_eq!(String::from_utf8_lossy(&out.stdout), "kubernetes-admin");
    }
    cluster.cleanup().await.unwrap();
}
