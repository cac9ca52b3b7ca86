//! The SFU's ids: a room, a participant, and the user behind a participant.
//!
//! All three are numbers chosen by the signaling layer (Confab passes its
//! snowflakes); as bare `u64`s, a room id could be passed where a participant
//! id was meant. Each is a type of its own, so mixing them does not compile.
//!
//! ```
//! use confab_sfu::{ParticipantId, RoomId};
//! fn leave(_participant: ParticipantId) {}
//! leave(ParticipantId::new(1));
//! ```
//!
//! ```compile_fail
//! use confab_sfu::{ParticipantId, RoomId};
//! fn leave(_participant: ParticipantId) {}
//! leave(RoomId::new(1));
//! ```
//!
//! They cost nothing: `#[repr(transparent)]` over a `u64`, `Copy`, hashed and
//! ordered exactly as the `u64` inside (the maps keyed by them hash the same
//! bytes as before). There is no `From<u64>`: an id is made with `new` and
//! read with `get`, so each crossing between the signaling layer's ids and
//! the SFU's is written out.

/// Defines a `Copy` newtype over `u64` with explicit `new`/`get`, compared,
/// hashed and ordered as the number, shown as the number by `Display`.
macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            #[inline]
            pub const fn new(id: u64) -> Self {
                $name(id)
            }

            #[inline]
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&self.0, f)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }
    };
}

id_type! {
    /// A room: one voice channel (Confab passes the channel's id). Created on
    /// the first join with this id, gone when its last participant leaves.
    RoomId
}

id_type! {
    /// A participant: one voice session, i.e. one client connection in one
    /// room (Confab passes the voice session's id). Joining again with the
    /// same id replaces the connection (a rejoin).
    ParticipantId
}

id_type! {
    /// The user behind a participant, as the signaling layer labels it (Confab
    /// passes the chat user's id).
    ///
    /// Named a *tag*, not `UserId`, on purpose: the SFU knows nothing of
    /// accounts, and this is not the chat crate's `UserId`. The SFU never
    /// interprets it; it reports it back (which user is heard on a slot, who
    /// is speaking) and matches video subscriptions against it.
    UserTag
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};

    fn hash_of<T: Hash>(v: T) -> u64 {
        let mut h = DefaultHasher::new();
        v.hash(&mut h);
        h.finish()
    }

    #[test]
    fn ids_are_the_number_inside() {
        assert_eq!(std::mem::size_of::<RoomId>(), 8);
        assert_eq!(std::mem::size_of::<Option<ParticipantId>>(), 16);
        let p = ParticipantId::new(42);
        assert_eq!(p.get(), 42);
        assert_eq!(p.to_string(), "42");
        assert_eq!(format!("{p:?}"), "ParticipantId(42)");
        assert_eq!(format!("{:?}", UserTag::new(7)), "UserTag(7)");
        // Hashed and ordered as the u64: maps and heaps behave as before.
        assert_eq!(hash_of(p), hash_of(42u64));
        assert!(RoomId::new(1) < RoomId::new(2));
    }
}
