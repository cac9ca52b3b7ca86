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
//! Where things are (room → participant → track → down-track, as LiveKit):
//! - `core/`: the sans-IO core. `mod.rs` holds [`SfuCore`] and its read
//!   accessors; `peer.rs` a room and a participant, split by role (`Link`:
//!   the str0m `Rtc` and its addresses and timers; `AudioPublish`;
//!   `Listening`: its audio slots; `VideoPublish`; `VideoWatching`: its
//!   video slots; the fast path's `FastPeer`); `session.rs` the signaling
//!   commands (join, renegotiate, leave, flags); `ingress.rs` datagrams and
//!   the str0m events they produce; `drive.rs` timers, draining each `Rtc`
//!   (and why one drain after several writes is safe) and the fast path's
//!   lanes; `forwarding.rs` the audio fan-out and the loudest-speaker slots;
//!   `video_routing.rs` video forwarding, layer choice and keyframes;
//!   `relay.rs` what is relayed to other media nodes and the remote
//!   publishers relayed from them.
//! - `downtrack.rs`: one forwarded stream to one subscriber slot: rewriting
//!   and its write path (fast path or str0m), sender-report counts.
//! - `fastpath/`: a leaf: SRTP (`srtp.rs`), RTCP (`rtcp.rs`, `feedback.rs`),
//!   keys from DTLS (`keys.rs`), send lanes (`lanes.rs`); it sees the streams
//!   it owns through its `FastTrack` trait only.
//! - `relay.rs`: a leaf: the relay datagram format between media nodes, its
//!   AES-GCM sealing and the reusable outbox.
//! - `selection.rs` (loudest speakers), `speaking.rs`, `video.rs` (tracks,
//!   layers, VP8 rewriting), `sdp.rs` (offer checks, answer tuning),
//!   `demux.rs` (STUN/DTLS/RTP/RTCP by first byte, ufrag), `metrics.rs`.
//! - `runtime.rs` (the UDP loop around the core) and `send_workers.rs` (send
//!   lanes on other cores).
//! - `ids.rs`: [`RoomId`], [`ParticipantId`] and [`UserTag`], one type each
//!   over a `u64`, so that one cannot be passed for another.
//!
//! Flow for the signalling layer:
//! 1. `Sfu::start(config)` once; keep the event receiver.
//! 2. Client offers → `sfu.join(JoinRequest { room, participant, user_id, offer_sdp })`
//!    → answer SDP to the client. The ids are the signaling layer's numbers
//!    wrapped in the SFU's types ([`RoomId::new`], [`ParticipantId::new`],
//!    [`UserTag::new`]; `get` gives the number back): Confab passes the voice
//!    channel, the voice session and the user.
//! 3. Relay events: `Connected`, `Slots` (which user on which `mid`),
//!    `Speaking`, `Disconnected`; on `RenegotiationNeeded { audio_slots }` ask
//!    the client to offer again with at least that many recvonly transceivers
//!    and pass it to `sfu.renegotiate(participant, offer)`.
//! 4. `leave` on explicit leave / gateway end; `set_server_mute`, `set_deaf`,
//!    `set_self_mute`, `set_self_video` on voice state updates (a self-muted
//!    participant's audio and a switched-off camera or screen are dropped on
//!    arrival, like a server mute). A rejoin is just `join` with the same
//!    participant id.
//!
//! Cascade (a voice channel on several media nodes; `docs/relay.md`):
//! with `SfuConfig::relay_bind` set, the media loop drives a second UDP
//! socket, the relay socket. Signaling publishes [`Sfu::relay_endpoint`]
//! (address + a random 128-bit key drawn at start) and tells each node the
//! other nodes hosting a room with [`Sfu::set_relay_peers`] (also before the
//! first join). Each node seals every packet of its local speakers once per
//! other node (AES-128-GCM with that node's key), only while the speaker
//! could take a slot (speaking, its hangover included, or a loud level
//! starting speech; never muted or silent publishers). On arrival the
//! speaker is a remote publisher of the local room: a candidate for the
//! loudest-speaker slots like a local one (speaking and priority flags as
//! its own node says), forwarded to local listeners (fast path included),
//! named in `Slots`, without `Speaking` events. Audio only: video is not
//! relayed.
//!
//! Video (camera and screen share, simulcast):
//! - A client that wants video puts **all** its video m-lines in its first
//!   offer: the `Rtc` of a peer whose offer has an `m=video` line is built
//!   with video codecs (VP8, H.264, VP9, AV1, each with RTX; NACK/PLI/FIR and
//!   transport-cc feedback) and the mid, rid, repaired-rid, abs-send-time and
//!   TWCC extensions. Audio-only offers keep the audio-only extension map.
//! - Publishing: sending video m-lines (sendonly; simulcast with up to 3
//!   rids, listed lowest first, or named q/h/f or l/m/h). The first sending
//!   video m-line is the camera, the second the screen share ([`VideoTrackKind`];
//!   an `inactive` m-line holds its place), unless the client declares them
//!   with [`Sfu::set_video_track_kinds`].
//! - Watching: recvonly video m-lines are video slots (up to
//!   `SfuConfig::max_video_slots`, default 9). Signaling passes what the user
//!   shows with [`Sfu::set_video_subscriptions`]; the SFU puts each shown
//!   track on a slot and reports `SfuEvent::VideoSlots`.
//! - Layers: per slot, the smallest simulcast layer at least as large as the
//!   shown size (sizes read from VP8 keyframes, else q/h/f = ¼, ½, 1 of
//!   1280×720), avoiding layers that stopped flowing. Switches happen only on
//!   a keyframe of the new layer; sequence numbers, timestamps and VP8 picture
//!   id / TL0PICIDX stay continuous. Keyframes (PLI) are requested when a
//!   view starts or switches and when a subscriber sends PLI/FIR, at most one
//!   round per track per 500 ms. `SfuEvent::PauseLayers`
//!   tells which encodings anyone needs; an unwatched track is not forwarded.
//!
//! Audio fast path (`SfuConfig::fast_path`, default on; module `fastpath`):
//! once a subscriber's DTLS handshake has produced its SRTP keys (learned
//! through a wrapping str0m crypto provider), audio to it is rewritten and
//! SRTP-protected by the SFU itself into one reusable buffer and sent without
//! str0m; the SFU then owns those SSRCs (str0m forgets them, the fast path
//! sends their sender reports and reads the subscriber's receiver reports
//! and NACKs about them: RTT, loss and jitter feed the same metrics as
//! str0m's egress stats). Video, audio with RTX, and peers whose keys are
//! unknown use str0m's send path.
//!
//! All cores (`SfuConfig::send_workers`, default one per core): receiving,
//! str0m and every decision stay on the media loop's thread; the fast path's
//! per-listener work (copy, SRTP, `sendmmsg`) is spread over send lanes, one
//! thread each, lane 0 being the loop itself (see `send_workers.rs`).
//!
//! str0m 0.25 notes (verified by the tests in `src/tests/`):
//! - Send streams for the client's recvonly m-lines are declared by str0m
//!   itself when it accepts the offer (one SSRC per sending mid, announced in
//!   the answer); the SFU looks them up with `stream_tx_by_mid` and writes with
//!   `write_rtp` (it falls back to `declare_stream_tx` only if one is missing).
//! - A subscriber's `Rtc` takes all the packets of a batch of datagrams before
//!   one drain, against str0m's "drain after each mutation" rule: why that is
//!   safe with 0.25's `write_rtp` is written at `SfuCore::flush` and pinned
//!   by `tests/drain_tests.rs`.
//! - str0m sends sender reports (with zero counts) for a declared send stream
//!   it never wrote, and uses the first send SSRC as sender of its RTCP: the
//!   fast path therefore removes the SSRCs it takes over from str0m, and
//!   re-declares them around each offer so the answer keeps announcing them.
//! - NACKs are answered only over RTX (RFC 4588): str0m resends nothing for a
//!   payload type without an RTX PT. Browsers do not negotiate RTX for audio,
//!   so audio NACK answering works only with clients that offer it and with
//!   `SfuConfig::audio_rtx` (which, in str0m 0.25's public API, excludes RED).
//! - RED (`audio/red`) is folded onto Opus; in RTP mode its payload passes
//!   through untouched. Subscribers that did not negotiate RED get no RED packets.
//! - `RtcConfig`'s extension map is restricted to audio level + mid, so no
//!   TWCC or abs-send-time is negotiated with audio-only peers. Answers to
//!   peers with video leave transport-cc off their audio m-lines and suggest a
//!   start bitrate for their video (`sdp::tune_video_answer`: a camera starts
//!   sharp).
//! - Simulcast: str0m mirrors the offer's `a=simulcast`/`a=rid` and maps
//!   incoming SSRCs by mid+rid; `StreamRx::rid()` names the layer. RTX from
//!   publishers is un-wrapped by str0m in RTP mode too. VP8 descriptor
//!   rewriting uses str0m's `Vp8Descriptor`/`Vp8Patch` (applied while
//!   serializing: the payload is still shared, not copied).
//! - str0m's TWCC bandwidth estimator (`SfuConfig::video_bwe`, off by
//!   default) caps each subscriber's layers to its estimate; a view held below
//!   its layer pads the estimator towards the next one (`tell_bwe`). Its pacer may
//!   ask to be driven again at the same instant, so a peer's timer is never
//!   set to the instant it was driven at (see `drain`).

mod config;
mod core;
mod demux;
mod downtrack;
mod error;
mod event;
mod fastpath;
#[doc(hidden)]
pub mod fuzzing;
mod ids;
mod metrics;
mod relay;
mod runtime;
mod sdp;
mod selection;
mod send_workers;
mod speaking;
mod tcp;
mod video;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

pub use crate::config::{Ipv6Media, SfuConfig};
pub use crate::core::{CoreStats, SfuCore};
pub use crate::error::SfuError;
pub use crate::event::{
    SfuEvent, SlotAssignment, VideoSlotAssignment, VideoSubscription, VideoTrackKind,
};
pub use crate::ids::{ParticipantId, RoomId, UserTag};
pub use crate::relay::RelayEndpoint;
pub use crate::runtime::Sfu;
pub use crate::speaking::{
    ATTACK as SPEAKING_ATTACK, LOUD_LEVEL as SPEAKING_LOUD_LEVEL, RELEASE as SPEAKING_RELEASE,
};
pub use crate::tcp::IceTcpConfig;

/// A participant joining a voice room (voice channel) with its SDP offer.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// The voice channel; the room is created on first join.
    pub room: RoomId,
    /// The voice session; the same id again replaces the old connection (rejoin).
    pub participant: ParticipantId,
    /// The user, reported in `Slots` and `Speaking` events.
    pub user_id: UserTag,
    /// The client's offer (sendonly/sendrecv audio + N recvonly audio, and
    /// optionally its sending video m-lines and recvonly video slots).
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
