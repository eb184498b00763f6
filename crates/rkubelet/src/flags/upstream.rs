//! Every flag of the upstream kubelet (Linux build, current release: `cmd/kubelet/app/options`,
//! `pkg/kubelet/config/flags.go`, component-base logging and version flags), with whether it
//! takes a value and how rkubelet handles it. A drop-in must start with whatever kubeadm and
//! distributions put on the command line, so flags rkubelet does not implement are accepted
//! and logged, except those whose silent ignoring would be unsafe, which are refused.

use core_kubelet::config::unsupported::SECCOMP_DEFAULT_REFUSED;

/// How rkubelet treats one upstream flag.
#[derive(Clone, Copy)]
pub enum Handling {
    /// Parsed by clap ([`super::Flags`]).
    Implemented,
    /// Accepted and ignored with a warning.
    Ignored,
    /// Accepted and ignored with a warning unless the check returns a reason to refuse the value.
    Unsafe(fn(&str) -> Option<&'static str>),
}

/// One upstream flag.
#[derive(Clone, Copy)]
pub struct UpstreamFlag {
    /// Long name without dashes.
    pub name: &'static str,
    /// `--name value` consumes the next argument; otherwise it is a bool (`--name`, `--name=false`).
    pub takes_value: bool,
    pub handling: Handling,
}

const fn imp(name: &'static str, takes_value: bool) -> UpstreamFlag {
    UpstreamFlag { name, takes_value, handling: Handling::Implemented }
}
const fn ign(name: &'static str, takes_value: bool) -> UpstreamFlag {
    UpstreamFlag { name, takes_value, handling: Handling::Ignored }
}
const fn guard(name: &'static str, takes_value: bool, check: fn(&str) -> Option<&'static str>) -> UpstreamFlag {
    UpstreamFlag { name, takes_value, handling: Handling::Unsafe(check) }
}

const V: bool = true;
const B: bool = false;

/// The kubelet's flags. `help` and `version` are clap's own (`-h`, `-V` in addition).
pub const UPSTREAM_FLAGS: &[UpstreamFlag] = &[
    imp("address", V),
    ign("allowed-unsafe-sysctls", V),
    imp("anonymous-auth", B),
    imp("authentication-token-webhook", B),
    imp("authentication-token-webhook-cache-ttl", V),
    imp("authorization-mode", V),
    imp("authorization-webhook-cache-authorized-ttl", V),
    imp("authorization-webhook-cache-unauthorized-ttl", V),
    imp("bootstrap-kubeconfig", V),
    imp("cert-dir", V),
    imp("cgroup-driver", V),
    imp("cgroup-root", V),
    imp("cgroups-per-qos", B),
    imp("client-ca-file", V),
    imp("cloud-provider", V),
    imp("cluster-dns", V),
    imp("cluster-domain", V),
    imp("config", V),
    imp("config-dir", V),
    imp("container-log-max-files", V),
    imp("container-log-max-size", V),
    imp("container-runtime-endpoint", V),
    ign("contention-profiling", B),
    imp("cpu-cfs-quota", B),
    imp("cpu-cfs-quota-period", V),
    ign("cpu-manager-policy", V),
    ign("cpu-manager-policy-options", V),
    ign("cpu-manager-reconcile-period", V),
    imp("enable-controller-attach-detach", B),
    imp("enable-debugging-handlers", B),
    imp("enable-server", B),
    imp("enforce-node-allocatable", V),
    imp("event-burst", V),
    imp("event-qps", V),
    imp("eviction-hard", V),
    imp("eviction-max-pod-grace-period", V),
    imp("eviction-minimum-reclaim", V),
    imp("eviction-pressure-transition-period", V),
    imp("eviction-soft", V),
    imp("eviction-soft-grace-period", V),
    guard("exit-on-lock-contention", B, exit_on_lock_contention),
    ign("experimental-allocatable-ignore-eviction", B),
    ign("experimental-mounter-path", V),
    ign("fail-cgroupv1", B),
    ign("fail-swap-on", B),
    ign("feature-gates", V),
    imp("file-check-frequency", V),
    imp("hairpin-mode", V),
    imp("healthz-bind-address", V),
    imp("healthz-port", V),
    imp("help", B),
    imp("hostname-override", V),
    ign("http-check-frequency", V),
    ign("image-credential-provider-bin-dir", V),
    ign("image-credential-provider-config", V),
    imp("image-gc-high-threshold", V),
    imp("image-gc-low-threshold", V),
    ign("image-service-endpoint", V),
    ign("kernel-memcg-notification", B),
    imp("kube-api-burst", V),
    ign("kube-api-content-type", V),
    imp("kube-api-qps", V),
    imp("kube-reserved", V),
    imp("kube-reserved-cgroup", V),
    imp("kubeconfig", V),
    ign("kubelet-cgroups", V),
    ign("local-storage-capacity-isolation", B),
    guard("lock-file", V, lock_file),
    ign("log-flush-frequency", V),
    ign("log-json-info-buffer-size", V),
    ign("log-json-split-stream", B),
    ign("log-text-info-buffer-size", V),
    ign("log-text-split-stream", B),
    ign("logging-format", V),
    ign("make-iptables-util-chains", B),
    ign("manifest-url", V),
    ign("manifest-url-header", V),
    ign("max-open-files", V),
    imp("max-pods", V),
    imp("maximum-dead-containers", V),
    imp("maximum-dead-containers-per-container", V),
    ign("memory-manager-policy", V),
    imp("minimum-container-ttl-duration", V),
    imp("minimum-image-ttl-duration", V),
    imp("node-ip", V),
    imp("node-labels", V),
    imp("node-status-max-images", V),
    imp("node-status-update-frequency", V),
    ign("oom-score-adj", V),
    ign("pod-cidr", V),
    // Deprecated upstream (the CRI owns the sandbox image) but still written by kubeadm.
    ign("pod-infra-container-image", V),
    imp("pod-manifest-path", V),
    imp("pod-max-pids", V),
    ign("pods-per-core", V),
    imp("port", V),
    ign("protect-kernel-defaults", B),
    imp("provider-id", V),
    ign("qos-reserved", V),
    imp("read-only-port", V),
    imp("register-node", B),
    imp("register-with-taints", V),
    imp("registry-burst", V),
    imp("registry-qps", V),
    ign("reserved-cpus", V),
    ign("reserved-memory", V),
    imp("resolv-conf", V),
    imp("root-dir", V),
    imp("rotate-certificates", B),
    imp("rotate-server-certificates", B),
    guard("runonce", B, runonce),
    ign("runtime-cgroups", V),
    imp("runtime-request-timeout", V),
    guard("seccomp-default", B, seccomp_default),
    imp("serialize-image-pulls", B),
    ign("streaming-connection-idle-timeout", V),
    imp("sync-frequency", V),
    ign("system-cgroups", V),
    imp("system-reserved", V),
    imp("system-reserved-cgroup", V),
    imp("tls-cert-file", V),
    imp("tls-cipher-suites", V),
    imp("tls-min-version", V),
    imp("tls-private-key-file", V),
    ign("topology-manager-policy", V),
    ign("topology-manager-policy-options", V),
    ign("topology-manager-scope", V),
    imp("v", V),
    imp("version", B),
    ign("vmodule", V),
    ign("volume-plugin-dir", V),
    imp("volume-stats-agg-period", V),
    // Removed upstream in 1.27, but kubeadm before 1.27 wrote `--container-runtime=remote` to
    // kubeadm-flags.env and such files outlive upgrades.
    guard("container-runtime", V, container_runtime),
];

/// The entry for `name` (without dashes).
pub fn lookup(name: &str) -> Option<&'static UpstreamFlag> {
    UPSTREAM_FLAGS.iter().find(|f| f.name == name)
}

/// Go's `strconv.ParseBool`, which pflag uses for bool flags.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid boolean value {s:?} (use true or false)")),
    }
}

fn is_true(v: &str) -> bool {
    parse_go_bool(v) == Ok(true)
}

fn exit_on_lock_contention(v: &str) -> Option<&'static str> {
    is_true(v).then_some(
        "rkubelet does not take the kubelet lock file, so it would never exit when another process asks for it",
    )
}

fn lock_file(v: &str) -> Option<&'static str> {
    (!v.is_empty()).then_some(
        "rkubelet does not take the kubelet lock file; another kubelet could manage this node at the same time",
    )
}

fn runonce(v: &str) -> Option<&'static str> {
    is_true(v).then_some("rkubelet has no run-once mode; it would keep running and managing pods instead of exiting")
}

fn seccomp_default(v: &str) -> Option<&'static str> {
    is_true(v).then_some(SECCOMP_DEFAULT_REFUSED)
}

fn container_runtime(v: &str) -> Option<&'static str> {
    (v != "remote").then_some("rkubelet only talks to a CRI runtime (--container-runtime-endpoint)")
}

/// A command line rkubelet refuses before clap sees it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlagError {
    #[error("flag --{flag}={value} is not supported by rkubelet and cannot be ignored safely: {reason}")]
    Refused { flag: &'static str, value: String, reason: &'static str },
    #[error("flag needs an argument: --{0}")]
    MissingValue(&'static str),
    #[error("invalid argument {value:?} for --{flag}: {reason}")]
    Invalid { flag: &'static str, value: String, reason: String },
}

/// Removes the upstream flags rkubelet does not implement from `args` (program name first),
/// with their values, and returns the rest for clap plus one warning per ignored flag. Flag
/// names are normalized as upstream's (`_` → `-`). Unknown flags are left for clap to reject.
pub fn strip_unimplemented(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<(Vec<std::ffi::OsString>, Vec<String>), FlagError> {
    let mut args = args.into_iter();
    let mut kept: Vec<std::ffi::OsString> = args.next().into_iter().collect();
    let mut warnings = Vec::new();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            kept.push(arg);
            continue;
        };
        if text == "--" {
            kept.push(arg);
            kept.extend(args);
            break;
        }
        if text == "-v" {
            kept.push(arg);
            kept.extend(args.next());
            continue;
        }
        let Some(body) = text.strip_prefix("--") else {
            kept.push(arg);
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n.replace('_', "-"), Some(v)),
            None => (body.replace('_', "-"), None),
        };
        let Some(flag) = lookup(&name) else {
            kept.push(arg);
            continue;
        };
        if let Handling::Implemented = flag.handling {
            kept.push(match inline {
                Some(v) => format!("--{name}={v}").into(),
                None => format!("--{name}").into(),
            });
            if flag.takes_value && inline.is_none() {
                kept.extend(args.next());
            }
            continue;
        }
        let value = match (inline, flag.takes_value) {
            (Some(v), _) => v.to_owned(),
            (None, true) => args.next().and_then(|v| v.into_string().ok()).ok_or(FlagError::MissingValue(flag.name))?,
            (None, false) => "true".to_owned(),
        };
        if !flag.takes_value {
            parse_go_bool(&value).map_err(|reason| FlagError::Invalid {
                flag: flag.name,
                value: value.clone(),
                reason,
            })?;
        }
        if let Handling::Unsafe(check) = flag.handling
            && let Some(reason) = check(&value)
        {
            return Err(FlagError::Refused { flag: flag.name, value, reason });
        }
        let warning = format!("flag --{} is not supported by rkubelet and is ignored", flag.name);
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }
    Ok((kept, warnings))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::ffi::OsString;

    fn strip(list: &[&str]) -> Result<(Vec<String>, Vec<String>), FlagError> {
        let args = std::iter::once("rkubelet").chain(list.iter().copied()).map(OsString::from);
        strip_unimplemented(args)
            .map(|(kept, w)| (kept.into_iter().skip(1).map(|a| a.into_string().unwrap()).collect(), w))
    }

    #[test]
    fn table_has_unique_sorted_names() {
        let (last, rest) = UPSTREAM_FLAGS.split_last().unwrap();
        assert_eq!(last.name, "container-runtime", "the legacy entry stays last");
        for pair in rest.windows(2) {
            assert!(pair[0].name < pair[1].name, "{} / {}", pair[0].name, pair[1].name);
        }
        assert!(rest.iter().all(|f| f.name != last.name));
    }

    #[test]
    fn unimplemented_flags_are_removed_with_their_values() {
        let (kept, warnings) = strip(&[
            "--cgroup-driver=systemd",
            "--pod-infra-container-image",
            "pause:3.10",
            "--fail-swap-on=false",
            "--qos-reserved",
            "memory=50%",
            "--max-pods",
            "20",
            "--kubelet-cgroups",
            "/kubelet",
            "--kube_api_qps=5",
            "-v",
            "3",
            "--feature-gates=A=true",
            "--feature-gates=B=false",
        ])
        .unwrap();
        assert_eq!(kept, ["--cgroup-driver=systemd", "--max-pods", "20", "--kube-api-qps=5", "-v", "3"]);
        assert_eq!(
            warnings,
            [
                "flag --pod-infra-container-image is not supported by rkubelet and is ignored",
                "flag --fail-swap-on is not supported by rkubelet and is ignored",
                "flag --qos-reserved is not supported by rkubelet and is ignored",
                "flag --kubelet-cgroups is not supported by rkubelet and is ignored",
                "flag --feature-gates is not supported by rkubelet and is ignored",
            ]
        );
    }

    #[test]
    fn unknown_flags_and_positionals_are_left_for_clap() {
        let (kept, warnings) = strip(&["--no-such-flag=1", "positional", "-x", "--", "--cgroup-driver=x"]).unwrap();
        assert_eq!(kept, ["--no-such-flag=1", "positional", "-x", "--", "--cgroup-driver=x"]);
        assert!(warnings.is_empty());
    }

    #[test]
    fn unsafe_values_are_refused_harmless_ones_warned() {
        for (args, flag) in [
            (&["--lock-file=/run/lock/kubelet.lock"][..], "lock-file"),
            (&["--lock-file", "/run/lock/kubelet.lock"][..], "lock-file"),
            (&["--exit-on-lock-contention"][..], "exit-on-lock-contention"),
            (&["--runonce=true"][..], "runonce"),
            (&["--seccomp-default"][..], "seccomp-default"),
            (&["--container-runtime=docker"][..], "container-runtime"),
        ] {
            match strip(args) {
                Err(FlagError::Refused { flag: f, .. }) => assert_eq!(f, flag),
                other => panic!("{args:?}: {other:?}"),
            }
        }
        let err = strip(&["--seccomp-default=true"]).unwrap_err().to_string();
        assert!(
            err.starts_with("flag --seccomp-default=true is not supported by rkubelet and cannot be ignored safely: "),
            "{err}"
        );
        let (kept, warnings) =
            strip(&["--container-runtime=remote", "--seccomp-default=false", "--lock-file=", "--runonce=0"]).unwrap();
        assert!(kept.is_empty());
        assert_eq!(warnings.len(), 4, "{warnings:?}");
    }

    #[test]
    fn bad_unimplemented_flags_are_errors() {
        assert_eq!(strip(&["--qos-reserved"]).unwrap_err(), FlagError::MissingValue("qos-reserved"));
        let err = strip(&["--fail-swap-on=maybe"]).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid argument \"maybe\" for --fail-swap-on: invalid boolean value \"maybe\" (use true or false)"
        );
    }

    #[test]
    fn go_bools() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(t), Ok(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(f), Ok(false));
        }
        assert!(parse_go_bool("yes").is_err());
    }
}
