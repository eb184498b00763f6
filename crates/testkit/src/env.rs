//! The private runtime environment started by `scripts/node-env up`: its CRI endpoint and images.

use std::path::PathBuf;

/// What the environment exports (`scripts/node-env env`).
#[derive(Debug, Clone)]
pub struct NodeEnv {
    pub runtime_endpoint: String,
    pub test_image: String,
    pub registry: String,
}

impl NodeEnv {
    /// The environment from the variables `scripts/test` exports, or `None` when they are not
    /// set (the test then says it is skipped: run it through `scripts/test`).
    pub fn from_env() -> Option<Self> {
        let runtime_endpoint = std::env::var("CONTAINER_RUNTIME_ENDPOINT").ok()?;
        let test_image = std::env::var("RKUBELET_TEST_IMAGE").ok()?;
        let registry = std::env::var("RKUBELET_ENV_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into());
        Some(Self { runtime_endpoint, test_image, registry })
    }

    /// Like `from_env`, but in CI (`CI` set) a missing environment is an error, not a skip.
    pub fn require() -> Option<Self> {
        let env = Self::from_env();
        if env.is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CONTAINER_RUNTIME_ENDPOINT/RKUBELET_TEST_IMAGE not set in CI: run through scripts/test"
            );
            eprintln!("skipped: no node environment (run through scripts/test)");
        }
        env
    }

    /// The gRPC health server image (`images/grpc-health`) in the environment's registry.
    pub fn grpc_image(&self) -> String {
        format!("{}/rkubelet/grpc-health:1.0", self.registry)
    }

    /// The socket path of the endpoint.
    pub fn socket(&self) -> PathBuf {
        PathBuf::from(self.runtime_endpoint.trim_start_matches("unix://"))
    }
}

/// The workspace root (for locating the built binary and examples).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}
