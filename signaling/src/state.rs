//! Shared application state, cloned into every handler.

use crate::auth::TokenKeys;
use crate::bus::EventBus;
use crate::config::Config;
use crate::gateway::hub::{Hub, Target};
use crate::ratelimit::RateLimiter;
use crate::voice::VoiceService;
use confab_chat::Chat;
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
    /// Browser origins allowed (CORS and gateway).
    pub origins: Vec<String>,
    /// Cancelled when the server begins shutting down.
    pub shutdown: CancellationToken,
    pub voice: VoiceService,
    /// Who may see each channel, for routing its events (see `channel_target`).
    pub viewers: crate::viewers::ViewerCache,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Gateway connections that have not identified yet, per IP.
    pub pending_gateway: crate::gateway::PendingConnections,
    /// Open while the database is unreachable: REST answers 503 at once.
    pub db_circuit: crate::db_circuit::DbCircuit,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// The recipients of a channel's events: the whole server, or only the members who may
    /// view it (overwrites or roles restrict it), optionally without one user.
    /// A DM's events go to its recipients (`server_id` None).
    pub async fn channel_target(
        &self,
        server_id: Option<confab_chat::Snowflake>,
        channel_id: confab_chat::Snowflake,
        except: Option<confab_chat::Snowflake>,
    ) -> Target {
        match (self.viewers.get(&self.chat, channel_id).await, server_id) {
            // "The whole server" cannot be a DM's answer; nobody rather than a guess.
            (None, None) => Target::Users(Vec::new()),
            (None, Some(server_id)) => match except {
                Some(u) => Target::ServerExcept(server_id, u),
                None => Target::Server(server_id),
            },
            (Some(list), _) => Target::Users(
                list.iter()
                    .copied()
                    .filter(|u| Some(*u) != except)
                    .collect(),
            ),
        }
    }
}
