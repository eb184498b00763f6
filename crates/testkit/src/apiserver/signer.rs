//! The controller-manager's csrsigning controller in miniature: after every store change it
//! signs approved, unsigned CSRs of the kubelet and client signers (or marks them Failed), off
//! the request path like the real one.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::certs::{SIGNER_CLIENT, SIGNER_KUBELET_CLIENT, SIGNER_KUBELET_SERVING};
use super::object::{now, uid};
use super::state::{Shared, lock};
use super::store::ObjKey;

fn has_condition(csr: &Value, t: &str) -> bool {
    csr.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|c| c.get("type").and_then(Value::as_str) == Some(t)))
}

fn wants_signing(csr: &Value) -> bool {
    let signer = csr.pointer("/spec/signerName").and_then(Value::as_str).unwrap_or_default();
    [SIGNER_KUBELET_CLIENT, SIGNER_KUBELET_SERVING, SIGNER_CLIENT].contains(&signer)
        && has_condition(csr, "Approved")
        && !has_condition(csr, "Failed")
        && !has_condition(csr, "Denied")
        && csr.pointer("/status/certificate").and_then(Value::as_str).is_none_or(str::is_empty)
}

/// Signs one CSR; the new `status`, with the certificate or a Failed condition.
fn sign(shared: &Shared, csr: &Value) -> Value {
    let mut status = csr.get("status").filter(|s| s.is_object()).cloned().unwrap_or(json!({}));
    let pem = csr
        .pointer("/spec/request")
        .and_then(Value::as_str)
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let signer = csr.pointer("/spec/signerName").and_then(Value::as_str).unwrap_or_default();
    let usages: Vec<String> = csr
        .pointer("/spec/usages")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let seconds = csr.pointer("/spec/expirationSeconds").and_then(Value::as_i64);
    match shared.ca.sign_csr(&pem, signer, &usages, seconds) {
        Ok(cert) => status["certificate"] = json!(STANDARD.encode(cert)),
        Err(why) => {
            let stamp = now();
            let failed = json!({"type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                                "message": why, "lastUpdateTime": stamp, "lastTransitionTime": stamp});
            match status.get_mut("conditions").and_then(Value::as_array_mut) {
                Some(c) => c.push(failed),
                None => status["conditions"] = json!([failed]),
            }
        }
    }
    status
}

/// Signs whatever is pending now.
pub(crate) fn sign_pending(shared: &Shared) {
    let pending: Vec<(ObjKey, Value)> = {
        let store = lock(&shared.store);
        store
            .list("certificatesigningrequests", None)
            .filter(|c| wants_signing(c))
            .map(|c| (ObjKey::new("certificatesigningrequests", "", super::object::name(c)), c.clone()))
            .collect()
    };
    for (key, csr) in pending {
        let status = sign(shared, &csr);
        let mut store = lock(&shared.store);
        // Write only if nobody replaced or signed it meanwhile.
        if let Some(current) = store.get(&key).cloned()
            && uid(&current) == uid(&csr)
            && wants_signing(&current)
        {
            let mut updated = current;
            updated["status"] = status;
            store.put(key, updated);
        }
    }
}

/// Runs until the server is dropped (the task is aborted then).
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut changes = lock(&shared.store).subscribe();
    loop {
        sign_pending(&shared);
        if changes.changed().await.is_err() {
            return;
        }
    }
}
