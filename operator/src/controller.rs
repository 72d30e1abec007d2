//! The operator's I/O: watch caches, one reconcile loop that coalesces
//! bursts, server-side apply of provisioned objects, status writes.
//!
//! Coalescing: every watch event rings one [`Bell`] (at most one pending
//! wake-up) and notes its kind. A change after a quiet spell is reconciled at
//! once; changes that arrive while a reconcile runs are folded into the next
//! one, so a burst of a thousand edits costs a handful of passes, each
//! writing only what changed. Config Secrets are debounced per Gateway: one
//! written less than [`CONFIG_DEBOUNCE`] ago waits out the rest of it, so a
//! Gateway under a burst gets one write per window while the others are not
//! held back.
//!
//! Endpoint fast path: when only EndpointSlices changed since the last pass,
//! the previous snapshot is reused with fresh endpoints and only the
//! Gateways that send to the changed Services are translated again
//! ([`translate_endpoint_change`]); route, class and policy statuses are left
//! alone, since endpoints cannot change them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crds::ProxyConfig;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use crate::admin::Metrics;
use crate::conditions::merge;
use crate::discovery::{GatewayApis, discover};
use crate::provision::{self, Desired, PROXY_NAME, Settings};
use crate::snapshot::{DeployedConfig, Key, ProxyPod, RouteKind, Snapshot, key_of};
use crate::translate::{
    GatewayPlan, Translation, changed_services, translate, translate_endpoint_change,
};
use crate::{
    CONFIG_APPLIED_CONDITION, CONFIG_HASH_ANNOTATION, CONTROLLER_NAME, Error, FIELD_MANAGER,
    GATEWAY_NAME_LABEL, GENERATION_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, SPEC_HASH_ANNOTATION,
};

/// Typed watch caches of core and Portcullis kinds.
struct CoreStores {
    services: Store<Service>,
    endpoint_slices: Store<EndpointSlice>,
    secrets: Store<Secret>,
    config_maps: Store<ConfigMap>,
    namespaces: Store<Namespace>,
    /// None while the ProxyConfig CRD is not installed.
    proxy_configs: Option<Store<ProxyConfig>>,
    pods: Store<Pod>,
    deployments: Store<Deployment>,
    service_accounts: Store<ServiceAccount>,
    roles: Store<Role>,
    role_bindings: Store<RoleBinding>,
    autoscalers: Store<HorizontalPodAutoscaler>,
    budgets: Store<PodDisruptionBudget>,
}

/// Runs the operator until `shutdown` resolves: discovers the Gateway API,
/// watches, reconciles while leader; starts over when Gateway API CRDs change.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    leader: Arc<crate::leader::Leadership>,
) -> Result<(), Error> {
    loop {
        let apis = match discover(&client).await {
            Ok(apis) if apis.complete() => apis,
            Ok(_) => {
                warn!(
                    "the Gateway API CRDs (GatewayClass, Gateway) are not installed; waiting for them"
                );
                metrics.ready.store(false, Ordering::Relaxed);
                wait_for_crd_change(&client).await;
                continue;
            }
            Err(err) => {
                error!(error = %err, "discovery failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        info!(
            kinds = ?apis.resources.iter().map(|(k, r)| format!("{k}/{}", r.version)).collect::<Vec<_>>(),
            bundle_version = ?apis.bundle_version,
            "watching the served Gateway API kinds"
        );
        let mut controller = Controller::start(
            client.clone(),
            settings.clone(),
            apis.clone(),
            metrics.clone(),
            leader.clone(),
        );
        tokio::select! {
            () = controller.reconcile_forever() => {}
            () = crd_changed(&client, &apis) => {
                info!("Gateway API CRDs changed; discovering again");
            }
        }
        controller.stop();
        metrics.ready.store(false, Ordering::Relaxed);
    }
}

/// Resolves when discovery would answer differently than `apis`.
async fn crd_changed(client: &Client, apis: &GatewayApis) {
    // One watch for the whole life of these caches: its initial listing is
    // compared too, so CRDs that landed between discovery and the watch (a
    // batch still being installed) are not missed.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut events = watcher(crds, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listed = false;
    while let Some(event) = events.next().await {
        let look = match event {
            Ok(watcher::Event::InitDone) => {
                listed = true;
                true
            }
            Ok(watcher::Event::Apply(crd) | watcher::Event::Delete(crd)) => {
                listed && is_ours(&crd.name_any())
            }
            Err(err) => {
                debug!(error = %err, "CRD watch");
                tokio::time::sleep(Duration::from_secs(5)).await;
                false
            }
            _ => false,
        };
        if look {
            // Let a batch of CRD changes land before looking.
            tokio::time::sleep(Duration::from_millis(500)).await;
            if discover(client).await.is_ok_and(|now| &now != apis) {
                return;
            }
        }
    }
}

fn is_ours(crd_name: &str) -> bool {
    crd_name.ends_with(crate::GATEWAY_GROUP) || crd_name.ends_with(crds::GROUP)
}

async fn wait_for_crd_change(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut events = watcher(crds, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut initial = true;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::InitDone) => initial = false,
            Ok(watcher::Event::Apply(crd) | watcher::Event::Delete(crd))
                if !initial && is_ours(&crd.name_any()) =>
            {
                // Let a batch of CRD changes land before looking.
                tokio::time::sleep(Duration::from_millis(500)).await;
                return;
            }
            Err(err) => {
                debug!(error = %err, "CRD watch");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            _ => {}
        }
    }
}

struct Controller {
    client: Client,
    settings: Settings,
    apis: GatewayApis,
    metrics: Arc<Metrics>,
    leader: Arc<crate::leader::Leadership>,
    bell: Arc<Bell>,
    core: CoreStores,
    gateway_stores: BTreeMap<String, Store<DynamicObject>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Highest config generation written per Gateway, so that generations
    /// only grow even when a config Secret is deleted by hand.
    generations: BTreeMap<Key, (u64, String)>,
    /// The last pass's snapshot and translation, for the endpoint fast path.
    last: Option<(Snapshot, Translation)>,
    parsed: ParseCache,
    /// Routes whose status entries were found as desired, with the
    /// resourceVersion then seen and the entries compared.
    routes_checked: std::sync::Mutex<RouteStatusMemory>,
    /// When each Gateway's config Secret was last written, for the debounce.
    config_written: BTreeMap<Key, Instant>,
    /// The earliest moment a deferred config Secret may be written.
    deferred_until: Option<Instant>,
}

/// The generation and config hash: what decides whether a config Secret is
/// rewritten.
fn config_hash(plan: &GatewayPlan) -> String {
    format!("{}:{}", plan.generation, plan.config_hash)
}

type RouteStatusMemory =
    BTreeMap<(crate::snapshot::RouteKind, Key), (String, Vec<crate::translate::RouteParentStatus>)>;

/// Shortest time between two writes of one Gateway's config Secret.
pub const CONFIG_DEBOUNCE: Duration = Duration::from_millis(40);

/// What a pass was woken for, besides the kinds of watched objects.
const ENDPOINT_SLICE: &str = "EndpointSlice";
const DEFERRED_WRITE: &str = "deferred config write";
const STATUS_CONFLICT: &str = "status conflict";

/// Wakes the reconcile loop and remembers which kinds changed since the
/// pass that last took them.
#[derive(Debug, Default)]
struct Bell {
    wake: Notify,
    dirty: std::sync::Mutex<BTreeSet<String>>,
}

impl Bell {
    fn ring(&self, what: &str) {
        let mut dirty = self
            .dirty
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !dirty.contains(what) {
            dirty.insert(what.to_owned());
        }
        drop(dirty);
        self.wake.notify_one();
    }

    /// The kinds rung since the last call; empty for a periodic resync.
    fn take(&self) -> BTreeSet<String> {
        std::mem::take(
            &mut *self
                .dirty
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Whether a pass woken for `dirty` may take the endpoint fast path: only
/// endpoints changed, or a debounced write is due (which re-applies the last
/// translation). Anything else, including a resync, translates everything.
fn endpoint_only(dirty: &BTreeSet<String>) -> bool {
    !dirty.is_empty()
        && dirty
            .iter()
            .all(|kind| kind == ENDPOINT_SLICE || kind == DEFERRED_WRITE)
}

impl Controller {
    fn start(
        client: Client,
        settings: Settings,
        apis: GatewayApis,
        metrics: Arc<Metrics>,
        leader: Arc<crate::leader::Leadership>,
    ) -> Controller {
        let bell = Arc::new(Bell::default());
        let mut tasks = Vec::new();
        let managed =
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
        let all = watcher::Config::default;
        let core = CoreStores {
            services: typed(&client, all(), &bell, &mut tasks),
            endpoint_slices: typed(&client, all(), &bell, &mut tasks),
            secrets: typed(&client, all(), &bell, &mut tasks),
            config_maps: typed(&client, all(), &bell, &mut tasks),
            namespaces: typed(&client, all(), &bell, &mut tasks),
            proxy_configs: apis
                .proxy_configs
                .then(|| typed(&client, all(), &bell, &mut tasks)),
            pods: typed(
                &client,
                watcher::Config::default()
                    .labels(&format!("{}={PROXY_NAME}", provision::NAME_LABEL)),
                &bell,
                &mut tasks,
            ),
            deployments: typed(&client, managed.clone(), &bell, &mut tasks),
            service_accounts: typed(&client, managed.clone(), &bell, &mut tasks),
            roles: typed(&client, managed.clone(), &bell, &mut tasks),
            role_bindings: typed(&client, managed.clone(), &bell, &mut tasks),
            autoscalers: typed(&client, managed.clone(), &bell, &mut tasks),
            budgets: typed(&client, managed, &bell, &mut tasks),
        };
        let mut gateway_stores = BTreeMap::new();
        for (kind, resource) in &apis.resources {
            gateway_stores.insert(
                kind.clone(),
                dynamic(&client, resource.clone(), &bell, &mut tasks),
            );
        }
        Controller {
            client,
            settings,
            apis,
            metrics,
            leader,
            bell,
            core,
            gateway_stores,
            tasks,
            generations: BTreeMap::new(),
            last: None,
            parsed: ParseCache::default(),
            routes_checked: std::sync::Mutex::default(),
            config_written: BTreeMap::new(),
            deferred_until: None,
        }
    }

    fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }

    async fn wait_ready(&self) {
        let core = &self.core;
        let _ = futures::join!(
            core.services.wait_until_ready(),
            core.endpoint_slices.wait_until_ready(),
            core.secrets.wait_until_ready(),
            core.config_maps.wait_until_ready(),
            core.namespaces.wait_until_ready(),
            core.pods.wait_until_ready(),
            core.deployments.wait_until_ready(),
            core.service_accounts.wait_until_ready(),
            core.roles.wait_until_ready(),
            core.role_bindings.wait_until_ready(),
            core.autoscalers.wait_until_ready(),
            core.budgets.wait_until_ready(),
        );
        for store in self.gateway_stores.values() {
            let _ = store.wait_until_ready().await;
        }
        if let Some(store) = &core.proxy_configs {
            let _ = store.wait_until_ready().await;
        }
    }

    async fn reconcile_forever(&mut self) {
        self.wait_ready().await;
        self.metrics.ready.store(true, Ordering::Relaxed);
        info!("caches synced");
        let mut retry = Duration::from_millis(500);
        loop {
            if !self.leader.is_held() {
                // What a follower remembers is stale by the time it leads.
                self.last = None;
                self.bell.take();
            } else {
                let started = Instant::now();
                let outcome = self.reconcile().await;
                let elapsed = started.elapsed();
                self.metrics.observe_reconcile(elapsed, outcome.is_ok());
                match outcome {
                    Ok(writes) => {
                        retry = Duration::from_millis(500);
                        debug!(
                            writes,
                            elapsed_ms = elapsed.as_millis() as u64,
                            "reconciled"
                        );
                    }
                    Err(err) => {
                        warn!(error = %err, retry_ms = retry.as_millis() as u64, "reconcile failed; retrying");
                        tokio::time::sleep(retry).await;
                        retry = (retry * 2).min(Duration::from_secs(10));
                        continue;
                    }
                }
            }
            // Wait for a change, a deferred write or leadership, or resync
            // now and then.
            let resync = tokio::time::Instant::now() + Duration::from_secs(60);
            let deferred = self
                .deferred_until
                .take()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                () = self.bell.wake.notified() => {}
                () = self.leader.gained() => {}
                () = tokio::time::sleep_until(deferred.unwrap_or(resync)) => {
                    if deferred.is_some() {
                        self.bell.ring(DEFERRED_WRITE);
                    }
                }
            }
        }
    }

    fn snapshot(&mut self) -> Snapshot {
        let mut snapshot = Snapshot {
            served: self.apis.served(),
            ..Snapshot::default()
        };
        let stores = &self.gateway_stores;
        let parsed = |kind: &str| -> Vec<Arc<DynamicObject>> {
            stores.get(kind).map(|s| s.state()).unwrap_or_default()
        };
        let cache = &mut self.parsed;
        cache.pass += 1;
        snapshot.gateway_classes = cache.parse("GatewayClass", parsed("GatewayClass"));
        snapshot.gateways = cache.parse("Gateway", parsed("Gateway"));
        snapshot.http_routes = cache.parse("HTTPRoute", parsed("HTTPRoute"));
        snapshot.grpc_routes = cache.parse("GRPCRoute", parsed("GRPCRoute"));
        snapshot.tls_routes = cache.parse(
            "TLSRoute",
            parsed("TLSRoute")
                .into_iter()
                .map(fill_tls_route_defaults)
                .collect(),
        );
        snapshot.tcp_routes = cache.parse("TCPRoute", parsed("TCPRoute"));
        snapshot.udp_routes = cache.parse("UDPRoute", parsed("UDPRoute"));
        snapshot.reference_grants = cache.parse("ReferenceGrant", parsed("ReferenceGrant"));
        snapshot.backend_tls_policies = cache.parse("BackendTLSPolicy", parsed("BackendTLSPolicy"));
        cache.forget_unseen();
        let core = &self.core;
        for service in core.services.state() {
            snapshot
                .services
                .insert(key_of(&service.metadata), (*service).clone());
        }
        snapshot.endpoint_slices = self.endpoint_slices();
        for secret in core.secrets.state() {
            let key = key_of(&secret.metadata);
            if is_managed(&secret.metadata)
                && let Some(gateway) = secret.labels().get(GATEWAY_NAME_LABEL)
            {
                let annotations = secret.annotations();
                let deployed = DeployedConfig {
                    generation: annotations
                        .get(GENERATION_ANNOTATION)
                        .and_then(|g| g.parse().ok())
                        .unwrap_or(0),
                    hash: annotations
                        .get(CONFIG_HASH_ANNOTATION)
                        .cloned()
                        .unwrap_or_default(),
                };
                snapshot
                    .deployed
                    .insert((key.0.clone(), gateway.clone()), deployed);
            }
            snapshot.secrets.insert(key, (*secret).clone());
        }
        for map in core.config_maps.state() {
            snapshot
                .config_maps
                .insert(key_of(&map.metadata), (*map).clone());
        }
        for namespace in core.namespaces.state() {
            snapshot.namespaces.insert(
                namespace.name_any(),
                namespace.metadata.labels.clone().unwrap_or_default(),
            );
        }
        for config in core.proxy_configs.iter().flat_map(|s| s.state()) {
            snapshot
                .proxy_configs
                .insert(key_of(&config.metadata), (*config).clone());
        }
        for pod in core.pods.state() {
            let Some(gateway) = pod.labels().get(GATEWAY_NAME_LABEL) else {
                continue;
            };
            let key = (
                pod.metadata.namespace.clone().unwrap_or_default(),
                gateway.clone(),
            );
            let proxy_pod = proxy_pod(&pod);
            snapshot.proxy_pods.entry(key).or_default().push(proxy_pod);
        }
        self.raise_generations(&mut snapshot);
        snapshot
    }

    fn endpoint_slices(&self) -> crate::snapshot::EndpointSlices {
        let mut slices = crate::snapshot::EndpointSlices::new();
        for slice in self.core.endpoint_slices.state() {
            let namespace = slice.metadata.namespace.clone().unwrap_or_default();
            if let Some(service) = slice.labels().get("kubernetes.io/service-name") {
                slices
                    .entry((namespace, service.clone()))
                    .or_default()
                    .push((*slice).clone());
            }
        }
        for list in slices.values_mut() {
            list.sort_by_key(|s| s.metadata.name.clone());
        }
        slices
    }

    /// Generations only grow: the Secret's, unless this process wrote a
    /// newer one (not seen yet, or the Secret was deleted by hand) or a
    /// proxy already serves a newer one (the operator restarted after the
    /// Secret was deleted): then the next write goes past it.
    fn raise_generations(&self, snapshot: &mut Snapshot) {
        let mut keys: BTreeSet<Key> = snapshot.proxy_pods.keys().cloned().collect();
        keys.extend(self.generations.keys().cloned());
        for key in keys {
            let pods_max = snapshot
                .proxy_pods
                .get(&key)
                .into_iter()
                .flatten()
                .filter_map(|p| p.applied_generation)
                .max()
                .unwrap_or(0);
            let mut best = snapshot.deployed.get(&key).cloned().unwrap_or_default();
            if let Some((generation, hash)) = self.generations.get(&key)
                && *generation > best.generation
            {
                best = DeployedConfig {
                    generation: *generation,
                    hash: hash.clone(),
                };
            }
            if pods_max > best.generation {
                best = DeployedConfig {
                    generation: pods_max,
                    hash: String::new(),
                };
            }
            snapshot.deployed.insert(key, best);
        }
    }

    /// One pass: translate, apply what changed, write statuses that changed.
    /// Returns the number of writes.
    async fn reconcile(&mut self) -> Result<usize, Error> {
        let started = Instant::now();
        let dirty = self.bell.take();
        let mut snapshot_took = Duration::ZERO;
        let (snapshot, translation, fast) = match self.last.take() {
            Some((mut snapshot, previous)) if endpoint_only(&dirty) => {
                let before =
                    std::mem::replace(&mut snapshot.endpoint_slices, self.endpoint_slices());
                self.raise_generations(&mut snapshot);
                let changed = changed_services(&before, &snapshot.endpoint_slices);
                let translation = translate_endpoint_change(&snapshot, &previous, &changed);
                (snapshot, translation, true)
            }
            _ => {
                let snapshot = self.snapshot();
                snapshot_took = started.elapsed();
                let translation = translate(&snapshot);
                (snapshot, translation, false)
            }
        };
        let translate_took = started.elapsed();
        let mut writes = 0;
        let mut first_error: Option<Error> = None;
        let mut note = |result: Result<usize, Error>| match result {
            Ok(n) => writes += n,
            Err(err) => {
                warn!(error = %err, "write failed");
                if first_error.is_none() {
                    first_error = Some(err);
                }
            }
        };

        // Provisioned objects and config Secrets, Gateway by Gateway.
        let mut wanted: BTreeSet<(String, String, String)> = BTreeSet::new();
        let mut applies = Vec::new();
        for (key, plan) in &translation.gateways {
            if !plan.provision {
                continue;
            }
            let objects = provision::objects(key, plan, &self.settings);
            for object in &objects {
                wanted.insert((
                    object.kind.to_owned(),
                    object.namespace.clone(),
                    object.name.clone(),
                ));
            }
            let config_name = crate::names::provisioned(&key.1, &plan.class);
            wanted.insert(("Secret".to_owned(), key.0.clone(), config_name.clone()));
            for object in objects {
                if self.live_hash(&object).as_deref() != Some(object.hash.as_str()) {
                    applies.push(object);
                }
            }
            // Compared before encoding: most passes change no config, and
            // validating and compressing one costs more than the rest of the
            // pass.
            if self.config_secret_hash(&key.0, &config_name).as_deref()
                != Some(config_hash(plan).as_str())
            {
                let now = Instant::now();
                let due = self
                    .config_written
                    .get(key)
                    .map(|written| *written + CONFIG_DEBOUNCE)
                    .filter(|due| *due > now);
                if let Some(due) = due {
                    // Written moments ago: fold this change and whatever
                    // follows into one write when the window ends.
                    self.deferred_until = Some(self.deferred_until.map_or(due, |d| d.min(due)));
                    continue;
                }
                match self.config_secret(key, plan) {
                    Ok(config) => {
                        self.config_written.insert(key.clone(), now);
                        applies.push(config);
                    }
                    Err(err) => {
                        note(Err(err));
                        continue;
                    }
                }
            }
            let remembered = self.generations.get(key).map_or(0, |(g, _)| *g);
            if plan.generation >= remembered {
                self.generations
                    .insert(key.clone(), (plan.generation, plan.config_hash.clone()));
            }
        }
        self.config_written.retain(|key, written| {
            translation.gateways.contains_key(key) && written.elapsed() < CONFIG_DEBOUNCE
        });
        // Two waves: a RoleBinding is only accepted once its Role exists
        // (the API server checks that the binder holds what it grants).
        let (bindings, first): (Vec<&Desired>, Vec<&Desired>) = applies
            .iter()
            .partition(|object| object.kind == "RoleBinding");
        for wave in [first, bindings] {
            let results =
                futures::future::join_all(wave.into_iter().map(|object| self.apply(object))).await;
            for result in results {
                note(result.map(|()| 1));
            }
        }
        note(self.delete_stale(&wanted).await);
        let provision_took = started.elapsed() - translate_took;

        // Statuses, all kinds at once; endpoints change only Gateways'.
        let now = Time(Timestamp::now());
        if fast {
            note(self.write_gateway_statuses(&translation, &now).await);
        } else {
            let (classes, gateways, routes, policies) = futures::join!(
                self.write_class_statuses(&translation, &now),
                self.write_gateway_statuses(&translation, &now),
                self.write_route_statuses(&translation, &now),
                self.write_policy_statuses(&translation, &now),
            );
            for result in [classes, gateways, routes, policies] {
                note(result);
            }
        }
        debug!(
            fast,
            snapshot_ms = snapshot_took.as_millis() as u64,
            translate_ms = (translate_took - snapshot_took).as_millis() as u64,
            provision_ms = provision_took.as_millis() as u64,
            "pass timing"
        );
        self.metrics
            .writes
            .fetch_add(writes as u64, Ordering::Relaxed);
        if fast {
            self.metrics.endpoint_passes.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics
            .gateways
            .store(translation.gateways.len() as u64, Ordering::Relaxed);
        self.last = Some((snapshot, translation));
        match first_error {
            Some(err) => Err(err),
            None => Ok(writes),
        }
    }

    fn config_secret(&self, key: &Key, plan: &GatewayPlan) -> Result<Desired, Error> {
        let gateway = format!("{}/{}", key.0, key.1);
        let document = proxy_config::ConfigDocument::new(plan.generation, plan.config.clone());
        // A translation bug must not reach the proxy, which would refuse the
        // whole document: keep the last good one and say why.
        if let Err(errors) = proxy_config::validate(&document) {
            return Err(Error::InvalidConfig {
                gateway,
                errors: errors.to_string(),
            });
        }
        let encoded =
            proxy_config::encode(&document).map_err(|source| Error::Encode { gateway, source })?;
        let mut desired = provision::config_secret(key, plan, encoded);
        desired.hash = config_hash(plan);
        Ok(desired)
    }

    /// What [`config_hash`] was for the config Secret as it is.
    fn config_secret_hash(&self, namespace: &str, name: &str) -> Option<String> {
        let reference = kube::runtime::reflector::ObjectRef::<Secret>::new(name).within(namespace);
        self.core.secrets.get(&reference).and_then(|o| {
            let a = o.metadata.annotations.as_ref()?;
            Some(format!(
                "{}:{}",
                a.get(GENERATION_ANNOTATION)?,
                a.get(CONFIG_HASH_ANNOTATION)?
            ))
        })
    }

    fn live_hash(&self, object: &Desired) -> Option<String> {
        fn spec_hash<K>(store: &Store<K>, name: &str, namespace: &str) -> Option<String>
        where
            K: Resource<DynamicType = ()> + Clone + 'static,
        {
            let reference = kube::runtime::reflector::ObjectRef::<K>::new(name).within(namespace);
            store.get(&reference).and_then(|o| {
                o.meta()
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(SPEC_HASH_ANNOTATION).cloned())
            })
        }
        let (name, namespace) = (object.name.as_str(), object.namespace.as_str());
        let core = &self.core;
        match object.kind {
            "Deployment" => spec_hash(&core.deployments, name, namespace),
            "ServiceAccount" => spec_hash(&core.service_accounts, name, namespace),
            "Role" => spec_hash(&core.roles, name, namespace),
            "RoleBinding" => spec_hash(&core.role_bindings, name, namespace),
            "HorizontalPodAutoscaler" => spec_hash(&core.autoscalers, name, namespace),
            "PodDisruptionBudget" => spec_hash(&core.budgets, name, namespace),
            "Service" => spec_hash(&core.services, name, namespace),
            "Secret" => self.config_secret_hash(namespace, name),
            _ => None,
        }
    }

    async fn apply(&self, object: &Desired) -> Result<(), Error> {
        let api = self.dynamic_api(object.api_version, object.kind, &object.namespace);
        api.patch(
            &object.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object.body),
        )
        .await?;
        info!(kind = object.kind, namespace = %object.namespace, name = %object.name, "applied");
        Ok(())
    }

    fn dynamic_api(&self, api_version: &str, kind: &str, namespace: &str) -> Api<DynamicObject> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let plural = match kind {
            "ServiceAccount" => "serviceaccounts",
            "Role" => "roles",
            "RoleBinding" => "rolebindings",
            "Deployment" => "deployments",
            "Service" => "services",
            "Secret" => "secrets",
            "HorizontalPodAutoscaler" => "horizontalpodautoscalers",
            "PodDisruptionBudget" => "poddisruptionbudgets",
            _ => "unknown",
        };
        let resource =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        Api::namespaced_with(self.client.clone(), namespace, &resource)
    }

    /// Removes provisioned objects no Gateway wants any more.
    async fn delete_stale(
        &self,
        wanted: &BTreeSet<(String, String, String)>,
    ) -> Result<usize, Error> {
        let mut stale: Vec<(&'static str, &'static str, String, String)> = Vec::new();
        let mut collect =
            |api_version: &'static str,
             kind: &'static str,
             metas: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>| {
                for meta in metas {
                    if !is_managed(&meta) || meta.deletion_timestamp.is_some() {
                        continue;
                    }
                    let (namespace, name) = key_of(&meta);
                    if !wanted.contains(&(kind.to_owned(), namespace.clone(), name.clone())) {
                        stale.push((api_version, kind, namespace, name));
                    }
                }
            };
        let core = &self.core;
        collect(
            "apps/v1",
            "Deployment",
            core.deployments
                .state()
                .iter()
                .map(|o| o.metadata.clone())
                .collect(),
        );
        collect(
            "v1",
            "ServiceAccount",
            core.service_accounts
                .state()
                .iter()
                .map(|o| o.metadata.clone())
                .collect(),
        );
        collect(
            "rbac.authorization.k8s.io/v1",
            "Role",
            core.roles
                .state()
                .iter()
                .map(|o| o.metadata.clone())
                .collect(),
        );
        collect(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            core.role_bindings
                .state()
                .iter()
                .map(|o| o.metadata.clone())
                .collect(),
        );
        collect(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            core.autoscalers
                .state()
                .iter()
                .map(|o| o.metadata.clone())
                .collect(),
        );
        collect(
            "policy/v1",
            "PodDisruptionBudget",
            core.budgets
                .state()
                .iter()
                .map(|o| o.metadata.clone())
                .collect(),
        );
        collect(
            "v1",
            "Service",
            core.services
                .state()
                .iter()
                .map(|o| o.metadata.clone())
                .collect(),
        );
        collect(
            "v1",
            "Secret",
            core.secrets
                .state()
                .iter()
                .map(|o| o.metadata.clone())
                .collect(),
        );
        let mut count = 0;
        for (api_version, kind, namespace, name) in stale {
            let api = self.dynamic_api(api_version, kind, &namespace);
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {
                    info!(kind, %namespace, %name, "deleted stale object");
                    count += 1;
                }
                Err(kube::Error::Api(response)) if response.code == 404 => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(count)
    }

    fn gateway_api(&self, kind: &str, namespace: Option<&str>) -> Option<Api<DynamicObject>> {
        let resource = self.apis.resources.get(kind)?;
        Some(match namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, resource),
            None => Api::all_with(self.client.clone(), resource),
        })
    }

    fn live(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<Arc<DynamicObject>> {
        let store = self.gateway_stores.get(kind)?;
        let resource = self.apis.resources.get(kind)?;
        let mut reference =
            kube::runtime::reflector::ObjectRef::<DynamicObject>::new_with(name, resource.clone());
        if let Some(namespace) = namespace {
            reference = reference.within(namespace);
        }
        store.get(&reference)
    }

    async fn patch_status(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        live: &DynamicObject,
        status: serde_json::Value,
    ) -> Result<usize, Error> {
        let Some(api) = self.gateway_api(kind, namespace) else {
            return Ok(0);
        };
        // resourceVersion makes this a compare-and-swap: a concurrent writer
        // (another controller sharing the object) makes it fail and the next
        // pass recomputes from what it wrote.
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": live.metadata.resource_version },
            "status": status,
        });
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(1),
            Err(kube::Error::Api(response)) if response.code == 409 || response.code == 404 => {
                self.bell.ring(STATUS_CONFLICT);
                Ok(0)
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn write_class_statuses(
        &self,
        translation: &Translation,
        now: &Time,
    ) -> Result<usize, Error> {
        let mut writes = 0;
        for (name, status) in &translation.classes {
            let Some(live) = self.live("GatewayClass", None, name) else {
                continue;
            };
            let existing: Vec<Condition> = conditions_at(&live.data, "/status/conditions");
            let mut desired = status.clone();
            if let Some(conditions) = desired.conditions.as_mut() {
                merge(conditions, &existing, now);
            }
            let desired = to_json(&desired)?;
            if live.data.get("status") == Some(&desired) {
                continue;
            }
            writes += self
                .patch_status("GatewayClass", None, name, &live, desired)
                .await?;
        }
        Ok(writes)
    }

    async fn write_gateway_statuses(
        &self,
        translation: &Translation,
        now: &Time,
    ) -> Result<usize, Error> {
        let mut writes = 0;
        for ((namespace, name), plan) in &translation.gateways {
            let Some(live) = self.live("Gateway", Some(namespace), name) else {
                continue;
            };
            let mut desired = plan.status.clone();
            let existing: Vec<Condition> = conditions_at(&live.data, "/status/conditions");
            if let Some(conditions) = desired.conditions.as_mut() {
                merge(conditions, &existing, now);
            }
            let live_listeners = live
                .data
                .pointer("/status/listeners")
                .cloned()
                .and_then(|v| {
                    serde_json::from_value::<Vec<gwapi::gateways::GatewayStatusListeners>>(v).ok()
                })
                .unwrap_or_default();
            for listener in desired.listeners.iter_mut().flatten() {
                let existing = live_listeners
                    .iter()
                    .find(|l| l.name == listener.name)
                    .map(|l| l.conditions.clone())
                    .unwrap_or_default();
                merge(&mut listener.conditions, &existing, now);
            }
            let mut desired = to_json(&desired)?;
            // Keep fields other writers own (none today) by merging over.
            if let (Some(live_status), Some(object)) =
                (live.data.get("status"), desired.as_object_mut())
                && live_status.get("addresses").is_some()
                && object.get("addresses").is_none()
            {
                // Clear addresses the Service no longer has.
                object.insert("addresses".to_owned(), serde_json::Value::Null);
            }
            if status_equal(live.data.get("status"), &desired) {
                continue;
            }
            writes += self
                .patch_status("Gateway", Some(namespace), name, &live, desired)
                .await?;
        }
        Ok(writes)
    }

    async fn write_route_statuses(
        &self,
        translation: &Translation,
        now: &Time,
    ) -> Result<usize, Error> {
        let mut writes = 0;
        let mut checked = Vec::new();
        for ((kind, (namespace, name)), ours) in &translation.routes {
            // A route whose object and entries are what the last check saw
            // needs no comparison: with many routes, that is most of them.
            let version = self
                .live(kind.name(), Some(namespace), name)
                .and_then(|live| live.metadata.resource_version.clone());
            let key = (*kind, (namespace.clone(), name.clone()));
            let unchanged = version.as_ref().is_some_and(|version| {
                self.routes_checked
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(&key)
                    .is_some_and(|(seen, entries)| seen == version && entries == ours)
            });
            if unchanged {
                continue;
            }
            let entries = ours
                .iter()
                .map(|p| (p.parent_ref.clone(), p.conditions.clone()))
                .collect();
            let written = self
                .write_shared_status(
                    kind.name(),
                    namespace,
                    name,
                    SharedList::PARENTS,
                    entries,
                    now,
                )
                .await?;
            writes += written;
            if written == 0
                && let Some(version) = version
            {
                checked.push((key, (version, ours.clone())));
            }
        }
        let mut memory = self
            .routes_checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        memory.retain(|key, _| translation.routes.contains_key(key));
        memory.extend(checked);
        Ok(writes)
    }

    async fn write_policy_statuses(
        &self,
        translation: &Translation,
        now: &Time,
    ) -> Result<usize, Error> {
        let mut writes = 0;
        for ((namespace, name), ours) in &translation.policies {
            let ours = ours
                .iter()
                .map(|a| (a.ancestor_ref.clone(), a.conditions.clone()))
                .collect();
            writes += self
                .write_shared_status(
                    "BackendTLSPolicy",
                    namespace,
                    name,
                    SharedList::ANCESTORS,
                    ours,
                    now,
                )
                .await?;
        }
        Ok(writes)
    }

    /// Writes our entries of a status list that other controllers share
    /// (route `parents`, policy `ancestors`), when they differ.
    async fn write_shared_status(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        list: SharedList,
        ours: Vec<(crate::translate::ParentRef, Vec<Condition>)>,
        now: &Time,
    ) -> Result<usize, Error> {
        let Some(live) = self.live(kind, Some(namespace), name) else {
            return Ok(0);
        };
        let current: Vec<serde_json::Value> = live
            .data
            .pointer(&format!("/status/{}", list.field))
            .and_then(|p| p.as_array())
            .cloned()
            .unwrap_or_default();
        let Some(desired) = shared_entries(&current, ours, list.reference, namespace, now) else {
            return Ok(0);
        };
        let status = serde_json::json!({ list.field: desired });
        self.patch_status(kind, Some(namespace), name, &live, status)
            .await
    }
}

/// A status list shared with other controllers: its field and the name of
/// each entry's reference.
#[derive(Debug, Clone, Copy)]
struct SharedList {
    field: &'static str,
    reference: &'static str,
}

impl SharedList {
    const PARENTS: SharedList = SharedList {
        field: "parents",
        reference: "parentRef",
    };
    const ANCESTORS: SharedList = SharedList {
        field: "ancestors",
        reference: "ancestorRef",
    };
}

/// The list with other controllers' entries kept and ours replaced; our
/// conditions keep their `lastTransitionTime` where their status did not
/// change. None when the result equals `current`.
fn shared_entries(
    current: &[serde_json::Value],
    ours: Vec<(crate::translate::ParentRef, Vec<Condition>)>,
    reference: &str,
    namespace: &str,
    now: &Time,
) -> Option<Vec<serde_json::Value>> {
    let (mine, mut desired): (Vec<_>, Vec<_>) = current.iter().cloned().partition(|entry| {
        entry.get("controllerName").and_then(|c| c.as_str()) == Some(CONTROLLER_NAME)
    });
    if ours.is_empty() && mine.is_empty() {
        return None;
    }
    for (target, mut conditions) in ours {
        let existing: Vec<Condition> = mine
            .iter()
            .find(|entry| {
                entry
                    .get(reference)
                    .and_then(|r| {
                        serde_json::from_value::<crate::translate::ParentRef>(r.clone()).ok()
                    })
                    .is_some_and(|r| same_parent(&r, &target, namespace))
            })
            .map(|entry| conditions_at(entry, "/conditions"))
            .unwrap_or_default();
        merge(&mut conditions, &existing, now);
        desired.push(serde_json::json!({
            reference: target,
            "controllerName": CONTROLLER_NAME,
            "conditions": conditions,
        }));
    }
    (desired != current).then_some(desired)
}

fn same_parent(
    a: &crate::translate::ParentRef,
    b: &crate::translate::ParentRef,
    route_namespace: &str,
) -> bool {
    a.name == b.name
        && a.namespace.as_deref().unwrap_or(route_namespace)
            == b.namespace.as_deref().unwrap_or(route_namespace)
        && a.section_name == b.section_name
        && a.port == b.port
}

/// Compares statuses as the API server stores them: absent and null fields
/// are the same.
fn status_equal(live: Option<&serde_json::Value>, desired: &serde_json::Value) -> bool {
    fn strip(value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => serde_json::Value::Object(
                map.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            serde_json::Value::Array(list) => {
                serde_json::Value::Array(list.iter().map(strip).collect())
            }
            other => other.clone(),
        }
    }
    live.map(strip) == Some(strip(desired))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, Error> {
    serde_json::to_value(value).map_err(|source| Error::Json {
        what: "status".to_owned(),
        source,
    })
}

fn conditions_at(value: &serde_json::Value, pointer: &str) -> Vec<Condition> {
    value
        .pointer(pointer)
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

fn is_managed(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY)
}

/// What a proxy Pod reports: Ready, and its `ConfigApplied` condition, whose
/// message starts with `generation N` (the generation it serves).
pub fn proxy_pod(pod: &Pod) -> ProxyPod {
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let ready = conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let applied = conditions
        .iter()
        .find(|c| c.type_ == CONFIG_APPLIED_CONDITION);
    let generation_in = |message: &str| -> Option<u64> {
        message
            .strip_prefix("generation ")?
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    ProxyPod {
        name: pod.name_any(),
        ready,
        applied_generation: applied
            .filter(|c| c.status == "True")
            .and_then(|c| c.message.as_deref().and_then(generation_in)),
        failure: applied.filter(|c| c.status == "False").map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        }),
        terminating: pod.metadata.deletion_timestamp.is_some(),
    }
}

/// v1alpha2 TLSRoutes may omit `hostnames`, which v1 requires.
fn fill_tls_route_defaults(object: Arc<DynamicObject>) -> Arc<DynamicObject> {
    if object.data.pointer("/spec/hostnames").is_some() {
        return object;
    }
    let mut object = (*object).clone();
    if let Some(spec) = object.data.get_mut("spec").and_then(|s| s.as_object_mut()) {
        spec.insert("hostnames".to_owned(), serde_json::json!([]));
    }
    Arc::new(object)
}

/// Typed copies of the dynamic Gateway API objects, kept while their
/// resourceVersion stands: parsing every route from JSON on every pass was
/// most of a pass's time.
#[derive(Default)]
struct ParseCache {
    pass: u64,
    /// By kind, then namespace/name: the resourceVersion parsed, the pass
    /// that last saw it, and the typed object.
    entries: BTreeMap<(&'static str, Key), CachedParse>,
}

/// resourceVersion, the pass that last saw it, the typed object.
type CachedParse = (String, u64, Arc<dyn std::any::Any + Send + Sync>);

impl ParseCache {
    fn parse<K>(&mut self, kind: &'static str, objects: Vec<Arc<DynamicObject>>) -> Vec<K>
    where
        K: Resource + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let mut out = Vec::with_capacity(objects.len());
        for object in objects {
            let key = (kind, key_of(&object.metadata));
            let version = object.metadata.resource_version.clone().unwrap_or_default();
            if let Some((cached_version, seen, typed)) = self.entries.get_mut(&key)
                && *cached_version == version
                && !version.is_empty()
                && let Some(typed) = typed.downcast_ref::<K>()
            {
                *seen = self.pass;
                out.push(typed.clone());
                continue;
            }
            match (*object).clone().try_parse::<K>() {
                Ok(parsed) => {
                    self.entries
                        .insert(key, (version, self.pass, Arc::new(parsed.clone())));
                    out.push(parsed);
                }
                Err(err) => {
                    warn!(name = %key.1.1, namespace = %key.1.0, error = %err, "cannot read object; ignored");
                }
            }
        }
        out
    }

    /// Drops what the current pass did not see (deleted objects).
    fn forget_unseen(&mut self) {
        let pass = self.pass;
        self.entries.retain(|_, (_, seen, _)| *seen == pass);
    }
}

fn typed<K>(
    client: &Client,
    config: watcher::Config,
    bell: &Arc<Bell>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let api: Api<K> = Api::all(client.clone());
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    tasks.push(tokio::spawn(ring_on_events(stream, bell.clone(), kind)));
    reader
}

fn dynamic(
    client: &Client,
    resource: ApiResource,
    bell: &Arc<Bell>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Store<DynamicObject> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let writer = reflector::store::Writer::new(resource.clone());
    let reader = writer.as_reader();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    let kind = resource.kind.clone();
    tasks.push(tokio::spawn(ring_on_events(stream, bell.clone(), kind)));
    reader
}

async fn ring_on_events<S, K>(stream: S, bell: Arc<Bell>, what: String)
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(_) => bell.ring(&what),
            Err(err) => warn!(kind = what, error = %err, "watch error; retrying"),
        }
    }
}

/// Kinds the route status writer handles, for completeness checks in tests.
pub const ROUTE_KINDS: [RouteKind; 5] = RouteKind::ALL;

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]

    use super::*;
    use crate::conditions::condition;
    use crate::translate::ParentRef;

    #[test]
    fn only_endpoint_changes_and_due_writes_take_the_fast_path() {
        let bell = Bell::default();
        assert!(
            !endpoint_only(&bell.take()),
            "a resync translates everything"
        );
        bell.ring(ENDPOINT_SLICE);
        bell.ring(ENDPOINT_SLICE);
        let dirty = bell.take();
        assert_eq!(dirty.len(), 1);
        assert!(endpoint_only(&dirty));
        assert!(bell.take().is_empty(), "taking clears");
        bell.ring(DEFERRED_WRITE);
        assert!(endpoint_only(&bell.take()));
        for other in ["Service", "Secret", "HTTPRoute", "Pod", STATUS_CONFLICT] {
            bell.ring(ENDPOINT_SLICE);
            bell.ring(other);
            assert!(!endpoint_only(&bell.take()), "{other} needs a full pass");
        }
    }

    #[test]
    fn parsed_objects_are_reused_until_their_resource_version_moves() {
        let object = |version: &str, class: &str| {
            let resource = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway"),
                "gateways",
            );
            let mut object = DynamicObject::new("edge", &resource).within("apps");
            object.metadata.resource_version = Some(version.to_owned());
            object.data = serde_json::json!({
                "spec": {"gatewayClassName": class, "listeners": []}
            });
            Arc::new(object)
        };
        let class = |gateways: &[gwapi::gateways::Gateway]| {
            gateways
                .iter()
                .map(|g| g.spec.gateway_class_name.clone())
                .collect::<Vec<_>>()
        };
        let mut cache = ParseCache::default();
        cache.pass += 1;
        let parsed: Vec<gwapi::gateways::Gateway> = cache.parse("Gateway", vec![object("1", "a")]);
        assert_eq!(class(&parsed), ["a"]);
        cache.pass += 1;
        // Same version: the cached copy, not a new parse (the store never
        // changes an object without moving its version).
        let parsed: Vec<gwapi::gateways::Gateway> = cache.parse("Gateway", vec![object("1", "b")]);
        assert_eq!(class(&parsed), ["a"]);
        cache.pass += 1;
        let parsed: Vec<gwapi::gateways::Gateway> = cache.parse("Gateway", vec![object("2", "b")]);
        assert_eq!(class(&parsed), ["b"]);
        cache.forget_unseen();
        assert_eq!(cache.entries.len(), 1);
        cache.pass += 1;
        cache.forget_unseen();
        assert!(cache.entries.is_empty(), "a deleted object is forgotten");
    }

    #[test]
    fn watched_kinds_ring_under_their_api_names() {
        assert_eq!(EndpointSlice::kind(&()), ENDPOINT_SLICE);
    }

    #[test]
    fn shared_status_lists_keep_other_controllers_and_transition_times() {
        let parent = ParentRef {
            name: "edge".into(),
            ..ParentRef::default()
        };
        let earlier = Time(Timestamp::from_second(1_000).unwrap());
        let now = Time(Timestamp::from_second(2_000).unwrap());
        let mut accepted = condition("Accepted", true, "Accepted", "ok", Some(1));
        accepted.last_transition_time = earlier.clone();
        let other = serde_json::json!({"parentRef": {"name": "theirs"}, "controllerName": "example.com/other", "conditions": []});
        let current = vec![
            other.clone(),
            serde_json::json!({"parentRef": {"name": "edge"}, "controllerName": CONTROLLER_NAME, "conditions": [accepted]}),
        ];
        let ours = || {
            vec![(
                parent.clone(),
                vec![condition("Accepted", true, "Accepted", "ok", Some(1))],
            )]
        };
        assert_eq!(
            shared_entries(&current, ours(), "parentRef", "apps", &now),
            None,
            "nothing changed, nothing written"
        );

        let changed = vec![(
            parent.clone(),
            vec![condition("Accepted", true, "Accepted", "still ok", Some(2))],
        )];
        let desired =
            shared_entries(&current, changed, "parentRef", "apps", &now).expect("a write");
        assert_eq!(desired[0], other, "other controllers' entries are kept");
        let time = desired[1]
            .pointer("/conditions/0/lastTransitionTime")
            .cloned();
        assert_eq!(
            time,
            Some(serde_json::to_value(&earlier).unwrap()),
            "same status, same transition time"
        );

        let gone =
            shared_entries(&current, Vec::new(), "parentRef", "apps", &now).expect("removal");
        assert_eq!(gone, vec![other], "our stale entry is removed");
    }
}
