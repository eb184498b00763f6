//! The API objects pods refer to — configMaps, secrets, service account tokens, services — read
//! through one seam, [`ObjectGetter`], with a kube-rs implementation ([`ApiObjects`]) and a fake
//! ([`FakeObjects`], feature `test-util`).

use std::collections::BTreeSet;

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::TokenRequestSpec;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::Instant;

mod cache;
#[cfg(any(test, feature = "test-util"))]
mod fake;
mod kube_objects;
mod token;
mod watch;

#[cfg(any(test, feature = "test-util"))]
pub use fake::FakeObjects;
pub use kube_objects::{ApiObjects, ChangeDetection, DEFAULT_OBJECT_TTL};
pub use token::{TokenCache, token_cache_key};

/// A service account token as the kubelet hands it to a pod.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceAccountToken {
    pub token: String,
    /// When the API server says the token expires.
    pub expiration_timestamp: Option<Time>,
    /// When the getter will request a new one instead of returning this one: 80% of the
    /// token's lifetime, at most 24 h, after it was issued (upstream `requiresRefresh`, without
    /// its 10 s jitter). May be in the past when a refresh failed and the token is still valid.
    pub refresh_at: Instant,
}

impl std::fmt::Debug for ServiceAccountToken {
    // The token is a credential: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountToken")
            .field("token", &"<redacted>")
            .field("expiration_timestamp", &self.expiration_timestamp)
            .field("refresh_at", &self.refresh_at)
            .finish()
    }
}

/// Why an object could not be read. "Does not exist" is not an error (`Ok(None)`) except for
/// tokens, whose service account must exist.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The API server could not be reached or refused the request.
    #[error("failed to get {what}: {message}")]
    Api {
        /// e.g. `configmap default/app-config`
        what: String,
        /// The API server's message, or the transport error.
        message: String,
        #[source]
        source: Option<Box<kube::Error>>,
    },

    /// No token has been issued for this key and requesting one failed (upstream wording).
    #[error("failed to fetch token: {message}")]
    TokenFetch { message: String },

    /// The cached token expired and requesting a new one failed (upstream wording).
    #[error("token {key} expired and refresh failed: {message}")]
    TokenExpired { key: String, message: String },
}

impl ObjectError {
    /// An error from kube-rs about `what`, keeping the API server's own message when there is one.
    pub fn from_kube(what: impl Into<String>, err: kube::Error) -> Self {
        Self::Api { what: what.into(), message: kube_message(&err), source: Some(Box::new(err)) }
    }

    /// The message without the "failed to get …" prefix (for wrapping into token errors).
    pub fn message(&self) -> &str {
        match self {
            Self::Api { message, .. } | Self::TokenFetch { message } | Self::TokenExpired { message, .. } => message,
        }
    }
}

/// The API server's message of a rejected request (`serviceaccounts "x" not found`), else the
/// error itself.
pub fn kube_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

/// Reads the API objects a pod's volumes and environment refer to.
///
/// Called by the volume manager on every pod sync (volume contents are refreshed from what this
/// returns) and by the runtime manager before each container start (env). Implementations
/// watch or cache, so calling on every sync is cheap; a cache may return data up to its TTL old.
/// Must be cancel-safe (a pod sync in flight may be dropped). `Ok(None)` means the object does
/// not exist; `Err` means it could not be determined.
#[async_trait]
pub trait ObjectGetter: Send + Sync + 'static {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, ObjectError>;

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ObjectError>;

    /// A token for `service_account` in `namespace` (TokenRequest: `audiences`,
    /// `expirationSeconds` and `boundObjectRef` to the pod as given in `spec`). Tokens are
    /// cached per (namespace, service account, audiences, expiration, bound object) and
    /// re-requested at [`ServiceAccountToken::refresh_at`]; if that fails while the cached token
    /// is still valid, the cached one is returned.
    async fn service_account_token(
        &self,
        namespace: &str,
        service_account: &str,
        spec: &TokenRequestSpec,
    ) -> Result<ServiceAccountToken, ObjectError>;

    /// Every service in `namespace` (for service link env vars; the kubelet also asks for
    /// `default` to find the `kubernetes` service).
    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ObjectError>;

    /// A pod was added or its spec updated (upstream `RegisterPod`): the configMaps and secrets
    /// it refers to are read afresh at their next use, so a new pod never starts with a copy
    /// cached before it existed.
    fn pod_registered(&self, _pod: &Pod) {}

    /// A pod was removed (upstream `UnregisterPod`): objects only it referred to are no longer
    /// kept up to date.
    fn pod_unregistered(&self, _pod: &Pod) {}
}

/// The names of the configMaps and secrets `pod` refers to (volumes, projected sources, env,
/// envFrom of every container kind, image pull secrets), as upstream's `getConfigMapNames` /
/// `getSecretNames`.
pub fn referenced_objects(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut config_maps, mut secrets) = (BTreeSet::new(), BTreeSet::new());
    let Some(spec) = pod.spec.as_ref() else { return (config_maps, secrets) };
    for v in spec.volumes.iter().flatten() {
        if let Some(name) = v.config_map.as_ref().map(|c| c.name.clone()) {
            config_maps.insert(name);
        }
        if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(name);
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(name) = src.config_map.as_ref().map(|c| c.name.clone()) {
                config_maps.insert(name);
            }
            if let Some(name) = src.secret.as_ref().map(|s| s.name.clone()) {
                secrets.insert(name);
            }
        }
    }
    for s in spec.image_pull_secrets.iter().flatten() {
        secrets.insert(s.name.clone());
    }
    let containers = spec.init_containers.iter().flatten().chain(spec.containers.iter());
    let ephemeral = spec.ephemeral_containers.iter().flatten();
    let envs = containers
        .map(|c| (c.env.as_ref(), c.env_from.as_ref()))
        .chain(ephemeral.map(|c| (c.env.as_ref(), c.env_from.as_ref())));
    for (env, env_from) in envs {
        for from in env.into_iter().flatten().filter_map(|e| e.value_from.as_ref()) {
            if let Some(r) = &from.config_map_key_ref {
                config_maps.insert(r.name.clone());
            }
            if let Some(r) = &from.secret_key_ref {
                secrets.insert(r.name.clone());
            }
        }
        for from in env_from.into_iter().flatten() {
            if let Some(r) = &from.config_map_ref {
                config_maps.insert(r.name.clone());
            }
            if let Some(r) = &from.secret_ref {
                secrets.insert(r.name.clone());
            }
        }
    }
    config_maps.retain(|n| !n.is_empty());
    secrets.retain(|n| !n.is_empty());
    (config_maps, secrets)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn referenced_objects_cover_volumes_projections_env_and_pull_secrets() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "imagePullSecrets": [{"name": "pull"}],
                "volumes": [
                    {"name": "a", "configMap": {"name": "cm-vol"}},
                    {"name": "b", "secret": {"secretName": "sec-vol"}},
                    {"name": "c", "projected": {"sources": [
                        {"configMap": {"name": "cm-proj"}}, {"secret": {"name": "sec-proj"}},
                        {"serviceAccountToken": {"path": "t"}}
                    ]}},
                    {"name": "d", "emptyDir": {}}
                ],
                "initContainers": [{"name": "i", "envFrom": [{"configMapRef": {"name": "cm-init"}}]}],
                "containers": [{"name": "c", "env": [
                    {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm-env", "key": "k"}}},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "sec-env", "key": "k"}}},
                    {"name": "C", "value": "plain"}
                ], "envFrom": [{"secretRef": {"name": "sec-from"}}]}],
                "ephemeralContainers": [{"name": "e", "envFrom": [{"configMapRef": {"name": "cm-debug"}}]}]
            }
        }))
        .unwrap();
        let (cms, secrets) = referenced_objects(&pod);
        assert_eq!(cms.into_iter().collect::<Vec<_>>(), ["cm-debug", "cm-env", "cm-init", "cm-proj", "cm-vol"]);
        assert_eq!(secrets.into_iter().collect::<Vec<_>>(), ["pull", "sec-env", "sec-from", "sec-proj", "sec-vol"]);
    }
}
