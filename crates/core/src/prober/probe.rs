//! Running one probe (upstream `prober.probe` and `pkg/probe/{exec,http,tcp,grpc}`): the handler
//! decides success, warning or failure with an output; the prober retries errors, records the
//! `Unhealthy` / `ProbeWarning` events and maps the outcome to a result.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cri::RuntimeService;
use k8s_openapi::api::core::v1::{Container, Pod, Probe};

use super::{ProbeResult, ProbeType};
use crate::events::{EventRecorder, EventType, container_event};
use crate::httpget;
use crate::runtime::env::expand;
use crate::runtime::hooks::resolve_port;

/// What one probe action found (upstream `probe.Result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Success with something worth an event (an HTTP redirect to another host).
    Warning,
    Failure,
    Unknown,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Warning => "warning",
            Outcome::Failure => "failure",
            Outcome::Unknown => "unknown",
        }
    }
}

/// Upstream's `maxProbeRetries`: a probe that errors is tried this many times.
const MAX_PROBE_RETRIES: usize = 3;
/// Upstream's `maxReadLength` of exec probe output.
const MAX_EXEC_OUTPUT: usize = 10 * 1024;

/// The probe handlers. `Err` means the probe could not be run at all (a port name that does not
/// exist, a runtime error): upstream retries it and then throws the result away.
#[async_trait]
pub trait Handlers: Send + Sync + 'static {
    async fn run(
        &self,
        probe: &Probe,
        pod: &Pod,
        pod_ip: Option<&str>,
        c: &Container,
        container_id: &str,
    ) -> Result<(Outcome, String), String>;
}

/// Runs `probe` of type `kind` and records its events; `Err` = the result must be thrown away.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_probe(
    handlers: &dyn Handlers,
    recorder: &dyn EventRecorder,
    kind: ProbeType,
    probe: &Probe,
    pod: &Pod,
    pod_ip: Option<&str>,
    c: &Container,
    container_id: &str,
) -> Result<ProbeResult, String> {
    let mut last = Err(String::new());
    for _ in 0..MAX_PROBE_RETRIES {
        last = handlers.run(probe, pod, pod_ip, c, container_id).await;
        if last.is_ok() {
            break;
        }
    }
    let event = |kind_: EventType, reason: &'static str, message: String| {
        recorder.record(container_event(pod, &c.name, kind_, reason, message));
    };
    match last {
        Err(e) => {
            tracing::info!(pod = %crate::events::pod_key(pod), container = %c.name, probe = %kind, "probe errored: {e}");
            event(
                EventType::Warning,
                "Unhealthy",
                format!("{kind} probe errored and resulted in {} state: {e}", Outcome::Unknown.as_str()),
            );
            Err(e)
        }
        Ok((Outcome::Success, _)) => Ok(ProbeResult::Success),
        Ok((Outcome::Warning, output)) => {
            event(EventType::Warning, "ProbeWarning", format!("{kind} probe warning: {output}"));
            Ok(ProbeResult::Success)
        }
        Ok((Outcome::Failure, output)) => {
            tracing::info!(pod = %crate::events::pod_key(pod), container = %c.name, probe = %kind, "probe failed: {output}");
            event(EventType::Warning, "Unhealthy", format!("{kind} probe failed: {output}"));
            Ok(ProbeResult::Failure)
        }
        Ok((Outcome::Unknown, _)) => Ok(ProbeResult::Failure),
    }
}

/// The real handlers: exec through CRI ExecSync, httpGet, tcpSocket and grpc from the kubelet.
pub struct RuntimeHandlers {
    runtime: Arc<dyn RuntimeService>,
}

impl RuntimeHandlers {
    pub fn new(runtime: Arc<dyn RuntimeService>) -> Self {
        Self { runtime }
    }
}

/// The probe's timeout (`timeoutSeconds`, default 1).
fn timeout_of(probe: &Probe) -> Duration {
    Duration::from_secs(u64::try_from(probe.timeout_seconds.unwrap_or(1)).unwrap_or(1).max(1))
}

#[async_trait]
impl Handlers for RuntimeHandlers {
    async fn run(
        &self,
        probe: &Probe,
        pod: &Pod,
        pod_ip: Option<&str>,
        c: &Container,
        container_id: &str,
    ) -> Result<(Outcome, String), String> {
        let timeout = timeout_of(probe);
        if let Some(exec) = &probe.exec {
            return exec_probe(self.runtime.as_ref(), c, container_id, exec.command.as_deref().unwrap_or(&[]), timeout)
                .await;
        }
        if let Some(action) = &probe.http_get {
            let req = httpget::request_for(action, c, pod_ip, "probe")?;
            return Ok(http_outcome(httpget::get(&req, Some(timeout)).await));
        }
        if let Some(tcp) = &probe.tcp_socket {
            let port = resolve_port(&tcp.port, c)?;
            let host = tcp.host.as_deref().filter(|h| !h.is_empty()).or(pod_ip).unwrap_or_default();
            return Ok(tcp_probe(host, port, timeout).await);
        }
        if let Some(grpc) = &probe.grpc {
            let port = u16::try_from(grpc.port).map_err(|_| format!("invalid port number: {}", grpc.port))?;
            return Ok(super::grpc::probe(
                pod_ip.unwrap_or_default(),
                grpc.service.as_deref().unwrap_or(""),
                port,
                timeout,
            )
            .await);
        }
        Err(format!("missing probe handler for {}:{}", crate::runtime::hooks::format_pod(pod), c.name))
    }
}

/// Upstream's exec prober: exit 0 is success, any other exit a failure with the output (stdout
/// and stderr, at most 10 KiB); a timeout is a failure too.
async fn exec_probe(
    runtime: &dyn RuntimeService,
    c: &Container,
    container_id: &str,
    command: &[String],
    timeout: Duration,
) -> Result<(Outcome, String), String> {
    // Only the container's literal env values expand (`ExpandContainerCommandOnlyStatic`).
    let env: HashMap<&str, &str> = c
        .env
        .iter()
        .flatten()
        .filter(|e| e.value_from.is_none())
        .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or("")))
        .collect();
    let command: Vec<String> = command.iter().map(|a| expand(a, &env)).collect();
    let secs = i64::try_from(timeout.as_secs()).unwrap_or(1);
    match runtime.exec_sync(container_id, command.clone(), secs).await {
        Ok(r) => {
            let mut output = r.stdout;
            output.extend_from_slice(&r.stderr);
            output.truncate(MAX_EXEC_OUTPUT);
            let output = String::from_utf8_lossy(&output).into_owned();
            Ok((if r.exit_code == 0 { Outcome::Success } else { Outcome::Failure }, output))
        }
        Err(e) if is_timeout(&e) => Ok((Outcome::Failure, format!("command {:?} timed out", command.join(" ")))),
        Err(e) => Err(e.to_string()),
    }
}

/// A CRI exec that ran out of time: containerd answers DeadlineExceeded (or words it so).
fn is_timeout(e: &cri::Error) -> bool {
    match e {
        cri::Error::Timeout { .. } => true,
        cri::Error::Rpc { code, message, .. } => {
            *code == tonic::Code::DeadlineExceeded || (message.contains("timeout") && message.contains("exceeded"))
        }
        _ => false,
    }
}

/// Upstream's `DoHTTPProbe`: 2xx success, 3xx (a redirect not followed) a warning, anything else
/// a failure naming the status code only; a request that fails is a failure with the cause.
pub(crate) fn http_outcome(r: Result<httpget::Response, String>) -> (Outcome, String) {
    match r {
        Err(e) => (Outcome::Failure, e),
        Ok(resp) => {
            let body = String::from_utf8_lossy(&resp.body).into_owned();
            match resp.status {
                200..=299 => (Outcome::Success, body),
                300..=399 => (Outcome::Warning, format!("Probe terminated redirects, Response body: {body}")),
                code => (Outcome::Failure, format!("HTTP probe failed with statuscode: {code}")),
            }
        }
    }
}

/// Upstream's TCP prober: success when a connection opens within the timeout.
pub(crate) async fn tcp_probe(host: &str, port: u16, timeout: Duration) -> (Outcome, String) {
    let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_stream)) => (Outcome::Success, String::new()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            (Outcome::Failure, format!("dial tcp {addr}: connect: connection refused"))
        }
        Ok(Err(e)) => (Outcome::Failure, format!("dial tcp {addr}: connect: {e}")),
        Err(_) => (Outcome::Failure, format!("dial tcp {addr}: i/o timeout")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use cri::FakeRuntime;
    use k8s_openapi::api::core::v1::EnvVar;

    use super::*;

    #[test]
    fn http_status_codes_as_upstream() {
        let resp = |status, body: &str| Ok(httpget::Response { status, body: body.as_bytes().to_vec() });
        assert_eq!(http_outcome(resp(204, "ok")), (Outcome::Success, "ok".into()));
        assert_eq!(
            http_outcome(resp(302, "moved")),
            (Outcome::Warning, "Probe terminated redirects, Response body: moved".into())
        );
        assert_eq!(
            http_outcome(resp(503, "secret detail")),
            (Outcome::Failure, "HTTP probe failed with statuscode: 503".into()),
            "the body stays out of the message"
        );
        assert_eq!(http_outcome(Err("Get \"x\": boom".into())), (Outcome::Failure, "Get \"x\": boom".into()));
    }

    #[tokio::test]
    async fn tcp_open_and_closed_ports() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(tcp_probe("127.0.0.1", port, Duration::from_secs(1)).await, (Outcome::Success, String::new()));
        drop(listener);
        assert_eq!(
            tcp_probe("127.0.0.1", port, Duration::from_secs(1)).await,
            (Outcome::Failure, format!("dial tcp 127.0.0.1:{port}: connect: connection refused"))
        );
    }

    #[tokio::test]
    async fn exec_exit_code_output_and_static_env_expansion() {
        let fake = FakeRuntime::new();
        let sandbox = cri::api::PodSandboxConfig {
            metadata: Some(cri::api::PodSandboxMetadata { name: "web".into(), uid: "u".into(), ..Default::default() }),
            ..Default::default()
        };
        let sb = fake.run_pod_sandbox(sandbox.clone(), "").await.unwrap();
        use cri::ImageService;
        fake.pull_image(cri::api::ImageSpec { image: "busybox".into(), ..Default::default() }, None, None)
            .await
            .unwrap();
        let config = cri::api::ContainerConfig {
            metadata: Some(cri::api::ContainerMetadata { name: "app".into(), attempt: 0 }),
            image: Some(cri::api::ImageSpec { image: "busybox".into(), ..Default::default() }),
            ..Default::default()
        };
        let cid = fake.create_container(&sb, config, sandbox).await.unwrap();
        fake.start_container(&cid).await.unwrap();
        fake.set_default_exec_result(cri::api::ExecSyncResponse {
            exit_code: 1,
            stdout: b"out ".to_vec(),
            stderr: b"err".to_vec(),
        });
        let c = Container {
            name: "app".into(),
            env: Some(vec![EnvVar { name: "FILE".into(), value: Some("/tmp/ok".into()), value_from: None }]),
            ..Default::default()
        };
        let cmd = vec!["cat".to_string(), "$(FILE)".to_string()];
        let r = exec_probe(&fake, &c, &cid, &cmd, Duration::from_secs(1)).await;
        assert_eq!(r, Ok((Outcome::Failure, "out err".into())));
        assert!(fake.calls().iter().any(|call| *call == format!("ExecSync {cid} cat /tmp/ok")), "{:?}", fake.calls());
        fake.set_default_exec_result(cri::api::ExecSyncResponse::default());
        assert_eq!(
            exec_probe(&fake, &c, &cid, &cmd, Duration::from_secs(1)).await,
            Ok((Outcome::Success, String::new()))
        );
        // A container that is gone: the probe could not run.
        assert!(exec_probe(&fake, &c, "gone", &cmd, Duration::from_secs(1)).await.is_err());
    }

    #[test]
    fn exec_timeouts_are_recognised() {
        let rpc =
            |code, message: &str| cri::Error::Rpc { op: "ExecSync", what: "c".into(), code, message: message.into() };
        assert!(is_timeout(&rpc(tonic::Code::DeadlineExceeded, "x")));
        assert!(is_timeout(&rpc(
            tonic::Code::Unknown,
            "failed to exec in container: timeout 1s exceeded: context deadline exceeded"
        )));
        assert!(!is_timeout(&rpc(tonic::Code::NotFound, "no such container")));
    }
}
