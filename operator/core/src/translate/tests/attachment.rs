//! Which listeners a route attaches to, and why not.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use pretty_assertions::assert_eq;

use super::*;

#[test]
fn hostnames_that_do_not_meet_are_reported() {
    let yaml = format!(
        "{BASE}{}{}",
        gateway("  - {name: http, protocol: HTTP, port: 80, hostname: '*.example.com'}"),
        route(
            "elsewhere",
            "  parentRefs: [{name: edge}]\n  hostnames: [web.example.org]\n  rules:\n  - backendRefs: [{name: echo, port: 8080}]"
        )
    );
    let t = translate(&snapshot(&yaml));
    let accepted = condition(
        &route_conditions(&t, RouteKind::Http, "elsewhere"),
        "Accepted",
    )
    .clone();
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "NoMatchingListenerHostname")
    );
}
