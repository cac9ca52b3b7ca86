//! The voice scenario: R voice channels, S speakers and L listeners in each,
//! joining at a fixed rate; after the last join, a measured steady state.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};
use tokio::sync::{watch, Barrier};
use tokio::time::Instant;

use crate::audio::Catalog;
use crate::peer::{self, PeerConfig, PeerReport, VoiceShared, COL_EXPECTED, COL_RECEIVED};
use crate::stats::{self, loss_percent, network_loss_percent, Hist};
use crate::timeseries::Series;
use crate::turns::Turns;
use crate::{janus, server, setup, Ctx};

#[derive(Clone, Debug)]
pub struct VoiceOpts {
    pub rooms: usize,
    pub speakers: usize,
    pub listeners: usize,
    /// Joins per second.
    pub join_rate: f64,
    pub join_timeout: Duration,
    /// Decode every Nth received packet per peer for the integrity check
    /// (0 = off).
    pub integrity_every: u64,
    /// Speakers talk in turn for this long each (0 = all talk all the time).
    pub talk_turn_ms: u64,
    /// Negotiate RTX for Opus: peers NACK lost audio (see `peer::build_rtc`).
    pub audio_rtx: bool,
    /// End-to-end encrypted channels (see `e2ee.rs`).
    pub e2ee: bool,
    /// The SFU under test.
    pub target: Target,
}

/// Which SFU the voice scenario drives.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Confab: REST setup, gateway signalling, one PeerConnection per peer.
    Confab,
    /// A Janus VideoRoom over Janus's HTTP API (see `janus.rs`).
    Janus,
}

/// How peers get into the rooms.
enum Signalling {
    Confab {
        users: Vec<crate::api::User>,
        server_id: String,
        channels: Vec<String>,
    },
    Janus(Arc<janus::JanusRun>),
}

/// Listening slots offered at first in the talk-in-turn mode: the server's default
/// loudest-speaker limit (it asks for more with VOICE_RENEGOTIATE if it allows more).
const TURNS_INITIAL_SLOTS: usize = 3;

pub async fn run(
    ctx: &Ctx,
    opts: &VoiceOpts,
    duration: Duration,
    barrier: Option<Arc<Barrier>>,
) -> Result<Value> {
    let per_room = opts.speakers + opts.listeners;
    let n = opts.rooms * per_room;
    anyhow::ensure!(
        n > 0,
        "no voice participants (--rooms × (--speakers + --listeners) is 0)"
    );
    eprintln!(
        "voice: {} room(s) × ({} speakers + {} listeners) = {n} peers, joining at {}/s, {} s steady state",
        opts.rooms, opts.speakers, opts.listeners, opts.join_rate, duration.as_secs_f64()
    );
    let n_speakers = opts.rooms * opts.speakers;
    let catalog =
        tokio::task::spawn_blocking(move || Catalog::generate(n_speakers, 0x5eed)).await??;
    let lookup_ns = catalog.bench_lookup_ns();
    let signalling = match opts.target {
        Target::Confab => {
            let users = setup::register_users(&ctx.api, n, ctx.register_concurrency).await?;
            let srv = setup::server_with_members(&ctx.api, &users, "lt-voice", 32).await?;
            let channels = ctx
                .api
                .ensure_channels(&users[0].token, &srv.server_id, "voice", opts.rooms)
                .await?;
            if opts.e2ee {
                for c in &channels {
                    ctx.api.set_channel_e2ee(&users[0].token, c, true).await?;
                }
            }
            Signalling::Confab {
                users,
                server_id: srv.server_id,
                channels,
            }
        }
        Target::Janus => {
            anyhow::ensure!(
                !opts.e2ee,
                "--e2ee needs Confab (Janus has no e2ee channels)"
            );
            Signalling::Janus(janus::prepare(&ctx.api.base, opts.rooms, opts.speakers).await?)
        }
    };

    let shared = Arc::new(VoiceShared {
        clock: ctx.clock,
        catalog: Arc::new(catalog),
        win_start: AtomicU64::new(u64::MAX),
        win_end: AtomicU64::new(u64::MAX),
        sent_in_window: (0..n_speakers).map(|_| AtomicU64::new(0)).collect(),
        connected: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        join_timeout: opts.join_timeout,
        room_connected: (0..opts.rooms).map(|_| AtomicU64::new(0)).collect(),
        series: Series::new(
            duration.as_secs_f64().ceil() as usize + 1,
            &peer::SERIES_COLS,
        ),
        integrity_every: opts.integrity_every,
        turns: Turns::new(opts.talk_turn_ms, opts.speakers),
        bind_ip: ctx.bind_ip,
        audio_rtx: opts.audio_rtx,
        e2ee: opts.e2ee,
    });

    // Join order: every room's speakers first, then listeners round-robin
    // over the rooms.
    let mut plan = Vec::with_capacity(n);
    let mut next_user = 0;
    for room in 0..opts.rooms {
        for k in 0..opts.speakers {
            plan.push((room, Some(room * opts.speakers + k)));
        }
    }
    for _ in 0..opts.listeners {
        for room in 0..opts.rooms {
            plan.push((room, None));
        }
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let pb = setup::bar(n as u64, "voice join");
    let mut tasks = Vec::with_capacity(n);
    let t0 = Instant::now();
    for (i, (room, speaker)) in plan.into_iter().enumerate() {
        tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 / opts.join_rate)).await;
        let task = match &signalling {
            Signalling::Confab {
                users,
                server_id,
                channels,
            } => {
                let cfg = PeerConfig {
                    room,
                    speaker,
                    slots: {
                        let others = if speaker.is_some() {
                            opts.speakers - 1
                        } else {
                            opts.speakers
                        };
                        if shared.turns.is_some() {
                            others.min(TURNS_INITIAL_SLOTS)
                        } else {
                            others
                        }
                    },
                    token: users[next_user].token.clone(),
                    user_id: users[next_user].id.clone(),
                    server_id: server_id.clone(),
                    channel_id: channels[room].clone(),
                    gateway_url: ctx.api.node(i).gateway_url(),
                };
                tokio::spawn(peer::run(cfg, shared.clone(), stop_rx.clone()))
            }
            Signalling::Janus(run) => tokio::spawn(janus::run_peer(
                room,
                speaker,
                run.clone(),
                shared.clone(),
                stop_rx.clone(),
            )),
        };
        next_user += 1;
        tasks.push(task);
        pb.set_position(
            (shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed))
                as u64,
        );
    }
    // Wait for the last joins to settle.
    let settle_end = Instant::now() + opts.join_timeout + Duration::from_secs(5);
    loop {
        let done = shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed);
        pb.set_position(done as u64);
        if done >= n || Instant::now() >= settle_end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pb.finish();
    let join_secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "voice: {} connected, {} failed after {:.1} s",
        shared.connected.load(Ordering::Relaxed),
        shared.failed.load(Ordering::Relaxed),
        join_secs
    );
    // Renegotiations and the first packets of the last joiners.
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Some(b) = &barrier {
        b.wait().await;
    }

    // Steady state: the window is fixed in advance so senders and receivers
    // classify each packet by its send time the same way.
    let start_us = ctx.clock.now_us() + 200_000;
    let end_us = start_us + duration.as_micros() as u64;
    shared.series.set_start(start_us);
    shared.win_start.store(start_us, Ordering::Relaxed);
    shared.win_end.store(end_us, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_micros(
        start_us.saturating_sub(ctx.clock.now_us()),
    ))
    .await;
    let s0 = server::snapshot(&ctx.api, ctx.sfu_pid).await;
    let cpu0 = stats::self_cpu_us();
    let sampler = steady_state(ctx, &shared, n, start_us, end_us).await;
    let s1 = server::snapshot(&ctx.api, ctx.sfu_pid).await;
    let cpu1 = stats::self_cpu_us();
    let rss = stats::rss_bytes(None);
    // Packets sent at the very end of the window are still in flight.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_tx.send(true);
    let reports = collect_within(tasks, PEER_STOP_GRACE).await;
    if let Signalling::Janus(run) = &signalling {
        run.janus.destroy().await;
    }
    let mut out = aggregate(
        opts,
        &shared,
        &reports,
        &s0,
        &s1,
        cpu1 - cpu0,
        rss,
        lookup_ns,
        duration,
        join_secs,
    );
    out["timeseries"] = json!({
        "voice": series_json(&shared, duration, &reports),
        "server": sampler.to_json(),
    });
    Ok(out)
}

/// Waits out the window, updating the live progress line and sampling the
/// server's counters about once a second (half a second after each second
/// of the window ends, so that second's packets have mostly arrived).
async fn steady_state(
    ctx: &Ctx,
    shared: &VoiceShared,
    n: usize,
    start_us: u64,
    end_us: u64,
) -> server::Sampler {
    let secs = (end_us - start_us).div_ceil(1_000_000);
    let pb = setup::steady_bar(secs, "voice");
    let mut sampler = server::Sampler::default();
    sampler.sample(&ctx.api, ctx.sfu_pid, 0.0).await;
    let mut k = 1u64;
    loop {
        let tick_us = start_us + k * 1_000_000 + 500_000;
        let now = ctx.clock.now_us();
        if now >= end_us {
            break;
        }
        let until = tick_us.min(end_us);
        tokio::time::sleep(Duration::from_micros(until.saturating_sub(now))).await;
        if until != tick_us {
            break;
        }
        let t_s = (ctx.clock.now_us() - start_us) as f64 / 1e6;
        sampler.sample(&ctx.api, ctx.sfu_pid, t_s).await;
        let sec = (k - 1) as usize;
        let exp = shared.series.count(sec, "expected");
        let got = shared.series.count(sec, "received");
        let fmt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.1}"));
        pb.set_position(k.min(secs));
        pb.set_message(format!(
            "peers {}/{n} | loss {:.2}% | latency p50 {} p99 {} ms | rx {}/s | server CPU {}%",
            shared.connected.load(Ordering::Relaxed),
            loss_percent(exp, got),
            fmt(shared.series.percentile_ms(sec, 50.0)),
            fmt(shared.series.percentile_ms(sec, 99.0)),
            shared.series.count(sec, "rx_packets"),
            fmt(sampler.last_cpu_percent()),
        ));
        k += 1;
    }
    pb.set_position(secs);
    pb.finish();
    sampler
}

/// The per-second series as JSON, with loss per second and the join times
/// (sorted, for a CDF; at most ~1000 points).
fn series_json(shared: &VoiceShared, duration: Duration, reports: &[PeerReport]) -> Value {
    let n = duration.as_secs_f64().ceil() as usize;
    let mut v = shared.series.to_json(n);
    let loss: Vec<f64> = (0..n)
        .map(|s| {
            loss_percent(
                shared.series.count(s, peer::SERIES_COLS[COL_EXPECTED]),
                shared.series.count(s, peer::SERIES_COLS[COL_RECEIVED]),
            )
        })
        .collect();
    v["loss_percent"] = json!(loss);
    let mut joins: Vec<f64> = reports
        .iter()
        .filter_map(|r| r.join_us)
        .map(|us| us as f64 / 1000.0)
        .collect();
    joins.sort_by(|a, b| a.total_cmp(b));
    let step = joins.len().div_ceil(1000).max(1);
    let sampled: Vec<f64> = joins.iter().step_by(step).copied().collect();
    v["join_ms_sorted"] = json!(sampled);
    v["join_total"] = json!(joins.len());
    v
}

#[allow(clippy::too_many_arguments)]
fn aggregate(
    opts: &VoiceOpts,
    shared: &VoiceShared,
    reports: &[PeerReport],
    s0: &server::Snapshot,
    s1: &server::Snapshot,
    self_cpu_us: u64,
    rss: Option<u64>,
    lookup_ns: f64,
    duration: Duration,
    join_secs: f64,
) -> Value {
    let sent: Vec<u64> = shared
        .sent_in_window
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    let mut latency = Hist::new();
    let mut latency_app = Hist::new();
    let mut join = Hist::new();
    let mut first_audio = Hist::new();
    let mut reconnect = Hist::new();
    let mut reconnect_gap = Hist::new();
    let (mut reconnects, mut reconnected_peers, mut reconnected_within_5s) = (0u64, 0u64, 0u64);
    let mut jitter = Hist::new();
    let (mut expected, mut received, mut dup, mut rx_window, mut unknown) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut listener_loss = Vec::new();
    let mut errors: std::collections::BTreeMap<String, u64> = Default::default();
    let mut offers = 0u64;
    let (mut nacks, mut gaps, mut recovered) = (0u64, 0u64, 0u64);
    let (mut hashed, mut fast, mut auth_failed, mut rx_all) = (0u64, 0u64, 0u64, 0u64);
    let mut str0m_timeouts = 0u64;
    let mut keys = crate::e2ee::KeyStats::default();
    let (mut decrypted, mut no_key, mut undecryptable) = (0u64, 0u64, 0u64);
    let (mut ig_checked, mut ig_failed, mut ig_min) = (0u64, 0u64, None::<f64>);
    let mut switch = Hist::new();
    let (mut max_distinct, mut max_streams) = (0usize, 0usize);
    for r in reports {
        switch.add(&r.switch);
        max_distinct = max_distinct.max(r.max_distinct_speakers);
        max_streams = max_streams.max(r.seq.len());
        offers += r.offers as u64;
        hashed += r.hash_lookups;
        fast += r.fast_path_packets;
        auth_failed += r.srtp_auth_failures;
        rx_all += r.rx_total;
        str0m_timeouts += r.str0m_timeouts;
        keys.add(&r.e2ee_keys);
        if let Some(rx) = &r.e2ee_rx {
            decrypted += rx.decrypted;
            no_key += rx.no_key;
            undecryptable += rx.failed;
        }
        nacks += r.nacks.iter().map(|(_, n)| n).sum::<u64>();
        for (_, t) in &r.seq {
            gaps += t.gaps;
            recovered += t.recovered;
        }
        ig_checked += r.integrity.checked;
        ig_failed += r.integrity.failed;
        if let Some(c) = r.integrity.min_correlation {
            ig_min = Some(ig_min.map_or(c, |m: f64| m.min(c)));
        }
        if let Some(e) = &r.error {
            // Group errors by their first words.
            let key: String = e.chars().take(80).collect();
            *errors.entry(key).or_default() += 1;
        }
        if !r.connected {
            continue;
        }
        if let Some(j) = r.join_us {
            join.record_us(j);
        }
        if let Some(f) = r.first_audio_us {
            first_audio.record_us(f);
        }
        reconnects += u64::from(r.reconnects);
        if r.reconnects > 0 {
            reconnected_peers += 1;
            // Silence around each reconnect (last packet before → first after) at most 5 s.
            if r.reconnect_gap_us.len() >= r.reconnects as usize
                && r.reconnect_gap_us.iter().all(|&us| us <= 5_000_000)
            {
                reconnected_within_5s += 1;
            }
        }
        for &us in &r.reconnect_us {
            reconnect.record_us(us);
        }
        for &us in &r.reconnect_gap_us {
            reconnect_gap.record_us(us);
        }
        latency.add(&r.latency);
        latency_app.add(&r.latency_app);
        rx_window += r.rx_in_window;
        unknown += r.unknown_payloads;
        let (mut e, mut g) = (0u64, 0u64);
        for (s, &sent_s) in sent.iter().enumerate() {
            if s / opts.speakers.max(1) != r.room || Some(s) == r.speaker {
                continue;
            }
            e += sent_s;
            if let Some((_, seen)) = r.seen.iter().find(|(sp, _)| *sp as usize == s) {
                g += seen.unique().min(sent_s);
                dup += seen.duplicates();
            }
        }
        expected += e;
        received += g;
        if r.speaker.is_none() {
            listener_loss.push(loss_percent(e, g));
        }
        for (_, j) in &r.jitter {
            if j.has_samples() {
                // timestamp units at 48 kHz → µs
                jitter.record_us((j.value() * 1000.0 / 48.0) as u64);
            }
        }
    }
    listener_loss.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let worst_listener_loss = listener_loss.last().copied().unwrap_or(0.0);
    let secs = duration.as_secs_f64();
    let server_cpu = server::cpu_delta(s0, s1);
    let fwd = match (s0.forwarded, s1.forwarded) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    // Per packet the peers received in the window: the one figure that is
    // computed the same way for any SFU (Janus has no forwarded counter).
    let cpu_per_rx = match server_cpu {
        Some((c, _)) if rx_window > 0 => Some(c * 1e6 / rx_window as f64),
        _ => None,
    };
    let (cpu_per_fwd, per_fwd_basis) = match (server_cpu, fwd) {
        (Some((c, _)), Some(f)) if f > 0.0 => (Some(c * 1e6 / f), "server_forwarded_counter"),
        _ => (cpu_per_rx, "packets_received_by_peers"),
    };
    let connected = reports.iter().filter(|r| r.connected).count();
    let ideal_fwd_pps = opts.rooms as f64
        * opts.speakers as f64
        * (opts.speakers.saturating_sub(1) + opts.listeners) as f64
        * 50.0;
    let mut out = json!({
        "voice": {
            "target": opts.target,
            "rooms": opts.rooms,
            "speakers": opts.speakers,
            "listeners": opts.listeners,
            "join_rate": opts.join_rate,
            "duration_s": secs,
            "join_phase_s": join_secs,
            "joined": connected,
            "failed": reports.len() - connected,
            "errors": errors,
            "offers": offers,
            "packets_sent": sent.iter().sum::<u64>(),
            "packets_expected": expected,
            "packets_received": received,
            "packets_duplicated": dup,
            "unknown_payloads": unknown,
            "loss_percent": loss_percent(expected, received),
            // Before recovery: what the network dropped on the way to the peers (RTP
            // sequence gaps as first seen), whether or not a retransmission filled it later.
            "network_loss_percent": network_loss_percent(rx_window, gaps, recovered),
            "audio_rtx": opts.audio_rtx,
            "worst_listener_loss_percent": worst_listener_loss,
            "latency_ms": latency.summary_ms(),
            "latency_app_ms": latency_app.summary_ms(),
            "join_ms": join.summary_ms(),
            "first_audio_ms": first_audio.summary_ms(),
            "jitter_ms": jitter.summary_ms(),
            "nacks_sent": nacks,
            "seq_gaps": gaps,
            "packets_recovered": recovered,
            "integrity_every": opts.integrity_every,
            "integrity_checked": ig_checked,
            "integrity_failed": ig_failed,
            "integrity_min_correlation": ig_min,
            "talk_in_turn": shared.turns.map(|t| json!({
                "turn_ms": t.turn_us / 1000,
                "settle_ms": crate::turns::SETTLE_US / 1000,
                // Turn start → a listener's first packet of the new speaker (speaking
                // detection + slot switch + forwarding).
                "switch_ms": switch.summary_ms(),
                "switches_measured": switch.count(),
                // Receive streams (slots) any one peer got packets on: at most K.
                "max_streams_per_peer": max_streams,
                "max_distinct_speakers_per_second": max_distinct,
            })),
        },
        "server": {
            "cpu_seconds": server_cpu.map(|c| c.0),
            "cpu_source": server_cpu.map(|c| c.1),
            "forwarded_packets": fwd,
            "forwarded_packets_per_second": fwd.map(|f| f / secs),
            "ideal_forwarded_packets_per_second": ideal_fwd_pps,
            "sfu_cpu_us_per_forwarded_packet": cpu_per_fwd,
            "sfu_cpu_us_per_forwarded_packet_basis": per_fwd_basis,
            "sfu_cpu_us_per_received_packet": cpu_per_rx,
            "packets_received_by_peers": rx_window,
            "cpu_percent_of_one_core": server_cpu.map(|c| c.0 * 100.0 / secs),
            "rss_bytes": s1.rss,
        },
        "loadtest": {
            "cpu_seconds": self_cpu_us as f64 / 1e6,
            "cpu_us_per_received_packet": (rx_window > 0).then(|| self_cpu_us as f64 / rx_window as f64),
            "received_packets_in_window": rx_window,
            "payload_lookup_ns": lookup_ns,
            // Over the whole run: audio packets received, those the SRTP fast path
            // decrypted (the rest went through str0m), those identified by a payload
            // hash (the others by their stream's prediction, see peer/measure.rs), and
            // datagrams the fast path dropped as not authentic.
            "audio_packets_received": rx_all,
            "fast_path_packets": fast,
            "payload_hash_lookups": hashed,
            "srtp_auth_failures": auth_failed,
            // str0m timeouts handled by all peers over the run (voice peers only).
            "str0m_timeouts": str0m_timeouts,
            "rss_bytes": rss,
        }
    });
    // --e2ee: the key exchange over the whole run and the frames the peers opened; the
    // join → first audio above is then join → first *decrypted* audio.
    out["voice"]["e2ee"] = opts
        .e2ee
        .then(|| {
            json!({
                "rotations": keys.rotations,
                "key_frames_sent": keys.key_frames_sent,
                "keys_wrapped": keys.keys_wrapped,
                "keys_received": keys.keys_received,
                "keys_that_did_not_open": keys.keys_failed,
                "frames_decrypted": decrypted,
                "frames_without_key": no_key,
                "frames_not_authentic": undecryptable,
            })
        })
        .into();
    // VOICE_RECONNECT (the media node died or drains) → first audio on the new connection;
    // the gap is the silence heard (last packet before → first after), "within 5 s" counts it.
    out["voice"]["reconnects"] = json!(reconnects);
    out["voice"]["reconnected_peers"] = json!(reconnected_peers);
    out["voice"]["reconnected_within_5s"] = json!(reconnected_within_5s);
    out["voice"]["reconnect_ms"] = reconnect.summary_ms();
    out["voice"]["reconnect_gap_ms"] = reconnect_gap.summary_ms();
    out
}

/// How long peers get to leave after the window before the run gives up on them.
pub(crate) const PEER_STOP_GRACE: Duration = Duration::from_secs(10);

/// Awaits every peer task, but never past `grace` in all: a peer stuck on a
/// server that stopped answering is aborted and left out of the report (and
/// said so) instead of hanging the whole run.
pub(crate) async fn collect_within<T>(
    tasks: Vec<tokio::task::JoinHandle<T>>,
    grace: Duration,
) -> Vec<T> {
    let deadline = tokio::time::Instant::now() + grace;
    let mut out = Vec::with_capacity(tasks.len());
    let mut stuck = 0usize;
    for t in tasks {
        let abort = t.abort_handle();
        match tokio::time::timeout_at(deadline, t).await {
            Ok(Ok(r)) => out.push(r),
            Ok(Err(_)) => {}
            Err(_) => {
                abort.abort();
                stuck += 1;
            }
        }
    }
    if stuck > 0 {
        eprintln!("loadtest: {stuck} peer(s) did not stop within {grace:?}; aborted, left out of the report");
    }
    out
}
