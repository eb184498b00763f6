//! An rkubelet process for integration tests: its own root dir, manifest dir, pod logs dir,
//! node name and healthz port, on the private containerd. One agent runs at a time per test
//! binary (a kubelet owns every pod of its runtime: two would kill each other's pods as orphans).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cri::{RemoteRuntime, RuntimeService, api};
use k8s_openapi::api::core::v1::Pod;

use crate::env::NodeEnv;

static ONE_AGENT: Mutex<()> = Mutex::new(());
static COUNTER: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// A `--config` file's YAML content.
    pub config_yaml: Option<String>,
    /// Use this endpoint instead of the environment's (e.g. a socket that does not exist yet).
    pub runtime_endpoint: Option<String>,
}

pub struct Agent {
    pub bin: PathBuf,
    pub env: NodeEnv,
    pub node: String,
    pub healthz_port: u16,
    /// The kubelet API port (`--port`), on all addresses; its self-signed certificate is in
    /// [`Agent::cert_dir`].
    pub port: u16,
    dir: tempfile::TempDir,
    opts: AgentOptions,
    child: Option<Child>,
    _exclusive: MutexGuard<'static, ()>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

impl Agent {
    /// Starts an agent with a fresh node name (`rkt-<tag>-<pid>-<n>`) and directories.
    pub fn start(bin: &Path, env: &NodeEnv, tag: &str, opts: AgentOptions) -> Agent {
        let exclusive = ONE_AGENT.lock().unwrap_or_else(|e| e.into_inner());
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let node = format!("rkt-{tag}-{}-{n}", std::process::id()).to_lowercase();
        let dir = tempfile::Builder::new().prefix("rkubelet-test-").tempdir().expect("temp dir");
        for sub in ["manifests", "root", "logs"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        let mut agent = Agent {
            bin: bin.to_path_buf(),
            env: env.clone(),
            node,
            healthz_port: free_port(),
            port: free_port(),
            dir,
            opts,
            child: None,
            _exclusive: exclusive,
        };
        agent.spawn();
        agent
    }

    pub fn manifests_dir(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }
    pub fn root_dir(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }
    pub fn cert_dir(&self) -> PathBuf {
        self.dir.path().join("pki")
    }
    fn log_file(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    /// The agent's own log so far (stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// (Re)starts the process with the same directories and node name.
    pub fn spawn(&mut self) {
        let endpoint = self.opts.runtime_endpoint.clone().unwrap_or_else(|| self.env.runtime_endpoint.clone());
        let config = self.dir.path().join("config.yaml");
        let base = format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\npodLogsDir: {}\nfileCheckFrequency: 2s\n",
            self.logs_dir().display()
        );
        let extra = self.opts.config_yaml.clone().unwrap_or_default();
        // The test machine's disk may be fuller than upstream's default disk thresholds allow
        // (a build directory beside it): tests that are not about eviction must not see
        // DiskPressure. Memory keeps upstream's default threshold.
        let eviction = if extra.contains("evictionHard") {
            ""
        } else {
            "evictionHard:\n  memory.available: 100Mi\n  nodefs.available: 1%\n  imagefs.available: 1%\n  nodefs.inodesFree: 1%\n"
        };
        // Likewise image garbage collection, which would remove images other tests' pods are
        // about to use from the shared runtime.
        let image_gc =
            if extra.contains("imageGCHighThresholdPercent") { "" } else { "imageGCHighThresholdPercent: 100\n" };
        std::fs::write(&config, format!("{base}{eviction}{image_gc}{extra}")).expect("write config");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_file()).expect("log file");
        let child = Command::new(&self.bin)
            .arg("--config")
            .arg(&config)
            .arg("--pod-manifest-path")
            .arg(self.manifests_dir())
            .arg("--root-dir")
            .arg(self.root_dir())
            .arg("--container-runtime-endpoint")
            .arg(endpoint)
            .arg("--hostname-override")
            .arg(&self.node)
            .arg("--healthz-port")
            .arg(self.healthz_port.to_string())
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--cert-dir")
            .arg(self.cert_dir())
            .args(&self.opts.args)
            .env("RKUBELET_LOG", "info,core_kubelet=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn rkubelet");
        self.child = Some(child);
    }

    /// SIGKILL, then a new process with other options (the same node, directories and pods),
    /// as an operator changing the configuration would.
    pub fn restart_with(&mut self, opts: AgentOptions) {
        self.kill9();
        self.opts = opts;
        self.spawn();
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit (deadline 20 s); returns the exit code.
    pub async fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let pid = i32::try_from(c.id()).ok()?;
        let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn write_manifest(&self, file: &str, content: &str) {
        // Write then rename, as an operator's editor would, so the agent never reads half a file.
        let tmp = self.dir.path().join(format!(".{file}.tmp"));
        std::fs::write(&tmp, content).expect("write manifest");
        std::fs::rename(&tmp, self.manifests_dir().join(file)).expect("rename manifest");
    }

    pub fn remove_manifest(&self, file: &str) {
        std::fs::remove_file(self.manifests_dir().join(file)).expect("remove manifest");
    }

    /// The static pod's full name on this node.
    pub fn pod_name(&self, name: &str) -> String {
        format!("{name}-{}", self.node)
    }

    async fn http_get(&self, path: &str) -> Result<(u16, String), String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s =
            tokio::net::TcpStream::connect(("127.0.0.1", self.healthz_port)).await.map_err(|e| e.to_string())?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf);
        let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Ok((code, body))
    }

    /// `GET /healthz`: (status code, body).
    pub async fn healthz(&self) -> Result<(u16, String), String> {
        self.http_get("/healthz").await
    }

    /// The pods the agent reports, from its local debug endpoint.
    pub async fn pods(&self) -> Result<Vec<Pod>, String> {
        let (code, body) = self.http_get("/debug/pods").await?;
        if code != 200 {
            return Err(format!("/debug/pods answered {code}: {body}"));
        }
        let list: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        serde_json::from_value(list["items"].clone()).map_err(|e| e.to_string())
    }

    /// The named static pod (short name), if reported.
    pub async fn pod(&self, name: &str) -> Result<Pod, String> {
        let full = self.pod_name(name);
        self.pods()
            .await?
            .into_iter()
            .find(|p| p.metadata.name.as_deref() == Some(full.as_str()))
            .ok_or_else(|| format!("pod {full} not reported yet"))
    }

    /// A CRI client to the environment's runtime.
    pub fn cri(&self) -> Arc<RemoteRuntime> {
        Arc::new(RemoteRuntime::connect(&self.env.runtime_endpoint, Duration::from_secs(30)).expect("cri client"))
    }

    /// This node's sandboxes (any state) for a static pod's short name.
    pub async fn sandboxes(&self, name: &str) -> Vec<api::PodSandbox> {
        let filter = api::PodSandboxFilter {
            label_selector: HashMap::from([("io.kubernetes.pod.name".to_string(), self.pod_name(name))]),
            ..Default::default()
        };
        self.cri().list_pod_sandbox(Some(filter)).await.unwrap_or_default()
    }

    /// This node's containers for a static pod's short name.
    pub async fn containers(&self, name: &str) -> Vec<api::Container> {
        self.containers_of_pod(&self.pod_name(name)).await
    }

    /// The runtime's containers of the pod with this full name (e.g. a pod from the API server).
    pub async fn containers_of_pod(&self, pod_name: &str) -> Vec<api::Container> {
        let filter = api::ContainerFilter {
            label_selector: HashMap::from([("io.kubernetes.pod.name".to_string(), pod_name.to_string())]),
            ..Default::default()
        };
        self.cri().list_containers(Some(filter)).await.unwrap_or_default()
    }

    /// Stops the agent, removes every sandbox of this node from the runtime and unmounts what
    /// its volumes left below its directory.
    pub async fn cleanup(mut self) {
        self.kill9();
        remove_node_pods(&self.env, &self.node, &self.root_dir()).await;
        unmount_below(self.dir.path());
        // The node's /var/log/containers links (its pods' names end with the node name or are
        // listed under it; a static pod's is `<name>-<node>_…`).
        if let Ok(entries) = std::fs::read_dir("/var/log/containers") {
            let marker = format!("-{}_", self.node);
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().contains(&marker) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// Removes this node's sandboxes: static pods (named `<name>-<node>`) and every pod the agent
/// has a directory for under `<root>/pods/<uid>` (pods from the API server).
async fn remove_node_pods(env: &NodeEnv, node: &str, root: &Path) {
    let Ok(rt) = RemoteRuntime::connect(&env.runtime_endpoint, Duration::from_secs(30)) else { return };
    let suffix = format!("-{node}");
    let uids: HashSet<String> = std::fs::read_dir(root.join("pods"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    for s in rt.list_pod_sandbox(None).await.unwrap_or_default() {
        let static_pod = s.labels.get("io.kubernetes.pod.name").is_some_and(|n| n.ends_with(&suffix));
        let api_pod = s.labels.get("io.kubernetes.pod.uid").is_some_and(|u| uids.contains(u));
        if static_pod || api_pod {
            let _ = rt.stop_pod_sandbox(&s.id).await;
            let _ = rt.remove_pod_sandbox(&s.id).await;
            if let Some(uid) = s.labels.get("io.kubernetes.pod.uid") {
                remove_pod_cgroups(uid);
            }
        }
    }
}

/// Removes the (by now empty) cgroups a killed agent left for a pod under `/kubepods`.
fn remove_pod_cgroups(uid: &str) {
    let Ok(fs) = sys::cgroup::CgroupFs::open(Path::new("/sys/fs/cgroup")) else { return };
    for qos in ["", "burstable/", "besteffort/"] {
        let _ = fs.remove(&format!("/kubepods/{qos}pod{uid}"));
    }
}

/// Unmounts every mount below `dir` (the tmpfs of secret, downwardAPI and projected volumes a
/// killed agent leaves), deepest first, so the temporary directory can be removed.
fn unmount_below(dir: &Path) {
    let mut mounts: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(PathBuf::from))
        .filter(|m| m.starts_with(dir))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in mounts {
        if !Command::new("umount").arg(&m).status().is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        self.kill9();
        // A failed test still leaves no pods and no mounts behind.
        let env = self.env.clone();
        let node = self.node.clone();
        let root = self.root_dir();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(remove_node_pods(&env, &node, &root));
            }
        })
        .join();
        unmount_below(self.dir.path());
    }
}
