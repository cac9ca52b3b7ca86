//! Video requests from clients, checked before they reach the SFU: the tile list of op 15
//! VIDEO_SUBSCRIBE and the `video_tracks` declaration of op 12. Pure functions, so every rule
//! is tested without a network; errors are messages for op 14 `{code: 4400}`.

use confab_chat::UserId;
use confab_sfu::{VideoSubscription, VideoTrackKind};
use serde::Deserialize;
use serde_json::Value;

/// Longest `mid` accepted in `video_tracks` (browsers use short decimal mids).
const MAX_MID_LEN: usize = 32;

pub fn parse_track(s: &str) -> Option<VideoTrackKind> {
    match s {
        "camera" => Some(VideoTrackKind::Camera),
        "screen" => Some(VideoTrackKind::Screen),
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeReq {
    tiles: Vec<TileReq>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TileReq {
    user_id: UserId,
    track: String,
    width: u32,
    height: u32,
}

/// One tile the client shows, as the SFU needs it.
pub fn sfu_subscription(
    user_id: UserId,
    track: VideoTrackKind,
    w: u32,
    h: u32,
) -> VideoSubscription {
    VideoSubscription {
        user_id: super::sfu_user(user_id),
        track,
        width: w,
        height: h,
    }
}

/// op 15's payload `{"tiles": [{user_id, track, width, height}]}` → the tiles shown (those
/// with a zero side are hidden and left out). At most `max_tiles` entries, each
/// (user, track) once.
pub fn parse_tiles(d: Value, max_tiles: usize) -> Result<Vec<VideoSubscription>, String> {
    let req: SubscribeReq = serde_json::from_value(d).map_err(|e| format!("invalid tiles: {e}"))?;
    if req.tiles.len() > max_tiles {
        return Err(format!(
            "{} tiles; at most {max_tiles} may be shown",
            req.tiles.len()
        ));
    }
    let mut out: Vec<VideoSubscription> = Vec::with_capacity(req.tiles.len());
    for (i, t) in req.tiles.into_iter().enumerate() {
        let track = parse_track(&t.track)
            .ok_or_else(|| format!("tiles[{i}].track must be \"camera\" or \"screen\""))?;
        let sub = sfu_subscription(t.user_id, track, t.width, t.height);
        if out
            .iter()
            .any(|o| o.user_id == sub.user_id && o.track == sub.track)
        {
            return Err(format!("tiles[{i}] repeats a video already listed"));
        }
        out.push(sub);
    }
    out.retain(|s| s.width > 0 && s.height > 0);
    Ok(out)
}

/// What op 12's `video_tracks` declares about the client's sending m-lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeclaredTracks {
    /// Which sending video mid is the camera and which the screen.
    pub video: Vec<(String, VideoTrackKind)>,
    /// The sending audio mid that carries the screen share's sound (Go Live).
    pub screen_audio: Option<String>,
}

/// op 12's optional `video_tracks` `{"<mid>": "camera"|"screen"|"screen_audio"}`: which sending
/// m-line is which. Each kind at most once.
pub fn parse_video_tracks(v: Option<Value>) -> Result<Option<DeclaredTracks>, String> {
    const SHAPE: &str =
        "video_tracks must be an object {mid: \"camera\"|\"screen\"|\"screen_audio\"}";
    let map = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(SHAPE.into()),
    };
    if map.len() > 3 {
        return Err("video_tracks names at most a camera, a screen and the screen's sound".into());
    }
    let mut out = DeclaredTracks::default();
    for (mid, kind) in map {
        if mid.is_empty() || mid.len() > MAX_MID_LEN {
            return Err(format!("video_tracks: invalid mid {mid:?}"));
        }
        if kind.as_str() == Some("screen_audio") {
            if out.screen_audio.is_some() {
                return Err("video_tracks names two screen_audio tracks".into());
            }
            out.screen_audio = Some(mid);
            continue;
        }
        let kind = kind.as_str().and_then(parse_track).ok_or_else(|| {
            format!("video_tracks[{mid:?}] must be \"camera\", \"screen\" or \"screen_audio\"")
        })?;
        if out.video.iter().any(|(_, k)| *k == kind) {
            return Err(format!("video_tracks names two {} tracks", kind.as_str()));
        }
        out.video.push((mid, kind));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_chat::Snowflake;
    use serde_json::json;

    #[test]
    fn tiles_are_parsed_and_hidden_ones_left_out() {
        let subs = parse_tiles(
            json!({"tiles": [
                {"user_id": "42", "track": "camera", "width": 640, "height": 360},
                {"user_id": "42", "track": "screen", "width": 1920, "height": 1080},
                {"user_id": "43", "track": "camera", "width": 0, "height": 0},
            ]}),
            9,
        )
        .unwrap();
        assert_eq!(
            subs,
            vec![
                sfu_subscription(UserId::new(Snowflake(42)), VideoTrackKind::Camera, 640, 360),
                sfu_subscription(
                    UserId::new(Snowflake(42)),
                    VideoTrackKind::Screen,
                    1920,
                    1080
                ),
            ]
        );
        assert_eq!(parse_tiles(json!({"tiles": []}), 9).unwrap(), vec![]);
    }

    #[test]
    fn bad_tiles_are_refused() {
        let tile = json!({"user_id": "1", "track": "camera", "width": 10, "height": 10});
        for bad in [
            json!(null),
            json!([]),
            json!({"tiles": {}}),
            json!({"tiles": [{"user_id": "1", "track": "mic", "width": 1, "height": 1}]}),
            json!({"tiles": [{"user_id": "x", "track": "camera", "width": 1, "height": 1}]}),
            json!({"tiles": [{"user_id": "1", "track": "camera", "width": -1, "height": 1}]}),
            json!({"tiles": [{"user_id": "1", "track": "camera", "width": 5e9, "height": 1}]}),
            json!({"tiles": [{"user_id": "1", "track": "camera"}]}),
            json!({"tiles": [tile.clone(), tile.clone()]}),
            json!({"tiles": [tile.clone()], "extra": 1}),
        ] {
            assert!(parse_tiles(bad.clone(), 9).is_err(), "accepted {bad}");
        }
        let ten: Vec<Value> = (0..10)
            .map(|i| json!({"user_id": (i + 1).to_string(), "track": "camera", "width": 1, "height": 1}))
            .collect();
        assert!(parse_tiles(json!({ "tiles": ten }), 9)
            .unwrap_err()
            .contains("at most 9"));
        assert!(parse_tiles(json!({ "tiles": ten }), 10).is_ok());
    }

    #[test]
    fn video_track_declarations() {
        assert_eq!(parse_video_tracks(None).unwrap(), None);
        let mut got = parse_video_tracks(Some(
            json!({"0": "camera", "1": "screen", "14": "screen_audio"}),
        ))
        .unwrap()
        .unwrap();
        got.video.sort();
        assert_eq!(
            got.video,
            vec![
                ("0".to_string(), VideoTrackKind::Camera),
                ("1".to_string(), VideoTrackKind::Screen)
            ]
        );
        assert_eq!(got.screen_audio.as_deref(), Some("14"));
        for bad in [
            json!("camera"),
            json!({"0": "camera", "1": "camera"}),
            json!({"0": "mic"}),
            json!({"0": 1}),
            json!({"": "camera"}),
            json!({"0": "camera", "1": "screen", "2": "screen"}),
            json!({"0": "screen_audio", "1": "screen_audio"}),
            json!({"0": "camera", "1": "screen", "2": "screen_audio", "3": "mic"}),
        ] {
            assert!(
                parse_video_tracks(Some(bad.clone())).is_err(),
                "accepted {bad}"
            );
        }
    }
}
