use http::{HeaderMap, HeaderValue, Method};
use proptest::prelude::*;
use proxy_config::{
    HttpMatch, OrderedMatch, PathMatch, RouteRef, ValueMatch, ValueMatchKind, WildcardDepth,
};

use super::*;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn host_lookup_prefers_exact_then_longest_wildcard_then_catch_all() {
    let mut table = HostTable::default();
    table.insert(0, &names(&["*.example.com"]), WildcardDepth::AnyLabels);
    table.insert(1, &names(&["*.foo.example.com"]), WildcardDepth::AnyLabels);
    table.insert(
        2,
        &names(&["bar.foo.example.com"]),
        WildcardDepth::AnyLabels,
    );
    table.insert(3, &[], WildcardDepth::AnyLabels);
    table.insert(4, &names(&["*.one.test"]), WildcardDepth::OneLabel);
    let cases = [
        ("bar.foo.example.com", Some(2)),
        ("baz.foo.example.com", Some(1)),
        ("a.b.foo.example.com", Some(1)),
        ("x.example.com", Some(0)),
        ("example.com", Some(3)),
        ("foo.example.com", Some(0)),
        ("a.one.test", Some(4)),
        ("a.b.one.test", Some(3)),
        ("one.test", Some(3)),
        ("other.org", Some(3)),
    ];
    for (host, expected) in cases {
        assert_eq!(table.lookup(host), expected, "{host}");
    }
    let mut without_catch_all = HostTable::default();
    without_catch_all.insert(0, &names(&["a.test"]), WildcardDepth::AnyLabels);
    assert_eq!(without_catch_all.lookup("b.test"), None);
}

#[test]
fn host_keys_drop_port_case_and_trailing_dot() {
    let cases = [
        ("Example.COM:8080", Some("example.com")),
        ("example.com.", Some("example.com")),
        ("[::1]:443", Some("::1")),
        ("198.18.0.1", Some("198.18.0.1")),
        ("", None),
        (":80", None),
    ];
    for (authority, expected) in cases {
        assert_eq!(host_key(authority).as_deref(), expected, "{authority:?}");
    }
}

fn matcher(spec: HttpMatch) -> Matcher {
    Matcher::compile(0, &spec).expect("compiles")
}

fn request<'a>(
    path: &'a str,
    query: Option<&'a str>,
    method: &'a Method,
    headers: &'a HeaderMap,
) -> RequestView<'a> {
    RequestView {
        path,
        query,
        method,
        headers,
    }
}

#[test]
fn path_matches_follow_the_spec() {
    let get = Method::GET;
    let headers = HeaderMap::new();
    let cases: &[(PathMatch, &str, bool)] = &[
        (PathMatch::Exact("/foo".into()), "/foo", true),
        (PathMatch::Exact("/foo".into()), "/foo/", false),
        (PathMatch::Exact("/foo".into()), "/FOO", false),
        (PathMatch::PathPrefix("/".into()), "/anything", true),
        (PathMatch::PathPrefix("/foo".into()), "/foo", true),
        (PathMatch::PathPrefix("/foo".into()), "/foo/", true),
        (PathMatch::PathPrefix("/foo".into()), "/foo/bar", true),
        (PathMatch::PathPrefix("/foo".into()), "/foobar", false),
        (PathMatch::PathPrefix("/foo/".into()), "/foo", true),
        (PathMatch::PathPrefix("/foo/".into()), "/foo/bar", true),
        (PathMatch::PathPrefix("/foo/".into()), "/foobar", false),
        (
            PathMatch::RegularExpression("/v[0-9]+/.*".into()),
            "/v2/users",
            true,
        ),
        (
            PathMatch::RegularExpression("/v[0-9]+".into()),
            "/v2/users",
            false,
        ),
    ];
    for (spec, path, expected) in cases {
        let m = matcher(HttpMatch {
            path: Some(spec.clone()),
            ..HttpMatch::default()
        });
        assert_eq!(
            m.matches(&request(path, None, &get, &headers)),
            *expected,
            "{spec:?} vs {path}"
        );
    }
}

#[test]
fn headers_query_and_method_must_all_match() {
    let m = matcher(HttpMatch {
        path: None,
        method: Some("POST".into()),
        headers: vec![
            ValueMatch {
                name: "X-Version".into(),
                kind: ValueMatchKind::Exact,
                value: "v2".into(),
            },
            ValueMatch {
                name: "x-user".into(),
                kind: ValueMatchKind::RegularExpression,
                value: "[a-z]+".into(),
            },
        ],
        query_params: vec![ValueMatch {
            name: "debug".into(),
            kind: ValueMatchKind::Exact,
            value: "on now".into(),
        }],
    });
    let mut headers = HeaderMap::new();
    headers.insert("x-version", HeaderValue::from_static("v2"));
    headers.insert("x-user", HeaderValue::from_static("alice"));
    let post = Method::POST;
    assert!(m.matches(&request("/", Some("a=1&debug=on%20now"), &post, &headers)));
    assert!(m.matches(&request("/", Some("debug=on+now"), &post, &headers)));
    assert!(!m.matches(&request("/", Some("debug=off"), &post, &headers)));
    assert!(!m.matches(&request("/", None, &post, &headers)));
    assert!(!m.matches(&request(
        "/",
        Some("debug=on%20now"),
        &Method::GET,
        &headers
    )));
    headers.insert("x-user", HeaderValue::from_static("Alice"));
    assert!(
        !m.matches(&request("/", Some("debug=on%20now"), &post, &headers)),
        "regex is anchored and case-sensitive"
    );
    headers.insert("x-user", HeaderValue::from_static("alice"));
    headers.insert("x-version", HeaderValue::from_static("V2"));
    assert!(
        !m.matches(&request("/", Some("debug=on%20now"), &post, &headers)),
        "header values are case-sensitive"
    );
}

fn rule_ref(rule: u32) -> RouteRef {
    RouteRef {
        kind: "HTTPRoute".into(),
        namespace: "ns".into(),
        name: "r".into(),
        rule,
    }
}

fn host(
    hostnames: &[&str],
    ordered: Vec<(u32, HttpMatch)>,
    rules: u32,
) -> proxy_config::VirtualHost {
    proxy_config::VirtualHost {
        source: "http".into(),
        hostnames: names(hostnames),
        wildcard_depth: WildcardDepth::AnyLabels,
        rules: (0..rules)
            .map(|rule| proxy_config::HttpRule {
                route: rule_ref(rule),
                filters: vec![],
                backends: vec![],
                timeouts: None,
                retry: None,
                session_persistence: None,
            })
            .collect(),
        matches: ordered
            .into_iter()
            .map(|(rule, matcher)| OrderedMatch { rule, matcher })
            .collect(),
    }
}

fn prefix(path: &str) -> HttpMatch {
    HttpMatch {
        path: Some(PathMatch::PathPrefix(path.into())),
        ..HttpMatch::default()
    }
}

#[test]
fn first_match_in_the_given_order_wins() {
    let exact = HttpMatch {
        path: Some(PathMatch::Exact("/api/health".into())),
        ..HttpMatch::default()
    };
    let router = HttpRouter::compile(
        &[host(
            &["example.com"],
            vec![(2, exact), (1, prefix("/api")), (0, prefix("/"))],
            3,
        )],
        |rule| Ok(rule.route.rule),
    )
    .expect("compiles");
    let headers = HeaderMap::new();
    let get = Method::GET;
    let vhost = router.virtual_host("example.com").expect("host");
    let rule = |path| {
        vhost
            .find(&request(path, None, &get, &headers))
            .map(|(_, r)| *r)
    };
    assert_eq!(rule("/api/health"), Some(2));
    assert_eq!(rule("/api/users"), Some(1));
    assert_eq!(rule("/apix"), Some(0));
    assert!(
        router.virtual_host("other.com").is_none(),
        "no catch-all: 404"
    );
}

#[test]
fn percent_decoding_keeps_invalid_escapes() {
    assert_eq!(percent_decode("a%20b+c"), "a b c");
    assert_eq!(percent_decode("100%"), "100%");
    assert_eq!(percent_decode("%zz"), "%zz");
    assert_eq!(percent_decode("%e2%82%ac"), "€");
}

fn host_with_all_kinds(path_prefix: &str) -> proxy_config::VirtualHost {
    let regex_with_header = HttpMatch {
        path: Some(PathMatch::RegularExpression("/a.*".into())),
        headers: vec![ValueMatch {
            name: "x-h".into(),
            kind: ValueMatchKind::RegularExpression,
            value: ".+".into(),
        }],
        ..HttpMatch::default()
    };
    let prefix_with_query = HttpMatch {
        query_params: vec![ValueMatch {
            name: "q".into(),
            kind: ValueMatchKind::Exact,
            value: "1".into(),
        }],
        ..prefix(path_prefix)
    };
    host(
        &[],
        vec![
            (0, regex_with_header),
            (0, prefix_with_query),
            (0, HttpMatch::default()),
        ],
        1,
    )
}

proptest! {
    #[test]
    fn matching_never_panics(
        path in "\\PC*",
        query in proptest::option::of("\\PC*"),
        authority in "\\PC*",
        header in "[ -~]*",
        path_prefix in "/[a-z/]{0,8}",
    ) {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&header) {
            headers.insert("x-h", value);
        }
        let router = HttpRouter::compile(&[host_with_all_kinds(&path_prefix)], |rule| Ok(rule.route.rule))
            .expect("compiles");
        let get = Method::GET;
        let found = host_key(&authority)
            .and_then(|key| router.virtual_host(&key).map(|vhost| vhost.find(&request(&path, query.as_deref(), &get, &headers)).is_some()));
        // The catch-all host ends with a match-everything rule.
        prop_assert!(found.is_none_or(|matched| matched));
        let _ = percent_decode(&path);
    }
}

fn arbitrary_match(kind: u8, path: &str, method: bool) -> HttpMatch {
    let path = match kind % 4 {
        0 => Some(PathMatch::Exact(path.into())),
        1 => Some(PathMatch::PathPrefix(path.into())),
        2 => Some(PathMatch::RegularExpression(format!("{path}.*"))),
        _ => None,
    };
    HttpMatch {
        path,
        method: method.then(|| "POST".to_owned()),
        ..HttpMatch::default()
    }
}

proptest! {
    /// The path index picks exactly what a linear scan in precedence order
    /// would, whatever the mix of matches and paths.
    #[test]
    fn indexed_lookup_agrees_with_linear_scan(
        specs in proptest::collection::vec((any::<u8>(), "/[ab]{0,2}(/[ab]{1,2}){0,2}/?", any::<bool>()), 17..60),
        paths in proptest::collection::vec("/[ab]{0,2}(/[ab]{1,2}){0,3}/?", 1..20),
        post in any::<bool>(),
    ) {
        let spec = host(
            &[],
            specs.iter().enumerate().map(|(i, (kind, path, method))| (i as u32, arbitrary_match(*kind, path, *method))).collect(),
            specs.len() as u32,
        );
        let router = HttpRouter::compile(&[spec], |rule| Ok(rule.route.rule)).expect("compiles");
        let indexed = &router.virtual_hosts[0];
        prop_assert!(indexed.index.is_some());
        let method = if post { Method::POST } else { Method::GET };
        let headers = HeaderMap::new();
        for path in &paths {
            let view = request(path, None, &method, &headers);
            let linear = indexed.matches.iter().find(|m| m.matches(&view)).map(|m| m.rule);
            let fast = indexed.find(&view).map(|(m, _)| m.rule);
            prop_assert_eq!(fast, linear, "path {}", path);
        }
    }
}
