//! CertificateSigningRequest rules: create-time validation and the requester in `spec`, and
//! the split of `status.conditions` between the `status` and `approval` subresources.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::auth::UserInfo;
use super::errors::{ApiError, ApiResult};
use super::object::{name, now};
use super::resources::Resource;

/// Create-time validation of a CSR and the requester recorded in its spec.
pub(crate) fn prepare_create(res: &Resource, obj: &mut Value, user: &UserInfo) -> ApiResult<()> {
    let mut causes = Vec::new();
    let request = obj.pointer("/spec/request").and_then(Value::as_str).and_then(|b| STANDARD.decode(b).ok());
    let parses = request.as_deref().is_some_and(|pem| {
        x509_parser::pem::parse_x509_pem(pem).is_ok_and(|(_, p)| {
            p.label == "CERTIFICATE REQUEST"
                && <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<
                    '_,
                    _,
                >>::from_der(&p.contents)
                .is_ok()
        })
    });
    if !parses {
        causes.push((
            "spec.request".to_owned(),
            "Invalid value: []byte{...}: PEM block type must be CERTIFICATE REQUEST".to_owned(),
        ));
    }
    if obj.pointer("/spec/signerName").and_then(Value::as_str).is_none_or(str::is_empty) {
        causes.push(("spec.signerName".to_owned(), "Required value".to_owned()));
    }
    if obj.pointer("/spec/usages").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        causes.push(("spec.usages".to_owned(), "Required value".to_owned()));
    }
    if let Some(s) = obj.pointer("/spec/expirationSeconds").and_then(Value::as_i64)
        && s < 600
    {
        causes.push((
            "spec.expirationSeconds".to_owned(),
            format!("Invalid value: {s}: may not specify a duration less than 600 seconds (10 minutes)"),
        ));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(res, name(obj), &causes));
    }
    obj["status"] = json!({});
    obj["spec"]["username"] = json!(user.username);
    obj["spec"]["groups"] = json!(user.groups);
    if !user.uid.is_empty() {
        obj["spec"]["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        obj["spec"]["extra"] = json!(user.extra);
    }
    Ok(())
}

const APPROVAL_TYPES: [&str; 2] = ["Approved", "Denied"];

/// CSR conditions after a write to `status` (`approval` false: the approval conditions stay as
/// they were) or to `approval` (true: only the approval conditions come from the request).
pub(crate) fn merge_conditions(old: &Value, new_status: &Value, approval: bool) -> Value {
    let is_approval = |c: &&Value| c.get("type").and_then(Value::as_str).is_some_and(|t| APPROVAL_TYPES.contains(&t));
    let list = |v: &Value| v.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let old_list = list(old.get("status").unwrap_or(&Value::Null));
    let new_list = list(new_status);
    let mut out: Vec<Value> = if approval {
        let mut keep: Vec<Value> = old_list.iter().filter(|c| !is_approval(c)).cloned().collect();
        keep.extend(new_list.iter().filter(|c| is_approval(c)).cloned());
        keep
    } else {
        let mut keep: Vec<Value> = new_list.iter().filter(|c| !is_approval(c)).cloned().collect();
        keep.extend(old_list.iter().filter(|c| is_approval(c)).cloned());
        keep
    };
    let stamp = now();
    for c in out.iter_mut().filter_map(Value::as_object_mut) {
        c.entry("lastUpdateTime").or_insert_with(|| json!(stamp));
        c.entry("lastTransitionTime").or_insert_with(|| json!(stamp));
    }
    if out.is_empty() { Value::Null } else { Value::Array(out) }
}

/// Approval validation: Approved and Denied exclude each other and are never withdrawn.
pub(crate) fn check_approval(res: &Resource, old: &Value, conditions: &Value) -> ApiResult<()> {
    let has = |v: &Value, t: &str| {
        v.as_array().is_some_and(|a| a.iter().any(|c| c.get("type").and_then(Value::as_str) == Some(t)))
    };
    let old_conditions = old.pointer("/status/conditions").cloned().unwrap_or(Value::Null);
    let mut causes = Vec::new();
    if has(conditions, "Approved") && has(conditions, "Denied") {
        causes.push((
            "status.conditions".to_owned(),
            "Invalid value: \"Approved\": Approved and Denied conditions are mutually exclusive".to_owned(),
        ));
    }
    for t in APPROVAL_TYPES {
        if has(&old_conditions, t) && !has(conditions, t) {
            causes.push((
                "status.conditions".to_owned(),
                format!("Forbidden: updates may not remove a condition of type {t:?}"),
            ));
        }
    }
    for c in conditions.as_array().into_iter().flatten() {
        if c.get("status").and_then(Value::as_str).is_some_and(|s| s != "True")
            && c.get("type").and_then(Value::as_str).is_some_and(|t| APPROVAL_TYPES.contains(&t))
        {
            causes.push((
                "status.conditions[].status".to_owned(),
                "Unsupported value: only \"True\" is allowed".to_owned(),
            ));
        }
    }
    if causes.is_empty() { Ok(()) } else { Err(ApiError::invalid(res, name(old), &causes)) }
}
