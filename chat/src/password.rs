//! Password hashing: argon2id with OWASP's parameters (19 MiB, t=2, p=1). Each hash takes 19 MiB,
//! so concurrent hashing is capped at the number of cores — a burst of registrations must not
//! take gigabytes — and runs on the blocking pool, off the async workers.
//!
//! The 19 MiB working memory is reused from hash to hash rather than allocated each time
//! (which faulted in ~4,900 fresh pages per login). At most `RETAINED` memories are kept, so
//! the resident cost stays bounded on a many-core machine: up to 4 × 19 MiB.

use crate::{ChatError, ChatResult};
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 128;

/// OWASP's argon2id parameters: 19 MiB, 2 passes, 1 lane.
const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;
/// Bytes of hash output (argon2's default).
const OUTPUT_LEN: usize = 32;
/// Working memories kept between hashes; a burst beyond this many allocates and frees its own.
const RETAINED: usize = 4;

pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// Working memories not in use (at most `RETAINED`). A hash holds a permit first, so
    /// this lock is never held for long and never waited on by more than the permits.
    memories: Arc<Mutex<Vec<Vec<Block>>>>,
    /// A hash of a random password, verified against when a user does not exist so that login
    /// takes the same time either way.
    dummy: std::sync::OnceLock<String>,
}

fn params() -> Params {
    Params::new(M_COST_KIB, T_COST, P_COST, Some(OUTPUT_LEN)).expect("valid argon2 params")
}

/// Blocks our own parameters need.
fn block_count() -> usize {
    params().block_count()
}

/// A fresh argon2id hash of `password` in PHC form, computed in `memory`.
fn hash_in(memory: &mut [Block], password: &[u8]) -> ChatResult<String> {
    let fail =
        |e: &dyn std::fmt::Display| ChatError::Internal(anyhow::anyhow!("hashing failed: {e}"));
    let salt = argon2::password_hash::try_generate_salt().map_err(|e| fail(&e))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
    let mut out = [0u8; OUTPUT_LEN];
    argon
        .hash_password_into_with_memory(password, &salt, &mut out, memory)
        .map_err(|e| fail(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params()).map_err(|e| fail(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| fail(&e))?),
        hash: Some(Output::new(&out).map_err(|e| fail(&e))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `hash`, computed in `memory` when the hash's
/// parameters fit in it (a hash made with larger ones gets its own allocation). Anything
/// unparsable or unsupported is simply no match.
fn verify_in(memory: &mut [Block], password: &[u8], hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let blocks = params.block_count();
    let argon = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    let done = if blocks <= memory.len() {
        argon.hash_password_into_with_memory(
            password,
            salt.as_ref(),
            &mut out,
            &mut memory[..blocks],
        )
    } else {
        argon.hash_password_into(password, salt.as_ref(), &mut out)
    };
    // `Output`'s equality is constant-time.
    done.is_ok() && Output::new(&out).is_ok_and(|o| &o == expected)
}

impl PasswordHasher {
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            permits: Arc::new(Semaphore::new(cores)),
            memories: Arc::new(Mutex::new(Vec::with_capacity(cores.min(RETAINED)))),
            dummy: std::sync::OnceLock::new(),
        }
    }

    /// Runs `f` on the blocking pool with a working memory, under a permit.
    async fn with_memory<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> ChatResult<T> {
        let _permit = self.permits.acquire().await.map_err(anyhow::Error::from)?;
        let memories = self.memories.clone();
        let out = tokio::task::spawn_blocking(move || {
            let taken = memories.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut memory = taken.unwrap_or_else(|| vec![Block::default(); block_count()]);
            let out = f(&mut memory);
            let mut kept = memories.lock().unwrap_or_else(|p| p.into_inner());
            if kept.len() < RETAINED {
                kept.push(memory);
            }
            out
        })
        .await
        .map_err(anyhow::Error::from)?;
        Ok(out)
    }

    pub async fn hash(&self, password: &str) -> ChatResult<String> {
        let password = password.to_owned();
        self.with_memory(move |memory| hash_in(memory, password.as_bytes()))
            .await?
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
        let password = password.to_owned();
        let ok = self
            .with_memory(move |memory| verify_in(memory, password.as_bytes(), &hash))
            .await?;
        Ok(ok && known)
    }

    /// Working memories allocated so far (at most one per permit).
    #[cfg(test)]
    fn memories(&self) -> usize {
        self.memories.lock().unwrap().len()
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

    /// Hashes made in reused (dirty) working memory are the same argon2id as the library's
    /// own: each verifies the other's, and wrong passwords still fail.
    #[tokio::test]
    async fn reused_memory_agrees_with_the_library() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let h = PasswordHasher::new();
        let library = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
        for pw in [
            "correct horse battery",
            "another horse battery",
            "ééééééééé",
        ] {
            // Ours (after earlier hashes left their blocks in the memory), checked by the library.
            let ours = h.hash(pw).await.unwrap();
            let parsed = PasswordHash::new(&ours).unwrap();
            assert!(
                library.verify_password(pw.as_bytes(), &parsed).is_ok(),
                "{ours}"
            );
            assert!(library
                .verify_password(b"wrong password!", &parsed)
                .is_err());
            // The library's, checked by ours in reused memory.
            let theirs = library.hash_password(pw.as_bytes()).unwrap().to_string();
            assert!(h.verify(pw, Some(&theirs)).await.unwrap(), "{theirs}");
            assert!(!h.verify("wrong password!", Some(&theirs)).await.unwrap());
        }
        // Other parameters (smaller and larger than ours) still verify; garbage does not.
        for (m, t) in [(8 * 1024, 3), (24 * 1024, 1)] {
            let other = Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(m, t, 1, None).unwrap(),
            );
            let hash = other.hash_password(b"pw other params").unwrap().to_string();
            assert!(
                h.verify("pw other params", Some(&hash)).await.unwrap(),
                "{hash}"
            );
            assert!(!h.verify("pw other paramz", Some(&hash)).await.unwrap());
        }
        for bad in ["", "x", "$argon2id$v=19$m=19456,t=2,p=1$bad", "$md5$abc"] {
            assert!(!h.verify("correct horse battery", Some(bad)).await.unwrap());
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        assert!(
            h.memories() <= cores.min(RETAINED),
            "one memory per permit at most"
        );
        assert!(h.memories() >= 1, "kept for the next hash");
    }
}
