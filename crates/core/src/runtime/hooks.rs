//! Container lifecycle hooks (upstream `pkg/kubelet/lifecycle/handlers.go`): postStart right
//! after a container starts, preStop before it is stopped. Handlers: `exec` (CRI ExecSync,
//! no timeout of its own), `sleep`, and `httpGet` over plain HTTP (the response status is not
//! judged, as upstream; only a request that cannot be made fails).

use std::time::Duration;

use cri::RuntimeService;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction, LifecycleHandler, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Upstream's `format.Pod`: `name_namespace(uid)`.
pub fn format_pod(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// Runs `handler` for container `c` (instance `container_id`) of `pod`, whose IP is `pod_ip`.
/// `Err` carries upstream's message ("Exec lifecycle hook ([…]) for Container … failed - …").
pub async fn run_hook(
    runtime: &dyn RuntimeService,
    pod: &Pod,
    c: &Container,
    container_id: &str,
    pod_ip: Option<&str>,
    handler: &LifecycleHandler,
) -> Result<(), String> {
    let who = format!("for Container {:?} in Pod {:?}", c.name, format_pod(pod));
    if let Some(exec) = &handler.exec {
        let command = exec.command.clone().unwrap_or_default();
        let shown = format!("[{}]", command.join(" "));
        let (err, output) = match runtime.exec_sync(container_id, command.clone(), 0).await {
            Ok(r) if r.exit_code == 0 => return Ok(()),
            Ok(r) => {
                let stderr = String::from_utf8_lossy(&r.stderr).into_owned();
                let mut output = String::from_utf8_lossy(&r.stdout).into_owned();
                output.push_str(&stderr);
                (format!("command '{}' exited with {}: {stderr}", command.join(" "), r.exit_code), output)
            }
            Err(e) => (e.to_string(), String::new()),
        };
        return Err(format!("Exec lifecycle hook ({shown}) {who} failed - error: {err}, message: {output:?}"));
    }
    if let Some(http) = &handler.http_get {
        return http_get(http, c, pod_ip).await.map_err(|err| {
            format!("HTTP lifecycle hook ({}) {who} failed - error: {err}", http.path.as_deref().unwrap_or(""))
        });
    }
    if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(u64::try_from(sleep.seconds).unwrap_or(0))).await;
        return Ok(());
    }
    Err(format!("invalid handler {who}: none of exec, httpGet, sleep"))
}

/// The port of `port` in `c`: a number, or the name of one of its ports.
pub fn resolve_port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => match s.parse::<i32>() {
            Ok(n) => n,
            Err(_) => c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("couldn't find port: {s} in {}", c.name))?,
        },
    };
    u16::try_from(number).ok().filter(|n| *n > 0).ok_or_else(|| format!("invalid port number: {number}"))
}

/// One GET as upstream's lifecycle request (`kube-lifecycle/<version>` user agent, `Accept: */*`,
/// the action's headers), to the action's host or the pod IP. Only that the request could be made
/// and answered matters.
async fn http_get(action: &HTTPGetAction, c: &Container, pod_ip: Option<&str>) -> Result<(), String> {
    use http_body_util::BodyExt;

    let scheme = action.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
    if scheme != "http" {
        return Err(format!("scheme {scheme:?} is not supported for lifecycle hooks yet (only HTTP)"));
    }
    let host =
        action.host.as_deref().filter(|h| !h.is_empty()).or(pod_ip).ok_or("failed to find networking container")?;
    let port = resolve_port(&action.port, c)?;
    let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut path = action.path.clone().unwrap_or_default();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let mut req = http::Request::get(path).header(http::header::HOST, &authority);
    let has = |name: &str| action.http_headers.iter().flatten().any(|h| h.name.eq_ignore_ascii_case(name));
    if !has("user-agent") {
        req = req.header(http::header::USER_AGENT, format!("kube-lifecycle/{}", env!("CARGO_PKG_VERSION")));
    }
    if !has("accept") {
        req = req.header(http::header::ACCEPT, "*/*");
    }
    for h in action.http_headers.iter().flatten() {
        req = req.header(h.name.as_str(), h.value.as_str());
    }
    let req = req.body(http_body_util::Empty::<bytes::Bytes>::new()).map_err(|e| e.to_string())?;
    let stream = tokio::net::TcpStream::connect(&authority).await.map_err(|e| format!("dial tcp {authority}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string());
    if let Ok(resp) = resp {
        // Read (and drop) a bounded body so the server is not cut off mid-write.
        let _ = tokio::time::timeout(Duration::from_secs(1), resp.into_body().collect()).await;
        conn.abort();
        return Ok(());
    }
    conn.abort();
    resp.map(|_| ())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use cri::FakeRuntime;
    use k8s_openapi::api::core::v1::{ContainerPort, HTTPHeader, SleepAction};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}]}
        }))
        .unwrap()
    }

    fn app() -> Container {
        Container {
            name: "app".into(),
            ports: Some(vec![ContainerPort { name: Some("http".into()), container_port: 8080, ..Default::default() }]),
            ..Default::default()
        }
    }

    #[test]
    fn ports_by_number_and_by_name() {
        assert_eq!(resolve_port(&IntOrString::Int(80), &app()), Ok(80));
        assert_eq!(resolve_port(&IntOrString::String("81".into()), &app()), Ok(81));
        assert_eq!(resolve_port(&IntOrString::String("http".into()), &app()), Ok(8080));
        assert_eq!(
            resolve_port(&IntOrString::String("grpc".into()), &app()),
            Err("couldn't find port: grpc in app".into())
        );
        assert!(resolve_port(&IntOrString::Int(0), &app()).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_hook_sleeps() {
        let fake = FakeRuntime::new();
        let handler = LifecycleHandler { sleep: Some(SleepAction { seconds: 5 }), ..Default::default() };
        let start = tokio::time::Instant::now();
        run_hook(&fake, &pod(), &app(), "x", None, &handler).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn http_hook_sends_the_request_and_ignores_the_status() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n").await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let handler = LifecycleHandler {
            http_get: Some(HTTPGetAction {
                path: Some("/hook".into()),
                port: IntOrString::Int(i32::from(port)),
                http_headers: Some(vec![HTTPHeader { name: "X-Test".into(), value: "1".into() }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let fake = FakeRuntime::new();
        run_hook(&fake, &pod(), &app(), "x", Some("127.0.0.1"), &handler).await.unwrap();
        let request = server.await.unwrap().to_ascii_lowercase();
        assert!(request.starts_with("get /hook http/1.1\r\n"), "{request}");
        for line in [format!("host: 127.0.0.1:{port}"), "user-agent: kube-lifecycle/".into(), "x-test: 1".into()] {
            assert!(request.contains(&line), "{line} in {request}");
        }

        // Nothing listening: the hook fails with the cause.
        drop(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        let closed = LifecycleHandler {
            http_get: Some(HTTPGetAction { path: Some("/x".into()), port: IntOrString::Int(1), ..Default::default() }),
            ..Default::default()
        };
        let err = run_hook(&fake, &pod(), &app(), "x", Some("127.0.0.1"), &closed).await.unwrap_err();
        assert!(err.starts_with("HTTP lifecycle hook (/x) for Container \"app\" in Pod \"web_ns(u1)\" failed - error: dial tcp 127.0.0.1:1: "), "{err}");
    }
}
