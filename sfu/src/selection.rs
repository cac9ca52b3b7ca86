//! Loudest-speaker selection for a room's audio slots.
//!
//! Every listener has at most K listening slots, whatever the room's size, so
//! the SDP, the renegotiations and the bandwidth of a listener stay constant
//! whether the channel holds 10 people or 5,000. The room keeps one ordered
//! selection of up to K + 1 publishers; a listener hears the first K of them
//! that are not itself (the extra entry covers a selected speaker, who never
//! hears themself but still needs K others).
//!
//! Rules (pure, so they are unit-tested without media):
//! - Publishers fill free positions in order of: speaking, priority speaker,
//!   most recently active, join order. Small rooms (≤ K + 1 publishers)
//!   therefore always select everyone, as before there were limits.
//! - A publisher that starts speaking while not selected takes the position of
//!   the selected publisher that is silent and has been silent the longest
//!   (hysteresis: a speaker that is still talking is never displaced, except by
//!   a priority speaker displacing a non-priority one).
//! - If every selected publisher is talking, the newcomer waits; it gets in when
//!   one of them stops (the room re-selects on every speaking change).
//! - Positions are stable: a replaced publisher's position goes to its
//!   replacement, so listeners' slot mappings change by one entry at a time.

use std::time::Instant;

use crate::ParticipantId;

/// What the selection needs to know of one publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub participant: ParticipantId,
    pub speaking: bool,
    pub priority: bool,
    /// When it last started or stopped speaking (None = never spoke).
    pub active_at: Option<Instant>,
}

/// Ranking for filling a free position: speaking first, then priority, then
/// the most recently active; ties keep the candidates' (join) order.
fn fill_rank(c: &Candidate) -> (bool, bool, Option<Instant>) {
    (c.speaking, c.priority, c.active_at)
}

/// Computes the room's new selection of at most `size` publishers from the
/// previous one. `candidates` are the room's current publishers in join order.
/// Returns `true` when the selection changed.
pub(crate) fn reselect(
    selected: &mut Vec<ParticipantId>,
    candidates: &[Candidate],
    size: usize,
) -> bool {
    let before = selected.clone();
    let find = |p: ParticipantId| candidates.iter().find(|c| c.participant == p);
    // Publishers that left (or stopped publishing) free their position; the
    // others keep theirs.
    let mut positions: Vec<Option<ParticipantId>> = selected
        .iter()
        .map(|&p| find(p).map(|_| p))
        .take(size)
        .collect();
    let is_selected =
        |positions: &[Option<ParticipantId>], p: ParticipantId| positions.contains(&Some(p));

    // Speakers outside the selection: priority speakers first, then the one
    // waiting longest.
    let mut waiting: Vec<Candidate> = candidates
        .iter()
        .filter(|c| c.speaking && !is_selected(&positions, c.participant))
        .copied()
        .collect();
    waiting.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.active_at.cmp(&b.active_at))
    });
    for w in waiting {
        // A free position first.
        if let Some(free) = positions.iter_mut().find(|p| p.is_none()) {
            *free = Some(w.participant);
            continue;
        }
        if positions.len() < size {
            positions.push(Some(w.participant));
            continue;
        }
        // Else the longest-silent selected publisher; a priority speaker may
        // also displace a talking non-priority one.
        let victim = positions
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.and_then(find).map(|c| (i, c)))
            .filter(|(_, c)| !c.speaking || (w.priority && !c.priority))
            .min_by_key(|(_, c)| (c.speaking, c.priority, c.active_at));
        if let Some((i, _)) = victim {
            positions[i] = Some(w.participant);
        }
    }

    // Fill what is still free with the best remaining publishers.
    let mut rest: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| !is_selected(&positions, c.participant))
        .collect();
    // Stable sort: equal ranks keep join order.
    rest.sort_by_key(|c| std::cmp::Reverse(fill_rank(c)));
    let mut rest = rest.into_iter();
    for p in positions.iter_mut().filter(|p| p.is_none()) {
        *p = rest.next().map(|c| c.participant);
    }
    while positions.len() < size {
        match rest.next() {
            Some(c) => positions.push(Some(c.participant)),
            None => break,
        }
    }
    selected.clear();
    selected.extend(positions.into_iter().flatten());
    *selected != before
}

/// Of a selection of K + 1, the publisher a listener outside it does not hear:
/// a silent one before a talking one, and then the one whose state changed the
/// longest ago if silent, or most recently if talking — a talking speaker who
/// is already heard is not cut off by one who just started.
pub(crate) fn least_relevant(
    selected: &[ParticipantId],
    candidates: &[Candidate],
) -> Option<ParticipantId> {
    let find = |p: &ParticipantId| candidates.iter().find(|c| c.participant == *p);
    // Reversed: among equals the last position goes (min_by keeps the first).
    selected
        .iter()
        .rev()
        .filter_map(find)
        .min_by(|a, b| {
            (a.speaking, a.priority)
                .cmp(&(b.speaking, b.priority))
                .then_with(|| {
                    if a.speaking {
                        b.active_at.cmp(&a.active_at)
                    } else {
                        a.active_at.cmp(&b.active_at)
                    }
                })
        })
        .map(|c| c.participant)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn ids<const N: usize>(ps: [u64; N]) -> Vec<ParticipantId> {
        ps.into_iter().map(ParticipantId::new).collect()
    }

    fn cand(p: u64, speaking: bool, t: Option<u64>, base: Instant) -> Candidate {
        Candidate {
            participant: ParticipantId::new(p),
            speaking,
            priority: false,
            active_at: t.map(|ms| base + Duration::from_millis(ms)),
        }
    }

    #[test]
    fn small_rooms_select_everyone_in_join_order() {
        let t0 = Instant::now();
        let cands: Vec<_> = (1..=3).map(|p| cand(p, false, None, t0)).collect();
        let mut sel = Vec::new();
        assert!(reselect(&mut sel, &cands, 4));
        assert_eq!(sel, ids([1, 2, 3]));
        assert!(
            !reselect(&mut sel, &cands, 4),
            "stable when nothing changes"
        );
    }

    #[test]
    fn a_new_speaker_replaces_the_longest_silent() {
        let t0 = Instant::now();
        let mut cands: Vec<_> = (1..=6).map(|p| cand(p, false, None, t0)).collect();
        let mut sel = Vec::new();
        reselect(&mut sel, &cands, 4);
        assert_eq!(sel, ids([1, 2, 3, 4]));
        // 2 spoke recently, 1/3/4 never: 6 starts and takes 1's position.
        cands[1] = cand(2, false, Some(100), t0);
        cands[5] = cand(6, true, Some(200), t0);
        assert!(reselect(&mut sel, &cands, 4));
        assert_eq!(sel, ids([6, 2, 3, 4]));
        // 5 starts: the longest silent among 2 (t=100), 3, 4 (never) is 3.
        cands[4] = cand(5, true, Some(300), t0);
        reselect(&mut sel, &cands, 4);
        assert_eq!(sel, ids([6, 2, 5, 4]));
    }

    #[test]
    fn talking_speakers_are_not_displaced_and_the_newcomer_waits() {
        let t0 = Instant::now();
        let mut cands: Vec<_> = (1..=5).map(|p| cand(p, p <= 4, Some(p * 10), t0)).collect();
        let mut sel = Vec::new();
        reselect(&mut sel, &cands, 4);
        assert_eq!(sel, ids([1, 2, 3, 4]));
        cands[4] = cand(5, true, Some(100), t0);
        assert!(!reselect(&mut sel, &cands, 4), "all four talk: 5 waits");
        cands[2] = cand(3, false, Some(200), t0);
        assert!(reselect(&mut sel, &cands, 4));
        assert_eq!(sel, ids([1, 2, 5, 4]), "5 gets in when 3 stops");
    }

    #[test]
    fn priority_speaker_displaces_a_talking_non_priority_one() {
        let t0 = Instant::now();
        let mut cands: Vec<_> = (1..=3).map(|p| cand(p, true, Some(p), t0)).collect();
        let mut sel = Vec::new();
        reselect(&mut sel, &cands, 2);
        assert_eq!(sel, ids([1, 2]));
        cands[2].priority = true;
        reselect(&mut sel, &cands, 2);
        assert_eq!(
            sel,
            ids([3, 2]),
            "the talking speaker active longest ago goes"
        );
        // 2 goes quiet: of the two waiting talkers, 1 (waiting longer) gets
        // its place; the priority speaker 3 stays.
        cands.push(cand(4, true, Some(50), t0));
        cands[1].speaking = false;
        reselect(&mut sel, &cands, 2);
        assert_eq!(sel, ids([3, 1]));
    }

    #[test]
    fn leaving_publisher_frees_its_position_for_the_best_remaining() {
        let t0 = Instant::now();
        let mut cands: Vec<_> = (1..=5).map(|p| cand(p, false, None, t0)).collect();
        let mut sel = Vec::new();
        reselect(&mut sel, &cands, 3);
        assert_eq!(sel, ids([1, 2, 3]));
        cands[4] = cand(5, false, Some(10), t0);
        cands.remove(1);
        assert!(reselect(&mut sel, &cands, 3));
        assert_eq!(sel, ids([1, 5, 3]), "5 spoke most recently");
    }

    #[test]
    fn listeners_outside_drop_the_least_relevant() {
        let t0 = Instant::now();
        let mut cands = vec![
            cand(1, true, Some(10), t0),
            cand(2, true, Some(20), t0),
            cand(3, false, Some(5), t0),
            cand(4, false, Some(30), t0),
        ];
        let sel = ids([1, 2, 3, 4]);
        assert_eq!(
            least_relevant(&sel, &cands),
            Some(ParticipantId::new(3)),
            "silent longest"
        );
        cands[2].speaking = true;
        cands[3].speaking = true;
        assert_eq!(
            least_relevant(&sel, &cands),
            Some(ParticipantId::new(4)),
            "newest talker"
        );
        cands[3].priority = true;
        assert_eq!(least_relevant(&sel, &cands), Some(ParticipantId::new(2)));
    }

    proptest! {
        #[test]
        fn invariants(
            states in proptest::collection::vec(
                proptest::collection::vec((any::<bool>(), any::<bool>(), proptest::option::of(0u64..1000)), 0..12),
                1..20,
            ),
            size in 1usize..6,
        ) {
            let t0 = Instant::now();
            let mut sel = Vec::new();
            for round in states {
                let cands: Vec<Candidate> = round
                    .iter()
                    .enumerate()
                    .map(|(i, &(speaking, priority, t))| Candidate {
                        participant: ParticipantId::new(i as u64),
                        speaking,
                        priority,
                        active_at: t.map(|ms| t0 + Duration::from_millis(ms)),
                    })
                    .collect();
                let prev = sel.clone();
                reselect(&mut sel, &cands, size);
                // Bounded, no duplicates, only current publishers.
                prop_assert_eq!(sel.len(), cands.len().min(size));
                let mut dedup = sel.clone();
                dedup.sort_unstable();
                dedup.dedup();
                prop_assert_eq!(dedup.len(), sel.len());
                prop_assert!(sel.iter().all(|p| (p.get() as usize) < cands.len()));
                // A talking selected publisher stays unless a priority speaker
                // took its place.
                for p in prev.iter().filter(|p| (p.get() as usize) < cands.len()) {
                    let c = cands[p.get() as usize];
                    if c.speaking && !sel.contains(p) {
                        prop_assert!(!c.priority);
                        prop_assert!(cands.iter().any(|o| o.priority && o.speaking && sel.contains(&o.participant)));
                    }
                }
                // Nobody talking is left out while a silent one is selected.
                let silent_selected = sel.iter().any(|p| !cands[p.get() as usize].speaking);
                let talking_out = cands.iter().any(|c| c.speaking && !sel.contains(&c.participant));
                prop_assert!(!(silent_selected && talking_out));
            }
        }
    }
}
