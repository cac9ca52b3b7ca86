//! Shared application state, cloned into every handler.

use crate::auth::TokenKeys;
use crate::config::Config;
use crate::events::EventBus;
use crate::gateway::hub::{Dispatch, Hub, Target};
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
    pub sessions: crate::auth::SessionCache,
    pub limiter: RateLimiter,
    pub hub: Arc<Hub>,
    pub bus: Arc<dyn EventBus>,
    /// Browser origins allowed (CORS and gateway).
    pub origins: Vec<String>,
    /// Cancelled when the server begins shutting down.
    pub shutdown: CancellationToken,
    pub voice: VoiceService,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Publishes a dispatch event (`t`, `d`) to the sessions `target` names.
    pub fn emit<T: serde::Serialize>(&self, target: Target, t: &'static str, d: &T) {
        self.bus.publish(target, Dispatch::new(t, d));
    }
}
