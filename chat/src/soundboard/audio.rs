//! What an uploaded sound is, read from its bytes: the container (Ogg with Opus, MP3 or WAV)
//! and how long it plays. Whatever the upload's `Content-Type` says, only these bytes decide
//! — the content type clients later receive is the one sniffed here.
//!
//! A small parser of the three containers' headers rather than a media framework (such as
//! `symphonia`): a duration needs no decoding — WAV states its data size and byte rate, an
//! Ogg stream's last granule position is its length in 48 kHz samples, and MP3 frame headers
//! each say how many samples follow — so a few hundred lines of bounds-checked reads cover it,
//! with nothing to decode and no codec's attack surface on the server. It never panics on any
//! input (`fuzz/fuzz_targets/sound_inspect.rs`); the browser decodes the audio itself.

use std::fmt;

/// Largest sound, in bytes.
pub const MAX_BYTES: usize = 512 * 1024;
/// Longest sound, in milliseconds.
pub const MAX_DURATION_MS: u32 = 5_200;

/// An accepted container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoundKind {
    OggOpus,
    Mp3,
    Wav,
}

impl SoundKind {
    /// The MIME type sent with the audio.
    pub fn content_type(self) -> &'static str {
        match self {
            SoundKind::OggOpus => "audio/ogg",
            SoundKind::Mp3 => "audio/mpeg",
            SoundKind::Wav => "audio/wav",
        }
    }
}

/// An accepted sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoundInfo {
    pub kind: SoundKind,
    pub duration_ms: u32,
}

/// Why a sound was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoundError {
    Empty,
    TooLarge,
    /// Not Ogg/Opus, MP3 or WAV.
    Unsupported,
    /// Looks like one of them but its structure is broken; says what.
    Malformed(&'static str),
    /// Plays for this long (ms), over `MAX_DURATION_MS`.
    TooLong(u64),
}

impl fmt::Display for SoundError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SoundError::Empty => f.write_str("is empty"),
            SoundError::TooLarge => write!(f, "must be at most {MAX_BYTES} bytes (512 KiB)"),
            SoundError::Unsupported => f.write_str("must be Ogg/Opus, MP3 or WAV audio"),
            SoundError::Malformed(what) => write!(f, "is not a valid audio file: {what}"),
            SoundError::TooLong(ms) => write!(
                f,
                "plays for {}.{:03} s; a sound plays for at most {}.{} s",
                ms / 1000,
                ms % 1000,
                MAX_DURATION_MS / 1000,
                MAX_DURATION_MS % 1000 / 100
            ),
        }
    }
}

/// Sniffs the container and reads the duration; refuses anything too large, too long, empty
/// or broken.
pub fn inspect(bytes: &[u8]) -> Result<SoundInfo, SoundError> {
    if bytes.is_empty() {
        return Err(SoundError::Empty);
    }
    if bytes.len() > MAX_BYTES {
        return Err(SoundError::TooLarge);
    }
    let (kind, ms) = if bytes.starts_with(b"RIFF") {
        (SoundKind::Wav, wav_duration_ms(bytes)?)
    } else if bytes.starts_with(b"OggS") {
        (SoundKind::OggOpus, ogg_opus_duration_ms(bytes)?)
    } else if bytes.starts_with(b"ID3") || mp3_frame(bytes).is_some() {
        (SoundKind::Mp3, mp3_duration_ms(bytes)?)
    } else {
        return Err(SoundError::Unsupported);
    };
    if ms == 0 {
        return Err(SoundError::Malformed("it holds no audio"));
    }
    if ms > u64::from(MAX_DURATION_MS) {
        return Err(SoundError::TooLong(ms));
    }
    Ok(SoundInfo {
        kind,
        duration_ms: ms as u32,
    })
}

fn u16le(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32le(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64le(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// RIFF/WAVE: a `fmt ` chunk (format, channels, rate, byte rate) and a `data` chunk whose size
/// over the byte rate is the duration.
fn wav_duration_ms(b: &[u8]) -> Result<u64, SoundError> {
    const BAD: SoundError = SoundError::Malformed("broken WAV header");
    if b.get(8..12) != Some(b"WAVE") {
        return Err(SoundError::Unsupported);
    }
    let mut at = 12usize;
    let mut byte_rate = None;
    while at < b.len() {
        let id = b.get(at..at + 4).ok_or(BAD)?;
        let size = u32le(b, at + 4).ok_or(BAD)? as usize;
        let body = at + 8;
        match id {
            b"fmt " => {
                let format = u16le(b, body).ok_or(BAD)?;
                let channels = u16le(b, body + 2).ok_or(BAD)?;
                let rate = u32le(b, body + 4).ok_or(BAD)?;
                let bytes_per_second = u32le(b, body + 8).ok_or(BAD)?;
                // PCM, IEEE float, A-law, µ-law, or WAVE_FORMAT_EXTENSIBLE: what browsers play.
                if ![1, 3, 6, 7, 0xFFFE].contains(&format) {
                    return Err(SoundError::Malformed("unsupported WAV sample format"));
                }
                if !(1..=8).contains(&channels)
                    || !(8_000..=192_000).contains(&rate)
                    || bytes_per_second == 0
                {
                    return Err(BAD);
                }
                byte_rate = Some(u64::from(bytes_per_second));
            }
            b"data" => {
                let rate = byte_rate.ok_or(SoundError::Malformed("WAV data before its format"))?;
                let available = b.len() - body.min(b.len());
                // A streamed WAV may say 0 or 0xFFFFFFFF ("unknown"): the rest of the file.
                let size = if size == 0 || size == u32::MAX as usize {
                    available
                } else if size > available {
                    return Err(SoundError::Malformed("WAV data is cut short"));
                } else {
                    size
                };
                return Ok(size as u64 * 1000 / rate);
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        at = body
            .checked_add(size)
            .ok_or(BAD)?
            .checked_add(size & 1)
            .ok_or(BAD)?;
    }
    Err(SoundError::Malformed("WAV without a data chunk"))
}

/// Ogg with one Opus stream: pages are walked to the end (each must fit), the first packet is
/// `OpusHead` (for the pre-skip), and the last granule position of the stream, in 48 kHz
/// samples, minus the pre-skip is the duration. Page checksums are not verified: a corrupt
/// page only fails to decode in the browser, and its header fields are bounds-checked here.
fn ogg_opus_duration_ms(b: &[u8]) -> Result<u64, SoundError> {
    const BAD: SoundError = SoundError::Malformed("broken Ogg page");
    let mut at = 0usize;
    let mut serial = None;
    let mut pre_skip = 0u64;
    let mut last_granule = None;
    while at < b.len() {
        if b.get(at..at + 4) != Some(b"OggS") || b.get(at + 4) != Some(&0) {
            return Err(BAD);
        }
        let granule = u64le(b, at + 6).ok_or(BAD)?;
        let page_serial = u32le(b, at + 14).ok_or(BAD)?;
        let segments = *b.get(at + 26).ok_or(BAD)? as usize;
        let table = b.get(at + 27..at + 27 + segments).ok_or(BAD)?;
        let body_len: usize = table.iter().map(|&s| s as usize).sum();
        let body = at + 27 + segments;
        let page = b.get(body..body + body_len).ok_or(BAD)?;
        match serial {
            None => {
                // The first page starts the stream with its identification header.
                if !page.starts_with(b"OpusHead") {
                    return Err(SoundError::Unsupported);
                }
                let channels = *page.get(9).ok_or(BAD)?;
                if channels == 0 {
                    return Err(SoundError::Malformed("Opus header with no channels"));
                }
                pre_skip = u64::from(u16le(page, 10).ok_or(BAD)?);
                serial = Some(page_serial);
            }
            Some(s) if s != page_serial => {
                return Err(SoundError::Malformed("more than one Ogg stream"));
            }
            Some(_) => {
                // -1: no packet ends on this page.
                if granule != u64::MAX {
                    last_granule = Some(granule);
                }
            }
        }
        at = body + body_len;
    }
    let granule = last_granule.ok_or(SoundError::Malformed("Ogg stream without audio"))?;
    Ok(granule.saturating_sub(pre_skip).saturating_mul(1000) / 48_000)
}

/// One MP3 (MPEG audio layer III) frame header: (frame length in bytes, samples, sample rate).
fn mp3_frame(b: &[u8]) -> Option<(usize, u64, u32)> {
    let h = b.get(..4)?;
    if h[0] != 0xFF || h[1] & 0xE0 != 0xE0 {
        return None;
    }
    let version = (h[1] >> 3) & 3; // 0: MPEG 2.5, 1: reserved, 2: MPEG 2, 3: MPEG 1
    let layer = (h[1] >> 1) & 3; // 1: layer III
    if version == 1 || layer != 1 {
        return None;
    }
    let bitrate_index = (h[2] >> 4) as usize;
    let rate_index = ((h[2] >> 2) & 3) as usize;
    let padding = u64::from((h[2] >> 1) & 1);
    // Free-format (0) and the invalid index 15 are refused.
    if bitrate_index == 0 || bitrate_index == 15 || rate_index == 3 {
        return None;
    }
    const V1: [u64; 15] = [
        0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ];
    const V2: [u64; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
    let base_rate = [44_100u32, 48_000, 32_000][rate_index];
    let (kbps, rate, samples, factor) = match version {
        3 => (V1[bitrate_index], base_rate, 1152, 144),
        2 => (V2[bitrate_index], base_rate / 2, 576, 72),
        _ => (V2[bitrate_index], base_rate / 4, 576, 72),
    };
    let len = factor * kbps * 1000 / u64::from(rate) + padding;
    Some((len as usize, samples, rate))
}

/// MP3: an optional ID3v2 tag, then layer III frames back to back, each header giving its
/// length and sample count; after the last frame only an ID3v1 or APE tag may follow. A final
/// frame cut short is tolerated (common in trimmed files) and not counted.
fn mp3_duration_ms(b: &[u8]) -> Result<u64, SoundError> {
    const BAD: SoundError = SoundError::Malformed("broken MP3 frames");
    let mut at = 0usize;
    if b.starts_with(b"ID3") {
        let size = b.get(6..10).ok_or(BAD)?;
        if size.iter().any(|&x| x & 0x80 != 0) {
            return Err(SoundError::Malformed("broken ID3 tag"));
        }
        // Syncsafe: 7 bits per byte.
        let len = size.iter().fold(0usize, |acc, &x| (acc << 7) | x as usize);
        let footer = if b.get(5).is_some_and(|f| f & 0x10 != 0) {
            10
        } else {
            0
        };
        at = 10 + len + footer;
    }
    let mut samples = 0u64;
    let mut rate = None;
    while at < b.len() {
        let rest = &b[at..];
        let Some((len, n, r)) = mp3_frame(rest) else {
            if rest.starts_with(b"TAG") || rest.starts_with(b"APETAGEX") {
                break;
            }
            return Err(BAD);
        };
        if *rate.get_or_insert(r) != r {
            return Err(SoundError::Malformed("MP3 sample rate changes midway"));
        }
        if len > rest.len() {
            break;
        }
        samples += n;
        at += len.max(4);
    }
    let rate = rate.ok_or(SoundError::Malformed("MP3 without frames"))?;
    Ok(samples * 1000 / u64::from(rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mono 16-bit PCM WAV of `ms` milliseconds of silence at `rate` Hz.
    pub(crate) fn wav(ms: u32, rate: u32) -> Vec<u8> {
        let data = (rate as usize * ms as usize / 1000) * 2;
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data as u32).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * 2).to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&16u16.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data as u32).to_le_bytes());
        v.resize(v.len() + data, 0);
        v
    }

    fn ogg_page(serial: u32, granule: u64, body: &[u8]) -> Vec<u8> {
        let mut v = b"OggS\0\0".to_vec();
        v.extend_from_slice(&granule.to_le_bytes());
        v.extend_from_slice(&serial.to_le_bytes());
        v.extend_from_slice(&[0; 8]); // sequence, checksum
        let mut table = vec![255u8; body.len() / 255];
        table.push((body.len() % 255) as u8);
        v.push(table.len() as u8);
        v.extend_from_slice(&table);
        v.extend_from_slice(body);
        v
    }

    fn opus(granule: u64) -> Vec<u8> {
        let mut head = b"OpusHead\x01\x01".to_vec();
        head.extend_from_slice(&312u16.to_le_bytes());
        head.extend_from_slice(&48_000u32.to_le_bytes());
        head.extend_from_slice(&[0, 0, 0]);
        let mut v = ogg_page(7, 0, &head);
        v.extend(ogg_page(7, 0, b"OpusTags\0\0\0\0\0\0\0\0"));
        v.extend(ogg_page(7, granule, &[0xF8, 0xFF, 0xFE]));
        v
    }

    fn mp3(frames: usize) -> Vec<u8> {
        // MPEG 1 layer III, 128 kbit/s, 44.1 kHz, no padding: 417-byte frames of 1152 samples.
        let mut frame = vec![0xFF, 0xFB, 0x90, 0x00];
        frame.resize(417, 0);
        let mut v = b"ID3\x04\0\0\0\0\0\x05hello".to_vec();
        for _ in 0..frames {
            v.extend_from_slice(&frame);
        }
        v.extend_from_slice(b"TAG");
        v.resize(v.len() + 125, 0);
        v
    }

    #[test]
    fn reads_each_container_and_its_duration() {
        let w = inspect(&wav(1500, 48_000)).unwrap();
        assert_eq!((w.kind, w.duration_ms), (SoundKind::Wav, 1500));
        let o = inspect(&opus(312 + 48_000 * 2)).unwrap();
        assert_eq!((o.kind, o.duration_ms), (SoundKind::OggOpus, 2000));
        let m = inspect(&mp3(100)).unwrap();
        assert_eq!(m.kind, SoundKind::Mp3);
        assert_eq!(m.duration_ms, 100 * 1152 * 1000 / 44_100);
    }

    #[test]
    fn refuses_long_empty_foreign_and_broken_sounds() {
        assert_eq!(inspect(&wav(5_300, 8_000)), Err(SoundError::TooLong(5_300)));
        assert!(inspect(&wav(5_200, 8_000)).is_ok());
        assert_eq!(
            inspect(&opus(312 + 48_000 * 6)),
            Err(SoundError::TooLong(6_000))
        );
        assert_eq!(inspect(&mp3(200)), Err(SoundError::TooLong(5_224)));
        assert_eq!(inspect(b""), Err(SoundError::Empty));
        assert_eq!(inspect(&vec![0; MAX_BYTES + 1]), Err(SoundError::TooLarge));
        assert_eq!(inspect(b"<html>hello</html>"), Err(SoundError::Unsupported));
        assert_eq!(inspect(b"\x89PNG\r\n\x1a\n"), Err(SoundError::Unsupported));
        // Cut short, or with its header damaged.
        let w = wav(1000, 8_000);
        assert!(matches!(inspect(&w[..200]), Err(SoundError::Malformed(_))));
        let o = opus(48_000);
        assert!(matches!(
            inspect(&o[..o.len() - 1]),
            Err(SoundError::Malformed(_))
        ));
        let mut m = mp3(10);
        m[15 + 417 * 3] = 0x00;
        assert!(matches!(inspect(&m), Err(SoundError::Malformed(_))));
        // Ogg, but Vorbis rather than Opus.
        let v = ogg_page(1, 0, b"\x01vorbis");
        assert_eq!(inspect(&v), Err(SoundError::Unsupported));
    }

    #[test]
    fn never_panics_on_truncations_and_bit_flips() {
        for sample in [wav(300, 8_000), opus(48_000), mp3(5)] {
            for cut in 0..sample.len().min(600) {
                let _ = inspect(&sample[..cut]);
            }
            for i in 0..sample.len().min(600) {
                for bit in 0..8 {
                    let mut s = sample.clone();
                    s[i] ^= 1 << bit;
                    let _ = inspect(&s);
                }
            }
        }
    }
}
