// How long things take where a user waits, through the real UI and the real SFU on loopback:
// - join → first audio, both directions: from the click on the voice channel to the first RTP
//   packet the joiner receives from the one already there, and the first one that one receives
//   from the joiner; with the breakdown of where the time goes (microphone, gateway, offer, ICE
//   gathering, answer, ICE, DTLS). p50 over 10 joins.
// - camera on → sharp: from the click on the camera button to the first frame of at least
//   640×360 decoded on the viewer's large tile. p50 over 10 tries.
// The figures are printed (docs/benchmarks.md quotes them); the assertions are loose bounds so a
// busy machine does not fail them, far below what the defects they guard against cost.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi, joinViaUi,
  uniqueName, waitFor, sleep } from './lib.mjs';

const TRIES = Number(process.env.TRIES || 10);
/** A release build of the server answers offers ~10× faster than a debug one. */
const RELEASE = /release/.test(process.env.CONFAB_BIN || '') || !!process.env.CONFAB_URL;
let server;
const peers = [];  // {name, b, id}
const serverName = uniqueName('Timing ');

const voiceLink = (page) => page.locator('[data-testid="channel-link"][data-channel-type="voice"][data-channel-name="General"]');

const p50 = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]; };
const fmt = (x) => (x == null || Number.isNaN(x) ? '   -' : String(Math.round(x)).padStart(4));

/**
 * Starts an in-page watcher: resolves window.__firstAudio with the (epoch ms) time at which the
 * audio packets received (inbound-rtp, all slots) first exceed the count at the start.
 */
function watchFirstAudio(page) {
  return page.evaluate(() => {
    const now = () => performance.timeOrigin + performance.now();
    const count = async () => {
      const v = window.confabVoice;
      if (!v || !v.pc) return 0;
      let n = 0;
      (await v.pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'audio') n += s.packetsReceived || 0; });
      return n;
    };
    window.__firstAudio = null;
    const stop = Date.now() + 10_000;
    (async () => {
      const base = await count();
      while (Date.now() < stop) {
        if ((await count()) > base) { window.__firstAudio = now(); return; }
        await new Promise((r) => setTimeout(r, 4));
      }
    })();
  });
}

before(async () => {
  server = await startServer();
  for (const name of ['tim', 'una', 'vic']) peers.push({ name: uniqueName(name), b: await launchBrowser() });
  const [a, b, c] = peers;
  for (const p of peers) {
    await registerViaUi(p.b.page, server.url, p.name);
    p.id = await p.b.page.evaluate(() => window.confab.store.me.id);
  }
  await createServerViaUi(a.b.page, serverName);
  const link = await createInviteViaUi(a.b.page);
  await joinViaUi(b.b.page, link, serverName);
  await joinViaUi(c.b.page, link, serverName);
});

after(async () => {
  for (const p of peers) await p.b.close();
  await server?.stop();
});

test('join → first audio both ways, with the breakdown (p50 of 10 joins)', async () => {
  const [a, b] = peers;
  await voiceLink(a.b.page).click();
  await a.b.page.waitForFunction(() => window.confabVoice && window.confabVoice.state === 'connected', null, { timeout: 30_000 });
  const steps = ['mic', 'joined', 'offer', 'gathered', 'answer', 'remote', 'ice', 'connected'];
  const rows = [];
  for (let i = 0; i < TRIES; i++) {
    await watchFirstAudio(a.b.page);
    await watchFirstAudio(b.b.page);
    // The watcher in B's page starts before its pc exists (count 0): any packet counts.
    await voiceLink(b.b.page).click();
    await waitFor(() => a.b.page.evaluate(() => window.__firstAudio), { timeout: 15_000, interval: 20, message: 'A receives B' });
    await waitFor(() => b.b.page.evaluate(() => window.__firstAudio), { timeout: 15_000, interval: 20, message: 'B receives A' });
    const tb = await b.b.page.evaluate(() => ({ ...window.confabVoice.timeline, first: window.__firstAudio }));
    const ta = await a.b.page.evaluate(() => window.__firstAudio);
    const t0 = tb.click;
    const row = { try: i + 1 };
    for (const s of steps) row[s] = tb[s] != null ? tb[s] - t0 : NaN;
    row.bHearsA = tb.first - t0;
    row.aHearsB = ta - t0;
    row.both = Math.max(row.bHearsA, row.aHearsB);
    rows.push(row);
    // B leaves; A sees it; a pause before the next join.
    await b.b.page.getByTestId('voice-leave').click();
    await waitFor(async () => (await a.b.page.locator(`[data-testid="voice-participant"][data-user-id="${b.id}"]`).count()) === 0,
      { timeout: 10_000, message: 'A sees B leave' });
    await sleep(700);
  }
  const cols = [...steps, 'bHearsA', 'aHearsB', 'both'];
  const lines = [`join → first audio, ms after the click (${TRIES} joins):`, `  try ${cols.map((c) => c.padStart(9)).join('')}`];
  for (const r of rows) lines.push(`  ${String(r.try).padStart(3)} ${cols.map((c) => fmt(r[c]).padStart(9)).join('')}`);
  const med = Object.fromEntries(cols.map((c) => [c, p50(rows.map((r) => r[c]).filter((x) => !Number.isNaN(x)))]));
  lines.push(`  p50 ${cols.map((c) => fmt(med[c]).padStart(9)).join('')}`);
  console.log(lines.join('\n'));
  // Before the join was pipelined: 348 ms with a release server, ~670 ms with a debug one.
  const bound = RELEASE ? 250 : 500;
  assert.ok(med.both < bound, `p50 join → first audio both ways ${Math.round(med.both)} ms (bound ${bound} ms)`);
});

test('camera on → ≥ 640×360 decoded on a large tile (p50 of 10 tries)', async () => {
  // A publishes; B shows it on a large tile, C on a small one, so A sends two simulcast layers
  // (q for C, h or f for B), as in a call of three: the encoder must afford both at once.
  const [a, b, c] = peers;
  for (const p of [a, b, c]) {
    if (!(await p.b.page.evaluate(() => window.confabVoice.channelId))) await voiceLink(p.b.page).click();
    await p.b.page.waitForFunction(() => window.confabVoice.state === 'connected', null, { timeout: 30_000 });
  }
  // B's grid: one column as wide as the main pane (a tile ≥ 640 px wide: the half or full layer).
  await b.b.page.evaluate(() => Object.assign(document.querySelector('[data-testid="video-grid"]').style, { gridTemplateColumns: '1fr', maxHeight: 'none' }));
  await c.b.page.evaluate(() => Object.assign(document.querySelector('[data-testid="video-grid"]').style, { gridTemplateColumns: '120px' }));
  const times = [];
  const detail = [];
  for (let i = 0; i < TRIES; i++) {
    // Each try on a fresh connection of A's (a new bandwidth estimate), as after a join.
    await a.b.page.getByTestId('voice-leave').click();
    await a.b.page.waitForFunction(() => window.confabVoice.state === 'idle');
    await voiceLink(a.b.page).click();
    await a.b.page.waitForFunction(() => window.confabVoice.state === 'connected', null, { timeout: 30_000 });
    await sleep(1500);
    const t0 = await a.b.page.evaluate(() => {
      const t = performance.timeOrigin + performance.now();
      window.confabVoice.setCamera(true);
      return t;
    });
    // A samples its sending side meanwhile (for the figures printed): bandwidth estimate and
    // each encoding's size and limit.
    await a.b.page.evaluate(() => {
      window.__send = [];
      window.__stopSend = false;
      const t0 = performance.now();
      const tick = async () => {
        const v = window.confabVoice;
        if (!v.pc || window.__stopSend || window.__send.length > 200) return;
        const r = { t: Math.round(performance.now() - t0) };
        (await v.pc.getStats()).forEach((s) => {
          if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate) r.bwe = Math.round(s.availableOutgoingBitrate / 1000);
          if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid) r[s.rid] = `${s.frameWidth || 0}@${Math.round((s.targetBitrate || 0) / 1000)}k${s.qualityLimitationReason && s.qualityLimitationReason !== 'none' ? `/${s.qualityLimitationReason}` : ''}`;
        });
        window.__send.push(r);
        setTimeout(tick, 250);
      };
      setTimeout(tick, 100);
    });
    // B polls its decoded frame size of A's camera every 20 ms, in its page.
    const res = await b.b.page.evaluate(async (aId) => {
      const now = () => performance.timeOrigin + performance.now();
      const end = Date.now() + 30_000;
      let first = null;
      let widths = [];
      while (Date.now() < end) {
        const v = window.confabVoice;
        const track = v.videoTrackFor(aId, 'camera');
        if (track && v.pc) {
          const stats = await v.pc.getStats(track);
          let w = 0;
          let h = 0;
          stats.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') { w = s.frameWidth || 0; h = s.frameHeight || 0; } });
          if (w && first == null) first = now();
          if (w && widths[widths.length - 1] !== w) widths.push(w);
          if (w >= 640 && h >= 360) return { sharp: now(), first, widths };
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      return { sharp: null, first, widths };
    }, a.id);
    assert.ok(res.sharp, `try ${i + 1}: no ≥640×360 frame within 30 s (widths ${res.widths.join(' → ')})`);
    times.push(res.sharp - t0);
    detail.push(`  ${String(i + 1).padStart(3)} first frame ${fmt(res.first - t0)} ms, ≥640×360 ${fmt(res.sharp - t0)} ms (widths ${res.widths.join(' → ')})`);
    const send = await a.b.page.evaluate(() => { window.__stopSend = true; return window.__send; });
    if (res.sharp - t0 > 2000 || process.env.VERBOSE) {
      // ms: estimate kbit/s, encodings q/h/f frame width (and what limits them).
      detail.push(`      sender: ${send.filter((r) => r.t <= res.sharp - t0 + 300).slice(-16).map((r) => `${r.t}: ${r.bwe ?? '-'}k ${r.q ?? '-'} ${r.h ?? '-'} ${r.f ?? '-'}`).join(' | ')}`);
    }
    await a.b.page.evaluate(() => window.confabVoice.setCamera(false));
    // Past the viewers' op 15 interval (1.5 s), so each try starts like the first.
    await sleep(2000);
  }
  console.log([`camera on → ≥640×360 decoded on a large tile (${TRIES} tries):`, ...detail, `  p50 ${Math.round(p50(times))} ms, max ${Math.round(Math.max(...times))} ms`].join('\n'));
  // Before the fix one try in a few stayed at 320×180 for 4–27 s (the first after a join, on a
  // busy machine); p50 was under a second either way.
  assert.ok(p50(times) < 2000, `p50 camera on → sharp ${Math.round(p50(times))} ms`);
  assert.ok(Math.max(...times) < 4000, `slowest camera on → sharp ${Math.round(Math.max(...times))} ms`);
});
