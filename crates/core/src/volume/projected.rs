//! projected volumes (upstream `pkg/volume/projected`): configMap, secret, downwardAPI and
//! service account token sources merged into one directory, on a tmpfs.

use api::objects::ObjectGetter;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ProjectedVolumeSource};
use sys::atomic_writer::{FileProjection, Payload};
use tokio::time::Instant;

use super::SetupError;
use super::configmap::config_map_payload;
use super::downward_api::collect_data as downward_api_data;
use super::fieldpath::NodeAllocatable;
use super::payload::{default_mode, fs_group, fs_user};
use super::secret::secret_payload;

pub(super) const PROJECTED_PLUGIN: &str = "kubernetes.io/projected";

/// The merged payload of every source (a later source's file wins over an earlier one with
/// the same path), and the earliest time one of its tokens is due for a refresh. Every failing
/// source is reported (an aggregate), as upstream's `collectData`.
pub(super) async fn collect_data(
    objects: &dyn ObjectGetter,
    pod: &Pod,
    source: &ProjectedVolumeSource,
    allocatable: &NodeAllocatable,
) -> Result<(Payload, Option<Instant>), SetupError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mode = default_mode(source.default_mode);
    let mut payload = Payload::new();
    let mut refresh_at: Option<Instant> = None;
    let mut errors = Vec::new();
    for s in source.sources.iter().flatten() {
        let part = if let Some(cm) = &s.config_map {
            let optional = cm.optional.unwrap_or(false);
            config_map_payload(objects, namespace, &cm.name, cm.items.as_deref(), mode, optional).await
        } else if let Some(sec) = &s.secret {
            let optional = sec.optional.unwrap_or(false);
            secret_payload(objects, namespace, &sec.name, sec.items.as_deref(), mode, optional).await
        } else if let Some(d) = &s.downward_api {
            downward_api_data(d.items.as_deref().unwrap_or_default(), pod, mode, allocatable)
        } else if let Some(t) = &s.service_account_token {
            let user = fs_user(pod);
            // With an owner set, the token is private to it (fsGroup then adds group read).
            let token_mode = if user.is_some() || fs_group(pod).is_some() { 0o600 } else { mode };
            let spec = token_request(pod, t.audience.as_deref(), t.expiration_seconds);
            let service_account = pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.as_deref())
                .filter(|s| !s.is_empty())
                .unwrap_or("default");
            match objects.service_account_token(namespace, service_account, &spec).await {
                Ok(tok) => {
                    refresh_at = Some(refresh_at.map_or(tok.refresh_at, |r| r.min(tok.refresh_at)));
                    let file = FileProjection { data: tok.token.into_bytes(), mode: token_mode, fs_user: user };
                    Ok(Payload::from([(t.path.clone(), file)]))
                }
                Err(e) => Err(SetupError::Object(e)),
            }
        } else if s.cluster_trust_bundle.is_some() {
            Err(SetupError::UnsupportedProjection("clusterTrustBundle"))
        } else if s.pod_certificate.is_some() {
            Err(SetupError::UnsupportedProjection("podCertificate"))
        } else {
            Ok(Payload::new())
        };
        match part {
            Ok(p) => payload.extend(p),
            Err(e) => errors.push(e),
        }
    }
    SetupError::aggregate(errors)?;
    Ok((payload, refresh_at))
}

/// The TokenRequest of a projected token: its audience (the API server's default when unset),
/// expiration, and bound to the pod so it dies with it.
fn token_request(pod: &Pod, audience: Option<&str>, expiration_seconds: Option<i64>) -> TokenRequestSpec {
    TokenRequestSpec {
        audiences: audience.filter(|a| !a.is_empty()).map(|a| vec![a.to_string()]),
        expiration_seconds,
        bound_object_ref: Some(BoundObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
        }),
        ..Default::default()
    }
}
