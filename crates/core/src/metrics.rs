//! The kubelet's own metrics (upstream `pkg/kubelet/metrics`): counters and histograms the
//! control loops update as they work, read by the `/metrics` handler. Names, help texts
//! (with their stability prefix), labels and buckets are upstream's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Prometheus' default buckets (`prometheus.DefBuckets`).
pub const DEF_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// `kubelet_pod_start_duration_seconds`' buckets.
pub const POD_START_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0, 480.0,
    600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

/// `prometheus.ExponentialBuckets(.005, 2.5, 14)`, the runtime operations' buckets.
fn runtime_buckets() -> Vec<f64> {
    (0..14).map(|i| 0.005 * 2.5f64.powi(i)).collect()
}

/// What a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The kind and current value of one series.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A counter's or a gauge's value.
    Scalar(f64),
    /// Cumulative counts per upper bound (the `+Inf` bucket is `count`), sum and count.
    Histogram { buckets: Vec<(f64, u64)>, sum: f64, count: u64 },
}

/// One metric family as read: name, help, label names, and series by label values.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub label_names: &'static [&'static str],
    pub series: Vec<(Vec<String>, Value)>,
}

#[derive(Debug, Clone)]
struct HistogramData {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// A counter or histogram family with labels.
#[derive(Debug)]
pub struct Metric {
    name: &'static str,
    help: &'static str,
    label_names: &'static [&'static str],
    kind: Kind,
    /// Histogram upper bounds; None for a counter or gauge.
    buckets: Option<Vec<f64>>,
    counters: Mutex<BTreeMap<Vec<String>, f64>>,
    histograms: Mutex<BTreeMap<Vec<String>, HistogramData>>,
}

impl Metric {
    fn counter(name: &'static str, help: &'static str, label_names: &'static [&'static str]) -> Self {
        Self {
            name,
            help,
            label_names,
            kind: Kind::Counter,
            buckets: None,
            counters: Mutex::default(),
            histograms: Mutex::default(),
        }
    }

    fn gauge(name: &'static str, help: &'static str, label_names: &'static [&'static str]) -> Self {
        Self { kind: Kind::Gauge, ..Self::counter(name, help, label_names) }
    }

    fn histogram(
        name: &'static str,
        help: &'static str,
        label_names: &'static [&'static str],
        buckets: Vec<f64>,
    ) -> Self {
        Self { kind: Kind::Histogram, buckets: Some(buckets), ..Self::counter(name, help, label_names) }
    }

    fn key(labels: &[&str]) -> Vec<String> {
        labels.iter().map(|l| (*l).to_owned()).collect()
    }

    /// Adds one to the counter with these label values.
    pub fn inc(&self, labels: &[&str]) {
        *self.counters.lock().unwrap_or_else(PoisonError::into_inner).entry(Self::key(labels)).or_default() += 1.0;
    }

    /// Sets the gauge with these label values.
    pub fn set(&self, labels: &[&str], value: f64) {
        self.counters.lock().unwrap_or_else(PoisonError::into_inner).insert(Self::key(labels), value);
    }

    /// Sets every series of the gauge: those in `values`, and 0 for those set before but not
    /// now (upstream leaves the last value; a state that is gone is counted as none here).
    pub fn set_all(&self, values: &BTreeMap<Vec<String>, f64>) {
        let mut all = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        for v in all.values_mut() {
            *v = 0.0;
        }
        all.extend(values.iter().map(|(k, v)| (k.clone(), *v)));
    }

    /// Records one observation (seconds) in the histogram with these label values.
    pub fn observe(&self, labels: &[&str], value: f64) {
        let Some(bounds) = &self.buckets else { return };
        let mut all = self.histograms.lock().unwrap_or_else(PoisonError::into_inner);
        let h = all.entry(Self::key(labels)).or_insert_with(|| HistogramData {
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        });
        for (i, upper) in bounds.iter().enumerate() {
            if value <= *upper {
                h.counts[i] += 1;
            }
        }
        h.sum += value;
        h.count += 1;
    }

    /// The family's current series, sorted by label values. A family without labels always
    /// has its one series (zero before anything happened), as client_golang's plain metrics.
    pub fn snapshot(&self) -> Snapshot {
        let mut series: Vec<(Vec<String>, Value)> = match &self.buckets {
            None => self
                .counters
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(k, v)| (k.clone(), Value::Scalar(*v)))
                .collect(),
            Some(bounds) => self
                .histograms
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(k, h)| {
                    let buckets = bounds.iter().copied().zip(h.counts.iter().copied()).collect();
                    (k.clone(), Value::Histogram { buckets, sum: h.sum, count: h.count })
                })
                .collect(),
        };
        if series.is_empty() && self.label_names.is_empty() {
            let zero = match &self.buckets {
                None => Value::Scalar(0.0),
                Some(bounds) => {
                    Value::Histogram { buckets: bounds.iter().map(|b| (*b, 0)).collect(), sum: 0.0, count: 0 }
                }
            };
            series.push((Vec::new(), zero));
        }
        Snapshot { name: self.name, help: self.help, kind: self.kind, label_names: self.label_names, series }
    }
}

/// The kubelet's metrics, shared by the components that update them.
#[derive(Debug)]
pub struct KubeletMetrics {
    pub running_pods: Metric,
    pub running_containers: Metric,
    pub runtime_operations: Metric,
    pub runtime_operation_errors: Metric,
    pub runtime_operation_duration: Metric,
    pub pleg_relist_duration: Metric,
    pub pleg_relist_interval: Metric,
    pub pod_start_duration: Metric,
    pub pod_worker_duration: Metric,
    pub started_pods: Metric,
    pub started_pods_errors: Metric,
    pub started_containers: Metric,
    pub started_containers_errors: Metric,
    pub rest_client_requests: Metric,
    pub image_garbage_collected: Metric,
    pub evictions: Metric,
    pub serving_renew_errors: Metric,
    pub serving_rotation: Metric,
    pub serving_ttl: Metric,
    /// The serving certificate's expiry: outer None while `serverTLSBootstrap` is off (its
    /// metrics are then not exported), inner None before the first certificate.
    serving_not_after: Mutex<Option<Option<std::time::SystemTime>>>,
}

impl Default for KubeletMetrics {
    fn default() -> Self {
        Self {
            running_pods: Metric::gauge(
                "kubelet_running_pods",
                "[ALPHA] Number of pods that have a running pod sandbox",
                &[],
            ),
            running_containers: Metric::gauge(
                "kubelet_running_containers",
                "[ALPHA] Number of containers currently running",
                &["container_state"],
            ),
            runtime_operations: Metric::counter(
                "kubelet_runtime_operations_total",
                "[ALPHA] Cumulative number of runtime operations by operation type.",
                &["operation_type"],
            ),
            runtime_operation_errors: Metric::counter(
                "kubelet_runtime_operations_errors_total",
                "[ALPHA] Cumulative number of runtime operation errors by operation type.",
                &["operation_type"],
            ),
            runtime_operation_duration: Metric::histogram(
                "kubelet_runtime_operations_duration_seconds",
                "[ALPHA] Duration in seconds of runtime operations. Broken down by operation type.",
                &["operation_type"],
                runtime_buckets(),
            ),
            pleg_relist_duration: Metric::histogram(
                "kubelet_pleg_relist_duration_seconds",
                "[ALPHA] Duration in seconds for relisting pods in PLEG.",
                &[],
                DEF_BUCKETS.to_vec(),
            ),
            pleg_relist_interval: Metric::histogram(
                "kubelet_pleg_relist_interval_seconds",
                "[ALPHA] Interval in seconds between relisting in PLEG.",
                &[],
                DEF_BUCKETS.to_vec(),
            ),
            pod_start_duration: Metric::histogram(
                "kubelet_pod_start_duration_seconds",
                "[ALPHA] Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
                &[],
                POD_START_BUCKETS.to_vec(),
            ),
            pod_worker_duration: Metric::histogram(
                "kubelet_pod_worker_duration_seconds",
                "[ALPHA] Duration in seconds to sync a single pod. Broken down by operation type: create, update, or sync",
                &["operation_type"],
                DEF_BUCKETS.to_vec(),
            ),
            started_pods: Metric::counter(
                "kubelet_started_pods_total",
                "[ALPHA] Cumulative number of pods started",
                &[],
            ),
            started_pods_errors: Metric::counter(
                "kubelet_started_pods_errors_total",
                "[ALPHA] Cumulative number of errors when starting pods",
                &[],
            ),
            started_containers: Metric::counter(
                "kubelet_started_containers_total",
                "[ALPHA] Cumulative number of containers started",
                &["container_type"],
            ),
            image_garbage_collected: Metric::counter(
                "kubelet_image_garbage_collected_total",
                "[ALPHA] Total number of images garbage collected by the kubelet, whether through disk usage or image age.",
                &["reason"],
            ),
            evictions: Metric::counter(
                "kubelet_evictions",
                "[ALPHA] Cumulative number of pod evictions by eviction signal",
                &["eviction_signal"],
            ),
            started_containers_errors: Metric::counter(
                "kubelet_started_containers_errors_total",
                "[ALPHA] Cumulative number of errors when starting containers",
                &["code", "container_type"],
            ),
            rest_client_requests: Metric::counter(
                "rest_client_requests_total",
                "[ALPHA] Number of HTTP requests, partitioned by status code, method, and host.",
                &["code", "host", "method"],
            ),
            serving_renew_errors: Metric::counter(
                "kubelet_server_expiration_renew_errors",
                "[ALPHA] Counter of certificate renewal errors.",
                &[],
            ),
            serving_rotation: Metric::histogram(
                "kubelet_certificate_manager_server_rotation_seconds",
                "[ALPHA] Histogram of the number of seconds the previous certificate lived before being rotated.",
                &[],
                vec![
                    60.0,
                    3600.0,
                    14400.0,
                    86400.0,
                    604800.0,
                    2592000.0,
                    7776000.0,
                    15552000.0,
                    31104000.0,
                    124416000.0,
                ],
            ),
            serving_ttl: Metric::gauge(
                "kubelet_certificate_manager_server_ttl_seconds",
                "[ALPHA] Gauge of the shortest TTL (time-to-live) of the Kubelet's serving certificate. The value is in seconds until certificate expiry (negative if already expired). If serving certificate is invalid or unused, the value will be +INF.",
                &[],
            ),
            serving_not_after: Mutex::new(None),
        }
    }
}

impl KubeletMetrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Every family, for the `/metrics` handler.
    pub fn snapshot(&self) -> Vec<Snapshot> {
        let serving = *self.serving_not_after.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<Snapshot> = Vec::new();
        if let Some(not_after) = serving {
            // Upstream: whole seconds to expiry, +Inf without a (valid) certificate.
            let ttl = not_after
                .and_then(|t| t.duration_since(std::time::SystemTime::now()).ok())
                .map_or(f64::INFINITY, |d| d.as_secs() as f64);
            self.serving_ttl.set(&[], ttl);
            out.extend([&self.serving_renew_errors, &self.serving_rotation, &self.serving_ttl].map(Metric::snapshot));
        }
        out.extend(
            [
                &self.running_pods,
                &self.running_containers,
                &self.runtime_operations,
                &self.runtime_operation_errors,
                &self.runtime_operation_duration,
                &self.pleg_relist_duration,
                &self.pleg_relist_interval,
                &self.pod_start_duration,
                &self.pod_worker_duration,
                &self.started_pods,
                &self.started_pods_errors,
                &self.started_containers,
                &self.started_containers_errors,
                &self.rest_client_requests,
                &self.image_garbage_collected,
                &self.evictions,
            ]
            .into_iter()
            .map(Metric::snapshot),
        );
        out
    }
}

/// Upstream's `operation_type` for a CRI method (instrumented_services.go); None for methods
/// it does not name.
pub fn operation_type(method: &str) -> Option<&'static str> {
    Some(match method {
        "Version" => "version",
        "Status" => "status",
        "CreateContainer" => "create_container",
        "StartContainer" => "start_container",
        "StopContainer" => "stop_container",
        "RemoveContainer" => "remove_container",
        "ListContainers" => "list_containers",
        "ContainerStatus" => "container_status",
        "UpdateContainerResources" => "update_container",
        "ReopenContainerLog" => "reopen_container_log",
        "ExecSync" => "exec_sync",
        "Exec" => "exec",
        "Attach" => "attach",
        "PortForward" => "port_forward",
        "RunPodSandbox" => "run_podsandbox",
        "StopPodSandbox" => "stop_podsandbox",
        "RemovePodSandbox" => "remove_podsandbox",
        "PodSandboxStatus" => "podsandbox_status",
        "ListPodSandbox" => "list_podsandbox",
        "ContainerStats" => "container_stats",
        "ListContainerStats" => "list_container_stats",
        "PodSandboxStats" => "podsandbox_stats",
        "ListPodSandboxStats" => "list_podsandbox_stats",
        "UpdateRuntimeConfig" => "update_runtime_config",
        "ListImages" => "list_images",
        "ImageStatus" => "image_status",
        "PullImage" => "pull_image",
        "RemoveImage" => "remove_image",
        "ImageFsInfo" => "image_fs_info",
        _ => return None,
    })
}

impl cri::CallObserver for KubeletMetrics {
    fn observe(&self, method: &'static str, took: Duration, failed: bool) {
        let Some(op) = operation_type(method) else { return };
        self.runtime_operations.inc(&[op]);
        self.runtime_operation_duration.observe(&[op], took.as_secs_f64());
        if failed {
            self.runtime_operation_errors.inc(&[op]);
        }
    }
}

impl api::bootstrap::ServingObserver for KubeletMetrics {
    fn current(&self, not_after: Option<std::time::SystemTime>) {
        *self.serving_not_after.lock().unwrap_or_else(PoisonError::into_inner) = Some(not_after);
    }
    fn rotated(&self, lived: Duration) {
        self.serving_rotation.observe(&[], lived.as_secs_f64());
    }
    fn renew_failed(&self) {
        self.serving_renew_errors.inc(&[]);
    }
}

impl api::client::RequestObserver for KubeletMetrics {
    fn observe(&self, method: &str, host: &str, code: &str) {
        self.rest_client_requests.inc(&[code, host, method]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_count_cumulatively_per_bucket() {
        let m = KubeletMetrics::default();
        m.pleg_relist_duration.observe(&[], 0.003);
        m.pleg_relist_duration.observe(&[], 0.2);
        m.pleg_relist_duration.observe(&[], 30.0);
        let s = m.pleg_relist_duration.snapshot();
        let Value::Histogram { buckets, sum, count } = &s.series[0].1 else { panic!("{s:?}") };
        assert_eq!(buckets[0], (0.005, 1));
        assert_eq!(buckets[5], (0.25, 2));
        assert_eq!(buckets[10], (10.0, 2), "30 s is only in +Inf");
        assert_eq!((*count, (*sum * 1000.0).round()), (3, 30203.0));
    }

    #[test]
    fn cri_calls_count_by_upstreams_operation_type() {
        use cri::CallObserver;
        let m = KubeletMetrics::default();
        m.observe("RunPodSandbox", Duration::from_millis(300), false);
        m.observe("RunPodSandbox", Duration::from_millis(20), true);
        m.observe("ListContainers", Duration::from_millis(1), false);
        m.observe("Connect", Duration::from_millis(1), true);
        let ops = m.runtime_operations.snapshot().series;
        assert_eq!(
            ops,
            [
                (vec!["list_containers".to_owned()], Value::Scalar(1.0)),
                (vec!["run_podsandbox".to_owned()], Value::Scalar(2.0))
            ]
        );
        let errors = m.runtime_operation_errors.snapshot().series;
        assert_eq!(errors, [(vec!["run_podsandbox".to_owned()], Value::Scalar(1.0))]);
        assert_eq!(m.started_pods.snapshot().series, [(vec![], Value::Scalar(0.0))], "label-less: always there");
        assert!(m.started_containers.snapshot().series.is_empty(), "a vector without children: nothing");
        let names = |m: &KubeletMetrics| m.snapshot().into_iter().map(|s| s.name).collect::<Vec<_>>();
        assert!(!names(&m).contains(&"kubelet_certificate_manager_server_ttl_seconds"), "serverTLSBootstrap off");
        use api::bootstrap::ServingObserver;
        m.current(None);
        let ttl = |m: &KubeletMetrics| {
            m.snapshot()
                .into_iter()
                .find(|s| s.name == "kubelet_certificate_manager_server_ttl_seconds")
                .map(|s| s.series[0].1.clone())
        };
        assert_eq!(ttl(&m), Some(Value::Scalar(f64::INFINITY)), "no certificate yet: +Inf");
        m.current(Some(std::time::SystemTime::now() + Duration::from_secs(3600)));
        assert!(matches!(ttl(&m), Some(Value::Scalar(v)) if (3590.0..=3600.0).contains(&v)));
        let buckets = runtime_buckets();
        assert_eq!(buckets.len(), 14);
        assert!((buckets[13] - 745.0580596923828).abs() < 1e-9);
    }
}
