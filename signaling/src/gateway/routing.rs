//! The routing index: which users with a session on this node are in which server, and whose
//! friends they are — what turns "every member of server S" or "whoever sees U's presence"
//! into users. It covers only users with a session here, so it stays as small as the node's
//! audience; the bus (`crate::bus::apply`) keeps it current whichever node made a change.

use confab_chat::{ServerId, UserId};
use dashmap::{DashMap, DashSet};
use std::collections::{HashMap, HashSet};

#[derive(Default)]
pub struct RoutingIndex {
    /// Users with a session here, per server.
    servers: DashMap<ServerId, HashSet<UserId>>,
    /// Servers per user with a session here.
    user_servers: DashMap<UserId, HashSet<ServerId>>,
    /// Friends per user with a session here (presence goes to friends and co-members only).
    friends: DashMap<UserId, HashSet<UserId>>,
    /// Large servers (more members than the large threshold, as the last READY here found
    /// them): their members' presences go only to sessions that follow them (op 17), as
    /// each change would otherwise be sent to every member online.
    large: DashSet<ServerId>,
    /// Per large server, the users here with sessions that follow its presences, and how
    /// many of their sessions do.
    presence_followers: DashMap<ServerId, HashMap<UserId, u32>>,
}

impl RoutingIndex {
    /// Routes a server's events to a user (who has a session here). True if it was not
    /// routed yet.
    pub fn add_member(&self, server_id: ServerId, user_id: UserId) -> bool {
        let added = self.servers.entry(server_id).or_default().insert(user_id);
        self.user_servers
            .entry(user_id)
            .or_default()
            .insert(server_id);
        added
    }

    /// Stops routing a server's events to a user (left, removed, or the server is gone).
    /// True if it was routed.
    pub fn remove_member(&self, server_id: ServerId, user_id: UserId) -> bool {
        let mut removed = false;
        if let Some(mut set) = self.servers.get_mut(&server_id) {
            removed = set.remove(&user_id);
        }
        self.servers.remove_if(&server_id, |_, s| s.is_empty());
        if let Some(mut set) = self.user_servers.get_mut(&user_id) {
            set.remove(&server_id);
        }
        self.unfollow_all(server_id, user_id);
        removed
    }

    /// Forgets a server; returns the users it was routed to.
    pub fn remove_server(&self, server_id: ServerId) -> Vec<UserId> {
        let Some((_, users)) = self.servers.remove(&server_id) else {
            return Vec::new();
        };
        for u in &users {
            if let Some(mut set) = self.user_servers.get_mut(u) {
                set.remove(&server_id);
            }
        }
        self.presence_followers.remove(&server_id);
        self.large.remove(&server_id);
        users.into_iter().collect()
    }

    /// The user's last session here ended: nothing is routed to them any more. Returns the
    /// servers that were routed to them.
    pub fn forget_user(&self, user_id: UserId) -> Vec<ServerId> {
        self.friends.remove(&user_id);
        let Some((_, servers)) = self.user_servers.remove(&user_id) else {
            return Vec::new();
        };
        let mut forgotten = Vec::with_capacity(servers.len());
        for sid in servers {
            if let Some(mut set) = self.servers.get_mut(&sid) {
                if set.remove(&user_id) {
                    forgotten.push(sid);
                }
            }
            self.servers.remove_if(&sid, |_, s| s.is_empty());
            self.unfollow_all(sid, user_id);
        }
        forgotten
    }

    /// Marks a server large (its presences go to followers only) or not.
    pub fn set_large(&self, server_id: ServerId, large: bool) {
        if large {
            self.large.insert(server_id);
        } else {
            self.large.remove(&server_id);
        }
    }

    /// Whether a server's presences go to its followers only.
    pub fn is_large(&self, server_id: ServerId) -> bool {
        self.large.contains(&server_id)
    }

    /// One more session of `user_id` follows the server's presences.
    pub fn follow(&self, server_id: ServerId, user_id: UserId) {
        *self
            .presence_followers
            .entry(server_id)
            .or_default()
            .entry(user_id)
            .or_default() += 1;
    }

    /// One session of `user_id` stops following the server's presences.
    pub fn unfollow(&self, server_id: ServerId, user_id: UserId) {
        if let Some(mut users) = self.presence_followers.get_mut(&server_id) {
            if let Some(n) = users.get_mut(&user_id) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    users.remove(&user_id);
                }
            }
        }
        self.presence_followers
            .remove_if(&server_id, |_, u| u.is_empty());
    }

    /// No session of `user_id` follows the server's presences any more (left it, or gone).
    fn unfollow_all(&self, server_id: ServerId, user_id: UserId) {
        if let Some(mut users) = self.presence_followers.get_mut(&server_id) {
            users.remove(&user_id);
        }
        self.presence_followers
            .remove_if(&server_id, |_, u| u.is_empty());
    }

    /// Calls `f` for each member here whose sessions follow the server's presences. Only
    /// members: an op 17 racing the user's removal from the server may leave a follow behind,
    /// and that must not show them who is online there.
    pub fn for_each_follower(&self, server_id: ServerId, mut f: impl FnMut(&UserId)) {
        let (Some(users), Some(members)) = (
            self.presence_followers.get(&server_id),
            self.servers.get(&server_id),
        ) else {
            return;
        };
        users
            .keys()
            .filter(|u| members.contains(u))
            .for_each(&mut f);
    }

    /// Calls `f` for each user with a session here in the server.
    pub fn for_each_in(&self, server_id: ServerId, mut f: impl FnMut(&UserId)) {
        if let Some(users) = self.servers.get(&server_id) {
            users.iter().for_each(&mut f);
        }
    }

    /// Users with a session here who share a server with `user_id`.
    pub fn co_members(&self, user_id: UserId) -> Vec<UserId> {
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
    pub fn users_in(&self, server_id: ServerId) -> Vec<UserId> {
        self.servers
            .get(&server_id)
            .map(|users| users.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The servers of a user with a session here.
    pub fn servers_of(&self, user_id: UserId) -> Vec<ServerId> {
        self.user_servers
            .get(&user_id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The friends of a user with a session here.
    pub fn friends_of(&self, user_id: UserId) -> Vec<UserId> {
        self.friends
            .get(&user_id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Records a user's friends (at IDENTIFY) for presence routing.
    pub fn set_friends(&self, user_id: UserId, friends: impl IntoIterator<Item = UserId>) {
        self.friends.insert(user_id, friends.into_iter().collect());
    }

    /// Two users became friends (`true`) or stopped being friends.
    pub fn set_friendship(&self, a: UserId, b: UserId, friends: bool) {
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
}

/// An audience whose events this node wants from other nodes: a server's (some user with a
/// session here is a member) or a user's (the user has a session here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    Server(ServerId),
    User(UserId),
}

/// Told when this node gains or loses one local reason to receive an audience's events: the
/// hub calls `watch` once per (server, local member) and per user with sessions here, and
/// `unwatch` as often when they go. A cluster bus subscribes on the first `watch` and
/// unsubscribes after the last `unwatch` — one subscription per audience per node, never one
/// per connection.
pub trait Interest: Send + Sync {
    fn watch(&self, audience: Audience);
    fn unwatch(&self, audience: Audience);
}

/// One process: every event is already here.
pub struct NoInterest;

impl Interest for NoInterest {
    fn watch(&self, _: Audience) {}
    fn unwatch(&self, _: Audience) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_chat::Snowflake;

    #[test]
    fn a_follow_left_behind_by_a_removal_reaches_nobody() {
        let r = RoutingIndex::default();
        let (sid, a, b) = (
            ServerId::new(Snowflake(1)),
            UserId::new(Snowflake(2)),
            UserId::new(Snowflake(3)),
        );
        r.add_member(sid, a);
        r.add_member(sid, b);
        r.follow(sid, a);
        r.follow(sid, b);
        r.remove_member(sid, b);
        // An op 17 handled after the removal's clean-up.
        r.follow(sid, b);
        let mut seen = Vec::new();
        r.for_each_follower(sid, |u| seen.push(*u));
        assert_eq!(seen, vec![a]);
    }
}
