//! The command line, with upstream kubelet's flag names and meanings
//! (`cmd/kubelet/app/options/options.go`). Every flag is optional so that "not given" can be told
//! apart from "given with the default value": precedence is flag > `--config` file (with its
//! `--config-dir` drop-ins) > default. As with upstream's pflag, `--flag=value` and
//! `--flag value` are accepted, bools are `--flag` or `--flag=false`, a repeated flag overrides
//! (lists append), and `_` in names reads as `-`. Upstream flags rkubelet does not implement
//! are accepted with a warning or refused when ignoring them would be unsafe ([`upstream`]).

mod upstream;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use core_kubelet::config::{self, KubeletConfigFile, KubeletConfiguration, Taint};
use serde_json::{Value, json};

const ABOUT: &str = "rkubelet: the primary \"node agent\" that runs on each node.";

const LONG_ABOUT: &str = "\
rkubelet is the primary \"node agent\" that runs on each node. It can register the node with the \
apiserver using the hostname or a flag to override the hostname.

The kubelet works in terms of a PodSpec. A PodSpec is a YAML or JSON object that describes a \
pod. The kubelet takes a set of PodSpecs that are provided through various mechanisms and \
ensures that the containers described in those PodSpecs are running and healthy. The kubelet \
doesn't manage containers which were not created by Kubernetes.

File: static pod manifests are read from the path given by --pod-manifest-path (or staticPodPath \
in the --config file). Files under this path are watched for changes and also re-read \
periodically; the period is 20s by default and is configurable via --file-check-frequency.

Upstream kubelet flags that rkubelet does not implement are accepted and ignored with a warning, \
except those whose ignoring would be unsafe (--lock-file, --exit-on-lock-contention, --runonce, \
--seccomp-default, --container-runtime other than remote), which are refused.";

const CONFIG_FLAG_NOTE: &str =
    "(This parameter can also be set via the config file specified by --config; the flag takes precedence.)";

/// `--register-with-taints`: one clap value holding the whole list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaintList(pub Vec<Taint>);

/// Command-line flags. Names, meanings and defaults are upstream's (see each `help`).
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "rkubelet", version, about = ABOUT, long_about = LONG_ABOUT, args_override_self = true)]
pub struct Flags {
    #[arg(
        long = "config",
        value_name = "string",
        help = "The Kubelet will load its initial configuration from this file. The path may be absolute or relative; relative paths start at the Kubelet's current working directory. Omit this flag to use the built-in default configuration values. Command-line flags override configuration from this file."
    )]
    pub config: Option<PathBuf>,

    #[arg(
        long = "config-dir",
        value_name = "string",
        help = "Path to a directory to specify drop-ins, allows the user to optionally specify additional configs to overwrite what is provided by default and in the KubeletConfigFile flag. [default='']"
    )]
    pub config_dir: Option<PathBuf>,

    #[arg(
        long = "kubeconfig",
        value_name = "string",
        help = "Path to a kubeconfig file, specifying how to connect to the API server. Providing --kubeconfig enables API server mode, omitting --kubeconfig enables standalone mode."
    )]
    pub kubeconfig: Option<PathBuf>,

    #[arg(
        long = "bootstrap-kubeconfig",
        value_name = "string",
        help = "Path to a kubeconfig file that will be used to get client certificate for kubelet. If the file specified by --kubeconfig does not exist, the bootstrap kubeconfig is used to request a client certificate from the API server. On success, a kubeconfig file referencing the generated client certificate and key is written to the path specified by --kubeconfig. The client certificate and key file will be stored in the directory pointed by --cert-dir."
    )]
    pub bootstrap_kubeconfig: Option<PathBuf>,

    #[arg(
        long = "cert-dir",
        value_name = "string",
        help = "The directory where the TLS certs are located. If --tls-cert-file and --tls-private-key-file are provided, this flag will be ignored. (default \"/var/lib/kubelet/pki\")"
    )]
    pub cert_dir: Option<PathBuf>,

    #[arg(
        long = "node-labels",
        value_name = "mapStringString",
        help = "<comma-separated 'key=value' pairs> Labels to add when registering the node in the cluster.  Labels must be key=value pairs separated by ','. Labels in the 'kubernetes.io' namespace must begin with an allowed prefix (kubelet.kubernetes.io, node.kubernetes.io) or be in the specifically allowed set (beta.kubernetes.io/arch, beta.kubernetes.io/instance-type, beta.kubernetes.io/os, failure-domain.beta.kubernetes.io/region, failure-domain.beta.kubernetes.io/zone, kubernetes.io/arch, kubernetes.io/hostname, kubernetes.io/os, node.kubernetes.io/instance-type, topology.kubernetes.io/region, topology.kubernetes.io/zone)"
    )]
    pub node_labels: Vec<String>,

    #[arg(
        long = "cloud-provider",
        value_name = "string",
        help = "The provider for cloud services. Set to empty string for running with no cloud provider. Set to 'external' for running with an external cloud provider. If set, the cloud provider determines the name of the node (consult cloud provider documentation to determine if and how the hostname is used)."
    )]
    pub cloud_provider: Option<String>,

    #[arg(long = "pod-manifest-path", value_name = "string", help = help_with_note(
        "Path to the directory containing static pod files to run, or the path to a single static pod file. Files starting with dots will be ignored."))]
    pub pod_manifest_path: Option<String>,

    #[arg(long = "container-runtime-endpoint", value_name = "string", help = help_with_note(
        "The endpoint of container runtime service. Unix Domain Sockets are supported on Linux. Example: 'unix:///path/to/runtime.sock'. (default \"unix:///run/containerd/containerd.sock\")"))]
    pub container_runtime_endpoint: Option<String>,

    #[arg(
        long = "root-dir",
        value_name = "string",
        help = "Directory path for managing kubelet files (volume mounts, etc). (default \"/var/lib/kubelet\")"
    )]
    pub root_dir: Option<PathBuf>,

    #[arg(
        long = "hostname-override",
        value_name = "string",
        help = "If non-empty, will use this string as identification instead of the actual hostname."
    )]
    pub hostname_override: Option<String>,

    #[arg(
        long = "node-ip",
        value_name = "string",
        help = "IP address (or comma-separated dual-stack IP addresses) of the node. If unset, kubelet will use the node's default IPv4 address, if any, or its default IPv6 address if it has no IPv4 addresses. You can pass '::' to make it prefer the default IPv6 address rather than the default IPv4 address."
    )]
    pub node_ip: Option<String>,

    #[arg(long = "healthz-port", value_name = "int32", help = help_with_note(
        "The port of the localhost healthz endpoint (set to 0 to disable). (default 10248)"))]
    pub healthz_port: Option<u16>,

    #[arg(long = "healthz-bind-address", value_name = "ip", help = help_with_note(
        "The IP address for the healthz server to serve on (set to '0.0.0.0' or '::' for listening on all interfaces and IP families). (default 127.0.0.1)"))]
    pub healthz_bind_address: Option<String>,

    #[arg(long = "file-check-frequency", value_name = "duration", value_parser = parse_duration, help = help_with_note(
        "Duration between checking config files for new data. (default 20s)"))]
    pub file_check_frequency: Option<Duration>,

    #[arg(long = "runtime-request-timeout", value_name = "duration", value_parser = parse_duration, help = help_with_note(
        "Timeout of all runtime requests except long running request - pull, logs, exec and attach. When timeout exceeded, kubelet will cancel the request, throw out an error and retry later. (default 2m0s)"))]
    pub runtime_request_timeout: Option<Duration>,

    #[arg(long = "sync-frequency", value_name = "duration", value_parser = parse_duration, help = help_with_note(
        "Max period between synchronizing running containers and config. (default 1m0s)"))]
    pub sync_frequency: Option<Duration>,

    #[arg(long = "volume-stats-agg-period", value_name = "duration", value_parser = parse_duration_or_off, help = help_with_note(
        "Specifies interval for kubelet to calculate and cache the volume disk usage for all pods and volumes.  To disable volume calculations, set to a negative number. (default 1m0s)"))]
    pub volume_stats_agg_period: Option<Duration>,

    #[arg(long = "cgroups-per-qos", value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool, help = help_with_note(
        "Enable creation of QoS cgroup hierarchy, if true top level QoS and pod cgroups are created. (default true)"))]
    pub cgroups_per_qos: Option<bool>,

    #[arg(long = "cgroup-driver", value_name = "string", help = help_with_note(
        "Driver that the kubelet uses to manipulate cgroups on the host.  Possible values: 'cgroupfs', 'systemd' (default \"cgroupfs\")"))]
    pub cgroup_driver: Option<String>,

    #[arg(long = "cgroup-root", value_name = "string", help = help_with_note(
        "Optional root cgroup to use for pods. This is handled by the container runtime on a best effort basis. Default: '', which means use the container runtime default."))]
    pub cgroup_root: Option<String>,

    #[arg(long = "cpu-cfs-quota", value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool, help = help_with_note(
        "Enable CPU CFS quota enforcement for containers that specify CPU limits (default true)"))]
    pub cpu_cfs_quota: Option<bool>,

    #[arg(long = "cpu-cfs-quota-period", value_name = "duration", value_parser = parse_duration, help = help_with_note(
        "Sets CPU CFS quota period value, cpu.cfs_period_us, defaults to Linux Kernel default (default 100ms)"))]
    pub cpu_cfs_quota_period: Option<Duration>,

    #[arg(long = "kube-reserved", value_name = "mapStringString", value_parser = parse_eq_map, help = help_with_note(
        "A set of ResourceName=ResourceQuantity (e.g. cpu=200m,memory=500Mi,ephemeral-storage=1Gi,pid=1000) pairs that describe resources reserved for kubernetes system components. Currently only cpu, memory, pid and local ephemeral storage for root file system are supported. (default none)"))]
    pub kube_reserved: Option<StringMap>,

    #[arg(long = "system-reserved", value_name = "mapStringString", value_parser = parse_eq_map, help = help_with_note(
        "A set of ResourceName=ResourceQuantity (e.g. cpu=200m,memory=500Mi,ephemeral-storage=1Gi,pid=1000) pairs that describe resources reserved for non-kubernetes components. Currently only cpu, memory, pid and local ephemeral storage for root file system are supported. (default none)"))]
    pub system_reserved: Option<StringMap>,

    #[arg(long = "kube-reserved-cgroup", value_name = "string", help = help_with_note(
        "Absolute name of the top level cgroup that is used to manage kubernetes components for which compute resources were reserved via '--kube-reserved' flag. Ex. '/kube-reserved'. [default='']"))]
    pub kube_reserved_cgroup: Option<String>,

    #[arg(long = "system-reserved-cgroup", value_name = "string", help = help_with_note(
        "Absolute name of the top level cgroup that is used to manage non-kubernetes components for which compute resources were reserved via '--system-reserved' flag. Ex. '/system-reserved'. [default='']"))]
    pub system_reserved_cgroup: Option<String>,

    #[arg(long = "enforce-node-allocatable", value_name = "strings", value_parser = parse_levels, help = help_with_note(
        "A comma separated list of levels of node allocatable enforcement to be enforced by kubelet. Acceptable options are 'none', 'pods', 'system-reserved', 'system-reserved-compressible', 'kube-reserved' and 'kube-reserved-compressible'. If any of the latter four options are specified, '--system-reserved-cgroup' and '--kube-reserved-cgroup' must also be set, respectively. If 'none' is specified, no additional options should be set. (default [pods])"))]
    pub enforce_node_allocatable: Option<Levels>,

    #[arg(long = "eviction-hard", value_name = "mapStringString", value_parser = parse_lt_map, help = help_with_note(
        "A set of eviction thresholds (e.g. memory.available<1Gi) that if met would trigger a pod eviction. (default imagefs.available<15%,memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%)"))]
    pub eviction_hard: Option<StringMap>,

    #[arg(long = "eviction-soft", value_name = "mapStringString", value_parser = parse_lt_map, help = help_with_note(
        "A set of eviction thresholds (e.g. memory.available<1.5Gi) that if met over a corresponding grace period would trigger a pod eviction."))]
    pub eviction_soft: Option<StringMap>,

    #[arg(long = "eviction-soft-grace-period", value_name = "mapStringString", value_parser = parse_eq_map, help = help_with_note(
        "A set of eviction grace periods (e.g. memory.available=1m30s) that correspond to how long a soft eviction threshold must hold before triggering a pod eviction."))]
    pub eviction_soft_grace_period: Option<StringMap>,

    #[arg(long = "eviction-minimum-reclaim", value_name = "mapStringString", value_parser = parse_eq_map, help = help_with_note(
        "A set of minimum reclaims (e.g. imagefs.available=2Gi) that describes the minimum amount of resource the kubelet will reclaim when performing a pod eviction if that resource is under pressure."))]
    pub eviction_minimum_reclaim: Option<StringMap>,

    #[arg(long = "eviction-pressure-transition-period", value_name = "duration", value_parser = parse_duration, help = help_with_note(
        "Duration for which the kubelet has to wait before transitioning out of an eviction pressure condition. (default 5m0s)"))]
    pub eviction_pressure_transition_period: Option<Duration>,

    #[arg(long = "eviction-max-pod-grace-period", value_name = "int32", allow_negative_numbers = true, help = help_with_note(
        "Maximum allowed grace period (in seconds) to use when terminating pods in response to a soft eviction threshold being met.  If negative, defer to pod specified value."))]
    pub eviction_max_pod_grace_period: Option<i32>,

    #[arg(long = "cluster-dns", value_name = "strings", value_delimiter = ',', help = help_with_note(
        "Comma-separated list of DNS server IP address. This value is used for containers DNS server in case of Pods with \"dnsPolicy=ClusterFirst\". Note: all DNS servers appearing in the list MUST serve the same set of records otherwise name resolution within the cluster may not work correctly. There is no guarantee as to which DNS server may be contacted for name resolution."))]
    pub cluster_dns: Option<Vec<String>>,

    #[arg(long = "cluster-domain", value_name = "string", help = help_with_note(
        "Domain for this cluster. If set, kubelet will configure all containers to search this domain in addition to the host's search domains."))]
    pub cluster_domain: Option<String>,

    #[arg(long = "resolv-conf", value_name = "string", help = help_with_note(
        "Resolver configuration file used as the basis for the container DNS resolution configuration. (default \"/etc/resolv.conf\")"))]
    pub resolv_conf: Option<String>,

    #[arg(long = "max-pods", value_name = "int32", help = help_with_note(
        "Number of Pods that can run on this Kubelet. (default 110)"))]
    pub max_pods: Option<u32>,

    #[arg(long = "container-log-max-size", value_name = "string", help = help_with_note(
        "Set the maximum size (e.g. 10Mi) of container log file before it is rotated. (default \"10Mi\")"))]
    pub container_log_max_size: Option<String>,

    #[arg(long = "container-log-max-files", value_name = "int32", allow_negative_numbers = true, help = help_with_note(
        "Set the maximum number of container log files that can be present for a container. The number must be >= 2. (default 5)"))]
    pub container_log_max_files: Option<i32>,

    #[arg(long = "image-gc-high-threshold", value_name = "int32", allow_negative_numbers = true, help = help_with_note(
        "The percent of disk usage after which image garbage collection is always run. Values must be within the range [0, 100], To disable image garbage collection, set to 100.  (default 85)"))]
    pub image_gc_high_threshold: Option<i32>,

    #[arg(long = "image-gc-low-threshold", value_name = "int32", allow_negative_numbers = true, help = help_with_note(
        "The percent of disk usage before which image garbage collection is never run. Lowest disk usage to garbage collect to. Values must be within the range [0, 100] and should not be larger than that of --image-gc-high-threshold. (default 80)"))]
    pub image_gc_low_threshold: Option<i32>,

    #[arg(long = "minimum-image-ttl-duration", value_name = "duration", value_parser = parse_duration, help = help_with_note(
        "Minimum age for an unused image before it is garbage collected.  Examples: '300ms', '10s' or '2h45m'. (default 2m0s)"))]
    pub minimum_image_ttl_duration: Option<Duration>,

    #[arg(long = "register-node", value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool, help = help_with_note(
        "Register the node with the apiserver. If --kubeconfig is not provided, this flag is irrelevant, as the Kubelet won't have an apiserver to register with. (default true)"))]
    pub register_node: Option<bool>,

    #[arg(long = "register-with-taints", value_name = "[]v1.Taint", value_parser = parse_taint_list, help = help_with_note(
        "Register the node with the given list of taints (comma separated \"<key>=<value>:<effect>\"). No-op if register-node is false."))]
    pub register_with_taints: Option<TaintList>,

    #[arg(long = "provider-id", value_name = "string", help = help_with_note(
        "Unique identifier for identifying the node in a machine database, i.e cloudprovider"))]
    pub provider_id: Option<String>,

    #[arg(long = "node-status-update-frequency", value_name = "duration", value_parser = parse_duration, help = help_with_note(
        "Specifies how often kubelet posts node status to master. Note: be cautious when changing the constant, it must work with nodeMonitorGracePeriod in nodecontroller. (default 10s)"))]
    pub node_status_update_frequency: Option<Duration>,

    #[arg(long = "node-status-max-images", value_name = "int32", allow_negative_numbers = true, help = help_with_note(
        "The maximum number of images to report in Node.Status.Images. If -1 is specified, no cap will be applied. (default 50)"))]
    pub node_status_max_images: Option<i32>,

    #[arg(long = "kube-api-qps", value_name = "int32", allow_negative_numbers = true, help = help_with_note(
        "QPS to use while talking with kubernetes apiserver. The number must be >= 0. If 0 will use DefaultQPS: 50. Doesn't cover events and node heartbeat apis which rate limiting is controlled by a different set of flags (default 50)"))]
    pub kube_api_qps: Option<i32>,

    #[arg(long = "kube-api-burst", value_name = "int32", allow_negative_numbers = true, help = help_with_note(
        "Burst to use while talking with kubernetes apiserver. The number must be >= 0. If 0 will use DefaultBurst: 100. Doesn't cover events and node heartbeat apis which rate limiting is controlled by a different set of flags (default 100)"))]
    pub kube_api_burst: Option<i32>,

    #[arg(long = "event-qps", value_name = "int32", allow_negative_numbers = true, help = help_with_note(
        "QPS to limit event creations. The number must be >= 0. If 0 will use DefaultQPS: 5. (default 50)"))]
    pub event_qps: Option<i32>,

    #[arg(long = "event-burst", value_name = "int32", allow_negative_numbers = true, help = help_with_note(
        "Maximum size of a bursty event records, temporarily allows event records to burst to this number, while still not exceeding event-qps. The number must be >= 0. If 0 will use DefaultBurst: 10. (default 100)"))]
    pub event_burst: Option<i32>,

    #[arg(long = "rotate-certificates", value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool, help = help_with_note(
        "Auto rotate the kubelet client certificates by requesting new certificates from the kube-apiserver when the certificate expiration approaches."))]
    pub rotate_certificates: Option<bool>,

    #[arg(long = "rotate-server-certificates", value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool, help = help_with_note(
        "Auto-request and rotate the kubelet serving certificates by requesting new certificates from the kube-apiserver when the certificate expiration approaches. Requires the RotateKubeletServerCertificate feature gate to be enabled, and approval of the submitted CertificateSigningRequest objects."))]
    pub rotate_server_certificates: Option<bool>,

    #[arg(long = "tls-cert-file", value_name = "string", help = help_with_note(
        "File containing x509 Certificate used for serving HTTPS (with intermediate certs, if any, concatenated after server cert). If --tls-cert-file and --tls-private-key-file are not provided, a self-signed certificate and key are generated for the public address and saved to the directory passed to --cert-dir."))]
    pub tls_cert_file: Option<String>,

    #[arg(long = "tls-private-key-file", value_name = "string", help = help_with_note(
        "File containing x509 private key matching --tls-cert-file."))]
    pub tls_private_key_file: Option<String>,

    #[arg(long = "tls-cipher-suites", value_name = "strings", value_delimiter = ',', help = help_with_note(
        "Comma-separated list of cipher suites for the server. If omitted, the default Go cipher suites will be used."))]
    pub tls_cipher_suites: Option<Vec<String>>,

    #[arg(long = "tls-min-version", value_name = "string", help = help_with_note(
        "Minimum TLS version supported. Possible values: VersionTLS10, VersionTLS11, VersionTLS12, VersionTLS13"))]
    pub tls_min_version: Option<String>,

    #[arg(long = "enable-controller-attach-detach", value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool, help = help_with_note(
        "Enables the Attach/Detach controller to manage attachment/detachment of volumes scheduled to this node, and disables kubelet from executing any attach/detach operations (default true)"))]
    pub enable_controller_attach_detach: Option<bool>,

    #[arg(long = "enable-server", value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool, help = help_with_note(
        "Enable the Kubelet's server (default true)"))]
    pub enable_server: Option<bool>,

    #[arg(long = "enable-debugging-handlers", value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool, help = help_with_note(
        "Enables server endpoints for log collection and local running of containers and commands (default true)"))]
    pub enable_debugging_handlers: Option<bool>,

    #[arg(long = "address", value_name = "ip", help = help_with_note(
        "The IP address for the Kubelet to serve on (set to '0.0.0.0' or '::' for listening on all interfaces and IP address families) (default 0.0.0.0)"))]
    pub address: Option<String>,

    #[arg(long = "port", value_name = "int32", help = help_with_note(
        "The port for the Kubelet to serve on. (default 10250)"))]
    pub port: Option<u16>,

    #[arg(long = "read-only-port", value_name = "int32", help = help_with_note(
        "The read-only port for the Kubelet to serve on with no authentication/authorization (set to 0 to disable) (default 0 with --config's defaults)"))]
    pub read_only_port: Option<u16>,

    #[arg(long = "anonymous-auth", value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool, help = help_with_note(
        "Enables anonymous requests to the Kubelet server. Requests that are not rejected by another authentication method are treated as anonymous requests. Anonymous requests have a username of system:anonymous, and a group name of system:unauthenticated."))]
    pub anonymous_auth: Option<bool>,

    #[arg(long = "authentication-token-webhook", value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool, help = help_with_note(
        "Use the TokenReview API to determine authentication for bearer tokens."))]
    pub authentication_token_webhook: Option<bool>,

    #[arg(long = "authentication-token-webhook-cache-ttl", value_name = "duration", value_parser = parse_duration, help = help_with_note(
        "The duration to cache responses from the webhook token authenticator. (default 2m0s)"))]
    pub authentication_token_webhook_cache_ttl: Option<Duration>,

    #[arg(long = "client-ca-file", value_name = "string", help = help_with_note(
        "If set, any request presenting a client certificate signed by one of the authorities in the client-ca-file is authenticated with an identity corresponding to the CommonName of the client certificate."))]
    pub client_ca_file: Option<String>,

    #[arg(long = "authorization-mode", value_name = "string", help = help_with_note(
        "Authorization mode for Kubelet server. Valid options are AlwaysAllow or Webhook. Webhook mode uses the SubjectAccessReview API to determine authorization."))]
    pub authorization_mode: Option<String>,

    #[arg(long = "authorization-webhook-cache-authorized-ttl", value_name = "duration", value_parser = parse_duration, help = help_with_note(
        "The duration to cache 'authorized' responses from the webhook authorizer. (default 5m0s)"))]
    pub authorization_webhook_cache_authorized_ttl: Option<Duration>,

    #[arg(long = "authorization-webhook-cache-unauthorized-ttl", value_name = "duration", value_parser = parse_duration, help = help_with_note(
        "The duration to cache 'unauthorized' responses from the webhook authorizer. (default 30s)"))]
    pub authorization_webhook_cache_unauthorized_ttl: Option<Duration>,

    #[arg(long = "registry-qps", value_name = "int32", help = help_with_note(
        "If > 0, limit registry pull QPS to this value.  If 0, unlimited. (default 5)"))]
    pub registry_qps: Option<u32>,

    #[arg(long = "registry-burst", value_name = "int32", help = help_with_note(
        "Maximum size of a bursty pulls, temporarily allows pulls to burst to this number, while still not exceeding registry-qps. Only used if --registry-qps > 0 (default 10)"))]
    pub registry_burst: Option<u32>,

    #[arg(long = "serialize-image-pulls", value_name = "bool", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_bool, help = help_with_note(
        "Pull images one at a time. (default true)"))]
    pub serialize_image_pulls: Option<bool>,

    #[arg(long = "pod-max-pids", value_name = "int", allow_negative_numbers = true, help = help_with_note(
        "Set the maximum number of processes per pod.  If -1, the kubelet defaults to the node allocatable pid capacity. (default -1)"))]
    pub pod_max_pids: Option<i64>,

    #[arg(long = "hairpin-mode", value_name = "string", help = help_with_note(
        "How should the kubelet setup hairpin NAT. This allows endpoints of a Service to loadbalance back to themselves if they should try to access their own Service. Valid values are \"promiscuous-bridge\", \"hairpin-veth\" and \"none\". (default \"promiscuous-bridge\")"))]
    pub hairpin_mode: Option<String>,

    #[arg(long = "minimum-container-ttl-duration", value_name = "duration", value_parser = parse_duration, help =
        "Minimum age for a finished container before it is garbage collected.  Examples: '300ms', '10s' or '2h45m' (DEPRECATED: Use --eviction-hard or --eviction-soft instead. Will be removed in a future version.)")]
    pub minimum_container_ttl_duration: Option<Duration>,

    #[arg(
        long = "maximum-dead-containers-per-container",
        value_name = "int32",
        allow_negative_numbers = true,
        help = "Maximum number of old instances to retain per container.  Each container takes up some disk space. (default 1) (DEPRECATED: Use --eviction-hard or --eviction-soft instead. Will be removed in a future version.)"
    )]
    pub maximum_dead_containers_per_container: Option<i32>,

    #[arg(
        long = "maximum-dead-containers",
        value_name = "int32",
        allow_negative_numbers = true,
        help = "Maximum number of old instances of containers to retain globally.  Each container takes up some disk space. To disable, set to a negative number. (default -1) (DEPRECATED: Use --eviction-hard or --eviction-soft instead. Will be removed in a future version.)"
    )]
    pub maximum_dead_containers: Option<i32>,

    #[arg(short = 'v', long = "v", value_name = "Level", help = "number for the log level verbosity")]
    pub verbosity: Option<u8>,
}

/// Help text of a flag that also exists in the config file.
fn help_with_note(text: &str) -> String {
    format!("{text} {CONFIG_FLAG_NOTE}")
}

fn parse_duration(s: &str) -> Result<Duration, config::DurationError> {
    config::parse_duration(s)
}

/// A duration where a negative one means "off" (zero), as `--volume-stats-agg-period` reads.
fn parse_duration_or_off(s: &str) -> Result<Duration, config::DurationError> {
    match s.strip_prefix('-') {
        Some(rest) => config::parse_duration(rest).map(|_| Duration::ZERO),
        None => config::parse_duration(s),
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    upstream::parse_go_bool(s)
}

/// A `key=value,…` (or `key<value,…`) flag value.
#[derive(Debug, Clone, PartialEq)]
pub struct StringMap(pub BTreeMap<String, String>);

/// component-base's `MapStringString` / `LangleSeparatedMapStringString`: comma-separated
/// pairs (empty items skipped), split at the first `sep`, trimmed.
fn parse_map(s: &str, sep: char) -> Result<StringMap, String> {
    let mut out = BTreeMap::new();
    for item in s.split(',').filter(|i| !i.is_empty()) {
        let Some((k, v)) = item.split_once(sep) else {
            return Err(format!("malformed pair, expect string{sep}string"));
        };
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(StringMap(out))
}

fn parse_eq_map(s: &str) -> Result<StringMap, String> {
    parse_map(s, '=')
}

fn parse_lt_map(s: &str) -> Result<StringMap, String> {
    parse_map(s, '<')
}

/// A comma-separated list where "" is the empty list (pflag's `StringSlice`).
#[derive(Debug, Clone, PartialEq)]
pub struct Levels(pub Vec<String>);

fn parse_levels(s: &str) -> Result<Levels, String> {
    Ok(Levels(if s.is_empty() { Vec::new() } else { s.split(',').map(|l| l.trim().to_string()).collect() }))
}

fn parse_taint_list(s: &str) -> Result<TaintList, String> {
    config::parse_taints(s).map(TaintList)
}

/// Sets `path` (object keys) inside `root` to `value`, creating objects on the way.
fn set_path(root: &mut Value, path: &[&str], value: Value) {
    let mut node = root;
    for key in path {
        if !node.is_object() {
            *node = json!({});
        }
        node = &mut node[*key];
    }
    *node = value;
}

impl Flags {
    /// The config-file-backed settings given on the command line.
    fn overrides(&self) -> KubeletConfigFile {
        let duration = |d: Option<Duration>| d.map(|d| Value::String(config::format_duration(d)));
        let mut authn = Value::Null;
        for (path, value) in [
            (&["anonymous", "enabled"][..], self.anonymous_auth.map(Value::Bool)),
            (&["webhook", "enabled"][..], self.authentication_token_webhook.map(Value::Bool)),
            (&["webhook", "cacheTTL"][..], duration(self.authentication_token_webhook_cache_ttl)),
            (&["x509", "clientCAFile"][..], self.client_ca_file.clone().map(Value::String)),
        ] {
            if let Some(v) = value {
                set_path(&mut authn, path, v);
            }
        }
        let mut authz = Value::Null;
        for (path, value) in [
            (&["mode"][..], self.authorization_mode.clone().map(Value::String)),
            (&["webhook", "cacheAuthorizedTTL"][..], duration(self.authorization_webhook_cache_authorized_ttl)),
            (&["webhook", "cacheUnauthorizedTTL"][..], duration(self.authorization_webhook_cache_unauthorized_ttl)),
        ] {
            if let Some(v) = value {
                set_path(&mut authz, path, v);
            }
        }
        KubeletConfigFile {
            static_pod_path: self.pod_manifest_path.clone(),
            container_runtime_endpoint: self.container_runtime_endpoint.clone(),
            healthz_port: self.healthz_port,
            healthz_bind_address: self.healthz_bind_address.clone(),
            file_check_frequency: self.file_check_frequency,
            runtime_request_timeout: self.runtime_request_timeout,
            sync_frequency: self.sync_frequency,
            volume_stats_agg_period: self.volume_stats_agg_period,
            cgroups_per_qos: self.cgroups_per_qos,
            cgroup_driver: self.cgroup_driver.clone(),
            cgroup_root: self.cgroup_root.clone(),
            cpu_cfs_quota: self.cpu_cfs_quota,
            cpu_cfs_quota_period: self.cpu_cfs_quota_period,
            kube_reserved: self.kube_reserved.clone().map(|m| m.0),
            system_reserved: self.system_reserved.clone().map(|m| m.0),
            kube_reserved_cgroup: self.kube_reserved_cgroup.clone(),
            system_reserved_cgroup: self.system_reserved_cgroup.clone(),
            enforce_node_allocatable: self.enforce_node_allocatable.clone().map(|l| l.0),
            eviction_hard: self.eviction_hard.clone().map(|m| m.0),
            eviction_soft: self.eviction_soft.clone().map(|m| m.0),
            eviction_soft_grace_period: self.eviction_soft_grace_period.clone().map(|m| m.0),
            eviction_minimum_reclaim: self.eviction_minimum_reclaim.clone().map(|m| m.0),
            eviction_pressure_transition_period: self.eviction_pressure_transition_period,
            eviction_max_pod_grace_period: self.eviction_max_pod_grace_period,
            cluster_dns: self.cluster_dns.clone(),
            cluster_domain: self.cluster_domain.clone(),
            resolv_conf: self.resolv_conf.clone(),
            max_pods: self.max_pods,
            container_log_max_size: self.container_log_max_size.clone(),
            container_log_max_files: self.container_log_max_files,
            image_gc_high_threshold_percent: self.image_gc_high_threshold,
            image_gc_low_threshold_percent: self.image_gc_low_threshold,
            image_minimum_gc_age: self.minimum_image_ttl_duration,
            register_node: self.register_node,
            register_with_taints: self.register_with_taints.clone().map(|t| t.0),
            provider_id: self.provider_id.clone(),
            node_status_update_frequency: self.node_status_update_frequency,
            node_status_max_images: self.node_status_max_images,
            kube_api_qps: self.kube_api_qps,
            kube_api_burst: self.kube_api_burst,
            event_record_qps: self.event_qps,
            event_burst: self.event_burst,
            rotate_certificates: self.rotate_certificates,
            server_tls_bootstrap: self.rotate_server_certificates,
            tls_cert_file: self.tls_cert_file.clone(),
            tls_private_key_file: self.tls_private_key_file.clone(),
            tls_cipher_suites: self.tls_cipher_suites.clone(),
            tls_min_version: self.tls_min_version.clone(),
            enable_controller_attach_detach: self.enable_controller_attach_detach,
            enable_server: self.enable_server,
            enable_debugging_handlers: self.enable_debugging_handlers,
            address: self.address.clone(),
            port: self.port,
            read_only_port: self.read_only_port,
            registry_pull_qps: self.registry_qps,
            registry_burst: self.registry_burst,
            serialize_image_pulls: self.serialize_image_pulls,
            pod_pids_limit: self.pod_max_pids,
            hairpin_mode: self.hairpin_mode.clone(),
            authentication: Some(authn).filter(|v| !v.is_null()),
            authorization: Some(authz).filter(|v| !v.is_null()),
            ..KubeletConfigFile::default()
        }
    }

    /// `--node-labels`, all occurrences merged.
    fn node_labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        for s in &self.node_labels {
            config::parse_node_labels_into(&mut labels, s);
        }
        labels
    }
}

/// The configuration the kubelet runs with, and the warnings to log once logging is set up.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: KubeletConfiguration,
    pub warnings: Vec<String>,
}

/// Parses the command line (`args` includes the program name), loads the `--config` file and
/// the `--config-dir` drop-ins if given, and resolves flag > file > default. The result is
/// validated.
///
/// Command-line errors, `--help` and `--version` come back as a [`clap::Error`] inside the
/// `anyhow::Error`: `if let Some(e) = err.downcast_ref::<clap::Error>() { e.exit() }` prints
/// them the way clap does (help on stdout with status 0, usage errors on stderr with status 2).
pub fn load(args: impl IntoIterator<Item = OsString>) -> anyhow::Result<Loaded> {
    let (args, flag_warnings) = upstream::strip_unimplemented(args)?;
    let flags = Flags::try_parse_from(args)?;
    let mut loaded = load_from(&flags)?;
    loaded.warnings.splice(0..0, flag_warnings);
    Ok(loaded)
}

fn load_from(flags: &Flags) -> anyhow::Result<Loaded> {
    let (mut file, mut warnings) = match &flags.config {
        Some(path) => config::load_file(path).context("failed to load the kubelet config file")?,
        None => (KubeletConfigFile::default(), Vec::new()),
    };
    if let Some(dir) = flags.config_dir.as_ref().filter(|d| !d.as_os_str().is_empty()) {
        let (merged, dropin_warnings) =
            config::load_dropin_dir(dir, file).context("failed to load the kubelet config drop-ins")?;
        file = merged;
        warnings.extend(dropin_warnings);
    }
    let mut config = KubeletConfiguration::resolve(file, flags.overrides());
    // Runtime-only settings: flag > default.
    if let Some(root_dir) = &flags.root_dir {
        config.root_dir = root_dir.clone();
    }
    config.hostname_override = flags.hostname_override.clone().filter(|h| !h.trim().is_empty());
    config.node_ip = flags.node_ip.clone().filter(|ip| !ip.trim().is_empty());
    if let Some(v) = flags.verbosity {
        config.verbosity = v;
    }
    config.kubeconfig = flags.kubeconfig.clone().filter(|p| !p.as_os_str().is_empty());
    config.bootstrap_kubeconfig = flags.bootstrap_kubeconfig.clone().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = &flags.cert_dir {
        config.cert_dir = dir.clone();
    }
    config.node_labels = flags.node_labels();
    for (flag, set) in [
        ("minimum-container-ttl-duration", flags.minimum_container_ttl_duration.is_some()),
        ("maximum-dead-containers-per-container", flags.maximum_dead_containers_per_container.is_some()),
        ("maximum-dead-containers", flags.maximum_dead_containers.is_some()),
    ] {
        if set {
            warnings.push(format!(
                "Flag --{flag} has been deprecated, Use --eviction-hard or --eviction-soft instead. Will be removed in a future version."
            ));
        }
    }
    if let Some(d) = flags.minimum_container_ttl_duration {
        config.minimum_container_ttl_duration = d;
    }
    if let Some(n) = flags.maximum_dead_containers_per_container {
        config.maximum_dead_containers_per_container = n;
    }
    if let Some(n) = flags.maximum_dead_containers {
        config.maximum_dead_containers = n;
    }
    if let Some(provider) = &flags.cloud_provider {
        config.cloud_provider = provider.clone();
    }
    config.validate()?;
    Ok(Loaded { config, warnings })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use clap::CommandFactory;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("rkubelet").chain(list.iter().copied()).map(OsString::from).collect()
    }

    fn write_config(dir: &std::path::Path, body: &str) -> PathBuf {
        let path = dir.join("kubelet.yaml");
        let text = format!("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n{body}");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn clap_definition_is_consistent() {
        Flags::command().debug_assert();
    }

    #[test]
    fn no_flags_gives_upstream_defaults() {
        let loaded = load(args(&[])).unwrap();
        assert_eq!(loaded.config, KubeletConfiguration::default());
        assert!(loaded.warnings.is_empty());
    }

    #[test]
    fn garbage_collection_flags() {
        let loaded = load(args(&[
            "--image-gc-high-threshold=90",
            "--image-gc-low-threshold=70",
            "--minimum-image-ttl-duration=5m",
            "--minimum-container-ttl-duration=30s",
            "--maximum-dead-containers-per-container=2",
            "--maximum-dead-containers=-1",
        ]))
        .unwrap();
        let c = &loaded.config;
        assert_eq!((c.image_gc_high_threshold_percent, c.image_gc_low_threshold_percent), (90, 70));
        assert_eq!(c.image_minimum_gc_age, Duration::from_secs(300));
        assert_eq!(c.minimum_container_ttl_duration, Duration::from_secs(30));
        assert_eq!((c.maximum_dead_containers_per_container, c.maximum_dead_containers), (2, -1));
        assert_eq!(
            loaded.warnings,
            [
                "Flag --minimum-container-ttl-duration has been deprecated, Use --eviction-hard or --eviction-soft instead. Will be removed in a future version.",
                "Flag --maximum-dead-containers-per-container has been deprecated, Use --eviction-hard or --eviction-soft instead. Will be removed in a future version.",
                "Flag --maximum-dead-containers has been deprecated, Use --eviction-hard or --eviction-soft instead. Will be removed in a future version.",
            ]
        );
        let err = load(args(&["--image-gc-low-threshold=90"])).unwrap_err();
        assert!(format!("{err:#}").contains("must be less than imageGCHighThresholdPercent"), "{err:#}");
    }

    #[test]
    fn both_flag_syntaxes_and_short_v() {
        let loaded = load(args(&[
            "--pod-manifest-path=/etc/kubernetes/manifests",
            "--max-pods",
            "20",
            "--file-check-frequency=5s",
            "--sync-frequency",
            "1m30s",
            "--runtime-request-timeout=100ms",
            "--cluster-dns=10.96.0.10,fd00::10",
            "--cluster-dns",
            "10.96.0.11",
            "--cluster-domain=cluster.local",
            "--resolv-conf=",
            "--healthz-port=0",
            "--healthz-bind-address=0.0.0.0",
            "--container-runtime-endpoint=unix:///run/crio/crio.sock",
            "--root-dir=/tmp/kubelet",
            "--hostname-override=node-a",
            "--node-ip=10.0.0.5",
            "-v",
            "4",
        ]))
        .unwrap();
        let c = loaded.config;
        assert_eq!(c.static_pod_path, "/etc/kubernetes/manifests");
        assert_eq!(c.max_pods, 20);
        assert_eq!(c.file_check_frequency, Duration::from_secs(5));
        assert_eq!(c.sync_frequency, Duration::from_secs(90));
        assert_eq!(c.runtime_request_timeout, Duration::from_millis(100));
        assert_eq!(c.cluster_dns, vec!["10.96.0.10", "fd00::10", "10.96.0.11"]);
        assert_eq!(c.cluster_domain, "cluster.local");
        assert_eq!(c.resolv_conf, "");
        assert_eq!(c.healthz_port, 0);
        assert_eq!(c.healthz_bind_address, "0.0.0.0");
        assert_eq!(c.container_runtime_endpoint, "unix:///run/crio/crio.sock");
        assert_eq!(c.root_dir, PathBuf::from("/tmp/kubelet"));
        assert_eq!(c.hostname_override.as_deref(), Some("node-a"));
        assert_eq!(c.node_ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(c.verbosity, 4);
        assert_eq!(load(args(&["--v=2"])).unwrap().config.verbosity, 2);
        assert_eq!(load(args(&["-v=3"])).unwrap().config.verbosity, 3);
        assert_eq!(load(args(&["-v4"])).unwrap().config.verbosity, 4);
    }

    #[test]
    fn precedence_flag_over_file_over_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(
            dir.path(),
            "maxPods: 50\nclusterDomain: cluster.local\nstaticPodPath: manifests\nqosReserved:\n  memory: 50%\n",
        );
        let config_arg = format!("--config={}", path.display());

        let file_only = load(args(&[&config_arg])).unwrap();
        assert_eq!(file_only.config.max_pods, 50, "file beats default");
        assert_eq!(file_only.config.cluster_domain, "cluster.local");
        assert_eq!(file_only.config.static_pod_path, dir.path().join("manifests").to_string_lossy());
        assert_eq!(file_only.config.sync_frequency, Duration::from_secs(60), "default when unset");
        assert_eq!(file_only.warnings.len(), 1);
        assert!(file_only.warnings[0].contains("\"qosReserved\""), "{:?}", file_only.warnings);

        let both = load(args(&[&config_arg, "--max-pods=20", "--pod-manifest-path", "/srv/pods"])).unwrap();
        assert_eq!(both.config.max_pods, 20, "flag beats file");
        assert_eq!(both.config.static_pod_path, "/srv/pods");
        assert_eq!(both.config.cluster_domain, "cluster.local");
    }

    #[test]
    fn upstream_table_matches_clap() {
        let mut cmd = Flags::command();
        cmd.build();
        let mut clap_longs = Vec::new();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            clap_longs.push(long.to_owned());
            let entry = upstream::lookup(long).unwrap_or_else(|| panic!("--{long} is not an upstream flag"));
            assert!(matches!(entry.handling, upstream::Handling::Implemented), "--{long} is implemented");
            let takes_separate_value =
                arg.get_action().takes_values() && arg.get_num_args().is_some_and(|n| n.min_values() > 0);
            assert_eq!(entry.takes_value, takes_separate_value, "--{long}: value arity differs");
        }
        for f in upstream::UPSTREAM_FLAGS {
            if matches!(f.handling, upstream::Handling::Implemented) {
                assert!(clap_longs.iter().any(|l| l == f.name), "--{} is marked implemented but clap lacks it", f.name);
            }
        }
    }

    /// What the kubeadm systemd drop-in passes: KUBELET_KUBECONFIG_ARGS, KUBELET_CONFIG_ARGS, the
    /// kubeadm-flags.env line and a KUBELET_EXTRA_ARGS override.
    #[test]
    fn kubeadm_node_command_line_starts() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), "rotateCertificates: true\nstaticPodPath: /etc/kubernetes/manifests\n");
        let loaded = load(args(&[
            "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
            "--kubeconfig=/etc/kubernetes/kubelet.conf",
            &format!("--config={}", path.display()),
            "--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock",
            "--pod-infra-container-image=pause:3.10",
            "--node-ip=10.0.0.7",
            "--node-labels=topology.kubernetes.io/zone=a",
            "--register-with-taints=node-role.kubernetes.io/control-plane:NoSchedule",
            "--cloud-provider=external",
            "--node-ip=10.0.0.8",
            "--cgroup-driver=systemd",
        ]))
        .unwrap();
        let c = &loaded.config;
        assert_eq!(c.kubeconfig.as_deref(), Some(std::path::Path::new("/etc/kubernetes/kubelet.conf")));
        assert_eq!(
            c.bootstrap_kubeconfig.as_deref(),
            Some(std::path::Path::new("/etc/kubernetes/bootstrap-kubelet.conf"))
        );
        assert_eq!(c.cert_dir, PathBuf::from("/var/lib/kubelet/pki"));
        assert_eq!(c.container_runtime_endpoint, "unix:///var/run/containerd/containerd.sock");
        assert_eq!(c.node_ip.as_deref(), Some("10.0.0.8"), "a repeated flag overrides, as with pflag");
        assert_eq!(c.node_labels.get("topology.kubernetes.io/zone").map(String::as_str), Some("a"));
        assert_eq!(
            config::describe_taint(&c.register_with_taints[0]),
            "node-role.kubernetes.io/control-plane:NoSchedule"
        );
        assert_eq!(c.cloud_provider, "external");
        assert_eq!(c.cgroup_driver, "systemd");
        assert!(c.rotate_certificates);
        assert_eq!(loaded.warnings, ["flag --pod-infra-container-image is not supported by rkubelet and is ignored"]);
    }

    #[test]
    fn cluster_flags_parse_and_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(
            dir.path(),
            "registerNode: false\nkubeAPIQPS: 10\neventBurst: 7\nrotateCertificates: true\nproviderID: file\n\
             registerWithTaints:\n- key: from-file\n  effect: NoSchedule\nauthentication:\n  x509:\n    clientCAFile: /file-ca.crt\n",
        );
        let config_arg = format!("--config={}", path.display());
        let file_only = load(args(&[&config_arg])).unwrap().config;
        assert!(!file_only.register_node && file_only.rotate_certificates);
        assert_eq!((file_only.kube_api_qps, file_only.kube_api_burst, file_only.event_burst), (10, 100, 7));
        assert_eq!(file_only.register_with_taints[0].key, "from-file");

        let c = load(args(&[
            &config_arg,
            "--register-node",
            "--kube-api-qps=0",
            "--kube-api-burst",
            "30",
            "--event-qps=3",
            "--rotate-certificates=false",
            "--rotate-server-certificates",
            "--provider-id=flag",
            "--register-with-taints=a=b:NoExecute,c:PreferNoSchedule",
            "--node-status-update-frequency=4s",
            "--node-status-max-images=-1",
            "--tls-cert-file=/pki/s.crt",
            "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_AES_128_GCM_SHA256",
            "--tls-min-version=VersionTLS13",
            "--tls-private-key-file=/pki/s.key",
            "--enable-controller-attach-detach=false",
            "--cert-dir=/srv/pki",
            "--anonymous-auth=false",
            "--authorization-mode=AlwaysAllow",
            "--authentication-token-webhook-cache-ttl=1m",
            "--node-labels=a=1,b=2",
            "--node-labels=c=3",
        ]))
        .unwrap()
        .config;
        assert!(c.register_node, "a bare bool flag is true and beats the file");
        assert_eq!((c.kube_api_qps, c.kube_api_burst, c.event_record_qps, c.event_burst), (0, 30, 3, 7));
        assert!(!c.rotate_certificates && c.server_tls_bootstrap);
        assert_eq!(c.provider_id, "flag");
        let taints: Vec<String> = c.register_with_taints.iter().map(config::describe_taint).collect();
        assert_eq!(taints, ["a=b:NoExecute", "c:PreferNoSchedule"]);
        assert_eq!(c.node_status_update_frequency, Duration::from_secs(4));
        assert_eq!(c.node_status_max_images, -1);
        assert_eq!((c.tls_cert_file.as_str(), c.tls_private_key_file.as_str()), ("/pki/s.crt", "/pki/s.key"));
        assert_eq!(c.tls_cipher_suites, ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"]);
        assert_eq!(c.tls_min_version, "VersionTLS13");
        assert!(!c.enable_controller_attach_detach);
        assert_eq!(c.cert_dir, PathBuf::from("/srv/pki"));
        assert_eq!(c.authentication["anonymous"]["enabled"], false);
        assert_eq!(c.authentication["webhook"]["cacheTTL"], "1m0s");
        assert_eq!(c.authentication["webhook"]["enabled"], true, "untouched nested defaults stay");
        assert_eq!(c.authentication["x509"]["clientCAFile"], "/file-ca.crt", "the file's nested value stays");
        assert_eq!(c.authorization["mode"], "AlwaysAllow");
        assert_eq!(c.node_labels.len(), 3);
    }

    #[test]
    fn config_dir_dropins_sit_between_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), "maxPods: 50\nclusterDomain: file.local\n");
        let dropins = dir.path().join("kubelet.conf.d");
        std::fs::create_dir(&dropins).unwrap();
        std::fs::write(
            dropins.join("10-max-pods.conf"),
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nmaxPods: 60\nsyncFrequency: 30s\n",
        )
        .unwrap();
        let c = load(args(&[
            &format!("--config={}", path.display()),
            &format!("--config-dir={}", dropins.display()),
            "--sync-frequency=45s",
        ]))
        .unwrap()
        .config;
        assert_eq!(c.max_pods, 60, "drop-in beats file");
        assert_eq!(c.cluster_domain, "file.local");
        assert_eq!(c.sync_frequency, Duration::from_secs(45), "flag beats drop-in");
    }

    #[test]
    fn cgroup_flags_reach_the_configuration() {
        let c = load(args(&[
            "--cgroups-per-qos=false",
            "--enforce-node-allocatable=",
            "--cgroup-driver=systemd",
            "--cgroup-root=/edge",
            "--cpu-cfs-quota=false",
            "--cpu-cfs-quota-period=50ms",
        ]))
        .unwrap()
        .config;
        assert!(!c.cgroups_per_qos && !c.cpu_cfs_quota);
        assert_eq!((c.cgroup_driver.as_str(), c.cgroup_root.as_str()), ("systemd", "/edge"));
        assert_eq!(c.cpu_cfs_quota_period, Duration::from_millis(50));
        assert!(c.enforce_node_allocatable.is_empty(), "an empty flag enforces nothing");
        let err = load(args(&["--cgroup-driver=openrc"])).unwrap_err().to_string();
        assert!(err.contains("cgroupDriver (--cgroup-driver) \"openrc\""), "{err}");
        let err = load(args(&["--cgroups-per-qos=false"])).unwrap_err().to_string();
        assert!(err.contains("cgroupsPerQOS (--cgroups-per-qos) must be set to true when \"pods\""), "{err}");
    }

    #[test]
    fn reservation_flags_reach_the_configuration() {
        let c = load(args(&[
            "--kube-reserved=cpu=100m, memory=1Gi",
            "--system-reserved=memory=512Mi,pid=100",
            "--kube-reserved-cgroup=/kube.slice",
            "--enforce-node-allocatable=pods,kube-reserved",
            "--eviction-hard=memory.available<200Mi,nodefs.available<5%",
        ]))
        .unwrap()
        .config;
        assert_eq!(c.kube_reserved.get("memory").map(String::as_str), Some("1Gi"), "pairs are trimmed");
        assert_eq!(c.system_reserved.get("pid").map(String::as_str), Some("100"));
        assert_eq!(c.kube_reserved_cgroup, "/kube.slice");
        assert_eq!(c.enforce_node_allocatable, ["pods", "kube-reserved"]);
        assert_eq!(c.eviction_hard.len(), 2, "the flag replaces the default set: {:?}", c.eviction_hard);
        let defaults = load(args(&[])).unwrap().config;
        assert_eq!(defaults.enforce_node_allocatable, ["pods"]);
        assert_eq!(defaults.eviction_hard.get("imagefs.available").map(String::as_str), Some("15%"));
        let err = load(args(&["--kube-reserved=nvidia.com/gpu=1"])).unwrap_err().to_string();
        assert!(
            err.contains("--kube-reserved value failed to parse: cannot reserve \"nvidia.com/gpu\" resource"),
            "{err}"
        );
        let err = load(args(&["--eviction-hard=memory.available=1Gi"])).unwrap_err().to_string();
        assert!(err.contains("malformed pair, expect string<string"), "{err}");
        let err = load(args(&["--enforce-node-allocatable=pods,system-reserved"])).unwrap_err().to_string();
        assert!(err.contains("systemReservedCgroup (--system-reserved-cgroup) must be specified"), "{err}");
    }

    #[test]
    fn a_negative_volume_stats_agg_period_turns_volume_stats_off() {
        let c = |a: &str| load(args(&[a])).unwrap().config.volume_stats_agg_period;
        assert_eq!(c("--volume-stats-agg-period=-1s"), Duration::ZERO);
        assert_eq!(c("--volume-stats-agg-period=0"), Duration::ZERO);
        assert_eq!(c("--volume-stats-agg-period=2m"), Duration::from_secs(120));
        assert!(load(args(&["--volume-stats-agg-period=-x"])).is_err());
    }

    #[test]
    fn bool_flags_follow_pflag() {
        assert!(!load(args(&["--register-node=false"])).unwrap().config.register_node);
        assert!(!load(args(&["--register-node=0"])).unwrap().config.register_node);
        assert!(load(args(&["--register-node=false", "--register-node"])).unwrap().config.register_node);
        // pflag does not take a separate value for a bool: `false` would be a positional argument.
        let err = load(args(&["--register-node", "false"])).unwrap_err();
        assert!(err.downcast_ref::<clap::Error>().is_some(), "{err:#}");
        let err = load(args(&["--rotate-certificates=maybe"])).unwrap_err();
        assert!(err.downcast_ref::<clap::Error>().unwrap().to_string().contains("invalid boolean value"), "{err:#}");
    }

    #[test]
    fn unimplemented_upstream_flags_warn_or_refuse() {
        let loaded = load(args(&[
            "--fail-swap-on=false",
            "--feature-gates",
            "KubeletInUserNamespace=true",
            "--container-runtime=remote",
            "--max-pods=30",
        ]))
        .unwrap();
        assert_eq!(loaded.config.max_pods, 30);
        assert_eq!(
            loaded.warnings,
            [
                "flag --fail-swap-on is not supported by rkubelet and is ignored",
                "flag --feature-gates is not supported by rkubelet and is ignored",
                "flag --container-runtime is not supported by rkubelet and is ignored",
            ]
        );
        let err = format!("{:#}", load(args(&["--lock-file=/var/run/kubelet.lock"])).unwrap_err());
        assert!(
            err.starts_with(
                "flag --lock-file=/var/run/kubelet.lock is not supported by rkubelet and cannot be ignored safely"
            ),
            "{err}"
        );
        let err = format!("{:#}", load(args(&["--container-runtime=docker"])).unwrap_err());
        assert!(err.contains("only talks to a CRI runtime"), "{err}");
    }

    #[test]
    fn node_flags_are_validated() {
        let err = load(args(&["--register-with-taints=a=b"])).unwrap_err();
        let clap_err = err.downcast_ref::<clap::Error>().expect("a clap error");
        assert!(clap_err.to_string().contains("invalid taint spec: a=b"), "{clap_err}");
        let err = format!("{:#}", load(args(&["--node-labels=kubernetes.io/role=master"])).unwrap_err());
        assert!(err.contains("unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels"), "{err}");
        let err = format!("{:#}", load(args(&["--cloud-provider=gce"])).unwrap_err());
        assert!(err.contains("cloud provider \"gce\" was specified"), "{err}");
        let err = format!("{:#}", load(args(&["--kube-api-burst=-1"])).unwrap_err());
        assert!(err.contains("kubeAPIBurst (--kube-api-burst) -1 must not be a negative number"), "{err}");
    }

    #[test]
    fn errors_name_the_problem() {
        let err = load(args(&["--file-check-frequency=soon"])).unwrap_err();
        let clap_err = err.downcast_ref::<clap::Error>().expect("a clap error");
        assert!(clap_err.to_string().contains("invalid duration \"soon\""), "{clap_err}");

        let err = load(args(&["--no-such-flag"])).unwrap_err();
        assert!(err.downcast_ref::<clap::Error>().is_some());

        let err = load(args(&["--help"])).unwrap_err();
        let help = err.downcast_ref::<clap::Error>().unwrap();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        let text = help.to_string();
        for flag in ["--config", "--pod-manifest-path", "--healthz-port", "--cluster-dns", "-v, --v"] {
            assert!(text.contains(flag), "help lacks {flag}:\n{text}");
        }

        let err = format!("{:#}", load(args(&["--config=/nonexistent/kubelet.yaml"])).unwrap_err());
        assert!(err.contains("/nonexistent/kubelet.yaml"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), "");
        std::fs::write(&path, "kind: KubeletConfiguration\napiVersion: v1\n").unwrap();
        let err = format!("{:#}", load(args(&[&format!("--config={}", path.display())])).unwrap_err());
        assert!(err.contains("apiVersion is \"v1\", expected \"kubelet.config.k8s.io/v1beta1\""), "{err}");

        let err = format!("{:#}", load(args(&["--cluster-dns=not-an-ip"])).unwrap_err());
        assert!(err.contains("clusterDNS[0] (--cluster-dns) \"not-an-ip\" is not a valid IP"), "{err}");
    }
}
