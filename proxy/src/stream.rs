//! Layer 4: TLS passthrough by server name, TLS terminated to a byte
//! stream, plain TCP, and UDP sessions. Each connection (or UDP session)
//! picks its backend once, from the snapshot current when it started, and
//! keeps it across reloads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use boring::ssl::{NameType, Ssl};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Mutex, watch};
use tracing::{debug, info};

use crate::runtime::{EndpointState, ListenerRuntime, StreamRoute, Target};
use crate::shared::Shared;
use crate::sni::{self, Sni};

const CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A UDP session ends after this long without a datagram either way.
pub const UDP_SESSION_IDLE: Duration = Duration::from_secs(60);
/// At most this many UDP sessions per listener; datagrams opening more are dropped.
pub const UDP_MAX_SESSIONS: usize = 16_384;

/// Connects to an endpoint of the route's weighted pick.
async fn connect(
    shared: &Shared,
    route: &StreamRoute,
) -> Result<(TcpStream, Arc<EndpointState>), &'static str> {
    let target = route.pick().ok_or("no backend of positive weight")?;
    let backend = match &target.target {
        Target::Backend(backend) => backend,
        Target::Invalid(_) => return Err("the route's backend is invalid"),
    };
    let now = shared.now_ms();
    let endpoint = backend.pick(now).ok_or("no ready endpoint")?.clone();
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(endpoint.address)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            endpoint.succeeded();
            Ok((stream, endpoint))
        }
        _ => {
            endpoint.failed(now);
            shared
                .metrics
                .upstream_connect_failures
                .fetch_add(1, Ordering::Relaxed);
            Err("cannot connect to the backend")
        }
    }
}

/// Copies both ways until either side closes, then records the bytes.
async fn splice<C, B>(
    shared: &Shared,
    listener: &str,
    route: &StreamRoute,
    client: &mut C,
    backend: &mut B,
    started: Instant,
) where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let result = tokio::io::copy_bidirectional(client, backend).await;
    let (received, sent, reason) = match &result {
        Ok((up, down)) => (*up, *down, "closed"),
        Err(_) => (0, 0, "reset"),
    };
    shared
        .metrics
        .stream_bytes_received
        .fetch_add(received, Ordering::Relaxed);
    shared
        .metrics
        .stream_bytes_sent
        .fetch_add(sent, Ordering::Relaxed);
    let route_name = format!("{}/{}", route.route.namespace, route.route.name);
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    debug!(listener, route = %route_name, received, sent, duration_ms, reason, "stream ended");
    log_stream(
        shared,
        listener,
        &route_name,
        received,
        sent,
        duration_ms,
        reason,
    );
}

/// One access log line per TCP or TLS connection, when the config asks.
fn log_stream(
    shared: &Shared,
    listener: &str,
    route: &str,
    received: u64,
    sent: u64,
    duration_ms: f64,
    reason: &str,
) {
    use std::io::Write;
    let format = shared.snapshot.load().document.config.settings.access_log;
    let line = match format {
        proxy_config::AccessLog::Off => return,
        proxy_config::AccessLog::Json => serde_json::json!({
            "listener": listener,
            "route": route,
            "receivedBytes": received,
            "sentBytes": sent,
            "durationMs": duration_ms,
            "close": reason,
        })
        .to_string(),
        proxy_config::AccessLog::Text => {
            format!(
                "{listener} {route} received={received} sent={sent} {duration_ms:.3}ms {reason}"
            )
        }
    };
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Reads until the ClientHello is complete; returns the bytes read and
/// the server name, or why the connection should be closed.
async fn read_client_hello(
    client: &mut TcpStream,
) -> Result<(Vec<u8>, Option<String>), &'static str> {
    let mut hello = Vec::with_capacity(2048);
    let verdict = tokio::time::timeout(CLIENT_HELLO_TIMEOUT, async {
        let mut chunk = [0u8; 4096];
        loop {
            match sni::parse(&hello) {
                Sni::NeedMore if hello.len() < sni::MAX_CLIENT_HELLO => {}
                Sni::NeedMore => return Sni::Invalid("ClientHello too large"),
                verdict => return verdict,
            }
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => return Sni::Invalid("connection closed before the ClientHello"),
                Ok(read) => hello.extend_from_slice(&chunk[..read]),
            }
        }
    })
    .await
    .unwrap_or(Sni::Invalid("no ClientHello in time"));
    match verdict {
        Sni::Found(name) => Ok((hello, name)),
        Sni::Invalid(reason) => Err(reason),
        Sni::NeedMore => Err("incomplete ClientHello"),
    }
}

/// Replays the ClientHello to the route's backend and splices the rest.
async fn pass_through(
    shared: &Shared,
    listener: &ListenerRuntime,
    route: &StreamRoute,
    mut client: TcpStream,
    hello: &[u8],
    started: Instant,
) {
    let (mut backend, _endpoint) = match connect(shared, route).await {
        Ok(connected) => connected,
        Err(reason) => return refuse(shared, listener, reason),
    };
    if backend.write_all(hello).await.is_err() {
        return refuse(shared, listener, "backend closed");
    }
    shared
        .metrics
        .stream_connections
        .fetch_add(1, Ordering::Relaxed);
    splice(
        shared,
        &listener.name,
        route,
        &mut client,
        &mut backend,
        started,
    )
    .await;
}

/// TLS passthrough: route by the ClientHello's server name, then forward
/// the bytes, ClientHello included, untouched.
pub async fn serve_passthrough(shared: &Shared, listener: &ListenerRuntime, mut client: TcpStream) {
    let started = Instant::now();
    let (hello, name) = match read_client_hello(&mut client).await {
        Ok((hello, Some(name))) => (hello, name),
        Ok((_, None)) => return refuse(shared, listener, "no server name"),
        Err(reason) => return refuse(shared, listener, reason),
    };
    let Some(route) = listener.tls_routes.route(&name) else {
        return refuse(shared, listener, "no TLS route for the server name");
    };
    pass_through(shared, listener, route, client, &hello, started).await;
}

/// What a listener that both terminates and passes through should do with
/// a connection, decided by its server name.
#[derive(Debug)]
pub enum Mixed {
    /// Passed through: nothing left to do.
    Done,
    /// Terminate here: the stream replays the bytes already read.
    Terminate(Rewind<TcpStream>),
}

/// A terminating listener (HTTPS or TLS) with passthrough routes: names of
/// passthrough routes are spliced untouched, every other name terminated.
pub async fn split_mixed(
    shared: &Shared,
    listener: &ListenerRuntime,
    mut client: TcpStream,
) -> Mixed {
    let started = Instant::now();
    let (hello, name) = match read_client_hello(&mut client).await {
        Ok(read) => read,
        Err(reason) => {
            refuse(shared, listener, reason);
            return Mixed::Done;
        }
    };
    if let Some(route) = name
        .as_deref()
        .and_then(|name| listener.tls_routes.route(name))
        .filter(|route| route.passthrough)
    {
        pass_through(shared, listener, route, client, &hello, started).await;
        return Mixed::Done;
    }
    Mixed::Terminate(Rewind::new(hello, client))
}

pin_project_lite::pin_project! {
    /// A stream that first yields bytes already read from it.
    #[derive(Debug)]
    pub struct Rewind<S> {
        prefix: Vec<u8>,
        offset: usize,
        #[pin]
        inner: S,
    }
}

impl<S> Rewind<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            offset: 0,
            inner,
        }
    }
}

impl<S: AsyncRead> AsyncRead for Rewind<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.project();
        if *this.offset < this.prefix.len() {
            let rest = &this.prefix[*this.offset..];
            let count = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..count]);
            *this.offset += count;
            return std::task::Poll::Ready(Ok(()));
        }
        this.inner.poll_read(cx, buf)
    }
}

impl<S: AsyncWrite> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// TLS terminated here, the decrypted stream routed by server name.
pub async fn serve_tls_stream<S>(shared: &Shared, listener: &ListenerRuntime, client: S)
where
    S: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug,
{
    let started = Instant::now();
    let Some(tls) = &listener.tls else { return };
    let handshake = async {
        let ssl = Ssl::new(tls.context()).map_err(|e| e.to_string())?;
        tokio_boring::SslStreamBuilder::new(ssl, client)
            .accept()
            .await
            .map_err(|e| e.to_string())
    };
    let mut stream = match tokio::time::timeout(CLIENT_HELLO_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => stream,
        _ => {
            shared
                .metrics
                .tls_handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let name = stream
        .ssl()
        .servername(NameType::HOST_NAME)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let Some(route) = listener.tls_routes.route(&name) else {
        return refuse(shared, listener, "no TLS route for the server name");
    };
    forward(shared, listener, route, &mut stream, started).await;
    let _ = stream.shutdown().await;
}

/// Plain TCP to the listener's route.
pub async fn serve_tcp(shared: &Shared, listener: &ListenerRuntime, mut client: TcpStream) {
    let started = Instant::now();
    let Some(route) = &listener.stream else {
        return refuse(shared, listener, "no TCP route attached");
    };
    forward(shared, listener, route, &mut client, started).await;
}

/// Connects to the route's backend and splices the client to it.
async fn forward<C>(
    shared: &Shared,
    listener: &ListenerRuntime,
    route: &StreamRoute,
    client: &mut C,
    started: Instant,
) where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (mut backend, _endpoint) = match connect(shared, route).await {
        Ok(connected) => connected,
        Err(reason) => return refuse(shared, listener, reason),
    };
    shared
        .metrics
        .stream_connections
        .fetch_add(1, Ordering::Relaxed);
    splice(shared, &listener.name, route, client, &mut backend, started).await;
}

fn refuse(shared: &Shared, listener: &ListenerRuntime, reason: &str) {
    shared
        .metrics
        .stream_refused
        .fetch_add(1, Ordering::Relaxed);
    debug!(listener = %listener.name, reason, "connection closed");
}

/// One client's UDP session: its own socket towards the backend.
struct Session {
    upstream: Arc<UdpSocket>,
}

/// Serves a UDP listener socket until `stopped`: datagrams from a client
/// address form a session bound to one backend endpoint until idle.
pub async fn serve_udp(
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
    port: u16,
    mut stopped: watch::Receiver<bool>,
) {
    let sessions: Arc<Mutex<HashMap<SocketAddr, Session>>> = Arc::default();
    let mut buffer = vec![0u8; 65_535];
    loop {
        let (length, client) = tokio::select! {
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                Err(_) => continue,
            },
            _ = stopped.changed() => break,
        };
        let existing = sessions
            .lock()
            .await
            .get(&client)
            .map(|s| s.upstream.clone());
        let upstream = match existing {
            Some(upstream) => upstream,
            None => {
                let Some(upstream) = open_session(&shared, port, client, &socket, &sessions).await
                else {
                    shared
                        .metrics
                        .stream_refused
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                upstream
            }
        };
        let _ = upstream.send(&buffer[..length]).await;
        shared
            .metrics
            .stream_bytes_received
            .fetch_add(length as u64, Ordering::Relaxed);
    }
    info!(port, "UDP listener stopped");
}

async fn open_session(
    shared: &Arc<Shared>,
    port: u16,
    client: SocketAddr,
    socket: &Arc<UdpSocket>,
    sessions: &Arc<Mutex<HashMap<SocketAddr, Session>>>,
) -> Option<Arc<UdpSocket>> {
    if sessions.lock().await.len() >= UDP_MAX_SESSIONS {
        return None;
    }
    let listener = shared.snapshot.load().udp_listeners.get(&port).cloned()?;
    let route = listener.stream.as_ref()?;
    let backend = match &route.pick()?.target {
        Target::Backend(backend) => backend.clone(),
        Target::Invalid(_) => return None,
    };
    let endpoint = backend.pick(shared.now_ms())?.clone();
    let bind = if endpoint.address.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let upstream = Arc::new(UdpSocket::bind(bind).await.ok()?);
    upstream.connect(endpoint.address).await.ok()?;
    sessions.lock().await.insert(
        client,
        Session {
            upstream: upstream.clone(),
        },
    );
    shared
        .metrics
        .stream_connections
        .fetch_add(1, Ordering::Relaxed);
    let (reply_socket, reply_upstream, reply_sessions, shared) = (
        socket.clone(),
        upstream.clone(),
        sessions.clone(),
        shared.clone(),
    );
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 65_535];
        while let Ok(Ok(length)) =
            tokio::time::timeout(UDP_SESSION_IDLE, reply_upstream.recv(&mut buffer)).await
        {
            if reply_socket
                .send_to(&buffer[..length], client)
                .await
                .is_ok()
            {
                shared
                    .metrics
                    .stream_bytes_sent
                    .fetch_add(length as u64, Ordering::Relaxed);
            }
        }
        reply_sessions.lock().await.remove(&client);
    });
    Some(upstream)
}
