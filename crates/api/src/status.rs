//! Pod status writes and final pod deletion (upstream `status_manager.go` `syncPod`): the status
//! goes out as a two-way strategic merge patch of the `status` subresource against the API's
//! current status, carrying `metadata.uid` so a recreated pod of the same name is never written;
//! a terminated pod marked for deletion is deleted with grace 0 and a UID precondition.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};

/// The writes of the status manager. Called from its sync task only.
#[async_trait]
pub trait PodStatusWriter: Send + Sync + 'static {
    /// Patches the pod's status from `old` (the API's) to `new`; `Ok(false)` when equal.
    async fn patch_status(&self, pod: &Pod, old: &PodStatus, new: &PodStatus) -> Result<bool, kube::Error>;
    /// Deletes the pod object for good (grace 0, UID precondition); a missing pod is success.
    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), kube::Error>;
}

/// The patch body, or `None` when the statuses are equal.
pub fn status_patch(uid: &str, old: &PodStatus, new: &PodStatus) -> Option<serde_json::Value> {
    let old = serde_json::to_value(old).unwrap_or_default();
    let new = serde_json::to_value(new).unwrap_or_default();
    let diff = crate::patch::two_way(&old, &new);
    if diff.as_object().is_some_and(|m| m.is_empty()) {
        return None;
    }
    Some(serde_json::json!({ "metadata": { "uid": uid }, "status": diff }))
}

/// [`PodStatusWriter`] over the API server.
#[derive(Clone)]
pub struct KubePodWriter {
    pub client: kube::Client,
}

#[async_trait]
impl PodStatusWriter for KubePodWriter {
    async fn patch_status(&self, pod: &Pod, old: &PodStatus, new: &PodStatus) -> Result<bool, kube::Error> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let Some(patch) = status_patch(uid, old, new) else { return Ok(false) };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch)).await?;
        Ok(true)
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), kube::Error> {
        delete_now(&self.client, namespace, name, Some(uid)).await
    }
}

/// Deletes a pod with grace 0, only the object with `uid` when given; a missing pod is success.
/// Used for terminated pods and for mirror pods.
pub async fn delete_now(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: uid.map(|u| Preconditions { uid: Some(u.to_string()), resource_version: None }),
        ..DeleteParams::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(ae)) if ae.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodCondition;

    #[test]
    fn patch_carries_the_uid_and_only_changes() {
        let cond = |t: &str, s: &str| PodCondition { type_: t.into(), status: s.into(), ..Default::default() };
        let old = PodStatus {
            phase: Some("Pending".into()),
            conditions: Some(vec![cond("Ready", "False")]),
            ..Default::default()
        };
        let new = PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![cond("Ready", "True")]),
            ..Default::default()
        };
        let p = status_patch("u1", &old, &new).expect("a patch");
        assert_eq!(p["metadata"]["uid"], "u1");
        assert_eq!(p["status"]["phase"], "Running");
        assert_eq!(p["status"]["$setElementOrder/conditions"], serde_json::json!([{"type": "Ready"}]));
        assert_eq!(status_patch("u1", &new, &new), None);
    }
}
