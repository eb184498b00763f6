//! Pod status computed the upstream way from the runtime's view of a pod.
//!
//! [`compute_pod_status`] is a pure function that mirrors what upstream does between a pod sync
//! and the status cache:
//!
//! * `generateAPIPodStatus` / `convertStatusToAPIStatus` (`pkg/kubelet/kubelet_pods.go`): pod IPs,
//!   QoS class, container statuses, phase (with the terminal-phase guards), kubelet-owned
//!   conditions, host IPs;
//! * the prober manager's `UpdatePodStatus` (`pkg/kubelet/prober/prober_manager.go`): `started` and
//!   `ready` of every container status;
//! * the status manager's `SetPodStatus` / `updateStatusInternal`
//!   (`pkg/kubelet/status/status_manager.go`): `observedGeneration`, the illegal
//!   terminated→non-terminated container transition check, `lastTransitionTime` preservation,
//!   `startTime` preservation and timestamp normalization.

mod conditions;
mod containers;
mod phase;
pub mod qos;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::container::{PodRuntimeStatus, SyncReasons};

pub use conditions::{
    generate_containers_ready_condition, generate_pod_initialized_condition, generate_pod_ready_condition,
    generate_pod_ready_to_start_containers_condition,
};
pub use containers::{container_should_restart, is_restartable_init_container};
pub use phase::get_phase;
pub use qos::{compute_pod_qos, get_pod_qos};

/// The runtime type prefix of container ids in statuses (`containerd://<id>`).
pub const RUNTIME_TYPE: &str = "containerd";

/// Upstream's `kubecontainer.MaxPodTerminationMessageLogLength`: the termination message budget
/// shared by all containers of a pod.
const MAX_POD_TERMINATION_MESSAGE_LOG_LENGTH: usize = 1024 * 12;

/// Pod phases (`v1.PodPhase`).
pub mod phases {
    pub const PENDING: &str = "Pending";
    pub const RUNNING: &str = "Running";
    pub const SUCCEEDED: &str = "Succeeded";
    pub const FAILED: &str = "Failed";
    pub const UNKNOWN: &str = "Unknown";
}

/// Pod condition types (`v1.PodConditionType`).
pub mod condition_types {
    pub const POD_SCHEDULED: &str = "PodScheduled";
    pub const READY: &str = "Ready";
    pub const INITIALIZED: &str = "Initialized";
    pub const CONTAINERS_READY: &str = "ContainersReady";
    pub const POD_READY_TO_START_CONTAINERS: &str = "PodReadyToStartContainers";
    pub const DISRUPTION_TARGET: &str = "DisruptionTarget";
}

/// Reasons that appear in pod statuses, with upstream's values.
pub mod reasons {
    // pkg/kubelet/kubelet_pods.go / container/runtime.go
    /// Default waiting reason of a container that was never created (pod without init containers).
    pub const CONTAINER_CREATING: &str = "ContainerCreating";
    /// Default waiting reason of a container that was never created (pod with init containers).
    pub const POD_INITIALIZING: &str = "PodInitializing";
    /// A container that used to run but can no longer be found in the runtime.
    pub const CONTAINER_STATUS_UNKNOWN: &str = "ContainerStatusUnknown";
    /// Terminated reasons derived from the exit code when CRI reports none.
    pub const COMPLETED: &str = "Completed";
    pub const ERROR: &str = "Error";
    pub const OOM_KILLED: &str = "OOMKilled";

    // pkg/kubelet/status/generate.go
    pub const UNKNOWN_CONTAINER_STATUSES: &str = "UnknownContainerStatuses";
    pub const POD_COMPLETED: &str = "PodCompleted";
    pub const POD_FAILED: &str = "PodFailed";
    pub const CONTAINERS_NOT_READY: &str = "ContainersNotReady";
    pub const CONTAINERS_NOT_INITIALIZED: &str = "ContainersNotInitialized";
    pub const READINESS_GATES_NOT_READY: &str = "ReadinessGatesNotReady";

    // pkg/kubelet/container/sync_result.go
    pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
    pub const RUN_CONTAINER_ERROR: &str = "RunContainerError";
    pub const KILL_CONTAINER_ERROR: &str = "KillContainerError";
    pub const VERIFY_NON_ROOT_ERROR: &str = "VerifyNonRootError";
    pub const RUN_INIT_CONTAINER_ERROR: &str = "RunInitContainerError";
    pub const CREATE_POD_SANDBOX_ERROR: &str = "CreatePodSandboxError";
    pub const CONFIG_POD_SANDBOX_ERROR: &str = "ConfigPodSandboxError";
    pub const KILL_POD_SANDBOX_ERROR: &str = "KillPodSandboxError";

    // pkg/kubelet/kuberuntime/kuberuntime_container.go
    pub const CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";
    pub const PRE_CREATE_HOOK_ERROR: &str = "PreCreateHookError";
    pub const CREATE_CONTAINER_ERROR: &str = "CreateContainerError";
    pub const PRE_START_HOOK_ERROR: &str = "PreStartHookError";
    pub const POST_START_HOOK_ERROR: &str = "PostStartHookError";

    // pkg/kubelet/images/types.go
    pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
    pub const IMAGE_INSPECT_ERROR: &str = "ImageInspectError";
    pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
    pub const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
    pub const INVALID_IMAGE_NAME: &str = "InvalidImageName";
    pub const SIGNATURE_VALIDATION_FAILED: &str = "SignatureValidationFailed";
}

/// What the status reads from the prober (upstream's prober manager in `UpdatePodStatus`).
pub struct ProbeView<'a> {
    /// Readiness result per CRI container id (bare, without the `containerd://` prefix):
    /// `Some(true)` for Success; `None` = no result yet.
    pub readiness: &'a dyn Fn(&str) -> Option<bool>,
    /// Startup result per CRI container id, like `readiness`.
    pub startup: &'a dyn Fn(&str) -> Option<bool>,
    /// Whether a readiness worker runs for the named container (upstream `getWorker`).
    pub readiness_worker: &'a dyn Fn(&str) -> bool,
    /// Whether a startup worker runs for the named container.
    pub startup_worker: &'a dyn Fn(&str) -> bool,
    /// Time since the epoch before which a running container was already there when the kubelet
    /// started (upstream `kubeletRestartGracePeriod`: the start less 10 s); `None`: no such care.
    pub restart_cutoff: Option<std::time::Duration>,
}

/// Everything [`compute_pod_status`] looks at.
pub struct StatusInput<'a> {
    pub pod: &'a Pod,
    pub runtime: &'a PodRuntimeStatus,
    /// Waiting reasons from the last sync (upstream's reason cache).
    pub reasons: &'a SyncReasons,
    /// The previously computed status (upstream: the status manager's cached status). `None`
    /// falls back to `pod.status`, as upstream does when nothing is cached.
    pub old: Option<&'a PodStatus>,
    /// What the prober knows of the pod's containers.
    pub probes: ProbeView<'a>,
    /// The node's IP (`status.hostIP`; also the pod IP of hostNetwork pods).
    pub host_ip: Option<&'a str>,
    /// Upstream's `podIsTerminal`: the pod worker has decided the pod is finished (deleted,
    /// evicted, or all containers done and no restart will happen). With it, a pod whose
    /// containers all stopped is reported Succeeded/Failed regardless of the restart policy.
    pub pod_is_terminal: bool,
    pub now: Time,
}

/// Computes the pod status upstream's kubelet would report for `input.pod`.
pub fn compute_pod_status(input: &StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let empty_status = PodStatus::default();
    // `pod.Status` upstream: the status as the API (or the manifest) has it.
    let api_status = pod.status.as_ref().unwrap_or(&empty_status);
    // `oldPodStatus` upstream: the status manager's cached status, else the API status.
    let old = input.old.or(pod.status.as_ref()).unwrap_or(&empty_status);
    let now = truncate_time(&input.now);
    let generation = pod.metadata.generation.filter(|g| *g != 0);

    let mut s = PodStatus::default();

    // convertStatusToAPIStatus: pod IPs of the active sandbox, ordered by the node's IP family.
    let pod_ips = sort_pod_ips(active_sandbox_ips(input.runtime), input.host_ip);
    if !pod_ips.is_empty() {
        s.pod_ip = pod_ips.first().cloned();
        s.pod_ips = Some(pod_ips.into_iter().map(|ip| PodIP { ip }).collect());
    }
    s.qos_class = Some(get_pod_qos(pod).to_string());

    let ctx = containers::Ctx::new(pod, spec, input.runtime, input.reasons);
    let init_specs = spec.init_containers.as_deref().unwrap_or(&[]);
    let has_init = !init_specs.is_empty();
    let mut regular = ctx.convert(old.container_statuses.as_deref().unwrap_or(&[]), &spec.containers, has_init, false);
    let mut init = ctx.convert(old.init_container_statuses.as_deref().unwrap_or(&[]), init_specs, has_init, true);
    // The prober manager's UpdatePodStatus (upstream runs it right after the phase is computed;
    // the phase only reads `started` of sidecars, which is the same either way here).
    containers::apply_probe_results(pod, spec, old, &mut regular, &mut init, &input.probes);

    // getPhase over the regular + init statuses.
    let all: Vec<&ContainerStatus> = regular.iter().chain(init.iter()).collect();
    let has_initialized = containers::has_any_active_regular_container_started(spec, input.runtime);
    let mut phase = get_phase(pod, &all, input.pod_is_terminal, has_initialized).to_string();

    // Three-way merge so a terminal phase sticks.
    if !is_terminal(Some(&phase)) {
        if is_terminal(old.phase.as_deref()) {
            phase = old.phase.clone().unwrap_or_default();
        } else if is_terminal(api_status.phase.as_deref()) {
            phase = api_status.phase.clone().unwrap_or_default();
        }
    }
    if old.phase.as_deref() == Some(phase.as_str()) {
        // Preserve the reason and message associated with the phase.
        s.reason = non_empty(old.reason.as_deref()).or(non_empty(api_status.reason.as_deref()));
        s.message = non_empty(old.message.as_deref()).or(non_empty(api_status.message.as_deref()));
    }
    // Pods are not allowed to transition out of terminal phases.
    if is_terminal(api_status.phase.as_deref()) && api_status.phase.as_deref() != Some(&phase) {
        phase = api_status.phase.clone().unwrap_or_default();
    }
    s.phase = Some(phase.clone());

    // Conditions: those not owned by the kubelet are kept from the API status, DisruptionTarget
    // is copied from the old status, then the kubelet-owned ones in upstream's order.
    let mut conds: Vec<PodCondition> =
        api_status.conditions.iter().flatten().filter(|c| !condition_owned_by_kubelet(&c.type_)).cloned().collect();
    if let Some(dt) = find_condition(old.conditions.as_deref(), condition_types::DISRUPTION_TARGET) {
        replace_or_append_condition(&mut conds, dt.clone());
    }
    conds.push(generate_pod_ready_to_start_containers_condition(pod, input.runtime, generation));
    let all_statuses: Vec<ContainerStatus> = init.iter().chain(regular.iter()).cloned().collect();
    conds.push(generate_pod_initialized_condition(spec, &all_statuses, &phase, generation));
    let ready = generate_pod_ready_condition(spec, &conds, &all_statuses, &phase, generation);
    conds.push(ready);
    conds.push(generate_containers_ready_condition(spec, &all_statuses, &phase, generation));
    conds.push(PodCondition {
        type_: condition_types::POD_SCHEDULED.to_string(),
        status: "True".to_string(),
        observed_generation: generation,
        ..Default::default()
    });
    s.conditions = Some(conds);

    // Host IPs; hostNetwork pods inherit the node IP as pod IP.
    if let Some(host_ip) = input.host_ip.filter(|h| !h.is_empty()) {
        s.host_ip = Some(host_ip.to_string());
        s.host_ips = Some(vec![HostIP { ip: host_ip.to_string() }]);
        if spec.host_network == Some(true) && s.pod_ip.is_none() {
            s.pod_ip = Some(host_ip.to_string());
            s.pod_ips = Some(vec![PodIP { ip: host_ip.to_string() }]);
        }
    }

    // Empty lists are omitted, as in the API.
    s.container_statuses = (!regular.is_empty()).then_some(regular);
    s.init_container_statuses = (!init.is_empty()).then_some(init);

    // ---- status manager: SetPodStatus / updateStatusInternal ----
    s.observed_generation = generation;

    // An illegal terminated → non-terminated container transition aborts the update: upstream
    // keeps the cached status.
    if check_container_state_transition(old, &s, spec).is_err() {
        return old.clone();
    }

    for t in [
        condition_types::CONTAINERS_READY,
        condition_types::READY,
        condition_types::INITIALIZED,
        condition_types::POD_READY_TO_START_CONTAINERS,
        condition_types::POD_SCHEDULED,
        condition_types::DISRUPTION_TARGET,
    ] {
        update_last_transition_time(&mut s, old, t, &now);
    }

    // The start time does not change across updates.
    s.start_time = Some(old.start_time.clone().unwrap_or_else(|| now.clone()));

    normalize_status(spec, &mut s);
    s
}

/// Upstream's `checkContainerStateTransition`: a container may only leave the terminated state
/// when its restart policy allows it. Returns the offending container name.
pub fn check_container_state_transition(old: &PodStatus, new: &PodStatus, spec: &PodSpec) -> Result<(), String> {
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    if policy == "Always" {
        return Ok(());
    }
    let illegal = |old_status: &ContainerStatus, news: &[ContainerStatus]| -> bool {
        let Some(term) = old_status.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
            return false;
        };
        if term.exit_code != 0 && policy == "OnFailure" {
            return false;
        }
        news.iter().any(|n| n.name == old_status.name && n.state.as_ref().and_then(|s| s.terminated.as_ref()).is_none())
    };
    let new_regular = new.container_statuses.as_deref().unwrap_or(&[]);
    for o in old.container_statuses.iter().flatten() {
        if illegal(o, new_regular) {
            return Err(o.name.clone());
        }
    }
    let new_init = new.init_container_statuses.as_deref().unwrap_or(&[]);
    let init_specs = spec.init_containers.as_deref().unwrap_or(&[]);
    for o in old.init_container_statuses.iter().flatten() {
        // Restartable init containers (sidecars) may always restart.
        let sidecar = init_specs.iter().find(|c| c.name == o.name).is_some_and(is_restartable_init_container);
        if !sidecar && illegal(o, new_init) {
            return Err(o.name.clone());
        }
    }
    Ok(())
}

/// True for the phases a pod never leaves.
pub fn is_terminal(phase: Option<&str>) -> bool {
    matches!(phase, Some(phases::SUCCEEDED) | Some(phases::FAILED))
}

/// Upstream's `mergePodStatus` at write time: conditions the kubelet does not own are taken from
/// the API's current status (another writer may have set them after the pod's spec reached the
/// worker), so a status write never removes them; DisruptionTarget stays the kubelet's when set.
pub fn merge_with_api_status(new: &PodStatus, api: &PodStatus) -> PodStatus {
    let mut out = new.clone();
    let mut conds: Vec<PodCondition> = new
        .conditions
        .iter()
        .flatten()
        .filter(|c| condition_owned_by_kubelet(&c.type_) || c.type_ == condition_types::DISRUPTION_TARGET)
        .cloned()
        .collect();
    for c in api.conditions.iter().flatten() {
        if !condition_owned_by_kubelet(&c.type_) && !conds.iter().any(|k| k.type_ == c.type_) {
            conds.push(c.clone());
        }
    }
    out.conditions = (!conds.is_empty()).then_some(conds);
    out
}

/// Upstream's `PodConditionByKubelet` (with PodReadyToStartContainersCondition enabled).
fn condition_owned_by_kubelet(t: &str) -> bool {
    matches!(
        t,
        condition_types::POD_SCHEDULED
            | condition_types::READY
            | condition_types::INITIALIZED
            | condition_types::CONTAINERS_READY
            | condition_types::POD_READY_TO_START_CONTAINERS
    )
}

fn find_condition<'c>(conds: Option<&'c [PodCondition]>, t: &str) -> Option<&'c PodCondition> {
    conds.unwrap_or(&[]).iter().find(|c| c.type_ == t)
}

fn replace_or_append_condition(conds: &mut Vec<PodCondition>, c: PodCondition) {
    match conds.iter_mut().find(|x| x.type_ == c.type_) {
        Some(slot) => *slot = c,
        None => conds.push(c),
    }
}

/// Upstream's `updateLastTransitionTime`: keep the old transition time when the condition's
/// status did not change, else stamp `now`.
fn update_last_transition_time(s: &mut PodStatus, old: &PodStatus, t: &str, now: &Time) {
    let old_cond = find_condition(old.conditions.as_deref(), t);
    let Some(cond) = s.conditions.iter_mut().flatten().find(|c| c.type_ == t) else {
        return;
    };
    cond.last_transition_time = match old_cond {
        Some(o) if o.status == cond.status => o.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
}

/// Upstream's `normalizeStatus`: second-precision timestamps, termination messages capped to the
/// pod's per-container share, regular statuses sorted by name, init statuses in spec order.
fn normalize_status(spec: &PodSpec, s: &mut PodStatus) {
    let n_containers = spec.containers.len() + spec.init_containers.as_ref().map_or(0, Vec::len);
    let bytes_per_status = MAX_POD_TERMINATION_MESSAGE_LOG_LENGTH
        .checked_div(n_containers)
        .unwrap_or(MAX_POD_TERMINATION_MESSAGE_LOG_LENGTH);
    let norm = |t: &mut Option<Time>| {
        if let Some(v) = t.as_mut() {
            *v = truncate_time(v);
        }
    };
    let norm_state = |st: &mut Option<ContainerState>| {
        let Some(st) = st.as_mut() else { return };
        if let Some(r) = st.running.as_mut() {
            norm(&mut r.started_at);
        }
        if let Some(t) = st.terminated.as_mut() {
            norm(&mut t.started_at);
            norm(&mut t.finished_at);
            if let Some(m) = t.message.as_mut() {
                truncate_bytes(m, bytes_per_status);
            }
        }
    };
    norm(&mut s.start_time);
    for c in s.conditions.iter_mut().flatten() {
        norm(&mut c.last_probe_time);
        norm(&mut c.last_transition_time);
    }
    for cs in s.container_statuses.iter_mut().flatten().chain(s.init_container_statuses.iter_mut().flatten()) {
        norm_state(&mut cs.state);
        norm_state(&mut cs.last_state);
    }
    if let Some(cs) = s.container_statuses.as_mut() {
        cs.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

fn truncate_bytes(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut n = max;
    while n > 0 && !s.is_char_boundary(n) {
        n -= 1;
    }
    s.truncate(n);
}

/// `metav1.Time.Rfc3339Copy`: drop sub-second precision.
fn truncate_time(t: &Time) -> Time {
    Time(Timestamp::from_second(t.0.as_second()).unwrap_or(t.0))
}

/// Unix nanoseconds from CRI → API time; 0 (unset) → `None`.
pub(crate) fn time_from_nanos(nanos: i64) -> Option<Time> {
    if nanos == 0 {
        return None;
    }
    Timestamp::from_nanosecond(i128::from(nanos)).ok().map(Time)
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}

/// Pod IPs come from the newest sandbox only, and only while it is ready (upstream's
/// `GetPodStatus` reads them from sandbox index 0 in SANDBOX_READY).
fn active_sandbox_ips(runtime: &PodRuntimeStatus) -> &[String] {
    match runtime.sandboxes.first() {
        Some(sb) if sb.ready => &sb.ips,
        _ => &[],
    }
}

/// Upstream's `sortPodIPs`: the first IP of the node's family, then the first of the other
/// family; re-stringified. The node family is taken from `host_ip` (IPv4 when unknown).
fn sort_pod_ips(ips: &[String], host_ip: Option<&str>) -> Vec<String> {
    let node_v6 = host_ip.and_then(parse_ip_sloppy).is_some_and(|ip| ip.is_ipv6());
    let parsed: Vec<IpAddr> = ips.iter().filter_map(|s| parse_ip_sloppy(s)).collect();
    let primary = parsed.iter().find(|ip| ip.is_ipv6() == node_v6);
    let secondary = parsed.iter().find(|ip| ip.is_ipv6() != node_v6);
    primary.into_iter().chain(secondary).map(IpAddr::to_string).collect()
}

/// Go's `netutils.ParseIPSloppy`: IPv4 octets may carry leading zeros (read as decimal), and
/// IPv4-mapped IPv6 addresses are IPv4.
fn parse_ip_sloppy(s: &str) -> Option<IpAddr> {
    if let Some(v4) = parse_ipv4_sloppy(s) {
        return Some(IpAddr::V4(v4));
    }
    match s.parse::<IpAddr>().ok()? {
        IpAddr::V6(v6) => Some(match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }),
        v4 => Some(v4),
    }
}

fn parse_ipv4_sloppy(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for o in octets.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}
