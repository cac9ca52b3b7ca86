//! Metrics: a Prometheus recorder for the `metrics` facade (installed once per process) and the
//! standard `process_*` metrics read from /proc. `process_cpu_seconds_total` is a float at the
//! kernel's tick resolution: whole seconds are too coarse for CPU-per-packet figures.
//!
//! Every series carries `node="<node name>"` (`--node-name`), the recorder's as a global label and
//! the text rendered here (process and SFU loop metrics) through [`with_node_label`], so that a
//! cluster's dashboards and alerts can tell nodes apart by name.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// The `node` label value of this process's series (the first `install` call's node name).
static NODE: OnceLock<String> = OnceLock::new();

/// Installs the recorder on first call, with `node="<node>"` on every series, and sets
/// `confab_build_info`; later calls return the same handle. The recorder is per process, so
/// several nodes started in one process (tests) share it and the first node's name.
pub fn install(node: &str) -> PrometheusHandle {
    let node = NODE.get_or_init(|| node.to_string()).clone();
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
                0.01, 0.025, 0.05, 0.1,
            ];
            let http = [
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            let builder = PrometheusBuilder::new()
                .add_global_label("node", node.clone())
                .set_buckets_for_metric(
                    Matcher::Full("confab_sfu_forward_latency_seconds".into()),
                    &latency,
                )
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &http))
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Suffix("_ratio".into()),
                        &[0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("confab_db_query_duration_seconds".into()),
                        &[
                            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                            0.25, 1.0,
                        ],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("confab_bus_delivery_seconds".into()),
                        &[
                            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                            0.25, 1.0,
                        ],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("confab_message_write_batch_size".into()),
                        &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 256.0],
                    )
                })
                .expect("valid buckets");
            match builder.install_recorder() {
                Ok(h) => {
                    describe_and_zero();
                    build_info();
                    h
                }
                // Another recorder is installed (embedding); render ours anyway.
                Err(_) => PrometheusBuilder::new()
                    .add_global_label("node", node)
                    .build_recorder()
                    .handle(),
            }
        })
        .clone()
}

/// Rate-limit buckets (the `bucket` label of `confab_http_rate_limited_total`).
/// The gateway's IDENTIFY bucket closes the connection instead of answering 429 and is not
/// counted here.
pub const RATE_LIMIT_BUCKETS: [&str; 4] = ["auth", "messages", "typing", "api"];
/// Why a voice session ended (the `reason` label of `confab_voice_leaves_total`).
pub const VOICE_LEAVE_REASONS: [&str; 5] = [
    "left",
    "gateway_closed",
    "timeout",
    "left_server",
    "channel_deleted",
];

/// `# HELP` text for every metric the signalling and chat crates record, and every counter and
/// gauge with its bounded label values registered at zero, so that dashboards and alerts see
/// the series before the first event (a `rate()` over an absent series is "no data", not 0).
/// Histograms with labels (`confab_http_request_duration_seconds`) appear with their first
/// observation; label-free ones are registered (empty buckets). The SFU crate describes and
/// registers its own metrics when it starts.
pub fn describe_and_zero() {
    use metrics::{
        counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
    };
    describe_gauge!(
        "confab_build_info",
        "Always 1; the version label is the running Confab version, node the node's name."
    );

    describe_counter!(
        "confab_http_requests_total",
        "HTTP requests answered, by method, route template and status."
    );
    describe_histogram!(
        "confab_http_request_duration_seconds",
        "Time to answer an HTTP request, by method and route template."
    );
    describe_counter!(
        "confab_http_rate_limited_total",
        "Requests refused with 429, by rate-limit bucket."
    );
    for bucket in RATE_LIMIT_BUCKETS {
        counter!("confab_http_rate_limited_total", "bucket" => bucket).absolute(0);
    }
    describe_counter!(
        "confab_messages_created_total",
        "Messages stored (a repeated nonce is not counted)."
    );
    counter!("confab_messages_created_total").absolute(0);
    describe_counter!(
        "confab_automod_triggers_total",
        "AutoMod rules a message (sent or edited) triggered, exempt authors not counted."
    );
    counter!("confab_automod_triggers_total").absolute(0);
    describe_counter!(
        "confab_link_preview_fetches_total",
        "Link preview fetches by result: ok, empty (nothing to show), failed, refused (SSRF rules)."
    );
    for result in crate::link_previews::FETCH_RESULTS {
        counter!("confab_link_preview_fetches_total", "result" => *result).absolute(0);
    }
    describe_counter!(
        "confab_push_sent_total",
        "Web Push notifications by result: sent (accepted by the push service), gone (404/410: subscription removed), failed, dropped (queue full)."
    );
    for result in crate::push::RESULTS {
        counter!("confab_push_sent_total", "result" => *result).absolute(0);
    }
    describe_counter!(
        "confab_link_preview_cache_hits_total",
        "Link previews answered from the cache without fetching."
    );
    counter!("confab_link_preview_cache_hits_total").absolute(0);
    describe_counter!(
        "confab_link_preview_jobs_dropped_total",
        "Messages left without previews because the preview queue was full."
    );
    counter!("confab_link_preview_jobs_dropped_total").absolute(0);
    describe_counter!(
        "confab_attachment_uploads_total",
        "Files stored with messages."
    );
    counter!("confab_attachment_uploads_total").absolute(0);
    describe_counter!(
        "confab_attachment_bytes_total",
        "Bytes of files stored with messages (after metadata scrubbing)."
    );
    counter!("confab_attachment_bytes_total").absolute(0);
    describe_counter!(
        "confab_thumbnails_total",
        "Image thumbnails made or given up on, by result."
    );
    for result in ["made", "failed"] {
        counter!("confab_thumbnails_total", "result" => result).absolute(0);
    }
    describe_counter!(
        "confab_files_deleted_total",
        "Stored objects deleted by the sweeper."
    );
    counter!("confab_files_deleted_total").absolute(0);
    describe_histogram!(
        "confab_message_write_batch_size",
        "Messages written per database batch."
    );
    let _ = histogram!("confab_message_write_batch_size");
    describe_histogram!(
        "confab_db_query_duration_seconds",
        "Duration of the hot database queries (message batch insert, access checks, history)."
    );
    for q in confab_chat::TIMED_QUERIES {
        let _ = histogram!("confab_db_query_duration_seconds", "query" => *q);
    }

    let counters = [
        (
            "confab_gateway_connections_total",
            "Gateway WebSockets accepted.",
        ),
        (
            "confab_gateway_identifies_total",
            "Successful gateway IDENTIFYs.",
        ),
        (
            "confab_gateway_resumes_total",
            "Successful gateway RESUMEs.",
        ),
        (
            "confab_gateway_invalid_sessions_total",
            "RESUMEs refused with INVALID_SESSION.",
        ),
        (
            "confab_gateway_dispatches_total",
            "Dispatches delivered to gateway sessions.",
        ),
        (
            "confab_gateway_refused_frames_total",
            "Client frames that closed the gateway connection.",
        ),
        (
            "confab_gateway_refused_connections_total",
            "Gateway upgrades refused: too many unidentified connections from one address.",
        ),
        (
            "confab_message_write_batch_retries_total",
            "Message batches refused as a whole and retried one message at a time.",
        ),
        (
            "confab_db_circuit_trips_total",
            "Times the database circuit opened.",
        ),
        (
            "confab_http_rate_limit_tarpitted_total",
            "429s held back (up to 1 s) because the client kept sending while refused.",
        ),
        (
            "confab_http_request_timeouts_total",
            "REST requests answered 503 after 10 s without a response.",
        ),
        (
            "confab_db_circuit_refused_total",
            "REST requests answered 503 because the database circuit was open.",
        ),
        (
            "confab_gateway_slow_disconnects_total",
            "Gateway connections closed with 4008 because their send queue was full.",
        ),
        ("confab_voice_joins_total", "New voice sessions."),
        (
            "confab_voice_rejoins_total",
            "Voice sessions taken back after a network blip.",
        ),
        (
            "confab_voice_e2ee_key_frames_total",
            "VOICE_E2EE_KEYS frames (wrapped media keys) relayed in e2ee channels.",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(name, help);
        counter!(name).absolute(0);
    }
    describe_counter!(
        "confab_voice_leaves_total",
        "Voice sessions ended, by reason."
    );
    for reason in VOICE_LEAVE_REASONS {
        counter!("confab_voice_leaves_total", "reason" => reason).absolute(0);
    }
    describe_histogram!(
        "confab_voice_offer_seconds",
        "Voice offer received to SFU answer ready."
    );
    let _ = histogram!("confab_voice_offer_seconds");

    describe_gauge!("confab_gateway_connections", "Open gateway WebSockets.");
    gauge!("confab_gateway_connections").increment(0.0);
    describe_gauge!(
        "confab_gateway_sessions",
        "Gateway sessions, connected or waiting to be resumed."
    );
    gauge!("confab_gateway_sessions").increment(0.0);
    describe_gauge!(
        "confab_voice_participants",
        "Users in voice channels on this node (signalling view)."
    );
    gauge!("confab_voice_participants").increment(0.0);
    describe_gauge!(
        "confab_db_pool_connections",
        "Database pool connections, by state (idle, in_use)."
    );
    for state in ["idle", "in_use"] {
        gauge!("confab_db_pool_connections", "state" => state).increment(0.0);
    }
    describe_gauge!(
        "confab_db_pool_max_connections",
        "Configured database pool size."
    );
    gauge!("confab_db_pool_max_connections").increment(0.0);
    describe_gauge!(
        "confab_db_circuit_open",
        "1 while the database is unreachable and REST answers 503 at once."
    );
    gauge!("confab_db_circuit_open").increment(0.0);
    bus_metrics();
}

/// `confab_build_info`: the version; its `node` label is the global one.
fn build_info() {
    metrics::gauge!("confab_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// The bus between nodes (`crate::bus::nats`); zero on a single node.
fn bus_metrics() {
    use metrics::{counter, describe_counter, describe_gauge, gauge};
    let counters = [
        (
            "confab_bus_published_total",
            "Messages this node published to NATS.",
        ),
        (
            "confab_bus_received_total",
            "Messages this node received from NATS (other nodes' events).",
        ),
        (
            "confab_bus_publish_errors_total",
            "Messages the NATS client refused to publish.",
        ),
        (
            "confab_bus_dropped_total",
            "Events not published because the outbox was full (NATS away too long).",
        ),
        (
            "confab_bus_undecodable_total",
            "Messages received from NATS that were not Confab events.",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(name, help);
        counter!(name).absolute(0);
    }
    describe_gauge!(
        "confab_bus_connected",
        "1 while this node is connected to its bus (always 1 in one process), 0 while NATS is unreachable."
    );
    metrics::describe_histogram!(
        "confab_bus_delivery_seconds",
        "Publish on another node to receipt here, per bus message (includes the nodes' clock difference)."
    );
    let _ = metrics::histogram!("confab_bus_delivery_seconds");
    describe_gauge!(
        "confab_bus_subscriptions",
        "NATS subscriptions this node holds for servers and users with sessions here."
    );
    gauge!("confab_bus_subscriptions").increment(0.0);
}

/// The standard `process_*` metrics, plus the SFU media-loop counters (floats, so rendered here
/// rather than through the `metrics` facade), in Prometheus text format, each series with the
/// `node` label of [`install`] (none before it is called).
pub fn process_metrics() -> String {
    let text = process_metrics_text();
    match NODE.get() {
        Some(node) => with_node_label(&text, node),
        None => text,
    }
}

/// `text` (Prometheus text format) with `node="<node>"` as the first label of every sample line,
/// as the recorder's global label renders it.
pub fn with_node_label(text: &str, node: &str) -> String {
    let value = node
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            out.push_str(line);
        } else {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let (name, rest) = line.split_at(end);
            out.push_str(name);
            out.push_str("{node=\"");
            out.push_str(&value);
            out.push('"');
            match rest.strip_prefix('{') {
                Some(labels) if labels.starts_with('}') => out.push_str(labels),
                Some(labels) => {
                    out.push(',');
                    out.push_str(labels);
                }
                None => {
                    out.push('}');
                    out.push_str(rest);
                }
            }
        }
        out.push('\n');
    }
    out
}

fn process_metrics_text() -> String {
    let mut out = confab_sfu::Sfu::loop_metrics_text();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as f64;
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may contain spaces) start at ") ".
        if let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            // utime = field 14, stime = 15, starttime = 22 (1-based) → indexes 11, 12, 19 here.
            let cpu = (num(11) + num(12)) / ticks;
            out.push_str("# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\n");
            out.push_str(&format!("process_cpu_seconds_total {cpu}\n"));
            let boot = std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("btime "))
                        .and_then(|l| l[6..].trim().parse::<f64>().ok())
                })
                .unwrap_or(0.0);
            out.push_str("# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n# TYPE process_start_time_seconds gauge\n");
            out.push_str(&format!(
                "process_start_time_seconds {}\n",
                boot + num(19) / ticks
            ));
            out.push_str("# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n# TYPE process_virtual_memory_bytes gauge\n");
            out.push_str(&format!("process_virtual_memory_bytes {}\n", num(20)));
            out.push_str("# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\n");
            out.push_str(&format!(
                "process_resident_memory_bytes {}\n",
                num(21) * page
            ));
            out.push_str(
                "# HELP process_threads Number of OS threads.\n# TYPE process_threads gauge\n",
            );
            out.push_str(&format!("process_threads {}\n", num(17)));
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        out.push_str("# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\n");
        out.push_str(&format!("process_open_fds {}\n", dir.count()));
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        out.push_str("# HELP process_max_fds Maximum number of open file descriptors.\n# TYPE process_max_fds gauge\n");
        out.push_str(&format!("process_max_fds {}\n", lim.rlim_cur));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn node_label_goes_first_on_every_sample() {
        let text =
            "# HELP a_total A.\n# TYPE a_total counter\na_total 1.5\nb{kind=\"x\"} 2\nc{} 3\n";
        assert_eq!(
            super::with_node_label(text, "api-\"1\""),
            "# HELP a_total A.\n# TYPE a_total counter\na_total{node=\"api-\\\"1\\\"\"} 1.5\n\
             b{node=\"api-\\\"1\\\"\",kind=\"x\"} 2\nc{node=\"api-\\\"1\\\"\"} 3\n"
        );
    }

    #[test]
    fn every_series_carries_the_node_label() {
        let handle = super::install("unit-test-node");
        let node = super::NODE.get().expect("node name set by install");
        let text = handle.render() + &super::process_metrics();
        let samples: Vec<&str> = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert!(samples.len() > 50, "{text}");
        for must in [
            "confab_build_info{",
            "confab_sfu_loop_busy_seconds_total{",
            "process_cpu_seconds_total{",
        ] {
            assert!(samples.iter().any(|l| l.starts_with(must)), "no {must}");
        }
        let label = format!("{{node=\"{node}\"");
        for l in samples {
            let name_end = l.find(['{', ' ']).unwrap_or(l.len());
            assert!(l[name_end..].starts_with(&label), "no {label} first: {l}");
        }
    }

    #[test]
    fn process_metrics_are_parseable() {
        let text = super::process_metrics_text();
        let cpu: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_cpu_seconds_total "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(cpu >= 0.0);
        let rss: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(rss > 1_000_000.0, "rss {rss}");
    }
}
