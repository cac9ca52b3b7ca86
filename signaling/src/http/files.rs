//! Files: uploads with messages (multipart, streamed to the store), downloads by signed URL,
//! and avatars. What is stored, shown inline or only downloaded is decided from the bytes
//! (confab-files), never from what the client says.

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult, ErrorBody, Path, Query};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use confab_chat::files::{clean_filename, NewAttachment, Variant, MAX_FILES_PER_MESSAGE};
use confab_chat::{AttachmentId, ChannelId, ChatError, ServerId, UserId};
use confab_files::images;
use confab_files::scrub::Scrubber;
use confab_files::sniff::SNIFF_LEN;
use confab_files::{sniff, FileStore};
use serde::Deserialize;
use utoipa::IntoParams;

/// The JSON part of a multipart message (`payload_json`), or the JSON body.
pub use super::channels::MessageBody;

/// Largest `payload_json` part.
const MAX_PAYLOAD_JSON: usize = 64 * 1024;
/// Scrubbed bytes kept to read an image's dimensions from its header.
const DIMENSIONS_HEAD: usize = 64 * 1024;

/// Files received with a message: stored already, not yet recorded.
pub struct ReceivedFiles {
    pub body: MessageBody,
    pub files: Vec<NewAttachment>,
}

pub fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

/// Reads a multipart message: the `payload_json` part (or `content`/`nonce` parts) and every
/// part with a file name, each streamed through the metadata scrubber into the store. Checks
/// the sender may attach files here and the quotas before storing a byte; on any failure the
/// files stored so far are deleted.
pub async fn receive_message(
    state: &AppState,
    user: &AuthUser,
    channel_id: ChannelId,
    req: Request,
) -> ApiResult<ReceivedFiles> {
    let server = state.chat.check_attach(channel_id, user.user_id).await?;
    let usage = state.chat.storage_usage(user.user_id, server).await?;
    let quota_left = quota_left(state, usage, server.is_some());
    if quota_left == 0 {
        return Err(quota_error(state));
    }
    let mut multipart = Multipart::from_request(req, state)
        .await
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let mut stored: Vec<NewAttachment> = Vec::new();
    let result = read_parts(state, &mut multipart, quota_left, &mut stored).await;
    match result {
        Ok(body) => Ok(ReceivedFiles {
            body,
            files: stored,
        }),
        Err(e) => {
            discard(state, &stored).await;
            Err(e)
        }
    }
}

/// Queues files that will never be recorded for deletion (the sweeper removes them).
pub async fn discard(state: &AppState, files: &[NewAttachment]) {
    let keys: Vec<String> = files.iter().map(|f| f.storage_key.clone()).collect();
    if let Err(e) = state.chat.queue_file_deletions(&keys).await {
        tracing::warn!(error = %e, "queueing unused uploads for deletion");
    }
}

fn quota_left(state: &AppState, usage: confab_chat::files::StorageUsage, in_server: bool) -> u64 {
    let left = |quota: u64, used: i64| {
        if quota == 0 {
            u64::MAX
        } else {
            quota.saturating_sub(used.max(0) as u64)
        }
    };
    let user = left(state.config.user_storage_quota, usage.user);
    if in_server {
        user.min(left(state.config.server_storage_quota, usage.server))
    } else {
        user
    }
}

fn quota_error(state: &AppState) -> ApiError {
    ApiError::TooLarge(format!(
        "storage quota reached: a user may store {} MiB and a server {} MiB of files; delete older files first",
        state.config.user_storage_quota / (1024 * 1024),
        state.config.server_storage_quota / (1024 * 1024)
    ))
}

fn too_large(state: &AppState) -> ApiError {
    ApiError::TooLarge(format!(
        "a file may be at most {} MiB",
        state.config.max_upload_bytes / (1024 * 1024)
    ))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::BadRequest(format!("malformed multipart body: {}", e.body_text()))
}

async fn read_parts(
    state: &AppState,
    multipart: &mut Multipart,
    mut quota_left: u64,
    stored: &mut Vec<NewAttachment>,
) -> ApiResult<MessageBody> {
    let mut body: Option<MessageBody> = None;
    let mut content: Option<String> = None;
    let mut nonce: Option<String> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or("").to_owned();
        if let Some(raw_name) = field.file_name().map(str::to_owned) {
            if stored.len() >= MAX_FILES_PER_MESSAGE {
                return Err(ChatError::field("files", "at most 10 files per message").into());
            }
            let file = store_file(state, &mut field, &raw_name, quota_left).await?;
            quota_left = quota_left.saturating_sub(file.size as u64);
            stored.push(file);
            continue;
        }
        let text = read_small(&mut field).await?;
        match name.as_str() {
            "payload_json" => {
                body = Some(crate::input::decode_json::<MessageBody>(text.as_bytes())?)
            }
            "content" => content = Some(text),
            "nonce" => nonce = Some(text),
            _ => {}
        }
    }
    let mut body = body.unwrap_or(MessageBody {
        content: String::new(),
        nonce: None,
        reply_to: None,
        sticker_ids: Vec::new(),
    });
    if let Some(c) = content {
        body.content = c;
    }
    if nonce.is_some() {
        body.nonce = nonce;
    }
    if body.content.contains('\0') || body.nonce.as_deref().is_some_and(|n| n.contains('\0')) {
        return Err(ChatError::field("content", crate::input::NUL_MESSAGE).into());
    }
    Ok(body)
}

async fn read_small(field: &mut axum::extract::multipart::Field<'_>) -> ApiResult<String> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if buf.len() + chunk.len() > MAX_PAYLOAD_JSON {
            return Err(ApiError::TooLarge("a text part is at most 64 KiB".into()));
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf).map_err(|_| ApiError::BadRequest("a text part is not UTF-8".into()))
}

/// Streams one file part: sniff the first bytes, scrub, write to the store in parts.
async fn store_file(
    state: &AppState,
    field: &mut axum::extract::multipart::Field<'_>,
    raw_name: &str,
    quota_left: u64,
) -> ApiResult<NewAttachment> {
    let limit = state.config.max_upload_bytes;
    // The first bytes decide the type.
    let mut head: Vec<u8> = Vec::with_capacity(SNIFF_LEN);
    let mut rest: Option<bytes::Bytes> = None;
    while head.len() < SNIFF_LEN {
        match field.chunk().await.map_err(multipart_error)? {
            Some(chunk) => {
                let take = (SNIFF_LEN - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
                if take < chunk.len() {
                    rest = Some(chunk.slice(take..));
                    break;
                }
            }
            None => break,
        }
    }
    let sniffed = sniff(&head);
    let mut scrubber = Scrubber::for_content_type(sniffed.content_type);
    let mut upload = state
        .files
        .start_upload("attachments")
        .await
        .map_err(store_error)?;
    let mut received = 0u64;
    let mut out = Vec::with_capacity(64 * 1024);
    let mut dims_head: Vec<u8> = Vec::new();
    let mut next = Some(bytes::Bytes::from(head));
    let outcome: ApiResult<()> = async {
        loop {
            let chunk = match next.take() {
                Some(c) => c,
                None => match rest.take() {
                    Some(c) => c,
                    None => match field.chunk().await.map_err(multipart_error)? {
                        Some(c) => c,
                        None => break,
                    },
                },
            };
            received += chunk.len() as u64;
            if received > limit {
                return Err(too_large(state));
            }
            if received > quota_left {
                return Err(quota_error(state));
            }
            out.clear();
            scrubber
                .push(&chunk, &mut out)
                .map_err(|e| ChatError::field("files", e.to_string()))?;
            if sniffed.kind == confab_files::FileKind::Image && dims_head.len() < DIMENSIONS_HEAD {
                let take = (DIMENSIONS_HEAD - dims_head.len()).min(out.len());
                dims_head.extend_from_slice(&out[..take]);
            }
            upload.write(&out).await.map_err(store_error)?;
        }
        scrubber
            .finish()
            .map_err(|e| ChatError::field("files", e.to_string()))?;
        Ok(())
    }
    .await;
    if let Err(e) = outcome {
        upload.abort().await;
        return Err(e);
    }
    let (key, size) = upload.finish().await.map_err(store_error)?;
    let dims = (sniffed.kind == confab_files::FileKind::Image)
        .then(|| images::dimensions(&dims_head, scrubber.orientation()))
        .flatten();
    metrics::counter!("confab_attachment_uploads_total").increment(1);
    metrics::counter!("confab_attachment_bytes_total").increment(size);
    Ok(NewAttachment {
        storage_key: key,
        filename: clean_filename(raw_name),
        content_type: sniffed.content_type.to_owned(),
        size: size as i64,
        width: dims.map(|d| d.0 as i32),
        height: dims.map(|d| d.1 as i32),
    })
}

pub(crate) fn store_error(e: confab_files::StoreError) -> ApiError {
    tracing::error!(error = %e, "file store");
    ApiError::Unavailable("the file store is unavailable; try again shortly")
}

#[derive(Deserialize, IntoParams)]
pub struct SignedQuery {
    /// Expiry (Unix seconds) the URL was signed for.
    pub ex: i64,
    /// The signature.
    pub sig: String,
}

/// Download an attachment by the signed URL in its message (`attachments[].url`). No token
/// needed: the signature shows the URL came from a message the holder could read, and it
/// expires within a day. Images, audio and video of safe types are served inline; everything
/// else as a download. Supports `Range`.
#[utoipa::path(get, path = "/attachments/{attachment_id}/{filename}", tag = "files",
    params(("attachment_id" = String, Path), ("filename" = String, Path), SignedQuery),
    responses((status = 200, description = "The file"), (status = 206, description = "Part of the file"),
        (status = 404, body = ErrorBody, description = "No such attachment (deleted with its message), or the link expired")))]
pub async fn download(
    State(state): State<AppState>,
    Path((id, _filename)): Path<(AttachmentId, String)>,
    Query(q): Query<SignedQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    serve_attachment(&state, id, Variant::Original, q, &headers).await
}

/// Download an image attachment's thumbnail (`attachments[].thumbnail_url`).
#[utoipa::path(get, path = "/attachments/{attachment_id}/thumbnail/{filename}", tag = "files",
    params(("attachment_id" = String, Path), ("filename" = String, Path), SignedQuery),
    responses((status = 200, description = "The thumbnail (JPEG or PNG)"),
        (status = 404, body = ErrorBody, description = "No such attachment or thumbnail, or the link expired")))]
pub async fn download_thumbnail(
    State(state): State<AppState>,
    Path((id, _filename)): Path<(AttachmentId, String)>,
    Query(q): Query<SignedQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    serve_attachment(&state, id, Variant::Thumbnail, q, &headers).await
}

async fn serve_attachment(
    state: &AppState,
    id: AttachmentId,
    variant: Variant,
    q: SignedQuery,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let now = chrono::Utc::now().timestamp();
    if !state
        .chat
        .file_urls()
        .verify(id, variant, q.ex, &q.sig, now)
    {
        return Err(ChatError::NotFound("attachment (or the link expired)").into());
    }
    let a = state.chat.stored_attachment(id).await?;
    let (key, content_type, filename) = match variant {
        Variant::Original => (a.storage_key, a.content_type, a.filename),
        Variant::Thumbnail => {
            let key = a
                .thumbnail_key
                .filter(|k| !k.is_empty())
                .ok_or(ChatError::NotFound("thumbnail"))?;
            // Thumbnails are JPEG or PNG; the bytes say which.
            (key, String::new(), a.filename)
        }
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| parse_range(r, a.size.max(0) as u64));
    let d = match state.files.download(&key, range.clone()).await {
        Ok(d) => d,
        Err(confab_files::StoreError::NotFound) => {
            return Err(ChatError::NotFound("attachment").into())
        }
        Err(e) => return Err(store_error(e)),
    };
    let sniffed = confab_files::Sniffed::from_stored(&content_type);
    let mut resp = Response::new(Body::from_stream(d.stream));
    let h = resp.headers_mut();
    let (ct, disposition) = if variant == Variant::Thumbnail {
        (thumbnail_type(&key), "inline")
    } else if sniffed.inline() {
        (sniffed.content_type, "inline")
    } else {
        ("application/octet-stream", "attachment")
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&content_disposition(disposition, &filename))
            .unwrap_or(HeaderValue::from_static("attachment")),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Nothing in a file runs: no scripts, no plugins, no navigation (defence in depth; only
    // media types are inline anyway).
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; img-src 'self'; media-src 'self'; sandbox"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let len = d.range.end - d.range.start;
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if range.is_some() {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!(
                "bytes {}-{}/{}",
                d.range.start,
                d.range.end.saturating_sub(1),
                d.size
            ))
            .expect("ASCII"),
        );
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(resp)
}

/// Thumbnails are stored under a prefix that names their type.
fn thumbnail_type(key: &str) -> &'static str {
    if key.starts_with("thumbnails/png/") {
        "image/png"
    } else {
        "image/jpeg"
    }
}

/// `inline; filename="…"; filename*=UTF-8''…` with the name made safe for a header.
fn content_disposition(kind: &str, filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in filename.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// One `bytes=` range of a file of `size` bytes (start..end, end exclusive); multiple ranges
/// and unsatisfiable ones are answered with the whole file.
fn parse_range(value: &str, size: u64) -> Option<std::ops::Range<u64>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (size.saturating_sub(n), size)
        }
        (s, "") => (s.parse().ok()?, size),
        (s, e) => (
            s.parse().ok()?,
            e.parse::<u64>().ok()?.saturating_add(1).min(size),
        ),
    };
    (start < end && end <= size).then_some(start..end)
}

/// Most bytes of an uploaded avatar image.
pub const MAX_AVATAR_UPLOAD: usize = 8 * 1024 * 1024;
/// Side of the stored square avatar, pixels.
const AVATAR_SIDE: u32 = 256;

#[derive(Deserialize, IntoParams)]
pub struct CropQuery {
    /// Left edge of the square to keep, in the image's pixels (after EXIF orientation).
    pub x: Option<u32>,
    /// Top edge.
    pub y: Option<u32>,
    /// Side of the square; without a crop the centre square is kept.
    pub size: Option<u32>,
}

/// Set my avatar: the raw image (PNG, JPEG, GIF or WebP, at most 8 MiB) as the body; an optional
/// square crop in query parameters (the web client sends the one the user chose). Stored as a
/// 256×256 PNG without metadata; `avatar_url` points at it.
#[utoipa::path(put, path = "/users/@me/avatar", tag = "users", security(("bearer" = [])), params(CropQuery),
    request_body(content = Vec<u8>, content_type = "image/*"),
    responses((status = 200, body = confab_chat::model::User), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn put_avatar(
    State(state): State<AppState>,
    user: AuthUser,
    Query(crop): Query<CropQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let square = square_png(&body, crop).await?;
    let key = state
        .files
        .put("avatars", square)
        .await
        .map_err(store_error)?;
    let url = avatar_url(user.user_id, &key);
    let (updated, old) = state
        .chat
        .set_avatar(user.user_id, Some((&key, &url)))
        .await?;
    if let Some(old) = old {
        let _ = state.chat.queue_file_deletions(&[old]).await;
    }
    super::users::announce_user(&state, user.user_id, &updated).await?;
    Ok(axum::Json(updated).into_response())
}

/// Remove my avatar.
#[utoipa::path(delete, path = "/users/@me/avatar", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = confab_chat::model::User)))]
pub async fn delete_avatar(State(state): State<AppState>, user: AuthUser) -> ApiResult<Response> {
    let (updated, old) = state.chat.set_avatar(user.user_id, None).await?;
    if let Some(old) = old {
        let _ = state.chat.queue_file_deletions(&[old]).await;
    }
    super::users::announce_user(&state, user.user_id, &updated).await?;
    Ok(axum::Json(updated).into_response())
}

/// `/api/v1/avatars/{user_id}/{random part of the key}.png`: changes with every upload, so it
/// is cached forever.
fn avatar_url(user_id: UserId, key: &str) -> String {
    let name = key.rsplit('/').next().unwrap_or(key);
    format!("/api/v1/avatars/{user_id}/{name}.png")
}

/// A user's uploaded avatar (public, like profile pictures everywhere; the name changes with
/// each upload).
#[utoipa::path(get, path = "/avatars/{user_id}/{name}", tag = "users",
    params(("user_id" = String, Path), ("name" = String, Path)),
    responses((status = 200, description = "A 256×256 PNG"), (status = 404, body = ErrorBody)))]
pub async fn get_avatar(
    State(state): State<AppState>,
    Path((user_id, name)): Path<(UserId, String)>,
) -> ApiResult<Response> {
    let key = state.chat.avatar_key(user_id).await?;
    serve_image(&state, key, &name, "avatar").await
}

/// Set the server's icon (MANAGE_SERVER): the raw image as the body, an optional square crop
/// as for avatars; stored as a 256×256 PNG. Members get SERVER_UPDATE with `icon_url`.
#[utoipa::path(put, path = "/servers/{server_id}/icon", tag = "servers", security(("bearer" = [])),
    params(("server_id" = String, Path), CropQuery),
    request_body(content = Vec<u8>, content_type = "image/*"),
    responses((status = 200, body = confab_chat::model::Server), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn put_icon(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
    Query(crop): Query<CropQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    // Permission first: a member without MANAGE_SERVER costs no decoding.
    let perms = state
        .chat
        .server_permissions(server_id, user.user_id)
        .await?;
    if !confab_chat::permissions::has(perms, confab_chat::permissions::MANAGE_SERVER) {
        return Err(ChatError::Forbidden("you may not manage this server").into());
    }
    let square = square_png(&body, crop).await?;
    let key = state
        .files
        .put("icons", square)
        .await
        .map_err(store_error)?;
    let name = key.rsplit('/').next().unwrap_or(&key).to_owned();
    let url = format!("/api/v1/icons/{server_id}/{name}.png");
    let result = state
        .chat
        .set_server_icon(server_id, user.user_id, Some((&key, &url)))
        .await;
    let (server, old) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = state.chat.queue_file_deletions(&[key]).await;
            return Err(e.into());
        }
    };
    if let Some(old) = old {
        let _ = state.chat.queue_file_deletions(&[old]).await;
    }
    state.emit(
        crate::gateway::hub::Target::Server(server_id),
        crate::gateway::events::Event::ServerUpdate,
        &server,
    );
    Ok(axum::Json(server).into_response())
}

/// Remove the server's icon (MANAGE_SERVER).
#[utoipa::path(delete, path = "/servers/{server_id}/icon", tag = "servers", security(("bearer" = [])),
    params(("server_id" = String, Path)),
    responses((status = 200, body = confab_chat::model::Server), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_icon(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
) -> ApiResult<Response> {
    let (server, old) = state
        .chat
        .set_server_icon(server_id, user.user_id, None)
        .await?;
    if let Some(old) = old {
        let _ = state.chat.queue_file_deletions(&[old]).await;
    }
    state.emit(
        crate::gateway::hub::Target::Server(server_id),
        crate::gateway::events::Event::ServerUpdate,
        &server,
    );
    Ok(axum::Json(server).into_response())
}

/// A server's uploaded icon (public, as invites show it to people not yet in the server).
#[utoipa::path(get, path = "/icons/{server_id}/{name}", tag = "servers",
    params(("server_id" = String, Path), ("name" = String, Path)),
    responses((status = 200, description = "A 256×256 PNG"), (status = 404, body = ErrorBody)))]
pub async fn get_icon(
    State(state): State<AppState>,
    Path((server_id, name)): Path<(ServerId, String)>,
) -> ApiResult<Response> {
    let key = state.chat.icon_key(server_id).await?;
    serve_image(&state, key, &name, "icon").await
}

/// Serves a stored square PNG if `key`'s random part is `name` (minus `.png`).
async fn serve_image(
    state: &AppState,
    key: Option<String>,
    name: &str,
    what: &'static str,
) -> ApiResult<Response> {
    let key = key
        .filter(|k| k.rsplit('/').next().map(|n| format!("{n}.png")).as_deref() == Some(name))
        .ok_or(ChatError::NotFound(what))?;
    let d = state
        .files
        .download(&key, None)
        .await
        .map_err(|e| match e {
            confab_files::StoreError::NotFound => ChatError::NotFound(what).into(),
            e => store_error(e),
        })?;
    let mut resp = Response::new(Body::from_stream(d.stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
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

/// Checks an uploaded avatar or icon is an image and makes the 256×256 PNG (off the runtime).
async fn square_png(body: &axum::body::Bytes, crop: CropQuery) -> ApiResult<Vec<u8>> {
    let kind = sniff(&body[..body.len().min(SNIFF_LEN)]);
    if kind.kind != confab_files::FileKind::Image {
        return Err(ChatError::field("image", "must be a PNG, JPEG, GIF or WebP image").into());
    }
    let crop = match (crop.x, crop.y, crop.size) {
        (Some(x), Some(y), Some(s)) => Some((x, y, s)),
        (None, None, None) => None,
        _ => return Err(ChatError::field("size", "x, y and size go together").into()),
    };
    let body = body.clone();
    tokio::task::spawn_blocking(move || images::square(&body, crop, AVATAR_SIDE))
        .await
        .map_err(|e| anyhow::anyhow!("image task: {e}"))?
        .map_err(|e| ChatError::field("image", e.to_string()).into())
}

/// Makes thumbnails for new images (a bounded pool of blocking workers, off the request path)
/// and re-dispatches their messages; deletes store objects whose rows are gone.
pub fn spawn_workers(state: AppState) {
    let thumbs = state.clone();
    tokio::spawn(async move {
        // Half the cores at most: thumbnails must never starve the media or the API.
        let workers = std::thread::available_parallelism()
            .map(|n| (n.get() / 2).max(1))
            .unwrap_or(1);
        let pool = std::sync::Arc::new(tokio::sync::Semaphore::new(workers));
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = thumbs.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let pending = match thumbs.chat.claim_thumbnails(workers as i64 * 2).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(error = %e, "listing pending thumbnails");
                    continue;
                }
            };
            let mut tasks = Vec::new();
            for p in pending {
                let permit = pool.clone().acquire_owned().await.expect("never closed");
                let state = thumbs.clone();
                tasks.push(tokio::spawn(async move {
                    make_thumbnail(&state, p).await;
                    drop(permit);
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            sweep(&state).await;
        }
    });
}

async fn make_thumbnail(state: &AppState, p: confab_chat::files::PendingThumbnail) {
    let bytes = match state.files.read_all(&p.storage_key).await {
        Ok(b) => b,
        Err(e) => {
            // Retried when the claim lapses (the store may be back by then).
            tracing::warn!(error = %e, attachment = %p.id, "reading an image for its thumbnail");
            return;
        }
    };
    let made = tokio::task::spawn_blocking(move || images::thumbnail(&bytes)).await;
    let thumb = match made {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::info!(error = %e, attachment = %p.id, "no thumbnail");
            metrics::counter!("confab_thumbnails_total", "result" => "failed").increment(1);
            let _ = state.chat.thumbnail_failed(p.id).await;
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "thumbnail task");
            let _ = state.chat.thumbnail_failed(p.id).await;
            return;
        }
    };
    let prefix = if thumb.content_type == "image/png" {
        "thumbnails/png"
    } else {
        "thumbnails/jpeg"
    };
    let key = match state.files.put(prefix, thumb.bytes).await {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "storing a thumbnail");
            return;
        }
    };
    match state
        .chat
        .set_thumbnail(
            p.id,
            &key,
            thumb.source_width as i32,
            thumb.source_height as i32,
        )
        .await
    {
        Ok(Some(message)) => {
            metrics::counter!("confab_thumbnails_total", "result" => "made").increment(1);
            state.emit(
                state
                    .channel_target(message.server_id, message.channel_id, None)
                    .await,
                crate::gateway::events::Event::MessageUpdate,
                &message,
            );
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "recording a thumbnail"),
    }
}

/// Deletes queued store objects, then forgets them.
pub async fn sweep(state: &AppState) {
    let keys = match state.chat.file_deletions(200).await {
        Ok(k) if !k.is_empty() => k,
        _ => return,
    };
    let mut done = Vec::with_capacity(keys.len());
    for key in keys {
        match state.files.delete(&key).await {
            Ok(()) => done.push(key),
            Err(e) => tracing::warn!(error = %e, key, "deleting a stored file"),
        }
    }
    metrics::counter!("confab_files_deleted_total").increment(done.len() as u64);
    let _ = state.chat.forget_file_deletions(&done).await;
}

/// Opens the configured store.
pub fn open_store(config: &crate::config::Config) -> anyhow::Result<FileStore> {
    FileStore::open(&config.file_store())
        .map_err(|e| anyhow::anyhow!("opening the file store: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_parsed_or_ignored() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some(0..100));
        assert_eq!(parse_range("bytes=900-", 1000), Some(900..1000));
        assert_eq!(parse_range("bytes=-100", 1000), Some(900..1000));
        assert_eq!(parse_range("bytes=990-2000", 1000), Some(990..1000));
        assert_eq!(parse_range("bytes=1000-", 1000), None);
        assert_eq!(parse_range("bytes=5-1", 1000), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
        assert_eq!(parse_range("bytes=x-", 1000), None);
    }

    #[test]
    fn content_disposition_is_a_safe_header() {
        let v = content_disposition("attachment", "ré\"sumé\r\n.pdf");
        assert!(HeaderValue::from_str(&v).is_ok(), "{v}");
        assert!(
            v.starts_with("attachment; filename=\"r__sum___.pdf\""),
            "{v}"
        );
        assert!(
            v.contains("filename*=UTF-8''r%C3%A9%22sum%C3%A9%0D%0A.pdf"),
            "{v}"
        );
    }
}
