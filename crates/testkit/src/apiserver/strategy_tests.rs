//! Unit tests of the per-resource strategies.

use serde_json::json;

use super::super::resources::resolve;
use super::*;

fn res(name: &str) -> &'static Resource {
    resolve(name).unwrap()
}

#[test]
fn pod_graceful_delete_rules() {
    let pods = res("pods");
    let scheduled =
        json!({"spec": {"nodeName": "n", "terminationGracePeriodSeconds": 20}, "status": {"phase": "Running"}});
    assert_eq!(graceful_period(pods, &scheduled, None), Some(20));
    assert_eq!(graceful_period(pods, &scheduled, Some(5)), Some(5));
    assert_eq!(graceful_period(pods, &scheduled, Some(-3)), Some(1));
    assert_eq!(graceful_period(pods, &json!({"spec": {"terminationGracePeriodSeconds": 20}}), None), Some(0));
    let done =
        json!({"spec": {"nodeName": "n", "terminationGracePeriodSeconds": 20}, "status": {"phase": "Succeeded"}});
    assert_eq!(graceful_period(pods, &done, None), Some(0));
    assert_eq!(graceful_period(res("configmaps"), &scheduled, Some(5)), None);
}

#[test]
fn main_resource_writes_keep_status_and_status_writes_keep_spec() {
    let pods = res("pods");
    let old = json!({"metadata": {"name": "p", "ownerReferences": [{"uid": "1"}]},
                     "spec": {"containers": [{"name": "c", "image": "a"}]},
                     "status": {"phase": "Pending", "qosClass": "BestEffort"}});
    let mut new = old.clone();
    new["status"]["phase"] = json!("Running");
    new["spec"]["containers"][0]["image"] = json!("b");
    let stored = prepare_update(pods, None, &old, new).unwrap();
    assert_eq!(stored["status"]["phase"], "Pending");
    assert_eq!(stored["spec"]["containers"][0]["image"], "b");

    let mut new = old.clone();
    new["status"] = json!({"phase": "Running"});
    new["spec"]["containers"][0]["image"] = json!("z");
    new["metadata"]["ownerReferences"] = json!([]);
    new["metadata"]["labels"] = json!({"l": "1"});
    let stored = prepare_update(pods, Some("status"), &old, new).unwrap();
    assert_eq!(stored["status"], json!({"phase": "Running", "qosClass": "BestEffort"}));
    assert_eq!(stored["spec"]["containers"][0]["image"], "a");
    assert_eq!(stored["metadata"]["ownerReferences"], json!([{"uid": "1"}]));
    assert_eq!(stored["metadata"]["labels"], json!({"l": "1"}));
}

#[test]
fn pod_spec_is_mostly_immutable() {
    let pods = res("pods");
    let old =
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "a"}], "nodeName": "n"}});
    let mut new = old.clone();
    new["spec"]["nodeName"] = json!("other");
    let err = prepare_update(pods, None, &old, new).unwrap_err();
    assert_eq!(err.code, 422);
    assert!(err.message.starts_with("Pod \"p\" is invalid: spec: Forbidden: pod updates may not change fields"));
}

#[test]
fn csr_approval_only_touches_approval_conditions() {
    let csrs = res("certificatesigningrequests.certificates.k8s.io");
    let old = json!({"metadata": {"name": "c"}, "spec": {"signerName": "s"}, "status": {"certificate": "Y2VydA=="}});
    let mut new = old.clone();
    new["spec"]["signerName"] = json!("other");
    new["status"] =
        json!({"conditions": [{"type": "Approved", "status": "True"}, {"type": "Failed", "status": "True"}]});
    let stored = prepare_update(csrs, Some("approval"), &old, new).unwrap();
    assert_eq!(stored["spec"]["signerName"], "s");
    assert_eq!(stored["status"]["certificate"], "Y2VydA==");
    let types: Vec<&str> =
        stored["status"]["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["Approved"]);

    // Through /status the approval cannot be removed, and cannot be granted.
    let mut via_status = stored.clone();
    via_status["status"]["conditions"] = json!([{"type": "Denied", "status": "True"}]);
    let after = prepare_update(csrs, Some("status"), &stored, via_status).unwrap();
    let types: Vec<&str> =
        after["status"]["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["Approved"]);

    let mut both = stored.clone();
    both["status"]["conditions"] =
        json!([{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]);
    assert_eq!(prepare_update(csrs, Some("approval"), &stored, both).unwrap_err().code, 422);
}

#[test]
fn names_are_validated() {
    assert!(validate_name(res("pods"), "web-1.x").is_ok());
    assert!(validate_name(res("pods"), "Web").is_err());
    assert!(validate_name(res("namespaces"), "a.b").is_err());
    assert!(validate_name(res("nodes"), "-n").is_err());
    let csrs = res("certificatesigningrequests.certificates.k8s.io");
    assert!(
        validate_name(csrs, "node-csr-NVlU8l7F8GF9fLh8YDiSujpzNgc6E7Ch48w5V53QJx4").is_ok(),
        "the kubelet's CSR names"
    );
    assert!(validate_name(csrs, "a/b").is_err());
    assert!(validate_name(csrs, "..").is_err());
}

#[test]
fn events_k8s_io_is_stored_as_core_events() {
    let new = res("events.events.k8s.io");
    let obj = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "regarding": {"name": "p"}, "note": "hi",
                     "reportingController": "kubelet"});
    let stored = to_storage(new, obj);
    assert_eq!(stored["involvedObject"]["name"], "p");
    assert_eq!(stored["message"], "hi");
    assert_eq!(stored["reportingComponent"], "kubelet");
    assert_eq!(stored["apiVersion"], "v1");
    let back = present(new, &stored);
    assert_eq!(back["regarding"]["name"], "p");
    assert_eq!(back["apiVersion"], "events.k8s.io/v1");
    assert_eq!(present(res("events"), &stored)["involvedObject"]["name"], "p");
}

#[test]
fn normalize_drops_unknown_fields_and_rejects_bad_types() {
    let cm = res("configmaps");
    let out = normalize(cm, &json!({"metadata": {"name": "c"}, "data": {"a": "b"}, "bogus": 1})).unwrap();
    assert!(out.get("bogus").is_none());
    let err = normalize(cm, &json!({"metadata": {"name": "c"}, "data": {"a": 1}})).unwrap_err();
    assert_eq!(err.code, 400);
}
