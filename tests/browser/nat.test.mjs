// Voice from behind a NAT: one Chromium runs in a "home" network namespace whose only way out is
// a router namespace that masquerades (nftables NAT) onto the host's network, as behind a home
// router; Confab on the host announces its own address. The SFU never learns the browser's
// private address: it answers its checks at the NAT's (peer-reflexive), and both sides hear each
// other.
//
// Needs root, iproute2 and nftables (scripts/install-deps.sh --test); prints SKIPPED without.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  startServer, launchBrowser, makeSpeechWav, uniqueName, selectedIcePair, assertHearEachOther,
  twoInVoice, sh, canMakeNetns } from './lib.mjs';

const tag = `cnt${process.pid % 10000}`;
const ROUTER = `${tag}r`;
const HOME = `${tag}c`;
const octet = 1 + (process.pid % 250);
// host <-> router: the "internet" side; router <-> home: the private side.
const HOST_IP = `10.232.${octet}.1`;
const WAN_IP = `10.232.${octet}.2`;
const LAN_GW = `192.168.${octet}.1`;
const HOME_IP = `192.168.${octet}.2`;

let server;
const peers = [];

function teardownNetwork() {
  spawnSync('ip', ['link', 'del', `${tag}h`]);
  spawnSync('ip', ['netns', 'del', HOME]);
  spawnSync('ip', ['netns', 'del', ROUTER]);
}

function setupNetwork() {
  teardownNetwork();
  const inNs = (ns, ...args) => sh('ip', ['netns', 'exec', ns, ...args]);
  sh('ip', ['netns', 'add', ROUTER]);
  sh('ip', ['netns', 'add', HOME]);
  sh('ip', ['link', 'add', `${tag}h`, 'type', 'veth', 'peer', 'name', `${tag}w`]);
  sh('ip', ['link', 'set', `${tag}w`, 'netns', ROUTER]);
  sh('ip', ['addr', 'add', `${HOST_IP}/30`, 'dev', `${tag}h`]);
  sh('ip', ['link', 'set', `${tag}h`, 'up']);
  inNs(ROUTER, 'ip', 'addr', 'add', `${WAN_IP}/30`, 'dev', `${tag}w`);
  inNs(ROUTER, 'ip', 'link', 'set', `${tag}w`, 'up');
  sh('ip', ['link', 'add', `${tag}l`, 'netns', ROUTER, 'type', 'veth', 'peer', 'name', `${tag}e`, 'netns', HOME]);
  inNs(ROUTER, 'ip', 'addr', 'add', `${LAN_GW}/24`, 'dev', `${tag}l`);
  inNs(ROUTER, 'ip', 'link', 'set', `${tag}l`, 'up');
  inNs(HOME, 'ip', 'addr', 'add', `${HOME_IP}/24`, 'dev', `${tag}e`);
  inNs(HOME, 'ip', 'link', 'set', `${tag}e`, 'up');
  inNs(HOME, 'ip', 'link', 'set', 'lo', 'up');
  inNs(HOME, 'ip', 'route', 'add', 'default', 'via', LAN_GW);
  inNs(ROUTER, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
  // Source NAT of everything leaving towards the host, as a home router does.
  sh('ip', ['netns', 'exec', ROUTER, 'nft', '-f', '-'], `
table ip confab_nat {
  chain postrouting { type nat hook postrouting priority 100; oifname "${tag}w" counter masquerade; }
}
`);
}

/** Packets the router masqueraded. */
function masqueraded() {
  const out = sh('ip', ['netns', 'exec', ROUTER, 'nft', 'list', 'table', 'ip', 'confab_nat']);
  return [...out.matchAll(/packets (\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
}

before(async () => {
  if (!canMakeNetns) return;
  setupNetwork();
  server = await startServer({ host: HOST_IP, args: ['--public-ip', HOST_IP] });
  const wav = makeSpeechWav();
  const insecureOk = [`--unsafely-treat-insecure-origin-as-secure=${server.url}`];
  peers.push({ name: uniqueName('natted'), b: await launchBrowser({ audioFile: wav, netns: HOME, args: insecureOk }), how: 'behind NAT' });
  peers.push({ name: uniqueName('host'), b: await launchBrowser({ audioFile: wav, args: insecureOk }), how: 'direct' });
});

after(async () => {
  for (const p of peers) await p.b.close();
  await server?.stop();
  if (canMakeNetns) teardownNetwork();
});

test('a browser behind a NAT reaches the SFU at its announced address and both sides hear each other', { skip: !canMakeNetns && 'SKIPPED: needs root, iproute2 and nftables for network namespaces' }, async () => {
  const [natted] = peers;
  await twoInVoice(peers, server.url, 'NAT ');
  const pair = await selectedIcePair(natted.b.page);
  assert.equal(pair.protocol, 'udp', JSON.stringify(pair));
  assert.ok(pair.remote.startsWith(`${HOST_IP}:`), `the natted browser talks to the announced address: ${JSON.stringify(pair)}`);
  // Its own host candidates are private; the address it is known by on the selected pair is the
  // NAT's, learned from the SFU's answers (peer-reflexive): the SFU answered at the NAT.
  const hosts = await natted.b.page.evaluate(async () => {
    const out = [];
    (await window.confabVoice.pc.getStats()).forEach((s) => { if (s.type === 'local-candidate' && s.candidateType === 'host') out.push(s.address); });
    return out;
  });
  assert.ok(hosts.includes(HOME_IP) && !hosts.includes(WAN_IP), `host candidates: ${hosts}`);
  assert.equal(pair.address, WAN_IP, `the SFU saw the NAT's address: ${JSON.stringify(pair)}`);
  assert.ok(masqueraded() > 0, 'the router translated the traffic');
  const heard = await assertHearEachOther(peers);
  for (const p of peers) {
    console.log(`${p.name} (${p.how}): joined in ${p.joinMs} ms, ${heard[p.name].got} packets in 3 s, loss ${heard[p.name].loss.toFixed(2)}%`);
  }
});
