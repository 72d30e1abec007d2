//! One line per request on standard output, as JSON or text.

use std::time::Duration;

use http::{Method, StatusCode, Uri, Version};
use proxy_config::AccessLog;

use super::connection::ConnectionInfo;
use crate::runtime::Rule;

/// What one access log line says.
pub(super) struct AccessEntry<'a> {
    pub connection: &'a ConnectionInfo,
    pub listener: &'a str,
    pub rule: Option<&'a Rule>,
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub version: Version,
    pub status: StatusCode,
    pub elapsed: Duration,
}

impl AccessEntry<'_> {
    /// Writes the line to standard output (line-buffered by std).
    pub fn write(&self, format: AccessLog) {
        use std::io::Write;
        let route = self.rule.map_or_else(String::new, |r| {
            format!("{}/{}/{}", r.route.namespace, r.route.name, r.route.rule)
        });
        let duration_ms = self.elapsed.as_secs_f64() * 1000.0;
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let line = match format {
            AccessLog::Json => serde_json::json!({
                "time": time,
                "client": self.connection.client.to_string(),
                "listener": self.listener,
                "method": self.method.as_str(),
                "authority": self.uri.authority().map(|a| a.as_str()),
                "path": self.uri.path(),
                "protocol": format!("{:?}", self.version),
                "status": self.status.as_u16(),
                "durationMs": duration_ms,
                "route": route,
            })
            .to_string(),
            AccessLog::Text | AccessLog::Off => format!(
                "{time:.3} {} {} \"{} {} {:?}\" {} {duration_ms:.3}ms {route}",
                self.connection.client,
                self.listener,
                self.method,
                self.uri.path(),
                self.version,
                self.status.as_u16()
            ),
        };
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}
