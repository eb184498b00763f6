//! The kubelet's client CertificateSigningRequest, as upstream builds and follows it
//! (`bootstrap.requestNodeCertificate`, client-go's `util/certificate/csr`): an ECDSA P-256 key,
//! subject `CN=system:node:<node>, O=system:nodes`, signer
//! `kubernetes.io/kube-apiserver-client-kubelet`, usages "digital signature" and "client auth"
//! (key encipherment only for RSA keys, which rkubelet never generates).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures::stream::{BoxStream, StreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData};
use x509_parser::prelude::FromDer;

use super::{BootstrapError, Result};

/// Signer of kubelet client certificates.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Group of every node identity.
pub const NODES_GROUP: &str = "system:nodes";
/// Usages requested for an ECDSA client key.
pub const CLIENT_USAGES: [&str; 2] = ["digital signature", "client auth"];

/// The CertificateSigningRequest API, as the bootstrap needs it. The real one is
/// [`KubeCsrApi`]; tests use a fake that signs with a test CA.
#[async_trait::async_trait]
pub trait CsrApi: Send + Sync {
    /// Creates the object; a name clash comes back as the API's AlreadyExists error.
    async fn create(
        &self,
        csr: &CertificateSigningRequest,
    ) -> std::result::Result<CertificateSigningRequest, kube::Error>;
    async fn get(&self, name: &str) -> std::result::Result<CertificateSigningRequest, kube::Error>;
    /// Every version of the CSR `name` seen from now on (the current one first); `None` when it
    /// is deleted. Transient errors are items; the stream recovers by itself.
    fn observe(&self, name: &str)
    -> BoxStream<'static, std::result::Result<Option<CertificateSigningRequest>, String>>;
}

/// [`CsrApi`] over kube-rs.
pub struct KubeCsrApi {
    api: kube::Api<CertificateSigningRequest>,
}

impl KubeCsrApi {
    pub fn new(client: kube::Client) -> Arc<Self> {
        Arc::new(Self { api: kube::Api::all(client) })
    }
}

#[async_trait::async_trait]
impl CsrApi for KubeCsrApi {
    async fn create(
        &self,
        csr: &CertificateSigningRequest,
    ) -> std::result::Result<CertificateSigningRequest, kube::Error> {
        self.api.create(&kube::api::PostParams::default(), csr).await
    }

    async fn get(&self, name: &str) -> std::result::Result<CertificateSigningRequest, kube::Error> {
        self.api.get(name).await
    }

    fn observe(
        &self,
        name: &str,
    ) -> BoxStream<'static, std::result::Result<Option<CertificateSigningRequest>, String>> {
        use kube::runtime::{WatchStreamExt, watcher};
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        watcher(self.api.clone(), config)
            .default_backoff()
            .filter_map(|ev| async move {
                match ev {
                    Ok(watcher::Event::Apply(csr) | watcher::Event::InitApply(csr)) => Some(Ok(Some(csr))),
                    Ok(watcher::Event::Delete(_)) => Some(Ok(None)),
                    Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
                    Err(e) => Some(Err(e.to_string())),
                }
            })
            .boxed()
    }
}

/// A fresh ECDSA P-256 key.
pub fn generate_key() -> Result<KeyPair> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| BootstrapError::Key { reason: format!("generating an ECDSA P-256 key: {e}") })
}

/// The first private key of a PEM text: PKCS#8 ("PRIVATE KEY") or an ECDSA P-256 SEC1 key
/// ("EC PRIVATE KEY", what upstream's keyutil writes). `None` for anything else.
pub fn parse_private_key(pem: &[u8]) -> Option<KeyPair> {
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let Ok(block) = block else { return None };
        match block.label.as_str() {
            "PRIVATE KEY" => return KeyPair::try_from(block.contents.as_slice()).ok(),
            "EC PRIVATE KEY" => return KeyPair::try_from(sec1_p256_to_pkcs8(&block.contents)).ok(),
            _ => {}
        }
    }
    None
}

/// Wraps a SEC1 `ECPrivateKey` in a PKCS#8 `PrivateKeyInfo` for P-256 (RFC 5915, RFC 5208).
fn sec1_p256_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID id-ecPublicKey, OID prime256v1 }
    const ALGORITHM: [u8; 21] = [
        0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d,
        0x03, 0x01, 0x07,
    ];
    let mut body = vec![0x02, 0x01, 0x00]; // version 0
    body.extend_from_slice(&ALGORITHM);
    body.push(0x04);
    der_len(&mut body, sec1.len());
    body.extend_from_slice(sec1);
    let mut out = vec![0x30];
    der_len(&mut out, body.len());
    out.extend(body);
    out
}

fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

/// `CN=system:node:<node>`.
pub fn node_common_name(node_name: &str) -> String {
    format!("system:node:{node_name}")
}

/// The PEM CSR for `node_name`, signed by `key`.
pub fn node_csr_pem(key: &KeyPair, node_name: &str) -> Result<String> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // Go's pkix.Name orders O before CN.
    dn.push(DnType::OrganizationName, NODES_GROUP);
    dn.push(DnType::CommonName, node_common_name(node_name));
    params.distinguished_name = dn;
    params
        .serialize_request(key)
        .and_then(|csr| csr.pem())
        .map_err(|e| BootstrapError::Key { reason: format!("building the certificate request: {e}") })
}

/// Upstream's `digestedName`: `node-csr-` + base64url(SHA-512/256 over the public key, the
/// subject and the usages). The same key, node and usages always give the same name, so a
/// restarted kubelet finds its pending CSR instead of creating another.
pub fn digested_name(spki_der: &[u8], common_name: &str, organizations: &[&str], usages: &[&str]) -> String {
    let encode = |d: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA512_256);
    let mut write = |d: &[u8]| {
        ctx.update(encode(d).as_bytes());
        ctx.update(b"|");
    };
    write(spki_der);
    write(common_name.as_bytes());
    for o in organizations {
        write(o.as_bytes());
    }
    for u in usages {
        write(u.as_bytes());
    }
    format!("node-csr-{}", encode(ctx.finish().as_ref()))
}

/// The client certificate's CSR object. `name` `None` means `generateName: csr-` (as
/// rotations do).
pub fn csr_object(name: Option<String>, request_pem: &str) -> CertificateSigningRequest {
    csr_object_for(name, request_pem, KUBELET_CLIENT_SIGNER, &CLIENT_USAGES)
}

/// A CSR object for `signer` with `usages`.
pub fn csr_object_for(
    name: Option<String>,
    request_pem: &str,
    signer: &str,
    usages: &[&str],
) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta { generate_name: name.is_none().then(|| "csr-".to_owned()), name, ..Default::default() },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request_pem.as_bytes().to_vec()),
            signer_name: signer.to_owned(),
            usages: Some(usages.iter().map(|u| (*u).to_owned()).collect()),
            ..Default::default()
        },
        status: None,
    }
}

/// Creates the CSR for `key`; if one with the same (digested) name exists, reuses it when it
/// asks for the same key, signer and usages (upstream's `ensureCompatible`). Returns the
/// name and UID to wait on.
pub async fn request_certificate(
    api: &dyn CsrApi,
    csr: &CertificateSigningRequest,
    key: &KeyPair,
) -> Result<(String, Option<String>)> {
    let describe = || csr.metadata.name.clone().unwrap_or_else(|| "csr-*".to_owned());
    match api.create(csr).await {
        Ok(created) => {
            let name = created.metadata.name.unwrap_or_else(describe);
            tracing::info!(csr = %name, "submitted certificate signing request");
            Ok((name, created.metadata.uid))
        }
        Err(kube::Error::Api(status)) if status.is_already_exists() && csr.metadata.name.is_some() => {
            let name = describe();
            let existing = api.get(&name).await.map_err(|source| BootstrapError::Api { csr: name.clone(), source })?;
            ensure_compatible(&existing, csr, key)?;
            tracing::info!(csr = %name, "certificate signing request for this node already exists, reusing it");
            Ok((name, existing.metadata.uid))
        }
        Err(source) => Err(BootstrapError::Api { csr: describe(), source }),
    }
}

fn ensure_compatible(
    existing: &CertificateSigningRequest,
    ours: &CertificateSigningRequest,
    key: &KeyPair,
) -> Result<()> {
    let name = existing.metadata.name.clone().unwrap_or_default();
    let incompatible = |reason: String| BootstrapError::Incompatible { csr: name.clone(), reason };
    if existing.spec.signer_name != ours.spec.signer_name {
        return Err(incompatible(format!("signer {:?} differs", existing.spec.signer_name)));
    }
    if existing.spec.usages != ours.spec.usages {
        return Err(incompatible(format!("usages {:?} differ", existing.spec.usages)));
    }
    let spki = request_public_key(&existing.spec.request.0).map_err(incompatible)?;
    if spki != key.subject_public_key_info() {
        return Err(incompatible("it was made for another key".to_owned()));
    }
    Ok(())
}

/// The SubjectPublicKeyInfo (DER) of a PEM certificate request.
pub fn request_public_key(pem: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let block = x509_parser::pem::Pem::iter_from_buffer(pem)
        .next()
        .ok_or("no PEM block in the request")?
        .map_err(|e| format!("malformed request PEM: {e}"))?;
    let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
        .map_err(|e| format!("malformed certificate request: {e}"))?;
    Ok(req.certification_request_info.subject_pki.raw.to_vec())
}

/// Where a CSR stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Approved and signed: the PEM certificate.
    Issued(Vec<u8>),
    /// Not decided yet, or approved and waiting for the signer.
    Pending,
    Denied {
        reason: String,
        message: String,
    },
    Failed {
        reason: String,
        message: String,
    },
}

/// Upstream's `WaitForCertificate` condition check (Denied and Failed win over Approved).
pub fn outcome(csr: &CertificateSigningRequest) -> Outcome {
    let Some(status) = &csr.status else { return Outcome::Pending };
    let mut approved = false;
    for c in status.conditions.iter().flatten() {
        let (reason, message) = (c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default());
        match c.type_.as_str() {
            "Denied" => return Outcome::Denied { reason, message },
            "Failed" => return Outcome::Failed { reason, message },
            "Approved" => approved = true,
            _ => {}
        }
    }
    match &status.certificate {
        Some(cert) if approved && !cert.0.is_empty() => Outcome::Issued(cert.0.clone()),
        _ => Outcome::Pending,
    }
}

/// Follows the CSR until it is issued, denied, failed or deleted, or `timeout` passes.
pub async fn wait_for_certificate(
    api: &dyn CsrApi,
    name: &str,
    uid: Option<&str>,
    timeout: Duration,
) -> Result<Vec<u8>> {
    let mut updates = api.observe(name);
    let follow = async {
        while let Some(update) = updates.next().await {
            let csr = match update {
                Ok(Some(csr)) => csr,
                Ok(None) => return Err(BootstrapError::Deleted { csr: name.to_owned() }),
                Err(e) => {
                    tracing::warn!(csr = %name, "watching the certificate signing request: {e}");
                    continue;
                }
            };
            if uid.is_some() && csr.metadata.uid.as_deref() != uid {
                return Err(BootstrapError::Deleted { csr: name.to_owned() });
            }
            match outcome(&csr) {
                Outcome::Issued(cert) => {
                    tracing::info!(csr = %name, "certificate signing request is issued");
                    return Ok(cert);
                }
                Outcome::Pending => tracing::debug!(csr = %name, "certificate signing request is pending"),
                Outcome::Denied { reason, message } => {
                    return Err(BootstrapError::Denied { csr: name.to_owned(), reason, message });
                }
                Outcome::Failed { reason, message } => {
                    return Err(BootstrapError::Failed { csr: name.to_owned(), reason, message });
                }
            }
        }
        Err(BootstrapError::Deleted { csr: name.to_owned() })
    };
    tokio::time::timeout(timeout, follow)
        .await
        .unwrap_or_else(|_| Err(BootstrapError::Timeout { csr: name.to_owned(), after: timeout }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use k8s_openapi::api::certificates::v1::{CertificateSigningRequestCondition, CertificateSigningRequestStatus};

    #[test]
    fn csr_has_the_node_subject_and_the_key() {
        let key = generate_key().unwrap();
        let pem = node_csr_pem(&key, "node-a").unwrap();
        let block = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()).next().unwrap().unwrap();
        assert_eq!(block.label, "CERTIFICATE REQUEST");
        let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents).unwrap();
        let subject = &req.certification_request_info.subject;
        assert_eq!(subject.to_string(), "O=system:nodes, CN=system:node:node-a");
        req.verify_signature().unwrap();
        assert_eq!(request_public_key(pem.as_bytes()).unwrap(), key.subject_public_key_info());
        let spki_der = key.subject_public_key_info();
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki_der).unwrap();
        assert_eq!(spki.algorithm.algorithm.to_id_string(), "1.2.840.10045.2.1", "an EC key");
    }

    #[test]
    fn csr_object_names_signer_and_usages() {
        let key = generate_key().unwrap();
        let pem = node_csr_pem(&key, "node-a").unwrap();
        let name = digested_name(&key.subject_public_key_info(), "system:node:node-a", &[NODES_GROUP], &CLIENT_USAGES);
        let csr = csr_object(Some(name.clone()), &pem);
        assert_eq!(csr.metadata.name.as_deref(), Some(name.as_str()));
        assert_eq!(csr.metadata.generate_name, None);
        assert_eq!(csr.spec.signer_name, "kubernetes.io/kube-apiserver-client-kubelet");
        assert_eq!(csr.spec.usages.as_deref(), Some(&["digital signature".to_owned(), "client auth".to_owned()][..]));
        assert!(!csr.spec.usages.iter().flatten().any(|u| u == "key encipherment"), "not for ECDSA keys");
        assert_eq!(csr.spec.request.0, pem.as_bytes());
        let json = serde_json::to_value(&csr).unwrap();
        assert_eq!(json["spec"]["signerName"], KUBELET_CLIENT_SIGNER);
        let rotation = csr_object(None, &pem);
        assert_eq!((rotation.metadata.name, rotation.metadata.generate_name.as_deref()), (None, Some("csr-")));
    }

    #[test]
    fn digested_name_is_stable_and_covers_every_input() {
        let spki = b"spki";
        let base = digested_name(spki, "system:node:a", &["system:nodes"], &CLIENT_USAGES);
        assert!(base.starts_with("node-csr-"));
        assert_eq!(base.len(), "node-csr-".len() + 43, "base64url of 32 bytes, unpadded");
        assert!(base["node-csr-".len()..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(base, digested_name(spki, "system:node:a", &["system:nodes"], &CLIENT_USAGES));
        assert_ne!(base, digested_name(b"other", "system:node:a", &["system:nodes"], &CLIENT_USAGES));
        assert_ne!(base, digested_name(spki, "system:node:b", &["system:nodes"], &CLIENT_USAGES));
        assert_ne!(base, digested_name(spki, "system:node:a", &["system:nodes"], &["client auth"]));
        // The delimiter keeps "ab"+"c" apart from "a"+"bc".
        assert_ne!(digested_name(spki, "ab", &["c"], &[]), digested_name(spki, "a", &["bc"], &[]));
        // Known vector: SHA-512/256 of "c3BraQ|YQ|" (base64url of "spki", then "a").
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA512_256);
        ctx.update(b"c3BraQ|YQ|");
        let want = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ctx.finish().as_ref());
        assert_eq!(digested_name(spki, "a", &[], &[]), format!("node-csr-{want}"));
    }

    #[test]
    fn keys_in_pkcs8_and_sec1_pem_load() {
        let key = generate_key().unwrap();
        let again = parse_private_key(key.serialize_pem().as_bytes()).unwrap();
        assert_eq!(again.subject_public_key_info(), key.subject_public_key_info());
        // What Go's keyutil writes: SEC1 "EC PRIVATE KEY" (with curve parameters and public key).
        let sec1 = include_str!("testdata/sec1-p256.pem");
        let k = parse_private_key(sec1.as_bytes()).expect("SEC1 P-256 key");
        assert_eq!(k.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
        assert!(parse_private_key(b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n").is_none());
        assert!(parse_private_key(b"garbage").is_none());
    }

    fn with_conditions(conds: &[(&str, &str)], cert: Option<&[u8]>) -> CertificateSigningRequest {
        CertificateSigningRequest {
            status: Some(CertificateSigningRequestStatus {
                certificate: cert.map(|c| ByteString(c.to_vec())),
                conditions: Some(
                    conds
                        .iter()
                        .map(|(t, r)| CertificateSigningRequestCondition {
                            type_: (*t).to_owned(),
                            status: "True".to_owned(),
                            reason: Some((*r).to_owned()),
                            message: Some(format!("{t} by test")),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn outcome_follows_conditions() {
        assert_eq!(outcome(&CertificateSigningRequest::default()), Outcome::Pending);
        assert_eq!(outcome(&with_conditions(&[("Approved", "AutoApproved")], None)), Outcome::Pending);
        assert_eq!(outcome(&with_conditions(&[("Approved", "AutoApproved")], Some(b""))), Outcome::Pending);
        assert_eq!(
            outcome(&with_conditions(&[("Approved", "AutoApproved")], Some(b"PEM"))),
            Outcome::Issued(b"PEM".to_vec())
        );
        assert_eq!(
            outcome(&with_conditions(&[("Approved", "A"), ("Denied", "NotANode")], Some(b"PEM"))),
            Outcome::Denied { reason: "NotANode".into(), message: "Denied by test".into() }
        );
        assert_eq!(
            outcome(&with_conditions(&[("Failed", "SignerError")], None)),
            Outcome::Failed { reason: "SignerError".into(), message: "Failed by test".into() }
        );
    }
}
