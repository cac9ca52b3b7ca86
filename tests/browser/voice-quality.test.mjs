// Noise suppression and the voice-activity gate, end to end: A's fake microphone plays speech
// with keyboard clicks and a noise floor (in the pauses and under the speech); B records what it
// receives from A (a ScriptProcessor tap on A's slot, 1024-sample frames) while A switches
// settings mid-call. Checks, after aligning B's recording with the clean speech:
// - Standard (RNNoise) lowers the noise in the pauses by ≥ 6 dB against Off, keeps the speech's
//   energy within a few dB and its envelope correlated with the clean speech;
// - a manual threshold above the noise silences the pauses at B, and the SFU's speaking events
//   (A's ring at B) come only with the speech; a threshold above the speech keeps A silent, and
//   with Opus DTX almost no packets reach B while A is silent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, launchBrowser, makeSpeechWav, twoInVoice, waitFor, sleep } from './lib.mjs';

const RATE = 48000;
const FRAME = 1024;            // samples per envelope frame (B's tap works in these)
const PAUSE_S = 2;
const SPEECH_S = 4;

let server;
let A;
let B;
const peers = [];
let clean;                     // { speech: Float32Array (one period), env: Float64Array }

function readWav16(file) {
  const buf = fs.readFileSync(file);
  let off = 12;
  while (off < buf.length) {
    const id = buf.toString('ascii', off, off + 4);
    const size = buf.readUInt32LE(off + 4);
    if (id === 'data') {
      const n = size / 2;
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = buf.readInt16LE(off + 8 + 2 * i) / 32768;
      return out;
    }
    off += 8 + size + (size & 1);
  }
  throw new Error(`no data chunk in ${file}`);
}

function writeWav16(file, samples) {
  const buf = Buffer.alloc(44 + samples.length * 2);
  buf.write('RIFF', 0); buf.writeUInt32LE(36 + samples.length * 2, 4); buf.write('WAVE', 8);
  buf.write('fmt ', 12); buf.writeUInt32LE(16, 16); buf.writeUInt16LE(1, 20); buf.writeUInt16LE(1, 22);
  buf.writeUInt32LE(RATE, 24); buf.writeUInt32LE(RATE * 2, 28); buf.writeUInt16LE(2, 32); buf.writeUInt16LE(16, 34);
  buf.write('data', 36); buf.writeUInt32LE(samples.length * 2, 40);
  for (let i = 0; i < samples.length; i++) buf.writeInt16LE(Math.max(-32768, Math.min(32767, Math.round(samples[i] * 32767))), 44 + 2 * i);
  fs.writeFileSync(file, buf);
}

/** One period: PAUSE_S of noise, then SPEECH_S of speech over the same noise. Noise: a broadband
 * floor (~-49 dBFS, a fan's hiss) and keyboard clicks (12 ms decaying bursts, ~7 a second, peaks
 * ~-30 dBFS), from a fixed-seed PRNG. RNNoise removes the floor almost entirely (~29 dB) but lets
 * much of a click through: clicks as loud as the floor would leave it ~5 dB, not 6 — the gate's
 * 10 ms attack is what keeps clicks out (see the threshold test). */
function makeNoisySpeech() {
  const speechAll = readWav16(makeSpeechWav());
  const n = (PAUSE_S + SPEECH_S) * RATE;
  const speech = new Float32Array(n);
  speech.set(speechAll.subarray(0, SPEECH_S * RATE), PAUSE_S * RATE);
  let seed = 12345;
  const rnd = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 2 ** 32 * 2 - 1; };
  const noisy = new Float32Array(n);
  let nextClick = 0;
  let click = 0;       // samples left in the current click
  let clickAmp = 0;
  for (let i = 0; i < n; i++) {
    if (i >= nextClick) { click = 0.012 * RATE; clickAmp = 0.02 + 0.02 * Math.abs(rnd()); nextClick = i + Math.floor((0.1 + 0.1 * Math.abs(rnd())) * RATE); }
    let x = speech[i] + 0.006 * rnd();
    if (click > 0) { x += clickAmp * rnd() * Math.exp(-(0.012 * RATE - click) / (0.002 * RATE)); click -= 1; }
    noisy[i] = x;
  }
  return { speech, noisy };
}

function envelope(samples) {
  const frames = Math.floor(samples.length / FRAME);
  const env = new Float64Array(frames);
  for (let f = 0; f < frames; f++) {
    let s = 0;
    for (let i = f * FRAME; i < (f + 1) * FRAME; i++) s += samples[i] * samples[i];
    env[f] = Math.sqrt(s / FRAME);
  }
  return env;
}

const db = (x) => 20 * Math.log10(Math.max(x, 1e-7));
function pearson(a, b) {
  const n = a.length;
  let ma = 0; let mb = 0;
  for (let i = 0; i < n; i++) { ma += a[i]; mb += b[i]; }
  ma /= n; mb /= n;
  let sab = 0; let saa = 0; let sbb = 0;
  for (let i = 0; i < n; i++) { const x = a[i] - ma; const y = b[i] - mb; sab += x * y; saa += x * x; sbb += y * y; }
  return sab / Math.sqrt(saa * sbb || 1);
}

/** B's recording of A, folded onto the period at the lag that best matches the clean speech:
 * the energy (RMS, dBFS) in the pauses' middles and in the speech, the envelope's correlation,
 * and at each frame whether B showed A speaking. */
function analyse(rec) {
  const period = clean.env.length;  // frames; the file is a whole number of them? close enough
  const env = Float64Array.from(rec.map((r) => r.rms));
  // Aligned on the first and on the last whole period recorded, the better kept: a tap callback
  // lost on a busy machine shifts what follows it by a frame.
  let best = { corr: -2, lag: 0 };
  for (const start of [0, Math.max(0, env.length - period)]) {
    for (let lag = 0; lag < period; lag++) {
      const a = new Float64Array(period);
      const b = new Float64Array(period);
      for (let i = 0; i < period; i++) { a[i] = clean.env[(start + i + lag) % period]; b[i] = env[start + i]; }
      const c = pearson(a, b);
      if (c > best.corr) best = { corr: c, lag };
    }
  }
  const pauseFrames = (PAUSE_S * RATE) / FRAME;
  const loud = Math.max(...clean.env);
  let pause = 0; let pauseN = 0; let speech = 0; let speechN = 0;
  let ringPause = 0; let ringSpeech = 0;
  for (let i = 0; i < env.length; i++) {
    const k = (i + best.lag) % period;
    const inPauseMiddle = k > pauseFrames * 0.35 && k < pauseFrames * 0.85;
    if (inPauseMiddle) { pause += env[i] ** 2; pauseN += 1; if (rec[i].speaking) ringPause += 1; }
    if (k >= pauseFrames && clean.env[k] > loud * 0.1) { speech += env[i] ** 2; speechN += 1; if (rec[i].speaking) ringSpeech += 1; }
  }
  return {
    corr: best.corr,
    pauseDb: db(Math.sqrt(pause / Math.max(1, pauseN))),
    speechDb: db(Math.sqrt(speech / Math.max(1, speechN))),
    ringInPauses: ringPause / Math.max(1, pauseN),
    ringInSpeech: ringSpeech / Math.max(1, speechN),
  };
}

/** Records at B what arrives from A for `seconds`: per frame, its RMS and whether B shows A
 * speaking (the server's VOICE_SPEAKING). */
async function recordAtB(seconds) {
  return B.b.page.evaluate(async ({ uid, seconds: s, frame }) => {
    const v = window.confabVoice;
    const mid = Object.keys(v.slots).find((m) => v.slots[m] === uid);
    const tx = v.pc.getTransceivers().find((t) => t.mid === mid);
    const ctx = new AudioContext({ sampleRate: 48000 });
    await ctx.resume();
    const src = ctx.createMediaStreamSource(new MediaStream([tx.receiver.track]));
    const tap = ctx.createScriptProcessor(frame, 1, 1);
    const out = [];
    tap.onaudioprocess = (e) => {
      const x = e.inputBuffer.getChannelData(0);
      let sum = 0;
      for (let i = 0; i < x.length; i++) sum += x[i] * x[i];
      out.push({ rms: Math.sqrt(sum / x.length), speaking: !!v.speaking[uid] });
    };
    src.connect(tap);
    tap.connect(ctx.destination);
    await new Promise((r) => setTimeout(r, s * 1000));
    src.disconnect(); tap.disconnect();
    await ctx.close();
    return out;
  }, { uid: A.id, seconds, frame: FRAME });
}

const setA = (fn, arg) => A.b.page.evaluate(fn, arg);

/** Packets per second B receives on A's audio slot over `seconds` (its inbound-rtp stats). */
async function packetRateAtB(seconds) {
  return B.b.page.evaluate(async ({ uid, seconds: s }) => {
    const v = window.confabVoice;
    const mid = Object.keys(v.slots).find((m) => v.slots[m] === uid);
    const rx = v.pc.getTransceivers().find((t) => t.mid === mid).receiver;
    const count = async () => {
      let n = 0;
      (await rx.getStats()).forEach((r) => { if (r.type === 'inbound-rtp') n += r.packetsReceived; });
      return n;
    };
    const first = await count();
    await new Promise((r) => setTimeout(r, s * 1000));
    return ((await count()) - first) / s;
  }, { uid: A.id, seconds });
}

before(async () => {
  server = await startServer({ args: ['--opus-dtx', 'true'] });
  const { speech, noisy } = makeNoisySpeech();
  clean = { speech, env: envelope(speech) };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'confab-noisy-'));
  const wav = path.join(dir, 'noisy-speech.wav');
  writeWav16(wav, noisy);
  A = { name: 'ada', b: await launchBrowser({ audioFile: wav }) };
  B = { name: 'bob', b: await launchBrowser() };
  peers.push(A, B);
  await twoInVoice(peers, server.url, 'Quality ');
  await B.b.page.evaluate(() => window.confabVoice.setMute(true));  // A hears no echo of B
  await waitFor(() => B.b.page.evaluate((uid) => Object.values(window.confabVoice.slots).includes(uid), A.id), { message: 'B has a slot for A' });
});

after(async () => {
  for (const p of peers) await p.b.close();
  await server?.stop();
});

const results = {};

test('Standard (RNNoise) runs in A\'s microphone graph and processes frames', async () => {
  await setA(() => window.confabVoice.setNoiseSuppression('standard'));
  const st = await setA(() => ({ active: window.confabVoice.suppressionActive, rnnoise: !!window.confabVoice.micGraph?.rnnoise }));
  assert.deepEqual(st, { active: 'standard', rnnoise: true });
  const f1 = await setA(() => window.confabVoice.micGraph.meter?.frames || 0);
  await sleep(500);
  const f2 = await setA(() => window.confabVoice.micGraph.meter.frames);
  assert.ok(f2 - f1 > 100, `the gate worklet processes frames (${f1} → ${f2})`);
});

test('Standard lowers the noise in the pauses by ≥ 6 dB and keeps the speech', async () => {
  // The gate wide open: this compares suppression alone. Both runs with the same negotiation.
  const negotiations = await setA(() => window.confabVoice.negotiations);
  await sleep(8000);  // the automatic gain settles in the first seconds of a call
  await setA(() => window.confabVoice.setSensitivity({ auto: false, thresholdDb: -100 }));
  // Standard, Off, Standard again: the microphone's automatic gain drifts slowly over a call, so
  // Off is compared with the mean of the Standard runs around it.
  const runs = [];
  for (const mode of ['standard', 'off', 'standard']) {
    await setA((m) => window.confabVoice.setNoiseSuppression(m), mode);
    await sleep(1500);
    runs.push(analyse(await recordAtB(PAUSE_S + SPEECH_S + 7)));
  }
  const mean = (k) => (runs[0][k] + runs[2][k]) / 2;
  results.off = runs[1];
  results.standard = { corr: Math.min(runs[0].corr, runs[2].corr), pauseDb: mean('pauseDb'), speechDb: mean('speechDb') };
  console.log('received from A:', JSON.stringify(runs));
  assert.equal(await setA(() => window.confabVoice.negotiations), negotiations, 'switching suppression does not renegotiate');
  const { off, standard } = results;
  assert.ok(off.pauseDb - standard.pauseDb >= 6, `noise in the pauses: Off ${off.pauseDb.toFixed(1)} dBFS, Standard ${standard.pauseDb.toFixed(1)} dBFS`);
  assert.ok(Math.abs(off.speechDb - standard.speechDb) <= 4, `speech energy: Off ${off.speechDb.toFixed(1)}, Standard ${standard.speechDb.toFixed(1)} dBFS`);
  assert.ok(standard.corr >= 0.7, `envelope correlation with the clean speech under Standard: ${standard.corr.toFixed(2)}`);
});

test('a threshold above the noise silences the pauses; the speaking ring follows the speech', async () => {
  await setA(() => window.confabVoice.setNoiseSuppression('off'));
  await setA(() => window.confabVoice.setSensitivity({ auto: false, thresholdDb: -35 }));
  await sleep(1500);
  const r = analyse(await recordAtB(2 * (PAUSE_S + SPEECH_S) + 1));
  console.log('gate at -35 dBFS:', JSON.stringify(r));
  assert.ok(r.pauseDb < -70, `pauses silent at B (${r.pauseDb.toFixed(1)} dBFS)`);
  assert.ok(r.speechDb > -30, `speech still heard (${r.speechDb.toFixed(1)} dBFS)`);
  assert.ok(r.ringInPauses < 0.05, `no speaking ring in the pauses (${(100 * r.ringInPauses).toFixed(0)}% of frames)`);
  assert.ok(r.ringInSpeech > 0.5, `speaking ring during the speech (${(100 * r.ringInSpeech).toFixed(0)}% of frames)`);
});

test('a threshold above the speech keeps A silent: no sound, no speaking ring at B', async () => {
  // The gate wide open for a whole period of the recording (speech and pause).
  await setA(() => window.confabVoice.setSensitivity({ auto: false, thresholdDb: -100 }));
  await sleep(500);
  const open = await packetRateAtB(PAUSE_S + SPEECH_S);
  await setA(() => window.confabVoice.setSensitivity({ auto: false, thresholdDb: 0 }));
  await sleep(1000);
  const r = analyse(await recordAtB(PAUSE_S + SPEECH_S + 1));
  assert.ok(r.speechDb < -70 && r.pauseDb < -70, `A silent at B (speech ${r.speechDb.toFixed(1)}, pauses ${r.pauseDb.toFixed(1)} dBFS)`);
  assert.equal(r.ringInSpeech + r.ringInPauses, 0, 'no speaking ring');
  // Opus DTX (usedtx=1 in the server's answer): in that silence A's browser sends only
  // comfort-noise updates, and that is all that reaches B.
  const closed = await packetRateAtB(4);
  console.log(`packets/s at B from A: gate open ${open.toFixed(1)}, closed ${closed.toFixed(1)}`);
  assert.ok(open >= 30, `A's audio flows while the gate is open (${open.toFixed(1)} packets/s)`);
  // Without DTX a silent encoder still sends 50 packets/s; with it Chromium sends ~5/s.
  assert.ok(closed <= 10, `DTX: almost nothing flows while A is silent (${closed.toFixed(1)} packets/s)`);
  // Back to the defaults: the speech is heard again.
  await setA(() => { window.confabVoice.setSensitivity({ auto: true }); return window.confabVoice.setNoiseSuppression('standard'); });
  await waitFor(() => B.b.page.evaluate((uid) => !!window.confabVoice.speaking[uid], A.id), { timeout: 15_000, message: 'A speaking again at B' });
});

test('voice settings: suppression select, mode radios, sensitivity with a live meter', async () => {
  const page = A.b.page;
  await page.getByTestId('voice-settings').click();
  const box = page.getByTestId('voice-settings-box');
  await box.waitFor();
  assert.equal(await box.getByTestId('noise-suppression').inputValue(), 'standard');
  assert.equal(await box.getByTestId('voice-mode-vad').isChecked(), true);
  assert.equal(await box.getByTestId('vad-auto').isChecked(), true);
  // The meter follows the speech: its level changes and the gate opens at times.
  const meter = box.getByTestId('mic-meter');
  const seen = new Set();
  let opened = false;
  for (let i = 0; i < 30; i++) {
    seen.add(await meter.getAttribute('aria-valuenow'));
    opened ||= (await meter.getAttribute('data-open')) === 'true';
    await sleep(100);
  }
  assert.ok(seen.size > 5 && opened, `live meter (${seen.size} levels seen, opened: ${opened})`);
  await box.getByTestId('noise-suppression').selectOption('off');
  await waitFor(() => setA(() => window.confabVoice.suppressionActive === 'off'), { message: 'suppression off' });
  await box.getByTestId('vad-auto').uncheck();
  await box.getByTestId('vad-threshold').fill('-40');
  assert.deepEqual(await setA(() => [window.confabVoice.vadAuto, window.confabVoice.vadThresholdDb]), [false, -40]);
  await box.getByTestId('voice-mode-ptt').check();
  assert.equal(await setA(() => window.confabVoice.pushToTalk), true);
  assert.equal(await box.getByTestId('vad-box').isHidden(), true, 'no sensitivity in push to talk');
  // Kept across a reload, like the other voice preferences.
  const saved = await setA(() => JSON.parse(localStorage.getItem('confab.voice.prefs')));
  assert.equal(saved.noiseSuppression, 'off');
  assert.equal(saved.pushToTalk, true);
  assert.equal(saved.vadThresholdDb, -40);
  await box.getByTestId('voice-mode-vad').check();
  await box.getByTestId('noise-suppression').selectOption('standard');
});

test('without WebAssembly for RNNoise, Standard falls back to the browser\'s suppression and says so', async () => {
  const C = { name: 'cy', b: await launchBrowser({ audioFile: makeSpeechWav() }) };
  peers.push(C);
  const warnings = [];
  C.b.page.on('console', (m) => { if (m.type() === 'warning') warnings.push(m.text()); });
  await C.b.page.route('**/*.wasm', (r) => r.abort());
  await twoInVoice([C], server.url, 'Fallback ');
  const st = await C.b.page.evaluate(() => {
    const v = window.confabVoice;
    return { chosen: v.noiseSuppression, active: v.suppressionActive, browserNs: v.micTrack.getSettings().noiseSuppression, sent: v._micTx.sender.track === v.sendTrack };
  });
  assert.deepEqual(st, { chosen: 'standard', active: 'browser', browserNs: true, sent: true });
  assert.ok(warnings.some((w) => /RNNoise/.test(w)), `a console warning (${warnings.join(' | ')})`);
  await C.b.page.getByTestId('voice-settings').click();
  await C.b.page.getByTestId('noise-fallback').waitFor();
});

test('no uncaught page errors', () => {
  for (const p of peers) assert.deepEqual(p.b.errors, [], p.name);
});
