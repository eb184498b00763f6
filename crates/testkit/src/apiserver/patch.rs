//! The three patch types the API accepts: JSON merge patch (RFC 7386), JSON patch (RFC 6902)
//! and strategic merge patch (`k8s.io/apimachinery/pkg/util/strategicpatch`, with the merge keys
//! of the core types from `k8s.io/api/core/v1/types.go` and the `$patch`, `$setElementOrder`,
//! `$retainKeys` and `$deleteFromPrimitiveList` directives).

use serde_json::{Map, Value};

pub(crate) const MERGE: &str = "application/merge-patch+json";
pub(crate) const STRATEGIC: &str = "application/strategic-merge-patch+json";
pub(crate) const JSON_PATCH: &str = "application/json-patch+json";

/// Applies a patch of `content_type` to `original` (the object of `kind`).
pub(crate) fn apply(content_type: &str, kind: &str, original: &Value, patch: &Value) -> Result<Value, String> {
    match content_type {
        MERGE => {
            if !patch.is_object() {
                return Err("a merge patch must be a JSON object".to_owned());
            }
            let mut out = original.clone();
            json_patch::merge(&mut out, patch);
            Ok(out)
        }
        JSON_PATCH => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| e.to_string())?;
            let mut out = original.clone();
            json_patch::patch(&mut out, &ops).map_err(|e| e.to_string())?;
            Ok(out)
        }
        STRATEGIC => strategic_merge(kind, original, patch),
        other => Err(format!("unsupported patch type {other}")),
    }
}

/// How a list field merges under a strategic merge patch.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ListStrategy {
    /// No patch strategy: the patch's list replaces the live one.
    Replace,
    /// `patchStrategy:"merge"` on a list of scalars: set union.
    Set,
    /// `patchStrategy:"merge" patchMergeKey:"<key>"`.
    Key(&'static str),
}

/// The patch strategy of the list at `path` (field names from the object root; list elements
/// add no segment) in an object of `kind`.
fn list_strategy(kind: &str, path: &[String]) -> ListStrategy {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    use ListStrategy::{Key, Replace, Set};
    const CONTAINERS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];
    match (kind, p.as_slice()) {
        (_, ["metadata", "finalizers"]) => Set,
        (_, ["metadata", "ownerReferences"]) => Key("uid"),
        ("Pod", ["spec", c]) if CONTAINERS.contains(c) => Key("name"),
        ("Pod", ["spec", "volumes" | "imagePullSecrets" | "schedulingGates" | "resourceClaims"]) => Key("name"),
        ("Pod", ["spec", "hostAliases"]) => Key("ip"),
        ("Pod", ["spec", "topologySpreadConstraints"]) => Key("topologyKey"),
        ("Pod", ["spec", c, field]) if CONTAINERS.contains(c) => match *field {
            "env" => Key("name"),
            "ports" => Key("containerPort"),
            "volumeMounts" => Key("mountPath"),
            "volumeDevices" => Key("devicePath"),
            _ => Replace,
        },
        ("Pod", ["status", "conditions"]) => Key("type"),
        ("Pod", ["status", "podIPs" | "hostIPs"]) => Key("ip"),
        ("Pod", ["status", "resourceClaimStatuses"]) => Key("name"),
        ("Node", ["spec", "podCIDRs"]) => Set,
        ("Node", ["status", "conditions" | "addresses"]) => Key("type"),
        ("Service", ["spec", "ports"]) => Key("port"),
        ("ServiceAccount", ["secrets"]) => Key("name"),
        _ => Replace,
    }
}

/// Strategic merge patch of `patch` into `original`.
pub(crate) fn strategic_merge(kind: &str, original: &Value, patch: &Value) -> Result<Value, String> {
    let (Value::Object(o), Value::Object(p)) = (original, patch) else {
        return Err("a strategic merge patch must be a JSON object".to_owned());
    };
    merge_map(kind, &mut Vec::new(), o.clone(), p.clone()).map(Value::Object)
}

fn merge_map(
    kind: &str,
    path: &mut Vec<String>,
    mut orig: Map<String, Value>,
    mut patch: Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    match patch.remove("$patch") {
        None => {}
        Some(Value::String(d)) if d == "replace" => return Ok(clean_map(patch)),
        Some(Value::String(d)) if d == "delete" => return Ok(Map::new()),
        Some(Value::String(d)) if d == "merge" => {}
        Some(other) => return Err(format!("Unknown patch type: {other} in map: {}", Value::Object(patch))),
    }
    if let Some(keep) = patch.remove("$retainKeys") {
        let keep: Vec<String> = keep
            .as_array()
            .ok_or("invalid patch: $retainKeys must be a list of strings")?
            .iter()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect();
        orig.retain(|k, _| keep.contains(k));
    }

    // `$setElementOrder/<field>` first: merge that field and then impose the order.
    let order_keys: Vec<String> = patch.keys().filter(|k| k.starts_with("$setElementOrder/")).cloned().collect();
    for order_key in order_keys {
        let field = order_key.trim_start_matches("$setElementOrder/").to_owned();
        let Some(Value::Array(order)) = patch.remove(&order_key) else {
            return Err(format!("invalid patch: {order_key} must be a list"));
        };
        path.push(field.clone());
        let strategy = list_strategy(kind, path);
        let live = match orig.get(&field) {
            Some(Value::Array(a)) => Some(a.clone()),
            _ => None,
        };
        let merged = match (live.clone(), patch.remove(&field)) {
            (live, Some(Value::Array(p))) => merge_list(kind, path, strategy, live.unwrap_or_default(), p)?,
            (Some(live), _) => live,
            (None, _) => {
                path.pop();
                continue;
            }
        };
        let ordered = match strategy {
            ListStrategy::Replace => merged,
            s => impose_order(s, merged, &order, &live.unwrap_or_default()),
        };
        path.pop();
        orig.insert(field, Value::Array(ordered));
    }

    for (k, v) in patch {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(live)), Value::Array(gone)) = (orig.get_mut(field), &v) {
                live.retain(|x| !gone.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        path.push(k.clone());
        let merged = match (orig.remove(&k), v) {
            (_, Value::Null) => None,
            (Some(Value::Object(o)), Value::Object(p)) => Some(Value::Object(merge_map(kind, path, o, p)?)),
            (None, Value::Object(p)) => Some(Value::Object(merge_map(kind, path, Map::new(), p)?)),
            (Some(Value::Array(o)), Value::Array(p)) => {
                let s = list_strategy(kind, path);
                Some(Value::Array(merge_list(kind, path, s, o, p)?))
            }
            (None, Value::Array(p)) => {
                let s = list_strategy(kind, path);
                Some(Value::Array(merge_list(kind, path, s, Vec::new(), p)?))
            }
            (_, v) => Some(clean(v)),
        };
        path.pop();
        if let Some(m) = merged {
            orig.insert(k, m);
        }
    }
    Ok(orig)
}

fn merge_list(
    kind: &str,
    path: &mut Vec<String>,
    strategy: ListStrategy,
    live: Vec<Value>,
    patch: Vec<Value>,
) -> Result<Vec<Value>, String> {
    match strategy {
        ListStrategy::Replace => Ok(patch.into_iter().map(clean).collect()),
        ListStrategy::Set => {
            let mut merged = live.clone();
            for v in &patch {
                if !merged.contains(v) {
                    merged.push(v.clone());
                }
            }
            Ok(impose_order(strategy, merged, &patch, &live))
        }
        ListStrategy::Key(key) => {
            let mut live = live;
            let mut plain = Vec::new();
            let mut replace = false;
            for p in patch {
                let Value::Object(mut m) = p else {
                    return Err(format!("invalid patch: list element of {} is not a map", path.join(".")));
                };
                match m.remove("$patch").as_ref().and_then(Value::as_str) {
                    None => plain.push(m),
                    Some("delete") => {
                        let kv = m.get(key).ok_or_else(|| no_merge_key(&m, key))?;
                        live.retain(|l| l.get(key) != Some(kv));
                    }
                    Some("replace") => replace = true,
                    Some(other) => return Err(format!("Unknown patch type: {other}")),
                }
            }
            if replace {
                return Ok(plain.into_iter().map(|m| Value::Object(clean_map(m))).collect());
            }
            let mut merged = live.clone();
            let mut order = Vec::with_capacity(plain.len());
            for m in plain {
                let kv = m.get(key).cloned().ok_or_else(|| no_merge_key(&m, key))?;
                order.push(Value::Object(Map::from_iter([(key.to_owned(), kv.clone())])));
                match merged.iter_mut().find(|l| l.get(key) == Some(&kv)) {
                    Some(Value::Object(l)) => *l = merge_map(kind, path, std::mem::take(l), m)?,
                    _ => merged.push(Value::Object(merge_map(kind, path, Map::new(), m)?)),
                }
            }
            Ok(impose_order(strategy, merged, &order, &live))
        }
    }
}

fn no_merge_key(m: &Map<String, Value>, key: &str) -> String {
    format!("map: {} does not contain declared merge key: {key}", Value::Object(m.clone()))
}

/// Upstream's `normalizeElementOrder`: items named in `order` come in that order, the others
/// keep their live order, and the two runs are interleaved by their positions in `live`.
fn impose_order(strategy: ListStrategy, merged: Vec<Value>, order: &[Value], live: &[Value]) -> Vec<Value> {
    let id = |v: &Value| -> Value {
        match strategy {
            ListStrategy::Key(k) => v.get(k).cloned().unwrap_or(Value::Null),
            _ => v.clone(),
        }
    };
    let pos = |list: &[Value], v: &Value| list.iter().position(|x| id(x) == id(v));
    let (mut patched, server_only): (Vec<Value>, Vec<Value>) =
        merged.into_iter().partition(|v| pos(order, v).is_some());
    patched.sort_by_key(|v| pos(order, v));
    let mut out = Vec::with_capacity(patched.len() + server_only.len());
    let (mut left, mut right) = (server_only.into_iter().peekable(), patched.into_iter().peekable());
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (Some(l), Some(r)) => matches!((pos(live, l), pos(live, r)), (Some(a), Some(b)) if a < b),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// Removes directive keys (`$…`) and nulls from a value taken over from a patch.
fn clean(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(clean_map(m)),
        Value::Array(a) => Value::Array(a.into_iter().map(clean).collect()),
        other => other,
    }
}

fn clean_map(m: Map<String, Value>) -> Map<String, Value> {
    m.into_iter().filter(|(k, v)| !k.starts_with('$') && !v.is_null()).map(|(k, v)| (k, clean(v))).collect()
}

#[cfg(test)]
#[path = "patch_tests.rs"]
mod tests;
