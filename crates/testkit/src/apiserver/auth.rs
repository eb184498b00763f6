//! Authentication (static admin token, bootstrap tokens backed by `kube-system` secrets,
//! TokenRequest-issued tokens, client certificates), the one authorization rule (bootstrap
//! identities may only use CSRs), TokenRequest, TokenReview, SelfSubjectReview and
//! SubjectAccessReview.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use k8s_openapi::api::authentication::v1::TokenReviewSpec;
use k8s_openapi::api::authorization::v1::SubjectAccessReviewSpec;
use serde_json::{Value, json};

use super::errors::{ApiError, ApiResult};
use super::object::{new_uid, random_bytes, timestamp, uid};
use super::resources::{Resource, find};
use super::state::{Shared, lock};
use super::store::ObjKey;

/// The audience of tokens the API server itself accepts (upstream's default issuer/audience).
pub(crate) const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";
const AUTHENTICATED: &str = "system:authenticated";
pub(crate) const BOOTSTRAPPERS: &str = "system:bootstrappers";

/// Who made a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub(crate) fn to_json(&self) -> Value {
        let mut v = json!({"username": self.username, "groups": self.groups});
        if !self.uid.is_empty() {
            v["uid"] = json!(self.uid);
        }
        if !self.extra.is_empty() {
            v["extra"] = json!(self.extra);
        }
        v
    }

    pub(crate) fn admin() -> Self {
        Self {
            username: "kubernetes-admin".to_owned(),
            groups: vec!["system:masters".to_owned(), AUTHENTICATED.to_owned()],
            ..Default::default()
        }
    }
}

/// A token handed out by TokenRequest, remembered so it can be validated.
#[derive(Debug, Clone)]
pub(crate) struct IssuedToken {
    pub user: UserInfo,
    pub audiences: Vec<String>,
    pub expires: DateTime<Utc>,
    /// The service account and, if bound, the object whose deletion invalidates the token.
    pub owners: Vec<(ObjKey, String)>,
}

/// Authenticates a bearer token for `audiences` (empty: the API server's own). Returns the user
/// and the audiences it is valid for, or the reason it is not.
pub(crate) fn authenticate_token(
    shared: &Shared,
    token: &str,
    audiences: &[String],
) -> Result<(UserInfo, Vec<String>), String> {
    let wanted: Vec<String> = if audiences.is_empty() { vec![API_AUDIENCE.to_owned()] } else { audiences.to_vec() };
    if token == shared.admin_token {
        return Ok((UserInfo::admin(), wanted));
    }
    if let Some(user) = bootstrap_token_user(shared, token)? {
        return Ok((user, wanted));
    }
    let issued = lock(&shared.tokens).get(token).cloned().ok_or("invalid bearer token")?;
    if issued.expires < Utc::now() {
        return Err("service account token has expired".to_owned());
    }
    let matched: Vec<String> = wanted.into_iter().filter(|a| issued.audiences.contains(a)).collect();
    if matched.is_empty() {
        return Err("token audiences don't match".to_owned());
    }
    let store = lock(&shared.store);
    for (key, owner_uid) in &issued.owners {
        match store.get(key) {
            Some(obj) if uid(obj) == owner_uid => {}
            _ => return Err(format!("{} {}/{} has been deleted", key.storage, key.namespace, key.name)),
        }
    }
    Ok((issued.user, matched))
}

/// A bootstrap token `<id>.<secret>` checked against the secret `kube-system/bootstrap-token-<id>`
/// as upstream's bootstrap authenticator does. `Ok(None)`: not a bootstrap token.
fn bootstrap_token_user(shared: &Shared, token: &str) -> Result<Option<UserInfo>, String> {
    let Some((id, secret)) = token.split_once('.') else {
        return Ok(None);
    };
    let well_formed =
        |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !well_formed(id, 6) || !well_formed(secret, 16) {
        return Ok(None);
    }
    let store = lock(&shared.store);
    let key = ObjKey::new("secrets", "kube-system", &format!("bootstrap-token-{id}"));
    let s = store.get(&key).ok_or("invalid bearer token")?;
    let field = |k: &str| -> String {
        s.get("data")
            .and_then(|d| d.get(k))
            .and_then(Value::as_str)
            .and_then(|b| STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default()
    };
    let valid = s.get("type").and_then(Value::as_str) == Some("bootstrap.kubernetes.io/token")
        && s.pointer("/metadata/deletionTimestamp").is_none()
        && field("token-secret") == secret
        && field("usage-bootstrap-authentication") == "true";
    let expired = DateTime::parse_from_rfc3339(&field("expiration")).is_ok_and(|t| t < Utc::now());
    if !valid || expired {
        return Err("invalid bearer token".to_owned());
    }
    let mut groups = vec![BOOTSTRAPPERS.to_owned()];
    groups.extend(field("auth-extra-groups").split(',').map(str::trim).filter(|g| !g.is_empty()).map(str::to_owned));
    groups.push(AUTHENTICATED.to_owned());
    Ok(Some(UserInfo { username: format!("system:bootstrap:{id}"), groups, ..Default::default() }))
}

/// Whether `user` may `verb` the resource (None: a non-resource URL such as discovery).
fn allowed(groups: &[String], verb: &str, group: &str, resource: &str, sub: &str) -> bool {
    if !groups.iter().any(|g| g == BOOTSTRAPPERS) {
        return true;
    }
    // Upstream's system:node-bootstrapper role, plus what system:basic-user grants everyone.
    (group == "certificates.k8s.io"
        && resource == "certificatesigningrequests"
        && sub.is_empty()
        && matches!(verb, "create" | "get" | "list" | "watch"))
        || (resource == "selfsubjectreviews" && verb == "create")
        || resource.is_empty()
}

/// Authorizes a resource request; the 403 message is upstream's RBAC wording.
pub(crate) fn authorize(
    user: &UserInfo,
    verb: &str,
    res: &Resource,
    sub: Option<&str>,
    ns: Option<&str>,
    name: Option<&str>,
) -> ApiResult<()> {
    if allowed(&user.groups, verb, res.group, res.plural, sub.unwrap_or_default()) {
        return Ok(());
    }
    let object = match name {
        Some(n) => format!("{} \"{n}\"", res.qualified()),
        None => res.qualified(),
    };
    let resource = match sub {
        Some(s) => format!("{}/{s}", res.plural),
        None => res.plural.to_owned(),
    };
    let scope = match ns {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_owned(),
    };
    Err(ApiError::forbidden(format!(
        "{object} is forbidden: User \"{}\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}",
        user.username, res.group
    )))
}

/// The built-in answer to a SubjectAccessReview (used unless a test scripts one).
pub(crate) fn default_access_review(spec: &SubjectAccessReviewSpec) -> bool {
    let groups = spec.groups.clone().unwrap_or_default();
    match &spec.resource_attributes {
        Some(a) => allowed(
            &groups,
            a.verb.as_deref().unwrap_or_default(),
            a.group.as_deref().unwrap_or_default(),
            a.resource.as_deref().unwrap_or_default(),
            a.subresource.as_deref().unwrap_or_default(),
        ),
        None => true,
    }
}

/// TokenReview: the scripted answer if any, else the server's authenticator.
pub(crate) fn token_review(shared: &Shared, body: &Value) -> ApiResult<Value> {
    let spec: TokenReviewSpec = serde_json::from_value(body.get("spec").cloned().unwrap_or(json!({})))
        .map_err(|e| ApiError::bad_request(format!("invalid TokenReview: {e}")))?;
    let hook = lock(&shared.hooks).token_review.clone();
    let status = match hook.and_then(|f| f(&spec)) {
        Some(s) => serde_json::to_value(s).map_err(ApiError::internal)?,
        None => match authenticate_token(shared, &spec.token, &spec.audiences.clone().unwrap_or_default()) {
            Ok((user, auds)) => json!({"authenticated": true, "user": user.to_json(), "audiences": auds}),
            Err(e) => json!({"user": {}, "error": format!("[invalid bearer token, {e}]")}),
        },
    };
    Ok(review_response(body, "authentication.k8s.io/v1", "TokenReview", status))
}

/// SubjectAccessReview: the scripted decision if any, else [`default_access_review`].
pub(crate) fn subject_access_review(shared: &Shared, body: &Value) -> ApiResult<Value> {
    let spec: SubjectAccessReviewSpec = serde_json::from_value(body.get("spec").cloned().unwrap_or(json!({})))
        .map_err(|e| ApiError::bad_request(format!("invalid SubjectAccessReview: {e}")))?;
    let hook = lock(&shared.hooks).subject_access_review.clone();
    let allowed = match hook {
        Some(f) => f(&spec),
        None => default_access_review(&spec),
    };
    let mut status = json!({"allowed": allowed});
    if !allowed {
        status["reason"] = json!("denied by the test API server");
    }
    Ok(review_response(body, "authorization.k8s.io/v1", "SubjectAccessReview", status))
}

pub(crate) fn self_subject_review(user: &UserInfo) -> Value {
    review_response(&json!({}), "authentication.k8s.io/v1", "SelfSubjectReview", json!({"userInfo": user.to_json()}))
}

fn review_response(body: &Value, api_version: &str, kind: &str, status: Value) -> Value {
    let mut out =
        json!({"kind": kind, "apiVersion": api_version, "metadata": {"creationTimestamp": null}, "status": status});
    if let Some(spec) = body.get("spec") {
        out["spec"] = spec.clone();
    }
    out
}

/// TokenRequest (`serviceaccounts/<name>/token`): validates the request and the objects it
/// binds to, remembers the token and returns the TokenRequest with `status`.
pub(crate) fn token_request(
    shared: &Shared,
    sa_res: &Resource,
    ns: &str,
    sa_name: &str,
    body: &Value,
) -> ApiResult<Value> {
    let spec = body.get("spec").cloned().unwrap_or(json!({}));
    let seconds = spec.get("expirationSeconds").and_then(Value::as_i64).unwrap_or(3600);
    let invalid = |field: &str, msg: String| {
        ApiError::invalid_kind("TokenRequest", "authentication.k8s.io", sa_name, &[(field.to_owned(), msg)])
    };
    if seconds < 600 {
        return Err(invalid(
            "spec.expirationSeconds",
            format!("Invalid value: {seconds}: may not specify a duration less than 10 minutes"),
        ));
    }
    if seconds > 1 << 32 {
        return Err(invalid(
            "spec.expirationSeconds",
            format!("Invalid value: {seconds}: may not specify a duration larger than 2^32 seconds"),
        ));
    }
    let audiences: Vec<String> = match spec.get("audiences").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => vec![API_AUDIENCE.to_owned()],
    };
    let store = lock(&shared.store);
    let sa_key = ObjKey::new("serviceaccounts", ns, sa_name);
    let sa = store.get(&sa_key).ok_or_else(|| ApiError::not_found(sa_res, sa_name))?;
    let sa_uid = uid(sa).to_owned();
    let mut owners = vec![(sa_key, sa_uid.clone())];
    let mut user = UserInfo {
        username: format!("system:serviceaccount:{ns}:{sa_name}"),
        uid: sa_uid.clone(),
        groups: vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{ns}"),
            AUTHENTICATED.to_owned(),
        ],
        ..Default::default()
    };
    let mut claims = json!({"namespace": ns, "serviceaccount": {"name": sa_name, "uid": sa_uid}});
    if let Some(bound) = spec.get("boundObjectRef").filter(|b| b.is_object()) {
        let kind = bound.get("kind").and_then(Value::as_str).unwrap_or_default();
        let name = bound.get("name").and_then(Value::as_str).unwrap_or_default();
        let (plural, scope_ns) = match kind {
            "Pod" => ("pods", ns),
            "Secret" => ("secrets", ns),
            "Node" => ("nodes", ""),
            other => return Err(invalid("spec.boundObjectRef.kind", format!("Unsupported value: {other:?}"))),
        };
        let res = find("", "v1", plural).ok_or_else(|| ApiError::internal("resource table lacks core kinds"))?;
        let key = ObjKey::new(res.storage, scope_ns, name);
        let obj = store.get(&key).ok_or_else(|| ApiError::not_found(res, name))?;
        let obj_uid = uid(obj).to_owned();
        if let Some(want) = bound.get("uid").and_then(Value::as_str).filter(|u| !u.is_empty())
            && want != obj_uid
        {
            return Err(ApiError::conflict(
                res,
                name,
                &format!(
                    "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
        claims[kind.to_lowercase()] = json!({"name": name, "uid": obj_uid});
        if kind == "Pod" {
            user.extra.insert("authentication.kubernetes.io/pod-name".to_owned(), vec![name.to_owned()]);
            user.extra.insert("authentication.kubernetes.io/pod-uid".to_owned(), vec![obj_uid.clone()]);
        }
        owners.push((key, obj_uid));
    }
    drop(store);

    let seconds = match shared.options.max_token_lifetime {
        Some(max) => seconds.min(i64::try_from(max.as_secs()).unwrap_or(i64::MAX)),
        None => seconds,
    };
    let now = Utc::now();
    let expires = now + chrono::Duration::seconds(seconds);
    let jti = new_uid();
    user.extra.insert("authentication.kubernetes.io/credential-id".to_owned(), vec![format!("JTI={jti}")]);
    let payload = json!({
        "aud": audiences, "exp": expires.timestamp(), "iat": now.timestamp(), "nbf": now.timestamp(),
        "iss": API_AUDIENCE, "jti": jti, "sub": user.username, "kubernetes.io": claims,
    });
    // JWT-shaped so consumers that peek at claims work; the server validates by lookup.
    let token = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"testkit"}"#),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode(random_bytes::<32>())
    );
    lock(&shared.tokens).insert(token.clone(), IssuedToken { user, audiences: audiences.clone(), expires, owners });

    let mut spec_out = spec.clone();
    spec_out["audiences"] = json!(audiences);
    spec_out["expirationSeconds"] = json!(seconds);
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": sa_name, "namespace": ns, "creationTimestamp": timestamp(now)},
        "spec": spec_out,
        "status": {"token": token, "expirationTimestamp": timestamp(expires)},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrappers_only_reach_csrs() {
        let g = vec![BOOTSTRAPPERS.to_owned()];
        assert!(allowed(&g, "create", "certificates.k8s.io", "certificatesigningrequests", ""));
        assert!(allowed(&g, "watch", "certificates.k8s.io", "certificatesigningrequests", ""));
        assert!(!allowed(&g, "update", "certificates.k8s.io", "certificatesigningrequests", "approval"));
        assert!(!allowed(&g, "list", "", "pods", ""));
        assert!(allowed(&["system:nodes".to_owned()], "list", "", "pods", ""));
        let pods = find("", "v1", "pods").unwrap();
        let user = UserInfo { username: "system:bootstrap:abcdef".into(), groups: g, ..Default::default() };
        let err = authorize(&user, "list", pods, None, Some("default"), None).unwrap_err();
        assert_eq!(
            err.message,
            "pods is forbidden: User \"system:bootstrap:abcdef\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(err.code, 403);
    }
}
