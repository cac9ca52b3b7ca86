//! Password hashing: argon2id with OWASP's parameters (19 MiB, t=2, p=1). Each hash takes 19 MiB,
//! so concurrent hashing is capped at the number of cores — a burst of registrations must not
//! take gigabytes — and runs on the blocking pool, off the async workers.

use crate::{ChatError, ChatResult};
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::Arc;
use tokio::sync::Semaphore;

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 128;

pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when a user does not exist so that login
    /// takes the same time either way.
    dummy: std::sync::OnceLock<String>,
}

fn argon() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 params");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

impl PasswordHasher {
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            permits: Arc::new(Semaphore::new(cores)),
            dummy: std::sync::OnceLock::new(),
        }
    }

    pub async fn hash(&self, password: &str) -> ChatResult<String> {
        let _permit = self.permits.acquire().await.map_err(anyhow::Error::from)?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            argon()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| ChatError::Internal(anyhow::anyhow!("hashing failed: {e}")))
        })
        .await
        .map_err(anyhow::Error::from)?
    }

    /// Verifies `password` against `hash`; with no hash (unknown user) verifies against a dummy
    /// so the answer takes as long and is always false.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> ChatResult<bool> {
        let known = hash.is_some();
        let hash = match hash {
            Some(h) => h.to_owned(),
            None => match self.dummy.get() {
                Some(d) => d.clone(),
                None => {
                    let d = self.hash("not-a-real-password-7f3a").await?;
                    let _ = self.dummy.set(d.clone());
                    d
                }
            },
        };
        let _permit = self.permits.acquire().await.map_err(anyhow::Error::from)?;
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| {
                    argon()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .map_err(anyhow::Error::from)?;
        Ok(ok && known)
    }
}

impl Default for PasswordHasher {
    fn default() -> Self {
        Self::new()
    }
}

/// Checks a new password: length in characters and not one of the most common passwords.
pub fn validate(password: &str, username: &str) -> Result<(), &'static str> {
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err("must be at least 8 characters");
    }
    if len > MAX_LEN {
        return Err("must be at most 128 characters");
    }
    let lower = password.to_lowercase();
    if COMMON.contains(&lower.as_str()) {
        return Err("is too common; choose another");
    }
    if lower == username.to_lowercase() {
        return Err("must not be your username");
    }
    Ok(())
}

/// The most common leaked passwords of 8 or more characters (lower-case).
const COMMON: &[&str] = &[
    "password",
    "12345678",
    "123456789",
    "1234567890",
    "12345678910",
    "qwertyuiop",
    "password1",
    "password123",
    "iloveyou",
    "11111111",
    "00000000",
    "123123123",
    "abc12345",
    "qwerty123",
    "1q2w3e4r",
    "1q2w3e4r5t",
    "qwe12345",
    "zaq12wsx",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "welcome1",
    "welcome123",
    "superman",
    "starwars",
    "trustno1",
    "whatever",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "letmein1",
    "letmein123",
    "admin123",
    "administrator",
    "changeme",
    "computer",
    "internet",
    "michelle",
    "jennifer",
    "qwertyui",
    "asdfghjkl",
    "asdfasdf",
    "zxcvbnm1",
    "1qaz2wsx",
    "q1w2e3r4",
    "q1w2e3r4t5",
    "88888888",
    "87654321",
    "99999999",
    "12341234",
    "11223344",
    "12344321",
    "123qweasd",
    "qweasdzxc",
    "a1b2c3d4",
    "aa123456",
    "987654321",
    "147258369",
    "789456123",
    "159753456",
    "password12",
    "dragon123",
    "monkey123",
    "shadow123",
    "master123",
    "mustang1",
    "michael1",
    "charlie1",
    "football1",
    "baseball1",
    "iloveyou1",
    "princess1",
    "sunshine1",
    "jordan23",
    "liverpool",
    "chelsea1",
    "arsenal1",
    "pokemon1",
    "minecraft",
    "fortnite",
    "pass1234",
    "test1234",
    "testtest",
    "hello123",
    "helloworld",
    "loveyou1",
    "lovely123",
    "blink182",
    "samsung1",
    "qwerty12",
    "qwerty1234",
    "1234qwer",
    "abcd1234",
    "abcdefgh",
    "abcdefg1",
    "asdf1234",
    "zxcvbnm123",
    "secret123",
    "default1",
    "freedom1",
    "whatever1",
    "killer12",
    "soccer12",
    "hockey12",
    "batman123",
    "spiderman",
    "starwars1",
    "matrix123",
    "access14",
    "confab123",
    "letmeinplease",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_short_long_common_and_username() {
        assert!(validate("short", "bob").is_err());
        assert!(validate(&"x".repeat(129), "bob").is_err());
        assert!(validate("Password123", "bob").is_err());
        assert!(validate("bobbybobby", "BobbyBobby").is_err());
        assert!(validate("correct horse battery", "bob").is_ok());
        // Length counts characters, not bytes.
        assert!(validate("ééééééé", "bob").is_err());
        assert!(validate("éééééééé", "bob").is_ok());
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let h = PasswordHasher::new();
        let hash = h.hash("correct horse battery").await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(h
            .verify("correct horse battery", Some(&hash))
            .await
            .unwrap());
        assert!(!h.verify("wrong horse battery", Some(&hash)).await.unwrap());
        assert!(!h.verify("correct horse battery", None).await.unwrap());
    }
}
