//! Server membership: listing members (pages, snapshots, by id), leaving, moderator voice
//! mute/deafen, and temporary memberships that end when their holder goes offline.

use crate::accounts::USER_COLUMNS;
use crate::model::{Member, User};
use crate::{permissions, ServerId, UserId};
use crate::{Chat, ChatError, ChatResult, RoleId, Snowflake};
use chrono::{DateTime, Utc};

/// Largest page of `GET /servers/{id}/members`.
pub const MAX_MEMBER_PAGE: i64 = 1000;
/// Members listed in a server snapshot (SERVER_CREATE, READY, the join answer) and by
/// `GET /servers/{id}/members`: the first to join. A server may have more members than this.
pub const MEMBER_LIST_LIMIT: i64 = 1000;

#[derive(sqlx::FromRow)]
struct MemberRow {
    server_id: ServerId,
    joined_at: DateTime<Utc>,
    nickname: Option<String>,
    mute: bool,
    deaf: bool,
    timeout_until: Option<DateTime<Utc>>,
    roles: Vec<i64>,
    #[sqlx(flatten)]
    user: User,
}

impl From<MemberRow> for Member {
    fn from(r: MemberRow) -> Self {
        Member {
            server_id: r.server_id,
            user: r.user,
            joined_at: r.joined_at,
            nickname: r.nickname,
            mute: r.mute,
            deaf: r.deaf,
            timeout_until: r.timeout_until,
            roles: r
                .roles
                .into_iter()
                .map(|id| RoleId::new(Snowflake(id)))
                .collect(),
        }
    }
}

impl Chat {
    /// The user ids of every member of a server (no permission check: for routing events).
    pub async fn member_ids(&self, server_id: ServerId) -> ChatResult<Vec<UserId>> {
        Ok(
            sqlx::query_scalar("SELECT user_id FROM members WHERE server_id = $1")
                .bind(server_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// One page of a server's members, by user id ascending: those after `after`, at most
    /// `limit` (1..=1000, default 1000).
    pub async fn members(
        &self,
        server_id: ServerId,
        user_id: UserId,
        after: Option<UserId>,
        limit: Option<i64>,
    ) -> ChatResult<Vec<Member>> {
        let limit = limit.unwrap_or(MAX_MEMBER_PAGE);
        if !(1..=MAX_MEMBER_PAGE).contains(&limit) {
            return Err(ChatError::field("limit", "must be 1-1000"));
        }
        self.server_permissions(server_id, user_id).await?;
        let rows: Vec<MemberRow> = sqlx::query_as(q!(
            "SELECT m.server_id, m.joined_at, m.nickname, m.mute, m.deaf, m.timeout_until,
                    ARRAY(SELECT mr.role_id FROM member_roles mr
                          WHERE mr.server_id = m.server_id AND mr.user_id = m.user_id ORDER BY mr.role_id) AS roles,
                    {USER_COLUMNS}
             FROM members m JOIN users u ON u.id = m.user_id
             WHERE m.server_id = $1 AND m.user_id > $2 ORDER BY m.user_id LIMIT $3"
        ))
        .bind(server_id)
        .bind(after.unwrap_or(UserId::new(Snowflake(0))))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Member::from).collect())
    }

    /// The members of a server among `user_ids` (one query, whatever the server's size).
    pub async fn members_by_ids(
        &self,
        server_id: ServerId,
        user_ids: &[UserId],
    ) -> ChatResult<Vec<Member>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = user_ids.iter().map(|id| id.get()).collect();
        let rows: Vec<MemberRow> = sqlx::query_as(q!(
            "SELECT m.server_id, m.joined_at, m.nickname, m.mute, m.deaf, m.timeout_until,
                    ARRAY(SELECT mr.role_id FROM member_roles mr
                          WHERE mr.server_id = m.server_id AND mr.user_id = m.user_id ORDER BY mr.role_id) AS roles,
                    {USER_COLUMNS}
             FROM members m JOIN users u ON u.id = m.user_id
             WHERE m.server_id = $1 AND m.user_id = ANY($2) ORDER BY m.joined_at, u.id"
        ))
        .bind(server_id)
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Member::from).collect())
    }

    /// How many members each of these servers has (one query).
    pub async fn member_counts(
        &self,
        server_ids: &[ServerId],
    ) -> ChatResult<std::collections::HashMap<ServerId, i64>> {
        let ids: Vec<i64> = server_ids.iter().map(|id| id.get()).collect();
        let rows: Vec<(ServerId, i64)> = sqlx::query_as(
            "SELECT server_id, count(*) FROM members WHERE server_id = ANY($1) GROUP BY server_id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    pub async fn member(&self, server_id: ServerId, user_id: UserId) -> ChatResult<Member> {
        let row: Option<MemberRow> = sqlx::query_as(q!(
            "SELECT m.server_id, m.joined_at, m.nickname, m.mute, m.deaf, m.timeout_until,
                    ARRAY(SELECT mr.role_id FROM member_roles mr
                          WHERE mr.server_id = m.server_id AND mr.user_id = m.user_id ORDER BY mr.role_id) AS roles,
                    {USER_COLUMNS}
             FROM members m JOIN users u ON u.id = m.user_id
             WHERE m.server_id = $1 AND m.user_id = $2"
        ))
        .bind(server_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(Member::from).ok_or(ChatError::NotFound("member"))
    }

    pub(crate) async fn members_of(&self, server_id: ServerId) -> ChatResult<Vec<Member>> {
        let rows: Vec<MemberRow> = sqlx::query_as(q!(
            "SELECT m.server_id, m.joined_at, m.nickname, m.mute, m.deaf, m.timeout_until,
                    ARRAY(SELECT mr.role_id FROM member_roles mr
                          WHERE mr.server_id = m.server_id AND mr.user_id = m.user_id ORDER BY mr.role_id) AS roles,
                    {USER_COLUMNS}
             FROM members m JOIN users u ON u.id = m.user_id
             WHERE m.server_id = $1 ORDER BY m.joined_at, u.id LIMIT {MEMBER_LIST_LIMIT}"
        ))
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Member::from).collect())
    }

    /// Leaves a server. The owner cannot leave (they delete it or, later, transfer it).
    pub async fn leave_server(&self, server_id: ServerId, user_id: UserId) -> ChatResult<()> {
        let server = self.server(server_id, user_id).await?;
        if server.owner_id == user_id {
            return Err(ChatError::Conflict(
                "the owner cannot leave their server; delete it instead".into(),
            ));
        }
        sqlx::query("DELETE FROM members WHERE server_id = $1 AND user_id = $2")
            .bind(server_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Moderator voice mute/deafen of a member.
    pub async fn set_member_voice(
        &self,
        server_id: ServerId,
        actor: UserId,
        target: UserId,
        mute: Option<bool>,
        deaf: Option<bool>,
    ) -> ChatResult<Member> {
        if mute.is_some() {
            self.require(
                server_id,
                actor,
                permissions::MUTE_MEMBERS,
                "you may not mute members",
            )
            .await?;
        }
        if deaf.is_some() {
            self.require(
                server_id,
                actor,
                permissions::DEAFEN_MEMBERS,
                "you may not deafen members",
            )
            .await?;
        }
        self.server_permissions(server_id, actor).await?;
        let done = sqlx::query(
            "UPDATE members SET mute = coalesce($3, mute), deaf = coalesce($4, deaf)
             WHERE server_id = $1 AND user_id = $2",
        )
        .bind(server_id)
        .bind(target)
        .bind(mute)
        .bind(deaf)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(ChatError::NotFound("member"));
        }
        self.member(server_id, target).await
    }

    /// Ends the temporary memberships of a user who went offline, except where they were given
    /// a role since joining. Returns the servers they left.
    pub async fn end_temporary_memberships(&self, user_id: UserId) -> ChatResult<Vec<ServerId>> {
        Ok(sqlx::query_scalar(
            "DELETE FROM members m WHERE m.user_id = $1 AND m.temporary
               AND NOT EXISTS (SELECT 1 FROM member_roles mr
                               WHERE mr.server_id = m.server_id AND mr.user_id = m.user_id)
             RETURNING m.server_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Users holding a temporary membership (without a role) that began more than `grace`
    /// ago: the candidates to let go when they have no gateway session at all.
    pub async fn temporary_members_older_than(
        &self,
        grace: std::time::Duration,
    ) -> ChatResult<Vec<UserId>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT m.user_id FROM members m WHERE m.temporary
               AND m.joined_at <= now() - make_interval(secs => $1)
               AND NOT EXISTS (SELECT 1 FROM member_roles mr
                               WHERE mr.server_id = m.server_id AND mr.user_id = m.user_id)",
        )
        .bind(grace.as_secs_f64())
        .fetch_all(&self.pool)
        .await?)
    }
}
