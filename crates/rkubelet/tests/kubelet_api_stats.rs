//! End-to-end: `/stats/summary` and `/metrics/resource` on a standalone agent (anonymous with
//! AlwaysAllow) over the real containerd, checked field by field: the node's CPU, memory,
//! filesystems, network and rlimit; a pod's containers with CPU, working set, writable layer
//! and logs, its emptyDir volume and ephemeral storage; the CPU rate between two reads;
//! `only_cpu_and_memory`; and the resource metrics' names, labels and timestamps, which
//! promtool (when installed) must accept along with `/metrics` and `/metrics/cadvisor` (the
//! pod's cgroups and containers with cAdvisor's labels); and `tlsMinVersion` refusing a TLS
//! 1.2 client.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use testkit::https::request;
use testkit::{Agent, AgentOptions, NodeEnv, wait_for};

mod common;

use common::{BIN, OPEN_API_CONFIG};

/// What promtool's linter says of cAdvisor's own exposition, which `/metrics/cadvisor` keeps
/// (upstream's label and metric names).
const CADVISOR_LINT: &[&str] = &[
    "cadvisor_version_info label names should be written in 'snake_case' not 'camelCase'",
    "container_memory_failcnt counter metrics should have \"_total\" suffix",
];

fn manifest(image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: busy
spec:
  terminationGracePeriodSeconds: 2
  volumes:
  - name: scratch
    emptyDir: {{}}
  containers:
  - name: app
    image: {image}
    volumeMounts:
    - name: scratch
      mountPath: /scratch
    command: ["sh", "-c", "head -c 300000 /dev/zero > /scratch/blob; i=0; while true; do i=$((i+1)); echo line$i; done | head -n 20000; trap 'exit 0' TERM; while true; do :; done"]
"#
    )
}

async fn get_json(a: &Agent, path: &str) -> Value {
    let (code, body) = request(a.port, "GET", path, &[], None).await.unwrap();
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn u64_at(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or_else(|| panic!("no number at {pointer} in {v}"))
}

/// `promtool check metrics` on `body` when promtool is installed (scripts/node-env installs it):
/// it must parse, and lint problems other than `known` (upstream's own output has these) fail.
fn promtool_accepts_except(body: &str, known: &[&str]) {
    use std::io::Write;
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not installed: exposition not checked by it");
        return;
    };
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Exit 3 is lint problems only (one per line); anything else but 0 is a parse error.
    let unknown: Vec<&str> = report.lines().filter(|l| !known.contains(&l.trim())).collect();
    let lint_only = out.status.code() == Some(3);
    assert!(out.status.success() || (lint_only && unknown.is_empty()), "promtool: {report}\n{body}");
}

fn promtool_accepts(body: &str) {
    promtool_accepts_except(body, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn summary_and_resource_metrics_report_the_node_and_its_pods() {
    let Some(env) = NodeEnv::require() else { return };
    let a = Agent::start(
        Path::new(BIN),
        &env,
        "kstats",
        AgentOptions {
            config_yaml: Some(format!("{OPEN_API_CONFIG}tlsMinVersion: VersionTLS13\n")),
            ..Default::default()
        },
    );
    a.write_manifest("busy.yaml", &manifest(&env.test_image));
    let name = a.pod_name("busy");
    let pod_of =
        |s: &Value| s["pods"].as_array().and_then(|p| p.iter().find(|p| p["podRef"]["name"] == name.as_str())).cloned();
    // The pod is in the summary once its container runs and has written its blob and logs.
    let summary = wait_for("the pod's stats with its blob and logs", Duration::from_secs(90), || async {
        let (code, body) = request(a.port, "GET", "/stats/summary", &[], None).await?;
        let s: Value = serde_json::from_str(&body).map_err(|e| format!("{code} {e}: {body}\n{}", a.log()))?;
        let pod = pod_of(&s).ok_or_else(|| format!("no pod yet: {body}"))?;
        let logs = pod.pointer("/containers/0/logs/usedBytes").and_then(Value::as_u64).unwrap_or(0);
        let blob = pod.pointer("/volume/0/usedBytes").and_then(Value::as_u64).unwrap_or(0);
        if logs >= 100_000 && blob >= 300_000 { Ok(s) } else { Err(format!("logs {logs}, volume {blob}")) }
    })
    .await;

    // tlsMinVersion: VersionTLS13 — the requests above spoke TLS 1.3; a TLS 1.2 client is refused.
    let refused = testkit::https::tls12_handshake(a.port).await;
    assert!(refused.as_ref().is_err_and(|e| e.starts_with("TLS: ")), "a TLS 1.2 handshake: {refused:?}");

    let node = &summary["node"];
    assert_eq!(node["nodeName"], a.node.as_str());
    let (_, raw) = request(a.port, "GET", "/stats/summary", &[], None).await.unwrap();
    assert!(raw.starts_with("{\n \"node\": {\n  \"nodeName\": "), "upstream's field order and indent: {raw}");
    assert!(node["startTime"].as_str().unwrap().ends_with('Z'));
    assert!(u64_at(node, "/cpu/usageCoreNanoSeconds") > 0);
    let working_set = u64_at(node, "/memory/workingSetBytes");
    assert!(working_set > 0 && working_set <= u64_at(node, "/memory/usageBytes"), "{node}");
    assert!(u64_at(node, "/memory/availableBytes") > 0);
    assert!(u64_at(node, "/fs/capacityBytes") >= u64_at(node, "/fs/availableBytes"));
    assert!(u64_at(node, "/fs/inodes") > 0);
    assert!(u64_at(node, "/runtime/imageFs/usedBytes") > 0, "containerd reports its images: {node}");
    assert!(u64_at(node, "/runtime/imageFs/capacityBytes") > 0);
    assert_eq!(node["runtime"]["imageFs"], node["runtime"]["containerFs"]);
    assert!(u64_at(node, "/rlimit/maxpid") > 0 && u64_at(node, "/rlimit/curproc") > 0);
    assert!(node["network"]["interfaces"].as_array().is_some_and(|i| !i.is_empty()), "{node}");

    let pod = pod_of(&summary).unwrap();
    assert_eq!(pod["podRef"]["namespace"], "default");
    assert_eq!(pod["podRef"]["uid"].as_str().map(str::len), Some(32), "a static pod's hashed UID");
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let app = &containers[0];
    assert_eq!(app["name"], "app");
    assert!(u64_at(app, "/cpu/usageCoreNanoSeconds") > 0);
    assert!(u64_at(app, "/memory/workingSetBytes") > 0);
    assert!(app["memory"].get("availableBytes").is_none(), "no memory limit: {app}");
    assert!(app["rootfs"]["usedBytes"].is_u64() && u64_at(app, "/rootfs/capacityBytes") > 0, "{app}");
    let logs = u64_at(app, "/logs/usedBytes");
    assert_eq!(pod["volume"][0]["name"], "scratch");
    let volume = u64_at(&pod, "/volume/0/usedBytes");
    assert!(u64_at(&pod, "/ephemeral-storage/usedBytes") >= logs + volume, "{pod}");
    // The pod's CPU is its own cgroup's (read after the container's): the container and more.
    assert!(u64_at(&pod, "/cpu/usageCoreNanoSeconds") >= u64_at(app, "/cpu/usageCoreNanoSeconds"), "{pod}");
    assert!(u64_at(&pod, "/memory/workingSetBytes") > 0, "{pod}");
    // The pause process and the app's shell (and its sleep), counted in the pod's cgroup tree.
    assert!(u64_at(&pod, "/process_stats/process_count") >= 2, "{pod}");
    // The sandbox's own network namespace: the CNI bridge's eth0, not the host's interfaces.
    assert_eq!(pod["network"]["name"], "eth0", "{pod}");
    let pod_ifaces: Vec<&str> =
        pod["network"]["interfaces"].as_array().unwrap().iter().filter_map(|i| i["name"].as_str()).collect();
    assert_eq!(pod_ifaces, ["eth0"], "{pod}");
    assert!(pod["network"]["txBytes"].is_u64());

    // A later read has a rate: the busy loop uses most of a core.
    let later = wait_for("a CPU rate for the container", Duration::from_secs(30), || async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = get_json(&a, "/stats/summary?only_cpu_and_memory=true").await;
        let pod = pod_of(&s).ok_or("pod gone")?;
        match pod.pointer("/containers/0/cpu/usageNanoCores").and_then(Value::as_u64) {
            Some(n) => Ok((s, n)),
            None => Err(format!("no rate yet: {pod}")),
        }
    })
    .await;
    assert!(later.1 > 100_000_000, "a spinning shell uses more than 0.1 core: {}", later.1);
    assert!(later.0["node"].get("fs").is_none() && later.0["node"].get("runtime").is_none(), "only CPU and memory");
    assert!(pod_of(&later.0).unwrap()["containers"][0].get("logs").is_none());
    let (code, _) = request(a.port, "POST", "/stats/summary", &[], None).await.unwrap();
    assert_eq!(code, 200, "POST as upstream");

    // /metrics/resource: the figures metrics-server reads, with millisecond timestamps.
    let (code, body) = request(a.port, "GET", "/metrics/resource", &[], None).await.unwrap();
    assert_eq!(code, 200);
    let series =
        format!("container_cpu_usage_seconds_total{{container=\"app\",namespace=\"default\",pod=\"{name}\"}} ");
    let line = body.lines().find(|l| l.starts_with(&series)).unwrap_or_else(|| panic!("{series} missing:\n{body}"));
    let fields: Vec<&str> = line[series.len()..].split(' ').collect();
    assert_eq!(fields.len(), 2, "value and timestamp: {line}");
    assert!(fields[0].parse::<f64>().unwrap() > 0.0);
    let ts: i64 = fields[1].parse().unwrap();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((now_ms - ts).abs() < 120_000, "timestamp {ts} vs now {now_ms}");
    for family in [
        "# TYPE node_cpu_usage_seconds_total counter",
        "# TYPE node_memory_working_set_bytes gauge",
        "# TYPE container_start_time_seconds gauge",
        "# TYPE container_memory_working_set_bytes gauge",
        "# TYPE pod_cpu_usage_seconds_total counter",
        "# TYPE pod_memory_working_set_bytes gauge",
        "# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise",
    ] {
        assert!(body.contains(family), "{family} missing:\n{body}");
    }
    assert!(body.contains(&format!("pod_memory_working_set_bytes{{namespace=\"default\",pod=\"{name}\"}} ")), "{body}");
    assert!(body.contains("\nresource_scrape_error 0\n"), "{body}");
    promtool_accepts(&body);
    // The PLEG's next relist (every second) counts the running pod.
    let kubelet_metrics = wait_for("kubelet_running_pods counted by the PLEG", Duration::from_secs(10), || async {
        let (_, body) = request(a.port, "GET", "/metrics", &[], None).await?;
        if body.contains("\nkubelet_running_pods 0\n") { Err(body) } else { Ok(body) }
    })
    .await;
    promtool_accepts(&kubelet_metrics);
    // The kubelet's own metrics, counted as it worked: the pod's sandbox and container started,
    // its start observed, CRI calls by operation, PLEG relists.
    let value = |series: &str| -> f64 {
        kubelet_metrics
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{series} missing:\n{kubelet_metrics}"))
    };
    assert!(value("kubelet_started_pods_total") >= 1.0);
    assert!(value("kubelet_started_containers_total{container_type=\"container\"}") >= 1.0);
    assert!(value("kubelet_pod_start_duration_seconds_count") >= 1.0);
    assert!(value("kubelet_pod_worker_duration_seconds_count{operation_type=\"create\"}") >= 1.0);
    assert!(value("kubelet_runtime_operations_total{operation_type=\"run_podsandbox\"}") >= 1.0);
    assert!(
        value("kubelet_runtime_operations_duration_seconds_bucket{operation_type=\"list_podsandbox\",le=\"+Inf\"}")
            >= 1.0
    );
    assert!(value("kubelet_pleg_relist_duration_seconds_count") >= 1.0);
    assert!(value("kubelet_running_containers{container_state=\"running\"}") >= 1.0);
    assert!(value("kubelet_running_pods") >= 1.0);

    // /metrics/cadvisor: the root, the QoS and pod cgroups and the containers in them, with
    // cAdvisor's labels; the pod cgroup labelled with its pod, the sandbox with the pod network.
    let (code, cadvisor) = request(a.port, "GET", "/metrics/cadvisor", &[], None).await.unwrap();
    assert_eq!(code, 200);
    promtool_accepts_except(&cadvisor, CADVISOR_LINT);
    let uid = pod["podRef"]["uid"].as_str().unwrap();
    let pod_cgroup = format!("/kubepods/besteffort/pod{uid}");
    // (labels, value) of a family's samples.
    let samples = |family: &str| -> Vec<(String, f64)> {
        cadvisor
            .lines()
            .filter_map(|l| l.strip_prefix(family)?.strip_prefix('{'))
            .filter_map(|rest| {
                let (labels, values) = rest.split_once("} ")?;
                Some((labels.to_string(), values.split(' ').next()?.parse().ok()?))
            })
            .collect()
    };
    let cpu = samples("container_cpu_usage_seconds_total");
    let pod_cpu = cpu
        .iter()
        .find(|(l, _)| l == &format!("container=\"\",cpu=\"total\",id=\"{pod_cgroup}\",image=\"\",name=\"\",namespace=\"default\",pod=\"{name}\""))
        .unwrap_or_else(|| panic!("no pod cgroup series for {pod_cgroup}:\n{cadvisor}"));
    let app_cpu = cpu
        .iter()
        .find(|(l, _)| l.starts_with("container=\"app\",") && l.contains(&format!("id=\"{pod_cgroup}/")))
        .unwrap_or_else(|| panic!("no container series:\n{cadvisor}"));
    assert!(app_cpu.0.contains("image=\"") && app_cpu.0.contains("busybox"), "{}", app_cpu.0);
    assert!(pod_cpu.1 >= app_cpu.1 && app_cpu.1 > 0.0, "pod {} vs container {}", pod_cpu.1, app_cpu.1);
    // The container's `name` is its 64-hex ID, the last part of its cgroup.
    let id_of = |labels: &str| labels.split("name=\"").nth(1).and_then(|v| v.split('"').next()).unwrap().to_string();
    let app_id = id_of(&app_cpu.0);
    assert!(app_id.len() == 64 && app_cpu.0.contains(&format!("id=\"{pod_cgroup}/{app_id}\"")), "{}", app_cpu.0);
    // The sandbox: no container name, its ID and pause image, the pod's eth0.
    let rx = samples("container_network_receive_bytes_total");
    let sandbox = rx
        .iter()
        .find(|(l, _)| l.contains(&format!("id=\"{pod_cgroup}/")) && l.contains("interface=\"eth0\""))
        .unwrap_or_else(|| panic!("no sandbox network series:\n{cadvisor}"));
    assert!(
        sandbox.0.starts_with("container=\"\",") && sandbox.0.contains(&format!("pod=\"{name}\"")),
        "{}",
        sandbox.0
    );
    assert!(!sandbox.0.contains("image=\"\""), "the pause image: {}", sandbox.0);
    assert!(rx.iter().any(|(l, _)| l.contains("id=\"/\"")), "the host's interfaces on the root");
    assert!(!rx.iter().any(|(l, _)| l.starts_with("container=\"app\"")), "containers share the sandbox's network");
    let machine_memory = samples("machine_memory_bytes")[0].1;
    let root_limit = samples("container_spec_memory_limit_bytes")
        .into_iter()
        .find(|(l, _)| l.contains("id=\"/\""))
        .unwrap_or_else(|| panic!("no root memory limit:\n{cadvisor}"));
    assert_eq!(root_limit.1, machine_memory, "the root's limit is the machine's memory");
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    assert_eq!(samples("machine_cpu_cores")[0].1, cores);
    assert!(
        samples("container_spec_cpu_shares")
            .iter()
            .any(|(l, v)| l.contains("id=\"/kubepods/besteffort\"") && *v == 2.0)
    );
    assert!(cadvisor.contains("\ncontainer_scrape_error 0\n"), "{cadvisor}");
    a.cleanup().await;
}
