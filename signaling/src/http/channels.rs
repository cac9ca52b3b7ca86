//! `/channels`: a channel, its messages and typing.

use crate::auth::AuthUser;
use crate::bus::BusEvent;
use crate::error::{ApiError, ApiResult, ErrorBody, Json, Path, Query};
use crate::gateway::events::Event;
use crate::http::users::nullable;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use confab_chat::channels::ChannelPatch;
use confab_chat::messages::HistoryQuery;
use confab_chat::model::{Channel, Message};
use confab_chat::{ChannelId, ChatError, MessageId, Name};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelPatchBody {
    pub name: Option<String>,
    pub position: Option<i32>,
    /// A category id, or null to take the channel out of its category.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub parent_id: Option<Option<ChannelId>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub topic: Option<Option<String>>,
    /// Voice channels only: end-to-end encrypted voice and video (docs/e2ee.md). Changed
    /// only while nobody is connected (409 otherwise), so encrypted and plain senders never
    /// mix; recorded in the audit log as `channel_update`.
    pub e2ee: Option<bool>,
    /// Threads: archive or reopen (the creator or MANAGE_THREADS; a locked thread only the
    /// latter).
    pub archived: Option<bool>,
    /// Threads: lock or unlock (MANAGE_THREADS).
    pub locked: Option<bool>,
    /// Threads: 60, 1440, 4320 or 10080 minutes.
    pub auto_archive_duration: Option<i32>,
    /// Forum posts: up to 5 of the forum's tag ids.
    #[schema(value_type = Option<Vec<String>>)]
    pub applied_tags: Option<Vec<confab_chat::Snowflake>>,
    /// Forums: the whole list of tags (at most 20); give `id` to keep an existing tag.
    pub available_tags: Option<Vec<TagBody>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagBody {
    #[schema(value_type = Option<String>)]
    pub id: Option<confab_chat::Snowflake>,
    /// 1-20 characters, unique in the forum.
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
pub struct MessageBody {
    /// Up to 4000 characters, stored verbatim; may be empty only when files are attached.
    #[serde(default)]
    pub content: String,
    /// Client-chosen; the same nonce from the same user never creates a second message.
    pub nonce: Option<String>,
    /// Reply to this message of the same channel.
    pub reply_to: Option<MessageId>,
    /// At most one sticker of the channel's server (docs/emoji.md); content may then be empty.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub sticker_ids: Vec<confab_chat::Snowflake>,
}

#[derive(Deserialize, ToSchema)]
pub struct EditBody {
    /// New content, 1-4000 characters.
    pub content: Option<String>,
    /// Message flags the author may set: 4 = SUPPRESS_EMBEDS removes the link previews (and
    /// makes no more); 0 lets them be made again.
    pub flags: Option<i32>,
}

#[derive(Deserialize, IntoParams)]
pub struct HistoryParams {
    /// Messages older than this id.
    pub before: Option<MessageId>,
    /// Messages newer than this id.
    pub after: Option<MessageId>,
    /// Messages around this id: the message itself (when it is in this channel), up to half
    /// the page older than it and the rest newer. Not with `before` or `after`.
    pub around: Option<MessageId>,
    /// 1-100, default 50.
    pub limit: Option<i64>,
}

/// A channel.
#[utoipa::path(get, path = "/channels/{channel_id}", tag = "channels", security(("bearer" = [])), params(("channel_id" = String, Path)),
    responses((status = 200, body = Channel), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(channel_id): Path<ChannelId>,
) -> ApiResult<Json<Channel>> {
    let (channel, _) = state.chat.channel_access(channel_id, user.user_id).await?;
    if channel.kind.is_thread() || channel.kind == confab_chat::model::ChannelKind::Forum {
        return Ok(Json(state.chat.with_details(channel).await?));
    }
    if channel.kind.is_private() {
        // With its recipients, as in the DM list.
        return Ok(Json(
            state.chat.private_channel(channel_id, user.user_id).await?,
        ));
    }
    Ok(Json(channel))
}

/// Rename, reorder, move or re-topic a channel (MANAGE_CHANNELS); set a forum's tags; make a
/// voice channel end-to-end encrypted (docs/e2ee.md). For a thread: rename, archive, lock,
/// re-tag (docs/threads.md), with THREAD_UPDATE to its viewers.
#[utoipa::path(patch, path = "/channels/{channel_id}", tag = "channels", security(("bearer" = [])), params(("channel_id" = String, Path)),
    request_body = ChannelPatchBody, responses((status = 200, body = Channel), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path(channel_id): Path<ChannelId>,
    Json(body): Json<ChannelPatchBody>,
) -> ApiResult<Json<Channel>> {
    let thread_fields = body.archived.is_some()
        || body.locked.is_some()
        || body.auto_archive_duration.is_some()
        || body.applied_tags.is_some();
    let (current, _) = state.chat.channel_access(channel_id, user.user_id).await?;
    if current.kind.is_thread() {
        if body.e2ee.is_some() {
            return Err(ChatError::field(
                "e2ee",
                "only voice channels can be end-to-end encrypted",
            )
            .into());
        }
        return update_thread(&state, &user, channel_id, body).await;
    }
    if thread_fields {
        return Err(ChatError::field("channel_id", "not a thread").into());
    }
    if let Some(e2ee) = body.e2ee {
        // Participants joined under the old setting would keep sending what the newcomers
        // cannot read (or plaintext into an encrypted call).
        if current.e2ee != e2ee && state.voice.channel_occupied(channel_id) {
            return Err(ChatError::Conflict(
                "end-to-end encryption can only be changed while nobody is connected".into(),
            )
            .into());
        }
    }
    if let Some(tags) = body.available_tags {
        let tags = tags
            .into_iter()
            .map(|t| confab_chat::threads::TagInput {
                id: t.id,
                name: t.name,
            })
            .collect();
        let forum = state
            .chat
            .set_forum_tags(channel_id, user.user_id, tags)
            .await?;
        state.emit(
            state.channel_target(forum.server_id, forum.id, None).await,
            Event::ChannelUpdate,
            &forum,
        );
        if body.name.is_none()
            && body.position.is_none()
            && body.parent_id.is_none()
            && body.topic.is_none()
            && body.e2ee.is_none()
        {
            return Ok(Json(forum));
        }
    }
    let before = super::roles::visibility_before(&state, channel_id, user.user_id).await;
    let channel = state
        .chat
        .update_channel(
            channel_id,
            user.user_id,
            ChannelPatch {
                name: body.name.as_deref().map(Name::parse).transpose()?,
                position: body.position,
                parent_id: body.parent_id,
                topic: body.topic,
                e2ee: body.e2ee,
            },
        )
        .await?;
    // Moved into another category: its overwrites may now apply.
    if let Some(before) = before {
        let server_id = before.server_id();
        before
            .publish(
                &state,
                BusEvent::PermissionsChanged { server_id },
                Some(channel.id),
            )
            .await;
    }
    Ok(Json(channel))
}

async fn update_thread(
    state: &AppState,
    user: &AuthUser,
    thread_id: ChannelId,
    body: ChannelPatchBody,
) -> ApiResult<Json<Channel>> {
    if body.position.is_some()
        || body.parent_id.is_some()
        || body.topic.is_some()
        || body.available_tags.is_some()
    {
        return Err(ChatError::field(
            "channel_id",
            "a thread has no position, parent, topic or available tags",
        )
        .into());
    }
    let thread = state
        .chat
        .update_thread(
            thread_id,
            user.user_id,
            confab_chat::threads::ThreadPatch {
                name: body.name.as_deref().map(Name::parse).transpose()?,
                archived: body.archived,
                locked: body.locked,
                auto_archive_minutes: body.auto_archive_duration,
                applied_tags: body.applied_tags,
            },
        )
        .await?;
    state.emit(
        state
            .channel_target(thread.server_id, thread.id, None)
            .await,
        Event::ThreadUpdate,
        &thread,
    );
    Ok(Json(thread))
}

/// Delete a channel (MANAGE_CHANNELS) with its threads, or a thread (MANAGE_THREADS: its
/// viewers get THREAD_DELETE).
#[utoipa::path(delete, path = "/channels/{channel_id}", tag = "channels", security(("bearer" = [])), params(("channel_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    Path(channel_id): Path<ChannelId>,
) -> ApiResult<StatusCode> {
    let (current, _) = state.chat.channel_access(channel_id, user.user_id).await?;
    if current.kind.is_thread() {
        // Who saw it, read before it is gone.
        let target = state
            .channel_target(current.server_id, current.id, None)
            .await;
        let thread = state.chat.delete_channel(channel_id, user.user_id).await?;
        state.emit(
            target,
            Event::ThreadDelete,
            &json!({"id": thread.id, "server_id": thread.server_id, "parent_id": thread.parent_id, "type": thread.kind}),
        );
        return Ok(StatusCode::NO_CONTENT);
    }
    let before = super::roles::visibility_before(&state, channel_id, user.user_id).await;
    let channel = state.chat.delete_channel(channel_id, user.user_id).await?;
    if let Some(before) = before {
        // CHANNEL_DELETE to those who saw it (and for a category left empty of visible
        // channels, that too).
        let change = BusEvent::ChannelDeleted {
            server_id: before.server_id(),
            channel_id: channel.id,
        };
        before.publish(&state, change, None).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Message history, newest first.
#[utoipa::path(get, path = "/channels/{channel_id}/messages", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path), HistoryParams),
    responses((status = 200, body = [Message]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    user: AuthUser,
    Path(channel_id): Path<ChannelId>,
    Query(q): Query<HistoryParams>,
) -> ApiResult<Json<Vec<Message>>> {
    let page = state
        .chat
        .history(
            channel_id,
            user.user_id,
            HistoryQuery {
                before: q.before,
                after: q.after,
                around: q.around,
                limit: q.limit,
            },
        )
        .await?;
    Ok(Json(page))
}

/// Send a message. Idempotent with a nonce: a repeat returns the first message with 200.
/// Mentions in `content` (`<@USER_ID>`, `<@&ROLE_ID>`, `@everyone`, `@here`) are resolved into
/// `mentions`, `mention_roles` and `mention_everyone` (docs/gateway.md, "message").
///
/// With files: `multipart/form-data` with a `payload_json` part (this JSON body) and up to 10
/// parts with a file name, each at most the server's upload limit (25 MiB by default; 413 names
/// it). Needs ATTACH_FILES. The type is sniffed from the bytes; image metadata (location, camera)
/// is removed; the message's `attachments` carry signed URLs (docs/files.md).
#[utoipa::path(post, path = "/channels/{channel_id}/messages", tag = "messages", security(("bearer" = [])), params(("channel_id" = String, Path)),
    request_body(content(
        (MessageBody = "application/json"),
        (MessageBody = "multipart/form-data", example = json!({"payload_json": "{\"content\":\"look\"}", "files[0]": "(binary)"}))
    )),
    responses((status = 201, body = Message), (status = 200, body = Message), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn send(
    State(state): State<AppState>,
    user: AuthUser,
    Path(channel_id): Path<ChannelId>,
    req: axum::extract::Request,
) -> ApiResult<(StatusCode, Json<Message>)> {
    let (body, files) = if crate::http::files::is_multipart(req.headers()) {
        let received = crate::http::files::receive_message(&state, &user, channel_id, req).await?;
        (received.body, received.files)
    } else {
        if !crate::error::is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        // This route's body limit is lifted for files; JSON keeps the usual 64 KiB.
        let bytes = axum::body::to_bytes(req.into_body(), crate::http::MAX_BODY)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        (
            crate::input::decode_json::<MessageBody>(&bytes)?,
            Vec::new(),
        )
    };
    let sent = state
        .chat
        .send_message_with_files(
            channel_id,
            user.user_id,
            &body.content,
            body.nonce.as_deref(),
            body.reply_to,
            &files,
            &body.sticker_ids,
        )
        .await;
    let (message, created) = match sent {
        Ok(sent) => sent,
        Err(e) => {
            crate::http::files::discard(&state, &files).await;
            return Err(e.into());
        }
    };
    if created {
        metrics::counter!("confab_messages_created_total").increment(1);
        // In a thread: counts, reopening, new members — told before the message itself, so
        // that a private thread's newcomers receive it.
        if let Some(activity) = state.chat.thread_posted(&message).await? {
            crate::http::threads::announce_activity(&state, &activity).await;
        }
        state.emit(
            state
                .channel_target(message.server_id, message.channel_id, None)
                .await,
            Event::MessageCreate,
            &message,
        );
        state.previews.enqueue(&message);
        state.push.message_created(&message);
        Ok((StatusCode::CREATED, Json(message)))
    } else {
        // A repeated nonce: the files of this attempt are not needed.
        crate::http::files::discard(&state, &files).await;
        Ok((StatusCode::OK, Json(message)))
    }
}

/// One message.
#[utoipa::path(get, path = "/channels/{channel_id}/messages/{message_id}", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path), ("message_id" = String, Path)), responses((status = 200, body = Message), (status = 404, body = ErrorBody)))]
pub async fn get_message(
    State(state): State<AppState>,
    user: AuthUser,
    Path((channel_id, message_id)): Path<(ChannelId, MessageId)>,
) -> ApiResult<Json<Message>> {
    Ok(Json(
        state
            .chat
            .message(channel_id, message_id, user.user_id)
            .await?,
    ))
}

/// Edit my message: its content (mentions and link previews follow the new content) and/or
/// its flags (`4` = SUPPRESS_EMBEDS removes its link previews; docs/link-previews.md).
#[utoipa::path(patch, path = "/channels/{channel_id}/messages/{message_id}", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path), ("message_id" = String, Path)), request_body = EditBody,
    responses((status = 200, body = Message), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn edit(
    State(state): State<AppState>,
    user: AuthUser,
    Path((channel_id, message_id)): Path<(ChannelId, MessageId)>,
    Json(body): Json<EditBody>,
) -> ApiResult<Json<Message>> {
    if body.content.is_none() && body.flags.is_none() {
        return Err(ChatError::field("content", "give content, flags or both").into());
    }
    let mut message = None;
    if let Some(content) = &body.content {
        let mut m = state
            .chat
            .edit_message(channel_id, message_id, user.user_id, content)
            .await?;
        // Previews of links the edit removed go at once; new links are previewed below.
        let kept = crate::link_previews::kept_embeds(&m);
        if kept.len() != m.embeds.len() {
            if let Some(updated) = state
                .chat
                .set_message_embeds(m.id, &m.content, &kept)
                .await?
            {
                m = updated;
            }
        }
        message = Some(m);
    }
    if let Some(flags) = body.flags {
        message = Some(
            state
                .chat
                .set_message_flags(channel_id, message_id, user.user_id, flags)
                .await?,
        );
    }
    let Some(message) = message else {
        return Err(ApiError::from(anyhow::anyhow!("edit without a change")));
    };
    state.emit(
        state
            .channel_target(message.server_id, message.channel_id, None)
            .await,
        Event::MessageUpdate,
        &message,
    );
    state.previews.enqueue(&message);
    Ok(Json(message))
}

/// Delete my message (or any, with MANAGE_MESSAGES).
#[utoipa::path(delete, path = "/channels/{channel_id}/messages/{message_id}", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path), ("message_id" = String, Path)), responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_message(
    State(state): State<AppState>,
    user: AuthUser,
    Path((channel_id, message_id)): Path<(ChannelId, MessageId)>,
) -> ApiResult<StatusCode> {
    let m = state
        .chat
        .delete_message(channel_id, message_id, user.user_id)
        .await?;
    state.emit(
        state.channel_target(m.server_id, m.channel_id, None).await,
        Event::MessageDelete,
        &json!({"id": m.id, "channel_id": m.channel_id, "server_id": m.server_id}),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Show that I am typing (others see it for about 10 s).
#[utoipa::path(post, path = "/channels/{channel_id}/typing", tag = "messages", security(("bearer" = [])), params(("channel_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn typing(
    State(state): State<AppState>,
    user: AuthUser,
    Path(channel_id): Path<ChannelId>,
) -> ApiResult<StatusCode> {
    let server_id = state.chat.can_type(channel_id, user.user_id).await?;
    // In a DM this reaches its recipients only (channel_target).
    state.emit(
        state.channel_target(server_id, channel_id, Some(user.user_id)).await,
        Event::TypingStart,
        &json!({"channel_id": channel_id, "server_id": server_id, "user_id": user.user_id, "timestamp": chrono::Utc::now().timestamp()}),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkDeleteBody {
    /// 2-100 distinct message ids of this channel.
    pub messages: Vec<MessageId>,
}

/// Delete 2-100 messages at once (MANAGE_MESSAGES). Ids of other channels are ignored; the
/// audit log records `message_bulk_delete`; viewers get MESSAGE_DELETE_BULK.
#[utoipa::path(post, path = "/channels/{channel_id}/messages/bulk-delete", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path)), request_body = BulkDeleteBody,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn bulk_delete(
    State(state): State<AppState>,
    user: AuthUser,
    Path(channel_id): Path<ChannelId>,
    headers: axum::http::HeaderMap,
    Json(body): Json<BulkDeleteBody>,
) -> ApiResult<StatusCode> {
    let r = crate::http::moderation::reason(&headers);
    let (server_id, ids) = state
        .chat
        .bulk_delete(
            channel_id,
            &body.messages,
            confab_chat::audit::Actor::new(user.user_id, r.as_deref()),
        )
        .await?;
    if !ids.is_empty() {
        state.emit(
            state
                .channel_target(Some(server_id), channel_id, None)
                .await,
            Event::MessageDeleteBulk,
            &json!({"ids": ids, "channel_id": channel_id, "server_id": server_id}),
        );
    }
    Ok(StatusCode::NO_CONTENT)
}
