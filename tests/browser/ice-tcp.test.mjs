// Voice over ICE-TCP: one Chromium runs in a network namespace whose nftables rules drop every
// UDP packet, so its only way to the SFU is the passive TCP candidate (RFC 6544); another
// Chromium on the host goes over UDP. Both hear each other, the namespaced browser's selected
// ICE pair is TCP, and Confab's /metrics count the TCP connection.
//
// Needs root, iproute2 and nftables (scripts/install-deps.sh --test); prints SKIPPED without.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  startServer, launchBrowser, makeSpeechWav, uniqueName, metricValue, selectedIcePair,
  assertHearEachOther, twoInVoice, sh, canMakeNetns } from './lib.mjs';

const tag = `cit${process.pid % 10000}`;
const NS = `${tag}ns`;
const HOST_IF = `${tag}h`;
const NS_IF = `${tag}n`;
const octet = 1 + (process.pid % 250);
const HOST_IP = `10.231.${octet}.1`;
const NS_IP = `10.231.${octet}.2`;

let server;
const peers = [];

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

before(async () => {
  if (!canMakeNetns) return;
  setupNetwork();
  server = await startServer({ host: HOST_IP, args: ['--public-ip', HOST_IP] });
  const wav = makeSpeechWav();
  // Plain http on a non-loopback address: let the page use the microphone anyway.
  const insecureOk = [`--unsafely-treat-insecure-origin-as-secure=${server.url}`];
  peers.push({ name: uniqueName('tcp'), b: await launchBrowser({ audioFile: wav, netns: NS, args: insecureOk }), how: 'ICE-TCP, UDP blocked' });
  peers.push({ name: uniqueName('udp'), b: await launchBrowser({ audioFile: wav, args: insecureOk }), how: 'UDP' });
});

after(async () => {
  for (const p of peers) await p.b.close();
  await server?.stop();
  if (canMakeNetns) teardownNetwork();
});

test('a browser whose network drops all UDP joins voice over ICE-TCP and both sides hear each other', { skip: !canMakeNetns && 'SKIPPED: needs root, iproute2 and nftables for a network namespace' }, async () => {
  const [tcp, udp] = peers;
  // The namespace really has no UDP: a datagram to the host goes nowhere.
  const before = droppedUdp();
  spawnSync('ip', ['netns', 'exec', NS, 'bash', '-c', `echo x > /dev/udp/${HOST_IP}/9`]);
  assert.ok(droppedUdp() > before, 'the namespace drops UDP');

  await twoInVoice(peers, server.url, 'TCP ');
  const tcpPair = await selectedIcePair(tcp.b.page);
  assert.equal(tcpPair.protocol, 'tcp', `the UDP-less browser's pair: ${JSON.stringify(tcpPair)}`);
  const udpPair = await selectedIcePair(udp.b.page);
  assert.equal(udpPair.protocol, 'udp', `the other browser stays on UDP: ${JSON.stringify(udpPair)}`);
  const heard = await assertHearEachOther(peers);
  for (const p of peers) {
    console.log(`${p.name} (${p.how}): joined in ${p.joinMs} ms, ${heard[p.name].got} packets in 3 s, loss ${heard[p.name].loss.toFixed(2)}%`);
  }

  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  assert.ok(metricValue(metrics, 'confab_sfu_tcp_connections') >= 1, 'an open ICE-TCP connection in /metrics');
  assert.ok(metricValue(metrics, 'confab_sfu_tcp_accepted_total') >= 1, 'accepted ICE-TCP connections in /metrics');
});
