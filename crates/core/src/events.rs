//! Event recording seam. Upstream writes Events to the API server; without one (standalone mode)
//! they are logged with the same type, reason and message so an operator sees the same words.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{ObjectReference, Pod};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// An event about an object (a pod, or the node).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `namespace/name` of the pod, or `node/<name>`.
    pub object: String,
    /// The pod's reference, for the API server's copy of the event.
    pub involved: Option<ObjectReference>,
    pub kind: EventType,
    pub reason: &'static str,
    pub message: String,
}

/// Records events. Contract: never blocks, never fails (dropping an event is acceptable; failing
/// a pod sync because an event could not be written is not).
pub trait EventRecorder: Send + Sync + 'static {
    fn record(&self, event: Event);
}

/// Helper: the `namespace/name` key used in events and logs.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// An event about one container of `pod`: the reference's `fieldPath` names it as upstream's
/// container references do (`spec.containers{app}`, `spec.initContainers{init}`), which
/// `kubectl get events` shows as the sub-object.
pub fn container_event(
    pod: &Pod,
    container: &str,
    kind: EventType,
    reason: &'static str,
    message: impl Into<String>,
) -> Event {
    let mut e = pod_event(pod, kind, reason, message);
    if let Some(r) = e.involved.as_mut() {
        r.field_path = Some(container_field_path(pod, container));
    }
    e
}

/// `spec.containers{name}`, `spec.initContainers{name}` or `spec.ephemeralContainers{name}`.
pub fn container_field_path(pod: &Pod, container: &str) -> String {
    let spec = pod.spec.as_ref();
    let list = if spec.and_then(|s| s.init_containers.as_ref()).is_some_and(|l| l.iter().any(|c| c.name == container)) {
        "initContainers"
    } else if spec.and_then(|s| s.ephemeral_containers.as_ref()).is_some_and(|l| l.iter().any(|c| c.name == container))
    {
        "ephemeralContainers"
    } else {
        "containers"
    };
    format!("spec.{list}{{{container}}}")
}

pub fn pod_event(pod: &Pod, kind: EventType, reason: &'static str, message: impl Into<String>) -> Event {
    let involved = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(pod.metadata.namespace.clone().unwrap_or_else(|| "default".into())),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    };
    Event { object: pod_key(pod), involved: Some(involved), kind, reason, message: message.into() }
}

/// An event about the node (upstream's `nodeRef`: kind Node, the node's name as name and UID).
pub fn node_event(node: &str, kind: EventType, reason: &'static str, message: impl Into<String>) -> Event {
    Event {
        object: format!("node/{node}"),
        involved: Some(api::events::node_reference(node)),
        kind,
        reason,
        message: message.into(),
    }
}

/// Events to the API server as well as the log (upstream's broadcaster logs every event too).
pub struct ApiRecorder(pub api::events::EventSink);

impl EventRecorder for ApiRecorder {
    fn record(&self, e: Event) {
        if let Some(involved) = e.involved.clone() {
            self.0.record(api::events::EventRecord {
                involved,
                warning: e.kind == EventType::Warning,
                reason: e.reason.to_string(),
                message: e.message.clone(),
            });
        }
        LogRecorder.record(e);
    }
}

/// Writes events to the log.
#[derive(Debug, Default)]
pub struct LogRecorder;

impl EventRecorder for LogRecorder {
    fn record(&self, e: Event) {
        match e.kind {
            EventType::Normal => tracing::info!(object = %e.object, reason = e.reason, "event: {}", e.message),
            EventType::Warning => tracing::warn!(object = %e.object, reason = e.reason, "event: {}", e.message),
        }
    }
}

/// Keeps events in memory for assertions in tests.
#[derive(Debug, Default, Clone)]
pub struct MemoryRecorder(Arc<Mutex<Vec<Event>>>);

impl MemoryRecorder {
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
    pub fn reasons(&self) -> Vec<&'static str> {
        self.events().iter().map(|e| e.reason).collect()
    }
}

impl EventRecorder for MemoryRecorder {
    fn record(&self, e: Event) {
        if let Ok(mut v) = self.0.lock() {
            v.push(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_events_name_their_container_as_upstream_references_do() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "prod", "uid": "u1"},
            "spec": {
                "initContainers": [{"name": "init", "image": "i"}],
                "containers": [{"name": "app", "image": "i"}],
                "ephemeralContainers": [{"name": "debug", "image": "i"}]
            }
        }))
        .unwrap_or_default();
        let path =
            |c: &str| container_event(&pod, c, EventType::Normal, "Started", "x").involved.and_then(|r| r.field_path);
        assert_eq!(path("app").as_deref(), Some("spec.containers{app}"));
        assert_eq!(path("init").as_deref(), Some("spec.initContainers{init}"));
        assert_eq!(path("debug").as_deref(), Some("spec.ephemeralContainers{debug}"));
        let pod_level = pod_event(&pod, EventType::Warning, "FailedMount", "x").involved.expect("reference");
        assert_eq!(pod_level.field_path, None);
        assert_eq!((pod_level.namespace.as_deref(), pod_level.uid.as_deref()), (Some("prod"), Some("u1")));
    }
}
