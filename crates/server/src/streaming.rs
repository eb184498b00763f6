//! `/exec`, `/attach`, `/portForward` and `/run` (upstream `getExec`, `getAttach`,
//! `getPortForward`, `getRun`). The first three ask the runtime for a streaming URL (CRI
//! `Exec`/`Attach`/`PortForward`) and proxy the client's upgrade request to it, as upstream's
//! `proxyStream` does: the stream protocol (SPDY `v4.channel.k8s.io`, WebSocket
//! `v4.channel.k8s.io`, `portforward.k8s.io`) is negotiated between the client and the
//! runtime's streaming server, and the kubelet copies bytes both ways. WebSocket
//! `v5.channel.k8s.io` and SPDY tunnelled in WebSocket, which the runtime does not speak, are
//! translated to SPDY by [`crate::translate`]. `/run` executes a
//! command (CRI `ExecSync`) and answers its stdout then stderr.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::secure::{AppState, text};
use crate::{ContainerTarget, HostError, StreamOptions};
use crate::{proxy, translate};

/// The first value of each query parameter, and all values of `command`.
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    serde_urlencoded::from_str(query.unwrap_or_default()).unwrap_or_default()
}

/// Upstream `remotecommandserver.NewOptions`: `input`, `output`, `error`, `tty` = "1"; stderr
/// is dropped with a tty; at least one stream.
pub(crate) fn stream_options(query: Option<&str>) -> Result<StreamOptions, HostError> {
    let pairs = query_pairs(query);
    let on = |k: &str| pairs.iter().find(|(n, _)| n == k).is_some_and(|(_, v)| v == "1");
    let tty = on("tty");
    let opts = StreamOptions { stdin: on("input"), stdout: on("output"), stderr: on("error") && !tty, tty };
    if !opts.stdin && !opts.stdout && !opts.stderr {
        return Err(HostError::bad_request("you must specify at least 1 of stdin, stdout, stderr"));
    }
    Ok(opts)
}

fn target(ns: String, pod: String, uid: Option<String>, container: String) -> ContainerTarget {
    ContainerTarget { namespace: ns, pod, uid: uid.filter(|u| !u.is_empty()), container }
}

pub(crate) async fn exec(
    State(s): State<Arc<AppState>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    exec_for(s, target(ns, pod, None, container), req).await
}

pub(crate) async fn exec_uid(
    State(s): State<Arc<AppState>>,
    Path((ns, pod, uid, container)): Path<(String, String, String, String)>,
    req: Request,
) -> Response {
    exec_for(s, target(ns, pod, Some(uid), container), req).await
}

async fn exec_for(s: Arc<AppState>, t: ContainerTarget, req: Request) -> Response {
    let opts = match stream_options(req.uri().query()) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let cmd: Vec<String> =
        query_pairs(req.uri().query()).into_iter().filter(|(k, _)| k == "command").map(|(_, v)| v).collect();
    match s.host.exec(t, cmd, opts).await {
        Ok(url) if is_websocket(&req) && translate::wants_v5(&req) => {
            translate::remote_command_v5(req, &url, opts).await
        }
        Ok(url) => proxy_stream(req, &url).await,
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn attach(
    State(s): State<Arc<AppState>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    attach_for(s, target(ns, pod, None, container), req).await
}

pub(crate) async fn attach_uid(
    State(s): State<Arc<AppState>>,
    Path((ns, pod, uid, container)): Path<(String, String, String, String)>,
    req: Request,
) -> Response {
    attach_for(s, target(ns, pod, Some(uid), container), req).await
}

async fn attach_for(s: Arc<AppState>, t: ContainerTarget, req: Request) -> Response {
    let opts = match stream_options(req.uri().query()) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    match s.host.attach(t, opts).await {
        Ok(url) if is_websocket(&req) && translate::wants_v5(&req) => {
            translate::remote_command_v5(req, &url, opts).await
        }
        Ok(url) => proxy_stream(req, &url).await,
        Err(e) => e.into_response(),
    }
}

/// Whether the request asks for a WebSocket (upstream `wsstream.IsWebSocketRequest`).
fn is_websocket(req: &Request) -> bool {
    let has = |h: header::HeaderName, token: &str| {
        req.headers()
            .get_all(h)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

/// Upstream `portforward.NewV4Options`: a WebSocket request names its ports in `port`
/// (comma-separated or repeated); SPDY names them per stream. Errors quote the whole value.
pub(crate) fn port_forward_ports(req: &Request) -> Result<Vec<i32>, HostError> {
    if !is_websocket(req) {
        return Ok(Vec::new());
    }
    let values: Vec<String> =
        query_pairs(req.uri().query()).into_iter().filter(|(k, _)| k == "port").map(|(_, v)| v).collect();
    if values.is_empty() {
        return Err(HostError::bad_request("query parameter \"port\" is required"));
    }
    let mut ports = Vec::new();
    for v in &values {
        if v.is_empty() {
            return Err(HostError::bad_request("query parameter \"port\" cannot be empty"));
        }
        for p in v.split(',') {
            let port =
                parse_port(p).map_err(|e| HostError::bad_request(format!("unable to parse {v:?} as a port: {e}")))?;
            if port == 0 {
                return Err(HostError::bad_request(format!("port {v:?} must be > 0")));
            }
            ports.push(i32::from(port));
        }
    }
    Ok(ports)
}

/// Go's `strconv.ParseUint(p, 10, 16)`, with its error text.
fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.ParseUint: parsing {p:?}: invalid syntax"));
    }
    p.parse().map_err(|_| format!("strconv.ParseUint: parsing {p:?}: value out of range"))
}

pub(crate) async fn port_forward(
    State(s): State<Arc<AppState>>,
    Path((ns, pod)): Path<(String, String)>,
    req: Request,
) -> Response {
    port_forward_for(s, ns, pod, None, req).await
}

pub(crate) async fn port_forward_uid(
    State(s): State<Arc<AppState>>,
    Path((ns, pod, uid)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    port_forward_for(s, ns, pod, Some(uid), req).await
}

async fn port_forward_for(s: Arc<AppState>, ns: String, pod: String, uid: Option<String>, req: Request) -> Response {
    // SPDY tunnelled in WebSocket names its ports per stream, as plain SPDY does.
    let tunneled = if is_websocket(&req) { translate::tunneled_protocols(&req) } else { Vec::new() };
    let ports = match port_forward_ports(&req) {
        _ if !tunneled.is_empty() => Vec::new(),
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match s.host.port_forward(&ns, &pod, uid.filter(|u| !u.is_empty()).as_deref(), ports).await {
        Ok(url) if !tunneled.is_empty() => translate::tunnel(req, &url, tunneled).await,
        Ok(url) => proxy_stream(req, &url).await,
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn run(
    State(s): State<Arc<AppState>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    run_for(s, target(ns, pod, None, container), q).await
}

pub(crate) async fn run_uid(
    State(s): State<Arc<AppState>>,
    Path((ns, pod, uid, container)): Path<(String, String, String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    run_for(s, target(ns, pod, Some(uid), container), q).await
}

async fn run_for(s: Arc<AppState>, t: ContainerTarget, query: Option<String>) -> Response {
    // For legacy reasons `cmd` is one parameter split on spaces.
    let cmd = query_pairs(query.as_deref())
        .into_iter()
        .find(|(k, _)| k == "cmd")
        .map(|(_, v)| v.split(' ').map(str::to_string).collect())
        .unwrap_or_else(|| vec![String::new()]);
    match s.host.run(t, cmd).await {
        // Upstream's writeJSONResponse sends nothing, not even a Content-Type, for no output.
        Ok(out) if out.is_empty() => StatusCode::OK.into_response(),
        Ok(out) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], out).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(crate) fn proxy_error(msg: impl std::fmt::Display) -> Response {
    tracing::info!("error while proxying a stream: {msg}");
    text(StatusCode::INTERNAL_SERVER_ERROR, format!("{msg}\n"))
}

/// A connection to the runtime's streaming `url` (plain HTTP): the socket, the authority for
/// `Host` and the path with its query.
pub(crate) async fn dial_runtime(url: &str) -> Result<(tokio::net::TcpStream, String, String), String> {
    let Ok(target) = url.parse::<axum::http::Uri>() else {
        return Err(format!("the runtime's streaming URL {url:?} is not a URL"));
    };
    let Some(authority) = target.authority().cloned() else {
        return Err(format!("the runtime's streaming URL {url:?} has no host"));
    };
    if target.scheme_str() != Some("http") {
        return Err(format!("the runtime's streaming URL {url:?} is not plain HTTP"));
    }
    let port = authority.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((authority.host(), port))
        .await
        .map_err(|e| format!("error dialing backend: {e}"))?;
    let path = target.path_and_query().map_or("/", |p| p.as_str()).to_string();
    Ok((tcp, authority.as_str().to_string(), path))
}

/// Upstream `proxyStream`: an upgrade-aware proxy to the runtime's streaming `url` that
/// requires an upgrade. The runtime's 101 is passed back and the two connections are joined;
/// any other answer is passed back as it is.
async fn proxy_stream(req: Request, url: &str) -> Response {
    if !proxy::is_upgrade(&req) {
        return proxy_error("Upgrade request required");
    }
    let (tcp, authority, path) = match dial_runtime(url).await {
        Ok(d) => d,
        Err(e) => return proxy_error(e),
    };
    match proxy::forward(req, tcp, &authority, &path).await {
        // Upstream's UpgradeAwareHandler passes only errors (>= 400) back as they are.
        Ok(r) if r.status() != StatusCode::SWITCHING_PROTOCOLS && r.status().as_u16() < 400 => {
            proxy_error(format!("invalid upgrade response: status code {}", r.status().as_u16()))
        }
        Ok(r) => r,
        Err(e) => proxy_error(e),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    #[test]
    fn stream_options_follow_upstream() {
        let o = stream_options(Some("command=ls&input=1&output=1&error=1&tty=1")).expect("ok");
        assert_eq!(o, StreamOptions { stdin: true, stdout: true, stderr: false, tty: true }, "no stderr with a tty");
        let o = stream_options(Some("output=1&error=1")).expect("ok");
        assert_eq!(o, StreamOptions { stdin: false, stdout: true, stderr: true, tty: false });
        let e = stream_options(Some("command=ls&input=true")).expect_err("nothing");
        assert_eq!((e.status, e.message.as_str()), (400, "you must specify at least 1 of stdin, stdout, stderr"));
    }

    fn ws_request(q: &str) -> Request {
        Request::builder()
            .uri(format!("/portForward/ns/p?{q}"))
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "websocket")
            .body(Body::empty())
            .expect("request")
    }

    #[test]
    fn websocket_port_forwards_name_their_ports() {
        assert_eq!(port_forward_ports(&ws_request("port=80,8080&port=9000")), Ok(vec![80, 8080, 9000]));
        let err = |q: &str| port_forward_ports(&ws_request(q)).map_err(|e| (e.status, e.message));
        assert_eq!(err("ports=80"), Err((400, "query parameter \"port\" is required".into())));
        assert_eq!(err("port="), Err((400, "query parameter \"port\" cannot be empty".into())));
        assert_eq!(
            err("port=80,70000"),
            Err((
                400,
                "unable to parse \"80,70000\" as a port: strconv.ParseUint: parsing \"70000\": value out of range"
                    .into()
            ))
        );
        assert_eq!(
            err("port=8%20"),
            Err((400, "unable to parse \"8 \" as a port: strconv.ParseUint: parsing \"8 \": invalid syntax".into()))
        );
        assert_eq!(err("port=0"), Err((400, "port \"0\" must be > 0".into())));
        let spdy = Request::builder().uri("/portForward/ns/p").body(Body::empty()).expect("request");
        assert_eq!(port_forward_ports(&spdy), Ok(vec![]));
    }

    /// A backend that answers every request with `status` and closes.
    async fn backend(status: u16) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf).await;
                let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope");
                let _ = c.write_all(answer.as_bytes()).await;
            }
        });
        format!("http://{addr}/exec/abc")
    }

    fn upgrade_request() -> Request {
        Request::builder()
            .uri("/exec/ns/p/c?output=1")
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "SPDY/3.1")
            .body(Body::empty())
            .expect("request")
    }

    async fn body_text(r: Response) -> (u16, String) {
        let status = r.status().as_u16();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.expect("body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn a_runtime_answer_that_is_no_upgrade_is_an_error_but_errors_pass_through() {
        let url = backend(200).await;
        let r = proxy_stream(upgrade_request(), &url).await;
        assert_eq!(body_text(r).await, (500, "invalid upgrade response: status code 200\n".into()));
        let url = backend(404).await;
        let r = proxy_stream(upgrade_request(), &url).await;
        assert_eq!(body_text(r).await, (404, "nope".into()), "the runtime's own error, as it is");
        let plain = Request::builder().uri("/exec/ns/p/c").body(Body::empty()).expect("request");
        let r = proxy_stream(plain, &url).await;
        assert_eq!(body_text(r).await, (500, "Upgrade request required\n".into()));
    }
}
