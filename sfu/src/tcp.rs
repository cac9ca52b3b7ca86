//! ICE over TCP, passive side (RFC 6544): for clients whose networks block UDP.
//!
//! Every answer carries, besides the UDP host candidate, a passive TCP host candidate on the
//! same IP. A browser that cannot reach the UDP port connects to it and runs ICE, DTLS and
//! SRTP over the connection, each datagram framed by a 16-bit length (RFC 4571). Nothing here
//! knows about peers: complete frames go to the media loop as datagrams from the connection's
//! remote address (str0m sees `Protocol::Tcp`), and what str0m sends to such an address comes
//! back here to be framed and written.
//!
//! A connection costs a socket and two small tasks, so they are bounded: at most
//! `max_connections` in all and `max_per_ip` from one address; a connection must start with a
//! STUN message and get an answer within `handshake_timeout` (a known ICE ufrag with a valid
//! MESSAGE-INTEGRITY; str0m answers nothing else), and one silent for `idle_timeout` is closed
//! (ICE consent checks arrive every few seconds on a live one).
//!
//! The framing is written by hand: it is two bytes, and no maintained crate does RFC 4571 for
//! an ICE agent that is not its own.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Limits of the TCP listener (`SfuConfig::ice_tcp`).
#[derive(Debug, Clone)]
pub struct IceTcpConfig {
    /// Where the listener binds; port 0 = the UDP socket's port number.
    pub bind: SocketAddr,
    pub max_connections: usize,
    pub max_per_ip: usize,
    /// From accept to the first answer (a STUN binding response) at most this long.
    pub handshake_timeout: Duration,
    /// A connection that receives nothing this long is closed.
    pub idle_timeout: Duration,
}

impl IceTcpConfig {
    pub fn new(bind: SocketAddr) -> Self {
        IceTcpConfig {
            bind,
            max_connections: 1024,
            max_per_ip: 16,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Largest frame accepted or sent: the UDP receive buffer's bound (no WebRTC datagram is
/// larger than an MTU).
pub(crate) const MAX_FRAME: usize = 4095;
/// Frames queued towards one connection; past this they are dropped (media is loss-tolerant,
/// and a connection that cannot keep up with its own call must not grow memory).
const WRITE_QUEUE: usize = 512;
/// Frames queued from every connection towards the media loop.
const INPUT_QUEUE: usize = 4096;

/// What the connections tell the media loop.
pub(crate) enum TcpInput {
    /// A connection was accepted: frames for `from` go to `writer`.
    Opened(SocketAddr, mpsc::Sender<Bytes>),
    /// One framed datagram.
    Frame(SocketAddr, Bytes),
    /// The connection from this address is gone.
    Closed(SocketAddr),
}

/// Why a connection ended (the `reason` label of `confab_sfu_tcp_closed_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The client closed it (or reset it).
    Peer,
    /// No STUN first, or no answer within the handshake timeout.
    Handshake,
    /// Nothing received for the idle timeout.
    Idle,
    /// A zero or oversized frame length.
    Framing,
    /// Writing failed.
    Write,
    /// The media loop stopped.
    Shutdown,
}

impl CloseReason {
    pub(crate) const ALL: [CloseReason; 6] = [
        CloseReason::Peer,
        CloseReason::Handshake,
        CloseReason::Idle,
        CloseReason::Framing,
        CloseReason::Write,
        CloseReason::Shutdown,
    ];
    pub(crate) fn label(self) -> &'static str {
        match self {
            CloseReason::Peer => "peer",
            CloseReason::Handshake => "handshake",
            CloseReason::Idle => "idle",
            CloseReason::Framing => "framing",
            CloseReason::Write => "write_error",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// Connections refused at accept (the `reason` label of `confab_sfu_tcp_rejected_total`).
pub(crate) const REJECT_REASONS: [&str; 2] = ["max_connections", "max_per_ip"];

/// The media loop's side: the writers of open connections and the input from all of them.
pub(crate) struct TcpPlane {
    pub(crate) input: mpsc::Receiver<TcpInput>,
    writers: HashMap<SocketAddr, mpsc::Sender<Bytes>>,
    #[cfg_attr(not(test), allow(dead_code))]
    local_addr: SocketAddr,
}

impl TcpPlane {
    /// Binds the listener and starts accepting (on the current tokio runtime).
    pub(crate) fn start(
        listener: std::net::TcpListener,
        config: IceTcpConfig,
    ) -> std::io::Result<TcpPlane> {
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let listener = TcpListener::from_std(listener)?;
        let (tx, input) = mpsc::channel(INPUT_QUEUE);
        tokio::spawn(accept_loop(listener, config, tx));
        Ok(TcpPlane {
            input,
            writers: HashMap::new(),
            local_addr,
        })
    }

    #[cfg(test)]
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub(crate) fn opened(&mut self, from: SocketAddr, writer: mpsc::Sender<Bytes>) {
        self.writers.insert(from, writer);
    }

    pub(crate) fn closed(&mut self, from: SocketAddr) {
        self.writers.remove(&from);
    }

    /// Frames `datagram` and queues it on the connection from `to`; false when there is no
    /// such connection, the frame is too large or the connection's queue is full.
    pub(crate) fn send(&mut self, to: SocketAddr, datagram: &[u8]) -> bool {
        let Some(writer) = self.writers.get(&to) else {
            return false;
        };
        if datagram.is_empty() || datagram.len() > MAX_FRAME {
            return false;
        }
        // One allocation per frame: TCP is the fallback path, its peers are few.
        let mut frame = BytesMut::with_capacity(2 + datagram.len());
        frame.extend_from_slice(&(datagram.len() as u16).to_be_bytes());
        frame.extend_from_slice(datagram);
        writer.try_send(frame.freeze()).is_ok()
    }
}

/// Per-IP connection counts, shared by the accept loop and the connections.
type PerIp = Arc<Mutex<HashMap<IpAddr, usize>>>;

async fn accept_loop(listener: TcpListener, config: IceTcpConfig, tx: mpsc::Sender<TcpInput>) {
    let total = Arc::new(AtomicUsize::new(0));
    let per_ip: PerIp = Arc::default();
    loop {
        let (stream, from) = tokio::select! {
            _ = tx.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "ICE-TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if total.load(Ordering::Relaxed) >= config.max_connections {
            metrics::counter!("confab_sfu_tcp_rejected_total", "reason" => REJECT_REASONS[0])
                .increment(1);
            continue; // dropping the stream closes it
        }
        {
            let mut counts = per_ip.lock();
            let n = counts.entry(from.ip()).or_insert(0);
            if *n >= config.max_per_ip {
                metrics::counter!("confab_sfu_tcp_rejected_total", "reason" => REJECT_REASONS[1])
                    .increment(1);
                continue;
            }
            *n += 1;
        }
        total.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("confab_sfu_tcp_accepted_total").increment(1);
        metrics::gauge!("confab_sfu_tcp_connections").increment(1.0);
        let guard = ConnGuard {
            from,
            total: total.clone(),
            per_ip: per_ip.clone(),
        };
        tokio::spawn(connection(stream, from, config.clone(), tx.clone(), guard));
    }
}

/// Gives a connection's place back when it ends, however it ends.
struct ConnGuard {
    from: SocketAddr,
    total: Arc<AtomicUsize>,
    per_ip: PerIp,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.total.fetch_sub(1, Ordering::Relaxed);
        let mut counts = self.per_ip.lock();
        if let Some(n) = counts.get_mut(&self.from.ip()) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.from.ip());
            }
        }
        metrics::gauge!("confab_sfu_tcp_connections").decrement(1.0);
    }
}

async fn connection(
    stream: TcpStream,
    from: SocketAddr,
    config: IceTcpConfig,
    tx: mpsc::Sender<TcpInput>,
    _guard: ConnGuard,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (wtx, mut wrx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    if tx.send(TcpInput::Opened(from, wtx)).await.is_err() {
        return;
    }
    let answered = Arc::new(AtomicBool::new(false));
    let write_answered = answered.clone();
    let mut write = tokio::spawn(async move {
        while let Some(frame) = wrx.recv().await {
            if writer.write_all(&frame).await.is_err() {
                return CloseReason::Write;
            }
            write_answered.store(true, Ordering::Relaxed);
        }
        // The media loop dropped the writer: it closed this address (or stopped).
        CloseReason::Shutdown
    });
    let read = read_frames(&mut reader, from, &config, &tx, &answered);
    let reason = tokio::select! {
        r = read => r,
        w = &mut write => w.unwrap_or(CloseReason::Write),
    };
    write.abort();
    metrics::counter!("confab_sfu_tcp_closed_total", "reason" => reason.label()).increment(1);
    tracing::debug!(%from, reason = reason.label(), "ICE-TCP connection closed");
    let _ = tx.send(TcpInput::Closed(from)).await;
}

/// A frame length of zero or over [`MAX_FRAME`]: the stream is not RFC 4571 framed datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadFrame;

/// Takes one complete frame (without its length) off the front of `buf`; `Ok(None)` when `buf`
/// does not hold a whole frame yet.
pub(crate) fn take_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, BadFrame> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let len = u16::from_be_bytes([buf[0], buf[1]]) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(BadFrame);
    }
    if buf.len() < 2 + len {
        return Ok(None);
    }
    buf.advance(2);
    Ok(Some(buf.split_to(len).freeze()))
}

/// Reads frames until the connection ends; returns why it ended.
async fn read_frames(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    from: SocketAddr,
    config: &IceTcpConfig,
    tx: &mpsc::Sender<TcpInput>,
    answered: &AtomicBool,
) -> CloseReason {
    let handshake_deadline = tokio::time::Instant::now() + config.handshake_timeout;
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut first = true;
    loop {
        // Complete frames first.
        loop {
            let frame = match take_frame(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(BadFrame) => return CloseReason::Framing,
            };
            // RFC 7983: a first byte of 0..=3 is STUN. Anything else before ICE is not ours.
            if first && frame[0] > 3 {
                return CloseReason::Handshake;
            }
            first = false;
            if tx.send(TcpInput::Frame(from, frame)).await.is_err() {
                return CloseReason::Shutdown;
            }
        }
        let wait = if answered.load(Ordering::Relaxed) {
            tokio::time::Instant::now() + config.idle_timeout
        } else {
            handshake_deadline
        };
        if buf.capacity() - buf.len() < 2 + MAX_FRAME {
            buf.reserve(8 * 1024);
        }
        match tokio::time::timeout_at(wait, reader.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return CloseReason::Peer,
            Ok(Ok(_)) => {}
            Err(_) if answered.load(Ordering::Relaxed) => {
                // The handshake deadline passed just as the answer went out: go on, idle
                // timing from now.
                if wait == handshake_deadline {
                    continue;
                }
                return CloseReason::Idle;
            }
            Err(_) => return CloseReason::Handshake,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    async fn plane(config: impl FnOnce(&mut IceTcpConfig)) -> TcpPlane {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = IceTcpConfig::new(listener.local_addr().unwrap());
        config(&mut c);
        TcpPlane::start(listener, c).unwrap()
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(payload);
        f
    }

    /// A STUN-looking datagram (first byte 0).
    const STUN: &[u8] = &[
        0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ];

    async fn next(p: &mut TcpPlane) -> TcpInput {
        let i = tokio::time::timeout(Duration::from_secs(5), p.input.recv())
            .await
            .expect("input within 5 s")
            .expect("plane open");
        i
    }

    /// The next input must be an accepted connection; its writer is kept, as the media loop
    /// does (a connection whose writer is dropped closes).
    async fn opened(p: &mut TcpPlane) -> SocketAddr {
        let TcpInput::Opened(from, w) = next(p).await else {
            panic!("expected Opened")
        };
        p.opened(from, w);
        from
    }

    #[tokio::test]
    async fn frames_cross_in_both_directions_split_and_coalesced() {
        let mut p = plane(|_| {}).await;
        let mut c = TcpStream::connect(p.local_addr()).await.unwrap();
        let me = c.local_addr().unwrap();
        assert_eq!(opened(&mut p).await, me);
        // Two frames in one write, then one split over three writes.
        let mut both = frame(STUN);
        both.extend(frame(&[0x80, 1, 2, 3]));
        c.write_all(&both).await.unwrap();
        let big: Vec<u8> = (0..1200).map(|i| (i % 251) as u8 | 0x80).collect();
        let f = frame(&big);
        for part in [&f[..1], &f[1..600], &f[600..]] {
            c.write_all(part).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for want in [STUN.to_vec(), vec![0x80, 1, 2, 3], big] {
            let TcpInput::Frame(f_from, got) = next(&mut p).await else {
                panic!("expected a frame")
            };
            assert_eq!((f_from, &got[..]), (me, &want[..]));
        }
        // The loop's answer arrives framed.
        assert!(p.send(me, b"\x01\x01answer"));
        let mut head = [0u8; 2];
        c.read_exact(&mut head).await.unwrap();
        assert_eq!(u16::from_be_bytes(head), 8);
        let mut body = [0u8; 8];
        c.read_exact(&mut body).await.unwrap();
        assert_eq!(&body, b"\x01\x01answer");
        // Nothing for an unknown address or an oversized datagram.
        assert!(!p.send("127.0.0.1:9".parse().unwrap(), STUN));
        assert!(!p.send(me, &vec![0u8; MAX_FRAME + 1]));
        // The client closes: the loop hears of it.
        drop(c);
        assert!(matches!(next(&mut p).await, TcpInput::Closed(a) if a == me));
    }

    #[tokio::test]
    async fn bad_connections_are_closed() {
        let mut p = plane(|c| {
            c.handshake_timeout = Duration::from_millis(300);
            c.idle_timeout = Duration::from_millis(300);
        })
        .await;
        // Not STUN first.
        let mut c = TcpStream::connect(p.local_addr()).await.unwrap();
        opened(&mut p).await;
        c.write_all(&frame(&[0x16, 0xfe, 0xfd])).await.unwrap();
        assert!(matches!(next(&mut p).await, TcpInput::Closed(_)));
        let mut b = [0u8; 1];
        assert_eq!(
            c.read(&mut b).await.unwrap_or(0),
            0,
            "server closed the socket"
        );
        // A zero-length frame.
        let mut c = TcpStream::connect(p.local_addr()).await.unwrap();
        opened(&mut p).await;
        c.write_all(&[0, 0]).await.unwrap();
        assert!(matches!(next(&mut p).await, TcpInput::Closed(_)));
        // STUN that nobody answers: closed at the handshake deadline.
        let mut c = TcpStream::connect(p.local_addr()).await.unwrap();
        opened(&mut p).await;
        let t0 = Instant::now();
        c.write_all(&frame(STUN)).await.unwrap();
        assert!(matches!(next(&mut p).await, TcpInput::Frame(..)));
        assert!(matches!(next(&mut p).await, TcpInput::Closed(_)));
        assert!(
            t0.elapsed() >= Duration::from_millis(250),
            "{:?}",
            t0.elapsed()
        );
        // Answered, then silent: closed when idle.
        let c = TcpStream::connect(p.local_addr()).await.unwrap();
        let from = opened(&mut p).await;
        assert!(p.send(from, STUN));
        let t0 = Instant::now();
        assert!(matches!(next(&mut p).await, TcpInput::Closed(a) if a == from));
        assert!(
            t0.elapsed() >= Duration::from_millis(250),
            "{:?}",
            t0.elapsed()
        );
        drop(c);
    }

    #[tokio::test]
    async fn connection_limits_hold() {
        let mut p = plane(|c| {
            c.max_connections = 3;
            c.max_per_ip = 2;
        })
        .await;
        let addr = p.local_addr();
        let a = TcpStream::connect(addr).await.unwrap();
        let b = TcpStream::connect(addr).await.unwrap();
        opened(&mut p).await;
        opened(&mut p).await;
        // A third from 127.0.0.1 is refused: the server closes it at once.
        let mut c = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .unwrap();
        assert_eq!(n.unwrap_or(0), 0, "refused connection is closed");
        // From another address (127.0.0.2 is loopback too) one more fits, then the total cap.
        let other = tokio::net::TcpSocket::new_v4().unwrap();
        other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let d = other.connect(addr).await.unwrap();
        opened(&mut p).await;
        let other = tokio::net::TcpSocket::new_v4().unwrap();
        other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut e = other.connect(addr).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), e.read(&mut buf))
            .await
            .unwrap();
        assert_eq!(n.unwrap_or(0), 0, "over the total limit");
        // A place frees up when a connection ends.
        drop(a);
        assert!(matches!(next(&mut p).await, TcpInput::Closed(_)));
        let _f = TcpStream::connect(addr).await.unwrap();
        opened(&mut p).await;
        drop((b, d));
    }
}
