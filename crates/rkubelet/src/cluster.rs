//! Wiring for cluster mode (`--kubeconfig`): the API client, node registration and status, the
//! lease, the API pod source, the status syncer, mirror pods and events. Every loop runs on its
//! own task, so an unreachable API server slows none of the pod work.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use api::client::ClientOptions;
use api::events::EventSink;
use api::lease::LeaseController;
use api::mirror::KubeMirrorClient;
use api::node::{NodeHealthSource, NodeStatusLoop, Registered};
use api::node_status::{NodeHealth, NodeSettings, default_labels};
use api::pods::{ApiPods, PodSource};
use api::status::KubePodWriter;
use async_trait::async_trait;
use core_kubelet::config::KubeletConfiguration;
use core_kubelet::kubelet::AdmissionContext;
use core_kubelet::mirror::MirrorSync;
use core_kubelet::pleg::PlegHealth;
use core_kubelet::source::{API_SOURCE, SourceSnapshot};
use core_kubelet::status_manager::StatusManager;
use core_kubelet::status_sync::StatusSyncer;
use cri::{ImageService, RuntimeService};
use k8s_openapi::api::core::v1::{ContainerImage, Pod};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The running cluster side, as the rest of the wiring needs it.
pub struct Cluster {
    pub client: kube::Client,
    pub events: EventSink,
    pub node: Registered,
    pub pods: ApiPods,
    pub settings: NodeSettings,
}

/// The node's health for its Ready condition and nodeInfo, read at each status update.
struct Health {
    cri: Arc<dyn RuntimeService>,
    images: Arc<dyn ImageService>,
    pleg: PlegHealth,
    root_dir: PathBuf,
    pressure: core_kubelet::eviction::Pressure,
}

#[async_trait]
impl NodeHealthSource for Health {
    async fn health(&self) -> NodeHealth {
        let mut h = NodeHealth {
            pressure: self.pressure.conditions().into_iter().map(str::to_owned).collect(),
            ..Default::default()
        };
        match self.cri.version().await {
            Ok(v) => h.runtime_version = format!("{}://{}", v.runtime_name, v.runtime_version),
            Err(_) => h.not_ready.push("container runtime is down".into()),
        }
        if h.not_ready.is_empty() {
            match self.cri.status().await {
                Ok(st) => {
                    for c in st.conditions {
                        if !c.status && (c.r#type == "RuntimeReady" || c.r#type == "NetworkReady") {
                            let what = if c.r#type == "NetworkReady" {
                                "container runtime network not ready"
                            } else {
                                "container runtime not ready"
                            };
                            h.not_ready
                                .push(format!("{what}: {}=false reason:{} message:{}", c.r#type, c.reason, c.message));
                        }
                    }
                }
                Err(_) => h.not_ready.push("container runtime status check may not have completed yet".into()),
            }
        }
        if let Err(e) = self.pleg.check() {
            h.not_ready.push(format!("PLEG is not healthy: {e}"));
        }
        if let Ok(images) = self.images.list_images(None).await {
            h.images = images
                .into_iter()
                .map(|i| ContainerImage {
                    names: Some(i.repo_digests.into_iter().chain(i.repo_tags).collect()),
                    size_bytes: i64::try_from(i.size).ok(),
                })
                .collect();
        }
        let root = self.root_dir.clone();
        h.ephemeral_storage =
            tokio::task::spawn_blocking(move || sys::node_info::filesystem_capacity(&root).ok()).await.ok().flatten();
        h
    }
}

/// The node's settings from the configuration.
pub fn node_settings(cfg: &KubeletConfiguration, node: &str, node_ips: &[String]) -> NodeSettings {
    NodeSettings {
        name: node.to_string(),
        hostname: node.to_string(),
        labels: cfg.node_labels.clone(),
        taints: cfg.register_with_taints.clone(),
        node_ips: node_ips.to_vec(),
        kubelet_port: i32::from(cfg.port),
        max_pods: cfg.max_pods,
        provider_id: Some(cfg.provider_id.clone()).filter(|p| !p.is_empty()),
        controller_attach_detach: cfg.enable_controller_attach_detach,
        max_images: usize::try_from(cfg.node_status_max_images).unwrap_or(usize::MAX),
        external_cloud_provider: cfg.cloud_provider == "external",
        node_ips_given: !crate::app::given_node_ips(cfg).is_empty(),
        // Set by the caller from the container manager's start.
        reservation: Default::default(),
        startup_events: Vec::new(),
    }
}

/// Connects and starts the node status loop, the lease and the event writer.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    cfg: &KubeletConfiguration,
    kubeconfig: &std::path::Path,
    settings: NodeSettings,
    cri: Arc<dyn RuntimeService>,
    images: Arc<dyn ImageService>,
    pleg: PlegHealth,
    pressure: core_kubelet::eviction::Pressure,
    metrics: Arc<core_kubelet::metrics::KubeletMetrics>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Cluster> {
    let opts = ClientOptions {
        // Upstream: 0 means client-go's defaults (5 QPS, burst 10), not unlimited.
        qps: f64::from(if cfg.kube_api_qps <= 0 { 5 } else { cfg.kube_api_qps }),
        burst: u32::try_from(cfg.kube_api_burst).ok().filter(|b| *b > 0).unwrap_or(10),
        observer: Some(metrics),
    };
    let boot = cfg.bootstrap_kubeconfig.as_deref();
    let boot_context = || format!("TLS bootstrap with --bootstrap-kubeconfig {}", boot.unwrap_or(kubeconfig).display());
    let client = if cfg.rotate_certificates {
        // Upstream with rotation: the kubelet runs (static pods too) while the certificate is
        // requested in the background.
        match api::bootstrap::prepare_background(kubeconfig, boot, &cfg.cert_dir, &settings.name)
            .with_context(boot_context)?
        {
            Some(pending) => {
                client_while_bootstrapping(pending, kubeconfig, &cfg.cert_dir, &settings.name, opts, shutdown).await
            }
            None => client(cfg, kubeconfig, &settings.name, opts, shutdown).await,
        }
    } else {
        // Without rotation, upstream waits for the certificate before anything else.
        tokio::select! {
            r = api::bootstrap::load_client_cert(kubeconfig, boot, &cfg.cert_dir, &settings.name) => {
                r.with_context(boot_context)?;
            }
            () = shutdown.cancelled() => anyhow::bail!("shut down while waiting for the TLS bootstrap"),
        }
        client(cfg, kubeconfig, &settings.name, opts, shutdown).await
    }
    .context("connecting to the API server")?;
    let events = EventSink::spawn(
        client.clone(),
        settings.name.clone(),
        f64::from(if cfg.event_record_qps == 0 { 5 } else { cfg.event_record_qps.max(0) }),
        u32::try_from(if cfg.event_burst == 0 { 10 } else { cfg.event_burst }).unwrap_or(10),
        shutdown.clone(),
    );
    let node = NodeStatusLoop {
        client: client.clone(),
        settings: settings.clone(),
        machine: sys::node_info::machine_info().context("reading the machine's CPU and memory")?,
        register_node: cfg.register_node,
        update_frequency: cfg.node_status_update_frequency,
        report_frequency: cfg.node_status_report_frequency,
        health: Arc::new(Health { cri, images, pleg, root_dir: cfg.root_dir.clone(), pressure }),
        events: Some(events.clone()),
    }
    .spawn(shutdown.child_token());
    let lease = LeaseController {
        client: client.clone(),
        node: settings.name.clone(),
        duration_seconds: cfg.node_lease_duration_seconds,
        node_uid: node.clone(),
    };
    tokio::spawn(lease.run(shutdown.child_token()));
    Ok(Cluster { client, events, node, pods: ApiPods::default(), settings })
}

/// The API client. With `rotateCertificates`, the client certificate in `--cert-dir` is
/// rotated before it expires and the client follows each new one; a kubeconfig that does not
/// use that certificate store leaves rotation off, with a warning.
async fn client(
    cfg: &KubeletConfiguration,
    kubeconfig: &std::path::Path,
    node: &str,
    opts: ClientOptions,
    shutdown: &CancellationToken,
) -> anyhow::Result<kube::Client> {
    if cfg.rotate_certificates {
        match api::bootstrap::spawn_rotation(kubeconfig, &cfg.cert_dir, node, shutdown.child_token()) {
            Ok(certs) => return Ok(api::client::reloading_from_kubeconfig(kubeconfig, opts, certs).await?),
            Err(e) => tracing::warn!("client certificate rotation is off: {e}"),
        }
    }
    Ok(api::client::from_kubeconfig(kubeconfig, opts).await?)
}

/// The API client while a TLS bootstrap runs in the background: anonymous towards the bootstrap
/// kubeconfig's server (requests fail as unauthorized and are retried) until the certificate is
/// stored, then the kubeconfig's identity, then each rotated certificate.
async fn client_while_bootstrapping(
    pending: api::bootstrap::PendingBootstrap,
    kubeconfig: &std::path::Path,
    cert_dir: &std::path::Path,
    node: &str,
    opts: ClientOptions,
    shutdown: &CancellationToken,
) -> anyhow::Result<kube::Client> {
    let first = api::client::anonymous(pending.bootstrap_kubeconfig()).await?;
    let (changed, changes) = watch::channel(());
    let client = api::client::reloading(first, kubeconfig, opts, changes);
    let (kubeconfig, cert_dir, node, shutdown) =
        (kubeconfig.to_owned(), cert_dir.to_owned(), node.to_owned(), shutdown.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = pending.run() => {}
            () = shutdown.cancelled() => return,
        }
        changed.send_replace(());
        match api::bootstrap::spawn_rotation(&kubeconfig, &cert_dir, &node, shutdown.child_token()) {
            Ok(mut certs) => {
                while certs.changed().await.is_ok() {
                    changed.send_replace(());
                }
            }
            Err(e) => tracing::error!("client certificate rotation is off: {e}"),
        }
    });
    Ok(client)
}

impl Cluster {
    /// Starts the API pod source, feeding `snapshots` as the `api` source.
    pub fn start_pod_source(&self, snapshots: mpsc::Sender<SourceSnapshot>, shutdown: &CancellationToken) {
        let (tx, mut rx) = mpsc::channel::<Vec<Pod>>(4);
        let source =
            PodSource { client: self.client.clone(), node: self.settings.name.clone(), store: self.pods.clone() };
        tokio::spawn(source.run(tx, shutdown.child_token()));
        tokio::spawn(async move {
            while let Some(pods) = rx.recv().await {
                if snapshots.send(SourceSnapshot { source: API_SOURCE, pods }).await.is_err() {
                    return;
                }
            }
        });
    }

    /// Starts the status syncer and the mirror pod sync; returns the sender the sync loop
    /// publishes its static pods on.
    pub fn start_status(&self, statuses: StatusManager, shutdown: &CancellationToken) -> watch::Sender<Vec<Arc<Pod>>> {
        let syncer = StatusSyncer {
            statuses,
            pods: self.pods.clone(),
            writer: Arc::new(KubePodWriter { client: self.client.clone() }),
        };
        tokio::spawn(syncer.run(shutdown.child_token()));
        let (tx, rx) = watch::channel(Vec::new());
        let mirror = MirrorSync {
            client: Arc::new(KubeMirrorClient { client: self.client.clone(), node: self.settings.name.clone() }),
            pods: self.pods.clone(),
            node: self.node.clone(),
        };
        tokio::spawn(mirror.run(rx, shutdown.child_token()));
        tx
    }

    pub fn admission(&self) -> AdmissionContext {
        let mut labels: BTreeMap<String, String> = default_labels(&self.settings);
        labels.extend(self.settings.labels.clone());
        AdmissionContext {
            node_name: self.settings.name.clone(),
            node: self.node.clone(),
            labels,
            max_pods: self.settings.max_pods,
        }
    }
}
