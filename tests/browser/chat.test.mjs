// Chat through the real UI in two browsers: register, server + invite, live messages, typing,
// safe rendering, edit/delete, history pagination.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi, joinViaUi,
  tokenOf, rest, uniqueName, waitFor, sleep, snap } from './lib.mjs';

let server;
let A;
let B;
const userA = uniqueName('alice');
const userB = uniqueName('bob');
const serverName = uniqueName('Guild ');
let link = null;

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

test('register two users; A creates a server and invite; B joins by invite link', async () => {
  await A.page.goto(server.url);
  await A.page.getByRole('button', { name: 'Log in', exact: true }).waitFor();
  await snap(A.page, 'login');
  await registerViaUi(A.page, server.url, userA);
  await registerViaUi(B.page, server.url, userB);
  await createServerViaUi(A.page, serverName);
  link = await createInviteViaUi(A.page);
  assert.match(link, /\/invite\/[A-Za-z0-9_-]+$/);
  await joinViaUi(B.page, link, serverName);
  // both see each other in the member list
  await A.page.getByTestId('member-list').getByText(userB).waitFor({ timeout: 10_000 });
  await B.page.getByTestId('member-list').getByText(userA).waitFor({ timeout: 10_000 });
});

test('presence dots: each sees the other online after the invite join', async () => {
  const aSeenByB = B.page.locator(`[data-testid="member"]:has-text("${userA}")`);
  const bSeenByA = A.page.locator(`[data-testid="member"]:has-text("${userB}")`);
  await waitFor(async () => (await aSeenByB.getAttribute('data-status')) === 'online' &&
    (await bSeenByA.getAttribute('data-status')) === 'online', { timeout: 8000 }).catch(() => {});
  const seen = { aSeenByB: await aSeenByB.getAttribute('data-status'), bSeenByA: await bSeenByA.getAttribute('data-status') };
  assert.deepEqual(seen, { aSeenByB: 'online', bSeenByA: 'online' });
});

test('register form shows per-field validation errors', async () => {
  const C = await launchBrowser();
  try {
    await C.page.goto(server.url);
    await C.page.getByRole('button', { name: 'Register' }).click();
    await C.page.getByLabel('Username').fill(userA);  // taken
    await C.page.getByLabel('Password').fill('x');    // too short (client-side)
    await C.page.getByRole('button', { name: 'Register', exact: true }).click();
    await C.page.locator('[data-error-for="password"]').filter({ hasText: /\S/ }).waitFor();
    await C.page.getByLabel('Password').fill('long enough password');
    await C.page.getByRole('button', { name: 'Register', exact: true }).click();
    // the server rejects the taken username: an error is shown (per field when it says which)
    await C.page.locator('[data-testid="auth-error"]:not([hidden])').waitFor({ timeout: 10_000 });
    // Opening an invite link logged out: register, then the app offers to join that server.
    await C.page.goto(link);
    await C.page.getByRole('button', { name: 'Register' }).click();
    await C.page.getByLabel('Username').fill(uniqueName('carol'));
    await C.page.getByLabel('Password').fill('long enough password');
    await C.page.getByRole('button', { name: 'Register', exact: true }).click();
    const dlg = C.page.getByTestId('join-server-dialog');
    await dlg.getByTestId('invite-preview').filter({ hasText: serverName }).waitFor({ timeout: 15_000 });
    await dlg.getByRole('button', { name: 'Join server' }).click();
    await C.page.getByTestId('server-name').filter({ hasText: serverName }).waitFor({ timeout: 15_000 });
    assert.equal(new URL(C.page.url()).pathname, '/');
  } finally {
    await C.close();
  }
});

test('A types → B sees the typing indicator; A sends → B sees it live', async () => {
  await A.page.getByTestId('composer').pressSequentially('hello th', { delay: 20 });
  await B.page.getByTestId('typing-indicator').filter({ hasText: `${userA} is typing` }).waitFor({ timeout: 10_000 });
  await A.page.getByTestId('composer').pressSequentially('ere', { delay: 10 });
  await A.page.getByTestId('composer').press('Enter');
  await msgByText(B.page, 'hello there').waitFor({ timeout: 10_000 });
  await msgByText(A.page, 'hello there').waitFor();
  // the indicator clears when the message arrives
  await waitFor(async () => !(await B.page.getByTestId('typing-indicator').textContent()).includes('typing'), { message: 'typing cleared' });
  // Shift+Enter is a newline, not a send
  const box = A.page.getByTestId('composer');
  await box.fill('line one');
  await box.press('Shift+Enter');
  await box.pressSequentially('line two');
  assert.equal(await box.inputValue(), 'line one\nline two');
  await box.press('Enter');
  await msgByText(B.page, 'line two').waitFor();
  await snap(B.page, 'chat');
});

test('HTML in messages renders as text; **bold** renders as <strong>', async () => {
  const xss = '<img src=x onerror=alert(1)>';
  await send(A.page, xss);
  await send(A.page, 'this is **bold** and *it* with `code` and https://example.com/x');
  for (const page of [A.page, B.page]) {
    await msgByText(page, xss).waitFor({ timeout: 10_000 });
    const boldMsg = msgByText(page, 'this is');
    await boldMsg.waitFor();
    assert.equal(await page.getByTestId('message-list').locator('[data-testid="message-content"] img').count(), 0);
    assert.equal(await boldMsg.locator('strong').textContent(), 'bold');
    assert.equal(await boldMsg.locator('em').textContent(), 'it');
    assert.equal(await boldMsg.locator('code').textContent(), 'code');
    const a = boldMsg.locator('a');
    assert.equal(await a.getAttribute('href'), 'https://example.com/x');
    assert.equal(await a.getAttribute('target'), '_blank');
    assert.equal(await a.getAttribute('rel'), 'noopener noreferrer');
  }
  await send(A.page, '[x](javascript:alert(1)) javascript:alert(2)');
  await msgByText(B.page, 'javascript:alert(2)').waitFor();
  assert.equal(await msgByText(B.page, 'javascript:alert(2)').locator('a').count(), 0);
  assert.deepEqual(A.errors.filter((e) => /alert|dialog/.test(e)), []);
  assert.deepEqual(B.errors.filter((e) => /alert|dialog/.test(e)), []);
});

test('editing and deleting own messages', async () => {
  await send(A.page, 'original text');
  const mine = msgByText(A.page, 'original text');
  await mine.waitFor();
  await msgByText(B.page, 'original text').waitFor();
  await mine.hover();
  await mine.getByRole('button', { name: 'Edit message' }).click();
  const edit = A.page.getByTestId('edit-input');
  await edit.fill('edited text');
  await edit.press('Enter');
  const onB = msgByText(B.page, 'edited text');
  await onB.waitFor({ timeout: 10_000 });
  await onB.getByTestId('edited-mark').waitFor();
  assert.equal(await msgByText(B.page, 'original text').count(), 0);
  // B cannot edit A's message
  assert.equal(await onB.getByRole('button', { name: 'Edit message' }).count(), 0);

  const editedOnA = msgByText(A.page, 'edited text');
  await editedOnA.hover();
  await editedOnA.getByRole('button', { name: 'Delete message' }).click();
  await A.page.getByTestId('confirm-delete').getByRole('button', { name: 'Delete', exact: true }).click();
  await waitFor(async () => (await msgByText(B.page, 'edited text').count()) === 0, { message: 'deleted on B' });
  assert.equal(await msgByText(A.page, 'edited text').count(), 0);
});

test('history: 50 at first, older pages load on scroll to top', async () => {
  // A creates a fresh text channel through the UI, then seeds 120 messages over REST.
  await A.page.getByRole('button', { name: 'Create channel' }).click();
  const dlg = A.page.getByTestId('create-channel-dialog');
  await dlg.getByLabel('Channel name').fill('history');
  await dlg.getByRole('button', { name: 'Create channel' }).click();
  const chanA = A.page.locator('[data-testid="channel-link"][data-channel-name="history"]');
  await chanA.waitFor();
  const channelId = await chanA.getAttribute('data-channel-id');
  const token = await tokenOf(A.page);
  for (let i = 0; i < 120; i++) {
    await rest(server.url, token, 'POST', `/channels/${channelId}/messages`, { content: `seed ${String(i).padStart(3, '0')}`, nonce: `seed-${i}` });
  }
  const chanB = B.page.locator('[data-testid="channel-link"][data-channel-name="history"]');
  await chanB.waitFor({ timeout: 10_000 });
  // B may have received some seeds live if it was viewing; reload to start from a clean history
  await B.page.reload();
  await B.page.locator('[data-testid="channel-link"][data-channel-name="history"]').click();
  await msgByText(B.page, 'seed 119').waitFor({ timeout: 10_000 });
  await waitFor(async () => (await msgs(B.page).count()) === 50, { message: '50 messages on first page' });
  assert.equal(await msgByText(B.page, 'seed 070').count(), 1);
  assert.equal(await msgByText(B.page, 'seed 069').count(), 0);
  // scroll to the top until the channel start shows
  const list = B.page.getByTestId('message-list');
  await waitFor(async () => {
    await list.evaluate((el) => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); });
    return (await B.page.getByTestId('channel-start').count()) === 1;
  }, { timeout: 20_000, interval: 500, message: 'all history loaded' });
  assert.equal(await msgs(B.page).count(), 120);
  assert.equal(await msgByText(B.page, 'seed 000').count(), 1);
  // order is oldest first
  const texts = await B.page.getByTestId('message-content').allTextContents();
  assert.equal(texts[0], 'seed 000');
  assert.equal(texts[119], 'seed 119');
  // consecutive messages by the same author are grouped (only the first shows the author)
  const authors = await B.page.getByTestId('message-author').count();
  assert.ok(authors < 120, `expected grouping, got ${authors} author headers`);
  assert.ok((await B.page.getByTestId('day-separator').count()) >= 1);
});

test('after a gateway drop the client resumes and gets what it missed', async () => {
  await B.page.locator('[data-testid="channel-link"][data-channel-name="general"]').click();
  await A.page.locator('[data-testid="channel-link"][data-channel-name="general"]').click();
  await B.page.evaluate(() => window.confab.gateway.simulateDrop());
  await send(A.page, 'sent while B was away');
  await msgByText(B.page, 'sent while B was away').waitFor({ timeout: 20_000 });
  await B.page.waitForFunction(() => window.confab.gateway.status === 'ready');
  await send(A.page, 'and after B came back');
  await msgByText(B.page, 'and after B came back').waitFor({ timeout: 10_000 });
  assert.equal(await msgByText(B.page, 'sent while B was away').count(), 1);
});

test('no uncaught page errors', () => {
  assert.deepEqual(A.errors, []);
  assert.deepEqual(B.errors, []);
});
