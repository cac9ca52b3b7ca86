//! One gateway connection: the async shell around the protocol machine
//! (`session_machine`). It reads client frames and feeds them in, does the work the machine
//! asks for (authentication, READY, resume, presence, voice), writes the session's
//! dispatches (coalesced: everything queued goes out before one flush), and arms the
//! machine's deadline as a timer.

use super::hub::{Dispatch, Outbound, Outbox, Resume, Session, Target};
use super::presence::{PresenceAudience, Status};
use super::protocol::ResumeReq;
use super::ready::ready_payload;
use super::session_machine::{
    Action, AuthFailure, Closing, End, SessionMachine, Settings, SocketEvent,
};
use super::upgrade::Socket;
use crate::bus::BusEvent;
use crate::gateway::events::Event;
use crate::state::AppState;
use confab_chat::UserId;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{Frame, Utf8Bytes};
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

/// Most dispatches written before one flush.
const COALESCE: usize = 512;

type Tx = SplitSink<Socket, Message>;

/// Frames larger than this go out in fragments of this size, so the socket library's frame
/// buffer (kept for the connection's life) never grows to the size of a READY.
const FRAGMENT: usize = 2 * 1024;

struct Conn {
    state: AppState,
    ip: IpAddr,
    machine: SessionMachine,
    session: Option<Arc<Session>>,
    conn_id: u64,
    out: Option<Outbox>,
    /// Counts this connection against its IP's unauthenticated ones until IDENTIFY/RESUME.
    pending: Option<super::PendingSlot>,
    /// Fires at the machine's deadline (IDENTIFY, then heartbeat). Created once and reset
    /// only when the deadline moves: re-creating a timer per loop iteration cost a
    /// timer-wheel insert per written batch.
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The deadline `timer` is set to; None when the machine has none (or it just fired).
    armed: Option<Instant>,
    /// Completes when the session is ended elsewhere (logout); pending until IDENTIFY.
    ended: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
}

pub async fn run(state: AppState, socket: Socket, ip: IpAddr, pending: super::PendingSlot) {
    let gauge = metrics::gauge!("confab_gateway_connections");
    gauge.increment(1.0);
    metrics::counter!("confab_gateway_connections_total").increment(1);
    let (mut tx, mut rx) = socket.split();
    let mut machine = SessionMachine::new(
        Instant::now(),
        Settings {
            heartbeat_interval_ms: state.config.heartbeat_interval_ms,
            rate_limit_scale: state.config.rate_limit_scale,
        },
    );
    // HELLO first; a client gone before it leaves nothing to clean up.
    let hello = match machine.poll_action() {
        Some(Action::Send(hello)) => hello.to_frame(),
        other => unreachable!("a new session's first action is HELLO, not {other:?}"),
    };
    if send_text(&mut tx, hello).await.is_ok() {
        let mut conn = Conn {
            state: state.clone(),
            ip,
            machine,
            session: None,
            conn_id: 0,
            out: None,
            pending: Some(pending),
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
            ended: Box::pin(tokio_util::sync::CancellationToken::new().cancelled_owned()),
        };
        let end = conn.serve(&mut tx, &mut rx).await;
        // Closing handshake: after our Close frame, read (and discard) until the client's
        // Close or 1 s, so a client still sending does not get its connection reset before it
        // has read the close code.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(m)) = rx.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
        Box::pin(conn.finish(end)).await;
    }
    gauge.decrement(1.0);
}

async fn send_close(tx: &mut Tx, code: u16, reason: &'static str) {
    let _ = tx
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from_static(reason),
        })))
        .await;
    let _ = tx.close().await;
}

async fn next_out(out: &mut Option<Outbox>) -> Option<Outbound> {
    match out {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What a read error means for the protocol, decided by the error's type: the library
/// refuses oversized frames and text that is not UTF-8 before we see them.
fn socket_error(e: tungstenite::Error) -> SocketEvent {
    match e {
        tungstenite::Error::Capacity(_) => SocketEvent::TooLarge,
        tungstenite::Error::Utf8(_) => SocketEvent::InvalidUtf8,
        _ => SocketEvent::Failed,
    }
}

/// Queues a text message, in fragments when it is large (RFC 6455 §5.4; a fragment may end
/// inside a UTF-8 sequence, only the whole message must be valid).
async fn feed_text(tx: &mut Tx, text: String) -> Result<(), tungstenite::Error> {
    if text.len() <= FRAGMENT {
        return tx.feed(Message::Text(text.into())).await;
    }
    let bytes = bytes::Bytes::from(text);
    let last = (bytes.len() - 1) / FRAGMENT;
    for i in 0..=last {
        let chunk = bytes.slice(i * FRAGMENT..((i + 1) * FRAGMENT).min(bytes.len()));
        let opcode = OpCode::Data(if i == 0 { Data::Text } else { Data::Continue });
        tx.feed(Message::Frame(Frame::message(chunk, opcode, i == last)))
            .await?;
    }
    Ok(())
}

async fn send_text(tx: &mut Tx, text: String) -> Result<(), tungstenite::Error> {
    feed_text(tx, text).await?;
    tx.flush().await
}

impl Conn {
    async fn serve(&mut self, tx: &mut Tx, rx: &mut SplitStream<Socket>) -> End {
        let shutdown = self.state.shutdown.clone().cancelled_owned();
        tokio::pin!(shutdown);
        loop {
            // Everything the last input asked for is done before the next input is read,
            // so the machine sees inputs one at a time, in order.
            if let Some(end) = self.run_actions(tx).await {
                return end;
            }
            self.arm_timer();
            tokio::select! {
                biased;
                _ = &mut shutdown => self.machine.on_shutdown(),
                _ = &mut self.ended => self.machine.on_session_ended(),
                item = next_out(&mut self.out) => match item {
                    Some(item) => {
                        if self.write_batch(tx, item).await.is_err() {
                            self.machine.on_socket(SocketEvent::Failed);
                        }
                    }
                    None => {
                        let slow = self
                            .session
                            .as_ref()
                            .is_some_and(|s| s.too_slow.load(Ordering::Relaxed));
                        if slow {
                            metrics::counter!("confab_gateway_slow_disconnects_total").increment(1);
                        }
                        self.machine.on_queue_closed(slow);
                    }
                },
                msg = rx.next() => match msg {
                    Some(Ok(Message::Text(t))) => self.machine.on_frame(Instant::now(), &t),
                    Some(Ok(Message::Binary(_))) => self.machine.on_socket(SocketEvent::Binary),
                    Some(Ok(Message::Close(frame))) => {
                        self.machine
                            .on_socket(SocketEvent::Closed(frame.map(|f| u16::from(f.code))));
                    }
                    Some(Ok(_)) => {} // ping/pong: handled by the library
                    Some(Err(e)) => self.machine.on_socket(socket_error(e)),
                    None => self.machine.on_socket(SocketEvent::Failed),
                },
                _ = &mut self.timer, if self.armed.is_some() => {
                    // Re-armed below even if the deadline did not move, so a timer that
                    // fired is never polled again as it is.
                    self.armed = None;
                    self.machine.on_timeout(Instant::now());
                }
            }
        }
    }

    /// Points the timer at the machine's deadline when it moved.
    fn arm_timer(&mut self) {
        let deadline = self.machine.next_deadline();
        if deadline != self.armed {
            if let Some(at) = deadline {
                self.timer
                    .as_mut()
                    .reset(tokio::time::Instant::from_std(at));
            }
            self.armed = deadline;
        }
    }

    /// Does what the machine asked for, feeding results back, until it has nothing left;
    /// returns how the connection ended once it closed.
    async fn run_actions(&mut self, tx: &mut Tx) -> Option<End> {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Send(reply) => {
                    if send_text(tx, reply.to_frame()).await.is_err() {
                        self.machine.on_write_failed();
                    }
                }
                // Boxed, like every rare and deep await here: a task's allocation is the size
                // of its largest state, and READY's queries or a voice offer would otherwise
                // make every idle connection carry their futures' space for its whole life.
                Action::Identify { token, intents } => {
                    Box::pin(self.identify(&token, intents)).await
                }
                Action::Resume(req) => Box::pin(self.resume(req)).await,
                Action::SetPresence(status) => self.set_presence(status),
                Action::SetAfk(afk) => {
                    if let Some(session) = &self.session {
                        session.afk.store(afk, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Action::PresenceSubscribe(servers) => {
                    if let Some(session) = &self.session {
                        self.state.hub.subscribe_presences(session, &servers);
                    }
                }
                Action::Acknowledged(seq) => {
                    if let Some(session) = &self.session {
                        session.acknowledge(seq);
                    }
                }
                Action::VoiceState(req) => {
                    // The machine asks for voice work only once identified.
                    let Some(session) = self.session.clone() else {
                        continue;
                    };
                    if let Err(e) = Box::pin(self.state.voice.state_update(&session, req)).await {
                        self.machine.on_voice_error(e.code(), e.to_string());
                    }
                }
                Action::VoiceOffer(req) => {
                    let Some(session) = self.session.clone() else {
                        continue;
                    };
                    let offer = self.state.voice.offer(&session, req.sdp, req.video_tracks);
                    match Box::pin(offer).await {
                        Ok((sdp, voice_session_id)) => {
                            self.machine.on_voice_answer(sdp, voice_session_id);
                        }
                        Err(e) => self.machine.on_voice_error(e.code(), e.to_string()),
                    }
                }
                Action::VideoSubscribe(d) => {
                    let Some(session) = self.session.clone() else {
                        continue;
                    };
                    if let Err(e) = self.state.voice.video_subscribe(&session, d) {
                        self.machine.on_voice_error(e.code(), e.to_string());
                    }
                }
                Action::VoiceE2eeKeys(d) => {
                    let Some(session) = self.session.clone() else {
                        continue;
                    };
                    if let Err(e) = self.state.voice.e2ee_keys(&session, d) {
                        self.machine.on_voice_error(e.code(), e.to_string());
                    }
                }
                Action::Close(Closing {
                    frame,
                    end,
                    refused_frame,
                }) => {
                    if refused_frame {
                        metrics::counter!("confab_gateway_refused_frames_total").increment(1);
                    }
                    if let Some(r) = frame {
                        send_close(tx, r.code, r.reason).await;
                    }
                    return Some(end);
                }
            }
        }
        None
    }

    /// Writes one dispatch and everything else already queued, then flushes once.
    async fn write_batch(
        &mut self,
        tx: &mut Tx,
        first: Outbound,
    ) -> Result<(), tungstenite::Error> {
        feed_text(tx, first.1.frame(first.0)).await?;
        if let Some(out) = self.out.as_mut() {
            for _ in 0..COALESCE {
                match out.try_recv() {
                    Ok((seq, d)) => feed_text(tx, d.frame(seq)).await?,
                    Err(_) => break,
                }
            }
        }
        tx.flush().await
    }

    fn set_presence(&self, status: Status) {
        let Some(session) = &self.session else {
            return;
        };
        let before = self.state.hub.presence_of(session.user_id);
        *session.status.lock() = status;
        self.announce_presence(session.user_id, before);
    }

    fn identify_allowed(&self) -> bool {
        self.state
            .limiter
            .check(crate::ratelimit::IDENTIFY, &format!("ip{}", self.ip))
            .allowed
    }

    async fn identify(&mut self, token: &str, intents: Option<u64>) {
        if !self.identify_allowed() {
            return self.machine.on_auth_failed(AuthFailure::RateLimited);
        }
        let Ok(auth) = self.state.authenticate(token).await else {
            return self.machine.on_auth_failed(AuthFailure::BadToken);
        };
        let mut ready = match ready_payload(&self.state, auth.user_id).await {
            Ok(ready) => ready,
            Err(e) => {
                tracing::error!(error = ?e, "building READY");
                return self.machine.on_auth_failed(AuthFailure::Internal);
            }
        };
        let intents = auth.bot.then(|| {
            crate::gateway::intents::Intents::new(
                intents.unwrap_or(crate::gateway::intents::DEFAULT),
                auth.user_id,
            )
        });
        let before = self.state.hub.presence_of(auth.user_id);
        let (session, rx, conn_id) =
            self.state
                .hub
                .open_with(auth.user_id, auth.session_id, &ready.server_ids, intents);
        self.state
            .hub
            .set_friends(auth.user_id, ready.friend_ids.iter().copied());
        // In a cluster, READY goes out once other nodes' events for this session reach here.
        self.state.bus_sync().await;
        if let Err(e) = ready.recheck_membership(&self.state, auth.user_id).await {
            tracing::error!(error = ?e, "re-reading the servers for READY");
            self.state.hub.close(&session.id);
            return self.machine.on_auth_failed(AuthFailure::Internal);
        }
        ready.refresh_live_state(&self.state);
        let mut payload = ready.payload;
        payload["session_id"] = json!(session.id.as_ref());
        session.push_ready(&Dispatch::new(Event::Ready, &payload));
        self.attach(session.clone(), rx, conn_id);
        self.machine.on_identified(Instant::now());
        metrics::counter!("confab_gateway_identifies_total").increment(1);
        self.announce_presence(auth.user_id, before);
    }

    async fn resume(&mut self, req: ResumeReq) {
        if !self.identify_allowed() {
            return self.machine.on_auth_failed(AuthFailure::RateLimited);
        }
        let Ok(auth) = self.state.authenticate(&req.token).await else {
            return self.machine.on_auth_failed(AuthFailure::BadToken);
        };
        let before = self.state.hub.presence_of(auth.user_id);
        match self
            .state
            .hub
            .resume(&req.session_id, auth.user_id, req.seq)
        {
            Resume::Ok(session, rx, conn_id) => {
                self.state.hub.deliver(
                    &Target::Session(session.id.clone()),
                    &Dispatch::new(Event::Resumed, &json!({})),
                );
                self.attach(session.clone(), rx, conn_id);
                self.machine.on_resumed(Instant::now());
                metrics::counter!("confab_gateway_resumes_total").increment(1);
                self.state.voice.session_resumed(&session);
                self.announce_presence(auth.user_id, before);
            }
            Resume::Invalid => {
                metrics::counter!("confab_gateway_invalid_sessions_total").increment(1);
                self.machine.on_resume_invalid();
            }
        }
    }

    fn attach(&mut self, session: Arc<Session>, rx: Outbox, conn_id: u64) {
        self.ended = Box::pin(session.ended.clone().cancelled_owned());
        self.session = Some(session);
        self.pending = None;
        self.out = Some(rx);
        self.conn_id = conn_id;
    }

    /// Tells co-members when what they see of this user's presence changed.
    fn announce_presence(&self, user_id: UserId, before: Status) {
        let audience = self.state.hub.presence_audience_of(user_id);
        presence_changed(&self.state, user_id, before, audience);
    }

    async fn finish(&mut self, end: End) {
        let Some(session) = self.session.take() else {
            return;
        };
        let user_id = session.user_id;
        let before = self.state.hub.presence_of(user_id);
        // Whom to tell, taken before closing the session removes the user's routing.
        let audience = self.state.hub.presence_audience_of(user_id);
        drop(self.out.take());
        match end {
            End::Normal | End::Ended => {
                self.state.hub.close(&session.id);
                self.state.voice.session_closed(&session.id).await;
                crate::temporary_members::session_ended(&self.state, user_id).await;
            }
            End::Resumable => {
                self.state.hub.detach(&session, self.conn_id);
                self.state.voice.session_dropped(&session.id);
            }
        }
        presence_changed(&self.state, user_id, before, audience);
    }
}

/// What follows a change of a user's sessions on this node: who sees the user and has a
/// session here learns the new presence if it changed (`before` → now, counting other
/// nodes' sessions of the user); in a cluster, the other nodes learn this node's view and
/// tell their own sessions.
fn presence_changed(state: &AppState, user_id: UserId, before: Status, audience: PresenceAudience) {
    let now = state.hub.presence_of(user_id);
    if now != before {
        let d = Dispatch::new(
            Event::PresenceUpdate,
            &json!({"user_id": user_id, "status": now}),
        );
        state.hub.deliver_presence(user_id, &audience, &d);
    }
    if state.nats.is_some() {
        state.bus.publish(&BusEvent::Presence {
            node: state.worker_holder.clone(),
            user_id,
            status: state.hub.local_presence_of(user_id),
            audience,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_errors_are_told_apart_by_type() {
        let too_long =
            tungstenite::Error::Capacity(tungstenite::error::CapacityError::MessageTooLong {
                size: 70_000,
                max_size: 65_536,
            });
        assert_eq!(socket_error(too_long), SocketEvent::TooLarge);
        let utf8 = tungstenite::Error::Utf8("invalid".into());
        assert_eq!(socket_error(utf8), SocketEvent::InvalidUtf8);
        // Text that merely mentions a size or UTF-8 is neither.
        let io = std::io::Error::other("message size too long: not UTF-8");
        assert_eq!(
            socket_error(tungstenite::Error::Io(io)),
            SocketEvent::Failed
        );
        assert_eq!(
            socket_error(tungstenite::Error::ConnectionClosed),
            SocketEvent::Failed
        );
    }
}
