//! Unit tests of deletion, finalizers and garbage collection.

use serde_json::json;

use super::super::resources::resolve;
use super::super::store::EventType;
use super::*;

fn pods() -> &'static Resource {
    resolve("pods").unwrap()
}

fn store_with(objs: &[(&'static str, &str, Value)]) -> Store {
    let mut s = Store::new(100);
    for (storage, ns, o) in objs {
        s.put(ObjKey::new(storage, ns, name(o)), o.clone());
    }
    s
}

fn del(store: &mut Store, res: &Resource, k: &ObjKey, opts: DeleteOptions) -> ApiResult<Value> {
    let mut gc = GcQueue::default();
    let out = delete_locked(store, res, k, &opts, &mut gc);
    run_gc(store, gc);
    out
}

fn grace(g: i64) -> DeleteOptions {
    DeleteOptions { grace_period_seconds: Some(g), ..Default::default() }
}

#[test]
fn scheduled_pod_is_deleted_gracefully_then_shortened_then_removed() {
    let pod = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "generation": 1},
                     "spec": {"nodeName": "n", "terminationGracePeriodSeconds": 30}, "status": {"phase": "Running"}});
    let mut s = store_with(&[("pods", "ns", pod)]);
    let k = ObjKey::new("pods", "ns", "p");
    let out = del(&mut s, pods(), &k, DeleteOptions::default()).unwrap();
    assert_eq!(out["metadata"]["deletionGracePeriodSeconds"], 30);
    assert_eq!(out["metadata"]["generation"], 2);
    assert!(out["metadata"]["deletionTimestamp"].is_string());
    // A longer grace period changes nothing; a shorter one shortens.
    let rv = s.rv();
    del(&mut s, pods(), &k, grace(60)).unwrap();
    assert_eq!(s.rv(), rv);
    let out = del(&mut s, pods(), &k, grace(10)).unwrap();
    assert_eq!(out["metadata"]["deletionGracePeriodSeconds"], 10);
    // UID precondition mismatch → 409.
    let err = del(
        &mut s,
        pods(),
        &k,
        DeleteOptions { grace_period_seconds: Some(0), precondition_uid: Some("x".into()), ..Default::default() },
    )
    .unwrap_err();
    assert_eq!(err.code, 409);
    assert!(err.message.contains("Precondition failed: UID in precondition: x, UID in object meta: u1"));
    let out = del(
        &mut s,
        pods(),
        &k,
        DeleteOptions { grace_period_seconds: Some(0), precondition_uid: Some("u1".into()), ..Default::default() },
    )
    .unwrap();
    assert_eq!(out["kind"], "Pod");
    assert!(s.get(&k).is_none());
    let kinds: Vec<EventType> = s.events_since(rv).unwrap().iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![EventType::Modified, EventType::Modified, EventType::Deleted]);
}

#[test]
fn unscheduled_pod_goes_at_once() {
    let mut s = store_with(&[(
        "pods",
        "ns",
        json!({"metadata": {"name": "p"}, "spec": {"terminationGracePeriodSeconds": 30}}),
    )]);
    let k = ObjKey::new("pods", "ns", "p");
    del(&mut s, pods(), &k, DeleteOptions::default()).unwrap();
    assert!(s.get(&k).is_none());
}

#[test]
fn finalizers_hold_objects_until_removed() {
    let cms = resolve("configmaps").unwrap();
    let mut s =
        store_with(&[("configmaps", "ns", json!({"metadata": {"name": "c", "uid": "c1", "finalizers": ["x"]}}))]);
    let k = ObjKey::new("configmaps", "ns", "c");
    let out = del(&mut s, cms, &k, DeleteOptions::default()).unwrap();
    assert_eq!(out["metadata"]["deletionGracePeriodSeconds"], 0);
    assert!(s.get(&k).is_some());
    // Without finalizers the answer is a Success status.
    let mut s = store_with(&[("configmaps", "ns", json!({"metadata": {"name": "c", "uid": "c1"}}))]);
    let out = del(&mut s, cms, &k, DeleteOptions::default()).unwrap();
    assert_eq!(out["status"], "Success");
    assert_eq!(out["details"]["uid"], "c1");
}

#[test]
fn deleting_a_node_collects_its_dependents() {
    let nodes = resolve("nodes").unwrap();
    let owner = json!([{"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "node-uid"}]);
    let mut s = store_with(&[
        ("nodes", "", json!({"metadata": {"name": "n", "uid": "node-uid"}})),
        ("leases", "kube-node-lease", json!({"metadata": {"name": "n", "uid": "l", "ownerReferences": owner}})),
        (
            "pods",
            "kube-system",
            json!({"metadata": {"name": "mirror-n", "uid": "m", "ownerReferences": owner},
                                       "spec": {"nodeName": "n", "terminationGracePeriodSeconds": 30}}),
        ),
        ("pods", "default", json!({"metadata": {"name": "other", "uid": "o"}, "spec": {"nodeName": "elsewhere"}})),
    ]);
    del(&mut s, nodes, &ObjKey::new("nodes", "", "n"), DeleteOptions::default()).unwrap();
    assert!(s.get(&ObjKey::new("leases", "kube-node-lease", "n")).is_none());
    assert!(s.get(&ObjKey::new("pods", "kube-system", "mirror-n")).is_none());
    assert!(s.get(&ObjKey::new("pods", "default", "other")).is_some());
}

#[test]
fn deleting_a_namespace_removes_its_content() {
    let ns = resolve("namespaces").unwrap();
    let mut s = store_with(&[
        ("namespaces", "", json!({"metadata": {"name": "t", "uid": "t"}})),
        ("configmaps", "t", json!({"metadata": {"name": "c", "finalizers": ["x"]}})),
        ("configmaps", "u", json!({"metadata": {"name": "c"}})),
    ]);
    let out = del(&mut s, ns, &ObjKey::new("namespaces", "", "t"), DeleteOptions::default()).unwrap();
    assert_eq!(out["status"]["phase"], "Terminating");
    assert!(s.get(&ObjKey::new("namespaces", "", "t")).is_none());
    assert!(s.get(&ObjKey::new("configmaps", "t", "c")).is_none());
    assert!(s.get(&ObjKey::new("configmaps", "u", "c")).is_some());
}

#[test]
fn dry_run_stores_nothing() {
    let mut s = store_with(&[("pods", "ns", json!({"metadata": {"name": "p"}}))]);
    let rv = s.rv();
    del(&mut s, pods(), &ObjKey::new("pods", "ns", "p"), DeleteOptions { dry_run: true, ..Default::default() })
        .unwrap();
    assert_eq!(s.rv(), rv);
    assert!(DeleteOptions::from_body(&json!({"dryRun": ["All"], "gracePeriodSeconds": 3})).dry_run);
}
