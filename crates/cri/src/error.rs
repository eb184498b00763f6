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
    /// Worth retrying later without changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unreachable { .. } | Error::Timeout { .. })
            || matches!(self, Error::Rpc { code, .. } if matches!(code, tonic::Code::Unavailable | tonic::Code::DeadlineExceeded))
    }
}
