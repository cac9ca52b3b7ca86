//! The link preview worker (docs/link-previews.md). Handlers hand it a message after storing
//! (or editing) it; the worker previews the message's links — from the cache, or fetched by
//! `confab-previews` — stores the embeds and dispatches MESSAGE_UPDATE to the channel.
//!
//! Concurrency is bounded twice: a queue of at most [`QUEUE`] messages (a full queue drops the
//! message's previews, counted, rather than slowing senders) and at most
//! `--link-preview-concurrency` messages worked on at once. Per host, one fetch at a time and
//! [`HOST_GAP`] between fetches, so a channel full of links to one site does not hammer it; a
//! job that waited re-reads the cache, so a burst of one link is fetched once.

use crate::gateway::events::Event;
use crate::state::AppState;
use confab_chat::link_previews::{NewPreview, NewPreviewImage, SUPPRESS_EMBEDS};
use confab_chat::model::{Embed, Message};
use confab_chat::MessageId;
use confab_previews::{links, Previewer};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use url::Url;

/// Messages waiting for previews, at most.
pub const QUEUE: usize = 1024;
/// Least time between two fetches from one host.
pub const HOST_GAP: Duration = Duration::from_millis(500);
/// How long a fetched preview is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long "nothing to show" (or a failed fetch) is remembered.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(3600);
/// The `result` label values of `confab_link_preview_fetches_total`.
pub const FETCH_RESULTS: &[&str] = &["ok", "empty", "failed", "refused"];

/// A message to preview: its id and the content the previews are for.
#[derive(Debug)]
struct Job {
    message_id: MessageId,
    content: String,
}

/// The handlers' side: queues messages for the worker. Without link previews (`--link-previews
/// false`) it queues nothing.
#[derive(Debug, Clone, Default)]
pub struct LinkPreviews {
    tx: Option<mpsc::Sender<Job>>,
}

/// The worker's side, until it is started.
pub struct Worker {
    rx: mpsc::Receiver<Job>,
    previewer: Previewer,
    concurrency: usize,
}

impl LinkPreviews {
    /// The queue and its worker, per the configuration (`None`: previews are off).
    pub fn new(config: &crate::config::Config) -> (Self, Option<Worker>) {
        if !config.link_previews {
            return (LinkPreviews { tx: None }, None);
        }
        if !config.link_preview_allow_cidrs.is_empty() {
            tracing::warn!(
                cidrs = ?config.link_preview_allow_cidrs,
                "link previews may fetch from these networks despite the SSRF rules (--link-preview-allow-cidrs is for tests only)"
            );
        }
        let fetcher = match confab_previews::Fetcher::new(
            confab_previews::Limits::default(),
            confab_previews::Allowlist::new(config.link_preview_allow_cidrs.clone()),
        ) {
            Ok(f) => f,
            Err(e) => {
                // Chat works without previews: say so and carry on.
                tracing::error!(error = %e, "link previews are off: no TLS configuration");
                return (LinkPreviews { tx: None }, None);
            }
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        (
            LinkPreviews { tx: Some(tx) },
            Some(Worker {
                rx,
                previewer: Previewer::new(fetcher),
                concurrency: config.link_preview_concurrency.max(1),
            }),
        )
    }

    /// Queues `message` for previews if it may get some (links, not suppressed) or may have to
    /// lose some (an edit removed its links).
    pub fn enqueue(&self, message: &Message) {
        let Some(tx) = &self.tx else {
            return;
        };
        if message.flags & SUPPRESS_EMBEDS != 0 {
            return;
        }
        if message.embeds.is_empty() && links::extract(&message.content).is_empty() {
            return;
        }
        let job = Job {
            message_id: message.id,
            content: message.content.clone(),
        };
        if tx.try_send(job).is_err() {
            metrics::counter!("confab_link_preview_jobs_dropped_total").increment(1);
        }
    }
}

/// After an edit: the embeds of links still in the message (the worker adds the new ones).
pub fn kept_embeds(message: &Message) -> Vec<Embed> {
    let urls = links::extract(&message.content);
    message
        .embeds
        .iter()
        .filter(|e| urls.iter().any(|u| u.as_str() == e.url))
        .cloned()
        .collect()
}

impl Worker {
    /// Runs the worker until shutdown.
    pub fn spawn(self, state: AppState) {
        tokio::spawn(run(state, self));
    }
}

/// One lock per host, remembering when it was last fetched from.
type HostGates = Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Instant>>>>>>;

async fn run(state: AppState, mut worker: Worker) {
    let permits = Arc::new(Semaphore::new(worker.concurrency));
    let hosts: HostGates = Default::default();
    let previewer = Arc::new(worker.previewer);
    loop {
        let job = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            job = worker.rx.recv() => match job {
                Some(job) => job,
                None => return,
            },
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (state, previewer, hosts) = (state.clone(), previewer.clone(), hosts.clone());
        tokio::spawn(async move {
            let _permit = permit;
            process(&state, &previewer, &hosts, job).await;
        });
    }
}

async fn process(state: &AppState, previewer: &Previewer, hosts: &HostGates, job: Job) {
    let mut embeds = Vec::new();
    for url in links::extract(&job.content) {
        if let Some(embed) = preview(state, previewer, hosts, &url).await {
            embeds.push(embed);
        }
    }
    match state
        .chat
        .set_message_embeds(job.message_id, &job.content, &embeds)
        .await
    {
        Ok(Some(message)) => {
            let target = state
                .channel_target(message.server_id, message.channel_id, None)
                .await;
            state.emit(target, Event::MessageUpdate, &message);
        }
        // Unchanged, edited since, suppressed or deleted: nothing to tell.
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, message_id = %job.message_id, "storing link previews"),
    }
}

/// The embed for one link, from the cache or fetched (then cached, found or not).
async fn preview(
    state: &AppState,
    previewer: &Previewer,
    hosts: &HostGates,
    url: &Url,
) -> Option<Embed> {
    match state
        .chat
        .cached_link_preview(url.as_str(), CACHE_TTL, NEGATIVE_TTL)
        .await
    {
        Ok(Some(hit)) => {
            metrics::counter!("confab_link_preview_cache_hits_total").increment(1);
            return hit.embed;
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "reading the link preview cache");
            return None;
        }
    }
    let gate = gate(hosts, url.host_str().unwrap_or_default());
    let mut last = gate.lock().await;
    if let Some(at) = *last {
        tokio::time::sleep_until((at + HOST_GAP).into()).await;
    }
    // Another job may have fetched it while this one waited.
    if let Ok(Some(hit)) = state
        .chat
        .cached_link_preview(url.as_str(), CACHE_TTL, NEGATIVE_TTL)
        .await
    {
        metrics::counter!("confab_link_preview_cache_hits_total").increment(1);
        return hit.embed;
    }
    let fetched = previewer.preview(url).await;
    *last = Some(Instant::now());
    drop(last);
    let result = match &fetched {
        Ok(Some(_)) => "ok",
        Ok(None) => "empty",
        Err(confab_previews::FetchError::Blocked { .. })
        | Err(confab_previews::FetchError::Port(_))
        | Err(confab_previews::FetchError::Scheme)
        | Err(confab_previews::FetchError::Credentials) => "refused",
        Err(_) => "failed",
    };
    metrics::counter!("confab_link_preview_fetches_total", "result" => result).increment(1);
    if let Err(e) = &fetched {
        tracing::debug!(url = %url, error = %e, "no link preview");
    }
    let found = fetched.ok().flatten();
    let new = found.as_ref().map(|p| NewPreview {
        title: p.title.as_deref(),
        description: p.description.as_deref(),
        site_name: p.site_name.as_deref(),
        image: p.image.as_ref().map(|i| NewPreviewImage {
            content_type: i.content_type,
            width: i.width,
            height: i.height,
            bytes: &i.bytes,
        }),
    });
    match state.chat.store_link_preview(url.as_str(), new).await {
        Ok(embed) => embed,
        Err(e) => {
            tracing::warn!(error = %e, "storing a link preview");
            None
        }
    }
}

/// The host's gate; gates nobody holds and that were last used long ago are forgotten.
fn gate(hosts: &HostGates, host: &str) -> Arc<tokio::sync::Mutex<Option<Instant>>> {
    let mut map = hosts.lock();
    if map.len() > 1024 {
        map.retain(|_, g| {
            Arc::strong_count(g) > 1
                || g.try_lock()
                    .map(|t| t.is_some_and(|at| at.elapsed() < HOST_GAP))
                    .unwrap_or(true)
        });
    }
    map.entry(host.to_ascii_lowercase()).or_default().clone()
}
