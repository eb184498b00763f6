//! This process's resource use from `/proc/self`, for the `process_*` metrics.

/// What client_golang's process collector reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcStat {
    pub cpu_seconds: f64,
    pub start_time_seconds: f64,
    pub virtual_bytes: u64,
    pub resident_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
}

/// Parses `/proc/<pid>/stat` (the command name may hold spaces and parentheses) with the clock
/// tick rate, page size and boot time (`btime` of `/proc/stat`).
pub fn parse_stat(stat: &str, ticks_per_second: u64, page_size: u64, boot_time: u64) -> Option<ProcStat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let ticks = ticks_per_second.max(1) as f64;
    Some(ProcStat {
        cpu_seconds: (num(11)? + num(12)?) as f64 / ticks,
        start_time_seconds: boot_time as f64 + num(19)? as f64 / ticks,
        virtual_bytes: num(20)?,
        resident_bytes: num(21)? * page_size,
        ..Default::default()
    })
}

/// The soft "Max open files" of `/proc/<pid>/limits`.
pub fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// This process's figures; zeros where `/proc` does not answer.
pub fn proc_self_stat() -> ProcStat {
    use nix::unistd::{SysconfVar, sysconf};
    let ticks = sysconf(SysconfVar::CLK_TCK).ok().flatten().map_or(100, |v| v as u64);
    let page = sysconf(SysconfVar::PAGE_SIZE).ok().flatten().map_or(4096, |v| v as u64);
    let mut s = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|st| parse_stat(&st, ticks, page, crate::stats::boot_time().unwrap_or(0)))
        .unwrap_or_default();
    s.open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
    s.max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|l| parse_max_fds(&l)).unwrap_or(0);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let stat = "4242 (rk (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1000 123456789 300 18446744073709551615";
        let s = parse_stat(stat, 100, 4096, 1_700_000_000).expect("parse");
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.start_time_seconds, 1_700_000_010.0);
        assert_eq!((s.virtual_bytes, s.resident_bytes), (123_456_789, 300 * 4096));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1048576              1048576              files\n";
        assert_eq!(parse_max_fds(limits), Some(1_048_576));
        let me = proc_self_stat();
        assert!(me.resident_bytes > 0 && me.open_fds > 0 && me.start_time_seconds > 0.0, "{me:?}");
    }
}
