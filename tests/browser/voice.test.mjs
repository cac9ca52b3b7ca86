// Voice through the real UI in three browsers with a speech WAV as the fake microphone:
// everyone hears the other two, speaking indicators, mute stops the flow, leave is seen, loss < 1%.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi, joinViaUi,
  makeSpeechWav, uniqueName, waitFor, sleep, snap } from './lib.mjs';

let server;
const peers = [];  // {name, b: browser, id}
const serverName = uniqueName('Voice ');
let joined = false;  // later tests need the joins; they fail fast without them

/** inbound-rtp audio stats, annotated with the user the client maps the mid to. */
function inbound(page) {
  return page.evaluate(async () => {
    const v = window.confabVoice;
    if (!v || !v.pc) return [];
    const out = [];
    (await v.pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.push({
          mid: s.mid, ssrc: s.ssrc, user: v.slots[s.mid] || null,
          packetsReceived: s.packetsReceived || 0, packetsLost: s.packetsLost || 0,
          audioLevel: s.audioLevel || 0, totalAudioEnergy: s.totalAudioEnergy || 0,
        });
      }
    });
    return out;
  });
}

const byUser = (stats, userId) => stats.find((s) => s.user === userId);

before(async () => {
  server = await startServer();
  const wav = makeSpeechWav();
  for (const name of ['ann', 'ben', 'cat']) {
    peers.push({ name: uniqueName(name), b: await launchBrowser({ audioFile: wav }) });
  }
});

after(async () => {
  for (const p of peers) await p.b.close();
  await server?.stop();
});

test('three users join the same voice channel through the UI', async () => {
  const [a, b, c] = peers;
  for (const p of peers) {
    await registerViaUi(p.b.page, server.url, p.name);
    p.id = await p.b.page.evaluate(() => window.confab.store.me.id);
  }
  await createServerViaUi(a.b.page, serverName);
  const link = await createInviteViaUi(a.b.page);
  await joinViaUi(b.b.page, link, serverName);
  await joinViaUi(c.b.page, link.split('/').pop(), serverName);  // a bare code works too

  for (const p of peers) {
    await p.b.page.locator('[data-testid="channel-link"][data-channel-type="voice"][data-channel-name="General"]').click();
    await p.b.page.waitForFunction(() => window.confabVoice && ['connected', 'error'].includes(window.confabVoice.state), null, { timeout: 30_000 })
      .catch(() => {});
    const st = await p.b.page.evaluate(() => ({ state: window.confabVoice.state, error: window.confabVoice.error }));
    assert.equal(st.state, 'connected', `${p.name} did not connect: ${JSON.stringify(st)}`);
  }
  // everyone lists all three participants under the voice channel
  for (const p of peers) {
    await waitFor(async () => (await p.b.page.getByTestId('voice-participant').count()) === 3, { message: `${p.name} sees 3 participants` });
  }
  joined = true;
});

test('each receives audio from the other two (packets and energy rising)', async () => {
  assert.ok(joined, 'needs the three voice joins of the first test');
  for (const p of peers) {
    const others = peers.filter((o) => o !== p).map((o) => o.id);
    // slots map both others to mids
    await waitFor(async () => {
      const slots = await p.b.page.evaluate(() => Object.values(window.confabVoice.slots));
      return others.every((id) => slots.includes(id));
    }, { timeout: 20_000, message: `${p.name}: VOICE_SLOTS maps both others` });
    const s1 = await inbound(p.b.page);
    await sleep(3000);
    const s2 = await inbound(p.b.page);
    for (const id of others) {
      const x1 = byUser(s1, id);
      const x2 = byUser(s2, id);
      assert.ok(x1 && x2, `${p.name}: an inbound stream for ${id}`);
      assert.ok(x2.packetsReceived - x1.packetsReceived > 50, `${p.name}: packets from ${id} rising (${x1.packetsReceived} → ${x2.packetsReceived})`);
      assert.ok(x2.totalAudioEnergy > x1.totalAudioEnergy, `${p.name}: audio energy from ${id} rising (${x1.totalAudioEnergy} → ${x2.totalAudioEnergy})`);
    }
  }
});

test('speaking indicators appear', async () => {
  assert.ok(joined, 'needs the three voice joins of the first test');
  for (const p of peers) {
    await waitFor(async () => {
      const speakingIds = await p.b.page.locator('[data-testid="voice-participant"][data-speaking="true"]').evaluateAll((els) => els.map((e) => e.dataset.userId));
      return peers.filter((o) => o !== p).some((o) => speakingIds.includes(o.id));
    }, { timeout: 20_000, interval: 100, message: `${p.name} sees someone else speaking` });
  }
  await snap(peers[0].b.page, 'voice');
});

test('muting one stops its audio to the others', async () => {
  assert.ok(joined, 'needs the three voice joins of the first test');
  const [a, b, c] = peers;
  await c.b.page.getByTestId('voice-mute').click();
  await c.b.page.getByRole('button', { name: 'Unmute' }).waitFor();
  // others see the mute icon
  for (const p of [a, b]) {
    await p.b.page.locator(`[data-testid="voice-participant"][data-user-id="${c.id}"][data-muted="true"]`).waitFor({ timeout: 10_000 });
  }
  await sleep(1500);  // let in-flight audio drain
  for (const p of [a, b]) {
    const s1 = byUser(await inbound(p.b.page), c.id);
    await sleep(2500);
    const s2 = byUser(await inbound(p.b.page), c.id);
    const packets = s2.packetsReceived - s1.packetsReceived;
    const energy = s2.totalAudioEnergy - s1.totalAudioEnergy;
    // A disabled track sends either nothing or digital silence.
    assert.ok(packets < 20 || (energy < 1e-6 && s2.audioLevel < 0.001),
      `${p.name}: audio from muted ${c.name} should stop (packets +${packets}, energy +${energy}, level ${s2.audioLevel})`);
    // the unmuted one is still heard
    const b1 = byUser(await inbound(p.b.page), (p === a ? b : a).id);
    assert.ok(b1.packetsReceived > 0);
  }
  await c.b.page.getByTestId('voice-mute').click();
  await c.b.page.getByRole('button', { name: 'Mute', exact: true }).waitFor();
});

test('loss stays under 1%', async () => {
  assert.ok(joined, 'needs the three voice joins of the first test');
  for (const p of peers) {
    const stats = await inbound(p.b.page);
    const received = stats.reduce((n, s) => n + s.packetsReceived, 0);
    const lost = stats.reduce((n, s) => n + Math.max(0, s.packetsLost), 0);
    assert.ok(received > 200, `${p.name}: received ${received}`);
    const loss = lost / (received + lost);
    assert.ok(loss < 0.01, `${p.name}: loss ${(loss * 100).toFixed(2)}% (${lost}/${received + lost})`);
  }
});

test('one leaves and the others see it leave', async () => {
  assert.ok(joined, 'needs the three voice joins of the first test');
  const [a, b, c] = peers;
  await c.b.page.getByTestId('voice-leave').click();
  await c.b.page.waitForFunction(() => window.confabVoice.state === 'idle' && !window.confabVoice.pc);
  for (const p of [a, b]) {
    await waitFor(async () => (await p.b.page.locator(`[data-testid="voice-participant"][data-user-id="${c.id}"]`).count()) === 0,
      { timeout: 10_000, message: `${p.name} sees ${c.name} leave` });
    assert.equal(await p.b.page.getByTestId('voice-participant').count(), 2);
  }
  // the two remaining still hear each other
  const s1 = byUser(await inbound(a.b.page), b.id);
  await sleep(2000);
  const s2 = byUser(await inbound(a.b.page), b.id);
  assert.ok(s2.packetsReceived > s1.packetsReceived, 'A still receives B after C left');
});

test('no uncaught page errors', () => {
  for (const p of peers) assert.deepEqual(p.b.errors, [], p.name);
});
