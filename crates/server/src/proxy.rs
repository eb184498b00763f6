//! An upgrade-aware HTTP/1.1 proxy over a connection the caller has already made: the
//! kubelet's `proxyStream` to the runtime's streaming server, and the test API server's
//! `pods/exec|attach|portforward|log` to the kubelet use the same code. The client's own
//! credentials (`Authorization`, `Proxy-Authorization`, `Cookie`) never go to the backend.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// Headers that belong to the client's hop and never reach the backend.
const DROPPED: [header::HeaderName; 3] = [header::AUTHORIZATION, header::PROXY_AUTHORIZATION, header::COOKIE];

/// Whether the request asks for a protocol upgrade (`Connection: Upgrade`).
pub fn is_upgrade(req: &Request) -> bool {
    req.headers()
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

/// Sends `req` (its method, headers and body) as `path` to `host` over `io`. A 101 answer is
/// passed back and, once both sides have upgraded, the two connections are joined byte for
/// byte until either closes; any other answer streams back as it is. `Err` names what failed
/// before the backend answered.
pub async fn forward<IO>(mut req: Request, io: IO, host: &str, path: &str) -> Result<Response, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("error dialing backend: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("proxied backend connection: {e}");
        }
    });
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (parts, body) = req.into_parts();
    let mut out = hyper::Request::builder().method(parts.method).uri(path);
    for (k, v) in &parts.headers {
        if k != header::HOST && !DROPPED.contains(k) {
            out = out.header(k, v);
        }
    }
    let out = out.header(header::HOST, host).body(body).map_err(|e| e.to_string())?;
    let mut resp = sender.send_request(out).await.map_err(|e| format!("error proxying to the backend: {e}"))?;
    let status = resp.status();
    let mut answer = Response::builder().status(status);
    for (k, v) in resp.headers() {
        answer = answer.header(k, v);
    }
    if status != StatusCode::SWITCHING_PROTOCOLS {
        return answer.body(Body::new(resp.into_body())).map_err(|e| e.to_string());
    }
    let backend_upgrade = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client, backend) = match tokio::join!(client_upgrade, backend_upgrade) {
            (Ok(c), Ok(b)) => (c, b),
            (Err(e), _) | (_, Err(e)) => return tracing::debug!("stream upgrade: {e}"),
        };
        let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            tracing::debug!("stream copy: {e}");
        }
    });
    answer.body(Body::empty()).map_err(|e| e.to_string())
}
