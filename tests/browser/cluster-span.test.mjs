// A voice channel larger than one media node, in real Chromium: scripts/cluster.sh with two
// media nodes that take one participant each, so two users in one channel sit on different
// media nodes and hear each other only through the relay between them (docs/relay.md). Both
// hear each other, see each other speaking, and a mute on one side silences it on the other
// side's wire (the relay stops carrying it) and shows as muted there; unmuted, it is heard again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startCluster, metricValue, launchBrowser, twoInVoice, inboundAudioFrom, makeSpeechWav, uniqueName,
  waitFor, sleep, voiceDebug } from './lib.mjs';

let cluster;
let A; let B;  // {name, b: browser, id}

async function packetsOver(p, other, ms) {
  const s1 = await waitFor(() => inboundAudioFrom(p.b.page, other.id), { timeout: 20_000, message: `${p.name}: a slot for ${other.name}` })
    .catch(async (e) => { throw new Error(`${e.message}; voice ${JSON.stringify(await voiceDebug(p.b.page))}`); });
  await sleep(ms);
  const s2 = await inboundAudioFrom(p.b.page, other.id);
  return { packets: s2.packets - s1.packets, energy: s2.energy - s1.energy };
}

async function hears(p, other) {
  const d = await packetsOver(p, other, 2000);
  assert.ok(d.packets > 40, `${p.name}: packets from ${other.name} rising (${d.packets} in 2 s)`);
  assert.ok(d.energy > 0, `${p.name}: audio energy from ${other.name} rising`);
}

async function perMediaNode(metric) {
  const out = {};
  for (const n of cluster.mediaNodes) out[n] = metricValue(await cluster.metrics(n), metric) ?? 0;
  return out;
}

const participant = (p, o) => p.b.page.locator(`[data-testid="voice-participant"][data-user-id="${o.id}"]`);

before(async () => {
  cluster = await startCluster({ mediaCapacity: 1, apiArgs: ['--rate-limit-scale', '100'] });
  const wav = makeSpeechWav();
  A = { name: uniqueName('ana'), b: await launchBrowser({ audioFile: wav }) };
  B = { name: uniqueName('bo'), b: await launchBrowser({ audioFile: wav }) };
});

after(async () => {
  for (const p of [A, B]) await p?.b.close();
  await cluster?.stop();
});

test('two users on different media nodes hear each other through the relay and see each other speak', async () => {
  await twoInVoice([A, B], cluster.url, 'Span ');
  const placed = await perMediaNode('confab_sfu_participants');
  assert.deepEqual(Object.values(placed).sort(), [1, 1], `one participant on each media node: ${JSON.stringify(placed)}`);
  const relayBefore = await perMediaNode('confab_sfu_relay_packets_total');
  await hears(A, B);
  await hears(B, A);
  const relayAfter = await perMediaNode('confab_sfu_relay_packets_total');
  for (const n of cluster.mediaNodes) {
    assert.ok(relayAfter[n] - relayBefore[n] > 100, `${n} relayed audio (${relayBefore[n]} → ${relayAfter[n]} datagrams sent and received)`);
  }
  for (const [p, o] of [[A, B], [B, A]]) {
    await participant(p, o).and(p.b.page.locator('[data-speaking="true"]')).waitFor({ timeout: 20_000 });
  }
});

test('a mute on one media node silences the user on the other; unmuted, heard again', async () => {
  await A.b.page.getByTestId('voice-mute').click();
  await participant(B, A).and(B.b.page.locator('[data-muted="true"]')).waitFor({ timeout: 10_000 });
  await sleep(500);  // packets in flight
  const muted = await packetsOver(B, A, 2000);
  assert.ok(muted.packets <= 2, `${B.name} got ${muted.packets} packets from muted ${A.name} in 2 s`);
  await participant(B, A).and(B.b.page.locator('[data-speaking="false"]')).waitFor({ timeout: 5_000 });
  // The other direction is untouched.
  await hears(A, B);
  await A.b.page.getByTestId('voice-mute').click();
  await participant(B, A).and(B.b.page.locator('[data-muted="false"]')).waitFor({ timeout: 10_000 });
  await hears(B, A);
});

test('no uncaught page errors', () => {
  for (const p of [A, B]) assert.deepEqual(p.b.errors ?? [], [], `${p.name}: page errors`);
});
