//! Audio: forwarding a publisher's packet to the down-tracks bound to it (a
//! fan-out: each down-track picks its send path), and the room's
//! loudest-speaker slots.

use smallvec::SmallVec;
use str0m::rtp::RtpPacket;

use crate::downtrack::{AudioPacket, Egress, Sent};
use crate::metrics::DropReason;
use crate::selection::{self, Candidate as SpeakerCandidate};
use crate::{ParticipantId, RoomId, SfuEvent, SlotAssignment, UserTag, VideoTrackKind};

/// Screen-share sounds one subscriber gets at most (one per watched share).
const MAX_STREAM_SOUNDS: usize = 2;

use super::peer::AudioSource;
use super::{SfuCore, LATENCY_SAMPLE};

impl SfuCore {
    /// Forwards one packet from `participant` to every subscriber slot bound to it.
    pub(super) fn on_rtp(&mut self, participant: ParticipantId, pkt: RtpPacket) {
        let Some(src) = self.peers.get_mut(&participant) else {
            return;
        };
        // Only audio on the publish m-line, video on published video tracks
        // and the screen share's sound are forwarded.
        if src.video.stream_audio.in_ssrc == Some(pkt.header.ssrc) {
            return self.on_stream_audio_rtp(participant, pkt);
        }
        if src.audio.in_ssrc != Some(pkt.header.ssrc) {
            if let Some(&(_, t, l)) = src
                .video
                .ssrcs
                .iter()
                .find(|(s, _, _)| *s == pkt.header.ssrc)
            {
                return self.on_video_rtp(participant, pkt, t as usize, l as usize);
            }
            let (mid, rid) = src
                .link
                .rtc
                .direct_api()
                .stream_rx(&pkt.header.ssrc)
                .map(|s| (Some(s.mid()), s.rid()))
                .unwrap_or((None, None));
            if mid.is_some() && mid != src.audio.mid {
                let found = src.video.tracks.iter().enumerate().find_map(|(t, tr)| {
                    (Some(tr.mid) == mid)
                        .then(|| tr.layer_by_rid(rid).map(|l| (t, l)))
                        .flatten()
                });
                if let Some((t, l)) = found {
                    if src.video.ssrcs.len() >= 16 {
                        src.video.ssrcs.remove(0);
                    }
                    src.video.ssrcs.push((pkt.header.ssrc, t as u8, l as u8));
                    return self.on_video_rtp(participant, pkt, t, l);
                }
            }
            if mid.is_some() && mid == src.video.stream_audio.mid {
                src.video.stream_audio.in_ssrc = Some(pkt.header.ssrc);
                return self.on_stream_audio_rtp(participant, pkt);
            }
            if mid.is_none() || mid != src.audio.mid {
                self.drop_packet(DropReason::UnsupportedPt);
                return;
            }
            src.audio.in_ssrc = Some(pkt.header.ssrc);
        }
        self.metrics.received_audio.increment(1);
        // Muted by a moderator or by itself (or deafened): dropped here, so
        // a client that keeps sending while it shows as muted is not heard.
        if src.audio.is_muted() {
            // A pause in its relay too: what follows is flagged as a resume.
            src.audio.relay_run = 0;
            self.drop_packet(DropReason::Muted);
            return;
        }
        let Some(is_red) = src.link.audio_pts.classify(pkt.header.payload_type) else {
            self.drop_packet(DropReason::UnsupportedPt);
            return;
        };
        let mut speaking_changed = None;
        if let Some(level) = pkt.header.ext_vals.audio_level {
            if let Some(speaking) = src
                .audio
                .speaking
                .on_level(pkt.timestamp, level.unsigned_abs())
            {
                src.audio.active_at = Some(pkt.timestamp);
                speaking_changed = Some(src.room);
                self.events.push_back(SfuEvent::Speaking {
                    room: src.room,
                    participant,
                    user_id: src.user_id,
                    speaking,
                });
                // The release timer must be armed.
                if speaking && src.link.mark_dirty() {
                    self.dirty.push(participant);
                }
            }
        }
        // Re-select before forwarding, so a speaker that just took a slot is
        // heard from this packet on.
        if let Some(room) = speaking_changed {
            self.reselect_speakers(room);
        }
        let audio = AudioPacket::from_rtp(&pkt);
        // Once to each other media node hosting the room, while it matters there.
        self.relay_local_audio(
            participant,
            &audio,
            *pkt.header.payload_type,
            is_red,
            speaking_changed.is_some(),
        );
        self.fan_out_audio(AudioSource::Voice(participant), &audio, is_red);
    }

    /// The sound of `participant`'s screen share: forwarded to the listening
    /// slots of those watching the share while it is on and allowed (the
    /// VIDEO permission covers the whole share), never to speaking detection
    /// or the loudest-speaker selection.
    fn on_stream_audio_rtp(&mut self, participant: ParticipantId, pkt: RtpPacket) {
        let Some(src) = self.peers.get(&participant) else {
            return;
        };
        self.metrics.received_stream_audio.increment(1);
        if !src.video.allowed || !src.video.screen_on {
            self.drop_packet(DropReason::Muted);
            return;
        }
        let Some(is_red) = src.link.audio_pts.classify(pkt.header.payload_type) else {
            self.drop_packet(DropReason::UnsupportedPt);
            return;
        };
        if src.video.stream_audio.fanout.is_empty() {
            return;
        }
        let audio = AudioPacket::from_rtp(&pkt);
        self.fan_out_audio(AudioSource::Stream(participant), &audio, is_red);
    }

    /// Where `source`'s audio goes: entry `k` of its (subscriber, slot index)
    /// list, a local publisher's or a remote one's.
    pub(super) fn fanout_entry(
        &self,
        source: AudioSource,
        k: usize,
    ) -> Option<(ParticipantId, usize)> {
        match source {
            AudioSource::Voice(p) => match self.peers.get(&p) {
                Some(p) => p.audio.fanout.get(k).copied(),
                None => self.relay.remote_fanout(p)?.get(k).copied(),
            },
            AudioSource::Stream(p) => self
                .peers
                .get(&p)?
                .video
                .stream_audio
                .fanout
                .get(k)
                .copied(),
        }
    }

    /// Forwards one audio packet of `source` (local or remote publisher) to
    /// every subscriber slot bound to it.
    pub(super) fn fan_out_audio(
        &mut self,
        source: AudioSource,
        pkt: &AudioPacket<'_>,
        is_red: bool,
    ) {
        // Fan out over the precomputed (subscriber, slot) list: no scan of
        // the room or of the subscribers' slots per packet.
        self.fast_serial += 1;
        for k in 0.. {
            let Some((sub_id, idx)) = self.fanout_entry(source, k) else {
                break;
            };
            let Some(sub) = self.peers.get_mut(&sub_id) else {
                continue;
            };
            if sub.listen.deaf || !sub.link.connected {
                continue;
            }
            if let Some(f) = sub.fast.as_mut().filter(|f| f.pending()) {
                f.try_activate(&mut sub.link.rtc, sub.listen.downs_mut());
            }
            let Some(slot) = sub
                .listen
                .slots
                .get_mut(idx)
                .filter(|s| s.source == Some(source))
            else {
                continue;
            };
            let pt = if is_red {
                sub.link.audio_pts.red
            } else {
                sub.link.audio_pts.opus
            };
            let Some(pt) = pt else {
                self.metrics.dropped(DropReason::UnsupportedPt).increment(1);
                self.stats.dropped_other += 1;
                continue;
            };
            let out = Egress {
                rtc: &mut sub.link.rtc,
                fast: sub.fast.as_mut(),
                lanes: &mut self.fast_lanes,
                serial: self.fast_serial,
            };
            match slot.down.write_audio(out, pkt, pt) {
                Ok(sent) => {
                    match source {
                        AudioSource::Voice(_) => self.metrics.forwarded_audio.increment(1),
                        AudioSource::Stream(_) => self.metrics.forwarded_stream_audio.increment(1),
                    }
                    self.stats.forwarded += 1;
                    // Forward latency is sampled (1 in LATENCY_SAMPLE forwarded packets):
                    // the exporter keeps every sample until a scrape, which at tens of
                    // thousands of packets per second costs more than the figure is worth.
                    let sample = self.stats.forwarded.is_multiple_of(LATENCY_SAMPLE);
                    match sent {
                        Sent::Fast(n) => {
                            self.metrics.bytes_sent.increment(n as u64);
                            // Written and protected already: the forward latency ends here.
                            if sample {
                                let d = self.last_now.saturating_duration_since(pkt.arrived);
                                self.metrics.forward_latency_seconds.record(d.as_secs_f64());
                            }
                        }
                        Sent::Rtc => {
                            // Sent at the subscriber's drain (`flush`), which records it.
                            if sample {
                                sub.link.pending_latency.push(pkt.arrived);
                            }
                            if sub.link.mark_dirty() {
                                self.dirty.push(sub_id);
                            }
                        }
                    }
                }
                Err(reason) => {
                    self.metrics.dropped(reason).increment(1);
                    self.stats.dropped_other += 1;
                }
            }
        }
    }

    /// Recomputes every member's slot mapping after a change in the room.
    /// Assignment is stable: a source keeps its slot while it publishes; a
    /// freed slot is reused by the next new publisher (first free in m-line order).
    pub(super) fn update_room_slots(&mut self, room_id: RoomId) {
        // Video first: the screen shares a member watches decide which
        // stream sounds its audio slots carry (it ends with the audio slots).
        self.update_room_video(room_id);
    }

    /// The room's publishers as speaker-selection candidates: local ones in
    /// join order, then the remote ones (relayed from other media nodes) in
    /// order of arrival.
    pub(super) fn speaker_candidates(&self, room_id: RoomId) -> Vec<SpeakerCandidate> {
        let Some(room) = self.rooms.get(&room_id) else {
            return Vec::new();
        };
        room.members
            .iter()
            .filter_map(|m| self.peers.get(m))
            .filter(|p| p.audio.is_publisher())
            .map(|p| SpeakerCandidate {
                participant: p.participant,
                speaking: p.audio.speaking.is_speaking(),
                priority: p.audio.priority_speaker,
                active_at: p.audio.active_at,
            })
            .chain(
                room.remotes
                    .iter()
                    .filter_map(|r| self.relay.remote_candidate(*r)),
            )
            .collect()
    }

    /// The room's publishers, local and remote, with their user tags.
    fn publisher_tags(&self, room_id: RoomId) -> Vec<(ParticipantId, UserTag)> {
        let Some(room) = self.rooms.get(&room_id) else {
            return Vec::new();
        };
        room.members
            .iter()
            .filter_map(|m| self.peers.get(m))
            .filter(|p| p.audio.is_publisher())
            .map(|p| (p.participant, p.user_id))
            .chain(
                room.remotes
                    .iter()
                    .filter_map(|r| self.relay.remote_tag(*r).map(|u| (*r, u))),
            )
            .collect()
    }

    /// Re-runs the loudest-speaker selection after a speaking (or priority)
    /// change and moves listeners' slots only if the selection changed.
    pub(super) fn reselect_speakers(&mut self, room_id: RoomId) {
        let candidates = self.speaker_candidates(room_id);
        let size = self.max_audio_slots + 1;
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let changed = selection::reselect(&mut room.selected, &candidates, size);
        // With a full selection, who listeners outside it do without can
        // change without the selection changing (someone went quiet).
        let dropped = (room.selected.len() >= size)
            .then(|| selection::least_relevant(&room.selected, &candidates))
            .flatten();
        if changed || dropped != room.dropped {
            self.assign_audio_slots(room_id);
        }
    }

    /// Recomputes every member's audio slot mapping: each hears the first
    /// `max_audio_slots` selected publishers other than itself.
    pub(super) fn assign_audio_slots(&mut self, room_id: RoomId) {
        let Some(room) = self.rooms.get(&room_id) else {
            return;
        };
        let members = room.members.clone();
        let candidates = self.speaker_candidates(room_id);
        let publishers = self.publisher_tags(room_id);
        let k = self.max_audio_slots;
        let selected = match self.rooms.get_mut(&room_id) {
            Some(room) => {
                selection::reselect(&mut room.selected, &candidates, k + 1);
                room.selected.clone()
            }
            None => return,
        };
        // Who a listener outside a full selection does without.
        let dropped = (selected.len() > k)
            .then(|| selection::least_relevant(&selected, &candidates))
            .flatten();
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.dropped = dropped;
        }
        // Screen shares with sound, for their watchers' slots.
        let streams: SmallVec<[(ParticipantId, UserTag); 4]> = members
            .iter()
            .filter_map(|m| self.peers.get(m))
            .filter(|p| p.video.stream_audio.mid.is_some() && p.video.screen_on && p.video.allowed)
            .map(|p| (p.participant, p.user_id))
            .collect();
        for &m in &members {
            let Some(peer) = self.peers.get_mut(&m) else {
                continue;
            };
            let skip = if selected.contains(&m) {
                Some(m)
            } else {
                dropped
            };
            let mut wanted: SmallVec<[AudioSource; 8]> = selected
                .iter()
                .copied()
                .filter(|p| Some(*p) != skip && *p != m)
                .take(k)
                .map(AudioSource::Voice)
                .collect();
            // The sound of each screen share it watches (on a video slot).
            wanted.extend(
                peer.watch
                    .slots
                    .iter()
                    .filter_map(|s| match s.source {
                        Some((p, VideoTrackKind::Screen))
                            if streams.iter().any(|(s, _)| *s == p) =>
                        {
                            Some(p)
                        }
                        _ => None,
                    })
                    .take(MAX_STREAM_SOUNDS)
                    .map(AudioSource::Stream),
            );
            for slot in &mut peer.listen.slots {
                if let Some(s) = slot.source {
                    if !wanted.contains(&s) {
                        slot.source = None;
                        slot.down.resync();
                    }
                }
            }
            for &w in &wanted {
                if peer.listen.slots.iter().any(|s| s.source == Some(w)) {
                    continue;
                }
                if let Some(free) = peer.listen.slots.iter_mut().find(|s| s.source.is_none()) {
                    free.source = Some(w);
                    free.down.resync();
                }
            }
            let needed = wanted.len();
            if needed > peer.listen.slots.len() && needed > peer.listen.reneg_requested {
                peer.listen.reneg_requested = needed;
                self.events.push_back(SfuEvent::RenegotiationNeeded {
                    participant: m,
                    audio_slots: needed,
                });
            }
            let assignment: Vec<SlotAssignment> = peer
                .listen
                .slots
                .iter()
                .map(|s| SlotAssignment {
                    mid: s.down.mid.to_string(),
                    user_id: s
                        .source
                        .and_then(|src| match src {
                            AudioSource::Voice(v) => publishers.iter().find(|(p, _)| *p == v),
                            AudioSource::Stream(v) => streams.iter().find(|(p, _)| *p == v),
                        })
                        .map(|(_, u)| *u),
                    stream: matches!(s.source, Some(AudioSource::Stream(_))),
                })
                .collect();
            if peer.listen.last_slots.as_ref() != Some(&assignment) {
                peer.listen.last_slots = Some(assignment.clone());
                self.events.push_back(SfuEvent::Slots {
                    participant: m,
                    slots: assignment,
                });
            }
        }
        // Rebuild every member's fan-out list from the slot mappings.
        for &m in &members {
            if let Some(p) = self.peers.get_mut(&m) {
                p.audio.fanout.clear();
                p.video.stream_audio.fanout.clear();
            }
        }
        if let Some(room) = self.rooms.get(&room_id) {
            for r in &room.remotes {
                if let Some(f) = self.relay.remote_fanout_mut(*r) {
                    f.clear();
                }
            }
        }
        for &m in &members {
            let Some(sub) = self.peers.get(&m) else {
                continue;
            };
            let entries: SmallVec<[(AudioSource, usize); 8]> = sub
                .listen
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.source.map(|src| (src, i)))
                .collect();
            for (src, i) in entries {
                match src {
                    AudioSource::Voice(src) => {
                        if let Some(p) = self.peers.get_mut(&src) {
                            p.audio.fanout.push((m, i));
                        } else if let Some(f) = self.relay.remote_fanout_mut(src) {
                            f.push((m, i));
                        }
                    }
                    AudioSource::Stream(src) => {
                        if let Some(p) = self.peers.get_mut(&src) {
                            p.video.stream_audio.fanout.push((m, i));
                        }
                    }
                }
            }
        }
    }
}
