//! Accounts and logins: registration, password login, refresh-token rotation, sessions
//! (devices), and the user's own profile.
//!
//! Access tokens are minted by the caller (the HTTP layer); this module owns what is stored:
//! argon2id password hashes and SHA-256 hashes of refresh tokens. Every login is an
//! `auth_sessions` row; its refresh tokens form one family, so presenting an already rotated
//! token revokes the whole session.

use crate::error::{is_unique_violation, Validator};
use crate::model::{AuthSession, User};
use crate::{password, Chat, ChatError, ChatResult, ServerId, SessionId, UserId};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// How long a refresh token may wait to be used.
pub const REFRESH_TTL_DAYS: i64 = 30;

/// The result of a login, registration or refresh.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: User,
    pub session_id: SessionId,
    pub refresh_token: String,
}

/// Client details recorded with a session.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ProfilePatch {
    pub display_name: Option<Option<String>>,
    pub avatar_url: Option<Option<String>>,
    pub custom_status: Option<Option<String>>,
}

/// Which of a user's login sessions to revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionScope {
    /// One session (logout, "log out that device"). Unknown or another user's: not found.
    One(SessionId),
    /// Every active session but this one (password change keeps the caller's).
    AllExcept(SessionId),
    /// Every active session (account deletion).
    All,
}

/// Login sessions the database has just marked revoked. Revoking is only half of ending a
/// session: the signaling layer must also drop cached checks and close the sessions' gateway
/// connections, on every node — it does that with this value (`end_sessions`), which is why
/// it must not be dropped unused.
#[must_use = "pass revoked sessions to the signaling layer's end_sessions so their connections close"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSessions {
    pub user_id: UserId,
    pub session_ids: Vec<SessionId>,
}

/// What a refresh came to.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// A new refresh token for the same session.
    Renewed(Login),
    /// The token had already been exchanged: someone holds a copy, so its whole family (the
    /// session) was revoked. The caller answers 401 and ends the session's connections.
    Reused(RevokedSessions),
}

/// What deleting an account changed, so the caller can tell the people concerned.
#[derive(Debug)]
pub struct DeletedAccount {
    /// The account as everyone sees it from now on ("Deleted User").
    pub user: User,
    /// The servers the user was a member of (and no longer is).
    pub servers: Vec<ServerId>,
    /// Users who had a relationship (friend, request, block) with them, now removed.
    pub relationships: Vec<UserId>,
    /// The other recipients of their DMs (the DMs stay).
    pub dm_recipients: Vec<UserId>,
    pub sessions: RevokedSessions,
}

/// Usernames of deleted accounts are `deleted_user_<id>`; nobody may register one.
pub const DELETED_USERNAME_PREFIX: &str = "deleted_user_";
/// The display name of a deleted account.
pub const DELETED_DISPLAY_NAME: &str = "Deleted User";
/// A stored password hash no password verifies against (not a PHC string at all).
pub(crate) const NO_PASSWORD: &str = "!";

pub(crate) const USER_COLUMNS: &str =
    "u.id, u.username, u.display_name, u.avatar_url, u.custom_status, u.created_at, u.bot";

/// A refresh token's row joined with its session: (session, expires, rotated, user, revoked).
type RefreshRow = (
    SessionId,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    UserId,
    Option<DateTime<Utc>>,
);
/// A session row: (id, created, last used, user agent, ip).
type SessionRow = (
    SessionId,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<String>,
    Option<String>,
);

pub(crate) fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub(crate) fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn valid_username(name: &str) -> bool {
    let len = name.chars().count();
    (2..=32).contains(&len)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

fn valid_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2048
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn wrong_password() -> ChatError {
    ChatError::field("password", "does not match your current password")
}

/// Marks sessions revoked (on `conn`, which may be a transaction); returns their ids.
async fn revoke_in(
    conn: &mut sqlx::PgConnection,
    user_id: UserId,
    scope: SessionScope,
) -> ChatResult<Vec<SessionId>> {
    let q = match scope {
        SessionScope::One(id) => sqlx::query_scalar(
            "UPDATE auth_sessions SET revoked_at = coalesce(revoked_at, now())
             WHERE user_id = $1 AND id = $2 RETURNING id",
        )
        .bind(user_id)
        .bind(id),
        SessionScope::AllExcept(keep) => sqlx::query_scalar(
            "UPDATE auth_sessions SET revoked_at = now()
             WHERE user_id = $1 AND revoked_at IS NULL AND id <> $2 RETURNING id",
        )
        .bind(user_id)
        .bind(keep),
        SessionScope::All => sqlx::query_scalar(
            "UPDATE auth_sessions SET revoked_at = now()
             WHERE user_id = $1 AND revoked_at IS NULL RETURNING id",
        )
        .bind(user_id),
    };
    Ok(q.fetch_all(&mut *conn).await?)
}

impl Chat {
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        email: Option<&str>,
        client: &ClientInfo,
    ) -> ChatResult<Login> {
        let mut v = Validator::default();
        v.check(
            valid_username(username),
            "username",
            "must be 2-32 characters: letters, digits, '_', '.', '-'",
        );
        v.check(
            !username
                .to_ascii_lowercase()
                .starts_with(DELETED_USERNAME_PREFIX),
            "username",
            "is reserved",
        );
        if let Err(msg) = password::validate(password, username) {
            v.check(false, "password", msg);
        }
        if let Some(email) = email {
            v.check(
                email.len() <= 254 && email.contains('@') && !email.contains(char::is_whitespace),
                "email",
                "must be a valid email address",
            );
        }
        v.finish()?;

        let hash = self.passwords.hash(password).await?;
        let id: UserId = self.next_id();
        let mut tx = self.pool.begin().await?;
        let user: User = match sqlx::query_as(
            "INSERT INTO users (id, username, email, password_hash) VALUES ($1, $2, $3, $4)
             RETURNING id, username, display_name, avatar_url, custom_status, created_at",
        )
        .bind(id)
        .bind(username)
        .bind(email)
        .bind(&hash)
        .fetch_one(&mut *tx)
        .await
        {
            Ok(u) => u,
            Err(e) if is_unique_violation(&e, "users_username_lower_key") => {
                return Err(ChatError::field("username", "is already taken"))
            }
            Err(e) => return Err(e.into()),
        };
        let (session_id, refresh_token) = self.open_session(&mut tx, user.id, client).await?;
        tx.commit().await?;
        Ok(Login {
            user,
            session_id,
            refresh_token,
        })
    }

    /// Password login. The error never says whether the user exists, and takes as long either way.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: &ClientInfo,
    ) -> ChatResult<Login> {
        let row: Option<(UserId, String)> = if username.len() <= 64 {
            sqlx::query_as(
                "SELECT id, password_hash FROM users
                 WHERE lower(username) = lower($1) AND deleted_at IS NULL",
            )
            .bind(username)
            .fetch_optional(&self.pool)
            .await?
        } else {
            None
        };
        let ok = if password.len() <= 4 * password::MAX_LEN {
            self.passwords
                .verify(password, row.as_ref().map(|(_, h)| h.as_str()))
                .await?
        } else {
            false
        };
        let Some((user_id, verified_hash)) = row.filter(|_| ok) else {
            return Err(ChatError::Unauthorized("invalid username or password"));
        };
        let mut tx = self.pool.begin().await?;
        // The password may have changed (or the account been deleted) while it was being
        // verified: a change revokes every other session, so a session opened now with the old
        // password would outlive it. The share lock waits for such a change to commit.
        let unchanged: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM users WHERE id = $1 AND password_hash = $2 AND deleted_at IS NULL
             FOR SHARE",
        )
        .bind(user_id)
        .bind(&verified_hash)
        .fetch_optional(&mut *tx)
        .await?;
        if unchanged.is_none() {
            return Err(ChatError::Unauthorized("invalid username or password"));
        }
        let (session_id, refresh_token) = self.open_session(&mut tx, user_id, client).await?;
        tx.commit().await?;
        let user = self.user(user_id).await?;
        Ok(Login {
            user,
            session_id,
            refresh_token,
        })
    }

    async fn open_session(
        &self,
        tx: &mut sqlx::PgConnection,
        user_id: UserId,
        client: &ClientInfo,
    ) -> ChatResult<(SessionId, String)> {
        let session_id: SessionId = self.next_id();
        let ua = client
            .user_agent
            .as_deref()
            .map(|s| s.chars().take(256).collect::<String>());
        sqlx::query(
            "INSERT INTO auth_sessions (id, user_id, user_agent, ip) VALUES ($1, $2, $3, $4)",
        )
        .bind(session_id)
        .bind(user_id)
        .bind(ua)
        .bind(client.ip.as_deref())
        .execute(&mut *tx)
        .await?;
        let token = self.issue_refresh(tx, session_id).await?;
        Ok((session_id, token))
    }

    async fn issue_refresh(
        &self,
        tx: &mut sqlx::PgConnection,
        session_id: SessionId,
    ) -> ChatResult<String> {
        let token = new_token();
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(hash_token(&token))
        .bind(session_id)
        .bind(Utc::now() + Duration::days(REFRESH_TTL_DAYS))
        .execute(&mut *tx)
        .await?;
        Ok(token)
    }

    /// Exchanges a refresh token for a new one. Reusing a rotated token revokes its session, in
    /// the same transaction that detected the reuse, and says so (`RefreshOutcome::Reused`).
    pub async fn refresh(&self, refresh_token: &str) -> ChatResult<RefreshOutcome> {
        const BAD: ChatError = ChatError::Unauthorized("invalid refresh token");
        if refresh_token.is_empty() || refresh_token.len() > 128 {
            return Err(BAD);
        }
        let mut tx = self.pool.begin().await?;
        let row: Option<RefreshRow> = sqlx::query_as(
            "SELECT t.session_id, t.expires_at, t.rotated_at, s.user_id, s.revoked_at
                 FROM refresh_tokens t JOIN auth_sessions s ON s.id = t.session_id
                 WHERE t.token_hash = $1 FOR UPDATE OF t, s",
        )
        .bind(hash_token(refresh_token))
        .fetch_optional(&mut *tx)
        .await?;
        let Some((session_id, expires_at, rotated_at, user_id, revoked_at)) = row else {
            return Err(BAD);
        };
        if revoked_at.is_some() {
            return Err(BAD);
        }
        if rotated_at.is_some() {
            // The token was already exchanged: someone holds a copy. End the whole family.
            sqlx::query("UPDATE auth_sessions SET revoked_at = now() WHERE id = $1")
                .bind(session_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::warn!(%session_id, "refresh token reuse detected; session revoked");
            return Ok(RefreshOutcome::Reused(RevokedSessions {
                user_id,
                session_ids: vec![session_id],
            }));
        }
        if expires_at < Utc::now() {
            return Err(BAD);
        }
        sqlx::query("UPDATE refresh_tokens SET rotated_at = now() WHERE token_hash = $1")
            .bind(hash_token(refresh_token))
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE auth_sessions SET last_used_at = now() WHERE id = $1")
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        let token = self.issue_refresh(&mut tx, session_id).await?;
        tx.commit().await?;
        Ok(RefreshOutcome::Renewed(Login {
            user: self.user(user_id).await?,
            session_id,
            refresh_token: token,
        }))
    }

    /// Revokes login sessions (logout, "log out that device", "log out everywhere else").
    /// `One` answers for an already revoked session too, so that ending it again still reaches
    /// its connections; the others list only the sessions that were active.
    pub async fn revoke_sessions(
        &self,
        user_id: UserId,
        scope: SessionScope,
    ) -> ChatResult<RevokedSessions> {
        let mut conn = self.pool.acquire().await?;
        let session_ids = revoke_in(&mut conn, user_id, scope).await?;
        if matches!(scope, SessionScope::One(_)) && session_ids.is_empty() {
            return Err(ChatError::NotFound("session"));
        }
        Ok(RevokedSessions {
            user_id,
            session_ids,
        })
    }

    /// Changes the password after checking the current one, and revokes every other session
    /// of the user in the same transaction (whoever knew the old password is logged out).
    /// `keep` is the caller's session.
    pub async fn change_password(
        &self,
        user_id: UserId,
        keep: SessionId,
        current: &str,
        new: &str,
    ) -> ChatResult<RevokedSessions> {
        let (username, old_hash) = self.live_account(user_id).await?;
        let mut v = Validator::default();
        if let Err(msg) = password::validate(new, &username) {
            v.check(false, "new_password", msg);
        }
        v.finish()?;
        self.check_password(current, &old_hash).await?;
        let new_hash = self.passwords.hash(new).await?;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE users SET password_hash = $3
             WHERE id = $1 AND password_hash = $2 AND deleted_at IS NULL",
        )
        .bind(user_id)
        .bind(&old_hash)
        .bind(&new_hash)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            // Changed (or deleted) meanwhile: the password checked is no longer current.
            return Err(wrong_password());
        }
        let session_ids = revoke_in(&mut tx, user_id, SessionScope::AllExcept(keep)).await?;
        tx.commit().await?;
        Ok(RevokedSessions {
            user_id,
            session_ids,
        })
    }

    /// Deletes an account the way Discord does: after checking the password, the user leaves
    /// every server, their relationships go, every session is revoked, and the row is
    /// anonymised (`deleted_user_<id>`, "Deleted User", no way to log in). Messages and DMs
    /// stay, shown as authored by the deleted user. Owners must delete their servers first.
    pub async fn delete_account(
        &self,
        user_id: UserId,
        password: &str,
    ) -> ChatResult<DeletedAccount> {
        let (_, hash) = self.live_account(user_id).await?;
        self.check_password(password, &hash).await?;
        let mut tx = self.pool.begin().await?;
        let locked: Option<String> = sqlx::query_scalar(
            "SELECT password_hash FROM users WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
        )
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        if locked.as_deref() != Some(hash.as_str()) {
            return Err(wrong_password());
        }
        let owned: i64 = sqlx::query_scalar("SELECT count(*) FROM servers WHERE owner_id = $1")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
        if owned > 0 {
            return Err(ChatError::Refused(format!(
                "you own {owned} server{}: delete {} (or transfer ownership) before deleting your account",
                if owned == 1 { "" } else { "s" },
                if owned == 1 { "it" } else { "them" },
            )));
        }
        let servers: Vec<ServerId> =
            sqlx::query_scalar("DELETE FROM members WHERE user_id = $1 RETURNING server_id")
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
        let mut relationships: Vec<UserId> = sqlx::query_scalar(
            "DELETE FROM relationships WHERE user_id = $1 OR other_id = $1
             RETURNING CASE WHEN user_id = $1 THEN other_id ELSE user_id END",
        )
        .bind(user_id)
        .fetch_all(&mut *tx)
        .await?;
        relationships.sort();
        relationships.dedup();
        let dm_recipients: Vec<UserId> = sqlx::query_scalar(
            "SELECT DISTINCT r.user_id FROM dm_recipients r
             WHERE r.user_id <> $1
               AND r.channel_id IN (SELECT channel_id FROM dm_recipients WHERE user_id = $1)",
        )
        .bind(user_id)
        .fetch_all(&mut *tx)
        .await?;
        let session_ids = revoke_in(&mut tx, user_id, SessionScope::All).await?;
        // The uploaded avatar goes with the account.
        sqlx::query(
            "INSERT INTO file_deletions (storage_key)
             SELECT avatar_key FROM users WHERE id = $1 AND avatar_key IS NOT NULL
             ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let user: User = sqlx::query_as(
            "UPDATE users SET username = $2 || id::text, display_name = $3, email = NULL,
                    avatar_url = NULL, avatar_key = NULL, custom_status = NULL, password_hash = $4,
                    deleted_at = now()
             WHERE id = $1
             RETURNING id, username, display_name, avatar_url, custom_status, created_at",
        )
        .bind(user_id)
        .bind(DELETED_USERNAME_PREFIX)
        .bind(DELETED_DISPLAY_NAME)
        .bind(NO_PASSWORD)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(DeletedAccount {
            user,
            servers,
            relationships,
            dm_recipients,
            sessions: RevokedSessions {
                user_id,
                session_ids,
            },
        })
    }

    /// Not found unless the account exists and has not been deleted: a deleted account keeps
    /// its DMs and messages but cannot be reached anew (new DMs, group DMs).
    pub async fn live_user(&self, user_id: UserId) -> ChatResult<()> {
        let live: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM users WHERE id = $1 AND deleted_at IS NULL")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        live.map(|_| ()).ok_or(ChatError::NotFound("user"))
    }

    /// The username and password hash of an account that has not been deleted.
    async fn live_account(&self, user_id: UserId) -> ChatResult<(String, String)> {
        sqlx::query_as(
            "SELECT username, password_hash FROM users WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(ChatError::NotFound("user"))
    }

    /// Checks the current password of an account (for changes that require it).
    async fn check_password(&self, password: &str, hash: &str) -> ChatResult<()> {
        let ok = password.len() <= 4 * password::MAX_LEN
            && self.passwords.verify(password, Some(hash)).await?;
        if ok {
            Ok(())
        } else {
            Err(wrong_password())
        }
    }

    /// True while the session has not been revoked. Checked on every authenticated request so
    /// that logging a device out takes effect before its access token expires.
    pub async fn session_active(&self, user_id: UserId, session_id: SessionId) -> ChatResult<bool> {
        let row: Option<(Option<DateTime<Utc>>,)> =
            sqlx::query_as("SELECT revoked_at FROM auth_sessions WHERE id = $1 AND user_id = $2")
                .bind(session_id)
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(matches!(row, Some((None,))))
    }

    pub async fn sessions(
        &self,
        user_id: UserId,
        current: SessionId,
    ) -> ChatResult<Vec<AuthSession>> {
        let rows: Vec<SessionRow> = sqlx::query_as(
            "SELECT id, created_at, last_used_at, user_agent, ip FROM auth_sessions
                 WHERE user_id = $1 AND revoked_at IS NULL ORDER BY last_used_at DESC",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, created_at, last_used_at, user_agent, ip)| AuthSession {
                    id,
                    created_at,
                    last_used_at,
                    user_agent,
                    ip,
                    current: id == current,
                },
            )
            .collect())
    }

    pub async fn user(&self, user_id: UserId) -> ChatResult<User> {
        sqlx::query_as(q!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1"))
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(ChatError::NotFound("user"))
    }

    pub async fn update_profile(&self, user_id: UserId, patch: ProfilePatch) -> ChatResult<User> {
        let mut v = Validator::default();
        let clean = |s: &Option<Option<String>>| -> Option<Option<String>> {
            s.as_ref().map(|o| {
                o.as_ref()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
            })
        };
        let display_name = clean(&patch.display_name);
        let avatar_url = clean(&patch.avatar_url);
        let custom_status = clean(&patch.custom_status);
        if let Some(Some(d)) = &display_name {
            v.check(
                d.chars().count() <= 64 && !d.chars().any(char::is_control),
                "display_name",
                "must be at most 64 characters",
            );
        }
        if let Some(Some(a)) = &avatar_url {
            v.check(valid_url(a), "avatar_url", "must be an http(s) URL");
        }
        if let Some(Some(s)) = &custom_status {
            v.check(
                s.chars().count() <= 128 && !s.chars().any(char::is_control),
                "custom_status",
                "must be at most 128 characters",
            );
        }
        v.finish()?;
        sqlx::query_as(
            "UPDATE users SET
               display_name = CASE WHEN $2 THEN $3 ELSE display_name END,
               avatar_url = CASE WHEN $4 THEN $5 ELSE avatar_url END,
               custom_status = CASE WHEN $6 THEN $7 ELSE custom_status END
             WHERE id = $1
             RETURNING id, username, display_name, avatar_url, custom_status, created_at",
        )
        .bind(user_id)
        .bind(display_name.is_some())
        .bind(display_name.flatten())
        .bind(avatar_url.is_some())
        .bind(avatar_url.flatten())
        .bind(custom_status.is_some())
        .bind(custom_status.flatten())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(ChatError::NotFound("user"))
    }
}
