//! Permissions: a 64-bit field with Discord's bit positions (docs/permissions.md), and the one
//! function that computes what a member may do in a server or a channel.
//!
//! Order (as Discord): base = @everyone | every role of the member; ADMINISTRATOR or ownership
//! means everything. In a channel: @everyone's overwrite (deny, then allow), then the member's
//! roles' overwrites combined (deny, then allow), then the member's own overwrite (deny, then
//! allow). A timed-out member keeps reading but loses sending, reacting, speaking and joining.

pub type Permissions = i64;

pub const CREATE_INVITE: Permissions = 1 << 0;
pub const KICK_MEMBERS: Permissions = 1 << 1;
pub const BAN_MEMBERS: Permissions = 1 << 2;
pub const ADMINISTRATOR: Permissions = 1 << 3;
pub const MANAGE_CHANNELS: Permissions = 1 << 4;
pub const MANAGE_SERVER: Permissions = 1 << 5;
pub const ADD_REACTIONS: Permissions = 1 << 6;
pub const VIEW_AUDIT_LOG: Permissions = 1 << 7;
pub const PRIORITY_SPEAKER: Permissions = 1 << 8;
pub const VIDEO: Permissions = 1 << 9;
pub const VIEW_CHANNEL: Permissions = 1 << 10;
pub const SEND_MESSAGES: Permissions = 1 << 11;
pub const MANAGE_MESSAGES: Permissions = 1 << 13;
pub const EMBED_LINKS: Permissions = 1 << 14;
pub const ATTACH_FILES: Permissions = 1 << 15;
pub const READ_MESSAGE_HISTORY: Permissions = 1 << 16;
pub const MENTION_EVERYONE: Permissions = 1 << 17;
pub const CONNECT: Permissions = 1 << 20;
pub const SPEAK: Permissions = 1 << 21;
pub const MUTE_MEMBERS: Permissions = 1 << 22;
pub const DEAFEN_MEMBERS: Permissions = 1 << 23;
pub const MOVE_MEMBERS: Permissions = 1 << 24;
pub const CHANGE_NICKNAME: Permissions = 1 << 26;
pub const MANAGE_NICKNAMES: Permissions = 1 << 27;
pub const MANAGE_ROLES: Permissions = 1 << 28;
pub const MODERATE_MEMBERS: Permissions = 1 << 40;

/// Every defined permission.
pub const ALL: Permissions = CREATE_INVITE
    | KICK_MEMBERS
    | BAN_MEMBERS
    | ADMINISTRATOR
    | MANAGE_CHANNELS
    | MANAGE_SERVER
    | ADD_REACTIONS
    | VIEW_AUDIT_LOG
    | PRIORITY_SPEAKER
    | VIDEO
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | MANAGE_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | MENTION_EVERYONE
    | CONNECT
    | SPEAK
    | MUTE_MEMBERS
    | DEAFEN_MEMBERS
    | MOVE_MEMBERS
    | CHANGE_NICKNAME
    | MANAGE_NICKNAMES
    | MANAGE_ROLES
    | MODERATE_MEMBERS;

/// What @everyone may do in a new server.
pub const EVERYONE_DEFAULT: Permissions = CREATE_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | CONNECT
    | SPEAK
    | VIDEO
    | CHANGE_NICKNAME;

/// What every recipient may do in a DM or group DM: read, write, react; never moderate
/// (each deletes only their own messages).
pub const DM: Permissions = VIEW_CHANNEL
    | SEND_MESSAGES
    | READ_MESSAGE_HISTORY
    | ADD_REACTIONS
    | EMBED_LINKS
    | ATTACH_FILES;

/// Lost while timed out.
pub const TIMEOUT_REVOKES: Permissions =
    SEND_MESSAGES | ADD_REACTIONS | SPEAK | CONNECT | VIDEO | CREATE_INVITE;

/// Names and bits, for documentation and validation.
pub const NAMES: &[(&str, Permissions)] = &[
    ("CREATE_INVITE", CREATE_INVITE),
    ("KICK_MEMBERS", KICK_MEMBERS),
    ("BAN_MEMBERS", BAN_MEMBERS),
    ("ADMINISTRATOR", ADMINISTRATOR),
    ("MANAGE_CHANNELS", MANAGE_CHANNELS),
    ("MANAGE_SERVER", MANAGE_SERVER),
    ("ADD_REACTIONS", ADD_REACTIONS),
    ("VIEW_AUDIT_LOG", VIEW_AUDIT_LOG),
    ("PRIORITY_SPEAKER", PRIORITY_SPEAKER),
    ("VIDEO", VIDEO),
    ("VIEW_CHANNEL", VIEW_CHANNEL),
    ("SEND_MESSAGES", SEND_MESSAGES),
    ("MANAGE_MESSAGES", MANAGE_MESSAGES),
    ("EMBED_LINKS", EMBED_LINKS),
    ("ATTACH_FILES", ATTACH_FILES),
    ("READ_MESSAGE_HISTORY", READ_MESSAGE_HISTORY),
    ("MENTION_EVERYONE", MENTION_EVERYONE),
    ("CONNECT", CONNECT),
    ("SPEAK", SPEAK),
    ("MUTE_MEMBERS", MUTE_MEMBERS),
    ("DEAFEN_MEMBERS", DEAFEN_MEMBERS),
    ("MOVE_MEMBERS", MOVE_MEMBERS),
    ("CHANGE_NICKNAME", CHANGE_NICKNAME),
    ("MANAGE_NICKNAMES", MANAGE_NICKNAMES),
    ("MANAGE_ROLES", MANAGE_ROLES),
    ("MODERATE_MEMBERS", MODERATE_MEMBERS),
];

pub fn has(perms: Permissions, wanted: Permissions) -> bool {
    perms & ADMINISTRATOR != 0 || perms & wanted == wanted
}

/// An allow/deny pair of a channel overwrite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overwrite {
    pub allow: Permissions,
    pub deny: Permissions,
}

impl Overwrite {
    fn apply(self, perms: Permissions) -> Permissions {
        (perms & !self.deny) | self.allow
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
    let perms = m.roles.iter().fold(m.everyone, |acc, r| acc | r);
    if perms & ADMINISTRATOR != 0 {
        return ALL;
    }
    if m.timed_out {
        perms & !TIMEOUT_REVOKES
    } else {
        perms
    }
}

/// Permissions in a channel.
pub fn in_channel(m: &MemberContext, o: &ChannelOverwrites) -> Permissions {
    let b = base(m);
    if b & ADMINISTRATOR != 0 {
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
        perms &= !TIMEOUT_REVOKES;
    }
    perms
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn perms() -> impl Strategy<Value = Permissions> {
        any::<i64>().prop_map(|p| p & ALL)
    }

    fn overwrite() -> impl Strategy<Value = Overwrite> {
        (perms(), perms()).prop_map(|(a, d)| Overwrite {
            allow: a & !d,
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
        fn member_overwrite_beats_roles((mut m, mut o) in context(), bit in 0u32..41) {
            let p = 1i64 << bit;
            prop_assume!(p & ALL != 0 && p != ADMINISTRATOR);
            m.is_owner = false;
            m.roles.retain(|r| r & ADMINISTRATOR == 0);
            m.everyone &= !ADMINISTRATOR;
            m.timed_out = false;
            // A role allows it, the member's overwrite denies it: denied.
            o.roles.push(Overwrite { allow: p, deny: 0 });
            o.member = Some(Overwrite { allow: 0, deny: p });
            prop_assert_eq!(in_channel(&m, &o) & p, 0);
            // And the other way round: allowed.
            o.roles.push(Overwrite { allow: 0, deny: p });
            o.member = Some(Overwrite { allow: p, deny: 0 });
            prop_assert_eq!(in_channel(&m, &o) & p, p);
        }

        #[test]
        fn role_allow_beats_everyone_deny((mut m, mut o) in context(), bit in 0u32..41) {
            let p = 1i64 << bit;
            prop_assume!(p & ALL != 0 && p != ADMINISTRATOR && p & TIMEOUT_REVOKES == 0);
            m.is_owner = false;
            m.roles.retain(|r| r & ADMINISTRATOR == 0);
            m.everyone &= !ADMINISTRATOR;
            o.everyone = Some(Overwrite { allow: 0, deny: p });
            o.roles = vec![Overwrite { allow: p, deny: 0 }];
            o.member = None;
            prop_assert_eq!(in_channel(&m, &o) & p, p);
        }

        #[test]
        fn timeout_never_grants_sending((mut m, o) in context()) {
            m.is_owner = false;
            m.roles.retain(|r| r & ADMINISTRATOR == 0);
            m.everyone &= !ADMINISTRATOR;
            m.timed_out = true;
            prop_assert_eq!(in_channel(&m, &o) & TIMEOUT_REVOKES, 0);
        }

        #[test]
        fn results_stay_within_defined_bits((m, o) in context()) {
            prop_assert_eq!(in_channel(&m, &o) & !ALL, 0);
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
                allow: 0,
                deny: SEND_MESSAGES,
            }),
            ..Default::default()
        };
        let p = in_channel(&m, &o);
        assert!(has(p, VIEW_CHANNEL));
        assert!(!has(p, SEND_MESSAGES));
    }
}
