//! Gateway sessions and what RESUME needs: each session keeps its last `BUFFER` dispatches so
//! a client that lost its connection can RESUME without losing any; its live connection, if
//! any, gets them through a bounded queue ([`Outbox`]). A connection that lets its queue fill
//! up is cut (close 4008, resumable) rather than having events dropped: the buffer still has
//! them.
//!
//! The queue lives in the session, under the lock `push` already takes for the buffer, with a
//! `Notify` that wakes the connection only when the queue was empty: a channel per connection
//! was one more synchronisation per dispatch, and READY could not be put ahead of what was
//! queued while it was being built (`push_ready`).

use super::dispatch::Dispatch;
use super::presence::Status;
use crate::gateway::events::Event;
use confab_chat::{SessionId, UserId};
use dashmap::DashMap;
use parking_lot::Mutex;
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Dispatches kept per session for RESUME.
pub const BUFFER: usize = 1000;
/// How long a disconnected session may be resumed.
pub const RESUME_WINDOW: Duration = Duration::from_secs(60);
/// A connection's outgoing queue. Larger than BUFFER so a full replay fits.
pub const QUEUE: usize = BUFFER + 1024;

/// Buffer capacity (entries) kept after an acknowledgement without shrinking: small enough to
/// cost an idle session little, large enough that a steady trickle does not reallocate.
const ACK_SHRINK_ABOVE: usize = 32;

/// READY's sequence number: reserved when the session opens, so that READY goes out first
/// however many dispatches were routed to the session while it was being built.
pub const READY_SEQ: u64 = 1;

/// Queue capacity (entries) an emptied queue keeps: a burst's memory is given back at once.
const OUTBOX_KEEP: usize = 8;

/// An item on a connection's queue.
pub type Outbound = (u64, Arc<Dispatch>);

struct SessionState {
    seq: u64,
    buffer: VecDeque<Outbound>,
    /// The attached connection's id, if any.
    conn: Option<u64>,
    /// What the attached connection has yet to write (at most QUEUE).
    outbox: VecDeque<Outbound>,
    disconnected_at: Option<Instant>,
}

impl SessionState {
    /// Detaches the connection, giving back its queue's memory.
    fn drop_conn(&mut self) {
        self.conn = None;
        self.outbox = VecDeque::new();
    }
}

/// A gateway session: survives its connection for RESUME_WINDOW.
pub struct Session {
    pub id: Arc<str>,
    pub user_id: UserId,
    pub auth_session: SessionId,
    state: Mutex<SessionState>,
    /// Set when the connection was cut for being too slow (close 4008).
    pub too_slow: AtomicBool,
    /// Chosen presence status.
    pub status: Mutex<Status>,
    /// The client says nobody is looking at it (op 3's `afk`): push notifications go out
    /// although this session is connected (docs/push.md).
    pub afk: std::sync::atomic::AtomicBool,
    /// Cancelled when the session is ended from elsewhere (logout, session revoked): its
    /// connection closes with 4004 and it cannot be resumed.
    pub ended: tokio_util::sync::CancellationToken,
    /// A bot's intents; None for people, who get every event they may see.
    pub intents: Option<super::intents::Intents>,
    /// The large servers whose presences this session follows (op 17; a bot: all of its
    /// servers at IDENTIFY). The routing index counts them per server and user.
    pub presence_servers: Mutex<Vec<confab_chat::ServerId>>,
    /// Wakes the connection waiting on an empty queue, or one that was detached.
    wake: Notify,
}

impl Session {
    /// Appends a dispatch and hands it to the live connection, if any.
    pub(super) fn push(&self, d: &Arc<Dispatch>) {
        let filtered;
        let d = match &self.intents {
            None => d,
            Some(i) => match i.apply(d) {
                Some(x) => {
                    filtered = x;
                    &filtered
                }
                None => return,
            },
        };
        let mut st = self.state.lock();
        st.seq += 1;
        let item = (st.seq, d.clone());
        // READY is never replayed (a client that can RESUME has it: it carries the session
        // id), and it is the largest dispatch: keeping it would cost every idle session.
        if d.t != Event::Ready {
            if st.buffer.len() == BUFFER {
                st.buffer.pop_front();
            }
            st.buffer.push_back(item.clone());
        }
        if st.conn.is_none() {
            return;
        }
        if st.outbox.len() >= QUEUE {
            self.too_slow.store(true, Ordering::Relaxed);
            st.drop_conn();
            st.disconnected_at = Some(Instant::now());
            drop(st);
            self.wake.notify_waiters();
            return;
        }
        st.outbox.push_back(item);
        self.release_and_wake(st);
    }

    /// Releases the lock after an item was queued, and wakes the connection if that item is
    /// alone: a queue that held more has a connection awake that will come back for it.
    fn release_and_wake(&self, st: parking_lot::MutexGuard<'_, SessionState>) {
        let wake = st.outbox.len() == 1;
        drop(st);
        if wake {
            self.wake.notify_one();
        }
    }

    /// Queues READY ahead of everything dispatched since the session opened, with the seq
    /// reserved for it. Those dispatches follow it: READY's live state is taken after the
    /// session opened (`Ready::refresh_live_state`), so each change is in READY or follows
    /// it, never only before it, where a client that starts from READY would lose it. Not
    /// kept for RESUME, as `push` does not keep READY either.
    pub fn push_ready(&self, d: &Arc<Dispatch>) {
        let mut st = self.state.lock();
        if st.conn.is_none() {
            return;
        }
        st.outbox.push_front((READY_SEQ, d.clone()));
        self.release_and_wake(st);
    }

    /// The client has received every dispatch up to `seq` (its heartbeat says so): a RESUME
    /// never asks for them again, so the buffer lets them go, and gives back the memory a
    /// burst made it grow to. An idle session then holds almost nothing.
    pub fn acknowledge(&self, seq: u64) {
        let mut st = self.state.lock();
        if seq > st.seq {
            // A seq never sent: a confused client; keep everything for its RESUME.
            return;
        }
        while st.buffer.front().is_some_and(|(s, _)| *s <= seq) {
            st.buffer.pop_front();
        }
        let (len, cap) = (st.buffer.len(), st.buffer.capacity());
        if cap > ACK_SHRINK_ABOVE && len <= cap / 4 {
            st.buffer.shrink_to(len * 2);
        }
    }

    /// Dispatches held for RESUME.
    pub fn buffered(&self) -> usize {
        self.state.lock().buffer.len()
    }

    #[cfg(test)]
    pub(super) fn buffer_capacity(&self) -> usize {
        self.state.lock().buffer.capacity()
    }

    pub fn seq(&self) -> u64 {
        self.state.lock().seq
    }

    pub fn connected(&self) -> bool {
        self.state.lock().conn.is_some()
    }
}

/// The receiving end of a connection's queue. Dropping it detaches the connection, as
/// `SessionRegistry::detach` does.
pub struct Outbox {
    session: Arc<Session>,
    conn: u64,
}

/// Why `Outbox::try_recv` returned nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Empty {
    /// Nothing queued yet.
    Empty,
    /// The connection was detached: cut for being too slow, or replaced by a RESUME.
    Detached,
}

impl Outbox {
    /// The next queued dispatch, or `None` once the connection is detached.
    pub async fn recv(&mut self) -> Option<Outbound> {
        loop {
            // Registered before looking, so a push in between still wakes this.
            let notified = self.session.wake.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            match self.try_recv() {
                Ok(item) => return Some(item),
                Err(Empty::Detached) => return None,
                Err(Empty::Empty) => notified.await,
            }
        }
    }

    /// The next queued dispatch, without waiting.
    pub fn try_recv(&self) -> Result<Outbound, Empty> {
        let mut st = self.session.state.lock();
        if st.conn != Some(self.conn) {
            return Err(Empty::Detached);
        }
        let item = st.outbox.pop_front().ok_or(Empty::Empty)?;
        if st.outbox.is_empty() && st.outbox.capacity() > OUTBOX_KEEP {
            st.outbox.shrink_to(OUTBOX_KEEP);
        }
        Ok(item)
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        detach(&self.session, self.conn);
    }
}

/// The connection `conn` of a session ended (if it is still the attached one); the session
/// stays resumable for a while.
fn detach(session: &Session, conn: u64) {
    let mut st = session.state.lock();
    if st.conn == Some(conn) {
        st.drop_conn();
    }
    // A connection replaced by a RESUME elsewhere detaches after the new one attached:
    // the session is not disconnected then.
    if st.conn.is_none() {
        st.disconnected_at.get_or_insert_with(Instant::now);
    }
}

/// Result of a RESUME attempt.
pub enum Resume {
    /// Attached; the missed dispatches are already queued.
    Ok(Arc<Session>, Outbox, u64),
    /// Unknown, expired, another user's, or the missed events are gone.
    Invalid,
}

/// The sessions on this node, by id and by user.
#[derive(Default)]
pub struct SessionRegistry {
    sessions: DashMap<Arc<str>, Arc<Session>>,
    /// Sessions per user (connected or resumable).
    users: DashMap<UserId, SmallVec<[Arc<Session>; 2]>>,
    /// Login sessions ended recently, with when: an IDENTIFY that authenticated just before
    /// the end but opens its gateway session just after must still be ended.
    ended_auth: DashMap<SessionId, Instant>,
    conn_ids: AtomicU64,
}

/// How long `ended_auth` remembers an ended login session (far longer than an IDENTIFY takes).
const ENDED_MEMORY: Duration = Duration::from_secs(60);

impl SessionRegistry {
    /// Creates a session for an IDENTIFY with its connection attached.
    pub fn open(
        &self,
        user_id: UserId,
        auth_session: SessionId,
        intents: Option<super::intents::Intents>,
    ) -> (Arc<Session>, Outbox, u64) {
        let id: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
        let conn = self.conn_ids.fetch_add(1, Ordering::Relaxed);
        let session = Arc::new(Session {
            id: id.clone(),
            user_id,
            auth_session,
            state: Mutex::new(SessionState {
                // Seq 1 is READY's, whenever it is built (`push_ready`).
                seq: READY_SEQ,
                buffer: VecDeque::new(),
                conn: Some(conn),
                outbox: VecDeque::new(),
                disconnected_at: None,
            }),
            too_slow: AtomicBool::new(false),
            status: Mutex::new(Status::Online),
            afk: std::sync::atomic::AtomicBool::new(false),
            ended: tokio_util::sync::CancellationToken::new(),
            intents,
            presence_servers: Mutex::new(Vec::new()),
            wake: Notify::new(),
        });
        if self.ended_auth.contains_key(&auth_session) {
            session.ended.cancel();
        }
        self.sessions.insert(id, session.clone());
        self.users.entry(user_id).or_default().push(session.clone());
        let outbox = Outbox {
            session: session.clone(),
            conn,
        };
        (session, outbox, conn)
    }
    /// Reattaches a connection to a session and queues every dispatch after `seq`.
    pub fn resume(&self, session_id: &str, user_id: UserId, seq: u64) -> Resume {
        let Some(session) = self.sessions.get(session_id).map(|s| s.clone()) else {
            return Resume::Invalid;
        };
        if session.user_id != user_id || session.ended.is_cancelled() {
            return Resume::Invalid;
        }
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
            // Fits: the queue is larger than the buffer.
            let missed: VecDeque<Outbound> = st
                .buffer
                .iter()
                .filter(|(s, _)| *s > seq)
                .cloned()
                .collect();
            st.outbox = missed;
            st.conn = Some(conn);
            st.disconnected_at = None;
        }
        session.too_slow.store(false, Ordering::Relaxed);
        // A connection this one replaces learns it is detached.
        session.wake.notify_waiters();
        let outbox = Outbox {
            session: session.clone(),
            conn,
        };
        Resume::Ok(session, outbox, conn)
    }

    /// The connection `conn` of a session ended; the session stays resumable for a while.
    pub fn detach(&self, session: &Session, conn: u64) {
        detach(session, conn);
    }

    /// Ends a session at once (normal close, logout); says whether it was its user's last here.
    pub fn close(&self, session_id: &str) -> Option<(Arc<Session>, bool)> {
        let (_, session) = self.sessions.remove(session_id)?;
        let uid = session.user_id;
        let mut last = false;
        if let Some(mut list) = self.users.get_mut(&uid) {
            list.retain(|s| s.id.as_ref() != session_id);
            last = list.is_empty();
        }
        if last {
            self.users.remove_if(&uid, |_, l| l.is_empty());
        }
        Some((session, last))
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
    pub fn end_auth_sessions(&self, user_id: UserId, auth_sessions: &[SessionId]) {
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

    /// Hands a dispatch to every session of a user here; returns how many.
    pub fn push_to_user(&self, user_id: &UserId, d: &Arc<Dispatch>) -> u64 {
        let mut n = 0;
        if let Some(list) = self.users.get(user_id) {
            for s in list.iter() {
                s.push(d);
                n += 1;
            }
        }
        n
    }

    /// Whether the user has a session here (connected or resumable).
    pub fn has_user(&self, user_id: &UserId) -> bool {
        self.users.contains_key(user_id)
    }

    /// A user's sessions on this node.
    pub fn sessions_of(&self, user_id: UserId) -> Vec<Arc<Session>> {
        self.users
            .get(&user_id)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.get(id).map(|s| s.clone())
    }

    /// Whether any session of the user has a live connection.
    pub fn is_connected(&self, user_id: UserId) -> bool {
        self.users
            .get(&user_id)
            .is_some_and(|l| l.iter().any(|s| s.connected()))
    }

    /// The presence others see for a user on this node.
    pub fn presence_of(&self, user_id: UserId) -> Status {
        self.own_presence_of(user_id).visible()
    }

    /// The best status of the user's connected sessions here, invisible included.
    pub fn own_presence_of(&self, user_id: UserId) -> Status {
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
        best
    }

    /// Users with a connected session here, with their status (invisible included).
    pub fn presences(&self) -> Vec<(UserId, Status)> {
        // Keys first: reading an entry while iterating the map could wait on its own shard.
        let users: Vec<UserId> = self.users.iter().map(|e| *e.key()).collect();
        users
            .into_iter()
            .filter_map(|u| {
                let st = self.own_presence_of(u);
                (st != Status::Offline).then_some((u, st))
            })
            .collect()
    }

    /// All sessions, e.g. to tell them the server is shutting down.
    pub fn all_sessions(&self) -> Vec<Arc<Session>> {
        self.sessions.iter().map(|s| s.clone()).collect()
    }

    pub fn count(&self) -> usize {
        self.sessions.len()
    }
}
