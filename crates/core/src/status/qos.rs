//! QoS class (upstream's `pkg/apis/core/v1/helper/qos`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity::ParsedQuantity;

pub const BEST_EFFORT: &str = "BestEffort";
pub const BURSTABLE: &str = "Burstable";
pub const GUARANTEED: &str = "Guaranteed";

const QOS_RESOURCES: [&str; 2] = ["cpu", "memory"];

/// Upstream's `GetPodQOS`: the class already recorded in `status.qosClass` (it is immutable once
/// set), else [`compute_pod_qos`].
pub fn get_pod_qos(pod: &Pod) -> String {
    match pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
        Some(q) if !q.is_empty() => q.to_string(),
        _ => compute_pod_qos(pod).to_string(),
    }
}

/// Upstream's `ComputePodQOS`: BestEffort when no container (regular or init) requests or limits
/// cpu/memory; Guaranteed when every container limits both cpu and memory and the summed
/// requests equal the summed limits; Burstable otherwise. Pod-level resources
/// (`spec.resources`), when set, replace the per-container ones.
pub fn compute_pod_qos(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return BEST_EFFORT;
    };
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;

    if let Some(pod_res) = spec.resources.as_ref() {
        add_positive(&mut requests, pod_res.requests.as_ref());
        if pod_res.limits.as_ref().is_some_and(|l| !l.is_empty()) && !add_positive(&mut limits, pod_res.limits.as_ref())
        {
            guaranteed = false;
        }
    } else {
        let all = spec.containers.iter().chain(spec.init_containers.iter().flatten());
        for c in all {
            let res = c.resources.as_ref();
            add_positive(&mut requests, res.and_then(|r| r.requests.as_ref()));
            if !add_positive(&mut limits, res.and_then(|r| r.limits.as_ref())) {
                guaranteed = false;
            }
        }
    }

    if requests.is_empty() && limits.is_empty() {
        return BEST_EFFORT;
    }
    if guaranteed && requests.iter().all(|(name, req)| limits.get(name) == Some(req)) && requests.len() == limits.len()
    {
        return GUARANTEED;
    }
    BURSTABLE
}

/// Adds the positive cpu/memory quantities of `list` into `acc`; returns whether both cpu and
/// memory were among them.
fn add_positive(acc: &mut BTreeMap<&'static str, i128>, list: Option<&BTreeMap<String, Quantity>>) -> bool {
    let mut found = 0;
    for name in QOS_RESOURCES {
        let Some(q) = list.and_then(|l| l.get(name)) else {
            continue;
        };
        let v = ParsedQuantity::parse_saturating(&q.0).map_or(0, ParsedQuantity::nanos);
        if v > 0 {
            found += 1;
            let slot = acc.entry(name).or_insert(0);
            *slot = slot.saturating_add(v);
        }
    }
    found == QOS_RESOURCES.len()
}
