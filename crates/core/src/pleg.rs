//! PLEG, the pod lifecycle event generator (upstream `GenericPLEG`): relists the runtime every
//! period and turns differences into per-pod events that wake the pod's worker. It also tells
//! `/healthz` whether relisting still works.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cri::{RuntimeService, api};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use crate::metrics::KubeletMetrics;
use tokio_util::sync::CancellationToken;

use crate::runtime::labels;

/// Upstream's `relistThreshold`: PLEG is unhealthy when no relist finished for this long.
pub const RELIST_THRESHOLD: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlegEventType {
    ContainerStarted,
    ContainerDied,
    ContainerRemoved,
    ContainerChanged,
    SandboxChanged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlegEvent {
    pub pod_uid: String,
    pub kind: PlegEventType,
    /// Container or sandbox id.
    pub id: String,
}

/// A runtime object's state as seen by one relist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Container(i32),
    Sandbox(i32),
}

/// Shared liveness of the relist loop.
#[derive(Debug, Clone)]
pub struct PlegHealth(Arc<Mutex<Option<Instant>>>);

impl PlegHealth {
    /// Ok while a relist finished within `RELIST_THRESHOLD`; before the first relist too
    /// (upstream treats the start-up as healthy).
    pub fn check(&self) -> Result<(), String> {
        match self.0.lock().ok().and_then(|t| *t) {
            Some(t) if t.elapsed() > RELIST_THRESHOLD => {
                Err(format!("pleg was last seen active {:?} ago; threshold is {:?}", t.elapsed(), RELIST_THRESHOLD))
            }
            _ => Ok(()),
        }
    }
}

pub struct Pleg {
    runtime: Arc<dyn RuntimeService>,
    period: Duration,
    previous: HashMap<String, (String, Seen)>,
    health: PlegHealth,
    metrics: Option<Arc<KubeletMetrics>>,
    last_relist: Option<Instant>,
}

impl Pleg {
    pub fn new(runtime: Arc<dyn RuntimeService>, period: Duration) -> Self {
        Self {
            runtime,
            period,
            previous: HashMap::new(),
            health: PlegHealth(Arc::new(Mutex::new(None))),
            metrics: None,
            last_relist: None,
        }
    }

    /// Records relist durations and intervals, and the running pods and containers seen.
    pub fn with_metrics(mut self, metrics: Arc<KubeletMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn health(&self) -> PlegHealth {
        self.health.clone()
    }

    /// Relists until shutdown. The first relist only records the current state (every worker
    /// syncs on start anyway).
    pub async fn run(mut self, tx: mpsc::Sender<PlegEvent>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut first = true;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.relist().await {
                Ok(events) => {
                    if let Ok(mut t) = self.health.0.lock() {
                        *t = Some(Instant::now());
                    }
                    if first {
                        first = false;
                        continue;
                    }
                    for e in events {
                        if tx.send(e).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => tracing::warn!("PLEG relist failed: {e}"),
            }
        }
    }

    /// One relist: the events since the previous one. Its duration is recorded whether it
    /// succeeds or not, as upstream's deferred observation.
    pub async fn relist(&mut self) -> cri::Result<Vec<PlegEvent>> {
        let started = Instant::now();
        if let (Some(m), Some(last)) = (&self.metrics, self.last_relist) {
            m.pleg_relist_interval.observe(&[], started.duration_since(last).as_secs_f64());
        }
        self.last_relist = Some(started);
        let result = self.relist_once().await;
        if let Some(m) = &self.metrics {
            m.pleg_relist_duration.observe(&[], started.elapsed().as_secs_f64());
        }
        result
    }

    async fn relist_once(&mut self) -> cri::Result<Vec<PlegEvent>> {
        let sandboxes = self.runtime.list_pod_sandbox(None).await?;
        let containers = self.runtime.list_containers(None).await?;
        if let Some(m) = &self.metrics {
            running_metrics(m, &sandboxes, &containers);
        }
        let mut current: HashMap<String, (String, Seen)> = HashMap::with_capacity(sandboxes.len() + containers.len());
        for s in sandboxes {
            if let Some(uid) = s.labels.get(labels::POD_UID) {
                current.insert(s.id, (uid.clone(), Seen::Sandbox(s.state)));
            }
        }
        for c in containers {
            if let Some(uid) = c.labels.get(labels::POD_UID) {
                current.insert(c.id, (uid.clone(), Seen::Container(c.state)));
            }
        }
        let mut events = Vec::new();
        for (id, (uid, now)) in &current {
            let before = self.previous.get(id).map(|(_, s)| *s);
            if before == Some(*now) {
                continue;
            }
            let kind = match now {
                Seen::Sandbox(_) => PlegEventType::SandboxChanged,
                Seen::Container(s) if *s == api::ContainerState::ContainerRunning as i32 => {
                    PlegEventType::ContainerStarted
                }
                Seen::Container(s) if *s == api::ContainerState::ContainerExited as i32 => PlegEventType::ContainerDied,
                Seen::Container(_) => PlegEventType::ContainerChanged,
            };
            events.push(PlegEvent { pod_uid: uid.clone(), kind, id: id.clone() });
        }
        for (id, (uid, seen)) in &self.previous {
            if !current.contains_key(id) {
                let kind = match seen {
                    Seen::Sandbox(_) => PlegEventType::SandboxChanged,
                    Seen::Container(_) => PlegEventType::ContainerRemoved,
                };
                events.push(PlegEvent { pod_uid: uid.clone(), kind, id: id.clone() });
            }
        }
        self.previous = current;
        Ok(events)
    }
}

/// `kubelet_running_pods` (pods with a ready sandbox) and `kubelet_running_containers` by state,
/// as upstream's relist sets them.
fn running_metrics(m: &KubeletMetrics, sandboxes: &[api::PodSandbox], containers: &[api::Container]) {
    let ready: std::collections::HashSet<&str> = sandboxes
        .iter()
        .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
        .filter_map(|s| s.labels.get(labels::POD_UID).map(String::as_str))
        .collect();
    m.running_pods.set(&[], ready.len() as f64);
    let mut by_state: std::collections::BTreeMap<Vec<String>, f64> = std::collections::BTreeMap::new();
    for c in containers.iter().filter(|c| c.labels.contains_key(labels::POD_UID)) {
        let state = match api::ContainerState::try_from(c.state) {
            Ok(api::ContainerState::ContainerCreated) => "created",
            Ok(api::ContainerState::ContainerRunning) => "running",
            Ok(api::ContainerState::ContainerExited) => "exited",
            _ => "unknown",
        };
        *by_state.entry(vec![state.to_owned()]).or_default() += 1.0;
    }
    m.running_containers.set_all(&by_state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri::FakeRuntime;

    #[tokio::test]
    async fn relist_reports_start_death_and_removal() {
        let fake = Arc::new(FakeRuntime::default());
        let metrics = KubeletMetrics::new();
        let mut pleg = Pleg::new(fake.clone(), Duration::from_secs(1)).with_metrics(metrics.clone());
        assert!(pleg.relist().await.expect("relist").is_empty());
        let sb_config = api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: "p".into(),
                uid: "u1".into(),
                namespace: "d".into(),
                attempt: 0,
            }),
            labels: [(labels::POD_UID.to_string(), "u1".to_string())].into(),
            ..Default::default()
        };
        fake.add_image("busybox");
        let sb = fake.run_pod_sandbox(sb_config.clone(), "").await.expect("sandbox");
        let cfg = api::ContainerConfig {
            metadata: Some(api::ContainerMetadata { name: "a".into(), attempt: 0 }),
            image: Some(api::ImageSpec { image: "busybox".into(), ..Default::default() }),
            labels: [(labels::POD_UID.to_string(), "u1".to_string())].into(),
            ..Default::default()
        };
        let id = fake.create_container(&sb, cfg, sb_config).await.expect("create");
        fake.start_container(&id).await.expect("start");
        let kinds = |ev: Vec<PlegEvent>| {
            let mut k: Vec<_> = ev.into_iter().map(|e| (e.pod_uid, e.kind)).collect();
            k.sort_by_key(|(_, k)| format!("{k:?}"));
            k
        };
        assert_eq!(
            kinds(pleg.relist().await.expect("relist")),
            vec![
                ("u1".to_string(), PlegEventType::ContainerStarted),
                ("u1".to_string(), PlegEventType::SandboxChanged)
            ]
        );
        let gauge = |m: &crate::metrics::Metric| m.snapshot().series;
        use crate::metrics::Value::Scalar as V;
        assert_eq!(gauge(&metrics.running_pods), [(vec![], V(1.0))]);
        assert_eq!(gauge(&metrics.running_containers), [(vec!["running".to_string()], V(1.0))]);
        fake.exit_container(&id, 1);
        assert_eq!(kinds(pleg.relist().await.expect("relist")), vec![("u1".to_string(), PlegEventType::ContainerDied)]);
        assert_eq!(
            gauge(&metrics.running_containers),
            [(vec!["exited".to_string()], V(1.0)), (vec!["running".to_string()], V(0.0))]
        );
        let count = |m: &crate::metrics::Metric| match &m.snapshot().series[0].1 {
            crate::metrics::Value::Histogram { count, .. } => *count,
            other => panic!("{other:?}"),
        };
        assert_eq!((count(&metrics.pleg_relist_duration), count(&metrics.pleg_relist_interval)), (3, 2));
        assert!(pleg.relist().await.expect("relist").is_empty(), "no change, no event");
        fake.remove_container(&id).await.expect("remove");
        assert_eq!(
            kinds(pleg.relist().await.expect("relist")),
            vec![("u1".to_string(), PlegEventType::ContainerRemoved)]
        );
    }
}
