//! Servers (guilds), membership and invites.

use crate::accounts::USER_COLUMNS;
use crate::error::Validator;
use crate::model::{Channel, ChannelKind, Invite, Member, Server, ServerSnapshot, User};
use crate::permissions;
use crate::{Chat, ChatError, ChatResult, Snowflake};
use chrono::{DateTime, Duration, Utc};
use rand::Rng;

/// Most servers one user may own.
pub const MAX_OWNED_SERVERS: i64 = 100;
/// Largest page of `GET /servers/{id}/members`.
pub const MAX_MEMBER_PAGE: i64 = 1000;
/// Invite lifetime when the client does not say (seconds).
/// Members listed in a server snapshot (SERVER_CREATE, READY, the join answer) and by
/// `GET /servers/{id}/members`: the first to join. A server may have more members than this.
pub const MEMBER_LIST_LIMIT: i64 = 1000;
pub const DEFAULT_INVITE_AGE: i32 = 86_400;
/// Longest invite lifetime (seconds): 7 days, or 0 for never.
pub const MAX_INVITE_AGE: i32 = 7 * 86_400;

#[derive(sqlx::FromRow)]
struct MemberRow {
    server_id: Snowflake,
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
            roles: r.roles.into_iter().map(Snowflake).collect(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct InviteRow {
    code: String,
    server_id: Snowflake,
    inviter_id: Snowflake,
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

pub(crate) fn valid_name(name: &str, max: usize) -> bool {
    let n = name.trim();
    !n.is_empty() && n.chars().count() <= max && !n.chars().any(char::is_control)
}

fn invite_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..10)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Chat {
    pub async fn create_server(&self, owner: Snowflake, name: &str) -> ChatResult<ServerSnapshot> {
        let name = name.trim();
        Validator::default()
            .check(valid_name(name, 100), "name", "must be 1-100 characters")
            .finish()?;
        let owned: i64 = sqlx::query_scalar("SELECT count(*) FROM servers WHERE owner_id = $1")
            .bind(owner)
            .fetch_one(&self.pool)
            .await?;
        if owned >= MAX_OWNED_SERVERS {
            return Err(ChatError::Conflict(format!(
                "you already own {MAX_OWNED_SERVERS} servers"
            )));
        }
        let id = self.next_id();
        let mut tx = self.pool.begin().await?;
        let server: Server = sqlx::query_as(
            "INSERT INTO servers (id, name, owner_id) VALUES ($1, $2, $3)
             RETURNING id, name, owner_id, created_at",
        )
        .bind(id)
        .bind(name)
        .bind(owner)
        .fetch_one(&mut *tx)
        .await?;
        // @everyone shares the server's id.
        sqlx::query(
            "INSERT INTO roles (id, server_id, name, permissions) VALUES ($1, $1, '@everyone', $2)",
        )
        .bind(id)
        .bind(permissions::EVERYONE_DEFAULT)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO members (server_id, user_id) VALUES ($1, $2)")
            .bind(id)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        for (pos, (kind, name)) in [
            (ChannelKind::Text, "general"),
            (ChannelKind::Voice, "General"),
        ]
        .into_iter()
        .enumerate()
        {
            sqlx::query("INSERT INTO channels (id, server_id, kind, name, position) VALUES ($1, $2, $3, $4, $5)")
                .bind(self.next_id())
                .bind(id)
                .bind(kind.as_str())
                .bind(name)
                .bind(pos as i32)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let _ = server;
        self.server_snapshot(id).await
    }

    pub async fn server(&self, server_id: Snowflake, user_id: Snowflake) -> ChatResult<Server> {
        self.server_permissions(server_id, user_id).await?;
        self.server_row(server_id).await
    }

    async fn server_row(&self, server_id: Snowflake) -> ChatResult<Server> {
        sqlx::query_as("SELECT id, name, owner_id, created_at FROM servers WHERE id = $1")
            .bind(server_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(ChatError::NotFound("server"))
    }

    /// A server with its channels and members (no permission check: callers have done it).
    pub async fn server_snapshot(&self, server_id: Snowflake) -> ChatResult<ServerSnapshot> {
        Ok(ServerSnapshot {
            server: self.server_row(server_id).await?,
            channels: self.channels_of(server_id).await?,
            members: self.members_of(server_id).await?,
        })
    }

    /// A server with its channels and only the members among `user_ids` (a large server's
    /// READY; no permission check).
    pub async fn server_snapshot_of(
        &self,
        server_id: Snowflake,
        user_ids: &[Snowflake],
    ) -> ChatResult<ServerSnapshot> {
        Ok(ServerSnapshot {
            server: self.server_row(server_id).await?,
            channels: self.channels_of(server_id).await?,
            members: self.members_by_ids(server_id, user_ids).await?,
        })
    }

    pub async fn servers_of(&self, user_id: Snowflake) -> ChatResult<Vec<Server>> {
        Ok(sqlx::query_as(
            "SELECT s.id, s.name, s.owner_id, s.created_at FROM servers s
             JOIN members m ON m.server_id = s.id WHERE m.user_id = $1 ORDER BY m.joined_at, s.id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Ids of the servers a user belongs to (gateway routing).
    pub async fn server_ids_of(&self, user_id: Snowflake) -> ChatResult<Vec<Snowflake>> {
        Ok(
            sqlx::query_scalar("SELECT server_id FROM members WHERE user_id = $1")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn rename_server(
        &self,
        server_id: Snowflake,
        user_id: Snowflake,
        name: &str,
    ) -> ChatResult<Server> {
        self.require(
            server_id,
            user_id,
            permissions::MANAGE_SERVER,
            "you may not manage this server",
        )
        .await?;
        let name = name.trim();
        Validator::default()
            .check(valid_name(name, 100), "name", "must be 1-100 characters")
            .finish()?;
        let before = self.server_row(server_id).await?;
        let mut tx = self.pool.begin().await?;
        let server: Server = sqlx::query_as(
            "UPDATE servers SET name = $2 WHERE id = $1 RETURNING id, name, owner_id, created_at",
        )
        .bind(server_id)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(ChatError::NotFound("server"))?;
        let changes = crate::roles::diff(&serde_json::json!(before), &serde_json::json!(server));
        self.audit(
            &mut tx,
            server_id,
            crate::audit::Actor::new(user_id, None),
            "server_update",
            Some(server_id),
            changes,
        )
        .await?;
        tx.commit().await?;
        Ok(server)
    }

    /// Deletes a server (owner only). Returns the ids of its members, to tell them.
    pub async fn delete_server(
        &self,
        server_id: Snowflake,
        user_id: Snowflake,
    ) -> ChatResult<Vec<Snowflake>> {
        let server = self.server(server_id, user_id).await?;
        if server.owner_id != user_id {
            return Err(ChatError::Forbidden("only the owner may delete a server"));
        }
        let members: Vec<Snowflake> =
            sqlx::query_scalar("SELECT user_id FROM members WHERE server_id = $1")
                .bind(server_id)
                .fetch_all(&self.pool)
                .await?;
        sqlx::query("DELETE FROM servers WHERE id = $1")
            .bind(server_id)
            .execute(&self.pool)
            .await?;
        Ok(members)
    }

    /// The user ids of every member of a server (no permission check: for routing events).
    pub async fn member_ids(&self, server_id: Snowflake) -> ChatResult<Vec<Snowflake>> {
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
        server_id: Snowflake,
        user_id: Snowflake,
        after: Option<Snowflake>,
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
        .bind(after.unwrap_or(Snowflake(0)))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Member::from).collect())
    }

    /// The members of a server among `user_ids` (one query, whatever the server's size).
    pub async fn members_by_ids(
        &self,
        server_id: Snowflake,
        user_ids: &[Snowflake],
    ) -> ChatResult<Vec<Member>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = user_ids.iter().map(|id| id.0).collect();
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
        server_ids: &[Snowflake],
    ) -> ChatResult<std::collections::HashMap<Snowflake, i64>> {
        let ids: Vec<i64> = server_ids.iter().map(|id| id.0).collect();
        let rows: Vec<(Snowflake, i64)> = sqlx::query_as(
            "SELECT server_id, count(*) FROM members WHERE server_id = ANY($1) GROUP BY server_id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    pub async fn member(&self, server_id: Snowflake, user_id: Snowflake) -> ChatResult<Member> {
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

    async fn members_of(&self, server_id: Snowflake) -> ChatResult<Vec<Member>> {
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
    pub async fn leave_server(&self, server_id: Snowflake, user_id: Snowflake) -> ChatResult<()> {
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
        server_id: Snowflake,
        actor: Snowflake,
        target: Snowflake,
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

    pub async fn create_invite(
        &self,
        server_id: Snowflake,
        user_id: Snowflake,
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
        user_id: Snowflake,
    ) -> ChatResult<(ServerSnapshot, bool)> {
        if code.len() > 32 {
            return Err(ChatError::NotFound("invite"));
        }
        let mut tx = self.pool.begin().await?;
        let found: Option<(Snowflake, bool)> = sqlx::query_as(
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
        let added = sqlx::query(
            "INSERT INTO members (server_id, user_id, temporary) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(server_id)
        .bind(user_id)
        .bind(temporary)
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
        let mut snap = self.server_snapshot(server_id).await?;
        // The snapshot lists the first `MEMBER_LIST_LIMIT` members; from then on a newcomer
        // would be missing from it, yet the joiner must always find their own membership.
        if !snap.members.iter().any(|m| m.user.id == user_id) {
            snap.members.push(self.member(server_id, user_id).await?);
        }
        Ok((snap, added))
    }

    pub async fn channels_of(&self, server_id: Snowflake) -> ChatResult<Vec<Channel>> {
        let rows: Vec<crate::channels::ChannelRow> = sqlx::query_as(q!(
            "SELECT {} FROM channels WHERE server_id = $1 ORDER BY position, id",
            crate::channels::CHANNEL_COLUMNS
        ))
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Channel::from).collect())
    }
}

impl Chat {
    /// The server's live invites (MANAGE_SERVER).
    pub async fn invites(
        &self,
        server_id: Snowflake,
        user_id: Snowflake,
    ) -> ChatResult<Vec<Invite>> {
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
        user_id: Snowflake,
        reason: Option<&str>,
    ) -> ChatResult<Snowflake> {
        if code.len() > 32 {
            return Err(ChatError::NotFound("invite"));
        }
        let row: Option<(Snowflake, Snowflake)> =
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

impl Chat {
    /// Ends the temporary memberships of a user who went offline, except where they were given
    /// a role since joining. Returns the servers they left.
    pub async fn end_temporary_memberships(
        &self,
        user_id: Snowflake,
    ) -> ChatResult<Vec<Snowflake>> {
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
    ) -> ChatResult<Vec<Snowflake>> {
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
