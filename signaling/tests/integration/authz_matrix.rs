//! The authorization matrix: every REST endpoint of the OpenAPI document, called as
//! (a) a stranger to the server, (b) a member without the permission, (c) a member whose roles
//! grant it but whose highest role is below the target's, and (d) a member with the permission
//! above the target, with the exact status each must get. An endpoint without a row fails the
//! test. Then the gateway: voice joins without CONNECT, events of a channel a member may not
//! view, and history windows that point into other channels.

use crate::common;
use crate::common::{Event, Overwrite, Server, TestApp, User};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

const VIEW: i64 = 1 << 10;
const HISTORY: i64 = 1 << 16;
const CONNECT: i64 = 1 << 20;
const SPEAK: i64 = 1 << 21;
/// Every permission but ADMINISTRATOR.
const MODERATOR: i64 = confab_chat::permissions::ALL
    .difference(confab_chat::permissions::ADMINISTRATOR)
    .bits();

/// Who calls, in the order each row is run.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Actor {
    /// Registered, not in the server.
    Stranger,
    /// A member: @everyone may only view channels and read history.
    Without,
    /// Holds every moderator permission, through a role below the target's.
    Below,
    /// Holds every moderator permission, through a role above the target's.
    With,
}

const ACTORS: [Actor; 4] = [Actor::Stranger, Actor::Without, Actor::Below, Actor::With];

/// (method, path, statuses for [stranger, without, below, with]).
const MATRIX: &[(&str, &str, [u16; 4])] = &[
    // Account endpoints concern only the caller: the same answer for everyone.
    ("post", "/auth/register", [201, 201, 201, 201]),
    ("post", "/auth/login", [200, 200, 200, 200]),
    ("post", "/auth/refresh", [200, 200, 200, 200]),
    ("post", "/auth/logout", [204, 204, 204, 204]),
    ("get", "/users/@me", [200, 200, 200, 200]),
    ("patch", "/users/@me", [200, 200, 200, 200]),
    // Deletes a fresh account made for the row (the actor's own account lives on).
    ("delete", "/users/@me", [204, 204, 204, 204]),
    ("get", "/users/@me/sessions", [200, 200, 200, 200]),
    // TURN credentials are the caller's own (an empty list without TURN).
    ("get", "/voice/ice-servers", [200, 200, 200, 200]),
    (
        "delete",
        "/users/@me/sessions/{session_id}",
        [204, 204, 204, 204],
    ),
    ("get", "/users/@me/relationships", [200, 200, 200, 200]),
    ("post", "/users/@me/relationships", [204, 204, 204, 204]),
    (
        "put",
        "/users/@me/relationships/{user_id}",
        [204, 204, 204, 204],
    ),
    (
        "delete",
        "/users/@me/relationships/{user_id}",
        [204, 204, 204, 204],
    ),
    ("get", "/users/@me/channels", [200, 200, 200, 200]),
    ("post", "/users/@me/channels", [201, 201, 201, 201]),
    // A group DM owned by "with", with "without" and "below" in it; the stranger is not.
    (
        "put",
        "/channels/{channel_id}/recipients/{user_id}",
        [404, 403, 403, 204],
    ),
    (
        "delete",
        "/channels/{channel_id}/recipients/{user_id}",
        [404, 403, 403, 204],
    ),
    // Servers.
    ("get", "/servers", [200, 200, 200, 200]),
    ("post", "/servers", [201, 201, 201, 201]),
    ("get", "/servers/{server_id}", [404, 200, 200, 200]),
    ("patch", "/servers/{server_id}", [404, 403, 200, 200]),
    // Only the owner deletes a server.
    ("delete", "/servers/{server_id}", [404, 403, 403, 403]),
    ("get", "/servers/{server_id}/channels", [404, 200, 200, 200]),
    (
        "post",
        "/servers/{server_id}/channels",
        [404, 403, 201, 201],
    ),
    ("get", "/servers/{server_id}/members", [404, 200, 200, 200]),
    (
        "get",
        "/servers/{server_id}/presences",
        [404, 200, 200, 200],
    ),
    (
        "patch",
        "/servers/{server_id}/members/{user_id}",
        [404, 403, 403, 200],
    ),
    (
        "delete",
        "/servers/{server_id}/members/{user_id}",
        [404, 403, 403, 204],
    ),
    ("get", "/servers/{server_id}/roles", [404, 200, 200, 200]),
    ("post", "/servers/{server_id}/roles", [404, 403, 201, 201]),
    (
        "patch",
        "/servers/{server_id}/roles/{role_id}",
        [404, 403, 403, 200],
    ),
    (
        "delete",
        "/servers/{server_id}/roles/{role_id}",
        [404, 403, 403, 204],
    ),
    (
        "put",
        "/servers/{server_id}/members/{user_id}/roles/{role_id}",
        [404, 403, 403, 204],
    ),
    (
        "delete",
        "/servers/{server_id}/members/{user_id}/roles/{role_id}",
        [404, 403, 403, 204],
    ),
    ("get", "/servers/{server_id}/bans", [404, 403, 200, 200]),
    (
        "put",
        "/servers/{server_id}/bans/{user_id}",
        [404, 403, 403, 204],
    ),
    (
        "delete",
        "/servers/{server_id}/bans/{user_id}",
        [404, 403, 204, 204],
    ),
    (
        "get",
        "/servers/{server_id}/audit-log",
        [404, 403, 200, 200],
    ),
    // Stage speakers: the caller (or the target) is connected to a stage channel everyone may
    // join; becoming or making a speaker needs MUTE_MEMBERS there, not a higher role.
    (
        "patch",
        "/servers/{server_id}/voice-states/@me",
        [404, 403, 204, 204],
    ),
    (
        "patch",
        "/servers/{server_id}/voice-states/{user_id}",
        [404, 403, 204, 204],
    ),
    // The soundboard: members list and download; MANAGE_SERVER uploads and deletes.
    (
        "get",
        "/servers/{server_id}/soundboard-sounds",
        [404, 200, 200, 200],
    ),
    (
        "post",
        "/servers/{server_id}/soundboard-sounds",
        [404, 403, 201, 201],
    ),
    (
        "delete",
        "/servers/{server_id}/soundboard-sounds/{sound_id}",
        [404, 403, 204, 204],
    ),
    (
        "get",
        "/servers/{server_id}/soundboard-sounds/{sound_id}/audio",
        [404, 200, 200, 200],
    ),
    // Custom emoji and stickers: members list; MANAGE_EXPRESSIONS uploads, edits and deletes;
    // the images are public like avatars (an <img> sends no token).
    ("get", "/servers/{server_id}/emojis", [404, 200, 200, 200]),
    ("post", "/servers/{server_id}/emojis", [404, 403, 201, 201]),
    (
        "patch",
        "/servers/{server_id}/emojis/{emoji_id}",
        [404, 403, 200, 200],
    ),
    (
        "delete",
        "/servers/{server_id}/emojis/{emoji_id}",
        [404, 403, 204, 204],
    ),
    ("get", "/emojis/{emoji_id}", [200, 200, 200, 200]),
    ("get", "/servers/{server_id}/stickers", [404, 200, 200, 200]),
    (
        "post",
        "/servers/{server_id}/stickers",
        [404, 403, 201, 201],
    ),
    (
        "patch",
        "/servers/{server_id}/stickers/{sticker_id}",
        [404, 403, 200, 200],
    ),
    (
        "delete",
        "/servers/{server_id}/stickers/{sticker_id}",
        [404, 403, 204, 204],
    ),
    ("get", "/stickers/{sticker_id}", [200, 200, 200, 200]),
    // Playing needs USE_SOUNDBOARD and SPEAK in the voice channel the caller is connected to.
    (
        "post",
        "/channels/{channel_id}/soundboard/play",
        [404, 403, 204, 204],
    ),
    // A link preview's image: its random key is the permission (an <img> sends no token), so
    // whoever holds the URL gets it; an unknown key is 404 (link_preview.rs).
    ("get", "/link-previews/images/{key}", [200, 200, 200, 200]),
    // Files: a signed attachment URL is a capability (it came in a message the holder could
    // read); avatars are public like profile pictures everywhere.
    (
        "get",
        "/attachments/{attachment_id}/{filename}",
        [200, 200, 200, 200],
    ),
    (
        "get",
        "/attachments/{attachment_id}/thumbnail/{filename}",
        [200, 200, 200, 200],
    ),
    ("put", "/users/@me/avatar", [200, 200, 200, 200]),
    ("delete", "/users/@me/avatar", [200, 200, 200, 200]),
    ("get", "/avatars/{user_id}/{name}", [200, 200, 200, 200]),
    // A server's icon: MANAGE_SERVER sets and removes it; anyone may see it (invites show it).
    ("put", "/servers/{server_id}/icon", [404, 403, 200, 200]),
    ("delete", "/servers/{server_id}/icon", [404, 403, 200, 200]),
    ("get", "/icons/{server_id}/{name}", [200, 200, 200, 200]),
    // Safety (docs/safety.md): MANAGE_SERVER manages automod rules and the settings; any
    // member reports and verifies; MODERATE_MEMBERS or MANAGE_MESSAGES see and work the queue.
    (
        "get",
        "/servers/{server_id}/automod/rules",
        [404, 403, 200, 200],
    ),
    (
        "post",
        "/servers/{server_id}/automod/rules",
        [404, 403, 201, 201],
    ),
    (
        "patch",
        "/servers/{server_id}/automod/rules/{rule_id}",
        [404, 403, 200, 200],
    ),
    (
        "delete",
        "/servers/{server_id}/automod/rules/{rule_id}",
        [404, 403, 204, 204],
    ),
    ("get", "/servers/{server_id}/safety", [404, 403, 200, 200]),
    ("patch", "/servers/{server_id}/safety", [404, 403, 200, 200]),
    (
        "post",
        "/servers/{server_id}/members/@me/verify",
        [404, 204, 204, 204],
    ),
    ("get", "/servers/{server_id}/reports", [404, 403, 200, 200]),
    ("post", "/servers/{server_id}/reports", [404, 201, 201, 201]),
    (
        "post",
        "/servers/{server_id}/reports/{report_id}/resolve",
        [404, 403, 200, 200],
    ),
    // Web Push (docs/push.md): subscriptions are the caller's own; notification settings
    // only for a server the caller is in and a channel they can view.
    ("get", "/push/vapid-public-key", [200, 200, 200, 200]),
    ("get", "/users/@me/push-subscriptions", [200, 200, 200, 200]),
    (
        "post",
        "/users/@me/push-subscriptions",
        [201, 201, 201, 201],
    ),
    (
        "delete",
        "/users/@me/push-subscriptions",
        [204, 204, 204, 204],
    ),
    (
        "delete",
        "/users/@me/push-subscriptions/{subscription_id}",
        [204, 204, 204, 204],
    ),
    (
        "post",
        "/users/@me/push-subscriptions/test",
        [202, 202, 202, 202],
    ),
    (
        "get",
        "/users/@me/notification-settings",
        [200, 200, 200, 200],
    ),
    (
        "put",
        "/users/@me/servers/{server_id}/notification-settings",
        [404, 200, 200, 200],
    ),
    (
        "put",
        "/users/@me/channels/{channel_id}/notification-settings",
        [404, 200, 200, 200],
    ),
    ("post", "/servers/{server_id}/invites", [404, 403, 201, 201]),
    ("get", "/servers/{server_id}/invites", [404, 403, 200, 200]),
    // Anyone with the code may look and join (another server here, so nobody's role changes).
    ("get", "/invites/{code}", [200, 200, 200, 200]),
    ("post", "/invites/{code}", [200, 200, 200, 200]),
    ("delete", "/invites/{code}", [404, 403, 204, 204]),
    // Channels: a stranger never learns that one exists.
    ("get", "/channels/{channel_id}", [404, 200, 200, 200]),
    ("patch", "/channels/{channel_id}", [404, 403, 200, 200]),
    ("delete", "/channels/{channel_id}", [404, 403, 204, 204]),
    (
        "get",
        "/channels/{channel_id}/permissions",
        [404, 200, 200, 200],
    ),
    (
        "put",
        "/channels/{channel_id}/permissions/{overwrite_id}",
        [404, 403, 200, 200],
    ),
    (
        "delete",
        "/channels/{channel_id}/permissions/{overwrite_id}",
        [404, 403, 204, 204],
    ),
    (
        "get",
        "/channels/{channel_id}/messages",
        [404, 200, 200, 200],
    ),
    (
        "post",
        "/channels/{channel_id}/messages",
        [404, 403, 201, 201],
    ),
    (
        "post",
        "/channels/{channel_id}/messages/bulk-delete",
        [404, 403, 204, 204],
    ),
    // Search: members (over the channels each may read), and everyone over their own DMs.
    (
        "get",
        "/servers/{server_id}/messages/search",
        [404, 200, 200, 200],
    ),
    ("get", "/users/@me/messages/search", [200, 200, 200, 200]),
    (
        "get",
        "/channels/{channel_id}/messages/{message_id}",
        [404, 200, 200, 200],
    ),
    // Only the author edits (the owner wrote it).
    (
        "patch",
        "/channels/{channel_id}/messages/{message_id}",
        [404, 403, 403, 403],
    ),
    (
        "delete",
        "/channels/{channel_id}/messages/{message_id}",
        [404, 403, 204, 204],
    ),
    (
        "post",
        "/channels/{channel_id}/messages/{message_id}/ack",
        [404, 200, 200, 200],
    ),
    (
        "put",
        "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}",
        [404, 403, 204, 204],
    ),
    (
        "delete",
        "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}",
        [404, 204, 204, 204],
    ),
    (
        "get",
        "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}",
        [404, 200, 200, 200],
    ),
    ("get", "/channels/{channel_id}/pins", [404, 200, 200, 200]),
    (
        "put",
        "/channels/{channel_id}/pins/{message_id}",
        [404, 403, 204, 204],
    ),
    (
        "delete",
        "/channels/{channel_id}/pins/{message_id}",
        [404, 403, 204, 204],
    ),
    (
        "post",
        "/channels/{channel_id}/typing",
        [404, 403, 204, 204],
    ),
    // Integrations (docs/bots.md). Webhooks: MANAGE_WEBHOOKS in the channel; a post's token
    // is its permission (a fresh webhook per call).
    (
        "post",
        "/channels/{channel_id}/webhooks",
        [404, 403, 201, 201],
    ),
    (
        "get",
        "/channels/{channel_id}/webhooks",
        [404, 403, 200, 200],
    ),
    ("delete", "/webhooks/{webhook_id}", [404, 403, 204, 204]),
    (
        "post",
        "/webhooks/{webhook_id}/{token}",
        [200, 200, 200, 200],
    ),
    // Bots: MANAGE_SERVER adds, lists and resets them.
    ("post", "/servers/{server_id}/bots", [404, 403, 201, 201]),
    ("get", "/servers/{server_id}/bots", [404, 403, 200, 200]),
    (
        "post",
        "/servers/{server_id}/bots/{bot_id}/reset-token",
        [404, 403, 200, 200],
    ),
    // Commands: members list them; only a bot registers or deletes its own (people: 403 to
    // register, and no command is theirs to delete).
    ("get", "/servers/{server_id}/commands", [404, 200, 200, 200]),
    (
        "post",
        "/servers/{server_id}/commands",
        [403, 403, 403, 403],
    ),
    (
        "delete",
        "/servers/{server_id}/commands/{command_id}",
        [404, 404, 404, 404],
    ),
    // Using a command needs SEND_MESSAGES in the channel; answering is for its bot only.
    (
        "post",
        "/channels/{channel_id}/interactions",
        [404, 403, 202, 202],
    ),
    (
        "post",
        "/interactions/{interaction_id}/{token}/callback",
        [404, 404, 404, 404],
    ),
    (
        "post",
        "/interactions/{interaction_id}/{token}/followup",
        [404, 404, 404, 404],
    ),
    // Threads: starting one needs CREATE_PUBLIC_THREADS in the channel (each actor starts
    // from a fresh message); listing, joining, leaving and the member list need only to see it.
    (
        "post",
        "/channels/{channel_id}/messages/{message_id}/threads",
        [404, 403, 201, 201],
    ),
    (
        "post",
        "/channels/{channel_id}/threads",
        [404, 403, 201, 201],
    ),
    (
        "get",
        "/channels/{channel_id}/threads",
        [404, 200, 200, 200],
    ),
    (
        "put",
        "/channels/{channel_id}/thread-members/@me",
        [404, 204, 204, 204],
    ),
    (
        "delete",
        "/channels/{channel_id}/thread-members/@me",
        [404, 204, 204, 204],
    ),
    (
        "get",
        "/channels/{channel_id}/thread-members",
        [404, 200, 200, 200],
    ),
    // Leaving runs last: afterwards the members are gone.
    (
        "delete",
        "/servers/{server_id}/members/@me",
        [404, 204, 204, 204],
    ),
];

const THUMBS: &str = "%F0%9F%91%8D";

struct World {
    app: TestApp,
    owner: User,
    stranger: User,
    without: User,
    below: User,
    with: User,
    sid: String,
    text: String,
    voice: String,
    hidden: String,
    /// A stage channel and a voice channel where @everyone may connect and speak.
    stage: String,
    lounge: String,
    /// Gateways kept open so their users stay in voice.
    gateways: tokio::sync::Mutex<Vec<common::Gateway>>,
    /// The role between "below" and "with" that targets hold.
    mid_role: String,
    /// A message by the owner in `text`.
    message: String,
    group_dm: String,
    /// An invite to a second server (joining it changes nothing in the first).
    other_invite: String,
    counter: std::sync::atomic::AtomicU32,
    /// A moderation target or a plain user a refused request left untouched, for the next
    /// actor: registering costs an argon2 hash, the slowest step here.
    spare: std::sync::Mutex<Option<(&'static str, User)>>,
}

/// One concrete request.
struct Req {
    path: String,
    body: Option<Value>,
    token: String,
    /// The fresh user this request acts on; reused by the next actor when it is refused.
    spare: Option<(&'static str, User)>,
    /// A raw (non-JSON) body: its content type and bytes.
    raw: Option<(&'static str, Vec<u8>)>,
}

impl World {
    fn user(&self, a: Actor) -> &User {
        match a {
            Actor::Stranger => &self.stranger,
            Actor::Without => &self.without,
            Actor::Below => &self.below,
            Actor::With => &self.with,
        }
    }

    fn name(&self, a: Actor) -> String {
        format!("mx_{a:?}").to_lowercase()
    }

    fn fresh_name(&self, prefix: &str) -> String {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{prefix}{n}")
    }

    async fn ok(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Value {
        let (s, v) = self.app.request(method, path, Some(token), body).await;
        assert!((200..300).contains(&s), "setup {path}: {s} {v}");
        v
    }

    fn take_spare(&self, kind: &'static str) -> Option<User> {
        let mut spare = self.spare.lock().unwrap();
        match spare.take() {
            Some((k, u)) if k == kind => Some(u),
            _ => None,
        }
    }

    /// A user no request has touched yet (or one only refused requests touched).
    async fn fresh_user(&self, spare: &mut Option<(&'static str, User)>) -> User {
        let u = match self.take_spare("user") {
            Some(u) => u,
            None => self.app.register(&self.fresh_name("usr")).await,
        };
        *spare = Some(("user", u.clone()));
        u
    }

    /// A member of the server holding the middle role (a moderation target).
    async fn target(&self, spare: &mut Option<(&'static str, User)>) -> User {
        let u = match self.take_spare("target") {
            Some(u) => u,
            None => self.fresh_target().await,
        };
        *spare = Some(("target", u.clone()));
        u
    }

    /// A new member of the server holding the middle role (a moderation target).
    async fn fresh_target(&self) -> User {
        let u = self.app.register(&self.fresh_name("tgt")).await;
        self.app.join(&self.owner, &u, &self.sid).await;
        self.app
            .give_role(&self.owner, &self.sid, &u, &self.mid_role)
            .await;
        u
    }

    /// Connects `u` to voice channel `channel` over a new gateway kept open.
    async fn in_voice(&self, u: &User, channel: &str) {
        let (mut g, _) = self.app.identified(u).await;
        g.send(json!({"op": 4, "d": {"server_id": self.sid, "channel_id": channel, "self_mute": false, "self_deaf": false}}))
            .await;
        loop {
            let v = g.next().await.expect("the voice join's state");
            assert_ne!(v["op"], 14, "voice join refused: {v}");
            if v["t"] == Event::VoiceStateUpdate.name() && v["d"]["user_id"] == u.id.as_str() {
                break;
            }
        }
        self.gateways.lock().await.push(g);
    }

    /// A new public thread by the owner in `text`.
    async fn thread(&self) -> String {
        let t = self
            .ok(
                Method::POST,
                &format!("/channels/{}/threads", self.text),
                &self.owner.token,
                Some(json!({"name": self.fresh_name("thread ")})),
            )
            .await;
        t["id"].as_str().unwrap().to_string()
    }

    async fn owner_message(&self) -> String {
        let m = self
            .app
            .message(&self.owner, &self.text, &self.fresh_name("msg "))
            .await;
        m["id"].as_str().unwrap().to_string()
    }

    /// The concrete request for `template` as `actor`, creating what it consumes.
    async fn prepare(&self, method: &str, template: &str, actor: Actor) -> Req {
        let me = self.user(actor);
        let mut token = me.token.clone();
        let mut body = None;
        let mut spare = None;
        let mut raw = None;
        let mut query: Option<String> = None;
        let mut p: HashMap<&str, String> = HashMap::from([
            ("server_id", self.sid.clone()),
            ("channel_id", self.text.clone()),
            ("message_id", self.message.clone()),
            ("emoji", THUMBS.to_string()),
        ]);
        match (method, template) {
            ("post", "/auth/register") => {
                body = Some(
                    json!({"username": self.fresh_name("reg"), "password": "correct horse battery"}),
                )
            }
            ("post", "/auth/login") => {
                body =
                    Some(json!({"username": self.name(actor), "password": "correct horse battery"}))
            }
            ("post", "/auth/refresh")
            | ("post", "/auth/logout")
            | ("delete", "/users/@me/sessions/{session_id}") => {
                // A second login of the actor, so their main session lives on.
                let (s, login) = self
                    .app
                    .request(
                        Method::POST,
                        "/auth/login",
                        None,
                        Some(json!({"username": self.name(actor), "password": "correct horse battery"})),
                    )
                    .await;
                assert_eq!(s, 200, "{login}");
                let refresh = login["refresh_token"].as_str().unwrap().to_string();
                match template {
                    "/auth/refresh" => body = Some(json!({"refresh_token": refresh})),
                    "/auth/logout" => token = login["token"].as_str().unwrap().to_string(),
                    _ => {
                        p.insert(
                            "session_id",
                            login["session_id"].as_str().unwrap().to_string(),
                        );
                    }
                }
            }
            ("patch", "/users/@me") => body = Some(json!({"display_name": "Matrix"})),
            ("delete", "/users/@me") => {
                let doomed = self.app.register(&self.fresh_name("del")).await;
                token = doomed.token;
                body = Some(json!({"password": "correct horse battery"}));
            }
            ("post", "/users/@me/relationships") => {
                let name = self.fresh_name("rel");
                self.app.register(&name).await;
                body = Some(json!({"username": name}));
            }
            ("put", "/users/@me/relationships/{user_id}") => {
                p.insert("user_id", self.fresh_user(&mut spare).await.id);
            }
            ("delete", "/users/@me/relationships/{user_id}") => {
                let other = self.app.register(&self.fresh_name("rel")).await;
                self.ok(
                    Method::PUT,
                    &format!("/users/@me/relationships/{}", other.id),
                    &token,
                    None,
                )
                .await;
                p.insert("user_id", other.id);
            }
            ("post", "/users/@me/channels") => {
                let other = self.app.register(&self.fresh_name("dm")).await;
                body = Some(json!({"recipient_id": other.id}));
            }
            ("put", "/channels/{channel_id}/recipients/{user_id}") => {
                p.insert("channel_id", self.group_dm.clone());
                p.insert("user_id", self.fresh_user(&mut spare).await.id);
            }
            ("delete", "/channels/{channel_id}/recipients/{user_id}") => {
                let other = self.fresh_user(&mut spare).await;
                // Adding again is a no-op when a refused removal left them in.
                self.ok(
                    Method::PUT,
                    &format!("/channels/{}/recipients/{}", self.group_dm, other.id),
                    &self.with.token,
                    None,
                )
                .await;
                p.insert("channel_id", self.group_dm.clone());
                p.insert("user_id", other.id);
            }
            ("post", "/servers") => body = Some(json!({"name": "another"})),
            ("patch", "/servers/{server_id}") => body = Some(json!({"name": "Matrix"})),
            ("post", "/servers/{server_id}/channels") => body = Some(json!({"name": "new"})),
            ("patch", "/servers/{server_id}/members/{user_id}") => {
                let t = self.target(&mut spare).await;
                let until = (chrono::Utc::now() + chrono::Duration::minutes(5)).to_rfc3339();
                body = Some(json!({"timeout_until": until}));
                p.insert("user_id", t.id);
            }
            ("delete", "/servers/{server_id}/members/{user_id}")
            | ("put", "/servers/{server_id}/bans/{user_id}") => {
                p.insert("user_id", self.target(&mut spare).await.id);
            }
            ("delete", "/servers/{server_id}/bans/{user_id}") => {
                let t = self.app.register(&self.fresh_name("ban")).await;
                self.ok(
                    Method::PUT,
                    &format!("/servers/{}/bans/{}", self.sid, t.id),
                    &self.owner.token,
                    None,
                )
                .await;
                p.insert("user_id", t.id);
            }
            ("post", "/servers/{server_id}/roles") => body = Some(json!({"name": "r"})),
            ("patch", "/servers/{server_id}/roles/{role_id}") => {
                body = Some(json!({"color": 255}));
                p.insert("role_id", self.mid_role.clone());
            }
            ("delete", "/servers/{server_id}/roles/{role_id}") => {
                // A new role at the middle role's position: above "below", under "with".
                let id = self.app.role(&self.owner, &self.sid, "doomed", 0).await;
                let pos = self.role_position(&self.mid_role).await;
                self.ok(
                    Method::PATCH,
                    &format!("/servers/{}/roles/{id}", self.sid),
                    &self.owner.token,
                    Some(json!({"position": pos})),
                )
                .await;
                p.insert("role_id", id);
            }
            ("put", "/servers/{server_id}/members/{user_id}/roles/{role_id}")
            | ("delete", "/servers/{server_id}/members/{user_id}/roles/{role_id}") => {
                p.insert("user_id", self.target(&mut spare).await.id);
                p.insert("role_id", self.mid_role.clone());
            }
            ("patch", "/servers/{server_id}/voice-states/@me") => {
                if actor != Actor::Stranger {
                    self.in_voice(me, &self.stage).await;
                }
                body = Some(json!({"channel_id": self.stage, "suppress": false}));
            }
            ("patch", "/servers/{server_id}/voice-states/{user_id}") => {
                let t = self.target(&mut spare).await;
                self.in_voice(&t, &self.stage).await;
                body = Some(json!({"channel_id": self.stage, "suppress": false}));
                p.insert("user_id", t.id);
            }
            ("post", "/servers/{server_id}/soundboard-sounds") => {
                raw = Some(("audio/wav", crate::soundboard::tone_wav(300)));
            }
            ("delete", "/servers/{server_id}/soundboard-sounds/{sound_id}")
            | ("get", "/servers/{server_id}/soundboard-sounds/{sound_id}/audio") => {
                p.insert("sound_id", self.sound().await);
            }
            ("post", "/channels/{channel_id}/soundboard/play") => {
                if matches!(actor, Actor::Below | Actor::With) {
                    self.in_voice(me, &self.lounge).await;
                }
                p.insert("channel_id", self.lounge.clone());
                body = Some(json!({"sound_id": self.sound().await}));
            }
            ("post", "/servers/{server_id}/emojis") | ("post", "/servers/{server_id}/stickers") => {
                raw = Some(("image/png", crate::emoji::png(64, 64)));
                query = Some(format!("name={}", self.fresh_name("mx")));
            }
            ("patch", "/servers/{server_id}/emojis/{emoji_id}") => {
                p.insert("emoji_id", self.expression("emojis").await);
                body = Some(json!({"name": self.fresh_name("renamed")}));
            }
            ("delete", "/servers/{server_id}/emojis/{emoji_id}")
            | ("get", "/emojis/{emoji_id}") => {
                p.insert("emoji_id", self.expression("emojis").await);
            }
            ("patch", "/servers/{server_id}/stickers/{sticker_id}") => {
                p.insert("sticker_id", self.expression("stickers").await);
                body = Some(json!({"description": "renamed"}));
            }
            ("delete", "/servers/{server_id}/stickers/{sticker_id}")
            | ("get", "/stickers/{sticker_id}") => {
                p.insert("sticker_id", self.expression("stickers").await);
            }
            ("get", "/link-previews/images/{key}") => {
                p.insert("key", self.preview_image().await);
            }
            ("get", "/attachments/{attachment_id}/{filename}")
            | ("get", "/attachments/{attachment_id}/thumbnail/{filename}") => {
                let thumbnail = template.contains("thumbnail");
                let url = self.attachment_url(thumbnail).await;
                let (_, tail) = url.split_once("/attachments/").unwrap();
                let (id, rest) = tail.split_once('/').unwrap();
                let (_, q) = rest.split_once('?').unwrap();
                p.insert("attachment_id", id.to_string());
                p.insert("filename", "m.png".to_string());
                query = Some(q.to_string());
            }
            ("put", "/servers/{server_id}/icon") => {
                raw = Some(("image/png", crate::attachments::png_with_location(64, 64)));
            }
            ("get", "/icons/{server_id}/{name}") => {
                let resp = self
                    .app
                    .http
                    .put(self.app.url(&format!("/servers/{}/icon", self.sid)))
                    .bearer_auth(&self.owner.token)
                    .header("content-type", "image/png")
                    .body(crate::attachments::png_with_location(40, 40))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status().as_u16(), 200);
                let v: Value = resp.json().await.unwrap();
                let url = v["icon_url"].as_str().unwrap().to_string();
                p.insert("name", url.rsplit('/').next().unwrap().to_string());
            }
            ("put", "/users/@me/avatar") => {
                raw = Some(("image/png", crate::attachments::png_with_location(64, 64)));
            }
            ("get", "/avatars/{user_id}/{name}") => {
                let url = self.owner_avatar().await;
                let mut parts = url.rsplit('/');
                let name = parts.next().unwrap().to_string();
                p.insert("user_id", parts.next().unwrap().to_string());
                p.insert("name", name);
            }
            ("post", "/servers/{server_id}/automod/rules") => {
                body = Some(json!({"name": "mx", "kind": "keyword", "keywords": ["zzzmx"]}));
            }
            ("patch", "/servers/{server_id}/automod/rules/{rule_id}")
            | ("delete", "/servers/{server_id}/automod/rules/{rule_id}") => {
                let rule = self
                    .ok(
                        Method::POST,
                        &format!("/servers/{}/automod/rules", self.sid),
                        &self.owner.token,
                        Some(json!({"name": "mx", "kind": "keyword", "keywords": ["zzzmx"]})),
                    )
                    .await;
                p.insert("rule_id", rule["id"].as_str().unwrap().to_string());
                if method == "patch" {
                    body = Some(json!({"enabled": false}));
                }
            }
            ("patch", "/servers/{server_id}/safety") => {
                body = Some(json!({"raid_join_window_secs": 10}));
            }
            ("post", "/servers/{server_id}/reports") => {
                body = Some(json!({"user_id": self.owner.id, "reason": "matrix"}));
            }
            ("post", "/servers/{server_id}/reports/{report_id}/resolve") => {
                let report = self
                    .ok(
                        Method::POST,
                        &format!("/servers/{}/reports", self.sid),
                        &self.owner.token,
                        Some(json!({"user_id": self.without.id, "reason": "matrix"})),
                    )
                    .await;
                p.insert("report_id", report["id"].as_str().unwrap().to_string());
                body = Some(json!({"action": "dismiss"}));
            }
            ("post", "/users/@me/push-subscriptions") => {
                body = Some(push_subscription(&self.fresh_name("push")));
            }
            ("delete", "/users/@me/push-subscriptions")
            | ("delete", "/users/@me/push-subscriptions/{subscription_id}") => {
                let name = self.fresh_name("push");
                let sub = self
                    .ok(
                        Method::POST,
                        "/users/@me/push-subscriptions",
                        &token,
                        Some(push_subscription(&name)),
                    )
                    .await;
                if template.ends_with('}') {
                    p.insert("subscription_id", sub["id"].as_str().unwrap().to_string());
                } else {
                    query = Some(format!("endpoint=https%3A%2F%2Fpush.example.com%2F{name}"));
                }
            }
            ("put", "/users/@me/servers/{server_id}/notification-settings") => {
                body = Some(json!({"level": "mentions"}));
            }
            ("put", "/users/@me/channels/{channel_id}/notification-settings") => {
                body = Some(json!({"level": "all"}));
            }
            ("post", "/servers/{server_id}/invites") => body = Some(json!({})),
            ("get", "/invites/{code}") | ("post", "/invites/{code}") => {
                p.insert("code", self.other_invite.clone());
            }
            ("delete", "/invites/{code}") => {
                p.insert("code", self.app.invite(&self.owner, &self.sid).await);
            }
            ("patch", "/channels/{channel_id}") => {
                body = Some(json!({"topic": "matrix"}));
            }
            ("delete", "/channels/{channel_id}") => {
                let c = self
                    .app
                    .channel(&self.owner, &self.sid, "text", "doomed")
                    .await;
                p.insert("channel_id", c);
            }
            ("put", "/channels/{channel_id}/permissions/{overwrite_id}") => {
                body = Some(json!({"type": "role", "allow": "0", "deny": "0"}));
                p.insert("overwrite_id", self.mid_role.clone());
            }
            ("delete", "/channels/{channel_id}/permissions/{overwrite_id}") => {
                let cid = self.app.channel(&self.owner, &self.sid, "text", "ow").await;
                self.app
                    .overwrite(&self.owner, &cid, Overwrite::Role(&self.mid_role), 0, 0)
                    .await;
                p.insert("channel_id", cid);
                p.insert("overwrite_id", self.mid_role.clone());
            }
            ("post", "/channels/{channel_id}/messages") => body = Some(json!({"content": "hello"})),
            ("post", "/channels/{channel_id}/messages/bulk-delete") => {
                let a = self.owner_message().await;
                let b = self.owner_message().await;
                body = Some(json!({"messages": [a, b]}));
            }
            ("patch", "/channels/{channel_id}/messages/{message_id}") => {
                body = Some(json!({"content": "edited"}));
            }
            ("delete", "/channels/{channel_id}/messages/{message_id}")
            | ("delete", "/channels/{channel_id}/pins/{message_id}")
            | ("put", "/channels/{channel_id}/pins/{message_id}") => {
                let m = self.owner_message().await;
                if method == "delete" && template.contains("pins") {
                    self.ok(
                        Method::PUT,
                        &format!("/channels/{}/pins/{m}", self.text),
                        &self.owner.token,
                        None,
                    )
                    .await;
                }
                p.insert("message_id", m);
            }
            ("post", "/channels/{channel_id}/messages/{message_id}/threads") => {
                p.insert("message_id", self.owner_message().await);
                body = Some(json!({"name": "thread"}));
            }
            ("post", "/channels/{channel_id}/threads") => body = Some(json!({"name": "thread"})),
            ("put", "/channels/{channel_id}/thread-members/@me")
            | ("delete", "/channels/{channel_id}/thread-members/@me")
            | ("get", "/channels/{channel_id}/thread-members") => {
                p.insert("channel_id", self.thread().await);
            }
            ("post", "/channels/{channel_id}/webhooks") => body = Some(json!({"name": "hook"})),
            ("delete", "/webhooks/{webhook_id}") => {
                p.insert("webhook_id", self.webhook().await.0);
            }
            ("post", "/webhooks/{webhook_id}/{token}") => {
                let (id, token) = self.webhook().await;
                p.insert("webhook_id", id);
                p.insert("token", token);
                body = Some(json!({"content": "from a webhook"}));
            }
            ("post", "/servers/{server_id}/bots") => {
                body = Some(json!({"username": self.fresh_name("mbot"), "permissions": "0"}));
            }
            ("post", "/servers/{server_id}/bots/{bot_id}/reset-token") => {
                p.insert("bot_id", self.bot_command().await.0);
            }
            ("post", "/servers/{server_id}/commands") => {
                body = Some(json!({"name": "mine", "description": "not a bot's"}));
            }
            ("delete", "/servers/{server_id}/commands/{command_id}") => {
                p.insert("command_id", self.bot_command().await.1);
            }
            ("post", "/channels/{channel_id}/interactions") => {
                body = Some(json!({"command_id": self.bot_command().await.1}));
            }
            ("post", "/interactions/{interaction_id}/{token}/callback") => {
                p.insert("interaction_id", "1".into());
                p.insert("token", "unknown".into());
                body = Some(json!({"type": 4, "data": {"content": "hi"}}));
            }
            ("post", "/interactions/{interaction_id}/{token}/followup") => {
                p.insert("interaction_id", "1".into());
                p.insert("token", "unknown".into());
                body = Some(json!({"content": "hi"}));
            }
            _ => {}
        }
        let mut path = template.to_string();
        for (k, v) in &p {
            path = path.replace(&format!("{{{k}}}"), v);
        }
        if let Some(q) = query {
            path.push('?');
            path.push_str(&q);
        } else if raw.is_some() && template.contains("soundboard") {
            // An upload names its sound in the query string.
            path.push_str("?name=mx");
        }
        if template.ends_with("/messages/search") {
            path.push_str("?q=hello");
        }
        assert!(!path.contains('{'), "unfilled parameter in {path}");
        Req {
            path,
            body,
            token,
            spare,
            raw,
        }
    }

    /// A cached link preview image, stored as the preview worker stores one.
    async fn preview_image(&self) -> String {
        let db = sqlx::PgPool::connect(&self.app.database_url())
            .await
            .unwrap();
        let key = uuid::Uuid::new_v4();
        let url = format!("https://example.org/{key}");
        let hash: Vec<u8> = [key.as_bytes().as_slice(), key.as_bytes()].concat();
        sqlx::query(
            "INSERT INTO link_previews (url_hash, url, embed, image_key, image_type, image)
             VALUES ($1, $2, '{}'::jsonb, $3, 'image/png', $4)",
        )
        .bind(hash)
        .bind(url)
        .bind(key)
        .bind(b"\x89PNG\r\n\x1a\n".to_vec())
        .execute(&db)
        .await
        .unwrap();
        db.close().await;
        key.simple().to_string()
    }

    /// The signed URL of a new image attachment of the owner's (or of its thumbnail, once
    /// made).
    async fn attachment_url(&self, thumbnail: bool) -> String {
        let (status, m) = crate::attachments::send_files(
            &self.app,
            &self.owner,
            &self.text,
            json!({}),
            vec![(
                "m.png",
                "image/png",
                crate::attachments::png_with_location(32, 32),
            )],
        )
        .await;
        assert_eq!(status, 201, "{m}");
        if !thumbnail {
            return m["attachments"][0]["url"].as_str().unwrap().to_string();
        }
        let id = m["id"].as_str().unwrap();
        for _ in 0..100 {
            let got = self
                .ok(
                    Method::GET,
                    &format!("/channels/{}/messages/{id}", self.text),
                    &self.owner.token,
                    None,
                )
                .await;
            if let Some(t) = got["attachments"][0]["thumbnail_url"].as_str() {
                return t.to_string();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no thumbnail");
    }

    /// The owner's avatar URL (uploaded on first use).
    async fn owner_avatar(&self) -> String {
        let resp = self
            .app
            .http
            .put(self.app.url("/users/@me/avatar"))
            .bearer_auth(&self.owner.token)
            .header("content-type", "image/png")
            .body(crate::attachments::png_with_location(40, 40))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let v: Value = resp.json().await.unwrap();
        v["avatar_url"].as_str().unwrap().to_string()
    }

    /// A new webhook in the text channel, made by the owner: (id, token).
    async fn webhook(&self) -> (String, String) {
        let v = self
            .ok(
                Method::POST,
                &format!("/channels/{}/webhooks", self.text),
                &self.owner.token,
                Some(json!({"name": "matrix"})),
            )
            .await;
        (
            v["id"].as_str().unwrap().to_string(),
            v["token"].as_str().unwrap().to_string(),
        )
    }

    /// A new bot of the server with a command of its own: (bot id, command id).
    async fn bot_command(&self) -> (String, String) {
        let b = self
            .ok(
                Method::POST,
                &format!("/servers/{}/bots", self.sid),
                &self.owner.token,
                Some(json!({"username": self.fresh_name("cbot")})),
            )
            .await;
        let token = b["token"].as_str().unwrap();
        let c = self
            .ok(
                Method::POST,
                &format!("/servers/{}/commands", self.sid),
                token,
                Some(json!({"name": self.fresh_name("cmd"), "description": "matrix"})),
            )
            .await;
        (
            b["user"]["id"].as_str().unwrap().to_string(),
            c["id"].as_str().unwrap().to_string(),
        )
    }

    /// A new custom emoji or sticker (`kind`: "emojis" or "stickers") uploaded by the owner.
    async fn expression(&self, kind: &str) -> String {
        let name = self.fresh_name("mx");
        let resp = self
            .app
            .http
            .post(
                self.app
                    .url(&format!("/servers/{}/{kind}?name={name}", self.sid)),
            )
            .bearer_auth(&self.owner.token)
            .body(crate::emoji::png(32, 32))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        let v: Value = resp.json().await.unwrap();
        v["id"].as_str().unwrap().to_string()
    }

    /// A new soundboard sound uploaded by the owner.
    async fn sound(&self) -> String {
        let resp = self
            .app
            .http
            .post(
                self.app
                    .url(&format!("/servers/{}/soundboard-sounds?name=mx", self.sid)),
            )
            .bearer_auth(&self.owner.token)
            .body(crate::soundboard::tone_wav(200))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        let v: Value = resp.json().await.unwrap();
        v["id"].as_str().unwrap().to_string()
    }

    async fn role_position(&self, role_id: &str) -> i64 {
        let roles = self
            .ok(
                Method::GET,
                &format!("/servers/{}/roles", self.sid),
                &self.owner.token,
                None,
            )
            .await;
        roles
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == role_id)
            .unwrap()["position"]
            .as_i64()
            .unwrap()
    }
}

/// Builds the server, its roles and the four actors.
async fn world() -> World {
    let app = TestApp::spawn_with(|c| c.rate_limit_scale = 1000.0).await;
    let owner = app.register("mx_owner").await;
    let stranger = app.register("mx_stranger").await;
    let without = app.register("mx_without").await;
    let below = app.register("mx_below").await;
    let with = app.register("mx_with").await;
    let Server {
        id: sid,
        text,
        voice,
    } = app.server(&owner, "Matrix").await;
    for u in [&without, &below, &with] {
        app.join(&owner, u, &sid).await;
    }
    // @everyone: look, read history, nothing else.
    let (s, r) = app
        .patch(
            &format!("/servers/{sid}/roles/{sid}"),
            &owner.token,
            json!({"permissions": (VIEW | HISTORY).to_string()}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    // Created in this order, new roles entering at the bottom: high 3, mid 2, low 1.
    let high = app.role(&owner, &sid, "high", MODERATOR).await;
    let mid = app.role(&owner, &sid, "mid", 0).await;
    let low = app.role(&owner, &sid, "low", MODERATOR).await;
    app.give_role(&owner, &sid, &with, &high).await;
    app.give_role(&owner, &sid, &below, &low).await;
    // A channel only the high role may view.
    let hidden = app.channel(&owner, &sid, "text", "staff").await;
    app.overwrite(&owner, &hidden, Overwrite::Role(&sid), 0, VIEW)
        .await;
    app.overwrite(&owner, &hidden, Overwrite::Role(&high), VIEW, 0)
        .await;
    // A stage channel and a voice channel where @everyone may connect and speak.
    let open_voice = |kind: &'static str, name: &'static str| {
        let (app, owner, sid) = (&app, &owner, &sid);
        async move {
            let id = app.channel(owner, sid, kind, name).await;
            app.overwrite(owner, &id, Overwrite::Role(sid), CONNECT | SPEAK, 0)
                .await;
            id
        }
    };
    let stage = open_voice("stage", "town hall").await;
    let lounge = open_voice("voice", "lounge").await;
    let (s, g) = app
        .post(
            "/users/@me/channels",
            &with.token,
            json!({"recipient_ids": [without.id, below.id]}),
        )
        .await;
    assert_eq!(s, 201, "{g}");
    let group_dm = g["id"].as_str().unwrap().to_string();
    let other = app.server(&owner, "Elsewhere").await;
    let other_invite = app.invite(&owner, &other.id).await;
    let mut w = World {
        app,
        owner,
        stranger,
        without,
        below,
        with,
        sid,
        text,
        voice,
        hidden,
        stage,
        lounge,
        gateways: Default::default(),
        mid_role: mid,
        message: String::new(),
        group_dm,
        other_invite,
        counter: Default::default(),
        spare: Default::default(),
    };
    assert!(w.role_position(&low).await < w.role_position(&w.mid_role).await);
    assert!(w.role_position(&w.mid_role).await < w.role_position(&high).await);
    w.message = w.owner_message().await;
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_each_role_exactly() {
    let w = world().await;
    // Every documented endpoint needs a row; every row a documented endpoint.
    let (_, doc) = w.app.get("/openapi.json", &w.owner.token).await;
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let path = path.strip_prefix("/api/v1").unwrap_or(path);
            documented.insert((method.clone(), path.to_string()));
        }
    }
    let rows: BTreeSet<(String, String)> = MATRIX
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = documented.difference(&rows).collect();
    assert!(
        missing.is_empty(),
        "endpoints without a matrix row: {missing:?}"
    );
    let stale: Vec<_> = rows.difference(&documented).collect();
    assert!(stale.is_empty(), "matrix rows of no endpoint: {stale:?}");
    assert_eq!(rows.len(), MATRIX.len(), "a row is repeated");

    let mut wrong = Vec::new();
    for (method, template, want) in MATRIX {
        for (actor, want) in ACTORS.iter().zip(want) {
            let req = w.prepare(method, template, *actor).await;
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (got, body) = match req.raw {
                Some((content_type, bytes)) => {
                    let resp = w
                        .app
                        .http
                        .request(m, w.app.url(&req.path))
                        .bearer_auth(&req.token)
                        .header("content-type", content_type)
                        .body(bytes)
                        .send()
                        .await
                        .expect("request");
                    let got = resp.status().as_u16();
                    (got, resp.json().await.unwrap_or(Value::Null))
                }
                None => {
                    w.app
                        .request(m, &req.path, Some(&req.token), req.body)
                        .await
                }
            };
            if !(200..300).contains(&got) {
                *w.spare.lock().unwrap() = req.spare;
            }
            if got != *want {
                wrong.push(format!(
                    "{method} {template} as {actor:?}: {got} (want {want}) {body}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Voice: joining needs CONNECT in that channel (and membership).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voice_join_needs_connect_and_membership() {
    let w = world().await;
    let (mut g_stranger, _) = w.app.identified(&w.stranger).await;
    let (mut g_without, _) = w.app.identified(&w.without).await;
    w.app
        .overwrite(
            &w.owner,
            &w.voice,
            Overwrite::Member(&w.without.id),
            0,
            CONNECT,
        )
        .await;
    for g in [&mut g_without, &mut g_stranger] {
        g.send(json!({"op": 4, "d": {"server_id": w.sid, "channel_id": w.voice, "self_mute": false, "self_deaf": false}}))
            .await;
        let err = loop {
            let v = g.next().await.expect("an answer to the voice join");
            if v["op"] == 14 {
                break v;
            }
        };
        assert_eq!(err["d"]["code"], 4403, "{err}");
    }
}

/// Everything that happens in the hidden channel reaches "with" and nobody else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_channels_events_reach_only_its_viewers() {
    let w = world().await;
    let o = w.owner.token.clone();
    let (mut g_stranger, _) = w.app.identified(&w.stranger).await;
    let (mut g_without, _) = w.app.identified(&w.without).await;
    let (mut g_with, _) = w.app.identified(&w.with).await;
    let mut secret = Vec::new();
    for content in ["secret 1", "secret 2", "secret 3"] {
        let m = w.app.message(&w.owner, &w.hidden, content).await;
        secret.push(m["id"].as_str().unwrap().to_string());
    }
    let (m1, m2, m3) = (&secret[0], &secret[1], &secret[2]);
    for (method, path, body) in [
        (
            Method::PATCH,
            format!("/channels/{}/messages/{m1}", w.hidden),
            Some(json!({"content": "secret 1b"})),
        ),
        (Method::POST, format!("/channels/{}/typing", w.hidden), None),
        (
            Method::PUT,
            format!("/channels/{}/messages/{m1}/reactions/{THUMBS}", w.hidden),
            None,
        ),
        (
            Method::PUT,
            format!("/channels/{}/pins/{m1}", w.hidden),
            None,
        ),
        (
            Method::DELETE,
            format!("/channels/{}/messages/{m3}", w.hidden),
            None,
        ),
        (
            Method::POST,
            format!("/channels/{}/messages/bulk-delete", w.hidden),
            Some(json!({"messages": [m1, m2]})),
        ),
    ] {
        let (s, b) = w.app.request(method, &path, Some(&o), body).await;
        assert!((200..300).contains(&s), "{path}: {s} {b}");
    }
    let want = [
        Event::MessageCreate,
        Event::MessageUpdate,
        Event::TypingStart,
        Event::MessageReactionAdd,
        Event::ChannelPinsUpdate,
        Event::MessageDelete,
        Event::MessageDeleteBulk,
    ];
    let mut seen = BTreeSet::new();
    while let Some(v) = g_with.next_within(Duration::from_millis(700)).await {
        if v["d"]["channel_id"] == w.hidden.as_str() {
            seen.insert(v["t"].as_str().unwrap().to_string());
        }
    }
    for t in want {
        assert!(seen.contains(t.name()), "the viewer missed {t}: {seen:?}");
    }
    for (who, g) in [
        ("member without VIEW_CHANNEL", &mut g_without),
        ("stranger", &mut g_stranger),
    ] {
        while let Some(v) = g.next_within(Duration::from_millis(300)).await {
            assert_ne!(v["d"]["channel_id"], w.hidden.as_str(), "{who} got {v}");
            assert!(!v.to_string().contains("secret"), "{who} got {v}");
        }
    }
}

/// History windows: ids from another channel only bound the window of this one, and a
/// message id of the hidden channel cannot be read through a visible one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_windows_never_reach_into_another_channel() {
    let w = world().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let m = w.app.message(&w.owner, &w.hidden, &format!("h{i}")).await;
        ids.push(m["id"].as_str().unwrap().to_string());
        w.app.message(&w.owner, &w.text, &format!("t{i}")).await;
    }
    for query in [
        format!("before={}", ids[2]),
        format!("after={}", ids[0]),
        format!("after=0&before={}", ids[2]),
        "after=0&limit=100".to_string(),
        format!("around={}", ids[1]),
    ] {
        for u in [&w.without, &w.with] {
            let (s, page) = w
                .app
                .get(&format!("/channels/{}/messages?{query}", w.text), &u.token)
                .await;
            assert_eq!(s, 200);
            for m in page.as_array().unwrap() {
                assert_eq!(m["channel_id"], w.text.as_str(), "{query}: {m}");
            }
        }
        let (s, _) = w
            .app
            .get(
                &format!("/channels/{}/messages?{query}", w.hidden),
                &w.without.token,
            )
            .await;
        assert_eq!(s, 404, "a hidden channel's window");
        let (s, _) = w
            .app
            .get(
                &format!("/channels/{}/messages?{query}", w.hidden),
                &w.stranger.token,
            )
            .await;
        assert_eq!(s, 404);
    }
    let (s, _) = w
        .app
        .get(
            &format!("/channels/{}/messages/{}", w.text, ids[0]),
            &w.without.token,
        )
        .await;
    assert_eq!(s, 404);
}

/// PATCH /servers/{server_id}/members/{user_id} with `channel_id` (its row above times members
/// out): moving a member between voice channels and disconnecting them need MOVE_MEMBERS and a
/// role above the member's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_and_disconnecting_members_answer_each_role_exactly() {
    let w = world().await;
    let mut wrong = Vec::new();
    for (to_lounge, want) in [(true, [404, 403, 403, 200]), (false, [404, 403, 403, 200])] {
        for (actor, want) in ACTORS.iter().zip(want) {
            let t = w.fresh_target().await;
            w.in_voice(&t, &w.stage).await;
            let to = if to_lounge {
                json!(w.lounge)
            } else {
                json!(null)
            };
            let (got, body) = w
                .app
                .patch(
                    &format!("/servers/{}/members/{}", w.sid, t.id),
                    &w.user(*actor).token,
                    json!({ "channel_id": to }),
                )
                .await;
            if got != want {
                wrong.push(format!(
                    "move to {to} as {actor:?}: {got} (want {want}) {body}"
                ));
            }
        }
    }
    // Someone not in voice cannot be moved: a clear 400.
    let idle = w.fresh_target().await;
    let (got, body) = w
        .app
        .patch(
            &format!("/servers/{}/members/{}", w.sid, idle.id),
            &w.with.token,
            json!({"channel_id": w.lounge}),
        )
        .await;
    assert_eq!(got, 400, "{body}");
    assert!(
        wrong.is_empty(),
        "{} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// A push subscription body with a made-up https endpoint (a delivery to it fails, counted
/// as `failed`, which the matrix does not look at).
fn push_subscription(name: &str) -> Value {
    // A valid P-256 point (the RFC 8291 example's browser key) and a 16-byte auth secret.
    json!({
        "endpoint": format!("https://push.example.com/{name}"),
        "keys": {
            "p256dh": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
            "auth": "BTBZMqHH6r4Tts7J_aSIgg",
        }
    })
}
