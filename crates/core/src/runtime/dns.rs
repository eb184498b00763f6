//! Pod DNS configuration the upstream way (`pkg/kubelet/network/dns`): the pod's `dnsPolicy`
//! picks cluster DNS, the host's resolv.conf, or nothing, then `dnsConfig` is merged in and the
//! result is cut to the resolver's limits with a `DNSConfigForming` warning.

use k8s_openapi::api::core::v1::{Pod, PodDNSConfig};

use crate::events::{EventType, pod_event};

/// glibc's limits, as upstream's validation uses them.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;

/// The node-wide inputs: `clusterDNS`, `clusterDomain` and the host resolver (from `resolvConf`;
/// `None` when `resolvConf` is "").
#[derive(Debug, Clone, Default)]
pub struct DnsSettings {
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub host: Option<HostResolver>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostResolver {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// The resolver a pod gets, with the warnings upstream records as events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodDns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DnsType {
    Cluster,
    Host,
    None,
}

fn dns_type(pod: &Pod) -> DnsType {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    match spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("ClusterFirst") {
        "None" => DnsType::None,
        "ClusterFirstWithHostNet" => DnsType::Cluster,
        "Default" => DnsType::Host,
        // ClusterFirst (and anything unknown, which validation rejects): host network pods
        // fall back to the host's resolver.
        _ if host_network => DnsType::Host,
        _ => DnsType::Cluster,
    }
}

/// Computes the pod's DNS config; events upstream would record are returned alongside.
pub fn pod_dns(pod: &Pod, settings: &DnsSettings) -> (PodDns, Vec<crate::events::Event>) {
    let mut events = Vec::new();
    let host = settings.host.clone();
    let mut dns = match &host {
        Some(h) => PodDns { servers: h.nameservers.clone(), searches: h.searches.clone(), options: h.options.clone() },
        // resolvConf "" disables host DNS: point at the local machine, search nothing.
        None => PodDns::default(),
    };
    let mut kind = dns_type(pod);
    if kind == DnsType::Cluster && settings.cluster_dns.is_empty() {
        events.push(pod_event(
            pod,
            EventType::Warning,
            "MissingClusterDNS",
            format!(
                "pod: {:?}. kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.",
                crate::events::pod_key(pod)
            ),
        ));
        kind = DnsType::Host;
    }
    match kind {
        DnsType::None => dns = PodDns::default(),
        DnsType::Cluster => {
            dns.servers = settings.cluster_dns.clone();
            dns.searches = cluster_searches(pod, &settings.cluster_domain, &dns.searches);
            dns.options = vec!["ndots:5".into()];
        }
        DnsType::Host if host.is_none() => {
            dns.servers = vec!["127.0.0.1".into()];
            dns.searches = vec![".".into()];
        }
        DnsType::Host => {}
    }
    if let Some(custom) = pod.spec.as_ref().and_then(|s| s.dns_config.as_ref()) {
        merge_pod_dns_config(&mut dns, custom);
    }
    fit_limits(pod, &mut dns, &mut events);
    (dns, events)
}

fn cluster_searches(pod: &Pod, domain: &str, host_searches: &[String]) -> Vec<String> {
    if domain.is_empty() {
        return host_searches.to_vec();
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut s = vec![format!("{ns}.svc.{domain}"), format!("svc.{domain}"), domain.to_string()];
    s.extend(host_searches.iter().cloned());
    s
}

/// `appendDNSConfig`: servers and searches appended without duplicates; options merged by name,
/// the pod's value winning.
fn merge_pod_dns_config(dns: &mut PodDns, custom: &PodDNSConfig) {
    for s in custom.nameservers.iter().flatten() {
        if !dns.servers.contains(s) {
            dns.servers.push(s.clone());
        }
    }
    for s in custom.searches.iter().flatten() {
        if !dns.searches.contains(s) {
            dns.searches.push(s.clone());
        }
    }
    for o in custom.options.iter().flatten() {
        let rendered = match &o.value {
            Some(v) => format!("{}:{v}", o.name.as_deref().unwrap_or_default()),
            None => o.name.clone().unwrap_or_default(),
        };
        let name = o.name.as_deref().unwrap_or_default();
        dns.options.retain(|existing| existing.split(':').next() != Some(name));
        dns.options.push(rendered);
    }
}

fn fit_limits(pod: &Pod, dns: &mut PodDns, events: &mut Vec<crate::events::Event>) {
    if dns.servers.len() > MAX_NAMESERVERS {
        dns.servers.truncate(MAX_NAMESERVERS);
        events.push(pod_event(
            pod,
            EventType::Warning,
            "DNSConfigForming",
            format!(
                "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {}",
                dns.servers.join(" ")
            ),
        ));
    }
    let before = dns.searches.len();
    let mut chars = 0usize;
    let mut kept = Vec::new();
    for s in dns.searches.drain(..) {
        if kept.len() >= MAX_SEARCHES || chars + s.len() + usize::from(!kept.is_empty()) > MAX_SEARCH_CHARS {
            break;
        }
        chars += s.len() + usize::from(!kept.is_empty());
        kept.push(s);
    }
    dns.searches = kept;
    if dns.searches.len() < before {
        events.push(pod_event(
            pod,
            EventType::Warning,
            "DNSConfigForming",
            format!(
                "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
                dns.searches.join(" ")
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodDNSConfigOption, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(policy: &str, host_network: bool) -> Pod {
        Pod {
            metadata: ObjectMeta { name: Some("p".into()), namespace: Some("ns1".into()), ..Default::default() },
            spec: Some(PodSpec {
                dns_policy: Some(policy.into()),
                host_network: Some(host_network),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn settings() -> DnsSettings {
        DnsSettings {
            cluster_dns: vec!["10.96.0.10".into()],
            cluster_domain: "cluster.local".into(),
            host: Some(HostResolver {
                nameservers: vec!["192.0.2.1".into()],
                searches: vec!["corp.example".into()],
                options: vec!["timeout:2".into()],
            }),
        }
    }

    #[test]
    fn cluster_first_uses_cluster_dns_and_searches() {
        let (d, ev) = pod_dns(&pod("ClusterFirst", false), &settings());
        assert_eq!(d.servers, vec!["10.96.0.10"]);
        assert_eq!(d.searches, vec!["ns1.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"]);
        assert_eq!(d.options, vec!["ndots:5"]);
        assert!(ev.is_empty());
    }

    #[test]
    fn cluster_first_on_host_network_falls_back_to_host() {
        let (d, _) = pod_dns(&pod("ClusterFirst", true), &settings());
        assert_eq!(d.servers, vec!["192.0.2.1"]);
        let (d, _) = pod_dns(&pod("ClusterFirstWithHostNet", true), &settings());
        assert_eq!(d.servers, vec!["10.96.0.10"]);
    }

    #[test]
    fn missing_cluster_dns_warns_and_uses_host() {
        let mut s = settings();
        s.cluster_dns.clear();
        let (d, ev) = pod_dns(&pod("ClusterFirst", false), &s);
        assert_eq!(d.servers, vec!["192.0.2.1"]);
        assert_eq!(ev[0].reason, "MissingClusterDNS");
    }

    #[test]
    fn none_policy_takes_only_dns_config_and_merges_options() {
        let mut p = pod("None", false);
        if let Some(spec) = p.spec.as_mut() {
            spec.dns_config = Some(PodDNSConfig {
                nameservers: Some(vec!["1.1.1.1".into()]),
                searches: Some(vec!["a.example".into()]),
                options: Some(vec![PodDNSConfigOption { name: Some("ndots".into()), value: Some("2".into()) }]),
            });
        }
        let (d, _) = pod_dns(&p, &settings());
        assert_eq!(
            d,
            PodDns {
                servers: vec!["1.1.1.1".into()],
                searches: vec!["a.example".into()],
                options: vec!["ndots:2".into()]
            }
        );
    }

    #[test]
    fn too_many_nameservers_are_cut_with_dns_config_forming() {
        let mut p = pod("ClusterFirst", false);
        if let Some(spec) = p.spec.as_mut() {
            spec.dns_config = Some(PodDNSConfig {
                nameservers: Some(vec!["1.1.1.1".into(), "1.1.1.2".into(), "1.1.1.3".into()]),
                ..Default::default()
            });
        }
        let (d, ev) = pod_dns(&p, &settings());
        assert_eq!(d.servers.len(), 3);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].reason, "DNSConfigForming");
        assert!(ev[0].message.contains("10.96.0.10 1.1.1.1 1.1.1.2"), "{}", ev[0].message);
    }

    #[test]
    fn no_resolv_conf_means_localhost() {
        let mut s = settings();
        s.host = None;
        let (d, _) = pod_dns(&pod("Default", false), &s);
        assert_eq!(d.servers, vec!["127.0.0.1"]);
        assert_eq!(d.searches, vec!["."]);
    }
}
