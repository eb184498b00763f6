//! The kubelet's per-pod directory layout under `--root-dir` (upstream `kubelet_getters.go`):
//!
//! ```text
//! <root>/pods/<uid>/
//!     volumes/<escaped plugin>/<volume>     e.g. volumes/kubernetes.io~empty-dir/cache
//!     plugins/<escaped plugin>/<volume>/    plugin metadata (emptyDir "ready" markers)
//!     containers/<container>/<8 hex>        termination-message files
//!     volume-subpaths/                      (upstream's subPath bind mounts; unused here)
//!     etc-hosts                             the pod's /etc/hosts
//! ```
//!
//! Path getters take names as they are and assume they are valid; every method that touches
//! the disk first checks that the uid / container name is a single path component.

use std::hash::{BuildHasher, RandomState};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{HostAlias, Pod};

/// Upstream's default `--root-dir`.
pub const DEFAULT_ROOT_DIR: &str = "/var/lib/kubelet";
/// The node's hosts file, copied for hostNetwork pods.
pub const NODE_HOSTS_FILE: &str = "/etc/hosts";
/// Plugin names as upstream registers them (escaped with `~` on disk).
pub const EMPTY_DIR_PLUGIN: &str = "kubernetes.io/empty-dir";
pub const HOST_PATH_PLUGIN: &str = "kubernetes.io/host-path";

const PODS_DIR: &str = "pods";
const VOLUMES_DIR: &str = "volumes";
const PLUGINS_DIR: &str = "plugins";
const CONTAINERS_DIR: &str = "containers";
const VOLUME_SUBPATHS_DIR: &str = "volume-subpaths";
const ETC_HOSTS_FILE: &str = "etc-hosts";

/// Mode of the pod directory and its `volumes/`, `plugins/`, `containers/<name>/` children.
const POD_DIR_MODE: u32 = 0o750;
const HOSTS_FILE_MODE: u32 = 0o644;
const TERMINATION_LOG_MODE: u32 = 0o666;

const MANAGED_HOSTS_HEADER: &str = "# Kubernetes-managed hosts file.\n";
const MANAGED_HOSTS_HEADER_HOST_NETWORK: &str = "# Kubernetes-managed hosts file (host network).\n";

#[derive(Debug, thiserror::Error)]
pub enum PodDirsError {
    #[error("invalid {what} {name:?}: must be a single, non-empty path component")]
    InvalidName { what: &'static str, name: String },

    #[error("could not create a unique termination-log file in {dir}")]
    TerminationLogExhausted { dir: PathBuf },

    #[error(transparent)]
    Sys(#[from] sys::Error),
}

pub type Result<T, E = PodDirsError> = std::result::Result<T, E>;

/// Check that `name` can be used as one path component (no `/`, not `.`/`..`, no NUL).
pub fn validate_component<'a>(what: &'static str, name: &'a str) -> Result<&'a str> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(PodDirsError::InvalidName { what, name: name.to_string() });
    }
    Ok(name)
}

/// Upstream's `EscapeQualifiedName`: `kubernetes.io/empty-dir` → `kubernetes.io~empty-dir`.
pub fn escape_qualified_name(name: &str) -> String {
    name.replace('/', "~")
}

/// The per-pod directories under the kubelet root.
#[derive(Debug, Clone)]
pub struct PodDirs {
    root: PathBuf,
    node_hosts_file: PathBuf,
}

impl PodDirs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), node_hosts_file: PathBuf::from(NODE_HOSTS_FILE) }
    }

    /// Read the node's hosts file (for hostNetwork pods) from `path` instead of `/etc/hosts`.
    pub fn with_node_hosts_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.node_hosts_file = path.into();
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/pods`
    pub fn pods_dir(&self) -> PathBuf {
        self.root.join(PODS_DIR)
    }

    /// `<root>/pods/<uid>`
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir().join(uid)
    }

    /// `<root>/pods/<uid>/volumes`
    pub fn volumes_dir(&self, uid: &str) -> PathBuf {
        self.pod_dir(uid).join(VOLUMES_DIR)
    }

    /// `<root>/pods/<uid>/volumes/<escaped plugin>/<volume>`; `plugin` unescaped, e.g.
    /// [`EMPTY_DIR_PLUGIN`].
    pub fn volume_dir(&self, uid: &str, plugin: &str, volume: &str) -> PathBuf {
        self.volumes_dir(uid).join(escape_qualified_name(plugin)).join(volume)
    }

    /// `<root>/pods/<uid>/plugins`
    pub fn plugins_dir(&self, uid: &str) -> PathBuf {
        self.pod_dir(uid).join(PLUGINS_DIR)
    }

    /// `<root>/pods/<uid>/plugins/<escaped plugin>`
    pub fn plugin_dir(&self, uid: &str, plugin: &str) -> PathBuf {
        self.plugins_dir(uid).join(escape_qualified_name(plugin))
    }

    /// `<root>/pods/<uid>/containers/<container>`
    pub fn container_dir(&self, uid: &str, container: &str) -> PathBuf {
        self.pod_dir(uid).join(CONTAINERS_DIR).join(container)
    }

    /// `<root>/pods/<uid>/volume-subpaths`
    pub fn volume_subpaths_dir(&self, uid: &str) -> PathBuf {
        self.pod_dir(uid).join(VOLUME_SUBPATHS_DIR)
    }

    /// `<root>/pods/<uid>/etc-hosts`
    pub fn etc_hosts_path(&self, uid: &str) -> PathBuf {
        self.pod_dir(uid).join(ETC_HOSTS_FILE)
    }

    /// Create the pod directory with `volumes/` and `plugins/` (mode 0750, as upstream's
    /// `makePodDataDirs`). Idempotent.
    pub fn ensure_pod_dirs(&self, uid: &str) -> Result<()> {
        validate_component("pod uid", uid)?;
        for dir in [self.pod_dir(uid), self.volumes_dir(uid), self.plugins_dir(uid)] {
            sys::ensure_dir(&dir, POD_DIR_MODE)?;
        }
        Ok(())
    }

    /// The uids of the pod directories on disk (upstream `listPodsFromDisk`), sorted. A missing
    /// `pods/` directory means none; non-directories and non-UTF-8 names are skipped.
    pub fn pod_uids_on_disk(&self) -> Result<Vec<String>> {
        let dir = self.pods_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => {
                return Err(sys::Error::from(sys::WrappedIoError::ReadDir { err, path: dir }).into());
            }
        };
        let mut uids = Vec::new();
        for entry in entries {
            let entry = entry
                .map_err(|err| sys::WrappedIoError::ReadDir { err, path: dir.clone() })
                .map_err(sys::Error::from)?;
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            match entry.file_name().into_string() {
                Ok(name) if is_dir => uids.push(name),
                Ok(_) => {}
                Err(name) => {
                    tracing::warn!(dir = %dir.display(), ?name, "skipping non-UTF-8 pod directory");
                }
            }
        }
        uids.sort();
        Ok(uids)
    }

    /// Write `content` to `pods/<uid>/etc-hosts` (mode 0644, in place so running containers
    /// that bind-mount it see the update), creating the pod directory if needed.
    pub fn write_hosts_file(&self, uid: &str, content: &str) -> Result<PathBuf> {
        validate_component("pod uid", uid)?;
        sys::ensure_dir(&self.pod_dir(uid), POD_DIR_MODE)?;
        let path = self.etc_hosts_path(uid);
        sys::write_file(&path, content.as_bytes(), HOSTS_FILE_MODE)?;
        Ok(path)
    }

    /// Upstream's `ensureHostsFile` for `pod`: a hostNetwork pod gets a copy of the node's hosts
    /// file with a header and the pod's hostAliases appended; any other pod gets the managed
    /// content for its IPs (see [`hosts_file_content`]). Upstream mounts the file only when the
    /// pod has IPs or uses the host network (`shouldMountHostsFile`): in the other case nothing
    /// is written, any stale file is removed and `Ok(None)` is returned — the file's presence
    /// is what tells [`crate::volume::VolumeManager::container_mounts`] to mount it.
    pub fn write_hosts_file_for(
        &self,
        pod: &Pod,
        pod_ips: &[String],
        hostname: &str,
        cluster_domain: &str,
    ) -> Result<Option<PathBuf>> {
        let uid = validate_component("pod uid", pod.metadata.uid.as_deref().unwrap_or_default())?;
        let spec = pod.spec.as_ref();
        let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
        let aliases = spec.and_then(|s| s.host_aliases.as_deref()).unwrap_or_default();
        if pod_ips.is_empty() && !host_network {
            let path = self.etc_hosts_path(uid);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(sys::Error::from(sys::WrappedIoError::RemoveFile { err, path }).into());
                }
            }
            return Ok(None);
        }
        let content = if host_network {
            let node = sys::read_to_string(&self.node_hosts_file)?;
            host_network_hosts_file_content(&node, aliases)
        } else {
            hosts_file_content(
                pod_ips,
                hostname,
                spec.and_then(|s| s.subdomain.as_deref()).unwrap_or_default(),
                pod.metadata.namespace.as_deref().unwrap_or("default"),
                cluster_domain,
                aliases,
            )
        };
        self.write_hosts_file(uid, &content).map(Some)
    }

    /// Create an empty, world-writable (0666) termination-message file
    /// `pods/<uid>/containers/<container>/<8 random hex>` for one container instance, as
    /// upstream does before each container start; the caller mounts it at the container's
    /// `terminationMessagePath`.
    pub fn new_termination_log_file(&self, uid: &str, container: &str) -> Result<PathBuf> {
        validate_component("pod uid", uid)?;
        validate_component("container name", container)?;
        let dir = self.container_dir(uid, container);
        sys::ensure_dir(&dir, POD_DIR_MODE)?;
        let hasher = RandomState::new();
        for attempt in 0u32..16 {
            // `RandomState` is randomly keyed per process and advances per instance; mixing in
            // the attempt and the time makes collisions with earlier instances unlikely, and
            // `create_new` makes them harmless.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let id = hasher.hash_one((attempt, nanos, std::process::id())) as u32;
            let path = dir.join(format!("{id:08x}"));
            match std::fs::OpenOptions::new().write(true).create_new(true).mode(TERMINATION_LOG_MODE).open(&path) {
                Ok(_) => {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(TERMINATION_LOG_MODE))
                        .map_err(|err| sys::WrappedIoError::Chmod { err, path: path.clone() })
                        .map_err(sys::Error::from)?;
                    return Ok(path);
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => {
                    return Err(sys::Error::from(sys::WrappedIoError::Create { err, path }).into());
                }
            }
        }
        Err(PodDirsError::TerminationLogExhausted { dir })
    }
}

/// The managed hosts file of a pod on the pod network (upstream `managedHostsFileContent`).
/// With a `subdomain`, each pod IP maps to `<hostname>.<subdomain>.<namespace>.svc.<domain>`
/// and `<hostname>`; otherwise to `<hostname>` only.
pub fn hosts_file_content(
    pod_ips: &[String],
    hostname: &str,
    subdomain: &str,
    namespace: &str,
    cluster_domain: &str,
    host_aliases: &[HostAlias],
) -> String {
    let host_domain =
        if subdomain.is_empty() { String::new() } else { format!("{subdomain}.{namespace}.svc.{cluster_domain}") };
    managed_hosts_file_content(pod_ips, hostname, &host_domain, host_aliases)
}

/// Upstream's `managedHostsFileContent` with the pod's full host domain precomputed (`""` when
/// the pod has no subdomain).
pub fn managed_hosts_file_content(
    pod_ips: &[String],
    hostname: &str,
    host_domain: &str,
    host_aliases: &[HostAlias],
) -> String {
    let mut out = String::from(MANAGED_HOSTS_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in pod_ips {
        if host_domain.is_empty() {
            out.push_str(&format!("{ip}\t{hostname}\n"));
        } else {
            out.push_str(&format!("{ip}\t{hostname}.{host_domain}\t{hostname}\n"));
        }
    }
    out.push_str(&host_alias_entries(host_aliases));
    out
}

/// Upstream's `nodeHostsFileContent`: the node's hosts file behind a header, then the pod's
/// hostAliases.
pub fn host_network_hosts_file_content(node_hosts: &str, host_aliases: &[HostAlias]) -> String {
    let mut out = String::from(MANAGED_HOSTS_HEADER_HOST_NETWORK);
    out.push_str(node_hosts);
    out.push_str(&host_alias_entries(host_aliases));
    out
}

/// The `# Entries added by HostAliases.` section: one line per alias, hostnames tab-separated.
fn host_alias_entries(host_aliases: &[HostAlias]) -> String {
    if host_aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for alias in host_aliases {
        let names = alias.hostnames.as_deref().unwrap_or_default().join("\t");
        out.push_str(&format!("{}\t{names}\n", alias.ip));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    const BASE: &str = "# Kubernetes-managed hosts file.\n\
        127.0.0.1\tlocalhost\n\
        ::1\tlocalhost ip6-localhost ip6-loopback\n\
        fe00::0\tip6-localnet\n\
        fe00::0\tip6-mcastprefix\n\
        fe00::1\tip6-allnodes\n\
        fe00::2\tip6-allrouters\n";

    fn alias(ip: &str, names: &[&str]) -> HostAlias {
        HostAlias { ip: ip.into(), hostnames: Some(names.iter().map(|s| s.to_string()).collect()) }
    }

    fn dirs() -> (tempfile::TempDir, PodDirs) {
        let t = tempfile::tempdir().unwrap();
        let d = PodDirs::new(t.path());
        (t, d)
    }

    #[test]
    fn layout_matches_upstream() {
        let d = PodDirs::new("/var/lib/kubelet");
        assert_eq!(d.pod_dir("u1"), Path::new("/var/lib/kubelet/pods/u1"));
        assert_eq!(
            d.volume_dir("u1", EMPTY_DIR_PLUGIN, "cache"),
            Path::new("/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/cache")
        );
        assert_eq!(
            d.plugin_dir("u1", EMPTY_DIR_PLUGIN),
            Path::new("/var/lib/kubelet/pods/u1/plugins/kubernetes.io~empty-dir")
        );
        assert_eq!(d.container_dir("u1", "app"), Path::new("/var/lib/kubelet/pods/u1/containers/app"));
        assert_eq!(d.etc_hosts_path("u1"), Path::new("/var/lib/kubelet/pods/u1/etc-hosts"));
        assert_eq!(d.volume_subpaths_dir("u1"), Path::new("/var/lib/kubelet/pods/u1/volume-subpaths"));
    }

    #[test]
    fn hosts_file_without_subdomain() {
        let got =
            hosts_file_content(&["10.0.0.5".into(), "fd00::5".into()], "web", "", "default", "cluster.local", &[]);
        assert_eq!(got, format!("{BASE}10.0.0.5\tweb\nfd00::5\tweb\n"));
    }

    #[test]
    fn hosts_file_with_subdomain_and_aliases() {
        let got = hosts_file_content(
            &["10.0.0.5".into()],
            "web-0",
            "web",
            "prod",
            "cluster.local",
            &[alias("127.0.0.1", &["foo.local", "bar.local"]), alias("10.1.2.3", &["foo.remote"])],
        );
        assert_eq!(
            got,
            format!(
                "{BASE}10.0.0.5\tweb-0.web.prod.svc.cluster.local\tweb-0\n\
                 \n# Entries added by HostAliases.\n\
                 127.0.0.1\tfoo.local\tbar.local\n\
                 10.1.2.3\tfoo.remote\n"
            )
        );
    }

    #[test]
    fn host_network_hosts_file() {
        let got = host_network_hosts_file_content("127.0.0.1 localhost\n", &[alias("1.2.3.4", &["a"])]);
        assert_eq!(
            got,
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n\
             \n# Entries added by HostAliases.\n1.2.3.4\ta\n"
        );
    }

    fn pod(uid: &str, host_network: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                host_network: Some(host_network),
                host_aliases: Some(vec![alias("1.2.3.4", &["x"])]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn writes_hosts_file_for_pod() {
        let (t, d) = dirs();
        let node_hosts = t.path().join("node-hosts");
        std::fs::write(&node_hosts, "10.9.9.9 node\n").unwrap();
        let d = d.with_node_hosts_file(&node_hosts);

        // No IPs yet, pod network: nothing to mount.
        assert_eq!(d.write_hosts_file_for(&pod("u1", false), &[], "p", "cluster.local").unwrap(), None);
        assert!(!d.etc_hosts_path("u1").exists());

        let p = d.write_hosts_file_for(&pod("u1", false), &["10.0.0.1".into()], "p", "cluster.local").unwrap().unwrap();
        let content = std::fs::read_to_string(&p).unwrap();
        assert!(content.starts_with(BASE) && content.contains("10.0.0.1\tp\n"), "{content}");
        assert!(content.ends_with("1.2.3.4\tx\n"));
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);

        // Stale file removed when the pod has no IPs.
        assert_eq!(d.write_hosts_file_for(&pod("u1", false), &[], "p", "cluster.local").unwrap(), None);
        assert!(!p.exists());

        let p = d.write_hosts_file_for(&pod("u2", true), &[], "p", "cluster.local").unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(p).unwrap(),
            "# Kubernetes-managed hosts file (host network).\n10.9.9.9 node\n\
             \n# Entries added by HostAliases.\n1.2.3.4\tx\n"
        );
    }

    #[test]
    fn ensures_and_lists_pod_dirs() {
        let (_t, d) = dirs();
        assert!(d.pod_uids_on_disk().unwrap().is_empty());
        d.ensure_pod_dirs("b").unwrap();
        d.ensure_pod_dirs("a").unwrap();
        d.ensure_pod_dirs("a").unwrap();
        std::fs::write(d.pods_dir().join("stray-file"), b"").unwrap();
        assert_eq!(d.pod_uids_on_disk().unwrap(), ["a", "b"]);
        for p in [d.pod_dir("a"), d.volumes_dir("a"), d.plugins_dir("a")] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o750, "{}", p.display());
        }
    }

    #[test]
    fn rejects_bad_names() {
        let (_t, d) = dirs();
        for bad in ["", ".", "..", "a/b", "../x"] {
            let err = d.ensure_pod_dirs(bad).unwrap_err();
            assert!(matches!(err, PodDirsError::InvalidName { .. }), "{bad}: {err}");
            assert!(d.new_termination_log_file("u", bad).is_err());
            assert!(d.write_hosts_file(bad, "x").is_err());
        }
    }

    #[test]
    fn termination_log_files_are_unique() {
        let (_t, d) = dirs();
        let a = d.new_termination_log_file("u1", "app").unwrap();
        let b = d.new_termination_log_file("u1", "app").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.parent().unwrap(), d.container_dir("u1", "app"));
        let name = a.file_name().unwrap().to_str().unwrap();
        assert_eq!(name.len(), 8);
        assert!(name.chars().all(|c| c.is_ascii_hexdigit()));
        let md = std::fs::metadata(&a).unwrap();
        assert_eq!(md.len(), 0);
        assert_eq!(md.permissions().mode() & 0o777, 0o666);
    }
}
