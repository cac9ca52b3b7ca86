//! Who is in which voice channel on this node: pure state, no I/O, so its rules are tested
//! directly. One voice channel per user; a participant survives a dropped connection for
//! `REJOIN_WINDOW` so a client can come back without others seeing it leave.

use confab_chat::Snowflake;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a participant whose connection dropped may rejoin or RESUME before it leaves.
pub const REJOIN_WINDOW: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq)]
pub struct Participant {
    /// The SFU participant id and voice session id (a snowflake).
    pub id: Snowflake,
    pub user_id: Snowflake,
    pub server_id: Snowflake,
    pub channel_id: Snowflake,
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
    /// Holds the VIDEO permission in this channel; without it the SFU drops its video.
    pub may_video: bool,
    /// The tiles the client shows (op 15), kept to hand to the SFU again after a (re)join.
    pub video_subs: Vec<confab_sfu::VideoSubscription>,
    /// PRIORITY_SPEAKER in the channel: preferred for listeners' slots.
    pub priority_speaker: bool,
    /// The next offer must be a fresh SFU join (new participant or rejoin after a blip).
    pub needs_join: bool,
    /// When its gateway connection or media connection dropped.
    pub dropped_at: Option<Instant>,
}

/// A voice state as clients see it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VoiceState {
    pub server_id: Snowflake,
    pub channel_id: Option<Snowflake>,
    pub user_id: Snowflake,
    pub voice_session_id: Snowflake,
    pub self_mute: bool,
    pub self_deaf: bool,
    pub mute: bool,
    pub deaf: bool,
    pub self_video: bool,
    pub self_stream: bool,
}

impl Participant {
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
        }
    }

    /// The state others see once it left.
    pub fn left_state(&self) -> VoiceState {
        VoiceState {
            channel_id: None,
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
    by_user: HashMap<Snowflake, Participant>,
    by_id: HashMap<Snowflake, Snowflake>,
}

pub struct JoinRequest<'a> {
    pub new_id: Snowflake,
    pub user_id: Snowflake,
    pub server_id: Snowflake,
    pub channel_id: Snowflake,
    pub gateway_session: &'a Arc<str>,
    pub self_mute: bool,
    pub self_deaf: bool,
    pub mute: bool,
    pub deaf: bool,
    pub self_video: bool,
    pub self_stream: bool,
    pub may_video: bool,
    pub priority_speaker: bool,
    /// The voice session the client says it had (rejoin).
    pub voice_session_id: Option<Snowflake>,
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
                    p.may_video = req.may_video;
                    p.priority_speaker = req.priority_speaker;
                    p.dropped_at = None;
                    p.needs_join = true;
                    return JoinOutcome::Rejoined;
                }
                if same_conn {
                    let changed = p.self_mute != req.self_mute
                        || p.self_deaf != req.self_deaf
                        || p.self_video != req.self_video
                        || p.self_stream != req.self_stream;
                    p.self_mute = req.self_mute;
                    p.self_deaf = req.self_deaf;
                    p.self_video = req.self_video;
                    p.self_stream = req.self_stream;
                    // Permissions are read on every update: a revoked VIDEO applies here too.
                    p.may_video = req.may_video;
                    p.priority_speaker = req.priority_speaker;
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
            may_video: req.may_video,
            video_subs: Vec::new(),
            priority_speaker: req.priority_speaker,
            needs_join: true,
            dropped_at: None,
        };
        self.by_id.insert(p.id, p.user_id);
        self.by_user.insert(p.user_id, p);
        JoinOutcome::Joined { previous }
    }

    pub fn remove_user(&mut self, user_id: Snowflake) -> Option<Participant> {
        let p = self.by_user.remove(&user_id)?;
        self.by_id.remove(&p.id);
        Some(p)
    }

    pub fn remove_id(&mut self, id: Snowflake) -> Option<Participant> {
        let user = *self.by_id.get(&id)?;
        self.remove_user(user)
    }

    pub fn by_user(&self, user_id: Snowflake) -> Option<&Participant> {
        self.by_user.get(&user_id)
    }

    pub fn by_user_mut(&mut self, user_id: Snowflake) -> Option<&mut Participant> {
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
        let users: Vec<Snowflake> = self
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

    pub fn states_for(&self, servers: &[Snowflake]) -> Vec<VoiceState> {
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
            user_id: Snowflake(user),
            server_id: Snowflake(1),
            channel_id: Snowflake(channel),
            gateway_session: gw,
            self_mute: false,
            self_deaf: false,
            mute: false,
            deaf: false,
            self_video: false,
            self_stream: false,
            may_video: true,
            priority_speaker: false,
            voice_session_id: vsid.map(Snowflake),
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
        assert!(r.by_user(Snowflake(7)).unwrap().self_mute);
        // Camera on is a visible change too, and is part of the state others see.
        let mut v = req(101, 7, 10, &gw, None);
        v.self_mute = true;
        v.self_video = true;
        assert_eq!(r.join(v), JoinOutcome::Updated { changed: true });
        let st = r.by_user(Snowflake(7)).unwrap().state();
        assert!(st.self_video && !st.self_stream);
        // Another channel: a move; the old participant is returned to be torn down.
        match r.join(req(102, 7, 11, &gw, None)) {
            JoinOutcome::Joined { previous: Some(p) } => assert_eq!(p.channel_id, Snowflake(10)),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.len(), 1);
        assert_eq!(r.by_user(Snowflake(7)).unwrap().id, Snowflake(102));
        assert!(r.by_id(Snowflake(100)).is_none());
    }

    #[test]
    fn rejoin_within_the_window_keeps_the_session_and_expiry_removes_it() {
        let mut r = Registry::default();
        let gw1: Arc<str> = "g1".into();
        let gw2: Arc<str> = "g2".into();
        r.join(req(100, 7, 10, &gw1, None));
        r.by_user_mut(Snowflake(7)).unwrap().needs_join = false;
        let t0 = Instant::now();
        r.session_dropped("g1", t0);
        assert!(r.expire(t0 + Duration::from_secs(14)).is_empty());
        // A new gateway session claims the voice session: same id, fresh SFU join.
        assert_eq!(
            r.join(req(200, 7, 10, &gw2, Some(100))),
            JoinOutcome::Rejoined
        );
        let p = r.by_user(Snowflake(7)).unwrap();
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
        assert_eq!(r.states_for(&[Snowflake(1)]).len(), 1);
        assert!(r.states_for(&[Snowflake(2)]).is_empty());
    }
}
