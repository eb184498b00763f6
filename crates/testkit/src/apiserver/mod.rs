//! An in-memory Kubernetes API server for tests, served over real HTTP or HTTPS so that kube-rs
//! and `kubectl` talk to it unchanged. It follows the real server's semantics for what a kubelet
//! uses: one global resourceVersion, optimistic concurrency, status subresources, the three
//! patch types, graceful pod deletion, finalizers, owner garbage collection, watches with
//! history, bookmarks and selectors, bearer-token / bootstrap-token / client-certificate
//! authentication, TokenRequest/TokenReview, SubjectAccessReview and CSR signing.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let server = testkit::apiserver::TestApiServer::start().await?;
//! let client = server.client().await?;
//! # Ok(()) }
//! ```

mod admission;
mod auth;
mod certs;
mod csr;
mod delete;
mod errors;
mod handler;
pub mod kubeconfig;
mod object;
mod patch;
mod proxy;
mod resources;
mod selectors;
mod serve;
mod signer;
mod state;
mod store;
mod strategy;
mod verbs;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow};
use axum::Router;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::authentication::v1::{TokenReviewSpec, TokenReviewStatus};
use k8s_openapi::api::authorization::v1::SubjectAccessReviewSpec;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub use auth::UserInfo;
pub use kubeconfig::Credentials;
pub use state::{RequestRecord, ServerOptions};

use state::{Hooks, Shared, lock};
use store::{ObjKey, Store};

/// The namespaces every cluster starts with.
const INITIAL_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// A running test API server. Dropping it shuts it down.
pub struct TestApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls: Option<serve::Tls>,
    serving: Mutex<Option<serve::Serving>>,
    signer: JoinHandle<()>,
    dir: tempfile::TempDir,
}

impl TestApiServer {
    /// Starts an HTTP server on a free loopback port.
    pub async fn start() -> Result<Self> {
        Self::start_with(ServerOptions::default()).await
    }

    /// Starts an HTTPS server (serving certificate from [`Self::ca_pem`]'s CA for 127.0.0.1
    /// and localhost; client certificates signed by that CA authenticate as CN/O).
    pub async fn start_tls() -> Result<Self> {
        Self::start_with(ServerOptions { tls: true, ..Default::default() }).await
    }

    pub async fn start_with(options: ServerOptions) -> Result<Self> {
        let listener = serve::bind(SocketAddr::from(([127, 0, 0, 1], 0))).context("binding the test API server")?;
        let addr = listener.local_addr()?;
        let ca = certs::Ca::new().map_err(|e| anyhow!("creating the CA: {e}"))?;
        let tls = if options.tls { Some(certs::tls_config(&ca).map_err(|e| anyhow!("TLS setup: {e}"))?) } else { None };
        let scheme = if options.tls { "https" } else { "http" };
        let admin_token = hex_token();
        let kubelet_client = ca
            .issue_client_cert("kube-apiserver-kubelet-client", &["system:masters"])
            .map_err(|e| anyhow!("issuing the kubelet client certificate: {e}"))?;
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(options.history_limit)),
            tokens: Mutex::new(HashMap::new()),
            hooks: Mutex::new(Hooks::default()),
            requests: Mutex::new(Vec::new()),
            admin_token,
            ca,
            kubelet_client,
            url: format!("{scheme}://{addr}"),
            options,
        });
        seed(&shared, addr.port())?;
        let serving = serve::spawn(listener, router(&shared), tls.clone());
        let signer = tokio::spawn(signer::run(shared.clone()));
        let dir = tempfile::tempdir().context("creating the kubeconfig directory")?;
        let server = Self { shared, addr, tls, serving: Mutex::new(Some(serving)), signer, dir };
        server.write_kubeconfig("admin.kubeconfig", &Credentials::Token(server.shared.admin_token.clone()))?;
        Ok(server)
    }

    /// `http://127.0.0.1:<port>` or `https://…`.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The cluster CA (PEM). Also published as the `kube-root-ca.crt` config map.
    pub fn ca_pem(&self) -> &str {
        &self.shared.ca.cert_pem
    }

    /// The static admin token (user `kubernetes-admin`, group `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.shared.admin_token
    }

    /// A kubeconfig for the admin: server URL, CA (HTTPS), admin token.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    /// Writes `<dir>/<file>` for this server with `creds` and returns its path.
    pub fn write_kubeconfig(&self, file: &str, creds: &Credentials) -> Result<PathBuf> {
        let path = self.dir.path().join(file);
        let ca = self.tls.as_ref().map(|_| self.ca_pem());
        kubeconfig::write_kubeconfig(&path, self.url(), ca, creds)?;
        Ok(path)
    }

    /// A kubeconfig whose user is the bootstrap token `token` (see
    /// [`Self::create_bootstrap_token`]).
    pub fn bootstrap_kubeconfig(&self, token: &str) -> Result<PathBuf> {
        let id = token.split('.').next().unwrap_or("token");
        self.write_kubeconfig(&format!("bootstrap-{id}.kubeconfig"), &Credentials::Token(token.to_owned()))
    }

    /// Creates a bootstrap token secret in `kube-system` (usage: authentication) and returns the
    /// token `<id>.<secret>`.
    pub fn create_bootstrap_token(&self) -> Result<String> {
        let token = new_bootstrap_token();
        let secret = bootstrap_token_secret(&token).ok_or_else(|| anyhow!("malformed bootstrap token"))?;
        self.put("secrets", secret)?;
        Ok(token)
    }

    /// A client certificate and key (PEM) signed by the CA, for user `cn` in groups `orgs`.
    pub fn issue_client_cert(&self, cn: &str, orgs: &[&str]) -> Result<(String, String)> {
        self.shared.ca.issue_client_cert(cn, orgs).map_err(|e| anyhow!("issuing a client certificate: {e}"))
    }

    /// A kube client for the admin kubeconfig.
    pub async fn client(&self) -> Result<kube::Client> {
        client_from_kubeconfig(&self.admin_kubeconfig()).await
    }

    /// Stops answering: closes the listener and drops every connection and watch. State is kept.
    pub async fn stop(&self) {
        let serving = lock(&self.serving).take();
        if let Some(s) = serving {
            s.stop().await;
        }
    }

    /// Serves again on the same port with the same state.
    pub async fn resume(&self) -> Result<()> {
        if lock(&self.serving).is_some() {
            return Ok(());
        }
        let listener = serve::bind(self.addr).with_context(|| format!("re-binding {}", self.addr))?;
        let serving = serve::spawn(listener, router(&self.shared), self.tls.clone());
        *lock(&self.serving) = Some(serving);
        Ok(())
    }

    pub fn is_serving(&self) -> bool {
        lock(&self.serving).is_some()
    }

    /// Approves a CSR through its approval conditions (as `kubectl certificate approve`); the
    /// signer then issues the certificate asynchronously.
    pub fn approve_csr(&self, name: &str) -> Result<()> {
        let res = resources::resolve("certificatesigningrequests").ok_or_else(|| anyhow!("no CSR resource"))?;
        let mut store = lock(&self.shared.store);
        let key = ObjKey::new(res.storage, "", name);
        let mut csr =
            store.get(&key).cloned().ok_or_else(|| anyhow!("certificatesigningrequest {name:?} not found"))?;
        let stamp = object::now();
        let approved = json!({"type": "Approved", "status": "True", "reason": "KubectlApprove",
                              "message": "This CSR was approved by the test API server.",
                              "lastUpdateTime": stamp, "lastTransitionTime": stamp});
        if !csr.get("status").is_some_and(Value::is_object) {
            csr["status"] = json!({});
        }
        match csr["status"].get_mut("conditions").and_then(Value::as_array_mut) {
            Some(c) if c.iter().any(|x| x["type"] == "Approved") => return Ok(()),
            Some(c) => c.push(approved),
            None => csr["status"]["conditions"] = json!([approved]),
        }
        store.put(key, csr);
        Ok(())
    }

    /// Scripts SubjectAccessReview answers (default: everything allowed except non-CSR access
    /// for bootstrap identities).
    pub fn set_subject_access_review(&self, f: impl Fn(&SubjectAccessReviewSpec) -> bool + Send + Sync + 'static) {
        lock(&self.shared.hooks).subject_access_review = Some(Arc::new(f));
    }

    /// Scripts TokenReview answers; returning `None` falls back to the server's authenticator.
    pub fn set_token_review(&self, f: impl Fn(&TokenReviewSpec) -> Option<TokenReviewStatus> + Send + Sync + 'static) {
        lock(&self.shared.hooks).token_review = Some(Arc::new(f));
    }

    /// The stored object, as the API presents it. `resource` is `pods`, `v1/pods`,
    /// `coordination.k8s.io/v1/leases` or `leases.coordination.k8s.io`.
    pub fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let res = resources::resolve(resource)?;
        let store = lock(&self.shared.store);
        store.get(&verbs::key(res, namespace, name)).map(|o| strategy::present(res, o))
    }

    /// All objects of a resource, in one namespace or (None) all.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        let Some(res) = resources::resolve(resource) else {
            return Vec::new();
        };
        let store = lock(&self.shared.store);
        store.list(res.storage, namespace).map(|o| strategy::present(res, o)).collect()
    }

    /// Creates or replaces an object directly, bypassing validation, strategies and
    /// preconditions (a test playing a controller). Returns the stored object.
    pub fn put(&self, resource: &str, obj: Value) -> Result<Value> {
        let res = resources::resolve(resource).ok_or_else(|| anyhow!("unknown resource {resource:?}"))?;
        object::ensure_object(&obj).map_err(|e| anyhow!(e))?;
        let mut store = lock(&self.shared.store);
        let key = verbs::key(res, Some(object::namespace(&obj)), object::name(&obj));
        let stored = match store.get(&key).cloned() {
            Some(old) => {
                let mut new = strategy::to_storage(res, obj);
                for f in ["uid", "creationTimestamp"] {
                    if object::meta_str(&new, f).is_none() {
                        object::set_meta(&mut new, f, old.pointer(&format!("/metadata/{f}")).cloned());
                    }
                }
                store.put(key, new)
            }
            None => verbs::insert_new(&mut store, res, strategy::to_storage(res, obj)),
        };
        Ok(strategy::present(res, &stored))
    }

    /// Removes an object at once (no grace, no finalizers, no garbage collection).
    pub fn remove(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let res = resources::resolve(resource)?;
        lock(&self.shared.store).remove(&verbs::key(res, namespace, name)).map(|o| strategy::present(res, &o))
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.store).rv()
    }

    /// Forgets the watch history (like an etcd compaction): watches from older versions get 410.
    pub fn compact_history(&self) {
        lock(&self.shared.store).compact();
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.requests).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        if let Some(s) = lock(&self.serving).take() {
            s.abort();
        }
        self.signer.abort();
    }
}

fn router(shared: &Arc<Shared>) -> Router {
    Router::new().fallback(handler::handle).with_state(shared.clone())
}

/// A kube client for a kubeconfig file.
pub async fn client_from_kubeconfig(path: &std::path::Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading {}", path.display()))?;
    kube::Client::try_from(config).context("building the kube client")
}

fn hex_token() -> String {
    object::random_bytes::<24>().iter().map(|b| format!("{b:02x}")).collect()
}

/// A random `<6>.<16>` bootstrap token.
pub fn new_bootstrap_token() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let bytes = object::random_bytes::<22>();
    let s: String = bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
    format!("{}.{}", &s[..6], &s[6..])
}

/// The `kube-system/bootstrap-token-<id>` secret that makes `token` valid for authentication
/// (group `system:bootstrappers:kubeadm:default-node-token`, like kubeadm's tokens).
pub fn bootstrap_token_secret(token: &str) -> Option<Value> {
    let (id, secret) = token.split_once('.')?;
    let enc = |s: &str| STANDARD.encode(s);
    Some(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "data": {
            "token-id": enc(id),
            "token-secret": enc(secret),
            "usage-bootstrap-authentication": enc("true"),
            "usage-bootstrap-signing": enc("true"),
            "auth-extra-groups": enc("system:bootstrappers:kubeadm:default-node-token"),
        },
    }))
}

/// The objects a fresh cluster has: the four namespaces (with their default service account and
/// root CA config map) and the `kubernetes` service.
fn seed(shared: &Shared, port: u16) -> Result<()> {
    let ns_res = resources::resolve("namespaces").ok_or_else(|| anyhow!("no namespaces resource"))?;
    let admin = UserInfo::admin();
    for ns in INITIAL_NAMESPACES {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        verbs::create(shared, ns_res, None, &obj, &admin, false)
            .map_err(|e| anyhow!("seeding namespace {ns}: {}", e.message))?;
    }
    let svc_res = resources::resolve("services").ok_or_else(|| anyhow!("no services resource"))?;
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
    });
    verbs::create(shared, svc_res, Some("default"), &svc, &admin, false)
        .map_err(|e| anyhow!("seeding the kubernetes service: {}", e.message))?;
    Ok(())
}
