//! The state one test API server shares between its connections, its CSR signer and its
//! handle: the store, issued tokens, scripted review answers, the request log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReviewSpec, TokenReviewStatus};
use k8s_openapi::api::authorization::v1::SubjectAccessReviewSpec;

use super::auth::IssuedToken;
use super::certs::Ca;
use super::store::Store;

/// Decides `status.allowed` of a SubjectAccessReview.
pub type SubjectAccessReviewFn = dyn Fn(&SubjectAccessReviewSpec) -> bool + Send + Sync;
/// Answers a TokenReview; `None` falls back to the server's own authenticator.
pub type TokenReviewFn = dyn Fn(&TokenReviewSpec) -> Option<TokenReviewStatus> + Send + Sync;

/// Tunables of a [`super::TestApiServer`].
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Serve HTTPS with the server's CA (client certificates accepted, not required).
    pub tls: bool,
    /// How many change events watches can replay (upstream's watch cache is sized similarly).
    pub history_limit: usize,
    /// Period of BOOKMARK events on watches that allow them (upstream: about a minute).
    pub bookmark_interval: Duration,
    /// Issue service account tokens for at most this long, whatever was asked (as a server
    /// whose `--service-account-max-token-expiration` caps requests, but shorter than a real
    /// one allows), so tests can watch the kubelet refresh a token.
    pub max_token_lifetime: Option<Duration>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self { tls: false, history_limit: 10_000, bookmark_interval: Duration::from_secs(1), max_token_lifetime: None }
    }
}

/// One request as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
    /// The authenticated user, if any.
    pub user: Option<String>,
    pub status: u16,
}

#[derive(Default)]
pub(crate) struct Hooks {
    pub subject_access_review: Option<Arc<SubjectAccessReviewFn>>,
    pub token_review: Option<Arc<TokenReviewFn>>,
}

pub(crate) struct Shared {
    pub options: ServerOptions,
    pub store: Mutex<Store>,
    pub tokens: Mutex<HashMap<String, IssuedToken>>,
    pub hooks: Mutex<Hooks>,
    pub requests: Mutex<Vec<RequestRecord>>,
    pub admin_token: String,
    pub ca: Ca,
    /// The certificate and key (PEM) the server presents to kubelets (CN
    /// `kube-apiserver-kubelet-client`, group `system:masters`).
    pub kubelet_client: (String, String),
    /// `https://127.0.0.1:<port>` or `http://…`, fixed at first bind.
    pub url: String,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the server's data
/// stays usable for the test's assertions).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
