//! The dispatch matrix: each channel-bearing event × a member who may see the channel and one
//! who may not. A private channel must never reach a member who cannot view it — not in a
//! create, an update, a message, a delete, an invite join or a SERVER_CREATE — and a change
//! that reveals or hides a channel reaches the member concerned as CHANNEL_CREATE or
//! CHANNEL_DELETE.

use crate::common::{Event, Gateway, Server, TestApp, User};
use serde_json::{json, Value};

const VIEW_CHANNEL: u64 = 1 << 10;

/// Dispatches on `gw` up to the MESSAGE_CREATE whose content is `marker` (a message sent
/// after the step in a channel everyone sees: whatever the step caused arrived before it).
async fn until_marker(gw: &mut Gateway, marker: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let v = gw
            .next()
            .await
            .unwrap_or_else(|| panic!("no marker {marker}; got {seen:?}"));
        if v["op"] != 0 {
            continue;
        }
        if v["t"] == "MESSAGE_CREATE" && v["d"]["content"] == marker {
            return seen;
        }
        seen.push(v);
    }
}

fn mentions(events: &[Value], id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["d"].to_string().contains(id))
        .map(|e| e["t"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn has(events: &[Value], t: &str, id: &str) -> bool {
    events.iter().any(|e| e["t"] == t && e["d"]["id"] == id)
}

struct World {
    app: TestApp,
    owner: User,
    lobby: String,
    n: u32,
}

impl World {
    /// Sends a marker in the lobby and returns what each gateway saw before it.
    async fn step(&mut self, gws: &mut [&mut Gateway]) -> Vec<Vec<Value>> {
        self.n += 1;
        let marker = format!("marker {}", self.n);
        let (s, b) = self
            .app
            .post(
                &format!("/channels/{}/messages", self.lobby),
                &self.owner.token,
                json!({"content": marker}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let mut out = Vec::new();
        for gw in gws.iter_mut() {
            out.push(until_marker(gw, &marker).await);
        }
        out
    }
}

#[tokio::test]
async fn private_channels_reach_only_members_who_may_view_them() {
    let app = TestApp::spawn_with(|c| c.rate_limit_scale = 100.0).await;
    let owner = app.register("vis_owner").await;
    let member = app.register("vis_member").await;
    let staff = app.register("vis_staff").await;
    let Server { id: server, .. } = app.server(&owner, "visibility").await;
    app.join(&owner, &member, &server).await;
    app.join(&owner, &staff, &server).await;
    let (s, lobby) = app
        .post(
            &format!("/servers/{server}/channels"),
            &owner.token,
            json!({"name": "lobby", "type": "text"}),
        )
        .await;
    assert_eq!(s, 201, "{lobby}");
    let lobby = lobby["id"].as_str().unwrap().to_string();
    let (s, role) = app
        .post(
            &format!("/servers/{server}/roles"),
            &owner.token,
            json!({"name": "staff", "permissions": VIEW_CHANNEL.to_string()}),
        )
        .await;
    assert_eq!(s, 201, "{role}");
    let role = role["id"].as_str().unwrap().to_string();
    let (s, b) = app
        .request(
            reqwest::Method::PUT,
            &format!("/servers/{server}/members/{}/roles/{role}", staff.id),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(s, 204, "{b}");
    // A private category: @everyone may not view it, staff may.
    let (s, cat) = app
        .post(
            &format!("/servers/{server}/channels"),
            &owner.token,
            json!({"name": "staff only", "type": "category"}),
        )
        .await;
    assert_eq!(s, 201, "{cat}");
    let cat = cat["id"].as_str().unwrap().to_string();
    for (target, body) in [
        (
            server.clone(),
            json!({"type": "role", "allow": "0", "deny": VIEW_CHANNEL.to_string()}),
        ),
        (
            role.clone(),
            json!({"type": "role", "allow": VIEW_CHANNEL.to_string(), "deny": "0"}),
        ),
    ] {
        let (s, b) = app
            .request(
                reqwest::Method::PUT,
                &format!("/channels/{cat}/permissions/{target}"),
                Some(&owner.token),
                Some(body),
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }

    let (mut m_gw, m_ready) = app.identified(&member).await;
    let (mut s_gw, s_ready) = app.identified(&staff).await;
    assert!(
        !m_ready.to_string().contains(&cat),
        "READY hides the category"
    );
    assert!(s_ready.to_string().contains(&cat));
    let mut w = World {
        app,
        owner: owner.clone(),
        lobby,
        n: 0,
    };

    // CHANNEL_CREATE of a channel inside the private category.
    let (s, secret) = w
        .app
        .post(
            &format!("/servers/{server}/channels"),
            &owner.token,
            json!({"name": "secret", "type": "text", "parent_id": cat}),
        )
        .await;
    assert_eq!(s, 201, "{secret}");
    let secret = secret["id"].as_str().unwrap().to_string();
    let seen = w.step(&mut [&mut m_gw, &mut s_gw]).await;
    assert_eq!(
        mentions(&seen[0], &secret),
        Vec::<String>::new(),
        "member: create"
    );
    assert!(has(&seen[1], "CHANNEL_CREATE", &secret), "staff: create");

    // CHANNEL_UPDATE (new topic) and a message in it.
    let (s, b) = w
        .app
        .patch(
            &format!("/channels/{secret}"),
            &owner.token,
            json!({"topic": "plans"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = w
        .app
        .post(
            &format!("/channels/{secret}/messages"),
            &owner.token,
            json!({"content": "hush"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let seen = w.step(&mut [&mut m_gw, &mut s_gw]).await;
    assert_eq!(
        mentions(&seen[0], &secret),
        Vec::<String>::new(),
        "member: update, message"
    );
    assert!(has(&seen[1], "CHANNEL_UPDATE", &secret), "staff: update");
    assert!(
        seen[1]
            .iter()
            .any(|e| e["t"] == "MESSAGE_CREATE" && e["d"]["channel_id"] == secret.as_str()),
        "staff: message"
    );

    // An invite join: the response and SERVER_CREATE list only what the joiner may view.
    let joiner = w.app.register("vis_joiner").await;
    let (mut j_gw, _) = w.app.identified(&joiner).await;
    let (s, inv) = w
        .app
        .post(
            &format!("/servers/{server}/invites"),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(s, 201, "{inv}");
    let (s, joined) = w
        .app
        .request(
            reqwest::Method::POST,
            &format!("/invites/{}", inv["code"].as_str().unwrap()),
            Some(&joiner.token),
            None,
        )
        .await;
    assert_eq!(s, 200, "{joined}");
    assert!(
        !joined.to_string().contains(&secret),
        "invite response: {joined}"
    );
    assert!(
        !joined.to_string().contains(&cat),
        "invite response lists the category"
    );
    let created = j_gw.expect(Event::ServerCreate).await;
    assert!(
        !created.to_string().contains(&secret),
        "SERVER_CREATE: {created}"
    );
    assert!(!created.to_string().contains(&cat));

    // Reveal: the member gets the role, and with it the category and its channel.
    let (s, b) = w
        .app
        .request(
            reqwest::Method::PUT,
            &format!("/servers/{server}/members/{}/roles/{role}", member.id),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(s, 204, "{b}");
    let seen = w.step(&mut [&mut m_gw]).await;
    assert!(
        has(&seen[0], "CHANNEL_CREATE", &cat),
        "member: category revealed"
    );
    assert!(
        has(&seen[0], "CHANNEL_CREATE", &secret),
        "member: channel revealed"
    );
    // Hide: the role taken away again.
    let (s, b) = w
        .app
        .request(
            reqwest::Method::DELETE,
            &format!("/servers/{server}/members/{}/roles/{role}", member.id),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(s, 204, "{b}");
    let seen = w.step(&mut [&mut m_gw]).await;
    assert!(
        has(&seen[0], "CHANNEL_DELETE", &secret),
        "member: channel hidden"
    );
    assert!(
        has(&seen[0], "CHANNEL_DELETE", &cat),
        "member: category hidden"
    );

    // An overwrite that hides a public channel from one member, and its removal.
    let (s, pub_channel) = w
        .app
        .post(
            &format!("/servers/{server}/channels"),
            &owner.token,
            json!({"name": "soon hidden", "type": "text"}),
        )
        .await;
    assert_eq!(s, 201);
    let pub_channel = pub_channel["id"].as_str().unwrap().to_string();
    let seen = w.step(&mut [&mut m_gw, &mut s_gw]).await;
    assert!(has(&seen[0], "CHANNEL_CREATE", &pub_channel));
    let (s, b) = w
        .app
        .request(
            reqwest::Method::PUT,
            &format!("/channels/{pub_channel}/permissions/{}", member.id),
            Some(&owner.token),
            Some(json!({"type": "member", "allow": "0", "deny": VIEW_CHANNEL.to_string()})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let seen = w.step(&mut [&mut m_gw, &mut s_gw]).await;
    assert!(
        has(&seen[0], "CHANNEL_DELETE", &pub_channel),
        "member: hidden by overwrite"
    );
    assert!(
        has(&seen[1], "CHANNEL_UPDATE", &pub_channel),
        "staff: still sees it"
    );
    assert!(!has(&seen[1], "CHANNEL_DELETE", &pub_channel));
    let (s, b) = w
        .app
        .request(
            reqwest::Method::DELETE,
            &format!("/channels/{pub_channel}/permissions/{}", member.id),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(s, 204, "{b}");
    let seen = w.step(&mut [&mut m_gw]).await;
    assert!(
        has(&seen[0], "CHANNEL_CREATE", &pub_channel),
        "member: shown again"
    );

    // CHANNEL_DELETE of the private channel: staff only.
    let (s, b) = w
        .app
        .delete(&format!("/channels/{secret}"), &owner.token)
        .await;
    assert_eq!(s, 204, "{b}");
    let seen = w.step(&mut [&mut m_gw, &mut s_gw]).await;
    assert_eq!(
        mentions(&seen[0], &secret),
        Vec::<String>::new(),
        "member: delete"
    );
    assert!(has(&seen[1], "CHANNEL_DELETE", &secret), "staff: delete");

    // The role deleted: staff no longer sees the category its overwrite opened.
    let (s, b) = w
        .app
        .delete(&format!("/servers/{server}/roles/{role}"), &owner.token)
        .await;
    assert_eq!(s, 204, "{b}");
    let seen = w.step(&mut [&mut m_gw, &mut s_gw]).await;
    assert!(has(&seen[1], "CHANNEL_DELETE", &cat), "staff: role deleted");
    assert_eq!(
        mentions(&seen[0], &cat),
        Vec::<String>::new(),
        "member: role deleted"
    );
}
