//! Who is in which voice channel on this node: pure state, no I/O, so its rules are tested
//! directly. One voice channel per user; a participant survives a dropped connection for
//! `REJOIN_WINDOW` so a client can come back without others seeing it leave.

use chrono::{DateTime, Utc};
use confab_chat::permissions::{self, Permissions};
use confab_chat::{ChannelId, ServerId, Snowflake, UserId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a participant whose connection dropped may rejoin or RESUME before it leaves.
pub const REJOIN_WINDOW: Duration = Duration::from_secs(15);

/// The voice permissions of a participant in its channel, read from the database on join
/// and again whenever roles, overwrites, membership or timeouts change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoicePerms {
    /// SPEAK: without it the SFU drops the participant's audio and its state shows `suppress`.
    pub speak: bool,
    /// VIDEO: camera and screen share; without it the SFU drops its video.
    pub video: bool,
    /// PRIORITY_SPEAKER: preferred for listeners' slots.
    pub priority_speaker: bool,
}

impl VoicePerms {
    pub fn from_bits(p: Permissions) -> Self {
        Self {
            speak: permissions::has(p, permissions::SPEAK),
            video: permissions::has(p, permissions::VIDEO),
            priority_speaker: permissions::has(p, permissions::PRIORITY_SPEAKER),
        }
    }

    /// Everything allowed (tests).
    pub fn all() -> Self {
        Self::from_bits(permissions::ALL)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Participant {
    /// The SFU participant id and voice session id (a snowflake).
    pub id: Snowflake,
    pub user_id: UserId,
    pub server_id: ServerId,
    pub channel_id: ChannelId,
    /// The gateway session that controls it (offers, slot events).
    pub gateway_session: Arc<str>,
    pub self_mute: bool,
    pub self_deaf: bool,
    /// Moderator mute/deafen.
    pub mute: bool,
    pub deaf: bool,
    /// Camera on / screen share on (as the client says).
    pub self_video: bool,
    pub self_stream: bool,
    /// What it may do in its channel (SPEAK, VIDEO, PRIORITY_SPEAKER).
    pub perms: VoicePerms,
    /// The channel is a stage: only speakers (`on_stage`) send audio and video.
    pub stage: bool,
    /// On a stage: a speaker rather than the audience. Everyone joins as audience.
    pub on_stage: bool,
    /// On a stage: when the participant raised its hand (asked to speak).
    pub request_to_speak: Option<DateTime<Utc>>,
    /// The tiles the client shows (op 15), kept to hand to the SFU again after a (re)join.
    pub video_subs: Vec<confab_sfu::VideoSubscription>,
    /// The next offer must be a fresh SFU join (new participant or rejoin after a blip).
    pub needs_join: bool,
    /// When its gateway connection or media connection dropped.
    pub dropped_at: Option<Instant>,
    /// Speaking now (the SFU's last `Speaking` event), so that the state someone gets on
    /// connecting or joining shows who already talks.
    pub speaking: bool,
    /// Go Live: how many watch its screen share (the SFU's last `StreamViewers` event).
    pub stream_viewers: usize,
    /// An end-to-end encrypted channel: the identity public key the client declared (base64
    /// SPKI, P-256), carried to the others so they can wrap their media keys to it.
    pub identity_key: Option<Arc<str>>,
}

/// A voice state as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VoiceState {
    pub server_id: ServerId,
    pub channel_id: Option<ChannelId>,
    pub user_id: UserId,
    pub voice_session_id: Snowflake,
    pub self_mute: bool,
    pub self_deaf: bool,
    pub mute: bool,
    pub deaf: bool,
    pub self_video: bool,
    pub self_stream: bool,
    /// May not speak: the stage audience, or no SPEAK permission in the channel.
    pub suppress: bool,
    /// On a stage: when the participant asked to speak (null when it did not, or was answered).
    pub request_to_speak_timestamp: Option<DateTime<Utc>>,
    /// Speaking at the time this state was sent; `VOICE_SPEAKING` dispatches follow changes.
    pub speaking: bool,
    /// Go Live: how many watch its screen share now (0 when not sharing);
    /// `VOICE_STREAM_VIEWERS` dispatches follow changes.
    #[serde(default)]
    pub stream_viewers: usize,
    /// In an end-to-end encrypted channel: `{"identity_key"}` (absent elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2ee: Option<E2eeState>,
}

/// The e2ee part of a voice state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct E2eeState {
    /// Base64 SPKI of the participant's P-256 identity public key.
    pub identity_key: Arc<str>,
}

impl Participant {
    /// The audience of a stage, or without SPEAK: the SFU drops its audio.
    pub fn suppressed(&self) -> bool {
        !self.perms.speak || self.in_audience()
    }

    /// On a stage and not a speaker.
    pub fn in_audience(&self) -> bool {
        self.stage && !self.on_stage
    }

    /// The SFU forwards its audio only when neither a moderator nor its permissions stop it.
    pub fn audio_blocked(&self) -> bool {
        self.mute || self.suppressed()
    }

    /// The SFU forwards its video only with VIDEO, and on a stage only from speakers.
    pub fn video_allowed(&self) -> bool {
        self.perms.video && !self.in_audience()
    }

    pub fn state(&self) -> VoiceState {
        VoiceState {
            server_id: self.server_id,
            channel_id: Some(self.channel_id),
            user_id: self.user_id,
            voice_session_id: self.id,
            self_mute: self.self_mute,
            self_deaf: self.self_deaf,
            mute: self.mute,
            deaf: self.deaf,
            self_video: self.self_video,
            self_stream: self.self_stream,
            suppress: self.suppressed(),
            request_to_speak_timestamp: self.request_to_speak,
            speaking: self.speaking,
            stream_viewers: if self.self_stream {
                self.stream_viewers
            } else {
                0
            },
            e2ee: self
                .identity_key
                .clone()
                .map(|identity_key| E2eeState { identity_key }),
        }
    }

    /// The state others see once it left.
    pub fn left_state(&self) -> VoiceState {
        VoiceState {
            channel_id: None,
            speaking: false,
            stream_viewers: 0,
            ..self.state()
        }
    }

    /// The SFU stops forwarding to a participant that is deafened either way.
    pub fn effective_deaf(&self) -> bool {
        self.self_deaf || self.deaf
    }
}

/// What a join request did.
#[derive(Debug, PartialEq)]
pub enum JoinOutcome {
    /// A new participant (after leaving `previous`, if the user was elsewhere).
    Joined { previous: Option<Participant> },
    /// The same participant came back (rejoin after a blip, or a new gateway session).
    Rejoined,
    /// Only its mute/deaf flags changed (or nothing).
    Updated { changed: bool },
}

#[derive(Default)]
pub struct Registry {
    by_user: HashMap<UserId, Participant>,
    by_id: HashMap<Snowflake, UserId>,
}

pub struct JoinRequest<'a> {
    pub new_id: Snowflake,
    pub user_id: UserId,
    pub server_id: ServerId,
    pub channel_id: ChannelId,
    pub gateway_session: &'a Arc<str>,
    pub self_mute: bool,
    pub self_deaf: bool,
    pub mute: bool,
    pub deaf: bool,
    pub self_video: bool,
    pub self_stream: bool,
    pub perms: VoicePerms,
    /// The channel is a stage.
    pub stage: bool,
    /// The voice session the client says it had (rejoin).
    pub voice_session_id: Option<Snowflake>,
    /// The identity key declared for an end-to-end encrypted channel.
    pub identity_key: Option<Arc<str>>,
}

impl Registry {
    /// Applies a VOICE_STATE_UPDATE that names a channel.
    pub fn join(&mut self, req: JoinRequest<'_>) -> JoinOutcome {
        if let Some(p) = self.by_user.get_mut(&req.user_id) {
            if p.channel_id == req.channel_id {
                let claims_it = req.voice_session_id == Some(p.id);
                let same_conn = p.gateway_session == *req.gateway_session;
                if claims_it || (same_conn && p.dropped_at.is_some()) {
                    // Back after a blip: same voice session, fresh media connection.
                    p.gateway_session = req.gateway_session.clone();
                    p.self_mute = req.self_mute;
                    p.self_deaf = req.self_deaf;
                    p.self_video = req.self_video;
                    p.self_stream = req.self_stream;
                    p.perms = req.perms;
                    p.identity_key = req.identity_key.clone();
                    p.dropped_at = None;
                    p.needs_join = true;
                    return JoinOutcome::Rejoined;
                }
                if same_conn {
                    let before = p.state();
                    p.self_mute = req.self_mute;
                    p.self_deaf = req.self_deaf;
                    p.self_video = req.self_video;
                    p.self_stream = req.self_stream;
                    // Permissions are read on every update too.
                    p.perms = req.perms;
                    p.identity_key = req.identity_key.clone();
                    let changed = p.state() != before;
                    return JoinOutcome::Updated { changed };
                }
            }
        }
        // A new voice session: leave wherever the user was (another channel or device).
        let previous = self.remove_user(req.user_id);
        let p = Participant {
            id: req.new_id,
            user_id: req.user_id,
            server_id: req.server_id,
            channel_id: req.channel_id,
            gateway_session: req.gateway_session.clone(),
            self_mute: req.self_mute,
            self_deaf: req.self_deaf,
            mute: req.mute,
            deaf: req.deaf,
            self_video: req.self_video,
            self_stream: req.self_stream,
            perms: req.perms,
            stage: req.stage,
            on_stage: false,
            request_to_speak: None,
            video_subs: Vec::new(),
            needs_join: true,
            dropped_at: None,
            speaking: false,
            stream_viewers: 0,
            identity_key: req.identity_key,
        };
        self.by_id.insert(p.id, p.user_id);
        self.by_user.insert(p.user_id, p);
        JoinOutcome::Joined { previous }
    }

    /// Moves participant `id` to `channel_id` as a new voice session `new_id` (a moderator's
    /// move): its flags go along, its media must join again. Returns (old, new).
    pub fn moved(
        &mut self,
        id: Snowflake,
        new_id: Snowflake,
        channel_id: ChannelId,
        stage: bool,
        perms: VoicePerms,
    ) -> Option<(Participant, Participant)> {
        let old = self.remove_id(id)?;
        let p = Participant {
            id: new_id,
            channel_id,
            stage,
            on_stage: false,
            request_to_speak: None,
            perms,
            self_video: old.self_video && perms.video,
            self_stream: old.self_stream && perms.video,
            video_subs: Vec::new(),
            needs_join: true,
            speaking: false,
            stream_viewers: 0,
            ..old.clone()
        };
        self.by_id.insert(p.id, p.user_id);
        self.by_user.insert(p.user_id, p.clone());
        Some((old, p))
    }

    /// (id, user, channel) of the participants of a server.
    pub fn in_server(&self, server_id: ServerId) -> Vec<(Snowflake, UserId, ChannelId)> {
        self.by_user
            .values()
            .filter(|p| p.server_id == server_id)
            .map(|p| (p.id, p.user_id, p.channel_id))
            .collect()
    }

    pub fn remove_user(&mut self, user_id: UserId) -> Option<Participant> {
        let p = self.by_user.remove(&user_id)?;
        self.by_id.remove(&p.id);
        Some(p)
    }

    pub fn remove_id(&mut self, id: Snowflake) -> Option<Participant> {
        let user = *self.by_id.get(&id)?;
        self.remove_user(user)
    }

    pub fn by_user(&self, user_id: UserId) -> Option<&Participant> {
        self.by_user.get(&user_id)
    }

    pub fn by_user_mut(&mut self, user_id: UserId) -> Option<&mut Participant> {
        self.by_user.get_mut(&user_id)
    }

    pub fn by_id(&self, id: Snowflake) -> Option<&Participant> {
        self.by_id.get(&id).and_then(|u| self.by_user.get(u))
    }

    pub fn by_id_mut(&mut self, id: Snowflake) -> Option<&mut Participant> {
        let u = *self.by_id.get(&id)?;
        self.by_user.get_mut(&u)
    }

    /// Marks the participants of a gateway session as dropped (their 15 s start now).
    pub fn session_dropped(&mut self, gateway_session: &str, now: Instant) {
        for p in self.by_user.values_mut() {
            if &*p.gateway_session == gateway_session {
                p.dropped_at.get_or_insert(now);
            }
        }
    }

    /// A RESUME brought the gateway session back.
    pub fn session_resumed(&mut self, gateway_session: &str) {
        for p in self.by_user.values_mut() {
            if &*p.gateway_session == gateway_session {
                p.dropped_at = None;
            }
        }
    }

    /// Participants matching `pred`, removed.
    pub fn remove_where(&mut self, pred: impl Fn(&Participant) -> bool) -> Vec<Participant> {
        let users: Vec<UserId> = self
            .by_user
            .values()
            .filter(|p| pred(p))
            .map(|p| p.user_id)
            .collect();
        users
            .into_iter()
            .filter_map(|u| self.remove_user(u))
            .collect()
    }

    /// Participants whose rejoin window has passed, removed.
    pub fn expire(&mut self, now: Instant) -> Vec<Participant> {
        self.remove_where(|p| {
            p.dropped_at
                .is_some_and(|t| now.duration_since(t) >= REJOIN_WINDOW)
        })
    }

    pub fn all_states(&self) -> Vec<VoiceState> {
        self.by_user.values().map(Participant::state).collect()
    }

    pub fn states_for(&self, servers: &[ServerId]) -> Vec<VoiceState> {
        self.by_user
            .values()
            .filter(|p| servers.contains(&p.server_id))
            .map(Participant::state)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.by_user.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_user.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(
        id: i64,
        user: i64,
        channel: i64,
        gw: &'a Arc<str>,
        vsid: Option<i64>,
    ) -> JoinRequest<'a> {
        JoinRequest {
            new_id: Snowflake(id),
            user_id: UserId::new(Snowflake(user)),
            server_id: ServerId::new(Snowflake(1)),
            channel_id: ChannelId::new(Snowflake(channel)),
            gateway_session: gw,
            self_mute: false,
            self_deaf: false,
            mute: false,
            deaf: false,
            self_video: false,
            self_stream: false,
            perms: VoicePerms::all(),
            stage: false,
            voice_session_id: vsid.map(Snowflake),
            identity_key: None,
        }
    }

    #[test]
    fn join_update_move_and_one_channel_per_user() {
        let mut r = Registry::default();
        let gw: Arc<str> = "g1".into();
        assert_eq!(
            r.join(req(100, 7, 10, &gw, None)),
            JoinOutcome::Joined { previous: None }
        );
        // Same connection, same channel: a flags update.
        let mut m = req(101, 7, 10, &gw, None);
        m.self_mute = true;
        assert_eq!(r.join(m), JoinOutcome::Updated { changed: true });
        assert!(r.by_user(UserId::new(Snowflake(7))).unwrap().self_mute);
        // Camera on is a visible change too, and is part of the state others see.
        let mut v = req(101, 7, 10, &gw, None);
        v.self_mute = true;
        v.self_video = true;
        assert_eq!(r.join(v), JoinOutcome::Updated { changed: true });
        let st = r.by_user(UserId::new(Snowflake(7))).unwrap().state();
        assert!(st.self_video && !st.self_stream);
        // Another channel: a move; the old participant is returned to be torn down.
        match r.join(req(102, 7, 11, &gw, None)) {
            JoinOutcome::Joined { previous: Some(p) } => {
                assert_eq!(p.channel_id, ChannelId::new(Snowflake(10)))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.len(), 1);
        assert_eq!(
            r.by_user(UserId::new(Snowflake(7))).unwrap().id,
            Snowflake(102)
        );
        assert!(r.by_id(Snowflake(100)).is_none());
    }

    #[test]
    fn rejoin_within_the_window_keeps_the_session_and_expiry_removes_it() {
        let mut r = Registry::default();
        let gw1: Arc<str> = "g1".into();
        let gw2: Arc<str> = "g2".into();
        r.join(req(100, 7, 10, &gw1, None));
        r.by_user_mut(UserId::new(Snowflake(7))).unwrap().needs_join = false;
        let t0 = Instant::now();
        r.session_dropped("g1", t0);
        assert!(r.expire(t0 + Duration::from_secs(14)).is_empty());
        // A new gateway session claims the voice session: same id, fresh SFU join.
        assert_eq!(
            r.join(req(200, 7, 10, &gw2, Some(100))),
            JoinOutcome::Rejoined
        );
        let p = r.by_user(UserId::new(Snowflake(7))).unwrap();
        assert_eq!(p.id, Snowflake(100));
        assert!(p.needs_join && p.dropped_at.is_none());
        assert_eq!(&*p.gateway_session, "g2");
        // Dropped again and never back: gone after the window.
        r.session_dropped("g2", t0);
        let gone = r.expire(t0 + REJOIN_WINDOW);
        assert_eq!(gone.len(), 1);
        assert!(r.is_empty());
    }

    #[test]
    fn another_device_replaces_and_resume_clears_the_drop() {
        let mut r = Registry::default();
        let gw1: Arc<str> = "g1".into();
        let gw2: Arc<str> = "g2".into();
        r.join(req(100, 7, 10, &gw1, None));
        // A second device joining the same channel without the session id is a new session.
        assert!(matches!(
            r.join(req(101, 7, 10, &gw2, None)),
            JoinOutcome::Joined { previous: Some(_) }
        ));
        let t0 = Instant::now();
        r.session_dropped("g2", t0);
        r.session_resumed("g2");
        assert!(r.expire(t0 + Duration::from_secs(60)).is_empty());
        assert_eq!(r.states_for(&[ServerId::new(Snowflake(1))]).len(), 1);
        assert!(r.states_for(&[ServerId::new(Snowflake(2))]).is_empty());
    }

    #[test]
    fn suppress_follows_speak_and_the_stage() {
        let mut r = Registry::default();
        let gw: Arc<str> = "g1".into();
        let mut j = req(100, 7, 10, &gw, None);
        j.perms.speak = false;
        r.join(j);
        let p = r.by_user(UserId::new(Snowflake(7))).unwrap();
        // No SPEAK: suppressed (not muted), audio blocked, video still allowed.
        assert!(p.state().suppress && !p.state().mute);
        assert!(p.audio_blocked() && p.video_allowed());
        // On a stage everyone starts in the audience: no audio, no video.
        let mut s = req(101, 8, 11, &gw, None);
        s.stage = true;
        r.join(s);
        let p = r.by_user_mut(UserId::new(Snowflake(8))).unwrap();
        assert!(p.suppressed() && p.audio_blocked() && !p.video_allowed());
        p.on_stage = true;
        assert!(!p.suppressed() && !p.audio_blocked() && p.video_allowed());
        // A moderator's move to another channel: a new session, back in the audience there,
        // and the camera off where VIDEO is missing.
        r.by_user_mut(UserId::new(Snowflake(8))).unwrap().self_video = true;
        let no_video = VoicePerms {
            video: false,
            ..VoicePerms::all()
        };
        let (old, new) = r
            .moved(
                Snowflake(101),
                Snowflake(102),
                ChannelId::new(Snowflake(12)),
                true,
                no_video,
            )
            .unwrap();
        assert_eq!(old.id, Snowflake(101));
        assert_eq!(
            (new.id, new.channel_id),
            (Snowflake(102), ChannelId::new(Snowflake(12)))
        );
        assert!(new.suppressed() && !new.self_video && new.needs_join);
        assert!(r.by_id(Snowflake(101)).is_none());
        assert_eq!(r.in_server(ServerId::new(Snowflake(1))).len(), 2);
    }
}
