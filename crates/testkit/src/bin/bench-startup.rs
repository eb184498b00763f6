//! Pod start-up benchmark: N static pods (busybox sleep) at once through rkubelet, against the
//! floor — the same CRI calls (RunPodSandbox, ImageStatus, CreateContainer, StartContainer) issued
//! directly — plus rkubelet's RSS and CPU idle and with the pods running.
//!
//! Usage (after `scripts/node-env up` and `cargo build --release`; see `scripts/bench`):
//!   bench-startup --bin target/release/rkubelet [--pods 30] [--sample-secs 60]

// Test-only binary: a failed expectation aborts the benchmark with its reason.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cri::{ImageService, RemoteRuntime, RuntimeService, api};
use testkit::{Agent, AgentOptions, NodeEnv, wait_for};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(name: &str, mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99) = (percentile(&ms, 50.0), percentile(&ms, 99.0));
    println!(
        "{name}: n={} p50={p50:.0} ms p99={p99:.0} ms max={:.0} ms",
        ms.len(),
        ms.last().copied().unwrap_or(f64::NAN)
    );
    (p50, p99)
}

/// (RSS KiB, CPU seconds user+sys) of a process.
fn proc_usage(pid: u32) -> Option<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some((rss, ticks / 100.0))
}

async fn sample(pid: u32, secs: u64, label: &str) {
    let Some((_, cpu0)) = proc_usage(pid) else { return };
    let t0 = Instant::now();
    let mut max_rss = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        if let Some((rss, _)) = proc_usage(pid) {
            max_rss = max_rss.max(rss);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let Some((rss, cpu1)) = proc_usage(pid) else { return };
    let cores = (cpu1 - cpu0) / t0.elapsed().as_secs_f64();
    println!(
        "{label}: RSS {:.1} MiB (max {:.1} MiB), CPU {cores:.4} cores over {secs} s",
        rss as f64 / 1024.0,
        max_rss as f64 / 1024.0
    );
}

async fn through_rkubelet(bin: &std::path::Path, env: &NodeEnv, n: usize, sample_secs: u64) -> Vec<f64> {
    let a = Agent::start(bin, env, "bench", AgentOptions::default());
    let pid = a.pid().unwrap_or(0);
    wait_for("agent healthy", Duration::from_secs(30), || async { a.healthz().await.map(|_| ()) }).await;
    sample(pid, sample_secs, "rkubelet idle").await;
    for i in 0..n {
        a.write_manifest(
            &format!("b{i}.yaml"),
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: b{i}\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: c\n    image: {}\n    command: ['sleep', '3600']\n",
                env.test_image
            ),
        );
    }
    let pods = wait_for("all pods running", Duration::from_secs(300), || async {
        let pods = a.pods().await?;
        let running =
            pods.iter()
                .filter(|p| {
                    p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).is_some_and(|cs| {
                        cs.iter().all(|c| c.state.as_ref().and_then(|s| s.running.as_ref()).is_some())
                    })
                })
                .count();
        if running == n { Ok(pods) } else { Err(format!("{running}/{n} running")) }
    })
    .await;
    let mut lat = Vec::new();
    for p in &pods {
        let seen = p
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("kubernetes.io/config.seen"))
            .and_then(|s| s.parse::<k8s_openapi::jiff::Timestamp>().ok());
        // The CRI's own start time of the container (ns), against the manifest-seen stamp.
        let name = p.metadata.name.clone().unwrap_or_default();
        let filter = api::ContainerFilter {
            label_selector: HashMap::from([("io.kubernetes.pod.name".to_string(), name)]),
            ..Default::default()
        };
        let cri = a.cri();
        let started_ns = match cri.list_containers(Some(filter)).await.ok().and_then(|c| c.into_iter().next()) {
            Some(c) => cri.container_status(&c.id).await.ok().map(|s| s.started_at),
            None => None,
        };
        if let (Some(seen), Some(started)) = (seen, started_ns) {
            lat.push((i128::from(started) - seen.as_nanosecond()) as f64 / 1e6);
        }
    }
    sample(pid, sample_secs, &format!("rkubelet with {n} pods")).await;
    for i in 0..n {
        a.remove_manifest(&format!("b{i}.yaml"));
    }
    wait_for("all pods removed", Duration::from_secs(120), || async {
        let left = a.pods().await?.len();
        if left == 0 { Ok(()) } else { Err(format!("{left} left")) }
    })
    .await;
    a.cleanup().await;
    lat
}

/// The floor: the same CRI calls, issued directly and concurrently.
async fn direct_floor(env: &NodeEnv, n: usize) -> Vec<f64> {
    let rt = Arc::new(RemoteRuntime::connect(&env.runtime_endpoint, Duration::from_secs(120)).expect("cri"));
    let logs = tempfile::tempdir().expect("tmp");
    let run = std::process::id();
    let mut tasks = Vec::new();
    for i in 0..n {
        let rt = rt.clone();
        let image = env.test_image.clone();
        let log_dir = logs.path().join(format!("p{i}"));
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let uid = format!("floor-{run}-{i}");
            let sb = api::PodSandboxConfig {
                metadata: Some(api::PodSandboxMetadata {
                    name: format!("floor-{i}"),
                    uid: uid.clone(),
                    namespace: "bench".into(),
                    attempt: 0,
                }),
                hostname: format!("floor-{i}"),
                log_directory: log_dir.to_string_lossy().into_owned(),
                labels: HashMap::from([("rkubelet-bench".to_string(), uid.clone())]),
                ..Default::default()
            };
            std::fs::create_dir_all(&log_dir).ok();
            let id = rt.run_pod_sandbox(sb.clone(), "").await.expect("sandbox");
            let _ = rt.pod_sandbox_status(&id).await;
            let img =
                rt.image_status(api::ImageSpec { image: image.clone(), ..Default::default() }).await.ok().flatten();
            let image_ref = img.map(|i| i.id).unwrap_or(image);
            let cfg = api::ContainerConfig {
                metadata: Some(api::ContainerMetadata { name: "c".into(), attempt: 0 }),
                image: Some(api::ImageSpec { image: image_ref, ..Default::default() }),
                command: vec!["sleep".into(), "3600".into()],
                log_path: "c/0.log".into(),
                ..Default::default()
            };
            let cid = rt.create_container(&id, cfg, sb).await.expect("create");
            rt.start_container(&cid).await.expect("start");
            (t0.elapsed().as_secs_f64() * 1000.0, id)
        }));
    }
    let mut lat = Vec::new();
    let mut ids = Vec::new();
    for t in tasks {
        if let Ok((ms, id)) = t.await {
            lat.push(ms);
            ids.push(id);
        }
    }
    for id in ids {
        let _ = rt.stop_pod_sandbox(&id).await;
        let _ = rt.remove_pod_sandbox(&id).await;
    }
    lat
}

#[tokio::main]
async fn main() {
    let Some(env) = NodeEnv::from_env() else {
        eprintln!("run `eval \"$(scripts/node-env env)\"` first");
        std::process::exit(2);
    };
    let bin = PathBuf::from(arg("--bin").unwrap_or_else(|| "target/release/rkubelet".into()));
    let n: usize = arg("--pods").and_then(|v| v.parse().ok()).unwrap_or(30);
    let sample_secs: u64 = arg("--sample-secs").and_then(|v| v.parse().ok()).unwrap_or(60);
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        std::fs::read_to_string("/proc/version").unwrap_or_default().trim()
    );
    let t = Instant::now();
    let floor = direct_floor(&env, n).await;
    println!("floor wall time for {n} pods: {:.0} ms", t.elapsed().as_secs_f64() * 1000.0);
    let (f50, f99) = summary("floor (direct CRI) start latency", floor);
    let ours = through_rkubelet(&bin, &env, n, sample_secs).await;
    let (r50, r99) = summary("rkubelet manifest-seen → container started", ours);
    println!("ratio rkubelet/floor: p50 {:.2}x p99 {:.2}x", r50 / f50, r99 / f99);
}
