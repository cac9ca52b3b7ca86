//! Integrations over REST (docs/bots.md): incoming webhooks, bot accounts, slash commands and
//! interactions with their deadlines.

use crate::auth::AuthUser;
use crate::bus::BusEvent;
use crate::error::{ApiError, ApiResult, ErrorBody, Json, Path};
use crate::gateway::dispatch::Target;
use crate::gateway::events::Event;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use confab_chat::audit::Actor;
use confab_chat::integrations::{
    AnswerStep, Answered, Bot, BotWithToken, Command, CreatedWebhook, Expired, NewCommand,
    OptionValue, Webhook, WebhookPost, FIRST_RESPONSE, FOLLOW_UP,
};
use confab_chat::model::Message;
use confab_chat::permissions::Permissions;
use confab_chat::{ChannelId, ChatError, ServerId, Snowflake, UserId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    /// 1-64 characters: the name its posts appear under.
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteBody {
    /// 1-4000 characters.
    pub content: String,
    /// Shown instead of the webhook's name for this message (1-64 characters).
    pub username: Option<String>,
    /// An http(s) image URL shown as this message's avatar.
    pub avatar_url: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BotBody {
    /// The bot's username: 2-32 letters, digits, '_', '.' or '-'; unique like anyone's.
    pub username: String,
    /// The permissions of the bot's own role, a decimal string (only bits you hold).
    #[serde(default)]
    pub permissions: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvokeBody {
    /// A command of the channel's server.
    #[schema(value_type = String)]
    pub command_id: Snowflake,
    #[serde(default)]
    pub options: Vec<OptionValue>,
}

#[derive(Serialize, ToSchema)]
pub struct Invoked {
    /// The interaction: its answer arrives as a message in the channel, or
    /// `INTERACTION_FAILED` when the bot does not answer in time.
    #[schema(value_type = String)]
    pub id: Snowflake,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallbackBody {
    /// 4: answer with a message (`data.content`); 5: deferred — answer later with the
    /// follow-up endpoint (as Discord's interaction response types).
    #[serde(rename = "type")]
    pub kind: u8,
    pub data: Option<CallbackData>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallbackData {
    pub content: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FollowUpBody {
    pub content: String,
}

fn actor<'a>(user: &AuthUser, reason: &'a Option<String>) -> Actor<'a> {
    Actor::new(user.user_id, reason.as_deref())
}

/// A message made outside the ordinary send path reaches the channel's viewers.
async fn announce(state: &AppState, message: &Message) {
    metrics::counter!("confab_messages_created_total").increment(1);
    state.emit(
        state
            .channel_target(message.server_id, message.channel_id, None)
            .await,
        Event::MessageCreate,
        message,
    );
    state.previews.enqueue(message);
    state.push.message_created(message);
}

// ---------------------------------------------------------------------------------------------
// Webhooks

/// Create an incoming webhook in a text channel (MANAGE_WEBHOOKS there). The answer carries
/// the secret `token`, shown only now; post with `POST /webhooks/{webhook_id}/{token}`.
#[utoipa::path(post, path = "/channels/{channel_id}/webhooks", tag = "webhooks", security(("bearer" = [])),
    params(("channel_id" = String, Path)), request_body = WebhookBody,
    responses((status = 201, body = CreatedWebhook), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_webhook(
    State(state): State<AppState>,
    user: AuthUser,
    Path(channel_id): Path<ChannelId>,
    headers: HeaderMap,
    Json(body): Json<WebhookBody>,
) -> ApiResult<(StatusCode, Json<CreatedWebhook>)> {
    let reason = super::moderation::reason(&headers);
    let created = state
        .chat
        .create_webhook(channel_id, &body.name, actor(&user, &reason))
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// A channel's webhooks, without their tokens (MANAGE_WEBHOOKS there).
#[utoipa::path(get, path = "/channels/{channel_id}/webhooks", tag = "webhooks", security(("bearer" = [])),
    params(("channel_id" = String, Path)),
    responses((status = 200, body = [Webhook]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    user: AuthUser,
    Path(channel_id): Path<ChannelId>,
) -> ApiResult<Json<Vec<Webhook>>> {
    Ok(Json(
        state
            .chat
            .channel_webhooks(channel_id, user.user_id)
            .await?,
    ))
}

/// Delete a webhook (MANAGE_WEBHOOKS in its channel); its messages stay.
#[utoipa::path(delete, path = "/webhooks/{webhook_id}", tag = "webhooks", security(("bearer" = [])),
    params(("webhook_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    user: AuthUser,
    Path(webhook_id): Path<Snowflake>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let reason = super::moderation::reason(&headers);
    state
        .chat
        .delete_webhook(webhook_id, actor(&user, &reason))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Post through a webhook. No `Authorization`: the token in the URL is the permission. The
/// message appears under the webhook's name (or `username`), with `webhook_id` set. Rate
/// limited per webhook: 5 posts per 2 s.
#[utoipa::path(post, path = "/webhooks/{webhook_id}/{token}", tag = "webhooks",
    params(("webhook_id" = String, Path), ("token" = String, Path)), request_body = ExecuteBody,
    responses((status = 200, body = Message), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn execute_webhook(
    State(state): State<AppState>,
    Path((webhook_id, token)): Path<(Snowflake, String)>,
    Json(body): Json<ExecuteBody>,
) -> ApiResult<Json<Message>> {
    let message = state
        .chat
        .execute_webhook(
            webhook_id,
            &token,
            WebhookPost {
                content: &body.content,
                username: body.username.as_deref(),
                avatar_url: body.avatar_url.as_deref(),
            },
        )
        .await?;
    announce(&state, &message).await;
    Ok(Json(message))
}

// ---------------------------------------------------------------------------------------------
// Bots

/// Add a bot to the server (MANAGE_SERVER): a bot user, a member with a role of its own that
/// holds `permissions`, and its token (shown only now).
#[utoipa::path(post, path = "/servers/{server_id}/bots", tag = "bots", security(("bearer" = [])),
    params(("server_id" = String, Path)), request_body = BotBody,
    responses((status = 201, body = BotWithToken), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_bot(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
    headers: HeaderMap,
    Json(body): Json<BotBody>,
) -> ApiResult<(StatusCode, Json<BotWithToken>)> {
    let perms: Permissions = match body.permissions.as_deref() {
        None => Permissions::default(),
        Some(p) => p
            .parse()
            .map_err(|_| ChatError::field("permissions", "must be a decimal string"))?,
    };
    let reason = super::moderation::reason(&headers);
    let created = state
        .chat
        .create_bot(server_id, &body.username, perms, actor(&user, &reason))
        .await?;
    let bot_id = created.bot.bot.user.id;
    state.emit(
        Target::Server(server_id),
        Event::RoleCreate,
        &json!({"server_id": server_id, "role": created.role}),
    );
    if let Ok(member) = state.chat.member(server_id, bot_id).await {
        state.emit(Target::Server(server_id), Event::MemberAdd, &member);
    }
    state
        .publish(BusEvent::MemberJoined {
            server_id,
            user_id: bot_id,
        })
        .await;
    state
        .publish(BusEvent::PermissionsChanged { server_id })
        .await;
    Ok((StatusCode::CREATED, Json(created.bot)))
}

/// The server's bots (MANAGE_SERVER).
#[utoipa::path(get, path = "/servers/{server_id}/bots", tag = "bots", security(("bearer" = [])),
    params(("server_id" = String, Path)),
    responses((status = 200, body = [Bot]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_bots(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
) -> ApiResult<Json<Vec<Bot>>> {
    Ok(Json(state.chat.bots(server_id, user.user_id).await?))
}

/// Replace a bot's token (MANAGE_SERVER). The old one stops working at once and the bot's
/// gateway connections close with 4004.
#[utoipa::path(post, path = "/servers/{server_id}/bots/{bot_id}/reset-token", tag = "bots", security(("bearer" = [])),
    params(("server_id" = String, Path), ("bot_id" = String, Path)),
    responses((status = 200, body = BotWithToken), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reset_bot_token(
    State(state): State<AppState>,
    user: AuthUser,
    Path((server_id, bot_id)): Path<(ServerId, UserId)>,
    headers: HeaderMap,
) -> ApiResult<Json<BotWithToken>> {
    let reason = super::moderation::reason(&headers);
    let (bot, revoked) = state
        .chat
        .reset_bot_token(server_id, bot_id, actor(&user, &reason))
        .await?;
    crate::auth::end_sessions(&state, revoked).await;
    Ok(Json(bot))
}

// ---------------------------------------------------------------------------------------------
// Slash commands

/// The server's slash commands, by name (any member): what the composer offers after `/`.
#[utoipa::path(get, path = "/servers/{server_id}/commands", tag = "bots", security(("bearer" = [])),
    params(("server_id" = String, Path)),
    responses((status = 200, body = [Command]), (status = 404, body = ErrorBody)))]
pub async fn list_commands(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
) -> ApiResult<Json<Vec<Command>>> {
    Ok(Json(state.chat.commands(server_id, user.user_id).await?))
}

/// Register a slash command, or replace the bot's command of that name (bots only, in their
/// own server). Members get `APPLICATION_COMMANDS_UPDATE`.
#[utoipa::path(post, path = "/servers/{server_id}/commands", tag = "bots", security(("bearer" = [])),
    params(("server_id" = String, Path)), request_body = NewCommand,
    responses((status = 201, body = Command), (status = 200, body = Command), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn upsert_command(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
    Json(body): Json<NewCommand>,
) -> ApiResult<(StatusCode, Json<Command>)> {
    if !user.bot {
        return Err(ChatError::Forbidden("only bots register commands").into());
    }
    let (command, created) = state
        .chat
        .upsert_command(user.user_id, server_id, &body)
        .await?;
    state.emit(
        Target::Server(server_id),
        Event::ApplicationCommandsUpdate,
        &json!({"server_id": server_id}),
    );
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(command)))
}

/// Delete one of the calling bot's commands.
#[utoipa::path(delete, path = "/servers/{server_id}/commands/{command_id}", tag = "bots", security(("bearer" = [])),
    params(("server_id" = String, Path), ("command_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_command(
    State(state): State<AppState>,
    user: AuthUser,
    Path((server_id, command_id)): Path<(ServerId, Snowflake)>,
) -> ApiResult<StatusCode> {
    state
        .chat
        .delete_command(user.user_id, server_id, command_id)
        .await?;
    state.emit(
        Target::Server(server_id),
        Event::ApplicationCommandsUpdate,
        &json!({"server_id": server_id}),
    );
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Interactions

/// Tells the member that the bot did not answer in time.
fn failed(state: &AppState, e: &Expired) {
    let message = if e.deferred {
        "The bot did not follow up in time."
    } else {
        "The bot did not respond in time."
    };
    state.emit(
        Target::User(e.user_id),
        Event::InteractionFailed,
        &json!({"id": e.id, "server_id": e.server_id, "channel_id": e.channel_id,
                "command": e.command, "message": message}),
    );
}

/// Runs an interaction's deadline: when it passes with the interaction still in `state`,
/// the interaction fails and the member is told. The database decides, so an answer that
/// arrives at the same moment either lands or is refused, never both.
fn deadline(state: &AppState, id: Snowflake, wait: std::time::Duration, in_state: &'static str) {
    let state = state.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.shutdown.cancelled() => return,
        }
        match state.chat.expire_interaction(id, in_state).await {
            Ok(Some(e)) => failed(&state, &e),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "interaction deadline"),
        }
    });
}

/// Use a slash command in a text channel (SEND_MESSAGES there). The bot gets
/// `INTERACTION_CREATE` and has 3 s to answer (or defer, then 15 min to follow up); otherwise
/// the member gets `INTERACTION_FAILED`.
#[utoipa::path(post, path = "/channels/{channel_id}/interactions", tag = "bots", security(("bearer" = [])),
    params(("channel_id" = String, Path)), request_body = InvokeBody,
    responses((status = 202, body = Invoked), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn invoke(
    State(state): State<AppState>,
    user: AuthUser,
    Path(channel_id): Path<ChannelId>,
    Json(body): Json<InvokeBody>,
) -> ApiResult<(StatusCode, Json<Invoked>)> {
    let interaction = state
        .chat
        .create_interaction(channel_id, user.user_id, body.command_id, body.options)
        .await?;
    let bot_id: UserId = state
        .chat
        .command_bot(body.command_id)
        .await?
        .ok_or(ApiError::Chat(ChatError::NotFound("command")))?;
    state.emit(Target::User(bot_id), Event::InteractionCreate, &interaction);
    deadline(&state, interaction.id, FIRST_RESPONSE, "pending");
    Ok((StatusCode::ACCEPTED, Json(Invoked { id: interaction.id })))
}

/// Answer an interaction (the bot it was sent to, within 3 s): type 4 with `data.content`
/// posts the bot's message in the channel; type 5 defers (then 15 min for the follow-up).
#[utoipa::path(post, path = "/interactions/{interaction_id}/{token}/callback", tag = "bots", security(("bearer" = [])),
    params(("interaction_id" = String, Path), ("token" = String, Path)), request_body = CallbackBody,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn callback(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, token)): Path<(Snowflake, String)>,
    Json(body): Json<CallbackBody>,
) -> ApiResult<StatusCode> {
    let deferred = match body.kind {
        4 => false,
        5 => true,
        _ => return Err(ChatError::field("type", "must be 4 (message) or 5 (deferred)").into()),
    };
    let step = match (&body.data, deferred) {
        (_, true) => AnswerStep::Defer,
        (Some(d), false) => AnswerStep::Message(&d.content),
        (None, false) => return Err(ChatError::field("data", "type 4 needs data.content").into()),
    };
    match state
        .chat
        .answer_interaction(user.user_id, id, &token, step)
        .await?
    {
        Answered::Message(m) => announce(&state, &m).await,
        Answered::Deferred => deadline(&state, id, FOLLOW_UP, "deferred"),
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The answer after a deferred callback (the same bot, within 15 min of the interaction):
/// the bot's message in the channel.
#[utoipa::path(post, path = "/interactions/{interaction_id}/{token}/followup", tag = "bots", security(("bearer" = [])),
    params(("interaction_id" = String, Path), ("token" = String, Path)), request_body = FollowUpBody,
    responses((status = 200, body = Message), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn follow_up(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, token)): Path<(Snowflake, String)>,
    Json(body): Json<FollowUpBody>,
) -> ApiResult<Json<Message>> {
    match state
        .chat
        .answer_interaction(
            user.user_id,
            id,
            &token,
            AnswerStep::FollowUp(&body.content),
        )
        .await?
    {
        Answered::Message(m) => {
            announce(&state, &m).await;
            Ok(Json(*m))
        }
        Answered::Deferred => Err(ApiError::from(anyhow::anyhow!(
            "a follow-up always answers with a message"
        ))),
    }
}
