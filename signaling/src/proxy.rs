//! The client's address. Behind a reverse proxy the TCP peer is the proxy; when that peer is
//! one of `--trusted-proxies`, the client is read from the headers the proxy sets. Every place
//! that keys something by client address (rate limits per IP, unauthenticated gateway
//! connections per IP, the address recorded with a login session) asks `client_ip`.
//!
//! `X-Forwarded-For` is read from the right: each trusted proxy appends the address it got the
//! request from, so the rightmost entry that is not itself a trusted proxy is the first address
//! no proxy of ours vouches for — the client. Entries left of it may be anything the client
//! sent. Without `X-Forwarded-For`, `X-Real-IP` (nginx's `$remote_addr`) is used.

use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use ipnet::IpNet;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

/// Parses a `--trusted-proxies` entry: a CIDR (`10.0.0.0/8`, `fd00::/8`) or one address.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is neither an IP address nor a CIDR such as 10.0.0.0/8"))
}

fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    let ip = canonical(ip);
    proxies.iter().any(|n| n.contains(&ip))
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a dual-stack socket reports) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`) as some proxies write it.
fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// The client of a request whose TCP peer is `peer`.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, proxies: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !trusted(peer, proxies) {
        return peer;
    }
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else {
            return peer;
        };
        for hop in value.split(',') {
            match parse_hop(hop) {
                Some(ip) => hops.push(canonical(ip)),
                // Garbage in the chain: believe nothing left of it.
                None => hops.clear(),
            }
        }
    }
    if !hops.is_empty() {
        // Rightmost untrusted hop; if every hop is a proxy of ours, the leftmost.
        return hops
            .iter()
            .rev()
            .find(|ip| !trusted(**ip, proxies))
            .copied()
            .unwrap_or(hops[0]);
    }
    headers
        .get("x-real-ip")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_hop)
        .map(canonical)
        .unwrap_or(peer)
}

/// The client's address as an extractor (needs the router served with `ConnectInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// From a request's parts: its `ConnectInfo` peer and headers. `None` without `ConnectInfo`
    /// (a router not served over a socket, as in some unit tests).
    pub fn of(
        extensions: &axum::http::Extensions,
        headers: &HeaderMap,
        proxies: &[IpNet],
    ) -> Option<Self> {
        let peer = extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
        Some(ClientIp(client_ip(peer, headers, proxies)))
    }
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp::of(
            &parts.extensions,
            &parts.headers,
            &state.config.trusted_proxies,
        )
        .unwrap_or(ClientIp(IpAddr::from([0, 0, 0, 0]))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn untrusted_peers_are_the_client() {
        let proxies = vec![parse_net("10.0.0.0/8").unwrap()];
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-real-ip", "1.2.3.4")]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &h, &proxies),
            ip("203.0.113.9")
        );
        assert_eq!(client_ip(ip("203.0.113.9"), &h, &[]), ip("203.0.113.9"));
    }

    #[test]
    fn trusted_peers_name_the_rightmost_untrusted_hop() {
        let proxies = vec![
            parse_net("10.0.0.0/8").unwrap(),
            parse_net("192.0.2.7").unwrap(),
        ];
        let peer = ip("10.1.2.3");
        // The client claimed 6.6.6.6; the proxy appended the address it really saw.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.4, 192.0.2.7")]);
        assert_eq!(client_ip(peer, &h, &proxies), ip("198.51.100.4"));
        // Several header lines are one list.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.4:5555"),
        ]);
        assert_eq!(client_ip(peer, &h, &proxies), ip("198.51.100.4"));
        // Only proxies: the leftmost.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 192.0.2.7")]);
        assert_eq!(client_ip(peer, &h, &proxies), ip("10.9.9.9"));
        // Garbage hides what is left of it.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, nonsense, 10.2.2.2")]);
        assert_eq!(client_ip(peer, &h, &proxies), ip("10.2.2.2"));
        // X-Real-IP when there is no X-Forwarded-For; the peer when neither.
        let h = headers(&[("x-real-ip", "2001:db8::5")]);
        assert_eq!(client_ip(peer, &h, &proxies), ip("2001:db8::5"));
        assert_eq!(client_ip(peer, &HeaderMap::new(), &proxies), peer);
        // A dual-stack socket's mapped address is the IPv4 proxy.
        let h = headers(&[("x-forwarded-for", "198.51.100.4")]);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &h, &proxies),
            ip("198.51.100.4")
        );
    }

    #[test]
    fn parses_addresses_and_cidrs() {
        assert_eq!(parse_net("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            parse_net(" 127.0.0.1 ").unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert_eq!(parse_net("::1").unwrap().to_string(), "::1/128");
        assert!(parse_net("example.org").is_err());
        assert!(parse_net("10.0.0.0/33").is_err());
    }
}
