//! `confab-loadtest`: simulated Confab chat clients and WebRTC voice peers
//! against a running server, driven only through its public API.
//!
//! ```text
//! confab-loadtest chat  --clients 1000 --channels 1 --rate 200 --duration 30
//! confab-loadtest voice --rooms 1 --speakers 3 --listeners 400 --duration 30
//! confab-loadtest mixed ... (both at once, one shared steady state)
//! confab-loadtest video --publishers 1 --viewers 100 --tile-mix 320x180,640x360,1280x720
//! ```
//! Every flag can also come from a TOML scenario (`--scenario FILE`, same
//! keys as the flags); flags given on the command line win.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use serde_json::{json, Value};

use confab_loadtest::{api, chat, limits, report, server, stats, video, voice, Ctx};

#[derive(Parser, Debug)]
#[command(
    name = "confab-loadtest",
    version,
    about = "Load tester for Confab (chat, voice and video)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    #[command(flatten)]
    common: Common,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq)]
enum Cmd {
    /// Gateway clients receiving messages posted over REST.
    Chat,
    /// WebRTC peers in voice channels.
    Voice,
    /// Chat and voice at once.
    Mixed,
    /// Simulcast video publishers and viewers with mixed tile sizes.
    Video,
}

/// Every flag; `None` = not given (the scenario file or the default applies).
#[derive(Args, Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Common {
    /// Server base URL.
    #[arg(long, global = true)]
    url: Option<String>,
    /// Other nodes of a Confab cluster (comma-separated base URLs): chat clients connect and
    /// messages are posted round-robin over `--url` and these, and voice peers signal through
    /// them round-robin (their media goes to whichever media node the answer names); setup and
    /// `/metrics` use `--url`.
    #[arg(long, global = true, value_delimiter = ',')]
    nodes: Option<Vec<String>>,
    /// The media nodes of a Confab cluster (comma-separated base URLs of their HTTP port): the
    /// server side of the measurements (CPU, forwarded packets, memory) is summed over their
    /// /metrics instead of read from `--url`, an api node without an SFU.
    #[arg(long, global = true, value_delimiter = ',')]
    media_metrics: Option<Vec<String>>,
    /// Measured steady state after the last join, in seconds [default: 30].
    #[arg(long, global = true)]
    duration: Option<f64>,
    /// Write the results as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// TOML scenario with the same keys as these flags.
    #[arg(long, global = true)]
    #[serde(skip)]
    scenario: Option<PathBuf>,
    /// Server pid for CPU/RSS from /proc (found by the listening port when local).
    #[arg(long, global = true)]
    sfu_pid: Option<u32>,
    /// Tokio worker threads [default: 2].
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Concurrent registrations (argon2id on the server) [default: 8].
    #[arg(long, global = true)]
    register_concurrency: Option<usize>,

    // chat
    /// Gateway clients [default: 100].
    #[arg(long, global = true)]
    clients: Option<usize>,
    /// Text channels [default: 1].
    #[arg(long, global = true)]
    channels: Option<usize>,
    /// Messages per second in total; 0 = idle connections [default: 10].
    #[arg(long, global = true)]
    rate: Option<f64>,
    /// Users behind the clients (shared round-robin) [default: min(clients, 1000)].
    #[arg(long, global = true)]
    users: Option<usize>,
    /// Typing notifications per second in total [default: 0].
    #[arg(long, global = true)]
    typing: Option<f64>,
    /// Presence changes (op 3) per second in total [default: 0].
    #[arg(long, global = true)]
    presence: Option<f64>,
    /// Chat: extra members flooding messages, typing, reactions and gateway frames during
    /// the measured window; compare `deliver_ms` with a run without [default: 0].
    #[arg(long, global = true)]
    flooders: Option<usize>,
    /// Concurrent gateway handshakes while connecting [default: 64].
    #[arg(long, global = true)]
    connect_concurrency: Option<usize>,
    /// Chat: members of the server in all, of whom only `--users` connect (the others are
    /// registered and join, then stay offline) [default: the users].
    #[arg(long, global = true)]
    members: Option<usize>,
    /// Chat: seconds between the last client connecting and the idle RSS sample; past the
    /// heartbeat interval every client has sent a heartbeat [default: 2, or 5 with --rate 0].
    #[arg(long, global = true)]
    settle: Option<f64>,

    // voice
    /// SFU to drive: confab, or a Janus VideoRoom (`--url http://HOST:8088/janus`) [default: confab].
    #[arg(long, global = true, value_enum)]
    target: Option<voice::Target>,
    /// Voice channels [default: 1].
    #[arg(long, global = true)]
    rooms: Option<usize>,
    /// Speakers per room [default: 3].
    #[arg(long, global = true)]
    speakers: Option<usize>,
    /// Listeners per room [default: 10].
    #[arg(long, global = true)]
    listeners: Option<usize>,
    /// Voice joins per second [default: 50].
    #[arg(long, global = true)]
    join_rate: Option<f64>,
    /// Large-channel mode: the speakers talk in turn, each for this many ms, silent (DTX)
    /// otherwise; reports slot switch latency; 0 = everyone talks all the time [default: 0].
    #[arg(long, global = true)]
    talk_turn_ms: Option<u64>,
    /// Seconds a peer may take to connect before it counts as failed [default: 20].
    #[arg(long, global = true)]
    join_timeout: Option<f64>,
    /// Audio integrity: decode every Nth received packet per peer; 0 = off [default: 500].
    /// A check is three libopus decodes: at every 50th packet they cost ~2 µs per received
    /// packet, more than the rest of the receive path.
    #[arg(long, global = true)]
    integrity_every: Option<u64>,
    /// Voice: negotiate RTX for Opus (RFC 4588), so the peers NACK lost audio and the SFU
    /// resends it (the server needs `--sfu-audio-rtx true`); reports the loss before and
    /// after recovery [default: false].
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    audio_rtx: Option<bool>,
    /// Voice: the channels are end-to-end encrypted and the peers encrypt and decrypt every
    /// audio frame and exchange keys as the web client does (docs/e2ee.md); reports keys
    /// exchanged, frames decrypted and join → first decrypted audio [default: false].
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    e2ee: Option<bool>,
    /// Concurrent message POSTs in flight [default: 512].
    #[arg(long, global = true)]
    post_concurrency: Option<usize>,

    // video
    /// Video publishers (3-layer simulcast VP8 camera) [default: 1].
    #[arg(long, global = true)]
    publishers: Option<usize>,
    /// Video viewers, each showing every publisher (up to 9) [default: 10].
    #[arg(long, global = true)]
    viewers: Option<usize>,
    /// Viewers' tile sizes, assigned round-robin: WxH[,WxH...]
    /// [default: 320x180,640x360,1280x720].
    #[arg(long, global = true)]
    tile_mix: Option<String>,
    /// Video frames per second per layer [default: 30; with --screen, the preset's].
    #[arg(long, global = true)]
    fps: Option<u32>,
    /// Go Live instead of cameras: publishers share a screen at this preset of the web client
    /// (720p30, 1080p30, 1080p60: three simulcast layers of its sizes and bitrates) and viewers
    /// watch it (op 15 track "screen").
    #[arg(long, global = true)]
    screen: Option<String>,
    /// Seconds between a publisher's periodic keyframes (besides those the SFU asks for)
    /// [default: 5].
    #[arg(long, global = true)]
    keyframe_interval: Option<f64>,

    // output
    /// Write a self-contained HTML report (inline SVG plots) to this file.
    #[arg(long, global = true)]
    report: Option<PathBuf>,

    // pass/fail thresholds (any of them also requires chat lost = duplicated = 0)
    /// Fail when voice loss exceeds this percentage.
    #[arg(long, global = true)]
    max_loss: Option<f64>,
    /// Fail when the voice p99 latency exceeds this many ms.
    #[arg(long, global = true)]
    max_p99_latency: Option<f64>,
    /// Fail when fewer than this percentage of voice peers (and chat clients) joined.
    #[arg(long, global = true)]
    min_join_success: Option<f64>,
    /// Fail when the chat p99 send→deliver latency exceeds this many ms.
    #[arg(long, global = true)]
    max_p99_deliver: Option<f64>,
}

impl Common {
    /// `self` (command line) over `file` (scenario).
    fn merged(self, file: Common) -> Common {
        macro_rules! pick {
            ($($f:ident),*) => { Common { $($f: self.$f.or(file.$f),)* } };
        }
        pick!(
            url,
            nodes,
            media_metrics,
            duration,
            json,
            scenario,
            sfu_pid,
            threads,
            register_concurrency,
            clients,
            channels,
            rate,
            users,
            typing,
            presence,
            flooders,
            connect_concurrency,
            members,
            settle,
            target,
            rooms,
            speakers,
            listeners,
            join_rate,
            talk_turn_ms,
            join_timeout,
            integrity_every,
            audio_rtx,
            e2ee,
            post_concurrency,
            publishers,
            viewers,
            tile_mix,
            fps,
            screen,
            keyframe_interval,
            report,
            max_loss,
            max_p99_latency,
            min_join_success,
            max_p99_deliver
        )
    }
}

fn main() -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,confab_loadtest=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let file = match &cli.common.scenario {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str::<Common>(&text).with_context(|| format!("parsing {}", p.display()))?
        }
        None => Common::default(),
    };
    let c = cli.common.clone().merged(file);
    let nofile = stats::raise_nofile_limit();
    let threads = c.threads.unwrap_or(2).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    eprintln!("confab-loadtest: RLIMIT_NOFILE {nofile}, {threads} worker thread(s)");
    rt.block_on(run(cli.cmd, c))
}

async fn run(cmd: Cmd, c: Common) -> Result<ExitCode> {
    let url = c
        .url
        .clone()
        .unwrap_or_else(|| "http://127.0.0.1:3000".into());
    let duration = Duration::from_secs_f64(c.duration.unwrap_or(30.0).max(0.1));
    let target = c.target.unwrap_or(voice::Target::Confab);
    let mut api = api::Api::new(&url)?.with_nodes(c.nodes.as_deref().unwrap_or_default());
    api.metrics_from = c
        .media_metrics
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|u| u.trim_end_matches('/').to_string())
        .collect();
    let local = is_local(&url);
    if target == voice::Target::Janus {
        anyhow::ensure!(
            cmd == Cmd::Voice,
            "--target janus supports only the voice scenario"
        );
        api.has_metrics = false;
        eprintln!("confab-loadtest: target Janus VideoRoom at {url}");
    } else {
        eprintln!(
            "confab-loadtest: target {url}. THE TESTER EXPECTS A SERVER STARTED WITH \
             `--rate-limit-scale 1000` (or CONFAB_RATE_LIMIT_SCALE=1000): with the default \
             limits registrations, IDENTIFYs and messages get 429s."
        );
    }
    let bind_ip = local_ip_towards(&url)?;
    let sfu_pid = c.sfu_pid.or_else(|| {
        // The SFU is elsewhere (media nodes): CPU from their /metrics.
        if !local || !ctx_metrics_local(&api) {
            return None;
        }
        let port = port_of(&url)?;
        let pid = server::find_pid_by_port(port);
        match pid {
            Some(p) => eprintln!("confab-loadtest: server pid {p} (listening on port {port})"),
            None => eprintln!(
                "confab-loadtest: no local pid found for port {port}; server CPU from /metrics only"
            ),
        }
        pid
    });
    let ctx = Ctx {
        api,
        clock: stats::Clock::new(),
        sfu_pid,
        register_concurrency: c.register_concurrency.unwrap_or(8),
        bind_ip,
    };
    let chat_opts = chat::ChatOpts {
        clients: c.clients.unwrap_or(100),
        channels: c.channels.unwrap_or(1).max(1),
        rate: c.rate.unwrap_or(10.0).max(0.0),
        users: c.users,
        typing: c.typing.unwrap_or(0.0),
        presence: c.presence.unwrap_or(0.0),
        connect_concurrency: c.connect_concurrency.unwrap_or(64),
        post_concurrency: c.post_concurrency.unwrap_or(512).max(1),
        flooders: c.flooders.unwrap_or(0),
        members: c.members,
        settle: c.settle.map(|s| Duration::from_secs_f64(s.max(0.0))),
    };
    let voice_opts = voice::VoiceOpts {
        rooms: c.rooms.unwrap_or(1),
        speakers: c.speakers.unwrap_or(3),
        listeners: c.listeners.unwrap_or(10),
        join_rate: c.join_rate.unwrap_or(50.0).max(0.1),
        join_timeout: Duration::from_secs_f64(c.join_timeout.unwrap_or(20.0)),
        integrity_every: c.integrity_every.unwrap_or(500),
        talk_turn_ms: c.talk_turn_ms.unwrap_or(0),
        audio_rtx: c.audio_rtx.unwrap_or(false),
        e2ee: c.e2ee.unwrap_or(false),
        target,
    };
    let screen = c
        .screen
        .as_deref()
        .map(video::parse_screen_preset)
        .transpose()?;
    let video_opts = video::VideoOpts {
        publishers: c.publishers.unwrap_or(1),
        viewers: c.viewers.unwrap_or(10),
        tile_mix: video::parse_tile_mix(
            c.tile_mix.as_deref().unwrap_or("320x180,640x360,1280x720"),
        )?,
        fps: c.fps.or(screen.map(|p| p.fps)).unwrap_or(30).clamp(1, 120),
        screen,
        keyframe_interval: Duration::from_secs_f64(c.keyframe_interval.unwrap_or(5.0).max(0.1)),
        join_rate: c.join_rate.unwrap_or(50.0).max(0.1),
        join_timeout: Duration::from_secs_f64(c.join_timeout.unwrap_or(20.0)),
    };
    let started = chrono_like_now();
    let result = match cmd {
        Cmd::Chat => chat::run(&ctx, &chat_opts, duration, None).await?,
        Cmd::Voice => voice::run(&ctx, &voice_opts, duration, None).await?,
        Cmd::Video => video::run(&ctx, &video_opts, duration).await?,
        Cmd::Mixed => {
            let barrier = Arc::new(tokio::sync::Barrier::new(2));
            let (v, ch) = tokio::join!(
                voice::run(&ctx, &voice_opts, duration, Some(barrier.clone())),
                // Both set up and join on their own, then meet at the barrier.
                chat::run(&ctx, &chat_opts, duration, Some(barrier.clone()))
            );
            let mut v = v?;
            let ch = ch?;
            merge(&mut v, ch);
            v
        }
    };
    let mut out = json!({
        "mode": format!("{cmd:?}").to_lowercase(),
        "url": url,
        "started_unix": started,
    });
    merge(&mut out, result);
    let thresholds = limits::Thresholds {
        max_loss: c.max_loss,
        max_p99_latency: c.max_p99_latency,
        min_join_success: c.min_join_success,
        max_p99_deliver: c.max_p99_deliver,
    };
    let verdict = thresholds.check(&out);
    if thresholds.any() {
        out["thresholds"] = verdict.to_json(&thresholds);
    }
    print_summary(&out);
    if let Some(path) = &c.json {
        std::fs::write(path, serde_json::to_string_pretty(&out)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("results written to {}", path.display());
    }
    if let Some(path) = &c.report {
        std::fs::write(path, report::html(&out))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    if thresholds.any() {
        if verdict.failed.is_empty() {
            println!("thresholds: PASS");
        } else {
            for f in &verdict.failed {
                println!("THRESHOLD FAILED: {f}");
            }
            return Ok(ExitCode::from(2));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn chrono_like_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Deep-merges `b` into `a` (objects merge; other values replace).
fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (a, b) => *a = b,
    }
}

fn port_of(url: &str) -> Option<u16> {
    let rest = url.split("://").nth(1)?;
    let host_port = rest.split('/').next()?;
    match host_port.rsplit_once(':') {
        Some((_, p)) if !p.ends_with(']') => p.parse().ok(),
        _ => Some(if url.starts_with("https") { 443 } else { 80 }),
    }
}

/// The local address the kernel would use to reach the URL's host: the
/// peers bind there, so their host candidate is reachable by the server
/// (127.0.0.1 for a local server, our veth address for one in a network
/// namespace). No packet is sent.
fn local_ip_towards(url: &str) -> Result<std::net::IpAddr> {
    use std::net::ToSocketAddrs;
    let rest = url.split("://").nth(1).unwrap_or(url);
    let host_port = rest.split('/').next().unwrap_or(rest);
    let port = port_of(url).unwrap_or(80);
    let host = match host_port.rsplit_once(':') {
        Some((h, _)) if !host_port.ends_with(']') => h,
        _ => host_port,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addr = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .find(|a| a.is_ipv4())
        .with_context(|| format!("{host} has no IPv4 address (the peers use IPv4)"))?;
    let probe = std::net::UdpSocket::bind("0.0.0.0:0")?;
    probe
        .connect(addr)
        .with_context(|| format!("no route to {addr}"))?;
    Ok(probe.local_addr()?.ip())
}

/// Whether the server measurements come from `--url` itself (not `--media-metrics`).
fn ctx_metrics_local(api: &api::Api) -> bool {
    api.metrics_from.is_empty()
}

fn is_local(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or(url);
    rest.starts_with("127.") || rest.starts_with("localhost") || rest.starts_with("[::1]")
}

fn print_summary(v: &Value) {
    let f = |x: &Value| match x.as_f64() {
        Some(n) => format!("{n:.2}"),
        None => "n/a".into(),
    };
    let h = |x: &Value| {
        format!(
            "p50 {} / p95 {} / p99 {} / max {} ms",
            f(&x["p50"]),
            f(&x["p95"]),
            f(&x["p99"]),
            f(&x["max"])
        )
    };
    println!(
        "==== confab-loadtest {} ====",
        v["mode"].as_str().unwrap_or("")
    );
    if let Some(c) = v.get("chat") {
        println!(
            "chat: {} clients connected ({} failed, {} disconnected)",
            c["connected"], c["connect_failed"], c["disconnects"]
        );
        println!(
            "  messages: {} persisted of {} ({} msg/s); POST {}",
            c["messages_persisted"],
            c["messages_attempted"],
            f(&c["messages_per_second"]),
            h(&c["post_ms"])
        );
        println!(
            "  deliveries: {} of {} expected ({} /s), lost {}, duplicated {}",
            c["deliveries"],
            c["expected_deliveries"],
            f(&c["deliveries_per_second"]),
            c["lost"],
            c["duplicated"]
        );
        println!("  deliver latency: {}", h(&c["deliver_ms"]));
        if !c["server_rss_bytes_per_connection"].is_null() {
            println!(
                "  server RSS per connection: {} bytes",
                f(&c["server_rss_bytes_per_connection"])
            );
        }
    }
    if let Some(vo) = v.get("voice") {
        println!(
            "voice: {} joined, {} failed; packets {} received of {} expected; loss {}% (worst listener {}%)",
            vo["joined"],
            vo["failed"],
            vo["packets_received"],
            vo["packets_expected"],
            f(&vo["loss_percent"]),
            f(&vo["worst_listener_loss_percent"])
        );
        println!("  latency: {}", h(&vo["latency_ms"]));
        println!(
            "  latency incl. tester queueing: {}",
            h(&vo["latency_app_ms"])
        );
        println!("  jitter:  {}", h(&vo["jitter_ms"]));
        println!("  join:    {}", h(&vo["join_ms"]));
        println!("  first audio: {}", h(&vo["first_audio_ms"]));
        if vo["reconnects"].as_u64().unwrap_or(0) > 0 {
            println!(
                "  reconnects (media node gone): {} peers, {} with at most 5 s of silence; silence: {}; told → heard again: {}",
                vo["reconnected_peers"],
                vo["reconnected_within_5s"],
                h(&vo["reconnect_gap_ms"]),
                h(&vo["reconnect_ms"])
            );
        }
        println!(
            "  network loss {}%; NACKs sent {}; sequence gaps {}, filled later {}; integrity: {} frames decoded, {} failed (min correlation {})",
            f(&vo["network_loss_percent"]),
            vo["nacks_sent"],
            vo["seq_gaps"],
            vo["packets_recovered"],
            vo["integrity_checked"],
            vo["integrity_failed"],
            f(&vo["integrity_min_correlation"])
        );
        if let Some(e) = vo["errors"].as_object() {
            for (k, n) in e {
                println!("  error ×{n}: {k}");
            }
        }
    }
    if let Some(vi) = v.get("video") {
        print_video_summary(vi, &f);
    }
    if let Some(s) = v.get("server") {
        println!(
            "server: cpu {} s ({}); forwarded {} pkt/s; {} µs CPU per forwarded packet; {} µs per chat delivery",
            f(&s["cpu_seconds"]),
            s["cpu_source"].as_str().unwrap_or("n/a"),
            f(&s["forwarded_packets_per_second"]),
            f(&s["sfu_cpu_us_per_forwarded_packet"]),
            f(&s["cpu_us_per_delivery"])
        );
        if v.get("video").is_some() {
            println!(
                "  video: forwarded {} kbit/s; keyframe requests sent to publishers {}/s",
                f(&(s["video_forwarded_bitrate_bps"]
                    .as_f64()
                    .map(|b| b / 1000.0))
                .into()),
                f(&s["keyframe_requests_per_second"])
            );
        }
    }
    if let Some(l) = v.get("loadtest") {
        println!(
            "loadtest: cpu {} s; {} µs per received packet; RSS {} bytes",
            f(&l["cpu_seconds"]),
            f(&l["cpu_us_per_received_packet"]),
            l["rss_bytes"]
        );
        if l.get("fast_path_packets").is_some() {
            println!(
                "  receive path: {} of {} audio packets decrypted by the fast path, {} identified by payload hash, {} not authentic",
                l["fast_path_packets"], l["audio_packets_received"], l["payload_hash_lookups"], l["srtp_auth_failures"]
            );
        }
    }
}

fn print_video_summary(vi: &Value, f: &dyn Fn(&Value) -> String) {
    let layers = |x: &Value| format!("low {} / mid {} / high {}", x["low"], x["mid"], x["high"]);
    println!(
        "video: {} joined, {} failed; {} publisher(s) sent {} frames ({} keyframes, {} kbit/s)",
        vi["joined"],
        vi["failed"],
        vi["publishers"],
        vi["frames_sent"],
        vi["keyframes_sent"],
        f(&(vi["sent_bitrate_bps"].as_f64().unwrap_or(0.0) / 1000.0).into())
    );
    println!(
        "  viewers: {} frames received, fps per stream p50 {} (min {}); keyframes {}; layer switches {}; loss {}%",
        vi["frames_received"],
        f(&vi["frames_per_second"]["p50"]),
        f(&vi["frames_per_second"]["min"]),
        vi["keyframes"],
        vi["layer_switches"],
        f(&vi["loss_percent"])
    );
    println!(
        "  layers: ended on {}; expected {}; wrong layer {}; missing streams {}",
        layers(&vi["layers_received"]),
        layers(&vi["layers_expected"]),
        vi["wrong_layer"],
        vi["streams_missing"]
    );
    println!(
        "  freeze per viewer: p50 {} ms, max {} ms; forwarded {} kbit/s (as received); keyframe requests at publishers {}/s",
        f(&vi["freeze_ms"]["p50"]),
        f(&vi["freeze_ms"]["max"]),
        f(&(vi["forwarded_bitrate_bps"].as_f64().unwrap_or(0.0) / 1000.0).into()),
        f(&vi["keyframe_requests_per_second"])
    );
    if let Some(e) = vi["errors"].as_object() {
        for (k, n) in e {
            println!("  error ×{n}: {k}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_merges_under_flags() {
        let file: Common = toml::from_str(
            "rooms = 2\nlisteners = 400\njoin-rate = 25.0\nduration = 60\nurl = \"http://127.0.0.1:9\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from(["confab-loadtest", "voice", "--listeners", "10"]);
        let c = cli.common.merged(file);
        assert_eq!(c.rooms, Some(2));
        assert_eq!(c.listeners, Some(10));
        assert_eq!(c.join_rate, Some(25.0));
        assert_eq!(c.duration, Some(60.0));
        assert!(toml::from_str::<Common>("bogus = 1").is_err());
    }

    #[test]
    fn url_helpers() {
        assert_eq!(port_of("http://127.0.0.1:3000"), Some(3000));
        assert_eq!(port_of("http://localhost/"), Some(80));
        assert!(is_local("http://127.0.0.1:3000"));
        assert!(!is_local("https://example.com"));
    }

    #[test]
    fn peers_bind_where_the_route_to_the_server_starts() {
        let ip = local_ip_towards("http://127.0.0.1:3000").unwrap();
        assert_eq!(ip, std::net::IpAddr::from([127, 0, 0, 1]));
        let ip = local_ip_towards("http://127.0.0.1:8088/janus").unwrap();
        assert!(ip.is_loopback());
        // A host that does not resolve is an error, not a panic.
        assert!(local_ip_towards("http://no-such-host.invalid:3000").is_err());
    }

    #[test]
    fn target_flag_parses() {
        let cli = Cli::try_parse_from(["confab-loadtest", "voice", "--target", "janus"]).unwrap();
        assert_eq!(cli.common.target, Some(voice::Target::Janus));
        assert!(Cli::try_parse_from(["confab-loadtest", "voice", "--target", "jitsi"]).is_err());
        let file: Common = toml::from_str("target = \"janus\"").unwrap();
        assert_eq!(file.target, Some(voice::Target::Janus));
    }
}
