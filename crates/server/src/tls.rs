//! `tlsMinVersion` and `tlsCipherSuites` (Go's names, as upstream's `cliflag` knows them) for
//! the kubelet server, on rustls. rustls speaks TLS 1.2 and 1.3 with ECDHE AEAD suites only:
//! a version below 1.2 offers 1.2, and a suite Go knows but rustls does not implement (RSA key
//! exchange, CBC, 3DES, RC4) is left out with a warning. As in Go, the list picks the TLS 1.2
//! suites; the TLS 1.3 suites are always offered. Unknown names are errors with upstream's text.

use std::sync::Arc;

use rustls::SupportedProtocolVersion;
use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::cipher_suite as suites;

/// The TLS 1.2 suites rustls implements, by their Go names (with Go's aliases).
const IMPLEMENTED: [(&str, rustls::SupportedCipherSuite); 8] = [
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", suites::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", suites::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", suites::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", suites::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", suites::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", suites::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", suites::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", suites::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
];

/// The TLS 1.3 suites: accepted in the list, always offered (Go does not configure them).
const TLS13: [&str; 3] = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"];

/// Suites Go knows that rustls does not implement.
const NOT_IMPLEMENTED: [&str; 18] = [
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_FALLBACK_SCSV",
    "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
];

/// What the server offers: the provider (its cipher suites) and the protocol versions, plus
/// warnings about what was asked for and cannot be offered.
pub struct TlsSettings {
    pub provider: Arc<CryptoProvider>,
    pub versions: Vec<&'static SupportedProtocolVersion>,
    pub warnings: Vec<String>,
}

/// Resolves `tlsMinVersion` and `tlsCipherSuites`.
pub fn settings(min_version: &str, cipher_suites: &[String]) -> Result<TlsSettings, String> {
    let mut warnings = Vec::new();
    let tls12_allowed = match min_version {
        "" | "VersionTLS12" => true,
        "VersionTLS10" | "VersionTLS11" => {
            warnings.push(format!("tlsMinVersion {min_version}: only TLS 1.2 and 1.3 are offered"));
            true
        }
        "VersionTLS13" => false,
        other => return Err(format!("unknown tls version {other:?}")),
    };
    let mut provider = rustls::crypto::ring::default_provider();
    if !cipher_suites.is_empty() {
        let mut chosen: Vec<rustls::SupportedCipherSuite> =
            provider.cipher_suites.iter().filter(|s| s.version() == &rustls::version::TLS13).copied().collect();
        for name in cipher_suites {
            if let Some((_, suite)) = IMPLEMENTED.iter().find(|(n, _)| n == name) {
                if !chosen.iter().any(|s| s.suite() == suite.suite()) {
                    chosen.push(*suite);
                }
            } else if NOT_IMPLEMENTED.contains(&name.as_str()) {
                warnings.push(format!("cipher suite {name} is not offered: rustls implements only ECDHE AEAD suites"));
            } else if !TLS13.contains(&name.as_str()) {
                return Err(format!("Cipher suite {name} not supported or doesn't exist"));
            }
        }
        let tls12 = chosen.iter().filter(|s| s.version() == &rustls::version::TLS12).count();
        if tls12 == 0 && tls12_allowed {
            warnings.push("no TLS 1.2 cipher suite of tlsCipherSuites can be offered: only TLS 1.3 is served".into());
        }
        provider.cipher_suites = chosen;
    }
    let has_tls12 = provider.cipher_suites.iter().any(|s| s.version() == &rustls::version::TLS12);
    let versions = if tls12_allowed && has_tls12 {
        vec![&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        vec![&rustls::version::TLS13]
    };
    Ok(TlsSettings { provider: Arc::new(provider), versions, warnings })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Handshakes a client limited to `versions` and `suites` against a server with `s`;
    /// the negotiated (version, suite) or the error.
    async fn handshake(
        s: &TlsSettings,
        versions: &[&'static SupportedProtocolVersion],
        client_suites: Option<Vec<rustls::SupportedCipherSuite>>,
    ) -> Result<(rustls::ProtocolVersion, rustls::CipherSuite), String> {
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).map_err(|e| e.to_string())?;
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
        let server = rustls::ServerConfig::builder_with_provider(s.provider.clone())
            .with_protocol_versions(&s.versions)
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key_der)
            .map_err(|e| e.to_string())?;
        let mut client_provider = rustls::crypto::ring::default_provider();
        if let Some(suites) = client_suites {
            client_provider.cipher_suites = suites;
        }
        let client_provider = Arc::new(client_provider);
        // The client trusts the server's self-signed certificate itself.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).map_err(|e| e.to_string())?;
        let client = rustls::ClientConfig::builder_with_provider(client_provider)
            .with_protocol_versions(versions)
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let (a, b) = tokio::io::duplex(64 << 10);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let server_task = tokio::spawn(async move {
            let mut tls = acceptor.accept(b).await.map_err(|e| e.to_string())?;
            let mut buf = [0u8; 2];
            tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let mut tls = connector.connect(name, a).await.map_err(|e| e.to_string())?;
        tls.write_all(b"hi").await.map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        let negotiated = (
            conn.protocol_version().ok_or("no version")?,
            conn.negotiated_cipher_suite().map(|s| s.suite()).ok_or("no suite")?,
        );
        server_task.await.map_err(|e| e.to_string())??;
        Ok(negotiated)
    }

    #[test]
    fn names_resolve_as_upstreams_flags_do() {
        assert_eq!(settings("VersionTLS9", &[]).err(), Some("unknown tls version \"VersionTLS9\"".into()));
        let e = settings("", &names(&["TLS_NOPE"])).err();
        assert_eq!(e, Some("Cipher suite TLS_NOPE not supported or doesn't exist".into()));
        let s = settings(
            "VersionTLS10",
            &names(&["TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]),
        )
        .expect("settings");
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        assert_eq!(s.versions.len(), 2);
        let only13 =
            settings("", &names(&["TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_AES_128_GCM_SHA256"])).expect("settings");
        assert_eq!(only13.versions, vec![&rustls::version::TLS13]);
    }

    #[tokio::test]
    async fn min_version_and_suites_bind_the_handshake() {
        let tls12 = [&rustls::version::TLS12];
        // Defaults: a TLS 1.2 client gets in.
        let open = settings("", &[]).expect("settings");
        let (v, _) = handshake(&open, &tls12, None).await.expect("TLS 1.2 allowed");
        assert_eq!(v, rustls::ProtocolVersion::TLSv1_2);
        // VersionTLS13: the TLS 1.2 client is refused, a TLS 1.3 one gets in.
        let strict = settings("VersionTLS13", &[]).expect("settings");
        assert!(handshake(&strict, &tls12, None).await.is_err());
        let (v, _) = handshake(&strict, &[&rustls::version::TLS13], None).await.expect("TLS 1.3");
        assert_eq!(v, rustls::ProtocolVersion::TLSv1_3);
        // One TLS 1.2 suite chosen: a client without it is refused, one with it gets that suite.
        let picked = settings("", &names(&["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"])).expect("settings");
        let other = vec![suites::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256];
        assert!(handshake(&picked, &tls12, Some(other)).await.is_err());
        let (_, suite) = handshake(&picked, &tls12, None).await.expect("the chosen suite");
        assert_eq!(suite, rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384);
    }
}
