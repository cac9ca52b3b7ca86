//! Sending half of SRTP/SRTCP (RFC 3711, RFC 7714) for the fast path: session
//! key derivation from the DTLS-SRTP master key and in-place protection of
//! packets already laid out in a caller's buffer.
//!
//! Why hand-written: str0m keeps its SRTP context private, and the SRTP crates
//! on crates.io either bring a second crypto stack (`webrtc-srtp`: RustCrypto;
//! `srtp`: libsrtp + OpenSSL) or return a freshly allocated buffer per packet.
//! What is needed here is small and fully specified: the AES-CM key
//! derivation function, the IV layouts and the trailer formats. The ciphers
//! themselves are aws-lc-rs, the library str0m already uses.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128, AES_256};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

/// The SRTP protection profiles str0m can negotiate (RFC 5764, RFC 7714).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Profile {
    Aes128CmSha1_80,
    AeadAes128Gcm,
    AeadAes256Gcm,
}

impl Profile {
    fn master_key_len(self) -> usize {
        match self {
            Profile::AeadAes256Gcm => 32,
            _ => 16,
        }
    }

    fn master_salt_len(self) -> usize {
        match self {
            Profile::Aes128CmSha1_80 => 14,
            _ => 12,
        }
    }

    /// Bytes the protection adds after an RTP packet.
    pub fn rtp_overhead(self) -> usize {
        match self {
            Profile::Aes128CmSha1_80 => HMAC_TAG_LEN,
            _ => GCM_TAG_LEN,
        }
    }

    /// Bytes the protection adds after an RTCP packet (index + tag).
    pub fn rtcp_overhead(self) -> usize {
        4 + self.rtp_overhead()
    }
}

pub(crate) const HMAC_TAG_LEN: usize = 10;
pub(crate) const GCM_TAG_LEN: usize = 16;

// RFC 3711 §4.3.1 key derivation labels.
const LABEL_RTP_ENC: u8 = 0;
const LABEL_RTP_AUTH: u8 = 1;
const LABEL_RTP_SALT: u8 = 2;
const LABEL_RTCP_ENC: u8 = 3;
const LABEL_RTCP_AUTH: u8 = 4;
const LABEL_RTCP_SALT: u8 = 5;

/// The master key and salt one side of a DTLS-SRTP association sends with
/// (RFC 5764 §4.2: the material is client key, server key, client salt,
/// server salt); `client` picks the DTLS client's.
pub(crate) fn master_of(
    profile: Profile,
    material: &[u8],
    client: bool,
) -> Result<(&[u8], &[u8]), KeyError> {
    let (kl, sl) = (profile.master_key_len(), profile.master_salt_len());
    if material.len() != 2 * (kl + sl) {
        return Err(KeyError(
            "keying material length does not match the profile",
        ));
    }
    let (k_off, s_off) = if client {
        (0, 2 * kl)
    } else {
        (kl, 2 * kl + sl)
    };
    Ok((&material[k_off..k_off + kl], &material[s_off..s_off + sl]))
}

/// Error of building a context from bad keying material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyError(pub &'static str);

/// RFC 3711 §4.3.3 AES-CM PRF with key derivation rate 0: the keystream of
/// AES in counter mode under the master key, starting at
/// `(master_salt XOR label << 48) << 16`.
pub(crate) fn derive(master_key: &[u8], master_salt: &[u8], label: u8, out: &mut [u8]) {
    let mut x = [0u8; 16];
    x[..master_salt.len()].copy_from_slice(master_salt);
    // The label sits at bit 48 of the 112-bit value: byte 7 of the 14.
    x[7] ^= label;
    out.fill(0);
    let algo = if master_key.len() == 32 {
        &AES_256
    } else {
        &AES_128
    };
    let key = UnboundCipherKey::new(algo, master_key).expect("16 or 32 byte key");
    let key = EncryptingKey::ctr(key).expect("AES-CTR");
    key.less_safe_encrypt(out, EncryptionContext::Iv128(FixedLength::from(x)))
        .expect("AES-CTR keystream");
}

// Two per peer, kept inline: the size difference does not matter, an
// indirection on every packet would.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Cipher {
    Cm {
        key: EncryptingKey,
        auth: hmac::Key,
        salt: [u8; 14],
    },
    Gcm {
        key: LessSafeKey,
        salt: [u8; 12],
    },
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cipher::Cm { .. } => "AES-CM",
            Cipher::Gcm { .. } => "AES-GCM",
        })
    }
}

impl Cipher {
    pub(crate) fn new(profile: Profile, master_key: &[u8], master_salt: &[u8], rtcp: bool) -> Self {
        let (l_enc, l_auth, l_salt) = if rtcp {
            (LABEL_RTCP_ENC, LABEL_RTCP_AUTH, LABEL_RTCP_SALT)
        } else {
            (LABEL_RTP_ENC, LABEL_RTP_AUTH, LABEL_RTP_SALT)
        };
        match profile {
            Profile::Aes128CmSha1_80 => {
                let mut k = [0u8; 16];
                let mut a = [0u8; 20];
                let mut salt = [0u8; 14];
                derive(master_key, master_salt, l_enc, &mut k);
                derive(master_key, master_salt, l_auth, &mut a);
                derive(master_key, master_salt, l_salt, &mut salt);
                let key = UnboundCipherKey::new(&AES_128, &k).expect("16 byte key");
                Cipher::Cm {
                    key: EncryptingKey::ctr(key).expect("AES-CTR"),
                    auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &a),
                    salt,
                }
            }
            Profile::AeadAes128Gcm | Profile::AeadAes256Gcm => {
                let n = profile.master_key_len();
                let mut k = [0u8; 32];
                let mut salt = [0u8; 12];
                derive(master_key, master_salt, l_enc, &mut k[..n]);
                derive(master_key, master_salt, l_salt, &mut salt);
                Cipher::gcm(&k[..n], salt)
            }
        }
    }

    fn gcm(key: &[u8], salt: [u8; 12]) -> Self {
        let algo = if key.len() == 32 {
            &AES_256_GCM
        } else {
            &AES_128_GCM
        };
        let key = UnboundKey::new(algo, key).expect("16 or 32 byte key");
        Cipher::Gcm {
            key: LessSafeKey::new(key),
            salt,
        }
    }
}

/// Sending SRTP and SRTCP contexts of one DTLS association (every SSRC we
/// send on shares the session keys; the RTP index and the SRTCP index are
/// what keep IVs unique).
#[derive(Debug)]
pub(crate) struct SrtpTx {
    pub profile: Profile,
    rtp: Cipher,
    rtcp: Cipher,
}

impl SrtpTx {
    /// From DTLS-SRTP keying material (RFC 5764 §4.2: client key, server
    /// key, client salt, server salt). `client` = we are the DTLS client.
    pub fn from_keying_material(
        profile: Profile,
        material: &[u8],
        client: bool,
    ) -> Result<Self, KeyError> {
        let (key, salt) = master_of(profile, material, client)?;
        Ok(Self::from_master(profile, key, salt))
    }

    pub fn from_master(profile: Profile, key: &[u8], salt: &[u8]) -> Self {
        SrtpTx {
            profile,
            rtp: Cipher::new(profile, key, salt, false),
            rtcp: Cipher::new(profile, key, salt, true),
        }
    }

    /// Protects the RTP packet `buf[..len]` (header `buf[..hlen]`) in place
    /// and returns the protected length. `buf` must have room for the tag.
    /// `index` is the 48-bit SRTP packet index (ROC << 16 | SEQ).
    pub fn protect_rtp(&self, buf: &mut [u8], hlen: usize, len: usize, index: u64) -> usize {
        let ssrc = [buf[8], buf[9], buf[10], buf[11]];
        match &self.rtp {
            Cipher::Cm { key, auth, salt } => {
                let mut iv = [0u8; 16];
                iv[..14].copy_from_slice(salt);
                for (i, b) in ssrc.iter().enumerate() {
                    iv[4 + i] ^= b;
                }
                let idx = (index & 0xffff_ffff_ffff).to_be_bytes();
                for i in 0..6 {
                    iv[8 + i] ^= idx[2 + i];
                }
                key.less_safe_encrypt(
                    &mut buf[hlen..len],
                    EncryptionContext::Iv128(FixedLength::from(iv)),
                )
                .expect("AES-CTR");
                let roc = ((index >> 16) as u32).to_be_bytes();
                let mut ctx = hmac::Context::with_key(auth);
                ctx.update(&buf[..len]);
                ctx.update(&roc);
                let tag = ctx.sign();
                buf[len..len + HMAC_TAG_LEN].copy_from_slice(&tag.as_ref()[..HMAC_TAG_LEN]);
                len + HMAC_TAG_LEN
            }
            Cipher::Gcm { key, salt } => {
                // RFC 7714 §8.1: 00 00 || SSRC || ROC || SEQ, XOR salt.
                let mut iv = *salt;
                let roc = ((index >> 16) as u32).to_be_bytes();
                let seq = (index as u16).to_be_bytes();
                for i in 0..4 {
                    iv[2 + i] ^= ssrc[i];
                    iv[6 + i] ^= roc[i];
                }
                iv[10] ^= seq[0];
                iv[11] ^= seq[1];
                let (head, rest) = buf.split_at_mut(hlen);
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(iv),
                        Aad::from(&*head),
                        &mut rest[..len - hlen],
                    )
                    .expect("AES-GCM");
                buf[len..len + GCM_TAG_LEN].copy_from_slice(tag.as_ref());
                len + GCM_TAG_LEN
            }
        }
    }

    /// Protects the compound RTCP packet `buf[..len]` in place with SRTCP
    /// index `index` (31 bits, encrypted: E flag set) and returns the
    /// protected length. `buf` must have room for `profile.rtcp_overhead()`.
    pub fn protect_rtcp(&self, buf: &mut [u8], len: usize, index: u32) -> usize {
        let e_index = (0x8000_0000 | (index & 0x7fff_ffff)).to_be_bytes();
        let ssrc = [buf[4], buf[5], buf[6], buf[7]];
        match &self.rtcp {
            Cipher::Cm { key, auth, salt } => {
                let mut iv = [0u8; 16];
                iv[..14].copy_from_slice(salt);
                for i in 0..4 {
                    iv[4 + i] ^= ssrc[i];
                    // The 31-bit index takes the place of the RTP packet index.
                    iv[10 + i] ^= ((index & 0x7fff_ffff).to_be_bytes())[i];
                }
                key.less_safe_encrypt(
                    &mut buf[8..len],
                    EncryptionContext::Iv128(FixedLength::from(iv)),
                )
                .expect("AES-CTR");
                buf[len..len + 4].copy_from_slice(&e_index);
                let tag = hmac::sign(auth, &buf[..len + 4]);
                buf[len + 4..len + 4 + HMAC_TAG_LEN].copy_from_slice(&tag.as_ref()[..HMAC_TAG_LEN]);
                len + 4 + HMAC_TAG_LEN
            }
            Cipher::Gcm { key, salt } => {
                // RFC 7714 §9.1: 00 00 || SSRC || 00 00 || index, XOR salt;
                // AAD = first 8 octets || E flag and index (§9.2).
                let mut iv = *salt;
                let idx = (index & 0x7fff_ffff).to_be_bytes();
                for i in 0..4 {
                    iv[2 + i] ^= ssrc[i];
                    iv[8 + i] ^= idx[i];
                }
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&buf[..8]);
                aad[8..].copy_from_slice(&e_index);
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(iv),
                        Aad::from(&aad),
                        &mut buf[8..len],
                    )
                    .expect("AES-GCM");
                buf[len..len + GCM_TAG_LEN].copy_from_slice(tag.as_ref());
                buf[len + GCM_TAG_LEN..len + GCM_TAG_LEN + 4].copy_from_slice(&e_index);
                len + GCM_TAG_LEN + 4
            }
        }
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

    /// RFC 3711 Appendix B.3 (key derivation).
    #[test]
    fn kdf_rfc3711_b3() {
        let key = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let mut enc = [0u8; 16];
        derive(&key, &salt, LABEL_RTP_ENC, &mut enc);
        assert_eq!(enc.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut s = [0u8; 14];
        derive(&key, &salt, LABEL_RTP_SALT, &mut s);
        assert_eq!(s.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        let mut a = [0u8; 20];
        derive(&key, &salt, LABEL_RTP_AUTH, &mut a);
        assert_eq!(a.to_vec(), hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"));
    }

    /// RFC 3711 Appendix B.2 (AES-CM keystream): SSRC 0, index 0, so
    /// encrypting zeros yields the keystream.
    #[test]
    fn aes_cm_keystream_rfc3711_b2() {
        let session_key = hex("2B7E151628AED2A6ABF7158809CF4F3C");
        let salt: [u8; 14] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap();
        let key = UnboundCipherKey::new(&AES_128, &session_key).unwrap();
        let ctx = SrtpTx {
            profile: Profile::Aes128CmSha1_80,
            rtp: Cipher::Cm {
                key: EncryptingKey::ctr(key).unwrap(),
                auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &[0; 20]),
                salt,
            },
            rtcp: Cipher::gcm(&[0; 16], [0; 12]),
        };
        let mut buf = vec![0u8; 12 + 48 + HMAC_TAG_LEN];
        buf[0] = 0x80;
        ctx.protect_rtp(&mut buf, 12, 60, 0);
        assert_eq!(
            buf[12..60].to_vec(),
            hex("E03EAD0935C95E80E166B16DD92B4EB4
                 D23513162B02D0F72A43A2FE4A5F97AB
                 41E95B3BB0A2E8DD477901E4FCA894C0")
        );
    }

    /// RFC 7714 §16.1.1 (RTP, AEAD_AES_128_GCM) and §17.1 (RTCP).
    #[test]
    fn gcm_rfc7714() {
        let key = hex("000102030405060708090a0b0c0d0e0f");
        let salt: [u8; 12] = hex("517569642070726f2071756f").try_into().unwrap();
        let ctx = SrtpTx {
            profile: Profile::AeadAes128Gcm,
            rtp: Cipher::gcm(&key, salt),
            rtcp: Cipher::gcm(&key, salt),
        };
        let plain = hex(
            "8040f17b8041f8d35501a0b2 47616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573",
        );
        let mut buf = plain.clone();
        buf.resize(plain.len() + 16, 0);
        let n = ctx.protect_rtp(&mut buf, 12, plain.len(), 0xf17b);
        assert_eq!(
            buf[..n].to_vec(),
            hex("8040f17b8041f8d35501a0b2 f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833899d7f27beb16a9152cf765ee4390cce")
        );

        let plain = hex(
            "81c8000d4d617273 4e5450314e545032 525450200000042a 0000e9304c756e61 deadbeefdeadbeefdeadbeefdeadbeefdeadbeef",
        );
        let mut buf = plain.clone();
        buf.resize(plain.len() + 20, 0);
        let n = ctx.protect_rtcp(&mut buf, plain.len(), 0x05d4);
        assert_eq!(
            buf[..n].to_vec(),
            hex("81c8000d4d617273 63e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1730d6fda4ce09b4686303ded0bb9275bc84aa45896cf4d2fc5abf87245d9eade800005d4")
        );
    }

    /// AES-CM + HMAC-SHA1 against a reference assembled from str0m's own
    /// public SRTP pieces (its IV layout and its tag-with-ROC function, with
    /// the aws-lc-rs cipher and HMAC behind str0m's provider): random keys,
    /// SSRCs, packet indexes (ROC > 0 included) and payloads. Peers between
    /// str0m instances negotiate AES-GCM, so this is what covers AES-CM.
    #[test]
    fn aes_cm_matches_str0m_pieces() {
        use proptest::prelude::*;
        use str0m::crypto::Aes128CmSha1_80 as Cm;
        let provider = str0m::crypto::from_feature_flags();
        proptest!(|(master in any::<[u8; 16]>(), msalt in any::<[u8; 14]>(),
                    ssrc in any::<u32>(), index in 0u64..(1 << 48), srtcp in 0u32..(1 << 31),
                    payload in prop::collection::vec(any::<u8>(), 1..300))| {
            let mut k = [0u8; 16];
            let mut a = [0u8; 20];
            let mut salt = [0u8; 14];
            let tx = SrtpTx::from_master(Profile::Aes128CmSha1_80, &master, &msalt);
            let hmac = |key: &[u8], parts: &[&[u8]]| provider.sha1_hmac_provider.sha1_hmac(key, parts);

            // RTP
            derive(&master, &msalt, LABEL_RTP_ENC, &mut k);
            derive(&master, &msalt, LABEL_RTP_AUTH, &mut a);
            derive(&master, &msalt, LABEL_RTP_SALT, &mut salt);
            let mut header = vec![0x80u8, 111, 0, 0, 0, 0, 0, 0];
            header[2..4].copy_from_slice(&(index as u16).to_be_bytes());
            header.extend_from_slice(&ssrc.to_be_bytes());
            let mut reference = header.clone();
            reference.resize(12 + payload.len() + 15, 0);
            let mut cipher = provider.srtp_provider.aes_128_cm_sha1_80().create_cipher(k, true);
            cipher.encrypt(&Cm::rtp_iv(salt, ssrc, index), &payload, &mut reference[12..]).unwrap();
            Cm::rtp_hmac(hmac, &a, &mut reference, index, 12 + payload.len());
            reference.truncate(12 + payload.len() + HMAC_TAG_LEN);
            let mut ours = header.clone();
            ours.extend_from_slice(&payload);
            ours.resize(12 + payload.len() + HMAC_TAG_LEN, 0);
            let n = tx.protect_rtp(&mut ours, 12, 12 + payload.len(), index);
            prop_assert_eq!(n, ours.len());
            prop_assert_eq!(&ours, &reference);

            // RTCP: the SRTCP index takes the RTP index's place in the IV.
            derive(&master, &msalt, LABEL_RTCP_ENC, &mut k);
            derive(&master, &msalt, LABEL_RTCP_AUTH, &mut a);
            derive(&master, &msalt, LABEL_RTCP_SALT, &mut salt);
            let mut header = vec![0x80u8, 200, 0, 0];
            header.extend_from_slice(&ssrc.to_be_bytes());
            let mut reference = header.clone();
            reference.resize(8 + payload.len() + 15, 0);
            let mut cipher = provider.srtp_provider.aes_128_cm_sha1_80().create_cipher(k, true);
            cipher.encrypt(&Cm::rtp_iv(salt, ssrc, srtcp as u64), &payload, &mut reference[8..]).unwrap();
            reference.truncate(8 + payload.len());
            reference.extend_from_slice(&(0x8000_0000 | srtcp).to_be_bytes());
            let len = reference.len();
            reference.resize(len + HMAC_TAG_LEN, 0);
            Cm::rtcp_hmac(hmac, &a, &mut reference, len);
            let mut ours = header;
            ours.extend_from_slice(&payload);
            ours.resize(8 + payload.len() + 4 + HMAC_TAG_LEN, 0);
            let n = tx.protect_rtcp(&mut ours, 8 + payload.len(), srtcp);
            prop_assert_eq!(n, ours.len());
            prop_assert_eq!(&ours, &reference);
        });
    }

    /// AES-256-GCM (what str0m peers negotiate) against str0m's IV layouts and
    /// its provider's AEAD, with random ROCs and SRTCP indexes.
    #[test]
    fn gcm_matches_str0m_pieces() {
        use proptest::prelude::*;
        use str0m::crypto::AeadAes256Gcm as Gcm;
        let provider = str0m::crypto::from_feature_flags();
        proptest!(|(master in any::<[u8; 32]>(), msalt in any::<[u8; 12]>(),
                    ssrc in any::<u32>(), index in 0u64..(1 << 48), srtcp in 0u32..(1 << 31),
                    payload in prop::collection::vec(any::<u8>(), 1..300))| {
            let tx = SrtpTx::from_master(Profile::AeadAes256Gcm, &master, &msalt);
            let mut k = [0u8; 32];
            let mut salt = [0u8; 12];

            derive(&master, &msalt, LABEL_RTP_ENC, &mut k);
            derive(&master, &msalt, LABEL_RTP_SALT, &mut salt);
            let mut header = vec![0x80u8, 111, 0, 0, 0, 0, 0, 0];
            header[2..4].copy_from_slice(&(index as u16).to_be_bytes());
            header.extend_from_slice(&ssrc.to_be_bytes());
            let mut reference = header.clone();
            reference.resize(12 + payload.len() + 16, 0);
            let iv = Gcm::rtp_iv(salt, ssrc, (index >> 16) as u32, index as u16);
            let mut cipher = provider.srtp_provider.aead_aes_256_gcm().create_cipher(k, true);
            cipher.encrypt(&iv, &header, &payload, &mut reference[12..]).unwrap();
            let mut ours = header.clone();
            ours.extend_from_slice(&payload);
            ours.resize(12 + payload.len() + 16, 0);
            tx.protect_rtp(&mut ours, 12, 12 + payload.len(), index);
            prop_assert_eq!(&ours, &reference);

            derive(&master, &msalt, LABEL_RTCP_ENC, &mut k);
            derive(&master, &msalt, LABEL_RTCP_SALT, &mut salt);
            let mut header = vec![0x80u8, 200, 0, 0];
            header.extend_from_slice(&ssrc.to_be_bytes());
            let e_index = (0x8000_0000 | srtcp).to_be_bytes();
            let mut aad = header.clone();
            aad.extend_from_slice(&e_index);
            let mut reference = header.clone();
            reference.resize(8 + payload.len() + 16, 0);
            let mut cipher = provider.srtp_provider.aead_aes_256_gcm().create_cipher(k, true);
            cipher.encrypt(&Gcm::rtcp_iv(salt, ssrc, srtcp), &aad, &payload, &mut reference[8..]).unwrap();
            reference.extend_from_slice(&e_index);
            let mut ours = header;
            ours.extend_from_slice(&payload);
            ours.resize(8 + payload.len() + 20, 0);
            tx.protect_rtcp(&mut ours, 8 + payload.len(), srtcp);
            prop_assert_eq!(&ours, &reference);
        });
    }

    #[test]
    fn keying_material_halves() {
        // Client key, server key, client salt, server salt.
        let mut mat = vec![1u8; 16];
        mat.extend([2u8; 16]);
        mat.extend([3u8; 14]);
        mat.extend([4u8; 14]);
        let client = SrtpTx::from_keying_material(Profile::Aes128CmSha1_80, &mat, true).unwrap();
        let server = SrtpTx::from_keying_material(Profile::Aes128CmSha1_80, &mat, false).unwrap();
        let mut a = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 7, 7, 7, 7];
        a.resize(26, 0);
        let mut b = a.clone();
        client.protect_rtp(&mut a, 12, 16, 1);
        server.protect_rtp(&mut b, 12, 16, 1);
        assert_ne!(a, b, "the two directions must use different keys");
        let expected = SrtpTx::from_master(Profile::Aes128CmSha1_80, &[2; 16], &[4; 14]);
        let mut c = b.clone();
        c[12..].copy_from_slice(&[7, 7, 7, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        expected.protect_rtp(&mut c, 12, 16, 1);
        assert_eq!(b, c);
        assert!(SrtpTx::from_keying_material(Profile::AeadAes128Gcm, &mat, true).is_err());
    }
}
