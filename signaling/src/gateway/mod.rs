//! The real-time gateway: `/api/v1/gateway` WebSocket (protocol in docs/gateway.md).
//!
//! - `protocol`: opcodes, close codes, client frames parsed into typed requests, frame budgets.
//! - `session_machine`: one connection's protocol (IDENTIFY/RESUME, deadlines, refusals) as a
//!   state machine without IO, tested without sockets.
//! - `connection`: the async shell around it: the socket, the timer, and the work the machine
//!   asks for (authentication, READY, resume, presence, voice).
//! - `ready`: the READY payload.
//! - `events`: the dispatch events' names, one typed enum (`Event`), each with its wire name.
//! - `hub`: delivers dispatches (`dispatch`) to this node's sessions through the routing index
//!   (`routing`) and the sessions' resume buffers (`sessions`); `presence` (statuses, and other
//!   nodes' reports of theirs); `intents` (which events a bot's session receives).

pub mod connection;
pub mod dispatch;
pub mod events;
pub mod hub;
pub mod intents;
pub mod presence;
pub mod protocol;
pub mod ready;
pub mod routing;
pub mod session_machine;
pub mod sessions;
mod shrinking_writer;
pub mod upgrade;

use crate::proxy::ClientIp;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::Arc;
use tungstenite::protocol::WebSocketConfig;

/// WebSocket read buffer: small, so an idle connection costs little. Client frames are mostly
/// heartbeats; the rare large one (an SDP offer) is read in several steps.
const READ_BUFFER: usize = 1024;

/// Upgrades to the gateway after checking the Origin: absent (non-browser clients) or in the
/// allowlist.
pub async fn upgrade(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    ws: upgrade::Upgrade,
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
    let Some(pending) =
        state
            .pending_gateway
            .admit(client, PENDING_PER_IP, state.config.rate_limit_scale)
    else {
        metrics::counter!("confab_gateway_refused_connections_total").increment(1);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "10")],
            "too many unauthenticated gateway connections from this address",
        )
            .into_response();
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        // Frames go straight to the socket's gathering writer, which releases its buffer
        // after each flush (see `shrinking_writer`).
        .write_buffer_size(0)
        .max_message_size(Some(protocol::MAX_FRAME))
        .max_frame_size(Some(protocol::MAX_FRAME));
    ws.serve(config, move |socket| {
        connection::run(state, socket, client, pending)
    })
}

/// Connections from one IP that have not identified yet (scaled by `--rate-limit-scale`).
/// Each holds a socket and a task until its IDENTIFY deadline: without a cap, one address
/// could hold thousands of them open by reconnecting every 10 s.
pub const PENDING_PER_IP: u32 = 64;

/// Counts unauthenticated gateway connections per IP.
#[derive(Default)]
pub struct PendingConnections {
    by_ip: Arc<DashMap<IpAddr, u32>>,
}

impl PendingConnections {
    /// A slot for one more connection from `ip`, or None when it already holds its share.
    pub fn admit(&self, ip: IpAddr, limit: u32, scale: f64) -> Option<PendingSlot> {
        let limit = ((f64::from(limit) * scale).ceil() as u32).max(1);
        let mut n = self.by_ip.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(PendingSlot {
            by_ip: self.by_ip.clone(),
            ip,
        })
    }

    /// Unauthenticated connections from `ip` now.
    pub fn count(&self, ip: IpAddr) -> u32 {
        self.by_ip.get(&ip).map_or(0, |n| *n)
    }
}

/// Held by a connection until it identifies (or closes); frees its slot when dropped.
pub struct PendingSlot {
    by_ip: Arc<DashMap<IpAddr, u32>>,
    ip: IpAddr,
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        // Remove the entry at zero so the map holds only addresses with pending connections.
        self.by_ip.remove_if_mut(&self.ip, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_slots_are_limited_per_ip_and_freed_on_drop() {
        let p = PendingConnections::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| p.admit(a, 3, 1.0).unwrap()).collect();
        assert!(p.admit(a, 3, 1.0).is_none());
        assert!(
            p.admit(b, 3, 1.0).is_some(),
            "another address is unaffected"
        );
        drop(held);
        assert_eq!(p.count(a), 0);
        assert!(p.admit(a, 3, 1.0).is_some());
    }
}
