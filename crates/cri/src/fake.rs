//! `FakeRuntime`: an in-memory CRI runtime for unit tests (feature `test-util`).
//!
//! It models containerd 1.6's CRI behaviour where the kubelet can observe it:
//! - sandboxes: READY after `RunPodSandbox`, NOTREADY after `StopPodSandbox` (which also stops
//!   their running containers); the IP is `10.0.0.N` (N counts up from 1), empty for host-network
//!   pods; `RemovePodSandbox` force-stops a READY sandbox and removes it with its containers;
//! - containers: CREATED → RUNNING → EXITED; `CreateContainer` needs an existing sandbox and a
//!   present (pulled) image; `StartContainer` needs a CREATED container in a READY sandbox;
//!   `StopContainer` of a running container exits it with 137 (grace 0) or 143 (SIGTERM honoured),
//!   of a CREATED one does nothing; `RemoveContainer` force-stops a running container;
//! - statuses carry `image` (repo tag), `image_ref` (repo digest) and, like containerd 1.6, an
//!   empty `image_id`;
//! - sandbox and container names (metadata + attempt) are reserved while the object exists;
//! - removing an unknown container/sandbox/image succeeds (as containerd); status/stop/start/exec
//!   of an unknown id fail with `Error::NotFound`; error messages copy containerd 1.6's.
//!
//! Every call is recorded in [`FakeRuntime::calls`] as `"<Rpc> <object>"`, e.g.
//! `"RunPodSandbox default/web"`, `"CreateContainer app"`, `"StartContainer <id>"`,
//! `"ExecSync <id> <cmd...>"`, `"PullImage busybox"`, `"ListContainers"`; failed calls too.
//!
//! Timestamps come from a fake nanosecond clock ([`FakeRuntime::now_ns`], [`FakeRuntime::advance`]);
//! each stamp advances it by 1 ns so objects get strictly increasing times.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tonic::Code;

use crate::api::{self, ContainerState, NamespaceMode, PodSandboxState};
use crate::{Error, ImageService, Result, RuntimeService, normalize_ref};

/// Endpoint named in the `Error::Unreachable` of a fake that is down.
pub const FAKE_ENDPOINT: &str = "unix:///run/fake-cri/cri.sock";
/// Initial value of the fake clock (2023-11-14T22:13:20Z), in nanoseconds.
pub const FAKE_EPOCH_NS: i64 = 1_700_000_000_000_000_000;

/// In-memory CRI runtime; share it as `Arc<FakeRuntime>`.
pub struct FakeRuntime {
    state: Mutex<State>,
}

struct State {
    clock_ns: i64,
    seq: u64,
    next_ip: u32,
    down: bool,
    conditions: Vec<api::RuntimeCondition>,
    sandboxes: Vec<Sandbox>,
    containers: Vec<Ctr>,
    images: Vec<api::Image>,
    fail_pull: HashMap<String, String>,
    injected: HashMap<&'static str, VecDeque<Error>>,
    exec_results: HashMap<String, api::ExecSyncResponse>,
    /// What `ExecSync` answers for containers without a result of their own.
    default_exec: api::ExecSyncResponse,
    /// The timeout of the last `StopContainer` per container.
    stop_timeouts: HashMap<String, i64>,
    /// What `ListContainerStats` reports per container: (CPU core-nanoseconds, working set bytes,
    /// writable-layer bytes).
    usage: HashMap<String, (u64, u64, u64)>,
    calls: Vec<String>,
}

struct Sandbox {
    id: String,
    config: api::PodSandboxConfig,
    runtime_handler: String,
    state: PodSandboxState,
    created_at: i64,
    ip: String,
}

struct Ctr {
    id: String,
    sandbox_id: String,
    config: api::ContainerConfig,
    image: api::Image,
    state: ContainerState,
    created_at: i64,
    started_at: i64,
    finished_at: i64,
    exit_code: i32,
    reason: String,
}

/// The sandbox image the fake runtime's verbose status names.
pub const FAKE_SANDBOX_IMAGE: &str = "registry.k8s.io/pause:3.6";

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeRuntime {
    /// A streaming URL for a running container, as containerd refuses others.
    fn streaming_url(&self, op: &'static str, container_id: &str, kind: &str) -> Result<String> {
        let mut s = self.begin(op, container_id)?;
        let state = s.container_mut(op, container_id)?.state;
        if state != ContainerState::ContainerRunning {
            let message = format!("container {container_id} is not running");
            return Err(rpc(op, container_id, Code::FailedPrecondition, message));
        }
        Ok(format!("http://fake-streaming/{kind}/{container_id}"))
    }

    pub fn new() -> Self {
        let cond = |t: &str| api::RuntimeCondition { r#type: t.to_string(), status: true, ..Default::default() };
        Self {
            state: Mutex::new(State {
                clock_ns: FAKE_EPOCH_NS,
                seq: 0,
                next_ip: 1,
                down: false,
                conditions: vec![cond("RuntimeReady"), cond("NetworkReady")],
                sandboxes: Vec::new(),
                containers: Vec::new(),
                images: Vec::new(),
                fail_pull: HashMap::new(),
                injected: HashMap::new(),
                exec_results: HashMap::new(),
                default_exec: api::ExecSyncResponse::default(),
                stop_timeouts: HashMap::new(),
                usage: HashMap::new(),
                calls: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the call, then fails it if the runtime is down or an error was injected for `op`.
    fn begin(&self, op: &'static str, object: &str) -> Result<MutexGuard<'_, State>> {
        let mut s = self.lock();
        s.calls.push(if object.is_empty() { op.to_string() } else { format!("{op} {object}") });
        if s.down {
            return Err(Error::Unreachable {
                endpoint: FAKE_ENDPOINT.to_string(),
                message: "connect: Connection refused".to_string(),
            });
        }
        if let Some(err) = s.injected.get_mut(op).and_then(VecDeque::pop_front) {
            return Err(err);
        }
        Ok(s)
    }

    // ---- test controls ----

    /// While down, every call fails with `Error::Unreachable` (state is kept).
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// The next call of `op` (a CRI RPC name, e.g. "StartContainer") fails with `err`.
    /// Several injections for one op are used in order.
    pub fn inject_error(&self, op: &'static str, err: Error) {
        self.lock().injected.entry(op).or_default().push_back(err);
    }

    /// Recorded calls, oldest first (see the module docs for the format).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Pulls of `image` (any spelling of the same reference) fail with `Error::Rpc` for op
    /// "PullImage", message `failed to pull and unpack image "<normalized ref>": <message>`, code
    /// NotFound when `message` contains "not found" (as containerd), else Unknown.
    pub fn fail_pull(&self, image: &str, message: &str) {
        self.lock().fail_pull.insert(normalize_ref(image), message.to_string());
    }

    /// Makes `image` present without a recorded call; returns its id.
    pub fn add_image(&self, image: &str) -> String {
        self.lock().add_image(image)
    }

    /// Marks an image pinned (as containerd 1.7+ reports its sandbox image).
    pub fn pin_image(&self, image: &str) {
        let mut s = self.lock();
        if let Some(i) = s.find_image(image) {
            s.images[i].pinned = true;
        }
    }

    /// Simulates the exit of a running container: state EXITED, `exit_code`, reason "Completed"
    /// (0) or "Error", finished now. Returns false if the container is not running.
    pub fn exit_container(&self, container_id: &str, exit_code: i32) -> bool {
        let reason = if exit_code == 0 { "Completed" } else { "Error" };
        self.exit_container_with_reason(container_id, exit_code, reason)
    }

    /// Like `exit_container` with an explicit reason (e.g. "OOMKilled").
    pub fn exit_container_with_reason(&self, container_id: &str, exit_code: i32, reason: &str) -> bool {
        let mut s = self.lock();
        let now = s.stamp();
        match s.containers.iter_mut().find(|c| c.id == container_id && c.state == ContainerState::ContainerRunning) {
            Some(c) => {
                c.exit(now, exit_code, reason);
                true
            }
            None => false,
        }
    }

    /// The response `ExecSync` gives for this container from now on (default: exit 0, no output).
    /// Sets what `ListContainerStats` reports for the container (CPU core-nanoseconds, working
    /// set bytes, writable-layer bytes), stamped with the fake clock.
    pub fn set_usage(&self, container_id: &str, cpu_core_ns: u64, working_set: u64, writable_layer: u64) {
        self.lock().usage.insert(container_id.to_string(), (cpu_core_ns, working_set, writable_layer));
    }

    pub fn set_exec_result(&self, container_id: &str, response: api::ExecSyncResponse) {
        self.lock().exec_results.insert(container_id.to_string(), response);
    }

    /// The response `ExecSync` gives for containers without one set by `set_exec_result`
    /// (default: exit 0, no output).
    pub fn set_default_exec_result(&self, response: api::ExecSyncResponse) {
        self.lock().default_exec = response;
    }

    /// The timeout (seconds) the last `StopContainer` of this container was given.
    pub fn stop_timeout(&self, container_id: &str) -> Option<i64> {
        self.lock().stop_timeouts.get(container_id).copied()
    }

    /// Sets (or adds) a runtime condition reported by `Status` (e.g. "NetworkReady" false).
    pub fn set_condition(&self, kind: &str, status: bool, reason: &str, message: &str) {
        let cond = api::RuntimeCondition {
            r#type: kind.to_string(),
            status,
            reason: reason.to_string(),
            message: message.to_string(),
        };
        let mut s = self.lock();
        match s.conditions.iter_mut().find(|c| c.r#type == kind) {
            Some(c) => *c = cond,
            None => s.conditions.push(cond),
        }
    }

    /// The config a sandbox was created with (to assert what the kubelet sent).
    pub fn sandbox_config(&self, pod_sandbox_id: &str) -> Option<api::PodSandboxConfig> {
        self.lock().sandboxes.iter().find(|x| x.id == pod_sandbox_id).map(|x| x.config.clone())
    }

    /// The config a container was created with (to assert what the kubelet sent).
    pub fn container_config(&self, container_id: &str) -> Option<api::ContainerConfig> {
        self.lock().containers.iter().find(|c| c.id == container_id).map(|c| c.config.clone())
    }

    /// Current fake time in nanoseconds since the Unix epoch.
    pub fn now_ns(&self) -> i64 {
        self.lock().clock_ns
    }

    pub fn advance(&self, by: Duration) {
        let mut s = self.lock();
        s.clock_ns = s.clock_ns.saturating_add(i64::try_from(by.as_nanos()).unwrap_or(i64::MAX));
    }
}

impl State {
    fn stamp(&mut self) -> i64 {
        let now = self.clock_ns;
        self.clock_ns += 1;
        now
    }

    fn new_id(&mut self, kind: &str) -> String {
        self.seq += 1;
        hex64(&format!("{kind}-{}", self.seq))
    }

    fn sandbox(&self, op: &'static str, id: &str) -> Result<&Sandbox> {
        self.sandboxes
            .iter()
            .find(|x| x.id == id)
            .ok_or_else(|| not_found(op, id, format!("an error occurred when try to find sandbox \"{id}\": not found")))
    }

    fn container_mut(&mut self, op: &'static str, id: &str) -> Result<&mut Ctr> {
        self.containers.iter_mut().find(|c| c.id == id).ok_or_else(|| {
            not_found(op, id, format!("an error occurred when try to find container \"{id}\": not found"))
        })
    }

    fn find_image(&self, image: &str) -> Option<usize> {
        let id = if image.len() == 64 && image.bytes().all(|b| b.is_ascii_hexdigit()) {
            format!("sha256:{image}")
        } else {
            image.to_string()
        };
        let name = normalize_ref(image);
        self.images.iter().position(|i| i.id == id || i.repo_tags.contains(&name) || i.repo_digests.contains(&name))
    }

    fn add_image(&mut self, image: &str) -> String {
        if let Some(i) = self.find_image(image) {
            return self.images[i].id.clone();
        }
        let name = normalize_ref(image);
        let id = format!("sha256:{}", hex64(&name));
        let (repo_tags, repo_digests) = match name.split_once('@') {
            Some(_) => (vec![], vec![name.clone()]),
            None => {
                let repo = name.rsplit_once(':').map_or(name.as_str(), |(r, _)| r);
                (vec![name.clone()], vec![format!("{repo}@sha256:{}", hex64(&format!("digest:{name}")))])
            }
        };
        self.images.push(api::Image {
            id: id.clone(),
            repo_tags,
            repo_digests,
            size: 1_000_000 + name.len() as u64,
            spec: Some(api::ImageSpec { image: id.clone(), ..Default::default() }),
            ..Default::default()
        });
        id
    }
}

impl Sandbox {
    fn metadata(&self) -> Option<api::PodSandboxMetadata> {
        self.config.metadata.clone()
    }
}

impl Ctr {
    fn exit(&mut self, now: i64, exit_code: i32, reason: &str) {
        self.state = ContainerState::ContainerExited;
        self.finished_at = now;
        self.exit_code = exit_code;
        self.reason = reason.to_string();
    }

    fn image_spec(&self) -> api::ImageSpec {
        let image = self.image.repo_tags.first().cloned().unwrap_or_else(|| self.image.id.clone());
        api::ImageSpec { image, ..Default::default() }
    }

    fn image_ref(&self) -> String {
        self.image.repo_digests.first().cloned().unwrap_or_else(|| self.image.id.clone())
    }

    fn to_container(&self) -> api::Container {
        api::Container {
            id: self.id.clone(),
            pod_sandbox_id: self.sandbox_id.clone(),
            metadata: self.config.metadata.clone(),
            image: Some(self.image_spec()),
            image_ref: self.image_ref(),
            state: self.state as i32,
            created_at: self.created_at,
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            image_id: String::new(),
        }
    }

    fn to_status(&self) -> api::ContainerStatus {
        api::ContainerStatus {
            id: self.id.clone(),
            metadata: self.config.metadata.clone(),
            state: self.state as i32,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            exit_code: self.exit_code,
            image: Some(self.image_spec()),
            image_ref: self.image_ref(),
            reason: self.reason.clone(),
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            mounts: self.config.mounts.clone(),
            log_path: self.config.log_path.clone(),
            ..Default::default()
        }
    }
}

fn not_found(op: &'static str, what: &str, message: String) -> Error {
    Error::NotFound { op, what: what.to_string(), message }
}

fn rpc(op: &'static str, what: &str, code: Code, message: String) -> Error {
    Error::Rpc { op, what: what.to_string(), code, message }
}

fn labels_match(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn state_name(state: ContainerState) -> &'static str {
    state.as_str_name()
}

/// Deterministic 64-hex-digit id derived from `seed` (FNV-1a, then splitmix64 rounds).
fn hex64(seed: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..4)
        .map(|_| {
            h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = h;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            format!("{:016x}", z ^ (z >> 31))
        })
        .collect()
}

fn host_network(config: &api::PodSandboxConfig) -> bool {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .is_some_and(|n| n.network == NamespaceMode::Node as i32)
}

#[async_trait]
impl RuntimeService for FakeRuntime {
    async fn version(&self) -> Result<api::VersionResponse> {
        let _state = self.begin("Version", "")?;
        Ok(api::VersionResponse {
            version: crate::remote::KUBE_RUNTIME_API_VERSION.to_string(),
            runtime_name: "fake".to_string(),
            runtime_version: "0.1.0".to_string(),
            runtime_api_version: "v1".to_string(),
        })
    }

    async fn status(&self) -> Result<api::RuntimeStatus> {
        let s = self.begin("Status", "")?;
        Ok(api::RuntimeStatus { conditions: s.conditions.clone() })
    }

    async fn status_info(&self) -> Result<HashMap<String, String>> {
        let _s = self.begin("Status", "")?;
        // containerd 1.6's default sandbox image, in its config's shape.
        Ok(HashMap::from([("config".to_string(), format!("{{\"sandboxImage\":\"{FAKE_SANDBOX_IMAGE}\"}}"))]))
    }

    async fn run_pod_sandbox(&self, config: api::PodSandboxConfig, runtime_handler: &str) -> Result<String> {
        const OP: &str = "RunPodSandbox";
        let meta = config.metadata.clone().unwrap_or_default();
        let what = format!("{}/{}", meta.namespace, meta.name);
        let mut s = self.begin(OP, &what)?;
        if config.metadata.is_none() {
            return Err(rpc(OP, &what, Code::InvalidArgument, "sandbox config must include metadata".into()));
        }
        if let Some(other) = s.sandboxes.iter().find(|x| x.metadata().as_ref() == Some(&meta)) {
            let name = format!("{}_{}_{}_{}", meta.name, meta.namespace, meta.uid, meta.attempt);
            let message =
                format!("failed to reserve sandbox name \"{name}\": name \"{name}\" is reserved for \"{}\"", other.id);
            return Err(rpc(OP, &what, Code::Unknown, message));
        }
        let ip = if host_network(&config) {
            String::new()
        } else {
            let n = s.next_ip;
            s.next_ip += 1;
            format!("10.0.{}.{}", n / 255, n % 255)
        };
        let id = s.new_id("sandbox");
        let created_at = s.stamp();
        s.sandboxes.push(Sandbox {
            id: id.clone(),
            config,
            runtime_handler: runtime_handler.to_string(),
            state: PodSandboxState::SandboxReady,
            created_at,
            ip,
        });
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, pod_sandbox_id: &str) -> Result<()> {
        const OP: &str = "StopPodSandbox";
        let mut s = self.begin(OP, pod_sandbox_id)?;
        s.sandbox(OP, pod_sandbox_id)?;
        let now = s.stamp();
        for c in s.containers.iter_mut() {
            if c.sandbox_id == pod_sandbox_id && c.state == ContainerState::ContainerRunning {
                c.exit(now, 137, "Error");
            }
        }
        if let Some(x) = s.sandboxes.iter_mut().find(|x| x.id == pod_sandbox_id) {
            x.state = PodSandboxState::SandboxNotready;
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, pod_sandbox_id: &str) -> Result<()> {
        const OP: &str = "RemovePodSandbox";
        let mut s = self.begin(OP, pod_sandbox_id)?;
        if s.sandbox(OP, pod_sandbox_id).is_err() {
            return Ok(());
        }
        let State { containers, exec_results, .. } = &mut *s;
        containers.retain(|c| {
            let keep = c.sandbox_id != pod_sandbox_id;
            if !keep {
                exec_results.remove(&c.id);
            }
            keep
        });
        s.sandboxes.retain(|x| x.id != pod_sandbox_id);
        Ok(())
    }

    async fn pod_sandbox_info(&self, pod_sandbox_id: &str) -> Result<HashMap<String, String>> {
        const OP: &str = "PodSandboxStatus";
        let s = self.begin(OP, pod_sandbox_id)?;
        let x = s.sandbox(OP, pod_sandbox_id)?;
        // A made-up pid per sandbox and the pause image, in containerd's shape.
        let pid = 1000 + s.sandboxes.iter().position(|sb| sb.id == x.id).unwrap_or(0);
        Ok(HashMap::from([("info".to_string(), format!("{{\"pid\":{pid},\"image\":\"pause:fake\"}}"))]))
    }

    async fn pod_sandbox_status(&self, pod_sandbox_id: &str) -> Result<api::PodSandboxStatus> {
        const OP: &str = "PodSandboxStatus";
        let s = self.begin(OP, pod_sandbox_id)?;
        let x = s.sandbox(OP, pod_sandbox_id)?;
        let ns_options =
            x.config.linux.as_ref().and_then(|l| l.security_context.as_ref()).and_then(|c| c.namespace_options.clone());
        Ok(api::PodSandboxStatus {
            id: x.id.clone(),
            metadata: x.metadata(),
            state: x.state as i32,
            created_at: x.created_at,
            network: Some(api::PodSandboxNetworkStatus { ip: x.ip.clone(), additional_ips: vec![] }),
            linux: Some(api::LinuxPodSandboxStatus { namespaces: Some(api::Namespace { options: ns_options }) }),
            labels: x.config.labels.clone(),
            annotations: x.config.annotations.clone(),
            runtime_handler: x.runtime_handler.clone(),
        })
    }

    async fn list_pod_sandbox(&self, filter: Option<api::PodSandboxFilter>) -> Result<Vec<api::PodSandbox>> {
        let s = self.begin("ListPodSandbox", "")?;
        let f = filter.unwrap_or_default();
        Ok(s.sandboxes
            .iter()
            .filter(|x| f.id.is_empty() || x.id == f.id)
            .filter(|x| f.state.is_none_or(|v| v.state == x.state as i32))
            .filter(|x| labels_match(&f.label_selector, &x.config.labels))
            .map(|x| api::PodSandbox {
                id: x.id.clone(),
                metadata: x.metadata(),
                state: x.state as i32,
                created_at: x.created_at,
                labels: x.config.labels.clone(),
                annotations: x.config.annotations.clone(),
                runtime_handler: x.runtime_handler.clone(),
            })
            .collect())
    }

    async fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: api::ContainerConfig,
        _sandbox_config: api::PodSandboxConfig,
    ) -> Result<String> {
        const OP: &str = "CreateContainer";
        let meta = config.metadata.clone().unwrap_or_default();
        let what = meta.name.clone();
        let mut s = self.begin(OP, &what)?;
        if config.metadata.is_none() {
            return Err(rpc(OP, &what, Code::InvalidArgument, "container config must include metadata".into()));
        }
        if s.sandbox(OP, pod_sandbox_id).is_err() {
            return Err(not_found(OP, &what, format!("failed to find sandbox id \"{pod_sandbox_id}\": not found")));
        }
        if let Some(other) =
            s.containers.iter().find(|c| c.sandbox_id == pod_sandbox_id && c.config.metadata.as_ref() == Some(&meta))
        {
            let name = format!("{}_{}_{}", meta.name, pod_sandbox_id, meta.attempt);
            let message = format!(
                "failed to reserve container name \"{name}\": name \"{name}\" is reserved for \"{}\"",
                other.id
            );
            return Err(rpc(OP, &what, Code::Unknown, message));
        }
        let image_name = config.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
        let Some(image) = s.find_image(&image_name).map(|i| s.images[i].clone()) else {
            return Err(not_found(OP, &what, format!("failed to resolve image \"{image_name}\": not found")));
        };
        let id = s.new_id("container");
        let created_at = s.stamp();
        // As containerd, the status reports the log path joined to the sandbox's log directory.
        let mut config = config;
        if let Ok(sb) = s.sandbox(OP, pod_sandbox_id)
            && !sb.config.log_directory.is_empty()
            && !config.log_path.is_empty()
        {
            config.log_path =
                std::path::Path::new(&sb.config.log_directory).join(&config.log_path).display().to_string();
        }
        s.containers.push(Ctr {
            id: id.clone(),
            sandbox_id: pod_sandbox_id.to_string(),
            config,
            image,
            state: ContainerState::ContainerCreated,
            created_at,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
        });
        Ok(id)
    }

    async fn start_container(&self, container_id: &str) -> Result<()> {
        const OP: &str = "StartContainer";
        let mut s = self.begin(OP, container_id)?;
        let now = s.stamp();
        let c = s.container_mut(OP, container_id)?;
        if c.state != ContainerState::ContainerCreated {
            let message = format!(
                "failed to set starting state for container \"{container_id}\": container is in {} state",
                state_name(c.state)
            );
            return Err(rpc(OP, container_id, Code::Unknown, message));
        }
        let sandbox_id = c.sandbox_id.clone();
        if s.sandbox(OP, &sandbox_id)?.state != PodSandboxState::SandboxReady {
            let message = format!("sandbox container \"{sandbox_id}\" is not running");
            return Err(rpc(OP, container_id, Code::Unknown, message));
        }
        let c = s.container_mut(OP, container_id)?;
        c.state = ContainerState::ContainerRunning;
        c.started_at = now;
        Ok(())
    }

    async fn stop_container(&self, container_id: &str, timeout_secs: i64) -> Result<()> {
        const OP: &str = "StopContainer";
        let mut s = self.begin(OP, container_id)?;
        s.stop_timeouts.insert(container_id.to_string(), timeout_secs);
        let now = s.stamp();
        let c = s.container_mut(OP, container_id)?;
        if c.state == ContainerState::ContainerRunning {
            c.exit(now, if timeout_secs > 0 { 143 } else { 137 }, "Error");
        }
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> Result<()> {
        const OP: &str = "RemoveContainer";
        let mut s = self.begin(OP, container_id)?;
        if s.container_mut(OP, container_id).is_err() {
            return Ok(());
        }
        s.containers.retain(|c| c.id != container_id);
        s.exec_results.remove(container_id);
        Ok(())
    }

    async fn reopen_container_log(&self, container_id: &str) -> Result<()> {
        const OP: &str = "ReopenContainerLog";
        let mut s = self.begin(OP, container_id)?;
        let c = s.container_mut(OP, container_id)?;
        if c.state != ContainerState::ContainerRunning {
            let message = format!("container {container_id} is not running");
            return Err(rpc(OP, container_id, Code::FailedPrecondition, message));
        }
        // As containerd: a new (empty) file at the log path when it was renamed away.
        let path = std::path::Path::new(&c.config.log_path);
        if path.is_absolute() {
            std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| {
                rpc(OP, container_id, Code::Unknown, format!("failed to create and open log file: {e}"))
            })?;
        }
        Ok(())
    }

    async fn list_containers(&self, filter: Option<api::ContainerFilter>) -> Result<Vec<api::Container>> {
        let s = self.begin("ListContainers", "")?;
        let f = filter.unwrap_or_default();
        Ok(s.containers
            .iter()
            .filter(|c| f.id.is_empty() || c.id == f.id)
            .filter(|c| f.pod_sandbox_id.is_empty() || c.sandbox_id == f.pod_sandbox_id)
            .filter(|c| f.state.is_none_or(|v| v.state == c.state as i32))
            .filter(|c| labels_match(&f.label_selector, &c.config.labels))
            .map(Ctr::to_container)
            .collect())
    }

    async fn container_status(&self, container_id: &str) -> Result<api::ContainerStatus> {
        const OP: &str = "ContainerStatus";
        let mut s = self.begin(OP, container_id)?;
        Ok(s.container_mut(OP, container_id)?.to_status())
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        _timeout_secs: i64,
    ) -> Result<api::ExecSyncResponse> {
        const OP: &str = "ExecSync";
        let mut s = self.begin(OP, &format!("{container_id} {}", cmd.join(" ")))?;
        let state = s.container_mut(OP, container_id)?.state;
        if state != ContainerState::ContainerRunning {
            let message = format!("failed to exec in container: container is in {} state", state_name(state));
            return Err(rpc(OP, container_id, Code::Unknown, message));
        }
        Ok(s.exec_results.get(container_id).cloned().unwrap_or_else(|| s.default_exec.clone()))
    }

    async fn exec(&self, req: api::ExecRequest) -> Result<String> {
        self.streaming_url("Exec", &req.container_id, "exec")
    }

    /// The URL carries the request's tty, for tests of what the kubelet asked.
    async fn attach(&self, req: api::AttachRequest) -> Result<String> {
        self.streaming_url("Attach", &req.container_id, "attach").map(|u| format!("{u}?tty={}", req.tty))
    }

    async fn port_forward(&self, req: api::PortForwardRequest) -> Result<String> {
        const OP: &str = "PortForward";
        let s = self.begin(OP, &req.pod_sandbox_id)?;
        s.sandbox(OP, &req.pod_sandbox_id)?;
        Ok(format!("http://fake-streaming/portforward/{}", req.pod_sandbox_id))
    }

    async fn list_container_stats(
        &self,
        filter: Option<api::ContainerStatsFilter>,
    ) -> Result<Vec<api::ContainerStats>> {
        let s = self.begin("ListContainerStats", "")?;
        let f = filter.unwrap_or_default();
        let now = s.clock_ns;
        Ok(s.containers
            .iter()
            .filter(|c| f.id.is_empty() || c.id == f.id)
            .filter(|c| f.pod_sandbox_id.is_empty() || c.sandbox_id == f.pod_sandbox_id)
            .filter(|c| labels_match(&f.label_selector, &c.config.labels))
            .map(|c| {
                let (cpu, ws, layer) = s.usage.get(&c.id).copied().unwrap_or_default();
                api::ContainerStats {
                    attributes: Some(api::ContainerAttributes {
                        id: c.id.clone(),
                        metadata: c.config.metadata.clone(),
                        labels: c.config.labels.clone(),
                        annotations: c.config.annotations.clone(),
                    }),
                    cpu: Some(api::CpuUsage {
                        timestamp: now,
                        usage_core_nano_seconds: Some(api::UInt64Value { value: cpu }),
                        ..Default::default()
                    }),
                    memory: Some(api::MemoryUsage {
                        timestamp: now,
                        working_set_bytes: Some(api::UInt64Value { value: ws }),
                        ..Default::default()
                    }),
                    writable_layer: Some(api::FilesystemUsage {
                        timestamp: now,
                        fs_id: Some(api::FilesystemIdentifier { mountpoint: "/fake/snapshots".into() }),
                        used_bytes: Some(api::UInt64Value { value: layer }),
                        inodes_used: Some(api::UInt64Value { value: 1 }),
                    }),
                    ..Default::default()
                }
            })
            .collect())
    }
}

#[async_trait]
impl ImageService for FakeRuntime {
    async fn pull_image(
        &self,
        image: api::ImageSpec,
        _auth: Option<api::AuthConfig>,
        _sandbox_config: Option<api::PodSandboxConfig>,
    ) -> Result<String> {
        const OP: &str = "PullImage";
        let mut s = self.begin(OP, &image.image)?;
        let name = normalize_ref(&image.image);
        if let Some(cause) = s.fail_pull.get(&name) {
            let code = if cause.contains("not found") { Code::NotFound } else { Code::Unknown };
            return Err(rpc(OP, &image.image, code, format!("failed to pull and unpack image \"{name}\": {cause}")));
        }
        Ok(s.add_image(&image.image))
    }

    async fn image_status(&self, image: api::ImageSpec) -> Result<Option<api::Image>> {
        let s = self.begin("ImageStatus", &image.image)?;
        Ok(s.find_image(&image.image).map(|i| s.images[i].clone()))
    }

    async fn list_images(&self, filter: Option<api::ImageFilter>) -> Result<Vec<api::Image>> {
        let s = self.begin("ListImages", "")?;
        match filter.and_then(|f| f.image).filter(|i| !i.image.is_empty()) {
            Some(spec) => Ok(s.find_image(&spec.image).map(|i| s.images[i].clone()).into_iter().collect()),
            None => Ok(s.images.clone()),
        }
    }

    async fn image_fs_info(&self) -> Result<Vec<api::FilesystemUsage>> {
        let s = self.begin("ImageFsInfo", "")?;
        let used: u64 = s.images.iter().map(|i| i.size).sum();
        Ok(vec![api::FilesystemUsage {
            timestamp: s.clock_ns,
            fs_id: Some(api::FilesystemIdentifier { mountpoint: "/fake/images".into() }),
            used_bytes: Some(api::UInt64Value { value: used }),
            inodes_used: Some(api::UInt64Value { value: s.images.len() as u64 }),
        }])
    }

    async fn remove_image(&self, image: api::ImageSpec) -> Result<()> {
        let mut s = self.begin("RemoveImage", &image.image)?;
        if let Some(i) = s.find_image(&image.image) {
            s.images.remove(i);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn sandbox_config(ns: &str, name: &str, attempt: u32) -> api::PodSandboxConfig {
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: ns.into(),
                attempt,
            }),
            hostname: name.into(),
            labels: HashMap::from([("io.kubernetes.pod.name".into(), name.into())]),
            annotations: HashMap::from([("a".into(), "b".into())]),
            ..Default::default()
        }
    }

    fn host_network_config(ns: &str, name: &str) -> api::PodSandboxConfig {
        let mut c = sandbox_config(ns, name, 0);
        c.linux = Some(api::LinuxPodSandboxConfig {
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    }

    fn container_config(name: &str, image: &str) -> api::ContainerConfig {
        api::ContainerConfig {
            metadata: Some(api::ContainerMetadata { name: name.into(), attempt: 0 }),
            image: Some(api::ImageSpec { image: image.into(), ..Default::default() }),
            labels: HashMap::from([("io.kubernetes.container.name".into(), name.into())]),
            annotations: HashMap::from([("hash".into(), "123".into())]),
            log_path: format!("{name}/0.log"),
            ..Default::default()
        }
    }

    fn spec(image: &str) -> api::ImageSpec {
        api::ImageSpec { image: image.into(), ..Default::default() }
    }

    async fn running_pod(rt: &FakeRuntime, name: &str, containers: &[&str]) -> (String, Vec<String>) {
        let sb = rt.run_pod_sandbox(sandbox_config("default", name, 0), "").await.unwrap();
        let mut ids = Vec::new();
        for c in containers {
            rt.pull_image(spec("busybox"), None, None).await.unwrap();
            let id = rt
                .create_container(&sb, container_config(c, "busybox"), sandbox_config("default", name, 0))
                .await
                .unwrap();
            rt.start_container(&id).await.unwrap();
            ids.push(id);
        }
        (sb, ids)
    }

    #[tokio::test]
    async fn lifecycle_and_call_log() {
        let rt = FakeRuntime::new();
        let t0 = rt.now_ns();
        let sb = rt.run_pod_sandbox(sandbox_config("default", "web-node1", 0), "").await.unwrap();
        assert_eq!(sb.len(), 64);
        let status = rt.pod_sandbox_status(&sb).await.unwrap();
        assert_eq!(status.state, PodSandboxState::SandboxReady as i32);
        assert_eq!(status.created_at, t0);
        assert_eq!(status.network.unwrap().ip, "10.0.0.1");
        assert_eq!(status.annotations["a"], "b");

        let image_ref = rt.pull_image(spec("busybox"), None, None).await.unwrap();
        assert!(image_ref.starts_with("sha256:"));
        rt.advance(Duration::from_secs(5));
        let before_create = rt.now_ns();
        assert!(before_create >= t0 + 5_000_000_000);
        let id = rt
            .create_container(&sb, container_config("app", "busybox"), sandbox_config("default", "web-node1", 0))
            .await
            .unwrap();
        let st = rt.container_status(&id).await.unwrap();
        assert_eq!(st.state, ContainerState::ContainerCreated as i32);
        assert_eq!(st.created_at, before_create);
        assert_eq!(st.started_at, 0);
        assert_eq!(st.image.unwrap().image, "docker.io/library/busybox:latest");
        assert_eq!(st.image_id, "", "containerd 1.6 leaves it empty");
        assert!(st.image_ref.starts_with("docker.io/library/busybox@sha256:"));
        assert_eq!(rt.image_status(spec(&image_ref)).await.unwrap().unwrap().id, image_ref);
        assert_eq!(st.labels["io.kubernetes.container.name"], "app");
        assert_eq!(st.annotations["hash"], "123");
        assert_eq!(st.log_path, "app/0.log");

        rt.start_container(&id).await.unwrap();
        let st = rt.container_status(&id).await.unwrap();
        assert_eq!(st.state, ContainerState::ContainerRunning as i32);
        assert!(st.started_at > st.created_at);

        rt.set_exec_result(&id, api::ExecSyncResponse { stdout: b"ok\n".to_vec(), ..Default::default() });
        let out = rt.exec_sync(&id, vec!["echo".into(), "ok".into()], 1).await.unwrap();
        assert_eq!(out.stdout, b"ok\n");

        rt.advance(Duration::from_secs(1));
        assert!(rt.exit_container(&id, 3));
        assert!(!rt.exit_container(&id, 3), "already exited");
        let st = rt.container_status(&id).await.unwrap();
        assert_eq!(st.state, ContainerState::ContainerExited as i32);
        assert_eq!((st.exit_code, st.reason.as_str()), (3, "Error"));
        assert!(st.finished_at >= st.started_at + 1_000_000_000);
        let err = rt.exec_sync(&id, vec!["true".into()], 0).await.unwrap_err();
        assert!(err.to_string().contains("CONTAINER_EXITED"), "{err}");
        let err = rt.start_container(&id).await.unwrap_err();
        assert!(matches!(err, Error::Rpc { op: "StartContainer", .. }), "{err:?}");

        rt.stop_container(&id, 30).await.unwrap();
        rt.remove_container(&id).await.unwrap();
        assert!(rt.container_status(&id).await.unwrap_err().is_not_found());
        rt.stop_pod_sandbox(&sb).await.unwrap();
        rt.remove_pod_sandbox(&sb).await.unwrap();
        assert!(rt.list_pod_sandbox(None).await.unwrap().is_empty());

        assert_eq!(
            rt.calls(),
            vec![
                "RunPodSandbox default/web-node1".to_string(),
                format!("PodSandboxStatus {sb}"),
                "PullImage busybox".into(),
                "CreateContainer app".into(),
                format!("ContainerStatus {id}"),
                format!("ImageStatus {image_ref}"),
                format!("StartContainer {id}"),
                format!("ContainerStatus {id}"),
                format!("ExecSync {id} echo ok"),
                format!("ContainerStatus {id}"),
                format!("ExecSync {id} true"),
                format!("StartContainer {id}"),
                format!("StopContainer {id}"),
                format!("RemoveContainer {id}"),
                format!("ContainerStatus {id}"),
                format!("StopPodSandbox {sb}"),
                format!("RemovePodSandbox {sb}"),
                "ListPodSandbox".into(),
            ]
        );
        rt.clear_calls();
        assert!(rt.calls().is_empty());
    }

    #[tokio::test]
    async fn exit_reasons_and_stop_codes() {
        let rt = FakeRuntime::new();
        let (_, ids) = running_pod(&rt, "p", &["a", "b", "c", "d"]).await;
        assert!(rt.exit_container(&ids[0], 0));
        assert!(rt.exit_container_with_reason(&ids[1], 137, "OOMKilled"));
        rt.stop_container(&ids[2], 0).await.unwrap();
        rt.stop_container(&ids[3], 10).await.unwrap();
        let got: Vec<(i32, String)> = futures_status(&rt, &ids).await;
        assert_eq!(
            got,
            vec![(0, "Completed".into()), (137, "OOMKilled".into()), (137, "Error".into()), (143, "Error".into())]
        );
    }

    async fn futures_status(rt: &FakeRuntime, ids: &[String]) -> Vec<(i32, String)> {
        let mut out = Vec::new();
        for id in ids {
            let st = rt.container_status(id).await.unwrap();
            assert_eq!(st.state, ContainerState::ContainerExited as i32);
            out.push((st.exit_code, st.reason));
        }
        out
    }

    #[tokio::test]
    async fn sandbox_filters() {
        let rt = FakeRuntime::new();
        let a = rt.run_pod_sandbox(sandbox_config("default", "a", 0), "").await.unwrap();
        let b = rt.run_pod_sandbox(sandbox_config("default", "b", 0), "runc").await.unwrap();
        let h = rt.run_pod_sandbox(host_network_config("kube-system", "h"), "").await.unwrap();
        rt.stop_pod_sandbox(&b).await.unwrap();

        let ids = |v: Vec<api::PodSandbox>| v.into_iter().map(|x| x.id).collect::<Vec<_>>();
        assert_eq!(ids(rt.list_pod_sandbox(None).await.unwrap()), vec![a.clone(), b.clone(), h.clone()]);
        let f = |id: &str, state: Option<PodSandboxState>, labels: &[(&str, &str)]| {
            Some(api::PodSandboxFilter {
                id: id.into(),
                state: state.map(|s| api::PodSandboxStateValue { state: s as i32 }),
                label_selector: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            })
        };
        assert_eq!(ids(rt.list_pod_sandbox(f(&b, None, &[])).await.unwrap()), vec![b.clone()]);
        assert!(rt.list_pod_sandbox(f("nope", None, &[])).await.unwrap().is_empty());
        assert_eq!(
            ids(rt.list_pod_sandbox(f("", Some(PodSandboxState::SandboxReady), &[])).await.unwrap()),
            vec![a.clone(), h.clone()]
        );
        assert_eq!(
            ids(rt.list_pod_sandbox(f("", Some(PodSandboxState::SandboxNotready), &[])).await.unwrap()),
            vec![b.clone()]
        );
        assert_eq!(
            ids(rt.list_pod_sandbox(f("", None, &[("io.kubernetes.pod.name", "a")])).await.unwrap()),
            vec![a.clone()]
        );
        assert!(
            rt.list_pod_sandbox(f("", None, &[("io.kubernetes.pod.name", "a"), ("x", "y")])).await.unwrap().is_empty()
        );
        assert!(rt.list_pod_sandbox(f(&a, Some(PodSandboxState::SandboxNotready), &[])).await.unwrap().is_empty());

        let list = rt.list_pod_sandbox(f(&b, None, &[])).await.unwrap();
        assert_eq!(list[0].runtime_handler, "runc");
        assert_eq!(list[0].metadata.as_ref().unwrap().name, "b");
        let hs = rt.pod_sandbox_status(&h).await.unwrap();
        assert_eq!(hs.network.unwrap().ip, "");
        let opts = hs.linux.unwrap().namespaces.unwrap().options.unwrap();
        assert_eq!(opts.network, NamespaceMode::Node as i32);
        assert_eq!(rt.pod_sandbox_status(&b).await.unwrap().network.unwrap().ip, "10.0.0.2");
    }

    #[tokio::test]
    async fn container_filters() {
        let rt = FakeRuntime::new();
        let (sa, a) = running_pod(&rt, "pa", &["x", "y"]).await;
        let (sb, b) = running_pod(&rt, "pb", &["x"]).await;
        let created = rt
            .create_container(&sb, container_config("z", "busybox"), sandbox_config("default", "pb", 0))
            .await
            .unwrap();
        rt.exit_container(&a[1], 1);

        let ids = |v: Vec<api::Container>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
        let f = |id: &str, sandbox: &str, state: Option<ContainerState>, labels: &[(&str, &str)]| {
            Some(api::ContainerFilter {
                id: id.into(),
                pod_sandbox_id: sandbox.into(),
                state: state.map(|s| api::ContainerStateValue { state: s as i32 }),
                label_selector: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            })
        };
        assert_eq!(
            ids(rt.list_containers(None).await.unwrap()),
            vec![a[0].clone(), a[1].clone(), b[0].clone(), created.clone()]
        );
        assert_eq!(ids(rt.list_containers(f("", &sa, None, &[])).await.unwrap()), a.clone());
        assert_eq!(ids(rt.list_containers(f(&b[0], "", None, &[])).await.unwrap()), vec![b[0].clone()]);
        assert!(rt.list_containers(f(&b[0], &sa, None, &[])).await.unwrap().is_empty());
        assert_eq!(
            ids(rt.list_containers(f("", "", Some(ContainerState::ContainerRunning), &[])).await.unwrap()),
            vec![a[0].clone(), b[0].clone()]
        );
        assert_eq!(
            ids(rt.list_containers(f("", "", Some(ContainerState::ContainerExited), &[])).await.unwrap()),
            vec![a[1].clone()]
        );
        assert_eq!(
            ids(rt.list_containers(f("", "", Some(ContainerState::ContainerCreated), &[])).await.unwrap()),
            vec![created.clone()]
        );
        assert_eq!(
            ids(rt.list_containers(f("", "", None, &[("io.kubernetes.container.name", "x")])).await.unwrap()),
            vec![a[0].clone(), b[0].clone()]
        );
        assert_eq!(
            ids(rt
                .list_containers(f(
                    "",
                    &sb,
                    Some(ContainerState::ContainerRunning),
                    &[("io.kubernetes.container.name", "x")]
                ))
                .await
                .unwrap()),
            vec![b[0].clone()]
        );
        let c = &rt.list_containers(f(&a[0], "", None, &[])).await.unwrap()[0];
        assert_eq!(c.pod_sandbox_id, sa);
        assert_eq!(c.image.as_ref().unwrap().image, "docker.io/library/busybox:latest");
        assert!(c.image_ref.starts_with("docker.io/library/busybox@sha256:"));
        assert_eq!(c.annotations["hash"], "123");
    }

    #[tokio::test]
    async fn stop_and_remove_sandbox_cascade() {
        let rt = FakeRuntime::new();
        let (sb, ids) = running_pod(&rt, "p", &["a", "b"]).await;
        let (other, other_ids) = running_pod(&rt, "q", &["a"]).await;

        rt.stop_pod_sandbox(&sb).await.unwrap();
        rt.stop_pod_sandbox(&sb).await.unwrap(); // idempotent
        for id in &ids {
            let st = rt.container_status(id).await.unwrap();
            assert_eq!((st.state, st.exit_code), (ContainerState::ContainerExited as i32, 137));
        }
        let err = rt.create_container(&sb, container_config("c", "busybox"), sandbox_config("default", "p", 0)).await;
        let id = err.unwrap();
        assert!(rt.start_container(&id).await.unwrap_err().to_string().contains("is not running"));

        rt.remove_pod_sandbox(&sb).await.unwrap();
        rt.remove_pod_sandbox(&sb).await.unwrap(); // gone: still ok
        assert!(
            rt.list_containers(Some(api::ContainerFilter { pod_sandbox_id: sb.clone(), ..Default::default() }))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(rt.pod_sandbox_status(&sb).await.unwrap_err().is_not_found());
        assert!(rt.stop_pod_sandbox(&sb).await.unwrap_err().is_not_found());
        // The other pod is untouched.
        assert_eq!(rt.pod_sandbox_status(&other).await.unwrap().state, PodSandboxState::SandboxReady as i32);
        assert_eq!(rt.container_status(&other_ids[0]).await.unwrap().state, ContainerState::ContainerRunning as i32);
    }

    #[tokio::test]
    async fn removal_force_stops_like_containerd() {
        let rt = FakeRuntime::new();
        let (sb, ids) = running_pod(&rt, "p", &["a", "b"]).await;
        rt.remove_container(&ids[0]).await.unwrap();
        assert!(rt.container_status(&ids[0]).await.unwrap_err().is_not_found());
        rt.remove_pod_sandbox(&sb).await.unwrap();
        assert!(rt.container_status(&ids[1]).await.unwrap_err().is_not_found());
        assert!(rt.list_pod_sandbox(None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn name_reservation_and_attempts() {
        let rt = FakeRuntime::new();
        let sb = rt.run_pod_sandbox(sandbox_config("default", "p", 0), "").await.unwrap();
        let err = rt.run_pod_sandbox(sandbox_config("default", "p", 0), "").await.unwrap_err();
        assert!(err.to_string().contains("is reserved for"), "{err}");
        rt.run_pod_sandbox(sandbox_config("default", "p", 1), "").await.unwrap();

        rt.add_image("busybox:latest");
        let c0 = rt
            .create_container(&sb, container_config("app", "busybox"), sandbox_config("default", "p", 0))
            .await
            .unwrap();
        let err = rt.create_container(&sb, container_config("app", "busybox"), sandbox_config("default", "p", 0)).await;
        assert!(err.unwrap_err().to_string().contains("is reserved for"));
        let mut next = container_config("app", "busybox");
        next.metadata.as_mut().unwrap().attempt = 1;
        let c1 = rt.create_container(&sb, next, sandbox_config("default", "p", 0)).await.unwrap();
        assert_ne!(c0, c1);
        // Removing frees the name.
        rt.remove_container(&c0).await.unwrap();
        rt.create_container(&sb, container_config("app", "busybox"), sandbox_config("default", "p", 0)).await.unwrap();
    }

    #[tokio::test]
    async fn not_found_errors() {
        let rt = FakeRuntime::new();
        for err in [
            rt.container_status("nope").await.unwrap_err(),
            rt.start_container("nope").await.unwrap_err(),
            rt.stop_container("nope", 0).await.unwrap_err(),
            rt.exec_sync("nope", vec!["true".into()], 0).await.unwrap_err(),
            rt.pod_sandbox_status("nope").await.unwrap_err(),
            rt.stop_pod_sandbox("nope").await.unwrap_err(),
        ] {
            assert!(err.is_not_found(), "{err:?}");
            assert!(err.to_string().contains("nope"), "{err}");
        }
        rt.remove_container("nope").await.unwrap();
        rt.remove_pod_sandbox("nope").await.unwrap();
        rt.remove_image(spec("nope")).await.unwrap();
        let err = rt
            .create_container("nope", container_config("app", "busybox"), sandbox_config("d", "p", 0))
            .await
            .unwrap_err();
        assert!(matches!(&err, Error::NotFound { op: "CreateContainer", what, .. } if what == "app"), "{err:?}");
        // The image must have been pulled.
        let sb = rt.run_pod_sandbox(sandbox_config("default", "p", 0), "").await.unwrap();
        let err = rt
            .create_container(&sb, container_config("app", "busybox"), sandbox_config("default", "p", 0))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("failed to resolve image"), "{err}");
    }

    #[tokio::test]
    async fn images() {
        let rt = FakeRuntime::new();
        assert_eq!(rt.image_status(spec("busybox")).await.unwrap(), None);
        let id = rt.pull_image(spec("busybox"), None, None).await.unwrap();
        // Every spelling of the reference resolves to the same image.
        for name in [
            "busybox",
            "busybox:latest",
            "docker.io/busybox",
            "docker.io/library/busybox:latest",
            id.as_str(),
            &id[7..],
        ] {
            let img = rt.image_status(spec(name)).await.unwrap().unwrap_or_else(|| panic!("{name}"));
            assert_eq!(img.id, id);
        }
        let img = rt.image_status(spec("busybox")).await.unwrap().unwrap();
        assert_eq!(img.repo_tags, vec!["docker.io/library/busybox:latest".to_string()]);
        let digest = img.repo_digests[0].clone();
        assert_eq!(rt.image_status(spec(&digest)).await.unwrap().unwrap().id, id);
        assert_eq!(
            rt.pull_image(spec("docker.io/library/busybox"), None, None).await.unwrap(),
            id,
            "pull is idempotent"
        );
        assert!(rt.image_status(spec("busybox:1.36")).await.unwrap().is_none());
        let other = rt.pull_image(spec("registry.k8s.io/pause:3.9"), None, None).await.unwrap();
        assert_ne!(other, id);
        assert_eq!(rt.list_images(None).await.unwrap().len(), 2);
        let filter = api::ImageFilter { image: Some(spec("registry.k8s.io/pause:3.9")) };
        assert_eq!(rt.list_images(Some(filter)).await.unwrap()[0].id, other);
        rt.remove_image(spec("busybox")).await.unwrap();
        assert!(rt.image_status(spec(&id)).await.unwrap().is_none());
        assert_eq!(rt.list_images(None).await.unwrap().len(), 1);

        rt.fail_pull("docker.io/library/nope", "not found");
        let err = rt.pull_image(spec("nope:latest"), None, None).await.unwrap_err();
        assert!(
            matches!(&err, Error::Rpc { op: "PullImage", code: Code::NotFound, what, .. } if what == "nope:latest"),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("failed to pull and unpack image \"docker.io/library/nope:latest\": not found"),
            "{err}"
        );
        assert!(!err.is_not_found());
        rt.fail_pull("private/img", "unexpected status code 401 Unauthorized");
        let err = rt.pull_image(spec("private/img"), None, None).await.unwrap_err();
        assert!(matches!(err, Error::Rpc { code: Code::Unknown, .. }), "{err:?}");
    }

    #[test]
    fn reference_normalization() {
        for (input, want) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("user/app:v1", "docker.io/user/app:v1"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("localhost/app", "localhost/app:latest"),
            ("busybox@sha256:abc", "docker.io/library/busybox@sha256:abc"),
            ("sha256:abc", "sha256:abc"),
        ] {
            assert_eq!(normalize_ref(input), want, "{input}");
        }
    }

    #[tokio::test]
    async fn down_and_injected_errors() {
        let rt = FakeRuntime::new();
        rt.set_down(true);
        let err = rt.version().await.unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }) && err.is_transient(), "{err:?}");
        assert!(err.to_string().starts_with("container runtime not reachable at unix://"), "{err}");
        assert!(matches!(rt.list_images(None).await.unwrap_err(), Error::Unreachable { .. }));
        rt.set_down(false);
        assert_eq!(rt.version().await.unwrap().runtime_api_version, "v1");

        rt.inject_error("ListContainers", Error::Timeout { op: "ListContainers", after: Duration::from_secs(2) });
        rt.inject_error(
            "ListContainers",
            Error::Rpc {
                op: "ListContainers",
                what: "containers".into(),
                code: Code::Internal,
                message: "boom".into(),
            },
        );
        assert!(matches!(rt.list_containers(None).await.unwrap_err(), Error::Timeout { .. }));
        assert!(matches!(rt.list_containers(None).await.unwrap_err(), Error::Rpc { code: Code::Internal, .. }));
        assert!(rt.list_containers(None).await.unwrap().is_empty(), "one-shot");
        assert_eq!(rt.calls().iter().filter(|c| *c == "ListContainers").count(), 3);
        assert_eq!(rt.calls().iter().filter(|c| *c == "Version").count(), 2, "failed calls are recorded");
    }

    #[tokio::test]
    async fn runtime_conditions() {
        let rt = FakeRuntime::new();
        let st = rt.status().await.unwrap();
        assert!(st.conditions.iter().all(|c| c.status));
        assert_eq!(st.conditions.len(), 2);
        rt.set_condition("NetworkReady", false, "NetworkPluginNotReady", "cni config uninitialized");
        let st = rt.status().await.unwrap();
        let net = st.conditions.iter().find(|c| c.r#type == "NetworkReady").unwrap();
        assert_eq!((net.status, net.reason.as_str()), (false, "NetworkPluginNotReady"));
        assert_eq!(st.conditions.len(), 2);
    }

    #[tokio::test]
    async fn configs_are_inspectable() {
        let rt = FakeRuntime::new();
        let (sb, ids) = running_pod(&rt, "p", &["a"]).await;
        assert_eq!(rt.sandbox_config(&sb).unwrap().hostname, "p");
        assert_eq!(rt.container_config(&ids[0]).unwrap().log_path, "a/0.log");
        assert!(rt.container_config("nope").is_none());
    }
}
