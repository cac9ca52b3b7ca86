//! Presence statuses.

#[cfg(test)]
use confab_chat::Snowflake;
use confab_chat::{ServerId, UserId};
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Idle,
    Dnd,
    Invisible,
    Offline,
}

impl Status {
    /// Which status wins when a user has several sessions.
    pub fn rank(self) -> u8 {
        match self {
            Status::Offline => 0,
            Status::Invisible => 1,
            Status::Idle => 2,
            Status::Dnd => 3,
            Status::Online => 4,
        }
    }

    /// What others see.
    pub fn visible(self) -> Status {
        match self {
            Status::Invisible => Status::Offline,
            s => s,
        }
    }
}

/// What other nodes report of their users' presence (a cluster; empty on one node). Each
/// node tells the others its own view of a user (the best status of the user's sessions
/// there) whenever it changes, and repeats its whole view every `REFRESH`; an entry not
/// repeated for `EXPIRE` belonged to a node that is gone and no longer counts.
#[derive(Default)]
pub struct RemotePresence {
    users: DashMap<UserId, SmallVec<[Remote; 1]>>,
}

/// How often a node repeats its view of its users' presence.
pub const REFRESH: Duration = Duration::from_secs(20);
/// When a node's view of a user stops counting without a repeat.
pub const EXPIRE: Duration = Duration::from_secs(60);

struct Remote {
    node: Arc<str>,
    status: Status,
    seen: Instant,
    /// Who sees this user's presence: their servers and friends, as that node knew them.
    audience: Option<Arc<PresenceAudience>>,
}

/// A user's servers and friends: whoever shares one sees the user's presence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceAudience {
    pub servers: Vec<ServerId>,
    pub friends: Vec<UserId>,
}

impl RemotePresence {
    /// Records `node`'s view of `user` (Offline removes it), with who sees the user if known.
    pub fn set(
        &self,
        user: UserId,
        node: &str,
        status: Status,
        audience: Option<Arc<PresenceAudience>>,
        now: Instant,
    ) {
        let mut entry = self.users.entry(user).or_default();
        let list = entry.value_mut();
        match list.iter().position(|r| &*r.node == node) {
            Some(i) if status == Status::Offline => {
                list.swap_remove(i);
            }
            Some(i) => {
                let r = &mut list[i];
                r.status = status;
                r.seen = now;
                if audience.is_some() {
                    r.audience = audience;
                }
            }
            None if status == Status::Offline => {}
            None => list.push(Remote {
                node: node.into(),
                status,
                seen: now,
                audience,
            }),
        }
        let empty = list.is_empty();
        drop(entry);
        if empty {
            self.users.remove_if(&user, |_, l| l.is_empty());
        }
    }

    /// The best status other nodes report for `user`.
    pub fn best(&self, user: UserId, now: Instant) -> Status {
        let mut best = Status::Offline;
        if let Some(list) = self.users.get(&user) {
            for r in list.iter().filter(|r| now.duration_since(r.seen) < EXPIRE) {
                if r.status.rank() > best.rank() {
                    best = r.status;
                }
            }
        }
        best
    }

    /// Who sees `user`'s presence, as the last node that told us knew it.
    pub fn audience(&self, user: UserId) -> Option<Arc<PresenceAudience>> {
        self.users
            .get(&user)
            .and_then(|l| l.iter().rev().find_map(|r| r.audience.clone()))
    }

    /// Drops entries not repeated within `EXPIRE`; returns their users with who saw them.
    pub fn expire(&self, now: Instant) -> Vec<(UserId, Option<Arc<PresenceAudience>>)> {
        let mut gone = Vec::new();
        self.users.retain(|user, list| {
            list.retain(|r| {
                let fresh = now.duration_since(r.seen) < EXPIRE;
                if !fresh {
                    gone.push((*user, r.audience.clone()));
                }
                fresh
            });
            !list.is_empty()
        });
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_fresh_report_counts_and_stale_ones_expire() {
        let p = RemotePresence::default();
        let u = UserId::new(Snowflake(7));
        let t0 = Instant::now();
        p.set(u, "a", Status::Idle, None, t0);
        p.set(u, "b", Status::Online, None, t0 + Duration::from_secs(30));
        assert_eq!(p.best(u, t0 + Duration::from_secs(31)), Status::Online);
        // a's report is 61 s old: it no longer counts, and expiring drops it.
        let later = t0 + Duration::from_secs(61);
        assert_eq!(p.best(u, later), Status::Online);
        assert_eq!(p.expire(later).len(), 1);
        p.set(u, "b", Status::Offline, None, later);
        assert_eq!(p.best(u, later), Status::Offline);
        assert!(p.users.is_empty());
    }
}
