//! `/users/@me`: profile, password, account deletion and login sessions.

use crate::auth::{end_sessions, AuthUser};
use crate::bus::BusEvent;
use crate::error::{ApiResult, ErrorBody, Json, Path};
use crate::gateway::events::Event;
use crate::gateway::hub::Target;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use confab_chat::accounts::ProfilePatch;
use confab_chat::model::{AuthSession, User};
use confab_chat::{ChatError, SessionId, UserId};
use serde::{Deserialize, Deserializer};
use serde_json::json;
use utoipa::ToSchema;

/// Distinguishes an absent field (None) from an explicit null (Some(None)).
pub fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    /// Null clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub avatar_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub custom_status: Option<Option<String>>,
    /// The current password; required with `new_password`.
    #[serde(default)]
    pub password: Option<String>,
    /// A new password (the rules of registration). Every other session of the user ends and
    /// its gateway connections close (4004); the caller's session stays.
    #[serde(default)]
    pub new_password: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccountBody {
    /// The current password.
    pub password: String,
}

/// The current user.
#[utoipa::path(get, path = "/users/@me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<User>> {
    Ok(Json(state.chat.user(user.user_id).await?))
}

/// Counts a request that verifies the user's password against the `auth` bucket, per user: a
/// stolen access token must not become an unlimited password oracle (nor a way to make the
/// server run argon2 100 times in 5 s).
fn password_attempt(state: &AppState, user_id: UserId) -> ApiResult<()> {
    let d = state
        .limiter
        .check(crate::ratelimit::AUTH, &format!("password{user_id}"));
    if d.allowed {
        Ok(())
    } else {
        Err(crate::error::ApiError::RateLimited {
            retry_after: d.reset_after,
        })
    }
}

/// Update display name, avatar URL or custom status, or change the password (`password` and
/// `new_password`; applied first). A password change ends every other session of the user.
#[utoipa::path(patch, path = "/users/@me", tag = "users", security(("bearer" = [])), request_body = ProfileBody,
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn update_me(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<ProfileBody>,
) -> ApiResult<Json<User>> {
    match (&body.password, &body.new_password) {
        (Some(current), Some(new)) => {
            password_attempt(&state, user.user_id)?;
            let revoked = state
                .chat
                .change_password(user.user_id, user.session_id, current, new)
                .await?;
            end_sessions(&state, revoked).await;
        }
        (None, Some(_)) => {
            return Err(ChatError::field("password", "is required to change the password").into())
        }
        (Some(_), None) => {
            return Err(ChatError::field("new_password", "is required with password").into())
        }
        (None, None) => {}
    }
    let profile =
        body.display_name.is_some() || body.avatar_url.is_some() || body.custom_status.is_some();
    if !profile {
        return Ok(Json(state.chat.user(user.user_id).await?));
    }
    let updated = state
        .chat
        .update_profile(
            user.user_id,
            ProfilePatch {
                display_name: body.display_name,
                avatar_url: body.avatar_url,
                custom_status: body.custom_status,
            },
        )
        .await?;
    announce_user(&state, user.user_id, &updated).await?;
    Ok(Json(updated))
}

/// Tells the user's co-members (USER_UPDATE): every node tells its own sessions.
pub async fn announce_user(state: &AppState, user_id: UserId, updated: &User) -> ApiResult<()> {
    let servers = state.chat.server_ids_of(user_id).await?;
    state
        .publish(BusEvent::UserUpdated {
            user_id,
            servers,
            also: Vec::new(),
            user: serde_json::to_value(updated).map_err(anyhow::Error::from)?,
        })
        .await;
    Ok(())
}

/// Delete my account (the password confirms it). I leave every server (an owner must delete
/// their servers first: 400), my friends and requests go, every session ends; my messages and
/// DMs stay, shown as authored by "Deleted User". Nobody can log in to it again.
#[utoipa::path(delete, path = "/users/@me", tag = "users", security(("bearer" = [])), request_body = DeleteAccountBody,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn delete_me(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<DeleteAccountBody>,
) -> ApiResult<StatusCode> {
    password_attempt(&state, user.user_id)?;
    let gone = state
        .chat
        .delete_account(user.user_id, &body.password)
        .await?;
    for server_id in &gone.servers {
        state
            .publish(BusEvent::MemberLeft {
                server_id: *server_id,
                user_id: user.user_id,
            })
            .await;
        state.emit(
            Target::Server(*server_id),
            Event::MemberRemove,
            &json!({"server_id": server_id, "user_id": user.user_id}),
        );
    }
    for other in &gone.relationships {
        state
            .publish(BusEvent::Friendship {
                a: user.user_id,
                b: *other,
                friends: false,
            })
            .await;
        state.emit(
            Target::User(*other),
            Event::RelationshipRemove,
            &json!({"id": user.user_id}),
        );
    }
    // Messages and DMs keep showing the account: as "Deleted User" from now on. Every node
    // tells its sessions of the members of the servers it left and of its DM recipients.
    state
        .publish(BusEvent::UserUpdated {
            user_id: user.user_id,
            servers: gone.servers.clone(),
            also: gone.dm_recipients.clone(),
            user: serde_json::to_value(&gone.user).map_err(anyhow::Error::from)?,
        })
        .await;
    end_sessions(&state, gone.sessions).await;
    Ok(StatusCode::NO_CONTENT)
}

/// My active login sessions (devices).
#[utoipa::path(get, path = "/users/@me/sessions", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = [AuthSession])))]
pub async fn sessions(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<Vec<AuthSession>>> {
    Ok(Json(
        state.chat.sessions(user.user_id, user.session_id).await?,
    ))
}

/// Log out one of my sessions.
#[utoipa::path(delete, path = "/users/@me/sessions/{session_id}", tag = "users", security(("bearer" = [])),
    params(("session_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn end_session(
    State(state): State<AppState>,
    user: AuthUser,
    Path(session_id): Path<SessionId>,
) -> ApiResult<StatusCode> {
    super::auth::end_session(&state, user.user_id, session_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
