//! Node allocatable: what `kubeReserved` and `systemReserved` hold back (upstream
//! `parseResourceList`), the hard eviction thresholds (`evictionHard`, upstream
//! `ParseThresholdConfig` for hard thresholds), `enforceNodeAllocatable` validation, and the
//! reservation they add up to — for `status.allocatable` (capacity − system − kube − hard
//! eviction for memory and nodefs) and for the `kubepods` cgroup (capacity − system − kube).

use std::collections::BTreeMap;

use sys::cgroup::CgroupResources;

use crate::quantity::ParsedQuantity;

/// A parsed `kubeReserved` / `systemReserved`: cpu in millicores, memory and ephemeral
/// storage in bytes, pids; unset resources are 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reserved {
    pub cpu_millis: u64,
    pub memory: u64,
    pub ephemeral_storage: u64,
    pub pids: u64,
}

impl Reserved {
    pub fn plus(self, o: Reserved) -> Reserved {
        Reserved {
            cpu_millis: self.cpu_millis.saturating_add(o.cpu_millis),
            memory: self.memory.saturating_add(o.memory),
            ephemeral_storage: self.ephemeral_storage.saturating_add(o.ephemeral_storage),
            pids: self.pids.saturating_add(o.pids),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Reserved::default()
    }
}

/// Upstream `parseResourceList`: only cpu, memory, ephemeral-storage and pid may be reserved,
/// and none negatively.
pub fn parse_reserved(m: &BTreeMap<String, String>) -> Result<Reserved, String> {
    let mut r = Reserved::default();
    for (k, v) in m {
        if !matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage" | "pid") {
            return Err(format!("cannot reserve {k:?} resource"));
        }
        let q =
            ParsedQuantity::parse(v).map_err(|e| format!("failed to parse quantity {v:?} for {k:?} resource: {e}"))?;
        if q.nanos() < 0 {
            return Err(format!("resource quantity for {k:?} cannot be negative: {v}"));
        }
        let whole = u64::try_from(q.value()).unwrap_or(u64::MAX);
        match k.as_str() {
            "cpu" => r.cpu_millis = u64::try_from(q.milli_value()).unwrap_or(u64::MAX),
            "memory" => r.memory = whole,
            "ephemeral-storage" => r.ephemeral_storage = whole,
            _ => r.pids = whole,
        }
    }
    Ok(r)
}

/// A threshold's value: an absolute quantity or a fraction of capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdValue {
    Quantity(u64),
    Fraction(f64),
}

impl ThresholdValue {
    /// The threshold against `capacity` (upstream `GetThresholdQuantity`).
    pub fn of(self, capacity: u64) -> u64 {
        match self {
            ThresholdValue::Quantity(q) => q,
            ThresholdValue::Fraction(f) => (capacity as f64 * f) as u64,
        }
    }
}

/// The eviction signals upstream accepts.
const SIGNALS: &[&str] = &[
    "memory.available",
    "allocatableMemory.available",
    "imagefs.available",
    "imagefs.inodesFree",
    "containerfs.available",
    "containerfs.inodesFree",
    "nodefs.available",
    "nodefs.inodesFree",
    "pid.available",
];

/// Upstream `ParseThresholdConfig` for hard thresholds: known signals; `N%` between 0 and 100
/// (0% and 100% are dropped); quantities positive.
pub fn parse_thresholds(m: &BTreeMap<String, String>) -> Result<BTreeMap<String, ThresholdValue>, String> {
    let mut out = BTreeMap::new();
    for (signal, v) in m {
        if !SIGNALS.contains(&signal.as_str()) {
            return Err(format!("unsupported eviction signal {signal}"));
        }
        if let Some(p) = v.strip_suffix('%') {
            let pct: f64 = p.parse().map_err(|e| format!("strconv.ParseFloat: parsing {p:?}: {e}"))?;
            if pct == 0.0 || pct == 100.0 {
                continue;
            }
            if pct < 0.0 {
                return Err(format!("eviction percentage threshold {signal} must be >= 0%: {v}"));
            }
            if pct > 100.0 {
                return Err(format!("eviction percentage threshold {signal} must be <= 100%: {v}"));
            }
            out.insert(signal.clone(), ThresholdValue::Fraction(pct / 100.0));
            continue;
        }
        let q = ParsedQuantity::parse(v).map_err(|e| e.to_string())?;
        if q.nanos() <= 0 {
            return Err(format!("eviction threshold {signal} must be positive: {v}"));
        }
        out.insert(signal.clone(), ThresholdValue::Quantity(u64::try_from(q.value()).unwrap_or(u64::MAX)));
    }
    Ok(out)
}

pub const ENFORCE_PODS: &str = "pods";
pub const ENFORCE_SYSTEM: &str = "system-reserved";
pub const ENFORCE_SYSTEM_COMPRESSIBLE: &str = "system-reserved-compressible";
pub const ENFORCE_KUBE: &str = "kube-reserved";
pub const ENFORCE_KUBE_COMPRESSIBLE: &str = "kube-reserved-compressible";
pub const ENFORCE_NONE: &str = "none";

/// Upstream's `enforceNodeAllocatable` validation, with its messages.
pub fn validate_enforcement(
    levels: &[String],
    system_cgroup: &str,
    kube_cgroup: &str,
    cgroups_per_qos: bool,
) -> Vec<String> {
    const FLAG: &str = "enforceNodeAllocatable (--enforce-node-allocatable)";
    let mut errs = Vec::new();
    let has = |l: &str| levels.iter().any(|x| x == l);
    for (a, b) in [(ENFORCE_SYSTEM_COMPRESSIBLE, ENFORCE_SYSTEM), (ENFORCE_KUBE_COMPRESSIBLE, ENFORCE_KUBE)] {
        if has(a) && has(b) {
            errs.push(format!("invalid configuration: both {b:?} and {a:?} cannot be specified together in {FLAG}"));
        }
    }
    let mut seen: Vec<&str> = Vec::new();
    for level in levels {
        if seen.contains(&level.as_str()) {
            errs.push(format!("invalid configuration: duplicated enforcements {level:?} in {FLAG}"));
            continue;
        }
        seen.push(level);
        match level.as_str() {
            ENFORCE_PODS => {}
            ENFORCE_SYSTEM | ENFORCE_SYSTEM_COMPRESSIBLE => {
                if system_cgroup.is_empty() {
                    errs.push(format!("invalid configuration: systemReservedCgroup (--system-reserved-cgroup) must be specified when {ENFORCE_SYSTEM:?} or {ENFORCE_SYSTEM_COMPRESSIBLE:?} included in {FLAG}"));
                }
            }
            ENFORCE_KUBE | ENFORCE_KUBE_COMPRESSIBLE => {
                if kube_cgroup.is_empty() {
                    errs.push(format!("invalid configuration: kubeReservedCgroup (--kube-reserved-cgroup) must be specified when {ENFORCE_KUBE:?} or {ENFORCE_KUBE_COMPRESSIBLE:?} included in {FLAG}"));
                }
            }
            ENFORCE_NONE => {
                if levels.len() > 1 {
                    errs.push(format!(
                        "invalid configuration: {FLAG} may not contain additional enforcements when {ENFORCE_NONE:?} is specified"
                    ));
                }
                continue;
            }
            other => {
                errs.push(format!(
                    "invalid configuration: option {other:?} specified for {FLAG}. Valid options are {ENFORCE_PODS:?}, {ENFORCE_SYSTEM:?}, {ENFORCE_SYSTEM_COMPRESSIBLE:?}, {ENFORCE_KUBE:?}, {ENFORCE_KUBE_COMPRESSIBLE:?} or {ENFORCE_NONE:?}"
                ));
                continue;
            }
        }
        if !cgroups_per_qos {
            errs.push(format!(
                "invalid configuration: cgroupsPerQOS (--cgroups-per-qos) must be set to true when {level:?} contained in {FLAG}"
            ));
        }
    }
    errs
}

/// The node's capacity as the reservation is checked against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub memory: u64,
    /// The root filesystem's size, when known.
    pub ephemeral_storage: Option<u64>,
}

/// Upstream `GetNodeAllocatableReservation`: system + kube reserved + the hard eviction
/// thresholds of `memory.available` (memory) and `nodefs.available` (ephemeral storage).
pub fn allocatable_reservation(
    reserved: Reserved,
    hard: &BTreeMap<String, ThresholdValue>,
    capacity: Capacity,
) -> Reserved {
    let eviction = |signal: &str, cap: u64| hard.get(signal).map_or(0, |t| t.of(cap));
    Reserved {
        cpu_millis: reserved.cpu_millis,
        memory: reserved.memory.saturating_add(eviction("memory.available", capacity.memory)),
        ephemeral_storage: match capacity.ephemeral_storage {
            Some(cap) => reserved.ephemeral_storage.saturating_add(eviction("nodefs.available", cap)),
            None => reserved.ephemeral_storage,
        },
        pids: 0,
    }
}

/// Upstream `validateNodeAllocatable`: every reservation must fit its capacity.
pub fn check_reservation(reservation: Reserved, capacity: Capacity) -> Result<(), String> {
    let mut errs = Vec::new();
    let mut check = |name: &str, reserved: u64, cap: u64, show: &dyn Fn(u64) -> String| {
        if reserved > cap {
            errs.push(format!(
                "Resource {name:?} has a reservation of {} but capacity of {}. Expected capacity >= reservation.",
                show(reserved),
                show(cap)
            ));
        }
    };
    check("cpu", reservation.cpu_millis, capacity.cpu_millis, &|m| format!("{m}m"));
    check("memory", reservation.memory, capacity.memory, &|b| b.to_string());
    if let Some(cap) = capacity.ephemeral_storage {
        check("ephemeral-storage", reservation.ephemeral_storage, cap, &|b| b.to_string());
    }
    if errs.is_empty() { Ok(()) } else { Err(format!("invalid Node Allocatable configuration. {}", errs.join(" "))) }
}

/// Upstream `getCgroupConfig` for a reserved list: cpu shares, memory and pids for what it
/// names (cpu shares only when `compressible`); `None` when it names nothing.
pub fn reserved_cgroup_resources(m: &BTreeMap<String, String>, compressible: bool) -> Option<CgroupResources> {
    let r = parse_reserved(m).ok()?;
    let has = |k: &str| m.contains_key(k);
    let res = CgroupResources {
        cpu_shares: has("cpu").then(|| shares(r.cpu_millis)),
        memory_limit: (has("memory") && !compressible).then(|| i64::try_from(r.memory).unwrap_or(i64::MAX)),
        pids_limit: (has("pid") && !compressible).then(|| i64::try_from(r.pids).unwrap_or(i64::MAX)),
        ..Default::default()
    };
    (res != CgroupResources::default()).then_some(res)
}

fn shares(cpu_millis: u64) -> u64 {
    let shares = crate::runtime::resources::milli_cpu_to_shares(i64::try_from(cpu_millis).unwrap_or(i64::MAX));
    u64::try_from(shares).unwrap_or(2)
}

/// The `kubepods` cgroup's limits (upstream `enforceNodeAllocatableCgroups`): with `pods`
/// enforced, capacity − system − kube reserved (clamped at 0; hard eviction is not taken out),
/// else the capacity; cpu as shares, no quota.
pub fn kubepods_resources(
    capacity: Capacity,
    pid_max: Option<u64>,
    reserved: Reserved,
    enforce_pods: bool,
) -> CgroupResources {
    let r = if enforce_pods { reserved } else { Reserved::default() };
    CgroupResources {
        cpu_shares: Some(shares(capacity.cpu_millis.saturating_sub(r.cpu_millis))),
        memory_limit: Some(i64::try_from(capacity.memory.saturating_sub(r.memory)).unwrap_or(i64::MAX))
            .filter(|m| *m > 0 || r.memory > 0),
        pids_limit: pid_max.map(|p| i64::try_from(p.saturating_sub(r.pids)).unwrap_or(i64::MAX)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn reserved_lists_parse_as_upstream() {
        let r =
            parse_reserved(&map(&[("cpu", "250m"), ("memory", "1Gi"), ("ephemeral-storage", "2G"), ("pid", "100")]))
                .unwrap();
        assert_eq!(r, Reserved { cpu_millis: 250, memory: 1 << 30, ephemeral_storage: 2_000_000_000, pids: 100 });
        assert_eq!(
            parse_reserved(&map(&[("hugepages-2Mi", "2Mi")])).unwrap_err(),
            "cannot reserve \"hugepages-2Mi\" resource"
        );
        assert_eq!(
            parse_reserved(&map(&[("memory", "-1Gi")])).unwrap_err(),
            "resource quantity for \"memory\" cannot be negative: -1Gi"
        );
        assert!(
            parse_reserved(&map(&[("cpu", "lots")]))
                .unwrap_err()
                .starts_with("failed to parse quantity \"lots\" for \"cpu\" resource: ")
        );
        assert!(parse_reserved(&BTreeMap::new()).unwrap().is_empty());
    }

    #[test]
    fn thresholds_parse_as_upstream() {
        let t = parse_thresholds(&map(&[
            ("memory.available", "100Mi"),
            ("nodefs.available", "10%"),
            ("imagefs.available", "0%"),
        ]))
        .unwrap();
        assert_eq!(t["memory.available"], ThresholdValue::Quantity(100 << 20));
        assert_eq!(t["nodefs.available"], ThresholdValue::Fraction(0.1));
        assert!(!t.contains_key("imagefs.available"), "0% is dropped");
        assert_eq!(t["nodefs.available"].of(1000), 100);
        assert_eq!(
            parse_thresholds(&map(&[("disk.available", "1Gi")])).unwrap_err(),
            "unsupported eviction signal disk.available"
        );
        assert_eq!(
            parse_thresholds(&map(&[("memory.available", "0")])).unwrap_err(),
            "eviction threshold memory.available must be positive: 0"
        );
        assert_eq!(
            parse_thresholds(&map(&[("nodefs.available", "120%")])).unwrap_err(),
            "eviction percentage threshold nodefs.available must be <= 100%: 120%"
        );
    }

    #[test]
    fn enforcement_levels_are_validated_with_upstreams_words() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(validate_enforcement(&l(&["pods"]), "", "", true).is_empty());
        assert!(validate_enforcement(&l(&[]), "", "", false).is_empty(), "an empty list enforces nothing");
        assert!(validate_enforcement(&l(&["none"]), "", "", false).is_empty());
        let errs = validate_enforcement(&l(&["pods", "system-reserved"]), "", "", true);
        assert_eq!(
            errs,
            vec![
                "invalid configuration: systemReservedCgroup (--system-reserved-cgroup) must be specified when \"system-reserved\" or \"system-reserved-compressible\" included in enforceNodeAllocatable (--enforce-node-allocatable)"
            ]
        );
        let errs = validate_enforcement(&l(&["pods", "none"]), "", "", true);
        assert_eq!(
            errs,
            vec![
                "invalid configuration: enforceNodeAllocatable (--enforce-node-allocatable) may not contain additional enforcements when \"none\" is specified"
            ]
        );
        let errs = validate_enforcement(&l(&["pods", "pods"]), "", "", true);
        assert_eq!(
            errs,
            vec![
                "invalid configuration: duplicated enforcements \"pods\" in enforceNodeAllocatable (--enforce-node-allocatable)"
            ]
        );
        let errs = validate_enforcement(&l(&["kube-reserved", "kube-reserved-compressible"]), "", "/kube", true);
        assert_eq!(
            errs,
            vec![
                "invalid configuration: both \"kube-reserved\" and \"kube-reserved-compressible\" cannot be specified together in enforceNodeAllocatable (--enforce-node-allocatable)"
            ]
        );
        let errs = validate_enforcement(&l(&["pod"]), "", "", true);
        assert!(
            errs[0].starts_with("invalid configuration: option \"pod\" specified for enforceNodeAllocatable"),
            "{errs:?}"
        );
        let errs = validate_enforcement(&l(&["pods"]), "", "", false);
        assert_eq!(
            errs,
            vec![
                "invalid configuration: cgroupsPerQOS (--cgroups-per-qos) must be set to true when \"pods\" contained in enforceNodeAllocatable (--enforce-node-allocatable)"
            ]
        );
    }

    #[test]
    fn the_reservation_adds_hard_eviction_for_memory_and_nodefs_only() {
        let reserved = Reserved { cpu_millis: 500, memory: 1 << 30, ephemeral_storage: 1000, pids: 50 };
        let hard = parse_thresholds(&map(&[
            ("memory.available", "100Mi"),
            ("nodefs.available", "10%"),
            ("nodefs.inodesFree", "5%"),
        ]))
        .unwrap();
        let cap = Capacity { cpu_millis: 2000, memory: 8 << 30, ephemeral_storage: Some(100_000) };
        let r = allocatable_reservation(reserved, &hard, cap);
        assert_eq!(
            r,
            Reserved { cpu_millis: 500, memory: (1 << 30) + (100 << 20), ephemeral_storage: 11_000, pids: 0 }
        );
        assert!(check_reservation(r, cap).is_ok());
        let err = check_reservation(Reserved { cpu_millis: 3000, ..r }, cap).unwrap_err();
        assert_eq!(
            err,
            "invalid Node Allocatable configuration. Resource \"cpu\" has a reservation of 3000m but capacity of 2000m. Expected capacity >= reservation."
        );
    }

    #[test]
    fn kubepods_and_reserved_cgroup_limits() {
        let cap = Capacity { cpu_millis: 2000, memory: 8 << 30, ephemeral_storage: None };
        let reserved = Reserved { cpu_millis: 500, memory: 1 << 30, ephemeral_storage: 0, pids: 1000 };
        let k = kubepods_resources(cap, Some(32768), reserved, true);
        assert_eq!((k.cpu_shares, k.memory_limit, k.pids_limit), (Some(1536), Some(7 << 30), Some(31768)));
        let full = kubepods_resources(cap, Some(32768), reserved, false);
        assert_eq!((full.cpu_shares, full.memory_limit, full.pids_limit), (Some(2048), Some(8 << 30), Some(32768)));

        let m = map(&[("cpu", "100m"), ("memory", "256Mi"), ("pid", "500")]);
        let r = reserved_cgroup_resources(&m, false).unwrap();
        assert_eq!((r.cpu_shares, r.memory_limit, r.pids_limit), (Some(102), Some(256 << 20), Some(500)));
        let c = reserved_cgroup_resources(&m, true).unwrap();
        assert_eq!((c.cpu_shares, c.memory_limit, c.pids_limit), (Some(102), None, None), "compressible: cpu only");
        let mem_only = reserved_cgroup_resources(&map(&[("memory", "1Gi")]), false).unwrap();
        assert_eq!(mem_only.cpu_shares, None, "only what is reserved is set");
        assert!(reserved_cgroup_resources(&BTreeMap::new(), false).is_none());
    }
}
