//! End-to-end TLS bootstrap: the real rkubelet binary with `--bootstrap-kubeconfig` (a bootstrap
//! token) requests its client certificate through a CSR, waits for approval, stores the pair
//! in `--cert-dir`, writes `--kubeconfig` and joins as `system:node:<name>`. Runs against the
//! in-memory test API server over HTTPS, or a real cluster named by `RKUBELET_TEST_KUBECONFIG`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use testkit::cluster::TestCluster;
use testkit::{Agent, AgentOptions, NodeEnv, wait_for};

/// Without certificate rotation, upstream's kubelet waits for its certificate before anything.
const CONFIG: &str = "nodeLeaseDurationSeconds: 4\nnodeStatusUpdateFrequency: 2s\nrotateCertificates: false\n";
/// With rotation, the certificate is requested in the background while the kubelet runs.
const ROTATING: &str = "nodeLeaseDurationSeconds: 4\nnodeStatusUpdateFrequency: 2s\nrotateCertificates: true\n";

fn ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The CSRs this node's bootstrap token (user `system:bootstrap:<token id>`) created.
async fn csrs_of(api: &Api<CertificateSigningRequest>, token_id: &str) -> Vec<CertificateSigningRequest> {
    let user = format!("system:bootstrap:{token_id}");
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.spec.username.as_deref() == Some(user.as_str()))
        .collect()
}

/// The real binary with `--bootstrap-kubeconfig` (a new bootstrap token of `cluster`),
/// `--kubeconfig` and `--cert-dir` in `dir`; returns it and the token id.
async fn bootstrapping_agent(
    env: &NodeEnv,
    cluster: &TestCluster,
    dir: &Path,
    tag: &str,
    config: &str,
) -> (Agent, String) {
    let token = cluster.create_bootstrap_token().await.unwrap();
    let token_id = token.split('.').next().unwrap().to_owned();
    let boot = cluster.bootstrap_kubeconfig(&token).unwrap();
    let a = Agent::start(
        Path::new(common::BIN),
        env,
        tag,
        AgentOptions {
            args: vec![
                format!("--bootstrap-kubeconfig={}", boot.display()),
                format!("--kubeconfig={}", dir.join("kubelet.conf").display()),
                format!("--cert-dir={}", dir.join("pki").display()),
            ],
            config_yaml: Some(config.into()),
            ..Default::default()
        },
    );
    (a, token_id)
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstraps_a_client_certificate_through_an_approved_csr() {
    let Some(env) = NodeEnv::require() else { return };
    let cluster = TestCluster::start_tls().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubelet.conf");
    let cert_dir = dir.path().join("pki");
    let (mut a, token_id) = bootstrapping_agent(&env, &cluster, dir.path(), "boot", CONFIG).await;
    let csrs: Api<CertificateSigningRequest> = Api::all(cluster.client.clone());

    // The agent asks for a node client certificate and waits: no kubeconfig until approval.
    let csr = wait_for("a CSR from the bootstrap token", Duration::from_secs(30), || async {
        csrs_of(&csrs, &token_id).await.pop().ok_or_else(|| format!("no CSR yet\n{}", common::tail(&a.log())))
    })
    .await;
    let spec = &csr.spec;
    assert_eq!(spec.signer_name, "kubernetes.io/kube-apiserver-client-kubelet");
    let mut usages = spec.usages.clone().unwrap_or_default();
    usages.sort();
    assert_eq!(usages, ["client auth", "digital signature"], "upstream's kubelet client usages");
    assert!(spec.groups.as_ref().unwrap().iter().any(|g| g == "system:bootstrappers"), "{:?}", spec.groups);
    assert!(!kubeconfig.exists(), "kubeconfig written before the CSR was approved");
    assert!(a.is_running(), "the agent must wait for approval, not exit\n{}", common::tail(&a.log()));

    let name = csr.metadata.name.clone().unwrap();
    cluster.approve_csr(&name).await.unwrap();

    // Approved → issued → stored → kubeconfig written → the node registers with it.
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    wait_for("node registered and Ready with the bootstrapped certificate", Duration::from_secs(60), || async {
        match nodes.get_opt(&a.node).await {
            Ok(Some(n)) if ready(&n) => Ok(()),
            other => Err(format!("{:?}\n{}", other.map(|n| n.map(|n| n.status)), common::tail(&a.log()))),
        }
    })
    .await;

    let current = cert_dir.join("kubelet-client-current.pem");
    let target = std::fs::read_link(&current).expect("kubelet-client-current.pem is a symlink");
    let target_name = target.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        target_name.starts_with("kubelet-client-")
            && target_name.ends_with(".pem")
            && target_name != "kubelet-client-current.pem",
        "{target_name}"
    );
    let pem = std::fs::read_to_string(&current).unwrap();
    assert!(pem.contains("BEGIN CERTIFICATE") && pem.contains("PRIVATE KEY"), "pair file holds cert and key");
    let mode = std::fs::metadata(&current).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the pair file holds a private key");
    let kc = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(kc.contains(&current.display().to_string()), "kubeconfig must point at the current pair:\n{kc}");
    assert_eq!(std::fs::metadata(&kubeconfig).unwrap().permissions().mode() & 0o777, 0o600);

    // The in-memory server knows who asked: the node's own identity, not the bootstrap token.
    if let Some(server) = &cluster.server {
        let node_user = format!("system:node:{}", a.node);
        let creates: Vec<_> = server
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == "/api/v1/nodes")
            .map(|r| r.user)
            .collect();
        assert!(
            !creates.is_empty() && creates.iter().all(|u| u.as_deref() == Some(node_user.as_str())),
            "node created as {creates:?}, want {node_user}"
        );
    }

    // A restart reuses the stored certificate: no second CSR, and the node stays Ready.
    a.terminate().await;
    a.spawn();
    wait_for("restarted agent uses the stored kubeconfig", Duration::from_secs(30), || async {
        let log = a.log();
        if log.contains("kubeconfig exists and is valid, skipping bootstrap") {
            Ok(())
        } else {
            Err(common::tail(&log))
        }
    })
    .await;
    let renewed = nodes.get(&a.node).await.unwrap();
    assert!(ready(&renewed));
    assert_eq!(csrs_of(&csrs, &token_id).await.len(), 1, "no new CSR after a restart with a valid certificate");

    a.terminate().await;
    cluster.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn with_rotation_static_pods_run_while_the_csr_waits() {
    let Some(env) = NodeEnv::require() else { return };
    let cluster = TestCluster::start_tls().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubelet.conf");
    let pem = dir.path().join("pki/kubelet-client-current.pem");
    let (mut a, token_id) = bootstrapping_agent(&env, &cluster, dir.path(), "bootrot", ROTATING).await;
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: st\n  namespace: {}\nspec:\n  containers:\n  - name: app\n    image: {}\n    command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 1; done']\n",
        cluster.namespace, env.test_image
    );
    a.write_manifest("st.yaml", &manifest);
    let csrs: Api<CertificateSigningRequest> = Api::all(cluster.client.clone());
    let csr = wait_for("a CSR from the bootstrap token", Duration::from_secs(30), || async {
        csrs_of(&csrs, &token_id).await.pop().ok_or_else(|| format!("no CSR yet\n{}", common::tail(&a.log())))
    })
    .await;

    // Nothing approved it yet, and the static pod runs anyway.
    wait_for("static pod running before the certificate", Duration::from_secs(60), || async {
        let p = a.pod("st").await?;
        match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Running") => Ok(()),
            other => Err(format!("{other:?}\n{}", common::tail(&a.log()))),
        }
    })
    .await;
    assert!(!pem.exists(), "a certificate before approval");
    // Upstream writes the kubeconfig at once, pointing at where the certificate will be.
    let kc = std::fs::read_to_string(&kubeconfig).expect("kubeconfig written before approval");
    assert!(kc.contains(&pem.display().to_string()), "{kc}");
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    assert!(nodes.get_opt(&a.node).await.unwrap().is_none(), "registered without credentials");

    // Approved: the agent switches to its certificate, registers and mirrors its static pod.
    cluster.approve_csr(&csr.metadata.name.clone().unwrap()).await.unwrap();
    wait_for("node registered and Ready after approval", Duration::from_secs(60), || async {
        match nodes.get_opt(&a.node).await {
            Ok(Some(n)) if ready(&n) => Ok(()),
            other => Err(format!("{:?}\n{}", other.map(|n| n.map(|n| n.status)), common::tail(&a.log()))),
        }
    })
    .await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mirror = a.pod_name("st");
    wait_for("mirror pod of the static pod", Duration::from_secs(30), || async {
        match pods.get_opt(&mirror).await {
            Ok(Some(_)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(pem.exists());
    if let Some(server) = &cluster.server {
        let node_user = format!("system:node:{}", a.node);
        let creates: Vec<_> = server
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == "/api/v1/nodes" && r.status < 300)
            .map(|r| r.user)
            .collect();
        assert_eq!(creates, [Some(node_user)], "the node is created once, as the node");
    }
    assert!(a.is_running());
    a.remove_manifest("st.yaml");
    a.cleanup().await;
    cluster.cleanup().await.unwrap();
}

/// What rotation relies on: once the credentials in the kubeconfig change and the change is
/// signalled, new requests authenticate with them. A client-level test over the in-memory
/// HTTPS server (it issues the two client certificates), so it needs no real cluster.
#[tokio::test(flavor = "multi_thread")]
async fn reloading_client_uses_rotated_credentials() {
    use testkit::apiserver::{Credentials, TestApiServer};
    let server = TestApiServer::start_tls().await.unwrap();
    let write = |cn: &str| {
        let (cert_pem, key_pem) = server.issue_client_cert(cn, &["system:nodes"]).unwrap();
        server.write_kubeconfig("node.kubeconfig", &Credentials::ClientCert { cert_pem, key_pem }).unwrap()
    };
    let kubeconfig = write("system:node:before");
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    let client = api::client::reloading_from_kubeconfig(&kubeconfig, Default::default(), rx).await.unwrap();
    let nodes: Api<Node> = Api::all(client);
    let last_user =
        || server.requests().into_iter().rev().find(|r| r.path.starts_with("/api/v1/nodes/probe")).and_then(|r| r.user);

    let _ = nodes.get_opt("probe").await;
    assert_eq!(last_user().as_deref(), Some("system:node:before"));

    // The file changes first; without the signal the client keeps its connections and identity.
    write("system:node:after");
    let _ = nodes.get_opt("probe").await;
    assert_eq!(last_user().as_deref(), Some("system:node:before"), "reloaded without a change signal");

    // A watch opened with the old identity is cut by the change, so its owner reconnects as the
    // new one.
    let mut watch = nodes.watch(&kube::api::WatchParams::default(), "0").await.unwrap().boxed();
    tx.send_replace(1);
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match watch.next().await {
                Some(Ok(_)) => continue,
                other => return other.map(|r| r.map(|_| ())),
            }
        }
    })
    .await
    .expect("the old identity's watch still open 10 s after the change");
    let err = end.expect("the watch ends with an error, not quietly").unwrap_err();
    assert!(format!("{err:?}").to_lowercase().contains("rotated"), "{err:?}");
    wait_for("requests as the rotated identity", Duration::from_secs(10), || async {
        let _ = nodes.get_opt("probe").await;
        match last_user() {
            Some(u) if u == "system:node:after" => Ok(()),
            other => Err(format!("last request as {other:?}")),
        }
    })
    .await;
}

/// Whether `haystack` holds `needle` (a name inside a DER certificate or request).
fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// `serverTLSBootstrap`: the serving certificate comes from a kubelet-serving CSR naming the
/// node; until an administrator approves it the kubelet API completes no handshake, then it
/// serves the issued certificate and keeps it in `kubelet-server-current.pem`.
#[tokio::test(flavor = "multi_thread")]
async fn serving_certificate_comes_from_an_approved_csr() {
    let Some(env) = NodeEnv::require() else { return };
    let cluster = TestCluster::start_tls().await.unwrap();
    let a = common::cluster_agent(&env, &cluster, "servingcsr", "serverTLSBootstrap: true\n");
    let csrs: Api<CertificateSigningRequest> = Api::all(cluster.client.clone());
    let cn = format!("system:node:{}", a.node);
    let csr = wait_for("a kubelet-serving CSR for this node", Duration::from_secs(60), || async {
        let list = csrs.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        list.items
            .into_iter()
            .find(|c| {
                c.spec.signer_name == "kubernetes.io/kubelet-serving"
                    && contains(&testkit::https::pem_der(&c.spec.request.0), &cn)
            })
            .ok_or_else(|| format!("none yet\n{}", common::tail(&a.log())))
    })
    .await;
    assert_eq!(csr.spec.usages.as_deref(), Some(&["digital signature".to_owned(), "server auth".to_owned()][..]));
    // Not approved: no certificate to serve, so no handshake.
    // (The listener is up: the API answered the kubelet's CSR, and the port is bound first.)
    let refused = wait_for("the kubelet API listening", Duration::from_secs(30), || async {
        match testkit::https::connect(a.port, None).await {
            Err(e) if e.starts_with("TLS: ") => Ok(e),
            other => Err(format!("{:?}", other.map(|_| "a handshake"))),
        }
    })
    .await;
    assert!(!refused.is_empty(), "the TLS handshake failed, not the connection");

    cluster.approve_csr(csr.metadata.name.as_deref().unwrap()).await.unwrap();
    let tls = wait_for("the kubelet serving the issued certificate", Duration::from_secs(60), || async {
        testkit::https::connect(a.port, None).await
    })
    .await;
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    assert!(contains(&served, &cn), "the served certificate names {cn}");
    let current = a.cert_dir().join("kubelet-server-current.pem");
    let stored = std::fs::read_to_string(&current).unwrap();
    assert!(stored.contains("BEGIN CERTIFICATE") && stored.contains("PRIVATE KEY"), "{}", current.display());
    let mode = std::fs::metadata(std::fs::canonicalize(&current).unwrap()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    a.cleanup().await;
    cluster.cleanup().await.unwrap();
}
