//! Kubeconfig files for tests: written from scratch for the test API server, or derived from an
//! existing kubeconfig (same cluster, other credentials) so the same code serves real clusters.

use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// How a kubeconfig user authenticates.
#[derive(Debug, Clone)]
pub enum Credentials {
    Token(String),
    /// PEM certificate and key, embedded as `client-certificate-data`/`client-key-data`.
    ClientCert {
        cert_pem: String,
        key_pem: String,
    },
}

fn user_entry(creds: &Credentials) -> Value {
    match creds {
        Credentials::Token(t) => json!({"token": t}),
        Credentials::ClientCert { cert_pem, key_pem } => json!({
            "client-certificate-data": STANDARD.encode(cert_pem),
            "client-key-data": STANDARD.encode(key_pem),
        }),
    }
}

fn write(path: &Path, cluster: Value, creds: &Credentials, namespace: &str) -> Result<()> {
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testkit", "cluster": cluster}],
        "users": [{"name": "testkit-user", "user": user_entry(creds)}],
        "contexts": [{"name": "testkit", "context": {"cluster": "testkit", "user": "testkit-user", "namespace": namespace}}],
        "current-context": "testkit",
    });
    let yaml = serde_yaml::to_string(&doc).context("rendering kubeconfig")?;
    std::fs::write(path, yaml).with_context(|| format!("writing kubeconfig {}", path.display()))
}

/// Writes a kubeconfig for `server` (with `ca_pem` for HTTPS) and `creds`.
pub fn write_kubeconfig(path: &Path, server: &str, ca_pem: Option<&str>, creds: &Credentials) -> Result<()> {
    let mut cluster = json!({"server": server});
    if let Some(ca) = ca_pem {
        cluster["certificate-authority-data"] = json!(STANDARD.encode(ca));
    }
    write(path, cluster, creds, "default")
}

/// Writes a kubeconfig for the cluster of `source`'s current context with other credentials.
/// Relative certificate-authority paths are resolved against `source`'s directory.
pub fn derive_kubeconfig(source: &Path, dest: &Path, creds: &Credentials) -> Result<()> {
    let text = std::fs::read_to_string(source).with_context(|| format!("reading kubeconfig {}", source.display()))?;
    let doc: Value = serde_yaml::from_str(&text).with_context(|| format!("parsing kubeconfig {}", source.display()))?;
    let current = doc.get("current-context").and_then(Value::as_str).context("kubeconfig has no current-context")?;
    let find = |list: &str, name: &str| -> Option<Value> {
        doc.get(list)?.as_array()?.iter().find(|e| e.get("name").and_then(Value::as_str) == Some(name)).cloned()
    };
    let context = find("contexts", current).context("current context not found")?;
    let cluster_name = context.pointer("/context/cluster").and_then(Value::as_str).context("context has no cluster")?;
    let mut cluster =
        find("clusters", cluster_name).and_then(|c| c.get("cluster").cloned()).context("cluster not found")?;
    if let Some(ca) = cluster.get("certificate-authority").and_then(Value::as_str).map(str::to_owned) {
        let base = source.parent().unwrap_or(Path::new("."));
        cluster["certificate-authority"] = json!(base.join(ca).display().to_string());
    }
    let namespace = context.pointer("/context/namespace").and_then(Value::as_str).unwrap_or("default");
    write(dest, cluster, creds, namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_kubeconfig_keeps_the_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let admin = dir.path().join("admin");
        write_kubeconfig(&admin, "https://127.0.0.1:1", Some("CA"), &Credentials::Token("t".into())).unwrap();
        let derived = dir.path().join("boot");
        derive_kubeconfig(&admin, &derived, &Credentials::Token("abcdef.0123456789abcdef".into())).unwrap();
        let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&derived).unwrap()).unwrap();
        assert_eq!(doc["clusters"][0]["cluster"]["server"], "https://127.0.0.1:1");
        assert_eq!(doc["clusters"][0]["cluster"]["certificate-authority-data"], STANDARD.encode("CA"));
        assert_eq!(doc["users"][0]["user"]["token"], "abcdef.0123456789abcdef");
    }
}
