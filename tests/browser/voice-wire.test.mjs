// What the user's switches do on the wire, and what a late joiner sees, through the real UI and
// the real SFU:
// - muted (the mute button), a browser sends no audio, and the SFU forwards none
//   (confab_sfu_packets_forwarded_total stays flat); unmuted, both resume;
// - camera off, the browser sends no video and the SFU forwards none;
// - someone who loads the app, and then joins, while another talks sees that one speaking at
//   once, from the voice states (before any VOICE_SPEAKING about them arrives).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  startServer, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi, joinViaUi,
  makeSpeechWav, uniqueName, waitFor, sleep } from './lib.mjs';

let server;
const peers = [];  // {name, b, id}
const serverName = uniqueName('Wire ');
let joined = false;

const voiceLink = (page) => page.locator('[data-testid="channel-link"][data-channel-type="voice"][data-channel-name="General"]');

/** Speech with its pauses cut out: whoever sends it speaks without a break. */
function continuousSpeech() {
  const speech = makeSpeechWav();
  const out = path.join(path.dirname(speech), 'speech-continuous.wav');
  if (!fs.existsSync(out)) execFileSync('sox', [speech, out, 'silence', '-l', '1', '0.02', '1%', '-1', '0.02', '1%']);
  return out;
}

/** confab_sfu_packets_forwarded_total{kind} from /metrics. */
async function forwarded(kind) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('confab_sfu_packets_forwarded_total') && l.includes(`kind="${kind}"`));
  return line ? Number(line.trim().split(/\s+/).pop()) : 0;
}

/** RTP packets this page sent of `kind` (outbound-rtp, all encodings). */
function sent(page, kind) {
  return page.evaluate(async (k) => {
    let n = 0;
    (await window.confabVoice.pc.getStats()).forEach((s) => { if (s.type === 'outbound-rtp' && s.kind === k) n += s.packetsSent || 0; });
    return n;
  }, kind);
}

/** How much `f()` grows over `ms`. */
async function growth(f, ms) {
  const a = await f();
  await sleep(ms);
  return (await f()) - a;
}

before(async () => {
  server = await startServer();
  const wav = continuousSpeech();
  for (const name of ['wes', 'xan', 'yul']) peers.push({ name: uniqueName(name), b: await launchBrowser({ audioFile: wav }) });
});

after(async () => {
  for (const p of peers) await p.b.close();
  await server?.stop();
});

test('two users join voice', async () => {
  const [a, b, c] = peers;
  for (const p of peers) {
    await registerViaUi(p.b.page, server.url, p.name);
    p.id = await p.b.page.evaluate(() => window.confab.store.me.id);
  }
  await createServerViaUi(a.b.page, serverName);
  const link = await createInviteViaUi(a.b.page);
  await joinViaUi(b.b.page, link, serverName);
  await joinViaUi(c.b.page, link, serverName);
  for (const p of [a, b]) {
    await voiceLink(p.b.page).click();
    await p.b.page.waitForFunction(() => window.confabVoice && window.confabVoice.state === 'connected', null, { timeout: 30_000 });
  }
  await waitFor(async () => (await growth(() => forwarded('audio'), 1000)) > 50, { timeout: 20_000, message: 'audio forwarded both ways' });
  joined = true;
});

test('muted users send nothing and the SFU forwards nothing; unmuted, audio resumes', async () => {
  assert.ok(joined, 'needs the joins');
  const [a, b] = peers;
  for (const p of [a, b]) {
    await p.b.page.getByTestId('voice-mute').click();
    await p.b.page.getByRole('button', { name: 'Unmute' }).waitFor();
  }
  await sleep(1000);  // in-flight packets land
  const fwd = await growth(() => forwarded('audio'), 2000);
  const out = await Promise.all([a, b].map((p) => growth(() => sent(p.b.page, 'audio'), 2000)));
  // ~100 packets per user in 2 s when unmuted; a disabled track would still send ~50 per second.
  assert.ok(fwd <= 5, `SFU forwarded ${fwd} audio packets in 2 s with everyone muted`);
  for (const [i, n] of out.entries()) assert.ok(n <= 5, `${peers[i].name} sent ${n} audio packets in 2 s while muted`);
  for (const p of [a, b]) {
    await p.b.page.getByTestId('voice-mute').click();
    await p.b.page.getByRole('button', { name: 'Mute', exact: true }).waitFor();
  }
  await sleep(500);
  const back = await growth(() => forwarded('audio'), 2000);
  assert.ok(back > 100, `audio forwarded again after unmuting: ${back} packets in 2 s`);
});

test('camera off: the browser sends no video and the SFU forwards none', async () => {
  assert.ok(joined, 'needs the joins');
  const [a, b] = peers;
  await a.b.page.getByTestId('voice-camera').click();
  await a.b.page.waitForFunction(() => window.confabVoice.cameraOn, null, { timeout: 20_000 });
  await b.b.page.locator(`[data-testid="video-tile"][data-user-id="${a.id}"][data-track="camera"]`).waitFor({ timeout: 15_000 });
  await waitFor(async () => (await growth(() => forwarded('video'), 1000)) > 20, { timeout: 30_000, message: 'camera forwarded' });
  await a.b.page.getByTestId('voice-camera').click();
  await a.b.page.waitForFunction(() => !window.confabVoice.cameraOn, null, { timeout: 10_000 });
  await sleep(1000);
  const fwd = await growth(() => forwarded('video'), 2000);
  const out = await growth(() => sent(a.b.page, 'video'), 2000);
  assert.ok(fwd <= 3, `SFU forwarded ${fwd} video packets in 2 s with the camera off`);
  assert.ok(out <= 3, `the browser sent ${out} video packets in 2 s with the camera off`);
});

test('someone who arrives while another talks sees them speaking at once', async () => {
  assert.ok(joined, 'needs the joins');
  const [a, , c] = peers;
  // A talks (continuous speech): its speaking is on.
  await waitFor(() => peers[1].b.page.evaluate((id) => !!window.confabVoice.speaking[id], a.id), { timeout: 20_000, interval: 100, message: 'A speaking' });
  // C loads the app now; every VOICE_SPEAKING it receives is recorded from the first frame on.
  await c.b.page.addInitScript(() => {
    window.__speaking = [];
    const Orig = window.WebSocket;
    window.WebSocket = class extends Orig {
      constructor(...args) {
        super(...args);
        this.addEventListener('message', (e) => {
          try {
            const f = JSON.parse(e.data);
            if (f.t === 'VOICE_SPEAKING') window.__speaking.push({ ...f.d, at: performance.now() });
          } catch { /* not JSON */ }
        });
      }
    };
  });
  await c.b.page.reload();
  await c.b.page.waitForFunction(() => window.confab && window.confab.gateway.status === 'ready', null, { timeout: 20_000 });
  const ring = c.b.page.locator(`[data-testid="voice-participant"][data-user-id="${a.id}"][data-speaking="true"]`);
  await ring.waitFor({ timeout: 2000 });
  const before = await c.b.page.evaluate((id) => window.__speaking.filter((e) => e.user_id === id && e.speaking).length, a.id);
  assert.equal(before, 0, 'the ring came from READY\'s voice states, not from a later VOICE_SPEAKING');
  // C joins the channel: the ring stays (a join does not forget who is speaking).
  await voiceLink(c.b.page).click();
  await c.b.page.waitForFunction(() => ['connecting', 'connected'].includes(window.confabVoice.state), null, { timeout: 10_000 });
  assert.equal(await ring.count(), 1, 'still shown as speaking right after joining');
  await c.b.page.waitForFunction(() => window.confabVoice.state === 'connected', null, { timeout: 30_000 });
  const events = await c.b.page.evaluate((id) => window.__speaking.filter((e) => e.user_id === id), a.id);
  // If A paused meanwhile the ring may have gone and come back; it must never have been
  // missing while A spoke, which the checks above cover.
  assert.ok(await ring.count() === 1 || events.some((e) => !e.speaking), `ring after join; events ${JSON.stringify(events)}`);
});

test('no uncaught page errors', () => {
  for (const p of peers) assert.deepEqual(p.b.errors, [], p.name);
});
