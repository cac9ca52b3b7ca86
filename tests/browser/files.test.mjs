// Files in real Chromium, between two users: a pasted screenshot reaches the other user as a
// thumbnail with its aspect ratio reserved and opens in a lightbox; a larger upload shows its
// progress and can be cancelled (nothing is sent) or completed (the other user gets the file,
// served as a download); an avatar chosen and cropped in the settings shows for the other user.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi, joinViaUi,
  tokenOf, rest, uniqueName, waitFor, sleep, snap, axeViolations } from './lib.mjs';

let server;
let A;
let B;
const userA = uniqueName('filea');
const userB = uniqueName('fileb');
const serverName = uniqueName('Files ');

const msgs = (page) => page.getByTestId('message-list').getByTestId('message');

before(async () => {
  server = await startServer();
  A = await launchBrowser();
  B = await launchBrowser();
  await registerViaUi(A.page, server.url, userA);
  await registerViaUi(B.page, server.url, userB);
  await createServerViaUi(A.page, serverName);
  const link = await createInviteViaUi(A.page);
  await joinViaUi(B.page, link, serverName);
});

after(async () => {
  await A?.close();
  await B?.close();
  await server?.stop();
});

/** Pastes a 1600×900 PNG drawn in the page into the composer, as a screenshot paste does. */
async function pasteScreenshot(page) {
  await page.getByTestId('composer').click();
  await page.evaluate(async () => {
    const c = document.createElement('canvas');
    c.width = 1600; c.height = 900;
    const g = c.getContext('2d');
    const grad = g.createLinearGradient(0, 0, 1600, 900);
    grad.addColorStop(0, '#5865f2'); grad.addColorStop(1, '#eb459e');
    g.fillStyle = grad; g.fillRect(0, 0, 1600, 900);
    g.fillStyle = '#fff'; g.font = '120px sans-serif'; g.fillText('screenshot', 400, 480);
    const blob = await new Promise((r) => c.toBlob(r, 'image/png'));
    const dt = new DataTransfer();
    dt.items.add(new File([blob], 'image.png', { type: 'image/png' }));
    const ev = new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true });
    document.querySelector('[data-testid="composer"]').dispatchEvent(ev);
  });
}

test('a pasted screenshot reaches the other user as a thumbnail and opens in a lightbox', async () => {
  await pasteScreenshot(A.page);
  await A.page.getByTestId('upload-chip').waitFor();
  await A.page.getByTestId('composer').fill('look at this');
  await A.page.getByTestId('composer').press('Enter');
  // B: the message with an image box of the right shape (400×225 for 16:9), then the thumbnail.
  const box = msgs(B.page).filter({ hasText: 'look at this' }).getByTestId('attachment-image');
  await box.waitFor({ timeout: 15_000 });
  const size = await box.evaluate((el) => ({ w: el.getBoundingClientRect().width, h: el.getBoundingClientRect().height }));
  assert.deepEqual({ w: Math.round(size.w), h: Math.round(size.h) }, { w: 400, h: 225 }, 'space reserved with the aspect ratio');
  await waitFor(async () => {
    const img = await box.locator('img').evaluate((el) => ({ src: el.getAttribute('src'), w: el.naturalWidth, done: el.complete }));
    return img.src.includes('/thumbnail/') && img.done && img.w === 800;
  }, { timeout: 20_000, message: 'B loads the 800-pixel thumbnail' });
  await snap(B.page, 'files-thumbnail');

  await box.click();
  const lightbox = B.page.getByTestId('lightbox');
  await lightbox.waitFor();
  await waitFor(() => lightbox.getByTestId('lightbox-image').evaluate((el) => el.complete && el.naturalWidth === 1600),
    { message: 'the original at full size in the lightbox' });
  assert.deepEqual(await axeViolations(B.page, { include: '[data-testid="lightbox"]' }), [], 'the lightbox is accessible');
  await snap(B.page, 'files-lightbox');
  await B.page.keyboard.press('Escape');
  await lightbox.waitFor({ state: 'detached' });
});

test('an upload shows its progress, can be cancelled, and completes as a download for the other user', async () => {
  const page = A.page;
  const cdp = await page.context().newCDPSession(page);
  // ~1.5 MB/s up: a 6 MB upload takes seconds, enough to see it move and to cancel it.
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 5, downloadThroughput: -1, uploadThroughput: 1_500_000 });
  const data = Buffer.alloc(6 * 1024 * 1024, 7);
  data.write('not an image, just data', 0);
  const token = await tokenOf(B.page);
  const channelId = await B.page.evaluate(() => window.confab.store.currentChannelId);
  const countBefore = (await rest(server.url, token, 'GET', `/channels/${channelId}/messages?limit=100`)).length;

  await page.getByTestId('file-input').setInputFiles({ name: 'data.bin', mimeType: 'application/octet-stream', buffer: data });
  await page.getByTestId('composer').press('Enter');
  const progress = page.getByTestId('upload-progress');
  await progress.waitFor({ timeout: 10_000 });
  await waitFor(async () => {
    const v = await progress.locator('progress').evaluate((el) => el.value / el.max);
    return v > 0.05 && v < 0.9;
  }, { timeout: 15_000, interval: 100, message: 'the progress bar moves' });
  await snap(page, 'files-upload-progress');
  await progress.getByTestId('upload-cancel').click();
  await page.getByTestId('composer-error').filter({ hasText: 'cancelled' }).waitFor();
  await page.getByTestId('upload-chip').waitFor();  // the file is back in the tray
  await sleep(1000);
  const countAfterCancel = (await rest(server.url, token, 'GET', `/channels/${channelId}/messages?limit=100`)).length;
  assert.equal(countAfterCancel, countBefore, 'a cancelled upload sends nothing');

  // Send it again and let it finish.
  await page.getByTestId('composer').press('Enter');
  const file = msgs(B.page).getByTestId('attachment-file').filter({ hasText: 'data.bin' });
  await file.waitFor({ timeout: 30_000 });
  assert.match(await file.innerText(), /6\.0 MB/);
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  const href = await file.getByTestId('attachment-link').getAttribute('href');
  const got = await B.page.evaluate(async (u) => {
    const r = await fetch(u);
    const b = new Uint8Array(await r.arrayBuffer());
    return { status: r.status, type: r.headers.get('content-type'), disposition: r.headers.get('content-disposition'), len: b.length, head: new TextDecoder().decode(b.slice(0, 23)) };
  }, href);
  assert.equal(got.status, 200);
  assert.equal(got.type, 'application/octet-stream');
  assert.match(got.disposition, /^attachment; filename="data.bin"/);
  assert.equal(got.len, data.length);
  assert.equal(got.head, 'not an image, just data');
});

test('an avatar chosen and cropped in the settings shows for the other user', async () => {
  const page = A.page;
  await page.getByRole('button', { name: 'User settings' }).click();
  const dlg = page.getByTestId('settings-dialog');
  await dlg.waitFor();
  const png = await page.evaluate(async () => {
    const c = document.createElement('canvas');
    c.width = 600; c.height = 300;
    const g = c.getContext('2d');
    g.fillStyle = '#e33'; g.fillRect(0, 0, 300, 300);
    g.fillStyle = '#3a3'; g.fillRect(300, 0, 300, 300);
    const blob = await new Promise((r) => c.toBlob(r, 'image/png'));
    return [...new Uint8Array(await blob.arrayBuffer())];
  });
  await dlg.getByTestId('avatar-file').setInputFiles({ name: 'me.png', mimeType: 'image/png', buffer: Buffer.from(png) });
  const crop = page.getByTestId('avatar-crop');
  await crop.waitFor();
  // Drag the crop square to the right half (green).
  const boxEl = crop.getByTestId('crop-box');
  const bb = await boxEl.boundingBox();
  await page.mouse.move(bb.x + bb.width / 2, bb.y + bb.height / 2);
  await page.mouse.down();
  await page.mouse.move(bb.x + bb.width / 2 + 400, bb.y + bb.height / 2, { steps: 5 });
  await page.mouse.up();
  await crop.getByRole('button', { name: 'Save avatar' }).click();
  await crop.waitFor({ state: 'detached' });
  await page.keyboard.press('Escape');

  // B sees A's new avatar (in the member list), and it is the green half.
  const img = B.page.getByTestId('member-list').locator('[data-testid="member"]', { hasText: userA }).locator('img');
  await waitFor(async () => (await img.getAttribute('src') || '').includes('/api/v1/avatars/'), { timeout: 15_000, message: 'B sees the avatar' });
  const pixel = await img.evaluate(async (el) => {
    const r = await fetch(el.src);
    const bmp = await createImageBitmap(await r.blob());
    const c = new OffscreenCanvas(bmp.width, bmp.height);
    const g = c.getContext('2d');
    g.drawImage(bmp, 0, 0);
    const d = g.getImageData(bmp.width / 2, bmp.height / 2, 1, 1).data;
    return { w: bmp.width, h: bmp.height, r: d[0], g: d[1], b: d[2] };
  });
  assert.equal(pixel.w, 256);
  assert.equal(pixel.h, 256);
  assert.ok(pixel.g > 120 && pixel.r < 100, `the cropped (green) half: ${JSON.stringify(pixel)}`);
  // …and beside A's messages already on B's screen (sent with the old, empty avatar).
  const msgAvatar = B.page.locator('[data-testid="message"]', { has: B.page.getByTestId('message-author').filter({ hasText: userA }) })
    .first().locator('.msg-avatar img');
  await waitFor(async () => (await msgAvatar.count()) > 0 && (await msgAvatar.getAttribute('src')) === (await img.getAttribute('src')),
    { timeout: 10_000, message: "A's messages at B show the new avatar" });
  assert.deepEqual(A.consoleErrors.filter((e) => !/favicon/.test(e)), [], 'no console errors');
});

test('a server icon set in the server settings shows in the other member\'s server rail', async () => {
  const page = A.page;
  await page.getByRole('button', { name: 'Server settings' }).click();
  const dlg = page.getByTestId('server-settings-dialog');
  await dlg.waitFor();
  await dlg.getByRole('tab', { name: 'Icon' }).click();
  const png = await page.evaluate(async () => {
    const c = document.createElement('canvas');
    c.width = 400; c.height = 400;
    const g = c.getContext('2d');
    g.fillStyle = '#2a6'; g.fillRect(0, 0, 400, 400);
    const blob = await new Promise((r) => c.toBlob(r, 'image/png'));
    return [...new Uint8Array(await blob.arrayBuffer())];
  });
  await dlg.getByTestId('icon-file').setInputFiles({ name: 'icon.png', mimeType: 'image/png', buffer: Buffer.from(png) });
  const crop = page.getByTestId('avatar-crop');
  await crop.waitFor();
  await crop.getByRole('button', { name: 'Save icon' }).click();
  await crop.waitFor({ state: 'detached' });
  await dlg.getByTestId('icon-preview').locator('img').waitFor();
  await dlg.getByRole('button', { name: 'Close', exact: true }).click();
  const icon = B.page.locator('[data-testid="server-button"] [data-testid="server-icon"]');
  await waitFor(async () => (await icon.count()) === 1 && icon.evaluate((el) => el.complete && el.naturalWidth === 256),
    { timeout: 15_000, message: 'B sees the icon in the rail' });
  await snap(B.page, 'files-server-icon');
});
