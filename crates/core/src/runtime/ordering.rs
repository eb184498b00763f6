//! Termination ordering of a pod's containers (upstream `terminationOrdering`): every container
//! is killed at once, but a sidecar (restartable init container) waits — within its grace
//! period — until every app container has stopped and, for all but the last-declared sidecar,
//! until the sidecar declared after it has stopped. So sidecars serve the app to its end and stop
//! in reverse order of declaration.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio_util::sync::CancellationToken;

/// Who waits on whom while a pod is killed. A container's token is cancelled when it has stopped
/// (or was not running to begin with).
pub struct TerminationOrdering {
    terminated: HashMap<String, CancellationToken>,
    prereqs: HashMap<String, Vec<CancellationToken>>,
}

impl TerminationOrdering {
    /// The ordering of `pod` when the containers named in `running` are being stopped.
    pub fn new<'a>(pod: &Pod, running: impl IntoIterator<Item = &'a str>) -> Self {
        let running: Vec<&str> = running.into_iter().collect();
        let mut terminated = HashMap::new();
        let mut prereqs: HashMap<String, Vec<CancellationToken>> = HashMap::new();
        let token = |name: &str| {
            let t = CancellationToken::new();
            if !running.contains(&name) {
                t.cancel();
            }
            t
        };
        let spec = pod.spec.as_ref();
        let mut app = Vec::new();
        for c in spec.map(|s| s.containers.as_slice()).unwrap_or_default() {
            let t = token(&c.name);
            app.push(t.clone());
            terminated.insert(c.name.clone(), t);
        }
        let mut later_sidecar: Option<CancellationToken> = None;
        for c in spec.and_then(|s| s.init_containers.as_deref()).unwrap_or_default().iter().rev() {
            let t = token(&c.name);
            terminated.insert(c.name.clone(), t.clone());
            if c.restart_policy.as_deref() == Some("Always") {
                let waits = prereqs.entry(c.name.clone()).or_default();
                waits.extend(app.iter().cloned());
                waits.extend(later_sidecar.replace(t));
            }
        }
        Self { terminated, prereqs }
    }

    /// Waits until `name` may stop, at most `grace_secs` (none when it is 0 or less); returns the
    /// whole seconds waited (truncated, as upstream takes them off the grace period).
    pub async fn wait_for_turn(&self, name: &str, grace_secs: i64) -> i64 {
        if grace_secs <= 0 {
            return 0;
        }
        let started = tokio::time::Instant::now();
        let all = async {
            for t in self.prereqs.get(name).into_iter().flatten() {
                t.cancelled().await;
            }
        };
        let limit = Duration::from_secs(u64::try_from(grace_secs).unwrap_or(0));
        let _ = tokio::time::timeout(limit, all).await;
        i64::try_from(started.elapsed().as_secs()).unwrap_or(i64::MAX)
    }

    /// Records that `name` has stopped, releasing whoever waits on it.
    pub fn container_terminated(&self, name: &str) {
        if let Some(t) = self.terminated.get(name) {
            t.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [
                    {"name": "setup"},
                    {"name": "logs", "restartPolicy": "Always"},
                    {"name": "proxy", "restartPolicy": "Always"}
                ],
                "containers": [{"name": "app"}, {"name": "worker"}]
            }
        }))
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn sidecars_wait_for_the_apps_then_for_later_sidecars() {
        let o = std::sync::Arc::new(TerminationOrdering::new(&pod(), ["logs", "proxy", "app", "worker"]));
        assert_eq!(o.wait_for_turn("app", 30).await, 0, "app containers never wait");
        let wait = |name: &'static str| {
            let o = o.clone();
            tokio::spawn(async move { o.wait_for_turn(name, 30).await })
        };
        let (proxy, logs) = (wait("proxy"), wait("logs"));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!proxy.is_finished(), "proxy waits for the apps");
        o.container_terminated("app");
        o.container_terminated("worker");
        assert_eq!(proxy.await.unwrap(), 3);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!logs.is_finished(), "logs waits for proxy");
        o.container_terminated("proxy");
        assert_eq!(logs.await.unwrap(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_ends_with_the_grace_period_and_stopped_containers_do_not_hold_it() {
        let o = TerminationOrdering::new(&pod(), ["logs", "proxy", "app"]);
        assert_eq!(o.wait_for_turn("proxy", 4).await, 4, "app never stops: the grace period ends the wait");
        assert_eq!(o.wait_for_turn("proxy", 0).await, 0);
        let only_sidecars = TerminationOrdering::new(&pod(), ["logs", "proxy"]);
        assert_eq!(only_sidecars.wait_for_turn("proxy", 30).await, 0, "apps not running do not hold it");
    }
}
