//! What configMap, secret, downwardAPI and projected volumes share: a payload of files made
//! from API objects and the pod, written with upstream's AtomicWriter into the volume
//! directory — a tmpfs for the kinds that may carry secrets (upstream wraps an emptyDir with
//! `medium: Memory`) — and, with a pod `fsGroup`, group-owned as upstream's
//! `SetVolumeOwnership` does.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{KeyToPath, Pod};
use sys::Mounter;
use sys::atomic_writer::{AtomicWriter, FileProjection, Payload, WriteOutcome, set_volume_ownership};
use tokio::time::Instant;

use super::SetupError;
use super::local::{EMPTY_DIR_MODE, TMPFS_ROOT_MODE};
use crate::pod_dirs::{PodDirs, validate_component};

/// The API default of `defaultMode` (and of an item without `mode`).
const DEFAULT_MODE: i32 = 0o644;

/// One volume's files, computed before anything is written.
#[derive(Debug)]
pub(super) struct Prepared {
    pub plugin: &'static str,
    /// Mount a tmpfs at the volume directory (secret, downwardAPI, projected).
    pub memory: bool,
    pub payload: Payload,
    /// When a service account token in the payload is due for a refresh.
    pub refresh_at: Option<Instant>,
}

/// A spec mode (`defaultMode`, an item's `mode`) as file permission bits.
pub(super) fn file_mode(mode: Option<i32>, default: u32) -> u32 {
    mode.and_then(|m| u32::try_from(m).ok()).map_or(default, |m| m & 0o7777)
}

/// A source's `defaultMode`, 0644 when unset.
pub(super) fn default_mode(mode: Option<i32>) -> u32 {
    file_mode(mode.or(Some(DEFAULT_MODE)), 0o644)
}

/// Upstream configmap/secret `MakePayload`: without `items` every key becomes a file named after
/// it; with `items` each listed key goes to its `path` with its own mode, and a missing key is
/// an error (`missing`) unless the source is optional.
pub(super) fn key_to_path_payload(
    items: Option<&[KeyToPath]>,
    entries: &BTreeMap<String, Vec<u8>>,
    default_mode: u32,
    optional: bool,
    missing: impl Fn(&str) -> SetupError,
) -> Result<Payload, SetupError> {
    let file = |data: &Vec<u8>, mode: u32| FileProjection { data: data.clone(), mode, fs_user: None };
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in entries {
                payload.insert(k.clone(), file(v, default_mode));
            }
        }
        Some(items) => {
            for item in items {
                match entries.get(&item.key) {
                    Some(v) => {
                        payload.insert(item.path.clone(), file(v, file_mode(item.mode, default_mode)));
                    }
                    None if optional => {}
                    None => return Err(missing(&item.key)),
                }
            }
        }
    }
    Ok(payload)
}

/// The pod's `securityContext.fsGroup`.
pub(super) fn fs_group(pod: &Pod) -> Option<u32> {
    let psc = pod.spec.as_ref()?.security_context.as_ref()?;
    psc.fs_group.and_then(|g| u32::try_from(g).ok())
}

/// Upstream `FsUserFrom`: the one effective `runAsUser` shared by every container (init and
/// ephemeral included); none when a container has no user or two containers differ.
pub(super) fn fs_user(pod: &Pod) -> Option<u32> {
    let spec = pod.spec.as_ref()?;
    let pod_user = spec.security_context.as_ref().and_then(|s| s.run_as_user);
    let users = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| c.security_context.as_ref().and_then(|s| s.run_as_user).or(pod_user))
        .chain(
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|c| c.security_context.as_ref().and_then(|s| s.run_as_user).or(pod_user)),
        );
    let mut found = None;
    for u in users {
        let u = u?;
        if found.is_some_and(|f| f != u) {
            return None;
        }
        found = Some(u);
    }
    found.and_then(|u| u32::try_from(u).ok())
}

/// Make `pods/<uid>/volumes/<plugin>/<name>` hold `prepared`'s payload: the directory (0777, as
/// the wrapped emptyDir) and its tmpfs are made once; the payload is swapped in atomically when
/// it changed and left alone when it did not.
pub(super) fn write_volume(
    dirs: &PodDirs,
    mounter: &dyn Mounter,
    uid: &str,
    name: &str,
    prepared: &Prepared,
    fs_group: Option<u32>,
) -> Result<WriteOutcome, SetupError> {
    validate_component("volume name", name).map_err(|_| SetupError::InvalidName)?;
    let dir = dirs.volume_dir(uid, prepared.plugin, name);
    if prepared.memory {
        if !mounter.is_mount_point(&dir)? {
            sys::ensure_dir(&dir, EMPTY_DIR_MODE)?;
            tracing::debug!(pod_uid = uid, volume = name, "mounting tmpfs for {}", prepared.plugin);
            mounter.mount_tmpfs(&dir, None, TMPFS_ROOT_MODE)?;
        }
    } else if !sys::path_exists(&dir)? {
        // Created once: fsGroup ownership adds setgid to it later, which must stay.
        sys::ensure_dir(&dir, EMPTY_DIR_MODE)?;
    }
    let writer = AtomicWriter::new(&dir)?;
    let set_perms = |_: &Path| match fs_group {
        // The whole volume, not only the new directory: the first write also creates the
        // user-visible links outside it (upstream's reasoning).
        Some(gid) => set_volume_ownership(&dir, gid, true),
        None => Ok(()),
    };
    let outcome = writer.write(&prepared.payload, Some(&set_perms))?;
    if let WriteOutcome::Written { ts_dir } = &outcome {
        tracing::info!(pod_uid = uid, volume = name, dir = %ts_dir.display(), "updated {} volume", prepared.plugin);
    }
    Ok(outcome)
}
