//! End-to-end: the real `kubectl logs`, `exec`, `attach` and `port-forward` through the API
//! server to this kubelet, as an operator runs them. The API server proxies the pod
//! subresources to the kubelet API with its kubelet-client certificate (x509 authentication
//! against the cluster CA, webhook authorization), and the kubelet proxies the SPDY stream to
//! containerd. exec and port-forward run twice: over SPDY, and over WebSocket as kubectl
//! prefers (a real API server translates it to SPDY; the in-memory one passes it through and
//! the kubelet translates `v5.channel.k8s.io` and the SPDY-in-WebSocket port-forward tunnel
//! itself). In-memory test API server over TLS, or a real cluster named by
//! `RKUBELET_TEST_KUBECONFIG`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use testkit::cluster::TestCluster;
use testkit::{NodeEnv, wait_for};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

fn pod(node: &str, image: &str) -> Pod {
    let script = "echo first; echo second; mkdir -p /tmp/www; echo hello-from-httpd > /tmp/www/index.html; \
                  httpd -p 8080 -h /tmp/www; trap 'exit 0' TERM; while true; do sleep 1; done";
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kubectl"},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {"name": "app", "image": image, "command": ["sh", "-c", script]},
                {"name": "talker", "image": image, "stdin": true,
                 "command": ["sh", "-c", "while read line; do echo heard $line; done"]}
            ]
        }
    }))
    .unwrap()
}

/// How kubectl streams exec, attach and port-forward.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    Spdy,
    WebSocket,
}

/// kubectl against the cluster, in the test's namespace, speaking SPDY.
fn kubectl(cluster: &TestCluster, args: &[&str]) -> Command {
    kubectl_via(cluster, args, Via::Spdy)
}

fn kubectl_via(cluster: &TestCluster, args: &[&str], via: Via) -> Command {
    let websockets = if via == Via::WebSocket { "true" } else { "false" };
    let mut cmd = Command::new("kubectl");
    cmd.env("KUBECONFIG", &cluster.kubeconfig)
        .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets)
        .args(["--namespace", &cluster.namespace, "--request-timeout=30s"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs kubectl to completion with `input` on stdin: (exit code, stdout, stderr).
async fn run(cluster: &TestCluster, args: &[&str], input: Option<&str>) -> (i32, String, String) {
    run_via(cluster, args, input, Via::Spdy).await
}

async fn run_via(cluster: &TestCluster, args: &[&str], input: Option<&str>, via: Via) -> (i32, String, String) {
    let mut cmd = kubectl_via(cluster, args, via);
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("kubectl runs");
    if let Some(text) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).await.unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish in 60 s"))
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

/// Reads lines from `reader` until one satisfies `want`, within 30 s.
async fn read_until<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R, want: impl Fn(&str) -> bool) -> String {
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return None;
            }
            seen.push_str(&line);
            if want(&line) {
                return Some(line.clone());
            }
        }
    })
    .await;
    found.ok().flatten().unwrap_or_else(|| panic!("no matching line; output so far: {seen:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_logs_exec_attach_and_port_forward_reach_the_pod() {
    let Some(env) = NodeEnv::require() else { return };
    let cluster = TestCluster::start_tls().await.unwrap();
    let ca = cluster.client_ca_file().unwrap();
    let config = format!(
        "authentication:\n  x509:\n    clientCAFile: {}\n  webhook:\n    enabled: true\nauthorization:\n  mode: Webhook\n",
        ca.display()
    );
    let a = common::cluster_agent(&env, &cluster, "kubectl", &config);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    pods.create(&PostParams::default(), &pod(&a.node, &env.test_image)).await.unwrap();
    wait_for("both containers of the pod ready", Duration::from_secs(90), || async {
        let p = pods.get("kubectl").await.map_err(|e| e.to_string())?;
        let statuses = p.status.and_then(|s| s.container_statuses).unwrap_or_default();
        if statuses.len() == 2 && statuses.iter().all(|c| c.ready) {
            Ok(())
        } else {
            Err(format!("{statuses:?}\n{}", common::tail(&a.log())))
        }
    })
    .await;

    // logs: the whole log, then --tail.
    let (code, out, err) = run(&cluster, &["logs", "kubectl", "-c", "app"], None).await;
    assert_eq!((code, out.as_str()), (0, "first\nsecond\n"), "stderr: {err}");
    let (code, out, err) = run(&cluster, &["logs", "kubectl", "-c", "app", "--tail=1"], None).await;
    assert_eq!((code, out.as_str()), (0, "second\n"), "stderr: {err}");
    let (code, _, err) = run(&cluster, &["logs", "kubectl", "-c", "nope"], None).await;
    assert_ne!(code, 0);
    assert!(err.contains("container nope is not valid for pod kubectl"), "{err}");

    // exec with stdin (its end reaching the command), then stdout, stderr and the exit code
    // of a failing command; over SPDY and over WebSocket.
    for via in [Via::Spdy, Via::WebSocket] {
        let input = if via == Via::Spdy { "over spdy\n" } else { "over websocket\n" };
        let (code, out, err) =
            run_via(&cluster, &["exec", "-i", "kubectl", "-c", "app", "--", "cat"], Some(input), via).await;
        assert_eq!((code, out.as_str()), (0, input), "stderr: {err}");
        let script = "echo out; sleep 0.2; echo err >&2; exit 3";
        let (code, out, err) =
            run_via(&cluster, &["exec", "kubectl", "-c", "app", "--", "sh", "-c", script], None, via).await;
        assert_eq!((code, out.as_str()), (3, "out\n"), "stderr: {err}");
        assert!(err.starts_with("err\n"), "{err}");
        assert!(err.contains("command terminated with exit code 3"), "{err}");
    }

    // attach to a container reading its stdin.
    let mut attach =
        kubectl(&cluster, &["attach", "-i", "kubectl", "-c", "talker"]).stdin(Stdio::piped()).spawn().unwrap();
    let mut stdin = attach.stdin.take().unwrap();
    let mut stdout = BufReader::new(attach.stdout.take().unwrap());
    // The attach is live once a line written now comes back; earlier ones may be lost.
    let heard = tokio::time::timeout(Duration::from_secs(30), async {
        for i in 0.. {
            stdin.write_all(format!("ping-{i}\n").as_bytes()).await.unwrap();
            let mut line = String::new();
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), stdout.read_line(&mut line)).await
                && n > 0
            {
                return line;
            }
        }
        unreachable!()
    })
    .await
    .expect("attach echoes a line within 30 s");
    assert!(heard.starts_with("heard ping-"), "{heard:?}");
    attach.kill().await.unwrap();

    // port-forward to the container's httpd, then one HTTP round trip through it; over SPDY
    // and tunnelled in WebSocket.
    for via in [Via::Spdy, Via::WebSocket] {
        port_forward_round_trip(&cluster, via).await;
    }

    // On the in-memory server: every exec and port-forward was upgraded (101) by the kubelet
    // at the first try (a WebSocket refused would show as another request kubectl fell back
    // from).
    if let Some(server) = &cluster.server {
        let statuses = |sub: &str| -> Vec<u16> {
            server.requests().into_iter().filter(|r| r.path.ends_with(sub)).map(|r| r.status).collect()
        };
        assert_eq!(statuses("/exec"), [101, 101, 101, 101]);
        assert_eq!(statuses("/portforward"), [101, 101]);
    }
    a.cleanup().await;
    cluster.cleanup().await.unwrap();
}

async fn port_forward_round_trip(cluster: &TestCluster, via: Via) {
    let mut pf = kubectl_via(cluster, &["port-forward", "pod/kubectl", ":8080"], via).spawn().unwrap();
    let mut pf_out = BufReader::new(pf.stdout.take().unwrap());
    let line = read_until(&mut pf_out, |l| l.starts_with("Forwarding from 127.0.0.1:")).await;
    let port: u16 = line
        .trim_start_matches("Forwarding from 127.0.0.1:")
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no local port in {line:?}"));
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(30), tcp.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.") && answer.contains(" 200 "), "{answer}");
    assert!(answer.ends_with("hello-from-httpd\n"), "{answer}");
    pf.kill().await.unwrap();
}
