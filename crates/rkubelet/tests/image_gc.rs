//! End-to-end: image garbage collection on the private containerd. Alone in its test binary:
//! it removes every image nothing uses, which other tests' agents would then pull again.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use cri::{ImageService, RemoteRuntime, api};
use testkit::{Agent, AgentOptions, NodeEnv, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_rkubelet");

async fn has_image(cri: &RemoteRuntime, image: &str) -> bool {
    let spec = api::ImageSpec { image: image.to_string(), ..Default::default() };
    cri.image_status(spec).await.ok().flatten().is_some()
}

#[tokio::test]
async fn images_over_the_high_threshold_go_but_not_in_use_ones_or_the_sandbox_image() {
    let Some(env) = NodeEnv::require() else { return };
    let mut a = Agent::start(Path::new(BIN), &env, "imagegc", AgentOptions::default());
    a.write_manifest(
        "user.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: user\nspec:\n  containers:\n  - name: main\n    image: {}\n    command: ['sleep', '3600']\n",
            env.test_image
        ),
    );
    wait_for("pod user running", Duration::from_secs(60), || async {
        let cs = a.containers("user").await;
        if cs.iter().any(|c| c.state == api::ContainerState::ContainerRunning as i32) {
            Ok(())
        } else {
            Err(format!("containers {cs:?}"))
        }
    })
    .await;
    let cri = a.cri();
    // An image nothing uses, there before the kubelet (re)starts: seen "long ago".
    let unused = env.grpc_image();
    cri.pull_image(api::ImageSpec { image: unused.clone(), ..Default::default() }, None, None)
        .await
        .expect("pull the unused image");
    let sandbox_image = a.sandboxes("user").await.first().map(|s| s.id.clone()).expect("sandbox");
    let sandbox_image = cri_sandbox_image(&cri, &sandbox_image).await;

    // Any usage is over 1%, and 0% cannot be reached: everything unused goes, and the shortfall
    // is reported.
    a.restart_with(AgentOptions {
        config_yaml: Some("imageGCHighThresholdPercent: 1\nimageGCLowThresholdPercent: 0\n".into()),
        ..Default::default()
    });
    wait_for("the unused image removed", Duration::from_secs(60), || async {
        if has_image(&cri, &unused).await { Err(format!("{unused} still there\n{}", a.log())) } else { Ok(()) }
    })
    .await;
    assert!(has_image(&cri, &env.test_image).await, "the running pod's image stays");
    assert!(has_image(&cri, &sandbox_image).await, "the sandbox image {sandbox_image} stays");
    wait_for("FreeDiskSpaceFailed reported", Duration::from_secs(30), || async {
        let log = a.log();
        if log.contains("FreeDiskSpaceFailed") && log.contains("Failed to garbage collect required amount of images") {
            Ok(())
        } else {
            Err("no FreeDiskSpaceFailed event in the log".to_string())
        }
    })
    .await;
    a.cleanup().await;
}

/// The image a sandbox runs (containerd's verbose sandbox status).
async fn cri_sandbox_image(cri: &RemoteRuntime, sandbox: &str) -> String {
    use cri::RuntimeService;
    let info = cri.pod_sandbox_info(sandbox).await.expect("sandbox info");
    let doc: serde_json::Value = serde_json::from_str(info.get("info").expect("info")).expect("json");
    doc["image"].as_str().expect("image").to_string()
}
