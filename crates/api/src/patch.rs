//! Two-way strategic merge patches (upstream `strategicpatch.CreateTwoWayMergePatch`) for the
//! status objects the kubelet writes: maps are diffed key by key (a removed key becomes `null`),
//! lists with a merge key are diffed element by element (removed elements get `$patch: delete`,
//! and `$setElementOrder/<field>` keeps the order), other lists are replaced whole.

use serde_json::{Map, Value};

/// The merge keys of the lists the kubelet patches in Pod and Node status
/// (`patchMergeKey` tags in k8s.io/api/core/v1/types.go).
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "conditions" | "addresses" => Some("type"),
        "podIPs" | "hostIPs" => Some("ip"),
        _ => None,
    }
}

/// The patch that turns `old` into `new`; an empty object when they are equal.
pub fn two_way(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => Value::Object(diff_maps(o, n)),
        _ => new.clone(),
    }
}

fn diff_maps(old: &Map<String, Value>, new: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, nv) in new {
        match old.get(k) {
            None if nv.is_null() => {}
            None => {
                out.insert(k.clone(), nv.clone());
            }
            Some(ov) if ov == nv => {}
            Some(Value::Object(o)) => match nv {
                Value::Object(n) => {
                    let d = diff_maps(o, n);
                    if !d.is_empty() {
                        out.insert(k.clone(), Value::Object(d));
                    }
                }
                _ => {
                    out.insert(k.clone(), nv.clone());
                }
            },
            Some(Value::Array(o)) => match (nv, merge_key(k)) {
                (Value::Array(n), Some(key)) => {
                    if let Some((patch, order)) = diff_keyed_list(o, n, key) {
                        out.insert(format!("$setElementOrder/{k}"), Value::Array(order));
                        if !patch.is_empty() {
                            out.insert(k.clone(), Value::Array(patch));
                        }
                    }
                }
                _ => {
                    out.insert(k.clone(), nv.clone());
                }
            },
            Some(_) => {
                out.insert(k.clone(), nv.clone());
            }
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            out.insert(k.clone(), Value::Null);
        }
    }
    out
}

/// Element patches and the new order, or `None` when the lists are equal.
fn diff_keyed_list(old: &[Value], new: &[Value], key: &str) -> Option<(Vec<Value>, Vec<Value>)> {
    if old == new {
        return None;
    }
    let key_of = |v: &Value| v.get(key).cloned();
    let mut patch = Vec::new();
    let mut order = Vec::new();
    for n in new {
        let Some(k) = key_of(n) else {
            // An element without its merge key cannot be patched by key: replace the list.
            return Some((
                vec![Value::Object(replace_directive())].into_iter().chain(new.iter().cloned()).collect(),
                vec![],
            ));
        };
        order.push(serde_json::json!({ key: k.clone() }));
        match old.iter().find(|o| key_of(o).as_ref() == Some(&k)) {
            None => patch.push(n.clone()),
            Some(o) if o == n => {}
            Some(o) => {
                let mut d = match (o, n) {
                    (Value::Object(om), Value::Object(nm)) => diff_maps(om, nm),
                    _ => Map::new(),
                };
                d.insert(key.to_string(), k);
                patch.push(Value::Object(d));
            }
        }
    }
    for o in old {
        if let Some(k) = key_of(o)
            && !new.iter().any(|n| key_of(n).as_ref() == Some(&k))
        {
            patch.push(serde_json::json!({ key: k, "$patch": "delete" }));
        }
    }
    Some((patch, order))
}

fn replace_directive() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("$patch".into(), Value::String("replace".into()));
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_objects_give_an_empty_patch() {
        let v = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
        assert_eq!(two_way(&v, &v), json!({}));
    }

    #[test]
    fn maps_are_diffed_and_removed_keys_become_null() {
        let old = json!({"phase": "Pending", "message": "x", "nested": {"a": 1, "b": 2}});
        let new = json!({"phase": "Running", "nested": {"a": 1, "b": 3}});
        assert_eq!(two_way(&old, &new), json!({"phase": "Running", "message": null, "nested": {"b": 3}}));
    }

    #[test]
    fn conditions_are_patched_by_type_with_element_order() {
        let old = json!({"conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
            {"type": "Gone", "status": "True"}
        ]});
        let new = json!({"conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True"}
        ]});
        assert_eq!(
            two_way(&old, &new),
            json!({
                "$setElementOrder/conditions": [{"type": "PodScheduled"}, {"type": "Ready"}],
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": null},
                    {"type": "Gone", "$patch": "delete"}
                ]
            })
        );
    }

    #[test]
    fn lists_without_a_merge_key_are_replaced() {
        let old = json!({"containerStatuses": [{"name": "a", "ready": false}]});
        let new = json!({"containerStatuses": [{"name": "a", "ready": true}]});
        assert_eq!(two_way(&old, &new), json!({"containerStatuses": [{"name": "a", "ready": true}]}));
    }
}
