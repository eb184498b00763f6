//! configMap volumes and projections (upstream `pkg/volume/configmap`): `data` and
//! `binaryData` keys as files, on disk (no tmpfs: configMaps carry no secrets).

use std::collections::BTreeMap;

use api::objects::ObjectGetter;
use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath};
use sys::atomic_writer::Payload;

use super::SetupError;
use super::payload::key_to_path_payload;

pub(super) const CONFIG_MAP_PLUGIN: &str = "kubernetes.io/configmap";

/// The payload of configMap `name` in `namespace`. A missing configMap is an error unless
/// `optional` (then the payload is empty, or has the items that exist — none).
pub(super) async fn config_map_payload(
    objects: &dyn ObjectGetter,
    namespace: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, SetupError> {
    let cm = match objects.config_map(namespace, name).await? {
        Some(cm) => cm,
        None if optional => ConfigMap::default(),
        None => return Err(SetupError::ConfigMapNotFound(name.to_string())),
    };
    let mut entries: BTreeMap<String, Vec<u8>> =
        cm.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
    // Validation keeps the two key sets apart.
    entries.extend(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
    key_to_path_payload(items, &entries, default_mode, optional, |k| SetupError::ConfigMapKeyMissing(k.to_string()))
}
