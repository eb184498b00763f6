//! The accept loop: plain TCP or TLS (rustls, client certificates optional), HTTP/1.1 via hyper,
//! one task per connection. Cancelling closes the listener and drops every live connection
//! (watches included) — that is how `stop()` simulates an API server outage.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use server::secure::ClientCerts;

use super::certs::identity_from_chain;
use super::handler::ConnInfo;

pub(crate) type Tls = (Arc<ServerConfig>, Arc<ClientCerts>);

/// A running accept loop.
pub(crate) struct Serving {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Serving {
    /// Stops accepting, drops all connections, and waits until the listener is closed.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }

    /// Like [`Self::stop`] without waiting (for `Drop`).
    pub fn abort(&self) {
        self.cancel.cancel();
    }
}

/// Binds `addr` with SO_REUSEADDR so a stopped server can take its port again at once.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

pub(crate) fn spawn(listener: TcpListener, router: Router, tls: Option<Tls>) -> Serving {
    let cancel = CancellationToken::new();
    let task = tokio::spawn(accept_loop(listener, router, tls, cancel.clone()));
    Serving { cancel, task }
}

async fn accept_loop(listener: TcpListener, router: Router, tls: Option<Tls>, cancel: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    connections.spawn(serve_conn(tcp, router.clone(), tls.clone(), cancel.clone()));
                }
                // Transient (e.g. too many open files): back off briefly.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

async fn serve_conn(tcp: TcpStream, router: Router, tls: Option<Tls>, cancel: CancellationToken) {
    let _ = tcp.set_nodelay(true);
    let Some((config, certs)) = tls else {
        return serve_io(tcp, router, ConnInfo::default(), cancel).await;
    };
    let handshake = TlsAcceptor::from(config).accept(tcp);
    let stream = tokio::select! {
        () = cancel.cancelled() => return,
        s = handshake => match s {
            Ok(s) => s,
            Err(_) => return,
        },
    };
    let info = match stream.get_ref().1.peer_certificates() {
        Some(chain) if !chain.is_empty() => match identity_from_chain(&certs, chain) {
            Ok(user) => ConnInfo { cert_user: Some(user), bad_cert: false },
            Err(_) => ConnInfo { cert_user: None, bad_cert: true },
        },
        _ => ConnInfo::default(),
    };
    serve_io(stream, router, info, cancel).await;
}

async fn serve_io<I>(io: I, router: Router, info: ConnInfo, cancel: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = Arc::new(info);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(info.clone());
        router.clone().oneshot(req.map(Body::new))
    });
    // Upgrades: the proxied exec/attach/portforward streams.
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service).with_upgrades();
    tokio::select! {
        _ = conn => {}
        () = cancel.cancelled() => {}
    }
}
