//! The receiving side of the fast path's RTCP: receiver reports and NACKs
//! that subscribers send about the SSRCs the fast path owns.
//!
//! str0m no longer knows those SSRCs (the fast path removed them), so it
//! drops their report blocks. The fast path therefore reads the subscriber's
//! SRTCP itself, before str0m gets the same datagram: it authenticates and
//! decrypts a copy with the subscriber's sending keys (learned with ours from
//! the DTLS keying material) and takes from each report block about an owned
//! SSRC the round-trip time (RFC 3550 §6.4.1, against the sender report we
//! sent), the fraction lost and the interarrival jitter.
//!
//! Cost: only RTCP datagrams (about one per second per subscriber) whose
//! first packet, in clear in SRTCP, is a sender or receiver report (where
//! report blocks are) or a generic NACK are decrypted. RTP never comes here.

use std::time::Instant;

use aws_lc_rs::aead::{Aad, Nonce};
use aws_lc_rs::cipher::EncryptionContext;
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

use super::rtcp::{self, SrLog};
use super::srtp::{master_of, Cipher, KeyError, Profile, GCM_TAG_LEN, HMAC_TAG_LEN};
use super::{FastPeer, FastTrack};
use crate::metrics::Metrics;

/// Receiving SRTCP context of one subscriber (RFC 3711 §3.4, RFC 7714 §9).
pub(crate) struct SrtcpRx {
    cipher: Cipher,
}

impl std::fmt::Debug for SrtcpRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.cipher {
            Cipher::Cm { .. } => "SrtcpRx(AES-CM)",
            Cipher::Gcm { .. } => "SrtcpRx(AES-GCM)",
        })
    }
}

impl SrtcpRx {
    /// The context for what the other end sends: `client` = *we* are the
    /// DTLS client, so the peer sends with the server's key and salt.
    pub fn from_keying_material(
        profile: Profile,
        material: &[u8],
        client: bool,
    ) -> Result<Self, KeyError> {
        let (key, salt) = master_of(profile, material, !client)?;
        Ok(Self::from_master(profile, key, salt))
    }

    pub fn from_master(profile: Profile, key: &[u8], salt: &[u8]) -> Self {
        // AES-CM is its own inverse: the sending cipher decrypts too.
        SrtcpRx {
            cipher: Cipher::new(profile, key, salt, true),
        }
    }

    /// Authenticates and decrypts the SRTCP packet in `buf` in place.
    /// Returns the SRTCP index and the length of the plain compound RTCP
    /// packet at the start of `buf`, or `None` if it does not authenticate.
    pub fn unprotect(&self, buf: &mut [u8]) -> Option<(u32, usize)> {
        let n = buf.len();
        match &self.cipher {
            Cipher::Cm { key, auth, salt } => {
                // header (8) | encrypted part | E|index (4) | tag (10)
                if n < 8 + 4 + HMAC_TAG_LEN {
                    return None;
                }
                let signed = n - HMAC_TAG_LEN;
                let tag = hmac::sign(auth, &buf[..signed]);
                verify_slices_are_equal(&tag.as_ref()[..HMAC_TAG_LEN], &buf[signed..]).ok()?;
                let e_index = u32::from_be_bytes(buf[signed - 4..signed].try_into().ok()?);
                let index = e_index & 0x7fff_ffff;
                let len = signed - 4;
                if e_index & 0x8000_0000 != 0 {
                    let mut iv = [0u8; 16];
                    iv[..14].copy_from_slice(salt);
                    for i in 0..4 {
                        iv[4 + i] ^= buf[4 + i];
                        iv[10 + i] ^= index.to_be_bytes()[i];
                    }
                    key.less_safe_encrypt(
                        &mut buf[8..len],
                        EncryptionContext::Iv128(FixedLength::from(iv)),
                    )
                    .ok()?;
                }
                Some((index, len))
            }
            Cipher::Gcm { key, salt } => {
                // header (8) | ciphertext | tag (16) | E|index (4)
                if n < 8 + GCM_TAG_LEN + 4 {
                    return None;
                }
                let e_index = u32::from_be_bytes(buf[n - 4..].try_into().ok()?);
                if e_index & 0x8000_0000 == 0 {
                    // Unencrypted SRTCP (authenticated only): no WebRTC stack sends it.
                    return None;
                }
                let index = e_index & 0x7fff_ffff;
                let mut iv = *salt;
                for i in 0..4 {
                    iv[2 + i] ^= buf[4 + i];
                    iv[8 + i] ^= index.to_be_bytes()[i];
                }
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&buf[..8]);
                aad[8..].copy_from_slice(&e_index.to_be_bytes());
                let plain = key
                    .open_in_place(
                        Nonce::assume_unique_for_key(iv),
                        Aad::from(&aad),
                        &mut buf[8..n - 4],
                    )
                    .ok()?
                    .len();
                Some((index, 8 + plain))
            }
        }
    }
}

/// What the fast path keeps to read a subscriber's RTCP.
#[derive(Debug)]
pub(crate) struct RtcpIn {
    rx: SrtcpRx,
    /// Highest SRTCP index accepted (a replayed report is ignored).
    last_index: Option<u32>,
    /// Decryption copy of the datagram (reused).
    scratch: Vec<u8>,
}

impl RtcpIn {
    pub fn new(rx: SrtcpRx) -> Self {
        RtcpIn {
            rx,
            last_index: None,
            scratch: Vec::new(),
        }
    }
}

/// Whether an SRTCP datagram may carry report blocks or a NACK, judged by
/// its first RTCP packet (which SRTCP leaves in clear).
fn worth_reading(buf: &[u8]) -> bool {
    buf.len() >= 8
        && match buf[1] {
            rtcp::PT_SR | rtcp::PT_RR => true,
            rtcp::PT_RTPFB => buf[0] & 0x1f == rtcp::FMT_NACK,
            _ => false,
        }
}

impl FastPeer {
    /// Reads an RTCP datagram from this subscriber (before str0m handles
    /// the same bytes) and records what it reports about the SSRCs the fast
    /// path owns: RTT, fraction lost and jitter in `metrics`. Returns the
    /// NACK messages about those SSRCs (they cannot be answered: the fast
    /// path sends no RTX; they are counted like str0m's).
    pub fn on_rtcp<'a, T: FastTrack + 'a>(
        &mut self,
        buf: &[u8],
        now: Instant,
        downs: impl Iterator<Item = &'a T> + Clone,
        srs: &SrLog,
        clock_rate: u32,
        metrics: &Metrics,
    ) -> u64 {
        if !self.is_active() || !worth_reading(buf) {
            return 0;
        }
        let Some(rin) = self.rtcp_in.as_mut() else {
            return 0;
        };
        let owned = |ssrc: u32| downs.clone().any(|d| d.is_fast() && *d.ssrc() == ssrc);
        if !downs.clone().any(|d| d.is_fast()) {
            return 0;
        }
        rin.scratch.clear();
        rin.scratch.extend_from_slice(buf);
        let Some((index, len)) = rin.rx.unprotect(&mut rin.scratch) else {
            return 0;
        };
        if rin.last_index.is_some_and(|last| index <= last) {
            return 0;
        }
        rin.last_index = Some(index);
        let mut nacks = 0;
        rtcp::read_compound(&rin.scratch[..len], |item| match item {
            rtcp::Item::Report(b) if owned(b.ssrc) => {
                metrics
                    .subscriber_loss_ratio
                    .record(b.fraction_lost as f64 / 256.0);
                metrics
                    .subscriber_jitter_seconds
                    .record(b.jitter as f64 / clock_rate as f64);
                if let Some(rtt) = srs.rtt(b.lsr, b.dlsr, now) {
                    metrics.rtt_seconds.record(rtt.as_secs_f64());
                }
            }
            rtcp::Item::Nack { media_ssrc } if owned(media_ssrc) => nacks += 1,
            _ => {}
        });
        if nacks > 0 {
            metrics.nacks_received.increment(nacks);
        }
        nacks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastpath::srtp::SrtpTx;

    fn compound() -> Vec<u8> {
        // RR from SSRC 1 with one block about SSRC 0x0a0b0c0d.
        let mut p = vec![0x81, 201, 0, 7, 0, 0, 0, 1];
        p.extend_from_slice(&0x0a0b_0c0du32.to_be_bytes());
        p.extend_from_slice(&[64, 0, 0, 3]);
        p.extend_from_slice(&[0, 0, 0x10, 0]);
        p.extend_from_slice(&480u32.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(&0x0001_0000u32.to_be_bytes());
        p
    }

    /// What our sending context protects, our receiving context of the
    /// other direction reads back (both profiles, keying material halves
    /// swapped as between the two ends of one DTLS association).
    #[test]
    fn unprotects_what_the_other_end_protects() {
        for (profile, kl, sl) in [
            (Profile::Aes128CmSha1_80, 16, 14),
            (Profile::AeadAes128Gcm, 16, 12),
            (Profile::AeadAes256Gcm, 32, 12),
        ] {
            let material: Vec<u8> = (0..2 * (kl + sl))
                .map(|i| (i as u8).wrapping_mul(7).wrapping_add(3))
                .collect();
            // The subscriber is the DTLS client here; we are the server.
            let theirs = SrtpTx::from_keying_material(profile, &material, true).unwrap();
            let ours = SrtcpRx::from_keying_material(profile, &material, false).unwrap();
            let plain = compound();
            let mut buf = plain.clone();
            buf.resize(plain.len() + profile.rtcp_overhead(), 0);
            let n = theirs.protect_rtcp(&mut buf, plain.len(), 77);
            buf.truncate(n);
            assert_ne!(buf[8..plain.len()], plain[8..], "{profile:?} encrypted");
            let mut copy = buf.clone();
            let (index, len) = ours.unprotect(&mut copy).expect("authenticates");
            assert_eq!(index, 77);
            assert_eq!(&copy[..len], &plain[..], "{profile:?}");
            // One flipped bit anywhere: rejected.
            let mut bad = buf.clone();
            bad[10] ^= 1;
            assert!(ours.unprotect(&mut bad).is_none(), "{profile:?}");
            // Our own direction's keys do not open it.
            let wrong = SrtcpRx::from_keying_material(profile, &material, true).unwrap();
            assert!(wrong.unprotect(&mut buf.clone()).is_none(), "{profile:?}");
        }
    }

    #[test]
    fn only_reports_and_nacks_are_read() {
        assert!(worth_reading(&compound()));
        let mut sr = compound();
        sr[1] = 200;
        assert!(worth_reading(&sr));
        let nack = [0x81, 205, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 5, 0, 0];
        assert!(worth_reading(&nack));
        let twcc = [0x8f, 205, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 5, 0, 0];
        assert!(!worth_reading(&twcc));
        let pli = [0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        assert!(!worth_reading(&pli));
        assert!(!worth_reading(&[0x81, 201, 0]));
    }
}
