use super::*;
use image::{DynamicImage, RgbImage};
use std::io::Cursor;

const SECRET: &[u8] = b"GPSLatitude 48.8584N 2.2945E SerialNumber X100-SECRET";

fn encoded(format: image::ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_fn(32, 16, |x, y| {
        image::Rgb([(x * 8) as u8, (y * 16) as u8, 200])
    });
    let mut out = Vec::new();
    DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut out), format)
        .unwrap();
    out
}

/// A little-endian EXIF APP1 segment with orientation 6 and the secret as a maker note.
fn exif_app1(orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II\x2a\0\x08\0\0\0");
    tiff.extend_from_slice(&2u16.to_le_bytes());
    // Orientation, SHORT, 1.
    tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0]);
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]);
    // MakerNote, UNDEFINED, pointing after the IFD.
    tiff.extend_from_slice(&[0x7C, 0x92, 7, 0]);
    tiff.extend_from_slice(&(SECRET.len() as u32).to_le_bytes());
    tiff.extend_from_slice(&(8 + 2 + 24 + 4u32).to_le_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0]);
    tiff.extend_from_slice(SECRET);
    let mut seg = vec![0xFF, 0xE1];
    let len = (2 + 6 + tiff.len()) as u16;
    seg.extend_from_slice(&len.to_be_bytes());
    seg.extend_from_slice(b"Exif\0\0");
    seg.extend_from_slice(&tiff);
    seg
}

fn jpeg_with_metadata() -> Vec<u8> {
    let plain = encoded(image::ImageFormat::Jpeg);
    let mut out = plain[..2].to_vec();
    out.extend_from_slice(&exif_app1(6));
    // A comment and an XMP-style APP1 are dropped too.
    let mut com = vec![0xFF, 0xFE];
    com.extend_from_slice(&((SECRET.len() + 2) as u16).to_be_bytes());
    com.extend_from_slice(SECRET);
    out.extend_from_slice(&com);
    out.extend_from_slice(&plain[2..]);
    out
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    c.extend_from_slice(kind);
    c.extend_from_slice(data);
    c.extend_from_slice(&[0, 0, 0, 0]); // CRC is not checked by the scrubber
    c
}

fn png_with_metadata() -> Vec<u8> {
    let plain = encoded(image::ImageFormat::Png);
    // After the signature and IHDR (8 + 25 bytes).
    let mut out = plain[..33].to_vec();
    out.extend_from_slice(&png_chunk(b"tEXt", &[b"Location\0", SECRET].concat()));
    out.extend_from_slice(&png_chunk(b"eXIf", SECRET));
    out.extend_from_slice(&plain[33..]);
    out.extend_from_slice(b"PK\x03\x04 a zip behind the image ");
    out.extend_from_slice(SECRET);
    out
}

fn webp_with_metadata() -> Vec<u8> {
    let plain = encoded(image::ImageFormat::WebP);
    // Extended format: VP8X (EXIF flag), the image chunk, then EXIF.
    let image_chunk = &plain[12..];
    let mut body = b"WEBP".to_vec();
    body.extend_from_slice(b"VP8X");
    body.extend_from_slice(&10u32.to_le_bytes());
    body.extend_from_slice(&[0x08, 0, 0, 0, 31, 0, 0, 15, 0, 0]);
    body.extend_from_slice(image_chunk);
    body.extend_from_slice(b"EXIF");
    body.extend_from_slice(&(SECRET.len() as u32).to_le_bytes());
    body.extend_from_slice(SECRET);
    if SECRET.len() % 2 == 1 {
        body.push(0);
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(b"trailing ");
    out.extend_from_slice(SECRET);
    out
}

fn scrub_in_chunks(content_type: &str, input: &[u8], chunk: usize) -> (Vec<u8>, Option<u16>) {
    let mut s = Scrubber::for_content_type(content_type);
    let mut out = Vec::new();
    for c in input.chunks(chunk) {
        s.push(c, &mut out).unwrap();
    }
    s.finish().unwrap();
    (out, s.orientation())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn jpeg_loses_its_exif_and_comments_but_keeps_pixels_and_orientation() {
    let input = jpeg_with_metadata();
    assert!(contains(&input, SECRET));
    let (whole, orientation) = scrub_in_chunks("image/jpeg", &input, input.len());
    assert!(!contains(&whole, SECRET));
    assert_eq!(orientation, Some(6));
    assert_eq!(exif_orientation(&whole[6..whole.len().min(40)]), Some(6));
    let before = image::load_from_memory(&input).unwrap().to_rgb8();
    let after = image::load_from_memory(&whole).unwrap().to_rgb8();
    assert_eq!(before, after);
    for chunk in [1, 2, 3, 7, 64, 1000] {
        assert_eq!(
            scrub_in_chunks("image/jpeg", &input, chunk).0,
            whole,
            "chunk {chunk}"
        );
    }
}

#[test]
fn an_upright_jpeg_keeps_no_exif_at_all() {
    let plain = encoded(image::ImageFormat::Jpeg);
    let mut input = plain[..2].to_vec();
    input.extend_from_slice(&exif_app1(1));
    input.extend_from_slice(&plain[2..]);
    let (out, orientation) = scrub_in_chunks("image/jpeg", &input, 5);
    assert_eq!(orientation, Some(1));
    assert!(!contains(&out, b"Exif"));
    assert_eq!(out, plain);
}

#[test]
fn png_loses_text_exif_and_anything_after_the_end() {
    let input = png_with_metadata();
    let (whole, _) = scrub_in_chunks("image/png", &input, input.len());
    assert!(!contains(&whole, SECRET));
    assert!(!contains(&whole, b"PK\x03\x04"));
    assert_eq!(whole, encoded(image::ImageFormat::Png));
    for chunk in [1, 3, 8, 13, 100] {
        assert_eq!(
            scrub_in_chunks("image/png", &input, chunk).0,
            whole,
            "chunk {chunk}"
        );
    }
}

#[test]
fn webp_exif_is_blanked_and_its_flag_cleared() {
    let input = webp_with_metadata();
    let (whole, _) = scrub_in_chunks("image/webp", &input, input.len());
    assert!(!contains(&whole, SECRET));
    assert!(!contains(&whole, b"EXIF"));
    assert_eq!(whole[20] & 0x0C, 0, "VP8X flags");
    // Same length as the RIFF says, still a decodable picture.
    let riff = u32::from_le_bytes([whole[4], whole[5], whole[6], whole[7]]) as usize;
    assert_eq!(whole.len(), riff + 8);
    let decoded = image::load_from_memory(&whole).unwrap().to_rgb8();
    assert_eq!(decoded.dimensions(), (32, 16));
    for chunk in [1, 4, 9, 77] {
        assert_eq!(
            scrub_in_chunks("image/webp", &input, chunk).0,
            whole,
            "chunk {chunk}"
        );
    }
}

#[test]
fn other_types_pass_through_unchanged() {
    let (out, _) = scrub_in_chunks("application/octet-stream", SECRET, 3);
    assert_eq!(out, SECRET);
    let gif = encoded(image::ImageFormat::Gif);
    assert_eq!(scrub_in_chunks("image/gif", &gif, 10).0, gif);
}

#[test]
fn truncated_or_broken_images_are_refused() {
    let input = jpeg_with_metadata();
    let mut s = Scrubber::for_content_type("image/jpeg");
    let mut out = Vec::new();
    s.push(&input[..20], &mut out).unwrap();
    assert!(s.finish().is_err(), "cut inside the EXIF segment");

    let mut s = Scrubber::for_content_type("image/jpeg");
    assert!(s.push(b"\xFF\xD8\x00\x01", &mut Vec::new()).is_err());
    let mut s = Scrubber::for_content_type("image/png");
    assert!(s.push(b"\x89PNG\r\n\x1a\x0b", &mut Vec::new()).is_err());
    let mut s = Scrubber::for_content_type("image/webp");
    assert!(s
        .push(b"RIFF\x10\0\0\0WEBPVP8 \xff\xff\xff\x00", &mut Vec::new())
        .is_err());
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        kind in 0..3usize,
        body in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
        chunk in 1..64usize,
    ) {
        let (ct, prefix): (&str, &[u8]) = match kind {
            0 => ("image/jpeg", b"\xFF\xD8"),
            1 => ("image/png", PNG_SIGNATURE),
            _ => ("image/webp", b"RIFF\x40\0\0\0WEBP"),
        };
        let input = [prefix, &body].concat();
        let mut s = Scrubber::for_content_type(ct);
        let mut out = Vec::new();
        for c in input.chunks(chunk) {
            if s.push(c, &mut out).is_err() {
                break;
            }
        }
        let _ = s.finish();
        // Nothing is ever added beyond the input except the tiny EXIF orientation block and
        // the PNG end marker.
        proptest::prop_assert!(out.len() <= input.len() + 40);
    }
}
