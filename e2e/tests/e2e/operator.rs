//! The operator's story, told against the local cluster: a platform team
//! creates a Gateway, app teams attach routes, and the operator provisions a
//! proxy, programs it, and says through status exactly what works and why
//! not.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e::cluster::{TestNamespace, client, ensure_cluster, kubectl, shared, wait_for};
use e2e::operator::{
    answering_pods, apply, certificate, curl, curl_many, echo, ensure_operator, gateway_address,
    jsonpath, operator_log, operator_metric, tail, tls_secret, wait_condition, wait_json,
};

async fn setup(purpose: &str) -> TestNamespace {
    ensure_cluster(crate::AGENT);
    ensure_operator();
    TestNamespace::create(&client().await, purpose).await
}

fn gateway(namespace: &str, name: &str, listeners: &str) -> String {
    format!(
        r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  gatewayClassName: portcullis
  listeners:
{listeners}
"#
    )
}

fn http_route(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{spec}
"#
    )
}

/// Retries a request until it answers `status` (routes take a moment).
async fn eventually(url: &str, extra: &[&str], status: u16) -> e2e::operator::Answer {
    let answer = wait_for(Duration::from_secs(60), || async {
        curl(url, extra).await.filter(|a| a.status == status)
    })
    .await;
    match answer {
        Some(answer) => answer,
        None => {
            // Awaited, not blocked on: curl runs on this test's runtime.
            let last = curl(url, extra).await;
            panic!(
                "{url} never answered {status}; last: {last:?}\noperator log:\n{}",
                tail(&operator_log(), 30)
            )
        }
    }
}

#[tokio::test]
async fn a_gateway_and_route_get_a_programmed_proxy_that_serves_traffic() {
    let _cluster = shared().await;
    let ns = setup("basic").await;
    let n = ns.name.as_str();
    apply(&(echo(n, "echo", 1)
        + &gateway(n, "edge", "  - {name: http, protocol: HTTP, port: 80}")
        + &http_route(n, "web", "  parentRefs: [{name: edge}]\n  rules:\n  - backendRefs: [{name: echo, port: 8080}]")))
    .expect("apply");

    // GEP-1762 objects, named <gateway>-<class>, labelled and owned.
    for kind in [
        "deployment",
        "service",
        "serviceaccount",
        "role",
        "rolebinding",
        "secret",
    ] {
        wait_json(
            n,
            &format!("{kind}/edge-portcullis"),
            "{.metadata}",
            |meta| {
                meta["labels"]["gateway.networking.k8s.io/gateway-name"] == "edge"
                    && meta["labels"]["gateway.networking.k8s.io/gateway-class-name"]
                        == "portcullis"
                    && meta["ownerReferences"][0]["kind"] == "Gateway"
            },
        )
        .await;
    }
    let address = gateway_address(n, "edge").await;
    // Ready only through the readiness gate the proxy sets.
    let gate = kubectl(&["-n", n, "get", "pods", "-l", "gateway.networking.k8s.io/gateway-name=edge", "-o",
        "jsonpath={.items[0].status.conditions[?(@.type==\"gateway.portcullis.io/ConfigApplied\")].status}"]).unwrap();
    assert_eq!(gate, "True");
    let answer = eventually(&format!("http://{address}/hello"), &[], 200).await;
    assert!(
        answer.body.contains(&format!("\"namespace\": \"{n}\"")),
        "{}",
        answer.body
    );
    assert!(answer.body.contains("\"pod\": \"echo-"), "{}", answer.body);

    // Scaling the backend changes only its endpoints: the operator takes its
    // fast path, and the new replica gets traffic with no route edited.
    let metric = "portcullis_operator_endpoint_passes_total";
    let fast_before = operator_metric(metric).await.expect("operator metrics");
    kubectl(&["-n", n, "scale", "deployment/echo", "--replicas=2"]).expect("scale");
    let url = format!("http://{address}/hello");
    let pods = wait_for(Duration::from_secs(60), || async {
        let bodies = curl_many(&url, 20, &[]).await;
        let pods: BTreeSet<String> = answering_pods(&bodies).into_iter().collect();
        (pods.len() == 2).then_some(pods)
    })
    .await;
    assert!(
        pods.is_some(),
        "both echo replicas answer after the scale-up"
    );
    let fast_after = operator_metric(metric).await.expect("operator metrics");
    assert!(
        fast_after > fast_before,
        "the endpoint change took the fast path ({fast_before} → {fast_after} passes)"
    );

    let route_accepted = jsonpath(
        n,
        "httproute/web",
        "{.status.parents[0].conditions[?(@.type==\"Accepted\")].status}",
    );
    assert_eq!(route_accepted.as_deref(), Some("True"));
    ns.delete().await;
}

#[tokio::test]
async fn canary_header_route_redirect_and_certificate_rotation() {
    let _cluster = shared().await;
    let ns = setup("canary").await;
    let n = ns.name.as_str();
    let (cert, key) = certificate("first", &["*.shop.example"]);
    apply(&(echo(n, "v1", 1) + &echo(n, "v2", 1) + &tls_secret(n, "shop-tls", &cert, &key)
        + &gateway(n, "shop", "  - {name: http, protocol: HTTP, port: 80, hostname: '*.shop.example'}\n  - name: https\n    protocol: HTTPS\n    port: 443\n    hostname: '*.shop.example'\n    tls: {certificateRefs: [{name: shop-tls}]}")
        + &http_route(n, "store", "  parentRefs: [{name: shop, sectionName: https}]\n  hostnames: [www.shop.example]\n  rules:\n  - matches: [{headers: [{name: x-version, value: v2}]}]\n    backendRefs: [{name: v2, port: 8080}]\n  - backendRefs: [{name: v1, port: 8080, weight: 90}, {name: v2, port: 8080, weight: 10}]")
        + &http_route(n, "to-https", "  parentRefs: [{name: shop, sectionName: http}]\n  hostnames: [www.shop.example]\n  rules:\n  - filters: [{type: RequestRedirect, requestRedirect: {scheme: https, statusCode: 301}}]")))
    .expect("apply");
    let address = gateway_address(n, "shop").await;
    wait_condition(n, "deployment/v1", "Available", "True", None).await;
    wait_condition(n, "deployment/v2", "Available", "True", None).await;
    let resolve = format!("www.shop.example:443:{address}");
    let tls = ["--resolve", resolve.as_str(), "-k"];

    let redirect = eventually(
        &format!("http://{address}/cart?id=1"),
        &["-H", "Host: www.shop.example"],
        301,
    )
    .await;
    assert!(
        redirect
            .headers
            .to_ascii_lowercase()
            .contains("location: https://www.shop.example/cart?id=1"),
        "{}",
        redirect.headers
    );

    eventually("https://www.shop.example/", &tls, 200).await;
    let header = curl(
        "https://www.shop.example/",
        &["--resolve", &resolve, "-k", "-H", "x-version: v2"],
    )
    .await
    .unwrap();
    assert!(header.body.contains("\"pod\": \"v2-"), "{}", header.body);

    // The 90/10 split, measured over 2,000 requests.
    let bodies = curl_many("https://www.shop.example/", 2000, &tls).await;
    let v1 = bodies.matches("\"pod\": \"v1-").count();
    let v2 = bodies.matches("\"pod\": \"v2-").count();
    assert_eq!(v1 + v2, 2000, "every request answered");
    let share = v2 as f64 / 2000.0;
    assert!(
        (share - 0.10).abs() <= 0.03,
        "v2 got {v2} of 2000 ({share:.3})"
    );

    // Rotating the certificate: the same proxy Pod serves the new one.
    let pod_before = kubectl(&[
        "-n",
        n,
        "get",
        "pods",
        "-l",
        "gateway.networking.k8s.io/gateway-name=shop",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])
    .unwrap();
    let subject = |cert_resolve: String| async move {
        let output = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!("openssl s_client -connect {cert_resolve} -servername www.shop.example </dev/null 2>/dev/null | openssl x509 -noout -subject"))
            .output()
            .await
            .ok()?;
        Some(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let target = format!("{address}:443");
    assert!(
        subject(target.clone())
            .await
            .unwrap_or_default()
            .contains("CN = first")
    );
    let (cert, key) = certificate("second", &["*.shop.example"]);
    apply(&tls_secret(n, "shop-tls", &cert, &key)).expect("rotate");
    let rotated = wait_for(Duration::from_secs(30), || {
        let target = target.clone();
        async move { subject(target).await.filter(|s| s.contains("CN = second")) }
    })
    .await;
    assert!(rotated.is_some(), "the rotated certificate is served");
    let pod_after = kubectl(&[
        "-n",
        n,
        "get",
        "pods",
        "-l",
        "gateway.networking.k8s.io/gateway-name=shop",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])
    .unwrap();
    assert_eq!(pod_before, pod_after, "no restart");
    ns.delete().await;
}

#[tokio::test]
async fn wrong_references_get_the_specs_conditions_and_reasons() {
    let _cluster = shared().await;
    let ns = setup("refs").await;
    let other = TestNamespace::create(&client().await, "refs-other").await;
    let n = ns.name.as_str();
    let o = other.name.as_str();
    let (cert, key) = certificate("elsewhere", &["*.example.com"]);
    apply(&(echo(o, "remote", 1) + &tls_secret(o, "remote-cert", &cert, &key)
        + &gateway(n, "edge", &("  - {name: http, protocol: HTTP, port: 80}\n  - {name: clash, protocol: TCP, port: 80}\n  - {name: web, protocol: HTTP, port: 8080}\n  - name: https\n    protocol: HTTPS\n    port: 443\n    tls:\n      certificateRefs: [{name: remote-cert, namespace: ".to_owned() + o + "}]"))
        + &http_route(n, "cross", &format!("  parentRefs: [{{name: edge, sectionName: web}}]\n  rules:\n  - backendRefs: [{{name: remote, namespace: {o}, port: 8080}}]"))
        + &format!("\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: TCPRoute\nmetadata: {{name: raw, namespace: {n}}}\nspec:\n  parentRefs: [{{name: edge, sectionName: web}}]\n  rules:\n  - backendRefs: [{{name: remote, port: 8080}}]\n")))
    .expect("apply");

    // Listener port conflict: HTTP and TCP on port 80.
    wait_json(
        n,
        "gateway/edge",
        "{.status.listeners[?(@.name==\"clash\")].conditions[?(@.type==\"Conflicted\")]}",
        |c| c["status"] == "True" && c["reason"] == "ProtocolConflict",
    )
    .await;
    // A certificate in another namespace without a ReferenceGrant.
    wait_json(
        n,
        "gateway/edge",
        "{.status.listeners[?(@.name==\"https\")].conditions[?(@.type==\"ResolvedRefs\")]}",
        |c| c["status"] == "False" && c["reason"] == "RefNotPermitted",
    )
    .await;
    // A TCPRoute on an HTTP listener.
    wait_json(
        n,
        "tcproute/raw",
        "{.status.parents[0].conditions[?(@.type==\"Accepted\")]}",
        |c| c["status"] == "False" && c["reason"] == "NotAllowedByListeners",
    )
    .await;
    // A backend in another namespace without a grant: refused, its share 500.
    wait_json(
        n,
        "httproute/cross",
        "{.status.parents[0].conditions[?(@.type==\"ResolvedRefs\")]}",
        |c| c["status"] == "False" && c["reason"] == "RefNotPermitted",
    )
    .await;
    let address = gateway_address(n, "edge").await;
    eventually(&format!("http://{address}:8080/"), &[], 500).await;

    // With grants, both resolve and traffic flows.
    apply(&format!(
        "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: from-{n}, namespace: {o}}}\nspec:\n  from:\n  - {{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: {n}}}\n  - {{group: gateway.networking.k8s.io, kind: Gateway, namespace: {n}}}\n  to:\n  - {{group: '', kind: Service}}\n  - {{group: '', kind: Secret}}\n"
    ))
    .expect("grant");
    wait_json(
        n,
        "httproute/cross",
        "{.status.parents[0].conditions[?(@.type==\"ResolvedRefs\")]}",
        |c| c["status"] == "True",
    )
    .await;
    wait_json(
        n,
        "gateway/edge",
        "{.status.listeners[?(@.name==\"https\")].conditions[?(@.type==\"ResolvedRefs\")]}",
        |c| c["status"] == "True",
    )
    .await;
    let answer = eventually(&format!("http://{address}:8080/"), &[], 200).await;
    assert!(
        answer.body.contains(&format!("\"namespace\": \"{o}\"")),
        "{}",
        answer.body
    );
    other.delete().await;
    ns.delete().await;
}

#[tokio::test]
async fn replicas_follow_the_proxy_config_and_deleting_the_gateway_removes_everything() {
    let _cluster = shared().await;
    let ns = setup("scale").await;
    let n = ns.name.as_str();
    apply(&(format!("apiVersion: gateway.portcullis.io/v1alpha1\nkind: ProxyConfig\nmetadata: {{name: big, namespace: {n}}}\nspec: {{replicas: 3}}\n")
        + &gateway(n, "edge", "  - {name: http, protocol: HTTP, port: 80}").replace(
            "gatewayClassName: portcullis",
            "gatewayClassName: portcullis\n  infrastructure:\n    labels: {team: payments}\n    parametersRef: {group: gateway.portcullis.io, kind: ProxyConfig, name: big}",
        )))
    .expect("apply");
    wait_json(n, "deployment/edge-portcullis", "{.status}", |s| {
        s["readyReplicas"] == 3
    })
    .await;
    let labels = jsonpath(n, "service/edge-portcullis", "{.metadata.labels.team}");
    assert_eq!(
        labels.as_deref(),
        Some("payments"),
        "infrastructure labels reach generated objects"
    );
    wait_json(
        n,
        "gateway/edge",
        "{.status.conditions[?(@.type==\"Programmed\")]}",
        |c| {
            c["status"] == "True"
                && c["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("3 proxy"))
        },
    )
    .await;

    apply(&format!("apiVersion: gateway.portcullis.io/v1alpha1\nkind: ProxyConfig\nmetadata: {{name: big, namespace: {n}}}\nspec: {{replicas: 1}}\n")).expect("scale down");
    wait_json(n, "deployment/edge-portcullis", "{.status}", |s| {
        s["replicas"] == 1 && s["readyReplicas"] == 1
    })
    .await;

    kubectl(&["-n", n, "delete", "gateway", "edge"]).expect("delete");
    let gone = wait_for(Duration::from_secs(60), || async {
        let left = kubectl(&[
            "-n",
            n,
            "get",
            "deployment,service,serviceaccount,role,rolebinding,secret,pods",
            "-l",
            "gateway.networking.k8s.io/gateway-name=edge",
            "-o",
            "name",
        ])
        .ok()?;
        left.trim().is_empty().then_some(())
    })
    .await;
    assert!(gone.is_some(), "everything the Gateway owned is removed");
    ns.delete().await;
}

/// Route created → first 200 through the gateway, over 100 routes; prints
/// p50/p99 for the closing note of issue 6.
#[tokio::test]
async fn new_routes_serve_traffic_within_moments() {
    let _cluster = shared().await;
    let ns = setup("latency").await;
    let n = ns.name.as_str();
    apply(
        &(echo(n, "echo", 1) + &gateway(n, "edge", "  - {name: http, protocol: HTTP, port: 80}")),
    )
    .expect("apply");
    wait_condition(n, "deployment/echo", "Available", "True", None).await;
    let address = gateway_address(n, "edge").await;
    let routes: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        client().await,
        n,
        &kube::discovery::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
            "httproutes",
        ),
    );
    let mut latencies = Vec::new();
    for i in 0..100 {
        let route: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": format!("r{i}"), "namespace": n},
            "spec": {
                "parentRefs": [{"name": "edge"}],
                "rules": [{
                    "matches": [{"path": {"type": "PathPrefix", "value": format!("/r{i}")}}],
                    "backendRefs": [{"name": "echo", "port": 8080}],
                }],
            },
        }))
        .unwrap();
        // The clock starts when the API server has the route.
        routes
            .create(&Default::default(), &route)
            .await
            .expect("route");
        let started = Instant::now();
        let url = format!("http://{address}/r{i}");
        loop {
            if curl(&url, &[]).await.is_some_and(|a| a.status == 200) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "route r{i} never served"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let p50 = latencies[49];
    let p99 = latencies[98];
    println!(
        "route propagation over 100 routes (created → first 200): p50 {p50:?}, p99 {p99:?}, max {:?}",
        latencies[99]
    );
    assert!(p99 < Duration::from_secs(5), "p99 {p99:?}");
    ns.delete().await;
}
