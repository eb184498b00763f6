//! One test per runtime state mix, over hand-built `PodRuntimeStatus` values.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, Pod, PodCondition, PodReadinessGate, PodSpec, PodStatus, Probe, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::container::{
    ContainerRuntimeStatus, ContainerState as Cri, PodRuntimeStatus, SandboxRuntimeStatus, SyncReasons, WaitingReason,
};

const T0: i64 = 1_700_000_000;

fn time(sec: i64) -> Time {
    Time(Timestamp::from_second(sec).unwrap())
}

fn nanos(sec: i64) -> i64 {
    sec * 1_000_000_000
}

fn container(name: &str) -> Container {
    Container { name: name.to_string(), image: Some(format!("img-{name}")), ..Default::default() }
}

fn sidecar(name: &str) -> Container {
    Container { restart_policy: Some("Always".to_string()), ..container(name) }
}

fn with_probe(mut c: Container) -> Container {
    c.readiness_probe = Some(Probe::default());
    c
}

fn pod(containers: Vec<Container>, init: Vec<Container>, policy: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".to_string()),
            namespace: Some("default".to_string()),
            uid: Some("uid1".to_string()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers,
            init_containers: (!init.is_empty()).then_some(init),
            restart_policy: Some(policy.to_string()),
            ..Default::default()
        }),
        status: None,
    }
}

fn sandbox(ready: bool) -> SandboxRuntimeStatus {
    SandboxRuntimeStatus {
        id: "sb1".to_string(),
        ready,
        created_at: nanos(T0),
        attempt: 0,
        ips: if ready { vec!["10.0.0.5".to_string()] } else { vec![] },
        host_network: false,
    }
}

fn instance(name: &str, id: &str, created: i64, state: Cri) -> ContainerRuntimeStatus {
    ContainerRuntimeStatus {
        id: id.to_string(),
        name: name.to_string(),
        state,
        created_at: nanos(created),
        started_at: if state == Cri::Created { 0 } else { nanos(created + 1) },
        finished_at: if state == Cri::Exited { nanos(created + 5) } else { 0 },
        exit_code: 0,
        image: format!("img-{name}"),
        image_ref: format!("sha256:{name}"),
        restart_count: 0,
        hash: "abc".to_string(),
        reason: String::new(),
        message: String::new(),
    }
}

fn running(name: &str, id: &str, created: i64) -> ContainerRuntimeStatus {
    instance(name, id, created, Cri::Running)
}

fn exited(name: &str, id: &str, created: i64, code: i32) -> ContainerRuntimeStatus {
    ContainerRuntimeStatus { exit_code: code, ..instance(name, id, created, Cri::Exited) }
}

fn runtime(sandboxes: Vec<SandboxRuntimeStatus>, containers: Vec<ContainerRuntimeStatus>) -> PodRuntimeStatus {
    let mut containers = containers;
    containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    PodRuntimeStatus {
        uid: "uid1".to_string(),
        name: "web".to_string(),
        namespace: "default".to_string(),
        sandboxes,
        containers,
    }
}

#[derive(Default, Clone)]
struct Opts {
    reasons: SyncReasons,
    old: Option<PodStatus>,
    readiness: HashMap<String, bool>,
    startup: HashMap<String, bool>,
    host_ip: Option<&'static str>,
    terminal: bool,
    now: Option<i64>,
    restart_cutoff: Option<std::time::Duration>,
}

fn reason(name: &str, reason: &str, message: &str) -> SyncReasons {
    let mut r = SyncReasons::new();
    r.insert(name.to_string(), WaitingReason { reason: reason.to_string(), message: message.to_string() });
    r
}

/// Whether a container of `pod` named `name` (regular or init) has the probe `which` looks for:
/// the tests' stand-in for "a worker runs".
fn has_probe(pod: &Pod, name: &str, which: impl Fn(&Container) -> bool) -> bool {
    pod.spec.as_ref().is_some_and(|s| {
        s.containers.iter().chain(s.init_containers.iter().flatten()).any(|c| c.name == name && which(c))
    })
}

fn run(pod: &Pod, rt: &PodRuntimeStatus, opts: &Opts) -> PodStatus {
    let readiness = |id: &str| opts.readiness.get(id).copied();
    let startup = |id: &str| opts.startup.get(id).copied();
    let readiness_worker = |name: &str| has_probe(pod, name, |c| c.readiness_probe.is_some());
    let startup_worker = |name: &str| has_probe(pod, name, |c| c.startup_probe.is_some());
    compute_pod_status(&StatusInput {
        pod,
        runtime: rt,
        reasons: &opts.reasons,
        old: opts.old.as_ref(),
        probes: ProbeView {
            readiness: &readiness,
            startup: &startup,
            readiness_worker: &readiness_worker,
            startup_worker: &startup_worker,
            restart_cutoff: opts.restart_cutoff,
        },
        host_ip: opts.host_ip.or(Some("192.168.1.10")),
        pod_is_terminal: opts.terminal,
        now: time(opts.now.unwrap_or(T0 + 100)),
    })
}

fn cs<'a>(s: &'a PodStatus, name: &str) -> &'a ContainerStatus {
    s.container_statuses
        .iter()
        .flatten()
        .chain(s.init_container_statuses.iter().flatten())
        .find(|c| c.name == name)
        .unwrap()
}

fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
    s.conditions.iter().flatten().find(|c| c.type_ == t).unwrap()
}

fn phase(s: &PodStatus) -> &str {
    s.phase.as_deref().unwrap()
}

fn waiting_reason(c: &ContainerStatus) -> Option<&str> {
    c.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
}

fn terminated(c: &ContainerStatus) -> &k8s_openapi::api::core::v1::ContainerStateTerminated {
    c.state.as_ref().unwrap().terminated.as_ref().unwrap()
}

fn last_terminated(c: &ContainerStatus) -> &k8s_openapi::api::core::v1::ContainerStateTerminated {
    c.last_state.as_ref().unwrap().terminated.as_ref().unwrap()
}

fn cond_summary(s: &PodStatus) -> Vec<(String, String, Option<String>)> {
    s.conditions.iter().flatten().map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone())).collect()
}

#[test]
fn never_created_pod_is_pending_container_creating() {
    let p = pod(vec![container("app")], vec![], "Always");
    let s = run(&p, &runtime(vec![], vec![]), &Opts::default());
    assert_eq!(phase(&s), "Pending");
    let app = cs(&s, "app");
    assert_eq!(waiting_reason(app), Some("ContainerCreating"));
    assert_eq!(app.image, "img-app");
    assert_eq!(app.image_id, "");
    assert_eq!(app.container_id, None);
    assert_eq!(app.started, Some(false));
    assert!(!app.ready);
    assert_eq!(app.restart_count, 0);
    assert_eq!(
        cond_summary(&s),
        vec![
            ("PodReadyToStartContainers".into(), "False".into(), None),
            ("Initialized".into(), "True".into(), None),
            ("Ready".into(), "False".into(), Some("ContainersNotReady".into())),
            ("ContainersReady".into(), "False".into(), Some("ContainersNotReady".into())),
            ("PodScheduled".into(), "True".into(), None),
        ]
    );
    assert_eq!(cond(&s, "Ready").message.as_deref(), Some("containers with unready status: [app]"));
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    assert_eq!(s.start_time, Some(time(T0 + 100)));
    assert_eq!(s.host_ip.as_deref(), Some("192.168.1.10"));
    assert_eq!(s.pod_ip, None);
    assert_eq!(s.init_container_statuses, None);
    for c in s.conditions.iter().flatten() {
        assert_eq!(c.last_transition_time, Some(time(T0 + 100)));
    }
}

#[test]
fn running_container_without_probe_is_ready() {
    let p = pod(vec![container("app")], vec![], "Always");
    let rt = runtime(vec![sandbox(true)], vec![running("app", "c1", T0 + 1)]);
    let s = run(&p, &rt, &Opts::default());
    assert_eq!(phase(&s), "Running");
    let app = cs(&s, "app");
    assert_eq!(app.container_id.as_deref(), Some("containerd://c1"));
    assert_eq!(app.image_id, "sha256:app");
    assert_eq!(app.started, Some(true));
    assert!(app.ready);
    let run_state = app.state.as_ref().unwrap().running.as_ref().unwrap();
    assert_eq!(run_state.started_at, Some(time(T0 + 2)));
    for t in ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"] {
        assert_eq!(cond(&s, t).status, "True", "{t}");
    }
    assert_eq!(s.pod_ip.as_deref(), Some("10.0.0.5"));
    assert_eq!(s.pod_ips.as_ref().unwrap().len(), 1);
}

#[test]
fn readiness_probe_decides_readiness() {
    let p = pod(vec![with_probe(container("app"))], vec![], "Always");
    let rt = runtime(vec![sandbox(true)], vec![running("app", "c1", T0 + 1)]);

    let s = run(&p, &rt, &Opts::default());
    assert_eq!(phase(&s), "Running");
    assert!(!cs(&s, "app").ready, "no probe result yet");
    assert_eq!(cond(&s, "ContainersReady").status, "False");

    let mut opts = Opts::default();
    opts.readiness.insert("c1".into(), true);
    let s = run(&p, &rt, &opts);
    assert!(cs(&s, "app").ready);
    assert_eq!(cond(&s, "Ready").status, "True");

    opts.readiness.insert("c1".into(), false);
    let s = run(&p, &rt, &opts);
    assert!(!cs(&s, "app").ready);
}

#[test]
fn startup_probe_gates_started_and_ready() {
    let mut c = container("app");
    c.startup_probe = Some(Probe::default());
    let p = pod(vec![c], vec![], "Always");
    let rt = runtime(vec![sandbox(true)], vec![running("app", "c1", T0 + 1)]);

    let s = run(&p, &rt, &Opts::default());
    assert_eq!((cs(&s, "app").started, cs(&s, "app").ready), (Some(false), false), "no startup result yet");
    assert_eq!(cond(&s, "Ready").status, "False");

    let mut opts = Opts::default();
    opts.startup.insert("c1".into(), false);
    let s = run(&p, &rt, &opts);
    assert_eq!((cs(&s, "app").started, cs(&s, "app").ready), (Some(false), false), "startup failed");

    opts.startup.insert("c1".into(), true);
    let s = run(&p, &rt, &opts);
    assert_eq!((cs(&s, "app").started, cs(&s, "app").ready), (Some(true), true), "started; no readiness probe");
    assert_eq!(cond(&s, "Ready").status, "True");

    // A sidecar with a startup probe is started only with a success too.
    let mut sc = sidecar("proxy");
    sc.startup_probe = Some(Probe::default());
    let p = pod(vec![container("app")], vec![sc], "Always");
    let rt = runtime(vec![sandbox(true)], vec![running("proxy", "s1", T0 + 1)]);
    let s = run(&p, &rt, &Opts::default());
    let proxy = &s.init_container_statuses.as_ref().unwrap()[0];
    assert_eq!((proxy.started, proxy.ready), (Some(false), false));
    let mut opts = Opts::default();
    opts.startup.insert("s1".into(), true);
    let s = run(&p, &rt, &opts);
    let proxy = &s.init_container_statuses.as_ref().unwrap()[0];
    assert_eq!((proxy.started, proxy.ready), (Some(true), true));
}

#[test]
fn without_a_readiness_worker_a_running_container_is_ready() {
    // As upstream's getWorker check: no worker, ready — the worker's results leave with it.
    let p = pod(vec![container("app")], vec![], "Always");
    let rt = runtime(vec![sandbox(true)], vec![running("app", "c1", T0 + 1)]);
    let s = run(&p, &rt, &Opts::default());
    assert!(cs(&s, "app").ready);
}

#[test]
fn a_container_adopted_after_a_kubelet_restart_keeps_its_readiness_until_probed() {
    let mut c = with_probe(container("app"));
    c.startup_probe = Some(Probe::default());
    let mut p = pod(vec![c], vec![], "Always");
    // The container started at T0 + 2; the kubelet at T0 + 100 (cutoff T0 + 90).
    let rt = runtime(vec![sandbox(true)], vec![running("app", "c1", T0 + 1)]);
    let ready_condition = |status: &str| PodStatus {
        conditions: Some(vec![PodCondition { type_: "Ready".into(), status: status.into(), ..Default::default() }]),
        ..Default::default()
    };
    let old = PodStatus {
        container_statuses: Some(vec![ContainerStatus {
            name: "app".into(),
            container_id: Some("containerd://c1".into()),
            started: Some(true),
            ready: true,
            ..Default::default()
        }]),
        ..ready_condition("True")
    };
    p.status = Some(ready_condition("True"));
    let adopted = Opts {
        old: Some(old.clone()),
        restart_cutoff: Some(std::time::Duration::from_secs(u64::try_from(T0 + 90).unwrap())),
        ..Default::default()
    };
    let s = run(&p, &rt, &adopted);
    assert_eq!((cs(&s, "app").started, cs(&s, "app").ready), (Some(true), true), "kept across the restart");

    // Once probed, the result decides.
    let mut probed = Opts { old: Some(old.clone()), ..adopted.clone() };
    probed.readiness.insert("c1".into(), false);
    assert!(!cs(&run(&p, &rt, &probed), "app").ready);

    // A pod that was not Ready does not become ready by the restart.
    p.status = Some(ready_condition("False"));
    assert!(!cs(&run(&p, &rt, &adopted), "app").ready);

    // A container started after the cutoff is new: not started, not ready until probed, even
    // if an earlier status said otherwise for another instance.
    p.status = Some(ready_condition("True"));
    let fresh = Opts {
        restart_cutoff: Some(std::time::Duration::from_secs(u64::try_from(T0 - 10).unwrap())),
        old: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "app".into(),
                container_id: Some("containerd://c0".into()),
                started: Some(true),
                ready: true,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        (cs(&run(&p, &rt, &fresh), "app").started, cs(&run(&p, &rt, &fresh), "app").ready),
        (Some(false), false)
    );
}

#[test]
fn never_exit_zero_is_succeeded() {
    let p = pod(vec![container("app")], vec![], "Never");
    let rt = runtime(vec![sandbox(true)], vec![exited("app", "c1", T0 + 1, 0)]);
    let s = run(&p, &rt, &Opts::default());
    assert_eq!(phase(&s), "Succeeded");
    let t = terminated(cs(&s, "app"));
    assert_eq!(t.exit_code, 0);
    assert_eq!(t.reason.as_deref(), Some("Completed"));
    assert_eq!(t.container_id.as_deref(), Some("containerd://c1"));
    assert_eq!(t.started_at, Some(time(T0 + 2)));
    assert_eq!(t.finished_at, Some(time(T0 + 6)));
    assert_eq!(cs(&s, "app").started, Some(false));
    assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
    assert_eq!(cond(&s, "ContainersReady").reason.as_deref(), Some("PodCompleted"));
    let init = cond(&s, "Initialized");
    assert_eq!((init.status.as_str(), init.reason.as_deref()), ("True", Some("PodCompleted")));
}

#[test]
fn never_exit_nonzero_is_failed() {
    let p = pod(vec![container("app"), container("b")], vec![], "Never");
    let mut failed = exited("app", "c1", T0 + 1, 2);
    failed.message = "boom".into();
    let rt = runtime(vec![sandbox(true)], vec![failed, exited("b", "c2", T0 + 1, 0)]);
    let s = run(&p, &rt, &Opts::default());
    assert_eq!(phase(&s), "Failed");
    let t = terminated(cs(&s, "app"));
    assert_eq!(t.reason.as_deref(), Some("Error"));
    assert_eq!(t.message.as_deref(), Some("boom"));
    assert_eq!(cond(&s, "ContainersReady").reason.as_deref(), Some("PodFailed"));
    assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodFailed"));
}

#[test]
fn cri_reason_wins_over_exit_code() {
    let p = pod(vec![container("app")], vec![], "Never");
    let mut oom = exited("app", "c1", T0 + 1, 137);
    oom.reason = "OOMKilled".into();
    let s = run(&p, &runtime(vec![sandbox(true)], vec![oom]), &Opts::default());
    assert_eq!(terminated(cs(&s, "app")).reason.as_deref(), Some("OOMKilled"));
}

#[test]
fn crash_loop_back_off_waits_with_last_state() {
    let p = pod(vec![container("app")], vec![], "Always");
    let mut newest = exited("app", "c2", T0 + 20, 1);
    newest.restart_count = 1;
    let rt = runtime(vec![sandbox(true)], vec![newest, exited("app", "c1", T0 + 1, 1)]);
    let msg = "back-off 10s restarting failed container=app pod=web_default(uid1)";
    let opts = Opts { reasons: reason("app", "CrashLoopBackOff", msg), ..Default::default() };
    let s = run(&p, &rt, &opts);
    assert_eq!(phase(&s), "Running");
    let app = cs(&s, "app");
    let w = app.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(w.message.as_deref(), Some(msg));
    // The newest instance's termination moved to lastState.
    let last = last_terminated(app);
    assert_eq!(last.container_id.as_deref(), Some("containerd://c2"));
    assert_eq!(last.exit_code, 1);
    assert_eq!(app.restart_count, 1);
    assert_eq!(app.container_id.as_deref(), Some("containerd://c2"));
    assert!(!app.ready);
    assert_eq!(app.started, Some(false));
}

#[test]
fn always_exited_without_sync_reason_keeps_terminated_state() {
    let p = pod(vec![container("app")], vec![], "Always");
    let rt = runtime(vec![sandbox(true)], vec![exited("app", "c1", T0 + 1, 1)]);
    let s = run(&p, &rt, &Opts::default());
    assert_eq!(phase(&s), "Running");
    assert_eq!(terminated(cs(&s, "app")).exit_code, 1);
}

#[test]
fn on_failure_exit_zero_succeeds_exit_nonzero_restarts() {
    let p = pod(vec![container("app")], vec![], "OnFailure");
    let rt = runtime(vec![sandbox(true)], vec![exited("app", "c1", T0 + 1, 0)]);
    assert_eq!(phase(&run(&p, &rt, &Opts::default())), "Succeeded");
    let rt = runtime(vec![sandbox(true)], vec![exited("app", "c1", T0 + 1, 3)]);
    assert_eq!(phase(&run(&p, &rt, &Opts::default())), "Running");
}

#[test]
fn init_container_running_keeps_pod_pending() {
    let p = pod(vec![container("app")], vec![container("init1"), container("init2")], "Always");
    let rt = runtime(vec![sandbox(true)], vec![running("init1", "i1", T0 + 1)]);
    let s = run(&p, &rt, &Opts::default());
    assert_eq!(phase(&s), "Pending");
    assert_eq!(waiting_reason(cs(&s, "init2")), Some("PodInitializing"));
    assert_eq!(waiting_reason(cs(&s, "app")), Some("PodInitializing"));
    assert!(!cs(&s, "init1").ready);
    assert_eq!(cs(&s, "init1").started, Some(true));
    let init = cond(&s, "Initialized");
    assert_eq!(init.status, "False");
    assert_eq!(init.reason.as_deref(), Some("ContainersNotInitialized"));
    assert_eq!(init.message.as_deref(), Some("containers with incomplete status: [init1 init2]"));
    let names: Vec<&str> = s.init_container_statuses.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["init1", "init2"]);
}

#[test]
fn init_container_failure_with_never_fails_pod() {
    let p = pod(vec![container("app")], vec![container("init")], "Never");
    let rt = runtime(vec![sandbox(true)], vec![exited("init", "i1", T0 + 1, 1)]);
    let s = run(&p, &rt, &Opts::default());
    assert_eq!(phase(&s), "Failed");
    assert_eq!(terminated(cs(&s, "init")).reason.as_deref(), Some("Error"));
    assert_eq!(waiting_reason(cs(&s, "app")), Some("PodInitializing"));
}

#[test]
fn init_container_failure_with_always_stays_pending() {
    let p = pod(vec![container("app")], vec![container("init")], "Always");
    let rt = runtime(vec![sandbox(true)], vec![exited("init", "i1", T0 + 1, 1)]);
    let opts = Opts {
        reasons: reason(
            "init",
            "CrashLoopBackOff",
            "back-off 10s restarting failed container=init pod=web_default(uid1)",
        ),
        ..Default::default()
    };
    let s = run(&p, &rt, &opts);
    assert_eq!(phase(&s), "Pending");
    let init = cs(&s, "init");
    assert_eq!(waiting_reason(init), Some("CrashLoopBackOff"));
    assert_eq!(last_terminated(init).exit_code, 1);
}

#[test]
fn init_done_and_app_running_is_running() {
    let p = pod(vec![container("app")], vec![container("init")], "Always");
    let rt = runtime(vec![sandbox(true)], vec![exited("init", "i1", T0 + 1, 0), running("app", "c1", T0 + 10)]);
    let opts = Opts {
        // A stale reason for a completed init container is not applied.
        reasons: reason("init", "CrashLoopBackOff", "x"),
        ..Default::default()
    };
    let s = run(&p, &rt, &opts);
    assert_eq!(phase(&s), "Running");
    let init = cs(&s, "init");
    assert_eq!(terminated(init).reason.as_deref(), Some("Completed"));
    assert!(init.ready);
    assert_eq!(cond(&s, "Initialized").status, "True");
    assert_eq!(cond(&s, "Ready").status, "True");
}

#[test]
fn sidecar_started_and_app_running() {
    let p = pod(vec![container("app")], vec![sidecar("proxy")], "Always");
    let rt = runtime(vec![sandbox(true)], vec![running("proxy", "s1", T0 + 1), running("app", "c1", T0 + 10)]);
    let s = run(&p, &rt, &Opts::default());
    assert_eq!(phase(&s), "Running");
    let proxy = cs(&s, "proxy");
    assert!(proxy.ready);
    assert_eq!(proxy.started, Some(true));
    assert_eq!(cond(&s, "ContainersReady").status, "True");

    // An unready sidecar makes the pod unready.
    let p = pod(vec![container("app")], vec![with_probe(sidecar("proxy"))], "Always");
    let s = run(&p, &rt, &Opts::default());
    assert_eq!(cond(&s, "ContainersReady").message.as_deref(), Some("containers with unready status: [proxy]"));
}

#[test]
fn sidecar_running_before_app_created_is_pending() {
    let p = pod(vec![container("app")], vec![sidecar("proxy")], "Always");
    let rt = runtime(vec![sandbox(true)], vec![running("proxy", "s1", T0 + 1)]);
    let s = run(&p, &rt, &Opts::default());
    assert_eq!(phase(&s), "Pending");
    assert_eq!(waiting_reason(cs(&s, "app")), Some("PodInitializing"));
    assert_eq!(cond(&s, "Initialized").status, "True");
}

#[test]
fn sidecar_restarting_after_init_keeps_running() {
    let p = pod(vec![container("app")], vec![sidecar("proxy")], "Never");
    let rt = runtime(vec![sandbox(true)], vec![exited("proxy", "s1", T0 + 1, 1), running("app", "c1", T0 + 10)]);
    let opts = Opts { reasons: reason("proxy", "CrashLoopBackOff", "back-off"), ..Default::default() };
    let s = run(&p, &rt, &opts);
    assert_eq!(phase(&s), "Running");
    // Sidecars restart whatever the pod's policy.
    assert_eq!(waiting_reason(cs(&s, "proxy")), Some("CrashLoopBackOff"));
    assert_eq!(cond(&s, "Initialized").status, "True");
    assert_eq!(cond(&s, "ContainersReady").status, "False");
}

#[test]
fn last_state_comes_from_previous_instance() {
    let p = pod(vec![container("app")], vec![], "Always");
    let mut newest = running("app", "c3", T0 + 30);
    newest.restart_count = 2;
    let mut previous = exited("app", "c2", T0 + 20, 137);
    previous.reason = "OOMKilled".into();
    let rt = runtime(vec![sandbox(true)], vec![newest, previous, exited("app", "c1", T0 + 1, 1)]);
    let s = run(&p, &rt, &Opts::default());
    let app = cs(&s, "app");
    assert_eq!(app.restart_count, 2);
    assert_eq!(app.container_id.as_deref(), Some("containerd://c3"));
    let last = last_terminated(app);
    assert_eq!(last.reason.as_deref(), Some("OOMKilled"));
    assert_eq!(last.container_id.as_deref(), Some("containerd://c2"));
    assert!(app.ready);
}

#[test]
fn image_pull_back_off_for_uncreated_container() {
    let p = pod(vec![container("app")], vec![], "Always");
    let opts =
        Opts { reasons: reason("app", "ImagePullBackOff", "Back-off pulling image \"img-app\""), ..Default::default() };
    let s = run(&p, &runtime(vec![sandbox(true)], vec![]), &opts);
    assert_eq!(phase(&s), "Pending");
    let w = cs(&s, "app").state.clone().unwrap().waiting.unwrap();
    assert_eq!(w.reason.as_deref(), Some("ImagePullBackOff"));
    assert_eq!(w.message.as_deref(), Some("Back-off pulling image \"img-app\""));
}

#[test]
fn deleted_pod_does_not_report_restart_reasons() {
    let mut p = pod(vec![container("app")], vec![], "Always");
    p.metadata.deletion_timestamp = Some(time(T0));
    let rt = runtime(vec![sandbox(true)], vec![exited("app", "c1", T0 + 1, 1)]);
    let opts = Opts { reasons: reason("app", "CrashLoopBackOff", "x"), ..Default::default() };
    let s = run(&p, &rt, &opts);
    assert!(cs(&s, "app").state.as_ref().unwrap().terminated.is_some());
}

#[test]
fn last_transition_time_kept_when_status_unchanged() {
    let p = pod(vec![container("app")], vec![], "Always");
    let pending = run(&p, &runtime(vec![], vec![]), &Opts::default());
    let rt = runtime(vec![sandbox(true)], vec![running("app", "c1", T0 + 150)]);
    let opts = Opts { old: Some(pending.clone()), now: Some(T0 + 200), ..Default::default() };
    let s = run(&p, &rt, &opts);
    // Unchanged: Initialized, PodScheduled. Changed: the rest.
    assert_eq!(cond(&s, "Initialized").last_transition_time, Some(time(T0 + 100)));
    assert_eq!(cond(&s, "PodScheduled").last_transition_time, Some(time(T0 + 100)));
    assert_eq!(cond(&s, "Ready").last_transition_time, Some(time(T0 + 200)));
    assert_eq!(cond(&s, "ContainersReady").last_transition_time, Some(time(T0 + 200)));
    assert_eq!(cond(&s, "PodReadyToStartContainers").last_transition_time, Some(time(T0 + 200)));
    // startTime is kept.
    assert_eq!(s.start_time, Some(time(T0 + 100)));
    // Sub-second `now` is normalized to seconds.
    let opts = Opts { old: Some(pending), ..Default::default() };
    let readiness = |_: &str| None;
    let no_worker = |_: &str| false;
    let s2 = compute_pod_status(&StatusInput {
        pod: &p,
        runtime: &rt,
        reasons: &opts.reasons,
        old: opts.old.as_ref(),
        probes: ProbeView {
            readiness: &readiness,
            startup: &readiness,
            readiness_worker: &no_worker,
            startup_worker: &no_worker,
            restart_cutoff: None,
        },
        host_ip: None,
        pod_is_terminal: false,
        now: Time(Timestamp::from_nanosecond(i128::from(nanos(T0 + 300)) + 5).unwrap()),
    });
    assert_eq!(cond(&s2, "Ready").last_transition_time, Some(time(T0 + 300)));
}

#[test]
fn terminal_phase_in_old_status_sticks() {
    let p = pod(vec![container("app")], vec![], "Always");
    let old = PodStatus { phase: Some("Succeeded".into()), reason: Some("Done".into()), ..Default::default() };
    let rt = runtime(vec![sandbox(true)], vec![running("app", "c1", T0 + 1)]);
    let opts = Opts { old: Some(old), ..Default::default() };
    let s = run(&p, &rt, &opts);
    assert_eq!(phase(&s), "Succeeded");
    assert_eq!(s.reason.as_deref(), Some("Done"));
    assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
}

#[test]
fn terminal_phase_in_api_status_sticks() {
    let mut p = pod(vec![container("app")], vec![], "OnFailure");
    p.status = Some(PodStatus { phase: Some("Failed".into()), ..Default::default() });
    let rt = runtime(vec![sandbox(true)], vec![running("app", "c1", T0 + 1)]);
    let s = run(&p, &rt, &Opts::default());
    assert_eq!(phase(&s), "Failed");
}

#[test]
fn illegal_terminated_to_running_transition_keeps_old_status() {
    let p = pod(vec![container("app")], vec![], "Never");
    let done = run(&p, &runtime(vec![sandbox(true)], vec![exited("app", "c1", T0 + 1, 0)]), &Opts::default());
    assert_eq!(phase(&done), "Succeeded");
    let rt = runtime(vec![sandbox(true)], vec![running("app", "c2", T0 + 50)]);
    let opts = Opts { old: Some(done.clone()), now: Some(T0 + 500), ..Default::default() };
    assert_eq!(run(&p, &rt, &opts), done);
}

#[test]
fn readiness_gates_and_foreign_conditions() {
    let mut p = pod(vec![container("app")], vec![], "Always");
    if let Some(spec) = p.spec.as_mut() {
        spec.readiness_gates = Some(vec![PodReadinessGate { condition_type: "example.com/lb".into() }]);
    }
    let rt = runtime(vec![sandbox(true)], vec![running("app", "c1", T0 + 1)]);
    let s = run(&p, &rt, &Opts::default());
    let ready = cond(&s, "Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("ReadinessGatesNotReady"));
    assert_eq!(
        ready.message.as_deref(),
        Some("corresponding condition of pod readiness gate \"example.com/lb\" does not exist.")
    );
    assert_eq!(cond(&s, "ContainersReady").status, "True");

    let gate = PodCondition {
        type_: "example.com/lb".into(),
        status: "False".into(),
        last_transition_time: Some(time(T0)),
        ..Default::default()
    };
    p.status = Some(PodStatus { conditions: Some(vec![gate.clone()]), ..Default::default() });
    let s = run(&p, &rt, &Opts::default());
    assert_eq!(
        cond(&s, "Ready").message.as_deref(),
        Some("the status of pod readiness gate \"example.com/lb\" is not \"True\", but False")
    );
    // Foreign conditions come first, untouched.
    assert_eq!(s.conditions.as_ref().unwrap().first(), Some(&gate));

    p.status = Some(PodStatus {
        conditions: Some(vec![PodCondition { status: "True".into(), ..gate }]),
        ..Default::default()
    });
    let s = run(&p, &rt, &Opts::default());
    assert_eq!(cond(&s, "Ready").status, "True");
}

#[test]
fn host_network_pod_uses_host_ip() {
    let mut p = pod(vec![container("app")], vec![], "Always");
    if let Some(spec) = p.spec.as_mut() {
        spec.host_network = Some(true);
    }
    let mut sb = sandbox(true);
    sb.ips.clear();
    sb.host_network = true;
    let rt = runtime(vec![sb], vec![running("app", "c1", T0 + 1)]);
    let s = run(&p, &rt, &Opts::default());
    assert_eq!(s.pod_ip.as_deref(), Some("192.168.1.10"));
    assert_eq!(s.pod_ips.as_ref().unwrap().first().unwrap().ip, "192.168.1.10");
    assert_eq!(s.host_ips.as_ref().unwrap().len(), 1);
    assert_eq!(cond(&s, "PodReadyToStartContainers").status, "True");
}

#[test]
fn sandbox_not_ready_or_duplicated_needs_new_sandbox() {
    let p = pod(vec![container("app")], vec![], "Always");
    let rt = runtime(vec![sandbox(false)], vec![]);
    let s = run(&p, &rt, &Opts::default());
    assert_eq!(cond(&s, "PodReadyToStartContainers").status, "False");
    assert_eq!(s.pod_ip, None);

    let mut older = sandbox(true);
    older.id = "sb0".into();
    let rt = runtime(vec![sandbox(true), older], vec![]);
    let s = run(&p, &rt, &Opts::default());
    assert_eq!(cond(&s, "PodReadyToStartContainers").status, "False");

    let mut no_ip = sandbox(true);
    no_ip.ips.clear();
    let s = run(&p, &runtime(vec![no_ip], vec![]), &Opts::default());
    assert_eq!(cond(&s, "PodReadyToStartContainers").status, "False");
}

#[test]
fn dual_stack_ips_follow_node_family() {
    let p = pod(vec![container("app")], vec![], "Always");
    let mut sb = sandbox(true);
    sb.ips = vec!["fd00::0005".into(), "10.0.0.5".into(), "10.0.0.6".into(), "bogus".into()];
    let rt = runtime(vec![sb], vec![]);
    let s = run(&p, &rt, &Opts::default());
    let ips: Vec<&str> = s.pod_ips.iter().flatten().map(|i| i.ip.as_str()).collect();
    assert_eq!(ips, ["10.0.0.5", "fd00::5"]);
    let opts = Opts { host_ip: Some("fd00::1"), ..Default::default() };
    let s = run(&p, &rt, &opts);
    assert_eq!(s.pod_ip.as_deref(), Some("fd00::5"));
}

#[test]
fn qos_classes() {
    fn res(req: &[(&str, &str)], lim: &[(&str, &str)]) -> Option<ResourceRequirements> {
        let map = |l: &[(&str, &str)]| {
            (!l.is_empty())
                .then(|| l.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect::<BTreeMap<_, _>>())
        };
        Some(ResourceRequirements { requests: map(req), limits: map(lim), ..Default::default() })
    }
    let with = |r: Option<ResourceRequirements>| {
        let mut c = container("app");
        c.resources = r;
        pod(vec![c], vec![], "Always")
    };
    let empty = runtime(vec![], vec![]);
    let qos = |p: &Pod| run(p, &empty, &Opts::default()).qos_class.unwrap();

    assert_eq!(qos(&with(None)), "BestEffort");
    assert_eq!(qos(&with(res(&[("ephemeral-storage", "1Gi")], &[]))), "BestEffort");
    assert_eq!(qos(&with(res(&[("cpu", "100m")], &[]))), "Burstable");
    assert_eq!(
        qos(&with(res(&[("cpu", "1"), ("memory", "1Gi")], &[("cpu", "1000m"), ("memory", "1073741824")]))),
        "Guaranteed"
    );
    assert_eq!(qos(&with(res(&[("cpu", "500m"), ("memory", "1Gi")], &[("cpu", "1"), ("memory", "1Gi")]))), "Burstable");
    assert_eq!(qos(&with(res(&[], &[("cpu", "1")]))), "Burstable");

    // An init container without resources makes a guaranteed pod burstable.
    let mut p = with(res(&[("cpu", "1"), ("memory", "1Gi")], &[("cpu", "1"), ("memory", "1Gi")]));
    if let Some(spec) = p.spec.as_mut() {
        spec.init_containers = Some(vec![container("init")]);
    }
    assert_eq!(qos(&p), "Burstable");

    // A recorded class is immutable.
    p.status = Some(PodStatus { qos_class: Some("Guaranteed".into()), ..Default::default() });
    assert_eq!(qos(&p), "Guaranteed");
}

#[test]
fn unknown_state_after_running_is_terminated_unknown() {
    let p = pod(vec![container("app")], vec![], "Always");
    let before = run(&p, &runtime(vec![sandbox(true)], vec![running("app", "c1", T0 + 1)]), &Opts::default());
    let rt = runtime(vec![sandbox(true)], vec![instance("app", "c1", T0 + 1, Cri::Unknown)]);
    let opts = Opts { old: Some(before), ..Default::default() };
    let s = run(&p, &rt, &opts);
    let app = cs(&s, "app");
    let t = terminated(app);
    assert_eq!(t.reason.as_deref(), Some("ContainerStatusUnknown"));
    assert_eq!(t.exit_code, 137);
    assert_eq!(app.restart_count, 1);
    assert_eq!(phase(&s), "Running");

    // Without a running past it is just waiting.
    let s = run(&p, &rt, &Opts::default());
    assert_eq!(waiting_reason(cs(&s, "app")), None);
    assert_eq!(phase(&s), "Pending");
}

#[test]
fn vanished_running_container_gets_unknown_last_state() {
    let p = pod(vec![container("app")], vec![], "Always");
    let before = run(&p, &runtime(vec![sandbox(true)], vec![running("app", "c1", T0 + 1)]), &Opts::default());
    let opts = Opts { old: Some(before), ..Default::default() };
    let s = run(&p, &runtime(vec![sandbox(true)], vec![]), &opts);
    let app = cs(&s, "app");
    assert_eq!(waiting_reason(app), Some("ContainerCreating"));
    let last = last_terminated(app);
    assert_eq!(last.reason.as_deref(), Some("ContainerStatusUnknown"));
    assert_eq!(last.exit_code, 137);
    assert_eq!(app.restart_count, 1);
    // Stopped, not waiting: the pod does not fall back to Pending.
    assert_eq!(phase(&s), "Running");
}

#[test]
fn terminal_pod_worker_reports_final_phase() {
    let p = pod(vec![container("app"), container("b")], vec![], "Always");
    let rt = runtime(vec![sandbox(false)], vec![exited("app", "c1", T0 + 1, 0), exited("b", "c2", T0 + 1, 0)]);
    let opts = Opts { terminal: true, ..Default::default() };
    assert_eq!(phase(&run(&p, &rt, &opts)), "Succeeded");
    assert_eq!(phase(&run(&p, &rt, &Opts::default())), "Running");

    let rt = runtime(vec![sandbox(false)], vec![exited("app", "c1", T0 + 1, 0), exited("b", "c2", T0 + 1, 137)]);
    assert_eq!(phase(&run(&p, &rt, &opts)), "Failed");

    // Static pods are not given a terminal phase.
    let mut st = p.clone();
    st.metadata.annotations = Some(BTreeMap::from([("kubernetes.io/config.source".to_string(), "file".to_string())]));
    assert_eq!(phase(&run(&st, &rt, &opts)), "Running");
}

#[test]
fn regular_statuses_sorted_by_name_init_in_spec_order() {
    let p = pod(vec![container("web"), container("api")], vec![container("z-init"), container("a-init")], "Always");
    let s = run(&p, &runtime(vec![], vec![]), &Opts::default());
    let names = |l: &Option<Vec<ContainerStatus>>| l.iter().flatten().map(|c| c.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&s.container_statuses), ["api", "web"]);
    assert_eq!(names(&s.init_container_statuses), ["z-init", "a-init"]);
}

#[test]
fn created_container_is_waiting_without_reason() {
    let p = pod(vec![container("app")], vec![], "Always");
    let rt = runtime(vec![sandbox(true)], vec![instance("app", "c1", T0 + 1, Cri::Created)]);
    let s = run(&p, &rt, &Opts::default());
    let app = cs(&s, "app");
    assert!(app.state.as_ref().unwrap().waiting.is_some());
    assert_eq!(waiting_reason(app), None);
    assert_eq!(app.container_id.as_deref(), Some("containerd://c1"));
    assert_eq!(phase(&s), "Pending");

    // A start failure recorded by the sync is shown.
    let opts = Opts { reasons: reason("app", "RunContainerError", "failed to start"), ..Default::default() };
    let s = run(&p, &rt, &opts);
    assert_eq!(waiting_reason(cs(&s, "app")), Some("RunContainerError"));
}

#[test]
fn init_container_gone_after_app_created_counts_as_completed() {
    let p = pod(vec![container("app")], vec![container("init")], "Always");
    let rt = runtime(vec![sandbox(true)], vec![running("app", "c1", T0 + 10)]);
    let s = run(&p, &rt, &Opts::default());
    let init = cs(&s, "init");
    let t = terminated(init);
    assert_eq!((t.reason.as_deref(), t.exit_code), (Some("Completed"), 0));
    assert!(init.ready);
    assert_eq!(phase(&s), "Running");
}

#[test]
fn observed_generation_and_message_truncation() {
    let mut p = pod(vec![container("app")], vec![], "Never");
    p.metadata.generation = Some(3);
    let mut failed = exited("app", "c1", T0 + 1, 1);
    failed.message = "é".repeat(10_000);
    let s = run(&p, &runtime(vec![sandbox(true)], vec![failed]), &Opts::default());
    assert_eq!(s.observed_generation, Some(3));
    assert!(s.conditions.iter().flatten().all(|c| c.observed_generation == Some(3)));
    let msg = terminated(cs(&s, "app")).message.clone().unwrap();
    assert!(msg.len() <= 12 * 1024 && msg.len() >= 12 * 1024 - 1);
}

#[test]
fn phase_reason_preserved_while_phase_unchanged() {
    let p = pod(vec![container("app")], vec![], "Always");
    let rt = runtime(vec![sandbox(true)], vec![running("app", "c1", T0 + 1)]);
    let old = PodStatus { phase: Some("Running".into()), message: Some("hello".into()), ..Default::default() };
    let opts = Opts { old: Some(old), ..Default::default() };
    assert_eq!(run(&p, &rt, &opts).message.as_deref(), Some("hello"));
    assert_eq!(run(&p, &rt, &Opts::default()).message, None);
}

#[test]
fn disruption_target_copied_from_old() {
    let p = pod(vec![container("app")], vec![], "Always");
    let dt = PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("TerminationByKubelet".into()),
        last_transition_time: Some(time(T0)),
        ..Default::default()
    };
    let opts = Opts {
        old: Some(PodStatus { conditions: Some(vec![dt.clone()]), ..Default::default() }),
        ..Default::default()
    };
    let s = run(&p, &runtime(vec![], vec![]), &opts);
    assert_eq!(s.conditions.as_ref().unwrap().first(), Some(&dt));
}

#[test]
fn status_write_keeps_conditions_set_by_others_after_the_spec_was_read() {
    let c = |t: &str, st: &str| PodCondition { type_: t.into(), status: st.into(), ..Default::default() };
    // The kubelet computed its status from a pod read before another writer added a gate.
    let new = PodStatus { conditions: Some(vec![c("Ready", "True"), c("PodScheduled", "True")]), ..Default::default() };
    let api = PodStatus {
        conditions: Some(vec![c("PodScheduled", "True"), c("Ready", "False"), c("example.com/Gate", "True")]),
        ..Default::default()
    };
    let merged = crate::status::merge_with_api_status(&new, &api);
    let types: Vec<(String, String)> = merged.conditions.unwrap().into_iter().map(|c| (c.type_, c.status)).collect();
    assert_eq!(
        types,
        [
            ("Ready".into(), "True".into()),
            ("PodScheduled".into(), "True".into()),
            ("example.com/Gate".into(), "True".into())
        ]
    );
}
