//! Prometheus metrics, lock-free on the request path.
//!
//! Counters live in the compiled config (one set per route rule and per
//! listener), looked up from a registry at compile time so that they survive
//! reloads. Cardinality is bounded by routes and listeners, never by paths or
//! clients.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Latency bucket upper bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Requests and latency of one (listener, route rule) pair.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    /// Requests by status class: 1xx..5xx.
    by_class: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS.len()],
    latency_micros_sum: AtomicU64,
}

impl RequestMetrics {
    pub fn record(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_micros_sum.fetch_add(micros, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        self.by_class
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// Labels of a request series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestLabels {
    pub listener: String,
    /// `namespace/name/rule`, or `none` for requests no route matched.
    pub route: String,
}

/// Process-wide metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<RequestLabels, Arc<RequestMetrics>>>,
    pub active_connections: AtomicI64,
    pub connections_total: AtomicU64,
    pub connections_refused: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub config_generation: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    pub upstream_connect_failures: AtomicU64,
    /// TCP, TLS passthrough and UDP sessions forwarded.
    pub stream_connections: AtomicU64,
    /// Stream connections closed without a backend (no route, no SNI, ...).
    pub stream_refused: AtomicU64,
    pub stream_bytes_received: AtomicU64,
    pub stream_bytes_sent: AtomicU64,
}

impl Metrics {
    /// The counters for a series, created once and shared by every config
    /// that has it.
    pub fn requests(&self, labels: RequestLabels) -> Arc<RequestMetrics> {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.entry(labels).or_default().clone()
    }

    /// Drops series no config refers to any more.
    pub fn retain_requests(&self) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.retain(|_, series| Arc::strong_count(series) > 1);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        gauge(
            &mut out,
            "portcullis_active_connections",
            "Open client connections.",
            "gauge",
            self.active_connections.load(Ordering::Relaxed).to_string(),
        );
        let counters = [
            (
                "portcullis_connections_total",
                "Accepted client connections.",
                &self.connections_total,
            ),
            (
                "portcullis_connections_refused_total",
                "Connections closed at once because maxConnections was reached.",
                &self.connections_refused,
            ),
            (
                "portcullis_tls_handshake_failures_total",
                "Failed TLS handshakes.",
                &self.tls_handshake_failures,
            ),
            (
                "portcullis_config_reloads_total",
                "Configs applied.",
                &self.reloads,
            ),
            (
                "portcullis_config_reload_failures_total",
                "Configs refused.",
                &self.reload_failures,
            ),
            (
                "portcullis_stream_connections_total",
                "TCP, TLS and UDP sessions forwarded to a backend.",
                &self.stream_connections,
            ),
            (
                "portcullis_stream_refused_total",
                "TCP, TLS and UDP sessions closed without a backend.",
                &self.stream_refused,
            ),
            (
                "portcullis_stream_received_bytes_total",
                "Bytes received from clients on TCP, TLS and UDP routes.",
                &self.stream_bytes_received,
            ),
            (
                "portcullis_stream_sent_bytes_total",
                "Bytes sent to clients on TCP, TLS and UDP routes.",
                &self.stream_bytes_sent,
            ),
            (
                "portcullis_upstream_connect_failures_total",
                "Failed connections to backends.",
                &self.upstream_connect_failures,
            ),
        ];
        for (name, help, value) in counters {
            gauge(
                &mut out,
                name,
                help,
                "counter",
                value.load(Ordering::Relaxed).to_string(),
            );
        }
        gauge(
            &mut out,
            "portcullis_config_generation",
            "Generation of the config being served.",
            "gauge",
            self.config_generation.load(Ordering::Relaxed).to_string(),
        );

        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str(
            "# HELP portcullis_requests_total HTTP requests by listener, route and status class.\n",
        );
        out.push_str("# TYPE portcullis_requests_total counter\n");
        for (labels, series) in requests.iter() {
            for (class, count) in series.by_class.iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    let _ = writeln!(
                        out,
                        "portcullis_requests_total{{listener=\"{}\",route=\"{}\",status=\"{}xx\"}} {count}",
                        escape(&labels.listener),
                        escape(&labels.route),
                        class + 1
                    );
                }
            }
        }
        out.push_str("# HELP portcullis_request_duration_seconds Time to the response headers.\n");
        out.push_str("# TYPE portcullis_request_duration_seconds histogram\n");
        for (labels, series) in requests.iter() {
            let total = series.total();
            if total == 0 {
                continue;
            }
            let label = format!(
                "listener=\"{}\",route=\"{}\"",
                escape(&labels.listener),
                escape(&labels.route)
            );
            let mut cumulative = 0;
            for (bound, bucket) in BUCKETS.iter().zip(&series.buckets) {
                cumulative += bucket.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "portcullis_request_duration_seconds_bucket{{{label},le=\"{bound}\"}} {cumulative}"
                );
            }
            let sum = series.latency_micros_sum.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "portcullis_request_duration_seconds_bucket{{{label},le=\"+Inf\"}} {total}\n\
                 portcullis_request_duration_seconds_sum{{{label}}} {sum}\n\
                 portcullis_request_duration_seconds_count{{{label}}} {total}"
            );
        }
        out
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let metrics = Metrics::default();
        let series = metrics.requests(RequestLabels {
            listener: "http".into(),
            route: "apps/web/0".into(),
        });
        series.record(200, Duration::from_millis(3));
        series.record(503, Duration::from_millis(30));
        let text = metrics.render();
        assert!(text.contains(
            "portcullis_requests_total{listener=\"http\",route=\"apps/web/0\",status=\"2xx\"} 1"
        ));
        assert!(text.contains("status=\"5xx\"} 1"));
        assert!(text.contains("le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 2\n"));
        drop(series);
        metrics.retain_requests();
        assert!(!metrics.render().contains("apps/web/0"));
    }
}
