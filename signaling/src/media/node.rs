//! A media node: this process's SFU, serving the api nodes of a cluster over NATS.
//!
//! It answers the commands on `<prefix>.media.<node>` (see `wire`), reports each participant's
//! SFU events to the api node that placed it, and announces itself every 500 ms with its load
//! and its relay endpoint. Rooms that span several media nodes relay their audio between them
//! (docs/relay.md): the api nodes say which nodes a room lives on, and this node tells its SFU
//! the relay endpoints of the others, as announced.
//!
//! Draining (SIGTERM): the node announces `draining` at once, so no new room is placed here and
//! new joins are refused with `Reply::Draining`; it waits up to `--media-drain-seconds` for its
//! participants to leave, then tells the api nodes to move the rest (`Event::Moved`: their
//! clients reconnect and are placed on another node).

use super::relay;
use super::wire::{self, Announce, Command, Event, Reply};
use confab_sfu::{JoinRequest, ParticipantId, RoomId, Sfu, SfuError, SfuEvent, UserTag};
use futures_util::StreamExt;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a shutdown waits for NATS to take what it was sent.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// A NATS subject token from a node name (node names may hold dots; subjects may not).
pub fn token(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

struct Placed {
    owner: String,
    room: u64,
}

#[derive(Default)]
struct NodeState {
    participants: HashMap<u64, Placed>,
    /// Each room's media nodes, as the api nodes last said (this one included).
    rooms: HashMap<u64, Vec<String>>,
    /// The relay peers last given to the SFU per room.
    relayed: HashMap<u64, Vec<relay::RelayEndpoint>>,
    draining: bool,
}

/// Another media node as last announced.
struct Peer {
    relay: Option<relay::RelayEndpoint>,
    seen: Instant,
}

pub struct MediaNode {
    name: String,
    instance: String,
    prefix: String,
    client: async_nats::Client,
    sfu: Sfu,
    capacity: usize,
    state: Mutex<NodeState>,
    peers: Mutex<HashMap<String, Peer>>,
}

impl MediaNode {
    /// Starts serving `sfu` on NATS; the tasks end with `shutdown`.
    pub async fn start(
        client: async_nats::Client,
        prefix: &str,
        name: &str,
        sfu: Sfu,
        events: mpsc::UnboundedReceiver<SfuEvent>,
        capacity: usize,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<MediaNode>> {
        let node = Arc::new(MediaNode {
            name: name.to_string(),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            prefix: prefix.to_string(),
            client: client.clone(),
            sfu,
            capacity,
            state: Mutex::new(NodeState::default()),
            peers: Mutex::new(HashMap::new()),
        });
        let commands = client
            .subscribe(format!("{prefix}.media.{}", token(name)))
            .await?;
        let announces = client.subscribe(format!("{prefix}.media.announce")).await?;
        tokio::spawn(node.clone().serve(commands, shutdown.clone()));
        tokio::spawn(node.clone().watch_peers(announces, shutdown.clone()));
        tokio::spawn(node.clone().report(events, shutdown.clone()));
        tokio::spawn(node.clone().announce_loop(shutdown));
        // Announced before returning, so that api nodes can place rooms here at once.
        node.announce().await;
        let _ = node.client.flush().await;
        Ok(node)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn sfu(&self) -> &Sfu {
        &self.sfu
    }

    pub fn participants(&self) -> usize {
        self.state.lock().participants.len()
    }

    async fn serve(
        self: Arc<Self>,
        mut commands: async_nats::Subscriber,
        shutdown: CancellationToken,
    ) {
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = commands.next() => match m { Some(m) => m, None => return },
            };
            let cmd: Command = match serde_json::from_slice(&msg.payload) {
                Ok(c) => c,
                Err(e) => {
                    metrics::counter!("confab_media_commands_undecodable_total").increment(1);
                    tracing::warn!(error = %e, "media node: undecodable command");
                    continue;
                }
            };
            // One command at a time, in arrival order: a participant's flags never overtake its
            // join. The SFU answers a join in about a millisecond.
            let reply = self.handle(cmd).await;
            if let (Some(reply), Some(to)) = (reply, msg.reply) {
                match serde_json::to_vec(&reply) {
                    Ok(body) => {
                        if let Err(e) = self.client.publish(to, body.into()).await {
                            tracing::warn!(error = %e, "media node: reply not sent");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "media node: reply not encoded"),
                }
            }
        }
    }

    async fn handle(&self, cmd: Command) -> Option<Reply> {
        metrics::counter!("confab_media_commands_total").increment(1);
        match cmd {
            Command::Join {
                room,
                participant,
                user,
                offer,
                owner,
                flags,
                room_nodes,
                over_capacity,
            } => {
                let (rejoin, draining, count) = {
                    let st = self.state.lock();
                    (
                        st.participants.contains_key(&participant),
                        st.draining,
                        st.participants.len(),
                    )
                };
                if draining && !rejoin {
                    return Some(Reply::Draining);
                }
                // The api node's view of the load lags by up to an announcement.
                if self.capacity > 0 && count >= self.capacity && !rejoin && !over_capacity {
                    return Some(Reply::Full);
                }
                self.set_room_nodes(room, room_nodes);
                let id = ParticipantId::new(participant);
                // Placed before the SFU sees the join: the join itself raises events for the
                // participant (its slots, when someone already talks), which `report` sends to
                // the owner it finds here — placed after, they would be dropped.
                let before = self
                    .state
                    .lock()
                    .participants
                    .insert(participant, Placed { owner, room });
                let answer = self
                    .sfu
                    .join(JoinRequest {
                        room: RoomId::new(room),
                        participant: id,
                        user_id: UserTag::new(user),
                        offer_sdp: offer,
                    })
                    .await;
                if answer.is_ok() {
                    self.apply_flags(id, flags);
                } else if let Some(before) = before {
                    self.state.lock().participants.insert(participant, before);
                } else {
                    self.forget(participant);
                }
                Some(reply_of(answer))
            }
            Command::Offer { participant, offer } => {
                let answer = self
                    .sfu
                    .renegotiate(ParticipantId::new(participant), offer)
                    .await;
                Some(reply_of(answer))
            }
            Command::Leave { participant } => {
                self.sfu.leave(ParticipantId::new(participant));
                self.forget(participant);
                None
            }
            Command::Flags { participant, flags } => {
                self.apply_flags(ParticipantId::new(participant), flags);
                None
            }
            Command::VideoSubscriptions { participant, subs } => {
                self.sfu.set_video_subscriptions(
                    ParticipantId::new(participant),
                    subs.iter().map(wire::Subscription::to_sfu).collect(),
                );
                None
            }
            Command::VideoTrackKinds { participant, kinds } => {
                self.sfu.set_video_track_kinds(
                    ParticipantId::new(participant),
                    kinds.iter().map(wire::TrackKind::to_sfu).collect(),
                );
                None
            }
            Command::StreamAudioMid { participant, mid } => {
                self.sfu
                    .set_stream_audio_mid(ParticipantId::new(participant), mid);
                None
            }
            Command::RoomNodes { room, nodes } => {
                self.set_room_nodes(room, nodes);
                None
            }
        }
    }

    fn apply_flags(&self, id: ParticipantId, f: wire::Flags) {
        self.sfu.set_server_mute(id, f.server_mute);
        self.sfu.set_self_mute(id, f.self_mute);
        self.sfu.set_deaf(id, f.deaf);
        self.sfu.set_video_allowed(id, f.video_allowed);
        self.sfu.set_self_video(id, f.camera, f.screen);
        self.sfu.set_priority_speaker(id, f.priority_speaker);
    }

    fn forget(&self, participant: u64) {
        let mut st = self.state.lock();
        if let Some(p) = st.participants.remove(&participant) {
            let room = p.room;
            if !st.participants.values().any(|q| q.room == room) {
                st.rooms.remove(&room);
                if st.relayed.remove(&room).is_some() {
                    relay::set_peers(&self.sfu, RoomId::new(room), Vec::new());
                }
            }
        }
    }

    fn set_room_nodes(&self, room: u64, nodes: Vec<String>) {
        self.state.lock().rooms.insert(room, nodes);
        self.update_relays();
    }

    /// Gives the SFU, for each room, the relay endpoints of the room's other live nodes.
    fn update_relays(&self) {
        let peers = self.peers.lock();
        let mut st = self.state.lock();
        let rooms: Vec<(u64, Vec<relay::RelayEndpoint>)> = st
            .rooms
            .iter()
            .map(|(room, nodes)| {
                let eps = nodes
                    .iter()
                    .filter(|n| **n != self.name)
                    .filter_map(|n| peers.get(n).and_then(|p| p.relay.clone()))
                    .collect();
                (*room, eps)
            })
            .collect();
        for (room, eps) in rooms {
            if st.relayed.get(&room) != Some(&eps) {
                relay::set_peers(&self.sfu, RoomId::new(room), eps.clone());
                st.relayed.insert(room, eps);
            }
        }
    }

    async fn watch_peers(
        self: Arc<Self>,
        mut announces: async_nats::Subscriber,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(wire::ANNOUNCE_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    let now = Instant::now();
                    if self.client.connection_state() != async_nats::connection::State::Connected {
                        // Cut off from NATS: peers' silence proves nothing, keep relaying.
                        for p in self.peers.lock().values_mut() {
                            p.seen = now;
                        }
                        continue;
                    }
                    let lost = {
                        let mut peers = self.peers.lock();
                        let before = peers.len();
                        peers.retain(|_, p| now.duration_since(p.seen) < wire::NODE_LOST_AFTER);
                        peers.len() != before
                    };
                    if lost {
                        self.update_relays();
                    }
                }
                m = announces.next() => {
                    let Some(m) = m else { return };
                    let Ok(a) = serde_json::from_slice::<Announce>(&m.payload) else { continue };
                    if a.node == self.name {
                        if a.instance != self.instance {
                            metrics::counter!("confab_media_duplicate_node_total").increment(1);
                            tracing::error!(node = %a.node, "another media node announces this node's name: every node needs its own --node-name");
                        }
                        continue;
                    }
                    let relay = a.relay.as_ref().and_then(wire::Relay::to_sfu);
                    let changed = {
                        let mut peers = self.peers.lock();
                        let changed = peers.get(&a.node).map(|p| &p.relay) != Some(&relay);
                        peers.insert(a.node, Peer { relay, seen: Instant::now() });
                        changed
                    };
                    if changed {
                        self.update_relays();
                    }
                }
            }
        }
    }

    /// Sends each SFU event to the api node that placed its participant.
    async fn report(
        self: Arc<Self>,
        mut events: mpsc::UnboundedReceiver<SfuEvent>,
        shutdown: CancellationToken,
    ) {
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => return,
                e = events.recv() => match e { Some(e) => e, None => return },
            };
            let ev = Event::of(ev);
            let participant = ev.participant();
            let owner = self
                .state
                .lock()
                .participants
                .get(&participant)
                .map(|p| p.owner.clone());
            if matches!(ev, Event::Disconnected { .. }) {
                self.forget(participant);
            }
            if let Some(owner) = owner {
                self.send_event(&owner, &ev).await;
            }
        }
    }

    async fn send_event(&self, owner: &str, ev: &Event) {
        let subject = format!("{}.media.events.{}", self.prefix, token(owner));
        match serde_json::to_vec(ev) {
            Ok(body) => {
                if let Err(e) = self.client.publish(subject, body.into()).await {
                    tracing::warn!(error = %e, "media node: event not sent");
                }
            }
            Err(e) => tracing::error!(error = %e, "media node: event not encoded"),
        }
    }

    async fn announce_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(wire::ANNOUNCE_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => self.announce().await,
            }
        }
    }

    /// Flushes what was published, but never waits long: with NATS unreachable a flush only
    /// returns once it is back, and a node shutting down must not wait for that.
    async fn flush_briefly(&self) {
        if tokio::time::timeout(FLUSH_WAIT, self.client.flush())
            .await
            .is_err()
        {
            tracing::warn!(node = %self.name, "NATS flush timed out (bus unreachable?)");
        }
    }

    async fn announce(&self) {
        let (participants, draining, rooms) = {
            let st = self.state.lock();
            let rooms: HashSet<u64> = st.participants.values().map(|p| p.room).collect();
            (st.participants.len(), st.draining, rooms.len())
        };
        metrics::gauge!("confab_media_node_participants").set(participants as f64);
        metrics::gauge!("confab_media_node_rooms").set(rooms as f64);
        metrics::gauge!("confab_media_node_draining").set(if draining { 1.0 } else { 0.0 });
        let a = Announce {
            node: self.name.clone(),
            instance: self.instance.clone(),
            participants,
            capacity: self.capacity,
            draining,
            relay: relay::endpoint(&self.sfu).as_ref().map(wire::Relay::of),
        };
        if let Ok(body) = serde_json::to_vec(&a) {
            let subject = format!("{}.media.announce", self.prefix);
            if let Err(e) = self.client.publish(subject, body.into()).await {
                tracing::warn!(error = %e, "media node: announce not sent");
            }
        }
    }

    /// Stops taking new rooms, waits up to `wait` for the participants to leave, then moves
    /// the rest to other nodes; returns once they are gone (or after a few more seconds).
    pub async fn drain(&self, wait: Duration) {
        self.state.lock().draining = true;
        self.announce().await;
        self.flush_briefly().await;
        tracing::info!(node = %self.name, "media node draining");
        let deadline = Instant::now() + wait;
        while self.participants() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let moving: Vec<(u64, String)> = self
            .state
            .lock()
            .participants
            .iter()
            .map(|(id, p)| (*id, p.owner.clone()))
            .collect();
        for (participant, owner) in &moving {
            self.send_event(
                owner,
                &Event::Moved {
                    participant: *participant,
                },
            )
            .await;
        }
        self.flush_briefly().await;
        // Each moved client leaves here when its api node places it elsewhere.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.participants() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::info!(node = %self.name, moved = moving.len(), "media node drained");
    }
}

fn reply_of(answer: Result<String, SfuError>) -> Reply {
    match answer {
        Ok(sdp) => Reply::Answer(sdp),
        Err(SfuError::InvalidSdp(m)) => Reply::InvalidSdp(m),
        Err(SfuError::UnknownParticipant) => Reply::UnknownParticipant,
        Err(e) => Reply::Failed(e.to_string()),
    }
}
