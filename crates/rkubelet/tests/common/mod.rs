//! Helpers shared by the cluster-mode end-to-end tests (each test file uses a part of them).

#![allow(dead_code)]

use std::path::Path;

use testkit::cluster::TestCluster;
use testkit::{Agent, AgentOptions, NodeEnv};

pub const BIN: &str = env!("CARGO_BIN_EXE_rkubelet");

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
