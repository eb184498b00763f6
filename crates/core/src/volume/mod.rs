//! Pod volumes, the upstream way for the two node-local kinds:
//!
//! - `emptyDir` (`pkg/volume/emptydir`): a 0777 directory under
//!   `pods/<uid>/volumes/kubernetes.io~empty-dir/<name>`; `medium: Memory` mounts a tmpfs
//!   there, sized by `sizeLimit` when given (upstream additionally caps it by the pod's memory
//!   limit / node allocatable; we leave the kernel default when there is no `sizeLimit`).
//! - `hostPath` (`pkg/volume/hostpath`): no setup beyond upstream's `type` check (which may
//!   create a directory or file).
//!
//! Everything else (configMap, secret, projected, downwardAPI, csi, PVCs, …) is refused with
//! [`VolumeError::Unsupported`] so the pod fails to mount instead of running without it.
//!
//! [`VolumeManager::container_mounts`] turns a container's `volumeMounts` into CRI mounts
//! (`makeMounts`): subPath resolution that cannot escape the volume, propagation, read-only,
//! plus the pod's managed `/etc/hosts` and the termination-message file.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cri::api::{Mount, MountPropagation};
use k8s_openapi::api::core::v1::{Container, EmptyDirVolumeSource, HostPathVolumeSource, Pod, Volume, VolumeMount};
use sys::{FileType, Mounter};

use crate::pod_dirs::{EMPTY_DIR_PLUGIN, PodDirs, PodDirsError, validate_component};
use crate::quantity::{QuantityError, parse_bytes};

/// Where the managed hosts file is mounted.
pub const ETC_HOSTS_PATH: &str = "/etc/hosts";
/// The API default of `terminationMessagePath`.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

/// emptyDir directories are world-writable (upstream `defaultPerm`).
const EMPTY_DIR_MODE: u32 = 0o777;
/// A tmpfs mounted without a `mode` option gets 1777; upstream passes none.
const TMPFS_ROOT_MODE: u32 = 0o1777;
/// hostPath `DirectoryOrCreate` / `FileOrCreate` modes (before the umask, as upstream).
const HOST_PATH_DIR_MODE: u32 = 0o755;
const HOST_PATH_FILE_MODE: u32 = 0o644;

/// Why a pod's volumes could not be set up, or a container's mounts could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("pod {pod}: volume {volume:?}: {kind} volumes are not supported yet")]
    Unsupported { pod: String, volume: String, kind: &'static str },

    #[error("pod {pod}: volume {volume:?}: {cause}")]
    Setup {
        pod: String,
        volume: String,
        #[source]
        cause: Box<SetupError>,
    },

    #[error("pod {pod}: container {container:?}: {cause}")]
    ContainerMount {
        pod: String,
        container: String,
        #[source]
        cause: Box<MountError>,
    },

    #[error("pod {pod}: {source}")]
    PodDirs {
        pod: String,
        #[source]
        source: PodDirsError,
    },

    #[error("pod {uid}: tearing down volumes: {source}")]
    Teardown {
        uid: String,
        #[source]
        source: sys::Error,
    },

    #[error("pod {uid}: removing the pod directory: {source}")]
    Cleanup {
        uid: String,
        #[source]
        source: sys::Error,
    },

    #[error("pod {pod}: volume task failed: {reason}")]
    Task { pod: String, reason: String },
}

/// The cause of a failed volume setup; messages follow upstream's.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("invalid volume name: must be a single, non-empty path component")]
    InvalidName,

    #[error("unknown storage medium {0:?}")]
    UnknownMedium(String),

    #[error("emptyDir medium {0:?} is not supported yet")]
    UnsupportedMedium(String),

    #[error("invalid sizeLimit: {0}")]
    SizeLimit(#[from] QuantityError),

    #[error("invalid HostPath `{0}`: must not contain '..'")]
    HostPathBackstep(String),

    #[error("{0} is an invalid volume type")]
    InvalidHostPathType(String),

    #[error("hostPath {0} doesn't exist")]
    HostPathMissing(String),

    #[error("hostPath type check failed: {path} is not a {expected}, it's a {actual}")]
    HostPathType { path: String, expected: &'static str, actual: FileType },

    #[error("hostPath type check failed, {path} is not a {expected}, unable to determine its type: {source}")]
    HostPathUnknownType {
        path: String,
        expected: &'static str,
        #[source]
        source: sys::Error,
    },

    #[error(transparent)]
    Sys(#[from] sys::Error),
}

/// The cause of a failed `volumeMount`; messages follow upstream's `makeMounts`.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot find volume {volume:?} to mount into container {container:?}")]
    VolumeNotFound { volume: String, container: String },

    #[error("error SubPath `{0}` must not be an absolute path")]
    SubPathAbsolute(String),

    #[error("unable to provision SubPath `{0}`: must not contain '..'")]
    SubPathBackstep(String),

    #[error("volumeMount {volume_mount:?}: subPathExpr: missing value for {missing}")]
    SubPathExprMissing { volume_mount: String, missing: String },

    /// Upstream keeps host filesystem details out of this message; they are in `source` (and
    /// logged).
    #[error("failed to create subPath directory for volumeMount {volume_mount:?} of container {container:?}")]
    SubPathCreate {
        volume_mount: String,
        container: String,
        #[source]
        source: sys::Error,
    },

    #[error("failed to prepare subPath for volumeMount {volume_mount:?} of container {container:?}")]
    SubPathPrepare {
        volume_mount: String,
        container: String,
        #[source]
        source: sys::Error,
    },

    #[error("invalid MountPropagation mode: {0:?}")]
    Propagation(String),

    #[error("volume {volume:?} requested recursive read-only mode, but {reason}")]
    RecursiveReadOnly { volume: String, reason: &'static str },

    #[error("unknown recursive read-only mode {0:?}")]
    UnknownRecursiveReadOnly(String),

    #[error("volume path {0} is not valid UTF-8")]
    NonUtf8Path(PathBuf),

    #[error(transparent)]
    Sys(#[from] sys::Error),
}

/// What a volume is, as far as this kubelet is concerned.
enum Source<'a> {
    /// `None`: the volume names no source at all, which API defaulting turns into an emptyDir.
    EmptyDir(Option<&'a EmptyDirVolumeSource>),
    HostPath(&'a HostPathVolumeSource),
    Unsupported(&'static str),
}

fn classify(v: &Volume) -> Source<'_> {
    if let Some(ed) = &v.empty_dir {
        return Source::EmptyDir(Some(ed));
    }
    if let Some(hp) = &v.host_path {
        return Source::HostPath(hp);
    }
    let others = [
        (v.config_map.is_some(), "configMap"),
        (v.secret.is_some(), "secret"),
        (v.projected.is_some(), "projected"),
        (v.downward_api.is_some(), "downwardAPI"),
        (v.csi.is_some(), "csi"),
        (v.persistent_volume_claim.is_some(), "persistentVolumeClaim"),
        (v.ephemeral.is_some(), "ephemeral"),
        (v.image.is_some(), "image"),
        (v.nfs.is_some(), "nfs"),
        (v.iscsi.is_some(), "iscsi"),
        (v.fc.is_some(), "fc"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.rbd.is_some(), "rbd"),
        (v.cephfs.is_some(), "cephfs"),
        (v.glusterfs.is_some(), "glusterfs"),
        (v.flex_volume.is_some(), "flexVolume"),
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (v.azure_disk.is_some(), "azureDisk"),
        (v.azure_file.is_some(), "azureFile"),
        (v.cinder.is_some(), "cinder"),
        (v.vsphere_volume.is_some(), "vsphereVolume"),
        (v.portworx_volume.is_some(), "portworxVolume"),
        (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (v.quobyte.is_some(), "quobyte"),
        (v.scale_io.is_some(), "scaleIO"),
        (v.storageos.is_some(), "storageos"),
        (v.flocker.is_some(), "flocker"),
    ];
    others.iter().find(|(set, _)| *set).map_or(Source::EmptyDir(None), |(_, kind)| Source::Unsupported(kind))
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn pod_uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

fn pod_volumes(pod: &Pod) -> &[Volume] {
    pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or_default()
}

/// Sets up and tears down pod volumes on this node and builds containers' mounts.
#[derive(Debug, Clone)]
pub struct VolumeManager {
    dirs: PodDirs,
    mounter: Arc<dyn Mounter>,
}

impl VolumeManager {
    pub fn new(dirs: PodDirs, mounter: Arc<dyn Mounter>) -> Self {
        Self { dirs, mounter }
    }

    pub fn pod_dirs(&self) -> &PodDirs {
        &self.dirs
    }

    /// Make the pod's directories and set up every volume in its spec. Idempotent: an
    /// existing directory is kept (its mode re-asserted), a tmpfs already mounted is left alone.
    /// The first failing volume's error is returned; unsupported kinds are refused before
    /// anything is created.
    pub async fn setup_pod_volumes(&self, pod: &Pod) -> Result<(), VolumeError> {
        let key = pod_key(pod);
        let uid = pod_uid(pod).to_string();
        let volumes = pod_volumes(pod).to_vec();
        let (dirs, mounter) = (self.dirs.clone(), self.mounter.clone());
        let task_key = key.clone();
        tokio::task::spawn_blocking(move || setup_blocking(&dirs, mounter.as_ref(), &task_key, &uid, &volumes))
            .await
            .map_err(|e| VolumeError::Task { pod: key, reason: e.to_string() })?
    }

    /// The CRI mounts of `container` (upstream `makeMounts` + the termination-log mount).
    /// Equivalent to [`Self::container_mounts_with_env`] with an empty environment, so a
    /// `subPathExpr` referencing any variable fails with "missing value".
    pub fn container_mounts(
        &self,
        pod: &Pod,
        container: &Container,
        termination_log: Option<&Path>,
    ) -> Result<Vec<Mount>, VolumeError> {
        self.container_mounts_with_env(pod, container, termination_log, &[])
    }

    /// The CRI mounts of `container`, in upstream's order:
    /// 1. each `volumeMount`: the volume's host path (emptyDir directory / hostPath path), with
    ///    `subPath` (or `subPathExpr` expanded against `env`) resolved under it without
    ///    escaping, a missing subPath directory created with the volume's mode; read-only and
    ///    propagation as requested; no SELinux relabel;
    /// 2. the pod's `etc-hosts` at `/etc/hosts`, unless the container mounts something there
    ///    itself — when the file exists, i.e. when
    ///    [`PodDirs::write_hosts_file_for`] decided the pod should get one (it has IPs or uses
    ///    the host network);
    /// 3. `termination_log` (from [`PodDirs::new_termination_log_file`]) at the container's
    ///    `terminationMessagePath` (default `/dev/termination-log`; none when set to "").
    pub fn container_mounts_with_env(
        &self,
        pod: &Pod,
        container: &Container,
        termination_log: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Vec<Mount>, VolumeError> {
        let key = pod_key(pod);
        let uid = validate_component("pod uid", pod_uid(pod))
            .map_err(|source| VolumeError::PodDirs { pod: key.clone(), source })?;
        let mount_err = |cause: MountError| VolumeError::ContainerMount {
            pod: key.clone(),
            container: container.name.clone(),
            cause: Box::new(cause),
        };
        let volumes: HashMap<&str, &Volume> = pod_volumes(pod).iter().map(|v| (v.name.as_str(), v)).collect();
        let env: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

        let mut mounts = Vec::new();
        let mut mount_etc_hosts = true;
        for vm in container.volume_mounts.iter().flatten() {
            if vm.mount_path == ETC_HOSTS_PATH {
                mount_etc_hosts = false;
            }
            let Some(volume) = volumes.get(vm.name.as_str()) else {
                return Err(mount_err(MountError::VolumeNotFound {
                    volume: vm.name.clone(),
                    container: container.name.clone(),
                }));
            };
            let volume_path = match classify(volume) {
                Source::EmptyDir(_) => {
                    if validate_component("volume name", &volume.name).is_err() {
                        return Err(VolumeError::Setup {
                            pod: key.clone(),
                            volume: volume.name.clone(),
                            cause: Box::new(SetupError::InvalidName),
                        });
                    }
                    self.dirs.volume_dir(uid, EMPTY_DIR_PLUGIN, &volume.name)
                }
                Source::HostPath(hp) => PathBuf::from(&hp.path),
                Source::Unsupported(kind) => {
                    return Err(VolumeError::Unsupported { pod: key.clone(), volume: volume.name.clone(), kind });
                }
            };
            let host_path = resolve_sub_path(vm, &container.name, &volume_path, &env).map_err(&mount_err)?;
            let host_path =
                host_path.to_str().ok_or_else(|| mount_err(MountError::NonUtf8Path(host_path.clone())))?.to_string();
            let propagation = translate_propagation(vm.mount_propagation.as_deref()).map_err(&mount_err)?;
            let read_only = vm.read_only.unwrap_or(false);
            let recursive_read_only = resolve_recursive_read_only(vm, false).map_err(&mount_err)?;
            mounts.push(Mount {
                container_path: vm.mount_path.clone(),
                host_path,
                readonly: read_only,
                selinux_relabel: false,
                propagation: propagation as i32,
                recursive_read_only,
                ..Default::default()
            });
        }

        if mount_etc_hosts {
            let hosts = self.dirs.etc_hosts_path(uid);
            if std::fs::symlink_metadata(&hosts).is_ok_and(|m| m.is_file()) {
                let host_path =
                    hosts.to_str().ok_or_else(|| mount_err(MountError::NonUtf8Path(hosts.clone())))?.to_string();
                mounts.push(Mount { container_path: ETC_HOSTS_PATH.to_string(), host_path, ..Default::default() });
            }
        }

        if let Some(log) = termination_log {
            let target = container.termination_message_path.as_deref().unwrap_or(DEFAULT_TERMINATION_MESSAGE_PATH);
            if !target.is_empty() {
                let host_path =
                    log.to_str().ok_or_else(|| mount_err(MountError::NonUtf8Path(log.to_path_buf())))?.to_string();
                mounts.push(Mount { container_path: target.to_string(), host_path, ..Default::default() });
            }
        }
        Ok(mounts)
    }

    /// Unmount every mount below the pod's directory (tmpfs emptyDirs), then remove
    /// `volumes/`. The removal never crosses into a mount point, so if anything is still
    /// mounted nothing under it is deleted. hostPath targets live outside the pod directory
    /// and are never touched. A pod without a directory is fine.
    pub async fn teardown_pod_volumes(&self, uid: &str) -> Result<(), VolumeError> {
        validate_component("pod uid", uid).map_err(|source| VolumeError::PodDirs { pod: uid.to_string(), source })?;
        let (dirs, mounter, task_uid) = (self.dirs.clone(), self.mounter.clone(), uid.to_string());
        tokio::task::spawn_blocking(move || teardown_blocking(&dirs, mounter.as_ref(), &task_uid))
            .await
            .map_err(|e| VolumeError::Task { pod: uid.to_string(), reason: e.to_string() })?
    }

    /// Remove the whole pod directory, refusing (with the mounted path in the error) while
    /// anything below it is still mounted. A missing directory is fine.
    pub fn cleanup_pod_dir(&self, uid: &str) -> Result<(), VolumeError> {
        validate_component("pod uid", uid).map_err(|source| VolumeError::PodDirs { pod: uid.to_string(), source })?;
        sys::remove_dir_all_no_cross_mounts(&self.dirs.pod_dir(uid), self.mounter.as_ref())
            .map_err(|source| VolumeError::Cleanup { uid: uid.to_string(), source })
    }
}

fn setup_blocking(
    dirs: &PodDirs,
    mounter: &dyn Mounter,
    key: &str,
    uid: &str,
    volumes: &[Volume],
) -> Result<(), VolumeError> {
    // Refuse unsupported kinds before touching the disk.
    for v in volumes {
        if let Source::Unsupported(kind) = classify(v) {
            return Err(VolumeError::Unsupported { pod: key.to_string(), volume: v.name.clone(), kind });
        }
    }
    dirs.ensure_pod_dirs(uid).map_err(|source| VolumeError::PodDirs { pod: key.to_string(), source })?;
    for v in volumes {
        let result = match classify(v) {
            Source::EmptyDir(ed) => setup_empty_dir(dirs, mounter, uid, &v.name, ed),
            Source::HostPath(hp) => setup_host_path(hp),
            Source::Unsupported(_) => Ok(()),
        };
        result.map_err(|cause| VolumeError::Setup {
            pod: key.to_string(),
            volume: v.name.clone(),
            cause: Box::new(cause),
        })?;
    }
    Ok(())
}

fn setup_empty_dir(
    dirs: &PodDirs,
    mounter: &dyn Mounter,
    uid: &str,
    name: &str,
    source: Option<&EmptyDirVolumeSource>,
) -> Result<(), SetupError> {
    validate_component("volume name", name).map_err(|_| SetupError::InvalidName)?;
    let dir = dirs.volume_dir(uid, EMPTY_DIR_PLUGIN, name);
    let medium = source.and_then(|s| s.medium.as_deref()).unwrap_or_default();
    match medium {
        "" => sys::ensure_dir(&dir, EMPTY_DIR_MODE)?,
        "Memory" => {
            // Already set up: leave the mounted tmpfs (and its root's mode) alone.
            if mounter.is_mount_point(&dir)? {
                return Ok(());
            }
            let size = match source.and_then(|s| s.size_limit.as_ref()) {
                Some(q) => Some(parse_bytes(&q.0)?).filter(|s| *s > 0),
                None => None,
            };
            sys::ensure_dir(&dir, EMPTY_DIR_MODE)?;
            tracing::debug!(pod_uid = uid, volume = name, ?size, "mounting tmpfs for emptyDir");
            mounter.mount_tmpfs(&dir, size, TMPFS_ROOT_MODE)?;
        }
        m if m == "HugePages" || m.starts_with("HugePages-") => {
            return Err(SetupError::UnsupportedMedium(m.to_string()));
        }
        other => return Err(SetupError::UnknownMedium(other.to_string())),
    }
    Ok(())
}

/// Upstream `hostPathMounter.SetUp` + `checkType`.
fn setup_host_path(source: &HostPathVolumeSource) -> Result<(), SetupError> {
    let path = source.path.as_str();
    if path.split('/').any(|c| c == "..") {
        return Err(SetupError::HostPathBackstep(path.to_string()));
    }
    let p = Path::new(path);
    // Upstream's `exists` treats errors as "does not exist".
    let exists = || sys::path_exists(p).unwrap_or(false);
    let (want, expected) = match source.type_.as_deref().unwrap_or_default() {
        "" => return Ok(()),
        "DirectoryOrCreate" => {
            if !exists() {
                return create_host_dir(p);
            }
            (FileType::Directory, "directory")
        }
        "Directory" => (FileType::Directory, "directory"),
        "FileOrCreate" => {
            if !exists() {
                return create_host_file(p);
            }
            (FileType::File, "file")
        }
        "File" => (FileType::File, "file"),
        "Socket" => (FileType::Socket, "socket file"),
        "CharDevice" => (FileType::CharDevice, "character device"),
        "BlockDevice" => (FileType::BlockDevice, "block device"),
        other => return Err(SetupError::InvalidHostPathType(other.to_string())),
    };
    if !exists() {
        return Err(SetupError::HostPathMissing(path.to_string()));
    }
    match sys::file_type(p) {
        Ok(actual) if actual == want => Ok(()),
        Ok(actual) => Err(SetupError::HostPathType { path: path.to_string(), expected, actual }),
        Err(source) => Err(SetupError::HostPathUnknownType { path: path.to_string(), expected, source }),
    }
}

/// `DirectoryOrCreate`: `MkdirAll(path, 0755)`, parents included, subject to the umask.
fn create_host_dir(p: &Path) -> Result<(), SetupError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().recursive(true).mode(HOST_PATH_DIR_MODE).create(p) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(sys::Error::from(sys::WrappedIoError::CreateDir { err, path: p.to_path_buf() }).into()),
    }
}

/// `FileOrCreate`: an empty 0644 file (subject to the umask). The parent directory must
/// already exist, as upstream (`os.OpenFile(path, O_CREATE, 0644)`).
fn create_host_file(p: &Path) -> Result<(), SetupError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(HOST_PATH_FILE_MODE).open(p) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(sys::Error::from(sys::WrappedIoError::Create { err, path: p.to_path_buf() }).into()),
    }
}

/// The host path a `volumeMount` refers to: the volume path, or its resolved subPath.
fn resolve_sub_path(
    vm: &VolumeMount,
    container: &str,
    volume_path: &Path,
    env: &HashMap<&str, &str>,
) -> Result<PathBuf, MountError> {
    let expanded;
    let sub_path = match vm.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
        Some(expr) => {
            expanded = expand_sub_path_expr(expr, env).map_err(|missing| MountError::SubPathExprMissing {
                volume_mount: vm.name.clone(),
                missing: missing.join(", "),
            })?;
            expanded.as_str()
        }
        None => vm.sub_path.as_deref().unwrap_or_default(),
    };
    if sub_path.is_empty() {
        return Ok(volume_path.to_path_buf());
    }
    if Path::new(sub_path).is_absolute() {
        return Err(MountError::SubPathAbsolute(sub_path.to_string()));
    }
    if sub_path.split('/').any(|c| c == "..") {
        return Err(MountError::SubPathBackstep(sub_path.to_string()));
    }
    let joined = volume_path.join(sub_path);
    let exists = match sys::path_exists(&joined) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(path = %joined.display(), "could not determine if subPath exists: {e}");
            true
        }
    };
    if !exists {
        // Create it now with the volume's mode: a runtime would create it 0755/0750 and
        // root-owned, which breaks fsGroup-style sharing (upstream's reasoning).
        let mode = std::fs::metadata(volume_path)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
            .map_err(|err| {
                MountError::Sys(sys::Error::from(sys::WrappedIoError::Stat { err, path: volume_path.to_path_buf() }))
            })?;
        if let Err(source) = sys::safe_mkdir_all(volume_path, Path::new(sub_path), mode) {
            tracing::warn!(container, volume_mount = %vm.name, "failed to create subPath directory: {source}");
            return Err(MountError::SubPathCreate {
                volume_mount: vm.name.clone(),
                container: container.to_string(),
                source,
            });
        }
    }
    sys::safe_join(volume_path, Path::new(sub_path)).map_err(|source| {
        tracing::warn!(container, volume_mount = %vm.name, "failed to prepare subPath: {source}");
        MountError::SubPathPrepare { volume_mount: vm.name.clone(), container: container.to_string(), source }
    })
}

/// Expand `$(VAR)` references in a `subPathExpr` (upstream `expansion.Expand` with the mapping
/// of `ExpandContainerVolumeMounts`): `$$` is a literal `$`, other `$` sequences and unclosed
/// `$(` are kept as written. A reference to an unset or empty variable is an error listing
/// all such names, sorted.
fn expand_sub_path_expr(input: &str, env: &HashMap<&str, &str>) -> Result<String, Vec<String>> {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut missing = BTreeSet::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let next = bytes.get(i + 1).copied();
        match (b, next) {
            (b'$', Some(b'$')) => {
                out.push(b'$');
                i += 2;
            }
            (b'$', Some(b'(')) => {
                let rest = bytes.get(i + 2..).unwrap_or_default();
                match rest.iter().position(|&c| c == b')') {
                    Some(end) => {
                        let name = String::from_utf8_lossy(rest.get(..end).unwrap_or_default());
                        match env.get(name.as_ref()).filter(|v| !v.is_empty()) {
                            Some(v) => out.extend_from_slice(v.as_bytes()),
                            None => {
                                missing.insert(name.into_owned());
                            }
                        }
                        i += 2 + end + 1;
                    }
                    None => {
                        out.extend_from_slice(b"$(");
                        i += 2;
                    }
                }
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    if missing.is_empty() { Ok(String::from_utf8_lossy(&out).into_owned()) } else { Err(missing.into_iter().collect()) }
}

/// Upstream `translateMountPropagation`.
fn translate_propagation(mode: Option<&str>) -> Result<MountPropagation, MountError> {
    match mode {
        None | Some("None") => Ok(MountPropagation::PropagationPrivate),
        Some("HostToContainer") => Ok(MountPropagation::PropagationHostToContainer),
        Some("Bidirectional") => Ok(MountPropagation::PropagationBidirectional),
        Some(other) => Err(MountError::Propagation(other.to_string())),
    }
}

/// Upstream `resolveRecursiveReadOnly`.
fn resolve_recursive_read_only(vm: &VolumeMount, runtime_supports_rro: bool) -> Result<bool, MountError> {
    let mode = match vm.recursive_read_only.as_deref() {
        None | Some("Disabled") => return Ok(false),
        Some(m) => m,
    };
    let rro_err = |reason| MountError::RecursiveReadOnly { volume: vm.name.clone(), reason };
    if !vm.read_only.unwrap_or(false) {
        return Err(rro_err("it is not read-only"));
    }
    if vm.mount_propagation.as_deref().is_some_and(|p| p != "None") {
        return Err(rro_err("it is not compatible with mount propagation"));
    }
    match mode {
        "IfPossible" => Ok(runtime_supports_rro),
        "Enabled" if runtime_supports_rro => Ok(true),
        "Enabled" => Err(rro_err("it is not supported by the runtime")),
        other => Err(MountError::UnknownRecursiveReadOnly(other.to_string())),
    }
}

fn teardown_blocking(dirs: &PodDirs, mounter: &dyn Mounter, uid: &str) -> Result<(), VolumeError> {
    let teardown = |source| VolumeError::Teardown { uid: uid.to_string(), source };
    let pod_dir = dirs.pod_dir(uid);
    if !sys::path_exists(&pod_dir).map_err(teardown)? {
        return Ok(());
    }
    let mut first_err = None;
    for m in mounter.mounts_under(&pod_dir).map_err(teardown)? {
        tracing::debug!(pod_uid = uid, path = %m.display(), "unmounting pod volume");
        if let Err(e) = mounter.unmount(&m) {
            tracing::warn!(pod_uid = uid, "{e}");
            first_err.get_or_insert(e);
        }
    }
    if let Some(e) = first_err {
        return Err(teardown(e));
    }
    sys::remove_dir_all_no_cross_mounts(&dirs.volumes_dir(uid), mounter).map_err(teardown)
}

#[cfg(test)]
mod tests;
