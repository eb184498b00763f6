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
