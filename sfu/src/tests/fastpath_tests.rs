//! The audio fast path against str0m's own send path: the same input through
//! both must reach a str0m receiver as the same packets.

use std::time::Duration;

use proptest::prelude::*;

use super::core_tests::{config, slot_for};
use super::{pid, room_id};
use crate::testing::{Net, TestPeerConfig};

/// One packet the publisher sends: payload, marker, audio level.
type Input = (Vec<u8>, bool, u8);

/// What a receiver sees, relative to the first packet (the down-track picks
/// its first sequence number and timestamp at random).
#[derive(Debug, PartialEq)]
struct Seen {
    payload: Vec<u8>,
    seq: u64,
    ts: u32,
    marker: bool,
    level: Option<i8>,
    /// It arrived on the slot's transceiver (mids differ between runs).
    on_slot_mid: bool,
}

struct Run {
    seen: Vec<Seen>,
    /// Every received packet came on the slot's announced SSRC.
    on_slot_ssrc: bool,
    fast: bool,
    first_seq: u64,
}

/// Publisher → listener through a fresh SFU; `out_seq`: forces the
/// down-track's first outgoing sequence number (SRTP rollover).
fn run(fast_path: bool, src_seq: u64, out_seq: Option<u64>, inputs: &[Input]) -> Run {
    let mut cfg = config();
    cfg.fast_path = fast_path;
    let mut net = Net::new(&cfg);
    let a = net
        .join(room_id(1), pid(1), 1, TestPeerConfig::default())
        .unwrap();
    let listener = TestPeerConfig {
        send: false,
        ..Default::default()
    };
    let b = net.join(room_id(1), pid(2), 1, listener).unwrap();
    net.connect_all();
    net.advance(Duration::from_millis(50));
    let mid = slot_for(&net, b, pid(1)).expect("A is on B's slot");
    if let Some(seq) = out_seq {
        net.sfu.force_next_seq(pid(2), &mid, seq);
    }
    net.peers[a].next_seq = src_seq;
    for (payload, marker, level) in inputs {
        let now = net.now;
        net.peers[a].send_audio_marked(now, payload, *level, *marker);
        net.exchange();
        net.advance(Duration::from_millis(20));
    }
    let ssrc = net.sfu.slot_ssrc(pid(2), &mid).unwrap();
    let got = net.peers[b].received_on(&mid);
    let first_seq = got.first().map(|r| r.seq).unwrap_or(0);
    let (s0, t0) = got.first().map(|r| (r.seq, r.timestamp)).unwrap_or((0, 0));
    Run {
        seen: got
            .iter()
            .map(|r| Seen {
                payload: r.payload.to_vec(),
                seq: r.seq - s0,
                ts: r.timestamp.wrapping_sub(t0),
                marker: r.marker,
                level: r.audio_level,
                on_slot_mid: r.mid.as_deref() == Some(mid.as_str()),
            })
            .collect(),
        on_slot_ssrc: got.iter().all(|r| r.ssrc == ssrc),
        fast: net.sfu.slot_is_fast(pid(2), &mid),
        first_seq,
    }
}

fn inputs() -> impl Strategy<Value = Vec<Input>> {
    prop::collection::vec(
        (
            prop::collection::vec(any::<u8>(), 1..1000),
            any::<bool>(),
            0u8..=127,
        ),
        1..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Random payload sizes, markers and levels, sources that wrap their
    /// 16-bit sequence numbers and outgoing numbers that cross the SRTP
    /// rollover (ROC 0 → 1): the fast path delivers exactly what str0m does.
    #[test]
    fn fast_path_output_matches_str0m(
        inputs in inputs(),
        src_seq in prop_oneof![1_000u64..2_000, 65_530u64..65_536],
        out_seq in prop_oneof![Just(None), (65_526u64..65_536).prop_map(Some)],
    ) {
        let slow = run(false, src_seq, out_seq, &inputs);
        let fast = run(true, src_seq, out_seq, &inputs);
        prop_assert!(fast.fast, "the fast path took the slot");
        prop_assert!(!slow.fast);
        prop_assert_eq!(fast.seen.len(), inputs.len(), "every packet arrived");
        prop_assert!(fast.on_slot_ssrc && slow.on_slot_ssrc);
        if let Some(seq) = out_seq {
            prop_assert_eq!(fast.first_seq, seq);
            prop_assert_eq!(slow.first_seq, seq);
        }
        prop_assert_eq!(&fast.seen, &slow.seen);
        for (seen, (payload, marker, level)) in fast.seen.iter().zip(&inputs) {
            prop_assert_eq!(&seen.payload, payload);
            prop_assert_eq!(seen.marker, *marker);
            prop_assert_eq!(seen.level, Some(-(*level as i8)));
            prop_assert!(seen.on_slot_mid);
        }
    }
}

/// Sender reports: str0m's receiver decrypts our SRTCP (the SDES CNAME in
/// the same compound packet reaches its receive stream), and after the
/// fast path took an SSRC over, every SRTCP packet on that SSRC is ours
/// (index from 2^30 up), none from str0m.
#[test]
fn fast_path_sender_reports_reach_the_receiver() {
    use std::cell::RefCell;
    use std::rc::Rc;

    let mut net = Net::new(&config());
    let a = net
        .join(room_id(1), pid(1), 1, TestPeerConfig::default())
        .unwrap();
    let b = net
        .join(room_id(1), pid(2), 2, TestPeerConfig::default())
        .unwrap();
    net.connect_all();
    net.advance(Duration::from_millis(50));
    let mid = slot_for(&net, b, pid(1)).unwrap();
    assert!(net.sfu.slot_is_fast(pid(2), &mid));
    let ssrc = net.sfu.slot_ssrc(pid(2), &mid).unwrap();
    // SRTCP keeps the first 8 octets in clear: header and first SSRC.
    let indexes: Rc<RefCell<Vec<u32>>> = Rc::default();
    let seen = indexes.clone();
    net.filter = Some(Box::new(move |i, to_sfu, bytes| {
        let rtcp = bytes.len() > 12 && (192..=223).contains(&bytes[1]) && bytes[0] >> 6 == 2;
        if i == b && !to_sfu && rtcp && bytes[4..8] == ssrc.to_be_bytes() {
            // AES-GCM profiles (what str0m peers negotiate): E|index is last.
            let n = bytes.len();
            let e_index =
                u32::from_be_bytes([bytes[n - 4], bytes[n - 3], bytes[n - 2], bytes[n - 1]]);
            seen.borrow_mut().push(e_index & 0x7fff_ffff);
        }
        true
    }));
    for i in 0..150 {
        net.send_audio(a, &super::core_tests::payload(i), 20);
        net.advance(Duration::from_millis(20));
    }
    let got = net.peers[b].received_on(&mid).len();
    assert_eq!(got, 150);
    let indexes = indexes.borrow();
    assert!(indexes.len() >= 2, "about one SR per second: {indexes:?}");
    assert!(indexes.iter().all(|&i| i >= 1 << 30), "{indexes:?}");
    let cname = net.peers[b]
        .rtc
        .direct_api()
        .stream_rx(&ssrc.into())
        .and_then(|s| s.cname().map(str::to_string));
    assert!(
        cname.is_some_and(|c| !c.is_empty()),
        "SDES from our SRTCP was read"
    );
}

/// With the fast path off, nothing is written by it.
#[test]
fn fast_path_off_uses_str0m() {
    let mut cfg = config();
    cfg.fast_path = false;
    let mut net = Net::new(&cfg);
    let a = net
        .join(room_id(1), pid(1), 1, TestPeerConfig::default())
        .unwrap();
    let b = net
        .join(room_id(1), pid(2), 1, TestPeerConfig::default())
        .unwrap();
    net.connect_all();
    let mid = slot_for(&net, b, pid(1)).unwrap();
    net.send_audio(a, &super::core_tests::payload(1), 20);
    assert!(!net.sfu.has_fast_datagrams());
    assert!(!net.sfu.slot_is_fast(pid(2), &mid));
    assert_eq!(net.peers[b].received_on(&mid).len(), 1);
}

/// A renegotiation (more slots) keeps the SSRCs the fast path sends on
/// announced in the answer, and forwarding on them continues.
#[test]
fn renegotiation_keeps_fast_ssrcs() {
    let mut net = Net::new(&config());
    let a = net
        .join(room_id(1), pid(1), 1, TestPeerConfig::default())
        .unwrap();
    let b = net
        .join(room_id(1), pid(2), 1, TestPeerConfig::default())
        .unwrap();
    net.connect_all();
    net.advance(Duration::from_millis(50));
    let mid = slot_for(&net, b, pid(1)).unwrap();
    let ssrc = net.sfu.slot_ssrc(pid(2), &mid).unwrap();
    for i in 0..5 {
        net.send_audio(a, &super::core_tests::payload(i), 20);
        net.advance(Duration::from_millis(20));
    }
    net.renegotiate(b, 3).unwrap();
    net.advance(Duration::from_millis(50));
    assert_eq!(net.sfu.slot_ssrc(pid(2), &mid), Some(ssrc));
    assert!(net.sfu.slot_is_fast(pid(2), &mid));
    for (m, _) in net.sfu.slots_of(pid(2)) {
        assert!(
            net.sfu.slot_is_fast(pid(2), &m),
            "new slot {m} taken over too"
        );
    }
    for i in 5..10 {
        net.send_audio(a, &super::core_tests::payload(i), 20);
        net.advance(Duration::from_millis(20));
    }
    let got = net.peers[b].received_on(&mid);
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|r| r.ssrc == ssrc));
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1);
    }
}

/// Summary figures of one histogram in a Prometheus text exposition:
/// (sample count, mean, largest sample).
fn histogram(text: &str, name: &str) -> (f64, f64, f64) {
    let value = |suffix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}{suffix} ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let count = value("_count").unwrap_or(0.0);
    let sum = value("_sum").unwrap_or(0.0);
    let max = value("{quantile=\"1\"}").unwrap_or(f64::NAN);
    (count, if count > 0.0 { sum / count } else { f64::NAN }, max)
}

/// Publisher → listener over a network with `delay` each way, dropping one
/// forwarded RTP packet in `drop_every`; returns the metrics text and
/// whether the listener's slot was on the fast path.
fn reports_run(fast_path: bool, delay: Duration, drop_every: u32) -> (String, bool) {
    let mut cfg = config();
    cfg.fast_path = fast_path;
    // str0m's egress stats (the str0m path's figures) every half second.
    cfg.stats_interval = Duration::from_millis(500);
    // A recorder of its own: the handles the core creates bind to it.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let mut net = metrics::with_local_recorder(&recorder, || Net::new(&cfg));
    let a = net
        .join(room_id(1), pid(1), 1, TestPeerConfig::default())
        .unwrap();
    let listener = TestPeerConfig {
        send: false,
        ..Default::default()
    };
    let b = net.join(room_id(1), pid(2), 1, listener).unwrap();
    net.connect_all();
    net.delay = delay;
    net.advance(Duration::from_millis(100));
    let mid = slot_for(&net, b, pid(1)).unwrap();
    let mut n = 0;
    net.filter = Some(Box::new(move |i, to_sfu, bytes| {
        if i == b && !to_sfu && crate::demux::classify(bytes) == Some(crate::demux::Kind::Rtp) {
            n += 1;
            return n % drop_every != 0;
        }
        true
    }));
    // 16 s: str0m (like browsers) sends audio receiver reports every 5 s.
    for i in 0..800 {
        net.send_audio(a, &super::core_tests::payload(i), 20);
        net.advance(Duration::from_millis(20));
    }
    let got = net.peers[b].received_on(&mid).len();
    let expected = 800 - 800 / drop_every as usize;
    assert!(
        (expected - 2..=expected + 2).contains(&got),
        "{got} packets arrived, {expected} expected"
    );
    (handle.render(), net.sfu.slot_is_fast(pid(2), &mid))
}

/// With the fast path on, the subscriber's receiver reports about the SSRC
/// the fast path sends on are read by the SFU: RTT (against the sender
/// report the fast path sent) equals the network's round trip, and the
/// fraction lost reflects the packets the network dropped, as the str0m
/// path measures them.
#[test]
fn fast_path_measures_rtt_and_loss_from_receiver_reports() {
    let delay = Duration::from_millis(40);
    for fast in [true, false] {
        let (text, on_fast) = reports_run(fast, delay, 4);
        assert_eq!(on_fast, fast);
        let (count, mean, max) = histogram(&text, "confab_sfu_rtt_seconds");
        assert!(count >= 2.0, "fast {fast}: RTT samples: {count}\n{text}");
        for v in [mean, max] {
            assert!(
                (v - 0.080).abs() < 0.006,
                "fast {fast}: RTT {v} s, the network's round trip is 80 ms"
            );
        }
        // One in four forwarded packets dropped: 25 % lost (the reports' 1/256
        // resolution and the first report's partial interval aside).
        let (count, _, max) = histogram(&text, "confab_sfu_subscriber_loss_ratio");
        assert!(count >= 2.0, "fast {fast}: loss samples: {count}\n{text}");
        assert!(
            (0.2..=0.3).contains(&max),
            "fast {fast}: fraction lost {max}"
        );
        let (count, mean, _) = histogram(&text, "confab_sfu_subscriber_jitter_seconds");
        assert!(count >= 2.0, "fast {fast}: jitter samples: {count}");
        assert!(
            mean < 0.005,
            "fast {fast}: jitter {mean} s on a steady network"
        );
    }
}
