//! TLS bootstrap of the kubelet's client certificate (upstream
//! `pkg/kubelet/certificate/bootstrap`): when `--kubeconfig` holds no valid client certificate,
//! request one with the `--bootstrap-kubeconfig` credentials through a
//! CertificateSigningRequest, store it in `--cert-dir` and write `--kubeconfig` pointing at it.
//! Rotation of that certificate is in [`rotation`].

mod csr;
mod rotation;
mod serving;
mod store;
#[cfg(test)]
mod testing;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine;
use kube::config::{AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext};

pub use csr::{CLIENT_USAGES, CsrApi, KUBELET_CLIENT_SIGNER, KubeCsrApi, NODES_GROUP, Outcome, digested_name};
pub use rotation::{CERTIFICATE_WAIT_TIMEOUT, CurrentCert, read_current_cert, rotation_deadline, spawn_rotation};
pub use serving::{KUBELET_SERVING_SIGNER, SERVING_USAGES, ServingCert, ServingObserver, Template, spawn_serving};
pub use store::{CertInfo, CertStore, TMP_KEY_FILE};

use crate::client::{self, ClientError, ClientOptions};

/// How long the bootstrap waits for its CSR to be approved and issued (upstream: 1 h).
pub const BOOTSTRAP_WAIT_TIMEOUT: Duration = Duration::from_secs(3600);

/// Why a bootstrap or rotation step failed. [`Denied`](Self::Denied),
/// [`Failed`](Self::Failed) and [`Incompatible`](Self::Incompatible) need a person;
/// [`Api`](Self::Api), [`Timeout`](Self::Timeout) and [`Deleted`](Self::Deleted) may pass.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading kubeconfig {path}: {source}")]
    ReadKubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig { path: PathBuf, reason: String },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{reason}")]
    Key { reason: String },
    #[error("certificate {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("certificate signing request {csr}: {source}")]
    Api {
        csr: String,
        #[source]
        source: kube::Error,
    },
    #[error("certificate signing request {csr} already exists and cannot be reused: {reason}")]
    Incompatible { csr: String, reason: String },
    #[error("certificate signing request {csr} is denied, reason: {reason}, message: {message}")]
    Denied { csr: String, reason: String, message: String },
    #[error("certificate signing request {csr} failed, reason: {reason}, message: {message}")]
    Failed { csr: String, reason: String, message: String },
    #[error("certificate signing request {csr} was deleted or replaced before a certificate was issued")]
    Deleted { csr: String },
    #[error("timed out after {after:?} waiting for certificate signing request {csr} to be approved and issued")]
    Timeout { csr: String, after: Duration },
    #[error("{path} should be a symlink but is a regular file; move it away")]
    NotASymlink { path: PathBuf },
    #[error(
        "client certificate rotation needs --kubeconfig {kubeconfig} to use {pem} as client-certificate and client-key"
    )]
    RotationNeedsCertStore { kubeconfig: PathBuf, pem: PathBuf },
}

pub type Result<T, E = BootstrapError> = std::result::Result<T, E>;

/// Upstream's `LoadClientCert`. With no `bootstrap` kubeconfig, does nothing. Otherwise, if
/// `kubeconfig` exists and its client certificate has not expired, uses it; if not, requests a
/// client certificate for `node_name` with the bootstrap credentials (reusing the key of the
/// current pair or of `<cert_dir>/kubelet-client.key.tmp`, else a new ECDSA P-256 key), waits up
/// to an hour for it, stores it in `cert_dir` and writes `kubeconfig` with the bootstrap
/// kubeconfig's server and CA and `<cert_dir>/kubelet-client-current.pem` as credentials.
pub async fn load_client_cert(
    kubeconfig: &Path,
    bootstrap: Option<&Path>,
    cert_dir: &Path,
    node_name: &str,
) -> Result<()> {
    let Some(bootstrap) = bootstrap else { return Ok(()) };
    if kubeconfig_is_valid(kubeconfig, SystemTime::now())? {
        tracing::info!(kubeconfig = %kubeconfig.display(), "kubeconfig exists and is valid, skipping bootstrap");
        return Ok(());
    }
    tracing::info!(
        bootstrap = %bootstrap.display(),
        "using the bootstrap kubeconfig to request a client certificate, key and kubeconfig"
    );
    let boot = read_kubeconfig(bootstrap)?;
    let client = client::from_kubeconfig(bootstrap, ClientOptions::default()).await?;
    let api = KubeCsrApi::new(client);
    bootstrap_with(api.as_ref(), &boot, bootstrap, kubeconfig, cert_dir, node_name, SystemTime::now).await
}

/// Upstream's `LoadClientConfig` with `rotateCertificates`: the bootstrap happens in the
/// background while the kubelet runs. With no `bootstrap` kubeconfig, or a `kubeconfig` whose
/// client certificate is still valid, there is nothing to do (`None`). Otherwise `kubeconfig` is
/// written now with the bootstrap kubeconfig's server and CA and
/// `<cert_dir>/kubelet-client-current.pem` as credentials (not there yet), and the returned
/// [`PendingBootstrap`] obtains that certificate when run.
pub fn prepare_background(
    kubeconfig: &Path,
    bootstrap: Option<&Path>,
    cert_dir: &Path,
    node_name: &str,
) -> Result<Option<PendingBootstrap>> {
    let Some(bootstrap) = bootstrap else { return Ok(None) };
    if kubeconfig_is_valid(kubeconfig, SystemTime::now())? {
        tracing::info!(kubeconfig = %kubeconfig.display(), "kubeconfig exists and is valid, skipping bootstrap");
        return Ok(None);
    }
    let boot = read_kubeconfig(bootstrap)?;
    let store = CertStore::new(cert_dir);
    write_kubeconfig(&boot, bootstrap, kubeconfig, &store.current_path())?;
    tracing::info!(
        bootstrap = %bootstrap.display(),
        "client rotation is on: requesting a client certificate in the background"
    );
    Ok(Some(PendingBootstrap {
        boot,
        boot_path: bootstrap.to_owned(),
        kubeconfig: kubeconfig.to_owned(),
        cert_dir: cert_dir.to_owned(),
        node_name: node_name.to_owned(),
    }))
}

/// A TLS bootstrap to run in the background (see [`prepare_background`]).
#[derive(Debug)]
pub struct PendingBootstrap {
    boot: Kubeconfig,
    boot_path: PathBuf,
    kubeconfig: PathBuf,
    cert_dir: PathBuf,
    node_name: String,
}

impl PendingBootstrap {
    /// The bootstrap kubeconfig (its server and CA serve the kubelet until the certificate is
    /// there).
    pub fn bootstrap_kubeconfig(&self) -> &Path {
        &self.boot_path
    }

    /// Requests the certificate until it is issued and stored, retrying failed attempts
    /// (unreachable server, denied, timed out) with a backoff of 2 s doubling up to 2 min;
    /// upstream's certificate manager retries the same way while the kubelet keeps running.
    pub async fn run(self) {
        let mut delay = Duration::from_secs(2);
        loop {
            match self.attempt().await {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(
                        bootstrap = %self.boot_path.display(),
                        "TLS bootstrap failed, retrying in {delay:?}: {e}"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(120));
                }
            }
        }
    }

    async fn attempt(&self) -> Result<()> {
        let client = client::from_kubeconfig(&self.boot_path, ClientOptions::default()).await?;
        let api = KubeCsrApi::new(client);
        bootstrap_with(
            api.as_ref(),
            &self.boot,
            &self.boot_path,
            &self.kubeconfig,
            &self.cert_dir,
            &self.node_name,
            SystemTime::now,
        )
        .await
    }
}

async fn bootstrap_with(
    api: &dyn CsrApi,
    boot: &Kubeconfig,
    boot_path: &Path,
    kubeconfig: &Path,
    cert_dir: &Path,
    node_name: &str,
    now: fn() -> SystemTime,
) -> Result<()> {
    let store = CertStore::new(cert_dir);
    let key = reuse_or_generate_key(&store)?;
    let request = csr::node_csr_pem(&key, node_name)?;
    let name = {
        use rcgen::PublicKeyData;
        let cn = csr::node_common_name(node_name);
        digested_name(&key.subject_public_key_info(), &cn, &[NODES_GROUP], &CLIENT_USAGES)
    };
    let object = csr::csr_object(Some(name), &request);
    let (name, uid) = create_when_reachable(api, &object, &key).await?;
    let cert = csr::wait_for_certificate(api, &name, uid.as_deref(), BOOTSTRAP_WAIT_TIMEOUT).await?;
    let cert = issued_pem(cert, &name)?;
    let leaf = store::parse_certs(cert.as_bytes(), Path::new(&name))?.swap_remove(0);
    if leaf.not_after <= now() {
        return Err(BootstrapError::Certificate {
            path: PathBuf::from(&name),
            reason: "the issued certificate has already expired".to_owned(),
        });
    }
    let pair = store.update(&cert, &key.serialize_pem(), now())?;
    tracing::info!(path = %pair.display(), "stored the new client certificate");
    let tmp = store.tmp_key_path();
    if let Err(e) = std::fs::remove_file(&tmp)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %tmp.display(), "failed to clean up the private key file: {e}");
    }
    write_kubeconfig(boot, boot_path, kubeconfig, &store.current_path())
}

/// Creates the CSR, retrying for up to a minute while the API server cannot be reached
/// (upstream waits for `/healthz` as long before its single attempt).
async fn create_when_reachable(
    api: &dyn CsrApi,
    object: &k8s_openapi::api::certificates::v1::CertificateSigningRequest,
    key: &rcgen::KeyPair,
) -> Result<(String, Option<String>)> {
    const ATTEMPTS: u32 = 30;
    let mut attempt = 1;
    loop {
        match csr::request_certificate(api, object, key).await {
            Err(BootstrapError::Api { source, csr })
                if !matches!(source, kube::Error::Api(_)) && attempt < ATTEMPTS =>
            {
                tracing::warn!(csr = %csr, "failed to connect to the API server (attempt {attempt}): {source}");
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            other => return other,
        }
    }
}

/// The issued certificate as text.
fn issued_pem(cert: Vec<u8>, csr: &str) -> Result<String> {
    String::from_utf8(cert).map_err(|_| BootstrapError::Certificate {
        path: PathBuf::from(csr),
        reason: "the issued certificate is not PEM text".to_owned(),
    })
}

/// The key to request a certificate for: the current pair's (upstream reuses it even if the
/// certificate expired), else the pending one in `kubelet-client.key.tmp`, else a new one
/// saved there first so a restart asks for the same CSR.
fn reuse_or_generate_key(store: &CertStore) -> Result<rcgen::KeyPair> {
    if let Some(key) = store.read_current()?.and_then(|pem| csr::parse_private_key(pem.as_bytes())) {
        return Ok(key);
    }
    let tmp = store.tmp_key_path();
    match std::fs::read(&tmp) {
        Ok(pem) => {
            if let Some(key) = csr::parse_private_key(&pem) {
                tracing::info!(path = %tmp.display(), "reusing the pending private key");
                return Ok(key);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(BootstrapError::Io { path: tmp, source }),
    }
    let dir = tmp.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| BootstrapError::Io { path: dir.to_owned(), source })?;
    let key = csr::generate_key()?;
    store::write_private(&tmp, key.serialize_pem().as_bytes())?;
    Ok(key)
}

fn read_kubeconfig(path: &Path) -> Result<Kubeconfig> {
    Kubeconfig::read_from(path).map_err(|source| BootstrapError::ReadKubeconfig { path: path.to_owned(), source })
}

fn current_context(kc: &Kubeconfig) -> Option<&Context> {
    let name = kc.current_context.as_deref()?;
    kc.contexts.iter().find(|c| c.name == name)?.context.as_ref()
}

fn current_user(kc: &Kubeconfig) -> Option<&AuthInfo> {
    let user = current_context(kc)?.user.as_deref()?;
    kc.auth_infos.iter().find(|u| u.name == user)?.auth_info.as_ref()
}

fn current_cluster(kc: &Kubeconfig) -> Option<&Cluster> {
    let cluster = &current_context(kc)?.cluster;
    kc.clusters.iter().find(|c| &c.name == cluster)?.cluster.as_ref()
}

/// Upstream's `isClientConfigStillValid`: `path` exists, loads, and its current user has client
/// certificates none of which has expired at `now`. A missing file is `false`; a kubeconfig
/// that cannot be used is logged and `false` (bootstrap replaces it); only an unreadable path
/// is an error.
pub fn kubeconfig_is_valid(path: &Path, now: SystemTime) -> Result<bool> {
    match std::fs::metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(BootstrapError::Io { path: path.to_owned(), source }),
    }
    let invalid = |reason: String| {
        tracing::warn!(kubeconfig = %path.display(), "existing kubeconfig cannot be used: {reason}");
        Ok(false)
    };
    let kc = match read_kubeconfig(path) {
        Ok(kc) => kc,
        Err(e) => return invalid(e.to_string()),
    };
    let Some(user) = current_user(&kc) else { return invalid("no user in the current context".to_owned()) };
    let data = if let Some(b64) = &user.client_certificate_data {
        match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
            Ok(d) => d,
            Err(e) => return invalid(format!("client-certificate-data: {e}")),
        }
    } else if let Some(file) = &user.client_certificate {
        match std::fs::read(file) {
            Ok(d) => d,
            Err(e) => return invalid(format!("client-certificate {file}: {e}")),
        }
    } else {
        return invalid("no client certificate".to_owned());
    };
    match store::parse_certs(&data, path) {
        Ok(certs) => match certs.iter().find(|c| c.not_after < now) {
            Some(c) => invalid(format!(
                "part of the client certificate expired at {}",
                chrono::DateTime::<chrono::Utc>::from(c.not_after)
            )),
            None => Ok(true),
        },
        Err(e) => invalid(e.to_string()),
    }
}

/// Upstream's `writeKubeconfigFromBootstrapping`: the bootstrap kubeconfig's server, TLS
/// verification and CA (file, or data when there is no file), with `pem` as client certificate
/// and key. Written owner-only and atomically.
fn write_kubeconfig(boot: &Kubeconfig, boot_path: &Path, out: &Path, pem: &Path) -> Result<()> {
    let cluster = current_cluster(boot).ok_or_else(|| BootstrapError::Kubeconfig {
        path: boot_path.to_owned(),
        reason: "no cluster in the current context".to_owned(),
    })?;
    let pem = pem.to_string_lossy().into_owned();
    let kc = Kubeconfig {
        clusters: vec![NamedCluster {
            name: "default-cluster".to_owned(),
            cluster: Some(Cluster {
                server: cluster.server.clone(),
                insecure_skip_tls_verify: cluster.insecure_skip_tls_verify,
                certificate_authority: cluster.certificate_authority.clone(),
                certificate_authority_data: cluster
                    .certificate_authority
                    .is_none()
                    .then(|| cluster.certificate_authority_data.clone())
                    .flatten(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: "default-auth".to_owned(),
            auth_info: Some(AuthInfo {
                client_certificate: Some(pem.clone()),
                client_key: Some(pem),
                ..Default::default()
            }),
            ..Default::default()
        }],
        contexts: vec![NamedContext {
            name: "default-context".to_owned(),
            context: Some(Context {
                cluster: "default-cluster".to_owned(),
                user: Some("default-auth".to_owned()),
                namespace: Some("default".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        current_context: Some("default-context".to_owned()),
        api_version: Some("v1".to_owned()),
        kind: Some("Config".to_owned()),
        ..Default::default()
    };
    let text = serde_yaml::to_string(&kc)
        .map_err(|e| BootstrapError::Kubeconfig { path: out.to_owned(), reason: format!("serializing: {e}") })?;
    store::replace_private(out, text.as_bytes())?;
    tracing::info!(kubeconfig = %out.display(), "wrote the kubeconfig for the new client certificate");
    Ok(())
}

#[cfg(test)]
mod tests;
