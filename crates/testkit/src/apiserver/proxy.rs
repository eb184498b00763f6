//! The pod "connect" subresources `exec`, `attach`, `portforward` and the `log` subresource,
//! proxied to the kubelet of the pod's node as upstream's pod REST storage does
//! (`ExecLocation`, `AttachLocation`, `PortForwardLocation`, `LogLocation`): the pod must exist
//! and be bound, the container defaults to the only one, the options are rewritten to the
//! kubelet's parameter names, and the request goes over TLS to the node's address and
//! `daemonEndpoints.kubeletEndpoint.Port` with the server's own kubelet-client certificate.
//!
//! Upgrades (SPDY, WebSocket) are passed through byte for byte. Unlike a real API server this one
//! does not translate WebSocket `v5.channel.k8s.io` (or the SPDY-in-WebSocket port-forward
//! tunnel) to SPDY: rkubelet serves both itself, so kubectl works with either.
//! The node address is taken in the order InternalIP, ExternalIP, Hostname
//! (`--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname`); the kubelet's serving
//! certificate is not verified (no `--kubelet-certificate-authority`).

use std::sync::Arc;

use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

use super::auth::{self, UserInfo};
use super::errors::{ApiError, ApiResult};
use super::resources;
use super::state::Shared;
use super::verbs;

/// The proxied subresources.
const SUBRESOURCES: [&str; 4] = ["exec", "attach", "portforward", "log"];

/// A request for a proxied pod subresource: namespace, pod, subresource.
pub(crate) struct Target {
    pub namespace: String,
    pub pod: String,
    pub sub: &'static str,
}

/// `/api/v1/namespaces/<ns>/pods/<name>/<exec|attach|portforward|log>`.
pub(crate) fn target(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["api", "v1", "namespaces", ns, "pods", pod, sub] => {
            let sub = SUBRESOURCES.iter().find(|s| *s == sub)?;
            Some(Target { namespace: (*ns).to_owned(), pod: (*pod).to_owned(), sub })
        }
        _ => None,
    }
}

/// Authorizes and proxies the request; errors are `Status` answers.
pub(crate) async fn serve(shared: &Arc<Shared>, user: &UserInfo, t: &Target, req: Request) -> ApiResult<Response> {
    let pods = resources::find("", "v1", "pods").ok_or_else(|| ApiError::internal("no pods resource"))?;
    let verb = match (req.method(), t.sub) {
        (&Method::GET, _) => "get",
        (&Method::POST, "exec" | "attach" | "portforward") => "create",
        _ => return Err(ApiError::method_not_allowed()),
    };
    auth::authorize(user, verb, pods, Some(t.sub), Some(&t.namespace), Some(&t.pod))?;
    let pod = verbs::get(shared, pods, Some(&t.namespace), &t.pod)?;
    let query: Vec<(String, String)> = serde_urlencoded::from_str(req.uri().query().unwrap_or_default())
        .map_err(|e| ApiError::bad_request(format!("decoding the query: {e}")))?;
    let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::bad_request(format!("pod {} does not have a host assigned", t.pod)));
    }
    let path = kubelet_path(t, &pod, &query)?;
    let nodes = resources::find("", "v1", "nodes").ok_or_else(|| ApiError::internal("no nodes resource"))?;
    let (host, port) = kubelet_address(&verbs::get(shared, nodes, None, node)?)
        .ok_or_else(|| ApiError::internal(format!("node {node} has no address")))?;
    let tls = connect(shared, &host, port).await.map_err(ApiError::internal)?;
    let resp = server::proxy::forward(req, tls, &format!("{host}:{port}"), &path).await.map_err(ApiError::internal)?;
    if t.sub == "log" {
        return check_log_response(resp).await;
    }
    Ok(resp)
}

/// The kubelet path and query for the subresource (upstream `streamLocation`, `LogLocation`,
/// `PortForwardLocation`).
fn kubelet_path(t: &Target, pod: &Value, query: &[(String, String)]) -> ApiResult<String> {
    let value = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let flag = |k: &str| value(k).is_some_and(|v| matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True"));
    let (ns, name) = (&t.namespace, &t.pod);
    let mut params: Vec<(&str, String)> = Vec::new();
    let path = match t.sub {
        "portforward" => {
            for (_, p) in query.iter().filter(|(k, _)| k == "ports") {
                params.push(("port", p.clone()));
            }
            format!("/portForward/{ns}/{name}")
        }
        "log" => {
            let container = container(pod, value("container"))?;
            for k in ["follow", "previous", "timestamps"] {
                if flag(k) {
                    params.push((k, "true".to_owned()));
                }
            }
            for k in ["sinceSeconds", "sinceTime", "tailLines", "limitBytes"] {
                if let Some(v) = value(k) {
                    params.push((k, v.to_owned()));
                }
            }
            format!("/containerLogs/{ns}/{name}/{container}")
        }
        sub => {
            let container = container(pod, value("container"))?;
            if sub == "exec" {
                for (_, c) in query.iter().filter(|(k, _)| k == "command") {
                    params.push(("command", c.clone()));
                }
            }
            for (option, param) in [("stdin", "input"), ("stdout", "output"), ("stderr", "error"), ("tty", "tty")] {
                if flag(option) {
                    params.push((param, "1".to_owned()));
                }
            }
            format!("/{sub}/{ns}/{name}/{container}")
        }
    };
    let encoded = serde_urlencoded::to_string(&params).map_err(ApiError::internal)?;
    Ok(if encoded.is_empty() { path } else { format!("{path}?{encoded}") })
}

/// The named container, or the pod's only one (upstream `validateContainer` and
/// `getContainerNames`' messages).
fn container(pod: &Value, requested: Option<&str>) -> ApiResult<String> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let names = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect()
    };
    let (containers, init, ephemeral) = (names("containers"), names("initContainers"), names("ephemeralContainers"));
    match requested.filter(|c| !c.is_empty()) {
        Some(c) if containers.iter().chain(&init).chain(&ephemeral).any(|n| n == c) => Ok(c.to_owned()),
        Some(c) => Err(ApiError::bad_request(format!("container {c} is not valid for pod {name}"))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut msg =
                format!("a container name must be specified for pod {name}, choose one of: [{}]", containers.join(" "));
            if !init.is_empty() {
                msg.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
            }
            if !ephemeral.is_empty() {
                msg.push_str(&format!(" or one of the ephemeral containers: [{}]", ephemeral.join(" ")));
            }
            Err(ApiError::bad_request(msg))
        }
    }
}

/// The node's kubelet: the first InternalIP, ExternalIP or Hostname address and the kubelet
/// endpoint's port (10250 when the node reports none).
fn kubelet_address(node: &Value) -> Option<(String, u16)> {
    let addresses = node.pointer("/status/addresses").and_then(Value::as_array)?;
    let host = ["InternalIP", "ExternalIP", "Hostname"].iter().find_map(|ty| {
        addresses.iter().find(|a| a["type"] == *ty).and_then(|a| a["address"].as_str()).map(str::to_owned)
    })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(10250);
    Some((host, port))
}

async fn connect(shared: &Shared, host: &str, port: u16) -> Result<crate::https::TlsStream, String> {
    let (cert_pem, key_pem) = &shared.kubelet_client;
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the kubelet client certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("the kubelet client key: {e}"))?;
    crate::https::connect_to(host, port, Some((chain, key))).await.map_err(|e| format!("dialing the kubelet: {e}"))
}

/// Upstream `GenericHttpResponseChecker`: a kubelet error becomes a `Status` carrying its text.
async fn check_log_response(resp: Response) -> ApiResult<Response> {
    let code = resp.status().as_u16();
    if (200..=206).contains(&code) {
        return Ok(resp);
    }
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim_end().to_owned();
    Err(match code {
        400 => ApiError::bad_request(text),
        _ => ApiError::internal(text),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod() -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n",
            "initContainers": [{"name": "init"}], "containers": [{"name": "a"}, {"name": "b"}]}})
    }

    fn t(sub: &'static str) -> Target {
        Target { namespace: "ns".into(), pod: "p".into(), sub }
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn targets_only_the_proxied_subresources() {
        let t = target("/api/v1/namespaces/ns/pods/p/exec").unwrap();
        assert_eq!((t.namespace.as_str(), t.pod.as_str(), t.sub), ("ns", "p", "exec"));
        assert!(target("/api/v1/namespaces/ns/pods/p/status").is_none());
        assert!(target("/api/v1/namespaces/ns/pods/p").is_none());
    }

    #[test]
    fn exec_options_become_kubelet_parameters() {
        let query = q(&[("container", "b"), ("command", "sh"), ("command", "-c"), ("stdin", "true"), ("tty", "false")]);
        let path = kubelet_path(&t("exec"), &pod(), &query).unwrap();
        assert_eq!(path, "/exec/ns/p/b?command=sh&command=-c&input=1");
        let path = kubelet_path(&t("attach"), &pod(), &q(&[("container", "a"), ("stdout", "1")])).unwrap();
        assert_eq!(path, "/attach/ns/p/a?output=1");
        let path = kubelet_path(&t("portforward"), &pod(), &q(&[("ports", "80")])).unwrap();
        assert_eq!(path, "/portForward/ns/p?port=80");
        let path =
            kubelet_path(&t("log"), &pod(), &q(&[("container", "a"), ("follow", "true"), ("tailLines", "2")])).unwrap();
        assert_eq!(path, "/containerLogs/ns/p/a?follow=true&tailLines=2");
    }

    #[test]
    fn container_defaults_to_the_only_one_as_upstream() {
        let e = kubelet_path(&t("exec"), &pod(), &[]).unwrap_err();
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [init]"
        );
        let e = kubelet_path(&t("log"), &pod(), &q(&[("container", "zz")])).unwrap_err();
        assert_eq!(e.message, "container zz is not valid for pod p");
        let single = json!({"metadata": {"name": "s"}, "spec": {"containers": [{"name": "only"}]}});
        assert_eq!(kubelet_path(&t("log"), &single, &[]).unwrap(), "/containerLogs/ns/p/only");
    }

    #[test]
    fn kubelet_address_prefers_internal_ip_and_the_reported_port() {
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "h"}, {"type": "InternalIP", "address": "10.0.0.2"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 12345}}}});
        assert_eq!(kubelet_address(&node), Some(("10.0.0.2".into(), 12345)));
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "h"}]}});
        assert_eq!(kubelet_address(&node), Some(("h".into(), 10250)));
        assert_eq!(kubelet_address(&json!({})), None);
    }
}
