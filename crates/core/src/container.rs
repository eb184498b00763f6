//! The runtime's view of a pod, read back from CRI (upstream's `kubecontainer.PodStatus`): what
//! sandboxes and containers exist for a pod UID, recovered entirely from CRI labels/annotations.

use std::collections::BTreeMap;

/// Container state as CRI reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// One container instance (one attempt) of a pod, as recovered from the runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRuntimeStatus {
    /// CRI container id (without the `containerd://` prefix).
    pub id: String,
    /// The pod spec's container name (`io.kubernetes.container.name`).
    pub name: String,
    pub state: ContainerState,
    /// Unix nanoseconds; 0 when unset.
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    /// The image as the spec named it.
    pub image: String,
    /// The resolved image id / digest reference.
    pub image_ref: String,
    /// `io.kubernetes.container.restartCount` annotation.
    pub restart_count: i32,
    /// `io.kubernetes.container.hash` annotation (hex).
    pub hash: String,
    /// CRI reason (e.g. "Completed", "Error", "OOMKilled").
    pub reason: String,
    pub message: String,
}

/// One sandbox (pod network + pause process) of a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxRuntimeStatus {
    pub id: String,
    /// true when CRI reports SANDBOX_READY.
    pub ready: bool,
    pub created_at: i64,
    /// `metadata.attempt`.
    pub attempt: u32,
    /// Pod IPs (primary first); empty for hostNetwork pods or stopped sandboxes.
    pub ips: Vec<String>,
    pub host_network: bool,
}

/// Everything the runtime has for one pod UID.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodRuntimeStatus {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    /// Newest first.
    pub sandboxes: Vec<SandboxRuntimeStatus>,
    /// Newest first (by created_at); several attempts of one container name may be present.
    pub containers: Vec<ContainerRuntimeStatus>,
}

impl PodRuntimeStatus {
    /// The newest instance of the named container.
    pub fn latest(&self, name: &str) -> Option<&ContainerRuntimeStatus> {
        self.containers.iter().find(|c| c.name == name)
    }
    /// The newest instance and the one before it (for `lastState`).
    pub fn latest_two(&self, name: &str) -> (Option<&ContainerRuntimeStatus>, Option<&ContainerRuntimeStatus>) {
        let mut it = self.containers.iter().filter(|c| c.name == name);
        (it.next(), it.next())
    }
    /// Pod IPs of the newest sandbox.
    pub fn ips(&self) -> &[String] {
        self.sandboxes.first().map(|s| s.ips.as_slice()).unwrap_or(&[])
    }
}

/// Why a container is not running, as decided by the last sync (upstream's sync results that
/// become `state.waiting.reason`): e.g. `ErrImagePull`, `ImagePullBackOff`, `CrashLoopBackOff`,
/// `CreateContainerConfigError`, `CreateContainerError`, `RunContainerError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingReason {
    pub reason: String,
    pub message: String,
}

/// Per container name: the waiting reason the last sync recorded (cleared once it starts).
pub type SyncReasons = BTreeMap<String, WaitingReason>;
