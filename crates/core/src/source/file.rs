//! The static pod file source (upstream `pkg/kubelet/config/file.go` and `file_linux.go`).
//!
//! `staticPodPath` may be a single manifest or a directory of manifests. As upstream:
//! * a directory is read non-recursively; every regular file whose name does not start with a
//!   dot is a manifest, whatever its extension (upstream globs `[^.]*`), in name order;
//!   subdirectories and other file types are skipped with a warning;
//! * each file holds exactly one Pod, YAML or JSON, with `apiVersion: v1` and `kind: Pod`
//!   (both required, as upstream's decoder requires them), at most 10 MiB, with a name;
//! * pods are defaulted ([`super::apply_defaults`]) and validated
//!   ([`super::validation::validate_static_pod`]); an invalid manifest is skipped and every other
//!   pod keeps going. The problem (file, field, reason) is logged once per file content, not on
//!   every rescan;
//! * if two manifests define the same namespace/name, the later file (in name order) wins:
//!   upstream's store is keyed by namespace/name and its `Replace` keeps the last item. Upstream
//!   is silent about it; we warn;
//! * the whole set of valid pods is sent as one [`SourceSnapshot`] whenever it changes (identical
//!   sets are not re-sent); the first scan always sends, even an empty set, so the kubelet knows
//!   the source is synced;
//! * changes are picked up by inotify (create, write, attribute change, move, delete) and by a
//!   full re-list every `fileCheckFrequency`. Like upstream, a watch event never removes a pod
//!   because its file became unparsable (it may be half-written): the previous version of that
//!   file's pod is kept until the next periodic re-list, which reflects the files exactly;
//! * a path that does not exist yet sends an empty set and is retried every second
//!   (upstream's "Unable to read config path"); when it appears it is picked up. A single-file
//!   path that fails to parse keeps the previous set, as upstream's `listConfig` does.
//!
//! Unlike upstream, which handles each event incrementally, every relevant event (after 100 ms
//! without further events) triggers a scan of the whole path; unchanged files are not re-parsed.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use inotify::{EventMask, EventStream, Inotify, WatchMask};
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::validation::{ValidationError, validate_static_pod};
use super::{FILE_SOURCE, SourceSnapshot, apply_defaults};
use crate::config::KubeletConfiguration;

/// Largest manifest upstream reads (`maxConfigLength`).
pub const MAX_MANIFEST_SIZE: u64 = 10 << 20;
/// Retry period while the path does not exist (upstream `retryPeriod`).
const RETRY_PERIOD: Duration = Duration::from_secs(1);
/// Cap of the back-off when a watch cannot be set up (upstream `maxRetryPeriod`).
const MAX_RETRY_PERIOD: Duration = Duration::from_secs(20);
/// Quiet time after the last inotify event before the path is scanned.
const EVENT_SETTLE: Duration = Duration::from_millis(100);

/// A manifest that could not be turned into a pod.
#[derive(Debug, thiserror::Error)]
#[error("static pod manifest {}: {kind}", path.display())]
pub struct ManifestError {
    pub path: PathBuf,
    pub kind: ManifestErrorKind,
}

/// Why a manifest was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ManifestErrorKind {
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    #[error("larger than {MAX_MANIFEST_SIZE} bytes")]
    TooLarge,
    /// Malformed YAML/JSON; includes line and column.
    #[error("couldn't parse as pod: {0}")]
    Syntax(String),
    /// Not a single `v1` `Pod` object.
    #[error("couldn't parse as pod: {0}")]
    NotAPod(String),
    /// A field has the wrong type or format.
    #[error("couldn't parse as pod: {field}: {message}")]
    Decode { field: String, message: String },
    #[error("invalid pod: name is needed for the pod")]
    MissingName,
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

/// Decodes, defaults and validates one manifest read from `path`, as upstream's
/// `tryDecodeSinglePod`.
pub fn parse_manifest(data: &[u8], path: &Path, node_name: &str) -> Result<Pod, ManifestError> {
    let err = |kind| ManifestError { path: path.to_owned(), kind };
    if data.len() as u64 > MAX_MANIFEST_SIZE {
        return Err(err(ManifestErrorKind::TooLarge));
    }
    // JSON is YAML, so this handles both.
    let value: Value = serde_yaml::from_slice(data).map_err(|e| err(ManifestErrorKind::Syntax(e.to_string())))?;
    let Value::Object(map) = &value else {
        return Err(err(ManifestErrorKind::NotAPod(
            "expected an object with apiVersion \"v1\" and kind \"Pod\"".to_owned(),
        )));
    };
    let field = |name: &str| match map.get(name) {
        None => "missing".to_owned(),
        Some(Value::String(s)) => format!("{s:?}"),
        Some(other) => other.to_string(),
    };
    let (kind, api_version) = (map.get("kind"), map.get("apiVersion"));
    if kind.and_then(Value::as_str) != Some("Pod") || api_version.and_then(Value::as_str) != Some("v1") {
        return Err(err(ManifestErrorKind::NotAPod(format!(
            "expected apiVersion \"v1\" and kind \"Pod\", found apiVersion {} and kind {}",
            field("apiVersion"),
            field("kind")
        ))));
    }
    let mut pod: Pod = serde_path_to_error::deserialize(value)
        .map_err(|e| err(ManifestErrorKind::Decode { field: e.path().to_string(), message: e.inner().to_string() }))?;
    if pod.metadata.name.as_deref().is_none_or(str::is_empty) {
        return Err(err(ManifestErrorKind::MissingName));
    }
    apply_defaults(&mut pod, node_name, &path.to_string_lossy());
    validate_static_pod(&pod).map_err(|e| err(e.into()))?;
    Ok(pod)
}

/// Watches a static pod path and sends its pods. See the module documentation.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    node_name: String,
    period: Duration,
}

impl FileSource {
    /// `period` is the re-list period (`fileCheckFrequency`); a zero period is raised to 1 ms.
    pub fn new(path: impl Into<PathBuf>, node_name: impl Into<String>, period: Duration) -> Self {
        let path: PathBuf = path.into();
        // Upstream trims trailing separators (inotify wants a path without them).
        let trimmed = path.to_string_lossy().trim_end_matches('/').to_owned();
        let path = if trimmed.is_empty() { path } else { PathBuf::from(trimmed) };
        Self { path, node_name: node_name.into(), period: period.max(Duration::from_millis(1)) }
    }

    /// The file source configured by `staticPodPath` and `fileCheckFrequency`, `None` when
    /// `staticPodPath` is empty.
    pub fn from_config(config: &KubeletConfiguration, node_name: &str) -> Option<Self> {
        config.static_pod_path().map(|p| Self::new(p, node_name, config.file_check_frequency))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs until `shutdown` is cancelled or the receiver is dropped.
    pub async fn run(self, tx: mpsc::Sender<SourceSnapshot>, shutdown: CancellationToken) {
        tracing::info!(path = %self.path.display(), "Watching path");
        let mut ticker = tokio::time::interval_at(Instant::now() + self.period, self.period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut runner = Runner {
            scanner: Scanner::new(self.path, self.node_name),
            tx,
            shutdown,
            ticker,
            last_sent: None,
            backoff: RETRY_PERIOD,
        };
        let mut state = State::Start;
        while !matches!(state, State::Stopped) {
            state = runner.step(state).await;
        }
        tracing::debug!("Static pod file source stopped");
    }
}

// ---------------------------------------------------------------------------------------------
// The watch loop

enum State {
    /// Set up the watch and read the path.
    Start,
    /// The path is missing or cannot be watched: wait, then start over.
    Waiting {
        delay: Duration,
    },
    /// Watching: re-read on inotify events (after they settle) and on every tick.
    Watching(Box<Watch>),
    Stopped,
}

struct Runner {
    scanner: Scanner,
    tx: mpsc::Sender<SourceSnapshot>,
    shutdown: CancellationToken,
    /// Periodic full re-list (`fileCheckFrequency`).
    ticker: tokio::time::Interval,
    last_sent: Option<Vec<Pod>>,
    /// Next delay after a failure to set up a watch on an existing path.
    backoff: Duration,
}

impl Runner {
    async fn step(&mut self, state: State) -> State {
        match state {
            State::Stopped => State::Stopped,
            State::Start => {
                // Watch first, then read: nothing written in between is missed.
                let watch = Watch::new(&self.scanner.path);
                let Some(kind) = self.relist(ScanMode::Relist).await else {
                    return State::Stopped;
                };
                match watch {
                    Ok(w) if w.expects(kind) => {
                        self.backoff = RETRY_PERIOD;
                        State::Watching(Box::new(w))
                    }
                    Ok(_) => State::Waiting { delay: RETRY_PERIOD },
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::Waiting { delay: RETRY_PERIOD },
                    Err(e) => {
                        self.scanner.notes.once(format!(
                            "Unable to watch static pod path {}: {e}; re-listing every {:?}",
                            self.scanner.path.display(),
                            self.ticker.period()
                        ));
                        let delay = self.backoff;
                        self.backoff = (self.backoff * 2).min(MAX_RETRY_PERIOD);
                        State::Waiting { delay }
                    }
                }
            }
            State::Waiting { delay } => {
                tokio::select! {
                    _ = self.shutdown.cancelled() => State::Stopped,
                    _ = tokio::time::sleep(delay) => State::Start,
                    _ = self.ticker.tick() => State::Start,
                }
            }
            State::Watching(mut watch) => {
                let settle = watch.settle;
                tokio::select! {
                    _ = self.shutdown.cancelled() => State::Stopped,
                    _ = self.ticker.tick() => self.rescan(watch, ScanMode::Relist).await,
                    _ = sleep_until_opt(settle) => {
                        watch.settle = None;
                        self.rescan(watch, ScanMode::Event).await
                    }
                    event = watch.stream.next() => match event {
                        Some(Ok(event)) => match watch.classify(event.mask, event.name.as_ref()) {
                            Relevance::Ignore => State::Watching(watch),
                            Relevance::Changed => {
                                watch.settle = Some(Instant::now() + EVENT_SETTLE);
                                State::Watching(watch)
                            }
                            Relevance::Lost => State::Start,
                        },
                        Some(Err(e)) => {
                            tracing::warn!(path = %self.scanner.path.display(), error = %e, "Error while watching static pod path");
                            State::Waiting { delay: RETRY_PERIOD }
                        }
                        None => State::Waiting { delay: RETRY_PERIOD },
                    },
                }
            }
        }
    }

    /// Re-reads the path while watching; starts over if what the path is changed.
    async fn rescan(&mut self, watch: Box<Watch>, mode: ScanMode) -> State {
        match self.relist(mode).await {
            None => State::Stopped,
            Some(kind) if watch.expects(kind) => State::Watching(watch),
            Some(_) => State::Start,
        }
    }

    /// Scans the path and sends the pods if they changed. `None` when the source must stop.
    async fn relist(&mut self, mode: ScanMode) -> Option<PathKind> {
        let scan = self.scanner.scan(mode).await;
        let pods = match scan.pods {
            Some(pods) => pods,
            // Keep the previous set, but make sure the source is marked as seen.
            None if self.last_sent.is_some() => return Some(scan.kind),
            None => Vec::new(),
        };
        if self.last_sent.as_ref() == Some(&pods) {
            return Some(scan.kind);
        }
        let snapshot = SourceSnapshot { source: FILE_SOURCE, pods: pods.clone() };
        tokio::select! {
            sent = self.tx.send(snapshot) => sent.ok()?,
            _ = self.shutdown.cancelled() => return None,
        }
        self.last_sent = Some(pods);
        Some(scan.kind)
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

enum Relevance {
    Ignore,
    Changed,
    /// The watched directory went away (deleted, moved, unmounted).
    Lost,
}

struct Watch {
    stream: EventStream<[u8; 4096]>,
    /// `None`: the path is a directory and is watched itself. `Some(name)`: the path is a file,
    /// watched through its parent directory (so that replacing it by a rename is seen).
    file_name: Option<OsString>,
    settle: Option<Instant>,
}

impl Watch {
    fn new(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        let (dir, file_name) = if meta.is_dir() {
            (path.to_owned(), None)
        } else {
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => PathBuf::from("."),
            };
            (parent, path.file_name().map(ToOwned::to_owned))
        };
        let inotify = Inotify::init()?;
        inotify.watches().add(
            &dir,
            WatchMask::CREATE
                | WatchMask::CLOSE_WRITE
                | WatchMask::MODIFY
                | WatchMask::ATTRIB
                | WatchMask::MOVED_FROM
                | WatchMask::MOVED_TO
                | WatchMask::DELETE
                | WatchMask::DELETE_SELF
                | WatchMask::MOVE_SELF
                | WatchMask::ONLYDIR,
        )?;
        Ok(Self { stream: inotify.into_event_stream([0u8; 4096])?, file_name, settle: None })
    }

    fn expects(&self, kind: PathKind) -> bool {
        match kind {
            PathKind::Dir => self.file_name.is_none(),
            PathKind::File => self.file_name.is_some(),
            PathKind::Missing | PathKind::Other => false,
        }
    }

    fn classify(&self, mask: EventMask, name: Option<&OsString>) -> Relevance {
        if mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED | EventMask::UNMOUNT) {
            return Relevance::Lost;
        }
        if mask.contains(EventMask::Q_OVERFLOW) {
            return Relevance::Changed;
        }
        let Some(name) = name else {
            return Relevance::Ignore;
        };
        let relevant = match &self.file_name {
            Some(file_name) => name == file_name,
            // Upstream ignores events for files starting with a dot.
            None => !name.to_string_lossy().starts_with('.'),
        };
        if relevant { Relevance::Changed } else { Relevance::Ignore }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the path

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathKind {
    Missing,
    Dir,
    File,
    /// Unreadable, or neither a directory nor a regular file.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScanMode {
    /// Periodic full re-list: the result reflects the files exactly.
    Relist,
    /// After inotify events: a file that fails to parse keeps its previous pod.
    Event,
}

struct Scan {
    kind: PathKind,
    /// `None`: keep the previously sent set.
    pods: Option<Vec<Pod>>,
}

/// Messages logged once while their condition lasts (re-logged if it goes away and returns).
#[derive(Default)]
struct Notes {
    active: BTreeSet<String>,
    next: BTreeSet<String>,
}

impl Notes {
    fn once(&mut self, msg: String) {
        if !self.active.contains(&msg) {
            tracing::warn!("{msg}");
        }
        self.next.insert(msg);
    }
    fn finish_scan(&mut self) {
        self.active = std::mem::take(&mut self.next);
    }
}

struct CachedFile {
    digest: u64,
    outcome: Result<Pod, String>,
    /// The last pod this file yielded, kept across event scans while the file is unparsable.
    last_good: Option<Pod>,
}

struct Scanner {
    path: PathBuf,
    node_name: String,
    files: BTreeMap<PathBuf, CachedFile>,
    notes: Notes,
}

impl Scanner {
    fn new(path: PathBuf, node_name: String) -> Self {
        Self { path, node_name, files: BTreeMap::new(), notes: Notes::default() }
    }

    async fn scan(&mut self, mode: ScanMode) -> Scan {
        let scan = self.scan_inner(mode).await;
        self.notes.finish_scan();
        scan
    }

    async fn scan_inner(&mut self, mode: ScanMode) -> Scan {
        let path = self.path.clone();
        let meta = match tokio::fs::metadata(&path).await {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.notes
                    .once(format!("Unable to read config path {}: path does not exist, ignoring", path.display()));
                self.files.clear();
                return Scan { kind: PathKind::Missing, pods: Some(Vec::new()) };
            }
            Err(e) => {
                self.notes.once(format!("Unable to read config path {}: {e}", path.display()));
                return Scan { kind: PathKind::Other, pods: None };
            }
        };
        if meta.is_file() {
            let pod = self.load(&path, ScanMode::Event).await;
            self.files.retain(|p, _| *p == path);
            return Scan {
                kind: PathKind::File,
                // A broken single manifest keeps the previous set (upstream `listConfig`).
                pods: pod.map(|p| vec![p]),
            };
        }
        if !meta.is_dir() {
            self.notes.once(format!("Unable to read config path {}: path is not a directory or file", path.display()));
            return Scan { kind: PathKind::Other, pods: None };
        }
        let entries = match list_dir(&path).await {
            Ok(entries) => entries,
            Err(e) => {
                self.notes.once(format!("Unable to read config path {}: {e}", path.display()));
                return Scan { kind: PathKind::Other, pods: None };
            }
        };
        let mut pods: Vec<Pod> = Vec::new();
        let mut by_key: BTreeMap<(String, String), (usize, PathBuf)> = BTreeMap::new();
        let mut present = BTreeSet::new();
        for file in entries {
            let meta = match tokio::fs::metadata(&file).await {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    self.notes.once(format!("Could not get metadata of {}: {e}", file.display()));
                    continue;
                }
            };
            if meta.is_dir() {
                self.notes.once(format!(
                    "Provided manifest path {} is a directory, not recursing into manifest path",
                    file.display()
                ));
                continue;
            }
            if !meta.is_file() {
                self.notes.once(format!("Manifest path {} is not a directory or file", file.display()));
                continue;
            }
            present.insert(file.clone());
            let Some(pod) = self.load(&file, mode).await else {
                continue;
            };
            let key =
                (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default());
            match by_key.get_mut(&key) {
                Some((index, previous)) => {
                    self.notes.once(format!(
                        "Static pod manifests {} and {} both define pod {}/{}; using {}",
                        previous.display(),
                        file.display(),
                        key.0,
                        key.1,
                        file.display()
                    ));
                    if let Some(slot) = pods.get_mut(*index) {
                        *slot = pod;
                    }
                    *previous = file;
                }
                None => {
                    by_key.insert(key, (pods.len(), file));
                    pods.push(pod);
                }
            }
        }
        self.files.retain(|p, _| present.contains(p));
        Scan { kind: PathKind::Dir, pods: Some(pods) }
    }

    /// Reads and parses one manifest (re-using the previous result when the content is
    /// unchanged). Logs a problem once per content.
    async fn load(&mut self, file: &Path, mode: ScanMode) -> Option<Pod> {
        let (digest, outcome) = match read_limited(file).await {
            Ok(data) => {
                let digest = digest(&data);
                match self.files.get(file) {
                    Some(cached) if cached.digest == digest => (digest, None),
                    _ => (digest, Some(parse_manifest(&data, file, &self.node_name).map_err(|e| e.to_string()))),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.files.remove(file);
                return None;
            }
            Err(e) => {
                let message = ManifestError {
                    path: file.to_owned(),
                    kind: if e.kind() == std::io::ErrorKind::FileTooLarge {
                        ManifestErrorKind::TooLarge
                    } else {
                        ManifestErrorKind::Read(e)
                    },
                }
                .to_string();
                (digest(message.as_bytes()), Some(Err(message)))
            }
        };
        if let Some(outcome) = outcome {
            let changed = self.files.get(file).is_none_or(|c| c.digest != digest);
            if let Err(message) = &outcome
                && changed
            {
                tracing::warn!(path = %file.display(), error = %message, "Could not process manifest file");
            }
            let last_good = match (&outcome, self.files.remove(file)) {
                (Ok(pod), _) => Some(pod.clone()),
                (Err(_), Some(previous)) => previous.last_good,
                (Err(_), None) => None,
            };
            self.files.insert(file.to_owned(), CachedFile { digest, outcome, last_good });
        }
        let cached = self.files.get_mut(file)?;
        match (&cached.outcome, mode) {
            (Ok(pod), _) => Some(pod.clone()),
            (Err(_), ScanMode::Event) => cached.last_good.clone(),
            (Err(_), ScanMode::Relist) => {
                cached.last_good = None;
                None
            }
        }
    }
}

fn digest(data: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut hasher);
    hasher.finish()
}

/// Non-hidden entries of a directory, in name order (upstream globs `[^.]*` and sorts).
async fn list_dir(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries = tokio::fs::read_dir(dir).await?;
    let mut out = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with('.') {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Reads a file, failing with `FileTooLarge` beyond [`MAX_MANIFEST_SIZE`].
async fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = tokio::fs::File::open(path).await?;
    let mut data = Vec::new();
    file.take(MAX_MANIFEST_SIZE + 1).read_to_end(&mut data).await?;
    if data.len() as u64 > MAX_MANIFEST_SIZE {
        return Err(std::io::Error::new(std::io::ErrorKind::FileTooLarge, "manifest is larger than the read limit"));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::source::CONFIG_HASH_ANNOTATION;

    const NODE: &str = "node-1";

    fn manifest(name: &str, image: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: kube-system\nspec:\n  containers:\n  - name: main\n    image: {image}\n"
        )
    }

    fn names(pods: &[Pod]) -> Vec<String> {
        pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
    }

    async fn next(rx: &mut mpsc::Receiver<SourceSnapshot>) -> Vec<Pod> {
        let snapshot = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("timed out waiting for a snapshot")
            .expect("source stopped");
        assert_eq!(snapshot.source, FILE_SOURCE);
        snapshot.pods
    }

    fn start(path: &Path, period: Duration) -> (mpsc::Receiver<SourceSnapshot>, CancellationToken) {
        let (tx, rx) = mpsc::channel(16);
        let shutdown = CancellationToken::new();
        let source = FileSource::new(path, NODE, period);
        tokio::spawn(source.run(tx, shutdown.clone()));
        (rx, shutdown)
    }

    #[test]
    fn parses_yaml_and_json_manifests() {
        let path = Path::new("/etc/kubernetes/manifests/web.yaml");
        let pod = parse_manifest(manifest("web", "nginx:1.27").as_bytes(), path, NODE).unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("web-node-1"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("kube-system"));
        let uid = pod.metadata.uid.clone().unwrap();
        assert_eq!(pod.metadata.annotations.as_ref().unwrap()[CONFIG_HASH_ANNOTATION], uid);

        let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},
            "spec":{"containers":[{"name":"main","image":"nginx"}]}}"#;
        let pod = parse_manifest(json.as_bytes(), Path::new("/m/web.json"), NODE).unwrap();
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
    }

    #[test]
    fn rejects_bad_manifests_with_file_field_and_reason() {
        let path = Path::new("/m/bad.yaml");
        let err = |s: &str| parse_manifest(s.as_bytes(), path, NODE).unwrap_err().to_string();

        let e = err("kind: Pod\nmetadata: {name: x}\n");
        assert_eq!(
            e,
            "static pod manifest /m/bad.yaml: couldn't parse as pod: expected apiVersion \"v1\" and kind \"Pod\", found apiVersion missing and kind \"Pod\""
        );
        let e = err("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n");
        assert!(e.contains("found apiVersion \"apps/v1\" and kind \"Deployment\""), "{e}");
        let e = err("apiVersion: v1\nkind: Pod\nmetadata: {name: x\n");
        assert!(e.starts_with("static pod manifest /m/bad.yaml: couldn't parse as pod:") && e.contains("line"), "{e}");
        let e = err(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n  - name: c\n    image: i\n    ports: [{containerPort: http}]\n",
        );
        assert!(e.contains("spec.containers[0].ports[0].containerPort: invalid type"), "{e}");
        let e = err("apiVersion: v1\nkind: Pod\nmetadata: {namespace: x}\nspec: {containers: [{name: c, image: i}]}\n");
        assert!(e.ends_with("invalid pod: name is needed for the pod"), "{e}");
        let e = err("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: c}]}\n");
        assert!(e.ends_with("invalid pod \"default/x-node-1\": spec.containers[0].image: Required value"), "{e}");
        let big = vec![b' '; MAX_MANIFEST_SIZE as usize + 1];
        assert!(parse_manifest(&big, path, NODE).unwrap_err().to_string().contains("larger than"));
    }

    #[tokio::test]
    async fn scanner_keeps_the_last_good_pod_only_on_event_scans() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.yaml");
        std::fs::write(&file, manifest("web", "nginx")).unwrap();
        let mut scanner = Scanner::new(dir.path().to_owned(), NODE.to_owned());
        let scan = scanner.scan(ScanMode::Relist).await;
        assert_eq!(scan.kind, PathKind::Dir);
        let good = scan.pods.unwrap();
        assert_eq!(names(&good), vec!["web-node-1"]);

        std::fs::write(&file, "apiVersion: v1\nkind: Pod\nmetadata: {name: web").unwrap();
        assert_eq!(scanner.scan(ScanMode::Event).await.pods, Some(good.clone()));
        assert_eq!(scanner.scan(ScanMode::Event).await.pods, Some(good));
        assert_eq!(scanner.scan(ScanMode::Relist).await.pods, Some(vec![]));
        assert_eq!(scanner.scan(ScanMode::Event).await.pods, Some(vec![]), "dropped for good");
    }

    #[tokio::test]
    async fn duplicate_pod_names_keep_the_later_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), manifest("web", "nginx:1")).unwrap();
        std::fs::write(dir.path().join("b.yaml"), manifest("web", "nginx:2")).unwrap();
        let mut scanner = Scanner::new(dir.path().to_owned(), NODE.to_owned());
        let pods = scanner.scan(ScanMode::Relist).await.pods.unwrap();
        assert_eq!(pods.len(), 1);
        let image = pods[0].spec.as_ref().unwrap().containers[0].image.as_deref();
        assert_eq!(image, Some("nginx:2"));
    }

    #[tokio::test]
    async fn directory_changes_yield_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.yaml"), manifest("a", "nginx:1")).unwrap();
        std::fs::write(d.join("broken.yaml"), "apiVersion: v1\nkind: Pod\nspec: [").unwrap();
        std::fs::write(d.join(".hidden.yaml"), manifest("hidden", "nginx")).unwrap();
        std::fs::write(d.join("notes.txt"), "not a pod").unwrap();
        std::fs::create_dir(d.join("subdir")).unwrap();
        std::fs::write(d.join("subdir/c.yaml"), manifest("nested", "nginx")).unwrap();

        // A long period: everything below must come from inotify.
        let (mut rx, shutdown) = start(d, Duration::from_secs(3600));
        let first = next(&mut rx).await;
        assert_eq!(names(&first), vec!["a-node-1"], "only the valid, visible, top-level pod");

        std::fs::write(
            d.join("b.json"),
            serde_json::to_string(&serde_yaml::from_str::<Value>(&manifest("b", "redis")).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(names(&next(&mut rx).await), vec!["a-node-1", "b-node-1"]);

        std::fs::write(d.join("a.yaml"), manifest("a", "nginx:2")).unwrap();
        let edited = next(&mut rx).await;
        assert_eq!(names(&edited), vec!["a-node-1", "b-node-1"]);
        assert_ne!(edited[0].metadata.uid, first[0].metadata.uid, "new content, new UID");

        std::fs::remove_file(d.join("b.json")).unwrap();
        assert_eq!(names(&next(&mut rx).await), vec!["a-node-1"]);

        // Dotfiles are ignored by the watch as well.
        std::fs::write(d.join(".swap"), manifest("swap", "nginx")).unwrap();
        std::fs::rename(d.join("a.yaml"), d.join("z.yaml")).unwrap();
        let renamed = next(&mut rx).await;
        assert_eq!(names(&renamed), vec!["a-node-1"]);
        assert_ne!(renamed[0].metadata.uid, edited[0].metadata.uid, "the path is part of the UID");

        shutdown.cancel();
        assert!(tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn single_file_path_is_watched() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.yaml");
        std::fs::write(&file, manifest("web", "nginx:1")).unwrap();
        let (mut rx, _shutdown) = start(&file, Duration::from_secs(3600));
        assert_eq!(names(&next(&mut rx).await), vec!["web-node-1"]);
        // Replace it atomically, as editors and config management do.
        let tmp = dir.path().join("web.yaml.tmp");
        std::fs::write(&tmp, manifest("web2", "nginx:2")).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        assert_eq!(names(&next(&mut rx).await), vec!["web2-node-1"]);
        std::fs::remove_file(&file).unwrap();
        assert_eq!(next(&mut rx).await, vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn missing_directory_is_picked_up_when_created() {
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("manifests");
        let (mut rx, _shutdown) = start(&manifests, Duration::from_secs(20));
        assert_eq!(next(&mut rx).await, vec![], "an empty set marks the source as seen");

        std::fs::create_dir(&manifests).unwrap();
        std::fs::write(manifests.join("web.yaml"), manifest("web", "nginx")).unwrap();
        assert_eq!(names(&next(&mut rx).await), vec!["web-node-1"]);

        std::fs::remove_dir_all(&manifests).unwrap();
        assert_eq!(next(&mut rx).await, vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn periodic_relist_without_changes_sends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.yaml"), manifest("web", "nginx")).unwrap();
        let (mut rx, _shutdown) = start(dir.path(), Duration::from_secs(20));
        assert_eq!(names(&next(&mut rx).await), vec!["web-node-1"]);
        tokio::time::sleep(Duration::from_secs(200)).await;
        assert!(rx.try_recv().is_err(), "identical snapshots are not re-sent");
    }

    #[test]
    fn from_config_uses_static_pod_path() {
        let mut config = KubeletConfiguration::default();
        assert!(FileSource::from_config(&config, NODE).is_none());
        config.static_pod_path = "/etc/kubernetes/manifests/".into();
        let source = FileSource::from_config(&config, NODE).unwrap();
        assert_eq!(source.path(), Path::new("/etc/kubernetes/manifests"));
        assert_eq!(source.period, Duration::from_secs(20));
    }
}
