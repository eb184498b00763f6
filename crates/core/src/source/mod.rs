//! Pod sources (static manifest files; later the API server) and the merger that turns each
//! source's desired set into one stream of changes for the kubelet.

mod defaults;
pub mod file;
mod merge;
mod validation;

pub use defaults::{apply_api_defaults, apply_defaults, default_pull_policy, pod_uid};
pub use file::FileSource;
pub use merge::{PodConfig, PodOp, PodUpdate};
pub use validation::{FieldError, FieldErrorType, ValidationError, validate_pod, validate_static_pod};

use k8s_openapi::api::core::v1::Pod;

/// `kubernetes.io/config.source` value of pods read from manifest files.
pub const FILE_SOURCE: &str = "file";
/// `kubernetes.io/config.source` value of pods from the API server.
pub const API_SOURCE: &str = "api";
/// Annotations upstream puts on every pod from a non-API source.
pub const CONFIG_SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
pub const CONFIG_HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
pub const CONFIG_SEEN_ANNOTATION: &str = "kubernetes.io/config.seen";
pub const CONFIG_MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// A source's complete desired set of pods (upstream's `SET` operation): each send replaces the
/// source's previous set.
#[derive(Debug, Clone)]
pub struct SourceSnapshot {
    pub source: &'static str,
    pub pods: Vec<Pod>,
}

/// True for pods that did not come from the API server (static pods).
pub fn is_static_pod(pod: &Pod) -> bool {
    pod.metadata.annotations.as_ref().and_then(|a| a.get(CONFIG_SOURCE_ANNOTATION)).is_some_and(|s| s != "api")
}
