//! Watch streams with the watch cache's semantics: replay after a resourceVersion from the
//! bounded history (410 Expired as an ERROR event when it is too old), synthetic ADDED events
//! for a watch from "" or "0", selector transitions turned into ADDED/DELETED per watcher,
//! periodic BOOKMARKs, `sendInitialEvents`, and `timeoutSeconds`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::{Instant, Interval};

use super::errors::{ApiError, ApiResult};
use super::object::set_meta;
use super::resources::Resource;
use super::selectors::Filter;
use super::state::{Shared, lock};
use super::store::{Event, EventType};
use super::strategy::present;

/// Upstream's default watch timeout is 30–60 minutes; tests never reach it.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The parameters of a watch request.
pub(crate) struct WatchParams {
    pub resource_version: Option<String>,
    pub namespace: Option<String>,
    pub filter: Filter,
    pub timeout: Option<Duration>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
}

enum Wake {
    Changed,
    Bookmark,
    End,
}

/// The state of one watch stream.
struct Watcher {
    shared: Arc<Shared>,
    res: &'static Resource,
    namespace: Option<String>,
    filter: Filter,
    /// Every event up to here has been looked at.
    seen_rv: u64,
    pending: VecDeque<Bytes>,
    changes: watch::Receiver<u64>,
    bookmarks: Option<Interval>,
    deadline: Instant,
    done: bool,
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// Opens a watch. Fails before streaming only for a malformed resourceVersion; a too-old one
/// is reported inside the stream, as upstream does.
pub(crate) fn open(
    shared: Arc<Shared>,
    res: &'static Resource,
    p: WatchParams,
) -> ApiResult<impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static> {
    let requested = match p.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(rv) => {
            Some(rv.parse::<u64>().map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?)
        }
    };
    let store = lock(&shared.store);
    let changes = store.subscribe();
    let mut w = Watcher {
        shared: shared.clone(),
        res,
        namespace: p.namespace.filter(|_| res.namespaced),
        filter: p.filter,
        seen_rv: requested.unwrap_or(store.rv()),
        pending: VecDeque::new(),
        changes,
        bookmarks: p.bookmarks.then(|| {
            let period = shared.options.bookmark_interval;
            tokio::time::interval_at(Instant::now() + period, period)
        }),
        deadline: Instant::now() + p.timeout.unwrap_or(DEFAULT_TIMEOUT),
        done: false,
    };
    if requested.is_none() || p.send_initial_events {
        // The current state as ADDED events, then changes after it.
        w.seen_rv = store.rv();
        for obj in store.list(res.storage, w.namespace.as_deref()) {
            if w.filter.matches(obj) {
                w.pending.push_back(line("ADDED", present(res, obj)));
            }
        }
        if p.send_initial_events && p.bookmarks {
            let mut b = w.bookmark();
            set_meta(&mut b, "annotations", Some(json!({"k8s.io/initial-events-end": "true"})));
            w.pending.push_back(line("BOOKMARK", b));
        }
    }
    drop(store);
    Ok(futures::stream::unfold(w, |mut w| async move { w.next().await.map(|b| (Ok(b), w)) }))
}

impl Watcher {
    fn bookmark(&self) -> Value {
        json!({
            "kind": self.res.kind,
            "apiVersion": self.res.api_version(),
            "metadata": {"resourceVersion": self.seen_rv.to_string(), "creationTimestamp": null},
        })
    }

    /// The watch event one stored change means for this watcher, if any.
    fn render(&self, e: &Event) -> Option<Bytes> {
        if e.key.storage != self.res.storage || self.namespace.as_deref().is_some_and(|ns| ns != e.key.namespace) {
            return None;
        }
        let now = self.filter.matches(&e.object);
        let before = e.prev.as_ref().is_some_and(|p| self.filter.matches(p));
        let (kind, obj) = match (e.kind, before, now) {
            (EventType::Added, _, true) => ("ADDED", e.object.clone()),
            (EventType::Deleted, _, true) => ("DELETED", e.object.clone()),
            (EventType::Modified, true, true) => ("MODIFIED", e.object.clone()),
            (EventType::Modified, false, true) => ("ADDED", e.object.clone()),
            (EventType::Modified, true, false) => {
                // Left the selection: DELETED with the old content at the event's version.
                let mut old = e.prev.clone().unwrap_or_default();
                set_meta(&mut old, "resourceVersion", Some(json!(e.rv.to_string())));
                ("DELETED", old)
            }
            _ => return None,
        };
        Some(line(kind, present(self.res, &obj)))
    }

    /// Queues everything after `seen_rv`; false when the history no longer reaches back.
    fn catch_up(&mut self) -> bool {
        self.changes.borrow_and_update();
        let events = lock(&self.shared.store).events_since(self.seen_rv);
        match events {
            Ok(events) => {
                for e in events {
                    self.seen_rv = e.rv;
                    if let Some(b) = self.render(&e) {
                        self.pending.push_back(b);
                    }
                }
                true
            }
            Err(too_old) => {
                let msg = format!("too old resource version: {} ({})", too_old.requested, too_old.floor);
                self.pending.push_back(line("ERROR", ApiError::expired(msg).to_status()));
                false
            }
        }
    }

    /// Sleeps until the store changes, a bookmark is due or the watch times out.
    async fn wait(&mut self) -> Wake {
        let Watcher { changes, bookmarks, deadline, .. } = self;
        let tick = async {
            match bookmarks.as_mut() {
                Some(i) => {
                    i.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            changed = changes.changed() => if changed.is_ok() { Wake::Changed } else { Wake::End },
            () = tick => Wake::Bookmark,
            () = tokio::time::sleep_until(*deadline) => Wake::End,
        }
    }

    /// The next chunk of the stream; None ends it.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some(b);
            }
            if self.done {
                return None;
            }
            if !self.catch_up() {
                self.done = true;
                continue;
            }
            if !self.pending.is_empty() {
                continue;
            }
            match self.wait().await {
                Wake::Changed => {}
                Wake::Bookmark => {
                    let b = self.bookmark();
                    self.pending.push_back(line("BOOKMARK", b));
                }
                Wake::End => self.done = true,
            }
        }
    }
}
