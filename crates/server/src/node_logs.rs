//! `/logs/` (upstream `ServeLogs`: Go's file server over `/var/log`): a directory is listed
//! as Go lists it, a file is streamed. A path with a `..` element is refused (400, "invalid URL
//! path"), and no symlink may lead out of the root: `sys::safe_join` resolves every component,
//! so `/var/log/containers/*.log` (links into `/var/log/pods`) are served and a link to `/etc`
//! is not (404, as for any path that does not resolve under the root).

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::secure::{AppState, text};

/// Go's `htmlReplacer`.
fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&#34;").replace('\'', "&#39;")
}

/// A listing link: the name percent-encoded as a URL path (Go's `url.URL{Path: name}`, whose
/// `encodePath` leaves only alphanumerics, `-._~` and `$&+,/:;=@` as they are).
fn href(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~$&+,/:;=@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    // A first segment with a colon would read as a scheme: Go prefixes "./".
    if out.split('/').next().is_some_and(|seg| seg.contains(':')) { format!("./{out}") } else { out }
}

fn listing(dir: &FsPath) -> std::io::Result<String> {
    // Sorted by name, the directory's `/` added after (Go sorts `dirs.name(i)`).
    let mut entries: Vec<(String, bool)> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.file_type().is_ok_and(|t| t.is_dir())))
        .collect();
    entries.sort();
    let names = entries.into_iter().map(|(n, dir)| if dir { format!("{n}/") } else { n });
    let mut out = String::from("<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n");
    for n in names {
        out.push_str(&format!("<a href=\"{}\">{}</a>\n", href(&n), html_escape(&n)));
    }
    out.push_str("</pre>\n");
    Ok(out)
}

/// Resolves the request path under `root`: `Err` is the status to answer.
fn resolve(root: &FsPath, rel: &str) -> Result<PathBuf, StatusCode> {
    if rel.split('/').any(|seg| seg == "..") || rel.contains('\0') || rel.contains('\\') {
        return Err(StatusCode::BAD_REQUEST);
    }
    sys::path::safe_join(root, FsPath::new(rel)).map_err(|e| {
        tracing::debug!(path = rel, "logs: {e}");
        StatusCode::NOT_FOUND
    })
}

fn status_text(code: StatusCode) -> Response {
    match code {
        StatusCode::BAD_REQUEST => text(code, "invalid URL path\n"),
        _ => text(code, "404 page not found\n"),
    }
}

pub(crate) async fn serve(State(s): State<Arc<AppState>>, req: Request) -> Response {
    let full = req.uri().path();
    let rel = full.strip_prefix("/logs").unwrap_or_default().trim_start_matches('/');
    let rel = match percent_decode(rel) {
        Some(r) => r,
        None => return text(StatusCode::BAD_REQUEST, "invalid URL path\n"),
    };
    let path = match resolve(&s.logs_dir, &rel) {
        Ok(p) => p,
        Err(code) => return status_text(code),
    };
    let md = match tokio::fs::metadata(&path).await {
        Ok(m) => m,
        Err(_) => return text(StatusCode::NOT_FOUND, "404 page not found\n"),
    };
    let trailing = full.ends_with('/');
    if md.is_dir() {
        if !trailing {
            let base = full.rsplit('/').next().unwrap_or_default();
            return (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, format!("{base}/"))]).into_response();
        }
        return match listing(&path) {
            Ok(html) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("Error reading directory: {e}\n")),
        };
    }
    if trailing {
        let base = full.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
        return (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, format!("../{base}"))]).into_response();
    }
    match tokio::fs::File::open(&path).await {
        Ok(mut f) => {
            let kind = content_type(&mut f).await;
            let body = Body::from_stream(tokio_util::io::ReaderStream::new(f));
            (StatusCode::OK, [(header::CONTENT_TYPE, kind), (header::CONTENT_LENGTH, md.len().to_string())], body)
                .into_response()
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => text(StatusCode::FORBIDDEN, "403 Forbidden\n"),
        Err(_) => text(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

/// Text for files whose first 512 bytes are UTF-8 without NULs (Go sniffs the same way for the
/// log files this serves), else bytes. Reads the head of the open file and rewinds it.
async fn content_type(f: &mut tokio::fs::File) -> String {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut head = vec![0u8; 512];
    let n = f.read(&mut head).await.unwrap_or(0);
    if f.seek(std::io::SeekFrom::Start(0)).await.is_err() {
        return "application/octet-stream".to_string();
    }
    head.truncate(n);
    let text = match std::str::from_utf8(&head) {
        Ok(s) => !s.contains('\0'),
        // A multi-byte character cut at the 512th byte is still text.
        Err(e) => e.error_len().is_none() && !head[..e.valid_up_to()].contains(&0),
    };
    if text { "text/plain; charset=utf-8" } else { "application/octet-stream" }.to_string()
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_escape_names_as_go_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a<b>.log"), "x").expect("write");
        std::fs::write(dir.path().join("with space"), "x").expect("write");
        std::fs::write(dir.path().join("a.log"), "x").expect("write");
        std::fs::write(dir.path().join("x(1)!.log"), "x").expect("write");
        std::fs::create_dir(dir.path().join("a")).expect("mkdir");
        std::fs::create_dir(dir.path().join("pods")).expect("mkdir");
        let html = listing(dir.path()).expect("list");
        // Sorted by name before the directory's slash: "a/" comes before "a.log".
        assert_eq!(
            html,
            "<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n\
             <a href=\"a/\">a/</a>\n<a href=\"a.log\">a.log</a>\n\
             <a href=\"a%3Cb%3E.log\">a&lt;b&gt;.log</a>\n<a href=\"pods/\">pods/</a>\n\
             <a href=\"with%20space\">with space</a>\n<a href=\"x%281%29%21.log\">x(1)!.log</a>\n</pre>\n"
        );
        assert_eq!(href("a:b"), "./a:b");
    }

    #[test]
    fn paths_never_leave_the_root() {
        let root = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("secret"), "s").expect("write");
        std::fs::create_dir(root.path().join("pods")).expect("mkdir");
        std::fs::write(root.path().join("pods/0.log"), "l").expect("write");
        std::os::unix::fs::symlink(root.path().join("pods/0.log"), root.path().join("inside")).expect("link");
        std::os::unix::fs::symlink(outside.path(), root.path().join("escape")).expect("link");
        assert!(resolve(root.path(), "inside").is_ok(), "a link within the root is followed");
        assert!(resolve(root.path(), "pods/0.log").is_ok());
        for bad in ["../etc/passwd", "pods/../../x"] {
            assert_eq!(resolve(root.path(), bad).map(|_| ()), Err(StatusCode::BAD_REQUEST));
        }
        assert_eq!(
            resolve(root.path(), "escape/secret").map(|_| ()),
            Err(StatusCode::NOT_FOUND),
            "a link out of the root is not followed"
        );
        assert_eq!(percent_decode("%2e%2E/x").as_deref(), Some("../x"));
    }
}
