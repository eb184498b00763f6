//! Pod volumes (upstream `pkg/kubelet/volumemanager` and the volume plugins) for the kinds a node
//! can provide without a storage driver:
//!
//! - `emptyDir` (`pkg/volume/emptydir`): a 0777 directory under
//!   `pods/<uid>/volumes/kubernetes.io~empty-dir/<name>`; `medium: Memory` mounts a tmpfs
//!   there, sized by `sizeLimit` when given (upstream additionally caps it by the pod's memory
//!   limit / node allocatable; we leave the kernel default when there is no `sizeLimit`).
//! - `hostPath` (`pkg/volume/hostpath`): no setup beyond upstream's `type` check (which may
//!   create a directory or file).
//! - `configMap`, `secret`, `downwardAPI`, `projected` (`kubernetes.io~configmap`, `~secret`,
//!   `~downward-api`, `~projected`): files computed from API objects and the pod, written
//!   atomically (`sys::atomic_writer`) on every pod sync, so changes reach running pods; tmpfs
//!   for all but configMap. Their mounts are always read-only. configMap, secret and projected
//!   need an [`ObjectGetter`]: without one (standalone) they are refused with
//!   [`VolumeError::NeedsApiServer`]. Tokens in projected volumes are refreshed at 80% of
//!   their lifetime: [`VolumeSetup::requeue_after`] tells the pod worker when.
//!
//! Everything else (csi, PVCs, nfs, …) is refused with [`VolumeError::Unsupported`] so the pod
//! fails to mount instead of running without it.
//!
//! [`VolumeManager::container_mounts`] turns a container's `volumeMounts` into CRI mounts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use api::objects::ObjectGetter;
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, DownwardAPIVolumeSource, EmptyDirVolumeSource, HostPathVolumeSource, Pod,
    ProjectedVolumeSource, SecretVolumeSource, Volume,
};
use sys::Mounter;
use tokio::time::Instant;

use crate::pod_dirs::{EMPTY_DIR_PLUGIN, HOST_PATH_PLUGIN, PodDirs, validate_component};

mod configmap;
mod downward_api;
mod error;
pub mod fieldpath;
mod local;
mod mounts;
mod payload;
mod projected;
mod secret;

use configmap::{CONFIG_MAP_PLUGIN, config_map_payload};
use downward_api::DOWNWARD_API_PLUGIN;
pub use error::{MountError, SetupError, VolumeError};
use fieldpath::NodeAllocatable;
use local::{setup_empty_dir, setup_host_path};
use payload::{Prepared, default_mode, write_volume};
use projected::PROJECTED_PLUGIN;
use secret::{SECRET_PLUGIN, secret_payload};

/// Where the managed hosts file is mounted.
pub const ETC_HOSTS_PATH: &str = "/etc/hosts";
/// The API default of `terminationMessagePath`.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// The soonest a pod is synced again for a token refresh (a failed refresh leaves the due time
/// in the past; this keeps the retry from spinning).
pub const MIN_TOKEN_REQUEUE: Duration = Duration::from_secs(10);

/// What a volume is, as far as this kubelet is concerned.
enum Source<'a> {
    /// `None`: the volume names no source at all, which API defaulting turns into an emptyDir.
    EmptyDir(Option<&'a EmptyDirVolumeSource>),
    HostPath(&'a HostPathVolumeSource),
    ConfigMap(&'a ConfigMapVolumeSource),
    Secret(&'a SecretVolumeSource),
    DownwardApi(&'a DownwardAPIVolumeSource),
    Projected(&'a ProjectedVolumeSource),
    Unsupported(&'static str),
}

impl Source<'_> {
    /// The upstream plugin name, whose escaped form names the volume's directory under
    /// `volumes/` (hostPath volumes have none; an unsupported kind gives its kind).
    fn plugin(&self) -> &'static str {
        match self {
            Self::EmptyDir(_) => EMPTY_DIR_PLUGIN,
            Self::HostPath(_) => HOST_PATH_PLUGIN,
            Self::ConfigMap(_) => CONFIG_MAP_PLUGIN,
            Self::Secret(_) => SECRET_PLUGIN,
            Self::DownwardApi(_) => DOWNWARD_API_PLUGIN,
            Self::Projected(_) => PROJECTED_PLUGIN,
            Self::Unsupported(kind) => kind,
        }
    }

    /// The kinds whose contents come from the API server (upstream mounts them read-only).
    fn is_api_data(&self) -> bool {
        matches!(self, Self::ConfigMap(_) | Self::Secret(_) | Self::DownwardApi(_) | Self::Projected(_))
    }
}

fn classify(v: &Volume) -> Source<'_> {
    if let Some(ed) = &v.empty_dir {
        return Source::EmptyDir(Some(ed));
    }
    if let Some(hp) = &v.host_path {
        return Source::HostPath(hp);
    }
    if let Some(cm) = &v.config_map {
        return Source::ConfigMap(cm);
    }
    if let Some(s) = &v.secret {
        return Source::Secret(s);
    }
    if let Some(d) = &v.downward_api {
        return Source::DownwardApi(d);
    }
    if let Some(p) = &v.projected {
        return Source::Projected(p);
    }
    let others = [
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

/// What a successful [`VolumeManager::setup_pod_volumes`] tells the pod worker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeSetup {
    /// The earliest time a service account token in the pod's projected volumes is due for a
    /// refresh.
    pub next_token_refresh: Option<Instant>,
}

impl VolumeSetup {
    /// Sync the pod again after this long to refresh its tokens in time; at least
    /// [`MIN_TOKEN_REQUEUE`].
    pub fn requeue_after(&self) -> Option<Duration> {
        self.next_token_refresh.map(|t| t.saturating_duration_since(Instant::now()).max(MIN_TOKEN_REQUEUE))
    }
}

/// Sets up and tears down pod volumes on this node and builds containers' mounts.
#[derive(Clone)]
pub struct VolumeManager {
    dirs: PodDirs,
    mounter: Arc<dyn Mounter>,
    objects: Option<Arc<dyn ObjectGetter>>,
    allocatable: NodeAllocatable,
}

impl std::fmt::Debug for VolumeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeManager")
            .field("dirs", &self.dirs)
            .field("mounter", &self.mounter)
            .field("objects", &self.objects.is_some())
            .finish_non_exhaustive()
    }
}

impl VolumeManager {
    /// A volume manager without an API server (standalone): configMap, secret and projected
    /// volumes are refused.
    pub fn new(dirs: PodDirs, mounter: Arc<dyn Mounter>) -> Self {
        Self { dirs, mounter, objects: None, allocatable: NodeAllocatable::new() }
    }

    /// Read configMaps, secrets, tokens (and, for env, services) through `objects`.
    pub fn with_objects(mut self, objects: Arc<dyn ObjectGetter>) -> Self {
        self.objects = Some(objects);
        self
    }

    /// The node's allocatable resources, the value of a downward API `limits.*` reference
    /// when the container has no such limit. Unset, such references read 0.
    pub fn with_node_allocatable(mut self, allocatable: NodeAllocatable) -> Self {
        self.allocatable = allocatable;
        self
    }

    pub fn pod_dirs(&self) -> &PodDirs {
        &self.dirs
    }

    /// The API object reader, when this node has an API server (the runtime manager reads
    /// env sources through it too).
    pub fn objects(&self) -> Option<&dyn ObjectGetter> {
        self.objects.as_deref()
    }

    pub fn node_allocatable(&self) -> &NodeAllocatable {
        &self.allocatable
    }

    /// Make the pod's directories and set up every volume in its spec; called on every pod
    /// sync. Idempotent: an existing directory is kept, a tmpfs already mounted is left alone,
    /// an API-data volume whose contents did not change is not rewritten (a changed one is
    /// swapped atomically). Unsupported kinds, and API kinds without an API server, are refused
    /// before anything is fetched or created; then every API-data payload is computed before
    /// anything is written. The first failing volume's error is returned.
    pub async fn setup_pod_volumes(&self, pod: &Pod) -> Result<VolumeSetup, VolumeError> {
        let key = pod_key(pod);
        for v in pod_volumes(pod) {
            let refused = |kind| VolumeError::Unsupported { pod: key.clone(), volume: v.name.clone(), kind };
            let needs_api = |kind| VolumeError::NeedsApiServer { pod: key.clone(), volume: v.name.clone(), kind };
            match classify(v) {
                Source::Unsupported(kind) => return Err(refused(kind)),
                Source::ConfigMap(_) if self.objects.is_none() => return Err(needs_api("configMap")),
                Source::Secret(_) if self.objects.is_none() => return Err(needs_api("secret")),
                Source::Projected(_) if self.objects.is_none() => return Err(needs_api("projected")),
                _ => {}
            }
        }
        let mut prepared = HashMap::new();
        let mut setup = VolumeSetup::default();
        for v in pod_volumes(pod) {
            let fail = |cause| VolumeError::Setup { pod: key.clone(), volume: v.name.clone(), cause: Box::new(cause) };
            if let Some(p) = self.prepare(pod, v).await.map_err(fail)? {
                if let Some(at) = p.refresh_at {
                    setup.next_token_refresh = Some(setup.next_token_refresh.map_or(at, |t: Instant| t.min(at)));
                }
                prepared.insert(v.name.clone(), p);
            }
        }
        let uid = pod_uid(pod).to_string();
        let volumes = pod_volumes(pod).to_vec();
        let fs_group = payload::fs_group(pod);
        let (dirs, mounter) = (self.dirs.clone(), self.mounter.clone());
        let task_key = key.clone();
        tokio::task::spawn_blocking(move || {
            setup_blocking(&dirs, mounter.as_ref(), &task_key, &uid, &volumes, &prepared, fs_group)
        })
        .await
        .map_err(|e| VolumeError::Task { pod: key, reason: e.to_string() })??;
        Ok(setup)
    }

    /// The payload of an API-data volume (fetching what it refers to); `None` for other kinds.
    async fn prepare(&self, pod: &Pod, v: &Volume) -> Result<Option<Prepared>, SetupError> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let objects = self.objects.as_deref();
        let prepared = |plugin, memory, payload| Prepared { plugin, memory, payload, refresh_at: None };
        Ok(match (classify(v), objects) {
            (Source::ConfigMap(s), Some(objects)) => {
                let (items, mode, optional) =
                    (s.items.as_deref(), default_mode(s.default_mode), s.optional == Some(true));
                let data = config_map_payload(objects, namespace, &s.name, items, mode, optional).await?;
                Some(prepared(CONFIG_MAP_PLUGIN, false, data))
            }
            (Source::Secret(s), Some(objects)) => {
                let (items, mode, optional) =
                    (s.items.as_deref(), default_mode(s.default_mode), s.optional == Some(true));
                let name = s.secret_name.as_deref().unwrap_or_default();
                let data = secret_payload(objects, namespace, name, items, mode, optional).await?;
                Some(prepared(SECRET_PLUGIN, true, data))
            }
            (Source::DownwardApi(s), _) => {
                let items = s.items.as_deref().unwrap_or_default();
                let data = downward_api::collect_data(items, pod, default_mode(s.default_mode), &self.allocatable)?;
                Some(prepared(DOWNWARD_API_PLUGIN, true, data))
            }
            (Source::Projected(s), Some(objects)) => {
                let (data, refresh_at) = projected::collect_data(objects, pod, s, &self.allocatable).await?;
                Some(Prepared { refresh_at, ..prepared(PROJECTED_PLUGIN, true, data) })
            }
            _ => None,
        })
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
    prepared: &HashMap<String, Prepared>,
    fs_group: Option<u32>,
) -> Result<(), VolumeError> {
    dirs.ensure_pod_dirs(uid).map_err(|source| VolumeError::PodDirs { pod: key.to_string(), source })?;
    for v in volumes {
        let result = match classify(v) {
            Source::EmptyDir(ed) => setup_empty_dir(dirs, mounter, uid, &v.name, ed),
            Source::HostPath(hp) => setup_host_path(hp),
            _ => match prepared.get(&v.name) {
                Some(p) => write_volume(dirs, mounter, uid, &v.name, p, fs_group).map(|_| ()),
                None => Ok(()),
            },
        };
        result.map_err(|cause| VolumeError::Setup {
            pod: key.to_string(),
            volume: v.name.clone(),
            cause: Box::new(cause),
        })?;
    }
    Ok(())
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
mod api_tests;
#[cfg(test)]
mod sync_tests;
#[cfg(test)]
mod tests;
