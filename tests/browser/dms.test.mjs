// The DMs and friends home through the real UI in two browsers: a friend request by username
// and its acceptance, a DM whose messages appear live on both sides, and unread markers and
// mention badges that appear when something arrives elsewhere and clear when it is viewed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi, joinViaUi,
  uniqueName, waitFor, snap } from './lib.mjs';

let server;
let A;
let B;
const userA = uniqueName('ann');
const userB = uniqueName('bob');

const msgByText = (page, text) => page.getByTestId('message-list').getByTestId('message')
  .filter({ has: page.getByTestId('message-content').filter({ hasText: text }) });

async function send(page, text) {
  const box = page.getByTestId('composer');
  await box.fill(text);
  await box.press('Enter');
}

before(async () => {
  server = await startServer();
  A = await launchBrowser();
  B = await launchBrowser();
});

after(async () => {
  await A?.close();
  await B?.close();
  await server?.stop();
});

test('a friend request by username is accepted live', async () => {
  await registerViaUi(A.page, server.url, userA);
  await registerViaUi(B.page, server.url, userB);
  for (const p of [A.page, B.page]) await p.getByTestId('home-button').click();

  await A.page.getByTestId('friends-tab-add').click();
  await A.page.getByTestId('add-friend-input').fill(userB);
  await A.page.getByTestId('add-friend-submit').click();
  await A.page.getByTestId('add-friend-status').filter({ hasText: `sent to ${userB}` }).waitFor();
  // An unknown name is explained, not thrown.
  await A.page.getByTestId('add-friend-input').fill(`${userB}-nobody`);
  await A.page.getByTestId('add-friend-submit').click();
  await A.page.getByTestId('add-friend-status').filter({ hasText: 'Nobody is called' }).waitFor();
  // The browser logs that 404, provoked on purpose: not an error of normal use.
  A.consoleErrors.splice(0, A.consoleErrors.length, ...A.consoleErrors.filter((e) => !/404 .*relationships/.test(e)));

  // B sees the incoming request without reloading and accepts it.
  await B.page.getByTestId('friends-tab-pending').click();
  const incoming = B.page.locator(`[data-testid="friend"][data-type="incoming"]`).filter({ hasText: userA });
  await incoming.waitFor({ timeout: 10_000 });
  await incoming.getByTestId('friend-accept').click();

  // Both list the other as an online friend (presence flows between friends).
  await A.page.getByTestId('friends-tab-online').click();
  await B.page.getByTestId('friends-tab-online').click();
  for (const [page, other] of [[A.page, userB], [B.page, userA]]) {
    await page.locator('[data-testid="friend"][data-type="friend"][data-status="online"]').filter({ hasText: other }).waitFor({ timeout: 10_000 });
  }
});

test('a DM: messages appear live; the unread marker appears and clears on view', async () => {
  const friend = A.page.locator('[data-testid="friend"]').filter({ hasText: userB });
  await friend.getByTestId('friend-message').click();
  await A.page.getByTestId('channel-title').filter({ hasText: `@${userB}` }).waitFor();
  await send(A.page, 'hello from ann');
  await msgByText(A.page, 'hello from ann').locator(':scope:not(.pending)').waitFor({ timeout: 10_000 });

  // B is on the friends page: the DM shows up unread, and so does the home button.
  const dmOnB = B.page.getByTestId('dm-link').filter({ hasText: userA });
  await dmOnB.and(B.page.locator('[data-unread="true"]')).waitFor({ timeout: 10_000 });
  await B.page.locator('[data-testid="home-button"][data-unread="true"]').waitFor();
  await snap(B.page, 'dm-unread');
  await dmOnB.click();
  await msgByText(B.page, 'hello from ann').waitFor({ timeout: 10_000 });
  await B.page.getByTestId('dm-link').filter({ hasText: userA }).and(B.page.locator('[data-unread="false"]')).waitFor();
  await B.page.locator('[data-testid="home-button"][data-unread="false"]').waitFor();

  // The reply arrives live in A's open DM.
  await send(B.page, 'hi ann, got it');
  await msgByText(A.page, 'hi ann, got it').waitFor({ timeout: 10_000 });
  await snap(A.page, 'dm-conversation');

  // The read position was stored on the server: after a reload the DM is still read.
  await B.page.reload();
  await B.page.waitForFunction(() => window.confab && window.confab.gateway.status === 'ready', null, { timeout: 20_000 });
  await B.page.getByTestId('home-button').click();
  await B.page.getByTestId('dm-link').filter({ hasText: userA }).and(B.page.locator('[data-unread="false"]')).waitFor();
});

test('a mention in a server channel badges the server until the channel is viewed', async () => {
  const serverName = uniqueName('Hub ');
  await createServerViaUi(A.page, serverName);
  const link = await createInviteViaUi(A.page);
  await joinViaUi(B.page, link, serverName);
  // B goes home; A mentions everyone in #general.
  await B.page.getByTestId('home-button').click();
  await send(A.page, '@everyone standup in 5');
  await msgByText(A.page, 'standup in 5').locator(':scope:not(.pending)').waitFor({ timeout: 10_000 });
  const serverBtn = B.page.locator('.rail-item').filter({ has: B.page.getByRole('button', { name: serverName }) });
  await serverBtn.getByTestId('mention-badge').filter({ hasText: '1' }).waitFor({ timeout: 10_000 });
  assert.equal(await serverBtn.getByTestId('server-button').getAttribute('data-unread'), 'true');
  await snap(B.page, 'mention-badge');

  // Viewing the channel clears both.
  await serverBtn.getByTestId('server-button').click();
  await msgByText(B.page, 'standup in 5').waitFor({ timeout: 10_000 });
  await waitFor(async () => (await serverBtn.getByTestId('mention-badge').count()) === 0, { message: 'mention badge cleared' });
  await B.page.locator(`[data-testid="server-button"][data-unread="false"]`).waitFor();
  assert.deepEqual(A.errors, []);
  assert.deepEqual(B.errors, []);
  // Normal use logs nothing to the console.
  assert.deepEqual(A.consoleErrors, []);
  assert.deepEqual(B.consoleErrors, []);
});
