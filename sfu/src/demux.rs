//! First look at a datagram on the shared UDP port (RFC 7983 first-byte rules).

use str0m::ice::StunMessage;

/// What a datagram looks like from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Stun,
    Dtls,
    Rtp,
    Rtcp,
}

/// Classifies by the first byte (and the RTP/RTCP payload type). `None` for
/// anything no WebRTC peer sends.
pub(crate) fn classify(buf: &[u8]) -> Option<Kind> {
    let b0 = *buf.first()?;
    match b0 {
        0..=1 if buf.len() >= 20 => Some(Kind::Stun),
        20..=63 => Some(Kind::Dtls),
        128..=191 if buf.len() >= 12 => {
            let pt = buf[1] & 0x7f;
            if (64..96).contains(&pt) {
                Some(Kind::Rtcp)
            } else {
                Some(Kind::Rtp)
            }
        }
        _ => None,
    }
}

/// Result of looking at a STUN datagram from an unknown address.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stun<'a> {
    /// A binding request for the local ufrag given.
    BindingRequest { local_ufrag: &'a str },
    /// Some other (well-formed) STUN message.
    Other,
    /// Not parseable.
    Malformed,
}

/// Parses a STUN datagram and extracts our (local) ufrag from a binding
/// request's USERNAME (`local:remote`).
pub(crate) fn stun_ufrag(buf: &[u8]) -> Stun<'_> {
    let Ok(msg) = StunMessage::parse(buf) else {
        return Stun::Malformed;
    };
    if !msg.is_binding_request() {
        return Stun::Other;
    }
    match msg.username().and_then(|u| u.split_once(':')) {
        Some((local, _)) if !local.is_empty() => Stun::BindingRequest { local_ufrag: local },
        _ => Stun::Malformed,
    }
}

/// The SSRC of an RTP datagram (bytes 8..12 are cleartext also under SRTP).
pub(crate) fn rtp_ssrc(buf: &[u8]) -> Option<u32> {
    let b = buf.get(8..12)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_garbage_and_truncated() {
        assert_eq!(classify(&[]), None);
        assert_eq!(classify(&[0, 1, 2]), None); // truncated STUN
        assert_eq!(classify(&[0x80, 111]), None); // truncated RTP
        assert_eq!(classify(&[200; 40]), None);
        assert_eq!(classify(&[70; 40]), None);
        assert_eq!(classify(&[22, 254, 253]), Some(Kind::Dtls));
        let mut rtp = [0u8; 20];
        rtp[0] = 0x80;
        rtp[1] = 111;
        assert_eq!(classify(&rtp), Some(Kind::Rtp));
        rtp[1] = 200 & 0x7f | 0x80; // RTCP SR (pt 200 → 72 after masking)
        assert_eq!(classify(&rtp), Some(Kind::Rtcp));
    }

    #[test]
    fn stun_junk_is_malformed() {
        let mut junk = [0u8; 40];
        junk[1] = 1;
        assert_eq!(stun_ufrag(&junk), Stun::Malformed);
        assert_eq!(stun_ufrag(&[0u8; 20]), Stun::Malformed);
    }
}
