//! The video scenario: P publishers sending 3-layer simulcast VP8 and V
//! viewers in one voice channel, each viewer showing every publisher in a
//! tile of its size (sizes from `--tile-mix`, assigned round-robin); after
//! the last join, a measured steady state.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::stats::{self, Hist};
use crate::video_peer::{self, Role, VideoPeerConfig, VideoPeerReport, VideoShared};
use crate::vp8;
use crate::{server, setup, Ctx};

#[derive(Clone, Debug)]
pub struct VideoOpts {
    pub publishers: usize,
    pub viewers: usize,
    /// Tile sizes assigned to viewers round-robin.
    pub tile_mix: Vec<(u32, u32)>,
    pub fps: u32,
    pub keyframe_interval: Duration,
    /// Go Live instead of cameras: `Some("1080p60")` etc. (the web client's presets).
    pub screen: Option<ScreenPreset>,
    /// Joins per second.
    pub join_rate: f64,
    pub join_timeout: Duration,
}

/// A Go Live preset of the web client, as the load tester sends it.
#[derive(Clone, Copy, Debug)]
pub struct ScreenPreset {
    pub name: &'static str,
    pub fps: u32,
    pub layers: &'static [vp8::Layer; 3],
}

/// Parses `--screen 720p30|1080p30|1080p60`.
pub fn parse_screen_preset(s: &str) -> Result<ScreenPreset> {
    Ok(match s {
        "720p30" => ScreenPreset {
            name: "720p30",
            fps: 30,
            layers: &vp8::SCREEN_720P_LAYERS,
        },
        "1080p30" => ScreenPreset {
            name: "1080p30",
            fps: 30,
            layers: &vp8::SCREEN_1080P_LAYERS,
        },
        "1080p60" => ScreenPreset {
            name: "1080p60",
            fps: 60,
            layers: &vp8::SCREEN_1080P_LAYERS,
        },
        other => bail!("--screen {other:?}: expected 720p30, 1080p30 or 1080p60"),
    })
}

/// Parses `WxH[,WxH...]`, e.g. `320x180,640x360,1280x720`.
pub fn parse_tile_mix(s: &str) -> Result<Vec<(u32, u32)>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((w, h)) = part.split_once(['x', 'X']) else {
            bail!("tile size {part:?}: expected WIDTHxHEIGHT, e.g. 640x360");
        };
        let (Ok(w), Ok(h)) = (w.trim().parse::<u32>(), h.trim().parse::<u32>()) else {
            bail!("tile size {part:?}: width and height must be whole numbers");
        };
        if w == 0 || h == 0 || w > 16_384 || h > 16_384 {
            bail!("tile size {part:?}: width and height must be 1..=16384");
        }
        out.push((w, h));
    }
    if out.is_empty() {
        bail!("--tile-mix needs at least one WIDTHxHEIGHT");
    }
    Ok(out)
}

pub async fn run(ctx: &Ctx, opts: &VideoOpts, duration: Duration) -> Result<Value> {
    let n = opts.publishers + opts.viewers;
    anyhow::ensure!(opts.publishers > 0, "--publishers must be at least 1");
    anyhow::ensure!(opts.viewers > 0, "--viewers must be at least 1");
    if let Some(p) = opts.screen {
        vp8::use_layers(p.layers);
    }
    eprintln!(
        "video: {} publisher(s) × 3 layers, {} viewer(s) on tiles {:?}, {} fps, joining at {}/s, {} s steady state",
        opts.publishers,
        opts.viewers,
        opts.tile_mix,
        opts.fps,
        opts.join_rate,
        duration.as_secs_f64()
    );
    let users = setup::register_users(&ctx.api, n, ctx.register_concurrency).await?;
    let srv = setup::server_with_members(&ctx.api, &users, "lt-video", 32).await?;
    let channel = ctx
        .api
        .ensure_channels(&users[0].token, &srv.server_id, "voice", 1)
        .await?
        .remove(0);
    let publisher_ids: Vec<String> = users[..opts.publishers]
        .iter()
        .map(|u| u.id.clone())
        .collect();

    let shared = Arc::new(VideoShared {
        clock: ctx.clock,
        gateway_url: ctx.api.gateway_url(),
        win_start: AtomicU64::new(u64::MAX),
        win_end: AtomicU64::new(u64::MAX),
        connected: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        join_timeout: opts.join_timeout,
        fps: opts.fps,
        keyframe_interval: opts.keyframe_interval,
        track: if opts.screen.is_some() {
            "screen"
        } else {
            "camera"
        },
    });

    // Publishers first, so viewers' subscriptions find them.
    let (stop_tx, stop_rx) = watch::channel(false);
    let pb = setup::bar(n as u64, "video join");
    let mut tasks = Vec::with_capacity(n);
    let t0 = Instant::now();
    for (i, user) in users.iter().enumerate() {
        tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 / opts.join_rate)).await;
        let role = if i < opts.publishers {
            Role::Publisher
        } else {
            let v = i - opts.publishers;
            Role::Viewer {
                tile: opts.tile_mix[v % opts.tile_mix.len()],
                publishers: publisher_ids.clone(),
            }
        };
        let cfg = VideoPeerConfig {
            role,
            token: user.token.clone(),
            server_id: srv.server_id.clone(),
            channel_id: channel.clone(),
        };
        tasks.push(tokio::spawn(video_peer::run(
            cfg,
            shared.clone(),
            stop_rx.clone(),
        )));
        pb.set_position(
            (shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed))
                as u64,
        );
    }
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
        "video: {} connected, {} failed after {:.1} s",
        shared.connected.load(Ordering::Relaxed),
        shared.failed.load(Ordering::Relaxed),
        join_secs
    );
    // Keyframes for the last viewers, and layer choice settling.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let start_us = ctx.clock.now_us() + 200_000;
    let end_us = start_us + duration.as_micros() as u64;
    shared.win_start.store(start_us, Ordering::Relaxed);
    shared.win_end.store(end_us, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_micros(
        start_us.saturating_sub(ctx.clock.now_us()),
    ))
    .await;
    let s0 = server::snapshot(&ctx.api, ctx.sfu_pid).await;
    let cpu0 = stats::self_cpu_us();
    steady_state(ctx, &shared, n, start_us, end_us).await;
    let s1 = server::snapshot(&ctx.api, ctx.sfu_pid).await;
    let cpu1 = stats::self_cpu_us();
    let rss = stats::rss_bytes(None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_tx.send(true);
    let reports = crate::voice::collect_within(tasks, crate::voice::PEER_STOP_GRACE).await;
    Ok(aggregate(
        opts,
        &reports,
        &s0,
        &s1,
        cpu1 - cpu0,
        rss,
        duration,
        join_secs,
    ))
}

/// Waits out the window with a progress line (frames received so far is
/// not shared between tasks, so the line shows the server's side).
async fn steady_state(ctx: &Ctx, shared: &VideoShared, n: usize, start_us: u64, end_us: u64) {
    let secs = (end_us - start_us).div_ceil(1_000_000);
    let pb = setup::steady_bar(secs, "video");
    let mut sampler = server::Sampler::default();
    sampler.sample(&ctx.api, ctx.sfu_pid, 0.0).await;
    let mut k = 1u64;
    loop {
        let now = ctx.clock.now_us();
        if now >= end_us {
            break;
        }
        let tick_us = (start_us + k * 1_000_000).min(end_us);
        tokio::time::sleep(Duration::from_micros(tick_us.saturating_sub(now))).await;
        let t_s = (ctx.clock.now_us() - start_us) as f64 / 1e6;
        sampler.sample(&ctx.api, ctx.sfu_pid, t_s).await;
        let fmt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0}"));
        pb.set_position(k.min(secs));
        pb.set_message(format!(
            "peers {}/{n} | forwarded {} pkt/s | server CPU {}%",
            shared.connected.load(Ordering::Relaxed),
            fmt(sampler.forwarded_per_s.last().copied().flatten()),
            fmt(sampler.last_cpu_percent()),
        ));
        k += 1;
    }
    pb.set_position(secs);
    pb.finish();
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

#[allow(clippy::too_many_arguments)]
fn aggregate(
    opts: &VideoOpts,
    reports: &[VideoPeerReport],
    s0: &server::Snapshot,
    s1: &server::Snapshot,
    self_cpu_us: u64,
    rss: Option<u64>,
    duration: Duration,
    join_secs: f64,
) -> Value {
    let secs = duration.as_secs_f64();
    let connected = reports.iter().filter(|r| r.connected).count();
    let mut errors: std::collections::BTreeMap<String, u64> = Default::default();
    let mut join = Hist::new();
    let mut first_frame = Hist::new();
    let (mut frames_sent, mut keyframes_sent, mut packets_sent, mut bytes_sent) = (0, 0, 0, 0);
    let (mut plis, mut plis_window) = (0u64, 0u64);
    let (mut frames, mut keyframes, mut switches, mut bytes, mut packets) = (0, 0, 0, 0, 0);
    let (mut gaps, mut recovered) = (0u64, 0u64);
    let mut fps_per_viewer = Vec::new();
    let mut freeze_ms = Vec::new();
    let mut final_layers = [0u64; 3];
    let mut expected_layers = [0u64; 3];
    let mut frames_per_layer = [0u64; 3];
    let (mut wrong_layer, mut missing_streams, mut voice_errors) = (0u64, 0u64, 0u64);
    let mut wrong_examples = Vec::new();
    let mut rx_packets = 0u64;
    let (mut layers_reports, mut undecodable, mut slots_short) = (0u64, 0u64, 0u64);
    let mut active_rids: Vec<Vec<&str>> = Vec::new();
    for r in reports {
        if let Some(e) = &r.error {
            let key: String = e.chars().take(80).collect();
            *errors.entry(key).or_default() += 1;
        }
        voice_errors += r.voice_errors.len() as u64;
        if !r.connected {
            continue;
        }
        if let Some(j) = r.join_us {
            join.record_us(j);
        }
        if r.publisher {
            frames_sent += r.frames_sent;
            keyframes_sent += r.keyframes_sent;
            packets_sent += r.packets_sent;
            bytes_sent += r.bytes_sent;
            plis += r.keyframe_requests;
            plis_window += r.keyframe_requests_in_window;
            layers_reports += r.layers_reports;
            active_rids.push(r.active_rids.clone());
            continue;
        }
        if let Some(f) = r.first_frame_us {
            first_frame.record_us(f);
        }
        let expected = vp8::expected_layer(r.tile);
        let shown = opts.publishers.min(9);
        if r.slots_events == 0 || r.slots_assigned < shown {
            slots_short += 1;
        }
        expected_layers[expected] += shown as u64;
        let active: Vec<_> = r.streams.iter().filter(|s| s.packets > 0).collect();
        missing_streams += shown.saturating_sub(active.len()) as u64;
        let mut viewer_frames = 0;
        let mut viewer_freeze = 0;
        for s in &active {
            frames += s.frames;
            viewer_frames += s.frames;
            keyframes += s.keyframes;
            switches += s.switches;
            bytes += s.bytes;
            packets += s.packets;
            rx_packets += s.packets;
            gaps += s.seq.gaps;
            recovered += s.seq.recovered;
            viewer_freeze += s.freeze_us;
            undecodable += s.undecodable_frames;
            for (t, f) in frames_per_layer.iter_mut().zip(s.frames_per_layer) {
                *t += f;
            }
            match s.layer {
                Some(l) => {
                    final_layers[l] += 1;
                    if l != expected {
                        wrong_layer += 1;
                        if wrong_examples.len() < 5 {
                            wrong_examples.push(json!({
                                "tile": [r.tile.0, r.tile.1],
                                "expected": vp8::layers()[expected].rid,
                                "got": vp8::layers()[l].rid,
                            }));
                        }
                    }
                }
                None => wrong_layer += 1,
            }
        }
        // Frames per second per shown stream, averaged over the viewer's streams.
        fps_per_viewer.push(viewer_frames as f64 / secs / shown.max(1) as f64);
        freeze_ms.push(viewer_freeze as f64 / 1000.0);
    }
    let lost = gaps.saturating_sub(recovered);
    let loss_percent = if packets + lost > 0 {
        lost as f64 * 100.0 / (packets + lost) as f64
    } else {
        0.0
    };
    let min_fps = fps_per_viewer.iter().copied().reduce(f64::min);
    let fps_p50 = median(&mut fps_per_viewer.clone());
    let freeze_max = freeze_ms.iter().copied().reduce(f64::max);
    let freeze_p50 = median(&mut freeze_ms);
    let server_cpu = server::cpu_delta(s0, s1);
    let delta = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let fwd = delta(s0.forwarded, s1.forwarded);
    let cpu_per_fwd = match (server_cpu, fwd) {
        (Some((c, _)), Some(f)) if f > 0.0 => Some(c * 1e6 / f),
        _ => None,
    };
    let fwd_bytes = delta(s0.video_forwarded_bytes, s1.video_forwarded_bytes);
    let kf_server = delta(s0.keyframe_requests, s1.keyframe_requests);
    let layer_obj = |a: [u64; 3]| json!({"low": a[0], "mid": a[1], "high": a[2]});
    let tile_mix: Vec<String> = opts
        .tile_mix
        .iter()
        .map(|(w, h)| format!("{w}x{h}"))
        .collect();
    let layer_table: Vec<Value> = vp8::layers()
        .iter()
        .map(|l| json!({"rid": l.rid, "width": l.width, "height": l.height, "bitrate": l.bitrate}))
        .collect();
    let mut out = json!({
        "video": {
            "publishers": opts.publishers,
            "viewers": opts.viewers,
            "tile_mix": tile_mix,
            "fps": opts.fps,
            "keyframe_interval_s": opts.keyframe_interval.as_secs_f64(),
            "duration_s": secs,
            "join_phase_s": join_secs,
            "joined": connected,
            "failed": reports.len() - connected,
            "errors": errors,
            "voice_errors": voice_errors,
            "join_ms": join.summary_ms(),
            "first_frame_ms": first_frame.summary_ms(),
            "frames_sent": frames_sent,
            "keyframes_sent": keyframes_sent,
            "packets_sent": packets_sent,
            "sent_bitrate_bps": bytes_sent as f64 * 8.0 / secs,
            "keyframe_requests_received": plis,
            "keyframe_requests_per_second": plis_window as f64 / secs,
            "frames_received": frames,
            "frames_per_second": {"p50": fps_p50, "min": min_fps},
            "keyframes": keyframes,
            "layer_switches": switches,
            "packets_received": packets,
            "seq_gaps": gaps,
            "packets_recovered": recovered,
            "loss_percent": loss_percent,
            "freeze_ms": {"p50": freeze_p50, "max": freeze_max},
            "layers_received": layer_obj(final_layers),
            "layers_expected": layer_obj(expected_layers),
            "frames_per_layer": layer_obj(frames_per_layer),
            "wrong_layer": wrong_layer,
            "wrong_layer_examples": wrong_examples,
            "streams_missing": missing_streams,
            "viewers_missing_slots": slots_short,
            "frames_before_first_keyframe": undecodable,
            "layers_reports": layers_reports,
            "publisher_active_rids": active_rids,
            "forwarded_bitrate_bps": bytes as f64 * 8.0 / secs,
        },
        "server": {
            "cpu_seconds": server_cpu.map(|c| c.0),
            "cpu_source": server_cpu.map(|c| c.1),
            "forwarded_packets": fwd,
            "forwarded_packets_per_second": fwd.map(|f| f / secs),
            "sfu_cpu_us_per_forwarded_packet": cpu_per_fwd,
            "cpu_percent_of_one_core": server_cpu.map(|c| c.0 * 100.0 / secs),
            "video_forwarded_bitrate_bps": fwd_bytes.map(|b| b * 8.0 / secs),
            "keyframe_requests_per_second": kf_server.map(|k| k / secs),
            "rss_bytes": s1.rss,
        },
        "loadtest": {
            "cpu_seconds": self_cpu_us as f64 / 1e6,
            "cpu_us_per_received_packet": (rx_packets > 0).then(|| self_cpu_us as f64 / rx_packets as f64),
            "received_packets_in_window": rx_packets,
            "rss_bytes": rss,
        }
    });
    // (Apart: one json! of this size already nears the macro's recursion limit.)
    out["video"]["track"] = json!(if opts.screen.is_some() {
        "screen"
    } else {
        "camera"
    });
    out["video"]["screen_preset"] = json!(opts.screen.map(|p| p.name));
    out["video"]["layers"] = Value::Array(layer_table);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_mix_parses_and_rejects_bad_sizes() {
        assert_eq!(
            parse_tile_mix("320x180, 640X360,1280x720").unwrap(),
            vec![(320, 180), (640, 360), (1280, 720)]
        );
        for bad in ["", "320", "0x180", "axb", "320x180,99999x1"] {
            let e = parse_tile_mix(bad).unwrap_err().to_string();
            assert!(e.contains("tile") || e.contains("--tile-mix"), "{bad}: {e}");
        }
    }
}
