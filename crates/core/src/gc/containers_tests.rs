#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use cri::api;
use cri::{FakeRuntime, RuntimeService};

use super::*;
use crate::clock::FakeClock;

/// Pods the kubelet still knows.
struct Known(HashSet<String>);

impl PodStateProvider for Known {
    fn should_pod_content_be_removed(&self, uid: &str) -> bool {
        !self.0.contains(uid)
    }
}

fn known(uids: &[&str]) -> Known {
    Known(uids.iter().map(|u| u.to_string()).collect())
}

struct Harness {
    fake: Arc<FakeRuntime>,
    clock: Arc<FakeClock>,
    logs: tempfile::TempDir,
    links: tempfile::TempDir,
}

impl Harness {
    fn new() -> Self {
        let fake = Arc::new(FakeRuntime::new());
        fake.add_image("busybox");
        let clock = Arc::new(FakeClock::new(Duration::from_nanos(fake.now_ns() as u64)));
        Self { fake, clock, logs: tempfile::tempdir().unwrap(), links: tempfile::tempdir().unwrap() }
    }

    fn gc(&self, policy: ContainerGcPolicy) -> ContainerGc {
        // The collector's clock follows the runtime's.
        self.clock.advance(
            Duration::from_nanos(self.fake.now_ns() as u64).saturating_sub(crate::clock::Clock::now(&*self.clock)),
        );
        ContainerGc::new(self.fake.clone(), policy, self.logs.path().to_owned(), self.clock.clone())
            .with_legacy_logs_dir(self.links.path().to_owned())
    }

    fn log_dir(&self, uid: &str) -> std::path::PathBuf {
        self.logs.path().join(format!("default_pod-{uid}_{uid}"))
    }

    async fn sandbox(&self, uid: &str, attempt: u32) -> String {
        let labels = HashMap::from([
            (labels::POD_UID.to_string(), uid.to_string()),
            (labels::POD_NAME.to_string(), format!("pod-{uid}")),
            (labels::POD_NAMESPACE.to_string(), "default".to_string()),
        ]);
        let config = api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: format!("pod-{uid}"),
                uid: uid.into(),
                namespace: "default".into(),
                attempt,
            }),
            labels,
            log_directory: self.log_dir(uid).display().to_string(),
            ..Default::default()
        };
        self.fake.run_pod_sandbox(config, "").await.unwrap()
    }

    /// A container instance that ran and exited, with a log file (and a rotated one) and a
    /// legacy link.
    async fn dead(&self, sandbox: &str, uid: &str, name: &str, attempt: u32) -> String {
        let id = self.running(sandbox, uid, name, attempt).await;
        self.fake.advance(Duration::from_secs(1));
        assert!(self.fake.exit_container(&id, 1));
        id
    }

    async fn running(&self, sandbox: &str, uid: &str, name: &str, attempt: u32) -> String {
        let labels = HashMap::from([
            (labels::POD_UID.to_string(), uid.to_string()),
            (labels::CONTAINER_NAME.to_string(), name.to_string()),
            (labels::POD_NAME.to_string(), format!("pod-{uid}")),
            (labels::POD_NAMESPACE.to_string(), "default".to_string()),
        ]);
        let config = api::ContainerConfig {
            metadata: Some(api::ContainerMetadata { name: name.into(), attempt }),
            image: Some(api::ImageSpec { image: "busybox".into(), ..Default::default() }),
            labels,
            log_path: format!("{name}/{attempt}.log"),
            ..Default::default()
        };
        self.fake.advance(Duration::from_secs(1));
        let id = self.fake.create_container(sandbox, config, Default::default()).await.unwrap();
        self.fake.start_container(&id).await.unwrap();
        let log = self.log_dir(uid).join(name).join(format!("{attempt}.log"));
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        std::fs::write(&log, "line\n").unwrap();
        std::fs::write(log.with_extension("log.20261122-101010"), "old\n").unwrap();
        let link = legacy_log_link(self.links.path(), &id, name, &format!("pod-{uid}"), "default");
        std::os::unix::fs::symlink(&log, link).unwrap();
        id
    }

    async fn container_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.fake.list_containers(None).await.unwrap().into_iter().map(|c| c.id).collect();
        ids.sort();
        ids
    }

    async fn sandbox_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.fake.list_pod_sandbox(None).await.unwrap().into_iter().map(|s| s.id).collect();
        ids.sort();
        ids
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn keeps_the_newest_dead_instance_per_container_and_removes_older_ones_with_their_logs() {
    let h = Harness::new();
    let sb = h.sandbox("u1", 0).await;
    let a0 = h.dead(&sb, "u1", "app", 0).await;
    let a1 = h.dead(&sb, "u1", "app", 1).await;
    let a2 = h.dead(&sb, "u1", "app", 2).await;
    let a3 = h.running(&sb, "u1", "app", 3).await;
    let s0 = h.dead(&sb, "u1", "side", 0).await;

    h.gc(ContainerGcPolicy::default()).garbage_collect(&known(&["u1"]), true).await.unwrap();

    assert_eq!(h.container_ids().await, sorted(vec![a2.clone(), a3.clone(), s0.clone()]));
    let app = h.log_dir("u1").join("app");
    let mut left: Vec<String> =
        std::fs::read_dir(&app).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(
        left,
        vec!["2.log", "2.log.20261122-101010", "3.log", "3.log.20261122-101010"],
        "the removed instances' logs (current and rotated) are gone"
    );
    for (id, kept) in [(&a0, false), (&a1, false), (&a2, true), (&a3, true)] {
        let link = legacy_log_link(h.links.path(), id, "app", "pod-u1", "default");
        assert_eq!(link.symlink_metadata().is_ok(), kept, "legacy link of {id}");
    }
}

#[tokio::test]
async fn young_dead_containers_are_kept_until_the_minimum_age() {
    let h = Harness::new();
    let sb = h.sandbox("u1", 0).await;
    let first = h.dead(&sb, "u1", "app", 0).await;
    h.fake.advance(Duration::from_secs(30));
    let second = h.dead(&sb, "u1", "app", 1).await;
    let third = h.dead(&sb, "u1", "app", 2).await;
    let policy = ContainerGcPolicy { min_age: Duration::from_secs(10), ..Default::default() };

    // `second` and `third` were created 4 s and 2 s ago: not evictable, so `first` is the only
    // dead instance of its unit and stays.
    h.gc(policy).garbage_collect(&known(&["u1"]), true).await.unwrap();
    assert_eq!(h.container_ids().await, sorted(vec![first.clone(), second.clone(), third.clone()]));

    h.fake.advance(Duration::from_secs(20));
    h.gc(policy).garbage_collect(&known(&["u1"]), true).await.unwrap();
    assert_eq!(h.container_ids().await, vec![third]);
}

#[tokio::test]
async fn negative_limits_keep_everything_and_zero_keeps_nothing() {
    let h = Harness::new();
    let sb = h.sandbox("u1", 0).await;
    let ids = [h.dead(&sb, "u1", "app", 0).await, h.dead(&sb, "u1", "app", 1).await];
    let keep_all = ContainerGcPolicy { max_per_pod_container: -1, ..Default::default() };
    h.gc(keep_all).garbage_collect(&known(&["u1"]), true).await.unwrap();
    assert_eq!(h.container_ids().await, sorted(ids.to_vec()));

    let none = ContainerGcPolicy { max_per_pod_container: 0, ..Default::default() };
    h.gc(none).garbage_collect(&known(&["u1"]), true).await.unwrap();
    assert!(h.container_ids().await.is_empty());
    assert_eq!(h.sandbox_ids().await, vec![sb], "a live pod keeps its newest sandbox");
}

#[tokio::test]
async fn max_containers_leaves_an_equal_share_per_unit_then_removes_the_oldest() {
    let h = Harness::new();
    let sb1 = h.sandbox("u1", 0).await;
    let sb2 = h.sandbox("u2", 0).await;
    let mut u1 = Vec::new();
    for attempt in 0..3 {
        u1.push(h.dead(&sb1, "u1", "app", attempt).await);
    }
    h.dead(&sb2, "u2", "a", 0).await;
    let b1 = h.dead(&sb2, "u2", "a", 1).await;
    let c0 = h.dead(&sb2, "u2", "b", 0).await;
    let policy = ContainerGcPolicy { max_per_pod_container: -1, max_containers: 2, ..Default::default() };

    h.gc(policy).garbage_collect(&known(&["u1", "u2"]), true).await.unwrap();

    // Three units for two places: one each (the newest), then the oldest of those (u1's) goes.
    assert_eq!(h.container_ids().await, sorted(vec![b1, c0]));
}

#[tokio::test]
async fn a_deleted_pod_loses_its_containers_sandboxes_and_log_directory_once_sources_are_ready() {
    let h = Harness::new();
    let sb = h.sandbox("gone", 0).await;
    let id = h.dead(&sb, "gone", "app", 0).await;
    h.fake.stop_pod_sandbox(&sb).await.unwrap();
    let live_sb = h.sandbox("live", 0).await;
    let live = h.running(&live_sb, "live", "app", 0).await;

    // Before every source reported, a pod not seen yet looks deleted: nothing of it goes.
    h.gc(ContainerGcPolicy::default()).garbage_collect(&known(&["live"]), false).await.unwrap();
    assert_eq!(h.container_ids().await, sorted(vec![id.clone(), live.clone()]));
    assert!(h.log_dir("gone").exists());

    h.gc(ContainerGcPolicy::default()).garbage_collect(&known(&["live"]), true).await.unwrap();
    assert_eq!(h.container_ids().await, vec![live]);
    assert_eq!(h.sandbox_ids().await, vec![live_sb]);
    assert!(!h.log_dir("gone").exists(), "the pod's log directory is removed");
    assert!(h.log_dir("live").exists());
}

#[tokio::test]
async fn a_live_pod_keeps_its_newest_sandbox_and_sandboxes_with_containers() {
    let h = Harness::new();
    let old_empty = h.sandbox("u1", 0).await;
    h.fake.stop_pod_sandbox(&old_empty).await.unwrap();
    h.fake.advance(Duration::from_secs(1));
    let old_with_dead = h.sandbox("u1", 1).await;
    let dead = h.dead(&old_with_dead, "u1", "app", 0).await;
    h.fake.stop_pod_sandbox(&old_with_dead).await.unwrap();
    h.fake.advance(Duration::from_secs(1));
    let newest = h.sandbox("u1", 2).await;
    h.fake.stop_pod_sandbox(&newest).await.unwrap();

    h.gc(ContainerGcPolicy::default()).garbage_collect(&known(&["u1"]), true).await.unwrap();

    assert_eq!(h.sandbox_ids().await, sorted(vec![old_with_dead, newest]));
    assert_eq!(h.container_ids().await, vec![dead], "the last dead instance stays");
}

#[tokio::test]
async fn dangling_legacy_links_go_unless_their_container_still_runs() {
    let h = Harness::new();
    let sb = h.sandbox("u1", 0).await;
    let exited = h.dead(&sb, "u1", "a", 0).await;
    let running = h.running(&sb, "u1", "b", 0).await;
    let exited_link = legacy_log_link(h.links.path(), &exited, "a", "pod-u1", "default");
    let running_link = legacy_log_link(h.links.path(), &running, "b", "pod-u1", "default");
    let unknown_link = h.links.path().join("x_default_c-0123456789ab.log");
    std::os::unix::fs::symlink("/nonexistent/0.log", &unknown_link).unwrap();
    // Both logs are gone (a rotation in progress for the running one).
    std::fs::remove_file(h.log_dir("u1").join("a/0.log")).unwrap();
    std::fs::remove_file(h.log_dir("u1").join("b/0.log")).unwrap();

    h.gc(ContainerGcPolicy::default()).garbage_collect(&known(&["u1"]), true).await.unwrap();

    assert!(exited_link.symlink_metadata().is_err(), "the exited container's dangling link is removed");
    assert!(unknown_link.symlink_metadata().is_err(), "a link to a container the runtime does not know is removed");
    assert!(running_link.symlink_metadata().is_ok(), "a running container's link is kept");
}

#[tokio::test]
async fn listing_failures_are_returned_and_nothing_is_removed() {
    let h = Harness::new();
    let sb = h.sandbox("u1", 0).await;
    let ids = [h.dead(&sb, "u1", "app", 0).await, h.dead(&sb, "u1", "app", 1).await];
    h.fake.set_down(true);
    let err = h.gc(ContainerGcPolicy::default()).garbage_collect(&known(&[]), true).await.unwrap_err();
    assert!(err.starts_with("[failed to list containers: "), "{err}");
    assert!(err.contains(", failed to list containers: "), "both passes report: {err}");
    h.fake.set_down(false);
    assert_eq!(h.container_ids().await, sorted(ids.to_vec()));
}

#[tokio::test]
async fn unlabelled_runtime_objects_are_not_the_kubelets() {
    let h = Harness::new();
    let config = api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata { name: "other".into(), uid: "x".into(), ..Default::default() }),
        ..Default::default()
    };
    let sb = h.fake.run_pod_sandbox(config, "").await.unwrap();
    h.fake.stop_pod_sandbox(&sb).await.unwrap();
    let config = api::ContainerConfig {
        metadata: Some(api::ContainerMetadata { name: "c".into(), attempt: 0 }),
        image: Some(api::ImageSpec { image: "busybox".into(), ..Default::default() }),
        ..Default::default()
    };
    let id = h.fake.create_container(&sb, config, Default::default()).await.unwrap();
    h.gc(ContainerGcPolicy::default()).garbage_collect(&known(&[]), true).await.unwrap();
    assert_eq!(h.container_ids().await, vec![id]);
    assert_eq!(h.sandbox_ids().await, vec![sb]);
}

#[test]
fn legacy_link_names_follow_upstream_and_fit_a_file_name() {
    let dir = std::path::Path::new("/var/log/containers");
    assert_eq!(legacy_log_link(dir, "abcdef0123", "app", "web", "default"), dir.join("web_default_app-abcdef0123.log"));
    let long = legacy_log_link(dir, &"f".repeat(64), &"c".repeat(63), &"p".repeat(150), "ns");
    assert_eq!(long.file_name().unwrap().len(), 255);
    let kept_id = format!("c-{}.log", "f".repeat(33));
    assert!(long.to_string_lossy().ends_with(&kept_id), "the end of the ID is cut: {}", long.display());
    assert_eq!(container_id_of_legacy_link(&dir.join("web_default_app-abcdef0123.log")), Some("abcdef0123"));
    assert_eq!(container_id_of_legacy_link(&dir.join("web_default_app-abc.log")), None, "too short");
    assert_eq!(container_id_of_legacy_link(&dir.join("web_default_app-abcdef0123.txt")), None);
}
