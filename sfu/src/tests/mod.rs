//! Tests of the forwarding core with in-process str0m client peers.

mod bad_input;
mod core_tests;
mod drain_tests;
mod fastpath_tests;
mod slots_tests;
mod udp_loop;
mod video_tests;

use crate::{ParticipantId, RoomId, UserTag};

// Short constructors for the ids the tests write out.

fn room_id(n: u64) -> RoomId {
    RoomId::new(n)
}

fn pid(n: u64) -> ParticipantId {
    ParticipantId::new(n)
}

fn user(n: u64) -> UserTag {
    UserTag::new(n)
}
