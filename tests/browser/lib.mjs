// Shared harness for the browser tests: the server under test, Chromium, and UI helpers.
//
// Server: CONFAB_URL if set; else the
// binary CONFAB_BIN (default <repo>/target/debug/confab) on a free port with a fresh data dir.

import { spawn, spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '../..');
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

function tmpDir(prefix) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  // The server's private PostgreSQL runs as an unprivileged user: it must be able to traverse.
  fs.chmodSync(d, 0o755);
  return d;
}

export async function startServer({ args = [], host = '127.0.0.1' } = {}) {
  if (process.env.CONFAB_URL) return { url: process.env.CONFAB_URL.replace(/\/$/, ''), stop: async () => {}, external: true };
  const bin = process.env.CONFAB_BIN || path.join(repoRoot, 'target/debug/confab');
  if (!fs.existsSync(bin)) {
    throw new Error(`confab binary not found at ${bin}: build it (cargo build -p confab-signaling), or set CONFAB_BIN / CONFAB_URL`);
  }
  const port = await freePort();
  const dataDir = tmpDir('confab-browser-data-');
  const logPath = path.join(dataDir, 'confab.log');
  const log = fs.openSync(logPath, 'a');
  const child = spawn(bin, ['--bind', `${host}:${port}`, '--udp-port', '0', '--data-dir', dataDir, '--rate-limit-scale', '100', ...args], {
    stdio: ['ignore', log, log],
    // Serve this checkout's web/ rather than the copy built into the binary.
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', CONFAB_WEB_DIR: process.env.CONFAB_WEB_DIR || path.join(repoRoot, 'web') },
  });
  let exited = null;
  child.on('exit', (code, sig) => { exited = { code, sig }; });
  const url = `http://${host}:${port}`;
  const deadline = Date.now() + 180_000;
  for (;;) {
    if (exited) throw new Error(`confab exited early (${JSON.stringify(exited)}); log:\n${fs.readFileSync(logPath, 'utf8').slice(-4000)}`);
    try {
      const r = await fetch(`${url}/readyz`);
      if (r.status === 200) break;
    } catch { /* not yet */ }
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`confab not ready after 180 s; log:\n${fs.readFileSync(logPath, 'utf8').slice(-4000)}`); }
    await sleep(250);
  }
  return {
    url,
    logPath,
    stop: async () => {
      if (exited) return;
      child.kill('SIGTERM');
      for (let i = 0; i < 100 && !exited; i++) await sleep(100);
      if (!exited) child.kill('SIGKILL');
      fs.rmSync(dataDir, { recursive: true, force: true, maxRetries: 3 });
    },
  };
}

/** A 48 kHz mono speech WAV made with espeak-ng + sox (cached per process). */
let speechWav = null;
export function makeSpeechWav() {
  if (speechWav && fs.existsSync(speechWav)) return speechWav;
  const dir = tmpDir('confab-audio-');
  const raw = path.join(dir, 'raw.wav');
  const out = path.join(dir, 'speech-48k.wav');
  const text = 'Hello from Confab. This is a voice test. One two three four five. ' +
    'The quick brown fox jumps over the lazy dog. Can you hear me now? Testing, testing.';
  execFileSync('espeak-ng', ['-s', '160', '-w', raw, text]);
  // 48 kHz mono 16-bit; short silences trimmed so speech dominates; loops in Chromium anyway.
  execFileSync('sox', [raw, '-r', '48000', '-c', '1', '-b', '16', out, 'gain', '-n', '-3']);
  speechWav = out;
  return out;
}

export const CHROMIUM_ARGS = [
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', '--headless', '--no-sandbox',
  '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required',
];

/** A fresh persistent Chromium context (own profile dir, hence own localStorage). `netns`
 * runs the browser inside that network namespace (`ip netns exec`, as root); `args` adds flags. */
export async function launchBrowser({ audioFile, netns, args: extra = [] } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'confab-chromium-'));
  const args = [...CHROMIUM_ARGS, ...extra];
  if (audioFile) args.push(`--use-file-for-fake-audio-capture=${audioFile}`);
  let executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  if (netns) {
    const wrapper = path.join(dir, 'chromium-in-netns');
    fs.writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${netns} ${executablePath} "$@"\n`, { mode: 0o755 });
    executablePath = wrapper;
  }
  const context = await chromium.launchPersistentContext(path.join(dir, 'profile'), {
    executablePath,
    headless: true,
    args,
    viewport: { width: 1280, height: 800 },
  });
  const page = context.pages()[0] || await context.newPage();
  const errors = [];
  // Console errors (and uncaught exceptions) seen in this page: tests of normal use assert none.
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(`console.error: ${m.text()} (${m.location().url || 'page'})`); });
  page.on('pageerror', (e) => consoleErrors.push(`uncaught: ${e}`));
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('dialog', async (d) => { errors.push(`unexpected ${d.type()}: ${d.message()}`); await d.dismiss(); });
  return {
    context, page, errors, consoleErrors,
    close: async () => { await context.close().catch(() => {}); fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 }); },
  };
}

export function uniqueName(prefix) {
  return `${prefix}${Date.now().toString(36).slice(-5)}${Math.floor(Math.random() * 1e4)}`;
}

/** Register through the UI; resolves when the app shell shows the user. */
export async function registerViaUi(page, baseUrl, username, password = 'correct horse battery') {
  await page.goto(baseUrl);
  await page.getByRole('button', { name: 'Register' }).click();
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Register', exact: true }).click();
  await page.getByTestId('me-name').filter({ hasText: username }).waitFor({ timeout: 20_000 });
  await page.waitForFunction(() => window.confab && window.confab.gateway.status === 'ready', null, { timeout: 20_000 });
}

export async function createServerViaUi(page, name) {
  await page.getByRole('button', { name: 'Create server', exact: true }).click();
  const dlg = page.getByTestId('create-server-dialog');
  await dlg.getByLabel('Server name').fill(name);
  await dlg.getByRole('button', { name: 'Create', exact: true }).click();
  await page.getByTestId('server-name').filter({ hasText: name }).waitFor({ timeout: 15_000 });
  await page.locator('[data-testid="channel-link"][data-channel-name="general"][data-channel-type="text"]').waitFor();
}

export async function createInviteViaUi(page) {
  await page.getByRole('button', { name: 'Invite people' }).click();
  const dlg = page.getByTestId('invite-dialog');
  await dlg.getByRole('button', { name: 'Create invite' }).click();
  const link = dlg.getByTestId('invite-link');
  await page.waitForFunction(() => {
    const el = document.querySelector('[data-testid="invite-dialog"] [data-testid="invite-link"]');
    return el && el.value.includes('/invite/');
  }, null, { timeout: 10_000 });
  const value = await link.inputValue();
  await dlg.getByRole('button', { name: 'Done' }).click();
  return value;
}

export async function joinViaUi(page, linkOrCode, serverName) {
  await page.getByRole('button', { name: 'Join a server' }).click();
  const dlg = page.getByTestId('join-server-dialog');
  await dlg.getByLabel('Invite link or code').fill(linkOrCode);
  await dlg.getByRole('button', { name: 'Join server' }).click();
  await page.getByTestId('server-name').filter({ hasText: serverName }).waitFor({ timeout: 15_000 });
}

export async function tokenOf(page) {
  return page.evaluate(() => localStorage.getItem('confab.token'));
}

/** REST call from Node with a bearer token, honouring 429 Retry-After. */
/** Opens the current server's settings dialog, on `tab` when given. */
export async function openServerSettings(page, tab) {
  await page.getByRole('button', { name: 'Server settings' }).click();
  const dlg = page.getByTestId('server-settings-dialog');
  await dlg.waitFor();
  if (tab) await dlg.getByRole('tab', { name: tab, exact: true }).click();
  return dlg;
}

export async function rest(baseUrl, token, method, p, body) {
  for (let attempt = 0; attempt < 20; attempt++) {
    const res = await fetch(`${baseUrl}/api/v1${p}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    if (res.status === 429) { await sleep(1000 * Number(res.headers.get('retry-after') || 1)); continue; }
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${p} → ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }
  throw new Error(`${method} ${p}: still rate limited`);
}

export async function waitFor(fn, { timeout = 15_000, interval = 250, message = 'condition' } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    if (Date.now() > end) throw new Error(`timed out waiting for ${message}${last instanceof Error ? `: ${last.message}` : ''}`);
    await sleep(interval);
  }
}

/// Saves a screenshot of a main screen under tests/browser/screenshots/ (ignored by git); with
/// UPDATE_SCREENSHOTS=1 also under docs/screenshots/, the copies committed for reviewers.
export async function snap(page, name) {
  const local = path.join(repoRoot, 'tests/browser/screenshots');
  fs.mkdirSync(local, { recursive: true });
  await page.screenshot({ path: path.join(local, `${name}.png`) });
  if (process.env.UPDATE_SCREENSHOTS === '1') {
    const docs = path.join(repoRoot, 'docs/screenshots');
    fs.mkdirSync(docs, { recursive: true });
    fs.copyFileSync(path.join(local, `${name}.png`), path.join(docs, `${name}.png`));
  }
}

/// Runs axe-core (the npm package, injected into the page) over the page or a part of it; returns
/// the violations of impact "serious" or "critical", each as "rule: target …".
export async function axeViolations(page, { include = null } = {}) {
  const src = fs.readFileSync(path.join(here, 'node_modules/axe-core/axe.min.js'), 'utf8');
  // evaluate() is not subject to the page's Content-Security-Policy, unlike a <script> tag.
  await page.evaluate(src);
  const results = await page.evaluate(async (inc) => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(inc ? { include: [inc] } : document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, targets: v.nodes.slice(0, 5).map((n) => n.target.join(' ')) }));
  }, include);
  return results.filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}: ${v.help}): ${v.targets.join(' | ')}`);
}

/// A Confab cluster on loopback from scripts/cluster.sh (a private nats-server and PostgreSQL,
/// api and media nodes, nginx in front of the api nodes) in its own state dir. Returns
/// { url (nginx), dir, env (cluster.env), apiNodes, mediaNodes, nodeUrl(name), metrics(name),
/// kill(name) (kill -9), stop() }. `apiArgs` go to every api node.
export async function startCluster({ api = 3, media = 2, mediaCapacity = 0, apiArgs = [] } = {}) {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const run = promisify(execFile);
  const script = path.join(repoRoot, 'scripts/cluster.sh');
  const dir = tmpDir('confab-cluster-');
  const env = {
    ...process.env,
    CONFAB_CLUSTER_DIR: dir,
    CONFAB_BIN: process.env.CONFAB_BIN || path.join(repoRoot, 'target/debug/confab'),
  };
  const sh = async (...args) => {
    try {
      return (await run(script, args.map(String), { env, maxBuffer: 1 << 20 })).stdout.trim();
    } catch (e) {
      const logs = fs.existsSync(path.join(dir, 'logs')) ? fs.readdirSync(path.join(dir, 'logs')) : [];
      const tails = logs.map((f) => `--- ${f}\n${fs.readFileSync(path.join(dir, 'logs', f), 'utf8').slice(-1500)}`).join('\n');
      throw new Error(`scripts/cluster.sh ${args.join(' ')} failed: ${e.stderr || e.message}\n${tails}`);
    }
  };
  await sh('start', '--api', api, '--media', media, '--media-capacity', mediaCapacity, '--', ...apiArgs);
  const vars = {};
  for (const line of fs.readFileSync(path.join(dir, 'cluster.env'), 'utf8').split('\n')) {
    const m = line.match(/^([A-Z0-9_]+)=(.*)$/);
    if (m) vars[m[1]] = m[2].replace(/^"(.*)"$/, '$1');
  }
  const nodeUrl = (name) => {
    const m = name.match(/^(api|media)-(\d+)$/);
    if (!m) throw new Error(`not a node: ${name}`);
    return vars[`${m[1].toUpperCase()}_${m[2]}_URL`];
  };
  return {
    url: vars.URL,
    dir,
    env: vars,
    apiNodes: vars.API_NODES.split(' '),
    mediaNodes: vars.MEDIA_NODES.split(' '),
    nodeUrl,
    metrics: async (name) => (await fetch(`${nodeUrl(name)}/metrics`)).text(),
    kill: (name) => sh('kill', name),
    stop: async () => {
      await sh('stop').catch((e) => console.error(e.message));
      if (!process.env.KEEP_CLUSTER_LOGS) fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
      else console.error(`cluster logs kept in ${dir}/logs`);
    },
  };
}

/// The sum of a Prometheus metric's samples (any labels) in /metrics text; null when absent.
export function metricValue(text, name) {
  let sum = null;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    const v = Number(rest.slice(rest.lastIndexOf(' ') + 1));
    if (Number.isFinite(v)) sum = (sum ?? 0) + v;
  }
  return sum;
}

/** The voice pc's selected ICE pair: its local candidate's protocol, type and address, and the
 * remote address (null before one is selected). */
export function selectedIcePair(page) {
  return page.evaluate(async () => {
    const pc = window.confabVoice && window.confabVoice.pc;
    if (!pc) return null;
    const stats = await pc.getStats();
    let pairId = null;
    stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId; });
    const pair = pairId && stats.get(pairId);
    const local = pair && stats.get(pair.localCandidateId);
    const remote = pair && stats.get(pair.remoteCandidateId);
    return local ? { protocol: local.protocol, type: local.candidateType, address: local.address, remote: remote && `${remote.address}:${remote.port}/${remote.protocol}` } : null;
  });
}

/** Inbound audio from `userId` (on the mid the client maps to that user): packets, lost, energy. */
export function inboundAudioFrom(page, userId) {
  return page.evaluate(async (uid) => {
    const v = window.confabVoice;
    if (!v || !v.pc) return null;
    let out = null;
    (await v.pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio' && v.slots[s.mid] === uid) {
        out = { packets: s.packetsReceived || 0, lost: s.packetsLost || 0, energy: s.totalAudioEnergy || 0 };
      }
    });
    return out;
  }, userId);
}

/** What a page's voice connection looks like, for failure messages: its state, the slot map,
 * each transceiver (mid, direction) and the audio packets received per mid. */
export function voiceDebug(page) {
  return page.evaluate(async () => {
    const v = window.confabVoice;
    if (!v || !v.pc) return { state: v?.state ?? null };
    const got = {};
    (await v.pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') got[s.mid] = s.packetsReceived || 0;
    });
    return {
      state: v.state, ice: v.pc.iceConnectionState, signaling: v.pc.signalingState, slots: v.slots,
      transceivers: v.pc.getTransceivers().map((t) => `${t.mid}:${t.receiver.track.kind}:${t.currentDirection}`),
      packets: got,
    };
  }).catch((e) => ({ error: e.message }));
}

/** Two peers ({ b, id, name, joinMs }) in one voice channel hear each other: packets and energy
 * rising, loss < 1 % over 3 s. Returns per-peer { got, loss }. */
export async function assertHearEachOther(peers) {
  const first = {};
  for (const p of peers) {
    const other = peers.find((o) => o !== p);
    try {
      await waitFor(async () => {
        const s = await inboundAudioFrom(p.b.page, other.id);
        return s && s.packets > 50 && s.energy > 0;
      }, { timeout: 20_000, message: `${p.name} hears ${other.name}` });
    } catch (e) {
      // What each side's peer connection looked like, so a failure says where audio stopped.
      const seen = {};
      for (const q of peers) seen[q.name] = await voiceDebug(q.b.page);
      seen.heard = await inboundAudioFrom(p.b.page, other.id).catch((x) => x.message);
      throw new Error(`${e.message}; ${JSON.stringify(seen)}`);
    }
    first[p.name] = await inboundAudioFrom(p.b.page, other.id);
  }
  await sleep(3000);
  const out = {};
  for (const p of peers) {
    const other = peers.find((o) => o !== p);
    const now = await inboundAudioFrom(p.b.page, other.id);
    const got = now.packets - first[p.name].packets;
    const lost = Math.max(0, now.lost - first[p.name].lost);
    if (!(got > 100)) throw new Error(`${p.name}: ${got} packets from ${other.name} in 3 s`);
    if (!(now.energy > first[p.name].energy)) throw new Error(`${p.name}: audio energy not rising`);
    const loss = (100 * lost) / Math.max(1, got + lost);
    if (!(loss < 1)) throw new Error(`${p.name}: ${loss.toFixed(2)}% loss`);
    out[p.name] = { got, loss };
  }
  return out;
}

/** Registers each peer, puts them in one new server (the first creates it, the others join by
 * invite) and joins its General voice channel through the UI; sets `id` and `joinMs` on each. */
export async function twoInVoice(peers, baseUrl, prefix) {
  for (const p of peers) {
    await registerViaUi(p.b.page, baseUrl, p.name);
    p.id = await p.b.page.evaluate(() => window.confab.store.me.id);
  }
  const serverName = uniqueName(prefix);
  await createServerViaUi(peers[0].b.page, serverName);
  const link = await createInviteViaUi(peers[0].b.page);
  for (const p of peers.slice(1)) await joinViaUi(p.b.page, link, serverName);
  for (const p of peers) {
    const clicked = Date.now();
    await p.b.page.locator('[data-testid="channel-link"][data-channel-type="voice"][data-channel-name="General"]').click();
    await p.b.page.waitForFunction(() => window.confabVoice && ['connected', 'error'].includes(window.confabVoice.state), null, { timeout: 30_000 })
      .catch(() => {});
    const st = await p.b.page.evaluate(() => ({ state: window.confabVoice.state, error: window.confabVoice.error }));
    if (st.state !== 'connected') throw new Error(`${p.name} did not connect: ${JSON.stringify(st)}`);
    p.joinMs = Date.now() - clicked;
  }
}

/** Runs `ip netns exec`-style commands; throws with stderr on failure. */
export function sh(cmd, args, input) {
  return execFileSync(cmd, args, { input, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
}

/** Whether this process may make network namespaces (root, iproute2, nftables). */
export const canMakeNetns = process.getuid && process.getuid() === 0
  && spawnSync('sh', ['-c', 'command -v ip && command -v nft']).status === 0;
