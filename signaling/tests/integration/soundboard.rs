//! The soundboard over HTTP and the gateway: uploads (valid, foreign, broken, too long, too
//! large), listing, downloading (members only), deleting, and plays (connected to the channel,
//! USE_SOUNDBOARD, the rate limit) with their events.

use crate::common::{Event, Overwrite, TestApp, User};
use serde_json::{json, Value};
use std::time::Duration;

const USE_SOUNDBOARD: i64 = 1 << 42;

/// A mono 16-bit PCM WAV: a 440 Hz tone of `ms` milliseconds at 8 kHz.
pub fn tone_wav(ms: u32) -> Vec<u8> {
    let rate = 8_000u32;
    let n = rate * ms / 1000;
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + n * 2).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    for x in [
        16u32.to_le_bytes().to_vec(),
        1u16.to_le_bytes().to_vec(),
        1u16.to_le_bytes().to_vec(),
    ] {
        v.extend_from_slice(&x);
    }
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * 2).to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(n * 2).to_le_bytes());
    for i in 0..n {
        let s = (f64::from(i) * 440.0 * std::f64::consts::TAU / f64::from(rate)).sin();
        v.extend_from_slice(&((s * 12_000.0) as i16).to_le_bytes());
    }
    v
}

async fn upload(app: &TestApp, by: &User, sid: &str, query: &str, bytes: Vec<u8>) -> (u16, Value) {
    let resp = app
        .http
        .post(app.url(&format!("/servers/{sid}/soundboard-sounds?{query}")))
        .bearer_auth(&by.token)
        .header("content-type", "audio/wav")
        .body(bytes)
        .send()
        .await
        .expect("upload");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn play(app: &TestApp, by: &User, channel: &str, sound: &str) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/channels/{channel}/soundboard/play")))
        .bearer_auth(&by.token)
        .json(&json!({"sound_id": sound}))
        .send()
        .await
        .expect("play")
}

/// Connects `u` to voice channel `channel` of `sid`; the gateway must stay open.
async fn join_voice(app: &TestApp, u: &User, sid: &str, channel: &str) -> crate::common::Gateway {
    let (mut g, _) = app.identified(u).await;
    g.send(json!({"op": 4, "d": {"server_id": sid, "channel_id": channel, "self_mute": false, "self_deaf": false}}))
        .await;
    g.expect_where(Event::VoiceStateUpdate, |d| d["user_id"] == u.id.as_str())
        .await;
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sounds_are_uploaded_listed_downloaded_and_deleted() {
    let app = TestApp::spawn().await;
    let owner = app.register("sb_owner").await;
    let member = app.register("sb_member").await;
    let stranger = app.register("sb_stranger").await;
    let s = app.server(&owner, "Sounds").await;
    app.join(&owner, &member, &s.id).await;
    let (mut g, _) = app.identified(&member).await;

    let wav = tone_wav(1_000);
    let (st, sound) = upload(
        &app,
        &owner,
        &s.id,
        "name=airhorn&emoji=%F0%9F%93%A2&volume=0.5",
        wav.clone(),
    )
    .await;
    assert_eq!(st, 201, "{sound}");
    assert_eq!(sound["content_type"], "audio/wav");
    assert_eq!(sound["duration_ms"], 1000);
    assert_eq!(sound["volume"], 0.5);
    assert_eq!(sound["emoji"], "📢");
    let id = sound["id"].as_str().unwrap().to_string();
    let created = g.expect(Event::SoundboardSoundCreate).await;
    assert_eq!(created["id"], id.as_str());
    assert_eq!(created["name"], "airhorn");

    // Members list and download; strangers learn nothing.
    let (st, list) = app
        .get(
            &format!("/servers/{}/soundboard-sounds", s.id),
            &member.token,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (st, _) = app
        .get(
            &format!("/servers/{}/soundboard-sounds", s.id),
            &stranger.token,
        )
        .await;
    assert_eq!(st, 404);
    let audio_path = format!("/servers/{}/soundboard-sounds/{id}/audio", s.id);
    let resp = app
        .http
        .get(app.url(&audio_path))
        .bearer_auth(&member.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "audio/wav");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), wav.as_slice());
    let (st, _) = app.get(&audio_path, &stranger.token).await;
    assert_eq!(st, 404);

    // Only MANAGE_SERVER uploads.
    let (st, body) = upload(&app, &member, &s.id, "name=mine", tone_wav(500)).await;
    assert_eq!(st, 403, "{body}");
    // Not audio, a broken WAV, too long, too large, bad fields.
    let (st, body) = upload(
        &app,
        &owner,
        &s.id,
        "name=page",
        b"<html>hi</html>".to_vec(),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert!(
        body["errors"]["audio"][0]
            .as_str()
            .unwrap()
            .contains("Ogg/Opus, MP3 or WAV"),
        "{body}"
    );
    let (st, body) = upload(&app, &owner, &s.id, "name=cut", wav[..500].to_vec()).await;
    assert_eq!(st, 400, "{body}");
    assert!(
        body["errors"]["audio"][0]
            .as_str()
            .unwrap()
            .contains("not a valid audio file"),
        "{body}"
    );
    let (st, body) = upload(&app, &owner, &s.id, "name=long", tone_wav(6_000)).await;
    assert_eq!(st, 400, "{body}");
    assert!(
        body["errors"]["audio"][0]
            .as_str()
            .unwrap()
            .contains("at most 5.2 s"),
        "{body}"
    );
    let (st, body) = upload(&app, &owner, &s.id, "name=huge", vec![0u8; 600 * 1024]).await;
    assert_eq!(st, 413, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("524288"),
        "{body}"
    );
    let (st, body) = upload(&app, &owner, &s.id, "name=&volume=2", tone_wav(500)).await;
    assert_eq!(st, 400, "{body}");
    assert!(
        body["errors"]["name"].is_array() && body["errors"]["volume"].is_array(),
        "{body}"
    );

    // Deleting: MANAGE_SERVER only, then gone for everyone.
    let path = format!("/servers/{}/soundboard-sounds/{id}", s.id);
    let (st, _) = app.delete(&path, &member.token).await;
    assert_eq!(st, 403);
    let (st, _) = app.delete(&path, &owner.token).await;
    assert_eq!(st, 204);
    let deleted = g.expect(Event::SoundboardSoundDelete).await;
    assert_eq!(deleted["sound_id"], id.as_str());
    let (st, _) = app.get(&audio_path, &member.token).await;
    assert_eq!(st, 404);
    let (st, _) = app.delete(&path, &owner.token).await;
    assert_eq!(st, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plays_need_the_channel_the_permission_and_respect_the_rate_limit() {
    let app = TestApp::spawn().await;
    let owner = app.register("sp_owner").await;
    let player = app.register("sp_player").await;
    let muted = app.register("sp_denied").await;
    let s = app.server(&owner, "Plays").await;
    for u in [&player, &muted] {
        app.join(&owner, u, &s.id).await;
    }
    let (st, sound) = upload(&app, &owner, &s.id, "name=ding", tone_wav(800)).await;
    assert_eq!(st, 201, "{sound}");
    let sound = sound["id"].as_str().unwrap().to_string();
    // A sound of another server cannot be played here.
    let other = app.server(&owner, "Other").await;
    let (_, foreign) = upload(&app, &owner, &other.id, "name=foreign", tone_wav(300)).await;
    let foreign = foreign["id"].as_str().unwrap().to_string();

    let (mut listener, _) = app.identified(&owner).await;

    // Not connected: refused (this spends one of the player's three tokens).
    let r = play(&app, &player, &s.voice, &sound).await;
    assert_eq!(r.status().as_u16(), 400, "{}", r.text().await.unwrap());

    let _player_voice = join_voice(&app, &player, &s.id, &s.voice).await;
    let r = play(&app, &player, &s.voice, &sound).await;
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().await.unwrap());
    let d = listener
        .expect_where(Event::VoiceSoundboardPlay, |d| {
            d["user_id"] == player.id.as_str()
        })
        .await;
    assert_eq!(d["channel_id"], s.voice.as_str());
    assert_eq!(d["sound_id"], sound.as_str());
    assert_eq!(d["volume"], 1.0);

    let r = play(&app, &player, &s.voice, &foreign).await;
    assert_eq!(r.status().as_u16(), 400, "{}", r.text().await.unwrap());
    // The bucket is empty now: the fourth request within a moment is refused.
    let r = play(&app, &player, &s.voice, &sound).await;
    assert_eq!(r.status().as_u16(), 429);
    let retry: f64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1.0, "{retry}");
    assert_eq!(r.headers()["x-ratelimit-bucket"], "soundboard");
    listener
        .expect_none(Event::VoiceSoundboardPlay, Duration::from_millis(300))
        .await;
    // Refilled after two seconds.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let r = play(&app, &player, &s.voice, &sound).await;
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().await.unwrap());
    listener.expect(Event::VoiceSoundboardPlay).await;

    // Server-muted by a moderator: refused (after the bucket refilled, so it is not a 429).
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (st, body) = app
        .patch(
            &format!("/servers/{}/members/{}", s.id, player.id),
            &owner.token,
            json!({"mute": true}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    listener
        .expect_where(Event::VoiceStateUpdate, |d| {
            d["user_id"] == player.id.as_str() && d["mute"] == true
        })
        .await;
    let r = play(&app, &player, &s.voice, &sound).await;
    assert_eq!(r.status().as_u16(), 403, "{}", r.text().await.unwrap());

    // Denied USE_SOUNDBOARD in the channel: connected, but 403.
    app.overwrite(
        &owner,
        &s.voice,
        Overwrite::Member(&muted.id),
        0,
        USE_SOUNDBOARD,
    )
    .await;
    let _muted_voice = join_voice(&app, &muted, &s.id, &s.voice).await;
    let r = play(&app, &muted, &s.voice, &sound).await;
    assert_eq!(r.status().as_u16(), 403, "{}", r.text().await.unwrap());
    // Not even the channel's server's member: not found.
    let stranger = app.register("sp_stranger").await;
    let r = play(&app, &stranger, &s.voice, &sound).await;
    assert_eq!(r.status().as_u16(), 404);
    listener
        .expect_none(Event::VoiceSoundboardPlay, Duration::from_millis(300))
        .await;
}
