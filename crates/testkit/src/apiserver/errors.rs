//! API errors as the real server renders them: a `metav1.Status` body with code, reason,
//! message and details, spelled like `k8s.io/apimachinery/pkg/api/errors`.

use serde_json::{Value, json};

use super::resources::Resource;

/// A failed request; becomes a `Status` response.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

fn details(res: &Resource, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": res.plural});
    if !res.group.is_empty() {
        d["group"] = json!(res.group);
    }
    d
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into(), details: None }
    }

    fn with_details(mut self, d: Value) -> Self {
        self.details = Some(d);
        self
    }

    pub fn not_found(res: &Resource, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} \"{name}\" not found", res.qualified())).with_details(details(res, name))
    }

    pub fn namespace_not_found(ns: &str) -> Self {
        Self::new(404, "NotFound", format!("namespaces \"{ns}\" not found"))
            .with_details(json!({"name": ns, "kind": "namespaces"}))
    }

    pub fn already_exists(res: &Resource, name: &str) -> Self {
        Self::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", res.qualified()))
            .with_details(details(res, name))
    }

    /// `Operation cannot be fulfilled on <resource> "<name>": <why>`.
    pub fn conflict(res: &Resource, name: &str, why: &str) -> Self {
        Self::new(409, "Conflict", format!("Operation cannot be fulfilled on {} \"{name}\": {why}", res.qualified()))
            .with_details(details(res, name))
    }

    /// The optimistic-concurrency failure of an update with a stale resourceVersion.
    pub fn modified(res: &Resource, name: &str) -> Self {
        Self::conflict(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 with one cause per field error (`field: message`).
    pub fn invalid(res: &Resource, name: &str, causes: &[(String, String)]) -> Self {
        Self::invalid_kind(res.kind, res.group, name, causes)
    }

    /// [`Self::invalid`] for a kind that is not in the resource table (TokenRequest).
    pub fn invalid_kind(kind: &str, group: &str, name: &str, causes: &[(String, String)]) -> Self {
        let rendered: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let list = match rendered.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let mut d = json!({
            "name": name,
            "kind": kind,
            "causes": causes.iter().map(|(f, m)| json!({"reason": "FieldValueInvalid", "message": m, "field": f})).collect::<Vec<_>>(),
        });
        let qualified = if group.is_empty() {
            kind.to_owned()
        } else {
            d["group"] = json!(group);
            format!("{kind}.{group}")
        };
        Self::new(422, "Invalid", format!("{qualified} \"{name}\" is invalid: {list}")).with_details(d)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
    }

    pub fn path_not_found() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
    }

    /// 410 reason Expired: a watch or list from a resourceVersion the server no longer has.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json, application/yaml, application/json-patch+json, \
                 application/merge-patch+json, application/strategic-merge-patch+json (got {content_type:?})"
            ),
        )
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(500, "InternalError", format!("Internal error occurred: {message}"))
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::super::resources::resolve;
    use super::*;

    #[test]
    fn messages_match_upstream() {
        let pods = resolve("pods").unwrap();
        let leases = resolve("leases.coordination.k8s.io").unwrap();
        assert_eq!(ApiError::not_found(pods, "x").message, "pods \"x\" not found");
        assert_eq!(ApiError::not_found(leases, "n").message, "leases.coordination.k8s.io \"n\" not found");
        assert_eq!(
            ApiError::modified(pods, "x").message,
            "Operation cannot be fulfilled on pods \"x\": the object has been modified; please apply your changes to the latest version and try again"
        );
        let s = ApiError::not_found(leases, "n").to_status();
        assert_eq!(s["details"]["group"], "coordination.k8s.io");
        assert_eq!(s["code"], 404);
        let inv = ApiError::invalid(pods, "", &[("metadata.name".into(), "Required value".into())]);
        assert_eq!(inv.message, "Pod \"\" is invalid: metadata.name: Required value");
    }
}
