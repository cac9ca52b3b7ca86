//! Per-second time series, recorded lock-free from the packet path.
//!
//! A [`Series`] is a fixed table, allocated before the run: for each second
//! of the measured window a few counters and a coarse latency histogram
//! (quarter-octave buckets: ±9% resolution, plenty for a plot). Recording is
//! one relaxed atomic add; nothing allocates, nothing locks. The exact
//! figures (percentiles over the whole window, loss) still come from the
//! per-peer HDR histograms and bitsets; the series is only for plots and the
//! live progress line.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde_json::{json, Value};

/// Quarter-octave buckets from 1 µs to 2^28 µs (~4.5 min).
pub const LAT_BUCKETS: usize = 4 * 28;

/// The bucket of a latency in µs.
#[inline]
pub fn bucket_of(us: u64) -> usize {
    let us = us.max(1);
    let e = 63 - us.leading_zeros() as usize; // floor(log2)
    let q = if e >= 2 {
        ((us >> (e - 2)) & 3) as usize
    } else {
        // 1..3 µs: spread over the quarter steps by hand.
        (((us << 2) >> e) & 3) as usize
    };
    (4 * e + q).min(LAT_BUCKETS - 1)
}

/// The midpoint (µs) of a bucket's range.
pub fn bucket_mid_us(b: usize) -> f64 {
    let e = (b / 4) as i32;
    let q = (b % 4) as f64;
    2f64.powi(e) * (1.0 + (q + 0.5) / 4.0)
}

pub struct Series {
    /// Window start (µs on the run's clock); `u64::MAX` until set.
    start_us: AtomicU64,
    secs: usize,
    cols: Vec<&'static str>,
    counts: Vec<AtomicU64>,
    lat: Vec<AtomicU32>,
}

impl Series {
    /// `secs` seconds (recordings past the end are dropped), one counter per
    /// name in `cols`.
    pub fn new(secs: usize, cols: &[&'static str]) -> Self {
        let secs = secs.max(1);
        Series {
            start_us: AtomicU64::new(u64::MAX),
            secs,
            cols: cols.to_vec(),
            counts: (0..secs * cols.len()).map(|_| AtomicU64::new(0)).collect(),
            lat: (0..secs * LAT_BUCKETS).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    pub fn set_start(&self, us: u64) {
        self.start_us.store(us, Ordering::Relaxed);
    }

    #[inline]
    pub fn sec_of(&self, at_us: u64) -> Option<usize> {
        let start = self.start_us.load(Ordering::Relaxed);
        if at_us < start {
            return None;
        }
        let s = ((at_us - start) / 1_000_000) as usize;
        (s < self.secs).then_some(s)
    }

    fn col(&self, name: &str) -> usize {
        self.cols
            .iter()
            .position(|c| *c == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    }

    /// Adds `n` to counter `col` (an index into the names given to `new`)
    /// in the second that contains `at_us`.
    #[inline]
    pub fn add(&self, at_us: u64, col: usize, n: u64) {
        if let Some(s) = self.sec_of(at_us) {
            self.counts[s * self.cols.len() + col].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Records a latency in the second that contains `at_us`.
    #[inline]
    pub fn latency(&self, at_us: u64, latency_us: u64) {
        if let Some(s) = self.sec_of(at_us) {
            self.lat[s * LAT_BUCKETS + bucket_of(latency_us)].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn count(&self, sec: usize, name: &str) -> u64 {
        if sec >= self.secs {
            return 0;
        }
        self.counts[sec * self.cols.len() + self.col(name)].load(Ordering::Relaxed)
    }

    /// Latency percentile `p` (0..=100) of one second, in ms; None if empty.
    pub fn percentile_ms(&self, sec: usize, p: f64) -> Option<f64> {
        if sec >= self.secs {
            return None;
        }
        let row = &self.lat[sec * LAT_BUCKETS..(sec + 1) * LAT_BUCKETS];
        let total: u64 = row.iter().map(|c| c.load(Ordering::Relaxed) as u64).sum();
        if total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut acc = 0u64;
        for (b, c) in row.iter().enumerate() {
            acc += c.load(Ordering::Relaxed) as u64;
            if acc >= rank {
                return Some(bucket_mid_us(b) / 1000.0);
            }
        }
        None
    }

    /// `{"t": [0..n], "<col>": [...], "p50"/"p95"/"p99": [ms or null]}` for
    /// the first `n` seconds.
    pub fn to_json(&self, n: usize) -> Value {
        let n = n.min(self.secs);
        let mut o = serde_json::Map::new();
        o.insert("t".into(), json!((0..n).collect::<Vec<_>>()));
        for c in &self.cols {
            o.insert(
                (*c).to_string(),
                json!((0..n).map(|s| self.count(s, c)).collect::<Vec<_>>()),
            );
        }
        for (k, p) in [("p50", 50.0), ("p95", 95.0), ("p99", 99.0)] {
            o.insert(
                k.into(),
                json!((0..n).map(|s| self.percentile_ms(s, p)).collect::<Vec<_>>()),
            );
        }
        Value::Object(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_close() {
        let mut last = 0;
        for us in 1..100_000u64 {
            let b = bucket_of(us);
            assert!(b >= last, "{us}");
            last = b;
            let mid = bucket_mid_us(b);
            assert!((mid - us as f64).abs() / us as f64 <= 0.35, "{us} → {mid}");
        }
        assert_eq!(bucket_of(u64::MAX), LAT_BUCKETS - 1);
    }

    #[test]
    fn per_second_counts_and_percentiles() {
        let s = Series::new(3, &["a", "b"]);
        s.add(5, 0, 1); // before start: dropped
        s.set_start(1_000_000);
        s.add(1_000_000, 0, 2);
        s.add(2_500_000, 1, 7);
        s.add(9_000_000, 1, 7); // past the end: dropped
        for i in 1..=100u64 {
            s.latency(1_200_000, i * 1000);
        }
        assert_eq!(s.count(0, "a"), 2);
        assert_eq!(s.count(1, "b"), 7);
        assert_eq!(s.count(2, "b"), 0);
        let p50 = s.percentile_ms(0, 50.0).unwrap();
        assert!((40.0..60.0).contains(&p50), "{p50}");
        let p99 = s.percentile_ms(0, 99.0).unwrap();
        assert!((85.0..115.0).contains(&p99), "{p99}");
        assert_eq!(s.percentile_ms(1, 50.0), None);
        let j = s.to_json(3);
        assert_eq!(j["a"][0], 2);
        assert_eq!(j["t"].as_array().unwrap().len(), 3);
        assert!(j["p99"][1].is_null());
    }
}
