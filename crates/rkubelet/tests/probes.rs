//! End-to-end: liveness, readiness and startup probes of static pods on the private containerd,
//! with the real rkubelet binary. Events of a standalone agent are in its log.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use testkit::{Agent, AgentOptions, NodeEnv, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_rkubelet");

fn agent(env: &NodeEnv, tag: &str) -> Agent {
    Agent::start(Path::new(BIN), env, tag, AgentOptions::default())
}

fn manifest(name: &str, image: &str, body: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{}", body.replace("IMAGE", image))
}

fn cstatus(pod: &Pod, name: &str) -> Result<ContainerStatus, String> {
    let st = pod.status.as_ref().ok_or("no status")?;
    st.container_statuses.iter().flatten().find(|c| c.name == name).cloned().ok_or(format!("no status for {name}"))
}

fn condition(pod: &Pod, t: &str) -> Option<(String, Option<String>)> {
    let c = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == t)?;
    Some((c.status.clone(), c.reason.clone()))
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// How many events with `reason` whose message starts with `text` the agent logged (a message
/// may span lines: probe output keeps its newlines, as upstream's events do).
fn events(a: &Agent, reason: &str, text: &str) -> usize {
    let log = a.log();
    log.split("event: ")
        .skip(1)
        .filter(|e| {
            e.starts_with(text)
                && e.split_once(" reason=").is_some_and(|(_, r)| r.starts_with(&format!("\"{reason}\"")))
        })
        .count()
}

#[tokio::test]
async fn liveness_failure_restarts_with_the_probes_grace_period_and_events() {
    let Some(env) = NodeEnv::require() else { return };
    let a = agent(&env, "liveness");
    // PID 1 (sh) ignores SIGTERM: each kill lasts the whole grace period. The pod's is 60 s, the
    // probe's 1 s: two restarts within the deadline are only possible with the probe's.
    let body = "  terminationGracePeriodSeconds: 60\n  containers:\n  - name: app\n    image: IMAGE\n    command: ['sh', '-c', 'touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 3600']\n    livenessProbe:\n      exec: {command: ['cat', '/tmp/healthy']}\n      periodSeconds: 1\n      failureThreshold: 2\n      terminationGracePeriodSeconds: 1\n";
    a.write_manifest("live.yaml", &manifest("live", &env.test_image, body));
    let c = wait_for("two liveness restarts", Duration::from_secs(50), || async {
        let p = a.pod("live").await?;
        let c = cstatus(&p, "app")?;
        if c.restart_count >= 2 { Ok(c) } else { Err(format!("{c:?}\n{}", tail(&a.log()))) }
    })
    .await;
    let last = c.last_state.and_then(|s| s.terminated).expect("the killed instance is the last state");
    assert_eq!((last.exit_code, last.reason.as_deref()), (137, Some("Error")), "SIGKILL after the 1 s grace");
    assert!(
        events(&a, "Unhealthy", "Liveness probe failed: cat: can't open '/tmp/healthy': No such file or directory")
            >= 4,
        "two failures per restart:\n{}",
        tail(&a.log())
    );
    assert!(events(&a, "Killing", "Container app failed liveness probe, will be restarted") >= 2, "{}", tail(&a.log()));
    a.remove_manifest("live.yaml");
    a.cleanup().await;
}

#[tokio::test]
async fn readiness_toggles_ready_and_the_ready_condition_both_ways() {
    let Some(env) = NodeEnv::require() else { return };
    let a = agent(&env, "readiness");
    let www = tempfile::tempdir().expect("tmp");
    std::fs::write(www.path().join("ready"), "ok").unwrap();
    let body = format!(
        "  volumes:\n  - name: www\n    hostPath: {{path: {}}}\n  containers:\n  - name: web\n    image: IMAGE\n    command: ['httpd', '-f', '-p', '8080', '-h', '/www']\n    ports: [{{name: http, containerPort: 8080}}]\n    volumeMounts: [{{name: www, mountPath: /www}}]\n    readinessProbe:\n      httpGet: {{path: /ready, port: http}}\n      periodSeconds: 1\n      failureThreshold: 1\n",
        www.path().display()
    );
    a.write_manifest("web.yaml", &manifest("web", &env.test_image, &body));
    let want = |ready: bool| {
        let a = &a;
        async move {
            wait_for(&format!("ready={ready}"), Duration::from_secs(60), || async {
                let p = a.pod("web").await?;
                let c = cstatus(&p, "web")?;
                let cond = condition(&p, "Ready");
                let status = if ready { "True" } else { "False" };
                if c.ready == ready && cond.as_ref().is_some_and(|(s, _)| s == status) {
                    Ok(p)
                } else {
                    Err(format!("ready {} Ready {cond:?}\n{}", c.ready, tail(&a.log())))
                }
            })
            .await
        }
    };
    let p = want(true).await;
    assert_eq!(condition(&p, "ContainersReady").map(|c| c.0).as_deref(), Some("True"));
    std::fs::remove_file(www.path().join("ready")).unwrap();
    let p = want(false).await;
    assert_eq!(condition(&p, "Ready").and_then(|c| c.1).as_deref(), Some("ContainersNotReady"));
    assert!(events(&a, "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 404") >= 1);
    assert_eq!(cstatus(&p, "web").unwrap().restart_count, 0, "readiness never restarts");
    std::fs::write(www.path().join("ready"), "ok").unwrap();
    want(true).await;
    a.remove_manifest("web.yaml");
    a.cleanup().await;
}

#[tokio::test]
async fn startup_probe_holds_liveness_until_the_app_listens() {
    let Some(env) = NodeEnv::require() else { return };
    let a = agent(&env, "startup");
    // Liveness alone (1 failure) would restart the app before it listens.
    let body = "  containers:\n  - name: app\n    image: IMAGE\n    command: ['sh', '-c', 'sleep 4; exec httpd -f -p 8081 -h /']\n    startupProbe:\n      tcpSocket: {port: 8081}\n      periodSeconds: 1\n      failureThreshold: 30\n    livenessProbe:\n      tcpSocket: {port: 8081}\n      periodSeconds: 1\n      failureThreshold: 1\n";
    a.write_manifest("slow.yaml", &manifest("slow", &env.test_image, body));
    let c = wait_for("started", Duration::from_secs(60), || async {
        let p = a.pod("slow").await?;
        let c = cstatus(&p, "app")?;
        if c.started == Some(true) && c.ready { Ok(c) } else { Err(format!("{c:?}\n{}", tail(&a.log()))) }
    })
    .await;
    assert_eq!(c.restart_count, 0, "liveness waited for the startup probe");
    assert!(
        events(&a, "Unhealthy", "Startup probe failed: dial tcp ") >= 1
            && a.log().contains(":8081: connect: connection refused"),
        "{}",
        tail(&a.log())
    );
    assert_eq!(events(&a, "Unhealthy", "Liveness probe failed"), 0);
    // Still alive a few liveness periods later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = a.pod("slow").await.unwrap();
    assert_eq!(cstatus(&p, "app").unwrap().restart_count, 0);
    a.remove_manifest("slow.yaml");
    a.cleanup().await;
}

/// A host HTTP server for probes with `host: 127.0.0.1`: `/start` redirects to `/final` on the
/// same host, `/away` to another host; it records every request head.
async fn probe_target() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(m) => n += m,
                    }
                }
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let answer = if head.starts_with("GET /start ") {
                    "HTTP/1.1 302 Found\r\nlocation: /final\r\ncontent-length: 0\r\n\r\n".to_string()
                } else if head.starts_with("GET /away ") {
                    format!(
                        "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.2:{port}/x\r\ncontent-length: 5\r\n\r\nbye!\n"
                    )
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_string()
                };
                log.lock().unwrap().push(head);
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn http_headers_redirects_and_exec_timeouts() {
    let Some(env) = NodeEnv::require() else { return };
    let (port, seen) = probe_target().await;
    let a = agent(&env, "probe-handlers");
    let body = format!(
        "  containers:\n  - name: app\n    image: IMAGE\n    command: ['sleep', '3600']\n    livenessProbe:\n      httpGet: {{host: 127.0.0.1, port: {port}, path: /start, httpHeaders: [{{name: X-Probe, value: e2e}}]}}\n      periodSeconds: 1\n    readinessProbe:\n      httpGet: {{host: 127.0.0.1, port: {port}, path: /away}}\n      periodSeconds: 1\n  - name: slow\n    image: IMAGE\n    command: ['sleep', '3600']\n    readinessProbe:\n      exec: {{command: ['sleep', '5']}}\n      timeoutSeconds: 1\n      periodSeconds: 2\n"
    );
    a.write_manifest("handlers.yaml", &manifest("handlers", &env.test_image, &body));
    wait_for("probes answered", Duration::from_secs(60), || async {
        let p = a.pod("handlers").await?;
        let app = cstatus(&p, "app")?;
        let slow_failed = events(&a, "Unhealthy", "Readiness probe failed: command \"sleep 5\" timed out") >= 1;
        let warned =
            events(&a, "ProbeWarning", "Readiness probe warning: Probe terminated redirects, Response body: bye!") >= 1;
        let followed = seen.lock().unwrap().iter().any(|h| h.starts_with("GET /final "));
        if app.ready && slow_failed && warned && followed {
            Ok(())
        } else {
            Err(format!(
                "app ready {} slow_failed {slow_failed} warned {warned} followed {followed}\n{}",
                app.ready,
                tail(&a.log())
            ))
        }
    })
    .await;
    let heads = seen.lock().unwrap().clone();
    let start = heads.iter().find(|h| h.starts_with("GET /start ")).unwrap().to_ascii_lowercase();
    for h in ["x-probe: e2e", "user-agent: kube-probe/", "accept: */*", &format!("host: 127.0.0.1:{port}")] {
        assert!(start.contains(h), "{h} in {start}");
    }
    assert!(!heads.iter().any(|h| h.starts_with("GET /x ")), "the redirect to another host was not followed");
    let p = a.pod("handlers").await.unwrap();
    assert!(!cstatus(&p, "slow").unwrap().ready, "a timed-out readiness probe is a failure");
    assert_eq!(cstatus(&p, "app").unwrap().restart_count, 0, "a followed redirect to 200 is healthy");
    a.remove_manifest("handlers.yaml");
    a.cleanup().await;
}

#[tokio::test]
async fn grpc_probes_ask_the_health_service() {
    let Some(env) = NodeEnv::require() else { return };
    let a = agent(&env, "grpc");
    // The server answers SERVING for "" and "db", NOT_SERVING for any other service.
    let pod = |service: &str| {
        format!(
            "  containers:\n  - name: app\n    image: IMAGE\n    args: ['9090']\n    env: [{{name: SERVING, value: db}}]\n    livenessProbe:\n      grpc: {{port: 9090}}\n      periodSeconds: 1\n      failureThreshold: 1\n    readinessProbe:\n      grpc: {{port: 9090, service: {service}}}\n      periodSeconds: 1\n"
        )
    };
    a.write_manifest("grpc-db.yaml", &manifest("grpc-db", &env.grpc_image(), &pod("db")));
    a.write_manifest("grpc-cache.yaml", &manifest("grpc-cache", &env.grpc_image(), &pod("cache")));
    wait_for("db ready, cache refused", Duration::from_secs(60), || async {
        let db = cstatus(&a.pod("grpc-db").await?, "app")?;
        let cache = cstatus(&a.pod("grpc-cache").await?, "app")?;
        let refused =
            events(&a, "Unhealthy", "Readiness probe failed: service unhealthy (responded with \"NOT_SERVING\")") >= 1;
        if db.ready && cache.started == Some(true) && !cache.ready && refused {
            Ok(())
        } else {
            Err(format!("db {db:?}\ncache {cache:?}\n{}", tail(&a.log())))
        }
    })
    .await;
    for name in ["grpc-db", "grpc-cache"] {
        let c = cstatus(&a.pod(name).await.unwrap(), "app").unwrap();
        assert_eq!(c.restart_count, 0, "{name}: the liveness probe (service \"\") passes");
    }
    assert_eq!(events(&a, "Unhealthy", "Liveness probe failed"), 0, "{}", tail(&a.log()));
    a.remove_manifest("grpc-db.yaml");
    a.remove_manifest("grpc-cache.yaml");
    a.cleanup().await;
}
