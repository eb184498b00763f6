//! Image garbage collection (upstream `realImageGCManager`): unused images, least recently used
//! first, when the image filesystem's usage reaches `imageGCHighThresholdPercent` (down to
//! `imageGCLowThresholdPercent`), and images unused for longer than `imageMaximumGCAge`.
//!
//! An image is in use while any container (running or not) was made from it; the runtime's
//! sandbox image (containerd's `sandboxImage`) and images the runtime pins are never removed.
//! Images present when the kubelet starts count as seen long ago, as upstream's first detection
//! does, so `imageMinimumGCAge` only protects images that appear later (a pull that has not been
//! used yet).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cri::{ImageService, RuntimeService, normalize_ref};

use crate::clock::Clock;
use crate::events::{EventRecorder, EventType, node_event};
use crate::metrics::KubeletMetrics;

use super::join_errors;

/// Upstream `events.InvalidDiskCapacity`.
pub const INVALID_DISK_CAPACITY: &str = "InvalidDiskCapacity";
/// Upstream `events.FreeDiskSpaceFailed`.
pub const FREE_DISK_SPACE_FAILED: &str = "FreeDiskSpaceFailed";

/// The thresholds and ages of the collection (upstream `ImageGCPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageGcPolicy {
    pub high_threshold_percent: i32,
    pub low_threshold_percent: i32,
    pub min_age: Duration,
    /// Zero: no age limit.
    pub max_age: Duration,
}

impl ImageGcPolicy {
    /// Upstream skips image collection altogether with a high threshold of 100 and no age limit.
    pub fn is_off(&self) -> bool {
        self.high_threshold_percent >= 100 && self.max_age.is_zero()
    }
}

/// The size of the image filesystem (bytes): capacity and what is available.
#[async_trait]
pub trait ImageFsCapacity: Send + Sync {
    async fn image_fs_capacity(&self) -> Result<(u64, u64), String>;
}

/// What the collector remembers of an image (upstream `imageRecord`), times since the epoch.
#[derive(Debug, Clone, Copy)]
struct Record {
    first_detected: Duration,
    last_used: Duration,
    size: u64,
    pinned: bool,
}

/// An image the collector may remove.
#[derive(Debug, Clone)]
struct Candidate {
    id: String,
    record: Record,
}

pub struct ImageGc {
    runtime: Arc<dyn RuntimeService>,
    images: Arc<dyn ImageService>,
    fs: Arc<dyn ImageFsCapacity>,
    policy: ImageGcPolicy,
    clock: Arc<dyn Clock>,
    recorder: Arc<dyn EventRecorder>,
    node: String,
    metrics: Option<Arc<KubeletMetrics>>,
    records: Mutex<HashMap<String, Record>>,
}

impl ImageGc {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        runtime: Arc<dyn RuntimeService>,
        images: Arc<dyn ImageService>,
        fs: Arc<dyn ImageFsCapacity>,
        policy: ImageGcPolicy,
        clock: Arc<dyn Clock>,
        recorder: Arc<dyn EventRecorder>,
        node: String,
    ) -> Self {
        Self { runtime, images, fs, policy, clock, recorder, node, metrics: None, records: Mutex::default() }
    }

    /// Counts removals in `kubelet_image_garbage_collected_total`.
    pub fn with_metrics(mut self, metrics: Arc<KubeletMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn policy(&self) -> ImageGcPolicy {
        self.policy
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lists images and what uses them, records new images as detected at `detected` and used
    /// ones as used now, forgets images that are gone. Returns the IDs in use (with the sandbox
    /// image's). The kubelet's first detection passes `Duration::ZERO`: "seen long ago".
    pub async fn detect_images(&self, detected: Duration) -> Result<HashSet<String>, String> {
        let images = self.images.list_images(None).await.map_err(|e| format!("failed to list images: {e}"))?;
        let containers =
            self.runtime.list_containers(None).await.map_err(|e| format!("failed to list containers: {e}"))?;
        let mut refs: HashSet<String> = HashSet::new();
        for c in &containers {
            refs.insert(c.image_ref.clone());
            if let Some(spec) = &c.image {
                refs.insert(spec.image.clone());
                refs.insert(normalize_ref(&spec.image));
            }
        }
        if let Some(sandbox) = self.sandbox_image().await {
            refs.insert(normalize_ref(&sandbox));
            refs.insert(sandbox);
        }
        let now = self.clock.now();
        let mut in_use = HashSet::new();
        let mut records = self.records();
        let mut current = HashSet::new();
        for image in &images {
            current.insert(image.id.clone());
            let used =
                refs.contains(&image.id) || image.repo_tags.iter().chain(&image.repo_digests).any(|r| refs.contains(r));
            let record = records.entry(image.id.clone()).or_insert(Record {
                first_detected: detected,
                last_used: Duration::ZERO,
                size: 0,
                pinned: false,
            });
            if used {
                record.last_used = now;
                in_use.insert(image.id.clone());
            }
            record.size = image.size;
            record.pinned = image.pinned;
        }
        records.retain(|id, _| current.contains(id));
        Ok(in_use)
    }

    /// containerd's configured sandbox image, from its verbose status (`config.sandboxImage`).
    async fn sandbox_image(&self) -> Option<String> {
        let info = match self.runtime.status_info().await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!("image garbage collection: runtime status: {e}");
                return None;
            }
        };
        let config: serde_json::Value = serde_json::from_str(info.get("config")?).ok()?;
        config.get("sandboxImage")?.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
    }

    /// Unused, unpinned images, least recently used first (then first detected first).
    async fn images_in_eviction_order(&self, now: Duration) -> Result<Vec<Candidate>, String> {
        let in_use = self.detect_images(now).await?;
        let records = self.records();
        let mut out: Vec<Candidate> = records
            .iter()
            .filter(|(id, r)| !in_use.contains(*id) && !r.pinned)
            .map(|(id, r)| Candidate { id: id.clone(), record: *r })
            .collect();
        out.sort_by(|a, b| {
            (a.record.last_used, a.record.first_detected, &a.id).cmp(&(
                b.record.last_used,
                b.record.first_detected,
                &b.id,
            ))
        });
        Ok(out)
    }

    /// One collection (upstream `GarbageCollect`). `began` is when the kubelet started
    /// collecting: no image is removed for its age before `imageMaximumGCAge` has passed since.
    pub async fn garbage_collect(&self, began: Duration) -> Result<(), String> {
        let now = self.clock.now();
        let images = self.images_in_eviction_order(now).await?;
        let images = self.free_old_images(images, now, began).await?;
        let (capacity, available) = self.fs.image_fs_capacity().await?;
        let available = available.min(capacity);
        if capacity == 0 {
            let message = "invalid capacity 0 on image filesystem".to_owned();
            self.recorder.record(node_event(&self.node, EventType::Warning, INVALID_DISK_CAPACITY, message.clone()));
            return Err(message);
        }
        let usage = 100 - (u128::from(available) * 100 / u128::from(capacity)) as i64;
        if usage >= i64::from(self.policy.high_threshold_percent) {
            let target = u128::from(capacity) * (100 - self.policy.low_threshold_percent.clamp(0, 100) as u128) / 100;
            let to_free = target.saturating_sub(u128::from(available)) as u64;
            tracing::info!(
                usage,
                high_threshold = self.policy.high_threshold_percent,
                amount_to_free = to_free,
                low_threshold = self.policy.low_threshold_percent,
                "Disk usage on image filesystem is over the high threshold, trying to free bytes down to the low threshold"
            );
            let freed = self.free_space(to_free, now, &images).await?;
            if freed < to_free {
                let message = format!(
                    "Failed to garbage collect required amount of images. Attempted to free {to_free} bytes, but only found {freed} bytes eligible to free."
                );
                self.recorder.record(node_event(
                    &self.node,
                    EventType::Warning,
                    FREE_DISK_SPACE_FAILED,
                    message.clone(),
                ));
                return Err(message);
            }
        }
        Ok(())
    }

    /// Removes every unused image (what the eviction manager asks for under disk pressure),
    /// still sparing images younger than the minimum age. Returns the bytes freed.
    pub async fn delete_unused_images(&self) -> Result<u64, String> {
        let now = self.clock.now();
        let images = self.images_in_eviction_order(now).await?;
        self.free_space(u64::MAX, now, &images).await
    }

    /// Upstream `freeOldImages`: images unused for longer than `max_age`, once the kubelet has
    /// been collecting for that long. Returns the images left.
    async fn free_old_images(
        &self,
        images: Vec<Candidate>,
        now: Duration,
        began: Duration,
    ) -> Result<Vec<Candidate>, String> {
        let max_age = self.policy.max_age;
        if max_age.is_zero() || now.saturating_sub(began) <= max_age {
            return Ok(images);
        }
        let mut left = Vec::new();
        let mut errors = Vec::new();
        for image in images {
            if now.saturating_sub(image.record.last_used) > max_age {
                if let Err(e) = self.free_image(&image, "age").await {
                    errors.push(e);
                    left.push(image);
                }
                continue;
            }
            left.push(image);
        }
        if errors.is_empty() {
            Ok(left)
        } else {
            Err(format!(
                "wanted to free images older than {}, encountered errors in image deletion: {}",
                crate::config::format_duration(max_age),
                join_errors(&errors)
            ))
        }
    }

    /// Upstream `freeSpace`: removes images in order until `to_free` bytes are freed, skipping
    /// images used at this very pass and images first seen less than `min_age` ago.
    async fn free_space(&self, to_free: u64, now: Duration, images: &[Candidate]) -> Result<u64, String> {
        let mut freed: u64 = 0;
        let mut errors = Vec::new();
        for image in images {
            if image.record.last_used >= now {
                continue;
            }
            if now.saturating_sub(image.record.first_detected) < self.policy.min_age {
                tracing::debug!(image_id = %image.id, "image is younger than imageMinimumGCAge, not eligible for garbage collection");
                continue;
            }
            if let Err(e) = self.free_image(image, "space").await {
                errors.push(e);
                continue;
            }
            freed = freed.saturating_add(image.record.size);
            if freed >= to_free {
                break;
            }
        }
        if errors.is_empty() {
            Ok(freed)
        } else {
            Err(format!(
                "wanted to free {to_free} bytes, but freed {freed} bytes space with errors in image deletion: {}",
                join_errors(&errors)
            ))
        }
    }

    async fn free_image(&self, image: &Candidate, reason: &str) -> Result<(), String> {
        tracing::info!(image_id = %image.id, size = image.record.size, "Removing image to free bytes");
        let spec = cri::api::ImageSpec { image: image.id.clone(), ..Default::default() };
        match self.images.remove_image(spec).await {
            Err(e) if !e.is_not_found() => return Err(format!("failed to remove image {:?}: {e}", image.id)),
            _ => {}
        }
        self.records().remove(&image.id);
        if let Some(m) = &self.metrics {
            m.image_garbage_collected.inc(&[reason]);
        }
        Ok(())
    }
}

#[async_trait]
impl ImageFsCapacity for crate::stats::StatsProvider {
    async fn image_fs_capacity(&self) -> Result<(u64, u64), String> {
        let fs = self.image_fs_stats().await?;
        match (fs.capacity_bytes, fs.available_bytes) {
            (Some(c), Some(a)) => Ok((c, a)),
            _ => Err("failed to get imageFs stats: the image filesystem's capacity is unknown".to_owned()),
        }
    }
}

#[cfg(test)]
#[path = "images_tests.rs"]
mod tests;
