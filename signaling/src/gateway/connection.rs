//! One gateway connection: the async shell around the protocol. It reads client frames,
//! writes the session's dispatches (coalesced: everything queued goes out before one flush),
//! and enforces heartbeats, frame budgets and shutdown.

use super::hub::{Dispatch, Outbound, Resume, Session, Target};
use super::presence::Status;
use super::protocol::{self, close, op, ClientFrame, FrameBudget, Refusal};
use super::ready::ready_payload;
use crate::state::AppState;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use confab_chat::Snowflake;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Time allowed between connecting and IDENTIFY/RESUME.
const IDENTIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// Most dispatches written before one flush.
const COALESCE: usize = 512;

type Tx = SplitSink<WebSocket, Message>;

/// How the connection ended, which decides what happens to the session.
enum End {
    /// The client closed with 1000/1001 (or logged out): end the session now.
    Normal,
    /// Dropped, timed out or refused: the session stays resumable.
    Resumable,
    /// The session was ended elsewhere.
    Ended,
}

struct Conn {
    state: AppState,
    ip: IpAddr,
    session: Option<Arc<Session>>,
    conn_id: u64,
    out: Option<mpsc::Receiver<Outbound>>,
    budget: FrameBudget,
    /// Counts this connection against its IP's unauthenticated ones until IDENTIFY/RESUME.
    pending: Option<super::PendingSlot>,
    /// Fires when the client missed its heartbeat (or IDENTIFY). Created once and reset on
    /// each heartbeat: re-creating a timer per loop iteration cost a timer-wheel insert per
    /// written batch.
    heartbeat: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// Completes when the session is ended elsewhere (logout); pending until IDENTIFY.
    ended: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
}

pub async fn run(state: AppState, socket: WebSocket, ip: IpAddr, pending: super::PendingSlot) {
    let gauge = metrics::gauge!("confab_gateway_connections");
    gauge.increment(1.0);
    metrics::counter!("confab_gateway_connections_total").increment(1);
    let (mut tx, mut rx) = socket.split();
    let interval = state.config.heartbeat_interval_ms;
    let hello = protocol::frame(op::HELLO, &json!({ "heartbeat_interval": interval }));
    if tx.send(Message::Text(hello.into())).await.is_ok() {
        let mut conn = Conn {
            state: state.clone(),
            ip,
            session: None,
            conn_id: 0,
            out: None,
            budget: FrameBudget::new(Instant::now()),
            pending: Some(pending),
            heartbeat: Box::pin(tokio::time::sleep(IDENTIFY_TIMEOUT)),
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
        conn.finish(end).await;
    }
    gauge.decrement(1.0);
}

async fn send_close(tx: &mut Tx, code: u16, reason: &'static str) {
    let _ = tx
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
    let _ = tx.close().await;
}

async fn next_out(out: &mut Option<mpsc::Receiver<Outbound>>) -> Option<Outbound> {
    match out {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Conn {
    fn heartbeat_window(&self) -> Duration {
        // 1.5 × the interval: one late heartbeat is tolerated.
        Duration::from_millis(self.state.config.heartbeat_interval_ms * 3 / 2)
    }

    async fn serve(&mut self, tx: &mut Tx, rx: &mut SplitStream<WebSocket>) -> End {
        let shutdown = self.state.shutdown.clone().cancelled_owned();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => {
                    let _ = tx.send(Message::Text(protocol::frame(op::RECONNECT, &serde_json::Value::Null).into())).await;
                    send_close(tx, close::SERVICE_RESTART, "server restarting").await;
                    return End::Resumable;
                }
                _ = &mut self.ended => {
                    send_close(tx, close::AUTHENTICATION_FAILED, "session ended").await;
                    return End::Ended;
                }
                item = next_out(&mut self.out) => {
                    let Some(item) = item else {
                        // The hub let go of this connection: too slow, or resumed elsewhere.
                        let slow = self.session.as_ref().is_some_and(|s| s.too_slow.load(Ordering::Relaxed));
                        if slow {
                            metrics::counter!("confab_gateway_slow_disconnects_total").increment(1);
                            send_close(tx, close::RATE_LIMITED, "too slow to keep up; resume").await;
                        } else {
                            send_close(tx, close::UNKNOWN_ERROR, "session resumed elsewhere").await;
                        }
                        return End::Resumable;
                    };
                    if self.write_batch(tx, item).await.is_err() {
                        return End::Resumable;
                    }
                }
                msg = rx.next() => {
                    let text = match msg {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Binary(_))) => {
                            send_close(tx, close::DECODE_ERROR, "binary frames are not supported").await;
                            return End::Resumable;
                        }
                        Some(Ok(Message::Close(frame))) => {
                            // 1000/1001, or a close frame without a code (what a browser's
                            // `ws.close()` sends), end the session; other codes keep it resumable.
                            let code = frame.map(|f| f.code).unwrap_or(1005);
                            return if matches!(code, 1000 | 1001 | 1005) { End::Normal } else { End::Resumable };
                        }
                        Some(Ok(_)) => continue, // ping/pong: handled by the library
                        Some(Err(e)) => {
                            // Oversized frames and text that is not UTF-8 surface here.
                            let msg = e.to_string();
                            if msg.contains("UTF-8") || msg.contains("utf-8") || msg.contains("Utf8") {
                                send_close(tx, close::INVALID_PAYLOAD, "text frame is not valid UTF-8").await;
                            } else if msg.contains("too long") || msg.contains("Space limit") || msg.contains("size") {
                                send_close(tx, close::DISALLOWED, "frame too large").await;
                            }
                            return End::Resumable;
                        }
                        None => return End::Resumable,
                    };
                    if let Err(r) = self.handle_text(tx, &text).await {
                        metrics::counter!("confab_gateway_refused_frames_total").increment(1);
                        send_close(tx, r.code, r.reason).await;
                        return End::Resumable;
                    }
                }
                _ = &mut self.heartbeat => {
                    if self.session.is_none() {
                        send_close(tx, close::NOT_AUTHENTICATED, "identify timed out").await;
                    } else {
                        send_close(tx, close::SESSION_TIMED_OUT, "no heartbeat").await;
                    }
                    return End::Resumable;
                }
            }
        }
    }

    /// Writes one dispatch and everything else already queued, then flushes once.
    async fn write_batch(&mut self, tx: &mut Tx, first: Outbound) -> Result<(), axum::Error> {
        tx.feed(Message::Text(first.1.frame(first.0).into()))
            .await?;
        if let Some(out) = self.out.as_mut() {
            for _ in 0..COALESCE {
                match out.try_recv() {
                    Ok((seq, d)) => tx.feed(Message::Text(d.frame(seq).into())).await?,
                    Err(_) => break,
                }
            }
        }
        tx.flush().await
    }

    async fn handle_text(&mut self, tx: &mut Tx, text: &str) -> Result<(), Refusal> {
        let frame = protocol::parse(text)?;
        if !self.budget.allow(
            Instant::now(),
            frame.is_voice(),
            self.state.config.rate_limit_scale,
        ) {
            return Err(Refusal {
                code: close::RATE_LIMITED,
                reason: "too many frames",
            });
        }
        match frame {
            ClientFrame::Heartbeat(_) => {
                // Before IDENTIFY the deadline stands whatever the client sends: heartbeats
                // are answered but do not buy time.
                if self.session.is_some() {
                    let window = self.heartbeat_window();
                    self.heartbeat
                        .as_mut()
                        .reset(tokio::time::Instant::now() + window);
                }
                let ack = protocol::frame(op::HEARTBEAT_ACK, &serde_json::Value::Null);
                tx.send(Message::Text(ack.into()))
                    .await
                    .map_err(|_| Refusal {
                        code: close::UNKNOWN_ERROR,
                        reason: "write failed",
                    })?;
            }
            ClientFrame::Identify(req) => {
                if self.session.is_some() {
                    return Err(Refusal {
                        code: close::ALREADY_AUTHENTICATED,
                        reason: "already authenticated",
                    });
                }
                self.identify(&req.token).await?;
            }
            ClientFrame::Resume(req) => {
                if self.session.is_some() {
                    return Err(Refusal {
                        code: close::ALREADY_AUTHENTICATED,
                        reason: "already authenticated",
                    });
                }
                self.resume(tx, req).await?;
            }
            ClientFrame::Presence(req) => {
                let session = self.require_session()?;
                let before = self.state.hub.presence_of(session.user_id);
                *session.status.lock() = req.status;
                self.announce_presence(session.user_id, before);
            }
            ClientFrame::VoiceState(req) => {
                let session = self.require_session()?;
                if let Err(e) = self
                    .state
                    .voice
                    .state_update(&self.state, &session, req)
                    .await
                {
                    self.voice_error(tx, e).await?;
                }
            }
            ClientFrame::VoiceOffer(req) => {
                let session = self.require_session()?;
                match self
                    .state
                    .voice
                    .offer(&self.state, &session, req.sdp, req.video_tracks)
                    .await
                {
                    Ok((sdp, voice_session_id)) => {
                        let f = protocol::frame(
                            op::VOICE_ANSWER,
                            &json!({"sdp": sdp, "voice_session_id": voice_session_id}),
                        );
                        tx.send(Message::Text(f.into()))
                            .await
                            .map_err(|_| Refusal {
                                code: close::UNKNOWN_ERROR,
                                reason: "write failed",
                            })?;
                    }
                    Err(e) => self.voice_error(tx, e).await?,
                }
            }
            ClientFrame::VideoSubscribe(d) => {
                let session = self.require_session()?;
                if let Err(e) = self.state.voice.video_subscribe(&session, d) {
                    self.voice_error(tx, e).await?;
                }
            }
        }
        Ok(())
    }

    async fn voice_error(&self, tx: &mut Tx, e: crate::voice::VoiceError) -> Result<(), Refusal> {
        let f = protocol::frame(
            op::VOICE_ERROR,
            &json!({"code": e.code(), "message": e.to_string()}),
        );
        tx.send(Message::Text(f.into())).await.map_err(|_| Refusal {
            code: close::UNKNOWN_ERROR,
            reason: "write failed",
        })
    }

    fn require_session(&self) -> Result<Arc<Session>, Refusal> {
        self.session.clone().ok_or(Refusal {
            code: close::NOT_AUTHENTICATED,
            reason: "not authenticated",
        })
    }

    fn check_identify_budget(&self) -> Result<(), Refusal> {
        let d = self
            .state
            .limiter
            .check(crate::ratelimit::IDENTIFY, &format!("ip{}", self.ip));
        if d.allowed {
            Ok(())
        } else {
            Err(Refusal {
                code: close::RATE_LIMITED,
                reason: "too many identifies",
            })
        }
    }

    async fn identify(&mut self, token: &str) -> Result<(), Refusal> {
        self.check_identify_budget()?;
        let auth = self.state.authenticate(token).await.map_err(|_| Refusal {
            code: close::AUTHENTICATION_FAILED,
            reason: "authentication failed",
        })?;
        let ready = ready_payload(&self.state, auth.user_id)
            .await
            .map_err(|e| {
                tracing::error!(error = ?e, "building READY");
                Refusal {
                    code: close::UNKNOWN_ERROR,
                    reason: "internal error",
                }
            })?;
        let before = self.state.hub.presence_of(auth.user_id);
        let (session, rx, conn_id) =
            self.state
                .hub
                .open(auth.user_id, auth.session_id, &ready.server_ids);
        self.state
            .hub
            .set_friends(auth.user_id, ready.friend_ids.iter().copied());
        let mut payload = ready.payload;
        payload["session_id"] = json!(session.id.as_ref());
        self.state.hub.deliver(
            &Target::Session(session.id.clone()),
            &Dispatch::new("READY", &payload),
        );
        self.attach(session.clone(), rx, conn_id);
        metrics::counter!("confab_gateway_identifies_total").increment(1);
        self.announce_presence(auth.user_id, before);
        Ok(())
    }

    async fn resume(&mut self, tx: &mut Tx, req: protocol::ResumeReq) -> Result<(), Refusal> {
        self.check_identify_budget()?;
        let auth = self
            .state
            .authenticate(&req.token)
            .await
            .map_err(|_| Refusal {
                code: close::AUTHENTICATION_FAILED,
                reason: "authentication failed",
            })?;
        let before = self.state.hub.presence_of(auth.user_id);
        match self
            .state
            .hub
            .resume(&req.session_id, auth.user_id, req.seq)
        {
            Resume::Ok(session, rx, conn_id) => {
                self.state.hub.deliver(
                    &Target::Session(session.id.clone()),
                    &Dispatch::new("RESUMED", &json!({})),
                );
                self.attach(session.clone(), rx, conn_id);
                metrics::counter!("confab_gateway_resumes_total").increment(1);
                self.state.voice.session_resumed(&self.state, &session);
                self.announce_presence(auth.user_id, before);
            }
            Resume::Invalid => {
                metrics::counter!("confab_gateway_invalid_sessions_total").increment(1);
                let f = protocol::frame(op::INVALID_SESSION, &json!({"resumable": false}));
                tx.send(Message::Text(f.into()))
                    .await
                    .map_err(|_| Refusal {
                        code: close::UNKNOWN_ERROR,
                        reason: "write failed",
                    })?;
            }
        }
        Ok(())
    }

    fn attach(&mut self, session: Arc<Session>, rx: mpsc::Receiver<Outbound>, conn_id: u64) {
        self.ended = Box::pin(session.ended.clone().cancelled_owned());
        self.session = Some(session);
        self.pending = None;
        self.out = Some(rx);
        self.conn_id = conn_id;
        let window = self.heartbeat_window();
        self.heartbeat
            .as_mut()
            .reset(tokio::time::Instant::now() + window);
    }

    /// Tells co-members when what they see of this user's presence changed.
    fn announce_presence(&self, user_id: Snowflake, before: Status) {
        let now = self.state.hub.presence_of(user_id);
        if now != before {
            let to = self.state.hub.presence_audience(user_id);
            if !to.is_empty() {
                self.state.emit(
                    Target::Users(to),
                    "PRESENCE_UPDATE",
                    &json!({"user_id": user_id, "status": now}),
                );
            }
        }
    }

    async fn finish(&mut self, end: End) {
        let Some(session) = self.session.take() else {
            return;
        };
        let user_id = session.user_id;
        let before = self.state.hub.presence_of(user_id);
        // Whom to tell, taken before closing the session removes the user's routing.
        let co_members = self.state.hub.presence_audience(user_id);
        drop(self.out.take());
        match end {
            End::Normal | End::Ended => {
                self.state.hub.close(&session.id);
                self.state
                    .voice
                    .session_closed(&self.state, &session.id)
                    .await;
                super::temporary::session_ended(&self.state, user_id).await;
            }
            End::Resumable => {
                self.state.hub.detach(&session, self.conn_id);
                self.state.voice.session_dropped(&self.state, &session.id);
            }
        }
        let status = self.state.hub.presence_of(user_id);
        if status != before && !co_members.is_empty() {
            self.state.emit(
                Target::Users(co_members),
                "PRESENCE_UPDATE",
                &json!({"user_id": user_id, "status": status}),
            );
        }
    }
}
