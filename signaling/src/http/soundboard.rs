//! The soundboard (docs/soundboard.md): a server's sounds — list, upload, delete, download —
//! and playing one into the voice channel the caller is connected to.

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorBody, Json, Path, Query};
use crate::gateway::dispatch::Target;
use crate::gateway::events::Event;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use confab_chat::audit::Actor;
use confab_chat::soundboard::{audio, NewSound, Sound};
use confab_chat::{ChannelId, ChatError, ServerId, Snowflake};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

/// The upload route's body limit: one sound.
pub const MAX_UPLOAD: usize = audio::MAX_BYTES;

/// A sound's audio bytes (Ogg/Opus, MP3 or WAV).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct AudioBytes(#[allow(dead_code)] Vec<u8>);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// 1-32 characters.
    pub name: String,
    /// A unicode emoji shown with the name.
    pub emoji: Option<String>,
    /// Playback gain, 0 to 1 (default 1).
    pub volume: Option<f32>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlayBody {
    /// A sound of the channel's server.
    #[schema(value_type = String)]
    pub sound_id: Snowflake,
}

/// The server's soundboard sounds, oldest first (any member).
#[utoipa::path(get, path = "/servers/{server_id}/soundboard-sounds", tag = "soundboard", security(("bearer" = [])),
    params(("server_id" = String, Path)),
    responses((status = 200, body = [Sound]), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
) -> ApiResult<Json<Vec<Sound>>> {
    Ok(Json(state.chat.sounds(server_id, user.user_id).await?))
}

/// Upload a sound (MANAGE_SERVER): the raw audio as the body — Ogg/Opus, MP3 or WAV, told
/// apart by its bytes (the request's Content-Type is not trusted), at most 512 KiB and 5.2 s;
/// at most 48 sounds per server.
#[utoipa::path(post, path = "/servers/{server_id}/soundboard-sounds", tag = "soundboard", security(("bearer" = [])),
    params(("server_id" = String, Path), UploadQuery),
    // One media type in the description: the server reads the bytes whatever the request's
    // Content-Type says (audio/ogg, audio/mpeg and audio/wav are as welcome).
    request_body(description = "The audio file", content = AudioBytes, content_type = "application/octet-stream"),
    responses((status = 201, body = Sound), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
    Query(q): Query<UploadQuery>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Sound>)> {
    let too_large =
        || ApiError::TooLarge(format!("a sound is at most {MAX_UPLOAD} bytes (512 KiB)"));
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::BadRequest(e.body_text())
        }
    })?;
    if body.len() > MAX_UPLOAD {
        return Err(too_large());
    }
    let new = NewSound {
        name: &q.name,
        emoji: q.emoji.as_deref(),
        volume: q.volume,
    };
    let sound = state
        .chat
        .create_sound(server_id, user.user_id, new, &body)
        .await?;
    state.emit(
        Target::Server(server_id),
        Event::SoundboardSoundCreate,
        &sound,
    );
    Ok((StatusCode::CREATED, Json(sound)))
}

/// Delete a sound (MANAGE_SERVER).
#[utoipa::path(delete, path = "/servers/{server_id}/soundboard-sounds/{sound_id}", tag = "soundboard", security(("bearer" = [])),
    params(("server_id" = String, Path), ("sound_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    Path((server_id, sound_id)): Path<(ServerId, Snowflake)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let reason = super::moderation::reason(&headers);
    state
        .chat
        .delete_sound(
            server_id,
            sound_id,
            Actor::new(user.user_id, reason.as_deref()),
        )
        .await?;
    state.emit(
        Target::Server(server_id),
        Event::SoundboardSoundDelete,
        &json!({"server_id": server_id, "sound_id": sound_id}),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// A sound's audio, with the content type sniffed at upload (any member of the server).
#[utoipa::path(get, path = "/servers/{server_id}/soundboard-sounds/{sound_id}/audio", tag = "soundboard", security(("bearer" = [])),
    params(("server_id" = String, Path), ("sound_id" = String, Path)),
    responses((status = 200, description = "The audio file", content(
        (AudioBytes = "audio/ogg"), (AudioBytes = "audio/mpeg"), (AudioBytes = "audio/wav"))),
        (status = 404, body = ErrorBody)))]
pub async fn audio(
    State(state): State<AppState>,
    user: AuthUser,
    Path((server_id, sound_id)): Path<(ServerId, Snowflake)>,
) -> ApiResult<Response> {
    let a = state
        .chat
        .sound_audio(server_id, sound_id, user.user_id)
        .await?;
    let content_type = HeaderValue::from_str(&a.content_type)
        .map_err(|e| ApiError::from(anyhow::anyhow!("stored content type: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            // A sound never changes (a new upload is a new id), but only members may fetch it.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=86400, immutable"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment"),
            ),
        ],
        a.bytes,
    )
        .into_response())
}

/// Play a sound into the voice channel you are connected to (USE_SOUNDBOARD and SPEAK there;
/// not while server-muted or deafened). Everyone who can view the channel gets
/// `VOICE_SOUNDBOARD_PLAY`; your client then mixes the sound into your voice. Rate-limited to
/// one play per 2 s per user, three in a burst.
#[utoipa::path(post, path = "/channels/{channel_id}/soundboard/play", tag = "soundboard", security(("bearer" = [])),
    params(("channel_id" = String, Path)), request_body = PlayBody,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn play(
    State(state): State<AppState>,
    user: AuthUser,
    Path(channel_id): Path<ChannelId>,
    Json(body): Json<PlayBody>,
) -> ApiResult<StatusCode> {
    let play = state
        .chat
        .check_sound_play(channel_id, user.user_id, body.sound_id)
        .await?;
    let voice = state
        .voice
        .state_of(user.user_id)
        .filter(|s| s.server_id == play.server_id && s.channel_id == Some(channel_id))
        .ok_or_else(|| ChatError::field("channel_id", "you are not connected to this channel"))?;
    if voice.mute || voice.deaf || voice.self_deaf || voice.suppress {
        return Err(ChatError::Forbidden(
            "you cannot play sounds while muted by a moderator, deafened or unable to speak",
        )
        .into());
    }
    let target = state
        .channel_target(Some(play.server_id), channel_id, None)
        .await;
    state.emit(
        target,
        Event::VoiceSoundboardPlay,
        &json!({
            "server_id": play.server_id,
            "channel_id": channel_id,
            "user_id": user.user_id,
            "sound_id": play.sound.id,
            "volume": play.sound.volume,
            "name": play.sound.name,
            "emoji": play.sound.emoji,
        }),
    );
    Ok(StatusCode::NO_CONTENT)
}
