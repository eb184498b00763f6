//! rkubelet's local HTTP endpoints: `/healthz` (upstream's healthz server on
//! `healthzBindAddress:healthzPort`) and, only when that address is loopback, `/debug/pods` — the
//! pods this kubelet runs with their computed status, as a `v1.PodList`; and the authenticated
//! kubelet API on `address:port` ([`secure`], [`auth`]). Depends only on `Host` and the review
//! traits of [`auth`].

pub mod auth;
mod containers;
pub mod metrics;
mod node_logs;
pub mod proxy;
pub mod secure;
mod spdy;
mod streaming;
mod tls;
mod translate;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

/// What the server needs from the kubelet. Contract: both methods are cheap and never block on
/// pod work or the runtime.
pub trait Host: Send + Sync + 'static {
    /// Named health checks; `Err` carries the reason of the first failing one.
    fn healthz(&self) -> Result<(), String>;
    /// The current pods with status, as a `v1.PodList`.
    fn pods(&self) -> serde_json::Value;
}

/// What the kubelet API (`secure`) needs beyond [`Host`]: the runtime's view of the pods and
/// their containers' logs.
#[async_trait::async_trait]
pub trait ApiHost: Host {
    /// The log stream of a container (`/containerLogs`). An error before the stream starts is
    /// answered with its status; the reader's own errors end the stream with their text, as
    /// upstream writes them after the first byte.
    async fn container_logs(&self, req: LogRequest) -> Result<tokio::sync::mpsc::Receiver<bytes::Bytes>, HostError>;
    /// The pods with running containers in the runtime, as a `v1.PodList` of names, UIDs and
    /// container names and images (`/runningpods/`).
    async fn running_pods(&self) -> Result<serde_json::Value, HostError>;
    /// The runtime's streaming URL for an exec of `cmd` in a running container.
    async fn exec(
        &self,
        target: ContainerTarget,
        cmd: Vec<String>,
        streams: StreamOptions,
    ) -> Result<String, HostError>;
    /// The runtime's streaming URL for an attach to a running container.
    async fn attach(&self, target: ContainerTarget, streams: StreamOptions) -> Result<String, HostError>;
    /// The runtime's streaming URL for forwarding `ports` (none: named per stream) of a pod.
    async fn port_forward(
        &self,
        namespace: &str,
        pod: &str,
        uid: Option<&str>,
        ports: Vec<i32>,
    ) -> Result<String, HostError>;
    /// The metric families of one endpoint.
    async fn metrics(&self, set: MetricsSet) -> Vec<metrics::Family>;
    /// Runs `cmd` in a running container; its stdout then stderr (`/run`).
    async fn run(&self, target: ContainerTarget, cmd: Vec<String>) -> Result<Vec<u8>, HostError>;
    /// The statsapi `Summary` (`/stats/summary`) as its JSON body ([`restful_json`]), only CPU
    /// and memory when asked; `Err` is the reason it could not be built.
    async fn summary(&self, only_cpu_and_memory: bool) -> Result<Vec<u8>, String>;
}

/// `value` as go-restful's `WriteAsJson` writes it: fields in declaration order, indented by
/// one space.
pub fn restful_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut body, serde_json::ser::PrettyFormatter::with_indent(b" "));
    value.serialize(&mut ser).map_err(|e| e.to_string())?;
    Ok(body)
}

/// Which metrics endpoint is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsSet {
    /// `/metrics`: the kubelet's own metrics and the process collector's.
    Kubelet,
    /// `/metrics/cadvisor`: cAdvisor's per-cgroup and machine metrics.
    Cadvisor,
    /// `/metrics/probes`: `prober_probe_total`.
    Probes,
    /// `/metrics/resource`: node, pod and container CPU and memory for metrics-server.
    Resource,
}

/// The container an exec, attach or run addresses; `uid` when the path names the pod's UID.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerTarget {
    pub namespace: String,
    pub pod: String,
    pub uid: Option<String>,
    pub container: String,
}

/// Which streams an exec or attach carries (upstream `remotecommandserver.Options`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A `/containerLogs` request: the pod, the container and the v1 `PodLogOptions`, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogRequest {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub previous: bool,
    pub follow: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    pub limit_bytes: Option<u64>,
    /// From `sinceTime`, or now − `sinceSeconds`.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

/// A host answer that is not a success: the HTTP status and upstream's message.
#[derive(Debug, Clone, PartialEq)]
pub struct HostError {
    pub status: u16,
    pub message: String,
}

impl HostError {
    pub fn not_found(message: impl Into<String>) -> Self {
        Self { status: 404, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self { status: 400, message: message.into() }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self { status: 500, message: message.into() }
    }
}

/// Builds the router; the debug endpoint is added only when `debug` is set.
pub fn router(host: Arc<dyn Host>, debug: bool) -> Router {
    let mut r = Router::new().route("/healthz", get(healthz));
    if debug {
        r = r.route("/debug/pods", get(pods));
    }
    r.with_state(host)
}

async fn healthz(State(host): State<Arc<dyn Host>>) -> Response {
    match host.healthz() {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok").into_response(),
        Err(reason) => {
            tracing::warn!("healthz check failed: {reason}");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("[-]syncloop failed: {reason}\nhealthz check failed\n"))
                .into_response()
        }
    }
}

async fn pods(State(host): State<Arc<dyn Host>>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], host.pods().to_string()).into_response()
}

/// Serves until `shutdown` on its own task. A bind failure (e.g. the port still held by a
/// previous instance) is logged and retried every 5 s, as upstream's healthz server does: the
/// kubelet keeps running pods meanwhile.
pub fn serve_healthz(
    addr: SocketAddr,
    host: Arc<dyn Host>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let app = router(host, addr.ip().is_loopback());
    tokio::spawn(async move {
        let Some(listener) = bind_retrying(addr, "healthz server", &shutdown).await else { return };
        tracing::info!("healthz serving on http://{addr}/healthz");
        let r = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
        if let Err(e) = r {
            tracing::error!("healthz server on {addr}: {e}");
        }
    })
}

/// Binds `addr`, retrying every 5 s while it fails (e.g. the port still held by a previous
/// instance); `None` once `shutdown` is cancelled.
pub(crate) async fn bind_retrying(
    addr: SocketAddr,
    what: &str,
    shutdown: &CancellationToken,
) -> Option<tokio::net::TcpListener> {
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return Some(l),
            Err(e) => tracing::error!("failed to start the {what} on {addr}: {e}; retrying in 5s"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct FakeHost(Mutex<Result<(), String>>);
    impl Host for FakeHost {
        fn healthz(&self) -> Result<(), String> {
            self.0.lock().map(|r| r.clone()).unwrap_or(Ok(()))
        }
        fn pods(&self) -> serde_json::Value {
            serde_json::json!({"kind": "PodList", "items": []})
        }
    }

    async fn get_body(addr: SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.expect("read");
        let code = buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = buf.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
        (code, body)
    }

    #[tokio::test]
    async fn healthz_reports_ok_and_failure() {
        let host = Arc::new(FakeHost(Mutex::new(Ok(()))));
        let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = probe.local_addr().expect("addr");
        drop(probe);
        let stop = CancellationToken::new();
        serve_healthz(addr, host.clone(), stop.clone());
        let mut first = None;
        for _ in 0..100 {
            if let Ok(r) = tokio::time::timeout(std::time::Duration::from_secs(1), async {
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(_) => Some(get_body(addr, "/healthz").await),
                    Err(_) => None,
                }
            })
            .await
                && r.is_some()
            {
                first = r;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(first, Some((200, "ok".to_string())));
        *host.0.lock().expect("lock") = Err("sync Loop took longer than expected".into());
        let (code, body) = get_body(addr, "/healthz").await;
        assert_eq!(code, 500);
        assert!(body.contains("syncloop failed"), "{body}");
        let (code, body) = get_body(addr, "/debug/pods").await;
        assert_eq!(code, 200, "loopback serves the debug list");
        assert!(body.contains("PodList"));
        stop.cancel();
    }
}
