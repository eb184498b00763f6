//! Container garbage collection (upstream `kuberuntime_gc`): dead containers beyond the policy,
//! sandboxes nothing runs in, and the logs of pods that are gone.
//!
//! Only what the kubelet made is considered: containers and sandboxes carrying the
//! `io.kubernetes.pod.uid` label. (Upstream lists every CRI object of the runtime and treats an
//! unlabelled one as belonging to a deleted pod; here a container someone else made in the same
//! runtime is left alone.)

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cri::RuntimeService;
use cri::api::{ContainerState, PodSandboxState};

use crate::clock::{Clock, from_nanos};
use crate::runtime::labels;

/// Upstream's `legacyContainerLogsDir`: links named after the pod, namespace, container and
/// container ID into the pod log directory, which log shippers read.
pub const LEGACY_CONTAINER_LOGS_DIR: &str = "/var/log/containers";

/// How dead containers are kept (upstream `GCPolicy`, from `--minimum-container-ttl-duration`,
/// `--maximum-dead-containers-per-container` and `--maximum-dead-containers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerGcPolicy {
    /// A dead container younger than this (from its creation) is never collected.
    pub min_age: Duration,
    /// Dead containers kept per (pod, container name); negative keeps all.
    pub max_per_pod_container: i32,
    /// Dead containers kept on the node; negative keeps all.
    pub max_containers: i32,
}

impl Default for ContainerGcPolicy {
    fn default() -> Self {
        Self { min_age: Duration::ZERO, max_per_pod_container: 1, max_containers: -1 }
    }
}

/// What the pod workers know of a pod UID (upstream `podStateProvider`).
pub trait PodStateProvider: Send + Sync {
    /// Whether everything of the pod may go: it was removed from its source and fully
    /// terminated, or the kubelet knows nothing of it.
    fn should_pod_content_be_removed(&self, uid: &str) -> bool;
}

impl PodStateProvider for crate::pod_workers::PodWorkers {
    /// A pod has a worker from its first sync until it was removed and everything of it torn
    /// down, so a UID without one belongs to a pod that is gone.
    fn should_pod_content_be_removed(&self, uid: &str) -> bool {
        !self.is_known(uid)
    }
}

/// One dead container the collector may remove.
#[derive(Debug, Clone)]
struct DeadContainer {
    id: String,
    name: String,
    created_ns: i64,
    unknown: bool,
}

/// One sandbox of a pod; an active one (ready, or with containers) is never removed.
#[derive(Debug, Clone)]
struct SandboxInfo {
    id: String,
    created_ns: i64,
    active: bool,
}

/// Dead containers grouped by (pod UID, container name) — upstream's evict units — each list
/// newest first.
type EvictUnits = BTreeMap<(String, String), Vec<DeadContainer>>;

fn count(units: &EvictUnits) -> usize {
    units.values().map(Vec::len).sum()
}

/// The container collector. `garbage_collect` is one pass; the kubelet runs one a minute.
pub struct ContainerGc {
    runtime: Arc<dyn RuntimeService>,
    policy: ContainerGcPolicy,
    pod_logs_dir: PathBuf,
    legacy_logs_dir: PathBuf,
    clock: Arc<dyn Clock>,
}

impl ContainerGc {
    pub fn new(
        runtime: Arc<dyn RuntimeService>,
        policy: ContainerGcPolicy,
        pod_logs_dir: PathBuf,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { runtime, policy, pod_logs_dir, legacy_logs_dir: PathBuf::from(LEGACY_CONTAINER_LOGS_DIR), clock }
    }

    /// Where the legacy log links are looked for (tests).
    pub fn with_legacy_logs_dir(mut self, dir: PathBuf) -> Self {
        self.legacy_logs_dir = dir;
        self
    }

    pub fn policy(&self) -> ContainerGcPolicy {
        self.policy
    }

    /// One collection (upstream `GarbageCollect`): dead containers, then sandboxes without
    /// containers, then pod log directories and dangling legacy log links. Everything of a
    /// deleted pod goes only once every pod source has reported (`all_sources_ready`), as a pod
    /// not yet seen would look deleted. Failures to list are returned (joined); a container or
    /// sandbox that cannot be removed is logged and retried next time.
    pub async fn garbage_collect(&self, pods: &dyn PodStateProvider, all_sources_ready: bool) -> Result<(), String> {
        let mut errors = Vec::new();
        if let Err(e) = self.evict_containers(pods, all_sources_ready).await {
            errors.push(e);
        }
        if let Err(e) = self.evict_sandboxes(pods, all_sources_ready).await {
            errors.push(e);
        }
        if let Err(e) = self.evict_pod_log_directories(pods, all_sources_ready).await {
            errors.push(e);
        }
        if errors.is_empty() { Ok(()) } else { Err(super::join_errors(&errors)) }
    }

    /// Dead containers created more than `min_age` ago, by evict unit, newest first.
    async fn evictable_containers(&self) -> Result<EvictUnits, String> {
        let containers =
            self.runtime.list_containers(None).await.map_err(|e| format!("failed to list containers: {e}"))?;
        let newest = self.clock.now().saturating_sub(self.policy.min_age);
        let mut units = EvictUnits::new();
        for c in containers {
            let state = ContainerState::try_from(c.state).unwrap_or(ContainerState::ContainerUnknown);
            if state == ContainerState::ContainerRunning {
                continue;
            }
            let Some(uid) = c.labels.get(labels::POD_UID) else { continue };
            if from_nanos(c.created_at).is_some_and(|t| t > newest) {
                continue;
            }
            let name = c.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
            units.entry((uid.clone(), name.clone())).or_default().push(DeadContainer {
                id: c.id,
                name,
                created_ns: c.created_at,
                unknown: state == ContainerState::ContainerUnknown,
            });
        }
        for unit in units.values_mut() {
            unit.sort_by_key(|c| std::cmp::Reverse(c.created_ns));
        }
        Ok(units)
    }

    /// Upstream `evictContainers`: all dead containers of deleted pods, then
    /// `max_per_pod_container` per unit, then `max_containers` overall (an equal share per unit,
    /// at least one, then the oldest first).
    async fn evict_containers(&self, pods: &dyn PodStateProvider, all_sources_ready: bool) -> Result<(), String> {
        let mut units = self.evictable_containers().await?;
        if all_sources_ready {
            let deleted: Vec<_> =
                units.keys().filter(|(uid, _)| pods.should_pod_content_be_removed(uid)).cloned().collect();
            for key in deleted {
                if let Some(unit) = units.remove(&key) {
                    self.remove_oldest(&unit, unit.len()).await;
                }
            }
        }
        if self.policy.max_per_pod_container >= 0 {
            self.enforce_per_unit(&mut units, self.policy.max_per_pod_container as usize).await;
        }
        if let Ok(max) = usize::try_from(self.policy.max_containers)
            && count(&units) > max
        {
            let per_unit = (max / units.len().max(1)).max(1);
            self.enforce_per_unit(&mut units, per_unit).await;
            let total = count(&units);
            if total > max {
                let mut all: Vec<DeadContainer> = units.into_values().flatten().collect();
                all.sort_by_key(|c| std::cmp::Reverse(c.created_ns));
                self.remove_oldest(&all, total - max).await;
            }
        }
        Ok(())
    }

    /// Leaves at most `keep` dead containers in each unit.
    async fn enforce_per_unit(&self, units: &mut EvictUnits, keep: usize) {
        for unit in units.values_mut() {
            if unit.len() > keep {
                self.remove_oldest(unit, unit.len() - keep).await;
                unit.truncate(keep);
            }
        }
    }

    /// Removes the last `n` of a newest-first list.
    async fn remove_oldest(&self, containers: &[DeadContainer], n: usize) {
        for c in &containers[containers.len().saturating_sub(n)..] {
            if c.unknown {
                // A container in an unknown state may be running: stop it first.
                if let Err(e) = self.runtime.stop_container(&c.id, 0).await
                    && !e.is_not_found()
                {
                    tracing::warn!(container_id = %c.id, container = %c.name, "stopping a container in unknown state before removal: {e}");
                    continue;
                }
            }
            if let Err(e) = self.remove_container(&c.id).await {
                tracing::warn!(container_id = %c.id, container = %c.name, "garbage collection: {e}");
            } else {
                tracing::debug!(container_id = %c.id, container = %c.name, "removed dead container");
            }
        }
    }

    /// Upstream `removeContainer`: the container's log files (the current one and its rotated
    /// files) and legacy link first, then the container.
    pub async fn remove_container(&self, id: &str) -> Result<(), String> {
        match self.runtime.container_status(id).await {
            Ok(status) => {
                if !status.log_path.is_empty() {
                    remove_log_files(Path::new(&status.log_path))
                        .map_err(|e| format!("failed to remove container {id:?} log: {e}"))?;
                }
                let link = legacy_log_link(
                    &self.legacy_logs_dir,
                    id,
                    status.labels.get(labels::CONTAINER_NAME).map_or("", String::as_str),
                    status.labels.get(labels::POD_NAME).map_or("", String::as_str),
                    status.labels.get(labels::POD_NAMESPACE).map_or("", String::as_str),
                );
                match std::fs::remove_file(&link) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(format!(
                            "failed to remove container {id:?} log legacy symbolic link {:?}: {e}",
                            link.display().to_string()
                        ));
                    }
                    _ => {}
                }
            }
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(format!("failed to get container {id:?} status: {e}")),
        }
        match self.runtime.remove_container(id).await {
            Err(e) if !e.is_not_found() => Err(format!("failed to remove container {id:?}: {e}")),
            _ => Ok(()),
        }
    }

    /// Upstream `evictSandboxes`: a sandbox is active while ready or while it has containers.
    /// A pod that is gone loses every inactive sandbox; a live pod keeps its newest sandbox
    /// whatever its state (the one its status comes from) and loses older inactive ones.
    async fn evict_sandboxes(&self, pods: &dyn PodStateProvider, all_sources_ready: bool) -> Result<(), String> {
        let containers =
            self.runtime.list_containers(None).await.map_err(|e| format!("failed to list containers: {e}"))?;
        let sandboxes =
            self.runtime.list_pod_sandbox(None).await.map_err(|e| format!("failed to list pod sandboxes: {e}"))?;
        let with_containers: HashSet<&str> = containers.iter().map(|c| c.pod_sandbox_id.as_str()).collect();
        let mut by_pod: BTreeMap<String, Vec<SandboxInfo>> = BTreeMap::new();
        for s in &sandboxes {
            let Some(uid) = s.labels.get(labels::POD_UID) else { continue };
            let active = s.state == PodSandboxState::SandboxReady as i32 || with_containers.contains(s.id.as_str());
            by_pod.entry(uid.clone()).or_default().push(SandboxInfo {
                id: s.id.clone(),
                created_ns: s.created_at,
                active,
            });
        }
        for (uid, mut list) in by_pod {
            list.sort_by_key(|c| std::cmp::Reverse(c.created_ns));
            let skip = if all_sources_ready && pods.should_pod_content_be_removed(&uid) { 0 } else { 1 };
            for s in list.iter().skip(skip).filter(|s| !s.active) {
                self.remove_sandbox(&s.id).await;
            }
        }
        Ok(())
    }

    /// Stops (in case it was not) and removes a sandbox; failures are logged.
    async fn remove_sandbox(&self, id: &str) {
        if let Err(e) = self.runtime.stop_pod_sandbox(id).await
            && !e.is_not_found()
        {
            tracing::warn!(sandbox_id = %id, "garbage collection: failed to stop sandbox: {e}");
            return;
        }
        match self.runtime.remove_pod_sandbox(id).await {
            Err(e) if !e.is_not_found() => {
                tracing::warn!(sandbox_id = %id, "garbage collection: failed to remove sandbox: {e}")
            }
            _ => tracing::debug!(sandbox_id = %id, "removed pod sandbox"),
        }
    }

    /// Upstream `evictPodLogsDirectories`: the `<ns>_<name>_<uid>` directories of pods that are
    /// gone (once all sources are ready), and legacy links whose log is gone and whose container
    /// is not running (a running container's link dangles for a moment during a rotation).
    async fn evict_pod_log_directories(
        &self,
        pods: &dyn PodStateProvider,
        all_sources_ready: bool,
    ) -> Result<(), String> {
        let mut result = Ok(());
        if all_sources_ready {
            match std::fs::read_dir(&self.pod_logs_dir) {
                Ok(entries) => {
                    for entry in entries.flatten() {
                        let name = entry.file_name().to_string_lossy().into_owned();
                        let uid = name.rsplit('_').next().unwrap_or_default();
                        if !pods.should_pod_content_be_removed(uid) {
                            continue;
                        }
                        let path = entry.path();
                        if let Err(e) = std::fs::remove_dir_all(&path)
                            && e.kind() != std::io::ErrorKind::NotFound
                        {
                            tracing::warn!(path = %path.display(), "garbage collection: failed to remove pod logs directory: {e}");
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    result = Err(format!(
                        "failed to read podLogsDirectory {:?}: {e}",
                        self.pod_logs_dir.display().to_string()
                    ))
                }
            }
        }
        let links = match std::fs::read_dir(&self.legacy_logs_dir) {
            Ok(entries) => entries.flatten().map(|e| e.path()).collect::<Vec<_>>(),
            Err(_) => Vec::new(),
        };
        for link in links.into_iter().filter(|p| p.extension().is_some_and(|x| x == "log")) {
            if std::fs::metadata(&link).is_ok() || std::fs::symlink_metadata(&link).is_err() {
                continue;
            }
            if let Some(id) = container_id_of_legacy_link(&link) {
                match self.runtime.container_status(id).await {
                    Ok(s) if s.state != ContainerState::ContainerExited as i32 => continue,
                    _ => {}
                }
            }
            if let Err(e) = std::fs::remove_file(&link) {
                tracing::warn!(path = %link.display(), "garbage collection: failed to remove dead container log link: {e}");
            }
        }
        result
    }
}

/// Removes `<path>` and every `<path>*` beside it (the rotated files of a container log).
pub fn remove_log_files(path: &Path) -> std::io::Result<()> {
    let (Some(dir), Some(base)) = (path.parent(), path.file_name()) else { return Ok(()) };
    let base = base.to_string_lossy();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(base.as_ref()) {
            match std::fs::remove_file(entry.path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

/// ext4's longest file name.
const MAX_FILE_NAME_LEN: usize = 255;

/// Upstream `legacyLogSymlink`: `<dir>/<pod>_<namespace>_<container>-<id>.log`, the name cut to
/// fit a file name.
pub fn legacy_log_link(dir: &Path, container_id: &str, container: &str, pod: &str, namespace: &str) -> PathBuf {
    const SUFFIX: &str = ".log";
    let mut name = format!("{pod}_{namespace}_{container}-{container_id}");
    if name.len() > MAX_FILE_NAME_LEN - SUFFIX.len() {
        let mut cut = MAX_FILE_NAME_LEN - SUFFIX.len();
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    dir.join(name + SUFFIX)
}

/// The container ID at the end of a legacy link's name (at least 6 characters, as the runtime
/// accepts IDs that short).
fn container_id_of_legacy_link(link: &Path) -> Option<&str> {
    let name = link.file_name()?.to_str()?;
    let id = name.rsplit('-').next()?.strip_suffix(".log")?;
    (id.len() >= 6).then_some(id)
}

#[cfg(test)]
#[path = "containers_tests.rs"]
mod tests;
