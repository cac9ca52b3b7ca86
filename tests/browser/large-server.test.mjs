// A large server (the threshold lowered to 1 member): READY carries only our own member, and the
// client fetches the member list and the online members' presences when the server is opened.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi, joinViaUi,
  uniqueName, waitFor } from './lib.mjs';

let server;
let A;  // owner
let B;  // member, online
const userA = uniqueName('owner');
const userB = uniqueName('member');
const serverName = uniqueName('Crowd ');
let code;

async function registerViaRest(username) {
  const res = await fetch(`${server.url}/api/v1/auth/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username, password: 'correct horse battery' }),
  });
  assert.equal(res.status, 201, await res.clone().text());
  return res.json();
}

async function joinViaRest(token) {
  const res = await fetch(`${server.url}/api/v1/invites/${code}`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200, await res.clone().text());
}

const memberRow = (page, id) => page.getByTestId('member-list').locator(`[data-testid="member"][data-user-id="${id}"]`);

before(async () => {
  server = await startServer({ args: ['--large-threshold', '1'] });
  A = await launchBrowser();
  B = await launchBrowser();
});

after(async () => {
  await A?.close();
  await B?.close();
  await server?.stop();
});

test('a large server loads its member list and presences on opening', async () => {
  await registerViaUi(A.page, server.url, userA);
  await registerViaUi(B.page, server.url, userB);
  await createServerViaUi(A.page, serverName);
  const link = await createInviteViaUi(A.page);
  code = link.split('/invite/')[1];
  await joinViaUi(B.page, link, serverName);
  const c = await registerViaRest(uniqueName('offline'));
  await joinViaRest(c.token);
  const idB = await B.page.evaluate(() => window.confab.store.me.id);

  // A new READY: the server is large and carries only A's own member object...
  await A.page.reload();
  await A.page.waitForFunction(() => window.confab && window.confab.gateway.status === 'ready', null, { timeout: 20_000 });
  const info = await A.page.evaluate(() => {
    const s = window.confab.store.server;
    return { large: s.large, count: s.member_count };
  });
  assert.deepEqual(info, { large: true, count: 3 });
  // ...and the rest arrive over REST: B online, C offline.
  await waitFor(async () => (await memberRow(A.page, idB).getAttribute('data-status')) === 'online', { message: 'B listed online' });
  await waitFor(async () => (await memberRow(A.page, c.user.id).getAttribute('data-status')) === 'offline', { message: 'C listed offline' });
  assert.equal(await A.page.getByTestId('member-list').getByTestId('member').count(), 3);
  assert.equal(await A.page.getByTestId('members-loading').count(), 0);

  // Live events keep the list current.
  const d = await registerViaRest(uniqueName('late'));
  await joinViaRest(d.token);
  await memberRow(A.page, d.user.id).waitFor({ timeout: 10_000 });
  assert.equal(await A.page.evaluate(() => window.confab.store.server.member_count), 4);
  await B.page.close();
  await waitFor(async () => (await memberRow(A.page, idB).getAttribute('data-status')) === 'offline', { timeout: 30_000, message: 'B offline after closing' });
});
