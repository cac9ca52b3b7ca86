//! Built-in HTTPS: `--tls-cert`/`--tls-key` served with rustls, reloaded on SIGHUP, and the
//! optional plain-HTTP listener that redirects to https (`--http-redirect-bind`).
//!
//! **Reload without dropping connections.** The server's rustls config never changes; its
//! certificate resolver (`CertStore`) hands every new handshake the `CertifiedKey` it holds
//! now. A reload parses both files and swaps that `Arc`: connections already open keep the
//! session they negotiated, the next handshake gets the new certificate, and a bad pair of
//! files is refused with the old one kept.
//!
//! **Handshakes off the accept path.** `TlsListener` accepts TCP connections in a task of its
//! own and runs each handshake in its own task (bounded in number and time), handing finished
//! connections to `axum::serve` through a channel: a client that stalls mid-handshake holds up
//! nobody else.

use anyhow::Context;
use axum::response::{IntoResponse, Redirect, Response};
use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Handshakes in progress at once; further connections wait in the kernel's accept queue.
const MAX_HANDSHAKES: usize = 512;
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads a certificate chain and its private key from PEM files and checks that they belong
/// together.
pub fn load_pair(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading TLS certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing TLS certificate {} (PEM)", cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{} holds no certificate (expected PEM \"BEGIN CERTIFICATE\" blocks)",
        cert.display()
    );
    let key_der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading TLS private key {} (PEM)", key.display()))?;
    let certified = CertifiedKey::from_der(chain, key_der, &provider()).with_context(|| {
        format!(
            "{} and {} do not make a usable pair",
            cert.display(),
            key.display()
        )
    })?;
    Ok(certified)
}

/// The certificate served to every new handshake, swapped on reload.
#[derive(Debug)]
pub struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// With ACME: the tls-alpn-01 challenge certificate, served only to handshakes that ask
    /// for the `acme-tls/1` protocol (the CA's validation), while an order is pending.
    challenge: Option<RwLock<Option<Arc<CertifiedKey>>>>,
}

impl CertStore {
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<Self>> {
        let pair = load_pair(cert, key)?;
        Ok(Self::with_pair(cert, key, pair, false))
    }

    /// A store serving `pair` until the files `cert` and `key` are (re)loaded; `acme` turns on
    /// answering tls-alpn-01 challenges.
    pub fn with_pair(cert: &Path, key: &Path, pair: CertifiedKey, acme: bool) -> Arc<Self> {
        Arc::new(CertStore {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(pair)),
            challenge: acme.then(|| RwLock::new(None)),
        })
    }

    /// Sets (or with `None` clears) the tls-alpn-01 challenge certificate.
    pub fn set_challenge(&self, certificate: Option<CertifiedKey>) {
        if let Some(slot) = &self.challenge {
            *slot.write() = certificate.map(Arc::new);
        }
    }

    /// Reads the files again; on success new handshakes get the new certificate, on failure
    /// the old one stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let pair = load_pair(&self.cert, &self.key)?;
        *self.current.write() = Arc::new(pair);
        ::metrics::counter!("confab_tls_reloads_total").increment(1);
        Ok(())
    }

    /// The certificate served now (its chain, leaf first).
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().clone()
    }

    /// rustls server config answering with this store's certificate (HTTP/1.1 only: the
    /// gateway's WebSocket upgrade is an HTTP/1.1 request).
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<Arc<ServerConfig>> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if self.challenge.is_some() {
            config
                .alpn_protocols
                .push(crate::acme::ACME_TLS_ALPN.to_vec());
        }
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(slot) = &self.challenge {
            let acme = hello
                .alpn()
                .is_some_and(|mut protocols| protocols.any(|p| p == crate::acme::ACME_TLS_ALPN));
            if acme {
                // Only the challenge answers a validation; none pending, the handshake fails.
                return slot.read().clone();
            }
        }
        Some(self.current())
    }
}

/// TLS connections ready for `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener` until `shutdown`.
    pub fn spawn(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(config),
            tx,
            shutdown,
        ));
        Ok(TlsListener { ready, local })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    shutdown: CancellationToken,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = handshakes.clone().acquire_owned() => p.expect("never closed"),
        };
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: as axum's own listener does.
                    tracing::warn!(error = %e, "accepting a TLS connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => {
                    ::metrics::counter!("confab_tls_handshake_failures_total").increment(1);
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    ::metrics::counter!("confab_tls_handshake_failures_total").increment(1);
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop ended (shutdown): nothing more comes; serve's graceful shutdown
            // ends the serving.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The plain-HTTP side when TLS is on: `/healthz` answers (load balancers and container
/// health checks probe it), everything else is redirected with 308 to the same path on https.
pub fn redirect_router(public_url: Option<String>, https_port: u16) -> axum::Router {
    use axum::extract::Request;
    use axum::routing::get;
    let target = move |req: Request| {
        let public_url = public_url.clone();
        async move { redirect(&req, public_url.as_deref(), https_port) }
    };
    axum::Router::new()
        .route("/healthz", get(crate::http::ops::healthz))
        .fallback(target)
}

fn redirect(req: &axum::extract::Request, public_url: Option<&str>, https_port: u16) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let base = match public_url.filter(|u| u.starts_with("https://")) {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            // The host the client asked for, with the HTTPS port.
            let host = req
                .headers()
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.parse::<axum::http::uri::Authority>().ok());
            let Some(host) = host else {
                return (
                    axum::http::StatusCode::BAD_REQUEST,
                    "use https:// (no Host header to redirect to)",
                )
                    .into_response();
            };
            if https_port == 443 {
                format!("https://{}", host.host())
            } else if host.host().contains(':') {
                format!(
                    "https://[{}]:{https_port}",
                    host.host().trim_matches(['[', ']'])
                )
            } else {
                format!("https://{}:{https_port}", host.host())
            }
        }
    };
    Redirect::permanent(&format!("{base}{path}")).into_response()
}

/// Describes the TLS and ACME metrics and shows them at zero before their first event
/// (docs/metrics.md, "TLS").
pub fn describe_metrics() {
    for (name, help) in [
        (
            "confab_tls_reloads_total",
            "Certificate reloads (SIGHUP or a renewed ACME certificate) that took effect.",
        ),
        (
            "confab_tls_handshake_failures_total",
            "TLS handshakes on the HTTPS listener that failed or timed out.",
        ),
        (
            "confab_acme_failures_total",
            "Certificate orders over ACME that failed (retried later).",
        ),
    ] {
        ::metrics::describe_counter!(name, help);
        ::metrics::counter!(name).absolute(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(host: Option<&str>, public_url: Option<&str>, https_port: u16) -> String {
        let mut req = axum::http::Request::builder().uri("/invite/abc?x=1");
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let resp = redirect(
            &req.body(axum::body::Body::empty()).unwrap(),
            public_url,
            https_port,
        );
        assert_eq!(resp.status(), 308);
        resp.headers()["location"].to_str().unwrap().to_string()
    }

    #[test]
    fn redirects_keep_the_path_and_find_the_https_port() {
        assert_eq!(
            location(Some("chat.example.org"), None, 443),
            "https://chat.example.org/invite/abc?x=1"
        );
        assert_eq!(
            location(Some("chat.example.org:80"), None, 8443),
            "https://chat.example.org:8443/invite/abc?x=1"
        );
        assert_eq!(
            location(Some("[2001:db8::1]:80"), None, 8443),
            "https://[2001:db8::1]:8443/invite/abc?x=1"
        );
        // The public URL wins over whatever Host the client sent.
        assert_eq!(
            location(Some("evil.example"), Some("https://chat.example.org/"), 443),
            "https://chat.example.org/invite/abc?x=1"
        );
        let no_host = axum::http::Request::builder()
            .uri("/")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(redirect(&no_host, None, 443).status(), 400);
    }
}
