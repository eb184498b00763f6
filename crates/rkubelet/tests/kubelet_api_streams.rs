//! End-to-end: exec, attach, port-forward and run through the kubelet API on a standalone
//! agent (anonymous with AlwaysAllow, no API server): the kubelet asks containerd for a
//! streaming URL and proxies the client's upgrade to it. Driven with a WebSocket client
//! (`v4.channel.k8s.io`): stdin, stdout, stderr, tty, the exit status on the error channel, and
//! a port-forward round trip to a busybox httpd; and over `v5.channel.k8s.io`, which the
//! kubelet translates to SPDY: stdin's close signal, the rewritten exit status, a resize.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use testkit::https::tokio_tungstenite::tungstenite::Message;
use testkit::https::{request, websocket};
use testkit::{Agent, AgentOptions, NodeEnv, wait_for};

mod common;

use common::{BIN, OPEN_API_CONFIG};

fn manifest(image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: streams
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: {image}
    command: ["sh", "-c", "mkdir -p /tmp/www; echo hello-from-httpd > /tmp/www/index.html; httpd -p 8080 -h /tmp/www; trap 'exit 0' TERM; while true; do sleep 1; done"]
  - name: talker
    image: {image}
    stdin: true
    command: ["sh", "-c", "while read line; do echo heard $line; done"]
"#
    )
}

fn enc(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// The payloads per channel until the socket closes (or `until` holds), within 20 s. The
/// status on the error channel may come before the last output: an exec is read to its close.
async fn collect<S>(ws: &mut S, until: impl Fn(&[Vec<u8>]) -> bool) -> Vec<Vec<u8>>
where
    S: futures::Stream<Item = Result<Message, testkit::https::tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut channels = vec![Vec::new(); 8];
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Binary(b) = m
                && let Some((ch, data)) = b.split_first()
            {
                channels[usize::from(*ch).min(7)].extend_from_slice(data);
                if until(&channels) {
                    return;
                }
            }
        }
    })
    .await;
    channels
}

/// A v5 session to its end: the first message, the payloads per channel and the close code.
async fn collect_v5<S>(ws: &mut S) -> (Vec<u8>, Vec<Vec<u8>>, Option<u16>)
where
    S: futures::Stream<Item = Result<Message, testkit::https::tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut first = None;
    let mut channels = vec![Vec::new(); 8];
    let mut close = None;
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(m)) = ws.next().await {
            match m {
                Message::Binary(b) => {
                    first.get_or_insert_with(|| b.to_vec());
                    if let Some((ch, data)) = b.split_first() {
                        channels[usize::from(*ch).min(7)].extend_from_slice(data);
                    }
                }
                Message::Close(frame) => {
                    close = frame.map(|f| u16::from(f.code));
                    return;
                }
                _ => {}
            }
        }
    })
    .await;
    (first.unwrap_or_default(), channels, close)
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_attach_port_forward_and_run_reach_the_container() {
    let Some(env) = NodeEnv::require() else { return };
    let a = Agent::start(
        Path::new(BIN),
        &env,
        "kstreams",
        AgentOptions { config_yaml: Some(OPEN_API_CONFIG.into()), ..Default::default() },
    );
    a.write_manifest("streams.yaml", &manifest(&env.test_image));
    let name = a.pod_name("streams");
    wait_for("the pod's containers run", Duration::from_secs(90), || async {
        let p = a.pod("streams").await?;
        let running =
            p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).is_some_and(|l| {
                l.len() == 2 && l.iter().all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
            });
        if running { Ok(()) } else { Err(format!("{:?}", p.status)) }
    })
    .await;

    // exec with stdin, stdout, stderr and a non-zero exit.
    let script = "read x; echo got $x; echo oops >&2; exit 3";
    let path =
        format!("/exec/default/{name}/app?command=sh&command=-c&command={}&input=1&output=1&error=1", enc(script));
    let (mut ws, proto) = websocket(a.port, &path, &["v4.channel.k8s.io"]).await.unwrap();
    assert_eq!(proto, "v4.channel.k8s.io");
    ws.send(Message::Binary([&[0u8][..], b"hello\n"].concat().into())).await.unwrap();
    let ch = collect(&mut ws, |_| false).await;
    assert_eq!(String::from_utf8_lossy(&ch[1]), "got hello\n");
    assert_eq!(String::from_utf8_lossy(&ch[2]), "oops\n");
    let status: serde_json::Value = serde_json::from_slice(&ch[3]).unwrap();
    assert_eq!(status["status"], "Failure", "{status}");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], "3", "{status}");

    // The same over WebSocket v5.channel.k8s.io (kubectl's first choice), which containerd does
    // not speak: the kubelet translates to SPDY. stdin ends with the v5 CLOSE signal.
    let path = format!("/exec/default/{name}/app?command=cat&input=1&output=1&error=1");
    let (mut ws, proto) = websocket(a.port, &path, &["v5.channel.k8s.io"]).await.unwrap();
    assert_eq!(proto, "v5.channel.k8s.io");
    ws.send(Message::Binary([&[0u8][..], b"through v5\n"].concat().into())).await.unwrap();
    ws.send(Message::Binary(vec![255u8, 0].into())).await.unwrap();
    let (first, ch, close) = collect_v5(&mut ws).await;
    assert_eq!(first, vec![1u8], "an empty message on stdout says the session is up");
    assert_eq!(String::from_utf8_lossy(&ch[1]), "through v5\n", "cat saw stdin end");
    assert_eq!(String::from_utf8_lossy(&ch[3]), r#"{"metadata":{},"status":"Success"}"#);
    assert_eq!(close, Some(1000), "a normal close after the status");
    let script = "read x; echo got $x; echo oops >&2; exit 3";
    let path =
        format!("/exec/default/{name}/app?command=sh&command=-c&command={}&input=1&output=1&error=1", enc(script));
    let (mut ws, _) = websocket(a.port, &path, &["v5.channel.k8s.io"]).await.unwrap();
    ws.send(Message::Binary([&[0u8][..], b"hello\n"].concat().into())).await.unwrap();
    let (_, ch, _) = collect_v5(&mut ws).await;
    assert_eq!(
        (String::from_utf8_lossy(&ch[1]), String::from_utf8_lossy(&ch[2])),
        ("got hello\n".into(), "oops\n".into())
    );
    assert_eq!(
        String::from_utf8_lossy(&ch[3]),
        r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: command terminated with exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#,
        "the API server translator's words"
    );
    // A tty resized over channel 4 before the command reads its size.
    let script = enc("sleep 1; stty size");
    let path = format!("/exec/default/{name}/app?command=sh&command=-c&command={script}&input=1&output=1&tty=1");
    let (mut ws, _) = websocket(a.port, &path, &["v5.channel.k8s.io"]).await.unwrap();
    ws.send(Message::Binary([&[4u8][..], br#"{"Width":101,"Height":37}"#].concat().into())).await.unwrap();
    let (_, ch, _) = collect_v5(&mut ws).await;
    assert_eq!(String::from_utf8_lossy(&ch[1]), "37 101\r\n");

    // exec with a tty: the terminal turns \n into \r\n; success on the error channel.
    // (containerd drops the output of a tty exec that ends before its copy starts: wait a bit.)
    let script = enc("sleep 1; echo tty-line; tty");
    let path = format!("/exec/default/{name}/app?command=sh&command=-c&command={script}&input=1&output=1&tty=1");
    let (mut ws, _) = websocket(a.port, &path, &["v4.channel.k8s.io"]).await.unwrap();
    let ch = collect(&mut ws, |_| false).await;
    let out = String::from_utf8_lossy(&ch[1]).to_string();
    assert!(out.starts_with("tty-line\r\n/dev/pts/"), "{out:?}");
    let status: serde_json::Value = serde_json::from_slice(&ch[3]).unwrap();
    assert_eq!(status["status"], "Success", "{status}");

    // attach to a container reading its stdin.
    let path = format!("/attach/default/{name}/talker?input=1&output=1");
    let (mut ws, _) = websocket(a.port, &path, &["v4.channel.k8s.io"]).await.unwrap();
    ws.send(Message::Binary([&[0u8][..], b"ping\n"].concat().into())).await.unwrap();
    let ch = collect(&mut ws, |c| String::from_utf8_lossy(&c[1]).contains("heard ping")).await;
    assert!(String::from_utf8_lossy(&ch[1]).contains("heard ping\n"), "{:?}", String::from_utf8_lossy(&ch[1]));
    drop(ws);

    // port-forward: an HTTP request to the pod's port 8080 over the data channel.
    let path = format!("/portForward/default/{name}?port=8080");
    let (mut ws, proto) = websocket(a.port, &path, &["v4.channel.k8s.io"]).await.unwrap();
    assert_eq!(proto, "v4.channel.k8s.io");
    ws.send(Message::Binary([&[0u8][..], b"GET / HTTP/1.0\r\n\r\n"].concat().into())).await.unwrap();
    let ch = collect(&mut ws, |c| String::from_utf8_lossy(&c[0]).contains("hello-from-httpd")).await;
    // Each channel starts with its port, little-endian.
    assert_eq!(&ch[0][..2], &8080u16.to_le_bytes(), "{:?}", String::from_utf8_lossy(&ch[0]));
    let reply = String::from_utf8_lossy(&ch[0][2..]).to_string();
    assert!(reply.starts_with("HTTP/1.") && reply.contains("hello-from-httpd"), "{reply}");
    drop(ws);

    // run: stdout then stderr; a failing command is a 500 with upstream's words.
    let (code, body) =
        request(a.port, "POST", &format!("/run/default/{name}/app?cmd=echo%20out"), &[], None).await.unwrap();
    assert_eq!((code, body.as_str()), (200, "out\n"));
    let (code, body) = request(a.port, "POST", &format!("/run/default/{name}/app?cmd=false"), &[], None).await.unwrap();
    assert_eq!((code, body.as_str()), (500, "command 'false' exited with 1: "));
    // No output: nothing at all, not even a Content-Type (upstream writeJSONResponse).
    let mut conn =
        testkit::https::open(a.port, "POST", &format!("/run/default/{name}/app?cmd=true"), &[], None).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut conn, &mut raw).await;
    let raw = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(raw.starts_with("http/1.0 200") || raw.starts_with("http/1.1 200"), "{raw}");
    assert!(!raw.contains("content-type"), "{raw}");
    assert!(raw.ends_with("\r\n\r\n"), "an empty body: {raw}");

    // Errors: not an upgrade, an unknown container, an unknown pod, no streams.
    let (code, body) =
        request(a.port, "POST", &format!("/exec/default/{name}/app?command=true&output=1"), &[], None).await.unwrap();
    assert_eq!((code, body.as_str()), (500, "Upgrade request required\n"));
    let (code, body) =
        request(a.port, "POST", &format!("/exec/default/{name}/nope?command=true&output=1"), &[], None).await.unwrap();
    assert_eq!((code, body.as_str()), (500, "container not found (\"nope\")"));
    let (code, body) =
        request(a.port, "POST", "/exec/default/nope/app?command=true&output=1", &[], None).await.unwrap();
    assert_eq!((code, body.as_str()), (404, "pod does not exist"));
    let (code, body) =
        request(a.port, "POST", &format!("/exec/default/{name}/app?command=true"), &[], None).await.unwrap();
    assert_eq!((code, body.as_str()), (400, "you must specify at least 1 of stdin, stdout, stderr"));
    // attach and port-forward have their own words (upstream GetAttach, NewV4Options).
    let (code, body) =
        request(a.port, "POST", &format!("/attach/default/{name}/nope?output=1"), &[], None).await.unwrap();
    assert_eq!((code, body), (500, format!("container nope not found in pod {name}_default")));
    let ws = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let (code, body) =
        request(a.port, "GET", &format!("/portForward/default/{name}?ports=8080"), &ws, None).await.unwrap();
    assert_eq!((code, body.as_str()), (400, "query parameter \"port\" is required"));
    a.cleanup().await;
}
