//! Node registration and the node status loop (upstream `registerWithAPIServer` and
//! `syncNodeStatus`): register (or adopt and reconcile) the Node, then every
//! `nodeStatusUpdateFrequency` recompute its status and patch `nodes/<name>/status` when it
//! changed or when `nodeStatusReportFrequency` has passed. Runs on its own task: pod work never
//! delays it, and an unreachable API server only delays the next attempt.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use sys::node_info::MachineInfo;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::events::{EventRecord, EventSink, node_reference};
use crate::node_status::{NodeHealth, NodeSettings, initial_node, reconcile_existing, set_node_status, status_changed};

/// Upstream retries a status update this many times per period (`nodeStatusUpdateRetry`).
const STATUS_UPDATE_RETRY: usize = 5;
/// Registration backoff (upstream: 100 ms doubling to 7 s).
const REGISTER_BACKOFF_START: Duration = Duration::from_millis(100);
const REGISTER_BACKOFF_MAX: Duration = Duration::from_secs(7);

/// What the status loop asks the rest of the kubelet at each update. Called from the node
/// status task; must answer promptly (bounded by the runtime's own timeouts).
#[async_trait]
pub trait NodeHealthSource: Send + Sync + 'static {
    async fn health(&self) -> NodeHealth;
}

/// The node as last read from (or created in) the API, once it exists there: its UID owns the
/// lease and mirror pods, its labels decide pod admission.
pub type Registered = watch::Receiver<Option<Arc<Node>>>;

/// Registration and status of this node.
pub struct NodeStatusLoop {
    pub client: kube::Client,
    pub settings: NodeSettings,
    pub machine: MachineInfo,
    pub register_node: bool,
    pub update_frequency: Duration,
    pub report_frequency: Duration,
    pub health: Arc<dyn NodeHealthSource>,
    pub events: Option<EventSink>,
}

enum State {
    Registering { backoff: Duration },
    Updating { last_report: Option<Instant> },
}

impl NodeStatusLoop {
    /// Starts the loop; the returned receiver holds the node's UID once it is known.
    pub fn spawn(self, shutdown: CancellationToken) -> Registered {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(self.run(tx, shutdown));
        rx
    }

    async fn run(self, registered: watch::Sender<Option<Arc<Node>>>, shutdown: CancellationToken) {
        let mut state = if self.register_node {
            State::Registering { backoff: REGISTER_BACKOFF_START }
        } else {
            State::Updating { last_report: None }
        };
        loop {
            let wait = match self.step(&mut state, &registered).await {
                Some(d) => d,
                None => self.update_frequency,
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One step of the state machine; returns how long to wait before the next.
    async fn step(&self, state: &mut State, registered: &watch::Sender<Option<Arc<Node>>>) -> Option<Duration> {
        match state {
            State::Registering { backoff } => match self.register().await {
                Ok(node) => {
                    tracing::info!(node = %self.settings.name, "Successfully registered node");
                    registered.send_replace(Some(Arc::new(node)));
                    *state = State::Updating { last_report: None };
                    Some(Duration::ZERO)
                }
                Err(e) => {
                    tracing::warn!(node = %self.settings.name, "Unable to register node with API server: {e}");
                    let wait = *backoff;
                    *backoff = (*backoff * 2).min(REGISTER_BACKOFF_MAX);
                    Some(wait)
                }
            },
            State::Updating { last_report } => {
                let force = last_report.is_none_or(|t| t.elapsed() >= self.report_frequency);
                for attempt in 0..STATUS_UPDATE_RETRY {
                    match self.update_status(force).await {
                        Ok((node, sent)) => {
                            registered.send_replace(Some(Arc::new(node)));
                            if sent {
                                *last_report = Some(Instant::now());
                            }
                            return None;
                        }
                        Err(e) => {
                            tracing::warn!(node = %self.settings.name, attempt, "Error updating node status, will retry: {e}")
                        }
                    }
                }
                None
            }
        }
    }

    /// Creates the node, or adopts an existing one (reconciling kubelet-owned labels).
    async fn register(&self) -> Result<Node, kube::Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut node = initial_node(&self.settings);
        let health = self.health.health().await;
        let events = set_node_status(&mut node, &self.settings, &self.machine, &health, &crate::now());
        match api.create(&PostParams::default(), &node).await {
            Ok(created) => {
                self.record_event(false, "Starting", "Starting kubelet.".into());
                self.record_startup_events();
                for e in events {
                    self.record_event(
                        e.warning,
                        e.reason,
                        format!("Node {} status is now: {}", self.settings.name, e.reason),
                    );
                }
                Ok(created)
            }
            Err(kube::Error::Api(ae)) if ae.code == 409 => {
                let mut existing = api.get(&self.settings.name).await?;
                let before = existing.metadata.clone();
                if reconcile_existing(&mut existing, &self.settings) {
                    let patch = serde_json::json!({ "metadata": {
                        "labels": existing.metadata.labels,
                        "annotations": existing.metadata.annotations,
                    }});
                    api.patch(&self.settings.name, &PatchParams::default(), &Patch::Strategic(&patch)).await?;
                    tracing::info!(node = %self.settings.name, labels = ?before.labels, "reconciled the existing node's labels");
                }
                self.record_event(false, "Starting", "Starting kubelet.".into());
                self.record_startup_events();
                Ok(existing)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads the node, recomputes its status and patches it when it changed (or `force`).
    /// Returns the node as read (with the new status) and whether a patch was sent.
    async fn update_status(&self, force: bool) -> Result<(Node, bool), kube::Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let node = api.get(&self.settings.name).await?;
        let mut updated = node.clone();
        let health = self.health.health().await;
        let events = set_node_status(&mut updated, &self.settings, &self.machine, &health, &crate::now());
        if !force && !status_changed(node.status.as_ref(), updated.status.as_ref()) {
            return Ok((updated, false));
        }
        let old = serde_json::to_value(&node.status).unwrap_or_default();
        let new = serde_json::to_value(&updated.status).unwrap_or_default();
        let diff = crate::patch::two_way(&old, &new);
        let patch = serde_json::json!({ "status": diff });
        api.patch_status(&self.settings.name, &PatchParams::default(), &Patch::Strategic(&patch)).await?;
        for e in events {
            self.record_event(e.warning, e.reason, format!("Node {} status is now: {}", self.settings.name, e.reason));
        }
        Ok((updated, true))
    }

    /// What the kubelet's start left to tell about the node (node allocatable enforcement).
    fn record_startup_events(&self) {
        for (warning, reason, message) in &self.settings.startup_events {
            self.record_event(*warning, reason, message.clone());
        }
    }

    fn record_event(&self, warning: bool, reason: &str, message: String) {
        if let Some(ev) = &self.events {
            ev.record(EventRecord {
                involved: node_reference(&self.settings.name),
                warning,
                reason: reason.into(),
                message,
            });
        }
    }
}
