//! Moderation (kick, ban, unban) and the audit log (`confab_chat::moderation`,
//! `confab_chat::audit`), with the `X-Audit-Log-Reason` header every administrative request
//! may carry.

use crate::auth::AuthUser;
use crate::bus::BusEvent;
use crate::error::{ApiResult, ErrorBody, Json, OptionalJson, Path, Query};
use crate::gateway::events::Event;
use crate::gateway::hub::Target;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use confab_chat::audit::{Actor, AuditEntry, AuditQuery};
use confab_chat::moderation::Ban;
use confab_chat::{ServerId, Snowflake, UserId};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

/// The audit-log reason header. Browsers can only send ASCII headers, so it is percent-decoded
/// (as Discord's); undecodable input is kept as sent.
pub fn reason(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get("x-audit-log-reason")?.to_str().ok()?;
    let decoded = percent_decode(raw).unwrap_or_else(|| raw.to_string());
    let s: String = decoded.chars().take(512).collect();
    (!s.trim().is_empty()).then_some(s)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct BanBody {
    /// Delete the user's messages of the last N seconds (0-604800).
    pub delete_message_seconds: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
pub struct AuditParams {
    /// Only entries by this user.
    pub user_id: Option<UserId>,
    /// Only this action, e.g. `invite_create`.
    pub action: Option<String>,
    /// Entries older than this id.
    pub before: Option<Snowflake>,
    /// 1-100, default 50.
    pub limit: Option<i64>,
}

pub(crate) async fn removed(state: &AppState, server_id: ServerId, target: UserId) {
    state
        .publish(BusEvent::MemberLeft {
            server_id,
            user_id: target,
        })
        .await;
    state.emit(
        Target::Server(server_id),
        Event::MemberRemove,
        &json!({"server_id": server_id, "user_id": target}),
    );
    state.emit(
        Target::User(target),
        Event::ServerDelete,
        &json!({"id": server_id}),
    );
}

/// Kick a member below your highest role (KICK_MEMBERS).
#[utoipa::path(delete, path = "/servers/{server_id}/members/{user_id}", tag = "members", security(("bearer" = [])),
    params(("server_id" = String, Path), ("user_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn kick(
    State(state): State<AppState>,
    user: AuthUser,
    Path((server_id, target)): Path<(ServerId, UserId)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let r = reason(&headers);
    state
        .chat
        .kick(server_id, target, Actor::new(user.user_id, r.as_deref()))
        .await?;
    removed(&state, server_id, target).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Bans.
#[utoipa::path(get, path = "/servers/{server_id}/bans", tag = "members", security(("bearer" = [])), params(("server_id" = String, Path)),
    responses((status = 200, body = [Ban]), (status = 403, body = ErrorBody)))]
pub async fn list_bans(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
) -> ApiResult<Json<Vec<Ban>>> {
    Ok(Json(state.chat.bans(server_id, user.user_id).await?))
}

/// Ban a user (BAN_MEMBERS); they cannot rejoin until unbanned.
#[utoipa::path(put, path = "/servers/{server_id}/bans/{user_id}", tag = "members", security(("bearer" = [])),
    params(("server_id" = String, Path), ("user_id" = String, Path)), request_body = Option<BanBody>,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn ban(
    State(state): State<AppState>,
    user: AuthUser,
    Path((server_id, target)): Path<(ServerId, UserId)>,
    headers: HeaderMap,
    OptionalJson(body): OptionalJson<BanBody>,
) -> ApiResult<StatusCode> {
    let r = reason(&headers);
    let was_member = state
        .chat
        .ban(
            server_id,
            target,
            body.delete_message_seconds.unwrap_or(0),
            Actor::new(user.user_id, r.as_deref()),
        )
        .await?;
    if was_member {
        removed(&state, server_id, target).await;
    }
    state.emit(
        Target::Server(server_id),
        Event::BanAdd,
        &json!({"server_id": server_id, "user_id": target}),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Lift a ban.
#[utoipa::path(delete, path = "/servers/{server_id}/bans/{user_id}", tag = "members", security(("bearer" = [])),
    params(("server_id" = String, Path), ("user_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn unban(
    State(state): State<AppState>,
    user: AuthUser,
    Path((server_id, target)): Path<(ServerId, UserId)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let r = reason(&headers);
    state
        .chat
        .unban(server_id, target, Actor::new(user.user_id, r.as_deref()))
        .await?;
    state.emit(
        Target::Server(server_id),
        Event::BanRemove,
        &json!({"server_id": server_id, "user_id": target}),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// The audit log, newest first (VIEW_AUDIT_LOG).
#[utoipa::path(get, path = "/servers/{server_id}/audit-log", tag = "members", security(("bearer" = [])),
    params(("server_id" = String, Path), AuditParams),
    responses((status = 200, body = [AuditEntry]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn audit_log(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
    Query(q): Query<AuditParams>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    let entries = state
        .chat
        .audit_log(
            server_id,
            user.user_id,
            AuditQuery {
                actor_id: q.user_id,
                action: q.action,
                before: q.before,
                limit: q.limit,
            },
        )
        .await?;
    Ok(Json(entries))
}
