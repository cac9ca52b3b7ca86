//! The media plane as the voice service sees it: this process's own SFU (one process), or the
//! cluster's media nodes over NATS (`cluster`). A node of the `media` (or `all`) role in a
//! cluster serves its SFU to every api node (`node`); `wire` is what they say to each other.

pub mod cluster;
pub mod node;
pub mod relay;
pub mod run;
pub mod wire;

use confab_sfu::{
    JoinRequest, ParticipantId, Sfu, SfuError, SfuEvent, VideoSubscription, VideoTrackKind,
};
use std::sync::Arc;
use tokio::sync::mpsc;
pub use wire::Flags;

/// What the media plane reports to the voice service.
#[derive(Debug, Clone)]
pub enum MediaEvent {
    Sfu(SfuEvent),
    /// The participant's media node is gone (died or drains): its client must offer again, to
    /// be placed on another node.
    Reconnect(ParticipantId),
}

#[derive(Clone)]
pub enum MediaPlane {
    /// This process's SFU.
    Local(Sfu),
    /// The cluster's media nodes.
    Cluster(Arc<cluster::ClusterMedia>),
}

impl MediaPlane {
    /// The local SFU's events as media events.
    pub fn local(
        sfu: Sfu,
        mut events: mpsc::UnboundedReceiver<SfuEvent>,
    ) -> (Self, mpsc::UnboundedReceiver<MediaEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if tx.send(MediaEvent::Sfu(ev)).is_err() {
                    return;
                }
            }
        });
        (MediaPlane::Local(sfu), rx)
    }

    /// For `/readyz`: the local SFU's loop is alive. An api node stays ready without media
    /// nodes (chat works; offers are refused until one announces itself).
    pub fn is_running(&self) -> bool {
        match self {
            MediaPlane::Local(sfu) => sfu.is_running(),
            MediaPlane::Cluster(_) => true,
        }
    }

    pub fn shutdown(&self) {
        if let MediaPlane::Local(sfu) = self {
            sfu.shutdown();
        }
    }

    pub async fn join(&self, req: JoinRequest, flags: Flags) -> Result<String, SfuError> {
        match self {
            MediaPlane::Local(sfu) => sfu.join(req).await,
            MediaPlane::Cluster(c) => c.join(req, flags).await,
        }
    }

    pub async fn renegotiate(
        &self,
        participant: ParticipantId,
        sdp: String,
    ) -> Result<String, SfuError> {
        match self {
            MediaPlane::Local(sfu) => sfu.renegotiate(participant, sdp).await,
            MediaPlane::Cluster(c) => c.renegotiate(participant, sdp).await,
        }
    }

    pub fn leave(&self, participant: ParticipantId) {
        match self {
            MediaPlane::Local(sfu) => sfu.leave(participant),
            MediaPlane::Cluster(c) => c.leave(participant),
        }
    }

    pub fn set_flags(&self, id: ParticipantId, f: Flags) {
        match self {
            MediaPlane::Local(sfu) => {
                sfu.set_server_mute(id, f.server_mute);
                sfu.set_self_mute(id, f.self_mute);
                sfu.set_deaf(id, f.deaf);
                sfu.set_video_allowed(id, f.video_allowed);
                sfu.set_self_video(id, f.camera, f.screen);
                sfu.set_priority_speaker(id, f.priority_speaker);
            }
            MediaPlane::Cluster(c) => c.set_flags(id, f),
        }
    }

    pub fn set_video_subscriptions(&self, id: ParticipantId, subs: Vec<VideoSubscription>) {
        match self {
            MediaPlane::Local(sfu) => sfu.set_video_subscriptions(id, subs),
            MediaPlane::Cluster(c) => c.set_video_subscriptions(id, subs),
        }
    }

    pub fn set_stream_audio_mid(&self, id: ParticipantId, mid: Option<String>) {
        match self {
            MediaPlane::Local(sfu) => sfu.set_stream_audio_mid(id, mid),
            MediaPlane::Cluster(c) => c.set_stream_audio_mid(id, mid),
        }
    }

    pub fn set_video_track_kinds(&self, id: ParticipantId, kinds: Vec<(String, VideoTrackKind)>) {
        match self {
            MediaPlane::Local(sfu) => sfu.set_video_track_kinds(id, kinds),
            MediaPlane::Cluster(c) => c.set_video_track_kinds(id, kinds),
        }
    }
}

/// Describes the media plane's cluster metrics and shows them at zero before their first event
/// (docs/metrics.md, "Media nodes").
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge};
    let counters = [
        (
            "confab_media_commands_total",
            "Commands this media node received from api nodes.",
        ),
        (
            "confab_media_commands_undecodable_total",
            "Messages on this media node's command subject that were not commands.",
        ),
        (
            "confab_media_duplicate_node_total",
            "Announcements of this media node's name by another process.",
        ),
        (
            "confab_media_nodes_lost_total",
            "Media nodes this api node stopped hearing from.",
        ),
        (
            "confab_media_placements_total",
            "Voice channels this api node placed on media nodes (or moved, or spread).",
        ),
        (
            "confab_voice_reconnects_total",
            "Voice sessions asked to reconnect because their media node died or drains.",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(name, help);
        metrics::counter!(name).absolute(0);
    }
    let gauges = [
        (
            "confab_media_nodes",
            "Media nodes this api node hears from.",
        ),
        (
            "confab_media_node_participants",
            "Voice participants on this media node.",
        ),
        (
            "confab_media_node_rooms",
            "Voice channels with participants on this media node.",
        ),
        (
            "confab_media_node_draining",
            "1 while this media node drains.",
        ),
    ];
    for (name, help) in gauges {
        describe_gauge!(name, help);
        metrics::gauge!(name).set(0.0);
    }
}
