//! Permissions: a 64-bit field with Discord's bit positions (docs/permissions.md), and the one
//! function that computes what a member may do in a server or a channel.
//!
//! Order (as Discord): base = @everyone | every role of the member; ADMINISTRATOR or ownership
//! means everything. In a channel: @everyone's overwrite (deny, then allow), then the member's
//! roles' overwrites combined (deny, then allow), then the member's own overwrite (deny, then
//! allow). A timed-out member keeps reading but loses sending, reacting, speaking and joining.

use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A set of permission bits. Stored as `BIGINT` (the newtype is transparent to sqlx) and sent
/// as a decimal string, since 64 bits do not fit a JavaScript number. Bits this version does
/// not name are kept as they are, never dropped: combine with `|`, `&`, `difference` and
/// `remove` (the `!` operator would truncate to the named bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, sqlx::Type)]
#[sqlx(transparent)]
pub struct Permissions(i64);

bitflags::bitflags! {
    impl Permissions: i64 {
        const CREATE_INVITE = 1 << 0;
        const KICK_MEMBERS = 1 << 1;
        const BAN_MEMBERS = 1 << 2;
        const ADMINISTRATOR = 1 << 3;
        const MANAGE_CHANNELS = 1 << 4;
        const MANAGE_SERVER = 1 << 5;
        const ADD_REACTIONS = 1 << 6;
        const VIEW_AUDIT_LOG = 1 << 7;
        const PRIORITY_SPEAKER = 1 << 8;
        const VIDEO = 1 << 9;
        const VIEW_CHANNEL = 1 << 10;
        const SEND_MESSAGES = 1 << 11;
        const MANAGE_MESSAGES = 1 << 13;
        const EMBED_LINKS = 1 << 14;
        const ATTACH_FILES = 1 << 15;
        const READ_MESSAGE_HISTORY = 1 << 16;
        const MENTION_EVERYONE = 1 << 17;
        const CONNECT = 1 << 20;
        const SPEAK = 1 << 21;
        const MUTE_MEMBERS = 1 << 22;
        const DEAFEN_MEMBERS = 1 << 23;
        const MOVE_MEMBERS = 1 << 24;
        const CHANGE_NICKNAME = 1 << 26;
        const MANAGE_NICKNAMES = 1 << 27;
        const MANAGE_ROLES = 1 << 28;
        /// Create, list and delete a channel's incoming webhooks.
        const MANAGE_WEBHOOKS = 1 << 29;
        /// Upload, rename, restrict and delete the server's custom emoji and stickers.
        const MANAGE_EXPRESSIONS = 1 << 30;
        /// Rename, archive, lock and delete threads; see private threads; remove members.
        const MANAGE_THREADS = 1 << 34;
        const CREATE_PUBLIC_THREADS = 1 << 35;
        const CREATE_PRIVATE_THREADS = 1 << 36;
        /// Post in threads (SEND_MESSAGES governs only the parent channel itself).
        const SEND_MESSAGES_IN_THREADS = 1 << 38;
        const MODERATE_MEMBERS = 1 << 40;
        /// Play the server's soundboard sounds into a voice channel (SPEAK is needed too).
        const USE_SOUNDBOARD = 1 << 42;
    }
}

/// The decimal wire form (`"1024"`), as `Display` and `Serialize`; `FromStr` reads it back.
impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.bits(), f)
    }
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Permissions({})", self.bits())
    }
}

impl FromStr for Permissions {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self::from_bits_retain)
    }
}

impl Serialize for Permissions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.bits())
    }
}

// The flags under their familiar names, so call sites read `permissions::VIEW_CHANNEL`.
pub const CREATE_INVITE: Permissions = Permissions::CREATE_INVITE;
pub const KICK_MEMBERS: Permissions = Permissions::KICK_MEMBERS;
pub const BAN_MEMBERS: Permissions = Permissions::BAN_MEMBERS;
pub const ADMINISTRATOR: Permissions = Permissions::ADMINISTRATOR;
pub const MANAGE_CHANNELS: Permissions = Permissions::MANAGE_CHANNELS;
pub const MANAGE_SERVER: Permissions = Permissions::MANAGE_SERVER;
pub const ADD_REACTIONS: Permissions = Permissions::ADD_REACTIONS;
pub const VIEW_AUDIT_LOG: Permissions = Permissions::VIEW_AUDIT_LOG;
pub const PRIORITY_SPEAKER: Permissions = Permissions::PRIORITY_SPEAKER;
pub const VIDEO: Permissions = Permissions::VIDEO;
pub const VIEW_CHANNEL: Permissions = Permissions::VIEW_CHANNEL;
pub const SEND_MESSAGES: Permissions = Permissions::SEND_MESSAGES;
pub const MANAGE_MESSAGES: Permissions = Permissions::MANAGE_MESSAGES;
pub const EMBED_LINKS: Permissions = Permissions::EMBED_LINKS;
pub const ATTACH_FILES: Permissions = Permissions::ATTACH_FILES;
pub const READ_MESSAGE_HISTORY: Permissions = Permissions::READ_MESSAGE_HISTORY;
pub const MENTION_EVERYONE: Permissions = Permissions::MENTION_EVERYONE;
pub const CONNECT: Permissions = Permissions::CONNECT;
pub const SPEAK: Permissions = Permissions::SPEAK;
pub const MUTE_MEMBERS: Permissions = Permissions::MUTE_MEMBERS;
pub const DEAFEN_MEMBERS: Permissions = Permissions::DEAFEN_MEMBERS;
pub const MOVE_MEMBERS: Permissions = Permissions::MOVE_MEMBERS;
pub const CHANGE_NICKNAME: Permissions = Permissions::CHANGE_NICKNAME;
pub const MANAGE_NICKNAMES: Permissions = Permissions::MANAGE_NICKNAMES;
pub const MANAGE_ROLES: Permissions = Permissions::MANAGE_ROLES;
pub const MANAGE_WEBHOOKS: Permissions = Permissions::MANAGE_WEBHOOKS;
pub const MANAGE_EXPRESSIONS: Permissions = Permissions::MANAGE_EXPRESSIONS;
pub const MANAGE_THREADS: Permissions = Permissions::MANAGE_THREADS;
pub const CREATE_PUBLIC_THREADS: Permissions = Permissions::CREATE_PUBLIC_THREADS;
pub const CREATE_PRIVATE_THREADS: Permissions = Permissions::CREATE_PRIVATE_THREADS;
pub const SEND_MESSAGES_IN_THREADS: Permissions = Permissions::SEND_MESSAGES_IN_THREADS;
pub const MODERATE_MEMBERS: Permissions = Permissions::MODERATE_MEMBERS;
pub const USE_SOUNDBOARD: Permissions = Permissions::USE_SOUNDBOARD;

/// `|` for constants (operators are not `const`).
const fn union(all: &[Permissions]) -> Permissions {
    let mut bits = 0;
    let mut i = 0;
    while i < all.len() {
        bits |= all[i].bits();
        i += 1;
    }
    Permissions::from_bits_retain(bits)
}

/// Every defined permission.
pub const ALL: Permissions = Permissions::all();

/// What @everyone may do in a new server.
pub const EVERYONE_DEFAULT: Permissions = union(&[
    CREATE_INVITE,
    ADD_REACTIONS,
    VIEW_CHANNEL,
    SEND_MESSAGES,
    EMBED_LINKS,
    ATTACH_FILES,
    READ_MESSAGE_HISTORY,
    CONNECT,
    SPEAK,
    VIDEO,
    CHANGE_NICKNAME,
    USE_SOUNDBOARD,
    CREATE_PUBLIC_THREADS,
    CREATE_PRIVATE_THREADS,
    SEND_MESSAGES_IN_THREADS,
]);

/// What every recipient may do in a DM or group DM: read, write, react; never moderate
/// (each deletes only their own messages).
pub const DM: Permissions = union(&[
    VIEW_CHANNEL,
    SEND_MESSAGES,
    READ_MESSAGE_HISTORY,
    ADD_REACTIONS,
    EMBED_LINKS,
    ATTACH_FILES,
]);

/// Lost while timed out.
pub const TIMEOUT_REVOKES: Permissions = union(&[
    SEND_MESSAGES,
    ADD_REACTIONS,
    SPEAK,
    USE_SOUNDBOARD,
    CONNECT,
    VIDEO,
    CREATE_INVITE,
    CREATE_PUBLIC_THREADS,
    CREATE_PRIVATE_THREADS,
    SEND_MESSAGES_IN_THREADS,
]);

pub fn has(perms: Permissions, wanted: Permissions) -> bool {
    perms.contains(ADMINISTRATOR) || perms.contains(wanted)
}

/// An allow/deny pair of a channel overwrite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overwrite {
    pub allow: Permissions,
    pub deny: Permissions,
}

impl Overwrite {
    fn apply(self, perms: Permissions) -> Permissions {
        perms.difference(self.deny) | self.allow
    }
}

/// Everything that decides a member's permissions.
#[derive(Debug, Clone, Default)]
pub struct MemberContext {
    pub is_owner: bool,
    /// @everyone's permissions.
    pub everyone: Permissions,
    /// Permissions of each other role the member holds.
    pub roles: Vec<Permissions>,
    pub timed_out: bool,
}

/// The channel overwrites that concern one member.
#[derive(Debug, Clone, Default)]
pub struct ChannelOverwrites {
    pub everyone: Option<Overwrite>,
    /// The overwrites of the member's roles.
    pub roles: Vec<Overwrite>,
    pub member: Option<Overwrite>,
}

/// Server-wide permissions.
pub fn base(m: &MemberContext) -> Permissions {
    if m.is_owner {
        return ALL;
    }
    let perms = m.roles.iter().fold(m.everyone, |acc, r| acc | *r);
    if perms.contains(ADMINISTRATOR) {
        return ALL;
    }
    if m.timed_out {
        perms.difference(TIMEOUT_REVOKES)
    } else {
        perms
    }
}

/// Permissions in a channel.
pub fn in_channel(m: &MemberContext, o: &ChannelOverwrites) -> Permissions {
    let b = base(m);
    if b.contains(ADMINISTRATOR) {
        return ALL;
    }
    let mut perms = b;
    if let Some(e) = o.everyone {
        perms = e.apply(perms);
    }
    let combined = o
        .roles
        .iter()
        .fold(Overwrite::default(), |acc, r| Overwrite {
            allow: acc.allow | r.allow,
            deny: acc.deny | r.deny,
        });
    perms = combined.apply(perms);
    if let Some(mo) = o.member {
        perms = mo.apply(perms);
    }
    if m.timed_out {
        perms.remove(TIMEOUT_REVOKES);
    }
    perms
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NONE: Permissions = Permissions::empty();

    fn perms() -> impl Strategy<Value = Permissions> {
        any::<i64>().prop_map(|p| Permissions::from_bits_retain(p) & ALL)
    }

    fn overwrite() -> impl Strategy<Value = Overwrite> {
        (perms(), perms()).prop_map(|(a, d)| Overwrite {
            allow: a.difference(d),
            deny: d,
        })
    }

    fn context() -> impl Strategy<Value = (MemberContext, ChannelOverwrites)> {
        (
            any::<bool>(),
            perms(),
            prop::collection::vec(perms(), 0..4),
            any::<bool>(),
            prop::option::of(overwrite()),
            prop::collection::vec(overwrite(), 0..4),
            prop::option::of(overwrite()),
        )
            .prop_map(|(is_owner, everyone, roles, timed_out, e, r, m)| {
                (
                    MemberContext {
                        is_owner,
                        everyone,
                        roles,
                        timed_out,
                    },
                    ChannelOverwrites {
                        everyone: e,
                        roles: r,
                        member: m,
                    },
                )
            })
    }

    proptest! {
        #[test]
        fn owner_and_administrator_hold_everything((mut m, o) in context()) {
            m.is_owner = true;
            prop_assert_eq!(in_channel(&m, &o), ALL);
            m.is_owner = false;
            m.roles.push(ADMINISTRATOR);
            prop_assert_eq!(in_channel(&m, &o), ALL);
        }

        #[test]
        fn member_overwrite_beats_roles((mut m, mut o) in context(), bit in 0u32..43) {
            let p = Permissions::from_bits_retain(1i64 << bit);
            prop_assume!(p.intersects(ALL) && p != ADMINISTRATOR);
            m.is_owner = false;
            m.roles.retain(|r| !r.contains(ADMINISTRATOR));
            m.everyone.remove(ADMINISTRATOR);
            m.timed_out = false;
            // A role allows it, the member's overwrite denies it: denied.
            o.roles.push(Overwrite { allow: p, deny: NONE });
            o.member = Some(Overwrite { allow: NONE, deny: p });
            prop_assert_eq!(in_channel(&m, &o) & p, NONE);
            // And the other way round: allowed.
            o.roles.push(Overwrite { allow: NONE, deny: p });
            o.member = Some(Overwrite { allow: p, deny: NONE });
            prop_assert_eq!(in_channel(&m, &o) & p, p);
        }

        #[test]
        fn role_allow_beats_everyone_deny((mut m, mut o) in context(), bit in 0u32..43) {
            let p = Permissions::from_bits_retain(1i64 << bit);
            prop_assume!(p.intersects(ALL) && p != ADMINISTRATOR && !p.intersects(TIMEOUT_REVOKES));
            m.is_owner = false;
            m.roles.retain(|r| !r.contains(ADMINISTRATOR));
            m.everyone.remove(ADMINISTRATOR);
            o.everyone = Some(Overwrite { allow: NONE, deny: p });
            o.roles = vec![Overwrite { allow: p, deny: NONE }];
            o.member = None;
            prop_assert_eq!(in_channel(&m, &o) & p, p);
        }

        #[test]
        fn timeout_never_grants_sending((mut m, o) in context()) {
            m.is_owner = false;
            m.roles.retain(|r| !r.contains(ADMINISTRATOR));
            m.everyone.remove(ADMINISTRATOR);
            m.timed_out = true;
            prop_assert_eq!(in_channel(&m, &o) & TIMEOUT_REVOKES, NONE);
        }

        #[test]
        fn results_stay_within_defined_bits((m, o) in context()) {
            prop_assert_eq!(in_channel(&m, &o).difference(ALL), NONE);
        }

        #[test]
        fn wire_form_keeps_every_bit(bits in any::<i64>()) {
            let p = Permissions::from_bits_retain(bits);
            prop_assert_eq!(serde_json::to_value(p).unwrap(), serde_json::json!(bits.to_string()));
            prop_assert_eq!(p.to_string().parse::<Permissions>().unwrap(), p);
        }
    }

    #[test]
    fn plain_member_gets_everyone_minus_channel_deny() {
        let m = MemberContext {
            everyone: EVERYONE_DEFAULT,
            ..Default::default()
        };
        let o = ChannelOverwrites {
            everyone: Some(Overwrite {
                allow: NONE,
                deny: SEND_MESSAGES,
            }),
            ..Default::default()
        };
        let p = in_channel(&m, &o);
        assert!(has(p, VIEW_CHANNEL));
        assert!(!has(p, SEND_MESSAGES));
    }

    #[test]
    fn bit_values_match_the_documented_ones() {
        assert_eq!(ALL.bits(), 0x55C_7DF3_EFFF);
        assert_eq!(MANAGE_EXPRESSIONS.bits(), 1_073_741_824);
        assert_eq!(MODERATE_MEMBERS.bits(), 1_099_511_627_776);
        assert_eq!(EVERYONE_DEFAULT.bits(), 0x458_0431_CE41);
    }
}
