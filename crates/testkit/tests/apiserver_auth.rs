//! Authentication and authorization on the test API server: TokenRequest/TokenReview, bootstrap
//! tokens limited to CSRs, CSR approval → certificate → client-certificate identity over TLS,
//! scripted SubjectAccessReviews, 401s.

// Test code: a failed expectation is a test failure.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{api_error, eventually};
use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenRequest, TokenReview};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use kube::Api;
use kube::api::{ListParams, PostParams};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde_json::json;
use testkit::apiserver::Credentials;
use testkit::apiserver::client_from_kubeconfig;
use testkit::cluster::TestCluster;

async fn whoami(client: kube::Client) -> (String, Vec<String>) {
    let review: SelfSubjectReview = serde_json::from_value(json!({})).unwrap();
    let out = Api::<SelfSubjectReview>::all(client).create(&PostParams::default(), &review).await.unwrap();
    let user = out.status.unwrap().user_info.unwrap();
    (user.username.unwrap_or_default(), user.groups.unwrap_or_default())
}

#[tokio::test]
async fn token_request_tokens_pass_token_review_and_authenticate() {
    let cluster = TestCluster::start().await.unwrap();
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "robot"}})).unwrap();
    Api::<ServiceAccount>::namespaced(cluster.client.clone(), &cluster.namespace)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let request: TokenRequest = serde_json::from_value(json!({"spec": {"expirationSeconds": 1200}})).unwrap();
    let issued: TokenRequest = Api::<ServiceAccount>::namespaced(cluster.client.clone(), &cluster.namespace)
        .create_subresource("token", "robot", &PostParams::default(), &request)
        .await
        .unwrap();
    let status = issued.status.unwrap();
    let expires = status.expiration_timestamp.clone().unwrap().0;
    let lifetime = expires.as_second() - unix_now();
    let robot_token = status.token.clone().unwrap();
    assert!((1100..=1300).contains(&lifetime), "expiration honours expirationSeconds: {lifetime}");

    let reviews = Api::<TokenReview>::all(cluster.client.clone());
    let review: TokenReview = serde_json::from_value(json!({"spec": {"token": status.token}})).unwrap();
    let answer = reviews.create(&PostParams::default(), &review).await.unwrap().status.unwrap();
    assert_eq!(answer.authenticated, Some(true));
    let user = answer.user.unwrap();
    assert_eq!(user.username.as_deref(), Some(format!("system:serviceaccount:{}:robot", cluster.namespace).as_str()));
    assert!(user.groups.unwrap().contains(&"system:serviceaccounts".to_owned()));

    let bogus: TokenReview = serde_json::from_value(json!({"spec": {"token": "not-a-token"}})).unwrap();
    let answer = reviews.create(&PostParams::default(), &bogus).await.unwrap().status.unwrap();
    assert_ne!(answer.authenticated, Some(true));

    // A token bound to a pod is invalid once the pod is gone (in-memory: pods go at once).
    if cluster.server.is_some() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
            "spec": {"serviceAccountName": "robot", "containers": [{"name": "c", "image": "busybox"}]}}))
        .unwrap();
        let pods = Api::<Pod>::namespaced(cluster.client.clone(), &cluster.namespace);
        let p = pods.create(&PostParams::default(), &pod).await.unwrap();
        let bound: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": ["vault"],
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": p.metadata.uid}}}))
        .unwrap();
        let issued: TokenRequest = Api::<ServiceAccount>::namespaced(cluster.client.clone(), &cluster.namespace)
            .create_subresource("token", "robot", &PostParams::default(), &bound)
            .await
            .unwrap();
        let token = issued.status.unwrap().token.unwrap();
        let review = |aud: &str| -> TokenReview {
            serde_json::from_value(json!({"spec": {"token": token, "audiences": [aud]}})).unwrap()
        };
        let ok = reviews.create(&PostParams::default(), &review("vault")).await.unwrap().status.unwrap();
        assert_eq!(ok.authenticated, Some(true));
        assert_eq!(ok.audiences, Some(vec!["vault".to_owned()]));
        let wrong_aud = reviews.create(&PostParams::default(), &review("other")).await.unwrap().status.unwrap();
        assert_ne!(wrong_aud.authenticated, Some(true));
        pods.delete("p", &Default::default()).await.unwrap();
        let after = reviews.create(&PostParams::default(), &review("vault")).await.unwrap().status.unwrap();
        assert_ne!(after.authenticated, Some(true));
    }

    // The API server accepts its own-audience tokens as bearer tokens.
    let kc = cluster.kubeconfig_for("robot.kubeconfig", &Credentials::Token(robot_token)).unwrap();
    let robot = client_from_kubeconfig(&kc).await.unwrap();
    let (name, _) = whoami(robot).await;
    assert_eq!(name, format!("system:serviceaccount:{}:robot", cluster.namespace));
    cluster.cleanup().await.unwrap();
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn bootstrap_tokens_may_only_use_csrs_and_bad_tokens_get_401() {
    let cluster = TestCluster::start().await.unwrap();
    let token = cluster.create_bootstrap_token().await.unwrap();
    let boot = client_from_kubeconfig(&cluster.bootstrap_kubeconfig(&token).unwrap()).await.unwrap();
    let (name, groups) = whoami(boot.clone()).await;
    assert_eq!(name, format!("system:bootstrap:{}", token.split('.').next().unwrap()));
    assert!(groups.contains(&"system:bootstrappers".to_owned()), "{groups:?}");

    Api::<CertificateSigningRequest>::all(boot.clone()).list(&ListParams::default()).await.unwrap();
    let err = api_error(Api::<Pod>::namespaced(boot, &cluster.namespace).list(&ListParams::default()).await);
    assert_eq!((err.code, err.reason.as_str()), (403, "Forbidden"));
    assert!(err.message.contains("cannot list resource \"pods\""), "{}", err.message);

    let kc = cluster.kubeconfig_for("bad.kubeconfig", &Credentials::Token("abcdef.0123456789abcdef".into())).unwrap();
    let bad = client_from_kubeconfig(&kc).await.unwrap();
    let err = api_error(Api::<ConfigMap>::namespaced(bad, &cluster.namespace).list(&ListParams::default()).await);
    assert_eq!((err.code, err.reason.as_str()), (401, "Unauthorized"));
    cluster.cleanup().await.unwrap();
}

fn kubelet_csr(node: &str) -> (String, String) {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, format!("system:node:{node}"));
    params.distinguished_name.push(DnType::OrganizationName, "system:nodes");
    let key = KeyPair::generate().unwrap();
    (params.serialize_request(&key).unwrap().pem().unwrap(), key.serialize_pem())
}

#[tokio::test]
async fn approved_kubelet_csr_yields_a_certificate_that_authenticates_as_the_node() {
    let cluster = TestCluster::start_tls().await.unwrap();
    let token = cluster.create_bootstrap_token().await.unwrap();
    let boot = client_from_kubeconfig(&cluster.bootstrap_kubeconfig(&token).unwrap()).await.unwrap();
    let (csr_pem, key_pem) = kubelet_csr(&cluster.node_name);
    let name = format!("csr-{}", cluster.node_name);
    let csr: CertificateSigningRequest = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "request": base64_encode(&csr_pem),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"],
            "expirationSeconds": 3600,
        },
    }))
    .unwrap();
    let csrs = Api::<CertificateSigningRequest>::all(boot);
    let created = csrs.create(&PostParams::default(), &csr).await.unwrap();
    let requester = created.spec.username.clone().unwrap_or_default();
    assert!(requester.starts_with("system:bootstrap:"), "spec.username is the requester: {requester}");
    assert!(created.status.and_then(|s| s.certificate).is_none());

    cluster.approve_csr(&name).await.unwrap();
    let cert = eventually("the signed certificate", 60, || async {
        csrs.get(&name).await.unwrap().status.and_then(|s| s.certificate).map(|c| c.0)
    })
    .await;
    let cert_pem = String::from_utf8(cert).unwrap();
    assert!(cert_pem.contains("BEGIN CERTIFICATE"));

    let kc = cluster.kubeconfig_for("node.kubeconfig", &Credentials::ClientCert { cert_pem, key_pem }).unwrap();
    let node_client = client_from_kubeconfig(&kc).await.unwrap();
    let (user, groups) = whoami(node_client).await;
    assert_eq!(user, format!("system:node:{}", cluster.node_name));
    assert!(groups.contains(&"system:nodes".to_owned()), "{groups:?}");

    if let Some(server) = &cluster.server {
        // A certificate from another CA is refused with 401.
        let other = testkit::apiserver::TestApiServer::start_tls().await.unwrap();
        let (cert_pem, key_pem) = other.issue_client_cert("intruder", &["system:masters"]).unwrap();
        let kc = cluster.kubeconfig_for("intruder.kubeconfig", &Credentials::ClientCert { cert_pem, key_pem }).unwrap();
        let intruder = client_from_kubeconfig(&kc).await.unwrap();
        let err =
            api_error(Api::<ConfigMap>::namespaced(intruder, &cluster.namespace).list(&ListParams::default()).await);
        assert_eq!(err.code, 401);
        assert!(server.ca_pem().contains("BEGIN CERTIFICATE"));
    }
    cluster.cleanup().await.unwrap();
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn subject_access_reviews_are_scriptable() {
    let cluster = TestCluster::start().await.unwrap();
    let Some(server) = &cluster.server else {
        return;
    };
    let api = Api::<SubjectAccessReview>::all(cluster.client.clone());
    let review = |user: &str| -> SubjectAccessReview {
        serde_json::from_value(json!({"spec": {"user": user, "groups": ["system:authenticated"],
            "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "default"}}}))
        .unwrap()
    };
    let allowed = |r: SubjectAccessReview| r.status.map(|s| s.allowed);
    assert_eq!(allowed(api.create(&PostParams::default(), &review("alice")).await.unwrap()), Some(true));
    server.set_subject_access_review(|spec| spec.user.as_deref() == Some("alice"));
    assert_eq!(allowed(api.create(&PostParams::default(), &review("alice")).await.unwrap()), Some(true));
    assert_eq!(allowed(api.create(&PostParams::default(), &review("mallory")).await.unwrap()), Some(false));
}
