//! Route matching cost at 10, 1,000 and 10,000 routes.
//!
//! Two shapes: routes spread over hosts (10 paths per host, the common
//! case: the host table narrows the search) and every route on one host
//! (the worst case for the ordered match list: the request matches last).

#![allow(clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method};
use proxy::router::{HttpRouter, RequestView, host_key};
use proxy_config::{
    HttpMatch, HttpRule, OrderedMatch, PathMatch, RouteRef, VirtualHost, WildcardDepth,
};

fn rule(index: u32) -> HttpRule {
    HttpRule {
        route: RouteRef {
            kind: "HTTPRoute".into(),
            namespace: "bench".into(),
            name: format!("route-{index}"),
            rule: 0,
        },
        filters: vec![],
        backends: vec![],
        timeouts: None,
        retry: None,
        session_persistence: None,
    }
}

fn host(name: String, paths: impl Iterator<Item = (u32, String)>) -> VirtualHost {
    let (rules, matches): (Vec<_>, Vec<_>) = paths
        .enumerate()
        .map(|(position, (index, path))| {
            (
                rule(index),
                OrderedMatch {
                    rule: position as u32,
                    matcher: HttpMatch {
                        path: Some(PathMatch::PathPrefix(path)),
                        ..HttpMatch::default()
                    },
                },
            )
        })
        .unzip();
    VirtualHost {
        source: "http".into(),
        hostnames: vec![name],
        wildcard_depth: WildcardDepth::AnyLabels,
        rules,
        matches,
    }
}

fn spread(routes: u32) -> Vec<VirtualHost> {
    (0..routes / 10)
        .map(|h| {
            host(
                format!("host-{h}.example.com"),
                (0..10).map(move |p| (h * 10 + p, format!("/service-{p}/api"))),
            )
        })
        .collect()
}

fn one_host(routes: u32) -> Vec<VirtualHost> {
    vec![host(
        "api.example.com".into(),
        (0..routes).map(|r| (r, format!("/service-{r}/api"))),
    )]
}

fn bench(c: &mut Criterion) {
    let headers = HeaderMap::new();
    let method = Method::GET;
    let mut group = c.benchmark_group("match_request");
    for routes in [10u32, 1_000, 10_000] {
        for (shape, hosts, authority, path) in [
            (
                "spread",
                spread(routes),
                format!("host-{}.example.com", routes / 10 - 1),
                "/service-9/api/users".to_owned(),
            ),
            (
                "one_host_last",
                one_host(routes),
                "api.example.com".to_owned(),
                format!("/service-{}/api/users", routes - 1),
            ),
        ] {
            let router =
                HttpRouter::compile(&hosts, |rule| Ok(rule.route.name.clone())).expect("compiles");
            group.bench_with_input(BenchmarkId::new(shape, routes), &routes, |b, _| {
                b.iter(|| {
                    let key = host_key(std::hint::black_box(&authority)).expect("host");
                    let vhost = router.virtual_host(&key).expect("vhost");
                    let request = RequestView {
                        path: std::hint::black_box(&path),
                        query: None,
                        method: &method,
                        headers: &headers,
                    };
                    vhost.find(&request).map(|(_, rule)| rule.len())
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
