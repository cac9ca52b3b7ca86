//! Permission bits, Discord-compatible positions. Until roles and overwrites land, the owner has
//! every permission and members have @everyone's defaults.

pub type Permissions = i64;

pub const CREATE_INVITE: Permissions = 1 << 0;
pub const KICK_MEMBERS: Permissions = 1 << 1;
pub const BAN_MEMBERS: Permissions = 1 << 2;
pub const ADMINISTRATOR: Permissions = 1 << 3;
pub const MANAGE_CHANNELS: Permissions = 1 << 4;
pub const MANAGE_SERVER: Permissions = 1 << 5;
pub const VIEW_CHANNEL: Permissions = 1 << 10;
pub const SEND_MESSAGES: Permissions = 1 << 11;
pub const MANAGE_MESSAGES: Permissions = 1 << 13;
pub const READ_MESSAGE_HISTORY: Permissions = 1 << 16;
pub const CONNECT: Permissions = 1 << 20;
pub const SPEAK: Permissions = 1 << 21;
pub const MUTE_MEMBERS: Permissions = 1 << 22;
pub const DEAFEN_MEMBERS: Permissions = 1 << 23;
pub const VIDEO: Permissions = 1 << 9;

/// What @everyone may do in a new server.
pub const EVERYONE_DEFAULT: Permissions =
    CREATE_INVITE | VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY | CONNECT | SPEAK | VIDEO;

pub const ALL: Permissions = i64::MAX;

pub fn has(perms: Permissions, wanted: Permissions) -> bool {
    perms & ADMINISTRATOR != 0 || perms & wanted == wanted
}
