// End-to-end encrypted voice through the fallback transform API (docs/e2ee.md, Frames): two
// Chromiums whose pages lack RTCRtpScriptTransform, as browsers without it do, so the client
// creates its peer connection with `encodedInsertableStreams` and hands the streams of
// `createEncodedStreams()` to the same worker. Both must hear each other with every frame
// encrypted and decrypted there.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi, joinViaUi,
  makeSpeechWav, uniqueName, waitFor, rest, tokenOf, assertHearEachOther, voiceDebug } from './lib.mjs';

let server;
const peers = [];
const GENERAL = '[data-testid="channel-link"][data-channel-type="voice"][data-channel-name="General"]';
const call = (p, msg) => p.b.page.evaluate((m) => window.confabVoice.e2eeCall(m), msg);

before(async () => {
  server = await startServer();
  const wav = makeSpeechWav();
  for (const name of ['eve', 'fay']) {
    const b = await launchBrowser({ audioFile: wav });
    // Before any page script runs: the page now looks like a browser with only the older API.
    await b.context.addInitScript(() => { delete window.RTCRtpScriptTransform; });
    peers.push({ name: uniqueName(name), b });
  }
});

after(async () => {
  for (const p of peers) await p.b.close();
  await server?.stop();
});

test('two users hear each other in an e2ee channel through createEncodedStreams', async () => {
  const [a, b] = peers;
  for (const p of peers) {
    await registerViaUi(p.b.page, server.url, p.name);
    p.id = await p.b.page.evaluate(() => window.confab.store.me.id);
    assert.equal(await p.b.page.evaluate(() => 'RTCRtpScriptTransform' in window), false, 'the init script hid the API');
  }
  const serverName = uniqueName('Fallback ');
  await createServerViaUi(a.b.page, serverName);
  const link = await createInviteViaUi(a.b.page);
  await joinViaUi(b.b.page, link, serverName);
  const channelId = await a.b.page.locator(GENERAL).getAttribute('data-channel-id');
  await rest(server.url, await tokenOf(a.b.page), 'PATCH', `/channels/${channelId}`, { e2ee: true });
  for (const p of peers) {
    await p.b.page.locator('li.channel', { has: p.b.page.locator(GENERAL) }).getByTestId('e2ee-lock').waitFor({ timeout: 10_000 });
  }
  for (const p of peers) {
    await p.b.page.locator(GENERAL).click();
    await p.b.page.waitForFunction(() => window.confabVoice && ['connected', 'error'].includes(window.confabVoice.state), null, { timeout: 30_000 }).catch(() => {});
    const st = await p.b.page.evaluate(() => ({
      state: window.confabVoice.state, error: window.confabVoice.error, e2ee: window.confabVoice.e2eeOn,
      insertable: window.confabVoice.pc?.getConfiguration().encodedInsertableStreams === true,
    }));
    assert.deepEqual(st, { state: 'connected', error: st.error, e2ee: true, insertable: true }, `${p.name}: ${JSON.stringify(st)}`);
  }
  try {
    await assertHearEachOther(peers);
  } catch (e) {
    throw new Error(`${e.message}; ${JSON.stringify(await Promise.all(peers.map((p) => voiceDebug(p.b.page))))}`);
  }
  for (const p of peers) {
    const s = await call(p, { type: 'stats' });
    // Energy at the listener only comes from frames the worker opened (it drops the rest), and
    // without RTCRtpScriptTransform the worker gets frames only through the fallback streams.
    assert.ok(s.encrypted > 100 && s.decrypted > 100, `${p.name}: worker ${JSON.stringify(s)}`);
  }
  // And what crossed the server is SFrame, not Opus: one sender's frames, captured in its worker.
  await call(a, { type: 'capture', n: 20 });
  await waitFor(async () => (await call(a, { type: 'captured' })).length >= 20, { message: 'frames captured' });
  for (const f of await call(a, { type: 'captured' })) {
    assert.equal(f.cipher[0], 0xbb, 'SFrame header');
    assert.equal(f.cipher.length, f.plain.length + 25, 'header and tag');
  }
});
