//! Downward API values, shared by downwardAPI volumes and container env: pod metadata by field
//! path (upstream `fieldpath.ExtractFieldPathAsString`) and container resources with a divisor
//! (upstream `resource.ExtractContainerResourceValue`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity::{ParsedQuantity, QuantityError};

/// Node allocatable by resource name (`cpu`, `memory`, `ephemeral-storage`), used for a
/// `limits.*` reference when the container sets no limit (upstream
/// `defaultPodLimitsForDownwardAPI`). Empty when unknown: such a reference then reads 0.
pub type NodeAllocatable = BTreeMap<String, Quantity>;

/// Why a downward API value could not be produced; messages are upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldPathError {
    #[error("unsupported fieldPath: {0}")]
    UnsupportedFieldPath(String),
    #[error("fieldPath {0:?} does not support subscript")]
    NoSubscript(String),
    #[error("unsupported container resource : {0}")]
    UnsupportedResource(String),
    #[error("container {0} not found")]
    ContainerNotFound(String),
    #[error("{resource}: {source}")]
    Quantity {
        resource: String,
        #[source]
        source: QuantityError,
    },
}

/// `metadata.name|namespace|uid`, `metadata.labels|annotations` (all of them, formatted by
/// [`format_map`]) or one of them as `metadata.labels['key']`.
pub fn extract_field_path(pod: &Pod, path: &str) -> Result<String, FieldPathError> {
    let m = &pod.metadata;
    let empty = BTreeMap::new();
    let labels = m.labels.as_ref().unwrap_or(&empty);
    let annotations = m.annotations.as_ref().unwrap_or(&empty);
    if let Some((base, key)) = split_subscript(path) {
        return match base {
            "metadata.annotations" => Ok(annotations.get(key).cloned().unwrap_or_default()),
            "metadata.labels" => Ok(labels.get(key).cloned().unwrap_or_default()),
            _ => Err(FieldPathError::NoSubscript(path.to_string())),
        };
    }
    Ok(match path {
        "metadata.annotations" => format_map(annotations),
        "metadata.labels" => format_map(labels),
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        _ => return Err(FieldPathError::UnsupportedFieldPath(path.to_string())),
    })
}

/// Upstream `SplitMaybeSubscriptedPath`: `a.b['key']` → (`a.b`, `key`).
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (base, key) = inner.split_once("['")?;
    Some((base, key))
}

/// Upstream `FormatMap`: one `key="value"` line per entry, sorted by key, values quoted as Go's
/// `%q`, no trailing newline.
pub fn format_map(m: &BTreeMap<String, String>) -> String {
    m.iter().map(|(k, v)| format!("{k}={}", go_quote(v))).collect::<Vec<_>>().join("\n")
}

/// Go's `strconv.Quote`. Go's `unicode.IsPrint` is approximated: control characters, spaces
/// other than U+0020 and the common invisible format characters are escaped.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if is_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

fn is_printable(c: char) -> bool {
    let invisible = matches!(c as u32, 0xad | 0x200b..=0x200f | 0x2028..=0x202e | 0x2060..=0x2064 | 0xfeff);
    !(c.is_control() || (c.is_whitespace() && c != ' ') || invisible)
}

/// The value of `fs` for the container named by `fs.containerName` (upstream
/// `ExtractResourceValueByContainerNameAndNodeAllocatable`), init containers included.
pub fn resource_value_by_container_name(
    fs: &ResourceFieldSelector,
    pod: &Pod,
    container: &str,
    allocatable: &NodeAllocatable,
) -> Result<String, FieldPathError> {
    let spec = pod.spec.as_ref();
    let found = spec
        .into_iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .find(|c| c.name == container)
        .ok_or_else(|| FieldPathError::ContainerNotFound(container.to_string()))?;
    container_resource_value(fs, found, allocatable)
}

/// `limits|requests.cpu|memory|ephemeral-storage|hugepages-<size>` of `container` in units of
/// `fs.divisor` (default 1), rounded up. CPU is compared in millicores, the rest in units.
pub fn container_resource_value(
    fs: &ResourceFieldSelector,
    container: &Container,
    allocatable: &NodeAllocatable,
) -> Result<String, FieldPathError> {
    let quantity = |resource: &str, s: &str| {
        ParsedQuantity::parse(s).map_err(|source| FieldPathError::Quantity { resource: resource.to_string(), source })
    };
    let one = quantity("divisor", "1")?;
    let divisor = match fs.divisor.as_ref() {
        Some(q) => Some(quantity("divisor", &q.0)?).filter(|d| d.nanos() != 0).unwrap_or(one),
        None => one,
    };
    let unsupported = || FieldPathError::UnsupportedResource(fs.resource.clone());
    let (kind, name) = fs.resource.split_once('.').ok_or_else(unsupported)?;
    let resources = container.resources.as_ref();
    let list = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(unsupported()),
    };
    let is_cpu = name == "cpu";
    if !(is_cpu || name == "memory" || name == "ephemeral-storage" || name.starts_with("hugepages-")) {
        return Err(unsupported());
    }
    let mut value = list.and_then(|l| l.get(name));
    // Hugepages are never overcommitted, so upstream does not default them.
    if value.is_none() && kind == "limits" && !name.starts_with("hugepages-") {
        value = allocatable.get(name);
    }
    let value = match value {
        Some(q) => quantity(&fs.resource, &q.0)?,
        None => ParsedQuantity::default(),
    };
    let (n, d) = if is_cpu { (value.milli_value(), divisor.milli_value()) } else { (value.value(), divisor.value()) };
    Ok(ceil_div(n, d).to_string())
}

fn ceil_div(n: i128, d: i128) -> i128 {
    if d <= 0 {
        return 0;
    }
    n.div_euclid(d) + i128::from(n.rem_euclid(d) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod() -> Pod {
        let labels = BTreeMap::from([("b".to_string(), "2".to_string()), ("a".to_string(), "x\"y\n".to_string())]);
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("prod".into()),
                uid: Some("u-1".into()),
                labels: Some(labels),
                annotations: Some(BTreeMap::from([("k8s.io/x".into(), "é\u{a0}\u{7}".into())])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    resources: Some(ResourceRequirements {
                        limits: Some(BTreeMap::from([
                            ("cpu".into(), Quantity("250m".into())),
                            ("memory".into(), Quantity("64Mi".into())),
                        ])),
                        requests: Some(BTreeMap::from([("cpu".into(), Quantity("100m".into()))])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn metadata_fields_and_maps() {
        let p = pod();
        assert_eq!(extract_field_path(&p, "metadata.name").as_deref(), Ok("web"));
        assert_eq!(extract_field_path(&p, "metadata.namespace").as_deref(), Ok("prod"));
        assert_eq!(extract_field_path(&p, "metadata.uid").as_deref(), Ok("u-1"));
        assert_eq!(extract_field_path(&p, "metadata.labels").as_deref(), Ok("a=\"x\\\"y\\n\"\nb=\"2\""));
        assert_eq!(extract_field_path(&p, "metadata.annotations").as_deref(), Ok("k8s.io/x=\"é\\u00a0\\a\""));
        assert_eq!(extract_field_path(&p, "metadata.labels['b']").as_deref(), Ok("2"));
        assert_eq!(extract_field_path(&p, "metadata.labels['none']").as_deref(), Ok(""));
        assert_eq!(
            extract_field_path(&p, "spec.nodeName").unwrap_err().to_string(),
            "unsupported fieldPath: spec.nodeName"
        );
        assert_eq!(
            extract_field_path(&p, "metadata.name['x']").unwrap_err().to_string(),
            "fieldPath \"metadata.name['x']\" does not support subscript"
        );
        assert_eq!(format_map(&BTreeMap::new()), "");
    }

    fn sel(resource: &str, divisor: Option<&str>) -> ResourceFieldSelector {
        ResourceFieldSelector {
            resource: resource.into(),
            divisor: divisor.map(|d| Quantity(d.into())),
            container_name: Some("app".into()),
        }
    }

    #[test]
    fn resources_with_divisors() {
        let p = pod();
        let none = NodeAllocatable::new();
        let v = |r: &str, d: Option<&str>| resource_value_by_container_name(&sel(r, d), &p, "app", &none);
        assert_eq!(v("limits.cpu", None).as_deref(), Ok("1"));
        assert_eq!(v("limits.cpu", Some("1m")).as_deref(), Ok("250"));
        assert_eq!(v("limits.cpu", Some("0")).as_deref(), Ok("1"));
        assert_eq!(v("requests.cpu", Some("1m")).as_deref(), Ok("100"));
        assert_eq!(v("limits.memory", None).as_deref(), Ok("67108864"));
        assert_eq!(v("limits.memory", Some("1Mi")).as_deref(), Ok("64"));
        assert_eq!(v("limits.memory", Some("1G")).as_deref(), Ok("1"));
        assert_eq!(v("requests.memory", None).as_deref(), Ok("0"));
        assert_eq!(v("limits.ephemeral-storage", None).as_deref(), Ok("0"));
        assert_eq!(
            v("limits.nvidia.com/gpu", None).unwrap_err().to_string(),
            "unsupported container resource : limits.nvidia.com/gpu"
        );
        let err = resource_value_by_container_name(&sel("limits.cpu", None), &p, "nope", &none).unwrap_err();
        assert_eq!(err.to_string(), "container nope not found");
        let alloc = NodeAllocatable::from([("ephemeral-storage".into(), Quantity("10Gi".into()))]);
        let got = resource_value_by_container_name(&sel("limits.ephemeral-storage", Some("1Gi")), &p, "app", &alloc);
        assert_eq!(got.as_deref(), Ok("10"));
    }
}
