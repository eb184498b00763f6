//! Authentication and authorization of the kubelet API (upstream `pkg/kubelet/server/auth.go`
//! and the delegating authenticator/authorizer of `k8s.io/apiserver`).
//!
//! Authentication, in upstream's order: a client certificate verified against the client CA
//! (user = CN, groups = O), else a bearer token reviewed by the API server (TokenReview), else —
//! only when enabled and no credential was offered — `system:anonymous` in
//! `system:unauthenticated`. A token that does not pass is a 401 even with anonymous enabled.
//! Authenticated users also get `system:authenticated`.
//!
//! Authorization: AlwaysAllow, or Webhook (SubjectAccessReview) on resource `nodes` named after
//! this node, with the verb from the HTTP method and the subresource from the path
//! ([`request_attributes`]); any allowed attribute set admits the request. Webhook answers are
//! cached (authentication 2 min; authorization 5 min allowed, 30 s denied, as upstream).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

pub const ANONYMOUS: &str = "system:anonymous";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
pub const AUTHENTICATED: &str = "system:authenticated";

/// An authenticated identity (upstream `user.Info`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    pub fn anonymous() -> Self {
        Self { name: ANONYMOUS.into(), groups: vec![UNAUTHENTICATED.into()], ..Default::default() }
    }

    /// Adds `system:authenticated` unless it is there or the user is anonymous (upstream's
    /// `AuthenticatedGroupAdder`).
    fn with_authenticated_group(mut self) -> Self {
        if self.name != ANONYMOUS && !self.groups.iter().any(|g| g == AUTHENTICATED) {
            self.groups.push(AUTHENTICATED.into());
        }
        self
    }
}

/// What is asked of the authorizer for one request (upstream `authorizer.AttributesRecord` as
/// the kubelet fills it: API version v1, resource `nodes`, a resource request).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attributes {
    pub user: User,
    pub verb: String,
    pub name: String,
    pub subresource: String,
    pub path: String,
}

impl Attributes {
    pub const RESOURCE: &'static str = "nodes";
    pub const API_VERSION: &'static str = "v1";
}

/// Upstream's `isSubpath`: `path` itself or below it.
fn is_subpath(subpath: &str, path: &str) -> bool {
    let path = path.trim_end_matches('/');
    subpath == path || (subpath.starts_with(path) && subpath.as_bytes().get(path.len()) == Some(&b'/'))
}

/// The verb of an HTTP method (upstream: POST create, GET get, PUT update, PATCH patch, DELETE
/// delete; anything else none).
pub fn api_verb(method: &str) -> &'static str {
    match method {
        "POST" => "create",
        "GET" => "get",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    }
}

/// Upstream's `GetRequestAttributes` with `KubeletFineGrainedAuthz` (on by default): `/pods` and
/// `/runningpods/` ask for `pods`, `/healthz` for `healthz`, `/configz` for `configz`, then
/// `proxy`; `/stats` → `stats`, `/metrics` → `metrics`, `/logs` → `log`, `/checkpoint` →
/// `checkpoint`; anything else → `proxy`.
pub fn request_attributes(user: &User, method: &str, path: &str, node: &str) -> Vec<Attributes> {
    let mut subresources = Vec::new();
    if is_subpath(path, "/pods") || is_subpath(path, "/runningpods/") {
        subresources.push("pods");
    } else if is_subpath(path, "/healthz") {
        subresources.push("healthz");
    } else if is_subpath(path, "/configz") {
        subresources.push("configz");
    } else if is_subpath(path, "/statusz") {
        subresources.push("statusz");
    }
    subresources.push(if is_subpath(path, "/stats/") {
        "stats"
    } else if is_subpath(path, "/metrics") {
        "metrics"
    } else if is_subpath(path, "/logs/") {
        "log"
    } else if is_subpath(path, "/checkpoint") {
        "checkpoint"
    } else {
        "proxy"
    });
    subresources
        .into_iter()
        .map(|s| Attributes {
            user: user.clone(),
            verb: api_verb(method).into(),
            name: node.into(),
            subresource: s.into(),
            path: path.into(),
        })
        .collect()
}

/// Reviews bearer tokens (the API server's TokenReview). `Ok(None)`: not authenticated.
#[async_trait]
pub trait TokenReviewer: Send + Sync + 'static {
    async fn review(&self, token: &str) -> Result<Option<User>, String>;
}

/// Reviews access (the API server's SubjectAccessReview): allowed, and the reason given.
#[async_trait]
pub trait AccessReviewer: Send + Sync + 'static {
    async fn review(&self, attributes: &Attributes) -> Result<(bool, String), String>;
}

/// A cache of answers that expire: `ok_ttl` for positive ones, `err_ttl` for the others.
struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    fn new() -> Self {
        Self { entries: Mutex::new(HashMap::new()) }
    }
    fn get(&self, k: &K) -> Option<V> {
        let mut m = self.entries.lock().ok()?;
        match m.get(k) {
            Some((until, v)) if *until > Instant::now() => Some(v.clone()),
            Some(_) => {
                m.remove(k);
                None
            }
            None => None,
        }
    }
    fn put(&self, k: K, v: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        if let Ok(mut m) = self.entries.lock() {
            // Bounded: drop what expired before growing.
            if m.len() >= 4096 {
                let now = Instant::now();
                m.retain(|_, (until, _)| *until > now);
            }
            if m.len() < 4096 {
                m.insert(k, (Instant::now() + ttl, v));
            }
        }
    }
}

/// Why a request is not authenticated (always answered 401 "Unauthorized").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthnError {
    /// No credential offered and anonymous requests are off.
    NoCredentials,
    /// A bearer token was offered and did not pass (or could not be reviewed).
    InvalidToken(String),
}

/// The authenticator of the kubelet API.
pub struct Authenticator {
    anonymous: bool,
    tokens: Option<Box<dyn TokenReviewer>>,
    cache_ttl: Duration,
    cache: TtlCache<String, Option<User>>,
}

impl Authenticator {
    /// `tokens`: the TokenReview client when webhook authentication is on; `cache_ttl` its
    /// `authentication.webhook.cacheTTL`.
    pub fn new(anonymous: bool, tokens: Option<Box<dyn TokenReviewer>>, cache_ttl: Duration) -> Self {
        Self { anonymous, tokens, cache_ttl, cache: TtlCache::new() }
    }

    /// Authenticates a request that carried the verified client certificate user `cert_user`
    /// (if any) and the `Authorization` header `authorization` (if any).
    pub async fn authenticate(&self, cert_user: Option<User>, authorization: Option<&str>) -> Result<User, AuthnError> {
        if let Some(u) = cert_user {
            return Ok(u.with_authenticated_group());
        }
        let token = authorization
            .and_then(|h| h.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")))
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty());
        // Without token authentication a bearer token is no credential at all (upstream has no
        // token authenticator in its chain then): the request goes on as if it had none.
        if let (Some(token), Some(reviewer)) = (token, self.tokens.as_ref()) {
            let answer = match self.cache.get(&token.to_string()) {
                Some(a) => a,
                None => {
                    let a = reviewer.review(token).await.map_err(AuthnError::InvalidToken)?;
                    self.cache.put(token.to_string(), a.clone(), self.cache_ttl);
                    a
                }
            };
            return answer
                .map(User::with_authenticated_group)
                .ok_or(AuthnError::InvalidToken("invalid bearer token".into()));
        }
        if self.anonymous { Ok(User::anonymous()) } else { Err(AuthnError::NoCredentials) }
    }
}

/// The authorizer of the kubelet API: AlwaysAllow, or Webhook.
pub struct Authorizer {
    webhook: Option<Webhook>,
}

struct Webhook {
    reviewer: Box<dyn AccessReviewer>,
    allowed_ttl: Duration,
    denied_ttl: Duration,
    cache: TtlCache<Attributes, bool>,
}

/// What the authorizer decided for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// 403 with upstream's message.
    Forbidden(String),
    /// The review could not be made: 500 with upstream's message.
    Error(String),
}

impl Authorizer {
    pub fn always_allow() -> Self {
        Self { webhook: None }
    }

    pub fn webhook(reviewer: Box<dyn AccessReviewer>, allowed_ttl: Duration, denied_ttl: Duration) -> Self {
        Self { webhook: Some(Webhook { reviewer, allowed_ttl, denied_ttl, cache: TtlCache::new() }) }
    }

    /// Admits the request when any of `attrs` is allowed (they differ only by subresource).
    pub async fn authorize(&self, attrs: &[Attributes]) -> Decision {
        let Some(first) = attrs.first() else {
            return Decision::Error("Authorization error: could not determine attributes for request".into());
        };
        let Some(Webhook { reviewer, allowed_ttl, denied_ttl, cache }) = &self.webhook else {
            return Decision::Allowed;
        };
        for a in attrs {
            let allowed = match cache.get(a) {
                Some(v) => v,
                None => match reviewer.review(a).await {
                    Ok((allowed, reason)) => {
                        if !allowed {
                            tracing::debug!(user = %a.user.name, subresource = %a.subresource, "access denied: {reason}");
                        }
                        cache.put(a.clone(), allowed, if allowed { *allowed_ttl } else { *denied_ttl });
                        allowed
                    }
                    Err(e) => {
                        tracing::error!(user = %a.user.name, verb = %a.verb, subresource = %a.subresource, "authorization error: {e}");
                        return Decision::Error(format!(
                            "Authorization error (user={}, verb={}, resource={}, subresource={})",
                            a.user.name,
                            a.verb,
                            Attributes::RESOURCE,
                            a.subresource
                        ));
                    }
                },
            };
            if allowed {
                return Decision::Allowed;
            }
        }
        let subresources: Vec<&str> = attrs.iter().map(|a| a.subresource.as_str()).collect();
        Decision::Forbidden(format!(
            "Forbidden (user={}, verb={}, resource={}, subresource(s)=[{}])\n",
            first.user.name,
            first.verb,
            Attributes::RESOURCE,
            subresources.join(" ")
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn user(name: &str) -> User {
        User { name: name.into(), ..Default::default() }
    }

    fn subresources(method: &str, path: &str) -> (String, Vec<String>) {
        let a = request_attributes(&user("u"), method, path, "n1");
        assert!(a.iter().all(|a| a.name == "n1" && a.path == path));
        (a[0].verb.clone(), a.into_iter().map(|a| a.subresource).collect())
    }

    #[test]
    fn paths_map_to_upstreams_subresources_and_methods_to_verbs() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(subresources("GET", "/stats/summary"), ("get".into(), s(&["stats"])));
        assert_eq!(subresources("GET", "/stats"), ("get".into(), s(&["stats"])));
        assert_eq!(subresources("GET", "/statsx"), ("get".into(), s(&["proxy"])), "a sibling is not a subpath");
        assert_eq!(subresources("GET", "/metrics/cadvisor"), ("get".into(), s(&["metrics"])));
        assert_eq!(subresources("GET", "/logs/syslog"), ("get".into(), s(&["log"])));
        assert_eq!(subresources("GET", "/pods"), ("get".into(), s(&["pods", "proxy"])));
        assert_eq!(subresources("GET", "/runningpods/"), ("get".into(), s(&["pods", "proxy"])));
        assert_eq!(subresources("GET", "/healthz"), ("get".into(), s(&["healthz", "proxy"])));
        assert_eq!(subresources("GET", "/configz"), ("get".into(), s(&["configz", "proxy"])));
        assert_eq!(subresources("POST", "/exec/ns/p/c"), ("create".into(), s(&["proxy"])));
        assert_eq!(subresources("GET", "/containerLogs/ns/p/c"), ("get".into(), s(&["proxy"])));
        assert_eq!(subresources("POST", "/checkpoint/ns/p/c"), ("create".into(), s(&["checkpoint"])));
        for (m, v) in [("PUT", "update"), ("PATCH", "patch"), ("DELETE", "delete"), ("OPTIONS", "")] {
            assert_eq!(api_verb(m), v);
        }
    }

    struct Tokens(Arc<AtomicUsize>);

    #[async_trait]
    impl TokenReviewer for Tokens {
        async fn review(&self, token: &str) -> Result<Option<User>, String> {
            self.0.fetch_add(1, Ordering::SeqCst);
            match token {
                "good" => Ok(Some(User { name: "alice".into(), groups: vec!["dev".into()], ..Default::default() })),
                "broken" => Err("TokenReview failed: connection refused".into()),
                _ => Ok(None),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn credentials_in_upstreams_order_and_no_anonymous_fallback_for_bad_tokens() {
        let calls = Arc::new(AtomicUsize::new(0));
        let authn = Authenticator::new(true, Some(Box::new(Tokens(calls.clone()))), Duration::from_secs(120));
        let cert = User { name: "system:node:n1".into(), groups: vec!["system:nodes".into()], ..Default::default() };
        let u = authn.authenticate(Some(cert), Some("Bearer bad")).await.unwrap();
        assert_eq!(
            (u.name.as_str(), u.groups.clone()),
            ("system:node:n1", vec!["system:nodes".into(), AUTHENTICATED.into()])
        );
        let u = authn.authenticate(None, Some("Bearer good")).await.unwrap();
        assert_eq!(u.groups, vec!["dev".to_string(), AUTHENTICATED.into()]);
        assert!(
            matches!(authn.authenticate(None, Some("Bearer bad")).await, Err(AuthnError::InvalidToken(_))),
            "not anonymous"
        );
        assert!(matches!(authn.authenticate(None, Some("Bearer broken")).await, Err(AuthnError::InvalidToken(_))));
        assert_eq!(authn.authenticate(None, None).await.unwrap(), User::anonymous());
        let closed = Authenticator::new(false, None, Duration::ZERO);
        assert_eq!(closed.authenticate(None, None).await, Err(AuthnError::NoCredentials));
        assert_eq!(
            closed.authenticate(None, Some("Bearer good")).await,
            Err(AuthnError::NoCredentials),
            "no token authenticator"
        );
        let open = Authenticator::new(true, None, Duration::ZERO);
        assert_eq!(
            open.authenticate(None, Some("Bearer good")).await,
            Ok(User::anonymous()),
            "the token is ignored, as upstream"
        );

        // Reviews are cached for the TTL.
        let before = calls.load(Ordering::SeqCst);
        authn.authenticate(None, Some("Bearer good")).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), before, "cached");
        tokio::time::advance(Duration::from_secs(121)).await;
        authn.authenticate(None, Some("Bearer good")).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), before + 1, "expired");
    }

    struct Access(Arc<AtomicUsize>);

    #[async_trait]
    impl AccessReviewer for Access {
        async fn review(&self, a: &Attributes) -> Result<(bool, String), String> {
            self.0.fetch_add(1, Ordering::SeqCst);
            match (a.user.name.as_str(), a.subresource.as_str()) {
                ("ops", "proxy") | ("metrics-reader", "metrics") => Ok((true, String::new())),
                ("down", _) => Err("connection refused".into()),
                _ => Ok((false, "no RBAC rule".into())),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn any_allowed_attribute_admits_and_denials_carry_upstreams_message() {
        let calls = Arc::new(AtomicUsize::new(0));
        let authz =
            Authorizer::webhook(Box::new(Access(calls.clone())), Duration::from_secs(300), Duration::from_secs(30));
        let ask = |who: &str, method: &str, path: &str| request_attributes(&user(who), method, path, "n1");
        assert_eq!(authz.authorize(&ask("ops", "GET", "/pods")).await, Decision::Allowed, "pods denied, proxy allowed");
        assert_eq!(authz.authorize(&ask("metrics-reader", "GET", "/metrics")).await, Decision::Allowed);
        assert_eq!(
            authz.authorize(&ask("metrics-reader", "GET", "/pods")).await,
            Decision::Forbidden(
                "Forbidden (user=metrics-reader, verb=get, resource=nodes, subresource(s)=[pods proxy])\n".into()
            )
        );
        assert_eq!(
            authz.authorize(&ask("down", "POST", "/exec/ns/p/c")).await,
            Decision::Error("Authorization error (user=down, verb=create, resource=nodes, subresource=proxy)".into())
        );
        // Denials are cached 30 s, approvals 5 min.
        let n = calls.load(Ordering::SeqCst);
        authz.authorize(&ask("metrics-reader", "GET", "/pods")).await;
        authz.authorize(&ask("ops", "GET", "/pods")).await;
        assert_eq!(calls.load(Ordering::SeqCst), n);
        tokio::time::advance(Duration::from_secs(31)).await;
        authz.authorize(&ask("ops", "GET", "/pods")).await;
        assert_eq!(calls.load(Ordering::SeqCst), n + 1, "only the denied pods attribute asked again");
        assert_eq!(Authorizer::always_allow().authorize(&ask("anyone", "POST", "/run/a/b/c")).await, Decision::Allowed);
    }
}
