//! File helpers whose errors carry the path.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result, WrappedIoError};
use crate::mount::Mounter;

/// Create `path` (and missing parents) with `mode`, then make sure the leaf directory has
/// exactly `mode` — mkdir's mode is filtered by the umask, so it is re-applied with chmod, as
/// upstream's emptyDir `setupDir` does. Parents that had to be created keep `mode & !umask`.
pub fn ensure_dir(path: &Path, mode: u32) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|err| WrappedIoError::CreateDir { err, path: path.to_path_buf() })?;
    let md = fs::metadata(path).map_err(|err| WrappedIoError::Stat { err, path: path.to_path_buf() })?;
    if !md.is_dir() {
        return Err(Error::NotADirectory { path: path.to_path_buf() });
    }
    if md.permissions().mode() & 0o7777 != mode & 0o7777 {
        fs::set_permissions(path, Permissions::from_mode(mode))
            .map_err(|err| WrappedIoError::Chmod { err, path: path.to_path_buf() })?;
    }
    Ok(())
}

/// Write `content` to `path` in place (truncating, so an existing bind mount of the file sees
/// the new content), then set `mode` exactly.
pub fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|err| WrappedIoError::Open { err, path: path.to_path_buf() })?;
    f.write_all(content).map_err(|err| WrappedIoError::Write { err, path: path.to_path_buf() })?;
    fs::set_permissions(path, Permissions::from_mode(mode))
        .map_err(|err| WrappedIoError::Chmod { err, path: path.to_path_buf() }.into())
}

/// Read a whole file as UTF-8.
pub fn read_to_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|err| WrappedIoError::Read { err, path: path.to_path_buf() }.into())
}

/// Whether `path` exists, following symlinks (a dangling symlink does not exist).
pub fn path_exists(path: &Path) -> Result<bool> {
    match fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(WrappedIoError::Stat { err, path: path.to_path_buf() }.into()),
    }
}

/// The kinds of file a hostPath volume's `type` can require. `Display` gives upstream's
/// `HostPathType` spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Directory,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Directory => "Directory",
            Self::File => "File",
            Self::Socket => "Socket",
            Self::CharDevice => "CharDevice",
            Self::BlockDevice => "BlockDevice",
        })
    }
}

/// The type of `path`, following symlinks (like upstream's `os.Stat`-based `GetFileType`).
/// FIFOs and other kinds are [`Error::UnknownFileType`].
pub fn file_type(path: &Path) -> Result<FileType> {
    let md = fs::metadata(path).map_err(|err| WrappedIoError::Stat { err, path: path.to_path_buf() })?;
    let ft = md.file_type();
    if ft.is_dir() {
        Ok(FileType::Directory)
    } else if ft.is_file() {
        Ok(FileType::File)
    } else if ft.is_socket() {
        Ok(FileType::Socket)
    } else if ft.is_char_device() {
        Ok(FileType::CharDevice)
    } else if ft.is_block_device() {
        Ok(FileType::BlockDevice)
    } else {
        Err(Error::UnknownFileType { path: path.to_path_buf() })
    }
}

/// Remove `path` recursively without ever crossing into a mount.
///
/// Before deleting anything it asks `mounter` for mounts at or below `path` and refuses
/// ([`Error::StillMounted`], naming the mount) if there are any — so a forgotten bind or
/// tmpfs mount (e.g. a hostPath target) never has its contents deleted. While walking it also
/// refuses ([`Error::CrossDevice`]) to touch any entry on a different filesystem than `path`,
/// which catches mounts made after the check or missed by the mount table. Symlinks are
/// removed, never followed. A missing `path` is success.
///
/// Limits: a same-filesystem bind mount created between the check and the walk is not
/// detected (it has the same device number); the kernel then refuses to remove the mount
/// point itself (`EBUSY`), but files inside it may already be gone.
pub fn remove_dir_all_no_cross_mounts(path: &Path, mounter: &dyn Mounter) -> Result<()> {
    let md = match fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => {
            return Err(WrappedIoError::Stat { err, path: path.to_path_buf() }.into());
        }
    };
    if !md.is_dir() {
        return remove_file(path);
    }
    if let Some(mounted) = mounter.mounts_under(path)?.into_iter().next() {
        return Err(Error::StillMounted { path: mounted });
    }
    remove_tree(path, path, md.dev())?;
    remove_dir(path)
}

fn remove_tree(dir: &Path, root: &Path, dev: u64) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|err| WrappedIoError::ReadDir { err, path: dir.to_path_buf() })?;
    for entry in entries {
        let entry = entry.map_err(|err| WrappedIoError::ReadDir { err, path: dir.to_path_buf() })?;
        let p = entry.path();
        let md = match fs::symlink_metadata(&p) {
            Ok(md) => md,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(WrappedIoError::Stat { err, path: p }.into()),
        };
        if md.dev() != dev {
            return Err(Error::CrossDevice { path: p, root: root.to_path_buf() });
        }
        if md.is_dir() {
            remove_tree(&p, root, dev)?;
            remove_dir(&p)?;
        } else {
            remove_file(&p)?;
        }
    }
    Ok(())
}

fn remove_dir(path: &Path) -> Result<()> {
    match fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) if err.raw_os_error() == Some(nix::libc::EBUSY) => {
            Err(Error::StillMounted { path: path.to_path_buf() })
        }
        Err(err) => Err(WrappedIoError::RemoveDir { err, path: path.to_path_buf() }.into()),
    }
}

fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) if err.raw_os_error() == Some(nix::libc::EBUSY) => {
            Err(Error::StillMounted { path: path.to_path_buf() })
        }
        Err(err) => Err(WrappedIoError::RemoveFile { err, path: path.to_path_buf() }.into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::mount::FakeMounter;

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn ensure_dir_sets_exact_mode_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b");
        ensure_dir(&p, 0o777).unwrap();
        assert_eq!(mode_of(&p), 0o777);
        fs::set_permissions(&p, Permissions::from_mode(0o700)).unwrap();
        ensure_dir(&p, 0o777).unwrap();
        assert_eq!(mode_of(&p), 0o777);
    }

    #[test]
    fn ensure_dir_rejects_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"x").unwrap();
        let err = ensure_dir(&p, 0o755).unwrap_err();
        assert!(err.to_string().contains(&p.display().to_string()), "{err}");
    }

    #[test]
    fn write_file_sets_mode_and_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts");
        write_file(&p, b"long content", 0o644).unwrap();
        write_file(&p, b"short", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"short");
        assert_eq!(mode_of(&p), 0o644);
        assert_eq!(read_to_string(&p).unwrap(), "short");
        let err = read_to_string(&dir.path().join("nope")).unwrap_err();
        assert!(err.is_not_found());
        assert!(err.to_string().contains("nope"));
    }

    #[test]
    fn file_types() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(file_type(dir.path()).unwrap(), FileType::Directory);
        let f = dir.path().join("f");
        fs::write(&f, b"").unwrap();
        assert_eq!(file_type(&f).unwrap(), FileType::File);
        let sock = dir.path().join("s");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(file_type(&sock).unwrap(), FileType::Socket);
        assert_eq!(file_type(Path::new("/dev/null")).unwrap(), FileType::CharDevice);
        assert!(file_type(&dir.path().join("missing")).unwrap_err().is_not_found());
        assert!(path_exists(&f).unwrap());
        assert!(!path_exists(&dir.path().join("missing")).unwrap());
        assert_eq!(FileType::CharDevice.to_string(), "CharDevice");
    }

    #[test]
    fn removes_tree_without_following_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"x").unwrap();
        let pod = dir.path().join("pod");
        fs::create_dir_all(pod.join("a/b")).unwrap();
        fs::write(pod.join("a/b/f"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, pod.join("a/link")).unwrap();
        remove_dir_all_no_cross_mounts(&pod, &FakeMounter::new()).unwrap();
        assert!(!pod.exists());
        assert!(outside.join("keep").exists());
        // Missing is fine.
        remove_dir_all_no_cross_mounts(&pod, &FakeMounter::new()).unwrap();
    }

    #[test]
    fn refuses_to_remove_mounted_tree() {
        let dir = tempfile::tempdir().unwrap();
        let pod = dir.path().join("pod");
        let vol = pod.join("volumes/x");
        fs::create_dir_all(&vol).unwrap();
        fs::write(vol.join("data"), b"precious").unwrap();
        let m = FakeMounter::new();
        m.add_mount(&vol);
        let err = remove_dir_all_no_cross_mounts(&pod, &m).unwrap_err();
        assert!(matches!(&err, Error::StillMounted { path } if *path == vol), "{err}");
        assert!(vol.join("data").exists());
        // The mount point itself is refused too.
        assert!(remove_dir_all_no_cross_mounts(&vol, &m).is_err());
    }
}
