//! The audio forwarding fast path: per down-track header rewrite and SRTP
//! protection straight into a reusable send buffer, bypassing str0m's
//! per-packet send machinery (send queue, pacer, a fresh buffer per packet,
//! a full poll of the connection). str0m keeps ICE, DTLS, SDP and receiving
//! RTCP; the fast path owns the SSRCs it sends on and their sender reports,
//! and reads the subscriber's report blocks and NACKs about them
//! ([`feedback`]: str0m, which forgot those SSRCs, would drop them).
//!
//! Life of a subscriber's fast path:
//! - its `Rtc` is built with [`keys::provider`], which hands the DTLS-SRTP
//!   keys to a [`keys::KeySink`];
//! - once the keys are there and str0m has sent something to the peer (so
//!   the selected address is known), [`FastPeer::try_activate`] derives the
//!   session keys and takes over every audio slot: the slot's SSRC is removed
//!   from str0m (so str0m sends no sender reports or RTCP with it), and
//!   [`FastPeer::write_rtp`] writes its packets from then on;
//! - every RTCP datagram from the subscriber that starts with a sender or
//!   receiver report or a NACK is decrypted once more, by the fast path, for
//!   the report blocks about its SSRCs (RTT against the sender reports it
//!   sent, fraction lost, jitter) before str0m handles it;
//! - an SDP renegotiation re-declares those SSRCs to str0m around the offer so
//!   the answer still announces them ([`FastPeer::before_offer`]), then takes
//!   them back ([`FastPeer::reclaim`]);
//! - a peer whose keys never arrive or whose profile is unsupported stays on
//!   the str0m path.
//!
//! A leaf of the crate: the streams it sends on are seen through
//! [`FastTrack`] (the forwarding layer's down-track implements it), and the
//! down-track decides per packet whether it goes this way or through str0m.

pub(crate) mod feedback;
pub(crate) mod keys;
pub(crate) mod lanes;
pub(crate) mod rtcp;
pub(crate) mod srtp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use str0m::media::{Mid, Pt};
use str0m::net::Transmit;
use str0m::rtp::{Extension, Ssrc};
use str0m::Rtc;

use crate::metrics::DropReason;

pub(crate) use lanes::{LaneKey, Lanes, Outbox, Sealer};
pub(crate) use rtcp::{SendStats, SrLog};

use keys::KeySink;
use srtp::SrtpTx;

/// Largest datagram the fast path writes; larger packets go through str0m.
const MAX_DATAGRAM: usize = 1400;

/// The first SRTCP index we use. Before the fast path takes an SSRC over,
/// str0m may have sent SRTCP whose first SSRC is that SSRC, numbered from 0
/// with the same session key; starting far above keeps every (SSRC, index)
/// pair, and so every AES-GCM nonce, unique (str0m would need decades of
/// reports to get here).
const SRTCP_INDEX_START: u32 = 1 << 30;

/// A send stream of a subscriber that the fast path can take over from
/// str0m (implemented by the forwarding layer's down-track, so that this
/// module does not depend on it).
pub(crate) trait FastTrack {
    fn mid(&self) -> Mid;
    fn ssrc(&self) -> Ssrc;
    /// Negotiated with RTX: str0m keeps it (it answers NACKs over RTX).
    fn has_rtx(&self) -> bool;
    /// The fast path sends on it (str0m no longer knows the SSRC).
    fn is_fast(&self) -> bool;
    fn set_fast(&mut self);
    /// Appends the stream's RTCP sender report to `buf`; false (nothing
    /// written) while it has sent nothing.
    fn write_sender_report(&self, buf: &mut Vec<u8>, now: Instant, wall: SystemTime) -> bool;
}

/// One RTP packet to write, already rewritten for its down-track.
pub(crate) struct RtpOut<'a> {
    pub pt: Pt,
    pub marker: bool,
    /// Extended sequence number (its low 16 bits go on the wire; SRTP
    /// derives the rollover counter from the rest).
    pub seq: u64,
    pub timestamp: u32,
    pub ssrc: Ssrc,
    pub mid: &'a str,
    pub audio_level: Option<i8>,
    pub voice_activity: Option<bool>,
    pub payload: &'a [u8],
    /// Identifies the packet among those forwarded: its payload is queued
    /// once per lane, not once per subscriber.
    pub serial: u64,
}

/// Fast-path state of one subscriber.
#[derive(Debug)]
pub(crate) struct FastPeer {
    sink: Arc<KeySink>,
    tx: Option<Arc<SrtpTx>>,
    /// The send lane and key id this peer's datagrams are sealed with
    /// (registered with the first forwarded packet).
    lane: Option<LaneKey>,
    /// Keys unusable (unsupported profile): str0m path for good.
    disabled: bool,
    /// Where str0m sends DTLS and SRTP to (the selected candidate pair).
    dest: Option<SocketAddr>,
    /// Negotiated one-byte extension ids (str0m writes them in id order).
    ext_level: Option<u8>,
    ext_mid: Option<u8>,
    cname: Vec<u8>,
    srtcp_index: u32,
    /// Scratch for building RTCP (kept to avoid allocating per report).
    scratch: Vec<u8>,
    ssrcs: Vec<u32>,
    /// Reading the subscriber's RTCP about our SSRCs (`feedback.rs`).
    rtcp_in: Option<feedback::RtcpIn>,
}

impl FastPeer {
    pub fn new(sink: Arc<KeySink>) -> Self {
        FastPeer {
            sink,
            tx: None,
            lane: None,
            disabled: false,
            dest: None,
            ext_level: None,
            ext_mid: None,
            cname: Vec::new(),
            srtcp_index: SRTCP_INDEX_START,
            scratch: Vec::new(),
            ssrcs: Vec::new(),
            rtcp_in: None,
        }
    }

    /// Forwarding goes through the fast path.
    pub fn is_active(&self) -> bool {
        self.tx.is_some() && self.dest.is_some() && !self.disabled
    }

    /// Worth calling [`Self::try_activate`] (cheap: an atomic load).
    pub fn pending(&self) -> bool {
        !self.disabled && !self.is_active() && (self.tx.is_some() || self.sink.is_ready())
    }

    /// Notes where str0m sends this peer's datagrams (any but STUN, which
    /// also goes to candidate pairs not selected).
    /// `on_main_socket`: whether that datagram goes out on the main UDP socket, the one the
    /// send lanes share.
    pub fn note_transmit(&mut self, t: &Transmit, on_main_socket: bool) {
        if t.contents.first().is_some_and(|b| (20..=191).contains(b)) {
            if !on_main_socket && !self.is_active() {
                // Over ICE-TCP or the other family's socket str0m sends everything itself; the
                // fast path's lanes send on the main UDP socket only. (A peer moving there from
                // the main socket after activation would need str0m to take its SSRCs back; ICE
                // does not do that here.)
                self.disabled = true;
            }
            self.dest = Some(t.destination);
        }
    }

    /// Takes the keys and, when the destination is known too, every slot.
    pub fn try_activate<'a, T: FastTrack + 'a>(
        &mut self,
        rtc: &mut Rtc,
        downs: impl Iterator<Item = &'a mut T>,
    ) -> bool {
        if self.tx.is_none() && !self.disabled {
            if let Some(keys) = self.sink.take() {
                match keys
                    .profile
                    .map(|p| SrtpTx::from_keying_material(p, &keys.material, keys.client))
                {
                    Some(Ok(tx)) => {
                        self.rtcp_in = feedback::SrtcpRx::from_keying_material(
                            tx.profile,
                            &keys.material,
                            keys.client,
                        )
                        .ok()
                        .map(feedback::RtcpIn::new);
                        self.tx = Some(Arc::new(tx));
                    }
                    other => {
                        tracing::debug!(?other, "fast path unavailable for this peer's SRTP");
                        self.disabled = true;
                    }
                }
            }
        }
        if !self.is_active() {
            return false;
        }
        self.reclaim(rtc, downs);
        true
    }

    /// Takes over every slot not yet owned (after activation and after each
    /// SDP negotiation): str0m forgets the SSRC, the fast path sends on it.
    pub fn reclaim<'a, T: FastTrack + 'a>(
        &mut self,
        rtc: &mut Rtc,
        downs: impl Iterator<Item = &'a mut T>,
    ) {
        if !self.is_active() {
            return;
        }
        for down in downs {
            let Some(media) = rtc.media(down.mid()) else {
                continue;
            };
            let map = media.remote_extmap();
            let (level, mid) = (
                map.id_of(Extension::AudioLevel),
                map.id_of(Extension::RtpMid),
            );
            // One-byte header form only (ids 1..=14, values of 1..=16 bytes).
            let one_byte = |id: Option<u8>| id.is_none_or(|i| (1..=14).contains(&i));
            if !one_byte(level) || !one_byte(mid) || down.mid().len() > 16 || down.has_rtx() {
                continue;
            }
            if self.cname.is_empty() {
                self.cname = media.cname().as_bytes().to_vec();
            }
            self.ext_level = level;
            self.ext_mid = mid;
            rtc.direct_api().remove_stream_tx(down.ssrc());
            down.set_fast();
        }
    }

    /// Before str0m answers an offer: re-declare our SSRCs so the answer
    /// announces them (str0m would otherwise pick new ones).
    pub fn before_offer<'a, T: FastTrack + 'a>(
        &self,
        rtc: &mut Rtc,
        downs: impl Iterator<Item = &'a T>,
    ) {
        for down in downs.filter(|d| d.is_fast()) {
            rtc.direct_api()
                .declare_stream_tx(down.ssrc(), None, down.mid(), None);
        }
    }

    /// Sender reports (and CNAMEs) for every owned SSRC that has sent, as one
    /// SRTCP compound packet. Returns the bytes queued.
    pub fn sender_reports<'a, T: FastTrack + 'a>(
        &mut self,
        downs: impl Iterator<Item = &'a T>,
        now: Instant,
        wall: SystemTime,
        lanes: &mut Lanes,
    ) -> usize {
        let (Some(tx), Some(dest)) = (&self.tx, self.dest) else {
            return 0;
        };
        // With the peer's RTP when it has a lane (the usual case: an SSRC that
        // sent has one), so everything to the peer leaves in order.
        let out = lanes.out(self.lane.map_or(0, |l| l.lane));
        self.scratch.clear();
        self.ssrcs.clear();
        for down in downs.filter(|d| d.is_fast()) {
            if self.ssrcs.len() >= 31 {
                break;
            }
            if down.write_sender_report(&mut self.scratch, now, wall) {
                self.ssrcs.push(*down.ssrc());
            }
        }
        if self.ssrcs.is_empty() {
            return 0;
        }
        rtcp::write_sdes(&mut self.scratch, &self.ssrcs, &self.cname);
        let len = self.scratch.len();
        let index = self.srtcp_index;
        self.srtcp_index = self.srtcp_index.wrapping_add(1) & 0x7fff_ffff;
        let scratch = &self.scratch;
        let mut n = 0;
        out.push_ready(dest, len + tx.profile.rtcp_overhead(), |buf| {
            buf[..len].copy_from_slice(scratch);
            n = tx.protect_rtcp(buf, len, index);
            n
        });
        n
    }
}

/// Room for the RTP header the fast path writes (12 bytes, extension block
/// header, audio level, a mid of up to 16 bytes, padding).
const MAX_HEADER: usize = 12 + 4 + 2 + 17 + 3;

impl FastPeer {
    /// Whether a packet with `payload_len` bytes of payload can go this way
    /// (checked before the down-track rewrites anything for it).
    pub fn check(&self, payload_len: usize) -> Result<(), DropReason> {
        let Some(tx) = self.tx.as_ref().filter(|_| self.dest.is_some()) else {
            return Err(DropReason::NoStream);
        };
        if MAX_HEADER + payload_len + tx.profile.rtp_overhead() > MAX_DATAGRAM {
            return Err(DropReason::Oversize);
        }
        Ok(())
    }

    /// Queues `rtp` on the peer's send lane (the lane protects it). Returns
    /// the size the datagram will have. The caller checked the packet with
    /// [`Self::check`] and owns the stream ([`FastTrack::is_fast`]).
    pub fn write_rtp(&mut self, rtp: RtpOut<'_>, lanes: &mut Lanes) -> Result<usize, DropReason> {
        let (Some(tx), Some(dest)) = (&self.tx, self.dest) else {
            return Err(DropReason::NoStream);
        };
        let overhead = tx.profile.rtp_overhead();
        let lk = *self.lane.get_or_insert_with(|| lanes.register(tx.clone()));
        // str0m writes the audio level only with its voice-activity flag.
        let level = match (self.ext_level, rtp.audio_level, rtp.voice_activity) {
            (Some(id), Some(l), Some(v)) => {
                Some((id, if v { 0x80 } else { 0 } | (l.unsigned_abs() & 0x7f)))
            }
            _ => None,
        };
        let mid = self.ext_mid.map(|id| (id, rtp.mid.as_bytes()));
        let mut hlen = 0;
        lanes.out(lk.lane).push_rtp(
            dest,
            lk.key,
            rtp.seq,
            MAX_HEADER,
            |buf| {
                hlen = write_header(
                    buf,
                    rtp.pt,
                    rtp.marker,
                    rtp.seq as u16,
                    rtp.timestamp,
                    *rtp.ssrc,
                    level,
                    mid,
                );
                hlen
            },
            rtp.serial,
            rtp.payload,
        );
        Ok(hlen + rtp.payload.len() + overhead)
    }
}

impl FastPeer {
    /// Gives the peer's lane key back (the peer is going away).
    pub fn release(&mut self, lanes: &mut Lanes) {
        if let Some(lk) = self.lane.take() {
            lanes.release(lk);
        }
    }
}

/// Writes the RTP header with a one-byte extension block (RFC 8285), the
/// extensions in id order and zero padding, as str0m serialises it (str0m
/// always writes the extension block, empty or not). Returns its length.
#[allow(clippy::too_many_arguments)]
fn write_header(
    buf: &mut [u8],
    pt: Pt,
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
    level: Option<(u8, u8)>,
    mid: Option<(u8, &[u8])>,
) -> usize {
    buf[0] = 0x90; // V=2, X=1
    buf[1] = (*pt & 0x7f) | if marker { 0x80 } else { 0 };
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    buf[12] = 0xbe;
    buf[13] = 0xde;
    let mut at = 16;
    let put_level = |buf: &mut [u8], at: &mut usize| {
        if let Some((id, v)) = level {
            buf[*at] = id << 4;
            buf[*at + 1] = v;
            *at += 2;
        }
    };
    let put_mid = |buf: &mut [u8], at: &mut usize| {
        if let Some((id, m)) = mid.filter(|(_, m)| !m.is_empty()) {
            buf[*at] = (id << 4) | (m.len() as u8 - 1);
            buf[*at + 1..*at + 1 + m.len()].copy_from_slice(m);
            *at += 1 + m.len();
        }
    };
    let level_first = match (level, mid) {
        (Some((l, _)), Some((m, _))) => l < m,
        _ => true,
    };
    if level_first {
        put_level(buf, &mut at);
        put_mid(buf, &mut at);
    } else {
        put_mid(buf, &mut at);
        put_level(buf, &mut at);
    }
    while !(at - 16).is_multiple_of(4) {
        buf[at] = 0;
        at += 1;
    }
    let words = ((at - 16) / 4) as u16;
    buf[14..16].copy_from_slice(&words.to_be_bytes());
    at
}
