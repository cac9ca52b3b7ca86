//! Web Push subscriptions and notification settings (docs/push.md).

use crate::auth::AuthUser;
use crate::error::{ApiResult, ErrorBody, Json, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use confab_chat::notifications::subscriptions::PushSubscription;
use confab_chat::notifications::{
    ChannelSettings, ChannelSettingsBody, NotificationSettings, ServerSettings, ServerSettingsBody,
};
use confab_chat::{ChannelId, ChatError, ServerId, Snowflake};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Serialize, ToSchema)]
pub struct VapidKey {
    /// The server's VAPID public key: base64url of the uncompressed P-256 point, to pass as
    /// `applicationServerKey` to `pushManager.subscribe`.
    pub public_key: String,
}

/// What `PushSubscription.toJSON()` gives in the browser.
#[derive(Deserialize, ToSchema)]
pub struct SubscriptionBody {
    /// The push service URL (https).
    pub endpoint: String,
    pub keys: SubscriptionKeys,
}

#[derive(Deserialize, ToSchema)]
pub struct SubscriptionKeys {
    /// The browser's P-256 public key, base64url (65 bytes decoded).
    pub p256dh: String,
    /// The browser's auth secret, base64url (16 bytes decoded).
    pub auth: String,
}

#[derive(Deserialize, IntoParams)]
pub struct EndpointQuery {
    /// The endpoint of the subscription to remove.
    pub endpoint: String,
}

/// Browsers send base64url, with or without padding.
fn decode_key(field: &str, value: &str, len: usize) -> Result<Vec<u8>, ChatError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(value)
        .or_else(|_| URL_SAFE.decode(value))
        .map_err(|_| ChatError::field(field, "not base64url"))?;
    if bytes.len() != len {
        return Err(ChatError::field(
            field,
            format!("must decode to {len} bytes"),
        ));
    }
    Ok(bytes)
}

/// The server's VAPID public key.
#[utoipa::path(get, path = "/push/vapid-public-key", tag = "push", security(("bearer" = [])),
    responses((status = 200, body = VapidKey)))]
pub async fn vapid_public_key(State(state): State<AppState>, _user: AuthUser) -> Json<VapidKey> {
    Json(VapidKey {
        public_key: state.push.public_key().to_owned(),
    })
}

/// My push subscriptions.
#[utoipa::path(get, path = "/users/@me/push-subscriptions", tag = "push", security(("bearer" = [])),
    responses((status = 200, body = [PushSubscription])))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<Vec<PushSubscription>>> {
    Ok(Json(state.chat.push_subscriptions(user.user_id).await?))
}

/// Subscribe a browser (the JSON of its `PushSubscription`). At most 10 per user; the same
/// endpoint again renews its keys.
#[utoipa::path(post, path = "/users/@me/push-subscriptions", tag = "push", security(("bearer" = [])),
    request_body = SubscriptionBody,
    responses((status = 201, body = PushSubscription), (status = 400, body = ErrorBody)))]
pub async fn subscribe(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<SubscriptionBody>,
) -> ApiResult<(StatusCode, Json<PushSubscription>)> {
    state
        .push
        .check_endpoint(&body.endpoint)
        .map_err(|m| ChatError::field("endpoint", m))?;
    let p256dh = decode_key(
        "keys.p256dh",
        &body.keys.p256dh,
        crate::push::ece::PUBLIC_KEY_LEN,
    )?;
    if p256dh[0] != 4 {
        return Err(ChatError::field("keys.p256dh", "must be an uncompressed P-256 point").into());
    }
    let auth = decode_key("keys.auth", &body.keys.auth, crate::push::ece::AUTH_LEN)?;
    let sub = state
        .chat
        .add_push_subscription(user.user_id, &body.endpoint, &p256dh, &auth)
        .await?;
    Ok((StatusCode::CREATED, Json(sub)))
}

/// Remove one of my subscriptions by id.
#[utoipa::path(delete, path = "/users/@me/push-subscriptions/{subscription_id}", tag = "push", security(("bearer" = [])),
    params(("subscription_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn unsubscribe(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Snowflake>,
) -> ApiResult<StatusCode> {
    state
        .chat
        .delete_push_subscription(user.user_id, Some(id), None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove one of my subscriptions by endpoint (what a browser knows after unsubscribing).
#[utoipa::path(delete, path = "/users/@me/push-subscriptions", tag = "push", security(("bearer" = [])),
    params(EndpointQuery),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn unsubscribe_endpoint(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<EndpointQuery>,
) -> ApiResult<StatusCode> {
    state
        .chat
        .delete_push_subscription(user.user_id, None, Some(&q.endpoint))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Send a test notification to every browser I subscribed (queued; 202).
#[utoipa::path(post, path = "/users/@me/push-subscriptions/test", tag = "push", security(("bearer" = [])),
    responses((status = 202)))]
pub async fn test(State(state): State<AppState>, user: AuthUser) -> StatusCode {
    state.push.test(user.user_id);
    StatusCode::ACCEPTED
}

/// My notification settings (servers and channels not at their defaults).
#[utoipa::path(get, path = "/users/@me/notification-settings", tag = "push", security(("bearer" = [])),
    responses((status = 200, body = NotificationSettings)))]
pub async fn settings(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<NotificationSettings>> {
    Ok(Json(state.chat.notification_settings(user.user_id).await?))
}

/// Set my notification level, mute and @everyone handling for a server I am a member of.
#[utoipa::path(put, path = "/users/@me/servers/{server_id}/notification-settings", tag = "push", security(("bearer" = [])),
    params(("server_id" = String, Path)), request_body = ServerSettingsBody,
    responses((status = 200, body = ServerSettings), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_server(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
    Json(body): Json<ServerSettingsBody>,
) -> ApiResult<Json<ServerSettings>> {
    Ok(Json(
        state
            .chat
            .put_server_notification_settings(user.user_id, server_id, body)
            .await?,
    ))
}

/// Set my notification level and mute for a channel I can view (or a DM of mine); the level
/// overrides the server's.
#[utoipa::path(put, path = "/users/@me/channels/{channel_id}/notification-settings", tag = "push", security(("bearer" = [])),
    params(("channel_id" = String, Path)), request_body = ChannelSettingsBody,
    responses((status = 200, body = ChannelSettings), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_channel(
    State(state): State<AppState>,
    user: AuthUser,
    Path(channel_id): Path<ChannelId>,
    Json(body): Json<ChannelSettingsBody>,
) -> ApiResult<Json<ChannelSettings>> {
    Ok(Json(
        state
            .chat
            .put_channel_notification_settings(user.user_id, channel_id, body)
            .await?,
    ))
}
