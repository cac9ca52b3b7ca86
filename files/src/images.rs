//! Image dimensions and thumbnails.

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
use std::io::Cursor;

/// Thumbnails fit in this box (CSS pixels at 2× for the chat's 400×300 previews).
pub const THUMBNAIL_MAX: u32 = 800;
/// Images larger than this in either dimension are not decoded (decompression bombs); they are
/// still stored and downloadable.
pub const MAX_DECODE_SIDE: u32 = 16_384;
/// Memory a single decode may allocate.
pub const MAX_DECODE_ALLOC: u64 = 256 * 1024 * 1024;

/// Width and height from the first bytes of an image (header only, no decoding), as displayed:
/// swapped when the EXIF orientation turns the picture by 90°.
pub fn dimensions(head: &[u8], orientation: Option<u16>) -> Option<(u32, u32)> {
    let size = imagesize::blob_size(head).ok()?;
    let (w, h) = (
        u32::try_from(size.width).ok()?,
        u32::try_from(size.height).ok()?,
    );
    if w == 0 || h == 0 {
        return None;
    }
    Some(if matches!(orientation, Some(5..=8)) {
        (h, w)
    } else {
        (w, h)
    })
}

/// A made thumbnail: encoded bytes, their type and the displayed size of the full image.
#[derive(Debug)]
pub struct Thumbnail {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
    pub source_width: u32,
    pub source_height: u32,
}

/// Why no thumbnail could be made.
#[derive(Debug, thiserror::Error)]
pub enum ThumbnailError {
    #[error("image too large to decode ({0}×{1})")]
    TooLarge(u32, u32),
    #[error("image could not be decoded: {0}")]
    Decode(#[from] image::ImageError),
}

/// A decoder for `bytes` that refuses images past the decompression-bomb limits.
fn limited_decoder(bytes: &[u8]) -> Result<impl ImageDecoder + '_, image::ImageError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(image::ImageError::IoError)?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DECODE_SIDE);
    limits.max_image_height = Some(MAX_DECODE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    reader.into_decoder()
}

/// Decodes `bytes` under the bomb limits, applies the EXIF orientation and scales it to fit
/// [`THUMBNAIL_MAX`] (never up). JPEG for opaque images, PNG when there is transparency.
/// CPU-bound: call from a blocking worker.
pub fn thumbnail(bytes: &[u8]) -> Result<Thumbnail, ThumbnailError> {
    let mut decoder = limited_decoder(bytes)?;
    let (w, h) = decoder.dimensions();
    if w > MAX_DECODE_SIDE || h > MAX_DECODE_SIDE {
        return Err(ThumbnailError::TooLarge(w, h));
    }
    let orientation = decoder.orientation()?;
    let mut img = DynamicImage::from_decoder(decoder)?;
    img.apply_orientation(orientation);
    let (source_width, source_height) = (img.width(), img.height());
    let small = if source_width > THUMBNAIL_MAX || source_height > THUMBNAIL_MAX {
        img.thumbnail(THUMBNAIL_MAX, THUMBNAIL_MAX)
    } else {
        img
    };
    let mut bytes = Vec::new();
    let content_type = if small.color().has_alpha() {
        small.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)?;
        "image/png"
    } else {
        let rgb = DynamicImage::ImageRgb8(small.to_rgb8());
        let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 82);
        enc.encode_image(&rgb)?;
        "image/jpeg"
    };
    Ok(Thumbnail {
        width: small.width(),
        height: small.height(),
        bytes,
        content_type,
        source_width,
        source_height,
    })
}

/// A square avatar or icon: the centre square (or the given crop, in source pixels) scaled to
/// `side`×`side`, PNG (keeps transparency). CPU-bound.
pub fn square(
    bytes: &[u8],
    crop: Option<(u32, u32, u32)>,
    side: u32,
) -> Result<Vec<u8>, ThumbnailError> {
    let mut decoder = limited_decoder(bytes)?;
    let orientation = decoder.orientation()?;
    let mut img = DynamicImage::from_decoder(decoder)?;
    img.apply_orientation(orientation);
    let (w, h) = (img.width(), img.height());
    let (x, y, s) = match crop {
        Some((x, y, s)) if s > 0 && x.saturating_add(s) <= w && y.saturating_add(s) <= h => {
            (x, y, s)
        }
        _ => {
            let s = w.min(h);
            ((w - s) / 2, (h - s) / 2, s)
        }
    };
    let cropped = img.crop_imm(x, y, s, s);
    let scaled = if s > side {
        cropped.resize_exact(side, side, image::imageops::FilterType::Lanczos3)
    } else {
        cropped
    };
    let mut out = Vec::new();
    scaled.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)?;
    Ok(out)
}

/// A custom emoji or sticker image, ready to store.
#[derive(Debug)]
pub struct Expression {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub animated: bool,
    pub width: u32,
    pub height: u32,
}

/// Checks an emoji or sticker upload really is the image it claims and prepares it. A still
/// image (PNG, JPEG, WebP, or a GIF of one frame) is decoded, scaled to fit `max_side` (never
/// up) and re-encoded as PNG, which also drops any metadata. An animated GIF, APNG or WebP is
/// kept as uploaded (re-encoding animation is costly and lossy) once its first frames decode,
/// if it is at most `max_animated_side` on each side. CPU-bound: call from a blocking worker.
pub fn expression(
    bytes: &[u8],
    max_side: u32,
    max_animated_side: u32,
) -> Result<Expression, ThumbnailError> {
    use image::codecs::{gif::GifDecoder, png::PngDecoder, webp::WebPDecoder};
    use image::AnimationDecoder;
    // The header's size first, so nothing is decoded for a bomb.
    let (w, h) = dimensions(bytes, None).ok_or_else(|| {
        ThumbnailError::Decode(image::ImageError::Unsupported(
            image::error::UnsupportedError::from_format_and_kind(
                image::error::ImageFormatHint::Unknown,
                image::error::UnsupportedErrorKind::GenericFeature("not an image".into()),
            ),
        ))
    })?;
    if w > MAX_DECODE_SIDE || h > MAX_DECODE_SIDE {
        return Err(ThumbnailError::TooLarge(w, h));
    }
    let format = image::guess_format(bytes)?;
    let animated = match format {
        image::ImageFormat::Gif => {
            let mut frames = 0;
            for frame in GifDecoder::new(Cursor::new(bytes))?.into_frames().take(2) {
                frame?;
                frames += 1;
            }
            frames > 1
        }
        image::ImageFormat::Png => PngDecoder::new(Cursor::new(bytes))?.is_apng()?,
        image::ImageFormat::WebP => WebPDecoder::new(Cursor::new(bytes))?.has_animation(),
        _ => false,
    };
    if animated {
        if w > max_animated_side || h > max_animated_side {
            return Err(ThumbnailError::TooLarge(w, h));
        }
        let content_type = match format {
            image::ImageFormat::Png => {
                let first = PngDecoder::new(Cursor::new(bytes))?
                    .apng()?
                    .into_frames()
                    .next();
                first.transpose()?;
                "image/png"
            }
            image::ImageFormat::WebP => {
                let first = WebPDecoder::new(Cursor::new(bytes))?.into_frames().next();
                first.transpose()?;
                "image/webp"
            }
            _ => "image/gif",
        };
        return Ok(Expression {
            bytes: bytes.to_vec(),
            content_type,
            animated,
            width: w,
            height: h,
        });
    }
    let decoder = limited_decoder(bytes)?;
    let mut decoder = decoder;
    let orientation = decoder.orientation()?;
    let mut img = DynamicImage::from_decoder(decoder)?;
    img.apply_orientation(orientation);
    let img = if img.width() > max_side || img.height() > max_side {
        img.resize(max_side, max_side, image::imageops::FilterType::Lanczos3)
    } else {
        img
    };
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)?;
    Ok(Expression {
        bytes: out,
        content_type: "image/png",
        animated: false,
        width: img.width(),
        height: img.height(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        });
        let mut out = Vec::new();
        DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn dimensions_come_from_the_header_and_turn_with_the_orientation() {
        let bytes = png(1200, 300);
        assert_eq!(dimensions(&bytes[..64], None), Some((1200, 300)));
        assert_eq!(dimensions(&bytes[..64], Some(6)), Some((300, 1200)));
        assert_eq!(dimensions(b"not an image", None), None);
    }

    #[test]
    fn thumbnails_fit_the_box_and_keep_the_aspect_ratio() {
        let t = thumbnail(&png(1600, 400)).unwrap();
        assert_eq!((t.width, t.height), (800, 200));
        assert_eq!((t.source_width, t.source_height), (1600, 400));
        assert_eq!(t.content_type, "image/jpeg");
        let back = image::load_from_memory(&t.bytes).unwrap();
        assert_eq!((back.width(), back.height()), (800, 200));
        // Small images are not scaled up.
        let t = thumbnail(&png(100, 50)).unwrap();
        assert_eq!((t.width, t.height), (100, 50));
    }

    #[test]
    fn a_decompression_bomb_is_refused_without_allocating_it() {
        // A valid PNG header claiming 100 000 × 100 000 pixels.
        let mut bomb = png(1, 1);
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        // With a correct checksum, so only the size limits can refuse it.
        let crc = crc32(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            thumbnail(&bomb),
            Err(ThumbnailError::Decode(image::ImageError::Limits(_)))
        ));
        assert!(square(&bomb, None, 256).is_err());
    }

    #[test]
    fn squares_are_cropped_from_the_centre_or_where_asked() {
        let sq = image::load_from_memory(&square(&png(600, 300), None, 256).unwrap()).unwrap();
        assert_eq!((sq.width(), sq.height()), (256, 256));
        // Crop at x = 300: the red channel there starts at 300 % 256 = 44.
        let sq =
            image::load_from_memory(&square(&png(600, 300), Some((300, 0, 100)), 256).unwrap())
                .unwrap()
                .to_rgb8();
        assert_eq!(sq.dimensions(), (100, 100));
        assert_eq!(sq.get_pixel(0, 0)[0], 44);
        // A crop outside the image falls back to the centre.
        let sq = image::load_from_memory(&square(&png(600, 300), Some((550, 0, 100)), 64).unwrap())
            .unwrap();
        assert_eq!((sq.width(), sq.height()), (64, 64));
    }

    fn gif(frames: u16) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = image::codecs::gif::GifEncoder::new(&mut out);
            for i in 0..frames {
                let buf =
                    image::RgbaImage::from_pixel(40, 30, image::Rgba([i as u8 * 80, 0, 0, 255]));
                enc.encode_frame(image::Frame::new(buf)).unwrap();
            }
        }
        out
    }

    #[test]
    fn still_expressions_are_scaled_to_fit_and_become_png() {
        let e = expression(&png(512, 256), 128, 256).unwrap();
        assert_eq!((e.width, e.height, e.animated), (128, 64, false));
        assert_eq!(e.content_type, "image/png");
        let back = image::load_from_memory(&e.bytes).unwrap();
        assert_eq!((back.width(), back.height()), (128, 64));
        // A one-frame GIF is still.
        let e = expression(&gif(1), 128, 256).unwrap();
        assert!(!e.animated);
        assert_eq!(e.content_type, "image/png");
    }

    #[test]
    fn animated_gifs_are_kept_as_uploaded_within_the_size_limit() {
        let bytes = gif(3);
        let e = expression(&bytes, 128, 256).unwrap();
        assert!(e.animated);
        assert_eq!(e.content_type, "image/gif");
        assert_eq!(e.bytes, bytes);
        assert!(matches!(
            expression(&bytes, 16, 16),
            Err(ThumbnailError::TooLarge(40, 30))
        ));
    }

    #[test]
    fn broken_or_foreign_bytes_are_refused() {
        assert!(expression(b"GIF89a not really", 128, 256).is_err());
        let mut cut = png(64, 64);
        cut.truncate(80);
        assert!(expression(&cut, 128, 256).is_err());
        assert!(expression(b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>", 128, 256).is_err());
    }
}
