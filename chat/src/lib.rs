//! Confab's chat domain: accounts, servers, channels, members, invites and messages, stored in
//! PostgreSQL. It knows nothing of HTTP or WebRTC: the signaling crate turns these services into
//! REST endpoints and gateway events.
//!
//! Ids are typed: [`UserId`], [`ServerId`], [`ChannelId`], [`MessageId`], [`RoleId`] and
//! [`SessionId`] (login sessions) are distinct newtypes over a [`Snowflake`] (see [`ids`]), so a
//! call such as `add_member(server_id, user_id)` with its arguments swapped does not compile.
//! On the wire, in PostgreSQL and in the OpenAPI document they are plain snowflakes, exactly as
//! before. Where one id deliberately stands for another, a named function says so
//! ([`RoleId::everyone`]: the @everyone role's id is its server's id). Ids that may name
//! several kinds of thing — an overwrite's or audit entry's target — and voice session ids
//! stay raw [`Snowflake`]s.

/// A query string built from constant fragments (column lists); values are always bound.
macro_rules! q {
    ($($t:tt)*) => { sqlx::AssertSqlSafe(format!($($t)*)) };
}

pub mod access;
pub mod accounts;
pub mod audit;
pub mod channels;
pub mod dms;
pub mod error;
pub mod expressions;
pub mod files;
pub mod ids;
pub mod integrations;
pub mod invites;
pub mod link_previews;
pub mod members;
pub mod messages;
pub mod model;
pub mod moderation;
pub mod name;
pub mod notifications;
pub mod password;
pub mod permissions;
pub mod postgres;
pub mod reactions;
pub mod read_states;
pub mod relationships;
pub mod roles;
pub mod safety;
pub mod search;
pub mod servers;
pub mod snowflake;
pub mod soundboard;
pub mod threads;
pub mod voice;
pub mod workers;

pub use error::{ChatError, ChatResult};
pub use ids::{AttachmentId, ChannelId, MessageId, RoleId, ServerId, SessionId, UserId};
pub use name::Name;
pub use snowflake::{Snowflake, SnowflakeGenerator};

use std::sync::Arc;

/// Records how long a hot database query took (`confab_db_query_duration_seconds{query}`).
/// Only the queries every message or channel request runs are timed; the label set is fixed.
pub(crate) fn record_query(query: &'static str, started: std::time::Instant) {
    metrics::histogram!("confab_db_query_duration_seconds", "query" => query)
        .record(started.elapsed().as_secs_f64());
}

/// The hot queries timed by `confab_db_query_duration_seconds`.
pub const TIMED_QUERIES: &[&str] = &[
    "message_batch_insert",
    "member_access",
    "channel_access",
    "history",
    "search",
    "threads",
];

/// The chat services over one PostgreSQL pool. Cheap to clone.
#[derive(Clone)]
pub struct Chat {
    pub(crate) pool: sqlx::PgPool,
    pub(crate) ids: Arc<SnowflakeGenerator>,
    pub(crate) passwords: Arc<password::PasswordHasher>,
    pub(crate) writer: Arc<messages::writer::MessageWriter>,
    /// This running node, unique per process (`<node name>/<random>`): holds its snowflake
    /// worker lease and marks the voice sessions it serves.
    pub(crate) node: Arc<str>,
    /// Signs attachment URLs in every message this node serialises.
    pub(crate) file_urls: Arc<files::FileUrls>,
    /// Compiled automod rules and safety settings per server, and safety events.
    pub(crate) safety: Arc<safety::SafetyState>,
}

impl Chat {
    /// Creates the services; starts the message writer task on the current tokio runtime.
    /// Chat services for node `node` (unique per running process), making ids as worker
    /// `worker_id` until `lease_worker` leases one.
    pub fn new(pool: sqlx::PgPool, worker_id: u16, node: &str) -> Self {
        Self {
            node: node.into(),
            writer: Arc::new(messages::writer::MessageWriter::spawn(pool.clone())),
            pool,
            ids: Arc::new(SnowflakeGenerator::new(worker_id)),
            passwords: Arc::new(password::PasswordHasher::new()),
            file_urls: Arc::new(files::FileUrls::new(rand::random())),
            safety: Arc::new(safety::SafetyState::new()),
        }
    }

    /// Signs attachment URLs with `urls` (derived from the token secret every node of a cluster
    /// shares) instead of a key of this process alone.
    pub fn with_file_urls(mut self, urls: files::FileUrls) -> Self {
        self.file_urls = Arc::new(urls);
        self
    }

    /// The attachment URL signer (the download handler checks signatures with it).
    pub fn file_urls(&self) -> &files::FileUrls {
        &self.file_urls
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }

    /// A new id, of the kind the caller asks for (`let id: ServerId = chat.next_id();`).
    pub fn next_id<T: From<Snowflake>>(&self) -> T {
        T::from(self.ids.next())
    }
}
