//! Time and output: the per-participant timers, driving and draining each
//! str0m `Rtc` (`drive`, `drain`), the deferred drain of the subscribers
//! written to while a batch of datagrams was handled (`flush`), and the fast
//! path's send lanes and sender reports.

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use str0m::net::Transmit;
use str0m::{Input, Output};

use crate::demux::{self, Kind};
use crate::downtrack::DownTrack;
use crate::fastpath::{Outbox, Sealer};
use crate::{ParticipantId, SfuEvent};

use super::{SfuCore, FAST_SR_INTERVAL};

impl SfuCore {
    /// Drives every peer whose timer is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        while let Some(Reverse((at, participant, epoch))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(peer) = self.peers.get_mut(&participant) else {
                continue;
            };
            if peer.link.epoch != epoch || peer.link.deadline != Some(at) {
                continue; // stale entry
            }
            peer.link.deadline = None;
            if !peer.link.connected && now >= peer.link.joined_at + self.connect_timeout {
                self.metrics.connect_failures.increment(1);
                self.removals
                    .push((participant, "ICE/DTLS connect timeout".into()));
                continue;
            }
            if let Some(speaking) = peer.audio.speaking.on_timeout(now) {
                peer.audio.active_at = Some(now);
                let room = peer.room;
                self.events.push_back(SfuEvent::Speaking {
                    room,
                    participant,
                    user_id: peer.user_id,
                    speaking,
                });
                self.reselect_speakers(room);
            }
            self.drive(participant, now);
        }
        if self.video_tick.is_some_and(|t| t <= now) {
            self.video_tick = None;
            self.video_pass(now);
        }
        self.relay_timeout(now);
        if self.fast_path && self.fast_sr_at.is_none_or(|t| t <= now) {
            self.fast_sr_at = Some(now + FAST_SR_INTERVAL);
            self.fast_sender_reports(now);
        }
        self.process_scratch(now);
    }

    /// Sender reports for every SSRC the fast path sends on.
    pub(super) fn fast_sender_reports(&mut self, now: Instant) {
        let wall = SystemTime::now();
        self.fast_sr_log.push(wall, now);
        for peer in self.peers.values_mut() {
            if let Some(f) = &mut peer.fast {
                let downs = peer.listen.downs();
                let n = f.sender_reports(downs, now, wall, &mut self.fast_lanes);
                self.metrics.bytes_sent.increment(n as u64);
            }
        }
    }

    /// Protects the datagrams the fast path queued and hands them to `send`
    /// (false = not sent), lane after lane. Call after [`Self::poll_transmit`]
    /// returns `None`, like it, after every input. A core whose lanes are
    /// handed to send workers ([`Self::swap_fast_outbox`]) must never call
    /// this: each lane has one sealer, which holds its peers' keys.
    pub fn drain_fast(&mut self, mut send: impl FnMut(SocketAddr, &[u8]) -> bool) {
        self.drain_fast_lanes(0..self.fast_lanes.count(), |sealer| {
            sealer.datagrams().filter(|(d, b)| !send(*d, b)).count() as u64
        });
    }

    /// Like [`Self::drain_fast`] for the given lanes, with the whole sealed
    /// batch of a lane handed to `send` at once (for `sendmmsg`); `send`
    /// returns how many datagrams were not sent.
    pub(crate) fn drain_fast_lanes(
        &mut self,
        lanes: std::ops::Range<usize>,
        mut send: impl FnMut(&Sealer) -> u64,
    ) {
        if self.fast_sealers.len() < self.fast_lanes.count() {
            self.fast_sealers
                .resize_with(self.fast_lanes.count(), Sealer::default);
        }
        for lane in lanes {
            let out = &mut self.fast_lanes.outboxes()[lane];
            if out.is_empty() {
                continue;
            }
            let sealer = &mut self.fast_sealers[lane];
            sealer.seal(out);
            let failed = send(sealer);
            for _ in 0..failed {
                self.count_io_drop(false);
            }
        }
    }

    /// Number of send lanes (`SfuConfig::send_workers`, at least 1).
    pub(crate) fn fast_lane_count(&self) -> usize {
        self.fast_lanes.count()
    }

    /// Whether anything (datagrams or key changes) waits on `lane`.
    pub(crate) fn fast_lane_pending(&self, lane: usize) -> bool {
        !self.fast_lanes.outbox(lane).is_empty()
    }

    /// Datagrams waiting on `lane`.
    pub(crate) fn fast_lane_datagrams(&self, lane: usize) -> usize {
        self.fast_lanes.outbox(lane).datagrams()
    }

    /// Exchanges lane `lane`'s outbox for an empty one (`spare`, cleared by
    /// its sealer): the send worker of that lane seals and sends what was queued.
    pub(crate) fn swap_fast_outbox(&mut self, lane: usize, spare: &mut Outbox) {
        std::mem::swap(&mut self.fast_lanes.outboxes()[lane], spare);
    }

    /// Whether the fast path has datagrams waiting for [`Self::drain_fast`].
    pub fn has_fast_datagrams(&self) -> bool {
        !self.fast_lanes.is_empty()
    }
    /// The earliest time [`Self::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = self.timers.peek().map(|Reverse((at, _, _))| *at);
        [self.video_tick, self.fast_sr_at, self.relay.deadline()]
            .into_iter()
            .fold(t, |acc, x| match (acc, x) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            })
    }

    /// Drains subscribers written to since the last flush: one str0m poll per
    /// subscriber for all its pending packets.
    ///
    /// Why several `write_rtp` calls before one drain are safe, although
    /// str0m asks for a full drain after each mutation (tested in
    /// `tests/drain_tests.rs`: the deferred drain delivers exactly what a
    /// drain after each write does, at the same instant). In str0m 0.25
    /// `StreamTx::write_rtp` only appends the packet to that stream's
    /// unbounded send queue, unstamped, and arms the `Rtc`'s re-poll flags,
    /// which are OR-ed (a later mutation can add to them, never clear them):
    /// it emits no event or transmit of its own and moves no timer, so there
    /// is no output a second write could overtake or lose. The next
    /// `Input::Timeout` (`drive`) stamps every unstamped packet in queue
    /// order and the drain sends them all. An input that reaches the `Rtc`
    /// in between (its own datagram or timer) is followed by a full drain
    /// at once, which sends the queued packets too. What the rule guards
    /// against — a mutation whose events or transmits are not drained before
    /// the next — never happens here: every `handle_input` is drained
    /// immediately. Recheck this when upgrading str0m.
    pub fn flush(&mut self, now: Instant) {
        self.advance(now);
        while !self.dirty.is_empty() {
            let dirty = std::mem::take(&mut self.dirty);
            for &p in &dirty {
                self.drive(p, now);
            }
            self.dirty = dirty;
            self.dirty.clear();
            self.process_scratch(now);
        }
    }

    /// Next datagram to send (flushes pending forwards first).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if !self.dirty.is_empty() {
            self.flush(self.last_now);
        }
        self.transmits.pop_front()
    }

    /// Gives the peer's `Rtc` the time and drains its output.
    pub(super) fn drive(&mut self, participant: ParticipantId, now: Instant) {
        let Some(peer) = self.peers.get_mut(&participant) else {
            return;
        };
        if let Err(e) = peer.link.rtc.handle_input(Input::Timeout(now)) {
            tracing::debug!(participant = participant.get(), error = %e, "str0m timeout handling failed");
        }
        self.drain(participant, now);
    }

    /// Polls the peer's `Rtc` until it returns a timeout. Transmits are queued,
    /// events go to `scratch` (handled by `process_scratch`, which may touch
    /// other peers).
    pub(super) fn drain(&mut self, participant: ParticipantId, now: Instant) {
        let main_v6 = self.local_addr.is_ipv6();
        let Some(peer) = self.peers.get_mut(&participant) else {
            return;
        };
        peer.link.dirty = false;
        for t in peer.link.pending_latency.drain(..) {
            self.metrics
                .forward_latency_seconds
                .record(now.saturating_duration_since(t).as_secs_f64());
        }
        let rtc_deadline = loop {
            match peer.link.rtc.poll_output() {
                Ok(Output::Timeout(t)) => break Some(t),
                Ok(Output::Transmit(t)) => {
                    self.metrics.bytes_sent.increment(t.contents.len() as u64);
                    if let Some(f) = &mut peer.fast {
                        // The fast path's lanes send on the main UDP socket only: not over
                        // ICE-TCP, not to the other IP family's socket.
                        let on_main = t.proto == str0m::net::Protocol::Udp
                            && t.destination.is_ipv6() == main_v6;
                        f.note_transmit(&t, on_main);
                    }
                    if demux::classify(&t.contents) == Some(Kind::Rtp) {
                        if let Some(ssrc) = demux::rtp_ssrc(&t.contents) {
                            let rtx = |d: &DownTrack| d.rtx.is_some_and(|r| *r == ssrc);
                            if peer.listen.slots.iter().any(|s| rtx(&s.down))
                                || peer.watch.slots.iter().any(|s| rtx(&s.down))
                            {
                                self.metrics.retransmissions.increment(1);
                                self.stats.retransmissions += 1;
                            }
                        }
                    }
                    self.transmits.push_back(t);
                }
                Ok(Output::Event(e)) => self.scratch.push((participant, e)),
                Err(e) => {
                    tracing::debug!(participant = participant.get(), error = %e, "str0m poll failed");
                    self.removals
                        .push((participant, format!("media error: {e}")));
                    break None;
                }
            }
        };
        if !peer.link.rtc.is_alive() {
            self.removals
                .push((participant, "connection closed".into()));
            return;
        }
        // One timer per peer: str0m's own, the connect deadline, speaking release.
        let mut deadline = rtc_deadline;
        let mut earliest = |t: Option<Instant>| {
            if let Some(t) = t {
                deadline = Some(deadline.map_or(t, |d| d.min(t)));
            }
        };
        if !peer.link.connected {
            earliest(Some(peer.link.joined_at + self.connect_timeout));
        }
        earliest(peer.audio.speaking.deadline());
        // With bandwidth estimation on, never due again at this same instant: str0m's pacer
        // can answer a timeout with a timeout at `now` without progressing until the clock
        // moves, and re-driving it at `now` would spin (a millisecond is well below its pacing
        // interval).
        let deadline = if self.video_bwe {
            deadline.map(|d| d.max(now + Duration::from_millis(1)))
        } else {
            deadline
        };
        if let Some(d) = deadline {
            if peer.link.deadline != Some(d) {
                peer.link.deadline = Some(d);
                self.timers.push(Reverse((d, participant, peer.link.epoch)));
            }
        }
    }

    /// Handles the str0m events collected by `drain`, then pending removals.
    pub(super) fn process_scratch(&mut self, now: Instant) {
        loop {
            let mut scratch = std::mem::take(&mut self.scratch);
            for (participant, event) in scratch.drain(..) {
                self.handle_event(participant, event, now);
            }
            if self.scratch.is_empty() {
                self.scratch = scratch; // keep the allocation
            }
            let removals = std::mem::take(&mut self.removals);
            if removals.is_empty() && self.scratch.is_empty() {
                break;
            }
            for (participant, reason) in removals {
                self.remove_peer(participant, Some(reason));
            }
        }
    }
}
