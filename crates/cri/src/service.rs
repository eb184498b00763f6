//! The two CRI seams the kubelet talks through. Every method maps to one CRI v1 RPC.

use async_trait::async_trait;

use crate::Result;
use crate::api;

/// The runtime half of CRI (pods and containers).
///
/// Contract: called concurrently from many pod workers; every call is bounded by the client's
/// request timeout; a runtime that cannot be reached yields `Error::Unreachable`, an unknown id
/// yields `Error::NotFound` (so callers can treat removal of a missing object as done).
#[async_trait]
pub trait RuntimeService: Send + Sync + 'static {
    async fn version(&self) -> Result<api::VersionResponse>;
    /// Runtime conditions (RuntimeReady, NetworkReady).
    async fn status(&self) -> Result<api::RuntimeStatus>;
    /// The runtime's verbose information (`Status` with `verbose`): containerd puts its CRI
    /// configuration as JSON under `config` (with the `sandboxImage`).
    async fn status_info(&self) -> Result<std::collections::HashMap<String, String>>;

    /// Creates and starts a sandbox; returns its id.
    async fn run_pod_sandbox(&self, config: api::PodSandboxConfig, runtime_handler: &str) -> Result<String>;
    async fn stop_pod_sandbox(&self, pod_sandbox_id: &str) -> Result<()>;
    async fn remove_pod_sandbox(&self, pod_sandbox_id: &str) -> Result<()>;
    async fn pod_sandbox_status(&self, pod_sandbox_id: &str) -> Result<api::PodSandboxStatus>;
    /// The runtime's verbose information about a sandbox (`PodSandboxStatus` with `verbose`):
    /// containerd puts a JSON document under `info` holding, among others, the sandbox's `pid`.
    async fn pod_sandbox_info(&self, pod_sandbox_id: &str) -> Result<std::collections::HashMap<String, String>>;
    async fn list_pod_sandbox(&self, filter: Option<api::PodSandboxFilter>) -> Result<Vec<api::PodSandbox>>;

    /// Creates a container in a sandbox; returns its id.
    async fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> Result<String>;
    async fn start_container(&self, container_id: &str) -> Result<()>;
    /// Stops a container, sending SIGKILL after `timeout_secs` (0 = immediately).
    async fn stop_container(&self, container_id: &str, timeout_secs: i64) -> Result<()>;
    async fn remove_container(&self, container_id: &str) -> Result<()>;
    /// Asks the runtime to reopen a running container's log file (after the kubelet renamed
    /// it for rotation): writes go to a new file at the log path.
    async fn reopen_container_log(&self, container_id: &str) -> Result<()>;
    async fn list_containers(&self, filter: Option<api::ContainerFilter>) -> Result<Vec<api::Container>>;
    async fn container_status(&self, container_id: &str) -> Result<api::ContainerStatus>;
    /// Runs a command in a container and waits for it (timeout 0 = no limit beyond the client's).
    async fn exec_sync(&self, container_id: &str, cmd: Vec<String>, timeout_secs: i64)
    -> Result<api::ExecSyncResponse>;
    /// Prepares a streaming exec; the runtime's streaming-server URL to hand the client to.
    async fn exec(&self, req: api::ExecRequest) -> Result<String>;
    /// Prepares a streaming attach; the streaming-server URL.
    async fn attach(&self, req: api::AttachRequest) -> Result<String>;
    /// Prepares a port forward into a sandbox; the streaming-server URL.
    async fn port_forward(&self, req: api::PortForwardRequest) -> Result<String>;
    /// CPU, memory and writable-layer usage of the containers the filter selects.
    async fn list_container_stats(&self, filter: Option<api::ContainerStatsFilter>)
    -> Result<Vec<api::ContainerStats>>;
}

/// The image half of CRI. Same contract as `RuntimeService`.
#[async_trait]
pub trait ImageService: Send + Sync + 'static {
    /// Pulls an image; returns the image reference (id) the runtime resolved it to.
    async fn pull_image(
        &self,
        image: api::ImageSpec,
        auth: Option<api::AuthConfig>,
        sandbox_config: Option<api::PodSandboxConfig>,
    ) -> Result<String>;
    /// `Ok(None)` when the image is not present.
    async fn image_status(&self, image: api::ImageSpec) -> Result<Option<api::Image>>;
    async fn list_images(&self, filter: Option<api::ImageFilter>) -> Result<Vec<api::Image>>;
    async fn remove_image(&self, image: api::ImageSpec) -> Result<()>;
    /// The filesystems holding images, with their usage.
    async fn image_fs_info(&self) -> Result<Vec<api::FilesystemUsage>>;
}
