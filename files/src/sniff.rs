//! What a file is, from its first bytes. The client's declared type is never trusted: a file is
//! shown inline only when its bytes are one of a short list of media types browsers render
//! without running anything (no SVG, no HTML, no PDF); everything else is a download.

/// How many leading bytes [`sniff`] looks at (enough for every signature it knows).
pub const SNIFF_LEN: usize = 8192;

/// The broad class a client renders a file as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Image,
    Video,
    Audio,
    /// Anything else: served only as a download.
    Other,
}

/// The result of sniffing: the canonical MIME type and whether it may be served inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sniffed {
    pub content_type: &'static str,
    pub kind: FileKind,
}

impl Sniffed {
    /// Served with its own type and `inline`; everything else is `attachment` +
    /// `application/octet-stream`.
    pub fn inline(&self) -> bool {
        self.kind != FileKind::Other
    }

    /// The kind of a stored content type (as [`sniff`] produced it).
    pub fn from_stored(content_type: &str) -> Sniffed {
        SAFE.iter()
            .find(|(ct, _)| *ct == content_type)
            .map(|&(content_type, kind)| Sniffed { content_type, kind })
            .unwrap_or(OTHER)
    }
}

const OTHER: Sniffed = Sniffed {
    content_type: "application/octet-stream",
    kind: FileKind::Other,
};

/// The media types shown inline, by canonical name. Raster images, and audio/video containers
/// Chromium and Firefox play natively.
const SAFE: &[(&str, FileKind)] = &[
    ("image/png", FileKind::Image),
    ("image/jpeg", FileKind::Image),
    ("image/gif", FileKind::Image),
    ("image/webp", FileKind::Image),
    ("video/mp4", FileKind::Video),
    ("video/webm", FileKind::Video),
    ("audio/mpeg", FileKind::Audio),
    ("audio/ogg", FileKind::Audio),
    ("audio/wav", FileKind::Audio),
    ("audio/flac", FileKind::Audio),
    ("audio/mp4", FileKind::Audio),
];

/// Sniffs `head` (the first up to [`SNIFF_LEN`] bytes of a file).
pub fn sniff(head: &[u8]) -> Sniffed {
    let Some(found) = infer::get(head) else {
        return OTHER;
    };
    // infer's names vary between aliases; map each to the one name stored and served.
    let canonical = match found.mime_type() {
        "image/png" => "image/png",
        "image/jpeg" => "image/jpeg",
        "image/gif" => "image/gif",
        "image/webp" => "image/webp",
        "video/mp4" => "video/mp4",
        "video/webm" => "video/webm",
        "audio/mpeg" => "audio/mpeg",
        "audio/ogg" | "audio/opus" => "audio/ogg",
        "audio/x-wav" | "audio/wav" => "audio/wav",
        "audio/x-flac" | "audio/flac" => "audio/flac",
        "audio/m4a" | "audio/mp4" | "audio/x-m4a" => "audio/mp4",
        _ => return OTHER,
    };
    Sniffed::from_stored(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_audio_and_video_are_recognised_from_their_bytes() {
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").content_type,
            "image/png"
        );
        assert_eq!(
            sniff(b"\xff\xd8\xff\xe0\0\x10JFIF\0").content_type,
            "image/jpeg"
        );
        assert_eq!(sniff(b"GIF89a\x01\0\x01\0").content_type, "image/gif");
        assert_eq!(sniff(b"RIFF\x24\0\0\0WEBPVP8 ").content_type, "image/webp");
        assert_eq!(sniff(b"RIFF\x24\0\0\0WAVEfmt ").content_type, "audio/wav");
        assert_eq!(sniff(b"OggS\0\x02\0\0\0\0\0\0\0\0").kind, FileKind::Audio);
        // WebM is recognised from its EBML header once 256 bytes are in.
        let mut webm = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm".to_vec();
        webm.resize(300, 0);
        assert_eq!(sniff(&webm).content_type, "video/webm");
    }

    #[test]
    fn markup_and_executables_are_downloads_whatever_they_claim() {
        for bytes in [
            &b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>"[..],
            b"<!DOCTYPE html><html><script>alert(1)</script>",
            b"%PDF-1.7\n",
            b"MZ\x90\0\x03\0\0\0",
            b"plain text",
            b"",
        ] {
            let s = sniff(bytes);
            assert_eq!(
                s.kind,
                FileKind::Other,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
            assert!(!s.inline());
            assert_eq!(s.content_type, "application/octet-stream");
        }
    }

    #[test]
    fn stored_types_map_back_and_unknown_ones_are_downloads() {
        assert_eq!(Sniffed::from_stored("image/png").kind, FileKind::Image);
        assert_eq!(Sniffed::from_stored("image/svg+xml").kind, FileKind::Other);
        assert_eq!(Sniffed::from_stored("text/html").kind, FileKind::Other);
    }
}
