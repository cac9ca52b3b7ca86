//! Which addresses the fetcher may connect to. Everything that is not plainly a public unicast
//! address is refused: loopback, private, link-local, CGNAT, multicast, reserved and
//! documentation ranges, cloud metadata endpoints, and the IPv6 forms that wrap an IPv4 address
//! (IPv4-mapped, IPv4-compatible, 6to4, NAT64, Teredo) when what they wrap is refused.
//!
//! The check runs on resolved addresses, never on names, and again on every redirect hop.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    Unspecified,
    Loopback,
    Private,
    LinkLocal,
    SharedCgnat,
    Multicast,
    Broadcast,
    Reserved,
    Documentation,
    CloudMetadata,
    UniqueLocal,
    /// An IPv6 range that is not global unicast (or a tunnel whose far end cannot be vetted).
    NotGlobal,
}

impl Blocked {
    pub fn as_str(self) -> &'static str {
        match self {
            Blocked::Unspecified => "unspecified address",
            Blocked::Loopback => "loopback address",
            Blocked::Private => "private address",
            Blocked::LinkLocal => "link-local address",
            Blocked::SharedCgnat => "shared (CGNAT) address",
            Blocked::Multicast => "multicast address",
            Blocked::Broadcast => "broadcast address",
            Blocked::Reserved => "reserved address",
            Blocked::Documentation => "documentation address",
            Blocked::CloudMetadata => "cloud metadata address",
            Blocked::UniqueLocal => "unique local address",
            Blocked::NotGlobal => "non-global IPv6 address",
        }
    }
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Cloud instance metadata services. Most sit in ranges refused anyway (link-local, CGNAT,
/// unique local); they are named so the refusal says what they are.
const METADATA: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)), // AWS, GCP, Azure, OpenStack, DigitalOcean
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),   // AWS ECS task metadata
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)), // Alibaba Cloud
    IpAddr::V4(Ipv4Addr::new(192, 0, 0, 192)),     // Oracle Cloud
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)), // AWS over IPv6
];

/// Why `ip` must not be fetched from, or `None` when it is a public unicast address.
pub fn check(ip: IpAddr) -> Option<Blocked> {
    let ip = unmap(ip);
    if METADATA.contains(&ip) {
        return Some(Blocked::CloudMetadata);
    }
    match ip {
        IpAddr::V4(v4) => check_v4(v4),
        IpAddr::V6(v6) => check_v6(v6),
    }
}

/// `ip` with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) turned into the IPv4 address it is:
/// a socket connected to one reaches the other.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

fn check_v4(ip: Ipv4Addr) -> Option<Blocked> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => Blocked::Unspecified,
        (0, _, _) => Blocked::Unspecified, // "this network"
        (127, _, _) => Blocked::Loopback,
        (10, _, _) => Blocked::Private,
        (172, 16..=31, _) => Blocked::Private,
        (192, 168, _) => Blocked::Private,
        (169, 254, _) => Blocked::LinkLocal,
        (100, 64..=127, _) => Blocked::SharedCgnat,
        (192, 0, 0) => Blocked::Reserved, // IETF protocol assignments
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Blocked::Documentation,
        (198, 18..=19, _) => Blocked::Reserved, // benchmarking
        (192, 88, 99) => Blocked::Reserved,     // 6to4 relay anycast
        _ if ip.is_broadcast() => Blocked::Broadcast,
        (224..=239, _, _) => Blocked::Multicast,
        (240..=255, _, _) => Blocked::Reserved,
        _ => return None,
    })
}

fn check_v6(ip: Ipv6Addr) -> Option<Blocked> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some(Blocked::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Blocked::Loopback);
    }
    // Forms that carry an IPv4 address: refused when the IPv4 address is.
    // IPv4-compatible (::a.b.c.d, deprecated): any stack that still routes it reaches the IPv4.
    if s[..6] == [0; 6] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return check_v4(v4).or(Some(Blocked::Reserved));
    }
    // NAT64 well-known prefix 64:ff9b::/96: the gateway connects to the embedded IPv4.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return check_v4(v4);
    }
    // 6to4 2002::/16: the relay forwards to the IPv4 in bits 16..48.
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return check_v4(v4);
    }
    Some(match s[0] {
        // Local-use NAT64 (64:ff9b:1::/48): translated to whatever the operator routes.
        0x64 if s[1] == 0xff9b => Blocked::NotGlobal,
        0xfc00..=0xfdff => Blocked::UniqueLocal,
        0xfe80..=0xfebf => Blocked::LinkLocal,
        0xfec0..=0xfeff => Blocked::NotGlobal, // site-local (deprecated)
        0xff00..=0xffff => Blocked::Multicast,
        // Teredo: the client's address is obfuscated inside; there is no honest way to vet it.
        0x2001 if s[1] == 0 => Blocked::NotGlobal,
        0x2001 if s[1] == 0x0db8 => Blocked::Documentation,
        // IETF protocol assignments 2001::/23 (ORCHID, benchmarking, ...), outside the
        // globally routed anycast services that nobody links to.
        0x2001 if s[1] < 0x0200 => Blocked::Reserved,
        0x3fff if s[1] < 0x1000 => Blocked::Documentation, // 3fff::/20
        // Global unicast is 2000::/3; everything else (100::/64 discard, ::/8 leftovers, ...)
        // is not a destination on the public internet.
        0x2000..=0x3fff => return None,
        _ => Blocked::NotGlobal,
    })
}

/// The test-only allowlist: addresses in these networks are fetched even when `check` refuses
/// them, on any port. A production configuration leaves it empty.
#[derive(Debug, Clone, Default)]
pub struct Allowlist(Vec<IpNet>);

impl Allowlist {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Allowlist(nets)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = unmap(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(s: &str) -> Option<Blocked> {
        check(s.parse().unwrap())
    }

    #[test]
    fn public_addresses_pass() {
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "192.169.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:81c::200e",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808", // NAT64 of 8.8.8.8
            "2002:808:808::1",  // 6to4 of 8.8.8.8
        ] {
            assert_eq!(blocked(a), None, "{a} should pass");
        }
    }

    #[test]
    fn ipv4_classes_are_refused() {
        let cases = [
            ("0.0.0.0", Blocked::Unspecified),
            ("0.1.2.3", Blocked::Unspecified),
            ("127.0.0.1", Blocked::Loopback),
            ("127.255.255.254", Blocked::Loopback),
            ("10.0.0.1", Blocked::Private),
            ("10.255.255.255", Blocked::Private),
            ("172.16.0.1", Blocked::Private),
            ("172.31.255.255", Blocked::Private),
            ("192.168.1.1", Blocked::Private),
            ("169.254.0.1", Blocked::LinkLocal),
            ("169.254.169.254", Blocked::CloudMetadata),
            ("169.254.170.2", Blocked::CloudMetadata),
            ("100.100.100.200", Blocked::CloudMetadata),
            ("192.0.0.192", Blocked::CloudMetadata),
            ("100.64.0.1", Blocked::SharedCgnat),
            ("100.127.255.254", Blocked::SharedCgnat),
            ("224.0.0.1", Blocked::Multicast),
            ("239.255.255.250", Blocked::Multicast),
            ("255.255.255.255", Blocked::Broadcast),
            ("240.0.0.1", Blocked::Reserved),
            ("198.18.0.1", Blocked::Reserved),
            ("192.0.0.8", Blocked::Reserved),
            ("192.0.2.1", Blocked::Documentation),
            ("198.51.100.7", Blocked::Documentation),
            ("203.0.113.9", Blocked::Documentation),
        ];
        for (a, why) in cases {
            assert_eq!(blocked(a), Some(why), "{a}");
        }
    }

    #[test]
    fn ipv6_classes_are_refused() {
        let cases = [
            ("::", Blocked::Unspecified),
            ("::1", Blocked::Loopback),
            ("fe80::1", Blocked::LinkLocal),
            ("febf::1", Blocked::LinkLocal),
            ("fec0::1", Blocked::NotGlobal),
            ("fc00::1", Blocked::UniqueLocal),
            ("fd12:3456::1", Blocked::UniqueLocal),
            ("fd00:ec2::254", Blocked::CloudMetadata),
            ("ff02::1", Blocked::Multicast),
            ("ff05::1:3", Blocked::Multicast),
            ("2001:db8::1", Blocked::Documentation),
            ("3fff::1", Blocked::Documentation),
            ("2001::1", Blocked::NotGlobal), // Teredo
            ("2001:10::1", Blocked::Reserved),
            ("100::1", Blocked::NotGlobal), // discard-only
            ("64:ff9b:1::1", Blocked::NotGlobal),
            ("4000::1", Blocked::NotGlobal),
        ];
        for (a, why) in cases {
            assert_eq!(blocked(a), Some(why), "{a}");
        }
    }

    #[test]
    fn wrapped_ipv4_is_unwrapped() {
        let cases = [
            // IPv4-mapped
            ("::ffff:127.0.0.1", Blocked::Loopback),
            ("::ffff:10.1.2.3", Blocked::Private),
            ("::ffff:169.254.169.254", Blocked::CloudMetadata),
            ("::ffff:100.64.1.1", Blocked::SharedCgnat),
            ("::ffff:0.0.0.0", Blocked::Unspecified),
            // IPv4-compatible (deprecated): refused whatever it holds
            ("::127.0.0.1", Blocked::Loopback),
            ("::10.0.0.1", Blocked::Private),
            ("::8.8.8.8", Blocked::Reserved),
            // NAT64
            ("64:ff9b::7f00:1", Blocked::Loopback),
            ("64:ff9b::a9fe:a9fe", Blocked::LinkLocal),
            ("64:ff9b::c0a8:101", Blocked::Private),
            // 6to4
            ("2002:7f00:1::1", Blocked::Loopback),
            ("2002:a00:1::", Blocked::Private),
            ("2002:a9fe:a9fe::1", Blocked::LinkLocal),
            ("2002:6440:1::1", Blocked::SharedCgnat),
        ];
        for (a, why) in cases {
            assert_eq!(blocked(a), Some(why), "{a}");
        }
    }

    #[test]
    fn allowlist_matches_networks_and_mapped_forms() {
        let allow = Allowlist::new(vec!["127.0.0.1/32".parse().unwrap()]);
        assert!(allow.contains("127.0.0.1".parse().unwrap()));
        assert!(allow.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!allow.contains("127.0.0.2".parse().unwrap()));
        assert!(!allow.contains("::1".parse().unwrap()));
        assert!(Allowlist::default().is_empty());
    }
}
