//! Sending the fast path's datagrams: `sendmmsg` batches and the send
//! worker threads.
//!
//! **How packets reach a worker.** Receiving stays on the media loop's one
//! thread (one socket, one port: ICE, DTLS, SRTP decryption, RTCP, speaking
//! and slot selection all need the room's state in one place). What grows with
//! the number of listeners — copying, SRTP-protecting and sending one
//! datagram per listener — is spread over lanes: each subscriber is placed on
//! one lane for life, the loop queues a header per subscriber and the
//! publisher's payload once per lane ([`crate::fastpath::Outbox`]), and after
//! each loop iteration hands every non-empty lane's outbox to that lane's
//! worker by swapping it for an empty one (a channel send of a few pointers:
//! no copy, no lock per packet). Lane 0 is sealed by the loop thread itself,
//! so N lanes use N threads. Each lane has two outboxes in circulation: the
//! loop runs at most one batch ahead of a worker, then waits for it
//! (back-pressure instead of unbounded queues). Workers send on their own
//! descriptor of the same socket.
//!
//! A batch goes to its worker once it holds [`HANDOFF_BATCH`] datagrams, or
//! [`HANDOFF_MAX_DELAY`] after its first one: in a large room every loop
//! iteration fills a batch; small rooms' few datagrams per iteration are
//! gathered for up to a millisecond instead of paying a thread wake-up and a
//! system call for each handful.
//!
//! The hand-off is measured by `confab_sfu_send_handoff_seconds` (outbox
//! handed over → worker starts on it), per batch.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::core::SfuCore;
use crate::fastpath::{Outbox, Sealer};

/// Datagrams per `sendmmsg` call.
const BATCH: usize = 64;
/// A worker lane's batch is handed over at this many datagrams…
const HANDOFF_BATCH: usize = 64;
/// …or this long after it got its first, whichever comes first.
const HANDOFF_MAX_DELAY: Duration = Duration::from_millis(1);

/// Sends sealed datagrams with `sendmmsg`, 64 per system call; the header,
/// iovec and address arrays are reused.
pub(crate) struct BatchSender {
    fd: OwnedFd,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
}

// SAFETY: the raw pointers in `hdrs`/`iovs` are scratch, rewritten before
// every `sendmmsg` call to point into data borrowed for that call only; no
// pointer is kept or dereferenced across calls, so moving the sender to
// another thread is sound.
unsafe impl Send for BatchSender {}

impl BatchSender {
    pub fn new(fd: OwnedFd) -> Self {
        // SAFETY: all-zero is a valid value for these plain C structs.
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let zero_addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        BatchSender {
            fd,
            hdrs: vec![zero_hdr; BATCH],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH
            ],
            addrs: vec![zero_addr; BATCH],
        }
    }

    /// Sends every datagram `sealer` holds; returns how many were not sent
    /// (send buffer full, unreachable destination).
    pub fn send(&mut self, sealer: &Sealer) -> u64 {
        let mut failed = 0;
        let mut it = sealer.datagrams().peekable();
        while it.peek().is_some() {
            let mut n = 0;
            for (dest, bytes) in it.by_ref().take(BATCH) {
                let len = write_sockaddr(&mut self.addrs[n], dest);
                self.iovs[n] = libc::iovec {
                    iov_base: bytes.as_ptr() as *mut libc::c_void,
                    iov_len: bytes.len(),
                };
                let h = &mut self.hdrs[n].msg_hdr;
                h.msg_name = &mut self.addrs[n] as *mut _ as *mut libc::c_void;
                h.msg_namelen = len;
                h.msg_iov = &mut self.iovs[n];
                h.msg_iovlen = 1;
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
                h.msg_flags = 0;
                n += 1;
            }
            let mut at = 0;
            while at < n {
                // SAFETY: hdrs[at..n] point at addrs/iovs entries filled above
                // and at datagram bytes borrowed from `sealer`, all alive for
                // the call; the count does not exceed the arrays.
                let rc = unsafe {
                    libc::sendmmsg(
                        self.fd.as_raw_fd(),
                        self.hdrs[at..].as_mut_ptr(),
                        (n - at) as libc::c_uint,
                        0,
                    )
                };
                if rc > 0 {
                    at += rc as usize;
                    continue;
                }
                if rc < 0
                    && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
                {
                    continue;
                }
                // The datagram at `at` could not be sent (EAGAIN with a full
                // send buffer, ECONNREFUSED from an earlier ICMP error, …):
                // count it and go on with the rest, as single sends would.
                failed += 1;
                at += 1;
            }
        }
        failed
    }
}

fn write_sockaddr(storage: &mut libc::sockaddr_storage, addr: SocketAddr) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write(storage as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write(storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// An outbox on its way to a worker, and back.
struct Job {
    out: Outbox,
    queued: Instant,
    /// Datagrams the worker could not send (filled on the way back).
    failed: u64,
}

struct Worker {
    to: SyncSender<Job>,
    back: Receiver<Job>,
    /// The outbox that is neither in the core nor at the worker.
    spare: Option<Outbox>,
    /// When the core's outbox of this lane got its first entry.
    pending_since: Option<Instant>,
    thread: Option<JoinHandle<()>>,
}

/// The send lanes of a media loop: lane 0 on the loop's thread, lanes 1..N on
/// worker threads.
pub(crate) struct SendLanes {
    own: BatchSender,
    workers: Vec<Worker>,
}

impl SendLanes {
    /// One lane per `SfuCore` lane; `dup` gives each worker its own
    /// descriptor of the socket.
    pub fn start(
        lanes: usize,
        mut dup: impl FnMut() -> std::io::Result<OwnedFd>,
    ) -> std::io::Result<Self> {
        let own = BatchSender::new(dup()?);
        let mut workers = Vec::new();
        for lane in 1..lanes {
            let mut sender = BatchSender::new(dup()?);
            let (to, from_loop) = sync_channel::<Job>(1);
            let (to_loop, back) = sync_channel::<Job>(1);
            let thread = std::thread::Builder::new()
                .name(format!("confab-sfu-send-{lane}"))
                .spawn(move || {
                    let mut sealer = Sealer::default();
                    let handoff = crate::metrics::send_handoff_histogram();
                    while let Ok(mut job) = from_loop.recv() {
                        handoff.record(job.queued.elapsed().as_secs_f64());
                        let start = Instant::now();
                        sealer.seal(&mut job.out);
                        job.failed = sender.send(&sealer);
                        crate::metrics::SEND_WORKER_BUSY_NANOS.fetch_add(
                            start.elapsed().as_nanos() as u64,
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        if to_loop.send(job).is_err() {
                            break;
                        }
                    }
                })?;
            workers.push(Worker {
                to,
                back,
                spare: Some(Outbox::default()),
                pending_since: None,
                thread: Some(thread),
            });
        }
        Ok(SendLanes { own, workers })
    }

    /// Sends what the core's fast path queued: worker lanes whose batch is
    /// full or old enough are handed off first, then the loop seals and sends
    /// lane 0 itself.
    pub fn flush(&mut self, core: &mut SfuCore, now: Instant) {
        for (i, w) in self.workers.iter_mut().enumerate() {
            let lane = i + 1;
            // Collect a returned outbox without waiting.
            match w.back.try_recv() {
                Ok(job) => w.returned(core, job),
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => {}
            }
            if !core.fast_lane_pending(lane) {
                continue;
            }
            let since = *w.pending_since.get_or_insert(now);
            if core.fast_lane_datagrams(lane) < HANDOFF_BATCH
                && now.saturating_duration_since(since) < HANDOFF_MAX_DELAY
            {
                continue;
            }
            w.pending_since = None;
            if w.spare.is_none() {
                // The worker still has the previous batch: wait for it.
                match w.back.recv() {
                    Ok(job) => w.returned(core, job),
                    Err(_) => {
                        // The worker is gone (panicked): its datagrams are lost.
                        w.spare = Some(Outbox::default());
                    }
                }
            }
            let mut out = w.spare.take().expect("a spare outbox");
            core.swap_fast_outbox(lane, &mut out);
            let job = Job {
                out,
                queued: Instant::now(),
                failed: 0,
            };
            if let Err(e) = w.to.send(job) {
                w.spare = Some(e.0.out);
            }
        }
        let own = &mut self.own;
        core.drain_fast_lanes(0..1, |sealer| own.send(sealer));
    }
}

impl SendLanes {
    /// When the loop must come back to hand a gathered batch over.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.workers
            .iter()
            .filter_map(|w| w.pending_since)
            .min()
            .map(|t| t + HANDOFF_MAX_DELAY)
    }
}

impl Worker {
    fn returned(&mut self, core: &mut SfuCore, job: Job) {
        for _ in 0..job.failed {
            core.count_io_drop(false);
        }
        self.spare = Some(job.out);
    }
}

impl Drop for SendLanes {
    fn drop(&mut self) {
        for w in &mut self.workers {
            // Closing the channel ends the worker's loop.
            let (dead, _) = sync_channel(0);
            drop(std::mem::replace(&mut w.to, dead));
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}
