//! Large servers: READY carries only the connecting member and (some of) those in voice, and
//! the member list is paged over REST.

use crate::common::{Event, Server, TestApp};
use crate::voice_util::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

fn ids(members: &Value) -> BTreeSet<String> {
    members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"]["id"].as_str().unwrap().to_string())
        .collect()
}

fn server<'a>(ready: &'a Value, id: &str) -> &'a Value {
    ready["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_servers_ready_carries_only_self_and_voice_members() {
    let app = TestApp::spawn_with(|c| {
        c.large_threshold = 3;
        c.rate_limit_scale = 10.0;
    })
    .await;
    let owner = app.register("olga").await;
    let talker = app.register("tom").await;
    let quiet = app.register("quinn").await;
    let late = app.register("lena").await;
    let idle = app.register("ivan").await;
    let Server {
        id: sid, voice: vc, ..
    } = app.server(&owner, "Big").await;
    for u in [&talker, &quiet, &late, &idle] {
        app.join(&owner, u, &sid).await;
    }
    // A server at the threshold is small: all its members, `large: false`.
    let Server { id: small, .. } = app.server(&late, "Small").await;
    for u in [&talker, &quiet] {
        app.join(&late, u, &small).await;
    }

    // The owner is online but not in voice; the talker is in a voice channel.
    let mut o = connect(&app, &owner).await;
    let mut t = connect(&app, &talker).await;
    t.send(join_frame(&sid, &vc));
    let mut pt = Peer::new(false, 1).await;
    negotiate(&mut t, &mut pt, 1).await;
    state_of(&mut o, &talker.id, |d| d["channel_id"] == vc.as_str()).await;

    let (_gl, ready) = app.identified(&late).await;
    let big = server(&ready, &sid);
    assert_eq!(big["large"], true, "{big}");
    assert_eq!(big["member_count"], 5, "{big}");
    assert_eq!(
        ids(&big["members"]),
        BTreeSet::from([late.id.clone(), talker.id.clone()]),
        "only self and the voice member: {big}"
    );
    let me = big["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user"]["id"] == late.id.as_str())
        .unwrap();
    assert!(
        me["roles"].is_array() && me["joined_at"].is_string(),
        "{me}"
    );
    assert!(!big["channels"].as_array().unwrap().is_empty());
    let sm = server(&ready, &small);
    assert_eq!(sm["large"], false, "{sm}");
    assert_eq!(sm["member_count"], 3, "{sm}");
    assert_eq!(
        ids(&sm["members"]),
        BTreeSet::from([late.id.clone(), talker.id.clone(), quiet.id.clone()])
    );
    // Presences only of the members sent: the talker, not the owner (online, but not sent).
    let presences: BTreeSet<String> = ready["presences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user_id"].as_str().unwrap().to_string())
        .collect();
    assert!(presences.contains(&talker.id), "{presences:?}");
    assert!(!presences.contains(&owner.id), "{presences:?}");
    assert!(ready["voice_states"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["user_id"] == talker.id.as_str()));

    // The rest of the list comes over REST, with the presences of those online.
    let (s, body) = app
        .get(&format!("/servers/{sid}/members"), &late.token)
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body.as_array().unwrap().len(), 5);
    let (s, body) = app
        .get(&format!("/servers/{sid}/presences"), &late.token)
        .await;
    assert_eq!(s, 200, "{body}");
    let online: BTreeSet<String> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["status"], "online", "{p}");
            p["user_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        online,
        BTreeSet::from([owner.id.clone(), talker.id.clone(), late.id.clone()])
    );

    // Someone not in voice gets just themselves.
    let (_gi, ready) = app.identified(&idle).await;
    let big = server(&ready, &sid);
    assert_eq!(big["large"], true);
    assert_eq!(
        ids(&big["members"]),
        BTreeSet::from([idle.id.clone(), talker.id.clone()])
    );
    drop(o);
}

/// However many are in voice, a large server's READY carries at most `large_threshold` members
/// (its voice states all the same): otherwise each joiner of a big call would get a READY
/// larger than the last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_servers_ready_carries_at_most_large_threshold_members() {
    let app = TestApp::spawn_with(|c| {
        c.large_threshold = 3;
        c.rate_limit_scale = 10.0;
    })
    .await;
    let owner = app.register("vera").await;
    let late = app.register("luke").await;
    let talkers = [
        app.register("tara").await,
        app.register("theo").await,
        app.register("tina").await,
    ];
    let Server {
        id: sid, voice: vc, ..
    } = app.server(&owner, "Crowded").await;
    for u in talkers.iter().chain([&late]) {
        app.join(&owner, u, &sid).await;
    }
    let mut o = connect(&app, &owner).await;
    let mut held = Vec::new();
    for (i, u) in talkers.iter().enumerate() {
        let mut g = connect(&app, u).await;
        g.send(join_frame(&sid, &vc));
        let mut p = Peer::new(false, i as u8 + 1).await;
        negotiate(&mut g, &mut p, 1).await;
        state_of(&mut o, &u.id, |d| d["channel_id"] == vc.as_str()).await;
        held.push((g, p));
    }

    let (_gl, ready) = app.identified(&late).await;
    let big = server(&ready, &sid);
    assert_eq!(big["large"], true, "{big}");
    let members = ids(&big["members"]);
    assert_eq!(
        members.len(),
        3,
        "self and two of the three in voice: {big}"
    );
    assert!(members.contains(&late.id), "{big}");
    let talker_ids: BTreeSet<String> = talkers.iter().map(|t| t.id.clone()).collect();
    assert_eq!(members.intersection(&talker_ids).count(), 2, "{big}");
    // Every voice state is there, member object or not.
    let in_voice: BTreeSet<String> = ready["voice_states"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["channel_id"] == vc.as_str())
        .map(|v| v["user_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(in_voice, talker_ids, "{}", ready["voice_states"]);
    drop((o, held));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_paged_by_user_id() {
    let app = TestApp::spawn_with(|c| c.rate_limit_scale = 10.0).await;
    let owner = app.register("pam").await;
    let Server { id: sid, .. } = app.server(&owner, "Paged").await;
    let mut all = BTreeSet::from([owner.id.clone()]);
    for name in ["pia", "pete", "paul", "pola"] {
        let u = app.register(name).await;
        app.join(&owner, &u, &sid).await;
        all.insert(u.id.clone());
    }
    let path = format!("/servers/{sid}/members");

    // Without parameters: everyone, in one page.
    let (s, body) = app.get(&path, &owner.token).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(ids(&body), all);

    // Pages of two, each after the last id of the one before, ascending and disjoint.
    let mut seen: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &after {
            Some(a) => format!("{path}?limit=2&after={a}"),
            None => format!("{path}?limit=2"),
        };
        let (s, page) = app.get(&q, &owner.token).await;
        assert_eq!(s, 200, "{page}");
        let page: Vec<String> = page
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["user"]["id"].as_str().unwrap().to_string())
            .collect();
        assert!(page.len() <= 2);
        pages += 1;
        seen.extend(page.iter().cloned());
        if page.len() < 2 {
            break;
        }
        after = page.last().cloned();
    }
    assert_eq!(pages, 3);
    let sorted = {
        let mut v = seen.clone();
        v.sort_by_key(|id| id.parse::<i64>().unwrap());
        v
    };
    assert_eq!(seen, sorted, "ascending by user id");
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), all);
    assert_eq!(seen.len(), all.len());

    for bad in ["limit=0", "limit=1001", "limit=x", "after=nope"] {
        let (s, body) = app.get(&format!("{path}?{bad}"), &owner.token).await;
        assert_eq!(s, 400, "{bad}: {body}");
    }
    // Not a member: 404 as before.
    let stranger = app.register("stan").await;
    let (s, _) = app.get(&path, &stranger.token).await;
    assert_eq!(s, 404);
    let (s, _) = app.get(&format!("{path}?limit=1"), &owner.token).await;
    assert_eq!(s, 200);
}

/// Sends a heartbeat and waits for its ACK: every frame sent before it has been handled.
async fn round_trip(gw: &mut crate::common::Gateway) {
    gw.send(json!({"op": 1, "d": null})).await;
    loop {
        let v = gw.next().await.expect("connection open");
        if v["op"] == 11 {
            return;
        }
    }
}

/// A large server's members' presence updates reach only the sessions that follow it (op 17,
/// the client's open server): each member coming online would otherwise be sent to every
/// member online. Small servers and friends are unchanged, and nobody follows a server they
/// are not in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_servers_presences_go_to_the_sessions_that_follow_it() {
    let app = TestApp::spawn_with(|c| {
        c.large_threshold = 3;
        c.rate_limit_scale = 10.0;
    })
    .await;
    let owner = app.register("fay").await;
    let watcher = app.register("wes").await;
    let stranger = app.register("stan").await;
    let [p1, p2, p3] = [
        app.register("pia").await,
        app.register("pete").await,
        app.register("pola").await,
    ];
    let Server { id: big, .. } = app.server(&owner, "Big").await;
    for u in [&watcher, &p1, &p2, &p3] {
        app.join(&owner, u, &big).await;
    }
    // p3 also shares a small server with the watcher.
    let Server { id: small, .. } = app.server(&p3, "Small").await;
    app.join(&p3, &watcher, &small).await;

    let (mut w, ready) = app.identified(&watcher).await;
    assert_eq!(server(&ready, &big)["large"], true);
    let (mut s, _) = app.identified(&stranger).await;
    // The stranger asks for a server it is not in: ignored.
    s.send(json!({"op": 17, "d": {"server_ids": [big]}})).await;
    round_trip(&mut s).await;

    // Not following: p1 coming online reaches nobody here.
    let (g1, _) = app.identified(&p1).await;
    w.expect_none(Event::PresenceUpdate, Duration::from_millis(800))
        .await;

    // Following the large server: p2 coming online reaches the watcher.
    w.send(json!({"op": 17, "d": {"server_ids": [big]}})).await;
    round_trip(&mut w).await;
    let (g2, _) = app.identified(&p2).await;
    let d = w
        .expect_where(Event::PresenceUpdate, |d| d["user_id"] == p2.id.as_str())
        .await;
    assert_eq!(d["status"], "online");
    // And p1 going offline too; never to the stranger.
    drop(g1);
    w.expect_where(Event::PresenceUpdate, |d| {
        d["user_id"] == p1.id.as_str() && d["status"] == "offline"
    })
    .await;
    s.expect_none(Event::PresenceUpdate, Duration::from_millis(800))
        .await;

    // Unfollowed: p2 leaving is not sent; p3, met in a small server too, still is.
    w.send(json!({"op": 17, "d": {"server_ids": []}})).await;
    round_trip(&mut w).await;
    drop(g2);
    w.expect_none(Event::PresenceUpdate, Duration::from_millis(800))
        .await;
    let (_g3, _) = app.identified(&p3).await;
    w.expect_where(Event::PresenceUpdate, |d| d["user_id"] == p3.id.as_str())
        .await;

    // More than ten servers is a decode error.
    let ids: Vec<String> = (0..11).map(|i| (1000 + i).to_string()).collect();
    w.send(json!({"op": 17, "d": {"server_ids": ids}})).await;
    assert_eq!(w.closed().await, crate::common::Closed::Code(4002));
}
