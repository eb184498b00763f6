//! A bare HTTPS client for the kubelet API in tests: one HTTP/1.0 request per connection, the
//! server's certificate not verified (the kubelet's is self-signed), an optional client
//! certificate, and a CA/leaf generator for client-certificate tests.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client certificate chain and its key.
pub type ClientCert = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// Sends `method path` to `127.0.0.1:port` with the extra `headers`; returns (status, body).
pub async fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    cert: Option<ClientCert>,
) -> Result<(u16, String), String> {
    let mut tls = open(port, method, path, headers, cert).await?;
    let mut buf = Vec::new();
    // The server may close without a TLS close_notify; what was read stands.
    let _ = tls.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf);
    let code =
        text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("no response: {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}

/// The TLS connection of a request just sent (HTTP/1.0: the body runs until the server
/// closes), for reading a streamed response as it comes.
pub async fn open(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    cert: Option<ClientCert>,
) -> Result<TlsStream, String> {
    let mut tls = connect(port, cert).await?;
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: localhost\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
    Ok(tls)
}

pub use tokio_tungstenite;

/// The DER bytes of the first PEM block in `pem` (a certificate or a certificate request).
pub fn pem_der(pem: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let text = String::from_utf8_lossy(pem);
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body.trim()).unwrap_or_default()
}

pub type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS connection to `127.0.0.1:port`, the server's certificate not verified.
pub async fn connect(port: u16, cert: Option<ClientCert>) -> Result<TlsStream, String> {
    connect_to("127.0.0.1", port, cert).await
}

/// A TLS connection to `host:port`, the server's certificate not verified.
pub async fn connect_to(host: &str, port: u16, cert: Option<ClientCert>) -> Result<TlsStream, String> {
    connect_with_versions(host, port, cert, rustls::DEFAULT_VERSIONS).await
}

/// Whether a client that speaks only TLS 1.2 completes a handshake with `127.0.0.1:port`.
pub async fn tls12_handshake(port: u16) -> Result<(), String> {
    connect_with_versions("127.0.0.1", port, None, &[&rustls::version::TLS12]).await.map(drop)
}

async fn connect_with_versions(
    host: &str,
    port: u16,
    cert: Option<ClientCert>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<TlsStream, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(core_kubelet::httpget::NoVerify::new(provider)));
    let config = match cert {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| e.to_string())?,
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))
}

/// A WebSocket to `path` on the kubelet API offering `protocols` (e.g. `v4.channel.k8s.io`);
/// the protocol the server chose comes back with the socket.
pub async fn websocket(
    port: u16,
    path: &str,
    protocols: &[&str],
) -> Result<(tokio_tungstenite::WebSocketStream<TlsStream>, String), String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let tls = connect(port, None).await?;
    let mut req = format!("wss://localhost:{port}{path}").into_client_request().map_err(|e| e.to_string())?;
    let offered = protocols.join(", ").parse().map_err(|e| format!("{e}"))?;
    req.headers_mut().insert("Sec-WebSocket-Protocol", offered);
    let (ws, resp) = tokio_tungstenite::client_async(req, tls).await.map_err(|e| format!("websocket: {e}"))?;
    let chosen =
        resp.headers().get("Sec-WebSocket-Protocol").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    Ok((ws, chosen))
}

/// A certificate authority that signs client certificates.
pub struct TestCa {
    pub pem: String,
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
}

impl TestCa {
    pub fn new(name: &str) -> Result<Self, String> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        Ok(Self { pem: cert.pem(), params, key })
    }

    /// A client certificate for user `cn` in groups `orgs`.
    pub fn client_cert(&self, cn: &str, orgs: &[&str]) -> Result<ClientCert, String> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(rcgen::DnType::OrganizationName, *o);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
        let der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
        Ok((vec![cert.der().clone()], der))
    }
}
