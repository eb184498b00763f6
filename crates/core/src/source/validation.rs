//! Validation of pods read from manifest files: the subset of upstream's `ValidatePodCreate`
//! (`pkg/apis/core/validation/validation.go`) that catches real mistakes, with upstream's field
//! paths and messages, plus the kubelet's static-pod rule that a static pod may not reference
//! API objects (`podutil.HasAPIObjectReference`, `pkg/kubelet/config/common.go`).
//!
//! Validation runs on the defaulted pod, as upstream's does (so the pod name already carries the
//! node-name suffix and the namespace is set). All problems are reported, not just the first.
//!
//! Stricter than upstream: `mountPath` must be absolute (runtimes require it anyway).
//! Not checked: security contexts, affinity, topology spread constraints, resource names,
//! downward API field paths, sysctls, OS-specific fields.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, KeyToPath, LifecycleHandler, Pod, PodSpec, Probe, Volume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::defaults::volume_source_names;
use crate::quantity::ParsedQuantity;

/// The kind of a field error, as upstream's `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
}

impl FieldErrorType {
    fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "Not found",
            Self::Required => "Required value",
            Self::Duplicate => "Duplicate value",
            Self::Invalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::Forbidden => "Forbidden",
            Self::TooLong => "Too long",
        }
    }
}

/// One problem with one field, displayed like upstream's `field.Error`:
/// `spec.containers[0].image: Required value`, `spec.containers[1].name: Duplicate value: "app"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Field path, e.g. `spec.containers[0].ports[1].containerPort`.
    pub field: String,
    pub kind: FieldErrorType,
    /// The offending value, quoted like Go's `%q` for strings; `None` for Required/Forbidden.
    pub value: Option<String>,
    pub detail: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.kind.as_str())?;
        if let Some(value) = &self.value {
            write!(f, ": {value}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// A pod failed validation; `errors` lists every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pod {pod:?}: {}", join(.errors))]
pub struct ValidationError {
    /// `namespace/name` of the pod.
    pub pod: String,
    pub errors: Vec<FieldError>,
}

fn join(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Validates a pod as upstream's `ValidatePodCreate` does (see the module documentation).
pub fn validate_pod(pod: &Pod) -> Result<(), ValidationError> {
    let mut errs = Errs::default();
    check_pod(pod, &mut errs);
    errs.into_result(pod)
}

/// [`validate_pod`] plus the kubelet's rules for static pods: they may not reference API objects
/// (service accounts, secrets, config maps, persistent volume claims, resource claims, CSI
/// volumes, projected sources other than the downward API), since they must start without an
/// API server.
pub fn validate_static_pod(pod: &Pod) -> Result<(), ValidationError> {
    let mut errs = Errs::default();
    check_pod(pod, &mut errs);
    if let Some(spec) = &pod.spec {
        check_static_pod_references(spec, &mut errs);
    }
    errs.into_result(pod)
}

// ---------------------------------------------------------------------------------------------
// Error collection

/// Renders a value like Go's `%v`/`%q` in field errors.
trait GoValue {
    fn render(&self) -> String;
}
impl GoValue for str {
    fn render(&self) -> String {
        format!("{self:?}")
    }
}
impl GoValue for String {
    fn render(&self) -> String {
        format!("{self:?}")
    }
}
impl GoValue for i32 {
    fn render(&self) -> String {
        self.to_string()
    }
}
impl GoValue for i64 {
    fn render(&self) -> String {
        self.to_string()
    }
}

#[derive(Default)]
struct Errs(Vec<FieldError>);

impl Errs {
    fn push(&mut self, field: &str, kind: FieldErrorType, value: Option<String>, detail: impl Into<String>) {
        self.0.push(FieldError { field: field.to_owned(), kind, value, detail: detail.into() });
    }
    fn required(&mut self, field: &str, detail: &str) {
        self.push(field, FieldErrorType::Required, None, detail);
    }
    fn forbidden(&mut self, field: &str, detail: &str) {
        self.push(field, FieldErrorType::Forbidden, None, detail);
    }
    fn invalid<V: GoValue + ?Sized>(&mut self, field: &str, value: &V, detail: impl Into<String>) {
        self.push(field, FieldErrorType::Invalid, Some(value.render()), detail);
    }
    fn duplicate<V: GoValue + ?Sized>(&mut self, field: &str, value: &V) {
        self.push(field, FieldErrorType::Duplicate, Some(value.render()), "");
    }
    fn not_found<V: GoValue + ?Sized>(&mut self, field: &str, value: &V) {
        self.push(field, FieldErrorType::NotFound, Some(value.render()), "");
    }
    fn not_supported(&mut self, field: &str, value: &str, supported: &[&str]) {
        let list = supported.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
        self.push(field, FieldErrorType::NotSupported, Some(value.render()), format!("supported values: {list}"));
    }
    /// Required when empty, NotSupported when not one of `supported`.
    fn one_of(&mut self, field: &str, value: Option<&str>, supported: &[&str]) {
        match value.unwrap_or_default() {
            "" => self.required(field, ""),
            v if supported.contains(&v) => {}
            v => self.not_supported(field, v, supported),
        }
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn into_result(self, pod: &Pod) -> Result<(), ValidationError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let meta = &pod.metadata;
        Err(ValidationError {
            pod: format!(
                "{}/{}",
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default()
            ),
            errors: self.0,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Name formats (k8s.io/apimachinery/pkg/util/validation)

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let examples = examples.iter().map(|e| format!("'{e}'")).collect::<Vec<_>>().join(" or ");
    format!("{msg} (e.g. {examples}, regex used for validation is '{fmt}')")
}

fn is_dns1123_label_str(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn is_dns1123_subdomain_str(s: &str) -> bool {
    s.split('.').all(is_dns1123_label_str)
}

fn dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !is_dns1123_label_str(value) {
        if is_dns1123_subdomain_str(value) {
            errs.push("must not contain dots".to_owned());
        } else {
            errs.push(regex_error(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !is_dns1123_subdomain_str(value) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// `IsQualifiedName`: `[prefix/]name`, as used for label and annotation keys.
fn qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_owned());
            } else {
                errs.extend(dns1123_subdomain(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            errs.push(format!(
                "{} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"],
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !name.is_empty() && !is_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"],
            )
        ));
    }
    errs
}

fn label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errs.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// `IsValidPortName` (IANA_SVC_NAME).
fn port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len_error(15));
    }
    if port.is_empty() || !port.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-') {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_owned());
    }
    if !port.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_owned());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".to_owned());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_owned());
    }
    errs
}

fn port_num(port: i32) -> Option<String> {
    (!(1..=65535).contains(&port)).then(|| inclusive_range_error(1, 65535))
}

fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

fn check_ip(errs: &mut Errs, field: &str, ip: &str) {
    if ip.parse::<std::net::IpAddr>().is_err() {
        errs.invalid(field, ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)");
    }
}

// ---------------------------------------------------------------------------------------------
// Resource quantities

fn check_quantity(errs: &mut Errs, field: &str, q: &Quantity) -> Option<i128> {
    match ParsedQuantity::parse(&q.0).ok().map(ParsedQuantity::nanos) {
        None => {
            errs.invalid(
                field,
                &q.0,
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            );
            None
        }
        Some(v) if v < 0 => {
            errs.invalid(field, &q.0, "must be greater than or equal to 0");
            None
        }
        Some(v) => Some(v),
    }
}

// ---------------------------------------------------------------------------------------------
// Pod

fn check_pod(pod: &Pod, errs: &mut Errs) {
    check_object_meta(pod, errs);
    let Some(spec) = &pod.spec else {
        errs.required("spec.containers", "");
        return;
    };
    check_pod_spec(spec, errs);

    if spec.ephemeral_containers.as_ref().is_some_and(|e| !e.is_empty()) {
        errs.forbidden("spec.ephemeralContainers", "cannot be set on create");
    }
    // A projected service account token needs a service account.
    if spec.service_account_name.as_deref().unwrap_or_default().is_empty() {
        for (vi, v) in spec.volumes.iter().flatten().enumerate() {
            for (si, s) in v.projected.iter().flat_map(|p| p.sources.iter().flatten()).enumerate() {
                if s.service_account_token.is_some() {
                    errs.forbidden(
                        &format!("spec.volumes[{vi}].projected.sources[{si}].serviceAccountToken"),
                        "must not be specified when serviceAccountName is not set",
                    );
                }
            }
        }
    }
    for (list, containers) in [
        ("containers", spec.containers.as_slice()),
        ("initContainers", spec.init_containers.as_deref().unwrap_or_default()),
    ] {
        for (i, c) in containers.iter().enumerate() {
            let image = c.image.as_deref().unwrap_or_default();
            if image.trim() != image {
                errs.invalid(&format!("spec.{list}[{i}].image"), image, "must not have leading or trailing whitespace");
            }
        }
    }
}

fn check_object_meta(pod: &Pod, errs: &mut Errs) {
    let meta = &pod.metadata;
    match meta.name.as_deref().unwrap_or_default() {
        "" => errs.required("metadata.name", "name or generateName is required"),
        name => {
            for msg in dns1123_subdomain(name) {
                errs.invalid("metadata.name", name, msg);
            }
        }
    }
    match meta.namespace.as_deref().unwrap_or_default() {
        "" => errs.required("metadata.namespace", ""),
        ns => {
            for msg in dns1123_label(ns) {
                errs.invalid("metadata.namespace", ns, msg);
            }
        }
    }
    check_labels(errs, "metadata.labels", meta.labels.as_ref());
    let mut total = 0usize;
    for (k, v) in meta.annotations.iter().flatten() {
        for msg in qualified_name(&k.to_lowercase()) {
            errs.invalid("metadata.annotations", k, msg);
        }
        total += k.len() + v.len();
    }
    const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(
            "metadata.annotations",
            FieldErrorType::TooLong,
            None,
            format!("must have at most {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"),
        );
    }
}

fn check_labels(errs: &mut Errs, field: &str, labels: Option<&BTreeMap<String, String>>) {
    for (k, v) in labels.into_iter().flatten() {
        for msg in qualified_name(k) {
            errs.invalid(field, k, msg);
        }
        for msg in label_value(v) {
            errs.invalid(field, v, msg);
        }
    }
}

fn check_pod_spec(spec: &PodSpec, errs: &mut Errs) {
    let grace = spec.termination_grace_period_seconds;
    if grace.is_none() {
        errs.required("spec.terminationGracePeriodSeconds", "");
    }
    let volumes = check_volumes(spec.volumes.as_deref().unwrap_or_default(), errs);

    // Regular containers.
    if spec.containers.is_empty() {
        errs.required("spec.containers", "");
    }
    let mut names = BTreeSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let path = format!("spec.containers[{i}]");
        check_container_common(c, &path, &volumes, errs);
        if !names.insert(c.name.as_str()) {
            errs.duplicate(&format!("{path}.name"), &c.name);
        }
        if let Some(lifecycle) = &c.lifecycle {
            for (name, handler) in [("postStart", &lifecycle.post_start), ("preStop", &lifecycle.pre_stop)] {
                if let Some(h) = handler {
                    check_lifecycle_handler(h, grace, &format!("{path}.lifecycle.{name}"), errs);
                }
            }
        }
        check_probe(c.liveness_probe.as_ref(), ProbeKind::Liveness, &format!("{path}.livenessProbe"), errs);
        check_probe(c.readiness_probe.as_ref(), ProbeKind::Readiness, &format!("{path}.readinessProbe"), errs);
        check_probe(c.startup_probe.as_ref(), ProbeKind::Startup, &format!("{path}.startupProbe"), errs);
        if c.restart_policy.is_some() {
            errs.forbidden(&format!("{path}.restartPolicy"), "may not be set for non-init containers");
        }
    }
    check_host_port_conflicts(spec.containers.iter().enumerate(), "spec.containers", errs);

    // Init containers: names unique across init and regular containers.
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let path = format!("spec.initContainers[{i}]");
        check_container_common(c, &path, &volumes, errs);
        let restart_always = match c.restart_policy.as_deref() {
            None => false,
            Some("Always") => true,
            Some(other) => {
                errs.not_supported(&format!("{path}.restartPolicy"), other, &["Always"]);
                false
            }
        };
        if names.contains(c.name.as_str()) {
            errs.duplicate(&format!("{path}.name"), &c.name);
        } else if !c.name.is_empty() {
            names.insert(c.name.as_str());
        }
        // Init containers run one by one: check their host ports individually.
        check_host_port_conflicts(std::iter::once((i, c)), "spec.initContainers", errs);
        if restart_always {
            if let Some(lifecycle) = &c.lifecycle {
                for (name, handler) in [("postStart", &lifecycle.post_start), ("preStop", &lifecycle.pre_stop)] {
                    if let Some(h) = handler {
                        check_lifecycle_handler(h, grace, &format!("{path}.lifecycle.{name}"), errs);
                    }
                }
            }
            check_probe(c.liveness_probe.as_ref(), ProbeKind::Liveness, &format!("{path}.livenessProbe"), errs);
            check_probe(c.readiness_probe.as_ref(), ProbeKind::Readiness, &format!("{path}.readinessProbe"), errs);
            check_probe(c.startup_probe.as_ref(), ProbeKind::Startup, &format!("{path}.startupProbe"), errs);
        } else {
            for (name, set) in [
                ("lifecycle", c.lifecycle.is_some()),
                ("livenessProbe", c.liveness_probe.is_some()),
                ("readinessProbe", c.readiness_probe.is_some()),
                ("startupProbe", c.startup_probe.is_some()),
            ] {
                if set {
                    errs.forbidden(
                        &format!("{path}.{name}"),
                        "may not be set for init containers without restartPolicy=Always",
                    );
                }
            }
        }
    }

    // With host networking, host ports must equal container ports.
    if spec.host_network.unwrap_or(false) {
        for (i, c) in spec.containers.iter().enumerate() {
            for (pi, p) in c.ports.iter().flatten().enumerate() {
                let host_port = p.host_port.unwrap_or(0);
                if host_port != p.container_port {
                    errs.invalid(
                        &format!("spec.containers[{i}].ports[{pi}].hostPort"),
                        &host_port,
                        "must match `containerPort` when `hostNetwork` is true",
                    );
                }
            }
        }
    }

    errs.one_of("spec.restartPolicy", spec.restart_policy.as_deref(), &["Always", "OnFailure", "Never"]);
    errs.one_of(
        "spec.dnsPolicy",
        spec.dns_policy.as_deref(),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    );
    check_labels(errs, "spec.nodeSelector", spec.node_selector.as_ref());
    check_dns_config(spec, errs);

    if let Some(sa) = spec.service_account_name.as_deref().filter(|s| !s.is_empty()) {
        for msg in dns1123_subdomain(sa) {
            errs.invalid("spec.serviceAccountName", sa, msg);
        }
    }
    if let Some(node) = spec.node_name.as_deref().filter(|s| !s.is_empty()) {
        for msg in dns1123_subdomain(node) {
            errs.invalid("spec.nodeName", node, msg);
        }
    }
    if let Some(deadline) = spec.active_deadline_seconds
        && !(1..=i64::from(i32::MAX)).contains(&deadline)
    {
        errs.invalid("spec.activeDeadlineSeconds", &deadline, inclusive_range_error(1, i64::from(i32::MAX)));
    }
    for (field, value) in [("spec.hostname", &spec.hostname), ("spec.subdomain", &spec.subdomain)] {
        if let Some(v) = value.as_deref().filter(|s| !s.is_empty()) {
            for msg in dns1123_label(v) {
                errs.invalid(field, v, msg);
            }
        }
    }
    check_tolerations(spec, errs);
    for (i, alias) in spec.host_aliases.iter().flatten().enumerate() {
        check_ip(errs, &format!("spec.hostAliases[{i}].ip"), &alias.ip);
        for (j, host) in alias.hostnames.iter().flatten().enumerate() {
            for msg in dns1123_subdomain(host) {
                errs.invalid(&format!("spec.hostAliases[{i}].hostnames[{j}]"), host, msg);
            }
        }
    }
}

fn check_dns_config(spec: &PodSpec, errs: &mut Errs) {
    let config = spec.dns_config.as_ref();
    if spec.dns_policy.as_deref() == Some("None") {
        match config {
            None => {
                errs.required("spec.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None");
                return;
            }
            Some(c) if c.nameservers.as_ref().is_none_or(Vec::is_empty) => {
                errs.required(
                    "spec.dnsConfig.nameservers",
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                );
                return;
            }
            Some(_) => {}
        }
    }
    let Some(config) = config else { return };
    let nameservers = config.nameservers.as_deref().unwrap_or_default();
    if nameservers.len() > 3 {
        errs.push(
            "spec.dnsConfig.nameservers",
            FieldErrorType::Invalid,
            Some(format!("{nameservers:?}")),
            "must not have more than 3 nameservers",
        );
    }
    for (i, ns) in nameservers.iter().enumerate() {
        check_ip(errs, &format!("spec.dnsConfig.nameservers[{i}]"), ns);
    }
    let searches = config.searches.as_deref().unwrap_or_default();
    if searches.len() > 32 {
        errs.push(
            "spec.dnsConfig.searches",
            FieldErrorType::Invalid,
            Some(format!("{searches:?}")),
            "must not have more than 32 search paths",
        );
    }
    for (i, search) in searches.iter().enumerate() {
        let s = search.strip_suffix('.').unwrap_or(search);
        for msg in dns1123_subdomain(s) {
            errs.invalid(&format!("spec.dnsConfig.searches[{i}]"), s, msg);
        }
    }
    for (i, option) in config.options.iter().flatten().enumerate() {
        if option.name.as_deref().unwrap_or_default().is_empty() {
            errs.required(&format!("spec.dnsConfig.options[{i}]"), "must not be empty");
        }
    }
}

fn check_tolerations(spec: &PodSpec, errs: &mut Errs) {
    for (i, t) in spec.tolerations.iter().flatten().enumerate() {
        let path = format!("spec.tolerations[{i}]");
        let key = t.key.as_deref().unwrap_or_default();
        let operator = t.operator.as_deref().unwrap_or_default();
        let value = t.value.as_deref().unwrap_or_default();
        let effect = t.effect.as_deref().unwrap_or_default();
        if !key.is_empty() {
            for msg in qualified_name(key) {
                errs.invalid(&format!("{path}.key"), key, msg);
            }
        }
        if key.is_empty() && operator != "Exists" {
            errs.invalid(
                &format!("{path}.operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            );
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.invalid(
                &format!("{path}.effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            );
        }
        match operator {
            "" | "Equal" => {
                let msgs = label_value(value);
                if !msgs.is_empty() {
                    errs.invalid(&format!("{path}.operator"), value, msgs.join(";"));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.invalid(&format!("{path}.operator"), value, "value must be empty when `operator` is 'Exists'");
                }
            }
            other => errs.not_supported(&format!("{path}.operator"), other, &["Equal", "Exists"]),
        }
        if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            errs.not_supported(&format!("{path}.effect"), effect, &["NoSchedule", "PreferNoSchedule", "NoExecute"]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Volumes

/// Validates the volumes; returns the names of the valid ones (mounts of invalid volumes are
/// reported as not found, as upstream does).
fn check_volumes<'a>(volumes: &'a [Volume], errs: &mut Errs) -> BTreeMap<&'a str, &'a Volume> {
    let mut valid = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let path = format!("spec.volumes[{i}]");
        let before = errs.len();
        check_volume_source(v, &path, errs);
        if v.name.is_empty() {
            errs.required(&format!("{path}.name"), "");
        } else {
            for msg in dns1123_label(&v.name) {
                errs.invalid(&format!("{path}.name"), &v.name, msg);
            }
        }
        if seen.contains(v.name.as_str()) {
            errs.duplicate(&format!("{path}.name"), &v.name);
        }
        if errs.len() == before {
            seen.insert(v.name.as_str());
            valid.insert(v.name.as_str(), v);
        }
    }
    valid
}

fn check_volume_source(v: &Volume, path: &str, errs: &mut Errs) {
    let mut sources = volume_source_names(v);
    let Some(_first) = sources.next() else {
        errs.required(path, "must specify a volume type");
        return;
    };
    for extra in sources {
        errs.forbidden(&format!("{path}.{extra}"), "may not specify more than 1 volume type");
    }
    if let Some(limit) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref())
        && ParsedQuantity::parse(&limit.0).ok().is_none_or(|q| q.nanos() < 0)
    {
        errs.forbidden(&format!("{path}.emptyDir.sizeLimit"), "SizeLimit field must be a valid resource quantity");
    }
    if let Some(host_path) = &v.host_path {
        let field = format!("{path}.hostPath");
        if host_path.path.is_empty() {
            errs.required(&format!("{field}.path"), "");
        } else {
            check_no_backsteps(errs, &format!("{field}.path"), &host_path.path);
            let kind = host_path.type_.as_deref().unwrap_or_default();
            const TYPES: [&str; 8] =
                ["", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"];
            if !TYPES.contains(&kind) {
                errs.not_supported(&format!("{field}.type"), kind, &TYPES);
            }
        }
    }
    if let Some(secret) = &v.secret {
        let field = format!("{path}.secret");
        if secret.secret_name.as_deref().unwrap_or_default().is_empty() {
            errs.required(&format!("{field}.secretName"), "");
        }
        check_mode(errs, &format!("{field}.defaultMode"), secret.default_mode);
        check_key_to_paths(errs, &format!("{field}.items"), secret.items.as_deref());
    }
    if let Some(config_map) = &v.config_map {
        let field = format!("{path}.configMap");
        if config_map.name.is_empty() {
            errs.required(&format!("{field}.name"), "");
        }
        check_mode(errs, &format!("{field}.defaultMode"), config_map.default_mode);
        check_key_to_paths(errs, &format!("{field}.items"), config_map.items.as_deref());
    }
    if let Some(downward) = &v.downward_api {
        let field = format!("{path}.downwardAPI");
        check_mode(errs, &format!("{field}.defaultMode"), downward.default_mode);
        for (i, item) in downward.items.iter().flatten().enumerate() {
            check_relative_path(errs, &format!("{field}.items[{i}].path"), &item.path, true);
            check_mode(errs, &format!("{field}.items[{i}].mode"), item.mode);
        }
    }
    if let Some(projected) = &v.projected {
        check_mode(errs, &format!("{path}.projected.defaultMode"), projected.default_mode);
    }
    if let Some(image) = &v.image {
        if image.reference.as_deref().unwrap_or_default().is_empty() {
            errs.required(&format!("{path}.image.reference"), "");
        }
        if let Some(policy) = image.pull_policy.as_deref() {
            errs.one_of(&format!("{path}.image.pullPolicy"), Some(policy), &["Always", "IfNotPresent", "Never"]);
        }
    }
}

fn check_mode(errs: &mut Errs, field: &str, mode: Option<i32>) {
    if let Some(m) = mode
        && !(0..=0o777).contains(&m)
    {
        errs.invalid(field, &m, "must be a number between 0 and 0777 (octal), both inclusive");
    }
}

fn check_key_to_paths(errs: &mut Errs, field: &str, items: Option<&[KeyToPath]>) {
    for (i, item) in items.unwrap_or_default().iter().enumerate() {
        if item.key.is_empty() {
            errs.required(&format!("{field}[{i}].key"), "");
        }
        check_relative_path(errs, &format!("{field}[{i}].path"), &item.path, true);
        check_mode(errs, &format!("{field}[{i}].mode"), item.mode);
    }
}

/// `validateLocalDescendingPath` (plus Required when `required` and empty).
fn check_relative_path(errs: &mut Errs, field: &str, p: &str, required: bool) {
    if p.is_empty() {
        if required {
            errs.required(field, "");
        }
        return;
    }
    if p.starts_with('/') {
        errs.invalid(field, p, "must be a relative path");
    }
    check_no_backsteps(errs, field, p);
}

/// `validatePathNoBacksteps`.
fn check_no_backsteps(errs: &mut Errs, field: &str, p: &str) {
    if p.split('/').any(|part| part == "..") {
        errs.invalid(field, p, "must not contain '..'");
    }
}

// ---------------------------------------------------------------------------------------------
// Containers

fn check_container_common(c: &Container, path: &str, volumes: &BTreeMap<&str, &Volume>, errs: &mut Errs) {
    let name_path = format!("{path}.name");
    if c.name.is_empty() {
        errs.required(&name_path, "");
    } else {
        for msg in dns1123_label(&c.name) {
            errs.invalid(&name_path, &c.name, msg);
        }
    }
    if c.image.as_deref().unwrap_or_default().is_empty() {
        errs.required(&format!("{path}.image"), "");
    }
    errs.one_of(
        &format!("{path}.terminationMessagePolicy"),
        c.termination_message_policy.as_deref(),
        &["File", "FallbackToLogsOnError"],
    );
    check_ports(c, path, errs);
    check_env(c, path, errs);
    check_volume_mounts(c, path, volumes, errs);
    errs.one_of(
        &format!("{path}.imagePullPolicy"),
        c.image_pull_policy.as_deref(),
        &["Always", "IfNotPresent", "Never"],
    );
    check_resources(c, path, errs);
}

fn check_ports(c: &Container, path: &str, errs: &mut Errs) {
    let mut names = BTreeSet::new();
    for (i, p) in c.ports.iter().flatten().enumerate() {
        let path = format!("{path}.ports[{i}]");
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            let msgs = port_name(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.invalid(&format!("{path}.name"), name, msg);
                }
            } else if !names.insert(name) {
                errs.duplicate(&format!("{path}.name"), name);
            }
        }
        if p.container_port == 0 {
            errs.required(&format!("{path}.containerPort"), "");
        } else if let Some(msg) = port_num(p.container_port) {
            errs.invalid(&format!("{path}.containerPort"), &p.container_port, msg);
        }
        if let Some(host_port) = p.host_port.filter(|hp| *hp != 0)
            && let Some(msg) = port_num(host_port)
        {
            errs.invalid(&format!("{path}.hostPort"), &host_port, msg);
        }
        errs.one_of(&format!("{path}.protocol"), p.protocol.as_deref(), &["TCP", "UDP", "SCTP"]);
        if let Some(ip) = p.host_ip.as_deref().filter(|ip| !ip.is_empty()) {
            check_ip(errs, &format!("{path}.hostIP"), ip);
        }
    }
}

/// `AccumulateUniqueHostPorts`: host port + protocol + host IP must be unique.
fn check_host_port_conflicts<'a>(
    containers: impl Iterator<Item = (usize, &'a Container)>,
    list: &str,
    errs: &mut Errs,
) {
    let mut seen = BTreeSet::new();
    for (ci, c) in containers {
        for (pi, p) in c.ports.iter().flatten().enumerate() {
            let host_port = p.host_port.unwrap_or(0);
            if host_port == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{host_port}",
                p.protocol.as_deref().unwrap_or_default(),
                p.host_ip.as_deref().unwrap_or_default()
            );
            if !seen.insert(key.clone()) {
                errs.duplicate(&format!("{list}[{ci}].ports[{pi}].hostPort"), &key);
            }
        }
    }
}

fn check_env(c: &Container, path: &str, errs: &mut Errs) {
    for (i, e) in c.env.iter().flatten().enumerate() {
        let path = format!("{path}.env[{i}]");
        if e.name.is_empty() {
            errs.required(&format!("{path}.name"), "");
        } else if e.name.bytes().any(|b| !(0x20..0x7f).contains(&b) || b == b'=') {
            errs.invalid(
                &format!("{path}.name"),
                &e.name,
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            );
        }
        if let Some(from) = &e.value_from {
            let sources = [
                from.field_ref.is_some(),
                from.resource_field_ref.is_some(),
                from.config_map_key_ref.is_some(),
                from.secret_key_ref.is_some(),
                from.file_key_ref.is_some(),
            ]
            .into_iter()
            .filter(|s| *s)
            .count();
            let field = format!("{path}.valueFrom");
            if sources == 0 {
                errs.invalid(&field, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef` or `fileKeyRef`");
            } else if !e.value.as_deref().unwrap_or_default().is_empty() {
                errs.invalid(&field, "", "may not be specified when `value` is not empty");
            } else if sources > 1 {
                errs.invalid(&field, "", "may not have more than one field specified at a time");
            }
            if let Some(field_ref) = &from.field_ref {
                if field_ref.api_version.as_deref().unwrap_or_default().is_empty() {
                    errs.required(&format!("{field}.fieldRef.apiVersion"), "");
                }
                if field_ref.field_path.is_empty() {
                    errs.required(&format!("{field}.fieldRef.fieldPath"), "");
                }
            }
        }
    }
    for e in c.env_from.iter().flatten() {
        let sources = usize::from(e.config_map_ref.is_some()) + usize::from(e.secret_ref.is_some());
        let field = format!("{path}.envFrom");
        if sources == 0 {
            errs.invalid(&field, "", "must specify one of: `configMapRef` or `secretRef`");
        } else if sources > 1 {
            errs.invalid(&field, "", "may not have more than one field specified at a time");
        }
    }
}

fn check_volume_mounts(c: &Container, path: &str, volumes: &BTreeMap<&str, &Volume>, errs: &mut Errs) {
    let mut mount_points = BTreeSet::new();
    let privileged = c.security_context.as_ref().and_then(|s| s.privileged).unwrap_or(false);
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let path = format!("{path}.volumeMounts[{i}]");
        if m.name.is_empty() {
            errs.required(&format!("{path}.name"), "");
        }
        if !volumes.contains_key(m.name.as_str()) {
            errs.not_found(&format!("{path}.name"), &m.name);
        }
        if m.mount_path.is_empty() {
            errs.required(&format!("{path}.mountPath"), "");
        } else if !m.mount_path.starts_with('/') {
            errs.invalid(&format!("{path}.mountPath"), &m.mount_path, "must be an absolute path");
        }
        if !mount_points.insert(m.mount_path.as_str()) {
            errs.invalid(&format!("{path}.mountPath"), &m.mount_path, "must be unique");
        }
        let sub_path = m.sub_path.as_deref().unwrap_or_default();
        check_relative_path(errs, &format!("{path}.subPath"), sub_path, false);
        if let Some(expr) = m.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
            if !sub_path.is_empty() {
                errs.invalid(&format!("{path}.subPathExpr"), expr, "subPathExpr and subPath are mutually exclusive");
            }
            check_relative_path(errs, &format!("{path}.subPathExpr"), expr, false);
        }
        match m.mount_propagation.as_deref() {
            None | Some("None" | "HostToContainer") => {}
            Some("Bidirectional") if privileged => {}
            Some("Bidirectional") => errs.forbidden(
                &format!("{path}.mountPropagation"),
                "Bidirectional mount propagation is available only to privileged containers",
            ),
            Some(other) => errs.not_supported(
                &format!("{path}.mountPropagation"),
                other,
                &["Bidirectional", "HostToContainer", "None"],
            ),
        }
    }
}

fn check_resources(c: &Container, path: &str, errs: &mut Errs) {
    let Some(resources) = &c.resources else { return };
    let mut limits = BTreeMap::new();
    for (name, q) in resources.limits.iter().flatten() {
        if let Some(v) = check_quantity(errs, &format!("{path}.resources.limits[{name}]"), q) {
            limits.insert(name.as_str(), (v, q));
        }
    }
    for (name, q) in resources.requests.iter().flatten() {
        let field = format!("{path}.resources.requests[{name}]");
        if let Some(v) = check_quantity(errs, &field, q)
            && let Some((limit, limit_q)) = limits.get(name.as_str())
            && v > *limit
        {
            errs.invalid(&field, &q.0, format!("must be less than or equal to {name} limit of {}", limit_q.0));
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

fn check_probe(probe: Option<&Probe>, kind: ProbeKind, path: &str, errs: &mut Errs) {
    let Some(p) = probe else { return };
    let handlers = [
        ("exec", p.exec.is_some()),
        ("httpGet", p.http_get.is_some()),
        ("tcpSocket", p.tcp_socket.is_some()),
        ("grpc", p.grpc.is_some()),
    ];
    check_handler_count(&handlers, path, errs);
    if let Some(exec) = &p.exec
        && exec.command.as_ref().is_none_or(Vec::is_empty)
    {
        errs.required(&format!("{path}.exec.command"), "");
    }
    if let Some(http) = &p.http_get {
        check_http_get(http, &format!("{path}.httpGet"), errs);
    }
    if let Some(tcp) = &p.tcp_socket {
        check_port_num_or_name(&tcp.port, &format!("{path}.tcpSocket.port"), errs);
    }
    if let Some(grpc) = &p.grpc
        && let Some(msg) = port_num(grpc.port)
    {
        errs.invalid(&format!("{path}.grpc.port"), &grpc.port, msg);
    }
    for (name, value) in [
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("periodSeconds", p.period_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        if let Some(v) = value.filter(|v| *v < 0) {
            errs.invalid(&format!("{path}.{name}"), &v, "must be greater than or equal to 0");
        }
    }
    if let Some(tgps) = p.termination_grace_period_seconds {
        if kind == ProbeKind::Readiness {
            errs.invalid(
                &format!("{path}.terminationGracePeriodSeconds"),
                &tgps,
                "must not be set for readinessProbes",
            );
        } else if tgps <= 0 {
            errs.invalid(&format!("{path}.terminationGracePeriodSeconds"), &tgps, "must be greater than 0");
        }
    }
    if kind != ProbeKind::Readiness
        && let Some(st) = p.success_threshold.filter(|st| *st != 1)
    {
        errs.invalid(&format!("{path}.successThreshold"), &st, "must be 1");
    }
}

fn check_lifecycle_handler(h: &LifecycleHandler, grace: Option<i64>, path: &str, errs: &mut Errs) {
    let handlers = [
        ("exec", h.exec.is_some()),
        ("httpGet", h.http_get.is_some()),
        ("tcpSocket", h.tcp_socket.is_some()),
        ("sleep", h.sleep.is_some()),
    ];
    check_handler_count(&handlers, path, errs);
    if let Some(exec) = &h.exec
        && exec.command.as_ref().is_none_or(Vec::is_empty)
    {
        errs.required(&format!("{path}.exec.command"), "");
    }
    if let Some(http) = &h.http_get {
        check_http_get(http, &format!("{path}.httpGet"), errs);
    }
    if let Some(tcp) = &h.tcp_socket {
        check_port_num_or_name(&tcp.port, &format!("{path}.tcpSocket.port"), errs);
    }
    if let Some(sleep) = &h.sleep {
        let grace = grace.unwrap_or(30);
        if sleep.seconds <= 0 || sleep.seconds > grace {
            errs.invalid(
                &format!("{path}.sleep"),
                &sleep.seconds,
                format!("must be greater than 0 and less than terminationGracePeriodSeconds ({grace})"),
            );
        }
    }
}

fn check_handler_count(handlers: &[(&str, bool)], path: &str, errs: &mut Errs) {
    let mut set = handlers.iter().filter(|(_, s)| *s).map(|(n, _)| *n);
    if set.next().is_none() {
        errs.required(path, "must specify a handler type");
    }
    for extra in set {
        errs.forbidden(&format!("{path}.{extra}"), "may not specify more than 1 handler type");
    }
}

fn check_http_get(h: &HTTPGetAction, path: &str, errs: &mut Errs) {
    if h.path.as_deref().unwrap_or_default().is_empty() {
        errs.required(&format!("{path}.path"), "");
    }
    check_port_num_or_name(&h.port, &format!("{path}.port"), errs);
    let scheme = h.scheme.as_deref().unwrap_or_default();
    if !matches!(scheme, "HTTP" | "HTTPS") {
        errs.not_supported(&format!("{path}.scheme"), scheme, &["HTTP", "HTTPS"]);
    }
}

fn check_port_num_or_name(port: &IntOrString, path: &str, errs: &mut Errs) {
    match port {
        IntOrString::Int(n) => {
            if let Some(msg) = port_num(*n) {
                errs.invalid(path, n, msg);
            }
        }
        IntOrString::String(name) => {
            for msg in port_name(name) {
                errs.invalid(path, name, msg);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Static pods may not reference API objects

fn check_static_pod_references(spec: &PodSpec, errs: &mut Errs) {
    let mut refuse = |field: String, resource: &str| {
        errs.forbidden(&field, &format!("static pods may not reference {resource}"));
    };
    if spec.service_account_name.as_deref().is_some_and(|s| !s.is_empty()) {
        refuse("spec.serviceAccountName".to_owned(), "serviceaccounts");
    }
    for (i, s) in spec.image_pull_secrets.iter().flatten().enumerate() {
        if !s.name.is_empty() {
            refuse(format!("spec.imagePullSecrets[{i}]"), "secrets");
        }
    }
    if spec.resource_claims.as_ref().is_some_and(|c| !c.is_empty()) {
        refuse("spec.resourceClaims".to_owned(), "resourceclaims");
    }
    for (list, containers) in [
        ("containers", spec.containers.as_slice()),
        ("initContainers", spec.init_containers.as_deref().unwrap_or_default()),
    ] {
        for (ci, c) in containers.iter().enumerate() {
            let path = format!("spec.{list}[{ci}]");
            for (i, e) in c.env_from.iter().flatten().enumerate() {
                if e.config_map_ref.is_some() {
                    refuse(format!("{path}.envFrom[{i}].configMapRef"), "configmaps");
                }
                if e.secret_ref.is_some() {
                    refuse(format!("{path}.envFrom[{i}].secretRef"), "secrets");
                }
            }
            for (i, e) in c.env.iter().flatten().enumerate() {
                if let Some(from) = &e.value_from {
                    if from.config_map_key_ref.is_some() {
                        refuse(format!("{path}.env[{i}].valueFrom.configMapKeyRef"), "configmaps");
                    }
                    if from.secret_key_ref.is_some() {
                        refuse(format!("{path}.env[{i}].valueFrom.secretKeyRef"), "secrets");
                    }
                }
            }
            if let Some(claims) = c.resources.as_ref().and_then(|r| r.claims.as_ref())
                && !claims.is_empty()
            {
                refuse(format!("{path}.resources.claims"), "resourceclaims");
            }
        }
    }
    for (vi, v) in spec.volumes.iter().flatten().enumerate() {
        let path = format!("spec.volumes[{vi}]");
        let forbidden = [
            ("configMap", v.config_map.is_some(), "configmaps (via configmap volumes)"),
            ("secret", v.secret.is_some(), "secrets (via secret volumes)"),
            ("csi", v.csi.is_some(), "csidrivers (via CSI volumes)"),
            ("glusterfs", v.glusterfs.is_some(), "endpoints (via glusterFS volumes)"),
            ("persistentVolumeClaim", v.persistent_volume_claim.is_some(), "persistentvolumeclaims"),
            ("ephemeral", v.ephemeral.is_some(), "persistentvolumeclaims (via ephemeral volumes)"),
            ("azureFile", v.azure_file.is_some(), "secrets (via azureFile volumes)"),
        ];
        for (name, set, resource) in forbidden {
            if set {
                refuse(format!("{path}.{name}"), resource);
            }
        }
        // Secret references inside otherwise allowed volume types (VisitPodSecretNames).
        let secret_refs = [
            ("cephfs", v.cephfs.as_ref().is_some_and(|s| s.secret_ref.is_some())),
            ("cinder", v.cinder.as_ref().is_some_and(|s| s.secret_ref.is_some())),
            ("flexVolume", v.flex_volume.as_ref().is_some_and(|s| s.secret_ref.is_some())),
            ("rbd", v.rbd.as_ref().is_some_and(|s| s.secret_ref.is_some())),
            ("scaleIO", v.scale_io.is_some()),
            ("iscsi", v.iscsi.as_ref().is_some_and(|s| s.secret_ref.is_some())),
            ("storageos", v.storageos.as_ref().is_some_and(|s| s.secret_ref.is_some())),
        ];
        for (name, set) in secret_refs {
            if set {
                refuse(format!("{path}.{name}.secretRef"), "secrets");
            }
        }
        for (si, s) in v.projected.iter().flat_map(|p| p.sources.iter().flatten()).enumerate() {
            let field = format!("{path}.projected.sources[{si}]");
            let sources = [
                ("configMap", s.config_map.is_some(), "configmaps (via projected volumes)"),
                ("secret", s.secret.is_some(), "secrets (via projected volumes)"),
                ("serviceAccountToken", s.service_account_token.is_some(), "serviceaccounts (via projected volumes)"),
                ("clusterTrustBundle", s.cluster_trust_bundle.is_some(), "clustertrustbundles"),
                ("podCertificate", s.pod_certificate.is_some(), "podcertificates"),
            ];
            for (name, set, resource) in sources {
                if set {
                    refuse(format!("{field}.{name}"), resource);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::source::apply_defaults;

    fn defaulted(yaml: &str) -> Pod {
        let mut pod: Pod = serde_yaml::from_str(yaml).unwrap();
        apply_defaults(&mut pod, "node-1", "/etc/kubernetes/manifests/test.yaml");
        pod
    }

    fn errors(yaml: &str) -> Vec<String> {
        match validate_static_pod(&defaulted(yaml)) {
            Ok(()) => Vec::new(),
            Err(e) => e.errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_typical_static_pod_is_valid() {
        let pod = defaulted(
            r#"
metadata: {name: etcd, namespace: kube-system, labels: {component: etcd, tier: control-plane},
           annotations: {kubeadm.kubernetes.io/etcd.advertise-client-urls: "https://10.0.0.1:2379"}}
spec:
  hostNetwork: true
  priorityClassName: system-node-critical
  securityContext: {seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: etcd
    image: registry.k8s.io/etcd:3.5.15-0
    command: [etcd, --data-dir=/var/lib/etcd]
    resources: {requests: {cpu: 100m, memory: 100Mi}}
    livenessProbe:
      httpGet: {host: 127.0.0.1, path: /livez, port: 2381, scheme: HTTP}
      failureThreshold: 8
    startupProbe:
      httpGet: {host: 127.0.0.1, path: /readyz, port: 2381}
    volumeMounts:
    - {mountPath: /var/lib/etcd, name: etcd-data}
    - {mountPath: /etc/kubernetes/pki/etcd, name: etcd-certs}
  volumes:
  - {name: etcd-certs, hostPath: {path: /etc/kubernetes/pki/etcd, type: DirectoryOrCreate}}
  - {name: etcd-data, hostPath: {path: /var/lib/etcd, type: DirectoryOrCreate}}
"#,
        );
        assert_eq!(validate_static_pod(&pod), Ok(()));
    }

    #[test]
    fn reports_every_problem_with_upstream_paths() {
        let errs = errors(
            r#"
metadata: {name: web}
spec:
  restartPolicy: Sometimes
  containers:
  - name: app
    image: ""
    imagePullPolicy: Maybe
    ports:
    - {containerPort: 70000}
    - {containerPort: 80, hostPort: 8080}
    - {containerPort: 81, hostPort: 8080}
    volumeMounts:
    - {name: missing, mountPath: /data}
    - {name: multi, mountPath: relative, subPath: ../etc}
  - name: app
    image: nginx
  - name: Bad_Name
    image: nginx
  volumes:
  - name: scratch
    emptyDir: {}
  - name: scratch
    emptyDir: {}
  - name: multi
    emptyDir: {}
    hostPath: {path: /tmp}
  - name: hp
    hostPath: {path: ""}
"#,
        );
        let expected = [
            r#"spec.volumes[1].name: Duplicate value: "scratch""#,
            r#"spec.volumes[2].hostPath: Forbidden: may not specify more than 1 volume type"#,
            r#"spec.volumes[3].hostPath.path: Required value"#,
            r#"spec.containers[0].image: Required value"#,
            r#"spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"#,
            r#"spec.containers[0].volumeMounts[0].name: Not found: "missing""#,
            r#"spec.containers[0].volumeMounts[1].name: Not found: "multi""#,
            r#"spec.containers[0].volumeMounts[1].mountPath: Invalid value: "relative": must be an absolute path"#,
            r#"spec.containers[0].volumeMounts[1].subPath: Invalid value: "../etc": must not contain '..'"#,
            r#"spec.containers[0].imagePullPolicy: Unsupported value: "Maybe": supported values: "Always", "IfNotPresent", "Never""#,
            r#"spec.containers[1].name: Duplicate value: "app""#,
            r#"spec.containers[2].name: Invalid value: "Bad_Name": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name' or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"#,
            r#"spec.containers[0].ports[2].hostPort: Duplicate value: "TCP//8080""#,
            r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#,
        ];
        for e in expected {
            assert!(errs.iter().any(|got| got == e), "missing {e}\n got: {errs:#?}");
        }
        assert_eq!(errs.len(), expected.len(), "{errs:#?}");
    }

    #[test]
    fn names_and_namespace() {
        let errs = errors("metadata: {name: Web, namespace: Kube_System}\nspec: {containers: [{name: c, image: i}]}\n");
        assert!(errs.iter().any(|e| e.starts_with(r#"metadata.name: Invalid value: "Web-node-1": a lowercase RFC 1123 subdomain"#)), "{errs:#?}");
        assert!(errs.iter().any(|e| e.starts_with(r#"metadata.namespace: Invalid value: "Kube_System""#)), "{errs:#?}");
        let errs = errors("metadata: {name: web, labels: {\"bad key!\": v}}\nspec: {containers: []}\n");
        assert!(errs.contains(&"spec.containers: Required value".to_owned()), "{errs:#?}");
        assert!(
            errs.iter().any(|e| e.starts_with(r#"metadata.labels: Invalid value: "bad key!": name part must consist"#)),
            "{errs:#?}"
        );
    }

    #[test]
    fn init_containers_share_the_name_space() {
        let errs = errors(
            r#"
metadata: {name: web}
spec:
  initContainers:
  - {name: app, image: busybox, livenessProbe: {exec: {command: [true]}}}
  - {name: sidecar, image: busybox, restartPolicy: OnFailure}
  containers:
  - {name: app, image: nginx, restartPolicy: Always}
"#,
        );
        for e in [
            r#"spec.initContainers[0].name: Duplicate value: "app""#,
            "spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
            r#"spec.initContainers[1].restartPolicy: Unsupported value: "OnFailure": supported values: "Always""#,
            "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers",
        ] {
            assert!(errs.iter().any(|got| got == e), "missing {e}\n got: {errs:#?}");
        }
    }

    #[test]
    fn probes_env_resources_and_dns() {
        let errs = errors(
            r#"
metadata: {name: web}
spec:
  dnsPolicy: None
  containers:
  - name: app
    image: nginx
    env: [{name: "A=B", value: x}, {name: "", value: y}]
    resources: {limits: {cpu: 100m}, requests: {cpu: 200m, memory: lots}}
    livenessProbe: {exec: {command: [true]}, tcpSocket: {port: 80}, successThreshold: 2}
    readinessProbe: {httpGet: {port: 0}}
"#,
        );
        for e in [
            "spec.containers[0].livenessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
            "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
            "spec.containers[0].readinessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.containers[0].env[1].name: Required value",
            r#"spec.containers[0].resources.requests[cpu]: Invalid value: "200m": must be less than or equal to cpu limit of 100m"#,
            "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None",
        ] {
            assert!(errs.iter().any(|got| got == e), "missing {e}\n got: {errs:#?}");
        }
        assert!(errs.iter().any(|e| e.starts_with(r#"spec.containers[0].env[0].name: Invalid value: "A=B""#)));
        assert!(
            errs.iter()
                .any(|e| e.starts_with(r#"spec.containers[0].resources.requests[memory]: Invalid value: "lots""#))
        );
    }

    #[test]
    fn static_pods_may_not_reference_api_objects() {
        let errs = errors(
            r#"
metadata: {name: web}
spec:
  serviceAccountName: builder
  containers:
  - name: app
    image: nginx
    env: [{name: PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}]
    volumeMounts: [{name: cfg, mountPath: /cfg}]
  volumes:
  - {name: cfg, configMap: {name: cfg}}
"#,
        );
        for e in [
            "spec.serviceAccountName: Forbidden: static pods may not reference serviceaccounts",
            "spec.containers[0].env[0].valueFrom.secretKeyRef: Forbidden: static pods may not reference secrets",
            "spec.volumes[0].configMap: Forbidden: static pods may not reference configmaps (via configmap volumes)",
        ] {
            assert!(errs.iter().any(|got| got == e), "missing {e}\n got: {errs:#?}");
        }
        // The same pod is fine for plain pod validation.
        let pod = defaulted(
            "metadata: {name: web}\nspec: {volumes: [{name: c, configMap: {name: c}}], containers: [{name: a, image: b}]}\n",
        );
        assert_eq!(validate_pod(&pod), Ok(()));
    }

    #[test]
    fn error_display_names_the_pod() {
        let err = validate_pod(&defaulted("metadata: {name: web}\nspec: {containers: [{name: c}]}\n")).unwrap_err();
        assert_eq!(err.to_string(), r#"invalid pod "default/web-node-1": spec.containers[0].image: Required value"#);
    }
}
