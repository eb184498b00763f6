//! The runtime manager (upstream `kubeGenericRuntimeManager`): reads a pod's state back from CRI
//! and carries out the actions `compute_pod_actions` decides — sandbox, image pulls, init and app
//! containers with crash-loop backoff, graceful kills and removal.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cri::{RuntimeService, api};
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::clock::{Clock, from_nanos};
use crate::config::format_duration;
use crate::container::{
    ContainerRuntimeStatus, ContainerState, PodRuntimeStatus, SandboxRuntimeStatus, SyncReasons, WaitingReason,
};
use crate::events::{EventRecorder, EventType, container_event, pod_event, pod_key};
use crate::metrics::KubeletMetrics;
use crate::pod_dirs::PodDirs;
use crate::prober::{ProbeResults, ProbeType};
use crate::runtime::actions::compute_pod_actions;
use crate::runtime::backoff::Backoff;
use crate::runtime::container_config::generate_container_config;
use crate::runtime::env::{EnvContext, fetch_env_objects, make_env};
use crate::runtime::hooks::{format_pod, run_hook};
use crate::runtime::images::ImageManager;
use crate::runtime::labels::{self, restore_specs, uid_of};
use crate::runtime::ordering::TerminationOrdering;
use crate::runtime::sandbox::{RuntimeSettings, generate_sandbox_config, pod_hostname, pod_logs_dir};
use crate::volume::VolumeManager;

pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
pub const CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";
pub const CREATE_CONTAINER_ERROR: &str = "CreateContainerError";
pub const RUN_CONTAINER_ERROR: &str = "RunContainerError";
/// Sandbox failures are reported on the pod, not a container.
pub const FAILED_CREATE_POD_SANDBOX: &str = "FailedCreatePodSandBox";

/// What one sync did that status must show, and when to look again.
#[derive(Debug, Default)]
pub struct SyncResult {
    /// Waiting reasons of containers that could not be started.
    pub reasons: SyncReasons,
    /// Sync again after this long even if nothing happens (a backoff ends).
    pub requeue_after: Option<Duration>,
    /// A failure of the pod as a whole (sandbox, volumes), already recorded as an event.
    pub error: Option<String>,
    /// An init container failed under restartPolicy Never: the pod has failed.
    pub init_failed: bool,
}

impl SyncResult {
    fn wait(&mut self, name: &str, reason: WaitingReason, after: Option<Duration>) {
        self.reasons.insert(name.to_string(), reason);
        self.requeue(after);
    }
    fn requeue(&mut self, after: Option<Duration>) {
        if let Some(a) = after {
            self.requeue_after = Some(self.requeue_after.map_or(a, |b| b.min(a)));
        }
    }
}

pub struct RuntimeManager {
    runtime: Arc<dyn RuntimeService>,
    images: ImageManager,
    volumes: Arc<VolumeManager>,
    dirs: PodDirs,
    settings: RuntimeSettings,
    recorder: Arc<dyn EventRecorder>,
    clock: Arc<dyn Clock>,
    crash_backoff: Mutex<Backoff>,
    probes: ProbeResults,
    metrics: Option<Arc<KubeletMetrics>>,
}

/// Retry delay after a failure that has no backoff of its own (upstream's worker backoff).
const FAILURE_REQUEUE: Duration = Duration::from_secs(10);

impl RuntimeManager {
    pub fn new(
        runtime: Arc<dyn RuntimeService>,
        images: Arc<dyn cri::ImageService>,
        volumes: Arc<VolumeManager>,
        dirs: PodDirs,
        settings: RuntimeSettings,
        recorder: Arc<dyn EventRecorder>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            runtime,
            images: ImageManager::new(images, recorder.clone(), clock.clone()),
            volumes,
            dirs,
            settings,
            recorder,
            clock,
            crash_backoff: Mutex::new(Backoff::crash_loop()),
            probes: ProbeResults::detached(),
            metrics: None,
        }
    }

    /// Counts started pods and containers (and the failures) in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<KubeletMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Uses the prober's results (liveness/startup failures kill containers).
    pub fn with_probe_results(mut self, probes: ProbeResults) -> Self {
        self.probes = probes;
        self
    }

    pub fn probe_results(&self) -> &ProbeResults {
        &self.probes
    }

    pub fn settings(&self) -> &RuntimeSettings {
        &self.settings
    }

    /// Everything the runtime has for one pod UID, newest first.
    pub async fn get_pod_status(&self, uid: &str) -> cri::Result<PodRuntimeStatus> {
        let selector = HashMap::from([(labels::POD_UID.to_string(), uid.to_string())]);
        let sandboxes = self
            .runtime
            .list_pod_sandbox(Some(api::PodSandboxFilter { label_selector: selector.clone(), ..Default::default() }))
            .await?;
        let containers = self
            .runtime
            .list_containers(Some(api::ContainerFilter { label_selector: selector, ..Default::default() }))
            .await?;
        let mut out = PodRuntimeStatus { uid: uid.to_string(), ..Default::default() };
        for sb in sandboxes {
            let meta = sb.metadata.clone().unwrap_or_default();
            out.name = meta.name.clone();
            out.namespace = meta.namespace.clone();
            let ready = sb.state == api::PodSandboxState::SandboxReady as i32;
            let mut s = SandboxRuntimeStatus {
                id: sb.id.clone(),
                ready,
                created_at: sb.created_at,
                attempt: meta.attempt,
                ips: vec![],
                host_network: false,
            };
            match self.runtime.pod_sandbox_status(&sb.id).await {
                Ok(st) => {
                    s.host_network = st
                        .linux
                        .as_ref()
                        .and_then(|l| l.namespaces.as_ref())
                        .and_then(|n| n.options.as_ref())
                        .is_some_and(|o| o.network == api::NamespaceMode::Node as i32);
                    if let Some(net) = st.network.filter(|_| ready) {
                        s.ips = std::iter::once(net.ip)
                            .chain(net.additional_ips.into_iter().map(|i| i.ip))
                            .filter(|ip| !ip.is_empty())
                            .collect();
                    }
                }
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
            out.sandboxes.push(s);
        }
        out.sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        for c in containers {
            let st = match self.runtime.container_status(&c.id).await {
                Ok(st) => st,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            out.containers.push(ContainerRuntimeStatus {
                id: c.id.clone(),
                name: c.labels.get(labels::CONTAINER_NAME).cloned().unwrap_or_default(),
                state: match st.state {
                    0 => ContainerState::Created,
                    1 => ContainerState::Running,
                    2 => ContainerState::Exited,
                    _ => ContainerState::Unknown,
                },
                created_at: st.created_at,
                started_at: st.started_at,
                finished_at: st.finished_at,
                exit_code: st.exit_code,
                image: c.image.as_ref().map(|i| i.user_specified_image.clone()).unwrap_or_default(),
                image_ref: st.image_ref.clone(),
                restart_count: labels::restart_count(&c.annotations),
                hash: c.annotations.get(labels::CONTAINER_HASH).cloned().unwrap_or_default(),
                message: crate::runtime::termination::container_message(&st, &c.annotations),
                reason: st.reason,
            });
        }
        out.containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        Ok(out)
    }

    /// One step towards the pod's desired state.
    pub async fn sync_pod(&self, pod: &Pod, status: &PodRuntimeStatus) -> SyncResult {
        let mut result = SyncResult::default();
        let actions = compute_pod_actions(pod, status, &self.probes);
        result.init_failed = actions.init_failed;
        if actions.kill_pod {
            self.kill_pod(Some(pod), status, None).await;
            if !actions.create_sandbox {
                return result;
            }
        } else {
            let pod_ip = status.ips().first().map(String::as_str);
            for k in &actions.containers_to_kill {
                let grace = kill_grace_period(pod, &k.name, k.probe);
                let kill = Kill { name: &k.name, id: &k.id, grace, message: k.message.clone() };
                self.kill_container(pod, kill, pod_ip, None).await;
            }
        }

        match self.volumes.setup_pod_volumes(pod).await {
            // Come back when a projected token is due for a refresh.
            Ok(setup) => result.requeue(setup.requeue_after()),
            Err(e) => {
                self.recorder.record(pod_event(pod, EventType::Warning, "FailedMount", e.event_message()));
                result.error = Some(e.to_string());
                result.requeue(Some(FAILURE_REQUEUE));
                return result;
            }
        }

        let (sandbox_config, dns_events) = generate_sandbox_config(pod, actions.attempt, &self.settings);
        let mut sandbox_id = actions.sandbox_id.clone();
        let mut pod_ips = status.ips().to_vec();
        if actions.create_sandbox {
            for e in dns_events {
                self.recorder.record(e);
            }
            match self.create_sandbox(pod, &sandbox_config).await {
                Ok((id, ips)) => {
                    sandbox_id = id;
                    pod_ips = ips;
                }
                Err(msg) => {
                    result.error = Some(msg);
                    result.requeue(Some(FAILURE_REQUEUE));
                    return result;
                }
            }
        }
        let ctx = EnvContext {
            pod_ips,
            host_ips: Vec::new(),
            node_name: self.settings.node_name.clone(),
            node_allocatable: self.volumes.node_allocatable().clone(),
        };
        let Some(spec) = pod.spec.as_ref() else { return result };

        if let Some(i) = actions.next_init_container
            && let Some(c) = spec.init_containers.as_ref().and_then(|v| v.get(i))
        {
            self.start_container(pod, c, &sandbox_id, &sandbox_config, status, &ctx, &mut result).await;
            // Regular init containers run one at a time and block app containers; a restarted
            // sidecar does not.
            if c.restart_policy.as_deref() != Some("Always") {
                return result;
            }
        }
        for i in &actions.containers_to_start {
            if let Some(c) = spec.containers.get(*i) {
                self.start_container(pod, c, &sandbox_id, &sandbox_config, status, &ctx, &mut result).await;
            }
        }
        result
    }

    async fn create_sandbox(&self, pod: &Pod, config: &api::PodSandboxConfig) -> Result<(String, Vec<String>), String> {
        let key = pod_key(pod);
        let fail = |msg: String| {
            self.recorder.record(pod_event(pod, EventType::Warning, FAILED_CREATE_POD_SANDBOX, msg.clone()));
            msg
        };
        // Upstream counts every sandbox creation attempt, and each failure of it.
        if let Some(m) = &self.metrics {
            m.started_pods.inc(&[]);
        }
        let fail = |msg: String| {
            if let Some(m) = &self.metrics {
                m.started_pods_errors.inc(&[]);
            }
            fail(msg)
        };
        let log_dir = pod_logs_dir(&self.settings.pod_logs_dir, pod);
        if let Err(e) = tokio::fs::create_dir_all(&log_dir).await {
            return Err(fail(format!("Failed to create pod log directory {}: {e}", log_dir.display())));
        }
        let id = self
            .runtime
            .run_pod_sandbox(
                config.clone(),
                pod.spec.as_ref().and_then(|s| s.runtime_class_name.as_deref()).unwrap_or(""),
            )
            .await
            .map_err(|e| fail(format!("Failed to create pod sandbox: {e}")))?;
        tracing::info!(pod = %key, sandbox = %id, "created pod sandbox");
        let ips: Vec<String> = match self.runtime.pod_sandbox_status(&id).await {
            Ok(st) => st
                .network
                .map(|n| std::iter::once(n.ip).chain(n.additional_ips.into_iter().map(|i| i.ip)).collect())
                .unwrap_or_default(),
            Err(e) => return Err(fail(format!("Failed to get pod sandbox status of {id}: {e}"))),
        };
        let ips: Vec<String> = ips.into_iter().filter(|ip| !ip.is_empty()).collect();
        if let Err(e) = self.dirs.write_hosts_file_for(pod, &ips, &pod_hostname(pod), &self.settings.dns.cluster_domain)
        {
            return Err(fail(format!("Failed to write hosts file of pod {key}: {e}")));
        }
        Ok((id, ips))
    }

    /// Upstream's stable backoff key of a container.
    fn backoff_key(pod: &Pod, c: &Container) -> String {
        format!(
            "{}_{}_{}_{}_{}",
            uid_of(pod),
            pod.metadata.name.as_deref().unwrap_or_default(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            c.name,
            labels::hash_container(c)
        )
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_container(
        &self,
        pod: &Pod,
        c: &Container,
        sandbox_id: &str,
        sandbox_config: &api::PodSandboxConfig,
        status: &PodRuntimeStatus,
        ctx: &EnvContext,
        result: &mut SyncResult,
    ) {
        let latest = status.latest(&c.name);
        // Crash-loop backoff against the previous instance's finish time.
        if let Some(prev) = latest.filter(|s| s.state == ContainerState::Exited) {
            let key = Self::backoff_key(pod, c);
            let finished = from_nanos(prev.finished_at).unwrap_or_default();
            let now = self.clock.now();
            let Ok(mut b) = self.crash_backoff.lock() else { return };
            if let Some(left) = b.remaining_since(&key, finished, now) {
                let delay = b.get(&key).unwrap_or_default();
                let message = format!(
                    "back-off {} restarting failed container={} pod={}_{}({})",
                    format_duration(delay),
                    c.name,
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    uid_of(pod)
                );
                drop(b);
                self.recorder.record(container_event(
                    pod,
                    &c.name,
                    EventType::Warning,
                    "BackOff",
                    format!("Back-off restarting failed container {} in pod {}", c.name, format_pod(pod)),
                ));
                result.wait(&c.name, WaitingReason { reason: CRASH_LOOP_BACK_OFF.into(), message }, Some(left));
                return;
            }
            b.next(&key, finished, now);
        }
        let restart_count = latest.map_or(0, |s| s.restart_count + 1);
        // Upstream's started-containers counters: every start attempt past the backoff, and its
        // failure by reason.
        let container_type = container_type(pod, &c.name);
        if let Some(m) = &self.metrics {
            m.started_containers.inc(&[container_type]);
        }
        let start_failed = |code: &str| {
            if let Some(m) = &self.metrics {
                m.started_containers_errors.inc(&[code, container_type]);
            }
        };

        let image_ref = match self.images.ensure_image(pod, c, sandbox_config).await {
            Ok(r) => r,
            Err((reason, after)) => {
                start_failed(&reason.reason);
                result.wait(&c.name, reason, after.or(Some(FAILURE_REQUEUE)));
                return;
            }
        };
        let config_error = |result: &mut SyncResult, reason: &str, message: String| {
            start_failed(reason);
            self.recorder.record(container_event(
                pod,
                &c.name,
                EventType::Warning,
                "Failed",
                format!("Error: {message}"),
            ));
            result.wait(&c.name, WaitingReason { reason: reason.into(), message }, Some(FAILURE_REQUEUE));
        };
        let termination_log = match self.dirs.new_termination_log_file(uid_of(pod), &c.name) {
            Ok(p) => p,
            Err(e) => return config_error(result, CREATE_CONTAINER_CONFIG_ERROR, e.to_string()),
        };
        let env_objects = fetch_env_objects(self.volumes.objects(), pod, c).await;
        let env = match env_objects.and_then(|o| make_env(pod, c, ctx, &o)) {
            Ok(env) => env,
            Err(e) => return config_error(result, CREATE_CONTAINER_CONFIG_ERROR, e.0),
        };
        let mounts = match self.volumes.container_mounts_with_env(pod, c, Some(&termination_log), &env) {
            Ok(m) => m,
            Err(e) => return config_error(result, CREATE_CONTAINER_CONFIG_ERROR, e.to_string()),
        };
        let config =
            generate_container_config(pod, c, restart_count, &image_ref, mounts, env, &self.settings.resources);
        let log_dir = pod_logs_dir(&self.settings.pod_logs_dir, pod).join(&c.name);
        if let Err(e) = tokio::fs::create_dir_all(&log_dir).await {
            return config_error(
                result,
                CREATE_CONTAINER_ERROR,
                format!("failed to create container log directory {}: {e}", log_dir.display()),
            );
        }
        let log_path = log_dir.join(format!("{restart_count}.log"));
        let id = match self.runtime.create_container(sandbox_id, config, sandbox_config.clone()).await {
            Ok(id) => id,
            Err(e) => return config_error(result, CREATE_CONTAINER_ERROR, e.runtime_message()),
        };
        self.recorder.record(container_event(
            pod,
            &c.name,
            EventType::Normal,
            "Created",
            format!("Created container: {}", c.name),
        ));
        if let Err(e) = self.runtime.start_container(&id).await {
            return config_error(result, RUN_CONTAINER_ERROR, e.runtime_message());
        }
        self.recorder.record(container_event(
            pod,
            &c.name,
            EventType::Normal,
            "Started",
            format!("Started container {}", c.name),
        ));
        self.link_legacy_log(pod, &c.name, &id, &log_path);
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let pod_ip = ctx.pod_ips.first().map(String::as_str);
            if let Err(message) =
                run_hook(self.runtime.as_ref(), pod, c, &id, pod_ip, hook, self.recorder.as_ref()).await
            {
                tracing::warn!(pod = %pod_key(pod), container = %c.name, "{message}");
                start_failed("PostStartHookError");
                // The hook's output stays out of the event (it may hold secrets), as upstream.
                self.recorder.record(container_event(
                    pod,
                    &c.name,
                    EventType::Warning,
                    "FailedPostStartHook",
                    "PostStartHook failed",
                ));
                let kill =
                    Kill { name: &c.name, id: &id, grace: grace_period(pod), message: "FailedPostStartHook".into() };
                self.kill_container(pod, kill, pod_ip, None).await;
                let reason = WaitingReason { reason: POST_START_HOOK_ERROR.into(), message };
                result.wait(&c.name, reason, Some(FAILURE_REQUEUE));
                return;
            }
        }
        result.reasons.remove(&c.name);
    }

    /// Upstream's `killContainer`: a `Killing` event with `message`; the container's preStop
    /// hook (if any and `grace` > 0), waited for at most `grace` seconds and its time taken
    /// from the grace period; under a pod's termination `ordering`, the wait for the
    /// container's turn, also taken from it; then CRI StopContainer with what is left, never
    /// less than 2 s (upstream's `minimumGracePeriodInSeconds`).
    async fn kill_container(
        &self,
        pod: &Pod,
        kill: Kill<'_>,
        pod_ip: Option<&str>,
        ordering: Option<&TerminationOrdering>,
    ) {
        let Kill { name, id, mut grace, message } = kill;
        self.recorder.record(container_event(pod, name, EventType::Normal, "Killing", message));
        let spec = pod_containers(pod).find(|c| c.name == name);
        if let Some(c) = spec.filter(|c| c.lifecycle.as_ref().is_some_and(|l| l.pre_stop.is_some()))
            && grace > 0
        {
            grace -= self.run_pre_stop(pod, c, id, pod_ip, grace).await;
        }
        if let Some(o) = ordering
            && grace > 0
        {
            grace -= o.wait_for_turn(name, grace).await;
        }
        grace = grace.max(MINIMUM_GRACE_PERIOD_SECONDS);
        match self.runtime.stop_container(id, grace).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                // As upstream, a container that could not be stopped does not release the
                // sidecars waiting on it; their grace period ends their wait.
                tracing::warn!(pod = %pod_key(pod), container = %name, "stopping container {id}: {e}");
                return;
            }
        }
        if let Some(o) = ordering {
            o.container_terminated(name);
        }
    }

    /// Upstream's `executePreStopHook`: runs `c`'s preStop hook in a task of its own and waits
    /// for it at most `grace` seconds; the hook is not cut short when the wait ends (it ends
    /// with its container). A failure is a `FailedPreStopHook` warning whenever it comes.
    /// Returns the whole seconds waited.
    async fn run_pre_stop(&self, pod: &Pod, c: &Container, id: &str, pod_ip: Option<&str>, grace: i64) -> i64 {
        let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()) else {
            return 0;
        };
        let started = tokio::time::Instant::now();
        let (key, name) = (pod_key(pod), c.name.clone());
        let (runtime, recorder) = (self.runtime.clone(), self.recorder.clone());
        let (pod, c, id, pod_ip) = (pod.clone(), c.clone(), id.to_string(), pod_ip.map(str::to_string));
        let task = tokio::spawn(async move {
            let ran = run_hook(runtime.as_ref(), &pod, &c, &id, pod_ip.as_deref(), &hook, recorder.as_ref()).await;
            if let Err(message) = ran {
                tracing::warn!(pod = %pod_key(&pod), container = %c.name, "{message}");
                // The hook's output stays out of the event (it may hold secrets), as upstream.
                recorder.record(container_event(
                    &pod,
                    &c.name,
                    EventType::Warning,
                    "FailedPreStopHook",
                    "PreStopHook failed",
                ));
            }
        });
        let limit = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
        if tokio::time::timeout(limit, task).await.is_err() {
            tracing::info!(pod = %key, container = %name, "preStop hook not completed in grace period");
        }
        i64::try_from(started.elapsed().as_secs()).unwrap_or(i64::MAX)
    }

    /// Stops every running container of a pod within `grace` seconds (at least 1, as upstream's
    /// pod workers give), then its sandboxes. All containers are killed at once under the
    /// pod's [`TerminationOrdering`]: sidecars stop after the app containers, in reverse order.
    /// Without the pod (an orphan found in the runtime) each container's pod and spec are
    /// restored from its labels and annotations, as upstream, so its preStop hook still runs;
    /// the grace period then defaults to 1 s (upstream's orphan override). Containers stay for
    /// logs and status until `remove_pod`.
    pub async fn kill_pod(&self, pod: Option<&Pod>, status: &PodRuntimeStatus, grace: Option<i64>) {
        let grace = grace.or(pod.map(grace_period)).unwrap_or(ORPHAN_GRACE_PERIOD_SECONDS).max(1);
        let running: Vec<&ContainerRuntimeStatus> = status
            .containers
            .iter()
            .filter(|c| matches!(c.state, ContainerState::Running | ContainerState::Created))
            .collect();
        let pod_ip = status.ips().first().map(String::as_str);
        match pod {
            Some(pod) => {
                let ordering = TerminationOrdering::new(pod, running.iter().map(|c| c.name.as_str()));
                let ordering = &ordering;
                futures::future::join_all(running.iter().map(|c| async move {
                    let message = format!("Stopping container {}", c.name);
                    let kill = Kill { name: &c.name, id: &c.id, grace, message };
                    self.kill_container(pod, kill, pod_ip, Some(ordering)).await;
                }))
                .await;
            }
            None => {
                futures::future::join_all(running.iter().map(|c| async move {
                    let restored = match self.runtime.container_status(&c.id).await {
                        Ok(cs) => restore_specs(&cs),
                        Err(e) if e.is_not_found() => return,
                        Err(e) => {
                            tracing::warn!(pod_uid = %status.uid, container = %c.name, "restoring the spec of {}: {e}", c.id);
                            restore_specs(&cri::api::ContainerStatus::default())
                        }
                    };
                    let message = format!("Stopping container {}", c.name);
                    let kill = Kill { name: &c.name, id: &c.id, grace, message };
                    self.kill_container(&restored, kill, pod_ip, None).await;
                }))
                .await;
            }
        }
        for s in status.sandboxes.iter().filter(|s| s.ready) {
            if let Err(e) = self.runtime.stop_pod_sandbox(&s.id).await
                && !e.is_not_found()
            {
                tracing::warn!(pod_uid = %status.uid, "stopping sandbox {}: {e}", s.id);
            }
        }
    }

    /// Upstream's legacy log link (`/var/log/containers/<pod>_<ns>_<container>-<id>.log`), which
    /// log shippers read; made only when the log file exists, as a dangling link would only wait
    /// for garbage collection.
    fn link_legacy_log(&self, pod: &Pod, container: &str, id: &str, log_path: &Path) {
        let Some(dir) = &self.settings.legacy_logs_dir else { return };
        if std::fs::symlink_metadata(log_path).is_err() {
            return;
        }
        let link = crate::gc::containers::legacy_log_link(
            dir,
            id,
            container,
            pod.metadata.name.as_deref().unwrap_or_default(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| std::os::unix::fs::symlink(log_path, &link)) {
            tracing::warn!(pod = %pod_key(pod), container, "failed to create legacy log link {}: {e}", link.display());
        }
    }

    /// Removes every container and sandbox of a pod that has been killed.
    pub async fn remove_pod(&self, status: &PodRuntimeStatus) -> cri::Result<()> {
        for c in &status.containers {
            match self.runtime.remove_container(&c.id).await {
                Err(e) if !e.is_not_found() => return Err(e),
                _ => {}
            }
        }
        for s in &status.sandboxes {
            match self.runtime.stop_pod_sandbox(&s.id).await {
                Err(e) if !e.is_not_found() => return Err(e),
                _ => {}
            }
            match self.runtime.remove_pod_sandbox(&s.id).await {
                Err(e) if !e.is_not_found() => return Err(e),
                _ => {}
            }
        }
        if let Ok(mut b) = self.crash_backoff.lock() {
            b.forget_prefix(&format!("{}_", status.uid));
        }
        self.images.forget_pod(&status.uid);
        Ok(())
    }
}

/// One container to kill: its name and CRI id, the grace period it is given and the message of
/// its `Killing` event.
struct Kill<'a> {
    name: &'a str,
    id: &'a str,
    grace: i64,
    message: String,
}

/// The least a container is given to stop, whatever its grace period and the preStop hook and
/// termination ordering took of it (upstream's `minimumGracePeriodInSeconds`).
const MINIMUM_GRACE_PERIOD_SECONDS: i64 = 2;

/// The grace period of an orphaned pod's containers (upstream `HandlePodCleanups`' override).
const ORPHAN_GRACE_PERIOD_SECONDS: i64 = 1;

/// The waiting reason of a container whose postStart hook failed (upstream `ErrPostStartHook`).
pub const POST_START_HOOK_ERROR: &str = "PostStartHookError";

/// Every container of the pod's spec: init (sidecars included), regular.
fn pod_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .chain(spec.map(|s| s.containers.iter()).into_iter().flatten())
}

/// Upstream's `setTerminationGracePeriod`: the deletion grace period when the pod is being
/// deleted, else the failed probe's `terminationGracePeriodSeconds` when it sets one, else the
/// pod's.
pub fn kill_grace_period(pod: &Pod, container: &str, probe: Option<ProbeType>) -> i64 {
    if pod.metadata.deletion_grace_period_seconds.is_none()
        && let Some(p) = probe
        && let Some(c) = pod_containers(pod).find(|c| c.name == container)
        && let Some(secs) = p.of(c).and_then(|p| p.termination_grace_period_seconds)
    {
        return secs.max(0);
    }
    grace_period(pod)
}

/// The pod's grace period: a deletion grace period when one was set, else the spec's (the API
/// defaults it to 30 s; without it, upstream's minimum of 2 s).
pub fn grace_period(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or(pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(MINIMUM_GRACE_PERIOD_SECONDS)
        .max(0)
}

/// The `container_type` label of a container of the pod (upstream's metric labels).
fn container_type(pod: &Pod, name: &str) -> &'static str {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.init_containers.as_ref()).is_some_and(|l| l.iter().any(|c| c.name == name)) {
        "init_container"
    } else if spec.and_then(|s| s.ephemeral_containers.as_ref()).is_some_and(|l| l.iter().any(|c| c.name == name)) {
        "ephemeral_container"
    } else {
        "container"
    }
}
