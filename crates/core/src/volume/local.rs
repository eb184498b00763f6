//! The node-local kinds: `emptyDir` (`pkg/volume/emptydir`) and `hostPath`
//! (`pkg/volume/hostpath`, whose only setup is the `type` check).

use std::path::Path;

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, HostPathVolumeSource};
use sys::{FileType, Mounter};

use super::SetupError;
use crate::pod_dirs::{EMPTY_DIR_PLUGIN, PodDirs, validate_component};
use crate::quantity::parse_bytes;

/// emptyDir directories are world-writable (upstream `defaultPerm`).
pub(super) const EMPTY_DIR_MODE: u32 = 0o777;
/// A tmpfs mounted without a `mode` option gets 1777; upstream passes none.
pub(super) const TMPFS_ROOT_MODE: u32 = 0o1777;
/// hostPath `DirectoryOrCreate` / `FileOrCreate` modes (before the umask, as upstream).
const HOST_PATH_DIR_MODE: u32 = 0o755;
const HOST_PATH_FILE_MODE: u32 = 0o644;

pub(super) fn setup_empty_dir(
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
pub(super) fn setup_host_path(source: &HostPathVolumeSource) -> Result<(), SetupError> {
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
