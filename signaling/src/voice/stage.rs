//! Stage channels: everyone joins as audience (`suppress: true`) and only speakers send audio
//! and video, which the SFU enforces. The audience raises a hand (`request_to_speak_timestamp`);
//! a moderator (MUTE_MEMBERS in the channel) invites members to speak or moves speakers back to
//! the audience; anyone may step down, and a moderator may also step up.

use super::VoiceService;
use confab_chat::model::ChannelKind;
use confab_chat::permissions::{self, MUTE_MEMBERS};
use confab_chat::{ChannelId, ChatError, ChatResult, ServerId, UserId};

/// One stage change: `suppress` (false = speaker) and, for oneself, a raised or lowered hand.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct StageChange {
    pub channel_id: ChannelId,
    pub suppress: Option<bool>,
    pub request_to_speak: Option<bool>,
}

impl VoiceService {
    /// Checks a stage change by `actor` to its own state (`target` None) or a member's: the
    /// member is in the stage channel (on any node) and `actor` may make the change. The caller
    /// then publishes `BusEvent::VoiceStage`; the node serving the member applies it
    /// (`apply_stage`). Returns the member.
    pub async fn check_stage(
        &self,
        server_id: ServerId,
        actor: UserId,
        target: Option<UserId>,
        change: StageChange,
    ) -> ChatResult<UserId> {
        let user = target.unwrap_or(actor);
        let myself = user == actor;
        if !myself && change.request_to_speak.is_some() {
            return Err(ChatError::field(
                "request_to_speak",
                "only members raise or lower their own hand",
            ));
        }
        if !myself && change.suppress.is_none() {
            return Err(ChatError::field("suppress", "is required"));
        }
        // Strangers and members who cannot see the channel learn nothing about it.
        let (channel, perms) = self.chat.channel_access(change.channel_id, actor).await?;
        let present = self
            .state_of(user)
            .is_some_and(|s| s.server_id == server_id && s.channel_id == Some(change.channel_id));
        if !present {
            return Err(ChatError::field(
                "channel_id",
                "the member is not connected to this channel",
            ));
        }
        if channel.kind != ChannelKind::Stage {
            return Err(ChatError::field("channel_id", "is not a stage channel"));
        }
        // Stepping down and raising or lowering one's hand need no permission; everything
        // else is a moderator's.
        let own_small_change = myself && change.suppress != Some(false);
        if !own_small_change && !permissions::has(perms, MUTE_MEMBERS) {
            return Err(ChatError::Forbidden(
                "you need MUTE_MEMBERS in this channel to manage its speakers",
            ));
        }
        Ok(user)
    }

    /// Applies a checked stage change if the member's voice session is on this node.
    pub fn apply_stage(&self, server_id: ServerId, user: UserId, change: StageChange) {
        let updated = {
            let mut reg = self.registry.lock();
            let Some(p) = reg.by_user_mut(user).filter(|p| {
                p.server_id == server_id && p.channel_id == change.channel_id && p.stage
            }) else {
                return;
            };
            let before = p.state();
            if let Some(suppress) = change.suppress {
                p.on_stage = !suppress;
                // Answered (invited, stepped up or sent back): the hand goes down.
                p.request_to_speak = None;
            }
            match change.request_to_speak {
                Some(true) if !p.on_stage => {
                    p.request_to_speak.get_or_insert_with(chrono::Utc::now);
                }
                Some(_) => p.request_to_speak = None,
                None => {}
            }
            (p.state() != before).then(|| p.clone())
        };
        if let Some(p) = updated {
            self.apply_flags(&p);
            self.tell_state(&p);
        }
    }
}
