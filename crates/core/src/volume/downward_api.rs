//! downwardAPI volumes and projections (upstream `pkg/volume/downwardapi`): pod metadata and
//! container resources as files, on a tmpfs. Needs no API server.

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, Pod};
use sys::atomic_writer::{FileProjection, Payload};

use super::SetupError;
use super::fieldpath::{NodeAllocatable, extract_field_path, resource_value_by_container_name};
use super::payload::file_mode;

pub(super) const DOWNWARD_API_PLUGIN: &str = "kubernetes.io/downward-api";

/// Upstream `CollectData`: one file per item; every failing item is reported (an aggregate),
/// not only the first.
pub(super) fn collect_data(
    items: &[DownwardAPIVolumeFile],
    pod: &Pod,
    default_mode: u32,
    allocatable: &NodeAllocatable,
) -> Result<Payload, SetupError> {
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            extract_field_path(pod, &f.field_path)
        } else if let Some(r) = &item.resource_field_ref {
            let container = r.container_name.as_deref().unwrap_or_default();
            resource_value_by_container_name(r, pod, container, allocatable)
        } else {
            Ok(String::new())
        };
        match value {
            Ok(v) => {
                let file =
                    FileProjection { data: v.into_bytes(), mode: file_mode(item.mode, default_mode), fs_user: None };
                payload.insert(item.path.clone(), file);
            }
            Err(e) => errors.push(SetupError::FieldPath(e)),
        }
    }
    SetupError::aggregate(errors)?;
    Ok(payload)
}
