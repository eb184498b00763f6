//! End-to-end: the real rkubelet binary runs static pods on the private containerd
//! (`scripts/node-env up`). Each test starts its own agent with its own node name and dirs; the
//! agents run one at a time (testkit serializes them).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use cri::api::ContainerState;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use testkit::{Agent, AgentOptions, NodeEnv, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_rkubelet");

fn agent(env: &NodeEnv, tag: &str) -> Agent {
    Agent::start(Path::new(BIN), env, tag, AgentOptions::default())
}

fn cstatus(pod: &Pod, name: &str) -> Option<ContainerStatus> {
    let st = pod.status.as_ref()?;
    st.container_statuses
        .iter()
        .flatten()
        .chain(st.init_container_statuses.iter().flatten())
        .find(|c| c.name == name)
        .cloned()
}

fn phase(pod: &Pod) -> String {
    pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default()
}

fn running(pod: &Pod, name: &str) -> bool {
    cstatus(pod, name).and_then(|c| c.state).and_then(|s| s.running).is_some()
}

fn waiting_reason(pod: &Pod, name: &str) -> Option<(String, String)> {
    let w = cstatus(pod, name)?.state?.waiting?;
    Some((w.reason.unwrap_or_default(), w.message.unwrap_or_default()))
}

fn manifest(name: &str, image: &str, body: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{}", body.replace("IMAGE", image))
}

/// Waits for a pod to be reported with all the named containers running.
async fn wait_running(a: &Agent, name: &str, containers: &[&str], deadline: Duration) -> Pod {
    wait_for(&format!("pod {name} running"), deadline, || async {
        let p = a.pod(name).await?;
        if containers.iter().all(|c| running(&p, c)) {
            Ok(p)
        } else {
            Err(format!(
                "phase {} statuses {:?}\nagent log tail:\n{}",
                phase(&p),
                p.status.as_ref().map(|s| &s.container_statuses),
                tail(&a.log())
            ))
        }
    })
    .await
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[tokio::test]
async fn static_pod_runs_and_logs() {
    let Some(env) = NodeEnv::require() else { return };
    let a = agent(&env, "logs");
    a.write_manifest(
        "hello.yaml",
        &manifest(
            "hello",
            &env.test_image,
            "  containers:\n  - name: main\n    image: IMAGE\n    command: ['sh', '-c', 'echo hello from $(POD_NAME); sleep 3600']\n    env:\n    - name: POD_NAME\n      valueFrom:\n        fieldRef:\n          fieldPath: metadata.name\n",
        ),
    );
    let pod = wait_running(&a, "hello", &["main"], Duration::from_secs(60)).await;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    assert_eq!(phase(&pod), "Running");
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get("kubernetes.io/config.source").map(String::as_str), Some("file"));
    assert_eq!(annotations.get("kubernetes.io/config.hash"), Some(&uid));
    let cs = cstatus(&pod, "main").expect("status");
    assert!(cs.container_id.as_deref().unwrap_or_default().starts_with("containerd://"), "{cs:?}");
    assert_eq!(cs.restart_count, 0);
    assert!(cs.ready);
    let log = a.logs_dir().join(format!("default_{}_{uid}", a.pod_name("hello"))).join("main/0.log");
    let want = format!("hello from {}", a.pod_name("hello"));
    wait_for("container log line", Duration::from_secs(20), || async {
        let content = std::fs::read_to_string(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        if content.contains(&want) { Ok(()) } else { Err(content) }
    })
    .await;
    let (code, body) = a.healthz().await.expect("healthz");
    assert_eq!((code, body.as_str()), (200, "ok"));
    a.cleanup().await;
}

#[tokio::test]
async fn host_port_answers_on_localhost() {
    let Some(env) = NodeEnv::require() else { return };
    let a = agent(&env, "hostport");
    a.write_manifest(
        "web.yaml",
        &manifest(
            "web",
            &env.test_image,
            "  containers:\n  - name: web\n    image: IMAGE\n    command: ['sh', '-c', 'mkdir -p /www && echo served-by-rkubelet > /www/index.html && exec httpd -f -p 8080 -h /www']\n    ports:\n    - containerPort: 8080\n      hostPort: 18090\n",
        ),
    );
    let pod = wait_running(&a, "web", &["web"], Duration::from_secs(60)).await;
    let pod_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
    assert!(!pod_ip.is_empty(), "pod IP reported");
    wait_for("hostPort 18090 answering", Duration::from_secs(20), || async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect("127.0.0.1:18090").await.map_err(|e| e.to_string())?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.map_err(|e| e.to_string())?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.map_err(|e| e.to_string())?;
        if buf.contains("served-by-rkubelet") { Ok(()) } else { Err(buf) }
    })
    .await;
    a.cleanup().await;
}

#[tokio::test]
async fn manifest_edit_replaces_pod_and_removal_kills_it() {
    let Some(env) = NodeEnv::require() else { return };
    let a = agent(&env, "edit");
    let body = "  terminationGracePeriodSeconds: 5\n  containers:\n  - name: main\n    image: IMAGE\n    command: ['sh', '-c', 'trap \"exit 0\" TERM; echo VERSION; while true; do sleep 1; done']\n";
    a.write_manifest("p.yaml", &manifest("edited", &env.test_image, &body.replace("VERSION", "v1")));
    let first = wait_running(&a, "edited", &["main"], Duration::from_secs(60)).await;
    let first_uid = first.metadata.uid.clone().unwrap_or_default();
    a.write_manifest("p.yaml", &manifest("edited", &env.test_image, &body.replace("VERSION", "v2")));
    let second = wait_for("pod replaced with a new UID", Duration::from_secs(60), || async {
        let p = a.pod("edited").await?;
        let uid = p.metadata.uid.clone().unwrap_or_default();
        if uid != first_uid && running(&p, "main") {
            Ok(p)
        } else {
            Err(format!("uid {uid} running {}", running(&p, "main")))
        }
    })
    .await;
    wait_for("old sandbox gone", Duration::from_secs(30), || async {
        let old: Vec<_> = a
            .sandboxes("edited")
            .await
            .into_iter()
            .filter(|s| s.metadata.as_ref().is_some_and(|m| m.uid == first_uid))
            .collect();
        if old.is_empty() { Ok(()) } else { Err(format!("{} old sandboxes", old.len())) }
    })
    .await;
    // The old pod's entry leaves the pod list once its worker finished, just after its sandbox.
    wait_for("exactly one pod after the edit", Duration::from_secs(10), || async {
        let n = a.pods().await?.len();
        if n == 1 { Ok(()) } else { Err(format!("{n} pods")) }
    })
    .await;
    let second_uid = second.metadata.uid.clone().unwrap_or_default();

    let removed_at = std::time::Instant::now();
    a.remove_manifest("p.yaml");
    wait_for("pod removed from the runtime", Duration::from_secs(30), || async {
        let sb = a.sandboxes("edited").await;
        let ctrs = a.containers("edited").await;
        if sb.is_empty() && ctrs.is_empty() {
            Ok(())
        } else {
            Err(format!("{} sandboxes, {} containers", sb.len(), ctrs.len()))
        }
    })
    .await;
    assert!(
        removed_at.elapsed() < Duration::from_secs(5 + 10),
        "removed within the grace period (+ slack): {:?}",
        removed_at.elapsed()
    );
    wait_for("pod gone from status and its dirs removed", Duration::from_secs(20), || async {
        let gone = a.pod("edited").await.is_err();
        let dir = a.root_dir().join("pods").join(&second_uid);
        let logs = a.logs_dir().join(format!("default_{}_{second_uid}", a.pod_name("edited")));
        if gone && !dir.exists() && !logs.exists() {
            Ok(())
        } else {
            Err(format!("reported {} dir {} logs {}", !gone, dir.exists(), logs.exists()))
        }
    })
    .await;
    a.cleanup().await;
}

#[tokio::test]
async fn init_containers_run_in_order_and_failure_blocks_apps() {
    let Some(env) = NodeEnv::require() else { return };
    let a = agent(&env, "init");
    a.write_manifest(
        "ordered.yaml",
        &manifest(
            "ordered",
            &env.test_image,
            "  volumes:\n  - name: work\n    emptyDir: {}\n  initContainers:\n  - name: first\n    image: IMAGE\n    command: ['sh', '-c', 'echo first >> /work/order']\n    volumeMounts:\n    - {name: work, mountPath: /work}\n  - name: second\n    image: IMAGE\n    command: ['sh', '-c', 'echo second >> /work/order']\n    volumeMounts:\n    - {name: work, mountPath: /work}\n  containers:\n  - name: app\n    image: IMAGE\n    command: ['sh', '-c', 'cat /work/order; sleep 3600']\n    volumeMounts:\n    - {name: work, mountPath: /work}\n",
        ),
    );
    a.write_manifest(
        "blocked.yaml",
        &manifest(
            "blocked",
            &env.test_image,
            "  initContainers:\n  - name: broken\n    image: IMAGE\n    command: ['sh', '-c', 'exit 3']\n  containers:\n  - name: app\n    image: IMAGE\n    command: ['sleep', '3600']\n",
        ),
    );
    let pod = wait_running(&a, "ordered", &["app"], Duration::from_secs(90)).await;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let log = a.logs_dir().join(format!("default_{}_{uid}", a.pod_name("ordered"))).join("app/0.log");
    wait_for("app saw both init containers in order", Duration::from_secs(20), || async {
        let c = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
        let lines: Vec<&str> = c.lines().filter_map(|l| l.split(' ').nth(3)).collect();
        if lines == ["first", "second"] { Ok(()) } else { Err(c) }
    })
    .await;
    let blocked = wait_for("failed init container restarted", Duration::from_secs(60), || async {
        let p = a.pod("blocked").await?;
        let restarts = cstatus(&p, "broken").map(|c| c.restart_count).unwrap_or(0);
        if restarts >= 1 { Ok(p) } else { Err(format!("restarts {restarts}")) }
    })
    .await;
    assert_eq!(phase(&blocked), "Pending");
    assert!(!running(&blocked, "app"), "app container must not start while init fails");
    assert!(
        a.containers("blocked")
            .await
            .iter()
            .all(|c| c.labels.get("io.kubernetes.container.name").map(String::as_str) != Some("app"))
    );
    let init_cond = blocked
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Initialized").cloned())
        .expect("Initialized condition");
    assert_eq!(init_cond.status, "False");
    a.cleanup().await;
}

#[tokio::test]
async fn restart_policies_and_restart_counts() {
    let Some(env) = NodeEnv::require() else { return };
    let a = agent(&env, "policy");
    let pod = |policy: &str, script: &str| {
        format!(
            "  restartPolicy: {policy}\n  volumes:\n  - name: state\n    emptyDir: {{}}\n  containers:\n  - name: main\n    image: IMAGE\n    command: ['sh', '-c', '{script}']\n    volumeMounts:\n    - {{name: state, mountPath: /state}}\n"
        )
    };
    a.write_manifest("never.yaml", &manifest("never", &env.test_image, &pod("Never", "exit 2")));
    a.write_manifest(
        "onfailure.yaml",
        &manifest(
            "onfailure",
            &env.test_image,
            &pod("OnFailure", "if [ -e /state/ran ]; then exit 0; fi; touch /state/ran; exit 1"),
        ),
    );
    a.write_manifest("always.yaml", &manifest("always", &env.test_image, &pod("Always", "exit 0")));

    let never = wait_for("Never pod failed", Duration::from_secs(60), || async {
        let p = a.pod("never").await?;
        if phase(&p) == "Failed" { Ok(p) } else { Err(phase(&p)) }
    })
    .await;
    let cs = cstatus(&never, "main").expect("status");
    let term = cs.state.and_then(|s| s.terminated).expect("terminated");
    assert_eq!((term.exit_code, term.reason.as_deref(), cs.restart_count), (2, Some("Error"), 0));

    let onfailure = wait_for("OnFailure pod succeeded after one restart", Duration::from_secs(60), || async {
        let p = a.pod("onfailure").await?;
        if phase(&p) == "Succeeded" { Ok(p) } else { Err(format!("{} {:?}", phase(&p), cstatus(&p, "main"))) }
    })
    .await;
    let cs = cstatus(&onfailure, "main").expect("status");
    assert_eq!(cs.restart_count, 1);
    assert_eq!(cs.state.and_then(|s| s.terminated).map(|t| t.reason), Some(Some("Completed".into())));
    assert_eq!(
        cs.last_state.and_then(|s| s.terminated).map(|t| t.exit_code),
        Some(1),
        "lastState holds the failed run"
    );

    wait_for("Always pod restarted at least twice", Duration::from_secs(60), || async {
        let p = a.pod("always").await?;
        let n = cstatus(&p, "main").map(|c| c.restart_count).unwrap_or(0);
        if n >= 2 && phase(&p) == "Running" { Ok(()) } else { Err(format!("{} restarts {n}", phase(&p))) }
    })
    .await;
    a.cleanup().await;
}

#[tokio::test]
async fn crash_loop_backoff_grows_and_dead_instances_are_collected() {
    let Some(env) = NodeEnv::require() else { return };
    let a = agent(&env, "crash");
    a.write_manifest(
        "crash.yaml",
        &manifest(
            "crash",
            &env.test_image,
            "  containers:\n  - name: main\n    image: IMAGE\n    command: ['sh', '-c', 'exit 1']\n",
        ),
    );
    let seen = std::sync::Mutex::new(Vec::<String>::new());
    wait_for("back-off delays 10s then 20s", Duration::from_secs(90), || {
        let seen = &seen;
        let a = &a;
        async move {
            let p = a.pod("crash").await?;
            let mut seen = seen.lock().map_err(|e| e.to_string())?;
            if let Some((reason, msg)) = waiting_reason(&p, "main").filter(|(r, _)| r == "CrashLoopBackOff") {
                assert!(msg.contains("restarting failed container=main"), "{reason}: {msg}");
                let delay = msg.split_whitespace().nth(1).unwrap_or_default().to_string();
                if !seen.contains(&delay) {
                    seen.push(delay);
                }
            }
            if seen.iter().any(|d| d == "20s") { Ok(()) } else { Err(format!("delays seen {seen:?}")) }
        }
    })
    .await;
    let seen = seen.into_inner().expect("lock");
    assert_eq!(seen.first().map(String::as_str), Some("10s"), "{seen:?}");

    // Container GC (every minute, the first at start before the sources reported): of three or
    // more dead instances only the newest stays (--maximum-dead-containers-per-container 1),
    // with its log file and /var/log/containers link; the status keeps its lastState.
    let exited = ContainerState::ContainerExited as i32;
    let kept = wait_for("dead instances collected down to one", Duration::from_secs(100), || async {
        let cs = a.containers("crash").await;
        let dead: Vec<_> = cs.iter().filter(|c| c.state == exited).collect();
        let newest = cs.iter().filter_map(|c| c.metadata.as_ref().map(|m| m.attempt)).max().unwrap_or(0);
        match dead.as_slice() {
            [only] if newest >= 2 => Ok((*only).clone()),
            _ => Err(format!(
                "instances (attempt, state): {:?}",
                cs.iter().map(|c| (c.metadata.as_ref().map(|m| m.attempt), c.state)).collect::<Vec<_>>()
            )),
        }
    })
    .await;
    let attempt = kept.metadata.as_ref().map(|m| m.attempt).unwrap_or_default();
    assert!(attempt >= 1, "the newest dead instance is the one kept: attempt {attempt}");
    let uid = kept.labels.get("io.kubernetes.pod.uid").cloned().unwrap_or_default();
    let log_dir = a.logs_dir().join(format!("default_{}_{uid}", a.pod_name("crash"))).join("main");
    let logs: Vec<String> = std::fs::read_dir(&log_dir)
        .expect("container log dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(logs.contains(&format!("{attempt}.log")), "the kept instance's log stays: {logs:?}");
    assert!(!logs.contains(&"0.log".to_string()), "the first instance's log went with it: {logs:?}");
    let link = Path::new("/var/log/containers").join(format!("{}_default_main-{}.log", a.pod_name("crash"), kept.id));
    assert_eq!(
        std::fs::read_link(&link).ok(),
        Some(log_dir.join(format!("{attempt}.log"))),
        "legacy link of the kept instance"
    );
    let p = a.pod("crash").await.expect("pod");
    let last = cstatus(&p, "main").and_then(|c| c.last_state).and_then(|s| s.terminated);
    assert_eq!(last.map(|t| t.exit_code), Some(1), "lastState survives the collection");
    a.cleanup().await;
}

#[tokio::test]
async fn empty_dir_is_shared_and_removed_with_the_pod() {
    let Some(env) = NodeEnv::require() else { return };
    let a = agent(&env, "emptydir");
    a.write_manifest(
        "shared.yaml",
        &manifest(
            "shared",
            &env.test_image,
            "  terminationGracePeriodSeconds: 1\n  volumes:\n  - name: data\n    emptyDir: {}\n  - name: mem\n    emptyDir:\n      medium: Memory\n      sizeLimit: 8Mi\n  containers:\n  - name: writer\n    image: IMAGE\n    command: ['sh', '-c', 'echo shared-content > /data/f; echo m > /mem/f; sleep 3600']\n    volumeMounts:\n    - {name: data, mountPath: /data}\n    - {name: mem, mountPath: /mem}\n  - name: reader\n    image: IMAGE\n    command: ['sh', '-c', 'while [ ! -e /in/f ]; do sleep 0.2; done; cat /in/f; sleep 3600']\n    volumeMounts:\n    - {name: data, mountPath: /in, readOnly: true}\n",
        ),
    );
    let pod = wait_running(&a, "shared", &["writer", "reader"], Duration::from_secs(60)).await;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let vol = a.root_dir().join("pods").join(&uid).join("volumes/kubernetes.io~empty-dir/data");
    let mem = a.root_dir().join("pods").join(&uid).join("volumes/kubernetes.io~empty-dir/mem");
    let log = a.logs_dir().join(format!("default_{}_{uid}", a.pod_name("shared"))).join("reader/0.log");
    wait_for("reader saw the writer's file", Duration::from_secs(20), || async {
        let c = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
        if c.contains("shared-content") { Ok(()) } else { Err(c) }
    })
    .await;
    assert_eq!(std::fs::read_to_string(vol.join("f")).expect("file on the host"), "shared-content\n");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(mounts.contains(&format!("{} ", mem.display())), "medium: Memory is a tmpfs mount");
    a.remove_manifest("shared.yaml");
    wait_for("volumes removed after the pod", Duration::from_secs(30), || async {
        let mounted = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .contains(&format!("{} ", mem.display()));
        if !vol.exists() && !mounted { Ok(()) } else { Err(format!("dir {} tmpfs {mounted}", vol.exists())) }
    })
    .await;
    a.cleanup().await;
}

#[tokio::test]
async fn missing_image_backs_off() {
    let Some(env) = NodeEnv::require() else { return };
    let a = agent(&env, "pull");
    let missing = format!("{}/library/does-not-exist:1.0", env.registry);
    a.write_manifest(
        "missing.yaml",
        &manifest("missing", &missing, "  containers:\n  - name: main\n    image: IMAGE\n"),
    );
    let reasons = std::sync::Mutex::new(Vec::<String>::new());
    wait_for("ErrImagePull then ImagePullBackOff", Duration::from_secs(60), || {
        let reasons = &reasons;
        let a = &a;
        async move {
            let p = a.pod("missing").await?;
            let mut reasons = reasons.lock().map_err(|e| e.to_string())?;
            if let Some((reason, _)) = waiting_reason(&p, "main")
                && !reasons.contains(&reason)
            {
                reasons.push(reason);
            }
            if reasons.iter().any(|r| r == "ImagePullBackOff") { Ok(()) } else { Err(format!("{reasons:?}")) }
        }
    })
    .await;
    let reasons = reasons.into_inner().expect("lock");
    assert!(
        reasons.contains(&"ErrImagePull".to_string())
            || reasons.first().map(String::as_str) == Some("ImagePullBackOff")
    );
    assert_eq!(phase(&a.pod("missing").await.expect("pod")), "Pending");
    a.cleanup().await;
}

#[tokio::test]
async fn invalid_manifest_does_not_disturb_valid_pods() {
    let Some(env) = NodeEnv::require() else { return };
    let a = agent(&env, "invalid");
    a.write_manifest("bad-yaml.yaml", "apiVersion: v1\nkind: Pod\nmetadata: [unclosed\n");
    a.write_manifest(
        "no-image.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: noimage\nspec:\n  containers:\n  - name: c\n",
    );
    a.write_manifest(
        "good.yaml",
        &manifest(
            "good",
            &env.test_image,
            "  containers:\n  - name: main\n    image: IMAGE\n    command: ['sleep', '3600']\n",
        ),
    );
    wait_running(&a, "good", &["main"], Duration::from_secs(60)).await;
    assert_eq!(a.pods().await.expect("pods").len(), 1, "only the valid pod runs");
    let log = a.log();
    assert!(log.contains("bad-yaml.yaml"), "bad file named in the log:\n{}", tail(&log));
    assert!(log.contains("no-image.yaml") && log.contains("spec.containers[0].image"), "field named:\n{}", tail(&log));
    a.cleanup().await;
}

#[tokio::test]
async fn restart_after_kill9_adopts_pods() {
    let Some(env) = NodeEnv::require() else { return };
    let mut a = agent(&env, "adopt");
    a.write_manifest(
        "steady.yaml",
        &manifest(
            "steady",
            &env.test_image,
            "  containers:\n  - name: main\n    image: IMAGE\n    command: ['sleep', '3600']\n",
        ),
    );
    a.write_manifest(
        "flappy.yaml",
        &manifest(
            "flappy",
            &env.test_image,
            "  containers:\n  - name: main\n    image: IMAGE\n    command: ['sh', '-c', 'sleep 1; exit 1']\n",
        ),
    );
    let before = wait_running(&a, "steady", &["main"], Duration::from_secs(60)).await;
    wait_for("flappy restarted once", Duration::from_secs(60), || async {
        let p = a.pod("flappy").await?;
        let n = cstatus(&p, "main").map(|c| c.restart_count).unwrap_or(0);
        if n >= 1 { Ok(()) } else { Err(format!("restarts {n}")) }
    })
    .await;
    let id_before = cstatus(&before, "main").and_then(|c| c.container_id).expect("id");
    let sandboxes_before = a.sandboxes("steady").await.len();
    a.kill9();
    a.spawn();
    let after = wait_running(&a, "steady", &["main"], Duration::from_secs(60)).await;
    let cs = cstatus(&after, "main").expect("status");
    assert_eq!(cs.container_id.as_deref(), Some(id_before.as_str()), "same container adopted, not restarted");
    assert_eq!(cs.restart_count, 0);
    assert_eq!(a.sandboxes("steady").await.len(), sandboxes_before, "no sandbox duplicated");
    let flappy_before = cstatus(&a.pod("flappy").await.expect("flappy"), "main").map(|c| c.restart_count).unwrap_or(0);
    assert!(flappy_before >= 1, "restart count continues after the restart");
    // Wait until the new agent has demonstrably acted (it restarted the crashing pod again), then
    // check that the steady pod was left alone.
    wait_for("the new agent restarts flappy", Duration::from_secs(60), || async {
        let p = a.pod("flappy").await?;
        let n = cstatus(&p, "main").map(|c| c.restart_count).unwrap_or(0);
        if n > flappy_before { Ok(()) } else { Err(format!("restarts {n}")) }
    })
    .await;
    let again = a.pod("steady").await.expect("steady");
    assert_eq!(cstatus(&again, "main").and_then(|c| c.container_id), Some(id_before));
    assert_eq!(a.containers("steady").await.len(), 1);
    a.cleanup().await;
}

#[tokio::test]
async fn runtime_absent_at_start_is_retried_then_recovers() {
    let Some(env) = NodeEnv::require() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let link = dir.path().join("late.sock");
    let endpoint = format!("unix://{}", link.display());
    let a = Agent::start(
        Path::new(BIN),
        &env,
        "late",
        AgentOptions { runtime_endpoint: Some(endpoint.clone()), ..Default::default() },
    );
    a.write_manifest(
        "late.yaml",
        &manifest(
            "late",
            &env.test_image,
            "  containers:\n  - name: main\n    image: IMAGE\n    command: ['sleep', '3600']\n",
        ),
    );
    wait_for("clear runtime error in the log", Duration::from_secs(20), || async {
        let log = a.log();
        if log.contains(&format!("container runtime not reachable at {endpoint}")) { Ok(()) } else { Err(tail(&log)) }
    })
    .await;
    let (code, _) = a.healthz().await.expect("healthz answers while the runtime is down");
    assert_eq!(code, 200);
    std::os::unix::fs::symlink(env.socket(), &link).expect("symlink socket");
    wait_running(&a, "late", &["main"], Duration::from_secs(60)).await;
    a.cleanup().await;
}

#[tokio::test]
async fn sigterm_exits_cleanly_and_leaves_pods_running() {
    let Some(env) = NodeEnv::require() else { return };
    let mut a = agent(&env, "sigterm");
    a.write_manifest(
        "keep.yaml",
        &manifest(
            "keep",
            &env.test_image,
            "  containers:\n  - name: main\n    image: IMAGE\n    command: ['sleep', '3600']\n",
        ),
    );
    wait_running(&a, "keep", &["main"], Duration::from_secs(60)).await;
    assert_eq!(a.terminate().await, Some(0), "exit code 0 on SIGTERM");
    let running: Vec<_> = a.containers("keep").await.into_iter().filter(|c| c.state == 1).collect();
    assert_eq!(running.len(), 1, "the pod's container keeps running after the kubelet stops");
    a.cleanup().await;
}

#[tokio::test]
async fn lifecycle_hooks_run_after_start_and_before_stop() {
    let Some(env) = NodeEnv::require() else { return };
    let a = agent(&env, "hooks");
    let out = tempfile::tempdir().expect("tmp");
    let body = format!(
        "  terminationGracePeriodSeconds: 10\n  volumes:\n  - name: out\n    hostPath: {{path: {}}}\n  containers:\n  - name: app\n    image: IMAGE\n    command: ['sh', '-c', 'trap \"exit 0\" TERM; while true; do sleep 0.2; done']\n    volumeMounts:\n    - {{name: out, mountPath: /out}}\n    lifecycle:\n      postStart:\n        exec: {{command: ['sh', '-c', 'echo started > /out/post-start']}}\n      preStop:\n        exec: {{command: ['sh', '-c', 'echo stopping > /out/pre-stop']}}\n",
        out.path().display()
    );
    a.write_manifest("hooks.yaml", &manifest("hooks", &env.test_image, &body));
    wait_running(&a, "hooks", &["app"], Duration::from_secs(60)).await;
    assert_eq!(std::fs::read_to_string(out.path().join("post-start")).expect("postStart ran"), "started\n");
    assert!(!out.path().join("pre-stop").exists(), "preStop before any stop");
    a.remove_manifest("hooks.yaml");
    wait_for("preStop ran on removal", Duration::from_secs(30), || async {
        std::fs::read_to_string(out.path().join("pre-stop")).map_err(|e| format!("{e}\n{}", tail(&a.log())))
    })
    .await;

    // A postStart hook that fails: the container is killed and restarted, with upstream's reason.
    let failing = "  terminationGracePeriodSeconds: 2\n  containers:\n  - name: app\n    image: IMAGE\n    command: ['sh', '-c', 'sleep 3600']\n    lifecycle:\n      postStart:\n        exec: {command: ['sh', '-c', 'echo no config >&2; exit 3']}\n";
    a.write_manifest("badhook.yaml", &manifest("badhook", &env.test_image, failing));
    wait_for("container killed after its postStart hook failed", Duration::from_secs(90), || async {
        let p = a.pod("badhook").await?;
        let c = cstatus(&p, "app").ok_or("no status yet")?;
        let log = a.log();
        if c.restart_count >= 1 && log.contains("FailedPostStartHook") && log.contains("exited with 3: no config") {
            Ok(())
        } else {
            Err(format!("{c:?}\n{}", tail(&log)))
        }
    })
    .await;
    a.remove_manifest("badhook.yaml");
    a.cleanup().await;
}

#[tokio::test]
async fn termination_messages_from_the_file_and_from_the_logs() {
    let Some(env) = NodeEnv::require() else { return };
    let a = agent(&env, "term-msg");
    let from_file = "  restartPolicy: Never\n  containers:\n  - name: app\n    image: IMAGE\n    command: ['sh', '-c', 'printf \"bye from file\" > /dev/termination-log; exit 0']\n";
    let from_logs = "  restartPolicy: Never\n  containers:\n  - name: app\n    image: IMAGE\n    terminationMessagePolicy: FallbackToLogsOnError\n    command: ['sh', '-c', 'echo starting >&2; echo \"fatal: no config\" >&2; exit 3']\n";
    a.write_manifest("msg-file.yaml", &manifest("msg-file", &env.test_image, from_file));
    a.write_manifest("msg-logs.yaml", &manifest("msg-logs", &env.test_image, from_logs));
    for (name, code, reason, message) in
        [("msg-file", 0, "Completed", "bye from file"), ("msg-logs", 3, "Error", "starting\nfatal: no config\n")]
    {
        let t = wait_for(&format!("{name} terminated"), Duration::from_secs(60), || async {
            let p = a.pod(name).await?;
            cstatus(&p, "app")
                .and_then(|c| c.state?.terminated)
                .ok_or_else(|| format!("{:?}\n{}", p.status, tail(&a.log())))
        })
        .await;
        assert_eq!((t.exit_code, t.reason.as_deref(), t.message.as_deref()), (code, Some(reason), Some(message)));
    }
    a.remove_manifest("msg-file.yaml");
    a.remove_manifest("msg-logs.yaml");
    a.cleanup().await;
}

#[tokio::test]
async fn active_deadline_fails_the_pod_and_stops_it() {
    let Some(env) = NodeEnv::require() else { return };
    let a = agent(&env, "deadline");
    let body = "  activeDeadlineSeconds: 3\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n    image: IMAGE\n    command: ['sleep', '3600']\n";
    a.write_manifest("deadline.yaml", &manifest("deadline", &env.test_image, body));
    let p = wait_for("pod failed with DeadlineExceeded and its container stopped", Duration::from_secs(60), || async {
        let p = a.pod("deadline").await?;
        let st = p.status.clone().unwrap_or_default();
        let stopped = cstatus(&p, "app").and_then(|c| c.state?.terminated).is_some();
        if st.phase.as_deref() == Some("Failed") && st.reason.as_deref() == Some("DeadlineExceeded") && stopped {
            Ok(p)
        } else {
            Err(format!("{st:?}\n{}", tail(&a.log())))
        }
    })
    .await;
    let st = p.status.unwrap();
    assert_eq!(st.message.as_deref(), Some("Pod was active on the node longer than the specified deadline"));
    let started = st.start_time.unwrap().0.as_second();
    let finished = cstatus(&a.pod("deadline").await.unwrap(), "app")
        .and_then(|c| c.state?.terminated?.finished_at)
        .unwrap()
        .0
        .as_second();
    assert!(finished >= started + 3, "not before the deadline: started {started}, finished {finished}");
    assert!(a.log().contains("event: Pod was active on the node longer than the specified deadline"));
    a.remove_manifest("deadline.yaml");
    a.cleanup().await;
}

#[tokio::test]
async fn memory_limit_exceeded_is_reported_as_oom_killed() {
    let Some(env) = NodeEnv::require() else { return };
    let a = agent(&env, "oom");
    // The shell holds 64 MiB in a variable, four times the limit.
    let body = "  restartPolicy: Never\n  containers:\n  - name: app\n    image: IMAGE\n    resources:\n      limits:\n        memory: 16Mi\n    command: ['sh', '-c', 'x=$(head -c 67108864 /dev/zero | tr \"\\\\0\" a); echo survived']\n";
    a.write_manifest("oom.yaml", &manifest("oom", &env.test_image, body));
    let p = wait_for("container terminated", Duration::from_secs(60), || async {
        let p = a.pod("oom").await?;
        match cstatus(&p, "app").and_then(|c| c.state?.terminated) {
            Some(_) if phase(&p) == "Failed" => Ok(p),
            _ => Err(format!("{:?}\n{}", p.status, tail(&a.log()))),
        }
    })
    .await;
    let t = cstatus(&p, "app").and_then(|c| c.state?.terminated).unwrap();
    assert_eq!((t.reason.as_deref(), t.exit_code), (Some("OOMKilled"), 137), "{t:?}");
    a.remove_manifest("oom.yaml");
    a.cleanup().await;
}

#[tokio::test]
async fn a_container_that_cannot_start_says_why() {
    let Some(env) = NodeEnv::require() else { return };
    let a = agent(&env, "start-error");
    let body =
        "  restartPolicy: Never\n  containers:\n  - name: app\n    image: IMAGE\n    command: ['no-such-program']\n";
    a.write_manifest("start-error.yaml", &manifest("start-error", &env.test_image, body));
    let p = wait_for("pod failed", Duration::from_secs(60), || async {
        let p = a.pod("start-error").await?;
        if phase(&p) == "Failed" { Ok(p) } else { Err(format!("{:?}\n{}", p.status, tail(&a.log()))) }
    })
    .await;
    let t = cstatus(&p, "app").and_then(|c| c.state?.terminated).unwrap();
    // containerd's words for a process that could not be started (upstream shows them as is).
    assert_eq!((t.reason.as_deref(), t.exit_code), (Some("StartError"), 128), "{t:?}");
    assert!(
        t.message.as_deref().is_some_and(|m| m.contains("\"no-such-program\": executable file not found")),
        "{t:?}"
    );
    let log = a.log();
    let failed = log.lines().find(|l| l.contains("reason=\"Failed\"")).unwrap_or_default();
    assert!(failed.contains("event: Error: failed to create containerd task"), "the runtime's own message: {failed}");
    assert!(!failed.contains("CRI StartContainer"), "no wrapping of ours: {failed}");
    a.remove_manifest("start-error.yaml");
    a.cleanup().await;
}
