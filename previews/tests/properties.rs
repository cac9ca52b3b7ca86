//! Properties over arbitrary input: the parsers never panic and stay within their limits, and
//! an IPv4 address is judged the same however IPv6 wraps it.

use confab_previews::{image, links, meta, vet};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::Url;

fn nat64(v4: Ipv4Addr) -> Ipv6Addr {
    let o = v4.octets();
    Ipv6Addr::new(
        0x64,
        0xff9b,
        0,
        0,
        0,
        0,
        u16::from_be_bytes([o[0], o[1]]),
        u16::from_be_bytes([o[2], o[3]]),
    )
}

fn six_to_four(v4: Ipv4Addr) -> Ipv6Addr {
    let o = v4.octets();
    Ipv6Addr::new(
        0x2002,
        u16::from_be_bytes([o[0], o[1]]),
        u16::from_be_bytes([o[2], o[3]]),
        0,
        0,
        0,
        0,
        1,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn wrapped_ipv4_is_judged_as_itself(bits: u32) {
        let v4 = Ipv4Addr::from(bits);
        let plain = vet::check(IpAddr::V4(v4));
        prop_assert_eq!(vet::check(IpAddr::V6(v4.to_ipv6_mapped())), plain);
        prop_assert_eq!(vet::check(IpAddr::V6(nat64(v4))).is_some(), plain.is_some());
        prop_assert_eq!(vet::check(IpAddr::V6(six_to_four(v4))).is_some(), plain.is_some());
        // IPv4-compatible (::a.b.c.d) is refused whatever it carries.
        if bits > 1 {
            prop_assert!(vet::check(IpAddr::V6(v4.to_ipv6_compatible())).is_some());
        }
    }

    #[test]
    fn only_global_unicast_ipv6_passes(bits: u128) {
        let ip = Ipv6Addr::from(bits);
        if vet::check(IpAddr::V6(ip)).is_none() {
            let first = ip.segments()[0];
            let wraps_v4 = first == 0x2002 || (first == 0x64 && ip.segments()[1] == 0xff9b);
            prop_assert!((0x2000..=0x3fff).contains(&first) || wraps_v4 || ip.to_ipv4_mapped().is_some(), "{}", ip);
        }
    }

    #[test]
    fn links_are_few_and_http(s in ".{0,400}", url_tail in "[a-z0-9/._~%-]{0,40}") {
        let text = format!("{s} https://a.example/{url_tail} {s}");
        let found = links::extract(&text);
        prop_assert!(found.len() <= links::MAX_LINKS);
        for u in found {
            prop_assert!(matches!(u.scheme(), "http" | "https"));
            prop_assert!(u.host_str().is_some());
        }
    }

    #[test]
    fn html_parsing_never_panics_and_is_bounded(s in any::<String>(), title in ".{0,600}") {
        let base = Url::parse("https://site.example/a/b").unwrap();
        let html = format!("<meta property=og:title content=\"{}\">{s}", title.replace('"', ""));
        let m = meta::parse_html(&html, &base);
        prop_assert!(m.title.as_ref().is_none_or(|t| t.chars().count() <= meta::MAX_TITLE));
        if let Some(img) = m.image {
            prop_assert!(matches!(img.url.scheme(), "http" | "https"));
        }
        let _ = meta::parse_oembed(s.as_bytes());
    }

    #[test]
    fn image_checks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&bytes);
        for candidate in [bytes.clone(), png] {
            if let Some(img) = image::check(candidate) {
                prop_assert!(img.width > 0 && img.height > 0);
                prop_assert!(image::sniff(&img.bytes) == Some(img.content_type));
            }
        }
    }
}
