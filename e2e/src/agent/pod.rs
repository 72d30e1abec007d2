//! One Pod's life: sandbox, volumes, containers as processes, probes,
//! status, graceful termination.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, EnvVar, Pod, PodCondition, PodIP, PodStatus, Secret,
    ServiceAccount, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::error::AgentError;
use super::network::run;
use super::state::Agent;
use super::{logs, probe};

const MANAGER: &str = "portcullis-node-agent";

fn now() -> Time {
    Time(Timestamp::now())
}

/// Runtime state of one container.
struct ContainerRun {
    spec: Container,
    child: Option<Child>,
    started_at: Option<Time>,
    restarts: i32,
    last_exit: Option<(i32, Time, Time)>,
    /// Why it is not running, when it is not.
    waiting: Option<(String, String)>,
    next_start: Instant,
    ready: bool,
    started: bool,
    probe_due: HashMap<&'static str, Instant>,
    probe_streak: HashMap<&'static str, (i32, i32)>,
    finished: bool,
}

struct Sandbox {
    namespace: String,
    address: Ipv4Addr,
    dir: PathBuf,
    /// Mount points the agent had to create on the host, removed at the end.
    created_mount_points: Vec<PathBuf>,
}

/// Supervises a Pod until it is deleted or has finished.
pub async fn supervise(
    agent: Arc<Agent>,
    pod: Pod,
    mut latest: watch::Receiver<Pod>,
    mut stopping: watch::Receiver<bool>,
) {
    let name = pod.name_any();
    let namespace = pod.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(agent.client.clone(), &namespace);
    if *stopping.borrow() {
        finalize(&pods, &pod).await;
        return;
    }
    let sandbox = loop {
        match prepare(&agent, &pod).await {
            Ok(sandbox) => break sandbox,
            Err(err) => {
                warn!(pod = %name, %namespace, error = %err, "cannot prepare the pod sandbox; retrying");
                let _ = patch_status(
                    &pods,
                    &name,
                    waiting_status(&pod, "SandboxFailed", &err.to_string()),
                )
                .await;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    _ = stopping.changed() => {
                        finalize(&pods, &pod).await;
                        return;
                    }
                }
            }
        }
    };
    let spec = pod.spec.clone().unwrap_or_default();
    let start_time = now();
    let mut containers: Vec<ContainerRun> = spec
        .containers
        .iter()
        .map(|c| ContainerRun {
            spec: c.clone(),
            child: None,
            started_at: None,
            restarts: 0,
            last_exit: None,
            waiting: None,
            next_start: Instant::now(),
            ready: false,
            started: false,
            probe_due: HashMap::new(),
            probe_streak: HashMap::new(),
            finished: false,
        })
        .collect();
    let restart_policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let mut last_status = None;
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopping.changed() => break,
            _ = latest.changed() => {}
        }
        if *stopping.borrow() {
            break;
        }
        let current = latest.borrow().clone();
        for container in &mut containers {
            tend(&agent, &current, &sandbox, container, &restart_policy).await;
        }
        let status = pod_status(
            &current,
            &sandbox,
            &containers,
            &start_time,
            agent.network.gateway(),
        );
        if last_status.as_ref() != Some(&status) {
            match patch_status(&pods, &name, status.clone()).await {
                Ok(()) => last_status = Some(status),
                Err(err) => debug!(pod = %name, error = %err, "status patch failed"),
            }
        }
        if containers.iter().all(|c| c.finished) {
            info!(pod = %name, %namespace, "all containers finished");
            // Leave the sandbox to deletion; a finished Pod keeps its status.
            let _ = stopping.changed().await;
            break;
        }
    }
    let grace = latest
        .borrow()
        .clone()
        .metadata
        .deletion_grace_period_seconds
        .or(spec.termination_grace_period_seconds)
        .unwrap_or(30);
    terminate(
        &mut containers,
        Duration::from_secs(u64::try_from(grace).unwrap_or(30)),
    )
    .await;
    agent
        .network
        .destroy(&sandbox.namespace, sandbox.address)
        .await;
    for point in sandbox.created_mount_points.iter().rev() {
        let _ = std::fs::remove_dir(point);
    }
    info!(pod = %name, %namespace, "pod stopped");
    let last = latest.borrow().clone();
    finalize(&pods, &last).await;
}

/// Deletes the Pod object for good, as the kubelet does once containers
/// are gone.
async fn finalize(pods: &Api<Pod>, pod: &Pod) {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: pod.uid().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    if let Err(err) = pods.delete(&pod.name_any(), &params).await {
        debug!(pod = %pod.name_any(), error = %err, "final delete");
    }
}

async fn terminate(containers: &mut [ContainerRun], grace: Duration) {
    for container in containers.iter() {
        if let Some(pid) = container.child.as_ref().and_then(Child::id) {
            let _ = run("kill", &["-TERM", &pid.to_string()]).await;
        }
    }
    let deadline = tokio::time::Instant::now() + grace;
    for container in containers.iter_mut() {
        if let Some(child) = container.child.as_mut()
            && tokio::time::timeout_at(deadline, child.wait())
                .await
                .is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// The directory of a Pod's sandbox: volumes, token, container logs. Names
/// and namespaces hold no `_`, so `<namespace>_<name>_` prefixes only the
/// sandboxes of that Pod name.
pub fn sandbox_dir(state_dir: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    state_dir
        .join("pods")
        .join(format!("{namespace}_{name}_{uid}"))
}

/// A container's log file in its Pod's sandbox directory (CRI format, see
/// [`super::logs`]); restarts append to it.
pub fn log_path(sandbox_dir: &Path, container: &str) -> PathBuf {
    sandbox_dir.join(format!("{container}.log"))
}

/// Creates the network sandbox and materializes volumes.
async fn prepare(agent: &Agent, pod: &Pod) -> Result<Sandbox, AgentError> {
    let uid = pod.uid().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let sysctls: Vec<(String, String)> = spec
        .security_context
        .as_ref()
        .and_then(|s| s.sysctls.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.name, s.value))
        .collect();
    let dir = sandbox_dir(
        &agent.config.state_dir,
        &pod.namespace().unwrap_or_default(),
        &pod.name_any(),
        &uid,
    );
    let volumes_dir = dir.join("volumes");
    std::fs::create_dir_all(&volumes_dir).map_err(|source| AgentError::Io {
        context: format!("cannot create {}", volumes_dir.display()),
        source,
    })?;
    for volume in spec.volumes.iter().flatten() {
        materialize(agent, pod, volume, &volumes_dir.join(&volume.name)).await?;
    }
    let (namespace, address) = agent.network.create(&uid, &sysctls).await?;
    let mut created_mount_points = Vec::new();
    for container in &spec.containers {
        for mount in container.volume_mounts.iter().flatten() {
            let target = PathBuf::from(&mount.mount_path);
            if !target.exists() {
                let mut missing = Vec::new();
                let mut cursor = target.as_path();
                while !cursor.exists() {
                    missing.push(cursor.to_path_buf());
                    match cursor.parent() {
                        Some(parent) => cursor = parent,
                        None => break,
                    }
                }
                std::fs::create_dir_all(&target).map_err(|source| AgentError::Io {
                    context: format!("cannot create mount point {}", target.display()),
                    source,
                })?;
                created_mount_points.extend(missing.into_iter().rev());
            }
        }
    }
    Ok(Sandbox {
        namespace,
        address,
        dir,
        created_mount_points,
    })
}

/// Where a Secret or ConfigMap key lands in a volume: with `items`, only
/// the listed keys, at their paths; without, every key under its own name.
fn item_path(items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>, key: &str) -> Option<String> {
    match items {
        Some(items) if !items.is_empty() => items
            .iter()
            .find(|item| item.key == key)
            .map(|item| item.path.clone()),
        _ => Some(key.to_owned()),
    }
}

fn write_file(path: &Path, contents: &[u8]) -> Result<(), AgentError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| AgentError::Io {
            context: format!("cannot create {}", parent.display()),
            source,
        })?;
    }
    std::fs::write(path, contents).map_err(|source| AgentError::Io {
        context: format!("cannot write {}", path.display()),
        source,
    })
}

/// Writes a volume's files under `target`.
async fn materialize(
    agent: &Agent,
    pod: &Pod,
    volume: &Volume,
    target: &Path,
) -> Result<(), AgentError> {
    let namespace = pod.namespace().unwrap_or_default();
    std::fs::create_dir_all(target).map_err(|source| AgentError::Io {
        context: format!("cannot create {}", target.display()),
        source,
    })?;
    if let Some(secret) = &volume.secret {
        let name = secret.secret_name.clone().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(agent.client.clone(), &namespace);
        let data = secrets.get(&name).await?.data.unwrap_or_default();
        for (key, value) in data {
            if let Some(path) = item_path(secret.items.as_deref(), &key) {
                write_file(&target.join(path), &value.0)?;
            }
        }
    } else if let Some(config_map) = &volume.config_map {
        let maps: Api<ConfigMap> = Api::namespaced(agent.client.clone(), &namespace);
        let data = maps.get(&config_map.name).await?.data.unwrap_or_default();
        for (key, value) in data {
            if let Some(path) = item_path(config_map.items.as_deref(), &key) {
                write_file(&target.join(path), value.as_bytes())?;
            }
        }
    } else if let Some(projected) = &volume.projected {
        for source in projected.sources.iter().flatten() {
            if let Some(token) = &source.service_account_token {
                let token_text = service_account_token(
                    agent,
                    pod,
                    token.audience.clone(),
                    token.expiration_seconds,
                )
                .await?;
                write_file(&target.join(&token.path), token_text.as_bytes())?;
            }
            if let Some(config_map) = &source.config_map {
                let maps: Api<ConfigMap> = Api::namespaced(agent.client.clone(), &namespace);
                let data = maps.get(&config_map.name).await?.data.unwrap_or_default();
                for (key, value) in data {
                    if let Some(path) = item_path(config_map.items.as_deref(), &key) {
                        write_file(&target.join(path), value.as_bytes())?;
                    }
                }
            }
            if let Some(secret) = &source.secret {
                let secrets: Api<Secret> = Api::namespaced(agent.client.clone(), &namespace);
                let data = secrets.get(&secret.name).await?.data.unwrap_or_default();
                for (key, value) in data {
                    if let Some(path) = item_path(secret.items.as_deref(), &key) {
                        write_file(&target.join(path), &value.0)?;
                    }
                }
            }
            if let Some(downward) = &source.downward_api {
                for item in downward.items.iter().flatten() {
                    if let Some(field) = &item.field_ref {
                        let value =
                            field_value(pod, &field.field_path, None, &agent.config.node_name);
                        write_file(&target.join(&item.path), value.as_bytes())?;
                    }
                }
            }
        }
    }
    // emptyDir and anything else: the empty directory.
    Ok(())
}

async fn service_account_token(
    agent: &Agent,
    pod: &Pod,
    audience: Option<String>,
    expiration: Option<i64>,
) -> Result<String, AgentError> {
    let namespace = pod.namespace().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let accounts: Api<ServiceAccount> = Api::namespaced(agent.client.clone(), &namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: audience.map(|a| vec![a]),
            expiration_seconds: Some(expiration.unwrap_or(3600).max(600)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name_any()),
                uid: pod.uid(),
            }),
        }),
        ..TokenRequest::default()
    };
    let response: TokenRequest = accounts
        .create_subresource("token", &account, &PostParams::default(), &request)
        .await?;
    Ok(response.status.and_then(|s| s.token).unwrap_or_default())
}

fn field_value(pod: &Pod, path: &str, pod_ip: Option<IpAddr>, node: &str) -> String {
    let meta = &pod.metadata;
    match path {
        "metadata.name" => pod.name_any(),
        "metadata.namespace" => pod.namespace().unwrap_or_default(),
        "metadata.uid" => pod.uid().unwrap_or_default(),
        "spec.nodeName" => node.to_owned(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => String::new(),
        other => {
            let key = |prefix: &str| {
                other
                    .strip_prefix(prefix)
                    .map(|k| k.trim_start_matches("['").trim_end_matches("']").to_owned())
            };
            if let Some(label) = key("metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&label).cloned())
                    .unwrap_or_default()
            } else if let Some(annotation) = key("metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|a| a.get(&annotation).cloned())
                    .unwrap_or_default()
            } else {
                String::new()
            }
        }
    }
}

/// The container's environment, as a kubelet would build it.
async fn environment(
    agent: &Agent,
    pod: &Pod,
    sandbox: &Sandbox,
    container: &Container,
) -> Result<Vec<(String, String)>, AgentError> {
    let namespace = pod.namespace().unwrap_or_default();
    let host = &agent.config.api_server_host;
    let port = agent.config.api_server_port;
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("HOSTNAME".into(), pod.name_any()),
        ("KUBERNETES_SERVICE_HOST".into(), host.clone()),
        ("KUBERNETES_SERVICE_PORT".into(), port.to_string()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".into(), port.to_string()),
        ("KUBERNETES_PORT".into(), format!("tcp://{host}:{port}")),
    ];
    let kubeconfig = sandbox.dir.join("kubeconfig");
    if kubeconfig.exists() {
        env.push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
    }
    let secrets: Api<Secret> = Api::namespaced(agent.client.clone(), &namespace);
    let maps: Api<ConfigMap> = Api::namespaced(agent.client.clone(), &namespace);
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(reference) = &from.secret_ref
            && let Ok(secret) = secrets.get(&reference.name).await
        {
            for (key, value) in secret.data.unwrap_or_default() {
                env.push((
                    format!("{prefix}{key}"),
                    String::from_utf8_lossy(&value.0).into_owned(),
                ));
            }
        }
        if let Some(reference) = &from.config_map_ref
            && let Ok(map) = maps.get(&reference.name).await
        {
            for (key, value) in map.data.unwrap_or_default() {
                env.push((format!("{prefix}{key}"), value));
            }
        }
    }
    for EnvVar {
        name,
        value,
        value_from,
    } in container.env.iter().flatten()
    {
        let resolved = if let Some(value) = value {
            expand(value, &env)
        } else if let Some(from) = value_from {
            if let Some(field) = &from.field_ref {
                field_value(
                    pod,
                    &field.field_path,
                    Some(IpAddr::V4(sandbox.address)),
                    &agent.config.node_name,
                )
            } else if let Some(key) = &from.secret_key_ref {
                let secret = secrets.get(&key.name).await?;
                secret
                    .data
                    .and_then(|d| {
                        d.get(&key.key)
                            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                    })
                    .unwrap_or_default()
            } else if let Some(key) = &from.config_map_key_ref {
                maps.get(&key.name)
                    .await?
                    .data
                    .and_then(|d| d.get(&key.key).cloned())
                    .unwrap_or_default()
            } else if let Some(resource) = &from.resource_field_ref {
                // Limits are not enforced here; report the node's capacity.
                match resource.resource.as_str() {
                    "limits.cpu" | "requests.cpu" => "2".into(),
                    _ => String::new(),
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.retain(|(existing, _)| existing != name);
        env.push((name.clone(), resolved));
    }
    Ok(env)
}

/// `$(VAR)` references to earlier variables, as Kubernetes expands them.
fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = value.to_owned();
    for (name, replacement) in env {
        out = out.replace(&format!("$({name})"), replacement);
    }
    out
}

/// Quotes for `sh`.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// Starts, restarts and probes one container.
async fn tend(
    agent: &Agent,
    pod: &Pod,
    sandbox: &Sandbox,
    container: &mut ContainerRun,
    restart_policy: &str,
) {
    if container.finished {
        return;
    }
    if let Some(child) = container.child.as_mut()
        && let Ok(Some(status)) = child.try_wait()
    {
        let code = status.code().unwrap_or(137);
        let started = container.started_at.clone().unwrap_or_else(now);
        container.last_exit = Some((code, started, now()));
        container.child = None;
        container.ready = false;
        container.started = false;
        let restart = restart_policy == "Always" || (restart_policy == "OnFailure" && code != 0);
        if restart {
            container.restarts += 1;
            let backoff = Duration::from_secs(1 << container.restarts.clamp(0, 5));
            container.next_start = Instant::now() + backoff;
            container.waiting = Some((
                "CrashLoopBackOff".into(),
                format!("exited with {code}; restarting in {backoff:?}"),
            ));
        } else {
            container.finished = true;
        }
        info!(pod = %pod.name_any(), container = %container.spec.name, code, restart, "container exited");
    }
    if container.child.is_none() && !container.finished && Instant::now() >= container.next_start {
        match start(agent, pod, sandbox, &container.spec).await {
            Ok(child) => {
                container.child = Some(child);
                container.started_at = Some(now());
                container.waiting = None;
                container.probe_due.clear();
                container.probe_streak.clear();
            }
            Err(reason) => {
                container.waiting = Some(reason);
                container.next_start = Instant::now() + Duration::from_secs(5);
            }
        }
    }
    if container.child.is_none() {
        return;
    }
    run_probes(pod, sandbox, container).await;
}

async fn run_probes(pod: &Pod, sandbox: &Sandbox, container: &mut ContainerRun) {
    let ip = IpAddr::V4(sandbox.address);
    let started_at = container
        .started_at
        .as_ref()
        .map_or(Timestamp::now(), |t| t.0);
    let running_for = Timestamp::now().duration_since(started_at).as_secs();
    let spec = container.spec.clone();
    let probes = [
        ("startup", &spec.startup_probe),
        ("liveness", &spec.liveness_probe),
        ("readiness", &spec.readiness_probe),
    ];
    if spec.startup_probe.is_none() {
        container.started = true;
    }
    if spec.readiness_probe.is_none() {
        container.ready = container.started;
    }
    for (kind, probe) in probes {
        let Some(probe) = probe else { continue };
        if kind != "startup" && !container.started {
            continue;
        }
        if kind == "startup" && container.started {
            continue;
        }
        if running_for < i64::from(probe.initial_delay_seconds.unwrap_or(0)) {
            continue;
        }
        let due = container
            .probe_due
            .get(kind)
            .copied()
            .unwrap_or_else(Instant::now);
        if Instant::now() < due {
            continue;
        }
        let period = Duration::from_secs(
            u64::try_from(probe.period_seconds.unwrap_or(10).max(1)).unwrap_or(10),
        );
        container.probe_due.insert(kind, Instant::now() + period);
        let passed = probe::check(probe, &spec, ip, &sandbox.namespace).await;
        let (successes, failures) = container.probe_streak.entry(kind).or_insert((0, 0));
        if passed {
            *successes += 1;
            *failures = 0;
        } else {
            *failures += 1;
            *successes = 0;
        }
        let success_threshold = probe.success_threshold.unwrap_or(1);
        let failure_threshold = probe.failure_threshold.unwrap_or(3);
        match kind {
            "startup" if *successes >= success_threshold => container.started = true,
            "startup" | "liveness" if *failures >= failure_threshold => {
                warn!(pod = %pod.name_any(), container = %spec.name, kind, "probe failed; restarting the container");
                if let Some(child) = container.child.as_mut() {
                    let _ = child.start_kill();
                }
            }
            "readiness" if *successes >= success_threshold => container.ready = true,
            "readiness" if *failures >= failure_threshold => container.ready = false,
            _ => {}
        }
    }
}

/// Starts a container's process in the Pod's network namespace, in a
/// private mount namespace with the Pod's volumes bound at their paths.
async fn start(
    agent: &Agent,
    pod: &Pod,
    sandbox: &Sandbox,
    spec: &Container,
) -> Result<Child, (String, String)> {
    let image = spec.image.clone().unwrap_or_default();
    let Some(mapping) = agent.config.image(&image) else {
        return Err((
            "ImageNotMapped".into(),
            format!("image {image:?} has no local binary in the node agent's images file"),
        ));
    };
    if !mapping.binary.exists() {
        return Err((
            "ImageBinaryMissing".into(),
            format!(
                "{} does not exist; build it first",
                mapping.binary.display()
            ),
        ));
    }
    let env = environment(agent, pod, sandbox, spec)
        .await
        .map_err(|err| ("CreateContainerConfigError".into(), err.to_string()))?;
    write_service_account_files(agent, pod, sandbox).await;

    let mut script = String::from("set -e\n");
    let volumes = sandbox.dir.join("volumes");
    for mount in spec.volume_mounts.iter().flatten() {
        let mut source = volumes.join(&mount.name);
        if let Some(sub) = &mount.sub_path {
            source = source.join(sub);
        }
        script.push_str(&format!(
            "mount --bind {} {}\n",
            quote(&source.display().to_string()),
            quote(&mount.mount_path)
        ));
        if mount.read_only == Some(true) {
            script.push_str(&format!(
                "mount -o remount,bind,ro {}\n",
                quote(&mount.mount_path)
            ));
        }
    }
    script.push_str(&format!(
        "exec ip netns exec {} \"$@\"\n",
        quote(&sandbox.namespace)
    ));

    let mut argv: Vec<String> = mapping.args.clone();
    if let Some(command) = &spec.command {
        argv.extend(command.iter().skip(1).map(|a| expand(a, &env)));
    }
    argv.extend(spec.args.iter().flatten().map(|a| expand(a, &env)));

    // Both streams go through the agent, which timestamps each line as a
    // container runtime does, so that the kubelet endpoint can filter them.
    let log_file = log_path(&sandbox.dir, &spec.name);
    let log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_file)
    };
    let (Ok(stdout_log), Ok(stderr_log)) = (log(), log()) else {
        return Err((
            "CreateContainerError".into(),
            format!("cannot open the container log {}", log_file.display()),
        ));
    };
    let working_dir = spec
        .working_dir
        .clone()
        .filter(|d| Path::new(d).is_dir())
        .unwrap_or_else(|| "/".into());
    Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .arg(&mapping.binary)
        .args(&argv)
        .env_clear()
        .envs(env)
        .current_dir(working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map(|mut child| {
            if let Some(stdout) = child.stdout.take() {
                tokio::spawn(logs::record(
                    logs::Stream::Stdout,
                    stdout,
                    tokio::fs::File::from_std(stdout_log),
                ));
            }
            if let Some(stderr) = child.stderr.take() {
                tokio::spawn(logs::record(
                    logs::Stream::Stderr,
                    stderr,
                    tokio::fs::File::from_std(stderr_log),
                ));
            }
            child
        })
        .map_err(|err| {
            (
                "StartError".into(),
                format!("cannot start {}: {err}", mapping.binary.display()),
            )
        })
}

/// Writes the service account token, CA and a kubeconfig into the Pod's
/// directory, so that clients find the API server through KUBECONFIG.
async fn write_service_account_files(agent: &Agent, pod: &Pod, sandbox: &Sandbox) {
    let kubeconfig = sandbox.dir.join("kubeconfig");
    if kubeconfig.exists()
        || pod
            .spec
            .as_ref()
            .and_then(|s| s.automount_service_account_token)
            == Some(false)
    {
        return;
    }
    let token = match service_account_token(agent, pod, None, Some(24 * 3600)).await {
        Ok(token) => token,
        Err(err) => {
            warn!(pod = %pod.name_any(), error = %err, "no service account token");
            return;
        }
    };
    let token_file = sandbox.dir.join("token");
    let server = format!(
        "https://{}:{}",
        agent.config.api_server_host, agent.config.api_server_port
    );
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": agent.config.api_ca_file}}],
        "users": [{"name": "pod", "user": {"tokenFile": token_file}}],
        "contexts": [{"name": "pod", "context": {"cluster": "local", "user": "pod", "namespace": pod.namespace()}}],
        "current-context": "pod",
    });
    let _ = write_file(&token_file, token.as_bytes());
    let _ = write_file(&kubeconfig, config.to_string().as_bytes());
}

fn waiting_status(pod: &Pod, reason: &str, message: &str) -> PodStatus {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    PodStatus {
        phase: Some("Pending".into()),
        container_statuses: Some(
            containers
                .iter()
                .map(|c| ContainerStatus {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    image_id: String::new(),
                    ready: false,
                    restart_count: 0,
                    started: Some(false),
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some(reason.into()),
                            message: Some(message.into()),
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                })
                .collect(),
        ),
        ..PodStatus::default()
    }
}

fn condition(type_: &str, ok: bool, reason: Option<&str>) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: if ok { None } else { reason.map(str::to_owned) },
        ..PodCondition::default()
    }
}

fn pod_status(
    pod: &Pod,
    sandbox: &Sandbox,
    containers: &[ContainerRun],
    start_time: &Time,
    host_ip: Ipv4Addr,
) -> PodStatus {
    let statuses: Vec<ContainerStatus> = containers
        .iter()
        .map(|c| {
            let state = if c.child.is_some() {
                ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: c.started_at.clone(),
                    }),
                    ..ContainerState::default()
                }
            } else if let (true, Some((code, started, finished))) = (c.finished, &c.last_exit) {
                ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: *code,
                        started_at: Some(started.clone()),
                        finished_at: Some(finished.clone()),
                        reason: Some(if *code == 0 { "Completed" } else { "Error" }.into()),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                }
            } else {
                let (reason, message) = c
                    .waiting
                    .clone()
                    .unwrap_or_else(|| ("ContainerCreating".into(), String::new()));
                ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some(reason),
                        message: Some(message),
                    }),
                    ..ContainerState::default()
                }
            };
            ContainerStatus {
                name: c.spec.name.clone(),
                image: c.spec.image.clone().unwrap_or_default(),
                image_id: String::new(),
                container_id: c
                    .child
                    .as_ref()
                    .and_then(Child::id)
                    .map(|pid| format!("process://{pid}")),
                ready: c.ready && c.child.is_some(),
                started: Some(c.started && c.child.is_some()),
                restart_count: c.restarts,
                state: Some(state),
                last_state: c.last_exit.as_ref().filter(|_| !c.finished).map(
                    |(code, started, finished)| ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: *code,
                            started_at: Some(started.clone()),
                            finished_at: Some(finished.clone()),
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    },
                ),
                ..ContainerStatus::default()
            }
        })
        .collect();
    let all_ready = statuses.iter().all(|s| s.ready);
    let existing: BTreeMap<String, String> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_, c.status))
        .collect();
    let gates_ready = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.clone())
        .unwrap_or_default()
        .iter()
        .all(|gate| {
            existing
                .get(&gate.condition_type)
                .is_some_and(|status| status == "True")
        });
    let finished = containers.iter().all(|c| c.finished);
    let phase = if finished {
        if containers
            .iter()
            .all(|c| c.last_exit.as_ref().is_some_and(|(code, _, _)| *code == 0))
        {
            "Succeeded"
        } else {
            "Failed"
        }
    } else if containers.iter().any(|c| c.child.is_some()) {
        "Running"
    } else {
        "Pending"
    };
    let ip = sandbox.address.to_string();
    PodStatus {
        phase: Some(phase.into()),
        pod_ip: Some(ip.clone()),
        pod_ips: Some(vec![PodIP { ip }]),
        host_ip: Some(host_ip.to_string()),
        start_time: Some(start_time.clone()),
        container_statuses: Some(statuses),
        conditions: Some(vec![
            condition("PodReadyToStartContainers", true, None),
            condition("Initialized", true, None),
            condition("ContainersReady", all_ready, Some("ContainersNotReady")),
            condition(
                "Ready",
                all_ready && gates_ready,
                Some(if all_ready {
                    "ReadinessGatesNotReady"
                } else {
                    "ContainersNotReady"
                }),
            ),
        ]),
        ..PodStatus::default()
    }
}

/// Applies the agent's part of a Pod's status. Conditions are a list keyed
/// by type, so conditions other actors own (readiness gates) are left alone.
async fn patch_status(pods: &Api<Pod>, name: &str, status: PodStatus) -> Result<(), AgentError> {
    let patch = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "status": status,
    });
    pods.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::KeyToPath;

    use super::item_path;

    #[test]
    fn volume_items_pick_and_rename_keys() {
        let items = vec![KeyToPath {
            key: "tls.crt".into(),
            path: "crt".into(),
            mode: None,
        }];
        assert_eq!(item_path(Some(&items), "tls.crt").as_deref(), Some("crt"));
        assert_eq!(
            item_path(Some(&items), "tls.key"),
            None,
            "unlisted keys are left out"
        );
        assert_eq!(item_path(None, "tls.key").as_deref(), Some("tls.key"));
        assert_eq!(item_path(Some(&[]), "ca.crt").as_deref(), Some("ca.crt"));
    }
}
