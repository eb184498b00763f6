//! The server's CA: the serving certificate for 127.0.0.1/localhost, client-certificate
//! authentication (user = CN, groups = O) and the signer of approved CertificateSigningRequests
//! (`kubernetes.io/kube-apiserver-client-kubelet`, `kubernetes.io/kubelet-serving`,
//! `kubernetes.io/kube-apiserver-client`), like the controller-manager's csrsigning controller.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use server::secure::ClientCerts;

use super::auth::UserInfo;
use super::object::random_bytes;

pub(crate) const SIGNER_KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub(crate) const SIGNER_KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
pub(crate) const SIGNER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";

/// Upstream's `--cluster-signing-duration` default: one year.
const MAX_DURATION_SECS: i64 = 365 * 24 * 3600;
/// The signer backdates certificates to tolerate clock skew.
const BACKDATE_SECS: i64 = 5 * 60;

/// The cluster CA (a fresh ECDSA P-256 key per server).
pub(crate) struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub cert_pem: String,
    cert_der: CertificateDer<'static>,
}

impl Ca {
    pub fn new() -> Result<Self, rcgen::Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "testkit-apiserver-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self { cert_pem: cert.pem(), cert_der: cert.der().clone(), params, key })
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// A serving certificate for 127.0.0.1, ::1 and localhost.
    fn serving_cert(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), rcgen::Error> {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
        params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.subject_alt_names.push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        params.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer())?;
        let key_der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|_| rcgen::Error::CouldNotParseKeyPair)?;
        Ok((vec![cert.der().clone(), self.cert_der.clone()], key_der))
    }

    /// A client certificate and key (PEM) for `cn` in groups `orgs`, valid for a day.
    pub fn issue_client_cert(&self, cn: &str, orgs: &[&str]) -> Result<(String, String), rcgen::Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::seconds(BACKDATE_SECS);
        params.not_after = now + time::Duration::days(1);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer())?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Signs a PEM CSR for `signer` with the key usages of `usages` (the API's spelling) for
    /// `expiration_seconds` (capped at a year). Errors are the signer's validation failures.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        signer: &str,
        usages: &[String],
        expiration_seconds: Option<i64>,
    ) -> Result<String, String> {
        let csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| format!("unable to parse csr: {e}"))?;
        let mut params = csr.params.clone();
        validate_for_signer(signer, &params, usages)?;
        params.key_usages = usages.iter().filter_map(|u| key_usage(u)).collect();
        params.extended_key_usages = usages.iter().filter_map(|u| ext_key_usage(u)).collect();
        params.is_ca = IsCa::ExplicitNoCa;
        params.serial_number = Some(SerialNumber::from_slice(&random_bytes::<16>()[..]));
        let secs = expiration_seconds.unwrap_or(MAX_DURATION_SECS).clamp(600, MAX_DURATION_SECS);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::seconds(BACKDATE_SECS);
        params.not_after = now + time::Duration::seconds(secs);
        let signed = CertificateSigningRequestParams { params, public_key: csr.public_key };
        let cert = signed.signed_by(&self.issuer()).map_err(|e| format!("signing failed: {e}"))?;
        Ok(cert.pem())
    }
}

fn key_usage(u: &str) -> Option<KeyUsagePurpose> {
    Some(match u {
        "signing" | "digital signature" => KeyUsagePurpose::DigitalSignature,
        "content commitment" => KeyUsagePurpose::ContentCommitment,
        "key encipherment" => KeyUsagePurpose::KeyEncipherment,
        "key agreement" => KeyUsagePurpose::KeyAgreement,
        "data encipherment" => KeyUsagePurpose::DataEncipherment,
        "cert sign" => KeyUsagePurpose::KeyCertSign,
        "crl sign" => KeyUsagePurpose::CrlSign,
        "encipher only" => KeyUsagePurpose::EncipherOnly,
        "decipher only" => KeyUsagePurpose::DecipherOnly,
        _ => return None,
    })
}

fn ext_key_usage(u: &str) -> Option<ExtendedKeyUsagePurpose> {
    Some(match u {
        "any" => ExtendedKeyUsagePurpose::Any,
        "server auth" => ExtendedKeyUsagePurpose::ServerAuth,
        "client auth" => ExtendedKeyUsagePurpose::ClientAuth,
        "code signing" => ExtendedKeyUsagePurpose::CodeSigning,
        "email protection" => ExtendedKeyUsagePurpose::EmailProtection,
        "timestamping" => ExtendedKeyUsagePurpose::TimeStamping,
        "ocsp signing" => ExtendedKeyUsagePurpose::OcspSigning,
        _ => return None,
    })
}

/// The value of one attribute. rcgen keeps one value per attribute type, so a subject with
/// several O values keeps only the last one.
fn dn_value(dn: &DistinguishedName, ty: DnType) -> Option<String> {
    match dn.get(&ty)? {
        rcgen::DnValue::Utf8String(s) => Some(s.clone()),
        rcgen::DnValue::PrintableString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// The kubelet signers' checks (`pkg/apis/certificates` `IsKubeletClientCSR`/`IsKubeletServingCSR`).
fn validate_for_signer(signer: &str, params: &CertificateParams, usages: &[String]) -> Result<(), String> {
    let cn = dn_value(&params.distinguished_name, DnType::CommonName).unwrap_or_default();
    let orgs: Vec<String> = dn_value(&params.distinguished_name, DnType::OrganizationName).into_iter().collect();
    let has = |u: &str| usages.iter().any(|x| x == u);
    let only = |allowed: &[&str]| usages.iter().all(|u| allowed.contains(&u.as_str()));
    match signer {
        SIGNER_KUBELET_CLIENT | SIGNER_KUBELET_SERVING => {
            if !cn.starts_with("system:node:") || cn.len() == "system:node:".len() {
                return Err(format!("subject common name does not begin with system:node: ({cn:?})"));
            }
            if orgs != ["system:nodes"] {
                return Err(format!("subject organization is not system:nodes ({orgs:?})"));
            }
            if signer == SIGNER_KUBELET_CLIENT {
                if !params.subject_alt_names.is_empty() {
                    return Err("subjectAltNames are not allowed".to_owned());
                }
                if !has("client auth") || !only(&["digital signature", "key encipherment", "client auth"]) {
                    return Err(format!("usages did not match {usages:?}"));
                }
            } else if !has("server auth") || !only(&["digital signature", "key encipherment", "server auth"]) {
                return Err(format!("usages did not match {usages:?}"));
            }
            Ok(())
        }
        SIGNER_CLIENT if has("client auth") => Ok(()),
        SIGNER_CLIENT => Err("client auth usage is required".to_owned()),
        other => Err(format!("unknown signer {other}")),
    }
}

/// The identity of a client certificate chain verified against the CA: user = CN, groups = O +
/// system:authenticated (the kubelet API server's own checks, [`server::secure::ClientCerts`]).
pub(crate) fn identity_from_chain(certs: &ClientCerts, chain: &[CertificateDer<'_>]) -> Result<UserInfo, String> {
    let u = certs.verify(chain)?;
    let mut groups = u.groups;
    groups.push("system:authenticated".to_owned());
    Ok(UserInfo { username: u.name, uid: u.uid, groups, extra: u.extra })
}

/// The TLS configuration: the serving certificate, HTTP/1.1 only, optional client certificates.
pub(crate) fn tls_config(ca: &Ca) -> Result<(Arc<ServerConfig>, Arc<ClientCerts>), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der.clone()).map_err(|e| e.to_string())?;
    let verifier = ClientCerts::new(roots)?;
    let (chain, key) = ca.serving_cert().map_err(|e| e.to_string())?;
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier.clone())
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(cfg), verifier))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(cn: &str, org: &str) -> String {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name.push(DnType::OrganizationName, org);
        let key = KeyPair::generate().unwrap();
        p.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn signs_kubelet_client_csr_and_reads_identity_back() {
        let ca = Ca::new().unwrap();
        let usages = vec!["digital signature".to_owned(), "client auth".to_owned()];
        let pem =
            ca.sign_csr(&csr("system:node:n1", "system:nodes"), SIGNER_KUBELET_CLIENT, &usages, Some(3600)).unwrap();
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).map(|c: CertificateDer| c).unwrap();
        let (_, verifier) = tls_config(&ca).unwrap();
        let user = identity_from_chain(&verifier, &[der]).unwrap();
        assert_eq!(user.username, "system:node:n1");
        assert_eq!(user.groups, vec!["system:nodes".to_owned(), "system:authenticated".to_owned()]);
        let other = Ca::new().unwrap();
        let (foreign, _) = other.issue_client_cert("x", &[]).unwrap();
        let foreign: CertificateDer = rustls::pki_types::pem::PemObject::from_pem_slice(foreign.as_bytes()).unwrap();
        assert!(identity_from_chain(&verifier, &[foreign]).is_err());
    }

    #[test]
    fn kubelet_signer_rejects_wrong_subjects() {
        let ca = Ca::new().unwrap();
        let usages = vec!["client auth".to_owned()];
        assert!(ca.sign_csr(&csr("alice", "system:nodes"), SIGNER_KUBELET_CLIENT, &usages, None).is_err());
        assert!(ca.sign_csr(&csr("system:node:n", "devs"), SIGNER_KUBELET_CLIENT, &usages, None).is_err());
        assert!(ca.sign_csr(&csr("alice", "devs"), SIGNER_CLIENT, &usages, None).is_ok());
        assert!(ca.sign_csr("garbage", SIGNER_CLIENT, &usages, None).is_err());
    }
}
