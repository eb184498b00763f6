//! [`ObjectGetter`] over the API server with kube-rs.
//!
//! ConfigMaps and secrets are read the way `configMapAndSecretChangeDetectionStrategy` says
//! ([`ChangeDetection`]): `Watch` (the default) keeps a watch on every object a registered pod
//! refers to, `Cache` serves each object for a TTL, `Get` asks the API server every time. Either
//! way a change reaches a running pod's volume at its next resync. Service lists are cached for
//! a TTL; service account tokens go through a [`TokenCache`].

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use kube::Api;
use kube::api::{ListParams, PostParams};

use super::cache::TtlCache;
use super::watch::WatchCache;
use super::{ObjectError, ObjectGetter, ServiceAccountToken, TokenCache};

/// How long a fetched object is served from the cache (upstream's cache-based managers default
/// to one minute).
pub const DEFAULT_OBJECT_TTL: Duration = Duration::from_secs(60);

/// How configMap and secret changes are noticed (`configMapAndSecretChangeDetectionStrategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeDetection {
    /// Every read asks the API server.
    Get,
    /// A read is served from a copy younger than the TTL.
    Cache(Duration),
    /// Objects referenced by registered pods are watched.
    Watch,
}

impl ChangeDetection {
    /// The strategy named as in `KubeletConfiguration` (`Get`, `Cache`, `Watch`); `None` for
    /// anything else.
    pub fn from_config(name: &str) -> Option<Self> {
        match name {
            "Get" => Some(Self::Get),
            "Cache" => Some(Self::Cache(DEFAULT_OBJECT_TTL)),
            "Watch" => Some(Self::Watch),
            _ => None,
        }
    }
}

// One per kubelet: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Store {
    Ttl { config_maps: TtlCache<ConfigMap>, secrets: TtlCache<Secret> },
    Watch { config_maps: WatchCache<ConfigMap>, secrets: WatchCache<Secret> },
}

/// The configMap and secret names a registered pod refers to.
type Refs = (BTreeSet<String>, BTreeSet<String>);

/// The kubelet's reader of configMaps, secrets, tokens and services.
pub struct ApiObjects {
    client: kube::Client,
    store: Store,
    services: TtlCache<Vec<Service>>,
    tokens: TokenCache,
    /// Pod uid → the namespace and objects it was registered with.
    pods: Mutex<HashMap<String, (String, Refs)>>,
}

impl ApiObjects {
    pub fn new(client: kube::Client, strategy: ChangeDetection) -> Self {
        let store = match strategy {
            ChangeDetection::Get => {
                Store::Ttl { config_maps: TtlCache::new(Duration::ZERO), secrets: TtlCache::new(Duration::ZERO) }
            }
            ChangeDetection::Cache(ttl) => Store::Ttl { config_maps: TtlCache::new(ttl), secrets: TtlCache::new(ttl) },
            ChangeDetection::Watch => Store::Watch {
                config_maps: WatchCache::new(client.clone(), "configmap", |c: &ConfigMap| c.immutable == Some(true)),
                secrets: WatchCache::new(client.clone(), "secret", |s: &Secret| s.immutable == Some(true)),
            },
        };
        Self {
            client,
            store,
            services: TtlCache::new(DEFAULT_OBJECT_TTL),
            tokens: TokenCache::new(),
            pods: Mutex::default(),
        }
    }

    /// How many configMaps and secrets are being watched (zero unless the strategy is `Watch`).
    pub fn watched(&self) -> usize {
        match &self.store {
            Store::Ttl { .. } => 0,
            Store::Watch { config_maps, secrets } => config_maps.len() + secrets.len(),
        }
    }

    /// Records what `pod` refers to now (`None`: nothing, it is gone) and adjusts the watches or
    /// cache to it.
    fn set_refs(&self, pod: &Pod, now: Option<Refs>) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let before = {
            let mut pods = self.pods.lock().unwrap_or_else(PoisonError::into_inner);
            match &now {
                Some(refs) => pods.insert(uid, (namespace.clone(), refs.clone())),
                None => pods.remove(&uid),
            }
        };
        let (now_cms, now_secrets) = now.unwrap_or_default();
        let (old_ns, (old_cms, old_secrets)) = before.unwrap_or_else(|| (namespace.clone(), Refs::default()));
        match &self.store {
            Store::Ttl { config_maps, secrets } => {
                // A pod (re)registered reads its objects afresh (upstream `RegisterPod`).
                for name in &now_cms {
                    config_maps.invalidate(&key(&namespace, name));
                }
                for name in &now_secrets {
                    secrets.invalidate(&key(&namespace, name));
                }
            }
            Store::Watch { config_maps, secrets } => {
                // Add before releasing, so an object still referenced keeps its watch.
                now_cms.iter().for_each(|n| config_maps.add_ref(&namespace, n));
                now_secrets.iter().for_each(|n| secrets.add_ref(&namespace, n));
                old_cms.iter().for_each(|n| config_maps.release(&old_ns, n));
                old_secrets.iter().for_each(|n| secrets.release(&old_ns, n));
            }
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
        let fetch = || async {
            api.get_opt(name).await.map_err(|e| ObjectError::from_kube(format!("configmap {namespace}/{name}"), e))
        };
        match &self.store {
            Store::Ttl { config_maps, .. } => config_maps.get(key(namespace, name), fetch).await,
            Store::Watch { config_maps, .. } => config_maps.get(namespace, name, fetch).await,
        }
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ObjectError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let fetch = || async {
            api.get_opt(name).await.map_err(|e| ObjectError::from_kube(format!("secret {namespace}/{name}"), e))
        };
        match &self.store {
            Store::Ttl { secrets, .. } => secrets.get(key(namespace, name), fetch).await,
            Store::Watch { secrets, .. } => secrets.get(namespace, name, fetch).await,
        }
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
        self.set_refs(pod, Some(super::referenced_objects(pod)));
    }

    fn pod_unregistered(&self, pod: &Pod) {
        self.set_refs(pod, None);
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
