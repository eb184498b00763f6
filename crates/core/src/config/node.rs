//! Settings of the Node object the kubelet registers: `--node-labels` and
//! `--register-with-taints` / `registerWithTaints`, parsed and validated as upstream does
//! (`cliflag.ConfigurationMap`, `utiltaints.ParseTaints`, `ValidateKubeletFlags`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;

/// Label prefixes a kubelet may set in the `kubernetes.io` / `k8s.io` namespaces
/// (`kubeletapis.KubeletLabelNamespaces`).
pub const KUBELET_LABEL_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

/// `kubernetes.io` / `k8s.io` labels a kubelet may set (`kubeletapis.KubeletLabels`).
pub const KUBELET_LABELS: &[&str] = &[
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/instance-type",
    "beta.kubernetes.io/os",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "kubernetes.io/arch",
    "kubernetes.io/hostname",
    "kubernetes.io/os",
    "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];

/// Taint effects a node may register with.
pub const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Adds `k=v,k2=v2` pairs to `labels` (a pair without `=` gets an empty value; keys and values
/// are trimmed; empty items are skipped). Repeating the flag adds to the same map, as upstream.
pub fn parse_node_labels_into(labels: &mut BTreeMap<String, String>, s: &str) {
    for item in s.split(',').filter(|i| !i.is_empty()) {
        let (k, v) = item.split_once('=').unwrap_or((item, ""));
        labels.insert(k.trim().to_owned(), v.trim().to_owned());
    }
}

/// Upstream's `ValidateKubeletFlags` for node labels: kubelets may only set labels in the
/// `kubernetes.io` / `k8s.io` namespaces that the NodeRestriction admission plugin allows.
pub fn validate_node_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    let unknown: Vec<&str> =
        labels.keys().map(String::as_str).filter(|k| is_kubernetes_label(k) && !is_kubelet_label(k)).collect();
    if !unknown.is_empty() {
        return Err(format!(
            "unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: [{}]\n\
             --node-labels in the 'kubernetes.io' namespace must begin with an allowed prefix ({}) \
             or be in the specifically allowed set ({})",
            unknown.join(" "),
            KUBELET_LABEL_NAMESPACES.join(", "),
            KUBELET_LABELS.join(", ")
        ));
    }
    let mut invalid = Vec::new();
    for (k, v) in labels {
        let errs = qualified_name_errors(k);
        if !errs.is_empty() {
            invalid.push(format!("'{k}' - {}", errs.join(", ")));
        }
        let errs = label_value_errors(v);
        if !errs.is_empty() {
            invalid.push(format!("'{v}' - {}", errs.join(", ")));
        }
    }
    if invalid.is_empty() { Ok(()) } else { Err(format!("invalid node labels: {}", invalid.join("; "))) }
}

fn label_namespace(key: &str) -> &str {
    key.split_once('/').map_or("", |(ns, _)| ns)
}

fn is_kubernetes_label(key: &str) -> bool {
    let ns = label_namespace(key);
    ns == "kubernetes.io" || ns.ends_with(".kubernetes.io") || ns == "k8s.io" || ns.ends_with(".k8s.io")
}

fn is_kubelet_label(key: &str) -> bool {
    let ns = label_namespace(key);
    KUBELET_LABELS.contains(&key)
        || KUBELET_LABEL_NAMESPACES.iter().any(|allowed| ns == *allowed || ns.ends_with(&format!(".{allowed}")))
}

/// Parses `--register-with-taints`: comma-separated `<key>=<value>:<effect>` or `<key>:<effect>`
/// (upstream's `RegisterWithTaintsVar` over `ParseTaints`). An empty string means no taints.
/// Specs ending in `-` (removals, meaningful only to `kubectl taint`) are dropped, as upstream.
pub fn parse_taints(s: &str) -> Result<Vec<Taint>, String> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut taints: Vec<Taint> = Vec::new();
    for spec in s.split(',') {
        if let Some(removal) = spec.strip_suffix('-') {
            parse_taint(removal)?;
            continue;
        }
        let taint = parse_taint(spec)?;
        if taint.effect.is_empty() {
            return Err(format!("invalid taint spec: {spec}"));
        }
        if taints.iter().any(|t| t.key == taint.key && t.effect == taint.effect) {
            return Err(format!("duplicated taints with the same key and effect: {}", describe_taint(&taint)));
        }
        taints.push(taint);
    }
    Ok(taints)
}

/// One `<key>[=<value>][:<effect>]`.
fn parse_taint(spec: &str) -> Result<Taint, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (key, value, effect) = match parts.as_slice() {
        [key] => (*key, "", ""),
        [kv, effect] => {
            if !TAINT_EFFECTS.contains(effect) {
                return Err(format!("invalid taint effect: {effect}, unsupported taint effect"));
            }
            let kv: Vec<&str> = kv.split('=').collect();
            match kv.as_slice() {
                [key] => (*key, "", *effect),
                [key, value] => {
                    let errs = label_value_errors(value);
                    if !errs.is_empty() {
                        return Err(format!("invalid taint spec: {spec}, {}", errs.join("; ")));
                    }
                    (*key, *value, *effect)
                }
                _ => return Err(format!("invalid taint spec: {spec}")),
            }
        }
        _ => return Err(format!("invalid taint spec: {spec}")),
    };
    let errs = qualified_name_errors(key);
    if !errs.is_empty() {
        return Err(format!("invalid taint spec: {spec}, {}", errs.join("; ")));
    }
    Ok(Taint {
        key: key.to_owned(),
        value: (!value.is_empty()).then(|| value.to_owned()),
        effect: effect.to_owned(),
        time_added: None,
    })
}

/// `key=value:Effect`, as upstream prints a taint.
pub fn describe_taint(t: &Taint) -> String {
    match t.value.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => format!("{}={v}:{}", t.key, t.effect),
        None => format!("{}:{}", t.key, t.effect),
    }
}

/// Checks taints from a config file like the flag parser does; one message per problem.
pub fn validate_taints(taints: &[Taint]) -> Vec<String> {
    let mut errs = Vec::new();
    for (i, t) in taints.iter().enumerate() {
        let field = format!("registerWithTaints[{i}]");
        for e in qualified_name_errors(&t.key) {
            errs.push(format!("{field}.key {:?}: {e}", t.key));
        }
        for e in label_value_errors(t.value.as_deref().unwrap_or("")) {
            errs.push(format!("{field}.value {:?}: {e}", t.value.as_deref().unwrap_or("")));
        }
        if !TAINT_EFFECTS.contains(&t.effect.as_str()) {
            errs.push(format!("{field}.effect {:?} must be one of {}", t.effect, TAINT_EFFECTS.join(", ")));
        }
        if taints[..i].iter().any(|o| o.key == t.key && o.effect == t.effect) {
            errs.push(format!("{field}: duplicated taints with the same key and effect: {}", describe_taint(t)));
        }
    }
    errs
}

// The apimachinery validators below have a twin in `source::validation` (pod validation);
// that one is private to its module, so the few lines are repeated here.

fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b.first().is_some_and(u8::is_ascii_alphanumeric)
                && b.last().is_some_and(u8::is_ascii_alphanumeric)
        })
}

/// `validation.IsQualifiedName`.
fn qualified_name_errors(value: &str) -> Vec<String> {
    const NAME: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start \
                        and end with an alphanumeric character (e.g. 'MyName', or 'my.name', or '123-abc', \
                        regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    let mut errs = Vec::new();
    let name = match value.split('/').collect::<Vec<_>>().as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_owned());
            } else if !is_dns1123_subdomain(prefix) {
                errs.push(
                    "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
                     characters, '-' or '.', and must start and end with an alphanumeric character"
                        .to_owned(),
                );
            }
            *name
        }
        _ => {
            errs.push(format!("a qualified name {NAME} with an optional DNS subdomain prefix and '/'"));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else {
        if name.len() > 63 {
            errs.push("name part must be no more than 63 characters".to_owned());
        }
        if !is_name_part(name) {
            errs.push(NAME.to_owned());
        }
    }
    errs
}

/// `validation.IsValidLabelValue`.
fn label_value_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 characters".to_owned());
    }
    if !value.is_empty() && !is_name_part(value) {
        errs.push(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', \
             and must start and end with an alphanumeric character"
                .to_owned(),
        );
    }
    errs
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint { key: key.into(), value: value.map(Into::into), effect: effect.into(), time_added: None }
    }

    #[test]
    fn node_labels_parse_like_configuration_map() {
        let mut m = BTreeMap::new();
        parse_node_labels_into(&mut m, "a=1, b = 2 ,,c,node-role.kubernetes.io/worker=");
        parse_node_labels_into(&mut m, "a=3");
        let want: BTreeMap<String, String> =
            [("a", "3"), ("b", "2"), ("c", ""), ("node-role.kubernetes.io/worker", "")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        assert_eq!(m, want);
    }

    #[test]
    fn node_labels_validated_like_upstream() {
        let ok: BTreeMap<String, String> = [
            ("kubernetes.io/hostname", "n1"),
            ("node.kubernetes.io/exclude-from-external-load-balancers", ""),
            ("foo.node.kubernetes.io/x", "y"),
            ("example.com/team", "a_b.c-d"),
            ("plain", "v"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(validate_node_labels(&ok), Ok(()));

        let restricted: BTreeMap<String, String> =
            [("node-role.kubernetes.io/control-plane".to_owned(), String::new())].into_iter().collect();
        let err = validate_node_labels(&restricted).unwrap_err();
        assert!(err.starts_with("unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: [node-role.kubernetes.io/control-plane]"), "{err}");
        assert!(err.contains("allowed prefix (kubelet.kubernetes.io, node.kubernetes.io)"), "{err}");

        let bad: BTreeMap<String, String> = [("bad key".to_owned(), "-x".to_owned())].into_iter().collect();
        let err = validate_node_labels(&bad).unwrap_err();
        assert!(err.starts_with("invalid node labels: 'bad key' - name part must consist"), "{err}");
        assert!(err.contains("'-x' - a valid label must be an empty string"), "{err}");
    }

    #[test]
    fn taints_parse_like_upstream() {
        assert_eq!(parse_taints("").unwrap(), vec![]);
        assert_eq!(parse_taints("  ").unwrap(), vec![]);
        assert_eq!(
            parse_taints("dedicated=gpu:NoSchedule,example.com/maint:NoExecute,b=:PreferNoSchedule").unwrap(),
            vec![
                taint("dedicated", Some("gpu"), "NoSchedule"),
                taint("example.com/maint", None, "NoExecute"),
                taint("b", None, "PreferNoSchedule"),
            ]
        );
        // A removal spec is validated and dropped.
        assert_eq!(parse_taints("a:NoSchedule,old:NoSchedule-").unwrap(), vec![taint("a", None, "NoSchedule")]);
    }

    #[test]
    fn taint_errors_name_the_spec() {
        for (spec, want) in [
            ("key", "invalid taint spec: key"),
            ("k=v", "invalid taint spec: k=v"),
            ("k=v:Sometimes", "invalid taint effect: Sometimes, unsupported taint effect"),
            ("k=v=w:NoSchedule", "invalid taint spec: k=v=w:NoSchedule"),
            ("a:b:NoSchedule", "invalid taint spec: a:b:NoSchedule"),
            ("k=-v:NoSchedule", "invalid taint spec: k=-v:NoSchedule, a valid label must be"),
            ("bad key=v:NoSchedule", "invalid taint spec: bad key=v:NoSchedule, name part must consist"),
            ("a=1:NoSchedule,a=2:NoSchedule", "duplicated taints with the same key and effect: a=2:NoSchedule"),
        ] {
            let err = parse_taints(spec).unwrap_err();
            assert!(err.starts_with(want), "{spec}: {err}");
        }
        // Same key with different effects is fine.
        assert_eq!(parse_taints("a:NoSchedule,a:NoExecute").unwrap().len(), 2);
    }

    #[test]
    fn file_taints_are_validated() {
        assert!(validate_taints(&[taint("a", Some("b"), "NoSchedule")]).is_empty());
        let errs = validate_taints(&[
            taint("", None, "NoSchedule"),
            taint("a", Some("b c"), "Never"),
            taint("a", None, "Never"),
        ]);
        assert_eq!(errs.len(), 5, "{errs:#?}");
        assert!(errs[0].starts_with("registerWithTaints[0].key \"\": name part must be non-empty"), "{errs:#?}");
        assert!(errs[2].contains("registerWithTaints[1].effect \"Never\" must be one of"), "{errs:#?}");
        assert!(errs[4].contains("duplicated taints"), "{errs:#?}");
    }
}
