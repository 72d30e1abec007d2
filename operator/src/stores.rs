//! Watch caches of everything the operator reads, and the two views built
//! from them for each pass: the [`Snapshot`] translation reads and the
//! [`Live`] state writes are compared against.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use crds::ProxyConfig;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::DynamicObject;
use kube::discovery::ApiResource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use operator_core::names::{
    CONFIG_HASH_ANNOTATION, GATEWAY_NAME_LABEL, GENERATION_ANNOTATION, MANAGED_BY,
    MANAGED_BY_LABEL, NAME_LABEL, PROXY_NAME, SERVICE_NAME_LABEL,
};
use operator_core::provision::ProvisionedKind;
use operator_core::snapshot::{DeployedConfig, EndpointSlices, ProxyPod};
use operator_core::writes::{Live, LiveStatus};
use operator_core::{ObjectKey, Snapshot, StatusKind, StatusTarget};
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::bell::{Bell, Rung};
use crate::discovery::GatewayApis;

/// Typed watch caches of core and Portcullis kinds, and dynamic ones of the
/// served Gateway API kinds.
pub struct Stores {
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
    gateway_api: BTreeMap<String, Store<DynamicObject>>,
    parsed: ParseCache,
    statuses: StatusCache,
}

impl Stores {
    /// Starts a watch for every cache; each event rings `bell` with its kind.
    pub fn start(
        client: &Client,
        apis: &GatewayApis,
        bell: &Arc<Bell>,
        tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    ) -> Stores {
        let managed =
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
        let all = watcher::Config::default;
        let mut gateway_api = BTreeMap::new();
        for (kind, resource) in &apis.resources {
            gateway_api.insert(kind.clone(), dynamic(client, resource.clone(), bell, tasks));
        }
        Stores {
            services: typed(client, all(), bell, tasks),
            endpoint_slices: typed(client, all(), bell, tasks),
            secrets: typed(client, all(), bell, tasks),
            config_maps: typed(client, all(), bell, tasks),
            namespaces: typed(client, all(), bell, tasks),
            proxy_configs: apis
                .proxy_configs
                .then(|| typed(client, all(), bell, tasks)),
            pods: typed(
                client,
                watcher::Config::default().labels(&format!("{NAME_LABEL}={PROXY_NAME}")),
                bell,
                tasks,
            ),
            deployments: typed(client, managed.clone(), bell, tasks),
            service_accounts: typed(client, managed.clone(), bell, tasks),
            roles: typed(client, managed.clone(), bell, tasks),
            role_bindings: typed(client, managed.clone(), bell, tasks),
            autoscalers: typed(client, managed.clone(), bell, tasks),
            budgets: typed(client, managed, bell, tasks),
            gateway_api,
            parsed: ParseCache::default(),
            statuses: StatusCache::default(),
        }
    }

    /// Resolves once every cache has its initial listing.
    pub async fn wait_ready(&self) {
        let _ = futures::join!(
            self.services.wait_until_ready(),
            self.endpoint_slices.wait_until_ready(),
            self.secrets.wait_until_ready(),
            self.config_maps.wait_until_ready(),
            self.namespaces.wait_until_ready(),
            self.pods.wait_until_ready(),
            self.deployments.wait_until_ready(),
            self.service_accounts.wait_until_ready(),
            self.roles.wait_until_ready(),
            self.role_bindings.wait_until_ready(),
            self.autoscalers.wait_until_ready(),
            self.budgets.wait_until_ready(),
        );
        for store in self.gateway_api.values() {
            let _ = store.wait_until_ready().await;
        }
        if let Some(store) = &self.proxy_configs {
            let _ = store.wait_until_ready().await;
        }
    }

    /// Everything translation reads, as the caches hold it now.
    pub fn snapshot(&mut self, apis: &GatewayApis) -> Snapshot {
        let mut snapshot = Snapshot {
            served: apis.served(),
            ..Snapshot::default()
        };
        let (stores, parsed) = (&self.gateway_api, &mut self.parsed);
        let objects = |kind: &str| objects_of(stores, kind);
        parsed.pass += 1;
        snapshot.gateway_classes = parsed.parse("GatewayClass", objects("GatewayClass"));
        snapshot.gateways = parsed.parse("Gateway", objects("Gateway"));
        snapshot.http_routes = parsed.parse("HTTPRoute", objects("HTTPRoute"));
        snapshot.grpc_routes = parsed.parse("GRPCRoute", objects("GRPCRoute"));
        let tls_routes = objects("TLSRoute")
            .into_iter()
            .map(fill_tls_route_defaults)
            .collect();
        snapshot.tls_routes = parsed.parse("TLSRoute", tls_routes);
        snapshot.tcp_routes = parsed.parse("TCPRoute", objects("TCPRoute"));
        snapshot.udp_routes = parsed.parse("UDPRoute", objects("UDPRoute"));
        snapshot.reference_grants = parsed.parse("ReferenceGrant", objects("ReferenceGrant"));
        snapshot.listener_sets = parsed.parse("ListenerSet", objects("ListenerSet"));
        snapshot.backend_tls_policies =
            parsed.parse("BackendTLSPolicy", objects("BackendTLSPolicy"));
        snapshot.backend_traffic_policies =
            parsed.parse("XBackendTrafficPolicy", objects("XBackendTrafficPolicy"));
        self.parsed.forget_unseen();

        for service in self.services.state() {
            snapshot
                .services
                .insert(ObjectKey::of(&service.metadata), (*service).clone());
        }
        snapshot.endpoint_slices = self.endpoint_slices();
        for secret in self.secrets.state() {
            let key = ObjectKey::of(&secret.metadata);
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
                snapshot.deployed.insert(
                    ObjectKey::new(key.namespace.clone(), gateway.clone()),
                    deployed,
                );
            }
            snapshot.secrets.insert(key, (*secret).clone());
        }
        for map in self.config_maps.state() {
            snapshot
                .config_maps
                .insert(ObjectKey::of(&map.metadata), (*map).clone());
        }
        for namespace in self.namespaces.state() {
            snapshot.namespaces.insert(
                namespace.name_any(),
                namespace.metadata.labels.clone().unwrap_or_default(),
            );
        }
        for config in self.proxy_configs.iter().flat_map(|s| s.state()) {
            snapshot
                .proxy_configs
                .insert(ObjectKey::of(&config.metadata), (*config).clone());
        }
        snapshot.proxy_pods = self.proxy_pods();
        snapshot
    }

    /// EndpointSlices by Service, each list sorted by name.
    pub fn endpoint_slices(&self) -> EndpointSlices {
        let mut slices = EndpointSlices::new();
        for slice in self.endpoint_slices.state() {
            let namespace = slice.metadata.namespace.clone().unwrap_or_default();
            if let Some(service) = slice.labels().get(SERVICE_NAME_LABEL) {
                slices
                    .entry(ObjectKey::new(namespace, service.clone()))
                    .or_default()
                    .push((*slice).clone());
            }
        }
        for list in slices.values_mut() {
            list.sort_by_key(|s| s.metadata.name.clone());
        }
        slices
    }

    /// What each Gateway's proxy Pods report.
    pub fn proxy_pods(&self) -> BTreeMap<ObjectKey, Vec<ProxyPod>> {
        let mut pods: BTreeMap<ObjectKey, Vec<ProxyPod>> = BTreeMap::new();
        for pod in self.pods.state() {
            let Some(gateway) = pod.labels().get(GATEWAY_NAME_LABEL) else {
                continue;
            };
            let key = ObjectKey::new(
                pod.metadata.namespace.clone().unwrap_or_default(),
                gateway.clone(),
            );
            pods.entry(key).or_default().push(ProxyPod::of(&pod));
        }
        pods
    }

    /// What the operator provisioned, and the statuses of `kinds`.
    pub fn live(&mut self, kinds: &[StatusKind]) -> Live {
        let mut live = Live::default();
        own(&mut live, ProvisionedKind::Deployment, &self.deployments);
        own(
            &mut live,
            ProvisionedKind::ServiceAccount,
            &self.service_accounts,
        );
        own(&mut live, ProvisionedKind::Role, &self.roles);
        own(&mut live, ProvisionedKind::RoleBinding, &self.role_bindings);
        own(
            &mut live,
            ProvisionedKind::HorizontalPodAutoscaler,
            &self.autoscalers,
        );
        own(
            &mut live,
            ProvisionedKind::PodDisruptionBudget,
            &self.budgets,
        );
        own(&mut live, ProvisionedKind::Service, &self.services);
        own(&mut live, ProvisionedKind::Secret, &self.secrets);
        self.statuses.pass += 1;
        for &kind in kinds {
            let Some(store) = self.gateway_api.get(kind.name()) else {
                continue;
            };
            for object in store.state() {
                let key = ObjectKey::of(&object.metadata);
                let status = self.statuses.status(kind, &key, &object);
                live.statuses.insert(StatusTarget::new(kind, key), status);
            }
        }
        self.statuses.forget_unseen(kinds);
        live
    }
}

fn objects_of(
    stores: &BTreeMap<String, Store<DynamicObject>>,
    kind: &str,
) -> Vec<Arc<DynamicObject>> {
    stores.get(kind).map(|s| s.state()).unwrap_or_default()
}

fn own<K>(live: &mut Live, kind: ProvisionedKind, store: &Store<K>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    for object in store.state() {
        live.own(kind, object.meta());
    }
}

fn is_managed(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY)
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
    entries: BTreeMap<(&'static str, ObjectKey), CachedParse>,
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
            let key = (kind, ObjectKey::of(&object.metadata));
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
                    warn!(kind, object = %key.1, error = %err, "cannot read object; ignored");
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

/// Each object's `status` as a shared value, kept while its resourceVersion
/// stands, so that building [`Live`] copies no JSON.
#[derive(Default)]
struct StatusCache {
    pass: u64,
    entries: BTreeMap<StatusTarget, (LiveStatus, u64)>,
}

impl StatusCache {
    fn status(&mut self, kind: StatusKind, key: &ObjectKey, object: &DynamicObject) -> LiveStatus {
        let version = object.metadata.resource_version.clone().unwrap_or_default();
        let target = StatusTarget::new(kind, key.clone());
        if let Some((cached, seen)) = self.entries.get_mut(&target)
            && cached.resource_version == version
            && !version.is_empty()
        {
            *seen = self.pass;
            return cached.clone();
        }
        let status = LiveStatus {
            resource_version: version,
            status: object.data.get("status").cloned().map(Arc::new),
        };
        self.entries.insert(target, (status.clone(), self.pass));
        status
    }

    /// Drops objects of `kinds` the current pass did not see.
    fn forget_unseen(&mut self, kinds: &[StatusKind]) {
        let pass = self.pass;
        self.entries
            .retain(|target, (_, seen)| *seen == pass || !kinds.contains(&target.kind));
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
    tasks.push(tokio::spawn(ring_on_events(
        stream,
        bell.clone(),
        Rung::kind(kind),
    )));
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
    tasks.push(tokio::spawn(ring_on_events(
        stream,
        bell.clone(),
        Rung::kind(resource.kind.clone()),
    )));
    reader
}

async fn ring_on_events<S, K>(stream: S, bell: Arc<Bell>, what: Rung)
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(_) => bell.ring(what.clone()),
            Err(err) => warn!(kind = %what, error = %err, "watch error; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]

    use kube::api::GroupVersionKind;

    use super::*;

    fn gateway(version: &str, class: &str) -> Arc<DynamicObject> {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway"),
            "gateways",
        );
        let mut object = DynamicObject::new("edge", &resource).within("apps");
        object.metadata.resource_version = Some(version.to_owned());
        object.data = serde_json::json!({
            "spec": {"gatewayClassName": class, "listeners": []},
            "status": {"addresses": [{"value": class}]},
        });
        Arc::new(object)
    }

    #[test]
    fn parsed_objects_are_reused_until_their_resource_version_moves() {
        let class = |gateways: &[gwapi::gateways::Gateway]| {
            gateways
                .iter()
                .map(|g| g.spec.gateway_class_name.clone())
                .collect::<Vec<_>>()
        };
        let mut cache = ParseCache::default();
        cache.pass += 1;
        let parsed: Vec<gwapi::gateways::Gateway> = cache.parse("Gateway", vec![gateway("1", "a")]);
        assert_eq!(class(&parsed), ["a"]);
        cache.pass += 1;
        // Same version: the cached copy, not a new parse (the store never
        // changes an object without moving its version).
        let parsed: Vec<gwapi::gateways::Gateway> = cache.parse("Gateway", vec![gateway("1", "b")]);
        assert_eq!(class(&parsed), ["a"]);
        cache.pass += 1;
        let parsed: Vec<gwapi::gateways::Gateway> = cache.parse("Gateway", vec![gateway("2", "b")]);
        assert_eq!(class(&parsed), ["b"]);
        cache.forget_unseen();
        assert_eq!(cache.entries.len(), 1);
        cache.pass += 1;
        cache.forget_unseen();
        assert!(cache.entries.is_empty(), "a deleted object is forgotten");
    }

    #[test]
    fn statuses_are_shared_until_their_resource_version_moves() {
        let key = ObjectKey::new("apps", "edge");
        let mut cache = StatusCache::default();
        cache.pass += 1;
        let first = cache.status(StatusKind::Gateway, &key, &gateway("1", "a"));
        cache.pass += 1;
        let again = cache.status(StatusKind::Gateway, &key, &gateway("1", "b"));
        assert!(Arc::ptr_eq(
            first.status.as_ref().unwrap(),
            again.status.as_ref().unwrap()
        ));
        let moved = cache.status(StatusKind::Gateway, &key, &gateway("2", "b"));
        assert_eq!(
            moved
                .status
                .as_deref()
                .and_then(|s| s.pointer("/addresses/0/value")),
            Some(&serde_json::json!("b"))
        );
        cache.pass += 1;
        cache.forget_unseen(&[StatusKind::Gateway]);
        assert!(cache.entries.is_empty());
    }
}
