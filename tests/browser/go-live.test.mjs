// Go Live in three real browsers through the real SFU: A streams a synthetic screen (a 1920×1080
// canvas animated at 60 fps) with its sound (a WebAudio tone), B watches, C stays in the channel
// without watching. Checks what each user sees and gets on the wire, and what the server counts:
// a LIVE badge and a card until one chooses to watch; the SFU forwards the share and its sound
// only to watchers (per-browser inbound stats and the server's stream_audio counter); the sound
// comes on its own slot with its own volume and mute; the viewer count reaches the streamer;
// a preset switch changes the delivered resolution and frame rate; stop watching stops it all.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi, joinViaUi,
  uniqueName, waitFor, sleep, snap } from './lib.mjs';

let server;
const peers = [];  // {name, b, id}
let joined = false;
let live = false;

/** The server's count of forwarded screen-share sound packets. */
async function streamAudioForwarded() {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('confab_sfu_packets_forwarded_total{') && l.includes('kind="stream_audio"'));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

/** What `page` receives of `user`'s share: the screen's video and the stream sound. */
function receivedShare(page, user) {
  return page.evaluate(async (uid) => {
    const v = window.confabVoice;
    const out = { video: null, sound: null };
    if (!v || !v.pc) return out;
    (await v.pc.getStats()).forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      const vs = v.videoSlots[s.mid];
      if (s.kind === 'video' && vs && vs.user_id === uid && vs.track === 'screen') {
        out.video = { frames: s.framesDecoded || 0, width: s.frameWidth || 0, height: s.frameHeight || 0, packets: s.packetsReceived || 0, fps: s.framesPerSecond || 0 };
      }
      if (s.kind === 'audio' && v.streamSlots[s.mid] === uid) {
        out.sound = { mid: s.mid, packets: s.packetsReceived || 0, level: s.audioLevel || 0, energy: s.totalAudioEnergy || 0 };
      }
    });
    return out;
  }, user);
}

/** Every inbound packet `page` got so far (all kinds), to show that nothing of a share arrives. */
function allInbound(page) {
  return page.evaluate(async () => {
    const v = window.confabVoice;
    // Frames, not packets: bandwidth estimation's padding probes arrive on video receivers too.
    let video = 0;
    (await v.pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') video += s.framesReceived || 0; });
    return { video, streamSlots: Object.keys(v.streamSlots).length };
  });
}

/** Decoded frames per second of `user`'s screen at `page` over `ms`, and the frame size. */
async function deliveredFps(page, user, ms = 3000) {
  const a = await receivedShare(page, user);
  const t0 = Date.now();
  await sleep(ms);
  const b = await receivedShare(page, user);
  const dt = (Date.now() - t0) / 1000;
  return { fps: (b.video.frames - a.video.frames) / dt, width: b.video.width, height: b.video.height };
}

before(async () => {
  server = await startServer();
  for (const name of ['sol', 'tam', 'uma']) peers.push({ name: uniqueName(name), b: await launchBrowser() });
});

after(async () => {
  for (const p of peers) await p.b.close();
  await server?.stop();
});

test('three users in one voice channel', async () => {
  const [a, b, c] = peers;
  const serverName = uniqueName('Live ');
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
    await p.b.page.waitForFunction(() => window.confabVoice && ['connected', 'error'].includes(window.confabVoice.state), null, { timeout: 30_000 }).catch(() => {});
    assert.equal(await p.b.page.evaluate(() => window.confabVoice.state), 'connected', `${p.name} connected`);
  }
  joined = true;
});

test('A goes live with sound at 1080p60: LIVE badge and a card, nothing forwarded until someone watches', async () => {
  assert.ok(joined, 'needs the joins');
  const [a, b, c] = peers;
  const ok = await a.b.page.evaluate(async () => {
    // A moving 1920×1080 picture with a frame counter, and a 440 Hz tone as the tab's sound.
    const canvas = document.createElement('canvas');
    canvas.width = 1920; canvas.height = 1080;
    const g = canvas.getContext('2d');
    let n = 0;
    const draw = () => {
      n += 1;
      g.fillStyle = `hsl(${(n * 3) % 360} 60% 30%)`;
      g.fillRect(0, 0, 1920, 1080);
      g.fillStyle = '#fff';
      g.font = 'bold 160px sans-serif';
      g.fillText(`frame ${n}`, 200 + (n * 7) % 900, 540);
      g.fillRect((n * 23) % 1920, 900, 120, 120);
    };
    window.__liveTimer = setInterval(draw, 1000 / 60);
    draw();
    const stream = canvas.captureStream(60);
    const ctx = new AudioContext();
    const osc = ctx.createOscillator();
    osc.frequency.value = 440;
    const gain = ctx.createGain();
    gain.gain.value = 0.3;
    const dest = ctx.createMediaStreamDestination();
    osc.connect(gain).connect(dest);
    osc.start();
    await ctx.resume();
    stream.addTrack(dest.stream.getAudioTracks()[0]);
    window.__liveAudio = ctx;
    return window.confabVoice.setScreen(true, { stream, preset: '1080p60' });
  });
  assert.ok(ok, 'A is live');
  assert.equal(await a.b.page.evaluate(() => window.confabVoice.screenHasAudio), true, 'the share has its sound');
  for (const p of [b, c]) {
    const badge = p.b.page.locator(`[data-testid="voice-participant"][data-user-id="${a.id}"] [data-testid="live-badge"]`);
    await badge.waitFor({ timeout: 15_000 });
    assert.equal((await badge.textContent()).trim(), 'LIVE');
    await p.b.page.locator(`[data-testid="stream-card"][data-user-id="${a.id}"]`).waitFor({ timeout: 10_000 });
  }
  // A's own tile says nobody watches; nobody gets the share or its sound.
  await waitFor(async () => (await a.b.page.locator('[data-testid="video-tile"][data-local="true"][data-track="screen"] [data-testid="stream-viewers"]').textContent()) === '0 watching',
    { message: 'A sees 0 watching' });
  const before = await streamAudioForwarded();
  const inB = await allInbound(b.b.page);
  await sleep(2000);
  assert.equal(await streamAudioForwarded(), before, 'no stream sound forwarded while nobody watches');
  const inB2 = await allInbound(b.b.page);
  assert.equal(inB2.video - inB.video, 0, 'B receives no video before watching');
  assert.equal(inB2.streamSlots, 0, 'B has no stream sound slot before watching');
  live = true;
});

test('B watches: screen decoded, its sound on its own slot, the count reaches A; C gets nothing', async () => {
  assert.ok(live, 'needs A live');
  const [a, b, c] = peers;
  await b.b.page.locator(`[data-testid="stream-card"][data-user-id="${a.id}"] [data-testid="watch-stream"]`).click();
  const tile = b.b.page.locator(`[data-testid="video-tile"][data-user-id="${a.id}"][data-track="screen"]`);
  await tile.waitFor({ timeout: 15_000 });
  let share = null;
  await waitFor(async () => {
    share = await receivedShare(b.b.page, a.id);
    return share.video && share.video.frames > 10 && share.sound && share.sound.packets > 50 && share.sound.level > 0;
  }, { timeout: 30_000, interval: 500, message: 'B decodes the screen and gets its sound' }).catch((e) => { throw new Error(`${e.message}: ${JSON.stringify(share)}`); });
  // The tile is ~615×300 CSS px here: the half layer (960×540) fits it.
  assert.ok(share.video.width >= 640, `B gets a layer that fits its tile (${share.video.width}×${share.video.height})`);
  // The sound plays from its own audio element, at the stream's volume (not the voice's).
  const el = await b.b.page.evaluate((uid) => {
    const e = document.querySelector(`#voice-audio audio[data-stream-of="${uid}"]`);
    return e && { volume: e.volume, muted: e.muted, paused: e.paused };
  }, a.id);
  assert.deepEqual(el, { volume: 1, muted: false, paused: false }, 'the stream sound element plays');
  // The server forwards the sound now.
  const f1 = await streamAudioForwarded();
  await sleep(1000);
  const f2 = await streamAudioForwarded();
  assert.ok(f2 - f1 >= 30, `stream sound forwarded to B (${f2 - f1} packets in 1 s)`);
  // A and the channel list see one viewer.
  const viewers = a.b.page.locator('[data-testid="video-tile"][data-local="true"][data-track="screen"] [data-testid="stream-viewers"]');
  await waitFor(async () => (await viewers.textContent()) === '1 watching', { message: 'A sees 1 watching' });
  await waitFor(async () => ((await c.b.page.locator(`[data-testid="voice-participant"][data-user-id="${a.id}"] [data-testid="live-badge"]`).getAttribute('title')) || '').includes('1 watching'),
    { message: "C's badge says 1 watching" });
  // C, not watching, still gets no video and no stream sound.
  const inC = await allInbound(c.b.page);
  assert.equal(inC.streamSlots, 0, 'C has no stream sound slot');
  assert.equal(inC.video, 0, 'C receives no video at all');
  // A never gets its own share back.
  assert.equal(await a.b.page.evaluate(() => Object.keys(window.confabVoice.streamSlots).length), 0, 'A does not hear its own stream');
  await snap(b.b.page, 'go-live-viewer');
});

test("the stream's sound has its own volume and mute at the viewer", async () => {
  assert.ok(live, 'needs A live');
  const [a, b] = peers;
  const tile = b.b.page.locator(`[data-testid="video-tile"][data-user-id="${a.id}"][data-track="screen"]`);
  await tile.getByTestId('stream-volume').fill('25');
  const el = () => b.b.page.evaluate((uid) => {
    const e = document.querySelector(`#voice-audio audio[data-stream-of="${uid}"]`);
    return e && { volume: e.volume, muted: e.muted };
  }, a.id);
  await waitFor(async () => (await el()).volume === 0.25, { message: 'stream volume 25 %' });
  // A's voice (if on a slot) keeps its own volume.
  const voiceVol = await b.b.page.evaluate((uid) => {
    const e = document.querySelector(`#voice-audio audio[data-user-id="${uid}"]`);
    return e ? e.volume : 1;
  }, a.id);
  assert.equal(voiceVol, 1, "A's voice volume is untouched");
  await tile.getByTestId('stream-mute').click();
  await waitFor(async () => (await el()).muted === true, { message: 'stream muted' });
  await tile.getByTestId('stream-mute').click();
  await waitFor(async () => (await el()).muted === false, { message: 'stream unmuted' });
  await tile.getByTestId('stream-volume').fill('100');
});

test('pop out full screen: the tile fills the screen and gets the full layer', async () => {
  assert.ok(live, 'needs A live');
  const [a, b] = peers;
  const tile = b.b.page.locator(`[data-testid="video-tile"][data-user-id="${a.id}"][data-track="screen"]`);
  await tile.getByTestId('stream-fullscreen').click();
  await waitFor(() => b.b.page.evaluate(() => document.fullscreenElement && document.fullscreenElement.dataset.track === 'screen'),
    { message: 'the screen tile is full screen' });
  await waitFor(async () => (await receivedShare(b.b.page, a.id)).video.width === 1920, { timeout: 30_000, message: 'B gets the full 1920×1080 layer' });
  await snap(b.b.page, 'go-live-fullscreen');
});

/** The highest frame rate the sender's video encodings are set to (A has only the share). */
const sentFps = (page) => page.evaluate(() => Math.max(0, ...window.confabVoice.pc.getSenders()
  .filter((s) => s.track && s.track.kind === 'video')
  .flatMap((s) => s.getParameters().encodings.map((e) => e.maxFramerate || 0))));

test('a preset switch changes the delivered resolution and frame rate', async () => {
  assert.ok(live, 'needs A live');
  const [a, b] = peers;
  const hi = await waitFor(async () => {
    const r = await deliveredFps(b.b.page, a.id, 2000);
    return r.width === 1920 ? r : null;
  }, { timeout: 40_000, interval: 100, message: 'B gets 1920 wide at 1080p60' });
  const hi2 = await deliveredFps(b.b.page, a.id, 4000);
  const hiSent = await sentFps(a.b.page);
  console.log(`# 1080p60 preset: delivered ${hi2.width}×${hi2.height} at ${hi2.fps.toFixed(1)} fps (first sample ${hi.fps.toFixed(1)})`);
  await a.b.page.locator('[data-testid="video-tile"][data-local="true"][data-track="screen"] [data-testid="screen-preset"]').selectOption('720p30');
  const lo = await waitFor(async () => {
    const r = await deliveredFps(b.b.page, a.id, 2000);
    return r.width > 0 && r.width <= 1280 ? r : null;
  }, { timeout: 40_000, interval: 100, message: 'B gets at most 1280 wide at 720p30' });
  const lo2 = await deliveredFps(b.b.page, a.id, 4000);
  console.log(`# 720p30 preset: delivered ${lo2.width}×${lo2.height} at ${lo2.fps.toFixed(1)} fps (first sample ${lo.fps.toFixed(1)})`);
  assert.ok(lo2.fps <= 33, `720p30 holds to ~30 fps (${lo2.fps.toFixed(1)})`);
  // The frame rate the preset asks of the encoder. What 1080p60 delivers beyond that depends on
  // the CPU (two browsers encoding and decoding 1080p on two cores reach 15-40 fps), so the
  // delivered rate is logged, not compared.
  assert.equal(hiSent, 60, 'the 1080p60 preset asks the encoder for 60 fps');
  assert.equal(await sentFps(a.b.page), 30, 'the 720p30 preset asks the encoder for 30 fps');
  assert.ok(hi2.fps > 0, 'frames arrive at 1080p60');
  await a.b.page.locator('[data-testid="video-tile"][data-local="true"][data-track="screen"] [data-testid="screen-preset"]').selectOption('1080p60');
  await b.b.page.evaluate(() => document.exitFullscreen());
});

test('B stops watching: the share and its sound stop, the count goes back to 0', async () => {
  assert.ok(live, 'needs A live');
  const [a, b] = peers;
  await b.b.page.locator(`[data-testid="video-tile"][data-user-id="${a.id}"][data-track="screen"] [data-testid="stream-stop-watching"]`).click();
  await b.b.page.locator(`[data-testid="stream-card"][data-user-id="${a.id}"]`).waitFor({ timeout: 10_000 });
  await waitFor(async () => (await b.b.page.evaluate(() => Object.keys(window.confabVoice.streamSlots).length)) === 0, { message: 'stream slot released' });
  await sleep(500);
  const f1 = await streamAudioForwarded();
  const v1 = await allInbound(b.b.page);
  await sleep(2000);
  assert.ok((await streamAudioForwarded()) - f1 <= 2, 'no stream sound forwarded after unwatching');
  assert.ok((await allInbound(b.b.page)).video - v1.video <= 2, 'no screen video after unwatching');
  await waitFor(async () => (await a.b.page.locator('[data-testid="video-tile"][data-local="true"][data-track="screen"] [data-testid="stream-viewers"]').textContent()) === '0 watching',
    { message: 'A sees 0 watching again' });
});

test('no uncaught page errors', () => {
  for (const p of peers) assert.deepEqual(p.b.errors, [], p.name);
});
