//! Snowflake worker ids, leased from PostgreSQL so that nodes sharing one database never make
//! the same id. A node takes the lowest worker id whose lease is free or expired, renews it
//! well before it expires, and gives it back when it stops. A node that could not renew in
//! time (cut off from the database for longer than `LEASE`) takes a new worker id before it
//! makes more ids, since another node may hold its old one by then.

use crate::{Chat, ChatResult};
use std::time::Duration;

/// How long a lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(60);
/// How often a node renews its lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(15);

/// Snowflake worker ids have 10 bits.
const WORKERS: i32 = 1024;

impl Chat {
    /// Leases a free worker id for this node and makes ids with it.
    pub async fn lease_worker(&self) -> ChatResult<u16> {
        let holder: &str = &self.node;
        // Several nodes starting at once may pick the same id: the loser's upsert matches no
        // row (the winner's lease is not expired) and it tries the next free one.
        for _ in 0..WORKERS {
            let got: Option<i16> = sqlx::query_scalar(
                "INSERT INTO snowflake_workers (worker_id, holder, expires_at)
                 SELECT w, $1, now() + make_interval(secs => $2)
                 FROM generate_series(0, $3 - 1) AS w
                 WHERE NOT EXISTS (SELECT 1 FROM snowflake_workers s
                                   WHERE s.worker_id = w AND s.expires_at > now())
                 ORDER BY w LIMIT 1
                 ON CONFLICT (worker_id) DO UPDATE
                   SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
                   WHERE snowflake_workers.expires_at <= now()
                 RETURNING worker_id",
            )
            .bind(holder)
            .bind(LEASE.as_secs_f64())
            .bind(WORKERS)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(w) = got {
                let w = w as u16;
                self.ids.set_worker(w);
                return Ok(w);
            }
            let free: bool = sqlx::query_scalar(
                "SELECT count(*) < $1 FROM snowflake_workers WHERE expires_at > now()",
            )
            .bind(i64::from(WORKERS))
            .fetch_one(&self.pool)
            .await?;
            if !free {
                break;
            }
        }
        Err(crate::ChatError::Internal(anyhow::anyhow!(
            "every snowflake worker id ({WORKERS}) is leased by a running node"
        )))
    }

    /// Extends this node's lease. False if it was lost (expired and taken, or gone).
    pub async fn renew_worker(&self) -> ChatResult<bool> {
        let holder: &str = &self.node;
        let renewed = sqlx::query(
            "UPDATE snowflake_workers SET expires_at = now() + make_interval(secs => $3)
             WHERE worker_id = $1 AND holder = $2",
        )
        .bind(self.ids.worker() as i16)
        .bind(holder)
        .bind(LEASE.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Gives the lease back (at shutdown), so the id is free at once.
    pub async fn release_worker(&self) -> ChatResult<()> {
        let holder: &str = &self.node;
        sqlx::query("DELETE FROM snowflake_workers WHERE worker_id = $1 AND holder = $2")
            .bind(self.ids.worker() as i16)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
