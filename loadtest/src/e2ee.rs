//! `--e2ee`: the peers take part in an end-to-end encrypted channel as the web client does
//! (docs/e2ee.md, `web/js/voice-e2ee.js` and `web/js/e2ee-worker.js`), so the SFU's cost
//! with encrypted payloads and the join-to-first-audio an encrypted call costs can be measured.
//!
//! - Each peer has a P-256 identity key, declared in op 4 as base64 SPKI.
//! - Whenever the channel's participants change (their voice states), each peer draws a new
//!   16-byte media key with a random key id 100 ms after the first change (the changes of
//!   those 100 ms make one rotation), wraps it for every other participant (ECDH → HKDF-SHA-256
//!   → AES-128-GCM, the voice sessions in the HKDF info) and sends op 16; it encrypts with each
//!   new key 1 s after sending it (its first key at once), so under a steady stream of joins it
//!   still moves on to keys the newcomers hold. Received keys are unwrapped and kept; a
//!   sender's previous key goes 5 s after a newer one arrived.
//! - Every audio frame is an SFrame frame: `[0xBB][KID 4][CTR 4][AES-128-GCM ciphertext][tag]`,
//!   the AEAD key and salt derived from the media key by HKDF, the nonce the salt XOR the counter,
//!   the header as additional data. Opus leaves no byte in clear.
//!
//! One difference from a browser, for the tester's own CPU only: a peer keeps the ECDH result
//! per participant instead of recomputing it at each rotation (the keys are the same).
//! The crypto is aws-lc-rs, the library the rest of the tester's SRTP already uses.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, ECDH_P256};
use aws_lc_rs::hkdf::{self, Salt, HKDF_SHA256};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

/// SFrame's config byte: X=1, K=3 (4-byte key id), Y=1, C=3 (4-byte counter).
const SFRAME_HEADER: u8 = 0xBB;
const HEADER_LEN: usize = 9;
const TAG_LEN: usize = 16;
/// Rotations wait this long for further joins and leaves (the web client's debounce).
const ROTATE_AFTER: Duration = Duration::from_millis(100);
/// A new key is used this long after it was sent (the receivers have it by then).
const SWITCH_AFTER: Duration = Duration::from_millis(1000);
/// A sender's previous key stays this long after a newer one arrived (frames in flight).
const KEEP_OLD: Duration = Duration::from_millis(5000);
/// Most keys per op 16 frame (the server's limit).
const KEYS_PER_FRAME: usize = 100;
/// DER prefix of a P-256 SubjectPublicKeyInfo; the uncompressed point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf_sha256(ikm: &[u8], info: &str, out: &mut [u8]) -> Result<()> {
    Salt::new(HKDF_SHA256, &[])
        .extract(ikm)
        .expand(&[info.as_bytes()], Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| anyhow!("HKDF failed"))
}

fn aes128(key: &[u8]) -> Result<LessSafeKey> {
    Ok(LessSafeKey::new(
        UnboundKey::new(&AES_128_GCM, key).map_err(|_| anyhow!("bad AES key"))?,
    ))
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).expect("system randomness");
    b
}

/// A device's identity key pair.
pub struct Identity {
    key: PrivateKey,
    /// The public key as base64 SPKI, as op 4 and voice states carry it.
    pub spki_b64: String,
}

impl Identity {
    pub fn generate() -> Result<Self> {
        let key = PrivateKey::generate(&ECDH_P256).map_err(|_| anyhow!("P-256 keygen"))?;
        let public = key
            .compute_public_key()
            .map_err(|_| anyhow!("P-256 public key"))?;
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(public.as_ref());
        Ok(Identity {
            key,
            spki_b64: B64.encode(der),
        })
    }

    /// ECDH with another identity public key (base64 SPKI).
    fn agree(&self, their_spki_b64: &str) -> Result<[u8; 32]> {
        let der = B64.decode(their_spki_b64)?;
        let point = der
            .strip_prefix(&P256_SPKI_PREFIX[..])
            .filter(|p| p.len() == 65)
            .ok_or_else(|| anyhow!("not a P-256 SPKI"))?;
        let peer = UnparsedPublicKey::new(&ECDH_P256, point);
        agreement::agree(&self.key, peer, anyhow!("ECDH failed"), |secret| {
            let mut out = [0u8; 32];
            out.copy_from_slice(&secret[..32]);
            Ok(out)
        })
    }
}

/// The AES-GCM key that wraps media keys from `from` to `to` (voice session ids).
fn pair_key(shared_secret: &[u8; 32], from: &str, to: &str) -> Result<LessSafeKey> {
    let mut k = [0u8; 16];
    hkdf_sha256(
        shared_secret,
        &format!("Confab e2ee wrap 1 {from} {to}"),
        &mut k,
    )?;
    aes128(&k)
}

/// `base64(iv ‖ AES-GCM(media key, aad = decimal key id))`.
fn wrap(key: &LessSafeKey, raw: &[u8; 16], kid: u32) -> Result<String> {
    let iv = random::<12>();
    let mut buf = raw.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(iv),
        Aad::from(kid.to_string().as_bytes()),
        &mut buf,
    )
    .map_err(|_| anyhow!("wrap failed"))?;
    let mut out = iv.to_vec();
    out.extend_from_slice(&buf);
    Ok(B64.encode(out))
}

fn unwrap_key(key: &LessSafeKey, b64: &str, kid: u32) -> Result<[u8; 16]> {
    let mut buf = B64.decode(b64)?;
    anyhow::ensure!(
        buf.len() == 12 + 16 + TAG_LEN,
        "wrapped key of the wrong size"
    );
    let iv: [u8; 12] = buf[..12].try_into().expect("12 bytes");
    let pt = key
        .open_in_place(
            Nonce::assume_unique_for_key(iv),
            Aad::from(kid.to_string().as_bytes()),
            &mut buf[12..],
        )
        .map_err(|_| anyhow!("wrapped key did not open"))?;
    Ok(pt[..16].try_into().expect("16 bytes"))
}

/// One media key as SFrame uses it: the AEAD key and the salt derived from it.
pub struct FrameKey {
    kid: u32,
    aead: LessSafeKey,
    salt: [u8; 12],
}

impl FrameKey {
    pub fn derive(raw: &[u8; 16], kid: u32) -> Result<Self> {
        let mut k = [0u8; 16];
        hkdf_sha256(raw, &format!("Confab SFrame 1 key {kid}"), &mut k)?;
        let mut salt = [0u8; 12];
        hkdf_sha256(raw, &format!("Confab SFrame 1 salt {kid}"), &mut salt)?;
        Ok(FrameKey {
            kid,
            aead: aes128(&k)?,
            salt,
        })
    }

    fn nonce(&self, ctr: u32) -> Nonce {
        let mut iv = self.salt;
        for (i, b) in ctr.to_be_bytes().iter().enumerate() {
            iv[8 + i] ^= b;
        }
        Nonce::assume_unique_for_key(iv)
    }
}

/// The sending half: the key frames are encrypted with, and its counter.
pub struct FrameSender {
    key: FrameKey,
    ctr: u32,
    /// Reused for every frame: the only allocation per frame is the payload str0m takes.
    scratch: Vec<u8>,
}

impl FrameSender {
    pub fn new(key: FrameKey) -> Self {
        FrameSender {
            key,
            ctr: 0,
            scratch: Vec::with_capacity(1500),
        }
    }

    /// An SFrame frame of an Opus frame (no clear bytes), as the payload str0m sends.
    pub fn encrypt(&mut self, plain: &[u8]) -> std::sync::Arc<[u8]> {
        let ctr = self.ctr;
        self.ctr = self.ctr.wrapping_add(1);
        let out = &mut self.scratch;
        out.clear();
        out.push(SFRAME_HEADER);
        out.extend_from_slice(&self.key.kid.to_be_bytes());
        out.extend_from_slice(&ctr.to_be_bytes());
        out.extend_from_slice(plain);
        let (head, body) = out.split_at_mut(HEADER_LEN);
        let tag = self
            .key
            .aead
            .seal_in_place_separate_tag(self.key.nonce(ctr), Aad::from(&*head), body)
            .expect("AES-GCM seals any frame under 64 GiB");
        out.extend_from_slice(tag.as_ref());
        std::sync::Arc::from(&out[..])
    }
}

/// The receiving half: the keys of the other participants, by key id.
#[derive(Default)]
pub struct FrameReceiver {
    keys: Vec<(FrameKey, Option<Instant>)>,
    /// Reused for every frame: no allocation per packet.
    scratch: Vec<u8>,
    pub decrypted: u64,
    /// Frames under a key id this peer has no key for (it joined after them, or the key
    /// has not arrived yet), and frames whose tag did not verify.
    pub no_key: u64,
    pub failed: u64,
}

impl FrameReceiver {
    fn add(&mut self, key: FrameKey) {
        self.keys.retain(|(k, _)| k.kid != key.kid);
        self.keys.push((key, None));
    }

    fn retire(&mut self, kid: u32, at: Instant) {
        if let Some(k) = self.keys.iter_mut().find(|(k, _)| k.kid == kid) {
            k.1 = Some(at);
        }
    }

    fn expire(&mut self, now: Instant) {
        self.keys.retain(|(_, t)| t.is_none_or(|t| t > now));
    }

    /// Decrypts `frame` into the reused buffer, which it hands out (and takes back with
    /// [`FrameReceiver::give_back`]) so the caller can use the plaintext while holding
    /// `&mut self` elsewhere. `None` when no key opens it.
    pub fn open(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        if frame.len() < HEADER_LEN + TAG_LEN || frame[0] != SFRAME_HEADER {
            self.failed += 1;
            return None;
        }
        let kid = u32::from_be_bytes(frame[1..5].try_into().expect("4 bytes"));
        let ctr = u32::from_be_bytes(frame[5..9].try_into().expect("4 bytes"));
        let Some((key, _)) = self.keys.iter().find(|(k, _)| k.kid == kid) else {
            self.no_key += 1;
            return None;
        };
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.extend_from_slice(&frame[HEADER_LEN..]);
        match key
            .aead
            .open_in_place(key.nonce(ctr), Aad::from(&frame[..HEADER_LEN]), &mut buf)
        {
            Ok(pt) => {
                let n = pt.len();
                buf.truncate(n);
                self.decrypted += 1;
                Some(buf)
            }
            Err(_) => {
                self.failed += 1;
                self.scratch = buf;
                None
            }
        }
    }

    pub fn give_back(&mut self, buf: Vec<u8>) {
        self.scratch = buf;
    }
}

/// Most keys kept for senders not known yet.
const MAX_EARLY_KEYS: usize = 64;

/// A key from a voice session this peer has not seen the voice state of (yet).
#[derive(Debug)]
struct Early;
impl std::fmt::Display for Early {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("key from a sender whose voice state has not arrived")
    }
}
impl std::error::Error for Early {}

struct Participant {
    user_id: String,
    identity_key: String,
    secret: Option<[u8; 32]>,
}

/// What a peer's key handling counted.
#[derive(Default, Clone, Copy, Debug)]
pub struct KeyStats {
    pub rotations: u64,
    pub key_frames_sent: u64,
    pub keys_wrapped: u64,
    pub keys_received: u64,
    pub keys_failed: u64,
}

impl KeyStats {
    pub fn add(&mut self, o: &KeyStats) {
        self.rotations += o.rotations;
        self.key_frames_sent += o.key_frames_sent;
        self.keys_wrapped += o.keys_wrapped;
        self.keys_received += o.keys_received;
        self.keys_failed += o.keys_failed;
    }
}

/// One peer's key agreement: who is in the call, its own keys, the rotation timers.
pub struct KeyAgent {
    pub identity: Identity,
    user_id: String,
    channel_id: String,
    own_session: Option<String>,
    /// Other participants by voice session id.
    others: HashMap<String, Participant>,
    /// Sorted (voice session, identity key) of the others at the last rotation.
    last_set: Vec<(String, String)>,
    /// The key id each sender last gave us.
    latest_from: HashMap<String, u32>,
    /// Keys from a voice session whose voice state has not arrived yet (the two travel by
    /// different paths, across nodes in a cluster), with when they came: opened when it does.
    early_keys: Vec<(Instant, Value)>,
    rotate_at: Option<Instant>,
    /// Keys sent and not yet used, each with the time it is used from (in order).
    switches: VecDeque<(Instant, FrameKey)>,
    pub sender: Option<FrameSender>,
    pub stats: KeyStats,
}

fn str_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl KeyAgent {
    pub fn new(user_id: String, channel_id: String) -> Result<Self> {
        Ok(KeyAgent {
            identity: Identity::generate()?,
            user_id,
            channel_id,
            own_session: None,
            others: HashMap::new(),
            last_set: Vec::new(),
            latest_from: HashMap::new(),
            early_keys: Vec::new(),
            rotate_at: None,
            switches: VecDeque::new(),
            sender: None,
            stats: KeyStats::default(),
        })
    }

    /// op 4's `e2ee` field.
    pub fn declaration(&self) -> Value {
        json!({"identity_key": self.identity.spki_b64})
    }

    /// A voice state (from READY or VOICE_STATE_UPDATE): joins, leaves and our own session.
    pub fn on_voice_state(&mut self, st: &Value, now: Instant, rx: &mut FrameReceiver) {
        let (Some(user), Some(session)) = (str_of(&st["user_id"]), str_of(&st["voice_session_id"]))
        else {
            return;
        };
        let here = str_of(&st["channel_id"]).as_deref() == Some(self.channel_id.as_str());
        let key = st["e2ee"]["identity_key"].as_str();
        if user == self.user_id {
            if here && key == Some(self.identity.spki_b64.as_str()) {
                self.own_session = Some(session);
            }
        } else {
            // A user is in at most one voice session: drop any earlier one of theirs.
            self.others
                .retain(|s, p| p.user_id != user || *s == session);
            match (here, key) {
                (true, Some(k)) => {
                    let changed = self
                        .others
                        .get(&session)
                        .is_none_or(|p| p.identity_key != k);
                    if changed {
                        self.others.insert(
                            session.clone(),
                            Participant {
                                user_id: user,
                                identity_key: k.to_string(),
                                secret: None,
                            },
                        );
                        self.open_early_keys(&session, now, rx);
                    }
                }
                _ => {
                    self.others.remove(&session);
                }
            }
        }
        if self.own_session.is_some() && self.rotate_at.is_none() {
            self.rotate_at = Some(now + ROTATE_AFTER);
        }
    }

    /// READY's voice states.
    pub fn on_ready(&mut self, ready: &Value, now: Instant, rx: &mut FrameReceiver) {
        if let Some(states) = ready["voice_states"].as_array() {
            for st in states {
                self.on_voice_state(st, now, rx);
            }
        }
    }

    /// Opens the keys that came from `session` before its voice state did.
    fn open_early_keys(&mut self, session: &str, now: Instant, rx: &mut FrameReceiver) {
        let (theirs, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.early_keys)
            .into_iter()
            .partition(|(_, d)| str_of(&d["from_voice_session_id"]).as_deref() == Some(session));
        self.early_keys = rest;
        for (_, d) in theirs {
            self.on_key(&d, now, rx);
        }
    }

    /// The earliest timer this agent waits for.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.rotate_at,
            self.switches.front().map(|s| s.0),
            self.early_keys.first().map(|k| k.0 + KEEP_OLD),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs due timers; returns the op 16 frames to send.
    pub fn poll(&mut self, now: Instant, rx: &mut FrameReceiver) -> Result<Vec<String>> {
        rx.expire(now);
        let before = self.early_keys.len();
        self.early_keys
            .retain(|(t, _)| now.duration_since(*t) < KEEP_OLD);
        self.stats.keys_failed += (before - self.early_keys.len()) as u64;
        while self.switches.front().is_some_and(|s| s.0 <= now) {
            let (_, key) = self.switches.pop_front().expect("checked");
            self.sender = Some(FrameSender::new(key));
        }
        if self.rotate_at.is_some_and(|t| t <= now) {
            self.rotate_at = None;
            return self.rotate(now);
        }
        Ok(Vec::new())
    }

    fn rotate(&mut self, now: Instant) -> Result<Vec<String>> {
        let Some(own) = self.own_session.clone() else {
            return Ok(Vec::new());
        };
        let mut set: Vec<(String, String)> = self
            .others
            .iter()
            .map(|(s, p)| (s.clone(), p.identity_key.clone()))
            .collect();
        set.sort();
        let first = self.sender.is_none() && self.switches.is_empty();
        if !first && set == self.last_set {
            return Ok(Vec::new());
        }
        self.last_set = set;
        self.stats.rotations += 1;
        let raw = random::<16>();
        let kid = u32::from_be_bytes(random::<4>());
        let mut keys = Vec::with_capacity(self.others.len());
        for (session, p) in self.others.iter_mut() {
            if p.secret.is_none() {
                p.secret = self.identity.agree(&p.identity_key).ok();
            }
            let Some(secret) = &p.secret else { continue };
            let k = pair_key(secret, &own, session)?;
            keys.push(json!({
                "user_id": p.user_id, "voice_session_id": session, "key_id": kid,
                "ciphertext": wrap(&k, &raw, kid)?,
            }));
        }
        self.stats.keys_wrapped += keys.len() as u64;
        let frames: Vec<String> = keys
            .chunks(KEYS_PER_FRAME)
            .map(|c| json!({"op": 16, "d": {"channel_id": self.channel_id, "keys": c}}).to_string())
            .collect();
        self.stats.key_frames_sent += frames.len() as u64;
        let key = FrameKey::derive(&raw, kid)?;
        if first {
            self.sender = Some(FrameSender::new(key));
        } else {
            self.switches.push_back((now + SWITCH_AFTER, key));
        }
        Ok(frames)
    }

    /// A VOICE_E2EE_KEY dispatch: unwraps the key and gives it to the receiver.
    pub fn on_key(&mut self, d: &Value, now: Instant, rx: &mut FrameReceiver) {
        if str_of(&d["channel_id"]).as_deref() != Some(self.channel_id.as_str()) {
            return;
        }
        let opened = (|| -> Result<(String, u32, [u8; 16])> {
            let own = self
                .own_session
                .clone()
                .ok_or_else(|| anyhow!("no session yet"))?;
            let from = str_of(&d["from_voice_session_id"]).ok_or_else(|| anyhow!("no sender"))?;
            let kid = d["key_id"].as_u64().ok_or_else(|| anyhow!("no key id"))? as u32;
            let p = self.others.get_mut(&from).ok_or(Early)?;
            if p.secret.is_none() {
                p.secret = Some(self.identity.agree(&p.identity_key)?);
            }
            let k = pair_key(p.secret.as_ref().expect("set"), &from, &own)?;
            let ct = d["ciphertext"]
                .as_str()
                .ok_or_else(|| anyhow!("no ciphertext"))?;
            Ok((p.user_id.clone(), kid, unwrap_key(&k, ct, kid)?))
        })();
        match opened.and_then(|(user, kid, raw)| Ok((user, kid, FrameKey::derive(&raw, kid)?))) {
            Ok((user, kid, key)) => {
                self.stats.keys_received += 1;
                rx.add(key);
                if let Some(prev) = self.latest_from.insert(user, kid) {
                    if prev != kid {
                        rx.retire(prev, now + KEEP_OLD);
                    }
                }
            }
            Err(e) if e.is::<Early>() && self.early_keys.len() < MAX_EARLY_KEYS => {
                self.early_keys.push((now, d.clone()));
            }
            Err(_) => self.stats.keys_failed += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_fail_without_the_key() {
        let raw = [7u8; 16];
        let mut tx = FrameSender::new(FrameKey::derive(&raw, 42).unwrap());
        let opus = b"an opus frame of some bytes";
        let f1 = tx.encrypt(opus);
        let f2 = tx.encrypt(opus);
        assert_eq!(f1.len(), opus.len() + 25, "9-byte header and 16-byte tag");
        assert_eq!(&f1[..5], &[0xBB, 0, 0, 0, 42]);
        assert_ne!(f1, f2, "a new counter, a new nonce");
        assert!(!f1.windows(opus.len()).any(|w| w == opus), "no plaintext");

        let mut rx = FrameReceiver::default();
        assert!(rx.open(&f1).is_none());
        assert_eq!(rx.no_key, 1);
        rx.add(FrameKey::derive(&raw, 42).unwrap());
        let pt = rx.open(&f2).expect("opens");
        assert_eq!(&pt[..], opus);
        rx.give_back(pt);
        let mut bad = f1.to_vec();
        bad[12] ^= 1;
        assert!(rx.open(&bad).is_none());
        assert_eq!(rx.failed, 1);
        rx.retire(42, Instant::now());
        rx.expire(Instant::now() + Duration::from_millis(1));
        assert!(rx.open(&f1).is_none(), "a retired key goes");
    }

    /// Two agents in one channel: each wraps its key for the other, which unwraps it and
    /// opens the other's frames; a third who joined later cannot open frames of the first key.
    #[test]
    fn agents_exchange_keys_and_a_newcomer_cannot_read_earlier_frames() {
        let t = Instant::now();
        let mut a = KeyAgent::new("1".into(), "c".into()).unwrap();
        let mut b = KeyAgent::new("2".into(), "c".into()).unwrap();
        let st = |u: &str, s: &str, ag: &KeyAgent| {
            json!({"user_id": u, "voice_session_id": s, "channel_id": "c",
                   "e2ee": {"identity_key": ag.identity.spki_b64}})
        };
        let (sa, sb) = (st("1", "10", &a), st("2", "20", &b));
        let (mut rxa, mut rxb) = (FrameReceiver::default(), FrameReceiver::default());
        for (ag, rx) in [(&mut a, &mut rxa), (&mut b, &mut rxb)] {
            ag.on_voice_state(&sa, t, rx);
            ag.on_voice_state(&sb, t, rx);
        }
        let later = t + ROTATE_AFTER;
        let fa = a.poll(later, &mut rxa).unwrap();
        assert_eq!(fa.len(), 1);
        let frame: Value = serde_json::from_str(&fa[0]).unwrap();
        let k = &frame["d"]["keys"][0];
        assert_eq!(k["voice_session_id"], "20");
        let dispatch = json!({"channel_id": "c", "from_user_id": "1",
            "from_voice_session_id": "10", "key_id": k["key_id"], "ciphertext": k["ciphertext"]});
        b.on_key(&dispatch, later, &mut rxb);
        assert_eq!(b.stats.keys_received, 1);
        let early = a
            .sender
            .as_mut()
            .expect("first key at once")
            .encrypt(b"hello");
        let pt = rxb.open(&early).expect("b opens a's frame");
        assert_eq!(&pt[..], b"hello");
        rxb.give_back(pt);

        // C joins: A rotates, but keeps its old key for SWITCH_AFTER.
        // C's key from A arrives before A's voice state: kept, and opened when the state comes.
        let mut c = KeyAgent::new("3".into(), "c".into()).unwrap();
        let mut rxc = FrameReceiver::default();
        let sc = st("3", "30", &c);
        c.on_voice_state(&sc, later, &mut rxc);
        a.on_voice_state(&sc, later, &mut rxa);
        let fa2 = a.poll(later + ROTATE_AFTER, &mut rxa).unwrap();
        let frame: Value = serde_json::from_str(&fa2[0]).unwrap();
        for k in frame["d"]["keys"].as_array().unwrap() {
            if k["voice_session_id"] == "30" {
                let d = json!({"channel_id": "c", "from_user_id": "1",
                    "from_voice_session_id": "10", "key_id": k["key_id"], "ciphertext": k["ciphertext"]});
                c.on_key(&d, later, &mut rxc);
            }
        }
        assert_eq!(
            (c.stats.keys_received, c.stats.keys_failed),
            (0, 0),
            "kept for later"
        );
        for s in [&sa, &sb] {
            c.on_voice_state(s, later, &mut rxc);
        }
        assert_eq!(c.stats.keys_received, 1, "opened once A's state came");
        assert!(
            rxc.open(&early).is_none(),
            "the newcomer cannot read earlier frames"
        );
        let still_old = a.sender.as_mut().unwrap().encrypt(b"x");
        assert!(rxc.open(&still_old).is_none(), "not switched yet");
        a.poll(later + ROTATE_AFTER + SWITCH_AFTER, &mut rxa)
            .unwrap();
        let new = a.sender.as_mut().unwrap().encrypt(b"after");
        let pt = rxc
            .open(&new)
            .expect("the newcomer reads frames of the new key");
        assert_eq!(&pt[..], b"after");
    }
}
