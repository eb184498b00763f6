//! Container lifecycle hooks (upstream `pkg/kubelet/lifecycle/handlers.go`): postStart right
//! after a container starts, preStop before it is stopped. Handlers: `exec` (CRI ExecSync,
//! no timeout of its own), `sleep`, and `httpGet` (HTTP or HTTPS through [`crate::httpget`]; the
//! response status is not judged, as upstream: only a request that cannot be made fails; an
//! HTTPS hook answered in plain HTTP falls back to HTTP with a `LifecycleHTTPFallback` warning).

use std::time::Duration;

use cri::RuntimeService;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::events::{EventRecorder, EventType, pod_event};
use crate::httpget;

/// Upstream's `format.Pod`: `name_namespace(uid)`.
pub fn format_pod(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// Sends an httpGet hook's request; the response status does not matter. An HTTPS request
/// answered in plain HTTP is sent again over HTTP without its `Authorization` header, and a
/// success then is reported with a `LifecycleHTTPFallback` warning (upstream `runHTTPHandler`);
/// when the retry fails too, the HTTPS error stands.
async fn http_hook(pod: &Pod, req: &httpget::Request, recorder: &dyn EventRecorder) -> Result<(), String> {
    let err = match httpget::get(req, None).await {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    if !(req.url.https && err.ends_with(httpget::HTTP_RESPONSE_TO_HTTPS)) {
        return Err(err);
    }
    let mut plain = req.clone();
    plain.url.https = false;
    plain.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("authorization"));
    if httpget::get(&plain, None).await.is_err() {
        return Err(err);
    }
    recorder.record(pod_event(
        pod,
        EventType::Warning,
        "LifecycleHTTPFallback",
        format!(
            "request to HTTPS lifecycle hook {} got HTTP response, retry with HTTP succeeded",
            plain.url.authority()
        ),
    ));
    Ok(())
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
    recorder: &dyn EventRecorder,
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
        let sent = match crate::httpget::request_for(http, c, pod_ip, "lifecycle") {
            Ok(req) => http_hook(pod, &req, recorder).await,
            Err(e) => Err(e),
        };
        return sent.map_err(|err| {
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
        IntOrString::Int(n) => i64::from(*n),
        // Upstream's ResolveContainerPort: the name first, then the string as a number.
        IntOrString::String(s) => match c.ports.iter().flatten().find(|p| p.name.as_deref() == Some(s.as_str())) {
            Some(p) => i64::from(p.container_port),
            None => go_atoi(s)?,
        },
    };
    u16::try_from(number).ok().filter(|n| *n > 0).ok_or_else(|| format!("invalid port number: {number}"))
}

/// Go's `strconv.Atoi` with its error words.
fn go_atoi(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing {s:?}: invalid syntax"));
    }
    s.parse::<i64>().map_err(|_| format!("strconv.Atoi: parsing {s:?}: value out of range"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use cri::FakeRuntime;
    use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction, HTTPHeader, SleepAction};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::events::MemoryRecorder;

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
            Err("strconv.Atoi: parsing \"grpc\": invalid syntax".into())
        );
        assert_eq!(
            resolve_port(&IntOrString::String("99999999999999999999".into()), &app()),
            Err("strconv.Atoi: parsing \"99999999999999999999\": value out of range".into())
        );
        assert_eq!(
            resolve_port(&IntOrString::String("70000".into()), &app()),
            Err("invalid port number: 70000".into())
        );
        assert!(resolve_port(&IntOrString::Int(0), &app()).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_hook_sleeps() {
        let fake = FakeRuntime::new();
        let handler = LifecycleHandler { sleep: Some(SleepAction { seconds: 5 }), ..Default::default() };
        let start = tokio::time::Instant::now();
        run_hook(&fake, &pod(), &app(), "x", None, &handler, &MemoryRecorder::default()).await.unwrap();
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
        run_hook(&fake, &pod(), &app(), "x", Some("127.0.0.1"), &handler, &MemoryRecorder::default()).await.unwrap();
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
        let err = run_hook(&fake, &pod(), &app(), "x", Some("127.0.0.1"), &closed, &MemoryRecorder::default())
            .await
            .unwrap_err();
        assert!(err.starts_with("HTTP lifecycle hook (/x) for Container \"app\" in Pod \"web_ns(u1)\" failed - error: Get \"http://127.0.0.1:1/x\": dial tcp 127.0.0.1:1: connect: connection refused"), "{err}");
    }

    #[tokio::test]
    async fn https_hook_answered_in_plain_http_falls_back_to_http() {
        // A plain HTTP server: the TLS hello gets a 400 (as any HTTP server answers garbage),
        // the retried GET gets a 200. It reports what it read on each connection.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let tls = buf.first() == Some(&0x16);
                let answer: &[u8] = if tls {
                    b"HTTP/1.1 400 Bad Request\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
                };
                let _ = s.write_all(answer).await;
                let _ = tx.send(if tls {
                    "tls hello".to_string()
                } else {
                    String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase()
                });
            }
        });
        let handler = |scheme: &str| LifecycleHandler {
            http_get: Some(HTTPGetAction {
                scheme: Some(scheme.into()),
                path: Some("/hook".into()),
                port: IntOrString::Int(i32::from(port)),
                http_headers: Some(vec![HTTPHeader { name: "Authorization".into(), value: "Bearer t".into() }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let events = MemoryRecorder::default();
        run_hook(&FakeRuntime::new(), &pod(), &app(), "x", Some("127.0.0.1"), &handler("HTTPS"), &events)
            .await
            .unwrap();
        assert_eq!(seen.recv().await.unwrap(), "tls hello");
        let retried = seen.recv().await.unwrap();
        assert!(retried.starts_with("get /hook http/1.1\r\n") && !retried.contains("authorization"), "{retried}");
        let e = events.events();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].reason, e[0].kind), ("LifecycleHTTPFallback", EventType::Warning));
        assert_eq!(
            e[0].message,
            format!("request to HTTPS lifecycle hook 127.0.0.1:{port} got HTTP response, retry with HTTP succeeded")
        );

        // A plain HTTP hook that works needs no fallback and says nothing.
        let quiet = MemoryRecorder::default();
        run_hook(&FakeRuntime::new(), &pod(), &app(), "x", Some("127.0.0.1"), &handler("HTTP"), &quiet).await.unwrap();
        let plain = seen.recv().await.unwrap();
        assert!(plain.contains("authorization: bearer t"), "the header goes along over plain HTTP: {plain}");
        assert!(quiet.events().is_empty());
    }
}
