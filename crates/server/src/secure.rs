//! The kubelet API server (`address:port`, 10250): HTTPS with the serving certificate
//! (`tlsCertFile`/`tlsPrivateKeyFile`, else a self-signed one kept in `<cert-dir>/kubelet.crt`
//! and `kubelet.key`, as upstream), optional client certificates checked against
//! `authentication.x509.clientCAFile`, and every request authenticated and authorized
//! ([`crate::auth`]) before its handler runs.
//!
//! Handlers: `/healthz`, `/pods`, `/metrics`, `/metrics/probes`; with `enableDebuggingHandlers` (default on)
//! `/containerLogs/{ns}/{pod}/{container}`, `/exec`, `/attach`, `/portForward`, `/run`
//! ([`crate::streaming`]), `/runningpods/`, `/configz` and, with
//! `enableSystemLogHandler`, `/logs/`. With debugging handlers off, their paths answer 405
//! "Debug endpoints are disabled." as upstream (`/configz` is then 404).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_util::sync::CancellationToken;

use crate::auth::{Authenticator, AuthnError, Authorizer, Decision, User, request_attributes};
use crate::{ApiHost, MetricsSet, streaming};

/// How the server is set up (from the KubeletConfiguration).
pub struct SecureConfig {
    pub addr: SocketAddr,
    /// `tlsCertFile` and `tlsPrivateKeyFile`; empty: self-signed in `cert_dir`.
    pub cert_file: String,
    pub key_file: String,
    /// Where the self-signed pair lives (`<root-dir>/pki` unless `--cert-dir`).
    pub cert_dir: PathBuf,
    /// `authentication.x509.clientCAFile`; empty: client certificates are not asked for.
    pub client_ca_file: String,
    pub node_name: String,
    pub enable_debugging_handlers: bool,
    /// `/logs/` serves this directory (`/var/log`) when set.
    pub system_logs: Option<PathBuf>,
    /// The resolved configuration, served at `/configz` as `{"kubeletconfig": …}`.
    pub configz: serde_json::Value,
    /// `tlsMinVersion` (`VersionTLS12`, …; empty: the default).
    pub tls_min_version: String,
    /// `tlsCipherSuites` by Go's names (empty: rustls' defaults).
    pub tls_cipher_suites: Vec<String>,
}

/// The loaded serving certificate chain and key.
pub type ServingCert = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The serving certificate: the configured files, else `<cert_dir>/kubelet.crt|key`, made
/// self-signed for `hostname` (valid one year) when missing, as upstream.
pub fn serving_cert(cfg: &SecureConfig, hostname: &str) -> Result<ServingCert, String> {
    let (cert, key) = if cfg.cert_file.is_empty() {
        let cert = cfg.cert_dir.join("kubelet.crt");
        let key = cfg.cert_dir.join("kubelet.key");
        if !cert.exists() || !key.exists() {
            write_self_signed(&cert, &key, hostname)?;
            tracing::info!(cert = %cert.display(), "generated a self-signed serving certificate");
        }
        (cert, key)
    } else {
        (PathBuf::from(&cfg.cert_file), PathBuf::from(&cfg.key_file))
    };
    let certs = read_certs(&cert)?;
    let key_pem = std::fs::read(&key).map_err(|e| format!("reading {}: {e}", key.display()))?;
    let key = rustls::pki_types::pem::PemObject::from_pem_slice(&key_pem)
        .map_err(|e| format!("no private key in {}: {e}", key.display()))?;
    Ok((certs, key))
}

/// Where the serving certificate comes from.
pub enum ServingSource {
    /// The configured files or the self-signed pair ([`serving_cert`]).
    Fixed(ServingCert),
    /// The pair issued through the API server (`serverTLSBootstrap`), certificate chain then key
    /// in PEM; None until the first is issued, when handshakes fail as upstream's do.
    Rotating(tokio::sync::watch::Receiver<Option<String>>),
}

/// A certificate and key in one PEM text.
fn certified_key(pem: &str, provider: &rustls::crypto::CryptoProvider) -> Result<rustls::sign::CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = rustls::pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("serving certificate: {e}"))?;
    let key: PrivateKeyDer<'static> = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("serving certificate key: {e}"))?;
    rustls::sign::CertifiedKey::from_der(certs, key, provider).map_err(|e| format!("serving certificate: {e}"))
}

/// The serving certificate issued through the API server, swapped in as each new one arrives,
/// with its expiry: an expired one is no certificate, as upstream's manager treats it.
#[derive(Debug)]
struct RotatingCert(std::sync::RwLock<Option<(Arc<rustls::sign::CertifiedKey>, std::time::SystemTime)>>);

impl rustls::server::ResolvesServerCert for RotatingCert {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let usable = self.usable();
        if usable.is_none() {
            tracing::debug!("no serving certificate available for the kubelet");
        }
        usable
    }
}

/// The leaf's notAfter.
fn not_after(key: &rustls::sign::CertifiedKey) -> Result<std::time::SystemTime, String> {
    let leaf = key.cert.first().ok_or("serving certificate: no certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| format!("serving certificate: {e}"))?;
    let secs = u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0);
    Ok(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

impl RotatingCert {
    /// The current certificate unless it has expired.
    fn usable(&self) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let current = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        current.filter(|(_, not_after)| *not_after > std::time::SystemTime::now()).map(|(k, _)| k)
    }

    /// Follows `updates` until the sender goes away.
    fn follow(
        mut updates: tokio::sync::watch::Receiver<Option<String>>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Arc<Self> {
        let me = Arc::new(Self(std::sync::RwLock::new(None)));
        let this = me.clone();
        let load = move |pem: Option<String>| {
            let key = pem.map(|p| certified_key(&p, &provider).and_then(|k| not_after(&k).map(|t| (k, t))));
            match key {
                Some(Err(e)) => tracing::error!("{e}"),
                Some(Ok((k, t))) => {
                    *this.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Arc::new(k), t));
                }
                None => {}
            }
        };
        load(updates.borrow_and_update().clone());
        tokio::spawn(async move {
            while updates.changed().await.is_ok() {
                let pem = updates.borrow_and_update().clone();
                load(pem);
            }
        });
        me
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = rustls::pki_types::pem::PemObject::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificates in {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", path.display()));
    }
    Ok(certs)
}

fn write_self_signed(cert: &Path, key: &Path, hostname: &str) -> Result<(), String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut params = rcgen::CertificateParams::new(vec![hostname.to_string()]).map_err(|e| e.to_string())?;
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("{hostname}@{}", now.as_secs()));
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let pair = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let signed = params.self_signed(&pair).map_err(|e| e.to_string())?;
    if let Some(dir) = cert.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    sys::fs::write_file(key, pair.serialize_pem().as_bytes(), 0o600).map_err(|e| format!("{}: {e}", key.display()))?;
    sys::fs::write_file(cert, signed.pem().as_bytes(), 0o644).map_err(|e| format!("{}: {e}", cert.display()))
}

/// Client certificates against a CA, upstream's way: the handshake asks for one without
/// requiring it and accepts any whose signature holds (possession of the key is proven there);
/// [`ClientCerts::verify`] checks the chain afterwards, so a bad certificate gets a 401 instead
/// of a TLS alert. Shared with the test API server.
#[derive(Debug)]
pub struct ClientCerts(Arc<dyn ClientCertVerifier>);

impl ClientCerts {
    /// Trusts the certificates of `roots`.
    pub fn new(roots: rustls::RootCertStore) -> Result<Arc<Self>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(Self(inner)))
    }

    /// Checks `chain` (leaf first) against the CA; the user it names (CN, groups O).
    pub fn verify(&self, chain: &[CertificateDer<'_>]) -> Result<User, String> {
        let (leaf, intermediates) = chain.split_first().ok_or("no client certificate")?;
        self.0.verify_client_cert(leaf, intermediates, UnixTime::now()).map_err(|e| e.to_string())?;
        cert_user(leaf)
    }
}

impl ClientCertVerifier for ClientCerts {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// What the TLS connection says of its client, attached to each of its requests.
#[derive(Debug, Clone)]
enum ClientCert {
    None,
    Valid(User),
    Invalid(String),
}

/// The user of a verified client certificate: CN is the name, O the groups (upstream's
/// `CommonNameUserConversion`).
pub fn cert_user(der: &[u8]) -> Result<User, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or_default().to_string();
    if name.is_empty() {
        return Err("client certificate without a common name".into());
    }
    let groups = subject.iter_organization().filter_map(|o| o.as_str().ok()).map(str::to_string).collect();
    Ok(User { name, groups, ..Default::default() })
}

pub(crate) struct AppState {
    pub(crate) host: Arc<dyn ApiHost>,
    pub(crate) logs_dir: PathBuf,
    configz: serde_json::Value,
}

/// Who may call: the authenticator and authorizer of the secure port.
struct Guard {
    authn: Authenticator,
    authz: Authorizer,
    node: String,
}

/// What both ports serve without debugging handlers (upstream `InstallAuthNotRequiredHandlers`).
fn common_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/pods", get(pods))
        .route("/metrics", get(|s| metrics(s, MetricsSet::Kubelet)))
        .route("/metrics/cadvisor", get(|s| metrics(s, MetricsSet::Cadvisor)))
        .route("/metrics/probes", get(|s| metrics(s, MetricsSet::Probes)))
        .route("/metrics/resource", get(|s| metrics(s, MetricsSet::Resource)))
        .route("/stats/summary", get(stats_summary).post(stats_summary))
}

/// The debugging paths answering 405, as upstream's `InstallDebuggingDisabledHandlers`.
fn debugging_disabled(mut r: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
    for p in
        ["/run/", "/exec/", "/attach/", "/portForward/", "/containerLogs/", "/runningpods/", "/debug/pprof/", "/logs/"]
    {
        r = r.route(&format!("{p}{{*rest}}"), axum::routing::any(debug_disabled));
        r = r.route(p, axum::routing::any(debug_disabled));
    }
    r
}

/// The routes, behind authentication and authorization.
fn router(state: Arc<AppState>, guard: Arc<Guard>, debugging: bool, system_logs: bool) -> Router {
    let mut r = common_routes();
    if debugging {
        r = r
            .route("/containerLogs/{namespace}/{pod}/{container}", get(crate::containers::container_logs))
            .route("/runningpods/", get(crate::containers::running_pods))
            .route("/configz", get(configz))
            .route("/exec/{namespace}/{pod}/{container}", get(streaming::exec).post(streaming::exec))
            .route("/exec/{namespace}/{pod}/{uid}/{container}", get(streaming::exec_uid).post(streaming::exec_uid))
            .route("/attach/{namespace}/{pod}/{container}", get(streaming::attach).post(streaming::attach))
            .route(
                "/attach/{namespace}/{pod}/{uid}/{container}",
                get(streaming::attach_uid).post(streaming::attach_uid),
            )
            .route("/portForward/{namespace}/{pod}", get(streaming::port_forward).post(streaming::port_forward))
            .route(
                "/portForward/{namespace}/{pod}/{uid}",
                get(streaming::port_forward_uid).post(streaming::port_forward_uid),
            )
            .route("/run/{namespace}/{pod}/{container}", axum::routing::post(streaming::run))
            .route("/run/{namespace}/{pod}/{uid}/{container}", axum::routing::post(streaming::run_uid));
        if system_logs {
            for p in ["/logs", "/logs/", "/logs/{*path}"] {
                r = r.route(p, get(crate::node_logs::serve));
            }
        }
    } else {
        r = debugging_disabled(r);
    }
    r.fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(guard, authenticate_and_authorize))
        .with_state(state)
}

/// Upstream's read-only port: the common routes over plain HTTP with no authentication, the
/// debugging paths answering 405, nothing else (no `/configz`).
fn read_only_router(state: Arc<AppState>) -> Router {
    debugging_disabled(common_routes()).fallback(not_found).with_state(state)
}

/// Serves the read-only port (`readOnlyPort`) until `shutdown`, on its own task.
pub fn serve_read_only(
    addr: SocketAddr,
    host: Arc<dyn ApiHost>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let state = Arc::new(AppState { host, logs_dir: PathBuf::new(), configz: serde_json::Value::Null });
    let app = read_only_router(state);
    tokio::spawn(async move {
        let Some(listener) = crate::bind_retrying(addr, "kubelet read-only server", &shutdown).await else { return };
        tracing::warn!("kubelet read-only port serving without authentication on http://{addr}");
        let r = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
        if let Err(e) = r {
            tracing::error!("kubelet read-only server on {addr}: {e}");
        }
    })
}

pub(crate) fn text(code: StatusCode, body: impl Into<String>) -> Response {
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body.into()).into_response()
}

async fn authenticate_and_authorize(State(s): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let cert = req.extensions().get::<ClientCert>().cloned().unwrap_or(ClientCert::None);
    let cert_user = match cert {
        ClientCert::None => None,
        ClientCert::Valid(u) => Some(u),
        ClientCert::Invalid(why) => {
            tracing::info!("unable to authenticate the request: client certificate: {why}");
            return text(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
    };
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let user = match s.authn.authenticate(cert_user, authorization).await {
        Ok(u) => u,
        Err(AuthnError::NoCredentials) => return text(StatusCode::UNAUTHORIZED, "Unauthorized"),
        Err(AuthnError::InvalidToken(why)) => {
            tracing::info!("unable to authenticate the request: {why}");
            return text(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
    };
    let attrs = request_attributes(&user, req.method().as_str(), req.uri().path(), &s.node);
    match s.authz.authorize(&attrs).await {
        Decision::Allowed => next.run(req).await,
        Decision::Forbidden(msg) => text(StatusCode::FORBIDDEN, msg),
        Decision::Error(msg) => text(StatusCode::INTERNAL_SERVER_ERROR, msg),
    }
}

async fn healthz(State(s): State<Arc<AppState>>) -> Response {
    match s.host.healthz() {
        Ok(()) => text(StatusCode::OK, "ok"),
        Err(reason) => {
            text(StatusCode::INTERNAL_SERVER_ERROR, format!("[-]syncloop failed: {reason}\nhealthz check failed\n"))
        }
    }
}

async fn pods(State(s): State<Arc<AppState>>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], s.host.pods().to_string()).into_response()
}

async fn metrics(State(s): State<Arc<AppState>>, set: MetricsSet) -> Response {
    let body = crate::metrics::render(&s.host.metrics(set).await);
    (StatusCode::OK, [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
}

/// Upstream's stats handler: `only_cpu_and_memory` must be exactly one `true`; an error is a
/// 500 `Internal Error: …`.
async fn stats_summary(State(s): State<Arc<AppState>>, RawQuery(query): RawQuery) -> Response {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap_or_default();
    let values: Vec<&str> = pairs.iter().filter(|(k, _)| k == "only_cpu_and_memory").map(|(_, v)| v.as_str()).collect();
    match s.host.summary(values == ["true"]).await {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("Internal Error: {e}")),
    }
}

async fn configz(State(s): State<Arc<AppState>>) -> Response {
    let body = serde_json::json!({ "kubeletconfig": s.configz });
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn debug_disabled() -> Response {
    text(StatusCode::METHOD_NOT_ALLOWED, "Debug endpoints are disabled.\n")
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "404 page not found\n")
}

/// Serves the kubelet API until `shutdown`, on its own task. A bind failure is retried every
/// 5 s (pods keep running meanwhile).
pub fn serve(
    cfg: SecureConfig,
    cert: ServingSource,
    host: Arc<dyn ApiHost>,
    authn: Authenticator,
    authz: Authorizer,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let tls = crate::tls::settings(&cfg.tls_min_version, &cfg.tls_cipher_suites)?;
    for w in &tls.warnings {
        tracing::warn!("kubelet server: {w}");
    }
    let client_ca = if cfg.client_ca_file.is_empty() {
        None
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for c in read_certs(Path::new(&cfg.client_ca_file))? {
            roots.add(c).map_err(|e| format!("client CA {}: {e}", cfg.client_ca_file))?;
        }
        Some(ClientCerts::new(roots).map_err(|e| format!("client CA {}: {e}", cfg.client_ca_file))?)
    };
    let verifier: Arc<dyn ClientCertVerifier> = match &client_ca {
        Some(c) => c.clone(),
        None => WebPkiClientVerifier::no_client_auth(),
    };
    let builder = rustls::ServerConfig::builder_with_provider(tls.provider.clone())
        .with_protocol_versions(&tls.versions)
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier);
    let tls = match cert {
        ServingSource::Fixed((chain, key)) => {
            builder.with_single_cert(chain, key).map_err(|e| format!("serving certificate: {e}"))?
        }
        ServingSource::Rotating(updates) => builder.with_cert_resolver(RotatingCert::follow(updates, tls.provider)),
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let state = Arc::new(AppState {
        host,
        logs_dir: cfg.system_logs.clone().unwrap_or_default(),
        configz: cfg.configz.clone(),
    });
    let guard = Arc::new(Guard { authn, authz, node: cfg.node_name.clone() });
    let app = router(state, guard, cfg.enable_debugging_handlers, cfg.system_logs.is_some());
    let addr = cfg.addr;
    Ok(tokio::spawn(async move {
        let Some(listener) = crate::bind_retrying(addr, "kubelet server", &shutdown).await else { return };
        tracing::info!("kubelet API serving on https://{addr}");
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("kubelet server accept: {e}");
                        continue;
                    }
                },
            };
            let (acceptor, app, client_ca, shutdown) =
                (acceptor.clone(), app.clone(), client_ca.clone(), shutdown.clone());
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return tracing::debug!(%peer, "TLS handshake: {e}"),
                    Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                };
                let client = client_cert(tls.get_ref().1.peer_certificates(), client_ca.as_deref());
                let svc = app.layer(axum::Extension(client));
                let svc = hyper_util::service::TowerToHyperService::new(svc);
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(90))
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .with_upgrades();
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => if let Err(e) = r { tracing::debug!(%peer, "kubelet server connection: {e}") },
                    _ = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
                }
            });
        }
    }))
}

/// Checks the client's certificate chain against the client CA.
fn client_cert(chain: Option<&[CertificateDer<'static>]>, ca: Option<&ClientCerts>) -> ClientCert {
    match (chain.filter(|c| !c.is_empty()), ca) {
        (Some(chain), Some(ca)) => ca.verify(chain).map_or_else(ClientCert::Invalid, ClientCert::Valid),
        _ => ClientCert::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and its key in one PEM text, valid until `not_after`.
    fn pem(not_after: time::OffsetDateTime) -> String {
        let mut params = rcgen::CertificateParams::new(vec!["node".to_string()]).expect("params");
        params.not_before = not_after - time::Duration::days(2);
        params.not_after = not_after;
        let pair = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&pair).expect("sign");
        format!("{}{}", cert.pem(), pair.serialize_pem())
    }

    #[tokio::test]
    async fn an_expired_rotated_certificate_is_never_served() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let now = time::OffsetDateTime::now_utc();
        let (tx, rx) = tokio::sync::watch::channel(Some(pem(now - time::Duration::hours(1))));
        let cert = RotatingCert::follow(rx, provider);
        assert!(cert.usable().is_none(), "expired an hour ago");

        tx.send(Some(pem(now + time::Duration::days(1)))).expect("send");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while cert.usable().is_none() {
            assert!(tokio::time::Instant::now() < deadline, "the valid certificate was not taken");
            tokio::task::yield_now().await;
        }
        let served = cert.usable().expect("valid");

        // A replacement that does not parse keeps the one being served.
        tx.send(Some("not a pem".into())).expect("send");
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        assert_eq!(cert.usable().map(|k| k.cert.clone()), Some(served.cert.clone()));
    }
}
