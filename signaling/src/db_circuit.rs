//! A circuit breaker in front of the database, so an outage is answered at once with a 503
//! and `Retry-After` instead of every request waiting out a pool timeout and ending in a 500.
//!
//! The circuit opens when a request finds the database unreachable (a `DatabaseUnavailable`
//! response) or when the background probe fails (a frozen server accepts connections but never
//! answers: the probe's timeout notices). A request that takes longer than `REQUEST_TIMEOUT`
//! is answered 503 but opens nothing by itself: slowness can be the CPU's, not the database's. While it is open,
//! REST requests are refused before they touch the pool. Only the probe closes it: one
//! `SELECT 1` a second, each with a short timeout, so recovery is noticed within a second or
//! two. `/readyz` reports the same outage, for load balancers.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use confab_chat::ChatError;
use sqlx::{ConnectOptions, PgConnection};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Longest a REST request may take before it is answered 503. Generous: a machine short of
/// CPU (argon2 under a login burst) can be slow without the database being down.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the probe checks the database, and how long one check may take.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Marks a response that found the database unreachable.
#[derive(Clone, Copy, Debug)]
pub struct DatabaseUnavailable;

#[derive(Default)]
pub struct DbCircuit {
    open: AtomicBool,
}

impl DbCircuit {
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    fn set(&self, open: bool) {
        let was = self.open.swap(open, Ordering::Relaxed);
        if was != open {
            metrics::gauge!("confab_db_circuit_open").set(if open { 1.0 } else { 0.0 });
            if open {
                metrics::counter!("confab_db_circuit_trips_total").increment(1);
                tracing::error!("database unreachable: answering 503 until it is back");
            } else {
                tracing::info!("database reachable again");
            }
        }
    }

    pub fn trip(&self) {
        self.set(true);
    }

    /// Probes the database every second until shutdown, opening and closing the circuit.
    /// The probe has a connection of its own: under load every pooled connection may be busy,
    /// and a pool that is merely saturated must not read as an outage.
    pub async fn run_probe(state: AppState) {
        metrics::gauge!("confab_db_circuit_open").set(0.0);
        let options = state.chat.pool().connect_options();
        let mut conn: Option<PgConnection> = None;
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let ok = tokio::time::timeout(PROBE_TIMEOUT, async {
                if conn.is_none() {
                    conn = Some(options.connect().await?);
                }
                let c = conn.as_mut().expect("connected above");
                sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(c).await
            })
            .await
            .is_ok_and(|r| r.is_ok());
            if !ok {
                // Reconnect next time: the old connection may be broken or stuck mid-query.
                conn = None;
            }
            state.db_circuit.set(!ok);
        }
    }
}

/// Middleware on the REST routes: refuses while the circuit is open, bounds each request's
/// time, and opens the circuit when a request finds the database gone.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.db_circuit.is_open() {
        metrics::counter!("confab_db_circuit_refused_total").increment(1);
        return ApiError::Chat(ChatError::Unavailable).into_response();
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(resp) => {
            if resp.extensions().get::<DatabaseUnavailable>().is_some() {
                state.db_circuit.trip();
            }
            resp
        }
        Err(_) => {
            metrics::counter!("confab_http_request_timeouts_total").increment(1);
            ApiError::Chat(ChatError::Unavailable).into_response()
        }
    }
}
