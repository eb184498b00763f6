//! WebSocket clients the runtime's streaming server cannot serve, translated to SPDY toward
//! it, as the API server's `StreamTranslator` and `TunnelingHandler` do:
//!
//! - exec/attach over `v5.channel.k8s.io` (what kubectl speaks first): the kubelet ends the
//!   WebSocket and opens the runtime's remotecommand streams over SPDY `v4.channel.k8s.io`
//!   (error, stdin, stdout, stderr, resize, in that order, each replied before the next).
//!   Channel 0 feeds stdin, 4 resize; stdout and stderr come back on 1 and 2; the v5 CLOSE
//!   signal (`[255, id]`) half-closes stdin. One empty message on the lowest writable channel
//!   says the session is up. At the end the runtime's status is rewritten as the translator
//!   does (exit codes as `NonZeroExitCode`, other failures as internal errors) on channel 3,
//!   then the WebSocket closes with 1000.
//! - port-forward over `SPDY/3.1+portforward.k8s.io`: the client runs SPDY inside WebSocket
//!   binary messages; the kubelet upgrades to SPDY at the runtime and copies the bytes.
//!
//! Other WebSocket protocols (`v4.channel.k8s.io`, base64, port-forward `portforward.k8s.io`
//! with `?port=`) go to the runtime as they are.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use crate::StreamOptions;
use crate::spdy::{self, Frame, UpgradeError};
use crate::streaming::proxy_error;

pub(crate) const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";
const TUNNEL_PREFIX: &str = "SPDY/3.1+";
/// How long the runtime has to reply to each stream (upstream `createStreamResponseTimeout`).
const STREAM_REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long the client has to answer our close before the connection is dropped.
const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// The WebSocket subprotocols the client offers, in its order.
fn offered(req: &Request) -> Vec<String> {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Whether a WebSocket exec/attach asks first for `v5.channel.k8s.io` (the client's first
/// protocol wins, as wsstream negotiates).
pub(crate) fn wants_v5(req: &Request) -> bool {
    offered(req).first().is_some_and(|p| p == V5)
}

/// The SPDY protocols a WebSocket port-forward tunnels (`SPDY/3.1+portforward.k8s.io` →
/// `portforward.k8s.io`); empty when it does not tunnel.
pub(crate) fn tunneled_protocols(req: &Request) -> Vec<String> {
    offered(req)
        .into_iter()
        .filter_map(|p| p.strip_prefix(TUNNEL_PREFIX).filter(|s| s.ends_with(".k8s.io")).map(str::to_string))
        .collect()
}

/// The 101 that accepts the client's WebSocket with `protocol`, or a 400 naming what is wrong.
fn accept(req: &Request, protocol: &str) -> Response {
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).map(|k| k.as_bytes().to_vec());
    let version = req.headers().get(header::SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok());
    let Some(key) = key.filter(|_| version == Some("13")) else {
        return (StatusCode::BAD_REQUEST, "websocket: a Sec-WebSocket-Key and version 13 are required\n")
            .into_response();
    };
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key))
        .header(header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(axum::body::Body::empty())
        .unwrap_or_else(proxy_error)
}

fn upgrade_error(e: UpgradeError) -> Response {
    match e {
        UpgradeError::Answer(r) => r,
        UpgradeError::Failed(msg) => proxy_error(msg),
    }
}

/// The client's WebSocket once the 101 has gone out.
async fn client_socket(on: hyper::upgrade::OnUpgrade) -> Option<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>> {
    match on.await {
        Ok(io) => Some(WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await),
        Err(e) => {
            tracing::debug!("client stream upgrade: {e}");
            None
        }
    }
}

/// The SPDY stream ids of one remotecommand session (0 when not opened).
#[derive(Debug, Default, Clone, Copy)]
struct Streams {
    error: u32,
    stdin: u32,
    stdout: u32,
    stderr: u32,
    resize: u32,
}

type Spdy = TokioIo<hyper::upgrade::Upgraded>;

/// Opens the session's streams one after the other, each after the runtime's reply (echoing
/// its pings meanwhile).
async fn open_streams(io: &mut Spdy, opts: StreamOptions) -> Result<Streams, String> {
    let mut writer = spdy::Writer::default();
    let mut ids = Streams::default();
    let mut next = 1;
    let wanted = [
        ("error", true),
        ("stdin", opts.stdin),
        ("stdout", opts.stdout),
        ("stderr", opts.stderr && !opts.tty),
        ("resize", opts.tty),
    ];
    for (kind, on) in wanted {
        if !on {
            continue;
        }
        let id = next;
        next += 2;
        io.write_all(&writer.syn_stream(id, &[("streamtype", kind)])).await.map_err(|e| e.to_string())?;
        let replied = tokio::time::timeout(STREAM_REPLY_TIMEOUT, async {
            loop {
                match spdy::read_frame(io).await.map_err(|e| e.to_string())? {
                    Some(Frame::SynReply { stream }) if stream == id => return Ok(()),
                    Some(Frame::Ping(p)) => io.write_all(&spdy::ping(p)).await.map_err(|e| e.to_string())?,
                    Some(Frame::Reset { stream }) if stream == id => {
                        return Err(format!("the runtime refused the {kind} stream"));
                    }
                    Some(Frame::GoAway) | None => return Err("the runtime closed the connection".to_string()),
                    Some(_) => {}
                }
            }
        })
        .await;
        replied.map_err(|_| format!("timed out waiting for the runtime to accept the {kind} stream"))??;
        match kind {
            "error" => ids.error = id,
            "stdin" => ids.stdin = id,
            "stdout" => ids.stdout = id,
            "stderr" => ids.stderr = id,
            _ => ids.resize = id,
        }
    }
    Ok(ids)
}

/// An exec or attach over WebSocket `v5.channel.k8s.io`, bridged to the runtime's SPDY
/// streaming server at `url`.
pub(crate) async fn remote_command_v5(mut req: Request, url: &str, opts: StreamOptions) -> Response {
    // The client's handshake is checked before the runtime starts anything.
    let answer = accept(&req, V5);
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        return answer;
    }
    let (mut io, _) = match spdy::upgrade(url, &[V4]).await {
        Ok(u) => u,
        Err(e) => return upgrade_error(e),
    };
    let ids = match open_streams(&mut io, opts).await {
        Ok(ids) => ids,
        Err(e) => return proxy_error(format!("error creating the runtime's streams: {e}")),
    };
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Some(ws) = client_socket(on).await else { return };
        if let Err(e) = bridge(ws, io, ids, opts).await {
            tracing::debug!("v5 stream: {e}");
        }
    });
    answer
}

async fn bridge(
    mut ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    io: Spdy,
    ids: Streams,
    opts: StreamOptions,
) -> Result<(), String> {
    let (mut rd, mut wr) = tokio::io::split(io);
    // Frames are read on their own task (a read is not cancel-safe inside select!).
    let (tx, mut frames) = tokio::sync::mpsc::channel::<Frame>(16);
    let reader = tokio::spawn(async move {
        while let Ok(Some(f)) = spdy::read_frame(&mut rd).await {
            if tx.send(f).await.is_err() {
                break;
            }
        }
    });
    // The lowest writable channel, empty: the session is up.
    let first = if opts.stdout {
        1
    } else if opts.stderr && !opts.tty {
        2
    } else {
        3
    };
    ws.send(Message::binary(vec![first])).await.map_err(|e| e.to_string())?;
    let mut error_stream = Vec::new();
    let (mut stdin_open, mut resize_open) = (ids.stdin != 0, ids.resize != 0);
    let mut client_gone = false;
    loop {
        tokio::select! {
            msg = ws.next() => {
                let data: Bytes = match msg {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Text(t))) => Bytes::copy_from_slice(t.as_bytes()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => {
                        client_gone = true;
                        break;
                    }
                };
                let Some((&channel, payload)) = data.split_first() else { continue };
                let frame = match channel {
                    0 if stdin_open => spdy::data(ids.stdin, false, payload),
                    4 if resize_open => spdy::data(ids.resize, false, payload),
                    255 => {
                        // The v5 CLOSE signal: exactly one channel byte follows.
                        let [target] = payload else {
                            client_gone = true;
                            break;
                        };
                        match target {
                            0 if stdin_open => {
                                stdin_open = false;
                                spdy::data(ids.stdin, true, &[])
                            }
                            4 if resize_open => {
                                resize_open = false;
                                spdy::data(ids.resize, true, &[])
                            }
                            _ => continue,
                        }
                    }
                    _ => continue,
                };
                wr.write_all(&frame).await.map_err(|e| e.to_string())?;
            }
            frame = frames.recv() => match frame {
                Some(Frame::Data { stream, data, .. }) => {
                    let channel = if stream == ids.stdout && stream != 0 {
                        1
                    } else if stream == ids.stderr && stream != 0 {
                        2
                    } else {
                        if stream == ids.error {
                            error_stream.extend_from_slice(&data);
                        }
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    let mut msg = Vec::with_capacity(data.len() + 1);
                    msg.push(channel);
                    msg.extend_from_slice(&data);
                    if ws.send(Message::binary(msg)).await.is_err() {
                        client_gone = true;
                        break;
                    }
                }
                Some(Frame::Ping(p)) => wr.write_all(&spdy::ping(p)).await.map_err(|e| e.to_string())?,
                Some(Frame::GoAway) | None => break,
                Some(_) => {}
            },
        }
    }
    // Our side of the SPDY connection ends either way; a client that left cancels its streams
    // (as client-go's Close resets them).
    if client_gone {
        for id in [ids.error, ids.stdin, ids.stdout, ids.stderr, ids.resize].into_iter().filter(|i| *i != 0) {
            let _ = wr.write_all(&spdy::reset(id, spdy::CANCEL)).await;
        }
    }
    let _ = wr.write_all(&spdy::goaway()).await;
    let _ = wr.shutdown().await;
    reader.abort();
    if client_gone {
        return Ok(());
    }
    let mut status = vec![3];
    status.extend_from_slice(&translated_status(&error_stream));
    ws.send(Message::binary(status)).await.map_err(|e| e.to_string())?;
    ws.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })))
        .await
        .map_err(|e| e.to_string())?;
    // Linger for the client's close so that it reads everything before the connection goes.
    let _ = tokio::time::timeout(CLOSE_LINGER, async { while let Some(Ok(_)) = ws.next().await {} }).await;
    Ok(())
}

/// metav1.Status as the API server writes it (fields in Go's order).
#[derive(Serialize)]
struct Status {
    metadata: Empty,
    status: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(skip_serializing_if = "is_zero")]
    code: u16,
}

fn is_zero(c: &u16) -> bool {
    *c == 0
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct Details {
    causes: Vec<Cause>,
}

#[derive(Serialize)]
struct Cause {
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'static str,
    message: String,
}

fn success() -> Status {
    Status { metadata: Empty {}, status: "Success", message: String::new(), reason: "", details: None, code: 0 }
}

fn internal(message: String) -> Status {
    Status {
        metadata: Empty {},
        status: "Failure",
        message: format!("Internal error occurred: {message}"),
        reason: "InternalError",
        details: Some(Details { causes: vec![Cause { reason: "", message }] }),
        code: 500,
    }
}

/// The runtime's v4 error stream as the StreamTranslator rewrites it: nothing or Success is
/// Success; an exit code (0–255) is `NonZeroExitCode` with "command terminated with exit code
/// N"; any other failure, or what cannot be read, is an internal error with its message.
pub(crate) fn translated_status(error_stream: &[u8]) -> Vec<u8> {
    let status = if error_stream.is_empty() {
        success()
    } else {
        match serde_json::from_slice::<serde_json::Value>(error_stream) {
            Err(e) => {
                internal(format!("error stream protocol error: {e} in {:?}", String::from_utf8_lossy(error_stream)))
            }
            Ok(v) if v["status"] == "Success" => success(),
            Ok(v) if v["status"] == "Failure" && v["reason"] == "NonZeroExitCode" => {
                let causes = v["details"]["causes"].as_array().cloned().unwrap_or_default();
                let code = causes
                    .iter()
                    .find(|c| c["reason"] == "ExitCode")
                    .and_then(|c| c["message"].as_str())
                    .and_then(|m| m.parse::<u8>().ok());
                match code {
                    Some(n) => Status {
                        metadata: Empty {},
                        status: "Failure",
                        message: format!(
                            "command terminated with non-zero exit code: command terminated with exit code {n}"
                        ),
                        reason: "NonZeroExitCode",
                        details: Some(Details { causes: vec![Cause { reason: "ExitCode", message: n.to_string() }] }),
                        code: 0,
                    },
                    None => internal(format!("error stream protocol error: invalid exit code value in {v}")),
                }
            }
            Ok(v) if v["status"] == "Failure" => internal(v["message"].as_str().unwrap_or_default().to_string()),
            Ok(v) => internal(format!("error stream protocol error: unknown error in {v}")),
        }
    };
    serde_json::to_vec(&status).unwrap_or_default()
}

/// A port-forward tunnelled in WebSocket (`SPDY/3.1+portforward.k8s.io`): the runtime gets a
/// SPDY upgrade offering `protocols`, the client the WebSocket with the protocol it chose, and
/// the bytes are copied (each of ours in one binary message).
pub(crate) async fn tunnel(mut req: Request, url: &str, protocols: Vec<String>) -> Response {
    let check = accept(&req, "");
    if check.status() != StatusCode::SWITCHING_PROTOCOLS {
        return check;
    }
    let offered: Vec<&str> = protocols.iter().map(String::as_str).collect();
    let (io, chosen) = match spdy::upgrade(url, &offered).await {
        Ok(u) => u,
        Err(e) => return upgrade_error(e),
    };
    if chosen.is_empty() {
        return proxy_error("unable to upgrade: the runtime chose no stream protocol");
    }
    let answer = accept(&req, &format!("{TUNNEL_PREFIX}{chosen}"));
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Some(ws) = client_socket(on).await else { return };
        if let Err(e) = copy_tunnel(ws, io).await {
            tracing::debug!("port-forward tunnel: {e}");
        }
    });
    answer
}

async fn copy_tunnel(mut ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>, io: Spdy) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(b))) => wr.write_all(&b).await.map_err(|e| e.to_string())?,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => return Err("invalid message type received".into()),
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    let _ = wr.shutdown().await;
                    return Ok(());
                }
            },
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => {
                    let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
                    let _ = ws.send(Message::Close(Some(close))).await;
                    let _ = tokio::time::timeout(CLOSE_LINGER, async { while let Some(Ok(_)) = ws.next().await {} }).await;
                    return Ok(());
                }
                Ok(n) => ws.send(Message::binary(buf[..n].to_vec())).await.map_err(|e| e.to_string())?,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws_request(protocols: &str) -> Request {
        Request::builder()
            .uri("/exec/ns/p/c?command=sh&output=1")
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("Sec-WebSocket-Protocol", protocols)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[test]
    fn protocol_choice_follows_the_clients_order() {
        assert!(wants_v5(&ws_request("v5.channel.k8s.io")));
        assert!(wants_v5(&ws_request("v5.channel.k8s.io, v4.channel.k8s.io")));
        assert!(!wants_v5(&ws_request("v4.channel.k8s.io,v5.channel.k8s.io")), "v4 first goes to the runtime");
        assert!(!wants_v5(&ws_request("base64.channel.k8s.io")));
        assert_eq!(tunneled_protocols(&ws_request("SPDY/3.1+portforward.k8s.io")), vec!["portforward.k8s.io"]);
        assert!(tunneled_protocols(&ws_request("v4.channel.k8s.io")).is_empty());
        assert!(tunneled_protocols(&ws_request("SPDY/3.1+other.example")).is_empty());
    }

    #[test]
    fn the_accept_answer_carries_the_key_digest_and_protocol() {
        let r = accept(&ws_request(V5), V5);
        assert_eq!(r.status(), StatusCode::SWITCHING_PROTOCOLS);
        // RFC 6455's example key and its answer.
        assert_eq!(r.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(r.headers()["sec-websocket-protocol"], V5);
        let mut old = ws_request(V5);
        old.headers_mut().insert("Sec-WebSocket-Version", "8".parse().unwrap());
        assert_eq!(accept(&old, V5).status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn statuses_are_rewritten_as_the_translator_writes_them() {
        let s = |b: &[u8]| String::from_utf8(translated_status(b)).unwrap();
        assert_eq!(s(b""), r#"{"metadata":{},"status":"Success"}"#);
        assert_eq!(s(br#"{"metadata":{},"status":"Success"}"#), r#"{"metadata":{},"status":"Success"}"#);
        let exit = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: Error executing in Docker Container: 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        assert_eq!(
            s(exit),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: command terminated with exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
        let failed = br#"{"metadata":{},"status":"Failure","message":"Internal error occurred: error executing command in container: no such file","reason":"InternalError","code":500}"#;
        assert_eq!(
            s(failed),
            r#"{"metadata":{},"status":"Failure","message":"Internal error occurred: Internal error occurred: error executing command in container: no such file","reason":"InternalError","details":{"causes":[{"message":"Internal error occurred: error executing command in container: no such file"}]},"code":500}"#
        );
        let big = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"300"}]}}"#;
        assert!(s(big).contains("invalid exit code value"), "{}", s(big));
        assert!(s(b"not json").contains("error stream protocol error"));
    }
}
