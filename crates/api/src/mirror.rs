//! Mirror pods (upstream `pod/mirror_client.go`): the API's read-only copy of a static pod,
//! annotated with `kubernetes.io/config.mirror` = the static pod's config hash and owned by the
//! Node, so the cluster sees static pods and deletes them with the node.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, PostParams};

use crate::pods::MIRROR_ANNOTATION;

/// Annotation carrying a static pod's content hash.
pub const CONFIG_HASH_ANNOTATION: &str = "kubernetes.io/config.hash";

fn hash_of(pod: &Pod) -> Option<&String> {
    pod.metadata.annotations.as_ref()?.get(CONFIG_HASH_ANNOTATION)
}

/// True when `mirror` mirrors this version of `static_pod` (upstream `IsMirrorPodOf`).
pub fn is_mirror_pod_of(mirror: &Pod, static_pod: &Pod) -> bool {
    let same_name =
        mirror.metadata.name == static_pod.metadata.name && mirror.metadata.namespace == static_pod.metadata.namespace;
    let mirror_hash = mirror.metadata.annotations.as_ref().and_then(|a| a.get(MIRROR_ANNOTATION));
    same_name && mirror_hash.is_some() && mirror_hash == hash_of(static_pod)
}

/// The mirror pod for `static_pod` owned by the node `node`/`node_uid`.
pub fn mirror_pod_for(static_pod: &Pod, node: &str, node_uid: &str) -> Pod {
    let mut m = static_pod.clone();
    m.metadata.uid = None;
    m.metadata.resource_version = None;
    m.metadata.creation_timestamp = None;
    m.status = None;
    let hash = hash_of(static_pod).cloned().unwrap_or_default();
    m.metadata.annotations.get_or_insert_with(Default::default).insert(MIRROR_ANNOTATION.into(), hash);
    m.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.into(),
        uid: node_uid.into(),
        ..Default::default()
    }]);
    m
}

/// Creates and deletes mirror pods. Called from the kubelet's mirror pod sync only.
#[async_trait]
pub trait MirrorClient: Send + Sync + 'static {
    async fn create_mirror_pod(&self, static_pod: &Pod, node_uid: &str) -> Result<(), kube::Error>;
    /// Deletes `namespace/name` (only the object with `uid` when given); missing is success.
    async fn delete_mirror_pod(&self, namespace: &str, name: &str, uid: Option<&str>) -> Result<(), kube::Error>;
}

/// [`MirrorClient`] over the API server.
#[derive(Clone)]
pub struct KubeMirrorClient {
    pub client: kube::Client,
    pub node: String,
}

#[async_trait]
impl MirrorClient for KubeMirrorClient {
    async fn create_mirror_pod(&self, static_pod: &Pod, node_uid: &str) -> Result<(), kube::Error> {
        let m = mirror_pod_for(static_pod, &self.node, node_uid);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), m.metadata.namespace.as_deref().unwrap_or("default"));
        match api.create(&PostParams::default(), &m).await {
            Ok(_) => Ok(()),
            // Someone (an earlier run of ours) already made it; the sync compares hashes.
            Err(kube::Error::Api(ae)) if ae.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn delete_mirror_pod(&self, namespace: &str, name: &str, uid: Option<&str>) -> Result<(), kube::Error> {
        crate::status::delete_now(&self.client, namespace, name, uid).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn mirror_has_hash_and_node_owner() {
        let mut p = Pod::default();
        p.metadata.name = Some("web-n1".into());
        p.metadata.namespace = Some("default".into());
        p.metadata.uid = Some("static-uid".into());
        p.metadata.annotations = Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_string(), "abc".to_string())]));
        let m = mirror_pod_for(&p, "n1", "node-uid");
        assert_eq!(m.metadata.uid, None);
        assert_eq!(m.metadata.annotations.as_ref().expect("ann")[MIRROR_ANNOTATION], "abc");
        let o = &m.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!((o.kind.as_str(), o.name.as_str(), o.uid.as_str()), ("Node", "n1", "node-uid"));
        assert!(is_mirror_pod_of(&m, &p));
        p.metadata.annotations = Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_string(), "def".to_string())]));
        assert!(!is_mirror_pod_of(&m, &p), "a changed static pod needs a new mirror");
    }
}
