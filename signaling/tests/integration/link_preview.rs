//! Link previews end to end: a message with a link to a local test site (allowlisted with the
//! test-only `link_preview_allow_cidrs`) gets its embed by MESSAGE_UPDATE, with the image
//! served by Confab; `<url>` gets none; the author (only) removes previews; the cache serves a
//! second message without fetching again; edits drop and add previews; an address outside the
//! allowlist is never contacted.

use crate::common::{Event, TestApp};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A 3×2 PNG (valid: the worker reads its size from the header).
fn png() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    v.extend_from_slice(&3u32.to_be_bytes());
    v.extend_from_slice(&2u32.to_be_bytes());
    v.extend_from_slice(&[8, 2, 0, 0, 0, 0x12, 0x16, 0xf1, 0x4d]);
    v
}

/// A local web site that counts the requests each path gets.
#[derive(Clone, Default)]
struct Site {
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Site {
    async fn start(ip: &str) -> (Site, SocketAddr) {
        let site = Site::default();
        let app = axum::Router::new()
            .route("/page", get(page))
            .route("/other", get(page))
            .route("/bare", get(bare))
            .route("/card.png", get(card))
            .fallback(|State(s): State<Site>, uri: axum::http::Uri| async move {
                s.hit(uri.path());
                StatusCode::NOT_FOUND
            })
            .with_state(site.clone());
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (site, addr)
    }

    fn hit(&self, path: &str) {
        *self
            .hits
            .lock()
            .unwrap()
            .entry(path.to_owned())
            .or_default() += 1;
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

async fn page(State(s): State<Site>, uri: axum::http::Uri) -> impl IntoResponse {
    s.hit(uri.path());
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            r#"<!doctype html><html><head><title>fallback</title>
            <meta property="og:title" content="Preview of {path}">
            <meta property="og:description" content="A page on the local test site.">
            <meta property="og:site_name" content="Test Site">
            <meta property="og:image" content="/card.png">
            </head><body>hello</body></html>"#,
            path = uri.path()
        ),
    )
}

async fn bare(State(s): State<Site>) -> impl IntoResponse {
    s.hit("/bare");
    (
        [(header::CONTENT_TYPE, "text/html")],
        "<title>Only a title</title>",
    )
}

async fn card(State(s): State<Site>) -> impl IntoResponse {
    s.hit("/card.png");
    // The header says text: the bytes decide.
    ([(header::CONTENT_TYPE, "text/plain")], png())
}

fn embeds(m: &Value) -> &Vec<Value> {
    m["embeds"].as_array().expect("embeds is an array")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_get_previews_with_images_from_the_cache_and_authors_remove_them() {
    let (site, addr) = Site::start("127.0.0.1").await;
    let app = TestApp::spawn_with(|c| {
        c.link_preview_allow_cidrs = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let owner = app.register("lp_owner").await;
    let member = app.register("lp_member").await;
    let s = app.server(&owner, "Previews").await;
    app.join(&owner, &member, &s.id).await;
    let (mut gw, _) = app.identified(&member).await;

    // A link: the message is stored without embeds, then MESSAGE_UPDATE brings them.
    let url = format!("http://{addr}/page");
    let m = app
        .message(&owner, &s.text, &format!("look at {url} please"))
        .await;
    assert_eq!(embeds(&m).len(), 0, "{m}");
    assert_eq!(m["flags"], 0);
    let id = m["id"].as_str().unwrap().to_owned();
    gw.expect(Event::MessageCreate).await;
    let up = gw
        .expect_where(Event::MessageUpdate, |d| d["id"] == id.as_str())
        .await;
    let e = &embeds(&up)[0];
    assert_eq!(e["type"], "link");
    assert_eq!(e["url"], url.as_str());
    assert_eq!(e["title"], "Preview of /page");
    assert_eq!(e["description"], "A page on the local test site.");
    assert_eq!(e["site_name"], "Test Site");
    assert_eq!(
        (e["image"]["width"].as_u64(), e["image"]["height"].as_u64()),
        (Some(3), Some(2))
    );
    let image_path = e["image"]["url"].as_str().unwrap().to_owned();
    assert!(
        image_path.starts_with("/api/v1/link-previews/images/"),
        "{image_path}"
    );
    assert!(
        !image_path.contains("127.0.0.1"),
        "never the third-party URL"
    );

    // The image is served by Confab, as fetched, with its sniffed type.
    let resp = app
        .http
        .get(format!("http://{}{image_path}", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), png());
    let (st, _) = app
        .get("/link-previews/images/not-a-key", &owner.token)
        .await;
    assert_eq!(st, 404);
    let (st, _) = app
        .get(
            "/link-previews/images/00000000000040008000000000000000",
            &owner.token,
        )
        .await;
    assert_eq!(st, 404);

    // History carries the embed.
    let (st, history) = app
        .get(&format!("/channels/{}/messages", s.text), &member.token)
        .await;
    assert_eq!(st, 200);
    let stored = history
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == id.as_str())
        .unwrap();
    assert_eq!(embeds(stored), embeds(&up));
    assert_eq!((site.hits("/page"), site.hits("/card.png")), (1, 1));

    // A second message with the same link: from the cache, the site is not asked again.
    let m2 = app.message(&owner, &s.text, &url).await;
    let id2 = m2["id"].as_str().unwrap().to_owned();
    let up2 = gw
        .expect_where(Event::MessageUpdate, |d| d["id"] == id2.as_str())
        .await;
    assert_eq!(embeds(&up2), embeds(&up));
    assert_eq!((site.hits("/page"), site.hits("/card.png")), (1, 1));

    // `<url>`: a link, no preview, nothing fetched.
    let other = format!("http://{addr}/other");
    let m3 = app
        .message(&owner, &s.text, &format!("quiet <{other}>"))
        .await;
    let id3 = m3["id"].as_str().unwrap().to_owned();
    let m4 = app.message(&owner, &s.text, "a marker after it").await;
    gw.expect_where(Event::MessageCreate, |d| d["id"] == m4["id"])
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, got3) = app
        .get(
            &format!("/channels/{}/messages/{id3}", s.text),
            &owner.token,
        )
        .await;
    assert_eq!(embeds(&got3).len(), 0);
    assert_eq!(site.hits("/other"), 0);

    // Only the author removes a preview.
    let path = format!("/channels/{}/messages/{id}", s.text);
    let (st, body) = app.patch(&path, &member.token, json!({"flags": 4})).await;
    assert_eq!(st, 403, "{body}");
    let (st, body) = app.patch(&path, &owner.token, json!({"flags": 1})).await;
    assert_eq!(st, 400, "only SUPPRESS_EMBEDS: {body}");
    let (st, body) = app.patch(&path, &owner.token, json!({})).await;
    assert_eq!(st, 400, "{body}");
    let (st, body) = app.patch(&path, &owner.token, json!({"flags": 4})).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(embeds(&body).len(), 0);
    assert_eq!(body["flags"], 4);
    let up = gw
        .expect_where(Event::MessageUpdate, |d| d["id"] == id.as_str())
        .await;
    assert_eq!((embeds(&up).len(), up["flags"].as_i64()), (0, Some(4)));
    // Suppressed stays suppressed through an edit.
    let (st, body) = app
        .patch(
            &path,
            &owner.token,
            json!({"content": format!("edited {url}")}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    gw.expect_where(Event::MessageUpdate, |d| d["id"] == id.as_str())
        .await;
    gw.expect_none(Event::MessageUpdate, Duration::from_millis(800))
        .await;
    let (_, got) = app.get(&path, &owner.token).await;
    assert_eq!((embeds(&got).len(), got["flags"].as_i64()), (0, Some(4)));
    // Clearing the flag brings the preview back (from the cache).
    let (st, _) = app.patch(&path, &owner.token, json!({"flags": 0})).await;
    assert_eq!(st, 200);
    let up = gw
        .expect_where(Event::MessageUpdate, |d| {
            d["id"] == id.as_str() && !d["embeds"].as_array().unwrap().is_empty()
        })
        .await;
    assert_eq!(embeds(&up)[0]["title"], "Preview of /page");

    // An edit re-evaluates: the link gone, the embed goes in the edit's own update; a new
    // link gets its preview.
    let path2 = format!("/channels/{}/messages/{id2}", s.text);
    let (st, body) = app
        .patch(&path2, &owner.token, json!({"content": "no link now"}))
        .await;
    assert_eq!(st, 200);
    assert_eq!(embeds(&body).len(), 0, "{body}");
    let (st, _) = app
        .patch(
            &path2,
            &owner.token,
            json!({"content": format!("now {other}")}),
        )
        .await;
    assert_eq!(st, 200);
    let up = gw
        .expect_where(Event::MessageUpdate, |d| {
            d["id"] == id2.as_str() && !d["embeds"].as_array().unwrap().is_empty()
        })
        .await;
    assert_eq!(embeds(&up)[0]["title"], "Preview of /other");
    assert_eq!(site.hits("/other"), 1);
    // The image URL is one per link: /other's card is the same bytes under another key.
    assert_ne!(
        embeds(&up)[0]["image"]["url"].as_str(),
        Some(image_path.as_str())
    );

    // A page with only a title: an embed without description or image.
    let m5 = app
        .message(&owner, &s.text, &format!("http://{addr}/bare"))
        .await;
    let up = gw
        .expect_where(Event::MessageUpdate, |d| d["id"] == m5["id"])
        .await;
    let e = &embeds(&up)[0];
    assert_eq!(e["title"], "Only a title");
    assert!(
        e.get("image").is_none() && e.get("description").is_none(),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_outside_the_allowlist_are_never_fetched() {
    // 127.0.0.2 is loopback too, but not in the allowlist: the SSRF rules apply to it.
    let (victim, vaddr) = Site::start("127.0.0.2").await;
    let (site, addr) = Site::start("127.0.0.1").await;
    let app = TestApp::spawn_with(|c| {
        c.link_preview_allow_cidrs = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let owner = app.register("lp_ssrf").await;
    let s = app.server(&owner, "SSRF").await;
    let (mut gw, _) = app.identified(&owner).await;
    for content in [
        format!("http://{vaddr}/page"),
        format!("http://localhost:{}/page", vaddr.port()),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::1]/page".to_owned(),
    ] {
        let m = app.message(&owner, &s.text, &content).await;
        gw.expect_where(Event::MessageCreate, |d| d["id"] == m["id"])
            .await;
    }
    // A good link after them: once its preview is in, the worker has passed the others.
    let m = app
        .message(&owner, &s.text, &format!("http://{addr}/page"))
        .await;
    let up = gw
        .expect_where(Event::MessageUpdate, |d| d["id"] == m["id"])
        .await;
    assert_eq!(embeds(&up).len(), 1);
    gw.expect_none(Event::MessageUpdate, Duration::from_millis(500))
        .await;
    assert_eq!(victim.hits("/page"), 0, "the refused address was contacted");
    assert_eq!(site.hits("/page"), 1);
    let metrics = app.metrics().await;
    let refused = metrics
        .lines()
        .find(|l| {
            l.starts_with("confab_link_preview_fetches_total") && l.contains("result=\"refused\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    // 127.0.0.2, 169.254.169.254 and ::1 are refused for certain; `localhost` too when the
    // machine's resolver also answers ::1 (with 127.0.0.1 alone it is allowlisted, and the
    // connection to an empty port fails).
    assert!(
        refused >= 3.0,
        "refused fetches counted: {refused}\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_can_be_turned_off() {
    let (site, addr) = Site::start("127.0.0.1").await;
    let app = TestApp::spawn_with(|c| {
        c.link_previews = false;
        c.link_preview_allow_cidrs = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let owner = app.register("lp_off").await;
    let s = app.server(&owner, "Off").await;
    let (mut gw, _) = app.identified(&owner).await;
    app.message(&owner, &s.text, &format!("http://{addr}/page"))
        .await;
    gw.expect(Event::MessageCreate).await;
    gw.expect_none(Event::MessageUpdate, Duration::from_millis(1000))
        .await;
    assert_eq!(site.hits("/page"), 0);
}
