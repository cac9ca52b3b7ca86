//! Roles, member roles, channel permission overwrites, moderation (kick, ban) and the audit log.
//! Administrative requests may carry `X-Audit-Log-Reason`.

use crate::auth::AuthUser;
use crate::bus::BusEvent;
use crate::error::{ApiResult, ErrorBody, Json, OptionalJson, Path, Query};
use crate::gateway::hub::Target;
use crate::state::AppState;
use crate::visibility::ServerVisibility;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use confab_chat::audit::{Actor, AuditEntry, AuditQuery};
use confab_chat::moderation::Ban;
use confab_chat::roles::{PermissionOverwrite, Role, RolePatch};
use confab_chat::Snowflake;
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

fn parse_perms(field: &str, v: &Option<String>) -> ApiResult<Option<i64>> {
    match v {
        None => Ok(None),
        Some(s) => s.parse::<i64>().map(Some).map_err(|_| {
            confab_chat::ChatError::field(field, "must be a decimal permission bitfield").into()
        }),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    pub name: Option<String>,
    /// Decimal string of permission bits (docs/permissions.md).
    pub permissions: Option<String>,
    pub color: Option<i32>,
    pub hoist: Option<bool>,
    pub mentionable: Option<bool>,
    pub position: Option<i32>,
}

impl RoleBody {
    fn patch(&self) -> ApiResult<RolePatch> {
        Ok(RolePatch {
            name: self.name.clone(),
            permissions: parse_perms("permissions", &self.permissions)?,
            position: self.position,
            color: self.color,
            hoist: self.hoist,
            mentionable: self.mentionable,
        })
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverwriteBody {
    /// `"role"` (id = role id; the server id is @everyone) or `"member"` (id = user id).
    #[serde(rename = "type")]
    pub kind: String,
    pub allow: Option<String>,
    pub deny: Option<String>,
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
    pub user_id: Option<Snowflake>,
    /// Only this action, e.g. `invite_create`.
    pub action: Option<String>,
    /// Entries older than this id.
    pub before: Option<Snowflake>,
    /// 1-100, default 50.
    pub limit: Option<i64>,
}

/// The server's roles, lowest first.
#[utoipa::path(get, path = "/servers/{server_id}/roles", tag = "roles", security(("bearer" = [])), params(("server_id" = String, Path)),
    responses((status = 200, body = [Role]), (status = 404, body = ErrorBody)))]
pub async fn list_roles(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<Snowflake>,
) -> ApiResult<Json<Vec<Role>>> {
    Ok(Json(state.chat.roles(server_id, user.user_id).await?))
}

/// Create a role (MANAGE_ROLES); it starts just above @everyone.
#[utoipa::path(post, path = "/servers/{server_id}/roles", tag = "roles", security(("bearer" = [])), params(("server_id" = String, Path)),
    request_body = RoleBody, responses((status = 201, body = Role), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_role(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<Snowflake>,
    headers: HeaderMap,
    Json(body): Json<RoleBody>,
) -> ApiResult<(StatusCode, Json<Role>)> {
    let r = reason(&headers);
    let name = body.name.clone().unwrap_or_else(|| "new role".into());
    let role = state
        .chat
        .create_role(
            server_id,
            Actor::new(user.user_id, r.as_deref()),
            &name,
            body.patch()?,
        )
        .await?;
    state
        .publish(BusEvent::PermissionsChanged { server_id })
        .await;
    state.emit(
        Target::Server(server_id),
        "ROLE_CREATE",
        &json!({"server_id": server_id, "role": role}),
    );
    Ok((StatusCode::CREATED, Json(role)))
}

/// Change a role below your highest (MANAGE_ROLES).
#[utoipa::path(patch, path = "/servers/{server_id}/roles/{role_id}", tag = "roles", security(("bearer" = [])),
    params(("server_id" = String, Path), ("role_id" = String, Path)), request_body = RoleBody,
    responses((status = 200, body = Role), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_role(
    State(state): State<AppState>,
    user: AuthUser,
    Path((server_id, role_id)): Path<(Snowflake, Snowflake)>,
    headers: HeaderMap,
    Json(body): Json<RoleBody>,
) -> ApiResult<Json<Role>> {
    let r = reason(&headers);
    let before = ServerVisibility::capture(&state, server_id).await;
    let role = state
        .chat
        .update_role(
            server_id,
            role_id,
            Actor::new(user.user_id, r.as_deref()),
            body.patch()?,
        )
        .await?;
    before
        .publish(&state, BusEvent::PermissionsChanged { server_id }, None)
        .await;
    state.emit(
        Target::Server(server_id),
        "ROLE_UPDATE",
        &json!({"server_id": server_id, "role": role}),
    );
    Ok(Json(role))
}

/// Delete a role below your highest (MANAGE_ROLES).
#[utoipa::path(delete, path = "/servers/{server_id}/roles/{role_id}", tag = "roles", security(("bearer" = [])),
    params(("server_id" = String, Path), ("role_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_role(
    State(state): State<AppState>,
    user: AuthUser,
    Path((server_id, role_id)): Path<(Snowflake, Snowflake)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let r = reason(&headers);
    let before = ServerVisibility::capture(&state, server_id).await;
    state
        .chat
        .delete_role(server_id, role_id, Actor::new(user.user_id, r.as_deref()))
        .await?;
    before
        .publish(&state, BusEvent::PermissionsChanged { server_id }, None)
        .await;
    state.emit(
        Target::Server(server_id),
        "ROLE_DELETE",
        &json!({"server_id": server_id, "role_id": role_id}),
    );
    Ok(StatusCode::NO_CONTENT)
}

async fn member_role(
    state: AppState,
    user: AuthUser,
    server_id: Snowflake,
    target: Snowflake,
    role_id: Snowflake,
    add: bool,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let r = reason(&headers);
    let before = ServerVisibility::capture(&state, server_id).await;
    let roles = state
        .chat
        .set_member_role(
            server_id,
            target,
            role_id,
            add,
            Actor::new(user.user_id, r.as_deref()),
        )
        .await?;
    before
        .publish(&state, BusEvent::PermissionsChanged { server_id }, None)
        .await;
    state.emit(
        Target::Server(server_id),
        "MEMBER_UPDATE",
        &json!({"server_id": server_id, "user_id": target, "roles": roles}),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Give a member a role (MANAGE_ROLES; the role must be below yours).
#[utoipa::path(put, path = "/servers/{server_id}/members/{user_id}/roles/{role_id}", tag = "roles", security(("bearer" = [])),
    params(("server_id" = String, Path), ("user_id" = String, Path), ("role_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn add_member_role(
    State(state): State<AppState>,
    user: AuthUser,
    Path((server_id, target, role_id)): Path<(Snowflake, Snowflake, Snowflake)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    member_role(state, user, server_id, target, role_id, true, headers).await
}

/// Take a role from a member.
#[utoipa::path(delete, path = "/servers/{server_id}/members/{user_id}/roles/{role_id}", tag = "roles", security(("bearer" = [])),
    params(("server_id" = String, Path), ("user_id" = String, Path), ("role_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_member_role(
    State(state): State<AppState>,
    user: AuthUser,
    Path((server_id, target, role_id)): Path<(Snowflake, Snowflake, Snowflake)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    member_role(state, user, server_id, target, role_id, false, headers).await
}

/// The channel's permission overwrites.
#[utoipa::path(get, path = "/channels/{channel_id}/permissions", tag = "roles", security(("bearer" = [])), params(("channel_id" = String, Path)),
    responses((status = 200, body = [PermissionOverwrite]), (status = 404, body = ErrorBody)))]
pub async fn list_overwrites(
    State(state): State<AppState>,
    user: AuthUser,
    Path(channel_id): Path<Snowflake>,
) -> ApiResult<Json<Vec<PermissionOverwrite>>> {
    Ok(Json(state.chat.overwrites(channel_id, user.user_id).await?))
}

/// Set a role's or member's overwrite on a channel (MANAGE_ROLES there).
#[utoipa::path(put, path = "/channels/{channel_id}/permissions/{overwrite_id}", tag = "roles", security(("bearer" = [])),
    params(("channel_id" = String, Path), ("overwrite_id" = String, Path)), request_body = OverwriteBody,
    responses((status = 200, body = PermissionOverwrite), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_overwrite(
    State(state): State<AppState>,
    user: AuthUser,
    Path((channel_id, target)): Path<(Snowflake, Snowflake)>,
    headers: HeaderMap,
    Json(body): Json<OverwriteBody>,
) -> ApiResult<Json<PermissionOverwrite>> {
    let r = reason(&headers);
    let before = visibility_before(&state, channel_id, user.user_id).await;
    let allow = parse_perms("allow", &body.allow)?.unwrap_or(0);
    let deny = parse_perms("deny", &body.deny)?.unwrap_or(0);
    let ow = state
        .chat
        .put_overwrite(
            channel_id,
            target,
            &body.kind,
            allow,
            deny,
            Actor::new(user.user_id, r.as_deref()),
        )
        .await?;
    overwrites_changed(&state, before, channel_id).await;
    Ok(Json(ow))
}

/// Remove an overwrite.
#[utoipa::path(delete, path = "/channels/{channel_id}/permissions/{overwrite_id}", tag = "roles", security(("bearer" = [])),
    params(("channel_id" = String, Path), ("overwrite_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_overwrite(
    State(state): State<AppState>,
    user: AuthUser,
    Path((channel_id, target)): Path<(Snowflake, Snowflake)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let r = reason(&headers);
    let before = visibility_before(&state, channel_id, user.user_id).await;
    state
        .chat
        .delete_overwrite(channel_id, target, Actor::new(user.user_id, r.as_deref()))
        .await?;
    overwrites_changed(&state, before, channel_id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Who sees what in the channel's server before a change, when the caller may see the
/// channel (otherwise the change itself is refused).
pub(crate) async fn visibility_before(
    state: &AppState,
    channel_id: Snowflake,
    user_id: Snowflake,
) -> Option<ServerVisibility> {
    let (channel, _) = state.chat.channel_access(channel_id, user_id).await.ok()?;
    Some(ServerVisibility::capture(state, channel.server_id?).await)
}

/// A channel's overwrites changed: permissions in its server, and who sees it.
async fn overwrites_changed(
    state: &AppState,
    before: Option<ServerVisibility>,
    channel_id: Snowflake,
) {
    if let Some(before) = before {
        let server_id = before.server_id();
        before
            .publish(
                state,
                BusEvent::PermissionsChanged { server_id },
                Some(channel_id),
            )
            .await;
    }
}

async fn removed(state: &AppState, server_id: Snowflake, target: Snowflake) {
    state
        .publish(BusEvent::MemberLeft {
            server_id,
            user_id: target,
        })
        .await;
    state.emit(
        Target::Server(server_id),
        "MEMBER_REMOVE",
        &json!({"server_id": server_id, "user_id": target}),
    );
    state.emit(
        Target::User(target),
        "SERVER_DELETE",
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
    Path((server_id, target)): Path<(Snowflake, Snowflake)>,
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
    Path(server_id): Path<Snowflake>,
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
    Path((server_id, target)): Path<(Snowflake, Snowflake)>,
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
        "BAN_ADD",
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
    Path((server_id, target)): Path<(Snowflake, Snowflake)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let r = reason(&headers);
    state
        .chat
        .unban(server_id, target, Actor::new(user.user_id, r.as_deref()))
        .await?;
    state.emit(
        Target::Server(server_id),
        "BAN_REMOVE",
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
    Path(server_id): Path<Snowflake>,
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
