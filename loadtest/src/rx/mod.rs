//! The receive fast path of a simulated peer: SRTP audio decrypted in place
//! in the datagram buffer it arrived in, instead of going through str0m's
//! `Rtc` (which copies each packet into fresh buffers, runs its receive
//! registers and NACK bookkeeping, and emits an event per packet).
//!
//! What stays with str0m: ICE, DTLS, SDP, the RTCP the SFU sends (every
//! RTCP datagram is still handed to str0m) and everything the peer sends.
//! What the fast path adds so the SFU sees sane feedback: RFC 3550 receiver
//! reports for the streams it receives (str0m no longer sees their packets),
//! with the LSR/DLSR of the SFU's sender reports, which it reads from a
//! decrypted copy of each SRTCP sender report.
//!
//! Life of a peer's fast path: its `Rtc` is built through [`keys::build`];
//! once DTLS produced keys with an AEAD profile, [`FastRx::active`] turns
//! true before the first SRTP packet can arrive, and every RTP datagram goes
//! to [`FastRx::open`] from then on. With `--audio-rtx` the peers stay on
//! str0m (it NACKs gaps and unwraps RTX, which the fast path does not do),
//! and so does a peer whose keys use AES-CM.

pub mod keys;
pub mod report;
pub mod rtp;
pub mod srtp;

use std::sync::Arc;
use std::time::{Duration, Instant};

use keys::{KeySlot, Taken};
use report::Reception;
use rtp::{Header, SeqExtender};
use srtp::{SrtpRx, SRTCP_TRAILER};

/// Receive streams kept per peer; packets that authenticate on further SSRCs
/// are still decrypted and measured, only not reported on in RTCP.
const MAX_STREAMS: usize = 64;
/// How often receiver reports go out (str0m's own interval for audio).
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// First SRTCP index of our reports: str0m numbers its SRTCP from 0 under
/// the same key. The reports' own SSRC already keeps the AES-GCM nonces
/// apart; starting far above str0m's range makes it hold whatever SSRC str0m
/// picks.
const SRTCP_INDEX_START: u32 = 1 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Active,
    Off,
}

struct Stream {
    ssrc: u32,
    seq: SeqExtender,
    reception: Reception,
}

/// One authenticated, decrypted RTP packet.
#[derive(Debug)]
pub struct Packet<'a> {
    pub ssrc: u32,
    /// Extended sequence number.
    pub seq: u64,
    pub timestamp: u32,
    pub payload: &'a [u8],
}

/// Fast-path state of one peer connection.
pub struct FastRx {
    state: State,
    slot: Option<Arc<KeySlot>>,
    srtp: Option<SrtpRx>,
    streams: Vec<Stream>,
    /// Index of the stream the last packet was on (most packets follow one
    /// of the same stream in a batch).
    last: usize,
    rr_ssrc: u32,
    cname: Vec<u8>,
    srtcp_index: u32,
    next_report: Option<Instant>,
    /// Reused buffers: the outgoing report, an RTCP copy to decrypt, blocks.
    out: Vec<u8>,
    scratch: Vec<u8>,
    blocks: Vec<[u8; 24]>,
    /// RTP datagrams that did not authenticate (dropped, as str0m would).
    pub auth_failures: u64,
}

impl FastRx {
    /// `slot` from [`keys::build`]; `enabled` false keeps str0m's path.
    pub fn new(slot: Option<Arc<KeySlot>>, enabled: bool) -> Self {
        let rr_ssrc = rand::random::<u32>() | 1;
        FastRx {
            state: if enabled && slot.is_some() {
                State::Waiting
            } else {
                State::Off
            },
            slot,
            srtp: None,
            streams: Vec::new(),
            last: 0,
            rr_ssrc,
            cname: format!("confab-loadtest-{rr_ssrc:08x}").into_bytes(),
            srtcp_index: SRTCP_INDEX_START,
            next_report: None,
            out: Vec::with_capacity(256),
            scratch: Vec::with_capacity(256),
            blocks: Vec::new(),
            auth_failures: 0,
        }
    }

    /// With keys already known (tests and the bench).
    pub fn with_keys(srtp: SrtpRx) -> Self {
        let mut f = FastRx::new(None, false);
        f.srtp = Some(srtp);
        f.state = State::Active;
        f
    }

    /// Whether received RTP goes this way. While waiting for the handshake
    /// it costs a lock-free check of an `Option` and a mutex taken only when
    /// str0m has handed keys over.
    #[inline]
    pub fn active(&mut self) -> bool {
        match self.state {
            State::Active => true,
            State::Off => false,
            State::Waiting => self.take_keys(),
        }
    }

    #[cold]
    fn take_keys(&mut self) -> bool {
        let Some(slot) = &self.slot else {
            self.state = State::Off;
            return false;
        };
        match slot.take() {
            Taken::NotYet => false,
            Taken::Unsupported => {
                self.state = State::Off;
                false
            }
            Taken::Ready(rx) => {
                self.srtp = Some(rx);
                self.state = State::Active;
                true
            }
        }
    }

    fn find(&mut self, ssrc: u32) -> Option<usize> {
        if self.streams.get(self.last).is_some_and(|s| s.ssrc == ssrc) {
            return Some(self.last);
        }
        let i = self.streams.iter().position(|s| s.ssrc == ssrc)?;
        self.last = i;
        Some(i)
    }

    /// Authenticates and decrypts the SRTP datagram `d` in place.
    /// `arrival` is its arrival time in RTP clock units (for the reports'
    /// jitter). `None` for anything that is not SRTP under our keys: a
    /// malformed header, a failed tag (counted), bad padding.
    #[inline]
    pub fn open<'a>(&mut self, d: &'a mut [u8], arrival: u64) -> Option<Packet<'a>> {
        let h = Header::parse(d)?;
        let idx = self.find(h.ssrc);
        let ext = match idx {
            Some(i) => self.streams[i].seq.guess(h.seq),
            None => SeqExtender::default().guess(h.seq),
        };
        let opened = self.srtp.as_ref()?.open_rtp(d, h.len, (ext >> 16) as u32);
        let Some(n) = opened else {
            self.auth_failures += 1;
            return None;
        };
        let i = match idx {
            Some(i) => i,
            None if self.streams.len() < MAX_STREAMS => {
                self.streams.push(Stream {
                    ssrc: h.ssrc,
                    seq: SeqExtender::default(),
                    reception: Reception::default(),
                });
                self.streams.len() - 1
            }
            None => usize::MAX,
        };
        if let Some(st) = self.streams.get_mut(i) {
            st.seq.accept(ext);
            st.reception.on_packet(ext, arrival, h.timestamp);
            self.last = i;
        }
        let mut end = h.len + n;
        if h.padding {
            // RFC 3550 §5.1: the last byte counts the padding, itself included.
            let pad = *d.get(end.checked_sub(1)?)? as usize;
            if pad == 0 || pad > n {
                return None;
            }
            end -= pad;
        }
        Some(Packet {
            ssrc: h.ssrc,
            seq: ext,
            timestamp: h.timestamp,
            payload: &d[h.len..end],
        })
    }

    /// Reads the sender reports in an SRTCP datagram from the SFU (a copy is
    /// decrypted; the datagram itself still goes to str0m).
    pub fn on_rtcp(&mut self, d: &[u8], now: Instant) {
        if self.state != State::Active || d.get(1) != Some(&200) {
            return;
        }
        let Some(srtp) = &self.srtp else { return };
        self.scratch.clear();
        self.scratch.extend_from_slice(d);
        let Some((_, len)) = srtp.open_rtcp(&mut self.scratch) else {
            return;
        };
        let streams = &mut self.streams;
        report::sender_reports(&self.scratch[..len], |ssrc, mid| {
            if let Some(s) = streams.iter_mut().find(|s| s.ssrc == ssrc) {
                s.reception.on_sender_report(mid, now);
            }
        });
    }

    /// The SRTCP receiver report to send now, if one is due (every
    /// [`REPORT_EVERY`] while streams are received).
    pub fn poll_report(&mut self, now: Instant) -> Option<&[u8]> {
        if self.state != State::Active || self.streams.is_empty() {
            return None;
        }
        let due = *self.next_report.get_or_insert(now + REPORT_EVERY);
        if now < due {
            return None;
        }
        self.next_report = Some(now + REPORT_EVERY);
        let srtp = self.srtp.as_ref()?;
        self.blocks.clear();
        for s in &mut self.streams {
            if let Some(b) = s.reception.block(s.ssrc, now) {
                self.blocks.push(b);
            }
        }
        self.out.clear();
        report::write_compound(&mut self.out, self.rr_ssrc, &self.blocks, &self.cname);
        let len = self.out.len();
        self.out.resize(len + SRTCP_TRAILER, 0);
        let index = self.srtcp_index;
        self.srtcp_index = (self.srtcp_index + 1) & 0x7fff_ffff;
        let n = srtp.seal_rtcp(&mut self.out, len, index);
        Some(&self.out[..n])
    }
}

#[cfg(test)]
mod tests;
