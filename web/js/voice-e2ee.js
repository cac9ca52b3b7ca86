// End-to-end encrypted voice channels (docs/e2ee.md): the identity key of this device, media keys
// per sender, their exchange through the gateway (op 16 / VOICE_E2EE_KEY) and rotation, the
// frame transforms (e2ee-worker.js) and the verification code. Methods of Voice, copied onto its
// prototype by voice.js like voice-video.js; state lives in `this.e2ee`.

import { Op } from './gateway.js';

const DB = 'confab-e2ee';
const KNOWN_KEY = 'confab.e2ee.knownKeys';
// Senders switch to a new key this long after handing it out (receivers have it by then);
// receivers keep a sender's previous key this long after a newer one arrived.
const SWITCH_AFTER_MS = 1000;
const KEEP_OLD_MS = 5000;

const b64 = (u8) => btoa(String.fromCharCode(...new Uint8Array(u8)));
const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const enc = new TextEncoder();

function idb() {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open(DB, 1);
    r.onupgradeneeded = () => r.result.createObjectStore('identity');
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
function idbReq(db, mode, fn) {
  return new Promise((resolve, reject) => {
    const req = fn(db.transaction('identity', mode).objectStore('identity'));
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** This device's identity key pair for `userId`: ECDH P-256, the private key non-extractable,
 * kept in IndexedDB (a CryptoKey survives structured cloning without exposing its bytes). */
export async function identityFor(userId) {
  const db = await idb();
  let pair = await idbReq(db, 'readonly', (s) => s.get(userId));
  if (!pair) {
    pair = await crypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
    await idbReq(db, 'readwrite', (s) => s.put(pair, userId));
  }
  const spki = b64(await crypto.subtle.exportKey('spki', pair.publicKey));
  return { privateKey: pair.privateKey, spki };
}

/** 30 digits in groups of 5 from the participants' (user id, identity key) list: the same on
 * every page of the call exactly when everyone sees the same keys. */
export async function verificationCode(entries) {
  const text = entries.map(([u, k]) => `${u}:${k}`).sort().join('\n');
  const h = new Uint8Array(await crypto.subtle.digest('SHA-256', enc.encode(`Confab e2ee code 1\n${text}`)));
  const groups = [];
  for (let g = 0; g < 6; g++) {
    let n = 0;
    for (let i = 0; i < 5; i++) n = n * 256 + h[g * 5 + i];
    groups.push(String(n % 100000).padStart(5, '0'));
  }
  return groups.join(' ');
}

export function initE2ee(v) {
  v.e2ee = {
    active: false, identity: null, worker: null, code: null, changedKeys: [],
    sendKid: null, pendingTimers: new Set(), rotateTimer: null, peers: '', received: new Map(), earlyKeys: [],
    attached: new WeakSet(), calls: new Map(), nextCall: 1,
  };
  v.gateway.on('VOICE_E2EE_KEY', (d) => v._onE2eeKey(d));
  // Any voice state may change who is in the call (a leave names no channel); rotating is a
  // no-op when the set of participants and keys is the same.
  v.gateway.on('VOICE_STATE_UPDATE', (d) => { if (v.e2ee.active && d) v._e2eeMembersChanged(); });
}

export class VoiceE2ee {
  get e2eeOn() { return !!(this.e2ee && this.e2ee.active); }

  /** Before joining: whether the channel is encrypted, and if so the identity key at hand. */
  async _e2eePrepare(channelId) {
    const s = this.e2ee;
    s.active = !!(this.isE2ee && this.isE2ee(channelId));
    s.code = null;
    s.changedKeys = [];
    s.peers = '';
    if (!s.active) return;
    if (!s.identity) s.identity = await identityFor(this.getSelfId());
    if (!s.worker) {
      s.worker = new Worker(new URL('./e2ee-worker.js', import.meta.url));
      s.worker.onmessage = (e) => {
        const c = s.calls.get(e.data.id);
        if (c) { s.calls.delete(e.data.id); c(e.data.reply); }
      };
    }
    s.worker.postMessage({ type: 'reset' });
    s.sendKid = null;
  }

  /** A request to the worker, answered by its reply (stats and the test hooks). */
  e2eeCall(msg) {
    const s = this.e2ee;
    if (!s.worker) return Promise.resolve(null);
    const id = s.nextCall++;
    return new Promise((resolve) => { s.calls.set(id, resolve); s.worker.postMessage({ ...msg, id }); });
  }

  /** op 4's e2ee declaration. */
  _e2eeDecl() { return this.e2eeOn && this.e2ee.identity ? { identity_key: this.e2ee.identity.spki } : undefined; }

  /** pc options: the createEncodedStreams fallback needs them before any transceiver exists. */
  _e2eePcOptions() {
    return this.e2eeOn && !('RTCRtpScriptTransform' in window) ? { encodedInsertableStreams: true } : {};
  }

  /** Puts every sender and receiver of the pc through the worker (idempotent: new slots too).
   * Video is VP8 only in an encrypted call: the clear bytes are defined for its frames. */
  _e2eeAttach(pc) {
    if (!this.e2eeOn || !pc) return;
    const s = this.e2ee;
    const script = 'RTCRtpScriptTransform' in window;
    const attach = (end, dir, kind) => {
      if (s.attached.has(end)) return;
      s.attached.add(end);
      if (script) {
        end.transform = new RTCRtpScriptTransform(s.worker, { dir, kind });
      } else {
        const { readable, writable } = end.createEncodedStreams();
        s.worker.postMessage({ type: 'stream', readable, writable, dir, kind }, [readable, writable]);
      }
    };
    for (const t of pc.getTransceivers()) {
      const kind = t.receiver.track.kind;
      if (kind === 'video' && !s.attached.has(t) && t.setCodecPreferences) {
        s.attached.add(t);
        const caps = (RTCRtpReceiver.getCapabilities('video') || { codecs: [] }).codecs;
        const vp8 = caps.filter((c) => /video\/(vp8|rtx)$/i.test(c.mimeType));
        try { t.setCodecPreferences(vp8); } catch { /* keep the defaults */ }
      }
      attach(t.sender, 'send', kind);
      attach(t.receiver, 'recv', kind);
    }
  }

  /** The other participants with their identity keys, from the voice states. */
  _e2eeOthers() {
    const self = this.getSelfId();
    return this.getVoiceStates(this.channelId)
      .filter((st) => st.user_id !== self && st.e2ee && st.e2ee.identity_key);
  }

  /** Someone joined or left (or our own state arrived): a new key for the new set of people.
   * The changes of the next 100 ms make one rotation; a later change is not allowed to push it
   * back (a steady stream of joins would otherwise starve every newcomer of keys). */
  _e2eeMembersChanged() {
    const s = this.e2ee;
    // Keys that came before their sender's voice state (they travel separately): try again,
    // once every handler of this voice state (the store's too) has run.
    if (s.earlyKeys.length) {
      setTimeout(() => {
        const now = Date.now();
        const early = s.earlyKeys.filter((k) => now - k.at < KEEP_OLD_MS);
        s.earlyKeys = [];
        for (const k of early) this._onE2eeKey(k.d, k.at);
      }, 0);
    }
    if (s.rotateTimer) return;
    s.rotateTimer = setTimeout(() => { s.rotateTimer = null; this._e2eeRotate(); }, 100);
  }

  async _e2eeRotate() {
    const s = this.e2ee;
    if (!this.e2eeOn || !this.channelId || !this.voiceSessionId) return;
    const others = this._e2eeOthers();
    const key = others.map((o) => `${o.user_id}/${o.voice_session_id}/${o.e2ee.identity_key}`).sort().join(',');
    const first = s.sendKid == null;
    if (!first && key === s.peers) return;
    s.peers = key;
    this._e2eeCheckKnown(others);
    this._e2eeUpdateCode(others);
    const raw = crypto.getRandomValues(new Uint8Array(16));
    const kid = crypto.getRandomValues(new Uint32Array(1))[0];
    const keys = [];
    for (const o of others) {
      try {
        keys.push({
          user_id: o.user_id, voice_session_id: o.voice_session_id, key_id: kid,
          ciphertext: await this._e2eeWrap(raw, kid, o),
        });
      } catch (e) { console.warn('e2ee: cannot wrap for', o.user_id, e); }
    }
    for (let i = 0; i < keys.length; i += 100) {
      this.gateway.send(Op.VOICE_E2EE_KEYS, { channel_id: this.channelId, keys: keys.slice(i, i + 100) });
    }
    // Each key is used 1 s after it went out, even when a newer one follows within that second:
    // the newer one is used 1 s after it, so keys in use lag the joins by 1 s, never more.
    const use = () => {
      s.pendingTimers.delete(timer);
      s.sendKid = kid;
      s.worker.postMessage({ type: 'send-key', kid, raw });
      this._changed();
    };
    // The first key goes to use at once (nobody hears us before it anyway); later ones after the
    // others had time to receive them.
    let timer = null;
    if (first) use(); else { timer = setTimeout(use, SWITCH_AFTER_MS); s.pendingTimers.add(timer); }
  }

  /** AES-GCM key shared with one participant: ECDH of the identity keys, HKDF-SHA-256 bound to
   * both voice sessions (sender first). */
  async _e2eePairKey(theirSpki, fromSession, toSession) {
    const pub = await crypto.subtle.importKey('spki', unb64(theirSpki), { name: 'ECDH', namedCurve: 'P-256' }, false, []);
    const bits = await crypto.subtle.deriveBits({ name: 'ECDH', public: pub }, this.e2ee.identity.privateKey, 256);
    const base = await crypto.subtle.importKey('raw', bits, 'HKDF', false, ['deriveKey']);
    return crypto.subtle.deriveKey(
      { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: enc.encode(`Confab e2ee wrap 1 ${fromSession} ${toSession}`) },
      base, { name: 'AES-GCM', length: 128 }, false, ['encrypt', 'decrypt'],
    );
  }

  async _e2eeWrap(raw, kid, to) {
    const k = await this._e2eePairKey(to.e2ee.identity_key, this.voiceSessionId, to.voice_session_id);
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const ct = await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: enc.encode(String(kid)) }, k, raw);
    const out = new Uint8Array(12 + ct.byteLength);
    out.set(iv);
    out.set(new Uint8Array(ct), 12);
    return b64(out);
  }

  async _onE2eeKey(d, at = Date.now()) {
    const s = this.e2ee;
    if (!this.e2eeOn || !d || d.channel_id !== this.channelId) return;
    const from = this._e2eeOthers().find((o) => o.user_id === d.from_user_id && o.voice_session_id === d.from_voice_session_id);
    if (!from) {
      // Kept for a few seconds: the sender's voice state may still be on its way.
      if (s.earlyKeys.length < 64) s.earlyKeys.push({ d, at });
      return;
    }
    try {
      const k = await this._e2eePairKey(from.e2ee.identity_key, d.from_voice_session_id, this.voiceSessionId);
      const buf = unb64(d.ciphertext);
      const raw = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: buf.subarray(0, 12), additionalData: enc.encode(String(d.key_id)) }, k, buf.subarray(12));
      s.worker.postMessage({ type: 'recv-key', kid: d.key_id, raw: new Uint8Array(raw), user: d.from_user_id });
      // The sender's previous key stays for frames still in flight, then goes.
      const prev = s.received.get(d.from_user_id);
      s.received.set(d.from_user_id, d.key_id);
      if (prev != null && prev !== d.key_id) setTimeout(() => s.worker.postMessage({ type: 'drop-key', kid: prev }), KEEP_OLD_MS);
    } catch (e) {
      console.warn('e2ee: a key from', d.from_user_id, 'did not open', e);
    }
  }

  async _e2eeUpdateCode(others) {
    const entries = others.map((o) => [o.user_id, o.e2ee.identity_key]);
    entries.push([this.getSelfId(), this.e2ee.identity.spki]);
    this.e2ee.code = await verificationCode(entries);
    this._changed();
  }

  /** Flags a user whose identity key differs from the one this device saw before. */
  _e2eeCheckKnown(others) {
    let known = {};
    try { known = JSON.parse(localStorage.getItem(KNOWN_KEY) || '{}') || {}; } catch { known = {}; }
    for (const o of others) {
      const was = known[o.user_id];
      if (was && was !== o.e2ee.identity_key && !this.e2ee.changedKeys.includes(o.user_id)) this.e2ee.changedKeys.push(o.user_id);
      known[o.user_id] = o.e2ee.identity_key;
    }
    try { localStorage.setItem(KNOWN_KEY, JSON.stringify(known)); } catch { /* no storage */ }
  }

  _e2eeStop() {
    const s = this.e2ee;
    if (!s) return;
    for (const t of s.pendingTimers) clearTimeout(t);
    s.pendingTimers.clear();
    clearTimeout(s.rotateTimer);
    s.rotateTimer = null;
    s.sendKid = null;
    s.received.clear();
    s.earlyKeys = [];
    s.peers = '';
    s.code = null;
    if (s.worker) s.worker.postMessage({ type: 'reset' });
    s.active = false;
  }
}
