// Video through the real UI and the real SFU in three browsers: one turns its (fake, moving,
// 1280×720) camera on with simulcast, the other two decode it; the viewer whose tile is small
// receives a lower simulcast layer than the viewer whose tile is large; a screen share is decoded
// on a large tile; without the VIDEO permission the buttons are disabled and the server refuses.
//
// Screen share: headless Chromium's getDisplayMedia works here with the flags of lib.mjs
// (--use-fake-ui-for-media-stream picks the fake screen, 1280×720, moving), so the test clicks
// the real button; no canvas stand-in is needed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi, joinViaUi,
  uniqueName, waitFor, sleep, snap, tokenOf, rest } from './lib.mjs';

let server;
const peers = [];  // {name, b: browser, id}
const serverName = uniqueName('Video ');
let joined = false;
let cameraOn = false;

/** inbound-rtp video stats, annotated with the (user, track) the client maps the mid to. */
function inboundVideo(page) {
  return page.evaluate(async () => {
    const v = window.confabVoice;
    if (!v || !v.pc) return [];
    const out = [];
    (await v.pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        const slot = v.videoSlots[s.mid] || null;
        out.push({
          mid: s.mid, user: slot && slot.user_id, track: slot && slot.track,
          framesDecoded: s.framesDecoded || 0, frameWidth: s.frameWidth || 0, frameHeight: s.frameHeight || 0,
          packetsReceived: s.packetsReceived || 0,
        });
      }
    });
    return out;
  });
}

/** The publisher's simulcast encodings: rid → {active, frameWidth, framesEncoded, limit}. */
function outboundVideo(page) {
  return page.evaluate(async () => {
    const v = window.confabVoice;
    const tx = v.pc.getTransceivers().find((t) => t.sender.track && t.sender.track.kind === 'video' && t.sender.getParameters().encodings.length > 1);
    const active = Object.fromEntries(tx.sender.getParameters().encodings.map((e) => [e.rid, e.active]));
    const out = {};
    (await tx.sender.getStats()).forEach((s) => {
      if (s.type === 'outbound-rtp' && s.rid) {
        out[s.rid] = { active: active[s.rid], frameWidth: s.frameWidth || 0, framesEncoded: s.framesEncoded || 0, limit: s.qualityLimitationReason };
      }
    });
    return { layers: v.videoLayers.camera, encodings: out };
  });
}

/** Restyles the tile grid through the CSSOM (the page's CSP forbids injected style sheets). */
function gridStyle(page, style) {
  return page.evaluate((st) => Object.assign(document.querySelector('[data-testid="video-grid"]').style, st), style);
}

const find = (stats, user, track) => stats.find((s) => s.user === user && s.track === track);

/**
 * Waits until `page` decodes `user`'s `track` (framesDecoded rising by `minFrames` over 2 s);
 * returns the stats. A screen share may run at a few frames per second (the encoder keeps
 * resolution and drops frame rate when bandwidth or CPU is short), hence a smaller bar for it.
 */
async function decodes(page, user, track, who, minFrames = track === 'screen' ? 3 : 10) {
  let last = null;
  let all = [];
  return waitFor(async () => {
    all = await inboundVideo(page).catch(() => all);
    const s = find(all, user, track);
    const prev = last;
    last = s;
    return s && prev && prev.mid === s.mid && s.framesDecoded - prev.framesDecoded >= minFrames ? s : null;
  }, { timeout: 45_000, interval: 2000, message: `${who} decodes ${track} frames` }).catch((e) => {
    throw new Error(`${e.message} (last stats ${JSON.stringify(all)})`);
  });
}

/** The frame width `page` receives of `user`'s `track` once it has settled (same for 3 samples). */
async function settledWidth(page, user, track, who, pred) {
  const seen = [];
  let all = [];
  return waitFor(async () => {
    all = await inboundVideo(page).catch(() => all);
    const s = find(all, user, track);
    if (!s || !s.frameWidth) return null;
    seen.push(s.frameWidth);
    const tail = seen.slice(-3);
    return tail.length === 3 && tail.every((w) => w === tail[0]) && pred(tail[0]) ? tail[0] : null;
  }, { timeout: 60_000, interval: 1500, message: `${who}: frame width settles` }).catch((e) => {
    throw new Error(`${e.message} (widths seen ${seen.join(', ')}; last stats ${JSON.stringify(all)})`);
  });
}

before(async () => {
  server = await startServer();
  for (const name of ['pia', 'quin', 'rex']) {
    peers.push({ name: uniqueName(name), b: await launchBrowser() });
  }
});

after(async () => {
  for (const p of peers) await p.b.close();
  await server?.stop();
});

test('three users join one voice channel; the camera and screen buttons are there', async () => {
  const [a, b, c] = peers;
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
    const st = await p.b.page.evaluate(() => ({ state: window.confabVoice.state, error: window.confabVoice.error }));
    assert.equal(st.state, 'connected', `${p.name} did not connect: ${JSON.stringify(st)}`);
    assert.ok(await p.b.page.getByTestId('voice-camera').isEnabled(), `${p.name}: camera button enabled`);
    assert.ok(await p.b.page.getByTestId('voice-screen').isEnabled(), `${p.name}: screen button enabled`);
    // The offer carries the camera (3 simulcast rids), the screen and 9 video receive slots.
    const shape = await p.b.page.evaluate(() => {
      const sdp = window.confabVoice.pc.localDescription.sdp;
      const videos = sdp.split('\r\nm=').filter((m) => m.startsWith('video'));
      return {
        video: videos.length,
        recvonly: videos.filter((m) => m.includes('a=recvonly')).length,
        rids: (videos[0].match(/a=rid:\w+ send/g) || []).length,
      };
    });
    assert.deepEqual(shape, { video: 11, recvonly: 9, rids: 3 }, `${p.name}: offer shape`);
  }
  joined = true;
});

test('the camera goes out with simulcast and both viewers decode it', async () => {
  assert.ok(joined, 'needs the joins of the first test');
  const [a, b, c] = peers;
  await a.b.page.getByTestId('voice-camera').click();
  await a.b.page.waitForFunction(() => window.confabVoice.cameraOn, null, { timeout: 20_000 });
  const settings = await a.b.page.evaluate(() => window.confabVoice.cameraTrack.getSettings());
  assert.equal(settings.width, 1280, 'captures 1280×720');
  assert.equal(settings.height, 720);
  // Our own preview tile, and the others' tiles for A's camera.
  await a.b.page.locator(`[data-testid="video-tile"][data-user-id="${a.id}"][data-track="camera"][data-local="true"]`).waitFor({ timeout: 10_000 });
  for (const p of [b, c]) {
    await p.b.page.locator(`[data-testid="video-tile"][data-user-id="${a.id}"][data-track="camera"]`).waitFor({ timeout: 15_000 });
    const s = await decodes(p.b.page, a.id, 'camera', p.name);
    assert.ok(s.frameWidth > 0, `${p.name}: frame width ${s.frameWidth}`);
  }
  // The tiles show the video (the <video> element has frames).
  await waitFor(() => b.b.page.locator(`[data-testid="video-tile"][data-user-id="${a.id}"] video`).evaluate((v) => v.videoWidth > 0),
    { timeout: 15_000, message: 'B\'s tile plays' });
  cameraOn = true;
});

test('a small tile gets a lower simulcast layer than a large one', async (t) => {
  assert.ok(cameraOn, 'needs the camera of the previous test');
  const [a, b, c] = peers;
  // B: one column, as wide as the chat area (≈ 600 px → the half or full layer).
  // C: a 120×68 px tile (→ the quarter layer, 320×180).
  await gridStyle(b.b.page, { gridTemplateColumns: '1fr', maxHeight: 'none' });
  await gridStyle(c.b.page, { gridTemplateColumns: '120px' });
  const diag = async () => JSON.stringify({
    publisher: await outboundVideo(a.b.page),
    tilesC: await c.b.page.evaluate(() => window.confabVoice.videoTiles),
    tilesB: await b.b.page.evaluate(() => window.confabVoice.videoTiles),
  });
  const withDiag = (p) => p.catch(async (e) => { throw new Error(`${e.message}; ${await diag()}`); });
  const large = await withDiag(settledWidth(b.b.page, a.id, 'camera', b.name, (w) => w >= 640));
  const small = await withDiag(settledWidth(c.b.page, a.id, 'camera', c.name, (w) => w <= 320));
  t.diagnostic(await diag());
  assert.ok(small < large, `small tile ${small} px < large tile ${large} px`);
  t.diagnostic(`frame width received: large tile ${large} px, small tile ${small} px`);
  // What C reported: its tile in device pixels.
  const tiles = await c.b.page.evaluate(() => window.confabVoice.videoTiles);
  const reported = tiles.find((x) => x.user_id === a.id && x.track === 'camera');
  assert.ok(reported && reported.width <= 130 && reported.width > 0, `C reported ${JSON.stringify(tiles)}`);
  // The publisher was told which encodings are watched and paused the rest.
  const enc = await a.b.page.evaluate(() => ({
    layers: window.confabVoice.videoLayers.camera,
    active: window.confabVoice.pc.getTransceivers().find((t) => t.sender.track && t.sender.track.kind === 'video')
      .sender.getParameters().encodings.map((e) => [e.rid, e.active]),
  }));
  assert.ok(enc.layers.includes('q'), `active rids ${JSON.stringify(enc)}`);
  for (const [rid, active] of enc.active) assert.equal(active, enc.layers.includes(rid), `encoding ${rid}: ${JSON.stringify(enc)}`);
  await snap(b.b.page, 'video');
});

test('a tile scrolled out of view stops its video', async () => {
  assert.ok(cameraOn, 'needs the camera');
  const [a, , c] = peers;
  await gridStyle(c.b.page, { display: 'none' });
  await waitFor(() => c.b.page.evaluate(() => window.confabVoice.videoTiles.length === 0), { timeout: 10_000, message: 'C reports no tiles' });
  await sleep(1500);
  const s1 = find(await inboundVideo(c.b.page), a.id, 'camera');
  await sleep(2500);
  const all = await inboundVideo(c.b.page);
  const decoded = all.reduce((n, s) => n + s.framesDecoded, 0);
  await sleep(2000);
  const later = (await inboundVideo(c.b.page)).reduce((n, s) => n + s.framesDecoded, 0);
  assert.ok(later - decoded < 5, `C still decodes ${later - decoded} frames with no tile shown (slot ${JSON.stringify(s1)})`);
});

test('a screen share is decoded on a large tile', async () => {
  assert.ok(joined, 'needs the joins');
  const [a, b] = peers;
  await a.b.page.getByTestId('voice-screen').click();
  await a.b.page.waitForFunction(() => window.confabVoice.screenOn, null, { timeout: 20_000 });
  // Watched on demand (Go Live): a card with a Watch button first.
  const card = b.b.page.locator(`[data-testid="stream-card"][data-user-id="${a.id}"]`);
  await card.waitFor({ timeout: 15_000 });
  await card.getByTestId('watch-stream').click();
  const tile = b.b.page.locator(`[data-testid="video-tile"][data-user-id="${a.id}"][data-track="screen"]`);
  await tile.waitFor({ timeout: 15_000 });
  // Shown first and spanning the grid.
  const first = await b.b.page.locator('[data-testid="video-tile"]').first().getAttribute('data-track');
  assert.equal(first, 'screen');
  const s = await decodes(b.b.page, a.id, 'screen', b.name).catch(async (e) => {
    const sender = await a.b.page.evaluate(async () => {
      const v = window.confabVoice;
      const tx = v.pc.getTransceivers().find((t) => t.sender.track === v.screenTrack);
      const out = { layers: v.videoLayers.screen, encodings: tx && tx.sender.getParameters().encodings.map((x) => x.active) };
      if (tx) (await tx.sender.getStats()).forEach((x) => { if (x.type === 'outbound-rtp') Object.assign(out, { framesEncoded: x.framesEncoded, frameWidth: x.frameWidth, limit: x.qualityLimitationReason, fps: x.framesPerSecond }); });
      return out;
    });
    throw new Error(`${e.message}; publisher screen ${JSON.stringify(sender)}`);
  });
  assert.ok(s.frameWidth >= 640, `screen frame width ${s.frameWidth}`);
  // The camera keeps flowing next to it.
  await decodes(b.b.page, a.id, 'camera', `${b.name} (camera beside the screen)`);
  await a.b.page.getByTestId('voice-screen').click();
  await waitFor(async () => (await tile.count()) === 0, { timeout: 10_000, message: 'screen tile gone after stop' });
});

test('without the VIDEO permission the buttons are disabled and the server refuses', async () => {
  assert.ok(joined, 'needs the joins');
  const [a, , c] = peers;
  const token = await tokenOf(a.b.page);
  const roles = await rest(server.url, token, 'GET', `/servers/${await serverIdOf(a.b.page)}/roles`);
  const sid = await serverIdOf(a.b.page);
  const everyone = roles.find((r) => r.id === sid);
  const without = (BigInt(everyone.permissions) & ~(1n << 9n)).toString();
  await rest(server.url, token, 'PATCH', `/servers/${sid}/roles/${sid}`, { permissions: without });
  await waitFor(() => c.b.page.getByTestId('voice-camera').isDisabled(), { timeout: 15_000, message: 'C\'s camera button disabled' });
  assert.ok(await c.b.page.getByTestId('voice-screen').isDisabled());
  const title = await c.b.page.getByTestId('voice-camera').evaluate((el) => el.title || el.parentElement.title);
  assert.match(title, /Video permission/);
  // The server is the authority: op 4 self_video is refused with 4403.
  const ok = await c.b.page.evaluate(() => window.confabVoice.setCamera(true));
  assert.equal(ok, false);
  assert.equal(await c.b.page.evaluate(() => window.confabVoice.videoDenied), true);
  assert.equal(await c.b.page.evaluate(() => window.confabVoice.cameraOn), false);
});

async function serverIdOf(page) {
  return page.evaluate(() => window.confabVoice.serverId);
}

test('no uncaught page errors', () => {
  for (const p of peers) assert.deepEqual(p.b.errors, [], p.name);
});
