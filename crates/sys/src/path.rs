//! Resolving user-supplied relative paths (volume `subPath`s) under a root without escaping it.
//!
//! # TOCTOU
//! These functions check the filesystem and then return a path; nothing stops a process that
//! can write inside `root` (e.g. a container sharing the volume) from swapping a checked
//! directory for a symlink before the path is used. Upstream closes that window by opening the
//! resolved path component by component with `O_NOFOLLOW` and bind-mounting `/proc/self/fd/N`
//! into `volume-subpaths/`; we do not (yet). The returned path is fully resolved (no symlinks
//! in the existing part), which narrows the window to the components themselves.

use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result, WrappedIoError};

/// Check that `relative` is a relative path without `..` components (upstream's
/// `ValidatePathNoBacksteps` plus the "must not be absolute" check).
pub fn validate_relative(relative: &Path) -> Result<()> {
    for c in relative.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(Error::Backstep { path: relative.to_path_buf() });
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(Error::AbsolutePath { path: relative.to_path_buf() });
            }
        }
    }
    Ok(())
}

fn canonicalize(path: &Path) -> Result<PathBuf> {
    fs::canonicalize(path).map_err(|err| WrappedIoError::Canonicalize { err, path: path.to_path_buf() }.into())
}

/// Resolve `relative` under `root` (which must exist). Rejects absolute paths and `..`
/// components, then walks the existing components: a symlink is resolved and must stay
/// inside `root` (else [`Error::Escapes`]); a dangling symlink is an error. Components that do
/// not exist yet are appended as they are. Returns the resolved path, starting with the
/// canonical `root`. See the module docs for TOCTOU limits.
pub fn safe_join(root: &Path, relative: &Path) -> Result<PathBuf> {
    walk(root, relative, None)
}

/// Like [`safe_join`], but creates the missing components as directories with exactly `mode`
/// (never through a symlink), as upstream's `SafeMakeDir` does for a missing subPath. An
/// existing non-directory component is [`Error::NotADirectory`].
pub fn safe_mkdir_all(root: &Path, relative: &Path, mode: u32) -> Result<PathBuf> {
    walk(root, relative, Some(mode))
}

fn walk(root: &Path, relative: &Path, create: Option<u32>) -> Result<PathBuf> {
    validate_relative(relative)?;
    let root = canonicalize(root)?;
    let mut cur = root.clone();
    let mut missing = false;
    for c in relative.components() {
        let Component::Normal(name) = c else {
            continue; // `.`; everything else was rejected above
        };
        cur.push(name);
        if missing && create.is_none() {
            continue;
        }
        let md = match fs::symlink_metadata(&cur) {
            Ok(md) => md,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let Some(mode) = create else {
                    missing = true;
                    continue;
                };
                mkdir(&cur, mode)?;
                continue;
            }
            Err(err) => return Err(WrappedIoError::Stat { err, path: cur }.into()),
        };
        if md.file_type().is_symlink() {
            let resolved = canonicalize(&cur)?;
            if !resolved.starts_with(&root) {
                return Err(Error::Escapes { path: cur, root: root.clone() });
            }
            cur = resolved;
        }
        if create.is_some() && !fs::metadata(&cur).is_ok_and(|m| m.is_dir()) {
            return Err(Error::NotADirectory { path: cur });
        }
    }
    Ok(cur)
}

/// Create one directory with exactly `mode`; if it appeared concurrently it must be a real
/// directory (not a symlink).
fn mkdir(path: &Path, mode: u32) -> Result<()> {
    match DirBuilder::new().mode(mode).create(path) {
        Ok(()) => fs::set_permissions(path, Permissions::from_mode(mode))
            .map_err(|err| WrappedIoError::Chmod { err, path: path.to_path_buf() }.into()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => match fs::symlink_metadata(path) {
            Ok(md) if md.is_dir() => Ok(()),
            _ => Err(Error::NotADirectory { path: path.to_path_buf() }),
        },
        Err(err) => Err(WrappedIoError::CreateDir { err, path: path.to_path_buf() }.into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap().join("vol");
        fs::create_dir(&root).unwrap();
        (dir, root)
    }

    #[test]
    fn rejects_absolute_and_backsteps() {
        let (_d, root) = root();
        assert!(matches!(safe_join(&root, Path::new("/etc")), Err(Error::AbsolutePath { .. })));
        assert!(matches!(safe_join(&root, Path::new("a/../../x")), Err(Error::Backstep { .. })));
        assert!(matches!(safe_join(&root, Path::new("..")), Err(Error::Backstep { .. })));
        // ".." embedded in a name is fine.
        assert!(safe_join(&root, Path::new("a..b")).is_ok());
    }

    #[test]
    fn joins_existing_and_missing() {
        let (_d, root) = root();
        fs::create_dir_all(root.join("a/b")).unwrap();
        assert_eq!(safe_join(&root, Path::new("a/./b")).unwrap(), root.join("a/b"));
        assert_eq!(safe_join(&root, Path::new("a/x/y")).unwrap(), root.join("a/x/y"));
        assert_eq!(safe_join(&root, Path::new("")).unwrap(), root);
    }

    #[test]
    fn symlink_inside_root_is_resolved() {
        let (_d, root) = root();
        fs::create_dir_all(root.join("real/dir")).unwrap();
        symlink("real", root.join("link")).unwrap();
        assert_eq!(safe_join(&root, Path::new("link/dir")).unwrap(), root.join("real/dir"));
    }

    #[test]
    fn symlink_escape_is_refused() {
        let (d, root) = root();
        let outside = d.path().join("secret");
        fs::create_dir(&outside).unwrap();
        symlink(&outside, root.join("evil")).unwrap();
        symlink("../secret", root.join("evil_rel")).unwrap();
        symlink("/etc", root.join("etc")).unwrap();
        for p in ["evil", "evil/x", "evil_rel/x", "etc/passwd"] {
            let err = safe_join(&root, Path::new(p)).unwrap_err();
            assert!(matches!(err, Error::Escapes { .. }), "{p}: {err}");
            assert!(err.to_string().contains("not within volume path"));
        }
        let err = safe_mkdir_all(&root, Path::new("evil/new"), 0o755).unwrap_err();
        assert!(matches!(err, Error::Escapes { .. }));
        assert!(!outside.join("new").exists());
    }

    #[test]
    fn dangling_symlink_is_an_error() {
        let (_d, root) = root();
        symlink("/nonexistent-target-xyz", root.join("dangling")).unwrap();
        assert!(safe_join(&root, Path::new("dangling")).is_err());
        assert!(safe_mkdir_all(&root, Path::new("dangling/x"), 0o755).is_err());
    }

    #[test]
    fn mkdir_all_creates_with_mode() {
        let (_d, root) = root();
        let p = safe_mkdir_all(&root, Path::new("a/b/c"), 0o777).unwrap();
        assert_eq!(p, root.join("a/b/c"));
        for sub in ["a", "a/b", "a/b/c"] {
            let mode = fs::metadata(root.join(sub)).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o777, "{sub}");
        }
        // Idempotent.
        safe_mkdir_all(&root, Path::new("a/b/c"), 0o777).unwrap();
        fs::write(root.join("file"), b"").unwrap();
        assert!(matches!(safe_mkdir_all(&root, Path::new("file/x"), 0o777), Err(Error::NotADirectory { .. })));
    }
}
