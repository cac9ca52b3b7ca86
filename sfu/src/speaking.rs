//! Speaking detection from RFC 6464 audio levels (0 = loudest … 127 = silence).
//!
//! The level in each packet is smoothed with an exponential moving average so a
//! single loud packet (a click) does not count. Hysteresis:
//! - **start**: the smoothed level stays at or above [`LOUD_LEVEL`] loudness
//!   (i.e. `level <= LOUD_LEVEL`) for [`ATTACK`] (100 ms, five 20 ms packets);
//! - **stop**: no loud smoothed level for [`RELEASE`] (500 ms). This also fires
//!   from a timer when packets stop altogether (DTX, client mute, loss).

use std::time::{Duration, Instant};

/// Levels at or below this (−45 dBov or louder) count as voice. Speech at a
/// normal microphone gain sits around −20…−40 dBov; room noise is quieter.
pub const LOUD_LEVEL: f32 = 45.0;
/// Weight of the newest packet in the moving average (per 20 ms packet).
pub const SMOOTHING: f32 = 0.4;
/// How long the level must stay loud before "speaking" starts.
pub const ATTACK: Duration = Duration::from_millis(100);
/// How long without a loud level before "speaking" stops.
pub const RELEASE: Duration = Duration::from_millis(500);

/// Per-participant speaking state.
#[derive(Debug)]
pub(crate) struct SpeakingDetector {
    smoothed: f32,
    loud_since: Option<Instant>,
    last_loud: Option<Instant>,
    speaking: bool,
}

impl Default for SpeakingDetector {
    fn default() -> Self {
        SpeakingDetector {
            smoothed: 127.0,
            loud_since: None,
            last_loud: None,
            speaking: false,
        }
    }
}

impl SpeakingDetector {
    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// The smoothed level is loud: speech is starting (attack) or going on.
    pub fn is_loud(&self) -> bool {
        self.loud_since.is_some()
    }

    /// Feeds one packet's level (0..=127). Returns the new state on a change.
    pub fn on_level(&mut self, now: Instant, level: u8) -> Option<bool> {
        let level = level.min(127) as f32;
        self.smoothed += SMOOTHING * (level - self.smoothed);
        if self.smoothed <= LOUD_LEVEL {
            self.last_loud = Some(now);
            let since = *self.loud_since.get_or_insert(now);
            if !self.speaking && now.saturating_duration_since(since) >= ATTACK {
                self.speaking = true;
                return Some(true);
            }
            None
        } else {
            self.loud_since = None;
            self.on_timeout(now)
        }
    }

    /// Checks the release timer. Returns `Some(false)` when speaking stops.
    pub fn on_timeout(&mut self, now: Instant) -> Option<bool> {
        let deadline = self.deadline()?;
        if now >= deadline {
            self.speaking = false;
            self.loud_since = None;
            self.smoothed = 127.0;
            return Some(false);
        }
        None
    }

    /// When [`Self::on_timeout`] must run next (only while speaking).
    pub fn deadline(&self) -> Option<Instant> {
        if !self.speaking {
            return None;
        }
        Some(self.last_loud? + RELEASE)
    }

    /// Forgets everything (mute, rejoin). Returns true if it was speaking.
    pub fn reset(&mut self) -> bool {
        let was = self.speaking;
        *self = SpeakingDetector::default();
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(
        d: &mut SpeakingDetector,
        t0: Instant,
        from_ms: u64,
        to_ms: u64,
        level: u8,
    ) -> Vec<(u64, bool)> {
        let mut out = vec![];
        let mut ms = from_ms;
        while ms < to_ms {
            if let Some(s) = d.on_level(t0 + Duration::from_millis(ms), level) {
                out.push((ms, s));
            }
            ms += 20;
        }
        out
    }

    #[test]
    fn hysteresis() {
        let t0 = Instant::now();
        let mut d = SpeakingDetector::default();
        assert!(feed(&mut d, t0, 0, 1000, 127).is_empty());
        // One loud packet is not speech.
        assert_eq!(d.on_level(t0 + Duration::from_millis(1000), 0), None);
        assert!(feed(&mut d, t0, 1020, 1500, 120).is_empty());
        // Sustained speech starts after the smoothing + ATTACK.
        let ev = feed(&mut d, t0, 2000, 2500, 20);
        assert_eq!(ev.len(), 1);
        assert!(ev[0].1);
        assert!(ev[0].0 >= 2100 && ev[0].0 <= 2200, "{ev:?}");
        // A 200 ms pause does not stop it.
        assert!(feed(&mut d, t0, 2500, 2700, 127).is_empty());
        assert!(feed(&mut d, t0, 2700, 3000, 20).is_empty());
        // Silence for RELEASE stops it.
        let ev = feed(&mut d, t0, 3000, 4000, 127);
        assert_eq!(ev.len(), 1);
        assert!(!ev[0].1);
        assert!(ev[0].0 >= 3480 && ev[0].0 <= 3560, "{ev:?}");
    }

    #[test]
    fn stops_from_timer_when_packets_stop() {
        let t0 = Instant::now();
        let mut d = SpeakingDetector::default();
        feed(&mut d, t0, 0, 400, 10);
        assert!(d.is_speaking());
        let deadline = d.deadline().unwrap();
        assert_eq!(d.on_timeout(deadline - Duration::from_millis(1)), None);
        assert_eq!(d.on_timeout(deadline), Some(false));
        assert_eq!(d.deadline(), None);
    }
}
