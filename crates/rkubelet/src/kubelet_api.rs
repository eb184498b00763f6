//! Wiring of the kubelet API server (`server::secure`) from the KubeletConfiguration:
//! authentication (`authentication.anonymous/webhook/x509`) and authorization
//! (`authorization.mode`), with the API server's TokenReview and SubjectAccessReview behind the
//! webhooks. Without an API server (standalone), webhook authentication accepts no token and
//! webhook authorization answers every request with an authorization error — the secure
//! outcome; upstream refuses to start then.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use core_kubelet::config::KubeletConfiguration;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use serde_json::Value;
use server::auth::{AccessReviewer, Attributes, Authenticator, Authorizer, TokenReviewer, User};
use tokio_util::sync::CancellationToken;

/// TokenReview against the API server.
struct ApiTokens(kube::Client);

#[async_trait]
impl TokenReviewer for ApiTokens {
    async fn review(&self, token: &str) -> Result<Option<User>, String> {
        let review = TokenReview {
            spec: TokenReviewSpec { token: token.to_string(), ..Default::default() },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.0.clone());
        let answer = api.create(&PostParams::default(), &review).await.map_err(|e| format!("TokenReview: {e}"))?;
        let status = answer.status.unwrap_or_default();
        if !status.authenticated.unwrap_or(false) {
            return Ok(None);
        }
        let u = status.user.unwrap_or_default();
        Ok(Some(User {
            name: u.username.unwrap_or_default(),
            uid: u.uid.unwrap_or_default(),
            groups: u.groups.unwrap_or_default(),
            extra: u.extra.unwrap_or_default().into_iter().collect::<BTreeMap<_, _>>(),
        }))
    }
}

/// SubjectAccessReview against the API server.
struct ApiAccess(kube::Client);

#[async_trait]
impl AccessReviewer for ApiAccess {
    async fn review(&self, a: &Attributes) -> Result<(bool, String), String> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(a.user.name.clone()),
                uid: Some(a.user.uid.clone()).filter(|u| !u.is_empty()),
                groups: Some(a.user.groups.clone()),
                extra: Some(a.user.extra.clone().into_iter().collect()).filter(|e: &BTreeMap<_, _>| !e.is_empty()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(a.verb.clone()),
                    group: Some(String::new()),
                    version: Some(Attributes::API_VERSION.into()),
                    resource: Some(Attributes::RESOURCE.into()),
                    subresource: Some(a.subresource.clone()),
                    name: Some(a.name.clone()),
                    namespace: Some(String::new()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.0.clone());
        let answer =
            api.create(&PostParams::default(), &review).await.map_err(|e| format!("SubjectAccessReview: {e}"))?;
        let status = answer.status.unwrap_or_default();
        Ok((status.allowed, status.reason.unwrap_or_default()))
    }
}

/// Webhook authentication and authorization without an API server: every review fails, so a
/// token is a 401 and a request an authorization error (500).
struct NoApiServer;

#[async_trait]
impl TokenReviewer for NoApiServer {
    async fn review(&self, _: &str) -> Result<Option<User>, String> {
        Err("no API server (--kubeconfig) to review bearer tokens".into())
    }
}

#[async_trait]
impl AccessReviewer for NoApiServer {
    async fn review(&self, _: &Attributes) -> Result<(bool, String), String> {
        Err("no API server (--kubeconfig) to ask: webhook authorization cannot decide".into())
    }
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn ttl(v: &Value, path: &[&str], default: Duration) -> anyhow::Result<Duration> {
    match at(v, path).and_then(Value::as_str) {
        Some(s) => core_kubelet::config::parse_duration(s).map_err(|e| anyhow::anyhow!("{}: {e}", path.join("."))),
        None => Ok(default),
    }
}

/// The configuration as `/configz` shows it: the v1beta1 fields, without `kind` and
/// `apiVersion` (upstream serves the converted struct with an empty TypeMeta).
fn configz(cfg: &KubeletConfiguration) -> Value {
    let mut v = serde_json::to_value(cfg).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.remove("kind");
        m.remove("apiVersion");
    }
    v
}

/// Starts the kubelet API server when `enableServer` is set.
pub fn start(
    cfg: &KubeletConfiguration,
    node: &str,
    node_ips: &[String],
    client: Option<kube::Client>,
    host: Arc<dyn server::ApiHost>,
    serving_observer: Arc<dyn api::bootstrap::ServingObserver>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    // Upstream starts the read-only port on its own, whatever enableServer says.
    if cfg.read_only_port > 0 {
        let addr = listen_addr(&cfg.address, cfg.read_only_port)?;
        server::secure::serve_read_only(addr, host.clone(), shutdown.clone());
    }
    if !cfg.enable_server {
        return Ok(());
    }
    let authn_cfg = &cfg.authentication;
    let anonymous = at(authn_cfg, &["anonymous", "enabled"]).and_then(Value::as_bool).unwrap_or(false);
    let webhook = at(authn_cfg, &["webhook", "enabled"]).and_then(Value::as_bool).unwrap_or(false);
    let tokens: Option<Box<dyn TokenReviewer>> = match (&client, webhook) {
        (Some(c), true) => Some(Box::new(ApiTokens(c.clone()))),
        (None, true) => {
            tracing::error!(
                "authentication.webhook is enabled but there is no API server (--kubeconfig): bearer tokens are refused"
            );
            Some(Box::new(NoApiServer))
        }
        _ => None,
    };
    let authn =
        Authenticator::new(anonymous, tokens, ttl(authn_cfg, &["webhook", "cacheTTL"], Duration::from_secs(120))?);
    let authz_cfg = &cfg.authorization;
    let authz = match at(authz_cfg, &["mode"]).and_then(Value::as_str) {
        Some("AlwaysAllow") => Authorizer::always_allow(),
        _ => {
            let reviewer: Box<dyn AccessReviewer> = match &client {
                Some(c) => Box::new(ApiAccess(c.clone())),
                None => {
                    tracing::error!(
                        "authorization.mode is Webhook but there is no API server (--kubeconfig): every kubelet API request is refused"
                    );
                    Box::new(NoApiServer)
                }
            };
            Authorizer::webhook(
                reviewer,
                ttl(authz_cfg, &["webhook", "cacheAuthorizedTTL"], Duration::from_secs(300))?,
                ttl(authz_cfg, &["webhook", "cacheUnauthorizedTTL"], Duration::from_secs(30))?,
            )
        }
    };
    let secure = server::secure::SecureConfig {
        addr: listen_addr(&cfg.address, cfg.port)?,
        cert_file: cfg.tls_cert_file.clone(),
        key_file: cfg.tls_private_key_file.clone(),
        cert_dir: PathBuf::from(&cfg.cert_dir),
        client_ca_file: at(authn_cfg, &["x509", "clientCAFile"])
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        node_name: node.to_string(),
        enable_debugging_handlers: cfg.enable_debugging_handlers,
        system_logs: cfg.enable_system_log_handler.then(|| PathBuf::from("/var/log")),
        configz: configz(cfg),
        tls_min_version: cfg.tls_min_version.clone(),
        tls_cipher_suites: cfg.tls_cipher_suites.clone(),
    };
    let from_api = match (cfg.server_tls_bootstrap, client) {
        (true, Some(client)) => serving_from_api(client, cfg, node, node_ips, serving_observer, shutdown),
        (true, None) => {
            tracing::warn!("serverTLSBootstrap needs an API server (--kubeconfig): serving a self-signed certificate");
            None
        }
        (false, _) => None,
    };
    let cert = match from_api {
        Some(source) => source,
        None => server::secure::ServingSource::Fixed(
            server::secure::serving_cert(&secure, node)
                .map_err(|e| anyhow::anyhow!("kubelet server certificate: {e}"))?,
        ),
    };
    server::secure::serve(secure, cert, host, authn, authz, shutdown.clone())
        .map_err(|e| anyhow::anyhow!("kubelet server: {e}"))?;
    Ok(())
}

/// `serverTLSBootstrap`: the serving certificate requested from the API server for the node's
/// addresses (its IPs as InternalIP, its name as Hostname), renewed before it expires.
fn serving_from_api(
    client: kube::Client,
    cfg: &KubeletConfiguration,
    node: &str,
    node_ips: &[String],
    observer: Arc<dyn api::bootstrap::ServingObserver>,
    shutdown: &CancellationToken,
) -> Option<server::secure::ServingSource> {
    use k8s_openapi::api::core::v1::NodeAddress;
    let mut addresses: Vec<NodeAddress> =
        node_ips.iter().map(|ip| NodeAddress { type_: "InternalIP".into(), address: ip.clone() }).collect();
    addresses.push(NodeAddress { type_: "Hostname".into(), address: node.to_owned() });
    let Some(template) = api::bootstrap::Template::from_addresses(node, &addresses) else {
        tracing::warn!("serverTLSBootstrap: the node has no IP address for its serving certificate; self-signed");
        return None;
    };
    let certs = api::bootstrap::spawn_serving(
        client,
        std::path::Path::new(&cfg.cert_dir),
        template,
        Some(observer),
        shutdown.child_token(),
    );
    Some(server::secure::ServingSource::Rotating(certs))
}

/// `address:port` (IPv6 addresses without brackets as upstream's config gives them).
fn listen_addr(address: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let addr = format!("{address}:{port}");
    addr.parse()
        .or_else(|_| format!("[{address}]:{port}").parse())
        .with_context(|| format!("kubelet server address {addr}"))
}
