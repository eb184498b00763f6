//! Per-resource rules of the real registry strategies: decoding and defaulting, create-time
//! status reset, what main-resource and subresource writes may change, pod graceful deletion
//! (`CheckGracefulDelete`), name validation, and the events.k8s.io ↔ core/v1 event conversion.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::auth::UserInfo;
use super::errors::{ApiError, ApiResult};
use super::object::{meta_mut, name};
use super::resources::Resource;
use super::store::{ObjKey, Store};
use super::{admission, csr};

/// Decodes `v` as the typed object and encodes it again: unknown fields are dropped and type
/// errors are reported as the API does.
fn roundtrip<T: DeserializeOwned + Serialize>(res: &Resource, v: &Value) -> ApiResult<Value> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            res.kind, res.version, res.kind
        ))
    })?;
    serde_json::to_value(typed).map_err(ApiError::internal)
}

/// Decodes and re-encodes a request object of `res` (see [`roundtrip`]).
pub(crate) fn normalize(res: &Resource, v: &Value) -> ApiResult<Value> {
    use k8s_openapi::api::{certificates, coordination, core::v1 as core, events};
    match (res.group, res.plural) {
        ("", "pods") => roundtrip::<Pod>(res, v),
        ("", "nodes") => roundtrip::<core::Node>(res, v),
        ("", "namespaces") => roundtrip::<core::Namespace>(res, v),
        ("", "configmaps") => roundtrip::<core::ConfigMap>(res, v),
        ("", "secrets") => roundtrip::<core::Secret>(res, v),
        ("", "services") => roundtrip::<core::Service>(res, v),
        ("", "serviceaccounts") => roundtrip::<core::ServiceAccount>(res, v),
        ("", "events") => roundtrip::<core::Event>(res, v),
        ("events.k8s.io", _) => roundtrip::<events::v1::Event>(res, v),
        ("coordination.k8s.io", _) => roundtrip::<coordination::v1::Lease>(res, v),
        ("certificates.k8s.io", _) => roundtrip::<certificates::v1::CertificateSigningRequest>(res, v),
        _ => Ok(v.clone()),
    }
}

const SUBDOMAIN_HELP: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_HELP: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Upstream's name validation: DNS labels for namespaces and services; for CSRs only what
/// every name needs to be a path segment (upstream: "We don't care what you call your
/// certificate requests", and the kubelet's names are mixed-case base64); subdomains otherwise.
pub(crate) fn validate_name(res: &Resource, n: &str) -> Result<(), (String, String)> {
    if res.plural == "certificatesigningrequests" {
        return match n {
            "." | ".." => Err(("metadata.name".to_owned(), format!("Invalid value: {n:?}: may not be '{n}'"))),
            _ if n.contains('/') || n.contains('%') => {
                Err(("metadata.name".to_owned(), format!("Invalid value: {n:?}: may not contain '/' or '%'")))
            }
            _ => Ok(()),
        };
    }
    let label_only = matches!(res.plural, "namespaces" | "services");
    let ok = if label_only { is_label(n) } else { n.len() <= 253 && n.split('.').all(is_label) };
    if ok {
        return Ok(());
    }
    let help = if label_only { LABEL_HELP } else { SUBDOMAIN_HELP };
    Err(("metadata.name".to_owned(), format!("Invalid value: {n:?}: {help}")))
}

fn secret_string_data(obj: &mut Value) {
    let Some(Value::Object(string_data)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    let data = obj.as_object_mut().map(|o| o.entry("data").or_insert_with(|| json!({})));
    if let Some(Value::Object(data)) = data {
        for (k, v) in string_data {
            data.insert(k, json!(STANDARD.encode(v.as_str().unwrap_or_default())));
        }
    }
}

fn set_default(obj: &mut Value, pointer_parent: &str, key: &str, value: Value) {
    if let Some(Value::Object(m)) = obj.pointer_mut(pointer_parent) {
        m.entry(key.to_owned()).or_insert(value);
    }
}

/// Kind-specific preparation of a new object (already decoded by [`normalize`]).
pub(crate) fn prepare_create(res: &Resource, obj: &mut Value, store: &Store, user: &UserInfo) -> ApiResult<()> {
    match (res.group, res.plural) {
        ("", "pods") => {
            let mut pod: Pod = serde_json::from_value(obj.clone()).map_err(ApiError::internal)?;
            core_kubelet::source::apply_api_defaults(&mut pod);
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let sa_name = pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).filter(|s| !s.is_empty());
            let sa = store.get(&ObjKey::new("serviceaccounts", &ns, sa_name.as_deref().unwrap_or("default")));
            admission::service_account(&mut pod, sa)?;
            admission::priority(&mut pod);
            admission::default_toleration_seconds(&mut pod);
            if let Err(e) = core_kubelet::source::validate_pod(&pod) {
                let causes: Vec<(String, String)> = e
                    .errors
                    .iter()
                    .map(|f| {
                        let s = f.to_string();
                        let field = f.field.clone();
                        let msg = s.strip_prefix(&format!("{field}: ")).unwrap_or(&s).to_owned();
                        (field, msg)
                    })
                    .collect();
                return Err(ApiError::invalid(res, &pod.metadata.name.unwrap_or_default(), &causes));
            }
            let qos = core_kubelet::status::compute_pod_qos(&pod);
            *obj = serde_json::to_value(&pod).map_err(ApiError::internal)?;
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
            obj["metadata"]["generation"] = json!(1);
        }
        ("", "nodes") => {
            if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut)
                && !status.contains_key("allocatable")
                && let Some(cap) = status.get("capacity").cloned()
            {
                status.insert("allocatable".to_owned(), cap);
            }
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("configSource");
            }
        }
        ("", "namespaces") => {
            let n = name(obj).to_owned();
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
            let labels = meta_mut(obj).entry("labels").or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".to_owned(), json!(n));
            }
        }
        ("", "secrets") => {
            secret_string_data(obj);
            if obj.get("type").is_none() {
                obj["type"] = json!("Opaque");
            }
        }
        ("", "services") => prepare_service(obj, store),
        ("events.k8s.io", _) => validate_new_event(res, obj)?,
        ("certificates.k8s.io", _) => csr::prepare_create(res, obj, user)?,
        _ => {}
    }
    Ok(())
}

fn prepare_service(obj: &mut Value, store: &Store) {
    if obj.get("spec").is_none() {
        obj["spec"] = json!({});
    }
    set_default(obj, "/spec", "type", json!("ClusterIP"));
    set_default(obj, "/spec", "sessionAffinity", json!("None"));
    if let Some(Value::Array(ports)) = obj.pointer_mut("/spec/ports") {
        for p in ports.iter_mut().filter(|p| p.is_object()) {
            let port = p.get("port").cloned().unwrap_or(json!(0));
            set_default(p, "", "protocol", json!("TCP"));
            set_default(p, "", "targetPort", port);
        }
    }
    let external = obj.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName");
    let has_ip = obj.pointer("/spec/clusterIP").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    if !external && !has_ip {
        let used: Vec<String> = store
            .list("services", None)
            .filter_map(|s| s.pointer("/spec/clusterIP").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let free = (2u32..65_534).map(|i| format!("10.96.{}.{}", i / 256, i % 256)).find(|ip| !used.contains(ip));
        if let Some(ip) = free {
            obj["spec"]["clusterIP"] = json!(ip);
            obj["spec"]["clusterIPs"] = json!([ip]);
            set_default(obj, "/spec", "ipFamilies", json!(["IPv4"]));
            set_default(obj, "/spec", "ipFamilyPolicy", json!("SingleStack"));
            set_default(obj, "/spec", "internalTrafficPolicy", json!("Cluster"));
        }
    }
}

fn validate_new_event(res: &Resource, obj: &Value) -> ApiResult<()> {
    let mut causes = Vec::new();
    for field in ["eventTime", "reportingController", "reportingInstance", "action", "reason"] {
        if obj.get(field).is_none_or(|v| v.is_null() || v.as_str() == Some("")) {
            causes.push((field.to_owned(), "Required value".to_owned()));
        }
    }
    if causes.is_empty() { Ok(()) } else { Err(ApiError::invalid(res, name(obj), &causes)) }
}

fn take(obj: &Value, field: &str) -> Value {
    obj.get(field).cloned().unwrap_or(Value::Null)
}

fn put(obj: &mut Value, field: &str, value: Value) {
    if let Some(m) = obj.as_object_mut() {
        if value.is_null() {
            m.remove(field);
        } else {
            m.insert(field.to_owned(), value);
        }
    }
}

/// The object to store for an update of `res` (subresource `sub`) from `old` to the request's
/// `new` object (already decoded, names checked). Metadata the server owns is restored by the
/// caller.
pub(crate) fn prepare_update(res: &Resource, sub: Option<&str>, old: &Value, mut new: Value) -> ApiResult<Value> {
    match sub {
        None => {
            if res.subresources.contains(&"status") {
                put(&mut new, "status", take(old, "status"));
            }
            match (res.group, res.plural) {
                ("", "pods") => {
                    let mut pod: Pod = serde_json::from_value(new.clone()).map_err(ApiError::internal)?;
                    core_kubelet::source::apply_api_defaults(&mut pod);
                    new = serde_json::to_value(pod).map_err(ApiError::internal)?;
                    put(&mut new, "status", take(old, "status"));
                    check_pod_spec_update(res, old, &new)?;
                }
                ("", "namespaces") => {
                    let finalizers = old.pointer("/spec/finalizers").cloned().unwrap_or(Value::Null);
                    if !new.get("spec").is_some_and(Value::is_object) {
                        new["spec"] = json!({});
                    }
                    put(&mut new["spec"], "finalizers", finalizers);
                }
                ("", "secrets") => secret_string_data(&mut new),
                ("certificates.k8s.io", _) => put(&mut new, "spec", take(old, "spec")),
                _ => {}
            }
        }
        Some("status") => {
            let status = take(&new, "status");
            put(&mut new, "spec", take(old, "spec"));
            if res.plural == "pods" {
                // PodStatusStrategy: spec, deletionTimestamp and ownerReferences stay; the
                // immutable qosClass is backfilled.
                let owners = old.pointer("/metadata/ownerReferences").cloned().unwrap_or(Value::Null);
                put(&mut new["metadata"], "ownerReferences", owners);
                if new.pointer("/status/qosClass").is_none()
                    && let Some(q) = old.pointer("/status/qosClass").cloned()
                    && new.get("status").is_some_and(Value::is_object)
                {
                    new["status"]["qosClass"] = q;
                }
            }
            if res.plural == "certificatesigningrequests" {
                let conditions = csr::merge_conditions(old, &status, false);
                put(&mut new["status"], "conditions", conditions);
            }
        }
        Some("approval") => {
            let mut status = take(old, "status");
            if !status.is_object() {
                status = json!({});
            }
            let conditions = csr::merge_conditions(old, &take(&new, "status"), true);
            csr::check_approval(res, old, &conditions)?;
            put(&mut status, "conditions", conditions);
            new = old.clone();
            put(&mut new, "status", status);
        }
        Some(other) => return Err(ApiError::bad_request(format!("subresource {other:?} does not accept updates"))),
    }
    Ok(new)
}

/// `ValidatePodUpdate`: only images, activeDeadlineSeconds, tolerations and
/// terminationGracePeriodSeconds may change in a pod's spec.
fn check_pod_spec_update(res: &Resource, old: &Value, new: &Value) -> ApiResult<()> {
    let mask = |v: &Value| -> Value {
        let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(m) = spec.as_object_mut() {
            for f in ["activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"] {
                m.remove(f);
            }
            for list in ["containers", "initContainers"] {
                for c in m.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
                    if let Some(c) = c.as_object_mut() {
                        c.remove("image");
                    }
                }
            }
        }
        spec
    };
    // Stored pods are defaulted; default the old one too so that tests' raw objects compare.
    let old = serde_json::from_value::<Pod>(old.clone())
        .map(|mut p| {
            core_kubelet::source::apply_api_defaults(&mut p);
            serde_json::to_value(p).unwrap_or_default()
        })
        .unwrap_or_else(|_| old.clone());
    if mask(&old) == mask(new) {
        return Ok(());
    }
    Err(ApiError::invalid(res, name(&old), &[(
        "spec".to_owned(),
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".to_owned(),
    )]))
}

/// Whether the spec changed, so that `metadata.generation` must be bumped (pods only, like
/// upstream's pod strategy).
pub(crate) fn bumps_generation(res: &Resource, old: &Value, new: &Value) -> bool {
    res.plural == "pods" && res.group.is_empty() && old.get("spec") != new.get("spec")
}

/// The grace period of a DELETE, or None for resources deleted at once. Pods follow upstream's
/// `CheckGracefulDelete`.
pub(crate) fn graceful_period(res: &Resource, obj: &Value, requested: Option<i64>) -> Option<i64> {
    if !(res.group.is_empty() && res.plural == "pods") {
        return None;
    }
    let mut period =
        requested.or_else(|| obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64)).unwrap_or(0);
    if obj.pointer("/spec/nodeName").and_then(Value::as_str).is_none_or(str::is_empty) {
        period = 0;
    }
    if matches!(obj.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed")) {
        period = 0;
    }
    if period < 0 {
        period = 1;
    }
    Some(period)
}

/// events.k8s.io/v1 field ↔ core/v1 field (the one storage is core's).
const EVENT_FIELDS: [(&str, &str); 6] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(obj: &Value, pairs: impl Iterator<Item = (&'static str, &'static str)>, api_version: &str) -> Value {
    let mut out = obj.clone();
    if let Some(m) = out.as_object_mut() {
        for (from, to) in pairs {
            if let Some(v) = m.remove(from) {
                m.insert(to.to_owned(), v);
            }
        }
        m.insert("apiVersion".to_owned(), json!(api_version));
    }
    out
}

/// The stored form of a request object of `res`.
pub(crate) fn to_storage(res: &Resource, obj: Value) -> Value {
    if !res.is_new_event() {
        return obj;
    }
    let pairs = EVENT_FIELDS.into_iter().chain([("reportingController", "reportingComponent")]);
    rename(&obj, pairs, "v1")
}

/// How `res` presents a stored object: its own apiVersion and kind (and field names).
pub(crate) fn present(res: &Resource, obj: &Value) -> Value {
    let mut out = if res.is_new_event() {
        let pairs =
            EVENT_FIELDS.into_iter().map(|(a, b)| (b, a)).chain([("reportingComponent", "reportingController")]);
        rename(obj, pairs, "")
    } else {
        obj.clone()
    };
    if let Some(m) = out.as_object_mut() {
        let mut head = Map::new();
        head.insert("kind".to_owned(), json!(res.kind));
        head.insert("apiVersion".to_owned(), json!(res.api_version()));
        m.remove("kind");
        m.remove("apiVersion");
        head.append(m);
        *m = head;
    }
    out
}

#[cfg(test)]
#[path = "strategy_tests.rs"]
mod tests;
