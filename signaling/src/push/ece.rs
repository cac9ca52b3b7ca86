//! Web Push message encryption: RFC 8291 on top of the `aes128gcm` content coding of
//! RFC 8188, with aws-lc-rs (the primitives the rest of the build already uses) for ECDH
//! P-256, HMAC-SHA-256 and AES-128-GCM.
//!
//! A notification is one record: the browser's 4 KiB limit on push payloads is far above
//! what we send (the body is truncated by the caller), so there is never a second record.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, ECDH_P256};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// The record size announced in the header (the payload is always one record below it).
const RECORD_SIZE: u32 = 4096;
/// Largest plaintext accepted: a record holds `RECORD_SIZE` bytes, less the delimiter and tag.
pub const MAX_PLAINTEXT: usize = RECORD_SIZE as usize - 17;
/// An uncompressed P-256 point.
pub const PUBLIC_KEY_LEN: usize = 65;
/// The browser's auth secret.
pub const AUTH_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EceError {
    #[error("the browser's public key is not a P-256 point")]
    BadPublicKey,
    #[error("the payload is too large for one record")]
    TooLarge,
    #[error("malformed or undecryptable message")]
    Invalid,
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    let tag = ctx.sign();
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// The content encryption key and nonce (RFC 8291 §3.4, RFC 8188 §2.2–2.3), from the ECDH
/// secret, the auth secret, both public keys and the salt.
fn derive(
    ecdh_secret: &[u8],
    auth: &[u8],
    ua_public: &[u8],
    as_public: &[u8],
    salt: &[u8],
) -> ([u8; 16], [u8; 12]) {
    // HKDF-Extract(auth, ecdh) then HKDF-Expand(..., "WebPush: info" 0 ua as, 32): one block.
    let prk_key = hmac_sha256(auth, &[ecdh_secret]);
    let ikm = hmac_sha256(&prk_key, &[b"WebPush: info\0", ua_public, as_public, &[1]]);
    let prk = hmac_sha256(salt, &[&ikm]);
    let cek = hmac_sha256(&prk, &[b"Content-Encoding: aes128gcm\0", &[1]]);
    let nonce = hmac_sha256(&prk, &[b"Content-Encoding: nonce\0", &[1]]);
    let mut k = [0u8; 16];
    k.copy_from_slice(&cek[..16]);
    let mut n = [0u8; 12];
    n.copy_from_slice(&nonce[..12]);
    (k, n)
}

/// Encrypts `plaintext` for a browser (its `p256dh` key and `auth` secret), with a fresh
/// ephemeral key and salt. Returns the request body: header, then the one record.
pub fn encrypt(ua_public: &[u8], auth: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, EceError> {
    let rng = SystemRandom::new();
    let mut salt = [0u8; 16];
    rng.fill(&mut salt).map_err(|_| EceError::Invalid)?;
    let as_private = PrivateKey::generate(&ECDH_P256).map_err(|_| EceError::Invalid)?;
    encrypt_with(ua_public, auth, plaintext, &as_private, &salt)
}

/// [`encrypt`] with the sender's key and salt given (the RFC's test vector fixes both).
pub fn encrypt_with(
    ua_public: &[u8],
    auth: &[u8],
    plaintext: &[u8],
    as_private: &PrivateKey,
    salt: &[u8; 16],
) -> Result<Vec<u8>, EceError> {
    if ua_public.len() != PUBLIC_KEY_LEN || auth.len() != AUTH_LEN {
        return Err(EceError::BadPublicKey);
    }
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EceError::TooLarge);
    }
    let as_public = as_private
        .compute_public_key()
        .map_err(|_| EceError::Invalid)?;
    let as_public = as_public.as_ref();
    let secret = agreement::agree(
        as_private,
        UnparsedPublicKey::new(&ECDH_P256, ua_public),
        EceError::BadPublicKey,
        |s| Ok(s.to_vec()),
    )?;
    let (cek, nonce) = derive(&secret, auth, ua_public, as_public, salt);
    // The last (and only) record ends with the delimiter 0x02 and no padding.
    let mut record = Vec::with_capacity(plaintext.len() + 17);
    record.extend_from_slice(plaintext);
    record.push(2);
    let key =
        LessSafeKey::new(UnboundKey::new(&aead::AES_128_GCM, &cek).map_err(|_| EceError::Invalid)?);
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::empty(),
        &mut record,
    )
    .map_err(|_| EceError::Invalid)?;
    let mut body = Vec::with_capacity(16 + 4 + 1 + as_public.len() + record.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(as_public.len() as u8);
    body.extend_from_slice(as_public);
    body.extend_from_slice(&record);
    Ok(body)
}

/// The browser's side: decrypts a one-record message with the browser's private key (raw
/// 32-byte scalar) and auth secret. Used by tests to read what was sent.
pub fn decrypt(ua_private: &[u8], auth: &[u8], body: &[u8]) -> Result<Vec<u8>, EceError> {
    let ua_private =
        PrivateKey::from_private_key(&ECDH_P256, ua_private).map_err(|_| EceError::Invalid)?;
    let ua_public = ua_private
        .compute_public_key()
        .map_err(|_| EceError::Invalid)?;
    if body.len() < 21 {
        return Err(EceError::Invalid);
    }
    let salt = &body[..16];
    let idlen = body[20] as usize;
    if body.len() < 21 + idlen + 17 {
        return Err(EceError::Invalid);
    }
    let as_public = &body[21..21 + idlen];
    let secret = agreement::agree(
        &ua_private,
        UnparsedPublicKey::new(&ECDH_P256, as_public),
        EceError::Invalid,
        |s| Ok(s.to_vec()),
    )?;
    let (cek, nonce) = derive(&secret, auth, ua_public.as_ref(), as_public, salt);
    let key =
        LessSafeKey::new(UnboundKey::new(&aead::AES_128_GCM, &cek).map_err(|_| EceError::Invalid)?);
    let mut record = body[21 + idlen..].to_vec();
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::empty(),
            &mut record,
        )
        .map_err(|_| EceError::Invalid)?;
    // Strip the padding: zeros after the last record's delimiter 0x02.
    let end = plain
        .iter()
        .rposition(|&b| b != 0)
        .ok_or(EceError::Invalid)?;
    if plain[end] != 2 {
        return Err(EceError::Invalid);
    }
    Ok(plain[..end].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;

    fn d(s: &str) -> Vec<u8> {
        B64.decode(s).unwrap()
    }

    // RFC 8291 Appendix A, verbatim.
    const PLAINTEXT: &str = "When I grow up, I want to be a watermelon";
    const AS_PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
    const AS_PUBLIC: &str =
        "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
    const UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
    const UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
    const BODY: &str = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

    #[test]
    fn rfc8291_encrypts_to_the_exact_bytes() {
        let as_private = PrivateKey::from_private_key(&ECDH_P256, &d(AS_PRIVATE)).unwrap();
        assert_eq!(
            as_private.compute_public_key().unwrap().as_ref(),
            &d(AS_PUBLIC)[..]
        );
        let salt: [u8; 16] = d(SALT).try_into().unwrap();
        let body = encrypt_with(
            &d(UA_PUBLIC),
            &d(AUTH),
            PLAINTEXT.as_bytes(),
            &as_private,
            &salt,
        )
        .unwrap();
        assert_eq!(B64.encode(&body), BODY);
    }

    #[test]
    fn rfc8291_example_decrypts() {
        let plain = decrypt(&d(UA_PRIVATE), &d(AUTH), &d(BODY)).unwrap();
        assert_eq!(plain, PLAINTEXT.as_bytes());
        // A wrong auth secret does not open it.
        let mut auth = d(AUTH);
        auth[0] ^= 1;
        assert_eq!(
            decrypt(&d(UA_PRIVATE), &auth, &d(BODY)),
            Err(EceError::Invalid)
        );
    }

    #[test]
    fn fresh_keys_round_trip_and_limits_hold() {
        let body = encrypt(&d(UA_PUBLIC), &d(AUTH), b"hello").unwrap();
        assert_eq!(decrypt(&d(UA_PRIVATE), &d(AUTH), &body).unwrap(), b"hello");
        // Salt and ephemeral key differ each time.
        assert_ne!(body, encrypt(&d(UA_PUBLIC), &d(AUTH), b"hello").unwrap());
        assert_eq!(
            encrypt(&d(UA_PUBLIC), &d(AUTH), &vec![0; MAX_PLAINTEXT + 1]),
            Err(EceError::TooLarge)
        );
        assert_eq!(
            encrypt(&[4; 65], &d(AUTH), b"x"),
            Err(EceError::BadPublicKey)
        );
    }
}
