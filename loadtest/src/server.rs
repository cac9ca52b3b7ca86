//! The server side of the measurements: Prometheus counters from /metrics,
//! and the server process's CPU and memory from /proc when it is local.

use std::collections::HashSet;

use crate::api::Api;
use crate::stats;

/// One reading of the server's counters.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// `process_cpu_seconds_total` from /metrics.
    pub metrics_cpu: Option<f64>,
    /// utime + stime from /proc/PID/stat.
    pub proc_cpu: Option<f64>,
    /// Sum of `confab_sfu_packets_forwarded_total` over its labels.
    pub forwarded: Option<f64>,
    pub rss: Option<u64>,
    /// Video payload bytes forwarded and keyframe requests sent to
    /// publishers (sums over their labels; servers without them: None).
    pub video_forwarded_bytes: Option<f64>,
    pub keyframe_requests: Option<f64>,
}

/// Sums every sample of `name` (any labels) in Prometheus text.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = false;
    let mut sum = 0.0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // The name must end here: followed by labels or a space.
        let value = if let Some(r) = rest.strip_prefix('{') {
            match r.rfind('}') {
                Some(i) => &r[i + 1..],
                None => continue,
            }
        } else if rest.starts_with(' ') {
            rest
        } else {
            continue;
        };
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            sum += v;
            found = true;
        }
    }
    found.then_some(sum)
}

pub async fn snapshot(api: &Api, pid: Option<u32>) -> Snapshot {
    let mut s = Snapshot::default();
    if let Some(p) = pid {
        s.proc_cpu = stats::proc_cpu_seconds(p);
        s.rss = stats::rss_bytes(Some(p));
    }
    if !api.has_metrics {
        return s;
    }
    if !api.metrics_from.is_empty() {
        // A cluster's media nodes: each counter summed over them (None if any is missing,
        // so a rate never mixes a node's absence into a delta).
        let mut sum = Snapshot {
            metrics_cpu: Some(0.0),
            forwarded: Some(0.0),
            rss: Some(0),
            video_forwarded_bytes: Some(0.0),
            keyframe_requests: Some(0.0),
            ..s
        };
        for base in &api.metrics_from {
            let text = match api.metrics_of(base).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!("cannot read {base}/metrics: {e:#}");
                    String::new()
                }
            };
            let add = |acc: Option<f64>, name: &str| Some(acc? + metric_sum(&text, name)?);
            sum.metrics_cpu = add(sum.metrics_cpu, "process_cpu_seconds_total");
            sum.forwarded = add(sum.forwarded, "confab_sfu_packets_forwarded_total");
            sum.video_forwarded_bytes = add(
                sum.video_forwarded_bytes,
                "confab_sfu_video_forwarded_bytes_total",
            );
            sum.keyframe_requests =
                add(sum.keyframe_requests, "confab_sfu_keyframe_requests_total");
            sum.rss = match (sum.rss, metric_sum(&text, "process_resident_memory_bytes")) {
                (Some(a), Some(b)) => Some(a + b as u64),
                _ => None,
            };
        }
        return sum;
    }
    match api.metrics().await {
        Ok(text) => {
            s.metrics_cpu = metric_sum(&text, "process_cpu_seconds_total");
            s.forwarded = metric_sum(&text, "confab_sfu_packets_forwarded_total");
            s.video_forwarded_bytes = metric_sum(&text, "confab_sfu_video_forwarded_bytes_total");
            s.keyframe_requests = metric_sum(&text, "confab_sfu_keyframe_requests_total");
            if s.rss.is_none() {
                s.rss = metric_sum(&text, "process_resident_memory_bytes").map(|v| v as u64);
            }
        }
        Err(e) => tracing::warn!("cannot read server metrics: {e:#}"),
    }
    s
}

/// Server counters sampled about once a second during the steady state,
/// as per-second rates (for the report's plots and the progress line).
#[derive(Default)]
pub struct Sampler {
    prev: Option<(f64, Snapshot)>,
    pub t: Vec<f64>,
    pub forwarded_per_s: Vec<Option<f64>>,
    pub cpu_percent: Vec<Option<f64>>,
    pub rss_mb: Vec<Option<f64>>,
}

impl Sampler {
    /// Takes a snapshot at `t_s` (seconds into the window) and records the
    /// rates since the previous one.
    pub async fn sample(&mut self, api: &Api, pid: Option<u32>, t_s: f64) {
        let s = snapshot(api, pid).await;
        if let Some((t0, p)) = &self.prev {
            let dt = t_s - t0;
            if dt > 0.05 {
                self.t.push(t_s);
                self.forwarded_per_s.push(match (p.forwarded, s.forwarded) {
                    (Some(a), Some(b)) => Some((b - a) / dt),
                    _ => None,
                });
                self.cpu_percent
                    .push(cpu_delta(p, &s).map(|(c, _)| c * 100.0 / dt));
                self.rss_mb.push(s.rss.map(|r| r as f64 / 1e6));
            }
        }
        self.prev = Some((t_s, s));
    }

    pub fn last_cpu_percent(&self) -> Option<f64> {
        self.cpu_percent.last().copied().flatten()
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "t": self.t,
            "forwarded_per_s": self.forwarded_per_s,
            "cpu_percent": self.cpu_percent,
            "rss_mb": self.rss_mb,
        })
    }
}

/// CPU seconds the server used between two snapshots: /proc when both have
/// it (tick resolution, independent of the exporter), else /metrics.
pub fn cpu_delta(a: &Snapshot, b: &Snapshot) -> Option<(f64, &'static str)> {
    if let (Some(x), Some(y)) = (a.proc_cpu, b.proc_cpu) {
        return Some((y - x, "proc"));
    }
    if let (Some(x), Some(y)) = (a.metrics_cpu, b.metrics_cpu) {
        return Some((y - x, "metrics"));
    }
    None
}

/// Finds the pid of a local process listening on TCP `port` (IPv4 or IPv6),
/// via /proc/net/tcp{,6} → socket inode → /proc/*/fd. Needs permission to
/// read other processes' fds (same user or root).
pub fn find_pid_by_port(port: u16) -> Option<u32> {
    let mut inodes = HashSet::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue; // not LISTEN
            }
            let Some(p) = f[1].rsplit(':').next() else {
                continue;
            };
            if u16::from_str_radix(p, 16).ok() == Some(port) {
                inodes.insert(f[9].to_string());
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let t = target.to_string_lossy();
                if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    if inodes.contains(inode) {
                        return Some(pid);
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_labelled_counters() {
        let text = "# HELP confab_sfu_packets_forwarded_total x\n\
                    # TYPE confab_sfu_packets_forwarded_total counter\n\
                    confab_sfu_packets_forwarded_total{kind=\"audio\"} 1200\n\
                    confab_sfu_packets_forwarded_total{kind=\"video\"} 34.5\n\
                    confab_sfu_packets_forwarded_totalx 99\n\
                    process_cpu_seconds_total 12.34\n";
        assert_eq!(
            metric_sum(text, "confab_sfu_packets_forwarded_total"),
            Some(1234.5)
        );
        assert_eq!(metric_sum(text, "process_cpu_seconds_total"), Some(12.34));
        assert_eq!(metric_sum(text, "missing_total"), None);
    }
}
