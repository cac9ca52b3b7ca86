//! `/users/@me`: profile and login sessions.

use crate::auth::AuthUser;
use crate::error::{ApiResult, ErrorBody, Json, Path};
use crate::gateway::hub::Target;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use confab_chat::accounts::ProfilePatch;
use confab_chat::model::{AuthSession, User};
use confab_chat::Snowflake;
use serde::{Deserialize, Deserializer};
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
}

/// The current user.
#[utoipa::path(get, path = "/users/@me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<User>> {
    Ok(Json(state.chat.user(user.user_id).await?))
}

/// Update display name, avatar URL or custom status.
#[utoipa::path(patch, path = "/users/@me", tag = "users", security(("bearer" = [])), request_body = ProfileBody,
    responses((status = 200, body = User), (status = 400, body = ErrorBody)))]
pub async fn update_me(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<ProfileBody>,
) -> ApiResult<Json<User>> {
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
    let mut to = state.hub.co_members(user.user_id);
    to.push(user.user_id);
    state.emit(Target::Users(to), "USER_UPDATE", &updated);
    Ok(Json(updated))
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
    Path(session_id): Path<Snowflake>,
) -> ApiResult<StatusCode> {
    super::auth::end_session(&state, user.user_id, session_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
