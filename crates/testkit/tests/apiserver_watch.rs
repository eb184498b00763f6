//! Watches on the test API server: field/label selectors, selector transitions, too-old
//! resourceVersions (410) and kube-runtime's relist, bookmarks, outages.

// Test code: a failed expectation is a test failure.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{api_error, create_node, pod};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use testkit::apiserver::ServerOptions;
use testkit::cluster::TestCluster;

fn describe(e: &WatchEvent<Pod>) -> String {
    match e {
        WatchEvent::Added(p) => format!("ADDED {}", p.metadata.name.clone().unwrap_or_default()),
        WatchEvent::Modified(p) => format!("MODIFIED {}", p.metadata.name.clone().unwrap_or_default()),
        WatchEvent::Deleted(p) => format!("DELETED {}", p.metadata.name.clone().unwrap_or_default()),
        WatchEvent::Bookmark(_) => "BOOKMARK".to_owned(),
        WatchEvent::Error(s) => format!("ERROR {}", s.code),
    }
}

/// The next non-bookmark event, within 10 s.
async fn next_event<S>(stream: &mut S) -> String
where
    S: futures::Stream<Item = kube::Result<WatchEvent<Pod>>> + Unpin,
{
    loop {
        let item = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("an event within 10 s");
        let event = item.expect("the stream is open").expect("a decodable event");
        if !matches!(event, WatchEvent::Bookmark(_)) {
            return describe(&event);
        }
    }
}

#[tokio::test]
async fn watch_by_node_name_sees_add_modify_delete_of_its_pods_only() {
    let cluster = TestCluster::start().await.unwrap();
    create_node(&cluster).await;
    let api = Api::<Pod>::namespaced(cluster.client.clone(), &cluster.namespace);
    let rv = api.list(&Default::default()).await.unwrap().metadata.resource_version.unwrap();
    let wp = WatchParams::default().fields(&format!("spec.nodeName={}", cluster.node_name));
    let mut stream = api.watch(&wp, &rv).await.unwrap().boxed();

    api.create(&PostParams::default(), &pod("other", Some("another-node"))).await.unwrap();
    api.create(&PostParams::default(), &pod("mine", Some(&cluster.node_name))).await.unwrap();
    assert_eq!(next_event(&mut stream).await, "ADDED mine");
    api.patch("mine", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})))
        .await
        .unwrap();
    assert_eq!(next_event(&mut stream).await, "MODIFIED mine");
    api.delete("mine", &DeleteParams::default()).await.unwrap();
    assert_eq!(next_event(&mut stream).await, "MODIFIED mine", "graceful deletion sets deletionTimestamp");
    api.delete("mine", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    // The final delete updates the grace period to 0, then removes the pod.
    assert_eq!(next_event(&mut stream).await, "MODIFIED mine");
    assert_eq!(next_event(&mut stream).await, "DELETED mine");
    cluster.cleanup().await.unwrap();
}

#[tokio::test]
async fn objects_leaving_or_entering_a_selector_are_deleted_or_added() {
    let cluster = TestCluster::start().await.unwrap();
    let api = Api::<Pod>::namespaced(cluster.client.clone(), &cluster.namespace);
    api.create(&PostParams::default(), &pod("p", None)).await.unwrap();
    // From "0": the current state first, as ADDED.
    let mut stream = api.watch(&WatchParams::default().labels("app=web"), "0").await.unwrap().boxed();
    assert_eq!(next_event(&mut stream).await, "ADDED p");
    let relabel = |v: &str| Patch::Merge(json!({"metadata": {"labels": {"app": v}}}));
    api.patch("p", &PatchParams::default(), &relabel("db")).await.unwrap();
    assert_eq!(next_event(&mut stream).await, "DELETED p");
    api.patch("p", &PatchParams::default(), &relabel("web")).await.unwrap();
    assert_eq!(next_event(&mut stream).await, "ADDED p");
    cluster.cleanup().await.unwrap();
}

#[tokio::test]
async fn unsupported_field_selectors_are_rejected() {
    let cluster = TestCluster::start().await.unwrap();
    let api = Api::<Pod>::namespaced(cluster.client.clone(), &cluster.namespace);
    let err = api_error(api.list(&kube::api::ListParams::default().fields("spec.bogus=1")).await);
    assert_eq!(err.code, 400);
    assert!(err.message.contains("field label not supported: spec.bogus"), "{}", err.message);
    cluster.cleanup().await.unwrap();
}

#[tokio::test]
async fn bookmarks_carry_the_current_resource_version() {
    let cluster = TestCluster::start().await.unwrap();
    if cluster.is_real() {
        return; // real servers send bookmarks about once a minute
    }
    let api = Api::<Pod>::namespaced(cluster.client.clone(), &cluster.namespace);
    let rv = api.list(&Default::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut stream = api.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    let event = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap().unwrap();
    let WatchEvent::Bookmark(b) = event else {
        panic!("expected a bookmark, got {}", describe(&event));
    };
    assert_eq!(b.metadata.resource_version, rv);
    // Without allowWatchBookmarks there are none.
    let mut quiet = api.watch(&WatchParams { bookmarks: false, ..Default::default() }, &rv).await.unwrap().boxed();
    assert!(tokio::time::timeout(Duration::from_millis(1500), quiet.next()).await.is_err());
}

#[tokio::test]
async fn a_too_old_resource_version_gets_410_expired() {
    let cluster = TestCluster::start_with(ServerOptions { history_limit: 5, ..Default::default() }).await.unwrap();
    let Some(server) = &cluster.server else {
        return; // a real cluster's history cannot be forced out in a test
    };
    let api = Api::<ConfigMap>::namespaced(cluster.client.clone(), &cluster.namespace);
    let old_rv = server.resource_version().to_string();
    for i in 0..10 {
        let c: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("c{i}")}})).unwrap();
        api.create(&PostParams::default(), &c).await.unwrap();
    }
    let mut stream = api.watch(&WatchParams::default(), &old_rv).await.unwrap().boxed();
    let event = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap().unwrap();
    let WatchEvent::Error(status) = event else {
        panic!("expected an ERROR event");
    };
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
    assert!(status.message.starts_with(&format!("too old resource version: {old_rv} (")), "{}", status.message);
    assert!(tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().is_none(), "the stream closes");
}

#[tokio::test]
async fn watcher_relists_after_an_outage_that_outlived_the_history() {
    let cluster = TestCluster::start().await.unwrap();
    let Some(server) = &cluster.server else {
        return;
    };
    let api = Api::<ConfigMap>::namespaced(cluster.client.clone(), &cluster.namespace);
    let names = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .map_ok(|c: ConfigMap| c.metadata.name.unwrap_or_default());
    let mut names = Box::pin(names);
    let first = tokio::time::timeout(Duration::from_secs(10), names.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first, "kube-root-ca.crt");

    server.stop().await;
    // While it is down, a change happens and the history it would resume from is compacted.
    server
        .put(
            "configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                                  "metadata": {"name": "during-outage", "namespace": cluster.namespace}}),
        )
        .unwrap();
    server.compact_history();
    server.clear_requests();
    server.resume().await.unwrap();

    let seen = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match names.next().await {
                Some(Ok(n)) if n == "during-outage" => return n,
                Some(_) => {}
                None => panic!("the watcher ended"),
            }
        }
    })
    .await
    .expect("the object created during the outage within 60 s");
    assert_eq!(seen, "during-outage");
    let relisted = server.requests().iter().any(|r| {
        r.method == "GET" && r.path.ends_with("/configmaps") && !r.query.contains("watch=") && r.status == 200
    });
    assert!(relisted, "the watcher must have listed again: {:?}", server.requests());
}

#[tokio::test]
async fn watches_end_at_their_timeout() {
    let cluster = TestCluster::start().await.unwrap();
    let api = Api::<Pod>::namespaced(cluster.client.clone(), &cluster.namespace);
    let rv = api.list(&Default::default()).await.unwrap().metadata.resource_version.unwrap();
    let wp = WatchParams { bookmarks: false, ..WatchParams::default().timeout(1) };
    let mut stream = api.watch(&wp, &rv).await.unwrap().boxed();
    let end = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.expect("the watch ends within 5 s");
    assert!(end.is_none(), "no events, just the end of the stream");
    cluster.cleanup().await.unwrap();
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_state_then_changes() {
    let cluster = TestCluster::start().await.unwrap();
    let api = Api::<ConfigMap>::namespaced(cluster.client.clone(), &cluster.namespace);
    let before: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "before"}})).unwrap();
    api.create(&PostParams::default(), &before).await.unwrap();
    let names = watcher(api.clone(), watcher::Config::default().streaming_lists())
        .default_backoff()
        .applied_objects()
        .map_ok(|c: ConfigMap| c.metadata.name.unwrap_or_default());
    let mut names = Box::pin(names);
    let mut seen = Vec::new();
    let after: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "after"}})).unwrap();
    let mut created = false;
    tokio::time::timeout(Duration::from_secs(20), async {
        while !seen.contains(&"after".to_owned()) {
            let n = names.next().await.expect("the watcher runs").expect("no watch errors");
            seen.push(n);
            if !created && seen.contains(&"before".to_owned()) {
                api.create(&PostParams::default(), &after).await.unwrap();
                created = true;
            }
        }
    })
    .await
    .expect("initial state and a later change within 20 s");
    assert!(seen.contains(&"kube-root-ca.crt".to_owned()), "{seen:?}");
    if let Some(server) = &cluster.server {
        let streamed = server.requests().iter().any(|r| r.query.contains("sendInitialEvents=true"));
        assert!(streamed, "the watcher used a streaming list");
    }
    cluster.cleanup().await.unwrap();
}
