//! Preview images: the type is read from the bytes (the server's `Content-Type` is not
//! trusted), and only PNG, JPEG, GIF and WebP are kept, with their pixel size so clients can
//! reserve the space before the image loads.

/// Largest preview image kept, in bytes.
pub const MAX_BYTES: usize = 1024 * 1024;
/// Largest side, in pixels (a tiny file can claim a huge canvas).
pub const MAX_SIDE: usize = 16384;

/// A checked image.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

/// The image type of `bytes` from its signature, if it is one we serve.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Checks `bytes` as a preview image: a served type, a readable size within limits.
pub fn check(bytes: Vec<u8>) -> Option<Image> {
    if bytes.len() > MAX_BYTES {
        return None;
    }
    let content_type = sniff(&bytes)?;
    let size = imagesize::blob_size(&bytes).ok()?;
    if size.width == 0 || size.height == 0 || size.width > MAX_SIDE || size.height > MAX_SIDE {
        return None;
    }
    Some(Image {
        content_type,
        width: size.width as u32,
        height: size.height as u32,
        bytes,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid 1×1 PNG (a real image any browser decodes), width and height patched in.
    pub fn png(width: u32, height: u32) -> Vec<u8> {
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut out, b"IHDR", &ihdr);
        out
    }

    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&[0, 0, 0, 0]); // CRC: not checked by the size probe
    }

    #[test]
    fn sniffs_only_served_types() {
        assert_eq!(sniff(&png(1, 1)), Some("image/png"));
        assert_eq!(sniff(&[0xff, 0xd8, 0xff, 0xe0]), Some("image/jpeg"));
        assert_eq!(sniff(b"GIF89a...."), Some("image/gif"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"<svg xmlns='http://www.w3.org/2000/svg'/>"), None);
        assert_eq!(sniff(b"<html>"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn checks_sizes() {
        let img = check(png(640, 480)).unwrap();
        assert_eq!(
            (img.content_type, img.width, img.height),
            ("image/png", 640, 480)
        );
        assert!(check(png(0, 10)).is_none());
        assert!(check(png(100_000, 10)).is_none());
        assert!(
            check(b"\x89PNG\r\n\x1a\n".to_vec()).is_none(),
            "truncated header"
        );
        let mut big = png(10, 10);
        big.resize(MAX_BYTES + 1, 0);
        assert!(check(big).is_none());
    }
}
