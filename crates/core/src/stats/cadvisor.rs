//! The cgroups `/metrics/cadvisor` reports, as the kubelet's embedded cAdvisor watches them:
//! the root `/` (with the host's interfaces) and everything under `<cgroupRoot>/kubepods` —
//! the QoS cgroups, the pod cgroups (labelled with their pod, upstream's
//! `containerPrometheusLabelsFunc` association) and the runtime's containers in them (labelled
//! from the CRI: container name, image, pod; the sandbox has no container name, carries the
//! pause image and the pod's network interfaces, as cAdvisor's containerd handler reports it).

use std::collections::HashMap;

use super::{StatsProvider, Time};
use crate::runtime::labels;

/// One cgroup with its labels (cAdvisor's `id`, `name`, `image`, `container`, `pod`,
/// `namespace`) and figures read at `time`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupSeries {
    /// The cgroup's path (`/kubepods/burstable/pod<uid>/<id>`).
    pub id: String,
    /// The runtime's container ID, for containers; empty for plain cgroups.
    pub name: String,
    pub image: String,
    /// The Kubernetes container name; empty for a sandbox and for plain cgroups.
    pub container: String,
    pub pod: String,
    pub namespace: String,
    pub time: Time,
    /// When the container (or cgroup) was created, in seconds since the epoch.
    pub start_time: Option<f64>,
    pub metrics: sys::cgroup_metrics::CgroupMetrics,
    /// Interfaces of the cgroup's own network: the host's for `/`, the pod's for its sandbox.
    pub network: Vec<sys::stats::InterfaceStats>,
}

/// What the runtime says of a sandbox or container: (pod name, namespace, uid, container name,
/// image).
#[derive(Debug, Clone, Default)]
struct Owner {
    pod: String,
    namespace: String,
    uid: String,
    container: String,
    image: String,
    created_ns: i64,
    sandbox: bool,
}

impl StatsProvider {
    /// Every cgroup `/metrics/cadvisor` reports, parents before children. Fails when the root
    /// cgroup or the runtime cannot be read (cAdvisor's `container_scrape_error`); a cgroup
    /// that vanishes during the walk is passed over.
    pub async fn cgroup_series(&self) -> Result<Vec<CgroupSeries>, String> {
        let list_err = |e: cri::Error| format!("failed to list containers: {e}");
        let sandboxes = self.runtime.list_pod_sandbox(None).await.map_err(list_err)?;
        let containers = self.runtime.list_containers(None).await.map_err(list_err)?;
        // An image ID (what the kubelet asked the runtime for) → its first name, as the runtime
        // reports a container's image.
        let names: HashMap<String, String> = match self.images.list_images(None).await {
            Ok(images) => {
                images.into_iter().filter_map(|i| Some((i.id.clone(), i.repo_tags.first()?.clone()))).collect()
            }
            Err(e) => return Err(format!("failed to list images: {e}")),
        };
        let mut owners: HashMap<String, Owner> = HashMap::new();
        for sb in &sandboxes {
            let m = sb.metadata.clone().unwrap_or_default();
            let owner = Owner {
                pod: m.name,
                namespace: m.namespace,
                uid: m.uid,
                // containerd gives a sandbox no Kubernetes container name (cAdvisor's label is
                // empty; dockershim and CRI-O said `POD`).
                container: String::new(),
                created_ns: sb.created_at,
                sandbox: true,
                ..Default::default()
            };
            owners.insert(sb.id.clone(), owner);
        }
        for c in &containers {
            // The pod is the sandbox's; the kubelet's labels stand in for a sandbox already gone.
            let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
            let (pod, namespace, uid) = match owners.get(&c.pod_sandbox_id) {
                Some(sb) => (sb.pod.clone(), sb.namespace.clone(), sb.uid.clone()),
                None => (label(labels::POD_NAME), label(labels::POD_NAMESPACE), label(labels::POD_UID)),
            };
            owners.insert(
                c.id.clone(),
                Owner {
                    pod,
                    namespace,
                    uid,
                    container: c.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
                    image: c
                        .image
                        .as_ref()
                        .map(|i| names.get(&i.image).unwrap_or(&i.image).clone())
                        .unwrap_or_default(),
                    created_ns: c.created_at,
                    sandbox: false,
                },
            );
        }
        let pods: HashMap<&str, (&str, &str)> =
            owners.values().map(|o| (o.uid.as_str(), (o.pod.as_str(), o.namespace.as_str()))).collect();

        let listed: std::collections::HashSet<&str> = sandboxes.iter().map(|s| s.id.as_str()).collect();
        self.sandboxes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|id, _| listed.contains(id.as_str()));
        let now = Time(self.now_ns());
        let root = self.host.cgroup_metrics("/").map_err(|e| format!("failed to get root cgroup stats: {e}"))?;
        let mut out = vec![CgroupSeries {
            id: "/".into(),
            time: now,
            start_time: self.host.boot_time().map(|b| b as f64),
            metrics: root,
            network: self.host.interfaces().unwrap_or_default(),
            ..Default::default()
        }];
        let Some(layout) = self.settings.pod_cgroups.clone() else { return Ok(out) };
        // (cgroup path, pod UID of the nearest pod cgroup above or at it).
        let mut stack = vec![(layout.name(&layout.node), None::<String>)];
        while let Some((id, in_pod)) = stack.pop() {
            let Ok(metrics) = self.host.cgroup_metrics(&id) else { continue };
            let leaf = id.rsplit('/').next().unwrap_or_default();
            let mut series = CgroupSeries { id: id.clone(), time: Time(self.now_ns()), metrics, ..Default::default() };
            let mut pod_uid = in_pod.clone();
            match &in_pod {
                // A container (or sandbox) in a pod cgroup.
                Some(uid) => {
                    let cid = layout.driver.container_id_of(leaf);
                    if let Some(o) = owners.get(cid).filter(|o| o.uid == *uid || o.uid.is_empty()) {
                        series.name = cid.to_owned();
                        series.container = o.container.clone();
                        series.pod = o.pod.clone();
                        series.namespace = o.namespace.clone();
                        series.image = o.image.clone();
                        series.start_time = Some(o.created_ns as f64 / 1e9);
                        if o.sandbox {
                            let (image, network) = self.sandbox_image_and_network(cid).await;
                            series.image = image;
                            series.network = network;
                        }
                    }
                }
                None => {
                    if let Some(uid) = layout.driver.pod_uid_of(leaf) {
                        if let Some((pod, ns)) = pods.get(uid.as_str()) {
                            series.pod = (*pod).to_owned();
                            series.namespace = (*ns).to_owned();
                        }
                        pod_uid = Some(uid);
                    }
                }
            }
            if series.start_time.is_none() {
                series.start_time = self.host.cgroup_created(&id);
            }
            out.push(series);
            let mut children = self.host.cgroup_children(&id);
            children.sort();
            for child in children.into_iter().rev() {
                let path = if id == "/" { format!("/{child}") } else { format!("{id}/{child}") };
                stack.push((path, pod_uid.clone()));
            }
        }
        Ok(out)
    }

    /// The sandbox's image and its network namespace's interfaces.
    async fn sandbox_image_and_network(&self, sandbox_id: &str) -> (String, Vec<sys::stats::InterfaceStats>) {
        let Some(info) = self.sandbox_info(sandbox_id).await else { return (String::new(), Vec::new()) };
        (info.image.clone(), self.host.process_interfaces(info.pid).unwrap_or_default())
    }
}
