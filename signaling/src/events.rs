//! The event bus: how a change made by one request reaches every gateway session that should
//! see it. In one process the bus hands events straight to the hub; with several nodes it is
//! NATS (one subject per server/user), and each node's hub delivers to its own sessions. The
//! rest of the code only calls `AppState::emit`.

use crate::auth::SessionCache;
use crate::gateway::hub::{Dispatch, Hub, Target};
use confab_chat::Snowflake;
use std::sync::Arc;

pub trait EventBus: Send + Sync {
    fn publish(&self, target: Target, dispatch: Arc<Dispatch>);
    /// Login sessions were revoked (see `auth::end_sessions`): every node runs
    /// `apply_sessions_ended`.
    fn sessions_ended(&self, ended: SessionsEnded);
}

/// "These login sessions of this user ended" — what a node needs to forget them and close
/// their gateway connections. Serializable so that a bus between nodes can carry it as is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionsEnded {
    pub user_id: Snowflake,
    pub sessions: Vec<Snowflake>,
}

/// What every node does with `SessionsEnded`: drop cached "active" answers for the sessions
/// and end their gateway sessions here (connected ones close with 4004; none can RESUME).
pub fn apply_sessions_ended(hub: &Hub, cache: &SessionCache, ended: &SessionsEnded) {
    for s in &ended.sessions {
        cache.forget(*s);
    }
    hub.end_auth_sessions(ended.user_id, &ended.sessions);
}

/// In-process bus: delivery is a direct call.
pub struct LocalBus {
    hub: Arc<Hub>,
    sessions: Arc<SessionCache>,
}

impl LocalBus {
    pub fn new(hub: Arc<Hub>, sessions: Arc<SessionCache>) -> Self {
        Self { hub, sessions }
    }
}

impl EventBus for LocalBus {
    fn publish(&self, target: Target, dispatch: Arc<Dispatch>) {
        self.hub.deliver(&target, &dispatch);
    }

    fn sessions_ended(&self, ended: SessionsEnded) {
        apply_sessions_ended(&self.hub, &self.sessions, &ended);
    }
}

/// Who may see each channel, cached until permissions change anywhere (`invalidate`): role,
/// overwrite and membership changes are rare next to messages. A failed lookup falls back to
/// "nobody" rather than leaking.
/// The members who may view a channel, or None for "the whole server".
type Viewers = Option<Arc<Vec<confab_chat::Snowflake>>>;

#[derive(Default)]
pub struct ViewerCache {
    epoch: std::sync::atomic::AtomicU64,
    entries: dashmap::DashMap<confab_chat::Snowflake, (u64, Viewers)>,
}

impl ViewerCache {
    pub fn invalidate(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.entries.clear();
    }

    pub async fn get(
        &self,
        chat: &confab_chat::Chat,
        channel_id: confab_chat::Snowflake,
    ) -> Option<Arc<Vec<confab_chat::Snowflake>>> {
        let epoch = self.epoch.load(std::sync::atomic::Ordering::SeqCst);
        if let Some(e) = self.entries.get(&channel_id) {
            if e.0 == epoch {
                return e.1.clone();
            }
        }
        let value = match chat.channel_viewers(channel_id).await {
            Ok(v) => v.map(Arc::new),
            Err(e) => {
                tracing::error!(error = %e, "computing channel viewers");
                return Some(Arc::new(Vec::new()));
            }
        };
        if self.epoch.load(std::sync::atomic::Ordering::SeqCst) == epoch {
            self.entries.insert(channel_id, (epoch, value.clone()));
        }
        value
    }
}
