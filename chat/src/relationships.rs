//! Friends: requests (send by username, accept, decline, cancel), removal, and blocks. Blocked
//! users cannot send you friend requests.

use crate::model::User;
use crate::{Chat, ChatError, ChatResult, UserId};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct Relationship {
    /// The other user's id.
    pub id: UserId,
    /// `"friend"`, `"incoming"` (they asked you), `"outgoing"` (you asked them) or `"blocked"`.
    #[serde(rename = "type")]
    pub kind: String,
    pub user: User,
}

/// What changed for each side, so the caller can tell both.
#[derive(Debug, Clone, Default)]
pub struct RelationshipChange {
    /// New state for (user, other), None = removed.
    pub mine: Option<String>,
    /// New state for (other, user), None = removed, or unchanged when `theirs_changed` is false.
    pub theirs: Option<String>,
    pub theirs_changed: bool,
}

impl Chat {
    async fn kind_between(
        &self,
        tx: &mut sqlx::PgConnection,
        a: UserId,
        b: UserId,
    ) -> ChatResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT kind FROM relationships WHERE user_id = $1 AND other_id = $2 FOR UPDATE",
        )
        .bind(a)
        .bind(b)
        .fetch_optional(&mut *tx)
        .await?)
    }

    async fn set_kind(
        &self,
        tx: &mut sqlx::PgConnection,
        a: UserId,
        b: UserId,
        kind: Option<&str>,
    ) -> ChatResult<()> {
        match kind {
            Some(k) => sqlx::query(
                "INSERT INTO relationships (user_id, other_id, kind) VALUES ($1, $2, $3)
                 ON CONFLICT (user_id, other_id) DO UPDATE SET kind = $3, created_at = now()",
            )
            .bind(a)
            .bind(b)
            .bind(k),
            None => sqlx::query("DELETE FROM relationships WHERE user_id = $1 AND other_id = $2")
                .bind(a)
                .bind(b),
        }
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    pub async fn relationships(&self, user_id: UserId) -> ChatResult<Vec<Relationship>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            kind: String,
            #[sqlx(flatten)]
            user: User,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT r.kind, u.id, u.username, u.display_name, u.avatar_url, u.custom_status, u.created_at
             FROM relationships r JOIN users u ON u.id = r.other_id WHERE r.user_id = $1 ORDER BY r.created_at",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Relationship {
                id: r.user.id,
                kind: r.kind,
                user: r.user,
            })
            .collect())
    }

    /// Sends a friend request to `username`, or accepts theirs if they already asked.
    pub async fn request_friend(
        &self,
        user_id: UserId,
        username: &str,
    ) -> ChatResult<(UserId, RelationshipChange)> {
        let other: Option<UserId> = if username.len() <= 64 {
            sqlx::query_scalar(
                "SELECT id FROM users WHERE lower(username) = lower($1) AND deleted_at IS NULL",
            )
            .bind(username)
            .fetch_optional(&self.pool)
            .await?
        } else {
            None
        };
        let other = other.ok_or(ChatError::NotFound("user"))?;
        Ok((other, self.befriend(user_id, other).await?))
    }

    /// Accepts an incoming request from `other`, or sends one.
    pub async fn befriend(&self, user_id: UserId, other: UserId) -> ChatResult<RelationshipChange> {
        if user_id == other {
            return Err(ChatError::field("user_id", "you cannot befriend yourself"));
        }
        let mut tx = self.pool.begin().await?;
        let mine = self.kind_between(&mut tx, user_id, other).await?;
        let theirs = self.kind_between(&mut tx, other, user_id).await?;
        // Blocked either way: the same answer as for a stranger who cannot be asked.
        if theirs.as_deref() == Some("blocked") || mine.as_deref() == Some("blocked") {
            return Err(ChatError::Forbidden(
                "you cannot send this user a friend request",
            ));
        }
        let change = match mine.as_deref() {
            Some("friend") | Some("outgoing") => RelationshipChange {
                mine: mine.clone(),
                theirs: theirs.clone(),
                theirs_changed: false,
            },
            Some("incoming") => {
                self.set_kind(&mut tx, user_id, other, Some("friend"))
                    .await?;
                self.set_kind(&mut tx, other, user_id, Some("friend"))
                    .await?;
                RelationshipChange {
                    mine: Some("friend".into()),
                    theirs: Some("friend".into()),
                    theirs_changed: true,
                }
            }
            _ => {
                self.set_kind(&mut tx, user_id, other, Some("outgoing"))
                    .await?;
                self.set_kind(&mut tx, other, user_id, Some("incoming"))
                    .await?;
                RelationshipChange {
                    mine: Some("outgoing".into()),
                    theirs: Some("incoming".into()),
                    theirs_changed: true,
                }
            }
        };
        tx.commit().await?;
        Ok(change)
    }

    /// Blocks `other`: any friendship or request between the two ends.
    pub async fn block(&self, user_id: UserId, other: UserId) -> ChatResult<RelationshipChange> {
        if user_id == other {
            return Err(ChatError::field("user_id", "you cannot block yourself"));
        }
        self.user(other).await?;
        let mut tx = self.pool.begin().await?;
        let theirs = self.kind_between(&mut tx, other, user_id).await?;
        self.set_kind(&mut tx, user_id, other, Some("blocked"))
            .await?;
        let theirs_changed = matches!(theirs.as_deref(), Some("friend" | "incoming" | "outgoing"));
        if theirs_changed {
            self.set_kind(&mut tx, other, user_id, None).await?;
        }
        tx.commit().await?;
        Ok(RelationshipChange {
            mine: Some("blocked".into()),
            theirs: if theirs_changed { None } else { theirs },
            theirs_changed,
        })
    }

    /// Removes a friend, declines or cancels a request, or unblocks.
    pub async fn remove_relationship(
        &self,
        user_id: UserId,
        other: UserId,
    ) -> ChatResult<RelationshipChange> {
        let mut tx = self.pool.begin().await?;
        let mine = self.kind_between(&mut tx, user_id, other).await?;
        let Some(mine) = mine else {
            return Err(ChatError::NotFound("relationship"));
        };
        self.set_kind(&mut tx, user_id, other, None).await?;
        let theirs = self.kind_between(&mut tx, other, user_id).await?;
        // Ending a friendship or request ends it on both sides; their block stays.
        let theirs_changed = mine != "blocked"
            && matches!(theirs.as_deref(), Some("friend" | "incoming" | "outgoing"));
        if theirs_changed {
            self.set_kind(&mut tx, other, user_id, None).await?;
        }
        tx.commit().await?;
        Ok(RelationshipChange {
            mine: None,
            theirs: if theirs_changed { None } else { theirs },
            theirs_changed,
        })
    }

    /// The user's friends' ids (presence routing).
    pub async fn friend_ids(&self, user_id: UserId) -> ChatResult<Vec<UserId>> {
        Ok(sqlx::query_scalar(
            "SELECT other_id FROM relationships WHERE user_id = $1 AND kind = 'friend'",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Whether either user blocked the other.
    pub async fn blocked_between(&self, a: UserId, b: UserId) -> ChatResult<bool> {
        Ok(sqlx::query_scalar::<_, i32>(
            "SELECT 1 FROM relationships WHERE kind = 'blocked' AND ((user_id = $1 AND other_id = $2) OR (user_id = $2 AND other_id = $1))",
        )
        .bind(a)
        .bind(b)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }
}
