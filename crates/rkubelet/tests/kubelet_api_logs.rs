//! End-to-end: the kubelet API's debugging handlers on a standalone agent (anonymous requests
//! with AlwaysAllow, so no API server is involved): `/containerLogs` with every query parameter
//! over a rotated file, `previous` and `follow`; `/logs/` never leaving /var/log; `/runningpods/`,
//! `/configz`, `/metrics` and `/metrics/probes`; and the 405 answers with
//! `enableDebuggingHandlers` off.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use testkit::https::{open, request};
use testkit::{Agent, AgentOptions, NodeEnv, wait_for};
use tokio::io::AsyncReadExt;

mod common;

use common::{BIN, OPEN_API_CONFIG};

fn manifest(image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: logger
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: fixed
    image: {image}
    command: ["sh", "-c", "echo one; sleep 1; echo two >&2; sleep 1; echo three; trap 'exit 0' TERM; while true; do sleep 1; done"]
    readinessProbe:
      exec:
        command: ["true"]
      periodSeconds: 1
  - name: ticker
    image: {image}
    command: ["sh", "-c", "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo tick$i; sleep 1; done"]
  - name: crash
    image: {image}
    command: ["sh", "-c", "echo instance $(cat /proc/sys/kernel/random/uuid); exit 1"]
"#
    )
}

fn restart_count(pod: &Pod, name: &str) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|l| l.iter().find(|c| c.name == name))
        .map_or(0, |c| c.restart_count)
}

fn running(pod: &Pod, name: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|l| l.iter().find(|c| c.name == name))
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

async fn get(a: &Agent, path: &str) -> (u16, String) {
    request(a.port, "GET", path, &[], None).await.unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap()
}

/// One plain-HTTP request to `127.0.0.1:port`: (status, body).
async fn plain_get(port: u16, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(format!("{method} {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = String::new();
    tcp.read_to_string(&mut buf).await.unwrap();
    let code = buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// The value of the sample line starting with `series ` (0 when absent).
fn sample(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Every family has HELP then TYPE before its samples, and every sample line is
/// `name{labels} value` with a number for the value.
fn check_exposition(body: &str) {
    let mut typed = std::collections::HashSet::new();
    let mut helped = std::collections::HashSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap().to_string();
            assert!(helped.contains(&name), "TYPE before HELP: {line}");
            assert!(matches!(it.next(), Some("counter" | "gauge" | "histogram")), "{line}");
            typed.insert(name);
        } else {
            let name = line.split(['{', ' ']).next().unwrap();
            let base =
                ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).filter(|b| typed.contains(*b));
            assert!(typed.contains(name) || base.is_some(), "a sample without TYPE: {line}");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "not a number: {line}");
        }
    }
}

/// The directory of the pod's container logs (`<podLogsDir>/<ns>_<name>_<uid>/<container>`).
fn container_log_dir(a: &Agent, pod: &Pod, container: &str) -> PathBuf {
    let m = &pod.metadata;
    a.logs_dir().join(format!("default_{}_{}", m.name.as_deref().unwrap(), m.uid.as_deref().unwrap())).join(container)
}

#[tokio::test(flavor = "multi_thread")]
async fn container_logs_node_logs_and_debug_endpoints_as_upstream() {
    let Some(env) = NodeEnv::require() else { return };
    let read_only_port = free_port();
    let a = Agent::start(
        Path::new(BIN),
        &env,
        "klogs",
        AgentOptions {
            config_yaml: Some(OPEN_API_CONFIG.into()),
            args: vec![format!("--read-only-port={read_only_port}")],
            ..Default::default()
        },
    );
    a.write_manifest("logger.yaml", &manifest(&env.test_image));
    let name = a.pod_name("logger");
    let pod = wait_for("logger runs fixed and ticker and crash restarted", Duration::from_secs(90), || async {
        let p = a.pod("logger").await?;
        if running(&p, "fixed") && running(&p, "ticker") && restart_count(&p, "crash") >= 1 {
            Ok(p)
        } else {
            Err(format!("{:?}\n{}", p.status, a.log()))
        }
    })
    .await;
    let base = format!("/containerLogs/default/{name}/fixed");
    wait_for("fixed wrote three lines", Duration::from_secs(20), || async {
        let (code, body) = get(&a, &base).await;
        if code == 200 && body == "one\ntwo\nthree\n" { Ok(()) } else { Err(format!("{code} {body:?}")) }
    })
    .await;

    // A rotated file beside the current one is read first.
    let dir = container_log_dir(&a, &pod, "fixed");
    let rotated = "2020-01-01T00:00:00Z stdout F rotated-a\n2020-01-01T00:00:01Z stderr F rotated-b\n";
    std::fs::write(dir.join("0.log.20200101-000002"), rotated).unwrap();
    assert_eq!(get(&a, &base).await, (200, "rotated-a\nrotated-b\none\ntwo\nthree\n".into()));
    assert_eq!(get(&a, &format!("{base}?tailLines=4")).await, (200, "rotated-b\none\ntwo\nthree\n".into()));
    assert_eq!(get(&a, &format!("{base}?tail=2")).await, (200, "two\nthree\n".into()));
    assert_eq!(get(&a, &format!("{base}?limitBytes=12")).await, (200, "rotated-a\nro".into()));
    assert_eq!(get(&a, &format!("{base}?sinceTime=2021-01-01T00:00:00Z")).await, (200, "one\ntwo\nthree\n".into()));
    assert_eq!(get(&a, &format!("{base}?sinceSeconds=3600")).await, (200, "one\ntwo\nthree\n".into()));
    let (code, body) = get(&a, &format!("{base}?timestamps=true&tailLines=4")).await;
    assert_eq!(code, 200);
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "2020-01-01T00:00:01.000000000Z rotated-b", "{body}");
    assert!(lines[1].ends_with(" one") && lines[1].len() == "2020-01-01T00:00:01.000000000Z one".len(), "{body}");

    // Bad requests get upstream's codes and words.
    assert_eq!(get(&a, &format!("{base}?tailLines=-1")).await, (422, r#"{"message": "Invalid request."}"#.into()));
    assert_eq!(
        get(&a, &format!("{base}?limitBytes=x")).await,
        (400, r#"{"message": "Unable to decode query."}"#.into())
    );
    assert_eq!(get(&a, "/containerLogs/default/nope/fixed").await, (404, "pod \"nope\" does not exist".into()));
    assert_eq!(
        get(&a, &format!("/containerLogs/default/{name}/other")).await,
        (404, format!("container \"other\" not found in pod \"{name}\""))
    );
    assert_eq!(
        get(&a, &format!("{base}?previous=true")).await,
        (400, format!("previous terminated container \"fixed\" in pod \"{name}\" not found"))
    );

    // previous: the instance before the restart.
    let (code, prev) = get(&a, &format!("/containerLogs/default/{name}/crash?previous=true")).await;
    assert_eq!(code, 200, "{prev}");
    assert!(prev.starts_with("instance "), "{prev:?}");

    // follow: new lines arrive on the open response.
    let mut stream =
        open(a.port, "GET", &format!("/containerLogs/default/{name}/ticker?follow=true&tailLines=1"), &[], None)
            .await
            .unwrap();
    let mut got = Vec::new();
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 512];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the follow ended: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
            if body.lines().filter(|l| l.starts_with("tick")).count() >= 3 {
                return body.to_string();
            }
        }
    })
    .await
    .expect("three ticks within 20s");
    let ticks: Vec<u32> = seen.lines().map(|l| l.trim_start_matches("tick").parse().unwrap()).collect();
    assert!(ticks.windows(2).all(|w| w[1] == w[0] + 1), "consecutive ticks: {ticks:?}");
    drop(stream);

    // /runningpods/ and /configz
    let (code, body) = get(&a, "/runningpods/").await;
    assert_eq!(code, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let item = list["items"].as_array().unwrap().iter().find(|p| p["metadata"]["name"] == name.as_str()).unwrap();
    let names: Vec<&str> =
        item["spec"]["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"fixed") && names.contains(&"ticker"), "{item}");
    let (code, body) = get(&a, "/configz").await;
    assert_eq!(code, 200, "{body}");
    let cfg: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cfg["kubeletconfig"]["port"], a.port, "{body}");
    assert_eq!(cfg["kubeletconfig"]["enableDebuggingHandlers"], true, "{body}");
    assert!(cfg["kubeletconfig"].get("kind").is_none(), "{body}");

    // /metrics and /metrics/probes in the text format, with upstream's names.
    let (code, body) = get(&a, "/metrics").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&format!("kubelet_node_name{{node=\"{}\"}} 1\n", a.node)), "{body}");
    assert!(body.contains("# TYPE kubelet_running_pods gauge\nkubelet_running_pods "), "{body}");
    let running: f64 = sample(&body, "kubelet_running_containers{container_state=\"running\"}");
    assert!(running >= 2.0, "{body}");
    assert!(sample(&body, "process_resident_memory_bytes") > 1e6, "{body}");
    check_exposition(&body);
    let probes = wait_for("a successful readiness probe is counted", Duration::from_secs(20), || async {
        let (_, body) = get(&a, "/metrics/probes").await;
        let key = format!(
            "prober_probe_total{{container=\"fixed\",namespace=\"default\",pod=\"{name}\",pod_uid=\"{}\",probe_type=\"Readiness\",result=\"successful\"}}",
            pod.metadata.uid.as_deref().unwrap()
        );
        if body.lines().any(|l| l.starts_with(&key)) { Ok(body) } else { Err(body) }
    })
    .await;
    check_exposition(&probes);

    // /logs/ lists /var/log; `..` and a symlink out of it are refused.
    let (code, body) = get(&a, "/logs/").await;
    assert_eq!(code, 200);
    assert!(body.starts_with("<!doctype html>") && body.contains("<a href="), "{body}");
    assert_eq!(get(&a, "/logs/../etc/passwd").await, (400, "invalid URL path\n".into()));
    assert_eq!(get(&a, "/logs/%2e%2e/etc/passwd").await, (400, "invalid URL path\n".into()));
    let link = PathBuf::from(format!("/var/log/rkubelet-test-escape-{}", std::process::id()));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink("/etc", &link).unwrap();
    let escaped = get(&a, &format!("/logs/{}/hostname", link.file_name().unwrap().to_str().unwrap())).await;
    std::fs::remove_file(&link).unwrap();
    assert_eq!(escaped.0, 404, "{escaped:?}");
    let file = PathBuf::from(format!("/var/log/rkubelet-test-{}.log", std::process::id()));
    std::fs::write(&file, "node log line\n").unwrap();
    let served = get(&a, &format!("/logs/{}", file.file_name().unwrap().to_str().unwrap())).await;
    std::fs::remove_file(&file).unwrap();
    assert_eq!(served, (200, "node log line\n".into()));

    // The read-only port: plain HTTP without credentials; pods and metrics, no debugging paths
    // (not even with debugging handlers on), no /configz.
    assert_eq!(plain_get(read_only_port, "GET", "/healthz").await, (200, "ok".into()));
    let (code, pods) = plain_get(read_only_port, "GET", "/pods").await;
    assert_eq!(code, 200);
    assert!(pods.contains(&format!("\"name\":\"{name}\"")), "{pods}");
    let (code, metrics) = plain_get(read_only_port, "GET", "/metrics").await;
    assert_eq!(code, 200);
    assert!(metrics.contains(&format!("kubelet_node_name{{node=\"{}\"}} 1", a.node)), "{metrics}");
    let disabled = (405, "Debug endpoints are disabled.\n".to_string());
    for path in
        [format!("/containerLogs/default/{name}/app"), format!("/exec/default/{name}/app?output=1"), "/logs/".into()]
    {
        assert_eq!(plain_get(read_only_port, "GET", &path).await, disabled, "{path}");
    }
    assert_eq!(plain_get(read_only_port, "POST", &format!("/run/default/{name}/app?cmd=id")).await, disabled);
    assert_eq!(plain_get(read_only_port, "GET", "/configz").await.0, 404);
    a.cleanup().await;

    // Debugging handlers off: 405 on their paths, /configz is gone, /pods stays.
    let a = Agent::start(
        Path::new(BIN),
        &env,
        "knodebug",
        AgentOptions {
            config_yaml: Some(OPEN_API_CONFIG.into()),
            args: vec!["--enable-debugging-handlers=false".into()],
            ..Default::default()
        },
    );
    wait_for("the kubelet API answers", Duration::from_secs(30), || async {
        request(a.port, "GET", "/healthz", &[], None).await.map_err(|e| format!("{e}\n{}", a.log()))
    })
    .await;
    for path in ["/containerLogs/default/p/c", "/logs/", "/runningpods/", "/exec/default/p/c"] {
        assert_eq!(get(&a, path).await, (405, "Debug endpoints are disabled.\n".into()), "{path}");
    }
    assert_eq!(get(&a, "/configz").await.0, 404);
    assert_eq!(get(&a, "/pods").await.0, 200);
    a.cleanup().await;
}

/// The line numbers of `line <n> 000…` lines, in order.
fn numbers(text: &str) -> Vec<u32> {
    text.lines().filter_map(|l| l.split_whitespace().nth(1)).filter_map(|n| n.parse().ok()).collect()
}

/// A CRI log file's messages (the text after `<time> <stream> <tag> `).
fn messages(cri_log: &str) -> String {
    cri_log.lines().filter_map(|l| l.splitn(4, ' ').nth(3)).map(|m| format!("{m}\n")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn container_logs_rotate_at_the_size_limit_and_nothing_is_lost() {
    use std::io::Read;
    let Some(env) = NodeEnv::require() else { return };
    let config = format!(
        "{OPEN_API_CONFIG}containerLogMaxSize: 4Ki\ncontainerLogMaxFiles: 3\ncontainerLogMonitorInterval: 3s\n"
    );
    let a =
        Agent::start(Path::new(BIN), &env, "logrot", AgentOptions { config_yaml: Some(config), ..Default::default() });
    // ~95-byte lines, 50 a second, 600 in all: about 14 rotations' worth at 4 KiB.
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: chatty
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {}
    command: ["sh", "-c", "i=0; while [ $i -lt 600 ]; do i=$((i+1)); echo \"line $i $(printf %080d 0)\"; sleep 0.02; done; while true; do sleep 1; done"]
"#,
        env.test_image
    );
    a.write_manifest("chatty.yaml", &manifest);
    let name = a.pod_name("chatty");
    let pod = wait_for("chatty running", Duration::from_secs(60), || async {
        let p = a.pod("chatty").await?;
        if running(&p, "main") { Ok(p) } else { Err(format!("{:?}", p.status)) }
    })
    .await;
    let dir = container_log_dir(&a, &pod, "main");
    let files = || {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".tmp"))
            .collect();
        names.sort();
        names
    };
    let base = format!("/containerLogs/default/{name}/main");
    // While it writes: never more than containerLogMaxFiles files; older rotations compressed.
    wait_for("all 600 lines written and the rotations settled", Duration::from_secs(60), || async {
        let names = files();
        assert!(names.len() <= 3, "more than containerLogMaxFiles: {names:?}");
        let (code, body) = get(&a, &format!("{base}?tailLines=1")).await;
        let done = code == 200 && numbers(&body) == [600];
        // Under the limit with nothing more written: no rotation is in progress or to come.
        let settled = std::fs::metadata(dir.join("0.log")).is_ok_and(|m| m.len() < 4096);
        if done && settled && names.iter().any(|n| n.ends_with(".gz")) {
            Ok(())
        } else {
            Err(format!("files {names:?}, last line {code} {body:?}"))
        }
    })
    .await;
    let names = files();
    assert!(names.len() <= 3 && names.contains(&"0.log".to_string()), "{names:?}");
    let gz: Vec<&String> = names.iter().filter(|n| n.ends_with(".gz")).collect();
    assert_eq!(gz.len(), 1, "{names:?}");
    // Every file kept, oldest first, holds consecutive lines up to the last: nothing lost or
    // doubled across the rotations (the lines before the oldest kept file were removed).
    let mut all = String::new();
    for n in &names[1..] {
        let path = dir.join(n);
        let mut text = String::new();
        if n.ends_with(".gz") {
            flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap()).read_to_string(&mut text).unwrap();
        } else {
            text = std::fs::read_to_string(&path).unwrap();
        }
        all.push_str(&messages(&text));
    }
    all.push_str(&messages(&std::fs::read_to_string(dir.join("0.log")).unwrap()));
    let kept = numbers(&all);
    let first = kept[0];
    assert!(first > 1, "old lines went with the excess files");
    assert_eq!(kept, (first..=600).collect::<Vec<_>>(), "consecutive lines across the kept files");
    // A read covers the uncompressed rotation and the current file, also with tailLines across them.
    let (code, body) = get(&a, &base).await;
    assert_eq!(code, 200);
    let read = numbers(&body);
    assert_eq!(read.last(), Some(&600));
    assert_eq!(read, (read[0]..=600).collect::<Vec<_>>(), "a read sees consecutive lines");
    let current = numbers(&messages(&std::fs::read_to_string(dir.join("0.log")).unwrap())).len();
    let n = current + 5;
    let (code, body) = get(&a, &format!("{base}?tailLines={n}")).await;
    assert_eq!(code, 200);
    assert_eq!(numbers(&body), ((601 - n as u32)..=600).collect::<Vec<_>>(), "tailLines crosses the rotation");
    a.cleanup().await;
}
