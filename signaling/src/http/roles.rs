//! Roles, member roles and channel permission overwrites (`confab_chat::roles`). Every change
//! publishes `PermissionsChanged`, with who saw what before, so sessions and voice follow it.

use super::moderation::reason;
use crate::auth::AuthUser;
use crate::bus::BusEvent;
use crate::error::{ApiResult, ErrorBody, Json, Path};
use crate::gateway::events::Event;
use crate::gateway::hub::Target;
use crate::state::AppState;
use crate::visibility::ServerVisibility;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use confab_chat::audit::Actor;
use confab_chat::permissions::Permissions;
use confab_chat::roles::{PermissionOverwrite, Role, RolePatch, EVERYONE_NAME_RULE};
use confab_chat::{ChannelId, ChatError, Name, RoleId, ServerId, Snowflake, UserId};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

fn parse_perms(field: &str, v: &Option<String>) -> ApiResult<Option<Permissions>> {
    match v {
        None => Ok(None),
        Some(s) => s
            .parse::<Permissions>()
            .map(Some)
            .map_err(|_| ChatError::field(field, "must be a decimal permission bitfield").into()),
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
    /// Everything but the name, whose rule differs between creating and updating.
    fn patch(&self) -> ApiResult<RolePatch> {
        Ok(RolePatch {
            name: None,
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

/// The server's roles, lowest first.
#[utoipa::path(get, path = "/servers/{server_id}/roles", tag = "roles", security(("bearer" = [])), params(("server_id" = String, Path)),
    responses((status = 200, body = [Role]), (status = 404, body = ErrorBody)))]
pub async fn list_roles(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
) -> ApiResult<Json<Vec<Role>>> {
    Ok(Json(state.chat.roles(server_id, user.user_id).await?))
}

/// Create a role (MANAGE_ROLES); it starts just above @everyone.
#[utoipa::path(post, path = "/servers/{server_id}/roles", tag = "roles", security(("bearer" = [])), params(("server_id" = String, Path)),
    request_body = RoleBody, responses((status = 201, body = Role), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_role(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
    headers: HeaderMap,
    Json(body): Json<RoleBody>,
) -> ApiResult<(StatusCode, Json<Role>)> {
    let r = reason(&headers);
    let patch = body.patch()?;
    let name = Name::parse(body.name.as_deref().unwrap_or("new role"))?;
    let role = state
        .chat
        .create_role(
            server_id,
            Actor::new(user.user_id, r.as_deref()),
            &name,
            patch,
        )
        .await?;
    state
        .publish(BusEvent::PermissionsChanged { server_id })
        .await;
    state.emit(
        Target::Server(server_id),
        Event::RoleCreate,
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
    Path((server_id, role_id)): Path<(ServerId, RoleId)>,
    headers: HeaderMap,
    Json(body): Json<RoleBody>,
) -> ApiResult<Json<Role>> {
    let r = reason(&headers);
    let mut patch = body.patch()?;
    patch.name = body
        .name
        .as_deref()
        .map(|n| Name::parse(n).map_err(|_| ChatError::field("name", EVERYONE_NAME_RULE)))
        .transpose()?;
    let before = ServerVisibility::capture(&state, server_id).await;
    let role = state
        .chat
        .update_role(
            server_id,
            role_id,
            Actor::new(user.user_id, r.as_deref()),
            patch,
        )
        .await?;
    before
        .publish(&state, BusEvent::PermissionsChanged { server_id }, None)
        .await;
    state.emit(
        Target::Server(server_id),
        Event::RoleUpdate,
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
    Path((server_id, role_id)): Path<(ServerId, RoleId)>,
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
        Event::RoleDelete,
        &json!({"server_id": server_id, "role_id": role_id}),
    );
    Ok(StatusCode::NO_CONTENT)
}

async fn member_role(
    state: AppState,
    user: AuthUser,
    server_id: ServerId,
    target: UserId,
    role_id: RoleId,
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
        Event::MemberUpdate,
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
    Path((server_id, target, role_id)): Path<(ServerId, UserId, RoleId)>,
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
    Path((server_id, target, role_id)): Path<(ServerId, UserId, RoleId)>,
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
    Path(channel_id): Path<ChannelId>,
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
    Path((channel_id, target)): Path<(ChannelId, Snowflake)>,
    headers: HeaderMap,
    Json(body): Json<OverwriteBody>,
) -> ApiResult<Json<PermissionOverwrite>> {
    let r = reason(&headers);
    let before = visibility_before(&state, channel_id, user.user_id).await;
    let allow = parse_perms("allow", &body.allow)?.unwrap_or_default();
    let deny = parse_perms("deny", &body.deny)?.unwrap_or_default();
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
    Path((channel_id, target)): Path<(ChannelId, Snowflake)>,
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
    channel_id: ChannelId,
    user_id: UserId,
) -> Option<ServerVisibility> {
    let (channel, _) = state.chat.channel_access(channel_id, user_id).await.ok()?;
    Some(ServerVisibility::capture(state, channel.server_id?).await)
}

/// A channel's overwrites changed: permissions in its server, and who sees it.
async fn overwrites_changed(
    state: &AppState,
    before: Option<ServerVisibility>,
    channel_id: ChannelId,
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
