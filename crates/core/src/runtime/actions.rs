//! `compute_pod_actions`: compares a pod's spec with what the runtime has and decides what one
//! sync must do (upstream `computePodActions`). Pure: no I/O, so every case is unit-tested.

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::container::{ContainerRuntimeStatus, ContainerState, PodRuntimeStatus};
use crate::prober::{ProbeResult, ProbeResults, ProbeType};
use crate::runtime::labels::hash_container;

/// A running container to kill, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerToKill {
    pub id: String,
    pub name: String,
    /// The `Killing` event message.
    pub message: String,
    /// The failed probe (its `terminationGracePeriodSeconds` applies), if that is why.
    pub probe: Option<ProbeType>,
}

/// What a sync has to do, in order: kill (everything, or some containers), make a sandbox, start
/// containers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PodActions {
    /// Kill every container and the sandbox first (sandbox gone or changed, or pod done).
    pub kill_pod: bool,
    pub create_sandbox: bool,
    /// The ready sandbox to use when not creating one.
    pub sandbox_id: String,
    pub attempt: u32,
    /// Index into `spec.initContainers` of the one to start next.
    pub next_init_container: Option<usize>,
    /// Indices into `spec.containers`.
    pub containers_to_start: Vec<usize>,
    /// Running containers to kill.
    pub containers_to_kill: Vec<ContainerToKill>,
    /// An init container failed under restartPolicy Never: the pod has failed.
    pub init_failed: bool,
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always")
}

/// Upstream `ShouldContainerBeRestarted` for a container that is not running.
fn should_restart(policy: &str, latest: Option<&ContainerRuntimeStatus>) -> bool {
    let Some(c) = latest else { return true };
    match c.state {
        ContainerState::Running => false,
        ContainerState::Created | ContainerState::Unknown => true,
        ContainerState::Exited => match policy {
            "Never" => false,
            "OnFailure" => c.exit_code != 0,
            _ => true,
        },
    }
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// A regular init container is done once it exited 0; a sidecar once it runs and, if it has a
/// startup probe, that probe succeeded.
fn init_done(c: &Container, latest: Option<&ContainerRuntimeStatus>, probes: &ProbeResults) -> bool {
    match latest {
        Some(s) if is_sidecar(c) => {
            s.state == ContainerState::Running
                && (c.startup_probe.is_none() || probes.startup.get(&s.id) == Some(ProbeResult::Success))
        }
        Some(s) => s.state == ContainerState::Exited && s.exit_code == 0,
        None => false,
    }
}

/// Decides the next step of a pod. `probes` has the liveness/startup results of the running
/// container instances: failures are killed (and restarted per policy), and a sidecar with a
/// startup probe only lets the next init container start once that probe succeeded.
pub fn compute_pod_actions(pod: &Pod, status: &PodRuntimeStatus, probes: &ProbeResults) -> PodActions {
    let failed_probe = |id: &str| probes.failed_probe(id);
    let Some(spec) = pod.spec.as_ref() else {
        return PodActions { kill_pod: true, ..Default::default() };
    };
    let policy = restart_policy(pod);
    let mut a = PodActions::default();

    let ready_sandboxes = status.sandboxes.iter().filter(|s| s.ready).count();
    match status.sandboxes.first() {
        None => a.create_sandbox = true,
        Some(s) if !s.ready || ready_sandboxes > 1 => {
            a.create_sandbox = true;
            a.attempt = s.attempt + 1;
        }
        Some(s) if s.host_network != spec.host_network.unwrap_or(false) => {
            a.create_sandbox = true;
            a.attempt = s.attempt + 1;
        }
        Some(s) => a.sandbox_id = s.id.clone(),
    }

    if a.create_sandbox {
        a.kill_pod = !status.sandboxes.is_empty() || !status.containers.is_empty();
        // A pod that will not restart and already ran is done: no new sandbox for it.
        if policy != "Always" && policy != "OnFailure" && a.attempt != 0 && !status.containers.is_empty() {
            a.create_sandbox = false;
            return a;
        }
        if policy == "OnFailure" && a.attempt != 0 && all_app_succeeded(pod, status) {
            a.create_sandbox = false;
            return a;
        }
        let init = spec.init_containers.as_deref().unwrap_or_default();
        if !init.is_empty() {
            a.next_init_container = Some(0);
            return a;
        }
        a.containers_to_start = spec
            .containers
            .iter()
            .enumerate()
            .filter(|(_, c)| !(policy == "OnFailure" && succeeded(status.latest(&c.name))))
            .map(|(i, _)| i)
            .collect();
        return a;
    }

    // Init containers, one at a time in order, until a regular container was created.
    let init = spec.init_containers.as_deref().unwrap_or_default();
    let initialized = spec.containers.iter().any(|c| status.latest(&c.name).is_some());
    if !initialized {
        for (i, c) in init.iter().enumerate() {
            let latest = status.latest(&c.name);
            if let Some(kill) = latest.and_then(|s| sidecar_kill(c, s, &failed_probe)) {
                a.containers_to_kill.push(kill);
                a.next_init_container = Some(i);
                return a;
            }
            if init_done(c, latest, probes) {
                continue;
            }
            match latest.map(|s| s.state) {
                Some(ContainerState::Running) => return a, // still running or starting up: wait
                Some(ContainerState::Exited) if !is_sidecar(c) && policy == "Never" => {
                    a.init_failed = true;
                    a.kill_pod = true;
                    return a;
                }
                _ => {
                    a.next_init_container = Some(i);
                    return a;
                }
            }
        }
    }

    let mut keep = 0;
    for (i, c) in spec.containers.iter().enumerate() {
        let latest = status.latest(&c.name);
        match latest {
            Some(s) if s.state == ContainerState::Running => {
                // Upstream's order: a changed definition, then liveness, then startup failures.
                let (message, probe, restart) = if s.hash != hash_container(c) {
                    (format!("Container {} definition changed", c.name), None, true)
                } else if let Some(p) = failed_probe(&s.id) {
                    let what = if p == ProbeType::Startup { "startup" } else { "liveness" };
                    (format!("Container {} failed {what} probe", c.name), Some(p), policy != "Never")
                } else {
                    keep += 1;
                    continue;
                };
                let message = if restart { format!("{message}, will be restarted") } else { message };
                a.containers_to_kill.push(ContainerToKill { id: s.id.clone(), name: c.name.clone(), message, probe });
                if restart {
                    a.containers_to_start.push(i);
                }
            }
            _ if should_restart(policy, latest) => a.containers_to_start.push(i),
            _ => {}
        }
    }
    // Sidecars that died, failed a probe or changed are restarted whatever the pod's policy.
    for (i, c) in init.iter().enumerate().filter(|(_, c)| is_sidecar(c)) {
        let latest = status.latest(&c.name);
        let restart = match latest {
            Some(s) => match sidecar_kill(c, s, &failed_probe) {
                Some(kill) => {
                    a.containers_to_kill.push(kill);
                    true
                }
                None => s.state != ContainerState::Running,
            },
            None => true,
        };
        if restart && a.next_init_container.is_none() {
            a.next_init_container = Some(i);
        }
    }
    if keep == 0 && a.containers_to_start.is_empty() && a.next_init_container.is_none() {
        a.kill_pod = true;
    }
    a
}

/// A sidecar to kill before it is restarted (upstream `computeInitContainerActions`): one in an
/// unknown state; a running one that failed its startup probe, whose definition changed, or
/// that failed its liveness probe, in that order. Upstream's messages for init containers have
/// no "will be restarted".
fn sidecar_kill(
    c: &Container,
    s: &ContainerRuntimeStatus,
    failed_probe: &dyn Fn(&str) -> Option<ProbeType>,
) -> Option<ContainerToKill> {
    if !is_sidecar(c) {
        return None;
    }
    let kill = |message: String, probe: Option<ProbeType>| {
        Some(ContainerToKill { id: s.id.clone(), name: c.name.clone(), message, probe })
    };
    match s.state {
        ContainerState::Unknown => {
            kill("Init container is in \"unknown\" state, try killing it before restart".into(), None)
        }
        ContainerState::Running => {
            let failed = failed_probe(&s.id);
            if failed == Some(ProbeType::Startup) {
                kill(format!("Init container {} failed startup probe", c.name), failed)
            } else if s.hash != hash_container(c) {
                kill(format!("Init container {} definition changed", c.name), None)
            } else if failed == Some(ProbeType::Liveness) {
                kill(format!("Init container {} failed liveness probe", c.name), failed)
            } else {
                None
            }
        }
        ContainerState::Created | ContainerState::Exited => None,
    }
}

fn succeeded(latest: Option<&ContainerRuntimeStatus>) -> bool {
    latest.is_some_and(|s| s.state == ContainerState::Exited && s.exit_code == 0)
}

fn all_app_succeeded(pod: &Pod, status: &PodRuntimeStatus) -> bool {
    pod.spec.as_ref().is_some_and(|s| s.containers.iter().all(|c| succeeded(status.latest(&c.name))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::SandboxRuntimeStatus;
    use k8s_openapi::api::core::v1::PodSpec;

    fn ctr(name: &str) -> Container {
        Container { name: name.into(), image: Some("busybox".into()), ..Default::default() }
    }

    fn pod(policy: &str, init: &[&str], app: &[&str]) -> Pod {
        Pod {
            spec: Some(PodSpec {
                restart_policy: Some(policy.into()),
                init_containers: Some(init.iter().map(|n| ctr(n)).collect()),
                containers: app.iter().map(|n| ctr(n)).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sandbox(ready: bool) -> SandboxRuntimeStatus {
        SandboxRuntimeStatus { id: "sb".into(), ready, created_at: 1, attempt: 0, ips: vec![], host_network: false }
    }

    fn status(pod: &Pod, name: &str, state: ContainerState, exit: i32) -> ContainerRuntimeStatus {
        let spec = pod.spec.as_ref().expect("spec");
        let c = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| c.name == name)
            .expect("container");
        ContainerRuntimeStatus {
            id: format!("id-{name}"),
            name: name.into(),
            state,
            created_at: 1,
            started_at: 1,
            finished_at: 2,
            exit_code: exit,
            image: "busybox".into(),
            image_ref: "sha256:x".into(),
            restart_count: 0,
            hash: hash_container(c),
            reason: String::new(),
            message: String::new(),
        }
    }

    #[test]
    fn new_pod_creates_sandbox_and_starts_all() {
        let p = pod("Always", &[], &["a", "b"]);
        let a = compute_pod_actions(&p, &PodRuntimeStatus::default(), &ProbeResults::detached());
        assert!(a.create_sandbox && !a.kill_pod);
        assert_eq!(a.containers_to_start, vec![0, 1]);
    }

    #[test]
    fn new_pod_with_init_starts_first_init_only() {
        let p = pod("Always", &["i1", "i2"], &["a"]);
        let a = compute_pod_actions(&p, &PodRuntimeStatus::default(), &ProbeResults::detached());
        assert_eq!(a.next_init_container, Some(0));
        assert!(a.containers_to_start.is_empty());
    }

    #[test]
    fn init_containers_run_in_order_then_apps() {
        let p = pod("Always", &["i1", "i2"], &["a"]);
        let mut st = PodRuntimeStatus { sandboxes: vec![sandbox(true)], ..Default::default() };
        st.containers = vec![status(&p, "i1", ContainerState::Running, 0)];
        assert_eq!(
            compute_pod_actions(&p, &st, &ProbeResults::detached()),
            PodActions { sandbox_id: "sb".into(), ..Default::default() }
        );
        st.containers = vec![status(&p, "i1", ContainerState::Exited, 0)];
        assert_eq!(compute_pod_actions(&p, &st, &ProbeResults::detached()).next_init_container, Some(1));
        st.containers.push(status(&p, "i2", ContainerState::Exited, 0));
        assert_eq!(compute_pod_actions(&p, &st, &ProbeResults::detached()).containers_to_start, vec![0]);
    }

    #[test]
    fn failed_init_blocks_apps_and_is_retried_or_fails_pod() {
        let p = pod("Always", &["i1"], &["a"]);
        let mut st = PodRuntimeStatus { sandboxes: vec![sandbox(true)], ..Default::default() };
        st.containers = vec![status(&p, "i1", ContainerState::Exited, 1)];
        let a = compute_pod_actions(&p, &st, &ProbeResults::detached());
        assert_eq!(a.next_init_container, Some(0));
        assert!(a.containers_to_start.is_empty());
        let p = pod("Never", &["i1"], &["a"]);
        let a = compute_pod_actions(&p, &st, &ProbeResults::detached());
        assert!(a.init_failed && a.kill_pod);
    }

    #[test]
    fn restart_policy_decides_restarts() {
        for (policy, exit, restart) in [
            ("Always", 0, true),
            ("Always", 1, true),
            ("OnFailure", 1, true),
            ("OnFailure", 0, false),
            ("Never", 1, false),
        ] {
            let p = pod(policy, &[], &["a"]);
            let st = PodRuntimeStatus {
                sandboxes: vec![sandbox(true)],
                containers: vec![status(&p, "a", ContainerState::Exited, exit)],
                ..Default::default()
            };
            let a = compute_pod_actions(&p, &st, &ProbeResults::detached());
            assert_eq!(a.containers_to_start == vec![0], restart, "{policy} exit {exit}");
            assert_eq!(a.kill_pod, !restart, "{policy} exit {exit}: a finished pod's sandbox is killed");
        }
    }

    #[test]
    fn running_container_with_changed_spec_is_replaced() {
        let p = pod("Always", &[], &["a"]);
        let mut s = status(&p, "a", ContainerState::Running, 0);
        s.hash = "other".into();
        let st = PodRuntimeStatus { sandboxes: vec![sandbox(true)], containers: vec![s], ..Default::default() };
        let a = compute_pod_actions(&p, &st, &ProbeResults::detached());
        assert_eq!(a.containers_to_kill.len(), 1);
        assert_eq!(a.containers_to_start, vec![0]);
    }

    #[test]
    fn dead_sandbox_is_recreated_with_next_attempt_unless_pod_is_done() {
        let p = pod("Always", &[], &["a"]);
        let st = PodRuntimeStatus {
            sandboxes: vec![sandbox(false)],
            containers: vec![status(&p, "a", ContainerState::Exited, 0)],
            ..Default::default()
        };
        let a = compute_pod_actions(&p, &st, &ProbeResults::detached());
        assert!(a.kill_pod && a.create_sandbox);
        assert_eq!(a.attempt, 1);
        let p = pod("Never", &[], &["a"]);
        let a = compute_pod_actions(&p, &st, &ProbeResults::detached());
        assert!(!a.create_sandbox, "a Never pod that ran gets no new sandbox");
    }

    #[test]
    fn steady_pod_needs_nothing() {
        // With an init container that is gone (garbage-collected): it does not run again once
        // an app container was created.
        for init in [&[][..], &["i1"][..]] {
            let p = pod("Always", init, &["a"]);
            let st = PodRuntimeStatus {
                sandboxes: vec![sandbox(true)],
                containers: vec![status(&p, "a", ContainerState::Running, 0)],
                ..Default::default()
            };
            assert_eq!(
                compute_pod_actions(&p, &st, &ProbeResults::detached()),
                PodActions { sandbox_id: "sb".into(), ..Default::default() },
                "init {init:?}"
            );
        }
    }

    fn failed(probe: ProbeType, id: &str) -> ProbeResults {
        let r = ProbeResults::detached();
        r.of(probe).set(id, ProbeResult::Failure, "u");
        r
    }

    #[test]
    fn failed_liveness_or_startup_kills_and_restarts_per_policy() {
        for (probe, policy, message, restart) in [
            (ProbeType::Liveness, "Always", "Container a failed liveness probe, will be restarted", true),
            (ProbeType::Liveness, "OnFailure", "Container a failed liveness probe, will be restarted", true),
            (ProbeType::Startup, "Always", "Container a failed startup probe, will be restarted", true),
            (ProbeType::Liveness, "Never", "Container a failed liveness probe", false),
        ] {
            let p = pod(policy, &[], &["a"]);
            let st = PodRuntimeStatus {
                sandboxes: vec![sandbox(true)],
                containers: vec![status(&p, "a", ContainerState::Running, 0)],
                ..Default::default()
            };
            let a = compute_pod_actions(&p, &st, &failed(probe, "id-a"));
            assert_eq!(
                a.containers_to_kill,
                vec![ContainerToKill {
                    id: "id-a".into(),
                    name: "a".into(),
                    message: message.into(),
                    probe: Some(probe)
                }]
            );
            assert_eq!(a.containers_to_start == vec![0], restart, "{policy}");
            assert_eq!(a.kill_pod, !restart, "{policy}: nothing left to run");
            // A readiness failure kills nothing.
            let a = compute_pod_actions(&p, &st, &failed(ProbeType::Readiness, "id-a"));
            assert!(a.containers_to_kill.is_empty() && !a.kill_pod);
        }
    }

    #[test]
    fn sidecar_startup_probe_gates_the_next_init_container() {
        let mut p = pod("Always", &["proxy", "i2"], &["a"]);
        let spec = p.spec.as_mut().unwrap();
        let proxy = &mut spec.init_containers.as_mut().unwrap()[0];
        proxy.restart_policy = Some("Always".into());
        proxy.startup_probe = Some(Default::default());
        let st = PodRuntimeStatus {
            sandboxes: vec![sandbox(true)],
            containers: vec![status(&p, "proxy", ContainerState::Running, 0)],
            ..Default::default()
        };
        let probes = ProbeResults::detached();
        assert_eq!(compute_pod_actions(&p, &st, &probes).next_init_container, None, "no startup result yet");
        probes.startup.set("id-proxy", ProbeResult::Unknown, "u");
        assert_eq!(compute_pod_actions(&p, &st, &probes).next_init_container, None, "still starting");
        probes.startup.set("id-proxy", ProbeResult::Success, "u");
        assert_eq!(compute_pod_actions(&p, &st, &probes).next_init_container, Some(1), "started: next init");

        // A sidecar that fails its startup probe is restarted in place.
        let a = compute_pod_actions(&p, &st, &failed(ProbeType::Startup, "id-proxy"));
        assert_eq!(a.next_init_container, Some(0));
        assert_eq!(a.containers_to_kill[0].message, "Init container proxy failed startup probe");
    }

    #[test]
    fn sidecar_failing_liveness_after_init_is_restarted_apps_keep_running() {
        let mut p = pod("Always", &["proxy"], &["a"]);
        p.spec.as_mut().unwrap().init_containers.as_mut().unwrap()[0].restart_policy = Some("Always".into());
        let st = PodRuntimeStatus {
            sandboxes: vec![sandbox(true)],
            containers: vec![
                status(&p, "proxy", ContainerState::Running, 0),
                status(&p, "a", ContainerState::Running, 0),
            ],
            ..Default::default()
        };
        let a = compute_pod_actions(&p, &st, &failed(ProbeType::Liveness, "id-proxy"));
        assert_eq!(a.containers_to_kill.len(), 1);
        assert_eq!(a.containers_to_kill[0].message, "Init container proxy failed liveness probe");
        assert_eq!(a.next_init_container, Some(0));
        assert!(a.containers_to_start.is_empty() && !a.kill_pod);
    }

    #[test]
    fn a_changed_or_unknown_sidecar_is_killed_and_restarted() {
        let mut p = pod("Always", &["proxy"], &["a"]);
        p.spec.as_mut().unwrap().init_containers.as_mut().unwrap()[0].restart_policy = Some("Always".into());
        let mut proxy = status(&p, "proxy", ContainerState::Running, 0);
        proxy.hash = "other".into();
        let st = PodRuntimeStatus {
            sandboxes: vec![sandbox(true)],
            containers: vec![proxy.clone(), status(&p, "a", ContainerState::Running, 0)],
            ..Default::default()
        };
        let a = compute_pod_actions(&p, &st, &ProbeResults::detached());
        let kills: Vec<(&str, Option<ProbeType>)> =
            a.containers_to_kill.iter().map(|k| (k.message.as_str(), k.probe)).collect();
        assert_eq!(kills, vec![("Init container proxy definition changed", None)]);
        assert_eq!(a.next_init_container, Some(0));
        assert!(!a.kill_pod, "the app keeps running");

        proxy.state = ContainerState::Unknown;
        proxy.hash = hash_container(&p.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0]);
        let st = PodRuntimeStatus { containers: vec![proxy, status(&p, "a", ContainerState::Running, 0)], ..st };
        let a = compute_pod_actions(&p, &st, &ProbeResults::detached());
        assert_eq!(a.containers_to_kill.len(), 1);
        assert_eq!(
            a.containers_to_kill[0].message,
            "Init container is in \"unknown\" state, try killing it before restart"
        );
        assert_eq!(a.next_init_container, Some(0));
    }
}
