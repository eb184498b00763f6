//! The API client: a kube-rs client built from `--kubeconfig` with the kubelet's user agent and a
//! client-side token bucket (`kubeAPIQPS`/`kubeAPIBurst`), as client-go's rate limiter.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::{Layer, Service};

/// The user agent of every request: `rkubelet/<version>`.
pub fn user_agent() -> String {
    format!("rkubelet/{}", env!("CARGO_PKG_VERSION"))
}

/// Options of the client beyond the kubeconfig.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Sustained requests per second; 0 disables the limiter (upstream: `kubeAPIQPS`, default 50).
    pub qps: f64,
    /// Bucket size (upstream: `kubeAPIBurst`, default 100).
    pub burst: u32,
    /// Told of every request's answer (client-go's `rest_client_requests_total`).
    pub observer: Option<Arc<dyn RequestObserver>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self { qps: 50.0, burst: 100, observer: None }
    }
}

/// Told of each API request as its answer arrives: the method, the server's `host:port`, and
/// the status code (`<error>` when no answer came), as client-go's request metrics see them.
pub trait RequestObserver: std::fmt::Debug + Send + Sync + 'static {
    fn observe(&self, method: &str, host: &str, code: &str);
}

/// `host:port` of the current context's server in a kubeconfig (empty when unreadable).
fn server_host(path: &Path) -> String {
    let Ok(kc) = Kubeconfig::read_from(path) else { return String::new() };
    let context = kc.current_context.as_deref().and_then(|c| kc.contexts.iter().find(|n| n.name == c));
    let cluster_name = context.and_then(|c| c.context.as_ref()).map(|c| c.cluster.clone());
    let cluster = kc.clusters.iter().find(|c| Some(&c.name) == cluster_name.as_ref()).or(kc.clusters.first());
    let server = cluster.and_then(|c| c.cluster.as_ref()).and_then(|c| c.server.clone()).unwrap_or_default();
    server.parse::<http::Uri>().ok().and_then(|u| u.authority().map(|a| a.to_string())).unwrap_or_default()
}

/// Tower layer reporting each request's answer to a [`RequestObserver`].
#[derive(Debug, Clone)]
pub struct ObserveLayer {
    observer: Option<Arc<dyn RequestObserver>>,
    host: Arc<str>,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner, layer: self.clone() }
    }
}

/// The service made by [`ObserveLayer`].
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    layer: ObserveLayer,
}

impl<S, B, R> Service<http::Request<B>> for Observe<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.method().to_string();
        let host = req.uri().authority().map_or_else(|| self.layer.host.to_string(), |a| a.to_string());
        let observer = self.layer.observer.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            if let Some(o) = observer {
                let code = match &result {
                    Ok(resp) => resp.status().as_u16().to_string(),
                    Err(_) => "<error>".to_owned(),
                };
                o.observe(&method, &host, &code);
            }
            result
        })
    }
}

/// Errors building the client, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading kubeconfig {path}: {source}")]
    Read { path: String, source: kube::config::KubeconfigError },
    #[error("kubeconfig {path}: {source}")]
    Config { path: String, source: kube::config::KubeconfigError },
    #[error("building the API client from {path}: {source}")]
    Build { path: String, source: kube::Error },
}

/// Builds a client from a kubeconfig file.
pub async fn from_kubeconfig(path: &Path, opts: ClientOptions) -> Result<kube::Client, ClientError> {
    let config = config(path).await?;
    let builder = ClientBuilder::try_from(config).map_err(|source| build_error(path, source))?;
    let observe = ObserveLayer { observer: opts.observer.clone(), host: server_host(path).into() };
    Ok(builder.with_layer(&RateLimitLayer::new(&opts)).with_layer(&observe).build())
}

/// A client for a kubeconfig without the rate limit.
async fn unlimited(path: &Path) -> Result<kube::Client, ClientError> {
    let config = config(path).await?;
    Ok(ClientBuilder::try_from(config).map_err(|source| build_error(path, source))?.build())
}

/// A client for the server of a kubeconfig with none of its credentials (upstream's
/// `AnonymousClientConfig`: server, CA and TLS settings only), without the rate limit.
pub async fn anonymous(path: &Path) -> Result<kube::Client, ClientError> {
    let mut config = config(path).await?;
    config.auth_info = kube::config::AuthInfo::default();
    Ok(ClientBuilder::try_from(config).map_err(|source| build_error(path, source))?.build())
}

fn build_error(path: &Path, source: kube::Error) -> ClientError {
    ClientError::Build { path: path.display().to_string(), source }
}

/// The kube-rs configuration for a kubeconfig, with rkubelet's user agent and connect timeout.
async fn config(path: &Path) -> Result<kube::Config, ClientError> {
    let p = path.display().to_string();
    let kc = Kubeconfig::read_from(path).map_err(|source| ClientError::Read { path: p.clone(), source })?;
    let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|source| ClientError::Config { path: p.clone(), source })?;
    if let Ok(v) = http::HeaderValue::from_str(&user_agent()) {
        config.headers.push((http::header::USER_AGENT, v));
    }
    config.connect_timeout = Some(Duration::from_secs(10));
    Ok(config)
}

/// A client that follows credential changes: every time `changes` fires (a rotated client
/// certificate), the kubeconfig at `path` is read again and new requests go through a client
/// built from it, so they open connections with the new credentials. Responses still streaming
/// from the old client — watches above all — are cut with an error, so their owners reconnect
/// with the new identity (upstream closes every connection on rotation). A kubeconfig that cannot
/// be read after a change keeps the previous client, with an error logged. The rate limit is shared
/// across rebuilds. Must be called inside a Tokio runtime; follows changes until the sender
/// of `changes` is dropped.
pub async fn reloading_from_kubeconfig<T: Send + Sync + 'static>(
    path: &Path,
    opts: ClientOptions,
    changes: tokio::sync::watch::Receiver<T>,
) -> Result<kube::Client, ClientError> {
    let first = unlimited(path).await?;
    Ok(reloading(first, path, opts, changes))
}

/// As [`reloading_from_kubeconfig`], starting with `first` (built by [`anonymous`], say, while
/// the kubeconfig's certificate does not exist yet) until the first change.
pub fn reloading<T: Send + Sync + 'static>(
    first: kube::Client,
    path: &Path,
    opts: ClientOptions,
    mut changes: tokio::sync::watch::Receiver<T>,
) -> kube::Client {
    let default_ns = first.default_namespace().to_owned();
    let current = Arc::new(std::sync::RwLock::new((first, CancellationToken::new())));
    let service = Reloading { current: current.clone() };
    let observe = ObserveLayer { observer: opts.observer.clone(), host: server_host(path).into() };
    let path = path.to_owned();
    changes.mark_unchanged();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            match unlimited(&path).await {
                Ok(client) => {
                    let (_, old) = std::mem::replace(
                        &mut *current.write().unwrap_or_else(std::sync::PoisonError::into_inner),
                        (client, CancellationToken::new()),
                    );
                    old.cancel();
                    tracing::info!(kubeconfig = %path.display(), "new credentials: API requests use a new client");
                }
                Err(e) => {
                    tracing::error!("credentials changed but the new client cannot be built, keeping the old: {e}")
                }
            }
        }
    });
    ClientBuilder::new(service, default_ns).with_layer(&RateLimitLayer::new(&opts)).with_layer(&observe).build()
}

/// Sends each request through the client currently in `current`; its token is cancelled when
/// that client is replaced.
#[derive(Clone)]
struct Reloading {
    current: Arc<std::sync::RwLock<(kube::Client, CancellationToken)>>,
}

impl Service<http::Request<kube::client::Body>> for Reloading {
    type Response = http::Response<CutOnRotation>;
    type Error = kube::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, kube::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), kube::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<kube::client::Body>) -> Self::Future {
        let (client, rotated) = self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        Box::pin(async move {
            let response = client.send(req).await?;
            Ok(response.map(|body| CutOnRotation { body, rotated: Box::pin(rotated.cancelled_owned()) }))
        })
    }
}

/// A response body that ends with an error once the credentials it was requested with are
/// replaced.
struct CutOnRotation {
    body: kube::client::Body,
    rotated: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
}

/// The error a response cut by a credential change ends with.
#[derive(Debug, thiserror::Error)]
#[error("connection closed: the client credentials were rotated")]
struct CredentialsRotated;

impl http_body::Body for CutOnRotation {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        // What has arrived is delivered; a body waiting for more is cut once rotated.
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending if self.rotated.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Some(Err(Box::new(CredentialsRotated))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A token bucket (client-go's `flowcontrol.NewTokenBucketRateLimiter`): `burst` tokens, refilled
/// at `qps` per second; `qps <= 0` never limits. Shared by the client limiter and the event writer.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    state: Arc<std::sync::Mutex<(f64, Instant)>>,
}

impl TokenBucket {
    pub fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self { qps, burst, state: Arc::new(std::sync::Mutex::new((burst, Instant::now()))) }
    }

    /// Takes a token if one is available; otherwise returns how long until one is.
    pub fn try_take(&self) -> Result<(), Duration> {
        if self.qps <= 0.0 {
            return Ok(());
        }
        let Ok(mut st) = self.state.lock() else { return Ok(()) };
        let now = Instant::now();
        let refill = now.duration_since(st.1).as_secs_f64() * self.qps;
        st.0 = (st.0 + refill).min(self.burst);
        st.1 = now;
        if st.0 >= 1.0 {
            st.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - st.0) / self.qps))
        }
    }
}

/// Tower layer applying the QPS/burst limit before each request is sent.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    bucket: TokenBucket,
}

impl RateLimitLayer {
    pub fn new(opts: &ClientOptions) -> Self {
        Self { bucket: TokenBucket::new(opts.qps, opts.burst) }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit { inner, limiter: self.clone(), sleep: None, permitted: false }
    }
}

/// The service made by [`RateLimitLayer`].
pub struct RateLimit<S> {
    inner: S,
    limiter: RateLimitLayer,
    sleep: Option<Pin<Box<Sleep>>>,
    permitted: bool,
}

impl<S, R> Service<R> for RateLimit<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        while !self.permitted {
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            match self.limiter.bucket.try_take() {
                Ok(()) => self.permitted = true,
                Err(wait) => self.sleep = Some(Box::pin(tokio::time::sleep(wait))),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        self.permitted = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default)]
    struct Seen(std::sync::Mutex<Vec<(String, String, String)>>);

    impl RequestObserver for Seen {
        fn observe(&self, method: &str, host: &str, code: &str) {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((
                method.into(),
                host.into(),
                code.into(),
            ));
        }
    }

    #[tokio::test]
    async fn every_answer_is_observed_with_method_host_and_code() {
        use tower::ServiceExt;
        let seen = Arc::new(Seen::default());
        let layer = ObserveLayer { observer: Some(seen.clone()), host: "10.0.0.1:6443".into() };
        let svc = layer.layer(tower::service_fn(|req: http::Request<()>| async move {
            if req.uri().path() == "/down" {
                return Err("connection refused");
            }
            Ok(http::Response::builder().status(404).body(()).unwrap_or_default())
        }));
        let get = http::Request::get("/api/v1/nodes/n1").body(()).unwrap_or_default();
        let _ = svc.clone().oneshot(get).await;
        let post = http::Request::post("/down").body(()).unwrap_or_default();
        let _ = svc.oneshot(post).await;
        let seen = seen.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        assert_eq!(
            seen,
            [
                ("GET".to_owned(), "10.0.0.1:6443".to_owned(), "404".to_owned()),
                ("POST".to_owned(), "10.0.0.1:6443".to_owned(), "<error>".to_owned())
            ]
        );
    }

    #[test]
    fn the_server_host_comes_from_the_current_context() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("kc");
        let kc = "apiVersion: v1\nkind: Config\ncurrent-context: b\nclusters:\n- name: a\n  cluster: {server: 'https://a:1'}\n- name: bc\n  cluster: {server: 'https://10.1.2.3:6443'}\ncontexts:\n- name: b\n  context: {cluster: bc, user: u}\nusers:\n- name: u\n  user: {}\n";
        std::fs::write(&path, kc).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(server_host(&path), "10.1.2.3:6443");
        assert_eq!(server_host(&dir.path().join("missing")), "");
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_burst_then_qps() {
        let l = TokenBucket::new(2.0, 3);
        for _ in 0..3 {
            assert!(l.try_take().is_ok());
        }
        let wait = l.try_take().expect_err("bucket is empty after the burst");
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(l.try_take().is_ok());
        assert!(l.try_take().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn zero_qps_disables_the_limiter() {
        let l = TokenBucket::new(0.0, 1);
        for _ in 0..1000 {
            assert!(l.try_take().is_ok());
        }
    }
}
