//! Against a real CRI runtime (containerd). Runs only when `CONTAINER_RUNTIME_ENDPOINT` is set;
//! `RKUBELET_TEST_IMAGE` names a busybox image the runtime can pull.
//!
//!   eval "$(scripts/node-env env)" && cargo test -p cri --test containerd -- --nocapture

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cri::api::{self, ContainerState};
use cri::{Error, ImageService, RemoteRuntime, RuntimeService};

const DEADLINE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

fn env() -> Option<(String, String)> {
    let endpoint = std::env::var("CONTAINER_RUNTIME_ENDPOINT").ok().filter(|s| !s.is_empty());
    let image = std::env::var("RKUBELET_TEST_IMAGE").ok().filter(|s| !s.is_empty());
    match (endpoint, image) {
        (Some(e), Some(i)) => Some((e, i)),
        (None, _) => {
            println!("skipping: CONTAINER_RUNTIME_ENDPOINT is not set");
            None
        }
        (Some(_), None) => {
            println!("skipping: RKUBELET_TEST_IMAGE is not set");
            None
        }
    }
}

fn unique() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{}-{:x}", std::process::id(), nanos % 0xffff_ffff)
}

fn sandbox_config(suffix: &str, log_dir: &Path) -> api::PodSandboxConfig {
    let name = format!("cri-test-{suffix}");
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.clone(),
            uid: format!("uid-{suffix}"),
            namespace: "rkubelet-cri-test".into(),
            attempt: 0,
        }),
        hostname: name.clone(),
        log_directory: log_dir.display().to_string(),
        labels: HashMap::from([("rkubelet.test/suffix".to_string(), suffix.to_string())]),
        annotations: HashMap::from([("rkubelet.test/note".to_string(), "cri integration".to_string())]),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_pod_lifecycle() {
    let Some((endpoint, image)) = env() else {
        return;
    };
    let rt = RemoteRuntime::connect(&endpoint, Duration::from_secs(30)).unwrap();
    let suffix = unique();
    let logs = tempfile::tempdir().unwrap();

    // Run the body in a task so that a failure still gets the sandbox cleaned up.
    let body = tokio::spawn(lifecycle(rt.clone(), image, suffix.clone(), logs.path().to_path_buf()));
    let outcome = body.await;

    let mine = api::PodSandboxFilter {
        label_selector: HashMap::from([("rkubelet.test/suffix".to_string(), suffix.clone())]),
        ..Default::default()
    };
    for sb in rt.list_pod_sandbox(Some(mine)).await.unwrap_or_default() {
        let _ = rt.stop_pod_sandbox(&sb.id).await;
        let _ = rt.remove_pod_sandbox(&sb.id).await;
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn lifecycle(rt: RemoteRuntime, image: String, suffix: String, log_dir: std::path::PathBuf) {
    let version = rt.version().await.unwrap();
    assert_eq!(version.runtime_name, "containerd", "{version:?}");
    println!("runtime: {} {} (CRI {})", version.runtime_name, version.runtime_version, version.runtime_api_version);
    let status = rt.status().await.unwrap();
    let ready = |t: &str| status.conditions.iter().any(|c| c.r#type == t && c.status);
    assert!(ready("RuntimeReady"), "{status:?}");

    let spec = api::ImageSpec { image: image.clone(), ..Default::default() };
    let image_ref = rt.pull_image(spec.clone(), None, None).await.unwrap();
    assert!(!image_ref.is_empty());
    let present = rt.image_status(spec.clone()).await.unwrap().expect("pulled image is present");
    assert_eq!(present.id, image_ref);
    let absent = api::ImageSpec { image: format!("{image}-absent-{suffix}"), ..Default::default() };
    assert_eq!(rt.image_status(absent).await.unwrap(), None);

    let sandbox_config = sandbox_config(&suffix, &log_dir);
    let sb = rt.run_pod_sandbox(sandbox_config.clone(), "").await.unwrap();
    let sb_status = rt.pod_sandbox_status(&sb).await.unwrap();
    assert_eq!(sb_status.state, api::PodSandboxState::SandboxReady as i32);
    assert_eq!(sb_status.annotations["rkubelet.test/note"], "cri integration");
    println!("sandbox {sb} ip {:?}", sb_status.network.as_ref().map(|n| n.ip.as_str()));

    let config = api::ContainerConfig {
        metadata: Some(api::ContainerMetadata { name: "app".into(), attempt: 0 }),
        image: Some(api::ImageSpec { image: image.clone(), ..Default::default() }),
        command: vec!["sh".into(), "-c".into(), "echo hi; sleep 3600".into()],
        labels: HashMap::from([("io.kubernetes.container.name".to_string(), "app".to_string())]),
        log_path: "app/0.log".into(),
        ..Default::default()
    };
    std::fs::create_dir_all(log_dir.join("app")).unwrap();
    let id = rt.create_container(&sb, config, sandbox_config.clone()).await.unwrap();
    let created = rt.container_status(&id).await.unwrap();
    assert_eq!(created.state, ContainerState::ContainerCreated as i32);
    rt.start_container(&id).await.unwrap();

    let log_file = log_dir.join("app/0.log");
    // Poll until the container runs and its first line is in the CRI-format log file.
    let start = Instant::now();
    let status = loop {
        let st = rt.container_status(&id).await.unwrap();
        let log = std::fs::read_to_string(&log_file).unwrap_or_default();
        if st.state == ContainerState::ContainerRunning as i32 && log.lines().any(|l| l.ends_with(" stdout F hi")) {
            break st;
        }
        assert!(start.elapsed() < DEADLINE, "container not running with log line: state {} log {log:?}", st.state);
        tokio::time::sleep(POLL).await;
    };
    assert!(status.started_at > 0 && status.finished_at == 0, "{status:?}");
    assert_eq!(status.labels["io.kubernetes.container.name"], "app");
    let listed = rt
        .list_containers(Some(api::ContainerFilter { pod_sandbox_id: sb.clone(), ..Default::default() }))
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), vec![id.as_str()]);

    let out = rt.exec_sync(&id, vec!["echo".into(), "ok".into()], 5).await.unwrap();
    assert_eq!((out.exit_code, out.stdout.as_slice()), (0, b"ok\n".as_slice()), "{out:?}");
    let out = rt.exec_sync(&id, vec!["sh".into(), "-c".into(), "exit 3".into()], 5).await.unwrap();
    assert_eq!(out.exit_code, 3);

    rt.stop_container(&id, 0).await.unwrap();
    let stopped = rt.container_status(&id).await.unwrap();
    assert_eq!(stopped.state, ContainerState::ContainerExited as i32);
    println!("stopped: exit {} reason {:?}", stopped.exit_code, stopped.reason);
    rt.remove_container(&id).await.unwrap();
    let err = rt.container_status(&id).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    println!("unknown container: {err}");

    rt.stop_pod_sandbox(&sb).await.unwrap();
    rt.remove_pod_sandbox(&sb).await.unwrap();
    let left = rt.list_pod_sandbox(Some(api::PodSandboxFilter { id: sb.clone(), ..Default::default() })).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    let err = rt.pod_sandbox_status(&sb).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}
