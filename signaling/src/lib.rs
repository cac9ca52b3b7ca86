//! Confab's signaling plane: configuration, the REST API, the real-time gateway, voice
//! signalling towards the SFU, rate limits, metrics and the static web client. `start` runs it
//! all; the `confab` binary is a thin shell around it, and tests start it on port 0.
//!
//! **The message path.** `POST /channels/{id}/messages` (`http::channels`) checks the body
//! (`input`), and `confab_chat` checks permissions and stores the message (a batched group
//! commit, acknowledged once it is in PostgreSQL). The handler then emits `MESSAGE_CREATE` to
//! the channel's viewers (`viewers`, `AppState::channel_target`): a `bus::BusEvent::Dispatch`
//! that this node delivers at once through `gateway::hub` — the routing index turns the
//! audience into users with sessions here, and each session's replay buffer numbers it and
//! queues it for its WebSocket (`gateway::connection`) — and that the `bus::EventBus` carries
//! to the other nodes, which deliver it to theirs.
//!
//! **Changes.** A handler that changes who may see or do what (a member joins or leaves, a
//! role or overwrite changes, a server or channel is deleted, a friendship, ended sessions)
//! publishes the change itself (`AppState::publish`); `bus::apply`, run by every node, is the
//! only code that updates the routing index, the viewer cache and live voice sessions, so
//! every node follows. `visibility` turns a permission change into `CHANNEL_CREATE` /
//! `CHANNEL_DELETE` for the members whose view changed.
//!
//! **The voice path.** Gateway op 4 (`voice::VoiceService::state_update`) checks CONNECT and
//! SPEAK and records the participant (`voice::registry`); op 12 hands the client's SDP offer to
//! the SFU (`confab_sfu`), whose answer goes back as op 13. Media then flows between browser
//! and SFU only. The SFU's events (slots, speaking, renegotiation, video layers) come back
//! through `VoiceService`'s event pump and become dispatches to the participant or to the
//! voice channel's viewers (`voice::audience`); permission changes re-check every participant
//! (`voice::moderation`).
//!
//! **Several nodes.** With `--nats-url` the bus is `bus::nats::NatsBus`: dispatches go to NATS
//! subjects per server and user, each node subscribing only to those its sessions need (the
//! hub tells it, `gateway::routing::Interest`), and every other change goes to one control
//! subject all nodes apply. Presence (`gateway::presence::RemotePresence`), rate-limit usage
//! (`ratelimit`) and temporary memberships (`temporary_members`) follow what the other nodes
//! report; snowflake worker ids are leased in PostgreSQL (`confab_chat::workers`). See
//! docs/cluster.md.

/// `confab --version`: the package version and the commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CONFAB_GIT_COMMIT"),
    ")"
);

pub mod acme;
pub mod auth;
pub mod bus;
pub mod config;
pub mod db_circuit;
pub mod doctor;
pub mod error;
pub mod gateway;
pub mod http;
pub mod input;
pub mod link_previews;
pub mod media;
pub mod metrics;
pub mod process;
pub mod proxy;
pub mod push;
pub mod ratelimit;
pub mod state;
pub mod temporary_members;
pub mod tls;
pub mod turn;
pub mod viewers;
pub mod visibility;
pub mod voice;

use anyhow::Context;
use confab_chat::postgres::{EmbeddedOptions, EmbeddedPostgres};
use confab_chat::Chat;
use config::Config;
use state::{AppState, Inner};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A running Confab.
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    postgres: Option<EmbeddedPostgres>,
    /// This node's SFU as a media node of the cluster (role `all` with NATS).
    pub media_node: Option<Arc<media::node::MediaNode>>,
    /// The certificate served when Confab serves HTTPS itself (`--tls-cert`).
    pub tls: Option<Arc<tls::CertStore>>,
    /// The plain-HTTP redirect listener's address (`--http-redirect-bind`).
    pub redirect_addr: Option<SocketAddr>,
    /// Where this node's SFU takes ICE over TCP (None: no SFU here, or ICE-TCP off).
    pub ice_tcp: Option<SocketAddr>,
    /// Where this node's SFU takes IPv6 (None: no SFU here, or IPv6 off).
    pub ipv6: Option<SocketAddr>,
}

/// Starts everything `config` describes and returns once it is listening: one process, or a
/// node of a cluster when `config.nats_url` is set.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let shutdown = CancellationToken::new();
    let Some(url) = config.nats_url.clone() else {
        return start_node(config, BusLink::local(Arc::new(bus::LocalBus)), shutdown).await;
    };
    let (nats, incoming) = bus::nats::NatsBus::connect(
        &url,
        &config.nats_prefix,
        &config.node_name,
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("connecting to NATS at {url}"))?;
    tracing::info!(node = %config.node_name, "cluster node on NATS {url}");
    let link = BusLink {
        bus: nats.clone(),
        interest: nats.clone(),
        incoming: Some(incoming),
        nats: Some(nats),
    };
    start_node(config, link, shutdown).await
}

/// `start`, with `bus` carrying this node's events to others (or recording them, in tests).
pub async fn start_with_bus(
    config: Config,
    event_bus: Arc<dyn bus::EventBus>,
) -> anyhow::Result<Running> {
    start_node(config, BusLink::local(event_bus), CancellationToken::new()).await
}

/// How a node is tied to the others.
struct BusLink {
    bus: Arc<dyn bus::EventBus>,
    /// Told which audiences this node's sessions need.
    interest: Arc<dyn gateway::routing::Interest>,
    /// Events from other nodes, applied in arrival order.
    incoming: Option<tokio::sync::mpsc::UnboundedReceiver<bus::BusEvent>>,
    nats: Option<Arc<bus::nats::NatsBus>>,
}

impl BusLink {
    fn local(bus: Arc<dyn bus::EventBus>) -> Self {
        BusLink {
            bus,
            interest: Arc::new(gateway::routing::NoInterest),
            incoming: None,
            nats: None,
        }
    }
}

async fn start_node(
    config: Config,
    link: BusLink,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    let event_bus = link.bus.clone();
    let clustered = link.nats.is_some();
    let metrics = metrics::install(&config.node_name);
    media::describe_metrics();
    tls::describe_metrics();
    if link.nats.is_none() {
        // In one process the bus is always there.
        ::metrics::gauge!("confab_bus_connected").set(1.0);
    }
    if (config.rate_limit_scale - 1.0).abs() > f64::EPSILON {
        tracing::warn!(
            scale = config.rate_limit_scale,
            "RATE LIMITS SCALED: every rate-limit bucket is multiplied by {} (--rate-limit-scale); use only for load tests",
            config.rate_limit_scale
        );
    }
    // Unusable certificate files stop the start before anything else is set up.
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::CertStore::load(cert, key)?),
        _ if config.acme_email.is_some() => Some(acme::store(&config)?),
        _ => None,
    };
    let (database_url, postgres) = match &config.database_url {
        Some(url) => (url.clone(), None),
        None => {
            let pg = EmbeddedPostgres::start(EmbeddedOptions {
                data_dir: config.data_dir.clone(),
                ephemeral: false,
                database: "confab".into(),
            })
            .await
            .context("starting the private PostgreSQL (set DATABASE_URL to use another server)")?;
            tracing::info!(
                "private PostgreSQL running under {}",
                config.data_dir.join("pg").display()
            );
            (pg.url(), Some(pg))
        }
    };
    let pool = confab_chat::postgres::connect(&database_url, config.db_pool_size)
        .await
        .context("connecting to PostgreSQL")?;
    confab_chat::postgres::migrate(&pool)
        .await
        .context("applying migrations")?;

    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    let addr = listener.local_addr()?;
    let secret = auth::TokenKeys::load_secret(config.jwt_secret.as_deref(), &config.data_dir)?;
    let worker_holder = format!("{}/{}", config.node_name, uuid::Uuid::new_v4().simple());
    let chat = Chat::new(pool, 0, &worker_holder)
        .with_file_urls(confab_chat::files::FileUrls::from_secret(&secret));
    let files = http::files::open_store(&config)?;
    tracing::info!(store = files.kind(), "file store open");
    let worker = chat
        .lease_worker()
        .await
        .context("leasing a snowflake worker id")?;
    tracing::info!(worker, "snowflake worker id leased");
    let closed = chat.close_stale_voice_sessions(clustered).await?;
    if closed > 0 {
        tracing::info!(
            closed,
            "closed voice sessions left open by the previous run"
        );
    }
    let plane = media::run::plane(&config, &chat, &shutdown).await?;
    let hub = gateway::hub::Hub::with_interest(link.interest);
    let sessions = Arc::new(auth::SessionCache::default());
    let viewers = Arc::new(viewers::ViewerCache::default());
    let dispatcher = bus::Dispatcher::new(event_bus.clone(), hub.clone());
    let voice = Arc::new(voice::VoiceService::new(
        plane.media,
        chat.clone(),
        dispatcher.clone(),
        viewers.clone(),
        config.max_video_tiles,
        clustered.then(|| config.node_name.clone()),
    ));
    let (previews, preview_worker) = link_previews::LinkPreviews::new(&config);
    let (push, push_worker) = push::Push::new(&chat, &config)
        .await
        .context("loading the VAPID key")?;
    let state = AppState(Arc::new(Inner {
        origins: config.origins(addr),
        chat,
        tokens: auth::TokenKeys::new(&secret, config.access_token_ttl),
        bus: event_bus,
        nats: link.nats,
        worker_holder,
        sessions,
        limiter: if clustered {
            ratelimit::RateLimiter::shared(config.rate_limit_scale)
        } else {
            ratelimit::RateLimiter::new(config.rate_limit_scale)
        },
        hub,
        shutdown: shutdown.clone(),
        voice: voice.clone(),
        viewers,
        dispatcher,
        metrics,
        pending_gateway: Default::default(),
        db_circuit: Default::default(),
        previews,
        files,
        push,
        config,
    }));
    spawn_housekeeping(state.clone());
    if let Some(events) = state.chat.take_safety_events() {
        tokio::spawn(http::safety::deliver_events(state.clone(), events));
    }
    http::files::spawn_workers(state.clone());
    if let Some(worker) = preview_worker {
        worker.spawn(state.clone());
    }
    push_worker.spawn(state.clone());
    if let Some(incoming) = link.incoming {
        tokio::spawn(apply_incoming(state.clone(), incoming));
        tokio::spawn(share_rate_usage(state.clone()));
    }
    tokio::spawn(db_circuit::DbCircuit::run_probe(state.clone()));
    voice.spawn_event_pump(shutdown.clone(), plane.events);

    let app = http::router(state.clone());
    let token = shutdown.clone();
    let server = match &tls {
        None => tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await
        }),
        Some(store) => {
            use axum::serve::ListenerExt;
            let listener =
                tls::TlsListener::spawn(listener, store.server_config()?, shutdown.clone())?
                    .tap_io(|_| {});
            tokio::spawn(async move {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await
            })
        }
    };
    let redirect_addr = match state.config.http_redirect_bind {
        Some(bind) if tls.is_some() => {
            let plain = tokio::net::TcpListener::bind(bind)
                .await
                .with_context(|| format!("binding {bind} (--http-redirect-bind)"))?;
            let redirect_addr = plain.local_addr()?;
            let app = tls::redirect_router(state.config.public_url.clone(), addr.port());
            let token = shutdown.clone();
            tokio::spawn(async move {
                axum::serve(plain, app)
                    .with_graceful_shutdown(async move { token.cancelled().await })
                    .await
            });
            tracing::info!("redirecting http://{redirect_addr} to https");
            Some(redirect_addr)
        }
        _ => None,
    };
    if let (Some(store), true) = (&tls, state.config.acme_email.is_some()) {
        acme::spawn(store.clone(), &state.config, shutdown.clone());
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!("Confab listening on {scheme}://{addr}");
    Ok(Running {
        addr,
        state,
        server,
        postgres,
        media_node: plane.node,
        tls,
        redirect_addr,
        ice_tcp: plane.ice_tcp,
        ipv6: plane.ipv6,
    })
}

/// Applies what other nodes publish, one event at a time in arrival order, until shutdown.
async fn apply_incoming(
    state: AppState,
    mut incoming: tokio::sync::mpsc::UnboundedReceiver<bus::BusEvent>,
) {
    loop {
        let event = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            event = incoming.recv() => match event {
                Some(event) => event,
                None => return,
            },
        };
        bus::apply(&state, event).await;
    }
}

/// A cluster's presence upkeep: forgets what gone nodes reported (their users' watchers here
/// learn the presence that remains) and, when `refresh`, repeats this node's own view.
fn cluster_presence(state: &AppState, refresh: bool) {
    use gateway::events::Event;
    for (user_id, audience) in state.hub.remote_presence.expire(std::time::Instant::now()) {
        if let Some(audience) = audience {
            let status = state.hub.presence_of(user_id);
            let d = gateway::hub::Dispatch::new(
                Event::PresenceUpdate,
                &serde_json::json!({"user_id": user_id, "status": status}),
            );
            state.hub.deliver_presence(user_id, &audience, &d);
        }
    }
    if refresh {
        // In parts, so that a node with many users sends messages of a bounded size.
        for part in state.hub.local_presences().chunks(1000) {
            state.bus.publish(&bus::BusEvent::PresenceRefresh {
                node: state.worker_holder.clone(),
                users: part.to_vec(),
            });
        }
    }
}

/// Tells the other nodes what this node's rate-limit buckets admitted, every
/// `ratelimit::SHARE_EVERY`, until shutdown.
async fn share_rate_usage(state: AppState) {
    let mut tick = tokio::time::interval(ratelimit::SHARE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let usage = state.limiter.take_usage();
        // In parts, so that a busy node sends messages of a bounded size.
        for part in usage.chunks(2000) {
            state.bus.publish(&bus::BusEvent::RateUsage(part.to_vec()));
        }
    }
}

/// Renews this node's snowflake worker lease; takes a new worker id if it was lost.
async fn renew_worker_lease(state: &AppState) {
    match state.chat.renew_worker().await {
        Ok(true) => {}
        Ok(false) => {
            tracing::error!(
                "snowflake worker lease lost (database unreachable too long?); leasing another"
            );
            match state.chat.lease_worker().await {
                Ok(worker) => tracing::info!(worker, "snowflake worker id leased"),
                Err(e) => tracing::error!(error = %e, "leasing a snowflake worker id"),
            }
        }
        Err(e) => tracing::warn!(error = %e, "renewing the snowflake worker lease"),
    }
}

/// Periodic clean-up: expired gateway sessions, idle rate-limit buckets, and temporary members
/// who never came online; and the snowflake worker lease.
fn spawn_housekeeping(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            for id in state.hub.expired() {
                if let Some(session) = state.hub.close(&id) {
                    state.voice.session_closed(&id).await;
                    temporary_members::session_ended(&state, session.user_id).await;
                }
            }
            n += 1;
            // Hourly: link preview cache entries without an image, past their use.
            if n.is_multiple_of(720) {
                if let Err(e) = state
                    .chat
                    .sweep_link_previews(link_previews::CACHE_TTL * 7)
                    .await
                {
                    tracing::warn!(error = %e, "sweeping the link preview cache");
                }
            }
            if state.nats.is_some() {
                cluster_presence(
                    &state,
                    n.is_multiple_of(gateway::presence::REFRESH.as_secs() / 5),
                );
                if n.is_multiple_of(voice::remote::REFRESH.as_secs() / 5) {
                    state.voice.refresh_remote().await;
                }
                if n.is_multiple_of(6) {
                    // Voice sessions of nodes that died without closing them.
                    if let Err(e) = state.chat.close_stale_voice_sessions(true).await {
                        tracing::warn!(error = %e, "closing voice sessions of gone nodes");
                    }
                }
            }
            if n.is_multiple_of(confab_chat::workers::RENEW_EVERY.as_secs() / 5) {
                renew_worker_lease(&state).await;
            }
            if n.is_multiple_of(60) {
                state.limiter.sweep();
                // Interactions older than a day can no longer be answered: forget them.
                if let Err(e) = state.chat.prune_interactions().await {
                    tracing::warn!(error = %e, "pruning old interactions");
                }
            }
            if n.is_multiple_of(6) {
                temporary_members::sweep(&state, temporary_members::GRACE).await;
                // Threads idle past their auto-archive duration (a minute late at most).
                http::threads::archive_sweep(&state).await;
            }
        }
    });
}

impl Running {
    /// Reads the TLS certificate and key files again (SIGHUP); connections stay open, new
    /// handshakes get the new certificate. An error leaves the old certificate in use.
    pub fn reload_tls(&self) -> anyhow::Result<bool> {
        match &self.tls {
            Some(store) => store.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// Graceful shutdown: stop accepting, tell gateway clients to reconnect elsewhere, finish
    /// in-flight requests, then stop the private PostgreSQL.
    pub async fn shutdown(self) {
        if let Some(node) = &self.media_node {
            // Its voice sessions move to other media nodes first.
            let wait = Duration::from_secs(self.state.config.media_drain_seconds);
            // Bounded: the drain talks to NATS, which may be gone too.
            let _ = tokio::time::timeout(wait + SHUTDOWN_STEP, node.drain(wait)).await;
        }
        self.state.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.server).await;
        // Gateway connections close themselves on the cancelled token; give them a moment.
        for _ in 0..50 {
            if metrics_gateway_idle(&self.state) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Each step is bounded: a process asked to stop must stop, even with its database or
        // bus unreachable (the lease then simply expires).
        match tokio::time::timeout(SHUTDOWN_STEP, self.state.chat.release_worker()).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing the snowflake worker lease"),
            Err(_) => tracing::warn!("releasing the snowflake worker lease timed out"),
            Ok(Ok(())) => {}
        }
        if tokio::time::timeout(SHUTDOWN_STEP, self.state.chat.pool().close())
            .await
            .is_err()
        {
            tracing::warn!("closing the database pool timed out");
        }
        if let Some(pg) = self.postgres {
            tokio::task::spawn_blocking(move || pg.stop()).await.ok();
        }
    }
}

/// The longest any one step of a graceful shutdown may take.
const SHUTDOWN_STEP: Duration = Duration::from_secs(5);

fn metrics_gateway_idle(state: &AppState) -> bool {
    state.hub.all_sessions().iter().all(|s| !s.connected())
}
