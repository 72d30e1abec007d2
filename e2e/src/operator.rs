//! Fixtures for operator scenarios: the operator running as a process
//! beside the local cluster (as `make demo` runs it), the GatewayClass, and
//! helpers to apply YAML and send requests through a Gateway.
#![allow(clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

use crate::cluster::{kubeconfig_path, kubectl, root, wait_for};

/// A running `portcullis-operator`.
#[derive(Debug)]
pub struct Operator {
    pid: u32,
    pub log: std::path::PathBuf,
}

static OPERATOR: Mutex<Option<Operator>> = Mutex::new(None);

/// Starts the operator once for this test binary (stopping a `make demo`
/// one first, so that exactly this build serves the tests). It dies with
/// the test binary.
pub fn ensure_operator() {
    let mut slot = OPERATOR.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        stop_demo_operator();
        prepare_cluster();
        *slot = Some(spawn("operator"));
    }
}

/// Stops the operator (SIGKILL when `hard`, else SIGTERM and a wait) and
/// starts a new one: what a crash or a rolling update does.
pub fn restart_operator(hard: bool) {
    let mut slot = OPERATOR.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(old) = slot.take() {
        stop(&old, hard);
    }
    *slot = Some(spawn("operator-restarted"));
}

/// Stops the operator this binary runs, if any, so that another one (the
/// install scenario's, in a Pod) can hold the Lease; the next
/// [`ensure_operator`] starts it again.
pub fn stop_operator() {
    let mut slot = OPERATOR.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(old) = slot.take() {
        stop(&old, false);
    }
}

/// SIGKILL when `hard`, else SIGTERM (the operator gives its Lease up);
/// then waits for the process to be gone.
fn stop(operator: &Operator, hard: bool) {
    let signal = if hard { "-KILL" } else { "-TERM" };
    let _ = Command::new("kill")
        .args([signal, &operator.pid.to_string()])
        .status();
    for _ in 0..50 {
        if !std::path::Path::new(&format!("/proc/{}", operator.pid)).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The operator's log so far, for assertions and failure messages.
pub fn operator_log() -> String {
    let slot = OPERATOR.lock().unwrap_or_else(|e| e.into_inner());
    slot.as_ref()
        .and_then(|o| std::fs::read_to_string(&o.log).ok())
        .unwrap_or_default()
}

/// A counter or gauge from the running operator's `/metrics`, found through
/// the admin address its log announces.
pub async fn operator_metric(name: &str) -> Option<f64> {
    let log = operator_log();
    let line = log.lines().find(|l| l.contains("admin server listening"))?;
    let start = line.find("127.0.0.1:")?;
    let address: String = line[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    let answer = curl(&format!("http://{address}/metrics"), &[]).await?;
    answer.body.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn stop_demo_operator() {
    let pid_file = root().join(".cache/demo/operator.pid");
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let _ = Command::new("kill").arg(pid.trim()).status();
        std::thread::sleep(Duration::from_secs(4));
        let _ = std::fs::remove_file(pid_file);
    }
}

/// Our CRD, the operator's namespace (for its Lease) and the GatewayClass.
fn prepare_cluster() {
    kubectl(&[
        "apply",
        "-f",
        &root()
            .join("crds/gateway.portcullis.io_proxyconfigs.yaml")
            .display()
            .to_string(),
    ])
    .expect("ProxyConfig CRD");
    apply(
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: portcullis-system}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: portcullis}
spec: {controllerName: portcullis.io/gateway-controller}
"#,
    )
    .expect("GatewayClass");
}

fn spawn(name: &str) -> Operator {
    let binary = root().join("target/debug/portcullis-operator");
    assert!(
        binary.exists(),
        "{} is missing: cargo build -p operator",
        binary.display()
    );
    let log = root().join(format!(".cache/e2e-{name}-{}.log", std::process::id()));
    let (sender, receiver) = mpsc::channel();
    let log_path = log.clone();
    // The child is spawned and waited for by a thread that lives as long as
    // the test binary: with PDEATHSIG the operator dies with that thread,
    // so no operator outlives the tests.
    std::thread::spawn(move || {
        let file = std::fs::File::create(&log_path).expect("operator log");
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "TERM", "--"])
            .arg(&binary)
            .args([
                "--admin",
                "127.0.0.1:0",
                "--log-level",
                "info,operator=debug",
            ])
            .env("KUBECONFIG", kubeconfig_path())
            .env("POD_NAMESPACE", "portcullis-system")
            .env(
                "PORTCULLIS_PROXY_IMAGE",
                "ghcr.io/portcullis-io/portcullis-proxy:e2e",
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn();
        match child {
            Ok(mut child) => {
                let _ = sender.send(Ok(child.id()));
                let _ = child.wait();
            }
            Err(err) => {
                let _ = sender.send(Err(err.to_string()));
            }
        }
    });
    let pid = receiver
        .recv()
        .expect("spawner thread")
        .unwrap_or_else(|err| panic!("cannot start the operator: {err}"));
    Operator { pid, log }
}

/// `kubectl apply -f -` with `yaml`.
pub fn apply(yaml: &str) -> Result<String, String> {
    kubectl_stdin(&["apply", "-f", "-"], yaml)
}

pub fn kubectl_stdin(args: &[&str], input: &str) -> Result<String, String> {
    let program = root().join(".cache/bin/kubectl");
    let mut child = Command::new(program)
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(input.as_bytes())
        .map_err(|e| e.to_string())?;
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// A jsonpath of an object, or None while it does not exist.
pub fn jsonpath(namespace: &str, resource: &str, path: &str) -> Option<String> {
    kubectl(&[
        "-n",
        namespace,
        "get",
        resource,
        "-o",
        &format!("jsonpath={path}"),
    ])
    .ok()
    .filter(|s| !s.is_empty())
}

/// Waits for a condition of an object to have `status` (and `reason`, when
/// given); panics with the object's status otherwise.
pub async fn wait_condition(
    namespace: &str,
    resource: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
) {
    let path = format!("{{.status.conditions[?(@.type==\"{type_}\")]}}");
    wait_json(namespace, resource, &path, |c| {
        c["status"] == status && reason.is_none_or(|r| c["reason"] == r)
    })
    .await;
}

/// Waits until the JSON at `path` of an object satisfies `check`.
pub async fn wait_json(
    namespace: &str,
    resource: &str,
    path: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) {
    let found = wait_for(Duration::from_secs(60), || async {
        let text = jsonpath(namespace, resource, path)?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        check(&value).then_some(())
    })
    .await;
    if found.is_none() {
        let status = jsonpath(namespace, resource, "{.status}").unwrap_or_default();
        panic!(
            "{resource} in {namespace}: {path} never matched; status: {status}\noperator log tail:\n{}",
            tail(&operator_log(), 30)
        );
    }
}

/// The last `lines` lines of a text.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits for the Gateway's first address.
pub async fn gateway_address(namespace: &str, gateway: &str) -> String {
    let resource = format!("gateway/{gateway}");
    wait_condition(namespace, &resource, "Programmed", "True", None).await;
    jsonpath(namespace, &resource, "{.status.addresses[0].value}").expect("address")
}

/// The result of one request made with curl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub headers: String,
}

/// One request through curl: `extra` are curl arguments (`-H`, `--resolve`,
/// `--cacert` ...).
pub async fn curl(url: &str, extra: &[&str]) -> Option<Answer> {
    let output = tokio::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            "-D",
            "-",
            "-o",
            "/dev/stdout",
            "-w",
            "\n%{http_code}",
        ])
        .args(extra)
        .arg(url)
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (rest, code) = text.rsplit_once('\n')?;
    let status: u16 = code.trim().parse().ok()?;
    if status == 0 {
        return None;
    }
    let (headers, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    Some(Answer {
        status,
        body: body.to_owned(),
        headers: headers.to_owned(),
    })
}

/// `count` requests over keep-alive connections in one curl; returns the
/// bodies, concatenated.
pub async fn curl_many(url: &str, count: usize, extra: &[&str]) -> String {
    let mut config = String::new();
    for _ in 0..count {
        config.push_str(&format!("url = \"{url}\"\n"));
    }
    let path = std::env::temp_dir().join(format!(
        "curl-{}-{}.conf",
        std::process::id(),
        fastrand_suffix()
    ));
    std::fs::write(&path, config).expect("curl config");
    let output = tokio::process::Command::new("curl")
        .args(["-s", "--max-time", "120", "-K"])
        .arg(&path)
        .args(extra)
        .output()
        .await
        .expect("curl");
    let _ = std::fs::remove_file(path);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn fastrand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// The pod each answer names, in order, from echo servers' JSON bodies
/// (as [`curl_many`] returns them).
pub fn answering_pods(bodies: &str) -> Vec<String> {
    bodies
        .split("\"pod\": \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// An echo Deployment and Service (`<name>`, port 8080 → 3000).
pub fn echo(namespace: &str, name: &str, replicas: u32) -> String {
    format!(
        r#"
---
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
        image: registry.k8s.io/gateway-api/echo-basic:v1.6.1
        env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - {{name: NAMESPACE, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
        ports: [{{containerPort: 3000}}]
        readinessProbe: {{httpGet: {{path: /, port: 3000}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 8080, targetPort: 3000}}]
"#
    )
}

/// A self-signed certificate for `names` (openssl), as (cert PEM, key PEM).
pub fn certificate(common_name: &str, names: &[&str]) -> (String, String) {
    let dir =
        std::env::temp_dir().join(format!("cert-{}-{}", std::process::id(), fastrand_suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let san = names
        .iter()
        .map(|n| format!("DNS:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            &format!("/CN={common_name}"),
            "-addext",
            &format!("subjectAltName={san}"),
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success(), "openssl req failed");
    let cert = std::fs::read_to_string(dir.join("cert.pem")).expect("cert");
    let key = std::fs::read_to_string(dir.join("key.pem")).expect("key");
    let _ = std::fs::remove_dir_all(dir);
    (cert, key)
}

/// A `kubernetes.io/tls` Secret manifest.
pub fn tls_secret(namespace: &str, name: &str, cert: &str, key: &str) -> String {
    use std::fmt::Write as _;
    let b64 = |text: &str| {
        let output = Command::new("base64")
            .arg("-w0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                child.stdin.take().map(|mut s| s.write_all(text.as_bytes()));
                child.wait_with_output()
            })
            .expect("base64");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let mut yaml = String::new();
    let _ = write!(
        yaml,
        "\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(cert),
        b64(key)
    );
    yaml
}
