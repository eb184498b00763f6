//! Pod spec container → CRI `ContainerConfig` (upstream `generateContainerConfig`): command/args
//! with `$(VAR)` expansion against the environment built in [`super::env`], working dir, mounts,
//! log path `<name>/<restartCount>.log`, labels/annotations, the Linux resources
//! ([`super::resources`]) and security context.

use std::collections::HashMap;

use cri::api;
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::runtime::env::expand;
use crate::runtime::labels::{container_annotations, container_labels};
use crate::runtime::resources::{ResourceSettings, linux_container_resources};
use crate::runtime::sandbox::namespace_options;

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
    resources: &ResourceSettings,
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
        linux: Some(api::LinuxContainerConfig {
            resources: Some(linux_container_resources(pod, c, resources)),
            security_context: Some(security_context(pod, c)),
        }),
        ..Default::default()
    }
}
