// The soundboard heard, in real Chromium: two users in a voice channel whose fake microphones
// are silent; A uploads a 440 Hz tone through the server settings and plays it from the voice
// panel's soundboard. B must receive audio energy from A while it plays (and next to none
// before), and see who played what.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, launchBrowser, twoInVoice, inboundAudioFrom, uniqueName, waitFor, sleep, snap, axeViolations } from './lib.mjs';

/** A mono 16-bit PCM WAV at `rate` Hz: `ms` of a sine at `hz` (0: silence). */
function wav({ ms, hz, rate = 48000, amplitude = 0.6 }) {
  const n = Math.round((rate * ms) / 1000);
  const buf = Buffer.alloc(44 + n * 2);
  buf.write('RIFF', 0); buf.writeUInt32LE(36 + n * 2, 4); buf.write('WAVEfmt ', 8);
  buf.writeUInt32LE(16, 16); buf.writeUInt16LE(1, 20); buf.writeUInt16LE(1, 22);
  buf.writeUInt32LE(rate, 24); buf.writeUInt32LE(rate * 2, 28); buf.writeUInt16LE(2, 32); buf.writeUInt16LE(16, 34);
  buf.write('data', 36); buf.writeUInt32LE(n * 2, 40);
  for (let i = 0; i < n; i++) {
    const s = hz ? Math.sin((2 * Math.PI * hz * i) / rate) * amplitude : 0;
    buf.writeInt16LE(Math.round(s * 32767), 44 + i * 2);
  }
  return buf;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'confab-soundboard-'));
const silence = path.join(dir, 'silence.wav');
const tone = path.join(dir, 'tone.wav');
fs.writeFileSync(silence, wav({ ms: 10_000, hz: 0 }));
fs.writeFileSync(tone, wav({ ms: 3_000, hz: 440, rate: 24000 }));

let server;
const peers = [];

before(async () => {
  server = await startServer();
  for (const name of ['sba', 'sbb']) peers.push({ name: uniqueName(name), b: await launchBrowser({ audioFile: silence }) });
});

after(async () => {
  for (const p of peers) await p.b.close();
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** B's received audio energy from A over `ms`. */
async function energyOver(page, fromId, ms) {
  const a = await inboundAudioFrom(page, fromId);
  await sleep(ms);
  const b = await inboundAudioFrom(page, fromId);
  return { energy: b.energy - a.energy, packets: b.packets - a.packets };
}

test('a soundboard sound is heard by the other member, with a notice of who played it', async () => {
  const [A, B] = peers;
  await twoInVoice(peers, server.url, 'Soundboard ');
  // B receives A's (silent) microphone.
  await waitFor(async () => {
    const s = await inboundAudioFrom(B.b.page, A.id);
    return s && s.packets > 50;
  }, { timeout: 20_000, message: 'B receives A' });
  const quiet = await energyOver(B.b.page, A.id, 1500);
  assert.ok(quiet.packets > 30, `B receives packets from A: ${JSON.stringify(quiet)}`);
  assert.ok(quiet.energy < 1e-4, `A's microphone is silent before the sound: ${JSON.stringify(quiet)}`);

  // A uploads the tone in the server settings' Soundboard tab.
  const pa = A.b.page;
  await pa.getByRole('button', { name: 'Server settings' }).click();
  const dlg = pa.getByTestId('server-settings-dialog');
  await dlg.waitFor();
  await dlg.getByRole('tab', { name: 'Soundboard' }).click();
  await dlg.getByTestId('sound-file').setInputFiles(tone);
  await dlg.getByLabel('Name').fill('beep');
  await dlg.getByTestId('sound-upload').click();
  await dlg.locator('[data-testid="sound-row"]').filter({ hasText: 'beep' }).waitFor({ timeout: 10_000 });
  assert.deepEqual(await axeViolations(pa, { include: '[data-testid="server-settings-dialog"]' }), [], 'the Soundboard tab is accessible');
  await dlg.getByRole('button', { name: 'Close', exact: true }).click();

  // A plays it from the voice panel; B hears it and sees who played it.
  await pa.getByTestId('soundboard-toggle').click();
  await pa.getByTestId('soundboard-grid').getByRole('button', { name: 'Play beep' }).waitFor();
  assert.deepEqual(await axeViolations(pa, { include: '.voice-panel' }), [], 'the voice panel with the soundboard is accessible');
  const before = await inboundAudioFrom(B.b.page, A.id);
  await pa.getByRole('button', { name: 'Play beep' }).click();
  await B.b.page.getByTestId('soundboard-notice').filter({ hasText: 'beep' }).waitFor({ timeout: 5_000 });
  const notice = await B.b.page.getByTestId('soundboard-notice').first().textContent();
  assert.match(notice, new RegExp(`${A.name}.*played.*beep`));
  await waitFor(async () => {
    const s = await inboundAudioFrom(B.b.page, A.id);
    return s.energy - before.energy > 0.01;
  }, { timeout: 4_000, message: 'energy of the sound at B' });
  await snap(pa, 'soundboard');
  // After the sound ends, A's silent microphone is back on the sender: B gets silence again.
  await sleep(3_500);
  const after = await energyOver(B.b.page, A.id, 1500);
  assert.ok(after.packets > 30, `A still sends its microphone: ${JSON.stringify(after)}`);
  assert.ok(after.energy < 1e-4, `silence again after the sound: ${JSON.stringify(after)}`);

  // Self-muted, A sends nothing of its microphone; a sound still goes out, for its length.
  await pa.getByTestId('voice-mute').click();
  await waitFor(() => pa.evaluate(() => window.confabVoice.selfMute), { message: 'A muted' });
  await sleep(1000);
  const muted = await energyOver(B.b.page, A.id, 1000);
  assert.equal(muted.packets, 0, `nothing from a muted A: ${JSON.stringify(muted)}`);
  const mutedBefore = await inboundAudioFrom(B.b.page, A.id);
  await pa.getByRole('button', { name: 'Play beep' }).click();
  await waitFor(async () => {
    const s = await inboundAudioFrom(B.b.page, A.id);
    return s.energy - mutedBefore.energy > 0.01;
  }, { timeout: 4_000, message: 'energy of the sound played while muted' });
  // Muted again once it ends.
  await sleep(3_500);
  const mutedAfter = await energyOver(B.b.page, A.id, 1000);
  assert.equal(mutedAfter.packets, 0, `nothing after the sound: ${JSON.stringify(mutedAfter)}`);
  assert.equal(await pa.evaluate(() => window.confab.store.voiceStates.get(window.confab.store.me.id).self_mute), true);
  assert.deepEqual(A.b.errors, []);
  assert.deepEqual(B.b.errors, []);
});
