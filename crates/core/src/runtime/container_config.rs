//! Pod spec container → CRI `ContainerConfig` (upstream `generateContainerConfig` and
//! `makeEnvironmentVariables`): command/args with `$(VAR)` expansion, env, working dir, mounts,
//! log path `<name>/<restartCount>.log`, labels/annotations and the Linux security context.

use std::collections::HashMap;

use cri::api;
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};

use crate::runtime::labels::{container_annotations, container_labels};
use crate::runtime::sandbox::namespace_options;

/// What env `fieldRef`s resolve against that is not in the spec.
#[derive(Debug, Clone, Default)]
pub struct EnvContext {
    pub pod_ips: Vec<String>,
    pub host_ips: Vec<String>,
    pub node_name: String,
}

/// A container config that cannot be made (upstream `CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Resolves `fieldRef` paths the kubelet supports (upstream `podFieldSelectorRuntimeValue`).
fn field_value(pod: &Pod, path: &str, ctx: &EnvContext) -> Result<String, ConfigError> {
    let m = &pod.metadata;
    let map_key = |prefix: &str, map: &Option<std::collections::BTreeMap<String, String>>| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(|k| map.as_ref().and_then(|m| m.get(k)).cloned().unwrap_or_default())
    };
    let v = match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => ctx.node_name.clone(),
        "spec.serviceAccountName" => pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.podIP" => ctx.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => ctx.pod_ips.join(","),
        "status.hostIP" => ctx.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => ctx.host_ips.join(","),
        _ => {
            if let Some(v) = map_key("metadata.labels['", &m.labels) {
                v
            } else if let Some(v) = map_key("metadata.annotations['", &m.annotations) {
                v
            } else {
                return Err(ConfigError(format!("unsupported fieldPath: {path}")));
            }
        }
    };
    Ok(v)
}

/// The container's environment in spec order, each value `$(VAR)`-expanded against the ones
/// before it (upstream semantics).
pub fn make_env(pod: &Pod, c: &Container, ctx: &EnvContext) -> Result<Vec<(String, String)>, ConfigError> {
    if c.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
        return Err(ConfigError(format!(
            "container {}: envFrom needs the API server (configMaps/secrets), which this node is not connected to",
            c.name
        )));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for EnvVar { name, value, value_from } in c.env.iter().flatten() {
        let v = match (value, value_from) {
            (_, Some(from)) => {
                if let Some(f) = &from.field_ref {
                    field_value(pod, &f.field_path, ctx)?
                } else if let Some(r) = &from.config_map_key_ref {
                    return Err(ConfigError(format!("configmap \"{}\" not found", r.name)));
                } else if let Some(r) = &from.secret_key_ref {
                    return Err(ConfigError(format!("secret \"{}\" not found", r.name)));
                } else {
                    return Err(ConfigError(format!("env {name}: unsupported valueFrom")));
                }
            }
            (Some(v), None) => {
                let lookup: HashMap<&str, &str> = out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                expand(v, &lookup)
            }
            (None, None) => String::new(),
        };
        out.retain(|(k, _)| k != name);
        out.push((name.clone(), v));
    }
    Ok(out)
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

fn security_context(pod: &Pod, c: &Container) -> api::LinuxContainerSecurityContext {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let run_as_user = sc.and_then(|s| s.run_as_user).or(psc.and_then(|p| p.run_as_user));
    let run_as_group = sc.and_then(|s| s.run_as_group).or(psc.and_then(|p| p.run_as_group));
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    api::LinuxContainerSecurityContext {
        capabilities: caps.map(|c| api::Capability {
            add_capabilities: c.add.clone().unwrap_or_default(),
            drop_capabilities: c.drop.clone().unwrap_or_default(),
            ..Default::default()
        }),
        privileged: sc.and_then(|s| s.privileged).unwrap_or(false),
        namespace_options: Some(namespace_options(pod)),
        run_as_user: run_as_user.map(|value| api::Int64Value { value }),
        run_as_group: run_as_group.map(|value| api::Int64Value { value }),
        readonly_rootfs: sc.and_then(|s| s.read_only_root_filesystem).unwrap_or(false),
        supplemental_groups: psc.and_then(|p| p.supplemental_groups.clone()).unwrap_or_default(),
        no_new_privs: sc.and_then(|s| s.allow_privilege_escalation).is_some_and(|allow| !allow),
        ..Default::default()
    }
}

/// Builds the CRI config of one container attempt.
pub fn generate_container_config(
    pod: &Pod,
    c: &Container,
    restart_count: i32,
    image_ref: &str,
    mounts: Vec<api::Mount>,
    env: Vec<(String, String)>,
) -> api::ContainerConfig {
    let lookup: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let expand_all = |v: &Option<Vec<String>>| v.iter().flatten().map(|s| expand(s, &lookup)).collect::<Vec<_>>();
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: c.name.clone(),
            attempt: u32::try_from(restart_count).unwrap_or(0),
        }),
        image: Some(api::ImageSpec {
            image: image_ref.to_string(),
            user_specified_image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: expand_all(&c.command),
        args: expand_all(&c.args),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: env.iter().map(|(k, v)| api::KeyValue { key: k.clone(), value: v.clone() }).collect(),
        mounts,
        labels: container_labels(pod, c),
        annotations: container_annotations(pod, c, restart_count),
        log_path: format!("{}/{}.log", c.name, restart_count),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(api::LinuxContainerConfig { resources: None, security_context: Some(security_context(pod, c)) }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVarSource, ObjectFieldSelector, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn env(name: &str, value: &str) -> EnvVar {
        EnvVar { name: name.into(), value: Some(value.into()), value_from: None }
    }
    fn field(name: &str, path: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector { field_path: path.into(), api_version: None }),
                ..Default::default()
            }),
        }
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
        let c = Container {
            name: "a".into(),
            env: Some(vec![
                field("POD", "metadata.name"),
                field("IP", "status.podIP"),
                field("NODE", "spec.nodeName"),
                env("GREETING", "hi $(POD) on $(NODE)"),
            ]),
            command: Some(vec!["echo".into(), "$(GREETING)".into()]),
            ..Default::default()
        };
        let ctx = EnvContext { pod_ips: vec!["10.1.1.2".into()], node_name: "n1".into(), ..Default::default() };
        let env = make_env(&pod(), &c, &ctx).expect("env");
        let cfg = generate_container_config(&pod(), &c, 2, "sha256:abc", vec![], env);
        let get = |k: &str| cfg.envs.iter().find(|e| e.key == k).map(|e| e.value.clone());
        assert_eq!(get("POD").as_deref(), Some("p-n1"));
        assert_eq!(get("IP").as_deref(), Some("10.1.1.2"));
        assert_eq!(get("GREETING").as_deref(), Some("hi p-n1 on n1"));
        assert_eq!(cfg.command, vec!["echo", "hi p-n1 on n1"]);
        assert_eq!(cfg.log_path, "a/2.log");
        assert_eq!(cfg.metadata.map(|m| m.attempt), Some(2));
    }

    #[test]
    fn config_map_ref_is_a_config_error() {
        let c = Container {
            name: "a".into(),
            env: Some(vec![EnvVar {
                name: "X".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    config_map_key_ref: Some(k8s_openapi::api::core::v1::ConfigMapKeySelector {
                        name: "cfg".into(),
                        key: "k".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
            }]),
            ..Default::default()
        };
        let err = make_env(&pod(), &c, &EnvContext::default()).expect_err("must fail");
        assert!(err.0.contains("configmap \"cfg\" not found"));
    }
}
