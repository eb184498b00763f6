#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use cri::{FakeRuntime, RuntimeService, api};

use super::*;
use crate::clock::FakeClock;

/// 2026-11-22 10:00:00 UTC.
const START: u64 = 1_795_341_600;

struct Harness {
    fake: Arc<FakeRuntime>,
    clock: Arc<FakeClock>,
    dir: tempfile::TempDir,
    id: String,
}

impl Harness {
    async fn new() -> Self {
        let fake = Arc::new(FakeRuntime::new());
        fake.add_image("busybox");
        let dir = tempfile::tempdir().unwrap();
        let sandbox = api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata { name: "p".into(), uid: "u".into(), ..Default::default() }),
            log_directory: dir.path().display().to_string(),
            ..Default::default()
        };
        let sb = fake.run_pod_sandbox(sandbox, "").await.unwrap();
        let config = api::ContainerConfig {
            metadata: Some(api::ContainerMetadata { name: "app".into(), attempt: 0 }),
            image: Some(api::ImageSpec { image: "busybox".into(), ..Default::default() }),
            log_path: "app/0.log".into(),
            ..Default::default()
        };
        std::fs::create_dir_all(dir.path().join("app")).unwrap();
        let id = fake.create_container(&sb, config, Default::default()).await.unwrap();
        fake.start_container(&id).await.unwrap();
        std::fs::write(dir.path().join("app/0.log"), "").unwrap();
        let clock = Arc::new(FakeClock::new(Duration::from_secs(START)));
        Self { fake, clock, dir, id }
    }

    fn manager(&self, max_size: u64, max_files: usize) -> ContainerLogManager {
        let policy = LogRotationPolicy { max_size, max_files, workers: 1, monitor_interval: Duration::from_secs(10) };
        ContainerLogManager::new(self.fake.clone(), policy, self.clock.clone())
    }

    /// The rotated name of `0.log` at `minutes` after the start.
    fn rotated(&self, minutes: u64) -> String {
        format!("0.log.{}", rotation_stamp(Duration::from_secs(START + minutes * 60)))
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("app/0.log")
    }

    /// The container writes `text` to its (current) log.
    fn write(&self, text: &str) {
        let mut f = std::fs::OpenOptions::new().append(true).create(true).open(self.log()).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path().join("app"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn read(&self, name: &str) -> String {
        let path = self.dir.path().join("app").join(name);
        let mut text = String::new();
        if name.ends_with(".gz") {
            flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_string(&mut text).unwrap();
        } else {
            text = std::fs::read_to_string(path).unwrap();
        }
        text
    }
}

#[tokio::test]
async fn a_log_under_the_limit_is_left_alone() {
    let h = Harness::new().await;
    h.write("short\n");
    h.manager(100, 5).rotate_logs().await.unwrap();
    assert_eq!(h.files(), vec!["0.log"]);
    assert!(!h.fake.calls().iter().any(|c| c.starts_with("ReopenContainerLog")));
}

#[tokio::test]
async fn a_log_at_the_limit_is_renamed_with_a_timestamp_and_reopened() {
    let h = Harness::new().await;
    h.write(&"x".repeat(100));
    h.manager(100, 5).rotate_logs().await.unwrap();
    let rotated = h.rotated(0);
    assert_eq!(h.files(), vec!["0.log".to_string(), rotated.clone()]);
    assert_eq!(h.read(&rotated), "x".repeat(100));
    assert_eq!(h.read("0.log"), "", "the runtime reopened a new file");
    assert!(h.fake.calls().contains(&format!("ReopenContainerLog {}", h.id)));
}

#[tokio::test]
async fn older_rotations_are_compressed_and_the_excess_removed() {
    let h = Harness::new().await;
    let m = h.manager(10, 3);
    for round in 0..4 {
        h.write(&format!("round {round} {}\n", "y".repeat(20)));
        m.rotate_logs().await.unwrap();
        h.clock.advance(Duration::from_secs(60));
    }
    // At most 3 files: the current one, the newest rotation as it was, one older compressed.
    let (older, newest) = (format!("{}.gz", h.rotated(2)), h.rotated(3));
    assert_eq!(h.files(), vec!["0.log".to_string(), older.clone(), newest.clone()]);
    assert!(h.read(&older).starts_with("round 2 "));
    assert!(h.read(&newest).starts_with("round 3 "));
}

#[tokio::test]
async fn a_failed_reopen_puts_the_file_back() {
    let h = Harness::new().await;
    h.write(&"z".repeat(50));
    h.fake.inject_error(
        "ReopenContainerLog",
        cri::Error::Rpc {
            op: "ReopenContainerLog",
            what: h.id.clone(),
            code: tonic::Code::Unknown,
            message: "boom".into(),
        },
    );
    h.manager(10, 5).rotate_logs().await.unwrap();
    assert_eq!(h.files(), vec!["0.log"], "nothing lost, tried again next pass");
    assert_eq!(h.read("0.log"), "z".repeat(50));
    h.manager(10, 5).rotate_logs().await.unwrap();
    assert_eq!(h.files().len(), 2);
}

#[tokio::test]
async fn a_missing_log_is_reopened() {
    let h = Harness::new().await;
    std::fs::remove_file(h.log()).unwrap();
    h.manager(10, 5).rotate_logs().await.unwrap();
    assert_eq!(h.files(), vec!["0.log"]);
}

#[tokio::test]
async fn leftovers_of_an_interrupted_rotation_are_cleaned_up() {
    let h = Harness::new().await;
    let app = h.dir.path().join("app");
    std::fs::write(app.join("0.log.20261122-090000.gz.tmp"), "partial").unwrap();
    std::fs::write(app.join("0.log.20261122-090000"), "raw").unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"raw").unwrap();
    std::fs::write(app.join("0.log.20261122-090000.gz"), gz.finish().unwrap()).unwrap();
    h.write(&"w".repeat(20));
    h.manager(10, 5).rotate_logs().await.unwrap();
    assert_eq!(h.files(), vec!["0.log".to_string(), "0.log.20261122-090000.gz".to_string(), h.rotated(0)]);
    assert_eq!(h.read("0.log.20261122-090000.gz"), "raw");
}

#[tokio::test]
async fn only_running_containers_are_rotated() {
    let h = Harness::new().await;
    h.write(&"q".repeat(50));
    assert!(h.fake.exit_container(&h.id, 0));
    h.manager(10, 5).rotate_logs().await.unwrap();
    assert_eq!(h.files(), vec!["0.log"]);
}

#[tokio::test]
async fn a_runtime_that_is_down_is_an_error() {
    let h = Harness::new().await;
    h.fake.set_down(true);
    let err = h.manager(10, 5).rotate_logs().await.unwrap_err();
    assert!(err.starts_with("failed to list containers: "), "{err}");
}

#[test]
fn rotation_stamps_are_upstreams_timestamp_format() {
    let stamp = rotation_stamp(Duration::from_secs(START));
    assert_eq!(stamp.len(), 15, "{stamp}");
    assert!(stamp.chars().enumerate().all(|(i, c)| if i == 8 { c == '-' } else { c.is_ascii_digit() }), "{stamp}");
    assert!(stamp.starts_with("2026112"), "{stamp}");
}

#[test]
fn the_policy_comes_from_the_configuration() {
    let c = crate::config::KubeletConfiguration::default();
    let p = LogRotationPolicy::from_config(&c).unwrap().unwrap();
    assert_eq!((p.max_size, p.max_files, p.workers, p.monitor_interval), (10 << 20, 5, 1, Duration::from_secs(10)));
    let off = crate::config::KubeletConfiguration { container_log_max_size: "-1".into(), ..c };
    assert_eq!(LogRotationPolicy::from_config(&off).unwrap(), None, "a negative size turns rotation off");
}
