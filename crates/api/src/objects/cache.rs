//! A per-object cache with a TTL (upstream's `Cache` change detection strategy): an object is
//! fetched again once its copy is older than the TTL. Absent objects are not cached, so a pod
//! waiting for one sees it on the next sync after it is created. A fetch that fails returns the
//! stale copy when there is one, as upstream's object store does: an API server that is away
//! does not take away what the kubelet already knew.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::ObjectError;

#[derive(Debug)]
pub(crate) struct TtlCache<V> {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> TtlCache<V> {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::default() }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, (Instant, V)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached value of `key` if it is fresh, else `fetch`'s (cached when it is `Some`).
    pub(crate) async fn get<F, Fut>(&self, key: String, fetch: F) -> Result<Option<V>, ObjectError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, ObjectError>>,
    {
        if let Some((at, v)) = self.lock().get(&key)
            && at.elapsed() < self.ttl
        {
            return Ok(Some(v.clone()));
        }
        let fetched = match fetch().await {
            Ok(fetched) => fetched,
            Err(e) => match self.lock().get(&key) {
                Some((_, stale)) => {
                    tracing::debug!(key = %key, "serving a stale copy: {e}");
                    return Ok(Some(stale.clone()));
                }
                None => return Err(e),
            },
        };
        let now = Instant::now();
        let mut entries = self.lock();
        entries.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
        match &fetched {
            Some(v) => entries.insert(key, (now, v.clone())),
            None => entries.remove(&key),
        };
        Ok(fetched)
    }
}

impl<V> TtlCache<V> {
    /// Forgets `key`: its next `get` fetches.
    pub(crate) fn invalidate(&self, key: &str) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fresh_values_are_served_from_the_cache() {
        let cache = TtlCache::new(Duration::from_secs(60));
        let fetches = AtomicU32::new(0);
        let fetch = || async {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            Ok(Some(n))
        };
        assert_eq!(cache.get("a".into(), fetch).await.unwrap(), Some(0));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(cache.get("a".into(), fetch).await.unwrap(), Some(0));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(cache.get("a".into(), fetch).await.unwrap(), Some(1));
        assert_eq!(cache.get("b".into(), fetch).await.unwrap(), Some(2));
        cache.invalidate("b");
        assert_eq!(cache.get("b".into(), fetch).await.unwrap(), Some(3), "fetched again once invalidated");
        assert_eq!(cache.get("a".into(), fetch).await.unwrap(), Some(1), "other keys stay cached");
    }

    #[tokio::test(start_paused = true)]
    async fn absent_objects_are_not_cached_and_failed_fetches_serve_stale_copies() {
        let cache: TtlCache<u32> = TtlCache::new(Duration::from_secs(60));
        assert_eq!(cache.get("a".into(), || async { Ok(None) }).await.unwrap(), None);
        assert_eq!(cache.get("a".into(), || async { Ok(Some(7)) }).await.unwrap(), Some(7));
        let err = || async { Err(ObjectError::TokenFetch { message: "x".into() }) };
        // Served from the cache: the failing fetch is not called.
        assert_eq!(cache.get("a".into(), err).await.unwrap(), Some(7));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(cache.get("a".into(), err).await.unwrap(), Some(7), "stale copy while fetches fail");
        assert_eq!(cache.get("a".into(), || async { Ok(Some(8)) }).await.unwrap(), Some(8), "fetched once they work");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(cache.get("a".into(), || async { Ok(None) }).await.unwrap(), None);
        assert!(cache.get("a".into(), err).await.is_err(), "nothing to fall back on once it was gone");
        assert!(cache.get("b".into(), err).await.is_err(), "nor for what was never fetched");
    }
}
