#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cri::fake::FAKE_SANDBOX_IMAGE;
use cri::{FakeRuntime, ImageService, RuntimeService, api};

use super::*;
use crate::clock::FakeClock;
use crate::events::MemoryRecorder;

const MB: u64 = 1_000_000;

/// The image filesystem: (capacity, available), or an error.
struct FakeFs(Mutex<Result<(u64, u64), String>>);

#[async_trait]
impl ImageFsCapacity for FakeFs {
    async fn image_fs_capacity(&self) -> Result<(u64, u64), String> {
        self.0.lock().unwrap().clone()
    }
}

struct Harness {
    fake: Arc<FakeRuntime>,
    fs: Arc<FakeFs>,
    clock: Arc<FakeClock>,
    recorder: MemoryRecorder,
    metrics: Arc<KubeletMetrics>,
    sandbox: String,
}

impl Harness {
    async fn new() -> Self {
        let fake = Arc::new(FakeRuntime::new());
        let config = api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata { name: "p".into(), uid: "u".into(), ..Default::default() }),
            ..Default::default()
        };
        let sandbox = fake.run_pod_sandbox(config, "").await.unwrap();
        Self {
            fake,
            fs: Arc::new(FakeFs(Mutex::new(Ok((10 * MB, 5 * MB))))),
            clock: Arc::new(FakeClock::new(Duration::from_secs(1_000_000))),
            recorder: MemoryRecorder::default(),
            metrics: Arc::new(KubeletMetrics::default()),
            sandbox,
        }
    }

    fn gc(&self, policy: ImageGcPolicy) -> ImageGc {
        ImageGc::new(
            self.fake.clone(),
            self.fake.clone(),
            self.fs.clone(),
            policy,
            self.clock.clone(),
            Arc::new(self.recorder.clone()),
            "node-a".into(),
        )
        .with_metrics(self.metrics.clone())
    }

    /// A container made from `image` (kept in the runtime until removed).
    async fn use_image(&self, image: &str) -> String {
        let config = api::ContainerConfig {
            metadata: Some(api::ContainerMetadata { name: image.into(), attempt: 0 }),
            image: Some(api::ImageSpec { image: image.into(), ..Default::default() }),
            ..Default::default()
        };
        self.fake.create_container(&self.sandbox, config, Default::default()).await.unwrap()
    }

    fn set_fs(&self, capacity: u64, available: u64) {
        *self.fs.0.lock().unwrap() = Ok((capacity, available));
    }

    async fn images(&self) -> Vec<String> {
        let mut tags: Vec<String> =
            self.fake.list_images(None).await.unwrap().into_iter().flat_map(|i| i.repo_tags).collect();
        tags.sort();
        tags
    }
}

/// `kubelet_image_garbage_collected_total{reason}`.
fn collected(m: &KubeletMetrics, reason: &str) -> f64 {
    let snap = m.image_garbage_collected.snapshot();
    assert_eq!(snap.name, "kubelet_image_garbage_collected_total");
    match snap.series.iter().find(|(labels, _)| labels == &[reason.to_string()]) {
        Some((_, crate::metrics::Value::Scalar(v))) => *v,
        _ => 0.0,
    }
}

fn policy() -> ImageGcPolicy {
    ImageGcPolicy {
        high_threshold_percent: 85,
        low_threshold_percent: 80,
        min_age: Duration::from_secs(120),
        max_age: Duration::ZERO,
    }
}

fn tag(name: &str) -> String {
    format!("docker.io/library/{name}:latest")
}

#[tokio::test]
async fn over_the_high_threshold_unused_images_go_least_recently_used_first() {
    let h = Harness::new().await;
    for image in ["never", "old", "new", "busy", "pinned"] {
        h.fake.add_image(image);
    }
    h.fake.add_image(FAKE_SANDBOX_IMAGE);
    h.fake.pin_image("pinned");
    let gc = h.gc(policy());
    gc.detect_images(Duration::ZERO).await.unwrap();
    // "old" was used a while ago, "new" more recently; "busy" still is.
    let old = h.use_image("old").await;
    gc.detect_images(h.clock.now()).await.unwrap();
    h.fake.remove_container(&old).await.unwrap();
    h.clock.advance(Duration::from_secs(60));
    let new = h.use_image("new").await;
    gc.detect_images(h.clock.now()).await.unwrap();
    h.fake.remove_container(&new).await.unwrap();
    h.use_image("busy").await;
    h.clock.advance(Duration::from_secs(60));

    // 84% used: below the high threshold, nothing goes.
    h.set_fs(100 * MB, 16 * MB);
    gc.garbage_collect(Duration::ZERO).await.unwrap();
    assert_eq!(h.images().await.len(), 6);

    // 86% used: down to 80% means 6 MB; the two least recently used images give ~2 MB, the
    // third (~1 MB more) is still short, so all three unused ones go and the pass fails.
    h.set_fs(100 * MB, 14 * MB);
    let err = gc.garbage_collect(Duration::ZERO).await.unwrap_err();
    assert!(
        err.starts_with(
            "Failed to garbage collect required amount of images. Attempted to free 6000000 bytes, but only found 3"
        ),
        "{err}"
    );
    assert_eq!(h.recorder.reasons(), vec![FREE_DISK_SPACE_FAILED]);
    assert_eq!(h.recorder.events()[0].object, "node/node-a");
    assert_eq!(
        h.images().await,
        vec![tag("busy"), tag("pinned"), FAKE_SANDBOX_IMAGE.to_string()],
        "in use, pinned and the sandbox image stay"
    );
    assert_eq!(collected(&h.metrics, "space"), 3.0);
}

#[tokio::test]
async fn the_collection_stops_once_enough_is_freed_in_lru_order() {
    let h = Harness::new().await;
    for image in ["a", "b", "c"] {
        h.fake.add_image(image);
    }
    let gc = h.gc(policy());
    gc.detect_images(Duration::ZERO).await.unwrap();
    for image in ["c", "a", "b"] {
        let id = h.use_image(image).await;
        h.clock.advance(Duration::from_secs(1));
        gc.detect_images(h.clock.now()).await.unwrap();
        h.fake.remove_container(&id).await.unwrap();
    }
    h.clock.advance(Duration::from_secs(1));
    // 10 MB disk, 1.4 MB free (86%): 0.6 MB to free, one image is enough: "c", used first.
    h.set_fs(10 * MB, 1_400_000);
    gc.garbage_collect(Duration::ZERO).await.unwrap();
    assert_eq!(h.images().await, vec![tag("a"), tag("b")]);
    assert!(h.recorder.events().is_empty());
}

#[tokio::test]
async fn images_pulled_after_the_start_are_kept_for_the_minimum_age() {
    let h = Harness::new().await;
    h.fake.add_image("early");
    let gc = h.gc(policy());
    gc.detect_images(Duration::ZERO).await.unwrap();
    h.fake.add_image("late");
    h.set_fs(10 * MB, 0);
    // "early" was there at the start (seen long ago); "late" first appears at this pass.
    assert!(gc.garbage_collect(Duration::ZERO).await.is_err(), "not enough to free");
    assert_eq!(h.images().await, vec![tag("late")]);
    h.clock.advance(Duration::from_secs(121));
    assert!(gc.garbage_collect(Duration::ZERO).await.is_err());
    assert!(h.images().await.is_empty(), "old enough now");
}

#[tokio::test]
async fn images_unused_beyond_the_maximum_age_go_whatever_the_usage() {
    let h = Harness::new().await;
    h.fake.add_image("stale");
    h.fake.add_image("fresh");
    let policy = ImageGcPolicy { max_age: Duration::from_secs(600), ..policy() };
    let gc = h.gc(policy);
    let began = h.clock.now();
    gc.detect_images(Duration::ZERO).await.unwrap();
    h.set_fs(100 * MB, 90 * MB);
    h.clock.advance(Duration::from_secs(300));
    let id = h.use_image("fresh").await;
    gc.detect_images(h.clock.now()).await.unwrap();
    h.fake.remove_container(&id).await.unwrap();

    // Not yet collecting for max_age: nothing goes for its age.
    gc.garbage_collect(began).await.unwrap();
    assert_eq!(h.images().await.len(), 2);

    h.clock.advance(Duration::from_secs(301));
    gc.garbage_collect(began).await.unwrap();
    assert_eq!(h.images().await, vec![tag("fresh")], "used 301 s ago, within the maximum age");
    assert_eq!(collected(&h.metrics, "age"), 1.0);
}

#[tokio::test]
async fn a_zero_capacity_is_an_invalid_disk_capacity_event() {
    let h = Harness::new().await;
    h.set_fs(0, 0);
    let err = h.gc(policy()).garbage_collect(Duration::ZERO).await.unwrap_err();
    assert_eq!(err, "invalid capacity 0 on image filesystem");
    assert_eq!(h.recorder.reasons(), vec![INVALID_DISK_CAPACITY]);
}

#[tokio::test]
async fn runtime_and_stats_failures_are_errors_and_remove_nothing() {
    let h = Harness::new().await;
    h.fake.add_image("a");
    let gc = h.gc(policy());
    gc.detect_images(Duration::ZERO).await.unwrap();
    *h.fs.0.lock().unwrap() = Err("failed to get imageFs stats: boom".into());
    assert_eq!(gc.garbage_collect(Duration::ZERO).await.unwrap_err(), "failed to get imageFs stats: boom");
    h.fake.set_down(true);
    let err = gc.garbage_collect(Duration::ZERO).await.unwrap_err();
    assert!(err.starts_with("failed to list images: "), "{err}");
    h.fake.set_down(false);
    assert_eq!(h.images().await, vec![tag("a")]);
}

#[tokio::test]
async fn delete_unused_images_frees_all_it_may() {
    let h = Harness::new().await;
    h.fake.add_image("a");
    h.fake.add_image("b");
    h.use_image("b").await;
    let gc = h.gc(policy());
    gc.detect_images(Duration::ZERO).await.unwrap();
    let freed = gc.delete_unused_images().await.unwrap();
    assert!(freed > MB && freed < 2 * MB, "{freed}");
    assert_eq!(h.images().await, vec![tag("b")]);
}

#[test]
fn a_high_threshold_of_100_without_age_limit_is_off() {
    assert!(ImageGcPolicy { high_threshold_percent: 100, ..policy() }.is_off());
    assert!(!ImageGcPolicy { high_threshold_percent: 100, max_age: Duration::from_secs(1), ..policy() }.is_off());
    assert!(!policy().is_off());
}
