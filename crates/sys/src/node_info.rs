//! Facts about the machine for the Node object: CPU count, memory, filesystem size, hugepages,
//! machine/system/boot IDs, kernel and OS names, and the IPv4 address of the default route's
//! interface. Read from the same files upstream's cAdvisor reads.

use std::path::Path;

use crate::error::{Error, Result, WrappedIoError};
use crate::fs::read_to_string;

/// Capacity and identity of the machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineInfo {
    pub num_cpus: u64,
    /// Distinct (package, core) pairs and packages of the online CPUs (cAdvisor's physical
    /// cores and sockets); 0 when the topology cannot be read.
    pub num_physical_cores: u64,
    pub num_sockets: u64,
    pub memory_bytes: u64,
    /// Hugepage size in KiB → total pages × size in bytes.
    pub hugepages: Vec<(u64, u64)>,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
}

/// Reads the machine's facts. Missing identity files give empty strings (containers, some VMs);
/// unreadable CPU or memory counts are errors.
pub fn machine_info() -> Result<MachineInfo> {
    let meminfo = read_to_string(Path::new("/proc/meminfo"))?;
    let memory_bytes = parse_meminfo_total(&meminfo).ok_or_else(|| {
        Error::Io(WrappedIoError::Read { path: "/proc/meminfo".into(), err: std::io::Error::other("no MemTotal line") })
    })?;
    let num_cpus = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
    let os_release = read_to_string(Path::new("/etc/os-release")).unwrap_or_default();
    let (num_physical_cores, num_sockets) = cpu_topology(Path::new("/sys/devices/system/cpu"));
    Ok(MachineInfo {
        num_cpus,
        num_physical_cores,
        num_sockets,
        memory_bytes,
        hugepages: hugepages(Path::new("/sys/kernel/mm/hugepages")),
        machine_id: first_line(&["/etc/machine-id", "/var/lib/dbus/machine-id"]),
        system_uuid: first_line(&["/sys/class/dmi/id/product_uuid", "/proc/device-tree/system-id"]),
        boot_id: first_line(&["/proc/sys/kernel/random/boot_id"]),
        kernel_version: first_line(&["/proc/sys/kernel/osrelease"]),
        os_image: parse_os_release_pretty_name(&os_release).unwrap_or_else(|| "Linux".into()),
    })
}

fn first_line(paths: &[&str]) -> String {
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.lines().next().unwrap_or_default().trim().trim_end_matches('\0').to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_default()
}

/// (physical cores, sockets) from `cpu<N>/topology/{physical_package_id,core_id}` under `dir`.
pub fn cpu_topology(dir: &Path) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return (0, 0) };
    let mut cores = std::collections::BTreeSet::new();
    let mut sockets = std::collections::BTreeSet::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.strip_prefix("cpu").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        let read =
            |f: &str| std::fs::read_to_string(e.path().join("topology").join(f)).ok()?.trim().parse::<i64>().ok();
        if let (Some(package), Some(core)) = (read("physical_package_id"), read("core_id")) {
            sockets.insert(package);
            cores.insert((package, core));
        }
    }
    (cores.len() as u64, sockets.len() as u64)
}

/// `MemTotal:  16384 kB` → bytes.
pub fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"` → the name (upstream's osImage).
pub fn parse_os_release_pretty_name(text: &str) -> Option<String> {
    let v = text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME="))?;
    Some(v.trim().trim_matches('"').trim_matches('\'').to_string())
}

/// Hugepage pools: `hugepages-2048kB/nr_hugepages` → (2048, pages × 2 MiB).
fn hugepages(dir: &Path) -> Vec<(u64, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(u64, u64)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let kb: u64 = name.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse().ok()?;
            let pages: u64 = std::fs::read_to_string(e.path().join("nr_hugepages")).ok()?.trim().parse().ok()?;
            Some((kb, pages.saturating_mul(kb).saturating_mul(1024)))
        })
        .collect();
    out.sort_unstable();
    out
}

/// Total bytes of the filesystem holding `path` (ephemeral-storage capacity).
pub fn filesystem_capacity(path: &Path) -> Result<u64> {
    let st = nix::sys::statvfs::statvfs(path)
        .map_err(|e| Error::Io(WrappedIoError::Stat { path: path.to_path_buf(), err: std::io::Error::from(e) }))?;
    Ok(st.blocks().saturating_mul(st.fragment_size()))
}

/// The interface of the IPv4 default route, from `/proc/net/route` text.
pub fn parse_default_route_interface(route: &str) -> Option<String> {
    route.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Iface Destination Gateway Flags …; RTF_UP = 0x1.
        let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
        (f.get(1) == Some(&"00000000") && flags & 1 == 1).then(|| f[0].to_string())
    })
}

/// The first IPv4 address of the default route's interface (upstream's fallback node IP when
/// `--node-ip` is unset and the hostname does not resolve).
pub fn default_route_ipv4() -> Option<std::net::Ipv4Addr> {
    let route = std::fs::read_to_string("/proc/net/route").ok()?;
    let iface = parse_default_route_interface(&route)?;
    nix::ifaddrs::getifaddrs().ok()?.find_map(|a| {
        if a.interface_name != iface {
            return None;
        }
        a.address.as_ref()?.as_sockaddr_in().map(|s| s.ip())
    })
}

/// Every IP address assigned to an interface of this host.
pub fn local_addresses() -> Vec<std::net::IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    addrs
        .filter_map(|a| {
            let sa = a.address?;
            sa.as_sockaddr_in()
                .map(|s| std::net::IpAddr::V4(s.ip()))
                .or_else(|| sa.as_sockaddr_in6().map(|s| std::net::IpAddr::V6(s.ip())))
        })
        .collect()
}

/// Upstream's node IP without `--node-ip` (nodestatus `NodeAddress`): the hostname itself when
/// it is an IP; else the first IPv4 address the node name resolves to that is usable (not
/// loopback, link-local, multicast or unspecified, and assigned to this host — so Debian's
/// `127.0.1.1 <hostname>` line is passed over); else the default route's interface address.
pub fn choose_node_ip(
    hostname: &str,
    resolved: &[std::net::IpAddr],
    local: &[std::net::IpAddr],
    default_route: Option<std::net::Ipv4Addr>,
) -> Option<std::net::IpAddr> {
    if let Ok(ip) = hostname.parse::<std::net::IpAddr>() {
        return Some(ip);
    }
    let usable = |ip: &std::net::IpAddr| match ip {
        std::net::IpAddr::V4(v4) => {
            !v4.is_loopback() && !v4.is_link_local() && !v4.is_multicast() && !v4.is_unspecified() && local.contains(ip)
        }
        std::net::IpAddr::V6(_) => false,
    };
    resolved.iter().copied().find(usable).or(default_route.map(std::net::IpAddr::V4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_topology_counts_cores_and_packages() {
        let dir = tempfile::tempdir().unwrap();
        // Two packages, two cores each, hyperthreaded: 8 CPUs, 4 cores, 2 sockets.
        for cpu in 0..8 {
            let t = dir.path().join(format!("cpu{cpu}/topology"));
            std::fs::create_dir_all(&t).unwrap();
            std::fs::write(t.join("physical_package_id"), format!("{}\n", cpu / 4)).unwrap();
            std::fs::write(t.join("core_id"), format!("{}\n", cpu % 2)).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("cpufreq")).unwrap();
        std::fs::create_dir_all(dir.path().join("cpu9")).unwrap();
        assert_eq!(cpu_topology(dir.path()), (4, 2));
        assert_eq!(cpu_topology(&dir.path().join("missing")), (0, 0));
    }

    #[test]
    fn node_ip_from_hostname_then_dns_then_default_route() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let local = [ip("127.0.0.1"), ip("10.0.0.5"), ip("192.168.1.9"), ip("fe80::1"), ip("169.254.3.3")];
        let route = Some("192.168.1.9".parse().unwrap());
        assert_eq!(choose_node_ip("10.9.9.9", &[], &local, route), Some(ip("10.9.9.9")), "a hostname that is an IP");
        // Debian's 127.0.1.1, a link-local, an IPv6 and an address of another host are passed over.
        let resolved = [ip("127.0.1.1"), ip("169.254.3.3"), ip("fe80::1"), ip("10.0.0.77"), ip("10.0.0.5")];
        assert_eq!(choose_node_ip("node-a", &resolved, &local, route), Some(ip("10.0.0.5")));
        assert_eq!(choose_node_ip("node-a", &resolved[..4], &local, route), Some(ip("192.168.1.9")), "default route");
        assert_eq!(choose_node_ip("node-a", &[], &local, None), None);
    }

    #[test]
    fn meminfo_and_os_release() {
        assert_eq!(parse_meminfo_total("MemTotal:       2048 kB\nMemFree: 1 kB\n"), Some(2048 * 1024));
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
        let os = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(parse_os_release_pretty_name(os).as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
    }

    #[test]
    fn default_route_interface() {
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                     br0\t004DF40A\t00000000\t0001\t0\t0\t0\t00FFFFFF\n\
                     eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\n";
        assert_eq!(parse_default_route_interface(route).as_deref(), Some("eth0"));
        assert_eq!(parse_default_route_interface("Iface\tDestination\n"), None);
    }

    #[test]
    fn this_machine_has_cpus_and_memory() {
        let m = machine_info().expect("machine info");
        assert!(m.num_cpus >= 1 && m.memory_bytes > 0, "{m:?}");
        assert!(!m.kernel_version.is_empty());
        assert!(filesystem_capacity(Path::new("/")).expect("statfs /") > 0);
    }
}
