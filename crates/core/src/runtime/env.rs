//! A container's environment (upstream `makeEnvironmentVariables`): `env` with `$(VAR)`
//! expansion, `valueFrom` configMap/secret keys, downward API fields and resources, `envFrom`,
//! and service link variables; the objects they need are read through an [`ObjectGetter`].

use std::collections::{BTreeMap, HashMap};

use ::api::objects::ObjectGetter;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, EnvVarSource, Pod, Secret, Service};

use crate::source::is_static_pod;
use crate::volume::fieldpath::{
    NodeAllocatable, container_resource_value, extract_field_path, resource_value_by_container_name,
};

/// What env `fieldRef`s and `resourceFieldRef`s resolve against that is not in the spec.
#[derive(Debug, Clone, Default)]
pub struct EnvContext {
    pub pod_ips: Vec<String>,
    pub host_ips: Vec<String>,
    pub node_name: String,
    /// For `limits.*` of a container without that limit (empty: such a reference reads 0).
    pub node_allocatable: NodeAllocatable,
}

/// A container config that cannot be made (upstream `CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The API objects a container's env refers to, read by [`fetch_env_objects`] before
/// [`make_env`] so that it stays pure.
#[derive(Debug, Clone, Default)]
pub struct EnvObjects {
    /// Whether an API server is configured. Without one, references to configMaps and secrets
    /// fail as upstream's do without a client, and there are no service links.
    pub connected: bool,
    /// By name, in the pod's namespace; `None`: it does not exist.
    pub config_maps: BTreeMap<String, Option<ConfigMap>>,
    pub secrets: BTreeMap<String, Option<Secret>>,
    /// The services of `default` and, with service links enabled, of the pod's namespace.
    pub services: Vec<Service>,
}

fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

fn service_links_enabled(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true)
}

/// Reads every configMap and secret `c`'s `env` and `envFrom` name, and the services for
/// service links. A missing object is recorded as `None` (`make_env` decides, honouring
/// `optional`); any other failure is the container's config error. Without `objects`
/// (standalone) nothing is read.
pub async fn fetch_env_objects(
    objects: Option<&dyn ObjectGetter>,
    pod: &Pod,
    c: &Container,
) -> Result<EnvObjects, ConfigError> {
    let Some(objects) = objects else { return Ok(EnvObjects::default()) };
    let ns = namespace(pod);
    let mut out = EnvObjects { connected: true, ..Default::default() };
    let from = c.env_from.iter().flatten();
    let sources = c.env.iter().flatten().filter_map(|e| e.value_from.as_ref());
    let config_maps = from
        .clone()
        .filter_map(|f| f.config_map_ref.as_ref().map(|r| &r.name))
        .chain(sources.clone().filter_map(|s| s.config_map_key_ref.as_ref().map(|r| &r.name)));
    for name in config_maps {
        if !out.config_maps.contains_key(name) {
            let cm = objects.config_map(ns, name).await.map_err(|e| ConfigError(e.to_string()))?;
            out.config_maps.insert(name.clone(), cm);
        }
    }
    let secrets = from
        .filter_map(|f| f.secret_ref.as_ref().map(|r| &r.name))
        .chain(sources.filter_map(|s| s.secret_key_ref.as_ref().map(|r| &r.name)));
    for name in secrets {
        if !out.secrets.contains_key(name) {
            let s = objects.secret(ns, name).await.map_err(|e| ConfigError(e.to_string()))?;
            out.secrets.insert(name.clone(), s);
        }
    }
    let mut namespaces = vec![MASTER_SERVICE_NAMESPACE];
    if service_links_enabled(pod) && ns != MASTER_SERVICE_NAMESPACE {
        namespaces.push(ns);
    }
    for namespace in namespaces {
        match objects.services(namespace).await {
            Ok(services) => out.services.extend(services),
            // Static pods do not wait for the API server (upstream reads its service cache,
            // empty until the first list, and only holds API pods back until then): a static
            // pod on a node whose API server is away or that has no credentials yet starts
            // without service variables.
            Err(e) if is_static_pod(pod) => {
                tracing::warn!(pod = %crate::events::pod_key(pod), "static pod starts without service env vars: {e}");
            }
            Err(e) => {
                tracing::warn!(pod = %crate::events::pod_key(pod), "listing services for env: {e}");
                return Err(ConfigError("failed to list services when setting up env vars".into()));
            }
        }
    }
    Ok(out)
}

/// The namespace and names of the services every pod gets variables for (upstream
/// `masterServices`).
const MASTER_SERVICE_NAMESPACE: &str = "default";
const MASTER_SERVICES: &[&str] = &["kubernetes"];

/// Upstream `getServiceEnvVarMap` + `envvars.FromServices`: the `kubernetes` service of
/// `default` always, and with service links every service of `namespace` (which wins over a
/// master service of the same name); only services with a cluster IP. Ordered by service name.
pub fn service_env(services: &[Service], namespace: &str, enable_links: bool) -> Vec<(String, String)> {
    fn ip(s: &Service) -> Option<&str> {
        s.spec.as_ref().and_then(|sp| sp.cluster_ip.as_deref()).filter(|ip| !ip.is_empty() && *ip != "None")
    }
    fn ns_of(s: &Service) -> &str {
        s.metadata.namespace.as_deref().unwrap_or("default")
    }
    fn name_of(s: &Service) -> &str {
        s.metadata.name.as_deref().unwrap_or_default()
    }
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for s in services.iter().filter(|s| ip(s).is_some()) {
        if ns_of(s) == MASTER_SERVICE_NAMESPACE && MASTER_SERVICES.contains(&name_of(s)) {
            chosen.entry(name_of(s)).or_insert(s);
        }
    }
    for s in services.iter().filter(|s| ip(s).is_some()) {
        if enable_links && ns_of(s) == namespace {
            chosen.insert(name_of(s), s);
        }
    }
    let mut out = Vec::new();
    for (name, s) in chosen {
        let (Some(ip), Some(spec)) = (ip(s), s.spec.as_ref()) else { continue };
        let ports = spec.ports.as_deref().unwrap_or_default();
        let prefix = env_var_name(name);
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        if let Some(first) = ports.first() {
            out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        }
        for p in ports {
            if let Some(port_name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((format!("{prefix}_SERVICE_PORT_{}", env_var_name(port_name)), p.port.to_string()));
            }
        }
        // Docker link variables.
        for (i, p) in ports.iter().enumerate() {
            let protocol = p.protocol.as_deref().filter(|p| !p.is_empty()).unwrap_or("TCP");
            let (lower, upper) = (protocol.to_ascii_lowercase(), protocol.to_ascii_uppercase());
            let host_port = if ip.contains(':') { format!("[{ip}]:{}", p.port) } else { format!("{ip}:{}", p.port) };
            let url = format!("{lower}://{host_port}");
            if i == 0 {
                out.push((format!("{prefix}_PORT"), url.clone()));
            }
            let port_prefix = format!("{prefix}_PORT_{}_{upper}", p.port);
            out.push((port_prefix.clone(), url));
            out.push((format!("{port_prefix}_PROTO"), lower));
            out.push((format!("{port_prefix}_PORT"), p.port.to_string()));
            out.push((format!("{port_prefix}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// Upstream `makeEnvVariableName`.
fn env_var_name(s: &str) -> String {
    s.replace('-', "_").to_ascii_uppercase()
}

/// Resolves `fieldRef` paths the kubelet supports (upstream `podFieldSelectorRuntimeValue`).
fn field_value(pod: &Pod, path: &str, ctx: &EnvContext) -> Result<String, ConfigError> {
    let v = match path {
        "spec.nodeName" => ctx.node_name.clone(),
        "spec.serviceAccountName" => pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.podIP" => ctx.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => ctx.pod_ips.join(","),
        "status.hostIP" => ctx.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => ctx.host_ips.join(","),
        _ => extract_field_path(pod, path).map_err(|e| ConfigError(e.to_string()))?,
    };
    Ok(v)
}

/// A container's environment variables, set in place so a later definition of a name replaces
/// the value but keeps the position.
#[derive(Default)]
struct Env(Vec<(String, String)>);

impl Env {
    fn set(&mut self, name: String, value: String) {
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(e) => e.1 = value,
            None => self.0.push((name, value)),
        }
    }
    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

/// A prefetched object: `Ok(None)` when it does not exist, an error when it was not read.
fn lookup<'a, T>(
    fetched: &'a BTreeMap<String, Option<T>>,
    connected: bool,
    kind: &str,
    ns: &str,
    name: &str,
) -> Result<Option<&'a T>, ConfigError> {
    match fetched.get(name) {
        Some(o) => Ok(o.as_ref()),
        None if !connected => Err(ConfigError(format!("couldn't get {kind} {ns}/{name}, no kubeClient defined"))),
        None => Err(ConfigError(format!("{kind} {ns}/{name} was not read before making the environment"))),
    }
}

/// The container's environment (upstream `makeEnvironmentVariables`): `envFrom` first (with
/// prefixes; later sources win), then `env` in spec order (values `$(VAR)`-expanded against the
/// variables so far, then the service variables; `valueFrom` resolved), then the service link
/// variables not already defined. A missing configMap, secret or key is an error unless marked
/// optional, in which case the variable (or the whole source) is skipped.
pub fn make_env(
    pod: &Pod,
    c: &Container,
    ctx: &EnvContext,
    objects: &EnvObjects,
) -> Result<Vec<(String, String)>, ConfigError> {
    let ns = namespace(pod);
    let service_env = service_env(&objects.services, ns, service_links_enabled(pod));
    let mut env = Env::default();
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match lookup(&objects.config_maps, objects.connected, "configMap", ns, &r.name)? {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        env.set(format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(ConfigError(format!("configmap {:?} not found", r.name))),
            }
        } else if let Some(r) = &from.secret_ref {
            match lookup(&objects.secrets, objects.connected, "secret", ns, &r.name)? {
                Some(s) => {
                    for (k, v) in s.data.iter().flatten() {
                        env.set(format!("{prefix}{k}"), String::from_utf8_lossy(&v.0).into_owned());
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(ConfigError(format!("secret {:?} not found", r.name))),
            }
        }
    }
    for EnvVar { name, value, value_from } in c.env.iter().flatten() {
        let v = match (value.as_deref().filter(|v| !v.is_empty()), value_from) {
            (Some(v), _) => {
                let mut lookup: HashMap<&str, &str> =
                    service_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                lookup.extend(env.0.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                expand(v, &lookup)
            }
            (None, Some(from)) => match value_from_source(pod, c, ctx, objects, ns, from)? {
                Some(v) => v,
                None => continue,
            },
            (None, None) => String::new(),
        };
        env.set(name.clone(), v);
    }
    for (k, v) in service_env {
        if !env.has(&k) {
            env.0.push((k, v));
        }
    }
    Ok(env.0)
}

/// One `valueFrom`; `None` when an optional reference is missing (the variable is skipped).
fn value_from_source(
    pod: &Pod,
    c: &Container,
    ctx: &EnvContext,
    objects: &EnvObjects,
    ns: &str,
    from: &EnvVarSource,
) -> Result<Option<String>, ConfigError> {
    if let Some(f) = &from.field_ref {
        return field_value(pod, &f.field_path, ctx).map(Some);
    }
    if let Some(r) = &from.resource_field_ref {
        let allocatable = &ctx.node_allocatable;
        let v = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
            None => container_resource_value(r, c, allocatable),
            Some(name) => resource_value_by_container_name(r, pod, name, allocatable),
        };
        return v.map(Some).map_err(|e| ConfigError(e.to_string()));
    }
    if let Some(r) = &from.config_map_key_ref {
        let optional = r.optional == Some(true);
        return match lookup(&objects.config_maps, objects.connected, "configMap", ns, &r.name)? {
            Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                Some(v) => Ok(Some(v.clone())),
                None if optional => Ok(None),
                None => Err(ConfigError(format!("couldn't find key {} in ConfigMap {ns}/{}", r.key, r.name))),
            },
            None if optional => Ok(None),
            None => Err(ConfigError(format!("configmap {:?} not found", r.name))),
        };
    }
    if let Some(r) = &from.secret_key_ref {
        let optional = r.optional == Some(true);
        return match lookup(&objects.secrets, objects.connected, "secret", ns, &r.name)? {
            Some(s) => match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                Some(v) => Ok(Some(String::from_utf8_lossy(&v.0).into_owned())),
                None if optional => Ok(None),
                None => Err(ConfigError(format!("couldn't find key {} in Secret {ns}/{}", r.key, r.name))),
            },
            None if optional => Ok(None),
            None => Err(ConfigError(format!("secret {:?} not found", r.name))),
        };
    }
    Err(ConfigError("unsupported valueFrom: only fieldRef, resourceFieldRef, configMapKeyRef and secretKeyRef".into()))
}

/// Kubernetes `$(VAR)` expansion: defined names are replaced, `$$` escapes `$`, undefined
/// references are left as written.
pub fn expand(input: &str, env: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::runtime::container_config::generate_container_config;
    use ::api::objects::FakeObjects;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, ObjectFieldSelector, PodSpec, ResourceFieldSelector,
        ResourceRequirements, SecretEnvSource, SecretKeySelector, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn env(name: &str, value: &str) -> EnvVar {
        EnvVar { name: name.into(), value: Some(value.into()), value_from: None }
    }
    fn from(name: &str, source: EnvVarSource) -> EnvVar {
        EnvVar { name: name.into(), value: None, value_from: Some(source) }
    }
    fn field(name: &str, path: &str) -> EnvVar {
        let field_ref = Some(ObjectFieldSelector { field_path: path.into(), api_version: None });
        from(name, EnvVarSource { field_ref, ..Default::default() })
    }
    fn cm_key(name: &str, cm: &str, key: &str, optional: bool) -> EnvVar {
        let r = ConfigMapKeySelector { name: cm.into(), key: key.into(), optional: Some(optional) };
        from(name, EnvVarSource { config_map_key_ref: Some(r), ..Default::default() })
    }
    fn secret_key(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
        let r = SecretKeySelector { name: secret.into(), key: key.into(), optional: Some(optional) };
        from(name, EnvVarSource { secret_key_ref: Some(r), ..Default::default() })
    }
    fn meta(ns: &str, name: &str) -> ObjectMeta {
        ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() }
    }
    fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
        let data = data.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect();
        ConfigMap { metadata: meta("ns", name), data: Some(data), ..Default::default() }
    }
    fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
        let data = data.iter().map(|(k, v)| ((*k).to_string(), ByteString(v.as_bytes().to_vec()))).collect();
        Secret { metadata: meta("ns", name), data: Some(data), ..Default::default() }
    }
    fn service(ns: &str, name: &str, ip: &str, ports: &[(Option<&str>, i32, Option<&str>)]) -> Service {
        let ports = ports
            .iter()
            .map(|(n, port, proto)| ServicePort {
                name: n.map(Into::into),
                port: *port,
                protocol: proto.map(Into::into),
                ..Default::default()
            })
            .collect();
        let spec = ServiceSpec { cluster_ip: Some(ip.into()), ports: Some(ports), ..Default::default() };
        Service { metadata: meta(ns, name), spec: Some(spec), ..Default::default() }
    }
    fn objects(cms: Vec<ConfigMap>, secrets: Vec<Secret>, services: Vec<Service>) -> EnvObjects {
        let name = |m: &ObjectMeta| m.name.clone().unwrap_or_default();
        EnvObjects {
            connected: true,
            config_maps: cms.into_iter().map(|c| (name(&c.metadata), Some(c))).collect(),
            secrets: secrets.into_iter().map(|s| (name(&s.metadata), Some(s))).collect(),
            services,
        }
    }
    fn container(env: Vec<EnvVar>) -> Container {
        Container { name: "a".into(), env: Some(env), ..Default::default() }
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p-n1".into()),
                namespace: Some("ns".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            ..Default::default()
        }
    }

    fn env_of(c: &Container, objs: &EnvObjects) -> Result<Vec<(String, String)>, ConfigError> {
        make_env(&pod(), c, &EnvContext::default(), objs)
    }

    #[test]
    fn expansion_rules() {
        let m = HashMap::from([("A", "1")]);
        assert_eq!(expand("x$(A)y", &m), "x1y");
        assert_eq!(expand("$(B)", &m), "$(B)");
        assert_eq!(expand("$$(A)", &m), "$(A)");
        assert_eq!(expand("cost $5", &m), "cost $5");
        assert_eq!(expand("$(A", &m), "$(A");
    }

    #[test]
    fn env_field_refs_and_expansion() {
        let mut c = container(vec![
            field("POD", "metadata.name"),
            field("IP", "status.podIP"),
            field("NODE", "spec.nodeName"),
            env("GREETING", "hi $(POD) on $(NODE)"),
        ]);
        c.command = Some(vec!["echo".into(), "$(GREETING)".into()]);
        let ctx = EnvContext { pod_ips: vec!["10.1.1.2".into()], node_name: "n1".into(), ..Default::default() };
        let env = make_env(&pod(), &c, &ctx, &EnvObjects::default()).expect("env");
        let cfg = generate_container_config(&pod(), &c, 2, "sha256:abc", vec![], env, &Default::default());
        let get = |k: &str| cfg.envs.iter().find(|e| e.key == k).map(|e| e.value.clone());
        assert_eq!(get("POD").as_deref(), Some("p-n1"));
        assert_eq!(get("IP").as_deref(), Some("10.1.1.2"));
        assert_eq!(get("GREETING").as_deref(), Some("hi p-n1 on n1"));
        assert_eq!(cfg.command, vec!["echo", "hi p-n1 on n1"]);
        assert_eq!(cfg.log_path, "a/2.log");
        assert_eq!(cfg.metadata.map(|m| m.attempt), Some(2));
    }

    #[test]
    fn standalone_references_fail_as_without_a_client() {
        let err = env_of(&container(vec![cm_key("X", "cfg", "k", false)]), &EnvObjects::default()).unwrap_err();
        assert_eq!(err.0, "couldn't get configMap ns/cfg, no kubeClient defined");
        let err = env_of(&container(vec![secret_key("X", "s", "k", true)]), &EnvObjects::default()).unwrap_err();
        assert_eq!(err.0, "couldn't get secret ns/s, no kubeClient defined");
    }

    #[test]
    fn key_refs_and_their_errors() {
        let objs = objects(vec![config_map("cfg", &[("k", "v")])], vec![secret("s", &[("pw", "hunter2")])], vec![]);
        let mut missing = objs.clone();
        missing.config_maps.insert("gone".into(), None);
        missing.secrets.insert("gone".into(), None);
        let ok = env_of(&container(vec![cm_key("A", "cfg", "k", false), secret_key("B", "s", "pw", false)]), &objs);
        assert_eq!(ok.unwrap(), vec![("A".into(), "v".into()), ("B".into(), "hunter2".into())]);
        let cases = [
            (cm_key("X", "cfg", "nope", false), "couldn't find key nope in ConfigMap ns/cfg"),
            (secret_key("X", "s", "nope", false), "couldn't find key nope in Secret ns/s"),
            (cm_key("X", "gone", "k", false), "configmap \"gone\" not found"),
            (secret_key("X", "gone", "k", false), "secret \"gone\" not found"),
        ];
        for (var, want) in cases {
            assert_eq!(env_of(&container(vec![var]), &missing).unwrap_err().0, want);
        }
        // Optional: the variable is skipped, not set empty.
        let optional = vec![
            cm_key("X", "cfg", "nope", true),
            secret_key("Y", "s", "nope", true),
            cm_key("Z", "gone", "k", true),
            secret_key("W", "gone", "k", true),
            env("KEEP", "1"),
        ];
        assert_eq!(env_of(&container(optional), &missing).unwrap(), vec![("KEEP".into(), "1".into())]);
    }

    #[test]
    fn env_from_with_prefix_and_precedence() {
        let objs = objects(
            vec![config_map("cfg", &[("A", "cm"), ("B", "cm")]), config_map("cfg2", &[("B", "cm2")])],
            vec![secret("s", &[("TOKEN", "t")])],
            vec![],
        );
        let mut missing = objs.clone();
        missing.config_maps.insert("gone".into(), None);
        let cm_ref = |name: &str, optional| EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource { name: name.into(), optional: Some(optional) }),
            ..Default::default()
        };
        let mut c = container(vec![env("A", "explicit"), env("C", "$(B)-$(S_TOKEN)")]);
        c.env_from = Some(vec![
            cm_ref("cfg", false),
            cm_ref("cfg2", false),
            cm_ref("gone", true),
            EnvFromSource {
                prefix: Some("S_".into()),
                secret_ref: Some(SecretEnvSource { name: "s".into(), optional: None }),
                ..Default::default()
            },
        ]);
        let got = env_of(&c, &missing).unwrap();
        let want: Vec<(String, String)> = [("A", "explicit"), ("B", "cm2"), ("S_TOKEN", "t"), ("C", "cm2-t")]
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        assert_eq!(got, want);
        c.env_from = Some(vec![cm_ref("gone", false)]);
        assert_eq!(env_of(&c, &missing).unwrap_err().0, "configmap \"gone\" not found");
    }

    fn cluster_services() -> Vec<Service> {
        vec![
            service("default", "kubernetes", "10.96.0.1", &[(Some("https"), 443, None)]),
            service("default", "other", "10.96.0.9", &[(None, 80, None)]),
            service("ns", "redis-primary", "10.96.0.5", &[(None, 6379, None), (Some("metrics-x"), 9121, Some("UDP"))]),
            service("ns", "headless", "None", &[(None, 80, None)]),
            service("elsewhere", "db", "10.96.0.7", &[(None, 5432, None)]),
        ]
    }

    #[test]
    fn service_link_variables_as_upstream() {
        let got = service_env(&cluster_services(), "ns", true);
        let want = [
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
            ("REDIS_PRIMARY_SERVICE_HOST", "10.96.0.5"),
            ("REDIS_PRIMARY_SERVICE_PORT", "6379"),
            ("REDIS_PRIMARY_SERVICE_PORT_METRICS_X", "9121"),
            ("REDIS_PRIMARY_PORT", "tcp://10.96.0.5:6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP", "tcp://10.96.0.5:6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP_PROTO", "tcp"),
            ("REDIS_PRIMARY_PORT_6379_TCP_PORT", "6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP_ADDR", "10.96.0.5"),
            ("REDIS_PRIMARY_PORT_9121_UDP", "udp://10.96.0.5:9121"),
            ("REDIS_PRIMARY_PORT_9121_UDP_PROTO", "udp"),
            ("REDIS_PRIMARY_PORT_9121_UDP_PORT", "9121"),
            ("REDIS_PRIMARY_PORT_9121_UDP_ADDR", "10.96.0.5"),
        ];
        let want: Vec<(String, String)> = want.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect();
        assert_eq!(got, want);
        // Without links only the master service; in `default` its other services are linked.
        let names = |v: Vec<(String, String)>| {
            v.into_iter().map(|(k, _)| k).filter(|k| k.ends_with("_SERVICE_HOST")).collect::<Vec<_>>()
        };
        assert_eq!(names(service_env(&cluster_services(), "ns", false)), vec!["KUBERNETES_SERVICE_HOST"]);
        assert_eq!(
            names(service_env(&cluster_services(), "default", true)),
            vec!["KUBERNETES_SERVICE_HOST", "OTHER_SERVICE_HOST"]
        );
        let v6 = service_env(&[service("default", "kubernetes", "fd00::1", &[(None, 443, None)])], "ns", true);
        assert!(v6.contains(&("KUBERNETES_PORT".into(), "tcp://[fd00::1]:443".into())), "{v6:?}");
    }

    #[test]
    fn a_namespace_service_named_kubernetes_wins_over_the_master() {
        let mut services = cluster_services();
        services.insert(0, service("ns", "kubernetes", "10.0.0.42", &[(None, 8443, None)]));
        let got = service_env(&services, "ns", true);
        assert!(got.contains(&("KUBERNETES_SERVICE_HOST".into(), "10.0.0.42".into())), "{got:?}");
        assert!(!got.iter().any(|(_, v)| v == "10.96.0.1"));
    }

    #[test]
    fn explicit_env_wins_over_service_env_and_can_expand_it() {
        let objs = objects(vec![], vec![], cluster_services());
        let c = container(vec![
            env("KUBERNETES_SERVICE_HOST", "mine"),
            env("URL", "redis://$(REDIS_PRIMARY_SERVICE_HOST)"),
        ]);
        let got = env_of(&c, &objs).unwrap();
        assert_eq!(got[0], ("KUBERNETES_SERVICE_HOST".into(), "mine".into()));
        assert_eq!(got[1], ("URL".into(), "redis://10.96.0.5".into()));
        assert_eq!(got.iter().filter(|(k, _)| k == "KUBERNETES_SERVICE_HOST").count(), 1);
        assert!(got.contains(&("KUBERNETES_SERVICE_PORT".into(), "443".into())));
        let mut p = pod();
        if let Some(s) = p.spec.as_mut() {
            s.enable_service_links = Some(false);
        }
        let got = make_env(&p, &container(vec![]), &EnvContext::default(), &objs).unwrap();
        assert!(got.iter().all(|(k, _)| k.starts_with("KUBERNETES_")), "{got:?}");
    }

    #[test]
    fn resource_field_refs() {
        let resource = |name: &str, r: &str, divisor: Option<&str>| {
            let sel = ResourceFieldSelector {
                resource: r.into(),
                divisor: divisor.map(|d| Quantity(d.into())),
                container_name: None,
            };
            from(name, EnvVarSource { resource_field_ref: Some(sel), ..Default::default() })
        };
        let mut c = container(vec![
            resource("MEM", "limits.memory", Some("1Mi")),
            resource("CPU", "requests.cpu", Some("1m")),
            resource("CPU_LIMIT", "limits.cpu", None),
        ]);
        c.resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([("memory".into(), Quantity("128Mi".into()))])),
            requests: Some(BTreeMap::from([("cpu".into(), Quantity("250m".into()))])),
            ..Default::default()
        });
        let ctx = EnvContext {
            node_allocatable: NodeAllocatable::from([("cpu".into(), Quantity("4".into()))]),
            ..Default::default()
        };
        let got = make_env(&pod(), &c, &ctx, &EnvObjects::default()).unwrap();
        let want: Vec<(String, String)> = [("MEM", "128"), ("CPU", "250"), ("CPU_LIMIT", "4")]
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn fetches_what_the_env_refers_to() {
        let fake = FakeObjects::new();
        fake.put_config_map(config_map("cfg", &[("k", "v")]));
        for s in cluster_services() {
            fake.put_service(s);
        }
        let mut c = container(vec![cm_key("A", "cfg", "k", false), secret_key("B", "gone", "k", true)]);
        c.env_from = Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource { name: "cfg".into(), optional: None }),
            ..Default::default()
        }]);
        let objs = fetch_env_objects(Some(&fake), &pod(), &c).await.unwrap();
        assert!(objs.connected);
        assert_eq!(objs.config_maps.keys().collect::<Vec<_>>(), vec!["cfg"]);
        assert_eq!(objs.secrets.get("gone"), Some(&None));
        // default's services (for the master) and the pod namespace's.
        assert_eq!(objs.services.len(), 4);
        let env = make_env(&pod(), &c, &EnvContext::default(), &objs).unwrap();
        assert_eq!(env[..2], [("k".into(), "v".into()), ("A".into(), "v".into())]);

        assert!(!fetch_env_objects(None, &pod(), &c).await.unwrap().connected);
        fake.set_failure(Some("connection refused"));
        let err = fetch_env_objects(Some(&fake), &pod(), &c).await.unwrap_err();
        assert_eq!(err.0, "failed to get configmap ns/cfg: connection refused");
        let err = fetch_env_objects(Some(&fake), &pod(), &container(vec![])).await.unwrap_err();
        assert_eq!(err.0, "failed to list services when setting up env vars");
        // A static pod is not held back by services it cannot list.
        let mut static_pod = pod();
        static_pod.metadata.annotations =
            Some([(crate::source::CONFIG_SOURCE_ANNOTATION.to_string(), "file".to_string())].into());
        let objs = fetch_env_objects(Some(&fake), &static_pod, &container(vec![])).await.unwrap();
        assert!(objs.services.is_empty());
    }
}
