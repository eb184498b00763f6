//! The one HTTP GET client of the kubelet's container-facing requests: httpGet probes and
//! httpGet lifecycle hooks (upstream `pkg/probe/http` and the kubelet's insecure lifecycle client).
//!
//! As upstream: HTTP/1.1 with `Connection: close` (no keep-alive), HTTPS without certificate
//! verification (the kubelet has nothing to verify a pod's certificate against), redirects
//! followed only while they stay on the same host name (up to 10; a redirect elsewhere ends the
//! request with the 3xx response), `Accept: */*` and `User-Agent: kube-<purpose>/<version>`
//! unless the action sets them, a `Host` header from the action's headers, and at most 10 KiB
//! of the response body read. Errors read like Go's `url.Error`: `Get "<url>": <cause>`.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction};

use crate::runtime::hooks::resolve_port;

/// Upstream's `maxRespBodyLength`.
pub const MAX_BODY: usize = 10 * 1024;
/// Upstream's redirect limit.
const MAX_REDIRECTS: usize = 10;

/// A GET request built from an `HTTPGetAction` (upstream `NewRequestForHTTPGetAction`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub url: Url,
    /// Headers in order, `User-Agent`/`Accept` defaults included.
    pub headers: Vec<(String, String)>,
}

/// An absolute http(s) URL, split the way the client needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// `host:port` (`[v6]:port`), Go's `URL.Host`.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Resolves a `Location` header against this URL.
    fn join(&self, location: &str) -> Option<Url> {
        if let Some((scheme, rest)) = location.split_once("://") {
            let https = match scheme.to_ascii_lowercase().as_str() {
                "http" => false,
                "https" => true,
                _ => return None,
            };
            let (authority, path) = match rest.find(['/', '?']) {
                Some(i) => (&rest[..i], rest[i..].to_string()),
                None => (rest, "/".to_string()),
            };
            let (host, port) = split_authority(authority, if https { 443 } else { 80 })?;
            let path = if path.starts_with('?') { format!("/{path}") } else { path };
            return Some(Url { https, host, port, path });
        }
        let path = if location.starts_with('/') {
            location.to_string()
        } else {
            let dir = self.path.split('?').next().unwrap_or("/");
            let dir = &dir[..dir.rfind('/').map_or(0, |i| i + 1)];
            format!("{}{location}", if dir.is_empty() { "/" } else { dir })
        };
        Some(Url { path, ..self.clone() })
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", if self.https { "https" } else { "http" }, self.authority(), self.path)
    }
}

fn split_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((authority.to_string(), default_port)),
    }
}

/// The answer to a GET: status and the first [`MAX_BODY`] bytes of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Builds the request for `action` of container `c`; the host defaults to `pod_ip`.
/// `purpose` is `probe` or `lifecycle` (the user agent `kube-<purpose>/<version>`).
pub fn request_for(
    action: &HTTPGetAction,
    c: &Container,
    pod_ip: Option<&str>,
    purpose: &str,
) -> Result<Request, String> {
    let scheme = action.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
    let https = match scheme.as_str() {
        "" | "http" => false,
        "https" => true,
        other => return Err(format!("unsupported scheme {other:?}")),
    };
    let host = action
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .or(pod_ip.filter(|ip| !ip.is_empty()))
        .ok_or("failed to find networking container: the pod has no IP")?;
    let port = resolve_port(&action.port, c)?;
    let mut path = action.path.clone().unwrap_or_default();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let mut headers: Vec<(String, String)> =
        action.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect();
    let has = |headers: &[(String, String)], name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has(&headers, "user-agent") {
        headers.push(("User-Agent".into(), user_agent(purpose)));
    }
    if !has(&headers, "accept") {
        headers.push(("Accept".into(), "*/*".into()));
    } else {
        // An Accept header set to "" removes it.
        headers.retain(|(n, v)| !(n.eq_ignore_ascii_case("accept") && v.is_empty()));
    }
    Ok(Request { url: Url { https, host: host.to_string(), port, path }, headers })
}

/// `kube-<purpose>/<major>.<minor>` as upstream (our version stands in for the Kubernetes one).
pub fn user_agent(purpose: &str) -> String {
    let v = env!("CARGO_PKG_VERSION");
    let major_minor: Vec<&str> = v.split('.').take(2).collect();
    format!("kube-{purpose}/{}", major_minor.join("."))
}

/// Sends `req`, following same-host redirects, within `timeout` (None: no limit).
pub async fn get(req: &Request, timeout: Option<Duration>) -> Result<Response, String> {
    let run = follow(req);
    match timeout {
        Some(t) => match tokio::time::timeout(t, run).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "Get {:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                req.url.to_string()
            )),
        },
        None => run.await,
    }
}

async fn follow(req: &Request) -> Result<Response, String> {
    let mut url = req.url.clone();
    let mut hops = 0;
    loop {
        let (resp, location) = once(&url, &req.headers).await.map_err(|e| format!("Get {:?}: {e}", url.to_string()))?;
        let Some(next) = location.filter(|_| is_redirect(resp.status)).and_then(|l| url.join(&l)) else {
            return Ok(resp);
        };
        if next.host != req.url.host {
            // Upstream's RedirectChecker: a redirect to another host is not followed.
            return Ok(resp);
        }
        hops += 1;
        if hops >= MAX_REDIRECTS {
            return Err(format!("Get {:?}: stopped after {MAX_REDIRECTS} redirects", next.to_string()));
        }
        url = next;
    }
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

async fn once(url: &Url, headers: &[(String, String)]) -> Result<(Response, Option<String>), String> {
    let authority = url.authority();
    let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("dial tcp {authority}: {}", go_dial_error(&e)))?;
    if url.https {
        let server_name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| format!("invalid server name {:?}: {e}", url.host))?;
        let tls = tokio_rustls::TlsConnector::from(insecure_tls_config()?)
            .connect(server_name, FirstBytes::new(tcp))
            .into_fallible()
            .await
            .map_err(|(e, stream)| {
                if stream.first == *b"HTTP/" {
                    // Go's wording, which the lifecycle hooks' HTTP fallback looks for.
                    HTTP_RESPONSE_TO_HTTPS.to_string()
                } else {
                    format!("tls: {e}")
                }
            })?;
        exchange(tls, url, headers).await
    } else {
        exchange(tcp, url, headers).await
    }
}

async fn exchange<S>(stream: S, url: &Url, headers: &[(String, String)]) -> Result<(Response, Option<String>), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut b = http::Request::get(url.path.as_str());
    let host = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("host")).map(|(_, v)| v.clone());
    b = b.header(http::header::HOST, host.unwrap_or_else(|| url.authority()));
    for (n, v) in headers.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("host")) {
        b = b.header(n.as_str(), v.as_str());
    }
    b = b.header(http::header::CONNECTION, "close");
    let request = b.body(http_body_util::Empty::<bytes::Bytes>::new()).map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let result = async {
        let resp = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let location = resp.headers().get(http::header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut body = Vec::new();
        let mut stream = resp.into_body();
        while body.len() < MAX_BODY {
            match stream.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let room = MAX_BODY - body.len();
                        body.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => break,
            }
        }
        Ok((Response { status, body }, location))
    }
    .await;
    conn.abort();
    result
}

/// The error of an HTTPS request answered in plain HTTP (Go's `http.Client` words).
pub const HTTP_RESPONSE_TO_HTTPS: &str = "http: server gave HTTP response to HTTPS client";

/// A stream that remembers the first 5 bytes read from it: a TLS record header, or `HTTP/` when
/// the server speaks plain HTTP (Go's check before it reports [`HTTP_RESPONSE_TO_HTTPS`]).
struct FirstBytes<S> {
    inner: S,
    first: [u8; 5],
    seen: usize,
}

impl<S> FirstBytes<S> {
    fn new(inner: S) -> Self {
        Self { inner, first: [0; 5], seen: 0 }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for FirstBytes<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let this = &mut *self;
        if this.seen < this.first.len() {
            let fresh = &buf.filled()[before..];
            let n = fresh.len().min(this.first.len() - this.seen);
            this.first[this.seen..this.seen + n].copy_from_slice(&fresh[..n]);
            this.seen += n;
        }
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for FirstBytes<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The cause of a failed connect as Go words it (`connect: connection refused`).
fn go_dial_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        _ => format!("connect: {e}"),
    }
}

/// TLS without certificate verification (upstream: `InsecureSkipVerify: true`).
fn insecure_tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = Arc::new(NoVerify::new(provider.clone()));
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| Arc::new(b.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth()))
                .map_err(|e| format!("tls: {e}"))
        })
        .clone()
}

/// Accepts any server certificate; signatures are still checked so the handshake is sound.
/// (Also the test client's, for the kubelet's self-signed serving certificate.)
#[derive(Debug)]
pub struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl NoVerify {
    pub fn new(provider: Arc<rustls::crypto::CryptoProvider>) -> Self {
        Self(provider)
    }
}

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use k8s_openapi::api::core::v1::{ContainerPort, HTTPHeader};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    use super::*;

    /// A server on 127.0.0.1 answering each request with `respond(request head)`, reporting the
    /// heads it saw. `tls` serves HTTPS with a self-signed certificate.
    async fn server(
        tls: bool,
        respond: impl Fn(&str, u16) -> String + Send + Sync + 'static,
    ) -> (u16, mpsc::UnboundedReceiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::unbounded_channel();
        let acceptor = tls.then(|| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert =
                rcgen::CertificateParams::new(vec!["pod.invalid".to_string()]).unwrap().self_signed(&key).unwrap();
            let config =
                rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_no_client_auth()
                    .with_single_cert(
                        vec![cert.der().clone()],
                        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
                    )
                    .unwrap();
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let respond = Arc::new(respond);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (tx, respond, acceptor) = (tx.clone(), respond.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let mut stream: Box<dyn Stream> = match acceptor {
                        Some(a) => Box::new(a.accept(tcp).await.unwrap()),
                        None => Box::new(tcp),
                    };
                    let mut buf = vec![0u8; 8192];
                    let mut n = 0;
                    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        let m = stream.read(&mut buf[n..]).await.unwrap();
                        if m == 0 {
                            return;
                        }
                        n += m;
                    }
                    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let answer = respond(&head, port);
                    let _ = tx.send(head);
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        (port, rx)
    }

    trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
    impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

    fn reply(status: &str, headers: &str, body: &str) -> String {
        format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n{headers}\r\n{body}", body.len())
    }

    fn container() -> Container {
        Container {
            name: "app".into(),
            ports: Some(vec![ContainerPort { name: Some("http".into()), container_port: 8080, ..Default::default() }]),
            ..Default::default()
        }
    }

    fn action(port: u16, path: &str) -> HTTPGetAction {
        HTTPGetAction { path: Some(path.into()), port: IntOrString::Int(i32::from(port)), ..Default::default() }
    }

    #[test]
    fn requests_default_to_the_pod_ip_and_resolve_named_ports() {
        let a = HTTPGetAction {
            path: Some("healthz?full=1".into()),
            port: IntOrString::String("http".into()),
            http_headers: Some(vec![HTTPHeader { name: "Accept".into(), value: String::new() }]),
            ..Default::default()
        };
        let r = request_for(&a, &container(), Some("10.0.0.5"), "probe").unwrap();
        assert_eq!(r.url.to_string(), "http://10.0.0.5:8080/healthz?full=1");
        assert_eq!(r.headers, vec![("User-Agent".to_string(), user_agent("probe"))], "an empty Accept removes it");
        assert!(user_agent("probe").starts_with("kube-probe/"));
        let https = HTTPGetAction { scheme: Some("HTTPS".into()), host: Some("fd00::1".into()), ..action(443, "/") };
        assert_eq!(request_for(&https, &container(), None, "probe").unwrap().url.to_string(), "https://[fd00::1]:443/");
        assert!(request_for(&action(80, "/"), &container(), None, "probe").unwrap_err().contains("no IP"));
    }

    #[test]
    fn locations_resolve_against_the_current_url() {
        let base = Url { https: false, host: "10.0.0.5".into(), port: 8080, path: "/a/b?x=1".into() };
        assert_eq!(base.join("/c").unwrap().to_string(), "http://10.0.0.5:8080/c");
        assert_eq!(base.join("c").unwrap().to_string(), "http://10.0.0.5:8080/a/c");
        assert_eq!(base.join("https://example.invalid/z").unwrap().to_string(), "https://example.invalid:443/z");
        assert_eq!(base.join("http://[fd00::2]:81").unwrap().to_string(), "http://[fd00::2]:81/");
        assert_eq!(base.join("ftp://x/"), None);
    }

    #[tokio::test]
    async fn sends_headers_and_follows_same_host_redirects() {
        let (port, mut seen) = server(false, |head, _| {
            if head.starts_with("GET /start ") {
                reply("302 Found", "location: /final\r\n", "")
            } else {
                reply("200 OK", "", "fine")
            }
        })
        .await;
        let mut a = action(port, "/start");
        a.http_headers = Some(vec![
            HTTPHeader { name: "X-Probe".into(), value: "1".into() },
            HTTPHeader { name: "Host".into(), value: "svc.example".into() },
        ]);
        let req = request_for(&a, &container(), Some("127.0.0.1"), "probe").unwrap();
        let resp = get(&req, Some(Duration::from_secs(5))).await.unwrap();
        assert_eq!((resp.status, resp.body.as_slice()), (200, b"fine".as_slice()));
        let first = seen.recv().await.unwrap().to_ascii_lowercase();
        assert!(first.starts_with("get /start http/1.1\r\n"), "{first}");
        for h in ["host: svc.example", "x-probe: 1", "accept: */*", "connection: close", "user-agent: kube-probe/"] {
            assert!(first.contains(h), "{h} in {first}");
        }
        let second = seen.recv().await.unwrap().to_ascii_lowercase();
        assert!(second.starts_with("get /final http/1.1\r\n") && second.contains("x-probe: 1"), "{second}");
    }

    #[tokio::test]
    async fn redirects_to_another_host_are_not_followed_and_loops_end() {
        let (port, mut seen) = server(false, |head, port| {
            if head.starts_with("GET /away ") {
                reply("301 Moved Permanently", &format!("location: http://127.0.0.2:{port}/elsewhere\r\n"), "moved")
            } else {
                reply("302 Found", "location: /loop\r\n", "")
            }
        })
        .await;
        let req = request_for(&action(port, "/away"), &container(), Some("127.0.0.1"), "probe").unwrap();
        let resp = get(&req, Some(Duration::from_secs(5))).await.unwrap();
        assert_eq!((resp.status, resp.body.as_slice()), (301, b"moved".as_slice()), "the 3xx itself");
        assert!(seen.recv().await.is_some());
        assert!(seen.try_recv().is_err(), "127.0.0.2 was not asked");

        let req = request_for(&action(port, "/loop"), &container(), Some("127.0.0.1"), "probe").unwrap();
        let err = get(&req, Some(Duration::from_secs(5))).await.unwrap_err();
        assert_eq!(err, format!("Get \"http://127.0.0.1:{port}/loop\": stopped after 10 redirects"));
    }

    #[tokio::test]
    async fn https_without_verification_and_a_bounded_body() {
        let big = "x".repeat(MAX_BODY * 2);
        let (port, _seen) = server(true, move |_, _| reply("200 OK", "", &big)).await;
        let a = HTTPGetAction { scheme: Some("HTTPS".into()), ..action(port, "/") };
        let req = request_for(&a, &container(), Some("127.0.0.1"), "probe").unwrap();
        let resp = get(&req, Some(Duration::from_secs(5))).await.unwrap();
        assert_eq!((resp.status, resp.body.len()), (200, MAX_BODY), "self-signed accepted, body cut at 10 KiB");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_server_times_out_with_gos_words() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _hold = tokio::spawn(async move {
            let (_s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        let req = request_for(&action(port, "/slow"), &container(), Some("127.0.0.1"), "probe").unwrap();
        let err = get(&req, Some(Duration::from_secs(1))).await.unwrap_err();
        assert_eq!(
            err,
            format!(
                "Get \"http://127.0.0.1:{port}/slow\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )
        );
    }
}
