//! `/users/@me/relationships`: friends, requests and blocks. Each side is told what changed for
//! it (RELATIONSHIP_ADD / RELATIONSHIP_REMOVE).

use crate::auth::AuthUser;
use crate::error::{ApiResult, ErrorBody, Json, OptionalJson, Path};
use crate::gateway::events::Event;
use crate::gateway::hub::Target;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use confab_chat::relationships::{Relationship, RelationshipChange};
use confab_chat::UserId;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FriendRequestBody {
    pub username: String,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RelationshipBody {
    /// `"friend"` (send or accept a request, the default) or `"blocked"`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

async fn tell(state: &AppState, me: UserId, other: UserId, change: &RelationshipChange) {
    let (me_user, other_user) = match (state.chat.user(me).await, state.chat.user(other).await) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return,
    };
    match &change.mine {
        Some(kind) => state.emit(
            Target::User(me),
            Event::RelationshipAdd,
            &json!({"id": other, "type": kind, "user": other_user}),
        ),
        None => state.emit(
            Target::User(me),
            Event::RelationshipRemove,
            &json!({"id": other}),
        ),
    }
    // Presence follows friendship: new friends see each other's status at once.
    let friends = change.mine.as_deref() == Some("friend");
    state
        .publish(crate::bus::BusEvent::Friendship {
            a: me,
            b: other,
            friends,
        })
        .await;
    if friends {
        for (who, to) in [(me, other), (other, me)] {
            let status = state.hub.presence_of(who);
            if status != crate::gateway::presence::Status::Offline {
                state.emit(
                    Target::User(to),
                    Event::PresenceUpdate,
                    &json!({"user_id": who, "status": status}),
                );
            }
        }
    }
    if change.theirs_changed {
        match &change.theirs {
            Some(kind) => state.emit(
                Target::User(other),
                Event::RelationshipAdd,
                &json!({"id": me, "type": kind, "user": me_user}),
            ),
            None => state.emit(
                Target::User(other),
                Event::RelationshipRemove,
                &json!({"id": me}),
            ),
        }
    }
}

/// My friends, requests and blocks.
#[utoipa::path(get, path = "/users/@me/relationships", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = [Relationship])))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<Vec<Relationship>>> {
    Ok(Json(state.chat.relationships(user.user_id).await?))
}

/// Send a friend request by username (accepts theirs if they already asked).
#[utoipa::path(post, path = "/users/@me/relationships", tag = "users", security(("bearer" = [])), request_body = FriendRequestBody,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn request(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<FriendRequestBody>,
) -> ApiResult<StatusCode> {
    let (other, change) = state
        .chat
        .request_friend(user.user_id, &body.username)
        .await?;
    tell(&state, user.user_id, other, &change).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Accept a request / send one (`{"type": "friend"}`), or block (`{"type": "blocked"}`).
#[utoipa::path(put, path = "/users/@me/relationships/{user_id}", tag = "users", security(("bearer" = [])),
    params(("user_id" = String, Path)), request_body = Option<RelationshipBody>,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put(
    State(state): State<AppState>,
    user: AuthUser,
    Path(other): Path<UserId>,
    OptionalJson(body): OptionalJson<RelationshipBody>,
) -> ApiResult<StatusCode> {
    let change = match body.kind.as_deref().unwrap_or("friend") {
        "friend" => {
            state.chat.user(other).await?;
            state.chat.befriend(user.user_id, other).await?
        }
        "blocked" => state.chat.block(user.user_id, other).await?,
        _ => {
            return Err(
                confab_chat::ChatError::field("type", "must be \"friend\" or \"blocked\"").into(),
            )
        }
    };
    tell(&state, user.user_id, other, &change).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a friend, decline or cancel a request, or unblock.
#[utoipa::path(delete, path = "/users/@me/relationships/{user_id}", tag = "users", security(("bearer" = [])),
    params(("user_id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    Path(other): Path<UserId>,
) -> ApiResult<StatusCode> {
    let change = state.chat.remove_relationship(user.user_id, other).await?;
    tell(&state, user.user_id, other, &change).await;
    Ok(StatusCode::NO_CONTENT)
}
