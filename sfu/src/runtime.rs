//! The UDP loop: a thin shell around [`SfuCore`] and the [`Sfu`] handle.
//!
//! **Concurrency choice.** One dedicated OS thread owns the socket, every room
//! and every peer, and runs a *current-thread* tokio runtime of its own:
//! - owning all state on one thread means no locks on the packet path and no
//!   cross-thread hand-off between receiving a packet and forwarding it;
//! - a thread of its own keeps media latency independent of the HTTP/WebSocket
//!   work-stealing runtime (a burst of REST requests cannot delay forwarding);
//! - tokio inside it (rather than a raw blocking loop) gives us `select!` over
//!   socket readiness, the command channel and one timer without a self-pipe
//!   or busy polling, and lets `join`/`renegotiate` answer over oneshots;
//! - the per-listener work of the fast path (copy, SRTP, send) is spread
//!   over send lanes, one thread per core, lane 0 on this thread
//!   (`send_workers.rs` says how and why).
//!
//! With `SfuConfig::relay_bind`, the same loop also owns a second socket, the
//! relay socket (audio to and from other media nodes hosting the same rooms,
//! `core/relay.rs`): it is read like the main one, and what the core queued
//! for other nodes is sent on it after each iteration.
//!
//! Each wake-up drains every readable datagram (up to a batch), then flushes
//! all subscribers written to in that batch with one str0m poll each, then
//! sends. Timers: the core keeps one deadline per peer in a heap; the loop
//! sleeps until the earliest.

use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::core::SfuCore;
use crate::send_workers::SendLanes;
use crate::tcp::{IceTcpConfig, TcpInput, TcpPlane};
use crate::{
    Ipv6Media, JoinRequest, ParticipantId, RelayEndpoint, RoomId, SfuConfig, SfuError, SfuEvent,
    VideoSubscription, VideoTrackKind,
};
use str0m::net::Protocol;

/// Datagrams handled per wake-up before flushing (bounds latency under load).
const RECV_BATCH: usize = 64;
/// Receive buffer; anything this large or larger is not a WebRTC datagram.
const RECV_BUF: usize = 4096;
/// Receive buffer of the relay socket: one byte more than the largest relay datagram.
const RELAY_RECV_BUF: usize = crate::relay::MAX_DATAGRAM + 1;

enum Command {
    Join(JoinRequest, oneshot::Sender<Result<String, SfuError>>),
    Renegotiate(
        ParticipantId,
        String,
        oneshot::Sender<Result<String, SfuError>>,
    ),
    Leave(ParticipantId),
    ServerMute(ParticipantId, bool),
    Deaf(ParticipantId, bool),
    SelfMute(ParticipantId, bool),
    VideoAllowed(ParticipantId, bool),
    SelfVideo(ParticipantId, bool, bool),
    PrioritySpeaker(ParticipantId, bool),
    VideoSubscriptions(ParticipantId, Vec<VideoSubscription>),
    VideoTrackKinds(ParticipantId, Vec<(String, VideoTrackKind)>),
    StreamAudioMid(ParticipantId, Option<String>),
    RelayPeers(RoomId, Vec<RelayEndpoint>),
    Shutdown,
}

struct Inner {
    cmd: mpsc::UnboundedSender<Command>,
    local_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    ipv6_addr: Option<SocketAddr>,
    relay: Option<RelayEndpoint>,
    running: Arc<AtomicBool>,
}

/// Handle to the media plane. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Sfu {
    inner: Arc<Inner>,
}

/// Clears the running flag when the loop thread ends, also by panic.
struct RunningGuard(Arc<AtomicBool>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

fn set_socket_buffers(socket: &StdUdpSocket, bytes: usize) {
    if bytes == 0 {
        return;
    }
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let val: libc::c_int = bytes.min(i32::MAX as usize) as libc::c_int;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: fd is a valid open socket; val lives across the call and the
        // length matches its type.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &val as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::warn!(opt, bytes, "could not set UDP socket buffer size");
        }
    }
}

impl Sfu {
    /// Binds the UDP socket and starts the media loop.
    pub fn start(config: SfuConfig) -> Result<(Sfu, mpsc::UnboundedReceiver<SfuEvent>), SfuError> {
        if config.public_ip.is_unspecified() {
            return Err(SfuError::InvalidConfig(
                "public_ip must be a concrete address, not 0.0.0.0/::".into(),
            ));
        }
        let socket = StdUdpSocket::bind(config.udp_bind)
            .map_err(|e| SfuError::Io(format!("bind {}: {e}", config.udp_bind)))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| SfuError::Io(e.to_string()))?;
        set_socket_buffers(&socket, config.socket_buffer_bytes);
        let local_addr = socket
            .local_addr()
            .map_err(|e| SfuError::Io(e.to_string()))?;
        let announced = SocketAddr::new(config.public_ip, local_addr.port());
        let mut core = SfuCore::new(&config, announced, Instant::now())?;
        let relay = match config.relay_bind {
            Some(bind) => {
                let (socket, endpoint) = bind_relay(bind, &config)?;
                core.enable_relay(endpoint.clone());
                tracing::info!(relay = %endpoint.addr, "SFU relay socket bound");
                Some((socket, endpoint))
            }
            None => None,
        };
        let (relay_socket, relay_endpoint) = relay.unzip();
        let tcp_listener = config
            .ice_tcp
            .as_ref()
            .and_then(|tcp| bind_ice_tcp(tcp, local_addr.port()));
        let tcp_addr = tcp_listener.as_ref().and_then(|l| l.local_addr().ok());
        if let Some(addr) = tcp_addr {
            core.enable_ice_tcp(SocketAddr::new(config.public_ip, addr.port()));
        }
        let tcp_config = config.ice_tcp.clone();
        let socket6 = config
            .ipv6
            .as_ref()
            .and_then(|v6| bind_ipv6(v6, local_addr.port(), config.socket_buffer_bytes));
        let ipv6_addr = socket6.as_ref().and_then(|s| s.local_addr().ok());
        if let (Some(bound), Some(v6)) = (ipv6_addr, &config.ipv6) {
            core.enable_ipv6(SocketAddr::new(IpAddr::V6(v6.public_ip), bound.port()));
        }
        crate::metrics::register_tcp_metrics();

        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let running = Arc::new(AtomicBool::new(true));
        let guard = RunningGuard(running.clone());
        std::thread::Builder::new()
            .name("confab-sfu".into())
            .spawn(move || {
                let _guard = guard;
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "SFU runtime failed to start");
                        return;
                    }
                };
                let lanes = match SendLanes::start(core.fast_lane_count(), || {
                    socket.try_clone().map(OwnedFd::from)
                }) {
                    Ok(lanes) => lanes,
                    Err(e) => {
                        tracing::error!(error = %e, "SFU send workers failed to start");
                        return;
                    }
                };
                rt.block_on(async move {
                    let relay = match relay_socket.map(UdpSocket::from_std).transpose() {
                        Ok(relay) => relay,
                        Err(e) => {
                            tracing::error!(error = %e, "SFU relay socket registration failed");
                            return;
                        }
                    };
                    let tcp = match (tcp_listener, tcp_config) {
                        (Some(listener), Some(config)) => match TcpPlane::start(listener, config) {
                            Ok(plane) => Some(plane),
                            Err(e) => {
                                tracing::error!(error = %e, "ICE-TCP listener registration failed");
                                return;
                            }
                        },
                        _ => None,
                    };
                    let socket6 = match socket6.map(UdpSocket::from_std).transpose() {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::error!(error = %e, "SFU IPv6 socket registration failed");
                            return;
                        }
                    };
                    let sockets = Sockets {
                        relay,
                        tcp,
                        socket6,
                    };
                    match UdpSocket::from_std(socket) {
                        Ok(socket) => run(socket, sockets, core, lanes, cmd_rx, ev_tx).await,
                        Err(e) => tracing::error!(error = %e, "SFU socket registration failed"),
                    }
                });
            })
            .map_err(|e| SfuError::Io(format!("spawn SFU thread: {e}")))?;
        tracing::info!(%local_addr, %announced, ?tcp_addr, ?ipv6_addr, "SFU media loop started");
        let inner = Inner {
            cmd: cmd_tx,
            local_addr,
            tcp_addr,
            ipv6_addr,
            relay: relay_endpoint,
            running,
        };
        Ok((
            Sfu {
                inner: Arc::new(inner),
            },
            ev_rx,
        ))
    }

    /// Actual bound UDP address (port 0 → the ephemeral port chosen).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The bound ICE-TCP listener's address, when ICE over TCP is on.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.inner.tcp_addr
    }

    /// The bound IPv6 socket's address, when IPv6 candidates are on.
    pub fn ipv6_addr(&self) -> Option<SocketAddr> {
        self.inner.ipv6_addr
    }

    /// `confab_sfu_loop_busy_seconds_total` and `confab_sfu_loop_iterations_total` (summed over
    /// the media loops of this process) in Prometheus text format, for `/metrics`.
    pub fn loop_metrics_text() -> String {
        crate::metrics::loop_metrics_text()
    }

    /// Whether the media loop thread is alive (for `/readyz`).
    pub fn is_running(&self) -> bool {
        self.inner.running.load(Ordering::SeqCst)
    }

    fn send(&self, cmd: Command) -> Result<(), SfuError> {
        self.inner.cmd.send(cmd).map_err(|_| SfuError::Stopped)
    }

    /// Joins (or rejoins) a voice room with the client's offer; returns the answer.
    pub async fn join(&self, req: JoinRequest) -> Result<String, SfuError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Join(req, tx))?;
        rx.await.map_err(|_| SfuError::Stopped)?
    }

    /// Applies a new offer from the client (e.g. after `RenegotiationNeeded`).
    pub async fn renegotiate(
        &self,
        participant: ParticipantId,
        offer_sdp: String,
    ) -> Result<String, SfuError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Renegotiate(participant, offer_sdp, tx))?;
        rx.await.map_err(|_| SfuError::Stopped)?
    }

    pub fn leave(&self, participant: ParticipantId) {
        let _ = self.send(Command::Leave(participant));
    }

    pub fn set_server_mute(&self, participant: ParticipantId, muted: bool) {
        let _ = self.send(Command::ServerMute(participant, muted));
    }

    pub fn set_deaf(&self, participant: ParticipantId, deaf: bool) {
        let _ = self.send(Command::Deaf(participant, deaf));
    }

    pub fn set_self_mute(&self, participant: ParticipantId, muted: bool) {
        let _ = self.send(Command::SelfMute(participant, muted));
    }

    /// Whether `participant` may publish video (default true); when false its
    /// video is dropped on arrival and never forwarded.
    pub fn set_video_allowed(&self, participant: ParticipantId, allowed: bool) {
        let _ = self.send(Command::VideoAllowed(participant, allowed));
    }

    /// The client's camera and screen-share switches (`self_video`,
    /// `self_stream`; default on): packets of a track switched off are
    /// dropped on arrival.
    pub fn set_self_video(&self, participant: ParticipantId, camera: bool, screen: bool) {
        let _ = self.send(Command::SelfVideo(participant, camera, screen));
    }

    /// PRIORITY_SPEAKER: this participant is preferred for the loudest-speaker
    /// slots (a talking priority speaker displaces a talking one without it).
    pub fn set_priority_speaker(&self, participant: ParticipantId, priority: bool) {
        let _ = self.send(Command::PrioritySpeaker(participant, priority));
    }

    /// Which videos `participant` shows and at which size (replaces the
    /// previous list; a video not listed is not shown). The SFU puts each on
    /// one of the client's recvonly video transceivers (reported by
    /// `SfuEvent::VideoSlots`) and picks the simulcast layer per view.
    pub fn set_video_subscriptions(
        &self,
        participant: ParticipantId,
        subs: Vec<VideoSubscription>,
    ) {
        let _ = self.send(Command::VideoSubscriptions(participant, subs));
    }

    /// Declares which sending video m-line (by mid) is the camera and which
    /// the screen share, when the m-line order rule (first = camera, second =
    /// screen) does not fit the client.
    pub fn set_video_track_kinds(
        &self,
        participant: ParticipantId,
        kinds: Vec<(String, VideoTrackKind)>,
    ) {
        let _ = self.send(Command::VideoTrackKinds(participant, kinds));
    }

    /// Declares which sending audio m-line carries the sound of the client's
    /// screen share (`None`: none). See [`SfuCore::set_stream_audio_mid`].
    pub fn set_stream_audio_mid(&self, participant: ParticipantId, mid: Option<String>) {
        let _ = self.send(Command::StreamAudioMid(participant, mid));
    }

    /// This node's relay endpoint (address other media nodes send to and the
    /// key they must use), if relaying is on (`SfuConfig::relay_bind`).
    pub fn relay_endpoint(&self) -> Option<RelayEndpoint> {
        self.inner.relay.clone()
    }

    /// The other media nodes currently hosting `room` (replaces the previous
    /// list; empty = the room lives only here). May be called before the
    /// room's first local join: the list is kept until replaced.
    pub fn set_relay_peers(&self, room: RoomId, peers: Vec<RelayEndpoint>) {
        let _ = self.send(Command::RelayPeers(room, peers));
    }

    /// Closes every peer and stops the loop (the thread exits shortly after).
    pub fn shutdown(&self) {
        let _ = self.send(Command::Shutdown);
    }
}

/// Returns false when the loop must stop.
fn handle_command(core: &mut SfuCore, cmd: Command) -> bool {
    let now = Instant::now();
    match cmd {
        Command::Join(req, reply) => {
            let _ = reply.send(core.join(now, req));
        }
        Command::Renegotiate(p, sdp, reply) => {
            let _ = reply.send(core.renegotiate(now, p, &sdp));
        }
        Command::Leave(p) => core.leave(now, p),
        Command::ServerMute(p, m) => core.set_server_mute(p, m),
        Command::Deaf(p, d) => core.set_deaf(p, d),
        Command::SelfMute(p, m) => core.set_self_mute(p, m),
        Command::VideoAllowed(p, a) => core.set_video_allowed(now, p, a),
        Command::SelfVideo(p, c, s) => core.set_self_video(now, p, c, s),
        Command::PrioritySpeaker(p, v) => core.set_priority_speaker(p, v),
        Command::VideoSubscriptions(p, subs) => core.set_video_subscriptions(now, p, subs),
        Command::VideoTrackKinds(p, kinds) => core.set_video_track_kinds(now, p, kinds),
        Command::StreamAudioMid(p, mid) => core.set_stream_audio_mid(now, p, mid),
        Command::RelayPeers(room, peers) => core.set_relay_peers(room, peers),
        Command::Shutdown => {
            core.shutdown(now);
            return false;
        }
    }
    true
}

/// Binds the ICE-TCP listener (port 0 = the UDP socket's port number); None, with a warning,
/// when that fails: voice still works over UDP.
fn bind_ice_tcp(config: &IceTcpConfig, udp_port: u16) -> Option<std::net::TcpListener> {
    let mut bind = config.bind;
    if bind.port() == 0 {
        bind.set_port(udp_port);
    }
    match std::net::TcpListener::bind(bind) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(%bind, error = %e, "ICE-TCP off: cannot bind its TCP port (clients whose networks block UDP need TURN)");
            None
        }
    }
}

/// Binds the IPv6 media socket (IPv6 only, so the IPv4 socket keeps its port; port 0 = the IPv4
/// socket's number); None, with a warning, when that fails: voice still works over IPv4.
fn bind_ipv6(v6: &Ipv6Media, udp_port: u16, buffers: usize) -> Option<StdUdpSocket> {
    use socket2::{Domain, Protocol as SockProto, Socket, Type};
    let mut bind = v6.bind;
    if bind.port() == 0 {
        bind.set_port(udp_port);
    }
    let socket = (|| {
        let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(SockProto::UDP))?;
        s.set_only_v6(true)?;
        s.set_nonblocking(true)?;
        s.bind(&bind.into())?;
        Ok::<_, std::io::Error>(StdUdpSocket::from(s))
    })();
    match socket {
        Ok(s) => {
            set_socket_buffers(&s, buffers);
            Some(s)
        }
        Err(e) => {
            tracing::warn!(%bind, error = %e, "IPv6 media off: cannot bind its UDP socket");
            None
        }
    }
}

/// Binds the relay socket; the endpoint announces its address (an
/// unspecified IP replaced by the public IP) and a fresh random key.
fn bind_relay(
    bind: SocketAddr,
    config: &SfuConfig,
) -> Result<(StdUdpSocket, RelayEndpoint), SfuError> {
    let socket =
        StdUdpSocket::bind(bind).map_err(|e| SfuError::Io(format!("bind relay {bind}: {e}")))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| SfuError::Io(e.to_string()))?;
    set_socket_buffers(&socket, config.socket_buffer_bytes);
    let mut addr = socket
        .local_addr()
        .map_err(|e| SfuError::Io(e.to_string()))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(config.public_ip);
    }
    let mut key = [0u8; 16];
    aws_lc_rs::rand::fill(&mut key)
        .map_err(|_| SfuError::Io("no random bytes for the relay key".into()))?;
    Ok((socket, RelayEndpoint { addr, key }))
}

/// The loop's sockets besides the main UDP one, each optional.
struct Sockets {
    relay: Option<UdpSocket>,
    tcp: Option<TcpPlane>,
    socket6: Option<UdpSocket>,
}

fn send_all(socket: &UdpSocket, more: &mut Sockets, core: &mut SfuCore, lanes: &mut SendLanes) {
    let main_v6 = core.local_addr().is_ipv6();
    while let Some(t) = core.poll_transmit() {
        if t.proto == Protocol::Tcp {
            if !more
                .tcp
                .as_mut()
                .is_some_and(|tcp| tcp.send(t.destination, &t.contents))
            {
                core.count_io_drop(false);
            }
            continue;
        }
        let out = match &more.socket6 {
            Some(s6) if t.destination.is_ipv6() != main_v6 => s6,
            _ => socket,
        };
        if let Err(e) = out.try_send_to(&t.contents, t.destination) {
            tracing::trace!(error = %e, dest = %t.destination, "UDP send failed");
            core.count_io_drop(false);
        }
    }
    if let Some(relay) = &more.relay {
        core.drain_relay(|dest, bytes| match relay.try_send_to(bytes, dest) {
            Ok(_) => true,
            Err(e) => {
                tracing::trace!(error = %e, %dest, "relay send failed");
                false
            }
        });
    }
    lanes.flush(core, Instant::now());
}

/// The next input from the ICE-TCP connections (if on).
async fn tcp_input(tcp: Option<&mut TcpPlane>) -> Option<TcpInput> {
    match tcp {
        Some(t) => t.input.recv().await,
        None => std::future::pending().await,
    }
}

/// Hands one ICE-TCP input to the core (frames) or the plane (connections opened and closed).
fn handle_tcp_input(core: &mut SfuCore, tcp: &mut TcpPlane, input: TcpInput) {
    match input {
        TcpInput::Opened(from, writer) => tcp.opened(from, writer),
        TcpInput::Frame(from, frame) => core.handle_tcp_frame(Instant::now(), from, &frame),
        TcpInput::Closed(from) => {
            tcp.closed(from);
            core.tcp_closed(from);
        }
    }
}

/// Waits until the socket (if any) is readable.
async fn readable(socket: Option<&UdpSocket>) -> std::io::Result<()> {
    match socket {
        Some(r) => r.readable().await,
        None => std::future::pending().await,
    }
}

async fn run(
    socket: UdpSocket,
    mut more: Sockets,
    mut core: SfuCore,
    mut lanes: SendLanes,
    mut cmd_rx: mpsc::UnboundedReceiver<Command>,
    ev_tx: mpsc::UnboundedSender<SfuEvent>,
) {
    let mut buf = vec![0u8; RECV_BUF];
    let mut relay_buf = vec![0u8; RELAY_RECV_BUF];
    let mut running = true;
    while running {
        let deadline = core
            .poll_timeout()
            .into_iter()
            .chain(lanes.next_deadline())
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        // Set when the wait ends (first thing in each arm): busy time is woke → end of iteration.
        let woke;
        tokio::select! {
            biased;
            cmd = cmd_rx.recv() => { woke = Instant::now(); match cmd {
                Some(cmd) => {
                    running = handle_command(&mut core, cmd);
                    // Take every queued command before touching the network.
                    while running {
                        match cmd_rx.try_recv() {
                            Ok(cmd) => running = handle_command(&mut core, cmd),
                            Err(_) => break,
                        }
                    }
                }
                None => {
                    core.shutdown(Instant::now());
                    running = false;
                }
            }},
            ready = socket.readable() => {
                woke = Instant::now();
                if let Err(e) = ready {
                    tracing::error!(error = %e, "SFU socket failed");
                    break;
                }
                for _ in 0..RECV_BATCH {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, from)) => {
                            if n >= RECV_BUF {
                                core.count_io_drop(true);
                                continue;
                            }
                            core.handle_datagram(Instant::now(), from, &buf[..n]);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            // E.g. ICMP port unreachable reported on the socket.
                            tracing::trace!(error = %e, "UDP receive error");
                            break;
                        }
                    }
                }
            },
            ready = readable(more.socket6.as_ref()) => {
                woke = Instant::now();
                if let Err(e) = ready {
                    tracing::error!(error = %e, "SFU IPv6 socket failed");
                    break;
                }
                if let Some(s6) = &more.socket6 {
                    for _ in 0..RECV_BATCH {
                        match s6.try_recv_from(&mut buf) {
                            Ok((n, from)) => {
                                if n >= RECV_BUF {
                                    core.count_io_drop(true);
                                    continue;
                                }
                                core.handle_datagram(Instant::now(), from, &buf[..n]);
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                tracing::trace!(error = %e, "UDP receive error (IPv6)");
                                break;
                            }
                        }
                    }
                }
            },
            ready = readable(more.relay.as_ref()) => {
                woke = Instant::now();
                if let Err(e) = ready {
                    tracing::error!(error = %e, "SFU relay socket failed");
                    break;
                }
                if let Some(relay) = &more.relay {
                    for _ in 0..RECV_BATCH {
                        match relay.try_recv_from(&mut relay_buf) {
                            Ok((n, from)) => {
                                core.handle_relay_datagram(Instant::now(), from, &relay_buf[..n]);
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                tracing::trace!(error = %e, "relay receive error");
                                break;
                            }
                        }
                    }
                }
            },
            input = tcp_input(more.tcp.as_mut()) => {
                woke = Instant::now();
                if let (Some(input), Some(plane)) = (input, more.tcp.as_mut()) {
                    handle_tcp_input(&mut core, plane, input);
                    for _ in 1..RECV_BATCH {
                        match plane.input.try_recv() {
                            Ok(input) => handle_tcp_input(&mut core, plane, input),
                            Err(_) => break,
                        }
                    }
                }
            },
            _ = tokio::time::sleep_until(deadline.into()) => woke = Instant::now(),
        }
        let now = Instant::now();
        core.handle_timeout(now);
        core.flush(now);
        send_all(&socket, &mut more, &mut core, &mut lanes);
        while let Some(ev) = core.poll_event() {
            let _ = ev_tx.send(ev);
        }
        // Two clock reads and two relaxed adds per iteration (an iteration handles up to a
        // whole receive batch), never per packet.
        let busy = woke.elapsed().as_nanos() as u64;
        crate::metrics::LOOP_BUSY_NANOS.fetch_add(busy, std::sync::atomic::Ordering::Relaxed);
        crate::metrics::LOOP_ITERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    tracing::info!("SFU media loop stopped");
}
