//! The fetcher against real local HTTP servers: redirects into refused addresses, names that
//! resolve to refused addresses, limits on size, time and content type, no cookies.
//!
//! The servers listen on 127.0.0.1 (allowlisted for the test, as the first hop) and on
//! 127.0.0.2 — the same loopback interface, but outside the allowlist, so a request that
//! reached it would be a real SSRF; each server counts the requests it got to prove none did.

use confab_previews::fetch::{FetchError, Oversize, StaticResolver, Want};
use confab_previews::vet::Blocked;
use confab_previews::{Allowlist, Fetcher, Limits, Previewer};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

/// What a route answers.
#[derive(Clone)]
enum Reply {
    Ok(&'static str, Vec<u8>),
    Redirect(String),
    RedirectWithCookie(String),
    Slow(Duration),
    /// Declares no length and sends this many bytes.
    Stream(usize),
}

#[derive(Clone)]
struct Site {
    addr: SocketAddr,
    /// Each request's head, as received.
    requests: Arc<Mutex<Vec<String>>>,
}

impl Site {
    async fn start(ip: &str, routes: Vec<(&'static str, Reply)>) -> Site {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let routes = routes.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut n = 0;
                    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                        match sock.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => n += k,
                        }
                    }
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    log.lock().unwrap().push(head.clone());
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let reply = routes
                        .iter()
                        .find(|(p, _)| *p == path)
                        .map(|(_, r)| r.clone());
                    let out: Vec<u8> = match reply {
                        None => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
                        Some(Reply::Ok(ct, body)) => {
                            let mut o = format!("HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len()).into_bytes();
                            o.extend_from_slice(&body);
                            o
                        }
                        Some(Reply::Redirect(to)) => format!("HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").into_bytes(),
                        Some(Reply::RedirectWithCookie(to)) => format!("HTTP/1.1 302 Found\r\nlocation: {to}\r\nset-cookie: session=secret; Path=/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").into_bytes(),
                        Some(Reply::Slow(d)) => {
                            tokio::time::sleep(d).await;
                            b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 0\r\n\r\n".to_vec()
                        }
                        Some(Reply::Stream(len)) => {
                            let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\nconnection: close\r\n\r\n").await;
                            let chunk = vec![b'a'; 16 * 1024];
                            let mut sent = 0;
                            while sent < len {
                                if sock.write_all(&chunk).await.is_err() {
                                    return;
                                }
                                sent += chunk.len();
                            }
                            return;
                        }
                    };
                    let _ = sock.write_all(&out).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Site { addr, requests }
    }

    fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{}", self.addr, path)).unwrap()
    }

    fn hits(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

const HTML: Want = Want {
    accept: "text/html",
    types: &["text/html"],
    max_bytes: 64 * 1024,
    oversize: Oversize::Fail,
};

fn allow_first_hop() -> Allowlist {
    Allowlist::new(vec!["127.0.0.1/32".parse().unwrap()])
}

fn fetcher(allow: Allowlist) -> Fetcher {
    Fetcher::new(Limits::default(), allow).expect("TLS configuration")
}

fn assert_blocked(r: Result<impl std::fmt::Debug, FetchError>, ip: &str, why: Blocked) {
    match r {
        Err(FetchError::Blocked {
            ip: got, why: w, ..
        }) => {
            assert_eq!(got, ip.parse::<IpAddr>().unwrap());
            assert_eq!(w, why);
        }
        other => panic!("expected a refusal of {ip} ({why}), got {other:?}"),
    }
}

#[tokio::test]
async fn an_allowlisted_page_is_fetched_with_a_clear_user_agent() {
    let site = Site::start(
        "127.0.0.1",
        vec![(
            "/",
            Reply::Ok("text/html; charset=utf-8", b"<title>hi</title>".to_vec()),
        )],
    )
    .await;
    let f = fetcher(allow_first_hop())
        .fetch(&site.url("/"), HTML)
        .await
        .unwrap();
    assert_eq!(f.body, b"<title>hi</title>");
    assert_eq!(f.content_type, "text/html");
    let head = site.requests.lock().unwrap()[0].to_ascii_lowercase();
    assert!(head.contains("user-agent: confab-linkpreview/"), "{head}");
    assert!(!head.contains("cookie"), "{head}");
}

#[tokio::test]
async fn loopback_is_refused_without_the_allowlist() {
    let site = Site::start(
        "127.0.0.1",
        vec![("/", Reply::Ok("text/html", b"x".to_vec()))],
    )
    .await;
    let r = fetcher(Allowlist::default())
        .fetch(&site.url("/"), HTML)
        .await;
    assert_blocked(r, "127.0.0.1", Blocked::Loopback);
    assert_eq!(site.hits(), 0, "nothing may reach the server");
}

#[tokio::test]
async fn redirects_into_refused_addresses_are_not_followed() {
    // The victim: a server on 127.0.0.2 (loopback, not allowlisted) that must never be reached.
    let victim = Site::start(
        "127.0.0.2",
        vec![(
            "/admin",
            Reply::Ok("text/html", b"<title>secret</title>".to_vec()),
        )],
    )
    .await;
    let targets = [
        (
            format!("http://{}/admin", victim.addr),
            "127.0.0.2",
            Blocked::Loopback,
        ),
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "169.254.169.254",
            Blocked::CloudMetadata,
        ),
        ("http://10.1.2.3/".to_owned(), "10.1.2.3", Blocked::Private),
        (
            "http://[::ffff:127.0.0.2]/".to_owned(),
            "::ffff:127.0.0.2",
            Blocked::Loopback,
        ),
        (
            "http://[fd00:ec2::254]/".to_owned(),
            "fd00:ec2::254",
            Blocked::CloudMetadata,
        ),
        (
            "http://0.0.0.0/".to_owned(),
            "0.0.0.0",
            Blocked::Unspecified,
        ),
    ];
    for (to, ip, why) in targets {
        let site = Site::start("127.0.0.1", vec![("/go", Reply::Redirect(to.clone()))]).await;
        let r = fetcher(allow_first_hop())
            .fetch(&site.url("/go"), HTML)
            .await;
        assert_eq!(site.hits(), 1, "the first hop was fetched");
        assert_blocked(r, ip, why);
    }
    assert_eq!(victim.hits(), 0, "the redirect target was never contacted");
    // Two hops through allowed addresses before the bad one: still refused.
    let second = Site::start(
        "127.0.0.1",
        vec![(
            "/b",
            Reply::Redirect(format!("http://{}/admin", victim.addr)),
        )],
    )
    .await;
    let first = Site::start(
        "127.0.0.1",
        vec![("/a", Reply::Redirect(second.url("/b").to_string()))],
    )
    .await;
    let r = fetcher(allow_first_hop())
        .fetch(&first.url("/a"), HTML)
        .await;
    assert_blocked(r, "127.0.0.2", Blocked::Loopback);
    assert_eq!((first.hits(), second.hits(), victim.hits()), (1, 1, 0));
}

#[tokio::test]
async fn redirects_are_limited_and_schemes_checked() {
    let looping = Site::start(
        "127.0.0.1",
        vec![("/loop", Reply::Redirect("/loop".into()))],
    )
    .await;
    let r = fetcher(allow_first_hop())
        .fetch(&looping.url("/loop"), HTML)
        .await;
    assert!(matches!(r, Err(FetchError::TooManyRedirects(5))), "{r:?}");
    assert_eq!(looping.hits(), 6, "the first request and five redirects");
    let to_file = Site::start(
        "127.0.0.1",
        vec![("/f", Reply::Redirect("file:///etc/passwd".into()))],
    )
    .await;
    let r = fetcher(allow_first_hop())
        .fetch(&to_file.url("/f"), HTML)
        .await;
    assert!(matches!(r, Err(FetchError::Scheme)), "{r:?}");
    let f = fetcher(Allowlist::default());
    for bad in [
        "ftp://example.com/",
        "gopher://example.com/",
        "file:///etc/passwd",
    ] {
        let r = f.fetch(&Url::parse(bad).unwrap(), HTML).await;
        assert!(matches!(r, Err(FetchError::Scheme)), "{bad}: {r:?}");
    }
    let r = f
        .fetch(&Url::parse("http://user:pw@example.com/").unwrap(), HTML)
        .await;
    assert!(matches!(r, Err(FetchError::Credentials)), "{r:?}");
}

/// Names are vetted by what they resolve to. `localhost` goes through the machine's real
/// resolver; the other names go through a fixed table standing in for a DNS server an attacker
/// controls (the vetting code that runs on the answers is the production one).
#[tokio::test]
async fn names_resolving_to_refused_addresses_are_refused() {
    let victim = Site::start(
        "127.0.0.2",
        vec![("/", Reply::Ok("text/html", b"x".to_vec()))],
    )
    .await;
    let r = fetcher(Allowlist::default())
        .fetch(&Url::parse("http://localhost/").unwrap(), HTML)
        .await;
    match r {
        Err(FetchError::Blocked {
            why: Blocked::Loopback,
            ..
        }) => {}
        other => panic!("localhost must be refused as loopback, got {other:?}"),
    }
    let table = StaticResolver(vec![
        (
            "rebind.evil.test".into(),
            vec!["127.0.0.2".parse().unwrap()],
        ),
        (
            "meta.evil.test".into(),
            vec!["169.254.169.254".parse().unwrap()],
        ),
        (
            "lan.evil.test".into(),
            vec!["192.168.0.10".parse().unwrap()],
        ),
        ("v6.evil.test".into(), vec!["::1".parse().unwrap()]),
        (
            "nat64.evil.test".into(),
            vec!["64:ff9b::a00:1".parse().unwrap()],
        ),
        // One public and one private answer: the private one could be picked, so refuse.
        (
            "mixed.evil.test".into(),
            vec![
                "93.184.215.14".parse().unwrap(),
                "10.0.0.7".parse().unwrap(),
            ],
        ),
    ]);
    let f = Fetcher::with_resolver(Limits::default(), allow_first_hop(), Arc::new(table)).unwrap();
    let port = victim.addr.port();
    let cases = [
        ("rebind.evil.test", "127.0.0.2", Blocked::Loopback),
        ("meta.evil.test", "169.254.169.254", Blocked::CloudMetadata),
        ("lan.evil.test", "192.168.0.10", Blocked::Private),
        ("v6.evil.test", "::1", Blocked::Loopback),
        ("nat64.evil.test", "64:ff9b::a00:1", Blocked::Private),
        ("mixed.evil.test", "10.0.0.7", Blocked::Private),
    ];
    for (host, ip, why) in cases {
        let r = f
            .fetch(
                &Url::parse(&format!("http://{host}:{port}/")).unwrap(),
                HTML,
            )
            .await;
        assert_blocked(r, ip, why);
    }
    assert_eq!(victim.hits(), 0);
    let r = f
        .fetch(&Url::parse("http://missing.evil.test/").unwrap(), HTML)
        .await;
    assert!(matches!(r, Err(FetchError::Resolve(_))), "{r:?}");
}

#[tokio::test]
async fn other_ports_only_for_the_allowlist() {
    let table = StaticResolver(vec![(
        "public.example".into(),
        vec!["93.184.215.14".parse().unwrap()],
    )]);
    let f =
        Fetcher::with_resolver(Limits::default(), Allowlist::default(), Arc::new(table)).unwrap();
    for port in [22, 25, 6379, 8080] {
        let r = f
            .fetch(
                &Url::parse(&format!("http://public.example:{port}/")).unwrap(),
                HTML,
            )
            .await;
        assert!(
            matches!(r, Err(FetchError::Port(p)) if p == port),
            "{port}: {r:?}"
        );
    }
}

#[tokio::test]
async fn no_cookies_are_sent_back() {
    let site = Site::start(
        "127.0.0.1",
        vec![
            ("/login", Reply::RedirectWithCookie("/page".into())),
            (
                "/page",
                Reply::Ok("text/html", b"<title>p</title>".to_vec()),
            ),
        ],
    )
    .await;
    let f = fetcher(allow_first_hop())
        .fetch(&site.url("/login"), HTML)
        .await
        .unwrap();
    assert_eq!(f.url.path(), "/page");
    let reqs = site.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2);
    for r in reqs {
        assert!(
            !r.to_ascii_lowercase().contains("\r\ncookie:"),
            "a cookie was sent: {r}"
        );
    }
}

#[tokio::test]
async fn size_time_and_type_are_limited() {
    let site = Site::start(
        "127.0.0.1",
        vec![
            ("/big", Reply::Ok("text/html", vec![b'a'; 100 * 1024])),
            ("/endless", Reply::Stream(10 * 1024 * 1024)),
            ("/slow", Reply::Slow(Duration::from_secs(30))),
            ("/json", Reply::Ok("application/json", b"{}".to_vec())),
            ("/missing", Reply::Ok("text/html", Vec::new())),
        ],
    )
    .await;
    let f = fetcher(allow_first_hop());
    // Declared too large: refused before reading.
    let r = f.fetch(&site.url("/big"), HTML).await;
    assert!(matches!(r, Err(FetchError::TooLarge(_))), "{r:?}");
    // Undeclared and endless: stopped at the limit, or kept up to it when truncating.
    let r = f.fetch(&site.url("/endless"), HTML).await;
    assert!(matches!(r, Err(FetchError::TooLarge(_))), "{r:?}");
    let truncating = Want {
        oversize: Oversize::Truncate,
        ..HTML
    };
    let page = f.fetch(&site.url("/endless"), truncating).await.unwrap();
    assert_eq!(page.body.len(), HTML.max_bytes);
    // Wrong content type.
    let r = f.fetch(&site.url("/json"), HTML).await;
    assert!(
        matches!(r, Err(FetchError::ContentType(ref t)) if t == "application/json"),
        "{r:?}"
    );
    // Status.
    let r = f.fetch(&site.url("/nope"), HTML).await;
    assert!(matches!(r, Err(FetchError::Status(404))), "{r:?}");
    // Time: the whole fetch has one deadline.
    let quick = Fetcher::new(
        Limits {
            timeout: Duration::from_millis(500),
            ..Limits::default()
        },
        allow_first_hop(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let r = quick.fetch(&site.url("/slow"), HTML).await;
    assert!(matches!(r, Err(FetchError::Timeout)), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_preview_from_opengraph_with_its_image() {
    let png = {
        // 1×1 PNG header with a 32×16 size claim: enough for the size probe.
        let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        v.extend_from_slice(&32u32.to_be_bytes());
        v.extend_from_slice(&16u32.to_be_bytes());
        v.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
        v
    };
    let html = r#"<html><head><meta property="og:title" content="Hello">
        <meta property="og:description" content="World"><meta property="og:site_name" content="Local">
        <meta property="og:image" content="/card.png"></head></html>"#;
    let site = Site::start("127.0.0.1", vec![
        ("/", Reply::Ok("text/html", html.as_bytes().to_vec())),
        // The header lies; the bytes decide.
        ("/card.png", Reply::Ok("text/plain", png)),
        ("/svg", Reply::Ok("text/html", br#"<meta property="og:title" content="S"><meta property="og:image" content="/i.svg">"#.to_vec())),
        ("/i.svg", Reply::Ok("image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec())),
        ("/empty", Reply::Ok("text/html", b"<p>nothing</p>".to_vec())),
    ]).await;
    let p = Previewer::new(fetcher(allow_first_hop()));
    let got = p.preview(&site.url("/")).await.unwrap().unwrap();
    assert_eq!(got.title.as_deref(), Some("Hello"));
    assert_eq!(got.description.as_deref(), Some("World"));
    assert_eq!(got.site_name.as_deref(), Some("Local"));
    let img = got.image.unwrap();
    assert_eq!(
        (img.content_type, img.width, img.height),
        ("image/png", 32, 16)
    );
    let svg = p.preview(&site.url("/svg")).await.unwrap().unwrap();
    assert!(svg.image.is_none(), "SVG is not served");
    assert!(p.preview(&site.url("/empty")).await.unwrap().is_none());
}

#[tokio::test]
async fn oembed_fills_what_the_page_lacks() {
    let html = r#"<html><head><title>Video page</title>
        <link rel="alternate" type="application/json+oembed" href="/oembed.json?url=x">
        </head></html>"#;
    let oembed = br#"{"version":"1.0","type":"video","title":"A video","author_name":"Someone",
        "provider_name":"Tube","thumbnail_url":"/thumb.png","thumbnail_width":32,"thumbnail_height":16}"#;
    let mut thumb = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    thumb.extend_from_slice(&32u32.to_be_bytes());
    thumb.extend_from_slice(&16u32.to_be_bytes());
    thumb.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    let site = Site::start(
        "127.0.0.1",
        vec![
            ("/watch", Reply::Ok("text/html", html.as_bytes().to_vec())),
            (
                "/oembed.json?url=x",
                Reply::Ok("application/json", oembed.to_vec()),
            ),
            ("/thumb.png", Reply::Ok("image/png", thumb)),
        ],
    )
    .await;
    let p = Previewer::new(fetcher(allow_first_hop()));
    let got = p.preview(&site.url("/watch")).await.unwrap().unwrap();
    // The page's own <title> wins; oEmbed gives what the page lacks.
    assert_eq!(got.title.as_deref(), Some("Video page"));
    assert_eq!(got.description.as_deref(), Some("Someone"));
    assert_eq!(got.site_name.as_deref(), Some("Tube"));
    let img = got.image.unwrap();
    assert_eq!((img.width, img.height), (32, 16));
    assert_eq!(site.hits(), 3);
}

/// HTTPS is verified: a server with a certificate no CA signed is refused, not trusted.
#[tokio::test]
async fn https_certificates_are_verified() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(Mutex::new(Vec::new()));
    let seen = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let r = acceptor.accept(sock).await;
            seen.lock().unwrap().push(r.is_ok());
        }
    });
    let url = Url::parse(&format!("https://{addr}/")).unwrap();
    let r = fetcher(allow_first_hop()).fetch(&url, HTML).await;
    match r {
        Err(FetchError::Http(msg)) => assert!(msg.contains("TLS"), "{msg}"),
        other => panic!("a self-signed certificate must be refused, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        *handshakes.lock().unwrap(),
        vec![false],
        "one handshake, which failed"
    );
}

/// The same the other way round: the first hop on 127.0.0.2 (allowlisted alone), redirecting to
/// 127.0.0.1 and to `localhost`, where a server waits that must never be asked.
#[tokio::test]
async fn redirects_to_127_0_0_1_and_localhost_are_refused() {
    let victim = Site::start(
        "127.0.0.1",
        vec![(
            "/admin",
            Reply::Ok("text/html", b"<title>secret</title>".to_vec()),
        )],
    )
    .await;
    let port = victim.addr.port();
    let allow = Allowlist::new(vec!["127.0.0.2/32".parse().unwrap()]);
    for to in [
        format!("http://127.0.0.1:{port}/admin"),
        format!("http://localhost:{port}/admin"),
        format!("http://[::1]:{port}/admin"),
    ] {
        let site = Site::start("127.0.0.2", vec![("/go", Reply::Redirect(to.clone()))]).await;
        let r = fetcher(allow.clone()).fetch(&site.url("/go"), HTML).await;
        assert_eq!(site.hits(), 1, "the allowlisted first hop was fetched");
        match r {
            Err(FetchError::Blocked {
                why: Blocked::Loopback,
                ..
            }) => {}
            other => panic!("{to}: expected a loopback refusal, got {other:?}"),
        }
    }
    assert_eq!(victim.hits(), 0);
}
