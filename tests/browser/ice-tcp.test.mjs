// Voice over ICE-TCP: one Chromium runs in a network namespace whose nftables rules drop every
// UDP packet, so its only way to the SFU is the passive TCP candidate (RFC 6544); another
// Chromium on the host goes over UDP. Both hear each other, the namespaced browser's selected
// ICE pair is TCP, and Confab's /metrics count the TCP connection.
//
// Needs root, iproute2 and nftables (scripts/install-deps.sh --test); prints SKIPPED without.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  startServer, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi, joinViaUi,
  makeSpeechWav, uniqueName, waitFor, sleep, metricValue } from './lib.mjs';

const tag = `cit${process.pid % 10000}`;
const NS = `${tag}ns`;
const HOST_IF = `${tag}h`;
const NS_IF = `${tag}n`;
const octet = 1 + (process.pid % 250);
const HOST_IP = `10.231.${octet}.1`;
const NS_IP = `10.231.${octet}.2`;

const canRun = process.getuid && process.getuid() === 0
  && spawnSync('sh', ['-c', 'command -v ip && command -v nft']).status === 0;
let server;
const peers = [];

function sh(cmd, args, input) {
  return execFileSync(cmd, args, { input, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
}

function teardownNetwork() {
  spawnSync('ip', ['link', 'del', HOST_IF]);
  spawnSync('ip', ['netns', 'del', NS]);
}

function setupNetwork() {
  teardownNetwork();
  sh('ip', ['netns', 'add', NS]);
  sh('ip', ['link', 'add', HOST_IF, 'type', 'veth', 'peer', 'name', NS_IF]);
  sh('ip', ['link', 'set', NS_IF, 'netns', NS]);
  sh('ip', ['addr', 'add', `${HOST_IP}/30`, 'dev', HOST_IF]);
  sh('ip', ['link', 'set', HOST_IF, 'up']);
  sh('ip', ['netns', 'exec', NS, 'ip', 'addr', 'add', `${NS_IP}/30`, 'dev', NS_IF]);
  sh('ip', ['netns', 'exec', NS, 'ip', 'link', 'set', NS_IF, 'up']);
  sh('ip', ['netns', 'exec', NS, 'ip', 'link', 'set', 'lo', 'up']);
  // A network that lets no UDP through, in either direction (as some corporate ones).
  sh('ip', ['netns', 'exec', NS, 'nft', '-f', '-'], `
table inet confab_no_udp {
  chain input { type filter hook input priority 0; meta l4proto udp counter drop; }
  chain output { type filter hook output priority 0; meta l4proto udp counter drop; }
}
`);
}

/** UDP packets the namespace's rules dropped (input + output). */
function droppedUdp() {
  const out = sh('ip', ['netns', 'exec', NS, 'nft', 'list', 'table', 'inet', 'confab_no_udp']);
  return [...out.matchAll(/packets (\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
}

/** The selected ICE pair's local candidate: protocol and type. */
function selectedPair(page) {
  return page.evaluate(async () => {
    const pc = window.confabVoice && window.confabVoice.pc;
    if (!pc) return null;
    const stats = await pc.getStats();
    let pairId = null;
    stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId; });
    const pair = pairId && stats.get(pairId);
    const local = pair && stats.get(pair.localCandidateId);
    const remote = pair && stats.get(pair.remoteCandidateId);
    return local ? { protocol: local.protocol, type: local.candidateType, remote: remote && `${remote.address}:${remote.port}/${remote.protocol}` } : null;
  });
}

function inboundFrom(page, userId) {
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

before(async () => {
  if (!canRun) return;
  setupNetwork();
  server = await startServer({ host: HOST_IP, args: ['--public-ip', HOST_IP] });
  const wav = makeSpeechWav();
  // Plain http on a non-loopback address: let the page use the microphone anyway.
  const insecureOk = [`--unsafely-treat-insecure-origin-as-secure=${server.url}`];
  peers.push({ name: uniqueName('tcp'), b: await launchBrowser({ audioFile: wav, netns: NS, args: insecureOk }), tcp: true });
  peers.push({ name: uniqueName('udp'), b: await launchBrowser({ audioFile: wav, args: insecureOk }), tcp: false });
});

after(async () => {
  for (const p of peers) await p.b.close();
  await server?.stop();
  if (canRun) teardownNetwork();
});

test('a browser whose network drops all UDP joins voice over ICE-TCP and both sides hear each other', { skip: !canRun && 'SKIPPED: needs root, iproute2 and nftables for a network namespace' }, async () => {
  const [tcp, udp] = peers;
  // The namespace really has no UDP: a DNS-style datagram to the host goes nowhere.
  const before = droppedUdp();
  spawnSync('ip', ['netns', 'exec', NS, 'bash', '-c', `echo x > /dev/udp/${HOST_IP}/9`]);
  assert.ok(droppedUdp() > before, 'the namespace drops UDP');

  for (const p of peers) {
    await registerViaUi(p.b.page, server.url, p.name);
    p.id = await p.b.page.evaluate(() => window.confab.store.me.id);
  }
  const serverName = uniqueName('TCP ');
  await createServerViaUi(tcp.b.page, serverName);
  const link = await createInviteViaUi(tcp.b.page);
  await joinViaUi(udp.b.page, link, serverName);

  for (const p of peers) {
    const clicked = Date.now();
    await p.b.page.locator('[data-testid="channel-link"][data-channel-type="voice"][data-channel-name="General"]').click();
    await p.b.page.waitForFunction(() => window.confabVoice && ['connected', 'error'].includes(window.confabVoice.state), null, { timeout: 30_000 })
      .catch(() => {});
    const st = await p.b.page.evaluate(() => ({ state: window.confabVoice.state, error: window.confabVoice.error }));
    assert.equal(st.state, 'connected', `${p.name} did not connect: ${JSON.stringify(st)}`);
    p.joinMs = Date.now() - clicked;
  }
  const tcpPair = await selectedPair(tcp.b.page);
  assert.equal(tcpPair.protocol, 'tcp', `the UDP-less browser's pair: ${JSON.stringify(tcpPair)}`);
  const udpPair = await selectedPair(udp.b.page);
  assert.equal(udpPair.protocol, 'udp', `the other browser stays on UDP: ${JSON.stringify(udpPair)}`);

  const first = {};
  for (const p of peers) {
    const other = peers.find((o) => o !== p);
    await waitFor(async () => {
      const s = await inboundFrom(p.b.page, other.id);
      return s && s.packets > 50 && s.energy > 0;
    }, { timeout: 20_000, message: `${p.name} hears ${other.name}` });
    first[p.name] = await inboundFrom(p.b.page, other.id);
  }
  await sleep(3000);
  for (const p of peers) {
    const other = peers.find((o) => o !== p);
    const now = await inboundFrom(p.b.page, other.id);
    const got = now.packets - first[p.name].packets;
    const lost = Math.max(0, now.lost - first[p.name].lost);
    assert.ok(got > 100, `${p.name}: ${got} packets from ${other.name} in 3 s`);
    assert.ok(now.energy > first[p.name].energy, `${p.name}: audio energy rising`);
    const loss = (100 * lost) / Math.max(1, got + lost);
    assert.ok(loss < 1, `${p.name}: ${loss.toFixed(2)}% loss`);
    console.log(`${p.name} (${p.tcp ? 'ICE-TCP, UDP blocked' : 'UDP'}): joined in ${p.joinMs} ms, ${got} packets in 3 s, loss ${loss.toFixed(2)}%`);
  }

  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  assert.ok(metricValue(metrics, 'confab_sfu_tcp_connections') >= 1, 'an open ICE-TCP connection in /metrics');
  assert.ok(metricValue(metrics, 'confab_sfu_tcp_accepted_total') >= 1, 'accepted ICE-TCP connections in /metrics');
});
