//! Shared application state, cloned into every handler.

use crate::auth::TokenKeys;
use crate::bus::EventBus;
use crate::config::Config;
use crate::gateway::hub::{Hub, Target};
use crate::ratelimit::RateLimiter;
use crate::voice::VoiceService;
use confab_chat::{ChannelId, Chat, ServerId, UserId};
use std::ops::Deref;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub chat: Chat,
    pub tokens: TokenKeys,
    pub sessions: Arc<crate::auth::SessionCache>,
    pub limiter: RateLimiter,
    pub hub: Arc<Hub>,
    pub bus: Arc<dyn EventBus>,
    /// The cluster's NATS bus, when `--nats-url` is set (the same object as `bus`).
    pub nats: Option<Arc<crate::bus::nats::NatsBus>>,
    /// Who holds this node's snowflake worker lease (`confab_chat::workers`).
    pub worker_holder: String,
    /// Browser origins allowed (CORS and gateway).
    pub origins: Vec<String>,
    /// Cancelled when the server begins shutting down.
    pub shutdown: CancellationToken,
    pub voice: Arc<VoiceService>,
    /// Who may see each channel, for routing its events (see `channel_target`).
    pub viewers: Arc<crate::viewers::ViewerCache>,
    /// Emits dispatch events (here and over the bus).
    pub dispatcher: crate::bus::Dispatcher,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Gateway connections that have not identified yet, per IP.
    pub pending_gateway: crate::gateway::PendingConnections,
    /// Open while the database is unreachable: REST answers 503 at once.
    pub db_circuit: crate::db_circuit::DbCircuit,
    /// Queues messages for link previews (`crate::link_previews`).
    pub previews: crate::link_previews::LinkPreviews,
    /// Where uploaded files live (local directory or S3).
    pub files: confab_files::FileStore,
    /// Queues Web Push notifications (`crate::push`).
    pub push: crate::push::Push,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Waits until this node receives other nodes' events for every session it has opened
    /// (a no-op in one process).
    pub async fn bus_sync(&self) {
        if let Some(nats) = &self.nats {
            nats.sync().await;
        }
    }

    /// The recipients of a channel's events: the whole server, or only the members who may
    /// view it (overwrites or roles restrict it), optionally without one user.
    /// A DM's events go to its recipients (`server_id` None).
    pub async fn channel_target(
        &self,
        server_id: Option<ServerId>,
        channel_id: ChannelId,
        except: Option<UserId>,
    ) -> Target {
        self.viewers
            .target(&self.chat, server_id, channel_id, except)
            .await
    }
}
