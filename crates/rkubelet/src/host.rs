//! What the HTTP servers ask of the kubelet ([`server::Host`], [`server::ApiHost`]): health,
//! the pod list, container logs and the runtime's running pods, answered from the status
//! manager and the CRI.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use core_kubelet::kubelet::SyncLoopHealth;
use core_kubelet::logs::{IsRunning, LogOptions, container_for_logs, read_logs};
use core_kubelet::pleg::PlegHealth;
use core_kubelet::prober::ProbeCounters;
use core_kubelet::runtime::labels;
use core_kubelet::stats::{CpuStats, MemoryStats, Summary};
use core_kubelet::status_manager::StatusManager;
use cri::RuntimeService;
use k8s_cri::v1 as cri_api;
use server::metrics::{Family, Kind};
use server::{ContainerTarget, HostError, LogRequest, MetricsSet, StreamOptions};
use tokio::sync::mpsc;

pub struct NodeHost {
    pub node: String,
    pub sync_loop: SyncLoopHealth,
    pub pleg: PlegHealth,
    pub statuses: StatusManager,
    pub cri: Arc<dyn RuntimeService>,
    /// Set once the kubelet (and its prober) exists.
    pub probe_counters: std::sync::OnceLock<Arc<ProbeCounters>>,
    pub stats: Arc<core_kubelet::stats::StatsProvider>,
    pub metrics: Arc<core_kubelet::metrics::KubeletMetrics>,
    /// The machine's identity and capacity (`/metrics/cadvisor`'s machine metrics).
    pub machine: sys::node_info::MachineInfo,
}

impl server::Host for NodeHost {
    fn healthz(&self) -> Result<(), String> {
        self.sync_loop.check()?;
        self.pleg.check()
    }
    fn pods(&self) -> serde_json::Value {
        self.statuses.pod_list()
    }
}

#[async_trait::async_trait]
impl server::ApiHost for NodeHost {
    async fn container_logs(&self, req: LogRequest) -> Result<mpsc::Receiver<Bytes>, HostError> {
        let entry = self
            .statuses
            .find(&req.namespace, &req.pod)
            .ok_or_else(|| HostError::not_found(format!("pod {:?} does not exist", req.pod)))?;
        let spec = entry.pod.spec.clone().unwrap_or_default();
        let declared =
            spec.containers.iter().map(|c| &c.name).chain(spec.init_containers.iter().flatten().map(|c| &c.name));
        let declared: Vec<&String> =
            declared.chain(spec.ephemeral_containers.iter().flatten().map(|c| &c.name)).collect();
        if !declared.contains(&&req.container) {
            return Err(HostError::not_found(format!("container {:?} not found in pod {:?}", req.container, req.pod)));
        }
        let full_id = container_for_logs(&entry.status, &req.pod, &req.container, req.previous)
            .map_err(HostError::bad_request)?;
        // `containerd://<id>` → `<id>` for the CRI; the full form names it in errors.
        let id = full_id.split_once("://").map_or(full_id.as_str(), |(_, id)| id).to_string();
        let opts = LogOptions {
            tail: req.tail_lines,
            limit_bytes: req.limit_bytes,
            since: req.since,
            follow: req.follow,
            timestamps: req.timestamps,
        };
        let (tx, rx) = mpsc::channel(64);
        let cri = self.cri.clone();
        tokio::spawn(async move {
            // As upstream, failures from here on come after the response started: their text
            // ends the body.
            let path = match cri.container_status(&id).await {
                Ok(s) => s.log_path,
                Err(e) => {
                    tracing::debug!(container = %id, "container status for logs: {e}");
                    let _ = tx.send(Bytes::from(format!("unable to retrieve container logs for {full_id}"))).await;
                    return;
                }
            };
            let running: IsRunning = {
                let (cri, id) = (cri.clone(), id.clone());
                Arc::new(move || {
                    let (cri, id) = (cri.clone(), id.clone());
                    Box::pin(async move {
                        cri.container_status(&id)
                            .await
                            .is_ok_and(|s| s.state == cri_api::ContainerState::ContainerRunning as i32)
                    })
                })
            };
            if let Err(e) = read_logs(std::path::Path::new(&path), opts, running, tx.clone()).await {
                tracing::info!(container = %id, "reading container logs: {e}");
                let _ = tx.send(Bytes::from(e)).await;
            }
        });
        Ok(rx)
    }

    async fn running_pods(&self) -> Result<serde_json::Value, HostError> {
        let containers = self
            .cri
            .list_containers(Some(cri_api::ContainerFilter {
                state: Some(cri_api::ContainerStateValue { state: cri_api::ContainerState::ContainerRunning as i32 }),
                ..Default::default()
            }))
            .await
            .map_err(|e| HostError::internal(e.to_string()))?;
        let sandboxes = self
            .cri
            .list_pod_sandbox(Some(cri_api::PodSandboxFilter {
                state: Some(cri_api::PodSandboxStateValue { state: cri_api::PodSandboxState::SandboxReady as i32 }),
                ..Default::default()
            }))
            .await
            .map_err(|e| HostError::internal(e.to_string()))?;
        Ok(running_pod_list(&sandboxes, &containers))
    }

    async fn exec(&self, t: ContainerTarget, cmd: Vec<String>, o: StreamOptions) -> Result<String, HostError> {
        let container_id = self.running_container(&t).await?.ok_or_else(|| container_not_found(&t))?;
        let req =
            cri_api::ExecRequest { container_id, cmd, tty: o.tty, stdin: o.stdin, stdout: o.stdout, stderr: o.stderr };
        self.cri.exec(req).await.map_err(streaming_error)
    }

    /// Upstream `GetAttach`: its own messages, and the tty of the container's spec (whether the
    /// process has a terminal cannot change after it started), not the request's.
    async fn attach(&self, t: ContainerTarget, o: StreamOptions) -> Result<String, HostError> {
        let full_name = format!("{}_{}", t.pod, t.namespace);
        let not_found = || HostError::internal(format!("container {} not found in pod {full_name}", t.container));
        let container_id = self.running_container(&t).await?.ok_or_else(not_found)?;
        let entry = self.statuses.find(&t.namespace, &t.pod);
        let pod = entry
            .map(|e| e.pod)
            .filter(|p| t.uid.as_ref().is_none_or(|u| p.metadata.uid.as_ref() == Some(u)))
            .ok_or_else(|| HostError::internal(format!("pod {full_name} not found")))?;
        let tty = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
            .find(|c| c.name == t.container)
            .ok_or_else(not_found)?
            .tty
            .unwrap_or(false);
        let req = cri_api::AttachRequest { container_id, tty, stdin: o.stdin, stdout: o.stdout, stderr: o.stderr };
        self.cri.attach(req).await.map_err(streaming_error)
    }

    /// Upstream `GetPortForward`: the pod must be running in the runtime; the forward goes to
    /// its newest sandbox.
    async fn port_forward(
        &self,
        namespace: &str,
        pod: &str,
        uid: Option<&str>,
        ports: Vec<i32>,
    ) -> Result<String, HostError> {
        let entry = self.statuses.find(namespace, pod).ok_or_else(|| HostError::not_found("pod does not exist"))?;
        let pod_uid = entry.pod.metadata.uid.clone().unwrap_or_default();
        if uid.is_some_and(|u| u != pod_uid) {
            return Err(HostError::not_found("pod not found"));
        }
        let sandboxes = self
            .cri
            .list_pod_sandbox(Some(cri_api::PodSandboxFilter {
                label_selector: [(labels::POD_UID.to_string(), pod_uid.clone())].into(),
                ..Default::default()
            }))
            .await
            .map_err(streaming_error)?;
        if !sandboxes.iter().any(|s| s.state == cri_api::PodSandboxState::SandboxReady as i32) {
            return Err(HostError::internal(format!("pod not found (\"{pod}_{namespace}\")")));
        }
        let sandbox = sandboxes.into_iter().max_by_key(|s| s.created_at).map(|s| s.id).unwrap_or_default();
        self.cri
            .port_forward(cri_api::PortForwardRequest { pod_sandbox_id: sandbox, port: ports })
            .await
            .map_err(streaming_error)
    }

    async fn metrics(&self, set: MetricsSet) -> Vec<Family> {
        match set {
            MetricsSet::Probes => {
                let series = self.probe_counters.get().map(|c| c.snapshot()).unwrap_or_default();
                vec![probe_family(series)]
            }
            MetricsSet::Cadvisor => {
                let series = self.stats.cgroup_series().await;
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                crate::cadvisor::families(series.as_deref().map_err(String::as_str), &self.machine, now_ms)
            }
            MetricsSet::Resource => {
                let summary = self.stats.summary(true).await;
                if let Err(e) = &summary {
                    tracing::warn!("resource metrics: {e}");
                }
                resource_families(summary.as_ref().ok())
            }
            MetricsSet::Kubelet => {
                let mut fams = vec![
                    Family::new("kubelet_node_name", "[ALPHA] The node's name. The count is always 1.", Kind::Gauge)
                        .with(vec![("node", self.node.clone())], 1.0),
                ];
                fams.extend(self.metrics.snapshot().into_iter().map(family_of));
                fams.extend(process_families(&sys::proc_self_stat()));
                fams
            }
        }
    }

    async fn summary(&self, only_cpu_and_memory: bool) -> Result<Vec<u8>, String> {
        server::restful_json(&self.stats.summary(only_cpu_and_memory).await?)
    }

    async fn run(&self, t: ContainerTarget, cmd: Vec<String>) -> Result<Vec<u8>, HostError> {
        let id = self.running_container(&t).await?.ok_or_else(|| container_not_found(&t))?;
        let r = self.cri.exec_sync(&id, cmd.clone(), 0).await.map_err(|e| HostError::internal(e.grpc_text()))?;
        if r.exit_code != 0 {
            return Err(HostError::internal(format!(
                "command '{}' exited with {}: {}",
                cmd.join(" "),
                r.exit_code,
                String::from_utf8_lossy(&r.stderr)
            )));
        }
        let mut out = r.stdout;
        out.extend_from_slice(&r.stderr);
        Ok(out)
    }
}

/// A family of the kubelet's own metrics, labels in client_golang's (sorted) order.
fn family_of(s: core_kubelet::metrics::Snapshot) -> Family {
    use core_kubelet::metrics::Value;
    let kind = match s.kind {
        core_kubelet::metrics::Kind::Counter => Kind::Counter,
        core_kubelet::metrics::Kind::Gauge => Kind::Gauge,
        core_kubelet::metrics::Kind::Histogram => Kind::Histogram,
    };
    let mut f = Family::new(s.name, s.help, kind);
    for (values, value) in s.series {
        let mut labels: Vec<(&'static str, String)> = s.label_names.iter().copied().zip(values).collect();
        labels.sort();
        f = match value {
            Value::Scalar(v) => f.with(labels, v),
            Value::Histogram { buckets, sum, count } => f.with_histogram(labels, &buckets, sum, count),
        };
    }
    f
}

/// Upstream's `/metrics/resource` collector over a CPU-and-memory summary: node, container and
/// pod CPU (core-seconds) and working set, each with its measurement time; container start
/// times; and `resource_scrape_error` (1 and nothing else when the summary failed).
fn resource_families(summary: Option<&Summary>) -> Vec<Family> {
    let scrape_error = |failed: bool| {
        Family::new(
            "resource_scrape_error",
            "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise",
            Kind::Gauge,
        )
        .with(vec![], if failed { 1.0 } else { 0.0 })
    };
    let Some(summary) = summary else { return vec![scrape_error(true)] };
    let mut node_cpu = Family::new(
        "node_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
        Kind::Counter,
    );
    let mut node_memory =
        Family::new("node_memory_working_set_bytes", "[STABLE] Current working set of the node in bytes", Kind::Gauge);
    let mut start = Family::new(
        "container_start_time_seconds",
        "[STABLE] Start time of the container since unix epoch in seconds",
        Kind::Gauge,
    );
    let mut container_cpu = Family::new(
        "container_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
        Kind::Counter,
    );
    let mut container_memory = Family::new(
        "container_memory_working_set_bytes",
        "[STABLE] Current working set of the container in bytes",
        Kind::Gauge,
    );
    let mut pod_cpu = Family::new(
        "pod_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
        Kind::Counter,
    );
    let mut pod_memory =
        Family::new("pod_memory_working_set_bytes", "[STABLE] Current working set of the pod in bytes", Kind::Gauge);
    // (value, milliseconds) of a CPU counter in core-seconds and of a working set.
    let cpu = |c: &Option<CpuStats>| {
        c.as_ref().and_then(|c| Some((c.usage_core_nano_seconds? as f64 / 1e9, c.time.millis())))
    };
    let memory =
        |m: &Option<MemoryStats>| m.as_ref().and_then(|m| Some((m.working_set_bytes? as f64, m.time.millis())));
    if let Some((v, t)) = cpu(&summary.node.cpu) {
        node_cpu = node_cpu.with_at(vec![], v, t);
    }
    if let Some((v, t)) = memory(&summary.node.memory) {
        node_memory = node_memory.with_at(vec![], v, t);
    }
    for pod in &summary.pods {
        let (ns, name) = (&pod.pod_ref.namespace, &pod.pod_ref.name);
        for c in &pod.containers {
            let labels = || vec![("container", c.name.clone()), ("namespace", ns.clone()), ("pod", name.clone())];
            if c.start_time.0 > 0 {
                start = start.with(labels(), c.start_time.0 as f64 / 1e9);
            }
            if let Some((v, t)) = cpu(&c.cpu) {
                container_cpu = container_cpu.with_at(labels(), v, t);
            }
            if let Some((v, t)) = memory(&c.memory) {
                container_memory = container_memory.with_at(labels(), v, t);
            }
        }
        let labels = || vec![("namespace", ns.clone()), ("pod", name.clone())];
        if let Some((v, t)) = cpu(&pod.cpu) {
            pod_cpu = pod_cpu.with_at(labels(), v, t);
        }
        if let Some((v, t)) = memory(&pod.memory) {
            pod_memory = pod_memory.with_at(labels(), v, t);
        }
    }
    vec![node_cpu, node_memory, start, container_cpu, container_memory, pod_cpu, pod_memory, scrape_error(false)]
}

/// Upstream `streaming.WriteError`: the runtime's NotFound is a 404, ResourceExhausted a 429,
/// anything else a 500, with the gRPC error's text.
fn streaming_error(e: cri::Error) -> HostError {
    let status = if e.is_not_found() {
        404
    } else if e.is_resource_exhausted() {
        429
    } else {
        500
    };
    HostError { status, message: e.grpc_text() }
}

/// Upstream `GetExec`/`RunInContainer` when the container is not running.
fn container_not_found(t: &ContainerTarget) -> HostError {
    HostError::internal(format!("container not found ({:?})", t.container))
}

impl NodeHost {
    /// The id of the named container running in the pod (upstream `findContainer` over the
    /// runtime's running pods: by UID when given, else by namespace and name); None when it is
    /// not running.
    async fn running_container(&self, t: &ContainerTarget) -> Result<Option<String>, HostError> {
        self.statuses.find(&t.namespace, &t.pod).ok_or_else(|| HostError::not_found("pod does not exist"))?;
        let mut selector = std::collections::HashMap::from([(labels::CONTAINER_NAME.to_string(), t.container.clone())]);
        match &t.uid {
            Some(uid) => {
                selector.insert(labels::POD_UID.into(), uid.clone());
            }
            None => {
                selector.insert(labels::POD_NAME.into(), t.pod.clone());
                selector.insert(labels::POD_NAMESPACE.into(), t.namespace.clone());
            }
        }
        let running = self
            .cri
            .list_containers(Some(cri_api::ContainerFilter {
                state: Some(cri_api::ContainerStateValue { state: cri_api::ContainerState::ContainerRunning as i32 }),
                label_selector: selector,
                ..Default::default()
            }))
            .await
            .map_err(streaming_error)?;
        Ok(running.into_iter().max_by_key(|c| c.created_at).map(|c| c.id))
    }
}

/// `prober_probe_total`, labels in client_golang's (sorted) order.
fn probe_family(series: Vec<(core_kubelet::prober::CounterKey, u64)>) -> Family {
    let mut f = Family::new(
        "prober_probe_total",
        "[ALPHA] Cumulative number of a liveness, readiness or startup probe for a container by result.",
        Kind::Counter,
    );
    for (k, n) in series {
        let labels = vec![
            ("container", k.container),
            ("namespace", k.namespace),
            ("pod", k.pod),
            ("pod_uid", k.pod_uid),
            ("probe_type", k.probe_type.to_string()),
            ("result", k.result.to_string()),
        ];
        f = f.with(labels, n as f64);
    }
    f
}

/// client_golang's process collector over `/proc/self`.
fn process_families(p: &sys::ProcStat) -> Vec<Family> {
    let gauge = |name, help, v: f64| Family::new(name, help, Kind::Gauge).with(vec![], v);
    vec![
        Family::new("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", Kind::Counter)
            .with(vec![], p.cpu_seconds),
        gauge("process_max_fds", "Maximum number of open file descriptors.", p.max_fds as f64),
        gauge("process_open_fds", "Number of open file descriptors.", p.open_fds as f64),
        gauge("process_resident_memory_bytes", "Resident memory size in bytes.", p.resident_bytes as f64),
        gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            p.start_time_seconds,
        ),
        gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", p.virtual_bytes as f64),
    ]
}

/// Upstream `Pod.ToAPIPod` over the runtime's running pods: name, namespace, UID and each
/// running container's name and image, as a `v1.PodList` sorted by namespace/name.
fn running_pod_list(sandboxes: &[cri_api::PodSandbox], containers: &[cri_api::Container]) -> serde_json::Value {
    let mut pods: BTreeMap<String, (String, String, Vec<serde_json::Value>)> = BTreeMap::new();
    let label = |l: &std::collections::HashMap<String, String>, k: &str| l.get(k).cloned().unwrap_or_default();
    for s in sandboxes {
        let uid = label(&s.labels, labels::POD_UID);
        pods.entry(uid).or_insert_with(|| {
            (label(&s.labels, labels::POD_NAMESPACE), label(&s.labels, labels::POD_NAME), Vec::new())
        });
    }
    for c in containers {
        let uid = label(&c.labels, labels::POD_UID);
        let pod = pods.entry(uid).or_insert_with(|| {
            (label(&c.labels, labels::POD_NAMESPACE), label(&c.labels, labels::POD_NAME), Vec::new())
        });
        let image = c.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
        pod.2.push(
            serde_json::json!({ "name": label(&c.labels, labels::CONTAINER_NAME), "image": image, "resources": {} }),
        );
    }
    let mut items: Vec<(String, String, serde_json::Value)> = pods
        .into_iter()
        .map(|(uid, (ns, name, mut containers))| {
            containers.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            let item = serde_json::json!({
                "metadata": { "name": name, "namespace": ns, "uid": uid, "creationTimestamp": null },
                "spec": { "containers": containers },
                "status": {},
            });
            (ns, name, item)
        })
        .collect();
    items.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    serde_json::json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": items.into_iter().map(|i| i.2).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn pod_labels(uid: &str, name: &str) -> HashMap<String, String> {
        HashMap::from([
            (labels::POD_UID.to_string(), uid.to_string()),
            (labels::POD_NAME.to_string(), name.to_string()),
            (labels::POD_NAMESPACE.to_string(), "default".to_string()),
        ])
    }

    #[test]
    fn probe_series_carry_upstreams_labels_in_order() {
        let key = core_kubelet::prober::CounterKey {
            probe_type: "Liveness",
            result: "failed",
            container: "c".into(),
            pod: "p".into(),
            namespace: "ns".into(),
            pod_uid: "u".into(),
        };
        let text = server::metrics::render(&[probe_family(vec![(key, 4)])]);
        assert!(
            text.ends_with(
                "prober_probe_total{container=\"c\",namespace=\"ns\",pod=\"p\",pod_uid=\"u\",probe_type=\"Liveness\",result=\"failed\"} 4\n"
            ),
            "{text}"
        );
        let p = process_families(&sys::ProcStat { open_fds: 7, ..Default::default() });
        assert!(p.iter().any(|f| f.name == "process_open_fds" && f.samples[0].value == 7.0));
    }

    #[test]
    fn running_pods_group_containers_by_pod_uid() {
        let sandboxes = vec![
            cri_api::PodSandbox { labels: pod_labels("u1", "web"), ..Default::default() },
            cri_api::PodSandbox { labels: pod_labels("u2", "idle"), ..Default::default() },
        ];
        let mut l = pod_labels("u1", "web");
        l.insert(labels::CONTAINER_NAME.into(), "app".into());
        let containers = vec![cri_api::Container {
            labels: l,
            image: Some(cri_api::ImageSpec { image: "sha256:abc".into(), ..Default::default() }),
            ..Default::default()
        }];
        let list = running_pod_list(&sandboxes, &containers);
        assert_eq!(list["kind"], "PodList");
        let items = list["items"].as_array().expect("items");
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["metadata"]["name"], "idle");
        assert_eq!(items[0]["spec"]["containers"], serde_json::json!([]));
        assert_eq!(items[1]["metadata"]["uid"], "u1");
        assert_eq!(items[1]["spec"]["containers"][0]["name"], "app");
        assert_eq!(items[1]["spec"]["containers"][0]["image"], "sha256:abc");
    }

    /// A host over a fake runtime that knows pod `default/web` (UID `u1`) with container `app`
    /// (tty in its spec), running in a ready sandbox unless `sandbox_ready` is false.
    async fn host_with_pod(sandbox_ready: bool) -> (NodeHost, Arc<cri::fake::FakeRuntime>) {
        use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodStatus};
        let rt = Arc::new(cri::fake::FakeRuntime::new());
        let sandbox_config = cri_api::PodSandboxConfig {
            metadata: Some(cri_api::PodSandboxMetadata {
                name: "web".into(),
                namespace: "default".into(),
                uid: "u1".into(),
                attempt: 0,
            }),
            labels: pod_labels("u1", "web"),
            ..Default::default()
        };
        let sb = rt.run_pod_sandbox(sandbox_config.clone(), "").await.expect("sandbox");
        let mut l = pod_labels("u1", "web");
        l.insert(labels::CONTAINER_NAME.into(), "app".into());
        let config = cri_api::ContainerConfig {
            metadata: Some(cri_api::ContainerMetadata { name: "app".into(), attempt: 0 }),
            image: Some(cri_api::ImageSpec { image: "busybox".into(), ..Default::default() }),
            labels: l,
            ..Default::default()
        };
        rt.add_image("busybox");
        let id = rt.create_container(&sb, config, sandbox_config).await.expect("container");
        rt.start_container(&id).await.expect("start");
        if !sandbox_ready {
            rt.stop_pod_sandbox(&sb).await.expect("stop sandbox");
        }
        let statuses = StatusManager::default();
        let mut pod = Pod::default();
        pod.metadata.name = Some("web".into());
        pod.metadata.namespace = Some("default".into());
        pod.metadata.uid = Some("u1".into());
        pod.spec = Some(PodSpec {
            containers: vec![Container { name: "app".into(), tty: Some(true), ..Default::default() }],
            ..Default::default()
        });
        statuses.set(Arc::new(pod), PodStatus::default());
        let dir = std::env::temp_dir();
        let stats = Arc::new(core_kubelet::stats::StatsProvider::new(
            rt.clone(),
            rt.clone(),
            Arc::new(core_kubelet::stats::RealHostStats::new(dir.clone(), 0)),
            Arc::new(core_kubelet::clock::RealClock),
            core_kubelet::stats::StatsSettings {
                node_name: "n".into(),
                root_dir: dir.clone(),
                pod_logs_dir: dir,
                volume_stats_agg_period: std::time::Duration::from_secs(60),
                pod_cgroups: None,
            },
        ));
        let host = NodeHost {
            node: "n".into(),
            sync_loop: SyncLoopHealth::new(std::time::Duration::from_secs(60)),
            pleg: core_kubelet::pleg::Pleg::new(rt.clone(), std::time::Duration::from_secs(1)).health(),
            statuses,
            cri: rt.clone(),
            probe_counters: std::sync::OnceLock::new(),
            stats,
            metrics: core_kubelet::metrics::KubeletMetrics::new(),
            machine: Default::default(),
        };
        (host, rt)
    }

    fn app() -> ContainerTarget {
        ContainerTarget { namespace: "default".into(), pod: "web".into(), uid: None, container: "app".into() }
    }

    #[tokio::test]
    async fn attach_takes_tty_from_the_containers_spec() {
        use server::ApiHost as _;
        let (host, _rt) = host_with_pod(true).await;
        let no_tty = StreamOptions { stdin: true, stdout: true, stderr: true, tty: false };
        let url = host.attach(app(), no_tty).await.expect("attach");
        assert!(url.ends_with("?tty=true"), "the spec says tty, the request does not: {url}");

        let other_uid = ContainerTarget { uid: Some("u2".into()), ..app() };
        let e = host.attach(other_uid, no_tty).await.expect_err("another pod's UID");
        assert_eq!((e.status, e.message.as_str()), (500, "container app not found in pod web_default"));
        let nope = ContainerTarget { container: "nope".into(), ..app() };
        let e = host.attach(nope, no_tty).await.expect_err("no such container");
        assert_eq!((e.status, e.message.as_str()), (500, "container nope not found in pod web_default"));
    }

    #[tokio::test]
    async fn port_forward_needs_a_ready_sandbox_with_upstreams_words() {
        use server::ApiHost as _;
        let (host, _rt) = host_with_pod(true).await;
        let url = host.port_forward("default", "web", None, vec![80]).await.expect("ready sandbox");
        assert!(url.starts_with("http://fake-streaming/portforward/"), "{url}");
        let e = host.port_forward("default", "web", Some("u2"), vec![80]).await.expect_err("another UID");
        assert_eq!((e.status, e.message.as_str()), (404, "pod not found"));
        let e = host.port_forward("default", "gone", None, vec![80]).await.expect_err("unknown pod");
        assert_eq!((e.status, e.message.as_str()), (404, "pod does not exist"));

        let (host, _rt) = host_with_pod(false).await;
        let e = host.port_forward("default", "web", None, vec![80]).await.expect_err("sandbox not ready");
        assert_eq!((e.status, e.message.as_str()), (500, "pod not found (\"web_default\")"));
    }
}
