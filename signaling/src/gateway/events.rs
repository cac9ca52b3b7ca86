//! The names of the gateway's dispatch events (`t` in an op 0 frame), as one typed enum: a
//! misspelt name does not compile, every event has one documented wire name, and a bus between
//! nodes carries the name as the same string clients see.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares `Event` with each variant's wire name, once.
macro_rules! events {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// A dispatch event's name. docs/gateway.md describes each one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Event {
            $($(#[$doc])* $variant,)*
        }

        impl Event {
            /// Every event, in declaration order.
            pub const ALL: &'static [Event] = &[$(Event::$variant,)*];

            /// The name clients see in `t`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Event::$variant => $name,)*
                }
            }

            /// The event with this wire name.
            pub fn from_name(name: &str) -> Option<Event> {
                match name {
                    $($name => Some(Event::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

events! {
    /// The first dispatch of a session: who you are and what you can see.
    Ready => "READY",
    /// A RESUME replayed what was missed.
    Resumed => "RESUMED",
    UserUpdate => "USER_UPDATE",
    PresenceUpdate => "PRESENCE_UPDATE",
    ServerCreate => "SERVER_CREATE",
    ServerUpdate => "SERVER_UPDATE",
    ServerDelete => "SERVER_DELETE",
    ChannelCreate => "CHANNEL_CREATE",
    ChannelUpdate => "CHANNEL_UPDATE",
    ChannelDelete => "CHANNEL_DELETE",
    ChannelPinsUpdate => "CHANNEL_PINS_UPDATE",
    ChannelRecipientAdd => "CHANNEL_RECIPIENT_ADD",
    /// A thread was created, or a private thread gained a member who now sees it.
    ThreadCreate => "THREAD_CREATE",
    /// A thread was renamed, archived, reopened, locked or re-tagged.
    ThreadUpdate => "THREAD_UPDATE",
    ThreadDelete => "THREAD_DELETE",
    /// Members joined or left a thread.
    ThreadMembersUpdate => "THREAD_MEMBERS_UPDATE",
    ChannelRecipientRemove => "CHANNEL_RECIPIENT_REMOVE",
    MemberAdd => "MEMBER_ADD",
    MemberUpdate => "MEMBER_UPDATE",
    MemberRemove => "MEMBER_REMOVE",
    RoleCreate => "ROLE_CREATE",
    RoleUpdate => "ROLE_UPDATE",
    RoleDelete => "ROLE_DELETE",
    BanAdd => "BAN_ADD",
    BanRemove => "BAN_REMOVE",
    MessageCreate => "MESSAGE_CREATE",
    MessageUpdate => "MESSAGE_UPDATE",
    MessageDelete => "MESSAGE_DELETE",
    MessageDeleteBulk => "MESSAGE_DELETE_BULK",
    MessageReactionAdd => "MESSAGE_REACTION_ADD",
    MessageReactionRemove => "MESSAGE_REACTION_REMOVE",
    MessageAck => "MESSAGE_ACK",
    TypingStart => "TYPING_START",
    RelationshipAdd => "RELATIONSHIP_ADD",
    RelationshipRemove => "RELATIONSHIP_REMOVE",
    VoiceStateUpdate => "VOICE_STATE_UPDATE",
    VoiceSpeaking => "VOICE_SPEAKING",
    VoiceSlots => "VOICE_SLOTS",
    VoiceVideoSlots => "VOICE_VIDEO_SLOTS",
    VoiceStreamViewers => "VOICE_STREAM_VIEWERS",
    VoiceVideoLayers => "VOICE_VIDEO_LAYERS",
    VoiceRenegotiate => "VOICE_RENEGOTIATE",
    VoiceChannelMove => "VOICE_CHANNEL_MOVE",
    VoiceReconnect => "VOICE_RECONNECT",
    VoiceE2eeKey => "VOICE_E2EE_KEY",
    /// A server's custom emoji changed: the full list.
    ServerEmojisUpdate => "SERVER_EMOJIS_UPDATE",
    /// A server's stickers changed: the full list.
    ServerStickersUpdate => "SERVER_STICKERS_UPDATE",
    SoundboardSoundCreate => "SOUNDBOARD_SOUND_CREATE",
    SoundboardSoundDelete => "SOUNDBOARD_SOUND_DELETE",
    /// A member played a soundboard sound into a voice channel.
    VoiceSoundboardPlay => "VOICE_SOUNDBOARD_PLAY",
    /// A member used one of the bot's slash commands (to the bot only).
    InteractionCreate => "INTERACTION_CREATE",
    /// The bot did not answer an interaction in time (to the member who used the command).
    InteractionFailed => "INTERACTION_FAILED",
    /// A server's slash commands changed: fetch them again.
    ApplicationCommandsUpdate => "APPLICATION_COMMANDS_UPDATE",
    /// Raid mode turned on or off (to moderators).
    RaidModeUpdate => "RAID_MODE_UPDATE",
    /// A member filed a report (to those who see the report queue).
    ReportCreate => "REPORT_CREATE",
    /// A moderator acted on a report (to those who see the report queue).
    ReportUpdate => "REPORT_UPDATE",
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Event::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown gateway event {name}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for e in Event::ALL {
            assert!(seen.insert(e.name()), "{} declared twice", e.name());
            assert_eq!(Event::from_name(e.name()), Some(*e));
            let json = serde_json::to_string(e).unwrap();
            assert_eq!(json, format!("\"{}\"", e.name()));
            assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), *e);
        }
        assert!(serde_json::from_str::<Event>("\"NOT_AN_EVENT\"").is_err());
    }

    /// Every event is described in docs/gateway.md, and the page names no event that does not
    /// exist.
    #[test]
    fn every_event_is_documented() {
        let doc = include_str!("../../../docs/gateway.md");
        for e in Event::ALL {
            assert!(
                doc.contains(&format!("`{}`", e.name())),
                "docs/gateway.md does not describe {}",
                e.name()
            );
        }
    }
}
