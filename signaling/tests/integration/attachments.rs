//! Files on messages: multipart uploads (types sniffed from the bytes, metadata scrubbed,
//! limits and quotas with 413), signed downloads (inline only for safe media, ranges, tampered
//! and foreign signatures refused), permissions, thumbnails made off the request path and
//! announced with MESSAGE_UPDATE, deletion that removes the stored objects, nonces that store
//! nothing twice, and avatars. The store is a real directory (and, in `s3_store`, a real
//! S3-compatible server).

use crate::common::{Event, Overwrite, TestApp, User};
use serde_json::{json, Value};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ATTACH_FILES: i64 = 1 << 15;
pub const SECRET: &[u8] = b"GPSLatitude 48.8584N SECRET-LOCATION";

/// A PNG of `w`×`h` with a tEXt chunk holding [`SECRET`] (the CRC is not checked by decoders
/// we use, but we write a correct one anyway).
pub fn png_with_location(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut plain = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut plain), image::ImageFormat::Png)
        .unwrap();
    let mut data = b"Location\0".to_vec();
    data.extend_from_slice(SECRET);
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = b"tEXt".to_vec();
    body.extend_from_slice(&data);
    chunk.extend_from_slice(&body);
    chunk.extend_from_slice(&crc32(&body).to_be_bytes());
    let mut out = plain[..33].to_vec();
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&plain[33..]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Sends a multipart message with `files` (name, declared type, bytes).
pub async fn send_files(
    app: &TestApp,
    by: &User,
    channel: &str,
    payload: Value,
    files: Vec<(&str, &str, Vec<u8>)>,
) -> (u16, Value) {
    let mut form = reqwest::multipart::Form::new().text("payload_json", payload.to_string());
    for (i, (name, ct, bytes)) in files.into_iter().enumerate() {
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(name.to_string())
            .mime_str(ct)
            .unwrap();
        form = form.part(format!("files[{i}]"), part);
    }
    let resp = app
        .http
        .post(app.url(&format!("/channels/{channel}/messages")))
        .bearer_auth(&by.token)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// GETs a server-relative URL (a signed attachment URL) without a token.
async fn fetch(app: &TestApp, url: &str, range: Option<&str>) -> reqwest::Response {
    let mut req = app.http.get(format!("http://{}{url}", app.addr));
    if let Some(r) = range {
        req = req.header("range", r);
    }
    req.send().await.expect("download")
}

/// Regular files under `dir`, recursively.
fn stored_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(stored_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn files_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "confab-files-{tag}-{}-{}",
        std::process::id(),
        rand_suffix()
    ))
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

async fn app_with_dir(
    tag: &str,
    tweak: impl FnOnce(&mut confab_signaling::config::Config),
) -> (TestApp, PathBuf) {
    let dir = files_dir(tag);
    let d = dir.clone();
    let app = TestApp::spawn_with(move |c| {
        c.files_dir = Some(d);
        tweak(c);
    })
    .await;
    (app, dir)
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn files_are_sniffed_scrubbed_and_served_by_signed_url() {
    let (app, dir) = app_with_dir("serve", |_| {}).await;
    let owner = app.register("filer").await;
    let reader = app.register("reader").await;
    let server = app.server(&owner, "files").await;
    app.join(&owner, &reader, &server.id).await;
    let (mut gw, _) = app.identified(&reader).await;

    let png = png_with_location(640, 480);
    let svg =
        b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(document.cookie)</script></svg>"
            .to_vec();
    let (status, m) = send_files(
        &app,
        &owner,
        &server.text,
        json!({"content": "holiday", "nonce": "n-1"}),
        vec![
            ("../../etc/photo.png", "text/plain", png.clone()),
            ("drawing.svg", "image/svg+xml", svg.clone()),
            ("notes.txt", "image/png", b"just text".to_vec()),
        ],
    )
    .await;
    assert_eq!(status, 201, "{m}");
    let a = m["attachments"].as_array().unwrap();
    assert_eq!(a.len(), 3);
    assert_eq!(a[0]["filename"], "photo.png", "no path from the client");
    assert_eq!(
        a[0]["content_type"], "image/png",
        "sniffed, not the declared text/plain"
    );
    assert_eq!(
        (a[0]["width"].as_i64(), a[0]["height"].as_i64()),
        (Some(640), Some(480))
    );
    assert_eq!(
        a[1]["content_type"], "application/octet-stream",
        "SVG is never inline"
    );
    assert_eq!(
        a[2]["content_type"], "application/octet-stream",
        "declared image/png, is text"
    );

    // The other member sees the same files in the event and in history.
    let created = gw.expect(Event::MessageCreate).await;
    assert_eq!(created["attachments"].as_array().unwrap().len(), 3);
    let (_, history) = app
        .get(
            &format!("/channels/{}/messages", server.text),
            &reader.token,
        )
        .await;
    assert_eq!(history[0]["attachments"][0]["id"], a[0]["id"]);

    // The image downloads without its location, with its type, inline.
    let r = fetch(&app, a[0]["url"].as_str().unwrap(), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("inline"));
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let body = r.bytes().await.unwrap();
    assert!(!contains(&body, SECRET), "location removed");
    let decoded = image::load_from_memory(&body).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (640, 480));
    // The stored object has no location either (not only the response).
    let on_disk: Vec<Vec<u8>> = stored_files(&dir)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(on_disk.iter().any(|f| f.starts_with(b"\x89PNG")));
    assert!(on_disk.iter().all(|f| !contains(f, SECRET)));

    // SVG: a download, never a document.
    let r = fetch(&app, a[1]["url"].as_str().unwrap(), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"drawing.svg\""));
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("sandbox"));
    assert_eq!(&r.bytes().await.unwrap()[..], &svg[..]);

    // Ranges, for seeking in audio and video.
    let r = fetch(&app, a[2]["url"].as_str().unwrap(), Some("bytes=5-8")).await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 5-8/9");
    assert_eq!(&r.bytes().await.unwrap()[..], b"text");

    // A tampered signature, another file's signature, an expiry moved: not found.
    let url = a[0]["url"].as_str().unwrap();
    let tampered = format!("{}0", &url[..url.len() - 1]);
    let tampered = if tampered == url {
        format!("{}1", &url[..url.len() - 1])
    } else {
        tampered
    };
    assert_eq!(fetch(&app, &tampered, None).await.status(), 404);
    let sig = url.split("&sig=").nth(1).unwrap();
    let other = a[1]["url"]
        .as_str()
        .unwrap()
        .split("&sig=")
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        fetch(&app, &format!("{other}&sig={sig}"), None)
            .await
            .status(),
        404
    );
    let ex: i64 = url
        .split("?ex=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let moved = url.replace(&format!("ex={ex}"), &format!("ex={}", ex + 3600));
    assert_eq!(fetch(&app, &moved, None).await.status(), 404);
    let unsigned = url.split('?').next().unwrap();
    assert_eq!(
        fetch(&app, unsigned, None).await.status(),
        400,
        "no signature at all"
    );

    // The same nonce again: the first message comes back and nothing more is recorded.
    let (status, again) = send_files(
        &app,
        &owner,
        &server.text,
        json!({"content": "holiday", "nonce": "n-1"}),
        vec![("photo.png", "image/png", png.clone())],
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], m["id"]);
    let pool = app.running.as_ref().unwrap().state.chat.pool().clone();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM attachments")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 3);
}

#[tokio::test]
async fn thumbnails_arrive_with_a_message_update_and_deleted_messages_lose_their_files() {
    let (app, dir) = app_with_dir("thumbs", |_| {}).await;
    let owner = app.register("photographer").await;
    let server = app.server(&owner, "photos").await;
    let (mut gw, _) = app.identified(&owner).await;
    let (status, m) = send_files(
        &app,
        &owner,
        &server.text,
        json!({}),
        vec![("wide.png", "image/png", png_with_location(1600, 400))],
    )
    .await;
    assert_eq!(status, 201, "{m}");
    assert!(
        m["attachments"][0]["thumbnail_url"].is_null(),
        "made off the request path"
    );
    assert_eq!(m["content"], "", "files alone make a message");
    let updated = gw
        .expect_where(Event::MessageUpdate, |v| {
            !v["attachments"][0]["thumbnail_url"].is_null()
        })
        .await;
    let thumb_url = updated["attachments"][0]["thumbnail_url"]
        .as_str()
        .unwrap()
        .to_string();
    let r = fetch(&app, &thumb_url, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let thumb = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        (thumb.width(), thumb.height()),
        (800, 200),
        "fits 800×800, keeps 4:1"
    );
    assert_eq!(stored_files(&dir).len(), 2, "original and thumbnail");

    // Deleting the message makes both unreachable and removes them from the store.
    let url = updated["attachments"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let id = m["id"].as_str().unwrap();
    let (s, _) = app
        .delete(
            &format!("/channels/{}/messages/{id}", server.text),
            &owner.token,
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(fetch(&app, &url, None).await.status(), 404);
    assert_eq!(fetch(&app, &thumb_url, None).await.status(), 404);
    wait_until("the sweeper removed the objects", || {
        let dir = dir.clone();
        async move { stored_files(&dir).is_empty() }
    })
    .await;
}

#[tokio::test]
async fn who_may_attach_is_checked_before_a_byte_is_stored() {
    let (app, dir) = app_with_dir("perm", |_| {}).await;
    let owner = app.register("owner-att").await;
    let member = app.register("member-att").await;
    let outsider = app.register("outsider-att").await;
    let server = app.server(&owner, "rules").await;
    app.join(&owner, &member, &server.id).await;
    app.overwrite(
        &owner,
        &server.text,
        Overwrite::Role(&server.id),
        0,
        ATTACH_FILES,
    )
    .await;
    let file = || vec![("a.png", "image/png", png_with_location(8, 8))];
    let (s, body) = send_files(&app, &member, &server.text, json!({"content": "x"}), file()).await;
    assert_eq!(s, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("attach"));
    let (s, _) = send_files(
        &app,
        &outsider,
        &server.text,
        json!({"content": "x"}),
        file(),
    )
    .await;
    assert_eq!(s, 404, "not a member: the channel does not exist for them");
    // The owner may; the member may still send text.
    let (s, _) = send_files(&app, &owner, &server.text, json!({}), file()).await;
    assert_eq!(s, 201);
    let (s, _) = app
        .try_message(&member, &server.text, "words are fine")
        .await;
    assert_eq!(s, 201);
    // (Its thumbnail may be there too.)
    let originals = stored_files(&dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("attachments"))
        .count();
    assert_eq!(originals, 1, "only the owner's file was stored");
}

#[tokio::test]
async fn limits_and_quotas_answer_413_and_keep_nothing() {
    let (app, dir) = app_with_dir("limits", |c| {
        c.max_upload_bytes = 1024 * 1024;
        c.user_storage_quota = 3 * 1024 * 1024 / 2;
    })
    .await;
    let owner = app.register("big-sender").await;
    let server = app.server(&owner, "limits").await;
    let big = vec![7u8; 2 * 1024 * 1024];
    let (s, body) = send_files(
        &app,
        &owner,
        &server.text,
        json!({}),
        vec![("big.bin", "application/octet-stream", big)],
    )
    .await;
    assert_eq!(s, 413, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("1 MiB"),
        "{body}"
    );

    let ok = vec![1u8; 900 * 1024];
    let (s, _) = send_files(
        &app,
        &owner,
        &server.text,
        json!({}),
        vec![("a.bin", "application/octet-stream", ok.clone())],
    )
    .await;
    assert_eq!(s, 201);
    let (s, body) = send_files(
        &app,
        &owner,
        &server.text,
        json!({}),
        vec![("b.bin", "application/octet-stream", ok)],
    )
    .await;
    assert_eq!(s, 413, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("quota"),
        "{body}"
    );

    // Eleven files in one message.
    let many = (0..11)
        .map(|_| ("x.txt", "text/plain", b"x".to_vec()))
        .collect();
    let (s, body) = send_files(&app, &owner, &server.text, json!({}), many).await;
    assert_eq!(s, 400, "{body}");
    assert!(body["errors"]["files"].is_array(), "{body}");

    // A JPEG that ends inside its header is refused.
    let (s, body) = send_files(
        &app,
        &owner,
        &server.text,
        json!({}),
        vec![(
            "cut.jpg",
            "image/jpeg",
            b"\xFF\xD8\xFF\xE1\x10\x00Exif\0\0MM\0*".to_vec(),
        )],
    )
    .await;
    assert_eq!(s, 400, "{body}");

    // Nothing of the refused uploads stays in the store.
    wait_until("refused uploads are gone", || {
        let dir = dir.clone();
        async move { stored_files(&dir).len() == 1 }
    })
    .await;
    // A message without content and without files is still refused.
    let (s, _) = send_files(&app, &owner, &server.text, json!({}), vec![]).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn avatars_are_squared_served_and_replaced() {
    let (app, dir) = app_with_dir("avatars", |_| {}).await;
    let me = app.register("portrait").await;
    let put = |bytes: Vec<u8>, query: &'static str| {
        app.http
            .put(app.url(&format!("/users/@me/avatar{query}")))
            .bearer_auth(&me.token)
            .header("content-type", "image/png")
            .body(bytes)
            .send()
    };
    let r = put(png_with_location(600, 300), "").await.unwrap();
    assert_eq!(r.status(), 200);
    let user: Value = r.json().await.unwrap();
    let url = user["avatar_url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&format!("/api/v1/avatars/{}/", me.id)),
        "{url}"
    );
    let r = fetch(&app, &url, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    let body = r.bytes().await.unwrap();
    assert!(!contains(&body, SECRET));
    let img = image::load_from_memory(&body).unwrap();
    assert_eq!((img.width(), img.height()), (256, 256));
    // Others see it on the user.
    let (_, got) = app.get("/users/@me", &me.token).await;
    assert_eq!(got["avatar_url"], url.as_str());

    // Not an image; a half-given crop.
    let r = put(b"<svg/>".to_vec(), "").await.unwrap();
    assert_eq!(r.status(), 400);
    let r = put(png_with_location(50, 50), "?x=1").await.unwrap();
    assert_eq!(r.status(), 400);

    // Replacing it removes the old file.
    let r = put(png_with_location(100, 100), "?x=0&y=0&size=50")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let user: Value = r.json().await.unwrap();
    assert_ne!(user["avatar_url"], url.as_str());
    assert_eq!(fetch(&app, &url, None).await.status(), 404);
    wait_until("the old avatar is deleted", || {
        let dir = dir.clone();
        async move { stored_files(&dir).len() == 1 }
    })
    .await;
    let (s, user) = app.delete("/users/@me/avatar", &me.token).await;
    assert_eq!(s, 200);
    assert!(user["avatar_url"].is_null());
}

/// An S3-compatible server (`s3s-fs`, installed by `scripts/install-deps.sh --test`) on a free
/// port, storing under a fresh directory; killed on drop.
struct S3Server {
    child: std::process::Child,
    root: PathBuf,
    port: u16,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

async fn s3_server() -> S3Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let root = files_dir("s3");
    std::fs::create_dir_all(root.join("confab")).unwrap();
    let child = std::process::Command::new("s3s-fs")
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--access-key",
            "confab-test",
            "--secret-key",
            "confab-test-secret",
        ])
        .arg(&root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("s3s-fs (an S3-compatible server; scripts/install-deps.sh --test installs it)");
    // Owned at once, so the process is killed and reaped however the test ends.
    let server = S3Server { child, root, port };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("s3s-fs did not start");
}

#[tokio::test]
async fn an_s3_bucket_stores_serves_and_deletes_files() {
    let s3 = s3_server().await;
    let endpoint = format!("http://127.0.0.1:{}", s3.port);
    let app = TestApp::spawn_with(|c| {
        c.s3 = Some(confab_files::store::S3Config {
            bucket: "confab".into(),
            endpoint: Some(endpoint),
            region: Some("us-east-1".into()),
            access_key_id: Some("confab-test".into()),
            secret_access_key: Some("confab-test-secret".into()),
        });
    })
    .await;
    let owner = app.register("s3-user").await;
    let server = app.server(&owner, "bucket").await;
    let (mut gw, _) = app.identified(&owner).await;
    // 12 MiB: three parts of a multipart upload.
    let big: Vec<u8> = (0..12 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (status, m) = send_files(
        &app,
        &owner,
        &server.text,
        json!({"content": "to the bucket"}),
        vec![
            ("big.bin", "application/octet-stream", big.clone()),
            ("pic.png", "image/png", png_with_location(1200, 900)),
        ],
    )
    .await;
    assert_eq!(status, 201, "{m}");
    let r = fetch(&app, m["attachments"][0]["url"].as_str().unwrap(), None).await;
    assert_eq!(r.status(), 200);
    let got = r.bytes().await.unwrap();
    assert_eq!(got.len(), big.len());
    assert!(
        got[..] == big[..],
        "the bytes come back from the bucket unchanged"
    );
    let r = fetch(
        &app,
        m["attachments"][0]["url"].as_str().unwrap(),
        Some("bytes=-10"),
    )
    .await;
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().await.unwrap()[..], &big[big.len() - 10..]);
    // The objects are in the bucket's directory, under random keys.
    let bucket = s3.root.join("confab");
    let objects: Vec<PathBuf> = stored_files(&bucket)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("attachments"))
        .collect();
    assert_eq!(objects.len(), 2, "{objects:?}");
    assert!(objects
        .iter()
        .any(|p| std::fs::metadata(p).unwrap().len() == big.len() as u64));
    // The thumbnail is made from the bucket and stored in it.
    let updated = gw
        .expect_where(Event::MessageUpdate, |v| {
            !v["attachments"][1]["thumbnail_url"].is_null()
        })
        .await;
    let r = fetch(
        &app,
        updated["attachments"][1]["thumbnail_url"].as_str().unwrap(),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let thumb = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (800, 600));
    // Deleting the message empties the bucket.
    let id = m["id"].as_str().unwrap();
    let (s, _) = app
        .delete(
            &format!("/channels/{}/messages/{id}", server.text),
            &owner.token,
        )
        .await;
    assert_eq!(s, 204);
    wait_until("the bucket is empty", || {
        let bucket = bucket.clone();
        async move {
            stored_files(&bucket).iter().all(|p| {
                !p.to_string_lossy().contains("attachments")
                    && !p.to_string_lossy().contains("thumbnails")
            })
        }
    })
    .await;
}

#[tokio::test]
async fn server_icons_are_set_by_managers_and_reach_members() {
    let (app, dir) = app_with_dir("icons", |_| {}).await;
    let owner = app.register("icon-owner").await;
    let member = app.register("icon-member").await;
    let server = app.server(&owner, "iconic").await;
    app.join(&owner, &member, &server.id).await;
    let (mut gw, _) = app.identified(&member).await;
    let put = |who: &User, bytes: Vec<u8>| {
        app.http
            .put(app.url(&format!("/servers/{}/icon", server.id)))
            .bearer_auth(&who.token)
            .header("content-type", "image/png")
            .body(bytes)
            .send()
    };
    assert_eq!(
        put(&member, png_with_location(64, 64))
            .await
            .unwrap()
            .status(),
        403
    );
    assert!(
        stored_files(&dir).is_empty(),
        "nothing stored for a refused icon"
    );
    let r = put(&owner, png_with_location(600, 400)).await.unwrap();
    assert_eq!(r.status(), 200);
    let s: Value = r.json().await.unwrap();
    let url = s["icon_url"].as_str().unwrap().to_string();
    let update = gw.expect(Event::ServerUpdate).await;
    assert_eq!(update["icon_url"], url.as_str());
    let r = fetch(&app, &url, None).await;
    assert_eq!(r.status(), 200);
    let img = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (256, 256));
    let (_, got) = app
        .get(&format!("/servers/{}", server.id), &member.token)
        .await;
    assert_eq!(got["icon_url"], url.as_str());
    let (s, body) = app
        .delete(&format!("/servers/{}/icon", server.id), &owner.token)
        .await;
    assert_eq!(s, 200);
    assert!(body["icon_url"].is_null());
    assert_eq!(fetch(&app, &url, None).await.status(), 404);
    wait_until("the icon's file is deleted", || {
        let dir = dir.clone();
        async move { stored_files(&dir).is_empty() }
    })
    .await;
}
