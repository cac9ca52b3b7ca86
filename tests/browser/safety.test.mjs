// Safety through the real UI in two browsers (docs/safety.md): the owner creates a
// blocked-word rule on the AutoMod page; the member's message with the word is refused with the
// rule's message in the composer and never reaches the owner; the member reports a message,
// which appears in the owner's Reports queue, where deleting it removes it for both.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi, joinViaUi,
  uniqueName, tokenOf, rest, sleep, openServerSettings } from './lib.mjs';

let server;
let A;  // owner
let B;  // member
const userA = uniqueName('owner');
const userB = uniqueName('member');
const serverName = uniqueName('Safe ');

const msgs = (page) => page.getByTestId('message-list').getByTestId('message');
const msgByText = (page, text) => msgs(page).filter({ has: page.getByTestId('message-content').filter({ hasText: text }) });

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

test('setup: owner creates a server, the member joins by invite', async () => {
  await registerViaUi(A.page, server.url, userA);
  await registerViaUi(B.page, server.url, userB);
  await createServerViaUi(A.page, serverName);
  const link = await createInviteViaUi(A.page);
  await joinViaUi(B.page, link, serverName);
  await A.page.getByTestId('member-list').getByText(userB).waitFor({ timeout: 10_000 });
});

test('owner creates a blocked-word rule; the member is refused with its message', async () => {
  const dlg = await openServerSettings(A.page, 'AutoMod');
  await dlg.getByTestId('automod-name').fill('No swearing');
  await dlg.getByTestId('automod-kind').selectOption('keyword');
  await dlg.getByTestId('automod-words').fill('frak\nsmeg*');
  await dlg.getByTestId('automod-block-message').fill('Keep it friendly, please.');
  await dlg.getByTestId('automod-save').click();
  const rule = dlg.getByTestId('automod-rule').filter({ hasText: 'No swearing' });
  await rule.waitFor();
  assert.match(await rule.textContent(), /frak, smeg\*/);
  await dlg.getByRole('button', { name: 'Close', exact: true }).click();

  await send(B.page, 'what the frak is this');
  const err = B.page.getByTestId('composer-error');
  await err.waitFor({ state: 'visible' });
  assert.equal(await err.textContent(), 'Blocked by AutoMod rule "No swearing": Keep it friendly, please.');
  // The text stays in the composer to fix; nothing was posted for anyone.
  assert.equal(await B.page.getByTestId('composer').inputValue(), 'what the frak is this');
  assert.equal(await msgByText(B.page, 'what the frak').count(), 0);
  await send(B.page, 'a friendly hello');
  await msgByText(A.page, 'a friendly hello').waitFor();
  assert.equal(await msgByText(A.page, 'what the frak').count(), 0);
  // And the server has no such message either.
  const token = await tokenOf(A.page);
  const channelId = await A.page.evaluate(() => window.confab.store.currentChannelId);
  const history = await rest(server.url, token, 'GET', `/channels/${channelId}/messages?limit=50`);
  assert.ok(!history.some((m) => m.content.includes('frak')), 'blocked message stored');
  assert.ok(history.some((m) => m.content === 'a friendly hello'));
});

test('a member reports a message; it appears in the owner\'s Reports queue, which deletes it', async () => {
  await send(A.page, 'a message worth reporting');
  const target = msgByText(B.page, 'a message worth reporting');
  await target.waitFor();
  await target.hover();
  await target.getByTestId('report-message').click();
  const dlg = B.page.getByTestId('report-dialog');
  await dlg.getByTestId('report-reason-input').fill('this is off-topic spam');
  await dlg.getByRole('button', { name: 'Report' }).click();
  await dlg.waitFor({ state: 'detached' });
  // The member has no queue to look at.
  assert.equal(await B.page.getByRole('button', { name: 'Server settings' }).count(), 0);

  const settings = await openServerSettings(A.page, 'Reports');
  const item = settings.getByTestId('report-item').filter({ hasText: 'this is off-topic spam' });
  await item.waitFor({ timeout: 10_000 });
  assert.equal(await item.getByTestId('report-content').textContent(), 'a message worth reporting');
  assert.match(await item.textContent(), new RegExp(`${userB} reported ${userA}`));
  await item.getByTestId('report-delete').click();
  await item.waitFor({ state: 'detached' });
  await settings.getByRole('button', { name: 'Close', exact: true }).click();
  // Gone for both.
  for (const page of [A.page, B.page]) {
    for (let i = 0; i < 40 && await msgByText(page, 'a message worth reporting').count(); i++) await sleep(250);
    assert.equal(await msgByText(page, 'a message worth reporting').count(), 0);
  }
});

test('the Safety page turns raid mode on and off and saves the join threshold', async () => {
  const dlg = await openServerSettings(A.page, 'Safety');
  const status = dlg.getByTestId('raid-status');
  await status.filter({ hasText: 'Raid mode is off.' }).waitFor();
  await dlg.getByTestId('raid-threshold').fill('25');
  await dlg.getByTestId('verification-level').selectOption('2');
  await dlg.getByTestId('safety-save').click();
  await dlg.getByTestId('raid-toggle').click();
  await status.filter({ hasText: 'Raid mode is ON' }).waitFor();
  const token = await tokenOf(A.page);
  const serverId = await A.page.evaluate(() => window.confab.store.server.id);
  const st = await rest(server.url, token, 'GET', `/servers/${serverId}/safety`);
  assert.equal(st.raid_mode, true);
  assert.equal(st.raid_join_threshold, 25);
  assert.equal(st.verification_level, 2);
  // The member (no role, a new account) is now held back by the verification level.
  await send(B.page, 'can I still talk?');
  await B.page.getByTestId('composer-error').filter({ hasText: 'older than 5 minutes' }).waitFor();
  await dlg.getByTestId('raid-toggle').click();
  await status.filter({ hasText: 'Raid mode is off.' }).waitFor();
  await dlg.getByTestId('verification-level').selectOption('0');
  await dlg.getByTestId('safety-save').click();
  await A.page.waitForFunction(async () => (await window.confab.api.safetySettings(window.confab.store.server.id)).verification_level === 0);
  await dlg.getByRole('button', { name: 'Close', exact: true }).click();
});
