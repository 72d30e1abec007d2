//! Container probes: httpGet, tcpSocket and exec, run from the host (HTTP
//! and TCP reach the Pod's address over the bridge) or inside the Pod's
//! network namespace (exec).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::process::Command;

/// Resolves a numeric or named container port.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(number) => u16::try_from(*number).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// Runs one probe; true when it passed.
pub async fn check(probe: &Probe, container: &Container, pod_ip: IpAddr, namespace: &str) -> bool {
    let timeout =
        Duration::from_secs(u64::try_from(probe.timeout_seconds.unwrap_or(1).max(1)).unwrap_or(1));
    let attempt = async {
        if let Some(http) = &probe.http_get {
            let Some(port) = resolve_port(&http.port, container) else {
                return false;
            };
            let host = http.host.clone().unwrap_or_else(|| pod_ip.to_string());
            let path = http.path.clone().unwrap_or_else(|| "/".into());
            let scheme = http.scheme.as_deref().unwrap_or("HTTP");
            let headers: Vec<(String, String)> = http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect();
            if scheme.eq_ignore_ascii_case("HTTPS") {
                return https_status(&host, port, &path, &headers)
                    .await
                    .is_some_and(|s| (200..400).contains(&s));
            }
            return http_status(&host, port, &path, &headers)
                .await
                .is_some_and(|s| (200..400).contains(&s));
        }
        if let Some(tcp) = &probe.tcp_socket {
            let Some(port) = resolve_port(&tcp.port, container) else {
                return false;
            };
            let ip = tcp
                .host
                .as_deref()
                .and_then(|h| h.parse().ok())
                .unwrap_or(pod_ip);
            return tokio::net::TcpStream::connect(SocketAddr::new(ip, port))
                .await
                .is_ok();
        }
        if let Some(exec) = &probe.exec {
            let command = exec.command.clone().unwrap_or_default();
            if command.is_empty() {
                return false;
            }
            return Command::new("ip")
                .args(["netns", "exec", namespace])
                .args(&command)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .await
                .is_ok_and(|status| status.success());
        }
        // gRPC probes are not run here: count them as passing rather than
        // holding the Pod back forever.
        true
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(false)
}

async fn http_status(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Option<u16> {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut request = http::Request::get(format!("http://{host}:{port}{path}"));
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = client
        .request(request.body(Empty::new()).ok()?)
        .await
        .ok()?;
    Some(response.status().as_u16())
}

/// HTTPS probes skip certificate verification, as the kubelet does.
async fn https_status(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Option<u16> {
    let mut command = Command::new("curl");
    command.args([
        "-sk",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "2",
    ]);
    for (name, value) in headers {
        command.args(["-H", &format!("{name}: {value}")]);
    }
    let output = command
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .await
        .ok()?;
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}
