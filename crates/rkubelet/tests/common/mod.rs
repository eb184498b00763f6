//! Helpers shared by the cluster-mode end-to-end tests (each test file uses a part of them).

#![allow(dead_code)]

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

use testkit::cluster::TestCluster;
use testkit::{Agent, AgentOptions, NodeEnv};

pub const BIN: &str = env!("CARGO_BIN_EXE_rkubelet");

/// A kubelet API open to anyone (anonymous, AlwaysAllow), for tests of the handlers themselves
/// on a standalone agent.
pub const OPEN_API_CONFIG: &str = "authentication:\n  anonymous:\n    enabled: true\n  webhook:\n    enabled: false\nauthorization:\n  mode: AlwaysAllow\n";

/// The real rkubelet binary joined to `cluster` with `--kubeconfig`, `config` appended to its
/// KubeletConfiguration.
pub fn cluster_agent(env: &NodeEnv, cluster: &TestCluster, tag: &str, config: &str) -> Agent {
    Agent::start(
        Path::new(BIN),
        env,
        tag,
        AgentOptions {
            args: vec![format!("--kubeconfig={}", cluster.kubeconfig.display())],
            config_yaml: Some(config.into()),
            ..Default::default()
        },
    )
}

/// The last 30 lines of an agent's log, for failure messages.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A pod bound to `node` whose container `app` sleeps until TERM (5 s grace).
pub fn sleeping_pod(name: &str, node: &str, image: &str) -> Pod {
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "app", "image": image, "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]}]
        }
    });
    serde_json::from_value(pod).expect("a valid pod manifest")
}
