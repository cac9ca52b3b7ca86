//! Uploaded files: sniffing and the streaming metadata scrubber on any bytes, cut into any
//! chunks. Neither may panic; the scrubber's output never grows past its input by more than the
//! small EXIF orientation block and the PNG end marker, and the same input gives the same output
//! however it is chunked.
#![no_main]

use confab_files::scrub::Scrubber;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, u8, &[u8])| {
    let (kind, chunk, data) = input;
    let _ = confab_files::sniff(data);
    let content_type = ["image/jpeg", "image/png", "image/webp", "image/gif"][kind as usize % 4];
    let run = |size: usize| {
        let mut s = Scrubber::for_content_type(content_type);
        let mut out = Vec::new();
        for c in data.chunks(size.max(1)) {
            s.push(c, &mut out).ok()?;
        }
        s.finish().ok()?;
        Some(out)
    };
    let whole = run(data.len().max(1));
    let cut = run(chunk as usize);
    assert_eq!(whole, cut, "chunking changed the result");
    if let Some(out) = whole {
        assert!(out.len() <= data.len() + 40);
    }
});
