//! Custom emoji and stickers over HTTP and the gateway: uploads (still, animated, foreign,
//! broken, too large, duplicate names, without MANAGE_EXPRESSIONS), the served images, edits
//! and deletes with SERVER_EMOJIS_UPDATE / SERVER_STICKERS_UPDATE, custom reactions (the
//! server's own emoji only, role restrictions), messages with a sticker and the uploads' rate limit.

use crate::common::{Event, TestApp, User};
use serde_json::{json, Value};
use std::io::Cursor;

const MANAGE_EXPRESSIONS: i64 = 1 << 30;

/// A PNG of `w`×`h` with a gradient (so it does not compress to nothing).
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(w, h, |x, y| {
        image::Rgba([(x * 7 % 256) as u8, (y * 13 % 256) as u8, 90, 255])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// An animated GIF of three 48×48 frames.
pub fn animated_gif() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut out);
        for i in 0..3u8 {
            let frame = image::RgbaImage::from_pixel(48, 48, image::Rgba([i * 80, 40, 200, 255]));
            enc.encode_frame(image::Frame::new(frame)).unwrap();
        }
    }
    out
}

async fn upload(
    app: &TestApp,
    by: &User,
    sid: &str,
    kind: &str,
    query: &str,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let resp = app
        .http
        .post(app.url(&format!("/servers/{sid}/{kind}?{query}")))
        .bearer_auth(&by.token)
        .header("content-type", "image/png")
        .body(bytes)
        .send()
        .await
        .expect("upload");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emoji_are_uploaded_checked_served_edited_and_deleted() {
    let app = TestApp::spawn().await;
    let owner = app.register("em_owner").await;
    let member = app.register("em_member").await;
    let stranger = app.register("em_stranger").await;
    let s = app.server(&owner, "Emoji").await;
    app.join(&owner, &member, &s.id).await;
    let (mut g, _) = app.identified(&member).await;

    // A large still image is scaled to fit 128×128 and stored as PNG.
    let (st, wave) = upload(&app, &owner, &s.id, "emojis", "name=wave", png(400, 200)).await;
    assert_eq!(st, 201, "{wave}");
    assert_eq!(wave["name"], "wave");
    assert_eq!(wave["animated"], false);
    assert_eq!(wave["roles"], json!([]));
    let wave_id = id(&wave);
    assert_eq!(wave["url"], format!("/api/v1/emojis/{wave_id}"));
    // The other member hears of it, with the whole list.
    let ev = g.expect(Event::ServerEmojisUpdate).await;
    assert_eq!(ev["server_id"], s.id.as_str());
    assert_eq!(ev["emojis"][0]["id"], wave_id.as_str());

    // The image is served without a token, cached, and really is 128×64.
    let resp = app
        .http
        .get(app.url(&format!("/emojis/{wave_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert!(resp.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let img = image::load_from_memory(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (128, 64));

    // An animated GIF is kept as uploaded.
    let gif = animated_gif();
    let (st, party) = upload(&app, &owner, &s.id, "emojis", "name=party_gif", gif.clone()).await;
    assert_eq!(st, 201, "{party}");
    assert_eq!(party["animated"], true);
    let resp = app
        .http
        .get(app.url(&format!("/emojis/{}", id(&party))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "image/gif");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), gif);

    // Refused: foreign bytes, a broken PNG, too large, a duplicate name, a bad name.
    let (st, e) = upload(
        &app,
        &owner,
        &s.id,
        "emojis",
        "name=fake",
        b"<svg/>".to_vec(),
    )
    .await;
    assert_eq!(st, 400, "{e}");
    assert!(e["errors"]["image"].is_array(), "{e}");
    let mut broken = png(64, 64);
    broken.truncate(100);
    let (st, e) = upload(&app, &owner, &s.id, "emojis", "name=broken", broken).await;
    assert_eq!(st, 400, "{e}");
    let mut huge = png(16, 16);
    huge.resize(300 * 1024, 0);
    let (st, e) = upload(&app, &owner, &s.id, "emojis", "name=huge", huge).await;
    assert_eq!(st, 413, "{e}");
    let (st, e) = upload(&app, &owner, &s.id, "emojis", "name=wave", png(32, 32)).await;
    assert_eq!(st, 400, "{e}");
    assert!(e["errors"]["name"].is_array(), "{e}");
    let (st, _) = upload(&app, &owner, &s.id, "emojis", "name=no-dash", png(32, 32)).await;
    assert_eq!(st, 400);

    // MANAGE_EXPRESSIONS is needed; strangers learn nothing.
    let (st, _) = upload(&app, &member, &s.id, "emojis", "name=mine", png(32, 32)).await;
    assert_eq!(st, 403);
    let (st, _) = upload(&app, &stranger, &s.id, "emojis", "name=mine", png(32, 32)).await;
    assert_eq!(st, 404);
    let (st, _) = app
        .get(&format!("/servers/{}/emojis", s.id), &stranger.token)
        .await;
    assert_eq!(st, 404);
    let role = app
        .role(&owner, &s.id, "Curators", MANAGE_EXPRESSIONS)
        .await;
    app.give_role(&owner, &s.id, &member, &role).await;
    let (st, mine) = upload(&app, &member, &s.id, "emojis", "name=mine", png(32, 32)).await;
    assert_eq!(st, 201, "{mine}");

    let (st, list) = app
        .get(&format!("/servers/{}/emojis", s.id), &member.token)
        .await;
    assert_eq!(st, 200);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["wave", "party_gif", "mine"]);

    // Rename and restrict; a taken name is refused.
    let path = format!("/servers/{}/emojis/{wave_id}", s.id);
    let (st, e) = app
        .patch(&path, &owner.token, json!({"name": "mine"}))
        .await;
    assert_eq!(st, 400, "{e}");
    let (st, e) = app
        .patch(
            &path,
            &owner.token,
            json!({"name": "hello", "roles": [role]}),
        )
        .await;
    assert_eq!(st, 200, "{e}");
    assert_eq!(e["name"], "hello");
    assert_eq!(e["roles"], json!([role]));
    let ev = g
        .expect_where(Event::ServerEmojisUpdate, |d| {
            d["emojis"][0]["name"] == "hello"
        })
        .await;
    assert_eq!(ev["emojis"][0]["roles"], json!([role]));
    // Roles of another server are refused.
    let other = app.server(&owner, "Elsewhere").await;
    let foreign_role = app.role(&owner, &other.id, "x", 0).await;
    let (st, _) = app
        .patch(&path, &owner.token, json!({"roles": [foreign_role]}))
        .await;
    assert_eq!(st, 400);

    // READY carries the server's emoji.
    let (_g2, ready) = app.identified(&member).await;
    let server = ready["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == s.id.as_str())
        .unwrap();
    assert_eq!(server["emojis"].as_array().unwrap().len(), 3);

    // Delete: gone from the list, the image answers 404, the audit log tells.
    assert_eq!(app.delete(&path, &owner.token).await.0, 204);
    let ev = g
        .expect_where(Event::ServerEmojisUpdate, |d| {
            d["emojis"].as_array().unwrap().len() == 2
        })
        .await;
    assert!(ev["emojis"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["id"] != wave_id.as_str()));
    let resp = app
        .http
        .get(app.url(&format!("/emojis/{wave_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(app.delete(&path, &owner.token).await.0, 404);
    let (_, log) = app
        .get(
            &format!("/servers/{}/audit-log?limit=100", s.id),
            &owner.token,
        )
        .await;
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in ["emoji_create", "emoji_update", "emoji_delete"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_emoji_react_within_their_server_and_their_roles() {
    let app = TestApp::spawn().await;
    let owner = app.register("er_owner").await;
    let member = app.register("er_member").await;
    let s = app.server(&owner, "Reacts").await;
    let other = app.server(&owner, "Other").await;
    app.join(&owner, &member, &s.id).await;
    let (_, cat) = upload(&app, &owner, &s.id, "emojis", "name=cat", png(32, 32)).await;
    let cat_id = id(&cat);
    let vip = app.role(&owner, &s.id, "VIP", 0).await;
    let (st, vip_only) = upload(
        &app,
        &owner,
        &s.id,
        "emojis",
        &format!("name=crown&roles={vip}"),
        png(32, 32),
    )
    .await;
    assert_eq!(st, 201, "{vip_only}");
    let (_, foreign) = upload(&app, &owner, &other.id, "emojis", "name=alien", png(32, 32)).await;
    let msg = app.message(&owner, &s.text, "react to me").await;
    let mid = id(&msg);
    let (mut g, _) = app.identified(&owner).await;
    let react = |e: String| format!("/channels/{}/messages/{mid}/reactions/{e}", s.text);

    // A custom reaction, stored as name:id and dispatched to the other member.
    assert_eq!(
        app.put(&react(format!("cat:{cat_id}")), &member.token)
            .await
            .0,
        204
    );
    let ev = g.expect(Event::MessageReactionAdd).await;
    assert_eq!(ev["emoji"], format!("cat:{cat_id}"));
    assert_eq!(ev["user_id"], member.id.as_str());
    let (_, m) = app
        .get(
            &format!("/channels/{}/messages/{mid}", s.text),
            &owner.token,
        )
        .await;
    let db = sqlx::PgPool::connect(&app.database_url()).await.unwrap();
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT emoji FROM reactions WHERE message_id = $1")
            .bind(mid.parse::<i64>().unwrap())
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(stored, [format!("cat:{cat_id}")], "{m}");
    // Who reacted, by the emoji's id whatever name is given.
    let (st, who) = app
        .get(&react(format!("oldname:{cat_id}")), &owner.token)
        .await;
    assert_eq!(st, 200);
    assert_eq!(who[0]["id"], member.id.as_str());

    // Another server's emoji: 400. A restricted one without the role: 403, then with it: 204.
    let (st, e) = app
        .put(&react(format!("alien:{}", id(&foreign))), &member.token)
        .await;
    assert_eq!(st, 400, "{e}");
    let crown = format!("crown:{}", id(&vip_only));
    let (st, e) = app.put(&react(crown.clone()), &member.token).await;
    assert_eq!(st, 403, "{e}");
    g.expect_none(
        Event::MessageReactionAdd,
        std::time::Duration::from_millis(300),
    )
    .await;
    app.give_role(&owner, &s.id, &member, &vip).await;
    assert_eq!(app.put(&react(crown.clone()), &member.token).await.0, 204);
    let ev = g.expect(Event::MessageReactionAdd).await;
    assert_eq!(ev["emoji"], crown);
    // Not an emoji at all.
    assert_eq!(app.put(&react("cat".into()), &member.token).await.0, 400);

    // Removal by the same spelling; the dispatch names the stored emoji.
    assert_eq!(
        app.delete(&react(format!("cat:{cat_id}")), &member.token)
            .await
            .0,
        204
    );
    let ev = g.expect(Event::MessageReactionRemove).await;
    assert_eq!(ev["emoji"], format!("cat:{cat_id}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_emoji_in_text_stay_only_where_their_author_may_use_them() {
    let app = TestApp::spawn().await;
    let owner = app.register("et_owner").await;
    let member = app.register("et_member").await;
    let s = app.server(&owner, "Texts").await;
    let other = app.server(&owner, "Elsewhere").await;
    app.join(&owner, &member, &s.id).await;
    let (_, cat) = upload(&app, &owner, &s.id, "emojis", "name=cat", png(32, 32)).await;
    let vip = app.role(&owner, &s.id, "VIP", 0).await;
    let (_, crown) = upload(
        &app,
        &owner,
        &s.id,
        "emojis",
        &format!("name=crown&roles={vip}"),
        png(32, 32),
    )
    .await;
    let (_, alien) = upload(&app, &owner, &other.id, "emojis", "name=alien", png(32, 32)).await;
    let (cat, crown, alien) = (id(&cat), id(&crown), id(&alien));
    let text = format!("hi <:cat:{cat}> <:crown:{crown}> <a:alien:{alien}> <:ghost:123>");

    // The member's own server's emoji stays; a restricted one they lack the role for, another
    // server's and an unknown one become plain :name:, in what is stored and what others see.
    let (mut g, _) = app.identified(&owner).await;
    let sent = app.message(&member, &s.text, &text).await;
    let expected = format!("hi <:cat:{cat}> :crown: :alien: :ghost:");
    assert_eq!(sent["content"], expected.as_str());
    let ev = g.expect(Event::MessageCreate).await;
    assert_eq!(ev["content"], expected.as_str());
    let db = sqlx::PgPool::connect(&app.database_url()).await.unwrap();
    let stored: String = sqlx::query_scalar("SELECT content FROM messages WHERE id = $1")
        .bind(id(&sent).parse::<i64>().unwrap())
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stored, expected);

    // With the role, the restricted one stays, also through an edit.
    app.give_role(&owner, &s.id, &member, &vip).await;
    let (st, edited) = app
        .patch(
            &format!("/channels/{}/messages/{}", s.text, id(&sent)),
            &member.token,
            json!({"content": text}),
        )
        .await;
    assert_eq!(st, 200, "{edited}");
    assert_eq!(
        edited["content"],
        format!("hi <:cat:{cat}> <:crown:{crown}> :alien: :ghost:").as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stickers_are_uploaded_and_sent_with_messages() {
    let app = TestApp::spawn().await;
    let owner = app.register("st_owner").await;
    let member = app.register("st_member").await;
    let s = app.server(&owner, "Stickers").await;
    let other = app.server(&owner, "Other").await;
    app.join(&owner, &member, &s.id).await;
    let (mut g, _) = app.identified(&member).await;

    let (st, hi) = upload(
        &app,
        &owner,
        &s.id,
        "stickers",
        "name=Hello%20there&description=a%20wave",
        png(640, 640),
    )
    .await;
    assert_eq!(st, 201, "{hi}");
    assert_eq!(hi["name"], "Hello there");
    assert_eq!(hi["description"], "a wave");
    let hi_id = id(&hi);
    let ev = g.expect(Event::ServerStickersUpdate).await;
    assert_eq!(ev["stickers"][0]["id"], hi_id.as_str());
    let resp = app
        .http
        .get(app.url(&format!("/stickers/{hi_id}")))
        .send()
        .await
        .unwrap();
    let img = image::load_from_memory(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (320, 320));

    // Refused: JPEG is not a sticker format, too large, a duplicate name, no permission.
    let jpeg = {
        let mut out = Vec::new();
        image::DynamicImage::ImageRgb8(image::RgbImage::new(8, 8))
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg)
            .unwrap();
        out
    };
    assert_eq!(
        upload(&app, &owner, &s.id, "stickers", "name=jpg", jpeg)
            .await
            .0,
        400
    );
    let mut huge = png(16, 16);
    huge.resize(600 * 1024, 0);
    assert_eq!(
        upload(&app, &owner, &s.id, "stickers", "name=big", huge)
            .await
            .0,
        413
    );
    assert_eq!(
        upload(
            &app,
            &owner,
            &s.id,
            "stickers",
            "name=Hello%20there",
            png(8, 8)
        )
        .await
        .0,
        400
    );
    assert_eq!(
        upload(&app, &member, &s.id, "stickers", "name=nope", png(8, 8))
            .await
            .0,
        403
    );
    let (_, foreign) = upload(&app, &owner, &other.id, "stickers", "name=alien", png(8, 8)).await;

    // A message with only a sticker reaches the other member with it.
    let (st, m) = app
        .post(
            &format!("/channels/{}/messages", s.text),
            &owner.token,
            json!({"sticker_ids": [hi_id]}),
        )
        .await;
    assert_eq!(st, 201, "{m}");
    assert_eq!(m["stickers"][0]["id"], hi_id.as_str());
    let ev = g.expect(Event::MessageCreate).await;
    assert_eq!(ev["stickers"][0]["name"], "Hello there");
    assert_eq!(
        ev["stickers"][0]["url"],
        format!("/api/v1/stickers/{hi_id}")
    );
    let (_, history) = app
        .get(
            &format!("/channels/{}/messages?limit=1", s.text),
            &member.token,
        )
        .await;
    assert_eq!(history[0]["stickers"][0]["id"], hi_id.as_str());
    // Plain messages carry none.
    let plain = app.message(&owner, &s.text, "plain").await;
    assert_eq!(plain["stickers"], json!([]));

    // Another server's sticker, two stickers, or nothing at all: 400.
    for body in [
        json!({"sticker_ids": [id(&foreign)]}),
        json!({"sticker_ids": [hi_id, hi_id]}),
        json!({"content": "", "sticker_ids": []}),
    ] {
        let (st, e) = app
            .post(
                &format!("/channels/{}/messages", s.text),
                &owner.token,
                body,
            )
            .await;
        assert_eq!(st, 400, "{e}");
    }

    // Rename, delete: the message keeps its sticker's name.
    let path = format!("/servers/{}/stickers/{hi_id}", s.id);
    let (st, e) = app.patch(&path, &owner.token, json!({"name": "Bye"})).await;
    assert_eq!(st, 200, "{e}");
    assert_eq!(app.delete(&path, &owner.token).await.0, 204);
    let ev = g
        .expect_where(Event::ServerStickersUpdate, |d| d["stickers"] == json!([]))
        .await;
    assert_eq!(ev["server_id"], s.id.as_str());
    let (_, m) = app
        .get(
            &format!("/channels/{}/messages/{}", s.text, id(&m)),
            &member.token,
        )
        .await;
    assert_eq!(m["stickers"][0]["name"], "Hello there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_have_their_own_rate_limit() {
    let app = TestApp::spawn().await;
    let owner = app.register("erl_owner").await;
    let s = app.server(&owner, "Limits").await;
    // Ten a minute per user, whatever becomes of them; listing is not limited by it.
    for i in 0..10 {
        let (st, _) = upload(
            &app,
            &owner,
            &s.id,
            "emojis",
            &format!("name=n{i}"),
            b"x".to_vec(),
        )
        .await;
        assert_eq!(st, 400);
    }
    let resp = app
        .http
        .post(app.url(&format!("/servers/{}/stickers?name=late", s.id)))
        .bearer_auth(&owner.token)
        .body(png(8, 8))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["x-ratelimit-bucket"], "expressions");
    assert!(resp.headers().contains_key("retry-after"));
    let (st, _) = app
        .get(&format!("/servers/{}/emojis", s.id), &owner.token)
        .await;
    assert_eq!(st, 200);
}
