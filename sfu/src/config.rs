//! SFU configuration.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Configuration of the media plane. Every knob but the two addresses has a
/// default that suits a single-node deployment.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Where the one shared UDP socket binds (port 0 = ephemeral).
    pub udp_bind: SocketAddr,
    /// The IP announced in the ICE host candidate of every answer. Must not be
    /// unspecified (`0.0.0.0`); the port is the socket's actual port.
    pub public_ip: IpAddr,
    /// Maximum size of an SDP offer in bytes.
    pub max_sdp_bytes: usize,
    /// Maximum number of m-lines in an offer.
    pub max_m_lines: usize,
    /// How long a participant may take from join to ICE+DTLS connected before
    /// it is dropped (counted in `confab_sfu_connect_failures_total`).
    pub connect_timeout: Duration,
    /// Negotiate RFC 2198 RED for Opus when the client offers it.
    pub enable_red: bool,
    /// Offer an RTX payload type for Opus so NACKs from clients that negotiate
    /// audio RTX are answered from the send buffer. Browsers do not negotiate
    /// RTX for audio, and str0m 0.25 cannot put RTX and RED on the same codec:
    /// when true, RED is not negotiated. Default false (RED on).
    pub audio_rtx: bool,
    /// Number of forwarded packets per subscriber kept for NACK answers.
    pub audio_send_buffer: usize,
    /// How often str0m reports stats (loss, jitter, RTT, NACKs) for metrics.
    pub stats_interval: Duration,
    /// Listening slots per participant (K): everyone hears at most the K
    /// loudest current speakers (see `selection.rs`), so a listener's SDP and
    /// bandwidth do not grow with the room. Clients are asked for at most
    /// this many recvonly audio transceivers.
    pub max_audio_slots: usize,
    /// Video slots (recvonly video transceivers) used per subscriber; extra
    /// ones in an offer stay unused.
    pub max_video_slots: usize,
    /// Forwarded video packets per subscriber slot kept for NACK answers (RTX).
    pub video_send_buffer: usize,
    /// Estimate the bandwidth towards video-capable subscribers (str0m's TWCC
    /// BWE) and pick lower simulcast layers when it is short. Off by default:
    /// in the load tester the viewers' estimates still fall on loss-based
    /// decreases at ~5 Mbit/s, holding 1080p tiles on the middle layer, and it
    /// costs CPU per forwarded video packet (docs/benchmarks.md); off, layers
    /// are chosen by view size and layer liveness only.
    pub video_bwe: bool,
    /// Starting estimate of that bandwidth estimator.
    pub video_initial_bitrate_kbps: u64,
    /// Starting send-side bandwidth estimate suggested to video publishers
    /// (`x-google-start-bitrate` on the answer's video codecs; 0 = leave the
    /// browser's default, 300 kbit/s in Chrome, which holds a camera to its
    /// lowest simulcast layer for seconds after it comes on).
    pub video_start_bitrate_kbps: u64,
    /// Ask publishers for Opus DTX (`usedtx=1` on Opus in the answer): in silence (a
    /// closed voice-activity gate, a quiet room) a browser then sends a few comfort-noise
    /// packets a second instead of 50. Chrome and Edge read it from the remote description.
    /// Off by default until the hearing checks of the browser suite are shown to hold with it
    /// (one, over IPv6, did not in a full run).
    pub opus_dtx: bool,
    /// Socket buffer sizes requested with SO_RCVBUF / SO_SNDBUF (0 = OS default).
    pub socket_buffer_bytes: usize,
    /// Forward audio through the SFU's own fast path (header rewrite and SRTP
    /// into reusable buffers) instead of str0m's send path. Peers whose SRTP
    /// keys are not known (yet) use str0m's path either way.
    pub fast_path: bool,
    /// Threads that protect and send the fast path's datagrams, the media
    /// loop's own thread included (0 = one per core). Each subscriber stays
    /// on one of them; with 1 the loop does everything itself.
    pub send_workers: usize,
    /// Where the relay socket binds: audio between media nodes hosting the
    /// same room (see `docs/relay.md`). `None` (the default): no relay
    /// socket, rooms live on this node only. Port 0 picks a free port. The
    /// address announced to other nodes is the bound one, with an
    /// unspecified IP replaced by `public_ip`.
    pub relay_bind: Option<SocketAddr>,
    /// ICE over TCP (`tcp.rs`): a passive TCP candidate for clients whose networks block UDP.
    /// `None` (the default): UDP only. A listener that cannot bind turns it off with a warning
    /// (`Sfu::tcp_addr` says whether it is on).
    pub ice_tcp: Option<crate::tcp::IceTcpConfig>,
    /// IPv6 host candidates: a second UDP socket (IPv6 only) and the public IPv6 address
    /// announced for it, beside the IPv4 one. `None` (the default): IPv4 only. A socket that
    /// cannot bind turns it off with a warning (`Sfu::ipv6_addr` says whether it is on).
    pub ipv6: Option<Ipv6Media>,
}

/// The IPv6 side of the media plane (`SfuConfig::ipv6`).
#[derive(Debug, Clone)]
pub struct Ipv6Media {
    /// Where the IPv6 socket binds (`[::]` or an address of this host); port 0 = the IPv4 UDP
    /// socket's port number.
    pub bind: SocketAddr,
    /// The IPv6 address announced in the candidate.
    pub public_ip: std::net::Ipv6Addr,
}

impl SfuConfig {
    /// A config with defaults for every knob.
    pub fn new(udp_bind: SocketAddr, public_ip: IpAddr) -> Self {
        SfuConfig {
            udp_bind,
            public_ip,
            ..Default::default()
        }
    }
}

impl SfuConfig {
    /// Send lanes (= threads) `send_workers` stands for: 0 means one per core.
    pub fn send_lanes(&self) -> usize {
        match self.send_workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .clamp(1, 64)
    }
}

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig {
            udp_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3000),
            public_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            max_sdp_bytes: 64 * 1024,
            max_m_lines: 64,
            connect_timeout: Duration::from_secs(20),
            enable_red: true,
            audio_rtx: false,
            audio_send_buffer: 256,
            stats_interval: Duration::from_secs(5),
            socket_buffer_bytes: 4 * 1024 * 1024,
            max_audio_slots: 3,
            max_video_slots: 9,
            video_send_buffer: 1024,
            video_bwe: false,
            video_initial_bitrate_kbps: 2_500,
            video_start_bitrate_kbps: 2_000,
            opus_dtx: false,
            fast_path: true,
            send_workers: 0,
            relay_bind: None,
            ice_tcp: None,
            ipv6: None,
        }
    }
}
