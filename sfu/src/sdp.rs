//! Cheap checks on an untrusted SDP offer before str0m parses it.
//!
//! str0m's parser is the real validator; these checks bound the work and the
//! state a hostile offer can cause (size, m-line count) and give clear errors
//! for offers we cannot serve (no audio, no Opus) before any state changes.

use crate::SfuError;

/// Checks an offer's text. Returns the parsed str0m offer.
pub(crate) fn check_offer(
    sdp: &str,
    max_bytes: usize,
    max_m_lines: usize,
) -> Result<str0m::change::SdpOffer, SfuError> {
    if sdp.is_empty() {
        return Err(SfuError::InvalidSdp("empty offer".into()));
    }
    if sdp.len() > max_bytes {
        return Err(SfuError::InvalidSdp(format!(
            "offer is {} bytes, the limit is {max_bytes}",
            sdp.len()
        )));
    }
    if sdp
        .bytes()
        .any(|b| b == 0 || (b < 0x20 && b != b'\r' && b != b'\n' && b != b'\t'))
    {
        return Err(SfuError::InvalidSdp(
            "offer contains control characters".into(),
        ));
    }
    let mut m_lines = 0usize;
    let mut audio_lines = 0usize;
    let mut has_opus = false;
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("m=") {
            m_lines += 1;
            if m_lines > max_m_lines {
                return Err(SfuError::InvalidSdp(format!(
                    "offer has more than {max_m_lines} m-lines"
                )));
            }
            if rest.starts_with("audio ") {
                audio_lines += 1;
            }
        } else if let Some(rest) = line.strip_prefix("a=rtpmap:") {
            if rest.to_ascii_lowercase().contains(" opus/48000") {
                has_opus = true;
            }
        }
    }
    if !sdp.starts_with("v=0") {
        return Err(SfuError::InvalidSdp("offer does not start with v=0".into()));
    }
    if audio_lines == 0 {
        return Err(SfuError::InvalidSdp("offer has no audio m-line".into()));
    }
    if !has_opus {
        return Err(SfuError::InvalidSdp("offer does not support Opus".into()));
    }
    str0m::change::SdpOffer::from_sdp_string(sdp)
        .map_err(|e| SfuError::InvalidSdp(format!("unparsable offer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_obvious_junk() {
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            ("x".repeat(70_000), "bytes"),
            ("v=0\r\n\u{1}\u{2}".into(), "control"),
            (
                "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n".into(),
                "no audio",
            ),
            (
                "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n".into(),
                "Opus",
            ),
            (
                "hello\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n".into(),
                "v=0",
            ),
            (
                "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n".into(),
                "unparsable",
            ),
        ];
        for (sdp, want) in cases {
            let err = check_offer(&sdp, 64 * 1024, 64).unwrap_err();
            let SfuError::InvalidSdp(msg) = &err else {
                panic!("{err:?}")
            };
            assert!(msg.contains(want), "{msg:?} should mention {want:?}");
        }
    }

    #[test]
    fn rejects_too_many_m_lines() {
        let mut sdp = String::from("v=0\r\n");
        for _ in 0..1000 {
            sdp.push_str("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n");
        }
        let err = check_offer(&sdp, 1 << 20, 64).unwrap_err();
        assert!(err.to_string().contains("m-lines"), "{err}");
    }
}
