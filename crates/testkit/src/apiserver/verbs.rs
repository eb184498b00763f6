//! GET, LIST, CREATE, UPDATE and PATCH as the generic registry store does them: system
//! metadata, optimistic concurrency on resourceVersion, no-op updates that write nothing,
//! dry runs, and deletion on update once the last finalizer of a deleting object is gone.

use serde_json::{Value, json};

use super::admission::namespace_objects;
use super::auth::UserInfo;
use super::delete::{GcQueue, remove_and_collect, run_gc};
use super::errors::{ApiError, ApiResult};
use super::object::{
    ensure_object, finalizers, meta_mut, meta_str, name, namespace, new_uid, now, random_suffix, set_meta,
};
use super::patch;
use super::resources::{Resource, find};
use super::selectors::Filter;
use super::state::{Shared, lock};
use super::store::{ObjKey, Store};
use super::strategy::{
    bumps_generation, normalize, prepare_create, prepare_update, present, to_storage, validate_name,
};

pub(crate) fn key(res: &Resource, ns: Option<&str>, name: &str) -> ObjKey {
    ObjKey::new(res.storage, if res.namespaced { ns.unwrap_or_default() } else { "" }, name)
}

pub(crate) fn get(shared: &Shared, res: &Resource, ns: Option<&str>, name: &str) -> ApiResult<Value> {
    let store = lock(&shared.store);
    store.get(&key(res, ns, name)).map(|o| present(res, o)).ok_or_else(|| ApiError::not_found(res, name))
}

pub(crate) fn list(shared: &Shared, res: &Resource, ns: Option<&str>, filter: &Filter) -> Value {
    let store = lock(&shared.store);
    let items: Vec<Value> = store
        .list(res.storage, if res.namespaced { ns } else { None })
        .filter(|o| filter.matches(o))
        .map(|o| {
            let mut v = present(res, o);
            if let Some(m) = v.as_object_mut() {
                m.remove("kind");
                m.remove("apiVersion");
            }
            v
        })
        .collect();
    json!({
        "kind": format!("{}List", res.kind),
        "apiVersion": res.api_version(),
        "metadata": {"resourceVersion": store.rv().to_string()},
        "items": items,
    })
}

/// Stamps the system metadata of a new object and stores it (namespace controllers' objects and
/// `TestApiServer::put` use this too).
pub(crate) fn insert_new(store: &mut Store, res: &Resource, mut obj: Value) -> Value {
    let meta = meta_mut(&mut obj);
    meta.insert("uid".to_owned(), json!(new_uid()));
    meta.insert("creationTimestamp".to_owned(), json!(now()));
    for f in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"] {
        meta.remove(f);
    }
    let k = key(res, Some(namespace(&obj)), name(&obj));
    store.put(k, obj)
}

pub(crate) fn create(
    shared: &Shared,
    res: &Resource,
    ns: Option<&str>,
    body: &Value,
    user: &UserInfo,
    dry_run: bool,
) -> ApiResult<Value> {
    ensure_object(body).map_err(ApiError::bad_request)?;
    let mut obj = normalize(res, body)?;
    if res.namespaced {
        let Some(ns) = ns else {
            return Err(ApiError::method_not_allowed());
        };
        let body_ns = namespace(&obj);
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        set_meta(&mut obj, "namespace", Some(json!(ns)));
    } else {
        set_meta(&mut obj, "namespace", None);
    }
    if meta_str(&obj, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
        return Err(ApiError::internal("resourceVersion should not be set on objects to be created"));
    }
    let generate = meta_str(&obj, "generateName").unwrap_or_default().to_owned();
    if name(&obj).is_empty() && generate.is_empty() {
        return Err(ApiError::invalid(
            res,
            "",
            &[("metadata.name".to_owned(), "Required value: name or generateName is required".to_owned())],
        ));
    }

    let mut store = lock(&shared.store);
    if name(&obj).is_empty() {
        let candidate = (0..8)
            .map(|_| format!("{generate}{}", random_suffix(5)))
            .find(|n| store.get(&key(res, ns, n)).is_none())
            .unwrap_or_else(|| format!("{generate}{}", random_suffix(5)));
        set_meta(&mut obj, "name", Some(json!(candidate)));
    }
    let n = name(&obj).to_owned();
    validate_name(res, &n).map_err(|c| ApiError::invalid(res, &n, &[c]))?;
    if res.namespaced {
        let ns = ns.unwrap_or_default();
        let ns_obj = store.get(&ObjKey::new("namespaces", "", ns)).ok_or_else(|| ApiError::namespace_not_found(ns))?;
        if ns_obj.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::forbidden(format!(
                "{} \"{n}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                res.qualified()
            )));
        }
    }
    prepare_create(res, &mut obj, &store, user)?;
    let obj = to_storage(res, obj);
    if store.get(&key(res, ns, &n)).is_some() {
        return Err(ApiError::already_exists(res, &n));
    }
    if dry_run {
        let mut out = obj;
        set_meta(&mut out, "uid", Some(json!(new_uid())));
        set_meta(&mut out, "creationTimestamp", Some(json!(now())));
        return Ok(present(res, &out));
    }
    let stored = insert_new(&mut store, res, obj);
    if res.plural == "namespaces" && res.group.is_empty() {
        let sa_res = find("", "v1", "serviceaccounts");
        let cm_res = find("", "v1", "configmaps");
        for (plural, o) in namespace_objects(&n, &shared.ca.cert_pem) {
            if let Some(r) = if plural == "serviceaccounts" { sa_res } else { cm_res } {
                insert_new(&mut store, r, o);
            }
        }
    }
    Ok(present(res, &stored))
}

/// Checks the request object's name and namespace against the URL's.
fn check_identity(res: &Resource, ns: Option<&str>, url_name: &str, obj: &mut Value) -> ApiResult<()> {
    let body_name = name(obj).to_owned();
    if body_name.is_empty() {
        set_meta(obj, "name", Some(json!(url_name)));
    } else if body_name != url_name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({url_name})"
        )));
    }
    if res.namespaced {
        let body_ns = namespace(obj);
        if !body_ns.is_empty() && Some(body_ns) != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        set_meta(obj, "namespace", ns.map(|n| json!(n)));
    }
    Ok(())
}

pub(crate) fn update(
    shared: &Shared,
    res: &Resource,
    ns: Option<&str>,
    name: &str,
    sub: Option<&str>,
    body: &Value,
    dry_run: bool,
) -> ApiResult<Value> {
    ensure_object(body).map_err(ApiError::bad_request)?;
    let mut obj = normalize(res, body)?;
    check_identity(res, ns, name, &mut obj)?;
    let mut store = lock(&shared.store);
    let k = key(res, ns, name);
    let old = store.get(&k).cloned().ok_or_else(|| ApiError::not_found(res, name))?;
    let mut gc = GcQueue::default();
    let out = update_locked(&mut store, res, k, sub, &old, to_storage(res, obj), dry_run, &mut gc);
    run_gc(&mut store, gc);
    out
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn patch(
    shared: &Shared,
    res: &Resource,
    ns: Option<&str>,
    name: &str,
    sub: Option<&str>,
    content_type: &str,
    body: &Value,
    dry_run: bool,
) -> ApiResult<Value> {
    if ![patch::MERGE, patch::STRATEGIC, patch::JSON_PATCH].contains(&content_type) {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    let mut store = lock(&shared.store);
    let k = key(res, ns, name);
    let old = store.get(&k).cloned().ok_or_else(|| ApiError::not_found(res, name))?;
    let patched = patch::apply(content_type, res.kind, &present(res, &old), body)
        .map_err(|e| ApiError::invalid(res, name, &[("patch".to_owned(), format!("Invalid value: {body}: {e}"))]))?;
    let mut obj = normalize(res, &patched)?;
    check_identity(res, ns, name, &mut obj)?;
    let mut gc = GcQueue::default();
    let out = update_locked(&mut store, res, k, sub, &old, to_storage(res, obj), dry_run, &mut gc);
    run_gc(&mut store, gc);
    out
}

/// The shared tail of update and patch: preconditions, strategy, system metadata, commit.
#[allow(clippy::too_many_arguments)]
fn update_locked(
    store: &mut Store,
    res: &Resource,
    k: ObjKey,
    sub: Option<&str>,
    old: &Value,
    obj: Value,
    dry_run: bool,
    gc: &mut GcQueue,
) -> ApiResult<Value> {
    let name = k.name.clone();
    if meta_str(&obj, "resourceVersion")
        .is_some_and(|rv| !rv.is_empty() && Some(rv) != meta_str(old, "resourceVersion"))
    {
        return Err(ApiError::modified(res, &name));
    }
    if let Some(u) = meta_str(&obj, "uid").filter(|u| !u.is_empty())
        && Some(u) != meta_str(old, "uid")
    {
        return Err(ApiError::conflict(
            res,
            &name,
            &format!(
                "Precondition failed: UID in precondition: {u}, UID in object meta: {}",
                meta_str(old, "uid").unwrap_or_default()
            ),
        ));
    }
    let mut new = prepare_update(res, sub, old, obj)?;
    // Metadata the server owns.
    for f in
        ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "resourceVersion"]
    {
        set_meta(&mut new, f, old.get("metadata").and_then(|m| m.get(f)).cloned());
    }
    if bumps_generation(res, old, &new) {
        let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
        set_meta(&mut new, "generation", Some(json!(g + 1)));
    }
    let deleting = old.pointer("/metadata/deletionTimestamp").is_some();
    if deleting && finalizers(&new).iter().any(|f| !finalizers(old).contains(f)) {
        return Err(ApiError::invalid(
            res,
            &name,
            &[(
                "metadata.finalizers".to_owned(),
                "Forbidden: no new finalizers can be added if the object is being deleted".to_owned(),
            )],
        ));
    }
    if new == *old {
        return Ok(present(res, old));
    }
    if dry_run {
        return Ok(present(res, &new));
    }
    // shouldDeleteDuringUpdate: the last finalizer of an object deleted without grace is gone.
    let grace = old.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0);
    if deleting && grace == 0 && finalizers(&new).is_empty() {
        let removed = remove_and_collect(store, &k, gc);
        return Ok(present(res, &removed.unwrap_or_default()));
    }
    Ok(present(res, &store.put(k, new)))
}
