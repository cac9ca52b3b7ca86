//! Typed ids: one newtype per kind of thing a snowflake names, so a user id cannot be passed
//! where a server id is expected. Each is a [`Snowflake`] underneath and looks exactly like one
//! on the wire (a decimal string; a string or a number is accepted), in PostgreSQL (BIGINT) and
//! in the OpenAPI document (the `Snowflake` schema).
//!
//! Turning one kind into another takes a named function (e.g. [`RoleId::everyone`]) or an
//! explicit trip through [`Snowflake`]; there is no `From` between kinds.

use crate::Snowflake;
use std::fmt;
use std::str::FromStr;

macro_rules! typed_id {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        #[repr(transparent)]
        pub struct $name(Snowflake);

        impl $name {
            pub const fn new(id: Snowflake) -> Self {
                Self(id)
            }

            /// The raw snowflake, for code that handles ids of any kind.
            pub const fn snowflake(self) -> Snowflake {
                self.0
            }

            pub const fn get(self) -> i64 {
                self.0 .0
            }
        }

        impl From<Snowflake> for $name {
            fn from(id: Snowflake) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Snowflake {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = <Snowflake as FromStr>::Err;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                <Snowflake as utoipa::PartialSchema>::schema()
            }
        }

        /// Documented as the one `Snowflake` schema: the OpenAPI document is the same for
        /// every kind of id.
        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                <Snowflake as utoipa::ToSchema>::name()
            }
        }
    )*};
}

typed_id! {
    /// A user account.
    UserId;
    /// A server (guild).
    ServerId;
    /// A channel: a server's text, voice, stage or category channel, or a DM or group DM.
    ChannelId;
    /// A message, in any channel. Ids order messages by creation time.
    MessageId;
    /// A role in a server.
    RoleId;
    /// A login session (one device's refresh-token family).
    SessionId;
    /// A file attached to a message.
    AttachmentId;
}

impl RoleId {
    /// The @everyone role of a server. Its id is the server's id (as on Discord): every member
    /// has it without a `member_roles` row, and channel overwrites for it use that id.
    pub const fn everyone(server_id: ServerId) -> Self {
        Self(server_id.0)
    }

    /// Whether this is the @everyone role of `server_id`.
    pub fn is_everyone(self, server_id: ServerId) -> bool {
        self.0 == server_id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_ids_look_like_snowflakes_on_the_wire() {
        let id = UserId::new(Snowflake(1234567890123456789));
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"1234567890123456789\""
        );
        let a: ServerId = serde_json::from_str("\"42\"").unwrap();
        let b: ServerId = serde_json::from_str("42").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.get(), 42);
        assert!(serde_json::from_str::<ChannelId>("\"-1\"").is_err());
        assert!(serde_json::from_str::<MessageId>("\"abc\"").is_err());
        assert_eq!("7".parse::<RoleId>().unwrap(), RoleId::new(Snowflake(7)));
        assert_eq!(RoleId::new(Snowflake(7)).to_string(), "7");
    }

    #[test]
    fn typed_ids_document_as_the_snowflake_schema() {
        use utoipa::{PartialSchema, ToSchema};
        mod raw {
            #[derive(utoipa::ToSchema)]
            #[allow(dead_code)]
            pub struct Thing {
                pub a: crate::Snowflake,
                pub b: Option<crate::Snowflake>,
                pub c: Vec<crate::Snowflake>,
            }
        }
        mod typed {
            #[derive(utoipa::ToSchema)]
            #[allow(dead_code)]
            pub struct Thing {
                pub a: crate::UserId,
                pub b: Option<crate::ServerId>,
                pub c: Vec<crate::RoleId>,
            }
        }
        let json = |s| serde_json::to_value(s).unwrap();
        assert_eq!(json(raw::Thing::schema()), json(typed::Thing::schema()));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        raw::Thing::schemas(&mut a);
        typed::Thing::schemas(&mut b);
        let names =
            |v: Vec<(String, _)>| v.into_iter().map(|(n, s)| (n, json(s))).collect::<Vec<_>>();
        assert_eq!(names(a), names(b));
    }

    #[test]
    fn the_everyone_role_shares_the_server_id() {
        let server = ServerId::new(Snowflake(99));
        assert_eq!(RoleId::everyone(server).get(), 99);
        assert!(RoleId::everyone(server).is_everyone(server));
        assert!(!RoleId::new(Snowflake(98)).is_everyone(server));
    }
}
