//! Synthetic but well-formed VP8 RTP payloads (RFC 7741 payload descriptor,
//! RFC 6386 frame header) for the video scenario, and the receiver's parse
//! of them.
//!
//! The SFU never decodes video: it reads the descriptor (start of partition,
//! picture id, TL0PICIDX) and, in a keyframe's first packet, the frame size
//! after the start code. That is all these payloads have to get right; the
//! rest of each frame is filler of the size a real encoder would produce.

/// The simulcast encodings a publisher sends, lowest first: rid, size, bitrate.
pub const CAMERA_LAYERS: [Layer; 3] = [
    Layer {
        rid: "q",
        width: 320,
        height: 180,
        bitrate: 150_000,
    },
    Layer {
        rid: "h",
        width: 640,
        height: 360,
        bitrate: 500_000,
    },
    Layer {
        rid: "f",
        width: 1280,
        height: 720,
        bitrate: 1_500_000,
    },
];

/// Go Live at 1080p (the web client's 1080p30/1080p60 presets: quarter, half and full size,
/// 8 %, 30 % and 100 % of 7 Mbit/s).
pub const SCREEN_1080P_LAYERS: [Layer; 3] = [
    Layer {
        rid: "q",
        width: 480,
        height: 270,
        bitrate: 560_000,
    },
    Layer {
        rid: "h",
        width: 960,
        height: 540,
        bitrate: 2_100_000,
    },
    Layer {
        rid: "f",
        width: 1920,
        height: 1080,
        bitrate: 7_000_000,
    },
];

/// Go Live at 720p (the 720p30 preset: 2.5 Mbit/s at full size).
pub const SCREEN_720P_LAYERS: [Layer; 3] = [
    Layer {
        rid: "q",
        width: 320,
        height: 180,
        bitrate: 200_000,
    },
    Layer {
        rid: "h",
        width: 640,
        height: 360,
        bitrate: 750_000,
    },
    Layer {
        rid: "f",
        width: 1280,
        height: 720,
        bitrate: 2_500_000,
    },
];

static LAYER_TABLE: std::sync::OnceLock<&'static [Layer; 3]> = std::sync::OnceLock::new();

/// Chooses the simulcast layer table of this run (once, before any peer starts; the camera's
/// by default).
pub fn use_layers(table: &'static [Layer; 3]) {
    let _ = LAYER_TABLE.set(table);
}

/// The simulcast layers publishers send in this run, lowest first.
pub fn layers() -> &'static [Layer; 3] {
    LAYER_TABLE.get().copied().unwrap_or(&CAMERA_LAYERS)
}

#[derive(Debug, Clone, Copy)]
pub struct Layer {
    pub rid: &'static str,
    pub width: u32,
    pub height: u32,
    /// Target bits per second (frames are sized to match it).
    pub bitrate: u32,
}

/// Index in [`layers`] of the layer that has exactly this frame size.
pub fn layer_of_size(size: (u32, u32)) -> Option<usize> {
    layers().iter().position(|l| (l.width, l.height) == size)
}

/// The layer a viewer should get for a tile: the smallest at least as large
/// as the tile, else the largest (the SFU's rule).
pub fn expected_layer(tile: (u32, u32)) -> usize {
    let table = layers();
    table
        .iter()
        .position(|l| l.width >= tile.0 && l.height >= tile.1)
        .unwrap_or(table.len() - 1)
}

/// Largest RTP payload we produce (fits a 1200-byte datagram with headers).
pub const MAX_PAYLOAD: usize = 1100;
/// Descriptor: X|R|N|S|R|PID, I|L|T|K, 15-bit picture id (2 bytes), TL0PICIDX, TID|Y|KEYIDX.
const DESCRIPTOR_LEN: usize = 6;

/// Bytes of one encoded frame of `layer` at `fps` (keyframes are larger, as
/// an encoder's are).
pub fn frame_bytes(layer: &Layer, fps: u32, keyframe: bool) -> usize {
    let base = (layer.bitrate / 8 / fps.max(1)) as usize;
    if keyframe { base * 3 } else { base }.max(32)
}

/// Splits a frame of `frame_len` bytes (VP8 data, without descriptors) into
/// RTP payloads and calls `emit(payload, marker)` for each, in order.
/// `pid`: 15-bit picture id; `tl0`: TL0PICIDX.
pub fn packetize(
    frame_len: usize,
    keyframe: bool,
    size: (u32, u32),
    pid: u16,
    tl0: u8,
    mut emit: impl FnMut(Vec<u8>, bool),
) {
    let per_packet = MAX_PAYLOAD - DESCRIPTOR_LEN;
    let packets = frame_len.div_ceil(per_packet).max(1);
    let mut left = frame_len;
    for i in 0..packets {
        let chunk = left.min(per_packet);
        left -= chunk;
        let mut p = Vec::with_capacity(DESCRIPTOR_LEN + chunk.max(10));
        // X=1, S=1 on the first packet of the frame, partition index 0.
        p.push(if i == 0 { 0x90 } else { 0x80 });
        p.push(0xe0); // I, L, T present
        p.push(0x80 | ((pid >> 8) as u8 & 0x7f));
        p.push(pid as u8);
        p.push(tl0);
        p.push(0x00); // TID 0
        let mut body = chunk;
        if i == 0 {
            // Frame tag (RFC 6386 9.1): bit 0 = inter frame, bits 1-3
            // version 0, bit 4 show_frame, bits 5.. first partition size.
            let first_part = (frame_len / 4).min((1 << 19) - 1) as u32;
            let tag = u32::from(!keyframe) | (1 << 4) | (first_part << 5);
            p.extend_from_slice(&tag.to_le_bytes()[..3]);
            body = body.saturating_sub(3);
            if keyframe {
                p.extend_from_slice(&[0x9d, 0x01, 0x2a]);
                // 14-bit sizes, scaling bits 0.
                p.extend_from_slice(&((size.0 & 0x3fff) as u16).to_le_bytes());
                p.extend_from_slice(&((size.1 & 0x3fff) as u16).to_le_bytes());
                body = body.saturating_sub(7);
            }
        }
        p.resize(p.len() + body, 0x5a);
        emit(p, i + 1 == packets);
    }
}

/// What a receiver learns from one VP8 RTP payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// First packet of a frame (S=1, partition 0).
    pub frame_start: bool,
    pub keyframe: bool,
    /// Frame size from a keyframe's header.
    pub size: Option<(u32, u32)>,
    pub picture_id: Option<u16>,
}

/// Parses the descriptor and, on a frame's first packet, the frame header.
/// `None` for payloads too short to be VP8.
pub fn parse(p: &[u8]) -> Option<Parsed> {
    let b0 = *p.first()?;
    let mut off = 1;
    let mut picture_id = None;
    if b0 & 0x80 != 0 {
        let x = *p.get(1)?;
        off = 2;
        if x & 0x80 != 0 {
            let m = *p.get(2)?;
            if m & 0x80 != 0 {
                picture_id = Some((((m & 0x7f) as u16) << 8) | *p.get(3)? as u16);
                off += 2;
            } else {
                picture_id = Some((m & 0x7f) as u16);
                off += 1;
            }
        }
        if x & 0x40 != 0 {
            off += 1;
        }
        if x & 0x30 != 0 {
            off += 1;
        }
    }
    let frame_start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
    let keyframe = frame_start && p.get(off)? & 0x01 == 0;
    let size = if keyframe {
        p.get(off + 3..off + 10)
            .filter(|h| h[..3] == [0x9d, 0x01, 0x2a])
            .map(|h| {
                (
                    (u16::from_le_bytes([h[3], h[4]]) & 0x3fff) as u32,
                    (u16::from_le_bytes([h[5], h[6]]) & 0x3fff) as u32,
                )
            })
    } else {
        None
    };
    Some(Parsed {
        frame_start,
        keyframe,
        size,
        picture_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(len: usize, key: bool, size: (u32, u32)) -> Vec<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        packetize(len, key, size, 0x1234, 7, |p, m| out.push((p, m)));
        out
    }

    #[test]
    fn keyframe_carries_size_and_splits_with_marker_last() {
        let f = &CAMERA_LAYERS[2];
        let len = frame_bytes(f, 30, true);
        let pk = packets(len, true, (f.width, f.height));
        assert_eq!(pk.len(), len.div_ceil(MAX_PAYLOAD - DESCRIPTOR_LEN));
        assert!(pk.iter().all(|(p, _)| p.len() <= MAX_PAYLOAD));
        let total: usize = pk.iter().map(|(p, _)| p.len() - DESCRIPTOR_LEN).sum();
        assert_eq!(total, len);
        let markers: Vec<bool> = pk.iter().map(|(_, m)| *m).collect();
        assert_eq!(markers.iter().filter(|m| **m).count(), 1);
        assert!(markers[markers.len() - 1]);
        let first = parse(&pk[0].0).unwrap();
        assert!(first.frame_start && first.keyframe);
        assert_eq!(first.size, Some((1280, 720)));
        assert_eq!(first.picture_id, Some(0x1234));
        let second = parse(&pk[1].0).unwrap();
        assert!(!second.frame_start && !second.keyframe && second.size.is_none());
    }

    #[test]
    fn delta_frame_is_not_a_keyframe() {
        let pk = packets(400, false, (320, 180));
        assert_eq!(pk.len(), 1);
        let p = parse(&pk[0].0).unwrap();
        assert!(p.frame_start && !p.keyframe && p.size.is_none());
        // Frame tag bit 0 set = inter frame; show_frame set.
        assert_eq!(pk[0].0[DESCRIPTOR_LEN] & 0x11, 0x11);
    }

    #[test]
    fn sizes_and_layers() {
        // ~bitrate / fps per frame
        assert_eq!(frame_bytes(&CAMERA_LAYERS[2], 30, false), 6250);
        assert_eq!(frame_bytes(&CAMERA_LAYERS[0], 30, false), 625);
        assert_eq!(layer_of_size((640, 360)), Some(1));
        assert_eq!(layer_of_size((641, 360)), None);
        assert_eq!(expected_layer((320, 180)), 0);
        assert_eq!(expected_layer((321, 180)), 1);
        assert_eq!(expected_layer((1280, 720)), 2);
        assert_eq!(expected_layer((1920, 1080)), 2);
        assert!(parse(&[]).is_none());
        assert!(parse(&[0x90]).is_none());
    }
}
