// Loudest-speaker slots in real browsers: a server limited to one listening slot
// (--max-audio-slots 1) and three Chromium users who all talk (speech WAV as microphone).
// Each hears exactly one other user, the UI marks who that is, and when that speaker mutes,
// the slot switches to the other one (VOICE_SLOTS) and the mark follows.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi, joinViaUi,
  makeSpeechWav, uniqueName, waitFor, sleep, snap } from './lib.mjs';

let server;
const peers = [];  // {name, b, id}
let joined = false;

/** The users this page's client hears now (its slot mapping). */
const heardIds = (page) => page.evaluate(() => Object.values(window.confabVoice.slots).filter(Boolean));
/** The users the channel list marks as heard. */
const markedIds = (page) => page.locator('[data-testid="voice-participant"][data-heard="true"]')
  .evaluateAll((els) => els.map((e) => e.dataset.userId));

/** Packets received so far on the inbound stream mapped to `userId`. */
function packetsFrom(page, userId) {
  return page.evaluate(async (uid) => {
    const v = window.confabVoice;
    let n = 0;
    (await v.pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio' && v.slots[s.mid] === uid) n += s.packetsReceived || 0;
    });
    return n;
  }, userId);
}

/** Packets received so far on the inbound audio streams that carry a slot. */
function packetsOnSlots(page) {
  return page.evaluate(async () => {
    const v = window.confabVoice;
    let n = 0;
    (await v.pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio' && v.slots[s.mid]) n += s.packetsReceived || 0;
    });
    return n;
  });
}

before(async () => {
  server = await startServer({ args: ['--max-audio-slots', '1'] });
  const wav = makeSpeechWav();
  for (const name of ['dan', 'eve', 'fay']) {
    peers.push({ name: uniqueName(name), b: await launchBrowser({ audioFile: wav }) });
  }
});

after(async () => {
  for (const p of peers) await p.b.close();
  await server?.stop();
});

test('three talking users join a channel limited to one listening slot', async () => {
  const [a, b, c] = peers;
  const serverName = uniqueName('Large ');
  for (const p of peers) {
    await registerViaUi(p.b.page, server.url, p.name);
    p.id = await p.b.page.evaluate(() => window.confab.store.me.id);
  }
  await createServerViaUi(a.b.page, serverName);
  const link = await createInviteViaUi(a.b.page);
  await joinViaUi(b.b.page, link, serverName);
  await joinViaUi(c.b.page, link, serverName);
  for (const p of peers) {
    await p.b.page.locator('[data-testid="channel-link"][data-channel-type="voice"][data-channel-name="General"]').click();
    await p.b.page.waitForFunction(() => window.confabVoice && ['connected', 'error'].includes(window.confabVoice.state), null, { timeout: 30_000 })
      .catch(() => {});
    assert.equal(await p.b.page.evaluate(() => window.confabVoice.state), 'connected', `${p.name} connected`);
  }
  for (const p of peers) {
    await waitFor(async () => (await p.b.page.getByTestId('voice-participant').count()) === 3, { message: `${p.name} sees 3 participants` });
  }
  joined = true;
});

test('each hears exactly one other user, marked in the channel list, with audio flowing', async () => {
  assert.ok(joined, 'needs the joins of the first test');
  for (const p of peers) {
    await waitFor(async () => (await heardIds(p.b.page)).length === 1, { timeout: 20_000, message: `${p.name} hears one user` });
    const [heard] = await heardIds(p.b.page);
    assert.notEqual(heard, p.id, `${p.name} never hears themself`);
    await waitFor(async () => {
      const marked = await markedIds(p.b.page);
      const now = await heardIds(p.b.page);
      return marked.length === 1 && marked[0] === now[0];
    }, { timeout: 10_000, message: `${p.name}: the heard user is marked` });
    const cls = await p.b.page.locator(`[data-testid="voice-participant"][data-heard="true"]`).getAttribute('class');
    assert.match(cls, /\bheard\b/, 'the mark is visible (class heard)');
  }
  // All three talk with the same loudness, so the slot may move from one speaker to the
  // other during the window: count what arrives on the slot, whoever it carries.
  const c = peers[2];
  const n1 = await packetsOnSlots(c.b.page);
  await sleep(2000);
  const n2 = await packetsOnSlots(c.b.page);
  assert.ok(n2 - n1 > 30, `${c.name} receives the heard speaker (${n1} → ${n2})`);
  assert.notEqual((await heardIds(c.b.page))[0], c.id, `${c.name} never hears themself`);
  await snap(c.b.page, 'voice-large-channel');
});

test('when the heard speaker mutes, the slot switches to the other one and the mark follows', async () => {
  assert.ok(joined, 'needs the joins of the first test');
  const c = peers[2];
  const [gone] = await heardIds(c.b.page);
  const speaker = peers.find((p) => p.id === gone);
  const other = peers.find((p) => p !== c && p !== speaker);
  assert.ok(speaker && other, 'c hears one of the two others');
  await speaker.b.page.getByTestId('voice-mute').click();
  await waitFor(async () => {
    const h = await heardIds(c.b.page);
    return h.length === 1 && h[0] === other.id;
  }, { timeout: 15_000, interval: 100, message: `${c.name} switches to ${other.name}` });
  await waitFor(async () => (await markedIds(c.b.page))[0] === other.id,
    { timeout: 5_000, message: `${c.name}'s list marks ${other.name}` });
  // The muted speaker does not come back while muted, and the new one is heard.
  const n1 = await packetsFrom(c.b.page, other.id);
  for (let i = 0; i < 6; i++) {
    await sleep(500);
    assert.deepEqual(await heardIds(c.b.page), [other.id], 'stays on the talking user');
  }
  const n2 = await packetsFrom(c.b.page, other.id);
  assert.ok(n2 - n1 > 30, `${c.name} receives ${other.name} (${n1} → ${n2})`);
});

test('no uncaught page errors', () => {
  for (const p of peers) assert.deepEqual(p.b.errors, [], p.name);
});
