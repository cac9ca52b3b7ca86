//! Events the SFU reports to the signaling layer.

/// Which user is heard on one listening slot (a recvonly audio transceiver of
/// the client, identified by its `mid`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SlotAssignment {
    /// The `mid` of the client's recvonly transceiver.
    pub mid: String,
    /// The user whose audio is forwarded on it, or `None` for an unused slot.
    pub user_id: Option<u64>,
}

/// Something the signaling layer must know or relay to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SfuEvent {
    /// ICE and DTLS are up for this participant; media flows.
    Connected { participant: u64 },
    /// The participant's connection ended without an explicit `leave` (ICE
    /// consent failure, DTLS close, connect timeout). It has been removed.
    Disconnected { participant: u64, reason: String },
    /// The participant started or stopped speaking (from RFC 6464 audio levels).
    Speaking {
        room: u64,
        participant: u64,
        user_id: u64,
        speaking: bool,
    },
    /// The participant's slot mapping changed (full current mapping, in m-line order).
    Slots {
        participant: u64,
        slots: Vec<SlotAssignment>,
    },
    /// The participant needs at least `audio_slots` recvonly audio transceivers:
    /// the client should offer again with that many (it never removes any).
    RenegotiationNeeded {
        participant: u64,
        audio_slots: usize,
    },
}
