// Link previews in real Chromium: A posts a link to a local test site (allowlisted for this
// test with --link-preview-allow-cidrs); B sees its preview card — site name, linked title,
// description and the image, loaded from Confab and never from the site. A `<url>` gets no
// preview; A removes its preview with the card's ×, and it goes on B's screen too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import zlib from 'node:zlib';
import {
  startServer, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi, joinViaUi,
  uniqueName, waitFor, sleep, snap, axeViolations } from './lib.mjs';

function crc32(buf) {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

/** A real PNG of w×h pixels of one colour (RGB, 8 bits). */
function png(w, h, [r, g, b]) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; ihdr[9] = 2; // 8-bit RGB
  const row = Buffer.alloc(1 + w * 3);
  for (let x = 0; x < w; x++) { row[1 + x * 3] = r; row[2 + x * 3] = g; row[3 + x * 3] = b; }
  const raw = Buffer.concat(Array.from({ length: h }, () => row));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0)),
  ]);
}

const CARD = png(160, 90, [88, 101, 242]);
const hits = new Map();
const site = http.createServer((req, res) => {
  hits.set(req.url, (hits.get(req.url) || 0) + 1);
  if (req.url === '/article' || req.url === '/quiet') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html><head><title>x</title>
      <meta property="og:title" content="The Local Article">
      <meta property="og:description" content="Everything about previews, from a test site.">
      <meta property="og:site_name" content="Test Site">
      <meta property="og:image" content="/card.png">
      </head><body>article</body></html>`);
  } else if (req.url === '/card.png') {
    res.writeHead(200, { 'content-type': 'image/png', 'content-length': CARD.length });
    res.end(CARD);
  } else {
    res.writeHead(404); res.end();
  }
});

let server;
let siteUrl;
let A;
let B;
const userA = uniqueName('lpa');
const userB = uniqueName('lpb');
const serverName = uniqueName('Previews ');
const msgs = (page) => page.getByTestId('message-list').getByTestId('message');
const msgByText = (page, text) => msgs(page).filter({ has: page.getByTestId('message-content').filter({ hasText: text }) });

async function send(page, text) {
  const box = page.getByTestId('composer');
  await box.fill(text);
  await box.press('Enter');
}

before(async () => {
  await new Promise((r) => site.listen(0, '127.0.0.1', r));
  siteUrl = `http://127.0.0.1:${site.address().port}`;
  server = await startServer({ args: ['--link-preview-allow-cidrs', '127.0.0.1/32'] });
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
  site.close();
});

test("a link's preview shows on the other user's screen, with its image served by Confab", async () => {
  // Every request B's browser makes: none may go to the linked site.
  const bRequests = [];
  B.page.on('request', (r) => bRequests.push(r.url()));
  await send(A.page, `read ${siteUrl}/article today`);
  const msgB = msgByText(B.page, 'read');
  const card = msgB.getByTestId('embed');
  await card.waitFor({ timeout: 15_000 });
  assert.equal(await card.getByTestId('embed-site').textContent(), 'Test Site');
  const title = card.getByTestId('embed-title');
  assert.equal(await title.textContent(), 'The Local Article');
  assert.equal(await title.getAttribute('href'), `${siteUrl}/article`);
  assert.equal(await title.getAttribute('rel'), 'noopener noreferrer');
  assert.equal(await card.getByTestId('embed-description').textContent(), 'Everything about previews, from a test site.');
  const img = card.getByTestId('embed-image');
  // The size is set before the image loads (no layout jump), and the image really loads.
  assert.deepEqual([await img.getAttribute('width'), await img.getAttribute('height')], ['160', '90']);
  await waitFor(() => img.evaluate((el) => el.complete && el.naturalWidth === 160 && el.naturalHeight === 90),
    { timeout: 10_000, message: 'the preview image loaded' });
  const src = await img.evaluate((el) => el.src);
  assert.ok(src.startsWith(`${server.url}/api/v1/link-previews/images/`), src);
  const box = await img.boundingBox();
  assert.deepEqual([Math.round(box.width), Math.round(box.height)], [160, 90]);
  assert.equal(bRequests.filter((u) => u.startsWith(siteUrl)).length, 0, `B asked the site: ${bRequests}`);
  assert.equal(hits.get('/article'), 1);
  assert.equal(hits.get('/card.png'), 1);
  // B is not the author: no × on B's card.
  assert.equal(await card.getByTestId('remove-embed').count(), 0);
  assert.deepEqual(await axeViolations(B.page, { include: '[data-testid="embeds"]' }), [], 'the preview card is accessible');
  await snap(B.page, 'link-preview');
});

test('<url> is a link without a preview', async () => {
  await send(A.page, `no card <${siteUrl}/quiet>`);
  const msgB = msgByText(B.page, 'no card');
  await msgB.waitFor();
  // A later message's preview arrives after this one's would have.
  await send(A.page, `marker ${siteUrl}/article`);
  await msgByText(B.page, 'marker').getByTestId('embed').waitFor({ timeout: 15_000 });
  await sleep(500);
  assert.equal(await msgB.getByTestId('embed').count(), 0);
  const link = msgB.getByTestId('message-content').locator('a');
  assert.equal(await link.getAttribute('href'), `${siteUrl}/quiet`);
  assert.equal(await link.textContent(), `${siteUrl}/quiet`, 'shown without the angle brackets');
  assert.equal(hits.get('/quiet') || 0, 0, 'nothing fetched for <url>');
  assert.equal(hits.get('/article'), 1, 'the second message with the link came from the cache');
});

test('the author removes a preview with its ×; it goes for everyone', async () => {
  const msgA = msgByText(A.page, 'read');
  await msgA.hover();
  await msgA.getByTestId('remove-embed').click();
  await waitFor(async () => (await msgA.getByTestId('embed').count()) === 0, { message: "the card left A's screen" });
  await waitFor(async () => (await msgByText(B.page, 'read').getByTestId('embed').count()) === 0,
    { message: "the card left B's screen" });
  // The other message keeps its preview.
  assert.equal(await msgByText(B.page, 'marker').getByTestId('embed').count(), 1);
  assert.deepEqual(A.errors, []);
  assert.deepEqual(B.errors, []);
});
