//! The gateway's session state machine (the hub): sessions opened, detached,
//! resumed and closed in any order, dispatches routed by server, user and
//! session, checked against a model — every connection gets exactly the
//! sequence numbers it should, in order, a RESUME replays exactly what was
//! missed, and routing follows membership.
#![no_main]

use arbitrary::Arbitrary;
use confab_chat::{ServerId, SessionId, Snowflake, UserId};
use confab_signaling::gateway::events::Event;
use confab_signaling::gateway::hub::{Dispatch, Hub, Outbox, Resume, Session, Target};
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::Arc;

const USERS: u8 = 4;
const SERVERS: u8 = 3;

#[derive(Arbitrary, Debug)]
enum Op {
    Open {
        user: u8,
        servers: u8,
    },
    Deliver {
        to: To,
    },
    Drain {
        slot: u8,
    },
    Detach {
        slot: u8,
    },
    Resume {
        slot: u8,
        other_user: bool,
        back: u16,
    },
    Close {
        slot: u8,
    },
    AddMember {
        server: u8,
        user: u8,
    },
    RemoveMember {
        server: u8,
        user: u8,
    },
    RemoveServer {
        server: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum To {
    Server(u8),
    ServerExcept(u8, u8),
    User(u8),
    Users(Vec<u8>),
    Session(u8),
}

struct Slot {
    session: Arc<Session>,
    user: i64,
    rx: Option<Outbox>,
    conn: u64,
    /// Sequence numbers the current receiver must yield, in order.
    expect: VecDeque<u64>,
    /// Dispatches this session was given (its seq).
    seq: u64,
    /// Seqs that were READY (never replayed).
    ready: HashSet<u64>,
    closed: bool,
}

#[derive(Default)]
struct Model {
    slots: Vec<Slot>,
    routes: BTreeSet<(i64, i64)>,
}

fn user(n: u8) -> i64 {
    i64::from(n % USERS) + 1
}
fn server(n: u8) -> i64 {
    i64::from(n % SERVERS) + 100
}

fn uid_of(n: i64) -> UserId {
    UserId::new(Snowflake(n))
}

fn sid_of(n: i64) -> ServerId {
    ServerId::new(Snowflake(n))
}

impl Model {
    fn live(&self, user: i64) -> bool {
        self.slots.iter().any(|s| s.user == user && !s.closed)
    }

    fn slot(&mut self, n: u8) -> Option<&mut Slot> {
        let len = self.slots.len();
        (len > 0).then(|| &mut self.slots[n as usize % len])
    }

    fn check_routes(&self, hub: &Hub) {
        for s in 0..SERVERS {
            let sid = server(s);
            let mut got: Vec<i64> = hub.users_in(sid_of(sid)).iter().map(|u| u.get()).collect();
            got.sort_unstable();
            let want: Vec<i64> = self
                .routes
                .iter()
                .filter(|(_, s)| *s == sid)
                .map(|(u, _)| *u)
                .collect();
            assert_eq!(got, want, "users routed for server {sid}");
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    // Few enough that no connection queue fills up (that path cuts the
    // connection, tested elsewhere).
    if ops.len() > 200 {
        return;
    }
    let hub = Hub::new();
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Open { user: u, servers } => {
                let uid = user(u);
                let sids: Vec<ServerId> = (0..SERVERS)
                    .filter(|b| servers & (1 << b) != 0)
                    .map(|b| sid_of(server(b)))
                    .collect();
                let (session, rx, conn) =
                    hub.open(uid_of(uid), SessionId::new(Snowflake(uid + 50)), &sids);
                assert_eq!(session.user_id, uid_of(uid));
                // Seq 1 is reserved for READY.
                assert_eq!(session.seq(), 1);
                assert!(session.connected());
                for s in &sids {
                    m.routes.insert((uid, s.get()));
                }
                // As IDENTIFY does: READY is the session's first dispatch.
                session.push_ready(&Dispatch::new(Event::Ready, &serde_json::json!({"v": 1})));
                m.slots.push(Slot {
                    session,
                    user: uid,
                    rx: Some(rx),
                    conn,
                    expect: VecDeque::from([1]),
                    seq: 1,
                    ready: HashSet::from([1]),
                    closed: false,
                });
            }
            Op::Deliver { to } => {
                let (target, recipients): (Target, Vec<usize>) = {
                    let open = |pred: &dyn Fn(&Slot) -> bool| -> Vec<usize> {
                        (0..m.slots.len())
                            .filter(|&i| !m.slots[i].closed && pred(&m.slots[i]))
                            .collect()
                    };
                    match to {
                        To::Server(s) => {
                            let sid = server(s);
                            let r = open(&|sl| m.routes.contains(&(sl.user, sid)));
                            (Target::Server(sid_of(sid)), r)
                        }
                        To::ServerExcept(s, except) => {
                            let (sid, ex) = (server(s), user(except));
                            let r = open(&|sl| sl.user != ex && m.routes.contains(&(sl.user, sid)));
                            (Target::ServerExcept(sid_of(sid), uid_of(ex)), r)
                        }
                        To::User(u) => {
                            let uid = user(u);
                            (Target::User(uid_of(uid)), open(&|sl| sl.user == uid))
                        }
                        To::Users(list) => {
                            let list: Vec<i64> = list.iter().take(8).map(|u| user(*u)).collect();
                            // Each listed user is delivered to once per listing.
                            let mut r = Vec::new();
                            for uid in &list {
                                r.extend(open(&|sl| sl.user == *uid));
                            }
                            (Target::Users(list.into_iter().map(uid_of).collect()), r)
                        }
                        To::Session(n) => match m.slot(n) {
                            Some(sl) => {
                                let id = sl.session.id.clone();
                                let r = if sl.closed {
                                    vec![]
                                } else {
                                    vec![n as usize % m.slots.len()]
                                };
                                (Target::Session(id), r)
                            }
                            None => (Target::Session(Arc::from("no-such-session")), vec![]),
                        },
                    }
                };
                let d = Dispatch::new(Event::MessageCreate, &serde_json::json!({"n": 1}));
                hub.deliver(&target, &d);
                for i in recipients {
                    let sl = &mut m.slots[i];
                    sl.seq += 1;
                    if sl.rx.is_some() {
                        sl.expect.push_back(sl.seq);
                    }
                }
                for sl in &m.slots {
                    assert_eq!(sl.session.seq(), sl.seq, "dispatches counted per session");
                }
            }
            Op::Drain { slot } => {
                let Some(sl) = m.slot(slot) else { continue };
                if let Some(rx) = sl.rx.as_ref() {
                    while let Ok((seq, d)) = rx.try_recv() {
                        assert_eq!(sl.expect.pop_front(), Some(seq), "next frame's seq");
                        assert_eq!(d.t == Event::Ready, sl.ready.contains(&seq));
                        let frame: serde_json::Value =
                            serde_json::from_str(&d.frame(seq)).expect("frames are JSON");
                        assert_eq!(frame["s"].as_u64(), Some(seq));
                    }
                    assert!(sl.expect.is_empty(), "frames missing: {:?}", sl.expect);
                }
            }
            Op::Detach { slot } => {
                let Some(sl) = m.slot(slot) else { continue };
                hub.detach(&sl.session, sl.conn);
                assert!(!sl.session.connected());
                sl.rx = None;
                sl.expect.clear();
            }
            Op::Resume {
                slot,
                other_user,
                back,
            } => {
                let Some(sl) = m.slot(slot) else { continue };
                let as_user = if other_user {
                    sl.user % i64::from(USERS) + 1
                } else {
                    sl.user
                };
                // `back` beyond the current seq asks for the future: refused. So is a
                // RESUME from before READY (seq 0): such a client never had the session.
                let (seq, future) = match sl.seq.checked_sub(u64::from(back)) {
                    Some(s) => (s, false),
                    None => (u64::from(back), true),
                };
                let ok = !sl.closed && !other_user && !future && seq >= 1;
                match hub.resume(&sl.session.id, uid_of(as_user), seq) {
                    Resume::Ok(session, rx, conn) => {
                        assert!(ok, "resume must be refused (closed {}, other {other_user}, future {future})", sl.closed);
                        assert!(Arc::ptr_eq(&session, &sl.session));
                        assert!(session.connected());
                        sl.rx = Some(rx);
                        sl.conn = conn;
                        sl.expect = (seq + 1..=sl.seq)
                            .filter(|s| !sl.ready.contains(s))
                            .collect();
                    }
                    Resume::Invalid => assert!(!ok, "resume at {seq} of {} refused", sl.seq),
                }
            }
            Op::Close { slot } => {
                let Some(sl) = m.slot(slot) else { continue };
                let closed = hub.close(&sl.session.id);
                assert_eq!(closed.is_some(), !sl.closed);
                sl.closed = true;
                let uid = sl.user;
                if !m.live(uid) {
                    m.routes.retain(|(u, _)| *u != uid);
                    assert!(hub.sessions_of(uid_of(uid)).is_empty());
                }
            }
            Op::AddMember { server: s, user: u } => {
                hub.add_member(sid_of(server(s)), uid_of(user(u)));
                if m.live(user(u)) {
                    m.routes.insert((user(u), server(s)));
                }
            }
            Op::RemoveMember { server: s, user: u } => {
                hub.remove_member(sid_of(server(s)), uid_of(user(u)));
                m.routes.remove(&(user(u), server(s)));
            }
            Op::RemoveServer { server: s } => {
                hub.remove_server(sid_of(server(s)));
                m.routes.retain(|(_, sid)| *sid != server(s));
            }
        }
        m.check_routes(&hub);
    }
});
