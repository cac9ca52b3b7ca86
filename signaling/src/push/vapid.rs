//! VAPID (RFC 8292): the server identifies itself to push services with an ES256-signed JWT
//! and its public key, `Authorization: vapid t=<jwt>, k=<key>`. Browsers bind each
//! subscription to the public key given to `pushManager.subscribe`, so the key pair is made
//! once and kept in PostgreSQL (every api node of a cluster signs with the same key).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::json;

/// How long a signed token is valid (RFC 8292 allows at most 24 h).
pub const TOKEN_LIFETIME_SECS: i64 = 12 * 3600;

pub struct Vapid {
    key: EcdsaKeyPair,
    /// The public key, base64url of the uncompressed point (what `k=` and browsers take).
    public_b64: String,
    /// The contact in the token's `sub` (a mailto: or https: URL).
    subject: String,
}

impl Vapid {
    /// A new private key, PKCS#8 DER (what the database keeps).
    pub fn generate_pkcs8() -> Vec<u8> {
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .expect("P-256 key generation")
            .as_ref()
            .to_vec()
    }

    pub fn from_pkcs8(pkcs8: &[u8], subject: String) -> anyhow::Result<Self> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map_err(|e| anyhow::anyhow!("stored VAPID key rejected: {e}"))?;
        let public_b64 = B64.encode(key.public_key().as_ref());
        Ok(Vapid {
            key,
            public_b64,
            subject,
        })
    }

    /// The application server key browsers subscribe with.
    pub fn public_key(&self) -> &str {
        &self.public_b64
    }

    /// A signed token for a push service's origin (`aud`), valid until `now + lifetime`.
    pub fn token(&self, audience: &str, now_secs: i64) -> String {
        let header = B64.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = B64.encode(
            json!({"aud": audience, "exp": now_secs + TOKEN_LIFETIME_SECS, "sub": self.subject})
                .to_string(),
        );
        let input = format!("{header}.{claims}");
        // FIXED signing gives JWS's r||s form directly (64 bytes), not DER.
        let sig = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("ECDSA signing");
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    /// The `Authorization` header for a request to `endpoint`.
    pub fn authorization(&self, endpoint: &url::Url, now_secs: i64) -> String {
        let audience = endpoint.origin().ascii_serialization();
        format!(
            "vapid t={}, k={}",
            self.token(&audience, now_secs),
            self.public_b64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};

    #[derive(serde::Deserialize)]
    struct Claims {
        aud: String,
        exp: i64,
        sub: String,
    }

    #[test]
    fn token_verifies_with_the_public_key() {
        let vapid =
            Vapid::from_pkcs8(&Vapid::generate_pkcs8(), "mailto:ops@example.org".into()).unwrap();
        let now = chrono::Utc::now().timestamp();
        let endpoint = url::Url::parse("https://push.example.net:8443/send/abc?x=1").unwrap();
        let header = vapid.authorization(&endpoint, now);
        let rest = header.strip_prefix("vapid t=").unwrap();
        let (jwt, k) = rest.split_once(", k=").unwrap();
        assert_eq!(k, vapid.public_key());
        let point = B64.decode(k).unwrap();
        assert_eq!((point.len(), point[0]), (65, 4));
        let key =
            DecodingKey::from_ec_components(&B64.encode(&point[1..33]), &B64.encode(&point[33..]))
                .unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["https://push.example.net:8443"]);
        v.set_required_spec_claims(&["exp", "aud", "sub"]);
        let claims = decode::<Claims>(jwt, &key, &v).unwrap().claims;
        assert_eq!(claims.aud, "https://push.example.net:8443");
        assert_eq!(claims.sub, "mailto:ops@example.org");
        assert!(claims.exp > now && claims.exp <= now + 24 * 3600);
        // Another key's signature does not verify; nor does another audience.
        let other = Vapid::from_pkcs8(&Vapid::generate_pkcs8(), "mailto:x@y".into()).unwrap();
        let (forged, _) = other
            .authorization(&endpoint, now)
            .strip_prefix("vapid t=")
            .unwrap()
            .split_once(", k=")
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap();
        assert!(decode::<Claims>(&forged, &key, &v).is_err());
        v.set_audience(&["https://elsewhere.example"]);
        assert!(decode::<Claims>(jwt, &key, &v).is_err());
    }
}
