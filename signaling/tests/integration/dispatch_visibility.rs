//! The dispatch matrix: each channel-bearing event × a member who may see the channel and one
//! who may not. A private channel must never reach a member who cannot view it — not in a
//! create, an update, a message, a delete, an invite join or a SERVER_CREATE — and a change
//! that reveals or hides a channel reaches the member concerned as CHANNEL_CREATE or
//! CHANNEL_DELETE.

use crate::common::{Event, Gateway, Overwrite, Server, TestApp, User};
use serde_json::{json, Value};

const VIEW_CHANNEL: i64 = 1 << 10;

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
        if v["t"] == Event::MessageCreate.name() && v["d"]["content"] == marker {
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

fn has(events: &[Value], event: Event, id: &str) -> bool {
    events
        .iter()
        .any(|e| e["t"] == event.name() && e["d"]["id"] == id)
}

/// A server with a lobby everyone sees, a private category only the "staff" role may view,
/// and a member and a staff member connected to the gateway.
struct World {
    app: TestApp,
    owner: User,
    member: User,
    staff: User,
    server: String,
    lobby: String,
    role: String,
    cat: String,
    n: u32,
}

async fn world() -> (World, Gateway, Gateway) {
    let app = TestApp::spawn_with(|c| c.rate_limit_scale = 100.0).await;
    let owner = app.register("vis_owner").await;
    let member = app.register("vis_member").await;
    let staff = app.register("vis_staff").await;
    let Server { id: server, .. } = app.server(&owner, "visibility").await;
    app.join(&owner, &member, &server).await;
    app.join(&owner, &staff, &server).await;
    let lobby = app.channel(&owner, &server, "text", "lobby").await;
    let role = app.role(&owner, &server, "staff", VIEW_CHANNEL).await;
    app.give_role(&owner, &server, &staff, &role).await;
    // A private category: @everyone may not view it, staff may.
    let cat = app.channel(&owner, &server, "category", "staff only").await;
    app.overwrite(&owner, &cat, Overwrite::Role(&server), 0, VIEW_CHANNEL)
        .await;
    app.overwrite(&owner, &cat, Overwrite::Role(&role), VIEW_CHANNEL, 0)
        .await;
    let (m_gw, _) = app.identified(&member).await;
    let (s_gw, _) = app.identified(&staff).await;
    let w = World {
        app,
        owner,
        member,
        staff,
        server,
        lobby,
        role,
        cat,
        n: 0,
    };
    (w, m_gw, s_gw)
}

impl World {
    /// Sends a marker in the lobby and returns what each gateway saw before it.
    async fn step(&mut self, gws: &mut [&mut Gateway]) -> Vec<Vec<Value>> {
        self.n += 1;
        let marker = format!("marker {}", self.n);
        self.app.message(&self.owner, &self.lobby, &marker).await;
        let mut out = Vec::new();
        for gw in gws.iter_mut() {
            out.push(until_marker(gw, &marker).await);
        }
        out
    }

    /// A text channel in the private category.
    async fn secret(&self) -> String {
        self.app
            .channel_in(&self.owner, &self.server, &self.cat, "text", "secret")
            .await
    }
}

#[tokio::test]
async fn ready_leaves_out_a_category_the_member_may_not_view() {
    let (w, _, _) = world().await;
    let (_, m_ready) = w.app.identified(&w.member).await;
    let (_, s_ready) = w.app.identified(&w.staff).await;
    assert!(
        !m_ready.to_string().contains(&w.cat),
        "READY hides the category"
    );
    assert!(s_ready.to_string().contains(&w.cat));
}

/// CHANNEL_CREATE of a channel inside the private category, CHANNEL_UPDATE (a new topic) and
/// a message in it reach staff only.
#[tokio::test]
async fn a_private_channels_create_update_and_messages_reach_only_viewers() {
    let (mut w, mut m_gw, mut s_gw) = world().await;
    let secret = w.secret().await;
    let seen = w.step(&mut [&mut m_gw, &mut s_gw]).await;
    assert_eq!(
        mentions(&seen[0], &secret),
        Vec::<String>::new(),
        "member: create"
    );
    assert!(
        has(&seen[1], Event::ChannelCreate, &secret),
        "staff: create"
    );

    let (s, b) = w
        .app
        .patch(
            &format!("/channels/{secret}"),
            &w.owner.token,
            json!({"topic": "plans"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    w.app.message(&w.owner, &secret, "hush").await;
    let seen = w.step(&mut [&mut m_gw, &mut s_gw]).await;
    assert_eq!(
        mentions(&seen[0], &secret),
        Vec::<String>::new(),
        "member: update, message"
    );
    assert!(
        has(&seen[1], Event::ChannelUpdate, &secret),
        "staff: update"
    );
    assert!(
        seen[1]
            .iter()
            .any(|e| e["t"] == Event::MessageCreate.name()
                && e["d"]["channel_id"] == secret.as_str()),
        "staff: message"
    );
}

/// An invite join: the response and SERVER_CREATE list only what the joiner may view.
#[tokio::test]
async fn an_invite_join_lists_only_channels_the_joiner_may_view() {
    let (w, _, _) = world().await;
    let secret = w.secret().await;
    let joiner = w.app.register("vis_joiner").await;
    let (mut j_gw, _) = w.app.identified(&joiner).await;
    let code = w.app.invite(&w.owner, &w.server).await;
    let (s, joined) = w.app.accept_invite(&joiner, &code).await;
    assert_eq!(s, 200, "{joined}");
    assert!(
        !joined.to_string().contains(&secret),
        "invite response: {joined}"
    );
    assert!(
        !joined.to_string().contains(&w.cat),
        "invite response lists the category"
    );
    let created = j_gw.expect(Event::ServerCreate).await;
    assert!(
        !created.to_string().contains(&secret),
        "SERVER_CREATE: {created}"
    );
    assert!(!created.to_string().contains(&w.cat));
}

/// The member gets the role, and with it the category and its channel; the role taken away
/// hides them again.
#[tokio::test]
async fn a_role_given_reveals_its_channels_and_taken_hides_them() {
    let (mut w, mut m_gw, _) = world().await;
    let secret = w.secret().await;
    w.app
        .give_role(&w.owner, &w.server, &w.member, &w.role)
        .await;
    let seen = w.step(&mut [&mut m_gw]).await;
    assert!(
        has(&seen[0], Event::ChannelCreate, &w.cat),
        "member: category revealed"
    );
    assert!(
        has(&seen[0], Event::ChannelCreate, &secret),
        "member: channel revealed"
    );
    w.app
        .take_role(&w.owner, &w.server, &w.member, &w.role)
        .await;
    let seen = w.step(&mut [&mut m_gw]).await;
    assert!(
        has(&seen[0], Event::ChannelDelete, &secret),
        "member: channel hidden"
    );
    assert!(
        has(&seen[0], Event::ChannelDelete, &w.cat),
        "member: category hidden"
    );
}

/// An overwrite that hides a public channel from one member, and its removal.
#[tokio::test]
async fn a_member_overwrite_hides_a_public_channel_and_its_removal_shows_it() {
    let (mut w, mut m_gw, mut s_gw) = world().await;
    let pub_channel = w
        .app
        .channel(&w.owner, &w.server, "text", "soon hidden")
        .await;
    let seen = w.step(&mut [&mut m_gw, &mut s_gw]).await;
    assert!(has(&seen[0], Event::ChannelCreate, &pub_channel));
    let s = w
        .app
        .try_overwrite(
            &w.owner,
            &pub_channel,
            Overwrite::Member(&w.member.id),
            0,
            VIEW_CHANNEL,
        )
        .await;
    assert_eq!(s, 200);
    let seen = w.step(&mut [&mut m_gw, &mut s_gw]).await;
    assert!(
        has(&seen[0], Event::ChannelDelete, &pub_channel),
        "member: hidden by overwrite"
    );
    assert!(
        has(&seen[1], Event::ChannelUpdate, &pub_channel),
        "staff: still sees it"
    );
    assert!(!has(&seen[1], Event::ChannelDelete, &pub_channel));
    let (s, b) = w
        .app
        .delete(
            &format!("/channels/{pub_channel}/permissions/{}", w.member.id),
            &w.owner.token,
        )
        .await;
    assert_eq!(s, 204, "{b}");
    let seen = w.step(&mut [&mut m_gw]).await;
    assert!(
        has(&seen[0], Event::ChannelCreate, &pub_channel),
        "member: shown again"
    );
}

/// CHANNEL_DELETE of the private channel: staff only.
#[tokio::test]
async fn deleting_a_private_channel_tells_only_viewers() {
    let (mut w, mut m_gw, mut s_gw) = world().await;
    let secret = w.secret().await;
    w.step(&mut [&mut m_gw, &mut s_gw]).await;
    let (s, b) = w
        .app
        .delete(&format!("/channels/{secret}"), &w.owner.token)
        .await;
    assert_eq!(s, 204, "{b}");
    let seen = w.step(&mut [&mut m_gw, &mut s_gw]).await;
    assert_eq!(
        mentions(&seen[0], &secret),
        Vec::<String>::new(),
        "member: delete"
    );
    assert!(
        has(&seen[1], Event::ChannelDelete, &secret),
        "staff: delete"
    );
}

/// The role deleted: staff no longer sees the category its overwrite opened.
#[tokio::test]
async fn deleting_a_role_hides_what_its_overwrite_opened() {
    let (mut w, mut m_gw, mut s_gw) = world().await;
    let (s, b) = w
        .app
        .delete(
            &format!("/servers/{}/roles/{}", w.server, w.role),
            &w.owner.token,
        )
        .await;
    assert_eq!(s, 204, "{b}");
    let seen = w.step(&mut [&mut m_gw, &mut s_gw]).await;
    assert!(
        has(&seen[1], Event::ChannelDelete, &w.cat),
        "staff: role deleted"
    );
    assert_eq!(
        mentions(&seen[0], &w.cat),
        Vec::<String>::new(),
        "member: role deleted"
    );
}
