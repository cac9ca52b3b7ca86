//! Configuration: command-line flags, each also an environment variable `CONFAB_*`, and an
//! optional TOML file whose keys are the flags' long names with `_` for `-`. Flags and
//! environment win over the file; the file wins over defaults.

use anyhow::Context;
use clap::Parser;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

#[derive(Debug, Clone, Parser, Default)]
#[command(
    name = "confab",
    version = crate::VERSION,
    about = "Confab: self-hosted text chat and voice channels"
)]
pub struct Cli {
    /// TOML configuration file (keys as the long flag names, e.g. `bind = "0.0.0.0:3000"`).
    #[arg(long, env = "CONFAB_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTP address to listen on. [default: 127.0.0.1:3000]
    #[arg(long, env = "CONFAB_BIND")]
    pub bind: Option<SocketAddr>,
    /// Data directory (private PostgreSQL cluster, signing key). [default: ./data]
    #[arg(long, env = "CONFAB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL; without it Confab runs a private cluster under the data directory.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// UDP port for all voice media (0 = any free port). [default: 3000]
    #[arg(long, env = "CONFAB_UDP_PORT")]
    pub udp_port: Option<u16>,
    /// IP address announced to clients for media. [default: the bind address, or 127.0.0.1]
    #[arg(long, env = "CONFAB_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,
    /// Voice listening slots per participant: everyone hears the N loudest current speakers. [default: 3]
    #[arg(long, env = "CONFAB_MAX_AUDIO_SLOTS")]
    pub max_audio_slots: Option<usize>,
    /// Multiplies every rate-limit bucket (auth, messages, IDENTIFY, ...). For load tests. [default: 1]
    #[arg(long, env = "CONFAB_RATE_LIMIT_SCALE")]
    pub rate_limit_scale: Option<f64>,
    /// Most video tiles one client may watch at once (1..=25). [default: 9]
    #[arg(long, env = "CONFAB_MAX_VIDEO_TILES")]
    pub max_video_tiles: Option<usize>,
    /// Public origin of the web client, e.g. https://chat.example.org; allowed for CORS and the
    /// gateway, and HSTS is sent when it is https. [default: http://<bind>]
    #[arg(long, env = "CONFAB_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Extra browser origins allowed (comma-separated).
    #[arg(long, env = "CONFAB_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// Secret for signing access tokens; by default generated once and kept in the data directory.
    #[arg(long, env = "CONFAB_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Access-token lifetime in seconds. [default: 900]
    #[arg(long, env = "CONFAB_ACCESS_TOKEN_TTL")]
    pub access_token_ttl: Option<u64>,
    /// Gateway heartbeat interval in milliseconds. [default: 41250]
    #[arg(long, env = "CONFAB_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Largest database pool. [default: 20]
    #[arg(long, env = "CONFAB_DB_POOL_SIZE")]
    pub db_pool_size: Option<u32>,
    /// Log format: "pretty" or "json". [default: pretty]
    #[arg(long, env = "CONFAB_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Directory with the web client to serve instead of the built-in copy (development).
    #[arg(long, env = "CONFAB_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// Forward audio through the SFU's own fast path (true) or str0m's send path (false). [default: true]
    #[arg(long, env = "CONFAB_SFU_FAST_PATH")]
    pub sfu_fast_path: Option<bool>,
    /// Offer an RTX payload type for Opus so audio NACKs are answered (RFC 4588). Listeners
    /// that negotiate it are served by str0m's send path, not the fast path, and RED is
    /// not negotiated; browsers do not negotiate audio RTX. [default: false]
    #[arg(long, env = "CONFAB_SFU_AUDIO_RTX")]
    pub sfu_audio_rtx: Option<bool>,
    /// Threads that protect and send fast-path audio, the media loop's own included; each
    /// listener stays on one. 0 = one per core. [default: 0]
    #[arg(long, env = "CONFAB_SFU_SEND_WORKERS")]
    pub sfu_send_workers: Option<usize>,
    /// Estimate each video viewer's bandwidth (TWCC) and pick lower simulcast layers when it is
    /// short; not yet reliable enough to be the default (docs/go-live.md). [default: false]
    #[arg(long, env = "CONFAB_VIDEO_BWE")]
    pub video_bwe: Option<bool>,
    /// Starting bandwidth estimate suggested to browsers that publish video, kbit/s
    /// (`x-google-start-bitrate` in the answer; 0 = the browser's own, 300 in Chrome, which keeps
    /// a new camera at its lowest simulcast layer for seconds). [default: 2000]
    #[arg(long, env = "CONFAB_VIDEO_START_BITRATE_KBPS")]
    pub video_start_bitrate_kbps: Option<u64>,
    /// Ask browsers for Opus DTX: in silence they send a few comfort-noise packets a second
    /// instead of 50 (docs/voice.md). [default: false]
    #[arg(long, env = "CONFAB_OPUS_DTX")]
    pub opus_dtx: Option<bool>,
    /// NATS server(s) of a cluster, e.g. nats://10.0.0.5:4222 (comma-separated for several);
    /// turns clustering on: nodes sharing this NATS and one PostgreSQL (`DATABASE_URL`) act as
    /// one Confab (docs/cluster.md). Without it Confab is one process.
    #[arg(long, env = "CONFAB_NATS_URL")]
    pub nats_url: Option<String>,
    /// First token of every NATS subject Confab uses, so several Confabs can share one NATS.
    /// [default: confab]
    #[arg(long, env = "CONFAB_NATS_PREFIX")]
    pub nats_prefix: Option<String>,
    /// This node's name in logs, metrics and NATS connection names. [default: the host name]
    #[arg(long, env = "CONFAB_NODE_NAME")]
    pub node_name: Option<String>,
    /// What this node does in a cluster: `all` (chat, gateway and media), `api` (REST, the
    /// gateway and voice signalling; voice goes to media nodes) or `media` (only the SFU, serving
    /// the api nodes over NATS). `api` and `media` need --nats-url. [default: all]
    #[arg(long, env = "CONFAB_ROLE")]
    pub role: Option<Role>,
    /// Voice participants a media node takes before a channel spills over to another media node
    /// (the channel then spans both, relaying its audio between them); 0 = no limit. [default: 0]
    #[arg(long, env = "CONFAB_MEDIA_CAPACITY")]
    pub media_capacity: Option<usize>,
    /// On SIGTERM a media node takes no new voice channels and waits up to this many seconds for
    /// its participants to leave before moving the rest to other media nodes. [default: 0]
    #[arg(long, env = "CONFAB_MEDIA_DRAIN_SECONDS")]
    pub media_drain_seconds: Option<u64>,
    /// UDP port of the relay between media nodes (a cluster's voice channels that span nodes);
    /// 0 = any free port (it is announced over NATS). [default: the media UDP port + 1]
    #[arg(long, env = "CONFAB_RELAY_PORT")]
    pub relay_port: Option<u16>,
    /// Servers with more members than this are "large": READY carries only some of their
    /// members. For tests. [default: 250]
    #[arg(long, env = "CONFAB_LARGE_THRESHOLD", hide = true)]
    pub large_threshold: Option<usize>,
    /// TLS certificate chain (PEM) to serve HTTPS directly; reloaded with the key on SIGHUP.
    #[arg(long, env = "CONFAB_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1) for --tls-cert.
    #[arg(long, env = "CONFAB_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// With TLS on: a plain-HTTP address (e.g. 0.0.0.0:80) that redirects to https (308),
    /// except /healthz.
    #[arg(long, env = "CONFAB_HTTP_REDIRECT_BIND")]
    pub http_redirect_bind: Option<SocketAddr>,
    /// Reverse proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-For / X-Real-IP name
    /// the client; other peers are the client themselves. [default: none]
    #[arg(long, env = "CONFAB_TRUSTED_PROXIES", value_delimiter = ',', value_parser = crate::proxy::parse_net)]
    pub trusted_proxies: Option<Vec<ipnet::IpNet>>,
    /// Serve HTTPS with a certificate obtained automatically over ACME (Let's Encrypt) for the
    /// domain of --public-url (https://…); this address is the account's contact. Confab must
    /// be reachable on port 443 of that domain (tls-alpn-01). Instead of --tls-cert.
    #[arg(long, env = "CONFAB_ACME_EMAIL")]
    pub acme_email: Option<String>,
    /// ACME directory URL. [default: Let's Encrypt's production directory]
    #[arg(long, env = "CONFAB_ACME_DIRECTORY")]
    pub acme_directory: Option<String>,
    /// IPv6 voice candidates: `auto` (a public IPv6 address of this host, when it listens on
    /// all addresses), `off`, or the IPv6 address to announce. [default: auto]
    #[arg(long, env = "CONFAB_IPV6")]
    pub ipv6: Option<String>,
    /// ICE over TCP: a passive TCP candidate for voice clients whose networks block UDP.
    /// [default: true]
    #[arg(long, env = "CONFAB_ICE_TCP")]
    pub ice_tcp: Option<bool>,
    /// TCP port of ICE over TCP. [default: the UDP media port's number, or the next one when
    /// the HTTP listener has that number]
    #[arg(long, env = "CONFAB_ICE_TCP_PORT")]
    pub ice_tcp_port: Option<u16>,
    /// Open ICE-TCP connections at most. [default: 1024]
    #[arg(long, env = "CONFAB_ICE_TCP_MAX_CONNECTIONS")]
    pub ice_tcp_max_connections: Option<usize>,
    /// Open ICE-TCP connections from one IP address at most. [default: 16]
    #[arg(long, env = "CONFAB_ICE_TCP_MAX_PER_IP")]
    pub ice_tcp_max_per_ip: Option<usize>,
    /// Link previews: fetch OpenGraph/oEmbed metadata of links in messages (docs/link-previews.md).
    /// [default: true]
    #[arg(long, env = "CONFAB_LINK_PREVIEWS")]
    pub link_previews: Option<bool>,
    /// Messages whose links are being previewed at once. [default: 4]
    #[arg(long, env = "CONFAB_LINK_PREVIEW_CONCURRENCY")]
    pub link_preview_concurrency: Option<usize>,
    /// FOR TESTS ONLY: networks (CIDRs, comma-separated) link previews may fetch from although
    /// the SSRF rules refuse them (e.g. 127.0.0.1/32 for a local test site), on any port.
    /// [default: none]
    #[arg(long, env = "CONFAB_LINK_PREVIEW_ALLOW_CIDRS", value_delimiter = ',', value_parser = crate::proxy::parse_net)]
    pub link_preview_allow_cidrs: Option<Vec<ipnet::IpNet>>,
    /// Contact put in Web Push's VAPID tokens (`sub`: a mailto: or https: URL) so push
    /// services can reach the operator (docs/push.md). [default: the public URL, else
    /// mailto:admin@localhost]
    #[arg(long, env = "CONFAB_PUSH_CONTACT")]
    pub push_contact: Option<String>,
    /// FOR TESTS ONLY: accept push subscriptions whose endpoint is plain http on a loopback
    /// address, and deliver to them. [default: false]
    #[arg(long, env = "CONFAB_PUSH_ALLOW_LOOPBACK")]
    pub push_allow_loopback: Option<bool>,
    /// Largest file one upload may carry, in MiB. [default: 25]
    #[arg(long, env = "CONFAB_MAX_UPLOAD_MIB")]
    pub max_upload_mib: Option<u64>,
    /// Bytes of attachments one user may store in all, in MiB (0 = no limit). [default: 2048]
    #[arg(long, env = "CONFAB_USER_STORAGE_QUOTA_MIB")]
    pub user_storage_quota_mib: Option<u64>,
    /// Bytes of attachments one server may hold in all, in MiB (0 = no limit). [default: 20480]
    #[arg(long, env = "CONFAB_SERVER_STORAGE_QUOTA_MIB")]
    pub server_storage_quota_mib: Option<u64>,
    /// Directory of uploaded files when no S3 bucket is set. [default: <data dir>/files]
    #[arg(long, env = "CONFAB_FILES_DIR")]
    pub files_dir: Option<PathBuf>,
    /// S3-compatible bucket for uploaded files (a cluster needs one: every node reads what any
    /// node stored). Unset = the files directory.
    #[arg(long, env = "CONFAB_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// S3 endpoint for self-hosted servers, e.g. http://127.0.0.1:9000. [default: AWS]
    #[arg(long, env = "CONFAB_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region. [default: us-east-1, or AWS_REGION]
    #[arg(long, env = "CONFAB_S3_REGION")]
    pub s3_region: Option<String>,
    /// S3 access key id. [default: AWS_ACCESS_KEY_ID]
    #[arg(long, env = "CONFAB_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key. [default: AWS_SECRET_ACCESS_KEY]
    #[arg(long, env = "CONFAB_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// TURN server URLs handed to voice clients whose networks block direct UDP,
    /// comma-separated (turn:HOST:3478?transport=udp,turns:HOST:5349?transport=tcp). Needs
    /// --turn-secret. [default: none]
    #[arg(long = "turn-url", env = "CONFAB_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Option<Vec<String>>,
    /// The TURN server's shared secret (coturn: use-auth-secret, static-auth-secret): each
    /// client gets short-lived credentials derived from it.
    #[arg(long, env = "CONFAB_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// How long TURN credentials stay valid, in seconds: a relayed call lasts at most this.
    /// [default: 86400]
    #[arg(long, env = "CONFAB_TURN_TTL")]
    pub turn_ttl: Option<u64>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What `confab` does besides serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Checks the configuration, database, NATS, ports, TLS files, clock and limits, prints a
    /// table and exits (non-zero on a fatal problem) without starting the server.
    Doctor,
}

/// What a node runs (`--role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: chat, the gateway and an SFU (the default; the only role without NATS).
    #[default]
    All,
    /// REST, the gateway and voice signalling; voice media on the cluster's media nodes.
    Api,
    /// Only the SFU, serving the api nodes over NATS.
    Media,
}

impl Role {
    /// Whether this node runs an SFU.
    pub fn has_media(self) -> bool {
        self != Role::Api
    }
}

/// The same keys as the flags, from a TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    udp_port: Option<u16>,
    public_ip: Option<IpAddr>,
    max_audio_slots: Option<usize>,
    rate_limit_scale: Option<f64>,
    max_video_tiles: Option<usize>,
    public_url: Option<String>,
    allowed_origins: Option<Vec<String>>,
    jwt_secret: Option<String>,
    access_token_ttl: Option<u64>,
    heartbeat_interval_ms: Option<u64>,
    db_pool_size: Option<u32>,
    log_format: Option<String>,
    web_dir: Option<PathBuf>,
    sfu_fast_path: Option<bool>,
    sfu_audio_rtx: Option<bool>,
    sfu_send_workers: Option<usize>,
    video_bwe: Option<bool>,
    video_start_bitrate_kbps: Option<u64>,
    opus_dtx: Option<bool>,
    nats_url: Option<String>,
    nats_prefix: Option<String>,
    node_name: Option<String>,
    role: Option<Role>,
    media_capacity: Option<usize>,
    media_drain_seconds: Option<u64>,
    relay_port: Option<u16>,
    large_threshold: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    http_redirect_bind: Option<SocketAddr>,
    trusted_proxies: Option<Vec<String>>,
    acme_email: Option<String>,
    acme_directory: Option<String>,
    turn_urls: Option<Vec<String>>,
    turn_secret: Option<String>,
    turn_ttl: Option<u64>,
    ipv6: Option<String>,
    ice_tcp: Option<bool>,
    ice_tcp_port: Option<u16>,
    ice_tcp_max_connections: Option<usize>,
    ice_tcp_max_per_ip: Option<usize>,
    link_previews: Option<bool>,
    link_preview_concurrency: Option<usize>,
    link_preview_allow_cidrs: Option<Vec<String>>,
    push_contact: Option<String>,
    push_allow_loopback: Option<bool>,
    max_upload_mib: Option<u64>,
    user_storage_quota_mib: Option<u64>,
    server_storage_quota_mib: Option<u64>,
    files_dir: Option<PathBuf>,
    s3_bucket: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<String>,
}

/// Upper bound of `--max-video-tiles`: every tile is a recvonly transceiver in the client's
/// offer, and offers are capped at 64 m-lines.
pub const MAX_VIDEO_TILES_LIMIT: usize = 25;

const MIB: u64 = 1024 * 1024;

impl Config {
    /// Where uploaded files live.
    pub fn file_store(&self) -> confab_files::StoreConfig {
        match &self.s3 {
            Some(s3) => confab_files::StoreConfig::S3(s3.clone()),
            None => confab_files::StoreConfig::Local(
                self.files_dir
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("files")),
            ),
        }
    }
}

/// Resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub udp_port: u16,
    pub public_ip: Option<IpAddr>,
    pub max_audio_slots: usize,
    pub rate_limit_scale: f64,
    pub max_video_tiles: usize,
    pub public_url: Option<String>,
    pub allowed_origins: Vec<String>,
    pub jwt_secret: Option<String>,
    pub access_token_ttl: u64,
    pub heartbeat_interval_ms: u64,
    pub db_pool_size: u32,
    pub log_format: String,
    pub web_dir: Option<PathBuf>,
    pub sfu_fast_path: bool,
    pub sfu_audio_rtx: bool,
    pub sfu_send_workers: usize,
    pub video_bwe: bool,
    pub video_start_bitrate_kbps: u64,
    pub opus_dtx: bool,
    /// NATS of the cluster; None = one process.
    pub nats_url: Option<String>,
    pub nats_prefix: String,
    pub node_name: String,
    pub role: Role,
    /// Participants per media node before a channel spans another (0 = no limit).
    pub media_capacity: usize,
    pub media_drain_seconds: u64,
    /// None = the media UDP port + 1 (0 when that is 0).
    pub relay_port: Option<u16>,
    /// Member count above which a server is large (READY carries only some of its members).
    pub large_threshold: usize,
    /// Built-in TLS: certificate chain and key files (both or neither).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Plain-HTTP listener redirecting to https (only with TLS).
    pub http_redirect_bind: Option<SocketAddr>,
    /// Peers whose forwarding headers are believed (`crate::proxy`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Automatic certificates over ACME for the public URL's domain (`crate::acme`).
    pub acme_email: Option<String>,
    pub acme_directory: Option<String>,
    /// TURN for voice clients (`crate::turn`); None = direct UDP only.
    pub turn: Option<crate::turn::TurnSettings>,
    /// IPv6 candidates: `auto`, `off` or an address (`media_ipv6`).
    pub ipv6: String,
    /// ICE over TCP on the media node (`ice_tcp_bind`).
    pub ice_tcp: bool,
    pub ice_tcp_port: Option<u16>,
    pub ice_tcp_max_connections: usize,
    pub ice_tcp_max_per_ip: usize,
    /// Link previews on (`crate::link_previews`).
    pub link_previews: bool,
    pub link_preview_concurrency: usize,
    /// Test-only exceptions to the previews' SSRF rules.
    pub link_preview_allow_cidrs: Vec<ipnet::IpNet>,
    /// VAPID `sub` (docs/push.md); None: the public URL, else mailto:admin@localhost.
    pub push_contact: Option<String>,
    /// Test-only: push endpoints on loopback over plain http.
    pub push_allow_loopback: bool,
    /// Largest uploaded file, bytes.
    pub max_upload_bytes: u64,
    /// Attachment quotas in bytes (0 = no limit).
    pub user_storage_quota: u64,
    pub server_storage_quota: u64,
    /// Directory of uploaded files when no bucket is set; None = `<data dir>/files`.
    pub files_dir: Option<PathBuf>,
    /// S3-compatible bucket for uploaded files (instead of the directory).
    pub s3: Option<confab_files::store::S3Config>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:3000".parse().expect("valid address"),
            data_dir: PathBuf::from("data"),
            database_url: None,
            udp_port: 3000,
            public_ip: None,
            max_audio_slots: 3,
            rate_limit_scale: 1.0,
            max_video_tiles: 9,
            public_url: None,
            allowed_origins: Vec::new(),
            jwt_secret: None,
            access_token_ttl: 900,
            heartbeat_interval_ms: 41_250,
            db_pool_size: 20,
            log_format: "pretty".into(),
            web_dir: None,
            sfu_fast_path: true,
            sfu_audio_rtx: false,
            sfu_send_workers: 0,
            video_bwe: false,
            video_start_bitrate_kbps: 2_000,
            opus_dtx: false,
            nats_url: None,
            nats_prefix: "confab".into(),
            node_name: default_node_name(),
            role: Role::All,
            media_capacity: 0,
            media_drain_seconds: 0,
            relay_port: None,
            large_threshold: 250,
            tls_cert: None,
            tls_key: None,
            http_redirect_bind: None,
            trusted_proxies: Vec::new(),
            acme_email: None,
            acme_directory: None,
            turn: None,
            ipv6: "auto".into(),
            ice_tcp: true,
            ice_tcp_port: None,
            ice_tcp_max_connections: 1024,
            ice_tcp_max_per_ip: 16,
            link_previews: true,
            link_preview_concurrency: 4,
            link_preview_allow_cidrs: Vec::new(),
            push_contact: None,
            push_allow_loopback: false,
            max_upload_bytes: 25 * MIB,
            user_storage_quota: 2048 * MIB,
            server_storage_quota: 20480 * MIB,
            files_dir: None,
            s3: None,
        }
    }
}

impl Config {
    /// Merges flags/environment over the optional file over defaults, and validates.
    pub fn load(cli: Cli) -> anyhow::Result<Self> {
        let file: FileConfig = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let d = Config::default();
        let cfg = Config {
            bind: cli.bind.or(file.bind).unwrap_or(d.bind),
            data_dir: cli.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
            database_url: cli
                .database_url
                .or(file.database_url)
                .filter(|s| !s.is_empty()),
            udp_port: cli.udp_port.or(file.udp_port).unwrap_or(d.udp_port),
            public_ip: cli.public_ip.or(file.public_ip),
            max_audio_slots: cli
                .max_audio_slots
                .or(file.max_audio_slots)
                .unwrap_or(d.max_audio_slots),
            rate_limit_scale: cli
                .rate_limit_scale
                .or(file.rate_limit_scale)
                .unwrap_or(d.rate_limit_scale),
            max_video_tiles: cli
                .max_video_tiles
                .or(file.max_video_tiles)
                .unwrap_or(d.max_video_tiles),
            public_url: cli.public_url.or(file.public_url),
            allowed_origins: cli
                .allowed_origins
                .or(file.allowed_origins)
                .unwrap_or_default(),
            jwt_secret: cli.jwt_secret.or(file.jwt_secret),
            access_token_ttl: cli
                .access_token_ttl
                .or(file.access_token_ttl)
                .unwrap_or(d.access_token_ttl),
            heartbeat_interval_ms: cli
                .heartbeat_interval_ms
                .or(file.heartbeat_interval_ms)
                .unwrap_or(d.heartbeat_interval_ms),
            db_pool_size: cli
                .db_pool_size
                .or(file.db_pool_size)
                .unwrap_or(d.db_pool_size),
            log_format: cli.log_format.or(file.log_format).unwrap_or(d.log_format),
            web_dir: cli.web_dir.or(file.web_dir),
            sfu_fast_path: cli
                .sfu_fast_path
                .or(file.sfu_fast_path)
                .unwrap_or(d.sfu_fast_path),
            sfu_audio_rtx: cli
                .sfu_audio_rtx
                .or(file.sfu_audio_rtx)
                .unwrap_or(d.sfu_audio_rtx),
            sfu_send_workers: cli
                .sfu_send_workers
                .or(file.sfu_send_workers)
                .unwrap_or(d.sfu_send_workers),
            video_bwe: cli.video_bwe.or(file.video_bwe).unwrap_or(d.video_bwe),
            video_start_bitrate_kbps: cli
                .video_start_bitrate_kbps
                .or(file.video_start_bitrate_kbps)
                .unwrap_or(d.video_start_bitrate_kbps),
            opus_dtx: cli.opus_dtx.or(file.opus_dtx).unwrap_or(d.opus_dtx),
            nats_url: cli.nats_url.or(file.nats_url).filter(|s| !s.is_empty()),
            nats_prefix: cli
                .nats_prefix
                .or(file.nats_prefix)
                .unwrap_or(d.nats_prefix),
            node_name: cli.node_name.or(file.node_name).unwrap_or(d.node_name),
            role: cli.role.or(file.role).unwrap_or(d.role),
            media_capacity: cli
                .media_capacity
                .or(file.media_capacity)
                .unwrap_or(d.media_capacity),
            media_drain_seconds: cli
                .media_drain_seconds
                .or(file.media_drain_seconds)
                .unwrap_or(d.media_drain_seconds),
            relay_port: cli.relay_port.or(file.relay_port),
            large_threshold: cli
                .large_threshold
                .or(file.large_threshold)
                .unwrap_or(d.large_threshold),
            tls_cert: cli.tls_cert.or(file.tls_cert),
            tls_key: cli.tls_key.or(file.tls_key),
            http_redirect_bind: cli.http_redirect_bind.or(file.http_redirect_bind),
            trusted_proxies: match cli.trusted_proxies {
                Some(nets) => nets,
                None => file
                    .trusted_proxies
                    .unwrap_or_default()
                    .iter()
                    .map(|s| crate::proxy::parse_net(s))
                    .collect::<Result<_, _>>()
                    .map_err(|e| anyhow::anyhow!("trusted_proxies: {e}"))?,
            },
            acme_email: cli.acme_email.or(file.acme_email).filter(|s| !s.is_empty()),
            acme_directory: cli
                .acme_directory
                .or(file.acme_directory)
                .filter(|s| !s.is_empty()),
            ipv6: cli.ipv6.or(file.ipv6).unwrap_or(d.ipv6),
            ice_tcp: cli.ice_tcp.or(file.ice_tcp).unwrap_or(d.ice_tcp),
            ice_tcp_port: cli.ice_tcp_port.or(file.ice_tcp_port),
            ice_tcp_max_connections: cli
                .ice_tcp_max_connections
                .or(file.ice_tcp_max_connections)
                .unwrap_or(d.ice_tcp_max_connections),
            ice_tcp_max_per_ip: cli
                .ice_tcp_max_per_ip
                .or(file.ice_tcp_max_per_ip)
                .unwrap_or(d.ice_tcp_max_per_ip),
            link_previews: cli
                .link_previews
                .or(file.link_previews)
                .unwrap_or(d.link_previews),
            link_preview_concurrency: cli
                .link_preview_concurrency
                .or(file.link_preview_concurrency)
                .unwrap_or(d.link_preview_concurrency),
            link_preview_allow_cidrs: match cli.link_preview_allow_cidrs {
                Some(nets) => nets,
                None => file
                    .link_preview_allow_cidrs
                    .unwrap_or_default()
                    .iter()
                    .map(|s| crate::proxy::parse_net(s))
                    .collect::<Result<_, _>>()
                    .map_err(|e| anyhow::anyhow!("link_preview_allow_cidrs: {e}"))?,
            },
            push_contact: cli.push_contact.or(file.push_contact),
            push_allow_loopback: cli
                .push_allow_loopback
                .or(file.push_allow_loopback)
                .unwrap_or(d.push_allow_loopback),
            max_upload_bytes: cli
                .max_upload_mib
                .or(file.max_upload_mib)
                .map_or(d.max_upload_bytes, |m| m.saturating_mul(MIB)),
            user_storage_quota: cli
                .user_storage_quota_mib
                .or(file.user_storage_quota_mib)
                .map_or(d.user_storage_quota, |m| m.saturating_mul(MIB)),
            server_storage_quota: cli
                .server_storage_quota_mib
                .or(file.server_storage_quota_mib)
                .map_or(d.server_storage_quota, |m| m.saturating_mul(MIB)),
            files_dir: cli.files_dir.or(file.files_dir),
            s3: cli
                .s3_bucket
                .or(file.s3_bucket)
                .filter(|b| !b.is_empty())
                .map(|bucket| confab_files::store::S3Config {
                    bucket,
                    endpoint: cli.s3_endpoint.or(file.s3_endpoint),
                    region: cli.s3_region.or(file.s3_region),
                    access_key_id: cli.s3_access_key_id.or(file.s3_access_key_id),
                    secret_access_key: cli.s3_secret_access_key.or(file.s3_secret_access_key),
                }),
            turn: crate::turn::TurnSettings::new(
                &cli.turn_urls.or(file.turn_urls).unwrap_or_default(),
                cli.turn_secret.or(file.turn_secret).as_deref(),
                std::time::Duration::from_secs(
                    cli.turn_ttl
                        .or(file.turn_ttl)
                        .unwrap_or(crate::turn::DEFAULT_TTL.as_secs()),
                ),
            )?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.rate_limit_scale.is_finite() && self.rate_limit_scale > 0.0,
            "--rate-limit-scale must be a positive number"
        );
        anyhow::ensure!(
            self.sfu_send_workers <= 64,
            "--sfu-send-workers must be 0 (one per core) ..= 64"
        );
        anyhow::ensure!(
            (MIB..=4096 * MIB).contains(&self.max_upload_bytes),
            "--max-upload-mib must be 1..=4096"
        );
        anyhow::ensure!(
            (1..=MAX_VIDEO_TILES_LIMIT).contains(&self.max_video_tiles),
            "--max-video-tiles must be 1..={MAX_VIDEO_TILES_LIMIT}"
        );
        anyhow::ensure!(
            (60..=86_400).contains(&self.access_token_ttl),
            "--access-token-ttl must be 60..=86400 seconds"
        );
        anyhow::ensure!(
            (1_000..=120_000).contains(&self.heartbeat_interval_ms),
            "--heartbeat-interval-ms must be 1000..=120000"
        );
        anyhow::ensure!(
            (1..=16).contains(&self.max_audio_slots),
            "--max-audio-slots must be 1..=16"
        );
        anyhow::ensure!(
            self.log_format == "pretty" || self.log_format == "json",
            "--log-format must be pretty or json"
        );
        anyhow::ensure!(
            !self.nats_prefix.is_empty()
                && self.nats_prefix.split('.').all(|t| !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')),
            "--nats-prefix must be dot-separated tokens of letters, digits, _ and -"
        );
        anyhow::ensure!(
            self.role == Role::All || self.nats_url.is_some(),
            "--role api and --role media are parts of a cluster: they need --nats-url"
        );
        anyhow::ensure!(
            self.ipv6 == "auto"
                || self.ipv6 == "off"
                || self
                    .ipv6
                    .parse::<std::net::Ipv6Addr>()
                    .is_ok_and(|a| !a.is_unspecified() && !a.is_loopback()),
            "--ipv6 must be auto, off or an IPv6 address to announce (not :: or ::1)"
        );
        anyhow::ensure!(
            self.ice_tcp_max_connections >= 1 && self.ice_tcp_max_per_ip >= 1,
            "--ice-tcp-max-connections and --ice-tcp-max-per-ip must be at least 1 (turn ICE-TCP off with --ice-tcp false)"
        );
        anyhow::ensure!(
            (1..=64).contains(&self.link_preview_concurrency),
            "--link-preview-concurrency must be 1..=64"
        );
        anyhow::ensure!(
            self.media_drain_seconds <= 3_600,
            "--media-drain-seconds must be 0..=3600"
        );
        if let Some(url) = &self.public_url {
            anyhow::ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "--public-url must start with http:// or https://"
            );
        }
        anyhow::ensure!(
            self.tls_cert.is_some() == self.tls_key.is_some(),
            "--tls-cert and --tls-key go together: give both files, or neither"
        );
        if let Some(email) = &self.acme_email {
            anyhow::ensure!(
                self.tls_cert.is_none() && self.tls_key.is_none(),
                "--acme-email obtains the certificate itself: leave out --tls-cert and --tls-key"
            );
            anyhow::ensure!(
                email.contains('@') && !email.contains(char::is_whitespace),
                "--acme-email must be an email address"
            );
            anyhow::ensure!(
                self.acme_domain().is_some(),
                "--acme-email needs --public-url https://<domain name> (not an IP address or localhost): the certificate is for that name"
            );
        }
        anyhow::ensure!(
            self.http_redirect_bind.is_none() || self.tls(),
            "--http-redirect-bind redirects to the built-in HTTPS: it needs --tls-cert and --tls-key"
        );
        Ok(())
    }

    /// Where ICE over TCP listens, if on: the media IP's bind address and `--ice-tcp-port`, by
    /// default the UDP media port's number, or the next one when the HTTP listener (TCP) has
    /// that number, as in the zero-configuration setup (port 0: the UDP socket's number).
    pub fn ice_tcp_bind(&self) -> Option<SocketAddr> {
        if !self.ice_tcp || !self.role.has_media() {
            return None;
        }
        let port = self.ice_tcp_port.unwrap_or(
            if self.udp_port != 0 && self.udp_port == self.bind.port() {
                self.udp_port.saturating_add(1)
            } else {
                self.udp_port
            },
        );
        Some(SocketAddr::new(self.bind.ip(), port))
    }

    /// IPv6 media, if on: where the IPv6 socket binds (port 0 = the UDP port's number) and the
    /// address announced. `auto` finds a public IPv6 address of this host, and only when the
    /// node listens on all addresses (a loopback or single-address bind is a local setup).
    pub fn media_ipv6(&self) -> Option<(SocketAddr, std::net::Ipv6Addr)> {
        if !self.role.has_media() {
            return None;
        }
        let all = self.bind.ip().is_unspecified();
        let public = match self.ipv6.as_str() {
            "off" => return None,
            "auto" if all => public_ipv6_of_host()?,
            "auto" => return None,
            addr => addr.parse().ok()?,
        };
        let ip = if all {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(public)
        };
        Some((SocketAddr::new(ip, self.udp_port), public))
    }

    /// The relay socket's port (`--relay-port`, else the media port + 1).
    pub fn relay_port(&self) -> u16 {
        self.relay_port.unwrap_or(if self.udp_port == 0 {
            0
        } else {
            self.udp_port.saturating_add(1)
        })
    }

    /// The media address announced to clients: the public IP, else the bind address, else
    /// 127.0.0.1 for a wildcard bind.
    pub fn media_ip(&self) -> IpAddr {
        self.public_ip.unwrap_or_else(|| {
            let ip = self.bind.ip();
            if ip.is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                ip
            }
        })
    }

    /// Browser origins allowed for CORS and the gateway.
    pub fn origins(&self, actual_bind: SocketAddr) -> Vec<String> {
        let mut v = self.allowed_origins.clone();
        match &self.public_url {
            Some(u) => v.push(u.trim_end_matches('/').to_string()),
            None => {
                let port = actual_bind.port();
                let scheme = if self.tls() { "https" } else { "http" };
                v.push(format!("{scheme}://127.0.0.1:{port}"));
                v.push(format!("{scheme}://localhost:{port}"));
                if !actual_bind.ip().is_unspecified() && !actual_bind.ip().is_loopback() {
                    v.push(format!("{scheme}://{actual_bind}"));
                }
            }
        }
        v
    }

    /// Whether Confab serves HTTPS itself (`--tls-cert`/`--tls-key`, or `--acme-email`).
    pub fn tls(&self) -> bool {
        (self.tls_cert.is_some() && self.tls_key.is_some()) || self.acme_email.is_some()
    }

    /// The domain an ACME certificate is for: the host of an https public URL, when it is a
    /// name (not an address, not localhost).
    pub fn acme_domain(&self) -> Option<String> {
        let url = self.public_url.as_deref()?.strip_prefix("https://")?;
        let authority = url.split(['/', '?', '#']).next()?;
        let host = authority.split(':').next()?.trim_end_matches('.');
        let valid = !host.is_empty()
            && host.contains('.')
            && host.parse::<IpAddr>().is_err()
            && !host.eq_ignore_ascii_case("localhost")
            && !host.to_ascii_lowercase().ends_with(".localhost")
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        valid.then(|| host.to_ascii_lowercase())
    }

    pub fn behind_tls(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }
}

/// The host name, else "confab".
fn default_node_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "confab".into())
}

/// A public IPv6 address of this host: global unicast (2000::/3), not the documentation range,
/// not temporary, deprecated or still being checked for duplicates. Read from
/// /proc/net/if_inet6 (Linux; elsewhere none is found and `--ipv6 ADDR` names it).
pub fn public_ipv6_of_host() -> Option<std::net::Ipv6Addr> {
    first_public_ipv6(&std::fs::read_to_string("/proc/net/if_inet6").ok()?)
}

/// The first usable public address in /proc/net/if_inet6's format.
fn first_public_ipv6(text: &str) -> Option<std::net::Ipv6Addr> {
    text.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        let hex = f.next()?;
        let flags = u32::from_str_radix(f.nth(3)?, 16).ok()?;
        let bits = u128::from_str_radix(hex, 16).ok()?;
        let addr = std::net::Ipv6Addr::from(bits);
        // IFA_F_TEMPORARY 0x01, IFA_F_DADFAILED 0x08, IFA_F_DEPRECATED 0x20, IFA_F_TENTATIVE 0x40
        let unusable = flags & (0x01 | 0x08 | 0x20 | 0x40) != 0;
        let global = addr.segments()[0] & 0xe000 == 0x2000;
        let documentation = addr.segments()[0] == 0x2001 && addr.segments()[1] == 0x0db8;
        (global && !documentation && !unusable).then_some(addr)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_media_is_found_or_named() {
        // /proc/net/if_inet6: address, ifindex, prefix length, scope, flags, name.
        let proc = "00000000000000000000000000000001 01 80 10 80 lo\n\
                    fe800000000000000000000000000001 02 40 20 80 eth0\n\
                    20010db8000000000000000000000001 02 40 00 80 eth0\n\
                    2a010000000000000000000000000005 02 40 00 01 eth0\n\
                    2a010000000000000000000000000007 02 40 00 80 eth0\n";
        assert_eq!(
            first_public_ipv6(proc),
            Some("2a01::7".parse().unwrap()),
            "global, permanent, not documentation"
        );
        assert_eq!(
            first_public_ipv6("fe800000000000000000000000000001 02 40 20 80 eth0\n"),
            None
        );
        let media = |tweak: &dyn Fn(&mut Config)| {
            let mut c = Config::default();
            tweak(&mut c);
            c.media_ipv6()
        };
        assert_eq!(media(&|_| {}), None, "a loopback bind is local use");
        let named = media(&|c| {
            c.bind = "0.0.0.0:3000".parse().unwrap();
            c.ipv6 = "2001:db8::5".into();
        });
        assert_eq!(
            named,
            Some(("[::]:3000".parse().unwrap(), "2001:db8::5".parse().unwrap()))
        );
        let on_one = media(&|c| {
            c.bind = "10.0.0.1:3000".parse().unwrap();
            c.ipv6 = "2001:db8::5".into();
        });
        assert_eq!(
            on_one,
            Some((
                "[2001:db8::5]:3000".parse().unwrap(),
                "2001:db8::5".parse().unwrap()
            ))
        );
        assert_eq!(
            media(&|c| {
                c.bind = "0.0.0.0:3000".parse().unwrap();
                c.ipv6 = "off".into();
            }),
            None
        );
        let bad = Config {
            ipv6: "::1".into(),
            ..Config::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn ice_tcp_port_follows_the_udp_port_unless_http_has_it() {
        let cfg = |tweak: &dyn Fn(&mut Config)| {
            let mut c = Config::default();
            tweak(&mut c);
            c.ice_tcp_bind()
        };
        // Zero configuration: HTTP on TCP 3000, so ICE-TCP takes 3001.
        assert_eq!(cfg(&|_| {}), Some("127.0.0.1:3001".parse().unwrap()));
        // HTTP elsewhere: the UDP port's number.
        assert_eq!(
            cfg(&|c| c.bind = "0.0.0.0:8080".parse().unwrap()),
            Some("0.0.0.0:3000".parse().unwrap())
        );
        assert_eq!(
            cfg(&|c| c.ice_tcp_port = Some(443)),
            Some("127.0.0.1:443".parse().unwrap())
        );
        // A random UDP port: the same number, chosen at start.
        assert_eq!(
            cfg(&|c| c.udp_port = 0),
            Some("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(cfg(&|c| c.ice_tcp = false), None);
        assert_eq!(
            cfg(&|c| {
                c.role = Role::Api;
                c.nats_url = Some("nats://x".into());
            }),
            None,
            "api nodes run no SFU"
        );
    }

    #[test]
    fn flags_override_file_and_defaults() {
        let dir = std::env::temp_dir().join(format!("confab-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("confab.toml");
        std::fs::write(
            &file,
            "bind = \"0.0.0.0:4000\"
udp_port = 5000
rate_limit_scale = 2.0
max_video_tiles = 4
sfu_fast_path = false
",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "confab",
            "--config",
            file.to_str().unwrap(),
            "--udp-port",
            "6000",
        ]);
        let cfg = Config::load(cli).unwrap();
        assert_eq!(cfg.bind, "0.0.0.0:4000".parse().unwrap());
        assert_eq!(cfg.udp_port, 6000);
        assert_eq!(cfg.rate_limit_scale, 2.0);
        assert_eq!(cfg.max_video_tiles, 4);
        assert!(!cfg.sfu_fast_path);
        let cli = Cli::parse_from([
            "confab",
            "--config",
            file.to_str().unwrap(),
            "--sfu-fast-path",
            "true",
        ]);
        assert!(Config::load(cli).unwrap().sfu_fast_path);
        assert_eq!(cfg.media_ip(), IpAddr::from([127, 0, 0, 1]));
        std::fs::write(&file, "bogus = 1\n").unwrap();
        let cli = Cli::parse_from(["confab", "--config", file.to_str().unwrap()]);
        assert!(Config::load(cli).is_err());
    }

    #[test]
    fn rejects_bad_values() {
        let cli = Cli::parse_from(["confab", "--rate-limit-scale", "0"]);
        assert!(Config::load(cli).is_err());
        for tiles in ["0", "26"] {
            let cli = Cli::parse_from(["confab", "--max-video-tiles", tiles]);
            assert!(Config::load(cli).is_err(), "{tiles} tiles accepted");
        }
        let cli = Cli::parse_from(["confab", "--sfu-send-workers", "65"]);
        assert!(Config::load(cli).is_err(), "65 send workers accepted");
        let cli = Cli::parse_from(["confab", "--sfu-send-workers", "2"]);
        assert_eq!(Config::load(cli).unwrap().sfu_send_workers, 2);
        let d = Config::load(Cli::parse_from(["confab"])).unwrap();
        assert_eq!(d.sfu_send_workers, 0, "one per core by default");
        assert_eq!(d.bind.port(), 3000);
        assert_eq!(d.udp_port, 3000);
        assert_eq!(d.max_video_tiles, 9);
        assert!(d.sfu_fast_path);
        assert!(!d.sfu_audio_rtx);
        let cli = Cli::parse_from(["confab", "--sfu-audio-rtx", "true"]);
        assert!(Config::load(cli).unwrap().sfu_audio_rtx);
        assert!(Cli::try_parse_from(["confab", "--sfu-fast-path", "maybe"]).is_err());
    }

    #[test]
    fn tls_and_proxy_settings() {
        let cli = Cli::parse_from(["confab", "--tls-cert", "c.pem"]);
        assert!(Config::load(cli).is_err(), "a certificate without its key");
        let cli = Cli::parse_from(["confab", "--http-redirect-bind", "0.0.0.0:80"]);
        assert!(Config::load(cli).is_err(), "a redirect without TLS");
        let cli = Cli::parse_from([
            "confab",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--trusted-proxies",
            "10.0.0.0/8,127.0.0.1",
        ]);
        let cfg = Config::load(cli).unwrap();
        assert!(cfg.tls());
        assert_eq!(cfg.trusted_proxies.len(), 2);
        // Browsers on the server's own origin come over https.
        let origins = cfg.origins("127.0.0.1:3000".parse().unwrap());
        assert!(origins.contains(&"https://127.0.0.1:3000".to_string()));
        assert!(Cli::try_parse_from(["confab", "--trusted-proxies", "nonsense"]).is_err());
    }

    #[test]
    fn link_preview_settings() {
        let d = Config::load(Cli::parse_from(["confab"])).unwrap();
        assert!(d.link_previews);
        assert_eq!(d.link_preview_concurrency, 4);
        assert!(
            d.link_preview_allow_cidrs.is_empty(),
            "no exceptions by default"
        );
        let cfg = Config::load(Cli::parse_from([
            "confab",
            "--link-previews",
            "false",
            "--link-preview-concurrency",
            "8",
            "--link-preview-allow-cidrs",
            "127.0.0.1/32,::1",
        ]))
        .unwrap();
        assert!(!cfg.link_previews);
        assert_eq!(cfg.link_preview_concurrency, 8);
        assert_eq!(cfg.link_preview_allow_cidrs.len(), 2);
        for n in ["0", "65"] {
            let cli = Cli::parse_from(["confab", "--link-preview-concurrency", n]);
            assert!(Config::load(cli).is_err(), "concurrency {n}");
        }
        assert!(Cli::try_parse_from(["confab", "--link-preview-allow-cidrs", "nonsense"]).is_err());
        let dir = std::env::temp_dir().join(format!("confab-lp-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("confab.toml");
        std::fs::write(
            &file,
            "link_previews = false\nlink_preview_allow_cidrs = [\"10.9.0.0/16\"]\n",
        )
        .unwrap();
        let cfg = Config::load(Cli::parse_from([
            "confab",
            "--config",
            file.to_str().unwrap(),
        ]))
        .unwrap();
        assert!(!cfg.link_previews);
        assert_eq!(
            cfg.link_preview_allow_cidrs,
            vec!["10.9.0.0/16".parse::<ipnet::IpNet>().unwrap()]
        );
        std::fs::write(&file, "link_preview_allow_cidrs = [\"nonsense\"]\n").unwrap();
        let cli = Cli::parse_from(["confab", "--config", file.to_str().unwrap()]);
        assert!(Config::load(cli).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn acme_settings() {
        let load = |args: &[&str]| Config::load(Cli::parse_from([&["confab"], args].concat()));
        let cfg = load(&[
            "--acme-email",
            "ops@example.org",
            "--public-url",
            "https://Chat.Example.org/",
        ])
        .unwrap();
        assert!(cfg.tls());
        assert_eq!(cfg.acme_domain().as_deref(), Some("chat.example.org"));
        for bad in [
            &["--acme-email", "ops@example.org"][..],
            &[
                "--acme-email",
                "ops@example.org",
                "--public-url",
                "http://chat.example.org",
            ],
            &[
                "--acme-email",
                "ops@example.org",
                "--public-url",
                "https://203.0.113.7",
            ],
            &[
                "--acme-email",
                "ops@example.org",
                "--public-url",
                "https://localhost",
            ],
            &[
                "--acme-email",
                "nobody",
                "--public-url",
                "https://chat.example.org",
            ],
            &[
                "--acme-email",
                "ops@example.org",
                "--public-url",
                "https://chat.example.org",
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
            ],
        ] {
            assert!(load(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_example_config_file_loads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/confab.toml");
        let cli = Cli::parse_from(["confab", "--config", path]);
        let cfg = Config::load(cli).expect("deploy/confab.toml is a valid configuration");
        assert_eq!(cfg.public_url.as_deref(), Some("https://chat.example.org"));
        assert_eq!(cfg.trusted_proxies.len(), 2);
        assert!(cfg.public_ip.is_some());
    }
}
