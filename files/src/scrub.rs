//! Removes metadata (GPS location, camera serials, comments, embedded thumbnails) from images
//! while they stream to the store, so an upload is never held whole in memory.
//!
//! Written here because the crates that edit image metadata (img-parts, kamadak-exif, …) work on
//! a whole file in memory. JPEG, PNG and WebP are walked segment by segment:
//! - JPEG: APP1 (EXIF, XMP), APP3–APP13, APP15 and comments are dropped; JFIF (APP0), the ICC
//!   colour profile (APP2) and Adobe's colour transform (APP14) stay because they change how the
//!   pixels look. The EXIF orientation is kept, rewritten as a minimal EXIF block holding only
//!   that tag, so phone photos still display upright.
//! - PNG: `eXIf`, `tEXt`, `zTXt`, `iTXt` and `tIME` chunks are dropped, and so is anything after
//!   `IEND` (no files smuggled behind an image).
//! - WebP: `EXIF` and `XMP ` chunks become zero-filled `JUNK` chunks of the same size (the RIFF
//!   length at the start of the file cannot change once sent) and their VP8X flags are cleared;
//!   anything after the RIFF length is dropped.
//!
//! GIF carries no location metadata and other types pass through unchanged.

/// Why an image could not be scrubbed (it is malformed: the upload is refused).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the image is malformed: {0}")]
pub struct ScrubError(pub &'static str);

/// A streaming metadata filter for one file: feed every chunk to [`Scrubber::push`], then call
/// [`Scrubber::finish`].
pub struct Scrubber {
    format: Format,
    /// Header bytes collected across chunk boundaries (at most one segment header, or one EXIF
    /// segment of up to 64 KiB for JPEG).
    held: Vec<u8>,
    /// The EXIF orientation (1–8) found in the file, if any.
    orientation: Option<u16>,
    /// WebP: bytes of the RIFF payload not yet walked; what follows it is dropped.
    riff_left: usize,
}

enum Format {
    Pass,
    Jpeg(Jpeg),
    Png(Png),
    Webp(Webp),
}

enum Jpeg {
    Start,
    Marker,
    /// Inside a segment: `remaining` payload bytes, copied or skipped.
    Segment {
        keep: bool,
        remaining: usize,
    },
    /// Collecting an APP1 segment of `len` payload bytes to read its orientation.
    App1 {
        len: usize,
    },
    /// After the first start-of-scan everything is compressed data and later scans: copied.
    Scan,
}

enum Png {
    Signature,
    ChunkHeader,
    Body {
        keep: bool,
        remaining: usize,
    },
    /// After IEND: dropped.
    Trailer,
}

enum Webp {
    Header,
    ChunkHeader,
    Body {
        zero: bool,
        remaining: usize,
        vp8x_flags: bool,
    },
    Trailer,
}

const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

impl Scrubber {
    /// A scrubber for a file of the given (sniffed) content type.
    pub fn for_content_type(content_type: &str) -> Self {
        let format = match content_type {
            "image/jpeg" => Format::Jpeg(Jpeg::Start),
            "image/png" => Format::Png(Png::Signature),
            "image/webp" => Format::Webp(Webp::Header),
            _ => Format::Pass,
        };
        Scrubber {
            format,
            held: Vec::new(),
            orientation: None,
            riff_left: 0,
        }
    }

    /// The EXIF orientation seen so far (JPEG only), 1–8.
    pub fn orientation(&self) -> Option<u16> {
        self.orientation
    }

    /// Filters `input`, appending what is kept to `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), ScrubError> {
        while !input.is_empty() {
            input = match &mut self.format {
                Format::Pass => {
                    out.extend_from_slice(input);
                    &[]
                }
                Format::Jpeg(_) => self.jpeg(input, out)?,
                Format::Png(_) => self.png(input, out)?,
                Format::Webp(_) => self.webp(input, out)?,
            };
        }
        Ok(())
    }

    /// Ends the file: an image cut off inside a header is malformed.
    pub fn finish(&mut self) -> Result<(), ScrubError> {
        let complete = match &self.format {
            Format::Pass => true,
            Format::Jpeg(s) => matches!(s, Jpeg::Scan),
            Format::Png(s) => matches!(s, Png::Trailer),
            Format::Webp(s) => matches!(s, Webp::Trailer),
        };
        if complete {
            Ok(())
        } else {
            Err(ScrubError("the file ends early"))
        }
    }

    /// Moves bytes from `input` into `held` until it holds `n`; returns the rest of `input` and
    /// whether `held` is complete.
    fn hold<'a>(&mut self, input: &'a [u8], n: usize) -> (&'a [u8], bool) {
        let take = n.saturating_sub(self.held.len()).min(input.len());
        self.held.extend_from_slice(&input[..take]);
        (&input[take..], self.held.len() >= n)
    }

    fn jpeg<'a>(&mut self, input: &'a [u8], out: &mut Vec<u8>) -> Result<&'a [u8], ScrubError> {
        let Format::Jpeg(state) = &mut self.format else {
            unreachable!("called for JPEG only")
        };
        match state {
            Jpeg::Start => {
                let (rest, full) = self.hold(input, 2);
                if full {
                    if self.held[..] != [0xFF, 0xD8] {
                        return Err(ScrubError("no JPEG start marker"));
                    }
                    out.extend_from_slice(&self.held);
                    self.held.clear();
                    self.format = Format::Jpeg(Jpeg::Marker);
                }
                Ok(rest)
            }
            Jpeg::Marker => {
                // Fill bytes (0xFF repeated) may precede a marker code.
                let mut input = input;
                if self.held.is_empty() || self.held == [0xFF] {
                    while let [0xFF, rest @ ..] = input {
                        self.held.clear();
                        self.held.push(0xFF);
                        input = rest;
                    }
                    if self.held.is_empty() {
                        return match input.first() {
                            Some(_) => {
                                Err(ScrubError("a JPEG segment does not start with a marker"))
                            }
                            None => Ok(input),
                        };
                    }
                    let Some((&code, rest)) = input.split_first() else {
                        return Ok(input);
                    };
                    self.held.push(code);
                    input = rest;
                    if matches!(code, 0x01 | 0xD0..=0xD8) {
                        out.extend_from_slice(&self.held);
                        self.held.clear();
                        return Ok(input);
                    }
                    if code == 0xD9 {
                        out.extend_from_slice(&self.held);
                        self.held.clear();
                        self.format = Format::Jpeg(Jpeg::Scan);
                        return Ok(input);
                    }
                }
                let (rest, full) = self.hold(input, 4);
                if !full {
                    return Ok(rest);
                }
                let code = self.held[1];
                let len = u16::from_be_bytes([self.held[2], self.held[3]]) as usize;
                if len < 2 {
                    return Err(ScrubError("a JPEG segment length is too short"));
                }
                let payload = len - 2;
                let next = match code {
                    0xDA => {
                        out.extend_from_slice(&self.held);
                        Jpeg::Scan
                    }
                    0xE1 => Jpeg::App1 { len: payload },
                    0xE3..=0xED | 0xEF | 0xFE => Jpeg::Segment {
                        keep: false,
                        remaining: payload,
                    },
                    _ => {
                        out.extend_from_slice(&self.held);
                        Jpeg::Segment {
                            keep: true,
                            remaining: payload,
                        }
                    }
                };
                self.held.clear();
                self.format = Format::Jpeg(next);
                Ok(rest)
            }
            Jpeg::Segment { keep, remaining } => {
                let n = (*remaining).min(input.len());
                if *keep {
                    out.extend_from_slice(&input[..n]);
                }
                *remaining -= n;
                if *remaining == 0 {
                    self.format = Format::Jpeg(Jpeg::Marker);
                }
                Ok(&input[n..])
            }
            Jpeg::App1 { len } => {
                let len = *len;
                let (rest, full) = self.hold(input, len);
                if full {
                    if let Some(o) = exif_orientation(&self.held) {
                        if self.orientation.is_none() {
                            self.orientation = Some(o);
                            if o != 1 {
                                out.extend_from_slice(&minimal_exif(o));
                            }
                        }
                    }
                    self.held.clear();
                    self.format = Format::Jpeg(Jpeg::Marker);
                }
                Ok(rest)
            }
            Jpeg::Scan => {
                out.extend_from_slice(input);
                Ok(&[])
            }
        }
    }

    fn png<'a>(&mut self, input: &'a [u8], out: &mut Vec<u8>) -> Result<&'a [u8], ScrubError> {
        let Format::Png(state) = &mut self.format else {
            unreachable!("called for PNG only")
        };
        match state {
            Png::Signature => {
                let (rest, full) = self.hold(input, 8);
                if full {
                    if self.held[..] != PNG_SIGNATURE[..] {
                        return Err(ScrubError("no PNG signature"));
                    }
                    out.extend_from_slice(&self.held);
                    self.held.clear();
                    self.format = Format::Png(Png::ChunkHeader);
                }
                Ok(rest)
            }
            Png::ChunkHeader => {
                let (rest, full) = self.hold(input, 8);
                if !full {
                    return Ok(rest);
                }
                let len =
                    u32::from_be_bytes([self.held[0], self.held[1], self.held[2], self.held[3]]);
                if len > 0x7FFF_FFFF {
                    return Err(ScrubError("a PNG chunk is too long"));
                }
                let kind: [u8; 4] = [self.held[4], self.held[5], self.held[6], self.held[7]];
                let keep = !matches!(&kind, b"eXIf" | b"tEXt" | b"zTXt" | b"iTXt" | b"tIME");
                if keep {
                    out.extend_from_slice(&self.held);
                }
                self.held.clear();
                let remaining = len as usize + 4;
                self.format = Format::Png(if &kind == b"IEND" {
                    // Its CRC is kept; nothing after it is.
                    out.extend_from_slice(&[0xAE, 0x42, 0x60, 0x82]);
                    Png::Trailer
                } else {
                    Png::Body { keep, remaining }
                });
                Ok(rest)
            }
            Png::Body { keep, remaining } => {
                let n = (*remaining).min(input.len());
                if *keep {
                    out.extend_from_slice(&input[..n]);
                }
                *remaining -= n;
                if *remaining == 0 {
                    self.format = Format::Png(Png::ChunkHeader);
                }
                Ok(&input[n..])
            }
            Png::Trailer => Ok(&[]),
        }
    }

    fn webp<'a>(&mut self, input: &'a [u8], out: &mut Vec<u8>) -> Result<&'a [u8], ScrubError> {
        let Format::Webp(state) = &mut self.format else {
            unreachable!("called for WebP only")
        };
        match state {
            Webp::Header => {
                let (rest, full) = self.hold(input, 12);
                if full {
                    if &self.held[..4] != b"RIFF" || &self.held[8..12] != b"WEBP" {
                        return Err(ScrubError("no WebP header"));
                    }
                    let size = u32::from_le_bytes([
                        self.held[4],
                        self.held[5],
                        self.held[6],
                        self.held[7],
                    ]) as usize;
                    // The size counts "WEBP" and the chunks.
                    self.riff_left = size.saturating_sub(4);
                    out.extend_from_slice(&self.held);
                    self.held.clear();
                    self.format = Format::Webp(if self.riff_left == 0 {
                        Webp::Trailer
                    } else {
                        Webp::ChunkHeader
                    });
                }
                Ok(rest)
            }
            Webp::ChunkHeader => {
                let (rest, full) = self.hold(input, 8);
                if !full {
                    return Ok(rest);
                }
                let size =
                    u32::from_le_bytes([self.held[4], self.held[5], self.held[6], self.held[7]])
                        as usize;
                let padded = size + (size & 1);
                if padded + 8 > self.riff_left {
                    return Err(ScrubError("a WebP chunk overruns the file"));
                }
                self.riff_left -= padded + 8;
                let zero = matches!(&self.held[..4], b"EXIF" | b"XMP ");
                if zero {
                    self.held[..4].copy_from_slice(b"JUNK");
                }
                let vp8x_flags = &self.held[..4] == b"VP8X";
                out.extend_from_slice(&self.held);
                self.held.clear();
                self.format = Format::Webp(Webp::Body {
                    zero,
                    remaining: padded,
                    vp8x_flags,
                });
                Ok(rest)
            }
            Webp::Body {
                zero,
                remaining,
                vp8x_flags,
            } => {
                let n = (*remaining).min(input.len());
                if *zero {
                    out.resize(out.len() + n, 0);
                } else {
                    let start = out.len();
                    out.extend_from_slice(&input[..n]);
                    if *vp8x_flags && n > 0 {
                        // The first payload byte of VP8X: bit 3 = EXIF, bit 2 = XMP present.
                        out[start] &= !0x0C;
                        *vp8x_flags = false;
                    }
                }
                *remaining -= n;
                if *remaining == 0 {
                    self.format = Format::Webp(if self.riff_left == 0 {
                        Webp::Trailer
                    } else {
                        Webp::ChunkHeader
                    });
                }
                Ok(&input[n..])
            }
            Webp::Trailer => Ok(&[]),
        }
    }
}

/// The orientation tag (0x0112) of IFD0 in an APP1 payload (`Exif\0\0` + TIFF).
fn exif_orientation(app1: &[u8]) -> Option<u16> {
    let tiff = app1.strip_prefix(b"Exif\0\0")?;
    let big = match tiff.get(..2)? {
        b"MM" => true,
        b"II" => false,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b = tiff.get(at..at + 2)?;
        Some(if big {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b = tiff.get(at..at + 4)?;
        Some(if big {
            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
        } else {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        })
    };
    let ifd = u32_at(4)? as usize;
    let count = u16_at(ifd)? as usize;
    (0..count.min(512)).find_map(|i| {
        let entry = ifd + 2 + i * 12;
        (u16_at(entry)? == 0x0112 && u16_at(entry + 2)? == 3)
            .then(|| u16_at(entry + 8))
            .flatten()
            .filter(|o| (1..=8).contains(o))
    })
}

/// An APP1 segment whose EXIF holds only the orientation.
fn minimal_exif(orientation: u16) -> [u8; 36] {
    let mut s = [0u8; 36];
    s[..4].copy_from_slice(&[0xFF, 0xE1, 0x00, 34]);
    s[4..10].copy_from_slice(b"Exif\0\0");
    // Big-endian TIFF, IFD0 at offset 8 with one entry: orientation, SHORT, count 1.
    s[10..18].copy_from_slice(&[b'M', b'M', 0, 0x2A, 0, 0, 0, 8]);
    s[18..20].copy_from_slice(&[0, 1]);
    s[20..32].copy_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, orientation as u8, 0, 0]);
    // s[32..36]: no next IFD.
    s
}

#[cfg(test)]
mod tests;
