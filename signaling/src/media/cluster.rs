//! The api node's side of the media plane in a cluster: which media nodes are alive and how
//! loaded, where each voice channel is placed, and the commands and events of the voice
//! sessions this node placed.
//!
//! Placement: a voice channel's media nodes are a row of `voice_placements` in PostgreSQL,
//! changed only by compare-and-set (`Chat::set_voice_placement`), so two api nodes never place
//! one channel on two nodes by accident. A join goes to the least-loaded of the channel's live,
//! non-draining nodes that still has room (`--media-capacity`); when none has, the channel
//! spans one more node (the least loaded), and its nodes relay its audio to each other. Dead
//! and draining nodes are dropped from a channel's placement at its next join.
//!
//! Liveness: media nodes announce themselves every 500 ms; one not heard from for
//! `NODE_LOST_AFTER` is gone, and every participant this node had placed there is asked to
//! reconnect (`MediaEvent::Reconnect`): its client offers again and lands on a live node.

use super::node::token;
use super::wire::{self, Announce, Command, Event, Flags, Reply};
use super::MediaEvent;
use confab_chat::{ChannelId, Chat, Snowflake};
use confab_sfu::{JoinRequest, ParticipantId, SfuError, VideoSubscription, VideoTrackKind};
use futures_util::StreamExt;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long an api node waits for a media node's answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct NodeView {
    pub participants: usize,
    pub capacity: usize,
    pub draining: bool,
    /// For liveness: the last announcement, or now while this node is cut off from NATS.
    seen: Instant,
    /// The last announcement.
    heard: Instant,
}

impl NodeView {
    fn has_room(&self) -> bool {
        self.capacity == 0 || self.participants < self.capacity
    }
}

struct Placed {
    node: String,
    room: u64,
    /// The last switches and video subscriptions sent, sent again after a NATS interruption
    /// (a command published while the media node was away is lost).
    flags: Option<Flags>,
    subs: Option<Vec<wire::Subscription>>,
}

pub struct ClusterMedia {
    client: async_nats::Client,
    prefix: String,
    /// This api node's name (media nodes report its participants' events to it).
    me: String,
    chat: Chat,
    nodes: Mutex<HashMap<String, NodeView>>,
    placed: Mutex<HashMap<u64, Placed>>,
    events: mpsc::UnboundedSender<MediaEvent>,
    outbox: mpsc::UnboundedSender<(String, bytes::Bytes)>,
    /// This node was cut off from NATS at the last check.
    cut_off: std::sync::atomic::AtomicBool,
}

/// What a join should do with a channel's placement.
#[derive(Debug, PartialEq, Eq)]
pub struct Decision {
    /// The node the participant goes to.
    pub node: String,
    /// The channel's new node list, when it changes.
    pub new_nodes: Option<Vec<String>>,
    /// Every node is full: the node takes one more anyway.
    pub over_capacity: bool,
}

/// Chooses the media node for one more participant of a channel placed on `current`.
pub fn choose(current: &[String], nodes: &HashMap<String, NodeView>) -> Option<Decision> {
    let usable = |n: &String| nodes.get(n).is_some_and(|v| !v.draining);
    let live: Vec<String> = current.iter().filter(|n| usable(n)).cloned().collect();
    let changed = live.len() != current.len();
    let load = |n: &String| nodes.get(n).map_or(usize::MAX, |v| v.participants);
    let roomy = live
        .iter()
        .filter(|n| nodes.get(*n).is_some_and(NodeView::has_room))
        .min_by_key(|n| load(n));
    if let Some(n) = roomy {
        return Some(Decision {
            node: n.clone(),
            new_nodes: changed.then(|| live.clone()),
            over_capacity: false,
        });
    }
    // No node of the channel has room (or it has none left): one more node.
    let mut others: Vec<(&String, &NodeView)> = nodes
        .iter()
        .filter(|(n, v)| !v.draining && v.has_room() && !live.contains(n))
        .collect();
    others.sort_by_key(|(n, v)| (v.participants, (*n).clone()));
    if let Some((n, _)) = others.first() {
        let mut all = live;
        all.push((*n).clone());
        return Some(Decision {
            node: (*n).clone(),
            new_nodes: Some(all),
            over_capacity: false,
        });
    }
    // Every node is full: the least loaded of the channel's own, or of all for a channel that
    // has none left.
    if let Some(n) = live.iter().min_by_key(|n| load(n)) {
        return Some(Decision {
            node: n.clone(),
            new_nodes: changed.then(|| live.clone()),
            over_capacity: true,
        });
    }
    let (n, _) = nodes
        .iter()
        .filter(|(_, v)| !v.draining)
        .min_by_key(|(n, v)| (v.participants, (*n).clone()))?;
    Some(Decision {
        node: n.clone(),
        new_nodes: Some(vec![n.clone()]),
        over_capacity: true,
    })
}

impl ClusterMedia {
    pub async fn start(
        client: async_nats::Client,
        prefix: &str,
        me: &str,
        chat: Chat,
        events: mpsc::UnboundedSender<MediaEvent>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<ClusterMedia>> {
        let (outbox, mut outbox_rx) = mpsc::unbounded_channel::<(String, bytes::Bytes)>();
        let publisher = client.clone();
        tokio::spawn(async move {
            while let Some((subject, body)) = outbox_rx.recv().await {
                if let Err(e) = publisher.publish(subject, body).await {
                    tracing::warn!(error = %e, "media command not sent");
                }
            }
        });
        let media = Arc::new(ClusterMedia {
            cut_off: Default::default(),
            outbox,
            client: client.clone(),
            prefix: prefix.to_string(),
            me: me.to_string(),
            chat,
            nodes: Mutex::new(HashMap::new()),
            placed: Mutex::new(HashMap::new()),
            events,
        });
        let announces = client.subscribe(format!("{prefix}.media.announce")).await?;
        let reports = client
            .subscribe(format!("{prefix}.media.events.{}", token(me)))
            .await?;
        client.flush().await?;
        tokio::spawn(media.clone().watch(announces, reports, shutdown));
        Ok(media)
    }

    /// Live media nodes as last announced.
    pub fn nodes(&self) -> HashMap<String, NodeView> {
        self.nodes.lock().clone()
    }

    /// The media node a participant is on.
    pub fn node_of(&self, participant: ParticipantId) -> Option<String> {
        self.placed
            .lock()
            .get(&participant.get())
            .map(|p| p.node.clone())
    }

    async fn watch(
        self: Arc<Self>,
        mut announces: async_nats::Subscriber,
        mut reports: async_nats::Subscriber,
        shutdown: CancellationToken,
    ) {
        // Checked often: a lost node's listeners wait for this check.
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => self.expire(Instant::now()),
                m = announces.next() => {
                    let Some(m) = m else { return };
                    match serde_json::from_slice::<Announce>(&m.payload) {
                        Ok(a) => self.announced(a),
                        Err(e) => tracing::warn!(error = %e, "undecodable media announcement"),
                    }
                }
                m = reports.next() => {
                    let Some(m) = m else { return };
                    match serde_json::from_slice::<Event>(&m.payload) {
                        Ok(ev) => self.reported(ev),
                        Err(e) => tracing::warn!(error = %e, "undecodable media event"),
                    }
                }
            }
        }
    }

    fn announced(&self, a: Announce) {
        let mut nodes = self.nodes.lock();
        match nodes.get(&a.node) {
            None => tracing::info!(node = %a.node, "media node up"),
            // Silent for a while (it was cut off from NATS): what was sent meanwhile is lost.
            Some(v) if v.heard.elapsed() > wire::RESYNC_AFTER => {
                let node = a.node.clone();
                drop(nodes);
                self.resync(Some(&node));
                nodes = self.nodes.lock();
            }
            Some(_) => {}
        }
        nodes.insert(
            a.node,
            NodeView {
                participants: a.participants,
                capacity: a.capacity,
                draining: a.draining,
                seen: Instant::now(),
                heard: Instant::now(),
            },
        );
        metrics::gauge!("confab_media_nodes").set(nodes.len() as f64);
    }

    fn reported(&self, ev: Event) {
        let participant = ev.participant();
        match ev {
            Event::Moved { .. } => {
                // The node drains: leave it, and have the client offer again elsewhere.
                if let Some(p) = self.placed.lock().remove(&participant) {
                    self.send(&p.node, &Command::Leave { participant });
                }
                let _ = self
                    .events
                    .send(MediaEvent::Reconnect(ParticipantId::new(participant)));
            }
            other => {
                if matches!(other, Event::Disconnected { .. }) {
                    self.placed.lock().remove(&participant);
                }
                if let Some(ev) = other.to_sfu() {
                    let _ = self.events.send(MediaEvent::Sfu(ev));
                }
            }
        }
    }

    /// Forgets nodes not heard from for `NODE_LOST_AFTER`; their participants reconnect.
    /// While this node is cut off from NATS, silence proves nothing (media still flows): the
    /// clock starts again when it is back.
    fn expire(&self, now: Instant) {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            for v in self.nodes.lock().values_mut() {
                v.seen = now;
            }
            self.cut_off
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        if self
            .cut_off
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            self.resync(None);
        }
        let lost: Vec<String> = {
            let mut nodes = self.nodes.lock();
            let lost: Vec<String> = nodes
                .iter()
                .filter(|(_, v)| now.duration_since(v.seen) >= wire::NODE_LOST_AFTER)
                .map(|(n, _)| n.clone())
                .collect();
            for n in &lost {
                nodes.remove(n);
            }
            metrics::gauge!("confab_media_nodes").set(nodes.len() as f64);
            lost
        };
        if lost.is_empty() {
            return;
        }
        let moved: Vec<u64> = {
            let mut placed = self.placed.lock();
            let ids: Vec<u64> = placed
                .iter()
                .filter(|(_, p)| lost.contains(&p.node))
                .map(|(id, _)| *id)
                .collect();
            for id in &ids {
                placed.remove(id);
            }
            ids
        };
        tracing::warn!(nodes = ?lost, participants = moved.len(), "media node lost; its participants reconnect");
        metrics::counter!("confab_media_nodes_lost_total").increment(lost.len() as u64);
        for id in moved {
            let _ = self
                .events
                .send(MediaEvent::Reconnect(ParticipantId::new(id)));
        }
    }

    fn send(&self, node: &str, cmd: &Command) {
        let subject = format!("{}.media.{}", self.prefix, token(node));
        let body = match serde_json::to_vec(cmd) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "media command not encoded");
                return;
            }
        };
        // One task publishes them in call order, so a participant's flags never overtake its
        // leave, nor one command another.
        let _ = self.outbox.send((subject, body.into()));
    }

    async fn request(&self, node: &str, cmd: &Command) -> Result<Reply, SfuError> {
        let subject = format!("{}.media.{}", self.prefix, token(node));
        let body = serde_json::to_vec(cmd).map_err(|e| SfuError::Io(e.to_string()))?;
        let answer =
            tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(subject, body.into()))
                .await
                .map_err(|_| SfuError::Io(format!("media node {node} did not answer")))?
                .map_err(|e| SfuError::Io(format!("media node {node}: {e}")))?;
        serde_json::from_slice(&answer.payload)
            .map_err(|e| SfuError::Io(format!("media node {node}: bad reply: {e}")))
    }

    /// The channel's placement for one more participant, changed in PostgreSQL if needed.
    async fn place(&self, channel: ChannelId) -> Result<(Decision, Vec<String>), SfuError> {
        for _ in 0..8 {
            let current = self
                .chat
                .voice_placement(channel)
                .await
                .map_err(|e| SfuError::Io(format!("reading the placement: {e}")))?;
            let nodes = self.nodes();
            let names = current
                .as_ref()
                .map(|p| p.nodes.clone())
                .unwrap_or_default();
            let Some(d) = choose(&names, &nodes) else {
                return Err(SfuError::Io("no media node is available".into()));
            };
            let Some(new_nodes) = d.new_nodes.clone() else {
                return Ok((d, names));
            };
            let won = self
                .chat
                .set_voice_placement(channel, current.map(|p| p.version), &new_nodes)
                .await
                .map_err(|e| SfuError::Io(format!("writing the placement: {e}")))?;
            if won {
                tracing::info!(channel = %channel, nodes = ?new_nodes, "voice channel placed");
                metrics::counter!("confab_media_placements_total").increment(1);
                let room = channel.get() as u64;
                for n in &new_nodes {
                    if *n != d.node {
                        self.send(
                            n,
                            &Command::RoomNodes {
                                room,
                                nodes: new_nodes.clone(),
                            },
                        );
                    }
                }
                return Ok((d, new_nodes));
            }
            // Another api node changed it first: read it again.
        }
        Err(SfuError::Io("the placement kept changing".into()))
    }

    pub async fn join(&self, req: JoinRequest, flags: Flags) -> Result<String, SfuError> {
        let channel = ChannelId::new(Snowflake(req.room.get() as i64));
        let participant = req.participant.get();
        for _ in 0..4 {
            let (decision, room_nodes) = self.place(channel).await?;
            let node = decision.node;
            // A rejoin placed on another node than before: leave the old one.
            let before = self.placed.lock().remove(&participant);
            if let Some(b) = before.filter(|b| b.node != node) {
                self.send(&b.node, &Command::Leave { participant });
            }
            self.nodes
                .lock()
                .entry(node.clone())
                .and_modify(|v| v.participants += 1);
            let cmd = Command::Join {
                room: req.room.get(),
                participant,
                user: req.user_id.get(),
                offer: req.offer_sdp.clone(),
                owner: self.me.clone(),
                flags,
                room_nodes,
                over_capacity: decision.over_capacity,
            };
            match self.request(&node, &cmd).await {
                Ok(Reply::Answer(sdp)) => {
                    self.placed.lock().insert(
                        participant,
                        Placed {
                            node,
                            room: req.room.get(),
                            flags: None,
                            subs: None,
                        },
                    );
                    return Ok(sdp);
                }
                Ok(Reply::Draining) => {
                    if let Some(v) = self.nodes.lock().get_mut(&node) {
                        v.draining = true;
                    }
                }
                Ok(Reply::Full) => {
                    if let Some(v) = self.nodes.lock().get_mut(&node) {
                        v.participants = v.participants.max(v.capacity);
                    }
                }
                Ok(other) => return Err(refusal(other)),
                Err(e) => {
                    tracing::warn!(%node, error = %e, "media node unreachable; placing elsewhere");
                    self.nodes.lock().remove(&node);
                }
            }
        }
        Err(SfuError::Io("no media node took the participant".into()))
    }

    pub async fn renegotiate(
        &self,
        participant: ParticipantId,
        sdp: String,
    ) -> Result<String, SfuError> {
        let node = self
            .node_of(participant)
            .ok_or(SfuError::UnknownParticipant)?;
        let cmd = Command::Offer {
            participant: participant.get(),
            offer: sdp,
        };
        match self.request(&node, &cmd).await? {
            Reply::Answer(sdp) => Ok(sdp),
            other => Err(refusal(other)),
        }
    }

    pub fn leave(&self, participant: ParticipantId) {
        let gone = self.placed.lock().remove(&participant.get());
        if let Some(p) = gone {
            self.send(
                &p.node,
                &Command::Leave {
                    participant: participant.get(),
                },
            );
        }
    }

    fn to_node(&self, participant: ParticipantId, cmd: Command) {
        if let Some(node) = self.node_of(participant) {
            self.send(&node, &cmd);
        }
    }

    pub fn set_flags(&self, participant: ParticipantId, flags: Flags) {
        if let Some(p) = self.placed.lock().get_mut(&participant.get()) {
            p.flags = Some(flags);
        }
        self.to_node(
            participant,
            Command::Flags {
                participant: participant.get(),
                flags,
            },
        );
    }

    pub fn set_video_subscriptions(
        &self,
        participant: ParticipantId,
        subs: Vec<VideoSubscription>,
    ) {
        let subs: Vec<wire::Subscription> = subs.iter().map(wire::Subscription::of).collect();
        if let Some(p) = self.placed.lock().get_mut(&participant.get()) {
            p.subs = Some(subs.clone());
        }
        self.to_node(
            participant,
            Command::VideoSubscriptions {
                participant: participant.get(),
                subs,
            },
        );
    }

    /// Sends again the switches and subscriptions of every participant on `node` (all nodes
    /// when None): after either side was cut off from NATS, commands may have been lost.
    fn resync(&self, node: Option<&str>) {
        let cmds: Vec<(String, Command)> = self
            .placed
            .lock()
            .iter()
            .filter(|(_, p)| node.is_none_or(|n| p.node == n))
            .flat_map(|(id, p)| {
                let flags = p.flags.map(|flags| {
                    (
                        p.node.clone(),
                        Command::Flags {
                            participant: *id,
                            flags,
                        },
                    )
                });
                let subs = p.subs.clone().map(|subs| {
                    (
                        p.node.clone(),
                        Command::VideoSubscriptions {
                            participant: *id,
                            subs,
                        },
                    )
                });
                flags.into_iter().chain(subs)
            })
            .collect();
        if !cmds.is_empty() {
            tracing::info!(
                commands = cmds.len(),
                "media: sending participants' switches again after a NATS interruption"
            );
        }
        for (n, cmd) in cmds {
            self.send(&n, &cmd);
        }
    }

    pub fn set_video_track_kinds(
        &self,
        participant: ParticipantId,
        kinds: Vec<(String, VideoTrackKind)>,
    ) {
        self.to_node(
            participant,
            Command::VideoTrackKinds {
                participant: participant.get(),
                kinds: kinds.iter().map(wire::TrackKind::of).collect(),
            },
        );
    }

    pub fn set_stream_audio_mid(&self, participant: ParticipantId, mid: Option<String>) {
        self.to_node(
            participant,
            Command::StreamAudioMid {
                participant: participant.get(),
                mid,
            },
        );
    }

    /// Rooms this node placed participants in, per media node (for tests and diagnostics).
    pub fn rooms_on(&self, node: &str) -> Vec<u64> {
        let mut rooms: Vec<u64> = self
            .placed
            .lock()
            .values()
            .filter(|p| p.node == node)
            .map(|p| p.room)
            .collect();
        rooms.sort_unstable();
        rooms.dedup();
        rooms
    }
}

fn refusal(reply: Reply) -> SfuError {
    match reply {
        Reply::InvalidSdp(m) => SfuError::InvalidSdp(m),
        Reply::UnknownParticipant => SfuError::UnknownParticipant,
        Reply::Draining => SfuError::Io("the media node drains".into()),
        Reply::Full => SfuError::Io("the media node is full".into()),
        Reply::Failed(m) => SfuError::Io(m),
        Reply::Answer(_) => SfuError::Io("unexpected answer".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(participants: usize, capacity: usize, draining: bool) -> NodeView {
        NodeView {
            participants,
            capacity,
            draining,
            seen: Instant::now(),
            heard: Instant::now(),
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_new_channel_goes_to_the_least_loaded_node() {
        let nodes = HashMap::from([
            ("m1".to_string(), view(5, 0, false)),
            ("m2".to_string(), view(2, 0, false)),
        ]);
        let d = choose(&[], &nodes).unwrap();
        assert_eq!(d.node, "m2");
        assert_eq!(d.new_nodes, Some(names(&["m2"])));
    }

    #[test]
    fn a_placed_channel_stays_where_it_is() {
        let nodes = HashMap::from([
            ("m1".to_string(), view(5, 0, false)),
            ("m2".to_string(), view(0, 0, false)),
        ]);
        let d = choose(&names(&["m1"]), &nodes).unwrap();
        assert_eq!(
            d,
            Decision {
                node: "m1".into(),
                new_nodes: None,
                over_capacity: false
            }
        );
    }

    #[test]
    fn a_full_node_makes_the_channel_span_another() {
        let nodes = HashMap::from([
            ("m1".to_string(), view(4, 4, false)),
            ("m2".to_string(), view(1, 4, false)),
        ]);
        let d = choose(&names(&["m1"]), &nodes).unwrap();
        assert_eq!(d.node, "m2");
        assert_eq!(d.new_nodes, Some(names(&["m1", "m2"])));
        // Then joins go to whichever of its nodes has room.
        let d = choose(&names(&["m1", "m2"]), &nodes).unwrap();
        assert_eq!(
            d,
            Decision {
                node: "m2".into(),
                new_nodes: None,
                over_capacity: false
            }
        );
    }

    #[test]
    fn dead_and_draining_nodes_are_dropped_from_the_placement() {
        let nodes = HashMap::from([
            ("m2".to_string(), view(1, 0, true)),
            ("m3".to_string(), view(0, 0, false)),
        ]);
        // m1 is not announced any more, m2 drains.
        let d = choose(&names(&["m1", "m2"]), &nodes).unwrap();
        assert_eq!(d.node, "m3");
        assert_eq!(d.new_nodes, Some(names(&["m3"])));
        assert!(choose(&names(&["m1"]), &HashMap::new()).is_none());
    }

    #[test]
    fn when_every_node_is_full_the_channel_stays_on_its_own() {
        let nodes = HashMap::from([
            ("m1".to_string(), view(4, 4, false)),
            ("m2".to_string(), view(9, 4, false)),
        ]);
        // No node has room: the channel does not spread, m1 takes one more.
        let d = choose(&names(&["m1"]), &nodes).unwrap();
        assert_eq!(
            d,
            Decision {
                node: "m1".into(),
                new_nodes: None,
                over_capacity: true
            }
        );
        // A new channel then goes to the least loaded, full or not.
        let d = choose(&[], &nodes).unwrap();
        assert_eq!(d.node, "m1");
    }
}
