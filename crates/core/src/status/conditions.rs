//! Kubelet-owned pod conditions (upstream's `pkg/kubelet/status/generate.go`).

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition, PodSpec};

use super::containers::is_restartable_init_container;
use super::{condition_types, phases, reasons};
use crate::container::PodRuntimeStatus;

const TRUE: &str = "True";
const FALSE: &str = "False";

fn condition(
    type_: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<String>,
    generation: Option<i64>,
) -> PodCondition {
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.map(str::to_string),
        message,
        observed_generation: generation,
        ..Default::default()
    }
}

/// Go's `fmt.Sprintf("%s", []string{...})`: `[a b]`.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

fn find<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

/// Upstream's `GenerateContainersReadyCondition`: True when every regular container and every
/// sidecar is ready. `statuses` holds init and regular container statuses.
pub fn generate_containers_ready_condition(
    spec: &PodSpec,
    statuses: &[ContainerStatus],
    phase: &str,
    generation: Option<i64>,
) -> PodCondition {
    let t = condition_types::CONTAINERS_READY;
    let mut unknown: Vec<&str> = Vec::new();
    let mut unready: Vec<&str> = Vec::new();
    let sidecars = spec.init_containers.iter().flatten().filter(|c| is_restartable_init_container(c));
    for c in sidecars.chain(spec.containers.iter()) {
        match find(statuses, &c.name) {
            Some(s) if !s.ready => unready.push(&c.name),
            Some(_) => {}
            None => unknown.push(&c.name),
        }
    }

    // All containers known and succeeded, or failed: the pod is done.
    if (phase == phases::SUCCEEDED && unknown.is_empty()) || phase == phases::FAILED {
        return terminal_phase_condition(t, phase, generation);
    }

    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!("containers with unknown status: {}", go_list(&unknown)));
    }
    if !unready.is_empty() {
        messages.push(format!("containers with unready status: {}", go_list(&unready)));
    }
    if !messages.is_empty() {
        return condition(t, FALSE, Some(reasons::CONTAINERS_NOT_READY), Some(messages.join(", ")), generation);
    }
    condition(t, TRUE, None, None, generation)
}

fn terminal_phase_condition(t: &str, phase: &str, generation: Option<i64>) -> PodCondition {
    let reason = match phase {
        phases::FAILED => Some(reasons::POD_FAILED),
        phases::SUCCEEDED => Some(reasons::POD_COMPLETED),
        _ => None,
    };
    condition(t, FALSE, reason, None, generation)
}

/// Upstream's `GeneratePodReadyCondition`: ContainersReady, and every readiness gate's condition
/// (looked up in `conditions`) is True.
pub fn generate_pod_ready_condition(
    spec: &PodSpec,
    conditions: &[PodCondition],
    statuses: &[ContainerStatus],
    phase: &str,
    generation: Option<i64>,
) -> PodCondition {
    let t = condition_types::READY;
    let containers_ready = generate_containers_ready_condition(spec, statuses, phase, generation);
    if containers_ready.status != TRUE {
        return PodCondition { type_: t.to_string(), ..containers_ready };
    }

    let mut messages = Vec::new();
    for gate in spec.readiness_gates.iter().flatten() {
        match conditions.iter().find(|c| c.type_ == gate.condition_type) {
            None => messages.push(format!(
                "corresponding condition of pod readiness gate {:?} does not exist.",
                gate.condition_type
            )),
            Some(c) if c.status != TRUE => messages.push(format!(
                "the status of pod readiness gate {:?} is not \"True\", but {}",
                gate.condition_type, c.status
            )),
            Some(_) => {}
        }
    }
    if !messages.is_empty() {
        return condition(t, FALSE, Some(reasons::READINESS_GATES_NOT_READY), Some(messages.join(", ")), generation);
    }
    condition(t, TRUE, None, None, generation)
}

/// Upstream's `isInitContainerInitialized`: sidecars once started, others once ready (exited 0).
fn is_init_container_initialized(c: &k8s_openapi::api::core::v1::Container, s: &ContainerStatus) -> bool {
    if is_restartable_init_container(c) { s.started == Some(true) } else { s.ready }
}

/// Upstream's `HasAnyRegularContainerStarted`: a regular container's status is running or
/// terminated.
pub(crate) fn has_any_regular_container_started(spec: &PodSpec, statuses: &[ContainerStatus]) -> bool {
    statuses.iter().any(|s| {
        spec.containers.iter().any(|c| c.name == s.name)
            && s.state.as_ref().is_some_and(|st| st.running.is_some() || st.terminated.is_some())
    })
}

/// Upstream's `GeneratePodInitializedCondition`.
pub fn generate_pod_initialized_condition(
    spec: &PodSpec,
    statuses: &[ContainerStatus],
    phase: &str,
    generation: Option<i64>,
) -> PodCondition {
    let t = condition_types::INITIALIZED;
    let init_containers = spec.init_containers.as_deref().unwrap_or(&[]);
    if statuses.is_empty() && !init_containers.is_empty() {
        return condition(t, FALSE, Some(reasons::UNKNOWN_CONTAINER_STATUSES), None, generation);
    }

    let mut unknown: Vec<&str> = Vec::new();
    let mut incomplete: Vec<&str> = Vec::new();
    for c in init_containers {
        match find(statuses, &c.name) {
            None => unknown.push(&c.name),
            Some(s) if !is_init_container_initialized(c, s) => incomplete.push(&c.name),
            Some(_) => {}
        }
    }

    if phase == phases::SUCCEEDED && unknown.is_empty() {
        return condition(t, TRUE, Some(reasons::POD_COMPLETED), None, generation);
    }
    // A regular container has started: the pod was initialized before (sidecars may be
    // restarting).
    if has_any_regular_container_started(spec, statuses) {
        return condition(t, TRUE, None, None, generation);
    }

    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!("containers with unknown status: {}", go_list(&unknown)));
    }
    if !incomplete.is_empty() {
        messages.push(format!("containers with incomplete status: {}", go_list(&incomplete)));
    }
    if !messages.is_empty() {
        return condition(t, FALSE, Some(reasons::CONTAINERS_NOT_INITIALIZED), Some(messages.join(", ")), generation);
    }
    condition(t, TRUE, None, None, generation)
}

/// Upstream's `GeneratePodReadyToStartContainersCondition`: True when no new sandbox is needed
/// (`PodSandboxChanged` is false): exactly one ready sandbox, the newest, in the pod's network
/// mode, with an IP unless hostNetwork.
pub fn generate_pod_ready_to_start_containers_condition(
    pod: &Pod,
    runtime: &PodRuntimeStatus,
    generation: Option<i64>,
) -> PodCondition {
    let t = condition_types::POD_READY_TO_START_CONTAINERS;
    let status = if pod_sandbox_changed(pod, runtime) { FALSE } else { TRUE };
    condition(t, status, None, None, generation)
}

/// Upstream's `PodSandboxChanged` (`kuberuntime/util`), the "changed" part.
fn pod_sandbox_changed(pod: &Pod, runtime: &PodRuntimeStatus) -> bool {
    let Some(newest) = runtime.sandboxes.first() else {
        return true;
    };
    let ready = runtime.sandboxes.iter().filter(|s| s.ready).count();
    if ready > 1 || !newest.ready {
        return true;
    }
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
    if newest.host_network != host_network {
        return true;
    }
    !host_network && newest.ips.is_empty()
}
