//! Defaulting of pods read from manifest files, in upstream's order:
//!
//! 1. the API server's defaults for a v1 Pod (`pkg/apis/core/v1/defaults.go` and the generated
//!    `zz_generated.defaults.go`), which upstream applies while decoding the manifest;
//! 2. the kubelet's own `applyDefaults` (`pkg/kubelet/config/common.go`): UID from a hash of the
//!    pod, name suffixed with the node name, namespace, node name, config.hash annotation, the
//!    NoExecute toleration of static pods and phase Pending.
//!
//! `kubernetes.io/config.source` and `kubernetes.io/config.seen` are not set here: upstream sets
//! both in the pod config merger (`config.go`), see [`super::PodConfig`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, Pod, PodSecurityContext, PodSpec, Probe, Toleration, Volume,
};

use super::CONFIG_HASH_ANNOTATION;

/// `kubernetes.io/config.hash`-style UID of a file pod: upstream's FNV-128a over the pod as
/// decoded and API-defaulted, followed by `host:<nodeName>` and `file:<path>`.
///
/// Upstream feeds the pod to the hasher with `hash.DeepHashObject` (a go-spew dump); we feed
/// `serde_json::to_vec(pod)` instead, which is deterministic (k8s-openapi maps are BTreeMaps and
/// fields serialize in declaration order). The UIDs are therefore not byte-identical to the Go
/// kubelet's, but have the same inputs and properties: stable across restarts, and different
/// for another node name, another file path or any change of the manifest's content.
pub fn pod_uid(pod: &Pod, node_name: &str, source_path: &str) -> String {
    let mut hasher = Fnv128a::new();
    hasher.write(&serde_json::to_vec(pod).unwrap_or_default());
    // DeepHashObject resets the hasher, so upstream writes the source information after it.
    hasher.write(format!("host:{node_name}").as_bytes());
    hasher.write(format!("file:{source_path}").as_bytes());
    hex::encode(hasher.finish().to_be_bytes())
}

/// Applies the API server's defaults and then the kubelet's file-source defaults to a pod just
/// read from `source_path`. See the module documentation.
pub fn apply_defaults(pod: &mut Pod, node_name: &str, source_path: &str) {
    apply_api_defaults(pod);

    if pod.metadata.uid.as_deref().is_none_or(str::is_empty) {
        pod.metadata.uid = Some(pod_uid(pod, node_name, source_path));
    }
    let meta = &mut pod.metadata;
    let uid = meta.uid.clone().unwrap_or_default();
    // generatePodName: unique among nodes by appending the lowercased node name.
    let name = meta.name.as_deref().unwrap_or_default();
    meta.name = Some(format!("{name}-{}", node_name.to_lowercase()));
    if meta.namespace.as_deref().is_none_or(str::is_empty) {
        meta.namespace = Some("default".to_owned());
    }
    meta.annotations.get_or_insert_with(BTreeMap::new).insert(CONFIG_HASH_ANNOTATION.to_owned(), uid);

    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    spec.node_name = Some(node_name.to_owned());
    // Static pods tolerate every NoExecute taint so they are not evicted on node problems.
    add_or_update_toleration(
        spec.tolerations.get_or_insert_with(Vec::new),
        Toleration { operator: Some("Exists".to_owned()), effect: Some("NoExecute".to_owned()), ..Default::default() },
    );
    pod.status.get_or_insert_with(Default::default).phase = Some("Pending".to_owned());
}

/// `helper.AddOrUpdateTolerationInPod`: replaces a toleration matching on key, operator, value
/// and effect, or appends it.
fn add_or_update_toleration(tolerations: &mut Vec<Toleration>, new: Toleration) {
    let matches = |t: &Toleration| {
        t.key.as_deref().unwrap_or_default() == new.key.as_deref().unwrap_or_default()
            && t.operator.as_deref().unwrap_or("Equal") == new.operator.as_deref().unwrap_or("Equal")
            && t.value.as_deref().unwrap_or_default() == new.value.as_deref().unwrap_or_default()
            && t.effect.as_deref().unwrap_or_default() == new.effect.as_deref().unwrap_or_default()
    };
    match tolerations.iter_mut().find(|t| matches(t)) {
        Some(existing) => *existing = new,
        None => tolerations.push(new),
    }
}

/// The API server's defaults for a v1 Pod (`SetObjectDefaults_Pod`), for the fields the kubelet
/// acts on. Not applied: rounding of resource quantities to milli-units, pod-level resource
/// defaults (PodLevelResources feature) and defaults of in-tree cloud volume types.
pub fn apply_api_defaults(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(PodSpec::default);

    // Conversion: DeprecatedServiceAccount is an alias of ServiceAccountName.
    if spec.service_account_name.as_deref().is_none_or(str::is_empty) {
        spec.service_account_name = spec.service_account.clone().filter(|s| !s.is_empty());
    }
    if let Some(sa) = spec.service_account_name.clone() {
        spec.service_account = Some(sa);
    }

    // SetDefaults_Pod.
    let host_network = spec.host_network.unwrap_or(false);
    for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
        // Requests default to limits when only limits are given.
        if let Some(resources) = &mut c.resources
            && let Some(limits) = &resources.limits
        {
            let requests = resources.requests.get_or_insert_with(BTreeMap::new);
            for (name, quantity) in limits {
                requests.entry(name.clone()).or_insert_with(|| quantity.clone());
            }
        }
        // With host networking, host ports default to the container ports.
        if host_network {
            for p in c.ports.iter_mut().flatten() {
                if p.host_port.unwrap_or(0) == 0 {
                    p.host_port = Some(p.container_port);
                }
            }
        }
    }
    spec.enable_service_links.get_or_insert(true);

    // SetDefaults_PodSpec.
    set_if_empty(&mut spec.dns_policy, "ClusterFirst");
    set_if_empty(&mut spec.restart_policy, "Always");
    spec.security_context.get_or_insert_with(PodSecurityContext::default);
    spec.termination_grace_period_seconds.get_or_insert(30);
    set_if_empty(&mut spec.scheduler_name, "default-scheduler");

    for v in spec.volumes.iter_mut().flatten() {
        default_volume(v);
    }
    for c in spec.init_containers.iter_mut().flatten().chain(spec.containers.iter_mut()) {
        default_container(c);
    }
}

fn set_if_empty(field: &mut Option<String>, value: &str) {
    if field.as_deref().is_none_or(str::is_empty) {
        *field = Some(value.to_owned());
    }
}

/// `SetDefaults_Container` plus the generated per-field defaults of a container.
fn default_container(c: &mut Container) {
    if c.image_pull_policy.as_deref().is_none_or(str::is_empty) {
        let image = c.image.as_deref().unwrap_or_default();
        c.image_pull_policy = Some(default_pull_policy(image).to_owned());
    }
    set_if_empty(&mut c.termination_message_path, "/dev/termination-log");
    set_if_empty(&mut c.termination_message_policy, "File");
    for p in c.ports.iter_mut().flatten() {
        set_if_empty(&mut p.protocol, "TCP");
    }
    for e in c.env.iter_mut().flatten() {
        if let Some(field_ref) = e.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            set_if_empty(&mut field_ref.api_version, "v1");
        }
    }
    for probe in [&mut c.liveness_probe, &mut c.readiness_probe, &mut c.startup_probe].into_iter().flatten() {
        default_probe(probe);
    }
    if let Some(lifecycle) = &mut c.lifecycle {
        for handler in [&mut lifecycle.post_start, &mut lifecycle.pre_stop].into_iter().flatten() {
            if let Some(http) = &mut handler.http_get {
                default_http_get(http);
            }
        }
    }
}

fn default_probe(p: &mut Probe) {
    for (field, default) in [
        (&mut p.timeout_seconds, 1),
        (&mut p.period_seconds, 10),
        (&mut p.success_threshold, 1),
        (&mut p.failure_threshold, 3),
    ] {
        if field.unwrap_or(0) == 0 {
            *field = Some(default);
        }
    }
    if let Some(http) = &mut p.http_get {
        default_http_get(http);
    }
    if let Some(grpc) = &mut p.grpc {
        grpc.service.get_or_insert_with(String::new);
    }
}

fn default_http_get(h: &mut HTTPGetAction) {
    set_if_empty(&mut h.path, "/");
    set_if_empty(&mut h.scheme, "HTTP");
}

/// `SetDefaults_Volume` and the defaults of the volume sources.
fn default_volume(v: &mut Volume) {
    const DEFAULT_MODE: i32 = 0o644;
    if !has_volume_source(v) {
        v.empty_dir = Some(Default::default());
    }
    if let Some(host_path) = &mut v.host_path {
        // HostPathUnset.
        host_path.type_.get_or_insert_with(String::new);
    }
    if let Some(secret) = &mut v.secret {
        secret.default_mode.get_or_insert(DEFAULT_MODE);
    }
    if let Some(config_map) = &mut v.config_map {
        config_map.default_mode.get_or_insert(DEFAULT_MODE);
    }
    if let Some(downward) = &mut v.downward_api {
        downward.default_mode.get_or_insert(DEFAULT_MODE);
        for item in downward.items.iter_mut().flatten() {
            if let Some(field_ref) = &mut item.field_ref {
                set_if_empty(&mut field_ref.api_version, "v1");
            }
        }
    }
    if let Some(projected) = &mut v.projected {
        projected.default_mode.get_or_insert(DEFAULT_MODE);
        for source in projected.sources.iter_mut().flatten() {
            if let Some(downward) = &mut source.downward_api {
                for item in downward.items.iter_mut().flatten() {
                    if let Some(field_ref) = &mut item.field_ref {
                        set_if_empty(&mut field_ref.api_version, "v1");
                    }
                }
            }
            if let Some(token) = &mut source.service_account_token {
                token.expiration_seconds.get_or_insert(3600);
            }
        }
    }
    if let Some(iscsi) = &mut v.iscsi {
        set_if_empty(&mut iscsi.iscsi_interface, "default");
    }
    if let Some(rbd) = &mut v.rbd {
        set_if_empty(&mut rbd.pool, "rbd");
        set_if_empty(&mut rbd.user, "admin");
        set_if_empty(&mut rbd.keyring, "/etc/ceph/keyring");
    }
    if let Some(template) = v.ephemeral.as_mut().and_then(|e| e.volume_claim_template.as_mut()) {
        set_if_empty(&mut template.spec.volume_mode, "Filesystem");
    }
    if let Some(image) = &mut v.image
        && image.pull_policy.as_deref().is_none_or(str::is_empty)
    {
        // Image volumes: Always only for an explicit or implied :latest tag.
        let reference = image.reference.as_deref().unwrap_or_default();
        image.pull_policy = Some(default_pull_policy(reference).to_owned());
    }
}

/// Whether any volume source is set (`ptr.AllPtrFieldsNil(&obj.VolumeSource)` negated).
pub(crate) fn has_volume_source(v: &Volume) -> bool {
    volume_source_names(v).next().is_some()
}

/// The names (as in the API) of the volume sources set on a volume.
pub(crate) fn volume_source_names(v: &Volume) -> impl Iterator<Item = &'static str> {
    // Upstream's order in validateVolumeSource: the first one set is "the" source.
    [
        ("emptyDir", v.empty_dir.is_some()),
        ("hostPath", v.host_path.is_some()),
        ("gitRepo", v.git_repo.is_some()),
        ("gcePersistentDisk", v.gce_persistent_disk.is_some()),
        ("awsElasticBlockStore", v.aws_elastic_block_store.is_some()),
        ("secret", v.secret.is_some()),
        ("nfs", v.nfs.is_some()),
        ("iscsi", v.iscsi.is_some()),
        ("glusterfs", v.glusterfs.is_some()),
        ("flocker", v.flocker.is_some()),
        ("persistentVolumeClaim", v.persistent_volume_claim.is_some()),
        ("rbd", v.rbd.is_some()),
        ("cinder", v.cinder.is_some()),
        ("cephfs", v.cephfs.is_some()),
        ("quobyte", v.quobyte.is_some()),
        ("downwardAPI", v.downward_api.is_some()),
        ("fc", v.fc.is_some()),
        ("flexVolume", v.flex_volume.is_some()),
        ("configMap", v.config_map.is_some()),
        ("azureFile", v.azure_file.is_some()),
        ("vsphereVolume", v.vsphere_volume.is_some()),
        ("photonPersistentDisk", v.photon_persistent_disk.is_some()),
        ("portworxVolume", v.portworx_volume.is_some()),
        ("azureDisk", v.azure_disk.is_some()),
        ("storageos", v.storageos.is_some()),
        ("projected", v.projected.is_some()),
        ("scaleIO", v.scale_io.is_some()),
        ("csi", v.csi.is_some()),
        ("ephemeral", v.ephemeral.is_some()),
        ("image", v.image.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
}

/// Upstream's default image pull policy: `Always` when the tag reported by
/// `parsers.ParseImageName` is "latest" (which it is when the reference has neither a tag nor a
/// digest), `IfNotPresent` otherwise, including for references that do not parse.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image_tag(image) == Some("latest") { "Always" } else { "IfNotPresent" }
}

/// The tag of an image reference as `parsers.ParseImageName` reports it: the explicit tag,
/// "latest" if there is neither tag nor digest, `None` for a digest-only or invalid reference.
fn image_tag(image: &str) -> Option<&str> {
    let (name_and_tag, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if digest.is_some_and(|d| !valid_digest(d)) {
        return None;
    }
    let last_slash = name_and_tag.rfind('/');
    let (name, tag) = match name_and_tag.rfind(':') {
        // A colon before the last '/' is a registry port, not a tag.
        Some(i) if last_slash.is_none_or(|s| i > s) => (name_and_tag.get(..i)?, Some(name_and_tag.get(i + 1..)?)),
        _ => (name_and_tag, None),
    };
    if !valid_repository(name) || tag.is_some_and(|t| !valid_tag(t)) {
        return None;
    }
    match (tag, digest) {
        (Some(t), _) => Some(t),
        (None, None) => Some("latest"),
        (None, Some(_)) => None,
    }
}

fn valid_repository(name: &str) -> bool {
    let mut components: &[&str] = &name.split('/').collect::<Vec<_>>();
    // The first component is a registry host if it looks like one (docker's normalization).
    if let [host, rest @ ..] = components
        && !rest.is_empty()
        && (host.contains('.')
            || host.contains(':')
            || *host == "localhost"
            || host.chars().any(|c| c.is_ascii_uppercase()))
    {
        let host = *host;
        components = rest;
        let (host_name, port) = match host.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        };
        let host_ok =
            !host_name.is_empty() && host_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        let port_ok = port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        if !host_ok || !port_ok {
            return false;
        }
    }
    !components.is_empty()
        && components.iter().all(|c| {
            let bytes = c.as_bytes();
            !c.is_empty()
                && c.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-'))
                && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
                && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        })
}

fn valid_tag(tag: &str) -> bool {
    (1..=128).contains(&tag.len())
        && tag.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn valid_digest(digest: &str) -> bool {
    digest.split_once(':').is_some_and(|(algorithm, hex)| {
        !algorithm.is_empty()
            && algorithm.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '_' | '-'))
            && hex.len() >= 32
            && hex.chars().all(|c| c.is_ascii_hexdigit())
    })
}

/// 128-bit FNV-1a, as Go's `hash/fnv.New128a` (upstream's pod UID hash).
struct Fnv128a(u128);

impl Fnv128a {
    const OFFSET_BASIS: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

    fn new() -> Self {
        Self(Self::OFFSET_BASIS)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u128::from(*b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn finish(&self) -> u128 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).unwrap()
    }

    const NGINX: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: nginx
    image: nginx:1.27
    ports:
    - containerPort: 80
    livenessProbe:
      httpGet:
        port: 80
  volumes:
  - name: scratch
  - name: config
    hostPath:
      path: /etc/web
"#;

    #[test]
    fn fnv128a_matches_go() {
        // Go: fmt.Printf("%x", fnv.New128a().Sum(nil)) and with "a" written.
        assert_eq!(hex::encode(Fnv128a::new().finish().to_be_bytes()), "6c62272e07bb014262b821756295c58d");
        let mut h = Fnv128a::new();
        h.write(b"a");
        assert_eq!(hex::encode(h.finish().to_be_bytes()), "d228cb696f1a8caf78912b704e4a8964");
    }

    #[test]
    fn image_pull_policy_follows_the_tag_rule() {
        for (image, policy) in [
            ("busybox", "Always"),
            ("busybox:latest", "Always"),
            ("busybox:1.36", "IfNotPresent"),
            ("docker.io/library/busybox", "Always"),
            ("registry.k8s.io/pause:3.10", "IfNotPresent"),
            ("127.0.0.1:5000/busybox", "Always"),
            ("127.0.0.1:5000/busybox:1.36", "IfNotPresent"),
            ("localhost:5000/team/app:latest", "Always"),
            ("busybox@sha256:7b3ccabffc97de872a30dfd234fd972a66d247c8cfc69b0550f276481852627c", "IfNotPresent"),
            ("busybox:latest@sha256:7b3ccabffc97de872a30dfd234fd972a66d247c8cfc69b0550f276481852627c", "Always"),
            ("Invalid/UPPER", "IfNotPresent"),
            ("", "IfNotPresent"),
        ] {
            assert_eq!(default_pull_policy(image), policy, "{image}");
        }
    }

    #[test]
    fn api_defaults_fill_the_spec() {
        let mut p = pod(NGINX);
        apply_api_defaults(&mut p);
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(spec.enable_service_links, Some(true));
        assert!(spec.security_context.is_some());
        let c = &spec.containers[0];
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(c.termination_message_path.as_deref(), Some("/dev/termination-log"));
        assert_eq!(c.termination_message_policy.as_deref(), Some("File"));
        assert_eq!(c.ports.as_ref().unwrap()[0].protocol.as_deref(), Some("TCP"));
        assert_eq!(c.ports.as_ref().unwrap()[0].host_port, None);
        let probe = c.liveness_probe.as_ref().unwrap();
        assert_eq!(
            (probe.timeout_seconds, probe.period_seconds, probe.success_threshold, probe.failure_threshold),
            (Some(1), Some(10), Some(1), Some(3))
        );
        let http = probe.http_get.as_ref().unwrap();
        assert_eq!((http.path.as_deref(), http.scheme.as_deref()), (Some("/"), Some("HTTP")));
        let volumes = spec.volumes.as_ref().unwrap();
        assert_eq!(volumes[0].empty_dir, Some(Default::default()));
        assert_eq!(volumes[1].empty_dir, None);
        assert_eq!(volumes[1].host_path.as_ref().unwrap().type_.as_deref(), Some(""));
    }

    #[test]
    fn host_network_defaults_host_ports_and_limits_become_requests() {
        let mut p = pod(r#"
metadata: {name: x}
spec:
  hostNetwork: true
  containers:
  - name: c
    image: busybox
    ports: [{containerPort: 8080}, {containerPort: 9090, hostPort: 9091}]
    resources:
      limits: {cpu: 500m, memory: 128Mi}
      requests: {cpu: 100m}
  volumes:
  - {name: s, secret: {secretName: s}}
  - {name: cm, configMap: {name: cm, defaultMode: 256}}
"#);
        apply_api_defaults(&mut p);
        let spec = p.spec.as_ref().unwrap();
        let c = &spec.containers[0];
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
        let ports = c.ports.as_ref().unwrap();
        assert_eq!((ports[0].host_port, ports[1].host_port), (Some(8080), Some(9091)));
        let requests = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(requests["cpu"].0, "100m");
        assert_eq!(requests["memory"].0, "128Mi");
        let volumes = spec.volumes.as_ref().unwrap();
        assert_eq!(volumes[0].secret.as_ref().unwrap().default_mode, Some(0o644));
        assert_eq!(volumes[1].config_map.as_ref().unwrap().default_mode, Some(0o400));
    }

    #[test]
    fn kubelet_defaults_name_namespace_annotations_toleration_phase() {
        let mut p = pod(NGINX);
        apply_defaults(&mut p, "Node-A", "/etc/kubernetes/manifests/web.yaml");
        let meta = &p.metadata;
        assert_eq!(meta.name.as_deref(), Some("web-node-a"));
        assert_eq!(meta.namespace.as_deref(), Some("default"));
        let uid = meta.uid.clone().unwrap();
        assert_eq!(uid.len(), 32);
        assert_eq!(meta.annotations.as_ref().unwrap()[CONFIG_HASH_ANNOTATION], uid);
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("Node-A"));
        assert_eq!(
            spec.tolerations.as_deref(),
            Some(
                &[Toleration {
                    operator: Some("Exists".into()),
                    effect: Some("NoExecute".into()),
                    ..Default::default()
                }][..]
            )
        );
        assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Pending"));

        // Applying again keeps the toleration unique; an explicit UID is kept.
        let mut q = pod(NGINX);
        q.metadata.uid = Some("fixed".into());
        q.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(5),
            ..Default::default()
        }]);
        apply_defaults(&mut q, "n", "/f");
        assert_eq!(q.metadata.uid.as_deref(), Some("fixed"));
        let tolerations = q.spec.as_ref().unwrap().tolerations.as_ref().unwrap();
        assert_eq!(tolerations.len(), 1);
        assert_eq!(tolerations[0].toleration_seconds, None);
    }

    #[test]
    fn uid_is_deterministic_and_depends_on_node_path_and_content() {
        let uid = |yaml: &str, node: &str, path: &str| {
            let mut p = pod(yaml);
            apply_defaults(&mut p, node, path);
            p.metadata.uid.unwrap()
        };
        let base = uid(NGINX, "node-a", "/m/web.yaml");
        assert_eq!(base, uid(NGINX, "node-a", "/m/web.yaml"));
        assert_ne!(base, uid(NGINX, "node-b", "/m/web.yaml"));
        assert_ne!(base, uid(NGINX, "node-a", "/m/web2.yaml"));
        assert_ne!(base, uid(&NGINX.replace("nginx:1.27", "nginx:1.28"), "node-a", "/m/web.yaml"));
        // Spelling out a default does not change the defaulted pod, hence not the UID.
        let explicit =
            NGINX.replace("    image: nginx:1.27", "    image: nginx:1.27\n    imagePullPolicy: IfNotPresent");
        assert_eq!(base, uid(&explicit, "node-a", "/m/web.yaml"));
    }
}
