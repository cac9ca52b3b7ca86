//! Changes travel as `BusEvent`s: what one node's handlers publish is all another node needs.
//! Two nodes share one database; node A's bus hands every event, in order, to node B's
//! `apply` (what NATS does in a cluster). Clients connected to B must see what is done
//! through A — messages, joins, kicks, channels hidden by a permission change — exactly as
//! if they were connected to A.

use crate::common::{Event, Server, TestApp, User};
use confab_signaling::bus::{apply, BusEvent, EventBus, RecordingBus};
use confab_signaling::state::AppState;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;

const VIEW_CHANNEL: u64 = 1 << 10;

/// Hands each event to another node's `apply`, one at a time, in publication order.
struct Bridge {
    tx: mpsc::UnboundedSender<BusEvent>,
    /// Also kept, so the test can say what crossed.
    seen: RecordingBus,
}

impl EventBus for Bridge {
    fn publish(&self, event: &BusEvent) {
        self.seen.publish(event);
        let _ = self.tx.send(event.clone());
    }
}

fn bridge() -> (Arc<Bridge>, Arc<OnceLock<AppState>>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<BusEvent>();
    let target: Arc<OnceLock<AppState>> = Arc::new(OnceLock::new());
    let node = target.clone();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            // Events published before node B started are not for it (it reads the database).
            if let Some(state) = node.get() {
                apply(state, event).await;
            }
        }
    });
    (
        Arc::new(Bridge {
            tx,
            seen: RecordingBus::default(),
        }),
        target,
    )
}

async fn put(app: &TestApp, path: String, token: &str, body: Option<Value>) -> (u16, Value) {
    app.request(reqwest::Method::PUT, &path, Some(token), body)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_learns_every_change_from_the_bus() {
    // A throwaway app makes the database (migrated), then A and B run on it.
    let db = {
        let seed = TestApp::spawn().await;
        seed.database_url()
    };
    let (to_b, b_state) = bridge();
    let a = TestApp::spawn_node(db.clone(), to_b.clone()).await;
    let b = TestApp::spawn_node(db, Arc::new(confab_signaling::bus::LocalBus)).await;
    b_state
        .set(b.running.as_ref().unwrap().state.clone())
        .ok()
        .unwrap();

    let owner: User = a.register("bus_owner").await;
    let member: User = a.register("bus_member").await;
    let Server {
        id: server,
        text: general,
        ..
    } = a.server(&owner, "two nodes").await;

    // The member is connected to B and joins through A: B routes the server's events to them.
    let (mut m_gw, _) = b.identified(&member).await;
    a.join(&owner, &member, &server).await;
    let created = m_gw.expect(Event::ServerCreate).await;
    assert_eq!(created["id"], server.as_str());
    let (s, msg) = a
        .post(
            &format!("/channels/{general}/messages"),
            &owner.token,
            json!({"content": "hello B"}),
        )
        .await;
    assert_eq!(s, 201, "{msg}");
    let got = m_gw.expect(Event::MessageCreate).await;
    assert_eq!(got["content"], "hello B");

    // A private channel the member may not see; a permission change through A reveals it and
    // another hides it again, and B's cached viewers follow.
    let (s, secret) = a
        .post(
            &format!("/servers/{server}/channels"),
            &owner.token,
            json!({"name": "secret", "type": "text"}),
        )
        .await;
    assert_eq!(s, 201, "{secret}");
    let secret = secret["id"].as_str().unwrap().to_string();
    let created = m_gw.expect(Event::ChannelCreate).await;
    assert_eq!(created["id"], secret.as_str());
    let (s, b_) = put(
        &a,
        format!("/channels/{secret}/permissions/{}", member.id),
        &owner.token,
        Some(json!({"type": "member", "allow": "0", "deny": VIEW_CHANNEL.to_string()})),
    )
    .await;
    assert_eq!(s, 200, "{b_}");
    let hidden = m_gw.expect(Event::ChannelDelete).await;
    assert_eq!(hidden["id"], secret.as_str());
    let (s, _) = a
        .post(
            &format!("/channels/{secret}/messages"),
            &owner.token,
            json!({"content": "psst"}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = a
        .post(
            &format!("/channels/{general}/messages"),
            &owner.token,
            json!({"content": "after"}),
        )
        .await;
    assert_eq!(s, 201);
    let next = m_gw.expect(Event::MessageCreate).await;
    assert_eq!(
        next["content"], "after",
        "the hidden channel's message must not reach B's member"
    );

    // Kicked through A: B stops routing the server to them.
    let (s, k) = a
        .delete(
            &format!("/servers/{server}/members/{}", member.id),
            &owner.token,
        )
        .await;
    assert_eq!(s, 204, "{k}");
    let gone = m_gw.expect(Event::ServerDelete).await;
    assert_eq!(gone["id"], server.as_str());
    let (s, _) = a
        .post(
            &format!("/channels/{general}/messages"),
            &owner.token,
            json!({"content": "not for you"}),
        )
        .await;
    assert_eq!(s, 201);
    assert!(
        m_gw.next_within(Duration::from_millis(500)).await.is_none(),
        "a kicked member's node still routes the server"
    );

    // What crossed the bus names each change once.
    let seen = to_b.seen.events();
    let count = |f: &dyn Fn(&BusEvent) -> bool| seen.iter().filter(|e| f(e)).count();
    let sid: i64 = server.parse().unwrap();
    let mid: i64 = member.id.parse().unwrap();
    assert_eq!(
        count(
            &|e| matches!(e, BusEvent::MemberJoined { server_id, user_id } if server_id.get() == sid && user_id.get() == mid)
        ),
        1
    );
    assert_eq!(
        count(
            &|e| matches!(e, BusEvent::MemberLeft { server_id, user_id } if server_id.get() == sid && user_id.get() == mid)
        ),
        1
    );
    assert!(
        count(
            &|e| matches!(e, BusEvent::PermissionsChanged { server_id } if server_id.get() == sid)
        ) >= 2
    );
}

/// AutoMod rules are compiled and cached per node: a rule created, changed or deleted through
/// node A applies at once to sends through node B, because the change crosses the bus as
/// `SafetyChanged` and B drops its compiled copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automod_rule_changes_reach_the_other_nodes_cache() {
    let db = {
        let seed = TestApp::spawn().await;
        seed.database_url()
    };
    let (to_b, b_state) = bridge();
    let a = TestApp::spawn_node(db.clone(), to_b.clone()).await;
    let b = TestApp::spawn_node(db, Arc::new(confab_signaling::bus::LocalBus)).await;
    b_state
        .set(b.running.as_ref().unwrap().state.clone())
        .ok()
        .unwrap();
    let owner: User = a.register("busam_owner").await;
    let member: User = a.register("busam_member").await;
    let s = a.server(&owner, "automod nodes").await;
    a.join(&owner, &member, &s.id).await;
    // B compiles (and caches) the server's empty rule set.
    assert_eq!(b.try_message(&member, &s.text, "zonk").await.0, 201);
    let (st, rule) = a
        .post(
            &format!("/servers/{}/automod/rules", s.id),
            &owner.token,
            json!({"name": "No zonk", "kind": "keyword", "keywords": ["zonk"]}),
        )
        .await;
    assert_eq!(st, 201, "{rule}");
    let sid: i64 = s.id.parse().unwrap();
    let crossed = |n: usize| {
        let seen = to_b.seen.events();
        seen.iter()
            .filter(
                |e| matches!(e, BusEvent::SafetyChanged { server_id } if server_id.get() == sid),
            )
            .count()
            >= n
    };
    for _ in 0..50 {
        if crossed(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(crossed(1), "SafetyChanged was not published");
    // The bridge applies events in order on a task of its own: give it a moment.
    let mut refused = 0;
    for _ in 0..50 {
        refused = b.try_message(&member, &s.text, "zonk again").await.0;
        if refused == 400 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(refused, 400, "node B still uses its old rule set");
    let id = rule["id"].as_str().unwrap();
    let (st, _) = a
        .delete(
            &format!("/servers/{}/automod/rules/{id}", s.id),
            &owner.token,
        )
        .await;
    assert_eq!(st, 204);
    let mut status = 0;
    for _ in 0..50 {
        status = b.try_message(&member, &s.text, "zonk at last").await.0;
        if status == 201 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        status, 201,
        "node B still blocks after the rule was deleted"
    );
}
