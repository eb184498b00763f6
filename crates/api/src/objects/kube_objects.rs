//! [`ObjectGetter`] over the API server with kube-rs.
//!
//! ConfigMaps, secrets and service lists are cached per object for a TTL (upstream's `Cache`
//! `configMapAndSecretChangeDetectionStrategy`, not its default `Watch`): a change reaches a
//! running pod's volume within TTL + one pod resync. Service account tokens go through a
//! [`TokenCache`].

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use kube::Api;
use kube::api::{ListParams, PostParams};

use super::cache::TtlCache;
use super::{ObjectError, ObjectGetter, ServiceAccountToken, TokenCache};

/// How long a fetched object is served from the cache (upstream's cache-based managers default
/// to one minute).
pub const DEFAULT_OBJECT_TTL: Duration = Duration::from_secs(60);

/// The kubelet's reader of configMaps, secrets, tokens and services.
pub struct ApiObjects {
    client: kube::Client,
    config_maps: TtlCache<ConfigMap>,
    secrets: TtlCache<Secret>,
    services: TtlCache<Vec<Service>>,
    tokens: TokenCache,
}

impl ApiObjects {
    /// Objects cached for [`DEFAULT_OBJECT_TTL`].
    pub fn new(client: kube::Client) -> Self {
        Self::with_ttl(client, DEFAULT_OBJECT_TTL)
    }

    /// Objects cached for `ttl` (zero: every call asks the API server).
    pub fn with_ttl(client: kube::Client, ttl: Duration) -> Self {
        Self {
            client,
            config_maps: TtlCache::new(ttl),
            secrets: TtlCache::new(ttl),
            services: TtlCache::new(ttl),
            tokens: TokenCache::new(),
        }
    }
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

#[async_trait]
impl ObjectGetter for ApiObjects {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, ObjectError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        self.config_maps
            .get(key(namespace, name), || async {
                api.get_opt(name).await.map_err(|e| ObjectError::from_kube(format!("configmap {namespace}/{name}"), e))
            })
            .await
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ObjectError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        self.secrets
            .get(key(namespace, name), || async {
                api.get_opt(name).await.map_err(|e| ObjectError::from_kube(format!("secret {namespace}/{name}"), e))
            })
            .await
    }

    async fn service_account_token(
        &self,
        namespace: &str,
        service_account: &str,
        spec: &TokenRequestSpec,
    ) -> Result<ServiceAccountToken, ObjectError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let request = TokenRequest { spec: Some(spec.clone()), ..Default::default() };
        self.tokens
            .get(namespace, service_account, spec, || async {
                api.create_token_request(service_account, &PostParams::default(), &request).await.map_err(|e| {
                    ObjectError::from_kube(format!("token for serviceaccount {namespace}/{service_account}"), e)
                })
            })
            .await
    }

    fn pod_registered(&self, pod: &Pod) {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let (config_maps, secrets) = super::referenced_objects(pod);
        for name in config_maps {
            self.config_maps.invalidate(&key(namespace, &name));
        }
        for name in secrets {
            self.secrets.invalidate(&key(namespace, &name));
        }
    }

    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ObjectError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        let list = self
            .services
            .get(namespace.to_string(), || async {
                api.list(&ListParams::default())
                    .await
                    .map(|l| Some(l.items))
                    .map_err(|e| ObjectError::from_kube(format!("services in namespace {namespace}"), e))
            })
            .await?;
        Ok(list.unwrap_or_default())
    }
}
