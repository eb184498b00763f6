//! Settings rkubelet does not implement: which are ignored with a warning, which are ignored
//! silently because they say nothing (kubeadm writes `0s` and `{}` for unset fields), and which
//! are refused because running without them would be unsafe. Used for the config file here
//! and for the command line by the binary's flag table.

use std::path::Path;

use serde_json::{Map, Value};

use super::{ConfigError, parse_duration};

/// Why `seccompDefault: true` / `--seccomp-default` is refused.
pub const SECCOMP_DEFAULT_REFUSED: &str = "rkubelet does not apply the RuntimeDefault seccomp profile by default; \
     containers that do not ask for a profile would run Unconfined";

/// Whether a value of an unknown field says nothing: a Go zero value ("0s", "", `{}`, `[]`,
/// null), or an object made only of those (kubeadm's `logging: {flushFrequency: 0, …}`). A bare
/// `false` or `0` at the top level is not "nothing": upstream's pointer fields keep them.
fn is_unset(v: &Value, top: bool) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty() || s == "0" || parse_duration(s).is_ok_and(|d| d.is_zero()),
        Value::Number(n) => !top && n.as_f64() == Some(0.0),
        Value::Bool(_) => false,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.values().all(|v| is_unset(v, false)),
    }
}

/// A reason to refuse this value of an unimplemented field, if ignoring it would be unsafe.
fn refusal(field: &str, v: &Value) -> Option<&'static str> {
    match field {
        "seccompDefault" if v.as_bool() == Some(true) => Some(SECCOMP_DEFAULT_REFUSED),
        _ => None,
    }
}

/// One warning per unknown field that sets something; an error for the first unsafe one.
pub(super) fn check_unknown(
    map: &Map<String, Value>,
    unknown: &[String],
    path: &Path,
) -> Result<Vec<String>, ConfigError> {
    let mut warnings = Vec::new();
    for field in unknown {
        let Some(v) = map.get(field) else { continue };
        if let Some(reason) = refusal(field, v) {
            return Err(ConfigError::Refused {
                path: path.to_owned(),
                field: field.clone(),
                value: v.to_string(),
                reason,
            });
        }
        if !is_unset(v, true) {
            warnings.push(format!("unsupported KubeletConfiguration field {field:?} in {} is ignored", path.display()));
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn zero_values_say_nothing() {
        for v in
            [json!(null), json!("0s"), json!(""), json!("0"), json!({}), json!([]), json!({"a": {"b": 0, "c": "0"}})]
        {
            assert!(is_unset(&v, true), "{v}");
        }
        for v in
            [json!(false), json!(0), json!("10s"), json!("systemd"), json!(["x"]), json!({"a": true}), json!({"a": 1})]
        {
            assert!(!is_unset(&v, true), "{v}");
        }
    }

    #[test]
    fn unsafe_fields_are_refused() {
        let map: Map<String, Value> = serde_json::from_value(json!({
            "seccompDefault": false,
            "cgroupDriver": "systemd",
            "memorySwap": {},
        }))
        .unwrap();
        let unknown: Vec<String> = map.keys().cloned().collect();
        let warnings = check_unknown(&map, &unknown, Path::new("/k.yaml")).unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:#?}");

        let map: Map<String, Value> = serde_json::from_value(json!({"seccompDefault": true})).unwrap();
        let err = check_unknown(&map, &["seccompDefault".into()], Path::new("/k.yaml")).unwrap_err().to_string();
        assert!(
            err.starts_with("kubelet config file /k.yaml: seccompDefault true is not supported by rkubelet"),
            "{err}"
        );
        assert!(err.contains("Unconfined"), "{err}");
    }
}
