//! Message search (docs/search.md): a server's channels, or the caller's DMs.

use crate::auth::AuthUser;
use crate::error::{ErrorBody, Json, Path, Query};
use crate::error::ApiResult;
use crate::state::AppState;
use axum::extract::State;
use confab_chat::search::{Page, SearchHit, SearchQuery};
use confab_chat::{MessageId, ServerId};
use serde::Deserialize;
use utoipa::IntoParams;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
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

fn parse(p: &SearchParams) -> ApiResult<(SearchQuery, Page)> {
    Ok((
        SearchQuery::parse(&p.q)?,
        Page {
            limit: p.limit,
            cursor: p.cursor,
        },
    ))
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
    Query(p): Query<SearchParams>,
) -> ApiResult<Json<Vec<SearchHit>>> {
    let (q, page) = parse(&p)?;
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
    Query(p): Query<SearchParams>,
) -> ApiResult<Json<Vec<SearchHit>>> {
    let (q, page) = parse(&p)?;
    Ok(Json(
        state.chat.search_private(user.user_id, &q, page).await?,
    ))
}
