//! One error type for every chat service. The signaling crate maps each variant to an HTTP
//! status; `Internal` is logged there and never shown to clients.

use std::collections::BTreeMap;

pub type ChatResult<T> = Result<T, ChatError>;

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// Bad input, with messages per field.
    #[error("invalid request")]
    Validation(BTreeMap<String, Vec<String>>),
    /// Wrong credentials or a revoked/unknown session or refresh token.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The caller may see the resource but not do this to it.
    #[error("{0}")]
    Forbidden(&'static str),
    /// A block between the two users forbids it (DMs, friend requests).
    #[error("{0}")]
    Blocked(&'static str),
    /// The resource does not exist, or the caller may not know that it does.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Well-formed, but the state of the caller's account forbids it (e.g. deleting an account
    /// that still owns servers); the message says what to do first.
    #[error("{0}")]
    Refused(String),
    /// A uniqueness rule or a state rule was violated.
    #[error("{0}")]
    Conflict(String),
    /// The database cannot be reached (down, frozen, or every connection busy past the
    /// acquire timeout): worth retrying shortly, unlike `Internal`.
    /// Refused by a safety rule (automod, verification level, raid mode); the code says which
    /// (`safety::CODE_*`) and the message what to do.
    #[error("{message}")]
    Safety { code: u32, message: String },
    #[error("database unavailable")]
    Unavailable,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ChatError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut m = BTreeMap::new();
        m.insert(field.to_string(), vec![message.into()]);
        ChatError::Validation(m)
    }
}

impl From<sqlx::Error> for ChatError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            ChatError::Unavailable
        } else if matches!(e, sqlx::Error::RowNotFound) {
            // A row read back after a write was deleted meanwhile (a role updated while
            // another request deleted it): gone, as a fresh request would find.
            ChatError::NotFound("resource")
        } else if is_vanished_reference(&e) {
            // A row this write refers to was deleted between the handler's check and the
            // write (a member kicked while given a role, a message deleted while reacted
            // to): the same answer the check itself would give a moment later.
            ChatError::NotFound("referenced resource")
        } else {
            ChatError::Internal(e.into())
        }
    }
}

/// True when `e` says the database could not be reached or answered, rather than that the
/// statement was wrong: no connection within the acquire timeout, a broken or refused
/// connection, or PostgreSQL shutting down or not yet accepting connections.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // Class 08: connection exception; 57P01-57P03: admin shutdown, crash shutdown,
            // cannot connect now; 53300: too many connections.
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// True when `e` is a foreign-key violation (SQLSTATE 23503): the referenced row is gone.
pub fn is_vanished_reference(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23503"))
}

/// Collects validation messages across fields before failing once.
#[derive(Default)]
pub struct Validator(BTreeMap<String, Vec<String>>);

impl Validator {
    pub fn check(&mut self, ok: bool, field: &str, message: &str) -> &mut Self {
        if !ok {
            self.0
                .entry(field.to_string())
                .or_default()
                .push(message.to_string());
        }
        self
    }

    pub fn finish(&mut self) -> ChatResult<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ChatError::Validation(std::mem::take(&mut self.0)))
        }
    }
}

/// True when a sqlx error is a unique-constraint violation on `constraint`.
pub fn is_unique_violation(e: &sqlx::Error, constraint: &str) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("23505") && db.constraint() == Some(constraint)
        }
        _ => false,
    }
}
