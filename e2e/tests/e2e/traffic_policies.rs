//! A platform team guards a Service it does not own the routes of: with an
//! XBackendTrafficPolicy (the experimental channel's) it caps the retries
//! any route may send there and makes every visitor stick to one replica,
//! whatever route they came through. The cluster runs the standard
//! channel, so the test installs that one CRD for itself and removes it
//! after.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e::cluster::{TestNamespace, client, ensure_cluster, exclusive, kubectl, root, wait_for};
use e2e::operator::{
    answering_pods, apply, curl, curl_many, echo, ensure_operator, gateway_address, operator_log,
    tail, wait_condition, wait_json,
};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use proxy_config::{CONFIG_SECRET_KEY, RetryBudget};

const CRD: &str = "xbackendtrafficpolicies.gateway.networking.x-k8s.io";

/// The XBackendTrafficPolicy CRD of Gateway API v1.6.1, installed for the
/// test when the cluster lacks it and removed again when it goes.
struct PolicyCrd {
    installed_here: bool,
}

impl PolicyCrd {
    fn ensure() -> PolicyCrd {
        if kubectl(&["get", "crd", CRD, "-o", "name"]).is_ok() {
            return PolicyCrd {
                installed_here: false,
            };
        }
        let file = root().join(
            ".cache/gateway-api/v1.6.1/experimental/gateway.networking.x-k8s.io_xbackendtrafficpolicies.yaml",
        );
        let file = file.display().to_string();
        kubectl(&["apply", "--server-side", "-f", &file]).expect("install the policy CRD");
        let guard = PolicyCrd {
            installed_here: true,
        };
        kubectl(&[
            "wait",
            "--for",
            "condition=Established",
            "--timeout",
            "60s",
            "crd",
            CRD,
        ])
        .expect("the policy CRD is established");
        let deadline = Instant::now() + Duration::from_secs(60);
        while kubectl(&["get", "xbackendtrafficpolicies", "-A", "-o", "name"]).is_err() {
            assert!(Instant::now() < deadline, "the policy kind is not served");
            std::thread::sleep(Duration::from_millis(250));
        }
        guard
    }
}

impl Drop for PolicyCrd {
    fn drop(&mut self) {
        if self.installed_here {
            let _ = kubectl(&["delete", "crd", CRD, "--wait=true", "--timeout=60s"]);
        }
    }
}

#[tokio::test]
async fn a_traffic_policy_caps_retries_to_a_service_and_keeps_each_visitor_on_one_replica() {
    // Installing a CRD makes the operator discover and restart its watches.
    let _cluster = exclusive().await;
    ensure_cluster(crate::AGENT);
    ensure_operator();
    let _crd = PolicyCrd::ensure();
    let ns = TestNamespace::create(&client().await, "traffic-policy").await;
    let n = ns.name.as_str();
    apply(
        &(echo(n, "shop", 2)
            + &format!(
                r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: {n}}}
spec:
  gatewayClassName: portcullis
  listeners:
  - {{name: http, protocol: HTTP, port: 80}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: shop, namespace: {n}}}
spec:
  parentRefs: [{{name: edge}}]
  rules:
  - backendRefs: [{{name: shop, port: 8080}}]
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {{name: shop, namespace: {n}}}
spec:
  targetRefs: [{{group: "", kind: Service, name: shop}}]
  retryConstraint:
    budget: {{percent: 25, interval: 30s}}
    minRetryRate: {{count: 3, interval: 1s}}
  sessionPersistence: {{sessionName: shop-session, absoluteTimeout: 1h}}
"#
            )),
    )
    .expect("apply");

    // The policy says where it applies.
    wait_json(
        n,
        "xbackendtrafficpolicy/shop",
        "{.status.ancestors}",
        |ancestors| {
            ancestors[0]["ancestorRef"]["name"] == "edge"
                && ancestors[0]["controllerName"] == "portcullis.io/gateway-controller"
                && ancestors[0]["conditions"][0]["type"] == "Accepted"
                && ancestors[0]["conditions"][0]["status"] == "True"
        },
    )
    .await;

    // The proxy's config carries the budget for the Service's backend.
    let secrets: Api<Secret> = Api::namespaced(client().await, n);
    let budget = wait_for(Duration::from_secs(60), || async {
        let secret = secrets.get_opt("edge-portcullis").await.ok().flatten()?;
        let bytes = secret.data?.remove(CONFIG_SECRET_KEY)?;
        let document = proxy_config::decode(&bytes.0).ok()?;
        document
            .config
            .backends
            .values()
            .find(|b| b.source.name == "shop")
            .and_then(|b| b.retry_budget.clone())
    })
    .await;
    assert_eq!(
        budget,
        Some(RetryBudget {
            percent: 25,
            interval_ms: 30_000,
            min_retries: 3,
            min_interval_ms: 1_000,
        })
    );

    // A first visit gets a session cookie with no Path (the Service's
    // session, not one route's), and the visits that carry it stay on the
    // replica that answered, while visitors without it are spread over both.
    wait_condition(n, "deployment/shop", "Available", "True", None).await;
    let address = gateway_address(n, "edge").await;
    let url = format!("http://{address}/cart");
    let both = wait_for(Duration::from_secs(60), || async {
        let seen: BTreeSet<String> = answering_pods(&curl_many(&url, 20, &[]).await)
            .into_iter()
            .collect();
        (seen.len() == 2).then_some(seen)
    })
    .await;
    assert!(
        both.is_some(),
        "both replicas serve visitors without a session"
    );
    let first = curl(&url, &[]).await.expect("an answer");
    let cookie = first
        .headers
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| {
            panic!(
                "no session cookie: {}\noperator log:\n{}",
                first.headers,
                tail(&operator_log(), 30)
            )
        });
    assert!(cookie.starts_with("shop-session="), "{cookie}");
    assert!(!cookie.contains("Path="), "{cookie}");
    let pair = cookie.split(';').next().unwrap_or_default().to_owned();
    let first_pod = answering_pods(&first.body)
        .pop()
        .expect("the pod that answered");
    let sticky = answering_pods(&curl_many(&url, 10, &["-H", &format!("Cookie: {pair}")]).await);
    assert_eq!(sticky.len(), 10, "every request answered");
    assert!(
        sticky.iter().all(|pod| *pod == first_pod),
        "the session stays on {first_pod}: {sticky:?}"
    );

    ns.delete().await;
}
