//! Unit tests of the three patch types.

use serde_json::json;

use super::*;

fn smp(kind: &str, original: Value, patch: Value) -> Value {
    strategic_merge(kind, &original, &patch).unwrap()
}

#[test]
fn merge_patch_null_deletes_and_lists_replace() {
    let orig =
        json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
    let out = apply(
        MERGE,
        "Pod",
        &orig,
        &json!({"metadata": {"labels": {"a": null}}, "spec": {"containers": [{"name": "c"}]}}),
    )
    .unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
    assert_eq!(out["spec"]["containers"], json!([{"name": "c"}]));
}

#[test]
fn json_patch_ops_and_test_failure() {
    let orig = json!({"metadata": {"resourceVersion": "5", "labels": {"a": "1"}}});
    let ok = apply(
        JSON_PATCH,
        "Pod",
        &orig,
        &json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": "5"},
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "remove", "path": "/metadata/labels/a"}
        ]),
    )
    .unwrap();
    assert_eq!(ok["metadata"]["labels"], json!({"b": "2"}));
    assert!(
        apply(JSON_PATCH, "Pod", &orig, &json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "4"}]))
            .is_err()
    );
    assert!(apply("application/apply-patch+yaml", "Pod", &orig, &json!({})).is_err());
}

#[test]
fn conditions_merge_by_type_keeping_foreign_ones_in_order() {
    let orig = json!({"status": {"conditions": [
        {"type": "example.com/Custom", "status": "True"},
        {"type": "Ready", "status": "False"},
        {"type": "PodScheduled", "status": "True"}
    ]}});
    let patch = json!({"status": {
        "$setElementOrder/conditions": [{"type": "Ready"}, {"type": "PodScheduled"}],
        "conditions": [{"type": "Ready", "status": "True"}]
    }});
    let out = smp("Pod", orig, patch);
    assert_eq!(
        out["status"]["conditions"],
        json!([
            {"type": "example.com/Custom", "status": "True"},
            {"type": "Ready", "status": "True"},
            {"type": "PodScheduled", "status": "True"}
        ])
    );
}

#[test]
fn set_element_order_reorders_and_new_items_follow_it() {
    let orig = json!({"status": {"conditions": [{"type": "A"}, {"type": "B"}]}});
    let patch = json!({"status": {
        "$setElementOrder/conditions": [{"type": "C"}, {"type": "B"}, {"type": "A"}],
        "conditions": [{"type": "C", "status": "x"}]
    }});
    let out = smp("Pod", orig, patch);
    let types: Vec<&str> =
        out["status"]["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["C", "B", "A"]);
}

#[test]
fn delete_and_replace_directives() {
    let orig = json!({"spec": {"containers": [
        {"name": "a", "image": "i", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
        {"name": "b", "image": "j"}
    ]}});
    let out = smp(
        "Pod",
        orig.clone(),
        json!({"spec": {"containers": [
            {"name": "b", "$patch": "delete"},
            {"name": "a", "env": [{"name": "Y", "value": "3"}, {"name": "Z", "value": "4"}]}
        ]}}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([
            {"name": "a", "image": "i", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "3"}, {"name": "Z", "value": "4"}]}
        ])
    );
    let replaced = smp("Pod", orig.clone(), json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "c"}]}}));
    assert_eq!(replaced["spec"]["containers"], json!([{"name": "c"}]));
    let map_replaced = smp("Pod", orig.clone(), json!({"spec": {"$patch": "replace", "containers": []}}));
    assert_eq!(map_replaced["spec"], json!({"containers": []}));
    let map_deleted = smp("Pod", orig, json!({"spec": {"$patch": "delete"}}));
    assert_eq!(map_deleted["spec"], json!({}));
}

#[test]
fn lists_without_strategy_are_replaced_and_null_deletes() {
    let orig = json!({"spec": {"tolerations": [{"key": "a"}], "nodeSelector": {"x": "1"}},
                      "status": {"images": [{"names": ["a"]}]}});
    let out = smp(
        "Node",
        orig,
        json!({"spec": {"tolerations": [{"key": "b"}], "nodeSelector": null},
                                       "status": {"images": [{"names": ["b"]}]}}),
    );
    assert_eq!(out["spec"], json!({"tolerations": [{"key": "b"}]}));
    assert_eq!(out["status"]["images"], json!([{"names": ["b"]}]));
}

#[test]
fn node_addresses_and_conditions_merge_by_type() {
    let orig = json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n"}]}});
    let out = smp("Node", orig, json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]}}));
    assert_eq!(
        out["status"]["addresses"],
        json!([{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "Hostname", "address": "n"}])
    );
}

#[test]
fn finalizers_are_a_set_with_delete_from_primitive_list() {
    let orig = json!({"metadata": {"finalizers": ["a", "b"]}});
    let out = smp("Pod", orig.clone(), json!({"metadata": {"finalizers": ["b", "c"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
    let out = smp("Pod", orig, json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
}

#[test]
fn retain_keys_clears_other_members() {
    let orig = json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}});
    let out = smp(
        "Pod",
        orig,
        json!({"spec": {"volumes": [
            {"name": "v", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/x"}}
        ]}}),
    );
    assert_eq!(out["spec"]["volumes"], json!([{"name": "v", "hostPath": {"path": "/x"}}]));
}

#[test]
fn owner_references_merge_by_uid_and_new_values_are_cleaned() {
    let orig = json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}});
    let out = smp(
        "ConfigMap",
        orig,
        json!({"metadata": {
            "ownerReferences": [{"uid": "2", "name": "b"}],
            "annotations": {"x": "1", "y": null, "$patch": "merge"}
        }}),
    );
    // Without $setElementOrder upstream puts patch items before server-only ones.
    assert_eq!(out["metadata"]["ownerReferences"], json!([{"uid": "2", "name": "b"}, {"uid": "1", "name": "a"}]));
    assert_eq!(out["metadata"]["annotations"], json!({"x": "1"}));
}

#[test]
fn missing_merge_key_is_an_error() {
    let err = strategic_merge("Pod", &json!({"status": {}}), &json!({"status": {"conditions": [{"status": "True"}]}}));
    assert!(err.unwrap_err().contains("merge key"));
    assert!(strategic_merge("Pod", &json!({}), &json!([1])).is_err());
}
