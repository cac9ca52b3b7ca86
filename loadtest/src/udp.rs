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

/// One non-blocking receive: `(len, source, kernel realtime ns if any)`.
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
}
