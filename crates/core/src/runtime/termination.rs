//! Termination messages (upstream `getTerminationMessage` and `readLastStringFromContainerLogs`):
//! what an exited container wrote to its `terminationMessagePath` (at most 4 KiB, the end of the
//! file), or with `FallbackToLogsOnError` and a failed exit and nothing written, the last 80 lines
//! of its log (at most the last 2 KiB of them). The text is appended to the runtime's message.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use cri::api;

use crate::runtime::labels::{TERMINATION_MESSAGE_PATH, TERMINATION_MESSAGE_POLICY};

/// Upstream's `MaxContainerTerminationMessageLength`.
const MAX_FILE_MESSAGE: u64 = 4 * 1024;
/// Upstream's `MaxContainerTerminationMessageLogLines`.
const MAX_LOG_LINES: usize = 80;
/// Upstream's `MaxContainerTerminationMessageLogLength`.
const MAX_LOG_MESSAGE: usize = 2 * 1024;
/// How much of the end of a log file is read to find its last lines.
const LOG_WINDOW: u64 = 64 * 1024;

/// The message of a container as the kubelet reports it: CRI's message, then the termination
/// message for an exited container (joined by ": ").
pub fn container_message(status: &api::ContainerStatus, annotations: &HashMap<String, String>) -> String {
    let mut message = status.message.clone();
    if status.state != api::ContainerState::ContainerExited as i32 {
        return message;
    }
    let policy = annotations.get(TERMINATION_MESSAGE_POLICY).map(String::as_str).unwrap_or("File");
    // A container that could not even start has no logs.
    let fallback = policy == "FallbackToLogsOnError" && status.exit_code != 0 && status.reason != "ContainerCannotRun";
    let path = annotations.get(TERMINATION_MESSAGE_PATH).map(String::as_str).unwrap_or("");
    let (mut text, check_logs) = from_file(status, path, fallback);
    if check_logs {
        text = last_log_text(Path::new(&status.log_path));
    }
    if !text.is_empty() {
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

/// The termination file's text (through the container's mount of it), and whether the logs
/// should be read instead.
fn from_file(status: &api::ContainerStatus, path: &str, fallback: bool) -> (String, bool) {
    if path.is_empty() {
        return (String::new(), fallback);
    }
    let Some(mount) = status.mounts.iter().find(|m| m.container_path == path) else {
        return (String::new(), fallback);
    };
    match read_tail(Path::new(&mount.host_path), MAX_FILE_MESSAGE) {
        Ok(data) => {
            let empty = data.is_empty();
            (String::from_utf8_lossy(&data).into_owned(), fallback && empty)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), fallback),
        Err(e) => (format!("Error on reading termination log {}: {e}", mount.host_path), false),
    }
}

/// The last `max` bytes of a file.
fn read_tail(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut data = Vec::new();
    f.take(max).read_to_end(&mut data)?;
    Ok(data)
}

/// The content of the last 80 entries of a CRI log file (`<time> <stream> <P|F> <text>`), both
/// streams, partial entries joined; at most the last 2 KiB.
fn last_log_text(path: &Path) -> String {
    let raw = match read_tail(path, LOG_WINDOW) {
        Ok(raw) => raw,
        Err(e) => return format!("Error on reading termination message from logs: {e}"),
    };
    let text = String::from_utf8_lossy(&raw);
    let mut lines: Vec<String> = Vec::new();
    let mut partial = String::new();
    // The first line may be cut by the window; it is dropped unless it is all there is.
    let skip_first = usize::from(u64::try_from(raw.len()).unwrap_or(0) == LOG_WINDOW);
    for entry in text.lines().skip(skip_first) {
        let mut parts = entry.splitn(4, ' ');
        let (Some(_time), Some(_stream), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        partial.push_str(parts.next().unwrap_or(""));
        if tag == "P" {
            continue;
        }
        partial.push('\n');
        lines.push(std::mem::take(&mut partial));
    }
    let start = lines.len().saturating_sub(MAX_LOG_LINES);
    let joined: String = lines[start..].concat();
    let cut = joined.len().saturating_sub(MAX_LOG_MESSAGE);
    // Keep the end, on a character boundary.
    let cut = (cut..=joined.len()).find(|i| joined.is_char_boundary(*i)).unwrap_or(joined.len());
    joined[cut..].to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn exited(exit_code: i32, dir: &Path) -> api::ContainerStatus {
        api::ContainerStatus {
            state: api::ContainerState::ContainerExited as i32,
            exit_code,
            reason: if exit_code == 0 { "Completed".into() } else { "Error".into() },
            log_path: dir.join("0.log").display().to_string(),
            mounts: vec![api::Mount {
                container_path: "/dev/termination-log".into(),
                host_path: dir.join("term").display().to_string(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn annotations(policy: &str) -> HashMap<String, String> {
        HashMap::from([
            (TERMINATION_MESSAGE_PATH.to_string(), "/dev/termination-log".to_string()),
            (TERMINATION_MESSAGE_POLICY.to_string(), policy.to_string()),
        ])
    }

    fn log(dir: &Path, entries: &[(&str, &str, &str)]) {
        let body: String = entries
            .iter()
            .map(|(stream, tag, text)| format!("2026-11-22T00:00:00.000000000Z {stream} {tag} {text}\n"))
            .collect();
        std::fs::write(dir.join("0.log"), body).unwrap();
    }

    #[test]
    fn the_file_wins_and_its_end_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        log(dir.path(), &[("stdout", "F", "from the log")]);
        std::fs::write(dir.path().join("term"), "disk full").unwrap();
        assert_eq!(container_message(&exited(1, dir.path()), &annotations("FallbackToLogsOnError")), "disk full");
        let long = format!("{}END", "x".repeat(5000));
        std::fs::write(dir.path().join("term"), &long).unwrap();
        let m = container_message(&exited(0, dir.path()), &annotations("File"));
        assert_eq!(m.len(), 4096);
        assert!(m.ends_with("END"));
        // CRI's own message comes first.
        let mut st = exited(1, dir.path());
        st.message = "oom".into();
        std::fs::write(dir.path().join("term"), "bye").unwrap();
        assert_eq!(container_message(&st, &annotations("File")), "oom: bye");
        // A running container has no termination message.
        st.state = api::ContainerState::ContainerRunning as i32;
        assert_eq!(container_message(&st, &annotations("File")), "oom");
    }

    #[test]
    fn logs_only_with_fallback_a_failure_and_an_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        log(dir.path(), &[("stdout", "F", "starting"), ("stderr", "P", "fatal: "), ("stderr", "F", "no config")]);
        std::fs::write(dir.path().join("term"), "").unwrap();
        assert_eq!(
            container_message(&exited(2, dir.path()), &annotations("FallbackToLogsOnError")),
            "starting\nfatal: no config\n"
        );
        assert_eq!(container_message(&exited(0, dir.path()), &annotations("FallbackToLogsOnError")), "", "exit 0");
        assert_eq!(container_message(&exited(2, dir.path()), &annotations("File")), "", "policy File");
        std::fs::remove_file(dir.path().join("term")).unwrap();
        assert!(container_message(&exited(2, dir.path()), &annotations("FallbackToLogsOnError")).contains("no config"));
    }

    #[test]
    fn logs_give_the_last_80_lines_and_2_kib() {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
        let entries: Vec<(&str, &str, &str)> = lines.iter().map(|l| ("stdout", "F", l.as_str())).collect();
        log(dir.path(), &entries);
        let m = container_message(&exited(1, dir.path()), &annotations("FallbackToLogsOnError"));
        assert!(m.starts_with("line 20\n") && m.ends_with("line 99\n"), "{m}");
        let long: Vec<String> = (0..80).map(|i| format!("{i:03}{}", "y".repeat(60))).collect();
        let entries: Vec<(&str, &str, &str)> = long.iter().map(|l| ("stdout", "F", l.as_str())).collect();
        log(dir.path(), &entries);
        let m = container_message(&exited(1, dir.path()), &annotations("FallbackToLogsOnError"));
        assert_eq!(m.len(), 2048);
        assert!(m.ends_with(&format!("079{}\n", "y".repeat(60))));
    }
}
