//! The kubelet's serving certificate from the API server (`serverTLSBootstrap`), as upstream's
//! kubelet server certificate manager gets it: a CSR for signer `kubernetes.io/kubelet-serving`
//! with subject `CN=system:node:<node>, O=system:nodes`, the node's DNS names and IPs as
//! subject alternative names, usages "digital signature" and "server auth" (the key is ECDSA
//! P-256); the issued pair lives in `<cert-dir>/kubelet-server-<time>.pem` behind
//! `kubelet-server-current.pem`. Requested at once when there is no valid certificate for the
//! current names, then again at a jittered 70–90% of its lifetime; failures retry after 2, 4, 8,
//! 16 and then every 32 s; one request waits up to 15 minutes for approval (kubelet-serving
//! CSRs are not approved automatically: an administrator or an approver must).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::NodeAddress;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::csr::{self, CsrApi, KubeCsrApi, NODES_GROUP, node_common_name};
use super::rotation::{CERTIFICATE_WAIT_TIMEOUT, retry_delay, rotation_deadline};
use super::store::{CertStore, parse_certs};
use super::{BootstrapError, Result};

/// The serving certificate's signer.
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// The usages the kubelet asks for (its key is ECDSA, so no "key encipherment").
pub const SERVING_USAGES: [&str; 2] = ["digital signature", "server auth"];

/// What the serving certificate must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub node_name: String,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl Template {
    /// Upstream's template from the node's addresses: DNS names from Hostname, InternalDNS and
    /// ExternalDNS, IPs from InternalIP and ExternalIP, each sorted and without duplicates.
    /// None without an IP (upstream then waits for one).
    pub fn from_addresses(node_name: &str, addresses: &[NodeAddress]) -> Option<Self> {
        let mut dns_names: Vec<String> = addresses
            .iter()
            .filter(|a| matches!(a.type_.as_str(), "Hostname" | "InternalDNS" | "ExternalDNS"))
            .map(|a| a.address.clone())
            .filter(|a| !a.is_empty())
            .collect();
        let mut ips: Vec<IpAddr> = addresses
            .iter()
            .filter(|a| matches!(a.type_.as_str(), "InternalIP" | "ExternalIP"))
            .filter_map(|a| a.address.parse().ok())
            .collect();
        dns_names.sort();
        dns_names.dedup();
        ips.sort();
        ips.dedup();
        (!ips.is_empty()).then(|| Self { node_name: node_name.to_owned(), dns_names, ips })
    }

    /// Whether a certificate (PEM) names exactly this node, names and IPs.
    pub fn matches(&self, cert_pem: &str) -> bool {
        let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()) else { return false };
        let Ok(cert) = pem.parse_x509() else { return false };
        let cn = cert.subject().iter_common_name().next().and_then(|c| c.as_str().ok()).unwrap_or_default();
        let (mut dns, mut ips) = (Vec::new(), Vec::new());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    x509_parser::extensions::GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                    x509_parser::extensions::GeneralName::IPAddress(b) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                            ips.push(IpAddr::from(v4));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                            ips.push(IpAddr::from(v6));
                        }
                    }
                    _ => {}
                }
            }
        }
        dns.sort();
        ips.sort();
        cn == node_common_name(&self.node_name) && dns == self.dns_names && ips == self.ips
    }

    /// The PEM certificate request for `key`.
    pub fn csr_pem(&self, key: &KeyPair) -> Result<String> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, NODES_GROUP);
        dn.push(DnType::CommonName, node_common_name(&self.node_name));
        params.distinguished_name = dn;
        for d in &self.dns_names {
            let name =
                d.clone().try_into().map_err(|e| BootstrapError::Key { reason: format!("DNS name {d:?}: {e}") })?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        params.subject_alt_names.extend(self.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params
            .serialize_request(key)
            .and_then(|csr| csr.pem())
            .map_err(|e| BootstrapError::Key { reason: format!("building the certificate request: {e}") })
    }
}

/// The serving certificate in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingCert {
    /// Certificate chain then key, as stored.
    pub pem: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// The stored current pair if it is still valid at `now`.
fn usable_current(store: &CertStore, now: SystemTime) -> Option<ServingCert> {
    let pem = store.read_current().ok().flatten()?;
    let leaf = parse_certs(pem.as_bytes(), &store.current_path()).ok()?.into_iter().next()?;
    (leaf.not_after > now).then_some(ServingCert { pem, not_before: leaf.not_before, not_after: leaf.not_after })
}

/// Requests, waits for and stores one serving certificate.
async fn request(api: &dyn CsrApi, store: &CertStore, template: &Template, now: SystemTime) -> Result<ServingCert> {
    let key = csr::generate_key()?;
    let object = csr::csr_object_for(None, &template.csr_pem(&key)?, KUBELET_SERVING_SIGNER, &SERVING_USAGES);
    let (name, uid) = csr::request_certificate(api, &object, &key).await?;
    let cert = csr::wait_for_certificate(api, &name, uid.as_deref(), CERTIFICATE_WAIT_TIMEOUT).await?;
    let cert = super::issued_pem(cert, &name)?;
    let leaf = parse_certs(cert.as_bytes(), Path::new(&name))?.swap_remove(0);
    let key_pem = key.serialize_pem();
    store.update(&cert, &key_pem, now)?;
    Ok(ServingCert { pem: format!("{cert}{key_pem}"), not_before: leaf.not_before, not_after: leaf.not_after })
}

/// Told how the serving certificate fares (upstream's certificate manager metrics).
pub trait ServingObserver: Send + Sync + 'static {
    /// A certificate is in use until `not_after` (None: none yet).
    fn current(&self, not_after: Option<SystemTime>);
    /// The previous certificate lived this long before it was replaced.
    fn rotated(&self, lived: std::time::Duration);
    /// A request for a new certificate failed.
    fn renew_failed(&self);
}

/// Starts keeping a serving certificate for `template` in `cert_dir`, through `client`. The
/// receiver holds the current pair as PEM (certificate chain then key; None until the first is
/// issued) and every new one. Runs until `shutdown`; must be called inside a Tokio runtime.
pub fn spawn_serving(
    client: kube::Client,
    cert_dir: &Path,
    template: Template,
    observer: Option<Arc<dyn ServingObserver>>,
    shutdown: CancellationToken,
) -> watch::Receiver<Option<String>> {
    let store = CertStore::serving(cert_dir);
    // A stored certificate still valid is served at once, even one whose names have changed
    // since (that one is replaced right away, as upstream does).
    let current = usable_current(&store, SystemTime::now());
    let (tx, rx) = watch::channel(current.as_ref().map(|c| c.pem.clone()));
    let renewal = Renewal {
        api: KubeCsrApi::new(client),
        store,
        template,
        tx,
        observer,
        now: SystemTime::now,
        jitter: super::rotation::random_jitter,
    };
    tokio::spawn(renewal.run(current, shutdown).instrument(tracing::info_span!("serving_certificate")));
    rx
}

/// The renewal loop's parts.
struct Renewal {
    api: Arc<dyn CsrApi>,
    store: CertStore,
    template: Template,
    tx: watch::Sender<Option<String>>,
    observer: Option<Arc<dyn ServingObserver>>,
    now: fn() -> SystemTime,
    jitter: fn() -> f64,
}

impl Renewal {
    async fn run(self, mut current: Option<ServingCert>, shutdown: CancellationToken) {
        loop {
            if let Some(o) = &self.observer {
                o.current(current.as_ref().map(|c| c.not_after));
            }
            if let Some(c) = current.as_ref().filter(|c| self.template.matches(&c.pem)) {
                let deadline = rotation_deadline(c.not_before, c.not_after, (self.jitter)());
                tracing::info!(
                    expiration = %chrono::DateTime::<chrono::Utc>::from(c.not_after),
                    deadline = %chrono::DateTime::<chrono::Utc>::from(deadline),
                    "serving certificate rotation deadline"
                );
                let wait = deadline.duration_since((self.now)()).unwrap_or_default();
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            let mut failures = 0;
            loop {
                let attempt = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = request(self.api.as_ref(), &self.store, &self.template, (self.now)()) => r,
                };
                match attempt {
                    Ok(cert) => {
                        tracing::info!(path = %self.store.current_path().display(), "new serving certificate");
                        self.tx.send_replace(Some(cert.pem.clone()));
                        if let (Some(o), Some(old)) = (&self.observer, &current) {
                            o.rotated((self.now)().duration_since(old.not_before).unwrap_or_default());
                        }
                        current = Some(cert);
                        break;
                    }
                    Err(e) => {
                        failures += 1;
                        if let Some(o) = &self.observer {
                            o.renew_failed();
                        }
                        tracing::error!("requesting the serving certificate failed (attempt {failures}): {e}");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(retry_delay(failures)) => {}
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::bootstrap::testing::{FakeCsrApi, TestCa, paused_clock};

    fn addr(t: &str, a: &str) -> NodeAddress {
        NodeAddress { type_: t.into(), address: a.into() }
    }

    #[test]
    fn the_template_names_the_nodes_dns_names_and_ips() {
        let addrs = [
            addr("Hostname", "node-b"),
            addr("InternalIP", "10.0.0.9"),
            addr("ExternalDNS", "a.example"),
            addr("InternalIP", "10.0.0.2"),
            addr("InternalIP", "10.0.0.9"),
            addr("ExternalIP", "fd00::1"),
        ];
        let t = Template::from_addresses("n1", &addrs).unwrap();
        assert_eq!(t.dns_names, ["a.example", "node-b"]);
        let ips: Vec<String> = t.ips.iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["10.0.0.2", "10.0.0.9", "fd00::1"]);
        assert_eq!(Template::from_addresses("n1", &[addr("Hostname", "h")]), None, "no IP: wait");
    }

    /// Runs the loop for `template` from `current`; the receiver of what it serves, and the
    /// handle to stop it.
    /// What the loop told its observer.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<String>>);

    impl ServingObserver for Recorder {
        fn current(&self, not_after: Option<SystemTime>) {
            self.0.lock().unwrap().push(if not_after.is_some() { "current" } else { "none" }.into());
        }
        fn rotated(&self, _: std::time::Duration) {
            self.0.lock().unwrap().push("rotated".into());
        }
        fn renew_failed(&self) {
            self.0.lock().unwrap().push("failed".into());
        }
    }

    fn start(
        api: &Arc<FakeCsrApi>,
        store: &CertStore,
        template: &Template,
        current: Option<ServingCert>,
        observer: &Arc<Recorder>,
    ) -> (watch::Receiver<Option<String>>, CancellationToken, tokio::task::JoinHandle<()>) {
        let (tx, rx) = watch::channel(current.as_ref().map(|c| c.pem.clone()));
        let shutdown = CancellationToken::new();
        let renewal = Renewal {
            api: api.clone(),
            store: store.clone(),
            template: template.clone(),
            tx,
            observer: Some(observer.clone() as Arc<dyn ServingObserver>),
            now: SystemTime::now,
            jitter: || 0.5,
        };
        let task = tokio::spawn(renewal.run(current, shutdown.clone()));
        (rx, shutdown, task)
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_certificate_is_requested_stored_and_announced() {
        let dir = tempfile::tempdir().unwrap();
        let (clock, _) = paused_clock();
        let ca = TestCa::new();
        let api = Arc::new(FakeCsrApi::new(ca, clock.clone()));
        let store = CertStore::serving(dir.path());
        let template =
            Template::from_addresses("n1", &[addr("InternalIP", "10.0.0.2"), addr("Hostname", "h1")]).unwrap();
        api.fail_next_creates(1);
        let seen = Arc::new(Recorder::default());
        let (mut rx, shutdown, task) = start(&api, &store, &template, None, &seen);
        rx.changed().await.unwrap();
        let pem = rx.borrow().clone().expect("a certificate");
        let created = api.created();
        let csr = created.last().expect("a CSR");
        assert_eq!(csr.spec.signer_name, KUBELET_SERVING_SIGNER);
        assert_eq!(csr.spec.usages.as_deref(), Some(&SERVING_USAGES.map(String::from)[..]));
        assert_eq!(csr.metadata.generate_name.as_deref(), Some("csr-"));
        assert!(store.current_path().ends_with("kubelet-server-current.pem"));
        let stored = store.read_current().unwrap().unwrap();
        assert!(template.matches(&stored), "CN system:node:n1 with DNS h1 and IP 10.0.0.2");
        assert!(!Template { ips: vec![], ..template.clone() }.matches(&stored));
        assert_eq!(created.len(), 1, "the first create failed; its retry made the one CSR");
        assert_eq!(usable_current(&store, SystemTime::now()).map(|c| c.pem), Some(pem.clone()));
        assert!(pem.contains("PRIVATE KEY"));
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(*seen.0.lock().unwrap(), ["none", "failed", "current"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stored_certificate_for_old_names_is_served_until_its_replacement_arrives() {
        let dir = tempfile::tempdir().unwrap();
        let (clock, _) = paused_clock();
        let api = Arc::new(FakeCsrApi::new(TestCa::new(), clock.clone()));
        let store = CertStore::serving(dir.path());
        let old = Template::from_addresses("n1", &[addr("InternalIP", "10.0.0.2")]).unwrap();
        let seen = Arc::new(Recorder::default());
        let (mut rx, shutdown, first) = start(&api, &store, &old, None, &seen);
        rx.changed().await.unwrap();
        shutdown.cancel();
        first.await.unwrap();

        // The node gained an IP: the stored certificate still serves, and is replaced at once.
        let new =
            Template::from_addresses("n1", &[addr("InternalIP", "10.0.0.2"), addr("InternalIP", "10.0.0.3")]).unwrap();
        let current = usable_current(&store, SystemTime::now()).expect("the stored certificate");
        assert!(old.matches(&current.pem) && !new.matches(&current.pem));
        let (mut rx, shutdown, second) = start(&api, &store, &new, Some(current), &seen);
        rx.changed().await.unwrap();
        let pem = rx.borrow().clone().expect("a certificate");
        assert!(new.matches(&pem), "the replacement names the new IP");
        assert_eq!(api.created().len(), 2);
        shutdown.cancel();
        second.await.unwrap();
        assert_eq!(
            seen.0.lock().unwrap().iter().filter(|e| *e == "rotated").count(),
            1,
            "the old certificate was replaced"
        );
    }
}
