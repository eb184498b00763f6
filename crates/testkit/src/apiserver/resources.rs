//! The resource table of the test API server (path segment → kind, scope, subresources) and
//! the discovery documents built from it.

use serde_json::{Value, json};

/// One REST resource as the API serves it.
#[derive(Debug)]
pub(crate) struct Resource {
    /// API group; "" for the legacy core group.
    pub group: &'static str,
    pub version: &'static str,
    /// Plural path segment (`pods`).
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Subresources accepting writes (`status`, `approval`, `token`).
    pub subresources: &'static [&'static str],
    pub short_names: &'static [&'static str],
    /// Where objects live in the store. Two resources share storage when the real API serves one
    /// storage under two groups (core/v1 and events.k8s.io/v1 events).
    pub storage: &'static str,
    /// Not stored: create-only review endpoints answered on the spot.
    pub virtual_create_only: bool,
}

const STATUS: &[&str] = &["status"];

macro_rules! res {
    ($group:expr, $plural:expr, $singular:expr, $kind:expr, $ns:expr, $subs:expr, $short:expr, $storage:expr) => {
        Resource {
            group: $group,
            version: "v1",
            plural: $plural,
            singular: $singular,
            kind: $kind,
            namespaced: $ns,
            subresources: $subs,
            short_names: $short,
            storage: $storage,
            virtual_create_only: false,
        }
    };
}

macro_rules! review {
    ($group:expr, $plural:expr, $singular:expr, $kind:expr) => {
        Resource {
            group: $group,
            version: "v1",
            plural: $plural,
            singular: $singular,
            kind: $kind,
            namespaced: false,
            subresources: &[],
            short_names: &[],
            storage: $plural,
            virtual_create_only: true,
        }
    };
}

pub(crate) static RESOURCES: &[Resource] = &[
    res!("", "namespaces", "namespace", "Namespace", false, STATUS, &["ns"], "namespaces"),
    res!("", "nodes", "node", "Node", false, STATUS, &["no"], "nodes"),
    res!("", "pods", "pod", "Pod", true, STATUS, &["po"], "pods"),
    res!("", "configmaps", "configmap", "ConfigMap", true, &[], &["cm"], "configmaps"),
    res!("", "secrets", "secret", "Secret", true, &[], &[], "secrets"),
    res!("", "services", "service", "Service", true, STATUS, &["svc"], "services"),
    res!("", "serviceaccounts", "serviceaccount", "ServiceAccount", true, &["token"], &["sa"], "serviceaccounts"),
    res!("", "events", "event", "Event", true, &[], &["ev"], "events"),
    res!("events.k8s.io", "events", "event", "Event", true, &[], &["ev"], "events"),
    res!("coordination.k8s.io", "leases", "lease", "Lease", true, &[], &[], "leases"),
    res!(
        "certificates.k8s.io",
        "certificatesigningrequests",
        "certificatesigningrequest",
        "CertificateSigningRequest",
        false,
        &["status", "approval"],
        &["csr"],
        "certificatesigningrequests"
    ),
    review!("authentication.k8s.io", "tokenreviews", "tokenreview", "TokenReview"),
    review!("authentication.k8s.io", "selfsubjectreviews", "selfsubjectreview", "SelfSubjectReview"),
    review!("authorization.k8s.io", "subjectaccessreviews", "subjectaccessreview", "SubjectAccessReview"),
];

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_owned() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `pods`, `leases.coordination.k8s.io`: how error messages name the resource.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.to_owned() } else { format!("{}.{}", self.plural, self.group) }
    }

    pub fn is_new_event(&self) -> bool {
        self.storage == "events" && self.group == "events.k8s.io"
    }

    fn verbs(&self) -> Value {
        if self.virtual_create_only {
            json!(["create"])
        } else {
            json!(["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"])
        }
    }
}

/// The resource at `/api/v1/<plural>` (group "") or `/apis/<group>/<version>/<plural>`.
pub(crate) fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Resolves the names tests use for a resource: `pods`, `v1/pods`, `coordination.k8s.io/v1/leases`
/// or `leases.coordination.k8s.io`. A bare plural prefers the core group.
pub(crate) fn resolve(name: &str) -> Option<&'static Resource> {
    let parts: Vec<&str> = name.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        [plural] => match plural.split_once('.') {
            Some((p, group)) => RESOURCES.iter().find(|r| r.plural == p && r.group == group),
            None => RESOURCES.iter().find(|r| r.plural == *plural),
        },
        [version, plural] => find("", version, plural),
        [group, version, plural] => find(group, version, plural),
        _ => None,
    }
}

fn groups() -> Vec<&'static str> {
    let mut out: Vec<&str> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

/// `GET /api`.
pub(crate) fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_doc(group: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

/// `GET /apis`.
pub(crate) fn api_group_list() -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .map(|g| {
            let mut doc = group_doc(g);
            if let Some(obj) = doc.as_object_mut() {
                obj.remove("kind");
                obj.remove("apiVersion");
            }
            doc
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/<group>`.
pub(crate) fn api_group(group: &str) -> Option<Value> {
    groups().contains(&group).then(|| group_doc(group))
}

/// `GET /api/v1` or `GET /apis/<group>/<version>`.
pub(crate) fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == group && r.version == version) {
        resources.push(json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs(),
            "shortNames": r.short_names,
        }));
        for sub in r.subresources {
            let (kind, verbs) = match *sub {
                "token" => ("TokenRequest", json!(["create"])),
                _ => (r.kind, json!(["get", "patch", "update"])),
            };
            resources.push(json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": verbs,
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_every_spelling() {
        assert_eq!(resolve("pods").map(|r| r.kind), Some("Pod"));
        assert_eq!(resolve("v1/pods").map(|r| r.kind), Some("Pod"));
        assert_eq!(resolve("leases.coordination.k8s.io").map(|r| r.kind), Some("Lease"));
        assert_eq!(resolve("coordination.k8s.io/v1/leases").map(|r| r.kind), Some("Lease"));
        assert_eq!(resolve("events").map(|r| r.group), Some(""));
        assert_eq!(resolve("events.events.k8s.io").map(|r| r.group), Some("events.k8s.io"));
        assert!(resolve("widgets").is_none());
    }

    #[test]
    fn discovery_lists_subresources() {
        let list = api_resource_list("", "v1").unwrap();
        let names: Vec<&str> =
            list["resources"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
        assert!(names.contains(&"pods/status"));
        assert!(names.contains(&"serviceaccounts/token"));
        assert!(api_resource_list("coordination.k8s.io", "v1").is_some());
        assert!(api_group("nope.k8s.io").is_none());
    }
}
