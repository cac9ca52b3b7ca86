// A benchmark, not in `npm test`: the CPU one user's browser spends on its microphone with noise
// suppression Off, Browser and Standard (RNNoise), for docs/benchmarks.md § Noise suppression.
// One user in voice, speech as the fake microphone; per setting, the CPU time of all of
// Chromium's processes (CDP SystemInfo.getProcessInfo) over WINDOW_S seconds, ROUNDS times in
// turn; prints the median per setting and the load average. It asserts only that the RNNoise
// worklet runs and processes frames: the figures are measurements.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { startServer, launchBrowser, makeSpeechWav, twoInVoice, sleep } from './lib.mjs';

const WINDOW_S = Number(process.env.WINDOW_S || 20);
const ROUNDS = Number(process.env.ROUNDS || 3);

let server;
let A;

before(async () => {
  server = await startServer();
  A = { name: 'cpu', b: await launchBrowser({ audioFile: makeSpeechWav() }) };
  await twoInVoice([A], server.url, 'Cpu ');
});

after(async () => {
  await A?.b.close();
  await server?.stop();
});

/** CPU seconds of every process of this Chromium so far. */
async function browserCpu(cdp) {
  const { processInfo } = await cdp.send('SystemInfo.getProcessInfo');
  return processInfo.reduce((s, p) => s + p.cpuTime, 0);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

test('CPU per user: noise suppression Off, Browser, Standard', async () => {
  const browser = A.b.context.browser();
  assert.ok(browser, 'a Browser object for the persistent context');
  const cdp = await browser.newBrowserCDPSession();
  const page = A.b.page;
  const modes = ['off', 'browser', 'standard'];
  const samples = Object.fromEntries(modes.map((m) => [m, []]));
  const loads = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of modes) {
      await page.evaluate((m) => window.confabVoice.setNoiseSuppression(m), mode);
      const active = await page.evaluate(() => window.confabVoice.suppressionActive);
      assert.equal(active, mode, `${mode} is what runs`);
      await sleep(2000);
      const c0 = await browserCpu(cdp);
      const f0 = await page.evaluate(() => window.confabVoice.micGraph.meter.frames);
      await sleep(WINDOW_S * 1000);
      const c1 = await browserCpu(cdp);
      const f1 = await page.evaluate(() => window.confabVoice.micGraph.meter.frames);
      assert.ok(f1 - f0 > WINDOW_S * 300, `${mode}: the audio graph processes frames (${f1 - f0} in ${WINDOW_S} s)`);
      samples[mode].push((100 * (c1 - c0)) / WINDOW_S);
      loads.push(os.loadavg()[0]);
    }
  }
  const out = Object.fromEntries(modes.map((m) => [m, { median_percent_of_a_core: Number(median(samples[m]).toFixed(2)), runs: samples[m].map((x) => Number(x.toFixed(2))) }]));
  console.log(JSON.stringify({ window_s: WINDOW_S, rounds: ROUNDS, cpu: out, load1: loads.map((x) => Number(x.toFixed(2))), cores: os.cpus().length, model: os.cpus()[0].model }, null, 1));
});
