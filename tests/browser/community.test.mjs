// Community features through the real UI in two browsers: roles, channel overwrites, member
// roles, reactions, pins, bans and the audit log.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi, joinViaUi,
  uniqueName, waitFor, snap } from './lib.mjs';

let server;
let A;  // owner
let B;  // member
const userA = uniqueName('owner');
const userB = uniqueName('member');
const serverName = uniqueName('Club ');
// Rendered as text, never as markup.
const roleName = 'Speakers <b>x</b>';

const msgs = (page) => page.getByTestId('message-list').getByTestId('message');
const msgByText = (page, text) => msgs(page).filter({ has: page.getByTestId('message-content').filter({ hasText: text }) });

async function send(page, text) {
  const box = page.getByTestId('composer');
  await box.fill(text);
  await box.press('Enter');
}

async function openServerSettings(page, tab) {
  await page.getByRole('button', { name: 'Server settings' }).click();
  const dlg = page.getByTestId('server-settings-dialog');
  await dlg.waitFor();
  if (tab) await dlg.getByRole('tab', { name: tab }).click();
  return dlg;
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
  // only those with moderation permissions get the settings button
  assert.equal(await A.page.getByRole('button', { name: 'Server settings' }).count(), 1);
  assert.equal(await B.page.getByRole('button', { name: 'Server settings' }).count(), 0);
});

test('owner creates a role; an @everyone overwrite denying SEND_MESSAGES stops the member', async () => {
  const dlg = await openServerSettings(A.page, 'Roles');
  await dlg.getByLabel('New role name').fill(roleName);
  await dlg.getByRole('button', { name: 'Create role' }).click();
  const item = dlg.getByTestId('role-item').filter({ hasText: roleName });
  await item.waitFor();
  assert.equal(await dlg.getByTestId('role-list').locator('b').count(), 0, 'role name is text, not markup');
  // colour it and save
  await dlg.getByLabel('Role colour').fill('#e91e63');
  await dlg.getByRole('button', { name: 'Save role' }).click();
  await dlg.getByRole('status').filter({ hasText: 'Saved.' }).waitFor();
  await dlg.getByRole('button', { name: 'Close', exact: true }).click();

  // channel permissions, from the channel's edit control
  const row = A.page.locator('.channel-row').filter({ has: A.page.locator('[data-channel-name="general"][data-channel-type="text"]') });
  await row.hover();
  await row.getByRole('button', { name: 'Edit channel general' }).click();
  await A.page.getByTestId('edit-channel-dialog').getByRole('button', { name: 'Channel permissions' }).click();
  const perms = A.page.getByTestId('channel-permissions-dialog');
  await perms.waitFor();
  // @everyone is selected first
  await perms.locator('[data-testid="overwrite-target"][aria-pressed="true"]').filter({ hasText: '@everyone' }).waitFor();
  await perms.getByLabel('Deny Send messages', { exact: true }).check({ force: true });
  // the role gets an allow that will win over @everyone's deny
  await perms.getByTestId('overwrite-add').selectOption({ label: roleName });
  await perms.locator('[data-testid="overwrite-target"][aria-pressed="true"]').filter({ hasText: roleName }).waitFor();
  await perms.getByLabel('Allow Send messages', { exact: true }).check({ force: true });
  await perms.getByRole('button', { name: 'Save changes' }).click();
  await perms.waitFor({ state: 'detached' });

  // the member's send is refused, with an error shown
  await send(B.page, 'blocked message');
  // Shown under the composer, with what to do about it.
  await B.page.getByTestId('composer-error').getByText(/Message not sent: .*Ask a server admin for the permission/).waitFor({ timeout: 10_000 });
  await waitFor(async () => (await msgByText(B.page, 'blocked message').count()) === 0, { message: 'pending message removed' });
  assert.equal(await msgByText(A.page, 'blocked message').count(), 0);
});

test('owner assigns the role from the member list → the member can send again', async () => {
  await A.page.getByTestId('member-list').getByRole('button', { name: userB }).click();
  const card = A.page.getByTestId('member-dialog');
  await card.getByLabel(`Role ${roleName} for ${userB}`).check();
  await waitFor(async () => !(await card.getByLabel(`Role ${roleName} for ${userB}`).isDisabled()), { message: 'role assigned' });
  await card.getByRole('button', { name: 'Close', exact: true }).click();
  // both clients show the member in the role's colour (live via MEMBER_UPDATE for B)
  for (const page of [A.page, B.page]) {
    await page.locator(`[data-testid="member"][data-role-color="#e91e63"]`).filter({ hasText: userB }).waitFor({ timeout: 10_000 });
  }
  await send(B.page, 'allowed again');
  await msgByText(A.page, 'allowed again').waitFor({ timeout: 10_000 });
  await msgByText(B.page, 'allowed again').locator(':scope:not(.pending)').waitFor();
});

test('reactions appear live with counts and toggle on click', async () => {
  await send(A.page, 'react to me');
  const onA = msgByText(A.page, 'react to me');
  await onA.waitFor();
  await msgByText(B.page, 'react to me').waitFor({ timeout: 10_000 });
  await onA.hover();
  await onA.getByRole('button', { name: 'Add reaction' }).click();
  await A.page.getByTestId('reaction-picker').getByRole('button', { name: 'React with 👍' }).click();
  // live on B, count 1, not mine
  const chipB = msgByText(B.page, 'react to me').locator('[data-testid="reaction"][data-emoji="👍"]');
  await chipB.waitFor({ timeout: 10_000 });
  assert.equal(await chipB.getAttribute('data-count'), '1');
  assert.equal(await chipB.getAttribute('data-me'), 'false');
  const chipA = onA.locator('[data-testid="reaction"][data-emoji="👍"]');
  assert.equal(await chipA.getAttribute('data-me'), 'true');
  // B clicks the chip: 2 on both, highlighted for B
  await chipB.click();
  await waitFor(async () => (await chipA.getAttribute('data-count')) === '2', { message: 'count 2 on A' });
  await waitFor(async () => (await chipB.getAttribute('data-me')) === 'true' && (await chipB.getAttribute('data-count')) === '2', { message: 'B reacted' });
  // A toggles off: back to 1 on B
  await chipA.click();
  await waitFor(async () => (await chipB.getAttribute('data-count')) === '1', { message: 'count back to 1 on B' });
});

test('owner pins a message; it shows in the pins popover (on both clients)', async () => {
  const onA = msgByText(A.page, 'allowed again');
  await onA.hover();
  await onA.getByRole('button', { name: 'Pin message' }).click();
  await onA.getByRole('button', { name: 'Unpin message' }).waitFor({ timeout: 10_000 });
  // the member may not pin
  const onB = msgByText(B.page, 'react to me');
  await onB.hover();
  assert.equal(await onB.getByRole('button', { name: 'Pin message' }).count(), 0);
  for (const page of [A.page, B.page]) {
    await page.getByRole('button', { name: 'Pinned messages' }).click();
    const pop = page.getByTestId('pins-popover');
    await pop.getByTestId('pinned-message').filter({ hasText: 'allowed again' }).waitFor({ timeout: 10_000 });
    await page.keyboard.press('Escape');
    await pop.waitFor({ state: 'detached' });
  }
});

test('owner bans the member from the member list → the member loses the server; audit log lists it', async () => {
  await A.page.getByTestId('member-list').getByRole('button', { name: userB }).click();
  const card = A.page.getByTestId('member-dialog');
  await card.getByRole('button', { name: 'Ban', exact: true }).click();
  const confirm = A.page.getByTestId('moderate-dialog');
  await confirm.getByLabel('Reason (optional)').fill('spam <script>');
  await confirm.getByRole('button', { name: 'Confirm ban' }).click();
  await card.waitFor({ state: 'detached' });
  // B's client drops the server from the rail
  await waitFor(async () => (await B.page.getByTestId('server-button').filter({ hasText: /./ }).evaluateAll(
    (els, name) => els.filter((e) => e.textContent.endsWith(name)).length, serverName)) === 0,
  { message: 'server gone from B\'s rail' });
  await A.page.getByTestId('member-list').getByText(userB).waitFor({ state: 'detached', timeout: 10_000 });

  const dlg = await openServerSettings(A.page, 'Bans');
  await dlg.getByTestId('ban-row').filter({ hasText: userB }).waitFor({ timeout: 10_000 });
  await dlg.getByRole('tab', { name: 'Audit log' }).click();
  await dlg.getByTestId('audit-filter').selectOption('member_ban_add');
  const entry = dlg.locator('[data-testid="audit-entry"][data-action="member_ban_add"]');
  await entry.filter({ hasText: userB }).waitFor({ timeout: 10_000 });
  assert.match(await entry.first().textContent(), /Reason: spam <script>/);
  assert.match(await entry.first().textContent(), new RegExp(userA));
  // the filter leaves only that action
  await waitFor(async () => (await dlg.locator('[data-testid="audit-entry"]:not([data-action="member_ban_add"])').count()) === 0,
    { message: 'the filtered audit log' });
  await dlg.getByLabel('Filter by action').selectOption('');
  await dlg.locator('[data-testid="audit-entry"][data-action="role_create"]').first().waitFor();
  await dlg.locator('[data-testid="audit-entry"][data-action="channel_overwrite_update"]').first().waitFor();
  await snap(A.page, 'server-settings');
  const ow = dlg.locator('[data-testid="audit-entry"][data-action="channel_overwrite_update"]').filter({ hasText: '@everyone' });
  assert.match(await ow.first().textContent(), /deny Send messages/);
  // roles tab renders and the invite list shows our invite with its use
  await dlg.getByRole('tab', { name: 'Invites' }).click();
  const inv = dlg.getByTestId('invite-row').first();
  await inv.waitFor();
  assert.match(await inv.textContent(), /1 \/ ∞ uses/);
});

test('no uncaught page errors', () => {
  assert.deepEqual(A.errors, []);
  assert.deepEqual(B.errors, []);
});
