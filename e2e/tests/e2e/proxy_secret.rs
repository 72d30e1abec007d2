//! The proxy in Kubernetes mode follows its config Secret through the API
//! server: new versions go live in moments, bad or deleted ones leave the
//! last good config serving. It reports what it serves through its Pod's
//! condition `gateway.portcullis.io/ConfigApplied`.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::cluster::{
    TestNamespace, client, ensure_cluster, kubeconfig_path, root, shared, wait_for,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Container, Pod, PodCondition, PodReadinessGate, PodSpec, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use proxy_config::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// A Gateway config whose only rule answers `body` directly.
fn document(generation: u64, port: u16, body: &str) -> Vec<u8> {
    let config = config(vec![listener("http", port, body)]);
    encode(&ConfigDocument::new(generation, config)).expect("encode")
}

fn config(listeners: Vec<Listener>) -> GatewayConfig {
    GatewayConfig {
        gateway: ObjectRef {
            kind: "Gateway".into(),
            namespace: "e2e".into(),
            name: "gw".into(),
        },
        listeners,
        ..GatewayConfig::default()
    }
}

/// An HTTP listener whose only rule answers `body` directly.
fn listener(name: &str, port: u16, body: &str) -> Listener {
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
        session_persistence: None,
    };
    Listener {
        name: name.into(),
        port,
        protocol: Protocol::Http,
        sources: vec![],
        tls: None,
        virtual_hosts: vec![VirtualHost {
            source: name.into(),
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
    }
}

fn secret(name: &str, bytes: Vec<u8>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            CONFIG_SECRET_KEY.to_owned(),
            ByteString(bytes),
        )])),
        ..Secret::default()
    }
}

struct Proxy(Child);

/// Runs the proxy binary in Kubernetes mode, with `extra` arguments.
fn start_proxy(secret: &str, extra: &[&str]) -> Proxy {
    let binary = root().join("target/debug/portcullis-proxy");
    assert!(
        binary.exists(),
        "{} is built by `cargo test --workspace` (make test)",
        binary.display()
    );
    Proxy(
        Command::new(&binary)
            .args(["--config-secret", secret])
            .args([
                "--bind",
                "127.0.0.1",
                "--admin",
                &format!("127.0.0.1:{}", free_port()),
                "--worker-threads",
                "1",
            ])
            .args(extra)
            .env("KUBECONFIG", kubeconfig_path())
            .env("PORTCULLIS_LOG", "warn")
            .env_remove("PORTCULLIS_POD")
            .env_remove("POD_NAMESPACE")
            .env_remove("POD_NAME")
            .stdout(Stdio::null())
            .spawn()
            .expect("proxy starts"),
    )
}

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
    let _cluster = shared().await;
    ensure_cluster(crate::AGENT);
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

    let _proxy = start_proxy(&format!("{}/gw-config", namespace.name), &[]);
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
    let patch = serde_json::json!({"data": {CONFIG_SECRET_KEY: "bm90IGEgY29uZmln"}});
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

/// A Pod object standing for the proxy's own: bound to a node that does not
/// exist, so that no node agent runs it, gated on the proxy's condition.
fn proxy_pod(name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some("nowhere".into()),
            readiness_gates: Some(vec![PodReadinessGate {
                condition_type: CONFIG_APPLIED_CONDITION.into(),
            }]),
            containers: vec![Container {
                name: "proxy".into(),
                image: Some("example.invalid/none".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// No kubelet will confirm a graceful deletion: delete at once.
async fn delete_pod(pods: &Api<Pod>, name: &str) {
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    let _ = pods.delete(name, &now).await;
}

async fn pod_condition(pods: &Api<Pod>, pod: &str, kind: &str) -> Option<PodCondition> {
    let pod = pods.get_status(pod).await.ok()?;
    pod.status?
        .conditions?
        .into_iter()
        .find(|condition| condition.type_ == kind)
}

/// Waits for the proxy's condition to have `status` and `reason` and a
/// message starting with `message`; panics with the last one seen.
async fn expect_config_applied(
    pods: &Api<Pod>,
    pod: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> PodCondition {
    let found = wait_for(Duration::from_secs(20), || async {
        pod_condition(pods, pod, CONFIG_APPLIED_CONDITION)
            .await
            .filter(|c| {
                c.status == status
                    && c.reason.as_deref() == Some(reason)
                    && c.message.as_deref().is_some_and(|m| m.starts_with(message))
            })
    })
    .await;
    match found {
        Some(condition) => condition,
        None => panic!(
            "expected {status}/{reason} {message:?}, last seen {:?}",
            pod_condition(pods, pod, CONFIG_APPLIED_CONDITION).await
        ),
    }
}

#[tokio::test]
async fn the_proxy_reports_the_generation_it_serves_on_its_pod() {
    let _cluster = shared().await;
    ensure_cluster(crate::AGENT);
    let client = client().await;
    let namespace = TestNamespace::create(&client, "status").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace.name);
    pods.create(&PostParams::default(), &proxy_pod("proxy-0"))
        .await
        .expect("pod");
    // Another writer's condition, which the proxy's apply must leave alone.
    let other = serde_json::json!({"status": {"conditions": [
        {"type": "PodScheduled", "status": "True"}
    ]}});
    pods.patch_status(
        "proxy-0",
        &PatchParams::default(),
        &Patch::Strategic(&other),
    )
    .await
    .expect("other condition");

    // Started before its Secret exists: nothing to serve yet.
    let port = free_port();
    let _proxy = start_proxy(
        &format!("{}/gw-config", namespace.name),
        &["--pod", &format!("{}/proxy-0", namespace.name)],
    );
    let missing =
        expect_config_applied(&pods, "proxy-0", "False", "ConfigMissing", "config Secret").await;
    println!("before the Secret: {:?}", missing.message);

    secrets
        .create(
            &PostParams::default(),
            &secret("gw-config", document(1, port, "generation one")),
        )
        .await
        .expect("secret");
    let first = expect_config_applied(
        &pods,
        "proxy-0",
        "True",
        "Applied",
        "generation 1 applied: 1 listener(s) serving",
    )
    .await;
    assert_eq!(body(port).await.as_deref(), Some("generation one"));

    secrets
        .replace(
            "gw-config",
            &PostParams::default(),
            &secret("gw-config", document(2, port, "generation two")),
        )
        .await
        .expect("update");
    let second = expect_config_applied(&pods, "proxy-0", "True", "Applied", "generation 2").await;
    assert_eq!(body(port).await.as_deref(), Some("generation two"));
    assert_eq!(
        second.last_transition_time, first.last_transition_time,
        "True to True is no transition"
    );

    // A document that decodes but does not validate: generation 2 keeps
    // serving, and the message says which one was refused.
    let mut tampered = ConfigDocument::new(3, config(vec![listener("http", port, "three")]));
    tampered.hash = "sha256:0".into();
    secrets
        .replace(
            "gw-config",
            &PostParams::default(),
            &secret("gw-config", encode(&tampered).expect("encode")),
        )
        .await
        .expect("tampered");
    let refused = expect_config_applied(
        &pods,
        "proxy-0",
        "True",
        "Applied",
        "generation 2 applied; generation 3 refused: ",
    )
    .await;
    println!("refused: {:?}", refused.message);
    assert_eq!(refused.last_transition_time, first.last_transition_time);

    // One that does not even decode.
    let patch = serde_json::json!({"data": {CONFIG_SECRET_KEY: "bm90IGEgY29uZmln"}});
    secrets
        .patch("gw-config", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("break");
    let garbage = expect_config_applied(
        &pods,
        "proxy-0",
        "True",
        "Applied",
        "generation 2 applied; refused: ",
    )
    .await;
    println!("garbage: {:?}", garbage.message);
    assert_eq!(body(port).await.as_deref(), Some("generation two"));

    let other = pod_condition(&pods, "proxy-0", "PodScheduled").await;
    assert_eq!(
        other.map(|c| c.status).as_deref(),
        Some("True"),
        "conditions merge by type"
    );
    delete_pod(&pods, "proxy-0").await;
    namespace.delete().await;
}

#[tokio::test]
async fn a_listener_that_cannot_bind_is_named_on_the_pod() {
    let _cluster = shared().await;
    ensure_cluster(crate::AGENT);
    let client = client().await;
    let namespace = TestNamespace::create(&client, "bind").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace.name);
    pods.create(&PostParams::default(), &proxy_pod("proxy-0"))
        .await
        .expect("pod");

    // Someone else holds the second listener's port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let blocked = taken.local_addr().expect("address").port();
    let open = free_port();
    let listeners = |generation: u64| {
        let config = config(vec![
            listener("http", open, "open"),
            listener("blocked", blocked, "blocked"),
        ]);
        encode(&ConfigDocument::new(generation, config)).expect("encode")
    };
    secrets
        .create(&PostParams::default(), &secret("gw-config", listeners(1)))
        .await
        .expect("secret");
    let _proxy = start_proxy(
        &format!("{}/gw-config", namespace.name),
        &["--pod", &format!("{}/proxy-0", namespace.name)],
    );
    let failed = expect_config_applied(
        &pods,
        "proxy-0",
        "False",
        "ListenerBindFailed",
        "generation 1: listener blocked: ",
    )
    .await;
    println!("bind failure: {:?}", failed.message);
    assert!(
        !failed.message.unwrap_or_default().contains("listener http"),
        "only the failed listener is named"
    );
    assert_eq!(
        body(open).await.as_deref(),
        Some("open"),
        "the other serves"
    );

    // Once the port is free, the next generation binds it. (Transition
    // times have second granularity.)
    drop(taken);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    secrets
        .replace(
            "gw-config",
            &PostParams::default(),
            &secret("gw-config", listeners(2)),
        )
        .await
        .expect("update");
    let applied = expect_config_applied(
        &pods,
        "proxy-0",
        "True",
        "Applied",
        "generation 2 applied: 2 listener(s) serving",
    )
    .await;
    assert_ne!(
        applied.last_transition_time, failed.last_transition_time,
        "False to True is a transition"
    );
    assert_eq!(body(blocked).await.as_deref(), Some("blocked"));
    delete_pod(&pods, "proxy-0").await;
    namespace.delete().await;
}
