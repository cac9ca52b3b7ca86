// End-to-end encryption of media frames (docs/e2ee.md), in a worker so that no frame work runs
// on the page's thread. Encoded frames arrive through RTCRtpScriptTransform (onrtctransform) or,
// in browsers without it, as the streams of createEncodedStreams posted by voice-e2ee.js.
//
// Frame format, after SFrame (RFC 9605): [clear codec bytes][header][AES-GCM ciphertext + tag].
// Header: one byte 0xBB (X=1: a 4-byte KID follows; Y=1: a 4-byte counter follows), the KID, the
// counter (big-endian). Nonce = salt XOR counter; additional data = clear bytes + header. Key and
// salt are derived from the sender's 16-byte base key with HKDF-SHA-256. Clear codec bytes: none
// for audio; for VP8 the 10 bytes of a keyframe's header (frame tag, start code, size) or the 3
// of a delta frame's tag, which the SFU reads to find keyframes and which depacketizers need.

const HEADER = 0xbb;
const HEADER_LEN = 9;
const enc = new TextEncoder();

let send = null;                    // { kid, key, salt, ctr }
const recv = new Map();             // kid -> { key, salt, user, raw }
const stats = { encrypted: 0, decrypted: 0, failed: 0, noKey: 0 };
let capture = null;                 // test hook: { want, frames: [{plain, cipher}] }

async function derive(raw, kid) {
  const base = await crypto.subtle.importKey('raw', raw, 'HKDF', false, ['deriveKey', 'deriveBits']);
  const info = (label) => enc.encode(`Confab SFrame 1 ${label} ${kid}`);
  const key = await crypto.subtle.deriveKey(
    { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: info('key') },
    base, { name: 'AES-GCM', length: 128 }, false, ['encrypt', 'decrypt'],
  );
  const salt = new Uint8Array(await crypto.subtle.deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: info('salt') }, base, 96,
  ));
  return { key, salt };
}

function nonce(salt, ctr) {
  const iv = salt.slice();
  for (let i = 0; i < 4; i++) iv[11 - i] ^= (ctr >>> (8 * i)) & 0xff;
  return iv;
}

/** Bytes left in clear at the front of a frame (see the top of this file). */
function clearLen(kind, data) {
  if (kind !== 'video' || data.length === 0) return 0;
  // VP8 frame tag, bit 0 of the first byte: 0 = keyframe.
  return Math.min(data.length, (data[0] & 1) === 0 ? 10 : 3);
}

async function encryptFrame(kind, data) {
  const k = send;
  const clear = clearLen(kind, data);
  const ctr = k.ctr;
  k.ctr = (k.ctr + 1) >>> 0;
  const head = new Uint8Array(clear + HEADER_LEN);
  head.set(data.subarray(0, clear));
  const dv = new DataView(head.buffer);
  head[clear] = HEADER;
  dv.setUint32(clear + 1, k.kid);
  dv.setUint32(clear + 5, ctr);
  const ct = new Uint8Array(await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv: nonce(k.salt, ctr), additionalData: head, tagLength: 128 },
    k.key, data.subarray(clear),
  ));
  const out = new Uint8Array(head.length + ct.length);
  out.set(head);
  out.set(ct, head.length);
  return out;
}

/** The plaintext, or null when no key in `keys` opens it. */
async function decryptFrame(kind, data, keys) {
  const clear = clearLen(kind, data);
  if (data.length < clear + HEADER_LEN + 16 || data[clear] !== HEADER) return null;
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const kid = dv.getUint32(clear + 1);
  const ctr = dv.getUint32(clear + 5);
  const k = keys.get(kid);
  if (!k) { stats.noKey += 1; return null; }
  try {
    const pt = new Uint8Array(await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: nonce(k.salt, ctr), additionalData: data.subarray(0, clear + HEADER_LEN), tagLength: 128 },
      k.key, data.subarray(clear + HEADER_LEN),
    ));
    const out = new Uint8Array(clear + pt.length);
    out.set(data.subarray(0, clear));
    out.set(pt, clear);
    return out;
  } catch {
    return null;
  }
}

function pipe(readable, writable, dir, kind) {
  const transform = new TransformStream({
    async transform(frame, ctl) {
      const data = new Uint8Array(frame.data);
      if (dir === 'send') {
        // No key yet (the first milliseconds of a join): nothing leaves in clear.
        if (!send || data.length === 0) return;
        const out = await encryptFrame(kind, data);
        if (capture && kind === 'audio' && capture.frames.length < capture.want) {
          capture.frames.push({ plain: Array.from(data), cipher: Array.from(out) });
        }
        frame.data = out.buffer;
        stats.encrypted += 1;
        ctl.enqueue(frame);
      } else {
        if (data.length === 0) return;
        const out = await decryptFrame(kind, data, recv);
        if (!out) { stats.failed += 1; return; }
        frame.data = out.buffer;
        stats.decrypted += 1;
        ctl.enqueue(frame);
      }
    },
  });
  readable.pipeThrough(transform).pipeTo(writable).catch(() => {});
}

self.onrtctransform = (e) => {
  const { dir, kind } = e.transformer.options;
  pipe(e.transformer.readable, e.transformer.writable, dir, kind);
};

async function tryDecrypt(frames, rawKeys) {
  const keys = new Map();
  for (const { kid, raw } of rawKeys) keys.set(kid, await derive(new Uint8Array(raw), kid));
  let opened = 0;
  for (const f of frames) if (await decryptFrame('audio', new Uint8Array(f), keys)) opened += 1;
  return opened;
}

self.onmessage = async (e) => {
  const m = e.data;
  let reply;
  switch (m.type) {
    case 'stream': pipe(m.readable, m.writable, m.dir, m.kind); return;
    case 'send-key': {
      const d = await derive(new Uint8Array(m.raw), m.kid);
      send = { kid: m.kid, key: d.key, salt: d.salt, ctr: 0 };
      break;
    }
    case 'recv-key': {
      // A key id another participant already uses is not taken over (one participant cannot
      // make another's frames undecryptable by reusing its id).
      const had = recv.get(m.kid);
      if (had && had.user !== m.user) break;
      const d = await derive(new Uint8Array(m.raw), m.kid);
      recv.set(m.kid, { ...d, user: m.user, raw: Array.from(m.raw) });
      break;
    }
    case 'drop-key': recv.delete(m.kid); break;
    case 'reset': send = null; recv.clear(); break;
    case 'stats': reply = { ...stats, sendKid: send ? send.kid : null, recvKids: [...recv.keys()] }; break;
    // Test hooks: capture what this page sends, list the keys it holds, try frames with keys.
    case 'capture': capture = { want: m.n, frames: [] }; break;
    case 'captured': reply = capture ? capture.frames : []; break;
    case 'keys': reply = [...recv.entries()].map(([kid, k]) => ({ kid, raw: k.raw, user: k.user })); break;
    case 'try': reply = await tryDecrypt(m.frames, m.keys); break;
    default: return;
  }
  if (m.id != null) self.postMessage({ id: m.id, reply });
};
