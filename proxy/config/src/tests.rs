use std::collections::BTreeMap;

use pretty_assertions::assert_eq;
use proptest::prelude::*;

use crate::*;

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

fn route(name: &str, rule: u32) -> RouteRef {
    RouteRef {
        kind: "HTTPRoute".into(),
        namespace: "apps".into(),
        name: name.into(),
        rule,
    }
}

fn backend(name: &str) -> WeightedBackend {
    WeightedBackend {
        target: BackendTarget::Backend(name.into()),
        weight: 1,
        filters: vec![],
    }
}

/// A Gateway with an HTTP and an HTTPS listener, a canary split, a header
/// match, a redirect, and a TLS passthrough port: a bit of everything.
fn sample() -> GatewayConfig {
    let service = |name: &str, port: u16| Backend {
        source: ObjectRef {
            kind: "Service".into(),
            namespace: "apps".into(),
            name: name.into(),
        },
        protocol: BackendProtocol::Http1,
        endpoints: vec![Endpoint {
            address: "198.18.0.10".parse().expect("address"),
            port,
        }],
        load_balancing: LoadBalancing::RoundRobin,
        tls: None,
        retry_budget: None,
    };
    let web = VirtualHost {
        source: "https".into(),
        hostnames: vec!["www.example.com".into(), "*.example.net".into()],
        wildcard_depth: WildcardDepth::AnyLabels,
        rules: vec![
            HttpRule {
                route: route("canary", 0),
                filters: vec![HttpFilter::RequestHeaderModifier(HeaderModifier {
                    set: vec![Header {
                        name: "X-Env".into(),
                        value: "prod".into(),
                    }],
                    add: vec![],
                    remove: vec!["X-Debug".into()],
                })],
                backends: vec![
                    WeightedBackend {
                        weight: 90,
                        ..backend("apps/v1:8080")
                    },
                    WeightedBackend {
                        weight: 10,
                        ..backend("apps/v2:8080")
                    },
                ],
                timeouts: Some(Timeouts {
                    request_ms: Some(10_000),
                    backend_request_ms: Some(2_000),
                }),
                retry: Some(Retry {
                    attempts: 2,
                    status_codes: vec![503],
                    backoff_ms: 25,
                    on_connect_failure: true,
                }),
                session_persistence: Some(SessionPersistence {
                    name: "cart".into(),
                    carrier: SessionCarrier::Cookie,
                    absolute_timeout_s: Some(3_600),
                    idle_timeout_s: Some(600),
                    permanent: true,
                    path: Some("/shop".into()),
                }),
            },
            HttpRule {
                route: route("canary", 1),
                filters: vec![],
                backends: vec![backend("apps/v2:8080")],
                timeouts: None,
                retry: None,
                session_persistence: None,
            },
        ],
        matches: vec![
            OrderedMatch {
                rule: 1,
                matcher: HttpMatch {
                    path: Some(PathMatch::PathPrefix("/".into())),
                    headers: vec![ValueMatch {
                        name: "x-version".into(),
                        kind: ValueMatchKind::Exact,
                        value: "v2".into(),
                    }],
                    ..HttpMatch::default()
                },
            },
            OrderedMatch {
                rule: 0,
                matcher: HttpMatch {
                    path: Some(PathMatch::PathPrefix("/".into())),
                    ..HttpMatch::default()
                },
            },
        ],
    };
    let redirect = VirtualHost {
        source: "http".into(),
        hostnames: vec![],
        wildcard_depth: WildcardDepth::AnyLabels,
        rules: vec![HttpRule {
            route: route("redirect", 0),
            filters: vec![HttpFilter::RequestRedirect(RequestRedirect {
                scheme: Some("https".into()),
                hostname: None,
                port: None,
                path: None,
                status_code: 301,
            })],
            backends: vec![],
            timeouts: None,
            retry: None,
            session_persistence: None,
        }],
        matches: vec![OrderedMatch {
            rule: 0,
            matcher: HttpMatch::default(),
        }],
    };
    GatewayConfig {
        gateway: ObjectRef {
            kind: "Gateway".into(),
            namespace: "infra".into(),
            name: "edge".into(),
        },
        listeners: vec![
            Listener {
                name: "http-80".into(),
                port: 80,
                protocol: Protocol::Http,
                sources: vec!["http".into()],
                tls: None,
                virtual_hosts: vec![redirect],
                tls_routes: vec![],
                stream_route: None,
            },
            Listener {
                name: "https-443".into(),
                port: 443,
                protocol: Protocol::Https,
                sources: vec!["https".into()],
                tls: Some(ListenerTls {
                    certificates: vec![ServerCertificate {
                        certificate: "infra/edge-cert".into(),
                        server_names: vec!["www.example.com".into()],
                    }],
                    mode: TlsMode::Terminate,
                    client_validation: None,
                }),
                virtual_hosts: vec![web],
                tls_routes: vec![],
                stream_route: None,
            },
            Listener {
                name: "tls-8443".into(),
                port: 8443,
                protocol: Protocol::Tls,
                sources: vec!["passthrough".into()],
                tls: Some(ListenerTls {
                    certificates: vec![],
                    mode: TlsMode::Passthrough,
                    client_validation: None,
                }),
                virtual_hosts: vec![],
                tls_routes: vec![TlsRoute {
                    route: RouteRef {
                        kind: "TLSRoute".into(),
                        ..route("db", 0)
                    },
                    hostnames: vec!["db.example.com".into()],
                    backends: vec![backend("apps/db:5432")],
                    mode: None,
                }],
                stream_route: None,
            },
        ],
        backends: BTreeMap::from([
            ("apps/v1:8080".into(), service("v1", 8080)),
            ("apps/v2:8080".into(), service("v2", 8080)),
            (
                "apps/db:5432".into(),
                Backend {
                    protocol: BackendProtocol::Tcp,
                    ..service("db", 5432)
                },
            ),
        ]),
        certificates: BTreeMap::from([(
            "infra/edge-cert".into(),
            Certificate {
                chain_pem: CERT.into(),
                private_key_pem: KEY.into(),
            },
        )]),
        ca_bundles: BTreeMap::new(),
        settings: ProxySettings::default(),
    }
}

fn paths(errors: &ValidationErrors) -> Vec<&str> {
    errors.0.iter().map(|error| error.path.as_str()).collect()
}

#[test]
fn sample_is_valid() {
    let document = ConfigDocument::new(7, sample());
    assert_eq!(validate(&document), Ok(()));
}

#[test]
fn valid_document_round_trips_byte_identically() {
    let document = ConfigDocument::new(7, sample());
    let bytes = encode(&document).expect("encode");
    assert!(
        bytes.len() < COMPRESS_ABOVE,
        "small documents stay plain JSON"
    );
    assert_eq!(bytes.first(), Some(&b'{'));
    let decoded = load(&bytes).expect("load");
    assert_eq!(decoded, document);
    assert_eq!(encode(&decoded).expect("encode again"), bytes);
}

#[test]
fn large_document_is_compressed_and_round_trips() {
    let mut config = sample();
    for index in 0..2_000 {
        let name = format!("apps/svc-{index}:80");
        let template = config.backends["apps/v1:8080"].clone();
        config.backends.insert(name, template);
    }
    let document = ConfigDocument::new(1, config);
    let plain = serde_json::to_vec(&document).expect("json");
    let bytes = encode(&document).expect("encode");
    assert!(plain.len() > COMPRESS_ABOVE);
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip magic");
    assert!(
        bytes.len() * 5 < plain.len(),
        "compresses well: {} of {}",
        bytes.len(),
        plain.len()
    );
    let decoded = load(&bytes).expect("load");
    assert_eq!(decoded, document);
    assert_eq!(encode(&decoded).expect("encode again"), bytes);
}

#[test]
fn hash_ignores_generation_and_follows_content() {
    let a = ConfigDocument::new(1, sample());
    let b = ConfigDocument::new(2, sample());
    assert_eq!(a.hash, b.hash);
    let mut changed = sample();
    changed.listeners[0].port = 8080;
    assert_ne!(ConfigDocument::new(1, changed).hash, a.hash);
    assert_eq!(a.hash.len(), 64);
}

#[test]
fn invalid_document_reports_every_error_with_its_path() {
    let mut config = sample();
    config.listeners[1].port = 80; // clashes with the HTTP listener
    let host = &mut config.listeners[1].virtual_hosts[0];
    host.hostnames.push("Bad_Host".into());
    host.matches[0].matcher.path = Some(PathMatch::RegularExpression("(".into()));
    host.matches.push(OrderedMatch {
        rule: 9,
        matcher: HttpMatch::default(),
    });
    host.rules[0].backends[1].target = BackendTarget::Backend("apps/missing:1".into());
    host.rules[0].backends[0].weight = MAX_WEIGHT + 1;
    config.listeners[0].virtual_hosts[0].rules[0].filters =
        vec![HttpFilter::RequestRedirect(RequestRedirect {
            scheme: Some("ftp".into()),
            hostname: None,
            port: Some(0),
            path: Some(PathModifier::ReplacePrefixMatch("no-slash".into())),
            status_code: 200,
        })];
    config.certificates.insert(
        "infra/broken".into(),
        Certificate {
            chain_pem: "garbage".into(),
            private_key_pem: String::new(),
        },
    );
    let mut document = ConfigDocument::new(3, config);
    document.format_version = 99;

    let errors = validate(&document).expect_err("invalid");
    assert_eq!(paths(&errors), expected_order());
    let message = errors.to_string();
    assert!(
        message.starts_with("13 problem(s) in config: "),
        "{message}"
    );
    assert!(
        message.contains("port 80 is already bound by config.listeners[0]"),
        "{message}"
    );
}

/// Validation walks the document in order, listeners before backends and
/// certificates, so the report reads top to bottom.
fn expected_order() -> Vec<&'static str> {
    vec![
        "formatVersion",
        "config.listeners[0].virtualHosts[0].rules[0].filters[0].statusCode",
        "config.listeners[0].virtualHosts[0].rules[0].filters[0].scheme",
        "config.listeners[0].virtualHosts[0].rules[0].filters[0].port",
        "config.listeners[0].virtualHosts[0].rules[0].filters[0].path.value",
        "config.listeners[0].virtualHosts[0].matches[0].match.path",
        "config.listeners[1].port",
        "config.listeners[1].virtualHosts[0].hostnames[2]",
        "config.listeners[1].virtualHosts[0].rules[0].backends[0].weight",
        "config.listeners[1].virtualHosts[0].rules[0].backends[1].target",
        "config.listeners[1].virtualHosts[0].matches[0].match.path.value",
        "config.listeners[1].virtualHosts[0].matches[2].rule",
        "config.certificates[\"infra/broken\"].chainPem",
    ]
}

#[test]
fn session_persistence_needs_a_token_name_a_plain_path_and_a_lifetime_to_be_permanent() {
    // Name, cookie path, absolute timeout, the fields refused.
    type Case<'a> = (&'a str, Option<&'a str>, Option<u64>, Vec<&'a str>);
    let cases: &[Case] = &[
        ("cart", Some("/shop"), Some(60), vec![]),
        ("x-session_id", Some("/"), Some(1), vec![]),
        ("cart", None, Some(60), vec![]),
        ("", Some("/"), Some(60), vec!["name"]),
        ("bad name", Some("/"), Some(60), vec!["name"]),
        ("c", Some("shop"), Some(60), vec!["path"]),
        ("c", Some("/a;b"), Some(60), vec!["path"]),
        ("c", Some("/"), None, vec!["absoluteTimeoutS"]),
    ];
    for (name, path, absolute, fields) in cases {
        let mut config = sample();
        let session = config.listeners[1].virtual_hosts[0].rules[0]
            .session_persistence
            .as_mut()
            .expect("the sample has a session");
        session.name = (*name).into();
        session.path = path.map(str::to_owned);
        session.absolute_timeout_s = *absolute;
        let expected: Vec<String> = fields
            .iter()
            .map(|field| {
                format!("config.listeners[1].virtualHosts[0].rules[0].sessionPersistence.{field}")
            })
            .collect();
        let found = match validate(&ConfigDocument::new(1, config)) {
            Ok(()) => Vec::new(),
            Err(errors) => paths(&errors).into_iter().map(str::to_owned).collect(),
        };
        assert_eq!(found, expected, "name {name:?} path {path:?}");
    }
    assert!(!is_session_name(&"a".repeat(MAX_SESSION_NAME_LEN + 1)));
}

#[test]
fn retry_budgets_stay_within_a_percentage_and_an_hour() {
    let budget = |percent, interval_ms, min_interval_ms| RetryBudget {
        percent,
        interval_ms,
        min_retries: 10,
        min_interval_ms,
    };
    let cases = [
        (budget(20, 10_000, 1_000), vec![]),
        (budget(0, 1, 3_600_000), vec![]),
        (budget(101, 10_000, 1_000), vec!["percent"]),
        (
            budget(20, 0, 3_600_001),
            vec!["intervalMs", "minIntervalMs"],
        ),
    ];
    for (budget, fields) in cases {
        let mut config = sample();
        if let Some(backend) = config.backends.get_mut("apps/v1:8080") {
            backend.retry_budget = Some(budget.clone());
        }
        let expected: Vec<String> = fields
            .iter()
            .map(|field| format!("config.backends[\"apps/v1:8080\"].retryBudget.{field}"))
            .collect();
        let found = match validate(&ConfigDocument::new(1, config)) {
            Ok(()) => Vec::new(),
            Err(errors) => paths(&errors).into_iter().map(str::to_owned).collect(),
        };
        assert_eq!(found, expected, "{budget:?}");
    }
}

#[test]
fn tampered_content_fails_the_hash() {
    let mut document = ConfigDocument::new(1, sample());
    document.config.listeners[0].port = 81;
    let errors = validate(&document).expect_err("hash mismatch");
    assert_eq!(paths(&errors), vec!["hash"]);
}

#[test]
fn protocol_and_settings_must_agree() {
    let mut config = sample();
    config.listeners[0].tls = config.listeners[1].tls.clone(); // TLS on plain HTTP
    config.listeners[1].tls = None; // HTTPS without TLS
    config.listeners[2].tls = Some(ListenerTls {
        certificates: vec![ServerCertificate {
            certificate: "infra/edge-cert".into(),
            server_names: vec![],
        }],
        mode: TlsMode::Passthrough,
        client_validation: None,
    });
    config.listeners[2].stream_route = Some(StreamRoute {
        route: route("x", 0),
        backends: vec![],
    });
    let errors = validate(&ConfigDocument::new(1, config)).expect_err("invalid");
    assert_eq!(
        paths(&errors),
        vec![
            "config.listeners[0].tls",
            "config.listeners[1].tls",
            "config.listeners[2].tls",
            "config.listeners[2].streamRoute",
        ]
    );
}

#[test]
fn decode_errors_name_the_path() {
    let mut value = serde_json::to_value(ConfigDocument::new(1, sample())).expect("json");
    value["config"]["listeners"][1]["port"] = serde_json::json!("not a number");
    let err = decode(&serde_json::to_vec(&value).expect("bytes")).expect_err("bad type");
    assert!(
        err.to_string().contains("config.listeners[1].port"),
        "{err}"
    );

    value["config"]["listeners"][1]["port"] = serde_json::json!(443);
    value["config"]["listeners"][1]["surprise"] = serde_json::json!(true);
    let err = decode(&serde_json::to_vec(&value).expect("bytes")).expect_err("unknown field");
    assert!(err.to_string().contains("surprise"), "{err}");
}

#[test]
fn decompression_bombs_are_refused() {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![b' '; 1 << 20];
    for _ in 0..(MAX_DECODED_BYTES >> 20) + 1 {
        encoder.write_all(&zeros).expect("write");
    }
    let bomb = encoder.finish().expect("finish");
    assert!(bomb.len() < 1 << 20);
    assert!(matches!(decode(&bomb), Err(CodecError::TooLarge)));
}

fn arbitrary_config(bytes: &[u8]) -> Option<GatewayConfig> {
    arbitrary::Unstructured::new(bytes).arbitrary().ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = load(&bytes);
        let mut gzipped = vec![0x1f, 0x8b];
        gzipped.extend_from_slice(&bytes);
        let _ = load(&gzipped);
    }

    #[test]
    fn validation_never_panics_on_arbitrary_documents(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        generation in any::<u64>(),
    ) {
        if let Some(config) = arbitrary_config(&bytes) {
            let document = ConfigDocument::new(generation, config);
            if let Err(errors) = validate(&document) {
                prop_assert!(!errors.0.is_empty());
                for error in &errors.0 {
                    prop_assert!(!error.path.is_empty());
                }
            }
        }
    }

    #[test]
    fn every_document_round_trips_byte_identically(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        generation in any::<u64>(),
    ) {
        if let Some(config) = arbitrary_config(&bytes) {
            let document = ConfigDocument::new(generation, config);
            let encoded = encode(&document).expect("encode");
            let decoded = decode(&encoded).expect("decode");
            prop_assert_eq!(&decoded, &document);
            prop_assert_eq!(encode(&decoded).expect("encode again"), encoded);
        }
    }
}
