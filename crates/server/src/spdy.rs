//! The client side of SPDY/3.1 as Kubernetes streams use it (moby/spdystream): just what the
//! kubelet needs to speak to the runtime's streaming server when the client speaks something
//! else — open streams with headers, send and half-close data, echo pings, and read frames.
//!
//! Header blocks are a zlib stream per direction. The runtime's are never read (only which
//! stream a reply is for matters). Ours are written as stored (uncompressed) deflate blocks
//! in a zlib stream without a preset dictionary, which Go's reader accepts: it only checks the
//! dictionary when the header's FDICT bit is set. Flow control is not used, as spdystream
//! neither sends nor honours window updates.

use axum::http::{StatusCode, header};
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt};

/// SPDY version 3 control frame types.
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
/// FIN on a data or control frame.
const FLAG_FIN: u8 = 0x01;
/// The largest frame payload (24-bit length).
const MAX_PAYLOAD: usize = (1 << 24) - 1;
/// RST_STREAM status CANCEL.
pub(crate) const CANCEL: u32 = 5;

/// A frame from the runtime, as far as the kubelet cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    Data {
        stream: u32,
        fin: bool,
        data: Bytes,
    },
    SynReply {
        stream: u32,
    },
    Reset {
        stream: u32,
    },
    Ping(u32),
    GoAway,
    /// SETTINGS, WINDOW_UPDATE, HEADERS and the like.
    Other,
}

/// Reads one frame; `None` at a clean end of the connection between frames.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Frame>> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut head[1..]).await?;
    let flags = head[4];
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    let word = |i: usize| payload.get(i..i + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff);
    if head[0] & 0x80 == 0 {
        let stream = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        return Ok(Some(Frame::Data { stream, fin: flags & FLAG_FIN != 0, data: payload.into() }));
    }
    let kind = u16::from_be_bytes([head[2], head[3]]);
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("SPDY control frame {kind} too short"));
    Ok(Some(match kind {
        SYN_REPLY => Frame::SynReply { stream: word(0).ok_or_else(bad)? },
        RST_STREAM => Frame::Reset { stream: word(0).ok_or_else(bad)? },
        PING => Frame::Ping(payload.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok_or_else(bad)?),
        GOAWAY => Frame::GoAway,
        _ => Frame::Other,
    }))
}

/// Frames to the runtime; holds the state of our header compression stream.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    started: bool,
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&[0x80, 0x03]);
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

impl Writer {
    /// The header block: 32-bit count, then 32-bit length-prefixed lowercase names and values,
    /// as one stored deflate block (after the zlib header, in the first block only).
    fn header_block(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (k, v) in headers {
            let k = k.to_ascii_lowercase();
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 7);
        if !self.started {
            // CMF 0x78 (deflate, 32K window), FLG 0x01: no dictionary, check bits valid.
            out.extend_from_slice(&[0x78, 0x01]);
            self.started = true;
        }
        for chunk in raw.chunks(u16::MAX as usize) {
            let len = chunk.len() as u16;
            // BFINAL 0, BTYPE 00 (stored), then LEN and its complement, little-endian.
            out.push(0x00);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        // The sync-flush marker (an empty stored block), as Go's writer ends each block: a
        // reader hands out a stored block's data only when the next block begins, and must not
        // have to read past this frame for it.
        out.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
        out
    }

    /// SYN_STREAM for a new client stream (odd `id`), priority 0, no flags.
    pub(crate) fn syn_stream(&mut self, id: u32, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut payload = Vec::new();
        payload.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
        payload.extend_from_slice(&0u32.to_be_bytes());
        payload.extend_from_slice(&[0, 0]);
        payload.extend_from_slice(&self.header_block(headers));
        control(SYN_STREAM, 0, &payload)
    }
}

/// DATA frames carrying `data` on `stream` (one per 16 MiB), the last with FIN when `fin`; an
/// empty FIN frame half-closes the stream.
pub(crate) fn data(stream: u32, fin: bool, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    let chunks: Vec<&[u8]> = if data.is_empty() { vec![data] } else { data.chunks(MAX_PAYLOAD).collect() };
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        out.push(if fin && i == last { FLAG_FIN } else { 0 });
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(chunk);
    }
    out
}

/// The runtime's PING, echoed.
pub(crate) fn ping(id: u32) -> Vec<u8> {
    control(PING, 0, &id.to_be_bytes())
}

pub(crate) fn reset(stream: u32, status: u32) -> Vec<u8> {
    let mut payload = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
    payload.extend_from_slice(&status.to_be_bytes());
    control(RST_STREAM, 0, &payload)
}

/// GOAWAY with status OK; the kubelet accepts no streams from the runtime.
pub(crate) fn goaway() -> Vec<u8> {
    control(GOAWAY, 0, &[0; 8])
}

/// What the runtime answered instead of switching to SPDY.
pub(crate) enum UpgradeError {
    /// Its own answer (an error it wrote), passed back to the client as it is.
    Answer(axum::response::Response),
    /// Why the kubelet could not get an answer.
    Failed(String),
}

/// POSTs an upgrade to SPDY/3.1 offering `protocols` to the runtime's streaming `url`: the
/// upgraded connection and the protocol the runtime chose.
pub(crate) async fn upgrade(
    url: &str,
    protocols: &[&str],
) -> Result<(TokioIo<hyper::upgrade::Upgraded>, String), UpgradeError> {
    let (tcp, authority, path) = crate::streaming::dial_runtime(url).await.map_err(UpgradeError::Failed)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| UpgradeError::Failed(format!("error dialing backend: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("SPDY connection to the runtime: {e}");
        }
    });
    let mut req = hyper::Request::builder()
        .method("POST")
        .uri(path)
        .header(header::HOST, authority)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1");
    for p in protocols {
        req = req.header("X-Stream-Protocol-Version", *p);
    }
    let req = req.body(axum::body::Body::empty()).map_err(|e| UpgradeError::Failed(e.to_string()))?;
    let mut resp = sender
        .send_request(req)
        .await
        .map_err(|e| UpgradeError::Failed(format!("error proxying to the backend: {e}")))?;
    let status = resp.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        if status.as_u16() < 400 {
            return Err(UpgradeError::Failed(format!("invalid upgrade response: status code {}", status.as_u16())));
        }
        let mut answer = axum::response::Response::builder().status(status);
        for (k, v) in resp.headers() {
            answer = answer.header(k, v);
        }
        let answer =
            answer.body(axum::body::Body::new(resp.into_body())).map_err(|e| UpgradeError::Failed(e.to_string()))?;
        return Err(UpgradeError::Answer(answer));
    }
    let has = |h: header::HeaderName, token: &str| {
        resp.headers().get(h).and_then(|v| v.to_str().ok()).is_some_and(|v| v.to_ascii_lowercase().contains(token))
    };
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "spdy/3.1") {
        return Err(UpgradeError::Failed("unable to upgrade: missing upgrade headers in response".into()));
    }
    let chosen =
        resp.headers().get("X-Stream-Protocol-Version").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let io = hyper::upgrade::on(&mut resp)
        .await
        .map_err(|e| UpgradeError::Failed(format!("error upgrading the runtime connection: {e}")))?;
    Ok((TokioIo::new(io), chosen))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inflates our header blocks with a real zlib reader (stored blocks need no dictionary).
    fn inflate_stored(stream: &[u8]) -> Vec<u8> {
        assert_eq!(&stream[..2], &[0x78, 0x01]);
        assert_eq!((u16::from(stream[0]) << 8 | u16::from(stream[1])) % 31, 0, "zlib header check bits");
        let mut out = Vec::new();
        let mut rest = &stream[2..];
        while !rest.is_empty() {
            assert_eq!(rest[0], 0, "a stored, non-final block");
            let len = u16::from_le_bytes([rest[1], rest[2]]);
            assert_eq!(!len, u16::from_le_bytes([rest[3], rest[4]]));
            out.extend_from_slice(&rest[5..5 + len as usize]);
            rest = &rest[5 + len as usize..];
        }
        out
    }

    #[test]
    fn syn_stream_layout_and_header_block() {
        let mut w = Writer::default();
        let f = w.syn_stream(3, &[("streamType", "stdin")]);
        assert_eq!(&f[..4], &[0x80, 0x03, 0x00, 0x01], "control, version 3, SYN_STREAM");
        let len = u32::from_be_bytes([0, f[5], f[6], f[7]]) as usize;
        assert_eq!((f[4], len), (0, f.len() - 8));
        assert_eq!(&f[8..12], &3u32.to_be_bytes());
        assert_eq!(&f[12..18], &[0, 0, 0, 0, 0, 0], "no associated stream, priority 0, slot 0");
        let block = inflate_stored(&f[18..]);
        let mut want = 1u32.to_be_bytes().to_vec();
        want.extend_from_slice(&10u32.to_be_bytes());
        want.extend_from_slice(b"streamtype");
        want.extend_from_slice(&5u32.to_be_bytes());
        want.extend_from_slice(b"stdin");
        assert_eq!(block, want, "lowercase names, 32-bit lengths");
        assert!(f.ends_with(&[0, 0, 0, 0xff, 0xff]), "each block ends with a sync flush");
        // The zlib header opens the connection's stream only once.
        let second = w.syn_stream(5, &[("streamtype", "stdout")]);
        assert_eq!(second[18], 0x00, "the next block follows without a header");
    }

    #[tokio::test]
    async fn frames_round_trip_through_the_reader() {
        let mut wire = Vec::new();
        wire.extend(data(3, false, b"hello"));
        wire.extend(data(3, true, b""));
        wire.extend(ping(7));
        wire.extend(reset(5, CANCEL));
        wire.extend(goaway());
        // A SYN_REPLY as spdystream writes it: stream id and a header block we do not read.
        wire.extend(control(SYN_REPLY, 0, &[0, 0, 0, 1, 0x78, 0xf9, 1, 2, 3]));
        wire.extend(control(9, 0, &[0, 0, 0, 1, 0, 0, 0, 1]));
        let mut r = &wire[..];
        let mut frames = Vec::new();
        while let Some(f) = read_frame(&mut r).await.unwrap() {
            frames.push(f);
        }
        assert_eq!(
            frames,
            vec![
                Frame::Data { stream: 3, fin: false, data: Bytes::from_static(b"hello") },
                Frame::Data { stream: 3, fin: true, data: Bytes::new() },
                Frame::Ping(7),
                Frame::Reset { stream: 5 },
                Frame::GoAway,
                Frame::SynReply { stream: 1 },
                Frame::Other,
            ]
        );
        let mut cut = &data(1, false, b"abc")[..6];
        assert!(read_frame(&mut cut).await.is_err(), "a frame cut short is an error");
    }
}
