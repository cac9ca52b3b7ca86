//! Web Push notifications (docs/push.md). Handlers hand new messages to [`Push`]; a
//! background worker decides who is notified (`confab_chat::notifications::recipients`,
//! then presence and focus here), encrypts a small JSON payload for each of their browsers
//! (RFC 8291, [`ece`]) and POSTs it to the browser's push service with a VAPID token
//! ([`vapid`]). Nothing here runs in a request: a full queue drops notifications (counted)
//! rather than slowing senders.

pub mod ece;
pub mod vapid;

use crate::state::AppState;
use axum::http::{HeaderMap, HeaderValue};
use chrono::Utc;
use confab_chat::model::Message;
use confab_chat::notifications::recipients::Reason;
use confab_chat::notifications::subscriptions::PushKeys;
use confab_chat::{Chat, UserId};
use serde_json::json;
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};
use url::Url;

/// Notifications waiting for the worker, at most.
pub const QUEUE: usize = 4096;
/// Jobs (a message's notifications, or a test) worked on at once.
const CONCURRENCY: usize = 8;
/// Characters of the message shown in a notification.
pub const BODY_CHARS: usize = 180;
/// How long a push service keeps a notification for an offline browser (the `TTL` header):
/// a chat notification a day late is noise.
pub const TTL_SECS: u32 = 4 * 3600;
/// The `result` label values of `confab_push_sent_total`: accepted by the push service;
/// the subscription was gone (404/410, removed); any other failure; dropped from a full queue.
pub const RESULTS: &[&str] = &["sent", "gone", "failed", "dropped"];
/// Longest endpoint URL accepted.
pub const MAX_ENDPOINT: usize = 2048;

enum Job {
    Message(Box<Message>),
    Test(UserId),
}

/// The handlers' side: the queue and the public key.
#[derive(Clone)]
pub struct Push {
    tx: mpsc::Sender<Job>,
    vapid: Arc<vapid::Vapid>,
    allow_loopback: bool,
}

/// The worker, until it is started.
pub struct Worker {
    rx: mpsc::Receiver<Job>,
    fetcher: confab_previews::Fetcher,
}

impl Push {
    /// Loads (or makes, on the deployment's first start) the VAPID key and sets up the queue.
    pub async fn new(
        chat: &Chat,
        config: &crate::config::Config,
    ) -> anyhow::Result<(Push, Worker)> {
        let pkcs8 = chat.vapid_private_key(vapid::Vapid::generate_pkcs8).await?;
        let subject = config
            .push_contact
            .clone()
            .or_else(|| config.public_url.clone())
            .unwrap_or_else(|| "mailto:admin@localhost".into());
        let vapid = Arc::new(vapid::Vapid::from_pkcs8(&pkcs8, subject)?);
        let allow = if config.push_allow_loopback {
            tracing::warn!("push endpoints on loopback over http are accepted (--push-allow-loopback is for tests only)");
            vec!["127.0.0.0/8".parse()?, "::1/128".parse()?]
        } else {
            Vec::new()
        };
        let fetcher = confab_previews::Fetcher::new(
            confab_previews::Limits::default(),
            confab_previews::Allowlist::new(allow),
        )
        .map_err(|e| anyhow::anyhow!("push: TLS configuration: {e}"))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        Ok((
            Push {
                tx,
                vapid,
                allow_loopback: config.push_allow_loopback,
            },
            Worker { rx, fetcher },
        ))
    }

    /// The application server key, base64url (for `pushManager.subscribe`).
    pub fn public_key(&self) -> &str {
        self.vapid.public_key()
    }

    /// Queues a new message's notifications.
    pub fn message_created(&self, message: &Message) {
        self.queue(Job::Message(Box::new(message.clone())));
    }

    /// Queues a test notification to every browser of the user.
    pub fn test(&self, user: UserId) {
        self.queue(Job::Test(user));
    }

    fn queue(&self, job: Job) {
        if self.tx.try_send(job).is_err() {
            metrics::counter!("confab_push_sent_total", "result" => "dropped").increment(1);
        }
    }

    /// Whether an endpoint may be subscribed: https (or, under the test flag, http to a
    /// loopback address), no credentials, not too long. Where it resolves is checked again
    /// at each delivery (private networks are refused then).
    pub fn check_endpoint(&self, endpoint: &str) -> Result<Url, &'static str> {
        if endpoint.len() > MAX_ENDPOINT {
            return Err("at most 2048 characters");
        }
        let url = Url::parse(endpoint).map_err(|_| "not a URL")?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("no credentials in the URL");
        }
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => return Err("no host"),
        };
        match url.scheme() {
            "https" => Ok(url),
            "http" if self.allow_loopback && loopback => Ok(url),
            _ => Err("must be an https URL"),
        }
    }
}

impl Worker {
    pub fn spawn(self, state: AppState) {
        let Worker { mut rx, fetcher } = self;
        let fetcher = Arc::new(fetcher);
        let slots = Arc::new(Semaphore::new(CONCURRENCY));
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let state = state.clone();
                let fetcher = fetcher.clone();
                tokio::spawn(async move {
                    let r = match job {
                        Job::Message(m) => notify_message(&state, &fetcher, &m).await,
                        Job::Test(user) => notify_test(&state, &fetcher, user).await,
                    };
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "push notifications failed");
                    }
                    drop(permit);
                });
            }
        });
    }
}

/// Whether the user should get a push now: not in do-not-disturb, and no client of theirs is
/// in front of them (docs/push.md: a focused gateway session already shows the message).
fn wants_push(state: &AppState, user: UserId) -> bool {
    let p = state.hub.push_presence(user);
    !p.dnd && !p.focused
}

async fn notify_message(
    state: &AppState,
    fetcher: &confab_previews::Fetcher,
    m: &Message,
) -> anyhow::Result<()> {
    let recipients = state.chat.push_recipients(m).await?;
    let recipients: Vec<(UserId, Reason)> = recipients
        .into_iter()
        .filter(|(u, _)| wants_push(state, *u))
        .collect();
    if recipients.is_empty() {
        return Ok(());
    }
    let users: Vec<UserId> = recipients.iter().map(|(u, _)| *u).collect();
    let keys = state.chat.push_keys_of(&users).await?;
    let (channel_name, server_name) = state.chat.push_place(m.channel_id).await?;
    let author = m
        .author
        .display_name
        .clone()
        .unwrap_or_else(|| m.author.username.clone());
    let title = match (&server_name, &channel_name) {
        (Some(server), Some(channel)) => format!("{author} (#{channel}, {server})"),
        _ => author,
    };
    let body = preview(m);
    let place = m
        .server_id
        .map_or_else(|| "@me".to_string(), |s| s.to_string());
    for k in keys {
        let Some((_, reason)) = recipients.iter().find(|(u, _)| *u == k.user_id) else {
            continue;
        };
        let payload = json!({
            "type": reason.as_str(),
            "title": title,
            "body": body,
            "url": format!("/channels/{place}/{}", m.channel_id),
            "server_id": m.server_id,
            "channel_id": m.channel_id,
            "message_id": m.id,
        });
        let urgent = !matches!(reason, Reason::Message);
        deliver(state, fetcher, &k, &payload, urgent).await;
    }
    Ok(())
}

async fn notify_test(
    state: &AppState,
    fetcher: &confab_previews::Fetcher,
    user: UserId,
) -> anyhow::Result<()> {
    let payload = json!({
        "type": "test",
        "title": "Confab",
        "body": "Notifications work on this device.",
        "url": "/",
    });
    for k in state.chat.push_keys_of(&[user]).await? {
        deliver(state, fetcher, &k, &payload, true).await;
    }
    Ok(())
}

/// The notification's text: the message, shortened; a file-only message says so.
fn preview(m: &Message) -> String {
    let text = m.content.trim();
    if text.is_empty() {
        return match m.attachments.len() {
            0 => String::new(),
            1 => "sent a file".into(),
            n => format!("sent {n} files"),
        };
    }
    let mut out: String = text.chars().take(BODY_CHARS).collect();
    if text.chars().count() > BODY_CHARS {
        out.push('…');
    }
    out
}

/// Encrypts and sends one notification; counts the result; forgets a gone subscription.
async fn deliver(
    state: &AppState,
    fetcher: &confab_previews::Fetcher,
    k: &PushKeys,
    payload: &serde_json::Value,
    urgent: bool,
) {
    let result = match send(state, fetcher, k, payload, urgent).await {
        Ok(status) if (200..300).contains(&status) => "sent",
        Ok(404 | 410) => {
            if let Err(e) = state.chat.remove_gone_push_subscription(k.id).await {
                tracing::warn!(error = %e, "removing a gone push subscription");
            }
            "gone"
        }
        Ok(status) => {
            tracing::debug!(status, "push service refused a notification");
            "failed"
        }
        Err(e) => {
            tracing::debug!(error = %e, "push delivery failed");
            "failed"
        }
    };
    metrics::counter!("confab_push_sent_total", "result" => result).increment(1);
}

async fn send(
    state: &AppState,
    fetcher: &confab_previews::Fetcher,
    k: &PushKeys,
    payload: &serde_json::Value,
    urgent: bool,
) -> anyhow::Result<u16> {
    let url = Url::parse(&k.endpoint)?;
    let body = ece::encrypt(&k.p256dh, &k.auth, payload.to_string().as_bytes())?;
    let mut headers = HeaderMap::new();
    headers.insert("content-encoding", HeaderValue::from_static("aes128gcm"));
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert("ttl", HeaderValue::from(TTL_SECS));
    headers.insert(
        "urgency",
        HeaderValue::from_static(if urgent { "high" } else { "normal" }),
    );
    headers.insert(
        "authorization",
        HeaderValue::from_str(&state.push.vapid.authorization(&url, Utc::now().timestamp()))?,
    );
    Ok(fetcher.post(&url, headers, body).await?)
}
