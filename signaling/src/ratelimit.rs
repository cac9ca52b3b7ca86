//! Rate limits: token buckets per (bucket, key) where the key is the user, or the client IP
//! before login. Every limited response carries `X-RateLimit-Limit`, `-Remaining`,
//! `-Reset-After` and `-Bucket`; a refusal is 429 with `Retry-After`. `--rate-limit-scale`
//! multiplies every bucket's capacity and refill rate.
//!
//! In a cluster every node keeps its own buckets and tells the others, every `SHARE_EVERY`,
//! how many requests it admitted per (bucket, key) (`BusEvent::RateUsage`); each node takes
//! those from its own buckets. A client that spreads its requests over several nodes thus
//! gets one budget, give or take what it spends within one sharing interval.
//!
//! Hand-written rather than tower_governor: we need named buckets keyed by user *or* IP and the
//! Discord-style headers; the whole thing is a map of two floats per key.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use confab_chat::UserId;
use dashmap::DashMap;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A bucket: `capacity` requests at once, refilled over `period`.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    pub name: &'static str,
    pub capacity: f64,
    pub period: Duration,
}

/// Login, registration and refresh, per IP.
pub const AUTH: Bucket = Bucket {
    name: "auth",
    capacity: 20.0,
    period: Duration::from_secs(60),
};
/// Sending messages, per user.
pub const MESSAGES: Bucket = Bucket {
    name: "messages",
    capacity: 10.0,
    period: Duration::from_secs(5),
};
/// Typing notifications, per user.
pub const TYPING: Bucket = Bucket {
    name: "typing",
    capacity: 10.0,
    period: Duration::from_secs(10),
};
/// Soundboard plays, per user: one every 2 s, three in a burst.
pub const SOUNDBOARD: Bucket = Bucket {
    name: "soundboard",
    capacity: 3.0,
    period: Duration::from_secs(6),
};
/// Message search, per user: one every half second, ten in a burst (a search costs more than
/// a history page).
pub const SEARCH: Bucket = Bucket {
    name: "search",
    capacity: 10.0,
    period: Duration::from_secs(5),
};
/// Posts through one incoming webhook, per webhook: five per 2 s (as Discord's).
pub const WEBHOOKS: Bucket = Bucket {
    name: "webhooks",
    capacity: 5.0,
    period: Duration::from_secs(2),
};
/// Emoji and sticker uploads, per user: ten a minute (each is decoded and stored).
pub const EXPRESSIONS: Bucket = Bucket {
    name: "expressions",
    capacity: 10.0,
    period: Duration::from_secs(60),
};
/// Everything else, per user (or IP).
pub const API: Bucket = Bucket {
    name: "api",
    capacity: 100.0,
    period: Duration::from_secs(5),
};
/// Everything else for a bot, per bot: 50 requests a second, as Discord's global bot limit.
/// A bot's message sends are limited per channel (`MESSAGES` keyed by bot and channel), so a
/// bot in many channels is not held to one person's pace.
pub const BOT_API: Bucket = Bucket {
    name: "bot",
    capacity: 250.0,
    period: Duration::from_secs(5),
};
/// Push subscribes and test notifications, per user: a browser subscribes once, so ten a
/// minute is generous, and each test notification costs a request to a push service.
pub const PUSH: Bucket = Bucket {
    name: "push",
    capacity: 10.0,
    period: Duration::from_secs(60),
};
/// Gateway IDENTIFY/RESUME, per IP.
pub const IDENTIFY: Bucket = Bucket {
    name: "identify",
    capacity: 30.0,
    period: Duration::from_secs(60),
};

#[derive(Debug, Clone, Copy)]
struct State_ {
    tokens: f64,
    updated: Instant,
    /// Refusals since the last allowed request: a client that keeps sending while refused.
    strikes: u32,
}

pub struct RateLimiter {
    scale: f64,
    buckets: DashMap<(&'static str, String), State_>,
    /// Admitted requests not yet told to the other nodes; None on a single node.
    usage: Option<parking_lot::Mutex<HashMap<(&'static str, String), u32>>>,
    /// Bot tokens (SHA-256) that authenticated here, and their bot: a request carrying one is
    /// limited as that bot without asking the database first. A token not (yet) known here is
    /// limited by its client IP, like any request without a valid token, so made-up tokens
    /// cannot mint fresh buckets. A stale entry (the token was reset) only keys a request that
    /// authentication then refuses.
    known_bots: DashMap<[u8; 32], UserId>,
}

/// Every bucket, to find one by the name another node sent.
pub const ALL: [Bucket; 11] = [
    AUTH,
    MESSAGES,
    TYPING,
    SOUNDBOARD,
    SEARCH,
    API,
    IDENTIFY,
    WEBHOOKS,
    BOT_API,
    PUSH,
    EXPRESSIONS,
];

/// Most bot tokens remembered for keying (`RateLimiter::remember_bot`).
const KNOWN_BOTS_MAX: usize = 10_000;

/// How often a cluster node tells the others what its buckets admitted.
pub const SHARE_EVERY: Duration = Duration::from_millis(100);

/// The outcome of one check.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the bucket is full again (or, when refused, until one request fits).
    pub reset_after: f64,
    pub bucket: &'static str,
    /// Refusals in a row for this key, this one included (0 when allowed).
    pub strikes: u32,
}

/// Refusals in a row after which further refusals are answered slowly.
pub const TARPIT_AFTER: u32 = 5;
/// Longest a refusal is held back.
pub const TARPIT_MAX: Duration = Duration::from_secs(1);

impl RateLimiter {
    pub fn new(scale: f64) -> Self {
        Self {
            scale,
            buckets: DashMap::new(),
            usage: None,
            known_bots: DashMap::new(),
        }
    }

    /// A limiter whose admissions are shared with other nodes (`take_usage`, `consume`).
    pub fn shared(scale: f64) -> Self {
        Self {
            usage: Some(Default::default()),
            ..Self::new(scale)
        }
    }

    /// What this node admitted since the last call, per (bucket name, key).
    pub fn take_usage(&self) -> Vec<(String, String, u32)> {
        let Some(usage) = &self.usage else {
            return Vec::new();
        };
        std::mem::take(&mut *usage.lock())
            .into_iter()
            .map(|((bucket, key), n)| (bucket.to_string(), key, n))
            .collect()
    }

    /// Takes `n` requests that another node admitted from this node's bucket for `key`.
    /// A bucket goes at most one capacity into debt, so a burst elsewhere cannot lock a key
    /// out for longer than one refill period.
    pub fn consume(&self, bucket: &str, key: &str, n: u32) {
        let Some(bucket) = ALL.iter().find(|b| b.name == bucket) else {
            return;
        };
        let (capacity, _) = self.rates(*bucket);
        let mut st = self.refilled(*bucket, key);
        st.tokens = (st.tokens - f64::from(n)).max(-capacity);
    }

    /// The key's bucket state, created full or refilled for the time since its last use.
    fn refilled(
        &self,
        bucket: Bucket,
        key: &str,
    ) -> dashmap::mapref::one::RefMut<'_, (&'static str, String), State_> {
        let (capacity, rate) = self.rates(bucket);
        let now = Instant::now();
        let mut entry = self
            .buckets
            .entry((bucket.name, key.to_string()))
            .or_insert(State_ {
                tokens: capacity,
                updated: now,
                strikes: 0,
            });
        let st = entry.value_mut();
        st.tokens = (st.tokens + now.duration_since(st.updated).as_secs_f64() * rate).min(capacity);
        st.updated = now;
        entry
    }

    fn rates(&self, bucket: Bucket) -> (f64, f64) {
        let capacity = (bucket.capacity * self.scale).max(1.0);
        (capacity, capacity / bucket.period.as_secs_f64())
    }

    pub fn check(&self, bucket: Bucket, key: &str) -> Decision {
        let (capacity, rate) = self.rates(bucket); // rate: tokens per second
        let mut entry = self.refilled(bucket, key);
        let st = entry.value_mut();
        let allowed = st.tokens >= 1.0;
        if allowed {
            st.tokens -= 1.0;
            st.strikes = 0;
            if let Some(usage) = &self.usage {
                *usage
                    .lock()
                    .entry((bucket.name, key.to_string()))
                    .or_default() += 1;
            }
        } else {
            st.strikes = st.strikes.saturating_add(1);
        }
        let reset_after = if allowed {
            (capacity - st.tokens) / rate
        } else {
            (1.0 - st.tokens) / rate
        };
        Decision {
            allowed,
            limit: capacity as u64,
            remaining: st.tokens.floor().max(0.0) as u64,
            reset_after,
            bucket: bucket.name,
            strikes: if allowed { 0 } else { st.strikes },
        }
    }

    /// `token` authenticated as `bot`: its further requests are limited per bot.
    pub fn remember_bot(&self, token: &str, bot: UserId) {
        if self.known_bots.len() >= KNOWN_BOTS_MAX {
            self.known_bots.clear();
        }
        self.known_bots.insert(token_digest(token), bot);
    }

    fn bot_of(&self, token: &str) -> Option<UserId> {
        self.known_bots.get(&token_digest(token)).map(|b| *b)
    }

    /// Forgets full buckets; called periodically so the map stays small.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.buckets
            .retain(|_, st| now.duration_since(st.updated) < Duration::from_secs(600));
    }
}

fn apply_headers(resp: &mut Response, d: &Decision) {
    let h = resp.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    set("x-ratelimit-limit", d.limit.to_string());
    set("x-ratelimit-remaining", d.remaining.to_string());
    set("x-ratelimit-reset-after", format!("{:.3}", d.reset_after));
    set("x-ratelimit-bucket", d.bucket.to_string());
}

fn token_digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Who a request is limited as.
#[derive(Clone)]
struct Key {
    key: String,
    /// The key is a bot's: `api` becomes the bot bucket, `messages` is per channel.
    bot: bool,
}

/// The token's user, verified once per request: nested buckets (the general one around
/// `messages` or `typing`) share the answer, so a flood of refused requests costs one
/// signature check each, not one per bucket.
#[derive(Clone, Copy)]
struct TokenUser(Option<(UserId, bool)>);

/// The key for a request: the token's user (or bot) when it carries a valid one, else the
/// client's IP (`crate::proxy`).
fn key_of(state: &AppState, req: &mut Request, per_ip: bool) -> Key {
    if !per_ip {
        let user = match req.extensions().get::<TokenUser>() {
            Some(u) => u.0,
            None => {
                let credentials = req
                    .headers()
                    .get(axum::http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split_once(' '));
                let user = credentials.and_then(|(scheme, token)| {
                    let token = token.trim();
                    if scheme.eq_ignore_ascii_case("bot") {
                        state.limiter.bot_of(token).map(|b| (b, true))
                    } else {
                        state.tokens.verify(token).map(|(user, _)| (user, false))
                    }
                });
                req.extensions_mut().insert(TokenUser(user));
                user
            }
        };
        if let Some((user, bot)) = user {
            return Key {
                key: format!("u{user}"),
                bot,
            };
        }
    }
    let ip = crate::proxy::ClientIp::of(
        req.extensions(),
        req.headers(),
        &state.config.trusted_proxies,
    )
    .map(|c| c.0.to_string())
    .unwrap_or_else(|| "unknown".into());
    Key {
        key: format!("ip{ip}"),
        bot: false,
    }
}

/// The path segment after `after` (at most 24 characters: an id), or "".
fn segment_after(req: &Request, after: &str) -> String {
    req.uri()
        .path()
        .split('/')
        .skip_while(|s| *s != after)
        .nth(1)
        .unwrap_or("")
        .chars()
        .take(24)
        .collect()
}

async fn limit(
    state: AppState,
    bucket: Bucket,
    per_ip: bool,
    mut req: Request,
    next: Next,
) -> Response {
    let Key { mut key, bot } = key_of(&state, &mut req, per_ip);
    let bucket = match bucket.name {
        "api" if bot => BOT_API,
        "messages" if bot => {
            key = format!("{key}:c{}", segment_after(&req, "channels"));
            bucket
        }
        _ => bucket,
    };
    let d = state.limiter.check(bucket, &key);
    if !d.allowed {
        metrics::counter!("confab_http_rate_limited_total", "bucket" => bucket.name).increment(1);
        let mut resp = ApiError::RateLimited {
            retry_after: d.reset_after,
        }
        .into_response();
        apply_headers(&mut resp, &d);
        // A client that ignores Retry-After and keeps sending gets its refusals late (until
        // its bucket would admit it, at most 1 s): a flooder with N requests in flight then
        // costs N refusals per second instead of as many as the CPU can answer, and the
        // people sharing the server keep their latency. Well-behaved clients never see it.
        if d.strikes > TARPIT_AFTER {
            metrics::counter!("confab_http_rate_limit_tarpitted_total").increment(1);
            tokio::time::sleep(Duration::from_secs_f64(d.reset_after).min(TARPIT_MAX)).await;
        }
        return resp;
    }
    let mut resp = next.run(req).await;
    // A route-specific bucket inside this one (messages, typing) has already described
    // itself — and when it refused, its headers are the ones that explain the 429.
    if !resp.headers().contains_key("x-ratelimit-bucket") {
        apply_headers(&mut resp, &d);
    }
    resp
}

pub async fn auth_bucket(State(state): State<AppState>, req: Request, next: Next) -> Response {
    limit(state, AUTH, true, req, next).await
}

pub async fn api_bucket(State(state): State<AppState>, req: Request, next: Next) -> Response {
    limit(state, API, false, req, next).await
}

pub async fn message_bucket(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Only sending is limited by this bucket; reading history uses the general one.
    if req.method() == axum::http::Method::POST {
        limit(state, MESSAGES, false, req, next).await
    } else {
        next.run(req).await
    }
}

pub async fn soundboard_bucket(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    limit(state, SOUNDBOARD, false, req, next).await
}

/// Emoji and sticker uploads (POST); listing them uses the general bucket.
pub async fn expressions_bucket(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() == axum::http::Method::POST {
        limit(state, EXPRESSIONS, false, req, next).await
    } else {
        next.run(req).await
    }
}

pub async fn search_bucket(State(state): State<AppState>, req: Request, next: Next) -> Response {
    limit(state, SEARCH, false, req, next).await
}

/// Webhook posts, keyed by the webhook named in the path (whoever sends them: the token in
/// the URL is shared by everyone who posts).
pub async fn webhook_bucket(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let key = format!("wh{}", segment_after(&req, "webhooks"));
    let d = state.limiter.check(WEBHOOKS, &key);
    if !d.allowed {
        metrics::counter!("confab_http_rate_limited_total", "bucket" => WEBHOOKS.name).increment(1);
        let mut resp = ApiError::RateLimited {
            retry_after: d.reset_after,
        }
        .into_response();
        apply_headers(&mut resp, &d);
        return resp;
    }
    let mut resp = next.run(req).await;
    apply_headers(&mut resp, &d);
    resp
}

pub async fn push_bucket(State(state): State<AppState>, req: Request, next: Next) -> Response {
    limit(state, PUSH, false, req, next).await
}

pub async fn typing_bucket(State(state): State<AppState>, req: Request, next: Next) -> Response {
    limit(state, TYPING, false, req, next).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refuses_past_capacity_and_scales() {
        let rl = RateLimiter::new(1.0);
        let b = Bucket {
            name: "t",
            capacity: 3.0,
            period: Duration::from_secs(60),
        };
        for i in 0..3 {
            let d = rl.check(b, "k");
            assert!(d.allowed);
            assert_eq!(d.remaining, 2 - i);
        }
        let d = rl.check(b, "k");
        assert!(!d.allowed);
        assert!(
            d.reset_after > 10.0 && d.reset_after <= 20.0,
            "{}",
            d.reset_after
        );
        // Another key has its own bucket.
        assert!(rl.check(b, "other").allowed);
        let scaled = RateLimiter::new(10.0);
        for _ in 0..30 {
            assert!(scaled.check(b, "k").allowed);
        }
        assert!(!scaled.check(b, "k").allowed);
    }
}
