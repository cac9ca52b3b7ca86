// Web Push in Chromium (docs/push.md). Chromium's pushManager.subscribe needs Google's push
// service (FCM), which a machine without that network cannot reach, so the subscription made
// here is the browser's own only when it succeeds; what is always tested: the service
// worker's push handler shows the notification for a push delivered to it through CDP
// (ServiceWorker.deliverPushMessage, the payload the browser would have decrypted), a click
// on it opens the channel in the running app, and the server's notification dialog saves
// levels the REST API returns.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi, joinViaUi, uniqueName, waitFor, tokenOf, rest } from './lib.mjs';

let server;
let A;
let B;

before(async () => {
  server = await startServer();
  A = await launchBrowser();
  await A.context.grantPermissions(['notifications'], { origin: server.url });
});

after(async () => {
  await A?.close();
  await B?.close();
  await server?.stop();
});

test('enabling push: the browser asks for the permission and subscribes with the server key', async () => {
  const { page } = A;
  await registerViaUi(page, server.url, uniqueName('push'));
  await page.getByRole('button', { name: 'User settings' }).click();
  const section = page.getByTestId('notifications-section');
  await section.waitFor();
  await section.getByTestId('push-enable').click();
  const status = section.getByTestId('push-status');
  await waitFor(async () => !/Working/.test(await status.textContent()), { timeout: 30_000, message: 'the subscribe attempt ends' });
  const text = await status.textContent();
  const token = await tokenOf(page);
  const subs = await rest(server.url, token, 'GET', '/users/@me/push-subscriptions');
  const permission = await page.evaluate(() => Notification.permission);
  assert.equal(permission, 'granted');
  if (/are on/.test(text)) {
    // The browser's push service answered: the server holds its endpoint.
    assert.equal(subs.length, 1);
    assert.match(subs[0].endpoint, /^https:\/\//);
    console.log(`# subscribed through the browser's push service: ${new URL(subs[0].endpoint).host}`);
  } else {
    // No push service reachable (FCM): nothing half-made is left on the server.
    assert.deepEqual(subs, []);
    console.log(`# pushManager.subscribe failed here, as expected offline: ${text}`);
  }
  // The key the page subscribed with is the server's published one.
  const key = await rest(server.url, token, 'GET', '/push/vapid-public-key');
  assert.match(key.public_key, /^B[A-Za-z0-9_-]{86}$/);
  await page.keyboard.press('Escape');
});

test('a push delivered to the service worker shows a notification; clicking it opens the channel', async () => {
  const { page, context } = A;
  const serverName = uniqueName('Pushers');
  await createServerViaUi(page, serverName);
  const token = await tokenOf(page);
  const servers = await rest(server.url, token, 'GET', '/servers');
  const srv = servers.find((s) => s.name === serverName);
  const channels = await rest(server.url, token, 'GET', `/servers/${srv.id}/channels`);
  const other = await rest(server.url, token, 'POST', `/servers/${srv.id}/channels`, { name: 'elsewhere', type: 'text' });
  const general = channels.find((c) => c.type === 'text');
  // The app shows "general"; the notification is for "elsewhere".
  await page.evaluate((id) => window.confab.store.currentChannelId !== id, other.id);

  const cdp = await context.newCDPSession(page);
  const registrations = [];
  cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => registrations.push(...e.registrations));
  await cdp.send('ServiceWorker.enable');
  const reg = await waitFor(() => registrations.find((r) => r.scopeURL === `${server.url}/` && !r.isDeleted), { message: 'the worker registration' });
  const payload = {
    type: 'mention', title: 'bob (#elsewhere, Pushers)', body: 'look here', url: `/channels/${srv.id}/${other.id}`,
    server_id: srv.id, channel_id: other.id, message_id: '42',
  };
  await cdp.send('ServiceWorker.deliverPushMessage', { origin: server.url, registrationId: reg.registrationId, data: JSON.stringify(payload) });
  const shown = await waitFor(() => page.evaluate(async () => {
    const r = await navigator.serviceWorker.ready;
    const list = await r.getNotifications();
    return list.length ? list.map((n) => ({ title: n.title, body: n.body, tag: n.tag, icon: n.icon, data: n.data })) : null;
  }), { message: 'the notification is shown' });
  assert.equal(shown.length, 1);
  assert.equal(shown[0].title, payload.title);
  assert.equal(shown[0].body, 'look here');
  assert.equal(shown[0].tag, `channel-${other.id}`);
  assert.match(shown[0].icon, /\/icons\/icon-192\.png$/);
  assert.equal(shown[0].data.url, payload.url);

  // A second message in the same channel replaces it (one notification per channel).
  await cdp.send('ServiceWorker.deliverPushMessage', { origin: server.url, registrationId: reg.registrationId, data: JSON.stringify({ ...payload, body: 'and here', message_id: '43' }) });
  await waitFor(() => page.evaluate(async () => {
    const list = await (await navigator.serviceWorker.ready).getNotifications();
    return list.length === 1 && list[0].body === 'and here';
  }), { message: 'the channel\'s notification is replaced' });

  // The click: the worker's handler body (a synthetic notificationclick cannot waitUntil, so
  // the test calls what the handler runs) focuses the open app, which switches channels.
  const worker = context.serviceWorkers().find((w) => w.url().endsWith('/sw.js'));
  assert.ok(worker, 'the service worker is visible to the test');
  await worker.evaluate(async () => {
    const [n] = await self.registration.getNotifications();
    await openNotification(n);
  });
  await waitFor(() => page.evaluate((id) => window.confab.store.currentChannelId === id, other.id), { message: 'the app opens the notified channel' });
  // The app consumed the link (it keeps no per-channel URLs).
  assert.equal(await page.evaluate(() => location.pathname), '/');
  assert.equal(await page.evaluate(async () => (await (await navigator.serviceWorker.ready).getNotifications()).length), 0, 'the clicked notification is closed');
  // With no window open the worker opens the link itself: a fresh load of it opens that channel.
  await page.goto(`${server.url}/channels/${srv.id}/${general.id}`);
  await page.waitForFunction(() => window.confab && window.confab.gateway.status === 'ready', null, { timeout: 20_000 });
  await waitFor(() => page.evaluate((id) => window.confab.store.currentChannelId === id, general.id), { message: 'the linked channel opens on load' });
});

test('the server notification dialog saves what the REST API returns', async () => {
  const { page } = A;
  const token = await tokenOf(page);
  const sid = await page.evaluate(() => window.confab.store.currentServerId);
  await page.getByRole('button', { name: 'Notification settings' }).click();
  const dlg = page.getByTestId('server-notifications-dialog');
  await dlg.waitFor();
  await dlg.getByTestId('notify-level').selectOption('mentions');
  await dlg.getByTestId('notify-mute').selectOption('3600');
  await dlg.getByTestId('notify-suppress-everyone').check();
  // The open channel's own override.
  const cid = await page.evaluate(() => window.confab.store.currentChannelId);
  await dlg.getByTestId('notify-channel-level').selectOption('nothing');
  await dlg.getByTestId('notify-channel-mute').selectOption('86400');
  await dlg.getByRole('button', { name: 'Save' }).click();
  await dlg.waitFor({ state: 'detached' });
  const all = await rest(server.url, token, 'GET', '/users/@me/notification-settings');
  const chan = all.channels.find((c) => c.channel_id === cid);
  assert.equal(chan?.level, 'nothing', JSON.stringify(all.channels));
  assert.ok(new Date(chan.muted_until) - Date.now() > 23 * 3600_000, `channel muted until ${chan.muted_until}`);
  const mine = all.servers.find((s) => s.server_id === sid);
  assert.equal(mine.level, 'mentions');
  assert.equal(mine.suppress_everyone, true);
  const mutedFor = new Date(mine.muted_until) - Date.now();
  assert.ok(mutedFor > 55 * 60_000 && mutedFor <= 3600_000, `muted for ${mutedFor} ms`);
  // Reopened, the dialog shows the saved state; back to the default and unmuted.
  await page.getByRole('button', { name: 'Notification settings' }).click();
  await dlg.waitFor();
  assert.equal(await dlg.getByTestId('notify-level').inputValue(), 'mentions');
  assert.equal(await dlg.getByTestId('notify-mute').inputValue(), 'keep');
  assert.equal(await dlg.getByTestId('notify-channel-level').inputValue(), 'nothing');
  await dlg.getByTestId('notify-level').selectOption('');
  await dlg.getByTestId('notify-mute').selectOption('');
  await dlg.getByTestId('notify-channel-level').selectOption('');
  await dlg.getByTestId('notify-channel-mute').selectOption('');
  await dlg.getByRole('button', { name: 'Save' }).click();
  await dlg.waitFor({ state: 'detached' });
  const after = (await rest(server.url, token, 'GET', '/users/@me/notification-settings')).servers.find((s) => s.server_id === sid);
  assert.equal(after.level, null);
  assert.equal(after.muted_until, null);
  const afterChan = (await rest(server.url, token, 'GET', '/users/@me/notification-settings')).channels.find((c) => c.channel_id === cid);
  assert.ok(!afterChan || (afterChan.level === null && afterChan.muted_until === null), JSON.stringify(afterChan));
  assert.deepEqual(A.errors, []);
});

test('the status picker sets do not disturb and invisible, as the server tells the members', async () => {
  const { page } = A;
  const me = await page.evaluate(() => window.confab.store.me.id);
  const serverName = await page.evaluate(() => window.confab.store.server.name);
  // Another member sees A's status as the server sends it.
  B = await launchBrowser();
  await registerViaUi(B.page, server.url, uniqueName('pushb'));
  await joinViaUi(B.page, await createInviteViaUi(page), serverName);
  const seen = B.page.locator(`[data-testid="member"][data-user-id="${me}"]`);
  await seen.and(B.page.locator('[data-status="online"]')).waitFor({ timeout: 10_000 });
  const mine = page.locator(`[data-testid="member"][data-user-id="${me}"]`);
  const choose = async (status) => {
    await page.getByTestId('status-button').click();
    const dlg = page.getByTestId('status-dialog');
    await dlg.getByTestId(`status-${status}`).check();
    await dlg.getByRole('button', { name: 'Save' }).click();
    await dlg.waitFor({ state: 'detached' });
  };
  await choose('dnd');
  await seen.and(B.page.locator('[data-status="dnd"]')).waitFor({ timeout: 10_000 });
  await mine.and(page.locator('[data-status="dnd"]')).waitFor({ timeout: 10_000 });
  assert.equal(await page.getByTestId('status-button').getAttribute('data-status'), 'dnd');
  await choose('invisible');
  await seen.and(B.page.locator('[data-status="offline"]')).waitFor({ timeout: 10_000 });
  // Kept across a reload, and sent again with the new session.
  await page.reload();
  await page.getByTestId('status-button').and(page.locator('[data-status="invisible"]')).waitFor({ timeout: 20_000 });
  await page.getByTestId('me-name').waitFor();
  await B.page.waitForTimeout(1500);
  assert.equal(await seen.getAttribute('data-status'), 'offline', 'still invisible to B after the reload');
  await choose('online');
  await seen.and(B.page.locator('[data-status="online"]')).waitFor({ timeout: 10_000 });
  assert.deepEqual(A.errors, []);
  assert.deepEqual(B.errors, []);
});
