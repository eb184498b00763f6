//! The pod phase (upstream's `getPhase` in `pkg/kubelet/kubelet_pods.go`).

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::containers::{container_should_restart, is_restartable_init_container};
use super::phases;

/// Upstream's `getPhase`: the phase of `pod` given its container statuses (regular and init, in
/// any order). `pod_is_terminal`: the pod worker considers the pod finished.
/// `pod_has_initialized`: a regular container of the active sandbox has started (upstream's
/// `HasAnyActiveRegularContainerStarted`), so restarting sidecars do not send the pod back to
/// Pending.
///
/// Implemented in its ContainerRestartRules form: "may this container restart" follows the
/// container's restart policy when it has one, else the pod's; without container-level policies
/// this is the classic restartPolicy Always/OnFailure/Never behaviour.
pub fn get_phase(
    pod: &Pod,
    info: &[&ContainerStatus],
    pod_is_terminal: bool,
    pod_has_initialized: bool,
) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return phases::PENDING;
    };
    let find = |name: &str| info.iter().copied().find(|s| s.name == name);
    let init_containers = spec.init_containers.as_deref().unwrap_or(&[]);

    let mut pending_restartable_init = 0;
    let mut pending_regular_init = 0;
    let mut failed_init_not_restartable = 0;

    // Regular init containers.
    for c in init_containers.iter().filter(|c| !is_restartable_init_container(c)) {
        let Some(st) = find(&c.name) else {
            pending_regular_init += 1;
            continue;
        };
        let state = st.state.clone().unwrap_or_default();
        let last = st.last_state.as_ref().and_then(|l| l.terminated.as_ref());
        if state.running.is_some() {
            pending_regular_init += 1;
        } else if let Some(t) = &state.terminated {
            if t.exit_code != 0 && !container_should_restart(c, spec, t.exit_code) {
                failed_init_not_restartable += 1;
            }
        } else if state.waiting.is_some() {
            match last {
                Some(t) => {
                    if t.exit_code != 0 && !container_should_restart(c, spec, t.exit_code) {
                        failed_init_not_restartable += 1;
                    }
                }
                None => pending_regular_init += 1,
            }
        } else {
            pending_regular_init += 1;
        }
    }

    let mut unknown = 0;
    let mut running = 0;
    let mut waiting = 0;
    let mut stopped = 0;
    let mut stopped_not_restartable = 0;
    let mut succeeded = 0;

    // Sidecars: count as regular containers once started; terminated ones are ignored.
    for c in init_containers.iter().filter(|c| is_restartable_init_container(c)) {
        let Some(st) = find(&c.name) else {
            unknown += 1;
            continue;
        };
        let state = st.state.clone().unwrap_or_default();
        let has_last = st.last_state.as_ref().is_some_and(|l| l.terminated.is_some());
        if state.running.is_some() {
            if st.started != Some(true) {
                pending_restartable_init += 1;
            }
            running += 1;
        } else if state.terminated.is_some() {
            // Terminated restartable init containers do not count for the phase.
        } else if state.waiting.is_some() {
            if !has_last {
                pending_restartable_init += 1;
                waiting += 1;
            }
        } else {
            pending_restartable_init += 1;
            unknown += 1;
        }
    }

    for c in &spec.containers {
        let Some(st) = find(&c.name) else {
            unknown += 1;
            continue;
        };
        let state = st.state.clone().unwrap_or_default();
        let last = st.last_state.as_ref().and_then(|l| l.terminated.as_ref());
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if !container_should_restart(c, spec, t.exit_code) {
                stopped_not_restartable += 1;
            }
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.waiting.is_some() {
            match last {
                Some(t) => {
                    stopped += 1;
                    if !container_should_restart(c, spec, t.exit_code) {
                        stopped_not_restartable += 1;
                    }
                }
                None => waiting += 1,
            }
        } else {
            unknown += 1;
        }
    }

    if failed_init_not_restartable > 0 {
        return phases::FAILED;
    }

    if pending_regular_init > 0 || (pending_restartable_init > 0 && !pod_has_initialized) {
        return phases::PENDING;
    }
    if waiting > 0 {
        // One or more containers has not been started.
        return phases::PENDING;
    }
    if running > 0 && unknown == 0 {
        // All containers have been started, and at least one is running.
        return phases::RUNNING;
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        // A terminal pod's containers won't be restarted regardless of the restart policy.
        if pod_is_terminal && !crate::source::is_static_pod(pod) {
            return if stopped == succeeded { phases::SUCCEEDED } else { phases::FAILED };
        }
        if stopped != stopped_not_restartable {
            // At least one container is in the process of restarting.
            return phases::RUNNING;
        }
        return if stopped == succeeded { phases::SUCCEEDED } else { phases::FAILED };
    }
    phases::PENDING
}
