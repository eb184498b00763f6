//! End-to-end: the kubelet API server (`--port`) in cluster mode with the upstream config-file
//! defaults (anonymous off, webhook authentication and authorization): 401 without or with bad
//! credentials, the API server's TokenReview and SubjectAccessReview deciding, upstream's 403
//! message and subresource mapping, and client certificates against `clientCAFile`.
//! The reviews are scripted, so this runs against the in-memory API server only.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};
use k8s_openapi::api::authorization::v1::ResourceAttributes;
use testkit::cluster::TestCluster;
use testkit::https::{TestCa, request};
use testkit::{NodeEnv, wait_for};

/// A SubjectAccessReview the API server was asked: user, groups, resource attributes.
type Asked = (String, Vec<String>, ResourceAttributes);

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_authenticated_and_authorized_as_upstream() {
    let Some(env) = NodeEnv::require() else { return };
    let cluster = TestCluster::start().await.unwrap();
    let Some(server) = cluster.server.as_ref() else {
        eprintln!("skipped on a real cluster: the test scripts TokenReview and SubjectAccessReview");
        return cluster.cleanup().await.unwrap();
    };
    server.set_token_review(|spec| {
        let user = |name: &str| UserInfo {
            username: Some(name.into()),
            groups: Some(vec!["testers".into()]),
            ..Default::default()
        };
        match spec.token.as_str() {
            "viewer-token" => {
                Some(TokenReviewStatus { authenticated: Some(true), user: Some(user("viewer")), ..Default::default() })
            }
            "ops-token" => {
                Some(TokenReviewStatus { authenticated: Some(true), user: Some(user("ops")), ..Default::default() })
            }
            _ => Some(TokenReviewStatus {
                authenticated: Some(false),
                error: Some("unknown token".into()),
                ..Default::default()
            }),
        }
    });
    let asked: Arc<Mutex<Vec<Asked>>> = Arc::default();
    let seen = asked.clone();
    server.set_subject_access_review(move |spec| {
        let attrs = spec.resource_attributes.clone().unwrap_or_default();
        let user = spec.user.clone().unwrap_or_default();
        seen.lock().unwrap().push((user.clone(), spec.groups.clone().unwrap_or_default(), attrs.clone()));
        let sub = attrs.subresource.as_deref().unwrap_or_default();
        user == "ops" || user.starts_with("system:node:") || (user == "viewer" && sub == "pods")
    });

    let ca = TestCa::new("test-client-ca").unwrap();
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), &ca.pem).unwrap();
    let config = format!("authentication:\n  x509:\n    clientCAFile: {}\n", ca_file.path().display());
    let a = common::cluster_agent(&env, &cluster, "kapi", &config);
    let port = a.port;
    let get = |path: &'static str, token: Option<&'static str>| async move {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|h| ("Authorization", h.as_str())).collect();
        request(port, "GET", path, &headers, None).await
    };
    wait_for("the kubelet API answers", Duration::from_secs(30), || async {
        get("/healthz", None).await.map_err(|e| format!("{e}\n{}", common::tail(&a.log())))
    })
    .await;

    // No credentials, or a token the API server does not accept: 401.
    assert_eq!(get("/pods", None).await.unwrap(), (401, "Unauthorized".into()));
    assert_eq!(get("/pods", Some("stolen")).await.unwrap(), (401, "Unauthorized".into()));

    // A reviewed token: the SubjectAccessReview decides, per subresource.
    let (code, body) = get("/pods", Some("viewer-token")).await.unwrap();
    assert_eq!(code, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["kind"], "PodList", "{body}");
    assert_eq!(
        get("/healthz", Some("viewer-token")).await.unwrap(),
        (403, "Forbidden (user=viewer, verb=get, resource=nodes, subresource(s)=[healthz proxy])\n".into())
    );
    let auth = "Bearer viewer-token";
    assert_eq!(
        request(port, "POST", "/exec/default/p/c?command=true", &[("Authorization", auth)], None).await.unwrap(),
        (403, "Forbidden (user=viewer, verb=create, resource=nodes, subresource(s)=[proxy])\n".into())
    );
    assert_eq!(get("/healthz", Some("ops-token")).await.unwrap(), (200, "ok".into()));
    {
        let asked = asked.lock().unwrap();
        let (user, groups, pods) =
            asked.iter().find(|(u, _, a)| u == "viewer" && a.subresource.as_deref() == Some("pods")).unwrap();
        assert_eq!(user, "viewer");
        assert!(
            groups.contains(&"testers".to_string()) && groups.contains(&"system:authenticated".to_string()),
            "{groups:?}"
        );
        assert_eq!(
            (pods.verb.as_deref(), pods.resource.as_deref(), pods.version.as_deref(), pods.name.as_deref()),
            (Some("get"), Some("nodes"), Some("v1"), Some(a.node.as_str()))
        );
    }

    // A client certificate from the configured CA authenticates as CN in groups O; one from
    // another CA is refused with 401, not at the TLS level.
    let node_cert = ca.client_cert("system:node:peer", &["system:nodes"]).unwrap();
    assert_eq!(request(port, "GET", "/healthz", &[], Some(node_cert)).await.unwrap(), (200, "ok".into()));
    let forged = TestCa::new("someone-else").unwrap().client_cert("system:node:peer", &["system:nodes"]).unwrap();
    assert_eq!(request(port, "GET", "/healthz", &[], Some(forged)).await.unwrap(), (401, "Unauthorized".into()));
    let viewer_cert = ca.client_cert("viewer", &["testers"]).unwrap();
    assert_eq!(request(port, "GET", "/pods", &[], Some(viewer_cert)).await.unwrap().0, 200);

    // The self-signed serving certificate was written where upstream keeps it.
    assert!(a.cert_dir().join("kubelet.crt").exists() && a.cert_dir().join("kubelet.key").exists());
    a.cleanup().await;
    cluster.cleanup().await.unwrap();
}
