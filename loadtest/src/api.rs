//! The public REST API, as the load tester uses it for setup and for posting
//! messages. One pooled `reqwest::Client` for everything.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rand::distr::{Alphanumeric, SampleString};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    /// e.g. `http://127.0.0.1:3000` (no trailing slash).
    pub base: String,
    /// Whether the server has Confab's `/metrics` (not so for Janus).
    pub has_metrics: bool,
    /// Every node of a cluster (`base` first); just `base` for one server.
    pub nodes: Vec<String>,
    /// Where the server's counters come from when not `base`: a cluster's media nodes
    /// (`--media-metrics`), summed.
    pub metrics_from: Vec<String>,
}

/// A registered user.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub token: String,
}

#[derive(Clone, Debug)]
pub struct Channel {
    pub id: String,
    pub kind: String,
}

impl Api {
    pub fn new(base: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()?;
        let base = base.trim_end_matches('/').to_string();
        Ok(Api {
            http,
            nodes: vec![base.clone()],
            base,
            has_metrics: true,
            metrics_from: Vec::new(),
        })
    }

    /// Adds the other nodes of a cluster: `node(i)` spreads clients over all of them.
    pub fn with_nodes(mut self, others: &[String]) -> Self {
        self.nodes
            .extend(others.iter().map(|u| u.trim_end_matches('/').to_string()));
        self
    }

    /// The same API through node `i` (round-robin over the cluster's nodes).
    pub fn node(&self, i: usize) -> Api {
        let mut api = self.clone();
        api.base = self.nodes[i % self.nodes.len()].clone();
        api
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{}", self.base, path)
    }

    /// `ws://host/api/v1/gateway` for the configured base URL.
    pub fn gateway_url(&self) -> String {
        let b = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.base.clone()
        };
        format!("{b}/api/v1/gateway")
    }

    /// Sends a request built by `build`, retrying on 429 (honouring
    /// `Retry-After`) and on connection errors, up to a few times.
    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Value)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match build().send().await {
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::TOO_MANY_REQUESTS && attempt < 8 {
                        let wait = resp
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<f64>().ok())
                            .unwrap_or(1.0)
                            .clamp(0.05, 30.0);
                        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
                        continue;
                    }
                    let bytes = resp.bytes().await.unwrap_or_default();
                    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    return Ok((status, v));
                }
                Err(e) if attempt < 4 => {
                    tracing::debug!("request failed ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn expect(
        &self,
        what: &str,
        ok: &[StatusCode],
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Value> {
        let (status, v) = self.send(build).await?;
        if !ok.contains(&status) {
            bail!("{what}: HTTP {status}: {v}");
        }
        Ok(v)
    }

    /// Registers a fresh user with a unique random name.
    pub async fn register(&self, index: usize) -> Result<User> {
        let mut rng = rand::rng();
        let username = format!("lt{}_{index}", Alphanumeric.sample_string(&mut rng, 10));
        let password = Alphanumeric.sample_string(&mut rng, 20);
        let url = self.url("/auth/register");
        let body = json!({"username": username, "password": password});
        let v = self
            .expect("register", &[StatusCode::CREATED, StatusCode::OK], || {
                self.http.post(&url).json(&body)
            })
            .await?;
        let token = v["token"]
            .as_str()
            .ok_or_else(|| anyhow!("register: no token in {v}"))?
            .to_string();
        let id = v["user"]["id"]
            .as_str()
            .ok_or_else(|| anyhow!("register: no user.id in {v}"))?
            .to_string();
        Ok(User { id, token })
    }

    pub async fn create_server(&self, token: &str, name: &str) -> Result<String> {
        let url = self.url("/servers");
        let body = json!({ "name": name });
        let v = self
            .expect(
                "create server",
                &[StatusCode::CREATED, StatusCode::OK],
                || self.http.post(&url).bearer_auth(token).json(&body),
            )
            .await?;
        v["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("create server: no id in {v}"))
    }

    pub async fn channels(&self, token: &str, server: &str) -> Result<Vec<Channel>> {
        let url = self.url(&format!("/servers/{server}/channels"));
        let v = self
            .expect("list channels", &[StatusCode::OK], || {
                self.http.get(&url).bearer_auth(token)
            })
            .await?;
        let list = v
            .as_array()
            .ok_or_else(|| anyhow!("list channels: not an array: {v}"))?;
        Ok(list
            .iter()
            .filter_map(|c| {
                Some(Channel {
                    id: c["id"].as_str()?.to_string(),
                    kind: c["type"].as_str()?.to_string(),
                })
            })
            .collect())
    }

    pub async fn create_channel(
        &self,
        token: &str,
        server: &str,
        name: &str,
        kind: &str,
    ) -> Result<String> {
        let url = self.url(&format!("/servers/{server}/channels"));
        let body = json!({"name": name, "type": kind});
        let v = self
            .expect(
                "create channel",
                &[StatusCode::CREATED, StatusCode::OK],
                || self.http.post(&url).bearer_auth(token).json(&body),
            )
            .await?;
        v["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("create channel: no id in {v}"))
    }

    /// Turns a channel's end-to-end encryption on or off (nobody may be connected to it).
    pub async fn set_channel_e2ee(&self, token: &str, channel: &str, on: bool) -> Result<()> {
        let url = self.url(&format!("/channels/{channel}"));
        let body = json!({ "e2ee": on });
        self.expect("set channel e2ee", &[StatusCode::OK], || {
            self.http.patch(&url).bearer_auth(token).json(&body)
        })
        .await?;
        Ok(())
    }

    /// Returns `n` channels of `kind`, creating the missing ones.
    pub async fn ensure_channels(
        &self,
        token: &str,
        server: &str,
        kind: &str,
        n: usize,
    ) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .channels(token, server)
            .await?
            .into_iter()
            .filter(|c| c.kind == kind)
            .map(|c| c.id)
            .collect();
        while ids.len() < n {
            let name = format!("lt-{kind}-{}", ids.len());
            ids.push(self.create_channel(token, server, &name, kind).await?);
        }
        ids.truncate(n);
        Ok(ids)
    }

    pub async fn create_invite(&self, token: &str, server: &str) -> Result<String> {
        let url = self.url(&format!("/servers/{server}/invites"));
        let v = self
            .expect(
                "create invite",
                &[StatusCode::CREATED, StatusCode::OK],
                || self.http.post(&url).bearer_auth(token).json(&json!({})),
            )
            .await?;
        v["code"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("create invite: no code in {v}"))
    }

    pub async fn join_invite(&self, token: &str, code: &str) -> Result<()> {
        let url = self.url(&format!("/invites/{code}"));
        self.expect(
            "join invite",
            &[StatusCode::OK, StatusCode::CREATED, StatusCode::NO_CONTENT],
            || self.http.post(&url).bearer_auth(token),
        )
        .await
        .map(|_| ())
    }

    /// Posts a message; returns the HTTP status (no retries: a 429 counts).
    pub async fn post_message(
        &self,
        token: &str,
        channel: &str,
        content: &str,
        nonce: &str,
    ) -> Result<StatusCode> {
        let url = self.url(&format!("/channels/{channel}/messages"));
        let resp = self
            .http
            .post(url)
            .bearer_auth(token)
            .json(&json!({"content": content, "nonce": nonce}))
            .send()
            .await?;
        let status = resp.status();
        // Drain the body so the connection goes back to the pool.
        let _ = resp.bytes().await;
        Ok(status)
    }

    pub async fn typing(&self, token: &str, channel: &str) -> Result<StatusCode> {
        let url = self.url(&format!("/channels/{channel}/typing"));
        let resp = self.http.post(url).bearer_auth(token).send().await?;
        let status = resp.status();
        let _ = resp.bytes().await;
        Ok(status)
    }

    /// The server's Prometheus text.
    pub async fn metrics(&self) -> Result<String> {
        self.metrics_of(&self.base).await
    }

    /// `/metrics` of the server at `base`.
    pub async fn metrics_of(&self, base: &str) -> Result<String> {
        let resp = self
            .http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .context("GET /metrics")?;
        if !resp.status().is_success() {
            bail!("GET /metrics: HTTP {}", resp.status());
        }
        Ok(resp.text().await?)
    }
}
