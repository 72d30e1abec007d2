//! The cloud load balancer: Services of type LoadBalancer get an address
//! from a test pool (added to the host bridge) and each of their ports is
//! forwarded, TCP and UDP, to ready endpoints from the EndpointSlices.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::network::run as command;
use super::state::Agent;

const MANAGER: &str = "portcullis-node-agent";
const UDP_SESSION_IDLE: Duration = Duration::from_secs(30);

struct Balanced {
    address: Ipv4Addr,
    /// (port, protocol) → forwarder.
    forwarders: HashMap<(u16, String), JoinHandle<()>>,
}

/// Watches Services and EndpointSlices until the process stops.
pub async fn run(agent: Arc<Agent>) {
    let slices_api: Api<EndpointSlice> = Api::all(agent.client.clone());
    let (slices, writer) = reflector::store();
    let slice_stream = reflector::reflector(
        writer,
        watcher::watcher(slices_api, watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    tokio::spawn(async move {
        futures::pin_mut!(slice_stream);
        while slice_stream.next().await.is_some() {}
    });

    let services_api: Api<Service> = Api::all(agent.client.clone());
    let (services, writer) = reflector::store();
    let service_stream = reflector::reflector(
        writer,
        watcher::watcher(services_api, watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    let balanced: Arc<Mutex<HashMap<String, Balanced>>> = Arc::default();
    futures::pin_mut!(service_stream);
    let mut resync = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            event = service_stream.next() => if event.is_none() { break },
            _ = resync.tick() => {}
        }
        reconcile(&agent, &services, &slices, &balanced).await;
    }
}

async fn reconcile(
    agent: &Arc<Agent>,
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    balanced: &Mutex<HashMap<String, Balanced>>,
) {
    let mut balanced = balanced.lock().await;
    let wanted: HashMap<String, Arc<Service>> = services
        .state()
        .into_iter()
        .filter(|s| s.spec.as_ref().and_then(|spec| spec.type_.as_deref()) == Some("LoadBalancer"))
        .filter_map(|s| s.uid().map(|uid| (uid, s)))
        .collect();

    // Gone, or asking for another address (spec.loadBalancerIP changed to
    // a free one in the pool): released here, allocated again below.
    let gone: Vec<String> = balanced
        .iter()
        .filter(|(uid, entry)| match wanted.get(*uid) {
            None => true,
            Some(service) => moves_to(agent, service, entry.address, &balanced),
        })
        .map(|(uid, _)| uid.clone())
        .collect();
    for uid in gone {
        if let Some(entry) = balanced.remove(&uid) {
            for (_, task) in entry.forwarders {
                task.abort();
            }
            let _ = command(
                "ip",
                &[
                    "addr",
                    "del",
                    &format!("{}/32", entry.address),
                    "dev",
                    &agent.config.bridge,
                ],
            )
            .await;
            info!(address = %entry.address, "load balancer released");
        }
    }

    for (uid, service) in wanted {
        if !balanced.contains_key(&uid) {
            let Some(address) = allocate(agent, &service, &balanced) else {
                warn!(service = %service.name_any(), "load balancer pool exhausted");
                continue;
            };
            let cidr = format!("{address}/32");
            if let Err(err) = command(
                "ip",
                &["addr", "replace", &cidr, "dev", &agent.config.bridge],
            )
            .await
            {
                warn!(error = %err, "cannot add the load balancer address");
                continue;
            }
            balanced.insert(
                uid.clone(),
                Balanced {
                    address,
                    forwarders: HashMap::new(),
                },
            );
        }
        let Some(entry) = balanced.get_mut(&uid) else {
            continue;
        };
        let ports: Vec<ServicePort> = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default();
        let keys: Vec<(u16, String)> = ports
            .iter()
            .filter_map(|p| {
                Some((
                    u16::try_from(p.port).ok()?,
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ))
            })
            .collect();
        entry.forwarders.retain(|key, task| {
            let keep = keys.contains(key);
            if !keep {
                task.abort();
            }
            keep
        });
        for port in &ports {
            let Ok(number) = u16::try_from(port.port) else {
                continue;
            };
            let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".into());
            let key = (number, protocol.clone());
            if entry.forwarders.contains_key(&key) {
                continue;
            }
            let target = Target {
                namespace: service.namespace().unwrap_or_default(),
                service: service.name_any(),
                port_name: port.name.clone(),
                slices: slices.clone(),
                next: Arc::new(AtomicUsize::new(0)),
            };
            let listen = SocketAddr::new(IpAddr::V4(entry.address), number);
            let task = if protocol == "UDP" {
                tokio::spawn(forward_udp(listen, target))
            } else {
                tokio::spawn(forward_tcp(listen, target))
            };
            entry.forwarders.insert(key, task);
        }
        publish(agent, &service, entry.address).await;
    }
}

/// Whether a balanced Service asks for a free pool address other than the
/// one it has.
fn moves_to(
    agent: &Agent,
    service: &Service,
    current: Ipv4Addr,
    balanced: &HashMap<String, Balanced>,
) -> bool {
    let Some(requested) = service
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.as_deref())
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
    else {
        return false;
    };
    let base = u32::from(agent.config.load_balancer_pool);
    let in_pool =
        (base..base + agent.config.load_balancer_pool_size).contains(&u32::from(requested));
    let taken = balanced.values().any(|b| b.address == requested);
    requested != current && in_pool && !taken
}

fn allocate(
    agent: &Agent,
    service: &Service,
    balanced: &HashMap<String, Balanced>,
) -> Option<Ipv4Addr> {
    let base = u32::from(agent.config.load_balancer_pool);
    let pool: Vec<Ipv4Addr> = (0..agent.config.load_balancer_pool_size)
        .map(|i| Ipv4Addr::from(base + i))
        .collect();
    let used: Vec<Ipv4Addr> = balanced.values().map(|b| b.address).collect();
    let free = |ip: &Ipv4Addr| pool.contains(ip) && !used.contains(ip);
    // A requested address (spec.loadBalancerIP), or the one already
    // published, is honoured when it is in the pool and free.
    let requested = service
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.as_deref())
        .and_then(|ip| ip.parse().ok());
    let published = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .and_then(|ingress| ingress.first())
        .and_then(|ingress| ingress.ip.as_deref())
        .and_then(|ip| ip.parse().ok());
    requested
        .filter(free)
        .or(published.filter(free))
        .or_else(|| pool.iter().find(|ip| free(ip)).copied())
}

async fn publish(agent: &Agent, service: &Service, address: Ipv4Addr) {
    let current = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .and_then(|ingress| ingress.first())
        .and_then(|ingress| ingress.ip.clone());
    if current.as_deref() == Some(&address.to_string()) {
        return;
    }
    let services: Api<Service> = Api::namespaced(
        agent.client.clone(),
        &service.namespace().unwrap_or_default(),
    );
    let patch = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "status": {"loadBalancer": {"ingress": [{"ip": address.to_string(), "ipMode": "VIP"}]}},
    });
    match services
        .patch_status(
            &service.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => info!(service = %service.name_any(), %address, "load balancer address published"),
        Err(err) => {
            warn!(service = %service.name_any(), error = %err, "cannot publish the load balancer address")
        }
    }
}

/// Where a Service port's traffic goes.
#[derive(Clone)]
struct Target {
    namespace: String,
    service: String,
    port_name: Option<String>,
    slices: Store<EndpointSlice>,
    next: Arc<AtomicUsize>,
}

impl Target {
    /// Ready endpoints of the port, round robin.
    fn pick(&self) -> Option<SocketAddr> {
        let mut endpoints = Vec::new();
        for slice in self.slices.state() {
            if slice.namespace().as_deref() != Some(self.namespace.as_str())
                || slice.labels().get("kubernetes.io/service-name") != Some(&self.service)
            {
                continue;
            }
            let Some(port) = slice
                .ports
                .iter()
                .flatten()
                .find(|p| {
                    p.name == self.port_name
                        || (self.port_name.is_none() && p.name.as_deref() == Some(""))
                })
                .or_else(|| slice.ports.as_ref().and_then(|p| p.first()))
                .and_then(|p| p.port)
                .and_then(|p| u16::try_from(p).ok())
            else {
                continue;
            };
            for endpoint in slice.endpoints.iter().flatten() {
                let ready = endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .unwrap_or(true);
                if !ready {
                    continue;
                }
                for address in &endpoint.addresses {
                    if let Ok(ip) = address.parse::<IpAddr>() {
                        endpoints.push(SocketAddr::new(ip, port));
                    }
                }
            }
        }
        if endpoints.is_empty() {
            return None;
        }
        endpoints.sort_unstable();
        Some(endpoints[self.next.fetch_add(1, Ordering::Relaxed) % endpoints.len()])
    }
}

async fn forward_tcp(listen: SocketAddr, target: Target) {
    let listener = loop {
        match TcpListener::bind(listen).await {
            Ok(listener) => break listener,
            Err(err) => {
                warn!(%listen, error = %err, "cannot bind load balancer port; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let target = target.clone();
        tokio::spawn(async move {
            let Some(endpoint) = target.pick() else {
                debug!(service = %target.service, "no ready endpoint");
                return;
            };
            match tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(endpoint)).await {
                Ok(Ok(mut upstream)) => {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                _ => debug!(%endpoint, "cannot reach endpoint"),
            }
        });
    }
}

async fn forward_udp(listen: SocketAddr, target: Target) {
    let socket = loop {
        match UdpSocket::bind(listen).await {
            Ok(socket) => break Arc::new(socket),
            Err(err) => {
                warn!(%listen, error = %err, "cannot bind load balancer UDP port; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let sessions: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buffer = vec![0u8; 65_535];
    loop {
        let Ok((length, client)) = socket.recv_from(&mut buffer).await else {
            continue;
        };
        let sessions_handle = sessions.clone();
        let upstream = {
            let mut sessions = sessions.lock().await;
            if let Some(upstream) = sessions.get(&client) {
                upstream.clone()
            } else {
                let Some(endpoint) = target.pick() else {
                    continue;
                };
                let Ok(upstream) = UdpSocket::bind("0.0.0.0:0").await else {
                    continue;
                };
                if upstream.connect(endpoint).await.is_err() {
                    continue;
                }
                let upstream = Arc::new(upstream);
                sessions.insert(client, upstream.clone());
                let (reply_socket, reply_upstream) = (socket.clone(), upstream.clone());
                let reply_sessions = Arc::clone(&sessions_handle);
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 65_535];
                    while let Ok(Ok(length)) =
                        tokio::time::timeout(UDP_SESSION_IDLE, reply_upstream.recv(&mut buffer))
                            .await
                    {
                        let _ = reply_socket.send_to(&buffer[..length], client).await;
                    }
                    reply_sessions.lock().await.remove(&client);
                });
                upstream
            }
        };
        let _ = upstream.send(&buffer[..length]).await;
    }
}
