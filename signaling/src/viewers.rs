//! Who may see each channel, cached until permissions change anywhere (`invalidate`, run by
//! `bus::apply`): role, overwrite and membership changes are rare next to messages. A failed
//! lookup falls back to "nobody" rather than leaking.

use crate::gateway::hub::Target;
use confab_chat::{ChannelId, Chat, ServerId, UserId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The members who may view a channel, or None for "the whole server".
type Viewers = Option<Arc<Vec<UserId>>>;

#[derive(Default)]
pub struct ViewerCache {
    epoch: AtomicU64,
    entries: dashmap::DashMap<ChannelId, (u64, Viewers)>,
}

impl ViewerCache {
    pub fn invalidate(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.clear();
    }

    pub async fn get(&self, chat: &Chat, channel_id: ChannelId) -> Viewers {
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

    /// The recipients of a channel's events: the whole server, or only the members who may
    /// view it (overwrites or roles restrict it), optionally without one user.
    /// A DM's events go to its recipients (`server_id` None).
    pub async fn target(
        &self,
        chat: &Chat,
        server_id: Option<ServerId>,
        channel_id: ChannelId,
        except: Option<UserId>,
    ) -> Target {
        match (self.get(chat, channel_id).await, server_id) {
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
