//! [`FakeObjects`]: an in-memory [`ObjectGetter`] that tests fill, change and empty.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec, TokenRequestStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};

use super::{ObjectError, ObjectGetter, ServiceAccountToken, TokenCache};

type Key = (String, String);

#[derive(Debug, Default)]
struct State {
    config_maps: BTreeMap<Key, ConfigMap>,
    secrets: BTreeMap<Key, Secret>,
    services: BTreeMap<Key, Service>,
    failure: Option<String>,
    token_requests: Vec<(String, String, TokenRequestSpec)>,
}

/// Objects keyed by their `metadata.namespace` (default `default`) and `metadata.name`. Tokens
/// are issued as `fake-token-<n>` (n counting from 1) through a real [`TokenCache`], so caching
/// and refresh timing are the real ones. Reads are never cached: a change is seen at once.
#[derive(Debug, Default)]
pub struct FakeObjects {
    state: Mutex<State>,
    tokens: TokenCache,
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (meta.namespace.clone().unwrap_or_else(|| "default".into()), meta.name.clone().unwrap_or_default())
}

fn key(namespace: &str, name: &str) -> Key {
    (namespace.to_string(), name.to_string())
}

impl FakeObjects {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Add or replace a configMap.
    pub fn put_config_map(&self, cm: ConfigMap) {
        self.lock().config_maps.insert(key_of(&cm.metadata), cm);
    }

    pub fn remove_config_map(&self, namespace: &str, name: &str) {
        self.lock().config_maps.remove(&key(namespace, name));
    }

    /// Add or replace a secret.
    pub fn put_secret(&self, s: Secret) {
        self.lock().secrets.insert(key_of(&s.metadata), s);
    }

    pub fn remove_secret(&self, namespace: &str, name: &str) {
        self.lock().secrets.remove(&key(namespace, name));
    }

    /// Add or replace a service.
    pub fn put_service(&self, s: Service) {
        self.lock().services.insert(key_of(&s.metadata), s);
    }

    pub fn remove_service(&self, namespace: &str, name: &str) {
        self.lock().services.remove(&key(namespace, name));
    }

    /// While `Some`, every call fails as if the API server answered with this message.
    pub fn set_failure(&self, message: Option<&str>) {
        self.lock().failure = message.map(str::to_string);
    }

    /// Every token request that reached the "API server" (cache misses), in order, as
    /// (namespace, service account, spec).
    pub fn token_requests(&self) -> Vec<(String, String, TokenRequestSpec)> {
        self.lock().token_requests.clone()
    }

    fn check(&self, what: impl FnOnce() -> String) -> Result<(), ObjectError> {
        match &self.lock().failure {
            Some(message) => Err(ObjectError::Api { what: what(), message: message.clone(), source: None }),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl ObjectGetter for FakeObjects {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, ObjectError> {
        self.check(|| format!("configmap {namespace}/{name}"))?;
        Ok(self.lock().config_maps.get(&key(namespace, name)).cloned())
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ObjectError> {
        self.check(|| format!("secret {namespace}/{name}"))?;
        Ok(self.lock().secrets.get(&key(namespace, name)).cloned())
    }

    async fn service_account_token(
        &self,
        namespace: &str,
        service_account: &str,
        spec: &TokenRequestSpec,
    ) -> Result<ServiceAccountToken, ObjectError> {
        self.tokens
            .get(namespace, service_account, spec, || async {
                self.check(|| format!("token for serviceaccount {namespace}/{service_account}"))?;
                let mut st = self.lock();
                st.token_requests.push((namespace.to_string(), service_account.to_string(), spec.clone()));
                let n = st.token_requests.len();
                Ok(TokenRequest {
                    spec: Some(spec.clone()),
                    status: Some(TokenRequestStatus {
                        token: Some(format!("fake-token-{n}")),
                        expiration_timestamp: None,
                    }),
                    ..Default::default()
                })
            })
            .await
    }

    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ObjectError> {
        self.check(|| format!("services in namespace {namespace}"))?;
        Ok(self.lock().services.iter().filter(|((ns, _), _)| ns == namespace).map(|(_, s)| s.clone()).collect())
    }
}
