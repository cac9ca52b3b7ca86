//! One gateway connection's protocol as a state machine, without IO: HELLO, IDENTIFY/RESUME,
//! heartbeats and their deadlines, frame budgets, and every refusal with its close code.
//!
//! The shape is str0m's `Rtc`: the connection feeds in what happened (`on_frame`,
//! `on_socket`, `on_timeout`, and the results of work it did for the machine such as
//! `on_identified`) and then drains `poll_action` until it is empty, doing what each action
//! says. Time is an argument, never read here, and there are no sockets, tasks or database
//! handles, so every rule is tested below with plain values. The machine changes state when
//! it queues an action, not when the action is done: a close is final as soon as it is
//! decided, and inputs after it are ignored.
//!
//! Work that needs the rest of the server (checking a token, building READY, the hub's
//! resume, voice) is an action; the connection reports back how it went, and the machine
//! decides what that means for the protocol (which close code, which deadline).

use super::presence::Status;
use super::protocol::{
    self, close, op, ClientFrame, FrameBudget, Refusal, ResumeReq, VoiceOfferReq, VoiceStateReq,
};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Time allowed between connecting and IDENTIFY/RESUME.
pub const IDENTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the machine needs from the server's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Announced in HELLO; a client is late after 1.5 × this.
    pub heartbeat_interval_ms: u64,
    /// `--rate-limit-scale`: multiplies the frame budgets (never below 1).
    pub rate_limit_scale: f64,
}

/// How the connection ended, which decides what happens to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client closed with 1000/1001 (or without a code): end the session now.
    Normal,
    /// Dropped, timed out or refused: the session stays resumable.
    Resumable,
    /// The session was ended elsewhere (logout).
    Ended,
}

/// A server frame other than a dispatch (dispatches come from the hub's queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Hello {
        heartbeat_interval_ms: u64,
    },
    HeartbeatAck,
    /// `{"resumable": false}`: the client must IDENTIFY.
    InvalidSession,
    /// Sent before closing for a restart, so the client resumes.
    Reconnect,
    VoiceAnswer {
        sdp: String,
        voice_session_id: String,
    },
    VoiceError {
        code: u32,
        message: String,
    },
}

impl Reply {
    /// The frame as sent on the wire.
    pub fn to_frame(&self) -> String {
        match self {
            Reply::Hello {
                heartbeat_interval_ms,
            } => protocol::frame(
                op::HELLO,
                &json!({ "heartbeat_interval": heartbeat_interval_ms }),
            ),
            Reply::HeartbeatAck => protocol::frame(op::HEARTBEAT_ACK, &Value::Null),
            Reply::InvalidSession => {
                protocol::frame(op::INVALID_SESSION, &json!({"resumable": false}))
            }
            Reply::Reconnect => protocol::frame(op::RECONNECT, &Value::Null),
            Reply::VoiceAnswer {
                sdp,
                voice_session_id,
            } => protocol::frame(
                op::VOICE_ANSWER,
                &json!({"sdp": sdp, "voice_session_id": voice_session_id}),
            ),
            Reply::VoiceError { code, message } => {
                protocol::frame(op::VOICE_ERROR, &json!({"code": code, "message": message}))
            }
        }
    }
}

/// The end of the connection, as decided by the machine.
#[derive(Debug, PartialEq, Eq)]
pub struct Closing {
    /// The close frame to send; None when the socket is already gone or the client closed.
    pub frame: Option<Refusal>,
    pub end: End,
    /// A client frame (or what it asked for) was refused: counted in
    /// `confab_gateway_refused_frames_total`.
    pub refused_frame: bool,
}

/// What the connection must do next, in order.
#[derive(Debug)]
pub enum Action {
    Send(Reply),
    /// Check the IP's IDENTIFY budget and the token, build READY, open the session; then
    /// `on_identified` or `on_auth_failed`.
    Identify {
        token: String,
        intents: Option<u64>,
    },
    /// Check the IP's IDENTIFY budget and the token, resume in the hub; then `on_resumed`,
    /// `on_resume_invalid` or `on_auth_failed`.
    Resume(ResumeReq),
    /// Set the session's presence and tell whoever sees it.
    SetPresence(Status),
    /// Op 3's `afk`: whether push notifications go out despite this session.
    SetAfk(bool),
    /// Voice ops go to the voice service; a failure comes back as `on_voice_error`.
    VoiceState(VoiceStateReq),
    /// Then `on_voice_answer` or `on_voice_error`.
    VoiceOffer(VoiceOfferReq),
    VideoSubscribe(Value),
    VoiceE2eeKeys(Value),
    /// Op 17: follow these large servers' presences instead of those followed so far.
    PresenceSubscribe(Vec<confab_chat::ServerId>),
    /// The client has every dispatch up to this sequence number (its heartbeat said so): the
    /// session's RESUME buffer may let go of them.
    Acknowledged(u64),
    /// Send the close frame (if any) and stop; always the last action.
    Close(Closing),
}

/// Why IDENTIFY or RESUME could not authenticate the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// The IP's IDENTIFY budget is spent.
    RateLimited,
    /// The token is bad, expired or its login session ended.
    BadToken,
    /// The server failed (building READY).
    Internal,
}

/// Something that happened on the socket other than a text frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketEvent {
    Binary,
    /// The client's close frame, with its code if it had one.
    Closed(Option<u16>),
    /// A frame over the size limit.
    TooLarge,
    /// A text frame that is not UTF-8.
    InvalidUtf8,
    /// The connection failed or ended without a close frame (or a write failed).
    Failed,
}

#[derive(Debug)]
enum Phase {
    /// Waiting for IDENTIFY or RESUME until `deadline`, fixed at connect: nothing the client
    /// sends moves it.
    Unidentified {
        deadline: Instant,
    },
    /// The connection is carrying out an IDENTIFY or RESUME. No deadline runs meanwhile (the
    /// connection does the work before it reads or times anything else).
    Authenticating {
        identify_deadline: Instant,
    },
    /// Identified: the next heartbeat is due before `deadline`.
    Identified {
        deadline: Instant,
    },
    Closed,
}

/// The protocol side of one gateway connection.
#[derive(Debug)]
pub struct SessionMachine {
    settings: Settings,
    phase: Phase,
    budget: FrameBudget,
    actions: VecDeque<Action>,
}

fn refusal(code: u16, reason: &'static str) -> Refusal {
    Refusal { code, reason }
}

impl SessionMachine {
    /// A connection opened at `now`; HELLO is its first action.
    pub fn new(now: Instant, settings: Settings) -> Self {
        let mut m = Self {
            settings,
            phase: Phase::Unidentified {
                deadline: now + IDENTIFY_TIMEOUT,
            },
            budget: FrameBudget::new(now),
            actions: VecDeque::new(),
        };
        m.actions.push_back(Action::Send(Reply::Hello {
            heartbeat_interval_ms: settings.heartbeat_interval_ms,
        }));
        m
    }

    /// The next thing to do, in the order decided.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When `on_timeout` must be called next (None: no deadline runs).
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Unidentified { deadline } | Phase::Identified { deadline } => Some(deadline),
            Phase::Authenticating { .. } | Phase::Closed => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    pub fn is_identified(&self) -> bool {
        matches!(self.phase, Phase::Identified { .. })
    }

    fn heartbeat_window(&self) -> Duration {
        // 1.5 × the interval: one late heartbeat is tolerated.
        Duration::from_millis(self.settings.heartbeat_interval_ms * 3 / 2)
    }

    fn close(&mut self, frame: Option<Refusal>, end: End, refused_frame: bool) {
        if self.is_closed() {
            return;
        }
        self.phase = Phase::Closed;
        self.actions.push_back(Action::Close(Closing {
            frame,
            end,
            refused_frame,
        }));
    }

    /// Refuses what the client sent: close with `r`, resumable.
    fn refuse(&mut self, r: Refusal) {
        self.close(Some(r), End::Resumable, true);
    }

    /// One text frame from the client, received at `now`.
    pub fn on_frame(&mut self, now: Instant, text: &str) {
        if self.is_closed() {
            return;
        }
        let frame = match protocol::parse(text) {
            Ok(f) => f,
            Err(r) => return self.refuse(r),
        };
        // Frames that do not parse are refused before they count; all others count, the
        // voice signalling ones against their own budget.
        if !self
            .budget
            .allow(now, frame.is_voice(), self.settings.rate_limit_scale)
        {
            return self.refuse(refusal(close::RATE_LIMITED, "too many frames"));
        }
        match frame {
            ClientFrame::Heartbeat(seq) => {
                // Before IDENTIFY the deadline stands whatever the client sends: heartbeats
                // are answered but do not buy time.
                let window = self.heartbeat_window();
                if let Phase::Identified { deadline } = &mut self.phase {
                    *deadline = now + window;
                    if let Some(seq) = seq {
                        self.actions.push_back(Action::Acknowledged(seq));
                    }
                }
                self.actions.push_back(Action::Send(Reply::HeartbeatAck));
            }
            ClientFrame::Identify(req) => {
                // Unknown intent bits are a client bug worth hearing about at once, not
                // silently dropped events later.
                if req.intents.is_some_and(|i| i & !super::intents::ALL != 0) {
                    self.refuse(refusal(close::INVALID_INTENTS, "unknown intents"));
                } else if self.begin_auth() {
                    self.actions.push_back(Action::Identify {
                        token: req.token,
                        intents: req.intents,
                    });
                }
            }
            ClientFrame::Resume(req) => {
                if self.begin_auth() {
                    self.actions.push_back(Action::Resume(req));
                }
            }
            ClientFrame::Presence(req) => {
                if self.require_identified() {
                    self.actions.push_back(Action::SetPresence(req.status));
                    if let Some(afk) = req.afk {
                        self.actions.push_back(Action::SetAfk(afk));
                    }
                }
            }
            ClientFrame::VoiceState(req) => {
                if self.require_identified() {
                    self.actions.push_back(Action::VoiceState(req));
                }
            }
            ClientFrame::VoiceOffer(req) => {
                if self.require_identified() {
                    self.actions.push_back(Action::VoiceOffer(req));
                }
            }
            ClientFrame::VideoSubscribe(d) => {
                if self.require_identified() {
                    self.actions.push_back(Action::VideoSubscribe(d));
                }
            }
            ClientFrame::VoiceE2eeKeys(d) => {
                if self.require_identified() {
                    self.actions.push_back(Action::VoiceE2eeKeys(d));
                }
            }
            ClientFrame::PresenceSubscribe(req) => {
                if self.require_identified() {
                    self.actions
                        .push_back(Action::PresenceSubscribe(req.server_ids));
                }
            }
        }
    }

    /// IDENTIFY or RESUME may start only once; true when it did.
    fn begin_auth(&mut self) -> bool {
        match self.phase {
            Phase::Unidentified { deadline } => {
                self.phase = Phase::Authenticating {
                    identify_deadline: deadline,
                };
                true
            }
            // A second one while the first is still being carried out is refused alike.
            Phase::Authenticating { .. } | Phase::Identified { .. } => {
                self.refuse(refusal(
                    close::ALREADY_AUTHENTICATED,
                    "already authenticated",
                ));
                false
            }
            Phase::Closed => false,
        }
    }

    fn require_identified(&mut self) -> bool {
        let ok = self.is_identified();
        if !ok {
            self.refuse(refusal(close::NOT_AUTHENTICATED, "not authenticated"));
        }
        ok
    }

    /// Anything but a text frame on the socket.
    pub fn on_socket(&mut self, event: SocketEvent) {
        match event {
            SocketEvent::Binary => self.close(
                Some(refusal(
                    close::DECODE_ERROR,
                    "binary frames are not supported",
                )),
                End::Resumable,
                false,
            ),
            SocketEvent::Closed(code) => {
                // 1000/1001, or a close frame without a code (what a browser's `ws.close()`
                // sends), end the session; other codes keep it resumable.
                let end = if matches!(code.unwrap_or(1005), 1000 | 1001 | 1005) {
                    End::Normal
                } else {
                    End::Resumable
                };
                self.close(None, end, false);
            }
            SocketEvent::TooLarge => self.close(
                Some(refusal(close::DISALLOWED, "frame too large")),
                End::Resumable,
                false,
            ),
            SocketEvent::InvalidUtf8 => self.close(
                Some(refusal(
                    close::INVALID_PAYLOAD,
                    "text frame is not valid UTF-8",
                )),
                End::Resumable,
                false,
            ),
            SocketEvent::Failed => self.close(None, End::Resumable, false),
        }
    }

    /// A deadline may have passed.
    pub fn on_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Unidentified { deadline } if now >= deadline => self.close(
                Some(refusal(close::NOT_AUTHENTICATED, "identify timed out")),
                End::Resumable,
                false,
            ),
            Phase::Identified { deadline } if now >= deadline => self.close(
                Some(refusal(close::SESSION_TIMED_OUT, "no heartbeat")),
                End::Resumable,
                false,
            ),
            _ => {}
        }
    }

    /// The IDENTIFY succeeded (READY is queued) at `now`: heartbeats are due from here.
    pub fn on_identified(&mut self, now: Instant) {
        self.authenticated(now);
    }

    /// The RESUME succeeded at `now`.
    pub fn on_resumed(&mut self, now: Instant) {
        self.authenticated(now);
    }

    fn authenticated(&mut self, now: Instant) {
        if let Phase::Authenticating { .. } = self.phase {
            self.phase = Phase::Identified {
                deadline: now + self.heartbeat_window(),
            };
        }
    }

    /// The session cannot be resumed: the client must IDENTIFY, still within the deadline
    /// it got at connect.
    pub fn on_resume_invalid(&mut self) {
        if let Phase::Authenticating { identify_deadline } = self.phase {
            self.phase = Phase::Unidentified {
                deadline: identify_deadline,
            };
            self.actions.push_back(Action::Send(Reply::InvalidSession));
        }
    }

    /// IDENTIFY or RESUME failed.
    pub fn on_auth_failed(&mut self, why: AuthFailure) {
        if !matches!(self.phase, Phase::Authenticating { .. }) {
            return;
        }
        self.refuse(match why {
            AuthFailure::RateLimited => refusal(close::RATE_LIMITED, "too many identifies"),
            AuthFailure::BadToken => refusal(close::AUTHENTICATION_FAILED, "authentication failed"),
            AuthFailure::Internal => refusal(close::UNKNOWN_ERROR, "internal error"),
        });
    }

    /// The voice service answered an offer.
    pub fn on_voice_answer(&mut self, sdp: String, voice_session_id: String) {
        if self.is_identified() {
            self.actions.push_back(Action::Send(Reply::VoiceAnswer {
                sdp,
                voice_session_id,
            }));
        }
    }

    /// The voice service refused a voice op: told to the client, the connection stays.
    pub fn on_voice_error(&mut self, code: u32, message: String) {
        if self.is_identified() {
            self.actions
                .push_back(Action::Send(Reply::VoiceError { code, message }));
        }
    }

    /// Writing a reply failed: the socket is gone.
    pub fn on_write_failed(&mut self) {
        // Counted as a refused frame, as the frame being answered could not be.
        self.refuse(refusal(close::UNKNOWN_ERROR, "write failed"));
    }

    /// The server is shutting down: the client should resume elsewhere.
    pub fn on_shutdown(&mut self) {
        if self.is_closed() {
            return;
        }
        self.actions.push_back(Action::Send(Reply::Reconnect));
        self.close(
            Some(refusal(close::SERVICE_RESTART, "server restarting")),
            End::Resumable,
            false,
        );
    }

    /// The login session behind this gateway session ended (logout, revocation).
    pub fn on_session_ended(&mut self) {
        self.close(
            Some(refusal(close::AUTHENTICATION_FAILED, "session ended")),
            End::Ended,
            false,
        );
    }

    /// The hub let go of this connection: it was too slow to read its dispatches, or its
    /// session was resumed on another connection.
    pub fn on_queue_closed(&mut self, too_slow: bool) {
        let r = if too_slow {
            refusal(close::RATE_LIMITED, "too slow to keep up; resume")
        } else {
            refusal(close::UNKNOWN_ERROR, "session resumed elsewhere")
        };
        self.close(Some(r), End::Resumable, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::protocol::{FRAMES_PER_WINDOW, VOICE_FRAMES_PER_WINDOW, WINDOW_SECS};

    const INTERVAL_MS: u64 = 1_000;
    const HEARTBEAT: &str = r#"{"op":1,"d":null}"#;
    const IDENTIFY: &str = r#"{"op":2,"d":{"token":"t"}}"#;
    const RESUME: &str = r#"{"op":6,"d":{"token":"t","session_id":"s","seq":3}}"#;
    const VOICE_STATE: &str = r#"{"op":4,"d":{"server_id":"1","channel_id":null}}"#;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn machine(t0: Instant) -> SessionMachine {
        machine_scaled(t0, 1.0)
    }

    fn machine_scaled(t0: Instant, rate_limit_scale: f64) -> SessionMachine {
        let mut m = SessionMachine::new(
            t0,
            Settings {
                heartbeat_interval_ms: INTERVAL_MS,
                rate_limit_scale,
            },
        );
        assert!(matches!(
            m.poll_action(),
            Some(Action::Send(Reply::Hello { .. }))
        ));
        m
    }

    /// A machine that identified at `at`.
    fn identified(t0: Instant, at: Instant) -> SessionMachine {
        let mut m = machine(t0);
        m.on_frame(at, IDENTIFY);
        assert!(matches!(drain(&mut m)[..], [Action::Identify { .. }]));
        m.on_identified(at);
        assert!(m.is_identified());
        m
    }

    fn drain(m: &mut SessionMachine) -> Vec<Action> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    /// The close the machine decided, checking it is its last action.
    fn closing(m: &mut SessionMachine) -> Closing {
        let mut actions = drain(m);
        assert!(m.is_closed(), "closed: {actions:?}");
        assert_eq!(m.next_deadline(), None, "no deadline once closed");
        match actions.pop() {
            Some(Action::Close(c)) => c,
            other => panic!("expected a close last, got {other:?}"),
        }
    }

    fn refused(code: u16, reason: &'static str) -> Closing {
        Closing {
            frame: Some(Refusal { code, reason }),
            end: End::Resumable,
            refused_frame: true,
        }
    }

    fn closed_with(code: u16, reason: &'static str, end: End) -> Closing {
        Closing {
            frame: Some(Refusal { code, reason }),
            end,
            refused_frame: false,
        }
    }

    #[test]
    fn hello_announces_the_heartbeat_interval() {
        let mut m = SessionMachine::new(
            Instant::now(),
            Settings {
                heartbeat_interval_ms: 41_250,
                rate_limit_scale: 1.0,
            },
        );
        match m.poll_action() {
            Some(Action::Send(hello)) => {
                let v: Value = serde_json::from_str(&hello.to_frame()).unwrap();
                assert_eq!(v["op"], op::HELLO);
                assert_eq!(v["d"]["heartbeat_interval"], 41_250);
            }
            other => panic!("{other:?}"),
        }
        assert!(m.poll_action().is_none());
    }

    #[test]
    fn identify_deadline_holds_whatever_is_sent() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        assert_eq!(m.next_deadline(), Some(t0 + IDENTIFY_TIMEOUT));
        // A heartbeat every second is answered but buys no time.
        for s in 1..10 {
            let t = t0 + secs(f64::from(s));
            m.on_frame(t, HEARTBEAT);
            assert!(matches!(
                drain(&mut m)[..],
                [Action::Send(Reply::HeartbeatAck)]
            ));
            assert_eq!(m.next_deadline(), Some(t0 + IDENTIFY_TIMEOUT));
            m.on_timeout(t);
            assert!(!m.is_closed(), "closed early at {s} s");
        }
        m.on_timeout(t0 + secs(9.999));
        assert!(drain(&mut m).is_empty());
        m.on_timeout(t0 + IDENTIFY_TIMEOUT);
        assert_eq!(
            closing(&mut m),
            closed_with(
                close::NOT_AUTHENTICATED,
                "identify timed out",
                End::Resumable
            )
        );
    }

    #[test]
    fn identify_deadline_survives_an_invalid_resume() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        m.on_frame(t0 + secs(2.0), RESUME);
        match &drain(&mut m)[..] {
            [Action::Resume(r)] => assert_eq!((r.session_id.as_str(), r.seq), ("s", 3)),
            other => panic!("{other:?}"),
        }
        // While the shell carries the RESUME out, nothing times out.
        assert_eq!(m.next_deadline(), None);
        m.on_resume_invalid();
        assert!(matches!(
            drain(&mut m)[..],
            [Action::Send(Reply::InvalidSession)]
        ));
        assert!(!m.is_identified());
        assert_eq!(m.next_deadline(), Some(t0 + IDENTIFY_TIMEOUT));
        // The client may IDENTIFY next...
        m.on_frame(t0 + secs(3.0), IDENTIFY);
        assert!(matches!(drain(&mut m)[..], [Action::Identify { .. }]));
        m.on_identified(t0 + secs(4.0));
        assert!(m.is_identified());
        // ...or, had it not, be closed at the deadline from connect.
        let mut late = machine(t0);
        late.on_frame(t0, RESUME);
        late.on_resume_invalid();
        drain(&mut late);
        late.on_timeout(t0 + IDENTIFY_TIMEOUT);
        assert_eq!(
            closing(&mut late).frame.unwrap().code,
            close::NOT_AUTHENTICATED
        );
    }

    #[test]
    fn an_identified_heartbeat_with_a_seq_acknowledges_it() {
        let t0 = Instant::now();
        // Before IDENTIFY a seq acknowledges nothing: there is no session yet.
        let mut m = machine(t0);
        m.on_frame(t0, r#"{"op":1,"d":4}"#);
        assert!(matches!(
            drain(&mut m)[..],
            [Action::Send(Reply::HeartbeatAck)]
        ));
        let mut m = identified(t0, t0);
        m.on_frame(t0, r#"{"op":1,"d":42}"#);
        assert!(matches!(
            drain(&mut m)[..],
            [Action::Acknowledged(42), Action::Send(Reply::HeartbeatAck)]
        ));
    }

    #[test]
    fn heartbeats_keep_an_identified_session_alive_until_one_is_missed() {
        let t0 = Instant::now();
        let window = Duration::from_millis(INTERVAL_MS * 3 / 2);
        let at = t0 + secs(1.0);
        let mut m = identified(t0, at);
        // The heartbeat window starts when the session is identified, not at connect.
        assert_eq!(m.next_deadline(), Some(at + window));
        m.on_timeout(t0 + IDENTIFY_TIMEOUT - secs(8.0));
        assert!(!m.is_closed());
        let mut t = at;
        for _ in 0..20 {
            t += secs(1.2);
            m.on_timeout(t);
            m.on_frame(t, HEARTBEAT);
            assert!(matches!(
                drain(&mut m)[..],
                [Action::Send(Reply::HeartbeatAck)]
            ));
            assert_eq!(m.next_deadline(), Some(t + window));
        }
        assert!(
            t > t0 + IDENTIFY_TIMEOUT,
            "the IDENTIFY deadline no longer applies"
        );
        m.on_timeout(t + window - secs(0.001));
        assert!(!m.is_closed());
        m.on_timeout(t + window);
        assert_eq!(
            closing(&mut m),
            closed_with(close::SESSION_TIMED_OUT, "no heartbeat", End::Resumable)
        );
    }

    #[test]
    fn a_second_identify_or_resume_is_4005() {
        let t0 = Instant::now();
        for second in [IDENTIFY, RESUME] {
            let mut m = identified(t0, t0);
            m.on_frame(t0, second);
            assert_eq!(
                closing(&mut m),
                refused(close::ALREADY_AUTHENTICATED, "already authenticated")
            );
            // Also while the first is still being carried out.
            let mut m = machine(t0);
            m.on_frame(t0, IDENTIFY);
            drain(&mut m);
            m.on_frame(t0, second);
            assert_eq!(
                closing(&mut m).frame.unwrap().code,
                close::ALREADY_AUTHENTICATED
            );
        }
    }

    #[test]
    fn an_identify_with_unknown_intents_is_4013() {
        let t0 = Instant::now();
        let unknown = super::super::intents::MESSAGES | 1 << 20;
        assert_ne!(unknown & !super::super::intents::ALL, 0);
        let mut m = machine(t0);
        m.on_frame(
            t0,
            &format!(r#"{{"op":2,"d":{{"token":"t","intents":{unknown}}}}}"#),
        );
        assert_eq!(
            closing(&mut m),
            refused(close::INVALID_INTENTS, "unknown intents")
        );
        // Known bits, all of them, are identified as usual.
        let mut m = machine(t0);
        let all = super::super::intents::ALL;
        m.on_frame(
            t0,
            &format!(r#"{{"op":2,"d":{{"token":"t","intents":{all}}}}}"#),
        );
        assert!(matches!(
            drain(&mut m)[..],
            [Action::Identify { intents: Some(i), .. }] if i == all
        ));
    }

    #[test]
    fn session_ops_before_identify_are_4003() {
        let t0 = Instant::now();
        for frame in [
            r#"{"op":3,"d":{"status":"idle"}}"#,
            VOICE_STATE,
            r#"{"op":12,"d":{"sdp":"v=0"}}"#,
            r#"{"op":15,"d":{"tiles":[]}}"#,
        ] {
            let mut m = machine(t0);
            m.on_frame(t0, frame);
            assert_eq!(
                closing(&mut m),
                refused(close::NOT_AUTHENTICATED, "not authenticated"),
                "{frame}"
            );
            // The same frame once identified is work for the shell.
            let mut m = identified(t0, t0);
            m.on_frame(t0, frame);
            let actions = drain(&mut m);
            assert!(
                matches!(
                    actions[..],
                    [Action::SetPresence(Status::Idle)]
                        | [Action::VoiceState(_)]
                        | [Action::VoiceOffer(_)]
                        | [Action::VideoSubscribe(_)]
                ),
                "{frame}: {actions:?}"
            );
        }
    }

    #[test]
    fn bad_frames_are_refused_with_their_codes() {
        let t0 = Instant::now();
        let cases = [
            (
                r#"{"op":99,"d":null}"#,
                close::UNKNOWN_OPCODE,
                "unknown opcode",
            ),
            (
                r#"{"op":2,"d":{"token":5}}"#,
                close::DECODE_ERROR,
                "invalid payload",
            ),
            (
                r#"{"op":6,"d":{"token":"t"}}"#,
                close::DECODE_ERROR,
                "invalid payload",
            ),
            (
                "not json",
                close::DECODE_ERROR,
                "frame is not a gateway JSON object",
            ),
        ];
        for (frame, code, reason) in cases {
            for mut m in [machine(t0), identified(t0, t0)] {
                m.on_frame(t0, frame);
                assert_eq!(closing(&mut m), refused(code, reason), "{frame}");
            }
        }
    }

    #[test]
    fn frame_budget_is_4008_and_voice_signalling_has_its_own() {
        let t0 = Instant::now();
        let mut m = identified(t0, t0);
        // Voice signalling first: it does not use up the general budget.
        for _ in 0..VOICE_FRAMES_PER_WINDOW {
            m.on_frame(t0, VOICE_STATE);
        }
        // IDENTIFY counted as one frame of the general budget.
        for _ in 1..FRAMES_PER_WINDOW {
            m.on_frame(t0, HEARTBEAT);
        }
        assert!(!m.is_closed());
        assert_eq!(
            drain(&mut m).len() as u32,
            VOICE_FRAMES_PER_WINDOW + FRAMES_PER_WINDOW - 1
        );
        m.on_frame(t0, HEARTBEAT);
        assert_eq!(
            closing(&mut m),
            refused(close::RATE_LIMITED, "too many frames")
        );

        // The general budget spent, voice signalling still passes, up to its own limit.
        let mut m = identified(t0, t0);
        for _ in 1..FRAMES_PER_WINDOW {
            m.on_frame(t0, HEARTBEAT);
        }
        for _ in 0..VOICE_FRAMES_PER_WINDOW {
            m.on_frame(t0, VOICE_STATE);
        }
        assert!(!m.is_closed());
        drain(&mut m);
        m.on_frame(t0, VOICE_STATE);
        assert_eq!(
            closing(&mut m),
            refused(close::RATE_LIMITED, "too many frames")
        );
    }

    #[test]
    fn frame_budget_renews_each_window_and_scales() {
        let t0 = Instant::now();
        let mut m = identified(t0, t0);
        let mut t = t0;
        for _ in 0..3 {
            // A full budget in each window, heartbeats keeping the session alive.
            for _ in 1..FRAMES_PER_WINDOW {
                m.on_frame(t, HEARTBEAT);
            }
            t += Duration::from_secs(WINDOW_SECS);
            m.on_frame(t, HEARTBEAT);
        }
        assert!(!m.is_closed());
        // Heartbeats before IDENTIFY count too; the budget scales with --rate-limit-scale.
        let mut m = machine_scaled(t0, 2.0);
        for _ in 0..2 * FRAMES_PER_WINDOW {
            m.on_frame(t0, HEARTBEAT);
        }
        assert!(!m.is_closed(), "--rate-limit-scale 2 doubles the budget");
        m.on_frame(t0, HEARTBEAT);
        assert_eq!(closing(&mut m).frame.unwrap().code, close::RATE_LIMITED);
        // A scale below 1 never shrinks it.
        let mut m = machine_scaled(t0, 0.1);
        for _ in 0..FRAMES_PER_WINDOW {
            m.on_frame(t0, HEARTBEAT);
        }
        assert!(!m.is_closed());
    }

    #[test]
    fn resume_succeeds_into_heartbeats() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        m.on_frame(t0, RESUME);
        drain(&mut m);
        let at = t0 + secs(9.0);
        m.on_resumed(at);
        assert!(m.is_identified());
        assert_eq!(
            m.next_deadline(),
            Some(at + Duration::from_millis(INTERVAL_MS * 3 / 2))
        );
        m.on_timeout(t0 + IDENTIFY_TIMEOUT);
        assert!(!m.is_closed(), "the IDENTIFY deadline is gone once resumed");
        m.on_frame(at, r#"{"op":3,"d":{"status":"dnd"}}"#);
        assert!(matches!(
            drain(&mut m)[..],
            [Action::SetPresence(Status::Dnd)]
        ));
    }

    #[test]
    fn failed_authentication_is_refused_with_its_code() {
        let t0 = Instant::now();
        let cases = [
            (
                AuthFailure::BadToken,
                close::AUTHENTICATION_FAILED,
                "authentication failed",
            ),
            (
                AuthFailure::RateLimited,
                close::RATE_LIMITED,
                "too many identifies",
            ),
            (
                AuthFailure::Internal,
                close::UNKNOWN_ERROR,
                "internal error",
            ),
        ];
        for (why, code, reason) in cases {
            for frame in [IDENTIFY, RESUME] {
                let mut m = machine(t0);
                m.on_frame(t0, frame);
                drain(&mut m);
                m.on_auth_failed(why);
                assert_eq!(closing(&mut m), refused(code, reason), "{frame} {why:?}");
            }
        }
        // A result for work never asked for changes nothing.
        let mut m = machine(t0);
        m.on_auth_failed(AuthFailure::BadToken);
        m.on_identified(t0);
        m.on_resume_invalid();
        assert!(drain(&mut m).is_empty());
        assert!(!m.is_identified());
    }

    #[test]
    fn socket_events_close_as_before() {
        let t0 = Instant::now();
        let cases = [
            (
                SocketEvent::Binary,
                Some((close::DECODE_ERROR, "binary frames are not supported")),
                End::Resumable,
            ),
            (
                SocketEvent::TooLarge,
                Some((close::DISALLOWED, "frame too large")),
                End::Resumable,
            ),
            (
                SocketEvent::InvalidUtf8,
                Some((close::INVALID_PAYLOAD, "text frame is not valid UTF-8")),
                End::Resumable,
            ),
            (SocketEvent::Failed, None, End::Resumable),
            (SocketEvent::Closed(Some(1000)), None, End::Normal),
            (SocketEvent::Closed(Some(1001)), None, End::Normal),
            (SocketEvent::Closed(None), None, End::Normal),
            (SocketEvent::Closed(Some(4000)), None, End::Resumable),
            (SocketEvent::Closed(Some(1006)), None, End::Resumable),
        ];
        for (event, frame, end) in cases {
            let mut m = identified(t0, t0);
            m.on_socket(event);
            let want = Closing {
                frame: frame.map(|(code, reason)| Refusal { code, reason }),
                end,
                refused_frame: false,
            };
            assert_eq!(closing(&mut m), want, "{event:?}");
        }
    }

    #[test]
    fn server_side_ends_close_as_before() {
        let t0 = Instant::now();
        let mut m = identified(t0, t0);
        m.on_shutdown();
        let actions = drain(&mut m);
        assert!(
            matches!(
                &actions[..],
                [Action::Send(Reply::Reconnect), Action::Close(c)]
                    if *c == closed_with(close::SERVICE_RESTART, "server restarting", End::Resumable)
            ),
            "{actions:?}"
        );

        let mut m = identified(t0, t0);
        m.on_session_ended();
        assert_eq!(
            closing(&mut m),
            closed_with(close::AUTHENTICATION_FAILED, "session ended", End::Ended)
        );

        let mut m = identified(t0, t0);
        m.on_queue_closed(true);
        assert_eq!(
            closing(&mut m),
            closed_with(
                close::RATE_LIMITED,
                "too slow to keep up; resume",
                End::Resumable
            )
        );
        let mut m = identified(t0, t0);
        m.on_queue_closed(false);
        assert_eq!(
            closing(&mut m),
            closed_with(
                close::UNKNOWN_ERROR,
                "session resumed elsewhere",
                End::Resumable
            )
        );

        let mut m = identified(t0, t0);
        m.on_write_failed();
        assert_eq!(
            closing(&mut m),
            refused(close::UNKNOWN_ERROR, "write failed")
        );
    }

    #[test]
    fn a_closed_machine_does_nothing_more() {
        let t0 = Instant::now();
        let mut m = identified(t0, t0);
        m.on_frame(t0, r#"{"op":99}"#);
        closing(&mut m);
        m.on_frame(t0, HEARTBEAT);
        m.on_frame(t0, IDENTIFY);
        m.on_timeout(t0 + secs(100.0));
        m.on_shutdown();
        m.on_session_ended();
        m.on_socket(SocketEvent::Binary);
        m.on_write_failed();
        m.on_voice_error(4400, "x".into());
        assert!(drain(&mut m).is_empty());
    }

    #[test]
    fn voice_results_become_frames_and_keep_the_connection() {
        let t0 = Instant::now();
        let mut m = identified(t0, t0);
        m.on_frame(
            t0,
            r#"{"op":12,"d":{"sdp":"v=0","video_tracks":{"1":"camera"}}}"#,
        );
        match &drain(&mut m)[..] {
            [Action::VoiceOffer(o)] => {
                assert_eq!(o.sdp, "v=0");
                assert!(o.video_tracks.is_some());
            }
            other => panic!("{other:?}"),
        }
        m.on_voice_answer("answer".into(), "vs1".into());
        m.on_voice_error(4403, "no".into());
        let frames: Vec<Value> = drain(&mut m)
            .into_iter()
            .map(|a| match a {
                Action::Send(r) => serde_json::from_str(&r.to_frame()).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(frames[0]["op"], op::VOICE_ANSWER);
        assert_eq!(
            frames[0]["d"],
            json!({"sdp": "answer", "voice_session_id": "vs1"})
        );
        assert_eq!(frames[1]["op"], op::VOICE_ERROR);
        assert_eq!(frames[1]["d"], json!({"code": 4403, "message": "no"}));
        assert!(!m.is_closed());
    }

    #[test]
    fn server_frames_are_not_dispatches() {
        for r in [Reply::HeartbeatAck, Reply::InvalidSession, Reply::Reconnect] {
            let v: Value = serde_json::from_str(&r.to_frame()).unwrap();
            assert_eq!((v["s"].clone(), v["t"].clone()), (Value::Null, Value::Null));
            let want = match r {
                Reply::HeartbeatAck => (op::HEARTBEAT_ACK, Value::Null),
                Reply::InvalidSession => (op::INVALID_SESSION, json!({"resumable": false})),
                _ => (op::RECONNECT, Value::Null),
            };
            assert_eq!((v["op"].as_u64().unwrap() as u8, v["d"].clone()), want);
        }
    }
}
