//! End-to-end in cluster mode for what pods get from API objects: configMap, secret,
//! downwardAPI and projected volumes (contents, `items`, modes, optional sources, read-only
//! mounts, service account tokens), their live updates, and env from configMaps, secrets and
//! field references. The real rkubelet binary with `--kubeconfig`, on the private containerd,
//! against the in-memory test API server — or a real cluster when `RKUBELET_TEST_KUBECONFIG`
//! names one. What a container sees is read from inside it with CRI ExecSync (busybox).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cri::RuntimeService;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use testkit::apiserver::ServerOptions;
use testkit::cluster::TestCluster;
use testkit::{Agent, NodeEnv, wait_for};

/// Pods are resynced every 2 s, so a change the kubelet has to poll for (API objects behind its
/// cache, a configMap created after the pod) is picked up soon after it becomes visible.
const CONFIG: &str = "syncFrequency: 2s\nnodeStatusUpdateFrequency: 2s\n";

const SYNC_FREQUENCY: Duration = Duration::from_secs(2);

/// The audience of the tokens the tests ask for (not the API server's own).
const AUDIENCE: &str = "rkubelet-test";

const SLEEP: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

fn config_map(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap()
}

fn secret(name: &str, string_data: Value) -> Secret {
    serde_json::from_value(json!({"metadata": {"name": name}, "stringData": string_data})).unwrap()
}

fn pod(value: Value) -> Pod {
    serde_json::from_value(value).unwrap()
}

/// Waits until the pod runs with `container` ready; returns the pod and the container's runtime id.
async fn wait_running(a: &Agent, pods: &Api<Pod>, name: &str, container: &str) -> (Pod, String) {
    wait_for(&format!("pod {name} Running with {container} ready"), Duration::from_secs(60), || async {
        let p = pods.get(name).await.map_err(|e| e.to_string())?;
        let st = p.status.clone().unwrap_or_default();
        let cs = st.container_statuses.iter().flatten().find(|c| c.name == container && c.ready);
        match (st.phase.as_deref(), cs.and_then(|c| c.container_id.clone())) {
            (Some("Running"), Some(id)) => Ok((p, id.trim_start_matches("containerd://").to_string())),
            _ => Err(format!("{st:?}\n{}", common::tail(&a.log()))),
        }
    })
    .await
}

/// Runs `cmd` in the container: (exit code, stdout, stderr).
async fn exec(a: &Agent, cid: &str, cmd: &[&str]) -> (i32, String, String) {
    let r = a
        .cri()
        .exec_sync(cid, cmd.iter().map(|s| (*s).to_string()).collect(), 10)
        .await
        .unwrap_or_else(|e| panic!("exec {cmd:?}: {e}\n{}", common::tail(&a.log())));
    (r.exit_code, String::from_utf8_lossy(&r.stdout).into_owned(), String::from_utf8_lossy(&r.stderr).into_owned())
}

/// Runs `cmd`, which must succeed; its stdout.
async fn run(a: &Agent, cid: &str, cmd: &[&str]) -> String {
    let (code, out, err) = exec(a, cid, cmd).await;
    assert_eq!(code, 0, "{cmd:?} failed: {out}{err}\n{}", common::tail(&a.log()));
    out
}

async fn cat(a: &Agent, cid: &str, path: &str) -> String {
    run(a, cid, &["cat", path]).await
}

/// Permission bits of the file a path resolves to (the user-visible names are symlinks into
/// `..data`).
async fn mode(a: &Agent, cid: &str, path: &str) -> String {
    run(a, cid, &["stat", "-L", "-c", "%a", path]).await.trim().to_string()
}

/// The visible entries of a directory (`ls` hides `..data` and the timestamped dirs).
async fn ls(a: &Agent, cid: &str, dir: &str) -> Vec<String> {
    run(a, cid, &["ls", "-1", dir]).await.lines().map(str::to_string).collect()
}

/// The container's environment.
async fn env_of(a: &Agent, cid: &str) -> BTreeMap<String, String> {
    run(a, cid, &["env"])
        .await
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

fn base64url_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => u32::from(c - b'A'),
        b'a'..=b'z' => u32::from(c - b'a') + 26,
        b'0'..=b'9' => u32::from(c - b'0') + 52,
        b'-' | b'+' => 62,
        b'_' | b'/' => 63,
        other => panic!("not base64url: {:?}", other as char),
    };
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        acc = (acc << 6) | value(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).unwrap());
        }
    }
    out
}

/// The claims of a JWT (the signature is the API server's business: see [`review`]).
fn jwt_claims(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts, this token has {}", parts.len());
    let header: Value = serde_json::from_slice(&base64url_decode(parts[0])).expect("JWT header is JSON");
    assert!(header.get("alg").is_some(), "JWT header without alg: {header}");
    serde_json::from_slice(&base64url_decode(parts[1])).expect("JWT claims are JSON")
}

/// Asks the API server whether `token` is valid for `audiences` (TokenReview).
async fn review(cluster: &TestCluster, token: &str, audiences: &[&str]) -> TokenReviewStatus {
    let tr: TokenReview = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token, "audiences": audiences},
    }))
    .unwrap();
    let out = Api::<TokenReview>::all(cluster.client.clone()).create(&PostParams::default(), &tr).await.unwrap();
    out.status.unwrap_or_default()
}

/// Checks that `token` is a service account token of `default` in the test's namespace, bound
/// to the pod, for [`AUDIENCE`], that the API server accepts for that audience only. Returns
/// its claims.
async fn assert_pod_token(cluster: &TestCluster, token: &str, pod: &Pod) -> Value {
    let claims = jwt_claims(token);
    let ns = &cluster.namespace;
    let (name, uid) = (pod.metadata.name.clone().unwrap(), pod.metadata.uid.clone().unwrap());
    assert_eq!(claims["aud"], json!([AUDIENCE]), "{claims}");
    assert_eq!(claims["sub"], format!("system:serviceaccount:{ns}:default"), "{claims}");
    assert_eq!(claims["kubernetes.io"]["namespace"], json!(ns), "{claims}");
    assert_eq!(claims["kubernetes.io"]["pod"], json!({"name": name, "uid": uid}), "{claims}");
    let ok = review(cluster, token, &[AUDIENCE]).await;
    assert_eq!(ok.authenticated, Some(true), "{ok:?}");
    let user = ok.user.unwrap();
    assert_eq!(user.username.as_deref(), Some(format!("system:serviceaccount:{ns}:default").as_str()));
    let extra = user.extra.unwrap_or_default();
    assert_eq!(extra.get("authentication.kubernetes.io/pod-name"), Some(&vec![name]), "{extra:?}");
    assert_eq!(extra.get("authentication.kubernetes.io/pod-uid"), Some(&vec![uid]), "{extra:?}");
    // Audience-scoped: not a credential for the API server itself.
    let api = review(cluster, token, &[]).await;
    assert_ne!(api.authenticated, Some(true), "{api:?}");
    claims
}

/// TokenRequests the in-memory server answered for the test's namespace (None on a real cluster).
fn token_requests(cluster: &TestCluster) -> Option<usize> {
    let prefix = format!("/api/v1/namespaces/{}/serviceaccounts/", cluster.namespace);
    let server = cluster.server.as_ref()?;
    Some(
        server
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.starts_with(&prefix) && r.path.ends_with("/token"))
            .count(),
    )
}

/// Mount points below `dir` on the host (the tmpfs of secret, downwardAPI and projected
/// volumes).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(PathBuf::from))
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// Deletes the pods and waits until the kubelet removed them from the API and unmounted their
/// volumes (so nothing is left mounted below the agent's temporary root dir).
async fn delete_pods(a: &Agent, pods: &Api<Pod>, names: &[&str]) {
    for name in names {
        pods.delete(name, &DeleteParams { grace_period_seconds: Some(1), ..Default::default() }).await.unwrap();
    }
    wait_for("pods removed and their volumes unmounted", Duration::from_secs(40), || async {
        let mut left = Vec::new();
        for name in names {
            if pods.get_opt(name).await.map_err(|e| e.to_string())?.is_some() {
                left.push((*name).to_string());
            }
        }
        left.extend(mounts_under(&a.root_dir()).iter().map(|m| m.display().to_string()));
        if left.is_empty() { Ok(()) } else { Err(format!("left: {left:?}\n{}", common::tail(&a.log()))) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn config_map_secret_downward_api_and_projected_volumes() {
    let Some(env) = NodeEnv::require() else { return };
    let cluster = TestCluster::start().await.unwrap();
    let a = common::cluster_agent(&env, &cluster, "vols", CONFIG);
    let ns = cluster.namespace.clone();
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
    let pp = PostParams::default();
    cms.create(&pp, &config_map("app-config", json!({"greeting": "hello", "color": "blue", "unused": "x"})))
        .await
        .unwrap();
    secrets.create(&pp, &secret("app-secret", json!({"username": "admin", "password": "s3cr3t"}))).await.unwrap();
    let mount = |name: &str, path: &str| json!({"name": name, "mountPath": path});
    let manifest = pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "vols", "labels": {"app": "vols", "tier": "e2e"}},
        "spec": {
            "nodeName": a.node,
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "app", "image": env.test_image, "command": ["sh", "-c", SLEEP],
                "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}},
                "volumeMounts": [
                    mount("cm-all", "/etc/cm-all"), mount("cm-items", "/etc/cm-items"),
                    mount("secret", "/etc/secret"), mount("cm-optional", "/etc/cm-optional"),
                    mount("secret-optional", "/etc/secret-optional"), mount("podinfo", "/etc/podinfo"),
                    // readOnly: false is overridden: API-data volumes are always mounted read-only.
                    {"name": "all-in-one", "mountPath": "/etc/projected", "readOnly": false},
                ],
            }],
            "volumes": [
                {"name": "cm-all", "configMap": {"name": "app-config", "defaultMode": 0o640}},
                {"name": "cm-items", "configMap": {"name": "app-config", "defaultMode": 0o444, "items": [
                    {"key": "greeting", "path": "sub/hello.txt", "mode": 0o600},
                    {"key": "color", "path": "color"},
                ]}},
                {"name": "secret", "secret": {"secretName": "app-secret", "defaultMode": 0o400,
                    "items": [{"key": "password", "path": "pw"}]}},
                {"name": "cm-optional", "configMap": {"name": "no-such-config", "optional": true}},
                {"name": "secret-optional", "secret": {"secretName": "no-such-secret", "optional": true}},
                {"name": "podinfo", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                    {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}, "mode": 0o600},
                    {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
                    {"path": "cpu_limit", "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu", "divisor": "1m"}},
                    {"path": "mem_limit", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}},
                ]}},
                {"name": "all-in-one", "projected": {"defaultMode": 0o440, "sources": [
                    {"configMap": {"name": "app-config", "items": [{"key": "greeting", "path": "cm/greeting", "mode": 0o600}]}},
                    {"secret": {"name": "app-secret", "items": [{"key": "username", "path": "secret/user"}]}},
                    {"downwardAPI": {"items": [{"path": "pod/name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                    {"serviceAccountToken": {"audience": AUDIENCE, "expirationSeconds": 3600, "path": "token"}},
                ]}},
            ],
        }
    }));
    pods.create(&pp, &manifest).await.unwrap();
    // Running although two of its (optional) sources do not exist.
    let (running, cid) = wait_running(&a, &pods, "vols", "app").await;
    let uid = running.metadata.uid.clone().unwrap();

    // configMap, every key, defaultMode; the names are links into ..data (atomic updates).
    assert_eq!(ls(&a, &cid, "/etc/cm-all").await, ["color", "greeting", "unused"]);
    assert_eq!(cat(&a, &cid, "/etc/cm-all/greeting").await, "hello");
    assert_eq!(cat(&a, &cid, "/etc/cm-all/color").await, "blue");
    assert_eq!(mode(&a, &cid, "/etc/cm-all/greeting").await, "640");
    assert_eq!(run(&a, &cid, &["readlink", "/etc/cm-all/greeting"]).await.trim(), "..data/greeting");
    // items: only the listed keys, at their paths (subdirectories made), with their own mode.
    assert_eq!(ls(&a, &cid, "/etc/cm-items").await, ["color", "sub"]);
    assert_eq!(cat(&a, &cid, "/etc/cm-items/sub/hello.txt").await, "hello");
    assert_eq!(mode(&a, &cid, "/etc/cm-items/sub/hello.txt").await, "600");
    assert_eq!(mode(&a, &cid, "/etc/cm-items/color").await, "444");
    // secret with items and defaultMode.
    assert_eq!(ls(&a, &cid, "/etc/secret").await, ["pw"]);
    assert_eq!(cat(&a, &cid, "/etc/secret/pw").await, "s3cr3t");
    assert_eq!(mode(&a, &cid, "/etc/secret/pw").await, "400");
    // Optional sources that do not exist: empty volumes.
    assert!(ls(&a, &cid, "/etc/cm-optional").await.is_empty());
    assert!(ls(&a, &cid, "/etc/secret-optional").await.is_empty());
    // downwardAPI: metadata (maps as sorted key="value" lines), resources with divisors, modes.
    assert_eq!(cat(&a, &cid, "/etc/podinfo/labels").await, "app=\"vols\"\ntier=\"e2e\"");
    assert_eq!(cat(&a, &cid, "/etc/podinfo/name").await, "vols");
    assert_eq!(cat(&a, &cid, "/etc/podinfo/ns").await, ns);
    assert_eq!(cat(&a, &cid, "/etc/podinfo/uid").await, uid);
    assert_eq!(cat(&a, &cid, "/etc/podinfo/cpu_limit").await, "250");
    assert_eq!(cat(&a, &cid, "/etc/podinfo/mem_limit").await, "64");
    assert_eq!(mode(&a, &cid, "/etc/podinfo/ns").await, "600");
    assert_eq!(mode(&a, &cid, "/etc/podinfo/name").await, "644");
    // projected: the four sources in one directory, the volume's defaultMode unless an item has one.
    assert_eq!(ls(&a, &cid, "/etc/projected").await, ["cm", "pod", "secret", "token"]);
    assert_eq!(cat(&a, &cid, "/etc/projected/cm/greeting").await, "hello");
    assert_eq!(mode(&a, &cid, "/etc/projected/cm/greeting").await, "600");
    assert_eq!(cat(&a, &cid, "/etc/projected/secret/user").await, "admin");
    assert_eq!(mode(&a, &cid, "/etc/projected/secret/user").await, "440");
    assert_eq!(cat(&a, &cid, "/etc/projected/pod/name").await, "vols");
    assert_eq!(mode(&a, &cid, "/etc/projected/token").await, "440");
    let token = cat(&a, &cid, "/etc/projected/token").await;
    assert!(!token.is_empty());
    let claims = assert_pod_token(&cluster, &token, &running).await;
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600, "{claims}");
    // The service account volume the admission plugin added works too.
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    assert_eq!(cat(&a, &cid, &format!("{sa}/namespace")).await, ns);
    assert!(!cat(&a, &cid, &format!("{sa}/token")).await.is_empty());
    assert!(cat(&a, &cid, &format!("{sa}/ca.crt")).await.contains("BEGIN CERTIFICATE"));

    // Read-only mounts: writing fails, and the mount table says so; the kinds that may hold
    // secrets are on tmpfs.
    let mount_table = cat(&a, &cid, "/proc/mounts").await;
    for dir in ["/etc/cm-all", "/etc/cm-items", "/etc/secret", "/etc/cm-optional", "/etc/podinfo", "/etc/projected"] {
        let (code, out, err) = exec(&a, &cid, &["sh", "-c", &format!("echo x > {dir}/new")]).await;
        assert_ne!(code, 0, "wrote into {dir}: {out}");
        assert!(err.contains("Read-only file system"), "{dir}: {err}");
        let (code, _, err) = exec(&a, &cid, &["rm", "-f", &format!("{dir}/..data")]).await;
        assert_ne!(code, 0, "removed {dir}/..data: {err}");
        let entry = mount_table.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|f| f[1] == dir);
        let entry = entry.unwrap_or_else(|| panic!("{dir} not in /proc/mounts:\n{mount_table}"));
        assert!(entry[3].split(',').any(|o| o == "ro"), "{dir} mounted {entry:?}");
        if dir != "/etc/cm-all" && dir != "/etc/cm-items" && dir != "/etc/cm-optional" {
            assert_eq!(entry[2], "tmpfs", "{dir} mounted {entry:?}");
        }
    }

    delete_pods(&a, &pods, &["vols"]).await;
    a.cleanup().await;
    cluster.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_reach_running_containers() {
    let Some(env) = NodeEnv::require() else { return };
    let cluster = TestCluster::start().await.unwrap();
    let a = common::cluster_agent(&env, &cluster, "live", CONFIG);
    let ns = cluster.namespace.clone();
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
    let pp = PostParams::default();
    cms.create(&pp, &config_map("live-config", json!({"key": "v1", "old": "gone-soon"}))).await.unwrap();
    secrets.create(&pp, &secret("live-secret", json!({"pw": "p1"}))).await.unwrap();
    let manifest = pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "live", "labels": {"rev": "1"}},
        "spec": {
            "nodeName": a.node,
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "app", "image": env.test_image, "command": ["sh", "-c", SLEEP],
                "env": [{"name": "KEY", "valueFrom": {"configMapKeyRef": {"name": "live-config", "key": "key"}}}],
                "volumeMounts": [
                    {"name": "cm", "mountPath": "/etc/cm"},
                    {"name": "cm-items", "mountPath": "/etc/cm-items"},
                    {"name": "secret", "mountPath": "/etc/secret"},
                    {"name": "projected", "mountPath": "/etc/projected"},
                    {"name": "podinfo", "mountPath": "/etc/podinfo"},
                ],
            }],
            "volumes": [
                {"name": "cm", "configMap": {"name": "live-config"}},
                {"name": "cm-items", "configMap": {"name": "live-config", "items": [{"key": "key", "path": "renamed"}]}},
                {"name": "secret", "secret": {"secretName": "live-secret"}},
                {"name": "projected", "projected": {"sources": [
                    {"configMap": {"name": "live-config", "items": [{"key": "key", "path": "cm-key"}]}},
                    {"secret": {"name": "live-secret", "items": [{"key": "pw", "path": "secret-pw"}]}},
                ]}},
                {"name": "podinfo", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            ],
        }
    }));
    pods.create(&pp, &manifest).await.unwrap();
    let (_, cid) = wait_running(&a, &pods, "live", "app").await;
    let sa_token_path = "/var/run/secrets/kubernetes.io/serviceaccount/token";
    let sa_token = cat(&a, &cid, sa_token_path).await;
    assert_eq!(ls(&a, &cid, "/etc/cm").await, ["key", "old"]);
    assert_eq!(cat(&a, &cid, "/etc/cm/key").await, "v1");
    assert_eq!(cat(&a, &cid, "/etc/cm-items/renamed").await, "v1");
    assert_eq!(cat(&a, &cid, "/etc/secret/pw").await, "p1");
    assert_eq!(cat(&a, &cid, "/etc/projected/cm-key").await, "v1");
    assert_eq!(cat(&a, &cid, "/etc/projected/secret-pw").await, "p1");
    assert_eq!(cat(&a, &cid, "/etc/podinfo/labels").await, "rev=\"1\"");

    // A pod change is a pod update: the downward API file follows at once.
    let labels = json!({"metadata": {"labels": {"rev": "2"}}});
    pods.patch("live", &PatchParams::default(), &Patch::Merge(&labels)).await.unwrap();
    wait_for("downward API labels updated", Duration::from_secs(20), || async {
        match cat(&a, &cid, "/etc/podinfo/labels").await {
            l if l == "rev=\"2\"" => Ok(()),
            l => Err(l),
        }
    })
    .await;

    // The objects change: a key changes, one is removed, the secret changes.
    let requests_before = cluster.server.as_ref().map_or(0, |s| s.requests().len());
    let updated = Instant::now();
    let cm_patch = json!({"data": {"key": "v2", "old": null}});
    cms.patch("live-config", &PatchParams::default(), &Patch::Merge(&cm_patch)).await.unwrap();
    let secret_patch = json!({"stringData": {"pw": "p2"}});
    secrets.patch("live-secret", &PatchParams::default(), &Patch::Merge(&secret_patch)).await.unwrap();
    // The kubelet watches the configMaps and secrets its pods refer to (the default "Watch"
    // change detection strategy) and rewrites volumes on pod syncs: a change shows within one
    // syncFrequency, plus margin for the exec round trips — well before the minute a "Cache"
    // TTL would take.
    let deadline = SYNC_FREQUENCY + Duration::from_secs(15);
    wait_for("configMap and secret updates in the container", deadline, || async {
        let seen = [
            cat(&a, &cid, "/etc/cm/key").await,
            ls(&a, &cid, "/etc/cm").await.join(","),
            cat(&a, &cid, "/etc/cm-items/renamed").await,
            cat(&a, &cid, "/etc/secret/pw").await,
            cat(&a, &cid, "/etc/projected/cm-key").await,
            cat(&a, &cid, "/etc/projected/secret-pw").await,
        ];
        if seen == ["v2", "key", "v2", "p2", "v2", "p2"] { Ok(()) } else { Err(format!("{seen:?}")) }
    })
    .await;
    eprintln!("configMap/secret update reached the container after {:?}", updated.elapsed());
    // The pod syncs that rewrote the volumes read the objects from their watches, not with a
    // GET each (which is what an object no pod registered costs).
    if let Some(server) = &cluster.server {
        let gets: Vec<String> = server
            .requests()
            .into_iter()
            .skip(requests_before)
            .filter(|r| {
                r.method == "GET"
                    && (r.path.ends_with("/configmaps/live-config") || r.path.ends_with("/secrets/live-secret"))
            })
            .map(|r| r.path)
            .collect();
        assert!(gets.is_empty(), "objects fetched instead of watched: {gets:?}");
    }

    // Nothing was restarted for it, and env stays what it was when the container started.
    let p = pods.get("live").await.unwrap();
    let cs = &p.status.unwrap().container_statuses.unwrap()[0];
    assert_eq!(cs.container_id.as_deref().map(|c| c.trim_start_matches("containerd://")), Some(cid.as_str()));
    assert_eq!(cs.restart_count, 0);
    assert_eq!(env_of(&a, &cid).await.get("KEY").map(String::as_str), Some("v1"));
    // The 2 s resyncs meanwhile did not re-request the service account token (it is refreshed
    // at 80% of its life): same token, one TokenRequest for the pod.
    assert!(cat(&a, &cid, sa_token_path).await == sa_token, "service account token changed");
    if let Some(n) = token_requests(&cluster) {
        assert_eq!(n, 1, "TokenRequests for one pod with one token projection");
    }

    delete_pods(&a, &pods, &["live"]).await;
    a.cleanup().await;
    cluster.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn env_from_objects_and_fields_and_waiting_for_a_missing_config_map() {
    let Some(env) = NodeEnv::require() else { return };
    let cluster = TestCluster::start().await.unwrap();
    let a = common::cluster_agent(&env, &cluster, "env", CONFIG);
    let ns = cluster.namespace.clone();
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
    let pp = PostParams::default();
    cms.create(&pp, &config_map("env-config", json!({"greeting": "hello", "color": "blue", "POD_NAME": "from-cm"})))
        .await
        .unwrap();
    secrets.create(&pp, &secret("env-secret", json!({"password": "s3cr3t", "token": "abc"}))).await.unwrap();
    let from = |kind: &str, name: &str, key: &str| json!({kind: {"name": name, "key": key}});
    let field = |path: &str| json!({"fieldRef": {"fieldPath": path}});
    let with_env = pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "envs"},
        "spec": {
            "nodeName": a.node,
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "app", "image": env.test_image, "command": ["sh", "-c", SLEEP],
                "resources": {"limits": {"memory": "64Mi"}},
                "envFrom": [
                    {"configMapRef": {"name": "env-config"}},
                    {"prefix": "S_", "secretRef": {"name": "env-secret"}},
                    {"configMapRef": {"name": "no-such-config", "optional": true}},
                ],
                "env": [
                    {"name": "GREETING", "valueFrom": from("configMapKeyRef", "env-config", "greeting")},
                    {"name": "PASSWORD", "valueFrom": from("secretKeyRef", "env-secret", "password")},
                    {"name": "POD_NAME", "valueFrom": field("metadata.name")},
                    {"name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace")},
                    {"name": "POD_UID", "valueFrom": field("metadata.uid")},
                    {"name": "NODE_NAME", "valueFrom": field("spec.nodeName")},
                    {"name": "SA", "valueFrom": field("spec.serviceAccountName")},
                    {"name": "POD_IP", "valueFrom": field("status.podIP")},
                    {"name": "MEM_MB", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "OPTIONAL", "valueFrom": {"configMapKeyRef": {"name": "no-such-config", "key": "k", "optional": true}}},
                    {"name": "COMPOSED", "value": "$(GREETING)-$(color)"},
                ],
            }],
        }
    }));
    let waiting = pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "waits"},
        "spec": {
            "nodeName": a.node,
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "app", "image": env.test_image, "command": ["sh", "-c", SLEEP],
                "env": [{"name": "LATE", "valueFrom": from("configMapKeyRef", "late-config", "key")}],
            }],
        }
    }));
    pods.create(&pp, &with_env).await.unwrap();
    pods.create(&pp, &waiting).await.unwrap();

    // The env reaches the container: envFrom (with prefix), key refs, fields, resources,
    // expansion; explicit env wins over envFrom; missing optional sources are skipped.
    let (p, cid) = wait_running(&a, &pods, "envs", "app").await;
    let vars = env_of(&a, &cid).await;
    let get = |k: &str| vars.get(k).map(String::as_str);
    let pod_ip = p.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap();
    assert_eq!(get("greeting"), Some("hello"), "{vars:?}");
    assert_eq!(get("color"), Some("blue"));
    assert_eq!(get("S_password"), Some("s3cr3t"));
    assert_eq!(get("S_token"), Some("abc"));
    assert_eq!(get("GREETING"), Some("hello"));
    assert_eq!(get("PASSWORD"), Some("s3cr3t"));
    assert_eq!(get("POD_NAME"), Some("envs"));
    assert_eq!(get("POD_NAMESPACE"), Some(ns.as_str()));
    assert_eq!(get("POD_UID"), p.metadata.uid.as_deref());
    assert_eq!(get("NODE_NAME"), Some(a.node.as_str()));
    assert_eq!(get("SA"), Some("default"));
    assert_eq!(get("POD_IP"), Some(pod_ip.as_str()));
    assert_eq!(get("MEM_MB"), Some("64"));
    assert_eq!(get("OPTIONAL"), None);
    assert_eq!(get("COMPOSED"), Some("hello-blue"));
    assert_eq!(run(&a, &cid, &["sh", "-c", "echo \"$PASSWORD\""]).await, "s3cr3t\n");

    // A required configMap that does not exist: the container waits with upstream's reason and
    // message, and the pod stays Pending.
    let expected = "configmap \"late-config\" not found";
    wait_for("CreateContainerConfigError in the API", Duration::from_secs(60), || async {
        let p = pods.get("waits").await.map_err(|e| e.to_string())?;
        let st = p.status.clone().unwrap_or_default();
        let w = st
            .container_statuses
            .iter()
            .flatten()
            .find(|c| c.name == "app")
            .and_then(|c| c.state.as_ref()?.waiting.clone());
        match w {
            Some(w)
                if w.reason.as_deref() == Some("CreateContainerConfigError")
                    && w.message.as_deref() == Some(expected)
                    && st.phase.as_deref() == Some("Pending") =>
            {
                Ok(())
            }
            _ => Err(format!("{st:?}\n{}", common::tail(&a.log()))),
        }
    })
    .await;
    assert!(a.containers_of_pod("waits").await.is_empty(), "no container is created without its env");
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), &ns);
    wait_for("Failed event", Duration::from_secs(20), || async {
        let list = events.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        let found = list.items.iter().any(|e| {
            e.involved_object.name.as_deref() == Some("waits")
                && e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some("Failed")
                && e.message.as_deref() == Some(format!("Error: {expected}").as_str())
        });
        let seen: Vec<_> = list.items.iter().map(|e| (e.reason.clone(), e.message.clone())).collect();
        if found { Ok(()) } else { Err(format!("{seen:?}")) }
    })
    .await;

    // Once it exists the container starts (missing objects are not cached).
    cms.create(&pp, &config_map("late-config", json!({"key": "finally"}))).await.unwrap();
    let (_, late_cid) = wait_running(&a, &pods, "waits", "app").await;
    assert_eq!(run(&a, &late_cid, &["sh", "-c", "echo \"$LATE\""]).await, "finally\n");

    // Regression: a pod created after a configMap changed gets the new data at once, not the
    // copy cached for an earlier pod (upstream re-reads an object when a pod that refers to it
    // is added).
    cms.patch("env-config", &PatchParams::default(), &Patch::Merge(json!({"data": {"greeting": "bonjour"}})))
        .await
        .unwrap();
    let later = pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "later"},
        "spec": {
            "nodeName": a.node,
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "app", "image": env.test_image, "command": ["sh", "-c", SLEEP],
                "env": [{"name": "GREETING", "valueFrom": from("configMapKeyRef", "env-config", "greeting")}],
            }],
        }
    }));
    pods.create(&pp, &later).await.unwrap();
    let (_, later_cid) = wait_running(&a, &pods, "later", "app").await;
    assert_eq!(
        run(&a, &later_cid, &["sh", "-c", "echo \"$GREETING\""]).await,
        "bonjour\n",
        "stale configMap for a new pod"
    );

    delete_pods(&a, &pods, &["envs", "waits", "later"]).await;
    a.cleanup().await;
    cluster.cleanup().await.unwrap();
}

/// A pod whose only token is a projected one for [`AUDIENCE`], asked for 600 s, at
/// `/var/run/secrets/tokens/sa-token`.
fn token_pod(name: &str, node: &str, image: &str) -> Pod {
    pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 5,
            "automountServiceAccountToken": false,
            "containers": [{
                "name": "app", "image": image, "command": ["sh", "-c", SLEEP],
                "volumeMounts": [{"name": "token", "mountPath": "/var/run/secrets/tokens"}],
            }],
            "volumes": [{"name": "token", "projected": {"sources": [
                {"serviceAccountToken": {"audience": AUDIENCE, "expirationSeconds": 600, "path": "sa-token"}},
            ]}}],
        }
    }))
}

/// A projected token with the shortest lifetime the API allows (600 s; the kubelet would
/// refresh it after 480 s, too long for a test): it is bound to the pod, valid for its audience
/// only, requested once, and — the kubelet's token cache being in memory — replaced by a new
/// valid token in the running container when the kubelet restarts.
#[tokio::test(flavor = "multi_thread")]
async fn projected_token_is_bound_valid_and_reissued_after_a_kubelet_restart() {
    let Some(env) = NodeEnv::require() else { return };
    let cluster = TestCluster::start().await.unwrap();
    let mut a = common::cluster_agent(&env, &cluster, "token", CONFIG);
    let ns = cluster.namespace.clone();
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
    let manifest = token_pod("tok", &a.node, &env.test_image);
    pods.create(&PostParams::default(), &manifest).await.unwrap();
    let (running, cid) = wait_running(&a, &pods, "tok", "app").await;
    let path = "/var/run/secrets/tokens/sa-token";
    let first = cat(&a, &cid, path).await;
    let claims = assert_pod_token(&cluster, &first, &running).await;
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600, "{claims}");
    assert_eq!(mode(&a, &cid, path).await, "644");
    // automountServiceAccountToken: false: this is the pod's only token, requested once.
    if let Some(n) = token_requests(&cluster) {
        assert_eq!(n, 1, "TokenRequests");
    }

    // A restarted kubelet has no cached token: it requests one and swaps it into the running
    // container (which it adopts, not restarts).
    a.kill9();
    a.spawn();
    let second = wait_for("a new token in the container", Duration::from_secs(30), || async {
        let t = cat(&a, &cid, path).await;
        if t != first && !t.is_empty() { Ok(t) } else { Err(format!("same token\n{}", common::tail(&a.log()))) }
    })
    .await;
    let claims = assert_pod_token(&cluster, &second, &running).await;
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600, "{claims}");
    if let Some(n) = token_requests(&cluster) {
        assert_eq!(n, 2, "TokenRequests after the restart");
    }
    let p = pods.get("tok").await.unwrap();
    let cs = &p.status.unwrap().container_statuses.unwrap()[0];
    assert_eq!(cs.container_id.as_deref().map(|c| c.trim_start_matches("containerd://")), Some(cid.as_str()));
    assert_eq!(cs.restart_count, 0);

    delete_pods(&a, &pods, &["tok"]).await;
    a.cleanup().await;
    cluster.cleanup().await.unwrap();
}

/// Token refresh: the in-memory server issues 20 s tokens whatever is asked (a test knob; a
/// real server's lifetimes are its own, so this runs against the in-memory one only). The
/// kubelet requests a new token at 80% of the lifetime it was given and swaps it into the
/// running container, before the old one expires.
#[tokio::test(flavor = "multi_thread")]
async fn projected_token_is_refreshed_before_it_expires() {
    let Some(env) = NodeEnv::require() else { return };
    let lifetime = Duration::from_secs(20);
    let options = ServerOptions { max_token_lifetime: Some(lifetime), ..Default::default() };
    let cluster = TestCluster::start_with(options).await.unwrap();
    if cluster.is_real() {
        eprintln!("skipped on a real cluster: token lifetimes are the server's");
        return cluster.cleanup().await.unwrap();
    }
    let a = common::cluster_agent(&env, &cluster, "refresh", CONFIG);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let manifest = token_pod("fresh", &a.node, &env.test_image);
    pods.create(&PostParams::default(), &manifest).await.unwrap();
    let (running, cid) = wait_running(&a, &pods, "fresh", "app").await;
    let path = "/var/run/secrets/tokens/sa-token";
    let first = cat(&a, &cid, path).await;
    let claims = assert_pod_token(&cluster, &first, &running).await;
    let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 20, "the server's lifetime, not the requested one: {claims}");

    let second = wait_for("a refreshed token in the running container", lifetime, || async {
        let t = cat(&a, &cid, path).await;
        if t != first && !t.is_empty() { Ok(t) } else { Err(format!("same token\n{}", common::tail(&a.log()))) }
    })
    .await;
    let refreshed_at =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()).unwrap();
    assert!(refreshed_at < exp, "refreshed before the old token expired ({refreshed_at} vs {exp})");
    assert!(refreshed_at >= iat + 15, "refreshed at 80% of the lifetime, not at once ({refreshed_at} vs {iat})");
    let claims = assert_pod_token(&cluster, &second, &running).await;
    assert!(claims["exp"].as_i64().unwrap() > exp, "{claims}");
    let p = pods.get("fresh").await.unwrap();
    assert_eq!(p.status.unwrap().container_statuses.unwrap()[0].restart_count, 0, "refresh restarts nothing");

    delete_pods(&a, &pods, &["fresh"]).await;
    a.cleanup().await;
    cluster.cleanup().await.unwrap();
}
