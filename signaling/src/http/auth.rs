//! `/auth`: register, login, refresh, logout.

use crate::auth::{end_sessions, AuthUser};
use crate::error::{ApiResult, ErrorBody, Json};
use crate::proxy::ClientIp;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use confab_chat::accounts::{ClientInfo, Login, RefreshOutcome, SessionScope};
use confab_chat::model::User;
use confab_chat::{ChatError, SessionId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
pub struct RegisterBody {
    pub username: String,
    pub password: String,
    pub email: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct LoginBody {
    pub username: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct RefreshBody {
    pub refresh_token: String,
}

#[derive(Deserialize, ToSchema, Default)]
pub struct LogoutBody {
    /// Optional; the session is taken from the access token.
    pub refresh_token: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuthResponse {
    /// Access token (JWT) for `Authorization: Bearer`.
    pub token: String,
    pub refresh_token: String,
    /// Seconds until `token` expires.
    pub expires_in: u64,
    pub session_id: SessionId,
    pub user: User,
}

fn client_info(headers: &HeaderMap, client: ClientIp) -> ClientInfo {
    ClientInfo {
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        ip: Some(client.0.to_string()),
    }
}

fn respond(state: &AppState, login: Login) -> ApiResult<Json<AuthResponse>> {
    Ok(Json(AuthResponse {
        token: state.tokens.mint(login.user.id, login.session_id)?,
        refresh_token: login.refresh_token,
        expires_in: state.tokens.ttl(),
        session_id: login.session_id,
        user: login.user,
    }))
}

/// Create an account and log in.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterBody,
    responses((status = 201, body = AuthResponse), (status = 400, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    client: ClientIp,
    headers: HeaderMap,
    Json(body): Json<RegisterBody>,
) -> ApiResult<(StatusCode, Json<AuthResponse>)> {
    let login = state
        .chat
        .register(
            &body.username,
            &body.password,
            body.email.as_deref(),
            &client_info(&headers, client),
        )
        .await?;
    Ok((StatusCode::CREATED, respond(&state, login)?))
}

/// Log in with username and password.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, body = AuthResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientIp,
    headers: HeaderMap,
    Json(body): Json<LoginBody>,
) -> ApiResult<Json<AuthResponse>> {
    let login = state
        .chat
        .login(
            &body.username,
            &body.password,
            &client_info(&headers, client),
        )
        .await?;
    respond(&state, login)
}

/// Exchange a refresh token for a new access token and refresh token. Each refresh token works
/// once; presenting a used one ends the session (its family) and closes its gateway
/// connections.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshBody,
    responses((status = 200, body = AuthResponse), (status = 401, body = ErrorBody)))]
pub async fn refresh(
    State(state): State<AppState>,
    Json(body): Json<RefreshBody>,
) -> ApiResult<Json<AuthResponse>> {
    match state.chat.refresh(&body.refresh_token).await? {
        RefreshOutcome::Renewed(login) => respond(&state, login),
        RefreshOutcome::Reused(revoked) => {
            end_sessions(&state, revoked).await;
            Err(ChatError::Unauthorized("invalid refresh token").into())
        }
    }
}

/// End the current session: its refresh tokens stop working and its gateway connections close.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(State(state): State<AppState>, user: AuthUser) -> ApiResult<StatusCode> {
    end_session(&state, user.user_id, user.session_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes one login session of a user and closes its gateway connections.
pub async fn end_session(
    state: &AppState,
    user_id: UserId,
    session_id: SessionId,
) -> ApiResult<()> {
    let revoked = state
        .chat
        .revoke_sessions(user_id, SessionScope::One(session_id))
        .await?;
    end_sessions(state, revoked).await;
    Ok(())
}
