//! Label selectors (`=`, `==`, `!=`, `in`, `notin`, exists, `!`, `>`, `<`) and field selectors
//! (`=`, `==`, `!=` over the field labels each resource supports upstream) for list and watch.

use std::collections::BTreeMap;

use serde_json::Value;

use super::errors::ApiError;
use super::object::labels;
use super::resources::Resource;

#[derive(Debug, Clone, PartialEq)]
enum LabelReq {
    Exists(String),
    NotExists(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Gt(String, i64),
    Lt(String, i64),
}

impl LabelReq {
    fn matches(&self, l: &BTreeMap<String, String>) -> bool {
        match self {
            Self::Exists(k) => l.contains_key(k),
            Self::NotExists(k) => !l.contains_key(k),
            Self::Equals(k, v) => l.get(k) == Some(v),
            Self::NotEquals(k, v) => l.get(k) != Some(v),
            Self::In(k, vs) => l.get(k).is_some_and(|v| vs.contains(v)),
            Self::NotIn(k, vs) => l.get(k).is_none_or(|v| !vs.contains(v)),
            Self::Gt(k, n) => l.get(k).and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *n),
            Self::Lt(k, n) => l.get(k).and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *n),
        }
    }
}

/// Splits on commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

fn parse_label_req(part: &str) -> Result<LabelReq, String> {
    let bad = || format!("unable to parse requirement: {part:?}");
    if let Some(key) = part.strip_prefix('!') {
        return Ok(LabelReq::NotExists(key.trim().to_owned()));
    }
    if let Some(open) = part.find('(') {
        let close = part.rfind(')').filter(|c| *c > open).ok_or_else(bad)?;
        let values: Vec<String> =
            part[open + 1..close].split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect();
        let mut head = part[..open].split_whitespace();
        let (Some(key), Some(op), None) = (head.next(), head.next(), head.next()) else {
            return Err(bad());
        };
        return match op {
            "in" => Ok(LabelReq::In(key.to_owned(), values)),
            "notin" => Ok(LabelReq::NotIn(key.to_owned(), values)),
            _ => Err(bad()),
        };
    }
    for (op, make) in [
        ("!=", LabelReq::NotEquals as fn(String, String) -> LabelReq),
        ("==", LabelReq::Equals),
        ("=", LabelReq::Equals),
    ] {
        if let Some((k, v)) = part.split_once(op) {
            return Ok(make(k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    for (op, gt) in [(">", true), ("<", false)] {
        if let Some((k, v)) = part.split_once(op) {
            let n: i64 = v.trim().parse().map_err(|_| bad())?;
            let k = k.trim().to_owned();
            return Ok(if gt { LabelReq::Gt(k, n) } else { LabelReq::Lt(k, n) });
        }
    }
    if part.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(LabelReq::Exists(part.to_owned()))
}

/// A parsed `labelSelector` + `fieldSelector` pair for one resource.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    labels: Vec<LabelReq>,
    /// (field label, wanted value, equal?)
    fields: Vec<(String, String, bool)>,
}

impl Filter {
    pub fn parse(res: &Resource, label_selector: Option<&str>, field_selector: Option<&str>) -> Result<Self, ApiError> {
        let labels = split_top(label_selector.unwrap_or_default())
            .into_iter()
            .map(parse_label_req)
            .collect::<Result<Vec<_>, _>>()
            .map_err(ApiError::bad_request)?;
        let mut fields = Vec::new();
        for term in field_selector.unwrap_or_default().split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, value, eq) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, true)
            } else {
                return Err(ApiError::bad_request(format!("invalid selector: '{term}'; can't understand '{term}'")));
            };
            let field = canonical_field(res, field.trim())
                .ok_or_else(|| ApiError::bad_request(format!("field label not supported: {}", field.trim())))?;
            fields.push((field, value.trim().to_owned(), eq));
        }
        Ok(Self { labels, fields })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let l = labels(obj);
        self.labels.iter().all(|r| r.matches(&l))
            && self.fields.iter().all(|(f, v, eq)| (field_value(obj, f) == *v) == *eq)
    }
}

/// The stored (core) field path for a field label, or None when upstream rejects the label.
fn canonical_field(res: &Resource, label: &str) -> Option<String> {
    if label == "metadata.name" || (label == "metadata.namespace" && res.namespaced) {
        return Some(label.to_owned());
    }
    const POD: &[&str] = &[
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ];
    const EVENT: &[&str] = &[
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ];
    let allowed: &[&str] = match (res.group, res.plural) {
        ("", "pods") => POD,
        ("", "nodes") => &["spec.unschedulable"],
        ("", "namespaces") => &["status.phase"],
        ("", "secrets") => &["type"],
        ("", "services") => &["spec.clusterIP", "spec.type"],
        ("", "events") => EVENT,
        ("certificates.k8s.io", _) => &["spec.signerName"],
        ("events.k8s.io", _) => {
            // The events.k8s.io spelling of the same stored fields.
            let core = if let Some(rest) = label.strip_prefix("regarding.") {
                format!("involvedObject.{rest}")
            } else if label == "reportingController" {
                "reportingComponent".to_owned()
            } else {
                label.to_owned()
            };
            return EVENT.contains(&core.as_str()).then_some(core);
        }
        _ => &[],
    };
    allowed.contains(&label).then(|| label.to_owned())
}

/// The value a field label has on a (stored) object, as upstream's `ToSelectableFields`
/// renders it: strings as is, booleans as `true`/`false`, missing as "".
fn field_value(obj: &Value, field: &str) -> String {
    let path = match field {
        "source" => "source.component",
        other => other,
    };
    let mut v = obj;
    for seg in path.split('.') {
        match v.get(seg) {
            Some(next) => v = next,
            None => {
                return if matches!(field, "spec.hostNetwork" | "spec.unschedulable") {
                    "false".to_owned()
                } else {
                    String::new()
                };
            }
        }
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::resources::resolve;
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web", "tier": "1"}},
               "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    fn check(label: Option<&str>, field: Option<&str>) -> bool {
        Filter::parse(resolve("pods").unwrap(), label, field).unwrap().matches(&pod())
    }

    #[test]
    fn label_selectors() {
        assert!(check(Some("app=web"), None));
        assert!(check(Some("app==web,tier"), None));
        assert!(!check(Some("app!=web"), None));
        assert!(check(Some("app in (web, api)"), None));
        assert!(!check(Some("app notin (web)"), None));
        assert!(check(Some("missing notin (x),!missing"), None));
        assert!(!check(Some("!app"), None));
        assert!(check(Some("tier>0"), None));
        assert!(!check(Some("tier<1"), None));
        assert!(check(Some(""), None));
        assert!(Filter::parse(resolve("pods").unwrap(), Some("app in web"), None).is_err());
    }

    #[test]
    fn field_selectors() {
        assert!(check(None, Some("spec.nodeName=n1")));
        assert!(check(None, Some("spec.nodeName==n1,status.phase!=Pending")));
        assert!(check(None, Some("metadata.name=p,metadata.namespace=ns")));
        assert!(!check(None, Some("spec.nodeName=n2")));
        assert!(check(None, Some("spec.hostNetwork=false")));
        let err = Filter::parse(resolve("pods").unwrap(), None, Some("spec.foo=x")).unwrap_err();
        assert_eq!((err.code, err.message.as_str()), (400, "field label not supported: spec.foo"));
        assert!(Filter::parse(resolve("nodes").unwrap(), None, Some("metadata.namespace=x")).is_err());
    }

    #[test]
    fn event_fields_in_both_groups() {
        let ev = json!({"involvedObject": {"kind": "Pod", "name": "p"}, "reportingComponent": "kubelet",
                        "source": {"component": "kubelet"}});
        let core =
            Filter::parse(resolve("events").unwrap(), None, Some("involvedObject.name=p,source=kubelet")).unwrap();
        assert!(core.matches(&ev));
        let new = Filter::parse(
            resolve("events.events.k8s.io").unwrap(),
            None,
            Some("regarding.kind=Pod,reportingController=kubelet"),
        )
        .unwrap();
        assert!(new.matches(&ev));
    }
}
