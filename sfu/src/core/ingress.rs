//! Network input: a datagram on the shared socket is routed to its
//! participant (by ICE ufrag for a new address, else by source address),
//! handed to that participant's `Rtc` and drained at once; the str0m events
//! that drain produces (media, connection state, stats) are handled here.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input};

use crate::demux::{self, Kind, Stun};
use crate::metrics::DropReason;
use crate::video;
use crate::{ParticipantId, SfuEvent};

use super::{SfuCore, MAX_ADDRS_PER_PEER, OPUS_CLOCK};

impl SfuCore {
    /// One datagram arrived on the shared socket from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, buf: &[u8]) {
        self.handle_input_from(now, Protocol::Udp, from, buf);
    }

    /// One datagram arrived framed on the ICE-TCP connection from `from` (`tcp.rs`).
    pub fn handle_tcp_frame(&mut self, now: Instant, from: SocketAddr, buf: &[u8]) {
        self.handle_input_from(now, Protocol::Tcp, from, buf);
    }

    /// The ICE-TCP connection from `from` closed: the address no longer leads to its peer (ICE
    /// notices the loss by itself through consent checks).
    pub fn tcp_closed(&mut self, from: SocketAddr) {
        if let Some(p) = self.by_addr.remove(&from) {
            if let Some(peer) = self.peers.get_mut(&p) {
                peer.link.addrs.retain(|a| *a != from);
            }
        }
    }

    fn handle_input_from(&mut self, now: Instant, proto: Protocol, from: SocketAddr, buf: &[u8]) {
        self.advance(now);
        self.metrics.bytes_received.increment(buf.len() as u64);
        let Some(kind) = demux::classify(buf) else {
            self.drop_packet(DropReason::Malformed);
            return;
        };
        // A binding request routed by ufrag: its source address is learned
        // only if str0m answers it (i.e. MESSAGE-INTEGRITY checked out), so a
        // forged request cannot steal or add an address mapping.
        let mut verify_addr = false;
        let participant = match kind {
            Kind::Stun => {
                self.metrics.received_stun.increment(1);
                match demux::stun_ufrag(buf) {
                    Stun::BindingRequest { local_ufrag } => match self.by_ufrag.get(local_ufrag) {
                        Some(&p) => {
                            verify_addr = self.by_addr.get(&from) != Some(&p);
                            p
                        }
                        None => {
                            self.drop_packet(DropReason::UnknownUfrag);
                            return;
                        }
                    },
                    Stun::Other => match self.by_addr.get(&from) {
                        Some(&p) => p,
                        None => {
                            self.drop_packet(DropReason::UnknownPeer);
                            return;
                        }
                    },
                    Stun::Malformed => {
                        self.drop_packet(DropReason::Malformed);
                        return;
                    }
                }
            }
            _ => {
                match kind {
                    Kind::Dtls => self.metrics.received_dtls.increment(1),
                    Kind::Rtcp => self.metrics.received_rtcp.increment(1),
                    _ => {}
                }
                match self.by_addr.get(&from) {
                    Some(&p) => p,
                    None => {
                        self.drop_packet(DropReason::UnknownPeer);
                        return;
                    }
                }
            }
        };
        let local = match (proto, self.local6) {
            (Protocol::Tcp, _) => self.tcp_addr.unwrap_or(self.local_addr),
            (_, Some(v6)) if from.is_ipv6() && !self.local_addr.is_ipv6() => v6,
            _ => self.local_addr,
        };
        let Ok(receive) = Receive::new(proto, from, local, buf) else {
            self.drop_packet(DropReason::Malformed);
            return;
        };
        let Some(peer) = self.peers.get_mut(&participant) else {
            self.drop_packet(DropReason::UnknownPeer);
            return;
        };
        // Receiver reports and NACKs about the SSRCs the fast path owns (str0m no longer knows
        // them and would drop them): read before str0m gets the same datagram.
        if kind == Kind::Rtcp {
            if let Some(f) = &mut peer.fast {
                let downs = peer.listen.downs();
                self.stats.nacks_received += f.on_rtcp(
                    buf,
                    now,
                    downs,
                    &self.fast_sr_log,
                    OPUS_CLOCK,
                    &self.metrics,
                );
            }
        }
        if let Err(e) = peer.link.rtc.handle_input(Input::Receive(now, receive)) {
            tracing::debug!(participant = participant.get(), error = %e, "str0m rejected a datagram");
            self.drop_packet(DropReason::RtcError);
        }
        let queued = self.transmits.len();
        self.drain(participant, now);
        if verify_addr
            && self
                .transmits
                .iter()
                .skip(queued)
                .any(|t| t.destination == from)
        {
            self.learn_addr(participant, from);
        }
        self.process_scratch(now);
    }

    pub(super) fn learn_addr(&mut self, participant: ParticipantId, from: SocketAddr) {
        match self.by_addr.get(&from) {
            Some(&p) if p == participant => return,
            Some(&other) => {
                // The address moved to another peer (NAT rebinding, rejoin).
                if let Some(o) = self.peers.get_mut(&other) {
                    o.link.addrs.retain(|a| *a != from);
                }
            }
            None => {}
        }
        let Some(peer) = self.peers.get_mut(&participant) else {
            return;
        };
        if peer.link.addrs.len() >= MAX_ADDRS_PER_PEER {
            let old = peer.link.addrs.remove(0);
            self.by_addr.remove(&old);
        }
        peer.link.addrs.push(from);
        self.by_addr.insert(from, participant);
    }

    pub(super) fn handle_event(&mut self, participant: ParticipantId, event: Event, now: Instant) {
        match event {
            Event::RtpPacket(pkt) => self.on_rtp(participant, pkt),
            Event::KeyframeRequest(req) => self.on_keyframe_request(participant, req.mid, now),
            Event::EgressBitrateEstimate(str0m::bwe::BweKind::Twcc { estimate, .. }) => {
                tracing::trace!(
                    participant = participant.get(),
                    estimate = estimate.as_u64(),
                    "bandwidth estimate"
                );
                if let Some(peer) = self.peers.get_mut(&participant) {
                    peer.watch.bwe = Some(estimate.as_u64());
                }
            }
            Event::Connected => {
                let Some(peer) = self.peers.get_mut(&participant) else {
                    return;
                };
                if !peer.link.connected {
                    peer.link.connected = true;
                    self.metrics.ice_connect_seconds.record(
                        now.saturating_duration_since(peer.link.joined_at)
                            .as_secs_f64(),
                    );
                    self.events.push_back(SfuEvent::Connected { participant });
                    // Start forwarding to it with fresh anchors.
                    peer.listen.resync_all();
                    for s in &mut peer.watch.slots {
                        s.reset();
                    }
                    if let Some(f) = &mut peer.fast {
                        f.try_activate(&mut peer.link.rtc, peer.listen.downs_mut());
                    }
                    let room = peer.room;
                    self.update_room_video(room);
                }
            }
            // Before the first connection the connect timeout decides.
            Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                if self
                    .peers
                    .get(&participant)
                    .is_some_and(|p| p.link.connected) =>
            {
                self.removals.push((participant, "ICE disconnected".into()));
            }
            Event::Closed => {
                self.removals.push((participant, "closed by peer".into()));
            }
            Event::MediaIngressStats(s) => {
                if let Some(loss) = s.loss {
                    self.metrics.receive_loss_ratio.record(loss as f64);
                }
                self.metrics
                    .jitter_seconds
                    .record(s.jitter as f64 / OPUS_CLOCK as f64);
            }
            Event::MediaEgressStats(s) => {
                if let Some(peer) = self.peers.get_mut(&participant) {
                    let seen = peer.link.nacks_seen.entry(s.mid).or_insert(0);
                    if s.nacks > *seen {
                        let delta = s.nacks - *seen;
                        self.metrics.nacks_received.increment(delta);
                        self.stats.nacks_received += delta;
                    }
                    *seen = s.nacks;
                }
                // RTT, loss and jitter from the subscriber's RTCP receiver reports (PeerStats'
                // RTT comes from TWCC, which audio peers do not negotiate). The fast path
                // records the same for the SSRCs it owns (`fastpath/feedback.rs`).
                if let Some(rtt) = s.rtt {
                    self.metrics.rtt_seconds.record(rtt.as_secs_f64());
                }
                if let Some(loss) = s.loss {
                    self.metrics.subscriber_loss_ratio.record(loss as f64);
                }
                // `remote` keeps the last report; only a fresh one (with `loss`) is a sample.
                if let Some(remote) = s.remote.as_ref().filter(|_| s.loss.is_some()) {
                    let audio = self
                        .peers
                        .get(&participant)
                        .is_some_and(|p| p.listen.slots.iter().any(|sl| sl.down.mid == s.mid));
                    let clock = if audio {
                        OPUS_CLOCK
                    } else {
                        video::VIDEO_CLOCK
                    };
                    self.metrics
                        .subscriber_jitter_seconds
                        .record(remote.jitter as f64 / clock as f64);
                }
            }
            _ => {}
        }
    }
}
