//! What the gateway sends and to whom: a dispatch event serialised once, and its audience.

use crate::gateway::events::Event;
use confab_chat::{ServerId, UserId};
use std::fmt::Write;
use std::sync::Arc;

/// One event, serialized once.
#[derive(Debug)]
pub struct Dispatch {
    pub t: Event,
    /// The JSON of `d`.
    pub d: Box<str>,
}

impl Dispatch {
    pub fn new<T: serde::Serialize>(t: Event, d: &T) -> Arc<Self> {
        let d = serde_json::to_string(d).unwrap_or_else(|_| "null".into());
        Arc::new(Dispatch {
            t,
            d: d.into_boxed_str(),
        })
    }

    /// The frame a session sends for this dispatch at sequence `seq`.
    pub fn frame(&self, seq: u64) -> String {
        let mut s = String::with_capacity(self.d.len() + self.t.name().len() + 40);
        s.push_str("{\"op\":0,\"s\":");
        // Written in place: a String per number would be one more allocation per recipient.
        let _ = write!(s, "{seq}");
        s.push_str(",\"t\":\"");
        s.push_str(self.t.name());
        s.push_str("\",\"d\":");
        s.push_str(&self.d);
        s.push('}');
        s
    }
}

/// Who receives an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every member of a server.
    Server(ServerId),
    /// Every member of a server but one (e.g. the typist).
    ServerExcept(ServerId, UserId),
    /// Every session of one user.
    User(UserId),
    /// Every session of these users.
    Users(Vec<UserId>),
    /// One session.
    Session(Arc<str>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_format() {
        let f = Dispatch::new(Event::MessageCreate, &serde_json::json!({"a": 1})).frame(7);
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["op"], 0);
        assert_eq!(v["s"], 7);
        assert_eq!(v["t"], "MESSAGE_CREATE");
        assert_eq!(v["d"]["a"], 1);
    }
}
