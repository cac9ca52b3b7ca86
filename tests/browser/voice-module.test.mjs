// web/js/voice.js on its own, with no server: a fake gateway in the page hands each offer
// (op 12) to a second RTCPeerConnection in the same page that plays "the SFU": it answers,
// sends a tone on every recvonly slot and receives the microphone. Checks the signalling the
// contract asks of the client: sendonly + N recvonly, max-bundle,
// VOICE_RENEGOTIATE → more slots and a new offer, VOICE_SLOTS → audio per user, mute, leave,
// and a rejoin with the previous voice_session_id after the connection fails.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, startServer, waitFor } from './lib.mjs';

let srv;
let B;

before(async () => {
  srv = await startServer();  // serves web/; the gateway below is an in-page stand-in
  B = await launchBrowser();
  await B.page.goto(`${srv.url}/voice-harness`);
  await B.page.evaluate(async () => {
    const { Voice } = await import('/js/voice.js');
    const listeners = new Map();
    const opListeners = new Map();
    const sent = [];
    const fire = (t, d) => { for (const fn of listeners.get(t) || []) fn(d); };
    const fireOp = (op, d) => { for (const fn of opListeners.get(op) || []) fn(d); };
    let sfu = null;
    let sessions = 0;
    const ctx = new AudioContext();
    const tone = () => {
      const o = ctx.createOscillator();
      const dst = ctx.createMediaStreamDestination();
      o.connect(dst);
      o.start();
      return dst.stream.getAudioTracks()[0];
    };
    async function answer(sdp) {
      if (!sfu) {
        sfu = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
        window.sfuPc = sfu;
      }
      await sfu.setRemoteDescription({ type: 'offer', sdp });
      for (const t of sfu.getTransceivers()) {
        if (t.receiver.track && t.currentDirection == null && t.direction !== 'inactive') {
          // the client's recvonly slots → we send a tone; its sendonly → we receive
          const remoteWantsToReceive = /a=recvonly/.test(sdp.split(/^m=/m).find((m) => m.includes(`a=mid:${t.mid}\r`)) || '');
          if (remoteWantsToReceive) {
            t.direction = 'sendonly';
            // Video slots stay empty here: this harness checks the audio side.
            if (!t.sender.track && t.receiver.track.kind === 'audio') await t.sender.replaceTrack(tone());
          } else {
            t.direction = 'recvonly';
          }
        }
      }
      const ans = await sfu.createAnswer();
      await sfu.setLocalDescription(ans);
      await new Promise((r) => { if (sfu.iceGatheringState === 'complete') r(); else { sfu.onicegatheringstatechange = () => sfu.iceGatheringState === 'complete' && r(); setTimeout(r, 1000); } });
      return sfu.localDescription.sdp;
    }
    const gateway = {
      status: 'ready',
      on(t, fn) { if (!listeners.has(t)) listeners.set(t, new Set()); listeners.get(t).add(fn); },
      onOp(op, fn) { if (!opListeners.has(op)) opListeners.set(op, new Set()); opListeners.get(op).add(fn); },
      send(op, d) {
        sent.push({ op, d: JSON.parse(JSON.stringify(d)) });
        if (op === 4) {
          const vsid = d.voice_session_id || `vs${++sessions}`;
          if (!d.voice_session_id && d.channel_id && d.self_mute === undefined) throw new Error('bad op 4');
          setTimeout(() => fire('VOICE_STATE_UPDATE', { ...d, user_id: 'me', voice_session_id: vsid, mute: false, deaf: false }), 10);
          window.lastVsid = vsid;
        }
        if (op === 12) {
          answer(d.sdp).then((sdp) => fireOp(13, { sdp, voice_session_id: window.lastVsid }));
        }
        return true;
      },
    };
    window.harness = {
      sent, fire,
      resetSfu() { if (sfu) sfu.close(); sfu = null; },
    };
    window.voice = new Voice({ gateway, getSelfId: () => 'me', getVoiceStates: () => [{ user_id: 'me' }, { user_id: 'u2' }] });
  });
});

after(async () => {
  await B?.close();
  await srv?.stop();
});

const ev = (fn, arg) => B.page.evaluate(fn, arg);

test('join: op 4, then an offer with sendonly mic + one recvonly slot per other participant + the video m-lines', async () => {
  await ev(() => window.voice.join('s1', 'c1'));
  await B.page.waitForFunction(() => window.voice.state === 'connected', null, { timeout: 15_000 });
  const r = await ev(() => {
    const ops = window.harness.sent.map((f) => f.op);
    const offer = window.harness.sent.find((f) => f.op === 12).d.sdp;
    return {
      ops,
      first4: window.harness.sent[0].d,
      mSections: offer.split(/^m=/m).slice(1).map((m) => `${m.split(' ')[0]} ${(/a=(sendonly|recvonly|sendrecv|inactive)/.exec(m) || [])[1]}`),
      videoTracks: window.harness.sent.find((f) => f.op === 12).d.video_tracks,
      bundle: /a=group:BUNDLE/.test(offer),
    };
  });
  assert.deepEqual(r.ops.slice(0, 2), [4, 12]);
  assert.deepEqual(r.first4, { server_id: 's1', channel_id: 'c1', self_mute: false, self_deaf: false, self_video: false, self_stream: false });
  // Audio first; then, in a fixed order, the camera and the screen (sendonly, no track while
  // off), the 9 video receive slots and the screen share's sound (sendonly, no track while off).
  assert.deepEqual(r.mSections, ['audio sendonly', 'audio recvonly', 'video sendonly', 'video sendonly', ...Array(9).fill('video recvonly'), 'audio sendonly']);
  assert.equal(Object.values(r.videoTracks).join(','), 'camera,screen,screen_audio');
  assert.ok(r.bundle, 'BUNDLE group in the offer');
  // The offer goes out without waiting for ICE gathering (the SFU is ICE-lite and learns the
  // client's address from its checks); this harness's answering pc connects all the same.
});

test('VOICE_SLOTS maps mids to users; audio elements follow; per-user volume applies', async () => {
  const mid = await ev(() => window.voice.recvTransceivers[0].mid);
  await ev((m) => window.harness.fire('VOICE_SLOTS', { slots: [{ mid: m, user_id: 'u2' }] }), mid);
  await ev(() => window.voice.setUserVolume('u2', 0.25));
  const r = await ev(() => [...document.querySelectorAll('#voice-audio audio')].map((a) => ({ mid: a.dataset.mid, user: a.dataset.userId, vol: a.volume })));
  assert.deepEqual(r, [{ mid, user: 'u2', vol: 0.25 }]);
  // the tone from the fake SFU arrives
  await waitFor(async () => (await ev(async () => {
    let n = 0;
    (await window.voice.pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp') n += s.packetsReceived; });
    return n;
  })) > 20, { message: 'packets received' });
});

test('VOICE_RENEGOTIATE adds recvonly slots and offers again', async () => {
  const before = await ev(() => window.voice.negotiations);
  await ev(() => window.harness.fire('VOICE_RENEGOTIATE', { audio_slots: 3 }));
  await B.page.waitForFunction((n) => window.voice.negotiations > n, before, { timeout: 10_000 });
  const r = await ev(() => ({ recv: window.voice.recvTransceivers.length, offers: window.harness.sent.filter((f) => f.op === 12).length }));
  assert.equal(r.recv, 3);
  assert.equal(r.offers, 2);
});

/** Whether the microphone is on the sendonly audio sender (muted: taken off, nothing is sent). */
const micOnSender = () => ev(async () => {
  await window.voice._micChain;
  const tx = window.voice.pc.getTransceivers().find((t) => t.direction === 'sendonly' && t.sender.track?.kind !== 'video' && t.mid === window.voice._micTx.mid);
  return !!tx && tx.sender.track === window.voice.sendTrack && !!window.voice.sendTrack;
});

test('mute disables the track, takes it off the sender and sends op 4 self_mute; deafen mutes playback', async () => {
  assert.equal(await micOnSender(), true);
  await ev(() => window.voice.toggleMute());
  let r = await ev(() => ({ enabled: window.voice.micTrack.enabled, last: window.harness.sent.at(-1) }));
  assert.equal(r.enabled, false);
  assert.equal(await micOnSender(), false, 'a muted microphone is not on the sender');
  assert.deepEqual(r.last, { op: 4, d: { server_id: 's1', channel_id: 'c1', self_mute: true, self_deaf: false, self_video: false, self_stream: false } });
  await ev(() => window.voice.toggleDeaf());
  r = await ev(() => ({ muted: [...document.querySelectorAll('#voice-audio audio')].every((a) => a.muted), last: window.harness.sent.at(-1).d }));
  assert.equal(r.muted, true);
  assert.equal(r.last.self_deaf, true);
  await ev(() => { window.voice.toggleDeaf(); window.voice.setMute(false); });
  r = await ev(() => ({ enabled: window.voice.micTrack.enabled, muted: [...document.querySelectorAll('#voice-audio audio')].some((a) => a.muted) }));
  assert.deepEqual(r, { enabled: true, muted: false });
  assert.equal(await micOnSender(), true, 'unmuted: the microphone is back on the sender');
});

test('push-to-talk: the mic is live only while the key is held', async () => {
  await ev(() => { document.activeElement?.blur(); window.voice.setPushToTalk(true, 'KeyV'); });
  assert.equal(await ev(() => window.voice.micTrack.enabled), false);
  assert.equal(await micOnSender(), false);
  await B.page.keyboard.down('v');
  assert.equal(await ev(() => window.voice.micTrack.enabled), true);
  assert.equal(await micOnSender(), true);
  await B.page.keyboard.up('v');
  assert.equal(await ev(() => window.voice.micTrack.enabled), false);
  assert.equal(await micOnSender(), false);
  // keys typed into a text field don't transmit
  await ev(() => { const i = document.createElement('input'); i.id = 'ptt-probe'; document.body.append(i); i.focus(); });
  await B.page.keyboard.down('v');
  assert.equal(await ev(() => window.voice.micTrack.enabled), false);
  await B.page.keyboard.up('v');
  await ev(() => document.getElementById('ptt-probe').remove());
  await ev(() => window.voice.setPushToTalk(false));
  assert.equal(await ev(() => window.voice.micTrack.enabled), true);
});

test('a failed connection rejoins with the same voice_session_id and a fresh pc', async () => {
  const r0 = await ev(() => ({ vsid: window.voice.voiceSessionId, pc: window.voice.pc }));
  assert.ok(r0.vsid);
  const oldPcId = await ev(() => { window.oldPc = window.voice.pc; return window.harness.sent.length; });
  await ev(() => window.harness.resetSfu());  // the "SFU" vanishes: ICE fails → rejoin after 3 s
  await B.page.waitForFunction(() => window.voice.state === 'reconnecting', null, { timeout: 20_000 });
  await B.page.waitForFunction(() => window.voice.state === 'connected' && window.voice.pc !== window.oldPc, null, { timeout: 30_000 });
  const rejoin = await ev((n) => window.harness.sent.slice(n).find((f) => f.op === 4).d, oldPcId);
  assert.equal(rejoin.channel_id, 'c1');
  assert.equal(rejoin.voice_session_id, r0.vsid);
  assert.equal(await ev(() => window.voice.recvTransceivers.length), 3, 'keeps its slot count');
});

test('leave: op 4 with channel_id null, pc closed, mic stopped', async () => {
  await ev(() => window.voice.leave());
  const r = await ev(() => ({ last: window.harness.sent.at(-1), pc: window.voice.pc, state: window.voice.state, audio: document.querySelectorAll('#voice-audio audio').length }));
  assert.deepEqual(r.last, { op: 4, d: { server_id: 's1', channel_id: null, self_mute: false, self_deaf: false, self_video: false, self_stream: false } });
  assert.equal(r.pc, null);
  assert.equal(r.state, 'idle');
  assert.equal(r.audio, 0);
  assert.deepEqual(B.errors, []);
});
