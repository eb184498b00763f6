//! configMap, secret, downwardAPI and projected volumes over `FakeObjects` + `FakeMounter`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use api::objects::FakeObjects;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapProjection, Container, DownwardAPIProjection, DownwardAPIVolumeFile, KeyToPath,
    ObjectFieldSelector, PodSecurityContext, PodSpec, ResourceFieldSelector, ResourceRequirements, Secret,
    SecretProjection, ServiceAccountTokenProjection, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sys::FakeMounter;
use sys::MountCall;

use super::*;

const UID: &str = "uid-1";

struct Env {
    _tmp: tempfile::TempDir,
    dirs: PodDirs,
    mounter: Arc<FakeMounter>,
    objects: Arc<FakeObjects>,
    vm: VolumeManager,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = PodDirs::new(std::fs::canonicalize(tmp.path()).unwrap().join("kubelet"));
    let mounter = Arc::new(FakeMounter::new());
    let objects = Arc::new(FakeObjects::new());
    let vm = VolumeManager::new(dirs.clone(), mounter.clone()).with_objects(objects.clone());
    Env { _tmp: tmp, dirs, mounter, objects, vm }
}

fn pod(volumes: Vec<Volume>) -> Pod {
    let labels = BTreeMap::from([("tier".to_string(), "web".to_string()), ("app".to_string(), "shop".to_string())]);
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("prod".into()),
            uid: Some(UID.into()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([("note".to_string(), "say \"hi\"\n".to_string())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            volumes: Some(volumes),
            service_account_name: Some("builder".into()),
            containers: vec![Container {
                name: "app".into(),
                resources: Some(ResourceRequirements {
                    limits: Some(BTreeMap::from([("memory".to_string(), Quantity("256Mi".into()))])),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn with_fs_group(mut p: Pod, gid: i64) -> Pod {
    if let Some(s) = p.spec.as_mut() {
        s.security_context = Some(PodSecurityContext { fs_group: Some(gid), ..Default::default() });
    }
    p
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta { namespace: Some("prod".into()), name: Some(name.into()), ..Default::default() },
        data: Some(data.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()),
        ..Default::default()
    }
}

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta { namespace: Some("prod".into()), name: Some(name.into()), ..Default::default() },
        data: Some(data.iter().map(|(k, v)| ((*k).to_string(), ByteString(v.as_bytes().to_vec()))).collect()),
        ..Default::default()
    }
}

fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
    KeyToPath { key: key.into(), path: path.into(), mode, ..Default::default() }
}

fn cm_volume(name: &str, cm: &str, items: Option<Vec<KeyToPath>>, optional: Option<bool>) -> Volume {
    let source = ConfigMapVolumeSource { name: cm.into(), items, optional, ..Default::default() };
    Volume { name: name.into(), config_map: Some(source), ..Default::default() }
}

fn secret_volume(name: &str, secret: &str) -> Volume {
    let source = SecretVolumeSource { secret_name: Some(secret.into()), ..Default::default() };
    Volume { name: name.into(), secret: Some(source), ..Default::default() }
}

fn field_file(path: &str, field: &str) -> DownwardAPIVolumeFile {
    let field_ref = Some(ObjectFieldSelector { field_path: field.into(), api_version: None });
    DownwardAPIVolumeFile { path: path.into(), field_ref, ..Default::default() }
}

fn token_source(path: &str, audience: Option<&str>, expiration: i64) -> VolumeProjection {
    VolumeProjection {
        service_account_token: Some(ServiceAccountTokenProjection {
            path: path.into(),
            audience: audience.map(Into::into),
            expiration_seconds: Some(expiration),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn projected(name: &str, sources: Vec<VolumeProjection>) -> Volume {
    let source = ProjectedVolumeSource { sources: Some(sources), ..Default::default() };
    Volume { name: name.into(), projected: Some(source), ..Default::default() }
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The directory `..data` points at.
fn data_dir(dir: &Path) -> PathBuf {
    dir.join(std::fs::read_link(dir.join("..data")).unwrap())
}

fn ts_dirs(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            n.to_string_lossy().starts_with("..") && n != "..data"
        })
        .count()
}

#[tokio::test]
async fn config_map_volume_files_modes_and_items() {
    let e = env();
    let mut cm = config_map("app-config", &[("a.conf", "A"), ("b.conf", "B")]);
    cm.binary_data = Some(BTreeMap::from([("blob".to_string(), ByteString(vec![0, 1, 2]))]));
    e.objects.put_config_map(cm);
    let mut with_items = cm_volume("some", "app-config", Some(vec![item("a.conf", "conf/a", Some(0o600))]), None);
    if let Some(s) = with_items.config_map.as_mut() {
        s.default_mode = Some(0o640);
    }
    let p = pod(vec![cm_volume("cfg", "app-config", None, None), with_items]);
    e.vm.setup_pod_volumes(&p).await.unwrap();

    let dir = e.dirs.volume_dir(UID, CONFIG_MAP_PLUGIN, "cfg");
    assert!(dir.ends_with("pods/uid-1/volumes/kubernetes.io~configmap/cfg"), "{}", dir.display());
    assert_eq!(read(&dir, "a.conf"), "A");
    assert_eq!(read(&dir, "b.conf"), "B");
    assert_eq!(std::fs::read(dir.join("blob")).unwrap(), vec![0, 1, 2]);
    assert_eq!(mode_of(&data_dir(&dir).join("a.conf")), 0o644);
    assert_eq!(std::fs::read_link(dir.join("a.conf")).unwrap(), PathBuf::from("..data/a.conf"));

    let some = e.dirs.volume_dir(UID, CONFIG_MAP_PLUGIN, "some");
    assert_eq!(read(&some, "conf/a"), "A");
    assert_eq!(mode_of(&data_dir(&some).join("conf/a")), 0o600);
    assert!(!some.join("b.conf").exists());
    // configMaps live on disk: no tmpfs.
    assert!(e.mounter.calls().is_empty());
}

#[tokio::test]
async fn missing_config_map_fails_like_upstream_and_recovers() {
    let e = env();
    let p = pod(vec![cm_volume("cfg", "missing", None, None)]);
    let err = e.vm.setup_pod_volumes(&p).await.unwrap_err();
    assert_eq!(err.event_message(), "MountVolume.SetUp failed for volume \"cfg\" : configmap \"missing\" not found");
    assert!(err.to_string().starts_with("pod prod/web: volume \"cfg\": "), "{err}");
    assert!(!e.dirs.pod_dir(UID).exists(), "nothing is created before the objects are read");

    e.objects.put_config_map(config_map("missing", &[("k", "v")]));
    e.vm.setup_pod_volumes(&p).await.unwrap();
    assert_eq!(read(&e.dirs.volume_dir(UID, CONFIG_MAP_PLUGIN, "cfg"), "k"), "v");
}

#[tokio::test]
async fn optional_and_missing_keys() {
    let e = env();
    e.objects.put_config_map(config_map("cm", &[("k", "v")]));
    let p = pod(vec![
        cm_volume("absent", "nope", None, Some(true)),
        cm_volume("partial", "cm", Some(vec![item("k", "k", None), item("x", "x", None)]), Some(true)),
    ]);
    e.vm.setup_pod_volumes(&p).await.unwrap();
    let absent = e.dirs.volume_dir(UID, CONFIG_MAP_PLUGIN, "absent");
    assert!(absent.join("..data").exists() && std::fs::read_dir(&absent).unwrap().count() == 2);
    let partial = e.dirs.volume_dir(UID, CONFIG_MAP_PLUGIN, "partial");
    assert_eq!(read(&partial, "k"), "v");
    assert!(!partial.join("x").exists());

    let p = pod(vec![cm_volume("strict", "cm", Some(vec![item("x", "x", None)]), None)]);
    let err = e.vm.setup_pod_volumes(&p).await.unwrap_err();
    assert_eq!(
        err.event_message(),
        "MountVolume.SetUp failed for volume \"strict\" : configmap references non-existent config key: x"
    );
}

#[tokio::test]
async fn update_swaps_atomically_and_unchanged_is_not_rewritten() {
    let e = env();
    e.objects.put_config_map(config_map("cm", &[("a", "1"), ("b", "2")]));
    let p = pod(vec![cm_volume("cfg", "cm", None, None)]);
    e.vm.setup_pod_volumes(&p).await.unwrap();
    let dir = e.dirs.volume_dir(UID, CONFIG_MAP_PLUGIN, "cfg");
    let first = data_dir(&dir);
    let inode = std::fs::metadata(first.join("a")).unwrap().ino();

    e.vm.setup_pod_volumes(&p).await.unwrap();
    assert_eq!(data_dir(&dir), first, "unchanged payload: same version");
    assert_eq!(std::fs::metadata(first.join("a")).unwrap().ino(), inode, "not rewritten");

    e.objects.put_config_map(config_map("cm", &[("a", "one")]));
    e.vm.setup_pod_volumes(&p).await.unwrap();
    let second = data_dir(&dir);
    assert_ne!(second, first);
    assert!(!first.exists(), "old version removed");
    assert_eq!(ts_dirs(&dir), 1);
    assert_eq!(read(&dir, "a"), "one");
    assert!(std::fs::symlink_metadata(dir.join("b")).is_err(), "a removed key's link goes too");
}

#[tokio::test]
async fn secret_volume_on_tmpfs() {
    let e = env();
    e.objects.put_secret(secret("creds", &[("password", "hunter2")]));
    let p = pod(vec![secret_volume("creds", "creds")]);
    e.vm.setup_pod_volumes(&p).await.unwrap();
    e.vm.setup_pod_volumes(&p).await.unwrap();
    let dir = e.dirs.volume_dir(UID, SECRET_PLUGIN, "creds");
    assert!(dir.ends_with("volumes/kubernetes.io~secret/creds"));
    assert_eq!(read(&dir, "password"), "hunter2");
    assert_eq!(e.mounter.calls(), vec![MountCall::MountTmpfs { target: dir.clone(), size_bytes: None, mode: 0o1777 }]);

    let err = e.vm.setup_pod_volumes(&pod(vec![secret_volume("s", "gone")])).await.unwrap_err();
    assert_eq!(err.event_message(), "MountVolume.SetUp failed for volume \"s\" : secret \"gone\" not found");
    e.objects.set_failure(Some("connection refused"));
    let err = e.vm.setup_pod_volumes(&p).await.unwrap_err();
    assert_eq!(
        err.event_message(),
        "MountVolume.SetUp failed for volume \"creds\" : failed to get secret prod/creds: connection refused"
    );
    // Teardown unmounts the tmpfs.
    e.vm.teardown_pod_volumes(UID).await.unwrap();
    assert!(e.mounter.mounted().is_empty());
}

#[tokio::test]
async fn downward_api_volume_formats_like_upstream_and_needs_no_api_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = PodDirs::new(tmp.path().join("kubelet"));
    let mounter = Arc::new(FakeMounter::new());
    let vm = VolumeManager::new(dirs.clone(), mounter.clone());
    let mem = DownwardAPIVolumeFile {
        path: "mem".into(),
        resource_field_ref: Some(ResourceFieldSelector {
            container_name: Some("app".into()),
            resource: "limits.memory".into(),
            divisor: Some(Quantity("1Mi".into())),
        }),
        mode: Some(0o400),
        ..Default::default()
    };
    let items = vec![
        field_file("labels", "metadata.labels"),
        field_file("annotations", "metadata.annotations"),
        field_file("name", "metadata.name"),
        field_file("meta/ns", "metadata.namespace"),
        field_file("uid", "metadata.uid"),
        field_file("tier", "metadata.labels['tier']"),
        mem,
    ];
    let source = DownwardAPIVolumeSource { items: Some(items), ..Default::default() };
    let v = Volume { name: "info".into(), downward_api: Some(source), ..Default::default() };
    vm.setup_pod_volumes(&pod(vec![v])).await.unwrap();
    let dir = dirs.volume_dir(UID, DOWNWARD_API_PLUGIN, "info");
    assert!(dir.ends_with("volumes/kubernetes.io~downward-api/info"));
    assert_eq!(read(&dir, "labels"), "app=\"shop\"\ntier=\"web\"");
    assert_eq!(read(&dir, "annotations"), "note=\"say \\\"hi\\\"\\n\"");
    assert_eq!(read(&dir, "name"), "web");
    assert_eq!(read(&dir, "meta/ns"), "prod");
    assert_eq!(read(&dir, "uid"), UID);
    assert_eq!(read(&dir, "tier"), "web");
    assert_eq!(read(&dir, "mem"), "256");
    assert_eq!(mode_of(&data_dir(&dir).join("mem")), 0o400);
    assert_eq!(mode_of(&data_dir(&dir).join("name")), 0o644);
    assert!(matches!(mounter.calls().as_slice(), [MountCall::MountTmpfs { target, .. }] if *target == dir));

    let bad = vec![field_file("a", "spec.nodeName"), field_file("b", "status.podIP")];
    let source = DownwardAPIVolumeSource { items: Some(bad), ..Default::default() };
    let v = Volume { name: "bad".into(), downward_api: Some(source), ..Default::default() };
    let err = vm.setup_pod_volumes(&pod(vec![v])).await.unwrap_err();
    assert_eq!(
        err.event_message(),
        "MountVolume.SetUp failed for volume \"bad\" : [unsupported fieldPath: spec.nodeName, unsupported fieldPath: status.podIP]"
    );
}

#[tokio::test]
async fn standalone_refuses_api_kinds_naming_pod_and_volume() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = PodDirs::new(tmp.path().join("kubelet"));
    let vm = VolumeManager::new(dirs.clone(), Arc::new(FakeMounter::new()));
    for (v, kind) in [
        (cm_volume("cfg", "x", None, None), "configMap"),
        (secret_volume("creds", "x"), "secret"),
        (projected("all", vec![]), "projected"),
    ] {
        let name = v.name.clone();
        let err = vm.setup_pod_volumes(&pod(vec![v])).await.unwrap_err();
        assert!(matches!(&err, VolumeError::NeedsApiServer { volume, kind: k, .. } if *volume == name && *k == kind));
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("pod prod/web: volume {name:?}: {kind} volumes need the API server")),
            "{msg}"
        );
    }
    assert!(!dirs.pod_dir(UID).exists());
}

#[tokio::test(start_paused = true)]
async fn projected_sources_and_token_refresh() {
    let e = env();
    e.objects.put_config_map(config_map("cm", &[("ca.crt", "CA")]));
    e.objects.put_secret(secret("s", &[("key", "K")]));
    let sources = vec![
        VolumeProjection {
            config_map: Some(ConfigMapProjection { name: "cm".into(), ..Default::default() }),
            ..Default::default()
        },
        VolumeProjection {
            secret: Some(SecretProjection {
                name: "s".into(),
                items: Some(vec![item("key", "tls/key", None)]),
                ..Default::default()
            }),
            ..Default::default()
        },
        VolumeProjection {
            downward_api: Some(DownwardAPIProjection {
                items: Some(vec![field_file("namespace", "metadata.namespace")]),
            }),
            ..Default::default()
        },
        token_source("token", Some("vault"), 1000),
    ];
    let p = pod(vec![projected("kube-api", sources)]);
    let start = tokio::time::Instant::now();
    let setup = e.vm.setup_pod_volumes(&p).await.unwrap();
    let dir = e.dirs.volume_dir(UID, PROJECTED_PLUGIN, "kube-api");
    assert!(dir.ends_with("volumes/kubernetes.io~projected/kube-api"));
    assert_eq!(read(&dir, "ca.crt"), "CA");
    assert_eq!(read(&dir, "tls/key"), "K");
    assert_eq!(read(&dir, "namespace"), "prod");
    assert_eq!(read(&dir, "token"), "fake-token-1");
    assert_eq!(mode_of(&data_dir(&dir).join("token")), 0o644);
    assert!(matches!(e.mounter.calls().as_slice(), [MountCall::MountTmpfs { .. }]));

    let requests = e.objects.token_requests();
    let (ns, sa, spec) = &requests[0];
    assert_eq!((ns.as_str(), sa.as_str()), ("prod", "builder"));
    assert_eq!(spec.audiences, Some(vec!["vault".to_string()]));
    assert_eq!(spec.expiration_seconds, Some(1000));
    let bound = spec.bound_object_ref.as_ref().unwrap();
    assert_eq!(
        (bound.kind.as_deref(), bound.name.as_deref(), bound.uid.as_deref()),
        (Some("Pod"), Some("web"), Some(UID))
    );

    // The worker is told to come back at 80% of the token's lifetime.
    assert_eq!(setup.next_token_refresh, Some(start + Duration::from_secs(800)));
    assert_eq!(setup.requeue_after(), Some(Duration::from_secs(800)));
    let first = data_dir(&dir);

    tokio::time::advance(Duration::from_secs(799)).await;
    e.vm.setup_pod_volumes(&p).await.unwrap();
    assert_eq!(e.objects.token_requests().len(), 1, "still fresh: cached");
    assert_eq!(data_dir(&dir), first, "nothing changed: not rewritten");

    tokio::time::advance(Duration::from_secs(1)).await;
    let setup = e.vm.setup_pod_volumes(&p).await.unwrap();
    assert_eq!(e.objects.token_requests().len(), 2);
    assert_eq!(read(&dir, "token"), "fake-token-2");
    assert_ne!(data_dir(&dir), first);
    assert!(!first.exists());
    assert_eq!(setup.next_token_refresh, Some(start + Duration::from_secs(1600)));

    // A failed refresh keeps the valid token and does not spin.
    e.objects.set_failure(Some("connection refused"));
    tokio::time::advance(Duration::from_secs(850)).await;
    let setup = e.vm.setup_pod_volumes(&p).await.unwrap_err();
    // The configMap source fails first while the API is down; the token alone would survive.
    assert!(setup.event_message().contains("failed to get configmap prod/cm: connection refused"), "{setup}");
    let token_only = pod(vec![projected("tok", vec![token_source("token", Some("vault"), 1000)])]);
    let setup = e.vm.setup_pod_volumes(&token_only).await.unwrap();
    assert_eq!(read(&e.dirs.volume_dir(UID, PROJECTED_PLUGIN, "tok"), "token"), "fake-token-2");
    assert_eq!(setup.requeue_after(), Some(MIN_TOKEN_REQUEUE));
}

#[tokio::test]
async fn projected_errors_are_aggregated() {
    let e = env();
    let sources = vec![
        VolumeProjection {
            config_map: Some(ConfigMapProjection { name: "a".into(), ..Default::default() }),
            ..Default::default()
        },
        VolumeProjection {
            secret: Some(SecretProjection { name: "b".into(), ..Default::default() }),
            ..Default::default()
        },
        VolumeProjection { cluster_trust_bundle: Some(Default::default()), ..Default::default() },
    ];
    let err = e.vm.setup_pod_volumes(&pod(vec![projected("p", sources)])).await.unwrap_err();
    assert_eq!(
        err.event_message(),
        "MountVolume.SetUp failed for volume \"p\" : [configmap \"a\" not found, secret \"b\" not found, clusterTrustBundle projections are not supported yet]"
    );
}

#[tokio::test]
async fn fs_group_owns_the_volume_and_tokens_are_private() {
    let e = env();
    e.objects.put_config_map(config_map("cm", &[("k", "v")]));
    let gid = std::fs::metadata(e.dirs.root().parent().unwrap()).unwrap().gid();
    let p = with_fs_group(
        pod(vec![cm_volume("cfg", "cm", None, None), projected("tok", vec![token_source("token", None, 3600)])]),
        i64::from(gid),
    );
    e.vm.setup_pod_volumes(&p).await.unwrap();
    let cfg = e.dirs.volume_dir(UID, CONFIG_MAP_PLUGIN, "cfg");
    assert_eq!(mode_of(&cfg), 0o2777);
    assert_eq!(mode_of(&data_dir(&cfg)), 0o2755);
    assert_eq!(std::fs::metadata(data_dir(&cfg).join("k")).unwrap().gid(), gid);
    let tok = e.dirs.volume_dir(UID, PROJECTED_PLUGIN, "tok");
    // 0600 because of the fsGroup, then group-readable by it.
    assert_eq!(mode_of(&data_dir(&tok).join("token")), 0o640);
    let spec = &e.objects.token_requests()[0].2;
    assert_eq!(spec.audiences, None, "no audience: the API server's default");
    // A second sync does not flip the directory's mode back.
    e.vm.setup_pod_volumes(&p).await.unwrap();
    assert_eq!(mode_of(&cfg), 0o2777);
}

#[tokio::test]
async fn api_data_mounts_are_read_only() {
    let e = env();
    e.objects.put_config_map(config_map("cm", &[("k", "v")]));
    let p = pod(vec![cm_volume("cfg", "cm", None, None)]);
    e.vm.setup_pod_volumes(&p).await.unwrap();
    let c = Container {
        name: "app".into(),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "cfg".into(),
                mount_path: "/etc/app".into(),
                read_only: Some(false),
                ..Default::default()
            },
            VolumeMount {
                name: "cfg".into(),
                mount_path: "/etc/k".into(),
                sub_path: Some("k".into()),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };
    let mounts = e.vm.container_mounts(&p, &c, None).unwrap();
    let dir = e.dirs.volume_dir(UID, CONFIG_MAP_PLUGIN, "cfg");
    assert_eq!(mounts[0].host_path, dir.to_str().unwrap());
    assert!(mounts[0].readonly && mounts[1].readonly);
    // A subPath resolves through `..data` to the current version's file.
    assert_eq!(PathBuf::from(&mounts[1].host_path), data_dir(&dir).join("k"));
}

#[test]
fn fs_user_is_the_one_shared_run_as_user() {
    use k8s_openapi::api::core::v1::SecurityContext;
    let user = |u: Option<i64>| Some(SecurityContext { run_as_user: u, ..Default::default() });
    let mut p = pod(vec![]);
    assert_eq!(super::payload::fs_user(&p), None, "no user anywhere");
    if let Some(s) = p.spec.as_mut() {
        s.security_context = Some(PodSecurityContext { run_as_user: Some(1000), ..Default::default() });
        s.init_containers =
            Some(vec![Container { name: "init".into(), security_context: user(Some(1000)), ..Default::default() }]);
    }
    assert_eq!(super::payload::fs_user(&p), Some(1000));
    if let Some(s) = p.spec.as_mut() {
        s.containers[0].security_context = user(Some(2000));
    }
    assert_eq!(super::payload::fs_user(&p), None, "two users");
}
