//! Who may see each channel, cached until permissions change anywhere (`invalidate`, run by
//! `bus::apply`): role, overwrite and membership changes are rare next to messages. A failed
//! lookup falls back to "nobody" rather than leaking.

use confab_chat::{Chat, Snowflake};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The members who may view a channel, or None for "the whole server".
type Viewers = Option<Arc<Vec<Snowflake>>>;

#[derive(Default)]
pub struct ViewerCache {
    epoch: AtomicU64,
    entries: dashmap::DashMap<Snowflake, (u64, Viewers)>,
}

impl ViewerCache {
    pub fn invalidate(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.clear();
    }

    pub async fn get(&self, chat: &Chat, channel_id: Snowflake) -> Viewers {
        let epoch = self.epoch.load(Ordering::SeqCst);
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
        // A change during the lookup invalidated what was read: answer it, but keep nothing.
        if self.epoch.load(Ordering::SeqCst) == epoch {
            self.entries.insert(channel_id, (epoch, value.clone()));
        }
        value
    }
}
