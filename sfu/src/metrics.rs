//! Metric handles, created once (the hot path never looks a metric up by name).
//!
//! Names and meanings are listed in docs/metrics.md. No label carries a user,
//! participant or room id.

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Gauge, Histogram,
};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Time the media loop spent processing (woken → done with the iteration), in nanoseconds, and
/// its iterations; summed over every media loop of the process. Atomics rather than `metrics`
/// counters because a `metrics` counter is an integer and the busy time is rendered in seconds
/// (a float): [`loop_metrics_text`] renders both in Prometheus text format.
pub(crate) static LOOP_BUSY_NANOS: AtomicU64 = AtomicU64::new(0);
pub(crate) static LOOP_ITERATIONS: AtomicU64 = AtomicU64::new(0);
/// Time the send workers spent sealing and sending, in nanoseconds (lane 0's
/// share is in the loop's busy time).
pub(crate) static SEND_WORKER_BUSY_NANOS: AtomicU64 = AtomicU64::new(0);

/// `confab_sfu_send_handoff_seconds`: a lane's outbox queued by the media
/// loop → its send worker starts on it (recorded once per batch).
pub(crate) fn send_handoff_histogram() -> Histogram {
    describe();
    histogram!("confab_sfu_send_handoff_seconds")
}

/// `confab_sfu_loop_busy_seconds_total` and `confab_sfu_loop_iterations_total` in Prometheus
/// text format (appended to `/metrics` by the signalling crate).
pub(crate) fn loop_metrics_text() -> String {
    let busy = LOOP_BUSY_NANOS.load(Ordering::Relaxed) as f64 / 1e9;
    let iterations = LOOP_ITERATIONS.load(Ordering::Relaxed);
    let workers = SEND_WORKER_BUSY_NANOS.load(Ordering::Relaxed) as f64 / 1e9;
    let mut out = String::new();
    let _ = write!(
        out,
        "# HELP confab_sfu_loop_busy_seconds_total Time the SFU media loop spent processing (not waiting for input or timers).\n\
         # TYPE confab_sfu_loop_busy_seconds_total counter\n\
         confab_sfu_loop_busy_seconds_total {busy}\n\
         # HELP confab_sfu_loop_iterations_total Iterations of the SFU media loop (each wake-up: input, commands or timers).\n\
         # TYPE confab_sfu_loop_iterations_total counter\n\
         confab_sfu_loop_iterations_total {iterations}\n\
         # HELP confab_sfu_send_worker_busy_seconds_total Time the SFU send workers spent protecting and sending fast-path datagrams.\n\
         # TYPE confab_sfu_send_worker_busy_seconds_total counter\n\
         confab_sfu_send_worker_busy_seconds_total {workers}\n"
    );
    out
}

/// `# HELP` text and units for every metric of this crate (idempotent).
fn describe() {
    describe_counter!(
        "confab_sfu_packets_forwarded_total",
        "RTP packets handed to one subscriber (RTX and padding excluded), by kind."
    );
    describe_counter!(
        "confab_sfu_packets_received_total",
        "Packets received: decrypted RTP by media kind; rtcp/stun/dtls datagrams by first byte."
    );
    describe_counter!(
        "confab_sfu_keyframe_requests_total",
        "Keyframe requests (PLI) sent to video publishers, by reason."
    );
    describe_counter!(
        "confab_sfu_video_layer_switches_total",
        "Video slots moved to another simulcast layer (at a keyframe), by direction."
    );
    describe_counter!(
        "confab_sfu_video_received_bytes_total",
        "RTP payload bytes of video received from publishers, by simulcast layer."
    );
    describe_counter!(
        "confab_sfu_video_forwarded_bytes_total",
        "RTP payload bytes of video forwarded to subscribers, by simulcast layer."
    );
    describe_counter!(
        "confab_sfu_bytes_received_total",
        "UDP payload bytes received on the media socket."
    );
    describe_counter!(
        "confab_sfu_bytes_sent_total",
        "UDP payload bytes produced for sending on the media socket."
    );
    describe_counter!(
        "confab_sfu_packets_dropped_total",
        "Datagrams or packets dropped, by reason."
    );
    describe_counter!(
        "confab_sfu_nacks_received_total",
        "NACK requests received from subscribers."
    );
    describe_counter!(
        "confab_sfu_retransmissions_total",
        "RTX packets sent in answer to NACKs."
    );
    describe_histogram!(
        "confab_sfu_receive_loss_ratio",
        "Fraction lost on incoming streams, per stats interval and stream."
    );
    describe_histogram!(
        "confab_sfu_jitter_seconds",
        "Interarrival jitter of incoming streams, per stats interval and stream."
    );
    describe_histogram!(
        "confab_sfu_send_handoff_seconds",
        "Delay from the media loop queueing a send lane's batch to its send worker starting on it."
    );
    describe_histogram!(
        "confab_sfu_rtt_seconds",
        "Round-trip time to subscribers, from their RTCP receiver reports (per outgoing stream)."
    );
    describe_histogram!(
        "confab_sfu_subscriber_loss_ratio",
        "Fraction lost on outgoing streams as subscribers report it in RTCP receiver reports."
    );
    describe_histogram!(
        "confab_sfu_subscriber_jitter_seconds",
        "Interarrival jitter of outgoing streams as subscribers report it in RTCP receiver reports."
    );
    describe_histogram!(
        "confab_sfu_ice_connect_seconds",
        "Answer created to ICE and DTLS connected."
    );
    describe_counter!(
        "confab_sfu_connect_failures_total",
        "Participants that did not connect within the connect timeout."
    );
    describe_histogram!(
        "confab_sfu_forward_latency_seconds",
        "RTP packet received to the subscriber's SRTP datagram handed to the socket layer."
    );
    describe_gauge!(
        "confab_sfu_participants",
        "Participants in the SFU, connected or connecting."
    );
    describe_gauge!("confab_sfu_rooms", "Rooms with at least one participant.");
    describe_gauge!("confab_sfu_tracks", "Published audio tracks.");
    describe_counter!(
        "confab_sfu_relay_packets_total",
        "Relay datagrams between media nodes: sent to other nodes, received and accepted from them."
    );
    describe_counter!(
        "confab_sfu_relay_dropped_total",
        "Relay datagrams refused on arrival or not sent, by reason."
    );
    describe_gauge!(
        "confab_sfu_relay_peers",
        "Relay links: for each room, the other media nodes hosting it (summed over rooms)."
    );
    describe_gauge!(
        "confab_sfu_remote_publishers",
        "Publishers of other media nodes currently relayed to this node."
    );
    describe_gauge!(
        "confab_sfu_tcp_connections",
        "Open ICE-TCP connections (clients whose networks block UDP)."
    );
    describe_counter!(
        "confab_sfu_tcp_accepted_total",
        "ICE-TCP connections accepted."
    );
    describe_counter!(
        "confab_sfu_tcp_rejected_total",
        "ICE-TCP connections refused at accept, by the limit they hit."
    );
    describe_counter!(
        "confab_sfu_tcp_closed_total",
        "ICE-TCP connections closed, by reason."
    );
}

/// The ICE-TCP metrics, registered at zero (their handles are taken per connection event,
/// never per packet).
pub(crate) fn register_tcp_metrics() {
    describe();
    gauge!("confab_sfu_tcp_connections").increment(0.0);
    counter!("confab_sfu_tcp_accepted_total").increment(0);
    for reason in crate::tcp::REJECT_REASONS {
        counter!("confab_sfu_tcp_rejected_total", "reason" => reason).increment(0);
    }
    for reason in crate::tcp::CloseReason::ALL {
        counter!("confab_sfu_tcp_closed_total", "reason" => reason.label()).increment(0);
    }
}

/// Why a relay datagram was refused or not sent (the `reason` label of
/// `confab_sfu_relay_dropped_total`). A closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelayDrop {
    /// Shorter than the smallest relay datagram.
    Truncated = 0,
    /// Larger than the largest relay datagram (received or to send).
    Oversize = 1,
    /// Not a relay datagram (magic, version), or authentic but inconsistent.
    Malformed = 2,
    /// Did not authenticate with this node's key (wrong key, changed bytes),
    /// or relaying is off.
    Auth = 3,
    /// Names a room that does not span to this node from its sender.
    UnknownRoom = 4,
    /// The room spans here but has no local participant (nobody to hear it).
    NoListeners = 5,
    /// A packet of a remote publisher seen already (or far too old).
    Replay = 6,
    /// Names a publisher that is a participant of this node.
    Conflict = 7,
    /// The relay socket refused the datagram, or the outbox was full.
    SendError = 8,
}

const RELAY_DROP_LABELS: [&str; 9] = [
    "truncated",
    "oversize",
    "malformed",
    "auth",
    "unknown_room",
    "no_listeners",
    "replay",
    "conflict",
    "send_error",
];

/// The relay's metric handles.
pub(crate) struct RelayMetrics {
    pub sent: Counter,
    pub received: Counter,
    dropped: [Counter; 9],
    pub peers: Gauge,
    pub remote_publishers: Gauge,
}

impl RelayMetrics {
    pub fn new() -> Self {
        describe();
        RelayMetrics {
            sent: counter!("confab_sfu_relay_packets_total", "direction" => "sent"),
            received: counter!("confab_sfu_relay_packets_total", "direction" => "received"),
            dropped: RELAY_DROP_LABELS
                .map(|r| counter!("confab_sfu_relay_dropped_total", "reason" => r)),
            peers: gauge!("confab_sfu_relay_peers"),
            remote_publishers: gauge!("confab_sfu_remote_publishers"),
        }
    }

    #[inline]
    pub fn dropped(&self, reason: RelayDrop) -> &Counter {
        &self.dropped[reason as usize]
    }
}

/// Why a datagram or packet was dropped (the `reason` label). A closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// Not STUN/DTLS/RTP/RTCP, truncated, or rejected by str0m's parser.
    Malformed,
    /// RTP/RTCP/DTLS from an address no participant uses.
    UnknownPeer,
    /// STUN binding request whose ufrag matches no participant.
    UnknownUfrag,
    /// Audio from a server-muted participant, or video from one without the
    /// right to publish video.
    Muted,
    /// A payload type the subscriber did not negotiate (e.g. RED to a client without RED).
    UnsupportedPt,
    /// A late packet from before the down-track's current source anchor.
    Stale,
    /// The socket refused the datagram (send buffer full, unreachable, …).
    SendError,
    /// A datagram larger than the receive buffer.
    Oversize,
    /// str0m rejected the input (bad SRTP, DTLS error, …).
    RtcError,
    /// The subscriber has no send stream on the slot's mid (should not happen).
    NoStream,
}

/// Why a keyframe was requested from a publisher (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum KeyframeReason {
    /// A slot starts showing a track (no layer forwarded yet).
    #[default]
    Subscribe,
    /// A slot moves to another layer (view size, liveness or bandwidth).
    Switch,
    /// A subscriber sent PLI/FIR on a slot.
    SubscriberPli,
    /// The periodic pass asks again for a slot still waiting for its keyframe.
    Retry,
}

/// A simulcast layer as a bounded label: its rank among the track's layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayerLabel {
    Low = 0,
    Mid = 1,
    High = 2,
    /// A track sent without simulcast.
    Single = 3,
}

impl LayerLabel {
    /// Layer `index` of a track with `count` layers (lowest first).
    #[inline]
    pub fn of(index: usize, count: usize) -> Self {
        if count <= 1 {
            LayerLabel::Single
        } else if index == 0 {
            LayerLabel::Low
        } else if index + 1 >= count {
            LayerLabel::High
        } else {
            LayerLabel::Mid
        }
    }
}

const LAYER_LABELS: [&str; 4] = ["low", "mid", "high", "single"];

pub(crate) struct Metrics {
    pub forwarded_audio: Counter,
    pub received_audio: Counter,
    pub forwarded_video: Counter,
    pub received_video: Counter,
    /// Screen-share sound (Go Live), apart from voice.
    pub forwarded_stream_audio: Counter,
    pub received_stream_audio: Counter,
    keyframe_requests: [Counter; 4],
    pub layer_switch_up: Counter,
    pub layer_switch_down: Counter,
    video_received_bytes: [Counter; 4],
    video_forwarded_bytes: [Counter; 4],
    pub received_rtcp: Counter,
    pub received_stun: Counter,
    pub received_dtls: Counter,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    drop_malformed: Counter,
    drop_unknown_peer: Counter,
    drop_unknown_ufrag: Counter,
    drop_muted: Counter,
    drop_unsupported_pt: Counter,
    drop_stale: Counter,
    drop_send_error: Counter,
    drop_oversize: Counter,
    drop_rtc_error: Counter,
    drop_no_stream: Counter,
    pub nacks_received: Counter,
    pub retransmissions: Counter,
    pub receive_loss_ratio: Histogram,
    pub jitter_seconds: Histogram,
    pub rtt_seconds: Histogram,
    pub subscriber_loss_ratio: Histogram,
    pub subscriber_jitter_seconds: Histogram,
    pub ice_connect_seconds: Histogram,
    pub connect_failures: Counter,
    pub forward_latency_seconds: Histogram,
    pub participants: Gauge,
    pub rooms: Gauge,
    pub tracks: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        describe();
        let dropped =
            |reason: &'static str| counter!("confab_sfu_packets_dropped_total", "reason" => reason);
        let received =
            |kind: &'static str| counter!("confab_sfu_packets_received_total", "kind" => kind);
        Metrics {
            forwarded_audio: counter!("confab_sfu_packets_forwarded_total", "kind" => "audio"),
            received_audio: received("audio"),
            forwarded_video: counter!("confab_sfu_packets_forwarded_total", "kind" => "video"),
            received_video: received("video"),
            forwarded_stream_audio: counter!("confab_sfu_packets_forwarded_total", "kind" => "stream_audio"),
            received_stream_audio: received("stream_audio"),
            keyframe_requests: ["subscribe", "switch", "subscriber_pli", "retry"]
                .map(|r| counter!("confab_sfu_keyframe_requests_total", "reason" => r)),
            layer_switch_up: counter!("confab_sfu_video_layer_switches_total", "direction" => "up"),
            layer_switch_down: counter!("confab_sfu_video_layer_switches_total", "direction" => "down"),
            video_received_bytes: LAYER_LABELS
                .map(|l| counter!("confab_sfu_video_received_bytes_total", "layer" => l)),
            video_forwarded_bytes: LAYER_LABELS
                .map(|l| counter!("confab_sfu_video_forwarded_bytes_total", "layer" => l)),
            received_rtcp: received("rtcp"),
            received_stun: received("stun"),
            received_dtls: received("dtls"),
            bytes_received: counter!("confab_sfu_bytes_received_total"),
            bytes_sent: counter!("confab_sfu_bytes_sent_total"),
            drop_malformed: dropped("malformed"),
            drop_unknown_peer: dropped("unknown_peer"),
            drop_unknown_ufrag: dropped("unknown_ufrag"),
            drop_muted: dropped("muted"),
            drop_unsupported_pt: dropped("unsupported_pt"),
            drop_stale: dropped("stale"),
            drop_send_error: dropped("send_error"),
            drop_oversize: dropped("oversize"),
            drop_rtc_error: dropped("rtc_error"),
            drop_no_stream: dropped("no_stream"),
            nacks_received: counter!("confab_sfu_nacks_received_total"),
            retransmissions: counter!("confab_sfu_retransmissions_total"),
            receive_loss_ratio: histogram!("confab_sfu_receive_loss_ratio"),
            jitter_seconds: histogram!("confab_sfu_jitter_seconds"),
            rtt_seconds: histogram!("confab_sfu_rtt_seconds"),
            subscriber_loss_ratio: histogram!("confab_sfu_subscriber_loss_ratio"),
            subscriber_jitter_seconds: histogram!("confab_sfu_subscriber_jitter_seconds"),
            ice_connect_seconds: histogram!("confab_sfu_ice_connect_seconds"),
            connect_failures: counter!("confab_sfu_connect_failures_total"),
            forward_latency_seconds: histogram!("confab_sfu_forward_latency_seconds"),
            participants: gauge!("confab_sfu_participants"),
            rooms: gauge!("confab_sfu_rooms"),
            tracks: gauge!("confab_sfu_tracks"),
        }
    }

    #[inline]
    pub fn keyframe_requests(&self, reason: KeyframeReason) -> &Counter {
        &self.keyframe_requests[reason as usize]
    }

    #[inline]
    pub fn video_received_bytes(&self, layer: LayerLabel) -> &Counter {
        &self.video_received_bytes[layer as usize]
    }

    #[inline]
    pub fn video_forwarded_bytes(&self, layer: LayerLabel) -> &Counter {
        &self.video_forwarded_bytes[layer as usize]
    }

    pub fn dropped(&self, reason: DropReason) -> &Counter {
        match reason {
            DropReason::Malformed => &self.drop_malformed,
            DropReason::UnknownPeer => &self.drop_unknown_peer,
            DropReason::UnknownUfrag => &self.drop_unknown_ufrag,
            DropReason::Muted => &self.drop_muted,
            DropReason::UnsupportedPt => &self.drop_unsupported_pt,
            DropReason::Stale => &self.drop_stale,
            DropReason::SendError => &self.drop_send_error,
            DropReason::Oversize => &self.drop_oversize,
            DropReason::RtcError => &self.drop_rtc_error,
            DropReason::NoStream => &self.drop_no_stream,
        }
    }
}
