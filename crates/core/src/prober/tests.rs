//! The probe workers over paused time with scripted handler outcomes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, ExecAction, Pod,
    PodSpec, PodStatus, Probe,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::clock::Clock;
use crate::events::{EventType, MemoryRecorder};

/// A wall clock that moves with tokio's (paused) time.
struct TokioClock {
    base: Duration,
    start: Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.base + self.start.elapsed()
    }
}

const BASE: u64 = 1_700_000_000;

/// What a scripted handler answers.
type Answer = Result<(Outcome, String), String>;

/// Outcomes by probe (the probe's exec command names it), and the calls made.
#[derive(Default)]
struct Script {
    outcomes: Mutex<HashMap<String, Answer>>,
    calls: Mutex<Vec<(String, String)>>,
}

impl Script {
    fn set(&self, probe: &str, outcome: Result<(Outcome, &str), &str>) {
        let o = outcome.map(|(o, s)| (o, s.to_string())).map_err(str::to_string);
        self.outcomes.lock().unwrap().insert(probe.to_string(), o);
    }
    fn calls(&self, probe: &str) -> usize {
        self.calls.lock().unwrap().iter().filter(|(p, _)| p == probe).count()
    }
}

#[async_trait]
impl Handlers for Script {
    async fn run(
        &self,
        probe: &Probe,
        _pod: &Pod,
        _pod_ip: Option<&str>,
        _c: &Container,
        container_id: &str,
    ) -> Result<(Outcome, String), String> {
        let name = probe.exec.as_ref().and_then(|e| e.command.as_ref()).and_then(|c| c.first()).cloned().unwrap();
        self.calls.lock().unwrap().push((name.clone(), container_id.to_string()));
        self.outcomes.lock().unwrap().get(&name).cloned().unwrap_or(Ok((Outcome::Success, String::new())))
    }
}

fn probe(name: &str, period: i32, failure: i32, success: i32) -> Probe {
    Probe {
        exec: Some(ExecAction { command: Some(vec![name.to_string()]) }),
        period_seconds: Some(period),
        failure_threshold: Some(failure),
        success_threshold: Some(success),
        timeout_seconds: Some(1),
        ..Default::default()
    }
}

fn pod(c: Container, policy: &str) -> Arc<Pod> {
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some("u1".into()),
            ..Default::default()
        },
        spec: Some(PodSpec { containers: vec![c], restart_policy: Some(policy.into()), ..Default::default() }),
        status: None,
    })
}

fn app() -> Container {
    Container { name: "app".into(), ..Default::default() }
}

fn time(secs: u64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(i64::try_from(secs).unwrap()).unwrap())
}

fn running(id: &str, started_at: u64, started: bool) -> PodStatus {
    PodStatus {
        phase: Some("Running".into()),
        pod_ip: Some("10.0.0.5".into()),
        container_statuses: Some(vec![ContainerStatus {
            name: "app".into(),
            container_id: Some(format!("containerd://{id}")),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning { started_at: Some(time(started_at)) }),
                ..Default::default()
            }),
            started: Some(started),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

struct Harness {
    manager: ProbeManager,
    statuses: StatusManager,
    script: Arc<Script>,
    events: MemoryRecorder,
    updates: mpsc::UnboundedReceiver<Update>,
}

/// A prober that started long enough ago that workers do not wait a random jitter first.
async fn harness() -> Harness {
    let (results, updates) = ProbeResults::new();
    let statuses = StatusManager::default();
    let script = Arc::new(Script::default());
    let events = MemoryRecorder::default();
    let clock = Arc::new(TokioClock { base: Duration::from_secs(BASE), start: Instant::now() });
    let manager = ProbeManager::new(results, statuses.clone(), script.clone(), Arc::new(events.clone()), clock);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Harness { manager, statuses, script, events, updates }
}

fn now_secs() -> u64 {
    BASE + 3600
}

fn drain(rx: &mut mpsc::UnboundedReceiver<Update>) -> Vec<(ProbeType, String, ProbeResult)> {
    let mut out = Vec::new();
    while let Ok(u) = rx.try_recv() {
        out.push((u.probe, u.container_id, u.result));
    }
    out
}

/// Lets the workers run for `secs` of (paused) time.
async fn run_for(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn liveness_fails_after_the_threshold_then_holds_until_a_new_container() {
    let mut h = harness().await;
    let mut c = app();
    c.liveness_probe = Some(probe("live", 10, 3, 1));
    let p = pod(c, "Always");
    h.statuses.set(p.clone(), running("c1", now_secs() - 5, true));
    h.script.set("live", Ok((Outcome::Failure, "boom")));
    h.manager.add_pod(&p);

    run_for(1).await; // first probe at once
    assert_eq!(h.script.calls("live"), 1);
    assert_eq!(h.manager.results().liveness.get("c1"), Some(ProbeResult::Success), "below the threshold");
    run_for(10).await;
    assert_eq!(h.manager.results().liveness.get("c1"), Some(ProbeResult::Success));
    run_for(10).await;
    assert_eq!(h.script.calls("live"), 3);
    assert_eq!(h.manager.results().liveness.get("c1"), Some(ProbeResult::Failure), "third failure in a row");
    assert_eq!(h.manager.results().failed_probe("c1"), Some(ProbeType::Liveness));
    assert_eq!(
        drain(&mut h.updates),
        vec![
            (ProbeType::Liveness, "c1".into(), ProbeResult::Success),
            (ProbeType::Liveness, "c1".into(), ProbeResult::Failure)
        ]
    );
    let unhealthy: Vec<_> = h.events.events().into_iter().filter(|e| e.reason == "Unhealthy").collect();
    assert_eq!(unhealthy.len(), 3);
    assert_eq!(unhealthy[0].message, "Liveness probe failed: boom");
    assert_eq!(unhealthy[0].kind, EventType::Warning);

    // On hold: no more probes of the failed instance.
    run_for(60).await;
    assert_eq!(h.script.calls("live"), 3);

    // The restarted instance is probed again from the initial value.
    h.script.set("live", Ok((Outcome::Success, "")));
    h.statuses.set(p.clone(), running("c2", now_secs() + 70, true));
    run_for(10).await;
    assert_eq!(h.script.calls("live"), 4);
    assert_eq!(h.manager.results().liveness.get("c2"), Some(ProbeResult::Success));
    assert_eq!(h.manager.results().liveness.get("c1"), None, "the old instance's result is dropped");

    let counters = h.manager.counters().snapshot();
    let count =
        |result: &str| counters.iter().find(|(k, _)| k.probe_type == "Liveness" && k.result == result).map(|(_, n)| *n);
    assert_eq!((count("failed"), count("successful")), (Some(3), Some(1)));
    assert!(counters.iter().all(|(k, _)| k.pod == "web" && k.namespace == "ns" && k.container == "app"));
}

#[tokio::test(start_paused = true)]
async fn readiness_starts_failed_and_follows_both_thresholds() {
    let mut h = harness().await;
    let mut c = app();
    c.readiness_probe = Some(probe("ready", 5, 2, 2));
    let p = pod(c, "Always");
    h.statuses.set(p.clone(), running("c1", now_secs(), true));
    h.manager.add_pod(&p);

    run_for(1).await;
    assert_eq!(h.manager.results().readiness.get("c1"), Some(ProbeResult::Failure), "not ready before 2 successes");
    run_for(5).await;
    assert_eq!(h.manager.results().readiness.get("c1"), Some(ProbeResult::Success));

    h.script.set("ready", Ok((Outcome::Failure, "HTTP probe failed with statuscode: 503")));
    run_for(5).await;
    assert_eq!(h.manager.results().readiness.get("c1"), Some(ProbeResult::Success), "one failure is below 2");
    run_for(5).await;
    assert_eq!(h.manager.results().readiness.get("c1"), Some(ProbeResult::Failure));
    // Readiness keeps probing after a failure (no hold) and comes back.
    h.script.set("ready", Ok((Outcome::Success, "")));
    run_for(10).await;
    assert_eq!(h.manager.results().readiness.get("c1"), Some(ProbeResult::Success));
    let seen: Vec<ProbeResult> = drain(&mut h.updates).into_iter().map(|(_, _, r)| r).collect();
    assert_eq!(seen, vec![ProbeResult::Failure, ProbeResult::Success, ProbeResult::Failure, ProbeResult::Success]);
    assert_eq!(h.manager.results().failed_probe("c1"), None, "readiness never kills");
}

#[tokio::test(start_paused = true)]
async fn startup_probe_holds_liveness_and_readiness_back() {
    let h = harness().await;
    let mut c = app();
    c.startup_probe = Some(probe("startup", 1, 30, 1));
    c.liveness_probe = Some(probe("live", 1, 1, 1));
    c.readiness_probe = Some(probe("ready", 1, 1, 1));
    let p = pod(c, "Always");
    h.statuses.set(p.clone(), running("c1", now_secs(), false));
    h.script.set("startup", Ok((Outcome::Failure, "not yet")));
    h.manager.add_pod(&p);
    assert_eq!(h.manager.worker_count(), 3);

    run_for(5).await;
    assert!(h.script.calls("startup") >= 5);
    assert_eq!((h.script.calls("live"), h.script.calls("ready")), (0, 0), "gated by the startup probe");
    assert_eq!(h.manager.results().startup.get("c1"), Some(ProbeResult::Unknown), "below 30 failures");

    h.script.set("startup", Ok((Outcome::Success, "")));
    run_for(1).await;
    assert_eq!(h.manager.results().startup.get("c1"), Some(ProbeResult::Success));
    // The kubelet recomputes `started` from the result.
    h.statuses.set(p.clone(), running("c1", now_secs(), true));
    let startup_calls = h.script.calls("startup");
    run_for(3).await;
    assert_eq!(h.script.calls("startup"), startup_calls, "startup probing ends once started");
    assert!(h.script.calls("live") >= 2 && h.script.calls("ready") >= 2);
}

#[tokio::test(start_paused = true)]
async fn startup_failure_holds_like_liveness() {
    let h = harness().await;
    let mut c = app();
    c.startup_probe = Some(probe("startup", 2, 3, 1));
    let p = pod(c, "Always");
    h.statuses.set(p.clone(), running("c1", now_secs(), false));
    h.script.set("startup", Ok((Outcome::Failure, "")));
    h.manager.add_pod(&p);
    run_for(5).await;
    assert_eq!(h.manager.results().failed_probe("c1"), Some(ProbeType::Startup));
    run_for(20).await;
    assert_eq!(h.script.calls("startup"), 3, "on hold after the failure");
}

#[tokio::test(start_paused = true)]
async fn initial_delay_is_counted_from_the_container_start() {
    let h = harness().await;
    let mut c = app();
    let mut pr = probe("live", 1, 1, 1);
    pr.initial_delay_seconds = Some(15);
    c.liveness_probe = Some(pr);
    let p = pod(c, "Always");
    h.statuses.set(p.clone(), running("c1", now_secs() - 5, true));
    h.manager.add_pod(&p);
    run_for(9).await;
    assert_eq!(h.script.calls("live"), 0, "started 14 s ago");
    run_for(2).await;
    assert!(h.script.calls("live") >= 1, "15 s reached");
}

#[tokio::test(start_paused = true)]
async fn errors_are_retried_then_thrown_away() {
    let h = harness().await;
    let mut c = app();
    c.liveness_probe = Some(probe("live", 10, 1, 1));
    let p = pod(c, "Always");
    h.statuses.set(p.clone(), running("c1", now_secs(), true));
    h.script.set("live", Err("strconv.Atoi: parsing \"http\": invalid syntax"));
    h.manager.add_pod(&p);
    run_for(1).await;
    assert_eq!(h.script.calls("live"), 3, "three tries in one period");
    assert_eq!(h.manager.results().liveness.get("c1"), Some(ProbeResult::Success), "an error is not a failure");
    let events = h.events.events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].message,
        "Liveness probe errored and resulted in unknown state: strconv.Atoi: parsing \"http\": invalid syntax"
    );
}

#[tokio::test(start_paused = true)]
async fn redirect_warnings_count_as_success_with_an_event() {
    let h = harness().await;
    let mut c = app();
    c.readiness_probe = Some(probe("ready", 10, 1, 1));
    let p = pod(c, "Always");
    h.statuses.set(p.clone(), running("c1", now_secs(), true));
    h.script.set("ready", Ok((Outcome::Warning, "Probe terminated redirects, Response body: ")));
    h.manager.add_pod(&p);
    run_for(1).await;
    assert_eq!(h.manager.results().readiness.get("c1"), Some(ProbeResult::Success));
    let e = &h.events.events()[0];
    assert_eq!(
        (e.reason, e.message.as_str()),
        ("ProbeWarning", "Readiness probe warning: Probe terminated redirects, Response body: ")
    );
}

#[tokio::test(start_paused = true)]
async fn stopping_liveness_and_startup_keeps_readiness_and_clears_results() {
    let h = harness().await;
    let mut c = app();
    c.liveness_probe = Some(probe("live", 10, 1, 1));
    c.readiness_probe = Some(probe("ready", 10, 1, 1));
    let p = pod(c, "Always");
    h.statuses.set(p.clone(), running("c1", now_secs(), true));
    h.manager.add_pod(&p);
    run_for(1).await;
    assert_eq!(h.manager.results().liveness.get("c1"), Some(ProbeResult::Success));
    h.manager.stop_liveness_and_startup("u1");
    run_for(1).await;
    assert!(!h.manager.has_worker("u1", "app", ProbeType::Liveness));
    assert!(h.manager.has_worker("u1", "app", ProbeType::Readiness));
    assert_eq!(h.manager.results().liveness.get("c1"), None);
    assert!(h.manager.counters().snapshot().iter().all(|(k, _)| k.probe_type == "Readiness"));

    // Adding the pod again (kubelet restart of the worker) brings liveness back.
    h.manager.add_pod(&p);
    assert!(h.manager.has_worker("u1", "app", ProbeType::Liveness));
    h.manager.remove_pod("u1");
    run_for(1).await;
    assert_eq!(h.manager.worker_count(), 0);
    assert_eq!(h.manager.results().readiness.get("c1"), None);
}

#[tokio::test(start_paused = true)]
async fn workers_end_with_the_pod() {
    let h = harness().await;
    let mut c = app();
    c.readiness_probe = Some(probe("ready", 10, 1, 1));
    let p = pod(c.clone(), "Always");
    h.statuses.set(p.clone(), running("c1", now_secs(), true));
    h.manager.add_pod(&p);
    run_for(1).await;
    let mut done = running("c1", now_secs(), true);
    done.phase = Some("Succeeded".into());
    h.statuses.set(p.clone(), done);
    run_for(10).await;
    assert_eq!(h.manager.worker_count(), 0, "a terminal pod ends its workers");

    // A container that exited under restartPolicy Never is failed and its worker ends.
    let p = pod(c, "Never");
    let mut exited = running("c9", now_secs(), false);
    exited.container_statuses.as_mut().unwrap()[0].state = Some(ContainerState {
        terminated: Some(ContainerStateTerminated { exit_code: 1, ..Default::default() }),
        ..Default::default()
    });
    h.statuses.set(p.clone(), exited);
    h.manager.add_pod(&p);
    run_for(1).await;
    assert_eq!(h.manager.results().readiness.get("c9"), None, "cleared as the worker ended");
    assert_eq!(h.manager.worker_count(), 0);
    assert_eq!(h.script.calls("ready"), 1, "only the running instance was probed");
}

#[tokio::test(start_paused = true)]
async fn workers_started_with_the_kubelet_wait_a_random_part_of_their_period() {
    let (results, _updates) = ProbeResults::new();
    let statuses = StatusManager::default();
    let script = Arc::new(Script::default());
    let clock = Arc::new(TokioClock { base: Duration::from_secs(BASE), start: Instant::now() });
    let manager =
        ProbeManager::new(results, statuses.clone(), script.clone(), Arc::new(MemoryRecorder::default()), clock);
    let mut c = app();
    c.liveness_probe = Some(probe("live", 100, 1, 1));
    let p = pod(c, "Always");
    statuses.set(p.clone(), running("c1", BASE, true));
    let start = Instant::now();
    manager.add_pod(&p);
    while script.calls("live") == 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(start.elapsed() <= Duration::from_secs(100), "within one period");
}

#[tokio::test(start_paused = true)]
async fn a_container_adopted_after_a_kubelet_restart_gets_no_initial_result() {
    let h = harness().await;
    let mut c = app();
    c.readiness_probe = Some(probe("ready", 10, 3, 1));
    let p = pod(c, "Always");
    // Running since before the kubelet started (the prober's start, BASE, less 10 s).
    h.statuses.set(p.clone(), running("c1", BASE - 60, true));
    h.script.set("ready", Ok((Outcome::Failure, "")));
    h.manager.add_pod(&p);
    run_for(1).await;
    assert_eq!(h.script.calls("ready"), 1);
    assert_eq!(h.manager.results().readiness.get("c1"), None, "no initial Failure: its readiness stands");
    run_for(20).await;
    assert_eq!(h.manager.results().readiness.get("c1"), Some(ProbeResult::Failure), "until the threshold");
    // A container started while the kubelet runs is new: it starts not ready.
    h.statuses.set(p.clone(), running("c2", now_secs() + 25, true));
    h.script.set("ready", Ok((Outcome::Failure, "")));
    run_for(10).await;
    assert_eq!(h.manager.results().readiness.get("c2"), Some(ProbeResult::Failure));
}

#[tokio::test(start_paused = true)]
async fn a_startup_result_past_its_threshold_holds_the_worker() {
    let h = harness().await;
    let mut c = app();
    c.startup_probe = Some(probe("startup", 1, 3, 1));
    let p = pod(c, "Always");
    // The status still says not started (the kubelet has not recomputed it yet).
    h.statuses.set(p.clone(), running("c1", now_secs(), false));
    h.manager.add_pod(&p);
    run_for(5).await;
    assert_eq!(h.manager.results().startup.get("c1"), Some(ProbeResult::Success));
    assert_eq!(h.script.calls("startup"), 1, "no extra startup probes after the success");
}

#[tokio::test(start_paused = true)]
async fn a_sidecar_worker_outlives_its_container_under_restart_policy_never() {
    let h = harness().await;
    let mut sc = Container { name: "proxy".into(), restart_policy: Some("Always".into()), ..Default::default() };
    sc.readiness_probe = Some(probe("ready", 1, 1, 1));
    let mut p = (*pod(app(), "Never")).clone();
    if let Some(spec) = p.spec.as_mut() {
        spec.init_containers = Some(vec![sc]);
    }
    let p = Arc::new(p);
    let exited = PodStatus {
        phase: Some("Running".into()),
        init_container_statuses: Some(vec![ContainerStatus {
            name: "proxy".into(),
            container_id: Some("containerd://s1".into()),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated { exit_code: 1, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    h.statuses.set(p.clone(), exited);
    h.manager.add_pod(&p);
    run_for(5).await;
    assert!(h.manager.has_worker("u1", "proxy", ProbeType::Readiness), "the sidecar will be restarted");
    assert_eq!(h.manager.results().readiness.get("s1"), Some(ProbeResult::Failure));
}

#[tokio::test(start_paused = true)]
async fn a_manual_run_probes_a_failing_container_and_restarts_the_period() {
    let h = harness().await;
    let mut c = app();
    c.readiness_probe = Some(probe("ready", 10, 1, 1));
    let p = pod(c, "Always");
    h.statuses.set(p.clone(), running("c1", now_secs(), true));
    h.script.set("ready", Ok((Outcome::Failure, "")));
    h.manager.add_pod(&p);
    run_for(1).await;
    assert_eq!(h.manager.results().readiness.get("c1"), Some(ProbeResult::Failure));
    run_for(4).await; // t = 5
    h.manager.trigger_pending_readiness("u1", &[("app".into(), "c1".into())]);
    run_for(1).await;
    assert_eq!(h.script.calls("ready"), 2, "a failed container is probed again at once");
    run_for(7).await; // t = 13: the old schedule would have probed at 10
    assert_eq!(h.script.calls("ready"), 2, "the period restarted at the manual run");
    run_for(3).await; // t = 16
    assert_eq!(h.script.calls("ready"), 3);
}
