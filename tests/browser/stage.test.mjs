// A stage channel in two real browsers with a speech WAV as microphone: both join as audience
// and the host hears nothing; the listener raises a hand, the host sees it and invites them to
// speak, and then the host hears them; stepping down silences them again. Then the host moves
// the guest to a voice channel from the member card (MOVE_MEMBERS): the guest's client follows
// and is heard there; when VIDEO is revoked while its camera is on, the client turns it off.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi, joinViaUi,
  makeSpeechWav, uniqueName, waitFor, sleep, snap, rest, tokenOf } from './lib.mjs';

let server;
let host;
let guest;
let joined = false;

/** Packets and energy received so far from `userId` (on the slot the client maps to them). */
function fromUser(page, userId) {
  return page.evaluate(async (uid) => {
    const v = window.confabVoice;
    const out = { packets: 0, energy: 0 };
    if (!v || !v.pc) return out;
    (await v.pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio' && v.slots[s.mid] === uid) {
        out.packets += s.packetsReceived || 0;
        out.energy += s.totalAudioEnergy || 0;
      }
    });
    return out;
  }, userId);
}

/** What `page` received from `userId` over `ms`. */
async function heardOver(page, userId, ms) {
  const a = await fromUser(page, userId);
  await sleep(ms);
  const b = await fromUser(page, userId);
  return { packets: b.packets - a.packets, energy: b.energy - a.energy };
}

const row = (page, userId) => page.locator(`[data-testid="voice-participant"][data-user-id="${userId}"]`);

before(async () => {
  server = await startServer();
  const wav = makeSpeechWav();
  host = { name: uniqueName('host'), b: await launchBrowser({ audioFile: wav }) };
  guest = { name: uniqueName('gst'), b: await launchBrowser({ audioFile: wav }) };
});

after(async () => {
  for (const p of [host, guest]) await p?.b.close();
  await server?.stop();
});

test('both join a stage channel created in the UI, as audience', async () => {
  const serverName = uniqueName('Stage ');
  for (const p of [host, guest]) {
    await registerViaUi(p.b.page, server.url, p.name);
    p.id = await p.b.page.evaluate(() => window.confab.store.me.id);
  }
  await createServerViaUi(host.b.page, serverName);
  const link = await createInviteViaUi(host.b.page);
  await joinViaUi(guest.b.page, link, serverName);

  const page = host.b.page;
  await page.getByRole('button', { name: 'Create channel' }).click();
  const dlg = page.getByTestId('create-channel-dialog');
  await dlg.getByTestId('field-type').selectOption('stage');
  await dlg.getByLabel('Channel name').fill('Town Hall');
  await dlg.getByRole('button', { name: 'Create channel' }).click();

  for (const p of [host, guest]) {
    const link = p.b.page.locator('[data-testid="channel-link"][data-channel-type="stage"][data-channel-name="Town Hall"]');
    await link.waitFor({ timeout: 10_000 });
    await link.click();
    await p.b.page.waitForFunction(() => window.confabVoice && ['connected', 'error'].includes(window.confabVoice.state), null, { timeout: 30_000 })
      .catch(() => {});
    const st = await p.b.page.evaluate(() => ({ state: window.confabVoice.state, error: window.confabVoice.error }));
    assert.equal(st.state, 'connected', `${p.name} did not connect: ${JSON.stringify(st)}`);
  }
  for (const p of [host, guest]) {
    await waitFor(async () => (await p.b.page.locator('[data-testid="voice-participant"][data-stage-role="audience"]').count()) === 2,
      { message: `${p.name} sees both in the audience` });
  }
  await guest.b.page.getByTestId('stage-hand').waitFor();
  joined = true;
});

test('the audience is not heard', async () => {
  assert.ok(joined, 'needs the joins of the first test');
  await sleep(1500);
  const got = await heardOver(host.b.page, guest.id, 2500);
  assert.ok(got.packets < 10, `the host received ${got.packets} packets from the audience`);
});

test('raise hand, the host invites, then the host hears the new speaker', async () => {
  assert.ok(joined, 'needs the joins of the first test');
  await guest.b.page.getByTestId('stage-hand').click();
  await guest.b.page.getByRole('button', { name: 'Lower hand' }).waitFor();
  // The host sees the raised hand and invites the guest from the participant list.
  const guestRow = row(host.b.page, guest.id);
  await host.b.page.locator(`[data-testid="voice-participant"][data-user-id="${guest.id}"][data-hand="true"]`).waitFor({ timeout: 10_000 });
  assert.equal(await guestRow.getByTestId('stage-hand-icon').count(), 1);
  await snap(host.b.page, 'stage');
  await guestRow.getByTestId('stage-invite').click();
  await host.b.page.locator(`[data-testid="voice-participant"][data-user-id="${guest.id}"][data-stage-role="speaker"][data-hand="false"]`)
    .waitFor({ timeout: 10_000 });
  await guest.b.page.getByTestId('stage-step-down').waitFor({ timeout: 10_000 });

  await waitFor(async () => (await host.b.page.evaluate(() => Object.values(window.confabVoice.slots))).includes(guest.id),
    { timeout: 20_000, message: 'the host has a slot for the speaker' });
  await sleep(1000);
  const got = await heardOver(host.b.page, guest.id, 3000);
  assert.ok(got.packets > 50, `the host received ${got.packets} packets from the speaker`);
  assert.ok(got.energy > 0, `audio energy from the speaker rising (${got.energy})`);
});

test('stepping down silences the speaker again', async () => {
  assert.ok(joined, 'needs the joins of the first test');
  await guest.b.page.getByTestId('stage-step-down').click();
  await host.b.page.locator(`[data-testid="voice-participant"][data-user-id="${guest.id}"][data-stage-role="audience"]`)
    .waitFor({ timeout: 10_000 });
  await sleep(1500);
  const got = await heardOver(host.b.page, guest.id, 2500);
  assert.ok(got.packets < 10, `the host still received ${got.packets} packets`);
});

test('a moderator moves the guest to another voice channel and the client follows', async () => {
  assert.ok(joined, 'needs the joins of the first test');
  const general = host.b.page.locator('[data-testid="channel-link"][data-channel-type="voice"][data-channel-name="General"]');
  const generalId = await general.getAttribute('data-channel-id');
  await general.click();
  await host.b.page.waitForFunction((id) => window.confabVoice.channelId === id && window.confabVoice.state === 'connected', generalId, { timeout: 30_000 });
  // From the guest's member card: Voice → General → Move.
  await host.b.page.getByTestId('member-open').filter({ hasText: guest.name }).click();
  const card = host.b.page.getByTestId('member-dialog');
  await card.getByTestId('move-target').selectOption(generalId);
  await card.getByTestId('move-member').click();
  await guest.b.page.waitForFunction((id) => window.confabVoice.channelId === id && window.confabVoice.state === 'connected', generalId, { timeout: 30_000 });
  await host.b.page.locator(`[data-testid="voice-participants"][data-channel-id="${generalId}"] [data-user-id="${guest.id}"]`).waitFor({ timeout: 10_000 });
  await waitFor(async () => (await host.b.page.evaluate(() => Object.values(window.confabVoice.slots))).includes(guest.id),
    { timeout: 20_000, message: 'the host has a slot for the moved guest' });
  await sleep(1000);
  const got = await heardOver(host.b.page, guest.id, 3000);
  assert.ok(got.packets > 50, `the host received ${got.packets} packets from the moved guest`);
});

test('VIDEO revoked while the camera is on: the client turns it off and can still mute', async () => {
  assert.ok(joined, 'needs the joins of the first test');
  const g = guest.b.page;
  await g.getByTestId('voice-camera').click();
  await host.b.page.waitForFunction((uid) => {
    const v = window.confab.store.voiceStates.get(uid);
    return v && v.self_video === true;
  }, guest.id, { timeout: 15_000 });
  await sleep(2500);  // past the window in which our own older echoes are ignored
  const channelId = await g.evaluate(() => window.confabVoice.channelId);
  await rest(server.url, await tokenOf(host.b.page), 'PUT', `/channels/${channelId}/permissions/${guest.id}`,
    { type: 'member', deny: String(1 << 9) });
  await g.waitForFunction(() => !window.confabVoice.cameraOn, null, { timeout: 10_000 });
  assert.equal(await g.evaluate(() => window.confabVoice.state), 'connected', 'still in voice');
  // A later state update (mute) is accepted: it no longer claims the camera.
  await g.getByTestId('voice-mute').click();
  await host.b.page.locator(`[data-testid="voice-participant"][data-user-id="${guest.id}"][data-muted="true"]`).waitFor({ timeout: 10_000 });
});

test('no uncaught page errors', () => {
  for (const p of [host, guest]) assert.deepEqual(p.b.errors, [], p.name);
});
