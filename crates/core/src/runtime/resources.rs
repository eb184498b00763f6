//! Container and sandbox resources → CRI `LinuxContainerResources` (upstream
//! `generateLinuxContainerResources`, `calculateLinuxResources`, `applySandboxResources`): cpu
//! shares from the cpu request (the limit when only a limit is set), a CFS quota from the cpu
//! limit over `cpuCFSQuotaPeriod` when `cpuCFSQuota` is on, the memory limit, no swap beyond the
//! memory limit on cgroup v1 when the swap controller is there (upstream's `NoSwap` behaviour,
//! the default), the OOM score adjustment of the pod's QoS class ([`crate::cm::oom_score_adj`])
//! and the hugepage limits of every page size the host has (zero unless limited).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use cri::api;
use k8s_openapi::api::core::v1::{Container, Pod};
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

/// What the node's settings add to the resources of containers and sandboxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSettings {
    /// The machine's memory, for the OOM score adjustment.
    pub memory_capacity: u64,
    /// `cpuCFSQuota`: cpu limits become CFS quotas.
    pub cpu_cfs_quota: bool,
    /// `cpuCFSQuotaPeriod` in µs.
    pub cpu_period_us: i64,
    /// The host's hugepage sizes as the kernel names them (`2MB`), when the runtime can limit
    /// them (the hugetlb controller is there); empty otherwise.
    pub hugepage_sizes: Vec<String>,
    /// With `cgroupsPerQOS`, where pod cgroups are (the sandbox's cgroup parent).
    pub cgroups: Option<crate::cm::CgroupLayout>,
}

impl Default for ResourceSettings {
    fn default() -> Self {
        Self {
            memory_capacity: 0,
            cpu_cfs_quota: true,
            cpu_period_us: QUOTA_PERIOD_US,
            hugepage_sizes: Vec::new(),
            cgroups: None,
        }
    }
}

/// Upstream `calculateLinuxResources` (millicores, bytes): shares from the request or, without
/// one, the limit; quota and period when CFS quotas are on; the memory limit when set.
fn calculate_linux_resources(
    cpu_request: Option<i64>,
    cpu_limit: i64,
    memory_limit: i64,
    s: &ResourceSettings,
    swap_controller: bool,
) -> api::LinuxContainerResources {
    // Without a request the limit stands in (the API server defaults it so for new pods).
    let shares = match cpu_request {
        None if cpu_limit != 0 => milli_cpu_to_shares(cpu_limit),
        request => milli_cpu_to_shares(request.unwrap_or(0)),
    };
    let mut out =
        api::LinuxContainerResources { cpu_shares: shares, memory_limit_in_bytes: memory_limit, ..Default::default() };
    if s.cpu_cfs_quota {
        out.cpu_period = s.cpu_period_us;
        out.cpu_quota = milli_cpu_to_quota(cpu_limit, s.cpu_period_us);
    }
    if swap_controller {
        // memory+swap equal to memory: no swap beyond the limit. 0 leaves both unlimited.
        out.memory_swap_limit_in_bytes = out.memory_limit_in_bytes;
    }
    out
}

/// The CRI resources of container `c` of `pod`.
pub fn linux_container_resources(pod: &Pod, c: &Container, s: &ResourceSettings) -> api::LinuxContainerResources {
    linux_container_resources_with(pod, c, s, swap_controller_available())
}

fn linux_container_resources_with(
    pod: &Pod,
    c: &Container,
    s: &ResourceSettings,
    swap_controller: bool,
) -> api::LinuxContainerResources {
    let res = c.resources.as_ref();
    let requests = res.and_then(|r| r.requests.as_ref());
    let limits = res.and_then(|r| r.limits.as_ref());
    let cpu_request = quantity(requests, "cpu").map(|q| to_i64(q.milli_value()));
    let cpu_limit = quantity(limits, "cpu").map_or(0, |q| to_i64(q.milli_value()));
    let memory_limit = quantity(limits, "memory").map_or(0, |q| to_i64(q.value()));
    let mut out = calculate_linux_resources(cpu_request, cpu_limit, memory_limit, s, swap_controller);
    out.oom_score_adj = crate::cm::oom_score_adj(pod, c, s.memory_capacity);
    out.hugepage_limits = hugepage_limits(limits, &s.hugepage_sizes);
    out
}

/// Upstream `GetHugepageLimitsFromResources`: every host page size, limited to what the
/// container's `hugepages-<size>` limit says or to zero.
fn hugepage_limits(limits: Option<&BTreeMap<String, Quantity>>, sizes: &[String]) -> Vec<api::HugepageLimit> {
    let mut out: Vec<api::HugepageLimit> =
        sizes.iter().map(|s| api::HugepageLimit { page_size: s.clone(), limit: 0 }).collect();
    for (name, q) in limits.into_iter().flatten() {
        let Some(size) = name.strip_prefix("hugepages-") else { continue };
        let Some(bytes) = ParsedQuantity::parse_saturating(size).ok().map(|q| to_i64(q.value())) else { continue };
        let Some(unit) = crate::cm::hugepage_unit_size(u64::try_from(bytes).unwrap_or(0)) else { continue };
        let amount = ParsedQuantity::parse_saturating(&q.0).map_or(0, |q| to_i64(q.value()));
        if let Some(l) = out.iter_mut().find(|l| l.page_size == unit) {
            l.limit = u64::try_from(amount).unwrap_or(0);
        }
    }
    out
}

/// Upstream `applySandboxResources`: the pod's resources without its overhead, and the
/// overhead on its own (requests taken as the limits), for runtimes that size a sandbox.
pub fn sandbox_resources(
    pod: &Pod,
    s: &ResourceSettings,
) -> (api::LinuxContainerResources, Option<api::LinuxContainerResources>) {
    let overhead = crate::admission::pod_overhead(pod);
    let requests = crate::admission::pod_requests(pod, &|_| true);
    let (limits, _, _) = crate::admission::pod_limits(pod);
    let milli = |n: i128| to_i64(n / 1_000_000);
    let bytes = |n: i128| to_i64(n / 1_000_000_000);
    let get = |l: &BTreeMap<String, i128>, k: &str| l.get(k).copied();
    let oh = |k: &str| get(&overhead, k).unwrap_or(0);
    let cpu_request = get(&requests, "cpu").map(|r| milli(r - oh("cpu")));
    let limit = |k: &str| get(&limits, k).filter(|l| *l != 0).map_or(0, |l| l - oh(k));
    let res = calculate_linux_resources(cpu_request, milli(limit("cpu")), bytes(limit("memory")), s, false);
    let overhead = (!overhead.is_empty()).then(|| {
        let cpu = milli(oh("cpu"));
        calculate_linux_resources(Some(cpu), cpu, bytes(oh("memory")), s, false)
    });
    (res, overhead)
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

    fn pod_of(c: &Container) -> Pod {
        Pod {
            spec: Some(k8s_openapi::api::core::v1::PodSpec { containers: vec![c.clone()], ..Default::default() }),
            ..Default::default()
        }
    }

    fn resources(c: &Container, swap: bool) -> api::LinuxContainerResources {
        linux_container_resources_with(&pod_of(c), c, &ResourceSettings::default(), swap)
    }

    #[test]
    fn no_resources_give_minimum_shares_and_no_limits() {
        let r = resources(&Container::default(), true);
        assert_eq!((r.cpu_shares, r.cpu_quota, r.cpu_period), (2, 0, QUOTA_PERIOD_US));
        assert_eq!((r.memory_limit_in_bytes, r.memory_swap_limit_in_bytes), (0, 0));
    }

    #[test]
    fn requests_and_limits_map_to_shares_quota_and_memory() {
        let c = container(&[("cpu", "250m"), ("memory", "32Mi")], &[("cpu", "500m"), ("memory", "64Mi")]);
        let r = resources(&c, true);
        assert_eq!(r.cpu_shares, 256);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
        assert_eq!(r.memory_swap_limit_in_bytes, 64 << 20);
        let r = resources(&c, false);
        assert_eq!(r.memory_swap_limit_in_bytes, 0, "no swap limit without the swap controller");
    }

    #[test]
    fn a_cpu_limit_without_request_stands_in_for_the_request() {
        let r = resources(&container(&[], &[("cpu", "2")]), false);
        assert_eq!((r.cpu_shares, r.cpu_quota), (2048, 200_000));
        // An explicit zero request is a request: minimum shares.
        let r = resources(&container(&[("cpu", "0")], &[("cpu", "2")]), false);
        assert_eq!(r.cpu_shares, 2);
    }

    #[test]
    fn fractional_memory_rounds_up_to_whole_bytes() {
        let r = resources(&container(&[], &[("memory", "1500m")]), false);
        assert_eq!(r.memory_limit_in_bytes, 2);
    }

    #[test]
    fn settings_bring_the_period_quota_switch_oom_score_and_hugepages() {
        let c = container(
            &[("cpu", "500m"), ("memory", "64Mi"), ("hugepages-2Mi", "4Mi")],
            &[("cpu", "500m"), ("memory", "64Mi"), ("hugepages-2Mi", "4Mi")],
        );
        let s = ResourceSettings {
            memory_capacity: 1 << 30,
            cpu_period_us: 50_000,
            hugepage_sizes: vec!["2MB".into(), "1GB".into()],
            ..Default::default()
        };
        let r = linux_container_resources_with(&pod_of(&c), &c, &s, false);
        assert_eq!((r.cpu_period, r.cpu_quota), (50_000, 25_000));
        assert_eq!(r.oom_score_adj, -997, "Guaranteed");
        let pages: Vec<(&str, u64)> = r.hugepage_limits.iter().map(|h| (h.page_size.as_str(), h.limit)).collect();
        assert_eq!(pages, [("2MB", 4 << 20), ("1GB", 0)]);
        let off = ResourceSettings { cpu_cfs_quota: false, ..s };
        let r = linux_container_resources_with(&pod_of(&c), &c, &off, false);
        assert_eq!((r.cpu_period, r.cpu_quota, r.cpu_shares), (0, 0, 512), "no CFS quota, shares stay");
    }

    #[test]
    fn the_sandbox_gets_the_pod_without_its_overhead_and_the_overhead_apart() {
        let mut p = pod_of(&container(&[("cpu", "250m")], &[("cpu", "1"), ("memory", "128Mi")]));
        let (r, o) = sandbox_resources(&p, &ResourceSettings::default());
        assert_eq!((r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes), (256, 100_000, 128 << 20));
        assert_eq!(o, None);
        p.spec.as_mut().expect("spec").overhead = list(&[("cpu", "100m"), ("memory", "16Mi")]);
        let (r, o) = sandbox_resources(&p, &ResourceSettings::default());
        assert_eq!((r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes), (256, 100_000, 128 << 20));
        let o = o.expect("overhead");
        assert_eq!((o.cpu_shares, o.cpu_quota, o.memory_limit_in_bytes), (102, 10_000, 16 << 20));
    }
}
