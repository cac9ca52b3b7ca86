//! Talking in turn: the large-channel scenario (`--talk-turn-ms`). The speakers of a
//! room take turns of a fixed length on a schedule every peer derives from the shared
//! clock, so senders and receivers agree on who talks when without messages. Whoever
//! is not talking sends what a browser sends in silence: a DTX packet every 400 ms
//! with the lowest audio level.
//!
//! The SFU carries only the loudest few speakers to each listener, so a turn's first
//! packets reach listeners only once the SFU has noticed the new speaker (its speaking
//! attack) and moved a slot; loss is therefore counted only for packets sent after
//! [`SETTLE_US`] into a turn, and the time from a turn's start to each listener's first
//! packet of that speaker is the slot switch latency.

/// Packets sent earlier than this into a turn do not count towards loss.
pub const SETTLE_US: u64 = 300_000;
/// Audio level (−dBov) a talking speaker reports at least, all through its turn: the
/// catalog's synthetic speech has phrase pauses that would otherwise move the speech
/// onset away from the turn's start, and the switch latency is measured from that start.
pub const TALK_LEVEL: u8 = 30;
/// In silence, one packet in this many (20 ms each) is sent (DTX: 400 ms).
pub const DTX_EVERY: u64 = 20;

#[derive(Clone, Copy, Debug)]
pub struct Turns {
    /// Length of one turn, µs.
    pub turn_us: u64,
    /// Speakers per room.
    pub speakers: usize,
}

impl Turns {
    pub fn new(turn_ms: u64, speakers: usize) -> Option<Self> {
        (turn_ms > 0 && speakers > 0).then_some(Turns {
            turn_us: turn_ms * 1000,
            speakers,
        })
    }

    /// The turn `us` (shared clock) falls in.
    pub fn turn_of(&self, us: u64) -> u64 {
        us / self.turn_us
    }

    pub fn turn_start(&self, turn: u64) -> u64 {
        turn * self.turn_us
    }

    /// Whether the speaker with global index `speaker` talks at `us`.
    pub fn is_talking(&self, speaker: usize, us: u64) -> bool {
        (self.turn_of(us) % self.speakers as u64) as usize == speaker % self.speakers
    }

    /// Whether a packet of `speaker` sent at `us` is expected by every listener.
    pub fn counts(&self, speaker: usize, us: u64) -> bool {
        self.is_talking(speaker, us) && us - self.turn_start(self.turn_of(us)) >= SETTLE_US
    }

    /// Whether a speaker that is not talking sends its `counter`-th 20 ms frame.
    pub fn sends_in_silence(counter: u64) -> bool {
        counter.is_multiple_of(DTX_EVERY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speakers_take_turns_in_order_per_room() {
        let t = Turns::new(2000, 4).unwrap();
        // Turn k belongs to local speaker k % 4; speaker 5 is room 1's speaker 1.
        assert!(t.is_talking(0, 0));
        assert!(t.is_talking(1, 2_000_000));
        assert!(t.is_talking(5, 2_000_000));
        assert!(!t.is_talking(0, 2_000_000));
        assert!(t.is_talking(0, 8_000_001));
        assert_eq!(t.turn_start(t.turn_of(2_500_000)), 2_000_000);
    }

    #[test]
    fn only_settled_talk_counts() {
        let t = Turns::new(1000, 2).unwrap();
        assert!(!t.counts(0, 100_000), "inside the settle time");
        assert!(t.counts(0, SETTLE_US));
        assert!(!t.counts(1, SETTLE_US), "not its turn");
        assert!(Turns::new(0, 2).is_none());
        assert!(Turns::sends_in_silence(40) && !Turns::sends_in_silence(41));
    }
}
