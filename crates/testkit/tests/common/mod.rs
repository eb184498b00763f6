//! Helpers shared by the API server tests.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use testkit::cluster::TestCluster;

/// The API error inside a kube error, or a panic naming what happened instead.
pub fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> Box<kube::core::Status> {
    match r {
        Err(kube::Error::Api(s)) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

pub fn pod(name: &str, node: Option<&str>) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": node},
    }))
    .unwrap()
}

/// Registers the cluster's test node (so pods bound to it are not collected on real clusters).
pub async fn create_node(cluster: &TestCluster) -> Node {
    let node: Node = serde_json::from_value(json!({"metadata": {"name": cluster.node_name}})).unwrap();
    Api::<Node>::all(cluster.client.clone()).create(&PostParams::default(), &node).await.unwrap()
}

/// Polls `f` every 50 ms until it yields Some, failing after `secs` seconds.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
