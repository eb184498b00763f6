//! DELETE as the generic registry store does it (`BeforeDelete`, graceful deletion,
//! finalizers, preconditions), namespace deletion, and the garbage collection that follows a
//! removal: dependents by ownerReference, and pods bound to a deleted node (pod GC).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::errors::{ApiError, ApiResult};
use super::object::{finalizers, meta_str, name, owner_uids, set_meta, timestamp, uid};
use super::resources::{RESOURCES, Resource};
use super::state::{Shared, lock};
use super::store::{ObjKey, Store};
use super::strategy::{graceful_period, present};
use super::verbs::key;

/// `metav1.DeleteOptions` as far as the server honours them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Reads a DeleteOptions body (JSON); query parameters are merged by the caller.
    pub fn from_body(body: &Value) -> Self {
        Self {
            grace_period_seconds: body.get("gracePeriodSeconds").and_then(Value::as_i64),
            precondition_uid: body.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_owned),
            precondition_rv: body.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(str::to_owned),
            dry_run: body.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v == "All")),
        }
    }
}

/// Objects removed by an operation, whose dependents are collected before the store unlocks.
#[derive(Default)]
pub(crate) struct GcQueue {
    removed: Vec<(ObjKey, Value)>,
}

/// Removes an object for good and queues it for garbage collection.
pub(crate) fn remove_and_collect(store: &mut Store, k: &ObjKey, gc: &mut GcQueue) -> Option<Value> {
    let removed = store.remove(k)?;
    gc.removed.push((k.clone(), removed.clone()));
    Some(removed)
}

fn by_storage(storage: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.storage == storage && !r.virtual_create_only)
}

/// Deletes dependents of everything removed, transitively: objects whose every owner is gone
/// (background propagation), and pods bound to a removed node (force, as pod GC does).
pub(crate) fn run_gc(store: &mut Store, mut gc: GcQueue) {
    while let Some((k, removed)) = gc.removed.pop() {
        let gone_uid = uid(&removed).to_owned();
        let mut doomed: Vec<(ObjKey, DeleteOptions)> = Vec::new();
        for dk in store.keys() {
            let Some(obj) = store.get(&dk) else { continue };
            let owners = owner_uids(obj);
            if k.storage == "nodes"
                && dk.storage == "pods"
                && obj.pointer("/spec/nodeName").and_then(Value::as_str) == Some(k.name.as_str())
            {
                doomed.push((dk.clone(), DeleteOptions { grace_period_seconds: Some(0), ..Default::default() }));
            } else if owners.contains(&gone_uid) && !owners.iter().any(|o| o != &gone_uid && uid_exists(store, o)) {
                doomed.push((dk.clone(), DeleteOptions::default()));
            }
        }
        for (dk, opts) in doomed {
            if let Some(res) = by_storage(dk.storage) {
                let _ = delete_locked(store, res, &dk, &opts, &mut gc);
            }
        }
    }
}

fn uid_exists(store: &Store, u: &str) -> bool {
    store.keys().iter().any(|k| store.get(k).is_some_and(|o| uid(o) == u))
}

pub(crate) fn delete(
    shared: &Shared,
    res: &Resource,
    ns: Option<&str>,
    n: &str,
    opts: &DeleteOptions,
) -> ApiResult<Value> {
    let mut store = lock(&shared.store);
    let mut gc = GcQueue::default();
    let out = delete_locked(&mut store, res, &key(res, ns, n), opts, &mut gc);
    run_gc(&mut store, gc);
    out
}

/// The response of a finished or pending delete: the object for stores with
/// `ReturnDeletedObject` (pods, services, namespaces), else a Success status.
fn finalize(res: &Resource, obj: &Value) -> Value {
    if matches!(res.plural, "pods" | "services" | "namespaces") && res.group.is_empty() {
        return present(res, obj);
    }
    let mut details = json!({"name": name(obj), "kind": res.plural, "uid": uid(obj)});
    if !res.group.is_empty() {
        details["group"] = json!(res.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

fn parse_time(obj: &Value) -> Option<DateTime<Utc>> {
    meta_str(obj, "deletionTimestamp").and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
}

/// Outcome of upstream's `BeforeDelete`.
enum Before {
    /// The object was updated for graceful deletion with this grace period.
    Graceful(Value, i64),
    /// Deletion already pending with a shorter or equal grace period: nothing to do.
    Pending,
    /// Not graceful: delete now (or mark deleting if finalizers remain).
    NotGraceful,
}

fn before_delete(res: &Resource, obj: &Value, requested: Option<i64>) -> Before {
    let Some(period) = graceful_period(res, obj, requested) else {
        return Before::NotGraceful;
    };
    // Negative grace periods count as 1 s.
    let requested = requested.map(|g| if g < 0 { 1 } else { g });
    let mut new = obj.clone();
    if let Some(old_ts) = parse_time(obj) {
        let current = obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0);
        if current <= 0 {
            return Before::NotGraceful;
        }
        let Some(shorter) = requested.filter(|g| *g < current) else {
            return Before::Pending;
        };
        let ts = old_ts - chrono::Duration::seconds(current) + chrono::Duration::seconds(shorter);
        set_meta(&mut new, "deletionTimestamp", Some(json!(timestamp(ts))));
        set_meta(&mut new, "deletionGracePeriodSeconds", Some(json!(shorter)));
        return Before::Graceful(new, shorter);
    }
    let ts = Utc::now() + chrono::Duration::seconds(period);
    set_meta(&mut new, "deletionTimestamp", Some(json!(timestamp(ts))));
    set_meta(&mut new, "deletionGracePeriodSeconds", Some(json!(period)));
    if let Some(g) = obj.pointer("/metadata/generation").and_then(Value::as_i64).filter(|g| *g > 0) {
        set_meta(&mut new, "generation", Some(json!(g + 1)));
    }
    Before::Graceful(new, period)
}

/// DELETE with the store locked.
pub(crate) fn delete_locked(
    store: &mut Store,
    res: &Resource,
    k: &ObjKey,
    opts: &DeleteOptions,
    gc: &mut GcQueue,
) -> ApiResult<Value> {
    let old = store.get(k).cloned().ok_or_else(|| ApiError::not_found(res, &k.name))?;
    if let Some(u) = &opts.precondition_uid
        && u != uid(&old)
    {
        let msg = format!("Precondition failed: UID in precondition: {u}, UID in object meta: {}", uid(&old));
        return Err(ApiError::conflict(res, &k.name, &msg));
    }
    if let Some(rv) = &opts.precondition_rv
        && Some(rv.as_str()) != meta_str(&old, "resourceVersion")
    {
        let msg = format!(
            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
            meta_str(&old, "resourceVersion").unwrap_or_default()
        );
        return Err(ApiError::conflict(res, &k.name, &msg));
    }
    if res.plural == "namespaces" && res.group.is_empty() {
        return Ok(delete_namespace(store, res, k, &old, opts.dry_run, gc));
    }
    let has_finalizers = !finalizers(&old).is_empty();
    let (new, delete_now) = match before_delete(res, &old, opts.grace_period_seconds) {
        Before::Pending => return Ok(finalize(res, &old)),
        Before::Graceful(new, period) => (new, period == 0 && !has_finalizers),
        Before::NotGraceful if !has_finalizers => (old.clone(), true),
        Before::NotGraceful => {
            // markAsDeleting: deletionTimestamp now (never later), grace 0.
            let mut new = old.clone();
            let now = Utc::now();
            if parse_time(&old).is_none_or(|t| t > now) {
                if old.pointer("/metadata/deletionTimestamp").is_none()
                    && let Some(g) = old.pointer("/metadata/generation").and_then(Value::as_i64).filter(|g| *g > 0)
                {
                    set_meta(&mut new, "generation", Some(json!(g + 1)));
                }
                set_meta(&mut new, "deletionTimestamp", Some(json!(timestamp(now))));
            }
            set_meta(&mut new, "deletionGracePeriodSeconds", Some(json!(0)));
            (new, false)
        }
    };
    if opts.dry_run {
        return Ok(if delete_now { finalize(res, &new) } else { present(res, &new) });
    }
    let written = if new != old { store.put(k.clone(), new) } else { old };
    if !delete_now {
        return Ok(present(res, &written));
    }
    let removed = remove_and_collect(store, k, gc).unwrap_or(written);
    Ok(finalize(res, &removed))
}

/// Namespace deletion, compressed: the namespace turns Terminating, its content is removed at
/// once (the namespace controller's work, without waiting for finalizers or grace periods),
/// then the namespace itself goes.
fn delete_namespace(
    store: &mut Store,
    res: &Resource,
    k: &ObjKey,
    old: &Value,
    dry_run: bool,
    gc: &mut GcQueue,
) -> Value {
    let mut terminating = old.clone();
    if terminating.pointer("/metadata/deletionTimestamp").is_none() {
        set_meta(&mut terminating, "deletionTimestamp", Some(json!(timestamp(Utc::now()))));
        set_meta(&mut terminating, "deletionGracePeriodSeconds", Some(json!(0)));
    }
    terminating["status"] = json!({"phase": "Terminating"});
    if dry_run {
        return present(res, &terminating);
    }
    let terminating = store.put(k.clone(), terminating);
    for content in store.keys().into_iter().filter(|c| c.namespace == k.name && c.storage != "namespaces") {
        remove_and_collect(store, &content, gc);
    }
    remove_and_collect(store, k, gc);
    present(res, &terminating)
}

#[cfg(test)]
#[path = "delete_tests.rs"]
mod tests;
