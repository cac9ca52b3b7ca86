//! Deployment: built-in HTTPS (REST and the gateway over TLS, certificate reload, the
//! plain-HTTP redirect), the client IP behind trusted proxies, the self-check in `/readyz`,
//! and the `confab` binary's `doctor` and `--version`.

use crate::common::TestApp;
use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls_pki_types::CertificateDer;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Confab test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "confab-tls-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Pki { ca, dir }
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.join("fullchain.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join("privkey.pem")
    }

    /// Issues a certificate for localhost named `cn`, writes it over the files and returns it.
    fn issue(&self, cn: &str) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.ca).unwrap();
        std::fs::write(self.cert_path(), cert.pem() + &self.ca.pem()).unwrap();
        std::fs::write(self.key_path(), key.serialize_pem()).unwrap();
        cert.der().clone()
    }

    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// A TLS connection to `port` as "localhost": the stream and the leaf it was served.
    async fn connect(
        &self,
        port: u16,
    ) -> (
        tokio_rustls::client::TlsStream<TcpStream>,
        CertificateDer<'static>,
    ) {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(self.client_config());
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, tcp).await.expect("TLS handshake");
        let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        (tls, leaf)
    }
}

impl Pki {
    /// A JSON POST over HTTPS (HTTP/1.1 by hand: the test client has no TLS of its own).
    async fn post(&self, port: u16, path: &str, body: Value) -> (u16, Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut tls, _) = self.connect(port).await;
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        // A TLS close without close_notify is fine here: the whole response has arrived.
        let _ = tls.read_to_end(&mut response).await;
        let response = String::from_utf8_lossy(&response);
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn next_json<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

#[tokio::test]
async fn https_serves_rest_and_the_gateway_and_reloads_its_certificate() {
    provider();
    let pki = Pki::new();
    let first = pki.issue("first");
    let (cert, key) = (pki.cert_path(), pki.key_path());
    let app = TestApp::spawn_with(|c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.http_redirect_bind = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let running = app.running.as_ref().unwrap();
    let port = app.addr.port();

    // REST over HTTPS, trusting only the test CA.
    let (status, body) = pki
        .post(
            port,
            "/api/v1/auth/register",
            json!({"username": "tls_user", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    // Plain HTTP on the TLS port is not served.
    assert!(reqwest::get(format!("http://{}/healthz", app.addr))
        .await
        .is_err());

    // The gateway over TLS (wss), from a browser origin allowed by default.
    let (tls, leaf) = pki.connect(port).await;
    assert_eq!(leaf, first);
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "wss://localhost:{port}/api/v1/gateway"
        ))
        .unwrap();
    request.headers_mut().insert(
        "origin",
        format!("https://localhost:{port}").parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::client_async(request, tls)
        .await
        .expect("WebSocket over TLS");
    assert_eq!(next_json(&mut ws).await["op"], 10);
    ws.send(Message::Text(
        json!({"op": 2, "d": {"token": token}}).to_string().into(),
    ))
    .await
    .unwrap();
    let ready = next_json(&mut ws).await;
    assert_eq!(ready["t"], "READY", "{ready}");

    // A new certificate is served after a reload; the open gateway connection stays.
    let second = pki.issue("second");
    assert_ne!(second, first);
    assert!(running.reload_tls().unwrap());
    let (_, leaf) = pki.connect(port).await;
    assert_eq!(leaf, second, "the reloaded certificate is served");
    ws.send(Message::Text(json!({"op": 1, "d": 1}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut ws).await["op"],
        11,
        "the connection made before the reload still works"
    );
    // The start-up table knows it serves HTTPS.
    let report = confab_signaling::doctor::startup(running).await;
    let listener = report.get("HTTP listener").unwrap();
    assert!(listener.detail.starts_with("https://"), "{listener:?}");
    assert!(!report.fatal(), "{}", report.table());

    // A broken pair is refused and the served certificate stays.
    std::fs::write(pki.key_path(), "not a key").unwrap();
    let err = running.reload_tls().unwrap_err();
    assert!(format!("{err:#}").contains("privkey.pem"), "{err:#}");
    let (_, leaf) = pki.connect(port).await;
    assert_eq!(leaf, second);

    // The plain-HTTP side redirects to https, except /healthz.
    let redirect = running.redirect_addr.expect("redirect listener");
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = plain
        .get(format!("http://{redirect}/channels/1?x=y"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 308);
    assert_eq!(
        resp.headers()["location"],
        format!("https://127.0.0.1:{port}/channels/1?x=y").as_str()
    );
    let resp = plain
        .get(format!("http://{redirect}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn redirect_goes_to_the_public_url() {
    provider();
    let pki = Pki::new();
    pki.issue("only");
    let (cert, key) = (pki.cert_path(), pki.key_path());
    let app = TestApp::spawn_with(|c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.public_url = Some("https://chat.example.org".into());
        c.http_redirect_bind = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let redirect = app.running.as_ref().unwrap().redirect_addr.unwrap();
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = plain
        .get(format!("http://{redirect}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 308);
    assert_eq!(resp.headers()["location"], "https://chat.example.org/");
}

/// POSTs a bogus refresh token (the auth bucket, per IP) claiming to come from `forwarded`.
async fn refresh_from(app: &TestApp, forwarded: &str) -> u16 {
    app.http
        .post(app.url("/auth/refresh"))
        .header("x-forwarded-for", forwarded)
        .json(&json!({"refresh_token": "nope"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    // Not trusted: a client cannot escape its per-IP limit by inventing X-Forwarded-For.
    let app = TestApp::spawn_with(|c| c.rate_limit_scale = 0.25).await;
    let mut limited = false;
    for i in 0..30 {
        if refresh_from(&app, &format!("198.51.100.{i}")).await == 429 {
            limited = true;
            break;
        }
    }
    assert!(
        limited,
        "spoofed X-Forwarded-For from an untrusted peer was believed"
    );

    // Trusted (the test connects from 127.0.0.1): each forwarded client has its own bucket.
    let app = TestApp::spawn_with(|c| {
        c.rate_limit_scale = 0.25;
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    for i in 0..30 {
        // What a client claims left of the proxy's own entry does not matter.
        let status = refresh_from(&app, &format!("6.6.6.6, 198.51.100.{i}")).await;
        assert_ne!(status, 429, "client {i} limited by others' requests");
    }
    let mut limited = false;
    for _ in 0..30 {
        if refresh_from(&app, "6.6.6.6, 203.0.113.5").await == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "one forwarded client was never limited");
    assert_ne!(refresh_from(&app, "203.0.113.6").await, 429);

    // The login session records the forwarded client.
    let resp = app
        .http
        .post(app.url("/auth/register"))
        .header("x-real-ip", "192.0.2.44")
        .json(&json!({"username": "proxied", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let token = resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, sessions) = app.get("/users/@me/sessions", &token).await;
    assert_eq!(status, 200);
    assert_eq!(sessions[0]["ip"], "192.0.2.44", "{sessions}");
}

#[tokio::test]
async fn readyz_carries_the_self_check() {
    let app = TestApp::spawn_with(|c| c.public_url = Some("https://chat.example.org".into())).await;
    let v: Value = app
        .http
        .get(format!("http://{}/readyz", app.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["ready"], true, "{v}");
    assert_eq!(v["database"], true);
    assert_eq!(v["sfu"], true);
    let checks = &v["checks"];
    assert_eq!(checks["database"]["status"], "ok", "{v}");
    assert_eq!(checks["clock"]["status"], "ok", "{v}");
    // Announcing 127.0.0.1 for a public domain is the classic silent-voice mistake.
    assert_eq!(checks["media IP"]["status"], "warn", "{v}");
    assert!(checks["media IP"]["fix"]
        .as_str()
        .unwrap()
        .contains("--public-ip"));
    assert_eq!(checks["public URL"]["status"], "ok");
}

fn confab(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env("CONFAB_LOG", "off")
        .output()
        .expect("runs the confab binary")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// Multi-threaded: the app keeps answering while the test waits for the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confab_doctor_checks_without_serving() {
    let db = crate::common::fresh_database().await;
    let data = std::env::temp_dir().join(format!("confab-doctor-it-{}", std::process::id()));
    let data_dir = data.to_str().unwrap();
    let udp = free_udp_port().to_string();
    let base = [
        "doctor",
        "--database-url",
        &db,
        "--bind",
        "127.0.0.1:0",
        "--data-dir",
        data_dir,
        "--udp-port",
        &udp,
    ];
    let out = confab(&[&base[..], &["--public-url", "https://chat.example.org"]].concat());
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line in\n{all}"))
            .to_string()
    };
    assert!(line("database").contains("ok"), "{all}");
    assert!(line("media IP").contains("WARN"), "{all}");
    assert!(stdout.contains("fix: set --public-ip"), "{all}");
    assert!(line("UDP media port").contains("ok"), "{all}");
    assert!(line("clock").contains("ok"), "{all}");
    assert!(line("NATS").contains("not set"), "{all}");
    assert!(
        !stdout.contains("Confab is running"),
        "doctor must not serve: {all}"
    );

    // A media port already taken is fatal: exit 1 with the reason, no panic.
    let taken = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut args = base.to_vec();
    args[8] = &port;
    let out = confab(&args);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("FATAL") && all.contains("cannot bind UDP"),
        "{all}"
    );
    assert!(!all.contains("panicked"), "{all}");
    drop(taken);

    // Unreadable TLS files and an unreachable database are fatal too.
    let out = confab(
        &[
            &base[..],
            &[
                "--tls-cert",
                "/nonexistent/fullchain.pem",
                "--tls-key",
                "/nonexistent/privkey.pem",
            ],
        ]
        .concat(),
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("/nonexistent/fullchain.pem"), "{all}");
    let mut args = base.to_vec();
    args[2] = "postgres://nobody@127.0.0.1:1/none";
    let out = confab(&args);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(line_of(&all, "database").contains("FATAL"), "{all}");

    // Beside a running Confab its port is not a problem; held by something else it is.
    let app = TestApp::spawn().await;
    let running_addr = app.addr.to_string();
    let mut args = base.to_vec();
    args[4] = &running_addr;
    let out = confab(&args);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        line_of(&all, "HTTP listener").contains("in use by a running Confab"),
        "{all}"
    );
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_addr = other.local_addr().unwrap().to_string();
    let listener = std::thread::spawn(move || {
        // Accepts the probe and answers nothing Confab-like.
        if let Ok((mut s, _)) = other.accept() {
            use std::io::Write;
            let _ = s.write_all(b"HTTP/1.0 404 Not Found\r\n\r\n");
        }
    });
    args[4] = &other_addr;
    let out = confab(&args);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(line_of(&all, "HTTP listener").contains("FATAL"), "{all}");
    listener.join().unwrap();

    // A configuration that cannot be loaded at all: exit 2 and a sentence.
    let out = confab(&["doctor", "--tls-cert", "cert.pem"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("--tls-cert and --tls-key go together"),
        "{all}"
    );
    let _ = std::fs::remove_dir_all(Path::new(&data));
}

fn line_of(all: &str, name: &str) -> String {
    all.lines()
        .find(|l| l.trim_start().starts_with(name))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn version_names_the_commit() {
    let out = confab(&["--version"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!("confab {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{all}"
    );
}

/// Accepts any certificate: the tests below look at what is served, not whether it is trusted.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A handshake as "chat.example.org" offering `alpn`: the leaf served and the protocol agreed.
async fn handshake(
    port: u16,
    alpn: &[u8],
) -> Result<(CertificateDer<'static>, Option<Vec<u8>>), std::io::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls_pki_types::ServerName::try_from("chat.example.org").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let (_, conn) = tls.get_ref();
    Ok((
        conn.peer_certificates().unwrap()[0].clone(),
        conn.alpn_protocol().map(<[u8]>::to_vec),
    ))
}

/// The acmeIdentifier extension (RFC 8737) of a certificate: the digest it carries.
fn acme_identifier(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).unwrap();
    let oid = x509_parser::oid_registry::Oid::from(&[1, 3, 6, 1, 5, 5, 7, 1, 31]).unwrap();
    let ext = parsed.extensions().iter().find(|e| e.oid == oid)?;
    // An OCTET STRING of 32 bytes: tag, length, digest.
    Some(ext.value[2..].to_vec())
}

#[tokio::test]
async fn acme_serves_a_placeholder_and_answers_tls_alpn_challenges() {
    let data = std::env::temp_dir().join(format!(
        "confab-acme-it-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let data_dir = data.clone();
    let app = TestApp::spawn_with(|c| {
        c.data_dir = data_dir;
        c.public_url = Some("https://chat.example.org".into());
        c.acme_email = Some("ops@example.org".into());
        // No CA here: the order fails (and is retried later); the listener serves meanwhile.
        c.acme_directory = Some("http://127.0.0.1:1/directory".into());
    })
    .await;
    let port = app.addr.port();
    let store = app.running.as_ref().unwrap().tls.clone().expect("TLS on");

    // Browsers get the self-signed placeholder for the domain.
    let (leaf, alpn) = handshake(port, b"http/1.1").await.expect("handshake");
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
    assert_eq!(parsed.issuer(), parsed.subject(), "a placeholder");
    assert!(acme_identifier(&leaf).is_none());

    // No challenge pending: an acme-tls/1 handshake gets no certificate.
    assert!(handshake(port, b"acme-tls/1").await.is_err());

    // With a challenge pending, validations get it and browsers still the placeholder.
    let digest = [7u8; 32];
    store.set_challenge(Some(
        confab_signaling::acme::challenge_certificate("chat.example.org", &digest).unwrap(),
    ));
    let (challenge, alpn) = handshake(port, b"acme-tls/1").await.expect("validation");
    assert_eq!(alpn.as_deref(), Some(&b"acme-tls/1"[..]));
    assert_eq!(acme_identifier(&challenge).as_deref(), Some(&digest[..]));
    let (leaf_again, _) = handshake(port, b"http/1.1").await.unwrap();
    assert_eq!(leaf_again, leaf);
    drop(app);
    let _ = std::fs::remove_dir_all(&data);
}

/// nginx started by a test with the reverse-proxy block of docs/deploy.md.
struct Nginx {
    child: tokio::process::Child,
    addr: std::net::SocketAddr,
    dir: PathBuf,
}

impl Nginx {
    /// Listens on 127.0.0.2 and connects to `upstream` from 127.0.0.1; `None` without nginx.
    async fn start(upstream: std::net::SocketAddr) -> Option<Nginx> {
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())?;
        let dir = std::env::temp_dir().join(format!(
            "confab-nginx-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.2:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.display();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 128; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    server {{
        listen 127.0.0.2:{port};
        location / {{
            proxy_pass http://{upstream};
            proxy_bind 127.0.0.1;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 120s;
            proxy_send_timeout 120s;
        }}
    }}
}}
"#
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = tokio::process::Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .kill_on_drop(true)
            .spawn()
            .expect("nginx starts");
        let addr: std::net::SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_ok() {
                return Some(Nginx { child, addr, dir });
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "nginx did not listen: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client connecting from `ip` (a loopback address of its own, so nginx tells it apart).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn behind_nginx_the_gateway_works_and_limits_count_the_real_client() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limit_scale = 0.25;
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let Some(nginx) = Nginx::start(app.addr).await else {
        eprintln!("SKIPPED: nginx is not installed (Debian package nginx-light)");
        return;
    };
    let base = format!("http://{}/api/v1", nginx.addr);
    let refresh = |client: reqwest::Client, spoof: String| {
        let url = format!("{base}/auth/refresh");
        async move {
            client
                .post(url)
                .header("x-forwarded-for", spoof)
                .json(&json!({"refresh_token": "nope"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Client A (127.0.0.3) exhausts its bucket whatever X-Forwarded-For it sends: nginx
    // appends the address it saw, and that is the rightmost untrusted hop.
    let a = client_from("127.0.0.3");
    let mut limited = false;
    for i in 0..30 {
        if refresh(a.clone(), format!("198.51.100.{i}")).await == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "client A escaped its limit through nginx");
    // Client B (127.0.0.4), behind the same nginx, has a bucket of its own.
    let b = client_from("127.0.0.4");
    assert_ne!(refresh(b.clone(), "6.6.6.6".into()).await, 429);

    // Its login session records its own address, not nginx's.
    let resp = b
        .post(format!("{base}/auth/register"))
        .json(&json!({"username": "via_nginx", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let token = resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let sessions: Value = b
        .get(format!("{base}/users/@me/sessions"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sessions[0]["ip"], "127.0.0.4", "{sessions}");

    // The gateway's WebSocket upgrade passes through nginx.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/api/v1/gateway", nginx.addr))
            .await
            .expect("WebSocket through nginx");
    assert_eq!(next_json(&mut ws).await["op"], 10);
    ws.send(Message::Text(
        json!({"op": 2, "d": {"token": token}}).to_string().into(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["t"], "READY");
    ws.send(Message::Text(json!({"op": 1, "d": 1}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["op"], 11);
}

#[tokio::test]
async fn voice_ice_servers_carry_short_lived_turn_credentials() {
    let secret = "correct-horse-battery-staple-42";
    let urls = vec![
        "turn:203.0.113.7:3478?transport=udp".to_string(),
        "turn:203.0.113.7:3478?transport=tcp".to_string(),
    ];
    let app = TestApp::spawn_with(|c| {
        c.turn = confab_signaling::turn::TurnSettings::new(
            &urls,
            Some(secret),
            std::time::Duration::from_secs(600),
        )
        .unwrap();
    })
    .await;
    let alice = app.register("ice_alice").await;
    let (status, _) = app
        .request(reqwest::Method::GET, "/voice/ice-servers", None, None)
        .await;
    assert_eq!(status, 401, "credentials only for signed-in users");

    let before = chrono::Utc::now().timestamp() as u64;
    let (status, body) = app.get("/voice/ice-servers", &alice.token).await;
    assert_eq!(status, 200, "{body}");
    let server = &body["ice_servers"][0];
    assert_eq!(server["urls"], json!(urls));
    let username = server["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, alice.id, "the username names the user");
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        (before + 600..=before + 602).contains(&expiry),
        "{expiry} vs {before}"
    );
    assert_eq!(body["expires_at"], json!(expiry));
    // What coturn computes from its static-auth-secret for this username.
    let key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        secret.as_bytes(),
    );
    let tag = aws_lc_rs::hmac::sign(&key, username.as_bytes());
    use base64::Engine;
    let expected = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    assert_eq!(server["credential"], json!(expected));

    // Without TURN: an empty list, so clients go direct.
    let plain = TestApp::spawn().await;
    let bob = plain.register("ice_bob").await;
    let (status, body) = plain.get("/voice/ice-servers", &bob.token).await;
    assert_eq!((status, body), (200, json!({ "ice_servers": [] })));
}
