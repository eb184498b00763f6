//! The pod config merger: keeps each source's latest desired set and turns every
//! [`SourceSnapshot`] into incremental [`PodUpdate`]s, as upstream's `podStorage.merge` in
//! `pkg/kubelet/config/config.go` does in `PodConfigNotificationIncremental` mode.
//!
//! * new UIDs are `Add`ed and get `kubernetes.io/config.seen` (first-seen time);
//! * UIDs gone from the source's set are `Remove`d;
//! * a pod whose spec, labels, deletion timestamp/grace period or non-local annotations changed
//!   is an `Update` (upstream's graceful-delete `DELETE` op is folded into `Update`: the kubelet
//!   handles both the same way);
//! * a pod whose only change is its status is a `Reconcile`;
//! * anything else is a no-op.
//!
//! Every pod is annotated with `kubernetes.io/config.source` before comparison. For file pods
//! the UID is a hash of the manifest, so editing a manifest removes the old pod and adds a new
//! one, exactly as upstream.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;

use super::{CONFIG_MIRROR_ANNOTATION, CONFIG_SEEN_ANNOTATION, CONFIG_SOURCE_ANNOTATION, SourceSnapshot};

/// What happened to the pods of a [`PodUpdate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PodOp {
    /// Pods new to the kubelet.
    Add,
    /// Pods whose desired state changed (including being marked for graceful deletion).
    Update,
    /// Pods no longer wanted by their source.
    Remove,
    /// Pods whose only change is their status (the kubelet is the source of truth for it).
    Reconcile,
}

/// One incremental change to the desired set of pods.
#[derive(Debug, Clone, PartialEq)]
pub struct PodUpdate {
    pub op: PodOp,
    pub pods: Vec<Pod>,
}

/// Annotations the kubelet itself maintains; ignored when comparing pods.
const LOCAL_ANNOTATIONS: [&str; 3] = [CONFIG_SOURCE_ANNOTATION, CONFIG_MIRROR_ANNOTATION, CONFIG_SEEN_ANNOTATION];

/// Merges the desired sets of all pod sources.
#[derive(Debug, Default)]
pub struct PodConfig {
    /// Sources that are expected to report (upstream: the channels created).
    sources: BTreeSet<&'static str>,
    /// Sources that sent at least one snapshot.
    seen: BTreeSet<&'static str>,
    /// source → UID → pod.
    pods: BTreeMap<&'static str, BTreeMap<String, Pod>>,
}

impl PodConfig {
    /// A merger expecting snapshots from `sources` (e.g. `[FILE_SOURCE]`). A snapshot from
    /// another source registers it.
    pub fn new(sources: impl IntoIterator<Item = &'static str>) -> Self {
        Self { sources: sources.into_iter().collect(), ..Self::default() }
    }

    /// Replaces `snapshot.source`'s desired set and returns the resulting changes, in upstream's
    /// order: Remove, Add, Update, Reconcile. The first snapshot of a source that yields no
    /// Add/Update produces an empty `Add` so the kubelet learns the source is ready.
    pub fn merge(&mut self, snapshot: SourceSnapshot) -> Vec<PodUpdate> {
        let source = snapshot.source;
        self.sources.insert(source);
        let first_set = self.seen.insert(source);
        let mut old = self.pods.remove(source).unwrap_or_default();
        let mut current = BTreeMap::new();
        let (mut adds, mut updates, mut reconciles) = (Vec::new(), Vec::new(), Vec::new());

        for mut pod in filter_duplicate_names(snapshot.pods, source) {
            let Some(uid) = pod.metadata.uid.clone().filter(|u| !u.is_empty()) else {
                tracing::warn!(source, pod = %full_name(&pod), "Ignoring pod without a UID");
                continue;
            };
            pod.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(CONFIG_SOURCE_ANNOTATION.to_owned(), source.to_owned());
            match old.remove(&uid) {
                Some(mut existing) => {
                    match check_and_update(&mut existing, pod) {
                        Change::Update => updates.push(existing.clone()),
                        Change::Reconcile => reconciles.push(existing.clone()),
                        Change::None => {}
                    }
                    current.insert(uid, existing);
                }
                None => {
                    if current.contains_key(&uid) {
                        tracing::warn!(source, pod = %full_name(&pod), uid, "Ignoring second pod with the same UID");
                        continue;
                    }
                    record_first_seen(&mut pod);
                    adds.push(pod.clone());
                    current.insert(uid, pod);
                }
            }
        }
        let removes: Vec<Pod> = old.into_values().collect();
        self.pods.insert(source, current);

        let mut out = Vec::new();
        if !removes.is_empty() {
            out.push(PodUpdate { op: PodOp::Remove, pods: removes });
        }
        let announce = first_set && adds.is_empty() && updates.is_empty();
        if !adds.is_empty() || announce {
            out.push(PodUpdate { op: PodOp::Add, pods: adds });
        }
        if !updates.is_empty() {
            out.push(PodUpdate { op: PodOp::Update, pods: updates });
        }
        if !reconciles.is_empty() {
            out.push(PodUpdate { op: PodOp::Reconcile, pods: reconciles });
        }
        out
    }

    /// Every pod of every source, sources in name order, pods in UID order.
    pub fn all_pods(&self) -> Vec<Pod> {
        self.pods.values().flat_map(|pods| pods.values().cloned()).collect()
    }

    /// Whether every registered source has sent at least one snapshot.
    pub fn seen_all_sources(&self) -> bool {
        self.sources.is_subset(&self.seen)
    }
}

fn full_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// upstream `filterInvalidPods`: a pod whose namespace/name is already taken in the same set is
/// ignored (the first one wins).
fn filter_duplicate_names(pods: Vec<Pod>, source: &str) -> Vec<Pod> {
    let mut names = BTreeSet::new();
    pods.into_iter()
        .enumerate()
        .filter(|(i, pod)| {
            let name = full_name(pod);
            let fresh = names.insert(name.clone());
            if !fresh {
                tracing::warn!(index = i, pod = %name, source, "Pod failed validation due to duplicate pod name, ignoring");
            }
            fresh
        })
        .map(|(_, pod)| pod)
        .collect()
}

/// `kubernetes.io/config.seen`: RFC 3339 with nanoseconds, trailing zeros trimmed, like Go's
/// `time.RFC3339Nano` (in UTC here rather than local time).
pub(crate) fn rfc3339_nano(t: chrono::DateTime<chrono::Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = format!("{:09}", t.timestamp_subsec_nanos());
    let nanos = nanos.trim_end_matches('0');
    if nanos.is_empty() { format!("{base}Z") } else { format!("{base}.{nanos}Z") }
}

fn record_first_seen(pod: &mut Pod) {
    pod.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(CONFIG_SEEN_ANNOTATION.to_owned(), rfc3339_nano(chrono::Utc::now()));
}

fn is_local_annotation(key: &str) -> bool {
    LOCAL_ANNOTATIONS.contains(&key)
}

fn non_local_annotations(pod: &Pod) -> BTreeMap<&str, &str> {
    pod.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| !is_local_annotation(k))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn differ_semantically(existing: &Pod, new: &Pod) -> bool {
    let labels = |p: &Pod| p.metadata.labels.clone().unwrap_or_default();
    existing.spec != new.spec
        || labels(existing) != labels(new)
        || existing.metadata.deletion_timestamp != new.metadata.deletion_timestamp
        || existing.metadata.deletion_grace_period_seconds != new.metadata.deletion_grace_period_seconds
        || non_local_annotations(existing) != non_local_annotations(new)
}

enum Change {
    None,
    Update,
    Reconcile,
}

/// upstream `checkAndUpdatePod`: updates `existing` in place from `new`.
fn check_and_update(existing: &mut Pod, new: Pod) -> Change {
    if !differ_semantically(existing, &new) {
        if existing.status != new.status {
            existing.status = new.status;
            return Change::Reconcile;
        }
        return Change::None;
    }
    // New annotations, but the kubelet's own (first-seen time, source, mirror) are kept.
    let mut annotations = new.metadata.annotations.unwrap_or_default();
    for key in LOCAL_ANNOTATIONS {
        if let Some(v) = existing.metadata.annotations.as_ref().and_then(|a| a.get(key)) {
            annotations.insert(key.to_owned(), v.clone());
        }
    }
    existing.spec = new.spec;
    existing.metadata.labels = new.metadata.labels;
    existing.metadata.deletion_timestamp = new.metadata.deletion_timestamp;
    existing.metadata.deletion_grace_period_seconds = new.metadata.deletion_grace_period_seconds;
    existing.metadata.annotations = Some(annotations);
    existing.status = new.status;
    Change::Update
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::source::FILE_SOURCE;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, uid: &str, image: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container { name: "c".into(), image: Some(image.into()), ..Default::default() }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn snap(pods: Vec<Pod>) -> SourceSnapshot {
        SourceSnapshot { source: FILE_SOURCE, pods }
    }

    fn ops(updates: &[PodUpdate]) -> Vec<(PodOp, Vec<String>)> {
        updates
            .iter()
            .map(|u| {
                let uids = u.pods.iter().map(|p| p.metadata.uid.clone().unwrap()).collect();
                (u.op, uids)
            })
            .collect()
    }

    fn annotation<'a>(p: &'a Pod, key: &str) -> Option<&'a str> {
        p.metadata.annotations.as_ref()?.get(key).map(String::as_str)
    }

    #[test]
    fn first_empty_snapshot_announces_the_source() {
        let mut config = PodConfig::new([FILE_SOURCE]);
        assert!(!config.seen_all_sources());
        let updates = config.merge(snap(vec![]));
        assert_eq!(updates, vec![PodUpdate { op: PodOp::Add, pods: vec![] }]);
        assert!(config.seen_all_sources());
        assert!(config.merge(snap(vec![])).is_empty(), "later empty snapshots are no-ops");
    }

    #[test]
    fn add_noop_update_reconcile_remove() {
        let mut config = PodConfig::new([FILE_SOURCE, "api"]);
        let updates = config.merge(snap(vec![pod("a", "1", "nginx"), pod("b", "2", "nginx")]));
        assert_eq!(ops(&updates), vec![(PodOp::Add, vec!["1".into(), "2".into()])]);
        let added = &updates[0].pods[0];
        assert_eq!(annotation(added, CONFIG_SOURCE_ANNOTATION), Some(FILE_SOURCE));
        let seen = annotation(added, CONFIG_SEEN_ANNOTATION).unwrap().to_owned();
        assert!(seen.ends_with('Z') && seen.contains('T'), "{seen}");
        assert!(!config.seen_all_sources(), "the api source has not reported yet");

        // Same content again: nothing to do, first-seen time unchanged.
        assert!(config.merge(snap(vec![pod("a", "1", "nginx"), pod("b", "2", "nginx")])).is_empty());

        // Spec change with the same UID: Update, config.seen kept.
        let updates = config.merge(snap(vec![pod("a", "1", "nginx:2"), pod("b", "2", "nginx")]));
        assert_eq!(ops(&updates), vec![(PodOp::Update, vec!["1".into()])]);
        assert_eq!(annotation(&updates[0].pods[0], CONFIG_SEEN_ANNOTATION), Some(seen.as_str()));
        assert_eq!(updates[0].pods[0].spec.as_ref().unwrap().containers[0].image.as_deref(), Some("nginx:2"));

        // A new local annotation value alone is not a change.
        let mut a = pod("a", "1", "nginx:2");
        a.metadata.annotations = Some(BTreeMap::from([(CONFIG_SEEN_ANNOTATION.to_owned(), "x".to_owned())]));
        assert!(config.merge(snap(vec![a, pod("b", "2", "nginx")])).is_empty());

        // Status only: Reconcile.
        let mut b = pod("b", "2", "nginx");
        b.status = Some(PodStatus { phase: Some("Pending".into()), ..Default::default() });
        let updates = config.merge(snap(vec![pod("a", "1", "nginx:2"), b]));
        assert_eq!(ops(&updates), vec![(PodOp::Reconcile, vec!["2".into()])]);

        // b gone, c new: Remove then Add.
        let updates = config.merge(snap(vec![pod("a", "1", "nginx:2"), pod("c", "3", "redis")]));
        assert_eq!(ops(&updates), vec![(PodOp::Remove, vec!["2".into()]), (PodOp::Add, vec!["3".into()])]);
        let mut all: Vec<_> = config.all_pods().iter().map(|p| p.metadata.uid.clone().unwrap()).collect();
        all.sort();
        assert_eq!(all, vec!["1".to_owned(), "3".to_owned()]);

        assert_eq!(config.merge(SourceSnapshot { source: "api", pods: vec![] }).len(), 1);
        assert!(config.seen_all_sources());
    }

    #[test]
    fn label_and_annotation_changes_are_updates() {
        let mut config = PodConfig::new([FILE_SOURCE]);
        config.merge(snap(vec![pod("a", "1", "nginx")]));
        let mut a = pod("a", "1", "nginx");
        a.metadata.labels = Some(BTreeMap::from([("app".to_owned(), "web".to_owned())]));
        assert_eq!(ops(&config.merge(snap(vec![a.clone()]))), vec![(PodOp::Update, vec!["1".into()])]);
        a.metadata.annotations = Some(BTreeMap::from([("team".to_owned(), "x".to_owned())]));
        assert_eq!(ops(&config.merge(snap(vec![a]))), vec![(PodOp::Update, vec!["1".into()])]);
    }

    #[test]
    fn duplicate_names_keep_the_first_pod() {
        let mut config = PodConfig::new([FILE_SOURCE]);
        let updates = config.merge(snap(vec![pod("a", "1", "nginx"), pod("a", "2", "redis")]));
        assert_eq!(ops(&updates), vec![(PodOp::Add, vec!["1".into()])]);
    }

    #[test]
    fn rfc3339_nano_trims_zeros() {
        use chrono::TimeZone;
        let t = chrono::Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap();
        assert_eq!(rfc3339_nano(t), "2024-05-06T07:08:09Z");
        let t = t + chrono::Duration::nanoseconds(120_000_000);
        assert_eq!(rfc3339_nano(t), "2024-05-06T07:08:09.12Z");
    }
}
