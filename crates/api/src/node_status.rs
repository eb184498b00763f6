//! The Node object as the kubelet writes it (upstream `pkg/kubelet/nodestatus/setters.go` and
//! `kubelet_node_status.go`): the initial node for registration, and the status setters
//! (addresses, capacity/allocatable, nodeInfo, images, daemon endpoints, conditions). Pure
//! functions over the machine facts and the kubelet's health, so they are tested without a server.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use sys::node_info::MachineInfo;

pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub const LABEL_OS: &str = "kubernetes.io/os";
pub const LABEL_ARCH: &str = "kubernetes.io/arch";
pub const LABEL_OS_BETA: &str = "beta.kubernetes.io/os";
pub const LABEL_ARCH_BETA: &str = "beta.kubernetes.io/arch";
/// Annotation telling the attach/detach controller it owns this node's attachments.
pub const CONTROLLER_MANAGED_ATTACH_DETACH: &str = "volumes.kubernetes.io/controller-managed-attach-detach";

/// Upstream caps the images listed in node status (`nodeStatusMaxImages`) and names per image.
const MAX_NAMES_PER_IMAGE: usize = 5;

/// What allocatable holds back from capacity (upstream `GetNodeAllocatableReservation`):
/// `systemReserved` + `kubeReserved`, plus the hard eviction thresholds of `memory.available`
/// (in `memory`) and `nodefs.available` (in `ephemeral_storage`, or as a fraction of the root
/// filesystem's capacity).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AllocatableReservation {
    pub cpu_millis: u64,
    pub memory: u64,
    pub ephemeral_storage: u64,
    pub ephemeral_fraction: f64,
}

/// Go's GOARCH spelling of this machine's architecture.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "arm" => "arm",
        other => other,
    }
}

/// The Kubernetes release rkubelet implements, reported as kubeletVersion with rkubelet's own
/// version as build metadata (ignored by version comparisons, visible in `kubectl get nodes -o wide`).
pub fn kubelet_version() -> String {
    format!("v1.37.0+rkubelet.{}", env!("CARGO_PKG_VERSION"))
}

/// What the operator configured about this node.
#[derive(Debug, Clone, Default)]
pub struct NodeSettings {
    pub name: String,
    pub hostname: String,
    /// `--node-labels`.
    pub labels: BTreeMap<String, String>,
    /// `--register-with-taints`.
    pub taints: Vec<Taint>,
    /// Node IPs (from `--node-ip` or the default route).
    pub node_ips: Vec<String>,
    pub kubelet_port: i32,
    pub max_pods: u32,
    pub provider_id: Option<String>,
    pub controller_attach_detach: bool,
    pub max_images: usize,
    /// `--cloud-provider=external`: a cloud controller initializes the node and owns its addresses.
    pub external_cloud_provider: bool,
    /// The node IPs came from `--node-ip` (not detected).
    pub node_ips_given: bool,
    pub reservation: AllocatableReservation,
    /// Events recorded once the node is registered: (warning, reason, message), e.g. the
    /// container manager's `NodeAllocatableEnforced`.
    pub startup_events: Vec<(bool, String, String)>,
}

/// The taint an external cloud provider removes once it has initialized the node.
pub const TAINT_UNINITIALIZED: &str = "node.cloudprovider.kubernetes.io/uninitialized";
/// The `--node-ip` value, for an external cloud provider to check.
pub const ANNOTATION_PROVIDED_NODE_IP: &str = "alpha.kubernetes.io/provided-node-ip";

/// The kubelet's view of itself at one status update.
#[derive(Debug, Clone, Default)]
pub struct NodeHealth {
    /// Why the node is not ready (runtime down, network not ready, PLEG unhealthy…); empty = ready.
    pub not_ready: Vec<String>,
    /// `containerd://1.6.20`.
    pub runtime_version: String,
    pub images: Vec<ContainerImage>,
    /// Bytes of the filesystem holding the root dir (ephemeral-storage capacity).
    pub ephemeral_storage: Option<u64>,
    /// The eviction manager's pressure conditions (`MemoryPressure`, `DiskPressure`,
    /// `PIDPressure`) now true.
    pub pressure: Vec<String>,
}

/// The labels the kubelet owns (upstream `updateDefaultLabels` keeps them in sync on an existing node).
pub fn default_labels(s: &NodeSettings) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert(LABEL_HOSTNAME.into(), s.hostname.clone());
    l.insert(LABEL_OS.into(), "linux".into());
    l.insert(LABEL_ARCH.into(), go_arch().into());
    l.insert(LABEL_OS_BETA.into(), "linux".into());
    l.insert(LABEL_ARCH_BETA.into(), go_arch().into());
    l
}

/// The Node to register (upstream `initialNode`), status not yet set. With an external cloud
/// provider it carries the uninitialized taint and, when `--node-ip` was given, the
/// provided-node-ip annotation.
pub fn initial_node(s: &NodeSettings) -> Node {
    let mut labels = default_labels(s);
    labels.extend(s.labels.clone());
    let mut annotations = BTreeMap::new();
    if s.controller_attach_detach {
        annotations.insert(CONTROLLER_MANAGED_ATTACH_DETACH.to_string(), "true".to_string());
    }
    if let Some(ips) = provided_node_ip(s) {
        annotations.insert(ANNOTATION_PROVIDED_NODE_IP.to_string(), ips);
    }
    let mut taints = s.taints.clone();
    if s.external_cloud_provider {
        taints.push(Taint {
            key: TAINT_UNINITIALIZED.into(),
            value: Some("true".into()),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
    }
    Node {
        metadata: ObjectMeta {
            name: Some(s.name.clone()),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!taints.is_empty()).then_some(taints),
            provider_id: s.provider_id.clone(),
            ..Default::default()
        }),
        status: None,
    }
}

/// Makes an existing node's kubelet-owned labels and annotation match ours (upstream
/// `updateDefaultLabels` + `reconcileCMADAnnotationWithExistingNode`); true when it changed.
pub fn reconcile_existing(existing: &mut Node, s: &NodeSettings) -> bool {
    let mut changed = false;
    let labels = existing.metadata.labels.get_or_insert_with(BTreeMap::new);
    for (k, v) in default_labels(s) {
        if labels.get(&k) != Some(&v) {
            labels.insert(k, v);
            changed = true;
        }
    }
    let annotations = existing.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let has = annotations.get(CONTROLLER_MANAGED_ATTACH_DETACH).is_some_and(|v| v == "true");
    if s.controller_attach_detach && !has {
        annotations.insert(CONTROLLER_MANAGED_ATTACH_DETACH.into(), "true".into());
        changed = true;
    } else if !s.controller_attach_detach && annotations.remove(CONTROLLER_MANAGED_ATTACH_DETACH).is_some() {
        changed = true;
    }
    if let Some(ips) = provided_node_ip(s)
        && annotations.get(ANNOTATION_PROVIDED_NODE_IP) != Some(&ips)
    {
        annotations.insert(ANNOTATION_PROVIDED_NODE_IP.into(), ips);
        changed = true;
    }
    changed
}

/// The provided-node-ip annotation's value: the `--node-ip` addresses, comma-separated, when
/// an external cloud provider is to verify them.
fn provided_node_ip(s: &NodeSettings) -> Option<String> {
    (s.external_cloud_provider && s.node_ips_given && !s.node_ips.is_empty()).then(|| s.node_ips.join(","))
}

/// A byte count as Kubernetes prints a BinarySI quantity (`24622048Ki`, `100Mi`, `1536`).
pub fn binary_si(bytes: u64) -> Quantity {
    const SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut v = bytes;
    let mut suffix = "";
    if v != 0 {
        for s in SUFFIXES {
            if !v.is_multiple_of(1024) {
                break;
            }
            v /= 1024;
            suffix = s;
        }
    }
    Quantity(format!("{v}{suffix}"))
}

/// A condition change that upstream records as an Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    pub warning: bool,
    pub reason: &'static str,
}

/// Sets every status field the kubelet owns on `node` (upstream `setNodeStatus`); returns the
/// events to record for condition transitions. Conditions keep their transition time unless their
/// status changed; heartbeat times are `now`.
pub fn set_node_status(
    node: &mut Node,
    s: &NodeSettings,
    m: &MachineInfo,
    h: &NodeHealth,
    now: &Time,
) -> Vec<NodeEvent> {
    let status = node.status.get_or_insert_with(NodeStatus::default);
    // Upstream: with an external cloud provider, addresses it set win, and without `--node-ip`
    // the kubelet leaves them for it to set.
    let cloud_owns =
        s.external_cloud_provider && (status.addresses.as_ref().is_some_and(|a| !a.is_empty()) || !s.node_ips_given);
    if !cloud_owns {
        let mut addresses: Vec<NodeAddress> =
            s.node_ips.iter().map(|ip| NodeAddress { type_: "InternalIP".into(), address: ip.clone() }).collect();
        addresses.push(NodeAddress { type_: "Hostname".into(), address: s.hostname.clone() });
        status.addresses = Some(addresses);
    }

    let mut capacity = BTreeMap::new();
    capacity.insert("cpu".to_string(), Quantity(m.num_cpus.to_string()));
    capacity.insert("memory".to_string(), binary_si(m.memory_bytes));
    capacity.insert("pods".to_string(), Quantity(s.max_pods.to_string()));
    let mut hugepages_total = 0u64;
    for (kb, bytes) in &m.hugepages {
        let size = binary_si(kb * 1024).0;
        capacity.insert(format!("hugepages-{size}"), binary_si(*bytes));
        hugepages_total = hugepages_total.saturating_add(*bytes);
    }
    if let Some(bytes) = h.ephemeral_storage {
        capacity.insert("ephemeral-storage".to_string(), binary_si(bytes));
    }
    // Upstream's MachineInfo setter: capacity − reservation, clamped at 0; memory also loses
    // every hugepage pool.
    let r = &s.reservation;
    let mut allocatable = capacity.clone();
    let cpu = m.num_cpus.saturating_mul(1000).saturating_sub(r.cpu_millis);
    allocatable.insert(
        "cpu".to_string(),
        Quantity(if cpu.is_multiple_of(1000) { (cpu / 1000).to_string() } else { format!("{cpu}m") }),
    );
    let memory = m.memory_bytes.saturating_sub(r.memory).saturating_sub(hugepages_total);
    allocatable.insert("memory".to_string(), binary_si(memory));
    if let Some(bytes) = h.ephemeral_storage {
        let reserve = r.ephemeral_storage.saturating_add((bytes as f64 * r.ephemeral_fraction) as u64);
        allocatable.insert("ephemeral-storage".to_string(), binary_si(bytes.saturating_sub(reserve)));
    }
    status.capacity = Some(capacity);
    status.allocatable = Some(allocatable);

    status.node_info = Some(NodeSystemInfo {
        machine_id: m.machine_id.clone(),
        system_uuid: m.system_uuid.clone(),
        boot_id: m.boot_id.clone(),
        kernel_version: m.kernel_version.clone(),
        os_image: m.os_image.clone(),
        container_runtime_version: h.runtime_version.clone(),
        kubelet_version: kubelet_version(),
        operating_system: "linux".into(),
        architecture: go_arch().into(),
        ..Default::default()
    });
    status.daemon_endpoints =
        Some(NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port: s.kubelet_port }) });
    let mut images = h.images.clone();
    images.sort_by_key(|i| std::cmp::Reverse(i.size_bytes));
    images.truncate(s.max_images);
    for i in &mut images {
        if let Some(n) = i.names.as_mut() {
            n.truncate(MAX_NAMES_PER_IMAGE);
        }
    }
    status.images = Some(images);

    let ready_msg = match h.not_ready.len() {
        0 => None,
        1 => Some(h.not_ready[0].clone()),
        _ => Some(format!("[{}]", h.not_ready.join(", "))),
    };
    let under = |c: &str| h.pressure.iter().any(|p| p == c);
    let wanted = [
        if under("MemoryPressure") {
            (
                "MemoryPressure",
                "True",
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available".to_string(),
                "NodeHasInsufficientMemory",
                false,
            )
        } else {
            (
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available".to_string(),
                "NodeHasSufficientMemory",
                false,
            )
        },
        if under("DiskPressure") {
            (
                "DiskPressure",
                "True",
                "KubeletHasDiskPressure",
                "kubelet has disk pressure".to_string(),
                "NodeHasDiskPressure",
                false,
            )
        } else {
            (
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure".to_string(),
                "NodeHasNoDiskPressure",
                false,
            )
        },
        if under("PIDPressure") {
            (
                "PIDPressure",
                "True",
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available".to_string(),
                "NodeHasInsufficientPID",
                false,
            )
        } else {
            (
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available".to_string(),
                "NodeHasSufficientPID",
                false,
            )
        },
        match &ready_msg {
            None => {
                ("Ready", "True", "KubeletReady", "kubelet is posting ready status".to_string(), "NodeReady", false)
            }
            Some(m) => ("Ready", "False", "KubeletNotReady", m.clone(), "NodeNotReady", false),
        },
    ];
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let mut events = Vec::new();
    for (type_, st, reason, message, event, warning) in wanted {
        let existing = conditions.iter_mut().find(|c| c.type_ == type_);
        match existing {
            Some(c) => {
                if c.status != st {
                    c.last_transition_time = Some(now.clone());
                    events.push(NodeEvent { warning, reason: event });
                }
                c.status = st.into();
                c.reason = Some(reason.into());
                c.message = Some(message);
                c.last_heartbeat_time = Some(now.clone());
            }
            None => {
                conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: st.into(),
                    reason: Some(reason.into()),
                    message: Some(message),
                    last_heartbeat_time: Some(now.clone()),
                    last_transition_time: Some(now.clone()),
                });
                events.push(NodeEvent { warning, reason: event });
            }
        }
    }
    events
}

/// Upstream `nodeStatusHasChanged`: equal but for condition heartbeat times.
pub fn status_changed(old: Option<&NodeStatus>, new: Option<&NodeStatus>) -> bool {
    let strip = |s: Option<&NodeStatus>| {
        s.cloned().map(|mut s| {
            for c in s.conditions.iter_mut().flatten() {
                c.last_heartbeat_time = None;
            }
            s
        })
    };
    strip(old) != strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> NodeSettings {
        NodeSettings {
            name: "n1".into(),
            hostname: "n1".into(),
            node_ips: vec!["10.0.0.5".into()],
            kubelet_port: 10250,
            max_pods: 110,
            max_images: 50,
            controller_attach_detach: true,
            ..Default::default()
        }
    }

    fn machine() -> MachineInfo {
        MachineInfo {
            num_cpus: 2,
            memory_bytes: 4 << 30,
            hugepages: vec![(2048, 0)],
            machine_id: "m".into(),
            system_uuid: "u".into(),
            boot_id: "b".into(),
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            ..Default::default()
        }
    }

    fn t(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).expect("ts"))
    }

    #[test]
    fn quantities_print_as_kubernetes_does() {
        assert_eq!(binary_si(4 << 30).0, "4Gi");
        assert_eq!(binary_si(1536).0, "1536");
        assert_eq!(binary_si(24_622_048 * 1024).0, "24622048Ki");
        assert_eq!(binary_si(0).0, "0");
    }

    #[test]
    fn external_cloud_provider_taints_annotates_and_owns_addresses() {
        let h = NodeHealth::default();
        let plain = initial_node(&settings());
        assert!(plain.spec.as_ref().and_then(|s| s.taints.as_ref()).is_none());
        assert!(!plain.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(ANNOTATION_PROVIDED_NODE_IP)));

        let given = NodeSettings { external_cloud_provider: true, node_ips_given: true, ..settings() };
        let mut node = initial_node(&given);
        let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).expect("taints");
        assert_eq!(taints.len(), 1);
        assert_eq!(
            (taints[0].key.as_str(), taints[0].value.as_deref(), taints[0].effect.as_str()),
            (TAINT_UNINITIALIZED, Some("true"), "NoSchedule")
        );
        assert_eq!(node.metadata.annotations.as_ref().expect("annotations")[ANNOTATION_PROVIDED_NODE_IP], "10.0.0.5");
        // With --node-ip the kubelet sets addresses until the cloud provider has set its own.
        set_node_status(&mut node, &given, &machine(), &h, &t(1));
        let addrs = node.status.as_ref().and_then(|s| s.addresses.clone()).expect("addresses");
        assert_eq!(addrs[0].address, "10.0.0.5");
        let cloud = vec![NodeAddress { type_: "ExternalIP".into(), address: "203.0.113.7".into() }];
        node.status.as_mut().expect("status").addresses = Some(cloud.clone());
        set_node_status(&mut node, &given, &machine(), &h, &t(2));
        assert_eq!(node.status.as_ref().and_then(|s| s.addresses.clone()), Some(cloud), "cloud addresses win");

        // Without --node-ip, addresses are the cloud provider's to set, and no annotation.
        let detected = NodeSettings { external_cloud_provider: true, ..settings() };
        let mut node = initial_node(&detected);
        assert!(!node.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(ANNOTATION_PROVIDED_NODE_IP)));
        set_node_status(&mut node, &detected, &machine(), &h, &t(1));
        assert_eq!(node.status.as_ref().and_then(|s| s.addresses.clone()), None);

        // Register taints stay, the uninitialized one is added.
        let t0 = Taint { key: "dedicated".into(), effect: "NoExecute".into(), ..Default::default() };
        let both = NodeSettings { taints: vec![t0], ..given };
        let keys: Vec<String> =
            initial_node(&both).spec.and_then(|s| s.taints).expect("taints").into_iter().map(|t| t.key).collect();
        assert_eq!(keys, ["dedicated", TAINT_UNINITIALIZED]);
    }

    #[test]
    fn status_has_capacity_allocatable_addresses_and_info() {
        let mut node = initial_node(&settings());
        let h = NodeHealth {
            runtime_version: "containerd://1.6.20".into(),
            ephemeral_storage: Some(1000 << 20),
            ..Default::default()
        };
        // The default hard eviction (100Mi, 10%) and 250m/1Gi/1Mi reserved.
        let reservation = AllocatableReservation {
            cpu_millis: 250,
            memory: (1 << 30) + (100 << 20),
            ephemeral_storage: 1 << 20,
            ephemeral_fraction: 0.1,
        };
        set_node_status(&mut node, &NodeSettings { reservation, ..settings() }, &machine(), &h, &t(100));
        let st = node.status.expect("status");
        let cap = st.capacity.expect("capacity");
        let alloc = st.allocatable.expect("allocatable");
        assert_eq!((cap["cpu"].0.as_str(), alloc["cpu"].0.as_str()), ("2", "1750m"));
        assert_eq!(cap["memory"].0, "4Gi");
        assert_eq!(cap["pods"].0, "110");
        assert_eq!(cap["hugepages-2Mi"].0, "0");
        assert_eq!(cap["ephemeral-storage"].0, "1000Mi");
        assert_eq!(alloc["memory"].0, "2972Mi", "capacity minus 1Gi reserved and the 100Mi hard eviction threshold");
        assert_eq!(alloc["ephemeral-storage"].0, "899Mi", "minus 1Mi reserved and 10% of 1000Mi");
        // Nothing reserved: allocatable is capacity; a reservation beyond it is clamped at 0.
        let mut bare = Node::default();
        set_node_status(&mut bare, &settings(), &machine(), &h, &t(100));
        assert_eq!(bare.status.and_then(|s| s.allocatable).expect("allocatable")["memory"].0, "4Gi");
        let huge = AllocatableReservation { cpu_millis: 5000, memory: 8 << 30, ..Default::default() };
        let mut over = Node::default();
        set_node_status(&mut over, &NodeSettings { reservation: huge, ..settings() }, &machine(), &h, &t(100));
        let over = over.status.and_then(|s| s.allocatable).expect("allocatable");
        assert_eq!((over["cpu"].0.as_str(), over["memory"].0.as_str()), ("0", "0"));
        let addrs = st.addresses.expect("addresses");
        assert_eq!((addrs[0].type_.as_str(), addrs[0].address.as_str()), ("InternalIP", "10.0.0.5"));
        assert_eq!((addrs[1].type_.as_str(), addrs[1].address.as_str()), ("Hostname", "n1"));
        let info = st.node_info.expect("info");
        assert_eq!(info.container_runtime_version, "containerd://1.6.20");
        assert_eq!(info.operating_system, "linux");
        assert!(info.kubelet_version.starts_with("v1."));
        assert_eq!(st.daemon_endpoints.and_then(|d| d.kubelet_endpoint).map(|e| e.port), Some(10250));
        let labels = node.metadata.labels.expect("labels");
        assert_eq!(labels[LABEL_HOSTNAME], "n1");
        assert_eq!(labels[LABEL_OS], "linux");
    }

    #[test]
    fn conditions_transition_with_upstream_reasons_and_events() {
        let mut node = initial_node(&settings());
        let ready = NodeHealth::default();
        let ev = set_node_status(&mut node, &settings(), &machine(), &ready, &t(100));
        let reasons: Vec<_> = ev.iter().map(|e| e.reason).collect();
        assert_eq!(reasons, ["NodeHasSufficientMemory", "NodeHasNoDiskPressure", "NodeHasSufficientPID", "NodeReady"]);
        let before = node.status.clone();
        // Same health later: only heartbeats move, which is not a change.
        assert!(set_node_status(&mut node, &settings(), &machine(), &ready, &t(110)).is_empty());
        assert!(!status_changed(before.as_ref(), node.status.as_ref()));

        let down = NodeHealth { not_ready: vec!["container runtime is down".into()], ..Default::default() };
        let ev = set_node_status(&mut node, &settings(), &machine(), &down, &t(120));
        assert_eq!(ev, [NodeEvent { warning: false, reason: "NodeNotReady" }]);
        let conds = node.status.as_ref().and_then(|s| s.conditions.clone()).expect("conditions");
        let r = conds.iter().find(|c| c.type_ == "Ready").expect("ready");
        assert_eq!((r.status.as_str(), r.reason.as_deref()), ("False", Some("KubeletNotReady")));
        assert_eq!(r.message.as_deref(), Some("container runtime is down"));
        assert_eq!(r.last_transition_time, Some(t(120)));
        let m = conds.iter().find(|c| c.type_ == "MemoryPressure").expect("memory");
        assert_eq!(m.last_transition_time, Some(t(100)), "unchanged conditions keep their transition time");
        assert!(status_changed(before.as_ref(), node.status.as_ref()));
    }

    #[test]
    fn pressure_conditions_follow_the_eviction_manager() {
        let mut node = initial_node(&settings());
        set_node_status(&mut node, &settings(), &machine(), &NodeHealth::default(), &t(100));
        let pressed =
            NodeHealth { pressure: vec!["MemoryPressure".into(), "PIDPressure".into()], ..Default::default() };
        let ev = set_node_status(&mut node, &settings(), &machine(), &pressed, &t(110));
        let reasons: Vec<_> = ev.iter().map(|e| e.reason).collect();
        assert_eq!(reasons, ["NodeHasInsufficientMemory", "NodeHasInsufficientPID"]);
        let conds = node.status.as_ref().and_then(|s| s.conditions.clone()).expect("conditions");
        let get = |t: &str| conds.iter().find(|c| c.type_ == t).cloned().expect("condition");
        let m = get("MemoryPressure");
        assert_eq!(
            (m.status.as_str(), m.reason.as_deref(), m.message.as_deref()),
            ("True", Some("KubeletHasInsufficientMemory"), Some("kubelet has insufficient memory available"))
        );
        assert_eq!(get("PIDPressure").reason.as_deref(), Some("KubeletHasInsufficientPID"));
        assert_eq!(get("DiskPressure").status, "False");
        let disk = NodeHealth { pressure: vec!["DiskPressure".into()], ..Default::default() };
        set_node_status(&mut node, &settings(), &machine(), &disk, &t(120));
        let conds = node.status.as_ref().and_then(|s| s.conditions.clone()).expect("conditions");
        let d = conds.iter().find(|c| c.type_ == "DiskPressure").expect("disk");
        assert_eq!((d.status.as_str(), d.reason.as_deref()), ("True", Some("KubeletHasDiskPressure")));
    }

    #[test]
    fn existing_node_gets_kubelet_labels_back() {
        let mut n = initial_node(&settings());
        n.metadata.labels.as_mut().expect("labels").insert(LABEL_OS.into(), "windows".into());
        n.metadata.labels.as_mut().expect("labels").insert("team".into(), "a".into());
        assert!(reconcile_existing(&mut n, &settings()));
        assert_eq!(n.metadata.labels.as_ref().expect("labels")[LABEL_OS], "linux");
        assert_eq!(n.metadata.labels.as_ref().expect("labels")["team"], "a", "other labels are left alone");
        assert!(!reconcile_existing(&mut n, &settings()));
    }
}
