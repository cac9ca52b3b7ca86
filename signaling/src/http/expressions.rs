//! A server's custom emoji and stickers (docs/emoji.md): list, upload, edit, delete, and their
//! images. Uploads are checked here (the bytes decoded, still images scaled and re-encoded)
//! and written to the file store before the chat crate records them; every change sends the
//! server's members the full new list.

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorBody, Json, Path, Query};
use crate::gateway::dispatch::Target;
use crate::gateway::events::Event;
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use confab_chat::audit::Actor;
use confab_chat::expressions::{
    emojis, stickers, Emoji, EmojiUpdate, ImageRef, NewEmoji, NewSticker, Sticker, StickerUpdate,
    StoredImage,
};
use confab_chat::{ChatError, RoleId, ServerId, Snowflake};
use confab_files::sniff::SNIFF_LEN;
use confab_files::{images, sniff};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

/// The upload routes' body limit: the larger of the two kinds.
pub const MAX_UPLOAD: usize = stickers::MAX_BYTES;

/// An emoji or sticker image (PNG, JPEG for emoji, GIF or WebP).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct ImageBytes(#[allow(dead_code)] Vec<u8>);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EmojiQuery {
    /// 2-32 of `A-Z a-z 0-9 _`, unique in the server.
    pub name: String,
    /// Comma-separated role ids allowed to use it; none = every member.
    pub roles: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmojiPatch {
    pub name: Option<String>,
    /// Roles allowed to use it; `[]` = every member.
    #[schema(value_type = Option<Vec<String>>)]
    pub roles: Option<Vec<RoleId>>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StickerQuery {
    /// 2-30 characters, unique in the server.
    pub name: String,
    /// Up to 100 characters.
    pub description: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StickerPatch {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// What one kind of upload accepts.
struct Kind {
    what: &'static str,
    max_bytes: usize,
    max_side: u32,
    max_animated_side: u32,
    jpeg: bool,
    prefix: &'static str,
}

const EMOJI: Kind = Kind {
    what: "an emoji",
    max_bytes: emojis::MAX_BYTES,
    max_side: emojis::MAX_SIDE,
    max_animated_side: emojis::MAX_ANIMATED_SIDE,
    jpeg: true,
    prefix: "emojis",
};

const STICKER: Kind = Kind {
    what: "a sticker",
    max_bytes: stickers::MAX_BYTES,
    max_side: stickers::MAX_SIDE,
    max_animated_side: stickers::MAX_SIDE,
    jpeg: false,
    prefix: "stickers",
};

/// Checks the upload is the image it claims (decoding it, off the runtime) and stores it.
async fn store_image(
    state: &AppState,
    kind: &Kind,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<StoredImage> {
    let too_large = || {
        ApiError::TooLarge(format!(
            "{} is at most {} KiB",
            kind.what,
            kind.max_bytes / 1024
        ))
    };
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::BadRequest(e.body_text())
        }
    })?;
    if body.len() > kind.max_bytes {
        return Err(too_large());
    }
    let sniffed = sniff(&body[..body.len().min(SNIFF_LEN)]);
    let accepted = match sniffed.content_type {
        "image/png" | "image/gif" | "image/webp" => true,
        "image/jpeg" => kind.jpeg,
        _ => false,
    };
    if !accepted {
        let types = if kind.jpeg {
            "PNG, JPEG, GIF or WebP"
        } else {
            "PNG, APNG, GIF or WebP"
        };
        return Err(ChatError::field("image", format!("must be a {types} image")).into());
    }
    let (side, animated_side) = (kind.max_side, kind.max_animated_side);
    let decoded =
        tokio::task::spawn_blocking(move || images::expression(&body, side, animated_side))
            .await
            .map_err(|e| anyhow::anyhow!("image task: {e}"))?
            .map_err(|e| ChatError::field("image", e.to_string()))?;
    let key = state
        .files
        .put(kind.prefix, decoded.bytes)
        .await
        .map_err(super::files::store_error)?;
    Ok(StoredImage {
        storage_key: key,
        content_type: decoded.content_type.to_owned(),
        animated: decoded.animated,
    })
}

/// Forgets an image stored for a request that then failed.
async fn discard(state: &AppState, image: &StoredImage) {
    let _ = state
        .chat
        .queue_file_deletions(std::slice::from_ref(&image.storage_key))
        .await;
}

async fn announce_emojis(state: &AppState, server_id: ServerId) -> ApiResult<()> {
    let emojis = state.chat.server_emojis(server_id).await?;
    state.emit(
        Target::Server(server_id),
        Event::ServerEmojisUpdate,
        &json!({"server_id": server_id, "emojis": emojis}),
    );
    Ok(())
}

async fn announce_stickers(state: &AppState, server_id: ServerId) -> ApiResult<()> {
    let stickers = state.chat.server_stickers(server_id).await?;
    state.emit(
        Target::Server(server_id),
        Event::ServerStickersUpdate,
        &json!({"server_id": server_id, "stickers": stickers}),
    );
    Ok(())
}

fn parse_roles(roles: Option<&str>) -> ApiResult<Vec<RoleId>> {
    roles
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| {
            r.parse().map_err(|_| {
                ChatError::field("roles", "must be role ids separated by commas").into()
            })
        })
        .collect()
}

/// The server's custom emoji, oldest first (any member).
#[utoipa::path(get, path = "/servers/{server_id}/emojis", tag = "emoji", security(("bearer" = [])),
    params(("server_id" = String, Path)),
    responses((status = 200, body = [Emoji]), (status = 404, body = ErrorBody)))]
pub async fn list_emojis(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
) -> ApiResult<Json<Vec<Emoji>>> {
    Ok(Json(state.chat.emojis(server_id, user.user_id).await?))
}

/// Upload a custom emoji (MANAGE_EXPRESSIONS): the raw image as the body — PNG, JPEG, GIF
/// (animated too) or WebP, told apart by its bytes, at most 256 KiB. Still images are scaled
/// to fit 128×128 and stored as PNG; animated ones are kept as uploaded (at most 256×256).
/// At most 50 still and 50 animated emoji per server. Members get SERVER_EMOJIS_UPDATE.
#[utoipa::path(post, path = "/servers/{server_id}/emojis", tag = "emoji", security(("bearer" = [])),
    params(("server_id" = String, Path), EmojiQuery),
    request_body(description = "The image", content = ImageBytes, content_type = "application/octet-stream"),
    responses((status = 201, body = Emoji), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn create_emoji(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
    Query(q): Query<EmojiQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Emoji>)> {
    // Permission and fields first: a refused upload costs no decoding.
    state
        .chat
        .require_manage_expressions(server_id, user.user_id)
        .await?;
    if !emojis::valid_name(&q.name) {
        return Err(ChatError::field("name", "must be 2-32 letters, digits or underscores").into());
    }
    let roles = parse_roles(q.roles.as_deref())?;
    let image = store_image(&state, &EMOJI, body).await?;
    let reason = super::moderation::reason(&headers);
    let new = NewEmoji {
        name: &q.name,
        roles: &roles,
    };
    let emoji = match state
        .chat
        .create_emoji(
            server_id,
            Actor::new(user.user_id, reason.as_deref()),
            new,
            &image,
        )
        .await
    {
        Ok(e) => e,
        Err(e) => {
            discard(&state, &image).await;
            return Err(e.into());
        }
    };
    announce_emojis(&state, server_id).await?;
    Ok((StatusCode::CREATED, Json(emoji)))
}

/// Rename an emoji or change which roles may use it (MANAGE_EXPRESSIONS).
#[utoipa::path(patch, path = "/servers/{server_id}/emojis/{emoji_id}", tag = "emoji", security(("bearer" = [])),
    params(("server_id" = String, Path), ("emoji_id" = String, Path)), request_body = EmojiPatch,
    responses((status = 200, body = Emoji), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_emoji(
    State(state): State<AppState>,
    user: AuthUser,
    Path((server_id, emoji_id)): Path<(ServerId, Snowflake)>,
    headers: HeaderMap,
    Json(body): Json<EmojiPatch>,
) -> ApiResult<Json<Emoji>> {
    let reason = super::moderation::reason(&headers);
    let emoji = state
        .chat
        .update_emoji(
            server_id,
            emoji_id,
            Actor::new(user.user_id, reason.as_deref()),
            EmojiUpdate {
                name: body.name.as_deref(),
                roles: body.roles.as_deref(),
            },
        )
        .await?;
    announce_emojis(&state, server_id).await?;
    Ok(Json(emoji))
}

/// Delete an emoji (MANAGE_EXPRESSIONS). Reactions made with it keep its name.
#[utoipa::path(delete, path = "/servers/{server_id}/emojis/{emoji_id}", tag = "emoji", security(("bearer" = [])),
    params(("server_id" = String, Path), ("emoji_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_emoji(
    State(state): State<AppState>,
    user: AuthUser,
    Path((server_id, emoji_id)): Path<(ServerId, Snowflake)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let reason = super::moderation::reason(&headers);
    state
        .chat
        .delete_emoji(
            server_id,
            emoji_id,
            Actor::new(user.user_id, reason.as_deref()),
        )
        .await?;
    announce_emojis(&state, server_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The server's stickers, oldest first (any member).
#[utoipa::path(get, path = "/servers/{server_id}/stickers", tag = "emoji", security(("bearer" = [])),
    params(("server_id" = String, Path)),
    responses((status = 200, body = [Sticker]), (status = 404, body = ErrorBody)))]
pub async fn list_stickers(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
) -> ApiResult<Json<Vec<Sticker>>> {
    Ok(Json(state.chat.stickers(server_id, user.user_id).await?))
}

/// Upload a sticker (MANAGE_EXPRESSIONS): the raw image as the body — PNG, APNG, GIF or WebP,
/// at most 512 KiB; still images are scaled to fit 320×320 and stored as PNG, animated ones
/// kept as uploaded (at most 320×320). At most 30 per server. Members get
/// SERVER_STICKERS_UPDATE.
#[utoipa::path(post, path = "/servers/{server_id}/stickers", tag = "emoji", security(("bearer" = [])),
    params(("server_id" = String, Path), StickerQuery),
    request_body(description = "The image", content = ImageBytes, content_type = "application/octet-stream"),
    responses((status = 201, body = Sticker), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn create_sticker(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
    Query(q): Query<StickerQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Sticker>)> {
    state
        .chat
        .require_manage_expressions(server_id, user.user_id)
        .await?;
    let image = store_image(&state, &STICKER, body).await?;
    let reason = super::moderation::reason(&headers);
    let new = NewSticker {
        name: &q.name,
        description: q.description.as_deref(),
    };
    let sticker = match state
        .chat
        .create_sticker(
            server_id,
            Actor::new(user.user_id, reason.as_deref()),
            new,
            &image,
        )
        .await
    {
        Ok(s) => s,
        Err(e) => {
            discard(&state, &image).await;
            return Err(e.into());
        }
    };
    announce_stickers(&state, server_id).await?;
    Ok((StatusCode::CREATED, Json(sticker)))
}

/// Rename a sticker or change its description (MANAGE_EXPRESSIONS).
#[utoipa::path(patch, path = "/servers/{server_id}/stickers/{sticker_id}", tag = "emoji", security(("bearer" = [])),
    params(("server_id" = String, Path), ("sticker_id" = String, Path)), request_body = StickerPatch,
    responses((status = 200, body = Sticker), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_sticker(
    State(state): State<AppState>,
    user: AuthUser,
    Path((server_id, sticker_id)): Path<(ServerId, Snowflake)>,
    headers: HeaderMap,
    Json(body): Json<StickerPatch>,
) -> ApiResult<Json<Sticker>> {
    let reason = super::moderation::reason(&headers);
    let sticker = state
        .chat
        .update_sticker(
            server_id,
            sticker_id,
            Actor::new(user.user_id, reason.as_deref()),
            StickerUpdate {
                name: body.name.as_deref(),
                description: body.description.as_deref(),
            },
        )
        .await?;
    announce_stickers(&state, server_id).await?;
    Ok(Json(sticker))
}

/// Delete a sticker (MANAGE_EXPRESSIONS). Messages keep its name; its image goes.
#[utoipa::path(delete, path = "/servers/{server_id}/stickers/{sticker_id}", tag = "emoji", security(("bearer" = [])),
    params(("server_id" = String, Path), ("sticker_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_sticker(
    State(state): State<AppState>,
    user: AuthUser,
    Path((server_id, sticker_id)): Path<(ServerId, Snowflake)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let reason = super::moderation::reason(&headers);
    state
        .chat
        .delete_sticker(
            server_id,
            sticker_id,
            Actor::new(user.user_id, reason.as_deref()),
        )
        .await?;
    announce_stickers(&state, server_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An emoji's image (public, like avatars: `<img>` tags send no token, and an emoji's id is
/// all a message shows). An id's image never changes, so it is cached for a year.
#[utoipa::path(get, path = "/emojis/{emoji_id}", tag = "emoji",
    params(("emoji_id" = String, Path)),
    responses((status = 200, description = "The image", content(
        (ImageBytes = "image/png"), (ImageBytes = "image/gif"), (ImageBytes = "image/webp"))),
        (status = 404, body = ErrorBody)))]
pub async fn emoji_image(
    State(state): State<AppState>,
    Path(emoji_id): Path<Snowflake>,
) -> ApiResult<Response> {
    let image = state.chat.emoji_image(emoji_id).await?;
    serve(&state, image, "emoji").await
}

/// A sticker's image (public, cached for a year like emoji).
#[utoipa::path(get, path = "/stickers/{sticker_id}", tag = "emoji",
    params(("sticker_id" = String, Path)),
    responses((status = 200, description = "The image", content(
        (ImageBytes = "image/png"), (ImageBytes = "image/gif"), (ImageBytes = "image/webp"))),
        (status = 404, body = ErrorBody)))]
pub async fn sticker_image(
    State(state): State<AppState>,
    Path(sticker_id): Path<Snowflake>,
) -> ApiResult<Response> {
    let image = state.chat.sticker_image(sticker_id).await?;
    serve(&state, image, "sticker").await
}

async fn serve(state: &AppState, image: ImageRef, what: &'static str) -> ApiResult<Response> {
    let d = state
        .files
        .download(&image.storage_key, None)
        .await
        .map_err(|e| match e {
            confab_files::StoreError::NotFound => ChatError::NotFound(what).into(),
            e => super::files::store_error(e),
        })?;
    let content_type = HeaderValue::from_str(&image.content_type)
        .map_err(|e| ApiError::from(anyhow::anyhow!("stored content type: {e}")))?;
    let mut resp = Response::new(Body::from_stream(d.stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(d.size));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(resp)
}
