//! The install path, as a user takes it: `kubectl apply -f
//! deploy/portcullis.yaml` on a cluster with the Gateway API CRDs runs the
//! operator as a Pod with only the manifest's RBAC, and a Gateway and an
//! HTTPRoute then serve traffic. Then the same with the Gateway API v1.2.1
//! standard CRDs (what OpenShift 4.19 ships) in place of v1.6.1: kinds that
//! release lacks are reported through status, not crashed on.
//!
//! One test, two scenarios in order: they share the cluster-wide Gateway API
//! CRDs, so the test holds the cluster alone, and stops the operator the
//! other scenarios run beside the cluster. Before each scenario, the test
//! checks that its operator Pod holds the leader Lease: an operator running
//! beside the cluster would otherwise do the work, and the CRD swap would
//! pull the rug from under it. Guards undo everything even when an
//! assertion fails: the v1.6.1 CRDs come back, and the operator Deployment
//! and its RBAC go, so that the scenarios after it (which start the
//! operator as a local process again, with the same Lease) never meet a
//! second operator.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use e2e::cluster::{TestNamespace, client, ensure_cluster, exclusive, kubectl, root, wait_for};
use e2e::operator::{apply, curl, jsonpath, kubectl_stdin, stop_operator, tail};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;

const SYSTEM: &str = "portcullis-system";
const OPERATOR_SELECTOR: &str = "app.kubernetes.io/name=portcullis-operator";
const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

fn manifest() -> PathBuf {
    root().join("deploy/portcullis.yaml")
}

/// The Gateway API CRDs of a release and channel, as hack/cluster-up.sh
/// applies them: the CRD files and the safe-upgrades admission policy, not
/// the kustomization.
fn crd_files(version: &str, channel: &str) -> Vec<PathBuf> {
    let dir = root()
        .join(".cache/gateway-api")
        .join(version)
        .join(channel);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err} (make cluster-bins)", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("gateway.networking") && n.ends_with(".yaml"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no CRDs in {}", dir.display());
    files
}

fn apply_crds(version: &str, channel: &str) -> Result<(), String> {
    let files = crd_files(version, channel);
    let mut args = vec!["apply", "--server-side", "--force-conflicts"];
    let paths: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    for path in &paths {
        args.extend(["-f", path.as_str()]);
    }
    kubectl(&args)?;
    kubectl(&[
        "wait",
        "--for",
        "condition=Established",
        "--timeout",
        "60s",
        "crd",
        "--all",
    ])?;
    wait_served()
}

/// Waits until every Gateway API kind answers a list: a CRD deleted and
/// created again under the same name can be Established a moment before
/// the API server serves it, and the tests after this one would meet 404s.
fn wait_served() -> Result<(), String> {
    let resources: Vec<String> = kubectl(&["get", "crd", "-o", "name"])?
        .lines()
        .filter_map(|line| line.strip_prefix("customresourcedefinition.apiextensions.k8s.io/"))
        .filter(|name| name.ends_with(&format!(".{GATEWAY_GROUP}")))
        .map(str::to_owned)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match kubectl(&["get", &resources.join(","), "-A", "-o", "name"]) {
            Ok(_) => return Ok(()),
            Err(err) if Instant::now() >= deadline => {
                return Err(format!(
                    "the Gateway API kinds are not served 60 s after their CRDs: {err}"
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Removes every Gateway API CRD (and with them every Gateway API object),
/// and the admission policy that forbids installing an older release.
fn remove_crds() -> Result<(), String> {
    for kind in [
        "validatingadmissionpolicybinding",
        "validatingadmissionpolicy",
    ] {
        kubectl(&[
            "delete",
            kind,
            &format!("safe-upgrades.{GATEWAY_GROUP}"),
            "--ignore-not-found",
        ])?;
    }
    let names: Vec<String> = kubectl(&["get", "crd", "-o", "name"])?
        .lines()
        .filter(|line| line.ends_with(&format!(".{GATEWAY_GROUP}")))
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let mut args = vec!["delete", "--wait=true", "--timeout=120s"];
    args.extend(names.iter().map(String::as_str));
    kubectl(&args).map(|_| ())
}

/// An annotation of the cluster's Gateway CRD: `bundle-version` or
/// `channel`, saying which Gateway API release is installed.
fn installed(annotation: &str, default: &str) -> String {
    kubectl(&[
        "get",
        "crd",
        &format!("gateways.{GATEWAY_GROUP}"),
        "-o",
        &format!("jsonpath={{.metadata.annotations.gateway\\.networking\\.k8s\\.io/{annotation}}}"),
    ])
    .ok()
    .filter(|c| !c.is_empty())
    .unwrap_or_else(|| default.to_owned())
}

/// Every Gateway API object on the cluster, ready to be created again:
/// what deleting the CRDs deletes (other tests' and `make demo`'s too).
fn backup_objects() -> Vec<Value> {
    let resources = kubectl(&["api-resources", "--api-group", GATEWAY_GROUP, "-o", "name"])
        .expect("kubectl api-resources");
    let resources: Vec<&str> = resources.lines().filter(|l| !l.is_empty()).collect();
    if resources.is_empty() {
        return Vec::new();
    }
    let listing = kubectl(&["get", &resources.join(","), "-A", "-o", "json"])
        .expect("list the Gateway API objects");
    let list: Value = serde_json::from_str(&listing).expect("JSON list");
    let mut objects = list["items"].as_array().cloned().unwrap_or_default();
    for object in &mut objects {
        if let Some(object) = object.as_object_mut() {
            object.remove("status");
        }
        if let Some(meta) = object["metadata"].as_object_mut() {
            for field in [
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "generation",
                "managedFields",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                meta.remove(field);
            }
        }
    }
    objects
}

/// Swaps the cluster's Gateway API CRDs for another release; dropping it
/// puts the original release back, and the Gateway API objects that went
/// with the CRDs (GatewayClasses, Gateways, routes: `make demo`'s, other
/// tests'), whatever happened in between.
struct SwappedCrds {
    original: (String, String),
    objects: Vec<Value>,
}

impl SwappedCrds {
    fn to(version: &str) -> SwappedCrds {
        let guard = SwappedCrds {
            original: (
                installed("bundle-version", "v1.6.1"),
                installed("channel", "standard"),
            ),
            objects: backup_objects(),
        };
        remove_crds().expect("remove the Gateway API CRDs");
        apply_crds(version, "standard").expect("install the older Gateway API CRDs");
        guard
    }
}

impl Drop for SwappedCrds {
    fn drop(&mut self) {
        let (version, channel) = &self.original;
        if let Err(err) = remove_crds().and_then(|()| apply_crds(version, channel)) {
            // Every test after this one would fail for it: fail here, where
            // the cause is, unless this test is failing already.
            let message =
                format!("could not restore the Gateway API {version} {channel} CRDs: {err}");
            if std::thread::panicking() {
                eprintln!("{message}");
                return;
            }
            panic!("{message}");
        }
        if self.objects.is_empty() {
            return;
        }
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": self.objects});
        // Objects of namespaces deleted meanwhile fail alone; the rest land.
        if let Err(err) = kubectl_stdin(&["create", "-f", "-"], &list.to_string()) {
            eprintln!("some Gateway API objects were not restored: {err}");
        }
    }
}

/// The operator installed from deploy/; dropping it removes the operator
/// Deployment (waiting for its Pod to stop and give its Lease up), its RBAC
/// and the test namespaces. The namespace portcullis-system, the ProxyConfig
/// CRD and the GatewayClass stay: other tests use them.
struct Installed {
    namespaces: Vec<TestNamespace>,
}

impl Installed {
    fn apply() -> Installed {
        let installed = Installed {
            namespaces: Vec::new(),
        };
        kubectl(&["apply", "-f", &manifest().display().to_string()])
            .expect("kubectl apply -f deploy/portcullis.yaml");
        installed
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        // Dropped, each test namespace is deleted.
        self.namespaces.clear();
        let _ = kubectl(&[
            "-n",
            SYSTEM,
            "delete",
            "deployment",
            "portcullis-operator",
            "--ignore-not-found",
            "--wait=true",
            "--timeout=60s",
        ]);
        for _ in 0..120 {
            let left = kubectl(&[
                "-n",
                SYSTEM,
                "get",
                "pods",
                "-l",
                OPERATOR_SELECTOR,
                "-o",
                "name",
            ])
            .unwrap_or_default();
            if left.trim().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        for object in [
            "clusterrolebinding/portcullis-operator",
            "clusterrole/portcullis-operator",
        ] {
            let _ = kubectl(&["delete", object, "--ignore-not-found"]);
        }
        for object in [
            "rolebinding/portcullis-operator-leader-election",
            "role/portcullis-operator-leader-election",
            "serviceaccount/portcullis-operator",
        ] {
            let _ = kubectl(&["-n", SYSTEM, "delete", object, "--ignore-not-found"]);
        }
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits for the operator Pod to be Ready (its readiness probe is /readyz:
/// every watch cache synced, which takes every list and watch permission).
async fn ready_operator(timeout: Duration) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client().await, SYSTEM);
    let ready = wait_for(timeout, || async {
        pods.list(&ListParams::default().labels(OPERATOR_SELECTOR))
            .await
            .ok()?
            .items
            .into_iter()
            .find(is_ready)
    })
    .await;
    ready.unwrap_or_else(|| {
        let listing = kubectl(&["-n", SYSTEM, "get", "pods", "-o", "wide"]).unwrap_or_default();
        panic!(
            "the operator Pod never became Ready:\n{listing}\n{}",
            tail(&operator_logs(), 40)
        )
    })
}

/// Waits until `pod` holds the leader Lease, so that what follows is this
/// operator's work and not another's: an operator run beside the cluster
/// (`make demo`, or another test run) uses the same Lease. Fails before the
/// scenario touches anything cluster-wide.
async fn leader(pod: &Pod) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let holder = || {
        jsonpath(
            SYSTEM,
            "lease/portcullis-operator",
            "{.spec.holderIdentity}",
        )
    };
    let held = wait_for(Duration::from_secs(45), || async {
        (holder()? == name).then_some(())
    })
    .await;
    if held.is_none() {
        panic!(
            "the operator Pod {name} never held the Lease portcullis-operator (holder: {:?}): another operator runs against this cluster; stop it first",
            holder()
        );
    }
}

/// The newest operator container log the node agent wrote (Pod
/// directories `<namespace>_<pod>_<uid>` under its state directory), for
/// failure messages.
fn operator_logs() -> String {
    let dir = root().join(".cache/cluster/node/pods");
    let prefix = format!("{SYSTEM}_portcullis-operator-");
    std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .map(|entry| entry.path().join("operator.log"))
        .filter_map(|log| Some((log.metadata().ok()?.modified().ok()?, log)))
        .max()
        .and_then(|(_, log)| std::fs::read_to_string(log).ok())
        .unwrap_or_default()
}

/// The log of one operator Pod.
fn pod_log(pod: &Pod) -> String {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let path = root()
        .join(".cache/cluster/node/pods")
        .join(format!("{SYSTEM}_{name}_{uid}"))
        .join("operator.log");
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Lines of a log that show the API server refusing the operator. A 403 for
/// writing into a namespace being deleted (another test's, left terminating)
/// is the namespace lifecycle admission's, not RBAC's.
fn rbac_errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| {
            let line = line.to_lowercase();
            (line.contains("forbidden") && !line.contains("namespaceterminating"))
                || line.contains("cannot list")
                || line.contains("cannot watch")
        })
        .collect()
}

#[test]
fn a_terminating_namespace_is_not_an_rbac_error() {
    let log = concat!(
        "WARN write failed: deployments.apps \"x\" is forbidden: unable to create new content in namespace n because it is being terminated (reason: \"NamespaceTerminating\")\n",
        "WARN watch failed: leases.coordination.k8s.io is forbidden: User \"system:serviceaccount:portcullis-system:portcullis-operator\" cannot get resource \"leases\"\n",
        "WARN list failed: User \"sa\" cannot list resource \"secrets\"\n",
    );
    let errors = rbac_errors(log);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|line| !line.contains("NamespaceTerminating"))
    );
}

/// An echo backend like examples/10-echo.yaml's echo-v1, a Gateway with an
/// HTTP listener and a TCP listener for TCPRoutes, and an HTTPRoute.
fn workload(namespace: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: echo-v1, namespace: {namespace}}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: echo, version: v1}}
  template:
    metadata:
      labels: {{app: echo, version: v1}}
    spec:
      containers:
      - name: echo
        image: registry.k8s.io/gateway-api/echo-basic:v1.6.1
        env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - {{name: NAMESPACE, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
        ports:
        - containerPort: 3000
        readinessProbe:
          httpGet: {{path: /, port: 3000}}
---
apiVersion: v1
kind: Service
metadata: {{name: echo-v1, namespace: {namespace}}}
spec:
  selector: {{app: echo, version: v1}}
  ports:
  - {{name: http, port: 8080, targetPort: 3000}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: {namespace}}}
spec:
  gatewayClassName: portcullis
  listeners:
  - name: http
    protocol: HTTP
    port: 80
  - name: tcp
    protocol: TCP
    port: 9000
    allowedRoutes:
      kinds: [{{kind: TCPRoute}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: app, namespace: {namespace}}}
spec:
  parentRefs: [{{name: edge, sectionName: http}}]
  hostnames: [install.example]
  rules:
  - backendRefs: [{{name: echo-v1, port: 8080}}]
"#
    )
}

/// A condition of a Gateway listener, once the operator wrote one.
fn listener_condition(namespace: &str, listener: &str, type_: &str) -> Option<Value> {
    let text = jsonpath(
        namespace,
        "gateway/edge",
        &format!(
            "{{.status.listeners[?(@.name==\"{listener}\")].conditions[?(@.type==\"{type_}\")]}}"
        ),
    )?;
    serde_json::from_str(&text).ok()
}

/// Creates the workload in a new namespace and checks traffic flows through
/// the Gateway's address; returns the namespace and the TCP listener's
/// ResolvedRefs condition.
async fn serve_traffic(installed: &mut Installed, purpose: &str) -> (String, Value) {
    let created = TestNamespace::create(&client().await, purpose).await;
    let namespace = created.name.clone();
    installed.namespaces.push(created);
    apply(&workload(&namespace)).expect("apply the workload");

    let started = Instant::now();
    let address = wait_for(Duration::from_secs(120), || async {
        jsonpath(&namespace, "gateway/edge", "{.status.addresses[0].value}")
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the Gateway never got an address; status: {}\noperator log:\n{}",
            jsonpath(&namespace, "gateway/edge", "{.status}").unwrap_or_default(),
            tail(&operator_logs(), 40)
        )
    });
    println!(
        "[{purpose}] Gateway address {address} after {:?}",
        started.elapsed()
    );
    let url = format!("http://{address}/install");
    let answer = wait_for(Duration::from_secs(120), || async {
        curl(&url, &["-H", "Host: install.example"])
            .await
            .filter(|a| a.status == 200)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "{url} never answered 200; Gateway status: {}\nHTTPRoute status: {}\noperator log:\n{}",
            jsonpath(&namespace, "gateway/edge", "{.status}").unwrap_or_default(),
            jsonpath(&namespace, "httproute/app", "{.status}").unwrap_or_default(),
            tail(&operator_logs(), 40)
        )
    });
    println!(
        "[{purpose}] 200 through the Gateway after {:?}",
        started.elapsed()
    );
    let echo: Value = serde_json::from_str(&answer.body).expect("echo answers JSON");
    assert_eq!(echo["namespace"], namespace.as_str(), "{echo}");
    assert!(
        echo["pod"]
            .as_str()
            .is_some_and(|p| p.starts_with("echo-v1-")),
        "{echo}"
    );

    let accepted = wait_for(Duration::from_secs(30), || async {
        let text = jsonpath(
            &namespace,
            "httproute/app",
            "{.status.parents[0].conditions[?(@.type==\"Accepted\")].status}",
        )?;
        (text == "True").then_some(())
    })
    .await;
    assert!(accepted.is_some(), "HTTPRoute not Accepted");
    let resolved = wait_for(Duration::from_secs(30), || async {
        listener_condition(&namespace, "tcp", "ResolvedRefs")
    })
    .await
    .expect("the TCP listener has a ResolvedRefs condition");
    (namespace, resolved)
}

fn stop_demo_operator() {
    // `make demo` runs an operator beside the cluster with the same Lease.
    let pid_file = root().join(".cache/demo/operator.pid");
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        std::thread::sleep(Duration::from_secs(4));
        let _ = std::fs::remove_file(pid_file);
    }
}

#[tokio::test]
async fn deploy_manifest_installs_an_operator_that_serves_on_gateway_api_v1_6_1_and_v1_2_1() {
    let _cluster = exclusive().await;
    ensure_cluster(crate::AGENT);
    for binary in ["portcullis-operator", "portcullis-proxy"] {
        let path = root().join("target/debug").join(binary);
        assert!(
            path.exists(),
            "{} is missing: cargo build -p operator -p proxy",
            path.display()
        );
    }
    stop_demo_operator();
    stop_operator();
    let started = Instant::now();

    // Scenario 1: the Gateway API release the cluster runs (v1.6.1).
    let mut installed = Installed::apply();
    let pod = ready_operator(Duration::from_secs(120)).await;
    println!("[v1.6.1] operator Pod Ready after {:?}", started.elapsed());
    leader(&pod).await;
    println!("[v1.6.1] operator Pod leads after {:?}", started.elapsed());
    let (_, resolved) = serve_traffic(&mut installed, "install").await;
    assert_eq!(resolved["status"], "True", "TCPRoute is served: {resolved}");
    let log = pod_log(&pod);
    assert!(
        log.contains("watching the served Gateway API kinds"),
        "{}",
        tail(&log, 20)
    );
    assert_eq!(
        rbac_errors(&log),
        Vec::<&str>::new(),
        "RBAC errors in the operator log"
    );

    // Scenario 2: Gateway API v1.2.1 standard, as OpenShift 4.19 pins it:
    // no TLSRoute, TCPRoute, UDPRoute or BackendTLSPolicy.
    let phase = Instant::now();
    leader(&pod).await;
    {
        let _crds = SwappedCrds::to("v1.2.1");
        println!("[v1.2.1] CRDs swapped in {:?}", phase.elapsed());
        // The GatewayClass went with the v1.6.1 CRDs: apply the manifest
        // again, as a user would.
        kubectl(&["apply", "-f", &manifest().display().to_string()])
            .expect("kubectl apply -f deploy/portcullis.yaml on v1.2.1");
        let (namespace, resolved) = serve_traffic(&mut installed, "install-v121").await;
        assert_eq!(resolved["status"], "False", "{resolved}");
        assert_eq!(resolved["reason"], "InvalidRouteKinds", "{resolved}");
        let message = resolved["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("TCPRoute") && message.contains("not installed"),
            "{message}"
        );
        // Not crashed on: the same Pod, Ready, its container never restarted.
        let again = ready_operator(Duration::from_secs(60)).await;
        assert_eq!(again.metadata.uid, pod.metadata.uid, "a new operator Pod");
        leader(&pod).await;
        let restarts = jsonpath(
            SYSTEM,
            &format!("pod/{}", pod.metadata.name.clone().unwrap_or_default()),
            "{.status.containerStatuses[0].restartCount}",
        );
        assert_eq!(restarts.as_deref(), Some("0"), "the operator restarted");
        let log = pod_log(&pod);
        assert_eq!(
            rbac_errors(&log),
            Vec::<&str>::new(),
            "RBAC errors in the operator log"
        );
        println!(
            "[v1.2.1] traffic and InvalidRouteKinds on {namespace} after {:?}",
            phase.elapsed()
        );
    }
    println!("[done] v1.6.1 CRDs restored after {:?}", started.elapsed());
}
