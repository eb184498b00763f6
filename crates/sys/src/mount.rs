//! Mounting: the [`Mounter`] trait, the real implementation over `mount(2)`/`umount2(2)`, a
//! `/proc/self/mountinfo` parser and (for tests) a [`FakeMounter`].

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use crate::error::{Error, Result, WrappedIoError};

/// Where the kernel lists this process's mounts.
pub const MOUNTINFO_PATH: &str = "/proc/self/mountinfo";

/// Host mount operations the kubelet needs for pod volumes.
pub trait Mounter: Send + Sync + std::fmt::Debug {
    /// Mount a fresh tmpfs at `target` (an existing directory). `size_bytes` of `None` leaves
    /// the kernel default (half of RAM); `mode` is the mode of the tmpfs root.
    fn mount_tmpfs(&self, target: &Path, size_bytes: Option<u64>, mode: u32) -> Result<()>;

    /// Unmount `target`; falls back to a lazy detach when the mount is busy.
    fn unmount(&self, target: &Path) -> Result<()>;

    /// Whether `path` is itself a mount point. A path that does not exist is not one.
    fn is_mount_point(&self, path: &Path) -> Result<bool>;

    /// Every mount point at or below `prefix`, deepest first (so they can be unmounted in
    /// order). A path mounted over several times is listed once per mount, topmost first.
    fn mounts_under(&self, prefix: &Path) -> Result<Vec<PathBuf>>;
}

/// One line of `/proc/<pid>/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub id: u32,
    pub parent_id: u32,
    /// Root of the mount within its filesystem (for bind mounts, the bound subtree).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
}

/// A malformed `mountinfo` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct MountInfoError {
    pub line: usize,
    pub reason: String,
}

fn bad(line: usize, reason: impl Into<String>) -> MountInfoError {
    MountInfoError { line, reason: reason.into() }
}

/// Parse the contents of a `mountinfo` file (see proc(5)). Fields are space separated, with
/// spaces, tabs, newlines and backslashes in paths escaped as `\ooo` octal.
pub fn parse_mountinfo(content: &str) -> std::result::Result<Vec<MountInfo>, MountInfoError> {
    let mut out = Vec::new();
    for (idx, line) in content.lines().enumerate() {
        let lineno = idx + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let sep = fields.iter().position(|f| *f == "-").ok_or_else(|| bad(lineno, "missing \"-\" separator"))?;
        if sep < 6 {
            return Err(bad(lineno, format!("expected at least 6 fields before \"-\", got {sep}")));
        }
        let (Some(id), Some(parent), Some(root), Some(mount_point), Some(fs_type)) =
            (fields.first(), fields.get(1), fields.get(3), fields.get(4), fields.get(sep + 1))
        else {
            return Err(bad(lineno, "too few fields"));
        };
        let id = id.parse().map_err(|_| bad(lineno, format!("invalid mount id {id:?}")))?;
        let parent_id = parent.parse().map_err(|_| bad(lineno, format!("invalid parent id {parent:?}")))?;
        out.push(MountInfo {
            id,
            parent_id,
            root: unescape(root),
            mount_point: unescape(mount_point),
            fs_type: (*fs_type).to_string(),
            source: fields.get(sep + 2).map(|s| unescape(s).to_string_lossy().into_owned()).unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Undo the kernel's `\ooo` octal escaping of a mountinfo path field.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes.get(i).copied().unwrap_or_default();
        if b == b'\\'
            && let Some(oct) = bytes.get(i + 1..i + 4)
            && oct.iter().all(|c| (b'0'..=b'7').contains(c))
            && let Ok(v) = u8::try_from(oct.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0')))
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b);
        i += 1;
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Sort mount points deepest first, keeping the given order among equal depths.
fn deepest_first(mut mounts: Vec<PathBuf>) -> Vec<PathBuf> {
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    mounts
}

/// Canonicalize `path`; `Ok(None)` when it does not exist.
fn canonical_if_exists(path: &Path) -> Result<Option<PathBuf>> {
    match std::fs::canonicalize(path) {
        Ok(p) => Ok(Some(p)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(WrappedIoError::Canonicalize { err, path: path.to_path_buf() }.into()),
    }
}

/// The host's mount table and `mount(2)`.
#[derive(Debug, Clone)]
pub struct RealMounter {
    mountinfo: PathBuf,
}

impl Default for RealMounter {
    fn default() -> Self {
        Self::new()
    }
}

impl RealMounter {
    pub fn new() -> Self {
        Self { mountinfo: PathBuf::from(MOUNTINFO_PATH) }
    }

    /// The current mount table.
    pub fn mount_table(&self) -> Result<Vec<MountInfo>> {
        let content = std::fs::read_to_string(&self.mountinfo)
            .map_err(|err| WrappedIoError::Read { err, path: self.mountinfo.clone() })?;
        parse_mountinfo(&content).map_err(|source| Error::MountInfo { path: self.mountinfo.clone(), source })
    }
}

/// tmpfs mount data as upstream would pass it (`size=<bytes>`), plus the root mode.
fn tmpfs_options(size_bytes: Option<u64>, mode: u32) -> String {
    let mut opts = format!("mode={mode:o}");
    if let Some(size) = size_bytes.filter(|s| *s > 0) {
        opts.push_str(&format!(",size={size}"));
    }
    opts
}

impl Mounter for RealMounter {
    fn mount_tmpfs(&self, target: &Path, size_bytes: Option<u64>, mode: u32) -> Result<()> {
        let options = tmpfs_options(size_bytes, mode);
        tracing::debug!(target = %target.display(), %options, "mounting tmpfs");
        nix::mount::mount(Some("tmpfs"), target, Some("tmpfs"), MsFlags::empty(), Some(options.as_str()))
            .map_err(|source| Error::Mount { path: target.to_path_buf(), options, source })
    }

    fn unmount(&self, target: &Path) -> Result<()> {
        match nix::mount::umount2(target, MntFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::EBUSY) => {
                tracing::warn!(target = %target.display(), "mount busy, detaching lazily");
                nix::mount::umount2(target, MntFlags::MNT_DETACH)
                    .map_err(|source| Error::Unmount { path: target.to_path_buf(), source })
            }
            Err(source) => Err(Error::Unmount { path: target.to_path_buf(), source }),
        }
    }

    fn is_mount_point(&self, path: &Path) -> Result<bool> {
        let Some(path) = canonical_if_exists(path)? else {
            return Ok(false);
        };
        Ok(self.mount_table()?.iter().any(|m| m.mount_point == path))
    }

    fn mounts_under(&self, prefix: &Path) -> Result<Vec<PathBuf>> {
        let Some(prefix) = canonical_if_exists(prefix)? else {
            return Ok(Vec::new());
        };
        let mounts: Vec<PathBuf> =
            self.mount_table()?.into_iter().rev().map(|m| m.mount_point).filter(|p| p.starts_with(&prefix)).collect();
        Ok(deepest_first(mounts))
    }
}

#[cfg(any(test, feature = "test-util"))]
mod fake {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, MutexGuard, PoisonError};

    use nix::errno::Errno;

    use super::{Mounter, deepest_first};
    use crate::error::{Error, Result};

    /// A call made on a [`FakeMounter`].
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum MountCall {
        MountTmpfs { target: PathBuf, size_bytes: Option<u64>, mode: u32 },
        Unmount { target: PathBuf },
    }

    #[derive(Debug, Default)]
    struct State {
        calls: Vec<MountCall>,
        mounted: BTreeSet<PathBuf>,
        fail_unmount: BTreeSet<PathBuf>,
    }

    /// Records calls and keeps a set of "mounted" paths; touches nothing on disk. Paths are
    /// compared literally (no canonicalization).
    #[derive(Debug, Default)]
    pub struct FakeMounter {
        state: Mutex<State>,
    }

    impl FakeMounter {
        pub fn new() -> Self {
            Self::default()
        }

        fn lock(&self) -> MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(PoisonError::into_inner)
        }

        /// Every call so far, in order.
        pub fn calls(&self) -> Vec<MountCall> {
            self.lock().calls.clone()
        }

        /// The currently mounted paths, sorted.
        pub fn mounted(&self) -> Vec<PathBuf> {
            self.lock().mounted.iter().cloned().collect()
        }

        /// Pretend something (e.g. a bind mount) is mounted at `path`, without recording a call.
        pub fn add_mount(&self, path: impl Into<PathBuf>) {
            self.lock().mounted.insert(path.into());
        }

        /// Make future unmounts of `path` fail with `EBUSY`.
        pub fn fail_unmount(&self, path: impl Into<PathBuf>) {
            self.lock().fail_unmount.insert(path.into());
        }
    }

    impl Mounter for FakeMounter {
        fn mount_tmpfs(&self, target: &Path, size_bytes: Option<u64>, mode: u32) -> Result<()> {
            let mut st = self.lock();
            st.calls.push(MountCall::MountTmpfs { target: target.to_path_buf(), size_bytes, mode });
            if !target.is_dir() {
                return Err(Error::Mount { path: target.to_path_buf(), options: String::new(), source: Errno::ENOENT });
            }
            st.mounted.insert(target.to_path_buf());
            Ok(())
        }

        fn unmount(&self, target: &Path) -> Result<()> {
            let mut st = self.lock();
            st.calls.push(MountCall::Unmount { target: target.to_path_buf() });
            if st.fail_unmount.contains(target) {
                return Err(Error::Unmount { path: target.to_path_buf(), source: Errno::EBUSY });
            }
            if !st.mounted.remove(target) {
                return Err(Error::Unmount { path: target.to_path_buf(), source: Errno::EINVAL });
            }
            Ok(())
        }

        fn is_mount_point(&self, path: &Path) -> Result<bool> {
            Ok(self.lock().mounted.contains(path))
        }

        fn mounts_under(&self, prefix: &Path) -> Result<Vec<PathBuf>> {
            let mounts = self.lock().mounted.iter().filter(|p| p.starts_with(prefix)).cloned().collect();
            Ok(deepest_first(mounts))
        }
    }
}

#[cfg(any(test, feature = "test-util"))]
pub use fake::{FakeMounter, MountCall};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const SAMPLE: &str = "\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
36 25 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
40 25 0:45 / /var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/cache rw - tmpfs tmpfs rw,size=1024k
41 25 0:46 / /with\\040space\\011tab\\134slash rw - tmpfs none rw
";

    #[test]
    fn parses_mountinfo() {
        let mounts = parse_mountinfo(SAMPLE).unwrap();
        assert_eq!(mounts.len(), 5);
        assert_eq!(mounts[2].id, 36);
        assert_eq!(mounts[2].parent_id, 25);
        assert_eq!(mounts[2].root, PathBuf::from("/mnt1"));
        assert_eq!(mounts[2].mount_point, PathBuf::from("/mnt2"));
        assert_eq!(mounts[2].fs_type, "ext3");
        assert_eq!(mounts[2].source, "/dev/root");
        assert_eq!(mounts[3].fs_type, "tmpfs");
        assert_eq!(mounts[4].mount_point, PathBuf::from("/with space\ttab\\slash"));
    }

    #[test]
    fn parses_mountinfo_without_optional_fields() {
        let m = parse_mountinfo("1 0 0:1 / / rw - rootfs rootfs rw\n").unwrap();
        assert_eq!(m[0].mount_point, PathBuf::from("/"));
        assert_eq!(m[0].fs_type, "rootfs");
    }

    #[test]
    fn rejects_malformed_mountinfo() {
        assert_eq!(parse_mountinfo("1 0 0:1 / /\n").unwrap_err().line, 1);
        assert!(parse_mountinfo("x 0 0:1 / / rw - tmpfs t rw\n").is_err());
        let err = parse_mountinfo("\n1 0 0:1 / / rw - t t rw\nbad\n").unwrap_err();
        assert_eq!(err.line, 3);
    }

    #[test]
    fn unescape_leaves_non_octal_alone() {
        assert_eq!(unescape("a\\x"), PathBuf::from("a\\x"));
        assert_eq!(unescape("a\\0"), PathBuf::from("a\\0"));
        assert_eq!(unescape("\\101"), PathBuf::from("A"));
    }

    #[test]
    fn tmpfs_options_format() {
        assert_eq!(tmpfs_options(None, 0o1777), "mode=1777");
        assert_eq!(tmpfs_options(Some(0), 0o777), "mode=777");
        assert_eq!(tmpfs_options(Some(1024), 0o777), "mode=777,size=1024");
    }

    #[test]
    fn deepest_first_is_stable() {
        let v = deepest_first(vec![
            PathBuf::from("/a"),
            PathBuf::from("/a/b/c"),
            PathBuf::from("/a/b"),
            PathBuf::from("/x/y"),
        ]);
        assert_eq!(
            v,
            vec![PathBuf::from("/a/b/c"), PathBuf::from("/a/b"), PathBuf::from("/x/y"), PathBuf::from("/a"),]
        );
    }

    #[test]
    fn fake_mounter_tracks_state() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::create_dir(&a).unwrap();
        let f = FakeMounter::new();
        f.mount_tmpfs(&a, Some(10), 0o1777).unwrap();
        assert!(f.is_mount_point(&a).unwrap());
        assert!(f.mount_tmpfs(&dir.path().join("missing"), None, 0o777).is_err());
        assert_eq!(f.mounts_under(dir.path()).unwrap(), vec![a.clone()]);
        f.unmount(&a).unwrap();
        assert!(!f.is_mount_point(&a).unwrap());
        assert!(f.unmount(&a).is_err());
        assert_eq!(f.calls().len(), 4);
    }

    #[test]
    fn real_mounter_reads_own_mount_table() {
        let m = RealMounter::new();
        // "/" is always a mount point; a fresh temp dir normally is not.
        assert!(m.is_mount_point(Path::new("/")).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert!(!m.is_mount_point(&sub).unwrap());
        assert!(!m.is_mount_point(&dir.path().join("missing")).unwrap());
        assert!(m.mounts_under(&sub).unwrap().is_empty());
    }

    #[test]
    fn real_tmpfs_mount_when_root() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        std::fs::create_dir(&target).unwrap();
        let m = RealMounter::new();
        if let Err(e) = m.mount_tmpfs(&target, Some(1 << 20), 0o1777) {
            // Root without CAP_SYS_ADMIN (e.g. an unprivileged container).
            eprintln!("skipping: {e}");
            return;
        }
        assert!(m.is_mount_point(&target).unwrap());
        let canon = std::fs::canonicalize(&target).unwrap();
        assert_eq!(m.mounts_under(dir.path()).unwrap(), vec![canon]);
        m.unmount(&target).unwrap();
        assert!(!m.is_mount_point(&target).unwrap());
    }
}
