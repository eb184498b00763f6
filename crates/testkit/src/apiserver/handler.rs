//! The HTTP front: authentication, the request log, URL → resource routing as upstream's
//! `RequestInfoFactory` parses it, verb dispatch, discovery, and `Status` error bodies. A panic
//! in a handler becomes a 500 Status instead of a dropped connection.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use serde_json::{Value, json};

use super::auth::{self, UserInfo};
use super::delete::{self, DeleteOptions};
use super::errors::{ApiError, ApiResult};
use super::proxy;
use super::resources::{self, Resource};
use super::selectors::Filter;
use super::state::{RequestRecord, Shared, lock};
use super::verbs;
use super::watch::{self, WatchParams};

/// What the connection's TLS handshake established.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnInfo {
    pub cert_user: Option<UserInfo>,
    /// A client certificate was presented but does not verify against the CA.
    pub bad_cert: bool,
}

fn json_response(code: u16, v: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.to_status())
}

/// `%XX` and `+` decoding of one query component.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', ..) => {
                out.push(b' ');
                i += 1;
            }
            (c, ..) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The axum fallback handler: every request comes here.
pub(crate) async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let conn = parts.extensions.get::<Arc<ConnInfo>>().cloned().unwrap_or_default();
    let header_str = |h: header::HeaderName| parts.headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut record = RequestRecord {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        content_type: header_str(header::CONTENT_TYPE),
        user_agent: header_str(header::USER_AGENT),
        user: None,
        status: 0,
    };
    if let Some(target) = proxy::target(&record.path) {
        let req = Request::from_parts(parts, body);
        let response = match authenticate(&shared, &conn, req.headers()) {
            Ok(Some(user)) => {
                record.user = Some(user.username.clone());
                proxy::serve(&shared, &user, &target, req).await.unwrap_or_else(|e| error_response(&e))
            }
            Ok(None) | Err(_) => error_response(&ApiError::unauthorized()),
        };
        record.status = response.status().as_u16();
        lock(&shared.requests).push(record);
        return response;
    }
    let response = match axum::body::to_bytes(body, 64 << 20).await {
        Err(e) => error_response(&ApiError::bad_request(format!("reading the request body: {e}"))),
        Ok(bytes) => {
            let run = dispatch(&shared, &conn, &parts.method, &parts.headers, &record, bytes);
            match AssertUnwindSafe(run).catch_unwind().await {
                Ok((resp, user)) => {
                    record.user = user;
                    resp
                }
                Err(_) => error_response(&ApiError::internal("the test API server panicked handling this request")),
            }
        }
    };
    record.status = response.status().as_u16();
    lock(&shared.requests).push(record);
    response
}

fn authenticate(shared: &Shared, conn: &ConnInfo, headers: &HeaderMap) -> Result<Option<UserInfo>, ApiError> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let token =
            v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).ok_or_else(ApiError::unauthorized)?;
        return auth::authenticate_token(shared, token.trim(), &[])
            .map(|(u, _)| Some(u))
            .map_err(|_| ApiError::unauthorized());
    }
    if conn.bad_cert {
        return Err(ApiError::unauthorized());
    }
    Ok(conn.cert_user.clone())
}

async fn dispatch(
    shared: &Arc<Shared>,
    conn: &ConnInfo,
    method: &Method,
    headers: &HeaderMap,
    record: &RequestRecord,
    body: Bytes,
) -> (Response, Option<String>) {
    let segs: Vec<&str> = record.path.split('/').filter(|s| !s.is_empty()).collect();
    if let ["healthz" | "livez" | "readyz"] = segs.as_slice() {
        return ((StatusCode::OK, "ok").into_response(), None);
    }
    if let ["version"] = segs.as_slice() {
        let v = json!({"major": "1", "minor": "37", "gitVersion": "v1.37.0-testkit", "gitCommit": "testkit",
                       "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25",
                       "compiler": "gc", "platform": "linux/amd64"});
        return (json_response(200, &v), None);
    }
    let user = match authenticate(shared, conn, headers) {
        Ok(Some(u)) => u,
        Ok(None) | Err(_) => return (error_response(&ApiError::unauthorized()), None),
    };
    let name = Some(user.username.clone());
    let query = parse_query(&record.query);
    let content_type = record
        .content_type
        .as_deref()
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let resp = match route(shared, method, &segs, &query, &content_type, &body, &user) {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    (resp, name)
}

fn discovery(segs: &[&str], server: &str) -> Option<Value> {
    match segs {
        ["api"] => Some(resources::api_versions(server)),
        ["apis"] => Some(resources::api_group_list()),
        ["apis", g] => resources::api_group(g),
        ["api", v] => resources::api_resource_list("", v),
        ["apis", g, v] => resources::api_resource_list(g, v),
        _ => None,
    }
}

/// `[namespaces/<ns>/]<plural>[/<name>[/<sub>]]` → (resource, namespace, name, subresource).
type Target<'a> = (&'static Resource, Option<&'a str>, Option<&'a str>, Option<&'a str>);

fn target<'a>(group: &str, version: &str, rest: &[&'a str]) -> ApiResult<Target<'a>> {
    let (ns, rest) = match rest {
        ["namespaces", ns, next, ..] if !matches!(*next, "status" | "finalize") => (Some(*ns), &rest[2..]),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(*n), None),
        [p, n, s] => (*p, Some(*n), Some(*s)),
        _ => return Err(ApiError::path_not_found()),
    };
    let res = resources::find(group, version, plural).ok_or_else(ApiError::path_not_found)?;
    if (ns.is_some() && !res.namespaced) || sub.is_some_and(|s| !res.subresources.contains(&s)) {
        return Err(ApiError::path_not_found());
    }
    Ok((res, ns, name, sub))
}

/// Decodes a request body: JSON (and the JSON patch types) or YAML. Protobuf, which real
/// servers also accept for built-in types, is refused with 415.
fn parse_body(content_type: &str, body: &Bytes) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    match content_type {
        "application/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("couldn't get version/kind; yaml parse error: {e}"))),
        ct if ct.contains("protobuf") => Err(ApiError::unsupported_media_type(ct)),
        _ => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))),
    }
}

fn dry_run(query: &HashMap<String, String>) -> ApiResult<bool> {
    match query.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!("Invalid dry run value: {other:?}"))),
    }
}

fn route(
    shared: &Arc<Shared>,
    method: &Method,
    segs: &[&str],
    query: &HashMap<String, String>,
    content_type: &str,
    body: &Bytes,
    user: &UserInfo,
) -> ApiResult<Response> {
    if let Some(doc) = discovery(segs, shared.url.trim_start_matches("https://").trim_start_matches("http://")) {
        return if method == Method::GET { Ok(json_response(200, &doc)) } else { Err(ApiError::method_not_allowed()) };
    }
    let (res, ns, name, sub) = match segs {
        ["api", version, rest @ ..] => target("", version, rest)?,
        ["apis", group, version, rest @ ..] => target(group, version, rest)?,
        _ => return Err(ApiError::path_not_found()),
    };
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (method.as_str(), name) {
        ("GET", None) if watching => "watch",
        ("GET", None) => "list",
        ("GET", Some(_)) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", Some(_)) => "delete",
        ("DELETE", None) => "deletecollection",
        _ => return Err(ApiError::method_not_allowed()),
    };
    auth::authorize(user, verb, res, sub, ns, name)?;
    if res.namespaced && ns.is_none() && !matches!(verb, "list" | "watch") {
        return Err(ApiError::method_not_allowed());
    }
    let filter = || {
        Filter::parse(
            res,
            query.get("labelSelector").map(String::as_str),
            query.get("fieldSelector").map(String::as_str),
        )
    };
    let dry = dry_run(query)?;
    match (verb, name, sub) {
        ("watch", ..) => {
            let params = WatchParams {
                resource_version: query.get("resourceVersion").cloned(),
                namespace: ns.map(str::to_owned),
                filter: filter()?,
                timeout: query.get("timeoutSeconds").and_then(|t| t.parse().ok()).map(Duration::from_secs),
                bookmarks: query.get("allowWatchBookmarks").is_some_and(|v| v == "true"),
                send_initial_events: query.get("sendInitialEvents").is_some_and(|v| v == "true"),
            };
            let stream = watch::open(shared.clone(), res, params)?;
            Ok(([(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream)).into_response())
        }
        ("list", ..) if !res.virtual_create_only => Ok(json_response(200, &verbs::list(shared, res, ns, &filter()?))),
        ("get", Some(n), None | Some("status" | "approval")) if !res.virtual_create_only => {
            Ok(json_response(200, &verbs::get(shared, res, ns, n)?))
        }
        ("create", None, None) => {
            let out = match (res.group, res.plural) {
                // The request carries nothing the answer depends on.
                (_, "selfsubjectreviews") => auth::self_subject_review(user),
                (_, "tokenreviews") => auth::token_review(shared, &parse_body(content_type, body)?)?,
                (_, "subjectaccessreviews") => auth::subject_access_review(shared, &parse_body(content_type, body)?)?,
                _ => verbs::create(shared, res, ns, &parse_body(content_type, body)?, user, dry)?,
            };
            Ok(json_response(201, &out))
        }
        ("create", Some(n), Some("token")) => {
            let out = auth::token_request(shared, res, ns.unwrap_or_default(), n, &parse_body(content_type, body)?)?;
            Ok(json_response(201, &out))
        }
        ("update", Some(n), None | Some("status" | "approval")) if !res.virtual_create_only => {
            Ok(json_response(200, &verbs::update(shared, res, ns, n, sub, &parse_body(content_type, body)?, dry)?))
        }
        ("patch", Some(n), None | Some("status" | "approval")) if !res.virtual_create_only => {
            let out = verbs::patch(shared, res, ns, n, sub, content_type, &parse_body(content_type, body)?, dry)?;
            Ok(json_response(200, &out))
        }
        ("delete", Some(n), None) if !res.virtual_create_only => {
            let mut opts = DeleteOptions::from_body(&parse_body(content_type, body)?);
            if let Some(g) = query.get("gracePeriodSeconds").and_then(|g| g.parse().ok()) {
                opts.grace_period_seconds = Some(g);
            }
            opts.dry_run |= dry;
            Ok(json_response(200, &delete::delete(shared, res, ns, n, &opts)?))
        }
        ("deletecollection", None, None) if !res.virtual_create_only => {
            let list = verbs::list(shared, res, ns, &filter()?);
            let opts = DeleteOptions { dry_run: dry, ..DeleteOptions::from_body(&parse_body(content_type, body)?) };
            let mut deleted = Vec::new();
            for item in list["items"].as_array().into_iter().flatten() {
                let item_ns = item.pointer("/metadata/namespace").and_then(Value::as_str);
                let item_name = item.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
                if let Ok(v) = delete::delete(shared, res, item_ns, item_name, &opts) {
                    deleted.push(v);
                }
            }
            let mut out = list;
            out["items"] = json!(deleted);
            Ok(json_response(200, &out))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query("fieldSelector=spec.nodeName%3Dn1&labelSelector=app+in+%28a%2Cb%29&watch");
        assert_eq!(q["fieldSelector"], "spec.nodeName=n1");
        assert_eq!(q["labelSelector"], "app in (a,b)");
        assert_eq!(q["watch"], "");
        assert_eq!(decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn paths_route_like_upstream() {
        let (r, ns, n, s) = target("", "v1", &["namespaces", "a", "pods", "p", "status"]).unwrap();
        assert_eq!((r.plural, ns, n, s), ("pods", Some("a"), Some("p"), Some("status")));
        let (r, ns, n, s) = target("", "v1", &["namespaces", "a", "status"]).unwrap();
        assert_eq!((r.plural, ns, n, s), ("namespaces", None, Some("a"), Some("status")));
        let (r, ns, n, _) = target("", "v1", &["namespaces", "a"]).unwrap();
        assert_eq!((r.plural, ns, n), ("namespaces", None, Some("a")));
        assert!(target("", "v1", &["namespaces", "a", "nodes", "n"]).is_err());
        assert!(target("", "v1", &["pods", "p", "log"]).is_err());
        let (r, ..) = target("coordination.k8s.io", "v1", &["namespaces", "kube-node-lease", "leases", "n"]).unwrap();
        assert_eq!(r.kind, "Lease");
    }
}
