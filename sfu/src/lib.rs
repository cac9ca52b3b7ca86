//! Confab media plane: a selective forwarding unit for voice channels.
//!
//! - One UDP socket shared by every participant (ICE-lite, host candidate =
//!   the configured public IP). Datagrams are demultiplexed by source address,
//!   and for a new address by the ICE ufrag of a STUN binding request — hash
//!   lookups, never a scan over peers.
//! - One str0m [`Rtc`](str0m::Rtc) per participant in RTP mode; the SFU never
//!   decodes or mixes, it rewrites SSRC / sequence number / timestamp per
//!   subscriber slot and forwards the payload bytes untouched.
//! - Signalling contract: one RTCPeerConnection per client, BUNDLE, the client
//!   always offers: its send audio transceiver plus N recvonly audio
//!   transceivers (listening slots). See [`SfuEvent`] for what the signalling
//!   layer must relay.
//!
//! The logic lives in the sans-IO [`SfuCore`]; [`Sfu`] runs it on a
//! dedicated thread around the UDP socket.
//!
//! Flow for the signalling layer:
//! 1. `Sfu::start(config)` once; keep the event receiver.
//! 2. Client offers → `sfu.join(JoinRequest { room, participant, user_id, offer_sdp })`
//!    → answer SDP to the client.
//! 3. Relay events: `Connected`, `Slots` (which user on which `mid`),
//!    `Speaking`, `Disconnected`; on `RenegotiationNeeded { audio_slots }` ask
//!    the client to offer again with at least that many recvonly transceivers
//!    and pass it to `sfu.renegotiate(participant, offer)`.
//! 4. `leave` on explicit leave / gateway end; `set_server_mute`, `set_deaf`,
//!    `set_self_mute` on voice state updates. A rejoin is just `join` with the
//!    same participant id.
//!
//! str0m 0.25 notes (verified by the tests in `src/tests/`):
//! - Send streams for the client's recvonly m-lines are declared by str0m
//!   itself when it accepts the offer (one SSRC per sending mid, announced in
//!   the answer); the SFU looks them up with `stream_tx_by_mid` and writes with
//!   `write_rtp` (it falls back to `declare_stream_tx` only if one is missing).
//! - NACKs are answered only over RTX (RFC 4588): str0m resends nothing for a
//!   payload type without an RTX PT. Browsers do not negotiate RTX for audio,
//!   so audio NACK answering works only with clients that offer it and with
//!   `SfuConfig::audio_rtx` (which, in str0m 0.25's public API, excludes RED).
//! - RED (`audio/red`) is folded onto Opus; in RTP mode its payload passes
//!   through untouched. Subscribers that did not negotiate RED get no RED packets.
//! - `RtcConfig`'s extension map is restricted to audio level + mid, so no
//!   TWCC or abs-send-time is negotiated with audio-only peers.

mod config;
mod core;
mod demux;
mod downtrack;
mod error;
mod event;
mod metrics;
mod runtime;
mod sdp;
mod speaking;
mod video;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

pub use crate::config::SfuConfig;
pub use crate::core::{CoreStats, SfuCore};
pub use crate::error::SfuError;
pub use crate::event::{
    SfuEvent, SlotAssignment, VideoSlotAssignment, VideoSubscription, VideoTrackKind,
};
pub use crate::runtime::Sfu;
pub use crate::speaking::{
    ATTACK as SPEAKING_ATTACK, LOUD_LEVEL as SPEAKING_LOUD_LEVEL, RELEASE as SPEAKING_RELEASE,
};

/// A participant joining a voice room (voice channel) with its SDP offer.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Voice channel id; the room is created on first join.
    pub room: u64,
    /// Voice session id; the same id again replaces the old connection (rejoin).
    pub participant: u64,
    /// The user, reported in `Slots` and `Speaking` events.
    pub user_id: u64,
    /// The client's offer (sendonly/sendrecv audio + N recvonly audio).
    pub offer_sdp: String,
}

#[cfg(test)]
mod static_checks {
    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
    #[test]
    fn sfu_is_send_sync_clone() {
        assert_send_sync_clone::<crate::Sfu>();
    }
}
