//! PostgreSQL: connecting, migrating, and the private zero-configuration cluster.

mod embedded;

pub use embedded::{EmbeddedOptions, EmbeddedPostgres};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

/// The migrations in the repository's `migrations/` folder, compiled in.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Connects a pool to `url` (a `postgres://` URL; `?host=/dir` for a Unix socket).
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let opts = PgConnectOptions::from_str(url)?.application_name("confab");
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        // Short: a request that cannot get a connection in 3 s is answered 503 (database
        // unavailable) rather than kept waiting; see signaling's db_circuit.
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(opts)
        .await?;
    Ok(pool)
}

/// Applies every pending migration.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}
