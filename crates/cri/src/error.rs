//! Errors of CRI calls, typed by what a caller decides on: retry (unreachable, timeout),
//! treat as gone (not found), or report (rpc).

use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runtime socket cannot be connected to.
    #[error("container runtime not reachable at {endpoint}: {message}")]
    Unreachable { endpoint: String, message: String },
    /// The call did not answer within the request timeout.
    #[error("CRI {op} timed out after {after:?}")]
    Timeout { op: &'static str, after: Duration },
    /// The runtime does not know the object.
    #[error("CRI {op}: {what} not found: {message}")]
    NotFound { op: &'static str, what: String, message: String },
    /// Any other failure the runtime reported.
    #[error("CRI {op} for {what} failed: {message}")]
    Rpc { op: &'static str, what: String, code: tonic::Code, message: String },
}

impl Error {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
    /// What the runtime itself said — the gRPC status message, which upstream's kubelet shows in
    /// waiting messages and `Failed` events — or, for a failure that never reached the runtime,
    /// the whole error.
    pub fn runtime_message(&self) -> String {
        match self {
            Error::Rpc { message, .. } | Error::NotFound { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
    /// The error as Go's gRPC status prints it (`rpc error: code = NotFound desc = …`), the text
    /// upstream's kubelet gives HTTP clients; a failure that never reached the runtime as it is.
    pub fn grpc_text(&self) -> String {
        let code = match self {
            Error::NotFound { .. } => tonic::Code::NotFound,
            Error::Rpc { code, .. } => *code,
            other => return other.to_string(),
        };
        let name = match code {
            tonic::Code::Ok => "OK".to_owned(),
            tonic::Code::Cancelled => "Canceled".to_owned(),
            other => format!("{other:?}"),
        };
        format!("rpc error: code = {name} desc = {}", self.runtime_message())
    }
    /// The runtime refused for lack of a resource (gRPC ResourceExhausted).
    pub fn is_resource_exhausted(&self) -> bool {
        matches!(self, Error::Rpc { code: tonic::Code::ResourceExhausted, .. })
    }
    /// Worth retrying later without changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unreachable { .. } | Error::Timeout { .. })
            || matches!(self, Error::Rpc { code, .. } if matches!(code, tonic::Code::Unavailable | tonic::Code::DeadlineExceeded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_message_is_the_runtimes_own_words() {
        let rpc = Error::Rpc {
            op: "StartContainer",
            what: "c1".into(),
            code: tonic::Code::Unknown,
            message: "exec failed".into(),
        };
        assert_eq!(rpc.runtime_message(), "exec failed");
        assert_eq!(rpc.grpc_text(), "rpc error: code = Unknown desc = exec failed");
        let gone = Error::NotFound { op: "Exec", what: "c1".into(), message: "no such container".into() };
        assert_eq!(gone.grpc_text(), "rpc error: code = NotFound desc = no such container");
        assert_eq!(rpc.to_string(), "CRI StartContainer for c1 failed: exec failed");
        let down = Error::Unreachable { endpoint: "/run/x.sock".into(), message: "connection refused".into() };
        assert_eq!(down.runtime_message(), down.to_string(), "no runtime answer: the whole error");
    }
}
