//! The in-memory test API server as a process, to try cluster mode by hand on a machine without a
//! Kubernetes control plane: `scripts/run-node --cluster` starts it, writes its admin kubeconfig,
//! and runs rkubelet against it; kubectl works with the same kubeconfig. Test-only: state lives in
//! memory and dies with the process; no controllers run (no scheduler: pods need `spec.nodeName`).
//!
//! Usage: test-apiserver --kubeconfig-out <path> [--tls]

use std::path::PathBuf;

use anyhow::Context;
use testkit::apiserver::{ServerOptions, TestApiServer};
use tokio::signal::unix::{SignalKind, signal};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(arg("--kubeconfig-out").context("usage: test-apiserver --kubeconfig-out <path> [--tls]")?);
    let tls = std::env::args().any(|a| a == "--tls");
    let server = TestApiServer::start_with(ServerOptions { tls, ..Default::default() }).await?;
    let tmp = out.with_extension("tmp");
    std::fs::copy(server.admin_kubeconfig(), &tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &out).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("test API server on {} (admin kubeconfig: {}); Ctrl-C stops it", server.url(), out.display());
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let _ = std::fs::remove_file(&out);
    Ok(())
}
