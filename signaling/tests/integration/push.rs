//! Web Push end to end: a local HTTP server plays the browser's push service. User B
//! subscribes with its endpoint and a key pair made here; A's DMs and mentions reach it as
//! RFC 8291 messages that B's private key decrypts, signed with a VAPID token for the push
//! service's origin. Focus (a gateway session not marked afk), do-not-disturb, a channel set
//! to "nothing" and a muted server send nothing; a 410 from the push service removes the
//! subscription.

use crate::common::{Event, TestApp, User};
use aws_lc_rs::agreement::{PrivateKey, ECDH_P256};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use confab_signaling::push::ece;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// One request the push service received.
struct Received {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

#[derive(Clone)]
struct PushService {
    tx: mpsc::UnboundedSender<Received>,
    /// The status to answer per path (default 201).
    status: Arc<Mutex<HashMap<String, u16>>>,
}

async fn receive(
    State(s): State<PushService>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let path = format!("/push/{id}");
    let status = s.status.lock().unwrap().get(&path).copied().unwrap_or(201);
    let _ = s.tx.send(Received {
        path,
        headers,
        body: body.to_vec(),
    });
    StatusCode::from_u16(status).unwrap()
}

/// A browser's side of a subscription: its key pair and auth secret.
struct Browser {
    private: Vec<u8>,
    public: Vec<u8>,
    auth: Vec<u8>,
}

impl Browser {
    fn new() -> Browser {
        loop {
            let private: [u8; 32] = rand::random();
            let Ok(key) = PrivateKey::from_private_key(&ECDH_P256, &private) else {
                continue;
            };
            let public = key.compute_public_key().unwrap().as_ref().to_vec();
            let auth: [u8; 16] = rand::random();
            return Browser {
                private: private.to_vec(),
                public,
                auth: auth.to_vec(),
            };
        }
    }

    fn subscription(&self, endpoint: &str) -> Value {
        json!({"endpoint": endpoint, "keys": {"p256dh": B64.encode(&self.public), "auth": B64.encode(&self.auth)}})
    }
}

struct Setup {
    app: TestApp,
    a: User,
    b: User,
    server_id: String,
    channel: String,
    browser: Browser,
    endpoint: String,
    origin: String,
    rx: mpsc::UnboundedReceiver<Received>,
    service: PushService,
}

async fn setup() -> Setup {
    let (tx, rx) = mpsc::unbounded_channel();
    let service = PushService {
        tx,
        status: Default::default(),
    };
    let router = axum::Router::new()
        .route("/push/{id}", post(receive))
        .with_state(service.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let app = TestApp::spawn_with(|c| {
        c.push_allow_loopback = true;
        c.rate_limit_scale = 10.0;
    })
    .await;
    let a = app.register("pusher_a").await;
    let b = app.register("pusher_b").await;
    let server = app.server(&a, "Push Town").await;
    app.join(&a, &b, &server.id).await;
    let browser = Browser::new();
    let origin = format!("http://127.0.0.1:{port}");
    let endpoint = format!("{origin}/push/b1");
    let (s, sub) = app
        .post(
            "/users/@me/push-subscriptions",
            &b.token,
            browser.subscription(&endpoint),
        )
        .await;
    assert_eq!(s, 201, "{sub}");
    assert_eq!(sub["endpoint"], endpoint.as_str());
    Setup {
        app,
        a,
        b,
        server_id: server.id,
        channel: server.text,
        browser,
        endpoint,
        origin,
        rx,
        service,
    }
}

impl Setup {
    /// The next push request, decrypted, after checking its headers and VAPID token.
    async fn next_push(&mut self) -> (Received, Value) {
        let got = tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("a push request within 10 s")
            .unwrap();
        let h = &got.headers;
        assert_eq!(h["content-encoding"], "aes128gcm");
        assert_eq!(h["content-type"], "application/octet-stream");
        let ttl: u32 = h["ttl"].to_str().unwrap().parse().unwrap();
        assert!(ttl > 0 && ttl <= 24 * 3600, "TTL {ttl}");
        assert!(h.contains_key("urgency"));
        self.check_vapid(h["authorization"].to_str().unwrap()).await;
        let plain = ece::decrypt(&self.browser.private, &self.browser.auth, &got.body)
            .expect("the body decrypts with the browser's key");
        let payload: Value = serde_json::from_slice(&plain).unwrap();
        (got, payload)
    }

    /// `vapid t=<jwt>, k=<key>`: k is the server's published key and signs t (ES256) for
    /// the push service's origin, with an expiry within 24 h and a contact.
    async fn check_vapid(&self, header: &str) {
        let rest = header.strip_prefix("vapid t=").expect("vapid scheme");
        let (jwt, k) = rest.split_once(", k=").expect("t and k");
        let (s, key) = self.app.get("/push/vapid-public-key", &self.b.token).await;
        assert_eq!(s, 200);
        assert_eq!(key["public_key"], k);
        let point = B64.decode(k).unwrap();
        let dk = jsonwebtoken::DecodingKey::from_ec_components(
            &B64.encode(&point[1..33]),
            &B64.encode(&point[33..]),
        )
        .unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_audience(&[self.origin.as_str()]);
        v.set_required_spec_claims(&["exp", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Value>(jwt, &dk, &v)
            .expect("a valid ES256 token for this audience")
            .claims;
        let exp = claims["exp"].as_i64().unwrap();
        let now = chrono::Utc::now().timestamp();
        assert!(exp > now && exp <= now + 24 * 3600);
        assert!(claims["sub"].as_str().unwrap().starts_with("mailto:"));
    }

    /// No push request arrives: checked by a DM sent after it, whose push must come next and
    /// alone.
    async fn expect_no_push_before_dm(&mut self, dm: &str) {
        let m = self.app.message(&self.a, dm, "sentinel").await;
        let (_, payload) = self.next_push().await;
        assert_eq!(
            payload["message_id"], m["id"],
            "a push that should not have been sent"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(self.rx.try_recv().is_err(), "an extra push");
    }
}

#[tokio::test]
async fn dms_and_mentions_reach_an_absent_user_encrypted_and_signed() {
    let mut t = setup().await;
    let dm = t.app.dm(&t.a, &t.b).await;

    // A DM while B has no gateway session.
    let m = t.app.message(&t.a, &dm, "hello from a").await;
    let (got, payload) = t.next_push().await;
    assert_eq!(got.path, "/push/b1");
    assert_eq!(got.headers["urgency"], "high");
    assert_eq!(payload["type"], "dm");
    assert_eq!(payload["title"], "pusher_a");
    assert_eq!(payload["body"], "hello from a");
    assert_eq!(payload["message_id"], m["id"]);
    assert_eq!(payload["channel_id"], dm.as_str());
    assert_eq!(payload["url"], format!("/channels/@me/{dm}"));

    // A mention in the server.
    let text = format!("look <@{}>", t.b.id);
    let m = t.app.message(&t.a, &t.channel, &text).await;
    let (_, payload) = t.next_push().await;
    assert_eq!(payload["type"], "mention");
    assert_eq!(payload["message_id"], m["id"]);
    assert_eq!(payload["server_id"], t.server_id.as_str());
    assert!(payload["title"].as_str().unwrap().contains("#general"));
    assert_eq!(
        payload["url"],
        format!("/channels/{}/{}", t.server_id, t.channel)
    );

    // A reply to B's message, in a server set to "mentions": a reply still notifies.
    let (s, _) = t
        .app
        .put_json(
            &format!("/users/@me/servers/{}/notification-settings", t.server_id),
            &t.b.token,
            json!({"level": "mentions"}),
        )
        .await;
    assert_eq!(s, 200);
    let mine = t.app.message(&t.b, &t.channel, "my words").await;
    let (s, reply) = t
        .app
        .post(
            &format!("/channels/{}/messages", t.channel),
            &t.a.token,
            json!({"content": "answer", "reply_to": mine["id"]}),
        )
        .await;
    assert_eq!(s, 201, "{reply}");
    let (_, payload) = t.next_push().await;
    assert_eq!(payload["type"], "reply");
    assert_eq!(payload["message_id"], reply["id"]);
    // A plain message there does not notify at "mentions".
    t.app.message(&t.a, &t.channel, "chatter").await;
    t.expect_no_push_before_dm(&dm).await;
    // A role B holds, mentioned: a mention.
    let role = t.app.role(&t.a, &t.server_id, "team", 0).await;
    t.app.give_role(&t.a, &t.server_id, &t.b, &role).await;
    let m = t
        .app
        .message(&t.a, &t.channel, &format!("hey <@&{role}>"))
        .await;
    assert_eq!(m["mention_roles"][0], role.as_str(), "{m}");
    let (_, payload) = t.next_push().await;
    assert_eq!(payload["type"], "mention");
    assert_eq!(payload["message_id"], m["id"]);
    // @everyone (the owner may use it) is a mention too, until suppressed (below).
    let m = t.app.message(&t.a, &t.channel, "@everyone hello").await;
    let (_, payload) = t.next_push().await;
    assert_eq!(payload["type"], "mention");
    assert_eq!(payload["message_id"], m["id"]);

    // B's client in front of B: nothing; marked afk: pushes again; do-not-disturb: nothing.
    let (mut gw, _) = t.app.identified(&t.b).await;
    t.app.message(&t.a, &t.channel, &text).await;
    gw.expect(Event::MessageCreate).await;
    // The worker decides when it gets to the message: give it time before the state changes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        t.rx.try_recv().is_err(),
        "pushed while B's client was focused"
    );
    gw.send(json!({"op": 3, "d": {"status": "online", "afk": true}}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m = t.app.message(&t.a, &t.channel, &text).await;
    let (_, payload) = t.next_push().await;
    assert_eq!(payload["message_id"], m["id"]);
    gw.send(json!({"op": 3, "d": {"status": "dnd", "afk": true}}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    t.app.message(&t.a, &t.channel, &text).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    gw.send(json!({"op": 3, "d": {"status": "online", "afk": true}}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    t.expect_no_push_before_dm(&dm).await;
    drop(gw);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The channel set to "nothing": a mention there sends nothing; other channels still do.
    let (s, set) = t
        .app
        .put_json(
            &format!("/users/@me/channels/{}/notification-settings", t.channel),
            &t.b.token,
            json!({"level": "nothing"}),
        )
        .await;
    assert_eq!((s, &set["level"]), (200, &json!("nothing")), "{set}");
    t.app.message(&t.a, &t.channel, &text).await;
    t.expect_no_push_before_dm(&dm).await;

    // Back to the server's level, and the server muted for an hour: nothing either.
    let (s, _) = t
        .app
        .put_json(
            &format!("/users/@me/channels/{}/notification-settings", t.channel),
            &t.b.token,
            json!({"level": null}),
        )
        .await;
    assert_eq!(s, 200);
    let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (s, _) = t
        .app
        .put_json(
            &format!("/users/@me/servers/{}/notification-settings", t.server_id),
            &t.b.token,
            json!({"level": "all", "muted_until": until}),
        )
        .await;
    assert_eq!(s, 200);
    t.app.message(&t.a, &t.channel, &text).await;
    t.expect_no_push_before_dm(&dm).await;
    // @everyone suppressed, server unmuted at "mentions": no push for @everyone.
    let (s, settings) = t
        .app
        .put_json(
            &format!("/users/@me/servers/{}/notification-settings", t.server_id),
            &t.b.token,
            json!({"level": "mentions", "suppress_everyone": true}),
        )
        .await;
    assert_eq!(s, 200, "{settings}");
    t.app.message(&t.a, &t.channel, "@everyone meeting").await;
    t.expect_no_push_before_dm(&dm).await;

    // The settings as B reads them back.
    let (s, all) = t
        .app
        .get("/users/@me/notification-settings", &t.b.token)
        .await;
    assert_eq!(s, 200);
    assert_eq!(all["servers"][0]["server_id"], t.server_id.as_str());
    assert_eq!(all["servers"][0]["level"], "mentions");
    assert_eq!(all["servers"][0]["suppress_everyone"], true);
    assert_eq!(all["channels"][0]["channel_id"], t.channel.as_str());
    assert_eq!(all["channels"][0]["level"], Value::Null);

    // The test notification.
    let (s, _) = t
        .app
        .post_empty("/users/@me/push-subscriptions/test", &t.b.token)
        .await;
    assert_eq!(s, 202);
    let (_, payload) = t.next_push().await;
    assert_eq!(payload["type"], "test");

    // The push service answers 410: the subscription is removed.
    t.service
        .status
        .lock()
        .unwrap()
        .insert("/push/b1".into(), 410);
    t.app.message(&t.a, &dm, "into the void").await;
    let _ = t.next_push().await;
    let mut left = Value::Null;
    for _ in 0..50 {
        let (s, subs) = t.app.get("/users/@me/push-subscriptions", &t.b.token).await;
        assert_eq!(s, 200);
        left = subs;
        if left.as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, json!([]), "the gone subscription is removed");
    let metrics = t.app.metrics().await;
    let count = |result: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("confab_push_sent_total{")
                    && l.contains(&format!("result=\"{result}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(count("gone") >= 1.0, "{metrics}");
    assert!(count("sent") >= 7.0, "{metrics}");
    // Nothing more is sent to it.
    t.app.message(&t.a, &dm, "anyone?").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(t.rx.try_recv().is_err());
    let _ = &t.endpoint;
}

#[tokio::test]
async fn subscriptions_are_validated_limited_and_owned() {
    let t = setup().await;
    let b = &t.b;
    let post = |body: Value| {
        let app = &t.app;
        let token = b.token.clone();
        async move {
            app.post("/users/@me/push-subscriptions", &token, body)
                .await
        }
    };
    let key = B64.encode(&t.browser.public);
    let auth = B64.encode(&t.browser.auth);
    for (endpoint, p256dh, a, field) in [
        (
            "http://push.example.com/x",
            key.as_str(),
            auth.as_str(),
            "endpoint",
        ),
        ("ftp://127.0.0.1/x", &key, &auth, "endpoint"),
        ("not a url", &key, &auth, "endpoint"),
        ("https://u:p@push.example.com/x", &key, &auth, "endpoint"),
        ("https://push.example.com/x", "AAAA", &auth, "keys.p256dh"),
        ("https://push.example.com/x", &key, "AAAA", "keys.auth"),
        ("https://push.example.com/x", &key, "%%%", "keys.auth"),
    ] {
        let (s, e) =
            post(json!({"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": a}})).await;
        assert_eq!(s, 400, "{endpoint}: {e}");
        assert!(e["errors"][field].is_array(), "{endpoint}: {e}");
    }
    let long = format!("https://push.example.com/{}", "x".repeat(2100));
    let (s, _) = post(t.browser.subscription(&long)).await;
    assert_eq!(s, 400);
    // Up to 10 per user (one exists); the same endpoint again renews, not adds.
    for i in 2..=10 {
        let (s, e) = post(
            t.browser
                .subscription(&format!("https://push.example.com/{i}")),
        )
        .await;
        assert_eq!(s, 201, "{e}");
    }
    let (s, _) = post(t.browser.subscription("https://push.example.com/10")).await;
    assert_eq!(s, 201);
    let (s, e) = post(t.browser.subscription("https://push.example.com/11")).await;
    assert_eq!(s, 400, "{e}");
    let (_, subs) = t.app.get("/users/@me/push-subscriptions", &b.token).await;
    assert_eq!(subs.as_array().unwrap().len(), 10);
    // A cannot see or remove B's.
    let id = subs[1]["id"].as_str().unwrap().to_string();
    let (_, a_subs) = t.app.get("/users/@me/push-subscriptions", &t.a.token).await;
    assert_eq!(a_subs, json!([]));
    let (s, _) = t
        .app
        .delete(&format!("/users/@me/push-subscriptions/{id}"), &t.a.token)
        .await;
    assert_eq!(s, 404);
    let (s, _) = t
        .app
        .delete(&format!("/users/@me/push-subscriptions/{id}"), &b.token)
        .await;
    assert_eq!(s, 204);
    // By endpoint.
    let (s, _) = t
        .app
        .delete(
            "/users/@me/push-subscriptions?endpoint=https%3A%2F%2Fpush.example.com%2F3",
            &b.token,
        )
        .await;
    assert_eq!(s, 204);
    let (_, subs) = t.app.get("/users/@me/push-subscriptions", &b.token).await;
    assert_eq!(subs.as_array().unwrap().len(), 8);
    // Settings only for servers the user is in, channels they can view; bad levels refused.
    let c = t.app.register("pusher_c").await;
    let (s, _) = t
        .app
        .put_json(
            &format!("/users/@me/servers/{}/notification-settings", t.server_id),
            &c.token,
            json!({"level": "all"}),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = t
        .app
        .put_json(
            &format!("/users/@me/channels/{}/notification-settings", t.channel),
            &c.token,
            json!({"level": "all"}),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = t
        .app
        .put_json(
            &format!("/users/@me/servers/{}/notification-settings", t.server_id),
            &b.token,
            json!({"level": "loud"}),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = t
        .app
        .put_json(
            &format!("/users/@me/servers/{}/notification-settings", t.server_id),
            &b.token,
            json!({"muted_until": "9999-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(s, 400);
    let _ = (&t.endpoint, &t.origin);
}
