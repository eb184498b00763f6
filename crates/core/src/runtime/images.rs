//! Image pulls per `imagePullPolicy` through CRI, with per-(pod, image) backoff and the upstream
//! events and waiting reasons (`ErrImagePull` → `ImagePullBackOff`, `ErrImageNeverPull`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cri::{ImageService, api};
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::clock::Clock;
use crate::config::format_duration;
use crate::container::WaitingReason;
use crate::events::{EventRecorder, EventType, container_event};
use crate::runtime::backoff::Backoff;
use crate::runtime::labels::uid_of;

pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
pub const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
pub const INVALID_IMAGE_NAME: &str = "InvalidImageName";

pub struct ImageManager {
    images: Arc<dyn ImageService>,
    recorder: Arc<dyn EventRecorder>,
    clock: Arc<dyn Clock>,
    backoff: Mutex<Backoff>,
}

impl ImageManager {
    pub fn new(images: Arc<dyn ImageService>, recorder: Arc<dyn EventRecorder>, clock: Arc<dyn Clock>) -> Self {
        // Upstream image backoff: 10 s doubling to 5 min.
        Self {
            images,
            recorder,
            clock,
            backoff: Mutex::new(Backoff::new(Duration::from_secs(10), Duration::from_secs(300))),
        }
    }

    /// Makes sure the container's image is present; returns the runtime's image reference, or
    /// the waiting reason and how long until a retry makes sense.
    pub async fn ensure_image(
        &self,
        pod: &Pod,
        c: &Container,
        sandbox: &api::PodSandboxConfig,
    ) -> Result<String, (WaitingReason, Option<Duration>)> {
        let image = c.image.clone().unwrap_or_default();
        let fail = |reason: &str, message: String| WaitingReason { reason: reason.into(), message };
        if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
            let msg = format!("Failed to apply default image tag {image:?}: couldn't parse image name {image:?}");
            self.recorder.record(container_event(pod, &c.name, EventType::Warning, "InspectFailed", msg.clone()));
            return Err((fail(INVALID_IMAGE_NAME, msg), None));
        }
        let spec = api::ImageSpec { image: image.clone(), user_specified_image: image.clone(), ..Default::default() };
        let policy = c.image_pull_policy.as_deref().unwrap_or("IfNotPresent");
        let present = match self.images.image_status(spec.clone()).await {
            Ok(found) => found.map(|i| i.id),
            Err(e) => return Err((fail(ERR_IMAGE_PULL, format!("failed to inspect image {image:?}: {e}")), None)),
        };
        if policy != "Always"
            && let Some(id) = present
        {
            self.recorder.record(container_event(
                pod,
                &c.name,
                EventType::Normal,
                "Pulled",
                format!("Container image {image:?} already present on machine"),
            ));
            return Ok(id);
        }
        if policy == "Never" {
            let msg = format!("Container image {image:?} is not present with pull policy of Never");
            self.recorder.record(container_event(pod, &c.name, EventType::Warning, "ErrImageNeverPull", msg.clone()));
            return Err((fail(ERR_IMAGE_NEVER_PULL, msg), None));
        }

        let key = format!("{}_{}", uid_of(pod), image);
        let now = self.clock.now();
        let in_backoff = self.backoff.lock().ok().and_then(|b| b.remaining_since_update(&key, now));
        if let Some(left) = in_backoff {
            let msg = format!("Back-off pulling image {image:?}");
            self.recorder.record(container_event(pod, &c.name, EventType::Normal, "BackOff", msg.clone()));
            return Err((fail(IMAGE_PULL_BACK_OFF, msg), Some(left)));
        }
        self.recorder.record(container_event(
            pod,
            &c.name,
            EventType::Normal,
            "Pulling",
            format!("Pulling image {image:?}"),
        ));
        let started = tokio::time::Instant::now();
        match self.images.pull_image(spec, None, Some(sandbox.clone())).await {
            Ok(image_ref) => {
                // Upstream truncates to milliseconds and prints Go durations; pulls here are not
                // queued, so the time including waiting is the pull's.
                let took = format_duration(Duration::from_millis(
                    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                ));
                // Upstream reads the size afterwards too, and prints 0 when it cannot.
                let by_ref = api::ImageSpec { image: image_ref.clone(), ..Default::default() };
                let size = self.images.image_status(by_ref).await.ok().flatten().map_or(0, |i| i.size);
                self.recorder.record(container_event(
                    pod,
                    &c.name,
                    EventType::Normal,
                    "Pulled",
                    format!(
                        "Successfully pulled image {image:?} in {took} ({took} including waiting). Image size: {size} bytes."
                    ),
                ));
                if let Ok(mut b) = self.backoff.lock() {
                    b.forget_prefix(&key);
                }
                Ok(image_ref)
            }
            Err(e) => {
                let msg = format!("Failed to pull image {image:?}: {e}");
                self.recorder.record(container_event(pod, &c.name, EventType::Warning, "Failed", msg.clone()));
                self.recorder.record(container_event(
                    pod,
                    &c.name,
                    EventType::Warning,
                    "Failed",
                    format!("Error: {ERR_IMAGE_PULL}"),
                ));
                let now = self.clock.now();
                let left = self.backoff.lock().ok().map(|mut b| {
                    b.next(&key, now, now);
                    b.get(&key).unwrap_or_default()
                });
                Err((fail(ERR_IMAGE_PULL, msg), left))
            }
        }
    }

    /// Forgets a pod's pull backoff (the pod went away).
    pub fn forget_pod(&self, uid: &str) {
        if let Ok(mut b) = self.backoff.lock() {
            b.forget_prefix(&format!("{uid}_"));
        }
    }
}
