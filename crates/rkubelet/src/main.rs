//! rkubelet: a Kubernetes node agent. Parses flags and config, then runs the agent until
//! SIGTERM/SIGINT; pods keep running when it exits.

mod app;
mod cadvisor;
mod cluster;
mod flags;
mod host;
mod kubelet_api;

use std::process::ExitCode;

fn main() -> ExitCode {
    let loaded = match flags::load(std::env::args_os()) {
        Ok(l) => l,
        Err(e) => {
            // clap's own help/version output and usage errors.
            if let Some(clap_err) = e.downcast_ref::<clap::Error>() {
                let _ = clap_err.print();
                return if clap_err.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
            }
            eprintln!("rkubelet: {e:#}");
            return ExitCode::from(1);
        }
    };
    app::init_logging(loaded.config.verbosity);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rkubelet: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(app::run(loaded.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("rkubelet: {e:#}");
            ExitCode::from(1)
        }
    }
}
