//! The operator is stopped at the worst moments and the cluster still
//! converges: a crash in the middle of a burst of route edits leaves nothing
//! duplicated, and a config Secret deleted by hand comes back while traffic
//! keeps flowing. It holds the cluster alone, because it restarts the
//! operator the other scenarios use.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use e2e::cluster::{TestNamespace, client, ensure_cluster, exclusive, kubectl, wait_for};
use e2e::operator::{
    apply, curl, echo, ensure_operator, gateway_address, jsonpath, restart_operator, wait_json,
};

fn route(namespace: &str, i: usize) -> String {
    format!(
        "\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r{i}, namespace: {namespace}}}\nspec:\n  parentRefs: [{{name: edge}}]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /r{i}}}}}]\n    backendRefs: [{{name: echo, port: 8080}}]\n"
    )
}

fn owned(namespace: &str, kinds: &str) -> Vec<String> {
    kubectl(&[
        "-n",
        namespace,
        "get",
        kinds,
        "-l",
        "gateway.networking.k8s.io/gateway-name=edge",
        "-o",
        "name",
    ])
    .unwrap_or_default()
    .lines()
    .map(str::to_owned)
    .collect()
}

#[tokio::test]
async fn a_crash_mid_burst_converges_and_a_deleted_config_secret_comes_back_under_traffic() {
    let _cluster = exclusive().await;
    ensure_cluster(crate::AGENT);
    ensure_operator();
    let ns = TestNamespace::create(&client().await, "restart").await;
    let n = ns.name.clone();
    apply(&(echo(&n, "echo", 1)
        + &format!("\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: edge, namespace: {n}}}\nspec:\n  gatewayClassName: portcullis\n  listeners:\n  - {{name: http, protocol: HTTP, port: 80}}\n")))
    .expect("apply");
    wait_json(&n, "deployment/echo", "{.status}", |s| {
        s["readyReplicas"] == 1
    })
    .await;
    let address = gateway_address(&n, "edge").await;

    // A burst of routes, with the operator killed halfway through it.
    let mut first_half = String::new();
    for i in 0..15 {
        first_half.push_str(&route(&n, i));
    }
    apply(&first_half).expect("routes");
    restart_operator(true);
    let mut second_half = String::new();
    for i in 15..30 {
        second_half.push_str(&route(&n, i));
    }
    apply(&second_half).expect("routes");

    wait_json(
        &n,
        "gateway/edge",
        "{.status.listeners[0].attachedRoutes}",
        |v| v == 30,
    )
    .await;
    for i in [0, 14, 15, 29] {
        let url = format!("http://{address}/r{i}");
        let ok = wait_for(Duration::from_secs(30), || async {
            curl(&url, &[]).await.filter(|a| a.status == 200)
        })
        .await;
        assert!(ok.is_some(), "route r{i} serves after the restart");
    }
    let objects = owned(
        &n,
        "deployment,service,serviceaccount,role,rolebinding,secret",
    );
    assert_eq!(
        objects.len(),
        6,
        "one of each, nothing duplicated: {objects:?}"
    );
    let pods = owned(&n, "pods");
    assert_eq!(pods.len(), 1, "one proxy Pod: {pods:?}");

    // Traffic from here on must not fail once.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, failures, sent, url) = (
            stop.clone(),
            failures.clone(),
            sent.clone(),
            format!("http://{address}/r7"),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match curl(&url, &[]).await {
                    Some(answer) if answer.status == 200 => {}
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let uid = jsonpath(&n, "secret/edge-portcullis", "{.metadata.uid}").expect("config Secret");
    let generation: u64 = jsonpath(
        &n,
        "secret/edge-portcullis",
        "{.metadata.annotations.gateway\\.portcullis\\.io/config-generation}",
    )
    .and_then(|g| g.parse().ok())
    .expect("generation annotation");
    kubectl(&["-n", &n, "delete", "secret", "edge-portcullis"]).expect("delete");
    let recreated = wait_for(Duration::from_secs(30), || async {
        jsonpath(&n, "secret/edge-portcullis", "{.metadata.uid}").filter(|u| *u != uid)
    })
    .await;
    assert!(recreated.is_some(), "the config Secret is recreated");
    let new_generation: u64 = jsonpath(
        &n,
        "secret/edge-portcullis",
        "{.metadata.annotations.gateway\\.portcullis\\.io/config-generation}",
    )
    .and_then(|g| g.parse().ok())
    .expect("generation annotation");
    assert!(
        new_generation >= generation,
        "generations never go back: {generation} → {new_generation}"
    );

    // A graceful restart too, under the same traffic.
    restart_operator(false);
    apply(&route(&n, 30)).expect("route after restart");
    let url = format!("http://{address}/r30");
    let ok = wait_for(Duration::from_secs(30), || async {
        curl(&url, &[]).await.filter(|a| a.status == 200)
    })
    .await;
    assert!(ok.is_some(), "a route made after the restart serves");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load loop");
    let (sent, failed) = (
        sent.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    );
    assert!(sent > 50, "the load loop ran ({sent} requests)");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed while the Secret was deleted and the operator restarted"
    );
    assert_eq!(
        owned(
            &n,
            "deployment,service,serviceaccount,role,rolebinding,secret"
        )
        .len(),
        6
    );
    ns.delete().await;
}
