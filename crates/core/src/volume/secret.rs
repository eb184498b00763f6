//! secret volumes and projections (upstream `pkg/volume/secret`): `data` keys as files, on a
//! tmpfs so secrets never reach the node's disk.

use std::collections::BTreeMap;

use api::objects::ObjectGetter;
use k8s_openapi::api::core::v1::{KeyToPath, Secret};
use sys::atomic_writer::Payload;

use super::SetupError;
use super::payload::key_to_path_payload;

pub(super) const SECRET_PLUGIN: &str = "kubernetes.io/secret";

/// The payload of secret `name` in `namespace`. A missing secret is an error unless `optional`.
pub(super) async fn secret_payload(
    objects: &dyn ObjectGetter,
    namespace: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, SetupError> {
    let secret = match objects.secret(namespace, name).await? {
        Some(s) => s,
        None if optional => Secret::default(),
        None => return Err(SetupError::SecretNotFound(name.to_string())),
    };
    let entries: BTreeMap<String, Vec<u8>> =
        secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
    key_to_path_payload(items, &entries, default_mode, optional, |k| SetupError::SecretKeyMissing(k.to_string()))
}
