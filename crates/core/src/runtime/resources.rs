//! Container resources → CRI `LinuxContainerResources` (upstream `generateLinuxContainerResources`
//! / `calculateLinuxResources`): cpu shares from the cpu request (the limit when only a limit is
//! set), a CFS quota from the cpu limit over a 100 ms period, the memory limit, and no swap beyond
//! the memory limit on cgroup v1 when the swap controller is there (upstream's `NoSwap`
//! behaviour, the default).
//!
//! Not yet: the OOM score adjustment by QoS class and hugepage limits (issue 6, with the QoS
//! cgroups), and the `cpuCFSQuota`/`cpuCFSQuotaPeriod` settings (upstream's defaults are used).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use cri::api;
use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity::ParsedQuantity;

/// Upstream's `MinShares`, `MaxShares` and `SharesPerCPU` (cgroup v1 `cpu.shares`).
const MIN_SHARES: i64 = 2;
const MAX_SHARES: i64 = 262_144;
const SHARES_PER_CPU: i64 = 1024;
const MILLI_CPU_TO_CPU: i64 = 1000;
/// Upstream's `quotaPeriod` (100 ms, in µs) and `minQuotaPeriod` (1 ms, in µs).
pub const QUOTA_PERIOD_US: i64 = 100_000;
const MIN_QUOTA_US: i64 = 1000;

/// Upstream's `MilliCPUToShares`: 0 (no request) and anything below 2 shares give 2.
pub fn milli_cpu_to_shares(milli_cpu: i64) -> i64 {
    if milli_cpu == 0 {
        return MIN_SHARES;
    }
    (milli_cpu.saturating_mul(SHARES_PER_CPU) / MILLI_CPU_TO_CPU).clamp(MIN_SHARES, MAX_SHARES)
}

/// Upstream's `milliCPUToQuota`: 0 (no limit) stays 0, i.e. unlimited; otherwise at least 1 ms.
pub fn milli_cpu_to_quota(milli_cpu: i64, period_us: i64) -> i64 {
    if milli_cpu == 0 {
        return 0;
    }
    (milli_cpu.saturating_mul(period_us) / MILLI_CPU_TO_CPU).max(MIN_QUOTA_US)
}

/// The value of `name` in `list` (`None` when absent). Quantities were validated at admission;
/// one that still does not parse counts as absent.
fn quantity(list: Option<&BTreeMap<String, Quantity>>, name: &str) -> Option<ParsedQuantity> {
    list.and_then(|l| l.get(name)).and_then(|q| ParsedQuantity::parse_saturating(&q.0).ok())
}

fn to_i64(v: i128) -> i64 {
    i64::try_from(v.max(0)).unwrap_or(i64::MAX)
}

/// The CRI resources of `c`, as upstream computes them for a container with cgroup v1 and the
/// default swap behaviour.
pub fn linux_container_resources(c: &Container) -> api::LinuxContainerResources {
    linux_container_resources_with(c, swap_controller_available())
}

fn linux_container_resources_with(c: &Container, swap_controller: bool) -> api::LinuxContainerResources {
    let res = c.resources.as_ref();
    let requests = res.and_then(|r| r.requests.as_ref());
    let limits = res.and_then(|r| r.limits.as_ref());
    let cpu_request = quantity(requests, "cpu");
    let cpu_limit = quantity(limits, "cpu").map_or(0, |q| to_i64(q.milli_value()));
    let memory_limit = quantity(limits, "memory").map_or(0, |q| to_i64(q.value()));

    // Without a request the limit stands in (the API server defaults it so for new pods).
    let shares = match cpu_request {
        None if cpu_limit != 0 => milli_cpu_to_shares(cpu_limit),
        request => milli_cpu_to_shares(request.map_or(0, |q| to_i64(q.milli_value()))),
    };
    let mut out = api::LinuxContainerResources {
        cpu_shares: shares,
        cpu_period: QUOTA_PERIOD_US,
        cpu_quota: milli_cpu_to_quota(cpu_limit, QUOTA_PERIOD_US),
        memory_limit_in_bytes: memory_limit,
        ..Default::default()
    };
    if swap_controller {
        // memory+swap equal to memory: no swap beyond the limit. 0 leaves both unlimited.
        out.memory_swap_limit_in_bytes = out.memory_limit_in_bytes;
    }
    out
}

/// Whether cgroup v1's swap accounting (`memory.memsw.*`) is present, as upstream's
/// `swapControllerAvailable`; setting a swap limit without it makes the runtime fail.
fn swap_controller_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ResourceRequirements;

    use super::*;

    fn list(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
        (!pairs.is_empty()).then(|| pairs.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect())
    }

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        Container {
            name: "app".into(),
            resources: Some(ResourceRequirements {
                requests: list(requests),
                limits: list(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn shares_and_quota_follow_upstream_conversions() {
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(100), 102);
        assert_eq!(milli_cpu_to_shares(1000), 1024);
        assert_eq!(milli_cpu_to_shares(1_000_000), 262_144);
        assert_eq!(milli_cpu_to_quota(0, QUOTA_PERIOD_US), 0);
        assert_eq!(milli_cpu_to_quota(1, QUOTA_PERIOD_US), 1000);
        assert_eq!(milli_cpu_to_quota(250, QUOTA_PERIOD_US), 25_000);
        assert_eq!(milli_cpu_to_quota(2000, QUOTA_PERIOD_US), 200_000);
    }

    #[test]
    fn no_resources_give_minimum_shares_and_no_limits() {
        let r = linux_container_resources_with(&Container::default(), true);
        assert_eq!((r.cpu_shares, r.cpu_quota, r.cpu_period), (2, 0, QUOTA_PERIOD_US));
        assert_eq!((r.memory_limit_in_bytes, r.memory_swap_limit_in_bytes), (0, 0));
    }

    #[test]
    fn requests_and_limits_map_to_shares_quota_and_memory() {
        let c = container(&[("cpu", "250m"), ("memory", "32Mi")], &[("cpu", "500m"), ("memory", "64Mi")]);
        let r = linux_container_resources_with(&c, true);
        assert_eq!(r.cpu_shares, 256);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
        assert_eq!(r.memory_swap_limit_in_bytes, 64 << 20);
        let r = linux_container_resources_with(&c, false);
        assert_eq!(r.memory_swap_limit_in_bytes, 0, "no swap limit without the swap controller");
    }

    #[test]
    fn a_cpu_limit_without_request_stands_in_for_the_request() {
        let r = linux_container_resources_with(&container(&[], &[("cpu", "2")]), false);
        assert_eq!((r.cpu_shares, r.cpu_quota), (2048, 200_000));
        // An explicit zero request is a request: minimum shares.
        let r = linux_container_resources_with(&container(&[("cpu", "0")], &[("cpu", "2")]), false);
        assert_eq!(r.cpu_shares, 2);
    }

    #[test]
    fn fractional_memory_rounds_up_to_whole_bytes() {
        let r = linux_container_resources_with(&container(&[], &[("memory", "1500m")]), false);
        assert_eq!(r.memory_limit_in_bytes, 2);
    }
}
