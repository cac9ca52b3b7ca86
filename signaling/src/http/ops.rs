//! Health, readiness and Prometheus metrics.

use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;

/// The process is up.
pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// Ready to serve: the database answers and the SFU loop runs. `checks` holds the self-check
/// (`crate::doctor`): warnings there do not make the node unready.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    use crate::doctor::Status;
    let report = crate::doctor::live(&state).await;
    let db = report
        .get("database")
        .is_some_and(|c| c.status == Status::Ok);
    let sfu = state.voice.is_running();
    let ok = db && sfu && !state.shutdown.is_cancelled();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({"ready": ok, "database": db, "sfu": sfu, "checks": report.json()})),
    )
}

/// Prometheus text format: Confab's metrics and the standard process metrics.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let pool = state.chat.pool();
    let idle = pool.num_idle() as f64;
    let size = f64::from(pool.size());
    metrics::gauge!("confab_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("confab_db_pool_connections", "state" => "in_use").set(size - idle);
    metrics::gauge!("confab_db_pool_max_connections").set(f64::from(state.config.db_pool_size));
    metrics::gauge!("confab_gateway_sessions").set(state.hub.session_count() as f64);
    let mut body = state.metrics.render();
    body.push_str(&crate::metrics::process_metrics());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
