//! The SFU's relay between media nodes (docs/relay.md), as a media node uses it: the relay
//! socket is on in a cluster, and a room's relay peers are its other media nodes.

pub use confab_sfu::RelayEndpoint;
use confab_sfu::{RoomId, Sfu};
use std::net::SocketAddr;

pub fn endpoint(sfu: &Sfu) -> Option<RelayEndpoint> {
    sfu.relay_endpoint()
}

pub fn set_peers(sfu: &Sfu, room: RoomId, peers: Vec<RelayEndpoint>) {
    sfu.set_relay_peers(room, peers);
}

/// Turns the SFU's relay socket on, bound to `addr`.
pub fn enable(config: &mut confab_sfu::SfuConfig, addr: SocketAddr) {
    config.relay_bind = Some(addr);
}
