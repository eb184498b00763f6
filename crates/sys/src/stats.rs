//! Resource usage for the kubelet's `/stats/summary`: cgroup CPU and memory, network interface
//! counters, filesystem capacity, directory disk usage, boot time and PID limits. Read from the
//! files, and with the arithmetic, of upstream's cAdvisor (and the runc cgroup readers it uses)
//! and of the kubelet's `pidlimit` package.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::str::FromStr;

use crate::cgroup_metrics;
use crate::error::{Error, Result, WrappedIoError};
use crate::fs::read_to_string;

/// Memory figures of one cgroup, derived as cAdvisor's `setMemoryStats` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// `memory.usage_in_bytes` (v1) or `memory.current` (v2).
    pub usage_bytes: u64,
    /// Usage minus inactive file pages, clamped at 0 (what eviction and `kubectl top` use).
    pub working_set_bytes: u64,
    pub rss_bytes: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
}

/// CPU and memory of one cgroup; a part is `None` when its controller's files are absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Cumulative CPU time in nanoseconds.
    pub cpu_usage_nanoseconds: Option<u64>,
    pub memory: Option<MemoryStats>,
}

/// A file's contents, `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(WrappedIoError::Read { err, path: path.to_path_buf() }.into()),
    }
}

/// A file holding one number (`cpuacct.usage`, `memory.current`, `pid_max`), `None` when absent.
fn read_number<T: FromStr>(path: &Path) -> Result<Option<T>> {
    let Some(text) = read_optional(path)? else { return Ok(None) };
    let text = text.trim();
    text.parse().map(Some).map_err(|_| {
        let err = io::Error::new(io::ErrorKind::InvalidData, format!("not a number: {text:?}"));
        Error::Io(WrappedIoError::Read { err, path: path.to_path_buf() })
    })
}

/// The value of `key` in `key value` lines (`memory.stat`, `cpu.stat`).
pub(crate) fn stat_field(stat: &str, key: &str) -> Option<u64> {
    stat.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key { v.trim().parse().ok() } else { None }
    })
}

impl From<&crate::cgroup_metrics::MemoryMetrics> for MemoryStats {
    /// The summary's figures out of cAdvisor's (one reader of `memory.stat` for both).
    fn from(m: &crate::cgroup_metrics::MemoryMetrics) -> Self {
        MemoryStats {
            usage_bytes: m.usage,
            working_set_bytes: m.working_set,
            rss_bytes: m.rss,
            page_faults: m.pgfault,
            major_page_faults: m.pgmajfault,
        }
    }
}

/// CPU and memory of `cgroup` (`/`, `/kubepods/pod<uid>`) under `cgroup_root`
/// (`/sys/fs/cgroup`). cgroup v2 when `<root>/cgroup.controllers` exists: `memory.current`,
/// `memory.stat` and `cpu.stat` of `<root>/<cgroup>`. Else v1: `memory/<cgroup>/` for
/// `memory.usage_in_bytes` and `memory.stat`, `cpuacct/<cgroup>/cpuacct.usage` (or under
/// `cpu,cpuacct/` when that directory is missing). Missing files give `None` for their part;
/// an existing file that cannot be read or parsed is an error.
pub fn cgroup_stats(cgroup_root: &Path, cgroup: &str) -> Result<CgroupStats> {
    let rel = cgroup.trim_start_matches('/');
    if cgroup_root.join("cgroup.controllers").exists() {
        let dir = cgroup_root.join(rel);
        let cpu_usage_nanoseconds =
            read_optional(&dir.join("cpu.stat"))?.and_then(|s| cgroup_metrics::parse_cpu_v2(&s)).map(|c| c.usage_ns);
        let memory = match read_optional(&dir.join("memory.stat"))? {
            Some(stat) => {
                let usage = cgroup_metrics::v2_usage(read_number(&dir.join("memory.current"))?, &stat);
                Some(MemoryStats::from(&cgroup_metrics::parse_memory_v2(usage, 0, 0, &stat, "")))
            }
            None => None,
        };
        return Ok(CgroupStats { cpu_usage_nanoseconds, memory });
    }
    let mem = cgroup_root.join("memory").join(rel);
    let memory = match read_number(&mem.join("memory.usage_in_bytes"))? {
        Some(usage) => read_optional(&mem.join("memory.stat"))?
            .map(|stat| MemoryStats::from(&cgroup_metrics::parse_memory_v1(usage, 0, 0, &stat))),
        None => None,
    };
    let mut cpu = cgroup_root.join("cpuacct").join(rel);
    if !cpu.is_dir() {
        cpu = cgroup_root.join("cpu,cpuacct").join(rel);
    }
    Ok(CgroupStats { cpu_usage_nanoseconds: read_number(&cpu.join("cpuacct.usage"))?, memory })
}

/// Counters of one network interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// cAdvisor's `ignoredDevicePrefixes`, matched case-insensitively at the start of the name (so
/// `lo` also drops e.g. `lowpan0`). Bridges and CNI devices (`cni0`, `flannel.1`, `cali*`) are
/// not in upstream's list and are reported.
const IGNORED_DEVICE_PREFIXES: &[&str] = &["lo", "veth", "docker", "nerdctl"];

/// `/proc/net/dev` text: two header lines, then `name: <8 rx counters> <8 tx counters>` (no
/// space is guaranteed after the colon). Devices cAdvisor ignores and malformed lines are
/// skipped.
pub fn parse_net_dev(text: &str) -> Vec<InterfaceStats> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let name = name.trim();
            let lower = name.to_ascii_lowercase();
            if name.is_empty() || IGNORED_DEVICE_PREFIXES.iter().any(|p| lower.starts_with(p)) {
                return None;
            }
            let f: Vec<u64> = rest.split_whitespace().map(|v| v.parse().ok()).collect::<Option<_>>()?;
            (f.len() == 16).then(|| InterfaceStats {
                name: name.to_string(),
                rx_bytes: f[0],
                rx_packets: f[1],
                rx_errors: f[2],
                rx_dropped: f[3],
                tx_bytes: f[8],
                tx_packets: f[9],
                tx_errors: f[10],
                tx_dropped: f[11],
            })
        })
        .collect()
}

/// Reads and parses a `/proc/net/dev`-format file (`/proc/net/dev`, `/proc/<pid>/net/dev`).
pub fn net_dev(path: &Path) -> Result<Vec<InterfaceStats>> {
    Ok(parse_net_dev(&read_to_string(path)?))
}

/// Size and use of the filesystem holding a path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsInfo {
    pub capacity_bytes: u64,
    pub available_bytes: u64,
    pub used_bytes: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

/// statvfs of `path`, as cAdvisor's `GetDirFsInfo`: capacity = blocks × frsize, available =
/// bavail × frsize (what unprivileged users may still use), used = (blocks − bfree) × frsize,
/// inodes = files, inodes_free = ffree.
pub fn fs_info(path: &Path) -> Result<FsInfo> {
    let st = nix::sys::statvfs::statvfs(path)
        .map_err(|e| Error::Io(WrappedIoError::Stat { path: path.to_path_buf(), err: io::Error::from(e) }))?;
    let size = st.fragment_size();
    Ok(FsInfo {
        capacity_bytes: st.blocks().saturating_mul(size),
        available_bytes: st.blocks_available().saturating_mul(size),
        used_bytes: st.blocks().saturating_sub(st.blocks_free()).saturating_mul(size),
        inodes: st.files(),
        inodes_free: st.files_free(),
    })
}

/// Space and inodes used below a directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    pub bytes: u64,
    pub inodes: u64,
}

/// Upstream's `fs.DiskUsage` (cAdvisor `GetDirUsage`) walk of `path`, the top entry included:
/// entries are lstat'ed (symlinks are counted, never followed), entries on another device than
/// the top are skipped and not descended into, hard-linked files (nlink > 1) count once per
/// (device, inode); bytes += `st_blocks` × 512 and inodes += 1 per entry. Entries that vanish
/// during the walk are passed over; a missing `path` is an error.
pub fn disk_usage(path: &Path) -> Result<DiskUsage> {
    let stat_err = |err, p: &Path| Error::Io(WrappedIoError::Stat { err, path: p.to_path_buf() });
    let top = std::fs::symlink_metadata(path).map_err(|e| stat_err(e, path))?;
    let dev = top.dev();
    let mut seen = HashSet::new();
    let mut usage = DiskUsage::default();
    let mut stack = vec![(path.to_path_buf(), top)];
    while let Some((p, md)) = stack.pop() {
        if md.dev() != dev || (md.nlink() > 1 && !seen.insert((md.dev(), md.ino()))) {
            continue;
        }
        usage.bytes = usage.bytes.saturating_add(md.blocks().saturating_mul(512));
        usage.inodes += 1;
        if !md.is_dir() {
            continue;
        }
        let entries = match std::fs::read_dir(&p) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(WrappedIoError::ReadDir { err, path: p }.into()),
        };
        for entry in entries {
            let child = entry.map_err(|err| WrappedIoError::ReadDir { err, path: p.clone() })?.path();
            match std::fs::symlink_metadata(&child) {
                Ok(md) => stack.push((child, md)),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(stat_err(err, &child)),
            }
        }
    }
    Ok(usage)
}

/// Boot time in seconds since the epoch: `btime` of `/proc/stat`; `None` if it cannot be read.
pub fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

/// The node's process limits (summary `rlimit`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rlimit {
    /// System-wide task limit: min(`kernel.pid_max`, `kernel.threads-max`).
    pub max_pid: i64,
    /// Tasks that exist now.
    pub cur_proc: i64,
}

/// `/proc/loadavg` (`0.00 0.01 0.05 1/234 5678`) → the task count after the `/` (234).
pub fn parse_loadavg_procs(text: &str) -> Option<i64> {
    text.split_whitespace().nth(3)?.split_once('/')?.1.parse().ok()
}

/// Upstream's `pidlimit.Stats`: max_pid is the smaller of `/proc/sys/kernel/pid_max` and
/// `/proc/sys/kernel/threads-max` (a missing one is passed over; both missing is an error);
/// cur_proc comes from `/proc/loadavg`, falling back to sysinfo(2)'s (16-bit) process count.
pub fn rlimit() -> Result<Rlimit> {
    let pid_max = Path::new("/proc/sys/kernel/pid_max");
    let threads_max = Path::new("/proc/sys/kernel/threads-max");
    let limits = [read_number::<i64>(pid_max)?, read_number::<i64>(threads_max)?];
    let max_pid = limits.into_iter().flatten().min().ok_or_else(|| {
        Error::Io(WrappedIoError::Read { err: io::ErrorKind::NotFound.into(), path: pid_max.to_path_buf() })
    })?;
    let cur_proc = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| parse_loadavg_procs(&t))
        .or_else(|| nix::sys::sysinfo::sysinfo().ok().map(|i| i64::from(i.process_count())))
        .unwrap_or(0);
    Ok(Rlimit { max_pid, cur_proc })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{create_dir_all, write};

    const STAT_V1: &str = "cache 1000\nrss 200\npgfault 70\npgmajfault 2\ninactive_file 10\n\
        hierarchical_memory_limit 9223372036854771712\ntotal_cache 52428800\ntotal_rss 104857600\n\
        total_pgfault 123456\ntotal_pgmajfault 789\ntotal_inactive_file 20971520\ntotal_active_file 31457280\n";
    const STAT_V2: &str = "anon 104857600\nfile 52428800\nkernel_stack 65536\nactive_file 31457280\n\
        inactive_file 20971520\nworkingset_refault_file 0\npgfault 123456\npgmajfault 789\n";

    #[test]
    fn summary_memory_comes_from_cadvisors_figures() {
        let m = MemoryStats::from(&cgroup_metrics::parse_memory_v1(200 << 20, 0, 0, STAT_V1));
        assert_eq!(m.usage_bytes, 200 << 20);
        assert_eq!(m.working_set_bytes, (200 << 20) - 20_971_520);
        assert_eq!((m.rss_bytes, m.page_faults, m.major_page_faults), (104_857_600, 70, 2));
        let root = MemoryStats::from(&cgroup_metrics::parse_memory_v2(
            cgroup_metrics::v2_usage(None, STAT_V2),
            0,
            0,
            STAT_V2,
            "",
        ));
        assert_eq!(root.usage_bytes, 104_857_600 + 52_428_800, "root: anon + file");
        assert_eq!(root.working_set_bytes, 104_857_600 + 52_428_800 - 20_971_520);
        assert_eq!((root.rss_bytes, root.page_faults, root.major_page_faults), (104_857_600, 123_456, 789));
    }

    #[test]
    fn cgroup_stats_v1_tree() {
        let root = tempfile::tempdir().unwrap();
        let mem = root.path().join("memory/kubepods/pod1");
        create_dir_all(&mem).unwrap();
        write(mem.join("memory.usage_in_bytes"), "209715200\n").unwrap();
        write(mem.join("memory.stat"), STAT_V1).unwrap();
        let cpu = root.path().join("cpu,cpuacct/kubepods/pod1");
        create_dir_all(&cpu).unwrap();
        write(cpu.join("cpuacct.usage"), "987654321\n").unwrap();
        let s = cgroup_stats(root.path(), "/kubepods/pod1").unwrap();
        assert_eq!(s.cpu_usage_nanoseconds, Some(987_654_321));
        assert_eq!(s.memory.unwrap().working_set_bytes, 209_715_200 - 20_971_520);

        create_dir_all(root.path().join("cpuacct/kubepods/pod1")).unwrap();
        let s = cgroup_stats(root.path(), "/kubepods/pod1").unwrap();
        assert_eq!(s.cpu_usage_nanoseconds, None, "cpuacct dir exists but has no cpuacct.usage");
        assert_eq!(cgroup_stats(root.path(), "/nope").unwrap(), CgroupStats::default());
        write(mem.join("memory.usage_in_bytes"), "lots").unwrap();
        let err = cgroup_stats(root.path(), "/kubepods/pod1").unwrap_err().to_string();
        assert!(err.contains("memory.usage_in_bytes") && err.contains("not a number"), "{err}");
    }

    #[test]
    fn cgroup_stats_v2_tree_and_root() {
        let root = tempfile::tempdir().unwrap();
        write(root.path().join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        write(root.path().join("memory.stat"), STAT_V2).unwrap();
        write(root.path().join("cpu.stat"), "usage_usec 5000\nuser_usec 3000\n").unwrap();
        let pod = root.path().join("kubepods/pod1");
        create_dir_all(&pod).unwrap();
        write(pod.join("memory.current"), "167772160\n").unwrap();
        write(pod.join("memory.stat"), STAT_V2).unwrap();

        let s = cgroup_stats(root.path(), "/").unwrap();
        assert_eq!(s.cpu_usage_nanoseconds, Some(5_000_000));
        assert_eq!(s.memory.unwrap().usage_bytes, 104_857_600 + 52_428_800);
        let s = cgroup_stats(root.path(), "/kubepods/pod1").unwrap();
        assert_eq!(s.cpu_usage_nanoseconds, None, "no cpu.stat");
        assert_eq!(s.memory.unwrap().usage_bytes, 167_772_160);
        assert_eq!(s.memory.unwrap().working_set_bytes, 167_772_160 - 20_971_520);
    }

    #[test]
    fn net_dev_skips_ignored_devices() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo: 321054146  449671    0    0    0     0          0         0 321054146  449671    0    0    0     0       0          0\n  \
eth0:199003932   11403    3    0    0     0          0         0   719643    7466    4    0    0     0       0          0\n\
veth1234: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n Docker0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n  \
cni0: 10 2 0 0 0 0 0 0 20 2 0 0 0 0 0 0\n  bad: 1 2 3\n";
        let want = vec![
            InterfaceStats {
                name: "eth0".into(),
                rx_bytes: 199_003_932,
                rx_packets: 11403,
                rx_errors: 3,
                tx_bytes: 719_643,
                tx_packets: 7466,
                tx_errors: 4,
                ..Default::default()
            },
            InterfaceStats {
                name: "cni0".into(),
                rx_bytes: 10,
                rx_packets: 2,
                tx_bytes: 20,
                tx_packets: 2,
                ..Default::default()
            },
        ];
        assert_eq!(parse_net_dev(text), want);
    }

    #[test]
    fn disk_usage_walk() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("vol");
        create_dir_all(top.join("a/b")).unwrap();
        write(top.join("a/b/f"), vec![7u8; 64 * 1024]).unwrap();
        std::fs::hard_link(top.join("a/b/f"), top.join("hard")).unwrap();
        write(dir.path().join("outside"), vec![1u8; 1 << 20]).unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), top.join("link")).unwrap();
        let u = disk_usage(&top).unwrap();
        assert_eq!(u.inodes, 5, "vol, a, b, f (once), link: {u:?}");
        let blocks: u64 = ["", "a", "a/b", "a/b/f", "link"]
            .iter()
            .map(|p| std::fs::symlink_metadata(top.join(p)).unwrap().blocks() * 512)
            .sum();
        assert_eq!(u.bytes, blocks);
        assert!(u.bytes >= 64 * 1024 && u.bytes < 1 << 20, "the symlink target is not counted: {u:?}");
        let err = disk_usage(&dir.path().join("missing")).unwrap_err();
        assert!(err.is_not_found() && err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn loadavg_procs() {
        assert_eq!(parse_loadavg_procs("0.00 0.01 0.05 1/234 5678\n"), Some(234));
        assert_eq!(parse_loadavg_procs("0.00 0.01 0.05\n"), None);
    }

    #[test]
    fn readers_on_this_machine() {
        let root = Path::new("/sys/fs/cgroup");
        if !root.exists() {
            return;
        }
        let s = cgroup_stats(root, "/").unwrap();
        assert!(s.cpu_usage_nanoseconds.unwrap_or(0) > 0, "{s:?}");
        assert!(s.memory.is_some_and(|m| m.working_set_bytes > 0), "{s:?}");
        let fs = fs_info(Path::new("/")).unwrap();
        assert!(fs.capacity_bytes > 0 && fs.used_bytes <= fs.capacity_bytes, "{fs:?}");
        net_dev(Path::new("/proc/net/dev")).unwrap();
        let r = rlimit().unwrap();
        assert!(r.max_pid > 0 && r.cur_proc > 0, "{r:?}");
        assert!(boot_time().unwrap_or(0) > 1_000_000_000);
    }
}
