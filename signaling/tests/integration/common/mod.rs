//! Test harness: each test gets the app on port 0 against a fresh database. The database
//! server is `DATABASE_URL` when set, else one private PostgreSQL cluster per test process,
//! provisioned exactly as `confab` does it.
#![allow(dead_code)]

use confab_chat::postgres::{EmbeddedOptions, EmbeddedPostgres};
use confab_signaling::config::Config;
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

    /// Creates a server owned by `owner`; returns (server id, text channel id, voice channel id).
    pub async fn server(&self, owner: &User, name: &str) -> (String, String, String) {
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
        (id.clone(), find("text"), find("voice"))
    }

    /// `user` joins server `server_id` through a fresh invite made by `owner`.
    pub async fn join(&self, owner: &User, user: &User, server_id: &str) {
        let (s, inv) = self
            .post(
                &format!("/servers/{server_id}/invites"),
                &owner.token,
                json!({}),
            )
            .await;
        assert_eq!(s, 201, "{inv}");
        let code = inv["code"].as_str().unwrap();
        let (s, body) = self
            .request(
                reqwest::Method::POST,
                &format!("/invites/{code}"),
                Some(&user.token),
                None,
            )
            .await;
        assert_eq!(s, 200, "{body}");
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
        let ready = gw.dispatch("READY").await;
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
                        s > self.last_seq || self.last_seq == 0 || v["t"] == "READY",
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

    /// Waits for dispatch `t`, skipping others; panics after 5 s.
    pub async fn dispatch(&mut self, t: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self
                .next_within(left)
                .await
                .unwrap_or_else(|| panic!("no {t} dispatch"));
            if v["op"] == 0 && v["t"] == t {
                return v["d"].clone();
            }
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
