//! Untrusted SDP offers: the SFU's checks, then (for offers that pass them)
//! a join, a renegotiation with the same offer and a leave on a fresh core.
#![no_main]

use confab_sfu::fuzzing::check_offer;
use confab_sfu::{JoinRequest, ParticipantId, RoomId, SfuConfig, SfuCore, UserTag};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = std::str::from_utf8(data) else {
        return;
    };
    let config = SfuConfig::new(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)),
    );
    let checked = check_offer(sdp, config.max_sdp_bytes, config.max_m_lines);
    if let Err(e) = &checked {
        assert!(!e.is_empty());
        return;
    }
    let now = Instant::now();
    let mut core =
        SfuCore::new(&config, SocketAddr::new(config.public_ip, 3478), now).expect("core");
    let join = core.join(
        now,
        JoinRequest {
            room: RoomId::new(1),
            participant: ParticipantId::new(1),
            user_id: UserTag::new(1),
            offer_sdp: sdp.to_owned(),
        },
    );
    if let Ok(answer) = join {
        assert!(answer.starts_with("v=0"), "answer: {answer}");
        let _ = core.renegotiate(now, ParticipantId::new(1), sdp);
        core.leave(now, ParticipantId::new(1));
    }
    while core.poll_event().is_some() {}
});
