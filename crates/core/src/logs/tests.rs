use super::*;
use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
};

fn running(flag: Arc<AtomicBool>) -> IsRunning {
    Arc::new(move || {
        let v = flag.load(Ordering::SeqCst);
        Box::pin(async move { v })
    })
}

fn never() -> IsRunning {
    running(Arc::new(AtomicBool::new(false)))
}

async fn read_all(path: &Path, opts: LogOptions) -> String {
    let (tx, mut rx) = mpsc::channel(16);
    let p = path.to_path_buf();
    let task = tokio::spawn(async move { read_logs(&p, opts, never(), tx).await });
    let mut out = Vec::new();
    while let Some(b) = rx.recv().await {
        out.extend_from_slice(&b);
    }
    task.await.expect("join").expect("read_logs");
    String::from_utf8(out).expect("utf8")
}

fn line(ts: &str, stream: &str, tag: &str, text: &str) -> String {
    format!("{ts} {stream} {tag} {text}\n")
}

#[test]
fn cri_lines_parse_with_partial_tags_and_docker_json_too() {
    let m = parse_cri(b"2016-10-06T00:17:09.669794202Z stdout F log content 1\n").expect("parse");
    assert_eq!((m.stream, m.log.as_slice()), (Stream::Stdout, &b"log content 1\n"[..]));
    let m = parse_cri(b"2016-10-06T00:17:09.669794202Z stderr P part\n").expect("parse");
    assert_eq!((m.stream, m.log.as_slice()), (Stream::Stderr, &b"part"[..]), "a partial line loses its newline");
    assert!(parse_cri(b"2016-10-06T00:17:09Z other F x\n").is_err());
    assert!(parse_cri(b"not-a-time stdout F x\n").is_err());
    let m = parse_docker_json(br#"{"log":"content 1\n","stream":"stdout","time":"2016-10-20T18:39:20.57606443Z"}"#)
        .expect("json");
    assert_eq!(m.log, b"content 1\n");
    assert!(parser_for(b"garbage\n").is_none());
    let t = DateTime::parse_from_rfc3339("2016-10-06T00:17:09.5Z").expect("t");
    assert_eq!(format_time(&t), "2016-10-06T00:17:09.500000000Z");
    let t = DateTime::parse_from_rfc3339("2016-10-06T02:17:09.5+02:00").expect("t");
    assert_eq!(format_time(&t), "2016-10-06T02:17:09.500000000+02:00");
}

fn status_with(cs: ContainerStatus) -> PodStatus {
    PodStatus { container_statuses: Some(vec![cs]), ..Default::default() }
}

#[test]
fn the_container_instance_follows_upstream_rules() {
    let running = ContainerStatus {
        name: "app".into(),
        container_id: Some("containerd://cur".into()),
        state: Some(ContainerState { running: Some(ContainerStateRunning::default()), ..Default::default() }),
        last_state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id: Some("containerd://prev".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let s = status_with(running.clone());
    assert_eq!(container_for_logs(&s, "p", "app", false).as_deref(), Ok("containerd://cur"));
    assert_eq!(container_for_logs(&s, "p", "app", true).as_deref(), Ok("containerd://prev"));
    assert_eq!(
        container_for_logs(&s, "p", "other", false),
        Err("container \"other\" in pod \"p\" is not available".into())
    );
    let first = ContainerStatus { last_state: None, ..running };
    assert_eq!(
        container_for_logs(&status_with(first), "p", "app", true),
        Err("previous terminated container \"app\" in pod \"p\" not found".into())
    );
    let waiting = ContainerStatus {
        name: "app".into(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting { reason: Some("ImagePullBackOff".into()), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        container_for_logs(&status_with(waiting), "p", "app", false),
        Err("container \"app\" in pod \"p\" is waiting to start: trying and failing to pull image".into())
    );
    let crashed = ContainerStatus {
        name: "app".into(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting { reason: Some("CrashLoopBackOff".into()), ..Default::default() }),
            ..Default::default()
        }),
        last_state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id: Some("containerd://dead".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(container_for_logs(&status_with(crashed), "p", "app", false).as_deref(), Ok("containerd://dead"));
}

/// Writes `0.log.<stamp>` (lines a1..a3) and `0.log` (b1..b3, the last one split in two
/// partial records).
fn rotated_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let old: String =
        (1..=3).map(|i| line(&format!("2024-01-01T00:00:0{i}Z"), "stdout", "F", &format!("a{i}"))).collect();
    std::fs::write(dir.path().join("0.log.20240101-000010"), old).expect("write");
    std::fs::write(dir.path().join("0.log.20240101-000010.gz.tmp"), "ignored").expect("write");
    let cur = [
        line("2024-01-01T00:01:01Z", "stdout", "F", "b1"),
        line("2024-01-01T00:01:02Z", "stderr", "F", "b2"),
        line("2024-01-01T00:01:03Z", "stdout", "P", "b3-"),
        line("2024-01-01T00:01:04Z", "stdout", "F", "end"),
    ]
    .concat();
    let path = dir.path().join("0.log");
    std::fs::write(&path, cur).expect("write");
    (dir, path)
}

#[tokio::test]
async fn a_read_spans_rotated_files_and_honours_every_option() {
    let (_dir, path) = rotated_dir();
    let all = read_all(&path, LogOptions::default()).await;
    assert_eq!(all, "a1\na2\na3\nb1\nb2\nb3-end\n");

    // tailLines counts file lines across the rotation.
    let t = read_all(&path, LogOptions { tail: Some(6), ..Default::default() }).await;
    assert_eq!(t, "a2\na3\nb1\nb2\nb3-end\n");
    let t = read_all(&path, LogOptions { tail: Some(2), ..Default::default() }).await;
    assert_eq!(t, "b3-end\n");
    assert_eq!(read_all(&path, LogOptions { tail: Some(0), ..Default::default() }).await, "");
    assert_eq!(read_all(&path, LogOptions { tail: Some(100), ..Default::default() }).await, all);

    // limitBytes cuts mid-line.
    assert_eq!(read_all(&path, LogOptions { limit_bytes: Some(7), ..Default::default() }).await, "a1\na2\na");

    // since skips older lines.
    let since = Some("2024-01-01T00:01:02Z".parse::<DateTime<Utc>>().expect("t"));
    assert_eq!(read_all(&path, LogOptions { since, ..Default::default() }).await, "b2\nb3-end\n");

    // timestamps prefix each logical line once, not each partial record.
    let t = read_all(&path, LogOptions { timestamps: true, tail: Some(2), ..Default::default() }).await;
    assert_eq!(t, "2024-01-01T00:01:03.000000000Z b3-end\n");
}

#[tokio::test]
async fn a_missing_or_unreadable_log_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, _rx) = mpsc::channel(1);
    let err = read_logs(&dir.path().join("9.log"), LogOptions::default(), never(), tx).await.expect_err("missing");
    assert!(err.contains("9.log"), "{err}");
    std::fs::write(dir.path().join("0.log"), "plain text\n").expect("write");
    let (tx, _rx) = mpsc::channel(1);
    let err = read_logs(&dir.path().join("0.log"), LogOptions::default(), never(), tx).await.expect_err("format");
    assert!(err.contains("unsupported log format"), "{err}");
}

async fn recv_until(rx: &mut mpsc::Receiver<Bytes>, got: &mut String, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !got.contains(want) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(b)) => got.push_str(std::str::from_utf8(&b).expect("utf8")),
            Ok(None) => panic!("stream ended before {want:?}; got {got:?}"),
            Err(_) => panic!("no {want:?} within 10s; got {got:?}"),
        }
    }
}

#[tokio::test]
async fn a_follow_sees_appends_and_rotations_and_ends_when_the_container_stops() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("0.log");
    std::fs::write(&path, line("2024-01-01T00:00:01Z", "stdout", "F", "one")).expect("write");
    let alive = Arc::new(AtomicBool::new(true));
    let (tx, mut rx) = mpsc::channel(16);
    let p = path.clone();
    let opts = LogOptions { follow: true, tail: Some(1), ..Default::default() };
    let task = tokio::spawn({
        let alive = running(alive.clone());
        async move { read_logs(&p, opts, alive, tx).await }
    });
    let mut got = String::new();
    recv_until(&mut rx, &mut got, "one\n").await;

    let append = |text: &str| {
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(text.as_bytes()).expect("append");
    };
    // A line written in two pieces arrives whole.
    append("2024-01-01T00:00:02Z stdout F tw");
    append("o\n");
    recv_until(&mut rx, &mut got, "two\n").await;

    // Rotation: the old file gets one more line, is renamed, and a new file starts.
    append(&line("2024-01-01T00:00:03Z", "stdout", "F", "three"));
    std::fs::rename(&path, dir.path().join("0.log.20240101-000004")).expect("rotate");
    std::fs::write(&path, line("2024-01-01T00:00:05Z", "stdout", "F", "four")).expect("write");
    recv_until(&mut rx, &mut got, "four\n").await;
    assert_eq!(got, "one\ntwo\nthree\nfour\n");

    // The container stops: what is left is sent and the stream ends.
    append(&line("2024-01-01T00:00:06Z", "stdout", "F", "five"));
    alive.store(false, Ordering::SeqCst);
    recv_until(&mut rx, &mut got, "five\n").await;
    let end = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("stream ends");
    assert!(end.is_none(), "nothing after the stop: {end:?}");
    task.await.expect("join").expect("follow");
}

#[tokio::test]
async fn a_follow_stops_when_the_client_goes_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("0.log");
    std::fs::write(&path, line("2024-01-01T00:00:01Z", "stdout", "F", "one")).expect("write");
    let (tx, mut rx) = mpsc::channel(16);
    let p = path.clone();
    let task = tokio::spawn(async move {
        read_logs(&p, LogOptions { follow: true, ..Default::default() }, running(Arc::new(AtomicBool::new(true))), tx)
            .await
    });
    let mut got = String::new();
    recv_until(&mut rx, &mut got, "one\n").await;
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("ends").expect("join").expect("ok");
}
