//! The CRI labels and annotations upstream's kuberuntime writes on sandboxes and containers, and
//! reading them back: they are the only record of which pod and attempt a runtime object belongs
//! to, so a restarted kubelet recovers everything from them.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod};

pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
pub const CONTAINER_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
pub const PRE_STOP_HANDLER: &str = "io.kubernetes.container.preStopHandler";
pub const CONTAINER_PORTS: &str = "io.kubernetes.container.ports";
pub const POD_DELETION_GRACE_PERIOD: &str = "io.kubernetes.pod.deletionGracePeriod";
pub const POD_TERMINATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
/// `init`, `container` or `ephemeral`: which list of the pod spec the container comes from.
pub const CONTAINER_TYPE: &str = "io.kubernetes.container.type";

fn name_of(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}
fn namespace_of(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}
/// The pod's UID, empty when missing (validation rejects such pods before they get here).
pub fn uid_of(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

/// `newPodLabels`: the pod's own labels plus the three identity labels.
pub fn sandbox_labels(pod: &Pod) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = pod.metadata.labels.clone().unwrap_or_default().into_iter().collect();
    labels.insert(POD_NAME.into(), name_of(pod).into());
    labels.insert(POD_NAMESPACE.into(), namespace_of(pod).into());
    labels.insert(POD_UID.into(), uid_of(pod).into());
    labels
}

/// `newPodAnnotations`: the pod's annotations as they are.
pub fn sandbox_annotations(pod: &Pod) -> HashMap<String, String> {
    pod.metadata.annotations.clone().unwrap_or_default().into_iter().collect()
}

/// `newContainerLabels`.
pub fn container_labels(pod: &Pod, container: &Container) -> HashMap<String, String> {
    HashMap::from([
        (POD_NAME.into(), name_of(pod).into()),
        (POD_NAMESPACE.into(), namespace_of(pod).into()),
        (POD_UID.into(), uid_of(pod).into()),
        (CONTAINER_NAME.into(), container.name.clone()),
    ])
}

/// `newContainerAnnotations`.
pub fn container_annotations(pod: &Pod, container: &Container, restart_count: i32) -> HashMap<String, String> {
    let mut a = HashMap::from([
        (CONTAINER_HASH.into(), hash_container(container)),
        (CONTAINER_RESTART_COUNT.into(), restart_count.to_string()),
        (TERMINATION_MESSAGE_PATH.into(), container.termination_message_path.clone().unwrap_or_default()),
        (TERMINATION_MESSAGE_POLICY.into(), container.termination_message_policy.clone().unwrap_or_default()),
    ]);
    if let Some(g) = pod.metadata.deletion_grace_period_seconds {
        a.insert(POD_DELETION_GRACE_PERIOD.into(), g.to_string());
    }
    if let Some(g) = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds) {
        a.insert(POD_TERMINATION_GRACE_PERIOD.into(), g.to_string());
    }
    if let Some(pre_stop) = container.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
        && let Ok(json) = serde_json::to_string(pre_stop)
    {
        a.insert(PRE_STOP_HANDLER.into(), json);
    }
    if let Some(ports) = container.ports.as_ref().filter(|p| !p.is_empty())
        && let Ok(json) = serde_json::to_string(ports)
    {
        a.insert(CONTAINER_PORTS.into(), json);
    }
    let spec = pod.spec.as_ref();
    let in_list = |list: Option<&Vec<Container>>| list.is_some_and(|l| l.iter().any(|c| c.name == container.name));
    if in_list(spec.and_then(|s| s.init_containers.as_ref())) {
        a.insert(CONTAINER_TYPE.into(), "init".into());
    } else if in_list(spec.map(|s| &s.containers)) {
        a.insert(CONTAINER_TYPE.into(), "container".into());
    }
    a
}

/// Upstream `HashContainer`: FNV-32a over the container's JSON, in hex. A changed hash means the
/// spec changed and the container must be restarted.
pub fn hash_container(container: &Container) -> String {
    let json = serde_json::to_vec(container).unwrap_or_default();
    format!("{:x}", fnv32a(&json))
}

fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The restart count recorded on a container, 0 when missing or malformed.
pub fn restart_count(annotations: &HashMap<String, String>) -> i32 {
    annotations.get(CONTAINER_RESTART_COUNT).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Upstream's `restoreSpecsFromContainerLabels`: the pod and container spec a runtime container
/// was made from, as far as its labels and annotations record them — identity, grace periods,
/// the preStop hook, ports and termination-message settings. Used to kill an orphan the kubelet
/// no longer has the spec of; a malformed annotation is left out.
pub fn restore_specs(status: &cri::api::ContainerStatus) -> Pod {
    let label = |k: &str| status.labels.get(k).cloned();
    let note = |k: &str| status.annotations.get(k);
    let number = |k: &str| note(k).and_then(|v| v.parse::<i64>().ok());
    fn json<T: serde::de::DeserializeOwned>(v: Option<&String>) -> Option<T> {
        v.and_then(|v| serde_json::from_str(v).ok())
    }
    let container = Container {
        name: label(CONTAINER_NAME).unwrap_or_default(),
        ports: json(note(CONTAINER_PORTS)),
        termination_message_path: note(TERMINATION_MESSAGE_PATH).cloned(),
        termination_message_policy: note(TERMINATION_MESSAGE_POLICY).cloned(),
        lifecycle: json(note(PRE_STOP_HANDLER))
            .map(|pre_stop| k8s_openapi::api::core::v1::Lifecycle { pre_stop: Some(pre_stop), ..Default::default() }),
        ..Default::default()
    };
    Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: label(POD_NAME),
            namespace: label(POD_NAMESPACE),
            uid: label(POD_UID),
            deletion_grace_period_seconds: number(POD_DELETION_GRACE_PERIOD),
            ..Default::default()
        },
        spec: Some(k8s_openapi::api::core::v1::PodSpec {
            termination_grace_period_seconds: number(POD_TERMINATION_GRACE_PERIOD),
            containers: vec![container],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn specs_restore_from_what_the_labels_and_annotations_recorded() {
        let mut p = pod();
        p.metadata.deletion_grace_period_seconds = Some(7);
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "app",
            "ports": [{"containerPort": 8080, "name": "http"}],
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "sleep 1"]}}, "postStart": {"sleep": {"seconds": 1}}}
        }))
        .expect("container");
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            termination_grace_period_seconds: Some(45),
            containers: vec![c.clone()],
            ..Default::default()
        });
        let status = cri::api::ContainerStatus {
            labels: container_labels(&p, &c),
            annotations: container_annotations(&p, &c, 3),
            ..Default::default()
        };
        let r = restore_specs(&status);
        assert_eq!((name_of(&r), namespace_of(&r), uid_of(&r)), ("web-node1", "default", "u1"));
        assert_eq!(r.metadata.deletion_grace_period_seconds, Some(7));
        let spec = r.spec.expect("spec");
        assert_eq!(spec.termination_grace_period_seconds, Some(45));
        let rc = &spec.containers[0];
        assert_eq!((rc.name.as_str(), rc.ports.clone()), ("app", c.ports.clone()));
        assert_eq!(rc.termination_message_policy.as_deref(), Some("File"));
        let lifecycle = rc.lifecycle.clone().expect("lifecycle");
        assert_eq!(lifecycle.pre_stop, c.lifecycle.and_then(|l| l.pre_stop), "preStop only");
        assert!(lifecycle.post_start.is_none());

        let mut broken = status.clone();
        broken.annotations.insert(PRE_STOP_HANDLER.into(), "{not json".into());
        broken.annotations.insert(POD_TERMINATION_GRACE_PERIOD.into(), "soon".into());
        let r = restore_specs(&broken);
        assert!(
            r.spec
                .as_ref()
                .is_some_and(|s| s.termination_grace_period_seconds.is_none() && s.containers[0].lifecycle.is_none())
        );
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-node1".into()),
                namespace: Some("default".into()),
                uid: Some("u1".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn sandbox_labels_carry_identity_and_pod_labels() {
        let l = sandbox_labels(&pod());
        assert_eq!(l[POD_NAME], "web-node1");
        assert_eq!(l[POD_NAMESPACE], "default");
        assert_eq!(l[POD_UID], "u1");
        assert_eq!(l["app"], "web");
    }

    #[test]
    fn hash_changes_with_spec() {
        let a = Container { name: "a".into(), image: Some("x:1".into()), ..Default::default() };
        let mut b = a.clone();
        assert_eq!(hash_container(&a), hash_container(&b));
        b.image = Some("x:2".into());
        assert_ne!(hash_container(&a), hash_container(&b));
    }

    #[test]
    fn fnv32a_known_vector() {
        // FNV-1a 32-bit of "a" is 0xe40c292c.
        assert_eq!(fnv32a(b"a"), 0xe40c_292c);
        assert_eq!(fnv32a(b""), 0x811c_9dc5);
    }

    #[test]
    fn restart_count_reads_annotation() {
        let c = Container { name: "a".into(), ..Default::default() };
        let a = container_annotations(&pod(), &c, 3);
        assert_eq!(restart_count(&a), 3);
        assert_eq!(restart_count(&HashMap::new()), 0);
    }

    #[test]
    fn container_type_names_the_spec_list() {
        let mut p = pod();
        let init = Container { name: "setup".into(), ..Default::default() };
        let app = Container { name: "app".into(), ..Default::default() };
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            init_containers: Some(vec![init.clone()]),
            containers: vec![app.clone()],
            ..Default::default()
        });
        assert_eq!(container_annotations(&p, &init, 0)[CONTAINER_TYPE], "init");
        assert_eq!(container_annotations(&p, &app, 0)[CONTAINER_TYPE], "container");
    }
}
