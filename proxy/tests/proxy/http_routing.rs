//! HTTP routing and filters through real sockets: a client, the proxy, and
//! echo backends, all on loopback.

use std::collections::HashMap;

use crate::support::*;
use http::StatusCode;
use proxy_config::*;

#[tokio::test]
async fn routes_by_host_and_path_and_answers_404_otherwise() {
    let web = EchoServer::start("web").await;
    let api = EchoServer::start("api").await;
    let port = free_port();
    let _proxy = InProcessProxy::start(gateway(
        vec![http_listener(
            "http",
            port,
            vec![
                vhost(
                    "http",
                    &["www.example.com"],
                    vec![
                        (prefix("/api"), rule("api", vec![to("api", 1)], vec![])),
                        (prefix("/"), rule("web", vec![to("web", 1)], vec![])),
                    ],
                ),
                vhost(
                    "http",
                    &["*.example.net"],
                    vec![(prefix("/only"), rule("net", vec![to("api", 1)], vec![]))],
                ),
            ],
        )],
        vec![service("web", &web), service("api", &api)],
    ))
    .await;
    let client = client();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");

    let echo = get(
        &client,
        &url("/api/users?x=1"),
        &[("host", "www.example.com")],
    )
    .await;
    assert_eq!((echo.status, echo.backend()), (StatusCode::OK, "api"));
    assert_eq!(echo.json["path"], "/api/users?x=1");
    assert_eq!(echo.header("host"), Some("www.example.com"));
    assert_eq!(echo.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(echo.header("x-forwarded-proto"), Some("http"));
    assert_eq!(echo.header("x-request-id").map(str::len), Some(32));

    let echo = get(&client, &url("/apiary"), &[("host", "WWW.Example.com:80")]).await;
    assert_eq!(
        (echo.status, echo.backend()),
        (StatusCode::OK, "web"),
        "segment-wise prefix"
    );

    let echo = get(&client, &url("/only/here"), &[("host", "a.b.example.net")]).await;
    assert_eq!(echo.backend(), "api", "wildcards match any depth");

    let echo = get(&client, &url("/elsewhere"), &[("host", "a.example.net")]).await;
    assert_eq!(
        echo.status,
        StatusCode::NOT_FOUND,
        "host known, no path matches"
    );

    let echo = get(&client, &url("/"), &[("host", "unknown.org")]).await;
    assert_eq!(echo.status, StatusCode::NOT_FOUND, "no virtual host");
}

#[tokio::test]
async fn weighted_split_is_within_three_percent_over_ten_thousand_requests() {
    let stable = EchoServer::start("stable").await;
    let canary = EchoServer::start("canary").await;
    let never = EchoServer::start("never").await;
    let port = free_port();
    let _proxy = InProcessProxy::start(gateway(
        vec![http_listener(
            "http",
            port,
            vec![vhost(
                "http",
                &[],
                vec![(
                    prefix("/"),
                    rule(
                        "canary",
                        vec![to("stable", 90), to("canary", 10), to("never", 0)],
                        vec![],
                    ),
                )],
            )],
        )],
        vec![
            service("stable", &stable),
            service("canary", &canary),
            service("never", &never),
        ],
    ))
    .await;
    let client = client();
    let url = format!("http://127.0.0.1:{port}/");
    let mut counts: HashMap<String, u32> = HashMap::new();
    let total = 10_000;
    for chunk in 0..(total / 100) {
        let requests = (0..100).map(|_| get(&client, &url, &[]));
        for echo in futures::future::join_all(requests).await {
            assert_eq!(echo.status, StatusCode::OK, "chunk {chunk}");
            *counts.entry(echo.backend().to_owned()).or_default() += 1;
        }
    }
    let share =
        |name: &str| f64::from(counts.get(name).copied().unwrap_or(0)) / f64::from(total) * 100.0;
    assert!((share("stable") - 90.0).abs() <= 3.0, "{counts:?}");
    assert!((share("canary") - 10.0).abs() <= 3.0, "{counts:?}");
    assert_eq!(counts.get("never"), None, "weight 0 gets nothing");
}

#[tokio::test]
async fn filters_modify_redirect_rewrite_and_invalid_backends_get_500() {
    let web = EchoServer::start("web").await;
    let port = free_port();
    let modify = vec![
        HttpFilter::RequestHeaderModifier(HeaderModifier {
            set: vec![Header {
                name: "x-env".into(),
                value: "prod".into(),
            }],
            add: vec![Header {
                name: "x-added".into(),
                value: "yes".into(),
            }],
            remove: vec!["x-debug".into()],
        }),
        HttpFilter::ResponseHeaderModifier(HeaderModifier {
            set: vec![Header {
                name: "x-served-by".into(),
                value: "portcullis".into(),
            }],
            add: vec![],
            remove: vec!["x-backend".into()],
        }),
    ];
    let redirect = vec![HttpFilter::RequestRedirect(RequestRedirect {
        scheme: Some("https".into()),
        hostname: None,
        port: None,
        path: None,
        status_code: 301,
    })];
    let rewrite = vec![HttpFilter::UrlRewrite(UrlRewrite {
        hostname: Some("internal.local".into()),
        path: Some(PathModifier::ReplacePrefixMatch("/v2".into())),
    })];
    let invalid = WeightedBackend {
        target: BackendTarget::Invalid("Service test/missing not found".into()),
        weight: 1,
        filters: vec![],
    };
    let _proxy = InProcessProxy::start(gateway(
        vec![http_listener(
            "http",
            port,
            vec![vhost(
                "http",
                &[],
                vec![
                    (
                        prefix("/modify"),
                        rule("modify", vec![to("web", 1)], modify),
                    ),
                    (prefix("/redirect"), rule("redirect", vec![], redirect)),
                    (prefix("/old"), rule("rewrite", vec![to("web", 1)], rewrite)),
                    (prefix("/invalid"), rule("invalid", vec![invalid], vec![])),
                    (prefix("/nobackend"), rule("empty", vec![], vec![])),
                ],
            )],
        )],
        vec![service("web", &web)],
    ))
    .await;
    let client = client();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");

    let echo = get(
        &client,
        &url("/modify"),
        &[("x-env", "dev"), ("x-debug", "1"), ("x-added", "first")],
    )
    .await;
    assert_eq!(echo.header("x-env"), Some("prod"));
    assert_eq!(echo.header("x-debug"), None);
    assert_eq!(
        echo.header("x-added"),
        Some("first, yes"),
        "add appends: the echo joins values"
    );
    assert_eq!(
        echo.headers.get("x-served-by").map(|v| v.as_bytes()),
        Some(&b"portcullis"[..])
    );
    assert!(echo.headers.get("x-backend").is_none());

    let echo = get(
        &client,
        &url("/redirect/page?q=1"),
        &[("host", "shop.example.com")],
    )
    .await;
    assert_eq!(echo.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        echo.headers
            .get("location")
            .map(|v| v.to_str().unwrap_or_default()),
        Some("https://shop.example.com/redirect/page?q=1")
    );

    let echo = get(&client, &url("/old/items?id=7"), &[]).await;
    assert_eq!(echo.json["path"], "/v2/items?id=7");
    assert_eq!(echo.header("host"), Some("internal.local"));

    assert_eq!(
        get(&client, &url("/invalid"), &[]).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        get(&client, &url("/nobackend"), &[]).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test]
async fn h2c_prior_knowledge_clients_and_h2c_backends() {
    let grpc = EchoServer::start_h2c("grpc").await;
    let port = free_port();
    let _proxy = InProcessProxy::start(gateway(
        vec![http_listener(
            "http",
            port,
            vec![vhost(
                "http",
                &[],
                vec![(prefix("/"), rule("grpc", vec![to("grpc", 1)], vec![]))],
            )],
        )],
        vec![service_with("grpc", &[&grpc], BackendProtocol::H2c)],
    ))
    .await;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let request = http::Request::post(format!("http://grpc.example.com:{port}/pkg.Service/Method"))
        .header("content-type", "application/grpc")
        .body(http_body_util::Empty::new())
        .expect("request");
    let echo = request_over(stream, true, request).await;
    assert_eq!(echo.status, StatusCode::OK);
    assert_eq!(echo.backend(), "grpc");
    assert_eq!(echo.json["version"], "HTTP/2.0", "backend spoke HTTP/2");
    assert_eq!(echo.json["path"], "/pkg.Service/Method");
}

#[tokio::test]
async fn retries_on_listed_status_codes_and_ejects_failing_endpoints() {
    let web = EchoServer::start("web").await;
    let port = free_port();
    let mut retrying = rule("retry", vec![to("web", 1)], vec![]);
    retrying.retry = Some(Retry {
        attempts: 2,
        status_codes: vec![503],
        backoff_ms: 1,
        on_connect_failure: true,
    });
    // One endpoint that refuses connections beside a healthy one.
    let dead = Endpoint {
        address: "127.0.0.1".parse().expect("ip"),
        port: free_port(),
    };
    let mut backends = vec![service("web", &web)];
    backends[0].1.endpoints.push(dead);
    let _proxy = InProcessProxy::start(gateway(
        vec![http_listener(
            "http",
            port,
            vec![vhost("http", &[], vec![(prefix("/"), retrying)])],
        )],
        backends,
    ))
    .await;
    let client = client();
    for _ in 0..50 {
        let echo = get(&client, &format!("http://127.0.0.1:{port}/"), &[]).await;
        assert_eq!(
            echo.status,
            StatusCode::OK,
            "connect failures are retried on the other endpoint"
        );
    }
    let echo = get(&client, &format!("http://127.0.0.1:{port}/status/503"), &[]).await;
    assert_eq!(
        echo.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "retried, then the last answer is returned"
    );
}

#[tokio::test]
async fn an_endpoint_going_away_costs_bodiless_requests_nothing_without_a_retry_policy() {
    // Pods scaled down before their EndpointSlice says so: one address
    // refuses connections, another accepts and hangs up without answering
    // (killed mid-request); no rule asks for retries.
    let web = EchoServer::start("web").await;
    let port = free_port();
    let plain = rule("plain", vec![to("web", 1)], vec![]);
    let refusing = Endpoint {
        address: "127.0.0.1".parse().expect("ip"),
        port: free_port(),
    };
    let hanging_up = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hang_up_port = hanging_up.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = hanging_up.accept().await {
            drop(stream);
        }
    });
    let mut backends = vec![service("web", &web)];
    let endpoints = &mut backends[0].1.endpoints;
    endpoints.insert(0, refusing);
    endpoints.insert(
        1,
        Endpoint {
            address: "127.0.0.1".parse().expect("ip"),
            port: hang_up_port,
        },
    );
    let _proxy = InProcessProxy::start(gateway(
        vec![http_listener(
            "http",
            port,
            vec![vhost("http", &[], vec![(prefix("/"), plain)])],
        )],
        backends,
    ))
    .await;
    let client = client();
    // A POST is not idempotent: one the hanging-up endpoint took is not
    // sent again (it may have been acted on), and answers 502.
    let mut posts = Vec::new();
    for _ in 0..6 {
        let request = hyper::Request::post(format!("http://127.0.0.1:{port}/"))
            .body(http_body_util::Empty::new())
            .expect("request");
        let response = client.request(request).await.expect("response");
        posts.push(response.status());
    }
    assert!(
        posts.contains(&StatusCode::BAD_GATEWAY),
        "a non-idempotent request is not replayed after the backend took it: {posts:?}"
    );
    for _ in 0..20 {
        let echo = get(&client, &format!("http://127.0.0.1:{port}/"), &[]).await;
        assert_eq!(
            echo.status,
            StatusCode::OK,
            "sent to the live endpoint once the others failed"
        );
        assert_eq!(echo.backend(), "web");
    }
}

#[tokio::test]
async fn retries_follow_gateway_api_retry_codes_attempts_timeouts_and_backoff() {
    let web = EchoServer::start("web").await;
    let port = free_port();
    let with = |name: &str, retry: Retry, timeouts: Option<Timeouts>| {
        let mut rule = rule(name, vec![to("web", 1)], vec![]);
        rule.retry = Some(retry);
        rule.timeouts = timeouts;
        rule
    };
    let on_500 = Retry {
        attempts: 3,
        status_codes: vec![500],
        backoff_ms: 1,
        on_connect_failure: true,
    };
    let no_codes = Retry {
        attempts: 2,
        status_codes: vec![],
        backoff_ms: 1,
        on_connect_failure: true,
    };
    let timeouts = |request_ms, backend_request_ms| {
        Some(Timeouts {
            request_ms,
            backend_request_ms,
        })
    };
    let slow_backoff = Retry {
        backoff_ms: 500,
        ..on_500.clone()
    };
    let _proxy = InProcessProxy::start(gateway(
        vec![http_listener(
            "http",
            port,
            vec![
                vhost(
                    "http",
                    &["codes.test"],
                    vec![(prefix("/"), with("codes", on_500.clone(), None))],
                ),
                vhost(
                    "http",
                    &["timeouts.test"],
                    vec![(
                        prefix("/"),
                        with("timeouts", no_codes, timeouts(None, Some(200))),
                    )],
                ),
                vhost(
                    "http",
                    &["deadline.test"],
                    vec![(
                        prefix("/"),
                        with(
                            "deadline",
                            Retry {
                                attempts: 5,
                                ..on_500.clone()
                            },
                            timeouts(Some(400), Some(200)),
                        ),
                    )],
                ),
                vhost(
                    "http",
                    &["backoff.test"],
                    vec![(
                        prefix("/"),
                        with("backoff", slow_backoff, timeouts(Some(400), None)),
                    )],
                ),
            ],
        )],
        vec![service("web", &web)],
    ))
    .await;
    let client = client();
    let url = format!("http://127.0.0.1:{port}/flaky");
    // (host, id, fail, status, delay ms) → answer, tries the backend saw.
    let cases: [(&str, &str, u32, u16, u64, StatusCode, u32); 7] = [
        ("codes.test", "two-failures", 2, 500, 0, StatusCode::OK, 3),
        (
            "codes.test",
            "four-failures",
            4,
            500,
            0,
            StatusCode::INTERNAL_SERVER_ERROR,
            4,
        ),
        (
            "codes.test",
            "unlisted-code",
            2,
            503,
            0,
            StatusCode::SERVICE_UNAVAILABLE,
            1,
        ),
        (
            "timeouts.test",
            "slow-twice",
            2,
            500,
            300,
            StatusCode::OK,
            3,
        ),
        (
            "timeouts.test",
            "slow-thrice",
            3,
            500,
            300,
            StatusCode::GATEWAY_TIMEOUT,
            3,
        ),
        (
            "deadline.test",
            "past-deadline",
            4,
            500,
            150,
            StatusCode::GATEWAY_TIMEOUT,
            3,
        ),
        (
            "backoff.test",
            "backoff-past-deadline",
            1,
            500,
            0,
            StatusCode::INTERNAL_SERVER_ERROR,
            1,
        ),
    ];
    for (host, id, fail, status, delay, want, tries) in cases {
        let started = std::time::Instant::now();
        let answer = get(
            &client,
            &format!("{url}?id={id}&fail={fail}&status={status}&delay={delay}"),
            &[("host", host)],
        )
        .await;
        let took = started.elapsed();
        assert_eq!((id, answer.status), (id, want));
        // The backend counts a try when it starts; give a cut one a moment.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!((id, flaky_tries(id)), (id, tries), "tries the backend saw");
        if host == "backoff.test" || host == "deadline.test" {
            assert!(
                took < std::time::Duration::from_millis(450),
                "{id}: no retry outlives the request timeout ({took:?})"
            );
        }
    }
}

#[tokio::test]
async fn cors_preflights_are_answered_and_simple_requests_get_allow_origin() {
    let web = EchoServer::start("web").await;
    let port = free_port();
    let cors = vec![HttpFilter::Cors(Cors {
        allow_origins: vec!["https://app.example.com".into()],
        allow_methods: vec!["GET".into(), "PUT".into()],
        allow_headers: vec!["*".into()],
        expose_headers: vec!["x-trace".into()],
        allow_credentials: true,
        max_age_seconds: Some(600),
    })];
    let _proxy = InProcessProxy::start(gateway(
        vec![http_listener(
            "http",
            port,
            vec![vhost(
                "http",
                &[],
                vec![(prefix("/"), rule("cors", vec![to("web", 1)], cors))],
            )],
        )],
        vec![service("web", &web)],
    ))
    .await;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let preflight = http::Request::builder()
        .method("OPTIONS")
        .uri(format!("http://127.0.0.1:{port}/api"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "x-custom")
        .body(http_body_util::Empty::new())
        .expect("request");
    let answer = client.request(preflight).await.expect("preflight");
    assert_eq!(
        answer.status(),
        StatusCode::NO_CONTENT,
        "answered by the proxy"
    );
    let header = |name: &str| {
        answer
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    };
    assert_eq!(
        header("access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );
    assert_eq!(
        header("access-control-allow-methods").as_deref(),
        Some("GET, PUT")
    );
    assert_eq!(
        header("access-control-allow-headers").as_deref(),
        Some("x-custom"),
        "* echoes what was asked"
    );
    assert_eq!(
        header("access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert_eq!(header("access-control-max-age").as_deref(), Some("600"));

    let simple = get(
        &client,
        &format!("http://127.0.0.1:{port}/api"),
        &[("origin", "https://app.example.com")],
    )
    .await;
    assert_eq!(simple.backend(), "web");
    assert_eq!(
        simple
            .headers
            .get("access-control-allow-origin")
            .map(|v| v.as_bytes()),
        Some(&b"https://app.example.com"[..])
    );
    assert_eq!(
        simple
            .headers
            .get("access-control-expose-headers")
            .map(|v| v.as_bytes()),
        Some(&b"x-trace"[..])
    );
    let stranger = get(
        &client,
        &format!("http://127.0.0.1:{port}/api"),
        &[("origin", "https://evil.example")],
    )
    .await;
    assert!(
        stranger
            .headers
            .get("access-control-allow-origin")
            .is_none()
    );
}

/// A mirror backend that reports each request's path and whole body.
async fn recording_mirror() -> (
    EchoServer,
    tokio::sync::mpsc::UnboundedReceiver<(String, bytes::Bytes)>,
) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sender = sender.clone();
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let sender = sender.clone();
                    async move {
                        let path = request.uri().path().to_owned();
                        if let Ok(body) = request.into_body().collect().await {
                            let _ = sender.send((path, body.to_bytes()));
                        }
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Empty::<bytes::Bytes>::new(),
                        ))
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    let server = EchoServer {
        name: "record".into(),
        address,
    };
    (server, receiver)
}

/// A mirror backend that accepts connections and never reads from them.
async fn stalled_mirror() -> EchoServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    EchoServer {
        name: "stall".into(),
        address,
    }
}

#[tokio::test]
async fn mirrors_get_the_request_body_and_a_stalled_mirror_never_holds_the_client_back() {
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let primary = EchoServer::start("primary").await;
    let (record, mut recorded) = recording_mirror().await;
    let stall = stalled_mirror().await;
    let mirror_to = |backend: &str| {
        HttpFilter::RequestMirror(RequestMirror {
            backend: backend.into(),
            per_million: 1_000_000,
        })
    };
    let port = free_port();
    let _proxy = InProcessProxy::start(gateway(
        vec![http_listener(
            "http",
            port,
            vec![vhost(
                "http",
                &["mirror.example.com"],
                vec![(
                    prefix("/"),
                    rule(
                        "mirrored",
                        vec![to("primary", 1)],
                        vec![mirror_to("record"), mirror_to("stall")],
                    ),
                )],
            )],
        )],
        vec![
            service("primary", &primary),
            service("record", &record),
            service("stall", &stall),
        ],
    ))
    .await;
    let uploader = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let post = |path: &str, body: Vec<u8>| {
        http::Request::post(format!("http://127.0.0.1:{port}{path}"))
            .header("host", "mirror.example.com")
            .body(Full::new(bytes::Bytes::from(body)))
            .unwrap()
    };
    let wait = std::time::Duration::from_secs(10);

    // A body well within what a mirror may lag behind: both the primary and
    // the recording mirror get it byte for byte.
    let upload: Vec<u8> = (0..512 * 1024).map(|i| (i % 251) as u8).collect();
    let response = tokio::time::timeout(wait, uploader.request(post("/upload", upload.clone())))
        .await
        .expect("the stalled mirror must not delay the client")
        .unwrap();
    let echo = into_echo(response).await;
    assert_eq!(echo.status, StatusCode::OK);
    assert_eq!(echo.json["bodyLength"], upload.len());
    let (path, body) = tokio::time::timeout(wait, recorded.recv())
        .await
        .expect("the mirror gets the request")
        .unwrap();
    assert_eq!(path, "/upload");
    assert!(
        body == upload,
        "the mirror got {} bytes, not the body",
        body.len()
    );

    // Far more than fits in the stalled mirror's socket buffers: the client
    // still streams it all to the primary at its own pace.
    let large = vec![7u8; 32 * 1024 * 1024];
    let response = tokio::time::timeout(wait, uploader.request(post("/large", large)))
        .await
        .expect("the stalled mirror must not delay a large upload")
        .unwrap();
    let echo = into_echo(response).await;
    assert_eq!(echo.json["bodyLength"], 32 * 1024 * 1024);

    // A bodiless request is mirrored too.
    let echo = get(
        &client(),
        &format!("http://127.0.0.1:{port}/plain"),
        &[("host", "mirror.example.com")],
    )
    .await;
    assert_eq!(echo.backend(), "primary");
    let mirrored = tokio::time::timeout(wait, async {
        loop {
            match recorded.recv().await {
                Some((path, body)) if path == "/plain" => break body,
                Some(_) => continue,
                None => panic!("the recording mirror stopped"),
            }
        }
    })
    .await
    .expect("the bodiless request is mirrored");
    assert!(mirrored.is_empty());
}

#[tokio::test]
async fn a_request_answered_at_the_gateway_mirrors_nothing() {
    let primary = EchoServer::start("primary").await;
    let (record, mut recorded) = recording_mirror().await;
    let mirror = HttpFilter::RequestMirror(RequestMirror {
        backend: "record".into(),
        per_million: 1_000_000,
    });
    let redirect = HttpFilter::RequestRedirect(RequestRedirect {
        scheme: Some("https".into()),
        hostname: None,
        port: None,
        path: None,
        status_code: 302,
    });
    let port = free_port();
    let _proxy = InProcessProxy::start(gateway(
        vec![http_listener(
            "http",
            port,
            vec![vhost(
                "http",
                &["mirror.example.com"],
                vec![
                    (
                        prefix("/redirect"),
                        rule(
                            "redirected",
                            vec![to("primary", 1)],
                            vec![mirror.clone(), redirect],
                        ),
                    ),
                    (
                        prefix("/down"),
                        rule("down", vec![to("empty", 1)], vec![mirror.clone()]),
                    ),
                    (
                        prefix("/ok"),
                        rule("served", vec![to("primary", 1)], vec![mirror]),
                    ),
                ],
            )],
        )],
        vec![
            service("primary", &primary),
            service("record", &record),
            service_with("empty", &[], BackendProtocol::Http1),
        ],
    ))
    .await;
    let client = client();
    let host = [("host", "mirror.example.com")];
    let redirected = get(&client, &format!("http://127.0.0.1:{port}/redirect"), &host).await;
    assert_eq!(redirected.status, StatusCode::FOUND);
    let down = get(&client, &format!("http://127.0.0.1:{port}/down"), &host).await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE, "no endpoint");
    let served = get(&client, &format!("http://127.0.0.1:{port}/ok"), &host).await;
    assert_eq!(served.backend(), "primary");

    // The served request is mirrored; had the others been, their copies
    // would have been sent first.
    let wait = std::time::Duration::from_secs(10);
    let (path, _) = tokio::time::timeout(wait, recorded.recv())
        .await
        .expect("the served request is mirrored")
        .unwrap();
    assert_eq!(path, "/ok", "only the forwarded request is mirrored");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(recorded.try_recv().is_err(), "nothing else was mirrored");
}

#[tokio::test]
async fn sessions_stick_to_their_endpoint_drain_from_weight_zero_and_move_when_it_dies() {
    let (a, b, c) = (
        EchoServer::start("a").await,
        EchoServer::start("b").await,
        EchoServer::start("c").await,
    );
    let old = EchoServer::start("old").await;
    // An endpoint with nothing listening: its sessions must move.
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let port = free_port();
    let sticky = |name: &str, carrier: SessionCarrier, backends| {
        let mut rule = rule(name, backends, vec![]);
        rule.session_persistence = Some(SessionPersistence {
            name: if carrier == SessionCarrier::Cookie {
                "cart".into()
            } else {
                "x-session".into()
            },
            carrier,
            absolute_timeout_s: Some(3_600),
            idle_timeout_s: None,
            permanent: false,
            path: Some("/".into()),
        });
        rule
    };
    let mut flaky = service_with("flaky", &[&a], BackendProtocol::Http1);
    flaky.1.endpoints.push(Endpoint {
        address: dead.ip(),
        port: dead.port(),
    });
    let _proxy = InProcessProxy::start(gateway(
        vec![http_listener(
            "http",
            port,
            vec![
                vhost(
                    "http",
                    &["cookie.test"],
                    vec![(
                        prefix("/"),
                        sticky(
                            "cookie",
                            SessionCarrier::Cookie,
                            vec![to("web", 1), to("old", 0)],
                        ),
                    )],
                ),
                vhost(
                    "http",
                    &["header.test"],
                    vec![(
                        prefix("/"),
                        sticky("header", SessionCarrier::Header, vec![to("web", 1)]),
                    )],
                ),
                vhost(
                    "http",
                    &["flaky.test"],
                    vec![(
                        prefix("/"),
                        sticky("flaky", SessionCarrier::Cookie, vec![to("flaky", 1)]),
                    )],
                ),
            ],
        )],
        vec![
            service_with("web", &[&a, &b, &c], BackendProtocol::Http1),
            service("old", &old),
            flaky,
        ],
    ))
    .await;
    let client = client();
    let url = format!("http://127.0.0.1:{port}/");
    let token_of = |echo: &Echo, header: &str| -> String {
        let value = echo
            .headers
            .get(header)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let value = value.strip_prefix("cart=").unwrap_or(value);
        value.split(';').next().unwrap_or_default().to_owned()
    };

    // Without a session the balancer spreads requests, each handed a token.
    let mut first = Vec::new();
    for _ in 0..3 {
        let echo = get(&client, &url, &[("host", "cookie.test")]).await;
        assert_eq!(echo.status, StatusCode::OK);
        let cookie = echo.headers["set-cookie"].to_str().unwrap_or_default();
        assert!(
            cookie.starts_with("cart=") && cookie.ends_with("; Path=/; HttpOnly; SameSite=Lax"),
            "{cookie}"
        );
        first.push((echo.backend().to_owned(), token_of(&echo, "set-cookie")));
    }
    let spread: std::collections::BTreeSet<_> = first.iter().map(|(name, _)| name).collect();
    assert_eq!(spread.len(), 3, "round robin over a, b, c: {first:?}");

    // With one, every request goes back to the endpoint that issued it.
    for (backend, token) in &first {
        for _ in 0..5 {
            let cookie = format!("theme=dark; cart={token}");
            let echo = get(
                &client,
                &url,
                &[("host", "cookie.test"), ("cookie", &cookie)],
            )
            .await;
            assert_eq!(echo.backend(), backend, "sticks to {backend}");
        }
    }

    // A backend whose weight dropped to zero keeps its sessions.
    let now = proxy::session::unix_now_s();
    let to_old = proxy::session::Token {
        endpoint: proxy::session::endpoint_id("old", old.address),
        started_s: now,
        last_s: now,
    };
    let cookie = format!("cart={}", to_old.encode());
    for _ in 0..3 {
        let echo = get(
            &client,
            &url,
            &[("host", "cookie.test"), ("cookie", &cookie)],
        )
        .await;
        assert_eq!(echo.backend(), "old");
    }

    // A token naming no endpoint of the rule, or one past its lifetime, is
    // balanced afresh and replaced.
    let stranger = proxy::session::Token {
        endpoint: proxy::session::endpoint_id("elsewhere", dead),
        ..to_old
    };
    let expired = proxy::session::Token {
        started_s: now - 7_200,
        last_s: now - 7_200,
        ..to_old
    };
    for token in [stranger, expired] {
        let cookie = format!("cart={}", token.encode());
        let echo = get(
            &client,
            &url,
            &[("host", "cookie.test"), ("cookie", &cookie)],
        )
        .await;
        assert!(
            ["a", "b", "c"].contains(&echo.backend()),
            "{}",
            echo.backend()
        );
        assert_ne!(token_of(&echo, "set-cookie"), token.encode());
    }

    // The header carrier works the same way.
    let echo = get(&client, &url, &[("host", "header.test")]).await;
    let token = token_of(&echo, "x-session");
    assert!(!token.is_empty(), "{:?}", echo.headers);
    for _ in 0..5 {
        let again = get(
            &client,
            &url,
            &[("host", "header.test"), ("x-session", &token)],
        )
        .await;
        assert_eq!(again.backend(), echo.backend());
    }

    // A session on an endpoint that stopped answering moves to a live one
    // at once, with a new token.
    let to_dead = proxy::session::Token {
        endpoint: proxy::session::endpoint_id("flaky", dead),
        ..to_old
    };
    let cookie = format!("cart={}", to_dead.encode());
    let echo = get(
        &client,
        &url,
        &[("host", "flaky.test"), ("cookie", &cookie)],
    )
    .await;
    assert_eq!((echo.status, echo.backend()), (StatusCode::OK, "a"));
    let moved = token_of(&echo, "set-cookie");
    assert_eq!(
        proxy::session::Token::parse(&moved).map(|t| t.endpoint),
        Some(proxy::session::endpoint_id("flaky", a.address))
    );
}

#[tokio::test]
async fn a_spent_retry_budget_answers_503_instead_of_retrying() {
    let web = EchoServer::start("web").await;
    let port = free_port();
    let mut budgeted = service("web", &web);
    // No share of requests, one retry per minute: a retry storm is cut.
    budgeted.1.retry_budget = Some(RetryBudget {
        percent: 0,
        interval_ms: 10_000,
        min_retries: 1,
        min_interval_ms: 60_000,
    });
    let mut retried = rule("budget", vec![to("web", 1)], vec![]);
    retried.retry = Some(Retry {
        attempts: 3,
        status_codes: vec![500],
        backoff_ms: 1,
        on_connect_failure: true,
    });
    let _proxy = InProcessProxy::start(gateway(
        vec![http_listener(
            "http",
            port,
            vec![vhost(
                "http",
                &["budget.test"],
                vec![(prefix("/"), retried)],
            )],
        )],
        vec![budgeted],
    ))
    .await;
    let client = client();
    let url = format!("http://127.0.0.1:{port}/flaky");
    // (id, failures) → answer, tries the backend saw.
    let cases = [
        // The minimum rate's one retry is spent here: try, retry, refused.
        ("first", 5, StatusCode::SERVICE_UNAVAILABLE, 2),
        // Nothing left: the first failure is final, as 503.
        ("second", 5, StatusCode::SERVICE_UNAVAILABLE, 1),
        // A request that needs no retry is untouched.
        ("healthy", 0, StatusCode::OK, 1),
    ];
    for (id, fail, want, tries) in cases {
        let answer = get(
            &client,
            &format!("{url}?id={id}&fail={fail}&status=500"),
            &[("host", "budget.test")],
        )
        .await;
        assert_eq!((id, answer.status), (id, want));
        assert_eq!((id, flaky_tries(id)), (id, tries), "tries the backend saw");
    }
}
