//! Client certificate rotation (`rotateCertificates`), as client-go's `certificate.Manager` does
//! it for the kubelet: at a jittered 70–90% of the current certificate's lifetime, request a new
//! one for a fresh key with the current certificate as the identity, store it, and tell the
//! client's owner through a `watch` channel so it can rebuild its client.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::csr::{self, CsrApi, KubeCsrApi};
use super::store::{CertStore, parse_certs};
use super::{BootstrapError, Result, current_user, read_kubeconfig};
use crate::client::{self, ClientOptions};

/// How long one rotation waits for its CSR to be approved and issued (client-go's
/// `certificateWaitTimeout`).
pub const CERTIFICATE_WAIT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The client certificate in use: what the current pair symlink points at, and its validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentCert {
    /// `<cert-dir>/kubelet-client-current.pem` (certificate and key).
    pub path: PathBuf,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// Upstream's `nextRotationDeadline`: `not_before + lifetime × (0.7 + 0.2 × jitter)`, with
/// `jitter` uniform in [0, 1), so nodes created together do not all rotate together.
pub fn rotation_deadline(not_before: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    not_before + lifetime.mul_f64(0.7 + 0.2 * jitter.clamp(0.0, 1.0))
}

/// Wait before retry number `failures` (≥ 1): 2 s, 4 s, 8 s, 16 s, then every 32 s, as the
/// manager's exponential backoff followed by its 32 s poll.
pub(super) fn retry_delay(failures: u32) -> Duration {
    Duration::from_secs(2u64 << failures.saturating_sub(1).min(4))
}

/// A uniform number in [0, 1).
pub(super) fn random_jitter() -> f64 {
    let mut b = [0u8; 8];
    match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b) {
        Ok(()) => (u64::from_be_bytes(b) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

/// An API client authenticated as the current certificate, made anew for every attempt.
#[async_trait::async_trait]
pub trait CsrApiSource: Send + Sync {
    async fn csr_api(&self) -> Result<Arc<dyn CsrApi>>;
}

/// Builds the client from `--kubeconfig`, which points at the current pair.
struct FromKubeconfig(PathBuf);

#[async_trait::async_trait]
impl CsrApiSource for FromKubeconfig {
    async fn csr_api(&self) -> Result<Arc<dyn CsrApi>> {
        let client = client::from_kubeconfig(&self.0, ClientOptions::default()).await?;
        Ok(KubeCsrApi::new(client))
    }
}

/// The current pair of `store`, or an error when there is none.
pub fn read_current_cert(store: &CertStore) -> Result<CurrentCert> {
    let path = store.current_path();
    let pem = store.read_current()?.ok_or_else(|| BootstrapError::Certificate {
        path: path.clone(),
        reason: "no client certificate yet".to_owned(),
    })?;
    let leaf = parse_certs(pem.as_bytes(), &path)?.swap_remove(0);
    Ok(CurrentCert { path, not_before: leaf.not_before, not_after: leaf.not_after })
}

/// Starts rotating the client certificate of `kubeconfig`, which must use
/// `<cert_dir>/kubelet-client-current.pem` as client certificate and key (what TLS bootstrap
/// and kubeadm write). Returns the current certificate now and every new one after a rotation;
/// the receiver's owner rebuilds its API clients from `kubeconfig` on each change. Runs until
/// `shutdown`. Must be called inside a Tokio runtime.
pub fn spawn_rotation(
    kubeconfig: &Path,
    cert_dir: &Path,
    node_name: &str,
    shutdown: CancellationToken,
) -> Result<watch::Receiver<CurrentCert>> {
    let store = CertStore::new(cert_dir);
    ensure_uses_store(kubeconfig, &store)?;
    let current = read_current_cert(&store)?;
    let (tx, rx) = watch::channel(current.clone());
    let rotation = Rotation {
        store,
        node_name: node_name.to_owned(),
        source: Arc::new(FromKubeconfig(kubeconfig.to_owned())),
        now: Arc::new(SystemTime::now),
        jitter: random_jitter,
        tx,
    };
    tokio::spawn(rotation.run(current, shutdown).instrument(tracing::info_span!("client_certificate_rotation")));
    Ok(rx)
}

fn ensure_uses_store(kubeconfig: &Path, store: &CertStore) -> Result<()> {
    let kc = read_kubeconfig(kubeconfig)?;
    let pem = store.current_path();
    let uses = |p: &Option<String>| p.as_deref().is_some_and(|p| Path::new(p) == pem);
    match current_user(&kc) {
        Some(user) if uses(&user.client_certificate) && uses(&user.client_key) => Ok(()),
        _ => Err(BootstrapError::RotationNeedsCertStore { kubeconfig: kubeconfig.to_owned(), pem }),
    }
}

/// Where the rotation loop stands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Sleeping until the current certificate's rotation deadline.
    Waiting { deadline: SystemTime },
    /// Requesting a new certificate; `failures` attempts failed before.
    Rotating { failures: u32 },
    /// Waiting before the next attempt.
    Backoff { failures: u32 },
}

pub(super) struct Rotation {
    pub(super) store: CertStore,
    pub(super) node_name: String,
    pub(super) source: Arc<dyn CsrApiSource>,
    /// Wall clock (certificate validity is wall time; sleeping uses Tokio's clock).
    pub(super) now: Arc<dyn Fn() -> SystemTime + Send + Sync>,
    pub(super) jitter: fn() -> f64,
    pub(super) tx: watch::Sender<CurrentCert>,
}

impl Rotation {
    pub(super) async fn run(self, current: CurrentCert, shutdown: CancellationToken) {
        let mut state = State::Waiting { deadline: self.deadline(&current) };
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                next = self.step(state) => state = next,
            }
        }
    }

    fn deadline(&self, cert: &CurrentCert) -> SystemTime {
        let deadline = rotation_deadline(cert.not_before, cert.not_after, (self.jitter)());
        tracing::info!(
            expiration = %chrono::DateTime::<chrono::Utc>::from(cert.not_after),
            deadline = %chrono::DateTime::<chrono::Utc>::from(deadline),
            "client certificate rotation deadline"
        );
        deadline
    }

    async fn step(&self, state: State) -> State {
        match state {
            State::Waiting { deadline } => {
                let wait = deadline.duration_since((self.now)()).unwrap_or_default();
                tracing::debug!("waiting {wait:?} for the next client certificate rotation");
                tokio::time::sleep(wait).await;
                State::Rotating { failures: 0 }
            }
            State::Rotating { failures } => match self.rotate().await {
                Ok(cert) => {
                    tracing::info!(path = %cert.path.display(), "rotated the client certificate");
                    let deadline = self.deadline(&cert);
                    self.tx.send_replace(cert);
                    State::Waiting { deadline }
                }
                Err(e) => {
                    tracing::error!("client certificate rotation failed (attempt {}): {e}", failures + 1);
                    State::Backoff { failures: failures + 1 }
                }
            },
            State::Backoff { failures } => {
                tokio::time::sleep(retry_delay(failures)).await;
                State::Rotating { failures }
            }
        }
    }

    async fn rotate(&self) -> Result<CurrentCert> {
        let api = self.source.csr_api().await?;
        let key = csr::generate_key()?;
        let request = csr::node_csr_pem(&key, &self.node_name)?;
        let object = csr::csr_object(None, &request);
        let (name, uid) = csr::request_certificate(api.as_ref(), &object, &key).await?;
        let cert = csr::wait_for_certificate(api.as_ref(), &name, uid.as_deref(), CERTIFICATE_WAIT_TIMEOUT).await?;
        let cert = super::issued_pem(cert, &name)?;
        let leaf = parse_certs(cert.as_bytes(), Path::new(&name))?.swap_remove(0);
        self.store.update(&cert, &key.serialize_pem(), (self.now)())?;
        Ok(CurrentCert { path: self.store.current_path(), not_before: leaf.not_before, not_after: leaf.not_after })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::bootstrap::testing::{FakeCsrApi, TestCa, new_key, paused_clock};

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn deadline_is_70_to_90_percent_of_the_lifetime() {
        let nb = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let na = nb + 100 * HOUR;
        assert_eq!(rotation_deadline(nb, na, 0.0), nb + 70 * HOUR);
        assert_eq!(rotation_deadline(nb, na, 0.5), nb + 80 * HOUR);
        assert_eq!(rotation_deadline(nb, na, 1.0), nb + 90 * HOUR);
        assert_eq!(rotation_deadline(nb, na, 7.0), nb + 90 * HOUR, "clamped");
        assert_eq!(rotation_deadline(na, nb, 0.5), na, "a backwards certificate rotates at once");
        for _ in 0..100 {
            let j = random_jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }

    #[test]
    fn retry_delays_double_then_stay_at_32s() {
        let secs: Vec<u64> = (1..=7).map(|f| retry_delay(f).as_secs()).collect();
        assert_eq!(secs, [2, 4, 8, 16, 32, 32, 32]);
    }

    struct Fixed(Arc<FakeCsrApi>);
    #[async_trait::async_trait]
    impl CsrApiSource for Fixed {
        async fn csr_api(&self) -> Result<Arc<dyn CsrApi>> {
            Ok(self.0.clone())
        }
    }

    /// A store holding a 100 h certificate that started at the (paused) clock's start.
    fn setup(dir: &Path, ca: &TestCa, now: SystemTime) -> (CertStore, CurrentCert) {
        let store = CertStore::new(dir);
        let key = new_key();
        let cert = ca.issue_at(&key, "system:node:n1", now, now + 100 * HOUR);
        store.update(&cert, &key.serialize_pem(), now).unwrap();
        let current = read_current_cert(&store).unwrap();
        (store, current)
    }

    #[tokio::test(start_paused = true)]
    async fn rotates_at_the_deadline_and_announces_the_new_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (clock, now) = paused_clock();
        let ca = TestCa::new();
        let (store, current) = setup(dir.path(), &ca, clock());
        let before = std::fs::read_link(store.current_path()).unwrap();
        let api = Arc::new(FakeCsrApi::new(ca, clock.clone()));
        api.fail_next_creates(2);
        let (tx, mut rx) = watch::channel(current.clone());
        let rotation = Rotation {
            store: store.clone(),
            node_name: "n1".into(),
            source: Arc::new(Fixed(api.clone())),
            now: clock.clone(),
            jitter: || 0.5,
            tx,
        };
        let shutdown = CancellationToken::new();
        let start = tokio::time::Instant::now();
        let task = tokio::spawn(rotation.run(current.clone(), shutdown.clone()));

        rx.changed().await.unwrap();
        let elapsed = start.elapsed();
        // 80 h (50% jitter), then two failed attempts: 2 s and 4 s of backoff.
        assert!(elapsed >= 80 * HOUR + Duration::from_secs(6), "{elapsed:?}");
        assert!(elapsed < 80 * HOUR + Duration::from_secs(7), "{elapsed:?}");
        let new = rx.borrow().clone();
        assert_eq!(new.path, store.current_path());
        assert_eq!(new.not_after, now + 80 * HOUR + Duration::from_secs(6) + 100 * HOUR);
        assert_ne!(std::fs::read_link(store.current_path()).unwrap(), before, "the symlink was swapped");

        let created = api.created();
        assert_eq!(created.len(), 1);
        assert_eq!(created[0].metadata.generate_name.as_deref(), Some("csr-"));
        assert_eq!(created[0].spec.signer_name, csr::KUBELET_CLIENT_SIGNER);
        let old_key = csr::parse_private_key(std::fs::read(dir.path().join(&before)).unwrap().as_slice()).unwrap();
        let new_key = csr::parse_private_key(store.read_current().unwrap().unwrap().as_bytes()).unwrap();
        use rcgen::PublicKeyData;
        assert_ne!(new_key.subject_public_key_info(), old_key.subject_public_key_info(), "a fresh key");
        assert_eq!(csr::request_public_key(&created[0].spec.request.0).unwrap(), new_key.subject_public_key_info());

        shutdown.cancel();
        task.await.unwrap();
    }

    #[test]
    fn rotation_needs_a_kubeconfig_that_uses_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = CertStore::new(dir.path());
        let kc = dir.path().join("kubelet.conf");
        std::fs::write(
            &kc,
            "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://10.0.0.1:6443'}}]\n\
             users: [{name: u, user: {client-certificate-data: AAAA, client-key-data: AAAA}}]\n\
             contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
        )
        .unwrap();
        let err = ensure_uses_store(&kc, &store).unwrap_err();
        assert!(matches!(err, BootstrapError::RotationNeedsCertStore { .. }), "{err}");
        let pem = store.current_path();
        std::fs::write(
            &kc,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://10.0.0.1:6443'}}}}]\n\
                 users: [{{name: u, user: {{client-certificate: {p}, client-key: {p}}}}}]\n\
                 contexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n",
                p = pem.display()
            ),
        )
        .unwrap();
        ensure_uses_store(&kc, &store).unwrap();
    }
}
