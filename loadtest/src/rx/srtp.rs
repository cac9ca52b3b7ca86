//! SRTP for a listener's fast path (RFC 3711 key derivation, RFC 7714
//! AES-GCM): decrypting received RTP in place, reading the SFU's SRTCP and
//! protecting our own receiver reports.
//!
//! Hand-written because str0m keeps its SRTP contexts private and the SRTP
//! crates either pull in a second crypto stack or allocate per packet; the
//! ciphers are aws-lc-rs, the library str0m itself uses. Only the AEAD
//! profiles are implemented (what str0m and browsers negotiate first); a peer
//! on AES-CM stays on str0m's receive path.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128, AES_256};
use aws_lc_rs::iv::FixedLength;

/// AEAD tag length of both GCM profiles.
pub const TAG_LEN: usize = 16;
/// What SRTCP adds after the compound packet: tag and E flag + index.
pub const SRTCP_TRAILER: usize = TAG_LEN + 4;
const SALT_LEN: usize = 12;

/// An AEAD SRTP profile (RFC 7714): master key length 16 or 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    AeadAes128Gcm,
    AeadAes256Gcm,
}

impl Profile {
    fn key_len(self) -> usize {
        match self {
            Profile::AeadAes128Gcm => 16,
            Profile::AeadAes256Gcm => 32,
        }
    }
}

/// The key and salt of one direction for RTP or RTCP.
struct Session {
    key: LessSafeKey,
    salt: [u8; SALT_LEN],
}

impl Session {
    /// RFC 3711 §4.3 key derivation (rate 0) for labels `enc` and `salt`.
    fn derive(profile: Profile, master_key: &[u8], master_salt: &[u8], enc: u8, salt: u8) -> Self {
        let mut k = [0u8; 32];
        let k = &mut k[..profile.key_len()];
        prf(master_key, master_salt, enc, k);
        let mut s = [0u8; SALT_LEN];
        prf(master_key, master_salt, salt, &mut s);
        let algo = match profile {
            Profile::AeadAes128Gcm => &AES_128_GCM,
            Profile::AeadAes256Gcm => &AES_256_GCM,
        };
        Session {
            key: LessSafeKey::new(UnboundKey::new(algo, k).expect("key length fits the profile")),
            salt: s,
        }
    }

    /// RFC 7714 §8.1 / §9.1: the 12-byte IV, `salt XOR (00 00 | ssrc | hi | lo)`.
    #[inline]
    fn nonce(&self, ssrc: [u8; 4], hi: u32, lo: u16) -> Nonce {
        let mut iv = self.salt;
        let hi = hi.to_be_bytes();
        let lo = lo.to_be_bytes();
        for i in 0..4 {
            iv[2 + i] ^= ssrc[i];
            iv[6 + i] ^= hi[i];
        }
        iv[10] ^= lo[0];
        iv[11] ^= lo[1];
        Nonce::assume_unique_for_key(iv)
    }
}

/// The AES-CM pseudo-random function of RFC 3711 §4.3.3: AES-CTR keystream
/// under the master key, counter block `(salt XOR label << 48) << 16`.
fn prf(master_key: &[u8], master_salt: &[u8], label: u8, out: &mut [u8]) {
    let mut block = [0u8; 16];
    block[..master_salt.len()].copy_from_slice(master_salt);
    // Bit 48 of the 112-bit salt-sized value is the low bit of byte 7.
    block[7] ^= label;
    out.fill(0);
    let algo = if master_key.len() == 32 {
        &AES_256
    } else {
        &AES_128
    };
    let key = EncryptingKey::ctr(UnboundCipherKey::new(algo, master_key).expect("AES key"))
        .expect("AES-CTR");
    key.less_safe_encrypt(out, EncryptionContext::Iv128(FixedLength::from(block)))
        .expect("AES-CTR keystream");
}

/// Error of building contexts from keying material that does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadKeys;

/// One DTLS-SRTP association as seen by the listener: what the SFU sends
/// (RTP and SRTCP in) and what we send (SRTCP out).
pub struct SrtpRx {
    rtp_in: Session,
    rtcp_in: Session,
    rtcp_out: Session,
}

impl std::fmt::Debug for SrtpRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SrtpRx")
    }
}

impl SrtpRx {
    /// From DTLS-SRTP keying material (RFC 5764 §4.2: client key, server
    /// key, client salt, server salt); `client` = we were the DTLS client.
    pub fn new(profile: Profile, material: &[u8], client: bool) -> Result<Self, BadKeys> {
        let kl = profile.key_len();
        if material.len() != 2 * (kl + SALT_LEN) {
            return Err(BadKeys);
        }
        let client_key = &material[..kl];
        let server_key = &material[kl..2 * kl];
        let client_salt = &material[2 * kl..2 * kl + SALT_LEN];
        let server_salt = &material[2 * kl + SALT_LEN..];
        let (ours, theirs) = if client {
            ((client_key, client_salt), (server_key, server_salt))
        } else {
            ((server_key, server_salt), (client_key, client_salt))
        };
        Ok(SrtpRx {
            rtp_in: Session::derive(profile, theirs.0, theirs.1, 0, 2),
            rtcp_in: Session::derive(profile, theirs.0, theirs.1, 3, 5),
            rtcp_out: Session::derive(profile, ours.0, ours.1, 3, 5),
        })
    }

    /// Authenticates and decrypts the payload of an SRTP packet in place.
    /// `buf` is the whole datagram, `hlen` its RTP header length (the AAD),
    /// `roc` the rollover counter guessed for its sequence number. Returns
    /// the plain payload's length (it starts at `hlen`), or `None` when it
    /// does not authenticate (the bytes after `hlen` are garbage then).
    #[inline]
    pub fn open_rtp(&self, buf: &mut [u8], hlen: usize, roc: u32) -> Option<usize> {
        if buf.len() < hlen + TAG_LEN || hlen < 12 {
            return None;
        }
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = [buf[8], buf[9], buf[10], buf[11]];
        let nonce = self.rtp_in.nonce(ssrc, roc, seq);
        let (head, body) = buf.split_at_mut(hlen);
        let plain = self
            .rtp_in
            .key
            .open_in_place(nonce, Aad::from(&*head), body)
            .ok()?;
        Some(plain.len())
    }

    /// Authenticates and decrypts an SRTCP packet in place: returns the SRTCP
    /// index and the length of the plain compound packet at the start of
    /// `buf`, or `None`.
    pub fn open_rtcp(&self, buf: &mut [u8]) -> Option<(u32, usize)> {
        let n = buf.len();
        if n < 8 + SRTCP_TRAILER {
            return None;
        }
        let e_index = u32::from_be_bytes(buf[n - 4..].try_into().ok()?);
        if e_index & 0x8000_0000 == 0 {
            // Authenticated-only SRTCP: WebRTC stacks always encrypt.
            return None;
        }
        let index = e_index & 0x7fff_ffff;
        let nonce = self
            .rtcp_in
            .nonce([buf[4], buf[5], buf[6], buf[7]], index >> 16, index as u16);
        let mut aad = [0u8; 12];
        aad[..8].copy_from_slice(&buf[..8]);
        aad[8..].copy_from_slice(&e_index.to_be_bytes());
        let plain = self
            .rtcp_in
            .key
            .open_in_place(nonce, Aad::from(&aad), &mut buf[8..n - 4])
            .ok()?
            .len();
        Some((index, 8 + plain))
    }

    /// Protects the compound RTCP packet `buf[..len]` in place with SRTCP
    /// index `index` (31 bits); `buf` needs [`SRTCP_TRAILER`] more bytes.
    /// Returns the protected length.
    pub fn seal_rtcp(&self, buf: &mut [u8], len: usize, index: u32) -> usize {
        let index = index & 0x7fff_ffff;
        let e_index = (0x8000_0000 | index).to_be_bytes();
        let nonce =
            self.rtcp_out
                .nonce([buf[4], buf[5], buf[6], buf[7]], index >> 16, index as u16);
        let mut aad = [0u8; 12];
        aad[..8].copy_from_slice(&buf[..8]);
        aad[8..].copy_from_slice(&e_index);
        let tag = self
            .rtcp_out
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&aad), &mut buf[8..len])
            .expect("AES-GCM seal");
        buf[len..len + TAG_LEN].copy_from_slice(tag.as_ref());
        buf[len + TAG_LEN..len + SRTCP_TRAILER].copy_from_slice(&e_index);
        len + SRTCP_TRAILER
    }
}

/// Test and bench helper: the sending side of the SFU's RTP direction, so
/// synthetic SRTP packets can be made that [`SrtpRx::open_rtp`] accepts.
pub struct SrtpTxForTest {
    rtp: Session,
    rtcp: Session,
}

impl SrtpTxForTest {
    /// The other end of [`SrtpRx::new`] with the same arguments.
    pub fn peer_of(profile: Profile, material: &[u8], client: bool) -> Result<Self, BadKeys> {
        let kl = profile.key_len();
        if material.len() != 2 * (kl + SALT_LEN) {
            return Err(BadKeys);
        }
        // The far end sends with the half we receive with.
        let off = if client { kl } else { 0 };
        let soff = 2 * kl + if client { SALT_LEN } else { 0 };
        let (key, salt) = (&material[off..off + kl], &material[soff..soff + SALT_LEN]);
        Ok(SrtpTxForTest {
            rtp: Session::derive(profile, key, salt, 0, 2),
            rtcp: Session::derive(profile, key, salt, 3, 5),
        })
    }

    /// Encrypts `buf[hlen..len]` in place and appends the tag; returns the
    /// datagram's length. `index` = ROC << 16 | SEQ.
    pub fn seal_rtp(&self, buf: &mut [u8], hlen: usize, len: usize, index: u64) -> usize {
        let ssrc = [buf[8], buf[9], buf[10], buf[11]];
        let nonce = self.rtp.nonce(ssrc, (index >> 16) as u32, index as u16);
        let (head, rest) = buf.split_at_mut(hlen);
        let tag = self
            .rtp
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&*head), &mut rest[..len - hlen])
            .expect("AES-GCM seal");
        buf[len..len + TAG_LEN].copy_from_slice(tag.as_ref());
        len + TAG_LEN
    }

    /// SRTCP as the SFU sends it (for the sender-report tests).
    pub fn seal_rtcp(&self, buf: &mut [u8], len: usize, index: u32) -> usize {
        let e_index = (0x8000_0000 | index).to_be_bytes();
        let nonce = self
            .rtcp
            .nonce([buf[4], buf[5], buf[6], buf[7]], index >> 16, index as u16);
        let mut aad = [0u8; 12];
        aad[..8].copy_from_slice(&buf[..8]);
        aad[8..].copy_from_slice(&e_index);
        let tag = self
            .rtcp
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&aad), &mut buf[8..len])
            .expect("AES-GCM seal");
        buf[len..len + TAG_LEN].copy_from_slice(tag.as_ref());
        buf[len + TAG_LEN..len + SRTCP_TRAILER].copy_from_slice(&e_index);
        len + SRTCP_TRAILER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn session(key: &[u8], salt: [u8; 12]) -> Session {
        Session {
            key: LessSafeKey::new(UnboundKey::new(&AES_128_GCM, key).unwrap()),
            salt,
        }
    }

    /// RFC 3711 Appendix B.3: the PRF's session encryption key and salt.
    #[test]
    fn prf_matches_rfc3711_b3() {
        let key = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let mut enc = [0u8; 16];
        prf(&key, &salt, 0, &mut enc);
        assert_eq!(enc.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut s = [0u8; 14];
        prf(&key, &salt, 2, &mut s);
        assert_eq!(s.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    }

    /// RFC 7714 §16.1.1 (RTP) and §17.1 (RTCP) vectors, opened.
    #[test]
    fn opens_rfc7714_vectors() {
        let key = hex("000102030405060708090a0b0c0d0e0f");
        let salt: [u8; 12] = hex("517569642070726f2071756f").try_into().unwrap();
        let rx = SrtpRx {
            rtp_in: session(&key, salt),
            rtcp_in: session(&key, salt),
            rtcp_out: session(&key, salt),
        };
        let mut rtp = hex("8040f17b8041f8d35501a0b2 f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833899d7f27beb16a9152cf765ee4390cce");
        let n = rx.open_rtp(&mut rtp, 12, 0).expect("authenticates");
        assert_eq!(
            rtp[12..12 + n].to_vec(),
            hex("47616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573")
        );
        let mut rtcp = hex("81c8000d4d617273 63e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1730d6fda4ce09b4686303ded0bb9275bc84aa45896cf4d2fc5abf87245d9eade800005d4");
        let (index, len) = rx.open_rtcp(&mut rtcp).expect("authenticates");
        assert_eq!(index, 0x05d4);
        assert_eq!(
            rtcp[..len].to_vec(),
            hex("81c8000d4d617273 4e5450314e545032 525450200000042a 0000e9304c756e61 deadbeefdeadbeefdeadbeefdeadbeefdeadbeef")
        );
        // Our own sealing of the same plain RTCP reproduces the vector.
        let plain = rtcp[..len].to_vec();
        let mut buf = plain.clone();
        buf.resize(plain.len() + SRTCP_TRAILER, 0);
        let n = rx.seal_rtcp(&mut buf, plain.len(), 0x05d4);
        assert_eq!(buf[..n].to_vec(), hex("81c8000d4d617273 63e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1730d6fda4ce09b4686303ded0bb9275bc84aa45896cf4d2fc5abf87245d9eade800005d4"));
    }

    /// Both profiles: what the far end seals we open, with the keying
    /// material's halves the right way round; tampering and the wrong
    /// direction's keys fail; short or garbage input never panics.
    #[test]
    fn round_trip_and_rejections() {
        for profile in [Profile::AeadAes128Gcm, Profile::AeadAes256Gcm] {
            let kl = profile.key_len();
            let material: Vec<u8> = (0..2 * (kl + 12)).map(|i| (i * 13 + 5) as u8).collect();
            for client in [true, false] {
                let rx = SrtpRx::new(profile, &material, client).unwrap();
                let tx = SrtpTxForTest::peer_of(profile, &material, client).unwrap();
                let mut pkt = vec![0x80, 111, 0x12, 0x34, 0, 0, 0, 9, 1, 2, 3, 4];
                pkt.extend_from_slice(b"opus payload bytes");
                let plain = pkt.clone();
                pkt.resize(plain.len() + TAG_LEN, 0);
                let n = tx.seal_rtp(&mut pkt, 12, plain.len(), (7 << 16) | 0x1234);
                assert_eq!(n, pkt.len());
                let mut ok = pkt.clone();
                assert_eq!(rx.open_rtp(&mut ok, 12, 7), Some(plain.len() - 12));
                assert_eq!(ok[..plain.len()], plain[..]);
                // Wrong rollover counter, flipped bit: rejected.
                assert_eq!(rx.open_rtp(&mut pkt.clone(), 12, 6), None);
                let mut bad = pkt.clone();
                bad[14] ^= 1;
                assert_eq!(rx.open_rtp(&mut bad, 12, 7), None);
                // The other direction's keys do not open it.
                let wrong = SrtpRx::new(profile, &material, !client).unwrap();
                assert_eq!(wrong.open_rtp(&mut pkt.clone(), 12, 7), None);
                for cut in 0..pkt.len() {
                    let _ = rx.open_rtp(&mut pkt[..cut].to_vec(), 12.min(cut), 7);
                    let _ = rx.open_rtcp(&mut pkt[..cut].to_vec());
                }
                // SRTCP both ways.
                let mut sr = vec![0x80, 200, 0, 6, 1, 2, 3, 4];
                sr.extend_from_slice(&[9u8; 20]);
                let plain = sr.clone();
                sr.resize(plain.len() + SRTCP_TRAILER, 0);
                tx.seal_rtcp(&mut sr, plain.len(), 1 << 30);
                assert_eq!(rx.open_rtcp(&mut sr), Some((1 << 30, plain.len())));
                assert_eq!(sr[..plain.len()], plain[..]);
            }
        }
        assert!(SrtpRx::new(Profile::AeadAes128Gcm, &[0; 10], true).is_err());
    }
}
