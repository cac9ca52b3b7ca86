//! Video: forwarding simulcast layers to subscribers' video slots, layer
//! choice, keyframe requests and pauses, and the video m-lines of an offer.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::rtp::RtpPacket;
use str0m::Rtc;

use crate::downtrack::DownTrack;
use crate::metrics::{DropReason, KeyframeReason, LayerLabel};
use crate::video::{self, VideoPts, VideoSlot, VideoTrack};
use crate::{
    ParticipantId, RoomId, SfuEvent, UserTag, VideoSlotAssignment, VideoSubscription,
    VideoTrackKind,
};

use super::peer::Peer;
use super::SfuCore;

impl SfuCore {
    /// Forwards one packet of layer `li` of video track `ti` of `participant`
    /// to the subscriber slots watching that track at that layer. A slot
    /// moves to its target layer only on a keyframe of that layer.
    pub(super) fn on_video_rtp(
        &mut self,
        participant: ParticipantId,
        pkt: RtpPacket,
        ti: usize,
        li: usize,
    ) {
        self.metrics.received_video.increment(1);
        let now = pkt.timestamp;
        let Some(src) = self.peers.get_mut(&participant) else {
            return;
        };
        if !src.video.allowed {
            self.drop_packet(DropReason::Muted);
            return;
        }
        let Some(spec) = src
            .link
            .video_pts
            .iter()
            .find(|(p, _)| *p == pkt.header.payload_type)
            .map(|(_, s)| *s)
        else {
            self.drop_packet(DropReason::UnsupportedPt);
            return;
        };
        let Some(kind) = src.video.tracks.get(ti).map(|t| t.kind) else {
            return;
        };
        // Switched off by the client (`self_video` / `self_stream`).
        if !src.video.is_on(kind) {
            self.drop_packet(DropReason::Muted);
            return;
        }
        let track = &mut src.video.tracks[ti];
        let label = LayerLabel::of(li, track.layers.len());
        let Some(layer) = track.layers.get_mut(li) else {
            return;
        };
        let is_keyframe = video::starts_keyframe(spec.codec, &pkt.payload);
        layer.ssrc = Some(pkt.header.ssrc);
        layer.on_packet(now, pkt.payload.len());
        let bytes = pkt.payload.len() as u64;
        self.metrics.video_received_bytes(label).increment(bytes);
        if is_keyframe {
            layer.keyframe_wanted = false;
            if spec.codec == Codec::Vp8 {
                if let Some(size) = video::vp8_keyframe_size(&pkt.payload) {
                    layer.size = Some(size);
                }
            }
        }
        let fanout = track.fanout.clone();
        for (sub_id, idx) in fanout {
            let Some(sub) = self.peers.get_mut(&sub_id) else {
                continue;
            };
            if !sub.link.connected {
                continue;
            }
            let Some(slot) = sub
                .watch
                .slots
                .get_mut(idx)
                .filter(|s| s.source == Some((participant, kind)))
            else {
                continue;
            };
            if slot.current != Some(li) {
                if slot.target != Some(li) || !is_keyframe {
                    continue;
                }
                // Switch (or start) on this keyframe; numbering continues.
                match slot.current {
                    Some(c) if li > c => self.metrics.layer_switch_up.increment(1),
                    Some(_) => self.metrics.layer_switch_down.increment(1),
                    None => {}
                }
                slot.current = Some(li);
                slot.down.resync();
                slot.vp8.reanchor();
            }
            let Some(pt) = video::pt_for(&sub.link.video_pts, spec) else {
                self.metrics.dropped(DropReason::UnsupportedPt).increment(1);
                self.stats.dropped_other += 1;
                continue;
            };
            let patch = if spec.codec == Codec::Vp8 {
                slot.vp8.patch(&pkt.payload)
            } else {
                None
            };
            match slot.down.write_video(&mut sub.link.rtc, &pkt, pt, patch) {
                Ok(()) => {
                    self.metrics.forwarded_video.increment(1);
                    self.metrics.video_forwarded_bytes(label).increment(bytes);
                    self.stats.forwarded_video += 1;
                    if sub.link.mark_dirty() {
                        self.dirty.push(sub_id);
                    }
                }
                Err(reason) => {
                    self.metrics.dropped(reason).increment(1);
                    self.stats.dropped_other += 1;
                }
            }
        }
    }

    /// A subscriber asked for a keyframe (PLI/FIR) on one of its video slots:
    /// passed on to the publisher, throttled per track.
    pub(super) fn on_keyframe_request(
        &mut self,
        participant: ParticipantId,
        mid: Mid,
        now: Instant,
    ) {
        let Some(sub) = self.peers.get(&participant) else {
            return;
        };
        let Some(slot) = sub.watch.slots.iter().find(|s| s.down.mid == mid) else {
            return;
        };
        let (Some((publisher, kind)), Some(layer)) = (slot.source, slot.current.or(slot.target))
        else {
            return;
        };
        if let Some(l) = self
            .peers
            .get_mut(&publisher)
            .and_then(|p| p.video.track_mut(kind))
            .and_then(|t| t.layers.get_mut(layer))
        {
            l.want_keyframe(KeyframeReason::SubscriberPli);
        }
        self.send_keyframe_requests(publisher, now);
    }

    /// Sends the wanted keyframe requests of a publisher's tracks, at most one
    /// round per track per [`video::KEYFRAME_REQUEST_INTERVAL`]; the rest wait
    /// for the next video pass.
    pub(super) fn send_keyframe_requests(&mut self, publisher: ParticipantId, now: Instant) {
        let Some(p) = self.peers.get_mut(&publisher) else {
            return;
        };
        if !p.link.connected {
            return;
        }
        let mut sent = 0u64;
        for t in &mut p.video.tracks {
            if !t
                .layers
                .iter()
                .any(|l| l.keyframe_wanted && l.ssrc.is_some())
            {
                continue;
            }
            if t.last_keyframe_request.is_some_and(|at| {
                now.saturating_duration_since(at) < video::KEYFRAME_REQUEST_INTERVAL
            }) {
                continue;
            }
            t.last_keyframe_request = Some(now);
            for l in &mut t.layers {
                let Some(ssrc) = l.ssrc.filter(|_| l.keyframe_wanted) else {
                    continue;
                };
                l.keyframe_wanted = false;
                if let Some(rx) = p.link.rtc.direct_api().stream_rx(&ssrc) {
                    rx.request_keyframe(str0m::media::KeyframeRequestKind::Pli);
                    self.metrics
                        .keyframe_requests(l.keyframe_reason)
                        .increment(1);
                    sent += 1;
                }
            }
        }
        if sent > 0 {
            self.stats.keyframe_requests += sent;
            if p.link.mark_dirty() {
                self.dirty.push(publisher);
            }
        }
    }

    /// Recomputes the video slot mapping of every member of a room from the
    /// subscriptions, then layers, keyframe requests and pause reports.
    /// Assignment is stable: a watched track keeps its slot; a new one takes
    /// the first free slot in m-line order; subscriptions beyond the slots
    /// are not shown.
    pub(super) fn update_room_video(&mut self, room_id: RoomId) {
        let now = self.last_now;
        let Some(room) = self.rooms.get(&room_id) else {
            return;
        };
        let members = room.members.clone();
        type Pub = (ParticipantId, UserTag, SmallVec<[VideoTrackKind; 2]>);
        let pubs: Vec<Pub> = members
            .iter()
            .filter_map(|m| self.peers.get(m))
            .filter(|p| !p.video.tracks.is_empty())
            .map(|p| {
                let kinds = p.video.tracks.iter().map(|t| t.kind).collect();
                (p.participant, p.user_id, kinds)
            })
            .collect();
        let mut any_video = !pubs.is_empty();
        for &m in &members {
            let Some(peer) = self.peers.get_mut(&m) else {
                continue;
            };
            any_video |= !peer.watch.slots.is_empty();
            type Want = ((ParticipantId, VideoTrackKind), (u32, u32));
            let wanted: SmallVec<[Want; 9]> = peer
                .watch
                .subs
                .iter()
                .filter_map(|s| {
                    pubs.iter()
                        .find(|(p, u, kinds)| {
                            *u == s.user_id && *p != m && kinds.contains(&s.track)
                        })
                        .map(|(p, _, _)| ((*p, s.track), (s.width, s.height)))
                })
                .collect();
            for slot in &mut peer.watch.slots {
                if let Some(src) = slot.source {
                    match wanted.iter().find(|(w, _)| *w == src) {
                        Some((_, size)) => slot.want = *size,
                        None => {
                            slot.source = None;
                            slot.reset();
                        }
                    }
                }
            }
            for (w, size) in &wanted {
                if peer.watch.slots.iter().any(|s| s.source == Some(*w)) {
                    continue;
                }
                if let Some(free) = peer.watch.slots.iter_mut().find(|s| s.source.is_none()) {
                    free.source = Some(*w);
                    free.want = *size;
                    free.reset();
                }
            }
            let assignment: Vec<VideoSlotAssignment> = peer
                .watch
                .slots
                .iter()
                .map(|s| VideoSlotAssignment {
                    mid: s.down.mid.to_string(),
                    user_id: s
                        .source
                        .and_then(|(p, _)| pubs.iter().find(|x| x.0 == p))
                        .map(|x| x.1),
                    track: s.source.map(|(_, k)| k),
                })
                .collect();
            if peer.watch.last_slots.as_ref() != Some(&assignment) {
                let quiet = assignment.is_empty() && peer.watch.last_slots.is_none();
                peer.watch.last_slots = Some(assignment.clone());
                if !quiet {
                    self.emit_video_slots(m, assignment);
                }
            }
        }
        // Rebuild the publishers' fan-out lists from the slot mappings.
        for &m in &members {
            if let Some(p) = self.peers.get_mut(&m) {
                for t in &mut p.video.tracks {
                    t.fanout.clear();
                }
            }
        }
        for &m in &members {
            let Some(sub) = self.peers.get(&m) else {
                continue;
            };
            let entries: SmallVec<[((ParticipantId, VideoTrackKind), usize); 9]> = sub
                .watch
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.source.map(|src| (src, i)))
                .collect();
            for ((p, k), i) in entries {
                if let Some(t) = self.peers.get_mut(&p).and_then(|pp| pp.video.track_mut(k)) {
                    t.fanout.push((m, i));
                }
            }
        }
        self.allocate_video(&members, now, false);
        if any_video && self.video_tick.is_none() {
            self.video_tick = Some(now + video::VIDEO_TICK);
        }
        self.report_stream_viewers(room_id, &members);
        // The screen shares each member watches decide which stream sounds
        // its audio slots carry.
        self.assign_audio_slots(room_id);
    }

    /// Go Live viewer counts: subscribers with a publisher's screen share on
    /// a video slot, reported when the count changes.
    fn report_stream_viewers(&mut self, room: RoomId, members: &[ParticipantId]) {
        let mut counts: SmallVec<[(ParticipantId, usize); 4]> = SmallVec::new();
        for m in members {
            let Some(sub) = self.peers.get(m) else {
                continue;
            };
            for s in &sub.watch.slots {
                if let Some((p, VideoTrackKind::Screen)) = s.source {
                    match counts.iter_mut().find(|(q, _)| *q == p) {
                        Some((_, n)) => *n += 1,
                        None => counts.push((p, 1)),
                    }
                }
            }
        }
        for m in members {
            let Some(p) = self.peers.get_mut(m) else {
                continue;
            };
            let sharing = p.video.track(VideoTrackKind::Screen).is_some() && p.video.screen_on;
            let n = counts.iter().find(|(q, _)| q == m).map_or(0, |(_, n)| *n);
            let now = if sharing || p.video.screen_viewers.is_some_and(|v| v > 0) {
                Some(n)
            } else {
                None
            };
            if now.is_some() && now != p.video.screen_viewers {
                self.events.push_back(SfuEvent::StreamViewers {
                    room,
                    participant: p.participant,
                    user_id: p.user_id,
                    viewers: n,
                });
            }
            p.video.screen_viewers = now;
        }
    }

    /// Chooses each watched slot's target layer from its shown size and the
    /// subscriber's bandwidth estimate (screen shares first, then larger
    /// views), asks for keyframes where a slot must switch, and reports which
    /// layers are needed. `retry`: also re-ask for keyframes for slots still
    /// waiting since the last request a second ago or more.
    pub(super) fn allocate_video(&mut self, members: &[ParticipantId], now: Instant, retry: bool) {
        let mut wanted: SmallVec<[(ParticipantId, VideoTrackKind, usize, KeyframeReason); 8]> =
            SmallVec::new();
        for &m in members {
            let Some(sub) = self.peers.get(&m) else {
                continue;
            };
            type Req = (usize, ParticipantId, VideoTrackKind, (u32, u32));
            let mut reqs: SmallVec<[Req; 9]> = sub
                .watch
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.source.map(|(p, k)| (i, p, k, s.want)))
                .collect();
            if reqs.is_empty() {
                continue;
            }
            reqs.sort_by_key(|r| {
                (
                    r.2 != VideoTrackKind::Screen,
                    Reverse(r.3 .0 as u64 * r.3 .1 as u64),
                )
            });
            let mut budget = sub.watch.bwe;
            // What the chosen layers send and what the views would take unbudgeted: the
            // estimator probes towards the latter (without it, it never learns there is room
            // for a larger layer and holds the viewer where it started).
            let (mut sending, mut wanting) = (0u64, 0u64);
            // What one view held below its layer by the budget would add one layer up: the
            // estimator is padded towards it (see `tell_bwe`).
            let mut step_up = 0u64;
            // (slot index, layer, layers of the track, last keyframe request ≥ 1 s ago)
            type Decision = (usize, Option<usize>, usize, bool);
            let mut decisions: SmallVec<[Decision; 9]> = SmallVec::new();
            for (idx, p, k, want) in reqs {
                let Some(track) = self.peers.get(&p).and_then(|pp| pp.video.track(k)) else {
                    decisions.push((idx, None, 0, false));
                    continue;
                };
                let layer = track.pick_layer(want, budget, now);
                if let Some(b) = budget.as_mut() {
                    *b = b.saturating_sub(track.layers[layer].bitrate);
                }
                sending += track.layers[layer].bitrate;
                let fitting = track.fitting_layer(want);
                wanting += track.layers[fitting].bitrate;
                if step_up == 0 && layer < fitting {
                    step_up = track.layers[layer + 1]
                        .bitrate
                        .saturating_sub(track.layers[layer].bitrate);
                }
                let stale = track
                    .last_keyframe_request
                    .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
                decisions.push((idx, Some(layer), track.layers.len(), stale));
            }
            let Some(sub) = self.peers.get_mut(&m) else {
                continue;
            };
            if self.video_bwe {
                tell_bwe(sub, sending, step_up, wanting);
            }
            for (idx, layer, n_layers, stale) in decisions {
                let slot = &mut sub.watch.slots[idx];
                if slot.current.is_some_and(|c| c >= n_layers) {
                    slot.current = None;
                }
                let changed = slot.target != layer;
                slot.target = layer;
                if let (Some(l), Some((p, k))) = (layer, slot.source) {
                    if slot.current != Some(l) && (changed || (retry && stale)) {
                        let reason = match (changed, slot.current) {
                            (false, _) => KeyframeReason::Retry,
                            (true, None) => KeyframeReason::Subscribe,
                            (true, Some(_)) => KeyframeReason::Switch,
                        };
                        wanted.push((p, k, l, reason));
                    }
                }
            }
        }
        let mut publishers: SmallVec<[ParticipantId; 8]> = SmallVec::new();
        for (p, k, l, reason) in wanted {
            if let Some(layer) = self
                .peers
                .get_mut(&p)
                .and_then(|pp| pp.video.track_mut(k))
                .and_then(|t| t.layers.get_mut(l))
            {
                layer.want_keyframe(reason);
            }
            if !publishers.contains(&p) {
                publishers.push(p);
            }
        }
        for p in publishers {
            self.send_keyframe_requests(p, now);
        }
        self.report_pauses(members);
    }

    /// Emits `PauseLayers` for every published track in `members` whose set
    /// of needed layers changed.
    pub(super) fn report_pauses(&mut self, members: &[ParticipantId]) {
        let mut used: SmallVec<[(ParticipantId, VideoTrackKind, usize); 16]> = SmallVec::new();
        for &m in members {
            let Some(sub) = self.peers.get(&m) else {
                continue;
            };
            for s in &sub.watch.slots {
                if let Some((p, k)) = s.source {
                    for l in [s.target, s.current].into_iter().flatten() {
                        used.push((p, k, l));
                    }
                    // The layer that fits the view is needed even while a live
                    // fallback is sent: a publisher that paused it must resume
                    // it, or the slot would stay on the fallback for good.
                    if let Some(t) = self.peers.get(&p).and_then(|pp| pp.video.track(k)) {
                        used.push((p, k, t.fitting_layer(s.want)));
                    }
                }
            }
        }
        let mut reports = Vec::new();
        for &m in members {
            let Some(p) = self.peers.get_mut(&m) else {
                continue;
            };
            for t in &mut p.video.tracks {
                let active: Vec<String> = t
                    .layers
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| used.contains(&(m, t.kind, *i)))
                    .map(|(_, l)| l.rid_str())
                    .collect();
                if t.reported_active.as_ref() != Some(&active) {
                    t.reported_active = Some(active.clone());
                    reports.push((m, t.kind, active));
                }
            }
        }
        for (participant, track, active_rids) in reports {
            self.emit_pause_layers(participant, track, active_rids);
        }
    }

    /// Periodic pass: layer choice (sizes, liveness and bandwidth change),
    /// keyframe retries, pause reports.
    pub(super) fn video_pass(&mut self, now: Instant) {
        let rooms: Vec<Vec<ParticipantId>> =
            self.rooms.values().map(|r| r.members.clone()).collect();
        let mut any = false;
        for members in rooms {
            let video = members.iter().any(|m| {
                self.peers
                    .get(m)
                    .is_some_and(|p| !p.video.tracks.is_empty() || !p.watch.slots.is_empty())
            });
            if video {
                any = true;
                self.allocate_video(&members, now, true);
                for m in &members {
                    self.send_keyframe_requests(*m, now);
                }
            }
        }
        self.video_tick = any.then(|| now + video::VIDEO_TICK);
    }

    pub(super) fn emit_video_slots(
        &mut self,
        participant: ParticipantId,
        slots: Vec<VideoSlotAssignment>,
    ) {
        self.events
            .push_back(SfuEvent::VideoSlots { participant, slots });
    }

    pub(super) fn emit_pause_layers(
        &mut self,
        participant: ParticipantId,
        track: VideoTrackKind,
        active_rids: Vec<String>,
    ) {
        self.events.push_back(SfuEvent::PauseLayers {
            participant,
            track,
            active_rids,
        });
    }

    /// What `participant` wants to see (replaces the previous list).
    pub fn set_video_subscriptions(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        subs: Vec<VideoSubscription>,
    ) {
        self.advance(now);
        let Some(p) = self.peers.get_mut(&participant) else {
            return;
        };
        p.watch.subs = subs;
        p.watch.subs.truncate(64);
        let room = p.room;
        self.update_room_video(room);
    }

    /// Declares which of the client's sending video m-lines (by mid) is the
    /// camera and which the screen share, overriding the m-line order rule.
    pub fn set_video_track_kinds(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        kinds: Vec<(String, VideoTrackKind)>,
    ) {
        self.advance(now);
        let Some(p) = self.peers.get_mut(&participant) else {
            return;
        };
        p.video.kinds = kinds
            .into_iter()
            .take(8)
            .map(|(m, k)| (Mid::from(m.as_str()), k))
            .collect();
        let mids = p.link.mids.clone();
        let v = inspect_video(&p.link.rtc, &mids);
        apply_video(p, v, self.max_video_slots);
        let room = p.room;
        self.update_room_video(room);
        self.update_gauges();
    }

    /// Declares which sending audio m-line (by mid) carries the sound of the
    /// client's screen share; `None` (or a mid that is not a second sending
    /// audio m-line) means none. Its packets are forwarded only to those who
    /// watch the share, on their listening slots.
    pub fn set_stream_audio_mid(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        mid: Option<String>,
    ) {
        self.advance(now);
        let Some(p) = self.peers.get_mut(&participant) else {
            return;
        };
        let mid = mid.map(|m| Mid::from(m.as_str())).filter(|m| {
            Some(*m) != p.audio.mid
                && p.link.mids.contains(m)
                && p.link.rtc.media(*m).is_some_and(|media| {
                    media.kind() == MediaKind::Audio
                        && !media.disabled()
                        && matches!(media.direction(), Direction::RecvOnly | Direction::SendRecv)
                })
        });
        if p.video.stream_audio.mid == mid {
            return;
        }
        p.video.stream_audio.mid = mid;
        p.video.stream_audio.in_ssrc = None;
        let room = p.room;
        self.update_room_video(room);
    }

    /// Video slot mapping of a subscriber: (mid, (publisher participant, track)).
    pub fn video_slots_of(
        &self,
        participant: ParticipantId,
    ) -> Vec<(String, Option<(ParticipantId, VideoTrackKind)>)> {
        self.peers
            .get(&participant)
            .map(|p| {
                p.watch
                    .slots
                    .iter()
                    .map(|s| (s.down.mid.to_string(), s.source))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The rid being forwarded on a subscriber's video slot (`""` without
    /// simulcast), or None when nothing is forwarded there yet.
    pub fn video_layer_of(&self, participant: ParticipantId, mid: &str) -> Option<String> {
        let p = self.peers.get(&participant)?;
        let s = p.watch.by_mid(mid)?;
        let (publisher, kind) = s.source?;
        let t = self
            .peers
            .get(&publisher)?
            .video
            .tracks
            .iter()
            .find(|t| t.kind == kind)?;
        Some(t.layers.get(s.current?)?.rid_str())
    }

    /// The kinds of the video tracks a participant publishes, with their rids.
    pub fn video_tracks_of(
        &self,
        participant: ParticipantId,
    ) -> Vec<(VideoTrackKind, Vec<String>)> {
        self.peers
            .get(&participant)
            .map(|p| {
                p.video
                    .tracks
                    .iter()
                    .map(|t| (t.kind, t.layers.iter().map(|l| l.rid_str()).collect()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The video m-lines of a negotiated session.
pub(super) struct VideoMedias {
    /// Client-sending video m-lines, in order: (mid, carries media, rids).
    /// `inactive` ones are listed (they hold a place in the camera/screen
    /// order) with `false`.
    send: Vec<(Mid, bool, Vec<str0m::media::Rid>)>,
    /// Client-receiving (recvonly) video m-lines: the video slots.
    recv: Vec<Mid>,
    pts: VideoPts,
}

pub(super) fn inspect_video(rtc: &Rtc, mids: &[Mid]) -> VideoMedias {
    let mut out = VideoMedias {
        send: Vec::new(),
        recv: Vec::new(),
        pts: SmallVec::new(),
    };
    let mut remote_pts: SmallVec<[Pt; 16]> = SmallVec::new();
    for &mid in mids {
        let Some(media) = rtc.media(mid) else {
            continue;
        };
        if media.kind() != MediaKind::Video || media.disabled() {
            continue;
        }
        remote_pts.extend(media.remote_pts().iter().copied());
        // Directions are ours: the client's sendonly is our recvonly.
        match media.direction() {
            Direction::RecvOnly | Direction::SendRecv => {
                let rids = match media.rids_rx() {
                    str0m::media::Rids::Specific(r) => r.clone(),
                    _ => Vec::new(),
                };
                out.send.push((mid, true, rids));
            }
            Direction::Inactive => out.send.push((mid, false, Vec::new())),
            Direction::SendOnly => out.recv.push(mid),
        }
    }
    for p in rtc.codec_config().params() {
        if p.spec().codec.is_video() && remote_pts.contains(&p.pt()) {
            out.pts.push((p.pt(), p.spec()));
        }
    }
    out
}

/// Applies the negotiated video m-lines to a peer: published tracks (kept
/// with their state when unchanged) and video slots (which only grow).
pub(super) fn apply_video(peer: &mut Peer, v: VideoMedias, max_slots: usize) {
    peer.link.video_pts = v.pts;
    let mut tracks: SmallVec<[VideoTrack; 2]> = SmallVec::new();
    for (order, (mid, active, rids)) in v.send.iter().enumerate() {
        let by_order = match order {
            0 => Some(VideoTrackKind::Camera),
            1 => Some(VideoTrackKind::Screen),
            _ => None,
        };
        let declared = peer
            .video
            .kinds
            .iter()
            .find(|(m, _)| m == mid)
            .map(|(_, k)| *k);
        let Some(kind) = declared.or(by_order) else {
            continue;
        };
        if !active || tracks.iter().any(|t| t.kind == kind) {
            continue;
        }
        let rid_list: Vec<Option<str0m::media::Rid>> = rids.iter().map(|r| Some(*r)).collect();
        let kept = peer.video.tracks.iter().position(|t| {
            t.mid == *mid && t.kind == kind && {
                let want: &[Option<str0m::media::Rid>] = if rid_list.is_empty() {
                    &[None]
                } else {
                    &rid_list
                };
                t.layers.len() == want.len() && t.layers.iter().all(|l| want.contains(&l.rid))
            }
        });
        match kept {
            Some(i) => tracks.push(peer.video.tracks.swap_remove(i)),
            None => tracks.push(VideoTrack::new(kind, *mid, rids)),
        }
    }
    peer.video.tracks = tracks;
    peer.video.ssrcs.clear();
    for mid in v.recv {
        if peer.watch.slots.len() >= max_slots {
            break;
        }
        if peer.watch.slots.iter().any(|s| s.down.mid == mid) {
            continue;
        }
        let mut api = peer.link.rtc.direct_api();
        let (ssrc, rtx) = match api.stream_tx_by_mid(mid, None) {
            Some(tx) => (tx.ssrc(), tx.rtx()),
            None => {
                let ssrc = api.new_ssrc();
                let rtx = api.new_ssrc();
                api.declare_stream_tx(ssrc, Some(rtx), mid, None);
                (ssrc, Some(rtx))
            }
        };
        peer.watch.slots.push(VideoSlot::new(DownTrack::new(
            mid,
            ssrc,
            rtx,
            video::VIDEO_CLOCK,
        )));
    }
}

/// Tells the subscriber's estimator what to sustain and where to probe: `sending` is what
/// the chosen layers send, `step_up` what one view held below its layer would add one layer
/// up, `wanting` what the views would take without a budget.
///
/// str0m grows its estimate only to ~1.5× what is acknowledged, and probes only when the
/// desired rate rises: a viewer held on the middle layer at 50–70 % of its estimate stayed
/// there for good (seen in the load tester: no 1080p viewer reached the large layer, whose
/// rate is above what a probe cluster measures). So while a view is held below its layer,
/// the minimum rate is set to what the next layer up would need: str0m pads up to it (capped
/// by the estimate), the link is no longer application-limited, and the estimate climbs
/// (~8 % a second, or at once with a probe) until the next layer fits; then the padding
/// stops. On a link that cannot carry it, delay and loss hold the estimate, and the padding
/// with it, where the link is.
fn tell_bwe(sub: &mut Peer, sending: u64, step_up: u64, wanting: u64) {
    use str0m::bwe::Bitrate;
    let minimum = sending + step_up;
    if bwe_retell(sub.watch.bwe_told, (minimum, wanting)) {
        sub.watch.bwe_told = (minimum, wanting);
        tracing::debug!(
            estimate = sub.watch.bwe,
            sending,
            step_up,
            wanting,
            "video rates told to a subscriber's bandwidth estimator"
        );
        // Headroom over the measured rates: layers' rates vary with the content.
        sub.link
            .rtc
            .bwe()
            .set_bitrate(Bitrate::bps(minimum), Bitrate::bps(wanting + wanting / 4));
    }
}

/// Whether the rates told to the estimator moved by more than an eighth (the
/// measured layer rates wobble; re-telling on every wobble is pointless).
fn bwe_retell(told: (u64, u64), now: (u64, u64)) -> bool {
    let moved = |a: u64, b: u64| a.abs_diff(b) > a.max(b) / 8;
    moved(told.0, now.0) || moved(told.1, now.1)
}
