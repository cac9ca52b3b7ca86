//! Link preview images (docs/link-previews.md): fetched once by the preview worker, checked
//! and stored in the database, served from here so browsers never load third-party URLs.

use crate::error::{ApiError, ApiResult, ErrorBody, Path};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use confab_chat::ChatError;
use utoipa::ToSchema;

/// An image's bytes (PNG, JPEG, GIF or WebP).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct ImageBytes(#[allow(dead_code)] Vec<u8>);

/// A link preview's image (no token: the random key in its URL is the permission).
///
/// An `<img>` cannot send a token. The key is random (122 bits) and appears only in the
/// embeds of messages, so holding the URL is the permission, like a signed URL; the bytes are
/// public web content the preview worker fetched. The type was sniffed from the bytes when
/// stored; `nosniff` and a sandboxing CSP keep browsers from treating them as anything else.
#[utoipa::path(get, path = "/link-previews/images/{key}", tag = "messages",
    params(("key" = String, Path, description = "The key in an embed's image URL")),
    responses((status = 200, description = "The image", content(
        (ImageBytes = "image/png"), (ImageBytes = "image/jpeg"), (ImageBytes = "image/gif"), (ImageBytes = "image/webp"))),
        (status = 404, body = ErrorBody)))]
pub async fn image(State(state): State<AppState>, Path(key): Path<String>) -> ApiResult<Response> {
    let key = uuid::Uuid::try_parse(&key).map_err(|_| ChatError::NotFound("image"))?;
    let img = state.chat.link_preview_image(key).await?;
    let content_type = HeaderValue::from_str(&img.content_type)
        .map_err(|e| ApiError::from(anyhow::anyhow!("stored content type: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; sandbox"),
            ),
            // A refetch may replace the bytes under the same key: cache, but not forever.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=86400"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("inline"),
            ),
        ],
        img.bytes,
    )
        .into_response())
}
