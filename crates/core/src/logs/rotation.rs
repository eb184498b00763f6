//! Container log rotation (upstream `containerLogManager`): every `containerLogMonitorInterval`
//! the running containers' log files are checked; one at `containerLogMaxSize` or more is
//! renamed to `<log>.<YYYYMMDD-HHMMSS>` and the runtime asked to reopen its log
//! (`ReopenContainerLog`), after the older rotated files beyond `containerLogMaxFiles` were
//! removed and the rest gzip-compressed. The newest rotated file stays uncompressed, so a
//! reader (or a log shipper) can finish it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cri::RuntimeService;
use cri::api::ContainerState;
use futures::StreamExt;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

const COMPRESS_SUFFIX: &str = ".gz";
const TMP_SUFFIX: &str = ".tmp";

/// The rotation settings (upstream `LogRotatePolicy` plus the worker count and period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotationPolicy {
    /// A log file this large or larger is rotated.
    pub max_size: u64,
    /// Log files kept per container, the current one included (at least 2).
    pub max_files: usize,
    /// Containers whose logs are handled at once.
    pub workers: usize,
    pub monitor_interval: Duration,
}

impl LogRotationPolicy {
    /// From `containerLogMaxSize` (a quantity; negative turns rotation off: `None`),
    /// `containerLogMaxFiles`, `containerLogMaxWorkers` and `containerLogMonitorInterval`, as
    /// validated by the configuration.
    pub fn from_config(c: &crate::config::KubeletConfiguration) -> Result<Option<Self>, String> {
        let size = crate::quantity::ParsedQuantity::parse_saturating(&c.container_log_max_size)
            .map_err(|e| format!("failed to parse container log max size {:?}: {e}", c.container_log_max_size))?
            .value();
        let Ok(max_size) = u64::try_from(size) else { return Ok(None) };
        Ok(Some(Self {
            max_size,
            max_files: usize::try_from(c.container_log_max_files).unwrap_or(2).max(2),
            workers: usize::try_from(c.container_log_max_workers).unwrap_or(1).max(1),
            monitor_interval: c.container_log_monitor_interval,
        }))
    }
}

pub struct ContainerLogManager {
    runtime: Arc<dyn RuntimeService>,
    policy: LogRotationPolicy,
    clock: Arc<dyn Clock>,
    /// One pass at a time (a slow pass is not overlapped by the next tick).
    pass: tokio::sync::Mutex<()>,
}

impl ContainerLogManager {
    pub fn new(runtime: Arc<dyn RuntimeService>, policy: LogRotationPolicy, clock: Arc<dyn Clock>) -> Self {
        Self { runtime, policy, clock, pass: tokio::sync::Mutex::new(()) }
    }

    /// Runs a pass every `monitor_interval` until shutdown.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tracing::info!(
            workers = self.policy.workers,
            monitor_period = ?self.policy.monitor_interval,
            "Initializing container log rotate workers"
        );
        let mut tick = tokio::time::interval(self.policy.monitor_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.rotate_logs().await {
                tracing::error!("Failed to rotate container logs: {e}");
            }
        }
    }

    /// One pass over the running containers, `workers` at a time. A container whose log cannot
    /// be rotated is logged and tried again next pass; only a failed listing is an error.
    pub async fn rotate_logs(&self) -> Result<(), String> {
        let _pass = self.pass.lock().await;
        let containers =
            self.runtime.list_containers(None).await.map_err(|e| format!("failed to list containers: {e}"))?;
        let running: Vec<String> = containers
            .into_iter()
            .filter(|c| c.state == ContainerState::ContainerRunning as i32)
            .map(|c| c.id)
            .collect();
        futures::stream::iter(running)
            .for_each_concurrent(self.policy.workers.max(1), |id| async move {
                if let Err(e) = self.process_container(&id).await {
                    tracing::error!(container_id = %id, "Failed to rotate log for container: {e}");
                }
            })
            .await;
        Ok(())
    }

    /// Upstream `processContainer`: reopens a log that is missing, rotates one over the size.
    async fn process_container(&self, id: &str) -> Result<(), String> {
        let status =
            self.runtime.container_status(id).await.map_err(|e| format!("failed to get container status: {e}"))?;
        if status.log_path.is_empty() {
            return Ok(());
        }
        let path = PathBuf::from(&status.log_path);
        let size = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.runtime.reopen_container_log(id).await.map_err(|e| {
                    format!("container log {} doesn't exist, reopen container log failed: {e}", path.display())
                })?;
                std::fs::metadata(&path)
                    .map_err(|e| format!("failed to stat container log {} after reopen: {e}", path.display()))?
                    .len()
            }
            Err(e) => return Err(format!("failed to stat container log {}: {e}", path.display())),
        };
        if size < self.policy.max_size {
            return Ok(());
        }
        self.rotate_log(id, &path).await
    }

    /// Upstream `rotateLog`: clean up, compress, then rotate the current file.
    async fn rotate_log(&self, id: &str, log: &Path) -> Result<(), String> {
        let max_files = self.policy.max_files;
        let owned = log.to_path_buf();
        tokio::task::spawn_blocking(move || prepare_rotation(&owned, max_files))
            .await
            .map_err(|e| format!("log rotation task: {e}"))??;
        let stamp = rotation_stamp(self.clock.now());
        let rotated = PathBuf::from(format!("{}.{stamp}", log.display()));
        std::fs::rename(log, &rotated).map_err(|e| {
            format!("failed to rotate log {:?} to {:?}: {e}", log.display().to_string(), rotated.display().to_string())
        })?;
        if let Err(e) = self.runtime.reopen_container_log(id).await {
            // Put the file back so the next pass can try again (the container may still write
            // to it through its open descriptor).
            if let Err(back) = std::fs::rename(&rotated, log) {
                tracing::error!(container_id = %id, "failed to rename rotated log {} back to {}: {back}", rotated.display(), log.display());
            }
            return Err(format!("failed to reopen container log {id:?}: {e}"));
        }
        tracing::debug!(container_id = %id, log = %log.display(), "rotated container log");
        Ok(())
    }
}

/// `<log>.<YYYYMMDD-HHMMSS>` in local time, as upstream's `timestampFormat`.
fn rotation_stamp(now: Duration) -> String {
    use chrono::TimeZone;
    let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    match chrono::Local.timestamp_opt(secs, now.subsec_nanos()) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t.format("%Y%m%d-%H%M%S").to_string(),
        chrono::LocalResult::None => "00010101-000000".to_owned(),
    }
}

/// The files `<log>.*` beside a log, sorted by name (oldest rotation first).
fn rotated_files(log: &Path) -> Result<Vec<PathBuf>, String> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name()) else { return Ok(Vec::new()) };
    let prefix = format!("{}.", name.to_string_lossy());
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("failed to list all log files with pattern \"{}*\": {e}", log.display()))?;
    let mut files: Vec<PathBuf> =
        entries.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(&prefix)).map(|e| e.path()).collect();
    files.sort();
    Ok(files)
}

/// Upstream's steps before renaming the current file: remove leftovers of an interrupted
/// rotation (`.tmp` files, files whose `.gz` exists), keep `max_files - 2` rotated files (the
/// current file and the one about to be rotated make up the rest), compress those.
fn prepare_rotation(log: &Path, max_files: usize) -> Result<(), String> {
    let all = rotated_files(log)?;
    let names: std::collections::HashSet<String> = all.iter().map(|p| p.display().to_string()).collect();
    let mut in_use = Vec::new();
    for f in all {
        let name = f.display().to_string();
        let unused = name.ends_with(TMP_SUFFIX)
            || (!name.ends_with(COMPRESS_SUFFIX) && names.contains(&format!("{name}{COMPRESS_SUFFIX}")));
        if unused {
            remove(&f).map_err(|e| format!("failed to cleanup logs: failed to remove unused log {name:?}: {e}"))?;
        } else {
            in_use.push(f);
        }
    }
    let keep = max_files.saturating_sub(2);
    let excess = in_use.len().saturating_sub(keep);
    for f in in_use.drain(..excess) {
        remove(&f).map_err(|e| {
            format!("failed to remove excess logs: failed to remove old log {:?}: {e}", f.display().to_string())
        })?;
    }
    for f in in_use.iter().filter(|f| !f.display().to_string().ends_with(COMPRESS_SUFFIX)) {
        compress(f).map_err(|e| format!("failed to compress log {:?}: {e}", f.display().to_string()))?;
    }
    Ok(())
}

fn remove(p: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// gzip `log` into `log.gz` (written as `log.tmp`, then renamed), then removes `log`.
fn compress(log: &Path) -> Result<(), String> {
    let mut input = std::fs::File::open(log).map_err(|e| format!("failed to open log: {e}"))?;
    let tmp = PathBuf::from(format!("{}{TMP_SUFFIX}", log.display()));
    let result = (|| {
        let out = std::fs::File::create(&tmp)
            .map_err(|e| format!("failed to create temporary log {}: {e}", tmp.display()))?;
        let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        std::io::copy(&mut input, &mut gz).map_err(|e| format!("failed to compress to {}: {e}", tmp.display()))?;
        let mut out = gz.finish().map_err(|e| format!("failed to compress to {}: {e}", tmp.display()))?;
        out.flush().map_err(|e| e.to_string())?;
        let gz_path = PathBuf::from(format!("{}{COMPRESS_SUFFIX}", log.display()));
        std::fs::rename(&tmp, &gz_path)
            .map_err(|e| format!("failed to rename {} to {}: {e}", tmp.display(), gz_path.display()))
    })();
    let _ = std::fs::remove_file(&tmp);
    result?;
    std::fs::remove_file(log).map_err(|e| format!("failed to remove log after compress: {e}"))
}

#[cfg(test)]
#[path = "rotation_tests.rs"]
mod tests;
