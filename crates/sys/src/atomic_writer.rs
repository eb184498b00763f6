//! Upstream's `AtomicWriter` (`pkg/volume/util/atomic_writer.go`): the file layout of configMap,
//! secret, downwardAPI and projected volumes, updated so a reader never sees a mix of versions.
//!
//! ```text
//! <target>/..2024_05_01_12_00_00.123456789/   the payload, one timestamped directory per version
//! <target>/..data -> ..2024_05_01_12_00_00.123456789
//! <target>/<name> -> ..data/<name>            one symlink per top-level payload entry
//! ```
//!
//! A write lays the new payload out in a fresh timestamped directory, points a `..data_tmp`
//! symlink at it and renames that over `..data` (the atomic step), adds the missing user-visible
//! symlinks, removes the ones no longer in the payload and finally the old timestamped
//! directory. When the payload's contents equal what `..data` holds, nothing is written.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::WrappedIoError;

/// The symlink naming the current payload directory.
pub const DATA_DIR_NAME: &str = "..data";
/// The symlink renamed over [`DATA_DIR_NAME`].
pub const NEW_DATA_DIR_NAME: &str = "..data_tmp";

const MAX_FILE_NAME_LENGTH: usize = 255;
const MAX_PATH_LENGTH: usize = 4096;
/// Mode of a timestamped payload directory (upstream chmods it to 0755).
const TS_DIR_MODE: u32 = 0o755;

/// One file of a payload: its bytes, exact mode and, when set, its owner (upstream
/// `FileProjection`; the owner is used for projected service account tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
    pub fs_user: Option<u32>,
}

/// Relative path (may contain `/`) → file.
pub type Payload = BTreeMap<String, FileProjection>;

/// Why a write failed; every variant names the path concerned.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A payload path that must not be written (messages as upstream's `validatePath`).
    #[error("invalid path: {reason}")]
    InvalidPath { path: String, reason: String },

    #[error("target directory {path} does not exist or is not a directory")]
    TargetMissing { path: PathBuf },

    #[error(transparent)]
    Io(#[from] WrappedIoError),

    /// An operation [`WrappedIoError`] has no variant for (symlink, rename, chown, …).
    #[error("failed to {op} {path}: {err}")]
    Op {
        op: &'static str,
        path: PathBuf,
        #[source]
        err: io::Error,
    },
}

pub type Result<T, E = WriteError> = std::result::Result<T, E>;

/// Runs on a new payload directory before it becomes visible (upstream `setPerms`).
pub type SetPerms<'a> = &'a dyn Fn(&Path) -> Result<()>;

fn op_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WriteError + 'a {
    move |err| WriteError::Op { op, path: path.to_path_buf(), err }
}

/// What [`AtomicWriter::write`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The payload equals the current version: nothing was rewritten.
    Unchanged,
    /// A new version was written into this timestamped directory and swapped in.
    Written { ts_dir: PathBuf },
}

/// Writes payloads into one existing target directory.
#[derive(Debug, Clone)]
pub struct AtomicWriter {
    target: PathBuf,
}

impl AtomicWriter {
    /// A writer for `target`, which must exist.
    pub fn new(target: &Path) -> Result<Self> {
        match fs::metadata(target) {
            Ok(md) if md.is_dir() => Ok(Self { target: target.to_path_buf() }),
            Ok(_) => Err(WriteError::TargetMissing { path: target.to_path_buf() }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                Err(WriteError::TargetMissing { path: target.to_path_buf() })
            }
            Err(err) => Err(WrappedIoError::Stat { err, path: target.to_path_buf() }.into()),
        }
    }

    /// Make the target hold exactly `payload` (upstream `AtomicWriter.Write`). `set_perms` runs on
    /// the new timestamped directory after the payload is in it and before it becomes visible
    /// (upstream applies fsGroup ownership there). Paths are validated before anything is
    /// touched. Only top-level entries get user-visible symlinks; a nested path `a/b` is reached
    /// through `a -> ..data/a`.
    pub fn write(&self, payload: &Payload, set_perms: Option<SetPerms<'_>>) -> Result<WriteOutcome> {
        let payload = validate_payload(payload)?;
        let data_dir = self.target.join(DATA_DIR_NAME);
        let old_ts_name = match fs::read_link(&data_dir) {
            Ok(p) => Some(p),
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(err) => return Err(op_err("read link", &data_dir)(err)),
        };

        let mut to_remove = BTreeSet::new();
        let mut old_ts_dir = None;
        let mut should_write = true;
        if let Some(name) = old_ts_name {
            let old = self.target.join(name);
            to_remove = paths_to_remove(&payload, &old)?;
            if !should_write_payload(&payload, &old)? && to_remove.is_empty() {
                should_write = false;
            } else {
                old_ts_dir = Some(old);
            }
        }

        let mut outcome = WriteOutcome::Unchanged;
        if should_write {
            let ts_dir = self.new_timestamp_dir()?;
            if let Err(e) = write_payload_to_dir(&payload, &ts_dir).and_then(|()| match set_perms {
                Some(f) => f(&ts_dir),
                None => Ok(()),
            }) {
                remove_quietly(&ts_dir);
                return Err(e);
            }
            let ts_name = ts_dir.file_name().map(PathBuf::from).unwrap_or_default();
            let tmp_link = self.target.join(NEW_DATA_DIR_NAME);
            // A leftover from a write that died between symlink and rename.
            let _ = fs::remove_file(&tmp_link);
            if let Err(err) = std::os::unix::fs::symlink(&ts_name, &tmp_link) {
                remove_quietly(&ts_dir);
                return Err(op_err("create symlink", &tmp_link)(err));
            }
            if let Err(err) = fs::rename(&tmp_link, &data_dir) {
                let _ = fs::remove_file(&tmp_link);
                remove_quietly(&ts_dir);
                return Err(op_err("rename symlink over", &data_dir)(err));
            }
            tracing::debug!(target = %self.target.display(), ts_dir = %ts_dir.display(), "wrote new volume payload");
            outcome = WriteOutcome::Written { ts_dir };
        }

        // Even when nothing was written the user-visible links must exist (upstream #121472).
        self.create_user_visible_files(&payload)?;
        self.remove_user_visible_paths(&to_remove)?;
        if let Some(old) = old_ts_dir {
            fs::remove_dir_all(&old).map_err(|err| WrappedIoError::RemoveDir { err, path: old.clone() })?;
        }
        Ok(outcome)
    }

    /// `..<UTC timestamp>.<unique suffix>`, mode 0755 (upstream `newTimestampDir`).
    fn new_timestamp_dir(&self) -> Result<PathBuf> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let stamp = utc_stamp(now.as_secs());
        loop {
            let suffix = now.subsec_nanos().wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed));
            let dir = self.target.join(format!("..{stamp}.{suffix}"));
            match DirBuilder::new().mode(TS_DIR_MODE).create(&dir) {
                Ok(()) => {
                    fs::set_permissions(&dir, Permissions::from_mode(TS_DIR_MODE))
                        .map_err(|err| WrappedIoError::Chmod { err, path: dir.clone() })?;
                    return Ok(dir);
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(WrappedIoError::CreateDir { err, path: dir }.into()),
            }
        }
    }

    fn create_user_visible_files(&self, payload: &Payload) -> Result<()> {
        for path in payload.keys() {
            let top = path.split('/').next().unwrap_or(path);
            let visible = self.target.join(top);
            match fs::symlink_metadata(&visible) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    std::os::unix::fs::symlink(Path::new(DATA_DIR_NAME).join(top), &visible)
                        .map_err(op_err("create symlink", &visible))?;
                }
                Err(err) => return Err(WrappedIoError::Stat { err, path: visible }.into()),
            }
        }
        Ok(())
    }

    /// Removes the top-level entries among `paths`; deeper ones go with the old directory.
    fn remove_user_visible_paths(&self, paths: &BTreeSet<String>) -> Result<()> {
        let mut last = None;
        for p in paths.iter().filter(|p| !p.contains('/')) {
            let visible = self.target.join(p);
            if let Err(err) = fs::remove_file(&visible) {
                tracing::warn!(path = %visible.display(), "pruning old user-visible path: {err}");
                last = Some(WrappedIoError::RemoveFile { err, path: visible });
            }
        }
        last.map_or(Ok(()), |e| Err(e.into()))
    }
}

/// Upstream `validatePath` on every key, then `filepath.Clean` (which, `..` being refused,
/// only drops empty and `.` components).
fn validate_payload(payload: &Payload) -> Result<Payload> {
    let mut clean = Payload::new();
    for (path, file) in payload {
        validate_path(path)?;
        let cleaned: Vec<&str> = path.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
        if cleaned.is_empty() {
            return Err(invalid(path, format!("must not be empty: {path:?}")));
        }
        clean.insert(cleaned.join("/"), file.clone());
    }
    Ok(clean)
}

fn invalid(path: &str, reason: String) -> WriteError {
    WriteError::InvalidPath { path: path.to_string(), reason }
}

fn validate_path(path: &str) -> Result<()> {
    if path.is_empty() {
        return Err(invalid(path, format!("must not be empty: {path:?}")));
    }
    if path.starts_with('/') {
        return Err(invalid(path, format!("must be relative path: {path}")));
    }
    if path.len() > MAX_PATH_LENGTH {
        return Err(invalid(path, format!("must be less than or equal to {MAX_PATH_LENGTH} characters")));
    }
    for item in path.split('/') {
        if item == ".." {
            return Err(invalid(path, format!("must not contain '..': {path}")));
        }
        if item.len() > MAX_FILE_NAME_LENGTH {
            return Err(invalid(
                path,
                format!("filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} characters"),
            ));
        }
    }
    let first = path.split('/').next().unwrap_or_default();
    if first.starts_with("..") && first.len() > 2 {
        return Err(invalid(path, format!("must not start with '..': {path}")));
    }
    Ok(())
}

/// Every path under the old payload directory that the new payload (with its parents) lacks.
fn paths_to_remove(payload: &Payload, old_ts_dir: &Path) -> Result<BTreeSet<String>> {
    let mut current = BTreeSet::new();
    match walk(old_ts_dir, "", &mut current) {
        Ok(()) => {}
        Err(WriteError::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(e),
    }
    let mut wanted = BTreeSet::new();
    for path in payload.keys() {
        let mut sub = path.as_str();
        loop {
            wanted.insert(sub.to_string());
            match sub.rfind('/') {
                Some(i) => sub = &sub[..i],
                None => break,
            }
        }
    }
    Ok(current.difference(&wanted).cloned().collect())
}

fn walk(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|err| WrappedIoError::ReadDir { err, path: dir.to_path_buf() })?;
    for entry in entries {
        let entry = entry.map_err(|err| WrappedIoError::ReadDir { err, path: dir.to_path_buf() })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        out.insert(rel.clone());
        if is_dir {
            walk(&entry.path(), &rel, out)?;
        }
    }
    Ok(())
}

/// Whether any payload file is missing from `old_ts_dir` or differs in content (modes and
/// owners are not compared, as upstream).
fn should_write_payload(payload: &Payload, old_ts_dir: &Path) -> Result<bool> {
    for (path, file) in payload {
        let p = old_ts_dir.join(path);
        match fs::symlink_metadata(&p) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(true),
            _ => {}
        }
        let on_disk = fs::read(&p).map_err(|err| WrappedIoError::Read { err, path: p.clone() })?;
        if on_disk != file.data {
            return Ok(true);
        }
    }
    Ok(false)
}

fn write_payload_to_dir(payload: &Payload, dir: &Path) -> Result<()> {
    for (path, file) in payload {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o777)
                .create(parent)
                .map_err(|err| WrappedIoError::CreateDir { err, path: parent.to_path_buf() })?;
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(file.mode)
            .open(&full)
            .map_err(|err| WrappedIoError::Create { err, path: full.clone() })?;
        f.write_all(&file.data).map_err(|err| WrappedIoError::Write { err, path: full.clone() })?;
        // The umask filtered the create mode; the payload's mode is exact.
        fs::set_permissions(&full, Permissions::from_mode(file.mode))
            .map_err(|err| WrappedIoError::Chmod { err, path: full.clone() })?;
        if let Some(uid) = file.fs_user {
            std::os::unix::fs::chown(&full, Some(uid), None).map_err(op_err("change owner of", &full))?;
        }
    }
    Ok(())
}

fn remove_quietly(dir: &Path) {
    if let Err(err) = fs::remove_dir_all(dir) {
        tracing::warn!(path = %dir.display(), "removing unused payload directory: {err}");
    }
}

/// Upstream `SetVolumeOwnership` without a change policy: every entry under `dir` (itself
/// included, symlinks not followed) gets group `fs_group`; files and directories (not symlinks)
/// gain group/owner read (and write unless `read_only`), directories also search and setgid.
pub fn set_volume_ownership(dir: &Path, fs_group: u32, read_only: bool) -> Result<()> {
    let mask = if read_only { 0o440 } else { 0o660 };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = fs::symlink_metadata(&p).map_err(|err| WrappedIoError::Stat { err, path: p.clone() })?;
        std::os::unix::fs::lchown(&p, None, Some(fs_group)).map_err(op_err("change group of", &p))?;
        if md.file_type().is_symlink() {
            continue;
        }
        let mut mode = md.permissions().mode() & 0o7777 | mask;
        if md.is_dir() {
            mode |= 0o2110;
            let entries = fs::read_dir(&p).map_err(|err| WrappedIoError::ReadDir { err, path: p.clone() })?;
            for e in entries {
                stack.push(e.map_err(|err| WrappedIoError::ReadDir { err, path: p.clone() })?.path());
            }
        }
        fs::set_permissions(&p, Permissions::from_mode(mode))
            .map_err(|err| WrappedIoError::Chmod { err, path: p.clone() })?;
    }
    Ok(())
}

/// `YYYY_MM_DD_HH_MM_SS` in UTC for Unix seconds (Go layout `2006_01_02_15_04_05`).
fn utc_stamp(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}_{month:02}_{day:02}_{:02}_{:02}_{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection { data: data.as_bytes().to_vec(), mode, fs_user: None }
    }

    fn payload(entries: &[(&str, &str)]) -> Payload {
        entries.iter().map(|(k, v)| ((*k).to_string(), file(v, 0o644))).collect()
    }

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    /// The timestamped directories under `dir`.
    fn ts_dirs(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != DATA_DIR_NAME)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn first_write_lays_out_data_dir_and_links() {
        let tmp = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(tmp.path()).unwrap();
        let mut p = payload(&[("a", "1"), ("dir/b", "2")]);
        p.insert("secret".into(), file("s", 0o400));
        let WriteOutcome::Written { ts_dir } = w.write(&p, None).unwrap() else { panic!("not written") };

        let ts_name = ts_dir.file_name().unwrap().to_str().unwrap().to_string();
        assert!(ts_name.starts_with("..20") && ts_name.len() > "..2024_01_01_00_00_00.".len(), "{ts_name}");
        assert_eq!(fs::read_link(tmp.path().join("..data")).unwrap(), PathBuf::from(&ts_name));
        assert_eq!(fs::read_link(tmp.path().join("a")).unwrap(), PathBuf::from("..data/a"));
        // Only the top-level component is linked.
        assert_eq!(fs::read_link(tmp.path().join("dir")).unwrap(), PathBuf::from("..data/dir"));
        assert_eq!(fs::read_to_string(tmp.path().join("dir/b")).unwrap(), "2");
        assert_eq!(mode_of(&ts_dir.join("secret")), 0o400);
        assert_eq!(mode_of(&ts_dir.join("a")), 0o644);
        assert_eq!(mode_of(&ts_dir), 0o755);
        assert!(!tmp.path().join(NEW_DATA_DIR_NAME).exists());
    }

    #[test]
    fn unchanged_payload_is_not_rewritten() {
        let tmp = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(tmp.path()).unwrap();
        let p = payload(&[("a", "1"), ("x/y", "2")]);
        assert!(matches!(w.write(&p, None).unwrap(), WriteOutcome::Written { .. }));
        let before = ts_dirs(tmp.path());
        // A lost user-visible link is recreated without a rewrite.
        fs::remove_file(tmp.path().join("a")).unwrap();
        assert_eq!(w.write(&p, None).unwrap(), WriteOutcome::Unchanged);
        assert_eq!(ts_dirs(tmp.path()), before);
        assert_eq!(fs::read_to_string(tmp.path().join("a")).unwrap(), "1");
    }

    #[test]
    fn changed_payload_is_swapped_and_old_version_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(tmp.path()).unwrap();
        w.write(&payload(&[("a", "1"), ("gone", "x"), ("d/e", "3")]), None).unwrap();
        let old = ts_dirs(tmp.path());
        let WriteOutcome::Written { ts_dir } = w.write(&payload(&[("a", "2"), ("d/f", "4")]), None).unwrap() else {
            panic!("not written")
        };
        let now = ts_dirs(tmp.path());
        assert_eq!(now.len(), 1);
        assert_ne!(now, old);
        assert_eq!(tmp.path().join(&now[0]), ts_dir);
        assert_eq!(fs::read_to_string(tmp.path().join("a")).unwrap(), "2");
        assert_eq!(fs::read_to_string(tmp.path().join("d/f")).unwrap(), "4");
        assert!(!tmp.path().join("d/e").exists());
        // The vanished top-level entry's link is gone, not left dangling.
        assert!(fs::symlink_metadata(tmp.path().join("gone")).is_err());
    }

    #[test]
    fn empty_payload_then_content() {
        let tmp = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(tmp.path()).unwrap();
        assert!(matches!(w.write(&Payload::new(), None).unwrap(), WriteOutcome::Written { .. }));
        assert_eq!(w.write(&Payload::new(), None).unwrap(), WriteOutcome::Unchanged);
        assert!(matches!(w.write(&payload(&[("k", "v")]), None).unwrap(), WriteOutcome::Written { .. }));
        assert_eq!(fs::read_to_string(tmp.path().join("k")).unwrap(), "v");
    }

    #[test]
    fn invalid_paths_are_refused_before_writing() {
        let tmp = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(tmp.path()).unwrap();
        let long = "x".repeat(256);
        for (path, want) in [
            ("", "must not be empty"),
            ("/etc/passwd", "must be relative path: /etc/passwd"),
            ("a/../../b", "must not contain '..': a/../../b"),
            ("..", "must not contain '..'"),
            ("..data", "must not start with '..': ..data"),
            ("..hidden/x", "must not start with '..'"),
            (long.as_str(), "filenames must be less than or equal to 255 characters"),
        ] {
            let err = w.write(&payload(&[("ok", "1"), (path, "x")]), None).unwrap_err();
            assert!(matches!(err, WriteError::InvalidPath { .. }), "{path}: {err}");
            assert!(err.to_string().starts_with("invalid path: ") && err.to_string().contains(want), "{err}");
        }
        assert!(fs::read_dir(tmp.path()).unwrap().next().is_none(), "nothing may be written");
        // `..` inside a name, `.` and doubled slashes are fine (cleaned).
        w.write(&payload(&[("a..b", "1"), ("./c//d", "2")]), None).unwrap();
        assert_eq!(fs::read_to_string(tmp.path().join("c/d")).unwrap(), "2");
    }

    #[test]
    fn missing_target_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let err = AtomicWriter::new(&tmp.path().join("nope")).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn set_perms_runs_on_the_new_dir_and_failure_leaves_old_version() {
        let tmp = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(tmp.path()).unwrap();
        w.write(&payload(&[("a", "1")]), None).unwrap();
        let before = ts_dirs(tmp.path());
        let fail = |p: &Path| -> Result<()> {
            assert!(p.join("a").exists());
            Err(WriteError::Op { op: "test", path: p.to_path_buf(), err: io::Error::other("boom") })
        };
        assert!(w.write(&payload(&[("a", "2")]), Some(&fail)).is_err());
        assert_eq!(ts_dirs(tmp.path()), before);
        assert_eq!(fs::read_to_string(tmp.path().join("a")).unwrap(), "1");
    }

    #[test]
    fn ownership_adds_group_bits() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, Permissions::from_mode(0o1777)).unwrap();
        let w = AtomicWriter::new(&dir).unwrap();
        let mut p = payload(&[("a", "1")]);
        p.insert("tok".into(), file("t", 0o600));
        w.write(&p, None).unwrap();
        let gid = std::os::unix::fs::MetadataExt::gid(&fs::metadata(tmp.path()).unwrap());
        set_volume_ownership(&dir, gid, true).unwrap();
        assert_eq!(mode_of(&dir), 0o3777);
        assert_eq!(mode_of(&dir.join("a")), 0o644);
        assert_eq!(mode_of(&dir.join("tok")), 0o640);
        let ts = dir.join(&ts_dirs(&dir)[0]);
        assert_eq!(mode_of(&ts), 0o2755);
        set_volume_ownership(&dir, gid, false).unwrap();
        assert_eq!(mode_of(&dir.join("tok")), 0o660);
    }

    #[test]
    fn fs_user_owns_the_file_when_root() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(tmp.path()).unwrap();
        let mut p = Payload::new();
        p.insert("token".into(), FileProjection { data: b"t".to_vec(), mode: 0o600, fs_user: Some(4242) });
        w.write(&p, None).unwrap();
        let md = fs::metadata(tmp.path().join("token")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), 4242);
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "1970_01_01_00_00_00");
        assert_eq!(utc_stamp(951_782_400), "2000_02_29_00_00_00");
        assert_eq!(utc_stamp(1_714_564_800 + 3_723), "2024_05_01_13_02_03");
    }
}
