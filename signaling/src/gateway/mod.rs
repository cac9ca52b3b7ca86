//! The real-time gateway: `/api/v1/gateway` WebSocket (protocol in docs/gateway.md).

pub mod connection;
pub mod hub;
pub mod presence;
pub mod protocol;
pub mod temporary;

use crate::state::AppState;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// WebSocket read buffer: small, so idle connections cost kilobytes.
const READ_BUFFER: usize = 4 * 1024;
/// Frames are flushed when this much is buffered (or the queue is drained).
const WRITE_BUFFER: usize = 8 * 1024;

/// Upgrades to the gateway after checking the Origin: absent (non-browser clients) or in the
/// allowlist.
pub async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed = origin
            .to_str()
            .map(|o| state.origins.iter().any(|a| a.eq_ignore_ascii_case(o)))
            .unwrap_or(false);
        if !allowed {
            return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
        }
    }
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(usize::MAX)
        .max_message_size(protocol::MAX_FRAME)
        .max_frame_size(protocol::MAX_FRAME)
        .on_upgrade(move |socket| connection::run(state, socket, peer.ip()))
}
