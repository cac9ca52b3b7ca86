//! Invites: creating, previewing, accepting (joining a server) and revoking them.

use crate::error::Validator;
use crate::model::{Invite, ServerSnapshot};
use crate::{permissions, ServerId, UserId};
use crate::{Chat, ChatError, ChatResult};
use chrono::{DateTime, Duration, Utc};
use rand::Rng;

/// Invite lifetime when the client does not say (seconds).
pub const DEFAULT_INVITE_AGE: i32 = 86_400;
/// Longest invite lifetime (seconds): 7 days, or 0 for never.
pub const MAX_INVITE_AGE: i32 = 7 * 86_400;

#[derive(sqlx::FromRow)]
struct InviteRow {
    code: String,
    server_id: ServerId,
    inviter_id: UserId,
    max_uses: i32,
    uses: i32,
    max_age: i32,
    expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    temporary: bool,
}

impl From<InviteRow> for Invite {
    fn from(r: InviteRow) -> Self {
        Invite {
            code: r.code,
            server_id: r.server_id,
            inviter_id: r.inviter_id,
            max_uses: r.max_uses,
            uses: r.uses,
            max_age: r.max_age,
            expires_at: r.expires_at,
            created_at: r.created_at,
            temporary: r.temporary,
            server: None,
        }
    }
}

fn invite_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..10)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Chat {
    pub async fn create_invite(
        &self,
        server_id: ServerId,
        user_id: UserId,
        max_uses: Option<i32>,
        max_age: Option<i32>,
        temporary: bool,
    ) -> ChatResult<Invite> {
        self.require(
            server_id,
            user_id,
            permissions::CREATE_INVITE,
            "you may not create invites",
        )
        .await?;
        let max_uses = max_uses.unwrap_or(0);
        let max_age = max_age.unwrap_or(DEFAULT_INVITE_AGE);
        Validator::default()
            .check(
                (0..=100).contains(&max_uses),
                "max_uses",
                "must be 0 (unlimited) to 100",
            )
            .check(
                (0..=MAX_INVITE_AGE).contains(&max_age),
                "max_age",
                "must be 0 (never expires) to 604800 seconds",
            )
            .finish()?;
        let expires_at = (max_age > 0).then(|| Utc::now() + Duration::seconds(max_age.into()));
        let mut tx = self.pool.begin().await?;
        let row: InviteRow = sqlx::query_as(
            "INSERT INTO invites (code, server_id, inviter_id, max_uses, max_age, expires_at, temporary)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING code, server_id, inviter_id, max_uses, uses, max_age, expires_at, created_at, temporary",
        )
        .bind(invite_code())
        .bind(server_id)
        .bind(user_id)
        .bind(max_uses)
        .bind(max_age)
        .bind(expires_at)
        .bind(temporary)
        .fetch_one(&mut *tx)
        .await?;
        let invite: Invite = row.into();
        self.audit(
            &mut tx,
            server_id,
            crate::audit::Actor::new(user_id, None),
            "invite_create",
            None,
            serde_json::json!({"code": invite.code, "max_uses": max_uses, "max_age": max_age, "temporary": temporary}),
        )
        .await?;
        tx.commit().await?;
        Ok(invite)
    }

    /// An invite with a preview of its server; expired or used-up invites are not found.
    pub async fn invite(&self, code: &str) -> ChatResult<Invite> {
        if code.len() > 32 {
            return Err(ChatError::NotFound("invite"));
        }
        let row: Option<InviteRow> = sqlx::query_as(
            "SELECT code, server_id, inviter_id, max_uses, uses, max_age, expires_at, created_at, temporary
             FROM invites WHERE code = $1
               AND (expires_at IS NULL OR expires_at > now())
               AND (max_uses = 0 OR uses < max_uses)",
        )
        .bind(code)
        .fetch_optional(&self.pool)
        .await?;
        let mut invite: Invite = row.ok_or(ChatError::NotFound("invite"))?.into();
        invite.server = Some(self.server_row(invite.server_id).await?);
        Ok(invite)
    }

    /// Joins the invite's server. Returns the server and whether the user was newly added.
    pub async fn accept_invite(
        &self,
        code: &str,
        user_id: UserId,
    ) -> ChatResult<(ServerSnapshot, bool)> {
        if code.len() > 32 {
            return Err(ChatError::NotFound("invite"));
        }
        let mut tx = self.pool.begin().await?;
        let found: Option<(ServerId, bool)> = sqlx::query_as(
            "SELECT server_id, temporary FROM invites WHERE code = $1
               AND (expires_at IS NULL OR expires_at > now())
               AND (max_uses = 0 OR uses < max_uses)
             FOR UPDATE",
        )
        .bind(code)
        .fetch_optional(&mut *tx)
        .await?;
        let (server_id, temporary) = found.ok_or(ChatError::NotFound("invite"))?;
        // On the transaction's connection: asking the pool for a second one while holding
        // this one deadlocks once every pooled connection is a join waiting here.
        let banned: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM bans WHERE server_id = $1 AND user_id = $2")
                .bind(server_id)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        if banned.is_some() {
            return Err(ChatError::Forbidden("you are banned from this server"));
        }
        let already: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM members WHERE server_id = $1 AND user_id = $2")
                .bind(server_id)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        // Raid mode and the highest verification level hold newcomers back (or refuse them).
        let (pending, restricted_until) = if already.is_none() {
            self.join_gates(&mut tx, server_id, user_id).await?
        } else {
            (false, None)
        };
        let added = sqlx::query(
            "INSERT INTO members (server_id, user_id, temporary, pending, restricted_until)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
        )
        .bind(server_id)
        .bind(user_id)
        .bind(temporary)
        .bind(pending)
        .bind(restricted_until)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if added {
            sqlx::query("UPDATE invites SET uses = uses + 1 WHERE code = $1")
                .bind(code)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        if added {
            // A failed count must not fail a join that already happened.
            if let Err(e) = self.check_join_rate(server_id, user_id).await {
                tracing::warn!(error = ?e, server = %server_id, "join-rate check failed");
            }
        }
        let mut snap = self.server_snapshot(server_id).await?;
        // The snapshot lists the first `MEMBER_LIST_LIMIT` members; from then on a newcomer
        // would be missing from it, yet the joiner must always find their own membership.
        if !snap.members.iter().any(|m| m.user.id == user_id) {
            snap.members.push(self.member(server_id, user_id).await?);
        }
        Ok((snap, added))
    }

    /// The server's live invites (MANAGE_SERVER).
    pub async fn invites(&self, server_id: ServerId, user_id: UserId) -> ChatResult<Vec<Invite>> {
        self.require(
            server_id,
            user_id,
            permissions::MANAGE_SERVER,
            "you may not manage invites",
        )
        .await?;
        let rows: Vec<InviteRow> = sqlx::query_as(
            "SELECT code, server_id, inviter_id, max_uses, uses, max_age, expires_at, created_at, temporary
             FROM invites WHERE server_id = $1 AND (expires_at IS NULL OR expires_at > now())
             ORDER BY created_at DESC LIMIT 1000",
        )
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Invite::from).collect())
    }

    /// Revokes an invite: its creator, or MANAGE_SERVER. Returns its server.
    pub async fn revoke_invite(
        &self,
        code: &str,
        user_id: UserId,
        reason: Option<&str>,
    ) -> ChatResult<ServerId> {
        if code.len() > 32 {
            return Err(ChatError::NotFound("invite"));
        }
        let row: Option<(ServerId, UserId)> =
            sqlx::query_as("SELECT server_id, inviter_id FROM invites WHERE code = $1")
                .bind(code)
                .fetch_optional(&self.pool)
                .await?;
        let (server_id, inviter) = row.ok_or(ChatError::NotFound("invite"))?;
        let perms = match self.server_permissions(server_id, user_id).await {
            Ok(p) => p,
            Err(ChatError::NotFound(_)) => return Err(ChatError::NotFound("invite")),
            Err(e) => return Err(e),
        };
        if inviter != user_id && !permissions::has(perms, permissions::MANAGE_SERVER) {
            return Err(ChatError::Forbidden("you may not revoke this invite"));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM invites WHERE code = $1")
            .bind(code)
            .execute(&mut *tx)
            .await?;
        self.audit(
            &mut tx,
            server_id,
            crate::audit::Actor::new(user_id, reason),
            "invite_delete",
            None,
            serde_json::json!({"code": code}),
        )
        .await?;
        tx.commit().await?;
        Ok(server_id)
    }
}
