//! `/metrics/cadvisor`: the families the kubelet's embedded cAdvisor collector writes (CPU,
//! memory, OOM, network, process, spec and start time per cgroup; the machine collector; the
//! scrape errors), with cAdvisor's names, help texts, label sets and timestamps, over the
//! cgroups [`core_kubelet::stats::StatsProvider::cgroup_series`] walks.

use core_kubelet::stats::CgroupSeries;
use server::metrics::{Family, Kind};
use sys::cgroup_metrics::CgroupMetrics;
use sys::node_info::MachineInfo;

type Labels = Vec<(&'static str, String)>;

/// cAdvisor's `maxMemorySize`: a limit above it is "unlimited" and written as 0.
const MAX_MEMORY: u64 = 1 << 62;

/// Sample values of one family for one cgroup: extra labels and the value.
type Values = Vec<(Labels, f64)>;

/// A per-cgroup family: whether its samples carry the stats' time, and its values.
struct Def {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    timestamped: bool,
    values: fn(&CgroupSeries, &MachineInfo) -> Values,
}

fn one(v: f64) -> Values {
    vec![(Vec::new(), v)]
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// cAdvisor's `specMemoryValue`.
fn spec_memory(v: u64) -> f64 {
    if v > MAX_MEMORY { 0.0 } else { v as f64 }
}

fn cpu_of(s: &CgroupSeries) -> Option<sys::cgroup_metrics::CpuMetrics> {
    s.metrics.cpu
}

fn mem(s: &CgroupSeries, f: fn(&sys::cgroup_metrics::MemoryMetrics) -> u64) -> Values {
    s.metrics.memory.as_ref().map(|m| one(f(m) as f64)).unwrap_or_default()
}

/// The CFS counters only exist for a cgroup with a quota.
fn cfs(s: &CgroupSeries, f: fn(&sys::cgroup_metrics::CpuMetrics) -> f64) -> Values {
    match (cpu_of(s), s.metrics.spec.cpu_quota) {
        (Some(c), Some(q)) if q != 0 => one(f(&c)),
        _ => Vec::new(),
    }
}

fn network(s: &CgroupSeries, f: fn(&sys::stats::InterfaceStats) -> u64) -> Values {
    s.network.iter().map(|i| (vec![("interface", i.name.clone())], f(i) as f64)).collect()
}

/// Whether the spec has CPU (cAdvisor's `HasCpu`) or memory (`HasMemory`; always for `/`).
fn has_cpu(m: &CgroupMetrics) -> bool {
    m.spec.cpu_shares.is_some()
}

fn has_memory(s: &CgroupSeries) -> bool {
    s.id == "/" || s.metrics.spec.memory_limit.is_some()
}

const DEFS: &[Def] = &[
    Def {
        name: "container_cpu_usage_seconds_total",
        help: "Cumulative cpu time consumed in seconds.",
        kind: Kind::Counter,
        timestamped: true,
        // Only a cgroup that has used CPU has a sample.
        values: |s, _| match cpu_of(s) {
            Some(c) if c.usage_ns > 0 => vec![(vec![("cpu", "total".into())], secs(c.usage_ns))],
            _ => Vec::new(),
        },
    },
    Def {
        name: "container_cpu_user_seconds_total",
        help: "Cumulative user cpu time consumed in seconds.",
        kind: Kind::Counter,
        timestamped: true,
        values: |s, _| cpu_of(s).map(|c| one(secs(c.user_ns))).unwrap_or_default(),
    },
    Def {
        name: "container_cpu_system_seconds_total",
        help: "Cumulative system cpu time consumed in seconds.",
        kind: Kind::Counter,
        timestamped: true,
        values: |s, _| cpu_of(s).map(|c| one(secs(c.system_ns))).unwrap_or_default(),
    },
    Def {
        name: "container_cpu_cfs_periods_total",
        help: "Number of elapsed enforcement period intervals.",
        kind: Kind::Counter,
        timestamped: true,
        values: |s, _| cfs(s, |c| c.periods as f64),
    },
    Def {
        name: "container_cpu_cfs_throttled_periods_total",
        help: "Number of throttled period intervals.",
        kind: Kind::Counter,
        timestamped: true,
        values: |s, _| cfs(s, |c| c.throttled_periods as f64),
    },
    Def {
        name: "container_cpu_cfs_throttled_seconds_total",
        help: "Total time duration the container has been throttled.",
        kind: Kind::Counter,
        timestamped: true,
        values: |s, _| cfs(s, |c| secs(c.throttled_ns)),
    },
    Def {
        name: "container_memory_cache",
        help: "Number of bytes of page cache memory.",
        kind: Kind::Gauge,
        timestamped: true,
        values: |s, _| mem(s, |m| m.cache),
    },
    Def {
        name: "container_memory_rss",
        help: "Size of RSS in bytes.",
        kind: Kind::Gauge,
        timestamped: true,
        values: |s, _| mem(s, |m| m.rss),
    },
    Def {
        name: "container_memory_mapped_file",
        help: "Size of memory mapped files in bytes.",
        kind: Kind::Gauge,
        timestamped: true,
        values: |s, _| mem(s, |m| m.mapped_file),
    },
    Def {
        name: "container_memory_swap",
        help: "Container swap usage in bytes.",
        kind: Kind::Gauge,
        timestamped: true,
        values: |s, _| mem(s, |m| m.swap),
    },
    Def {
        name: "container_memory_failcnt",
        help: "Number of memory usage hits limits",
        kind: Kind::Counter,
        timestamped: true,
        values: |s, _| mem(s, |m| m.failcnt),
    },
    Def {
        name: "container_memory_usage_bytes",
        help: "Current memory usage in bytes, including all memory regardless of when it was accessed",
        kind: Kind::Gauge,
        timestamped: true,
        values: |s, _| mem(s, |m| m.usage),
    },
    Def {
        name: "container_memory_max_usage_bytes",
        help: "Maximum memory usage recorded in bytes",
        kind: Kind::Gauge,
        timestamped: true,
        values: |s, _| mem(s, |m| m.max_usage),
    },
    Def {
        name: "container_memory_working_set_bytes",
        help: "Current working set in bytes.",
        kind: Kind::Gauge,
        timestamped: true,
        values: |s, _| mem(s, |m| m.working_set),
    },
    Def {
        name: "container_memory_failures_total",
        help: "Cumulative count of memory allocation failures.",
        kind: Kind::Counter,
        timestamped: true,
        values: |s, _| {
            let Some(m) = s.metrics.memory else { return Vec::new() };
            let mut out = Vec::new();
            for scope in ["container", "hierarchy"] {
                for (kind, v) in [("pgfault", m.pgfault), ("pgmajfault", m.pgmajfault)] {
                    out.push((vec![("failure_type", kind.to_string()), ("scope", scope.to_string())], v as f64));
                }
            }
            out
        },
    },
    Def {
        name: "container_oom_events_total",
        help: "Count of out of memory events observed for the container",
        kind: Kind::Counter,
        timestamped: true,
        values: |s, _| mem(s, |m| m.oom_kills.unwrap_or(0)),
    },
    Def {
        name: "container_network_receive_bytes_total",
        help: "Cumulative count of bytes received",
        kind: Kind::Counter,
        timestamped: true,
        values: |s, _| network(s, |i| i.rx_bytes),
    },
    Def {
        name: "container_network_receive_packets_total",
        help: "Cumulative count of packets received",
        kind: Kind::Counter,
        timestamped: true,
        values: |s, _| network(s, |i| i.rx_packets),
    },
    Def {
        name: "container_network_receive_packets_dropped_total",
        help: "Cumulative count of packets dropped while receiving",
        kind: Kind::Counter,
        timestamped: true,
        values: |s, _| network(s, |i| i.rx_dropped),
    },
    Def {
        name: "container_network_receive_errors_total",
        help: "Cumulative count of errors encountered while receiving",
        kind: Kind::Counter,
        timestamped: true,
        values: |s, _| network(s, |i| i.rx_errors),
    },
    Def {
        name: "container_network_transmit_bytes_total",
        help: "Cumulative count of bytes transmitted",
        kind: Kind::Counter,
        timestamped: true,
        values: |s, _| network(s, |i| i.tx_bytes),
    },
    Def {
        name: "container_network_transmit_packets_total",
        help: "Cumulative count of packets transmitted",
        kind: Kind::Counter,
        timestamped: true,
        values: |s, _| network(s, |i| i.tx_packets),
    },
    Def {
        name: "container_network_transmit_packets_dropped_total",
        help: "Cumulative count of packets dropped while transmitting",
        kind: Kind::Counter,
        timestamped: true,
        values: |s, _| network(s, |i| i.tx_dropped),
    },
    Def {
        name: "container_network_transmit_errors_total",
        help: "Cumulative count of errors encountered while transmitting",
        kind: Kind::Counter,
        timestamped: true,
        values: |s, _| network(s, |i| i.tx_errors),
    },
    Def {
        name: "container_processes",
        help: "Number of processes running inside the container.",
        kind: Kind::Gauge,
        timestamped: true,
        values: |s, _| s.metrics.processes.map(|v| one(v as f64)).unwrap_or_default(),
    },
    Def {
        name: "container_threads",
        help: "Number of threads running inside the container",
        kind: Kind::Gauge,
        timestamped: true,
        values: |s, _| s.metrics.threads.map(|v| one(v as f64)).unwrap_or_default(),
    },
    Def {
        name: "container_threads_max",
        help: "Maximum number of threads allowed inside the container, infinity if value is zero",
        kind: Kind::Gauge,
        timestamped: true,
        values: |s, _| s.metrics.threads_max.map(|v| one(v as f64)).unwrap_or_default(),
    },
    Def {
        name: "container_start_time_seconds",
        help: "Start time of the container since unix epoch in seconds.",
        kind: Kind::Gauge,
        timestamped: false,
        values: |s, _| s.start_time.map(|t| one(t.trunc())).unwrap_or_default(),
    },
    Def {
        name: "container_spec_cpu_period",
        help: "CPU period of the container.",
        kind: Kind::Gauge,
        timestamped: false,
        values: |s, _| {
            if has_cpu(&s.metrics) { one(s.metrics.spec.cpu_period.unwrap_or(0) as f64) } else { Vec::new() }
        },
    },
    Def {
        name: "container_spec_cpu_quota",
        help: "CPU quota of the container.",
        kind: Kind::Gauge,
        timestamped: false,
        values: |s, _| match s.metrics.spec.cpu_quota {
            Some(q) if q != 0 && has_cpu(&s.metrics) => one(q as f64),
            _ => Vec::new(),
        },
    },
    Def {
        name: "container_spec_cpu_shares",
        help: "CPU share of the container.",
        kind: Kind::Gauge,
        timestamped: false,
        values: |s, _| s.metrics.spec.cpu_shares.map(|v| one(v as f64)).unwrap_or_default(),
    },
    Def {
        name: "container_spec_memory_limit_bytes",
        help: "Memory limit for the container.",
        kind: Kind::Gauge,
        timestamped: false,
        // The root's limit is the machine's memory, as is a limit that reads as 0.
        values: |s, machine| {
            if !has_memory(s) {
                return Vec::new();
            }
            match s.metrics.spec.memory_limit {
                Some(l) if l != 0 && s.id != "/" => one(spec_memory(l)),
                _ => one(spec_memory(machine.memory_bytes)),
            }
        },
    },
    Def {
        name: "container_spec_memory_reservation_limit_bytes",
        help: "Memory reservation limit for the container.",
        kind: Kind::Gauge,
        timestamped: false,
        values: |s, _| {
            let v = if s.id == "/" { 0 } else { s.metrics.spec.memory_reservation.unwrap_or(0) };
            if has_memory(s) { one(spec_memory(v)) } else { Vec::new() }
        },
    },
    Def {
        name: "container_spec_memory_swap_limit_bytes",
        help: "Memory swap limit for the container.",
        kind: Kind::Gauge,
        timestamped: false,
        values: |s, _| {
            if has_memory(s) { one(spec_memory(s.metrics.spec.swap_limit.unwrap_or(0))) } else { Vec::new() }
        },
    },
];

/// The six labels the kubelet gives every cgroup series, plus the family's own, by name.
fn labels(s: &CgroupSeries, extra: Labels) -> Labels {
    let mut l = vec![
        ("container", s.container.clone()),
        ("id", s.id.clone()),
        ("image", s.image.clone()),
        ("name", s.name.clone()),
        ("namespace", s.namespace.clone()),
        ("pod", s.pod.clone()),
    ];
    l.extend(extra);
    l.sort();
    l
}

/// Every family of `/metrics/cadvisor`. `series` failed means `container_scrape_error` 1 and
/// no cgroup series, as cAdvisor's collector; `now_ms` is the scrape's time
/// (`container_last_seen`).
pub fn families(series: Result<&[CgroupSeries], &str>, machine: &MachineInfo, now_ms: i64) -> Vec<Family> {
    let mut out: Vec<Family> = Vec::new();
    let scrape_error = Family::new(
        "container_scrape_error",
        "1 if there was an error while getting container metrics, 0 otherwise",
        Kind::Gauge,
    );
    match series {
        Err(e) => {
            tracing::warn!("Couldn't get containers: {e}");
            out.push(scrape_error.with(vec![], 1.0));
        }
        Ok(series) => {
            out.push(scrape_error.with(vec![], 0.0));
            for def in DEFS {
                let mut f = Family::new(def.name, def.help, def.kind);
                for s in series {
                    for (extra, v) in (def.values)(s, machine) {
                        f = if def.timestamped {
                            f.with_at(labels(s, extra), v, s.time.millis())
                        } else {
                            f.with(labels(s, extra), v)
                        };
                    }
                }
                out.push(f);
            }
            let mut seen =
                Family::new("container_last_seen", "Last time a container was seen by the exporter", Kind::Gauge);
            for s in series {
                seen = seen.with_at(labels(s, Vec::new()), (now_ms / 1000) as f64, now_ms);
            }
            out.push(seen);
        }
    }
    out.push(
        Family::new(
            "cadvisor_version_info",
            "A metric with a constant '1' value labeled by kernel version, OS version, docker version, cadvisor version & cadvisor revision.",
            Kind::Gauge,
        )
        .with(
            vec![
                ("cadvisorRevision", String::new()),
                ("cadvisorVersion", String::new()),
                ("dockerVersion", String::new()),
                ("kernelVersion", machine.kernel_version.clone()),
                ("osVersion", machine.os_image.clone()),
            ],
            1.0,
        ),
    );
    let ids = || {
        vec![
            ("boot_id", machine.boot_id.clone()),
            ("machine_id", machine.machine_id.clone()),
            ("system_uuid", machine.system_uuid.clone()),
        ]
    };
    let gauge = |name, help, v: u64| Family::new(name, help, Kind::Gauge).with(ids(), v as f64);
    out.push(gauge("machine_cpu_cores", "Number of logical CPU cores.", machine.num_cpus));
    out.push(gauge("machine_cpu_physical_cores", "Number of physical CPU cores.", machine.num_physical_cores));
    out.push(gauge("machine_cpu_sockets", "Number of CPU sockets.", machine.num_sockets));
    out.push(gauge("machine_memory_bytes", "Amount of memory installed on the machine.", machine.memory_bytes));
    let mut nvm = Family::new(
        "machine_nvm_capacity",
        "NVM capacity value labeled by NVM mode (memory mode or app direct mode).",
        Kind::Gauge,
    );
    for mode in ["app_direct_mode", "memory_mode"] {
        let mut l = ids();
        l.insert(2, ("mode", mode.to_string()));
        nvm = nvm.with(l, 0.0);
    }
    out.push(nvm);
    out.push(gauge("machine_nvm_avg_power_budget_watts", "NVM power budget.", 0));
    out.push(
        Family::new(
            "machine_scrape_error",
            "1 if there was an error while getting machine metrics, 0 otherwise.",
            Kind::Gauge,
        )
        .with(vec![], 0.0),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use core_kubelet::stats::Time;
    use sys::cgroup_metrics::{CgroupSpec, CpuMetrics, MemoryMetrics};

    fn machine() -> MachineInfo {
        MachineInfo {
            num_cpus: 2,
            num_physical_cores: 2,
            num_sockets: 1,
            memory_bytes: 8 << 30,
            boot_id: "b".into(),
            machine_id: "m".into(),
            system_uuid: "u".into(),
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            ..Default::default()
        }
    }

    fn series() -> Vec<CgroupSeries> {
        let root = CgroupSeries {
            id: "/".into(),
            time: Time(1_700_000_000_123_000_000),
            start_time: Some(1_699_000_000.0),
            metrics: CgroupMetrics {
                cpu: Some(CpuMetrics { usage_ns: 5_000_000_000, user_ns: 3_000_000_000, ..Default::default() }),
                memory: Some(MemoryMetrics { usage: 4096, working_set: 3000, ..Default::default() }),
                spec: CgroupSpec {
                    cpu_shares: Some(1024),
                    memory_limit: Some(9_223_372_036_854_771_712),
                    ..Default::default()
                },
                ..Default::default()
            },
            network: vec![sys::stats::InterfaceStats { name: "eth0".into(), rx_bytes: 10, ..Default::default() }],
            ..Default::default()
        };
        let app = CgroupSeries {
            id: "/kubepods/burstable/podu1/abc".into(),
            name: "abc".into(),
            image: "busybox:1.36".into(),
            container: "app".into(),
            pod: "web".into(),
            namespace: "ns".into(),
            time: Time(1_700_000_001_000_000_000),
            start_time: Some(1_699_999_999.7),
            metrics: CgroupMetrics {
                cpu: Some(CpuMetrics {
                    usage_ns: 1_500_000_000,
                    periods: 40,
                    throttled_periods: 2,
                    ..Default::default()
                }),
                memory: Some(MemoryMetrics {
                    usage: 2048,
                    working_set: 1024,
                    pgfault: 9,
                    oom_kills: Some(1),
                    ..Default::default()
                }),
                spec: CgroupSpec {
                    cpu_shares: Some(256),
                    cpu_period: Some(100_000),
                    cpu_quota: Some(50_000),
                    memory_limit: Some(64 << 20),
                    memory_reservation: Some(9_223_372_036_854_771_712),
                    ..Default::default()
                },
                ..Default::default()
            },
            ..Default::default()
        };
        // A QoS cgroup that has not used CPU yet, without a quota.
        let qos = CgroupSeries {
            id: "/kubepods/besteffort".into(),
            time: Time(1_700_000_001_000_000_000),
            metrics: CgroupMetrics {
                cpu: Some(CpuMetrics::default()),
                spec: CgroupSpec { cpu_shares: Some(2), cpu_period: Some(100_000), ..Default::default() },
                ..Default::default()
            },
            ..Default::default()
        };
        vec![root, app, qos]
    }

    #[test]
    fn cgroup_series_render_as_cadvisor_writes_them() {
        let s = series();
        let text = server::metrics::render(&families(Ok(&s), &machine(), 1_700_000_002_500));
        let has = |line: &str| assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        let lacks =
            |prefix: &str| assert!(!text.lines().any(|l| l.starts_with(prefix)), "unexpected {prefix:?} in\n{text}");
        has("# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.");
        has("# TYPE container_cpu_usage_seconds_total counter");
        has(
            r#"container_cpu_usage_seconds_total{container="",cpu="total",id="/",image="",name="",namespace="",pod=""} 5 1700000000123"#,
        );
        has(
            r#"container_cpu_usage_seconds_total{container="app",cpu="total",id="/kubepods/burstable/podu1/abc",image="busybox:1.36",name="abc",namespace="ns",pod="web"} 1.5 1700000001000"#,
        );
        lacks(r#"container_cpu_usage_seconds_total{container="",cpu="total",id="/kubepods/besteffort""#);
        // CFS counters and the quota only where there is a quota.
        has(
            r#"container_cpu_cfs_throttled_periods_total{container="app",id="/kubepods/burstable/podu1/abc",image="busybox:1.36",name="abc",namespace="ns",pod="web"} 2 1700000001000"#,
        );
        lacks(r#"container_cpu_cfs_periods_total{container="",id="/kubepods/besteffort""#);
        has(
            r#"container_spec_cpu_quota{container="app",id="/kubepods/burstable/podu1/abc",image="busybox:1.36",name="abc",namespace="ns",pod="web"} 50000"#,
        );
        lacks(r#"container_spec_cpu_quota{container="",id="/kubepods/besteffort""#);
        has(
            r#"container_spec_cpu_shares{container="",id="/kubepods/besteffort",image="",name="",namespace="",pod=""} 2"#,
        );
        // Memory limits: "unlimited" is 0, the root's is the machine's memory; no timestamps.
        has(
            r#"container_spec_memory_limit_bytes{container="",id="/",image="",name="",namespace="",pod=""} 8.589934592e+09"#,
        );
        has(
            r#"container_spec_memory_limit_bytes{container="app",id="/kubepods/burstable/podu1/abc",image="busybox:1.36",name="abc",namespace="ns",pod="web"} 6.7108864e+07"#,
        );
        has(
            r#"container_spec_memory_reservation_limit_bytes{container="app",id="/kubepods/burstable/podu1/abc",image="busybox:1.36",name="abc",namespace="ns",pod="web"} 0"#,
        );
        lacks(r#"container_spec_memory_limit_bytes{container="",id="/kubepods/besteffort""#);
        has(
            r#"container_memory_failures_total{container="app",failure_type="pgfault",id="/kubepods/burstable/podu1/abc",image="busybox:1.36",name="abc",namespace="ns",pod="web",scope="hierarchy"} 9 1700000001000"#,
        );
        has(
            r#"container_oom_events_total{container="app",id="/kubepods/burstable/podu1/abc",image="busybox:1.36",name="abc",namespace="ns",pod="web"} 1 1700000001000"#,
        );
        has(
            r#"container_network_receive_bytes_total{container="",id="/",image="",interface="eth0",name="",namespace="",pod=""} 10 1700000000123"#,
        );
        lacks(r#"container_network_receive_bytes_total{container="app""#);
        has(
            r#"container_start_time_seconds{container="app",id="/kubepods/burstable/podu1/abc",image="busybox:1.36",name="abc",namespace="ns",pod="web"} 1.699999999e+09"#,
        );
        has(
            r#"container_last_seen{container="",id="/",image="",name="",namespace="",pod=""} 1.700000002e+09 1700000002500"#,
        );
        has("container_scrape_error 0");
        has(r#"machine_cpu_cores{boot_id="b",machine_id="m",system_uuid="u"} 2"#);
        has(r#"machine_memory_bytes{boot_id="b",machine_id="m",system_uuid="u"} 8.589934592e+09"#);
        has(r#"machine_nvm_capacity{boot_id="b",machine_id="m",mode="memory_mode",system_uuid="u"} 0"#);
        has(
            r#"cadvisor_version_info{cadvisorRevision="",cadvisorVersion="",dockerVersion="",kernelVersion="6.1.0",osVersion="Debian GNU/Linux 12 (bookworm)"} 1"#,
        );
        lacks("container_memory_cache{container=\"\",id=\"/kubepods/besteffort\"");
    }

    #[test]
    fn a_failed_walk_reports_the_scrape_error_and_no_cgroups() {
        let text = server::metrics::render(&families(Err("runtime down"), &machine(), 0));
        assert!(text.contains("container_scrape_error 1\n"), "{text}");
        assert!(!text.contains("container_cpu_usage_seconds_total"), "{text}");
        assert!(text.contains("machine_cpu_cores{"), "machine metrics stay: {text}");
    }
}
