// Two browsers against a whole cluster (scripts/cluster.sh: 3 api nodes, 2 media nodes, nginx in
// front, a private nats-server and PostgreSQL): chat through the load balancer arrives once;
// voice works through a media node; kill -9 of that media node → both clients show
// "Reconnecting…" and hear each other again within 5 s; kill -9 of the api node one client's
// gateway is on → it reconnects through nginx to another node, gets INVALID_SESSION, identifies
// again and shows every message sent meanwhile exactly once, with no gap. Last, voice stays after
// a gateway moves to another live api node.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startCluster, metricValue, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi,
  joinViaUi, makeSpeechWav, uniqueName, waitFor, sleep, rest, tokenOf, voiceDebug } from './lib.mjs';

const MEDIA_RECOVERY_MS = 5000;

let cluster;
let A; let B;             // {name, b: browser, id}
const serverName = uniqueName('Cluster ');
let channelId = null;
let inVoice = false;

async function send(page, text) {
  const box = page.getByTestId('composer');
  await box.fill(text);
  await box.press('Enter');
}

/** How many times each of `texts` shows in the page's message list. */
function counts(page, texts) {
  return page.evaluate((texts) => {
    const shown = [...document.querySelectorAll('[data-testid="message-content"]')].map((e) => e.textContent.trim());
    return Object.fromEntries(texts.map((t) => [t, shown.filter((s) => s === t).length]));
  }, texts);
}

/** inbound-rtp audio stats, annotated with the user the client maps the mid to. */
function inbound(page) {
  return page.evaluate(async () => {
    const v = window.confabVoice;
    if (!v || !v.pc) return [];
    const out = [];
    (await v.pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.push({ user: v.slots[s.mid] || null, packetsReceived: s.packetsReceived || 0, totalAudioEnergy: s.totalAudioEnergy || 0 });
      }
    });
    return out;
  });
}

async function hears(p, other, ms = 2500) {
  const pick = (st) => st.find((s) => s.user === other.id);
  await waitFor(async () => pick(await inbound(p.b.page)), { timeout: 20_000, message: `${p.name}: a slot for ${other.name}` })
    .catch(async (e) => { throw new Error(`${e.message}; voice ${JSON.stringify(await voiceDebug(p.b.page))}`); });
  const s1 = pick(await inbound(p.b.page));
  await sleep(ms);
  const s2 = pick(await inbound(p.b.page));
  assert.ok(s2.packetsReceived - s1.packetsReceived > 40, `${p.name}: packets from ${other.name} rising (${s1.packetsReceived} → ${s2.packetsReceived})`);
  assert.ok(s2.totalAudioEnergy > s1.totalAudioEnergy, `${p.name}: audio energy from ${other.name} rising`);
}

/** Open gateway WebSockets per live api node. */
async function gatewayConnections() {
  const out = {};
  for (const n of cluster.apiNodes) {
    try { out[n] = metricValue(await cluster.metrics(n), 'confab_gateway_connections') ?? 0; } catch { /* dead */ }
  }
  return out;
}
const total = (c) => Object.values(c).reduce((a, b) => a + b, 0);

/**
 * Moves A's gateway by parking its socket (B's stays) and letting it reconnect through nginx:
 * the node that gains a connection is A's. Again until A is on another node than B's (`apart`)
 * or than the one it started on (`away`). Returns { nodeA, nodeB, from }.
 */
async function moveGatewayOfA({ apart = false, away = false } = {}) {
  const page = A.b.page;
  let nodeA = null; let nodeB = null; let from = null;
  const done = () => nodeA && (!apart || nodeA !== nodeB) && (!away || nodeA !== from);
  for (let attempt = 0; attempt < 10 && !done(); attempt++) {
    const before = await gatewayConnections();
    await page.evaluate(() => { const gw = window.confab.gateway; gw._closedByUser = true; if (gw.ws) gw.ws.close(4000, 'test: park'); });
    const parked = await waitFor(async () => { const c = await gatewayConnections(); return total(c) === total(before) - 1 ? c : null; }, { message: 'A parked' });
    if (!from) from = Object.keys(parked).find((n) => parked[n] < before[n]);
    nodeB = Object.keys(parked).find((n) => parked[n] === 1);
    await page.evaluate(() => { const gw = window.confab.gateway; gw._closedByUser = false; gw._open(); });
    await page.waitForFunction(() => window.confab.gateway.status === 'ready', null, { timeout: 20_000 });
    const back = await waitFor(async () => { const c = await gatewayConnections(); return total(c) === total(before) ? c : null; }, { message: 'A back' });
    nodeA = Object.keys(back).find((n) => back[n] > (parked[n] || 0));
    // In voice, a RESUME or READY makes the client rejoin: let that finish before the next try.
    const inVoiceNow = await page.evaluate(() => Boolean(window.confabVoice && window.confabVoice.channelId));
    if (inVoiceNow && !done()) {
      await page.waitForFunction(() => window.confabVoice.state === 'connected' && !window.confabVoice._rejoining
        && window.confabVoice.pc && window.confabVoice.pc.connectionState === 'connected', null, { timeout: 20_000 });
      await sleep(1000);
    }
  }
  assert.ok(done(), `A's gateway placed (A on ${nodeA}, B on ${nodeB}, A was on ${from})`);
  return { nodeA, nodeB, from };
}

let nodes = null;  // { nodeA, nodeB }: whose gateway is on which api node

before(async () => {
  cluster = await startCluster({ apiArgs: ['--rate-limit-scale', '100'] });
  console.log(`cluster: ${cluster.url} (${cluster.apiNodes.join(', ')}; ${cluster.mediaNodes.join(', ')})`);
  const wav = makeSpeechWav();
  A = { name: uniqueName('ana'), b: await launchBrowser({ audioFile: wav }) };
  B = { name: uniqueName('bo'), b: await launchBrowser({ audioFile: wav }) };
});

after(async () => {
  for (const p of [A, B]) await p?.b.close();
  await cluster?.stop();
});

test('chat through the load balancer: messages arrive once', async () => {
  for (const p of [A, B]) {
    await registerViaUi(p.b.page, cluster.url, p.name);
    p.id = await p.b.page.evaluate(() => window.confab.store.me.id);
  }
  await createServerViaUi(A.b.page, serverName);
  const link = await createInviteViaUi(A.b.page);
  await joinViaUi(B.b.page, link, serverName);
  for (const p of [A, B]) await p.b.page.locator('[data-testid="channel-link"][data-channel-name="general"]').click();
  channelId = await A.b.page.evaluate(() => window.confab.store.currentChannelId);
  const texts = [];
  for (let i = 0; i < 4; i++) {
    const [from, name] = i % 2 ? [B, 'bo'] : [A, 'ana'];
    const t = `hello ${i} from ${name}`;
    texts.push(t);
    await send(from.b.page, t);
  }
  for (const p of [A, B]) {
    await waitFor(async () => Object.values(await counts(p.b.page, texts)).every((n) => n >= 1), { message: `${p.name} sees all four` });
  }
  await sleep(1500);  // a duplicate would show by now
  for (const p of [A, B]) {
    assert.deepEqual(await counts(p.b.page, texts), Object.fromEntries(texts.map((t) => [t, 1])), `${p.name}: each message once`);
  }
  // For the api node test: A's gateway on another node than B's, settled before voice starts.
  nodes = await moveGatewayOfA({ apart: true });
  console.log(`A's gateway on ${nodes.nodeA}, B's on ${nodes.nodeB}`);
});

test('both join the voice channel and hear each other through a media node', async () => {
  for (const p of [A, B]) {
    await p.b.page.locator('[data-testid="channel-link"][data-channel-type="voice"][data-channel-name="General"]').click();
    await p.b.page.waitForFunction(() => window.confabVoice && ['connected', 'error'].includes(window.confabVoice.state), null, { timeout: 30_000 }).catch(() => {});
    const st = await p.b.page.evaluate(() => ({ state: window.confabVoice.state, error: window.confabVoice.error }));
    assert.equal(st.state, 'connected', `${p.name} did not connect: ${JSON.stringify(st)}`);
  }
  await hears(A, B);
  await hears(B, A);
  for (const [p, o] of [[A, B], [B, A]]) {
    await p.b.page.locator(`[data-testid="voice-participant"][data-user-id="${o.id}"][data-speaking="true"]`).waitFor({ timeout: 20_000 });
  }
  inVoice = true;
});

/** The media node holding the channel's two participants. */
async function mediaNodeOfChannel() {
  for (const n of cluster.mediaNodes) {
    const m = await cluster.metrics(n).catch(() => '');
    if (metricValue(m, 'confab_sfu_participants') === 2) return n;
  }
  return null;
}

test('kill -9 of the media node: both show "Reconnecting…" and hear each other again within 5 s', async () => {
  assert.ok(inVoice, 'needs the voice joins of the previous test');
  const node = await mediaNodeOfChannel();
  assert.ok(node, 'one media node holds both participants');
  for (const [p, o] of [[A, B], [B, A]]) {
    await p.b.page.evaluate((otherId) => {
      const v = window.confabVoice;
      const probe = window.__mediaProbe = { reconnectingAt: null, shown: null, connectedAt: null, audioAt: null, log: [] };
      window.confab.gateway.on('VOICE_RECONNECT', (d) => probe.log.push(`${Date.now()} VOICE_RECONNECT ${JSON.stringify(d)}`));
      window.confab.gateway.on('VOICE_SLOTS', (d) => probe.log.push(`${Date.now()} VOICE_SLOTS ${JSON.stringify(d)}`));
      window.confab.gateway.onOp(14, (d) => probe.log.push(`${Date.now()} VOICE_ERROR ${JSON.stringify(d)}`));
      v.onChange(() => {
        const line = `voice ${v.state} ${v.error || ''} pc ${v.pc ? v.pc.connectionState : '-'}`;
        if (probe.log[probe.log.length - 1]?.endsWith(line) !== true) probe.log.push(`${Date.now()} ${line}`);
        if (v.state === 'reconnecting' && !probe.reconnectingAt) {
          probe.reconnectingAt = Date.now();
          const el = document.querySelector('[data-testid="voice-state"]');
          probe.shown = el ? el.textContent : null;
        }
        if (probe.reconnectingAt && v.state === 'connected' && !probe.connectedAt) probe.connectedAt = Date.now();
      });
      const timer = setInterval(async () => {
        if (!probe.reconnectingAt || probe.audioAt || !v.pc) return;
        (await v.pc.getStats()).forEach((s) => {
          if (s.type === 'inbound-rtp' && s.kind === 'audio' && v.slots[s.mid] === otherId
            && s.packetsReceived >= 10 && s.totalAudioEnergy > 0 && !probe.audioAt) probe.audioAt = Date.now();
        });
        if (probe.audioAt) clearInterval(timer);
      }, 50);
    }, o.id);
  }
  const killedAt = Date.now();
  await cluster.kill(node);
  const results = {};
  for (const p of [A, B]) {
    const probe = await waitFor(async () => {
      const pr = await p.b.page.evaluate(() => window.__mediaProbe);
      return pr.audioAt ? pr : null;
    }, { timeout: 20_000, interval: 100, message: `${p.name} hears audio again` }).catch(async (e) => {
      const pr = await p.b.page.evaluate(() => window.__mediaProbe);
      const slots = await p.b.page.evaluate(() => window.confabVoice.slots);
      throw new Error(`${e.message}; slots ${JSON.stringify(slots)}; since the kill:\n${pr.log.map((l) => `  +${Number(l.split(' ')[0]) - killedAt} ms ${l.slice(l.indexOf(' ') + 1)}`).join('\n')}`);
    });
    results[p.name] = probe;
    console.log(`${p.name}: media node ${node} killed → "Reconnecting…" after ${probe.reconnectingAt - killedAt} ms, ` +
      `connected after ${probe.connectedAt - killedAt} ms, audio again after ${probe.audioAt - killedAt} ms`);
  }
  for (const p of [A, B]) {
    const r = results[p.name];
    assert.equal(r.shown, 'Reconnecting…', `${p.name} showed "Reconnecting…"`);
    assert.ok(r.audioAt - killedAt < MEDIA_RECOVERY_MS, `${p.name}: audio again ${r.audioAt - killedAt} ms after the kill (bound ${MEDIA_RECOVERY_MS} ms)`);
  }
  assert.notEqual(await mediaNodeOfChannel(), node);
  await hears(A, B, 1500);
  await hears(B, A, 1500);
});

test('kill -9 of the api node under a gateway: the client identifies again elsewhere and misses nothing', async () => {
  assert.ok(channelId, 'needs the chat of the first test');
  assert.ok(nodes, 'needs the gateways placed by the first test');
  const g = (p) => p.b.page;
  const { nodeA } = nodes;
  const conns = await gatewayConnections();
  assert.ok(conns[nodeA] >= 1 && conns[nodes.nodeB] >= 1, `A still on ${nodeA}, B on ${nodes.nodeB}: ${JSON.stringify(conns)}`);
  await g(A).waitForFunction((id) => window.confab.store.msgState(id).loaded, channelId, { timeout: 15_000 });

  await g(A).evaluate(() => {
    const gw = window.confab.gateway;
    const w = window.__gw = { invalid: 0, ready: 0, statuses: [], readyAt: null };
    gw.onOp(9, () => { w.invalid += 1; });
    gw.on('READY', () => { w.ready += 1; w.readyAt = Date.now(); });
    gw.onStatus((s) => w.statuses.push(s));
    w.voice = [];
    const me = window.confab.store.me.id;
    gw.on('VOICE_STATE_UPDATE', (d) => { if (d.user_id === me) w.voice.push(`${Date.now()} state ${JSON.stringify(d)}`); });
    gw.on('VOICE_RECONNECT', (d) => w.voice.push(`${Date.now()} reconnect ${JSON.stringify(d)}`));
    gw.onOp(14, (d) => w.voice.push(`${Date.now()} error ${JSON.stringify(d)}`));
    gw.onOp(13, (d) => w.voice.push(`${Date.now()} answer ${d && d.voice_session_id}`));
    const origSend = gw.send.bind(gw);
    gw.send = (op, d) => { if (op === 4 || op === 12) w.voice.push(`${Date.now()} sent op ${op} ${op === 4 ? JSON.stringify(d) : ''}`); return origSend(op, d); };
  });
  const consoleLog = [];
  g(A).on('console', (m) => consoleLog.push(`${Date.now()} ${m.type()} ${m.text()}`));
  const historyRequests = [];
  g(A).on('request', (r) => { if (r.url().includes(`/channels/${channelId}/messages?`)) historyRequests.push(r.url()); });
  const killedAt = Date.now();
  await cluster.kill(nodeA);
  const gap = [];
  for (let i = 0; i < 6; i++) {
    const t = `while ${nodeA} was down ${i}`;
    gap.push(t);
    await send(g(B), t);
    await sleep(250);
  }
  await waitFor(async () => (await g(A).evaluate(() => window.__gw.ready)) >= 1, { timeout: 30_000, message: 'A identified again' });
  await waitFor(async () => Object.values(await counts(g(A), gap)).every((n) => n >= 1), { timeout: 15_000, message: 'A shows the messages sent meanwhile' });
  const shownAt = Date.now();
  const w = await g(A).evaluate(() => window.__gw);
  console.log(`A: api node ${nodeA} killed → READY on another node after ${w.readyAt - killedAt} ms, every missed message shown after ${shownAt - killedAt} ms (statuses ${w.statuses.join(' → ')})`);
  assert.ok(w.invalid >= 1, 'A got INVALID_SESSION (op 9)');
  assert.ok(w.statuses.includes('reconnecting'), 'A showed that it was reconnecting');
  assert.equal(await g(A).evaluate(() => window.confab.gateway.status), 'ready');
  const after = `after ${nodeA} died`;
  await send(g(B), after);
  await waitFor(async () => (await counts(g(A), [after]))[after] === 1, { message: 'A gets live messages again' });
  await sleep(1000);
  // Exactly the channel's history, in order, each once.
  const history = (await rest(cluster.url, await tokenOf(g(B)), 'GET', `/channels/${channelId}/messages?limit=100`)).map((m) => m.id).reverse();
  const shown = await g(A).evaluate(() => [...document.querySelectorAll('[data-testid="message"]')].map((e) => e.dataset.messageId));
  assert.deepEqual(shown, history, "A's list is the channel's history: nothing missing, nothing twice");
  assert.deepEqual(await counts(g(A), gap), Object.fromEntries(gap.map((t) => [t, 1])));
  // It caught up from what it held (`?after=`), rather than reloading the channel.
  assert.ok(historyRequests.length && historyRequests.every((u) => new URL(u).searchParams.has('after')),
    `A fetched the history after what it held: ${historyRequests.join(', ')}`);
  // Voice follows the re-identify (it rejoins); B's stays up.
  await g(A).waitForFunction(() => window.confabVoice.state === 'connected', null, { timeout: 20_000 }).catch(async (e) => {
    const v = await g(A).evaluate(() => ({ state: window.confabVoice.state, error: window.confabVoice.error, channel: window.confabVoice.channelId, log: window.__gw.voice }));
    console.log(JSON.stringify(v, null, 1), killedAt, consoleLog.join('\n'));
    throw new Error(`A's voice after the re-identify: ${JSON.stringify(v)} (${e.message})`);
  });
  await hears(B, A, 1500);
});

// When a client's gateway moves to another api node while the old one lives on (a network blip,
// a balancer that picked another node), the client rejoins voice through the new node; the old
// node's voice session is superseded by the newer one (no leave is shown to anyone), and the
// client stays in voice past the old node's resume window (~15 s).
test('a gateway moved to another live api node keeps its voice', async () => {
  assert.ok(inVoice, 'needs the voice joins');
  const page = A.b.page;
  await page.waitForFunction(() => window.confabVoice.state === 'connected' && !window.confabVoice._rejoining, null, { timeout: 20_000 });
  const t0 = Date.now();
  await page.evaluate(() => {
    const me = window.confab.store.me.id;
    const log = window.__moveLog = [];
    const gw = window.confab.gateway;
    gw.on('VOICE_STATE_UPDATE', (d) => { if (d.user_id === me) log.push(`${Date.now()} own state, channel ${d.channel_id}`); });
    gw.onOp(14, (d) => log.push(`${Date.now()} VOICE_ERROR ${JSON.stringify(d)}`));
    gw.on('READY', () => log.push(`${Date.now()} READY`));
    gw.on('RESUMED', () => log.push(`${Date.now()} RESUMED`));
    window.confabVoice.onChange(() => {
      const v = window.confabVoice;
      const last = log.length && log[log.length - 1];
      const line = `voice ${v.state} ${v.error || ''}`;
      if (!last || !last.endsWith(line)) log.push(`${Date.now()} ${line}`);
    });
  });
  const state = () => page.evaluate(() => ({ state: window.confabVoice.state, channel: window.confabVoice.channelId, log: window.__moveLog }));
  const explain = (v) => `${JSON.stringify({ ...v, log: undefined })}\n${v.log.map((l) => `  +${Number(l.split(' ')[0]) - t0} ms ${l.slice(l.indexOf(' ') + 1)}`).join('\n')}`;
  const moved = await moveGatewayOfA({ away: true });
  console.log(`A's gateway moved from ${moved.from} to ${moved.nodeA}`);
  await page.waitForFunction(() => window.confabVoice.state === 'connected', null, { timeout: 20_000 })
    .catch(async () => assert.fail(`A's voice did not come back after its gateway moved: ${explain(await state())}`));
  await sleep(20_000);  // past the old node's resume window
  const v = await state();
  assert.ok(v.state === 'connected' && v.channel, `A still in voice 20 s after its gateway moved: ${explain(v)}`);
  await hears(B, A, 1500);
});

test('no uncaught page errors', () => {
  for (const p of [A, B]) assert.deepEqual(p.b.errors, [], p.name);
});
