//! The command line, with upstream kubelet's flag names and meanings
//! (`cmd/kubelet/app/options/options.go`). Every flag is optional so that "not given" can be told
//! apart from "given with the default value": precedence is flag > `--config` file > default.
//! Both `--flag=value` and `--flag value` are accepted, as with upstream's pflag.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use core_kubelet::config::{self, KubeletConfigFile, KubeletConfiguration};

const ABOUT: &str = "rkubelet: the primary \"node agent\" that runs on each node.";

const LONG_ABOUT: &str = "\
rkubelet is the primary \"node agent\" that runs on each node.

The kubelet works in terms of a PodSpec. A PodSpec is a YAML or JSON object that describes a \
pod. The kubelet takes a set of PodSpecs that are provided through various mechanisms and \
ensures that the containers described in those PodSpecs are running and healthy. The kubelet \
doesn't manage containers which were not created by Kubernetes.

File: static pod manifests are read from the path given by --pod-manifest-path (or staticPodPath \
in the --config file). Files under this path are watched for changes and also re-read \
periodically; the period is 20s by default and is configurable via --file-check-frequency.";

const CONFIG_FLAG_NOTE: &str =
    "(This parameter can also be set via the config file specified by --config; the flag takes precedence.)";

/// Command-line flags. Names, meanings and defaults are upstream's (see each `help`).
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "rkubelet", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Flags {
    #[arg(
        long = "config",
        value_name = "string",
        help = "The Kubelet will load its initial configuration from this file. The path may be absolute or relative; relative paths start at the Kubelet's current working directory. Omit this flag to use the built-in default configuration values. Command-line flags override configuration from this file."
    )]
    pub config: Option<PathBuf>,

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

impl Flags {
    /// The config-file-backed settings given on the command line.
    fn overrides(&self) -> KubeletConfigFile {
        KubeletConfigFile {
            static_pod_path: self.pod_manifest_path.clone(),
            container_runtime_endpoint: self.container_runtime_endpoint.clone(),
            healthz_port: self.healthz_port,
            healthz_bind_address: self.healthz_bind_address.clone(),
            file_check_frequency: self.file_check_frequency,
            runtime_request_timeout: self.runtime_request_timeout,
            sync_frequency: self.sync_frequency,
            cluster_dns: self.cluster_dns.clone(),
            cluster_domain: self.cluster_domain.clone(),
            resolv_conf: self.resolv_conf.clone(),
            max_pods: self.max_pods,
            ..KubeletConfigFile::default()
        }
    }
}

/// The configuration the kubelet runs with, and the warnings to log once logging is set up.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: KubeletConfiguration,
    pub warnings: Vec<String>,
}

/// Parses the command line (`args` includes the program name), loads the `--config` file if
/// given, and resolves flag > file > default. The result is validated.
///
/// Command-line errors, `--help` and `--version` come back as a [`clap::Error`] inside the
/// `anyhow::Error`: `if let Some(e) = err.downcast_ref::<clap::Error>() { e.exit() }` prints
/// them the way clap does (help on stdout with status 0, usage errors on stderr with status 2).
pub fn load(args: impl IntoIterator<Item = OsString>) -> anyhow::Result<Loaded> {
    let flags = Flags::try_parse_from(args)?;
    load_from(&flags)
}

fn load_from(flags: &Flags) -> anyhow::Result<Loaded> {
    let (file, warnings) = match &flags.config {
        Some(path) => config::load_file(path).context("failed to load the kubelet config file")?,
        None => (KubeletConfigFile::default(), Vec::new()),
    };
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
    }

    #[test]
    fn precedence_flag_over_file_over_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(
            dir.path(),
            "maxPods: 50\nclusterDomain: cluster.local\nstaticPodPath: manifests\ncgroupDriver: systemd\n",
        );
        let config_arg = format!("--config={}", path.display());

        let file_only = load(args(&[&config_arg])).unwrap();
        assert_eq!(file_only.config.max_pods, 50, "file beats default");
        assert_eq!(file_only.config.cluster_domain, "cluster.local");
        assert_eq!(file_only.config.static_pod_path, dir.path().join("manifests").to_string_lossy());
        assert_eq!(file_only.config.sync_frequency, Duration::from_secs(60), "default when unset");
        assert_eq!(file_only.warnings.len(), 1);
        assert!(file_only.warnings[0].contains("\"cgroupDriver\""), "{:?}", file_only.warnings);

        let both = load(args(&[&config_arg, "--max-pods=20", "--pod-manifest-path", "/srv/pods"])).unwrap();
        assert_eq!(both.config.max_pods, 20, "flag beats file");
        assert_eq!(both.config.static_pod_path, "/srv/pods");
        assert_eq!(both.config.cluster_domain, "cluster.local");
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
