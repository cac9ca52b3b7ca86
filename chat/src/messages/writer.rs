//! Batched message writes (group commit). Under load many sends arrive at once; one statement
//! that checks permissions and inserts a whole batch costs about as much as one single-row
//! insert, so throughput grows with the batch instead of with commits per second. With no load
//! a batch is one message and nothing waits: a batch is cut from whatever is queued, never by
//! a timer.
//!
//! The statement inserts only messages the author may certainly send (owner or administrator;
//! or @everyone | roles grant VIEW_CHANNEL + SEND_MESSAGES, not timed out nor held back by raid
//! protection, and the channel has no overwrites; in a DM: a recipient, with no block between the two of a 1:1 DM) and whose
//! nonce is new. A message it did not insert comes back as `None`; the
//! caller then takes the slow path, which computes the exact permissions (overwrites included)
//! and inserts it, or finds the reason (404, 403, or the earlier message with that nonce).

use super::{MessageRow, SELECT_MESSAGE_COLUMNS};
use crate::files::FileUrls;
use crate::model::Message;
use crate::{permissions, ChannelId};
use crate::{ChatError, ChatResult, MessageId, UserId};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Most messages in one statement.
const MAX_BATCH: usize = 256;
/// Statements in flight at once (each holds one pool connection).
const MAX_IN_FLIGHT: usize = 4;

pub(crate) struct NewMessage {
    pub id: MessageId,
    pub channel_id: ChannelId,
    pub author: UserId,
    pub content: String,
    pub nonce: Option<String>,
}

type Reply = oneshot::Sender<ChatResult<Option<Message>>>;

pub(crate) struct MessageWriter {
    tx: mpsc::Sender<(NewMessage, Reply)>,
}

impl MessageWriter {
    /// Starts the writer task on the current runtime.
    pub fn spawn(pool: PgPool) -> Self {
        let (tx, rx) = mpsc::channel(8192);
        tokio::spawn(run(pool, rx));
        Self { tx }
    }

    /// Inserts the message if the author may send it and its nonce is new.
    pub async fn submit(&self, m: NewMessage) -> ChatResult<Option<Message>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((m, reply))
            .await
            .map_err(|_| ChatError::Internal(anyhow::anyhow!("message writer stopped")))?;
        rx.await
            .map_err(|_| ChatError::Internal(anyhow::anyhow!("message writer dropped a request")))?
    }
}

async fn run(pool: PgPool, mut rx: mpsc::Receiver<(NewMessage, Reply)>) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        // Waiting for a permit lets the queue grow: the next batch takes all of it.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(x) => batch.push(x),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            let _permit = permit;
            write_batch(&pool, batch).await;
        });
    }
}

async fn write_batch(pool: &PgPool, batch: Vec<(NewMessage, Reply)>) {
    metrics::histogram!("confab_message_write_batch_size").record(batch.len() as f64);
    let messages: Vec<&NewMessage> = batch.iter().map(|(m, _)| m).collect();
    match insert(pool, &messages).await {
        Ok(rows) => reply_all(batch, rows),
        // One bad row fails the whole statement. Input is validated before it gets here, but
        // a row the database still refuses must fail only its own sender: each message is
        // retried on its own, so the others are stored (and acknowledged) exactly once.
        Err(e) if batch.len() > 1 => {
            tracing::warn!(error = %e, size = batch.len(), "batched message insert failed; retrying one by one");
            metrics::counter!("confab_message_write_batch_retries_total").increment(1);
            for (m, reply) in batch {
                let result = insert(pool, &[&m]).await;
                match result {
                    Ok(rows) => reply_all(vec![(m, reply)], rows),
                    Err(e) => fail(reply, e),
                }
            }
        }
        Err(e) => {
            // A batch of one (batches are never empty).
            if let Some((_, reply)) = batch.into_iter().next() {
                fail(reply, e);
            }
        }
    }
}

/// Rows made here are new messages sent without files (messages with files take the exact
/// path), so no attachment URL is ever signed with this key.
static NO_FILES: FileUrls = FileUrls::new([0; 32]);

fn reply_all(batch: Vec<(NewMessage, Reply)>, rows: Vec<MessageRow>) {
    let mut by_id: HashMap<MessageId, Message> = rows
        .into_iter()
        .map(|r| (r.id, r.into_message(&NO_FILES)))
        .collect();
    for (m, reply) in batch {
        let _ = reply.send(Ok(by_id.remove(&m.id)));
    }
}

fn fail(reply: Reply, e: sqlx::Error) {
    tracing::error!(error = %e, "message insert failed");
    let _ = reply.send(Err(ChatError::from(e)));
}

/// One statement for the whole batch: permission check, nonce de-duplication and insert.
async fn insert(pool: &PgPool, batch: &[&NewMessage]) -> Result<Vec<MessageRow>, sqlx::Error> {
    let mut ids = Vec::with_capacity(batch.len());
    let mut channels = Vec::with_capacity(batch.len());
    let mut authors = Vec::with_capacity(batch.len());
    let mut contents = Vec::with_capacity(batch.len());
    let mut nonces = Vec::with_capacity(batch.len());
    for m in batch {
        ids.push(m.id.get());
        channels.push(m.channel_id.get());
        authors.push(m.author.get());
        contents.push(m.content.as_str());
        nonces.push(m.nonce.as_deref());
    }
    let wanted = permissions::VIEW_CHANNEL | permissions::SEND_MESSAGES;
    let started = std::time::Instant::now();
    let result = sqlx::query_as(q!(
        "WITH input AS (
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[])
                 AS t(id, channel_id, author_id, content, nonce)
         ), allowed AS (
             -- Members not timed out, in text channels without overwrites (those take the
             -- precise slow path), whose @everyone | roles grant the bits (or who own it).
             SELECT i.* FROM input i
             JOIN channels c ON c.id = i.channel_id AND c.kind = 'text'
             JOIN members mb ON mb.server_id = c.server_id AND mb.user_id = i.author_id
             JOIN servers s ON s.id = c.server_id
             LEFT JOIN roles r ON r.id = c.server_id
             CROSS JOIN LATERAL (
                 SELECT coalesce(r.permissions, $6) | coalesce(bit_or(rr.permissions), 0) AS perms
                 FROM member_roles mr JOIN roles rr ON rr.id = mr.role_id
                 WHERE mr.server_id = c.server_id AND mr.user_id = i.author_id
             ) p
             WHERE s.owner_id = i.author_id
                OR (p.perms & $8) <> 0
                OR ((p.perms & $7) = $7
                    AND (mb.timeout_until IS NULL OR mb.timeout_until <= now())
                    -- Newcomers held back by raid protection take the exact path.
                    AND NOT mb.pending
                    AND (mb.restricted_until IS NULL OR mb.restricted_until <= now())
                    AND NOT EXISTS (
                        SELECT 1 FROM channel_overwrites o
                        WHERE o.channel_id = c.id OR o.channel_id = c.parent_id))
             UNION ALL
             -- DMs: the author is a recipient and, in a 1:1 DM, neither side blocked the
             -- other. This is the whole rule for DMs, so the check here is exact.
             SELECT i.* FROM input i
             JOIN channels c ON c.id = i.channel_id AND c.kind IN ('dm', 'group_dm')
             JOIN dm_recipients d ON d.channel_id = c.id AND d.user_id = i.author_id
             WHERE c.kind = 'group_dm' OR NOT EXISTS (
                 SELECT 1 FROM dm_recipients o JOIN relationships rel ON rel.kind = 'blocked'
                     AND ((rel.user_id = o.user_id AND rel.other_id = i.author_id)
                       OR (rel.user_id = i.author_id AND rel.other_id = o.user_id))
                 WHERE o.channel_id = c.id AND o.user_id <> i.author_id)
         ), ins AS (
             INSERT INTO messages (id, channel_id, author_id, content, nonce)
             SELECT id, channel_id, author_id, content, nonce FROM allowed
             ON CONFLICT (author_id, nonce) WHERE nonce IS NOT NULL DO NOTHING
             RETURNING id, channel_id, author_id, content, nonce, created_at, edited_at,
                       reply_to, mentions, mention_roles, mention_everyone, embeds, flags,
                       webhook_id, author_name, author_avatar, stickers
         )
         SELECT {SELECT_MESSAGE_COLUMNS}
         FROM ins m JOIN channels c ON c.id = m.channel_id JOIN users u ON u.id = m.author_id"
    ))
    .bind(&ids)
    .bind(&channels)
    .bind(&authors)
    .bind(&contents)
    .bind(&nonces)
    .bind(permissions::EVERYONE_DEFAULT)
    .bind(wanted)
    .bind(permissions::ADMINISTRATOR)
    .fetch_all(pool)
    .await;
    crate::record_query("message_batch_insert", started);
    result
}
