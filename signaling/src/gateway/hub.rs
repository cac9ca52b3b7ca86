//! The hub routes dispatch events to gateway sessions and keeps what RESUME needs.
//!
//! Each event is serialized once (`Dispatch`) and shared by every recipient; a recipient's
//! frame adds only its own sequence number. A session keeps its last `BUFFER` dispatches so a
//! client that lost its connection can RESUME without losing any; its live connection, if any,
//! gets them through a bounded queue. A connection that lets its queue fill up is cut (close
//! 4008, resumable) rather than having events dropped: the buffer still has them.
//!
//! Routing state (who is online in which server) covers only users with a session on this
//! node, so it stays as small as the node's audience. Across nodes, the event bus carries
//! events and each node's hub delivers to its own sessions.

use super::presence::Status;
use confab_chat::Snowflake;
use dashmap::DashMap;
use parking_lot::Mutex;
use smallvec::SmallVec;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Dispatches kept per session for RESUME.
pub const BUFFER: usize = 1000;
/// How long a disconnected session may be resumed.
pub const RESUME_WINDOW: Duration = Duration::from_secs(60);
/// A connection's outgoing queue. Larger than BUFFER so a full replay fits.
pub const QUEUE: usize = BUFFER + 1024;

/// One event, serialized once.
#[derive(Debug)]
pub struct Dispatch {
    pub t: &'static str,
    /// The JSON of `d`.
    pub d: Box<str>,
}

impl Dispatch {
    pub fn new<T: serde::Serialize>(t: &'static str, d: &T) -> Arc<Self> {
        let d = serde_json::to_string(d).unwrap_or_else(|_| "null".into());
        Arc::new(Dispatch {
            t,
            d: d.into_boxed_str(),
        })
    }

    /// The frame a session sends for this dispatch at sequence `seq`.
    pub fn frame(&self, seq: u64) -> String {
        let mut s = String::with_capacity(self.d.len() + self.t.len() + 40);
        s.push_str("{\"op\":0,\"s\":");
        s.push_str(itoa_u64(seq).as_str());
        s.push_str(",\"t\":\"");
        s.push_str(self.t);
        s.push_str("\",\"d\":");
        s.push_str(&self.d);
        s.push('}');
        s
    }
}

fn itoa_u64(v: u64) -> String {
    v.to_string()
}

/// Who receives an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every member of a server.
    Server(Snowflake),
    /// Every member of a server but one (e.g. the typist).
    ServerExcept(Snowflake, Snowflake),
    /// Every session of one user.
    User(Snowflake),
    /// Every session of these users.
    Users(Vec<Snowflake>),
    /// One session.
    Session(Arc<str>),
}

/// An item on a connection's queue.
pub type Outbound = (u64, Arc<Dispatch>);

struct SessionState {
    seq: u64,
    buffer: VecDeque<Outbound>,
    conn: Option<(u64, mpsc::Sender<Outbound>)>,
    disconnected_at: Option<Instant>,
}

/// A gateway session: survives its connection for RESUME_WINDOW.
pub struct Session {
    pub id: Arc<str>,
    pub user_id: Snowflake,
    pub auth_session: Snowflake,
    state: Mutex<SessionState>,
    /// Set when the connection was cut for being too slow (close 4008).
    pub too_slow: AtomicBool,
    /// Chosen presence status.
    pub status: Mutex<Status>,
    /// Cancelled when the session is ended from elsewhere (logout, session revoked): its
    /// connection closes with 4004 and it cannot be resumed.
    pub ended: tokio_util::sync::CancellationToken,
}

impl Session {
    /// Appends a dispatch and hands it to the live connection, if any.
    fn push(&self, d: &Arc<Dispatch>) {
        let mut st = self.state.lock();
        st.seq += 1;
        let item = (st.seq, d.clone());
        // READY is never replayed (a client that can RESUME has it: it carries the session
        // id), and it is the largest dispatch: keeping it would cost every idle session.
        if d.t != "READY" {
            if st.buffer.len() == BUFFER {
                st.buffer.pop_front();
            }
            st.buffer.push_back(item.clone());
        }
        if let Some((_, tx)) = &st.conn {
            match tx.try_send(item) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.too_slow.store(true, Ordering::Relaxed);
                    st.conn = None;
                    st.disconnected_at = Some(Instant::now());
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    st.conn = None;
                    st.disconnected_at.get_or_insert_with(Instant::now);
                }
            }
        }
    }

    pub fn seq(&self) -> u64 {
        self.state.lock().seq
    }

    pub fn connected(&self) -> bool {
        self.state.lock().conn.is_some()
    }
}

/// Result of a RESUME attempt.
pub enum Resume {
    /// Attached; the missed dispatches are already queued.
    Ok(Arc<Session>, mpsc::Receiver<Outbound>, u64),
    /// Unknown, expired, another user's, or the missed events are gone.
    Invalid,
}

#[derive(Default)]
pub struct Hub {
    sessions: DashMap<Arc<str>, Arc<Session>>,
    /// Sessions per user (connected or resumable).
    users: DashMap<Snowflake, SmallVec<[Arc<Session>; 2]>>,
    /// Users with a session here, per server.
    servers: DashMap<Snowflake, HashSet<Snowflake>>,
    /// Servers per user with a session here.
    user_servers: DashMap<Snowflake, HashSet<Snowflake>>,
    /// Friends per user with a session here (presence goes to friends and co-members only).
    friends: DashMap<Snowflake, HashSet<Snowflake>>,
    /// Login sessions ended recently, with when: an IDENTIFY that authenticated just before
    /// the end but opens its gateway session just after must still be ended.
    ended_auth: DashMap<Snowflake, Instant>,
    conn_ids: AtomicU64,
    pub dispatched: AtomicU64,
}

/// How long `ended_auth` remembers an ended login session (far longer than an IDENTIFY takes).
const ENDED_MEMORY: Duration = Duration::from_secs(60);

impl Hub {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Delivers a dispatch to every session the target names.
    pub fn deliver(&self, target: &Target, d: &Arc<Dispatch>) {
        let mut n = 0u64;
        let mut to_user = |uid: &Snowflake| {
            if let Some(list) = self.users.get(uid) {
                for s in list.iter() {
                    s.push(d);
                    n += 1;
                }
            }
        };
        match target {
            Target::Server(sid) => {
                if let Some(users) = self.servers.get(sid) {
                    users.iter().for_each(&mut to_user);
                }
            }
            Target::ServerExcept(sid, except) => {
                if let Some(users) = self.servers.get(sid) {
                    users.iter().filter(|u| *u != except).for_each(&mut to_user);
                }
            }
            Target::User(uid) => to_user(uid),
            Target::Users(list) => list.iter().for_each(&mut to_user),
            Target::Session(id) => {
                if let Some(s) = self.sessions.get(id) {
                    s.push(d);
                    n += 1;
                }
            }
        }
        self.dispatched.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("confab_gateway_dispatches_total").increment(n);
    }

    /// Creates a session for an IDENTIFY and attaches its connection. `servers` are the
    /// user's servers, for routing.
    pub fn open(
        &self,
        user_id: Snowflake,
        auth_session: Snowflake,
        servers: &[Snowflake],
    ) -> (Arc<Session>, mpsc::Receiver<Outbound>, u64) {
        let id: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
        let (tx, rx) = mpsc::channel(QUEUE);
        let conn = self.conn_ids.fetch_add(1, Ordering::Relaxed);
        let session = Arc::new(Session {
            id: id.clone(),
            user_id,
            auth_session,
            state: Mutex::new(SessionState {
                seq: 0,
                buffer: VecDeque::new(),
                conn: Some((conn, tx)),
                disconnected_at: None,
            }),
            too_slow: AtomicBool::new(false),
            status: Mutex::new(Status::Online),
            ended: tokio_util::sync::CancellationToken::new(),
        });
        if self.ended_auth.contains_key(&auth_session) {
            session.ended.cancel();
        }
        self.sessions.insert(id, session.clone());
        self.users.entry(user_id).or_default().push(session.clone());
        for sid in servers {
            self.add_member(*sid, user_id);
        }
        (session, rx, conn)
    }

    /// Reattaches a connection to a session and queues every dispatch after `seq`.
    pub fn resume(&self, session_id: &str, user_id: Snowflake, seq: u64) -> Resume {
        let Some(session) = self.sessions.get(session_id).map(|s| s.clone()) else {
            return Resume::Invalid;
        };
        if session.user_id != user_id || session.ended.is_cancelled() {
            return Resume::Invalid;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let conn = self.conn_ids.fetch_add(1, Ordering::Relaxed);
        {
            let mut st = session.state.lock();
            if seq > st.seq {
                return Resume::Invalid;
            }
            let first = st.buffer.front().map_or(st.seq + 1, |(s, _)| *s);
            if seq + 1 < first {
                // Some missed events were evicted from the buffer.
                return Resume::Invalid;
            }
            for item in st.buffer.iter().filter(|(s, _)| *s > seq) {
                // Cannot fail: the queue is larger than the buffer and new.
                let _ = tx.try_send(item.clone());
            }
            st.conn = Some((conn, tx));
            st.disconnected_at = None;
        }
        session.too_slow.store(false, Ordering::Relaxed);
        Resume::Ok(session, rx, conn)
    }

    /// The connection `conn` of a session ended; the session stays resumable for a while.
    pub fn detach(&self, session: &Session, conn: u64) {
        let mut st = session.state.lock();
        if st.conn.as_ref().is_some_and(|(c, _)| *c == conn) {
            st.conn = None;
        }
        // A connection replaced by a RESUME elsewhere detaches after the new one attached:
        // the session is not disconnected then.
        if st.conn.is_none() {
            st.disconnected_at.get_or_insert_with(Instant::now);
        }
    }

    /// Ends a session at once (normal close, logout).
    pub fn close(&self, session_id: &str) -> Option<Arc<Session>> {
        let (_, session) = self.sessions.remove(session_id)?;
        let uid = session.user_id;
        let mut last = false;
        if let Some(mut list) = self.users.get_mut(&uid) {
            list.retain(|s| s.id.as_ref() != session_id);
            last = list.is_empty();
        }
        if last {
            self.users.remove_if(&uid, |_, l| l.is_empty());
            self.friends.remove(&uid);
            if let Some((_, servers)) = self.user_servers.remove(&uid) {
                for sid in servers {
                    if let Some(mut set) = self.servers.get_mut(&sid) {
                        set.remove(&uid);
                    }
                    self.servers.remove_if(&sid, |_, s| s.is_empty());
                }
            }
        }
        Some(session)
    }

    /// Sessions to close: their connection has been gone longer than the resume window, or
    /// they were ended (logout elsewhere, password change, ...) while disconnected.
    pub fn expired(&self) -> Vec<Arc<str>> {
        let now = Instant::now();
        self.ended_auth
            .retain(|_, t| now.duration_since(*t) < ENDED_MEMORY);
        self.sessions
            .iter()
            .filter(|s| {
                let st = s.state.lock();
                st.disconnected_at.is_some_and(|t| {
                    now.duration_since(t) > RESUME_WINDOW || s.ended.is_cancelled()
                }) && st.conn.is_none()
            })
            .map(|s| s.id.clone())
            .collect()
    }

    /// Ends the gateway sessions opened with these login sessions of `user_id`: a connected
    /// one closes with 4004, none can RESUME, and one opened a moment later starts ended.
    pub fn end_auth_sessions(&self, user_id: Snowflake, auth_sessions: &[Snowflake]) {
        let now = Instant::now();
        for a in auth_sessions {
            self.ended_auth.insert(*a, now);
        }
        for s in self.sessions_of(user_id) {
            if auth_sessions.contains(&s.auth_session) {
                s.ended.cancel();
            }
        }
    }

    /// Routes a server's events to a user (joined or created it) if they have sessions here.
    pub fn add_member(&self, server_id: Snowflake, user_id: Snowflake) {
        if !self.users.contains_key(&user_id) {
            return;
        }
        self.servers.entry(server_id).or_default().insert(user_id);
        self.user_servers
            .entry(user_id)
            .or_default()
            .insert(server_id);
    }

    /// Stops routing a server's events to a user (left, removed, or the server is gone).
    pub fn remove_member(&self, server_id: Snowflake, user_id: Snowflake) {
        if let Some(mut set) = self.servers.get_mut(&server_id) {
            set.remove(&user_id);
        }
        self.servers.remove_if(&server_id, |_, s| s.is_empty());
        if let Some(mut set) = self.user_servers.get_mut(&user_id) {
            set.remove(&server_id);
        }
    }

    pub fn remove_server(&self, server_id: Snowflake) {
        if let Some((_, users)) = self.servers.remove(&server_id) {
            for u in users {
                if let Some(mut set) = self.user_servers.get_mut(&u) {
                    set.remove(&server_id);
                }
            }
        }
    }

    /// Users with a session here who share a server with `user_id` (presence recipients).
    pub fn co_members(&self, user_id: Snowflake) -> Vec<Snowflake> {
        let mut out = HashSet::new();
        if let Some(servers) = self.user_servers.get(&user_id) {
            for sid in servers.iter() {
                if let Some(users) = self.servers.get(sid) {
                    out.extend(users.iter().copied());
                }
            }
        }
        out.remove(&user_id);
        out.into_iter().collect()
    }

    /// Users with a session here who are members of the server.
    pub fn users_in(&self, server_id: Snowflake) -> Vec<Snowflake> {
        self.servers
            .get(&server_id)
            .map(|users| users.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Records a user's friends (at IDENTIFY) for presence routing.
    pub fn set_friends(&self, user_id: Snowflake, friends: impl IntoIterator<Item = Snowflake>) {
        if self.users.contains_key(&user_id) {
            self.friends.insert(user_id, friends.into_iter().collect());
        }
    }

    /// Two users became friends (`true`) or stopped being friends.
    pub fn set_friendship(&self, a: Snowflake, b: Snowflake, friends: bool) {
        for (x, y) in [(a, b), (b, a)] {
            if let Some(mut set) = self.friends.get_mut(&x) {
                if friends {
                    set.insert(y);
                } else {
                    set.remove(&y);
                }
            }
        }
    }

    /// Who sees a user's presence: users with a session here who share a server with them or
    /// are their friends. Nobody else.
    pub fn presence_audience(&self, user_id: Snowflake) -> Vec<Snowflake> {
        let mut out: HashSet<Snowflake> = self.co_members(user_id).into_iter().collect();
        if let Some(friends) = self.friends.get(&user_id) {
            out.extend(friends.iter().filter(|f| self.users.contains_key(f)));
        }
        out.remove(&user_id);
        out.into_iter().collect()
    }

    /// A user's sessions on this node.
    pub fn sessions_of(&self, user_id: Snowflake) -> Vec<Arc<Session>> {
        self.users
            .get(&user_id)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.get(id).map(|s| s.clone())
    }

    /// Whether any session of the user has a live connection.
    pub fn is_connected(&self, user_id: Snowflake) -> bool {
        self.users
            .get(&user_id)
            .is_some_and(|l| l.iter().any(|s| s.connected()))
    }

    /// The presence others see for a user on this node.
    pub fn presence_of(&self, user_id: Snowflake) -> Status {
        let Some(list) = self.users.get(&user_id) else {
            return Status::Offline;
        };
        let mut best = Status::Offline;
        for s in list.iter().filter(|s| s.connected()) {
            let st = *s.status.lock();
            if st.rank() > best.rank() {
                best = st;
            }
        }
        best.visible()
    }

    /// All sessions, e.g. to tell them the server is shutting down.
    pub fn all_sessions(&self) -> Vec<Arc<Session>> {
        self.sessions.iter().map(|s| s.clone()).collect()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u32) -> Arc<Dispatch> {
        Dispatch::new("TEST", &n)
    }

    #[test]
    fn routes_by_server_and_resumes_exactly_the_missed_events() {
        let hub = Hub::new();
        let (a, mut rx_a, conn_a) = hub.open(Snowflake(1), Snowflake(10), &[Snowflake(100)]);
        let (_b, mut rx_b, _) = hub.open(
            Snowflake(2),
            Snowflake(20),
            &[Snowflake(100), Snowflake(200)],
        );
        hub.deliver(&Target::Server(Snowflake(100)), &d(1));
        hub.deliver(&Target::Server(Snowflake(200)), &d(2));
        assert_eq!(rx_a.try_recv().unwrap().0, 1);
        assert!(rx_a.try_recv().is_err(), "A is not in server 200");
        assert_eq!(rx_b.try_recv().unwrap().1.d.as_ref(), "1");
        assert_eq!(rx_b.try_recv().unwrap().1.d.as_ref(), "2");

        // A drops; events keep coming; A resumes from seq 1 and gets 2..=4 once, in order.
        hub.detach(&a, conn_a);
        drop(rx_a);
        for i in 3..6 {
            hub.deliver(&Target::User(Snowflake(1)), &d(i));
        }
        let Resume::Ok(_, mut rx, _) = hub.resume(&a.id, Snowflake(1), 1) else {
            panic!("resume failed")
        };
        let got: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|(s, _)| s)
            .collect();
        assert_eq!(got, vec![2, 3, 4]);
        // Wrong user or a sequence from the future cannot resume.
        assert!(matches!(
            hub.resume(&a.id, Snowflake(2), 1),
            Resume::Invalid
        ));
        assert!(matches!(
            hub.resume(&a.id, Snowflake(1), 99),
            Resume::Invalid
        ));
    }

    /// Found by the gateway_session fuzz target's first model (which let READY come at any
    /// point): READY is never replayed, so a RESUME from before it (seq 0, a client that never
    /// had the session) is refused; from READY on, only the other dispatches come back.
    #[test]
    fn resume_never_replays_ready_and_needs_it_seen() {
        let hub = Hub::new();
        let (a, rx, conn) = hub.open(Snowflake(1), Snowflake(10), &[]);
        hub.deliver(&Target::Session(a.id.clone()), &Dispatch::new("READY", &1));
        hub.deliver(&Target::User(Snowflake(1)), &d(2));
        hub.detach(&a, conn);
        drop(rx);
        assert!(matches!(
            hub.resume(&a.id, Snowflake(1), 0),
            Resume::Invalid
        ));
        let Resume::Ok(_, mut rx, _) = hub.resume(&a.id, Snowflake(1), 1) else {
            panic!("resume after READY failed")
        };
        let got: Vec<(u64, &str)> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|(s, d)| (s, d.t))
            .collect();
        assert_eq!(got, vec![(2, "TEST")]);
        // Resuming again from READY's seq still works (nothing was evicted).
        assert!(matches!(hub.resume(&a.id, Snowflake(1), 1), Resume::Ok(..)));
    }

    #[test]
    fn evicted_events_make_resume_invalid_and_slow_clients_are_cut() {
        let hub = Hub::new();
        let (a, rx, conn) = hub.open(Snowflake(1), Snowflake(10), &[]);
        // Nobody reads rx: the queue fills, the connection is cut, nothing is lost from the buffer.
        for i in 0..(QUEUE as u32 + 5) {
            hub.deliver(&Target::User(Snowflake(1)), &d(i));
        }
        assert!(a.too_slow.load(Ordering::Relaxed));
        assert!(!a.connected());
        drop(rx);
        hub.detach(&a, conn);
        // More than BUFFER events were produced: resuming from 0 is impossible...
        assert!(matches!(
            hub.resume(&a.id, Snowflake(1), 0),
            Resume::Invalid
        ));
        // ...but from a recent sequence it works.
        let last = a.seq();
        assert!(matches!(
            hub.resume(&a.id, Snowflake(1), last - 10),
            Resume::Ok(..)
        ));
    }

    #[test]
    fn presence_reaches_co_members_and_friends_only() {
        let hub = Hub::new();
        let (u1, u2, u3, u4) = (Snowflake(1), Snowflake(2), Snowflake(3), Snowflake(4));
        hub.open(u1, Snowflake(10), &[Snowflake(100)]);
        hub.open(u2, Snowflake(20), &[Snowflake(100)]);
        hub.open(u3, Snowflake(30), &[]);
        hub.open(u4, Snowflake(40), &[]);
        hub.set_friends(u1, [u3]);
        hub.set_friends(u3, [u1]);
        let mut got = hub.presence_audience(u1);
        got.sort();
        assert_eq!(got, vec![u2, u3], "co-member and friend, not the stranger");
        assert!(hub.presence_audience(u4).is_empty());
        hub.set_friendship(u1, u3, false);
        assert_eq!(hub.presence_audience(u1), vec![u2]);
        assert!(hub.presence_audience(u3).is_empty());
    }

    #[test]
    fn ended_login_sessions_end_their_gateway_sessions_only() {
        let hub = Hub::new();
        let user = Snowflake(1);
        let (a, _rx_a, conn_a) = hub.open(user, Snowflake(10), &[]);
        let (b, _rx_b, _) = hub.open(user, Snowflake(20), &[]);
        hub.detach(&a, conn_a);
        hub.end_auth_sessions(user, &[Snowflake(10)]);
        assert!(a.ended.is_cancelled());
        assert!(
            !b.ended.is_cancelled(),
            "another login session of the same user"
        );
        // Disconnected and ended: not resumable, and closed by the next sweep.
        assert!(matches!(hub.resume(&a.id, user, 0), Resume::Invalid));
        assert_eq!(hub.expired(), vec![a.id.clone()]);
        // An IDENTIFY that authenticated just before the end opens an ended session.
        let (late, _rx, _) = hub.open(user, Snowflake(10), &[]);
        assert!(late.ended.is_cancelled());
    }

    #[test]
    fn frame_format() {
        let f = Dispatch::new("MESSAGE_CREATE", &serde_json::json!({"a": 1})).frame(7);
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["op"], 0);
        assert_eq!(v["s"], 7);
        assert_eq!(v["t"], "MESSAGE_CREATE");
        assert_eq!(v["d"]["a"], 1);
    }
}
