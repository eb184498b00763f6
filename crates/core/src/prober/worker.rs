//! One probe worker (upstream `prober/worker.go`): probes one container of one pod every
//! `periodSeconds` and turns runs of results into the container instance's result once they
//! reach `successThreshold` / `failureThreshold`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, Probe};
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::probe::run_probe;
use super::{CounterKey, ProbeResult, ProbeType, Shared};
use crate::status::is_terminal;

pub(crate) struct Worker {
    pod: Arc<Pod>,
    uid: String,
    container: Container,
    spec: Probe,
    kind: ProbeType,
    /// The container instance being probed (bare CRI id).
    container_id: Option<String>,
    last_result: Option<ProbeResult>,
    /// How many times in a row `last_result` came out.
    result_run: i32,
    /// After a liveness/startup failure: no probing until a new container instance appears.
    on_hold: bool,
}

impl Worker {
    pub(crate) fn new(pod: Arc<Pod>, container: Container, spec: Probe, kind: ProbeType) -> Self {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        Self { pod, uid, container, spec, kind, container_id: None, last_result: None, result_run: 0, on_hold: false }
    }

    /// Whether the probed container is a sidecar (an init container with `restartPolicy: Always`).
    fn is_sidecar(&self) -> bool {
        self.container.restart_policy.as_deref() == Some("Always")
            && self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.init_containers.as_ref())
                .is_some_and(|ics| ics.iter().any(|c| c.name == self.container.name))
    }

    fn period(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.spec.period_seconds.unwrap_or(10)).unwrap_or(10).max(1))
    }

    pub(crate) async fn run(mut self, shared: Arc<Shared>, stop: CancellationToken, trigger: Arc<Notify>, id: u64) {
        let period = self.period();
        // Right after a kubelet (re)start every worker starts at once: spread them over a period.
        if shared.started.elapsed() < period {
            let jitter = period.mul_f64(random_fraction());
            tokio::select! {
                _ = stop.cancelled() => return self.cleanup(&shared, id),
                _ = tokio::time::sleep(jitter) => {}
            }
        }
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let keep_going = tokio::select! {
                _ = stop.cancelled() => false,
                k = self.do_probe(&shared) => k,
            };
            if !keep_going {
                break;
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticker.tick() => {}
                // A manual run restarts the period from now, as upstream's ticker reset.
                _ = trigger.notified() => ticker.reset(),
            }
        }
        self.cleanup(&shared, id);
    }

    fn cleanup(&self, shared: &Shared, id: u64) {
        if let Some(cid) = &self.container_id {
            shared.results.of(self.kind).remove(cid);
        }
        if let Ok(mut workers) = shared.workers.lock() {
            let key = (self.uid.clone(), self.container.name.clone(), self.kind);
            if workers.get(&key).is_some_and(|h| h.id == id) {
                workers.remove(&key);
            }
        }
        shared.counters.forget(self.kind.as_str(), &self.uid, &self.container.name);
    }

    /// One probe; false when the worker should stop.
    async fn do_probe(&mut self, shared: &Shared) -> bool {
        let Some(status) = shared.statuses.get(&self.uid) else {
            return true; // not synced yet, or already gone
        };
        if is_terminal(status.phase.as_deref()) {
            return false;
        }
        let find = |list: Option<&Vec<ContainerStatus>>| {
            list.into_iter()
                .flatten()
                .find(|s| s.name == self.container.name && s.container_id.as_deref().is_some_and(|id| !id.is_empty()))
                .cloned()
        };
        let Some(cs) =
            find(status.container_statuses.as_ref()).or_else(|| find(status.init_container_statuses.as_ref()))
        else {
            return true; // not created yet
        };
        let full_id = cs.container_id.as_deref().unwrap_or_default();
        let id = full_id.split_once("://").map_or(full_id, |(_, rest)| rest).to_string();
        let results = shared.results.of(self.kind);
        let sidecar = self.is_sidecar();
        if self.container_id.as_deref() != Some(id.as_str()) {
            if let Some(old) = &self.container_id {
                results.remove(old);
            }
            // A container running since before the kubelet started is adopted, not new: it gets
            // no initial result, so a ready container does not turn NotReady until probed
            // (upstream's default, without ChangeContainerStatusOnKubeletRestart). An adopted
            // sidecar that had started keeps its startup Success, so later init containers go on.
            let adopted =
                cs.state.as_ref().and_then(|s| s.running.as_ref()).and_then(|r| r.started_at.as_ref()).is_some_and(
                    |t| t.0.as_nanosecond() < i128::try_from(shared.restart_cutoff.as_nanos()).unwrap_or(i128::MAX),
                );
            if sidecar && self.kind == ProbeType::Startup && cs.started == Some(true) {
                results.set(&id, ProbeResult::Success, &self.uid);
            }
            if !adopted {
                results.set(&id, self.kind.initial(), &self.uid);
            }
            self.container_id = Some(id.clone());
            self.on_hold = false;
        }
        if self.on_hold {
            return true;
        }
        let state = cs.state.clone().unwrap_or_default();
        let Some(running) = state.running else {
            results.set(&id, ProbeResult::Failure, &self.uid);
            // Stop for good only when the container will not run again; a sidecar always does.
            let never = self.pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("Never");
            return state.terminated.is_none() || !never || sidecar;
        };
        if self.pod.metadata.deletion_timestamp.is_some() && self.kind != ProbeType::Readiness {
            // A quiet shutdown: the container is being stopped on purpose.
            results.set(&id, ProbeResult::Success, &self.uid);
            return false;
        }
        // Whole seconds since the start, as upstream truncates `time.Since(startedAt)`.
        let initial_delay = i128::from(self.spec.initial_delay_seconds.unwrap_or(0));
        let now = i128::try_from(shared.clock.now().as_nanos()).unwrap_or(i128::MAX);
        if let Some(started) = running.started_at.as_ref()
            && (now - started.0.as_nanosecond()) / 1_000_000_000 < initial_delay
        {
            return true;
        }
        if cs.started == Some(true) {
            // Startup probing ends once the container started (the worker stays for restarts).
            if self.kind == ProbeType::Startup {
                return true;
            }
        } else if self.kind != ProbeType::Startup {
            // Liveness and readiness wait for the startup probe.
            return true;
        }

        let pod_ip = status.pod_ip.as_deref();
        let Ok(result) = run_probe(
            shared.handlers.as_ref(),
            shared.recorder.as_ref(),
            self.kind,
            &self.spec,
            &self.pod,
            pod_ip,
            &self.container,
            &id,
        )
        .await
        else {
            return true; // the probe could not run: its result is thrown away
        };
        shared.counters.inc(CounterKey {
            probe_type: self.kind.as_str(),
            result: match result {
                ProbeResult::Success => "successful",
                ProbeResult::Failure => "failed",
                ProbeResult::Unknown => "unknown",
            },
            container: self.container.name.clone(),
            pod: self.pod.metadata.name.clone().unwrap_or_default(),
            namespace: self.pod.metadata.namespace.clone().unwrap_or_default(),
            pod_uid: self.uid.clone(),
        });

        if self.last_result == Some(result) {
            self.result_run += 1;
        } else {
            self.last_result = Some(result);
            self.result_run = 1;
        }
        let failure_threshold = self.spec.failure_threshold.unwrap_or(3).max(1);
        let success_threshold = self.spec.success_threshold.unwrap_or(1).max(1);
        if (result == ProbeResult::Failure && self.result_run < failure_threshold)
            || (result == ProbeResult::Success && self.result_run < success_threshold)
        {
            return true; // below the threshold: the result stands
        }
        results.set(&id, result, &self.uid);
        if (self.kind == ProbeType::Liveness && result == ProbeResult::Failure) || self.kind == ProbeType::Startup {
            // After a liveness failure the container will be restarted; after a startup result
            // past its threshold there is nothing more to learn (upstream #117153): wait for a
            // new instance.
            self.on_hold = true;
            self.result_run = 0;
        }
        true
    }
}

/// A number in [0, 1) that differs between calls (for jitter; not for anything secret).
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    // 53 random bits → [0, 1).
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}
