//! Access tokens: short-lived HS256 JWTs. Validation pins the algorithm and requires `exp`,
//! `iss`, `aud` and `sub`, with a small leeway for clock skew. Each token names its login
//! session (`sid`), and every request checks that session is still active, so logging a device
//! out takes effect at once rather than when its token expires.

use crate::error::ApiError;
use crate::state::AppState;
use anyhow::Context;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use confab_chat::{SessionId, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const ISSUER: &str = "confab";
pub const AUDIENCE: &str = "confab-api";
const LEEWAY_SECS: u64 = 30;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    sid: String,
    iss: String,
    aud: String,
    iat: u64,
    exp: u64,
}

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: u64,
}

impl TokenKeys {
    pub fn new(secret: &[u8], ttl: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// The configured secret, or one generated once and kept in `<data_dir>/jwt.key` (mode 600).
    pub fn load_secret(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
        if let Some(s) = configured {
            anyhow::ensure!(s.len() >= 32, "--jwt-secret must be at least 32 characters");
            return Ok(s.as_bytes().to_vec());
        }
        let path = data_dir.join("jwt.key");
        if let Ok(bytes) = std::fs::read(&path) {
            if bytes.len() >= 32 {
                return Ok(bytes);
            }
        }
        std::fs::create_dir_all(data_dir)?;
        let mut key = vec![0u8; 64];
        rand::rng().fill_bytes(&mut key);
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        f.write_all(&key)?;
        Ok(key)
    }

    pub fn ttl(&self) -> u64 {
        self.ttl
    }

    pub fn mint(&self, user_id: UserId, session_id: SessionId) -> anyhow::Result<String> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            sid: session_id.to_string(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + self.ttl,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// Verifies signature, algorithm and claims; returns (user id, session id).
    pub fn verify(&self, token: &str) -> Option<(UserId, SessionId)> {
        if token.len() > 2048 {
            return None;
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        Some((data.claims.sub.parse().ok()?, data.claims.sid.parse().ok()?))
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub user_id: UserId,
    pub session_id: SessionId,
    /// Authenticated with a bot token (docs/bots.md).
    pub bot: bool,
}

pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// A bot token from `Authorization: Bot <token>`.
fn bot_token(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bot").then_some(token.trim())
}

/// Login sessions recently confirmed active, so that not every request asks the database.
///
/// An entry is bound to the session *and* its user: a validly signed token naming someone
/// else's session id is checked against the database (and refused) like any uncached one.
/// Ending a session leaves a tombstone for `SESSION_CACHE_TTL`, so a check that read
/// "active" from the database just before the revocation committed cannot re-cache it.
/// Sessions end through `end_sessions`, which reaches every node's cache; a node that misses
/// it still re-checks within `SESSION_CACHE_TTL`.
#[derive(Default)]
pub struct SessionCache {
    entries: dashmap::DashMap<SessionId, CacheEntry>,
}

#[derive(Clone, Copy)]
enum CacheEntry {
    Active {
        user_id: UserId,
        at: std::time::Instant,
    },
    Ended {
        at: std::time::Instant,
    },
}

impl CacheEntry {
    fn young(&self) -> bool {
        let at = match self {
            CacheEntry::Active { at, .. } | CacheEntry::Ended { at } => at,
        };
        at.elapsed() < SESSION_CACHE_TTL
    }
}

pub const SESSION_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);

impl SessionCache {
    /// True when `session` of `user_id` was confirmed active within the TTL.
    pub fn fresh(&self, session: SessionId, user_id: UserId) -> bool {
        self.entries.get(&session).is_some_and(|e| {
            matches!(*e, CacheEntry::Active { user_id: u, .. } if u == user_id) && e.young()
        })
    }

    /// Records that the database said `session` of `user_id` is active, unless it has just
    /// ended here.
    pub fn remember(&self, session: SessionId, user_id: UserId) {
        if self.entries.len() > 100_000 {
            self.entries.retain(|_, e| e.young());
        }
        let now = std::time::Instant::now();
        self.entries
            .entry(session)
            .and_modify(|e| {
                if !(matches!(e, CacheEntry::Ended { .. }) && e.young()) {
                    *e = CacheEntry::Active { user_id, at: now };
                }
            })
            .or_insert(CacheEntry::Active { user_id, at: now });
    }

    /// The session ended: never answer "active" for it again from here.
    pub fn forget(&self, session: SessionId) {
        self.entries.insert(
            session,
            CacheEntry::Ended {
                at: std::time::Instant::now(),
            },
        );
    }
}

impl AppState {
    /// Checks an access token and that its session is still active.
    ///
    /// A bot token (`Bot <token>`, or the bare `<id>.<secret>`: an access token always has two
    /// dots) is checked against its stored hash and its login session instead.
    pub async fn authenticate(&self, token: &str) -> Result<AuthUser, ApiError> {
        let bot = token
            .strip_prefix("Bot ")
            .or_else(|| (token.matches('.').count() == 1).then_some(token));
        if let Some(bot) = bot {
            let (user_id, session_id) = self.chat.authenticate_bot(bot.trim()).await?;
            self.limiter.remember_bot(bot.trim(), user_id);
            return Ok(AuthUser {
                user_id,
                session_id,
                bot: true,
            });
        }
        let (user_id, session_id) = self
            .tokens
            .verify(token)
            .ok_or(ApiError::Unauthorized("invalid or expired token"))?;
        if !self.sessions.fresh(session_id, user_id) {
            if !self.chat.session_active(user_id, session_id).await? {
                return Err(ApiError::Unauthorized("session ended"));
            }
            self.sessions.remember(session_id, user_id);
        }
        Ok(AuthUser {
            user_id,
            session_id,
            bot: false,
        })
    }
}

/// Makes revoked login sessions felt: every node drops its cached checks for them and closes
/// their gateway connections (close 4004, not resumable).
///
/// This is the one way a session ends. Each path revokes in the database first — logout and
/// `DELETE /users/@me/sessions/{id}` (`Chat::revoke_sessions`), refresh-token reuse (inside the
/// transaction that detected it), password change (every other session) and account deletion
/// (every session) — and hands the `RevokedSessions` it got here. The change travels on the
/// event bus, so with several nodes each one applies it to its own cache and connections.
pub async fn end_sessions(state: &AppState, revoked: confab_chat::accounts::RevokedSessions) {
    if revoked.session_ids.is_empty() {
        return;
    }
    state
        .publish(crate::bus::BusEvent::SessionsEnded(
            crate::bus::SessionsEnded {
                user_id: revoked.user_id,
                sessions: revoked.session_ids,
            },
        ))
        .await;
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(*user);
        }
        let user = match (bearer(parts), bot_token(parts)) {
            (Some(token), _) => state.authenticate(token).await?,
            (None, Some(token)) => state.authenticate(&format!("Bot {token}")).await?,
            (None, None) => return Err(ApiError::Unauthorized("missing bearer token")),
        };
        parts.extensions.insert(user);
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use confab_chat::Snowflake;

    fn keys() -> TokenKeys {
        TokenKeys::new(b"0123456789abcdef0123456789abcdef", 900)
    }

    #[test]
    fn cache_entries_are_bound_to_the_user_and_ended_ones_stay_ended() {
        let cache = SessionCache::default();
        let (alice, bob) = (UserId::new(Snowflake(1)), UserId::new(Snowflake(2)));
        let session = SessionId::new(Snowflake(10));
        assert!(!cache.fresh(session, alice));
        cache.remember(session, alice);
        assert!(cache.fresh(session, alice));
        assert!(
            !cache.fresh(session, bob),
            "another user's token, same session id"
        );
        cache.forget(session);
        assert!(!cache.fresh(session, alice));
        // A check that raced the revocation cannot bring it back.
        cache.remember(session, alice);
        assert!(!cache.fresh(session, alice));
    }

    #[test]
    fn round_trip() {
        let k = keys();
        let t = k
            .mint(UserId::new(Snowflake(42)), SessionId::new(Snowflake(7)))
            .unwrap();
        assert_eq!(
            k.verify(&t),
            Some((UserId::new(Snowflake(42)), SessionId::new(Snowflake(7))))
        );
    }

    #[test]
    fn rejects_tampered_alg_none_wrong_audience_and_expired() {
        let k = keys();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let t = k
            .mint(UserId::new(Snowflake(42)), SessionId::new(Snowflake(7)))
            .unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        // Tampered payload, original signature.
        let mut payload: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        payload["sub"] = "43".into();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(payload.to_string()),
            parts[2]
        );
        assert_eq!(k.verify(&tampered), None);
        // alg: none, no signature.
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert_eq!(k.verify(&none), None);
        // Wrong audience, correctly signed.
        let now = jsonwebtoken::get_current_timestamp();
        let mint = |aud: &str, exp: u64, iss: &str| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &Claims {
                    sub: "42".into(),
                    sid: "7".into(),
                    iss: iss.into(),
                    aud: aud.into(),
                    iat: now,
                    exp,
                },
                &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
            )
            .unwrap()
        };
        assert_eq!(k.verify(&mint("other", now + 60, ISSUER)), None);
        assert_eq!(k.verify(&mint(AUDIENCE, now + 60, "evil")), None);
        assert_eq!(k.verify(&mint(AUDIENCE, now - 120, ISSUER)), None);
        assert!(k.verify(&mint(AUDIENCE, now + 60, ISSUER)).is_some());
        // HS512 with the same secret is still refused: the algorithm is pinned.
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &Claims {
                sub: "42".into(),
                sid: "7".into(),
                iss: ISSUER.into(),
                aud: AUDIENCE.into(),
                iat: now,
                exp: now + 60,
            },
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap();
        assert_eq!(k.verify(&hs512), None);
        // Another key.
        let other = TokenKeys::new(b"ffffffffffffffffffffffffffffffff", 900);
        assert_eq!(
            k.verify(
                &other
                    .mint(UserId::new(Snowflake(42)), SessionId::new(Snowflake(7)))
                    .unwrap()
            ),
            None
        );
    }
}
