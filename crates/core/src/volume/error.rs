//! Errors of the volume manager: per pod, per volume and per container mount, with causes
//! worded as upstream's so Events read the same.

use std::path::PathBuf;

use sys::FileType;

use super::fieldpath::FieldPathError;
use crate::pod_dirs::PodDirsError;
use crate::quantity::QuantityError;

/// Why a pod's volumes could not be set up, or a container's mounts could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("pod {pod}: volume {volume:?}: {kind} volumes are not supported yet")]
    Unsupported { pod: String, volume: String, kind: &'static str },

    /// A kind that reads API objects on a node without an API server (standalone mode).
    #[error("pod {pod}: volume {volume:?}: {kind} volumes need the API server, and this node has none (no kubeconfig)")]
    NeedsApiServer { pod: String, volume: String, kind: &'static str },

    #[error("pod {pod}: volume {volume:?}: {cause}")]
    Setup {
        pod: String,
        volume: String,
        #[source]
        cause: Box<SetupError>,
    },

    #[error("pod {pod}: container {container:?}: {cause}")]
    ContainerMount {
        pod: String,
        container: String,
        #[source]
        cause: Box<MountError>,
    },

    #[error("pod {pod}: {source}")]
    PodDirs {
        pod: String,
        #[source]
        source: PodDirsError,
    },

    #[error("pod {uid}: tearing down volumes: {source}")]
    Teardown {
        uid: String,
        #[source]
        source: sys::Error,
    },

    #[error("pod {uid}: removing the pod directory: {source}")]
    Cleanup {
        uid: String,
        #[source]
        source: sys::Error,
    },

    #[error("pod {pod}: volume task failed: {reason}")]
    Task { pod: String, reason: String },
}

/// The cause of a failed volume setup; messages follow upstream's.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("invalid volume name: must be a single, non-empty path component")]
    InvalidName,

    #[error("unknown storage medium {0:?}")]
    UnknownMedium(String),

    #[error("emptyDir medium {0:?} is not supported yet")]
    UnsupportedMedium(String),

    #[error("invalid sizeLimit: {0}")]
    SizeLimit(#[from] QuantityError),

    #[error("invalid HostPath `{0}`: must not contain '..'")]
    HostPathBackstep(String),

    #[error("{0} is an invalid volume type")]
    InvalidHostPathType(String),

    #[error("hostPath {0} doesn't exist")]
    HostPathMissing(String),

    #[error("hostPath type check failed: {path} is not a {expected}, it's a {actual}")]
    HostPathType { path: String, expected: &'static str, actual: FileType },

    #[error("hostPath type check failed, {path} is not a {expected}, unable to determine its type: {source}")]
    HostPathUnknownType {
        path: String,
        expected: &'static str,
        #[source]
        source: sys::Error,
    },

    #[error(transparent)]
    Sys(#[from] sys::Error),

    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),

    #[error("secret {0:?} not found")]
    SecretNotFound(String),

    #[error("configmap references non-existent config key: {0}")]
    ConfigMapKeyMissing(String),

    #[error("secret references non-existent secret key: {0}")]
    SecretKeyMissing(String),

    #[error("{0} projections are not supported yet")]
    UnsupportedProjection(&'static str),

    /// Reading an object (or a token) failed for another reason than "does not exist".
    #[error(transparent)]
    Object(#[from] api::objects::ObjectError),

    #[error(transparent)]
    FieldPath(#[from] FieldPathError),

    #[error(transparent)]
    Write(#[from] sys::atomic_writer::WriteError),

    /// Several sources of one volume failed (Go's aggregate error: `[a, b]`, duplicates once).
    #[error("{}", aggregate_message(.0))]
    Aggregate(Vec<SetupError>),
}

impl SetupError {
    /// One error stays itself; several become an [`SetupError::Aggregate`]; none is `Ok`.
    pub(crate) fn aggregate(mut errors: Vec<SetupError>) -> Result<(), SetupError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(SetupError::Aggregate(errors)),
        }
    }
}

fn aggregate_message(errors: &[SetupError]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        let m = e.to_string();
        if !seen.contains(&m) {
            seen.push(m);
        }
    }
    match seen.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

impl VolumeError {
    /// The `FailedMount` event message, worded as upstream's operation executor
    /// (`MountVolume.SetUp failed for volume "cfg" : configmap "cfg" not found`); the event is
    /// about the pod, so the pod is not repeated.
    pub fn event_message(&self) -> String {
        match self {
            Self::Setup { volume, cause, .. } => format!("MountVolume.SetUp failed for volume {volume:?} : {cause}"),
            other => other.to_string(),
        }
    }
}

/// The cause of a failed `volumeMount`; messages follow upstream's `makeMounts`.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot find volume {volume:?} to mount into container {container:?}")]
    VolumeNotFound { volume: String, container: String },

    #[error("error SubPath `{0}` must not be an absolute path")]
    SubPathAbsolute(String),

    #[error("unable to provision SubPath `{0}`: must not contain '..'")]
    SubPathBackstep(String),

    #[error("volumeMount {volume_mount:?}: subPathExpr: missing value for {missing}")]
    SubPathExprMissing { volume_mount: String, missing: String },

    /// Upstream keeps host filesystem details out of this message; they are in `source` (and
    /// logged).
    #[error("failed to create subPath directory for volumeMount {volume_mount:?} of container {container:?}")]
    SubPathCreate {
        volume_mount: String,
        container: String,
        #[source]
        source: sys::Error,
    },

    #[error("failed to prepare subPath for volumeMount {volume_mount:?} of container {container:?}")]
    SubPathPrepare {
        volume_mount: String,
        container: String,
        #[source]
        source: sys::Error,
    },

    #[error("invalid MountPropagation mode: {0:?}")]
    Propagation(String),

    #[error("volume {volume:?} requested recursive read-only mode, but {reason}")]
    RecursiveReadOnly { volume: String, reason: &'static str },

    #[error("unknown recursive read-only mode {0:?}")]
    UnknownRecursiveReadOnly(String),

    #[error("volume path {0} is not valid UTF-8")]
    NonUtf8Path(PathBuf),

    #[error(transparent)]
    Sys(#[from] sys::Error),
}
