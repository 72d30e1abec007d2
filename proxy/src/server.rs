//! Sockets and connections: binds what the config asks for, serves each
//! connection on the config current at each request, and drains.
//!
//! A bound socket does not belong to a config: it looks up its listener in
//! the live snapshot for every connection (TLS or not, which certificates)
//! and every request (which routes). So a reload swaps one pointer; sockets
//! are bound only for new ports and closed only for removed ones, and
//! everything else keeps running untouched.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use boring::ssl::{NameType, Ssl};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use proxy_config::{ConfigDocument, Protocol};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::error::Error;
use crate::handler::{ConnectionInfo, handle};
use crate::runtime::{ListenerRuntime, compile};
use crate::shared::Shared;

/// Default limits when the config sets none.
const DEFAULT_MAX_HEADERS: usize = 100;
const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What applying a config did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    pub generation: u64,
    /// Listeners in the document.
    pub listeners: usize,
    /// Listeners whose port could not be bound, with the reason. Ports are
    /// tried again on every apply, so this is the state after this one.
    pub failed_listeners: Vec<(String, String)>,
}

struct BoundSocket {
    stop: watch::Sender<bool>,
    /// One accept loop per worker, each on its own SO_REUSEPORT socket.
    tasks: Vec<JoinHandle<()>>,
}

/// Owns the bound sockets.
pub struct Server {
    shared: Arc<Shared>,
    bind_ip: IpAddr,
    /// Runtimes that serve connections: one thread each, sharing nothing
    /// per connection, with the kernel spreading accepts between them.
    workers: Vec<Handle>,
    sockets: HashMap<u16, BoundSocket>,
    udp_sockets: HashMap<u16, BoundSocket>,
    /// Signals every connection to finish gracefully on process drain.
    drain: watch::Sender<bool>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("bind_ip", &self.bind_ip)
            .field("ports", &self.sockets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Server {
    /// Serves connections on the current runtime.
    pub fn new(shared: Arc<Shared>, bind_ip: IpAddr) -> Self {
        Self::with_workers(shared, bind_ip, vec![Handle::current()])
    }

    pub fn with_workers(shared: Arc<Shared>, bind_ip: IpAddr, workers: Vec<Handle>) -> Self {
        Self {
            shared,
            bind_ip,
            workers,
            sockets: HashMap::new(),
            udp_sockets: HashMap::new(),
            drain: watch::channel(false).0,
        }
    }

    /// The ports bound right now.
    pub fn ports(&self) -> Vec<u16> {
        self.sockets.keys().copied().collect()
    }

    /// Compiles and swaps in a validated document, then binds new ports and
    /// closes removed ones. On a compile error nothing changes.
    pub async fn apply(&mut self, document: ConfigDocument) -> Result<ApplyReport, Error> {
        let document = Arc::new(document);
        let snapshot = compile(
            document.clone(),
            &self.shared.metrics,
            &self.shared.registry,
            &self.shared.tls_clients,
        )?;
        let mut report = ApplyReport {
            generation: document.generation,
            listeners: document.config.listeners.len(),
            ..ApplyReport::default()
        };
        let wanted: HashMap<u16, &str> = document
            .config
            .listeners
            .iter()
            .filter(|l| l.protocol != Protocol::Udp)
            .map(|l| (l.port, l.name.as_str()))
            .collect();
        let wanted_udp: HashMap<u16, &str> = document
            .config
            .listeners
            .iter()
            .filter(|l| l.protocol == Protocol::Udp)
            .map(|l| (l.port, l.name.as_str()))
            .collect();

        let mut new_sockets = Vec::new();
        for (&port, &name) in &wanted {
            if self.sockets.contains_key(&port) {
                continue;
            }
            let address = SocketAddr::new(self.bind_ip, port);
            match self
                .workers
                .iter()
                .map(|_| bind(address))
                .collect::<std::io::Result<Vec<_>>>()
            {
                Ok(listeners) => new_sockets.push((port, listeners)),
                Err(err) => {
                    warn!(listener = name, port, error = %err, "cannot bind listener");
                    report
                        .failed_listeners
                        .push((name.to_owned(), err.to_string()));
                }
            }
        }

        let mut new_udp = Vec::new();
        for (&port, &name) in &wanted_udp {
            if self.udp_sockets.contains_key(&port) {
                continue;
            }
            match std::net::UdpSocket::bind(SocketAddr::new(self.bind_ip, port))
                .and_then(|socket| socket.set_nonblocking(true).map(|()| socket))
            {
                Ok(socket) => new_udp.push((port, socket)),
                Err(err) => {
                    warn!(listener = name, port, error = %err, "cannot bind UDP listener");
                    report
                        .failed_listeners
                        .push((name.to_owned(), err.to_string()));
                }
            }
        }

        self.shared.snapshot.store(Arc::new(snapshot));

        for (port, socket) in new_udp {
            let (stop, stopped) = watch::channel(false);
            let shared = self.shared.clone();
            // One socket, on the first worker: sessions are few next to HTTP.
            let worker = self
                .workers
                .first()
                .cloned()
                .unwrap_or_else(Handle::current);
            let task = worker.spawn(async move {
                match tokio::net::UdpSocket::from_std(socket) {
                    Ok(socket) => {
                        crate::stream::serve_udp(shared, Arc::new(socket), port, stopped).await
                    }
                    Err(err) => warn!(port, error = %err, "cannot register UDP listener"),
                }
            });
            self.udp_sockets.insert(
                port,
                BoundSocket {
                    stop,
                    tasks: vec![task],
                },
            );
            info!(port, "listening (UDP)");
        }
        let removed_udp: Vec<u16> = self
            .udp_sockets
            .keys()
            .filter(|port| !wanted_udp.contains_key(port))
            .copied()
            .collect();
        for port in removed_udp {
            if let Some(socket) = self.udp_sockets.remove(&port) {
                let _ = socket.stop.send(true);
            }
        }
        self.shared
            .metrics
            .config_generation
            .store(document.generation, Ordering::Relaxed);
        self.shared.metrics.retain_requests();

        for (port, listeners) in new_sockets {
            let (stop, stopped) = watch::channel(false);
            let tasks = listeners
                .into_iter()
                .zip(&self.workers)
                .map(|(listener, worker)| {
                    let (shared, stopped, drain) =
                        (self.shared.clone(), stopped.clone(), self.drain.subscribe());
                    // The listener registers with the reactor of the runtime
                    // that converts it, so convert it on its worker.
                    worker.spawn(async move {
                        match TcpListener::from_std(listener) {
                            Ok(listener) => {
                                accept_loop(shared, listener, port, stopped, drain).await
                            }
                            Err(err) => warn!(port, error = %err, "cannot register listener"),
                        }
                    })
                })
                .collect();
            self.sockets.insert(port, BoundSocket { stop, tasks });
            info!(port, workers = self.workers.len(), "listening");
        }
        let removed: Vec<u16> = self
            .sockets
            .keys()
            .filter(|port| !wanted.contains_key(port))
            .copied()
            .collect();
        for port in removed {
            if let Some(socket) = self.sockets.remove(&port) {
                let _ = socket.stop.send(true);
                info!(port, "listener removed; draining its connections");
            }
        }
        Ok(report)
    }

    /// Stops accepting, asks every connection to finish (HTTP/1.1
    /// `Connection: close`, HTTP/2 GOAWAY) and waits up to `timeout`.
    pub async fn drain(&mut self, timeout: Duration) {
        let _ = self.drain.send(true);
        for (_, socket) in self.udp_sockets.drain() {
            let _ = socket.stop.send(true);
        }
        let tasks: Vec<JoinHandle<()>> = self
            .sockets
            .drain()
            .flat_map(|(_, socket)| {
                let _ = socket.stop.send(true);
                socket.tasks
            })
            .collect();
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(timeout, all).await.is_err() {
            warn!(
                ?timeout,
                "drain timeout reached with connections still open"
            );
        }
    }
}

fn bind(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Accepts until stopped, then waits for this socket's connections to end.
async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    port: u16,
    mut stopped: watch::Receiver<bool>,
    drain: watch::Receiver<bool>,
) {
    let (finish, finishing) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, client)) => {
                    let limit = shared.snapshot.load().document.config.settings.limits.max_connections;
                    let active = shared.metrics.active_connections.load(Ordering::Relaxed);
                    if limit.is_some_and(|limit| active >= i64::from(limit)) {
                        // Over the limit: close at once rather than queue.
                        shared.metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(
                        shared.clone(),
                        stream,
                        port,
                        client,
                        finishing.clone(),
                        drain.clone(),
                    ));
                }
                Err(err) => {
                    // Out of file descriptors and the like: back off briefly.
                    warn!(port, error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stopped.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = finish.send(true);
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    port: u16,
    client: SocketAddr,
    finishing: watch::Receiver<bool>,
    drain: watch::Receiver<bool>,
) {
    shared
        .metrics
        .connections_total
        .fetch_add(1, Ordering::Relaxed);
    shared
        .metrics
        .active_connections
        .fetch_add(1, Ordering::Relaxed);
    let listener = shared.snapshot.load().listeners.get(&port).cloned();
    match listener {
        Some(listener) if listener.mixed() => {
            if let crate::stream::Mixed::Terminate(stream) =
                crate::stream::split_mixed(&shared, &listener, stream).await
            {
                if listener.protocol == Protocol::Https {
                    serve_tls(&shared, stream, &listener, client, finishing, drain).await;
                } else {
                    crate::stream::serve_tls_stream(&shared, &listener, stream).await;
                }
            }
        }
        Some(listener) if listener.protocol == Protocol::Tcp => {
            crate::stream::serve_tcp(&shared, &listener, stream).await;
        }
        Some(listener) if listener.passthrough() => {
            crate::stream::serve_passthrough(&shared, &listener, stream).await;
        }
        Some(listener) if listener.protocol == Protocol::Tls => {
            crate::stream::serve_tls_stream(&shared, &listener, stream).await;
        }
        Some(listener) if listener.tls.is_some() => {
            serve_tls(&shared, stream, &listener, client, finishing, drain).await;
        }
        Some(_) => {
            let info = ConnectionInfo::new(port, client, false, None);
            serve_http(&shared, stream, info, finishing, drain).await;
        }
        None => debug!(port, "connection to a listener being removed"),
    }
    shared
        .metrics
        .active_connections
        .fetch_sub(1, Ordering::Relaxed);
}

async fn serve_tls<S>(
    shared: &Arc<Shared>,
    stream: S,
    listener: &ListenerRuntime,
    client: SocketAddr,
    finishing: watch::Receiver<bool>,
    drain: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug + 'static,
{
    let Some(tls) = &listener.tls else { return };
    let handshake = async {
        let ssl = Ssl::new(tls.context()).map_err(|e| e.to_string())?;
        tokio_boring::SslStreamBuilder::new(ssl, stream)
            .accept()
            .await
            .map_err(|e| e.to_string())
    };
    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            shared
                .metrics
                .tls_handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            debug!(%client, error = %err, "TLS handshake failed");
            return;
        }
        Err(_) => {
            shared
                .metrics
                .tls_handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let sni_source = stream
        .ssl()
        .servername(NameType::HOST_NAME)
        .map(str::to_ascii_lowercase)
        .and_then(|name| {
            listener
                .router
                .virtual_host(&name)
                .map(|v| v.source.clone())
        });
    let info = ConnectionInfo::new(listener.port, client, true, sni_source);
    serve_http(shared, stream, info, finishing, drain).await;
}

async fn serve_http<S>(
    shared: &Arc<Shared>,
    stream: S,
    mut info: ConnectionInfo,
    mut finishing: watch::Receiver<bool>,
    mut drain: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = shared
        .snapshot
        .load()
        .document
        .config
        .settings
        .limits
        .clone();
    if let Some(ms) = limits.request_body_timeout_ms {
        info.body_timeout = Duration::from_millis(ms);
    }
    let info = Arc::new(info);
    let service_shared = shared.clone();
    let service = service_fn(move |request| handle(service_shared.clone(), info.clone(), request));

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(
            limits
                .request_header_timeout_ms
                .map_or(DEFAULT_HEADER_TIMEOUT, Duration::from_millis),
        )
        .max_headers(
            limits
                .max_request_headers
                .map_or(DEFAULT_MAX_HEADERS, |n| n as usize),
        )
        .max_buf_size(
            limits
                .max_request_header_bytes
                .map_or(DEFAULT_MAX_HEADER_BYTES, |n| (n as usize).max(8192)),
        );
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(
            limits
                .max_request_header_bytes
                .map_or(DEFAULT_MAX_HEADER_BYTES as u32, |n| n),
        );
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    debug!(error = %err, "connection ended with an error");
                }
                break;
            }
            _ = finishing.changed(), if !shutting_down => {
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = drain.changed(), if !shutting_down => {
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
