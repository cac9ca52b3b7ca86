//! Gateway intents (docs/gateway.md, docs/bots.md): a bot names in IDENTIFY the classes of
//! events it wants, and its session receives only those. People's sessions are not filtered.
//!
//! The filter runs where a dispatch enters a session (`Session::push`), so RESUME replays
//! exactly what was delivered. Message content is the one intent that changes a payload
//! rather than dropping it: without MESSAGE_CONTENT a bot sees that a message was sent but not
//! what it says, unless it is mentioned. That re-serialises the dispatch for each such bot
//! session, which costs only bots that asked for messages without their content.

use super::dispatch::Dispatch;
use super::events::Event;
use confab_chat::UserId;
use std::sync::Arc;

/// Servers, channels and roles: SERVER_* (SERVER_EMOJIS_UPDATE and SERVER_STICKERS_UPDATE
/// too), CHANNEL_*, ROLE_*, CHANNEL_PINS_UPDATE.
pub const SERVERS: u64 = 1 << 0;
/// MEMBER_ADD, MEMBER_UPDATE, MEMBER_REMOVE.
pub const SERVER_MEMBERS: u64 = 1 << 1;
/// BAN_ADD, BAN_REMOVE.
pub const SERVER_MODERATION: u64 = 1 << 2;
/// VOICE_STATE_UPDATE, VOICE_SPEAKING, VOICE_STREAM_VIEWERS, VOICE_SOUNDBOARD_PLAY.
pub const VOICE_STATES: u64 = 1 << 7;
/// PRESENCE_UPDATE.
pub const PRESENCES: u64 = 1 << 8;
/// MESSAGE_CREATE, MESSAGE_UPDATE, MESSAGE_DELETE, MESSAGE_DELETE_BULK.
pub const MESSAGES: u64 = 1 << 9;
/// MESSAGE_REACTION_ADD, MESSAGE_REACTION_REMOVE.
pub const MESSAGE_REACTIONS: u64 = 1 << 10;
/// TYPING_START.
pub const TYPING: u64 = 1 << 11;
/// `content`, `attachments` and `embeds` of the messages MESSAGES delivers.
pub const MESSAGE_CONTENT: u64 = 1 << 15;

/// Every intent this server knows; an IDENTIFY naming other bits is closed with 4013.
pub const ALL: u64 = SERVERS
    | SERVER_MEMBERS
    | SERVER_MODERATION
    | VOICE_STATES
    | PRESENCES
    | MESSAGES
    | MESSAGE_REACTIONS
    | TYPING
    | MESSAGE_CONTENT;

/// What a bot gets when its IDENTIFY names no intents: everything but message content.
pub const DEFAULT: u64 = ALL & !MESSAGE_CONTENT;

/// The intent that gates an event, or None for events every session gets (READY, RESUMED,
/// INTERACTION_CREATE, USER_UPDATE, the voice session's own signalling, …).
pub fn intent_of(event: Event) -> Option<u64> {
    use Event::*;
    Some(match event {
        ServerCreate
        | ServerUpdate
        | ServerDelete
        | ServerEmojisUpdate
        | ServerStickersUpdate
        | ChannelCreate
        | ChannelUpdate
        | ChannelDelete
        | ChannelPinsUpdate
        | ThreadCreate
        | ThreadUpdate
        | ThreadDelete
        | ThreadMembersUpdate
        | RoleCreate
        | RoleUpdate
        | RoleDelete
        | ApplicationCommandsUpdate => SERVERS,
        MemberAdd | MemberUpdate | MemberRemove => SERVER_MEMBERS,
        BanAdd | BanRemove => SERVER_MODERATION,
        VoiceStateUpdate | VoiceSpeaking | VoiceStreamViewers | VoiceSoundboardPlay => VOICE_STATES,
        PresenceUpdate => PRESENCES,
        MessageCreate | MessageUpdate | MessageDelete | MessageDeleteBulk => MESSAGES,
        MessageReactionAdd | MessageReactionRemove => MESSAGE_REACTIONS,
        TypingStart => TYPING,
        _ => return None,
    })
}

/// A bot session's filter.
#[derive(Debug, Clone, Copy)]
pub struct Intents {
    bits: u64,
    /// The bot: a message that mentions it keeps its content.
    user_id: UserId,
}

impl Intents {
    pub fn new(bits: u64, user_id: UserId) -> Self {
        Self {
            bits: bits & ALL,
            user_id,
        }
    }

    /// What the session receives of `d`: it unchanged, a copy without message content, or
    /// nothing.
    pub fn apply(&self, d: &Arc<Dispatch>) -> Option<Arc<Dispatch>> {
        let Some(needed) = intent_of(d.t) else {
            return Some(d.clone());
        };
        if self.bits & needed == 0 {
            return None;
        }
        let carries_content = matches!(d.t, Event::MessageCreate | Event::MessageUpdate);
        if !carries_content || self.bits & MESSAGE_CONTENT != 0 {
            return Some(d.clone());
        }
        let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&d.d) else {
            return Some(d.clone());
        };
        let me = self.user_id.to_string();
        let mentioned = v["mentions"]
            .as_array()
            .is_some_and(|m| m.iter().any(|u| u.as_str() == Some(me.as_str())));
        let own = v["author"]["id"].as_str() == Some(me.as_str());
        if mentioned || own {
            return Some(d.clone());
        }
        if let Some(o) = v.as_object_mut() {
            for (key, empty) in [
                ("content", serde_json::json!("")),
                ("attachments", serde_json::json!([])),
                ("embeds", serde_json::json!([])),
            ] {
                if o.contains_key(key) {
                    o.insert(key.into(), empty);
                }
            }
        }
        Some(Dispatch::new(d.t, &v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_chat::Snowflake;
    use serde_json::json;

    fn bot() -> UserId {
        UserId::new(Snowflake(7))
    }

    #[test]
    fn events_outside_the_intents_are_dropped_and_ungated_ones_pass() {
        let i = Intents::new(SERVERS, bot());
        let msg = Dispatch::new(Event::MessageCreate, &json!({"content": "hi"}));
        assert!(i.apply(&msg).is_none());
        let ready = Dispatch::new(Event::Ready, &json!({}));
        assert!(i.apply(&ready).is_some());
        let interaction = Dispatch::new(Event::InteractionCreate, &json!({}));
        assert!(i.apply(&interaction).is_some());
        let role = Dispatch::new(Event::RoleCreate, &json!({}));
        assert!(i.apply(&role).is_some());
    }

    #[test]
    fn content_is_removed_unless_asked_for_or_mentioned() {
        let msg = |mentions: serde_json::Value| {
            Dispatch::new(
                Event::MessageCreate,
                &json!({"content": "secret", "author": {"id": "1"}, "mentions": mentions,
                        "attachments": [{"id": "3"}], "embeds": []}),
            )
        };
        let without = Intents::new(MESSAGES, bot());
        let got = without.apply(&msg(json!([]))).unwrap();
        let v: serde_json::Value = serde_json::from_str(&got.d).unwrap();
        assert_eq!(v["content"], "");
        assert_eq!(v["attachments"], json!([]));
        let got = without.apply(&msg(json!(["7"]))).unwrap();
        assert!(got.d.contains("secret"), "a mention keeps the content");
        let with = Intents::new(MESSAGES | MESSAGE_CONTENT, bot());
        assert!(with.apply(&msg(json!([]))).unwrap().d.contains("secret"));
    }
}
