//! The library behind `confab-loadtest` (see the binary's docs for usage):
//! simulated chat clients and WebRTC voice/video peers, their measurements,
//! and the reports. A library so that benches (`benches/`) can drive the
//! packet paths without a server.

pub mod api;
pub mod audio;
pub mod chat;
pub mod e2ee;
pub mod flood;
pub mod gateway;
pub mod janus;
pub mod limits;
pub mod peer;
pub mod report;
pub mod rx;
pub mod server;
pub mod setup;
pub mod stats;
pub mod timeseries;
pub mod turns;
pub mod udp;
pub mod video;
pub mod video_peer;
pub mod voice;
pub mod vp8;

/// What every scenario needs.
#[derive(Clone)]
pub struct Ctx {
    pub api: api::Api,
    pub clock: stats::Clock,
    pub sfu_pid: Option<u32>,
    pub register_concurrency: usize,
    /// Where the simulated peers' UDP sockets bind (see `local_ip_towards`).
    pub bind_ip: std::net::IpAddr,
}
