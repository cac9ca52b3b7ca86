//! Smoke test: a real Confab (the workspace's debug `confab` binary, with
//! its private PostgreSQL) and each load-test scenario run briefly against
//! it through the `confab-loadtest` binary, checking the JSON it writes.
//!
//! One server for all three scenarios (start-up provisions a PostgreSQL
//! cluster: the expensive part), scenarios one after another on the
//! machine's two cores. Figures are asserted loosely (loss < 1%, not 0):
//! other test suites may share the machine.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The server process and its data directory; killed and removed on drop,
/// also when an assertion panics.
struct Server {
    child: Child,
    url: String,
    data_dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn loadtest_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_confab-loadtest"))
}

/// `$CONFAB_SMOKE_BIN` if set, else `<target>/<profile>/confab` next to our
/// own binary, built with cargo when it is not there yet (it is another
/// package's binary, so `CARGO_BIN_EXE_confab` does not exist here).
fn confab_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CONFAB_SMOKE_BIN") {
        return PathBuf::from(p);
    }
    let lt = loadtest_bin();
    let dir = lt.parent().expect("binary has a directory").to_path_buf();
    let bin = dir.join("confab");
    if !bin.exists() {
        let target = dir.parent().expect("profile dir has a parent");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "confab-signaling", "--bin", "confab"])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if dir.file_name().and_then(|n| n.to_str()) == Some("release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("running cargo build");
        assert!(st.success(), "cargo build -p confab-signaling failed");
    }
    assert!(bin.exists(), "no confab binary at {}", bin.display());
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Status code of `GET path`, or None if the server is not answering yet.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 32];
    let n = s.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn start_server() -> Server {
    let bin = confab_bin();
    let port = free_port();
    // PostgreSQL runs as an unprivileged user who must be able to reach
    // the data directory: mode 0755, not mktemp's 0700.
    let data_dir =
        std::env::temp_dir().join(format!("confab-lt-smoke-{}-{}", std::process::id(), port));
    std::fs::create_dir_all(&data_dir).expect("creating the data dir");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod 755 data dir");
    }
    let log = std::fs::File::create(data_dir.join("confab.log")).expect("log file");
    let child = Command::new(&bin)
        .args([
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--udp-port",
            "0",
            "--data-dir",
            data_dir.to_str().expect("utf-8 temp path"),
            "--rate-limit-scale",
            "1000",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting confab");
    let mut srv = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
        data_dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if http_status(port, "/readyz") == Some(200) {
            return srv;
        }
        if let Ok(Some(st)) = srv.child.try_wait() {
            let log = std::fs::read_to_string(srv.data_dir.join("confab.log")).unwrap_or_default();
            panic!("confab exited ({st}) before ready:\n{log}");
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(srv.data_dir.join("confab.log")).unwrap_or_default();
            panic!("confab not ready after 60 s:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `confab-loadtest <args> --json FILE`; returns (exit code, JSON).
fn loadtest(srv: &Server, name: &str, args: &[&str]) -> (i32, Value) {
    let json = srv.data_dir.join(format!("{name}.json"));
    let out = Command::new(loadtest_bin())
        .args(args)
        .args(["--url", &srv.url, "--json"])
        .arg(&json)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running confab-loadtest");
    let code = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!("{name}: no JSON ({e}); exit {code}\nstdout:\n{stdout}\nstderr:\n{stderr}")
    });
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    eprintln!("---- {name} (exit {code}) ----\n{stdout}");
    (code, v)
}

fn f(v: &Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("expected a number, got {v}"))
}

fn assert_latency(h: &Value, what: &str) {
    for k in ["p50", "p99", "max"] {
        let x = f(&h[k]);
        assert!(x.is_finite() && x > 0.0, "{what} {k} = {x}");
    }
    assert!(h["count"].as_u64().unwrap_or(0) > 0, "{what}: no samples");
}

fn check_voice(v: &Value, peers: u64) {
    let vo = &v["voice"];
    assert_eq!(vo["joined"].as_u64(), Some(peers), "voice joined: {vo}");
    assert_eq!(vo["failed"].as_u64(), Some(0), "voice failed: {vo}");
    assert!(vo["packets_expected"].as_u64().unwrap_or(0) > 0, "{vo}");
    assert!(f(&vo["loss_percent"]) < 1.0, "voice loss: {vo}");
    assert_latency(&vo["latency_ms"], "voice latency");
    assert_latency(&vo["join_ms"], "voice join");
    assert!(
        vo["integrity_checked"].as_u64().unwrap_or(0) > 0,
        "no frame decoded: {vo}"
    );
    assert_eq!(vo["integrity_failed"].as_u64(), Some(0), "{vo}");
    let fwd = f(&v["server"]["sfu_cpu_us_per_forwarded_packet"]);
    assert!(fwd.is_finite() && fwd > 0.0, "server CPU per packet {fwd}");
    assert!(
        v["timeseries"]["voice"]["p50"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "no per-second series"
    );
}

fn check_chat(v: &Value, clients: u64) {
    let c = &v["chat"];
    assert_eq!(c["connected"].as_u64(), Some(clients), "chat: {c}");
    assert!(c["messages_persisted"].as_u64().unwrap_or(0) > 0, "{c}");
    assert_eq!(c["lost"].as_u64(), Some(0), "chat lost: {c}");
    assert_eq!(c["duplicated"].as_u64(), Some(0), "chat duplicated: {c}");
    assert_eq!(c["deliveries"], c["expected_deliveries"], "{c}");
    assert_latency(&c["deliver_ms"], "chat deliver");
}

#[test]
fn scenarios_against_a_real_server() {
    let t0 = Instant::now();
    let srv = start_server();
    eprintln!("confab ready at {} after {:?}", srv.url, t0.elapsed());
    let report = srv.data_dir.join("voice.html");

    // Voice: 1 room, 2 speakers, 3 listeners; thresholds that must pass.
    let (code, v) = loadtest(
        &srv,
        "voice",
        &[
            "voice",
            "--rooms",
            "1",
            "--speakers",
            "2",
            "--listeners",
            "3",
            "--duration",
            "3",
            "--integrity-every",
            "10",
            "--max-loss",
            "1",
            "--min-join-success",
            "100",
            "--report",
            report.to_str().expect("utf-8 path"),
        ],
    );
    check_voice(&v, 5);
    assert_eq!(code, 0, "thresholds should pass: {}", v["thresholds"]);
    assert_eq!(v["thresholds"]["passed"], true);
    let html = std::fs::read_to_string(&report).expect("the HTML report");
    assert!(html.contains("<svg") && !html.contains("<script"));

    // End-to-end encrypted: the peers exchange keys through the server and every frame they
    // hear was decrypted (integrity decodes the plaintext, so a wrong key would fail it).
    let (code, v) = loadtest(
        &srv,
        "voice-e2ee",
        &[
            "voice",
            "--e2ee",
            "--rooms",
            "1",
            "--speakers",
            "2",
            "--listeners",
            "3",
            "--duration",
            "3",
            "--integrity-every",
            "10",
        ],
    );
    assert_eq!(code, 0, "{}", v["thresholds"]);
    check_voice(&v, 5);
    let e = &v["voice"]["e2ee"];
    // Everyone's first rotation is at its own join: at least one per peer.
    assert!(e["rotations"].as_u64().unwrap_or(0) >= 5, "{e}");
    assert!(
        e["keys_received"].as_u64().unwrap_or(0) >= 4,
        "relayed keys: {e}"
    );
    assert_eq!(e["keys_that_did_not_open"].as_u64(), Some(0), "{e}");
    assert_eq!(e["frames_not_authentic"].as_u64(), Some(0), "{e}");
    let decrypted = e["frames_decrypted"].as_u64().unwrap_or(0);
    let received = v["voice"]["packets_received"].as_u64().unwrap_or(0);
    assert!(
        decrypted >= received && received > 0,
        "{decrypted} decrypted of {received}: {e}"
    );
    assert_latency(&v["voice"]["first_audio_ms"], "e2ee first audio");

    // Large-channel mode: 5 speakers talk in turn (0.6 s each) to 3 listeners through
    // the default 3 loudest-speaker slots; each turn's speaker must reach everyone.
    let (code, v) = loadtest(
        &srv,
        "voice-turns",
        &[
            "voice",
            "--speakers",
            "5",
            "--listeners",
            "3",
            "--talk-turn-ms",
            "600",
            "--duration",
            "4",
        ],
    );
    let vo = &v["voice"];
    assert_eq!(code, 0, "{}", v["thresholds"]);
    assert_eq!(vo["joined"].as_u64(), Some(8), "{vo}");
    assert!(vo["packets_expected"].as_u64().unwrap_or(0) > 0, "{vo}");
    assert!(f(&vo["loss_percent"]) < 2.0, "talk-in-turn loss: {vo}");
    let turns = &vo["talk_in_turn"];
    assert!(
        turns["switches_measured"].as_u64().unwrap_or(0) >= 8,
        "{turns}"
    );
    assert_latency(&turns["switch_ms"], "slot switch");
    assert!(f(&turns["switch_ms"]["p50"]) < 1000.0, "{turns}");
    let streams = turns["max_streams_per_peer"].as_u64().unwrap_or(99);
    assert!(
        (1..=3).contains(&streams),
        "at most 3 slots carry audio: {turns}"
    );

    // Chat: 10 clients, 20 msg/s.
    let (code, v) = loadtest(
        &srv,
        "chat",
        &[
            "chat",
            "--clients",
            "10",
            "--rate",
            "20",
            "--duration",
            "3",
            "--max-p99-deliver",
            "5000",
        ],
    );
    check_chat(&v, 10);
    assert_eq!(code, 0, "thresholds should pass: {}", v["thresholds"]);

    // Mixed, small; an impossible latency bound must fail the run (exit 2)
    // while everything else is fine.
    let (code, v) = loadtest(
        &srv,
        "mixed",
        &[
            "mixed",
            // A few hundred packets per peer: sample densely enough to decode some.
            "--integrity-every",
            "20",
            "--clients",
            "5",
            "--rate",
            "10",
            "--rooms",
            "1",
            "--speakers",
            "2",
            "--listeners",
            "2",
            "--duration",
            "2",
            "--max-p99-latency",
            "0.000001",
        ],
    );
    check_voice(&v, 4);
    check_chat(&v, 5);
    assert_eq!(code, 2, "an impossible threshold must fail the run");
    let failed = v["thresholds"]["failed"].as_array().expect("failed list");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].as_str().unwrap_or("").contains("p99 latency"));

    eprintln!("smoke test done in {:?}", t0.elapsed());
    assert!(
        Path::new(&srv.data_dir).exists(),
        "data dir still there until drop"
    );
}

/// Video: 1 publisher (3-layer simulcast) and 3 viewers, one per tile size;
/// frames arrive and each viewer ends on the layer its tile asks for.
#[test]
fn video_scenario_against_a_real_server() {
    let srv = start_server();
    let (code, v) = loadtest(
        &srv,
        "video",
        &[
            "video",
            "--publishers",
            "1",
            "--viewers",
            "3",
            "--tile-mix",
            "320x180,640x360,1280x720",
            "--keyframe-interval",
            "1",
            "--duration",
            "3",
        ],
    );
    assert_eq!(code, 0);
    let vi = &v["video"];
    assert_eq!(vi["joined"].as_u64(), Some(4), "video joined: {vi}");
    assert_eq!(vi["failed"].as_u64(), Some(0), "{vi}");
    assert_eq!(vi["voice_errors"].as_u64(), Some(0), "{vi}");
    assert!(vi["frames_sent"].as_u64().unwrap_or(0) > 0, "{vi}");
    // 30 fps per stream: allow for a busy machine, but frames must flow.
    assert!(f(&vi["frames_per_second"]["min"]) > 10.0, "{vi}");
    // A keyframe per second on every layer: each viewer sees some of its own.
    assert!(vi["keyframes"].as_u64().unwrap_or(0) >= 3, "{vi}");
    assert_eq!(vi["streams_missing"].as_u64(), Some(0), "{vi}");
    // Every viewer was told (VOICE_VIDEO_SLOTS) which slot shows the publisher.
    assert_eq!(vi["viewers_missing_slots"].as_u64(), Some(0), "{vi}");
    assert_eq!(vi["wrong_layer"].as_u64(), Some(0), "{vi}");
    let one_each = serde_json::json!({"low": 1, "mid": 1, "high": 1});
    assert_eq!(vi["layers_received"], one_each, "{vi}");
    assert_eq!(vi["layers_expected"], one_each, "{vi}");
    assert!(f(&vi["loss_percent"]) < 1.0, "{vi}");
    // The SFU's own counters: forwarded video bytes and CPU per packet.
    let s = &v["server"];
    assert!(f(&s["video_forwarded_bitrate_bps"]) > 100_000.0, "{s}");
    let fwd = f(&s["sfu_cpu_us_per_forwarded_packet"]);
    assert!(fwd.is_finite() && fwd > 0.0, "{s}");
}
