//! `TestCluster`: how every API-facing test gets a cluster. With `RKUBELET_TEST_KUBECONFIG` set it
//! uses that real cluster (its own fresh namespace and node name, removed on `cleanup` and, best
//! effort, on drop); otherwise it starts the in-memory [`TestApiServer`]. Tests that use only
//! `client` and `kubeconfig` run unchanged against both.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition};
use k8s_openapi::api::core::v1::{Namespace, Node, Secret, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

use crate::apiserver::kubeconfig::{Credentials, derive_kubeconfig};
use crate::apiserver::{
    ServerOptions, TestApiServer, bootstrap_token_secret, client_from_kubeconfig, new_bootstrap_token,
};

/// Set to a kubeconfig path to run API tests against a real cluster.
pub const KUBECONFIG_ENV: &str = "RKUBELET_TEST_KUBECONFIG";

pub struct TestCluster {
    /// Admin client.
    pub client: kube::Client,
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// A namespace created for this test.
    pub namespace: String,
    /// A node name unique to this test.
    pub node_name: String,
    /// The in-memory server; None on a real cluster.
    pub server: Option<TestApiServer>,
    dir: tempfile::TempDir,
    bootstrap_secrets: Mutex<Vec<String>>,
    cleaned: bool,
}

fn suffix() -> String {
    crate::apiserver::new_bootstrap_token().chars().filter(char::is_ascii_alphanumeric).take(8).collect()
}

impl TestCluster {
    /// An HTTP in-memory server, or the real cluster.
    pub async fn start() -> Result<Self> {
        Self::start_with(ServerOptions::default()).await
    }

    /// An HTTPS in-memory server (needed for client certificates), or the real cluster.
    pub async fn start_tls() -> Result<Self> {
        Self::start_with(ServerOptions { tls: true, ..Default::default() }).await
    }

    /// `options` apply to the in-memory server only.
    pub async fn start_with(options: ServerOptions) -> Result<Self> {
        let id = suffix();
        let (server, kubeconfig) = match std::env::var_os(KUBECONFIG_ENV) {
            Some(path) => (None, PathBuf::from(path)),
            None => {
                let server = TestApiServer::start_with(options).await?;
                let kc = server.admin_kubeconfig();
                (Some(server), kc)
            }
        };
        let client = client_from_kubeconfig(&kubeconfig).await?;
        let namespace = format!("rkubelet-test-{id}");
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}}))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {namespace}"))?;
        // Pods need the namespace's default service account, which a real cluster's controller
        // creates a moment after the namespace.
        let sas = Api::<ServiceAccount>::namespaced(client.clone(), &namespace);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while sas.get_opt("default").await?.is_none() {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "no default service account in {namespace}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            client,
            kubeconfig,
            namespace,
            node_name: format!("rkubelet-test-node-{id}"),
            server,
            dir: tempfile::tempdir()?,
            bootstrap_secrets: Mutex::new(Vec::new()),
            cleaned: false,
        })
    }

    pub fn is_real(&self) -> bool {
        self.server.is_none()
    }

    /// A kubeconfig for the same cluster with other credentials.
    pub fn kubeconfig_for(&self, file: &str, creds: &Credentials) -> Result<PathBuf> {
        let dest = self.dir.path().join(file);
        derive_kubeconfig(&self.kubeconfig, &dest, creds)?;
        Ok(dest)
    }

    /// The cluster's CA (from the admin kubeconfig) written to a file, for a kubelet's
    /// `authentication.x509.clientCAFile`: the CA that signs the API server's kubelet-client
    /// certificate (the in-memory server's one CA; kubeadm's cluster CA).
    pub fn client_ca_file(&self) -> Result<PathBuf> {
        let text = std::fs::read_to_string(&self.kubeconfig).context("reading the admin kubeconfig")?;
        let doc: serde_json::Value = serde_yaml::from_str(&text).context("parsing the admin kubeconfig")?;
        let cluster = &doc["clusters"][0]["cluster"];
        let pem = match (cluster["certificate-authority-data"].as_str(), cluster["certificate-authority"].as_str()) {
            (Some(data), _) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(data).context("decoding certificate-authority-data")?
            }
            (None, Some(file)) => {
                let base = self.kubeconfig.parent().unwrap_or(Path::new("."));
                std::fs::read(base.join(file)).with_context(|| format!("reading {file}"))?
            }
            (None, None) => anyhow::bail!("the admin kubeconfig names no certificate authority (a plain-HTTP server?)"),
        };
        let dest = self.dir.path().join("cluster-ca.crt");
        std::fs::write(&dest, pem).context("writing the cluster CA")?;
        Ok(dest)
    }

    /// Creates a bootstrap token (a `kube-system` secret, valid for a day) through the API.
    pub async fn create_bootstrap_token(&self) -> Result<String> {
        let token = new_bootstrap_token();
        let mut value = bootstrap_token_secret(&token).context("malformed bootstrap token")?;
        let expires = chrono::Utc::now() + chrono::Duration::days(1);
        value["stringData"] = json!({"expiration": expires.format("%Y-%m-%dT%H:%M:%SZ").to_string()});
        let secret: Secret = serde_json::from_value(value)?;
        let name = secret.metadata.name.clone().unwrap_or_default();
        Api::<Secret>::namespaced(self.client.clone(), "kube-system").create(&PostParams::default(), &secret).await?;
        self.bootstrap_secrets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(name);
        Ok(token)
    }

    /// A kubeconfig whose user is a bootstrap token.
    pub fn bootstrap_kubeconfig(&self, token: &str) -> Result<PathBuf> {
        let id = token.split('.').next().unwrap_or("token");
        self.kubeconfig_for(&format!("bootstrap-{id}.kubeconfig"), &Credentials::Token(token.to_owned()))
    }

    /// Approves a CSR through its `approval` subresource, as `kubectl certificate approve`.
    pub async fn approve_csr(&self, name: &str) -> Result<()> {
        let api = Api::<CertificateSigningRequest>::all(self.client.clone());
        let mut csr = api.get(name).await.with_context(|| format!("getting CSR {name}"))?;
        let status = csr.status.get_or_insert_with(Default::default);
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        if !conditions.iter().any(|c| c.type_ == "Approved") {
            conditions.push(CertificateSigningRequestCondition {
                type_: "Approved".to_owned(),
                status: "True".to_owned(),
                reason: Some("KubectlApprove".to_owned()),
                message: Some("This CSR was approved by the rkubelet tests.".to_owned()),
                ..Default::default()
            });
        }
        api.replace_subresource("approval", name, &PostParams::default(), &csr)
            .await
            .with_context(|| format!("approving CSR {name}"))?;
        Ok(())
    }

    /// Deletes the test's namespace, node and bootstrap tokens (missing ones are fine).
    pub async fn cleanup(mut self) -> Result<()> {
        self.cleaned = true;
        let secrets =
            std::mem::take(&mut *self.bootstrap_secrets.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        remove_everything(&self.client, &self.namespace, &self.node_name, &secrets).await
    }
}

async fn remove_everything(client: &kube::Client, namespace: &str, node: &str, secrets: &[String]) -> Result<()> {
    let gone = |r: Result<(), kube::Error>| match r {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other,
    };
    let dp = DeleteParams::default();
    gone(Api::<Namespace>::all(client.clone()).delete(namespace, &dp).await.map(|_| ()))?;
    gone(Api::<Node>::all(client.clone()).delete(node, &dp).await.map(|_| ()))?;
    for s in secrets {
        gone(Api::<Secret>::namespaced(client.clone(), "kube-system").delete(s, &dp).await.map(|_| ()))?;
    }
    Ok(())
}

/// Best-effort cleanup from `Drop` on a runtime of its own (the test's may be shutting down).
fn cleanup_in_thread(kubeconfig: &Path, namespace: String, node: String, secrets: Vec<String>) {
    let kubeconfig = kubeconfig.to_path_buf();
    let worker = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        rt.block_on(async {
            let work = async {
                let client = client_from_kubeconfig(&kubeconfig).await?;
                remove_everything(&client, &namespace, &node, &secrets).await
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), work).await;
        });
    });
    let _ = worker.join();
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.cleaned || !self.is_real() {
            return;
        }
        let secrets =
            std::mem::take(&mut *self.bootstrap_secrets.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        cleanup_in_thread(&self.kubeconfig, self.namespace.clone(), self.node_name.clone(), secrets);
    }
}
