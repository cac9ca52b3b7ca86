//! Starting the media plane: this process's SFU alone (one process), or a cluster node's part
//! of the media plane (`--role all|api|media` with `--nats-url`).

use super::cluster::ClusterMedia;
use super::node::MediaNode;
use super::{MediaEvent, MediaPlane};
use crate::config::{Config, Role};
use anyhow::Context;
use axum::response::IntoResponse;
use confab_chat::Chat;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub fn sfu_config(config: &Config) -> confab_sfu::SfuConfig {
    let mut sfu = confab_sfu::SfuConfig {
        max_video_slots: config.max_video_tiles,
        max_audio_slots: config.max_audio_slots,
        fast_path: config.sfu_fast_path,
        audio_rtx: config.sfu_audio_rtx,
        send_workers: config.sfu_send_workers,
        video_bwe: config.video_bwe,
        video_start_bitrate_kbps: config.video_start_bitrate_kbps,
        opus_dtx: config.opus_dtx,
        ..confab_sfu::SfuConfig::new(
            SocketAddr::new(config.bind.ip(), config.udp_port),
            config.media_ip(),
        )
    };
    sfu.ipv6 = config
        .media_ipv6()
        .map(|(bind, public_ip)| confab_sfu::Ipv6Media { bind, public_ip });
    sfu.ice_tcp = config.ice_tcp_bind().map(|bind| confab_sfu::IceTcpConfig {
        max_connections: config.ice_tcp_max_connections,
        max_per_ip: config.ice_tcp_max_per_ip,
        ..confab_sfu::IceTcpConfig::new(bind)
    });
    if config.nats_url.is_some() {
        super::relay::enable(
            &mut sfu,
            SocketAddr::new(config.bind.ip(), config.relay_port()),
        );
    }
    sfu
}

fn start_sfu(
    config: &Config,
) -> anyhow::Result<(
    confab_sfu::Sfu,
    mpsc::UnboundedReceiver<confab_sfu::SfuEvent>,
)> {
    let (sfu, events) =
        confab_sfu::Sfu::start(sfu_config(config)).context("starting the SFU (UDP port)")?;
    tracing::info!(
        "voice media on udp://{} (announced as {}), ICE-TCP {}, IPv6 {}",
        sfu.local_addr(),
        config.media_ip(),
        sfu.tcp_addr()
            .map_or_else(|| "off".to_string(), |a| format!("on tcp://{a}")),
        sfu.ipv6_addr()
            .map_or_else(|| "off".to_string(), |a| format!("on udp://{a}"))
    );
    Ok((sfu, events))
}

/// The NATS connection of the media plane. Unlike the event bus's, it receives what this
/// process publishes itself: a node of role `all` places voice on its own SFU over NATS too.
async fn connect(config: &Config, url: &str) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .name(format!("confab media {}", config.node_name))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(url)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))
}

/// The media plane of a node that serves chat (role `all` or `api`).
pub struct Plane {
    pub media: MediaPlane,
    pub events: mpsc::UnboundedReceiver<MediaEvent>,
    /// This node's own SFU as a media node of the cluster (role `all` with NATS).
    pub node: Option<Arc<MediaNode>>,
    /// Where this node's SFU takes ICE over TCP, if it runs one with ICE-TCP on.
    pub ice_tcp: Option<SocketAddr>,
    /// Where this node's SFU takes IPv6, if it runs one with IPv6 on.
    pub ipv6: Option<SocketAddr>,
}

pub async fn plane(
    config: &Config,
    chat: &Chat,
    shutdown: &CancellationToken,
) -> anyhow::Result<Plane> {
    let Some(url) = config.nats_url.as_deref() else {
        let (sfu, sfu_events) = start_sfu(config)?;
        let (ice_tcp, ipv6) = (sfu.tcp_addr(), sfu.ipv6_addr());
        let (media, events) = MediaPlane::local(sfu, sfu_events);
        return Ok(Plane {
            media,
            events,
            node: None,
            ice_tcp,
            ipv6,
        });
    };
    let client = connect(config, url).await?;
    let node = if config.role.has_media() {
        let (sfu, sfu_events) = start_sfu(config)?;
        Some(
            MediaNode::start(
                client.clone(),
                &config.nats_prefix,
                &config.node_name,
                sfu,
                sfu_events,
                config.media_capacity,
                shutdown.clone(),
            )
            .await?,
        )
    } else {
        None
    };
    let (tx, events) = mpsc::unbounded_channel();
    let cluster = ClusterMedia::start(
        client,
        &config.nats_prefix,
        &config.node_name,
        chat.clone(),
        tx,
        shutdown.clone(),
    )
    .await?;
    Ok(Plane {
        media: MediaPlane::Cluster(cluster),
        events,
        ice_tcp: node.as_ref().and_then(|n| n.sfu().tcp_addr()),
        ipv6: node.as_ref().and_then(|n| n.sfu().ipv6_addr()),
        node,
    })
}

/// A running media node (`--role media`): the SFU, NATS, and an HTTP port for `/metrics`,
/// `/healthz` and `/readyz`.
pub struct MediaRunning {
    pub addr: SocketAddr,
    pub node: Arc<MediaNode>,
    drain: Duration,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub async fn start_media_node(config: Config) -> anyhow::Result<MediaRunning> {
    anyhow::ensure!(config.role == Role::Media, "not a media node");
    let url = config
        .nats_url
        .clone()
        .context("a media node needs --nats-url")?;
    let metrics = crate::metrics::install(&config.node_name);
    super::describe_metrics();
    let shutdown = CancellationToken::new();
    let client = connect(&config, &url).await?;
    let (sfu, events) = start_sfu(&config)?;
    let node = MediaNode::start(
        client,
        &config.nats_prefix,
        &config.node_name,
        sfu,
        events,
        config.media_capacity,
        shutdown.clone(),
    )
    .await?;
    tracing::info!(node = %config.node_name, "media node on NATS {url}");
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    let addr = listener.local_addr()?;
    let ready_node = node.clone();
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route(
            "/readyz",
            axum::routing::get(move || {
                let node = ready_node.clone();
                async move {
                    let ok = node.sfu().is_running();
                    let status = if ok {
                        axum::http::StatusCode::OK
                    } else {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    };
                    (
                        status,
                        axum::Json(serde_json::json!({"ready": ok, "sfu": ok})),
                    )
                }
            }),
        )
        .route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move {
                    let mut body = metrics.render();
                    body.push_str(&crate::metrics::process_metrics());
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        body,
                    )
                        .into_response()
                }
            }),
        );
    let token = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await
    });
    Ok(MediaRunning {
        addr,
        node,
        drain: Duration::from_secs(config.media_drain_seconds),
        shutdown,
        server,
    })
}

impl MediaRunning {
    /// Drains (participants move to other media nodes), then stops.
    pub async fn shutdown(self) {
        // Bounded: the drain talks to NATS, which may be gone too.
        let _ = tokio::time::timeout(
            self.drain + Duration::from_secs(10),
            self.node.drain(self.drain),
        )
        .await;
        self.node.sfu().shutdown();
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
    }

    /// Stops at once, as a crash would (for tests: nothing is drained or said).
    pub fn kill(self) {
        self.node.sfu().shutdown();
        self.shutdown.cancel();
        self.server.abort();
    }
}
