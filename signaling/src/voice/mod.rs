//! Voice: gateway voice ops ↔ the SFU. This module decides who may be in which voice channel,
//! keeps the live voice states, relays SDP to the SFU and the SFU's events (slots, speaking,
//! renegotiation, video slots and layers) to clients, and records voice sessions in the database.

pub mod audience;
pub mod e2ee;
pub mod moderation;
pub mod registry;
pub mod remote;
pub mod stage;
pub mod video;

use crate::bus::{BusEvent, Dispatcher};
use crate::gateway::events::Event;
use crate::gateway::hub::{Session, Target};
use crate::gateway::protocol::VoiceStateReq;
use crate::media::{Flags, MediaEvent, MediaPlane};
use crate::viewers::ViewerCache;
use confab_chat::{ChannelId, Chat, ChatError, ServerId, Snowflake, UserId};
use confab_sfu::{JoinRequest as SfuJoin, ParticipantId, RoomId, SfuError, SfuEvent, UserTag};
use parking_lot::Mutex;
use registry::{JoinOutcome, JoinRequest, Participant, Registry, VoicePerms};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    #[error("invalid SDP: {0}")]
    InvalidSdp(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("not in a voice channel")]
    NotJoined,
    #[error("media server unavailable")]
    Unavailable,
    /// The client's end-to-end encryption does not match the channel's (docs/e2ee.md).
    #[error("{0}")]
    E2eeMismatch(String),
}

impl VoiceError {
    pub fn code(&self) -> u32 {
        match self {
            VoiceError::InvalidSdp(_) | VoiceError::BadRequest(_) => 4400,
            VoiceError::Forbidden(_) => 4403,
            VoiceError::NotJoined => 4404,
            VoiceError::Unavailable => 4500,
            VoiceError::E2eeMismatch(_) => e2ee::E2EE_MISMATCH,
        }
    }
}

impl From<ChatError> for VoiceError {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::Internal(e) => {
                tracing::error!(error = ?e, "voice: internal error");
                VoiceError::Unavailable
            }
            ChatError::Unavailable => VoiceError::Unavailable,
            ChatError::NotFound(_) => VoiceError::Forbidden("unknown voice channel".into()),
            ChatError::Validation(_) => VoiceError::Forbidden("not a voice channel".into()),
            other => VoiceError::Forbidden(other.to_string()),
        }
    }
}

pub struct VoiceService {
    /// This process's SFU, or the cluster's media nodes.
    media: MediaPlane,
    chat: Chat,
    dispatcher: Dispatcher,
    viewers: Arc<ViewerCache>,
    registry: Mutex<Registry>,
    /// The recipients of each voice channel's events (see `audience`).
    audiences: Mutex<audience::Audiences>,
    /// Most tiles one client may list in VIDEO_SUBSCRIBE (`--max-video-tiles`).
    max_video_tiles: usize,
    /// This node's name, and whether there are other nodes to share voice states with.
    node: String,
    clustered: bool,
    /// Voice states of other nodes' participants.
    remote: Mutex<remote::RemoteVoice>,
}

// The SFU has ids of its own over the same numbers: a voice session is its `ParticipantId`, a
// voice channel its `RoomId`, a user its `UserTag`. Chat ids and SFU ids cross only here.

fn sfu_participant(voice_session: Snowflake) -> ParticipantId {
    ParticipantId::new(voice_session.0 as u64)
}

fn sfu_room(channel_id: ChannelId) -> RoomId {
    RoomId::new(channel_id.get() as u64)
}

fn sfu_user(user_id: UserId) -> UserTag {
    UserTag::new(user_id.get() as u64)
}

/// The voice session id of an SFU participant.
fn voice_session_of(participant: ParticipantId) -> Snowflake {
    Snowflake(participant.get() as i64)
}

/// The user behind an SFU user tag.
fn user_of(tag: UserTag) -> UserId {
    UserId::new(Snowflake(tag.get() as i64))
}

impl VoiceService {
    pub fn new(
        media: MediaPlane,
        chat: Chat,
        dispatcher: Dispatcher,
        viewers: Arc<ViewerCache>,
        max_video_tiles: usize,
        node: Option<String>,
    ) -> Self {
        Self {
            media,
            chat,
            dispatcher,
            viewers,
            registry: Mutex::new(Registry::default()),
            audiences: Mutex::new(audience::Audiences::default()),
            max_video_tiles,
            clustered: node.is_some(),
            node: node.unwrap_or_default(),
            remote: Mutex::new(remote::RemoteVoice::default()),
        }
    }

    pub fn media(&self) -> &MediaPlane {
        &self.media
    }

    pub fn is_running(&self) -> bool {
        self.media.is_running()
    }

    /// op 4: join, move, update mute/deafen, or leave (channel_id null).
    pub async fn state_update(
        &self,
        session: &Arc<Session>,
        req: VoiceStateReq,
    ) -> Result<(), VoiceError> {
        let user_id = session.user_id;
        let Some(channel_id) = req.channel_id else {
            let gone = self.registry.lock().remove_user(user_id);
            if let Some(p) = gone {
                self.teardown(&p, "left");
            }
            return Ok(());
        };
        let access = self.chat.voice_access(channel_id, user_id).await?;
        let server_id = access.server_id;
        // Without SPEAK (role, overwrite or timeout) the SFU drops the participant's audio;
        // camera and screen share need VIDEO, without it the SFU also drops any video sent.
        let perms = VoicePerms::from_bits(access.permissions);
        if (req.self_video || req.self_stream) && !perms.video {
            return Err(VoiceError::Forbidden(
                "missing the VIDEO permission in this channel".into(),
            ));
        }
        if req.server_id.is_some_and(|s| s != server_id) {
            return Err(VoiceError::Forbidden(
                "channel is not in that server".into(),
            ));
        }
        // Encrypted and plain senders never share a channel.
        let identity_key = e2ee::check_join(access.e2ee, req.e2ee.as_ref())?;
        let member = self.chat.member(server_id, user_id).await?;
        // Before the participant exists: its first event already has the channel's viewers.
        self.refresh_audience(server_id, channel_id).await;
        let voice_session_id = req.voice_session_id.as_deref().and_then(|s| s.parse().ok());
        let new_id = self.chat.next_id();
        let outcome = self.registry.lock().join(JoinRequest {
            new_id,
            user_id,
            server_id,
            channel_id,
            gateway_session: &session.id,
            self_mute: req.self_mute,
            self_deaf: req.self_deaf,
            mute: member.mute,
            deaf: member.deaf,
            self_video: req.self_video,
            self_stream: req.self_stream,
            perms,
            stage: access.stage,
            voice_session_id,
            identity_key,
        });
        let current = self.registry.lock().by_user(user_id).cloned();
        let Some(p) = current else { return Ok(()) };
        match outcome {
            JoinOutcome::Joined { previous } => {
                if let Some(prev) = previous {
                    self.media.leave(sfu_participant(prev.id));
                    self.speaking_ended(&prev);
                    // Whoever saw the old channel but not the new one sees the member leave
                    // (the new state names a channel they may not know).
                    if prev.server_id != p.server_id
                        || !self.same_audience(prev.channel_id, p.channel_id)
                    {
                        self.tell_left(&prev);
                    }
                    self.record_end(prev.id, "moved");
                }
                metrics::counter!("confab_voice_joins_total").increment(1);
                let chat = self.chat.clone();
                tokio::spawn(async move {
                    if let Err(e) = chat
                        .voice_session_started(p.id, p.user_id, p.server_id, p.channel_id)
                        .await
                    {
                        tracing::warn!(error = %e, "recording voice session");
                    }
                });
                self.tell_state(&p);
            }
            JoinOutcome::Rejoined => {
                metrics::counter!("confab_voice_rejoins_total").increment(1);
                self.apply_flags(&p);
                // Nothing changed for the others; the rejoining client gets its state back as
                // the answer to its op 4.
                self.dispatcher.emit(
                    Target::Session(p.gateway_session.clone()),
                    Event::VoiceStateUpdate,
                    &p.state(),
                );
            }
            JoinOutcome::Updated { changed } => {
                // Always applied: the permissions were read again.
                self.apply_flags(&p);
                if changed {
                    self.tell_state(&p);
                }
            }
        }
        Ok(())
    }

    fn flags(p: &Participant) -> Flags {
        Flags {
            // The SFU's server mute drops audio whatever the reason: a moderator's mute, no
            // SPEAK, or the audience of a stage (the voice state tells `mute` and `suppress`
            // apart).
            server_mute: p.audio_blocked(),
            // Self-mute and self-deafen are enforced too: a client that keeps sending while it
            // shows as muted is not heard, and a camera or screen share switched off is not
            // forwarded.
            self_mute: p.self_mute || p.self_deaf,
            deaf: p.effective_deaf(),
            video_allowed: p.video_allowed(),
            camera: p.self_video,
            screen: p.self_stream,
            priority_speaker: p.perms.priority_speaker,
        }
    }

    fn apply_flags(&self, p: &Participant) {
        self.media.set_flags(sfu_participant(p.id), Self::flags(p));
    }

    /// op 12: the client's offer → the SFU's answer. `video_tracks` optionally says which
    /// sending video mid is the camera and which the screen.
    pub async fn offer(
        &self,
        session: &Arc<Session>,
        sdp: String,
        video_tracks: Option<serde_json::Value>,
    ) -> Result<(String, String), VoiceError> {
        let video_kinds =
            video::parse_video_tracks(video_tracks).map_err(VoiceError::BadRequest)?;
        let p = self
            .registry
            .lock()
            .by_user(session.user_id)
            .filter(|p| p.gateway_session == session.id)
            .cloned()
            .ok_or(VoiceError::NotJoined)?;
        let start = Instant::now();
        let id = sfu_participant(p.id);
        let join = || SfuJoin {
            room: sfu_room(p.channel_id),
            participant: id,
            user_id: sfu_user(p.user_id),
            offer_sdp: sdp.clone(),
        };
        let flags = Self::flags(&p);
        let result = if p.needs_join {
            self.media.join(join(), flags).await
        } else {
            match self.media.renegotiate(id, sdp.clone()).await {
                // The SFU dropped the peer (ICE timeout) but the client kept the session.
                Err(SfuError::UnknownParticipant) => self.media.join(join(), flags).await,
                other => other,
            }
        };
        let answer = result.map_err(|e| match e {
            SfuError::InvalidSdp(m) => VoiceError::InvalidSdp(m),
            SfuError::UnknownParticipant => VoiceError::NotJoined,
            other => {
                tracing::warn!(error = %other, "SFU refused an offer");
                VoiceError::Unavailable
            }
        });
        metrics::histogram!("confab_voice_offer_seconds").record(start.elapsed().as_secs_f64());
        let answer = answer?;
        let still_here = {
            let mut reg = self.registry.lock();
            match reg.by_id_mut(p.id) {
                Some(cur) => {
                    cur.needs_join = false;
                    Some(cur.clone())
                }
                None => None,
            }
        };
        match still_here {
            Some(cur) => {
                self.apply_flags(&cur);
                if let Some(declared) = video_kinds {
                    self.media.set_video_track_kinds(id, declared.video);
                    self.media.set_stream_audio_mid(id, declared.screen_audio);
                }
                // Tiles listed before this (re)join reach the new SFU peer.
                if !cur.video_subs.is_empty() {
                    self.media
                        .set_video_subscriptions(id, cur.video_subs.clone());
                }
            }
            None => {
                // Left while the SFU was answering.
                self.media.leave(id);
                return Err(VoiceError::NotJoined);
            }
        }
        Ok((answer, p.id.to_string()))
    }

    /// op 15: the complete list of video tiles the client shows, with their sizes.
    pub fn video_subscribe(
        &self,
        session: &Arc<Session>,
        d: serde_json::Value,
    ) -> Result<(), VoiceError> {
        let id = {
            let reg = self.registry.lock();
            reg.by_user(session.user_id)
                .filter(|p| p.gateway_session == session.id)
                .map(|p| p.id)
                .ok_or(VoiceError::NotJoined)?
        };
        let subs = video::parse_tiles(d, self.max_video_tiles).map_err(VoiceError::BadRequest)?;
        let needs_join = {
            let mut reg = self.registry.lock();
            let Some(p) = reg.by_id_mut(id) else {
                return Err(VoiceError::NotJoined);
            };
            p.video_subs = subs.clone();
            p.needs_join
        };
        // Before the first answer there is no SFU peer yet; the offer hands the list over.
        if !needs_join {
            self.media
                .set_video_subscriptions(sfu_participant(id), subs);
        }
        Ok(())
    }

    /// A voice session that was speaking ended (left, or moved to another channel): the SFU's
    /// own "stopped speaking" for it can no longer be matched to a participant (it is gone from
    /// the registry), so it is said here.
    fn speaking_ended(&self, p: &Participant) {
        if p.speaking {
            self.dispatcher.emit(
                self.audience(p),
                Event::VoiceSpeaking,
                &serde_json::json!({"server_id": p.server_id, "channel_id": p.channel_id, "user_id": p.user_id, "speaking": false}),
            );
        }
    }

    /// Tells the channel's audience a participant's new state, and the other nodes too.
    fn tell_state(&self, p: &Participant) {
        let state = p.state();
        self.dispatcher
            .emit(self.audience(p), Event::VoiceStateUpdate, &state);
        self.replicate(state);
    }

    /// Tells the channel's audience, and the other nodes, that a participant left.
    fn tell_left(&self, p: &Participant) {
        let state = p.left_state();
        self.dispatcher
            .emit(self.audience(p), Event::VoiceStateUpdate, &state);
        self.replicate(state);
    }

    /// Tells the audience that a participant started or stopped speaking.
    fn tell_speaking(&self, p: &Participant) {
        self.dispatcher.emit(
            self.audience(p),
            Event::VoiceSpeaking,
            &serde_json::json!({"server_id": p.server_id, "channel_id": p.channel_id, "user_id": p.user_id, "speaking": p.speaking}),
        );
        self.replicate(p.state());
    }

    /// One state change for the other nodes' copies (`remote`); nothing in one process.
    fn replicate(&self, state: registry::VoiceState) {
        if self.clustered {
            self.dispatcher.tell_others(&BusEvent::VoiceStates {
                node: self.node.clone(),
                states: vec![state],
                full: false,
            });
        }
    }

    /// Another node's voice states (`BusEvent::VoiceStates`).
    /// A user in voice there with a newer voice session than the one this node serves has
    /// moved on (its gateway moved to that node, or another device joined): the session here
    /// ends quietly, as a new join ends the previous one on one node, and clients keep the
    /// newer state.
    pub fn remote_states(&self, node: &str, states: Vec<registry::VoiceState>, full: bool) {
        let superseded: Vec<Participant> = {
            let mut reg = self.registry.lock();
            let moved: Vec<UserId> = states
                .iter()
                .filter(|s| s.channel_id.is_some())
                // Voice session ids are snowflakes: the newer session wins, whichever state
                // arrives last.
                .filter(|s| {
                    reg.by_user(s.user_id)
                        .is_some_and(|p| p.id.0 < s.voice_session_id.0)
                })
                .map(|s| s.user_id)
                .collect();
            moved
                .into_iter()
                .filter_map(|u| reg.remove_user(u))
                .collect()
        };
        self.remote.lock().apply(node, states, full, Instant::now());
        for p in superseded {
            self.media.leave(sfu_participant(p.id));
            // Only the other nodes' copies learn it: the newer state stands for clients.
            self.replicate(p.left_state());
            metrics::counter!("confab_voice_leaves_total", "reason" => "moved").increment(1);
            self.record_end(p.id, "moved");
        }
    }

    /// Every `remote::REFRESH`: repeats this node's voice states to the others, and forgets
    /// the nodes that stopped repeating theirs, showing their participants as gone to this
    /// node's sessions.
    pub async fn refresh_remote(&self) {
        let states = self.registry.lock().all_states();
        self.dispatcher.tell_others(&BusEvent::VoiceStates {
            node: self.node.clone(),
            states,
            full: true,
        });
        let gone = self.remote.lock().expire(Instant::now());
        for state in gone {
            // Back in voice since, through this node or another (a client whose node died
            // reconnects elsewhere and rejoins): it has not left.
            if self.state_of(state.user_id).is_some() {
                continue;
            }
            let (Some(channel_id), server_id) = (state.channel_id, state.server_id) else {
                continue;
            };
            let target = self
                .viewers
                .target(&self.chat, Some(server_id), channel_id, None)
                .await;
            let left = registry::VoiceState {
                channel_id: None,
                speaking: false,
                ..state
            };
            self.dispatcher
                .deliver_here(&target, Event::VoiceStateUpdate, &left);
        }
    }

    /// Removes a participant everywhere and tells everyone.
    fn teardown(&self, p: &Participant, reason: &'static str) {
        self.media.leave(sfu_participant(p.id));
        self.speaking_ended(p);
        self.tell_left(p);
        metrics::counter!("confab_voice_leaves_total", "reason" => reason).increment(1);
        self.record_end(p.id, reason);
    }

    fn record_end(&self, id: Snowflake, reason: &'static str) {
        let chat = self.chat.clone();
        tokio::spawn(async move {
            if let Err(e) = chat.voice_session_ended(id, reason).await {
                tracing::warn!(error = %e, "recording voice session end");
            }
        });
    }

    /// The gateway session came back with RESUME: its participant stays.
    pub fn session_resumed(&self, session: &Arc<Session>) {
        self.registry.lock().session_resumed(&session.id);
    }

    /// The gateway session ended for good (normal close, logout, expiry): leave now.
    pub async fn session_closed(&self, session_id: &str) {
        let gone = self
            .registry
            .lock()
            .remove_where(|p| &*p.gateway_session == session_id);
        for p in gone {
            self.teardown(&p, "gateway_closed");
        }
    }

    /// The gateway connection dropped: the participant has REJOIN_WINDOW to come back.
    pub fn session_dropped(&self, session_id: &str) {
        self.registry
            .lock()
            .session_dropped(session_id, Instant::now());
    }

    pub async fn server_deleted(&self, server_id: ServerId) {
        let gone = self
            .registry
            .lock()
            .remove_where(|p| p.server_id == server_id);
        for p in gone {
            self.media.leave(sfu_participant(p.id));
            self.record_end(p.id, "server_deleted");
        }
        self.forget_server_audiences(server_id);
    }

    pub async fn member_left(&self, server_id: ServerId, user_id: UserId) {
        let gone = self
            .registry
            .lock()
            .remove_where(|p| p.server_id == server_id && p.user_id == user_id);
        for p in gone {
            self.teardown(&p, "left_server");
        }
        // The member may have been among a private channel's viewers.
        self.refresh_server_audiences(server_id).await;
    }

    pub async fn channel_deleted(&self, channel_id: ChannelId) {
        let gone = self
            .registry
            .lock()
            .remove_where(|p| p.channel_id == channel_id);
        for p in gone {
            self.teardown(&p, "channel_deleted");
        }
    }

    /// A moderator changed a member's server mute/deafen.
    pub fn moderate(&self, server_id: ServerId, user_id: UserId, mute: bool, deaf: bool) {
        let updated = {
            let mut reg = self.registry.lock();
            match reg.by_user_mut(user_id) {
                Some(p) if p.server_id == server_id && (p.mute != mute || p.deaf != deaf) => {
                    p.mute = mute;
                    p.deaf = deaf;
                    Some(p.clone())
                }
                _ => None,
            }
        };
        if let Some(p) = updated {
            self.apply_flags(&p);
            self.tell_state(&p);
        }
    }

    /// Everyone in voice in these servers, on this node and on the others.
    pub fn states_for(&self, servers: &[ServerId]) -> Vec<registry::VoiceState> {
        let mut states = self.registry.lock().states_for(servers);
        if self.clustered {
            let mine: std::collections::HashSet<UserId> =
                states.iter().map(|s| s.user_id).collect();
            states.extend(
                self.remote
                    .lock()
                    .states_for(servers)
                    .into_iter()
                    .filter(|s| !mine.contains(&s.user_id)),
            );
        }
        states
    }

    /// The user's voice state, on this node or another.
    pub fn state_of(&self, user_id: UserId) -> Option<registry::VoiceState> {
        let local = self
            .registry
            .lock()
            .by_user(user_id)
            .map(Participant::state);
        local.or_else(|| self.remote.lock().of_user(user_id))
    }

    /// Relays the SFU's events to clients, and ends participants whose rejoin window passed.
    /// Runs until shutdown.
    pub fn spawn_event_pump(
        self: Arc<Self>,
        shutdown: tokio_util::sync::CancellationToken,
        mut events: tokio::sync::mpsc::UnboundedReceiver<MediaEvent>,
    ) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        self.media.shutdown();
                        return;
                    }
                    _ = tick.tick() => {
                        let gone = self.registry.lock().expire(Instant::now());
                        for p in gone {
                            self.teardown(&p, "timeout");
                        }
                    }
                    ev = events.recv() => match ev {
                        Some(MediaEvent::Sfu(ev)) => self.handle_event(ev),
                        Some(MediaEvent::Reconnect(participant)) => self.reconnect(participant),
                        None => return,
                    }
                }
            }
        });
    }

    /// The participant's media node is gone: the client offers again (VOICE_RECONNECT) and
    /// is placed on a live node; until then it keeps its voice state.
    fn reconnect(&self, participant: ParticipantId) {
        let p = {
            let mut reg = self.registry.lock();
            reg.by_id_mut(voice_session_of(participant)).map(|p| {
                p.needs_join = true;
                let before = p.clone();
                p.speaking = false;
                before
            })
        };
        if let Some(p) = p {
            metrics::counter!("confab_voice_reconnects_total").increment(1);
            self.speaking_ended(&p);
            self.dispatcher.emit(
                Target::Session(p.gateway_session.clone()),
                Event::VoiceReconnect,
                &serde_json::json!({"channel_id": p.channel_id, "voice_session_id": p.id}),
            );
        }
    }

    fn handle_event(&self, ev: SfuEvent) {
        let lookup = |participant: ParticipantId| {
            self.registry
                .lock()
                .by_id(voice_session_of(participant))
                .cloned()
        };
        match ev {
            SfuEvent::Connected { participant } => {
                tracing::debug!(participant = participant.get(), "voice media connected");
            }
            SfuEvent::Disconnected {
                participant,
                reason,
            } => {
                // Media is gone; the client may rejoin with its voice session id.
                tracing::info!(participant = participant.get(), %reason, "voice media disconnected");
                let mut reg = self.registry.lock();
                if let Some(p) = reg.by_id_mut(voice_session_of(participant)) {
                    p.needs_join = true;
                    p.dropped_at.get_or_insert_with(Instant::now);
                }
            }
            SfuEvent::Speaking {
                participant,
                speaking,
                ..
            } => {
                // Kept in the registry for the voice states of READY, SERVER_CREATE and later
                // VOICE_STATE_UPDATEs: someone joining while another talks sees it at once.
                let p = {
                    let mut reg = self.registry.lock();
                    reg.by_id_mut(voice_session_of(participant)).map(|p| {
                        p.speaking = speaking;
                        p.clone()
                    })
                };
                if let Some(p) = p {
                    self.tell_speaking(&p);
                }
            }
            SfuEvent::Slots { participant, slots } => {
                if let Some(p) = lookup(participant) {
                    let slots: Vec<serde_json::Value> = slots
                        .iter()
                        .map(|s| serde_json::json!({"mid": s.mid, "user_id": s.user_id.map(user_of), "stream": s.stream}))
                        .collect();
                    self.dispatcher.emit(
                        Target::Session(p.gateway_session.clone()),
                        Event::VoiceSlots,
                        &serde_json::json!({"slots": slots}),
                    );
                }
            }
            SfuEvent::VideoSlots { participant, slots } => {
                if let Some(p) = lookup(participant) {
                    let slots: Vec<serde_json::Value> = slots
                        .iter()
                        .map(|s| {
                            serde_json::json!({
                                "mid": s.mid,
                                "user_id": s.user_id.map(user_of),
                                "track": s.track.map(|t| t.as_str()),
                            })
                        })
                        .collect();
                    self.dispatcher.emit(
                        Target::Session(p.gateway_session.clone()),
                        Event::VoiceVideoSlots,
                        &serde_json::json!({"channel_id": p.channel_id, "slots": slots}),
                    );
                }
            }
            SfuEvent::PauseLayers {
                participant,
                track,
                active_rids,
            } => {
                if let Some(p) = lookup(participant) {
                    self.dispatcher.emit(
                        Target::Session(p.gateway_session.clone()),
                        Event::VoiceVideoLayers,
                        &serde_json::json!({
                            "channel_id": p.channel_id,
                            "track": track.as_str(),
                            "active_rids": active_rids,
                        }),
                    );
                }
            }
            SfuEvent::StreamViewers {
                participant,
                viewers,
                ..
            } => {
                let p = {
                    let mut reg = self.registry.lock();
                    reg.by_id_mut(voice_session_of(participant)).map(|p| {
                        p.stream_viewers = viewers;
                        p.clone()
                    })
                };
                if let Some(p) = p {
                    self.dispatcher.emit(
                        self.audience(&p),
                        Event::VoiceStreamViewers,
                        &serde_json::json!({
                            "server_id": p.server_id,
                            "channel_id": p.channel_id,
                            "user_id": p.user_id,
                            "viewers": viewers,
                        }),
                    );
                    self.replicate(p.state());
                }
            }
            SfuEvent::RenegotiationNeeded {
                participant,
                audio_slots,
            } => {
                if let Some(p) = lookup(participant) {
                    self.dispatcher.emit(
                        Target::Session(p.gateway_session.clone()),
                        Event::VoiceRenegotiate,
                        &serde_json::json!({"audio_slots": audio_slots}),
                    );
                }
            }
        }
        let n = self.registry.lock().len();
        metrics::gauge!("confab_voice_participants").set(n as f64);
    }
}
