//! The deferred drain: the core writes every packet a subscriber gets in one
//! batch of datagrams with `write_rtp` and drains that subscriber's `Rtc` once
//! (`SfuCore::flush`), while str0m's documented rule is a full drain after
//! each mutation. These tests pin down that the deferred drain delivers
//! exactly what a drain after every write delivers, in the same instant —
//! including when another input reaches the subscriber's `Rtc` between the
//! writes and the drain (its own datagram, which the core drains at once).
//! Why it holds is written where the drain happens (`core/drive.rs`).

use std::time::{Duration, Instant};

use super::{pid, room_id};
use crate::testing::{Net, TestPeerConfig};

use super::core_tests::{config, payload, slot_for};

/// What one subscriber received from one source, relative to the first
/// packet: (payload, marker, seq delta, timestamp delta, arrival delta).
type Heard = Vec<(Vec<u8>, bool, u64, u32, Duration)>;

const SPEAKERS: usize = 4;
const PER_BATCH: u32 = 3;
const ROUNDS: u32 = 15;

/// Four speakers (each hearing the three others on its three slots) and one
/// listener (silent packets: the speaker selection stays put). Every round each speaker sends `PER_BATCH` packets and the SFU
/// receives all of them speaker after speaker before anything is sent, so a
/// subscriber's `Rtc` takes up to nine writes, and for speakers 1–3 also
/// their own datagram, before it is drained. `drain_each`: the reference run,
/// which flushes after every datagram (every write is drained before the next).
fn run(fast_path: bool, drain_each: bool) -> (Vec<Heard>, Instant) {
    let mut cfg = config();
    cfg.fast_path = fast_path;
    let mut net = Net::new(&cfg);
    for p in 0..SPEAKERS as u64 {
        net.join(room_id(1), pid(p + 1), 3, TestPeerConfig::default())
            .unwrap();
    }
    let listener_cfg = TestPeerConfig {
        send: false,
        ..TestPeerConfig::default()
    };
    net.join(room_id(1), pid(99), 3, listener_cfg).unwrap();
    net.connect_all();
    net.advance(Duration::from_millis(100));
    let start = net.now;
    for round in 0..ROUNDS {
        for s in 0..SPEAKERS {
            for k in 0..PER_BATCH {
                let n = (s as u32 + 1) * 10_000 + round * PER_BATCH + k;
                net.peers[s].send_audio(net.now, &payload(n), 127);
            }
        }
        for s in 0..SPEAKERS {
            let from = net.peers[s].addr;
            while let Some(t) = net.peers[s].poll_transmit() {
                net.sfu.handle_datagram(net.now, from, &t.contents);
                if drain_each {
                    net.sfu.flush(net.now);
                }
            }
        }
        // Sends everything now (the deferred drain happens in here).
        net.exchange();
        net.advance(Duration::from_millis(20));
    }
    let mut heard = Vec::new();
    for sub in 0..=SPEAKERS {
        for src in 1..=SPEAKERS as u64 {
            let Some(mid) = slot_for(&net, sub, pid(src)) else {
                continue;
            };
            let got = net.peers[sub].received_on(&mid);
            let Some(first) = got.first() else {
                heard.push(Vec::new());
                continue;
            };
            heard.push(
                got.iter()
                    .filter(|r| r.at >= start)
                    .map(|r| {
                        (
                            r.payload.to_vec(),
                            r.marker,
                            r.seq - first.seq,
                            r.timestamp.wrapping_sub(first.timestamp),
                            r.at - start,
                        )
                    })
                    .collect(),
            );
        }
    }
    (heard, start)
}

fn check(fast_path: bool) {
    let (deferred, _) = run(fast_path, false);
    let (each, _) = run(fast_path, true);
    // Speakers hear the three others; the listener hears three of the four.
    assert_eq!(deferred.len(), SPEAKERS * 3 + 3);
    for h in &deferred {
        assert_eq!(
            h.len(),
            (ROUNDS * PER_BATCH) as usize,
            "every packet arrived"
        );
        // Each round's packets arrive in that round's instant (none waited
        // in str0m for a later timer) and in order.
        for (i, p) in h.iter().enumerate() {
            let round = i as u32 / PER_BATCH;
            assert_eq!(p.4, Duration::from_millis(20) * round, "packet {i} late");
        }
        for w in h.windows(2) {
            assert_eq!(w[1].2, w[0].2 + 1, "consecutive sequence numbers");
        }
    }
    assert_eq!(deferred, each, "deferred drain == drain after each write");
}

#[test]
fn deferred_drain_equals_drain_after_each_write_str0m_path() {
    check(false);
}

#[test]
fn deferred_drain_equals_drain_after_each_write_fast_path() {
    check(true);
}
