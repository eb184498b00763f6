//! Container statuses (upstream's `convertToAPIContainerStatuses` in
//! `pkg/kubelet/kubelet_pods.go`) and the prober manager's `started`/`ready`.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    Pod, PodSpec, PodStatus, ResourceRequirements, VolumeMountStatus,
};

use super::{ProbeView, RUNTIME_TYPE, reasons, time_from_nanos};
use crate::container::SyncReasons;
use crate::container::{ContainerRuntimeStatus, ContainerState as CriState, PodRuntimeStatus};

/// True for init containers with `restartPolicy: Always` (sidecars).
pub fn is_restartable_init_container(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Upstream's `podutil.ContainerShouldRestart` (without restart rules): the container-level
/// restart policy when set, else the pod's (default Always).
pub fn container_should_restart(c: &Container, spec: &PodSpec, exit_code: i32) -> bool {
    let policy = c.restart_policy.as_deref().or(spec.restart_policy.as_deref()).unwrap_or("Always");
    match policy {
        "OnFailure" => exit_code != 0,
        "Never" => false,
        _ => true,
    }
}

/// Upstream's `HasAnyActiveRegularContainerStarted`: a regular container exists in the active
/// sandbox (the newest one, while ready). CRI containers here do not carry their sandbox id, so
/// "in the active sandbox" is "created no earlier than the active sandbox".
pub(crate) fn has_any_active_regular_container_started(spec: &PodSpec, runtime: &PodRuntimeStatus) -> bool {
    let Some(sandbox) = runtime.sandboxes.first().filter(|s| s.ready) else {
        return false;
    };
    runtime
        .containers
        .iter()
        .any(|c| c.created_at >= sandbox.created_at && spec.containers.iter().any(|s| s.name == c.name))
}

fn cid(c: &ContainerRuntimeStatus) -> String {
    format!("{RUNTIME_TYPE}://{}", c.id)
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn waiting(reason: Option<String>, message: Option<String>) -> ContainerState {
    ContainerState { waiting: Some(ContainerStateWaiting { reason, message }), ..Default::default() }
}

fn terminated(reason: &str, message: &str, exit_code: i32) -> ContainerStateTerminated {
    ContainerStateTerminated {
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        exit_code,
        ..Default::default()
    }
}

fn state_of(s: &ContainerStatus) -> ContainerState {
    s.state.clone().unwrap_or_default()
}

fn is_terminated(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|st| st.terminated.is_some())
}

fn is_running(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|st| st.running.is_some())
}

/// Volume mount statuses from the spec (RecursiveReadOnlyMounts; the runtime is assumed not to
/// support recursive read-only mounts, so read-only mounts report `Disabled`).
fn volume_mount_statuses(c: &Container) -> Option<Vec<VolumeMountStatus>> {
    let mounts = c.volume_mounts.as_ref()?;
    Some(
        mounts
            .iter()
            .map(|m| {
                let ro = m.read_only == Some(true);
                VolumeMountStatus {
                    name: m.name.clone(),
                    mount_path: m.mount_path.clone(),
                    read_only: ro.then_some(true),
                    recursive_read_only: ro.then(|| "Disabled".to_string()),
                    volume_status: None,
                }
            })
            .collect(),
    )
}

/// What the conversion of one pod's container lists needs.
pub(crate) struct Ctx<'a> {
    pod: &'a Pod,
    spec: &'a PodSpec,
    reasons: &'a SyncReasons,
    /// Runtime containers, newest first.
    sorted: Vec<&'a ContainerRuntimeStatus>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(
        pod: &'a Pod,
        spec: &'a PodSpec,
        runtime: &'a PodRuntimeStatus,
        reasons: &'a SyncReasons,
    ) -> Self {
        let mut sorted: Vec<&ContainerRuntimeStatus> = runtime.containers.iter().collect();
        sorted.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        Self { pod, spec, reasons, sorted }
    }

    /// The newest runtime instance of a container (`FindContainerStatusByName`).
    fn newest(&self, name: &str) -> Option<&'a ContainerRuntimeStatus> {
        self.sorted.iter().copied().find(|c| c.name == name)
    }

    fn deleted(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    /// Upstream's `kuberuntime.HasAnyRegularContainerCreated`.
    fn has_any_regular_container_created(&self) -> bool {
        self.spec.containers.iter().any(|c| {
            self.newest(&c.name)
                .is_some_and(|s| matches!(s.state, CriState::Created | CriState::Running | CriState::Exited))
        })
    }

    /// Upstream's `ShouldContainerBeRestarted`.
    fn should_container_be_restarted(&self, c: &Container) -> bool {
        if self.deleted() {
            return false;
        }
        match self.newest(&c.name) {
            None => true,
            Some(s) => match s.state {
                CriState::Running => false,
                CriState::Unknown | CriState::Created => true,
                CriState::Exited => container_should_restart(c, self.spec, s.exit_code),
            },
        }
    }

    fn spec_container(&self, name: &str) -> Option<&'a Container> {
        self.spec.containers.iter().chain(self.spec.init_containers.iter().flatten()).find(|c| c.name == name)
    }

    /// Upstream's `convertContainerStatus`: one runtime instance → API status.
    fn convert_one(
        &self,
        cs: &ContainerRuntimeStatus,
        old: Option<&ContainerStatus>,
        spec_image: &str,
    ) -> ContainerStatus {
        let id = cid(cs);
        let image = if cs.image.is_empty() { spec_image.to_string() } else { cs.image.clone() };
        let mut st = ContainerStatus {
            name: cs.name.clone(),
            restart_count: cs.restart_count,
            image,
            image_id: cs.image_ref.clone(),
            container_id: Some(id.clone()),
            last_state: Some(ContainerState::default()),
            volume_mounts: old.and_then(|o| o.volume_mounts.clone()),
            ..Default::default()
        };
        st.state = Some(match cs.state {
            CriState::Running => ContainerState {
                running: Some(ContainerStateRunning { started_at: time_from_nanos(cs.started_at) }),
                ..Default::default()
            },
            // Created but not running: "waiting to be running".
            CriState::Created => waiting(None, None),
            CriState::Exited => ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: cs.exit_code,
                    reason: Some(terminated_reason(cs)),
                    message: non_empty(&cs.message),
                    started_at: time_from_nanos(cs.started_at),
                    finished_at: time_from_nanos(cs.finished_at),
                    container_id: Some(id),
                    signal: None,
                }),
                ..Default::default()
            },
            CriState::Unknown => match old {
                // Previously running and now unknown: it ran and is gone, report it terminated
                // rather than waiting (a run-once pod must not look like it never ran).
                Some(o) if is_running(o) => {
                    st.restart_count = o.restart_count.saturating_add(1);
                    ContainerState {
                        terminated: Some(terminated(
                            reasons::CONTAINER_STATUS_UNKNOWN,
                            "The container could not be located when the pod was terminated",
                            137,
                        )),
                        ..Default::default()
                    }
                }
                _ => waiting(None, None),
            },
        });
        st
    }

    /// Upstream's `convertStatusResources` with no runtime-reported resources: the allocated
    /// (spec) resources, keeping the previously reported cpu/memory of a still-running instance.
    fn resources(
        &self,
        spec: &Container,
        cs: &ContainerRuntimeStatus,
        st: &ContainerStatus,
        old: Option<&ContainerStatus>,
    ) -> ResourceRequirements {
        let mut res = spec.resources.clone().unwrap_or_default();
        if cs.state != CriState::Running {
            return res;
        }
        let Some(old) = old.filter(|o| is_running(o) && o.container_id == st.container_id) else {
            return res;
        };
        let old_res = old.resources.clone().unwrap_or_default();
        for (target, old_list) in
            [(res.limits.as_mut(), old_res.limits.as_ref()), (res.requests.as_mut(), old_res.requests.as_ref())]
        {
            let (Some(target), Some(old_list)) = (target, old_list) else {
                continue;
            };
            for name in ["cpu", "memory"] {
                if let Some(q) = old_list.get(name) {
                    target.insert(name.to_string(), q.clone());
                }
            }
        }
        res
    }

    /// Upstream's `convertToAPIContainerStatuses` for one list (`containers` = regular or init
    /// container specs; `previous` = the old statuses of that list).
    pub(crate) fn convert(
        &self,
        previous: &[ContainerStatus],
        containers: &[Container],
        has_init_containers: bool,
        is_init: bool,
    ) -> Vec<ContainerStatus> {
        let old: HashMap<&str, &ContainerStatus> = previous.iter().map(|s| (s.name.as_str(), s)).collect();
        let default_reason = if has_init_containers { reasons::POD_INITIALIZING } else { reasons::CONTAINER_CREATING };

        // Every container starts out waiting; a terminated old status is kept as is, otherwise
        // the old restart count and last state carry over.
        let mut statuses: HashMap<&str, ContainerStatus> = HashMap::new();
        for c in containers {
            let mut st = ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                state: Some(waiting(Some(default_reason.to_string()), None)),
                last_state: Some(ContainerState::default()),
                volume_mounts: volume_mount_statuses(c),
                ..Default::default()
            };
            if let Some(o) = old.get(c.name.as_str()) {
                if is_terminated(o) {
                    st = (*o).clone();
                } else {
                    st.restart_count = o.restart_count;
                    st.last_state = Some(o.last_state.clone().unwrap_or_default());
                }
            }
            statuses.insert(c.name.as_str(), st);
        }

        // A container that was running but vanished from the runtime: record an unknown
        // termination so the pod does not fall back to Pending.
        for c in containers {
            if self.newest(&c.name).is_some() {
                continue;
            }
            let Some(o) = old.get(c.name.as_str()) else {
                continue;
            };
            if is_terminated(o) || !is_running(o) {
                continue;
            }
            let Some(st) = statuses.get_mut(c.name.as_str()) else {
                continue;
            };
            let is_default_waiting = st
                .state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .is_some_and(|w| w.reason.as_deref() == Some(default_reason));
            if !is_default_waiting {
                continue;
            }
            let last = st.last_state.get_or_insert_with(ContainerState::default);
            if last.terminated.is_some() {
                continue;
            }
            last.terminated = Some(terminated(
                reasons::CONTAINER_STATUS_UNKNOWN,
                "The container could not be located when the pod was deleted.  The container used to be Running",
                137,
            ));
            if !self.deleted() {
                st.restart_count = st.restart_count.saturating_add(1);
            }
        }

        // The newest instance gives the state, the one before it the last state.
        let mut seen: HashMap<&str, u32> = HashMap::new();
        for cs in &self.sorted {
            let name = cs.name.as_str();
            let Some(spec) = containers.iter().find(|c| c.name == name) else {
                continue;
            };
            let count = seen.entry(name).or_insert(0);
            if *count >= 2 {
                continue;
            }
            let o = old.get(name).copied();
            let mut st = self.convert_one(cs, o, spec.image.as_deref().unwrap_or_default());
            // InPlacePodVerticalScaling: resources and allocated resources.
            if let Some(alloc) = self.spec_container(name) {
                st.resources = Some(self.resources(alloc, cs, &st, o));
                st.allocated_resources = alloc.resources.as_ref().and_then(|r| r.requests.clone());
            }
            if *count == 0 {
                statuses.insert(name, st);
            } else if let Some(newest) = statuses.get_mut(name) {
                newest.last_state = Some(st.state.unwrap_or_default());
            }
            *count += 1;
        }

        // Containers that failed to (re)start are waiting, with the reason of the last sync.
        for c in containers {
            let Some(st) = statuses.get_mut(c.name.as_str()) else {
                continue;
            };
            if is_init {
                let newest = self.newest(&c.name);
                // An init container that exited 0 is not restarted.
                if newest.is_some_and(|s| s.state == CriState::Exited && s.exit_code == 0) {
                    continue;
                }
                // The init container is gone from the runtime but regular containers were
                // created: it must have completed.
                let waiting_now = st.state.as_ref().is_some_and(|s| s.waiting.is_some());
                if newest.is_none()
                    && !is_restartable_init_container(c)
                    && waiting_now
                    && self.has_any_regular_container_created()
                {
                    st.state = Some(ContainerState {
                        terminated: Some(terminated(
                            reasons::COMPLETED,
                            "Unable to get init container status from container runtime and pod has been initialized, treat it as exited normally",
                            0,
                        )),
                        ..Default::default()
                    });
                    continue;
                }
            }
            if !self.should_container_be_restarted(c) {
                continue;
            }
            let Some(reason) = self.reasons.get(&c.name) else {
                // No recorded failure: keep the original state (it restarts soon).
                continue;
            };
            if is_terminated(st) {
                st.last_state = st.state.clone();
            }
            st.state = Some(waiting(Some(reason.reason.clone()), non_empty(&reason.message)));
        }

        // Init statuses in spec order, regular ones sorted by name.
        if is_init {
            containers.iter().filter_map(|c| statuses.get(c.name.as_str()).cloned()).collect()
        } else {
            let mut out: Vec<ContainerStatus> = statuses.into_values().collect();
            out.sort_by(|a, b| a.name.cmp(&b.name));
            out
        }
    }
}

/// The terminated reason: CRI's, else what containerd would report for the exit code.
fn terminated_reason(cs: &ContainerRuntimeStatus) -> String {
    if !cs.reason.is_empty() {
        return cs.reason.clone();
    }
    if cs.exit_code == 0 { reasons::COMPLETED.to_string() } else { reasons::ERROR.to_string() }
}

fn bare_id(container_id: Option<&str>) -> Option<&str> {
    let id = container_id?;
    Some(id.split_once("://").map_or(id, |(_, rest)| rest))
}

/// The prober manager's `UpdatePodStatus` (its default path, without the
/// `ChangeContainerStatusOnKubeletRestart` gate):
/// - `started`: running, and the startup result is Success; without a result, `started` as the
///   old status had it for the same instance (kept across a kubelet restart), else whether no
///   startup worker runs;
/// - `ready` (of started containers): running, and the readiness result is Success, or no
///   readiness worker runs. A container running since before the kubelet started (`cutoff`)
///   and not probed yet keeps being ready, unless it has a readiness probe and the pod's
///   `Ready` condition is not True (upstream's `setReadyStateOnKubeletRestart`).
///
/// Regular init containers are ready once they exited 0.
pub(crate) fn apply_probe_results(
    pod: &Pod,
    spec: &PodSpec,
    old: &PodStatus,
    regular: &mut [ContainerStatus],
    init: &mut [ContainerStatus],
    probes: &ProbeView<'_>,
) {
    let old_started = |st: &ContainerStatus, list: Option<&Vec<ContainerStatus>>| {
        list.into_iter().flatten().any(|o| {
            o.name == st.name
                && o.container_id.is_some()
                && o.container_id == st.container_id
                && o.started == Some(true)
        })
    };
    let pod_ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let started_of = |st: &ContainerStatus, old_list: Option<&Vec<ContainerStatus>>| {
        if !is_running(st) {
            return false;
        }
        if let Some(r) = bare_id(st.container_id.as_deref()).and_then(probes.startup) {
            return r;
        }
        old_started(st, old_list) || !(probes.startup_worker)(&st.name)
    };
    let ready_of = |st: &ContainerStatus, c: &Container| {
        if !is_running(st) {
            return false;
        }
        let result = bare_id(st.container_id.as_deref()).and_then(probes.readiness);
        if result == Some(true) {
            return true;
        }
        let mut ready = !(probes.readiness_worker)(&st.name);
        let started_at = state_of(st).running.and_then(|r| r.started_at).map(|t| t.0.as_nanosecond());
        if let (Some(started_at), Some(cutoff)) = (started_at, probes.restart_cutoff)
            && started_at < i128::try_from(cutoff.as_nanos()).unwrap_or(i128::MAX)
        {
            if result.is_none() {
                ready = true;
            }
            if c.readiness_probe.is_some() && !pod_ready {
                ready = false;
            }
        }
        ready
    };
    for st in regular.iter_mut() {
        let started = started_of(st, old.container_statuses.as_ref());
        st.started = Some(started);
        if !started {
            continue;
        }
        st.ready = match spec.containers.iter().find(|c| c.name == st.name) {
            Some(c) => ready_of(st, c),
            None => is_running(st) && !(probes.readiness_worker)(&st.name),
        };
    }
    let init_specs = spec.init_containers.as_deref().unwrap_or(&[]);
    for st in init.iter_mut() {
        let started = started_of(st, old.init_container_statuses.as_ref());
        st.started = Some(started);
        let Some(c) = init_specs.iter().find(|c| c.name == st.name) else {
            continue;
        };
        if !is_restartable_init_container(c) {
            let state = state_of(st);
            if state.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
                st.ready = true;
            }
            continue;
        }
        if started {
            st.ready = ready_of(st, c);
        }
    }
}
