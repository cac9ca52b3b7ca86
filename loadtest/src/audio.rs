//! Speech-like test audio, encoded once with Opus, and the lock-free table
//! that maps a received payload back to its speaker, packet number and send
//! time.
//!
//! Each speaker owns [`FRAMES`] distinct 20 ms Opus frames (5 s of audio) and
//! loops over them. The SFU forwards payload bytes untouched, so a hash of
//! the payload identifies (speaker, frame); the speaker stores the packet's
//! counter and send time in that frame's slot (one `AtomicU64`) just before
//! sending, and a receiver reads it back. A slot is rewritten only one loop
//! (5 s) later, far beyond any latency we measure, so no locks and no
//! allocation on either side.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};

use crate::stats::{payload_hash, IdentityBuild};

/// Distinct frames per speaker (20 ms each).
pub const FRAMES: usize = 250;
pub const SAMPLE_RATE: u32 = 48_000;
pub const FRAME_SAMPLES: usize = 960;

const US_BITS: u32 = 40;
const US_MASK: u64 = (1 << US_BITS) - 1;

/// One encoded frame and its RFC 6464 level (0 = loudest, 127 = silence).
pub struct Frame {
    pub payload: Arc<[u8]>,
    pub level: u8,
}

/// What a receiver learns from a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub speaker: u32,
    /// The speaker's packet counter (0, 1, 2, ...).
    pub counter: u64,
    pub send_us: u64,
}

pub struct Catalog {
    pub speakers: Vec<Vec<Frame>>,
    index: HashMap<u64, u32, IdentityBuild>,
    slots: Vec<AtomicU64>,
    /// Per speaker: every frame decoded as [`Catalog::check_decode`] decodes
    /// it, decimated by [`DECIMATE`]. Filled by [`Catalog::with_reference`].
    reference: Vec<Vec<i16>>,
}

/// Reference PCM keeps every DECIMATE-th sample (box-averaged): 12 kHz
/// is plenty to compare speech below 4 kHz, at a quarter of the memory.
pub const DECIMATE: usize = 4;
const REF_FRAME: usize = FRAME_SAMPLES / DECIMATE;

/// Frames decoded before the checked one (and its reference), so the
/// decoder's state resembles a listener's mid-stream.
const WARMUP: usize = 2;

/// Correlation a checked frame must reach (speech frames).
pub const MIN_CORRELATION: f64 = 0.9;
/// Below this RMS (of 16-bit PCM) a reference frame counts as a pause.
const QUIET_RMS: f64 = 150.0;

/// The outcome of one integrity check.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    pub ok: bool,
    /// Pearson correlation with the reference; None for a quiet frame.
    pub correlation: Option<f64>,
}

fn decimate(pcm: &[i16], out: &mut Vec<i16>) {
    for c in pcm.chunks_exact(DECIMATE) {
        let s: i32 = c.iter().map(|&v| v as i32).sum();
        out.push((s / DECIMATE as i32) as i16);
    }
}

/// Resets `dec`, decodes the [`WARMUP`] frames before frame `f` of
/// `frames`, then `payload`; returns the samples decoded from `payload`.
fn decode_warm(
    dec: &mut opus::Decoder,
    pcm: &mut [i16],
    frames: &[Frame],
    f: usize,
    payload: &[u8],
) -> Option<usize> {
    dec.reset_state().ok()?;
    for back in (1..=WARMUP).rev() {
        let w = &frames[(f + FRAMES - back) % FRAMES].payload;
        dec.decode(w, pcm, false).ok()?;
    }
    dec.decode(payload, pcm, false).ok()
}

fn rms(x: &[i16]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / x.len() as f64).sqrt()
}

/// Pearson correlation of two equally long signals (0 if either is flat).
pub fn correlation(a: &[i16], b: &[i16]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    let ma = a[..n].iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    let mb = b[..n].iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let x = a[i] as f64 - ma;
        let y = b[i] as f64 - mb;
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    if saa <= 0.0 || sbb <= 0.0 {
        return 0.0;
    }
    sab / (saa * sbb).sqrt()
}

impl Catalog {
    /// Builds a catalog from already encoded frames; fails if two payloads
    /// hash alike (they must be distinct to be told apart).
    pub fn from_frames(speakers: Vec<Vec<Frame>>) -> Result<Self> {
        let mut index =
            HashMap::with_capacity_and_hasher(speakers.len() * FRAMES, IdentityBuild::default());
        for (s, frames) in speakers.iter().enumerate() {
            if frames.len() != FRAMES {
                bail!("speaker {s} has {} frames, not {FRAMES}", frames.len());
            }
            for (f, fr) in frames.iter().enumerate() {
                let key = (s * FRAMES + f) as u32;
                if index.insert(payload_hash(&fr.payload), key).is_some() {
                    bail!("duplicate payload (speaker {s}, frame {f})");
                }
            }
        }
        let slots = (0..speakers.len() * FRAMES)
            .map(|_| AtomicU64::new(0))
            .collect();
        Ok(Catalog {
            speakers,
            index,
            slots,
            reference: Vec::new(),
        })
    }

    /// Decodes every frame the way [`Catalog::check_decode`] will (reset,
    /// [`WARMUP`] frames before it, then the frame) and keeps the result,
    /// decimated, as the reference. Opus decoding is deterministic, so an
    /// intact payload reproduces it exactly; a corrupted or foreign one does
    /// not. (A single warm-up pass cannot match one continuous decode of the
    /// whole loop for every frame: measured, ~0.5% of frames differ.)
    pub fn with_reference(mut self) -> Result<Self> {
        let mut dec = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)?;
        let mut pcm = vec![0i16; FRAME_SAMPLES * 6];
        self.reference = Vec::with_capacity(self.speakers.len());
        for frames in &self.speakers {
            let mut r = Vec::with_capacity(FRAMES * REF_FRAME);
            for f in 0..FRAMES {
                let n = decode_warm(&mut dec, &mut pcm, frames, f, &frames[f].payload)
                    .ok_or_else(|| anyhow::anyhow!("decoding reference frame {f}"))?;
                decimate(&pcm[..n.min(FRAME_SAMPLES)], &mut r);
            }
            self.reference.push(r);
        }
        Ok(self)
    }

    /// Decodes `payload`, received as packet `counter` of `speaker`, and
    /// compares it with the reference. The decoder is reset and warmed up
    /// with the frames before it (taken from the catalog: they need not have
    /// been received), exactly as the reference was made. A speech frame passes at correlation ≥
    /// [`MIN_CORRELATION`] with an RMS within 0.5–2× of the reference; a
    /// quiet frame (a pause) passes if it decodes quiet too.
    /// None when there is no reference or the decoder fails.
    pub fn check_decode(
        &self,
        dec: &mut opus::Decoder,
        pcm: &mut [i16],
        speaker: usize,
        counter: u64,
        payload: &[u8],
    ) -> Option<Check> {
        let reference = self.reference.get(speaker)?;
        let f = (counter % FRAMES as u64) as usize;
        let n = decode_warm(dec, pcm, &self.speakers[speaker], f, payload)?;
        let mut got = Vec::with_capacity(REF_FRAME);
        decimate(&pcm[..n.min(FRAME_SAMPLES)], &mut got);
        let want = &reference[f * REF_FRAME..(f + 1) * REF_FRAME];
        let (rw, rg) = (rms(want), rms(&got));
        if rw < QUIET_RMS {
            return Some(Check {
                ok: rg < QUIET_RMS * 4.0,
                correlation: None,
            });
        }
        let c = correlation(want, &got);
        let ratio = rg / rw;
        Some(Check {
            ok: got.len() == REF_FRAME && c >= MIN_CORRELATION && (0.5..=2.0).contains(&ratio),
            correlation: Some(c),
        })
    }

    /// Encodes `n` speakers' worth of speech-like audio.
    pub fn generate(n: usize, seed: u64) -> Result<Self> {
        let mut speakers = Vec::with_capacity(n);
        let mut seen = std::collections::HashSet::new();
        for s in 0..n {
            let mut attempt = 0u64;
            loop {
                let frames = encode_speaker(seed ^ ((s as u64) << 20) ^ (attempt << 50))?;
                let hashes: Vec<u64> = frames.iter().map(|f| payload_hash(&f.payload)).collect();
                let mut local = std::collections::HashSet::new();
                let unique = hashes.iter().all(|h| !seen.contains(h) && local.insert(*h));
                if unique {
                    seen.extend(hashes);
                    speakers.push(frames);
                    break;
                }
                attempt += 1;
                if attempt > 10 {
                    bail!("cannot make speaker {s}'s payloads unique");
                }
            }
        }
        Self::from_frames(speakers)?.with_reference()
    }

    pub fn frame(&self, speaker: usize, counter: u64) -> &Frame {
        &self.speakers[speaker][(counter % FRAMES as u64) as usize]
    }

    /// Called by a speaker just before sending packet `counter`.
    #[inline]
    pub fn mark_sent(&self, speaker: usize, counter: u64, send_us: u64) {
        let slot = speaker * FRAMES + (counter % FRAMES as u64) as usize;
        let packed = (counter << US_BITS) | (send_us & US_MASK);
        // counter 0 at time 0 would pack to 0 ("never sent"); send times are
        // never 0 in practice (the clock starts before the catalog is built).
        self.slots[slot].store(packed, Ordering::Release);
    }

    /// Looks a received payload up.
    #[inline]
    pub fn lookup(&self, payload: &[u8]) -> Option<Origin> {
        let key = *self.index.get(&payload_hash(payload))? as usize;
        let packed = self.slots[key].load(Ordering::Acquire);
        if packed == 0 {
            return None;
        }
        let speaker = (key / FRAMES) as u32;
        // Guard against a foreign payload with a colliding hash.
        if self.speakers[speaker as usize][key % FRAMES].payload.len() != payload.len() {
            return None;
        }
        Some(Origin {
            speaker,
            counter: packed >> US_BITS,
            send_us: packed & US_MASK,
        })
    }

    /// The origin of packet `counter` of `speaker`, if `payload` is that
    /// frame's payload byte for byte. Checks a guess (from the stream's RTP
    /// timestamps, see [`LoopResolver::predict`]) without hashing: a compare
    /// of a hundred-odd bytes and one atomic load. `None` when the bytes
    /// differ or that counter was not sent (yet); the caller then looks the
    /// payload up by its hash.
    #[inline]
    pub fn origin_if(&self, speaker: u32, counter: u64, payload: &[u8]) -> Option<Origin> {
        let s = speaker as usize;
        let f = (counter % FRAMES as u64) as usize;
        if *self.speakers.get(s)?[f].payload != *payload {
            return None;
        }
        let packed = self.slots[s * FRAMES + f].load(Ordering::Acquire);
        let newest = packed >> US_BITS;
        if packed == 0 || newest < counter {
            return None;
        }
        // The slot holds the frame's newest sending; an older one is whole
        // loops earlier (20 ms per frame), as `LoopResolver::resolve` takes it.
        Some(Origin {
            speaker,
            counter,
            send_us: (packed & US_MASK).saturating_sub((newest - counter) * 20_000),
        })
    }

    /// Nanoseconds per hash + lookup, measured over every payload.
    pub fn bench_lookup_ns(&self) -> f64 {
        let all: Vec<&[u8]> = self
            .speakers
            .iter()
            .flat_map(|s| s.iter().map(|f| &f.payload[..]))
            .collect();
        if all.is_empty() {
            return 0.0;
        }
        let n = 200_000usize;
        let t = std::time::Instant::now();
        let mut hits = 0u64;
        for i in 0..n {
            hits += self
                .lookup(std::hint::black_box(all[i % all.len()]))
                .is_some() as u64;
        }
        std::hint::black_box(hits);
        t.elapsed().as_nanos() as f64 / n as f64
    }
}

/// 5 s of a synthetic voice: a glottal-like harmonic series with a moving
/// pitch and two moving formants, syllable envelopes at ~4 Hz and pauses
/// between phrases, over a faint noise floor (so even pauses encode to
/// distinct frames). Each speaker gets its own pitch, rhythm and noise.
pub fn synth_speaker(seed: u64) -> Vec<i16> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let base_f0: f64 = rng.random_range(95.0..230.0);
    let syl_rate: f64 = rng.random_range(3.5..5.0);
    let phase0: f64 = rng.random_range(0.0..std::f64::consts::TAU);
    let n = FRAMES * FRAME_SAMPLES;
    let sr = SAMPLE_RATE as f64;
    let mut out = Vec::with_capacity(n);
    let mut glottal_phase = 0.0f64;
    for i in 0..n {
        let t = i as f64 / sr;
        // Phrases: 1.6 s of speech, 0.5 s pause.
        let phrase = (t % 2.1) < 1.6;
        let syl = (std::f64::consts::TAU * syl_rate * t + phase0)
            .sin()
            .max(0.0)
            .powi(2);
        let env = if phrase { syl } else { 0.0 };
        let f0 = base_f0 * (1.0 + 0.15 * (std::f64::consts::TAU * 0.6 * t + phase0).sin());
        glottal_phase += f0 / sr;
        let syl_idx = (t * syl_rate) as u64;
        let f1 = 350.0 + ((syl_idx * 37 + seed) % 7) as f64 * 70.0;
        let f2 = 1000.0 + ((syl_idx * 53 + seed) % 9) as f64 * 170.0;
        let mut v = 0.0;
        let mut k = 1.0;
        while k * f0 < 4000.0 {
            let f = k * f0;
            let formant = 1.0
                + 3.0 * (-((f - f1) / 120.0).powi(2)).exp()
                + 2.0 * (-((f - f2) / 200.0).powi(2)).exp();
            v += formant / k * (std::f64::consts::TAU * k * glottal_phase).sin();
            k += 1.0;
        }
        let noise: f64 = rng.random_range(-1.0..1.0);
        let sample = 2500.0 * env * v + 40.0 * noise;
        out.push(sample.clamp(-32000.0, 32000.0) as i16);
    }
    out
}

/// RFC 6464 level of a frame: -dBov, 0..=127.
pub fn level_of(samples: &[i16]) -> u8 {
    if samples.is_empty() {
        return 127;
    }
    let sum: f64 = samples.iter().map(|&s| (s as f64) * (s as f64)).sum();
    let rms = (sum / samples.len() as f64).sqrt();
    if rms <= 0.0 {
        return 127;
    }
    let dbov = 20.0 * (rms / 32768.0).log10();
    (-dbov).clamp(0.0, 127.0) as u8
}

fn encode_speaker(seed: u64) -> Result<Vec<Frame>> {
    let pcm = synth_speaker(seed);
    let mut enc = opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)?;
    enc.set_bitrate(opus::Bitrate::Bits(32_000))?;
    let mut buf = [0u8; 1500];
    let mut frames = Vec::with_capacity(FRAMES);
    for chunk in pcm.chunks_exact(FRAME_SAMPLES) {
        let len = enc.encode(chunk, &mut buf)?;
        frames.push(Frame {
            payload: Arc::from(&buf[..len]),
            level: level_of(chunk),
        });
    }
    Ok(frames)
}

/// Which loop of a speaker's frames a received packet belongs to.
///
/// [`Catalog::lookup`] returns the newest sending of a payload's frame. A
/// packet that reaches the tester more than one loop ([`FRAMES`], 5 s)
/// after it was sent — a saturated SFU or tester works through seconds of
/// socket backlog — is then taken for the frame's next sending, one loop
/// later. While the backlog shrinks through a loop boundary, consecutive
/// packets map onto counters already seen: false duplicates (and false
/// losses where it grows).
///
/// The RTP timestamp settles it: a speaker advances it by one frame per
/// counter and the SFU only adds an offset per slot and source, so on one
/// receive stream the timestamp difference to the previous packet of the
/// same speaker gives the counter difference. Kept per received SSRC; the
/// first packet of a speaker on a stream keeps the lookup's answer.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoopResolver {
    /// (speaker, counter, RTP timestamp) of the previous packet.
    last: Option<(u32, u64, u32)>,
}

impl LoopResolver {
    /// (speaker, counter) of a packet with RTP timestamp `ts` if it is from
    /// the same speaker as the previous packet of the stream: the timestamp
    /// advances one frame per counter. `None` without a history or when the
    /// distance is not whole frames.
    #[inline]
    pub fn predict(&self, ts: u32) -> Option<(u32, u64)> {
        let (speaker, counter, last_ts) = self.last?;
        let d = ts.wrapping_sub(last_ts) as i32 as i64;
        if d % FRAME_SAMPLES as i64 != 0 {
            return None;
        }
        let c = counter as i64 + d / FRAME_SAMPLES as i64;
        (c >= 0).then_some((speaker, c as u64))
    }

    /// Remembers a packet whose origin was confirmed (by [`Catalog::origin_if`]).
    #[inline]
    pub fn note(&mut self, o: &Origin, ts: u32) {
        self.last = Some((o.speaker, o.counter, ts));
    }

    /// `o` as looked up for a packet with RTP timestamp `ts`, moved back by
    /// whole loops when the stream's timestamps say it is older.
    pub fn resolve(&mut self, mut o: Origin, ts: u32) -> Origin {
        if let Some((speaker, counter, last_ts)) = self.last {
            let d = ts.wrapping_sub(last_ts) as i32 as i64;
            let expected = counter as i64 + d / FRAME_SAMPLES as i64;
            let loops = (o.counter as i64 - expected) / FRAMES as i64;
            if speaker == o.speaker
                && d % FRAME_SAMPLES as i64 == 0
                && expected >= 0
                && loops > 0
                && (o.counter as i64 - expected) % FRAMES as i64 == 0
            {
                let back = loops as u64 * FRAMES as u64;
                o.counter -= back;
                // The newest sending's time less the loops' duration (20 ms per frame).
                o.send_us = o.send_us.saturating_sub(back * 20_000);
            }
        }
        self.last = Some((o.speaker, o.counter, ts));
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_unique_and_match() {
        let cat = Catalog::generate(2, 7).unwrap();
        assert_eq!(cat.speakers.len(), 2);
        // Nothing sent yet: no origin.
        assert_eq!(cat.lookup(&cat.frame(1, 3).payload), None);
        cat.mark_sent(1, 3, 1_000);
        cat.mark_sent(1, 3 + FRAMES as u64, 6_000_000); // the slot's next loop
        assert_eq!(
            cat.lookup(&cat.frame(1, 3).payload),
            Some(Origin {
                speaker: 1,
                counter: 3 + FRAMES as u64,
                send_us: 6_000_000
            })
        );
        cat.mark_sent(0, 0, 5);
        assert_eq!(cat.lookup(&cat.frame(0, 0).payload).unwrap().speaker, 0);
        // A payload that is not ours.
        assert_eq!(cat.lookup(&[0xde, 0xad, 0xbe, 0xef]), None);
        // Pauses and speech: levels span quiet and loud.
        let levels: Vec<u8> = cat.speakers[0].iter().map(|f| f.level).collect();
        assert!(levels.iter().any(|&l| l < 30), "{levels:?}");
        assert!(levels.iter().any(|&l| l > 60), "{levels:?}");
    }

    #[test]
    fn integrity_check_accepts_every_frame_and_rejects_others() {
        let cat = Catalog::generate(2, 11).unwrap();
        let mut dec = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono).unwrap();
        let mut pcm = vec![0i16; FRAME_SAMPLES * 6];
        let mut speech = 0;
        let mut min_c = 1.0f64;
        for counter in 0..(2 * FRAMES as u64) {
            let p = cat.frame(0, counter).payload.clone();
            let c = cat
                .check_decode(&mut dec, &mut pcm, 0, counter, &p)
                .unwrap();
            assert!(c.ok, "frame {counter}: {c:?}");
            if let Some(x) = c.correlation {
                speech += 1;
                min_c = min_c.min(x);
            }
        }
        assert!(speech > 50, "{speech} speech frames");
        assert!(min_c >= MIN_CORRELATION, "{min_c}");
        // Another speaker's frame in place of speaker 0's: mostly rejected.
        let mut rejected = 0;
        let mut speech_frames = 0;
        for f in 0..FRAMES as u64 {
            let other = cat.frame(1, f).payload.clone();
            let c = cat.check_decode(&mut dec, &mut pcm, 0, f, &other).unwrap();
            if c.correlation.is_some() {
                speech_frames += 1;
                rejected += (!c.ok) as usize;
            }
        }
        assert!(
            rejected * 10 >= speech_frames * 9,
            "{rejected} of {speech_frames} rejected"
        );
    }

    #[test]
    fn duplicate_payloads_are_refused() {
        let mk = || Frame {
            payload: Arc::from(&[1u8, 2, 3][..]),
            level: 127,
        };
        let frames: Vec<Frame> = (0..FRAMES).map(|_| mk()).collect();
        assert!(Catalog::from_frames(vec![frames]).is_err());
    }

    #[test]
    fn level_scale() {
        assert_eq!(level_of(&[0; 960]), 127);
        let loud: Vec<i16> = (0..960)
            .map(|i| if i % 2 == 0 { 32767 } else { -32767 })
            .collect();
        assert_eq!(level_of(&loud), 0);
    }

    /// A backlog that builds up from 0.1 s to 6 s and shrinks back to 1 s:
    /// without the resolver the packets older than a loop are taken for the
    /// frame's next sending and, as the backlog shrinks, some counters come
    /// twice; with it every packet keeps its own counter.
    #[test]
    fn packets_older_than_one_loop_keep_their_counter() {
        let cat = Catalog::generate(1, 3).unwrap();
        let frame_us = 20_000u64;
        let sent = 1_000u64;
        let (mut naive, mut resolved) = (
            crate::stats::SeenSet::default(),
            crate::stats::SeenSet::default(),
        );
        let mut r = LoopResolver::default();
        let mut marked = 0u64;
        // The SFU's slot offset: any constant.
        let ts0 = 0xfff0_0000u32;
        for c in 0..sent {
            // Lag rises linearly from 0.1 s to 6 s over the first 400
            // packets, then falls to 1 s.
            let lag_us = if c < 400 {
                100_000 + 5_900_000 * c / 400
            } else {
                6_000_000 - 5_000_000 * (c - 400) / (sent - 400)
            };
            let now_us = c * frame_us + lag_us;
            // The speaker has sent everything up to `now`.
            while marked * frame_us <= now_us {
                cat.mark_sent(0, marked, marked * frame_us + 1);
                marked += 1;
            }
            let o = cat.lookup(&cat.frame(0, c).payload).unwrap();
            naive.insert(o.counter);
            let ts = ts0.wrapping_add((c as u32).wrapping_mul(FRAME_SAMPLES as u32));
            let got = r.resolve(o, ts);
            assert_eq!(got.counter, c, "packet {c}");
            assert_eq!(got.send_us, c * frame_us + 1, "packet {c}");
            resolved.insert(got.counter);
        }
        assert!(naive.duplicates() > 0, "the lag crossed a loop boundary");
        assert_eq!(resolved.duplicates(), 0);
        assert_eq!(resolved.unique(), sent);
    }

    /// A new speaker on the stream (slot switch) or a timestamp that is not
    /// a whole number of frames away: the lookup's answer stands.
    #[test]
    fn resolver_trusts_the_lookup_without_a_stream_history() {
        let mut r = LoopResolver::default();
        let o = |speaker, counter| Origin {
            speaker,
            counter,
            send_us: 10_000_000,
        };
        assert_eq!(r.resolve(o(0, 300), 1_000).counter, 300);
        // Another speaker on the same SSRC.
        assert_eq!(r.resolve(o(1, 400), 1_960).counter, 400);
        // Same speaker, but 480 samples on: not frame-aligned.
        assert_eq!(r.resolve(o(1, 651), 2_440).counter, 651);
        // One frame after that, looked up a loop ahead: moved back.
        assert_eq!(r.resolve(o(1, 652 + FRAMES as u64), 3_400).counter, 652);
    }
}
