//! Measurement primitives: latency histograms, RFC 3550 interarrival jitter,
//! a duplicate-aware sequence set for loss counting, payload hashing, and the
//! process's own CPU time and memory.
//!
//! Everything on the packet path here is allocation-free once warmed up.

use std::time::Instant;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Microseconds since a fixed process-wide epoch. Senders and receivers in
/// the same process stamp with this, so send→receive differences need no
/// clock sync.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            epoch: Instant::now(),
        }
    }

    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    pub fn us_of(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_micros() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// A latency histogram in microseconds (1 µs .. 10 min, 2 significant
/// digits: ~1% value error, a few KiB each so every client can own one).
#[derive(Clone)]
pub struct Hist {
    h: Histogram<u32>,
}

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    pub fn new() -> Self {
        Hist {
            h: Histogram::new_with_bounds(1, 600_000_000, 2).expect("valid histogram bounds"),
        }
    }

    /// Records one value in microseconds (clamped to the histogram's range).
    #[inline]
    pub fn record_us(&mut self, us: u64) {
        let v = us.clamp(1, 600_000_000);
        // saturating: a u32 count overflowing is not a realistic concern here,
        // and `saturating_record` never fails.
        self.h.saturating_record(v);
    }

    pub fn add(&mut self, other: &Hist) {
        // Same bounds on both sides: cannot fail.
        let _ = self.h.add(&other.h);
    }

    pub fn count(&self) -> u64 {
        self.h.len()
    }

    /// The value at percentile `p` (0..=100) in microseconds; 0 when empty.
    pub fn percentile_us(&self, p: f64) -> u64 {
        if self.h.is_empty() {
            return 0;
        }
        self.h.value_at_quantile(p / 100.0)
    }

    pub fn max_us(&self) -> u64 {
        if self.h.is_empty() {
            0
        } else {
            self.h.max()
        }
    }

    /// `{"p50","p95","p99","max","count"}` in milliseconds.
    pub fn summary_ms(&self) -> Value {
        let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
        json!({
            "p50": ms(self.percentile_us(50.0)),
            "p95": ms(self.percentile_us(95.0)),
            "p99": ms(self.percentile_us(99.0)),
            "max": ms(self.max_us()),
            "count": self.count(),
        })
    }
}

/// RFC 3550 §6.4.1 / A.8 interarrival jitter for one RTP stream, in RTP
/// timestamp units: `D = (Rj - Ri) - (Sj - Si)`, `J += (|D| - J) / 16`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Jitter {
    last_transit: Option<i64>,
    jitter: f64,
}

impl Jitter {
    /// `arrival` in the same clock rate as `rtp_ts` (e.g. 48 kHz units).
    #[inline]
    pub fn update(&mut self, arrival: u64, rtp_ts: u32) {
        // The transit time is only compared with itself, so the arbitrary
        // offset between the clocks cancels; wrap the RTP timestamp into the
        // arrival clock's width with a 32-bit difference.
        let transit = (arrival as u32).wrapping_sub(rtp_ts) as i32 as i64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    /// Current jitter estimate in timestamp units.
    pub fn value(&self) -> f64 {
        self.jitter
    }

    pub fn has_samples(&self) -> bool {
        self.last_transit.is_some()
    }
}

/// A growable bitset of packet indices seen: tells duplicates apart from
/// first arrivals, and counts unique arrivals (for loss).
#[derive(Clone, Debug, Default)]
pub struct SeenSet {
    words: Vec<u64>,
    unique: u64,
    duplicates: u64,
}

impl SeenSet {
    /// Marks `idx` seen; returns false when it was already seen (a duplicate).
    #[inline]
    pub fn insert(&mut self, idx: u64) -> bool {
        let w = (idx / 64) as usize;
        if w >= self.words.len() {
            // Amortised growth: at most O(log n) allocations per stream.
            let new_len = (w + 1).max(self.words.len() * 2).max(16);
            self.words.resize(new_len, 0);
        }
        let bit = 1u64 << (idx % 64);
        if self.words[w] & bit != 0 {
            self.duplicates += 1;
            false
        } else {
            self.words[w] |= bit;
            self.unique += 1;
            true
        }
    }

    #[cfg(test)]
    pub fn contains(&self, idx: u64) -> bool {
        let w = (idx / 64) as usize;
        w < self.words.len() && self.words[w] & (1u64 << (idx % 64)) != 0
    }

    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// How many indices are in both sets.
    pub fn count_common(&self, other: &SeenSet) -> u64 {
        self.words
            .iter()
            .zip(other.words.iter())
            .map(|(a, b)| (a & b).count_ones() as u64)
            .sum()
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

/// Loss in percent from expected and (unique) received counts. Never
/// negative: arrivals beyond what was expected count as no loss.
/// Loss before recovery, from RTP sequence tracking: `gaps` packets skipped
/// when the sequence number jumped ahead, `recovered` of them arrived later,
/// `received` RTP packets arrived in all (the recovered ones included).
pub fn network_loss_percent(received: u64, gaps: u64, recovered: u64) -> f64 {
    let originals = received.saturating_sub(recovered);
    loss_percent(originals + gaps, originals)
}

pub fn loss_percent(expected: u64, received_unique: u64) -> f64 {
    if expected == 0 {
        return 0.0;
    }
    let lost = expected.saturating_sub(received_unique);
    lost as f64 * 100.0 / expected as f64
}

/// 64-bit FNV-1a of a payload, finished with a murmur3-style mix so the
/// result can key an identity-hashed map. The SFU rewrites SSRC, sequence
/// number and timestamp but never payload bytes, so this identifies a packet.
#[inline]
pub fn payload_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// A `Hasher` for keys that already are good hashes.
#[derive(Default, Clone, Copy)]
pub struct IdentityHasher(u64);

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

pub type IdentityBuild = std::hash::BuildHasherDefault<IdentityHasher>;

/// This process's CPU time (user + system) in microseconds, from getrusage.
pub fn self_cpu_us() -> u64 {
    // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_SELF is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return 0;
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Resident set size of a process (`self` or a pid) in bytes, from /proc.
pub fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let s = std::fs::read_to_string(path).ok()?;
    parse_vmrss(&s)
}

fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU seconds (user + system) of a process from /proc/PID/stat.
pub fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu_ticks(&s).map(|ticks| ticks as f64 / clock_ticks_per_second())
}

fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and parentheses: split
    // after its last ')'. utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut it = rest.split_whitespace().skip(11);
    let utime: u64 = it.next()?.parse().ok()?;
    let stime: u64 = it.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid resource and a struct we own.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 0;
        }
        if rl.rlim_cur < rl.rlim_max {
            let mut want = rl;
            want.rlim_cur = rl.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur as u64;
            }
        }
        rl.rlim_cur as u64
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn network_loss_counts_gaps_whether_recovered_or_not() {
        use super::network_loss_percent;
        use crate::peer::SeqTrack;
        // 100 packets sent, 5 dropped by the network, 4 of them resent later.
        let mut t = SeqTrack::default();
        let dropped = [10u64, 11, 40, 70, 99];
        let mut received = 0;
        for seq in 0..100 {
            if !dropped.contains(&seq) {
                t.update(seq);
                received += 1;
            }
            if seq == 80 {
                for &d in &dropped[..4] {
                    t.update(d);
                    received += 1;
                }
            }
        }
        // 99 is the last packet: its gap never opens (nothing after it), so
        // the network's 5 drops show as 4 gaps.
        assert_eq!((t.gaps, t.recovered), (4, 4));
        let l = network_loss_percent(received, t.gaps, t.recovered);
        assert!((l - 4.0 * 100.0 / 99.0).abs() < 1e-9, "{l}");
        assert_eq!(network_loss_percent(50, 0, 0), 0.0);
    }

    use super::*;

    #[test]
    fn histogram_percentiles() {
        let mut h = Hist::new();
        for v in 1..=1000u64 {
            h.record_us(v * 1000); // 1 ms .. 1000 ms
        }
        assert_eq!(h.count(), 1000);
        let p50 = h.percentile_us(50.0) as f64;
        let p99 = h.percentile_us(99.0) as f64;
        // 2 significant digits: within 1% of the exact order statistic.
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.01, "p50 {p50}");
        assert!((p99 - 990_000.0).abs() / 990_000.0 < 0.01, "p99 {p99}");
        assert!((h.max_us() as f64 - 1_000_000.0).abs() / 1_000_000.0 < 0.01);
        let s = h.summary_ms();
        assert!((s["p50"].as_f64().unwrap() - 500.0).abs() < 5.0);
        assert_eq!(s["count"], 1000);
    }

    #[test]
    fn histogram_merge_and_empty() {
        let empty = Hist::new();
        assert_eq!(empty.percentile_us(99.0), 0);
        assert_eq!(empty.max_us(), 0);
        let mut a = Hist::new();
        let mut b = Hist::new();
        for _ in 0..90 {
            a.record_us(1_000);
        }
        for _ in 0..10 {
            b.record_us(50_000);
        }
        a.add(&b);
        assert_eq!(a.count(), 100);
        let p50 = a.percentile_us(50.0);
        assert!((990..=1010).contains(&p50), "p50 {p50}");
        let p95 = a.percentile_us(95.0);
        assert!((49_500..=50_500).contains(&p95), "p95 {p95}");
        // Zero is clamped to the 1 µs floor, not lost.
        a.record_us(0);
        assert_eq!(a.count(), 101);
    }

    #[test]
    fn jitter_constant_delay_is_zero() {
        let mut j = Jitter::default();
        for i in 0..100u64 {
            // 20 ms packets, 48 kHz, constant 5 ms transit.
            j.update(i * 960 + 240 + 1_000_000, (i * 960) as u32);
        }
        assert!(j.value().abs() < 1e-9);
    }

    #[test]
    fn jitter_follows_rfc3550_recurrence() {
        // Alternating transit of 0 and 480 units (10 ms): |D| = 480 each step.
        let mut j = Jitter::default();
        let mut expect = 0.0f64;
        for i in 0..200u64 {
            let extra = if i % 2 == 0 { 0 } else { 480 };
            j.update(i * 960 + extra, (i * 960) as u32);
            if i > 0 {
                expect += (480.0 - expect) / 16.0;
            }
        }
        assert!((j.value() - expect).abs() < 1e-6);
        // Converges to |D| = 480.
        assert!((j.value() - 480.0).abs() < 1.0, "{}", j.value());
    }

    #[test]
    fn jitter_survives_rtp_timestamp_wrap() {
        let mut j = Jitter::default();
        let start = u32::MAX - 960 * 5;
        for i in 0..20u64 {
            j.update(10_000 + i * 960, start.wrapping_add((i * 960) as u32));
        }
        assert!(j.value().abs() < 1e-9, "{}", j.value());
    }

    #[test]
    fn seen_set_counts_unique_and_duplicates() {
        let mut s = SeenSet::default();
        assert!(s.insert(0));
        assert!(s.insert(5));
        assert!(!s.insert(5));
        assert!(s.insert(10_000)); // growth
        assert!(!s.insert(10_000));
        assert!(s.contains(10_000));
        assert!(!s.contains(9_999));
        assert_eq!(s.unique(), 3);
        assert_eq!(s.duplicates(), 2);
        let mut t = SeenSet::default();
        t.insert(5);
        t.insert(6);
        assert_eq!(s.count_common(&t), 1);
        assert_eq!(t.count_common(&s), 1);
    }

    #[test]
    fn loss_counting() {
        // 1000 packets expected, every 10th missing, a few duplicates.
        let mut s = SeenSet::default();
        for i in 0..1000u64 {
            if i % 10 != 0 {
                s.insert(i);
            }
        }
        for i in 1..5u64 {
            s.insert(i);
        }
        assert_eq!(s.unique(), 900);
        assert_eq!(s.duplicates(), 4);
        assert!((loss_percent(1000, s.unique()) - 10.0).abs() < 1e-9);
        assert_eq!(loss_percent(0, 0), 0.0);
        assert_eq!(loss_percent(10, 12), 0.0);
    }

    #[test]
    fn payload_hash_distinguishes_and_matches() {
        let a = [1u8, 2, 3, 4];
        let b = [1u8, 2, 3, 5];
        assert_eq!(payload_hash(&a), payload_hash(a.as_ref()));
        assert_ne!(payload_hash(&a), payload_hash(&b));
        assert_ne!(payload_hash(&[]), payload_hash(&[0]));
    }

    #[test]
    fn proc_parsing() {
        let stat = "1234 (my (weird) prog) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(300));
        let status = "Name:\tx\nVmRSS:\t   2048 kB\nThreads: 1\n";
        assert_eq!(parse_vmrss(status), Some(2048 * 1024));
        assert!(self_cpu_us() < u64::MAX);
        assert!(rss_bytes(None).unwrap() > 0);
    }
}
