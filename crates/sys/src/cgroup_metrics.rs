//! Everything cAdvisor reports of one cgroup for `/metrics/cadvisor`: CPU (total, user,
//! system, CFS throttling), memory (usage, peak, failures, cache, rss, swap, mapped files,
//! working set, faults, OOM kills), threads, and the limits it was given. Read from the files,
//! and with the arithmetic, of cAdvisor's libcontainer handler and the runc readers it uses, on
//! cgroup v1 (one directory per controller) and v2 (one unified directory).

use std::path::Path;

use crate::error::Result;
use crate::stats::{read_optional, stat_field as field};

/// Kernel ticks per second for `cpuacct.stat` (`USER_HZ`, 100 on every Linux ABI).
const USER_HZ: u64 = 100;

/// CPU counters, in nanoseconds where they are times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuMetrics {
    pub usage_ns: u64,
    pub user_ns: u64,
    pub system_ns: u64,
    /// CFS enforcement periods elapsed, throttled, and the time throttled.
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

/// Memory figures as cAdvisor's `setMemoryStats` derives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryMetrics {
    pub usage: u64,
    pub max_usage: u64,
    pub failcnt: u64,
    pub cache: u64,
    pub rss: u64,
    pub swap: u64,
    pub mapped_file: u64,
    pub working_set: u64,
    pub pgfault: u64,
    pub pgmajfault: u64,
    /// OOM kills in the cgroup, where the kernel counts them.
    pub oom_kills: Option<u64>,
}

/// The limits the cgroup holds (cAdvisor's `ContainerSpec` cpu and memory). Unlimited values
/// are `None` (quota) or the kernel's huge number (memory).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupSpec {
    pub cpu_shares: Option<u64>,
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<u64>,
    pub memory_limit: Option<u64>,
    pub memory_reservation: Option<u64>,
    pub swap_limit: Option<u64>,
}

/// One cgroup's figures; a part is `None` when its controller's files are absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupMetrics {
    pub cpu: Option<CpuMetrics>,
    pub memory: Option<MemoryMetrics>,
    /// Processes directly in the cgroup (`cgroup.procs`, not its children).
    pub processes: Option<u64>,
    /// Tasks (threads) now (`pids.current`) and allowed (`pids.max`, 0 for unlimited).
    pub threads: Option<u64>,
    pub threads_max: Option<u64>,
    pub spec: CgroupSpec,
}

/// A one-number file; `None` when absent, or holding `max` or something else than a number.
fn number(path: &Path) -> Result<Option<u64>> {
    Ok(read_optional(path)?.and_then(|t| t.trim().parse().ok()))
}

/// The number of processes listed in the directory's `cgroup.procs`.
fn processes(dir: &Path) -> Result<Option<u64>> {
    Ok(read_optional(&dir.join("cgroup.procs"))?.map(|t| t.lines().filter(|l| !l.trim().is_empty()).count() as u64))
}

/// v1 `cpuacct.usage`, `cpuacct.stat` (user/system in USER_HZ ticks) and the cpu controller's
/// `cpu.stat` (`nr_periods`, `nr_throttled`, `throttled_time` in ns).
pub fn parse_cpu_v1(usage: u64, cpuacct_stat: &str, cpu_stat: &str) -> CpuMetrics {
    let ticks = |k: &str| field(cpuacct_stat, k).unwrap_or(0).saturating_mul(1_000_000_000 / USER_HZ);
    let f = |k: &str| field(cpu_stat, k).unwrap_or(0);
    CpuMetrics {
        usage_ns: usage,
        user_ns: ticks("user"),
        system_ns: ticks("system"),
        periods: f("nr_periods"),
        throttled_periods: f("nr_throttled"),
        throttled_ns: f("throttled_time"),
    }
}

/// v2 `cpu.stat`: `usage_usec`, `user_usec`, `system_usec`, `nr_periods`, `nr_throttled`,
/// `throttled_usec`. `None` without `usage_usec`.
pub fn parse_cpu_v2(cpu_stat: &str) -> Option<CpuMetrics> {
    let us = |k: &str| field(cpu_stat, k).unwrap_or(0).saturating_mul(1000);
    Some(CpuMetrics {
        usage_ns: field(cpu_stat, "usage_usec")?.saturating_mul(1000),
        user_ns: us("user_usec"),
        system_ns: us("system_usec"),
        periods: field(cpu_stat, "nr_periods").unwrap_or(0),
        throttled_periods: field(cpu_stat, "nr_throttled").unwrap_or(0),
        throttled_ns: us("throttled_usec"),
    })
}

/// v1 memory (hierarchical, as `use_hierarchy` is on): cache, rss, swap and mapped files are
/// the `total_*` keys, faults the cgroup's own `pgfault`/`pgmajfault`, working set = usage −
/// `total_inactive_file` (clamped at 0).
pub fn parse_memory_v1(usage: u64, max_usage: u64, failcnt: u64, stat: &str) -> MemoryMetrics {
    let f = |k: &str| field(stat, k).unwrap_or(0);
    MemoryMetrics {
        usage,
        max_usage,
        failcnt,
        cache: f("total_cache"),
        rss: f("total_rss"),
        swap: f("total_swap"),
        mapped_file: f("total_mapped_file"),
        working_set: usage.saturating_sub(f("total_inactive_file")),
        pgfault: f("pgfault"),
        pgmajfault: f("pgmajfault"),
        oom_kills: None,
    }
}

/// v2 memory: cache = `file`, rss = `anon`, mapped files = `file_mapped`, working set = usage −
/// `inactive_file`; failures are `max` events of `memory.events`, OOM kills its `oom_kill`.
pub fn parse_memory_v2(usage: u64, max_usage: u64, swap: u64, stat: &str, events: &str) -> MemoryMetrics {
    let f = |k: &str| field(stat, k).unwrap_or(0);
    MemoryMetrics {
        usage,
        max_usage,
        failcnt: field(events, "max").unwrap_or(0),
        cache: f("file"),
        rss: f("anon"),
        swap,
        mapped_file: f("file_mapped"),
        working_set: usage.saturating_sub(f("inactive_file")),
        pgfault: f("pgfault"),
        pgmajfault: f("pgmajfault"),
        oom_kills: field(events, "oom_kill"),
    }
}

/// v2 usage: `memory.current`, or for the root (which has none) `anon` + `file` of
/// `memory.stat`, as runc's `rootStatsFromMeminfo`.
pub fn v2_usage(current: Option<u64>, stat: &str) -> u64 {
    current.unwrap_or_else(|| field(stat, "anon").unwrap_or(0).saturating_add(field(stat, "file").unwrap_or(0)))
}

/// runc's inverse of the shares → weight mapping, as cAdvisor reads `cpu.weight` back.
pub fn weight_to_shares(weight: u64) -> u64 {
    if weight == 0 {
        return 0;
    }
    2 + (weight - 1) * 262_142 / 9999
}

/// v2 `cpu.max` (`max 100000`, `50000 100000`) → (quota, period); no quota when unlimited.
pub fn parse_cpu_max(text: &str) -> (Option<u64>, Option<u64>) {
    let mut it = text.split_whitespace();
    let quota = it.next().and_then(|q| q.parse().ok());
    (quota, it.next().and_then(|p| p.parse().ok()))
}

/// v1: the figures of a cgroup from its directories in the cpu, cpuacct, memory and pids
/// hierarchies (any of which may be missing).
pub fn read_v1(cpu: &Path, cpuacct: &Path, memory: &Path, pids: &Path) -> Result<CgroupMetrics> {
    let cpu_metrics = match number(&cpuacct.join("cpuacct.usage"))? {
        Some(usage) => Some(parse_cpu_v1(
            usage,
            &read_optional(&cpuacct.join("cpuacct.stat"))?.unwrap_or_default(),
            &read_optional(&cpu.join("cpu.stat"))?.unwrap_or_default(),
        )),
        None => None,
    };
    let memory_metrics =
        match (number(&memory.join("memory.usage_in_bytes"))?, read_optional(&memory.join("memory.stat"))?) {
            (Some(usage), Some(stat)) => {
                let mut m = parse_memory_v1(
                    usage,
                    number(&memory.join("memory.max_usage_in_bytes"))?.unwrap_or(0),
                    number(&memory.join("memory.failcnt"))?.unwrap_or(0),
                    &stat,
                );
                m.oom_kills = read_optional(&memory.join("memory.oom_control"))?.and_then(|t| field(&t, "oom_kill"));
                Some(m)
            }
            _ => None,
        };
    // cAdvisor reads a quota of -1 (unlimited) as none.
    let quota = read_optional(&cpu.join("cpu.cfs_quota_us"))?.and_then(|q| q.trim().parse::<i64>().ok());
    let spec = CgroupSpec {
        cpu_shares: number(&cpu.join("cpu.shares"))?,
        cpu_period: number(&cpu.join("cpu.cfs_period_us"))?,
        cpu_quota: quota.and_then(|q| u64::try_from(q).ok()),
        memory_limit: number(&memory.join("memory.limit_in_bytes"))?,
        memory_reservation: number(&memory.join("memory.soft_limit_in_bytes"))?,
        swap_limit: number(&memory.join("memory.memsw.limit_in_bytes"))?,
    };
    let threads_max = read_optional(&pids.join("pids.max"))?.map(|t| t.trim().parse().unwrap_or(0));
    Ok(CgroupMetrics {
        cpu: cpu_metrics,
        memory: memory_metrics,
        processes: processes(cpuacct)?,
        threads: number(&pids.join("pids.current"))?,
        threads_max,
        spec,
    })
}

/// v2: the figures of the cgroup at `dir`. The root has no `memory.current`; its usage is
/// `anon` + `file`, as runc's `rootStatsFromMeminfo`.
pub fn read_v2(dir: &Path) -> Result<CgroupMetrics> {
    let cpu = read_optional(&dir.join("cpu.stat"))?.and_then(|s| parse_cpu_v2(&s));
    let memory = match read_optional(&dir.join("memory.stat"))? {
        Some(stat) => {
            let usage = v2_usage(number(&dir.join("memory.current"))?, &stat);
            let events = read_optional(&dir.join("memory.events"))?.unwrap_or_default();
            Some(parse_memory_v2(
                usage,
                number(&dir.join("memory.peak"))?.unwrap_or(0),
                number(&dir.join("memory.swap.current"))?.unwrap_or(0),
                &stat,
                &events,
            ))
        }
        None => None,
    };
    let (quota, period) = read_optional(&dir.join("cpu.max"))?.map_or((None, None), |t| parse_cpu_max(&t));
    let spec = CgroupSpec {
        cpu_shares: number(&dir.join("cpu.weight"))?.map(weight_to_shares),
        cpu_period: period,
        cpu_quota: quota,
        memory_limit: number(&dir.join("memory.max"))?,
        memory_reservation: number(&dir.join("memory.min"))?,
        swap_limit: number(&dir.join("memory.swap.max"))?,
    };
    let threads_max = read_optional(&dir.join("pids.max"))?.map(|t| t.trim().parse().unwrap_or(0));
    Ok(CgroupMetrics {
        cpu,
        memory,
        processes: processes(dir)?,
        threads: number(&dir.join("pids.current"))?,
        threads_max,
        spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{create_dir_all, write};

    #[test]
    fn v1_cpu_counts_ticks_and_throttling() {
        let c = parse_cpu_v1(
            5_000_000_000,
            "user 300\nsystem 120\n",
            "nr_periods 40\nnr_throttled 3\nthrottled_time 7000\n",
        );
        assert_eq!(c.usage_ns, 5_000_000_000);
        assert_eq!((c.user_ns, c.system_ns), (3_000_000_000, 1_200_000_000));
        assert_eq!((c.periods, c.throttled_periods, c.throttled_ns), (40, 3, 7000));
    }

    #[test]
    fn v2_cpu_is_in_microseconds() {
        let c = parse_cpu_v2(
            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 9\nnr_throttled 2\nthrottled_usec 40\n",
        )
        .unwrap();
        assert_eq!((c.usage_ns, c.user_ns, c.system_ns), (2_500_000, 2_000_000, 500_000));
        assert_eq!((c.periods, c.throttled_periods, c.throttled_ns), (9, 2, 40_000));
        assert_eq!(parse_cpu_v2("user_usec 1\n"), None);
    }

    #[test]
    fn memory_keys_per_version() {
        let v1 = "cache 1\nrss 2\npgfault 70\npgmajfault 2\ntotal_cache 500\ntotal_rss 300\ntotal_swap 9\n\
            total_mapped_file 40\ntotal_inactive_file 100\n";
        let m = parse_memory_v1(1000, 1500, 4, v1);
        assert_eq!((m.cache, m.rss, m.swap, m.mapped_file), (500, 300, 9, 40));
        assert_eq!((m.working_set, m.max_usage, m.failcnt, m.pgfault, m.pgmajfault), (900, 1500, 4, 70, 2));
        assert_eq!(parse_memory_v1(50, 0, 0, v1).working_set, 0, "clamped at 0");

        let v2 = "anon 300\nfile 500\nfile_mapped 40\ninactive_file 100\npgfault 70\npgmajfault 2\n";
        let m = parse_memory_v2(1000, 1200, 8, v2, "low 0\nhigh 0\nmax 6\noom 1\noom_kill 1\n");
        assert_eq!((m.cache, m.rss, m.swap, m.mapped_file, m.working_set), (500, 300, 8, 40, 900));
        assert_eq!((m.failcnt, m.oom_kills), (6, Some(1)));
    }

    #[test]
    fn cpu_max_and_weight() {
        assert_eq!(parse_cpu_max("max 100000\n"), (None, Some(100_000)));
        assert_eq!(parse_cpu_max("50000 100000\n"), (Some(50_000), Some(100_000)));
        assert_eq!(weight_to_shares(crate::cgroup::shares_to_weight(1024)), 998, "the round trip loses a little");
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(0), 0);
    }

    #[test]
    fn reads_a_v1_and_a_v2_cgroup() {
        let root = tempfile::tempdir().unwrap();
        let dir = |c: &str| {
            let d = root.path().join(c).join("kubepods/pod1");
            create_dir_all(&d).unwrap();
            d
        };
        let (cpu, acct, mem, pids) = (dir("cpu"), dir("cpuacct"), dir("memory"), dir("pids"));
        write(acct.join("cpuacct.usage"), "900\n").unwrap();
        write(acct.join("cpuacct.stat"), "user 1\nsystem 2\n").unwrap();
        write(cpu.join("cpu.stat"), "nr_periods 5\nnr_throttled 1\nthrottled_time 10\n").unwrap();
        write(cpu.join("cpu.shares"), "256\n").unwrap();
        write(cpu.join("cpu.cfs_period_us"), "100000\n").unwrap();
        write(cpu.join("cpu.cfs_quota_us"), "-1\n").unwrap();
        write(mem.join("memory.usage_in_bytes"), "4096\n").unwrap();
        write(mem.join("memory.max_usage_in_bytes"), "8192\n").unwrap();
        write(mem.join("memory.failcnt"), "0\n").unwrap();
        write(mem.join("memory.stat"), "total_rss 1024\ntotal_inactive_file 96\n").unwrap();
        write(mem.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        write(mem.join("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").unwrap();
        write(pids.join("pids.current"), "3\n").unwrap();
        write(acct.join("cgroup.procs"), "12\n34\n").unwrap();
        write(pids.join("pids.max"), "max\n").unwrap();
        let m = read_v1(&cpu, &acct, &mem, &pids).unwrap();
        let c = m.cpu.unwrap();
        assert_eq!((c.usage_ns, c.user_ns, c.system_ns, c.periods), (900, 10_000_000, 20_000_000, 5));
        let mm = m.memory.unwrap();
        assert_eq!((mm.usage, mm.max_usage, mm.rss, mm.working_set, mm.oom_kills), (4096, 8192, 1024, 4000, Some(2)));
        assert_eq!(m.spec.cpu_shares, Some(256));
        assert_eq!((m.spec.cpu_period, m.spec.cpu_quota), (Some(100_000), None), "-1 is no quota");
        assert_eq!(m.spec.memory_limit, Some(9_223_372_036_854_771_712));
        assert_eq!((m.spec.memory_reservation, m.spec.swap_limit), (None, None), "files absent");
        assert_eq!((m.processes, m.threads, m.threads_max), (Some(2), Some(3), Some(0)));

        let missing = root.path().join("nothing");
        let none = read_v1(&missing, &missing, &missing, &missing).unwrap();
        assert_eq!((none.cpu, none.memory, none.threads), (None, None, None));

        let v2 = root.path().join("unified/kubepods");
        create_dir_all(&v2).unwrap();
        write(v2.join("cpu.stat"), "usage_usec 10\nuser_usec 6\nsystem_usec 4\n").unwrap();
        write(v2.join("cpu.max"), "20000 100000\n").unwrap();
        write(v2.join("cpu.weight"), "100\n").unwrap();
        write(v2.join("memory.stat"), "anon 100\nfile 50\ninactive_file 20\n").unwrap();
        write(v2.join("memory.max"), "max\n").unwrap();
        let m = read_v2(&v2).unwrap();
        assert_eq!(m.cpu.unwrap().usage_ns, 10_000);
        assert_eq!(m.memory.unwrap().usage, 150, "no memory.current: anon + file");
        assert_eq!(m.memory.unwrap().working_set, 130);
        assert_eq!((m.spec.cpu_quota, m.spec.cpu_period, m.spec.cpu_shares), (Some(20_000), Some(100_000), Some(2597)));
        assert_eq!(m.spec.memory_limit, None, "max is unlimited");
    }
}
