//! The proxy in Kubernetes mode follows its config Secret through the API
//! server: new versions go live in moments, bad or deleted ones leave the
//! last good config serving.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::cluster::{TestNamespace, client, ensure_cluster, kubeconfig_path, root, wait_for};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use proxy_config::*;

const AGENT: &str = env!("CARGO_BIN_EXE_portcullis-node-agent");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// A Gateway config whose only rule answers `body` directly.
fn document(generation: u64, port: u16, body: &str) -> Vec<u8> {
    let rule = HttpRule {
        route: RouteRef {
            kind: "HTTPRoute".into(),
            namespace: "e2e".into(),
            name: "direct".into(),
            rule: 0,
        },
        filters: vec![HttpFilter::DirectResponse(DirectResponse {
            status_code: 200,
            body: body.into(),
        })],
        backends: vec![],
        timeouts: None,
        retry: None,
    };
    let config = GatewayConfig {
        gateway: ObjectRef {
            kind: "Gateway".into(),
            namespace: "e2e".into(),
            name: "gw".into(),
        },
        listeners: vec![Listener {
            name: "http".into(),
            port,
            protocol: Protocol::Http,
            sources: vec![],
            tls: None,
            virtual_hosts: vec![VirtualHost {
                source: "http".into(),
                hostnames: vec![],
                wildcard_depth: WildcardDepth::AnyLabels,
                rules: vec![rule],
                matches: vec![OrderedMatch {
                    rule: 0,
                    matcher: HttpMatch::default(),
                }],
            }],
            tls_routes: vec![],
            stream_route: None,
        }],
        ..GatewayConfig::default()
    };
    encode(&ConfigDocument::new(generation, config)).expect("encode")
}

fn secret(name: &str, bytes: Vec<u8>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("config".to_owned(), ByteString(bytes))])),
        ..Secret::default()
    }
}

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn body(port: u16) -> Option<String> {
    let output = tokio::process::Command::new("curl")
        .args([
            "-sf",
            "--max-time",
            "2",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .await
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test]
async fn the_proxy_follows_its_config_secret_and_keeps_the_last_good_one() {
    ensure_cluster(AGENT);
    let binary = root().join("target/debug/portcullis-proxy");
    assert!(
        binary.exists(),
        "{} is built by `cargo test --workspace` (make test)",
        binary.display()
    );
    let client = client().await;
    let namespace = TestNamespace::create(&client, "secret").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace.name);
    let port = free_port();
    secrets
        .create(
            &PostParams::default(),
            &secret("gw-config", document(1, port, "generation one")),
        )
        .await
        .expect("secret");

    let _proxy = Proxy(
        Command::new(&binary)
            .args(["--config-secret", &format!("{}/gw-config", namespace.name)])
            .args([
                "--bind",
                "127.0.0.1",
                "--admin",
                &format!("127.0.0.1:{}", free_port()),
                "--worker-threads",
                "1",
            ])
            .env("KUBECONFIG", kubeconfig_path())
            .env("PORTCULLIS_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("proxy starts"),
    );
    let first = wait_for(Duration::from_secs(20), || async {
        body(port).await.filter(|b| b == "generation one")
    })
    .await;
    assert!(first.is_some(), "the proxy serves the Secret's config");

    // A new version goes live quickly.
    let started = Instant::now();
    secrets
        .replace(
            "gw-config",
            &PostParams::default(),
            &secret("gw-config", document(2, port, "generation two")),
        )
        .await
        .expect("update");
    let second = wait_for(Duration::from_secs(10), || async {
        body(port).await.filter(|b| b == "generation two")
    })
    .await;
    assert!(second.is_some(), "the new config went live");
    let propagation = started.elapsed();
    println!("Secret update to new answer: {propagation:?}");
    assert!(propagation < Duration::from_secs(5), "took {propagation:?}");

    // A broken document is refused; the last good config keeps serving.
    let patch = serde_json::json!({"data": {"config": "bm90IGEgY29uZmln"}});
    secrets
        .patch("gw-config", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("break");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(body(port).await.as_deref(), Some("generation two"));

    // So does deleting the Secret.
    secrets
        .delete("gw-config", &DeleteParams::default())
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(body(port).await.as_deref(), Some("generation two"));
    namespace.delete().await;
}
