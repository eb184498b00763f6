//! Pod admission before a pod from the API server runs (upstream `lifecycle/predicate.go`
//! `predicateAdmitHandler.Admit` → `generalFilter` → scheduler `AdmissionCheck`): the node must have
//! room for the pod (`noderesources.Fits`: pod count against allocatable `pods`, then cpu, memory,
//! ephemeral-storage and scalar resources — hugepages, extended resources — against the registered
//! Node's `status.allocatable` minus the requests of the pods already admitted), and must match
//! the pod's nodeSelector and required node affinity. A rejected pod is set to phase Failed with
//! the upstream reason (`OutOfcpu`, `OutOfmemory`, `OutOfephemeral-storage`, `OutOfpods`,
//! `OutOf<resource>`, `NodeAffinity`) and message, and never started.
//!
//! Not implemented: upstream admits a *critical* pod (static, mirror, or priority ≥ 2000000000)
//! that fails only for resources by evicting other pods (`CriticalPodAdmissionHandler`); rkubelet
//! does not preempt and admits such a pod over the allocatable instead. Until the Node is known
//! (upstream would use its locally built `initialNode`), only the pod count is checked.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, NodeSelectorRequirement, NodeSelectorTerm, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity::ParsedQuantity;
use crate::source::is_static_pod;

/// Why a pod was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    pub message: String,
}

/// What admission knows about the node.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// The registered Node's `status.allocatable`; `None` until the Node is known, when only
    /// the pod count (against `max_pods`) is checked.
    pub allocatable: Option<&'a BTreeMap<String, Quantity>>,
    /// `maxPods`, the pod capacity while `allocatable` (or its `pods`) is unknown.
    pub max_pods: u32,
}

/// Upstream `SystemCriticalPriority` (`2 * HighestUserDefinablePriority`).
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// Upstream `admitPod` for the predicates rkubelet implements. `others` are the pods already
/// admitted and not terminated (upstream `OtherPods`), without the pod itself.
pub fn admit(pod: &Pod, node: &NodeView<'_>, others: &[&Pod]) -> Result<(), Rejection> {
    // Upstream `AdmissionCheck(pod, nodeInfo, true)`: resource failures first, then node affinity;
    // the first reason is reported.
    let insufficient = insufficient_resources(pod, node, others);
    let affinity = (!matches_node(pod, node.name, node.labels)).then(|| Rejection {
        reason: "NodeAffinity".into(),
        message: "Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector".into(),
    });
    if !insufficient.is_empty() && is_critical_pod(pod) {
        // Upstream `CriticalPodAdmissionHandler.HandleAdmissionFailure`: resources are no reason
        // to reject a critical pod; it evicts other pods to make room. No preemption here.
        if let Some(r) = affinity {
            return Err(r);
        }
        tracing::warn!(
            pod = %crate::events::pod_key(pod),
            "admitting critical pod without preempting other pods: {}",
            insufficient.iter().map(InsufficientResource::message).collect::<Vec<_>>().join("; ")
        );
        return Ok(());
    }
    match (insufficient.first(), affinity) {
        (Some(r), _) => Err(r.rejection()),
        (None, Some(r)) => Err(r),
        (None, None) => Ok(()),
    }
}

/// The pods that count against the node's resources (upstream `filterOutInactivePods`): those not
/// in a terminal phase according to `is_terminal`.
pub fn active_pods<'a>(pods: impl IntoIterator<Item = &'a Pod>, is_terminal: impl Fn(&Pod) -> bool) -> Vec<&'a Pod> {
    pods.into_iter().filter(|p| !is_terminal(p)).collect()
}

/// Upstream `kubetypes.IsCriticalPod`: static and mirror pods, and pods of system-critical priority.
pub fn is_critical_pod(pod: &Pod) -> bool {
    is_static_pod(pod)
        || pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"))
        || pod.spec.as_ref().and_then(|s| s.priority).is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY)
}

/// One resource the node lacks (upstream `InsufficientResource` / `InsufficientResourceError`):
/// cpu in millicores, memory, storage and hugepages in bytes, other resources in units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsufficientResource {
    pub resource: String,
    pub requested: i64,
    pub used: i64,
    pub capacity: i64,
}

impl InsufficientResource {
    /// Upstream `InsufficientResourceError.Error()`.
    pub fn message(&self) -> String {
        format!(
            "Node didn't have enough resource: {}, requested: {}, used: {}, capacity: {}",
            self.resource, self.requested, self.used, self.capacity
        )
    }

    /// Upstream `Admit`: `OutOfcpu`, `OutOfmemory`, `OutOfephemeral-storage`, `OutOfpods`, else
    /// `OutOf` + the resource name.
    pub fn rejection(&self) -> Rejection {
        Rejection { reason: format!("OutOf{}", self.resource), message: self.message() }
    }
}

/// Upstream `noderesources.Fits` (`fitsRequest`) with the kubelet's `removeMissingExtendedResources`.
pub fn insufficient_resources(pod: &Pod, node: &NodeView<'_>, others: &[&Pod]) -> Vec<InsufficientResource> {
    let allocatable = node.allocatable.map(Resources::from_allocatable);
    let allowed_pods = allocatable.as_ref().and_then(|a| a.pods).unwrap_or_else(|| i64::from(node.max_pods));
    let mut out = Vec::new();
    let used_pods = i64::try_from(others.len()).unwrap_or(i64::MAX);
    if used_pods.saturating_add(1) > allowed_pods {
        out.push(InsufficientResource {
            resource: "pods".into(),
            requested: 1,
            used: used_pods,
            capacity: allowed_pods,
        });
    }
    // Without the Node there is nothing to compare requests with.
    let Some(alloc) = allocatable else { return out };
    // Extended resources the node does not advertise are not checked (cluster-level resources).
    let keep = |name: &str| !is_extended_resource(name) || alloc.scalar.contains_key(name);
    let req = Resources::from_requests(&pod_requests(pod, &keep));
    if req.milli_cpu == 0 && req.memory == 0 && req.ephemeral_storage == 0 && req.scalar.is_empty() {
        return out;
    }
    let mut used = Resources::default();
    for p in others {
        used.add(&Resources::from_requests(&pod_requests(p, &|_| true)));
    }
    let mut check = |resource: &str, requested: i64, used: i64, capacity: i64| {
        if requested > 0 && requested > capacity.saturating_sub(used) {
            out.push(InsufficientResource { resource: resource.into(), requested, used, capacity });
        }
    };
    check("cpu", req.milli_cpu, used.milli_cpu, alloc.milli_cpu);
    check("memory", req.memory, used.memory, alloc.memory);
    check("ephemeral-storage", req.ephemeral_storage, used.ephemeral_storage, alloc.ephemeral_storage);
    for (name, &q) in &req.scalar {
        let get = |m: &BTreeMap<String, i64>| m.get(name).copied().unwrap_or(0);
        check(name, q, get(&used.scalar), get(&alloc.scalar));
    }
    out
}

/// Exact quantities (nano-units) per resource name.
type ResourceList = BTreeMap<String, i128>;

fn parse_list(list: Option<&BTreeMap<String, Quantity>>, keep: &dyn Fn(&str) -> bool) -> ResourceList {
    list.into_iter()
        .flatten()
        .filter(|(name, _)| keep(name))
        // The API server validated these; an unparsable one counts as nothing.
        .filter_map(|(name, q)| Some((name.clone(), ParsedQuantity::parse_saturating(&q.0).ok()?.nanos())))
        .collect()
}

fn add_list(into: &mut ResourceList, from: &ResourceList) {
    for (name, q) in from {
        let v = into.entry(name.clone()).or_insert(0);
        *v = v.saturating_add(*q);
    }
}

fn max_list(into: &mut ResourceList, from: &ResourceList) {
    for (name, q) in from {
        into.entry(name.clone()).and_modify(|v| *v = (*v).max(*q)).or_insert(*q);
    }
}

fn container_requests(c: &Container, keep: &dyn Fn(&str) -> bool) -> ResourceList {
    parse_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()), keep)
}

/// Upstream `resource.PodRequests` (component-helpers) with pod-level resources and overhead:
/// the sum of the regular containers and the restartable init containers (sidecars), or for
/// each resource the largest init container step if more — a regular init container runs
/// alongside the sidecars started before it, a sidecar alongside those before it and itself —;
/// then pod-level requests (cpu, memory, hugepages) replace the aggregate, and the overhead is
/// added. `keep` filters the container requests (upstream `removeMissingExtendedResources`).
pub fn pod_requests(pod: &Pod, keep: &dyn Fn(&str) -> bool) -> BTreeMap<String, i128> {
    let Some(spec) = &pod.spec else { return ResourceList::new() };
    let mut result = aggregate(pod, &|c| container_requests(c, keep), &mut |_| {});
    let pod_level = spec.resources.as_ref().and_then(|r| r.requests.as_ref());
    if pod_level.is_some_and(|r| r.keys().any(|n| is_pod_level_resource(n))) {
        for (name, q) in parse_list(pod_level, &|n| is_pod_level_resource(n)) {
            result.insert(name, q);
        }
    }
    add_list(&mut result, &parse_list(spec.overhead.as_ref(), &|_| true));
    result
}

/// Upstream `resource.PodLimits`, aggregated as [`pod_requests`]; the overhead is added only to
/// the limits that are set. Also whether every container (and init step) limits cpu and
/// memory (upstream's `ContainerFn` in `ResourceConfigForPod`); a pod-level limit declares it.
pub fn pod_limits(pod: &Pod) -> (BTreeMap<String, i128>, bool, bool) {
    let Some(spec) = &pod.spec else { return (ResourceList::new(), true, true) };
    let (mut cpu_declared, mut memory_declared) = (true, true);
    let limits = |c: &Container| parse_list(c.resources.as_ref().and_then(|r| r.limits.as_ref()), &|_| true);
    let mut result = aggregate(pod, &limits, &mut |l| {
        cpu_declared &= l.get("cpu").is_some_and(|q| *q != 0);
        memory_declared &= l.get("memory").is_some_and(|q| *q != 0);
    });
    let pod_level = parse_list(spec.resources.as_ref().and_then(|r| r.limits.as_ref()), &|n| is_pod_level_resource(n));
    for (name, q) in pod_level.into_iter().filter(|(_, q)| *q != 0) {
        cpu_declared |= name == "cpu";
        memory_declared |= name == "memory";
        result.insert(name, q);
    }
    for (name, q) in parse_list(spec.overhead.as_ref(), &|_| true) {
        if let Some(v) = result.get_mut(&name).filter(|v| **v != 0) {
            *v = v.saturating_add(q);
        }
    }
    (result, cpu_declared, memory_declared)
}

/// The containers' and init containers' `pick` lists aggregated as upstream's
/// `AggregateContainerRequests`/`Limits`; `each` sees every regular container's list and every
/// init container step (a sidecar with those before it, a regular init container with the
/// sidecars before it).
fn aggregate(
    pod: &Pod,
    pick: &dyn Fn(&Container) -> ResourceList,
    each: &mut dyn FnMut(&ResourceList),
) -> ResourceList {
    let Some(spec) = &pod.spec else { return ResourceList::new() };
    let mut result = ResourceList::new();
    for c in &spec.containers {
        let l = pick(c);
        each(&l);
        add_list(&mut result, &l);
    }
    let mut sidecars = ResourceList::new();
    let mut init = ResourceList::new();
    for c in spec.init_containers.iter().flatten() {
        let l = pick(c);
        let step = if c.restart_policy.as_deref() == Some("Always") {
            add_list(&mut result, &l);
            add_list(&mut sidecars, &l);
            sidecars.clone()
        } else {
            let mut combined = l;
            add_list(&mut combined, &sidecars);
            combined
        };
        each(&step);
        max_list(&mut init, &step);
    }
    max_list(&mut result, &init);
    result
}

/// The pod's `spec.overhead` (nano-units).
pub fn pod_overhead(pod: &Pod) -> BTreeMap<String, i128> {
    parse_list(pod.spec.as_ref().and_then(|s| s.overhead.as_ref()), &|_| true)
}

/// Upstream `IsSupportedPodLevelResource`.
fn is_pod_level_resource(name: &str) -> bool {
    name == "cpu" || name == "memory" || name.starts_with("hugepages-")
}

/// Upstream `IsPrefixedNativeResource`.
fn is_prefixed_native_resource(name: &str) -> bool {
    name.contains("kubernetes.io/")
}

/// Upstream `IsExtendedResourceName` (a domain-prefixed name outside `kubernetes.io`; the API
/// server has already checked it is a qualified name).
fn is_extended_resource(name: &str) -> bool {
    name.contains('/') && !is_prefixed_native_resource(name) && !name.starts_with("requests.")
}

/// Upstream `IsScalarResourceName`.
fn is_scalar_resource(name: &str) -> bool {
    is_extended_resource(name)
        || name.starts_with("hugepages-")
        || is_prefixed_native_resource(name)
        || name.starts_with("attachable-volumes-")
}

/// Upstream scheduler `framework.Resource`: cpu in millicores, the rest in whole units.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Resources {
    milli_cpu: i64,
    memory: i64,
    ephemeral_storage: i64,
    /// `pods` of an allocatable list.
    pods: Option<i64>,
    scalar: BTreeMap<String, i64>,
}

/// `n / d` rounded up (`d > 0`; negative results are clamped to zero by the callers).
fn div_ceil(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d > 0 { q + 1 } else { q }
}

fn clamp(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

impl Resources {
    /// Upstream `Resource.SetMaxResource` on an empty `Resource` (a pod's requests): values
    /// rounded up, negatives count as zero, unknown names ignored.
    fn from_requests(list: &ResourceList) -> Self {
        let mut r = Self::default();
        for (name, &nanos) in list {
            // Upstream `MilliValue()` / `Value()`: rounded up.
            let milli = clamp(div_ceil(nanos, 1_000_000)).max(0);
            let value = clamp(div_ceil(nanos, 1_000_000_000)).max(0);
            match name.as_str() {
                "cpu" => r.milli_cpu = milli,
                "memory" => r.memory = value,
                "ephemeral-storage" => r.ephemeral_storage = value,
                n if is_scalar_resource(n) => {
                    r.scalar.insert(n.to_owned(), value);
                }
                _ => {}
            }
        }
        r
    }

    /// Upstream `NewResource(node.Status.Allocatable)`.
    fn from_allocatable(list: &BTreeMap<String, Quantity>) -> Self {
        let mut r = Self::from_requests(&parse_list(Some(list), &|_| true));
        r.pods = list.get("pods").and_then(|q| ParsedQuantity::parse_saturating(&q.0).ok()).map(|q| clamp(q.value()));
        r
    }

    /// Upstream `NodeInfo.update`: adds a pod's requests to the node's requested resources.
    fn add(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(o.milli_cpu);
        self.memory = self.memory.saturating_add(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_add(o.ephemeral_storage);
        for (name, v) in &o.scalar {
            let e = self.scalar.entry(name.clone()).or_insert(0);
            *e = e.saturating_add(*v);
        }
    }
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
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).expect("pod")
    }

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([("disk".to_string(), "ssd".to_string()), ("gen".to_string(), "5".to_string())])
    }

    fn list(v: serde_json::Value) -> BTreeMap<String, Quantity> {
        serde_json::from_value(v).expect("resource list")
    }

    /// A pod with one container per request list (`null` for none).
    fn requesting(reqs: &[serde_json::Value]) -> Pod {
        let containers: Vec<_> = reqs
            .iter()
            .enumerate()
            .map(|(i, r)| json!({"name": format!("c{i}"), "image": "i", "resources": {"requests": r}}))
            .collect();
        pod(json!({ "containers": containers }))
    }

    fn node<'a>(labels: &'a BTreeMap<String, String>, alloc: Option<&'a BTreeMap<String, Quantity>>) -> NodeView<'a> {
        NodeView { name: "n1", labels, allocatable: alloc, max_pods: 110 }
    }

    fn alloc() -> BTreeMap<String, Quantity> {
        list(json!({"cpu": "2", "memory": "4Gi", "ephemeral-storage": "10Gi", "pods": "110",
            "hugepages-2Mi": "8Mi", "example.com/dongle": "2"}))
    }

    /// The pod's requests as upstream's `framework.Resource` (cpu in millicores).
    fn requests(p: &Pod) -> Resources {
        Resources::from_requests(&pod_requests(p, &|_| true))
    }

    #[test]
    fn node_selector_and_affinity() {
        let l = labels();
        let n = node(&l, None);
        let ok = pod(json!({"containers": [], "nodeSelector": {"disk": "ssd"}}));
        assert!(admit(&ok, &n, &[]).is_ok());
        let bad = pod(json!({"containers": [], "nodeSelector": {"disk": "hdd"}}));
        let r = admit(&bad, &n, &[]).expect_err("rejected");
        assert_eq!(r.reason, "NodeAffinity");
        let aff = |op: &str, key: &str, vals: &[&str]| {
            pod(
                json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": key, "operator": op, "values": vals}]}]}}}}),
            )
        };
        assert!(matches_node(&aff("In", "disk", &["ssd", "nvme"]), "n1", &l));
        assert!(!matches_node(&aff("NotIn", "disk", &["ssd"]), "n1", &l));
        assert!(matches_node(&aff("Gt", "gen", &["4"]), "n1", &l));
        assert!(!matches_node(&aff("Lt", "gen", &["4"]), "n1", &l));
        assert!(matches_node(&aff("DoesNotExist", "gpu", &[]), "n1", &l));
        let by_name = pod(
            json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}}),
        );
        assert!(!matches_node(&by_name, "n1", &l));
        assert!(matches_node(&by_name, "n2", &l));
    }

    #[test]
    fn max_pods() {
        let l = labels();
        let p = pod(json!({"containers": []}));
        let others: Vec<Pod> = (0..110).map(|_| p.clone()).collect();
        let refs: Vec<&Pod> = others.iter().collect();
        assert!(admit(&p, &node(&l, None), &refs[..109]).is_ok());
        let r = admit(&p, &node(&l, None), &refs).expect_err("full");
        assert_eq!(r.reason, "OutOfpods");
        assert_eq!(r.message, "Node didn't have enough resource: pods, requested: 1, used: 110, capacity: 110");
        // Once the Node is known its allocatable `pods` is the capacity.
        let small = list(json!({"cpu": "1", "pods": "3"}));
        let r = admit(&p, &node(&l, Some(&small)), &refs[..3]).expect_err("full");
        assert_eq!(r.message, "Node didn't have enough resource: pods, requested: 1, used: 3, capacity: 3");
        assert!(admit(&p, &node(&l, Some(&small)), &refs[..2]).is_ok());
    }

    #[test]
    fn fit_and_unfit_per_resource() {
        let l = labels();
        let a = alloc();
        let n = node(&l, Some(&a));
        let cases = [
            (
                "cpu",
                json!({"cpu": "2"}),
                json!({"cpu": "2001m"}),
                "OutOfcpu",
                "cpu, requested: 2001, used: 0, capacity: 2000",
            ),
            (
                "memory",
                json!({"memory": "4Gi"}),
                json!({"memory": "4097Mi"}),
                "OutOfmemory",
                "memory, requested: 4296015872, used: 0, capacity: 4294967296",
            ),
            (
                "ephemeral-storage",
                json!({"ephemeral-storage": "10Gi"}),
                json!({"ephemeral-storage": "11G"}),
                "OutOfephemeral-storage",
                "ephemeral-storage, requested: 11000000000, used: 0, capacity: 10737418240",
            ),
            (
                "hugepages",
                json!({"hugepages-2Mi": "8Mi"}),
                json!({"hugepages-2Mi": "10Mi"}),
                "OutOfhugepages-2Mi",
                "hugepages-2Mi, requested: 10485760, used: 0, capacity: 8388608",
            ),
            (
                "extended",
                json!({"example.com/dongle": "2"}),
                json!({"example.com/dongle": "3"}),
                "OutOfexample.com/dongle",
                "example.com/dongle, requested: 3, used: 0, capacity: 2",
            ),
        ];
        for (what, fits, too_much, reason, msg) in cases {
            assert_eq!(admit(&requesting(&[fits]), &n, &[]), Ok(()), "{what} fits");
            let r = admit(&requesting(&[too_much]), &n, &[]).expect_err(what);
            assert_eq!(r.reason, reason, "{what}");
            assert_eq!(r.message, format!("Node didn't have enough resource: {msg}"), "{what}");
        }
    }

    #[test]
    fn used_resources_count_and_the_message_is_upstreams() {
        let l = labels();
        let a = list(json!({"cpu": "1", "memory": "1Gi", "pods": "110"}));
        let n = node(&l, Some(&a));
        let running = requesting(&[json!({"cpu": "250m"}), json!({"cpu": "0.25", "memory": "128Mi"})]);
        let p = requesting(&[json!({"cpu": "1.5"})]);
        let r = admit(&p, &n, &[&running]).expect_err("too much cpu");
        assert_eq!(
            r,
            Rejection {
                reason: "OutOfcpu".into(),
                message: "Node didn't have enough resource: cpu, requested: 1500, used: 500, capacity: 1000".into(),
            }
        );
        // Exactly what is left fits; one millicore more does not.
        assert!(admit(&requesting(&[json!({"cpu": "500m"})]), &n, &[&running]).is_ok());
        let r = admit(&requesting(&[json!({"cpu": "501m"})]), &n, &[&running]).expect_err("501m");
        assert_eq!(r.message, "Node didn't have enough resource: cpu, requested: 501, used: 500, capacity: 1000");
        // Several resources short: the first in upstream's order (cpu, memory, …) is reported.
        let r = admit(&requesting(&[json!({"memory": "1Gi", "cpu": "1"})]), &n, &[&running]).expect_err("both");
        assert_eq!(r.reason, "OutOfcpu");
        let r = admit(&requesting(&[json!({"memory": "1Gi"})]), &n, &[&running]).expect_err("memory");
        assert_eq!(
            r.message,
            "Node didn't have enough resource: memory, requested: 1073741824, used: 134217728, capacity: 1073741824"
        );
    }

    #[test]
    fn quantities_in_every_notation() {
        let p = requesting(&[
            json!({"cpu": "100m", "memory": "128Mi"}),
            json!({"cpu": "1", "memory": "1G"}),
            json!({"cpu": "1.5", "memory": "1e3"}),
            json!({"cpu": "1e-3", "memory": "1.5Ki"}),
            json!({"cpu": "0.0001"}),
        ]);
        let r = requests(&p);
        // 100 + 1000 + 1500 + 1 + 0.1 → rounded up once for the pod.
        assert_eq!(r.milli_cpu, 2602);
        assert_eq!(r.memory, 134_217_728 + 1_000_000_000 + 1000 + 1536);
    }

    #[test]
    fn pods_without_requests_always_fit_except_for_the_pod_count() {
        let l = labels();
        let full = list(json!({"cpu": "0", "memory": "0", "pods": "2"}));
        let n = node(&l, Some(&full));
        let hog = requesting(&[json!({"cpu": "64", "memory": "1Ti"})]);
        let none = requesting(&[serde_json::Value::Null]);
        assert!(admit(&none, &n, &[&hog]).is_ok());
        // A zero request is no request.
        assert!(admit(&requesting(&[json!({"cpu": "0", "hugepages-2Mi": "0"})]), &n, &[&hog]).is_ok());
        assert_eq!(admit(&none, &n, &[&hog, &hog]).expect_err("pods").reason, "OutOfpods");
    }

    #[test]
    fn init_containers_count_by_their_largest_step() {
        // Upstream's computePodResourceRequest example: cpu 3, memory 3G.
        let p = pod(json!({
            "initContainers": [
                {"name": "ic1", "image": "i", "resources": {"requests": {"cpu": "2", "memory": "1G"}}},
                {"name": "ic2", "image": "i", "resources": {"requests": {"cpu": "2", "memory": "3G"}}},
            ],
            "containers": [
                {"name": "c1", "image": "i", "resources": {"requests": {"cpu": "2", "memory": "1G"}}},
                {"name": "c2", "image": "i", "resources": {"requests": {"cpu": "1", "memory": "1G"}}},
            ],
        }));
        let r = requests(&p);
        assert_eq!((r.milli_cpu, r.memory), (3000, 3_000_000_000));
        let l = labels();
        let a = list(json!({"cpu": "3", "memory": "3G", "pods": "110"}));
        assert!(admit(&p, &node(&l, Some(&a)), &[]).is_ok());
        let a = list(json!({"cpu": "3", "memory": "2999999999", "pods": "110"}));
        let r = admit(&p, &node(&l, Some(&a)), &[]).expect_err("memory");
        assert_eq!(
            r.message,
            "Node didn't have enough resource: memory, requested: 3000000000, used: 0, capacity: 2999999999"
        );
    }

    #[test]
    fn sidecars_add_to_the_running_sum_and_to_later_init_steps() {
        let sidecar = |name: &str, cpu: &str| json!({"name": name, "image": "i", "restartPolicy": "Always", "resources": {"requests": {"cpu": cpu}}});
        let init = |name: &str, cpu: &str| json!({"name": name, "image": "i", "resources": {"requests": {"cpu": cpu}}});
        let app = json!([{"name": "app", "image": "i", "resources": {"requests": {"cpu": "1"}}}]);
        // Running: sidecars 1 + 3 and the app 1 = 5; init steps: 1, 2+1, 1+3 → 4.
        let p =
            pod(json!({"initContainers": [sidecar("a", "1"), init("b", "2"), sidecar("c", "3")], "containers": app}));
        assert_eq!(requests(&p).milli_cpu, 5000);
        // A large init container after a sidecar runs next to it: 5 + 1 = 6 > running 1 + 1.
        let p = pod(json!({"initContainers": [sidecar("a", "1"), init("b", "5")], "containers": app}));
        assert_eq!(requests(&p).milli_cpu, 6000);
        // Before the sidecar it runs alone: max(5, 1 + 1) = 5.
        let p = pod(json!({"initContainers": [init("b", "5"), sidecar("a", "1")], "containers": app}));
        assert_eq!(requests(&p).milli_cpu, 5000);
        let l = labels();
        let a = list(json!({"cpu": "5", "pods": "110"}));
        assert!(admit(&p, &node(&l, Some(&a)), &[]).is_ok());
        let p = pod(json!({"initContainers": [sidecar("a", "1"), init("b", "5")], "containers": app}));
        assert_eq!(admit(&p, &node(&l, Some(&a)), &[]).expect_err("6 > 5").reason, "OutOfcpu");
    }

    #[test]
    fn overhead_and_pod_level_requests() {
        let mut p = requesting(&[json!({"cpu": "500m", "memory": "100Mi"})]);
        p.spec.as_mut().expect("spec").overhead = Some(list(json!({"cpu": "250m", "memory": "20Mi"})));
        let r = requests(&p);
        assert_eq!((r.milli_cpu, r.memory), (750, 120 << 20));
        let l = labels();
        let a = list(json!({"cpu": "700m", "pods": "110"}));
        let r = admit(&p, &node(&l, Some(&a)), &[]).expect_err("overhead counts");
        assert_eq!(r.message, "Node didn't have enough resource: cpu, requested: 750, used: 0, capacity: 700");
        // Pod-level requests replace the containers' sum for cpu and memory; overhead still adds.
        p.spec.as_mut().expect("spec").resources =
            Some(serde_json::from_value(json!({"requests": {"cpu": "2"}})).expect("resources"));
        let r = requests(&p);
        assert_eq!((r.milli_cpu, r.memory), (2250, 120 << 20));
    }

    #[test]
    fn extended_resources_the_node_lacks_are_not_checked() {
        let l = labels();
        let a = alloc();
        let n = node(&l, Some(&a));
        assert!(admit(&requesting(&[json!({"cluster.example/thing": "5"})]), &n, &[]).is_ok());
        // Native resources are: hugepages of a size the node does not have.
        let r = admit(&requesting(&[json!({"hugepages-1Gi": "1Gi"})]), &n, &[]).expect_err("hugepages-1Gi");
        assert_eq!(
            r.message,
            "Node didn't have enough resource: hugepages-1Gi, requested: 1073741824, used: 0, capacity: 0"
        );
    }

    #[test]
    fn terminated_pods_are_not_counted() {
        let l = labels();
        let a = list(json!({"cpu": "1", "pods": "110"}));
        let n = node(&l, Some(&a));
        let mut done = requesting(&[json!({"cpu": "1"})]);
        done.metadata.name = Some("done".into());
        let mut running = requesting(&[json!({"cpu": "500m"})]);
        running.metadata.name = Some("running".into());
        let all = [done, running];
        let active = active_pods(&all, |p| p.metadata.name.as_deref() == Some("done"));
        assert_eq!(active.len(), 1);
        let p = requesting(&[json!({"cpu": "500m"})]);
        assert!(admit(&p, &n, &active).is_ok());
        let everyone: Vec<&Pod> = all.iter().collect();
        let r = admit(&p, &n, &everyone).expect_err("counting the terminated pod");
        assert_eq!(r.message, "Node didn't have enough resource: cpu, requested: 500, used: 1500, capacity: 1000");
    }

    #[test]
    fn node_not_yet_known_admits() {
        let l = labels();
        let p = requesting(&[json!({"cpu": "1000", "memory": "1Pi"})]);
        assert!(admit(&p, &node(&l, None), &[]).is_ok());
    }

    #[test]
    fn resources_are_reported_before_node_affinity() {
        let l = labels();
        let a = list(json!({"cpu": "1", "pods": "110"}));
        let n = node(&l, Some(&a));
        let mut p = requesting(&[json!({"cpu": "2"})]);
        p.spec.as_mut().expect("spec").node_selector = Some(BTreeMap::from([("disk".into(), "hdd".into())]));
        assert_eq!(admit(&p, &n, &[]).expect_err("both").reason, "OutOfcpu");
    }

    #[test]
    fn critical_pods_are_admitted_over_resources_without_preemption() {
        let l = labels();
        let a = list(json!({"cpu": "1", "pods": "1"}));
        let n = node(&l, Some(&a));
        let other = requesting(&[json!({"cpu": "1"})]);
        let mut p = requesting(&[json!({"cpu": "2"})]);
        p.spec.as_mut().expect("spec").priority = Some(2_000_001_000);
        assert!(is_critical_pod(&p));
        assert!(admit(&p, &n, &[&other]).is_ok());
        // Node affinity still rejects it.
        p.spec.as_mut().expect("spec").node_selector = Some(BTreeMap::from([("disk".into(), "hdd".into())]));
        assert_eq!(admit(&p, &n, &[&other]).expect_err("affinity").reason, "NodeAffinity");
        // One priority below system-critical is an ordinary pod.
        let mut p = requesting(&[json!({"cpu": "2"})]);
        p.spec.as_mut().expect("spec").priority = Some(1_999_999_999);
        assert!(!is_critical_pod(&p));
        assert_eq!(admit(&p, &n, &[]).expect_err("cpu").reason, "OutOfcpu");
    }
}
