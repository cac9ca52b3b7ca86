// Voice through a TURN relay: a real coturn (Debian's turnserver, use-auth-secret) on loopback,
// Confab handing out credentials for it (--turn-url/--turn-secret), one browser forced to relay
// everything (iceTransportPolicy "relay", the client's forceRelay setting) and one going direct.
// Both hear each other; the relayed browser's selected ICE pair is a relay candidate, and coturn
// logged an allocation for its user with Confab's credentials.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  startServer, launchBrowser, makeSpeechWav, uniqueName, waitFor, sleep, selectedIcePair,
  assertHearEachOther, twoInVoice } from './lib.mjs';

const SECRET = `turn-test-${process.pid}-${Date.now()}`;
let turn;        // { port, logPath, child }
let server;
const peers = [];  // { name, b, id, relay }

function freeUdpPorts(n) {
  // coturn needs a listening port and a relay range; take them from above the ephemeral range
  // Linux hands out (32768–60999) so nothing else grabs them meanwhile.
  const base = 61000 + (process.pid % 400) * 10;
  return Array.from({ length: n }, (_, i) => base + i);
}

async function startCoturn() {
  const bin = spawnSync('sh', ['-c', 'command -v turnserver']).stdout.toString().trim();
  assert.ok(bin, 'turnserver (Debian package coturn) is needed: scripts/install-deps.sh --test');
  const [port, minPort, maxPort] = freeUdpPorts(3).map((p, i) => (i === 2 ? p + 6 : p));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'confab-coturn-'));
  const logPath = path.join(dir, 'turnserver.log');
  const child = spawn(bin, [
    '-n', '--listening-ip=127.0.0.1', `--listening-port=${port}`, '--relay-ip=127.0.0.1',
    `--min-port=${minPort + 1}`, `--max-port=${maxPort}`, '--use-auth-secret', `--static-auth-secret=${SECRET}`,
    '--realm=confab.test', '--no-tls', '--no-dtls', '--no-cli', '--fingerprint',
    // The SFU is on loopback here; a real deployment denies loopback and private peers.
    '--allow-loopback-peers', `--log-file=${logPath}`, '--simple-log', '--verbose',
  ], { stdio: 'ignore' });
  let exited = null;
  child.on('exit', (code, sig) => { exited = { code, sig }; });
  await waitFor(() => {
    if (exited) throw new Error(`turnserver exited: ${JSON.stringify(exited)}\n${fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8').slice(-2000) : ''}`);
    return fs.existsSync(logPath) && /listener opened on|Total General servers/i.test(fs.readFileSync(logPath, 'utf8'));
  }, { timeout: 10_000, message: 'turnserver listening' });
  return { port, logPath, dir, child };
}

before(async () => {
  turn = await startCoturn();
  server = await startServer({
    args: ['--turn-url', `turn:127.0.0.1:${turn.port}?transport=udp`, '--turn-secret', SECRET, '--turn-ttl', '600'],
  });
  const wav = makeSpeechWav();
  peers.push({ name: uniqueName('relay'), b: await launchBrowser({ audioFile: wav }), relay: true });
  peers.push({ name: uniqueName('direct'), b: await launchBrowser({ audioFile: wav }), relay: false });
});

after(async () => {
  for (const p of peers) await p.b.close();
  await server?.stop();
  if (turn) {
    turn.child.kill('SIGTERM');
    await sleep(200);
    turn.child.kill('SIGKILL');
    fs.rmSync(turn.dir, { recursive: true, force: true });
  }
});

test('a browser forced onto the TURN relay joins voice through coturn and both sides hear each other', async () => {
  const [relayed, direct] = peers;
  await relayed.b.page.goto(server.url);
  await relayed.b.page.evaluate(() => localStorage.setItem('confab.voice.forceRelay', '1'));
  await twoInVoice(peers, server.url, 'Relay ');

  // The relayed browser got credentials and uses the relay; the other goes direct.
  const ice = await relayed.b.page.evaluate(() => window.confabVoice._ice);
  assert.equal(ice.servers.length, 1, JSON.stringify(ice));
  assert.match(ice.servers[0].username, new RegExp(`^\\d+:${relayed.id}$`));
  await waitFor(async () => (await selectedIcePair(relayed.b.page))?.type === 'relay', { timeout: 10_000, message: 'relayed pc on a relay candidate' });
  assert.notEqual((await selectedIcePair(direct.b.page)).type, 'relay', 'the direct browser does not use the relay');
  const heard = await assertHearEachOther(peers);
  for (const p of peers) {
    console.log(`${p.name} (${p.relay ? 'TURN relay' : 'direct UDP'}): joined in ${p.joinMs} ms, ${heard[p.name].got} packets in 3 s, loss ${heard[p.name].loss.toFixed(2)}%`);
  }

  // coturn authenticated an allocation with Confab's credentials for that user.
  const log = fs.readFileSync(turn.logPath, 'utf8');
  assert.match(log, new RegExp(`user <\\d+:${relayed.id}>`), 'coturn saw the relayed user');
  assert.match(log, /ALLOCATE processed, success/, 'coturn allocated a relay');
});
