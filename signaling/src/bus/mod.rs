//! The event bus: how a change made by one request reaches every node and every gateway
//! session that should see it.
//!
//! Handlers publish *what changed* — a `BusEvent`: a dispatch with its audience, a member who
//! joined or left, a friendship, permissions changed in a server, … — with one call,
//! `AppState::publish` (or `AppState::emit` for a plain dispatch). The node that made the
//! change applies it at once (`apply`), so its own answer reflects it; the `EventBus` carries
//! it to the other nodes, which run the same `apply`. `apply` is the only code that updates
//! the hub's routing index, the viewer cache and live voice sessions after a change, so a
//! node never misses what happened on another. In one process the bus carries nothing
//! (`LocalBus`); with several nodes it is NATS.

use crate::auth::SessionCache;
use crate::gateway::events::Event;
use crate::gateway::hub::{Dispatch, Hub, Target};
use crate::gateway::presence::{PresenceAudience, Status};
use crate::state::AppState;
use confab_chat::{ChannelId, ServerId, SessionId, UserId};
use std::sync::Arc;

pub mod nats;

/// A change every node applies. Serializable for the bus between nodes, except `Dispatch`,
/// which travels as its payload with the event name in a header (`nats`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum BusEvent {
    /// Deliver a dispatch to the sessions the target names.
    #[serde(skip)]
    Dispatch {
        target: Target,
        dispatch: Arc<Dispatch>,
    },
    /// A user became a member of a server (created it, or joined it).
    MemberJoined {
        server_id: ServerId,
        user_id: UserId,
    },
    /// A member left a server, was kicked or banned, or their temporary membership ended.
    MemberLeft {
        server_id: ServerId,
        user_id: UserId,
    },
    /// A server was deleted.
    ServerDeleted { server_id: ServerId },
    /// A server's channel was deleted.
    ChannelDeleted {
        server_id: ServerId,
        channel_id: ChannelId,
    },
    /// Who may see or do what in a server may have changed: roles, a member's roles,
    /// overwrites, a channel created or moved, a timeout.
    PermissionsChanged { server_id: ServerId },
    /// A server's automod rules or safety settings changed (raid mode included): every node
    /// drops its compiled copy and loads the new one at the next send.
    SafetyChanged { server_id: ServerId },
    /// A DM's recipients changed (who may see it).
    DmRecipientsChanged { channel_id: ChannelId },
    /// A private thread's members changed (who may see it).
    ThreadMembersChanged { channel_id: ChannelId },
    /// Two users became friends (`friends`) or stopped being friends.
    Friendship { a: UserId, b: UserId, friends: bool },
    /// Login sessions of a user ended (logout, revocation, password change, refresh-token
    /// reuse): their gateway connections close with 4004 and cannot RESUME.
    SessionsEnded(SessionsEnded),
    /// A node's view of a user's presence (the best status of the user's sessions there)
    /// changed; Offline when the user has no session left there.
    Presence {
        node: String,
        user_id: UserId,
        status: Status,
        audience: PresenceAudience,
    },
    /// A node repeats its view of every user with sessions there (every
    /// `presence::REFRESH`), so that other nodes can tell a gone node's users apart.
    PresenceRefresh {
        node: String,
        users: Vec<(UserId, Status)>,
    },
    /// Requests a node admitted per (rate-limit bucket, key) since its last report: every
    /// other node takes them from its own buckets (`ratelimit`).
    RateUsage(Vec<(String, String, u32)>),
    /// Voice states of a node's participants: one that changed (no channel: left), or all of
    /// them (`full`, every `voice::remote::REFRESH`). See `voice::remote`.
    VoiceStates {
        node: String,
        states: Vec<crate::voice::registry::VoiceState>,
        full: bool,
    },
    /// A moderator changed a member's server mute/deafen: the node serving its voice session
    /// applies it.
    VoiceModerated {
        server_id: ServerId,
        user_id: UserId,
        mute: bool,
        deaf: bool,
    },
    /// A moderator moved a member to another voice channel (`to`) or disconnected it (None).
    VoiceMoved {
        server_id: ServerId,
        user_id: UserId,
        to: Option<ChannelId>,
    },
    /// A user's profile changed (name, avatar, status, or the account was deleted): every
    /// node sends USER_UPDATE (`user`) to its sessions of the user, of members of `servers`
    /// and of the users in `also` (DM recipients).
    UserUpdated {
        user_id: UserId,
        servers: Vec<ServerId>,
        also: Vec<UserId>,
        user: serde_json::Value,
    },
    /// A media key wrapped for one participant of an end-to-end encrypted channel (op 16),
    /// checked by the sender's node: the node serving voice session `to` delivers it if that
    /// session is still in `channel_id`.
    VoiceE2eeKey {
        channel_id: ChannelId,
        to: confab_chat::Snowflake,
        payload: serde_json::Value,
    },
    /// A stage change (already checked by the node that took the request).
    VoiceStage {
        server_id: ServerId,
        user_id: UserId,
        change: crate::voice::stage::StageChange,
    },
}

/// "These login sessions of this user ended" — what a node needs to forget them and close
/// their gateway connections. Serializable so that a bus between nodes can carry it as is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionsEnded {
    pub user_id: UserId,
    pub sessions: Vec<SessionId>,
}

/// Carries events to the other nodes; the publishing node applies them itself.
pub trait EventBus: Send + Sync {
    fn publish(&self, event: &BusEvent);
}

/// One process: there is no other node to tell.
pub struct LocalBus;

impl EventBus for LocalBus {
    fn publish(&self, _event: &BusEvent) {}
}

/// A bus that remembers what was published, for tests of what handlers publish.
#[derive(Default)]
pub struct RecordingBus(parking_lot::Mutex<Vec<BusEvent>>);

impl RecordingBus {
    /// Everything published so far, oldest first.
    pub fn events(&self) -> Vec<BusEvent> {
        self.0.lock().clone()
    }
}

impl EventBus for RecordingBus {
    fn publish(&self, event: &BusEvent) {
        self.0.lock().push(event.clone());
    }
}

/// Emits dispatch events: to this node's sessions at once, and to the other nodes over the bus.
/// Never waits, so that events raised where nothing may wait keep their order.
#[derive(Clone)]
pub struct Dispatcher {
    bus: Arc<dyn EventBus>,
    hub: Arc<Hub>,
}

impl Dispatcher {
    pub fn new(bus: Arc<dyn EventBus>, hub: Arc<Hub>) -> Self {
        Self { bus, hub }
    }

    /// Tells the other nodes a change this node applied already.
    pub fn tell_others(&self, event: &BusEvent) {
        self.bus.publish(event);
    }

    /// Delivers a dispatch to this node's sessions only (each node does so for its own).
    pub fn deliver_here<T: serde::Serialize>(&self, target: &Target, t: Event, d: &T) {
        self.hub.deliver(target, &Dispatch::new(t, d));
    }

    /// Publishes a dispatch event (`t`, `d`) to the sessions `target` names.
    pub fn emit<T: serde::Serialize>(&self, target: Target, t: Event, d: &T) {
        let event = BusEvent::Dispatch {
            target,
            dispatch: Dispatch::new(t, d),
        };
        self.bus.publish(&event);
        if let BusEvent::Dispatch { target, dispatch } = event {
            self.hub.deliver(&target, &dispatch);
        }
    }
}

impl AppState {
    /// Publishes a change: applied here before this returns, and by every other node.
    pub async fn publish(&self, event: BusEvent) {
        self.bus.publish(&event);
        apply(self, event).await;
    }

    /// Publishes a dispatch event (`t`, `d`) to the sessions `target` names.
    pub fn emit<T: serde::Serialize>(&self, target: Target, t: Event, d: &T) {
        self.dispatcher.emit(target, t, d);
    }
}

/// What a node does with an event, whichever node published it. Only users with sessions on
/// this node and voice participants on this node are concerned.
pub async fn apply(state: &AppState, event: BusEvent) {
    match event {
        BusEvent::Dispatch { target, dispatch } => state.hub.deliver(&target, &dispatch),
        BusEvent::MemberJoined { server_id, user_id } => {
            state.viewers.invalidate();
            state.hub.add_member(server_id, user_id);
            // A private voice channel's audience may now include the newcomer.
            state.voice.refresh_server_audiences(server_id).await;
        }
        BusEvent::MemberLeft { server_id, user_id } => {
            state.viewers.invalidate();
            state.voice.member_left(server_id, user_id).await;
            state.hub.remove_member(server_id, user_id);
        }
        BusEvent::ServerDeleted { server_id } => {
            state.viewers.invalidate();
            state.hub.remove_server(server_id);
            state.voice.server_deleted(server_id).await;
        }
        BusEvent::ChannelDeleted {
            server_id,
            channel_id,
        } => {
            state.viewers.invalidate();
            state.voice.channel_deleted(channel_id).await;
            state.voice.recheck_server(server_id).await;
        }
        BusEvent::PermissionsChanged { server_id } => {
            state.viewers.invalidate();
            state.voice.recheck_server(server_id).await;
        }
        BusEvent::SafetyChanged { server_id } => state.chat.invalidate_safety(server_id),
        BusEvent::DmRecipientsChanged { .. } | BusEvent::ThreadMembersChanged { .. } => {
            state.viewers.invalidate()
        }
        BusEvent::Friendship { a, b, friends } => {
            state.hub.set_friendship(a, b, friends);
        }
        BusEvent::SessionsEnded(ended) => apply_sessions_ended(&state.hub, &state.sessions, &ended),
        BusEvent::Presence {
            node,
            user_id,
            status,
            audience,
        } => {
            let audience = Arc::new(audience);
            remote_presence(&state.hub, &node, user_id, status, Some(audience));
        }
        BusEvent::PresenceRefresh { node, users } => {
            for (user_id, status) in users {
                remote_presence(&state.hub, &node, user_id, status, None);
            }
        }
        BusEvent::RateUsage(usage) => {
            for (bucket, key, n) in usage {
                state.limiter.consume(&bucket, &key, n);
            }
        }
        BusEvent::UserUpdated {
            user_id,
            servers,
            also,
            user,
        } => {
            let mut to = also;
            to.push(user_id);
            for s in servers {
                to.extend(state.hub.users_in(s));
            }
            to.sort();
            to.dedup();
            state
                .hub
                .deliver(&Target::Users(to), &Dispatch::new(Event::UserUpdate, &user));
        }
        BusEvent::VoiceStates { node, states, full } => {
            state.voice.remote_states(&node, states, full);
        }
        BusEvent::VoiceModerated {
            server_id,
            user_id,
            mute,
            deaf,
        } => state.voice.moderate(server_id, user_id, mute, deaf),
        BusEvent::VoiceMoved {
            server_id,
            user_id,
            to,
        } => state.voice.apply_move(server_id, user_id, to).await,
        BusEvent::VoiceStage {
            server_id,
            user_id,
            change,
        } => state.voice.apply_stage(server_id, user_id, change),
        BusEvent::VoiceE2eeKey {
            channel_id,
            to,
            payload,
        } => state.voice.deliver_e2ee_key(channel_id, to, &payload),
    }
}

/// Records another node's view of a user's presence; tells this node's sessions who see the
/// user if what they see changed.
fn remote_presence(
    hub: &Hub,
    node: &str,
    user_id: UserId,
    status: Status,
    audience: Option<Arc<PresenceAudience>>,
) {
    let before = hub.presence_of(user_id);
    // Taken first: going offline there forgets what that node told us.
    let known = audience
        .clone()
        .or_else(|| hub.remote_presence.audience(user_id));
    hub.remote_presence
        .set(user_id, node, status, audience, std::time::Instant::now());
    let after = hub.presence_of(user_id);
    if after != before {
        if let Some(audience) = known {
            let d = Dispatch::new(
                Event::PresenceUpdate,
                &serde_json::json!({"user_id": user_id, "status": after}),
            );
            hub.deliver_presence(user_id, &audience, &d);
        }
    }
}

/// What every node does with `SessionsEnded`: drop cached "active" answers for the sessions
/// and end their gateway sessions here (connected ones close with 4004; none can RESUME).
pub fn apply_sessions_ended(hub: &Hub, cache: &SessionCache, ended: &SessionsEnded) {
    for s in &ended.sessions {
        cache.forget(*s);
    }
    hub.end_auth_sessions(ended.user_id, &ended.sessions);
}
