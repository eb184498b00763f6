//! The kubelet's configuration: `KubeletConfiguration` (kubelet.config.k8s.io/v1beta1) loaded from
//! the `--config` file, overridden by command-line flags, on top of upstream's defaults.
//!
//! Precedence is upstream's: flag > config file > default. Fields are declared once, in the
//! [`kubelet_configuration!`] invocation below, which generates
//! * [`KubeletConfiguration`], the resolved configuration (every field has a value);
//! * [`KubeletConfigFile`], the same fields as `Option`s: what a file (or the flags) set;
//! * the list of known field names, used to warn about fields rkubelet does not implement.
//!
//! As upstream's scheme defaulting does, a file value equal to Go's zero value ("0s", "", 0) of a
//! non-pointer field counts as unset (kubeadm writes `fileCheckFrequency: 0s` and friends);
//! pointer fields in upstream (`healthzPort`, `resolvConf`, `registryPullQPS`, …) keep an explicit
//! zero. Flags are applied last and always win, as upstream re-parses the flags over the file.

mod dropin;
mod duration;
mod node;
pub mod unsupported;

pub use dropin::load_dropin_dir;
pub use duration::{DurationError, format_duration, parse_duration, serde_go_duration};
pub use node::{describe_taint, parse_node_labels_into, parse_taints, validate_node_labels};

use std::collections::BTreeMap;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use k8s_openapi::api::core::v1::Taint;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `apiVersion` of the kubelet configuration file.
pub const API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
/// `kind` of the kubelet configuration file.
pub const KIND: &str = "KubeletConfiguration";

/// Errors loading or validating the kubelet configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read kubelet config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Malformed YAML/JSON. `message` includes the line and column when known.
    #[error("failed to parse kubelet config file {path}: {message}")]
    Parse { path: PathBuf, line: Option<usize>, message: String },
    #[error("kubelet config file {path} must contain a YAML or JSON object, found {found}")]
    NotAnObject { path: PathBuf, found: &'static str },
    /// `kind` or `apiVersion` is missing or not the expected value.
    #[error("kubelet config file {path}: {field} is {}, expected {expected:?}", found.as_deref().map_or_else(|| "missing".to_owned(), |f| format!("{f:?}")))]
    WrongType { path: PathBuf, field: &'static str, found: Option<String>, expected: &'static str },
    #[error("kubelet config file {path}: invalid value for {field}: {reason}")]
    Field { path: PathBuf, field: &'static str, reason: String },
    /// A field rkubelet does not implement, set to a value that would be unsafe to ignore.
    #[error("kubelet config file {path}: {field} {value} is not supported by rkubelet: {reason}")]
    Refused { path: PathBuf, field: String, value: String, reason: &'static str },
    /// A `--config-dir` drop-in directory could not be listed.
    #[error("failed to read kubelet config drop-in directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The resolved configuration failed validation; one message per problem.
    #[error("invalid configuration: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// Whether upstream's Go field is a plain value (zero means "unset, use the default") or a
/// pointer (an explicit zero is kept).
#[derive(Clone, Copy, PartialEq, Eq)]
enum GoField {
    Value,
    Ptr,
}

/// A type usable as a KubeletConfiguration field.
trait FieldValue: Sized {
    fn from_json(v: &Value) -> Result<Self, String>;
    fn to_json(&self) -> Value;
    /// Go's zero value for the field's type.
    fn is_go_zero(&self) -> bool;
    /// Combines this (higher-precedence) value with the layer below it. Replaces by default.
    fn layer(self, _lower: &Self) -> Self {
        self
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

impl FieldValue for String {
    fn from_json(v: &Value) -> Result<Self, String> {
        v.as_str().map(str::to_owned).ok_or_else(|| format!("expected a string, got {}", describe(v)))
    }
    fn to_json(&self) -> Value {
        Value::String(self.clone())
    }
    fn is_go_zero(&self) -> bool {
        self.is_empty()
    }
}

impl FieldValue for bool {
    fn from_json(v: &Value) -> Result<Self, String> {
        v.as_bool().ok_or_else(|| format!("expected true or false, got {}", describe(v)))
    }
    fn to_json(&self) -> Value {
        Value::Bool(*self)
    }
    fn is_go_zero(&self) -> bool {
        !*self
    }
}

macro_rules! int_field_value {
    ($($t:ty),*) => {$(
        impl FieldValue for $t {
            fn from_json(v: &Value) -> Result<Self, String> {
                let out_of_range = || {
                    format!("expected an integer between {} and {}, got {}", <$t>::MIN, <$t>::MAX, describe(v))
                };
                if let Some(n) = v.as_i64() {
                    <$t>::try_from(n).map_err(|_| out_of_range())
                } else if let Some(n) = v.as_u64() {
                    <$t>::try_from(n).map_err(|_| out_of_range())
                } else {
                    Err(out_of_range())
                }
            }
            fn to_json(&self) -> Value {
                Value::from(*self)
            }
            fn is_go_zero(&self) -> bool {
                *self == 0
            }
        }
    )*};
}
int_field_value!(u16, u32, i32, i64);

impl FieldValue for Vec<String> {
    fn from_json(v: &Value) -> Result<Self, String> {
        match v {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items.iter().map(String::from_json).collect(),
            other => Err(format!("expected a list of strings, got {}", describe(other))),
        }
    }
    fn to_json(&self) -> Value {
        Value::Array(self.iter().cloned().map(Value::String).collect())
    }
    fn is_go_zero(&self) -> bool {
        self.is_empty()
    }
}

/// String maps (`kubeReserved`, `evictionHard`): an object of string values.
impl FieldValue for BTreeMap<String, String> {
    fn from_json(v: &Value) -> Result<Self, String> {
        match v {
            Value::Null => Ok(BTreeMap::new()),
            Value::Object(m) => m.iter().map(|(k, v)| Ok((k.clone(), String::from_json(v)?))).collect(),
            other => Err(format!("expected a map of strings, got {}", describe(other))),
        }
    }
    fn to_json(&self) -> Value {
        Value::Object(self.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
    }
    fn is_go_zero(&self) -> bool {
        self.is_empty()
    }
}

/// `registerWithTaints`: a list of core/v1 Taint objects.
impl FieldValue for Vec<Taint> {
    fn from_json(v: &Value) -> Result<Self, String> {
        match v {
            Value::Null => Ok(Vec::new()),
            Value::Array(_) => serde_json::from_value(v.clone()).map_err(|e| format!("expected a list of taints: {e}")),
            other => Err(format!("expected a list of taints, got {}", describe(other))),
        }
    }
    fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
    fn is_go_zero(&self) -> bool {
        self.is_empty()
    }
}

impl FieldValue for Duration {
    fn from_json(v: &Value) -> Result<Self, String> {
        let s = v.as_str().ok_or_else(|| format!("expected a duration string such as \"20s\", got {}", describe(v)))?;
        parse_duration(s).map_err(|e| e.to_string())
    }
    fn to_json(&self) -> Value {
        Value::String(format_duration(*self))
    }
    fn is_go_zero(&self) -> bool {
        self.is_zero()
    }
}

/// Opaque nested structures (authentication, authorization) until they are modelled: the file's
/// object is merged key by key over the defaults, like upstream's per-field defaulting. Zero
/// durations ("0s", as kubeadm writes them) fall back to the default underneath.
impl FieldValue for Value {
    fn from_json(v: &Value) -> Result<Self, String> {
        Ok(v.clone())
    }
    fn to_json(&self) -> Value {
        self.clone()
    }
    fn is_go_zero(&self) -> bool {
        self.is_null()
    }
    fn layer(self, lower: &Self) -> Self {
        merge_json(self, lower)
    }
}

fn merge_json(upper: Value, lower: &Value) -> Value {
    match (upper, lower) {
        (Value::Object(mut up), Value::Object(low)) => {
            for (key, low_value) in low {
                let merged = match up.remove(key) {
                    Some(up_value) => merge_json(up_value, low_value),
                    None => low_value.clone(),
                };
                up.insert(key.clone(), merged);
            }
            Value::Object(up)
        }
        (Value::Null, lower) => lower.clone(),
        (Value::String(s), Value::String(low))
            if parse_duration(&s).is_ok_and(|d| d.is_zero()) && parse_duration(low).is_ok() =>
        {
            Value::String(low.clone())
        }
        (upper, _) => upper,
    }
}

/// flag > file > default for one field.
fn resolve_field<T: FieldValue>(flag: Option<T>, file: Option<T>, default: T, go: GoField) -> T {
    let file = file.filter(|v| go == GoField::Ptr || !v.is_go_zero());
    let below_flag = match file {
        Some(v) => v.layer(&default),
        None => default,
    };
    match flag {
        Some(v) => v.layer(&below_flag),
        None => below_flag,
    }
}

macro_rules! kubelet_configuration {
    (
        file {
            $( $(#[doc = $doc:literal])* $json:literal => $field:ident : $ty:ty = $default:expr, $go:ident; )*
        }
        runtime {
            $( $(#[doc = $rdoc:literal])* $rfield:ident : $rty:ty = $rdefault:expr; )*
        }
    ) => {
        /// The resolved kubelet configuration. Serializes as a `KubeletConfiguration` object
        /// (runtime-only settings are not part of the file format and are skipped).
        #[derive(Debug, Clone, PartialEq)]
        pub struct KubeletConfiguration {
            $( $(#[doc = $doc])* pub $field: $ty, )*
            $( $(#[doc = $rdoc])* pub $rfield: $rty, )*
        }

        /// The file-backed fields of [`KubeletConfiguration`], each `None` when not set. Used both
        /// for what a config file contains and for what command-line flags override.
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct KubeletConfigFile {
            $( $(#[doc = $doc])* pub $field: Option<$ty>, )*
        }

        impl Default for KubeletConfiguration {
            /// Upstream's defaults (`pkg/kubelet/apis/config/v1beta1/defaults.go`).
            fn default() -> Self {
                Self {
                    $( $field: $default, )*
                    $( $rfield: $rdefault, )*
                }
            }
        }

        impl KubeletConfigFile {
            /// The field names (camelCase, as in the file) rkubelet understands.
            pub const FIELDS: &'static [&'static str] = &[$($json),*];

            /// Reads the known fields of a config object; returns the names of unknown ones.
            fn from_object(map: &Map<String, Value>, path: &Path) -> Result<(Self, Vec<String>), ConfigError> {
                let mut out = Self::default();
                $(
                    // `null` means unset, as for Go's decoder.
                    if let Some(v) = map.get($json).filter(|v| !v.is_null()) {
                        out.$field = Some(<$ty as FieldValue>::from_json(v).map_err(|reason| {
                            ConfigError::Field { path: path.to_owned(), field: $json, reason }
                        })?);
                    }
                )*
                let unknown = map
                    .keys()
                    .filter(|k| *k != "kind" && *k != "apiVersion" && !Self::FIELDS.contains(&k.as_str()))
                    .cloned()
                    .collect();
                Ok((out, unknown))
            }

            /// This file with the fields `over` sets laid on top (a `--config-dir` drop-in over
            /// the `--config` file). Values that count as unset (Go zero values of plain fields)
            /// do not override, as for a single file.
            pub fn overlay(self, over: Self) -> Self {
                Self {
                    $( $field: match (over.$field.filter(|v| GoField::$go == GoField::Ptr || !v.is_go_zero()), self.$field) {
                        (Some(up), Some(low)) => Some(up.layer(&low)),
                        (up, low) => up.or(low),
                    }, )*
                }
            }
        }

        impl KubeletConfiguration {
            /// flag > file > default for every file-backed field; runtime-only fields get their
            /// defaults.
            fn resolve_fields(file: KubeletConfigFile, flags: KubeletConfigFile) -> Self {
                let defaults = Self::default();
                Self {
                    $( $field: resolve_field(flags.$field, file.$field, defaults.$field, GoField::$go), )*
                    $( $rfield: defaults.$rfield, )*
                }
            }

            fn to_object(&self) -> Map<String, Value> {
                let mut map = Map::new();
                map.insert("kind".to_owned(), Value::from(KIND));
                map.insert("apiVersion".to_owned(), Value::from(API_VERSION));
                $( map.insert($json.to_owned(), FieldValue::to_json(&self.$field)); )*
                map
            }
        }
    };
}

kubelet_configuration! {
    file {
        /// Path to the directory (or single file) of static pod manifests; "" disables the file
        /// source. `--pod-manifest-path`.
        "staticPodPath" => static_pod_path: String = String::new(), Value;
        /// How often the static pod path is re-listed (inotify catches changes in between).
        /// `--file-check-frequency`, default 20s.
        "fileCheckFrequency" => file_check_frequency: Duration = Duration::from_secs(20), Value;
        /// Max period between synchronizing running containers and config. `--sync-frequency`,
        /// default 1m.
        "syncFrequency" => sync_frequency: Duration = Duration::from_secs(60), Value;
        /// CRI endpoint. `--container-runtime-endpoint`.
        "containerRuntimeEndpoint" => container_runtime_endpoint: String =
            "unix:///run/containerd/containerd.sock".to_owned(), Value;
        /// Timeout of all runtime requests except long-running ones (pull, logs, exec, attach).
        /// `--runtime-request-timeout`, default 2m.
        "runtimeRequestTimeout" => runtime_request_timeout: Duration = Duration::from_secs(120), Value;
        /// Port of the localhost healthz endpoint; 0 disables it. `--healthz-port`.
        "healthzPort" => healthz_port: u16 = 10248, Ptr;
        /// Address of the healthz server. `--healthz-bind-address`.
        "healthzBindAddress" => healthz_bind_address: String = "127.0.0.1".to_owned(), Value;
        /// Where container logs are written (`<podLogsDir>/<ns>_<name>_<uid>/<container>/N.log`).
        "podLogsDir" => pod_logs_dir: String = "/var/log/pods".to_owned(), Value;
        /// Cluster DNS domain added to containers' search paths. `--cluster-domain`.
        "clusterDomain" => cluster_domain: String = String::new(), Value;
        /// DNS server IPs for pods with dnsPolicy ClusterFirst. `--cluster-dns`.
        "clusterDNS" => cluster_dns: Vec<String> = Vec::new(), Value;
        /// Resolver configuration used as the basis of containers' DNS; "" disables it.
        /// `--resolv-conf`.
        "resolvConf" => resolv_conf: String = "/etc/resolv.conf".to_owned(), Ptr;
        /// Number of pods that can run on this node. `--max-pods`.
        "maxPods" => max_pods: u32 = 110, Value;
        /// Maximum number of processes per pod; -1 means no pod-level limit.
        "podPidsLimit" => pod_pids_limit: i64 = -1, Ptr;
        /// Pull images one at a time.
        "serializeImagePulls" => serialize_image_pulls: bool = true, Ptr;
        /// If > 0, limit registry pull QPS to this value; 0 means unlimited.
        "registryPullQPS" => registry_pull_qps: u32 = 5, Ptr;
        /// Maximum size of bursty pulls (only used if registryPullQPS > 0).
        "registryBurst" => registry_burst: u32 = 10, Value;
        /// Whether the kubelet's secured server (`port`) is enabled.
        "enableServer" => enable_server: bool = true, Ptr;
        /// IP address for the kubelet server.
        "address" => address: String = "0.0.0.0".to_owned(), Value;
        /// Port of the kubelet server.
        "port" => port: u16 = 10250, Value;
        /// Port of the read-only, unauthenticated server; 0 disables it.
        "readOnlyPort" => read_only_port: u16 = 0, Value;
        /// Serve logs, exec/attach/port-forward, /runningpods and /configz on the server.
        "enableDebuggingHandlers" => enable_debugging_handlers: bool = true, Ptr;
        /// Serve the node's log files (`/logs/`) when debugging handlers are on.
        "enableSystemLogHandler" => enable_system_log_handler: bool = true, Ptr;
        /// Authentication settings of the kubelet server (opaque for now).
        "authentication" => authentication: Value = serde_json::json!({
            "anonymous": { "enabled": false },
            "webhook": { "enabled": true, "cacheTTL": "2m0s" },
            "x509": {},
        }), Value;
        /// Authorization settings of the kubelet server (opaque for now).
        "authorization" => authorization: Value = serde_json::json!({
            "mode": "Webhook",
            "webhook": { "cacheAuthorizedTTL": "5m0s", "cacheUnauthorizedTTL": "30s" },
        }), Value;
        /// How the kubelet sets up hairpin NAT: "promiscuous-bridge", "hairpin-veth" or "none".
        "hairpinMode" => hairpin_mode: String = "promiscuous-bridge".to_owned(), Value;
        /// How often the kubelet computes node status (and posts it when it changed).
        /// `--node-status-update-frequency`, default 10s.
        "nodeStatusUpdateFrequency" => node_status_update_frequency: Duration = Duration::from_secs(10), Value;
        /// How often the kubelet posts node status when it did not change; a change is posted at
        /// once. Default 5m, or `nodeStatusUpdateFrequency` when the file sets that explicitly
        /// (backward compatibility, see [`KubeletConfiguration::resolve`]). No flag.
        "nodeStatusReportFrequency" => node_status_report_frequency: Duration = Duration::from_secs(300), Value;
        /// Duration of the node lease, in seconds.
        "nodeLeaseDurationSeconds" => node_lease_duration_seconds: u32 = 40, Value;
        /// Maximum number of images reported in `Node.Status.Images`; -1 means no cap.
        /// `--node-status-max-images`.
        "nodeStatusMaxImages" => node_status_max_images: i32 = 50, Ptr;
        /// Register the node with the API server (only with `--kubeconfig`). `--register-node`.
        "registerNode" => register_node: bool = true, Ptr;
        /// Taints the node registers with; no-op if registerNode is false.
        /// `--register-with-taints` (`<key>=<value>:<effect>,…`).
        "registerWithTaints" => register_with_taints: Vec<Taint> = Vec::new(), Value;
        /// Unique identifier of the node in a machine database (cloud provider). `--provider-id`.
        "providerID" => provider_id: String = String::new(), Value;
        /// QPS towards the API server, except events and node heartbeats; must be >= 0.
        /// `--kube-api-qps`.
        "kubeAPIQPS" => kube_api_qps: i32 = 50, Ptr;
        /// Burst towards the API server; must be >= 0. `--kube-api-burst`.
        "kubeAPIBurst" => kube_api_burst: i32 = 100, Value;
        /// Event creations per second; must be >= 0; 0 means client-go's default (5).
        /// `--event-qps`.
        "eventRecordQPS" => event_record_qps: i32 = 50, Ptr;
        /// Event burst; must be >= 0; 0 means client-go's default (10). `--event-burst`.
        "eventBurst" => event_burst: i32 = 100, Value;
        /// Request a new client certificate from the API server as the current one nears its
        /// expiration. `--rotate-certificates`.
        "rotateCertificates" => rotate_certificates: bool = false, Value;
        /// Request the serving certificate from the API server (CSR, signer
        /// `kubernetes.io/kubelet-serving`) instead of self-signing. `--rotate-server-certificates`.
        "serverTLSBootstrap" => server_tls_bootstrap: bool = false, Value;
        /// x509 certificate for the kubelet server (intermediates after it). `--tls-cert-file`.
        "tlsCertFile" => tls_cert_file: String = String::new(), Value;
        /// Private key matching `tlsCertFile`. `--tls-private-key-file`.
        "tlsPrivateKeyFile" => tls_private_key_file: String = String::new(), Value;
        /// TLS 1.2 cipher suites the server offers, by Go's names (empty: the defaults).
        /// `--tls-cipher-suites`.
        "tlsCipherSuites" => tls_cipher_suites: Vec<String> = Vec::new(), Value;
        /// The lowest TLS version served: `VersionTLS10` … `VersionTLS13`. `--tls-min-version`.
        "tlsMinVersion" => tls_min_version: String = String::new(), Value;
        /// How the ConfigMap and Secret managers notice changes: "Get", "Cache" or "Watch".
        "configMapAndSecretChangeDetectionStrategy" => config_map_and_secret_change_detection_strategy: String =
            "Watch".to_owned(), Value;
        /// Volumes are attached/detached by the attach/detach controller, not the kubelet
        /// (announced with the node annotation `volumes.kubernetes.io/controller-managed-attach-detach`).
        /// `--enable-controller-attach-detach`.
        "enableControllerAttachDetach" => enable_controller_attach_detach: bool = true, Ptr;
        /// How often pods' volume usage is measured (and how long a measurement is reused);
        /// zero turns it off. `--volume-stats-agg-period`, default 1m.
        "volumeStatsAggPeriod" => volume_stats_agg_period: Duration = Duration::from_secs(60), Value;
        /// Pod and QoS cgroups under `<cgroupRoot>/kubepods` (pods' cgroup parents).
        /// `--cgroups-per-qos`.
        "cgroupsPerQOS" => cgroups_per_qos: bool = true, Ptr;
        /// How cgroups are named for the runtime: "cgroupfs" or "systemd" (must match the
        /// runtime's). `--cgroup-driver`.
        "cgroupDriver" => cgroup_driver: String = "cgroupfs".to_owned(), Value;
        /// The cgroup the kubelet's `kubepods` hierarchy goes under; "" is `/`. `--cgroup-root`.
        "cgroupRoot" => cgroup_root: String = String::new(), Value;
        /// Enforce cpu limits as CFS quotas. `--cpu-cfs-quota`.
        "cpuCFSQuota" => cpu_cfs_quota: bool = true, Ptr;
        /// The CFS period cpu limits are quotas of. `--cpu-cfs-quota-period`, default 100ms.
        "cpuCFSQuotaPeriod" => cpu_cfs_quota_period: Duration = Duration::from_millis(100), Value;
        /// Resources reserved for Kubernetes system daemons (`cpu`, `memory`,
        /// `ephemeral-storage`, `pid` → quantity), taken out of allocatable. `--kube-reserved`.
        "kubeReserved" => kube_reserved: BTreeMap<String, String> = BTreeMap::new(), Value;
        /// Resources reserved for the rest of the system. `--system-reserved`.
        "systemReserved" => system_reserved: BTreeMap<String, String> = BTreeMap::new(), Value;
        /// The existing cgroup `kube-reserved` enforcement limits. `--kube-reserved-cgroup`.
        "kubeReservedCgroup" => kube_reserved_cgroup: String = String::new(), Value;
        /// The existing cgroup `system-reserved` enforcement limits. `--system-reserved-cgroup`.
        "systemReservedCgroup" => system_reserved_cgroup: String = String::new(), Value;
        /// What node allocatable limits: `pods` (the kubepods cgroup), `system-reserved`,
        /// `kube-reserved` (and their `-compressible` cpu-only forms) or `none`; an explicit
        /// empty list enforces nothing. `--enforce-node-allocatable`.
        "enforceNodeAllocatable" => enforce_node_allocatable: Vec<String> = vec!["pods".to_owned()], Ptr;
        /// Hard eviction thresholds (signal → quantity or percentage); unset is upstream's
        /// default set, a file's map replaces it whole unless `mergeDefaultEvictionSettings`.
        /// `--eviction-hard` (`memory.available<100Mi,…`).
        "evictionHard" => eviction_hard: BTreeMap<String, String> = default_eviction_hard(), Ptr;
        /// Fill the signals a file's `evictionHard` leaves out from the defaults.
        "mergeDefaultEvictionSettings" => merge_default_eviction_settings: bool = false, Ptr;
        /// Soft eviction thresholds: met for their grace period, they evict. `--eviction-soft`.
        "evictionSoft" => eviction_soft: BTreeMap<String, String> = BTreeMap::new(), Value;
        /// How long each soft threshold must hold. `--eviction-soft-grace-period`.
        "evictionSoftGracePeriod" => eviction_soft_grace_period: BTreeMap<String, String> = BTreeMap::new(), Value;
        /// How much beyond a threshold must be free before it counts as reclaimed.
        /// `--eviction-minimum-reclaim`.
        "evictionMinimumReclaim" => eviction_minimum_reclaim: BTreeMap<String, String> = BTreeMap::new(), Value;
        /// How long a pressure condition stays after its threshold was last met.
        /// `--eviction-pressure-transition-period`, default 5m.
        "evictionPressureTransitionPeriod" => eviction_pressure_transition_period: Duration = Duration::from_secs(300), Value;
        /// The longest grace period a soft eviction gives a pod. `--eviction-max-pod-grace-period`.
        "evictionMaxPodGracePeriod" => eviction_max_pod_grace_period: i32 = 0, Value;
        /// Image filesystem usage (percent) at or above which unused images are removed; 100
        /// turns the space-driven collection off. `--image-gc-high-threshold`.
        "imageGCHighThresholdPercent" => image_gc_high_threshold_percent: i32 = 85, Ptr;
        /// The usage (percent) a collection frees down to. `--image-gc-low-threshold`.
        "imageGCLowThresholdPercent" => image_gc_low_threshold_percent: i32 = 80, Ptr;
        /// An unused image first seen less than this long ago is not removed.
        /// `--minimum-image-ttl-duration`, default 2m.
        "imageMinimumGCAge" => image_minimum_gc_age: Duration = Duration::from_secs(120), Value;
        /// An image unused for longer than this is removed whatever the usage; 0 turns it off.
        "imageMaximumGCAge" => image_maximum_gc_age: Duration = Duration::ZERO, Value;
        /// A container log this large (a quantity) is rotated; negative turns rotation off.
        /// `--container-log-max-size`.
        "containerLogMaxSize" => container_log_max_size: String = "10Mi".to_owned(), Value;
        /// Log files kept per container, the current one included (more than 1).
        /// `--container-log-max-files`.
        "containerLogMaxFiles" => container_log_max_files: i32 = 5, Ptr;
        /// Containers whose logs are rotated at once.
        "containerLogMaxWorkers" => container_log_max_workers: i32 = 1, Ptr;
        /// How often container logs are checked for rotation (at least 3s).
        "containerLogMonitorInterval" => container_log_monitor_interval: Duration = Duration::from_secs(10), Ptr;
    }
    runtime {
        /// Directory for the kubelet's own files (volume mounts, checkpoints, …). `--root-dir`.
        root_dir: PathBuf = PathBuf::from("/var/lib/kubelet");
        /// Use this instead of the hostname as the node name. `--hostname-override`.
        hostname_override: Option<String> = None;
        /// IP address (or comma-separated dual-stack addresses) of the node. `--node-ip`.
        node_ip: Option<String> = None;
        /// Log verbosity (`-v`).
        verbosity: u8 = 0;
        /// How to connect to the API server; `None` is standalone mode. `--kubeconfig`.
        kubeconfig: Option<PathBuf> = None;
        /// Credentials to request a client certificate with when `--kubeconfig` does not exist
        /// or holds no valid certificate. `--bootstrap-kubeconfig`.
        bootstrap_kubeconfig: Option<PathBuf> = None;
        /// Where the client (and self-signed serving) certificates live. `--cert-dir`.
        cert_dir: PathBuf = PathBuf::from("/var/lib/kubelet/pki");
        /// Labels added when registering the node. `--node-labels`.
        node_labels: BTreeMap<String, String> = BTreeMap::new();
        /// "" (none) or "external" (a cloud controller manager initializes the node: register
        /// with the `node.cloudprovider.kubernetes.io/uninitialized` taint). `--cloud-provider`.
        cloud_provider: String = String::new();
        /// A dead container younger than this is not collected. `--minimum-container-ttl-duration`
        /// (deprecated upstream, flag only).
        minimum_container_ttl_duration: Duration = Duration::ZERO;
        /// Dead instances kept per container; negative keeps all.
        /// `--maximum-dead-containers-per-container` (deprecated upstream, flag only).
        maximum_dead_containers_per_container: i32 = 1;
        /// Dead containers kept on the node; negative keeps all. `--maximum-dead-containers`
        /// (deprecated upstream, flag only).
        maximum_dead_containers: i32 = -1;
    }
}

/// Upstream's `DefaultEvictionHard` (Linux).
pub fn default_eviction_hard() -> BTreeMap<String, String> {
    [
        ("memory.available", "100Mi"),
        ("nodefs.available", "10%"),
        ("nodefs.inodesFree", "5%"),
        ("imagefs.available", "15%"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

impl KubeletConfiguration {
    /// Applies precedence flag > file > default to every file-backed field, then upstream's
    /// defaulting rules that are not "zero means unset". Runtime-only fields get their defaults;
    /// the caller sets them from flags.
    pub fn resolve(file: KubeletConfigFile, flags: KubeletConfigFile) -> Self {
        // Upstream defaults the file before the flags are applied, so only the file's
        // nodeStatusUpdateFrequency stands in for an unset nodeStatusReportFrequency.
        let report_default = file
            .node_status_report_frequency
            .filter(|d| !d.is_zero())
            .is_none()
            .then_some(file.node_status_update_frequency)
            .flatten()
            .filter(|d| !d.is_zero());
        let file_eviction_hard = file.eviction_hard.is_some();
        let flag_eviction_hard = flags.eviction_hard.is_some();
        let mut out = Self::resolve_fields(file, flags);
        // `mergeDefaultEvictionSettings` fills a file's evictionHard from the defaults; the flag
        // replaces the map as it is.
        if out.merge_default_eviction_settings && file_eviction_hard && !flag_eviction_hard {
            for (k, v) in default_eviction_hard() {
                out.eviction_hard.entry(k).or_insert(v);
            }
        }
        if let Some(update) = report_default {
            out.node_status_report_frequency = update;
        }
        // "default nil or negative value to -1 (implies node allocatable pid limit)"
        if out.pod_pids_limit < 0 {
            out.pod_pids_limit = -1;
        }
        out
    }

    /// The static pod path, `None` when the file source is disabled.
    pub fn static_pod_path(&self) -> Option<&Path> {
        (!self.static_pod_path.is_empty()).then(|| Path::new(&self.static_pod_path))
    }

    /// The subset of upstream's `ValidateKubeletConfiguration` that applies to the settings
    /// rkubelet implements; lists every problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errs = Vec::new();
        for (name, flag, value) in [
            ("fileCheckFrequency", "--file-check-frequency", self.file_check_frequency),
            ("syncFrequency", "--sync-frequency", self.sync_frequency),
            ("runtimeRequestTimeout", "--runtime-request-timeout", self.runtime_request_timeout),
            ("nodeStatusUpdateFrequency", "--node-status-update-frequency", self.node_status_update_frequency),
        ] {
            // Upstream only rejects negative values (impossible here), but a zero period makes
            // Go's tickers panic; reject it with a clear message instead.
            if value.is_zero() {
                errs.push(format!("{name} ({flag}) {} must be greater than zero", format_duration(value)));
            }
        }
        if !matches!(self.cgroup_driver.as_str(), "cgroupfs" | "systemd") {
            errs.push(format!(
                "cgroupDriver (--cgroup-driver) {:?} must be \"cgroupfs\" or \"systemd\"",
                self.cgroup_driver
            ));
        }
        if self.cpu_cfs_quota_period < Duration::from_millis(1) || self.cpu_cfs_quota_period > Duration::from_secs(1) {
            errs.push(format!(
                "cpuCFSQuotaPeriod (--cpu-cfs-quota-period) {} must be between 1ms and 1sec, inclusive",
                format_duration(self.cpu_cfs_quota_period)
            ));
        }
        if self.node_lease_duration_seconds == 0 {
            errs.push("nodeLeaseDurationSeconds must be greater than 0".to_owned());
        }
        if self.port == 0 {
            errs.push("port (--port) 0 must be between 1 and 65535, inclusive".to_owned());
        }
        for (i, ip) in self.cluster_dns.iter().enumerate() {
            if ip.parse::<std::net::IpAddr>().is_err() {
                errs.push(format!("clusterDNS[{i}] (--cluster-dns) {ip:?} is not a valid IP"));
            }
        }
        if !self.healthz_bind_address.is_empty() && self.healthz_bind_address.parse::<std::net::IpAddr>().is_err() {
            errs.push(format!(
                "healthzBindAddress (--healthz-bind-address) {:?} is not a valid IP",
                self.healthz_bind_address
            ));
        }
        if !matches!(self.hairpin_mode.as_str(), "promiscuous-bridge" | "hairpin-veth" | "none") {
            errs.push(format!(
                "hairpinMode (--hairpin-mode) {:?} must be one of \"promiscuous-bridge\", \"hairpin-veth\", \"none\"",
                self.hairpin_mode
            ));
        }
        for (name, flag, value) in [
            ("kubeAPIQPS", "--kube-api-qps", self.kube_api_qps),
            ("kubeAPIBurst", "--kube-api-burst", self.kube_api_burst),
            ("eventRecordQPS", "--event-qps", self.event_record_qps),
            ("eventBurst", "--event-burst", self.event_burst),
        ] {
            if value < 0 {
                errs.push(format!("{name} ({flag}) {value} must not be a negative number"));
            }
        }
        if self.node_status_max_images < -1 {
            errs.push(format!(
                "nodeStatusMaxImages (--node-status-max-images) {} must be -1 or greater",
                self.node_status_max_images
            ));
        }
        errs.extend(node::validate_taints(&self.register_with_taints));
        if !matches!(self.config_map_and_secret_change_detection_strategy.as_str(), "Get" | "Cache" | "Watch") {
            errs.push(format!(
                "configMapAndSecretChangeDetectionStrategy {:?} must be one of \"Get\", \"Cache\", \"Watch\"",
                self.config_map_and_secret_change_detection_strategy
            ));
        }
        if self.tls_cert_file.is_empty() != self.tls_private_key_file.is_empty() {
            errs.push(
                "tlsCertFile (--tls-cert-file) and tlsPrivateKeyFile (--tls-private-key-file) must be set together"
                    .to_owned(),
            );
        }
        match self.authorization.get("mode").and_then(Value::as_str) {
            Some("AlwaysAllow" | "Webhook") => {}
            other => errs.push(format!(
                "authorization.mode (--authorization-mode) {} must be \"AlwaysAllow\" or \"Webhook\"",
                other.map_or_else(|| "(unset)".to_owned(), |m| format!("{m:?}"))
            )),
        }
        if let Err(e) = node::validate_node_labels(&self.node_labels) {
            errs.push(e);
        }
        if !matches!(self.cloud_provider.as_str(), "" | "external") {
            errs.push(format!(
                "cloud provider {:?} was specified, but built-in cloud providers are not supported; \
                 set --cloud-provider=external and run an external cloud controller manager",
                self.cloud_provider
            ));
        }
        errs.extend(crate::node_allocatable::validate_enforcement(
            &self.enforce_node_allocatable,
            &self.system_reserved_cgroup,
            &self.kube_reserved_cgroup,
            self.cgroups_per_qos,
        ));
        for (flag, m) in [("--kube-reserved", &self.kube_reserved), ("--system-reserved", &self.system_reserved)] {
            if let Err(e) = crate::node_allocatable::parse_reserved(m) {
                errs.push(format!("{flag} value failed to parse: {e}"));
            }
        }
        for (field, flag, value) in [
            ("imageGCHighThresholdPercent", "--image-gc-high-threshold", self.image_gc_high_threshold_percent),
            ("imageGCLowThresholdPercent", "--image-gc-low-threshold", self.image_gc_low_threshold_percent),
        ] {
            if !(0..=100).contains(&value) {
                errs.push(format!("{field} ({flag}) {value} must be between 0 and 100, inclusive"));
            }
        }
        if self.image_gc_low_threshold_percent >= self.image_gc_high_threshold_percent {
            errs.push(format!(
                "imageGCLowThresholdPercent (--image-gc-low-threshold) {} must be less than imageGCHighThresholdPercent (--image-gc-high-threshold) {}",
                self.image_gc_low_threshold_percent, self.image_gc_high_threshold_percent
            ));
        }
        if !self.image_maximum_gc_age.is_zero() && self.image_maximum_gc_age <= self.image_minimum_gc_age {
            errs.push(format!(
                "imageMaximumGCAge {} must be greater than imageMinimumGCAge {}",
                format_duration(self.image_maximum_gc_age),
                format_duration(self.image_minimum_gc_age)
            ));
        }
        if self.container_log_max_files <= 1 {
            errs.push(format!("invalid MaxFiles {}, must be > 1", self.container_log_max_files));
        }
        if let Err(e) = crate::quantity::ParsedQuantity::parse_saturating(&self.container_log_max_size) {
            errs.push(format!("failed to parse container log max size {:?}: {e}", self.container_log_max_size));
        }
        if self.container_log_max_workers < 1 {
            errs.push("containerLogMaxWorkers must be greater than or equal to 1".to_owned());
        }
        if self.container_log_monitor_interval < Duration::from_secs(3) {
            errs.push(
                "containerLogMonitorInterval must be a positive time duration greater than or equal to 3s".to_owned(),
            );
        }
        if let Err(e) = crate::node_allocatable::parse_thresholds(&self.eviction_hard) {
            errs.push(format!("evictionHard (--eviction-hard): {e}"));
        } else if let Err(e) = crate::eviction::EvictionConfig::from_config(self) {
            errs.push(format!("eviction thresholds: {e}"));
        }
        if errs.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(errs)) }
    }
}

impl Serialize for KubeletConfiguration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_object().serialize(s)
    }
}

impl<'de> Deserialize<'de> for KubeletConfiguration {
    /// Reads a `KubeletConfiguration` object leniently (unknown fields ignored, `kind` and
    /// `apiVersion` optional) and applies defaults. Use [`load_file`] for the checked path.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = Map::<String, Value>::deserialize(d)?;
        let (file, _unknown) =
            KubeletConfigFile::from_object(&map, Path::new("<input>")).map_err(serde::de::Error::custom)?;
        Ok(Self::resolve(file, KubeletConfigFile::default()))
    }
}

/// Loads a kubelet config file (YAML or JSON). Returns only the values the file sets, and one
/// warning per field rkubelet does not implement that sets something (a Go zero value such as
/// kubeadm's `cpuManagerReconcilePeriod: 0s` sets nothing). Unimplemented fields are ignored, as
/// upstream's lenient decoding does, except the few whose ignoring would be unsafe
/// ([`ConfigError::Refused`], see [`unsupported`]). Relative paths in `staticPodPath`,
/// `resolvConf` and `podLogsDir` are resolved against the file's directory, as upstream does.
pub fn load_file(path: impl AsRef<Path>) -> Result<(KubeletConfigFile, Vec<String>), ConfigError> {
    let path = path.as_ref();
    let data = std::fs::read(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    parse_file(&data, path)
}

fn parse_file(data: &[u8], path: &Path) -> Result<(KubeletConfigFile, Vec<String>), ConfigError> {
    // JSON is YAML, so one parser handles both.
    let value: Value = serde_yaml::from_slice(data).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        line: e.location().map(|l| l.line()),
        message: e.to_string(),
    })?;
    let map = match value {
        Value::Object(map) => map,
        other => {
            return Err(ConfigError::NotAnObject { path: path.to_owned(), found: json_kind(&other) });
        }
    };
    for (field, expected) in [("kind", KIND), ("apiVersion", API_VERSION)] {
        let found = map.get(field);
        if found.and_then(Value::as_str) != Some(expected) {
            return Err(ConfigError::WrongType {
                path: path.to_owned(),
                field,
                found: found.map(describe_plain),
                expected,
            });
        }
    }
    let (mut file, unknown) = KubeletConfigFile::from_object(&map, path)?;
    let warnings = unsupported::check_unknown(&map, &unknown, path)?;
    if let Some(dir) = path.parent() {
        for p in [&mut file.static_pod_path, &mut file.resolv_conf, &mut file.pod_logs_dir].into_iter().flatten() {
            if !p.is_empty() && Path::new(p.as_str()).is_relative() {
                *p = dir.join(p.as_str()).to_string_lossy().into_owned();
            }
        }
    }
    Ok((file, warnings))
}

fn describe_plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "an empty document",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// What `kubeadm init` writes to /var/lib/kubelet/config.yaml (v1.31).
    const KUBEADM_CONFIG: &str = r#"apiVersion: kubelet.config.k8s.io/v1beta1
authentication:
  anonymous:
    enabled: false
  webhook:
    cacheTTL: 0s
    enabled: true
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 0s
    cacheUnauthorizedTTL: 0s
cgroupDriver: systemd
clusterDNS:
- 10.96.0.10
clusterDomain: cluster.local
containerRuntimeEndpoint: ""
cpuManagerReconcilePeriod: 0s
evictionPressureTransitionPeriod: 0s
fileCheckFrequency: 0s
healthzBindAddress: 127.0.0.1
healthzPort: 10248
httpCheckFrequency: 0s
imageMaximumGCAge: 0s
imageMinimumGCAge: 0s
kind: KubeletConfiguration
logging:
  flushFrequency: 0
  options:
    json:
      infoBufferSize: "0"
    text:
      infoBufferSize: "0"
  verbosity: 0
memorySwap: {}
nodeStatusReportFrequency: 0s
nodeStatusUpdateFrequency: 0s
resolvConf: /run/systemd/resolve/resolv.conf
rotateCertificates: true
runtimeRequestTimeout: 0s
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
staticPodPath: /etc/kubernetes/manifests
streamingConnectionIdleTimeout: 0s
syncFrequency: 0s
volumeStatsAggPeriod: 0s
"#;

    fn parse(s: &str) -> Result<(KubeletConfigFile, Vec<String>), ConfigError> {
        parse_file(s.as_bytes(), Path::new("/etc/kubernetes/kubelet.yaml"))
    }

    #[test]
    fn eviction_hard_from_a_file_replaces_the_defaults_unless_merged() {
        let kind = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";
        let resolve = |body: &str| {
            let (file, _) = parse(&format!("{kind}{body}")).unwrap();
            KubeletConfiguration::resolve(file, KubeletConfigFile::default())
        };
        assert_eq!(resolve("").eviction_hard, default_eviction_hard());
        let partial = resolve("evictionHard:\n  memory.available: 200Mi\n");
        assert_eq!(partial.eviction_hard.len(), 1, "{:?}", partial.eviction_hard);
        let merged = resolve("mergeDefaultEvictionSettings: true\nevictionHard:\n  memory.available: 200Mi\n");
        assert_eq!(merged.eviction_hard.len(), 4);
        assert_eq!(merged.eviction_hard["memory.available"], "200Mi", "the file's signal wins");
        assert!(resolve("evictionHard: {}\n").eviction_hard.is_empty(), "an explicit empty map stays empty");
        let none = resolve("enforceNodeAllocatable: []\nkubeReserved:\n  cpu: 100m\n");
        assert!(none.enforce_node_allocatable.is_empty());
        assert_eq!(none.kube_reserved["cpu"], "100m");
    }

    #[test]
    fn defaults_match_upstream() {
        let c = KubeletConfiguration::default();
        assert_eq!(c.static_pod_path, "");
        assert_eq!(c.static_pod_path(), None);
        assert_eq!(c.file_check_frequency, Duration::from_secs(20));
        assert_eq!(c.sync_frequency, Duration::from_secs(60));
        assert_eq!(c.container_runtime_endpoint, "unix:///run/containerd/containerd.sock");
        assert_eq!(c.runtime_request_timeout, Duration::from_secs(120));
        assert_eq!(c.healthz_port, 10248);
        assert_eq!(c.healthz_bind_address, "127.0.0.1");
        assert_eq!(c.pod_logs_dir, "/var/log/pods");
        assert_eq!(c.cluster_domain, "");
        assert!(c.cluster_dns.is_empty());
        assert_eq!(c.resolv_conf, "/etc/resolv.conf");
        assert_eq!(c.max_pods, 110);
        assert_eq!(c.pod_pids_limit, -1);
        assert!(c.serialize_image_pulls);
        assert_eq!((c.registry_pull_qps, c.registry_burst), (5, 10));
        assert!(c.enable_server);
        assert_eq!((c.address.as_str(), c.port, c.read_only_port), ("0.0.0.0", 10250, 0));
        assert_eq!(c.hairpin_mode, "promiscuous-bridge");
        assert_eq!(c.node_status_update_frequency, Duration::from_secs(10));
        assert_eq!(c.node_lease_duration_seconds, 40);
        assert_eq!(c.node_status_report_frequency, Duration::from_secs(300));
        assert_eq!(c.node_status_max_images, 50);
        assert!(c.register_node && c.register_with_taints.is_empty());
        assert_eq!((c.kube_api_qps, c.kube_api_burst, c.event_record_qps, c.event_burst), (50, 100, 50, 100));
        assert!(!c.rotate_certificates && !c.server_tls_bootstrap);
        assert_eq!(c.config_map_and_secret_change_detection_strategy, "Watch");
        assert!(c.enable_controller_attach_detach);
        assert_eq!(c.volume_stats_agg_period, Duration::from_secs(60));
        assert!(c.cgroups_per_qos && c.cpu_cfs_quota && c.cgroup_root.is_empty());
        assert_eq!((c.cgroup_driver.as_str(), c.cpu_cfs_quota_period), ("cgroupfs", Duration::from_millis(100)));
        assert_eq!((c.provider_id.as_str(), c.tls_cert_file.as_str(), c.tls_private_key_file.as_str()), ("", "", ""));
        assert_eq!((c.kubeconfig.as_deref(), c.bootstrap_kubeconfig.as_deref()), (None, None));
        assert_eq!(c.cert_dir, PathBuf::from("/var/lib/kubelet/pki"));
        assert!(c.node_labels.is_empty() && c.cloud_provider.is_empty());
        assert_eq!(c.root_dir, PathBuf::from("/var/lib/kubelet"));
        assert_eq!((c.hostname_override.as_deref(), c.node_ip.as_deref(), c.verbosity), (None, None, 0));
        assert_eq!(c.authorization["mode"], "Webhook");
        assert!(c.validate().is_ok());
        assert_eq!(KubeletConfiguration::resolve(Default::default(), Default::default()), c);
    }

    #[test]
    fn serializes_as_kubelet_configuration_and_round_trips() {
        let c = KubeletConfiguration {
            cluster_dns: vec!["10.96.0.10".into()],
            file_check_frequency: Duration::from_millis(1500),
            verbosity: 4,
            ..Default::default()
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["kind"], KIND);
        assert_eq!(v["apiVersion"], API_VERSION);
        assert_eq!(v["fileCheckFrequency"], "1.5s");
        assert_eq!(v["runtimeRequestTimeout"], "2m0s");
        assert_eq!(v["clusterDNS"][0], "10.96.0.10");
        assert!(v.get("verbosity").is_none() && v.get("rootDir").is_none());
        let back: KubeletConfiguration = serde_json::from_value(v).unwrap();
        assert_eq!(back, KubeletConfiguration { verbosity: 0, ..c });
    }

    #[test]
    fn precedence_flag_over_file_over_default() {
        let (file, warnings) = parse(
            "kind: KubeletConfiguration\napiVersion: kubelet.config.k8s.io/v1beta1\n\
             maxPods: 50\nclusterDomain: cluster.local\nsyncFrequency: 30s\n",
        )
        .unwrap();
        assert!(warnings.is_empty());
        let flags = KubeletConfigFile { max_pods: Some(20), healthz_port: Some(0), ..Default::default() };
        let c = KubeletConfiguration::resolve(file, flags);
        assert_eq!(c.max_pods, 20, "flag beats file");
        assert_eq!(c.cluster_domain, "cluster.local", "file beats default");
        assert_eq!(c.sync_frequency, Duration::from_secs(30));
        assert_eq!(c.healthz_port, 0, "an explicit zero flag is kept");
        assert_eq!(c.file_check_frequency, Duration::from_secs(20), "default when unset");
    }

    #[test]
    fn kubeadm_config_loads_with_one_warning_per_unsupported_field() {
        let (file, warnings) = parse(KUBEADM_CONFIG).unwrap();
        // kubeadm's `0s`, `0` and `{}` values are Go zero values: they set nothing, so only the
        // fields that do set something are reported.
        assert!(warnings.is_empty(), "{warnings:?}");
        let with_values = KUBEADM_CONFIG
            .replace("shutdownGracePeriod: 0s", "shutdownGracePeriod: 30s")
            .replace("memorySwap: {}", "memorySwap:\n  swapBehavior: LimitedSwap");
        let (_, warnings) = parse(&with_values).unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:#?}");
        for field in ["shutdownGracePeriod", "memorySwap"] {
            let expected = format!(
                "unsupported KubeletConfiguration field \"{field}\" in /etc/kubernetes/kubelet.yaml is ignored"
            );
            assert!(warnings.contains(&expected), "missing {expected}");
        }
        let c = KubeletConfiguration::resolve(file, KubeletConfigFile::default());
        assert_eq!(c.static_pod_path, "/etc/kubernetes/manifests");
        assert_eq!(c.cluster_dns, vec!["10.96.0.10".to_owned()]);
        assert_eq!(c.cluster_domain, "cluster.local");
        assert_eq!(c.resolv_conf, "/run/systemd/resolve/resolv.conf");
        // Zero values of plain Go fields are defaulted, as upstream's scheme defaulting does.
        assert_eq!(c.file_check_frequency, Duration::from_secs(20));
        assert_eq!(c.sync_frequency, Duration::from_secs(60));
        assert_eq!(c.runtime_request_timeout, Duration::from_secs(120));
        assert_eq!(c.volume_stats_agg_period, Duration::from_secs(60), "0s is defaulted, as upstream");
        assert_eq!(c.cgroup_driver, "systemd");
        assert!(c.cgroups_per_qos && c.cpu_cfs_quota);
        assert_eq!(c.container_runtime_endpoint, "unix:///run/containerd/containerd.sock");
        // Nested objects keep the file's values and fill the rest from the defaults.
        assert_eq!(c.authentication["x509"]["clientCAFile"], "/etc/kubernetes/pki/ca.crt");
        assert_eq!(c.authentication["webhook"]["cacheTTL"], "2m0s");
        assert_eq!(c.authorization["webhook"]["cacheUnauthorizedTTL"], "30s");
        assert!(c.rotate_certificates);
        assert_eq!(c.node_status_update_frequency, Duration::from_secs(10));
        assert_eq!(c.node_status_report_frequency, Duration::from_secs(300));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn json_config_and_relative_paths() {
        let json = r#"{"kind":"KubeletConfiguration","apiVersion":"kubelet.config.k8s.io/v1beta1",
            "staticPodPath":"manifests","resolvConf":"","podPidsLimit":-5}"#;
        let (file, warnings) = parse(json).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(file.static_pod_path.as_deref(), Some("/etc/kubernetes/manifests"));
        let c = KubeletConfiguration::resolve(file, KubeletConfigFile::default());
        assert_eq!(c.resolv_conf, "", "an explicit empty resolvConf disables it");
        assert_eq!(c.pod_pids_limit, -1, "negative pid limits normalize to -1");
    }

    #[test]
    fn wrong_kind_or_api_version_is_an_error() {
        let err =
            parse("kind: KubeProxyConfiguration\napiVersion: kubelet.config.k8s.io/v1beta1\n").unwrap_err().to_string();
        assert_eq!(
            err,
            "kubelet config file /etc/kubernetes/kubelet.yaml: kind is \"KubeProxyConfiguration\", expected \"KubeletConfiguration\""
        );
        let err =
            parse("kind: KubeletConfiguration\napiVersion: kubelet.config.k8s.io/v1alpha1\n").unwrap_err().to_string();
        assert!(err.contains("apiVersion is \"kubelet.config.k8s.io/v1alpha1\""), "{err}");
        assert!(err.contains("expected \"kubelet.config.k8s.io/v1beta1\""), "{err}");
        let err = parse("maxPods: 3\n").unwrap_err().to_string();
        assert!(err.contains("kind is missing"), "{err}");
        let err = parse("").unwrap_err().to_string();
        assert!(err.contains("must contain a YAML or JSON object, found an empty document"), "{err}");
    }

    #[test]
    fn malformed_yaml_names_file_and_line() {
        let err = parse("kind: KubeletConfiguration\napiVersion: x\nmaxPods: [1\n  clusterDomain: a: b\n").unwrap_err();
        match &err {
            ConfigError::Parse { path, line, .. } => {
                assert_eq!(path, Path::new("/etc/kubernetes/kubelet.yaml"));
                assert!(line.is_some_and(|l| l >= 3), "{err}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("/etc/kubernetes/kubelet.yaml"));
        assert!(err.to_string().contains("line"), "{err}");
    }

    #[test]
    fn bad_field_values_name_the_field() {
        let head = "kind: KubeletConfiguration\napiVersion: kubelet.config.k8s.io/v1beta1\n";
        let err = parse(&format!("{head}fileCheckFrequency: 20\n")).unwrap_err().to_string();
        assert!(err.contains("invalid value for fileCheckFrequency: expected a duration string"), "{err}");
        let err = parse(&format!("{head}syncFrequency: soon\n")).unwrap_err().to_string();
        assert!(err.contains("invalid value for syncFrequency: invalid duration \"soon\""), "{err}");
        let err = parse(&format!("{head}healthzPort: 70000\n")).unwrap_err().to_string();
        assert!(err.contains("healthzPort: expected an integer between 0 and 65535, got 70000"), "{err}");
        let err = parse(&format!("{head}clusterDNS: 10.0.0.1\n")).unwrap_err().to_string();
        assert!(err.contains("clusterDNS: expected a list of strings"), "{err}");
    }

    #[test]
    fn validation_lists_every_problem() {
        let c = KubeletConfiguration {
            cluster_dns: vec!["10.0.0.10".into(), "not-an-ip".into()],
            file_check_frequency: Duration::ZERO,
            hairpin_mode: "sometimes".into(),
            ..Default::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("fileCheckFrequency (--file-check-frequency) 0s must be greater than zero"), "{err}");
        assert!(err.contains("clusterDNS[1] (--cluster-dns) \"not-an-ip\" is not a valid IP"), "{err}");
        assert!(err.contains("hairpinMode"), "{err}");
    }

    #[test]
    fn cluster_fields_load_from_a_file() {
        let (file, warnings) = parse(
            "kind: KubeletConfiguration\napiVersion: kubelet.config.k8s.io/v1beta1\n\
             registerNode: false\nregisterWithTaints:\n- key: dedicated\n  value: gpu\n  effect: NoSchedule\n\
             kubeAPIQPS: 0\nkubeAPIBurst: 0\neventRecordQPS: 0\neventBurst: 20\nnodeStatusMaxImages: -1\n\
             rotateCertificates: true\nserverTLSBootstrap: true\nproviderID: aws:///zone/i-1\n\
             tlsCertFile: /pki/kubelet.crt\ntlsPrivateKeyFile: /pki/kubelet.key\n\
             configMapAndSecretChangeDetectionStrategy: Cache\nenableControllerAttachDetach: false\n\
             staticPodURL: http://config.example/pods\n",
        )
        .unwrap();
        assert_eq!(
            warnings,
            vec!["unsupported KubeletConfiguration field \"staticPodURL\" in /etc/kubernetes/kubelet.yaml is ignored"]
        );
        let c = KubeletConfiguration::resolve(file, KubeletConfigFile::default());
        assert!(!c.register_node, "an explicit false of a pointer field is kept");
        assert_eq!(c.register_with_taints.len(), 1);
        assert_eq!(node::describe_taint(&c.register_with_taints[0]), "dedicated=gpu:NoSchedule");
        assert_eq!(c.kube_api_qps, 0, "kubeAPIQPS is a pointer: 0 is kept");
        assert_eq!(c.kube_api_burst, 100, "kubeAPIBurst is a value: 0 means the default");
        assert_eq!((c.event_record_qps, c.event_burst, c.node_status_max_images), (0, 20, -1));
        assert!(c.rotate_certificates && c.server_tls_bootstrap && !c.enable_controller_attach_detach);
        assert_eq!(c.provider_id, "aws:///zone/i-1");
        assert_eq!(
            (c.tls_cert_file.as_str(), c.tls_private_key_file.as_str()),
            ("/pki/kubelet.crt", "/pki/kubelet.key")
        );
        assert_eq!(c.config_map_and_secret_change_detection_strategy, "Cache");
        assert!(c.validate().is_ok());
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["registerWithTaints"][0]["effect"], "NoSchedule");
        assert_eq!(v["kubeAPIQPS"], 0);
    }

    #[test]
    fn node_status_report_frequency_defaults_to_an_explicit_update_frequency() {
        let head = "kind: KubeletConfiguration\napiVersion: kubelet.config.k8s.io/v1beta1\n";
        let resolve = |body: &str, flags: KubeletConfigFile| {
            let (file, _) = parse(&format!("{head}{body}")).unwrap();
            KubeletConfiguration::resolve(file, flags)
        };
        let c = resolve("nodeStatusUpdateFrequency: 20s\n", KubeletConfigFile::default());
        assert_eq!(c.node_status_report_frequency, Duration::from_secs(20));
        let c =
            resolve("nodeStatusUpdateFrequency: 20s\nnodeStatusReportFrequency: 1m\n", KubeletConfigFile::default());
        assert_eq!(c.node_status_report_frequency, Duration::from_secs(60));
        let c =
            resolve("nodeStatusUpdateFrequency: 20s\nnodeStatusReportFrequency: 0s\n", KubeletConfigFile::default());
        assert_eq!(c.node_status_report_frequency, Duration::from_secs(20));
        // The flag is applied after upstream's defaulting, so it does not move the report period.
        let flags =
            KubeletConfigFile { node_status_update_frequency: Some(Duration::from_secs(4)), ..Default::default() };
        let c = resolve("", flags);
        assert_eq!(c.node_status_update_frequency, Duration::from_secs(4));
        assert_eq!(c.node_status_report_frequency, Duration::from_secs(300));
    }

    #[test]
    fn image_gc_settings_default_and_validate_as_upstream() {
        let c = KubeletConfiguration::default();
        assert_eq!(
            (c.image_gc_high_threshold_percent, c.image_gc_low_threshold_percent),
            (85, 80),
            "upstream's defaults"
        );
        assert_eq!((c.image_minimum_gc_age, c.image_maximum_gc_age), (Duration::from_secs(120), Duration::ZERO));
        assert_eq!((c.maximum_dead_containers_per_container, c.maximum_dead_containers), (1, -1));
        let file = KubeletConfigFile { image_gc_high_threshold_percent: Some(0), ..Default::default() };
        let zero = KubeletConfiguration::resolve(file, KubeletConfigFile::default());
        assert_eq!(zero.image_gc_high_threshold_percent, 0, "a pointer field keeps an explicit 0");
        let bad = KubeletConfiguration {
            image_gc_high_threshold_percent: 101,
            image_gc_low_threshold_percent: -1,
            ..Default::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains(
                "imageGCHighThresholdPercent (--image-gc-high-threshold) 101 must be between 0 and 100, inclusive"
            ),
            "{err}"
        );
        assert!(
            err.contains(
                "imageGCLowThresholdPercent (--image-gc-low-threshold) -1 must be between 0 and 100, inclusive"
            ),
            "{err}"
        );
        let inverted =
            KubeletConfiguration { image_gc_low_threshold_percent: 90, ..Default::default() }.validate().unwrap_err();
        assert!(inverted.to_string().contains(
            "imageGCLowThresholdPercent (--image-gc-low-threshold) 90 must be less than imageGCHighThresholdPercent (--image-gc-high-threshold) 85"
        ));
        let logs = KubeletConfiguration {
            container_log_max_files: 1,
            container_log_max_size: "ten".into(),
            container_log_max_workers: 0,
            container_log_monitor_interval: Duration::from_secs(2),
            ..Default::default()
        };
        let err = logs.validate().unwrap_err().to_string();
        for want in [
            "invalid MaxFiles 1, must be > 1",
            "failed to parse container log max size \"ten\"",
            "containerLogMaxWorkers must be greater than or equal to 1",
            "containerLogMonitorInterval must be a positive time duration greater than or equal to 3s",
        ] {
            assert!(err.contains(want), "{want}: {err}");
        }
        let ages = KubeletConfiguration { image_maximum_gc_age: Duration::from_secs(60), ..Default::default() };
        assert!(
            ages.validate()
                .unwrap_err()
                .to_string()
                .contains("imageMaximumGCAge 1m0s must be greater than imageMinimumGCAge 2m0s")
        );
    }

    #[test]
    fn cluster_settings_are_validated() {
        let c = KubeletConfiguration {
            kube_api_qps: -1,
            event_burst: -2,
            node_status_max_images: -2,
            config_map_and_secret_change_detection_strategy: "Poll".into(),
            tls_cert_file: "/pki/kubelet.crt".into(),
            cloud_provider: "aws".into(),
            node_labels: [("node-role.kubernetes.io/worker".to_owned(), String::new())].into_iter().collect(),
            register_with_taints: vec![Taint { key: "a".into(), effect: "Never".into(), ..Default::default() }],
            ..Default::default()
        };
        let err = c.validate().unwrap_err().to_string();
        for want in [
            "kubeAPIQPS (--kube-api-qps) -1 must not be a negative number",
            "eventBurst (--event-burst) -2 must not be a negative number",
            "nodeStatusMaxImages (--node-status-max-images) -2 must be -1 or greater",
            "configMapAndSecretChangeDetectionStrategy \"Poll\" must be one of",
            "tlsCertFile (--tls-cert-file) and tlsPrivateKeyFile (--tls-private-key-file) must be set together",
            "cloud provider \"aws\" was specified",
            "unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels",
            "registerWithTaints[0].effect \"Never\"",
        ] {
            assert!(err.contains(want), "missing {want:?} in {err}");
        }
    }

    #[test]
    fn load_file_reports_missing_file() {
        let err = load_file("/nonexistent/kubelet.yaml").unwrap_err().to_string();
        assert!(err.starts_with("failed to read kubelet config file /nonexistent/kubelet.yaml"), "{err}");
    }
}
