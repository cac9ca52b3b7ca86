//! Send lanes: where the fast path's datagrams wait between the media loop,
//! which decides what goes to whom, and whoever protects and sends them — the
//! loop itself, or one send worker per lane (`runtime`'s worker threads).
//!
//! The loop writes each forwarded packet as a per-subscriber RTP header plus
//! a reference to the publisher's payload, copied into the lane **once per
//! packet**, not once per subscriber; the lane's sealer copies header and
//! payload into its own arena, SRTP-protects them there and hands the results
//! to the socket. A subscriber stays on one lane for life, so its datagrams
//! keep their order; its SRTP context reaches the lane's sealer in-band (a key
//! entry queued before its first packet and a removal after its last), so no
//! state is shared between threads and no lock is taken per packet.

use std::net::SocketAddr;
use std::sync::Arc;

use super::srtp::SrtpTx;

/// One queued item of a lane.
#[derive(Debug)]
enum Entry {
    /// A finished datagram (already protected), `buf[at..at + len]`.
    Ready { dest: SocketAddr, at: u32, len: u32 },
    /// An RTP packet to protect with key `key`: header `buf[head..head + hlen]`,
    /// payload `buf[payload..payload + plen]` (shared by every subscriber of
    /// the packet on this lane), SRTP packet index `index`.
    Rtp {
        dest: SocketAddr,
        key: u32,
        head: u32,
        hlen: u16,
        plen: u16,
        payload: u32,
        index: u64,
    },
    /// Installs (Some) or forgets (None) the SRTP context of key `key`.
    Key { key: u32, tx: Option<Arc<SrtpTx>> },
}

/// What the loop queued for one lane since it was last sealed. Both vectors
/// are reused: steady-state forwarding allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    buf: Vec<u8>,
    entries: Vec<Entry>,
    /// Datagrams among the entries.
    datagrams: usize,
    /// (packet serial, offset, length) of the payload copied in last.
    last_payload: Option<(u64, u32, u32)>,
}

impl Outbox {
    /// Whether nothing at all is queued (datagrams or key changes).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Datagrams queued.
    pub fn datagrams(&self) -> usize {
        self.datagrams
    }

    /// Queues a finished datagram: reserves `max` bytes, lets `write` fill
    /// them and return the length used.
    pub fn push_ready(
        &mut self,
        dest: SocketAddr,
        max: usize,
        write: impl FnOnce(&mut [u8]) -> usize,
    ) {
        let at = self.buf.len();
        self.buf.resize(at + max, 0);
        let n = write(&mut self.buf[at..]);
        self.buf.truncate(at + n);
        self.entries.push(Entry::Ready {
            dest,
            at: at as u32,
            len: n as u32,
        });
        self.datagrams += 1;
    }

    /// Queues an RTP packet for key `key`: `write_header` writes the header
    /// into at most `max_header` bytes and returns its length; the payload of
    /// packet `serial` is copied only if it is not the one copied last.
    #[allow(clippy::too_many_arguments)]
    pub fn push_rtp(
        &mut self,
        dest: SocketAddr,
        key: u32,
        index: u64,
        max_header: usize,
        write_header: impl FnOnce(&mut [u8]) -> usize,
        serial: u64,
        payload: &[u8],
    ) {
        let head = self.buf.len();
        self.buf.resize(head + max_header, 0);
        let hlen = write_header(&mut self.buf[head..]);
        self.buf.truncate(head + hlen);
        let at = match self.last_payload {
            Some((s, at, len)) if s == serial && len as usize == payload.len() => at,
            _ => {
                let at = self.buf.len() as u32;
                self.buf.extend_from_slice(payload);
                self.last_payload = Some((serial, at, payload.len() as u32));
                at
            }
        };
        self.entries.push(Entry::Rtp {
            dest,
            key,
            head: head as u32,
            hlen: hlen as u16,
            plen: payload.len() as u16,
            payload: at,
            index,
        });
        self.datagrams += 1;
    }

    /// Queues a key change for the sealer, in order with the datagrams.
    pub fn set_key(&mut self, key: u32, tx: Option<Arc<SrtpTx>>) {
        self.entries.push(Entry::Key { key, tx });
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.entries.clear();
        self.datagrams = 0;
        self.last_payload = None;
    }
}

/// The protecting side of a lane: the SRTP contexts by key and an arena of
/// finished datagrams, both reused.
#[derive(Debug, Default)]
pub(crate) struct Sealer {
    keys: Vec<Option<Arc<SrtpTx>>>,
    arena: Vec<u8>,
    spans: Vec<(SocketAddr, u32, u32)>,
    /// Packets dropped because their key was unknown (cannot happen unless
    /// the loop's bookkeeping is wrong; counted rather than sent in clear).
    pub unkeyed: u64,
}

impl Sealer {
    /// Protects every datagram of `out` into the arena (replacing what was
    /// there) and empties `out`.
    pub fn seal(&mut self, out: &mut Outbox) {
        self.arena.clear();
        self.spans.clear();
        for entry in out.entries.drain(..) {
            match entry {
                Entry::Ready { dest, at, len } => {
                    let start = self.arena.len() as u32;
                    self.arena
                        .extend_from_slice(&out.buf[at as usize..(at + len) as usize]);
                    self.spans.push((dest, start, len));
                }
                Entry::Rtp {
                    dest,
                    key,
                    head,
                    hlen,
                    plen,
                    payload,
                    index,
                } => {
                    let Some(tx) = self.keys.get(key as usize).and_then(|k| k.as_deref()) else {
                        self.unkeyed += 1;
                        continue;
                    };
                    let (hlen, plen) = (hlen as usize, plen as usize);
                    let start = self.arena.len();
                    let len = hlen + plen;
                    self.arena
                        .resize(start + len + tx.profile.rtp_overhead(), 0);
                    let dst = &mut self.arena[start..];
                    dst[..hlen].copy_from_slice(&out.buf[head as usize..head as usize + hlen]);
                    dst[hlen..len]
                        .copy_from_slice(&out.buf[payload as usize..payload as usize + plen]);
                    let n = tx.protect_rtp(dst, hlen, len, index);
                    self.arena.truncate(start + n);
                    self.spans.push((dest, start as u32, n as u32));
                }
                Entry::Key { key, tx } => {
                    let k = key as usize;
                    if self.keys.len() <= k {
                        self.keys.resize(k + 1, None);
                    }
                    self.keys[k] = tx;
                }
            }
        }
        out.clear();
    }

    /// The datagrams sealed last, in order.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.spans
            .iter()
            .map(|&(d, s, n)| (d, &self.arena[s as usize..(s + n) as usize]))
    }

    /// Number of datagrams sealed last.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.spans.len()
    }
}

/// The loop's side of the lanes: one outbox per lane and the key ids handed
/// to subscribers (reused after release).
#[derive(Debug)]
pub(crate) struct Lanes {
    outs: Vec<Outbox>,
    free_keys: Vec<Vec<u32>>,
    next_key: Vec<u32>,
    next_lane: usize,
}

/// Where a subscriber's fast-path datagrams go: its lane and key id there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LaneKey {
    pub lane: u16,
    pub key: u32,
}

impl Lanes {
    pub fn new(lanes: usize) -> Self {
        let n = lanes.clamp(1, u16::MAX as usize);
        Lanes {
            outs: (0..n).map(|_| Outbox::default()).collect(),
            free_keys: vec![Vec::new(); n],
            next_key: vec![0; n],
            next_lane: 0,
        }
    }

    pub fn count(&self) -> usize {
        self.outs.len()
    }

    /// Places a subscriber on the next lane (round robin) and queues its key.
    pub fn register(&mut self, tx: Arc<SrtpTx>) -> LaneKey {
        let lane = self.next_lane;
        self.next_lane = (self.next_lane + 1) % self.outs.len();
        let key = self.free_keys[lane].pop().unwrap_or_else(|| {
            let k = self.next_key[lane];
            self.next_key[lane] += 1;
            k
        });
        self.outs[lane].set_key(key, Some(tx));
        LaneKey {
            lane: lane as u16,
            key,
        }
    }

    /// Forgets a subscriber's key after everything queued for it.
    pub fn release(&mut self, lk: LaneKey) {
        let lane = lk.lane as usize;
        self.outs[lane].set_key(lk.key, None);
        self.free_keys[lane].push(lk.key);
    }

    pub fn out(&mut self, lane: u16) -> &mut Outbox {
        &mut self.outs[lane as usize]
    }

    pub fn outbox(&self, lane: usize) -> &Outbox {
        &self.outs[lane]
    }

    pub fn outboxes(&mut self) -> &mut [Outbox] {
        &mut self.outs
    }

    pub fn is_empty(&self) -> bool {
        self.outs.iter().all(Outbox::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastpath::srtp::{Profile, SrtpTx};

    fn tx(byte: u8) -> Arc<SrtpTx> {
        Arc::new(SrtpTx::from_master(
            Profile::Aes128CmSha1_80,
            &[byte; 16],
            &[byte; 14],
        ))
    }

    fn header(seq: u16) -> impl FnOnce(&mut [u8]) -> usize {
        move |b: &mut [u8]| {
            b[..12].copy_from_slice(&[0x80, 111, 0, 0, 0, 0, 0, 1, 0, 0, 0, 7]);
            b[2..4].copy_from_slice(&seq.to_be_bytes());
            12
        }
    }

    #[test]
    fn payload_is_copied_once_per_packet_and_each_datagram_matches_direct_protection() {
        let dest: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut lanes = Lanes::new(1);
        let (a, b) = (lanes.register(tx(1)), lanes.register(tx(2)));
        let payload = [9u8; 100];
        let out = lanes.out(0);
        out.push_rtp(dest, a.key, 5, 40, header(5), 77, &payload);
        out.push_rtp(dest, b.key, 5, 40, header(5), 77, &payload);
        // Two headers + one payload.
        assert_eq!(out.buf.len(), 12 + 100 + 12);
        assert_eq!(out.datagrams(), 2);
        let mut sealer = Sealer::default();
        sealer.seal(lanes.out(0));
        assert!(lanes.out(0).is_empty());
        let got: Vec<Vec<u8>> = sealer.datagrams().map(|(_, d)| d.to_vec()).collect();
        for (i, key) in [tx(1), tx(2)].iter().enumerate() {
            let mut want = vec![0u8; 12 + 100 + 10];
            header(5)(&mut want);
            want[12..112].copy_from_slice(&payload);
            let n = key.protect_rtp(&mut want, 12, 112, 5);
            assert_eq!(got[i], want[..n], "datagram {i}");
        }
        assert_ne!(got[0], got[1], "different keys give different datagrams");
    }

    #[test]
    fn keys_change_in_order_with_the_datagrams() {
        let dest: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut lanes = Lanes::new(2);
        let first = lanes.register(tx(1));
        let _other_lane = lanes.register(tx(3));
        lanes
            .out(first.lane)
            .push_rtp(dest, first.key, 1, 40, header(1), 1, &[1; 10]);
        lanes.release(first);
        // The freed id is handed out again on the same lane with a new key,
        // in the same batch: the packet queued before keeps the old key.
        lanes.next_lane = first.lane as usize;
        let second = lanes.register(tx(2));
        assert_eq!(second, first);
        lanes
            .out(second.lane)
            .push_rtp(dest, second.key, 1, 40, header(1), 2, &[1; 10]);
        let mut sealer = Sealer::default();
        sealer.seal(lanes.out(first.lane));
        let got: Vec<Vec<u8>> = sealer.datagrams().map(|(_, d)| d.to_vec()).collect();
        assert_eq!(got.len(), 2);
        for (i, key) in [tx(1), tx(2)].iter().enumerate() {
            let mut want = vec![0u8; 12 + 10 + 10];
            header(1)(&mut want);
            want[12..22].copy_from_slice(&[1; 10]);
            let n = key.protect_rtp(&mut want, 12, 22, 1);
            assert_eq!(got[i], want[..n]);
        }
        // After release without re-registration, nothing is sent in clear.
        lanes.release(second);
        lanes
            .out(second.lane)
            .push_rtp(dest, second.key, 2, 40, header(2), 3, &[1; 10]);
        sealer.seal(lanes.out(second.lane));
        assert_eq!(sealer.len(), 0);
        assert_eq!(sealer.unkeyed, 1);
    }
}
