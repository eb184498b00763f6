//! Container logs (upstream `kuberuntime/logs` and the kubelet's `GetContainerLogs`): which
//! container instance a log request reads, and the reader of the CRI log format
//! (`2016-10-06T00:17:09.669794202Z stdout F text`, `P` for a partial line; Docker's JSON lines
//! are read too) with `tailLines`, `limitBytes`, `sinceSeconds`/`sinceTime`, `timestamps` and
//! `follow`.
//!
//! Beyond upstream, which reads only the current file, a read covers the uncompressed rotated
//! files beside it (`<n>.log.<YYYYMMDD-HHMMSS>`, upstream's rotation names), oldest first, so
//! `tailLines` counts across a rotation. Following waits on inotify for the directory (a write,
//! or the file replaced by a rotation, which is reopened) and re-checks every second whether the
//! container still runs, as upstream; once it does not, the rest of the file is sent and the
//! stream ends.

pub mod rotation;

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, FixedOffset, Utc};
use futures::StreamExt;
use inotify::{Inotify, WatchMask};
use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;

/// Upstream's `logForceCheckPeriod`: a follow re-reads (and re-checks the container) at least
/// this often even without an inotify event.
const FORCE_CHECK: Duration = Duration::from_secs(1);

/// The v1 `PodLogOptions` a read honours (already validated).
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// `tailLines`: only this many lines from the end.
    pub tail: Option<u64>,
    /// `limitBytes`: the output stops after this many bytes, mid-line if need be.
    pub limit_bytes: Option<u64>,
    /// Lines older than this are skipped (`sinceTime`, or now − `sinceSeconds`).
    pub since: Option<DateTime<Utc>>,
    pub follow: bool,
    /// Each line starts with its RFC 3339 timestamp (nine fraction digits) and a space.
    pub timestamps: bool,
}

/// The id (`<runtime>://<id>`, as in the status) of the container instance whose log a request reads (upstream
/// `validateContainerLogStatus`); the error is upstream's text.
pub fn container_for_logs(status: &PodStatus, pod: &str, container: &str, previous: bool) -> Result<String, String> {
    let find = |list: &Option<Vec<ContainerStatus>>| list.iter().flatten().find(|c| c.name == container).cloned();
    let Some(cs) = find(&status.container_statuses)
        .or_else(|| find(&status.init_container_statuses))
        .or_else(|| find(&status.ephemeral_container_statuses))
    else {
        return Err(format!("container {container:?} in pod {pod:?} is not available"));
    };
    let last = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let last_id = last.and_then(|t| t.container_id.clone()).filter(|id| !id.is_empty());
    let state = cs.state.clone().unwrap_or_default();
    let id = if previous {
        last_id.ok_or_else(|| format!("previous terminated container {container:?} in pod {pod:?} not found"))?
    } else if state.running.is_some() {
        cs.container_id.clone().unwrap_or_default()
    } else if let Some(t) = &state.terminated {
        match t.container_id.clone().filter(|id| !id.is_empty()) {
            Some(id) => id,
            None => last_id.ok_or_else(|| format!("container {container:?} in pod {pod:?} is terminated"))?,
        }
    } else if last.is_some() {
        last_id.ok_or_else(|| format!("container {container:?} in pod {pod:?} is terminated"))?
    } else if let Some(w) = &state.waiting {
        let why = match w.reason.as_deref().unwrap_or_default() {
            "ErrImagePull" => "image can't be pulled".to_string(),
            "ImagePullBackOff" => "trying and failing to pull image".to_string(),
            other => other.to_string(),
        };
        return Err(format!("container {container:?} in pod {pod:?} is waiting to start: {why}"));
    } else {
        return Err(format!("container {container:?} in pod {pod:?} is waiting to start - no logs yet"));
    };
    Ok(id)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// One parsed log line.
#[derive(Debug, PartialEq)]
struct Message {
    time: DateTime<FixedOffset>,
    stream: Stream,
    log: Vec<u8>,
}

fn parse_stream(s: &[u8]) -> Result<Stream, String> {
    match s {
        b"stdout" => Ok(Stream::Stdout),
        b"stderr" => Ok(Stream::Stderr),
        other => Err(format!("unexpected stream type {:?}", String::from_utf8_lossy(other))),
    }
}

/// A line of the CRI log format; a partial (`P`) line loses its newline.
fn parse_cri(line: &[u8]) -> Result<Message, String> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = parts.next().unwrap_or_default();
    let time = std::str::from_utf8(time)
        .ok()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .ok_or("unexpected timestamp format")?;
    let stream = parse_stream(parts.next().ok_or("stream type is not found")?)?;
    let tags = parts.next().ok_or("log tag is not found")?;
    let mut log = parts.next().ok_or("log tag is not found")?.to_vec();
    let partial = tags.split(|b| *b == b':').next() == Some(b"P");
    if partial && log.last() == Some(&b'\n') {
        log.pop();
    }
    Ok(Message { time, stream, log })
}

/// A line of Docker's json-file format.
fn parse_docker_json(line: &[u8]) -> Result<Message, String> {
    #[derive(serde::Deserialize)]
    struct Line {
        #[serde(default)]
        log: String,
        #[serde(default)]
        stream: String,
        time: String,
    }
    let l: Line = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let time = DateTime::parse_from_rfc3339(&l.time).map_err(|e| e.to_string())?;
    Ok(Message { time, stream: parse_stream(l.stream.as_bytes())?, log: l.log.into_bytes() })
}

type Parse = fn(&[u8]) -> Result<Message, String>;

/// The format of a file, told from its first line (upstream `getParseFunc`).
fn parser_for(line: &[u8]) -> Option<Parse> {
    [parse_cri as Parse, parse_docker_json].into_iter().find(|p| p(line).is_ok())
}

/// Go's `RFC3339NanoFixed`: nine fraction digits, `Z` for UTC.
fn format_time(t: &DateTime<FixedOffset>) -> String {
    if t.offset().local_minus_utc() == 0 {
        t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.9f%:z").to_string()
    }
}

/// Why a read ended early.
enum Stop {
    /// `limitBytes` reached: the read is complete.
    Limit,
    /// The receiver is gone (the client disconnected).
    Closed,
}

/// Applies `since`, the timestamp prefix and the byte budget, and sends.
struct Writer {
    opts: LogOptions,
    remain: u64,
    out: mpsc::Sender<Bytes>,
    /// The previous message ended a line: the next one gets the timestamp prefix.
    line_start: bool,
}

impl Writer {
    async fn write(&mut self, msg: &Message) -> Result<(), Stop> {
        let add_prefix = std::mem::replace(&mut self.line_start, msg.log.last().is_none_or(|b| *b == b'\n'));
        if self.opts.since.is_some_and(|s| msg.time < s) {
            return Ok(());
        }
        let mut line = Vec::with_capacity(msg.log.len() + 36);
        if self.opts.timestamps && add_prefix {
            line.extend_from_slice(format_time(&msg.time).as_bytes());
            line.push(b' ');
        }
        line.extend_from_slice(&msg.log);
        line.truncate(usize::try_from(self.remain).unwrap_or(usize::MAX));
        self.remain -= line.len() as u64;
        if !line.is_empty() && self.out.send(Bytes::from(line)).await.is_err() {
            return Err(Stop::Closed);
        }
        if self.remain == 0 { Err(Stop::Limit) } else { Ok(()) }
    }
}

/// Whether a container still runs (asked while following).
pub type IsRunning = Arc<dyn Fn() -> futures::future::BoxFuture<'static, bool> + Send + Sync>;

/// The rotated files of `path` (`<path>.<YYYYMMDD-HHMMSS>`), oldest first, then `path`.
fn log_files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(base)) = (path.parent(), path.file_name().and_then(|b| b.to_str())) else {
        return vec![path.to_path_buf()];
    };
    let prefix = format!("{base}.");
    let mut rotated: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.strip_prefix(&prefix).is_some_and(is_rotation_stamp))
        .collect();
    rotated.sort();
    rotated.into_iter().map(|n| dir.join(n)).chain(std::iter::once(path.to_path_buf())).collect()
}

/// `20060102-150405`
fn is_rotation_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 15 && b[8] == b'-' && b.iter().enumerate().all(|(i, c)| i == 8 || c.is_ascii_digit())
}

/// Where the last `n` lines of `f` start (upstream `tail.FindTailLineStartIndex`), and how
/// many line ends lie after that point (fewer than `n + 1` means the whole file is taken).
async fn tail_start(f: &mut tokio::fs::File, n: u64) -> std::io::Result<(u64, u64)> {
    const BLOCK: u64 = 1024;
    let size = f.seek(SeekFrom::End(0)).await?;
    let (mut count, mut right, mut left) = (0u64, size, size);
    let mut buf = Vec::new();
    while right > 0 && count <= n {
        left = right.saturating_sub(BLOCK);
        buf.resize((right - left) as usize, 0);
        f.seek(SeekFrom::Start(left)).await?;
        f.read_exact(&mut buf).await?;
        count += buf.iter().filter(|b| **b == b'\n').count() as u64;
        right = left;
    }
    // Drop line ends from the front of the last block until exactly n remain after `left`.
    let mut at = 0usize;
    while count > n {
        let Some(i) = buf[at..].iter().position(|b| *b == b'\n') else { break };
        at += i + 1;
        count -= 1;
    }
    Ok((left + at as u64, count))
}

/// The file to start at and the offset in it for `tail` lines across `files`.
async fn start_point(files: &[PathBuf], tail: Option<u64>) -> std::io::Result<(usize, u64)> {
    let Some(mut need) = tail else { return Ok((0, 0)) };
    for (i, path) in files.iter().enumerate().rev() {
        let mut f = match tokio::fs::File::open(path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && i + 1 < files.len() => continue,
            Err(e) => return Err(e),
        };
        let (offset, found) = tail_start(&mut f, need).await?;
        if offset > 0 || i == 0 || found >= need {
            return Ok((i, offset));
        }
        need -= found;
    }
    Ok((files.len().saturating_sub(1), 0))
}

/// Reads the log at `path` (with its rotated predecessors) into `out` per `opts`. A follow
/// ends when the container stops (`is_running`), the receiver is dropped, or on an error.
pub async fn read_logs(
    path: &Path,
    opts: LogOptions,
    is_running: IsRunning,
    out: mpsc::Sender<Bytes>,
) -> Result<(), String> {
    // The path is the runtime's, under the pod log directory kubelet owns; resolved once so
    // inotify watches the real directory, as upstream.
    let path = tokio::fs::canonicalize(path)
        .await
        .map_err(|e| format!("failed to try resolving symlinks in path {:?}: {e}", path.display()))?;
    let files = log_files(&path);
    let (first, offset) = start_point(&files, opts.tail)
        .await
        .map_err(|e| format!("failed to tail {:?} lines of log file {:?}: {e}", opts.tail, path.display()))?;
    // Without follow, a tail stops after its lines even if more arrive meanwhile.
    let mut limited = opts.tail.filter(|_| !opts.follow);
    let mut writer = Writer { remain: opts.limit_bytes.unwrap_or(u64::MAX), out, line_start: true, opts: opts.clone() };
    let mut parse: Option<Parse> = None;
    for (i, file) in files.iter().enumerate().skip(first) {
        let current = i + 1 == files.len();
        let mut f = match tokio::fs::File::open(file).await {
            Ok(f) => f,
            Err(e) if !current && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("failed to open log file {:?}: {e}", file.display())),
        };
        if i == first {
            f.seek(SeekFrom::Start(offset)).await.map_err(|e| format!("seeking in {:?}: {e}", file.display()))?;
        }
        let mut reader = BufReader::new(f);
        let mut follow = if current && opts.follow { Some(Follower::new(&path, is_running.clone())?) } else { None };
        // A rotation was seen: the old file is read to its end before the new one is opened.
        let mut reopen = false;
        let mut line = Vec::new();
        loop {
            if limited == Some(0) {
                return Ok(());
            }
            let n = reader
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| format!("failed to read log file {:?}: {e}", file.display()))?;
            let complete = line.last() == Some(&b'\n');
            if n == 0 || !complete {
                if let Some(fw) = follow.as_mut() {
                    if reopen {
                        reopen = false;
                        match tokio::fs::File::open(&path).await {
                            Ok(nf) if same_file(reader.get_ref(), &nf).await => {}
                            Ok(nf) => {
                                reader = BufReader::new(nf);
                                if !line.is_empty() {
                                    tracing::debug!(path = %path.display(), "incomplete line before a rotation");
                                    line.clear();
                                }
                                continue;
                            }
                            // Not there yet: the next event (its creation) brings us back.
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Err(format!("failed to open log file {:?}: {e}", path.display())),
                        }
                    }
                    // Keep a partial line buffered and wait for the rest.
                    match fw.wait(&writer.out).await {
                        Wait::More => {}
                        Wait::Recreated => reopen = true,
                        Wait::Stopped => follow = None,
                        Wait::Closed => return Ok(()),
                    }
                    continue;
                }
                if line.is_empty() {
                    break;
                }
                tracing::debug!(path = %file.display(), "incomplete line at the end of the log file");
            }
            let Some(p) = parse.or_else(|| parser_for(&line)) else {
                return Err(format!(
                    "failed to get parse function: unsupported log format: {:?}",
                    String::from_utf8_lossy(&line)
                ));
            };
            parse = Some(p);
            match p(&line) {
                Ok(msg) => {
                    if let Err(Stop::Limit | Stop::Closed) = writer.write(&msg).await {
                        return Ok(());
                    }
                    if let Some(n) = limited.as_mut() {
                        *n -= 1;
                    }
                }
                Err(e) => tracing::warn!(path = %file.display(), "failed to parse a log line: {e}"),
            }
            line.clear();
            if !complete {
                break;
            }
        }
    }
    Ok(())
}

/// Whether two open files are the same inode (a rotation event may come after the new file
/// was already opened).
async fn same_file(a: &tokio::fs::File, b: &tokio::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (a.metadata().await, b.metadata().await) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

enum Wait {
    /// Read again: something was written, or the force-check period passed.
    More,
    /// The file was replaced (rotation): reopen it.
    Recreated,
    /// The container is not running: read what is left, then end.
    Stopped,
    /// The receiver is gone (the client disconnected).
    Closed,
}

/// Waits for the log to change while its container runs.
struct Follower {
    events: inotify::EventStream<[u8; 1024]>,
    name: std::ffi::OsString,
    is_running: IsRunning,
}

impl Follower {
    fn new(path: &Path, is_running: IsRunning) -> Result<Self, String> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        let watch = || -> std::io::Result<_> {
            let ino = Inotify::init()?;
            ino.watches().add(
                dir,
                WatchMask::MODIFY
                    | WatchMask::CREATE
                    | WatchMask::MOVED_FROM
                    | WatchMask::MOVED_TO
                    | WatchMask::DELETE
                    | WatchMask::ATTRIB,
            )?;
            ino.into_event_stream([0u8; 1024])
        };
        let events = watch().map_err(|e| format!("failed to watch directory {:?}: {e}", dir.display()))?;
        Ok(Self { events, name: path.file_name().unwrap_or_default().to_owned(), is_running })
    }

    async fn wait(&mut self, out: &mpsc::Sender<Bytes>) -> Wait {
        if !(self.is_running)().await {
            return Wait::Stopped;
        }
        let deadline = tokio::time::sleep(FORCE_CHECK);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = out.closed() => return Wait::Closed,
                _ = &mut deadline => return Wait::More,
                ev = self.events.next() => match ev {
                    Some(Ok(e)) if e.name.as_deref() == Some(self.name.as_os_str()) => {
                        if e.mask.contains(inotify::EventMask::MODIFY) {
                            return Wait::More;
                        }
                        return Wait::Recreated;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!("inotify on the log directory: {e}");
                        return Wait::More;
                    }
                    None => {
                        // The watch is gone: fall back to the force-check period alone.
                        (&mut deadline).await;
                        return Wait::More;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests;
