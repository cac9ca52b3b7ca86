//! UDP receive with kernel timestamps (SO_TIMESTAMPNS): a packet's arrival
//! time is taken when the kernel queued it, so the tester's own scheduling
//! delay (hundreds of peers on 1-2 threads) does not count as SFU latency.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Asks the kernel to timestamp received datagrams. Returns false if refused.
pub fn enable_timestamps(sock: &UdpSocket) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: valid fd; the option value is a c_int that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &on as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// CLOCK_REALTIME in nanoseconds (the clock SO_TIMESTAMPNS uses).
pub fn realtime_ns() -> u64 {
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid clock id and out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One non-blocking receive (the video peers' path): `(len, source, kernel realtime ns if any)`.
/// `WouldBlock` when nothing is queued (tokio's readiness is cleared).
pub fn try_recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<u64>)> {
    sock.try_io(Interest::READABLE, || {
        // SAFETY: every pointer handed to recvmsg points into locals that
        // live across the call, with their true lengths.
        unsafe {
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            };
            let mut cmsg_buf = [0u64; 8]; // 64 bytes, aligned
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = &mut addr as *mut libc::sockaddr_in as *mut libc::c_void;
            msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cmsg_buf.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = std::mem::size_of_val(&cmsg_buf) as _;
            let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut stamp = None;
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                    stamp = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
            let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
            let from = SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(addr.sin_port)));
            Ok((n as usize, from, stamp))
        }
    })
}

/// Datagrams read per `recvmmsg` call.
pub const BATCH: usize = 16;
/// Room per datagram: the SFU never sends more than an Ethernet MTU; a larger
/// datagram is cut (`MSG_TRUNC` shows it) and dropped.
pub const SLOT: usize = 1500;

/// Preallocated buffers for receiving up to [`BATCH`] datagrams with one
/// `recvmmsg` system call, each with its source address and kernel receive
/// timestamp. Reused for every batch: nothing is allocated per packet.
///
/// Hand-written on `libc` (already a dependency): std has no `recvmmsg`,
/// `socket2` neither, and `nix`'s would need features of the workspace's
/// `nix` that rebuild the server's crates.
pub struct RecvBatch {
    bufs: Box<[[u8; SLOT]]>,
    addrs: Box<[libc::sockaddr_storage]>,
    cmsgs: Box<[[u64; 8]]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    /// Filled by the last [`RecvBatch::recv`]: (length, source, stamp ns).
    got: Vec<(usize, Option<SocketAddr>, Option<u64>)>,
}

// SAFETY: the raw pointers in `iovs`/`hdrs` only ever point into this
// struct's own boxes, are rewritten before each use, and are only used
// through `&mut self` (a shared reference can do nothing with them).
unsafe impl Send for RecvBatch {}
unsafe impl Sync for RecvBatch {}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            bufs: vec![[0u8; SLOT]; BATCH].into_boxed_slice(),
            addrs: (0..BATCH).map(|_| zeroed_c()).collect(),
            cmsgs: vec![[0u64; 8]; BATCH].into_boxed_slice(),
            iovs: (0..BATCH)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            hdrs: (0..BATCH).map(|_| zeroed_c()).collect(),
            got: Vec::with_capacity(BATCH),
        }
    }
}

/// An all-zero plain C struct (sockaddr_storage, mmsghdr).
fn zeroed_c<T: Copy>() -> T {
    // SAFETY: only used for libc structs of integers and raw pointers, for
    // which all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

impl RecvBatch {
    /// One `recvmmsg` on `fd` (non-blocking). Returns how many datagrams
    /// arrived (0 when none are queued); read them with [`Self::get`].
    pub fn recv_fd(&mut self, fd: std::os::fd::RawFd) -> io::Result<usize> {
        self.got.clear();
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr() as *mut libc::c_void,
                iov_len: SLOT,
            };
            let h = &mut self.hdrs[i];
            *h = zeroed_c();
            h.msg_hdr.msg_name = &mut self.addrs[i] as *mut _ as *mut libc::c_void;
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as _;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = self.cmsgs[i].as_mut_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_controllen = std::mem::size_of::<[u64; 8]>() as _;
        }
        // SAFETY: every header points into buffers owned by `self` with their
        // true lengths, and they outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        for i in 0..n as usize {
            let h = &self.hdrs[i];
            let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let len = if truncated { 0 } else { h.msg_len as usize };
            // SAFETY: the kernel filled the control buffer of this header;
            // the CMSG macros stay within `msg_controllen`.
            let stamp = unsafe { timestamp_of(&h.msg_hdr) };
            let from = sockaddr_to(&self.addrs[i]);
            self.got.push((len, from, stamp));
        }
        Ok(n as usize)
    }

    /// Like [`Self::recv_fd`] for a tokio socket (its readiness is cleared
    /// when nothing is queued, so the next `readable()` waits).
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        let fd = sock.as_raw_fd();
        match sock.try_io(Interest::READABLE, || match self.recv_fd(fd)? {
            0 => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            r => r,
        }
    }

    /// Datagram `i` of the last batch: its bytes (empty if it was cut),
    /// source and kernel receive time (realtime ns).
    pub fn get(&mut self, i: usize) -> (&mut [u8], Option<SocketAddr>, Option<u64>) {
        let (len, from, stamp) = self.got[i];
        (&mut self.bufs[i][..len], from, stamp)
    }
}

/// The SO_TIMESTAMPNS control message of a received header, if any.
///
/// # Safety
/// `msg` must be a header the kernel filled, its control buffer still alive.
unsafe fn timestamp_of(msg: &libc::msghdr) -> Option<u64> {
    let mut c = libc::CMSG_FIRSTHDR(msg);
    while !c.is_null() {
        if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
            let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
            return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
        }
        c = libc::CMSG_NXTHDR(msg, c);
    }
    None
}

fn sockaddr_to(a: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match a.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let v4 = unsafe { &*(a as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let v6 = unsafe { &*(a as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                v6.sin6_addr.s6_addr.into(),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kernel_timestamps_arrive() {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert!(enable_timestamps(&b));
        let before = realtime_ns();
        a.send_to(b"hello", b.local_addr().unwrap()).await.unwrap();
        b.readable().await.unwrap();
        let mut buf = [0u8; 64];
        let (n, from, ts) = loop {
            match try_recv(&b, &mut buf) {
                Ok(r) => break r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => b.readable().await.unwrap(),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, a.local_addr().unwrap());
        let ts = ts.expect("a kernel timestamp");
        assert!(ts >= before && ts <= realtime_ns());
    }

    /// A batch reads queued datagrams in order with their sources and
    /// kernel timestamps, cuts nothing that fits, drops what does not fit,
    /// and says 0 when the queue is empty.
    #[tokio::test]
    async fn recvmmsg_batches() {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert!(enable_timestamps(&b));
        let to = b.local_addr().unwrap();
        let before = realtime_ns();
        for i in 0..(BATCH + 3) as u8 {
            a.send_to(&[i; 100], to).await.unwrap();
        }
        a.send_to(&[7u8; SLOT + 10], to).await.unwrap();
        b.readable().await.unwrap();
        let mut batch = RecvBatch::default();
        let mut seen = Vec::new();
        for _ in 0..100 {
            let n = batch.recv(&b).unwrap();
            for i in 0..n {
                let (d, from, ts) = batch.get(i);
                assert_eq!(from, Some(a.local_addr().unwrap()));
                let ts = ts.expect("kernel timestamp");
                assert!(ts >= before && ts <= realtime_ns());
                seen.push(d.to_vec());
            }
            if seen.len() == BATCH + 4 {
                break;
            }
            if n == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        assert_eq!(seen.len(), BATCH + 4);
        for (i, d) in seen[..BATCH + 3].iter().enumerate() {
            assert_eq!(d, &vec![i as u8; 100]);
        }
        assert!(
            seen[BATCH + 3].is_empty(),
            "an oversized datagram is cut to nothing"
        );
        assert_eq!(batch.recv(&b).unwrap(), 0);
    }
}
