//! The core's side of the relay between media nodes (cascade): which local
//! audio is relayed and to whom, and the remote publishers that relayed
//! audio becomes on arrival. The wire format is `crate::relay`.
//!
//! - **Sending.** A local publisher's packet is relayed once to each other
//!   media node hosting its room ([`SfuCore::set_relay_peers`]), never per
//!   listener: every packet while it is in the room's selection here (the
//!   other nodes' listeners get the same stream as this node's, pauses
//!   included), and otherwise only while it could be chosen for a slot
//!   there: while its speaking detector says it speaks (which includes the
//!   release hangover, [`crate::SPEAKING_RELEASE`]) or its smoothed level is
//!   loud (the attack before speaking starts), plus the packet on which
//!   speaking stops. A silent publisher outside the selection costs no relay
//!   traffic; a packet without an audio level is never relayed. Dropped
//!   audio (server mute, self mute) never gets that far. Video is not
//!   relayed.
//! - **Receiving.** A datagram that authenticates with this node's key, from
//!   a node listed as a peer of its room, makes its publisher a remote
//!   publisher of the local room: a candidate for the loudest-speaker
//!   selection like a local one (speaking and priority as its own node says)
//!   and forwarded to local listeners on their slots. It raises no
//!   `Speaking` event here (its own node reports that). It stops speaking
//!   when its packets stop for [`crate::SPEAKING_RELEASE`] and goes away
//!   after [`REMOTE_TIMEOUT`] without packets, when its node is no longer a
//!   peer of the room, or when the local room empties.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use str0m::rtp::Ssrc;

use crate::downtrack::AudioPacket;
use crate::metrics::{RelayDrop, RelayMetrics};
use crate::relay::{
    self, NonceSeq, OpenError, RelayEndpoint, RelayHeader, RelayKey, RelayOutbox, RtpFields,
    FLAG_PRIORITY, FLAG_RED, FLAG_RESUME, FLAG_SPEAKING, FLAG_VAD, FLAG_VOICE,
};
use crate::selection::Candidate as SpeakerCandidate;
use crate::speaking::RELEASE;
use crate::{ParticipantId, RoomId, UserTag};

use super::peer::AudioSource;
use super::SfuCore;

/// A remote publisher without packets for this long is removed.
pub(crate) const REMOTE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often remote publishers are checked for silence and timeout.
const TICK: Duration = Duration::from_millis(100);
/// Packets of a remote publisher accepted behind its newest one.
const REPLAY_WINDOW: u64 = 64;
/// A jump in a remote publisher's sequence numbers larger than this is a
/// discontinuity, not loss: its listeners' slots are re-anchored (a jump of
/// 2^15 or more on a slot would break the listener's SRTP rollover count).
const MAX_SEQ_GAP: u64 = 1 << 12;
/// The first this many packets relayed after a pause carry [`FLAG_RESUME`]
/// (more than one, in case the first is lost on the way).
const RESUME_PACKETS: u8 = 3;

/// This node's side: its endpoint and the key datagrams to it are sealed with.
struct Local {
    endpoint: RelayEndpoint,
    key: RelayKey,
    id: u64,
}

/// Another media node hosting a room.
struct PeerLink {
    endpoint: RelayEndpoint,
    /// Its key: what is sent to it is sealed with it.
    key: RelayKey,
    /// Its id on the wire (`relay::node_id`).
    id: u64,
}

/// A publisher of another media node, heard here through the relay.
pub(crate) struct RemotePublisher {
    room: RoomId,
    /// The node it is relayed from.
    origin: u64,
    user: UserTag,
    priority: bool,
    speaking: bool,
    /// When it last started or stopped speaking (as seen here).
    active_at: Option<Instant>,
    last_packet: Instant,
    ssrc: u32,
    /// Newest extended sequence number accepted, and which of the
    /// [`REPLAY_WINDOW`] before it were seen (bit i = newest − 1 − i).
    newest: u64,
    seen: u64,
    /// Where its audio goes here: (subscriber, slot index), as a local
    /// publisher's `AudioPublish::fanout`.
    fanout: SmallVec<[(ParticipantId, usize); 8]>,
}

impl RemotePublisher {
    /// Records `seq` as seen; false for a duplicate or one too old.
    fn accept_seq(&mut self, seq: u64) -> bool {
        if seq > self.newest {
            let shift = seq - self.newest;
            self.seen = if shift > REPLAY_WINDOW {
                0
            } else {
                // The previous newest becomes bit shift − 1.
                (self.seen << (shift - 1) << 1) | (1 << (shift - 1))
            };
            self.newest = seq;
            return true;
        }
        let back = self.newest - seq;
        if back == 0 || back > REPLAY_WINDOW {
            return false;
        }
        let bit = 1u64 << (back - 1);
        if self.seen & bit != 0 {
            return false;
        }
        self.seen |= bit;
        true
    }
}

/// The relay state of a core. Relaying is on once [`SfuCore::enable_relay`]
/// has been called (the runtime does when `SfuConfig::relay_bind` is set).
pub(crate) struct Relay {
    local: Option<Local>,
    nonces: NonceSeq,
    /// The other media nodes per room (kept whether or not the room has
    /// local participants yet).
    rooms: HashMap<RoomId, Vec<PeerLink>>,
    remotes: HashMap<ParticipantId, RemotePublisher>,
    outbox: RelayOutbox,
    /// Receive buffer, decrypted in place (reused).
    rx: Vec<u8>,
    tick: Option<Instant>,
    metrics: RelayMetrics,
}

impl Relay {
    pub fn new() -> Self {
        Relay {
            local: None,
            nonces: NonceSeq::random(),
            rooms: HashMap::new(),
            remotes: HashMap::new(),
            outbox: RelayOutbox::default(),
            rx: Vec::with_capacity(relay::MAX_DATAGRAM),
            tick: None,
            metrics: RelayMetrics::new(),
        }
    }

    pub fn remote_fanout(&self, p: ParticipantId) -> Option<&[(ParticipantId, usize)]> {
        self.remotes.get(&p).map(|r| &r.fanout[..])
    }

    pub fn remote_fanout_mut(
        &mut self,
        p: ParticipantId,
    ) -> Option<&mut SmallVec<[(ParticipantId, usize); 8]>> {
        self.remotes.get_mut(&p).map(|r| &mut r.fanout)
    }

    pub fn remote_candidate(&self, p: ParticipantId) -> Option<SpeakerCandidate> {
        self.remotes.get(&p).map(|r| SpeakerCandidate {
            participant: p,
            speaking: r.speaking,
            priority: r.priority,
            active_at: r.active_at,
        })
    }

    pub fn remote_tag(&self, p: ParticipantId) -> Option<UserTag> {
        self.remotes.get(&p).map(|r| r.user)
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.tick
    }

    fn update_gauges(&self) {
        let links: usize = self.rooms.values().map(Vec::len).sum();
        self.metrics.peers.set(links as f64);
        self.metrics
            .remote_publishers
            .set(self.remotes.len() as f64);
    }
}

impl SfuCore {
    /// Turns relaying on: `endpoint` is where this node receives relay
    /// datagrams (the announced address) and the key they are sealed with.
    pub fn enable_relay(&mut self, endpoint: RelayEndpoint) {
        let key = RelayKey::new(&endpoint.key);
        let id = relay::node_id(&endpoint.key);
        self.relay.local = Some(Local { endpoint, key, id });
    }

    /// This node's relay endpoint, if relaying is on.
    pub fn relay_endpoint(&self) -> Option<RelayEndpoint> {
        self.relay.local.as_ref().map(|l| l.endpoint.clone())
    }

    /// The other media nodes hosting `room` (replaces the previous list;
    /// empty: the room lives only here). Remembered for a room without local
    /// participants yet. This node's own endpoint and repeats are ignored.
    /// Remote publishers of nodes no longer listed are removed at once.
    pub fn set_relay_peers(&mut self, room: RoomId, peers: Vec<RelayEndpoint>) {
        let own = self.relay.local.as_ref().map(|l| &l.endpoint);
        let mut links: Vec<PeerLink> = Vec::with_capacity(peers.len());
        for endpoint in peers {
            if Some(&endpoint) == own || links.iter().any(|l| l.endpoint == endpoint) {
                continue;
            }
            links.push(PeerLink {
                key: RelayKey::new(&endpoint.key),
                id: relay::node_id(&endpoint.key),
                endpoint,
            });
        }
        let ids: SmallVec<[u64; 4]> = links.iter().map(|l| l.id).collect();
        if links.is_empty() {
            self.relay.rooms.remove(&room);
        } else {
            self.relay.rooms.insert(room, links);
        }
        let gone: Vec<ParticipantId> = self
            .relay
            .remotes
            .iter()
            .filter(|(_, r)| r.room == room && !ids.contains(&r.origin))
            .map(|(p, _)| *p)
            .collect();
        if !gone.is_empty() {
            for p in gone {
                self.forget_remote(p);
            }
            self.assign_audio_slots(room);
        }
        self.relay.update_gauges();
    }

    /// Relay datagrams waiting: hand each to `send` (false = not sent),
    /// like [`Self::drain_fast`], after every input.
    pub fn drain_relay(&mut self, send: impl FnMut(SocketAddr, &[u8]) -> bool) {
        let (sent, failed) = self.relay.outbox.drain(send);
        self.relay.metrics.sent.increment(sent);
        self.stats.relay_sent += sent;
        for _ in 0..failed {
            self.relay_drop(RelayDrop::SendError);
        }
    }

    /// Whether relay datagrams wait for [`Self::drain_relay`].
    pub fn has_relay_datagrams(&self) -> bool {
        !self.relay.outbox.is_empty()
    }

    fn relay_drop(&mut self, reason: RelayDrop) {
        self.relay.metrics.dropped(reason).increment(1);
        self.stats.relay_dropped += 1;
    }

    /// Relays one packet of a local publisher (its mute and payload type
    /// checked, its speaking state updated) to the other nodes hosting its
    /// room, if it could take a slot there (see the module docs).
    pub(super) fn relay_local_audio(
        &mut self,
        participant: ParticipantId,
        pkt: &AudioPacket<'_>,
        pt: u8,
        is_red: bool,
        speaking_changed: bool,
    ) {
        let Some(src) = self.peers.get_mut(&participant) else {
            return;
        };
        let Relay {
            local,
            nonces,
            rooms,
            outbox,
            ..
        } = &mut self.relay;
        let (Some(local), Some(links)) = (local.as_ref(), rooms.get(&src.room)) else {
            return;
        };
        let detector = &src.audio.speaking;
        // A publisher in the room's selection is heard by this node's
        // listeners packet for packet, pauses included; the other nodes get
        // the same stream. Outside it, only what could win a slot crosses.
        let selected = || {
            self.rooms
                .get(&src.room)
                .is_some_and(|r| r.selected.contains(&participant))
        };
        let Some(level) = pkt.audio_level.filter(|_| {
            detector.is_speaking() || detector.is_loud() || speaking_changed || selected()
        }) else {
            src.audio.relay_run = 0;
            return;
        };
        let mut flags = 0;
        if src.audio.relay_run < RESUME_PACKETS {
            flags |= FLAG_RESUME;
        }
        src.audio.relay_run = src.audio.relay_run.saturating_add(1);
        if src.audio.priority_speaker {
            flags |= FLAG_PRIORITY;
        }
        if detector.is_speaking() {
            flags |= FLAG_SPEAKING;
        }
        if is_red {
            flags |= FLAG_RED;
        }
        if let Some(v) = pkt.voice_activity {
            flags |= FLAG_VAD | if v { FLAG_VOICE } else { 0 };
        }
        let header = RelayHeader {
            origin: local.id,
            room: src.room,
            publisher: participant,
            user: src.user_id,
            flags,
            level: Some(level.unsigned_abs().min(127)),
        };
        let rtp = RtpFields {
            marker: pkt.marker,
            pt,
            seq: pkt.seq,
            timestamp: pkt.rtp_time,
            ssrc: *pkt.ssrc,
        };
        let mut refused = 0;
        for link in links.iter() {
            if !outbox.push(
                link.endpoint.addr,
                &link.key,
                nonces,
                &header,
                &rtp,
                pkt.payload,
            ) {
                refused += 1;
            }
        }
        let reason = if pkt.payload.len() > relay::MAX_PAYLOAD {
            RelayDrop::Oversize
        } else {
            RelayDrop::SendError
        };
        for _ in 0..refused {
            self.relay_drop(reason);
        }
    }

    /// One datagram arrived on the relay socket from `from` (another media
    /// node). Whatever it holds, it is dropped and counted or accepted;
    /// nothing is allocated for it once the buffers have grown.
    pub fn handle_relay_datagram(&mut self, now: Instant, from: SocketAddr, buf: &[u8]) {
        self.advance(now);
        if buf.len() > relay::MAX_DATAGRAM {
            return self.relay_drop(RelayDrop::Oversize);
        }
        let mut rx = std::mem::take(&mut self.relay.rx);
        rx.clear();
        rx.extend_from_slice(buf);
        self.on_relay_datagram(now, from, &mut rx);
        self.relay.rx = rx;
    }

    fn on_relay_datagram(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8]) {
        let Some(local) = &self.relay.local else {
            return self.relay_drop(RelayDrop::Auth);
        };
        let local_id = local.id;
        let opened = match relay::open(buf, &local.key) {
            Ok(o) => o,
            Err(e) => {
                tracing::trace!(%from, error = ?e, "relay datagram refused");
                return self.relay_drop(match e {
                    OpenError::Truncated => RelayDrop::Truncated,
                    OpenError::Oversize => RelayDrop::Oversize,
                    OpenError::BadMagic | OpenError::Malformed => RelayDrop::Malformed,
                    OpenError::Auth => RelayDrop::Auth,
                });
            }
        };
        let h = opened.header;
        let spans = self
            .relay
            .rooms
            .get(&h.room)
            .is_some_and(|links| links.iter().any(|l| l.id == h.origin));
        if !spans || h.origin == local_id {
            return self.relay_drop(RelayDrop::UnknownRoom);
        }
        if !self.rooms.contains_key(&h.room) {
            return self.relay_drop(RelayDrop::NoListeners);
        }
        if self.peers.contains_key(&h.publisher) {
            return self.relay_drop(RelayDrop::Conflict);
        }
        // The same publisher in another room (it moved): start afresh.
        if self
            .relay
            .remotes
            .get(&h.publisher)
            .is_some_and(|r| r.room != h.room)
        {
            let old = self.relay.remotes.get(&h.publisher).map(|r| r.room);
            self.forget_remote(h.publisher);
            if let Some(old) = old {
                self.assign_audio_slots(old);
            }
        }
        let speaking = h.flags & FLAG_SPEAKING != 0;
        let priority = h.flags & FLAG_PRIORITY != 0;
        let mut resume = false;
        let (new, changed) = match self.relay.remotes.get_mut(&h.publisher) {
            Some(r) => {
                // After a pause in the relay (the publisher was silent), the
                // sequence numbers jump by what was not relayed: not loss.
                // Nor is a jump too large to be loss.
                let gap = opened.rtp.seq.saturating_sub(r.newest);
                resume = gap > 1 && (h.flags & FLAG_RESUME != 0 || gap > MAX_SEQ_GAP);
                if r.ssrc != opened.rtp.ssrc {
                    // A new stream (the publisher rejoined): a new sequence space.
                    r.ssrc = opened.rtp.ssrc;
                    r.newest = opened.rtp.seq;
                    r.seen = 0;
                } else if !r.accept_seq(opened.rtp.seq) {
                    return self.relay_drop(RelayDrop::Replay);
                }
                r.origin = h.origin;
                r.user = h.user;
                r.last_packet = now;
                let changed = r.speaking != speaking || r.priority != priority;
                if r.speaking != speaking {
                    r.active_at = Some(now);
                }
                r.speaking = speaking;
                r.priority = priority;
                (false, changed)
            }
            None => {
                self.relay.remotes.insert(
                    h.publisher,
                    RemotePublisher {
                        room: h.room,
                        origin: h.origin,
                        user: h.user,
                        priority,
                        speaking,
                        active_at: speaking.then_some(now),
                        last_packet: now,
                        ssrc: opened.rtp.ssrc,
                        newest: opened.rtp.seq,
                        seen: 0,
                        fanout: SmallVec::new(),
                    },
                );
                if let Some(room) = self.rooms.get_mut(&h.room) {
                    room.remotes.push(h.publisher);
                }
                self.relay.update_gauges();
                (true, false)
            }
        };
        self.relay.metrics.received.increment(1);
        self.stats.relay_received += 1;
        if self.relay.tick.is_none() {
            self.relay.tick = Some(now + TICK);
        }
        if new {
            self.assign_audio_slots(h.room);
        } else if changed {
            self.reselect_speakers(h.room);
        }
        if resume {
            // Its listeners' slots continue their numbering without the gap.
            for k in 0.. {
                let Some((sub, idx)) = self.fanout_entry(AudioSource::Voice(h.publisher), k) else {
                    break;
                };
                if let Some(slot) = self
                    .peers
                    .get_mut(&sub)
                    .and_then(|s| s.listen.slots.get_mut(idx))
                {
                    slot.down.resync();
                }
            }
        }
        let vad = (h.flags & FLAG_VAD != 0).then_some(h.flags & FLAG_VOICE != 0);
        let pkt = AudioPacket::borrowed(
            Ssrc::from(opened.rtp.ssrc),
            opened.rtp.seq,
            opened.rtp.timestamp,
            now,
            opened.rtp.marker,
            h.level.map(|l| -(l as i8)),
            vad,
            opened.payload,
        );
        self.fan_out_audio(
            AudioSource::Voice(h.publisher),
            &pkt,
            h.flags & FLAG_RED != 0,
        );
    }

    /// Remote publishers whose packets stopped: no longer speaking after
    /// the release time, gone after [`REMOTE_TIMEOUT`].
    pub(super) fn relay_timeout(&mut self, now: Instant) {
        if self.relay.tick.is_none_or(|t| t > now) {
            return;
        }
        self.relay.tick = None;
        let mut rooms: SmallVec<[RoomId; 4]> = SmallVec::new();
        let mut gone: SmallVec<[ParticipantId; 4]> = SmallVec::new();
        for (p, r) in self.relay.remotes.iter_mut() {
            let quiet = now.saturating_duration_since(r.last_packet);
            if quiet >= REMOTE_TIMEOUT {
                gone.push(*p);
            } else if r.speaking && quiet >= RELEASE {
                r.speaking = false;
                r.active_at = Some(now);
            } else {
                continue;
            }
            if !rooms.contains(&r.room) {
                rooms.push(r.room);
            }
        }
        for p in gone {
            self.forget_remote(p);
        }
        for room in rooms {
            self.assign_audio_slots(room);
        }
        if !self.relay.remotes.is_empty() {
            self.relay.tick = Some(now + TICK);
        }
    }

    /// Removes a remote publisher from the relay state and its room (the
    /// caller re-assigns the room's slots).
    fn forget_remote(&mut self, p: ParticipantId) {
        if let Some(r) = self.relay.remotes.remove(&p) {
            if let Some(room) = self.rooms.get_mut(&r.room) {
                room.remotes.retain(|x| *x != p);
            }
        }
        self.relay.update_gauges();
    }

    /// A participant of this node with the id of a remote publisher (it
    /// moved here): the remote one goes.
    pub(super) fn forget_remote_publisher(&mut self, p: ParticipantId) {
        if let Some(room) = self.relay.remotes.get(&p).map(|r| r.room) {
            self.forget_remote(p);
            self.assign_audio_slots(room);
        }
    }

    /// The local room `room` is gone: so are its remote publishers.
    pub(super) fn forget_room_remotes(&mut self, room: RoomId) {
        self.relay.remotes.retain(|_, r| r.room != room);
        self.relay.update_gauges();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote() -> RemotePublisher {
        RemotePublisher {
            room: RoomId::new(1),
            origin: 1,
            user: UserTag::new(1),
            priority: false,
            speaking: false,
            active_at: None,
            last_packet: Instant::now(),
            ssrc: 1,
            newest: 100,
            seen: 0,
            fanout: SmallVec::new(),
        }
    }

    #[test]
    fn replay_window() {
        let mut r = remote();
        assert!(!r.accept_seq(100), "the first one again");
        assert!(r.accept_seq(101));
        assert!(r.accept_seq(99), "late but new");
        assert!(!r.accept_seq(99));
        assert!(r.accept_seq(105));
        assert!(r.accept_seq(103));
        assert!(!r.accept_seq(103));
        assert!(!r.accept_seq(101));
        assert!(!r.accept_seq(100));
        assert!(!r.accept_seq(105 - REPLAY_WINDOW - 1), "too old");
        assert!(r.accept_seq(105 - REPLAY_WINDOW));
        assert!(r.accept_seq(10_000), "a jump");
        assert!(!r.accept_seq(105));
        assert!(r.accept_seq(9_999));
    }
}
