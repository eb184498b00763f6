//! Pod spec → CRI `PodSandboxConfig` (upstream `generatePodSandboxConfig`): identity, hostname,
//! DNS, port mappings, log directory and the Linux namespaces/security of the sandbox.

use std::path::{Path, PathBuf};

use cri::api;
use k8s_openapi::api::core::v1::Pod;

use crate::events::Event;
use crate::runtime::dns::{DnsSettings, pod_dns};
use crate::runtime::labels::{sandbox_annotations, sandbox_labels, uid_of};

/// Node-wide inputs of sandbox and container configs.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    pub node_name: String,
    /// The node's IPs (`--node-ip`), for `status.hostIP(s)` env values; empty when unknown.
    pub host_ips: Vec<String>,
    pub pod_logs_dir: PathBuf,
    /// Where the links upstream calls legacy container logs go
    /// (`/var/log/containers/<pod>_<ns>_<container>-<id>.log`); `None` makes none.
    pub legacy_logs_dir: Option<PathBuf>,
    pub dns: DnsSettings,
    /// Cgroups, CFS quota, OOM score and hugepage settings of containers and sandboxes.
    pub resources: crate::runtime::resources::ResourceSettings,
}

/// `<podLogsDir>/<namespace>_<name>_<uid>` (upstream `BuildPodLogsDirectory`).
pub fn pod_logs_dir(root: &Path, pod: &Pod) -> PathBuf {
    root.join(format!(
        "{}_{}_{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default(),
        uid_of(pod)
    ))
}

fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}

/// The pod's hostname (upstream `GeneratePodHostNameAndDomain` + truncation to 63 characters
/// without a trailing `-` or `.`).
pub fn pod_hostname(pod: &Pod) -> String {
    let spec_hostname = pod.spec.as_ref().and_then(|s| s.hostname.as_deref()).filter(|h| !h.is_empty());
    let mut h: String = spec_hostname.or(pod.metadata.name.as_deref()).unwrap_or_default().to_string();
    if h.len() > 63 {
        // Names are validated ASCII, but never split a character whatever the input.
        let mut cut = 63;
        while !h.is_char_boundary(cut) {
            cut -= 1;
        }
        h.truncate(cut);
        while h.ends_with('-') || h.ends_with('.') {
            h.pop();
        }
    }
    h
}

/// The namespace modes upstream derives from hostNetwork/hostPID/hostIPC/shareProcessNamespace.
pub fn namespace_options(pod: &Pod) -> api::NamespaceOption {
    let spec = pod.spec.as_ref();
    let node = api::NamespaceMode::Node as i32;
    let pod_mode = api::NamespaceMode::Pod as i32;
    let flag = |f: Option<bool>| f.unwrap_or(false);
    api::NamespaceOption {
        network: if host_network(pod) { node } else { pod_mode },
        pid: if flag(spec.and_then(|s| s.host_pid)) {
            node
        } else if flag(spec.and_then(|s| s.share_process_namespace)) {
            pod_mode
        } else {
            api::NamespaceMode::Container as i32
        },
        ipc: if flag(spec.and_then(|s| s.host_ipc)) { node } else { pod_mode },
        ..Default::default()
    }
}

fn protocol(p: Option<&str>) -> i32 {
    match p {
        Some("UDP") => api::Protocol::Udp as i32,
        Some("SCTP") => api::Protocol::Sctp as i32,
        _ => api::Protocol::Tcp as i32,
    }
}

/// Builds the sandbox config; DNS warnings come back as events to record.
pub fn generate_sandbox_config(pod: &Pod, attempt: u32, s: &RuntimeSettings) -> (api::PodSandboxConfig, Vec<Event>) {
    let spec = pod.spec.as_ref();
    let (dns, events) = pod_dns(pod, &s.dns);
    let port_mappings = spec
        .map(|s| s.containers.iter())
        .into_iter()
        .flatten()
        .flat_map(|c| c.ports.iter().flatten())
        .map(|p| api::PortMapping {
            protocol: protocol(p.protocol.as_deref()),
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let psc = spec.and_then(|s| s.security_context.as_ref());
    let privileged = spec.is_some_and(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .any(|c| c.security_context.as_ref().and_then(|sc| sc.privileged).unwrap_or(false))
    });
    let sysctls = psc
        .and_then(|p| p.sysctls.as_ref())
        .map(|v| v.iter().map(|s| (s.name.clone(), s.value.clone())).collect())
        .unwrap_or_default();
    let (resources, overhead) = crate::runtime::resources::sandbox_resources(pod, &s.resources);
    let config = api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: uid_of(pod).to_string(),
            namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            attempt,
        }),
        hostname: if host_network(pod) { String::new() } else { pod_hostname(pod) },
        log_directory: pod_logs_dir(&s.pod_logs_dir, pod).to_string_lossy().into_owned(),
        dns_config: Some(api::DnsConfig { servers: dns.servers, searches: dns.searches, options: dns.options }),
        port_mappings,
        labels: sandbox_labels(pod),
        annotations: sandbox_annotations(pod),
        linux: Some(api::LinuxPodSandboxConfig {
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                run_as_user: psc.and_then(|p| p.run_as_user).map(|value| api::Int64Value { value }),
                run_as_group: psc.and_then(|p| p.run_as_group).map(|value| api::Int64Value { value }),
                supplemental_groups: psc.and_then(|p| p.supplemental_groups.clone()).unwrap_or_default(),
                privileged,
                ..Default::default()
            }),
            sysctls,
            cgroup_parent: s.resources.cgroups.as_ref().map(|l| l.name(&l.pod_cgroup(pod))).unwrap_or_default(),
            resources: Some(resources),
            overhead,
        }),
        windows: None,
    };
    (config, events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn settings() -> RuntimeSettings {
        RuntimeSettings {
            legacy_logs_dir: None,
            node_name: "n1".into(),
            host_ips: vec![],
            pod_logs_dir: "/var/log/pods".into(),
            dns: DnsSettings::default(),
            resources: Default::default(),
        }
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-n1".into()),
                namespace: Some("default".into()),
                uid: Some("abc".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "a".into(),
                    ports: Some(vec![ContainerPort {
                        container_port: 8080,
                        host_port: Some(18080),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn sandbox_config_has_identity_logs_ports_hostname() {
        let (c, _) = generate_sandbox_config(&pod(), 2, &settings());
        let m = c.metadata.expect("metadata");
        assert_eq!((m.name.as_str(), m.namespace.as_str(), m.uid.as_str(), m.attempt), ("web-n1", "default", "abc", 2));
        assert_eq!(c.log_directory, "/var/log/pods/default_web-n1_abc");
        assert_eq!(c.hostname, "web-n1");
        assert_eq!(c.port_mappings.len(), 1);
        assert_eq!((c.port_mappings[0].container_port, c.port_mappings[0].host_port), (8080, 18080));
    }

    #[test]
    fn host_network_pod_uses_node_namespace_and_no_hostname() {
        let mut p = pod();
        if let Some(s) = p.spec.as_mut() {
            s.host_network = Some(true);
        }
        let (c, _) = generate_sandbox_config(&p, 0, &settings());
        assert_eq!(c.hostname, "");
        let ns = c.linux.and_then(|l| l.security_context).and_then(|s| s.namespace_options).expect("ns");
        assert_eq!(ns.network, api::NamespaceMode::Node as i32);
    }

    #[test]
    fn long_hostname_truncated_without_trailing_dash() {
        let mut p = pod();
        p.metadata.name = Some(format!("{}-{}", "a".repeat(62), "b"));
        assert_eq!(pod_hostname(&p), "a".repeat(62));
    }

    #[test]
    fn truncation_never_splits_a_character() {
        let mut p = pod();
        // 62 ASCII bytes then a 2-byte character straddling byte 63.
        p.metadata.name = Some(format!("{}é{}", "a".repeat(62), "b".repeat(10)));
        assert_eq!(pod_hostname(&p), "a".repeat(62));
    }
}
