//! The configMap/secret readers against an API server: the in-memory test server, or a real
//! cluster when `RKUBELET_TEST_KUBECONFIG` names one (the test then works in its own namespace).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use api::objects::{ApiObjects, ChangeDetection, ObjectGetter};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use testkit::cluster::TestCluster;
use testkit::wait_for;

/// A pod (never created in the API: only the kubelet's registration of it matters here).
fn pod(ns: &str, value: serde_json::Value) -> Pod {
    let mut pod: Pod = serde_json::from_value(value).unwrap();
    pod.metadata.namespace = Some(ns.to_owned());
    pod
}

async fn data_of(objects: &ApiObjects, ns: &str, name: &str) -> Option<String> {
    let cm = objects.config_map(ns, name).await.unwrap()?;
    Some(cm.data.unwrap_or_default().get("k").cloned().unwrap_or_default())
}

#[tokio::test]
async fn watched_objects_follow_the_api_and_watches_end_with_their_pods() {
    let cluster = TestCluster::start().await.unwrap();
    let ns = cluster.namespace.clone();
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &ns);
    let objects = ApiObjects::new(cluster.client.clone(), ChangeDetection::Watch);
    let pp = PostParams::default();

    let both = pod(
        &ns,
        json!({
            "metadata": {"name": "p", "uid": "uid-p"},
            "spec": {
                "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "sec"}}]}],
                "volumes": [{"name": "v", "configMap": {"name": "cfg"}}],
            },
        }),
    );
    objects.pod_registered(&both);
    assert_eq!(objects.watched(), 2, "one watch per referenced object");
    // Registering the same pod again (an update) adds no watch.
    objects.pod_registered(&both);
    assert_eq!(objects.watched(), 2);

    // Absent, then created: seen without any TTL to wait out.
    assert_eq!(data_of(&objects, &ns, "cfg").await, None);
    cms.create(&pp, &serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"k": "v1"}})).unwrap())
        .await
        .unwrap();
    let seen = |want: Option<&'static str>| {
        let (objects, ns) = (&objects, &ns);
        async move {
            match data_of(objects, ns, "cfg").await {
                got if got.as_deref() == want => Ok(()),
                got => Err(format!("{got:?}")),
            }
        }
    };
    wait_for("created configMap seen", Duration::from_secs(10), || seen(Some("v1"))).await;
    let change = json!({"data": {"k": "v2"}});
    cms.patch("cfg", &PatchParams::default(), &Patch::Merge(&change)).await.unwrap();
    wait_for("changed configMap seen", Duration::from_secs(10), || seen(Some("v2"))).await;
    // Reads are answered from the watch: no request per read.
    if let Some(server) = &cluster.server {
        server.clear_requests();
        for _ in 0..20 {
            assert_eq!(data_of(&objects, &ns, "cfg").await.as_deref(), Some("v2"));
        }
        let gets = server.requests().iter().filter(|r| r.method == "GET" && r.path.contains("/configmaps")).count();
        assert_eq!(gets, 0, "configMap GETs while watched");
    }
    cms.delete("cfg", &DeleteParams::default()).await.unwrap();
    wait_for("deleted configMap gone", Duration::from_secs(10), || seen(None)).await;

    // An immutable secret is read once and no longer watched for changes, but still served.
    let immutable = json!({"metadata": {"name": "sec"}, "immutable": true, "stringData": {"pw": "p1"}});
    secrets.create(&pp, &serde_json::from_value(immutable).unwrap()).await.unwrap();
    wait_for("immutable secret seen", Duration::from_secs(10), || async {
        match objects.secret(&ns, "sec").await {
            Ok(Some(s)) if s.data.as_ref().and_then(|d| d.get("pw")).map(|b| b.0.as_slice()) == Some(b"p1") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // The pod is updated to refer to the secret only: the configMap's watch ends.
    let secret_only = pod(
        &ns,
        json!({
            "metadata": {"name": "p", "uid": "uid-p"},
            "spec": {"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "sec"}}]}]},
        }),
    );
    objects.pod_registered(&secret_only);
    assert_eq!(objects.watched(), 1);
    // A second pod shares the secret's watch; it stays until both are gone.
    let other = pod(
        &ns,
        json!({
            "metadata": {"name": "q", "uid": "uid-q"},
            "spec": {"containers": [{"name": "c"}], "imagePullSecrets": [{"name": "sec"}]},
        }),
    );
    objects.pod_registered(&other);
    assert_eq!(objects.watched(), 1);
    objects.pod_unregistered(&secret_only);
    assert_eq!(objects.watched(), 1, "still referred to by the other pod");
    objects.pod_unregistered(&other);
    assert_eq!(objects.watched(), 0);

    // Objects no registered pod refers to are read from the API server directly.
    cms.create(&pp, &serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"k": "v3"}})).unwrap())
        .await
        .unwrap();
    assert_eq!(data_of(&objects, &ns, "cfg").await.as_deref(), Some("v3"));

    cluster.cleanup().await.unwrap();
}

#[tokio::test]
async fn get_strategy_reads_every_time() {
    let cluster = TestCluster::start().await.unwrap();
    let ns = cluster.namespace.clone();
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), &ns);
    let objects = ApiObjects::new(cluster.client.clone(), ChangeDetection::Get);
    let p = pod(
        &ns,
        json!({"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": [{"name": "c"}], "volumes": [{"name": "v", "configMap": {"name": "cfg"}}]}}),
    );
    objects.pod_registered(&p);
    assert_eq!(objects.watched(), 0, "Get watches nothing");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"k": "v1"}})).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(data_of(&objects, &ns, "cfg").await.as_deref(), Some("v1"));
    cms.patch("cfg", &PatchParams::default(), &Patch::Merge(&json!({"data": {"k": "v2"}}))).await.unwrap();
    assert_eq!(data_of(&objects, &ns, "cfg").await.as_deref(), Some("v2"), "no copy kept");
    if let Some(server) = &cluster.server {
        server.clear_requests();
        for _ in 0..3 {
            data_of(&objects, &ns, "cfg").await;
        }
        let gets = server.requests().iter().filter(|r| r.method == "GET" && r.path.contains("/configmaps")).count();
        assert_eq!(gets, 3, "one GET per read");
    }
    cluster.cleanup().await.unwrap();
}
