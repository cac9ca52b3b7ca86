//! The SSRF-safe fetcher. Each hop of a fetch:
//!
//! 1. only `http`/`https`, no credentials in the URL, port 80/443 (or the scheme's default);
//! 2. the host is resolved here (or is an IP literal) and **every** address is vetted
//!    ([`crate::vet`]); one refused address refuses the host;
//! 3. this crate opens the TCP connection itself, to one of exactly those vetted addresses
//!    (no proxy, no connection pool), so a second DNS answer (rebinding) is never used; TLS
//!    and HTTP/1.1 run over that connection (hyper's connection-level client);
//! 4. redirects are not followed by the HTTP client: a 3xx comes back here and its `Location`
//!    starts again at step 1, at most [`Limits::max_redirects`] times.
//!
//! There is no cookie store and no `Cookie` header is ever set. Bodies are read frame by frame
//! up to a byte limit; the whole fetch, every hop included, runs under one deadline.

use crate::vet::{self, Allowlist, Blocked};
use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderValue, ACCEPT, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION,
    USER_AGENT,
};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use url::Url;

/// Why a fetch gave nothing.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("only http and https URLs are fetched")]
    Scheme,
    #[error("URLs with user names or passwords are not fetched")]
    Credentials,
    #[error("port {0} is not fetched (80 and 443 only)")]
    Port(u16),
    #[error("{host} resolves to a refused {why} ({ip})")]
    Blocked {
        host: String,
        ip: IpAddr,
        why: Blocked,
    },
    #[error("{0} did not resolve")]
    Resolve(String),
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    #[error("a redirect without a usable Location")]
    BadRedirect,
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("content type {0:?} is not wanted here")]
    ContentType(String),
    #[error("the response is larger than {0} bytes")]
    TooLarge(usize),
    #[error("timed out")]
    Timeout,
    #[error("request failed: {0}")]
    Http(String),
}

/// Limits on one fetch (all hops of it).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_redirects: usize,
    /// Deadline for the whole fetch, redirects and body included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_redirects: 5,
            timeout: Duration::from_secs(8),
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// What to do with a body larger than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
    /// Keep the first `max` bytes (an HTML page's `<head>` comes first).
    Truncate,
    /// Fail (a truncated image or JSON document is useless).
    Fail,
}

/// One kind of thing to fetch: which content types are accepted and how much of it.
#[derive(Debug, Clone, Copy)]
pub struct Want {
    pub accept: &'static str,
    /// Accepted `Content-Type` essences; empty = any (the caller sniffs the bytes).
    pub types: &'static [&'static str],
    pub max_bytes: usize,
    pub oversize: Oversize,
}

/// A fetched body.
#[derive(Debug)]
pub struct Fetched {
    /// Where it was found, after redirects.
    pub url: Url,
    /// The `Content-Type` essence, lowercased (may be empty).
    pub content_type: String,
    pub body: Vec<u8>,
}

/// Resolves host names. The system resolver in production; tests plug in a fixed table to
/// see what the vetting does with answers a real resolver could give.
pub trait Resolver: Send + Sync + 'static {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'a>>;
}

/// The operating system's resolver (getaddrinfo, through tokio).
#[derive(Debug, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'a>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host, 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// A fixed table of names, for tests.
#[derive(Debug, Default, Clone)]
pub struct StaticResolver(pub Vec<(String, Vec<IpAddr>)>);

impl Resolver for StaticResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'a>> {
        let found = self
            .0
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(host))
            .map(|(_, ips)| ips.clone());
        Box::pin(async move {
            found.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such name"))
        })
    }
}

/// Fetches URLs under the rules above.
#[derive(Clone)]
pub struct Fetcher {
    user_agent: HeaderValue,
    limits: Limits,
    allow: Allowlist,
    resolver: Arc<dyn Resolver>,
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("limits", &self.limits)
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

/// The User-Agent sent with every request.
pub fn user_agent() -> String {
    format!(
        "Confab-LinkPreview/{} (+self-hosted)",
        env!("CARGO_PKG_VERSION")
    )
}

impl Fetcher {
    /// A fetcher with the system resolver and the machine's root certificates.
    pub fn new(limits: Limits, allow: Allowlist) -> Result<Self, rustls::Error> {
        Self::with_resolver(limits, allow, Arc::new(SystemResolver))
    }

    /// A fetcher that resolves names with `resolver` (tests use a fixed table).
    pub fn with_resolver(
        limits: Limits,
        allow: Allowlist,
        resolver: Arc<dyn Resolver>,
    ) -> Result<Self, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        // A machine without a CA bundle still fetches http; https then fails to verify.
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Fetcher {
            user_agent: HeaderValue::from_str(&user_agent())
                .unwrap_or(HeaderValue::from_static("Confab-LinkPreview")),
            limits,
            allow,
            resolver,
            tls: Arc::new(tls),
        })
    }

    /// Fetches `url`, following up to `max_redirects` redirects, each one vetted.
    pub async fn fetch(&self, url: &Url, want: Want) -> Result<Fetched, FetchError> {
        let deadline = Instant::now() + self.limits.timeout;
        match tokio::time::timeout_at(deadline.into(), self.fetch_hops(url, want, deadline)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout),
        }
    }

    async fn fetch_hops(
        &self,
        url: &Url,
        want: Want,
        deadline: Instant,
    ) -> Result<Fetched, FetchError> {
        let mut url = url.clone();
        for _hop in 0..=self.limits.max_redirects {
            let addrs = self.vet_url(&url).await?;
            let resp = self.request(&url, &addrs, want, deadline).await?;
            let status = resp.status();
            if status.is_redirection() {
                let next = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|loc| url.join(loc).ok())
                    .ok_or(FetchError::BadRedirect)?;
                tracing::debug!(from = %url, to = %next, "link preview redirect");
                url = next;
                continue;
            }
            if !status.is_success() {
                return Err(FetchError::Status(status.as_u16()));
            }
            let content_type = essence(resp.headers());
            if !want.types.is_empty() && !want.types.contains(&content_type.as_str()) {
                return Err(FetchError::ContentType(content_type));
            }
            let body = read_body(resp, want).await?;
            return Ok(Fetched {
                url,
                content_type,
                body,
            });
        }
        Err(FetchError::TooManyRedirects(self.limits.max_redirects))
    }

    /// Checks scheme, credentials and port; resolves the host and vets every address.
    /// Returns the addresses to connect to.
    pub async fn vet_url(&self, url: &Url) -> Result<Vec<SocketAddr>, FetchError> {
        let default_port = match url.scheme() {
            "http" => 80,
            "https" => 443,
            _ => return Err(FetchError::Scheme),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FetchError::Credentials);
        }
        let port = url.port().unwrap_or(default_port);
        let host = url.host_str().ok_or(FetchError::Resolve(String::new()))?;
        let ips: Vec<IpAddr> = match url.host() {
            Some(url::Host::Ipv4(v4)) => vec![IpAddr::V4(v4)],
            Some(url::Host::Ipv6(v6)) => vec![IpAddr::V6(v6)],
            _ => self
                .resolver
                .resolve(host)
                .await
                .map_err(|_| FetchError::Resolve(host.to_owned()))?,
        };
        if ips.is_empty() {
            return Err(FetchError::Resolve(host.to_owned()));
        }
        // Every answer is vetted before any is used: one refused answer refuses the host.
        for &ip in &ips {
            if !self.allow.contains(ip) {
                if let Some(why) = vet::check(ip) {
                    return Err(FetchError::Blocked {
                        host: host.to_owned(),
                        ip,
                        why,
                    });
                }
            }
        }
        // Other ports only reach the test allowlist's addresses.
        if port != 80 && port != 443 && !ips.iter().all(|&ip| self.allow.contains(ip)) {
            return Err(FetchError::Port(port));
        }
        let out = ips
            .into_iter()
            .map(|ip| SocketAddr::new(vet::unmap(ip), port))
            .collect();
        Ok(out)
    }

    async fn request(
        &self,
        url: &Url,
        addrs: &[SocketAddr],
        want: Want,
        deadline: Instant,
    ) -> Result<http::Response<Incoming>, FetchError> {
        let tcp = self.connect(addrs).await?;
        let mut target = url.path().to_owned();
        if let Some(q) = url.query() {
            target.push('?');
            target.push_str(q);
        }
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let req = http::Request::get(target)
            .header(HOST, host)
            .header(USER_AGENT, self.user_agent.clone())
            .header(ACCEPT, want.accept)
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchError::Http(e.to_string()))?;
        self.dispatch(url, tcp, req, deadline).await
    }

    /// Sends `req` over `tcp`, in TLS for https.
    async fn dispatch<B>(
        &self,
        url: &Url,
        tcp: TcpStream,
        req: http::Request<B>,
        deadline: Instant,
    ) -> Result<http::Response<Incoming>, FetchError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if url.scheme() == "https" {
            let name = match url.host() {
                Some(url::Host::Domain(d)) => rustls_pki_types::ServerName::try_from(d.to_owned())
                    .map_err(|e| FetchError::Http(format!("TLS name: {e}")))?,
                Some(url::Host::Ipv4(ip)) => rustls_pki_types::ServerName::from(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => rustls_pki_types::ServerName::from(IpAddr::V6(ip)),
                None => return Err(FetchError::Resolve(String::new())),
            };
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| FetchError::Http(format!("TLS: {e}")))?;
            send(TokioIo::new(tls), req, deadline).await
        } else {
            send(TokioIo::new(tcp), req, deadline).await
        }
    }

    /// POSTs `body` to `url` under the same address rules as fetches (its host vetted, no
    /// private networks outside the allowlist), following no redirect, and returns the
    /// response's status. What Web Push delivery sends with (the endpoint is a user's input).
    pub async fn post(
        &self,
        url: &Url,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<u16, FetchError> {
        let deadline = Instant::now() + self.limits.timeout;
        let work = async {
            let addrs = self.vet_url(url).await?;
            let tcp = self.connect(&addrs).await?;
            let mut target = url.path().to_owned();
            if let Some(q) = url.query() {
                target.push('?');
                target.push_str(q);
            }
            let host = match url.port() {
                Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
                None => url.host_str().unwrap_or_default().to_owned(),
            };
            let mut req = http::Request::post(target)
                .header(HOST, host)
                .header(CONNECTION, "close")
                .header(CONTENT_LENGTH, body.len())
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| FetchError::Http(e.to_string()))?;
            for (name, value) in headers.iter() {
                req.headers_mut().insert(name.clone(), value.clone());
            }
            if !req.headers().contains_key(USER_AGENT) {
                req.headers_mut()
                    .insert(USER_AGENT, self.user_agent.clone());
            }
            let resp = self.dispatch(url, tcp, req, deadline).await?;
            Ok(resp.status().as_u16())
        };
        match tokio::time::timeout_at(deadline.into(), work).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout),
        }
    }

    /// A connection to the first of `addrs` that answers.
    async fn connect(&self, addrs: &[SocketAddr]) -> Result<TcpStream, FetchError> {
        let mut last = String::from("no address");
        for addr in addrs {
            match tokio::time::timeout(self.limits.connect_timeout, TcpStream::connect(addr)).await
            {
                Ok(Ok(s)) => return Ok(s),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "connect timed out".into(),
            }
        }
        Err(FetchError::Http(format!("connect: {last}")))
    }
}

/// One request over a fresh HTTP/1.1 connection. The connection's task ends with the fetch's
/// deadline at the latest, whatever the server does.
async fn send<T, B>(
    io: TokioIo<T>,
    req: http::Request<B>,
    deadline: Instant,
) -> Result<http::Response<Incoming>, FetchError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| FetchError::Http(e.to_string()))?;
    tokio::spawn(async move {
        let _ = tokio::time::timeout_at(deadline.into(), conn).await;
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| FetchError::Http(e.to_string()))
}

fn essence(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

async fn read_body(resp: http::Response<Incoming>, want: Want) -> Result<Vec<u8>, FetchError> {
    let declared = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if want.oversize == Oversize::Fail && declared.is_some_and(|n| n > want.max_bytes as u64) {
        return Err(FetchError::TooLarge(want.max_bytes));
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0).min(want.max_bytes as u64) as usize);
    let mut incoming = resp.into_body();
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| FetchError::Http(e.to_string()))?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        let room = want.max_bytes - body.len();
        if chunk.len() > room {
            match want.oversize {
                Oversize::Fail => return Err(FetchError::TooLarge(want.max_bytes)),
                Oversize::Truncate => {
                    body.extend_from_slice(&chunk[..room]);
                    // Dropping the body closes the connection: the rest is never read.
                    return Ok(body);
                }
            }
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
