//! Reports: a member reports a message or a user with a reason; moderators (MODERATE_MEMBERS
//! or MANAGE_MESSAGES) see the queue and act on it: delete the message, time the user out,
//! ban them, or dismiss the report. A reporter sees only the report they just made.

use crate::audit::Actor;
use crate::model::Message;
use crate::UserId;
use crate::{permissions, ChannelId, Chat, ChatError, ChatResult, MessageId, ServerId, Snowflake};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

/// Open reports one member may have in one server at once (a flood of reports is noise).
pub const MAX_OPEN_PER_REPORTER: i64 = 50;

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Report {
    pub id: Snowflake,
    pub server_id: ServerId,
    pub reporter_id: UserId,
    pub target_user_id: UserId,
    pub channel_id: Option<ChannelId>,
    pub message_id: Option<MessageId>,
    /// The reported message's content when it was reported.
    pub message_content: Option<String>,
    pub reason: String,
    /// `open`, `resolved` or `dismissed`.
    pub status: String,
    /// What the moderator did: `delete_message`, `timeout`, `ban` or `dismiss`.
    pub resolution: Option<String>,
    pub resolved_by: Option<UserId>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const REPORT_COLUMNS: &str = "id, server_id, reporter_id, target_user_id, channel_id, message_id,
    message_content, reason, status, resolution, resolved_by, resolved_at, created_at";

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReport {
    /// Report this message (with its `channel_id`)…
    pub message_id: Option<MessageId>,
    pub channel_id: Option<ChannelId>,
    /// …or this member.
    pub user_id: Option<UserId>,
    /// 1-512 characters.
    pub reason: String,
}

/// What a moderator does with a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportAction {
    DeleteMessage,
    Timeout,
    Ban,
    Dismiss,
}

impl ReportAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportAction::DeleteMessage => "delete_message",
            ReportAction::Timeout => "timeout",
            ReportAction::Ban => "ban",
            ReportAction::Dismiss => "dismiss",
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    pub action: ReportAction,
    /// For `timeout`: seconds, 1-2419200 (default 3600).
    pub timeout_seconds: Option<i64>,
    /// For `ban`: also delete the user's messages of the last N seconds (0-604800).
    pub delete_message_seconds: Option<i64>,
}

/// What resolving changed, for the signaling layer to announce.
#[derive(Debug)]
pub struct Resolved {
    pub report: Report,
    /// The message deleted (`delete_message`).
    pub deleted: Option<Message>,
    /// Whether the banned user was a member (`ban`).
    pub was_member: bool,
}

/// The queue's permission: MODERATE_MEMBERS or MANAGE_MESSAGES (administrators have both).
fn may_moderate(p: permissions::Permissions) -> bool {
    permissions::has(p, permissions::MODERATE_MEMBERS)
        || permissions::has(p, permissions::MANAGE_MESSAGES)
}

impl Chat {
    /// Files a report. The reporter must be a member; a reported message must be one they can
    /// read in this server; a reported user must be a member. Nobody reports themselves.
    pub async fn create_report(
        &self,
        server_id: ServerId,
        reporter: UserId,
        body: NewReport,
    ) -> ChatResult<Report> {
        self.server_permissions(server_id, reporter).await?;
        let reason = body.reason.trim();
        if reason.is_empty() || reason.chars().count() > 512 {
            return Err(ChatError::field("reason", "must be 1-512 characters"));
        }
        let (target, channel_id, message_id, content) = match (body.message_id, body.user_id) {
            (Some(mid), None) => {
                let Some(ch) = body.channel_id else {
                    return Err(ChatError::field("channel_id", "required with message_id"));
                };
                if self.channel_server(ch).await? != Some(server_id) {
                    return Err(ChatError::NotFound("message"));
                }
                let m = self.message(ch, mid, reporter).await?;
                (m.author.id, Some(ch), Some(mid), Some(m.content))
            }
            (None, Some(uid)) => {
                if self.member_access(server_id, uid).await?.is_none() {
                    return Err(ChatError::NotFound("member"));
                }
                (uid, None, None, None)
            }
            _ => {
                return Err(ChatError::field(
                    "message_id",
                    "give message_id (with channel_id) or user_id",
                ))
            }
        };
        if target == reporter {
            return Err(ChatError::field("user_id", "you cannot report yourself"));
        }
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM reports WHERE server_id = $1 AND reporter_id = $2 AND status = 'open'",
        )
        .bind(server_id)
        .bind(reporter)
        .fetch_one(&self.pool)
        .await?;
        if open >= MAX_OPEN_PER_REPORTER {
            return Err(ChatError::Refused(
                "you have too many open reports in this server; wait for moderators".into(),
            ));
        }
        Ok(sqlx::query_as(q!(
            "INSERT INTO reports (id, server_id, reporter_id, target_user_id, channel_id,
                 message_id, message_content, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {REPORT_COLUMNS}"
        ))
        .bind(self.next_id::<Snowflake>())
        .bind(server_id)
        .bind(reporter)
        .bind(target)
        .bind(channel_id)
        .bind(message_id)
        .bind(content)
        .bind(reason)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The moderator queue, newest first: `status` open (default), resolved, dismissed or all.
    pub async fn reports(
        &self,
        server_id: ServerId,
        user_id: UserId,
        status: Option<&str>,
        before: Option<Snowflake>,
        limit: Option<i64>,
    ) -> ChatResult<Vec<Report>> {
        let perms = self.server_permissions(server_id, user_id).await?;
        if !may_moderate(perms) {
            return Err(ChatError::Forbidden("you may not view reports"));
        }
        let status = status.unwrap_or("open");
        if !matches!(status, "open" | "resolved" | "dismissed" | "all") {
            return Err(ChatError::field(
                "status",
                "must be open, resolved, dismissed or all",
            ));
        }
        let limit = limit.unwrap_or(50);
        if !(1..=100).contains(&limit) {
            return Err(ChatError::field("limit", "must be 1-100"));
        }
        Ok(sqlx::query_as(q!("SELECT {REPORT_COLUMNS} FROM reports
             WHERE server_id = $1 AND ($2 = 'all' OR status = $2)
               AND ($3::bigint IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4"))
        .bind(server_id)
        .bind(status)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Acts on an open report of this server. Each action needs its own permission as well
    /// (MANAGE_MESSAGES in the channel to delete, MODERATE_MEMBERS and rank to time out,
    /// BAN_MEMBERS and rank to ban) and is audit-logged as it always is, plus
    /// `report_resolve` naming the report.
    pub async fn resolve_report(
        &self,
        server_id: ServerId,
        report_id: Snowflake,
        actor: Actor<'_>,
        body: ResolveBody,
    ) -> ChatResult<Resolved> {
        let perms = self.server_permissions(server_id, actor.user_id).await?;
        if !may_moderate(perms) {
            return Err(ChatError::Forbidden("you may not act on reports"));
        }
        // Scoped by server: a report of another server is unknown here.
        let report: Report = sqlx::query_as(q!(
            "SELECT {REPORT_COLUMNS} FROM reports WHERE id = $1 AND server_id = $2"
        ))
        .bind(report_id)
        .bind(server_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(ChatError::NotFound("report"))?;
        if report.status != "open" {
            return Err(ChatError::Conflict(
                "this report was already handled".into(),
            ));
        }
        let mut deleted = None;
        let mut was_member = false;
        match body.action {
            ReportAction::DeleteMessage => {
                let (Some(ch), Some(mid)) = (report.channel_id, report.message_id) else {
                    return Err(ChatError::field(
                        "action",
                        "this report is not about a message",
                    ));
                };
                let (_, p) = self.channel_access(ch, actor.user_id).await?;
                if !permissions::has(p, permissions::MANAGE_MESSAGES) {
                    return Err(ChatError::Forbidden("you may not delete messages there"));
                }
                deleted = Some(self.delete_message(ch, mid, actor.user_id).await?);
            }
            ReportAction::Timeout => {
                let secs = body.timeout_seconds.unwrap_or(3600);
                if !(1..=2_419_200).contains(&secs) {
                    return Err(ChatError::field("timeout_seconds", "must be 1-2419200"));
                }
                self.timeout(
                    server_id,
                    report.target_user_id,
                    Some(Utc::now() + Duration::seconds(secs)),
                    actor,
                )
                .await?;
            }
            ReportAction::Ban => {
                was_member = self
                    .ban(
                        server_id,
                        report.target_user_id,
                        body.delete_message_seconds.unwrap_or(0),
                        actor,
                    )
                    .await?;
            }
            ReportAction::Dismiss => {}
        }
        let status = if body.action == ReportAction::Dismiss {
            "dismissed"
        } else {
            "resolved"
        };
        let mut tx = self.pool.begin().await?;
        let updated: Option<Report> = sqlx::query_as(q!(
            "UPDATE reports SET status = $3, resolution = $4, resolved_by = $5, resolved_at = now()
             WHERE id = $1 AND server_id = $2 AND status = 'open' RETURNING {REPORT_COLUMNS}"
        ))
        .bind(report_id)
        .bind(server_id)
        .bind(status)
        .bind(body.action.as_str())
        .bind(actor.user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(report) = updated else {
            return Err(ChatError::Conflict(
                "this report was already handled".into(),
            ));
        };
        self.audit(
            &mut tx,
            server_id,
            actor,
            "report_resolve",
            Some(report.id),
            json!({
                "action": body.action, "target_user_id": report.target_user_id,
                "message_id": report.message_id, "channel_id": report.channel_id,
            }),
        )
        .await?;
        tx.commit().await?;
        Ok(Resolved {
            report,
            deleted,
            was_member,
        })
    }
}
