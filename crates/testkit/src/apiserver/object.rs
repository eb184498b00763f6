//! Small accessors for API objects held as JSON, and the ids and timestamps the server stamps
//! on them.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// `metadata.<field>` as a string.
pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub(crate) fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or_default()
}

pub(crate) fn namespace(obj: &Value) -> &str {
    meta_str(obj, "namespace").unwrap_or_default()
}

pub(crate) fn uid(obj: &Value) -> &str {
    meta_str(obj, "uid").unwrap_or_default()
}

/// The object's `metadata` map, created when missing; a non-object `obj` becomes `{}` first
/// (callers check request bodies with [`ensure_object`] before).
pub(crate) fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    // Indexing an object inserts a null entry when missing; it cannot panic here.
    let meta = &mut obj["metadata"];
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    match meta {
        Value::Object(m) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// Sets or removes (`None`) `metadata.<field>`.
pub(crate) fn set_meta(obj: &mut Value, field: &str, value: Option<Value>) {
    let meta = meta_mut(obj);
    match value {
        Some(v) => {
            meta.insert(field.to_owned(), v);
        }
        None => {
            meta.remove(field);
        }
    }
}

/// `metadata.labels` (empty when unset or malformed).
pub(crate) fn labels(obj: &Value) -> BTreeMap<String, String> {
    obj.get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default()
}

pub(crate) fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// UIDs of the object's ownerReferences.
pub(crate) fn owner_uids(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|o| o.get("uid")?.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Fails unless the body is a JSON object.
pub(crate) fn ensure_object(v: &Value) -> Result<(), String> {
    if v.is_object() { Ok(()) } else { Err("the body of the request must be a JSON object".to_owned()) }
}

/// `n` random bytes from the OS (all zero if the OS refuses, which only weakens test ids).
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    let _ = getrandom::fill(&mut buf);
    buf
}

/// A random version-4 UUID, as the API server assigns to `metadata.uid`.
pub(crate) fn new_uid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// `generateName` suffix: 5 characters from the alphabet upstream uses (no vowels, no
/// look-alikes).
pub(crate) fn random_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = random_bytes::<16>();
    bytes.iter().take(len).map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// Wall-clock time as `metav1.Time` (RFC 3339, whole seconds, UTC).
pub(crate) fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub(crate) fn now() -> String {
    timestamp(chrono::Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn uid_is_a_v4_uuid() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(new_uid(), u);
    }

    #[test]
    fn meta_helpers() {
        let mut o = json!({"metadata": {"name": "a", "labels": {"x": "y"}, "ownerReferences": [{"uid": "u1"}]}});
        assert_eq!(name(&o), "a");
        assert_eq!(labels(&o).get("x").map(String::as_str), Some("y"));
        assert_eq!(owner_uids(&o), vec!["u1".to_owned()]);
        set_meta(&mut o, "namespace", Some(json!("ns")));
        assert_eq!(namespace(&o), "ns");
        set_meta(&mut o, "namespace", None);
        assert_eq!(namespace(&o), "");
        let mut not_obj = json!(3);
        meta_mut(&mut not_obj);
        assert!(not_obj.is_object());
        assert_eq!(random_suffix(5).len(), 5);
    }
}
