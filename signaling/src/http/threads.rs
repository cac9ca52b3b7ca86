//! Threads and forum posts: creating, listing, joining and leaving them (docs/threads.md).
//! A thread's messages use the message routes with the thread's id; renaming, archiving and
//! locking use `PATCH /channels/{channel_id}`.

use crate::auth::AuthUser;
use crate::bus::BusEvent;
use crate::error::{ApiResult, ErrorBody, Json, Path, Query};
use crate::gateway::events::Event;
use crate::gateway::hub::Target;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use confab_chat::model::{Channel, ChannelKind, Message};
use confab_chat::threads::{NewThread, ThreadActivity, ThreadMember, ThreadQuery};
use confab_chat::{ChannelId, ChatError, MessageId, Name, Snowflake, UserId};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ThreadFromMessageBody {
    /// 1-100 characters.
    pub name: String,
    /// Minutes of inactivity before it archives itself: 60, 1440 (default), 4320 or 10080.
    pub auto_archive_duration: Option<i32>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FirstMessage {
    /// 1-4000 characters.
    pub content: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewThreadBody {
    /// The thread's name, or the forum post's title: 1-100 characters.
    pub name: String,
    /// `"public_thread"` (default) or `"private_thread"` (text channels only).
    #[serde(rename = "type")]
    pub kind: Option<ChannelKind>,
    /// 60, 1440 (default), 4320 or 10080 minutes.
    pub auto_archive_duration: Option<i32>,
    /// The first message: required for a forum post, optional otherwise.
    pub message: Option<FirstMessage>,
    /// Forum posts: up to 5 ids of the forum's `available_tags`.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub applied_tags: Vec<Snowflake>,
}

#[derive(Deserialize, IntoParams)]
pub struct ThreadListParams {
    /// Only archived (`true`) or only active (`false`) threads; both when absent.
    pub archived: Option<bool>,
    /// Threads listed after this thread (keyset pagination: pass the last id of a page).
    pub before: Option<ChannelId>,
    /// 1-100, default 50.
    pub limit: Option<i64>,
    /// Forum posts carrying this tag id.
    #[param(value_type = Option<String>)]
    pub tag: Option<Snowflake>,
}

/// Tells those who see a new thread: THREAD_CREATE.
async fn announce(state: &AppState, thread: &Channel) {
    state.emit(
        state
            .channel_target(thread.server_id, thread.id, None)
            .await,
        Event::ThreadCreate,
        thread,
    );
}

fn members_update(
    thread: &Channel,
    added: &[ThreadMember],
    removed: &[UserId],
) -> serde_json::Value {
    json!({
        "id": thread.id,
        "server_id": thread.server_id,
        "member_count": thread.thread_metadata.as_ref().map(|m| m.member_count),
        "added_members": added,
        "removed_member_ids": removed,
    })
}

/// What a message posted in a thread changed, told to those who see it: new members (a
/// private thread's newcomers learn of it with THREAD_CREATE), and THREAD_UPDATE when the
/// message reopened an archived thread. Run before MESSAGE_CREATE is dispatched, so that
/// newcomers of a private thread receive the message too.
pub async fn announce_activity(state: &AppState, activity: &ThreadActivity) {
    let thread = &activity.thread;
    if !activity.added.is_empty() {
        if thread.kind == ChannelKind::PrivateThread {
            state
                .publish(BusEvent::ThreadMembersChanged {
                    channel_id: thread.id,
                })
                .await;
            state.emit(
                Target::Users(activity.added.clone()),
                Event::ThreadCreate,
                thread,
            );
        }
        let now = chrono::Utc::now();
        let added: Vec<ThreadMember> = activity
            .added
            .iter()
            .map(|u| ThreadMember {
                id: thread.id,
                user_id: *u,
                join_timestamp: now,
            })
            .collect();
        state.emit(
            state
                .channel_target(thread.server_id, thread.id, None)
                .await,
            Event::ThreadMembersUpdate,
            &members_update(thread, &added, &[]),
        );
    }
    if activity.unarchived {
        state.emit(
            state
                .channel_target(thread.server_id, thread.id, None)
                .await,
            Event::ThreadUpdate,
            thread,
        );
    }
}

/// Start a public thread from a message of a text channel (CREATE_PUBLIC_THREADS). One thread
/// per message (409 for a second). Viewers of the channel get THREAD_CREATE.
#[utoipa::path(post, path = "/channels/{channel_id}/messages/{message_id}/threads", tag = "threads", security(("bearer" = [])),
    params(("channel_id" = String, Path), ("message_id" = String, Path)), request_body = ThreadFromMessageBody,
    responses((status = 201, body = Channel), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn create_from_message(
    State(state): State<AppState>,
    user: AuthUser,
    Path((channel_id, message_id)): Path<(ChannelId, MessageId)>,
    Json(body): Json<ThreadFromMessageBody>,
) -> ApiResult<(StatusCode, Json<Channel>)> {
    let thread = state
        .chat
        .create_thread_from_message(
            channel_id,
            message_id,
            user.user_id,
            Name::parse(&body.name)?,
            body.auto_archive_duration,
        )
        .await?;
    announce(&state, &thread).await;
    Ok((StatusCode::CREATED, Json(thread)))
}

/// Start a thread without a message in a text channel (CREATE_PUBLIC_THREADS, or
/// CREATE_PRIVATE_THREADS for `"type": "private_thread"`), or post in a forum (SEND_MESSAGES
/// there; `message` and up to 5 `applied_tags` of the forum). THREAD_CREATE goes to those who
/// see it (a private thread: its members and MANAGE_THREADS holders), then the first
/// message's MESSAGE_CREATE.
#[utoipa::path(post, path = "/channels/{channel_id}/threads", tag = "threads", security(("bearer" = [])),
    params(("channel_id" = String, Path)), request_body = NewThreadBody,
    responses((status = 201, body = Channel), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Path(channel_id): Path<ChannelId>,
    Json(body): Json<NewThreadBody>,
) -> ApiResult<(StatusCode, Json<Channel>)> {
    let private = match body.kind {
        None | Some(ChannelKind::PublicThread) => false,
        Some(ChannelKind::PrivateThread) => true,
        Some(_) => {
            return Err(
                ChatError::field("type", "must be \"public_thread\" or \"private_thread\"").into(),
            )
        }
    };
    let (thread, message) = state
        .chat
        .create_thread(
            channel_id,
            user.user_id,
            NewThread {
                name: Some(Name::parse(&body.name)?),
                private,
                auto_archive_minutes: body.auto_archive_duration,
                message: body.message.map(|m| m.content),
                applied_tags: body.applied_tags,
            },
        )
        .await?;
    announce(&state, &thread).await;
    if let Some(message) = message {
        emit_message(&state, &message).await;
    }
    Ok((StatusCode::CREATED, Json(thread)))
}

async fn emit_message(state: &AppState, message: &Message) {
    metrics::counter!("confab_messages_created_total").increment(1);
    state.emit(
        state
            .channel_target(message.server_id, message.channel_id, None)
            .await,
        Event::MessageCreate,
        message,
    );
    state.previews.enqueue(message);
}

/// The threads of a text or forum channel the caller may see (private ones only to their
/// members and MANAGE_THREADS holders), most recent activity first.
#[utoipa::path(get, path = "/channels/{channel_id}/threads", tag = "threads", security(("bearer" = [])),
    params(("channel_id" = String, Path), ThreadListParams),
    responses((status = 200, body = [Channel]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Path(channel_id): Path<ChannelId>,
    Query(q): Query<ThreadListParams>,
) -> ApiResult<Json<Vec<Channel>>> {
    Ok(Json(
        state
            .chat
            .threads(
                channel_id,
                user.user_id,
                ThreadQuery {
                    archived: q.archived,
                    before: q.before,
                    limit: q.limit,
                    tag: q.tag,
                },
            )
            .await?,
    ))
}

/// Join a thread I can see. Those who see it get THREAD_MEMBERS_UPDATE.
#[utoipa::path(put, path = "/channels/{channel_id}/thread-members/@me", tag = "threads", security(("bearer" = [])),
    params(("channel_id" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn join(
    State(state): State<AppState>,
    user: AuthUser,
    Path(channel_id): Path<ChannelId>,
) -> ApiResult<StatusCode> {
    let (thread, added) = state.chat.join_thread(channel_id, user.user_id).await?;
    if added {
        if thread.kind == ChannelKind::PrivateThread {
            state
                .publish(BusEvent::ThreadMembersChanged {
                    channel_id: thread.id,
                })
                .await;
        }
        let member = ThreadMember {
            id: thread.id,
            user_id: user.user_id,
            join_timestamp: chrono::Utc::now(),
        };
        state.emit(
            state
                .channel_target(thread.server_id, thread.id, None)
                .await,
            Event::ThreadMembersUpdate,
            &members_update(&thread, &[member], &[]),
        );
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Leave a thread. Those who saw it get THREAD_MEMBERS_UPDATE; leaving a private thread hides
/// it unless I hold MANAGE_THREADS.
#[utoipa::path(delete, path = "/channels/{channel_id}/thread-members/@me", tag = "threads", security(("bearer" = [])),
    params(("channel_id" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn leave(
    State(state): State<AppState>,
    user: AuthUser,
    Path(channel_id): Path<ChannelId>,
) -> ApiResult<StatusCode> {
    // Who saw it before the change: the leaver included.
    let (current, _) = state.chat.channel_access(channel_id, user.user_id).await?;
    let target = state
        .channel_target(current.server_id, current.id, None)
        .await;
    let (thread, removed) = state.chat.leave_thread(channel_id, user.user_id).await?;
    if removed {
        if thread.kind == ChannelKind::PrivateThread {
            state
                .publish(BusEvent::ThreadMembersChanged {
                    channel_id: thread.id,
                })
                .await;
        }
        state.emit(
            target,
            Event::ThreadMembersUpdate,
            &members_update(&thread, &[], &[user.user_id]),
        );
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A thread's members (up to 1000, earliest first).
#[utoipa::path(get, path = "/channels/{channel_id}/thread-members", tag = "threads", security(("bearer" = [])),
    params(("channel_id" = String, Path)),
    responses((status = 200, body = [ThreadMember]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn members(
    State(state): State<AppState>,
    user: AuthUser,
    Path(channel_id): Path<ChannelId>,
) -> ApiResult<Json<Vec<ThreadMember>>> {
    Ok(Json(
        state.chat.thread_members(channel_id, user.user_id).await?,
    ))
}

/// Archives idle threads (a periodic task on every node; `FOR UPDATE SKIP LOCKED` keeps two
/// nodes from archiving one thread twice) and tells their viewers with THREAD_UPDATE.
pub async fn archive_sweep(state: &AppState) {
    match state.chat.archive_idle_threads().await {
        Ok(threads) => {
            for t in threads {
                state.emit(
                    state.channel_target(t.server_id, t.id, None).await,
                    Event::ThreadUpdate,
                    &t,
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "archiving idle threads"),
    }
}
