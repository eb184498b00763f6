//! The runtime manager over `FakeRuntime`: call sequences, crash-loop and image-pull backoff.

use std::sync::Arc;
use std::time::Duration;

use cri::{FakeRuntime, RuntimeService};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::clock::FakeClock;
use crate::container::ContainerState;
use crate::events::MemoryRecorder;
use crate::pod_dirs::PodDirs;
use crate::runtime::dns::DnsSettings;
use crate::runtime::manager::{CRASH_LOOP_BACK_OFF, RuntimeManager};
use crate::runtime::sandbox::RuntimeSettings;
use crate::volume::VolumeManager;

struct Harness {
    fake: Arc<FakeRuntime>,
    clock: Arc<FakeClock>,
    events: MemoryRecorder,
    manager: RuntimeManager,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    harness_with(crate::prober::ProbeResults::detached())
}

/// A harness whose manager reads liveness/startup failures from `probes`.
fn harness_with(probes: crate::prober::ProbeResults) -> Harness {
    let dir = tempfile::tempdir().expect("tmp");
    let fake = Arc::new(FakeRuntime::new());
    let clock = Arc::new(FakeClock::new(Duration::from_nanos(u64::try_from(fake.now_ns()).unwrap_or(0))));
    let events = MemoryRecorder::default();
    let dirs = PodDirs::new(dir.path().join("root"));
    let volumes = Arc::new(VolumeManager::new(dirs.clone(), Arc::new(sys::FakeMounter::new())));
    let settings = RuntimeSettings {
        legacy_logs_dir: None,
        node_name: "n1".into(),
        host_ips: vec!["192.0.2.10".into()],
        pod_logs_dir: dir.path().join("logs"),
        dns: DnsSettings::default(),
        resources: Default::default(),
    };
    let manager = RuntimeManager::new(
        fake.clone(),
        fake.clone(),
        volumes,
        dirs,
        settings,
        Arc::new(events.clone()),
        clock.clone(),
    )
    .with_probe_results(probes);
    Harness { fake, clock, events, manager, _dir: dir }
}

fn pod(restart_policy: &str, image: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web-n1".into()),
            namespace: Some("default".into()),
            uid: Some("0123456789abcdef".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some(restart_policy.into()),
            containers: vec![Container {
                name: "app".into(),
                image: Some(image.into()),
                image_pull_policy: Some("IfNotPresent".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ops(calls: &[String]) -> Vec<&str> {
    calls
        .iter()
        .filter_map(|c| c.split_whitespace().next())
        .filter(|op| !op.starts_with("List") && !op.ends_with("Status"))
        .collect()
}

#[tokio::test]
async fn new_pod_runs_sandbox_pull_create_start() {
    let h = harness();
    let p = pod("Always", "busybox:1.36");
    let rt = h.manager.get_pod_status("0123456789abcdef").await.expect("status");
    h.fake.clear_calls();
    let r = h.manager.sync_pod(&p, &rt).await;
    assert!(r.error.is_none() && r.reasons.is_empty(), "{r:?}");
    assert_eq!(ops(&h.fake.calls()), vec!["RunPodSandbox", "PullImage", "CreateContainer", "StartContainer"]);
    let rt = h.manager.get_pod_status("0123456789abcdef").await.expect("status");
    assert_eq!(rt.containers.len(), 1);
    assert_eq!(rt.containers[0].state, ContainerState::Running);
    assert_eq!(rt.containers[0].restart_count, 0);
    // A second sync of a steady pod does nothing.
    h.fake.clear_calls();
    let r = h.manager.sync_pod(&p, &rt).await;
    assert!(r.reasons.is_empty());
    assert!(ops(&h.fake.calls()).is_empty(), "{:?}", h.fake.calls());
    let reasons = h.events.reasons();
    for want in ["Pulling", "Pulled", "Created", "Started"] {
        assert!(reasons.contains(&want), "{want} in {reasons:?}");
    }
    // Upstream's message: Go durations truncated to milliseconds, and the image's size.
    let pulled = h.events.events().into_iter().find(|e| e.reason == "Pulled").expect("a Pulled event");
    let size = 1_000_000 + "docker.io/library/busybox:1.36".len();
    let rest = pulled.message.strip_prefix("Successfully pulled image \"busybox:1.36\" in ").expect(&pulled.message);
    let (took, rest) = rest.split_once(' ').expect(&pulled.message);
    assert_eq!(rest, format!("({took} including waiting). Image size: {size} bytes."));
    // A Go duration ("0s", "12ms", "1.234s") in whole milliseconds.
    let d = crate::config::parse_duration(took).expect(took);
    assert_eq!(crate::config::format_duration(d), took);
    assert_eq!(d.subsec_nanos() % 1_000_000, 0, "truncated to milliseconds: {took}");
}

#[tokio::test]
async fn crashed_container_restarts_then_backs_off() {
    let h = harness();
    let p = pod("Always", "busybox:1.36");
    let uid = "0123456789abcdef";
    let rt = h.manager.get_pod_status(uid).await.expect("status");
    h.manager.sync_pod(&p, &rt).await;
    let first = h.manager.get_pod_status(uid).await.expect("status").containers[0].id.clone();
    h.fake.exit_container(&first, 1);
    h.clock.advance(Duration::from_secs(1));

    // First death: restarted at once, with restart count 1.
    let rt = h.manager.get_pod_status(uid).await.expect("status");
    let r = h.manager.sync_pod(&p, &rt).await;
    assert!(r.reasons.is_empty(), "{r:?}");
    let rt = h.manager.get_pod_status(uid).await.expect("status");
    assert_eq!(rt.latest("app").map(|c| c.restart_count), Some(1));

    // Second death: 10 s of CrashLoopBackOff, then a restart.
    let second = rt.latest("app").map(|c| c.id.clone()).unwrap_or_default();
    h.fake.exit_container(&second, 1);
    let rt = h.manager.get_pod_status(uid).await.expect("status");
    let r = h.manager.sync_pod(&p, &rt).await;
    let w = r.reasons.get("app").expect("waiting reason");
    assert_eq!(w.reason, CRASH_LOOP_BACK_OFF);
    assert!(w.message.starts_with("back-off 10s restarting failed container=app pod=web-n1_default("), "{}", w.message);
    assert!(r.requeue_after.is_some_and(|d| d <= Duration::from_secs(10)), "{r:?}");
    h.clock.advance(Duration::from_secs(11));
    let r = h.manager.sync_pod(&p, &rt).await;
    assert!(r.reasons.is_empty(), "restarted after the backoff: {r:?}");
    let rt = h.manager.get_pod_status(uid).await.expect("status");
    assert_eq!(rt.latest("app").map(|c| c.restart_count), Some(2));
    assert_eq!(rt.containers.len(), 3, "dead instances stay for the garbage collector");
}

#[tokio::test]
async fn failing_pull_is_err_image_pull_then_back_off() {
    let h = harness();
    h.fake.fail_pull("127.0.0.1:5000/missing:1", "not found");
    let p = pod("Always", "127.0.0.1:5000/missing:1");
    let rt = h.manager.get_pod_status("0123456789abcdef").await.expect("status");
    let r = h.manager.sync_pod(&p, &rt).await;
    assert_eq!(r.reasons.get("app").map(|w| w.reason.as_str()), Some("ErrImagePull"));
    let rt = h.manager.get_pod_status("0123456789abcdef").await.expect("status");
    h.fake.clear_calls();
    let r = h.manager.sync_pod(&p, &rt).await;
    let w = r.reasons.get("app").expect("reason");
    assert_eq!(w.reason, "ImagePullBackOff");
    assert_eq!(w.message, "Back-off pulling image \"127.0.0.1:5000/missing:1\"");
    assert!(!h.fake.calls().iter().any(|c| c.starts_with("PullImage")), "no pull while backing off");
    h.clock.advance(Duration::from_secs(11));
    h.fake.clear_calls();
    h.manager.sync_pod(&p, &rt).await;
    assert!(h.fake.calls().iter().any(|c| c.starts_with("PullImage")), "pull retried after the backoff");
}

#[tokio::test]
async fn runtime_down_is_a_pod_error_not_a_panic() {
    let h = harness();
    h.fake.set_down(true);
    let err = h.manager.get_pod_status("u").await.expect_err("down");
    assert!(err.to_string().contains("container runtime not reachable"), "{err}");
    let p = pod("Always", "busybox:1.36");
    let r = h.manager.sync_pod(&p, &Default::default()).await;
    assert!(r.error.as_deref().is_some_and(|e| e.contains("not reachable")), "{r:?}");
    assert!(h.events.reasons().contains(&"FailedCreatePodSandBox"));
}

#[tokio::test]
async fn kill_and_remove_leave_nothing() {
    let h = harness();
    let p = pod("Always", "busybox:1.36");
    let uid = "0123456789abcdef";
    let rt = h.manager.get_pod_status(uid).await.expect("status");
    h.manager.sync_pod(&p, &rt).await;
    let rt = h.manager.get_pod_status(uid).await.expect("status");
    h.manager.kill_pod(Some(&p), &rt, Some(0)).await;
    let rt = h.manager.get_pod_status(uid).await.expect("status");
    assert!(rt.containers.iter().all(|c| c.state == ContainerState::Exited));
    assert!(rt.sandboxes.iter().all(|s| !s.ready));
    h.manager.remove_pod(&rt).await.expect("remove");
    assert!(h.fake.list_pod_sandbox(None).await.expect("list").is_empty());
    assert!(h.fake.list_containers(None).await.expect("list").is_empty());
}

/// `pod` with `lifecycle` (JSON) on its container and the given termination grace period.
fn pod_with_lifecycle(lifecycle: serde_json::Value, grace: i64) -> Pod {
    let mut p = pod("Always", "busybox:1.36");
    if let Some(spec) = p.spec.as_mut() {
        spec.termination_grace_period_seconds = Some(grace);
        spec.containers[0].lifecycle = Some(serde_json::from_value(lifecycle).expect("lifecycle"));
    }
    p
}

/// Runs a pod with a preStop `hook` and `grace`, kills it; returns how long the kill took and
/// the timeout StopContainer was given.
async fn kill_with_pre_stop(hook: serde_json::Value, grace: i64) -> (Duration, Option<i64>) {
    let h = harness();
    let uid = "0123456789abcdef";
    let p = pod_with_lifecycle(serde_json::json!({ "preStop": hook }), grace);
    let rt = h.manager.get_pod_status(uid).await.expect("status");
    h.manager.sync_pod(&p, &rt).await;
    let rt = h.manager.get_pod_status(uid).await.expect("status");
    let started = tokio::time::Instant::now();
    h.manager.kill_pod(Some(&p), &rt, None).await;
    (started.elapsed(), h.fake.stop_timeout(&rt.containers[0].id))
}

#[tokio::test(start_paused = true)]
async fn pre_stop_runs_before_stop_and_its_time_comes_off_the_grace_period() {
    let (took, timeout) = kill_with_pre_stop(serde_json::json!({"sleep": {"seconds": 3}}), 10).await;
    assert_eq!(took, Duration::from_secs(3), "the hook ran to its end first");
    assert_eq!(timeout, Some(7), "10 s grace less the hook's 3 s");
    // A hook longer than the grace period is cut short and the container still gets 2 s.
    let (took, timeout) = kill_with_pre_stop(serde_json::json!({"sleep": {"seconds": 60}}), 5).await;
    assert_eq!(took, Duration::from_secs(5));
    assert_eq!(timeout, Some(2), "upstream's minimum grace period");
}

#[tokio::test]
async fn failing_pre_stop_is_an_event_and_the_container_stops_anyway() {
    let h = harness();
    let uid = "0123456789abcdef";
    let p = pod_with_lifecycle(serde_json::json!({"preStop": {"exec": {"command": ["sh", "-c", "exit 1"]}}}), 10);
    let rt = h.manager.get_pod_status(uid).await.expect("status");
    h.manager.sync_pod(&p, &rt).await;
    let rt = h.manager.get_pod_status(uid).await.expect("status");
    let id = rt.containers[0].id.clone();
    h.fake.set_exec_result(&id, cri::api::ExecSyncResponse { exit_code: 1, ..Default::default() });
    h.fake.clear_calls();
    h.manager.kill_pod(Some(&p), &rt, None).await;
    let all = h.fake.calls();
    let calls: Vec<&str> =
        all.iter().filter_map(|c| c.split_whitespace().next()).filter(|op| !op.starts_with("List")).collect();
    assert_eq!(calls[..2], ["ExecSync", "StopContainer"], "{calls:?}");
    assert_eq!(h.fake.stop_timeout(&id), Some(10));
    let failed = h.events.events().into_iter().find(|e| e.reason == "FailedPreStopHook").expect("FailedPreStopHook");
    assert_eq!(failed.message, "PreStopHook failed", "the hook's output stays out of events");
}

#[tokio::test]
async fn failing_post_start_kills_the_container_with_upstreams_reason() {
    let h = harness();
    let uid = "0123456789abcdef";
    let p = pod_with_lifecycle(serde_json::json!({"postStart": {"exec": {"command": ["sh", "-c", "exit 2"]}}}), 10);
    h.fake.set_default_exec_result(cri::api::ExecSyncResponse {
        exit_code: 2,
        stderr: b"no config\n".to_vec(),
        ..Default::default()
    });
    let rt = h.manager.get_pod_status(uid).await.expect("status");
    let r = h.manager.sync_pod(&p, &rt).await;
    let why = r.reasons.get("app").expect("a waiting reason for app");
    assert_eq!(why.reason, "PostStartHookError");
    assert_eq!(
        why.message,
        "Exec lifecycle hook ([sh -c exit 2]) for Container \"app\" in Pod \"web-n1_default(0123456789abcdef)\" \
         failed - error: command 'sh -c exit 2' exited with 2: no config\n, message: \"no config\\n\""
    );
    let rt = h.manager.get_pod_status(uid).await.expect("status");
    assert_eq!(rt.containers[0].state, ContainerState::Exited, "killed after the failed hook");
    let events: Vec<(&str, String)> = h.events.events().into_iter().map(|e| (e.reason, e.message)).collect();
    assert!(events.contains(&("FailedPostStartHook", "PostStartHook failed".into())), "{events:?}");
    assert!(events.contains(&("Killing", "FailedPostStartHook".into())), "{events:?}");
}

#[tokio::test]
async fn failed_liveness_kills_with_the_probes_grace_period_and_restarts() {
    let uid = "0123456789abcdef";
    let probes = crate::prober::ProbeResults::detached();
    let h = harness_with(probes.clone());
    let manager = &h.manager;
    let mut p = pod("Always", "busybox:1.36");
    if let Some(spec) = p.spec.as_mut() {
        spec.termination_grace_period_seconds = Some(30);
        spec.containers[0].liveness_probe = Some(
            serde_json::from_value(
                serde_json::json!({"exec": {"command": ["true"]}, "terminationGracePeriodSeconds": 4}),
            )
            .expect("probe"),
        );
    }
    let rt = manager.get_pod_status(uid).await.expect("status");
    manager.sync_pod(&p, &rt).await;
    let rt = manager.get_pod_status(uid).await.expect("status");
    let first = rt.containers[0].id.clone();

    probes.liveness.set(&first, crate::prober::ProbeResult::Failure, uid);
    manager.sync_pod(&p, &rt).await;
    assert_eq!(h.fake.stop_timeout(&first), Some(4), "the probe's terminationGracePeriodSeconds");
    let killing = h.events.events().into_iter().find(|e| e.reason == "Killing").expect("Killing");
    assert_eq!(killing.message, "Container app failed liveness probe, will be restarted");
    let rt = manager.get_pod_status(uid).await.expect("status");
    let latest = rt.latest("app").expect("app");
    assert_ne!(latest.id, first, "a new instance");
    assert_eq!((latest.state, latest.restart_count), (ContainerState::Running, 1));
}

#[tokio::test(start_paused = true)]
async fn sidecars_stop_after_the_app_containers_in_reverse_order() {
    let h = harness();
    let uid = "0123456789abcdef";
    let mut p = pod("Always", "busybox:1.36");
    if let Some(spec) = p.spec.as_mut() {
        let sidecar = |name: &str| Container {
            name: name.into(),
            image: Some("busybox:1.36".into()),
            restart_policy: Some("Always".into()),
            ..Default::default()
        };
        spec.init_containers = Some(vec![sidecar("logs"), sidecar("proxy")]);
        // The app takes 3 s to stop (its preStop hook); so does the proxy's hook, which runs at
        // once, alongside the app's, not when the proxy's turn comes.
        let three_seconds = || {
            Some(serde_json::from_value(serde_json::json!({"preStop": {"sleep": {"seconds": 3}}})).expect("lifecycle"))
        };
        spec.containers[0].lifecycle = three_seconds();
        if let Some(inits) = spec.init_containers.as_mut() {
            inits[1].lifecycle = three_seconds();
        }
    }
    // Start the sidecars in order, then the app.
    for _ in 0..3 {
        let rt = h.manager.get_pod_status(uid).await.expect("status");
        h.manager.sync_pod(&p, &rt).await;
    }
    let rt = h.manager.get_pod_status(uid).await.expect("status");
    assert_eq!(rt.containers.iter().filter(|c| c.state == ContainerState::Running).count(), 3, "{rt:?}");
    let id_of = |name: &str| rt.latest(name).map(|c| c.id.clone()).unwrap_or_default();
    h.fake.clear_calls();
    let started = tokio::time::Instant::now();
    h.manager.kill_pod(Some(&p), &rt, Some(10)).await;
    assert_eq!(started.elapsed(), Duration::from_secs(3), "both hooks ran at the same time");
    let killing = h.events.events().into_iter().filter(|e| e.reason == "Killing").count();
    assert_eq!(killing, 3);
    let stops: Vec<String> = h
        .fake
        .calls()
        .into_iter()
        .filter_map(|c| {
            c.strip_prefix("StopContainer ").map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
        })
        .collect();
    assert_eq!(stops, vec![id_of("app"), id_of("proxy"), id_of("logs")], "app, then sidecars in reverse");
    // The sidecars waited for the app to be gone and got what was left of the grace period.
    assert_eq!(h.fake.stop_timeout(&id_of("app")), Some(7));
    assert_eq!(h.fake.stop_timeout(&id_of("proxy")), Some(7));
    assert_eq!(h.fake.stop_timeout(&id_of("logs")), Some(7));
}

#[tokio::test(start_paused = true)]
async fn every_stop_gets_at_least_two_seconds() {
    let h = harness();
    let uid = "0123456789abcdef";
    let p = pod("Always", "busybox:1.36");
    let rt = h.manager.get_pod_status(uid).await.expect("status");
    h.manager.sync_pod(&p, &rt).await;
    let rt = h.manager.get_pod_status(uid).await.expect("status");
    // A force delete (grace 0) still sends SIGTERM first, as upstream.
    h.manager.kill_pod(Some(&p), &rt, Some(0)).await;
    assert_eq!(h.fake.stop_timeout(&rt.containers[0].id), Some(2));
}

#[tokio::test(start_paused = true)]
async fn an_orphan_is_killed_from_its_labels_with_its_pre_stop_hook() {
    let h = harness();
    let uid = "0123456789abcdef";
    let p = pod_with_lifecycle(serde_json::json!({"preStop": {"exec": {"command": ["sh", "-c", "drain"]}}}), 30);
    let rt = h.manager.get_pod_status(uid).await.expect("status");
    h.manager.sync_pod(&p, &rt).await;
    let rt = h.manager.get_pod_status(uid).await.expect("status");
    let id = rt.containers[0].id.clone();
    h.fake.clear_calls();
    // The kubelet no longer knows the pod: only the runtime's record is left.
    h.manager.kill_pod(None, &rt, None).await;
    let calls = h.fake.calls();
    let ops = ops(&calls);
    assert_eq!(
        ops[..2],
        ["ExecSync", "StopContainer"],
        "the preStop hook from the annotation, then the stop: {calls:?}"
    );
    assert!(calls.iter().any(|c| c.starts_with("ExecSync") && c.contains("drain")), "{calls:?}");
    assert_eq!(h.fake.stop_timeout(&id), Some(2), "upstream's 1 s orphan override, raised to the 2 s minimum");
    let killing = h.events.events().into_iter().rfind(|e| e.reason == "Killing").expect("Killing");
    assert_eq!((killing.object.as_str(), killing.message.as_str()), ("default/web-n1", "Stopping container app"));
}

#[tokio::test]
async fn starts_and_their_failures_are_counted_as_upstream() {
    use crate::metrics::{KubeletMetrics, Value};
    let metrics = KubeletMetrics::new();
    let mut h = harness();
    h.manager = h.manager.with_metrics(metrics.clone());
    let series = |m: &crate::metrics::Metric| m.snapshot().series;
    let p = pod("Always", "busybox:1.36");
    let rt = h.manager.get_pod_status("0123456789abcdef").await.expect("status");
    h.manager.sync_pod(&p, &rt).await;
    assert_eq!(series(&metrics.started_pods), [(vec![], Value::Scalar(1.0))]);
    assert_eq!(series(&metrics.started_containers), [(vec!["container".to_owned()], Value::Scalar(1.0))]);
    assert!(series(&metrics.started_containers_errors).is_empty());

    // A pull failure is a start error with the waiting reason as its code.
    h.fake.fail_pull("nope:1", "not found");
    let mut bad = pod("Always", "nope:1");
    bad.metadata.uid = Some("fedcba9876543210".into());
    let rt = h.manager.get_pod_status("fedcba9876543210").await.expect("status");
    h.manager.sync_pod(&bad, &rt).await;
    assert_eq!(series(&metrics.started_pods), [(vec![], Value::Scalar(2.0))]);
    assert_eq!(
        series(&metrics.started_containers_errors),
        [(vec!["ErrImagePull".to_owned(), "container".to_owned()], Value::Scalar(1.0))]
    );
}
