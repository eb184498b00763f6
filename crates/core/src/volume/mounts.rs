//! Containers' mounts (upstream `makeMounts`): each `volumeMount` resolved to its volume's host
//! path (subPath / subPathExpr without escaping the volume, propagation, read-only), plus the
//! pod's managed `/etc/hosts` and the termination-message file.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use cri::api::{Mount, MountPropagation};
use k8s_openapi::api::core::v1::{Container, Pod, Volume, VolumeMount};

use super::{
    DEFAULT_TERMINATION_MESSAGE_PATH, ETC_HOSTS_PATH, MountError, SetupError, Source, VolumeError, VolumeManager,
    classify, pod_key, pod_uid, pod_volumes,
};
use crate::pod_dirs::validate_component;

impl VolumeManager {
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
    /// 1. each `volumeMount`: the volume's host path (its directory under `volumes/`, or the
    ///    hostPath path), with `subPath` (or `subPathExpr` expanded against `env`) resolved
    ///    under it without escaping, a missing subPath directory created with the volume's
    ///    mode; read-only as requested (always for configMap, secret, downwardAPI, projected),
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
            let source = classify(volume);
            let volume_path = match source {
                Source::HostPath(hp) => PathBuf::from(&hp.path),
                Source::Unsupported(kind) => {
                    return Err(VolumeError::Unsupported { pod: key.clone(), volume: volume.name.clone(), kind });
                }
                _ => {
                    if validate_component("volume name", &volume.name).is_err() {
                        return Err(VolumeError::Setup {
                            pod: key.clone(),
                            volume: volume.name.clone(),
                            cause: Box::new(SetupError::InvalidName),
                        });
                    }
                    self.dirs.volume_dir(uid, source.plugin(), &volume.name)
                }
            };
            let host_path = resolve_sub_path(vm, &container.name, &volume_path, &env).map_err(&mount_err)?;
            let host_path =
                host_path.to_str().ok_or_else(|| mount_err(MountError::NonUtf8Path(host_path.clone())))?.to_string();
            let propagation = translate_propagation(vm.mount_propagation.as_deref()).map_err(&mount_err)?;
            // Upstream mounts API data read-only whatever the volumeMount says.
            let read_only = vm.read_only.unwrap_or(false) || source.is_api_data();
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
pub(super) fn expand_sub_path_expr(input: &str, env: &HashMap<&str, &str>) -> Result<String, Vec<String>> {
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
