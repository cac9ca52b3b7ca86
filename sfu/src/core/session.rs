//! Signaling commands: join (building the participant's `Rtc` and reading
//! the m-lines it negotiated), renegotiate, leave, the moderation and voice
//! state flags, shutdown; and removing a participant from its room.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use smallvec::SmallVec;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::rtp::{Extension, ExtensionMap};
use str0m::{Candidate, Rtc, RtcConfig};

use crate::fastpath::{self, FastPeer};
use crate::{JoinRequest, ParticipantId, SfuConfig, SfuError, SfuEvent, VideoTrackKind};

use super::peer::AudioSource;
use super::peer::{
    AudioPts, AudioPublish, Link, Listening, Peer, Room, VideoPublish, VideoWatching,
};
use super::video_routing::{apply_video, inspect_video};
use super::SfuCore;

/// The str0m configuration every participant's `Rtc` starts from.
pub(super) fn rtc_config(cfg: &SfuConfig, video: bool) -> RtcConfig {
    // Audio needs only the RFC 6464 level (speaking) and mid (BUNDLE demux):
    // no TWCC or abs-send-time, which would cost feedback traffic and CPU.
    // Peers that offer video also get rid/repaired-rid (simulcast), TWCC
    // (bandwidth estimation towards them) and abs-send-time.
    let mut exts = ExtensionMap::empty();
    exts.set(1, Extension::AudioLevel);
    exts.set(4, Extension::RtpMid);
    if video {
        exts.set(2, Extension::AbsoluteSendTime);
        exts.set(3, Extension::TransportSequenceNumber);
        exts.set(10, Extension::RtpStreamId);
        exts.set(11, Extension::RepairedRtpStreamId);
        exts.set(13, Extension::VideoOrientation);
    }
    // One DTLS certificate for every peer, like other SFUs: generating a key pair and a
    // certificate per join would cost the media thread on every join (clients pin the
    // fingerprint from the answer, so sharing it weakens nothing).
    let cert = str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate();
    let mut rc = RtcConfig::new();
    if cfg.fast_path {
        rc = rc.set_crypto_provider(fastpath::keys::provider());
    }
    if let Some(cert) = cert {
        rc = rc.set_dtls_cert(cert);
    }
    let mut rc = rc
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .clear_codecs()
        .set_extension_map(exts)
        .set_stats_interval(Some(cfg.stats_interval))
        .set_send_buffer_audio(cfg.audio_send_buffer.max(1));
    if video {
        // VP8, H.264 (the usual profiles), VP9 and AV1, each with RTX; str0m
        // adds NACK, PLI, FIR and transport-cc feedback for video.
        rc = rc
            .enable_vp8(true)
            .enable_h264(true)
            .enable_vp9(true)
            .enable_av1(true)
            .set_send_buffer_video(cfg.video_send_buffer.max(1));
        if cfg.video_bwe {
            rc = rc.enable_bwe(Some(str0m::bwe::Bitrate::kbps(
                cfg.video_initial_bitrate_kbps,
            )));
        }
    }
    if cfg.audio_rtx {
        // str0m resends only over RTX (RFC 4588), so answering NACKs for audio
        // needs an RTX payload type on Opus. str0m 0.25's public API cannot put
        // both RTX and RED on one codec, hence RTX excludes RED here.
        rc.codec_config().add_config(
            111.into(),
            Some(112.into()),
            Codec::Opus,
            str0m::media::Frequency::FORTY_EIGHT_KHZ,
            Some(2),
            str0m::format::FormatParams {
                min_p_time: Some(10),
                use_inband_fec: Some(true),
                ..Default::default()
            },
        );
        rc
    } else {
        // RED (`audio/red`, RFC 2198) is supported by str0m 0.25: it is folded
        // onto Opus and passed through untouched in RTP mode.
        rc.enable_opus(true, cfg.enable_red)
    }
}

/// The `a=mid:` values of an offer, in m-line order.
pub(super) fn offer_mids(sdp: &str) -> Vec<Mid> {
    sdp.lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("a=mid:"))
        .map(|m| Mid::from(m.trim()))
        .collect()
}

impl SfuCore {
    /// A participant joins (or rejoins: same id replaces the old peer without
    /// others seeing a leave). Returns the SDP answer.
    pub fn join(&mut self, now: Instant, req: JoinRequest) -> Result<String, SfuError> {
        self.advance(now);
        let offer = crate::sdp::check_offer(&req.offer_sdp, self.max_sdp_bytes, self.max_m_lines)?;
        let has_video = req.offer_sdp.lines().any(|l| l.starts_with("m=video "));
        let rc = if has_video {
            self.rtc_config_video.clone()
        } else {
            self.rtc_config.clone()
        };
        let (mut rtc, fast) = if self.fast_path {
            let (rtc, sink) = fastpath::keys::build_with_sink(rc, now);
            (rtc, sink.map(FastPeer::new))
        } else {
            (rc.build(now), None)
        };
        let ufrag = loop {
            let creds = rtc.direct_api().local_ice_credentials();
            if !self.by_ufrag.contains_key(&creds.ufrag) {
                break creds.ufrag;
            }
            rtc.direct_api()
                .set_local_ice_credentials(str0m::IceCreds::new());
        };
        let candidate = Candidate::host(self.local_addr, "udp")
            .map_err(|e| SfuError::InvalidConfig(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        if let Some(v6) = self.local6 {
            let candidate =
                Candidate::host(v6, "udp").map_err(|e| SfuError::InvalidConfig(e.to_string()))?;
            rtc.add_local_candidate(candidate);
        }
        if let Some(tcp) = self.tcp_addr {
            // Ranked below UDP by its type preference: used only where UDP does not get through.
            let candidate = Candidate::builder()
                .tcp()
                .host(tcp)
                .tcptype(str0m::net::TcpType::Passive)
                .build()
                .map_err(|e| SfuError::InvalidConfig(e.to_string()))?;
            rtc.add_local_candidate(candidate);
        }
        let answer = accept_offer(&mut rtc, offer)?;
        let answer = crate::sdp::tune_answer(&answer, self.video_start_bitrate_kbps, self.opus_dtx);
        let mids = offer_mids(&req.offer_sdp);
        let (publish_mid, slot_mids, pts) = inspect_medias(&rtc, &mids)?;
        let vmedias = inspect_video(&rtc, &mids);

        // It was heard here through the relay (it moved from another node).
        self.forget_remote_publisher(req.participant);
        // Rejoin: the old peer goes away quietly; room membership, the
        // moderator/deaf/mute flags, video permission and subscriptions carry over.
        let mut audio = AudioPublish::default();
        let mut listen = Listening::default();
        let mut video = VideoPublish::default();
        let mut watch = VideoWatching::default();
        if let Some(old) = self.peers.get(&req.participant) {
            audio.server_muted = old.audio.server_muted;
            audio.self_muted = old.audio.self_muted;
            audio.priority_speaker = old.audio.priority_speaker;
            listen.deaf = old.listen.deaf;
            video.allowed = old.video.allowed;
            video.camera_on = old.video.camera_on;
            video.screen_on = old.video.screen_on;
            video.kinds = old.video.kinds.clone();
            watch.subs = old.watch.subs.clone();
            if old.room != req.room {
                self.remove_peer(req.participant, None);
            } else {
                let mut old = self.peers.remove(&req.participant).expect("checked");
                self.unmap(&old);
                if let Some(f) = &mut old.fast {
                    f.release(&mut self.fast_lanes);
                }
                old.link.rtc.disconnect();
                if old.audio.speaking.reset() {
                    self.events.push_back(SfuEvent::Speaking {
                        room: old.room,
                        participant: old.participant,
                        user_id: old.user_id,
                        speaking: false,
                    });
                }
            }
        }

        let epoch = self.next_epoch;
        self.next_epoch += 1;
        audio.mid = publish_mid;
        let mut link = Link::new(rtc, epoch, ufrag.clone(), now, mids);
        link.audio_pts = pts;
        let mut peer = Peer {
            participant: req.participant,
            user_id: req.user_id,
            room: req.room,
            link,
            audio,
            listen,
            video,
            watch,
            fast,
        };
        peer.listen.add_slots(&mut peer.link.rtc, &slot_mids);
        apply_video(&mut peer, vmedias, self.max_video_slots);
        self.by_ufrag.insert(ufrag, req.participant);
        self.peers.insert(req.participant, peer);
        let room = self.rooms.entry(req.room).or_insert_with(|| Room {
            members: Vec::new(),
            selected: Vec::new(),
            dropped: None,
            remotes: Vec::new(),
        });
        if !room.members.contains(&req.participant) {
            room.members.push(req.participant);
        }
        // Sources that were on other subscribers' slots from this participant
        // now come with a new SSRC; DownTrack re-anchors on SSRC change.
        self.update_room_slots(req.room);
        self.drive(req.participant, now);
        self.process_scratch(now);
        self.update_gauges();
        Ok(answer)
    }

    /// The client offers again (more listening slots, ICE restart, …).
    pub fn renegotiate(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        offer_sdp: &str,
    ) -> Result<String, SfuError> {
        self.advance(now);
        let offer = crate::sdp::check_offer(offer_sdp, self.max_sdp_bytes, self.max_m_lines)?;
        let peer = self
            .peers
            .get_mut(&participant)
            .ok_or(SfuError::UnknownParticipant)?;
        if let Some(f) = &peer.fast {
            f.before_offer(&mut peer.link.rtc, peer.listen.downs());
        }
        let answer = match accept_offer(&mut peer.link.rtc, offer) {
            Ok(a) => a,
            Err(e) => {
                if let Some(f) = &mut peer.fast {
                    f.reclaim(&mut peer.link.rtc, peer.listen.downs_mut());
                }
                if !peer.link.rtc.is_alive() {
                    self.remove_peer(participant, Some("renegotiation failed".into()));
                }
                return Err(e);
            }
        };
        let answer = crate::sdp::tune_answer(&answer, self.video_start_bitrate_kbps, self.opus_dtx);
        let mids = offer_mids(offer_sdp);
        let (publish_mid, slot_mids, pts) = inspect_medias(&peer.link.rtc, &mids)?;
        if publish_mid != peer.audio.mid {
            peer.audio.in_ssrc = None;
        }
        peer.audio.mid = publish_mid;
        peer.link.audio_pts = pts;
        peer.listen.add_slots(&mut peer.link.rtc, &slot_mids);
        if let Some(f) = &mut peer.fast {
            f.reclaim(&mut peer.link.rtc, peer.listen.downs_mut());
        }
        let vmedias = inspect_video(&peer.link.rtc, &mids);
        apply_video(peer, vmedias, self.max_video_slots);
        peer.link.mids = mids;
        // If this offer still has too few slots, ask again.
        peer.listen.reneg_requested = peer.listen.slots.len();
        // An ICE restart may give us new local credentials: keep the ufrag map right.
        let ufrag = peer.link.rtc.direct_api().local_ice_credentials().ufrag;
        if ufrag != peer.link.ufrag {
            let old = std::mem::replace(&mut peer.link.ufrag, ufrag.clone());
            self.by_ufrag.remove(&old);
            self.by_ufrag.insert(ufrag, participant);
        }
        let room = peer.room;
        self.update_room_slots(room);
        self.drive(participant, now);
        self.process_scratch(now);
        self.update_gauges();
        Ok(answer)
    }

    /// The participant leaves (explicitly; no `Disconnected` event).
    pub fn leave(&mut self, now: Instant, participant: ParticipantId) {
        self.advance(now);
        self.remove_peer(participant, None);
    }

    /// Moderator mute: the SFU drops this participant's audio.
    pub fn set_server_mute(&mut self, participant: ParticipantId, muted: bool) {
        self.set_flag(participant, |p| &mut p.audio.server_muted, muted);
    }

    /// Self-mute (or self-deafen): the SFU drops this participant's audio as
    /// for a server mute, whatever the client sends; clears the speaking state.
    pub fn set_self_mute(&mut self, participant: ParticipantId, muted: bool) {
        self.set_flag(participant, |p| &mut p.audio.self_muted, muted);
    }

    /// PRIORITY_SPEAKER: preferred for the loudest-speaker slots.
    pub fn set_priority_speaker(&mut self, participant: ParticipantId, priority: bool) {
        let Some(p) = self.peers.get_mut(&participant) else {
            return;
        };
        if p.audio.priority_speaker != priority {
            p.audio.priority_speaker = priority;
            let room = p.room;
            self.reselect_speakers(room);
        }
    }

    /// Deafen: nothing is forwarded to this participant.
    pub fn set_deaf(&mut self, participant: ParticipantId, deaf: bool) {
        let Some(p) = self.peers.get_mut(&participant) else {
            return;
        };
        if p.listen.deaf != deaf {
            p.listen.deaf = deaf;
            // Resume with continuous numbering instead of a gap the client
            // would take for loss (and NACK).
            p.listen.resync_all();
        }
    }

    /// Whether this participant may publish video. A participant that may
    /// not has its video dropped on arrival (it is never forwarded); allowed
    /// again, its viewers restart on a fresh keyframe.
    pub fn set_video_allowed(&mut self, now: Instant, participant: ParticipantId, allowed: bool) {
        self.advance(now);
        let Some(p) = self.peers.get_mut(&participant) else {
            return;
        };
        if p.video.allowed == allowed {
            return;
        }
        p.video.allowed = allowed;
        if allowed {
            self.restart_viewers(participant, None);
        }
    }

    /// The client's camera / screen share switch (`self_video` / `self_stream`):
    /// a track switched off is dropped on arrival, so a client that keeps
    /// sending it is not seen and costs its viewers nothing.
    pub fn set_self_video(
        &mut self,
        now: Instant,
        participant: ParticipantId,
        camera: bool,
        screen: bool,
    ) {
        self.advance(now);
        let Some(p) = self.peers.get_mut(&participant) else {
            return;
        };
        let turned_on = [
            (camera && !p.video.camera_on).then_some(VideoTrackKind::Camera),
            (screen && !p.video.screen_on).then_some(VideoTrackKind::Screen),
        ];
        p.video.camera_on = camera;
        p.video.screen_on = screen;
        for kind in turned_on.into_iter().flatten() {
            self.restart_viewers(participant, Some(kind));
        }
    }

    /// Video of `participant` (one track kind, or all) may flow again after
    /// being dropped: viewers held the last frame; their slots are reset so
    /// the target layer is asked for (PLI) and forwarding starts on its keyframe.
    pub(super) fn restart_viewers(
        &mut self,
        participant: ParticipantId,
        kind: Option<VideoTrackKind>,
    ) {
        let Some(room) = self.peers.get(&participant).map(|p| p.room) else {
            return;
        };
        let members = self
            .rooms
            .get(&room)
            .map(|r| r.members.clone())
            .unwrap_or_default();
        for m in members {
            if let Some(sub) = self.peers.get_mut(&m) {
                for slot in sub.watch.slots.iter_mut().filter(|s| {
                    s.source
                        .is_some_and(|(src, k)| src == participant && kind.is_none_or(|x| x == k))
                }) {
                    slot.reset();
                }
            }
        }
        self.update_room_video(room);
    }

    pub(super) fn set_flag(
        &mut self,
        participant: ParticipantId,
        field: fn(&mut Peer) -> &mut bool,
        value: bool,
    ) {
        let Some(p) = self.peers.get_mut(&participant) else {
            return;
        };
        let f = field(p);
        if *f == value {
            return;
        }
        *f = value;
        let (room, user_id) = (p.room, p.user_id);
        if value && p.audio.speaking.reset() {
            p.audio.active_at = Some(self.last_now);
            self.events.push_back(SfuEvent::Speaking {
                room,
                participant,
                user_id,
                speaking: false,
            });
            self.reselect_speakers(room);
        }
        // Subscribers of this source resume without a sequence gap.
        if let Some(r) = self.rooms.get(&room) {
            for m in &r.members {
                if let Some(sub) = self.peers.get_mut(m) {
                    for s in sub
                        .listen
                        .slots
                        .iter_mut()
                        .filter(|s| s.source == Some(AudioSource::Voice(participant)))
                    {
                        s.down.resync();
                    }
                }
            }
        }
    }

    /// Closes every peer (DTLS close_notify is queued for sending).
    pub fn shutdown(&mut self, now: Instant) {
        self.advance(now);
        let ids: Vec<ParticipantId> = self.peers.keys().copied().collect();
        for id in ids {
            if let Some(p) = self.peers.get_mut(&id) {
                let _ = p.link.rtc.close();
            }
            self.drive(id, now);
            self.scratch.clear();
            self.remove_peer(id, None);
        }
    }

    pub(super) fn unmap(&mut self, peer: &Peer) {
        for a in &peer.link.addrs {
            if self.by_addr.get(a) == Some(&peer.participant) {
                self.by_addr.remove(a);
            }
        }
        if self.by_ufrag.get(&peer.link.ufrag) == Some(&peer.participant) {
            self.by_ufrag.remove(&peer.link.ufrag);
        }
    }

    /// Removes a participant; `reason` = Some → emits `Disconnected`.
    pub(super) fn remove_peer(&mut self, participant: ParticipantId, reason: Option<String>) {
        let Some(mut peer) = self.peers.remove(&participant) else {
            return;
        };
        self.unmap(&peer);
        if let Some(f) = &mut peer.fast {
            f.release(&mut self.fast_lanes);
        }
        peer.link.rtc.disconnect();
        if peer.audio.speaking.reset() {
            self.events.push_back(SfuEvent::Speaking {
                room: peer.room,
                participant,
                user_id: peer.user_id,
                speaking: false,
            });
        }
        if let Some(reason) = reason {
            tracing::info!(participant = participant.get(), %reason, "participant disconnected");
            self.events.push_back(SfuEvent::Disconnected {
                participant,
                reason,
            });
        }
        let room_id = peer.room;
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.members.retain(|m| *m != participant);
            if room.members.is_empty() {
                self.rooms.remove(&room_id);
                self.forget_room_remotes(room_id);
            } else {
                self.update_room_slots(room_id);
            }
        }
        self.update_gauges();
    }
}

/// Applies an offer, never letting a str0m panic on hostile input escape.
pub(super) fn accept_offer(
    rtc: &mut Rtc,
    offer: str0m::change::SdpOffer,
) -> Result<String, SfuError> {
    let result = catch_unwind(AssertUnwindSafe(|| rtc.sdp_api().accept_offer(offer)));
    match result {
        Ok(Ok(answer)) => Ok(answer.to_sdp_string()),
        Ok(Err(e)) => Err(SfuError::InvalidSdp(format!("offer rejected: {e}"))),
        Err(_) => {
            rtc.disconnect();
            Err(SfuError::InvalidSdp(
                "offer rejected (internal error)".into(),
            ))
        }
    }
}

/// Finds the publish m-line (the client's first sending audio transceiver),
/// the listening slots (audio m-lines the client only receives on, in order)
/// and the negotiated payload types.
pub(super) fn inspect_medias(
    rtc: &Rtc,
    mids: &[Mid],
) -> Result<(Option<Mid>, Vec<Mid>, AudioPts), SfuError> {
    let mut publish = None;
    let mut slots = Vec::new();
    let mut remote_pts: SmallVec<[Pt; 8]> = SmallVec::new();
    for &mid in mids {
        let Some(media) = rtc.media(mid) else {
            continue;
        };
        if media.kind() != MediaKind::Audio || media.disabled() {
            continue;
        }
        remote_pts.extend(media.remote_pts().iter().copied());
        match media.direction() {
            Direction::RecvOnly | Direction::SendRecv if publish.is_none() => publish = Some(mid),
            Direction::SendOnly => slots.push(mid),
            _ => {}
        }
    }
    let opus = rtc
        .codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == Codec::Opus && remote_pts.contains(&p.pt()));
    let Some(opus) = opus else {
        return Err(SfuError::InvalidSdp(
            "no audio m-line with Opus was accepted".into(),
        ));
    };
    // str0m folds RED onto the Opus params; after negotiation `red()` is set
    // only if the client offered RED too (and it is not in `remote_pts`).
    let pts = AudioPts {
        opus: Some(opus.pt()),
        red: opus.red(),
    };
    Ok((publish, slots, pts))
}
