//! Message search (docs/search.md): a query string with Discord-style filters
//! (`from:alice has:image in:general deploy failed`), parsed here, then answered by PostgreSQL
//! full-text search over the channels the caller may read.
//!
//! The order of work keeps the index useful and never leaks a hidden channel: first the set of
//! channels the caller may view and read the history of (computed in Rust with the same
//! `permissions::in_channel` every endpoint uses), then one statement that asks the GIN index
//! (`search_vector @@ query`) and keeps `channel_id = ANY(visible)`, newest first by id. The
//! planner chooses between the GIN bitmap (rare words) and walking the primary key backwards
//! until a page is full (common words); both stop at the page size. Paging is by id (`cursor`),
//! never by offset, so a deep page costs what the first one does.

use crate::messages::{MessageRow, SELECT_MESSAGE_COLUMNS};
use crate::model::Message;
use crate::permissions::{self, ChannelOverwrites, Overwrite, Permissions};
use crate::snowflake::EPOCH_MS;
use crate::{
    ChannelId, Chat, ChatError, ChatResult, MessageId, RoleId, ServerId, Snowflake, UserId,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::ToSchema;

/// Longest query string, in characters.
pub const MAX_QUERY_CHARS: usize = 512;
/// Most filters in one query (all kinds together).
pub const MAX_FILTERS: usize = 16;
/// Default and largest page.
pub const DEFAULT_LIMIT: i64 = 25;
pub const MAX_LIMIT: i64 = 50;
/// A search that runs longer than this is cancelled and answered 400 ("narrow it").
pub const STATEMENT_TIMEOUT_MS: u32 = 5_000;

/// Marks PostgreSQL puts around highlighted words (private-use code points), turned into
/// offsets before anything reaches a client.
const MARK_START: char = '\u{E000}';
const MARK_END: char = '\u{E001}';

/// Who a `from:` or `mentions:` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    Id(UserId),
    /// A username, matched case-insensitively.
    Name(String),
}

/// Which channel an `in:` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelRef {
    Id(ChannelId),
    /// A channel name, matched case-insensitively among the channels the caller can read.
    Name(String),
}

/// `has:` kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Has {
    /// An http(s) URL in the content.
    Link,
    /// Any attachment.
    File,
    /// An attachment whose sniffed type is `image/*`.
    Image,
}

/// A parsed query: the words to look for and the filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Free text in `websearch_to_tsquery` syntax ("quoted phrases", `-word`, `or`); may be empty
    /// when filters alone narrow the search.
    pub text: String,
    /// Any of these authors.
    pub from: Vec<UserRef>,
    /// Any of these channels.
    pub channels: Vec<ChannelRef>,
    /// All of these.
    pub has: Vec<Has>,
    /// Mentioning any of these users.
    pub mentions: Vec<UserRef>,
    /// Only messages with an id below this (sent before).
    pub before: Option<MessageId>,
    /// Only messages with an id above this (sent after).
    pub after: Option<MessageId>,
    pub pinned: Option<bool>,
}

/// A page request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Page {
    /// 1-50, default 25.
    pub limit: Option<i64>,
    /// The id of the last result of the previous page: results older than it.
    pub cursor: Option<MessageId>,
}

/// A half-open range of a message's content that matched, in characters (Unicode code points,
/// as `Array.from(content)` counts them): `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Highlight {
    pub start: u32,
    pub end: u32,
}

/// One result: the message as history returns it, with what matched.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    #[serde(flatten)]
    pub message: Message,
    /// Ranges of `content` that matched the words searched for (empty when only filters
    /// were given).
    pub highlights: Vec<Highlight>,
}

fn bad(message: impl Into<String>) -> ChatError {
    ChatError::field("q", message)
}

/// The id boundary of a moment: the smallest id minted at or after it.
fn id_at(ms_since_unix: i64) -> MessageId {
    let since_epoch = ms_since_unix.saturating_sub(EPOCH_MS as i64).max(0);
    // 42 bits of milliseconds: far beyond any date a user types, but cap it anyway.
    MessageId::new(Snowflake(since_epoch.min((1 << 41) - 1) << 22))
}

/// A `before:`/`after:` value as an id bound, exclusive on both sides as `id < before` and
/// `id > after` use it: a date (UTC, `YYYY-MM-DD`: before that day / after that day), an
/// RFC 3339 time, or a message id.
fn time_bound(key: &str, value: &str, is_before: bool) -> ChatResult<MessageId> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value
            .parse::<Snowflake>()
            .map(MessageId::new)
            .map_err(|_| bad(format!("{key}: is not a valid message id")));
    }
    if let Ok(day) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let start = day
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
            .ok_or_else(|| bad(format!("{key}: is not a valid date")))?;
        return Ok(if is_before {
            id_at(start)
        } else {
            // After the whole day: ids from the next midnight on, i.e. above this one.
            MessageId::new(Snowflake(id_at(start + 86_400_000).get() - 1))
        });
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        let ms = t.with_timezone(&Utc).timestamp_millis();
        return Ok(if is_before {
            id_at(ms)
        } else {
            MessageId::new(Snowflake(id_at(ms + 1).get() - 1))
        });
    }
    Err(bad(format!(
        "{key}: expects a date (YYYY-MM-DD), a time (RFC 3339) or a message id"
    )))
}

/// `<@123>`, `<@!123>`, `123`, `@name` or `name`.
fn user_ref(key: &str, value: &str) -> ChatResult<UserRef> {
    let inner = value
        .strip_prefix("<@")
        .and_then(|v| v.strip_suffix('>'))
        .map(|v| v.trim_start_matches('!'));
    if let Some(id) = inner {
        return id
            .parse::<Snowflake>()
            .map(|s| UserRef::Id(UserId::new(s)))
            .map_err(|_| bad(format!("{key}: <@…> must hold a user id")));
    }
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(s) = value.parse::<Snowflake>() {
            return Ok(UserRef::Id(UserId::new(s)));
        }
    }
    let name = value.strip_prefix('@').unwrap_or(value);
    if !(2..=32).contains(&name.chars().count()) {
        return Err(bad(format!(
            "{key}: expects a username (2-32 characters) or a user id"
        )));
    }
    Ok(UserRef::Name(name.to_owned()))
}

/// `<#123>`, `123`, `#name` or `name`.
fn channel_ref(value: &str) -> ChatResult<ChannelRef> {
    if let Some(id) = value.strip_prefix("<#").and_then(|v| v.strip_suffix('>')) {
        return id
            .parse::<Snowflake>()
            .map(|s| ChannelRef::Id(ChannelId::new(s)))
            .map_err(|_| bad("in: <#…> must hold a channel id"));
    }
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(s) = value.parse::<Snowflake>() {
            return Ok(ChannelRef::Id(ChannelId::new(s)));
        }
    }
    let name = value.strip_prefix('#').unwrap_or(value);
    if name.is_empty() || name.chars().count() > 100 {
        return Err(bad("in: expects a channel name or id"));
    }
    Ok(ChannelRef::Name(name.to_owned()))
}

const KEYS: [&str; 7] = ["from", "in", "has", "mentions", "before", "after", "pinned"];

impl SearchQuery {
    /// Parses a query string. Filters are `key:value` words (the key case-insensitive, the
    /// value quoted when it holds spaces: `in:"release notes"`); every other word is text. A
    /// word whose key is not a filter (`http://…`, `12:30`) is text too.
    pub fn parse(q: &str) -> ChatResult<SearchQuery> {
        if q.contains('\0') {
            return Err(bad("must not contain NUL characters"));
        }
        if q.chars().count() > MAX_QUERY_CHARS {
            return Err(bad(format!("must be at most {MAX_QUERY_CHARS} characters")));
        }
        let mut out = SearchQuery::default();
        let mut text: Vec<String> = Vec::new();
        let mut filters = 0usize;
        for word in split_words(q) {
            let filter = word.split_once(':').and_then(|(k, v)| {
                let k = k.to_ascii_lowercase();
                KEYS.contains(&k.as_str()).then(|| (k, v.to_owned()))
            });
            let Some((key, value)) = filter else {
                text.push(word);
                continue;
            };
            let value = unquote(&value);
            if value.is_empty() {
                return Err(bad(format!("{key}: needs a value")));
            }
            filters += 1;
            if filters > MAX_FILTERS {
                return Err(bad(format!("at most {MAX_FILTERS} filters")));
            }
            match key.as_str() {
                "from" => out.from.push(user_ref("from", value)?),
                "mentions" => out.mentions.push(user_ref("mentions", value)?),
                "in" => out.channels.push(channel_ref(value)?),
                "has" => {
                    let has = match value.to_ascii_lowercase().as_str() {
                        "link" | "links" => Has::Link,
                        "file" | "files" | "attachment" => Has::File,
                        "image" | "images" => Has::Image,
                        _ => return Err(bad("has: expects link, file or image")),
                    };
                    if !out.has.contains(&has) {
                        out.has.push(has);
                    }
                }
                "pinned" => {
                    out.pinned = Some(match value.to_ascii_lowercase().as_str() {
                        "true" | "yes" => true,
                        "false" | "no" => false,
                        _ => return Err(bad("pinned: expects true or false")),
                    })
                }
                "before" => {
                    let b = time_bound("before", value, true)?;
                    out.before = Some(out.before.map_or(b, |o| o.min(b)));
                }
                "after" => {
                    let a = time_bound("after", value, false)?;
                    out.after = Some(out.after.map_or(a, |o| o.max(a)));
                }
                _ => unreachable!("KEYS lists every key matched above"),
            }
        }
        out.text = text.join(" ");
        if out.text.trim().is_empty() && filters == 0 {
            return Err(bad(
                "must not be empty: give words to search for or a filter",
            ));
        }
        Ok(out)
    }
}

/// Splits on whitespace outside double quotes; quotes stay in the words.
fn split_words(q: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in q.chars() {
        if ch == '"' {
            quoted = !quoted;
            cur.push(ch);
        } else if ch.is_whitespace() && !quoted {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(ch);
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

fn unquote(v: &str) -> &str {
    let v = v.strip_prefix('"').unwrap_or(v);
    v.strip_suffix('"').unwrap_or(v)
}

/// Turns PostgreSQL's marked-up copy of `content` into ranges; none when the copy is not the
/// content with marks added (the content holds the marks itself, or the headline changed it).
fn highlights(content: &str, marked: &str) -> Vec<Highlight> {
    if content.contains([MARK_START, MARK_END]) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut plain = String::with_capacity(content.len());
    let mut pos: u32 = 0;
    let mut start: Option<u32> = None;
    for ch in marked.chars() {
        match ch {
            MARK_START => start = Some(pos),
            MARK_END => {
                if let Some(s) = start.take() {
                    if pos > s {
                        out.push(Highlight { start: s, end: pos });
                    }
                }
            }
            c => {
                plain.push(c);
                pos += 1;
            }
        }
    }
    if plain != content {
        return Vec::new();
    }
    out
}

/// Sorted ranges, overlapping ones joined.
fn merge(mut ranges: Vec<Highlight>) -> Vec<Highlight> {
    ranges.sort_by_key(|r| (r.start, r.end));
    let mut out: Vec<Highlight> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start < last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

#[derive(sqlx::FromRow)]
struct HitRow {
    #[sqlx(flatten)]
    message: MessageRow,
    headline: Option<String>,
    headline_simple: Option<String>,
}

/// A readable channel: id and name (for `in:name`).
type Readable = Vec<(ChannelId, String)>;

impl Chat {
    /// Searches the messages of `server_id` that `user_id` may read (VIEW_CHANNEL and
    /// READ_MESSAGE_HISTORY in their channel, overwrites applied). NotFound for non-members.
    pub async fn search_server(
        &self,
        server_id: ServerId,
        user_id: UserId,
        q: &SearchQuery,
        page: Page,
    ) -> ChatResult<Vec<SearchHit>> {
        let channels = self.readable_channels(server_id, user_id).await?;
        self.search_in(&channels, q, page).await
    }

    /// Searches the caller's DMs and group DMs.
    pub async fn search_private(
        &self,
        user_id: UserId,
        q: &SearchQuery,
        page: Page,
    ) -> ChatResult<Vec<SearchHit>> {
        let channels: Vec<ChannelId> =
            sqlx::query_scalar("SELECT channel_id FROM dm_recipients WHERE user_id = $1")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
        // DMs have no names to match: `in:` takes ids there.
        let channels: Readable = channels.into_iter().map(|c| (c, String::new())).collect();
        self.search_in(&channels, q, page).await
    }

    /// The channels of a server whose history the member may read, with their names.
    async fn readable_channels(
        &self,
        server_id: ServerId,
        user_id: UserId,
    ) -> ChatResult<Readable> {
        let access = self
            .member_access(server_id, user_id)
            .await?
            .ok_or(ChatError::NotFound("server"))?;
        let channels: Vec<(ChannelId, Option<String>, Option<ChannelId>, bool)> = sqlx::query_as(
            "SELECT id, name, parent_id, permissions_synced FROM channels
             WHERE server_id = $1 AND kind NOT IN ('category', 'public_thread', 'private_thread')",
        )
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?;
        let wanted = permissions::VIEW_CHANNEL | permissions::READ_MESSAGE_HISTORY;
        let base = access.base();
        // Threads: those of readable channels, private ones only for their members and
        // MANAGE_THREADS holders (threads_of_readable).
        let threads: Vec<(ChannelId, String, ChannelId, bool, bool)> = sqlx::query_as(
            "SELECT t.channel_id, c.name, t.parent_id, t.private,
                    EXISTS (SELECT 1 FROM thread_members m
                            WHERE m.channel_id = t.channel_id AND m.user_id = $2)
             FROM threads t JOIN channels c ON c.id = t.channel_id WHERE c.server_id = $1",
        )
        .bind(server_id)
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        if base.contains(permissions::ADMINISTRATOR) {
            let mut all: Readable = channels
                .into_iter()
                .map(|(id, name, _, _)| (id, name.unwrap_or_default()))
                .collect();
            all.extend(threads.into_iter().map(|(id, name, ..)| (id, name)));
            return Ok(all);
        }
        type Row = (ChannelId, Snowflake, String, Permissions, Permissions);
        let overwrites: Vec<Row> = sqlx::query_as(
            "SELECT o.channel_id, o.target_id, o.kind, o.allow, o.deny FROM channel_overwrites o
             JOIN channels c ON c.id = o.channel_id WHERE c.server_id = $1",
        )
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?;
        let mut by_channel: HashMap<ChannelId, ChannelOverwrites> = HashMap::new();
        for (channel, target, kind, allow, deny) in overwrites {
            let o = by_channel.entry(channel).or_default();
            let ow = Overwrite { allow, deny };
            match kind.as_str() {
                "role" if RoleId::new(target).is_everyone(server_id) => o.everyone = Some(ow),
                "role" if access.role_ids.contains(&RoleId::new(target)) => o.roles.push(ow),
                "member" if UserId::new(target) == user_id => o.member = Some(ow),
                _ => {}
            }
        }
        let none = ChannelOverwrites::default();
        // Readable channels and the permissions there.
        let readable: Vec<(ChannelId, String, Permissions)> = channels
            .into_iter()
            .filter_map(|(id, name, parent, synced)| {
                // A channel in a category uses the category's overwrites while synced.
                let source = match (synced, parent) {
                    (true, Some(p)) => p,
                    _ => id,
                };
                let o = by_channel.get(&source).unwrap_or(&none);
                let perms = permissions::in_channel(&access.context, o);
                perms
                    .contains(wanted)
                    .then(|| (id, name.unwrap_or_default(), perms))
            })
            .collect();
        let parents: HashMap<ChannelId, Permissions> =
            readable.iter().map(|(id, _, p)| (*id, *p)).collect();
        let mut out: Readable = readable
            .into_iter()
            .map(|(id, name, _)| (id, name))
            .collect();
        out.extend(
            threads
                .into_iter()
                .filter(|(_, _, parent, private, member)| {
                    parents.get(parent).is_some_and(|p| {
                        !private || *member || permissions::has(*p, permissions::MANAGE_THREADS)
                    })
                })
                .map(|(id, name, ..)| (id, name)),
        );
        Ok(out)
    }

    /// The search itself, over `readable` channels only.
    async fn search_in(
        &self,
        readable: &Readable,
        q: &SearchQuery,
        page: Page,
    ) -> ChatResult<Vec<SearchHit>> {
        let limit = page.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ChatError::field("limit", "must be 1-50"));
        }
        // `in:` narrows the readable set; a channel that is not in it (hidden, another
        // server's, or no such channel) gets the same answer, so nothing leaks.
        let mut channels: Vec<i64> = if q.channels.is_empty() {
            readable.iter().map(|(id, _)| id.get()).collect()
        } else {
            let mut picked = Vec::new();
            for r in &q.channels {
                // A name may be shared by several channels: all of them.
                let before = picked.len();
                picked.extend(
                    readable
                        .iter()
                        .filter(|(id, name)| match r {
                            ChannelRef::Id(want) => id == want,
                            ChannelRef::Name(n) => {
                                !name.is_empty() && name.to_lowercase() == n.to_lowercase()
                            }
                        })
                        .map(|(id, _)| id.get()),
                );
                if picked.len() == before {
                    let what = match r {
                        ChannelRef::Id(id) => id.to_string(),
                        ChannelRef::Name(n) => n.clone(),
                    };
                    return Err(bad(format!("in: no channel {what} that you can read")));
                }
            }
            picked
        };
        channels.sort_unstable();
        channels.dedup();
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let from = self.resolve_users(&q.from).await?;
        let mentions = self.resolve_users(&q.mentions).await?;
        // Names that match nobody: nothing can match (and no error, so that usernames cannot be
        // probed any faster than by sending friend requests).
        if (!q.from.is_empty() && from.is_empty())
            || (!q.mentions.is_empty() && mentions.is_empty())
        {
            return Ok(Vec::new());
        }
        let text = q.text.trim();
        let tsquery = "(websearch_to_tsquery(message_search_config(), ";
        let mut b = sqlx::QueryBuilder::<sqlx::Postgres>::new("SELECT ");
        b.push(SELECT_MESSAGE_COLUMNS);
        if text.is_empty() {
            b.push(", NULL::text AS headline, NULL::text AS headline_simple");
        } else {
            // Marked twice: in the search language (stems: "run" marks "running") and in
            // `simple` (what that language drops: "the"); the ranges are merged.
            for (config, name) in [
                ("message_search_config()", "headline"),
                ("'simple'", "headline_simple"),
            ] {
                b.push(format!(", ts_headline({config}, m.content, "));
                b.push(tsquery);
                b.push_bind(text);
                b.push(") || websearch_to_tsquery('simple', ");
                b.push_bind(text);
                b.push(format!(
                    ")), 'HighlightAll=true, StartSel={MARK_START}, StopSel={MARK_END}') AS {name}"
                ));
            }
        }
        b.push(" FROM (SELECT m.id FROM messages m WHERE m.channel_id = ANY(");
        b.push_bind(channels);
        b.push(")");
        if !text.is_empty() {
            b.push(" AND m.search_vector @@ ");
            b.push(tsquery);
            b.push_bind(text);
            b.push(") || websearch_to_tsquery('simple', ");
            b.push_bind(text);
            b.push("))");
        }
        if !from.is_empty() {
            b.push(" AND m.author_id = ANY(");
            b.push_bind(from);
            b.push(")");
        }
        if !mentions.is_empty() {
            // Mentions are stored as a JSON array of id strings.
            let ids: Vec<String> = mentions.iter().map(i64::to_string).collect();
            // (The first test is the predicate of the partial index messages_mentions_idx.)
            b.push(" AND m.mentions <> '[]'::jsonb AND m.mentions ?| ");
            b.push_bind(ids);
        }
        for has in &q.has {
            b.push(match has {
                // Exactly the predicate of the partial index messages_links_idx.
                Has::Link => " AND m.content ~* 'https?://'",
                Has::File => " AND EXISTS (SELECT 1 FROM attachments a WHERE a.message_id = m.id)",
                Has::Image => {
                    " AND EXISTS (SELECT 1 FROM attachments a WHERE a.message_id = m.id
                         AND a.content_type LIKE 'image/%')"
                }
            });
        }
        match q.pinned {
            Some(true) => {
                b.push(" AND EXISTS (SELECT 1 FROM pins p WHERE p.message_id = m.id)");
            }
            Some(false) => {
                b.push(" AND NOT EXISTS (SELECT 1 FROM pins p WHERE p.message_id = m.id)");
            }
            None => {}
        }
        let upper = match (q.before, page.cursor) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(upper) = upper {
            b.push(" AND m.id < ");
            b.push_bind(upper);
        }
        if let Some(after) = q.after {
            b.push(" AND m.id > ");
            b.push_bind(after);
        }
        b.push(" ORDER BY m.id DESC LIMIT ");
        b.push_bind(limit);
        b.push(
            ") hit JOIN messages m ON m.id = hit.id JOIN channels c ON c.id = m.channel_id
             JOIN users u ON u.id = m.author_id ORDER BY m.id DESC",
        );
        let started = std::time::Instant::now();
        // A bounded statement: a query the indexes cannot narrow is cancelled, not left to
        // hold a connection. The statement is not kept prepared, so each search is planned
        // with its own words and filters (a generic plan cannot know how common a word is).
        let mut tx = self.pool.begin().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"
        )))
        .execute(&mut *tx)
        .await?;
        let rows: Vec<HitRow> = match b
            .build_query_as::<HitRow>()
            .persistent(false)
            .fetch_all(&mut *tx)
            .await
        {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("57014") => {
                return Err(ChatError::Refused(
                    "this search took too long; narrow it with more words or filters".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        tx.commit().await?;
        crate::record_query("search", started);
        Ok(rows
            .into_iter()
            .map(|r| {
                let message = r.message.into_message(&self.file_urls);
                let highlights = merge(
                    [r.headline, r.headline_simple]
                        .iter()
                        .flatten()
                        .flat_map(|h| highlights(&message.content, h))
                        .collect(),
                );
                SearchHit {
                    message,
                    highlights,
                }
            })
            .collect())
    }

    /// Ids of the users named (by id or username); unknown ones are left out.
    async fn resolve_users(&self, refs: &[UserRef]) -> ChatResult<Vec<i64>> {
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids: Vec<i64> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for r in refs {
            match r {
                UserRef::Id(id) => ids.push(id.get()),
                UserRef::Name(n) => names.push(n.to_lowercase()),
            }
        }
        if !names.is_empty() {
            let found: Vec<i64> =
                sqlx::query_scalar("SELECT id FROM users WHERE lower(username) = ANY($1)")
                    .bind(names)
                    .fetch_all(&self.pool)
                    .await?;
            ids.extend(found);
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_text_are_told_apart() {
        let q = SearchQuery::parse(
            r#"from:alice HAS:image in:"release notes" deploy "it failed" http://x.test 12:30"#,
        )
        .unwrap();
        assert_eq!(q.from, vec![UserRef::Name("alice".into())]);
        assert_eq!(q.has, vec![Has::Image]);
        assert_eq!(q.channels, vec![ChannelRef::Name("release notes".into())]);
        assert_eq!(q.text, r#"deploy "it failed" http://x.test 12:30"#);
    }

    #[test]
    fn ids_and_mentions_parse() {
        let q =
            SearchQuery::parse("from:<@42> mentions:<@!7> in:<#9> in:#general pinned:yes").unwrap();
        assert_eq!(q.from, vec![UserRef::Id(UserId::new(Snowflake(42)))]);
        assert_eq!(q.mentions, vec![UserRef::Id(UserId::new(Snowflake(7)))]);
        assert_eq!(
            q.channels,
            vec![
                ChannelRef::Id(ChannelId::new(Snowflake(9))),
                ChannelRef::Name("general".into())
            ]
        );
        assert_eq!(q.pinned, Some(true));
        assert!(q.text.is_empty());
    }

    #[test]
    fn dates_become_id_bounds() {
        let q = SearchQuery::parse("before:2026-03-02 after:2026-03-01 x").unwrap();
        let day = |d: &str| {
            NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_millis()
        };
        let before = q.before.unwrap();
        let after = q.after.unwrap();
        // Everything sent on 2026-03-01 lies strictly between the two bounds, nothing else.
        assert_eq!(before, id_at(day("2026-03-02")));
        assert_eq!(after.get() + 1, id_at(day("2026-03-02")).get());
        // A date before the epoch is the smallest id.
        assert_eq!(
            SearchQuery::parse("before:2020-01-01")
                .unwrap()
                .before
                .unwrap()
                .get(),
            0
        );
    }

    #[test]
    fn bad_input_is_refused_by_field() {
        for q in [
            "",
            "   ",
            "has:video",
            "from:",
            "pinned:maybe",
            "before:yesterday",
            "before:99999999999999999999999",
            "in:<#x>",
            "from:<@abc>",
            "from:a",
            "a\0b",
        ] {
            match SearchQuery::parse(q) {
                Err(ChatError::Validation(f)) => assert!(f.contains_key("q"), "{q:?}: {f:?}"),
                other => panic!("{q:?} gave {other:?}"),
            }
        }
        assert!(SearchQuery::parse(&"x".repeat(MAX_QUERY_CHARS)).is_ok());
        assert!(SearchQuery::parse(&"x".repeat(MAX_QUERY_CHARS + 1)).is_err());
        assert!(SearchQuery::parse(&"has:link ".repeat(MAX_FILTERS + 1)).is_err());
    }

    #[test]
    fn unknown_keys_are_text() {
        let q = SearchQuery::parse("note:this from:bob").unwrap();
        assert_eq!(q.text, "note:this");
    }

    #[test]
    fn highlights_are_character_ranges() {
        let content = "héllo deploy wörld deploy";
        let marked = "héllo \u{E000}deploy\u{E001} wörld \u{E000}deploy\u{E001}";
        assert_eq!(
            highlights(content, marked),
            vec![
                Highlight { start: 6, end: 12 },
                Highlight { start: 19, end: 25 }
            ]
        );
        // Not the content with marks: nothing rather than wrong ranges.
        assert!(highlights(content, "other").is_empty());
        assert!(highlights("a \u{E000} b", "a \u{E000} b").is_empty());
        let h = |start, end| Highlight { start, end };
        assert_eq!(
            merge(vec![h(6, 12), h(0, 3), h(6, 12), h(10, 14), h(20, 22)]),
            vec![h(0, 3), h(6, 14), h(20, 22)]
        );
    }
}
