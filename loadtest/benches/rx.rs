//! CPU per received audio packet on a listener's receive path, without a
//! server: synthetic SRTP packets as the SFU would send them (3 speakers on
//! 3 slots, Opus frames from the tester's catalog, AES-256-GCM).
//!
//! `cargo bench -p confab-loadtest --bench rx` prints, per variant, the
//! receiving thread's CPU time (CLOCK_THREAD_CPUTIME_ID) per packet:
//! - `in memory`: datagrams copied into a buffer (as the kernel would) and
//!   handed to the fast path: decrypt, parse, identify, record;
//! - `loopback`: the same packets sent over a loopback UDP socket by another
//!   thread and read with `recvmmsg` batches, kernel receive included;
//! - the share of identification: a payload hash per packet (what the
//!   tester did before) against the stream prediction it does now;
//! - the integrity decode at `--integrity-every 50` (the default) and off.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use confab_loadtest::audio::{Catalog, LoopResolver, FRAMES, FRAME_SAMPLES};
use confab_loadtest::peer::{PeerReport, RxPath, VoiceShared};
use confab_loadtest::rx::srtp::{Profile, SrtpRx, SrtpTxForTest, TAG_LEN};
use confab_loadtest::rx::FastRx;
use confab_loadtest::udp::RecvBatch;

const SPEAKERS: usize = 3;
/// Packets per speaker: 40 s of audio.
const PER_SPEAKER: u64 = 2_000;
const MATERIAL: [u8; 88] = {
    let mut m = [0u8; 88];
    let mut i = 0;
    while i < 88 {
        m[i] = (i as u8).wrapping_mul(37) ^ 0xa5;
        i += 1;
    }
    m
};

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One synthetic datagram: bytes, kernel arrival µs, and (speaker, counter,
/// send µs) for the catalog's send slot, marked just before it is received
/// (as the speaker would have, so a frame's slot holds its latest sending).
type Pkt = (Vec<u8>, u64, (usize, u64, u64));

/// Every packet of the run, in arrival order (speakers interleaved).
fn packets(cat: &Catalog) -> Vec<Pkt> {
    let tx = SrtpTxForTest::peer_of(Profile::AeadAes256Gcm, &MATERIAL, true).unwrap();
    let mut out = Vec::new();
    for c in 0..PER_SPEAKER {
        for s in 0..SPEAKERS {
            let send_us = 1_000_000 + c * 20_000 + s as u64 * 6_000;
            let seq = 60_000 + c; // wraps
            let ts = (s as u32 * 0x1000_0000).wrapping_add((c as u32) * FRAME_SAMPLES as u32);
            let mut d = vec![0x90, 111];
            d.extend_from_slice(&(seq as u16).to_be_bytes());
            d.extend_from_slice(&ts.to_be_bytes());
            d.extend_from_slice(&(0x5000 + s as u32).to_be_bytes());
            // audio level and a 1-byte mid, as the SFU's fast path writes them
            d.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0x85, 0x40, b'1' + s as u8]);
            let hlen = d.len();
            d.extend_from_slice(&cat.frame(s, c).payload);
            let len = d.len();
            d.resize(len + TAG_LEN, 0);
            tx.seal_rtp(&mut d, hlen, len, seq);
            out.push((d, send_us + 4_000, (s, c, send_us)));
        }
    }
    out
}

fn listener(shared: &VoiceShared) -> (RxPath, PeerReport) {
    let _ = shared;
    let rx = SrtpRx::new(Profile::AeadAes256Gcm, &MATERIAL, true).unwrap();
    (RxPath::new(FastRx::with_keys(rx)), PeerReport::default())
}

fn in_memory(shared: &VoiceShared, pkts: &[Pkt], rounds: usize) -> f64 {
    let mut best = f64::MAX;
    let mut buf = [0u8; 1500];
    for _ in 0..rounds {
        let (mut path, mut rep) = listener(shared);
        let t_join = Instant::now();
        let t0 = thread_cpu_ns();
        for (d, kernel_us, (s, c, sent)) in pkts {
            shared.catalog.mark_sent(*s, *c, *sent);
            buf[..d.len()].copy_from_slice(d);
            let now = Instant::now();
            path.datagram(
                shared,
                &mut rep,
                t_join,
                &mut buf[..d.len()],
                Some(*kernel_us),
                now,
            );
        }
        let ns = (thread_cpu_ns() - t0) as f64 / pkts.len() as f64;
        assert_eq!(rep.rx_total, pkts.len() as u64, "every packet opened");
        assert_eq!(rep.unknown_payloads, 0);
        best = best.min(ns);
    }
    best
}

fn loopback(shared: &VoiceShared, pkts: &[Pkt]) -> (f64, f64) {
    let rx_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx_sock.set_nonblocking(true).unwrap();
    // Room for a whole burst, so the sender never outruns the receiver into drops.
    let big: libc::c_int = 64 << 20;
    // SAFETY: valid fd and option value.
    unsafe {
        libc::setsockopt(
            rx_sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &big as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let to = rx_sock.local_addr().unwrap();
    let (mut path, mut rep) = listener(shared);
    let mut batch = RecvBatch::default();
    let t_join = Instant::now();
    let mut cpu = 0u64;
    let mut got = 0usize;
    let (mut calls, mut chunk_start) = (0u64, 0usize);
    // Bursts of 48 datagrams (what a listener of 3 speakers gets in ~320 ms),
    // read after each burst as a paced listener reads them.
    while chunk_start < pkts.len() {
        let chunk = &pkts[chunk_start..(chunk_start + 48).min(pkts.len())];
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for (d, _, (s, c, sent)) in chunk {
            shared.catalog.mark_sent(*s, *c, *sent);
            tx.send_to(d, to).unwrap();
        }
        chunk_start += chunk.len();
        let want = got + chunk.len();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got < want && Instant::now() < deadline {
            let t0 = thread_cpu_ns();
            let n = batch.recv_fd(rx_sock.as_raw_fd()).unwrap();
            calls += 1;
            let now = Instant::now();
            for i in 0..n {
                let kernel_us = pkts[got + i].1;
                let (d, _, _) = batch.get(i);
                path.datagram(shared, &mut rep, t_join, d, Some(kernel_us), now);
            }
            cpu += thread_cpu_ns() - t0;
            got += n;
        }
    }
    assert_eq!(
        rep.rx_total,
        pkts.len() as u64,
        "every packet arrived and opened"
    );
    (cpu as f64 / pkts.len() as f64, got as f64 / calls as f64)
}

/// ns per identification: a hash lookup per packet vs the stream prediction,
/// over the newest loop of speaker 0's frames.
fn identification(cat: &Catalog) -> (f64, f64) {
    let start = PER_SPEAKER - FRAMES as u64;
    for c in 0..PER_SPEAKER {
        cat.mark_sent(0, c, 1 + c * 20_000);
    }
    let payloads: Vec<(usize, u64, u32)> = (start..PER_SPEAKER)
        .map(|c| (0usize, c, (c as u32) * FRAME_SAMPLES as u32))
        .collect();
    let t0 = thread_cpu_ns();
    let mut hits = 0u64;
    for &(s, c, _) in &payloads {
        hits += cat.lookup(&cat.frame(s, c).payload).is_some() as u64;
    }
    let hashed = (thread_cpu_ns() - t0) as f64 / payloads.len() as f64;
    let mut r = LoopResolver::default();
    let first = cat.lookup(&cat.frame(0, start).payload).unwrap();
    assert_eq!(first.counter, start);
    r.note(&first, payloads[0].2);
    let t0 = thread_cpu_ns();
    for &(s, c, ts) in &payloads {
        let o = r
            .predict(ts)
            .and_then(|(sp, cc)| cat.origin_if(sp, cc, &cat.frame(s, c).payload));
        if let Some(o) = o {
            r.note(&o, ts);
            hits += 1;
        }
    }
    let predicted = (thread_cpu_ns() - t0) as f64 / payloads.len() as f64;
    assert_eq!(hits, 2 * FRAMES as u64);
    (hashed, predicted)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let cat = Catalog::generate(SPEAKERS, 0x5eed).unwrap();
    let pkts = packets(&cat);
    let window = (0, 1_000_000 + PER_SPEAKER * 20_000 + 1_000_000);
    let (hashed, predicted) = identification(&Catalog::generate(1, 0x5eed).unwrap());
    let with_ig = VoiceShared::standalone(Catalog::generate(SPEAKERS, 0x5eed).unwrap(), window, 50);
    let pkts_ig = packets(&with_ig.catalog);
    let no_ig = VoiceShared::standalone(cat, window, 0);
    println!(
        "rx bench: {} packets ({} speakers × {}), AES-256-GCM, payloads {}–{} bytes",
        pkts.len(),
        SPEAKERS,
        PER_SPEAKER,
        pkts.iter().map(|p| p.0.len()).min().unwrap_or(0),
        pkts.iter().map(|p| p.0.len()).max().unwrap_or(0)
    );
    let mem = in_memory(&no_ig, &pkts, 5);
    println!(
        "in memory, integrity off:       {:7.0} ns CPU / packet",
        mem
    );
    let mem_ig = in_memory(&with_ig, &pkts_ig, 5);
    println!(
        "in memory, integrity every 50:  {:7.0} ns CPU / packet",
        mem_ig
    );
    let (lo, per_call) = loopback(&no_ig, &pkts);
    println!(
        "loopback recvmmsg, integrity off: {:7.0} ns CPU / packet ({per_call:.1} datagrams per call)",
        lo
    );
    println!("identification: payload hash {hashed:.0} ns, stream prediction {predicted:.0} ns");
}
