//! Metrics: a Prometheus recorder for the `metrics` facade (installed once per process) and the
//! standard `process_*` metrics read from /proc. `process_cpu_seconds_total` is a float at the
//! kernel's tick resolution: whole seconds are too coarse for CPU-per-packet figures.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder on first call; later calls return the same handle.
pub fn install() -> PrometheusHandle {
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
                .expect("valid buckets");
            match builder.install_recorder() {
                Ok(h) => h,
                // Another recorder is installed (embedding); render ours anyway.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// `process_*` metrics in Prometheus text format.
pub fn process_metrics() -> String {
    let mut out = String::new();
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

/// Makes large allocations (argon2's 19 MiB per password hash) go straight to mmap and back to
/// the kernel when freed. glibc otherwise raises its mmap threshold after the first such free
/// and keeps later ones in per-thread arenas: a burst of logins left ~850 MB resident.
pub fn return_large_allocations() {
    // SAFETY: mallopt only tunes the allocator; called before other threads allocate much.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

/// Raises the soft open-files limit to the hard limit: thousands of sockets are normal here.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn process_metrics_are_parseable() {
        let text = super::process_metrics();
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
