#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use rcgen::PublicKeyData;

use super::testing::{Decision, FakeCsrApi, TestCa, new_key};
use super::*;

const HOUR: Duration = Duration::from_secs(3600);

struct Node {
    dir: tempfile::TempDir,
    api: FakeCsrApi,
}

impl Node {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let api = FakeCsrApi::new(TestCa::new(), Arc::new(SystemTime::now));
        std::fs::write(dir.path().join("ca.crt"), api.ca_pem()).unwrap();
        Self { dir, api }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The bootstrap kubeconfig kubeadm writes (token auth, CA file).
    fn bootstrap_kubeconfig(&self) -> (Kubeconfig, PathBuf) {
        let path = self.path("bootstrap-kubelet.conf");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    server: https://10.0.0.1:6443\n    \
             certificate-authority: ca.crt\ncontexts:\n- name: tls-bootstrap-token-user@kubernetes\n  context:\n    \
             cluster: kubernetes\n    user: tls-bootstrap-token-user\ncurrent-context: tls-bootstrap-token-user@kubernetes\n\
             users:\n- name: tls-bootstrap-token-user\n  user:\n    token: abcdef.0123456789abcdef\n",
        )
        .unwrap();
        (read_kubeconfig(&path).unwrap(), path)
    }

    async fn bootstrap(&self) -> Result<()> {
        let (boot, boot_path) = self.bootstrap_kubeconfig();
        bootstrap_with(
            &self.api,
            &boot,
            &boot_path,
            &self.path("kubelet.conf"),
            &self.path("pki"),
            "node-a",
            SystemTime::now,
        )
        .await
    }
}

#[tokio::test]
async fn bootstrap_stores_the_certificate_and_writes_the_kubeconfig() {
    let node = Node::new();
    node.bootstrap().await.unwrap();

    // The request.
    let created = node.api.created();
    assert_eq!(created.len(), 1);
    let csr = &created[0];
    let pair_pem = std::fs::read_to_string(node.path("pki/kubelet-client-current.pem")).unwrap();
    let key = csr::parse_private_key(pair_pem.as_bytes()).unwrap();
    let spki = key.subject_public_key_info();
    assert_eq!(
        csr.metadata.name.as_deref(),
        Some(
            digested_name(&spki, "system:node:node-a", &["system:nodes"], &["digital signature", "client auth"])
                .as_str()
        )
    );
    assert_eq!(csr.spec.signer_name, "kubernetes.io/kube-apiserver-client-kubelet");
    assert_eq!(csr::request_public_key(&csr.spec.request.0).unwrap(), spki);

    // The pair and the temporary key.
    let link = std::fs::read_link(node.path("pki/kubelet-client-current.pem")).unwrap();
    assert!(link.to_str().unwrap().starts_with("kubelet-client-2"), "{link:?}");
    let mode = std::fs::metadata(node.path("pki").join(&link)).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!node.path("pki/kubelet-client.key.tmp").exists(), "the pending key is cleaned up");

    // The kubeconfig.
    let kubeconfig = node.path("kubelet.conf");
    assert_eq!(std::fs::metadata(&kubeconfig).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    let raw: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    let pem = node.path("pki/kubelet-client-current.pem").to_string_lossy().into_owned();
    assert_eq!(raw["apiVersion"], "v1");
    assert_eq!(raw["kind"], "Config");
    assert_eq!(raw["current-context"], "default-context");
    assert_eq!(raw["clusters"][0]["name"], "default-cluster");
    assert_eq!(raw["clusters"][0]["cluster"]["server"], "https://10.0.0.1:6443");
    assert_eq!(raw["clusters"][0]["cluster"]["certificate-authority"], node.path("ca.crt").to_string_lossy().as_ref());
    assert!(raw["clusters"][0]["cluster"].get("certificate-authority-data").is_none());
    assert_eq!(raw["users"][0]["name"], "default-auth");
    assert_eq!(raw["users"][0]["user"]["client-certificate"], pem.as_str());
    assert_eq!(raw["users"][0]["user"]["client-key"], pem.as_str());
    assert!(raw["users"][0]["user"].get("token").is_none(), "bootstrap credentials are not copied");
    assert_eq!(raw["contexts"][0]["context"]["cluster"], "default-cluster");
    assert_eq!(raw["contexts"][0]["context"]["user"], "default-auth");
    assert_eq!(raw["contexts"][0]["context"]["namespace"], "default");
    assert!(kubeconfig_is_valid(&kubeconfig, SystemTime::now()).unwrap());

    // The current certificate can be read back for rotation.
    let current = read_current_cert(&CertStore::new(node.path("pki"))).unwrap();
    assert_eq!(current.path, node.path("pki/kubelet-client-current.pem"));
    assert!(current.not_after > SystemTime::now() + 99 * HOUR);
}

#[tokio::test]
async fn a_pending_key_is_reused() {
    let node = Node::new();
    std::fs::create_dir_all(node.path("pki")).unwrap();
    // What an interrupted upstream bootstrap leaves behind: a SEC1 key.
    let sec1 = include_str!("testdata/sec1-p256.pem");
    std::fs::write(node.path("pki/kubelet-client.key.tmp"), sec1).unwrap();
    node.bootstrap().await.unwrap();
    let pending = csr::parse_private_key(sec1.as_bytes()).unwrap();
    let created = node.api.created();
    assert_eq!(csr::request_public_key(&created[0].spec.request.0).unwrap(), pending.subject_public_key_info());
}

#[tokio::test]
async fn a_new_key_is_saved_before_the_request() {
    let node = Node::new();
    node.api.decide(Decision::Deny);
    let err = node.bootstrap().await.unwrap_err();
    assert!(matches!(err, BootstrapError::Denied { .. }), "{err}");
    let tmp = node.path("pki/kubelet-client.key.tmp");
    assert_eq!(std::fs::metadata(&tmp).unwrap().permissions().mode() & 0o777, 0o600);
    let saved = csr::parse_private_key(&std::fs::read(&tmp).unwrap()).unwrap();
    let created = node.api.created();
    assert_eq!(csr::request_public_key(&created[0].spec.request.0).unwrap(), saved.subject_public_key_info());
    assert!(!node.path("kubelet.conf").exists());
}

#[tokio::test]
async fn decisions_other_than_issued_are_errors() {
    for (decision, want) in [
        (Decision::Deny, "is denied, reason: NotANode, message: NotANode by the fake"),
        (Decision::Fail, "failed, reason: SignerError"),
        (Decision::Delete, "was deleted or replaced"),
    ] {
        let node = Node::new();
        node.api.decide(decision);
        let err = node.bootstrap().await.unwrap_err().to_string();
        assert!(err.starts_with("certificate signing request node-csr-"), "{err}");
        assert!(err.contains(want), "{decision:?}: {err}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_undecided_request_times_out_after_an_hour() {
    let node = Node::new();
    node.api.decide(Decision::Pending);
    let start = tokio::time::Instant::now();
    let err = node.bootstrap().await.unwrap_err();
    assert!(matches!(err, BootstrapError::Timeout { after, .. } if after == HOUR), "{err}");
    assert!(start.elapsed() >= HOUR);
}

#[tokio::test(start_paused = true)]
async fn create_is_retried_while_the_server_cannot_be_reached() {
    let node = Node::new();
    node.api.unreachable_for_next_creates(3);
    let start = tokio::time::Instant::now();
    node.bootstrap().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(6), "three retries 2 s apart");

    // An answer from the server is not retried.
    let node = Node::new();
    node.api.fail_next_creates(1);
    let err = node.bootstrap().await.unwrap_err();
    assert!(matches!(err, BootstrapError::Api { .. }), "{err}");
    assert!(err.to_string().contains("etcd is sad"), "{err}");

    // Nor is a server that stays away for a minute.
    let node = Node::new();
    node.api.unreachable_for_next_creates(100);
    let err = node.bootstrap().await.unwrap_err();
    assert!(err.to_string().contains("connection refused"), "{err}");
}

#[tokio::test]
async fn an_existing_request_for_the_same_key_is_reused_another_is_refused() {
    let node = Node::new();
    // A first attempt that did not get a certificate leaves its key in kubelet-client.key.tmp.
    node.api.decide(Decision::Deny);
    assert!(node.bootstrap().await.is_err());
    // The signer later approves it; the restarted kubelet finds it by name.
    let mut existing = node.api.created()[0].clone();
    let pem = std::str::from_utf8(&existing.spec.request.0).unwrap().to_owned();
    existing.metadata.uid = Some("uid-1".into());
    existing.status = Some(k8s_openapi::api::certificates::v1::CertificateSigningRequestStatus {
        certificate: Some(k8s_openapi::ByteString(
            TestCa::new().sign_request(&pem, SystemTime::now(), SystemTime::now() + HOUR).into_bytes(),
        )),
        conditions: Some(vec![k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            ..Default::default()
        }]),
    });
    node.api.insert(existing.clone());
    node.bootstrap().await.unwrap();
    assert_eq!(node.api.created().len(), 2, "the second create hit AlreadyExists");

    // A CSR of that name for another key is not taken.
    let other = Node::new();
    let mut foreign = existing;
    foreign.spec.request = k8s_openapi::ByteString(csr::node_csr_pem(&new_key(), "node-a").unwrap().into_bytes());
    std::fs::create_dir_all(other.path("pki")).unwrap();
    std::fs::copy(node.path("pki/kubelet-client-current.pem"), other.path("pki/kubelet-client.key.tmp")).unwrap();
    other.api.insert(foreign);
    let err = other.bootstrap().await.unwrap_err();
    assert!(matches!(err, BootstrapError::Incompatible { .. }), "{err}");
    assert!(err.to_string().contains("made for another key"), "{err}");
}

#[tokio::test]
async fn no_bootstrap_kubeconfig_or_a_valid_kubeconfig_skips_bootstrap() {
    let node = Node::new();
    let kubeconfig = node.path("kubelet.conf");
    // No --bootstrap-kubeconfig: nothing to do, nothing written.
    load_client_cert(&kubeconfig, None, &node.path("pki"), "node-a").await.unwrap();
    assert!(!kubeconfig.exists() && !node.path("pki").exists());

    // A valid kubeconfig: the (absent) bootstrap kubeconfig is never read.
    node.bootstrap().await.unwrap();
    let missing = node.path("no-such-bootstrap.conf");
    load_client_cert(&kubeconfig, Some(&missing), &node.path("pki"), "node-a").await.unwrap();
    assert_eq!(node.api.created().len(), 1);
}

#[test]
fn kubeconfig_validity_checks_the_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let key = new_key();
    let now = SystemTime::now();
    let write = |name: &str, user: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://10.0.0.1:6443'}}}}]\n\
                 users: [{{name: u, user: {user}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\n\
                 current-context: x\n"
            ),
        )
        .unwrap();
        path
    };
    let valid_pem = ca.issue_at(&key, "system:node:a", now - HOUR, now + HOUR);
    let expired_pem = ca.issue_at(&key, "system:node:a", now - 2 * HOUR, now - HOUR);
    std::fs::write(dir.path().join("valid.pem"), format!("{valid_pem}{}", key.serialize_pem())).unwrap();
    std::fs::write(dir.path().join("expired.pem"), &expired_pem).unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);

    let file = write("file.conf", "{client-certificate: valid.pem, client-key: valid.pem}");
    assert!(kubeconfig_is_valid(&file, now).unwrap(), "a relative path is relative to the kubeconfig");
    assert!(!kubeconfig_is_valid(&file, now + 2 * HOUR).unwrap(), "expired later");
    let data = write("data.conf", &format!("{{client-certificate-data: {}}}", b64(&valid_pem)));
    assert!(kubeconfig_is_valid(&data, now).unwrap());
    let expired = write("expired.conf", "{client-certificate: expired.pem}");
    assert!(!kubeconfig_is_valid(&expired, now).unwrap());
    let bundle =
        write("bundle.conf", &format!("{{client-certificate-data: {}}}", b64(&format!("{valid_pem}{expired_pem}"))));
    assert!(!kubeconfig_is_valid(&bundle, now).unwrap(), "any expired certificate invalidates");
    let token = write("token.conf", "{token: abc}");
    assert!(!kubeconfig_is_valid(&token, now).unwrap());
    let missing_file = write("missing.conf", "{client-certificate: nope.pem}");
    assert!(!kubeconfig_is_valid(&missing_file, now).unwrap());
    std::fs::write(dir.path().join("garbage.conf"), "{{{").unwrap();
    assert!(!kubeconfig_is_valid(&dir.path().join("garbage.conf"), now).unwrap());
    assert!(!kubeconfig_is_valid(&dir.path().join("absent.conf"), now).unwrap());
}

#[test]
fn kubeconfig_keeps_inline_ca_data_when_there_is_no_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let boot: Kubeconfig = serde_yaml::from_str(
        "apiVersion: v1\nkind: Config\nclusters: [{name: k, cluster: {server: 'https://lb:6443', certificate-authority-data: Q0E=, insecure-skip-tls-verify: false}}]\n\
         users: [{name: b, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: k, user: b}}]\ncurrent-context: x\n",
    )
    .unwrap();
    let out = dir.path().join("sub/kubelet.conf");
    write_kubeconfig(&boot, Path::new("/boot.conf"), &out, Path::new("/pki/kubelet-client-current.pem")).unwrap();
    let raw: serde_json::Value = serde_yaml::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(raw["clusters"][0]["cluster"]["certificate-authority-data"], "Q0E=");
    assert_eq!(raw["clusters"][0]["cluster"]["server"], "https://lb:6443");
    assert_eq!(raw["users"][0]["user"]["client-key"], "/pki/kubelet-client-current.pem");

    let no_context: Kubeconfig = serde_yaml::from_str("apiVersion: v1\nkind: Config\n").unwrap();
    let err = write_kubeconfig(&no_context, Path::new("/boot.conf"), &out, Path::new("/p.pem")).unwrap_err();
    assert_eq!(err.to_string(), "kubeconfig /boot.conf: no cluster in the current context");
}

#[tokio::test]
async fn background_bootstrap_writes_the_kubeconfig_first_and_is_skipped_once_valid() {
    let node = Node::new();
    let (_, boot_path) = node.bootstrap_kubeconfig();
    let kubeconfig = node.path("kubelet.conf");
    let cert_dir = node.path("pki");
    assert!(prepare_background(&kubeconfig, None, &cert_dir, "node-a").unwrap().is_none(), "no bootstrap kubeconfig");

    // No certificate yet: the kubeconfig is written now, pointing at where it will be.
    let pending = prepare_background(&kubeconfig, Some(&boot_path), &cert_dir, "node-a").unwrap();
    assert!(pending.is_some());
    let kc = read_kubeconfig(&kubeconfig).unwrap();
    let pem = cert_dir.join("kubelet-client-current.pem").display().to_string();
    let user = current_user(&kc).unwrap();
    assert_eq!(user.client_certificate.as_deref(), Some(pem.as_str()));
    assert_eq!(user.client_key.as_deref(), Some(pem.as_str()));
    assert_eq!(current_cluster(&kc).unwrap().server.as_deref(), Some("https://10.0.0.1:6443"));
    assert_eq!(std::fs::metadata(&kubeconfig).unwrap().permissions().mode() & 0o777, 0o600);
    // A restart before the certificate came: still pending (the kubeconfig names a missing file).
    assert!(prepare_background(&kubeconfig, Some(&boot_path), &cert_dir, "node-a").unwrap().is_some());

    // Once a certificate is stored, nothing is pending.
    node.bootstrap().await.unwrap();
    assert!(prepare_background(&kubeconfig, Some(&boot_path), &cert_dir, "node-a").unwrap().is_none());
}
