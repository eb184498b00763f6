//! Events to the API server (core/v1, as upstream's kubelet broadcaster writes them): a bounded
//! queue that never blocks the caller, a writer task limited by `eventRecordQPS`/`eventBurst`, and
//! client-go's aggregation: the same (object, type, reason, message) within 10 minutes bumps the
//! `count` and `lastTimestamp` of the existing Event instead of creating a new one.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::TokenBucket;

/// client-go's correlator window for counting repeats.
const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);
/// Events queued beyond this are dropped (upstream's broadcaster queue is 1000 deep).
const QUEUE: usize = 1000;

/// One event to write.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub involved: ObjectReference,
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// The object reference upstream uses for node events (the UID is the node name).
pub fn node_reference(node: &str) -> ObjectReference {
    ObjectReference { kind: Some("Node".into()), name: Some(node.into()), uid: Some(node.into()), ..Default::default() }
}

/// Handle to the event writer. Cloning is cheap; `record` never blocks.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::Sender<EventRecord>,
}

impl EventSink {
    /// Starts the writer task for `node`'s events.
    pub fn spawn(client: kube::Client, node: String, qps: f64, burst: u32, shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = Writer { client, node, bucket: TokenBucket::new(qps, burst), seen: HashMap::new() };
        tokio::spawn(writer.run(rx, shutdown));
        Self { tx }
    }

    /// Queues an event; drops it (with a debug log) when the queue is full.
    pub fn record(&self, e: EventRecord) {
        if let Err(e) = self.tx.try_send(e) {
            tracing::debug!("event dropped: {e}");
        }
    }
}

struct Seen {
    name: String,
    namespace: String,
    count: i32,
    first: Time,
    at: Instant,
}

struct Writer {
    client: kube::Client,
    node: String,
    bucket: TokenBucket,
    seen: HashMap<(String, bool, String, String), Seen>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<EventRecord>, shutdown: CancellationToken) {
        loop {
            let e = tokio::select! {
                _ = shutdown.cancelled() => return,
                e = rx.recv() => match e { Some(e) => e, None => return },
            };
            // Over the limit the event is dropped, as client-go's spam filter does.
            if self.bucket.try_take().is_err() {
                tracing::debug!(reason = %e.reason, "event dropped by eventRecordQPS");
                continue;
            }
            if let Err(err) = self.write(&e).await {
                tracing::warn!(reason = %e.reason, "writing event: {err}");
            }
        }
    }

    async fn write(&mut self, e: &EventRecord) -> Result<(), kube::Error> {
        self.seen.retain(|_, s| s.at.elapsed() < AGGREGATE_WINDOW);
        let obj_key = e.involved.uid.clone().or_else(|| e.involved.name.clone()).unwrap_or_default();
        let key = (obj_key, e.warning, e.reason.clone(), e.message.clone());
        let now = crate::now();
        if let Some(s) = self.seen.get_mut(&key) {
            s.count += 1;
            s.at = Instant::now();
            let api: Api<Event> = Api::namespaced(self.client.clone(), &s.namespace);
            let patch = serde_json::json!({ "count": s.count, "lastTimestamp": now });
            match api.patch(&s.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(()),
                // The event expired on the server: write a new one below.
                Err(kube::Error::Api(ae)) if ae.code == 404 => {}
                Err(err) => return Err(err),
            }
        }
        let namespace = e.involved.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into());
        let name = format!(
            "{}.{:x}",
            e.involved.name.as_deref().unwrap_or("unknown"),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        );
        let first = self.seen.get(&key).map(|s| s.first.clone()).unwrap_or_else(|| now.clone());
        let count = self.seen.get(&key).map(|s| s.count).unwrap_or(1);
        let ev = Event {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(namespace.clone()), ..Default::default() },
            involved_object: e.involved.clone(),
            reason: Some(e.reason.clone()),
            message: Some(e.message.clone()),
            type_: Some(if e.warning { "Warning" } else { "Normal" }.into()),
            source: Some(EventSource { component: Some("kubelet".into()), host: Some(self.node.clone()) }),
            first_timestamp: Some(first.clone()),
            last_timestamp: Some(now.clone()),
            event_time: None::<MicroTime>,
            count: Some(count),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.node.clone()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), &ev).await?;
        self.seen.insert(key, Seen { name, namespace, count, first, at: Instant::now() });
        Ok(())
    }
}
