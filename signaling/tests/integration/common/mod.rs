//! Test harness: each test gets the app on port 0 against a fresh database. The database
//! server is `DATABASE_URL` when set, else one private PostgreSQL cluster per test process,
//! provisioned exactly as `confab` does it.
#![allow(dead_code)]

use confab_chat::postgres::{EmbeddedOptions, EmbeddedPostgres};
use confab_signaling::config::Config;
pub use confab_signaling::gateway::events::Event;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::OnceCell;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

static CLUSTER: OnceCell<Option<EmbeddedPostgres>> = OnceCell::const_new();

fn test_root() -> PathBuf {
    std::env::temp_dir().join(format!("confab-test-{}", std::process::id()))
}

/// Removes clusters of earlier test processes that are gone.
fn clean_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(pid) = name
            .strip_prefix("confab-test-")
            .and_then(|p| p.parse::<u32>().ok())
        {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// A URL to a brand-new database.
pub async fn fresh_database() -> String {
    let cluster = CLUSTER
        .get_or_init(|| async {
            if std::env::var("DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
                return None;
            }
            clean_stale();
            Some(
                EmbeddedPostgres::start(EmbeddedOptions {
                    data_dir: test_root(),
                    ephemeral: true,
                    database: "postgres".into(),
                })
                .await
                .expect("private PostgreSQL for tests"),
            )
        })
        .await;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    match cluster {
        Some(pg) => {
            pg.create_database(&name).await.expect("create database");
            pg.url_for(&name)
        }
        None => {
            let base = std::env::var("DATABASE_URL").unwrap();
            let admin = confab_chat::postgres::connect(&base, 1)
                .await
                .expect("DATABASE_URL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&admin)
                .await
                .expect("create database");
            admin.close().await;
            replace_db(&base, &name)
        }
    }
}

fn replace_db(url: &str, db: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let base = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub running: Option<confab_signaling::Running>,
}

pub fn test_config() -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: test_root().join("app"),
        udp_port: 0,
        jwt_secret: Some("test-secret-test-secret-test-secret-0123".into()),
        db_pool_size: 5,
        ..Config::default()
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config();
        config.database_url = Some(fresh_database().await);
        tweak(&mut config);
        let running = confab_signaling::start(config).await.expect("app starts");
        Self {
            addr: running.addr,
            http: reqwest::Client::new(),
            running: Some(running),
        }
    }

    /// A node on an existing database whose events go to `bus` (several nodes may share one
    /// database, as in a cluster; writes must then all go through one of them, which alone
    /// mints ids until nodes lease snowflake worker ids).
    pub async fn spawn_node(
        database_url: String,
        bus: std::sync::Arc<dyn confab_signaling::bus::EventBus>,
    ) -> Self {
        let mut config = test_config();
        config.database_url = Some(database_url);
        let running = confab_signaling::start_with_bus(config, bus)
            .await
            .expect("app starts");
        Self {
            addr: running.addr,
            http: reqwest::Client::new(),
            running: Some(running),
        }
    }

    /// The database this node uses.
    pub fn database_url(&self) -> String {
        let state = &self.running.as_ref().expect("running").state;
        state
            .config
            .database_url
            .clone()
            .expect("tests set DATABASE_URL")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/api/v1{}", self.addr, path)
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, Some(token), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (u16, Value) {
        self.request(reqwest::Method::DELETE, path, Some(token), None)
            .await
    }

    /// Registers a user; returns the auth response.
    pub async fn register(&self, username: &str) -> User {
        let (status, body) = self
            .request(
                reqwest::Method::POST,
                "/auth/register",
                None,
                Some(json!({"username": username, "password": "correct horse battery"})),
            )
            .await;
        assert_eq!(status, 201, "register {username}: {body}");
        User {
            id: body["user"]["id"].as_str().unwrap().to_string(),
            token: body["token"].as_str().unwrap().to_string(),
            refresh: body["refresh_token"].as_str().unwrap().to_string(),
        }
    }

    pub async fn put(&self, path: &str, token: &str) -> (u16, Value) {
        self.request(reqwest::Method::PUT, path, Some(token), None)
            .await
    }

    pub async fn put_json(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::PUT, path, Some(token), Some(body))
            .await
    }

    /// A POST without a body (joining through an invite, typing).
    pub async fn post_empty(&self, path: &str, token: &str) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, Some(token), None)
            .await
    }

    /// Creates a server owned by `owner`, with the text and voice channel every server starts
    /// with.
    pub async fn server(&self, owner: &User, name: &str) -> Server {
        let (s, body) = self
            .post("/servers", &owner.token, json!({"name": name}))
            .await;
        assert_eq!(s, 201, "{body}");
        let id = body["id"].as_str().unwrap().to_string();
        let (_, channels) = self
            .get(&format!("/servers/{id}/channels"), &owner.token)
            .await;
        let find = |kind: &str| {
            channels
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == kind)
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        Server {
            text: find("text"),
            voice: find("voice"),
            id,
        }
    }

    /// Creates a channel of `kind` (`"text"`, `"voice"`, `"stage"`, `"category"`); returns its id.
    pub async fn channel(&self, by: &User, server_id: &str, kind: &str, name: &str) -> String {
        self.new_channel(by, server_id, json!({"name": name, "type": kind}))
            .await
    }

    /// Creates a channel of `kind` inside category `parent_id`; returns its id.
    pub async fn channel_in(
        &self,
        by: &User,
        server_id: &str,
        parent_id: &str,
        kind: &str,
        name: &str,
    ) -> String {
        self.new_channel(
            by,
            server_id,
            json!({"name": name, "type": kind, "parent_id": parent_id}),
        )
        .await
    }

    async fn new_channel(&self, by: &User, server_id: &str, body: Value) -> String {
        let (s, c) = self
            .post(&format!("/servers/{server_id}/channels"), &by.token, body)
            .await;
        assert_eq!(s, 201, "create channel: {c}");
        c["id"].as_str().unwrap().to_string()
    }

    /// Creates a role with these permission bits (new roles enter just above @everyone);
    /// returns its id.
    pub async fn role(&self, by: &User, server_id: &str, name: &str, permissions: i64) -> String {
        let (s, r) = self
            .post(
                &format!("/servers/{server_id}/roles"),
                &by.token,
                json!({"name": name, "permissions": permissions.to_string()}),
            )
            .await;
        assert_eq!(s, 201, "create role {name}: {r}");
        r["id"].as_str().unwrap().to_string()
    }

    /// `by` gives `member` the role; returns the status (204 when given).
    pub async fn try_give_role(
        &self,
        by: &User,
        server_id: &str,
        member: &User,
        role_id: &str,
    ) -> u16 {
        self.put(
            &format!("/servers/{server_id}/members/{}/roles/{role_id}", member.id),
            &by.token,
        )
        .await
        .0
    }

    /// `by` gives `member` the role.
    pub async fn give_role(&self, by: &User, server_id: &str, member: &User, role_id: &str) {
        let s = self.try_give_role(by, server_id, member, role_id).await;
        assert_eq!(s, 204, "give role {role_id} to {}", member.id);
    }

    /// `by` takes the role from `member`.
    pub async fn take_role(&self, by: &User, server_id: &str, member: &User, role_id: &str) {
        let (s, b) = self
            .delete(
                &format!("/servers/{server_id}/members/{}/roles/{role_id}", member.id),
                &by.token,
            )
            .await;
        assert_eq!(s, 204, "take role {role_id} from {}: {b}", member.id);
    }

    /// Sets the permission overwrite of `target` in `channel_id`; returns the status (200 when
    /// set).
    pub async fn try_overwrite(
        &self,
        by: &User,
        channel_id: &str,
        target: Overwrite<'_>,
        allow: i64,
        deny: i64,
    ) -> u16 {
        let (kind, id) = match target {
            Overwrite::Role(id) => ("role", id),
            Overwrite::Member(id) => ("member", id),
        };
        self.put_json(
            &format!("/channels/{channel_id}/permissions/{id}"),
            &by.token,
            json!({"type": kind, "allow": allow.to_string(), "deny": deny.to_string()}),
        )
        .await
        .0
    }

    /// Sets the permission overwrite of `target` in `channel_id`.
    pub async fn overwrite(
        &self,
        by: &User,
        channel_id: &str,
        target: Overwrite<'_>,
        allow: i64,
        deny: i64,
    ) {
        let s = self
            .try_overwrite(by, channel_id, target, allow, deny)
            .await;
        assert_eq!(s, 200, "overwrite in {channel_id}");
    }

    /// A new invite to `server_id` with the default limits; returns its code.
    pub async fn invite(&self, by: &User, server_id: &str) -> String {
        let (s, inv) = self
            .post(
                &format!("/servers/{server_id}/invites"),
                &by.token,
                json!({}),
            )
            .await;
        assert_eq!(s, 201, "{inv}");
        inv["code"].as_str().unwrap().to_string()
    }

    /// `user` joins through invite `code`: the status and the server it answers with.
    pub async fn accept_invite(&self, user: &User, code: &str) -> (u16, Value) {
        self.post_empty(&format!("/invites/{code}"), &user.token)
            .await
    }

    /// `user` joins server `server_id` through a fresh invite made by `owner`.
    pub async fn join(&self, owner: &User, user: &User, server_id: &str) {
        let code = self.invite(owner, server_id).await;
        let (s, body) = self.accept_invite(user, &code).await;
        assert_eq!(s, 200, "{body}");
    }

    /// `by` posts `content` in `channel_id`: the status and the message (or error).
    pub async fn try_message(&self, by: &User, channel_id: &str, content: &str) -> (u16, Value) {
        self.post(
            &format!("/channels/{channel_id}/messages"),
            &by.token,
            json!({"content": content}),
        )
        .await
    }

    /// `by` posts `content` in `channel_id`; returns the stored message.
    pub async fn message(&self, by: &User, channel_id: &str, content: &str) -> Value {
        let (s, m) = self.try_message(by, channel_id, content).await;
        assert_eq!(s, 201, "send {content:?}: {m}");
        m
    }

    /// Opens (or finds) the DM between `by` and `with`; returns its channel id.
    pub async fn dm(&self, by: &User, with: &User) -> String {
        let (s, dm) = self
            .post(
                "/users/@me/channels",
                &by.token,
                json!({"recipient_id": with.id}),
            )
            .await;
        assert!(s == 200 || s == 201, "open DM: {s} {dm}");
        dm["id"].as_str().unwrap().to_string()
    }

    /// The ids of the members of `server_id`, as `by` lists them.
    pub async fn member_ids(&self, by: &User, server_id: &str) -> Vec<String> {
        let (s, members) = self
            .get(&format!("/servers/{server_id}/members"), &by.token)
            .await;
        assert_eq!(s, 200, "{members}");
        members
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["user"]["id"].as_str().unwrap().to_string())
            .collect()
    }

    pub async fn gateway(&self) -> Gateway {
        let (ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{}/api/v1/gateway", self.addr))
                .await
                .expect("gateway connects");
        let mut gw = Gateway { ws, last_seq: 0 };
        let hello = gw.next().await.expect("hello");
        assert_eq!(hello["op"], 10);
        assert!(hello["d"]["heartbeat_interval"].as_u64().unwrap() >= 1000);
        gw
    }

    /// A gateway connection that has IDENTIFYed; returns it with the READY payload.
    pub async fn identified(&self, user: &User) -> (Gateway, Value) {
        let mut gw = self.gateway().await;
        gw.send(json!({"op": 2, "d": {"token": user.token}})).await;
        let ready = gw.expect(Event::Ready).await;
        (gw, ready)
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.state.shutdown.cancel();
        }
    }
}

/// A new server: its id (also its @everyone role's id) and the channels it starts with.
#[derive(Clone, Debug)]
pub struct Server {
    pub id: String,
    /// The text channel "general".
    pub text: String,
    pub voice: String,
}

/// Whom a channel permission overwrite is for (the server id names @everyone's role).
#[derive(Clone, Copy, Debug)]
pub enum Overwrite<'a> {
    Role(&'a str),
    Member(&'a str),
}

#[derive(Clone)]
pub struct User {
    pub id: String,
    pub token: String,
    pub refresh: String,
}

pub struct Gateway {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub last_seq: u64,
}

/// How a connection ended, as seen by the client.
#[derive(Debug, PartialEq)]
pub enum Closed {
    Code(u16),
    Dropped,
}

impl Gateway {
    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, m: Message) {
        let _ = self.ws.send(m).await;
    }

    /// The next JSON frame within 5 s, or None if the connection closed.
    pub async fn next(&mut self) -> Option<Value> {
        self.next_within(Duration::from_secs(5)).await
    }

    pub async fn next_within(&mut self, d: Duration) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(d, self.ws.next()).await.ok()??.ok()?;
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).expect("server frames are JSON");
                if let Some(s) = v["s"].as_u64() {
                    assert!(
                        s > self.last_seq || self.last_seq == 0 || v["t"] == Event::Ready.name(),
                        "sequence went backwards"
                    );
                    self.last_seq = s;
                }
                return Some(v);
            }
            if let Message::Close(_) = msg {
                return None;
            }
        }
    }

    /// Waits for dispatch `event`, skipping other frames; returns its `d`. Panics after 5 s,
    /// naming what arrived instead.
    pub async fn expect(&mut self, event: Event) -> Value {
        self.expect_where(event, |_| true).await
    }

    /// Waits for a dispatch `event` whose `d` satisfies `wanted`, skipping other frames;
    /// returns its `d`. Panics after 5 s, naming what arrived instead.
    pub async fn expect_where(&mut self, event: Event, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(v) = self.next_within(left).await else {
                panic!("no matching {event} within 5 s (or the connection closed); arrived instead: {skipped:?}");
            };
            if v["op"] == 0 && v["t"] == event.name() && wanted(&v["d"]) {
                return v["d"].clone();
            }
            skipped.push(describe(&v));
        }
    }

    /// Reads until nothing arrives for `quiet`; panics if a dispatch `event` arrived meanwhile.
    pub async fn expect_none(&mut self, event: Event, quiet: Duration) {
        while let Some(v) = self.next_within(quiet).await {
            assert!(
                !(v["op"] == 0 && v["t"] == event.name()),
                "unexpected {event}: {v}"
            );
        }
    }

    /// Panics if any frame arrives within `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        if let Some(v) = self.next_within(quiet).await {
            panic!("expected nothing, got {v}");
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn closed(&mut self) -> Closed {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await {
                Ok(Some(Ok(Message::Close(Some(f))))) => return Closed::Code(f.code.into()),
                Ok(Some(Ok(Message::Close(None)))) => return Closed::Dropped,
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_))) | Ok(None) => return Closed::Dropped,
                Err(_) => panic!("connection was not closed within 10 s"),
            }
        }
    }
}

/// A frame in a panic message: the dispatch name, or the opcode.
fn describe(v: &Value) -> String {
    match v["t"].as_str() {
        Some(t) => t.to_string(),
        None => format!("op {}", v["op"]),
    }
}
