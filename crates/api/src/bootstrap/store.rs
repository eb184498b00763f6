//! The certificate stores in `--cert-dir`, laid out as client-go's `certificate.FileStore`:
//! each pair is `<prefix>-<YYYY-MM-DD-HH-MM-SS>.pem` (certificate then key, mode 0600) and
//! `<prefix>-current.pem` is a relative symlink to the pair in use, swapped atomically through
//! `<prefix>-updated.pem`. The client certificate's prefix is `kubelet-client`, the serving
//! certificate's `kubelet-server`.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{BootstrapError, Result};

const CLIENT_PREFIX: &str = "kubelet-client";
const SERVER_PREFIX: &str = "kubelet-server";

/// Where the kubelet keeps its client key while its CSR is pending, so that a restart reuses it
/// (and so the CSR name) instead of piling up requests.
pub const TMP_KEY_FILE: &str = "kubelet-client.key.tmp";

/// The validity period of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// The pairs of one certificate directory.
#[derive(Debug, Clone)]
pub struct CertStore {
    dir: PathBuf,
    prefix: &'static str,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BootstrapError + '_ {
    move |source| BootstrapError::Io { path: path.to_owned(), source }
}

impl CertStore {
    /// The client certificate's store.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), prefix: CLIENT_PREFIX }
    }

    /// The serving certificate's store (`kubelet-server-*.pem`).
    pub fn serving(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), prefix: SERVER_PREFIX }
    }

    /// `<dir>/<prefix>-current.pem`, what kubeconfigs (and the server) point at.
    pub fn current_path(&self) -> PathBuf {
        self.dir.join(format!("{}-current.pem", self.prefix))
    }

    /// `<dir>/kubelet-client.key.tmp`.
    pub fn tmp_key_path(&self) -> PathBuf {
        self.dir.join(TMP_KEY_FILE)
    }

    /// The current pair's PEM text, `None` when there is none yet.
    pub fn read_current(&self) -> Result<Option<String>> {
        let path = self.current_path();
        match std::fs::read_to_string(&path) {
            Ok(pem) => Ok(Some(pem)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Writes a new pair (certificate PEM then key PEM) stamped with `now` (local time, as
    /// upstream names them) and points `kubelet-client-current.pem` at it. Returns the pair's path.
    pub fn update(&self, cert_pem: &str, key_pem: &str, now: SystemTime) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let stamp = chrono::DateTime::<chrono::Local>::from(now).format("%Y-%m-%d-%H-%M-%S");
        let name = format!("{}-{stamp}.pem", self.prefix);
        let path = self.dir.join(&name);
        let mut data = cert_pem.trim_end().to_owned();
        data.push('\n');
        data.push_str(key_pem.trim_end());
        data.push('\n');
        write_private(&path, data.as_bytes())?;
        self.point_current_at(&name)?;
        Ok(path)
    }

    /// Atomically replaces the `current` symlink with one to `name` (relative, in the same dir).
    fn point_current_at(&self, name: &str) -> Result<()> {
        let current = self.current_path();
        match std::fs::symlink_metadata(&current) {
            Ok(m) if !m.file_type().is_symlink() => {
                return Err(BootstrapError::NotASymlink { path: current });
            }
            _ => {}
        }
        let updated = self.dir.join(format!("{}-updated.pem", self.prefix));
        match std::fs::symlink_metadata(&updated) {
            Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(&updated).map_err(io_err(&updated))?,
            Ok(_) => return Err(BootstrapError::NotASymlink { path: updated }),
            Err(_) => {}
        }
        std::os::unix::fs::symlink(name, &updated).map_err(io_err(&updated))?;
        std::fs::rename(&updated, &current).map_err(io_err(&current))
    }
}

/// Writes `data` to `path` readable by its owner only (replacing any file there).
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    // An existing file keeps its mode through open(); make sure the key is not left readable.
    f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io_err(path))?;
    f.write_all(data).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Writes `data` to a temporary file beside `path` and renames it over `path`, so readers see
/// either the old or the new content.
pub fn replace_private(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut tmp_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    write_private(&tmp, data)?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Parses the certificates of a PEM bundle (other blocks, such as keys, are skipped).
/// `what` names the source in errors.
pub fn parse_certs(pem: &[u8], what: &Path) -> Result<Vec<CertInfo>> {
    let bad = |reason: String| BootstrapError::Certificate { path: what.to_owned(), reason };
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| bad(format!("malformed PEM: {e}")))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        let cert = block.parse_x509().map_err(|e| bad(format!("malformed certificate: {e}")))?;
        let validity = cert.validity();
        out.push(CertInfo {
            not_before: to_system_time(validity.not_before.timestamp()),
            not_after: to_system_time(validity.not_after.timestamp()),
        });
    }
    if out.is_empty() {
        return Err(bad("no certificate found".to_owned()));
    }
    Ok(out)
}

fn to_system_time(unix: i64) -> SystemTime {
    match u64::try_from(unix) {
        Ok(secs) => SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => SystemTime::UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::bootstrap::testing::{TestCa, new_key};

    #[test]
    fn update_writes_a_private_pair_and_swaps_the_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let store = CertStore::new(dir.path().join("pki"));
        assert_eq!(store.read_current().unwrap(), None);
        let ca = TestCa::new();
        let key = new_key();
        let cert = ca.issue_for_key(&key, "system:node:n1", Duration::from_secs(3600));

        let t1 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let first = store.update(&cert, &key.serialize_pem(), t1).unwrap();
        let stamp = chrono::DateTime::<chrono::Local>::from(t1).format("%Y-%m-%d-%H-%M-%S").to_string();
        assert_eq!(first.file_name().unwrap().to_str().unwrap(), format!("kubelet-client-{stamp}.pem"));
        let meta = std::fs::metadata(&first).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&first).unwrap();
        let cert_at = text.find("BEGIN CERTIFICATE").unwrap();
        let key_at = text.find("BEGIN PRIVATE KEY").unwrap();
        assert!(cert_at < key_at, "certificate first, then key");
        let link = std::fs::read_link(store.current_path()).unwrap();
        assert_eq!(link, PathBuf::from(first.file_name().unwrap()), "a relative link");
        assert_eq!(store.read_current().unwrap().as_deref(), Some(text.as_str()));

        let t2 = t1 + Duration::from_secs(61);
        let second = store.update(&cert, &key.serialize_pem(), t2).unwrap();
        assert_ne!(first, second);
        assert_eq!(std::fs::read_link(store.current_path()).unwrap(), PathBuf::from(second.file_name().unwrap()));
        assert!(first.exists(), "old pairs are kept, as upstream");
        assert!(!dir.path().join("pki/kubelet-client-updated.pem").exists());
        assert_eq!(parse_certs(text.as_bytes(), &first).unwrap().len(), 1);
    }

    #[test]
    fn a_regular_current_file_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = CertStore::new(dir.path());
        std::fs::write(store.current_path(), "precious").unwrap();
        let err = store.update("c", "k", SystemTime::now()).unwrap_err();
        assert!(matches!(err, BootstrapError::NotASymlink { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(store.current_path()).unwrap(), "precious");
    }

    #[test]
    fn replace_private_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubelet.conf");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        replace_private(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn parse_certs_reports_garbage() {
        let err = parse_certs(b"hello", Path::new("/x.pem")).unwrap_err().to_string();
        assert!(err.contains("/x.pem") && err.contains("no certificate found"), "{err}");
    }
}
