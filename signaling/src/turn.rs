//! TURN credentials for voice clients whose networks block direct UDP.
//!
//! Confab does not run a TURN server; it hands out credentials for one (coturn) in the
//! time-limited shared-secret scheme coturn calls `use-auth-secret` (the "REST API for access to
//! TURN services" draft): the username is `<expiry, unix seconds>:<user id>` and the password is
//! `base64(HMAC-SHA1(secret, username))`. The TURN server recomputes the HMAC from the same
//! `static-auth-secret` and refuses expired usernames, so nothing is stored or exchanged between
//! Confab and the TURN server, and a leaked credential dies on its own.
//!
//! HMAC-SHA1 is what that scheme fixes (coturn accepts nothing else for it); it comes from
//! aws-lc-rs, the crypto library the rest of the build uses.

use aws_lc_rs::hmac;
use base64::Engine;
use confab_chat::UserId;
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use utoipa::ToSchema;

/// Default lifetime of a credential. A TURN allocation is refreshed with the same credential
/// for as long as the call lasts, so this bounds the length of a relayed call; clients fetch new
/// credentials for every join.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// `--turn-url`, `--turn-secret`, `--turn-ttl`, validated.
#[derive(Clone)]
pub struct TurnSettings {
    urls: Vec<String>,
    secret: String,
    ttl: Duration,
}

impl std::fmt::Debug for TurnSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret: configs are logged.
        f.debug_struct("TurnSettings")
            .field("urls", &self.urls)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The shortest secret accepted: the credentials are only as strong as it.
pub const MIN_SECRET_LEN: usize = 16;

impl TurnSettings {
    /// None when no TURN URL is configured; an error for a half or malformed configuration.
    pub fn new(
        urls: &[String],
        secret: Option<&str>,
        ttl: Duration,
    ) -> anyhow::Result<Option<Self>> {
        let urls: Vec<String> = urls
            .iter()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect();
        let secret = secret.filter(|s| !s.is_empty());
        if urls.is_empty() {
            anyhow::ensure!(
                secret.is_none(),
                "--turn-secret needs --turn-url (the TURN server's turn:/turns: URLs)"
            );
            return Ok(None);
        }
        for u in &urls {
            check_url(u)?;
        }
        let Some(secret) = secret else {
            anyhow::bail!(
                "--turn-url needs --turn-secret (coturn's static-auth-secret, with use-auth-secret)"
            );
        };
        anyhow::ensure!(
            secret.len() >= MIN_SECRET_LEN,
            "--turn-secret must be at least {MIN_SECRET_LEN} characters (e.g. openssl rand -hex 32)"
        );
        anyhow::ensure!(
            (60..=7 * 24 * 3600).contains(&ttl.as_secs()),
            "--turn-ttl must be 60..=604800 seconds"
        );
        Ok(Some(TurnSettings {
            urls,
            secret: secret.to_string(),
            ttl,
        }))
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Credentials for `user`, valid until `now + ttl`.
    pub fn credentials(&self, user: UserId, now: SystemTime) -> IceServers {
        let expires = now.duration_since(UNIX_EPOCH).unwrap_or_default() + self.ttl;
        let username = format!("{}:{user}", expires.as_secs());
        let credential = credential(&self.secret, &username);
        IceServers {
            ice_servers: vec![IceServer {
                urls: self.urls.clone(),
                username: Some(username),
                credential: Some(credential),
            }],
            expires_at: Some(expires.as_secs()),
        }
    }
}

/// `base64(HMAC-SHA1(secret, username))`.
pub fn credential(secret: &str, username: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = hmac::sign(&key, username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

/// A TURN URL as browsers take them (RFC 7065): `turn:` or `turns:`, a host, an optional port
/// and `?transport=udp|tcp`.
fn check_url(url: &str) -> anyhow::Result<()> {
    let rest = url
        .strip_prefix("turns:")
        .or_else(|| url.strip_prefix("turn:"))
        .ok_or_else(|| anyhow::anyhow!("--turn-url {url:?}: must start with turn: or turns:"))?;
    let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
    anyhow::ensure!(
        !hostport.is_empty()
            && !hostport.starts_with("//")
            && !hostport.contains(char::is_whitespace),
        "--turn-url {url:?}: expected turn:HOST[:PORT][?transport=udp|tcp] (no //)"
    );
    anyhow::ensure!(
        query.is_empty() || query == "transport=udp" || query == "transport=tcp",
        "--turn-url {url:?}: the only query is ?transport=udp or ?transport=tcp"
    );
    Ok(())
}

/// What `GET /voice/ice-servers` returns: the `iceServers` of an `RTCPeerConnection`.
#[derive(Debug, Serialize, ToSchema)]
pub struct IceServers {
    /// Empty when this server has no TURN server configured (direct UDP only).
    pub ice_servers: Vec<IceServer>,
    /// When the credentials stop working (unix seconds); absent without TURN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl IceServers {
    pub fn none() -> Self {
        IceServers {
            ice_servers: Vec::new(),
            expires_at: None,
        }
    }
}

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Serialize, ToSchema)]
pub struct IceServer {
    /// `turn:` / `turns:` URLs of one TURN server.
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_chat::Snowflake;

    const SECRET: &str = "north-wind-harbour-7";

    fn settings() -> TurnSettings {
        TurnSettings::new(
            &[
                "turn:turn.example.org:3478?transport=udp".into(),
                "turns:turn.example.org:5349?transport=tcp".into(),
            ],
            Some(SECRET),
            Duration::from_secs(3600),
        )
        .unwrap()
        .unwrap()
    }

    #[test]
    fn credential_is_the_hmac_coturn_computes() {
        // RFC 2202's HMAC-SHA1 test case 2 (key "Jefe"), base64 of its digest
        // effcdf6ae5eb2fa2d27416d5f184df9c259a7c79.
        assert_eq!(
            credential("Jefe", "what do ya want for nothing?"),
            "7/zfauXrL6LSdBbV8YTfnCWafHk="
        );
    }

    #[test]
    fn username_carries_expiry_and_user() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let user = UserId::new(Snowflake(42));
        let got = settings().credentials(user, now);
        assert_eq!(got.expires_at, Some(1_800_003_600));
        let server = &got.ice_servers[0];
        assert_eq!(server.urls.len(), 2);
        let username = server.username.as_deref().unwrap();
        assert_eq!(username, "1800003600:42");
        assert_eq!(
            server.credential.as_deref().unwrap(),
            credential(SECRET, username)
        );
        // Another user or another time: another credential.
        let other = settings().credentials(UserId::new(Snowflake(43)), now);
        assert_ne!(other.ice_servers[0].credential, server.credential);
    }

    #[test]
    fn configuration_errors_are_clear() {
        let ttl = DEFAULT_TTL;
        assert!(TurnSettings::new(&[], None, ttl).unwrap().is_none());
        let url = vec!["turn:127.0.0.1:3478".to_string()];
        let e = TurnSettings::new(&url, None, ttl).unwrap_err().to_string();
        assert!(e.contains("--turn-secret"), "{e}");
        let e = TurnSettings::new(&[], Some(SECRET), ttl)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--turn-url"), "{e}");
        let e = TurnSettings::new(&url, Some("short"), ttl)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least"), "{e}");
        for bad in [
            "stun:x:3478",
            "turn://x:3478",
            "turn:x?transport=sctp",
            "http://x",
            "turn:",
        ] {
            let e = TurnSettings::new(&[bad.to_string()], Some(SECRET), ttl);
            assert!(e.is_err(), "{bad} accepted");
        }
        let e = TurnSettings::new(&url, Some(SECRET), Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--turn-ttl"), "{e}");
        let ok = TurnSettings::new(&url, Some(SECRET), ttl).unwrap().unwrap();
        assert!(
            !format!("{ok:?}").contains(SECRET),
            "the secret is never printed"
        );
    }
}
