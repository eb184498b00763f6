//! The runtime manager's `sync_pod` over configMap/secret volumes and env from API objects
//! (`FakeObjects`, `FakeRuntime`, `FakeMounter`): upstream's `FailedMount` event and
//! `CreateContainerConfigError`, recovery once the object exists, what reaches CRI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use api::objects::FakeObjects;
use cri::FakeRuntime;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapKeySelector, ConfigMapVolumeSource, Container, EnvVar, EnvVarSource, Pod, PodSpec, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::clock::FakeClock;
use crate::events::{EventType, MemoryRecorder};
use crate::pod_dirs::PodDirs;
use crate::runtime::dns::DnsSettings;
use crate::runtime::manager::{CREATE_CONTAINER_CONFIG_ERROR, RuntimeManager};
use crate::runtime::sandbox::RuntimeSettings;
use crate::volume::VolumeManager;

const UID: &str = "0123456789abcdef";

struct Harness {
    fake: Arc<FakeRuntime>,
    objects: Arc<FakeObjects>,
    events: MemoryRecorder,
    manager: RuntimeManager,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeRuntime::new());
    let clock = Arc::new(FakeClock::new(Duration::from_nanos(u64::try_from(fake.now_ns()).unwrap_or(0))));
    let events = MemoryRecorder::default();
    let objects = Arc::new(FakeObjects::new());
    let dirs = PodDirs::new(dir.path().join("root"));
    let volumes = VolumeManager::new(dirs.clone(), Arc::new(sys::FakeMounter::new())).with_objects(objects.clone());
    let settings = RuntimeSettings {
        legacy_logs_dir: None,
        node_name: "n1".into(),
        host_ips: vec!["192.0.2.10".into()],
        pod_logs_dir: dir.path().join("logs"),
        dns: DnsSettings::default(),
        resources: Default::default(),
    };
    let manager = RuntimeManager::new(
        fake.clone(),
        fake.clone(),
        Arc::new(volumes),
        dirs,
        settings,
        Arc::new(events.clone()),
        clock,
    );
    Harness { fake, objects, events, manager, _dir: dir }
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta { namespace: Some("default".into()), name: Some(name.into()), ..Default::default() },
        data: Some(data.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect::<BTreeMap<_, _>>()),
        ..Default::default()
    }
}

fn pod(volumes: Vec<Volume>, env: Vec<EnvVar>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some(UID.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Always".into()),
            volumes: Some(volumes),
            containers: vec![Container {
                name: "app".into(),
                image: Some("busybox:1.36".into()),
                image_pull_policy: Some("IfNotPresent".into()),
                env: Some(env),
                volume_mounts: Some(vec![VolumeMount {
                    name: "cfg".into(),
                    mount_path: "/etc/app".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn cfg_volume(config_map: &str) -> Volume {
    let source = ConfigMapVolumeSource { name: config_map.into(), ..Default::default() };
    Volume { name: "cfg".into(), config_map: Some(source), ..Default::default() }
}

fn cm_env(name: &str, cm: &str, key: &str) -> EnvVar {
    let r = ConfigMapKeySelector { name: cm.into(), key: key.into(), optional: None };
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource { config_map_key_ref: Some(r), ..Default::default() }),
    }
}

#[tokio::test]
async fn missing_config_map_volume_is_a_failed_mount_until_it_appears() {
    let h = harness();
    let p = pod(vec![cfg_volume("app-config")], vec![]);
    let rt = h.manager.get_pod_status(UID).await.unwrap();
    h.fake.clear_calls();
    let r = h.manager.sync_pod(&p, &rt).await;
    assert!(r.error.as_deref().is_some_and(|e| e.contains("configmap \"app-config\" not found")), "{r:?}");
    assert!(r.requeue_after.is_some());
    let failed: Vec<_> = h.events.events().into_iter().filter(|e| e.reason == "FailedMount").collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].kind, EventType::Warning);
    assert_eq!(failed[0].message, "MountVolume.SetUp failed for volume \"cfg\" : configmap \"app-config\" not found");
    // No sandbox: the pod stays Pending / ContainerCreating.
    assert!(!h.fake.calls().iter().any(|c| c.starts_with("RunPodSandbox")), "{:?}", h.fake.calls());

    h.objects.put_config_map(config_map("app-config", &[("k", "v")]));
    let r = h.manager.sync_pod(&p, &rt).await;
    assert!(r.error.is_none() && r.reasons.is_empty(), "{r:?}");
    let rt = h.manager.get_pod_status(UID).await.unwrap();
    let config = h.fake.container_config(&rt.containers[0].id).unwrap();
    let m = config.mounts.iter().find(|m| m.container_path == "/etc/app").unwrap();
    assert!(m.readonly && m.host_path.ends_with("volumes/kubernetes.io~configmap/cfg"), "{m:?}");
}

#[tokio::test]
async fn missing_env_key_is_create_container_config_error_then_recovers() {
    let h = harness();
    h.objects.put_config_map(config_map("vol", &[]));
    h.objects.put_config_map(config_map("settings", &[("other", "x")]));
    let p = pod(vec![cfg_volume("vol")], vec![cm_env("LEVEL", "settings", "level")]);
    let rt = h.manager.get_pod_status(UID).await.unwrap();
    let r = h.manager.sync_pod(&p, &rt).await;
    let w = r.reasons.get("app").expect("waiting reason");
    assert_eq!(w.reason, CREATE_CONTAINER_CONFIG_ERROR);
    assert_eq!(w.message, "couldn't find key level in ConfigMap default/settings");
    assert!(
        h.events.events().iter().any(
            |e| e.reason == "Failed" && e.message == "Error: couldn't find key level in ConfigMap default/settings"
        )
    );
    assert!(h.manager.get_pod_status(UID).await.unwrap().containers.is_empty());

    h.objects.put_config_map(config_map("settings", &[("level", "debug")]));
    let rt = h.manager.get_pod_status(UID).await.unwrap();
    let r = h.manager.sync_pod(&p, &rt).await;
    assert!(r.reasons.is_empty(), "{r:?}");
    let rt = h.manager.get_pod_status(UID).await.unwrap();
    let config = h.fake.container_config(&rt.containers[0].id).unwrap();
    assert!(config.envs.iter().any(|e| e.key == "LEVEL" && e.value == "debug"), "{:?}", config.envs);
}
