//! The gRPC prober (upstream `pkg/probe/grpc`): one `grpc.health.v1.Health/Check` call over
//! plain HTTP/2 (no TLS, as upstream) with the probe's `service`, within the probe's timeout.
//! SERVING is success; anything else, or a failed call, a failure with upstream's message.

use std::time::Duration;

use super::Outcome;
use crate::config::format_duration;

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// `grpc.health.v1.HealthCheckResponse.ServingStatus`.
pub const SERVING: i32 = 1;

/// The name of a serving status as the protobuf enum spells it.
pub fn status_name(status: i32) -> String {
    match status {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        n => n.to_string(),
    }
}

/// The method path of the health check.
pub const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

pub(crate) async fn probe(host: &str, service: &str, port: u16, timeout: Duration) -> (Outcome, String) {
    let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let within = format_duration(timeout);
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e,
        Err(e) => return (Outcome::Failure, format!("error: failed to connect service at {addr:?}: {e}")),
    };
    let endpoint = endpoint.connect_timeout(timeout);
    let endpoint = endpoint.clone().user_agent(crate::httpget::user_agent("probe")).unwrap_or(endpoint);
    let started = tokio::time::Instant::now();
    // Upstream dials with WithBlock: a failed connect is retried (gRPC's backoff: 1 s, ×1.6)
    // until the probe's timeout, which then reports it.
    let connect = async {
        let mut backoff = Duration::from_secs(1);
        loop {
            match endpoint.connect().await {
                Ok(c) => return c,
                Err(e) => {
                    tracing::debug!(%addr, "gRPC probe connect failed, retrying: {}", error_chain(&e));
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.mul_f64(1.6).min(Duration::from_secs(120));
                }
            }
        }
    };
    let channel = match tokio::time::timeout(timeout, connect).await {
        Ok(c) => c,
        Err(_) => {
            return (
                Outcome::Failure,
                format!("timeout: failed to connect service {addr:?} within {within}: context deadline exceeded"),
            );
        }
    };
    let left = timeout.saturating_sub(started.elapsed());
    let mut grpc = tonic::client::Grpc::new(channel);
    let call = async {
        grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let request = tonic::Request::new(HealthCheckRequest { service: service.to_string() });
        let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
        grpc.unary(request, http::uri::PathAndQuery::from_static(CHECK_PATH), codec).await
    };
    match tokio::time::timeout(left, call).await {
        Err(_) => (Outcome::Failure, format!("timeout: health rpc did not complete within {within}")),
        Ok(Err(status)) => match status.code() {
            tonic::Code::Unimplemented => (
                Outcome::Failure,
                format!(
                    "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                    status.message()
                ),
            ),
            tonic::Code::DeadlineExceeded => {
                (Outcome::Failure, format!("timeout: health rpc did not complete within {within}"))
            }
            code => (
                Outcome::Failure,
                format!("error: health rpc probe failed: rpc error: code = {code:?} desc = {}", status.message()),
            ),
        },
        Ok(Ok(resp)) if resp.get_ref().status == SERVING => (Outcome::Success, "service healthy".into()),
        Ok(Ok(resp)) => {
            (Outcome::Failure, format!("service unhealthy (responded with {:?})", status_name(resp.get_ref().status)))
        }
    }
}

/// An error with its causes, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_closed_port_is_retried_until_the_timeout() {
        let port = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let started = tokio::time::Instant::now();
        let (outcome, output) = probe("127.0.0.1", "", port, Duration::from_secs(3)).await;
        assert_eq!(outcome, Outcome::Failure);
        assert_eq!(
            output,
            format!("timeout: failed to connect service \"127.0.0.1:{port}\" within 3s: context deadline exceeded")
        );
        assert_eq!(started.elapsed(), Duration::from_secs(3), "upstream's blocking dial waits out the timeout");
    }
}
