//! Session persistence (GEP-1619): the proxy hands the client a token that
//! names the endpoint that answered, in a cookie or a header, and sends the
//! requests carrying it back to that endpoint while the session lives and
//! the endpoint serves.
//!
//! The token is `{endpoint:016x}.{started}.{last}`: an opaque id of the
//! endpoint (a hash of its backend and address, so it reveals no address and
//! means the same thing on every replica and across config generations) and
//! the session's start and last use in Unix seconds, which carry the
//! absolute and idle timeouts without any state in the proxy. A client that
//! edits its token can only choose among the rule's own endpoints, which the
//! balancer could have given it anyway.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use proxy_config::{SessionCarrier, SessionPersistence};

/// A token's timestamps may run this far ahead of this replica's clock
/// (another replica issued it) before the token counts as forged.
const CLOCK_SKEW_S: u64 = 60;

/// A rule's session persistence, ready to serve: how its tokens are read
/// and written. Which endpoint a token names is the runtime's business.
#[derive(Debug)]
pub struct SessionRuntime {
    config: SessionPersistence,
    /// The request header that carries the token (`Cookie` for cookies).
    request_header: HeaderName,
    /// The response header that hands it out (`Set-Cookie` for cookies).
    response_header: HeaderName,
}

/// A session token as carried or issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub endpoint: u64,
    pub started_s: u64,
    pub last_s: u64,
}

impl Token {
    pub fn encode(&self) -> String {
        format!("{:016x}.{}.{}", self.endpoint, self.started_s, self.last_s)
    }

    pub fn parse(text: &str) -> Option<Token> {
        let mut parts = text.split('.');
        let endpoint = parts.next().filter(|id| id.len() == 16)?;
        let endpoint = u64::from_str_radix(endpoint, 16).ok()?;
        let started_s = parts.next()?.parse().ok()?;
        let last_s = parts.next()?.parse().ok()?;
        if parts.next().is_some() || last_s < started_s {
            return None;
        }
        Some(Token {
            endpoint,
            started_s,
            last_s,
        })
    }
}

/// The endpoint's id in tokens: FNV-1a over its backend and address.
pub fn endpoint_id(backend: &str, address: SocketAddr) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let address = address.to_string();
    for byte in backend
        .bytes()
        .chain(std::iter::once(0))
        .chain(address.bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Seconds since the Unix epoch: tokens travel between replicas, so they
/// carry wall-clock time.
pub fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

impl SessionRuntime {
    /// Compiles `config`; fails on a name that validation should have
    /// refused.
    pub fn new(config: &SessionPersistence) -> Result<Self, String> {
        let name = HeaderName::from_bytes(config.name.as_bytes())
            .map_err(|err| format!("session name {:?}: {err}", config.name))?;
        let (request_header, response_header) = match config.carrier {
            SessionCarrier::Cookie => (header::COOKIE, header::SET_COOKIE),
            SessionCarrier::Header => (name.clone(), name),
        };
        Ok(SessionRuntime {
            config: config.clone(),
            request_header,
            response_header,
        })
    }

    /// The live token the request carries, if any.
    pub fn carried(&self, headers: &HeaderMap, now_s: u64) -> Option<Token> {
        let text = match self.config.carrier {
            SessionCarrier::Header => headers
                .get(&self.request_header)
                .and_then(|value| value.to_str().ok())
                .map(str::trim),
            // HTTP/2 may split cookies over several headers.
            SessionCarrier::Cookie => headers
                .get_all(&self.request_header)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|cookies| cookies.split(';'))
                .find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    (name == self.config.name).then(|| value.trim_matches('"'))
                }),
        }?;
        Token::parse(text).filter(|token| self.live(token, now_s))
    }

    fn live(&self, token: &Token, now_s: u64) -> bool {
        let skewed_now = now_s.saturating_add(CLOCK_SKEW_S);
        token.last_s <= skewed_now
            && self
                .config
                .absolute_timeout_s
                .is_none_or(|limit| now_s.saturating_sub(token.started_s) < limit)
            && self
                .config
                .idle_timeout_s
                .is_none_or(|limit| now_s.saturating_sub(token.last_s) < limit)
    }

    /// The header that continues the session on the endpoint `served_by` of
    /// `backend`: the carried session when that endpoint served it, else a
    /// new one. `secure` marks the cookie for HTTPS only. `SameSite=Lax`, not
    /// the GEP's suggested `Strict`: a visitor arriving from a link to the
    /// site would otherwise lose their session on that first request.
    pub fn issue(
        &self,
        carried: Option<Token>,
        backend: &str,
        served_by: SocketAddr,
        now_s: u64,
        secure: bool,
    ) -> Option<(HeaderName, HeaderValue)> {
        let endpoint = endpoint_id(backend, served_by);
        let started_s = carried
            .filter(|token| token.endpoint == endpoint)
            .map_or(now_s, |token| token.started_s.min(now_s));
        let token = Token {
            endpoint,
            started_s,
            last_s: now_s.max(started_s),
        }
        .encode();
        let value = match self.config.carrier {
            SessionCarrier::Header => token,
            SessionCarrier::Cookie => {
                let mut cookie = format!("{}={token}", self.config.name);
                if let Some(path) = &self.config.path {
                    cookie.push_str(&format!("; Path={path}"));
                }
                cookie.push_str("; HttpOnly; SameSite=Lax");
                if secure {
                    cookie.push_str("; Secure");
                }
                if self.config.permanent
                    && let Some(limit) = self.config.absolute_timeout_s
                {
                    let left = limit.saturating_sub(now_s.saturating_sub(started_s));
                    cookie.push_str(&format!("; Max-Age={left}"));
                }
                cookie
            }
        };
        let value = HeaderValue::from_str(&value).ok()?;
        Some((self.response_header.clone(), value))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn session(carrier: SessionCarrier) -> SessionPersistence {
        SessionPersistence {
            name: "cart".into(),
            carrier,
            absolute_timeout_s: Some(3_600),
            idle_timeout_s: Some(600),
            permanent: true,
            path: Some("/shop".into()),
        }
    }

    fn runtime(config: SessionPersistence) -> SessionRuntime {
        SessionRuntime::new(&config).expect("valid name")
    }

    fn address() -> SocketAddr {
        "198.18.0.7:8080".parse().expect("address")
    }

    #[test]
    fn a_cookie_session_is_issued_then_continued_on_the_same_endpoint() {
        let sessions = runtime(session(SessionCarrier::Cookie));
        let (name, value) = sessions
            .issue(None, "apps/web:80", address(), 1_000, true)
            .expect("issued");
        assert_eq!(name, header::SET_COOKIE);
        let id = endpoint_id("apps/web:80", address());
        assert_eq!(
            value.to_str().ok(),
            Some(
                format!(
                    "cart={id:016x}.1000.1000; Path=/shop; HttpOnly; SameSite=Lax; Secure; Max-Age=3600"
                )
                    .as_str()
            )
        );

        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("theme=dark; cart={id:016x}.1000.1000"))
                .expect("cookie"),
        );
        let carried = sessions.carried(&headers, 1_500).expect("live");
        let (_, value) = sessions
            .issue(Some(carried), "apps/web:80", address(), 1_500, false)
            .expect("continued");
        assert_eq!(
            value.to_str().ok(),
            Some(
                format!(
                    "cart={id:016x}.1000.1500; Path=/shop; HttpOnly; SameSite=Lax; Max-Age=3100"
                )
                .as_str()
            ),
            "the start is kept, the last use moves, and Max-Age counts down"
        );
    }

    #[test]
    fn a_service_wide_session_cookie_leaves_the_path_to_the_browser() {
        let sessions = runtime(SessionPersistence {
            path: None,
            permanent: false,
            ..session(SessionCarrier::Cookie)
        });
        let (_, value) = sessions
            .issue(None, "apps/web:80", address(), 1_000, false)
            .expect("issued");
        let id = endpoint_id("apps/web:80", address());
        assert_eq!(
            value.to_str().ok(),
            Some(format!("cart={id:016x}.1000.1000; HttpOnly; SameSite=Lax").as_str())
        );
    }

    #[test]
    fn another_endpoint_starts_a_new_session() {
        let sessions = runtime(session(SessionCarrier::Header));
        let old = Token {
            endpoint: endpoint_id("apps/web:80", address()),
            started_s: 100,
            last_s: 200,
        };
        let other: SocketAddr = "198.18.0.8:8080".parse().expect("address");
        let (name, value) = sessions
            .issue(Some(old), "apps/web:80", other, 300, false)
            .expect("issued");
        assert_eq!(name.as_str(), "cart");
        let token = Token::parse(value.to_str().expect("ascii")).expect("token");
        assert_eq!(token.endpoint, endpoint_id("apps/web:80", other));
        assert_eq!((token.started_s, token.last_s), (300, 300));
    }

    #[test]
    fn sessions_end_at_their_absolute_and_idle_timeouts() {
        let sessions = runtime(session(SessionCarrier::Header));
        let token = |started_s, last_s| Token {
            endpoint: 7,
            started_s,
            last_s,
        };
        let cases = [
            (token(1_000, 1_000), 1_599, true),
            (token(1_000, 1_000), 1_600, false), // idle 600 s
            (token(1_000, 4_000), 4_600, false), // absolute 3600 s
            (token(1_000, 4_000), 4_500, true),
            (token(1_000, 1_050), 1_000, true), // another replica's clock, slightly ahead
            (token(1_000, 2_000), 1_000, false), // far in the future: forged
        ];
        for (token, now_s, live) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(
                "cart",
                HeaderValue::from_str(&token.encode()).expect("value"),
            );
            assert_eq!(
                sessions.carried(&headers, now_s).is_some(),
                live,
                "{token:?} at {now_s}"
            );
        }
    }

    #[test]
    fn session_cookies_without_lifetime_have_no_max_age() {
        let mut config = session(SessionCarrier::Cookie);
        config.permanent = false;
        config.absolute_timeout_s = None;
        let (_, value) = runtime(config)
            .issue(None, "b", address(), 5, false)
            .expect("issued");
        assert!(
            !value.to_str().expect("ascii").contains("Max-Age"),
            "{value:?}"
        );
    }

    #[test]
    fn malformed_tokens_are_ignored() {
        for text in [
            "",
            "zz",
            "0123456789abcdef",
            "0123456789abcdef.1",
            "0123456789abcdef.2.1",
            "0123456789abcdef.1.2.3",
            "123.1.2",
            "0123456789abcdeg.1.2",
        ] {
            assert_eq!(Token::parse(text), None, "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn tokens_round_trip(endpoint: u64, started_s in 0u64..1 << 40, idle in 0u64..1 << 20) {
            let token = Token { endpoint, started_s, last_s: started_s + idle };
            prop_assert_eq!(Token::parse(&token.encode()), Some(token));
        }

        #[test]
        fn the_cookie_is_found_among_others(before in "[a-z]{1,8}=[a-z0-9]{0,8}", after in "[a-z]{1,8}=[a-z0-9]{0,8}") {
            prop_assume!(!before.starts_with("cart=") && !after.starts_with("cart="));
            let sessions = runtime(session(SessionCarrier::Cookie));
            let token = Token { endpoint: 42, started_s: 10, last_s: 10 };
            let mut headers = HeaderMap::new();
            headers.append(header::COOKIE, HeaderValue::from_str(&before).expect("cookie"));
            headers.append(
                header::COOKIE,
                HeaderValue::from_str(&format!("{after}; cart={}", token.encode())).expect("cookie"),
            );
            prop_assert_eq!(sessions.carried(&headers, 20), Some(token));
        }
    }
}
