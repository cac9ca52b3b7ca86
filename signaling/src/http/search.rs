//! Message search (docs/search.md): a server's channels, or the caller's DMs.

use crate::auth::AuthUser;
use crate::error::{ApiResult, ErrorBody, Json, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use confab_chat::search::{Page, SearchHit, SearchQuery};
use confab_chat::{ChatError, MessageId, ServerId};
use std::collections::{BTreeMap, BTreeSet};
use utoipa::IntoParams;

/// The query parameters, as documented; read by `parse` so that every mistake is answered with
/// the parameter named in `errors`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SearchParams {
    /// Words and filters, at most 512 characters: `from:USER`, `in:CHANNEL`,
    /// `has:link|file|image`, `mentions:USER`, `before:`/`after:` (`YYYY-MM-DD`, RFC 3339 or a
    /// message id), `pinned:true|false`; the other words in web-search syntax ("a phrase",
    /// `-not`, `or`). See docs/search.md.
    pub q: String,
    /// 1-50, default 25.
    pub limit: Option<i64>,
    /// The id of the last result of the previous page: the next page holds older messages.
    #[param(value_type = Option<String>)]
    pub cursor: Option<MessageId>,
}

/// Reads `q`, `limit` and `cursor`: a missing `q`, a malformed number or id, a repeated or
/// unknown parameter are each a 400 naming the parameter; then the query itself is parsed.
fn parse(pairs: Vec<(String, String)>) -> ApiResult<(SearchQuery, Page)> {
    let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut fail = |field: &str, message: &str| {
        errors
            .entry(field.chars().take(64).collect())
            .or_default()
            .push(message.to_string());
    };
    let (mut q, mut limit, mut cursor) = (None, None, None);
    let mut seen = BTreeSet::new();
    for (key, value) in pairs {
        if !seen.insert(key.clone()) {
            fail(&key, "must be given once");
            continue;
        }
        match key.as_str() {
            "q" => q = Some(value),
            "limit" => match value.parse::<i64>() {
                Ok(n) => limit = Some(n),
                Err(_) => fail("limit", "must be a number, 1-50"),
            },
            "cursor" => match value.parse::<MessageId>() {
                Ok(id) => cursor = Some(id),
                Err(_) => fail("cursor", "must be a message id"),
            },
            _ => fail(&key, "is not a parameter of search"),
        }
    }
    if q.is_none() {
        fail("q", "is required");
    }
    if !errors.is_empty() {
        return Err(ChatError::Validation(errors).into());
    }
    let query = SearchQuery::parse(q.as_deref().unwrap_or_default())?;
    Ok((query, Page { limit, cursor }))
}

/// Search the messages of a server, newest first: only channels where the caller has
/// VIEW_CHANNEL and READ_MESSAGE_HISTORY (channel overwrites applied). Each result is the
/// message with `highlights`, the ranges of its content that matched. A page shorter than
/// `limit` is the last one. Rate-limited (bucket `search`).
#[utoipa::path(get, path = "/servers/{server_id}/messages/search", tag = "messages", security(("bearer" = [])),
    params(("server_id" = String, Path), SearchParams),
    responses((status = 200, body = [SearchHit]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn server(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
    Query(p): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Vec<SearchHit>>> {
    let (q, page) = parse(p)?;
    Ok(Json(
        state
            .chat
            .search_server(server_id, user.user_id, &q, page)
            .await?,
    ))
}

/// Search the caller's DMs and group DMs, newest first (the same syntax; `in:` takes a DM's
/// channel id). Rate-limited (bucket `search`).
#[utoipa::path(get, path = "/users/@me/messages/search", tag = "messages", security(("bearer" = [])),
    params(SearchParams),
    responses((status = 200, body = [SearchHit]), (status = 400, body = ErrorBody)))]
pub async fn private(
    State(state): State<AppState>,
    user: AuthUser,
    Query(p): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Vec<SearchHit>>> {
    let (q, page) = parse(p)?;
    Ok(Json(
        state.chat.search_private(user.user_id, &q, page).await?,
    ))
}
