//! The service account token cache (upstream `pkg/kubelet/token/token_manager.go`): one token
//! per (service account, namespace, audiences, expiration, bound object), re-requested when it
//! is older than 80% of its lifetime or 24 h.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use tokio::time::Instant;

use super::{ObjectError, ServiceAccountToken};

/// Upstream `maxTTL`: a token is refreshed at least this often.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// The API default of `serviceAccountToken.expirationSeconds`, used when a response has none.
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// Upstream's cache key: `"<sa>"/"<namespace>"/<audiences>/<expirationSeconds>/<boundObjectRef>`.
pub fn token_cache_key(namespace: &str, service_account: &str, spec: &TokenRequestSpec) -> String {
    let bound = spec.bound_object_ref.as_ref().map(|b| {
        format!(
            "{}/{}/{}/{}",
            b.api_version.as_deref().unwrap_or_default(),
            b.kind.as_deref().unwrap_or_default(),
            b.name.as_deref().unwrap_or_default(),
            b.uid.as_deref().unwrap_or_default()
        )
    });
    format!("{service_account:?}/{namespace:?}/{:?}/{:?}/{bound:?}", spec.audiences, spec.expiration_seconds)
}

#[derive(Debug, Clone)]
struct Entry {
    token: ServiceAccountToken,
    expires: Instant,
}

/// Issued tokens by key. Expired entries are dropped whenever a token is requested.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl TokenCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached token for this request while it does not need a refresh; otherwise `fetch`
    /// one (a `TokenRequest` response). A failed fetch returns the cached token while it has
    /// not expired.
    pub async fn get<F, Fut>(
        &self,
        namespace: &str,
        service_account: &str,
        spec: &TokenRequestSpec,
        fetch: F,
    ) -> Result<ServiceAccountToken, ObjectError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<TokenRequest, ObjectError>>,
    {
        let key = token_cache_key(namespace, service_account, spec);
        let cached = self.lock().get(&key).cloned();
        if let Some(e) = &cached
            && Instant::now() < e.token.refresh_at
        {
            return Ok(e.token.clone());
        }
        let fetched = fetch().await;
        let now = Instant::now();
        let mut entries = self.lock();
        entries.retain(|_, e| e.expires > now);
        match fetched {
            Ok(tr) => {
                let seconds = tr
                    .spec
                    .and_then(|s| s.expiration_seconds)
                    .or(spec.expiration_seconds)
                    .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
                let lifetime = Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
                let status = tr.status.unwrap_or_default();
                let token = ServiceAccountToken {
                    token: status.token.unwrap_or_default(),
                    expiration_timestamp: status.expiration_timestamp,
                    refresh_at: now + (lifetime * 4 / 5).min(MAX_TTL),
                };
                entries.insert(key, Entry { token: token.clone(), expires: now + lifetime });
                Ok(token)
            }
            Err(err) => match cached {
                None => Err(ObjectError::TokenFetch { message: err.message().to_string() }),
                Some(e) if now >= e.expires => {
                    Err(ObjectError::TokenExpired { key, message: err.message().to_string() })
                }
                Some(e) => {
                    tracing::warn!(namespace, service_account, "couldn't update token, using the cached one: {err}");
                    Ok(e.token)
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicU32, Ordering};

    use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequestStatus};

    use super::*;

    fn spec(exp: i64) -> TokenRequestSpec {
        TokenRequestSpec {
            audiences: Some(vec!["vault".into()]),
            expiration_seconds: Some(exp),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some("web".into()),
                uid: Some("u1".into()),
            }),
            ..Default::default()
        }
    }

    struct Issuer {
        n: AtomicU32,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Issuer {
        fn new() -> Self {
            Self { n: AtomicU32::new(0), fail: false.into() }
        }
        async fn issue(&self, spec: &TokenRequestSpec) -> Result<TokenRequest, ObjectError> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(ObjectError::Api {
                    what: "token".into(),
                    message: "connection refused".into(),
                    source: None,
                });
            }
            let n = self.n.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(TokenRequest {
                spec: Some(spec.clone()),
                status: Some(TokenRequestStatus { token: Some(format!("t{n}")), expiration_timestamp: None }),
                ..Default::default()
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_at_80_percent_of_lifetime() {
        let cache = TokenCache::new();
        let issuer = Issuer::new();
        let s = spec(1000);
        let get = || cache.get("ns", "default", &s, || issuer.issue(&s));
        let start = Instant::now();
        let t = get().await.unwrap();
        assert_eq!(t.token, "t1");
        assert_eq!(t.refresh_at, start + Duration::from_secs(800));
        tokio::time::advance(Duration::from_secs(799)).await;
        assert_eq!(get().await.unwrap().token, "t1");
        tokio::time::advance(Duration::from_secs(1)).await;
        let t = get().await.unwrap();
        assert_eq!(t.token, "t2");
        assert_eq!(t.refresh_at, start + Duration::from_secs(1600));
        assert_eq!(issuer.n.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn long_tokens_refresh_after_24h() {
        let cache = TokenCache::new();
        let issuer = Issuer::new();
        let s = spec(7 * 24 * 3600);
        let t = cache.get("ns", "default", &s, || issuer.issue(&s)).await.unwrap();
        assert_eq!(t.refresh_at - Instant::now(), MAX_TTL);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_separate_audiences_and_pods() {
        let cache = TokenCache::new();
        let issuer = Issuer::new();
        let a = spec(1000);
        let mut b = spec(1000);
        b.audiences = Some(vec!["other".into()]);
        let mut c = spec(1000);
        if let Some(r) = c.bound_object_ref.as_mut() {
            r.uid = Some("u2".into());
        }
        for s in [&a, &b, &c, &a] {
            cache.get("ns", "default", s, || issuer.issue(s)).await.unwrap();
        }
        assert_eq!(issuer.n.load(Ordering::SeqCst), 3);
        assert_ne!(token_cache_key("ns", "default", &a), token_cache_key("ns", "default", &c));
    }

    #[tokio::test(start_paused = true)]
    async fn failed_refresh_keeps_valid_token_then_expires() {
        let cache = TokenCache::new();
        let issuer = Issuer::new();
        let s = spec(1000);
        cache.get("ns", "default", &s, || issuer.issue(&s)).await.unwrap();
        issuer.fail.store(true, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(900)).await;
        assert_eq!(cache.get("ns", "default", &s, || issuer.issue(&s)).await.unwrap().token, "t1");
        tokio::time::advance(Duration::from_secs(100)).await;
        let err = cache.get("ns", "default", &s, || issuer.issue(&s)).await.unwrap_err();
        // Expired entries are pruned, so the next failure reports a failed first fetch.
        assert!(err.to_string().contains("expired and refresh failed: connection refused"), "{err}");
        let err = cache.get("ns", "default", &s, || issuer.issue(&s)).await.unwrap_err();
        assert_eq!(err.to_string(), "failed to fetch token: connection refused");
    }
}
