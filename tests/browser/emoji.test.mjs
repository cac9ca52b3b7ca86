// Custom emoji and stickers through the real UI in two browsers: the owner uploads an emoji in
// the server settings; the member types `:name`, picks it from the autocomplete and sends it;
// the owner's page shows it as an image that really loaded. A reaction with it reaches the
// member; a sticker chosen from the composer's picker shows on the other side.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import {
  startServer, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi, joinViaUi,
  openServerSettings, uniqueName, waitFor, snap, axeViolations } from './lib.mjs';

function crc32(buf) {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return ~c >>> 0;
}

/** An RGBA PNG of w×h with a diagonal gradient, made without any image library. */
function png(w, h) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; ihdr[9] = 6; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  const raw = Buffer.alloc((w * 4 + 1) * h);
  for (let y = 0; y < h; y++) {
    raw[y * (w * 4 + 1)] = 0;
    for (let x = 0; x < w; x++) {
      const o = y * (w * 4 + 1) + 1 + x * 4;
      raw[o] = (x * 4) & 255; raw[o + 1] = (y * 4) & 255; raw[o + 2] = 180; raw[o + 3] = 255;
    }
  }
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'confab-emoji-'));
const emojiFile = path.join(dir, 'partyblob.png');
const stickerFile = path.join(dir, 'sticker.png');
fs.writeFileSync(emojiFile, png(96, 96));
fs.writeFileSync(stickerFile, png(200, 200));

let server;
let A;  // owner
let B;  // member
const userA = uniqueName('emo');
const userB = uniqueName('emm');
const serverName = uniqueName('Emoji ');
const emojiName = 'partyblob';

const msgs = (page) => page.getByTestId('message-list').getByTestId('message');

/** Whether the first element matching `selector` is an image that loaded (naturalWidth > 0). */
async function loaded(page, selector) {
  return page.evaluate((sel) => {
    const img = document.querySelector(sel);
    return !!(img && img.complete && img.naturalWidth > 0);
  }, selector);
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
  fs.rmSync(dir, { recursive: true, force: true });
});

test('setup: owner creates a server, the member joins', async () => {
  await registerViaUi(A.page, server.url, userA);
  await registerViaUi(B.page, server.url, userB);
  await createServerViaUi(A.page, serverName);
  const link = await createInviteViaUi(A.page);
  await joinViaUi(B.page, link, serverName);
  await A.page.getByTestId('member-list').getByText(userB).waitFor({ timeout: 10_000 });
});

test('the owner uploads an emoji; the member sends it through the :name autocomplete', async () => {
  const dlg = await openServerSettings(A.page, 'Emoji');
  await dlg.getByTestId('emoji-file').setInputFiles(emojiFile);
  await dlg.getByTestId('emoji-name').fill(emojiName);
  await dlg.getByTestId('emoji-upload').click();
  const row = dlg.locator(`[data-testid="emoji-row"][data-emoji-name="${emojiName}"]`);
  await row.waitFor({ timeout: 10_000 });
  const emojiId = await row.getAttribute('data-emoji-id');
  assert.ok(emojiId, 'the row names the new emoji');
  await waitFor(() => loaded(A.page, `[data-testid="emoji-row"] img[data-emoji-id="${emojiId}"]`), { message: 'the settings row shows the image' });
  assert.deepEqual(await axeViolations(A.page, { include: '[data-testid="server-settings-dialog"]' }), [], 'the Emoji tab is accessible');
  await dlg.getByRole('button', { name: 'Close', exact: true }).click();

  // The member learnt of it live (SERVER_EMOJIS_UPDATE) and finds it by typing :part.
  const box = B.page.getByTestId('composer');
  await box.click();
  await box.pressSequentially(':part');
  const option = B.page.locator(`[data-testid="mention-option"][data-kind="emoji"][data-id="${emojiId}"]`);
  await option.waitFor({ timeout: 10_000 });
  await box.press('Enter');
  assert.equal(await box.inputValue(), `<:${emojiName}:${emojiId}> `);
  await box.press('Enter');

  // On the owner's screen: a large image (the message is only emoji) that really loaded.
  const sel = `[data-testid="message-content"].jumbo img[data-testid="custom-emoji"][data-emoji-id="${emojiId}"]`;
  await A.page.locator(sel).first().waitFor({ timeout: 10_000 });
  await waitFor(() => loaded(A.page, sel), { message: 'the emoji image loads on the owner\'s page' });
  assert.equal(await A.page.locator(sel).first().getAttribute('alt'), `:${emojiName}:`);
  const width = await A.page.locator(sel).first().evaluate((img) => img.getBoundingClientRect().width);
  assert.ok(width >= 40, `an emoji-only message shows it large (${width}px)`);
  await snap(A.page, 'emoji-message');
});

test('a reaction with the custom emoji reaches the other member', async () => {
  const msg = msgs(A.page).filter({ has: A.page.locator('img[data-testid="custom-emoji"]') }).last();
  await msg.hover();
  await msg.getByTestId('add-reaction').click();
  const opt = A.page.getByTestId('reaction-picker').getByTestId('custom-reaction-option').first();
  await opt.waitFor();
  const emoji = await opt.getAttribute('data-emoji');
  assert.match(emoji, new RegExp(`^${emojiName}:\\d+$`));
  await opt.click();
  const chip = B.page.locator(`[data-testid="reaction"][data-emoji="${emoji}"][data-count="1"]`);
  await chip.waitFor({ timeout: 10_000 });
  const [, id] = emoji.split(':');
  await waitFor(() => loaded(B.page, `[data-testid="reaction"][data-emoji="${emoji}"] img[data-emoji-id="${id}"]`),
    { message: 'the reaction chip shows the emoji image on the member\'s page' });
});

test('a sticker uploaded by the owner is sent by the member and shown to the owner', async () => {
  const dlg = await openServerSettings(A.page, 'Stickers');
  await dlg.getByTestId('sticker-file').setInputFiles(stickerFile);
  await dlg.getByTestId('sticker-name').fill('Hello wave');
  await dlg.getByTestId('sticker-description').fill('a waving square');
  await dlg.getByTestId('sticker-upload').click();
  const row = dlg.getByTestId('sticker-row').first();
  await row.waitFor({ timeout: 10_000 });
  const stickerId = await row.getAttribute('data-sticker-id');
  await dlg.getByRole('button', { name: 'Close', exact: true }).click();

  // The member's picker lists it once SERVER_STICKERS_UPDATE arrived.
  await waitFor(async () => {
    await B.page.getByTestId('sticker-picker-button').click();
    const n = await B.page.locator(`[data-testid="sticker-option"][data-sticker-id="${stickerId}"]`).count();
    if (!n) await B.page.keyboard.press('Escape');
    return n > 0;
  }, { message: 'the sticker picker lists the new sticker' });
  await B.page.locator(`[data-testid="sticker-option"][data-sticker-id="${stickerId}"]`).click();

  const sel = `img[data-testid="sticker"][data-sticker-id="${stickerId}"]`;
  await A.page.locator(sel).first().waitFor({ timeout: 10_000 });
  await waitFor(() => loaded(A.page, sel), { message: 'the sticker image loads on the owner\'s page' });
  assert.equal(await A.page.locator(sel).first().getAttribute('alt'), 'Hello wave');
  await snap(A.page, 'sticker-message');
});

test('no uncaught page errors', () => {
  assert.deepEqual(A.errors, []);
  assert.deepEqual(B.errors, []);
});
