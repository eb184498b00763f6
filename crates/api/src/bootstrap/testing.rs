//! Test helpers: a CA that signs like the API server's kubelet client signer, a fake
//! CertificateSigningRequest API over it, and a wall clock that follows Tokio's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::stream::{self, BoxStream, StreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestStatus,
};
use kube::core::Status;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair,
};

use super::csr::{CsrApi, generate_key};

pub fn new_key() -> KeyPair {
    generate_key().unwrap()
}

/// A wall clock that starts at a whole second and advances with Tokio's (paused) clock.
pub fn paused_clock() -> (Arc<dyn Fn() -> SystemTime + Send + Sync>, SystemTime) {
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let start = tokio::time::Instant::now();
    (Arc::new(move || base + start.elapsed()), base)
}

pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        let key = new_key();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "kubernetes");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert_pem = params.self_signed(&key).unwrap().pem();
        Self { issuer: Issuer::new(params, key), cert_pem }
    }

    /// A client certificate for `key`, valid from `not_before` to `not_after`.
    pub fn issue_at(&self, key: &KeyPair, cn: &str, not_before: SystemTime, not_after: SystemTime) -> String {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "system:nodes");
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.signed_by(key, &self.issuer).unwrap().pem()
    }

    /// A client certificate for `key`, valid from now for `validity`.
    pub fn issue_for_key(&self, key: &KeyPair, cn: &str, validity: Duration) -> String {
        let now = SystemTime::now();
        self.issue_at(key, cn, now - Duration::from_secs(60), now + validity)
    }

    /// Signs a PEM CSR, keeping its subject.
    pub fn sign_request(&self, pem: &str, not_before: SystemTime, not_after: SystemTime) -> String {
        let mut req = CertificateSigningRequestParams::from_pem(pem).unwrap();
        req.params.not_before = not_before.into();
        req.params.not_after = not_after.into();
        req.signed_by(&self.issuer).unwrap().pem()
    }
}

/// What the fake does with a new CSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Issue,
    Deny,
    Fail,
    /// Never decided.
    Pending,
    /// Deleted right after creation.
    Delete,
}

/// An in-memory CSR API that decides every new CSR at once.
pub struct FakeCsrApi {
    ca: TestCa,
    now: Arc<dyn Fn() -> SystemTime + Send + Sync>,
    decision: Mutex<Decision>,
    fail_creates: Mutex<u32>,
    unreachable: Mutex<u32>,
    objects: Mutex<BTreeMap<String, CertificateSigningRequest>>,
    created: Mutex<Vec<CertificateSigningRequest>>,
}

impl FakeCsrApi {
    pub fn new(ca: TestCa, now: Arc<dyn Fn() -> SystemTime + Send + Sync>) -> Self {
        Self {
            ca,
            now,
            decision: Mutex::new(Decision::Issue),
            fail_creates: Mutex::new(0),
            unreachable: Mutex::new(0),
            objects: Mutex::new(BTreeMap::new()),
            created: Mutex::new(Vec::new()),
        }
    }

    pub fn decide(&self, d: Decision) {
        *self.decision.lock().unwrap() = d;
    }

    /// The next `n` creates fail with a server error.
    pub fn fail_next_creates(&self, n: u32) {
        *self.fail_creates.lock().unwrap() = n;
    }

    /// The next `n` creates do not reach the server.
    pub fn unreachable_for_next_creates(&self, n: u32) {
        *self.unreachable.lock().unwrap() = n;
    }

    /// Every CSR as it was submitted.
    pub fn created(&self) -> Vec<CertificateSigningRequest> {
        self.created.lock().unwrap().clone()
    }

    pub fn insert(&self, csr: CertificateSigningRequest) {
        let name = csr.metadata.name.clone().unwrap();
        self.objects.lock().unwrap().insert(name, csr);
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    fn condition(type_: &str, reason: &str) -> CertificateSigningRequestCondition {
        CertificateSigningRequestCondition {
            type_: type_.to_owned(),
            status: "True".to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(format!("{reason} by the fake")),
            ..Default::default()
        }
    }
}

#[async_trait::async_trait]
impl CsrApi for FakeCsrApi {
    async fn create(&self, csr: &CertificateSigningRequest) -> Result<CertificateSigningRequest, kube::Error> {
        {
            let mut down = self.unreachable.lock().unwrap();
            if *down > 0 {
                *down -= 1;
                return Err(kube::Error::Service("connection refused".into()));
            }
        }
        {
            let mut fails = self.fail_creates.lock().unwrap();
            if *fails > 0 {
                *fails -= 1;
                return Err(kube::Error::Api(Status::failure("etcd is sad", "InternalError").with_code(500).boxed()));
            }
        }
        self.created.lock().unwrap().push(csr.clone());
        let mut objects = self.objects.lock().unwrap();
        let name = match &csr.metadata.name {
            Some(n) if objects.contains_key(n) => {
                return Err(kube::Error::Api(Status::failure("exists", "AlreadyExists").with_code(409).boxed()));
            }
            Some(n) => n.clone(),
            None => format!("csr-{}", objects.len() + 1),
        };
        let mut stored = csr.clone();
        stored.metadata.name = Some(name.clone());
        stored.metadata.uid = Some(format!("uid-{name}"));
        let now = (self.now)();
        let status = match *self.decision.lock().unwrap() {
            Decision::Issue => Some(CertificateSigningRequestStatus {
                certificate: Some(ByteString(
                    self.ca
                        .sign_request(
                            std::str::from_utf8(&csr.spec.request.0).unwrap(),
                            now,
                            now + Duration::from_secs(100 * 3600),
                        )
                        .into_bytes(),
                )),
                conditions: Some(vec![Self::condition("Approved", "AutoApproved")]),
            }),
            Decision::Deny => Some(CertificateSigningRequestStatus {
                certificate: None,
                conditions: Some(vec![Self::condition("Denied", "NotANode")]),
            }),
            Decision::Fail => Some(CertificateSigningRequestStatus {
                certificate: None,
                conditions: Some(vec![
                    Self::condition("Approved", "AutoApproved"),
                    Self::condition("Failed", "SignerError"),
                ]),
            }),
            Decision::Pending | Decision::Delete => None,
        };
        stored.status = status;
        if *self.decision.lock().unwrap() != Decision::Delete {
            objects.insert(name, stored.clone());
        }
        Ok(stored)
    }

    async fn get(&self, name: &str) -> Result<CertificateSigningRequest, kube::Error> {
        self.objects
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .ok_or_else(|| kube::Error::Api(Status::failure("not found", "NotFound").with_code(404).boxed()))
    }

    fn observe(&self, name: &str) -> BoxStream<'static, Result<Option<CertificateSigningRequest>, String>> {
        let current = self.objects.lock().unwrap().get(name).cloned();
        // A transient error first, as a real watch may report; then the object, then silence.
        stream::iter([Err("connection reset".to_owned()), Ok(current)]).chain(stream::pending()).boxed()
    }
}
