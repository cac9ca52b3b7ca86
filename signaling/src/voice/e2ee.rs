//! End-to-end encrypted voice channels (docs/e2ee.md): the server's part is small on purpose.
//! It checks that everyone in an e2ee channel declared an identity key (so encrypted and plain
//! senders never mix), carries those public keys in voice states, and relays the media keys
//! each client wraps to each other participant's identity key (op 16) — ciphertext it cannot
//! open — to exactly the named voice sessions of the same channel.

use super::{registry, VoiceError, VoiceService};
use crate::bus::BusEvent;
use crate::gateway::events::Event;
use crate::gateway::hub::{Session, Target};
use base64::Engine;
use confab_chat::{ChannelId, Snowflake, UserId};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// Voice error code: the client's e2ee declaration does not match the channel (a plain
/// client joining an e2ee channel, an e2ee client joining a plain one, or op 16 in a plain
/// channel).
pub const E2EE_MISMATCH: u32 = 4426;

/// DER prefix of a P-256 public key in SubjectPublicKeyInfo form (id-ecPublicKey,
/// prime256v1, uncompressed point follows): WebCrypto's `exportKey("spki")`.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// The prefix, then 0x04 and two 32-byte coordinates.
const P256_SPKI_LEN: usize = 26 + 65;

/// Most recipients in one op 16 frame (a client sends more frames for larger channels).
pub const MAX_KEYS_PER_FRAME: usize = 100;
/// Longest wrapped key, in base64 characters (the web client's are 60: IV, key, tag).
pub const MAX_CIPHERTEXT_CHARS: usize = 256;

/// Parses op 4's `e2ee` field: `{"identity_key": <base64 SPKI>}`.
pub fn parse_declaration(d: &Value) -> Result<Arc<str>, VoiceError> {
    let bad = || {
        VoiceError::BadRequest("e2ee.identity_key must be a base64 SPKI P-256 public key".into())
    };
    let key = d
        .get("identity_key")
        .and_then(Value::as_str)
        .ok_or_else(bad)?;
    if key.len() > 200 {
        return Err(bad());
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| bad())?;
    if der.len() != P256_SPKI_LEN || der[..26] != P256_SPKI_PREFIX || der[26] != 0x04 {
        return Err(bad());
    }
    Ok(key.into())
}

/// Checks op 4's declaration against the channel: the identity key when it is e2ee.
pub fn check_join(
    channel_e2ee: bool,
    decl: Option<&Value>,
) -> Result<Option<Arc<str>>, VoiceError> {
    match (channel_e2ee, decl.filter(|d| !d.is_null())) {
        (true, Some(d)) => parse_declaration(d).map(Some),
        (true, None) => Err(VoiceError::E2eeMismatch(
            "this channel is end-to-end encrypted: join with e2ee.identity_key".into(),
        )),
        (false, Some(_)) => Err(VoiceError::E2eeMismatch(
            "this channel is not end-to-end encrypted".into(),
        )),
        (false, None) => Ok(None),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysReq {
    channel_id: ChannelId,
    keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    user_id: UserId,
    voice_session_id: Snowflake,
    key_id: u32,
    ciphertext: String,
}

fn parse_keys(d: Value) -> Result<KeysReq, VoiceError> {
    let req: KeysReq = serde_json::from_value(d).map_err(|e| {
        VoiceError::BadRequest(format!(
            "VOICE_E2EE_KEYS: expected {{channel_id, keys: [{{user_id, voice_session_id, key_id, ciphertext}}]}}: {e}"
        ))
    })?;
    if req.keys.len() > MAX_KEYS_PER_FRAME {
        return Err(VoiceError::BadRequest(format!(
            "VOICE_E2EE_KEYS: at most {MAX_KEYS_PER_FRAME} keys per frame"
        )));
    }
    for k in &req.keys {
        let ok = k.ciphertext.len() <= MAX_CIPHERTEXT_CHARS
            && !k.ciphertext.is_empty()
            && base64::engine::general_purpose::STANDARD
                .decode(&k.ciphertext)
                .is_ok();
        if !ok {
            return Err(VoiceError::BadRequest(format!(
                "VOICE_E2EE_KEYS: ciphertext must be base64, at most {MAX_CIPHERTEXT_CHARS} characters"
            )));
        }
    }
    Ok(req)
}

impl VoiceService {
    /// op 16: relays wrapped media keys to the named participants of the sender's e2ee
    /// channel. Recipients who are not (or no longer) in that channel with that voice session
    /// are skipped: a key never reaches anyone outside the call.
    pub fn e2ee_keys(&self, session: &Arc<Session>, d: Value) -> Result<(), VoiceError> {
        let req = parse_keys(d)?;
        let sender = {
            let reg = self.registry.lock();
            reg.by_user(session.user_id)
                .filter(|p| p.gateway_session == session.id && p.channel_id == req.channel_id)
                .cloned()
                .ok_or(VoiceError::NotJoined)?
        };
        if sender.identity_key.is_none() {
            return Err(VoiceError::E2eeMismatch(
                "this channel is not end-to-end encrypted".into(),
            ));
        }
        metrics::counter!("confab_voice_e2ee_key_frames_total").increment(1);
        for k in req.keys {
            if k.user_id == sender.user_id {
                continue;
            }
            let payload = serde_json::json!({
                "channel_id": sender.channel_id,
                "from_user_id": sender.user_id,
                "from_voice_session_id": sender.id,
                "key_id": k.key_id,
                "ciphertext": k.ciphertext,
            });
            let local = self
                .registry
                .lock()
                .by_user(k.user_id)
                .filter(|p| {
                    p.id == k.voice_session_id
                        && p.channel_id == sender.channel_id
                        && p.identity_key.is_some()
                })
                .map(|p| p.gateway_session.clone());
            if let Some(gateway_session) = local {
                self.dispatcher.emit(
                    Target::Session(gateway_session),
                    Event::VoiceE2eeKey,
                    &payload,
                );
                continue;
            }
            if !self.clustered {
                continue;
            }
            // On another node: that node checks again against its own registry and delivers
            // to the session there (a gateway session lives on one node).
            let remote_ok = self.remote.lock().of_user(k.user_id).is_some_and(|s| {
                s.voice_session_id == k.voice_session_id
                    && s.channel_id == Some(sender.channel_id)
                    && s.e2ee.is_some()
            });
            if remote_ok {
                self.dispatcher.tell_others(&BusEvent::VoiceE2eeKey {
                    channel_id: sender.channel_id,
                    to: k.voice_session_id,
                    payload,
                });
            }
        }
        Ok(())
    }

    /// `BusEvent::VoiceE2eeKey`: delivers a relayed key to this node's participant, if the
    /// named voice session is here and still in that channel.
    pub fn deliver_e2ee_key(&self, channel_id: ChannelId, to: Snowflake, payload: &Value) {
        let session = self
            .registry
            .lock()
            .by_id(to)
            .filter(|p| p.channel_id == channel_id && p.identity_key.is_some())
            .map(|p| p.gateway_session.clone());
        if let Some(session) = session {
            self.dispatcher
                .deliver_here(&Target::Session(session), Event::VoiceE2eeKey, payload);
        }
    }

    /// Whether anyone is connected to a voice channel, on this node or another.
    pub fn channel_occupied(&self, channel_id: ChannelId) -> bool {
        let here = self
            .registry
            .lock()
            .all_states()
            .iter()
            .any(|s| s.channel_id == Some(channel_id));
        here || self
            .remote
            .lock()
            .all()
            .any(|s: &registry::VoiceState| s.channel_id == Some(channel_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spki() -> String {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.push(4);
        der.extend([7u8; 64]);
        base64::engine::general_purpose::STANDARD.encode(der)
    }

    #[test]
    fn declarations_must_match_the_channel() {
        let key = serde_json::json!({"identity_key": spki()});
        assert!(check_join(true, Some(&key)).unwrap().is_some());
        assert!(check_join(false, None).unwrap().is_none());
        assert_eq!(check_join(true, None).unwrap_err().code(), E2EE_MISMATCH);
        assert_eq!(
            check_join(true, Some(&Value::Null)).unwrap_err().code(),
            E2EE_MISMATCH
        );
        assert_eq!(
            check_join(false, Some(&key)).unwrap_err().code(),
            E2EE_MISMATCH
        );
        for bad in [
            serde_json::json!({"identity_key": "AAAA"}),
            serde_json::json!({"identity_key": 5}),
            serde_json::json!({}),
            serde_json::json!({"identity_key": "not base64!"}),
        ] {
            assert_eq!(
                check_join(true, Some(&bad)).unwrap_err().code(),
                4400,
                "{bad}"
            );
        }
    }

    #[test]
    fn key_frames_are_bounded() {
        let entry = serde_json::json!({"user_id": "1", "voice_session_id": "2", "key_id": 3, "ciphertext": "AAAA"});
        assert!(parse_keys(serde_json::json!({"channel_id": "9", "keys": [entry]})).is_ok());
        let many: Vec<Value> = (0..=MAX_KEYS_PER_FRAME).map(|_| entry.clone()).collect();
        assert!(parse_keys(serde_json::json!({"channel_id": "9", "keys": many})).is_err());
        let long = serde_json::json!({"user_id": "1", "voice_session_id": "2", "key_id": 3, "ciphertext": "A".repeat(300)});
        assert!(parse_keys(serde_json::json!({"channel_id": "9", "keys": [long]})).is_err());
        let neg = serde_json::json!({"user_id": "1", "voice_session_id": "2", "key_id": -1, "ciphertext": "AAAA"});
        assert!(parse_keys(serde_json::json!({"channel_id": "9", "keys": [neg]})).is_err());
        assert!(parse_keys(serde_json::json!({"keys": []})).is_err());
    }
}
