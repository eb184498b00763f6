//! `RemoteRuntime`: the CRI v1 client over the runtime's unix socket (tonic).
//!
//! The channel connects lazily and reconnects by itself, so a runtime that is down at start-up
//! (or restarts later) only makes individual calls fail with `Error::Unreachable`.
//!
//! Timeouts (each call is bounded on the client with `tokio::time::timeout`, and the same
//! deadline is sent to the runtime as `grpc-timeout`):
//! - every call: `request_timeout`;
//! - `RunPodSandbox`: 2 × `request_timeout` (as upstream: sandbox setup includes networking);
//! - `StopContainer`: `request_timeout` + the grace period;
//! - `ExecSync`: `request_timeout` + the command timeout when it is > 0;
//! - `PullImage`: max(4 × `request_timeout`, 5 min), since pulls of large images are slow
//!   (upstream leaves pulls unbounded; we prefer a generous bound over a hung pod worker).

use std::error::Error as StdError;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status};

use crate::api;
use crate::{Error, ImageService, Result, RuntimeService};

/// The kubelet's CRI API version string sent in `Version` (upstream `kubeRuntimeAPIVersion`).
pub const KUBE_RUNTIME_API_VERSION: &str = "0.1.0";
/// Max gRPC message size in both directions (upstream `maxMsgSize`): large `ListContainers`.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;
/// Lower bound of the `PullImage` timeout.
pub const MIN_PULL_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// CRI client for a runtime listening on a unix socket. Cheap to clone (shares one channel).
#[derive(Clone, Debug)]
pub struct RemoteRuntime {
    endpoint: String,
    timeout: Duration,
    runtime: RuntimeServiceClient<Channel>,
    image: ImageServiceClient<Channel>,
    observer: Option<Arc<dyn CallObserver>>,
}

/// Told of every CRI call as it ends: the method (`RunPodSandbox`), how long it took, and
/// whether it failed (upstream's instrumented runtime service feeds its metrics this way).
pub trait CallObserver: std::fmt::Debug + Send + Sync + 'static {
    fn observe(&self, method: &'static str, took: Duration, failed: bool);
}

impl RemoteRuntime {
    /// Builds a client for `unix:///path` or a bare `/path`. Never connects here: the first call
    /// does, so this succeeds even while the runtime is down. Other schemes are rejected with a
    /// non-transient `Error::Rpc` (code `InvalidArgument`) naming the endpoint.
    pub fn connect(endpoint: &str, request_timeout: Duration) -> Result<Self> {
        let path = socket_path(endpoint)?;
        let channel =
            Endpoint::from_static("http://localhost").connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { UnixStream::connect(path).await.map(TokioIo::new) }
            }));
        Ok(Self {
            endpoint: endpoint.to_string(),
            timeout: request_timeout,
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            image: ImageServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            observer: None,
        })
    }

    /// Reports every call to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The endpoint as given to `connect`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn request_timeout(&self) -> Duration {
        self.timeout
    }

    /// Timeout of `PullImage`: max(4 × request timeout, 5 min).
    pub fn pull_timeout(&self) -> Duration {
        (self.timeout * 4).max(MIN_PULL_TIMEOUT)
    }

    fn rt(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    fn img(&self) -> ImageServiceClient<Channel> {
        self.image.clone()
    }

    /// Runs one RPC bounded by `timeout` and maps its failure. `call` gets the request (with the
    /// deadline set as `grpc-timeout`) and returns the RPC future.
    async fn call<Req, Resp, F, Fut>(
        &self,
        op: &'static str,
        what: &str,
        timeout: Duration,
        msg: Req,
        call: F,
    ) -> Result<Resp>
    where
        F: FnOnce(tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, Status>>,
    {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(timeout);
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(timeout, call(req)).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => {
                let err = map_status(&self.endpoint, op, what, timeout, &status);
                tracing::debug!(op, what, code = ?status.code(), error = %err, "CRI call failed");
                Err(err)
            }
            Err(_) => Err(Error::Timeout { op, after: timeout }),
        };
        if let Some(o) = &self.observer {
            o.observe(op, started.elapsed(), result.is_err());
        }
        result
    }
}

/// `unix:///path` or `/path` → the socket path.
fn socket_path(endpoint: &str) -> Result<PathBuf> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(Error::Rpc {
            op: "Connect",
            what: endpoint.to_string(),
            code: Code::InvalidArgument,
            message: format!(
                "unsupported CRI endpoint {endpoint:?}: only unix sockets (unix:///path or /path) are supported"
            ),
        })
    }
}

/// Maps a failed call's status to our error. Statuses produced locally by the transport carry a
/// source error (the runtime never answered); statuses sent by the runtime have none.
fn map_status(endpoint: &str, op: &'static str, what: &str, after: Duration, status: &Status) -> Error {
    let chain = || std::iter::successors(StdError::source(status), |e: &&(dyn StdError + 'static)| (*e).source());
    if status.code() == Code::DeadlineExceeded || chain().any(|e| e.is::<tonic::TimeoutExpired>()) {
        return Error::Timeout { op, after };
    }
    if StdError::source(status).is_some() {
        let message = if chain().any(|e| e.is::<tonic::ConnectError>()) {
            match chain().find_map(|e| e.downcast_ref::<std::io::Error>()) {
                Some(io) => format!("connect: {}", io_message(io)),
                None => format!("connect: {}", status.message()),
            }
        } else {
            // Connection lost mid-call (runtime restarting, socket closed, ...).
            match chain().last() {
                Some(cause) if !status.message().contains(&cause.to_string()) => {
                    format!("{}: {cause}", status.message())
                }
                _ => status.message().to_string(),
            }
        };
        return Error::Unreachable { endpoint: endpoint.to_string(), message };
    }
    let message = status.message().to_string();
    // A failed pull is a pull error, never "the object is gone" (containerd answers NotFound
    // for an unknown image reference).
    if op != "PullImage" && is_not_found(status.code(), &message) {
        return Error::NotFound { op, what: what.to_string(), message };
    }
    Error::Rpc { op, what: what.to_string(), code: status.code(), message }
}

/// NotFound, or (code Unknown) a message ending in containerd's wrapped `...: not found` or
/// carrying CRI-O's "does not exist". Only the end counts for "not found": containerd reports a
/// failed exec as `...executable file not found in $PATH: unknown`, which is not a missing object.
fn is_not_found(code: Code, message: &str) -> bool {
    match code {
        Code::NotFound => true,
        Code::Unknown => {
            let m = message.trim_end().to_ascii_lowercase();
            m.ends_with("not found") || m.contains("does not exist")
        }
        _ => false,
    }
}

/// `No such file or directory` rather than `No such file or directory (os error 2)`.
fn io_message(err: &std::io::Error) -> String {
    let s = err.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

fn missing(op: &'static str, what: &str, field: &str) -> Error {
    Error::Rpc {
        op,
        what: what.to_string(),
        code: Code::Internal,
        message: format!("runtime returned an empty {field}"),
    }
}

fn sandbox_name(config: &api::PodSandboxConfig) -> String {
    config.metadata.as_ref().map(|m| format!("{}/{}", m.namespace, m.name)).unwrap_or_default()
}

fn container_name(config: &api::ContainerConfig) -> String {
    config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default()
}

#[async_trait]
impl RuntimeService for RemoteRuntime {
    async fn version(&self) -> Result<api::VersionResponse> {
        let msg = api::VersionRequest { version: KUBE_RUNTIME_API_VERSION.to_string() };
        self.call("Version", "runtime", self.timeout, msg, |r| async move { self.rt().version(r).await }).await
    }

    async fn status(&self) -> Result<api::RuntimeStatus> {
        let msg = api::StatusRequest { verbose: false };
        let resp =
            self.call("Status", "runtime", self.timeout, msg, |r| async move { self.rt().status(r).await }).await?;
        resp.status.ok_or_else(|| missing("Status", "runtime", "status"))
    }

    async fn status_info(&self) -> Result<std::collections::HashMap<String, String>> {
        let msg = api::StatusRequest { verbose: true };
        let resp =
            self.call("Status", "runtime", self.timeout, msg, |r| async move { self.rt().status(r).await }).await?;
        Ok(resp.info)
    }

    async fn run_pod_sandbox(&self, config: api::PodSandboxConfig, runtime_handler: &str) -> Result<String> {
        let what = sandbox_name(&config);
        let msg = api::RunPodSandboxRequest { config: Some(config), runtime_handler: runtime_handler.to_string() };
        let resp = self
            .call("RunPodSandbox", &what, self.timeout * 2, msg, |r| async move { self.rt().run_pod_sandbox(r).await })
            .await?;
        if resp.pod_sandbox_id.is_empty() {
            return Err(missing("RunPodSandbox", &what, "pod sandbox id"));
        }
        Ok(resp.pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, pod_sandbox_id: &str) -> Result<()> {
        let msg = api::StopPodSandboxRequest { pod_sandbox_id: pod_sandbox_id.to_string() };
        self.call("StopPodSandbox", pod_sandbox_id, self.timeout, msg, |r| async move {
            self.rt().stop_pod_sandbox(r).await
        })
        .await?;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, pod_sandbox_id: &str) -> Result<()> {
        let msg = api::RemovePodSandboxRequest { pod_sandbox_id: pod_sandbox_id.to_string() };
        self.call("RemovePodSandbox", pod_sandbox_id, self.timeout, msg, |r| async move {
            self.rt().remove_pod_sandbox(r).await
        })
        .await?;
        Ok(())
    }

    async fn pod_sandbox_status(&self, pod_sandbox_id: &str) -> Result<api::PodSandboxStatus> {
        let msg = api::PodSandboxStatusRequest { pod_sandbox_id: pod_sandbox_id.to_string(), verbose: false };
        let resp = self
            .call("PodSandboxStatus", pod_sandbox_id, self.timeout, msg, |r| async move {
                self.rt().pod_sandbox_status(r).await
            })
            .await?;
        resp.status.ok_or_else(|| missing("PodSandboxStatus", pod_sandbox_id, "status"))
    }

    async fn pod_sandbox_info(&self, pod_sandbox_id: &str) -> Result<std::collections::HashMap<String, String>> {
        let msg = api::PodSandboxStatusRequest { pod_sandbox_id: pod_sandbox_id.to_string(), verbose: true };
        let resp = self
            .call("PodSandboxStatus", pod_sandbox_id, self.timeout, msg, |r| async move {
                self.rt().pod_sandbox_status(r).await
            })
            .await?;
        Ok(resp.info)
    }

    async fn list_pod_sandbox(&self, filter: Option<api::PodSandboxFilter>) -> Result<Vec<api::PodSandbox>> {
        let msg = api::ListPodSandboxRequest { filter };
        let resp = self
            .call("ListPodSandbox", "pod sandboxes", self.timeout, msg, |r| async move {
                self.rt().list_pod_sandbox(r).await
            })
            .await?;
        Ok(resp.items)
    }

    async fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> Result<String> {
        let what = container_name(&config);
        let msg = api::CreateContainerRequest {
            pod_sandbox_id: pod_sandbox_id.to_string(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let resp = self
            .call("CreateContainer", &what, self.timeout, msg, |r| async move { self.rt().create_container(r).await })
            .await?;
        if resp.container_id.is_empty() {
            return Err(missing("CreateContainer", &what, "container id"));
        }
        Ok(resp.container_id)
    }

    async fn start_container(&self, container_id: &str) -> Result<()> {
        let msg = api::StartContainerRequest { container_id: container_id.to_string() };
        self.call(
            "StartContainer",
            container_id,
            self.timeout,
            msg,
            |r| async move { self.rt().start_container(r).await },
        )
        .await?;
        Ok(())
    }

    async fn stop_container(&self, container_id: &str, timeout_secs: i64) -> Result<()> {
        let grace = Duration::from_secs(timeout_secs.max(0).unsigned_abs());
        let msg = api::StopContainerRequest { container_id: container_id.to_string(), timeout: timeout_secs };
        self.call("StopContainer", container_id, self.timeout + grace, msg, |r| async move {
            self.rt().stop_container(r).await
        })
        .await?;
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> Result<()> {
        let msg = api::RemoveContainerRequest { container_id: container_id.to_string() };
        self.call("RemoveContainer", container_id, self.timeout, msg, |r| async move {
            self.rt().remove_container(r).await
        })
        .await?;
        Ok(())
    }

    async fn reopen_container_log(&self, container_id: &str) -> Result<()> {
        let msg = api::ReopenContainerLogRequest { container_id: container_id.to_string() };
        self.call("ReopenContainerLog", container_id, self.timeout, msg, |r| async move {
            self.rt().reopen_container_log(r).await
        })
        .await?;
        Ok(())
    }

    async fn list_containers(&self, filter: Option<api::ContainerFilter>) -> Result<Vec<api::Container>> {
        let msg = api::ListContainersRequest { filter };
        let resp =
            self.call("ListContainers", "containers", self.timeout, msg, |r| async move {
                self.rt().list_containers(r).await
            })
            .await?;
        Ok(resp.containers)
    }

    async fn container_status(&self, container_id: &str) -> Result<api::ContainerStatus> {
        let msg = api::ContainerStatusRequest { container_id: container_id.to_string(), verbose: false };
        let resp =
            self.call("ContainerStatus", container_id, self.timeout, msg, |r| async move {
                self.rt().container_status(r).await
            })
            .await?;
        resp.status.ok_or_else(|| missing("ContainerStatus", container_id, "status"))
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        timeout_secs: i64,
    ) -> Result<api::ExecSyncResponse> {
        let timeout = self.timeout + Duration::from_secs(timeout_secs.max(0).unsigned_abs());
        let msg = api::ExecSyncRequest { container_id: container_id.to_string(), cmd, timeout: timeout_secs };
        self.call("ExecSync", container_id, timeout, msg, |r| async move { self.rt().exec_sync(r).await }).await
    }

    async fn exec(&self, req: api::ExecRequest) -> Result<String> {
        let id = req.container_id.clone();
        let resp = self.call("Exec", &id, self.timeout, req, |r| async move { self.rt().exec(r).await }).await?;
        Ok(resp.url)
    }

    async fn attach(&self, req: api::AttachRequest) -> Result<String> {
        let id = req.container_id.clone();
        let resp = self.call("Attach", &id, self.timeout, req, |r| async move { self.rt().attach(r).await }).await?;
        Ok(resp.url)
    }

    async fn port_forward(&self, req: api::PortForwardRequest) -> Result<String> {
        let id = req.pod_sandbox_id.clone();
        let resp = self
            .call("PortForward", &id, self.timeout, req, |r| async move { self.rt().port_forward(r).await })
            .await?;
        Ok(resp.url)
    }

    async fn list_container_stats(
        &self,
        filter: Option<api::ContainerStatsFilter>,
    ) -> Result<Vec<api::ContainerStats>> {
        let msg = api::ListContainerStatsRequest { filter };
        let resp = self
            .call("ListContainerStats", "containers", self.timeout, msg, |r| async move {
                self.rt().list_container_stats(r).await
            })
            .await?;
        Ok(resp.stats)
    }
}

#[async_trait]
impl ImageService for RemoteRuntime {
    async fn pull_image(
        &self,
        image: api::ImageSpec,
        auth: Option<api::AuthConfig>,
        sandbox_config: Option<api::PodSandboxConfig>,
    ) -> Result<String> {
        let what = image.image.clone();
        let msg = api::PullImageRequest { image: Some(image), auth, sandbox_config };
        let resp = self
            .call("PullImage", &what, self.pull_timeout(), msg, |r| async move { self.img().pull_image(r).await })
            .await?;
        if resp.image_ref.is_empty() {
            return Err(missing("PullImage", &what, "image ref"));
        }
        Ok(resp.image_ref)
    }

    async fn image_status(&self, image: api::ImageSpec) -> Result<Option<api::Image>> {
        let what = image.image.clone();
        let msg = api::ImageStatusRequest { image: Some(image), verbose: false };
        let resp = self
            .call("ImageStatus", &what, self.timeout, msg, |r| async move { self.img().image_status(r).await })
            .await?;
        Ok(resp.image)
    }

    async fn list_images(&self, filter: Option<api::ImageFilter>) -> Result<Vec<api::Image>> {
        let msg = api::ListImagesRequest { filter };
        let resp = self
            .call("ListImages", "images", self.timeout, msg, |r| async move { self.img().list_images(r).await })
            .await?;
        Ok(resp.images)
    }

    async fn remove_image(&self, image: api::ImageSpec) -> Result<()> {
        let what = image.image.clone();
        let msg = api::RemoveImageRequest { image: Some(image) };
        self.call("RemoveImage", &what, self.timeout, msg, |r| async move { self.img().remove_image(r).await }).await?;
        Ok(())
    }

    async fn image_fs_info(&self) -> Result<Vec<api::FilesystemUsage>> {
        let msg = api::ImageFsInfoRequest {};
        let resp = self
            .call("ImageFsInfo", "images", self.timeout, msg, |r| async move { self.img().image_fs_info(r).await })
            .await?;
        Ok(resp.image_filesystems)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Instant;

    use super::*;

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn endpoint_parsing() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock").unwrap(),
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(socket_path("/run/crio/crio.sock").unwrap(), PathBuf::from("/run/crio/crio.sock"));
        for bad in ["tcp://127.0.0.1:1234", "npipe:////./pipe/x", "unix://relative.sock", "relative.sock", ""] {
            let err = socket_path(bad).unwrap_err();
            assert!(!err.is_transient(), "{bad}: {err}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{bad}: {err}");
        }
        assert!(RemoteRuntime::connect("http://localhost:1", T).is_err());
    }

    #[tokio::test]
    async fn construction_is_lazy_and_accessors() {
        let rt = RemoteRuntime::connect("unix:///nonexistent/dir/cri.sock", Duration::from_secs(60)).unwrap();
        assert_eq!(rt.endpoint(), "unix:///nonexistent/dir/cri.sock");
        assert_eq!(rt.request_timeout(), Duration::from_secs(60));
        assert_eq!(rt.pull_timeout(), Duration::from_secs(300));
        let rt = RemoteRuntime::connect("/x.sock", Duration::from_secs(120)).unwrap();
        assert_eq!(rt.pull_timeout(), Duration::from_secs(480));
    }

    #[tokio::test]
    async fn missing_socket_is_unreachable_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("unix://{}/cri.sock", dir.path().display());
        let rt = RemoteRuntime::connect(&endpoint, T).unwrap();
        let started = Instant::now();
        let err = rt.version().await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
        assert!(err.is_transient());
        let shown = err.to_string();
        assert!(shown.contains(&format!("container runtime not reachable at {endpoint}")), "{shown}");
        assert!(shown.contains("connect: No such file or directory"), "{shown}");
        // Image calls share the channel and fail the same way.
        let err = rt.image_status(api::ImageSpec { image: "busybox".into(), ..Default::default() }).await.unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn refused_connection_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cri.sock");
        // A socket file nobody listens on: bind then drop the listener.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let rt = RemoteRuntime::connect(path.to_str().unwrap(), T).unwrap();
        let err = rt.list_containers(None).await.unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
        assert!(err.to_string().contains("connect: Connection refused"), "{err}");
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cri.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        // Accepts connections and never answers (keeps them open).
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let rt = RemoteRuntime::connect(&format!("unix://{}", path.display()), Duration::from_millis(200)).unwrap();
        let started = Instant::now();
        let err = rt.container_status("abc").await.unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(err, Error::Timeout { op: "ContainerStatus", after } if after == Duration::from_millis(200)),
            "{err:?}"
        );
        assert!(err.is_transient());
        assert!(took >= Duration::from_millis(190) && took < Duration::from_secs(2), "took {took:?}");
        server.abort();
    }

    /// A minimal CRI ImageService answering over a unix socket.
    struct Images;

    type Reply<T> = std::result::Result<tonic::Response<T>, Status>;

    #[tonic::async_trait]
    impl api::image_service_server::ImageService for Images {
        async fn list_images(&self, _: tonic::Request<api::ListImagesRequest>) -> Reply<api::ListImagesResponse> {
            Ok(tonic::Response::new(api::ListImagesResponse::default()))
        }
        async fn image_status(&self, r: tonic::Request<api::ImageStatusRequest>) -> Reply<api::ImageStatusResponse> {
            let name = r.into_inner().image.unwrap_or_default().image;
            let image = (name != "missing").then(|| api::Image { id: format!("sha256:{name}"), ..Default::default() });
            Ok(tonic::Response::new(api::ImageStatusResponse { image, ..Default::default() }))
        }
        async fn pull_image(&self, r: tonic::Request<api::PullImageRequest>) -> Reply<api::PullImageResponse> {
            // The deadline travels to the runtime: 5 min, rounded by the encoder.
            let deadline =
                r.metadata().get("grpc-timeout").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            if deadline != "300000000u" && deadline != "300000m" && deadline != "300S" {
                return Err(Status::invalid_argument(format!("grpc-timeout {deadline:?}")));
            }
            match r.into_inner().image.unwrap_or_default().image.as_str() {
                "nope" => Err(Status::not_found(
                    "failed to pull and unpack image \"docker.io/library/nope:latest\": not found",
                )),
                name => Ok(tonic::Response::new(api::PullImageResponse { image_ref: format!("sha256:{name}") })),
            }
        }
        async fn remove_image(&self, _: tonic::Request<api::RemoveImageRequest>) -> Reply<api::RemoveImageResponse> {
            Err(Status::unknown("failed to delete image reference \"x\": image \"x\": not found"))
        }
        async fn image_fs_info(&self, _: tonic::Request<api::ImageFsInfoRequest>) -> Reply<api::ImageFsInfoResponse> {
            Err(Status::unimplemented("image_fs_info"))
        }
    }

    #[tokio::test]
    async fn reconnects_when_runtime_comes_up_and_maps_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cri.sock");
        let rt = RemoteRuntime::connect(path.to_str().unwrap(), T).unwrap();
        let err = rt.image_status(spec("busybox")).await.unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");

        // The "runtime" gets its own tokio runtime so that shutting it down closes every connection.
        let server = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let incoming = {
            let _in_server = server.enter();
            tokio_stream::wrappers::UnixListenerStream::new(tokio::net::UnixListener::bind(&path).unwrap())
        };
        server.spawn(
            tonic::transport::Server::builder()
                .add_service(api::image_service_server::ImageServiceServer::new(Images))
                .serve_with_incoming(incoming),
        );
        let img = rt.image_status(spec("busybox")).await.unwrap();
        assert_eq!(img.unwrap().id, "sha256:busybox");
        assert_eq!(rt.image_status(spec("missing")).await.unwrap(), None);
        assert_eq!(rt.pull_image(spec("busybox"), None, None).await.unwrap(), "sha256:busybox");
        let err = rt.pull_image(spec("nope"), None, None).await.unwrap_err();
        assert!(
            matches!(&err, Error::Rpc { op: "PullImage", code: Code::NotFound, what, .. } if what == "nope"),
            "{err:?}"
        );
        let err = rt.remove_image(spec("x")).await.unwrap_err();
        assert!(matches!(&err, Error::NotFound { op: "RemoveImage", what, .. } if what == "x"), "{err:?}");
        assert!(rt.list_images(None).await.unwrap().is_empty());

        // The runtime goes away again: calls fail as unreachable, quickly.
        server.shutdown_background();
        let _ = std::fs::remove_file(&path);
        let started = Instant::now();
        let err = rt.list_images(None).await.unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    fn spec(image: &str) -> api::ImageSpec {
        api::ImageSpec { image: image.into(), ..Default::default() }
    }

    #[test]
    fn status_mapping() {
        let ep = "unix:///run/containerd/containerd.sock";
        let map = |op, status: Status| map_status(ep, op, "abc", T, &status);

        let err = map(
            "ContainerStatus",
            Status::not_found("an error occurred when try to find container \"abc\": not found"),
        );
        assert!(matches!(&err, Error::NotFound { op: "ContainerStatus", what, .. } if what == "abc"), "{err:?}");
        let err = map("StopPodSandbox", Status::unknown("failed to get sandbox \"abc\": does not exist"));
        assert!(err.is_not_found(), "{err:?}");
        let err = map("RemoveContainer", Status::unknown("failed to delete containerd container \"abc\": not found"));
        assert!(err.is_not_found(), "{err:?}");
        // containerd 1.6's answer to an exec of a missing binary: not a missing container.
        let exec = "failed to exec in container: failed to start exec \"e\": OCI runtime exec failed: exec failed: \
                    unable to start container process: exec: \"nope\": executable file not found in $PATH: unknown";
        let err = map("ExecSync", Status::unknown(exec));
        assert!(matches!(err, Error::Rpc { op: "ExecSync", code: Code::Unknown, .. }), "{err:?}");
        let err = map("PullImage", Status::not_found("failed to pull and unpack image \"x\": not found"));
        assert!(matches!(err, Error::Rpc { op: "PullImage", code: Code::NotFound, .. }), "{err:?}");
        let err = map("ExecSync", Status::deadline_exceeded("timeout 1s exceeded"));
        assert!(matches!(err, Error::Timeout { op: "ExecSync", .. }), "{err:?}");
        let err = map("StartContainer", Status::unknown("failed to create containerd task"));
        assert!(
            matches!(&err, Error::Rpc { code: Code::Unknown, message, .. } if message == "failed to create containerd task")
        );
        assert!(!err.is_transient());
        // An Unavailable answered by the server itself (no local source) stays an Rpc error.
        let err = map("Status", Status::unavailable("shutting down"));
        assert!(matches!(err, Error::Rpc { code: Code::Unavailable, .. }), "{err:?}");
        assert!(err.is_transient());
        // Local transport failures carry a source.
        let io = std::io::Error::from_raw_os_error(111);
        let status = Status::from_error(Box::new(tonic::ConnectError(Box::new(io))));
        let err = map("Version", status);
        assert!(
            matches!(&err, Error::Unreachable { message, .. } if message == "connect: Connection refused"),
            "{err:?}"
        );
        let status = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert!(matches!(map("Version", status), Error::Timeout { .. }));
    }
}
