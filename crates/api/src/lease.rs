//! The node lease heartbeat (upstream `component-helpers/apimachinery/lease` controller): the
//! `kube-node-lease/<node>` Lease is renewed every `nodeLeaseDurationSeconds × 0.25`, created if
//! missing, owned by the Node once its UID is known. Failures retry with backoff from 200 ms up to
//! 7 s, never waiting for pod work.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

use crate::node::Registered;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
const RETRY_START: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(7);

/// The lease controller of one node.
pub struct LeaseController {
    pub client: kube::Client,
    pub node: String,
    pub duration_seconds: u32,
    pub node_uid: Registered,
}

impl LeaseController {
    /// Renew interval: a quarter of the lease duration (upstream `renewIntervalFraction`).
    pub fn renew_interval(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.duration_seconds) * 0.25)
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut cached: Option<Lease> = None;
        let mut backoff = RETRY_START;
        loop {
            let wait = match self.renew(&mut cached).await {
                Ok(()) => {
                    backoff = RETRY_START;
                    self.renew_interval()
                }
                Err(e) => {
                    tracing::warn!(node = %self.node, "failed to renew lease {LEASE_NAMESPACE}/{}: {e}", self.node);
                    cached = None;
                    let w = backoff;
                    backoff = (backoff * 2).min(RETRY_MAX);
                    w
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn owner(&self) -> Option<Vec<OwnerReference>> {
        let uid = self.node_uid.borrow().as_ref()?.metadata.uid.clone()?;
        Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: self.node.clone(),
            uid,
            ..Default::default()
        }])
    }

    fn fill(&self, lease: &mut Lease) {
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(self.node.clone());
        spec.lease_duration_seconds = i32::try_from(self.duration_seconds).ok();
        spec.renew_time = Some(MicroTime(crate::now().0));
        if lease.metadata.owner_references.as_ref().is_none_or(|o| o.is_empty()) {
            lease.metadata.owner_references = self.owner();
        }
    }

    async fn renew(&self, cached: &mut Option<Lease>) -> Result<(), kube::Error> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let mut lease = match cached.take() {
            Some(l) => l,
            None => match api.get_opt(&self.node).await? {
                Some(l) => l,
                None => {
                    let mut l = Lease {
                        metadata: ObjectMeta {
                            name: Some(self.node.clone()),
                            namespace: Some(LEASE_NAMESPACE.into()),
                            ..Default::default()
                        },
                        spec: None,
                    };
                    self.fill(&mut l);
                    *cached = Some(api.create(&PostParams::default(), &l).await?);
                    return Ok(());
                }
            },
        };
        self.fill(&mut lease);
        *cached = Some(api.replace(&self.node, &PostParams::default(), &lease).await?);
        Ok(())
    }
}
