//! The cgroups the kubelet manages itself (the node allocatable cgroup `kubepods`, the QoS
//! cgroups and one per pod), written straight to the cgroup filesystem as upstream's cgroupfs
//! manager (libcontainer's `fs`/`fs2`) does:
//!
//! - **v1**: one directory per mounted controller hierarchy (`cpu`, `cpuacct`, `memory`, `pids`,
//!   `cpuset`, …; a co-mounted `cpu,cpuacct` counts once). A new `cpuset` directory gets its
//!   parent's `cpuset.cpus`/`cpuset.mems`, without which no process could join it.
//! - **v2** (`<root>/cgroup.controllers` exists): one directory; the controllers are enabled in
//!   each ancestor's `cgroup.subtree_control` on the way down, and `cpu.shares` becomes
//!   `cpu.weight` with runc's formula.
//!
//! Names are cgroupfs paths relative to the root (`/kubepods/burstable/pod<uid>`).

use std::path::{Path, PathBuf};

use crate::error::{Result, WrappedIoError};

/// What a cgroup is limited to; `None` leaves a setting as it is. `-1` is "unlimited" for
/// quota, memory and pids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupResources {
    pub cpu_shares: Option<u64>,
    /// CFS quota in µs per period; -1 unlimited.
    pub cpu_quota: Option<i64>,
    /// CFS period in µs.
    pub cpu_period: Option<u64>,
    /// Bytes; -1 unlimited.
    pub memory_limit: Option<i64>,
    /// Processes; -1 unlimited.
    pub pids_limit: Option<i64>,
    /// (page size as the kernel names it in hugetlb files: `2MB`, `1GB`; limit in bytes).
    pub hugepage_limits: Vec<(String, u64)>,
}

/// The controllers a v2 cgroup of the kubelet needs enabled.
const V2_CONTROLLERS: [&str; 5] = ["cpuset", "cpu", "memory", "pids", "hugetlb"];

/// Adds the pids in `dir`'s `cgroup.procs` and its descendants' to `out`.
fn walk_procs(dir: &Path, out: &mut Vec<u32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk_procs(&e.path(), out);
        }
    }
}

/// A cgroup filesystem (normally `/sys/fs/cgroup`).
#[derive(Debug, Clone)]
pub struct CgroupFs {
    root: PathBuf,
    /// v1: each controller hierarchy's directory (deduplicated); empty on v2.
    hierarchies: Vec<PathBuf>,
}

fn read_dir_err(path: &Path, err: std::io::Error) -> crate::Error {
    WrappedIoError::ReadDir { err, path: path.to_path_buf() }.into()
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|err| WrappedIoError::Write { err, path: path.to_path_buf() }.into())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|err| WrappedIoError::Read { err, path: path.to_path_buf() }.into())
}

/// runc's `ConvertCPUSharesToCgroupV2Value`: [2, 262144] shares onto [1, 10000] weight; 0 is
/// "not set".
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262_142
}

impl CgroupFs {
    /// The cgroup filesystem at `root`; on v1 its controller hierarchies are the directories
    /// directly under it (the unified `unified` mount of hybrid systems is not one).
    pub fn open(root: &Path) -> Result<Self> {
        if root.join("cgroup.controllers").exists() {
            return Ok(Self { root: root.to_path_buf(), hierarchies: Vec::new() });
        }
        let mut hierarchies: Vec<PathBuf> = Vec::new();
        let mut seen = Vec::new();
        let mut entries: Vec<(bool, PathBuf)> = std::fs::read_dir(root)
            .map_err(|e| read_dir_err(root, e))?
            .flatten()
            .filter(|e| e.file_name() != "unified")
            .map(|e| (e.file_type().is_ok_and(|t| t.is_symlink()), e.path()))
            .collect();
        // Real directories before the links to them, so a hierarchy keeps its full name.
        entries.sort();
        for (_, path) in entries {
            if !path.is_dir() {
                continue;
            }
            // `cpu` and `cpuacct` are often links to one `cpu,cpuacct` hierarchy.
            let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if !seen.contains(&real) {
                seen.push(real);
                hierarchies.push(path);
            }
        }
        hierarchies.sort();
        Ok(Self { root: root.to_path_buf(), hierarchies })
    }

    pub fn is_v2(&self) -> bool {
        self.hierarchies.is_empty()
    }

    fn rel(name: &str) -> &str {
        name.trim_start_matches('/')
    }

    /// The v1 hierarchy that holds `controller` (`cpu` in `cpu,cpuacct`).
    fn hierarchy(&self, controller: &str) -> Option<&PathBuf> {
        self.hierarchies
            .iter()
            .find(|h| h.file_name().and_then(|f| f.to_str()).is_some_and(|f| f.split(',').any(|c| c == controller)))
    }

    /// The directory of `name` in the hierarchy of `controller` (v1), or in the unified one.
    fn dir(&self, controller: &str, name: &str) -> PathBuf {
        if self.is_v2() {
            return self.root.join(Self::rel(name));
        }
        self.hierarchy(controller).cloned().unwrap_or_else(|| self.root.join(controller)).join(Self::rel(name))
    }

    /// Every directory of `name`: one per v1 hierarchy, or the unified one.
    fn dirs(&self, name: &str) -> Vec<PathBuf> {
        if self.is_v2() {
            return vec![self.root.join(Self::rel(name))];
        }
        self.hierarchies.iter().map(|h| h.join(Self::rel(name))).collect()
    }

    /// Whether `name` exists for the controllers the kubelet relies on (upstream checks the
    /// cpu, cpuacct, cpuset, memory and pids hierarchies on v1; the directory on v2).
    pub fn exists(&self, name: &str) -> bool {
        self.missing_paths(name).is_empty()
    }

    /// The directories of `name` that are missing among those [`exists`](Self::exists)
    /// checks (upstream `Validate`'s "missing paths").
    pub fn missing_paths(&self, name: &str) -> Vec<PathBuf> {
        if self.is_v2() {
            let dir = self.root.join(Self::rel(name));
            return if dir.is_dir() { Vec::new() } else { vec![dir] };
        }
        ["cpu", "cpuacct", "cpuset", "memory", "pids"]
            .iter()
            .filter_map(|c| self.hierarchy(c))
            .map(|h| h.join(Self::rel(name)))
            .filter(|d| !d.is_dir())
            .collect()
    }

    /// Creates `name` (and its missing ancestors) in every hierarchy and applies `res`.
    pub fn create(&self, name: &str, res: &CgroupResources) -> Result<()> {
        if self.is_v2() {
            self.enable_v2_controllers(name)?;
        } else {
            for dir in self.dirs(name) {
                std::fs::create_dir_all(&dir).map_err(|err| WrappedIoError::CreateDir { err, path: dir.clone() })?;
            }
            self.inherit_cpuset(name)?;
        }
        self.set(name, res)
    }

    /// Enables the kubelet's controllers in every ancestor's `cgroup.subtree_control` and creates
    /// each level of `name` (v2).
    fn enable_v2_controllers(&self, name: &str) -> Result<()> {
        let mut dir = self.root.clone();
        for part in Self::rel(name).split('/').filter(|p| !p.is_empty()) {
            let available = read(&dir.join("cgroup.controllers")).unwrap_or_default();
            let enabled = read(&dir.join("cgroup.subtree_control")).unwrap_or_default();
            for c in V2_CONTROLLERS {
                let has = |text: &str| text.split_whitespace().any(|x| x == c);
                if has(&available) && !has(&enabled) {
                    write(&dir.join("cgroup.subtree_control"), &format!("+{c}"))?;
                }
            }
            dir = dir.join(part);
            if !dir.is_dir() {
                std::fs::create_dir(&dir).map_err(|err| WrappedIoError::CreateDir { err, path: dir.clone() })?;
            }
        }
        Ok(())
    }

    /// Fills empty `cpuset.cpus`/`cpuset.mems` along `name` from the parent (v1).
    fn inherit_cpuset(&self, name: &str) -> Result<()> {
        if self.hierarchy("cpuset").is_none() {
            return Ok(());
        }
        let mut parent = self.dir("cpuset", "/");
        for part in Self::rel(name).split('/').filter(|p| !p.is_empty()) {
            let dir = parent.join(part);
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let current = match std::fs::read_to_string(dir.join(file)) {
                    Ok(v) => v,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                    Err(err) => return Err(WrappedIoError::Read { err, path: dir.join(file) }.into()),
                };
                if current.trim().is_empty() {
                    write(&dir.join(file), read(&parent.join(file))?.trim())?;
                }
            }
            parent = dir;
        }
        Ok(())
    }

    /// Applies `res` to the existing `name`.
    pub fn set(&self, name: &str, res: &CgroupResources) -> Result<()> {
        let unlimited = |v: i64| if v < 0 { "max".to_string() } else { v.to_string() };
        if self.is_v2() {
            let dir = self.root.join(Self::rel(name));
            if let Some(shares) = res.cpu_shares {
                write(&dir.join("cpu.weight"), &shares_to_weight(shares).to_string())?;
            }
            if res.cpu_quota.is_some() || res.cpu_period.is_some() {
                let period = res.cpu_period.unwrap_or(100_000);
                let quota = res.cpu_quota.map_or_else(|| "max".to_string(), unlimited);
                write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
            }
            if let Some(m) = res.memory_limit {
                write(&dir.join("memory.max"), &unlimited(m))?;
            }
            if let Some(p) = res.pids_limit {
                write(&dir.join("pids.max"), &unlimited(p))?;
            }
            for (size, limit) in &res.hugepage_limits {
                write(&dir.join(format!("hugetlb.{size}.max")), &limit.to_string())?;
            }
            return Ok(());
        }
        let cpu = self.dir("cpu", name);
        if let Some(shares) = res.cpu_shares {
            write(&cpu.join("cpu.shares"), &shares.to_string())?;
        }
        // The period first: a quota is checked against the period in place.
        if let Some(period) = res.cpu_period {
            write(&cpu.join("cpu.cfs_period_us"), &period.to_string())?;
        }
        if let Some(quota) = res.cpu_quota {
            write(&cpu.join("cpu.cfs_quota_us"), &quota.max(-1).to_string())?;
        }
        if let Some(m) = res.memory_limit {
            write(&self.dir("memory", name).join("memory.limit_in_bytes"), &m.max(-1).to_string())?;
        }
        if let Some(p) = res.pids_limit {
            write(&self.dir("pids", name).join("pids.max"), &unlimited(p))?;
        }
        let hugetlb = self.dir("hugetlb", name);
        if hugetlb.is_dir() {
            for (size, limit) in &res.hugepage_limits {
                write(&hugetlb.join(format!("hugetlb.{size}.limit_in_bytes")), &limit.to_string())?;
            }
        }
        Ok(())
    }

    /// The names of `name`'s child cgroups (from the memory hierarchy on v1).
    pub fn children(&self, name: &str) -> Result<Vec<String>> {
        let dir = self.dir("memory", name);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(read_dir_err(&dir, e)),
        };
        let mut out: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        Ok(out)
    }

    /// What cAdvisor reports of `name` (see [`crate::cgroup_metrics`]).
    pub fn metrics(&self, name: &str) -> Result<crate::cgroup_metrics::CgroupMetrics> {
        if self.is_v2() {
            return crate::cgroup_metrics::read_v2(&self.dir("", name));
        }
        crate::cgroup_metrics::read_v1(
            &self.dir("cpu", name),
            &self.dir("cpuacct", name),
            &self.dir("memory", name),
            &self.dir("pids", name),
        )
    }

    /// When `name` was made: the earliest modification time of its directories (cAdvisor's
    /// creation time of a raw cgroup).
    pub fn created(&self, name: &str) -> Option<std::time::SystemTime> {
        self.dirs(name).iter().filter_map(|d| std::fs::metadata(d).ok()?.modified().ok()).min()
    }

    /// Every process in `name` and its descendants, in any hierarchy.
    pub fn pids(&self, name: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for dir in self.dirs(name) {
            walk_procs(&dir, &mut out);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The processes in `name` and its descendants (cAdvisor's `process_count`), read in the
    /// pids hierarchy (v1) or the unified one; None when the cgroup is not there.
    pub fn process_count(&self, name: &str) -> Option<u64> {
        let dir = self.dir("pids", name);
        if !dir.is_dir() {
            return None;
        }
        let mut out = Vec::new();
        walk_procs(&dir, &mut out);
        out.sort_unstable();
        out.dedup();
        Some(out.len() as u64)
    }

    /// Whether the hugetlb controller is there (a v1 hierarchy, or listed at the v2 root):
    /// without it a runtime cannot apply hugepage limits.
    pub fn has_hugetlb(&self) -> bool {
        if self.is_v2() {
            return read(&self.root.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|x| x == "hugetlb"));
        }
        self.hierarchy("hugetlb").is_some()
    }

    /// Upstream `tryKillingCgroupProcesses`: SIGKILL to every process in `name`, up to five
    /// rounds over the pids read once; a process already gone is killed. `Err` lists what
    /// could not be killed in the last round.
    pub fn kill_all(&self, name: &str) -> std::result::Result<(), String> {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let pids = self.pids(name);
        let mut errors = Vec::new();
        for _ in 0..5 {
            errors.clear();
            for pid in &pids {
                let Ok(raw) = i32::try_from(*pid) else { continue };
                match kill(Pid::from_raw(raw), Signal::SIGKILL) {
                    Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                    Err(e) => errors.push(format!("killing process {pid}: {e}")),
                }
            }
            if errors.is_empty() {
                return Ok(());
            }
        }
        Err(errors.join(", "))
    }

    /// Removes `name` and its (empty) descendants from every hierarchy; what is already gone
    /// is fine. Fails while a process is still in it.
    pub fn remove(&self, name: &str) -> Result<()> {
        fn remove_tree(dir: &Path) -> Result<()> {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(read_dir_err(dir, e)),
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&e.path())?;
                }
            }
            match std::fs::remove_dir(dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(err) => Err(WrappedIoError::RemoveDir { err, path: dir.to_path_buf() }.into()),
            }
        }
        for dir in self.dirs(name) {
            remove_tree(&dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake v1 tree: `cpu,cpuacct` co-mounted (with `cpu`/`cpuacct` links), memory, pids,
    /// cpuset. Files are plain files, so writes can be read back.
    fn v1_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for h in ["cpu,cpuacct", "memory", "pids", "cpuset"] {
            std::fs::create_dir(dir.path().join(h)).expect("mkdir");
        }
        std::os::unix::fs::symlink("cpu,cpuacct", dir.path().join("cpu")).expect("link");
        std::os::unix::fs::symlink("cpu,cpuacct", dir.path().join("cpuacct")).expect("link");
        std::fs::create_dir(dir.path().join("unified")).expect("mkdir");
        std::fs::write(dir.path().join("cpuset/cpuset.cpus"), "0-1\n").expect("write");
        std::fs::write(dir.path().join("cpuset/cpuset.mems"), "0\n").expect("write");
        dir
    }

    fn read_file(p: PathBuf) -> String {
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn v1_creates_in_every_hierarchy_once_and_writes_v1_files() {
        let root = v1_tree();
        // The kernel creates these files with the directory; the fake tree needs them made.
        let fs = CgroupFs::open(root.path()).expect("open");
        assert!(!fs.is_v2());
        assert_eq!(fs.hierarchies.len(), 4, "{:?}", fs.hierarchies);
        for h in ["cpu,cpuacct", "memory", "pids", "cpuset"] {
            std::fs::create_dir_all(root.path().join(h).join("kubepods/burstable")).expect("mkdir");
        }
        std::fs::write(root.path().join("cpuset/kubepods/cpuset.cpus"), "").expect("write");
        std::fs::write(root.path().join("cpuset/kubepods/cpuset.mems"), "").expect("write");
        std::fs::write(root.path().join("cpuset/kubepods/burstable/cpuset.cpus"), "").expect("write");
        std::fs::write(root.path().join("cpuset/kubepods/burstable/cpuset.mems"), "").expect("write");
        let res = CgroupResources {
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory_limit: Some(64 << 20),
            pids_limit: Some(-1),
            hugepage_limits: vec![("2MB".into(), 0)],
        };
        fs.create("/kubepods/burstable", &res).expect("create");
        let p = |rel: &str| root.path().join(rel);
        assert_eq!(read_file(p("cpu,cpuacct/kubepods/burstable/cpu.shares")), "512");
        assert_eq!(read_file(p("cpu,cpuacct/kubepods/burstable/cpu.cfs_quota_us")), "50000");
        assert_eq!(read_file(p("cpu,cpuacct/kubepods/burstable/cpu.cfs_period_us")), "100000");
        assert_eq!(read_file(p("memory/kubepods/burstable/memory.limit_in_bytes")), "67108864");
        assert_eq!(read_file(p("pids/kubepods/burstable/pids.max")), "max");
        assert_eq!(read_file(p("cpuset/kubepods/cpuset.cpus")), "0-1", "inherited from the root");
        assert_eq!(read_file(p("cpuset/kubepods/burstable/cpuset.mems")), "0");
        assert!(!p("unified/kubepods").exists(), "the unified mount is not a v1 hierarchy");
        assert!(fs.exists("/kubepods/burstable"));
        assert!(!fs.exists("/kubepods/besteffort"));
        assert_eq!(fs.children("/kubepods").expect("children"), ["burstable"]);

        std::fs::write(p("memory/kubepods/burstable/cgroup.procs"), "12\n7\n").expect("write");
        std::fs::write(p("pids/kubepods/cgroup.procs"), "7\n").expect("write");
        assert_eq!(fs.pids("/kubepods"), [7, 12]);
        std::fs::write(p("pids/kubepods/burstable/cgroup.procs"), "12\n13\n").expect("write");
        assert_eq!(fs.process_count("/kubepods"), Some(3), "the pids hierarchy, descendants included");
        assert_eq!(fs.process_count("/kubepods/besteffort"), None);
    }

    #[test]
    fn v2_enables_controllers_on_the_way_and_converts_shares() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::write(root.path().join("cgroup.controllers"), "cpuset cpu io memory pids\n").expect("write");
        std::fs::write(root.path().join("cgroup.subtree_control"), "memory\n").expect("write");
        let fs = CgroupFs::open(root.path()).expect("open");
        assert!(fs.is_v2());
        // The kernel makes the child's files; the fake tree pre-creates the level below.
        std::fs::create_dir(root.path().join("kubepods")).expect("mkdir");
        std::fs::write(root.path().join("kubepods/cgroup.controllers"), "cpu memory pids\n").expect("write");
        let res = CgroupResources {
            cpu_shares: Some(1024),
            cpu_quota: Some(-1),
            cpu_period: Some(100_000),
            memory_limit: Some(1 << 30),
            pids_limit: Some(100),
            hugepage_limits: vec![],
        };
        fs.create("/kubepods/pod1", &res).expect("create");
        // Plain files keep only the last write: the last controller enabled at each level.
        assert_eq!(read_file(root.path().join("cgroup.subtree_control")), "+pids");
        assert_eq!(read_file(root.path().join("kubepods/cgroup.subtree_control")), "+pids");
        let pod = root.path().join("kubepods/pod1");
        assert_eq!(read_file(pod.join("cpu.weight")), "39");
        assert_eq!(read_file(pod.join("cpu.max")), "max 100000");
        assert_eq!(read_file(pod.join("memory.max")), "1073741824");
        assert_eq!(read_file(pod.join("pids.max")), "100");
        assert!(fs.exists("/kubepods/pod1"));
    }

    #[test]
    fn remove_takes_the_tree_bottom_up_and_tolerates_what_is_gone() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::write(root.path().join("cgroup.controllers"), "cpu\n").expect("write");
        std::fs::create_dir_all(root.path().join("kubepods/pod1/c1")).expect("mkdir");
        let fs = CgroupFs::open(root.path()).expect("open");
        fs.remove("/kubepods/pod1").expect("remove");
        assert!(!root.path().join("kubepods/pod1").exists());
        assert!(root.path().join("kubepods").exists());
        fs.remove("/kubepods/pod1").expect("removing what is gone is fine");
    }

    #[test]
    fn shares_map_onto_weights_as_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 0);
    }
}
