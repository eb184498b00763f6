//! A `grpc.health.v1.Health` server for the kubelet's gRPC probe tests.
//!
//! `grpc-health-server [PORT]` (default 9090) answers `Check`: the empty service name and the
//! services named in `$SERVING` (comma-separated) are SERVING, every other service NOT_SERVING.
//! `Watch` is not implemented (the kubelet does not use it).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

#[derive(Clone)]
struct Health {
    serving: Vec<String>,
}

struct Check(Vec<String>);

impl tonic::server::UnaryService<HealthCheckRequest> for Check {
    type Response = HealthCheckResponse;
    type Future = std::future::Ready<Result<tonic::Response<HealthCheckResponse>, tonic::Status>>;
    fn call(&mut self, req: tonic::Request<HealthCheckRequest>) -> Self::Future {
        let service = &req.get_ref().service;
        let status = if service.is_empty() || self.0.iter().any(|s| s == service) { SERVING } else { NOT_SERVING };
        std::future::ready(Ok(tonic::Response::new(HealthCheckResponse { status })))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for Health {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let serving = self.serving.clone();
        Box::pin(async move {
            if req.uri().path() != "/grpc.health.v1.Health/Check" {
                return Ok(tonic::Status::unimplemented("only Check").into_http());
            }
            let codec = tonic_prost::ProstCodec::<HealthCheckResponse, HealthCheckRequest>::default();
            Ok(tonic::server::Grpc::new(codec).unary(Check(serving), req).await)
        })
    }
}

impl tonic::server::NamedService for Health {
    const NAME: &'static str = "grpc.health.v1.Health";
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(9090);
    let serving = std::env::var("SERVING").unwrap_or_default().split(',').map(str::to_string).collect();
    let listener = match tokio::net::TcpListener::bind(("0.0.0.0", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("listen on {port}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("grpc health server on :{port}");
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    if let Err(e) =
        tonic::transport::Server::builder().add_service(Health { serving }).serve_with_incoming(incoming).await
    {
        eprintln!("serve: {e}");
        std::process::exit(1);
    }
}
