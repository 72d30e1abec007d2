//! Picks what serves a request: host, then the first match in precedence
//! order. Pure and allocation-free per request; built once per config.
//!
//! Precedence between rules and routes is the operator's job (it emits the
//! matches already sorted), so here the first match that fits wins.

use std::collections::HashMap;

use http::{HeaderMap, HeaderName, Method};
use proxy_config::{HttpMatch, PathMatch, ValueMatch, ValueMatchKind, WildcardDepth};
use regex::Regex;

use crate::error::Error;

/// Host name lookup: exact names first, then the longest matching wildcard,
/// then the catch-all. Shared by HTTP virtual hosts, TLS routes and
/// certificates chosen by SNI.
#[derive(Debug, Default, Clone)]
pub struct HostTable {
    exact: HashMap<String, usize>,
    /// (suffix with its leading dot, depth, entry), longest suffix first.
    wildcards: Vec<(String, WildcardDepth, usize)>,
    catch_all: Option<usize>,
}

impl HostTable {
    /// Adds the names of entry `index`; empty names mean "any host". Earlier
    /// entries win ties.
    pub fn insert(&mut self, index: usize, hostnames: &[String], depth: WildcardDepth) {
        if hostnames.is_empty() {
            self.catch_all.get_or_insert(index);
        }
        for name in hostnames {
            if let Some(suffix) = name.strip_prefix('*') {
                if !self
                    .wildcards
                    .iter()
                    .any(|(s, d, _)| s == suffix && *d == depth)
                {
                    self.wildcards.push((suffix.to_owned(), depth, index));
                }
            } else {
                self.exact.entry(name.clone()).or_insert(index);
            }
        }
        // Stable sort keeps insertion order among equal lengths.
        self.wildcards
            .sort_by_key(|(suffix, _, _)| std::cmp::Reverse(suffix.len()));
    }

    /// The entry serving `host` (lower-case, without port).
    pub fn lookup(&self, host: &str) -> Option<usize> {
        if let Some(&index) = self.exact.get(host) {
            return Some(index);
        }
        for (suffix, depth, index) in &self.wildcards {
            if let Some(label) = host.strip_suffix(suffix.as_str()) {
                let fits = match depth {
                    WildcardDepth::AnyLabels => !label.is_empty(),
                    WildcardDepth::OneLabel => !label.is_empty() && !label.contains('.'),
                };
                if fits {
                    return Some(*index);
                }
            }
        }
        self.catch_all
    }
}

/// Normalizes an authority or Host header to a lookup key: lower case, no
/// port, no trailing dot. Returns None for an empty host.
pub fn host_key(authority: &str) -> Option<String> {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        // IPv6 literal: keep the brackets' content.
        rest.split(']').next().unwrap_or(rest)
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(host, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    host
                } else {
                    authority
                }
            })
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        None
    } else {
        // One allocation, lower-cased on the way.
        Some(host.to_ascii_lowercase())
    }
}

/// How a path is matched, compiled.
#[derive(Debug, Clone)]
enum PathMatcher {
    Any,
    Exact(String),
    /// Without trailing slash; empty for `/`.
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
enum ValueMatcher {
    Exact(String),
    Regex(Regex),
}

impl ValueMatcher {
    fn compile(value: &ValueMatch) -> Result<Self, Error> {
        Ok(match value.kind {
            ValueMatchKind::Exact => ValueMatcher::Exact(value.value.clone()),
            ValueMatchKind::RegularExpression => ValueMatcher::Regex(compile_regex(&value.value)?),
        })
    }

    fn matches(&self, value: &[u8]) -> bool {
        match self {
            ValueMatcher::Exact(expected) => expected.as_bytes() == value,
            ValueMatcher::Regex(regex) => {
                std::str::from_utf8(value).is_ok_and(|v| regex.is_match(v))
            }
        }
    }
}

fn compile_regex(pattern: &str) -> Result<Regex, Error> {
    proxy_config::anchored_regex(pattern)
        .map_err(|err| Error::Config(format!("regular expression {pattern:?}: {err}")))
}

/// One compiled match.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub rule: usize,
    path: PathMatcher,
    method: Option<Method>,
    headers: Vec<(HeaderName, ValueMatcher)>,
    query: Vec<(String, ValueMatcher)>,
}

impl Matcher {
    pub fn compile(rule: usize, spec: &HttpMatch) -> Result<Self, Error> {
        let path = match &spec.path {
            None => PathMatcher::Any,
            Some(PathMatch::Exact(value)) => PathMatcher::Exact(value.clone()),
            Some(PathMatch::PathPrefix(value)) => {
                PathMatcher::Prefix(value.trim_end_matches('/').to_owned())
            }
            Some(PathMatch::RegularExpression(pattern)) => {
                PathMatcher::Regex(compile_regex(pattern)?)
            }
        };
        let method = spec
            .method
            .as_deref()
            .map(|m| {
                Method::from_bytes(m.as_bytes())
                    .map_err(|err| Error::Config(format!("method {m:?}: {err}")))
            })
            .transpose()?;
        let headers = spec
            .headers
            .iter()
            .map(|h| {
                let name = HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|err| Error::Config(format!("header name {:?}: {err}", h.name)))?;
                Ok((name, ValueMatcher::compile(h)?))
            })
            .collect::<Result<_, Error>>()?;
        let query = spec
            .query_params
            .iter()
            .map(|q| Ok((q.name.clone(), ValueMatcher::compile(q)?)))
            .collect::<Result<_, Error>>()?;
        Ok(Self {
            rule,
            path,
            method,
            headers,
            query,
        })
    }

    /// The normalized prefix this matcher matched on, for `ReplacePrefixMatch`.
    pub fn matched_prefix(&self) -> Option<&str> {
        match &self.path {
            PathMatcher::Prefix(prefix) => Some(prefix),
            _ => None,
        }
    }

    fn matches(&self, request: &RequestView<'_>) -> bool {
        let path_ok = match &self.path {
            PathMatcher::Any => true,
            PathMatcher::Exact(expected) => request.path == expected,
            PathMatcher::Prefix(prefix) => prefix_matches(prefix, request.path),
            PathMatcher::Regex(regex) => regex.is_match(request.path),
        };
        path_ok
            && self.method.as_ref().is_none_or(|m| m == request.method)
            && self.headers.iter().all(|(name, matcher)| {
                request
                    .headers
                    .get_all(name)
                    .iter()
                    .any(|value| matcher.matches(value.as_bytes()))
            })
            && self.query.iter().all(|(name, matcher)| {
                query_value(request.query, name)
                    .is_some_and(|value| matcher.matches(value.as_bytes()))
            })
    }
}

/// Segment-wise prefix: `/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The first value of query parameter `name`, percent-decoded.
fn query_value<'q>(query: Option<&'q str>, name: &str) -> Option<std::borrow::Cow<'q, str>> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

/// Decodes `%XX` escapes and `+` as space; invalid escapes stay as written.
pub fn percent_decode(input: &str) -> std::borrow::Cow<'_, str> {
    if !input.bytes().any(|b| b == b'%' || b == b'+') {
        return std::borrow::Cow::Borrowed(input);
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// What the router needs to know of a request.
#[derive(Debug)]
pub struct RequestView<'a> {
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
}

/// A virtual host with its rules (of whatever the runtime makes of them).
#[derive(Debug)]
pub struct VirtualHost<R> {
    pub source: String,
    pub rules: Vec<R>,
    matches: Vec<Matcher>,
    /// Present for long match lists, so that lookup cost does not grow
    /// with the number of routes.
    index: Option<PathIndex>,
}

/// Below this many matches a linear scan beats hashing path prefixes.
const INDEX_ABOVE: usize = 16;

impl<R> VirtualHost<R> {
    pub fn new(source: String, rules: Vec<R>, matches: Vec<Matcher>) -> Self {
        let index = (matches.len() > INDEX_ABOVE).then(|| PathIndex::build(&matches));
        Self {
            source,
            rules,
            matches,
            index,
        }
    }

    /// The first match that fits, with its rule.
    pub fn find(&self, request: &RequestView<'_>) -> Option<(&Matcher, &R)> {
        let found = match &self.index {
            None => self.matches.iter().find(|m| m.matches(request)),
            Some(index) => index
                .first_fitting(request.path, |position| {
                    self.matches[position].matches(request)
                })
                .map(|position| &self.matches[position]),
        };
        found.and_then(|matcher| self.rules.get(matcher.rule).map(|rule| (matcher, rule)))
    }
}

/// Candidate matches by path: exact paths and path prefixes in hash maps,
/// everything else (regular expressions, no path condition) in one list.
/// Each list holds positions in precedence order; a lookup merges the few
/// lists a path can hit and checks candidates in global order.
#[derive(Debug, Default)]
struct PathIndex {
    exact: HashMap<String, Vec<usize>>,
    prefix: HashMap<String, Vec<usize>>,
    always: Vec<usize>,
}

impl PathIndex {
    fn build(matches: &[Matcher]) -> Self {
        let mut index = PathIndex::default();
        for (position, matcher) in matches.iter().enumerate() {
            match &matcher.path {
                PathMatcher::Exact(path) => {
                    index.exact.entry(path.clone()).or_default().push(position)
                }
                PathMatcher::Prefix(prefix) => index
                    .prefix
                    .entry(prefix.clone())
                    .or_default()
                    .push(position),
                PathMatcher::Any | PathMatcher::Regex(_) => index.always.push(position),
            }
        }
        index
    }

    /// The lowest position among the candidates for `path` that `fits`.
    fn first_fitting(&self, path: &str, mut fits: impl FnMut(usize) -> bool) -> Option<usize> {
        // Lists that can match: exact, every segment-aligned prefix, always.
        let mut lists: Vec<&[usize]> = Vec::with_capacity(8);
        if let Some(list) = self.exact.get(path) {
            lists.push(list);
        }
        let bytes = path.as_bytes();
        for (end, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b'/') {
            if let Some(list) = self.prefix.get(&path[..end]) {
                lists.push(list);
            }
        }
        if !path.ends_with('/')
            && let Some(list) = self.prefix.get(path)
        {
            lists.push(list);
        }
        lists.push(&self.always);
        // k-way merge in precedence order.
        let mut heads = vec![0usize; lists.len()];
        loop {
            let (list, position) = lists
                .iter()
                .enumerate()
                .filter_map(|(list, entries)| entries.get(heads[list]).map(|&p| (list, p)))
                .min_by_key(|&(_, position)| position)?;
            if fits(position) {
                return Some(position);
            }
            heads[list] += 1;
        }
    }
}

/// All virtual hosts of a listener.
#[derive(Debug)]
pub struct HttpRouter<R> {
    pub hosts: HostTable,
    pub virtual_hosts: Vec<VirtualHost<R>>,
}

impl<R> HttpRouter<R> {
    /// Compiles the listener's virtual hosts; `rule` turns each config rule
    /// into the runtime's representation.
    pub fn compile<F>(specs: &[proxy_config::VirtualHost], mut rule: F) -> Result<Self, Error>
    where
        F: FnMut(&proxy_config::HttpRule) -> Result<R, Error>,
    {
        let mut hosts = HostTable::default();
        let mut virtual_hosts = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            hosts.insert(index, &spec.hostnames, spec.wildcard_depth);
            let rules = spec
                .rules
                .iter()
                .map(&mut rule)
                .collect::<Result<Vec<_>, _>>()?;
            let matches = spec
                .matches
                .iter()
                .map(|m| Matcher::compile(m.rule as usize, &m.matcher))
                .collect::<Result<Vec<_>, _>>()?;
            virtual_hosts.push(VirtualHost::new(spec.source.clone(), rules, matches));
        }
        Ok(Self {
            hosts,
            virtual_hosts,
        })
    }

    /// The virtual host serving `host` (a [`host_key`]).
    pub fn virtual_host(&self, host: &str) -> Option<&VirtualHost<R>> {
        self.hosts
            .lookup(host)
            .and_then(|index| self.virtual_hosts.get(index))
    }
}

#[cfg(test)]
mod tests;
