//! The local cluster behaves like a real one: a Ready node, Deployments whose
//! Pods run as processes and become Ready, EndpointSlices with Pod IPs, a
//! LoadBalancer address that answers, and deletion that leaves nothing.

use std::time::Duration;

use e2e::cluster::{TestNamespace, client, ensure_cluster, kubectl, root, shared, wait_for};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;

fn conformance_manifests() -> std::path::PathBuf {
    root().join(".cache/gateway-api/v1.6.1/conformance/base/manifests.yaml")
}

async fn http_get_json(url: &str) -> Option<Value> {
    let output = tokio::process::Command::new("curl")
        .args(["-sf", "--max-time", "3", url])
        .output()
        .await
        .ok()?;
    serde_json::from_slice(&output.stdout).ok()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn ready_pods(pods: &Api<Pod>, selector: &str, count: usize) -> Option<Vec<Pod>> {
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .ok()?;
    let ready: Vec<Pod> = list.items.into_iter().filter(is_ready).collect();
    (ready.len() >= count).then_some(ready)
}

fn echo_deployment(namespace: &str, name: &str, replicas: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: echo
        image: registry.k8s.io/gateway-api/echo-basic:v1.5.1
        env:
        - name: POD_NAME
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
        - name: NAMESPACE
          valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}
        readinessProbe:
          httpGet: {{path: /, port: 3000}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  type: LoadBalancer
  selector: {{app: {name}}}
  ports:
  - {{name: http, port: 80, targetPort: 3000}}
"#
    )
}

fn apply(yaml: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("manifest.yaml");
    std::fs::write(&path, yaml).expect("write manifest");
    kubectl(&["apply", "-f", path.to_str().expect("path")]).expect("kubectl apply");
}

#[tokio::test]
async fn the_node_is_ready_and_our_crd_is_validated_by_the_api_server() {
    let _cluster = shared().await;
    ensure_cluster(crate::AGENT);
    let client = client().await;
    let node = Api::<Node>::all(client.clone())
        .get("portcullis-node")
        .await
        .expect("node");
    let conditions = node.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        "{conditions:?}"
    );

    let crd = root().join("crds").join(crds::CRD_FILE);
    kubectl(&["apply", "--server-side", "-f", crd.to_str().expect("path")])
        .expect("ProxyConfig CRD applies");
    kubectl(&[
        "wait",
        "--for",
        "condition=Established",
        "crd/proxyconfigs.gateway.portcullis.io",
        "--timeout",
        "30s",
    ])
    .expect("established");
    let namespace = TestNamespace::create(&client, "crd").await;
    let ns = namespace.name.clone();
    apply(&format!(
        "apiVersion: gateway.portcullis.io/v1alpha1\nkind: ProxyConfig\nmetadata: {{name: good, namespace: {ns}}}\nspec: {{replicas: 3, shutdown: {{drainTimeout: 30s}}}}\n"
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        format!("apiVersion: gateway.portcullis.io/v1alpha1\nkind: ProxyConfig\nmetadata: {{name: bad, namespace: {ns}}}\nspec: {{replicas: 3, autoscaling: {{maxReplicas: 5}}}}\n"),
    )
    .expect("write");
    let refused = kubectl(&["apply", "-f", bad.to_str().expect("path")])
        .expect_err("CEL refuses replicas with autoscaling");
    assert!(refused.contains("mutually exclusive"), "{refused}");
    namespace.delete().await;
}

/// Objects applied from a file, deleted (and waited for) when dropped, even
/// when an assertion fails.
struct Applied(std::path::PathBuf);

impl Drop for Applied {
    fn drop(&mut self) {
        let _ = kubectl(&[
            "delete",
            "-f",
            &self.0.display().to_string(),
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
        ]);
    }
}

#[tokio::test]
async fn conformance_base_manifests_run_unchanged() {
    let _cluster = shared().await;
    ensure_cluster(crate::AGENT);
    let client = client().await;
    let manifests = conformance_manifests();
    kubectl(&["apply", "-f", manifests.to_str().expect("path")])
        .expect("conformance base manifests apply");
    // The suite's own run applies them again: leave the cluster as found.
    let _applied = Applied(manifests.clone());
    // The suite creates the certificates its TLS backends mount; so do we.
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=abc.example.com",
            "-addext",
            "subjectAltName=DNS:abc.example.com",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    for (namespace, name) in [
        ("gateway-conformance-infra", "tls-checks-certificate"),
        (
            "gateway-conformance-infra",
            "tls-passthrough-checks-certificate",
        ),
        (
            "gateway-conformance-app-backend",
            "tls-passthrough-checks-certificate",
        ),
    ] {
        let _ = kubectl(&[
            "delete",
            "secret",
            name,
            "-n",
            namespace,
            "--ignore-not-found",
        ]);
        kubectl(&[
            "create",
            "secret",
            "tls",
            name,
            "-n",
            namespace,
            "--cert",
            cert.to_str().expect("path"),
            "--key",
            key.to_str().expect("path"),
        ])
        .expect("secret");
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "gateway-conformance-infra");
    let ready = wait_for(Duration::from_secs(120), || async {
        ready_pods(&pods, "app=infra-backend-v1", 2).await
    })
    .await
    .expect("infra-backend-v1 pods become Ready");

    // The EndpointSlice lists the Pod IPs, and each IP answers as its Pod.
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "gateway-conformance-infra");
    let listed = wait_for(Duration::from_secs(30), || async {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=infra-backend-v1"))
            .await
            .ok()?;
        let addresses: Vec<String> = list
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter().flatten())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
            .flat_map(|e| e.addresses.clone())
            .collect();
        (addresses.len() >= 2).then_some(addresses)
    })
    .await
    .expect("EndpointSlice lists both Pods");
    for pod in &ready {
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .expect("pod IP");
        assert!(listed.contains(&ip), "{ip} not in {listed:?}");
        let echo = http_get_json(&format!("http://{ip}:3000/hello"))
            .await
            .expect("echo answers");
        assert_eq!(echo["pod"], serde_json::json!(pod.metadata.name), "{echo}");
        assert_eq!(echo["namespace"], "gateway-conformance-infra");
    }

    // Every Pod of the base manifests becomes Ready.
    for namespace in [
        "gateway-conformance-infra",
        "gateway-conformance-app-backend",
        "gateway-conformance-web-backend",
    ] {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let all_ready = wait_for(Duration::from_secs(120), || async {
            let list = pods.list(&ListParams::default()).await.ok()?;
            let not_ready: Vec<String> = list
                .items
                .iter()
                .filter(|p| !is_ready(p))
                .map(|p| p.metadata.name.clone().unwrap_or_default())
                .collect();
            (!list.items.is_empty() && not_ready.is_empty()).then_some(())
        })
        .await;
        if all_ready.is_none() {
            let listing =
                kubectl(&["get", "pods", "-n", namespace, "-o", "wide"]).unwrap_or_default();
            panic!("pods in {namespace} not all Ready:\n{listing}");
        }
    }
}

#[tokio::test]
async fn a_load_balancer_answers_and_deletion_leaves_nothing_behind() {
    let _cluster = shared().await;
    ensure_cluster(crate::AGENT);
    let client = client().await;
    let namespace = TestNamespace::create(&client, "lb").await;
    apply(&echo_deployment(&namespace.name, "echo", 2));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace.name);
    let ready = wait_for(Duration::from_secs(90), || async {
        ready_pods(&pods, "app=echo", 2).await
    })
    .await
    .expect("echo pods become Ready");
    let names: Vec<String> = ready
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();

    let services: Api<Service> = Api::namespaced(client.clone(), &namespace.name);
    let address = wait_for(Duration::from_secs(30), || async {
        services
            .get("echo")
            .await
            .ok()?
            .status?
            .load_balancer?
            .ingress?
            .first()?
            .ip
            .clone()
    })
    .await
    .expect("the Service gets a load balancer address");
    // The load balancer follows the EndpointSlice, which lists a Pod a
    // moment after it is Ready: it answers, and serves both endpoints, once
    // it does (on a busy machine the address can come first).
    let mut seen = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < 2 && std::time::Instant::now() < deadline {
        let Some(echo) = http_get_json(&format!("http://{address}/lb")).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let pod = echo["pod"].as_str().unwrap_or_default().to_owned();
        assert!(names.contains(&pod), "{pod} is not one of {names:?}");
        seen.insert(pod);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.len(), 2, "both endpoints served: {seen:?}");

    // Deleting the Deployment stops the processes and removes their sandboxes.
    let uids: Vec<String> = ready
        .iter()
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    kubectl(&[
        "delete",
        "deployment",
        "echo",
        "-n",
        &namespace.name,
        "--wait=true",
    ])
    .expect("delete");
    let gone = wait_for(Duration::from_secs(60), || async {
        let list = pods
            .list(&ListParams::default().labels("app=echo"))
            .await
            .ok()?;
        list.items.is_empty().then_some(())
    })
    .await;
    assert!(gone.is_some(), "pods deleted");
    let namespaces = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    let listing = String::from_utf8_lossy(&namespaces.stdout);
    for uid in uids {
        let short: String = uid
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(10)
            .collect();
        assert!(
            !listing.contains(&format!("pc-{short}")),
            "sandbox of {uid} still there: {listing}"
        );
    }
    let stray = wait_for(Duration::from_secs(10), || async {
        let answer = http_get_json(&format!("http://{address}/lb")).await;
        answer.is_none().then_some(())
    })
    .await;
    assert!(stray.is_some(), "nothing answers for the deleted pods");
    namespace.delete().await;
}

/// `kubectl logs` through the API server to the node agent's kubelet
/// endpoint: the echo server's line for a request we made, with tail,
/// timestamps, since-time and follow.
#[tokio::test]
async fn kubectl_logs_reads_what_the_container_wrote() {
    let _cluster = shared().await;
    ensure_cluster(crate::AGENT);
    let client = client().await;
    let node = Api::<Node>::all(client.clone())
        .get("portcullis-node")
        .await
        .expect("node");
    let port = node
        .status
        .and_then(|s| s.daemon_endpoints)
        .and_then(|d| d.kubelet_endpoint)
        .map(|e| e.port);
    assert_eq!(port, Some(10250), "the Node publishes the kubelet port");

    let namespace = TestNamespace::create(&client, "logs").await;
    let ns = namespace.name.clone();
    apply(&echo_deployment(&ns, "echo", 1));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let ready = wait_for(Duration::from_secs(90), || async {
        ready_pods(&pods, "app=echo", 1).await
    })
    .await
    .expect("the echo pod becomes Ready");
    let pod = ready[0].metadata.name.clone().expect("name");
    let ip = ready[0]
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod IP");
    let logs = |extra: &[&str]| {
        let mut args = vec!["logs", "-n", ns.as_str(), pod.as_str(), "-c", "echo"];
        args.extend_from_slice(extra);
        kubectl(&args)
    };
    // echo-basic prints "Echoing back request made to <path> to client (...)".
    let line_for = |path: &str| format!("Echoing back request made to {path} to client");

    let before = format!("/logs-before-{}", ns);
    http_get_json(&format!("http://{ip}:3000{before}"))
        .await
        .expect("echo answers");
    let all = wait_for(Duration::from_secs(10), || async {
        logs(&[])
            .ok()
            .filter(|text| text.contains(&line_for(&before)))
    })
    .await;
    assert!(
        all.is_some(),
        "kubectl logs shows the request: {:?}",
        logs(&[])
    );

    let last = logs(&["--tail=1", "--timestamps"]).expect("kubectl logs --tail");
    assert_eq!(last.lines().count(), 1, "{last:?}");
    let (time, text) = last.trim_end().split_once(' ').expect("a timestamp");
    time.parse::<k8s_openapi::jiff::Timestamp>()
        .unwrap_or_else(|err| panic!("{time:?} is not a timestamp: {err}"));
    assert!(text.starts_with("Echoing back request made to"), "{last:?}");
    let limited = logs(&["--limit-bytes=5"]).expect("kubectl logs --limit-bytes");
    assert_eq!(limited.len(), 5, "{limited:?}");

    // --since-time has whole seconds: two seconds apart tell the requests apart.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let since = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = format!("/logs-after-{}", ns);
    http_get_json(&format!("http://{ip}:3000{after}"))
        .await
        .expect("echo answers");
    let recent = wait_for(Duration::from_secs(10), || async {
        logs(&[&format!("--since-time={since}")])
            .ok()
            .filter(|text| text.contains(&line_for(&after)))
    })
    .await
    .expect("kubectl logs --since-time shows the later request");
    assert!(!recent.contains(&line_for(&before)), "{recent}");

    // Following: new lines arrive on an open stream.
    let mut follow = tokio::process::Command::new(root().join(".cache/bin/kubectl"))
        .args(["logs", "-f", "--tail=0", "-n", &ns, &pod, "-c", "echo"])
        .env("KUBECONFIG", e2e::cluster::kubeconfig_path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl logs -f");
    let stdout = follow.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let followed = format!("/logs-followed-{}", ns);
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        let mut ticker = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let _ = http_get_json(&format!("http://{ip}:3000{followed}")).await;
                }
                line = lines.next_line() => match line {
                    Ok(Some(line)) if line.contains(&line_for(&followed)) => return line,
                    Ok(Some(_)) => {}
                    other => panic!("kubectl logs -f ended: {other:?}"),
                },
            }
        }
    })
    .await;
    let _ = follow.kill().await;
    assert!(
        seen.is_ok(),
        "kubectl logs -f shows a request made after it started"
    );
    namespace.delete().await;
}
