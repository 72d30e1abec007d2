//! Fixtures for end-to-end tests: the local cluster (started once per test
//! binary, or reused when running), a client per test, a namespace per test.
//! Fixtures fail loudly: a test that cannot set up must not pass.
#![allow(clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

pub fn kubeconfig_path() -> PathBuf {
    root().join(".cache/kubeconfig")
}

/// Who may use the cluster at a time: scenarios share it, except those
/// that change what every other one relies on.
static CLUSTER_USE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Holds the cluster for a scenario that shares it with others (most do).
pub async fn shared() -> tokio::sync::RwLockReadGuard<'static, ()> {
    CLUSTER_USE.read().await
}

/// Holds the cluster alone, once every running scenario let it go: for a
/// scenario that swaps the Gateway API CRDs or stops the operator, or one
/// whose thousands of objects would flood the operator's watches while
/// others measure how fast it reacts.
pub async fn exclusive() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    CLUSTER_USE.write().await
}

/// Starts the local cluster once for this test binary (a running one is
/// reused), with `node_agent` as the node agent binary. Panics with the
/// script's output when it cannot start: every e2e test needs it.
pub fn ensure_cluster(node_agent: &str) {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = STARTED.get_or_init(|| {
        let output = Command::new(root().join("hack/cluster-up.sh"))
            .env("NODE_AGENT", node_agent)
            .output()
            .map_err(|err| format!("cannot run hack/cluster-up.sh: {err}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "hack/cluster-up.sh failed:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

/// A client for the local cluster, for the calling test's runtime.
pub async fn client() -> Client {
    let kubeconfig =
        Kubeconfig::read_from(kubeconfig_path()).expect("kubeconfig of the local cluster");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("client config");
    Client::try_from(config).expect("client")
}

/// Runs kubectl against the local cluster; returns stdout, or stderr as the error.
pub fn kubectl(args: &[&str]) -> Result<String, String> {
    let kubectl = root().join(".cache/bin/kubectl");
    let program = if kubectl.exists() {
        kubectl
    } else {
        PathBuf::from("kubectl")
    };
    let output = Command::new(program)
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .map_err(|err| err.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// A namespace of the test's own, deleted by [`TestNamespace::delete`], or
/// when dropped (a failed assertion included), so that no test leaves its
/// objects behind.
pub struct TestNamespace {
    pub name: String,
    client: Client,
    deleted: bool,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .finish()
    }
}

impl TestNamespace {
    pub async fn create(client: &Client, purpose: &str) -> TestNamespace {
        let name = format!("e2e-{purpose}-{:06x}", fastrand_u32() & 0xff_ffff);
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("portcullis.io/e2e".to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .expect("namespace");
        // Pods need the namespace's default ServiceAccount.
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), &name);
        for _ in 0..100 {
            if accounts.get_opt("default").await.ok().flatten().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        TestNamespace {
            name,
            client: client.clone(),
            deleted: false,
        }
    }

    pub async fn delete(mut self) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let _ = namespaces
            .delete(&self.name, &DeleteParams::default())
            .await;
        self.deleted = true;
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if !self.deleted {
            let _ = kubectl(&["delete", "namespace", &self.name, "--wait=false"]);
        }
    }
}

/// Pseudo-random bits for names, without another dependency.
fn fastrand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    nanos ^ std::process::id().rotate_left(16)
}

/// Polls `check` until it yields a value or `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
