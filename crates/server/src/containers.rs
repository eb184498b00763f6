//! `/containerLogs/{namespace}/{pod}/{container}` and `/runningpods/` (upstream
//! `getContainerLogs`, `getRunningPods`): the query is decoded and validated as the v1
//! `PodLogOptions` upstream locks these to, then the host streams the log.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio_stream::StreamExt;

use crate::secure::{AppState, text};
use crate::{HostError, LogRequest};

impl IntoResponse for HostError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = text(status, self.message);
        // Upstream's streaming WriteError: a runtime out of streaming slots answers 429 with
        // its request cache's TTL (one minute) to wait.
        if status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("60"));
        }
        resp
    }
}

/// Go's query-to-bool conversion for API options: absent, empty, `0` and `false` are false.
fn query_bool(v: Option<&str>) -> bool {
    !matches!(v, None | Some("") | Some("0")) && !v.is_some_and(|v| v.eq_ignore_ascii_case("false"))
}

/// The v1 `PodLogOptions` in `query` (the first value of each parameter counts, as for Go's
/// decoder), with the legacy `tail` (`all` = unset). `Err(400 or 422)` as upstream words it.
pub(crate) fn log_options(query: &str, now: chrono::DateTime<chrono::Utc>) -> Result<LogRequest, HostError> {
    let decode_error = || HostError::bad_request(r#"{"message": "Unable to decode query."}"#);
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|_| decode_error())?;
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let int = |k: &str| -> Result<Option<i64>, HostError> {
        get(k).map(|v| v.parse::<i64>().map_err(|_| decode_error())).transpose()
    };
    let tail = match get("tail") {
        Some("all") => None,
        Some(t) if !t.is_empty() => Some(t.parse::<i64>().map_err(|_| decode_error())?),
        _ => int("tailLines")?,
    };
    let (since_seconds, limit_bytes) = (int("sinceSeconds")?, int("limitBytes")?);
    let since_time = match get("sinceTime").filter(|t| !t.is_empty() && *t != "null") {
        Some(t) => {
            Some(chrono::DateTime::parse_from_rfc3339(t).map_err(|_| decode_error())?.with_timezone(&chrono::Utc))
        }
        None => None,
    };
    // upstream ValidatePodLogOptions
    let invalid = tail.is_some_and(|t| t < 0)
        || limit_bytes.is_some_and(|b| b < 1)
        || since_seconds.is_some_and(|s| s < 1)
        || (since_seconds.is_some() && since_time.is_some());
    if invalid {
        return Err(HostError { status: 422, message: r#"{"message": "Invalid request."}"#.into() });
    }
    let since = since_time.or_else(|| since_seconds.map(|s| now - chrono::Duration::seconds(s)));
    Ok(LogRequest {
        previous: query_bool(get("previous")),
        follow: query_bool(get("follow")),
        timestamps: query_bool(get("timestamps")),
        tail_lines: tail.map(|t| t as u64),
        limit_bytes: limit_bytes.map(|b| b as u64),
        since,
        ..Default::default()
    })
}

pub(crate) async fn container_logs(
    State(s): State<std::sync::Arc<AppState>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let mut req = match log_options(query.as_deref().unwrap_or_default(), chrono::Utc::now()) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    (req.namespace, req.pod, req.container) = (namespace, pod, container);
    match s.host.container_logs(req).await {
        Ok(rx) => {
            let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, Infallible>));
            (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
        }
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn running_pods(State(s): State<std::sync::Arc<AppState>>) -> Response {
    match s.host.running_pods().await {
        Ok(list) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], list.to_string()).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exhausted_runtime_says_when_to_retry() {
        let r =
            HostError { status: 429, message: "rpc error: code = ResourceExhausted desc = x".into() }.into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers().get(axum::http::header::RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"60"[..]));
        let r = HostError::internal("x").into_response();
        assert!(r.headers().get(axum::http::header::RETRY_AFTER).is_none());
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        "2024-05-01T10:00:00Z".parse().expect("time")
    }

    #[test]
    fn log_options_decode_as_upstream() {
        let r = log_options("follow=true&previous=1&timestamps=TRUE&tailLines=10&limitBytes=5", now()).expect("ok");
        assert!(r.follow && r.previous && r.timestamps);
        assert_eq!((r.tail_lines, r.limit_bytes, r.since), (Some(10), Some(5), None));
        let r = log_options("follow=false&previous=0&tail=all&tailLines=3", now()).expect("ok");
        assert!(!r.follow && !r.previous);
        assert_eq!(r.tail_lines, None, "tail=all means every line");
        assert_eq!(log_options("tail=7", now()).expect("ok").tail_lines, Some(7));
        let r = log_options("sinceSeconds=60", now()).expect("ok");
        assert_eq!(r.since, Some("2024-05-01T09:59:00Z".parse().expect("t")));
        let r = log_options("sinceTime=2024-05-01T08%3A00%3A00%2B02%3A00", now()).expect("ok");
        assert_eq!(r.since, Some("2024-05-01T06:00:00Z".parse().expect("t")));
    }

    #[test]
    fn bad_log_options_get_upstream_codes() {
        for q in ["tailLines=x", "limitBytes=1.5", "sinceTime=yesterday"] {
            assert_eq!(log_options(q, now()).map_err(|e| e.status), Err(400), "{q}");
        }
        for q in ["tailLines=-1", "limitBytes=0", "sinceSeconds=0", "sinceSeconds=5&sinceTime=2024-05-01T08:00:00Z"] {
            let e = log_options(q, now()).expect_err(q);
            assert_eq!((e.status, e.message.as_str()), (422, r#"{"message": "Invalid request."}"#), "{q}");
        }
    }
}
