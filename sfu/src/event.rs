//! Events the SFU reports to the signaling layer.

use crate::{ParticipantId, RoomId, UserTag};

/// Which user is heard on one listening slot (a recvonly audio transceiver of
/// the client, identified by its `mid`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SlotAssignment {
    /// The `mid` of the client's recvonly transceiver.
    pub mid: String,
    /// The user whose audio is forwarded on it, or `None` for an unused slot.
    pub user_id: Option<UserTag>,
    /// The slot carries the sound of `user_id`'s screen share (which the
    /// subscriber watches), not their voice.
    pub stream: bool,
}

/// Which kind of video a published track is.
///
/// How a publisher's m-lines are told apart: among the client's video m-lines
/// that are not `recvonly` (i.e. `sendonly`, `sendrecv` or `inactive`), in
/// m-line order, the **first is the camera and the second the screen share**;
/// further ones are ignored. A client that shares its screen without a camera
/// therefore offers an `inactive` (or `sendonly` without a track) camera
/// transceiver first. A client can override this per mid with
/// [`crate::Sfu::set_video_track_kinds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VideoTrackKind {
    Camera,
    Screen,
}

impl VideoTrackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VideoTrackKind::Camera => "camera",
            VideoTrackKind::Screen => "screen",
        }
    }
}

/// One video a subscriber wants to see, and at which size it is shown (CSS
/// pixels × devicePixelRatio is fine). A track not listed is not shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VideoSubscription {
    pub user_id: UserTag,
    pub track: VideoTrackKind,
    pub width: u32,
    pub height: u32,
}

/// Which video is forwarded on one video slot (a recvonly video transceiver of
/// the client, identified by its `mid`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VideoSlotAssignment {
    pub mid: String,
    pub user_id: Option<UserTag>,
    pub track: Option<VideoTrackKind>,
}

/// Something the signaling layer must know or relay to a client.
///
/// Deliberately not `#[non_exhaustive]`: every consumer is in this workspace,
/// and a new event should fail their matches until they handle it, not fall
/// into a wildcard arm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SfuEvent {
    /// ICE and DTLS are up for this participant; media flows.
    Connected { participant: ParticipantId },
    /// The participant's connection ended without an explicit `leave` (ICE
    /// consent failure, DTLS close, connect timeout). It has been removed.
    Disconnected {
        participant: ParticipantId,
        reason: String,
    },
    /// The participant started or stopped speaking (from RFC 6464 audio levels).
    Speaking {
        room: RoomId,
        participant: ParticipantId,
        user_id: UserTag,
        speaking: bool,
    },
    /// The participant's slot mapping changed (full current mapping, in m-line order).
    Slots {
        participant: ParticipantId,
        slots: Vec<SlotAssignment>,
    },
    /// The participant needs at least `audio_slots` recvonly audio transceivers:
    /// the client should offer again with that many (it never removes any).
    RenegotiationNeeded {
        participant: ParticipantId,
        audio_slots: usize,
    },
    /// The participant's video slot mapping changed (full current mapping of
    /// its recvonly video transceivers, in m-line order).
    VideoSlots {
        participant: ParticipantId,
        slots: Vec<VideoSlotAssignment>,
    },
    /// The simulcast encodings (by `rid`) of a published track that some
    /// subscriber needs. The client should deactivate the others
    /// (`RTCRtpSender.setParameters` with `active: false`); an empty list
    /// means nobody watches the track (it is not forwarded at all). A track
    /// sent without simulcast has one encoding, named `""`.
    /// Reported when the set changes, and once when a track first appears.
    PauseLayers {
        participant: ParticipantId,
        track: VideoTrackKind,
        active_rids: Vec<String>,
    },
    /// How many subscribers have the participant's screen share on a video
    /// slot (Go Live viewers). Reported when it changes while the share is
    /// published, and as 0 once when it stops being watched.
    StreamViewers {
        room: RoomId,
        participant: ParticipantId,
        user_id: UserTag,
        viewers: usize,
    },
}
