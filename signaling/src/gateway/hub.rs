//! The hub routes dispatch events to this node's gateway sessions: it resolves a `Target`
//! through the routing index (`routing`: who is in which server, whose friends) to users, and
//! hands each event to their sessions (`sessions`: replay buffers for RESUME and connection
//! queues). Each event is serialized once (`Dispatch`) and shared by every recipient; a
//! recipient's frame adds only its own sequence number.
//!
//! Both halves cover only users with a session on this node. Across nodes, the event bus
//! carries events and each node's hub delivers to its own sessions; a cluster keeps the
//! routing index per node and puts session metadata where other nodes can resume it.

pub use super::dispatch::{Dispatch, Target};
use super::presence::{PresenceAudience, RemotePresence, Status};
use super::routing::{Audience, Interest, NoInterest, RoutingIndex};
pub use super::sessions::{
    Outbound, Outbox, Resume, Session, SessionRegistry, BUFFER, QUEUE, RESUME_WINDOW,
};
use confab_chat::{ServerId, SessionId, UserId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A user's state as push notifications see it (`Hub::push_presence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushPresence {
    pub dnd: bool,
    pub focused: bool,
}

pub struct Hub {
    sessions: SessionRegistry,
    routes: RoutingIndex,
    /// Told which audiences this node has sessions for (a cluster bus subscribes to them).
    interest: Arc<dyn Interest>,
    /// Other nodes' view of their users' presence (a cluster).
    pub remote_presence: RemotePresence,
    pub dispatched: AtomicU64,
    /// Held while a user's first session opens or last one closes, and while a new member
    /// is routed: a close that found no session left and forgets the user's routes must not
    /// interleave with an open that routes them (a page reloaded while its old connection
    /// closes would leave the new session with no routes, deaf to its servers' events).
    /// Opens and closes are rare next to dispatches, which never take it.
    lifecycle: parking_lot::Mutex<()>,
}

impl Hub {
    pub fn new() -> Arc<Self> {
        Self::with_interest(Arc::new(NoInterest))
    }

    /// A hub that tells `interest` which servers and users it has sessions for.
    pub fn with_interest(interest: Arc<dyn Interest>) -> Arc<Self> {
        Arc::new(Self {
            sessions: SessionRegistry::default(),
            routes: RoutingIndex::default(),
            interest,
            remote_presence: RemotePresence::default(),
            dispatched: AtomicU64::new(0),
            lifecycle: parking_lot::Mutex::new(()),
        })
    }

    fn route(&self, server_id: ServerId, user_id: UserId) {
        if self.routes.add_member(server_id, user_id) {
            self.interest.watch(Audience::Server(server_id));
        }
    }

    /// Delivers a dispatch to every session the target names.
    pub fn deliver(&self, target: &Target, d: &Arc<Dispatch>) {
        let mut n = 0u64;
        let mut to_user = |uid: &UserId| n += self.sessions.push_to_user(uid, d);
        match target {
            Target::Server(sid) => self.routes.for_each_in(*sid, &mut to_user),
            Target::ServerExcept(sid, except) => self.routes.for_each_in(*sid, |u| {
                if u != except {
                    to_user(u)
                }
            }),
            Target::User(uid) => to_user(uid),
            Target::Users(list) => list.iter().for_each(&mut to_user),
            Target::Session(id) => {
                if let Some(s) = self.sessions.session(id) {
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
        user_id: UserId,
        auth_session: SessionId,
        servers: &[ServerId],
    ) -> (Arc<Session>, Outbox, u64) {
        self.open_with(user_id, auth_session, servers, None)
    }

    /// `open` for a bot: its session receives only the events of its `intents`.
    pub fn open_with(
        &self,
        user_id: UserId,
        auth_session: SessionId,
        servers: &[ServerId],
        intents: Option<super::intents::Intents>,
    ) -> (Arc<Session>, Outbox, u64) {
        let _lifecycle = self.lifecycle.lock();
        if !self.sessions.has_user(&user_id) {
            self.interest.watch(Audience::User(user_id));
        }
        let bot = intents.is_some();
        let opened = self.sessions.open(user_id, auth_session, intents);
        for sid in servers {
            self.route(*sid, user_id);
        }
        // A bot sees presences as its intents allow, in every server: it follows them all.
        if bot {
            self.subscribe_presences(&opened.0, servers);
        }
        opened
    }

    /// Marks a server large (READY found more members than the large threshold): its
    /// members' presences then go only to the sessions that follow it.
    pub fn set_large(&self, server_id: ServerId, large: bool) {
        self.routes.set_large(server_id, large);
    }

    /// Op 17: the session follows the presences of these servers (those the user is a member
    /// of; others are ignored, so nobody learns who is online in a server they are not in)
    /// instead of those it followed.
    pub fn subscribe_presences(&self, session: &Session, servers: &[ServerId]) {
        let member_of: std::collections::HashSet<ServerId> = self
            .routes
            .servers_of(session.user_id)
            .into_iter()
            .collect();
        let mut wanted: Vec<ServerId> = servers
            .iter()
            .copied()
            .filter(|s| member_of.contains(s))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut followed = session.presence_servers.lock();
        for sid in followed.iter().filter(|s| !wanted.contains(s)) {
            self.routes.unfollow(*sid, session.user_id);
        }
        for sid in wanted.iter().filter(|s| !followed.contains(s)) {
            self.routes.follow(*sid, session.user_id);
        }
        *followed = wanted;
    }

    /// Reattaches a connection to a session and queues every dispatch after `seq`.
    pub fn resume(&self, session_id: &str, user_id: UserId, seq: u64) -> Resume {
        self.sessions.resume(session_id, user_id, seq)
    }

    /// The connection `conn` of a session ended; the session stays resumable for a while.
    pub fn detach(&self, session: &Session, conn: u64) {
        self.sessions.detach(session, conn)
    }

    /// Ends a session at once (normal close, logout).
    pub fn close(&self, session_id: &str) -> Option<Arc<Session>> {
        let _lifecycle = self.lifecycle.lock();
        let (session, last) = self.sessions.close(session_id)?;
        for sid in std::mem::take(&mut *session.presence_servers.lock()) {
            self.routes.unfollow(sid, session.user_id);
        }
        if last {
            for sid in self.routes.forget_user(session.user_id) {
                self.interest.unwatch(Audience::Server(sid));
            }
            self.interest.unwatch(Audience::User(session.user_id));
        }
        Some(session)
    }

    /// Sessions to close (see `SessionRegistry::expired`).
    pub fn expired(&self) -> Vec<Arc<str>> {
        self.sessions.expired()
    }

    /// Ends the gateway sessions opened with these login sessions of `user_id`.
    pub fn end_auth_sessions(&self, user_id: UserId, auth_sessions: &[SessionId]) {
        self.sessions.end_auth_sessions(user_id, auth_sessions)
    }

    /// Routes a server's events to a user (joined or created it) if they have sessions here.
    pub fn add_member(&self, server_id: ServerId, user_id: UserId) {
        let _lifecycle = self.lifecycle.lock();
        if self.sessions.has_user(&user_id) {
            self.route(server_id, user_id);
        }
    }

    /// Stops routing a server's events to a user (left, removed, or the server is gone).
    pub fn remove_member(&self, server_id: ServerId, user_id: UserId) {
        if self.routes.remove_member(server_id, user_id) {
            self.interest.unwatch(Audience::Server(server_id));
        }
        for s in self.sessions.sessions_of(user_id) {
            s.presence_servers.lock().retain(|sid| *sid != server_id);
        }
    }

    pub fn remove_server(&self, server_id: ServerId) {
        for u in self.routes.remove_server(server_id) {
            self.interest.unwatch(Audience::Server(server_id));
            for s in self.sessions.sessions_of(u) {
                s.presence_servers.lock().retain(|sid| *sid != server_id);
            }
        }
    }

    /// Users with a session here who share a server with `user_id` (presence recipients).
    pub fn co_members(&self, user_id: UserId) -> Vec<UserId> {
        self.routes.co_members(user_id)
    }

    /// Users with a session here who are members of the server.
    pub fn users_in(&self, server_id: ServerId) -> Vec<UserId> {
        self.routes.users_in(server_id)
    }

    /// Records a user's friends (at IDENTIFY) for presence routing.
    pub fn set_friends(&self, user_id: UserId, friends: impl IntoIterator<Item = UserId>) {
        if self.sessions.has_user(&user_id) {
            self.routes.set_friends(user_id, friends);
        }
    }

    /// Two users became friends (`true`) or stopped being friends.
    pub fn set_friendship(&self, a: UserId, b: UserId, friends: bool) {
        self.routes.set_friendship(a, b, friends)
    }

    /// A user's sessions on this node.
    pub fn sessions_of(&self, user_id: UserId) -> Vec<Arc<Session>> {
        self.sessions.sessions_of(user_id)
    }

    pub fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.session(id)
    }

    /// Whether any session of the user has a live connection.
    pub fn is_connected(&self, user_id: UserId) -> bool {
        self.sessions.is_connected(user_id)
    }

    /// The presence others see for a user: the best of their sessions here and what other
    /// nodes report.
    pub fn presence_of(&self, user_id: UserId) -> Status {
        let here = self.sessions.own_presence_of(user_id);
        let there = self
            .remote_presence
            .best(user_id, std::time::Instant::now());
        if there.rank() > here.rank() {
            there.visible()
        } else {
            here.visible()
        }
    }

    /// What decides whether a user gets push notifications now: whether they chose
    /// do-not-disturb, and whether a client of theirs is in front of them — a connected
    /// session here not marked `afk`, or a session another node reports online (other nodes
    /// do not share the afk flag: a user there counts as looking).
    pub fn push_presence(&self, user_id: UserId) -> PushPresence {
        let now = std::time::Instant::now();
        let remote = self.remote_presence.best(user_id, now);
        let mut best = remote;
        let mut focused = remote == Status::Online;
        for s in self.sessions.sessions_of(user_id) {
            if !s.connected() {
                continue;
            }
            let st = *s.status.lock();
            if st.rank() > best.rank() {
                best = st;
            }
            if st != Status::Dnd && !s.afk.load(std::sync::atomic::Ordering::Relaxed) {
                focused = true;
            }
        }
        PushPresence {
            dnd: best == Status::Dnd,
            focused,
        }
    }

    /// The status of a user's connected sessions on this node only, invisible included (what
    /// this node tells the others; they show it as offline).
    pub fn local_presence_of(&self, user_id: UserId) -> Status {
        self.sessions.own_presence_of(user_id)
    }

    /// Whether the user has a connected session on this node or, as far as other nodes
    /// reported, on another (invisible ones included).
    pub fn connected_anywhere(&self, user_id: UserId) -> bool {
        !self.sessions.sessions_of(user_id).is_empty()
            || self
                .remote_presence
                .best(user_id, std::time::Instant::now())
                != Status::Offline
    }

    /// Users with connected sessions here, with their status (invisible included).
    pub fn local_presences(&self) -> Vec<(UserId, Status)> {
        self.sessions.presences()
    }

    /// Who sees a user's presence (the user has a session here): their servers and friends.
    pub fn presence_audience_of(&self, user_id: UserId) -> PresenceAudience {
        PresenceAudience {
            servers: self.routes.servers_of(user_id),
            friends: self.routes.friends_of(user_id),
        }
    }

    /// Who sees `user_id`'s presence among users with a session here: members of the
    /// audience's servers (of a large server, only those following its presences) and the
    /// user's friends, never the user.
    pub fn presence_recipients(&self, user_id: UserId, audience: &PresenceAudience) -> Vec<UserId> {
        let mut to: std::collections::HashSet<UserId> = audience
            .friends
            .iter()
            .copied()
            .filter(|f| self.sessions.has_user(f))
            .collect();
        for sid in &audience.servers {
            let mut add = |u: &UserId| {
                to.insert(*u);
            };
            if self.routes.is_large(*sid) {
                self.routes.for_each_follower(*sid, &mut add);
            } else {
                self.routes.for_each_in(*sid, &mut add);
            }
        }
        to.remove(&user_id);
        to.into_iter().collect()
    }

    /// Delivers a PRESENCE_UPDATE of `user_id` to its `presence_recipients`.
    pub fn deliver_presence(
        &self,
        user_id: UserId,
        audience: &PresenceAudience,
        d: &Arc<Dispatch>,
    ) {
        let to = self.presence_recipients(user_id, audience);
        if !to.is_empty() {
            self.deliver(&Target::Users(to), d);
        }
    }

    /// All sessions, e.g. to tell them the server is shutting down.
    pub fn all_sessions(&self) -> Vec<Arc<Session>> {
        self.sessions.all_sessions()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::events::Event;
    use confab_chat::Snowflake;

    fn d(n: u32) -> Arc<Dispatch> {
        Dispatch::new(Event::MessageCreate, &n)
    }

    #[test]
    fn routes_by_server_and_resumes_exactly_the_missed_events() {
        let hub = Hub::new();
        let (a, rx_a, conn_a) = hub.open(
            UserId::new(Snowflake(1)),
            SessionId::new(Snowflake(10)),
            &[ServerId::new(Snowflake(100))],
        );
        let (_b, rx_b, _) = hub.open(
            UserId::new(Snowflake(2)),
            SessionId::new(Snowflake(20)),
            &[ServerId::new(Snowflake(100)), ServerId::new(Snowflake(200))],
        );
        hub.deliver(&Target::Server(ServerId::new(Snowflake(100))), &d(1));
        hub.deliver(&Target::Server(ServerId::new(Snowflake(200))), &d(2));
        // Seq 1 is READY's (none here): dispatches start at 2.
        assert_eq!(rx_a.try_recv().unwrap().0, 2);
        assert!(rx_a.try_recv().is_err(), "A is not in server 200");
        assert_eq!(rx_b.try_recv().unwrap().1.d.as_ref(), "1");
        assert_eq!(rx_b.try_recv().unwrap().1.d.as_ref(), "2");

        // A drops; events keep coming; A resumes from seq 2 and gets 3..=5 once, in order.
        hub.detach(&a, conn_a);
        drop(rx_a);
        for i in 3..6 {
            hub.deliver(&Target::User(UserId::new(Snowflake(1))), &d(i));
        }
        let Resume::Ok(_, rx, _) = hub.resume(&a.id, UserId::new(Snowflake(1)), 2) else {
            panic!("resume failed")
        };
        let got: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|(s, _)| s)
            .collect();
        assert_eq!(got, vec![3, 4, 5]);
        // Wrong user or a sequence from the future cannot resume.
        assert!(matches!(
            hub.resume(&a.id, UserId::new(Snowflake(2)), 1),
            Resume::Invalid
        ));
        assert!(matches!(
            hub.resume(&a.id, UserId::new(Snowflake(1)), 99),
            Resume::Invalid
        ));
    }

    /// A page reloaded while its old connection closes: the old session's close finds no
    /// session left and forgets the user's routes while the new session opens and routes
    /// them. The new session must still receive its server's events, however the two
    /// interleave (before the lifecycle lock, about one open in a few thousand here lost
    /// them).
    #[test]
    fn a_session_opening_while_the_users_last_one_closes_keeps_its_routes() {
        let hub = Hub::new();
        let user = UserId::new(Snowflake(1));
        let server = ServerId::new(Snowflake(100));
        const ROUNDS: usize = 20_000;
        let closer = {
            let hub = hub.clone();
            std::thread::spawn(move || {
                for _ in 0..ROUNDS {
                    let (s, _rx, _) = hub.open(user, SessionId::new(Snowflake(10)), &[server]);
                    hub.close(&s.id);
                }
            })
        };
        let mut deaf = 0;
        for i in 0..ROUNDS {
            let (s, rx, _) = hub.open(user, SessionId::new(Snowflake(20)), &[server]);
            hub.deliver(&Target::Server(server), &d(i as u32));
            if rx.try_recv().is_err() {
                deaf += 1;
            }
            hub.close(&s.id);
        }
        closer.join().unwrap();
        assert_eq!(deaf, 0, "sessions opened without their server's events");
    }

    /// The connection's queue: a waiting connection wakes for a dispatch; one that a RESUME
    /// replaced ends (its `recv` says so) while the new one gets what follows.
    #[tokio::test]
    async fn a_waiting_connection_wakes_for_a_dispatch_and_ends_when_replaced() {
        let hub = Hub::new();
        let user = UserId::new(Snowflake(1));
        let (a, mut old, _) = hub.open(user, SessionId::new(Snowflake(10)), &[]);
        let waiter = tokio::spawn(async move {
            let first = old.recv().await.map(|(seq, _)| seq);
            let then = old.recv().await.map(|(seq, _)| seq);
            (first, then)
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        hub.deliver(&Target::User(user), &d(1));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let Resume::Ok(_, mut new, _) = hub.resume(&a.id, user, 2) else {
            panic!("resume failed")
        };
        let wait = std::time::Duration::from_secs(2);
        let (first, then) = tokio::time::timeout(wait, waiter).await.unwrap().unwrap();
        assert_eq!(first, Some(2), "the waiting connection got the dispatch");
        assert_eq!(then, None, "the replaced connection ended");
        assert!(
            a.connected(),
            "the replaced connection's end leaves the new one attached"
        );
        hub.deliver(&Target::User(user), &d(2));
        let got = tokio::time::timeout(wait, new.recv()).await.unwrap();
        assert_eq!(got.map(|(seq, _)| seq), Some(3));
        drop(new);
        assert!(!a.connected(), "dropping the queue detaches the connection");
    }

    #[test]
    fn acknowledged_dispatches_leave_the_resume_buffer_and_its_memory() {
        let hub = Hub::new();
        let user = UserId::new(Snowflake(1));
        let (a, rx, conn) = hub.open(user, SessionId::new(Snowflake(10)), &[]);
        for i in 0..500 {
            hub.deliver(&Target::User(user), &d(i));
        }
        while rx.try_recv().is_ok() {}
        assert_eq!(a.buffered(), 500);
        // An acknowledgement from the future is ignored: the client is confused, and its
        // RESUME still needs everything.
        a.acknowledge(9_999);
        assert_eq!(a.buffered(), 500);
        // Seqs 2..=501 (1 is READY's).
        a.acknowledge(499);
        assert_eq!(a.buffered(), 2);
        assert!(
            a.buffer_capacity() < 64,
            "the burst's capacity is given back"
        );
        // RESUME from the acknowledged seq (or later) replays exactly the rest; from before
        // it, the events are gone, so the client must IDENTIFY.
        hub.detach(&a, conn);
        drop(rx);
        assert!(matches!(hub.resume(&a.id, user, 498), Resume::Invalid));
        let Resume::Ok(_, rx, _) = hub.resume(&a.id, user, 499) else {
            panic!("resume failed")
        };
        let got: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|(s, _)| s)
            .collect();
        assert_eq!(got, vec![500, 501]);
    }

    /// Found by the gateway_session fuzz target's first model (which let READY come at any
    /// point): READY is never replayed, so a RESUME from before it (seq 0, a client that never
    /// had the session) is refused; from READY on, only the other dispatches come back.
    #[test]
    fn resume_never_replays_ready_and_needs_it_seen() {
        let hub = Hub::new();
        let (a, rx, conn) = hub.open(
            UserId::new(Snowflake(1)),
            SessionId::new(Snowflake(10)),
            &[],
        );
        a.push_ready(&Dispatch::new(Event::Ready, &1));
        hub.deliver(&Target::User(UserId::new(Snowflake(1))), &d(2));
        hub.detach(&a, conn);
        drop(rx);
        assert!(matches!(
            hub.resume(&a.id, UserId::new(Snowflake(1)), 0),
            Resume::Invalid
        ));
        let Resume::Ok(_, rx, _) = hub.resume(&a.id, UserId::new(Snowflake(1)), 1) else {
            panic!("resume after READY failed")
        };
        let got: Vec<(u64, Event)> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|(s, d)| (s, d.t))
            .collect();
        assert_eq!(got, vec![(2, Event::MessageCreate)]);
        // Resuming again from READY's seq still works (nothing was evicted).
        assert!(matches!(
            hub.resume(&a.id, UserId::new(Snowflake(1)), 1),
            Resume::Ok(..)
        ));
    }

    /// READY is built after the session opens (so that it misses no change): what is routed
    /// to the session meanwhile goes out after READY, never before it, where a client that
    /// starts from READY would lose it.
    #[test]
    fn ready_goes_out_first_with_the_seq_reserved_for_it() {
        let hub = Hub::new();
        let user = UserId::new(Snowflake(1));
        let (a, rx, _) = hub.open(user, SessionId::new(Snowflake(10)), &[]);
        hub.deliver(&Target::User(user), &d(7));
        hub.deliver(&Target::User(user), &d(8));
        a.push_ready(&Dispatch::new(Event::Ready, &0));
        let got: Vec<(u64, Event)> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|(s, d)| (s, d.t))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, Event::Ready),
                (2, Event::MessageCreate),
                (3, Event::MessageCreate)
            ]
        );
    }

    #[test]
    fn evicted_events_make_resume_invalid_and_slow_clients_are_cut() {
        let hub = Hub::new();
        let (a, rx, conn) = hub.open(
            UserId::new(Snowflake(1)),
            SessionId::new(Snowflake(10)),
            &[],
        );
        // Nobody reads rx: the queue fills, the connection is cut, nothing is lost from the buffer.
        for i in 0..(QUEUE as u32 + 5) {
            hub.deliver(&Target::User(UserId::new(Snowflake(1))), &d(i));
        }
        assert!(a.too_slow.load(Ordering::Relaxed));
        assert!(!a.connected());
        drop(rx);
        hub.detach(&a, conn);
        // More than BUFFER events were produced: resuming from 0 is impossible...
        assert!(matches!(
            hub.resume(&a.id, UserId::new(Snowflake(1)), 0),
            Resume::Invalid
        ));
        // ...but from a recent sequence it works.
        let last = a.seq();
        assert!(matches!(
            hub.resume(&a.id, UserId::new(Snowflake(1)), last - 10),
            Resume::Ok(..)
        ));
    }

    #[test]
    fn presence_reaches_co_members_and_friends_only() {
        let hub = Hub::new();
        let [u1, u2, u3, u4] = [1, 2, 3, 4].map(|n| UserId::new(Snowflake(n)));
        hub.open(
            u1,
            SessionId::new(Snowflake(10)),
            &[ServerId::new(Snowflake(100))],
        );
        hub.open(
            u2,
            SessionId::new(Snowflake(20)),
            &[ServerId::new(Snowflake(100))],
        );
        hub.open(u3, SessionId::new(Snowflake(30)), &[]);
        hub.open(u4, SessionId::new(Snowflake(40)), &[]);
        hub.set_friends(u1, [u3]);
        hub.set_friends(u3, [u1]);
        let seen_by = |u| hub.presence_recipients(u, &hub.presence_audience_of(u));
        let mut got = seen_by(u1);
        got.sort();
        assert_eq!(got, vec![u2, u3], "co-member and friend, not the stranger");
        assert!(seen_by(u4).is_empty());
        hub.set_friendship(u1, u3, false);
        assert_eq!(seen_by(u1), vec![u2]);
        assert!(seen_by(u3).is_empty());
    }

    #[test]
    fn ended_login_sessions_end_their_gateway_sessions_only() {
        let hub = Hub::new();
        let user = UserId::new(Snowflake(1));
        let (a, _rx_a, conn_a) = hub.open(user, SessionId::new(Snowflake(10)), &[]);
        let (b, _rx_b, _) = hub.open(user, SessionId::new(Snowflake(20)), &[]);
        hub.detach(&a, conn_a);
        hub.end_auth_sessions(user, &[SessionId::new(Snowflake(10))]);
        assert!(a.ended.is_cancelled());
        assert!(
            !b.ended.is_cancelled(),
            "another login session of the same user"
        );
        // Disconnected and ended: not resumable, and closed by the next sweep.
        assert!(matches!(hub.resume(&a.id, user, 0), Resume::Invalid));
        assert_eq!(hub.expired(), vec![a.id.clone()]);
        // An IDENTIFY that authenticated just before the end opens an ended session.
        let (late, _rx, _) = hub.open(user, SessionId::new(Snowflake(10)), &[]);
        assert!(late.ended.is_cancelled());
    }
}
