//! Pod admission before a pod from the API server runs (upstream `lifecycle/predicate.go`): the
//! node must match the pod's nodeSelector and required node affinity, and the node must have room
//! for one more pod (`maxPods`). A rejected pod is set to phase Failed with the upstream reason
//! and message and never started. Resource fit (OutOfcpu/OutOfmemory) comes with node
//! allocatable accounting.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod};

/// Why a pod was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    pub message: String,
}

/// Upstream `admitPod` for the predicates rkubelet implements. `active_pods` excludes the pod.
pub fn admit(
    pod: &Pod,
    node_name: &str,
    node_labels: &BTreeMap<String, String>,
    active_pods: usize,
    max_pods: u32,
) -> Result<(), Rejection> {
    if !matches_node(pod, node_name, node_labels) {
        return Err(Rejection {
            reason: "NodeAffinity".into(),
            message: "Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector".into(),
        });
    }
    if active_pods + 1 > max_pods as usize {
        return Err(Rejection {
            reason: "OutOfpods".into(),
            message: format!(
                "Node didn't have enough resource: pods, requested: 1, used: {active_pods}, capacity: {max_pods}"
            ),
        });
    }
    Ok(())
}

/// nodeSelector and `requiredDuringSchedulingIgnoredDuringExecution` (terms ORed, requirements ANDed).
pub fn matches_node(pod: &Pod, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
    let Some(spec) = &pod.spec else { return true };
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    match required {
        None => true,
        Some(sel) => sel.node_selector_terms.iter().any(|t| term_matches(t, node_name, labels)),
    }
}

fn term_matches(t: &NodeSelectorTerm, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
    let exprs = t.match_expressions.as_deref().unwrap_or_default();
    let fields = t.match_fields.as_deref().unwrap_or_default();
    // An empty term matches nothing (upstream).
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| r.key == "metadata.name" && requirement_matches(r, Some(node_name)))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => matches!((value.and_then(int), values.first().and_then(|x| int(x))), (Some(a), Some(b)) if a > b),
        "Lt" => matches!((value.and_then(int), values.first().and_then(|x| int(x))), (Some(a), Some(b)) if a < b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": spec})).expect("pod")
    }

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([("disk".to_string(), "ssd".to_string()), ("gen".to_string(), "5".to_string())])
    }

    #[test]
    fn node_selector_and_affinity() {
        let ok = pod(serde_json::json!({"containers": [], "nodeSelector": {"disk": "ssd"}}));
        assert!(admit(&ok, "n1", &labels(), 0, 110).is_ok());
        let bad = pod(serde_json::json!({"containers": [], "nodeSelector": {"disk": "hdd"}}));
        let r = admit(&bad, "n1", &labels(), 0, 110).expect_err("rejected");
        assert_eq!(r.reason, "NodeAffinity");
        let aff = |op: &str, key: &str, vals: &[&str]| {
            pod(
                serde_json::json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": key, "operator": op, "values": vals}]}]}}}}),
            )
        };
        assert!(matches_node(&aff("In", "disk", &["ssd", "nvme"]), "n1", &labels()));
        assert!(!matches_node(&aff("NotIn", "disk", &["ssd"]), "n1", &labels()));
        assert!(matches_node(&aff("Gt", "gen", &["4"]), "n1", &labels()));
        assert!(!matches_node(&aff("Lt", "gen", &["4"]), "n1", &labels()));
        assert!(matches_node(&aff("DoesNotExist", "gpu", &[]), "n1", &labels()));
        let by_name = pod(
            serde_json::json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}}),
        );
        assert!(!matches_node(&by_name, "n1", &labels()));
        assert!(matches_node(&by_name, "n2", &labels()));
    }

    #[test]
    fn max_pods() {
        let p = pod(serde_json::json!({"containers": []}));
        assert!(admit(&p, "n1", &labels(), 109, 110).is_ok());
        let r = admit(&p, "n1", &labels(), 110, 110).expect_err("full");
        assert_eq!(r.reason, "OutOfpods");
        assert_eq!(r.message, "Node didn't have enough resource: pods, requested: 1, used: 110, capacity: 110");
    }
}
