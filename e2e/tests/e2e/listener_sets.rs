//! A platform team runs one Gateway for many tenants. Each tenant brings
//! its own hostnames and certificates in ListenerSets, past the 64
//! listeners one Gateway may hold: a thousand hostnames, each served with
//! its own certificate, through one Gateway and one proxy.

use std::fmt::Write as _;
use std::time::Duration;

use e2e::cluster::{TestNamespace, client, ensure_cluster, exclusive, wait_for};
use e2e::operator::{
    certificate, curl, echo, ensure_operator, gateway_address, kubectl_stdin, tls_secret,
    wait_condition, wait_json,
};

const HOSTS: usize = 1000;
/// Listeners per ListenerSet (at most 64).
const PER_SET: usize = 50;

fn host(i: usize) -> String {
    format!("t{i}.tenants.example")
}

#[tokio::test]
async fn a_thousand_hostnames_with_their_own_certificates_through_listener_sets() {
    // A thousand Secrets at once would make the other scenarios' timing
    // checks (the endpoint fast path, route latency) measure this one.
    let _cluster = exclusive().await;
    ensure_cluster(crate::AGENT);
    ensure_operator();
    let ns = TestNamespace::create(&client().await, "tenants").await;
    let n = ns.name.as_str();

    // One certificate per hostname, made on every core at once.
    let certificates: Vec<(String, String)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                scope.spawn(move || {
                    (worker..HOSTS)
                        .step_by(4)
                        .map(|i| (i, certificate(&host(i), &[&host(i)])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, (String, String))> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("certificate worker"))
            .collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, pair)| pair).collect()
    });

    let sets = HOSTS.div_ceil(PER_SET);
    let mut yaml = echo(n, "app", 1);
    for (i, (cert, key)) in certificates.iter().enumerate() {
        yaml.push_str(&tls_secret(n, &format!("t{i}"), cert, key));
    }
    write!(
        yaml,
        "\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: shared, namespace: {n}}}\nspec:\n  gatewayClassName: portcullis\n  allowedListeners: {{namespaces: {{from: Same}}}}\n  listeners:\n  - {{name: http, protocol: HTTP, port: 80}}\n"
    )
    .unwrap();
    for set in 0..sets {
        write!(
            yaml,
            "\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\nmetadata: {{name: tenant-{set}, namespace: {n}}}\nspec:\n  parentRef: {{name: shared}}\n  listeners:\n"
        )
        .unwrap();
        for i in (set * PER_SET)..((set + 1) * PER_SET).min(HOSTS) {
            writeln!(
                yaml,
                "  - {{name: t{i}, protocol: HTTPS, port: 443, hostname: {}, tls: {{certificateRefs: [{{name: t{i}}}]}}}}",
                host(i)
            )
            .unwrap();
        }
    }
    let parents: Vec<String> = (0..sets)
        .map(|set| {
            format!("{{kind: ListenerSet, group: gateway.networking.k8s.io, name: tenant-{set}}}")
        })
        .collect();
    write!(
        yaml,
        "\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: tenants, namespace: {n}}}\nspec:\n  parentRefs: [{}]\n  rules:\n  - backendRefs: [{{name: app, port: 8080}}]\n",
        parents.join(", ")
    )
    .unwrap();
    // Server-side apply: one request per object.
    kubectl_stdin(&["apply", "--server-side", "-f", "-"], &yaml).expect("apply");

    let address = gateway_address(n, "shared").await;
    wait_json(
        n,
        "gateway/shared",
        "{.status.attachedListenerSets}",
        |count| *count == serde_json::json!(sets),
    )
    .await;
    for set in 0..sets {
        let resource = format!("listenerset/tenant-{set}");
        wait_condition(n, &resource, "Accepted", "True", Some("Accepted")).await;
        wait_condition(n, &resource, "Programmed", "True", Some("Programmed")).await;
    }
    wait_condition(n, "deployment/app", "Available", "True", None).await;

    // A spread of the hostnames, first and last included: each handshake
    // trusts only that hostname's certificate, so it succeeds only when
    // the proxy chose it by SNI.
    let dir = tempfile::tempdir().expect("temp dir");
    for i in (0..HOSTS).step_by(37).chain([HOSTS - 1]) {
        let ca = dir.path().join(format!("t{i}.pem"));
        std::fs::write(&ca, &certificates[i].0).expect("write certificate");
        let resolve = format!("{}:443:{address}", host(i));
        let url = format!("https://{}/", host(i));
        let args = [
            "--resolve",
            resolve.as_str(),
            "--cacert",
            ca.to_str().expect("utf-8 path"),
        ];
        let answer = wait_for(Duration::from_secs(60), || async {
            curl(&url, &args).await.filter(|a| a.status == 200)
        })
        .await;
        assert!(
            answer.is_some(),
            "{url} was not served with its own certificate: {:?}",
            curl(&url, &args).await
        );
    }
    // The Gateway's own listener knows none of the tenants' routes.
    let plain = curl(
        &format!("http://{address}/"),
        &["-H", &format!("Host: {}", host(0))],
    )
    .await;
    assert_eq!(plain.map(|a| a.status), Some(404));
    ns.delete().await;
}
