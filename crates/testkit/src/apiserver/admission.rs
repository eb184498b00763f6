//! What the default admission plugins and namespace controllers add to objects: the
//! ServiceAccount plugin's `kube-api-access-*` volume, Priority, DefaultTolerationSeconds, and
//! the `default` service account and `kube-root-ca.crt` config map of every namespace.

use k8s_openapi::api::core::v1::{
    ConfigMapProjection, DownwardAPIProjection, DownwardAPIVolumeFile, KeyToPath, ObjectFieldSelector, Pod,
    ProjectedVolumeSource, ServiceAccountTokenProjection, Toleration, Volume, VolumeMount, VolumeProjection,
};
use serde_json::{Value, json};

use super::errors::{ApiError, ApiResult};
use super::object::random_suffix;

pub(crate) const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
const SA_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
pub(crate) const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";

fn forbidden(pod_name: &str, why: &str) -> ApiError {
    ApiError::forbidden(format!("pods \"{pod_name}\" is forbidden: {why}"))
}

/// The ServiceAccount admission plugin. `service_account` is the pod's service account object
/// if it exists (`None`: missing). Mirror pods may not reference API objects at all.
pub(crate) fn service_account(pod: &mut Pod, service_account: Option<&Value>) -> ApiResult<()> {
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let is_mirror = pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(MIRROR_ANNOTATION));
    let Some(spec) = pod.spec.as_mut() else {
        return Ok(());
    };
    if is_mirror {
        if spec.service_account_name.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(forbidden(&pod_name, "a mirror pod may not reference service accounts"));
        }
        for v in spec.volumes.iter().flatten() {
            if v.secret.is_some() {
                return Err(forbidden(
                    &pod_name,
                    &format!("volume {} is of type secret, a mirror pod may not reference secrets", v.name),
                ));
            }
            if v.config_map.is_some() {
                return Err(forbidden(
                    &pod_name,
                    &format!("volume {} is of type configMap, a mirror pod may not reference configmaps", v.name),
                ));
            }
        }
        return Ok(());
    }
    let sa_name = spec.service_account_name.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "default".to_owned());
    spec.service_account_name = Some(sa_name.clone());
    spec.service_account = Some(sa_name.clone());
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let Some(sa) = service_account else {
        return Err(forbidden(
            &pod_name,
            &format!("error looking up service account {ns}/{sa_name}: serviceaccount \"{sa_name}\" not found"),
        ));
    };
    let Some(spec) = pod.spec.as_mut() else {
        return Ok(());
    };
    let automount = spec
        .automount_service_account_token
        .or_else(|| sa.get("automountServiceAccountToken").and_then(Value::as_bool))
        .unwrap_or(true);
    if !automount {
        return Ok(());
    }
    let volume_name = format!("kube-api-access-{}", random_suffix(5));
    let mut mounted = false;
    for c in spec.init_containers.iter_mut().flatten().chain(spec.containers.iter_mut()) {
        let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
        if mounts.iter().any(|m| m.mount_path == SA_MOUNT_PATH) {
            continue;
        }
        mounts.push(VolumeMount {
            name: volume_name.clone(),
            mount_path: SA_MOUNT_PATH.to_owned(),
            read_only: Some(true),
            ..Default::default()
        });
        mounted = true;
    }
    if mounted {
        spec.volumes.get_or_insert_with(Vec::new).push(api_access_volume(volume_name));
    }
    Ok(())
}

fn api_access_volume(name: String) -> Volume {
    let token = VolumeProjection {
        service_account_token: Some(ServiceAccountTokenProjection {
            expiration_seconds: Some(3607),
            path: "token".to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ca = VolumeProjection {
        config_map: Some(ConfigMapProjection {
            name: ROOT_CA_CONFIGMAP.to_owned(),
            items: Some(vec![KeyToPath { key: "ca.crt".to_owned(), path: "ca.crt".to_owned(), ..Default::default() }]),
            optional: None,
        }),
        ..Default::default()
    };
    let namespace = VolumeProjection {
        downward_api: Some(DownwardAPIProjection {
            items: Some(vec![DownwardAPIVolumeFile {
                path: "namespace".to_owned(),
                field_ref: Some(ObjectFieldSelector {
                    api_version: Some("v1".to_owned()),
                    field_path: "metadata.namespace".to_owned(),
                }),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    };
    Volume {
        name,
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o644),
            sources: Some(vec![token, ca, namespace]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Priority plugin: the two system classes, else priority 0.
pub(crate) fn priority(pod: &mut Pod) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let value = match spec.priority_class_name.as_deref() {
        Some("system-node-critical") => 2_000_001_000,
        Some("system-cluster-critical") => 2_000_000_000,
        _ => 0,
    };
    spec.priority.get_or_insert(value);
    spec.preemption_policy.get_or_insert_with(|| "PreemptLowerPriority".to_owned());
}

/// DefaultTolerationSeconds: tolerate not-ready and unreachable nodes for 300 s unless the pod
/// already tolerates them.
pub(crate) fn default_toleration_seconds(pod: &mut Pod) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        let covered = tolerations.iter().any(|t| {
            let effect_ok = t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "NoExecute");
            let key_ok = t.key.as_deref() == Some(key)
                || (t.key.as_deref().is_none_or(str::is_empty) && t.operator.as_deref() == Some("Exists"));
            effect_ok && key_ok
        });
        if !covered {
            tolerations.push(Toleration {
                key: Some(key.to_owned()),
                operator: Some("Exists".to_owned()),
                effect: Some("NoExecute".to_owned()),
                toleration_seconds: Some(300),
                value: None,
            });
        }
    }
}

/// What the serviceaccount and root-ca-cert-publisher controllers create in a new namespace.
pub(crate) fn namespace_objects(ns: &str, ca_pem: &str) -> Vec<(&'static str, Value)> {
    vec![
        (
            "serviceaccounts",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}}),
        ),
        (
            "configmaps",
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": ns,
                             "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                "data": {"ca.crt": ca_pem},
            }),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn pod() -> Pod {
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container { name: "c".into(), ..Default::default() }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn service_account_volume_is_injected() {
        let mut p = pod();
        service_account(&mut p, Some(&json!({}))).unwrap();
        let spec = p.spec.unwrap();
        assert_eq!(spec.service_account_name.as_deref(), Some("default"));
        let vol = &spec.volumes.unwrap()[0];
        assert!(vol.name.starts_with("kube-api-access-"));
        assert_eq!(spec.containers[0].volume_mounts.as_ref().unwrap()[0].mount_path, SA_MOUNT_PATH);
    }

    #[test]
    fn missing_service_account_and_mirror_rules() {
        let err = service_account(&mut pod(), None).unwrap_err();
        assert_eq!(err.code, 403);
        assert!(err.message.contains("serviceaccount \"default\" not found"), "{}", err.message);
        let mut mirror = pod();
        mirror.metadata.annotations = Some([(MIRROR_ANNOTATION.to_owned(), "x".to_owned())].into());
        service_account(&mut mirror, None).unwrap();
        assert!(mirror.spec.as_ref().unwrap().volumes.is_none());
        mirror.spec.as_mut().unwrap().service_account_name = Some("sa".into());
        assert!(service_account(&mut mirror, None).is_err());
    }

    #[test]
    fn priority_and_tolerations() {
        let mut p = pod();
        priority(&mut p);
        default_toleration_seconds(&mut p);
        default_toleration_seconds(&mut p);
        let spec = p.spec.unwrap();
        assert_eq!(spec.priority, Some(0));
        assert_eq!(spec.tolerations.unwrap().len(), 2);
    }
}
