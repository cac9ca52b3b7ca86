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

/// The answer as sent: [`tune_video_answer`], and with `dtx` Opus DTX asked for ([`with_opus_dtx`]).
pub(crate) fn tune_answer(answer: &str, start_kbps: u64, dtx: bool) -> String {
    let answer = tune_video_answer(answer, start_kbps);
    if dtx {
        with_opus_dtx(&answer)
    } else {
        answer
    }
}

/// Adds `usedtx=1` to the Opus format of every audio m-line. In an answer it tells the offerer's
/// encoder to stop sending in silence (RFC 7587 §6.1: the parameter states what the receiver
/// prefers); Chrome then sends only comfort-noise updates in silence (~5 packets/s, not 50). The SFU forwards those as
/// they come (`speaking.rs` releases a speaker whose packets stop), and a listener's decoder
/// fills the gaps with comfort noise.
pub(crate) fn with_opus_dtx(answer: &str) -> String {
    let lines: Vec<&str> = answer.split("\r\n").collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len() + 4);
    let mut in_audio = false;
    let mut opus_pts: Vec<&str> = Vec::new();
    let mut with_fmtp: Vec<&str> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("m=") {
            in_audio = l.starts_with("m=audio ");
            // This section's Opus payload types and which of them have an fmtp line.
            let end = lines[i + 1..]
                .iter()
                .position(|x| x.starts_with("m="))
                .map_or(lines.len(), |p| i + 1 + p);
            let section = &lines[i + 1..end];
            fn pt_of(rest: &str) -> &str {
                rest.split(' ').next().unwrap_or("")
            }
            opus_pts = section
                .iter()
                .filter_map(|x| x.strip_prefix("a=rtpmap:"))
                .filter(|rest| {
                    rest.split(' ')
                        .nth(1)
                        .is_some_and(|c| c.to_ascii_lowercase().starts_with("opus/"))
                })
                .map(pt_of)
                .collect();
            with_fmtp = section
                .iter()
                .filter_map(|x| x.strip_prefix("a=fmtp:"))
                .map(pt_of)
                .collect();
        }
        if in_audio {
            if let Some(rest) = l.strip_prefix("a=fmtp:") {
                let pt = rest.split(' ').next().unwrap_or("");
                if opus_pts.contains(&pt) && !rest.contains("usedtx=") {
                    out.push(format!("{l};usedtx=1"));
                    continue;
                }
            }
            out.push(l.to_string());
            if let Some(rest) = l.strip_prefix("a=rtpmap:") {
                let pt = rest.split(' ').next().unwrap_or("");
                if opus_pts.contains(&pt) && !with_fmtp.contains(&pt) {
                    out.push(format!("a=fmtp:{pt} usedtx=1"));
                }
            }
            continue;
        }
        out.push(l.to_string());
    }
    out.join("\r\n")
}

/// Tunes the answer to a peer that offered video, so that a camera starts sharp:
/// - `x-google-start-bitrate` (kbit/s) on the video codecs: a browser's send-side bandwidth
///   estimate otherwise starts at its default (300 kbit/s in Chrome);
/// - no transport-wide congestion control for audio (its `a=extmap` and `a=rtcp-fb … transport-cc`
///   left out of the audio m-lines; video keeps both). With audio in the feedback, the estimate
///   follows the audio alone while the camera is off: one delay spike (a busy moment of the
///   SFU's) and it drops to 0.85 × the audio's ~50 kbit/s, then climbs back a few kbit/s per
///   second, application-limited. A camera switched on then showed 320×180 on a large tile for
///   4–27 s (measured on loopback with a busy machine). Without audio in it, the estimate
///   waits at its start value for the first video.
///
/// Chrome and Edge read the start bitrate from the remote description; other browsers ignore it.
/// The estimate still falls at once if the network cannot carry it (delay and loss feedback).
pub(crate) fn tune_video_answer(answer: &str, start_kbps: u64) -> String {
    if !answer.contains("m=video ") {
        return answer.to_string();
    }
    let lines: Vec<&str> = answer.split("\r\n").collect();
    let mut kept: Vec<&str> = Vec::with_capacity(lines.len());
    let mut in_audio = false;
    for l in lines {
        if l.starts_with("m=") {
            in_audio = l.starts_with("m=audio ");
        }
        let transport_cc = l.starts_with("a=extmap:") && l.contains("transport-wide-cc")
            || l.starts_with("a=rtcp-fb:") && l.ends_with(" transport-cc");
        if in_audio && transport_cc {
            continue;
        }
        kept.push(l);
    }
    with_video_start_bitrate(&kept.join("\r\n"), start_kbps)
}

/// Adds `x-google-start-bitrate` (kbit/s) to the video codecs of an answer (0: nothing).
pub(crate) fn with_video_start_bitrate(answer: &str, kbps: u64) -> String {
    if kbps == 0 || !answer.contains("m=video ") {
        return answer.to_string();
    }
    let param = format!("x-google-start-bitrate={kbps}");
    let lines: Vec<&str> = answer.split("\r\n").collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len() + 8);
    // One m-section at a time: its video codec payload types (not RTX, RED or FEC) get the
    // parameter on their fmtp line, or a new fmtp line after their rtpmap.
    let mut i = 0;
    while i < lines.len() {
        let end = lines[i + 1..]
            .iter()
            .position(|l| l.starts_with("m="))
            .map_or(lines.len(), |p| i + 1 + p);
        let section = &lines[i..end];
        if !section[0].starts_with("m=video ") {
            out.extend(section.iter().map(|l| l.to_string()));
            i = end;
            continue;
        }
        let pt_of = |rest: &str| rest.split(' ').next().unwrap_or("").to_string();
        let codec_pts: Vec<String> = section
            .iter()
            .filter_map(|l| l.strip_prefix("a=rtpmap:"))
            .filter(|rest| {
                let codec = rest.split(' ').nth(1).unwrap_or("").to_ascii_lowercase();
                ["vp8/", "vp9/", "h264/", "av1/"]
                    .iter()
                    .any(|c| codec.starts_with(c))
            })
            .map(pt_of)
            .collect();
        let fmtp_pts: Vec<String> = section
            .iter()
            .filter_map(|l| l.strip_prefix("a=fmtp:"))
            .map(pt_of)
            .collect();
        for l in section {
            if let Some(rest) = l.strip_prefix("a=fmtp:") {
                if codec_pts.contains(&pt_of(rest)) && !rest.contains("x-google-start-bitrate") {
                    out.push(format!("{l};{param}"));
                    continue;
                }
            }
            out.push(l.to_string());
            if let Some(rest) = l.strip_prefix("a=rtpmap:") {
                let pt = pt_of(rest);
                if codec_pts.contains(&pt) && !fmtp_pts.contains(&pt) {
                    out.push(format!("a=fmtp:{pt} {param}"));
                }
            }
        }
        i = end;
    }
    out.join("\r\n")
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
    fn start_bitrate_goes_on_every_video_codec_and_nothing_else() {
        let answer = "v=0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
            a=rtpmap:111 opus/48000/2\r\n\
            a=fmtp:111 minptime=10;useinbandfec=1\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99\r\n\
            a=rtpmap:96 VP8/90000\r\n\
            a=rtpmap:97 rtx/90000\r\n\
            a=fmtp:97 apt=96\r\n\
            a=rtpmap:98 H264/90000\r\n\
            a=fmtp:98 profile-level-id=42e01f\r\n\
            a=rtcp-fb:98 nack\r\n";
        let got = with_video_start_bitrate(answer, 1500);
        let want = "v=0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
            a=rtpmap:111 opus/48000/2\r\n\
            a=fmtp:111 minptime=10;useinbandfec=1\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99\r\n\
            a=rtpmap:96 VP8/90000\r\n\
            a=fmtp:96 x-google-start-bitrate=1500\r\n\
            a=rtpmap:97 rtx/90000\r\n\
            a=fmtp:97 apt=96\r\n\
            a=rtpmap:98 H264/90000\r\n\
            a=fmtp:98 profile-level-id=42e01f;x-google-start-bitrate=1500\r\n\
            a=rtcp-fb:98 nack\r\n";
        assert_eq!(got, want);
        // Audio-only answers and a zero setting are left alone.
        let audio = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(with_video_start_bitrate(audio, 1500), audio);
        assert_eq!(with_video_start_bitrate(answer, 0), answer);
    }

    #[test]
    fn audio_of_a_video_answer_loses_transport_cc_and_video_keeps_it() {
        let answer = "v=0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
            a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
            a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
            a=rtpmap:111 opus/48000/2\r\n\
            a=rtcp-fb:111 transport-cc\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
            a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
            a=rtpmap:96 VP8/90000\r\n\
            a=rtcp-fb:96 transport-cc\r\n";
        let got = tune_video_answer(answer, 0);
        let audio = got.split("m=video").next().unwrap();
        let video = got.split("m=video").nth(1).unwrap();
        assert!(!audio.contains("transport"), "{got}");
        assert!(
            audio.contains("ssrc-audio-level") && audio.contains("a=rtpmap:111"),
            "{got}"
        );
        assert!(video.contains("transport-wide-cc") && video.contains("a=rtcp-fb:96 transport-cc"));
        assert!(got.ends_with("\r\n"));
        // An audio-only answer is not touched (it negotiates no transport-cc anyway).
        let audio_only = answer.split("m=video").next().unwrap();
        assert_eq!(tune_video_answer(audio_only, 2000), audio_only);
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

    #[test]
    fn dtx_goes_on_opus_of_every_audio_line_and_nothing_else() {
        let answer = [
            "v=0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111 63",
            "a=rtpmap:111 opus/48000/2",
            "a=fmtp:111 minptime=10;useinbandfec=1",
            "a=rtpmap:63 red/48000/2",
            "a=fmtp:63 111/111",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=rtpmap:111 opus/48000/2",
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
            "a=rtpmap:96 VP8/90000",
            "a=fmtp:96 x-google-start-bitrate=2000",
            "",
        ]
        .join("\r\n");
        let got = with_opus_dtx(&answer);
        let lines: Vec<&str> = got.split("\r\n").collect();
        assert_eq!(lines[3], "a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1");
        assert_eq!(lines[5], "a=fmtp:63 111/111", "RED untouched");
        assert_eq!(
            lines[8], "a=fmtp:111 usedtx=1",
            "an fmtp line added after the rtpmap"
        );
        assert_eq!(
            lines[11], "a=fmtp:96 x-google-start-bitrate=2000",
            "video untouched"
        );
        assert_eq!(got.matches("usedtx").count(), 2);
        // Idempotent, and off means untouched.
        assert_eq!(with_opus_dtx(&got), got);
        assert_eq!(tune_answer(&answer, 0, false), answer);
        assert_eq!(tune_answer(&answer, 0, true), got);
    }
}
