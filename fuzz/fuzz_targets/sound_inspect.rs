//! Soundboard uploads: the container sniffing and duration reading of any bytes. It must
//! never panic, and what it accepts must be within the limits and of a type it names.
#![no_main]

use confab_chat::soundboard::audio::{self, SoundError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match audio::inspect(data) {
        Ok(info) => {
            assert!(info.duration_ms > 0 && info.duration_ms <= audio::MAX_DURATION_MS);
            assert!(data.len() <= audio::MAX_BYTES);
            assert!(info.kind.content_type().starts_with("audio/"));
        }
        Err(SoundError::TooLong(ms)) => assert!(ms > u64::from(audio::MAX_DURATION_MS)),
        Err(e) => {
            // Every refusal explains itself.
            assert!(!e.to_string().is_empty());
        }
    }
});
