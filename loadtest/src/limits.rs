//! Pass/fail thresholds over the results JSON (`--max-loss`,
//! `--max-p99-latency`, `--min-join-success`, `--max-p99-deliver`).
//!
//! Any threshold given also requires chat `lost` and `duplicated` to be 0:
//! the chat path promises no loss, so a run that checks anything checks
//! that too. A figure a threshold needs but the run did not measure (no
//! latency samples, say) fails the threshold rather than passing silently.

use serde_json::{json, Value};

#[derive(Clone, Debug, Default)]
pub struct Thresholds {
    pub max_loss: Option<f64>,
    pub max_p99_latency: Option<f64>,
    pub min_join_success: Option<f64>,
    pub max_p99_deliver: Option<f64>,
}

#[derive(Debug, Default)]
pub struct Verdict {
    /// One line per violated threshold, saying what was measured.
    pub failed: Vec<String>,
    /// One line per threshold checked.
    pub checked: Vec<String>,
}

impl Verdict {
    pub fn to_json(&self, t: &Thresholds) -> Value {
        json!({
            "passed": self.failed.is_empty(),
            "failed": self.failed,
            "checked": self.checked,
            "max_loss": t.max_loss,
            "max_p99_latency": t.max_p99_latency,
            "min_join_success": t.min_join_success,
            "max_p99_deliver": t.max_p99_deliver,
        })
    }
}

impl Thresholds {
    pub fn any(&self) -> bool {
        self.max_loss.is_some()
            || self.max_p99_latency.is_some()
            || self.min_join_success.is_some()
            || self.max_p99_deliver.is_some()
    }

    pub fn check(&self, out: &Value) -> Verdict {
        let mut v = Verdict::default();
        if !self.any() {
            return v;
        }
        let mut check = |name: String, ok: bool| {
            v.checked.push(name.clone());
            if !ok {
                v.failed.push(name);
            }
        };
        if let Some(vo) = out.get("voice") {
            if let Some(max) = self.max_loss {
                match vo["loss_percent"].as_f64() {
                    Some(l) => check(format!("voice loss {l:.3}% ≤ {max}%"), l <= max),
                    None => check(format!("voice loss not measured (max {max}%)"), false),
                }
            }
            if let Some(max) = self.max_p99_latency {
                let n = vo["latency_ms"]["count"].as_u64().unwrap_or(0);
                match vo["latency_ms"]["p99"].as_f64() {
                    Some(p) if n > 0 => {
                        check(format!("voice p99 latency {p:.1} ms ≤ {max} ms"), p <= max)
                    }
                    _ => check(
                        format!("voice latency not measured (max p99 {max} ms)"),
                        false,
                    ),
                }
            }
            if let Some(min) = self.min_join_success {
                let joined = vo["joined"].as_u64().unwrap_or(0);
                let total = joined + vo["failed"].as_u64().unwrap_or(0);
                let pct = if total > 0 {
                    joined as f64 * 100.0 / total as f64
                } else {
                    0.0
                };
                check(
                    format!("voice joins {joined}/{total} = {pct:.2}% ≥ {min}%"),
                    pct >= min,
                );
            }
        }
        if let Some(ch) = out.get("chat") {
            if let Some(max) = self.max_p99_deliver {
                let n = ch["deliver_ms"]["count"].as_u64().unwrap_or(0);
                match ch["deliver_ms"]["p99"].as_f64() {
                    Some(p) if n > 0 => {
                        check(format!("chat p99 deliver {p:.1} ms ≤ {max} ms"), p <= max)
                    }
                    _ => check(
                        format!("chat deliver latency not measured (max p99 {max} ms)"),
                        false,
                    ),
                }
            }
            if let Some(min) = self.min_join_success {
                let connected = ch["connected"].as_u64().unwrap_or(0);
                let total = ch["clients"].as_u64().unwrap_or(0);
                let pct = if total > 0 {
                    connected as f64 * 100.0 / total as f64
                } else {
                    100.0
                };
                check(
                    format!("chat clients connected {connected}/{total} = {pct:.2}% ≥ {min}%"),
                    pct >= min,
                );
            }
            let lost = ch["lost"].as_u64();
            let dup = ch["duplicated"].as_u64();
            check(
                format!(
                    "chat lost {} = 0",
                    lost.map_or("n/a".into(), |l| l.to_string())
                ),
                lost == Some(0),
            );
            check(
                format!(
                    "chat duplicated {} = 0",
                    dup.map_or("n/a".into(), |d| d.to_string())
                ),
                dup == Some(0),
            );
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        json!({
            "voice": {"loss_percent": 0.4, "latency_ms": {"p99": 35.0, "count": 1000},
                      "joined": 999, "failed": 1},
            "chat": {"deliver_ms": {"p99": 80.0, "count": 500}, "lost": 0, "duplicated": 0,
                     "connected": 10, "clients": 10},
        })
    }

    #[test]
    fn nothing_given_checks_nothing() {
        let v = Thresholds::default().check(&sample());
        assert!(v.failed.is_empty() && v.checked.is_empty());
    }

    #[test]
    fn passes_and_fails_with_reasons() {
        let t = Thresholds {
            max_loss: Some(1.0),
            max_p99_latency: Some(50.0),
            min_join_success: Some(99.9),
            max_p99_deliver: Some(100.0),
        };
        let v = t.check(&sample());
        assert!(v.failed.is_empty(), "{:?}", v.failed);
        assert_eq!(v.checked.len(), 7);

        let t = Thresholds {
            max_loss: Some(0.1),
            max_p99_latency: Some(20.0),
            min_join_success: Some(99.95),
            max_p99_deliver: Some(50.0),
        };
        let v = t.check(&sample());
        assert_eq!(v.failed.len(), 4, "{:?}", v.failed);
        assert!(v.failed[0].contains("loss 0.400%"));
        assert!(v.failed.iter().any(|f| f.contains("999/1000")));
    }

    #[test]
    fn chat_loss_fails_any_threshold_and_missing_figures_fail() {
        let mut s = sample();
        s["chat"]["lost"] = json!(3);
        s["voice"]["latency_ms"]["count"] = json!(0);
        let t = Thresholds {
            max_p99_latency: Some(1000.0),
            ..Default::default()
        };
        let v = t.check(&s);
        assert!(v.failed.iter().any(|f| f.contains("chat lost 3")));
        assert!(v.failed.iter().any(|f| f.contains("not measured")));
    }
}
