//! The self-check: printed as a table when Confab starts, by `confab doctor` (which checks
//! without starting anything), and part of `/readyz`. Each check is `ok`, `skip` (does not
//! apply), `warn` (works, but something will go wrong for someone — with the fix in one line)
//! or `fatal` (Confab cannot run like this; `confab doctor` exits with 1).
//!
//! The checks that only look at the configuration are plain functions of it (and of what the
//! system reports, passed in), tested below; the ones that touch the network, the disk or the
//! database are thin wrappers that feed them.

use crate::config::Config;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Skip,
    Warn,
    Fatal,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Skip => "-",
            Status::Warn => "WARN",
            Status::Fatal => "FATAL",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do about a warning or fatal problem, in one line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn skip(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            status: Status::Skip,
            ..Check::ok(name, detail)
        }
    }
    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            status: Status::Warn,
            fix: Some(fix.into()),
            ..Check::ok(name, detail)
        }
    }
    fn fatal(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            status: Status::Fatal,
            fix: Some(fix.into()),
            ..Check::ok(name, detail)
        }
    }
}

/// The checks, in the order they are shown.
#[derive(Clone, Debug, Default)]
pub struct Report(pub Vec<Check>);

impl Report {
    pub fn fatal(&self) -> bool {
        self.0.iter().any(|c| c.status == Status::Fatal)
    }

    pub fn get(&self, name: &str) -> Option<&Check> {
        self.0.iter().find(|c| c.name == name)
    }

    /// The table: one line per check, the fix indented under a warning or fatal one.
    pub fn table(&self) -> String {
        let width = self.0.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.0 {
            out.push_str(&format!(
                "  {:<width$}  {:<5}  {}\n",
                c.name,
                c.status.label(),
                c.detail
            ));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("  {:<width$}         fix: {fix}\n", ""));
            }
        }
        out
    }

    /// `{name: {status, detail, fix?}}`, as `/readyz` shows it.
    pub fn json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for c in &self.0 {
            let mut v = serde_json::json!({"status": c.status, "detail": c.detail});
            if let Some(fix) = &c.fix {
                v["fix"] = fix.clone().into();
            }
            map.insert(c.name.to_string(), v);
        }
        map.into()
    }

    /// Logs each warning and fatal problem (the table goes to the terminal; this to the logs).
    pub fn log(&self) {
        for c in &self.0 {
            let fix = c.fix.as_deref().unwrap_or("");
            match c.status {
                Status::Warn => tracing::warn!(check = c.name, fix, "{}", c.detail),
                Status::Fatal => tracing::error!(check = c.name, fix, "{}", c.detail),
                _ => {}
            }
        }
    }
}

/// The host of a URL such as `https://chat.example.org:8443/x` (brackets kept off IPv6).
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    Some(authority.split(':').next().unwrap_or(authority)).filter(|h| !h.is_empty())
}

/// Whether an address cannot be reached from the internet: loopback, private (RFC 1918,
/// unique-local), link-local, carrier-grade NAT or unspecified.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private(IpAddr::V4(v4)),
            None => {
                let s = v6.segments()[0];
                v6.is_loopback()
                    || v6.is_unspecified()
                    || (s & 0xfe00) == 0xfc00
                    || (s & 0xffc0) == 0xfe80
            }
        },
    }
}

/// Whether a host name or address is only reachable on this machine or network.
fn is_local_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(is_private)
}

/// The public URL, and whether browsers will allow the microphone there.
pub fn check_public_url(cfg: &Config) -> Check {
    const NAME: &str = "public URL";
    match cfg.public_url.as_deref() {
        None if cfg.bind.ip().is_loopback() => Check::ok(
            NAME,
            format!(
                "not set: local use at {}://{}",
                if cfg.tls() { "https" } else { "http" },
                cfg.bind
            ),
        ),
        None => Check::warn(
            NAME,
            format!("not set, but listening on {} beyond this machine", cfg.bind),
            "set --public-url to the address users open, e.g. https://chat.example.org",
        ),
        Some(url) if url.starts_with("https://") => Check::ok(NAME, format!("{url} (HTTPS)")),
        Some(url) if url_host(url).is_some_and(is_local_host) => Check::ok(
            NAME,
            format!("{url} (plain HTTP; fine for local use only)"),
        ),
        Some(url) => Check::warn(
            NAME,
            format!("{url} is plain HTTP: browsers refuse the microphone and camera there"),
            "serve HTTPS (--tls-cert/--tls-key, or a reverse proxy; docs/deploy.md) and set --public-url https://...",
        ),
    }
}

/// The media address announced to clients, and whether the users of the public URL can reach it.
pub fn check_media_ip(cfg: &Config) -> Check {
    const NAME: &str = "media IP";
    if !cfg.role.has_media() {
        return Check::skip(NAME, "api node: media nodes announce their own");
    }
    let ip = cfg.media_ip();
    let source = if cfg.public_ip.is_some() {
        "--public-ip"
    } else {
        "from the bind address; --public-ip not set"
    };
    let public_url = cfg
        .public_url
        .as_deref()
        .filter(|u| url_host(u).is_some_and(|h| !is_local_host(h)));
    match public_url {
        None if cfg.role == crate::config::Role::Media
            && cfg.public_ip.is_none()
            && !cfg.bind.ip().is_loopback() =>
        {
            Check::warn(
                NAME,
                format!("{ip} ({source}): browsers get this address from the api nodes"),
                "set --public-ip to the address clients reach this media node at",
            )
        }
        Some(url) if is_private(ip) => Check::warn(
            NAME,
            format!(
                "{ip} ({source}) is private or loopback, but {url} is public: voice will not connect for users elsewhere"
            ),
            "set --public-ip to this server's public address (the one its domain resolves to)",
        ),
        _ => Check::ok(NAME, format!("{ip} ({source})")),
    }
}

/// The TLS files: readable, a matching pair, not expired, naming the public URL's host.
pub fn check_tls(cfg: &Config) -> Check {
    check_tls_at(cfg, Utc::now())
}

fn check_tls_at(cfg: &Config, now: DateTime<Utc>) -> Check {
    const NAME: &str = "TLS";
    if cfg.acme_email.is_some() {
        let domain = cfg.acme_domain().unwrap_or_default();
        if cfg.bind.port() != 443 {
            return Check::warn(
                NAME,
                format!(
                    "ACME for {domain}, but listening on port {}: the CA validates on port 443",
                    cfg.bind.port()
                ),
                format!("--bind 0.0.0.0:443, or forward TCP 443 of {domain} to this port"),
            );
        }
        let (cert, _) = crate::acme::paths(cfg);
        if !cert.exists() {
            return Check::ok(
                NAME,
                format!("ACME for {domain}: no certificate yet, ordered at start (a self-signed one meanwhile)"),
            );
        }
    }
    let acme_files = cfg.acme_email.is_some().then(|| crate::acme::paths(cfg));
    let (Some(cert), Some(key)) = acme_files
        .as_ref()
        .map(|(c, k)| (Some(c), Some(k)))
        .unwrap_or((cfg.tls_cert.as_ref(), cfg.tls_key.as_ref()))
    else {
        return if cfg.behind_tls() {
            Check::ok(NAME, "terminated by a reverse proxy (public URL is https)")
        } else {
            Check::skip(NAME, "off (--tls-cert not set)")
        };
    };
    let pair = match crate::tls::load_pair(cert, key) {
        Ok(pair) => pair,
        Err(e) => {
            return Check::fatal(
                NAME,
                format!("{e:#}"),
                "give --tls-cert a PEM certificate chain and --tls-key its private key (e.g. certbot's fullchain.pem and privkey.pem), readable by Confab's user",
            )
        }
    };
    let Some(leaf) = pair.cert.first() else {
        return Check::fatal(NAME, "no certificate", "give a PEM certificate chain");
    };
    let parsed = match x509_parser::parse_x509_certificate(leaf.as_ref()) {
        Ok((_, c)) => c,
        Err(e) => {
            return Check::fatal(
                NAME,
                format!("{}: unreadable certificate: {e}", cert.display()),
                "give a PEM X.509 certificate",
            )
        }
    };
    let expires = parsed.validity().not_after.timestamp();
    let days = (expires - now.timestamp()) / 86_400;
    let names: Vec<String> = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                        4 => Some(IpAddr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                        16 => Some(IpAddr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let detail = format!(
        "{} ({}), expires in {days} days",
        cert.display(),
        names.join(", ")
    );
    if expires <= now.timestamp() {
        return Check::warn(
            NAME,
            format!("{} expired {} days ago", cert.display(), -days),
            "renew the certificate, then send SIGHUP to Confab (systemctl reload confab)",
        );
    }
    if let Some(host) = cfg.public_url.as_deref().and_then(url_host) {
        let host = host.to_ascii_lowercase();
        let matches = names.iter().any(|n| {
            let n = n.to_ascii_lowercase();
            n == host
                || n.strip_prefix("*.").is_some_and(|suffix| {
                    host.split_once('.').is_some_and(|(_, rest)| rest == suffix)
                })
        });
        if !matches {
            return Check::warn(
                NAME,
                format!("{detail}: does not name {host}"),
                format!("get a certificate for {host} (browsers will refuse this one)"),
            );
        }
    }
    if days < 14 {
        return Check::warn(
            NAME,
            detail,
            "renew the certificate, then send SIGHUP to Confab (systemctl reload confab)",
        );
    }
    Check::ok(NAME, detail)
}

/// Descriptors Confab needs besides connections (database pool, files, the SFU's sockets).
const FD_BASE: u64 = 256;
/// Below this, a few thousand users run out of descriptors.
pub const FD_WANTED: u64 = 16_384;

/// The open-file limit against what a busy server needs: every gateway connection is a socket.
pub fn check_open_files(soft_limit: u64) -> Check {
    const NAME: &str = "open files";
    let connections = soft_limit.saturating_sub(FD_BASE);
    if soft_limit < FD_WANTED {
        Check::warn(
            NAME,
            format!("limit {soft_limit}: about {connections} connections at once"),
            format!("raise it: LimitNOFILE=65536 in the systemd unit, ulimits nofile in compose, or `ulimit -n 65536` (wanted: at least {FD_WANTED})"),
        )
    } else {
        Check::ok(
            NAME,
            format!("limit {soft_limit}: about {connections} connections at once"),
        )
    }
}

/// This process's open-file limit (soft; the `confab` binary raises it to the hard one first).
pub fn open_files_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(0)
}

/// Largest difference tolerated between this machine's clock and the database's.
const MAX_SKEW: Duration = Duration::from_secs(2);

/// The clock, against the database's when there is one. Tokens carry expiry times and the
/// database stamps messages: a wrong clock logs people out or misorders what they see.
pub fn check_clock(local: DateTime<Utc>, database: Option<DateTime<Utc>>) -> Check {
    const NAME: &str = "clock";
    const FIX: &str = "synchronise the clock with NTP (timedatectl set-ntp true, or chrony) here and on the database server";
    if local.timestamp() < 1_735_689_600 {
        return Check::warn(NAME, format!("{local} is before 2025"), FIX);
    }
    let Some(db) = database else {
        return Check::skip(NAME, format!("{local}; no database to compare with"));
    };
    let skew = (local - db).num_milliseconds().unsigned_abs();
    if skew > MAX_SKEW.as_millis() as u64 {
        Check::warn(
            NAME,
            format!(
                "differs from the database's by {:.1} s",
                skew as f64 / 1000.0
            ),
            FIX,
        )
    } else {
        Check::ok(NAME, format!("within {skew} ms of the database's"))
    }
}

/// The database: reachable, and its clock.
async fn check_database(pool: &sqlx::PgPool) -> (Check, Option<DateTime<Utc>>) {
    const NAME: &str = "database";
    let query = sqlx::query_as::<_, (DateTime<Utc>, String)>(
        "SELECT now(), current_setting('server_version')",
    )
    .fetch_one(pool);
    match tokio::time::timeout(Duration::from_secs(2), query).await {
        Ok(Ok((now, version))) => (
            Check::ok(NAME, format!("reachable (PostgreSQL {version})")),
            Some(now),
        ),
        Ok(Err(e)) => (
            Check::fatal(NAME, format!("query failed: {e}"), DB_FIX),
            None,
        ),
        Err(_) => (Check::fatal(NAME, "no answer within 2 s", DB_FIX), None),
    }
}

const DB_FIX: &str = "check --database-url / DATABASE_URL, that PostgreSQL runs, and that it accepts this host (listen_addresses, pg_hba.conf)";

/// Without `DATABASE_URL`: whether the private cluster can be made.
fn check_private_postgres(cfg: &Config) -> Check {
    const NAME: &str = "database";
    let bin = match std::env::var_os("CONFAB_PG_BIN") {
        Some(dir) => std::path::PathBuf::from(dir).join("initdb").exists(),
        None => std::fs::read_dir("/usr/lib/postgresql")
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.path().join("bin/initdb").exists())
            })
            .unwrap_or(false),
    };
    if !bin {
        return Check::fatal(
            NAME,
            "no DATABASE_URL, and PostgreSQL's programs (initdb) are not installed",
            "install Debian's `postgresql` package, or set --database-url",
        );
    }
    let dir = &cfg.data_dir;
    let probe = dir.join(".confab-doctor");
    let writable = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b""))
        .and_then(|()| std::fs::remove_file(&probe));
    match writable {
        Ok(()) => Check::ok(
            NAME,
            format!("private PostgreSQL under {}", dir.join("pg").display()),
        ),
        Err(e) => Check::fatal(
            NAME,
            format!("data directory {} is not writable: {e}", dir.display()),
            "point --data-dir at a directory Confab's user owns",
        ),
    }
}

/// Whether a Confab answers plain-HTTP `/healthz` at `addr` (so a port in use is its own).
fn confab_answers(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let addr = if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::from([127, 0, 0, 1]), addr.port())
    } else {
        addr
    };
    let Ok(mut tcp) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
    if tcp
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = Vec::new();
    let _ = tcp.take(4096).read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).contains("\"ok\"")
}

/// Whether something else already listens where Confab would. `Ok` with `true` when the port
/// is held by a Confab that answers (doctor run beside the service).
fn check_tcp_bind(name: &'static str, addr: SocketAddr, flag: &str) -> (Check, bool) {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => (Check::ok(name, format!("TCP {addr} free")), false),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && confab_answers(addr) => (
            Check::ok(name, format!("TCP {addr} in use by a running Confab")),
            true,
        ),
        Err(e) => (
            Check::fatal(
                name,
                format!("cannot listen on TCP {addr}: {e}"),
                format!("stop what holds it (ss -ltnp 'sport = :{}') or change {flag}; ports below 1024 need CAP_NET_BIND_SERVICE", addr.port()),
            ),
            false,
        ),
    }
}

fn check_udp_bind(cfg: &Config, confab_running: bool) -> Check {
    const NAME: &str = "UDP media port";
    if !cfg.role.has_media() {
        return Check::skip(NAME, "api node: no SFU");
    }
    let addr = SocketAddr::new(IpAddr::from([0, 0, 0, 0]), cfg.udp_port);
    match std::net::UdpSocket::bind(addr) {
        Ok(_) if cfg.udp_port == 0 => Check::warn(
            NAME,
            "0: a new random port at every start",
            "choose a fixed --udp-port and open it (UDP) in the firewall",
        ),
        Ok(_) => Check::ok(
            NAME,
            format!("UDP {} free (open it in the firewall)", cfg.udp_port),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && confab_running => Check::ok(
            NAME,
            format!(
                "UDP {} in use, presumably by the running Confab",
                cfg.udp_port
            ),
        ),
        Err(e) => Check::fatal(
            NAME,
            format!("cannot bind UDP {addr}: {e}"),
            format!(
                "stop what holds it (ss -lunp 'sport = :{}') or change --udp-port",
                cfg.udp_port
            ),
        ),
    }
}

const ICE_TCP: &str = "ICE-TCP port";

/// ICE over TCP once started: `bound` is where the SFU's listener is (None: off or not bound).
pub fn check_ice_tcp(cfg: &Config, bound: Option<SocketAddr>) -> Check {
    let Some(want) = cfg.ice_tcp_bind() else {
        return if cfg.role.has_media() {
            Check::skip(
                ICE_TCP,
                "off (--ice-tcp false): clients that cannot send UDP need TURN",
            )
        } else {
            Check::skip(ICE_TCP, "api node: media nodes take ICE-TCP")
        };
    };
    match bound {
        Some(addr) => Check::ok(
            ICE_TCP,
            format!(
                "TCP {} bound for clients whose UDP is blocked (open it in the firewall)",
                addr.port()
            ),
        ),
        None => Check::warn(
            ICE_TCP,
            format!("could not bind TCP {want}: voice over TCP is off"),
            "free that port or choose another with --ice-tcp-port (and open it in the firewall)",
        ),
    }
}

/// IPv6 voice candidates: `bound` is the SFU's IPv6 socket once started (None before start or
/// when not bound).
pub fn check_ipv6(cfg: &Config, started: bool, bound: Option<SocketAddr>) -> Check {
    const NAME: &str = "IPv6 media";
    if !cfg.role.has_media() {
        return Check::skip(NAME, "api node: media nodes announce their own");
    }
    match (cfg.media_ipv6(), bound) {
        (None, _) if cfg.ipv6 == "off" => Check::skip(NAME, "off (--ipv6 off)"),
        (None, _) if cfg.bind.ip().is_unspecified() => {
            Check::skip(NAME, "no public IPv6 address on this host: IPv4 only")
        }
        (None, _) => Check::skip(NAME, "IPv4 only (not listening on all addresses)"),
        (Some((_, ip)), Some(addr)) => Check::ok(NAME, format!("{ip}, UDP {}", addr.port())),
        (Some((bind, ip)), None) if started => Check::warn(
            NAME,
            format!("{ip}: could not bind UDP {bind}; IPv6 clients cannot join voice"),
            "free that port, or --ipv6 off",
        ),
        (Some((_, ip)), None) => Check::ok(NAME, format!("{ip} (UDP bound at start)")),
    }
}

/// ICE over TCP before starting: whether its port is free.
fn check_ice_tcp_port(cfg: &Config, confab_running: bool) -> Check {
    let Some(mut addr) = cfg.ice_tcp_bind() else {
        return check_ice_tcp(cfg, None);
    };
    if addr.port() == 0 {
        return Check::ok(ICE_TCP, "the UDP media port's number, chosen at start");
    }
    addr.set_ip(IpAddr::from([0, 0, 0, 0]));
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Check::ok(
            ICE_TCP,
            format!("TCP {} free (open it in the firewall)", addr.port()),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && confab_running => Check::ok(
            ICE_TCP,
            format!(
                "TCP {} in use, presumably by the running Confab",
                addr.port()
            ),
        ),
        Err(e) => Check::warn(
            ICE_TCP,
            format!("cannot bind TCP {addr}: {e}; Confab would start without voice over TCP"),
            format!(
                "stop what holds it (ss -ltnp 'sport = :{}') or change --ice-tcp-port",
                addr.port()
            ),
        ),
    }
}

async fn check_nats(cfg: &Config) -> Check {
    const NAME: &str = "NATS";
    let Some(url) = &cfg.nats_url else {
        return Check::skip(NAME, "not set: one process");
    };
    let connect = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(url.as_str());
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(client)) => {
            let info = client.server_info();
            let js = if info.jetstream {
                "JetStream on"
            } else {
                "JetStream OFF"
            };
            let check = if info.jetstream {
                Check::ok(NAME, format!("{url}: NATS {} ({js})", info.version))
            } else {
                Check::fatal(
                    NAME,
                    format!("{url}: NATS {} without JetStream", info.version),
                    "start nats-server with -js (JetStream holds resume history and live state)",
                )
            };
            drop(client);
            check
        }
        Ok(Err(e)) => Check::fatal(
            NAME,
            format!("{url}: {e}"),
            "check --nats-url and that nats-server runs and is reachable from here",
        ),
        Err(_) => Check::fatal(
            NAME,
            format!("{url}: no answer within 5 s"),
            "check --nats-url and the firewall between this node and NATS",
        ),
    }
}

/// TURN: configured or not. Without it, clients whose networks block UDP cannot join voice.
pub fn check_turn(cfg: &Config) -> Check {
    const NAME: &str = "TURN";
    if cfg.role == crate::config::Role::Media {
        return Check::skip(NAME, "media node: api nodes hand out TURN credentials");
    }
    match &cfg.turn {
        Some(turn) => Check::ok(
            NAME,
            format!(
                "{} (credentials valid {} s)",
                turn.urls().join(", "),
                turn.ttl().as_secs()
            ),
        ),
        None if cfg
            .public_url
            .as_deref()
            .and_then(url_host)
            .is_some_and(|h| !is_local_host(h)) => Check::warn(
            NAME,
            "not configured: users whose networks block UDP cannot join voice",
            "run coturn with use-auth-secret and set --turn-url and --turn-secret (docs/deploy.md)",
        ),
        None => Check::skip(NAME, "not configured (direct UDP only)"),
    }
}

/// The checks that depend on the configuration alone.
fn config_checks(cfg: &Config) -> Vec<Check> {
    vec![
        check_public_url(cfg),
        check_media_ip(cfg),
        check_tls(cfg),
        check_turn(cfg),
    ]
}

/// `confab doctor`: everything that can be checked without starting Confab.
pub async fn doctor(cfg: &Config) -> Report {
    let mut checks = config_checks(cfg);
    let (http, running) = check_tcp_bind("HTTP listener", cfg.bind, "--bind");
    checks.push(http);
    if let Some(redirect) = cfg.http_redirect_bind {
        // The redirect listener answers /healthz too.
        let (redirect, redirect_running) =
            check_tcp_bind("HTTP redirect", redirect, "--http-redirect-bind");
        checks.push(redirect);
        if redirect_running {
            // A Confab serving TLS: its HTTPS port is its own.
            if let Some(http) = checks.iter_mut().find(|c| c.name == "HTTP listener") {
                if http.status == Status::Fatal {
                    *http = Check::ok(
                        "HTTP listener",
                        format!("TCP {} in use by a running Confab", cfg.bind),
                    );
                }
            }
        }
        checks.push(check_udp_bind(cfg, running || redirect_running));
        checks.push(check_ice_tcp_port(cfg, running || redirect_running));
    } else {
        checks.push(check_udp_bind(cfg, running));
        checks.push(check_ice_tcp_port(cfg, running));
    }
    checks.push(check_ipv6(cfg, false, None));
    let db_now = match &cfg.database_url {
        Some(url) => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(3))
                .connect(url)
                .await;
            match pool {
                Ok(pool) => {
                    let (check, now) = check_database(&pool).await;
                    checks.push(check);
                    pool.close().await;
                    now
                }
                Err(e) => {
                    checks.push(Check::fatal(
                        "database",
                        format!("cannot connect: {e}"),
                        DB_FIX,
                    ));
                    None
                }
            }
        }
        None => {
            checks.push(check_private_postgres(cfg));
            None
        }
    };
    checks.push(check_clock(Utc::now(), db_now));
    checks.push(check_nats(cfg).await);
    checks.push(check_open_files(open_files_limit()));
    Report(checks)
}

/// The table printed once Confab has started: the same checks, with what is now known (the
/// ports are bound, the database and NATS answered).
pub async fn startup(running: &crate::Running) -> Report {
    let state = &running.state;
    let cfg = &state.config;
    let mut checks = config_checks(cfg);
    checks.push(Check::ok(
        "HTTP listener",
        format!(
            "{}://{}",
            if running.tls.is_some() {
                "https"
            } else {
                "http"
            },
            running.addr
        ),
    ));
    if let Some(redirect) = running.redirect_addr {
        checks.push(Check::ok(
            "HTTP redirect",
            format!("http://{redirect} → https"),
        ));
    }
    checks.push(if cfg.role.has_media() {
        if cfg.udp_port == 0 {
            Check::warn(
                "UDP media port",
                "0: a new random port at every start",
                "choose a fixed --udp-port and open it (UDP) in the firewall",
            )
        } else {
            Check::ok(
                "UDP media port",
                format!("UDP {} bound (open it in the firewall)", cfg.udp_port),
            )
        }
    } else {
        Check::skip("UDP media port", "api node: no SFU")
    });
    checks.push(check_ice_tcp(cfg, running.ice_tcp));
    checks.push(check_ipv6(cfg, true, running.ipv6));
    let (db, now) = check_database(state.chat.pool()).await;
    checks.push(db);
    checks.push(check_clock(Utc::now(), now));
    checks.push(match &cfg.nats_url {
        Some(url) => Check::ok("NATS", format!("{url}: connected")),
        None => Check::skip("NATS", "not set: one process"),
    });
    checks.push(check_open_files(open_files_limit()));
    Report(checks)
}

/// A media node's start-up table (it serves no web client, REST or database checks).
pub fn media_startup(
    cfg: &Config,
    ice_tcp: Option<SocketAddr>,
    ipv6: Option<SocketAddr>,
) -> Report {
    let mut checks = vec![check_media_ip(cfg)];
    checks.push(if cfg.udp_port == 0 {
        Check::warn(
            "UDP media port",
            "0: a new random port at every start",
            "choose a fixed --udp-port and open it (UDP) in the firewall",
        )
    } else {
        Check::ok(
            "UDP media port",
            format!("UDP {} bound (open it in the firewall)", cfg.udp_port),
        )
    });
    checks.push(check_ice_tcp(cfg, ice_tcp));
    checks.push(check_ipv6(cfg, true, ipv6));
    checks.push(check_clock(Utc::now(), None));
    checks.push(check_open_files(open_files_limit()));
    Report(checks)
}

/// The checks `/readyz` shows: the configuration's, the database and its clock, the SFU.
pub async fn live(state: &crate::state::AppState) -> Report {
    let cfg = &state.config;
    let mut checks = config_checks(cfg);
    let (db, now) = check_database(state.chat.pool()).await;
    checks.push(db);
    checks.push(check_clock(Utc::now(), now));
    checks.push(if state.voice.is_running() {
        Check::ok("sfu", "media loop running")
    } else {
        Check::fatal(
            "sfu",
            "media loop stopped",
            "see the log for why; restart Confab",
        )
    });
    checks.push(check_open_files(open_files_limit()));
    Report(checks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    fn cfg(tweak: impl FnOnce(&mut Config)) -> Config {
        let mut c = Config::default();
        tweak(&mut c);
        c
    }

    #[test]
    fn turn_row() {
        let public = |c: &mut Config| c.public_url = Some("https://chat.example.org".into());
        let missing = check_turn(&cfg(public));
        assert_eq!(missing.status, Status::Warn, "{missing:?}");
        assert!(missing.fix.unwrap().contains("--turn-url"));
        assert_eq!(
            check_turn(&cfg(|_| {})).status,
            Status::Skip,
            "local use needs no TURN"
        );
        let set = check_turn(&cfg(|c| {
            public(c);
            c.turn = crate::turn::TurnSettings::new(
                &["turn:turn.example.org:3478".into()],
                Some("0123456789abcdef0123"),
                Duration::from_secs(600),
            )
            .unwrap();
        }));
        assert_eq!(set.status, Status::Ok, "{set:?}");
        assert!(set.detail.contains("turn:turn.example.org:3478") && set.detail.contains("600 s"));
        assert!(
            !set.detail.contains("0123456789abcdef"),
            "the secret is not shown"
        );
        let media = check_turn(&cfg(|c| {
            public(c);
            c.role = Role::Media;
        }));
        assert_eq!(media.status, Status::Skip);
    }

    #[test]
    fn public_url_wants_https_beyond_localhost() {
        assert_eq!(check_public_url(&cfg(|_| {})).status, Status::Ok);
        let c = cfg(|c| c.bind = "0.0.0.0:3000".parse().unwrap());
        assert_eq!(check_public_url(&c).status, Status::Warn);
        let c = cfg(|c| c.public_url = Some("http://chat.example.org".into()));
        let check = check_public_url(&c);
        assert_eq!(check.status, Status::Warn);
        assert!(check.fix.unwrap().contains("https"));
        for ok in [
            "https://chat.example.org",
            "http://localhost:3000",
            "http://192.168.1.5:3000",
        ] {
            let c = cfg(|c| c.public_url = Some(ok.into()));
            assert_eq!(check_public_url(&c).status, Status::Ok, "{ok}");
        }
    }

    #[test]
    fn private_media_ip_behind_a_public_url_is_a_warning() {
        let public = |ip: Option<&str>| {
            cfg(|c| {
                c.public_url = Some("https://chat.example.org".into());
                c.public_ip = ip.map(|i| i.parse().unwrap());
            })
        };
        let check = check_media_ip(&public(None));
        assert_eq!(check.status, Status::Warn, "{check:?}");
        assert!(check.detail.contains("127.0.0.1"));
        assert!(check.fix.unwrap().contains("--public-ip"));
        assert_eq!(
            check_media_ip(&public(Some("10.1.2.3"))).status,
            Status::Warn
        );
        assert_eq!(
            check_media_ip(&public(Some("100.64.0.9"))).status,
            Status::Warn
        );
        assert_eq!(
            check_media_ip(&public(Some("fd00::1"))).status,
            Status::Warn
        );
        assert_eq!(
            check_media_ip(&public(Some("203.0.113.7"))).status,
            Status::Ok
        );
        assert_eq!(
            check_media_ip(&public(Some("2001:db8::7"))).status,
            Status::Ok
        );
        // A local deployment with a local media address is fine.
        let local = cfg(|c| c.public_url = Some("http://[::1]:3000".into()));
        assert_eq!(check_media_ip(&local).status, Status::Ok);
        assert_eq!(check_media_ip(&cfg(|_| {})).status, Status::Ok);
        let media = cfg(|c| {
            c.role = Role::Media;
            c.bind = "0.0.0.0:3000".parse().unwrap();
        });
        assert_eq!(check_media_ip(&media).status, Status::Warn);
        let api = cfg(|c| {
            c.role = Role::Api;
            c.public_url = Some("https://chat.example.org".into());
        });
        assert_eq!(check_media_ip(&api).status, Status::Skip);
    }

    #[test]
    fn url_hosts() {
        assert_eq!(
            url_host("https://chat.example.org:8443/x"),
            Some("chat.example.org")
        );
        assert_eq!(url_host("http://[::1]:3000"), Some("::1"));
        assert_eq!(url_host("https://u@host/"), Some("host"));
        assert_eq!(url_host("https://"), None);
        assert!(is_private(IpAddr::from([169, 254, 1, 1])));
        assert!(is_private("::ffff:192.168.0.1".parse().unwrap()));
        assert!(!is_private(IpAddr::from([8, 8, 8, 8])));
    }

    #[test]
    fn tls_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("confab-doctor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        let with_files = |url: &str| {
            cfg(|c| {
                c.tls_cert = Some(cert_path.clone());
                c.tls_key = Some(key_path.clone());
                c.public_url = Some(url.into());
            })
        };
        // Missing files are fatal.
        let check = check_tls(&with_files("https://chat.example.org"));
        assert_eq!(check.status, Status::Fatal, "{check:?}");
        assert!(check.detail.contains("cert.pem"), "{}", check.detail);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["chat.example.org".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2040, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let check = check_tls(&with_files("https://chat.example.org"));
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert!(check.detail.contains("chat.example.org"));
        let check = check_tls(&with_files("https://other.example.org"));
        assert_eq!(check.status, Status::Warn, "{check:?}");
        // Close to its end, and after it.
        let soon = DateTime::parse_from_rfc3339("2039-12-25T00:00:00Z")
            .unwrap()
            .to_utc();
        let check = check_tls_at(&with_files("https://chat.example.org"), soon);
        assert_eq!(check.status, Status::Warn, "{check:?}");
        assert!(
            check.detail.contains("expires in 7 days"),
            "{}",
            check.detail
        );
        let later = DateTime::parse_from_rfc3339("2040-02-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let check = check_tls_at(&with_files("https://chat.example.org"), later);
        assert_eq!(check.status, Status::Warn);
        assert!(check.detail.contains("expired"), "{}", check.detail);
        // A key that does not belong to the certificate is fatal.
        std::fs::write(
            &key_path,
            rcgen::KeyPair::generate().unwrap().serialize_pem(),
        )
        .unwrap();
        assert_eq!(
            check_tls(&with_files("https://chat.example.org")).status,
            Status::Fatal
        );
        std::fs::remove_dir_all(&dir).ok();
        // Without files: a reverse proxy when the public URL is https, else off.
        let proxied = cfg(|c| c.public_url = Some("https://chat.example.org".into()));
        assert_eq!(check_tls(&proxied).status, Status::Ok);
        assert_eq!(check_tls(&cfg(|_| {})).status, Status::Skip);
    }

    #[test]
    fn clock_and_open_files() {
        let now = Utc::now();
        assert_eq!(check_clock(now, None).status, Status::Skip);
        assert_eq!(
            check_clock(now, Some(now + chrono::Duration::milliseconds(300))).status,
            Status::Ok
        );
        let check = check_clock(now, Some(now - chrono::Duration::seconds(30)));
        assert_eq!(check.status, Status::Warn);
        assert!(check.detail.contains("30.0 s"));
        let old = DateTime::from_timestamp(1_000_000_000, 0).unwrap();
        assert_eq!(check_clock(old, None).status, Status::Warn);
        assert_eq!(check_open_files(1024).status, Status::Warn);
        assert!(check_open_files(1024).fix.unwrap().contains("LimitNOFILE"));
        assert_eq!(check_open_files(65_536).status, Status::Ok);
    }

    #[test]
    fn table_and_json() {
        let r = Report(vec![
            Check::ok("database", "reachable"),
            Check::warn("media IP", "127.0.0.1 is loopback", "set --public-ip"),
        ]);
        assert!(!r.fatal());
        let t = r.table();
        assert!(t.contains("database  ok     reachable"), "{t}");
        assert!(t.contains("WARN   127.0.0.1 is loopback"), "{t}");
        assert!(t.contains("fix: set --public-ip"), "{t}");
        let j = r.json();
        assert_eq!(j["media IP"]["status"], "warn");
        assert_eq!(j["media IP"]["fix"], "set --public-ip");
        assert!(j["database"].get("fix").is_none());
        let mut r = r;
        r.0.push(Check::fatal("NATS", "down", "start it"));
        assert!(r.fatal());
    }
}
