//! The real UDP loop on 127.0.0.1 with str0m clients on their own sockets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::core_tests::payload;
use super::{pid, room_id, user};
use crate::testing::{TestPeer, TestPeerConfig};
use crate::{JoinRequest, Sfu, SfuConfig, SfuError, SfuEvent};

struct Client {
    sock: UdpSocket,
    peer: TestPeer,
}

impl Client {
    fn new() -> Client {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_nonblocking(true).unwrap();
        let peer = TestPeer::new(
            sock.local_addr().unwrap(),
            Instant::now(),
            TestPeerConfig::default(),
        );
        Client { sock, peer }
    }

    /// Sends what the peer wants to send, receives what arrived, runs timers.
    fn pump(&mut self) {
        let now = Instant::now();
        if self.peer.poll_timeout().is_some_and(|t| t <= now) {
            self.peer.handle_timeout(now);
        }
        let mut buf = [0u8; 2000];
        while let Ok((n, from)) = self.sock.recv_from(&mut buf) {
            self.peer.handle_datagram(Instant::now(), from, &buf[..n]);
        }
        while let Some(t) = self.peer.poll_transmit() {
            let _ = self.sock.send_to(&t.contents, t.destination);
        }
    }
}

fn pump_until(clients: &mut [Client], mut done: impl FnMut(&[Client]) -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(clients) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        for c in clients.iter_mut() {
            c.pump();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn join_connect_and_forward_over_udp() {
    let cfg = SfuConfig::new(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    );
    let (sfu, mut events) = Sfu::start(cfg).unwrap();
    assert!(sfu.is_running());
    assert_ne!(sfu.local_addr().port(), 0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut clients = vec![Client::new(), Client::new()];
    for (i, c) in clients.iter_mut().enumerate() {
        let offer = c.peer.offer(1);
        let req = JoinRequest {
            room: room_id(42),
            participant: pid(i as u64 + 1),
            user_id: user(100 + i as u64),
            offer_sdp: offer,
        };
        let answer = rt.block_on(sfu.join(req)).unwrap();
        assert!(answer.contains("a=ice-lite"));
        assert!(
            answer.contains(&format!("127.0.0.1 {}", sfu.local_addr().port())),
            "host candidate"
        );
        c.peer.accept_answer(&answer).unwrap();
    }
    // Hostile input through the async API is an error, not a crash.
    let bad = rt.block_on(sfu.join(JoinRequest {
        room: room_id(42),
        participant: pid(9),
        user_id: user(9),
        offer_sdp: "v=0".into(),
    }));
    assert!(matches!(bad, Err(SfuError::InvalidSdp(_))));
    // Garbage at the socket.
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    for len in [0usize, 1, 5, 40, 1500] {
        junk.send_to(&vec![0x80; len], sfu.local_addr()).unwrap();
    }

    pump_until(
        &mut clients,
        |c| c.iter().all(|c| c.peer.connected),
        "ICE+DTLS",
    );

    for i in 0..20 {
        clients[0].peer.send_audio(Instant::now(), &payload(i), 30);
        let until = Instant::now() + Duration::from_millis(20);
        while Instant::now() < until {
            for c in clients.iter_mut() {
                c.pump();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mid = clients[1].peer.recv_mids[0].to_string();
    pump_until(
        &mut clients,
        |c| c[1].peer.received_on(&mid).len() >= 20,
        "20 forwarded packets",
    );
    let got = clients[1].peer.received_on(&mid);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(&r.payload[..], &payload(i as u32)[..]);
    }

    let mut seen = vec![];
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(
        seen.contains(&SfuEvent::Connected {
            participant: pid(1)
        }),
        "{seen:?}"
    );
    assert!(
        seen.contains(&SfuEvent::Connected {
            participant: pid(2)
        }),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, SfuEvent::Slots { participant, slots }
        if *participant == pid(2) && slots.len() == 1 && slots[0].user_id == Some(user(100)) && slots[0].mid == mid)),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|e| matches!(
            e,
            SfuEvent::Speaking {
                participant,
                speaking: true,
                ..
            } if *participant == pid(1)
        )),
        "{seen:?}"
    );

    // Clones share the loop; shutdown stops it.
    let other = sfu.clone();
    other.shutdown();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sfu.is_running() {
        assert!(Instant::now() < deadline, "loop did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(matches!(
        rt.block_on(sfu.renegotiate(pid(1), "v=0".into())),
        Err(SfuError::Stopped)
    ));
}

#[test]
fn start_rejects_unspecified_public_ip() {
    let cfg = SfuConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    );
    assert!(matches!(Sfu::start(cfg), Err(SfuError::InvalidConfig(_))));
}

/// Listeners spread over send lanes (three threads here: the loop and two
/// send workers) each get every packet, in order, with continuous numbering.
#[test]
fn fast_path_audio_reaches_listeners_on_every_send_lane() {
    let cfg = SfuConfig {
        send_workers: 3,
        ..SfuConfig::new(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        )
    };
    let (sfu, _events) = Sfu::start(cfg).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut clients: Vec<Client> = (0..7).map(|_| Client::new()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let answer = rt
            .block_on(sfu.join(JoinRequest {
                room: room_id(7),
                participant: pid(i as u64 + 1),
                user_id: user(200 + i as u64),
                offer_sdp: c.peer.offer(1),
            }))
            .unwrap();
        c.peer.accept_answer(&answer).unwrap();
    }
    pump_until(
        &mut clients,
        |c| c.iter().all(|c| c.peer.connected),
        "ICE+DTLS",
    );
    let busy_before =
        crate::metrics::SEND_WORKER_BUSY_NANOS.load(std::sync::atomic::Ordering::Relaxed);
    const N: u32 = 30;
    for i in 0..N {
        clients[0].peer.send_audio(Instant::now(), &payload(i), 30);
        let until = Instant::now() + Duration::from_millis(20);
        while Instant::now() < until {
            for c in clients.iter_mut() {
                c.pump();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    pump_until(
        &mut clients,
        |c| {
            c[1..]
                .iter()
                .all(|c| c.peer.received_on(&c.peer.recv_mids[0].to_string()).len() >= N as usize)
        },
        "every listener receiving every packet",
    );
    for (k, c) in clients[1..].iter().enumerate() {
        let got = c.peer.received_on(&c.peer.recv_mids[0].to_string());
        assert_eq!(got.len(), N as usize, "listener {k}: no duplicates");
        for (i, r) in got.iter().enumerate() {
            assert_eq!(&r.payload[..], &payload(i as u32)[..], "listener {k}");
        }
        for w in got.windows(2) {
            assert_eq!(w[1].seq, w[0].seq + 1, "listener {k}: numbering");
        }
    }
    // Six listeners on three lanes: the two worker lanes sent some of them.
    let busy_after =
        crate::metrics::SEND_WORKER_BUSY_NANOS.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        busy_after > busy_before,
        "send workers did the work of their lanes"
    );
    sfu.shutdown();
}

/// Two SFUs (media nodes) on 127.0.0.1, each with its relay socket, hosting
/// one room: a speaker on the first is heard by a listener on the second,
/// through the relay sockets, on the slot the second SFU names in `Slots`.
#[test]
fn cascade_between_two_sfus_over_udp() {
    let node = |relay_ip: Ipv4Addr| SfuConfig {
        relay_bind: Some(SocketAddr::new(IpAddr::V4(relay_ip), 0)),
        ..SfuConfig::new(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        )
    };
    // One binds the relay to every address: it announces the public IP.
    let (a, _a_events) = Sfu::start(node(Ipv4Addr::UNSPECIFIED)).unwrap();
    let (b, mut b_events) = Sfu::start(node(Ipv4Addr::LOCALHOST)).unwrap();
    let (ea, eb) = (a.relay_endpoint().unwrap(), b.relay_endpoint().unwrap());
    for e in [&ea, &eb] {
        assert_eq!(e.addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_ne!(e.addr.port(), 0);
    }
    assert_ne!(ea.key, eb.key, "each node has a key of its own");
    assert!(
        !format!("{ea:?}").contains(&format!("{:?}", ea.key)),
        "Debug hides the key"
    );
    let no_relay = SfuConfig::new(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    );
    let (c, _) = Sfu::start(no_relay).unwrap();
    assert_eq!(c.relay_endpoint(), None);
    c.shutdown();
    // The room's peers are set before anyone joins.
    a.set_relay_peers(room_id(5), vec![eb.clone()]);
    b.set_relay_peers(room_id(5), vec![ea.clone()]);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut clients = vec![Client::new(), Client::new()];
    for (i, (sfu, cl)) in [&a, &b].into_iter().zip(clients.iter_mut()).enumerate() {
        let answer = rt
            .block_on(sfu.join(JoinRequest {
                room: room_id(5),
                participant: pid(i as u64 + 1),
                user_id: user(300 + i as u64),
                offer_sdp: cl.peer.offer(1),
            }))
            .unwrap();
        cl.peer.accept_answer(&answer).unwrap();
    }
    pump_until(
        &mut clients,
        |c| c.iter().all(|c| c.peer.connected),
        "ICE+DTLS",
    );
    for i in 0..30 {
        clients[0].peer.send_audio(Instant::now(), &payload(i), 20);
        let until = Instant::now() + Duration::from_millis(20);
        while Instant::now() < until {
            for c in clients.iter_mut() {
                c.pump();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mid = clients[1].peer.recv_mids[0].to_string();
    // The first packets, before the level counts as loud, are not relayed.
    pump_until(
        &mut clients,
        |c| c[1].peer.received_on(&mid).len() >= 25,
        "relayed packets at the listener",
    );
    let got = clients[1].peer.received_on(&mid);
    let first = 30 - got.len() as u32;
    for (k, r) in got.iter().enumerate() {
        assert_eq!(&r.payload[..], &payload(first + k as u32)[..]);
    }
    let mut seen = vec![];
    while let Ok(e) = b_events.try_recv() {
        seen.push(e);
    }
    assert!(
        seen.iter().any(|e| matches!(e, SfuEvent::Slots { participant, slots }
            if *participant == pid(2) && slots[0].user_id == Some(user(300)) && slots[0].mid == mid)),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|e| matches!(e, SfuEvent::Speaking { .. })),
        "no Speaking for a remote publisher: {seen:?}"
    );
    a.shutdown();
    b.shutdown();
}
