//! `portcullis-proxy`: serves one Gateway's compiled configuration.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use proxy::server::Server;
use proxy::source::{FileSource, SecretSource};
use proxy::status::{Outcome, PodRef, Reporter, Tracker};
use proxy::{Shared, admin};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

/// mimalloc: the request path allocates small, short-lived objects on
/// several threads, which glibc's allocator serves noticeably slower.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Portcullis proxy: serves one Gateway's compiled configuration"
)]
struct Args {
    /// Config document to serve (JSON, or gzip-compressed JSON); reloaded
    /// whenever it changes.
    #[arg(
        long,
        required_unless_present = "config_secret",
        conflicts_with = "config_secret"
    )]
    config: Option<PathBuf>,
    /// `NAMESPACE/NAME` of the config Secret to watch through the API
    /// server (Kubernetes mode; credentials from KUBECONFIG or in-cluster).
    #[arg(long, env = "PORTCULLIS_CONFIG_SECRET")]
    config_secret: Option<String>,
    /// `NAMESPACE/NAME` of the proxy's own Pod, whose condition
    /// `gateway.portcullis.io/ConfigApplied` reports the applied generation
    /// (Kubernetes mode only). Default: the downward API's `POD_NAMESPACE`
    /// and `POD_NAME`; with neither, nothing is reported.
    #[arg(long, env = "PORTCULLIS_POD")]
    pod: Option<String>,
    /// Check the config and exit: 0 when valid, 1 with every problem otherwise.
    #[arg(long)]
    check: bool,
    /// Address listeners bind to.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Address of the admin server (/healthz, /readyz, /metrics, /config).
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
    /// Threads serving traffic; default: one per CPU.
    #[arg(long, env = "PORTCULLIS_WORKER_THREADS")]
    worker_threads: Option<usize>,
    /// How often the config file is checked for changes, in milliseconds.
    #[arg(long, default_value_t = 200)]
    poll_ms: u64,
    /// Log level filter (tracing syntax), e.g. info or proxy=debug.
    #[arg(long, env = "PORTCULLIS_LOG", default_value = "info")]
    log_level: String,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Longest wait for open connections on SIGTERM, unless the config sets one.
    #[arg(long, default_value_t = 30_000)]
    drain_timeout_ms: u64,
    /// How long to keep accepting after SIGTERM, unless the config sets it.
    #[arg(long, default_value_t = 0)]
    min_drain_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args);
    if args.check {
        return check(&args);
    }
    let threads = args
        .worker_threads
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
        .max(1);
    let workers = match start_workers(threads) {
        Ok(workers) => workers,
        Err(err) => {
            error!(error = %err, "cannot start worker threads");
            return ExitCode::FAILURE;
        }
    };
    // The control side (config source, admin, signals) runs on its own
    // thread so that it never competes with traffic for a worker.
    let control = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            error!(error = %err, "cannot start the control runtime");
            return ExitCode::FAILURE;
        }
    };
    control.block_on(run(args, workers))
}

/// One single-threaded runtime per worker thread: connections stay on the
/// thread that accepted them, like nginx's and haproxy's workers.
fn start_workers(count: usize) -> std::io::Result<Vec<tokio::runtime::Handle>> {
    (0..count)
        .map(|index| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
            Ok(handle)
        })
        .collect()
}

/// Where config documents come from.
enum Source {
    File(FileSource),
    Secret(Box<SecretSource>),
}

impl Source {
    async fn next(&mut self) -> Result<proxy_config::ConfigDocument, proxy::Error> {
        match self {
            Source::File(file) => file.next().await,
            Source::Secret(secret) => secret.next().await,
        }
    }
}

fn init_logging(args: &Args) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn check(args: &Args) -> ExitCode {
    let Some(path) = &args.config else {
        eprintln!("--check reads a file: pass --config FILE");
        return ExitCode::FAILURE;
    };
    let result = std::fs::read(path)
        .map_err(|err| err.to_string())
        .and_then(|bytes| proxy_config::load(&bytes).map_err(|err| err.to_string()));
    match result {
        Ok(document) => {
            println!(
                "{}: valid, generation {}, {} listener(s)",
                path.display(),
                document.generation,
                document.config.listeners.len()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{}: {err}", path.display());
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, workers: Vec<tokio::runtime::Handle>) -> ExitCode {
    let shared = Shared::new();
    match admin::serve(shared.clone(), args.admin).await {
        Ok(address) => info!(%address, "admin server listening"),
        Err(err) => {
            error!(error = %err, "cannot start the admin server");
            return ExitCode::FAILURE;
        }
    }
    let (mut terminate, mut interrupt) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            error!("cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let mut server = Server::with_workers(shared.clone(), args.bind, workers);
    let mut reporter = None;
    let mut source = match (&args.config, &args.config_secret) {
        (Some(path), _) => {
            if args.pod.is_some() {
                warn!("--pod is ignored with --config: only Kubernetes mode reports to its Pod");
            }
            Source::File(FileSource::new(
                path.clone(),
                Duration::from_millis(args.poll_ms),
            ))
        }
        (None, Some(reference)) => {
            let Some((namespace, name)) = reference.split_once('/') else {
                error!(reference, "--config-secret takes NAMESPACE/NAME");
                return ExitCode::FAILURE;
            };
            let pod = match PodRef::resolve(args.pod.as_deref(), |key| std::env::var(key).ok()) {
                Ok(pod) => pod,
                Err(err) => {
                    error!(error = %err, "--pod takes NAMESPACE/NAME");
                    return ExitCode::FAILURE;
                }
            };
            let client = match kube::Client::try_default().await {
                Ok(client) => client,
                Err(err) => {
                    error!(error = %err, "no Kubernetes client configuration");
                    return ExitCode::FAILURE;
                }
            };
            match pod {
                Some(pod) => {
                    info!(%pod, "reporting to the Pod's condition");
                    reporter = Some(Reporter::start(client.clone(), pod));
                }
                None => warn!(
                    "no Pod to report to (--pod, or POD_NAMESPACE and POD_NAME); \
                     its readiness gate will never pass"
                ),
            }
            Source::Secret(Box::new(SecretSource::new(client, namespace, name)))
        }
        (None, None) => {
            error!("pass --config FILE or --config-secret NAMESPACE/NAME");
            return ExitCode::FAILURE;
        }
    };
    // Turns each outcome into the Pod condition; the reporter writes it in
    // the background, so this loop never waits for the API server.
    let mut tracker = Tracker::default();
    let mut publish = |outcome: Outcome<'_>| {
        if let (Some(reporter), Some(condition)) = (&reporter, tracker.observe(outcome)) {
            reporter.report(condition);
        }
    };
    loop {
        tokio::select! {
            next = source.next() => match next {
                Ok(document) => {
                    let generation = document.generation;
                    let started = std::time::Instant::now();
                    match server.apply(document).await {
                        Ok(report) => {
                            shared.configured.store(true, Ordering::Relaxed);
                            shared.metrics.reloads.fetch_add(1, Ordering::Relaxed);
                            for (listener, reason) in &report.failed_listeners {
                                warn!(listener, reason, "listener not serving");
                            }
                            let compile_ms = started.elapsed().as_secs_f64() * 1e3;
                            info!(generation, compile_ms, "config applied");
                            publish(Outcome::Applied(&report));
                        }
                        Err(err) => {
                            shared.metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
                            error!(generation, error = %err, "config refused; the previous one keeps serving");
                            publish(Outcome::Refused { generation: Some(generation), error: &err });
                        }
                    }
                }
                Err(err) => {
                    shared.metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
                    if shared.configured.load(Ordering::Relaxed) {
                        error!(generation = err.generation(), error = %err, "config refused; the previous one keeps serving");
                    } else {
                        error!(generation = err.generation(), error = %err, "no config to serve yet");
                    }
                    publish(Outcome::Refused { generation: None, error: &err });
                    tokio::time::sleep(Duration::from_millis(args.poll_ms)).await;
                }
            },
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }

    let settings = shared.snapshot.load().document.config.settings.clone();
    let min_drain = Duration::from_millis(settings.min_drain_ms.unwrap_or(args.min_drain_ms));
    let timeout = Duration::from_millis(settings.drain_timeout_ms.unwrap_or(args.drain_timeout_ms));
    shared.draining.store(true, Ordering::Relaxed);
    info!(?min_drain, ?timeout, "draining");
    tokio::time::sleep(min_drain).await;
    server.drain(timeout).await;
    info!("drained; exiting");
    ExitCode::SUCCESS
}
