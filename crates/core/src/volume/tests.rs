#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sys::{FakeMounter, MountCall};

use super::*;
use crate::volume::mounts::expand_sub_path_expr;
use cri::api::MountPropagation;
use k8s_openapi::api::core::v1::{Container, NFSVolumeSource, VolumeMount};
use std::path::{Path, PathBuf};

const UID: &str = "uid-1";

struct Env {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    dirs: PodDirs,
    fake: Arc<FakeMounter>,
    vm: VolumeManager,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    // Canonical, so paths compare equal to what safe_join returns.
    let base = std::fs::canonicalize(tmp.path()).unwrap();
    let dirs = PodDirs::new(base.join("kubelet"));
    let fake = Arc::new(FakeMounter::new());
    let vm = VolumeManager::new(dirs.clone(), fake.clone());
    Env { _tmp: tmp, base, dirs, fake, vm }
}

fn pod(volumes: Vec<Volume>, containers: Vec<Container>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("prod".into()),
            uid: Some(UID.into()),
            ..Default::default()
        },
        spec: Some(PodSpec { volumes: Some(volumes), containers, ..Default::default() }),
        ..Default::default()
    }
}

fn empty_dir(name: &str, medium: Option<&str>, size: Option<&str>) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: medium.map(Into::into),
            size_limit: size.map(|s| Quantity(s.into())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn host_path(name: &str, path: &Path, kind: Option<&str>) -> Volume {
    Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource { path: path.to_str().unwrap().into(), type_: kind.map(Into::into) }),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount { name: name.into(), mount_path: path.into(), ..Default::default() }
}

fn container(mounts: Vec<VolumeMount>) -> Container {
    Container { name: "app".into(), volume_mounts: Some(mounts), ..Default::default() }
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

async fn setup_err(e: &Env, v: Volume) -> String {
    e.vm.setup_pod_volumes(&pod(vec![v], vec![])).await.unwrap_err().to_string()
}

#[tokio::test]
async fn empty_dir_default_medium() {
    let e = env();
    let p = pod(vec![empty_dir("cache", None, None)], vec![]);
    e.vm.setup_pod_volumes(&p).await.unwrap();
    let dir = e.dirs.volume_dir(UID, EMPTY_DIR_PLUGIN, "cache");
    assert!(dir.ends_with("pods/uid-1/volumes/kubernetes.io~empty-dir/cache"));
    assert_eq!(mode_of(&dir), 0o777);
    assert_eq!(mode_of(&e.dirs.pod_dir(UID)), 0o750);
    std::fs::write(dir.join("data"), b"x").unwrap();
    // Idempotent, keeps contents.
    e.vm.setup_pod_volumes(&p).await.unwrap();
    assert!(dir.join("data").exists());
    assert!(e.fake.calls().is_empty());
}

#[tokio::test]
async fn volume_without_source_is_an_empty_dir() {
    let e = env();
    let v = Volume { name: "plain".into(), ..Default::default() };
    e.vm.setup_pod_volumes(&pod(vec![v], vec![])).await.unwrap();
    assert!(e.dirs.volume_dir(UID, EMPTY_DIR_PLUGIN, "plain").is_dir());
}

#[tokio::test]
async fn memory_empty_dir_mounts_tmpfs_once() {
    let e = env();
    let p =
        pod(vec![empty_dir("shm", Some("Memory"), Some("64Mi")), empty_dir("unsized", Some("Memory"), None)], vec![]);
    e.vm.setup_pod_volumes(&p).await.unwrap();
    e.vm.setup_pod_volumes(&p).await.unwrap();
    let shm = e.dirs.volume_dir(UID, EMPTY_DIR_PLUGIN, "shm");
    let unsized_dir = e.dirs.volume_dir(UID, EMPTY_DIR_PLUGIN, "unsized");
    assert_eq!(
        e.fake.calls(),
        vec![
            MountCall::MountTmpfs { target: shm.clone(), size_bytes: Some(64 << 20), mode: 0o1777 },
            MountCall::MountTmpfs { target: unsized_dir.clone(), size_bytes: None, mode: 0o1777 },
        ]
    );
    assert_eq!(e.fake.mounted(), vec![shm, unsized_dir]);
}

#[tokio::test]
async fn empty_dir_errors() {
    let e = env();
    let err = setup_err(&e, empty_dir("x", Some("Memory"), Some("lots"))).await;
    assert!(err.contains("pod prod/web: volume \"x\": invalid sizeLimit") && err.contains("lots"), "{err}");
    let err = setup_err(&e, empty_dir("x", Some("Floppy"), None)).await;
    assert!(err.contains("unknown storage medium \"Floppy\""), "{err}");
    let err = setup_err(&e, empty_dir("x", Some("HugePages-2Mi"), None)).await;
    assert!(err.contains("not supported yet"), "{err}");
    let err = setup_err(&e, empty_dir("../escape", None, None)).await;
    assert!(err.contains("invalid volume name"), "{err}");
    assert!(e.fake.calls().is_empty());
}

#[tokio::test]
async fn unsupported_volume_fails_before_anything_is_created() {
    let e = env();
    let nfs = Volume { name: "share".into(), nfs: Some(NFSVolumeSource::default()), ..Default::default() };
    let err = e.vm.setup_pod_volumes(&pod(vec![empty_dir("a", None, None), nfs], vec![])).await.unwrap_err();
    assert!(matches!(&err, VolumeError::Unsupported { volume, kind: "nfs", .. } if volume == "share"));
    assert_eq!(err.to_string(), "pod prod/web: volume \"share\": nfs volumes are not supported yet");
    assert_eq!(err.event_message(), err.to_string());
    assert!(!e.dirs.pod_dir(UID).exists());
}

#[tokio::test]
async fn host_path_directory_types() {
    let e = env();
    let created = e.base.join("made/deep");
    e.vm.setup_pod_volumes(&pod(vec![host_path("h", &created, Some("DirectoryOrCreate"))], vec![])).await.unwrap();
    assert!(created.is_dir());
    // Exists now: DirectoryOrCreate and Directory pass.
    for t in ["DirectoryOrCreate", "Directory", ""] {
        e.vm.setup_pod_volumes(&pod(vec![host_path("h", &created, Some(t))], vec![])).await.unwrap();
    }
    let missing = e.base.join("missing");
    let err = setup_err(&e, host_path("h", &missing, Some("Directory"))).await;
    assert!(err.ends_with(&format!("hostPath {} doesn't exist", missing.display())), "{err}");
    // No type: no check at all.
    e.vm.setup_pod_volumes(&pod(vec![host_path("h", &missing, None)], vec![])).await.unwrap();

    let file = e.base.join("file");
    std::fs::write(&file, b"").unwrap();
    let err = setup_err(&e, host_path("h", &file, Some("Directory"))).await;
    assert!(
        err.ends_with(&format!("hostPath type check failed: {} is not a directory, it's a File", file.display())),
        "{err}"
    );
    let err = setup_err(&e, host_path("h", &file, Some("DirectoryOrCreate"))).await;
    assert!(err.contains("is not a directory"), "{err}");
}

#[tokio::test]
async fn host_path_file_types() {
    let e = env();
    let f = e.base.join("new-file");
    e.vm.setup_pod_volumes(&pod(vec![host_path("h", &f, Some("FileOrCreate"))], vec![])).await.unwrap();
    assert!(f.is_file());
    assert_eq!(std::fs::metadata(&f).unwrap().len(), 0);
    e.vm.setup_pod_volumes(&pod(vec![host_path("h", &f, Some("File"))], vec![])).await.unwrap();

    // FileOrCreate does not create parents.
    let orphan = e.base.join("no-parent/file");
    let err = setup_err(&e, host_path("h", &orphan, Some("FileOrCreate"))).await;
    assert!(err.contains("no-parent/file"), "{err}");

    let err = setup_err(&e, host_path("h", &e.base, Some("File"))).await;
    assert!(err.contains("is not a file, it's a Directory"), "{err}");
    let err = setup_err(&e, host_path("h", &f, Some("Socket"))).await;
    assert!(err.contains("is not a socket file, it's a File"), "{err}");
    let err = setup_err(&e, host_path("h", &f, Some("BlockDevice"))).await;
    assert!(err.contains("is not a block device"), "{err}");
    e.vm.setup_pod_volumes(&pod(vec![host_path("h", Path::new("/dev/null"), Some("CharDevice"))], vec![]))
        .await
        .unwrap();
    let err = setup_err(&e, host_path("h", &f, Some("Weird"))).await;
    assert!(err.ends_with("Weird is an invalid volume type"), "{err}");
    let err = setup_err(&e, host_path("h", Path::new("/tmp/../etc"), None)).await;
    assert!(err.contains("invalid HostPath `/tmp/../etc`: must not contain '..'"), "{err}");
}

#[tokio::test]
async fn container_mounts_basic() {
    let e = env();
    let hp = e.base.join("host-data");
    std::fs::create_dir(&hp).unwrap();
    let mut ro = mount("data", "/data");
    ro.read_only = Some(true);
    ro.mount_propagation = Some("HostToContainer".into());
    let mut bidi = mount("cache", "/bidi");
    bidi.mount_propagation = Some("Bidirectional".into());
    let mut none = mount("cache", "/none");
    none.mount_propagation = Some("None".into());
    let c = container(vec![mount("cache", "/cache"), ro, bidi, none]);
    let p = pod(vec![empty_dir("cache", None, None), host_path("data", &hp, None)], vec![c.clone()]);
    e.vm.setup_pod_volumes(&p).await.unwrap();
    let mounts = e.vm.container_mounts(&p, &c, None).unwrap();
    let cache = e.dirs.volume_dir(UID, EMPTY_DIR_PLUGIN, "cache");
    assert_eq!(mounts.len(), 4);
    assert_eq!(mounts[0].container_path, "/cache");
    assert_eq!(mounts[0].host_path, cache.to_str().unwrap());
    assert!(!mounts[0].readonly && !mounts[0].selinux_relabel);
    assert_eq!(mounts[0].propagation, MountPropagation::PropagationPrivate as i32);
    assert_eq!(mounts[1].host_path, hp.to_str().unwrap());
    assert!(mounts[1].readonly);
    assert_eq!(mounts[1].propagation, MountPropagation::PropagationHostToContainer as i32);
    assert_eq!(mounts[2].propagation, MountPropagation::PropagationBidirectional as i32);
    assert_eq!(mounts[3].propagation, MountPropagation::PropagationPrivate as i32);
}

#[tokio::test]
async fn container_mounts_errors() {
    let e = env();
    let p = pod(vec![empty_dir("cache", None, None)], vec![]);
    e.vm.setup_pod_volumes(&p).await.unwrap();

    let err = e.vm.container_mounts(&p, &container(vec![mount("nope", "/x")]), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pod prod/web: container \"app\": cannot find volume \"nope\" to mount into container \"app\""
    );

    let mut bad = mount("cache", "/x");
    bad.mount_propagation = Some("Sideways".into());
    let err = e.vm.container_mounts(&p, &container(vec![bad]), None).unwrap_err();
    assert!(err.to_string().ends_with("invalid MountPropagation mode: \"Sideways\""));

    let mut rro = mount("cache", "/x");
    rro.recursive_read_only = Some("Enabled".into());
    let err = e.vm.container_mounts(&p, &container(vec![rro.clone()]), None).unwrap_err();
    assert!(err.to_string().contains("it is not read-only"), "{err}");
    rro.read_only = Some(true);
    let err = e.vm.container_mounts(&p, &container(vec![rro.clone()]), None).unwrap_err();
    assert!(err.to_string().contains("not supported by the runtime"), "{err}");
    rro.recursive_read_only = Some("IfPossible".into());
    let m = e.vm.container_mounts(&p, &container(vec![rro]), None).unwrap();
    assert!(m[0].readonly && !m[0].recursive_read_only);

    let nfs = Volume { name: "share".into(), nfs: Some(NFSVolumeSource::default()), ..Default::default() };
    let p2 = pod(vec![nfs], vec![]);
    let err = e.vm.container_mounts(&p2, &container(vec![mount("share", "/share")]), None).unwrap_err();
    assert!(matches!(err, VolumeError::Unsupported { .. }));
}

#[tokio::test]
async fn sub_paths() {
    let e = env();
    let p = pod(vec![empty_dir("cache", None, None)], vec![]);
    e.vm.setup_pod_volumes(&p).await.unwrap();
    let cache = e.dirs.volume_dir(UID, EMPTY_DIR_PLUGIN, "cache");

    let mut sp = mount("cache", "/sub");
    sp.sub_path = Some("a/b".into());
    let m = e.vm.container_mounts(&p, &container(vec![sp]), None).unwrap();
    assert_eq!(m[0].host_path, cache.join("a/b").to_str().unwrap());
    // Created with the volume's mode.
    assert_eq!(mode_of(&cache.join("a")), 0o777);
    assert_eq!(mode_of(&cache.join("a/b")), 0o777);

    for (sub, want) in [
        ("/etc", "error SubPath `/etc` must not be an absolute path"),
        ("a/../..", "unable to provision SubPath `a/../..`: must not contain '..'"),
    ] {
        let mut vm = mount("cache", "/x");
        vm.sub_path = Some(sub.into());
        let err = e.vm.container_mounts(&p, &container(vec![vm]), None).unwrap_err();
        assert!(err.to_string().ends_with(want), "{err}");
    }

    // A symlink planted in the volume pointing outside it is refused.
    let secret = e.base.join("secret");
    std::fs::create_dir(&secret).unwrap();
    std::os::unix::fs::symlink(&secret, cache.join("evil")).unwrap();
    for sub in ["evil", "evil/new"] {
        let mut vm = mount("cache", "/x");
        vm.sub_path = Some(sub.into());
        let err = e.vm.container_mounts(&p, &container(vec![vm]), None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("subPath") && msg.contains("volumeMount \"cache\" of container \"app\""), "{msg}");
        assert!(!msg.contains("secret"), "host details leaked: {msg}");
    }
    assert!(!secret.join("new").exists());
}

#[tokio::test]
async fn sub_path_expr() {
    let e = env();
    let p = pod(vec![empty_dir("logs", None, None)], vec![]);
    e.vm.setup_pod_volumes(&p).await.unwrap();
    let logs = e.dirs.volume_dir(UID, EMPTY_DIR_PLUGIN, "logs");
    let mut vm = mount("logs", "/logs");
    vm.sub_path_expr = Some("$(POD_NAME)/$$x/$(".into());
    let env = vec![("POD_NAME".to_string(), "web".to_string())];
    let m = e.vm.container_mounts_with_env(&p, &container(vec![vm.clone()]), None, &env).unwrap();
    assert_eq!(m[0].host_path, logs.join("web/$x/$(").to_str().unwrap());

    vm.sub_path_expr = Some("$(B)/$(A)/$(B)".into());
    let err = e.vm.container_mounts(&p, &container(vec![vm]), None).unwrap_err();
    assert!(err.to_string().ends_with("missing value for A, B"), "{err}");
}

#[test]
fn expansion_rules() {
    let env: HashMap<&str, &str> = [("A", "1"), ("E", "")].into_iter().collect();
    assert_eq!(expand_sub_path_expr("x$(A)y", &env).unwrap(), "x1y");
    assert_eq!(expand_sub_path_expr("$$(A)", &env).unwrap(), "$(A)");
    assert_eq!(expand_sub_path_expr("$A$", &env).unwrap(), "$A$");
    assert_eq!(expand_sub_path_expr("é$(A)é", &env).unwrap(), "é1é");
    assert_eq!(expand_sub_path_expr("$(E)", &env).unwrap_err(), vec!["E"]);
}

#[tokio::test]
async fn etc_hosts_and_termination_log_mounts() {
    let e = env();
    let mut c = container(vec![mount("cache", "/cache")]);
    let p = pod(vec![empty_dir("cache", None, None)], vec![c.clone()]);
    e.vm.setup_pod_volumes(&p).await.unwrap();

    // No hosts file yet (no pod IPs): no /etc/hosts mount.
    let log = e.dirs.new_termination_log_file(UID, "app").unwrap();
    let m = e.vm.container_mounts(&p, &c, Some(&log)).unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[1].container_path, "/dev/termination-log");
    assert_eq!(m[1].host_path, log.to_str().unwrap());

    e.dirs.write_hosts_file_for(&p, &["10.0.0.9".into()], "web", "cluster.local").unwrap();
    c.termination_message_path = Some("/tmp/msg".into());
    let m = e.vm.container_mounts(&p, &c, Some(&log)).unwrap();
    let paths: Vec<&str> = m.iter().map(|m| m.container_path.as_str()).collect();
    assert_eq!(paths, ["/cache", "/etc/hosts", "/tmp/msg"]);
    assert_eq!(m[1].host_path, e.dirs.etc_hosts_path(UID).to_str().unwrap());
    assert!(!m[1].readonly);

    // A container that mounts its own /etc/hosts does not get the managed one.
    let own = container(vec![mount("cache", "/etc/hosts")]);
    let m = e.vm.container_mounts(&p, &own, None).unwrap();
    assert_eq!(m.len(), 1);

    // terminationMessagePath "" means no termination-log mount.
    c.termination_message_path = Some(String::new());
    let m = e.vm.container_mounts(&p, &c, Some(&log)).unwrap();
    assert_eq!(m.len(), 2);
}

#[tokio::test]
async fn teardown_unmounts_and_removes_volumes() {
    let e = env();
    let p = pod(vec![empty_dir("shm", Some("Memory"), Some("1Mi")), empty_dir("disk", None, None)], vec![]);
    e.vm.setup_pod_volumes(&p).await.unwrap();
    let disk = e.dirs.volume_dir(UID, EMPTY_DIR_PLUGIN, "disk");
    std::fs::write(disk.join("f"), b"x").unwrap();
    e.vm.teardown_pod_volumes(UID).await.unwrap();
    assert!(e.fake.mounted().is_empty());
    assert!(!e.dirs.volumes_dir(UID).exists());
    assert!(e.dirs.pod_dir(UID).exists());
    // Idempotent; unknown pods are fine.
    e.vm.teardown_pod_volumes(UID).await.unwrap();
    e.vm.teardown_pod_volumes("other").await.unwrap();
    e.vm.cleanup_pod_dir(UID).unwrap();
    assert!(!e.dirs.pod_dir(UID).exists());
    e.vm.cleanup_pod_dir(UID).unwrap();
    assert!(e.vm.teardown_pod_volumes("../x").await.is_err());
    assert!(e.vm.cleanup_pod_dir("..").is_err());
}

#[tokio::test]
async fn stuck_mount_keeps_its_contents() {
    let e = env();
    let p = pod(vec![empty_dir("data", None, None)], vec![]);
    e.vm.setup_pod_volumes(&p).await.unwrap();
    // Something (say a bind of a host directory) is mounted in the pod dir and won't go.
    let data = e.dirs.volume_dir(UID, EMPTY_DIR_PLUGIN, "data");
    std::fs::write(data.join("precious"), b"x").unwrap();
    e.fake.add_mount(&data);
    e.fake.fail_unmount(&data);
    let err = e.vm.teardown_pod_volumes(UID).await.unwrap_err();
    assert!(err.to_string().contains(data.to_str().unwrap()), "{err}");
    assert!(data.join("precious").exists());
    let err = e.vm.cleanup_pod_dir(UID).unwrap_err();
    assert!(err.to_string().contains("still a mount point") && err.to_string().contains("data"), "{err}");
    assert!(data.join("precious").exists());
}

#[tokio::test]
async fn real_mounter_memory_empty_dir_when_root() {
    if !nix_is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dirs = PodDirs::new(tmp.path());
    let vm = VolumeManager::new(dirs.clone(), Arc::new(sys::RealMounter::new()));
    let p = pod(vec![empty_dir("shm", Some("Memory"), Some("1Mi"))], vec![]);
    if let Err(err) = vm.setup_pod_volumes(&p).await {
        // Root without CAP_SYS_ADMIN (e.g. an unprivileged container).
        eprintln!("skipping: {err}");
        return;
    }
    let shm = dirs.volume_dir(UID, EMPTY_DIR_PLUGIN, "shm");
    let real = sys::RealMounter::new();
    assert!(real.is_mount_point(&shm).unwrap());
    vm.setup_pod_volumes(&p).await.unwrap();
    assert_eq!(real.mounts_under(&dirs.pod_dir(UID)).unwrap().len(), 1);
    vm.teardown_pod_volumes(UID).await.unwrap();
    assert!(!real.is_mount_point(&shm).unwrap());
    vm.cleanup_pod_dir(UID).unwrap();
    assert!(!dirs.pod_dir(UID).exists());
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}
