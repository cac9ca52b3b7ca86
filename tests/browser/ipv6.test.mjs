// Voice over IPv6: one Chromium runs in a network namespace that reaches the host over IPv4 for
// the page and the gateway but whose IPv4 UDP is dropped (nftables), with ICE-TCP off, so its
// only media path is the SFU's IPv6 host candidate (`--ipv6 ADDR`). Another Chromium on the host
// joins as it likes (IPv6 too, where the host has it). Both hear each other and the namespaced
// browser's selected pair is the SFU's IPv6 address.
//
// Needs root, iproute2 and nftables (scripts/install-deps.sh --test); prints SKIPPED without.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  startServer, launchBrowser, makeSpeechWav, uniqueName, selectedIcePair, assertHearEachOther,
  twoInVoice, sh, canMakeNetns } from './lib.mjs';

const tag = `c6t${process.pid % 10000}`;
const NS = `${tag}ns`;
const HOST_IF = `${tag}h`;
const NS_IF = `${tag}n`;
const octet = 1 + (process.pid % 250);
const HOST_IP = `10.233.${octet}.1`;
const NS_IP = `10.233.${octet}.2`;
const HOST_IP6 = `2001:db8:${octet.toString(16)}::1`;
const NS_IP6 = `2001:db8:${octet.toString(16)}::2`;

let server;
const peers = [];

function teardownNetwork() {
  spawnSync('ip', ['link', 'del', HOST_IF]);
  spawnSync('ip', ['netns', 'del', NS]);
}

function setupNetwork() {
  teardownNetwork();
  const inNs = (...args) => sh('ip', ['netns', 'exec', NS, ...args]);
  sh('ip', ['netns', 'add', NS]);
  sh('ip', ['link', 'add', HOST_IF, 'type', 'veth', 'peer', 'name', NS_IF]);
  sh('ip', ['link', 'set', NS_IF, 'netns', NS]);
  sh('ip', ['addr', 'add', `${HOST_IP}/30`, 'dev', HOST_IF]);
  sh('ip', ['-6', 'addr', 'add', `${HOST_IP6}/64`, 'dev', HOST_IF, 'nodad']);
  sh('ip', ['link', 'set', HOST_IF, 'up']);
  inNs('ip', 'addr', 'add', `${NS_IP}/30`, 'dev', NS_IF);
  inNs('ip', '-6', 'addr', 'add', `${NS_IP6}/64`, 'dev', NS_IF, 'nodad');
  inNs('ip', 'link', 'set', NS_IF, 'up');
  inNs('ip', 'link', 'set', 'lo', 'up');
  // IPv4 UDP goes nowhere: media can only take IPv6.
  sh('ip', ['netns', 'exec', NS, 'nft', '-f', '-'], `
table ip confab_no_udp4 {
  chain input { type filter hook input priority 0; meta l4proto udp counter drop; }
  chain output { type filter hook output priority 0; meta l4proto udp counter drop; }
}
`);
}

before(async () => {
  if (!canMakeNetns) return;
  setupNetwork();
  server = await startServer({ host: HOST_IP, args: ['--public-ip', HOST_IP, '--ipv6', HOST_IP6, '--ice-tcp', 'false'] });
  const wav = makeSpeechWav();
  const insecureOk = [`--unsafely-treat-insecure-origin-as-secure=${server.url}`];
  peers.push({ name: uniqueName('six'), b: await launchBrowser({ audioFile: wav, netns: NS, args: insecureOk }), how: 'IPv6 (IPv4 UDP blocked)' });
  peers.push({ name: uniqueName('four'), b: await launchBrowser({ audioFile: wav, args: insecureOk }), how: 'host' });
});

after(async () => {
  for (const p of peers) await p.b.close();
  await server?.stop();
  if (canMakeNetns) teardownNetwork();
});

test('a browser with IPv6 but no IPv4 UDP joins voice on the SFU\'s IPv6 candidate and both sides hear each other', { skip: !canMakeNetns && 'SKIPPED: needs root, iproute2 and nftables for a network namespace' }, async () => {
  const [six] = peers;
  await twoInVoice(peers, server.url, 'IPv6 ');
  const pair6 = await selectedIcePair(six.b.page);
  assert.ok(pair6.remote.startsWith(`${HOST_IP6}:`) && pair6.protocol === 'udp', `the IPv6 browser's pair: ${JSON.stringify(pair6)}`);
  const heard = await assertHearEachOther(peers);
  for (const p of peers) {
    console.log(`${p.name} (${p.how}): joined in ${p.joinMs} ms, ${heard[p.name].got} packets in 3 s, loss ${heard[p.name].loss.toFixed(2)}%`);
  }
});
